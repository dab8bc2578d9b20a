"""The numerical derivative checks in cnnx.testing: they pass right derivatives and catch wrong ones."""
import numpy as np
import pytest

from cnnx.testing import check_derivative, matconvnet_tolerance, numerical_derivative


def cubic(x):
    return x ** 3 + 2 * x


def cubic_grad(x, dzdy):
    return dzdy * (3 * x ** 2 + 2)


@pytest.mark.parametrize("method", ["forward", "central"])
def test_numerical_derivative_matches_known_gradient(method):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 2))
    dzdy = rng.standard_normal(x.shape)
    num = numerical_derivative(cubic, x, dzdy, delta=1e-6, method=method)
    assert num.shape == x.shape and num.dtype == x.dtype
    tol = 1e-4 if method == "forward" else 1e-7
    np.testing.assert_allclose(num, cubic_grad(x, dzdy), atol=tol)


def test_numerical_derivative_does_not_modify_x_and_keeps_dtype():
    x = np.arange(6, dtype=np.float32).reshape(2, 3, order="F")
    before = x.copy()
    num = numerical_derivative(lambda t: t * 2, x, np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(x, before)
    assert num.dtype == np.float32
    np.testing.assert_allclose(num, 2.0, rtol=1e-3)


def test_numerical_derivative_of_scalar_output():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    num = numerical_derivative(lambda t: np.sum(t ** 2), x, 1.0, method="central")
    np.testing.assert_allclose(num, 2 * x, atol=1e-7)


def test_matconvnet_tolerance_formula():
    assert matconvnet_tolerance([0.0, 10.0], [1.0, 9.0]) == pytest.approx(0.1)
    # A small range but large magnitude: the 1e-3 * max term wins.
    assert matconvnet_tolerance([100.0], [100.0]) == pytest.approx(0.1)
    assert matconvnet_tolerance(np.array([]), np.array([])) == 0.0


@pytest.mark.parametrize("method", ["forward", "central"])
def test_check_passes_for_correct_derivative(method):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3))
    dzdy = rng.standard_normal(x.shape)
    res = check_derivative(cubic, x, dzdy, cubic_grad(x, dzdy), method=method,
                           delta=1e-6 if method == "forward" else None)
    assert res.max_error <= res.tolerance
    assert res.numerical.shape == x.shape


@pytest.mark.parametrize("method", ["forward", "central"])
def test_check_fails_naming_worst_element(method):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    dzdy = np.ones_like(x)
    wrong = cubic_grad(x, dzdy)
    wrong[2, 1] += 1.0
    with pytest.raises(AssertionError) as info:
        check_derivative(cubic, x, dzdy, wrong, method=method)
    msg = str(info.value)
    assert "at (2, 1)" in msg
    assert "analytic" in msg and "numerical" in msg and "tolerance" in msg


def test_check_fails_on_nan_derivative():
    x = np.linspace(0.1, 1.0, 4)
    bad = 3 * x ** 2 + 2
    bad[0] = np.nan
    with pytest.raises(AssertionError):
        check_derivative(cubic, x, np.ones(4), bad, method="central")


def test_check_explicit_and_negative_tolerance():
    x = np.array([1.0, 2.0])
    right = 3 * x ** 2 + 2
    off = right + np.array([0.0, 0.05])
    with pytest.raises(AssertionError):
        check_derivative(cubic, x, np.ones(2), off, tol=0.01, delta=1e-7)
    check_derivative(cubic, x, np.ones(2), off, tol=0.1, delta=1e-7)
    # Negative tol is a floor under the default tolerance.
    check_derivative(cubic, x, np.ones(2), off, tol=-0.1, delta=1e-7)


def test_check_rtol_atol():
    x = np.array([1.0, 2.0])
    right = 3 * x ** 2 + 2
    check_derivative(cubic, x, np.ones(2), right * (1 + 1e-9), method="central", rtol=1e-7)
    with pytest.raises(AssertionError):
        check_derivative(cubic, x, np.ones(2), right * (1 + 1e-4), method="central", rtol=1e-7)
    check_derivative(cubic, x, np.ones(2), right + 1e-3, method="central", rtol=0, atol=1e-2)


@pytest.mark.parametrize("method", ["forward", "central"])
def test_projection_mode(method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 20, 3))
    dzdy = rng.standard_normal(x.shape)
    grad = cubic_grad(x, dzdy)
    delta = 1e-7 if method == "forward" else None
    res = check_derivative(cubic, x, dzdy, grad, method=method, projections=5, delta=delta)
    assert res.numerical.shape == (5,)
    wrong = grad.copy()
    wrong[3, 4, 1] += 50.0
    with pytest.raises(AssertionError, match="direction"):
        check_derivative(cubic, x, dzdy, wrong, method=method, projections=5, delta=delta)


def test_float32_matconvnet_style_check():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    dzdy = rng.standard_normal(x.shape).astype(np.float32)
    grad = (dzdy * (3 * x ** 2 + 2)).astype(np.float32)
    check_derivative(cubic, x, dzdy, grad, delta=1e-2)


def test_bad_arguments():
    x = np.ones(3)
    with pytest.raises(ValueError, match="dzdx"):
        check_derivative(cubic, x, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="method"):
        check_derivative(cubic, x, np.ones(3), np.ones(3), method="sideways")
    with pytest.raises(ValueError, match="projections"):
        check_derivative(cubic, x, np.ones(3), np.ones(3), projections=0)

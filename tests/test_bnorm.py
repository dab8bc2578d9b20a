"""Tests of vl_nnbnorm against a NumPy reference, finite differences, PyTorch and MatConvNet's outputs."""
import os

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnbnorm
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
DATA = os.path.join(os.path.dirname(__file__), "data", "mcn_bnorm.mat")


def bnorm_reference(x, g, b, epsilon, moments=None):
    """Forward in float64: (y, moments) as MatConvNet defines them."""
    x4 = x.astype(np.float64).reshape(x.shape + (1,) * (4 - x.ndim))
    if moments is None:
        mu = x4.mean(axis=(0, 1, 3))
        sigma = np.sqrt(np.maximum(0, (x4 * x4).mean(axis=(0, 1, 3)) - mu * mu) + epsilon)
    else:
        mu, sigma = moments[:, 0].astype(np.float64), moments[:, 1].astype(np.float64)
    y = g.reshape(-1)[:, None] / sigma[:, None] * (x4 - mu[:, None]) + b.reshape(-1)[:, None]
    return y.reshape(x.shape), np.stack([mu, sigma], axis=1)


def bnorm_backward_reference(x, g, dzdy, moments):
    """MatConvNet's backward in float64 for the moments [mu, sigma] (the batch's or given ones)."""
    x4 = x.astype(np.float64).reshape(x.shape + (1,) * (4 - x.ndim))
    dy = dzdy.astype(np.float64).reshape(x4.shape)
    mu, sigma = moments[:, 0].astype(np.float64), moments[:, 1].astype(np.float64)
    mass = x4.shape[0] * x4.shape[1] * x4.shape[3]
    xhat = (x4 - mu[:, None]) / sigma[:, None]
    dzdb = dy.sum(axis=(0, 1, 3))
    dzdg = (dy * xhat).sum(axis=(0, 1, 3))
    gain = g.reshape(-1).astype(np.float64) / sigma
    dzdx = gain[:, None] * (dy - dzdb[:, None] / mass - xhat * dzdg[:, None] / mass)
    return dzdx.reshape(x.shape), dzdg[:, None], dzdb[:, None]


def random_case(rng, shape, dtype, channels):
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype, order="F")
    g = rng.standard_normal(channels).astype(dtype)
    b = rng.standard_normal(channels).astype(dtype)
    dzdy = rng.standard_normal(shape).astype(dtype, order="F")
    return x, g, b, dzdy


SHAPES = [((3, 4, 2, 5), 2), ((1, 1, 3, 6), 3), ((7, 5, 1, 1), 1), ((4, 3, 5), 5), ((6, 2), 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, channels", SHAPES)
@pytest.mark.parametrize("epsilon", [1e-4, 0.5])
def test_matches_reference(dtype, shape, channels, epsilon):
    rng = np.random.default_rng(1)
    x, g, b, dzdy = random_case(rng, shape, dtype, channels)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    y, moments = vl_nnbnorm(x, g, b, "Epsilon", epsilon)
    ref_y, ref_moments = bnorm_reference(x, g, b, epsilon)
    assert y.shape == x.shape and y.dtype == dtype and y.flags.f_contiguous
    assert moments.shape == (channels, 2) and moments.dtype == dtype
    np.testing.assert_allclose(moments, ref_moments, rtol=rtol)
    np.testing.assert_allclose(y, ref_y, rtol=rtol, atol=rtol)
    dzdx, dzdg, dzdb, moments_bwd = vl_nnbnorm(x, g, b, dzdy, epsilon=epsilon)
    ref = bnorm_backward_reference(x, g, dzdy, ref_moments)
    np.testing.assert_array_equal(moments_bwd, moments)
    for got, expected in zip((dzdx, dzdg, dzdb), ref):
        assert got.shape == expected.shape and got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_given_moments(dtype):
    rng = np.random.default_rng(2)
    x, g, b, dzdy = random_case(rng, (4, 5, 3, 2), dtype, 3)
    given = np.array([[0.5, 2.0], [-1.0, 0.25], [3.0, 1.5]], dtype=dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    y, moments = vl_nnbnorm(x, g, b, "Moments", given, "Epsilon", 7.0)  # Epsilon is not used
    np.testing.assert_array_equal(moments, given)
    np.testing.assert_allclose(y, bnorm_reference(x, g, b, 0, given)[0], rtol=rtol, atol=rtol)
    # given in another shape of 2C elements (column order: means, then sigmas)
    y2, moments2 = vl_nnbnorm(x, g, b, moments=given.reshape(-1, order="F"))
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(moments2, given)
    dzdx, dzdg, dzdb, moments_bwd = vl_nnbnorm(x, g, b, dzdy, moments=given)
    np.testing.assert_array_equal(moments_bwd, given)
    for got, expected in zip((dzdx, dzdg, dzdb), bnorm_backward_reference(x, g, dzdy, given)):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    # MatConvNet's givenMoments test: the batch's own moments given back give the same results
    y_batch, batch = vl_nnbnorm(x, g, b)
    np.testing.assert_array_equal(vl_nnbnorm(x, g, b, moments=batch)[0], y_batch)
    for got, expected in zip(vl_nnbnorm(x, g, b, dzdy, moments=batch), vl_nnbnorm(x, g, b, dzdy)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape, channels", [((3, 4, 2, 5), 2), ((1, 1, 3, 4), 3), ((5, 2, 1), 1)])
def test_derivatives(shape, channels):
    rng = np.random.default_rng(3)
    x, g, b, dzdy = random_case(rng, shape, np.float64, channels)
    dzdx, dzdg, dzdb, _ = vl_nnbnorm(x, g, b, dzdy)
    opts = dict(method="central", rtol=1e-6, atol=1e-8)
    check_derivative(lambda t: vl_nnbnorm(t, g, b)[0], x, dzdy, dzdx, **opts)
    check_derivative(lambda t: vl_nnbnorm(x, t, b)[0], g, dzdy, dzdg.reshape(g.shape), **opts)
    check_derivative(lambda t: vl_nnbnorm(x, g, t)[0], b, dzdy, dzdb.reshape(b.shape), **opts)
    # MatConvNet's own check (one-sided differences, 1% of the range)
    check_derivative(lambda t: vl_nnbnorm(t, g, b)[0], x, dzdy, dzdx)
    # with given moments g and b still get the derivatives of y
    moments = np.array([[0.3, 1.7]] * channels)
    _, dzdg, dzdb, _ = vl_nnbnorm(x, g, b, dzdy, moments=moments)
    check_derivative(lambda t: vl_nnbnorm(x, t, b, moments=moments)[0], g, dzdy, dzdg.reshape(g.shape), **opts)
    check_derivative(lambda t: vl_nnbnorm(x, g, t, moments=moments)[0], b, dzdy, dzdb.reshape(b.shape), **opts)


def test_shapes_of_the_derivatives():
    # dzdg and dzdb are C x 1 columns whatever the shape of g and b, as MatConvNet returns them
    rng = np.random.default_rng(4)
    x, g, b, dzdy = random_case(rng, (3, 3, 4, 2), np.float32, 4)
    dzdx, dzdg, dzdb, moments = vl_nnbnorm(x, g.reshape(1, 4), b.reshape(1, 1, 4), dzdy)
    assert dzdx.shape == x.shape and dzdg.shape == (4, 1) and dzdb.shape == (4, 1) and moments.shape == (4, 2)
    np.testing.assert_array_equal(dzdg, vl_nnbnorm(x, g, b, dzdy)[1])


def test_c_ordered_read_only_and_keyword_dzdy():
    rng = np.random.default_rng(5)
    x, g, b, dzdy = random_case(rng, (5, 4, 3, 2), np.float64, 3)
    expected = vl_nnbnorm(x, g, b, dzdy)
    got = vl_nnbnorm(np.ascontiguousarray(x), g, b, dzdy=np.ascontiguousarray(dzdy))
    for a, e in zip(got, expected):
        np.testing.assert_array_equal(a, e)
    np.testing.assert_array_equal(vl_nnbnorm(x, g, b, [])[0], vl_nnbnorm(x, g, b)[0])


def test_same_bits_at_any_thread_count():
    rng = np.random.default_rng(6)
    x, g, b, dzdy = random_case(rng, (16, 16, 8, 17), np.float32, 8)
    saved = cnnx.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            cnnx.set_num_threads(n)
            results.append(vl_nnbnorm(x, g, b) + vl_nnbnorm(x, g, b, dzdy))
    finally:
        cnnx.set_num_threads(saved)
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


def test_no_values_per_channel():
    # with given moments an empty batch gives empty results and zero sums; without, nothing defines them
    x = np.zeros((3, 3, 2, 0))
    moments = np.array([[0.0, 1.0], [1.0, 2.0]])
    y, m = vl_nnbnorm(x, np.ones(2), np.ones(2), moments=moments)
    assert y.shape == x.shape and m.shape == (2, 2)
    dzdx, dzdg, dzdb, _ = vl_nnbnorm(x, np.ones(2), np.ones(2), x, moments=moments)
    assert dzdx.shape == x.shape
    np.testing.assert_array_equal(dzdg, np.zeros((2, 1)))
    np.testing.assert_array_equal(dzdb, np.zeros((2, 1)))
    # no channels: nothing to normalise
    y, m = vl_nnbnorm(np.zeros((3, 3, 0, 2)), np.zeros(0), np.zeros(0))
    assert y.shape == (3, 3, 0, 2) and m.shape == (0, 2)


def load_reference():
    cases = scipy.io.loadmat(DATA, squeeze_me=False, struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


def mcn_options(case):
    """The case's name/value options as Python values (MATLAB strings arrive as arrays)."""
    opts = list(case.opts.ravel()) if case.opts.size else []
    return [str(o.item()) if isinstance(o, np.ndarray) and o.dtype.kind == "U" else o for o in opts]


@pytest.mark.parametrize("case", load_reference())
def test_matches_matconvnet(case):
    """MatConvNet beta25's own outputs (default Epsilon 1e-4, or given moments)."""
    opts = mcn_options(case)
    tol = 1e-5 if case.x.dtype == np.float32 else 1e-12

    def close(got, expected):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * max(1.0, np.abs(expected).max()))

    y, moments = vl_nnbnorm(case.x, case.g, case.b, *opts)
    close(y, case.y)
    close(moments, case.moments)
    dzdx, dzdg, dzdb, moments_bwd = vl_nnbnorm(case.x, case.g, case.b, case.dzdy, *opts)
    for got, expected in ((dzdx, case.dzdx), (dzdg, case.dzdg), (dzdb, case.dzdb), (moments_bwd, case.moments_bwd)):
        close(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x, g, b, dzdy = random_case(rng, (5, 4, 3, 6), dtype, 3)
    epsilon = 1e-3
    # torch's eps sits where MatConvNet's does: sqrt(biased variance + eps)
    xt = torch.tensor(x.transpose(3, 2, 0, 1), requires_grad=True)
    gt = torch.tensor(g, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=epsilon)
    yt.backward(torch.tensor(dzdy.transpose(3, 2, 0, 1)))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    y, _ = vl_nnbnorm(x, g, b, epsilon=epsilon)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(2, 3, 1, 0), rtol=rtol, atol=rtol)
    dzdx, dzdg, dzdb, _ = vl_nnbnorm(x, g, b, dzdy, epsilon=epsilon)
    np.testing.assert_allclose(dzdx, xt.grad.numpy().transpose(2, 3, 1, 0), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dzdg[:, 0], gt.grad.numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dzdb[:, 0], bt.grad.numpy(), rtol=rtol, atol=rtol)


def test_kernel_refuses_other_dtypes():
    from cnnx._ext import bnorm as kernels

    x = np.zeros((2, 2, 1), np.float16, order="F")
    for entry in (kernels.forward, kernels.backward):
        with pytest.raises(TypeError, match=f"^cnnx._ext.bnorm.{entry.__name__}: unsupported dtype float16"):
            entry(x)

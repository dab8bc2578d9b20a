"""vl_nnnormalizelp (MatConvNet's MEX version; it has no layer): a NumPy reference, finite
differences, PyTorch, MatConvNet's outputs, the options, threads."""
import os

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnnormalizelp
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
DATA = os.path.join(os.path.dirname(__file__), "data")


def lp_reference(x, dims=(3,), p=2.0, epsilon=1e-2, dzdy=None, norms=None, magnitudes=False):
    """MatConvNet's formulas in float64 (dims 1-based); returns (y, norms) or dzdx (with
    ``magnitudes``, the sum of the sizes of dzdx's two terms)."""
    x4 = x.astype(np.float64).reshape(x.shape + (1,) * (4 - x.ndim))
    axes = tuple(d - 1 for d in dims)
    if norms is None:
        norms = ((x4 ** p).sum(axis=axes, keepdims=True) + epsilon) ** (1 / p)
    norms = np.asarray(norms, np.float64).reshape([1 if d in axes else x4.shape[d] for d in range(4)], order="F")
    if dzdy is None:
        return (x4 / norms).reshape(x.shape), norms
    d = dzdy.astype(np.float64).reshape(x4.shape)
    total = (d * x4).sum(axis=axes, keepdims=True)
    if magnitudes:
        return (np.abs(d / norms) + np.abs(total * x4 ** (p - 1) / norms ** (p + 1))).reshape(x.shape)
    return (d / norms - total * x4 ** (p - 1) / norms ** (p + 1)).reshape(x.shape)


def randn(rng, shape, dtype, scale=1.0):
    return np.asfortranarray(rng.standard_normal(shape) * scale, dtype=dtype)


OPTIONS = [
    ((3,), 2.0, 1e-2, {}),
    ((1,), 2.0, 1e-4, {"dimensions": 1, "epsilon": 1e-4}),
    ((4,), 2.0, 1e-2, {"Dimensions": [4]}),
    ((1, 3), 4.0, 1e-4, {"p": 4, "dimensions": [1, 3], "epsilon": 1e-4}),
    ((2, 4), 2.0, 1e-2, {"dimensions": np.array([[4.0, 2.0]])}),
    ((1, 2), 2.0, 1e-2, {"spatial": True}),
    ((1, 2, 3, 4), 6.0, 0.5, {"exponent": 6, "dimensions": [1, 2, 3, 4], "epsilon": 0.5}),
    ((3, 4), 2.0, 0.0, {"dimensions": [3, 4, 3], "epsilon": 0}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (1, 1, 6, 3), (2, 3, 4), (5, 2)], ids=str)
@pytest.mark.parametrize("dims, p, epsilon, opts", OPTIONS, ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_matches_reference(dims, p, epsilon, opts, shape, dtype):
    rng = np.random.default_rng(0)
    x, dzdy = randn(rng, shape, dtype, 2.0), randn(rng, shape, dtype)
    # sums in double, norms rounded to x's type and used as rounded (as MatConvNet does): the
    # backward's two terms carry the norm's rounding error and may cancel, so its error is relative
    # to their sizes
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    y, norms = vl_nnnormalizelp(x, **opts)
    ref_y, ref_norms = lp_reference(x, dims, p, epsilon)
    expected_shape = ref_norms.shape if x.ndim == 4 else ref_norms.shape[:3]
    assert y.shape == x.shape and y.dtype == dtype and y.flags.f_contiguous
    assert norms.shape == expected_shape and norms.dtype == dtype
    np.testing.assert_allclose(norms, ref_norms.reshape(expected_shape), rtol=rtol)
    np.testing.assert_allclose(y, ref_y, rtol=rtol, atol=rtol * np.abs(ref_y).max())
    dzdx = vl_nnnormalizelp(x, dzdy, **opts)
    expected = lp_reference(x, dims, p, epsilon, dzdy)
    sizes = lp_reference(x, dims, p, epsilon, dzdy, magnitudes=True)
    assert dzdx.shape == x.shape and dzdx.dtype == dtype
    np.testing.assert_allclose(dzdx, expected, rtol=rtol, atol=rtol * sizes.max())


def test_name_value_forms_and_given_norms():
    rng = np.random.default_rng(1)
    x, dzdy = randn(rng, (3, 4, 5, 2), np.float64), randn(rng, (3, 4, 5, 2), np.float64)
    y, norms = vl_nnnormalizelp(x, "P", 4, "Dimensions", [1, 3], "Epsilon", 1e-3)
    for got in (vl_nnnormalizelp(x, "exponent", 4.0, "DIMENSIONS", np.array([1, 3]), "epsilon", 1e-3),
                vl_nnnormalizelp(np.ascontiguousarray(x), p=4, dimensions=(3, 1), epsilon=1e-3)):
        np.testing.assert_array_equal(got[0], y)
        np.testing.assert_array_equal(got[1], norms)
    np.testing.assert_array_equal(vl_nnnormalizelp(x, "Spatial")[0], vl_nnnormalizelp(x, dimensions=[1, 2])[0])
    np.testing.assert_array_equal(vl_nnnormalizelp(x, [])[0], vl_nnnormalizelp(x)[0])
    dzdx = vl_nnnormalizelp(x, dzdy, "p", 4, "dimensions", [1, 3], "epsilon", 1e-3)
    np.testing.assert_array_equal(vl_nnnormalizelp(x, dzdy=dzdy, p=4, dimensions=[1, 3], epsilon=1e-3), dzdx)
    # given norms (any shape of the right size): used as they are, returned as given
    given = np.abs(randn(rng, norms.shape, np.float64)) + 1
    y_given, norms_back = vl_nnnormalizelp(x, "Norms", given.ravel(order="F"), "p", 4, "dimensions", [1, 3])
    np.testing.assert_array_equal(norms_back, given)
    np.testing.assert_allclose(y_given, lp_reference(x, (1, 3), 4, 0, norms=given)[0], rtol=1e-15)
    dzdx_given = vl_nnnormalizelp(x, dzdy, p=4, dimensions=[1, 3], norms=given)
    np.testing.assert_allclose(dzdx_given, lp_reference(x, (1, 3), 4, 0, dzdy, norms=given), rtol=1e-13, atol=1e-15)
    # the computed norms given back give the same results
    np.testing.assert_array_equal(vl_nnnormalizelp(x, dzdy, p=4, dimensions=[1, 3], epsilon=1e-3, norms=norms), dzdx)


@pytest.mark.parametrize("opts", [{}, {"spatial": True}, {"p": 4, "dimensions": [1, 3]},
                                  {"dimensions": [1, 2, 3, 4], "epsilon": 1.0}], ids=str)
def test_derivatives(opts):
    rng = np.random.default_rng(2)
    x, dzdy = randn(rng, (3, 4, 5, 2), np.float64), randn(rng, (3, 4, 5, 2), np.float64)
    dzdx = vl_nnnormalizelp(x, dzdy, **opts)
    check_derivative(lambda t: vl_nnnormalizelp(t, **opts)[0], x, dzdy, dzdx, method="central", rtol=1e-7,
                     atol=1e-9)
    check_derivative(lambda t: vl_nnnormalizelp(t, **opts)[0], x, dzdy, dzdx)  # MatConvNet's own check


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    """Autograd of the formula (torch.nn.functional.normalize divides by max(norm, eps) instead)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, dzdy = randn(rng, (4, 5, 6, 3), dtype), randn(rng, (4, 5, 6, 3), dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    norms = ((xt ** 4).sum(dim=(0, 2), keepdim=True) + 1e-3) ** 0.25
    yt = xt / norms
    yt.backward(torch.tensor(dzdy.astype(np.float64)))
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    y, got_norms = vl_nnnormalizelp(x, p=4, dimensions=[1, 3], epsilon=1e-3)
    np.testing.assert_allclose(got_norms, norms.detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=rtol)
    dzdx = vl_nnnormalizelp(x, dzdy, p=4, dimensions=[1, 3], epsilon=1e-3)
    np.testing.assert_allclose(dzdx, xt.grad.numpy(), rtol=rtol, atol=rtol * np.abs(dzdx).max())


def load_reference():
    cases = scipy.io.loadmat(os.path.join(DATA, "mcn_normalizelp.mat"), squeeze_me=False,
                             struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


def mcn_options(case):
    """The case's name/value options as Python values (MATLAB strings and scalars arrive as arrays)."""
    opts = list(case.opts.ravel()) if case.opts.size else []
    return [o.item() if isinstance(o, np.ndarray) and (o.dtype.kind == "U" or o.size == 1) else o for o in opts]


@pytest.mark.parametrize("case", load_reference())
def test_matches_matconvnet(case):
    """MatConvNet beta25's own outputs (its MEX). It sums in x's type; cnnx in double, rounding the
    norms once: a few ulps of each result's scale."""
    opts = mcn_options(case)
    ulps = 8 * np.finfo(case.x.dtype).eps
    y, norms = vl_nnnormalizelp(case.x, *opts)
    dzdx = vl_nnnormalizelp(case.x, case.dzdy, *opts)
    # MATLAB drops trailing singleton dimensions of the norms: compare them in MatConvNet's shape
    assert norms.size == case.norms.size and norms.shape[:case.norms.ndim] == case.norms.shape
    for got, expected in ((y, case.y), (norms.reshape(case.norms.shape), case.norms), (dzdx, case.dzdx)):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=ulps, atol=ulps * np.abs(expected).max())


def test_same_bits_at_any_thread_count(restore_threads):
    rng = np.random.default_rng(4)
    x, dzdy = randn(rng, (33, 31, 16, 4), np.float32), randn(rng, (33, 31, 16, 4), np.float32)
    for opts in ({}, {"spatial": True}, {"dimensions": [1, 4]}):
        results = []
        for n in (1, 2):
            cnnx.set_num_threads(n)
            results.append(vl_nnnormalizelp(x, **opts) + (vl_nnnormalizelp(x, dzdy, **opts),))
        for one, two in zip(*results):
            assert one.tobytes() == two.tobytes()


def test_empty_reductions_and_images():
    # no channels: each norm is epsilon^(1/p); no images: no norms
    y, norms = vl_nnnormalizelp(np.zeros((2, 3, 0, 2)))
    assert y.shape == (2, 3, 0, 2) and norms.shape == (2, 3, 1, 2)
    np.testing.assert_allclose(norms, 0.1, rtol=1e-15)
    y, norms = vl_nnnormalizelp(np.zeros((2, 3, 4, 0)))
    assert y.shape == (2, 3, 4, 0) and norms.shape == (2, 3, 1, 0)
    assert vl_nnnormalizelp(np.zeros((2, 3, 4, 0)), np.zeros((2, 3, 4, 0))).shape == (2, 3, 4, 0)

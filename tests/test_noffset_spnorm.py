"""vl_nnnoffset and vl_nnspnorm, and their layer kinds ('noffset'/dagnn.NormOffset, 'spnorm'/
dagnn.SpatialNorm): NumPy references, finite differences, PyTorch, MatConvNet's outputs, threads,
both graphs, model files."""
import os
import re

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnnoffset, vl_nnspnorm
from cnnx.dagnn import DagNN, NormOffset, SpatialNorm
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn, vl_simplenn_tidy
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
DATA = os.path.join(os.path.dirname(__file__), "data")


def as4(a):
    return a.astype(np.float64).reshape(a.shape + (1,) * (4 - a.ndim))


def noffset_reference(x, param, dzdy=None):
    """MatConvNet's formulas in float64."""
    k, alpha = param
    x4 = as4(x)
    level = np.maximum((x4 ** 2).sum(axis=2, keepdims=True), 1e-8)
    if dzdy is None:
        return (x4 - k * level ** alpha).reshape(x.shape)
    d = as4(dzdy)
    return (d - 2 * k * alpha * x4 * d.sum(axis=2, keepdims=True) * level ** (alpha - 1)).reshape(x.shape)


def spnorm_reference(x, param, dzdy=None):
    """MatConvNet's formulas in float64, pixel by pixel: the mean of x^2 over each clipped window."""
    ph, pw, alpha, beta = param
    x4 = as4(x)
    height, width = x4.shape[:2]
    top, left = (int(ph) - 1) // 2, (int(pw) - 1) // 2
    windows = {}
    for i in range(height):
        for j in range(width):
            windows[i, j] = (slice(max(0, i - top), min(height, i - top + int(ph))),
                             slice(max(0, j - left), min(width, j - left + int(pw))))
    level = np.empty_like(x4)
    for (i, j), (rows, cols) in windows.items():
        level[i, j] = 1 + alpha * (x4[rows, cols] ** 2).mean(axis=(0, 1))
    if dzdy is None:
        return (x4 * level ** -beta).reshape(x.shape)
    d = as4(dzdy)
    weighted = d * x4 * level ** (-beta - 1)
    adjoint = np.zeros_like(x4)
    for (i, j), (rows, cols) in windows.items():
        area = (rows.stop - rows.start) * (cols.stop - cols.start)
        adjoint[rows, cols] += weighted[i, j] / area
    return (d * level ** -beta - 2 * alpha * beta * x4 * adjoint).reshape(x.shape)


def randn(rng, shape, dtype, scale=1.0):
    return np.asfortranarray(rng.standard_normal(shape) * scale, dtype=dtype)


BLOCKS = {
    "noffset": (vl_nnnoffset, noffset_reference, [(1, 0.5), (0.34, 0.5), (-2, 1.5), (0.5, -0.25)]),
    "spnorm": (vl_nnspnorm, spnorm_reference, [(3, 3, 0.1, 0.75), (2, 4, 0.5, 0.5), (1, 1, 2, 1), (5, 2, 10, 2),
                                               (9, 7, 1, 0.5)]),
}
CASES = [(name, param) for name, (_, _, params) in BLOCKS.items() for param in params]
SHAPES = [(4, 5, 6, 2), (1, 1, 7, 3), (40, 3, 2, 1), (4, 3, 5), (5, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name, param", CASES, ids=str)
def test_matches_reference(name, param, shape, dtype):
    block, reference, _ = BLOCKS[name]
    rng = np.random.default_rng(0)
    x, dzdy = randn(rng, shape, dtype, 2.0), randn(rng, shape, dtype)
    # values computed in double and rounded once; spnorm's window means (vl_nnpool's) are in x's type
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for got, expected in ((block(x, param), reference(x, param)), (block(x, param, dzdy), reference(x, param, dzdy))):
        assert got.shape == x.shape and got.dtype == dtype and got.flags.f_contiguous
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("name", BLOCKS)
def test_call_forms(name):
    block, _, params = BLOCKS[name]
    rng = np.random.default_rng(1)
    x, dzdy = randn(rng, (4, 4, 3, 2), np.float64), randn(rng, (4, 4, 3, 2), np.float64)
    expected = block(x, params[0], dzdy)
    for got in (block(x, np.array(params[0]), dzdy=dzdy), block(np.ascontiguousarray(x), params[0],
                                                                  np.ascontiguousarray(dzdy))):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(block(x, params[0], []), block(x, params[0]))


@pytest.mark.parametrize("name, param", CASES, ids=str)
def test_derivatives(name, param):
    block = BLOCKS[name][0]
    rng = np.random.default_rng(2)
    x, dzdy = randn(rng, (5, 4, 3, 2), np.float64), randn(rng, (5, 4, 3, 2), np.float64)
    dzdx = block(x, param, dzdy)
    check_derivative(lambda t: block(t, param), x, dzdy, dzdx, method="central", rtol=1e-7, atol=1e-9)
    check_derivative(lambda t: block(t, param), x, dzdy, dzdx)  # MatConvNet's own check


def test_noffset_floor():
    # L = max(sum x^2, 1e-8): a pixel of zeros is offset by k * 1e-8^alpha, and its derivative is dzdy
    x = np.zeros((1, 1, 3))
    np.testing.assert_allclose(vl_nnnoffset(x, [2, 0.5]), -2e-4, rtol=1e-15)
    dzdy = np.array([1.0, 2.0, 3.0]).reshape(x.shape)
    np.testing.assert_array_equal(vl_nnnoffset(x, [2, 0.5], dzdy), dzdy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    """noffset: autograd of its formula; spnorm: torch's average pooling leaving the padding out
    (count_include_pad=False; symmetric padding, so odd windows)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, dzdy = randn(rng, (6, 7, 4, 3), dtype, 2.0), randn(rng, (6, 7, 4, 3), dtype)

    def to_torch(a):  # (H, W, C, N) -> (N, C, H, W)
        return torch.tensor(np.ascontiguousarray(a.astype(np.float64).transpose(3, 2, 0, 1)))

    def from_torch(t):
        return t.detach().numpy().transpose(2, 3, 1, 0)

    def noffset(t, k=0.7, alpha=0.75):
        return t - k * (t * t).sum(dim=1, keepdim=True).clamp(min=1e-8) ** alpha

    def spnorm(t, ph=3, pw=5, alpha=0.5, beta=0.75):
        mean = torch.nn.functional.avg_pool2d(t * t, (ph, pw), stride=1, padding=(ph // 2, pw // 2),
                                              count_include_pad=False)
        return t * (1 + alpha * mean) ** -beta

    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for block, param, formula in ((vl_nnnoffset, [0.7, 0.75], noffset), (vl_nnspnorm, [3, 5, 0.5, 0.75], spnorm)):
        xt = to_torch(x).requires_grad_(True)
        formula(xt).backward(to_torch(dzdy))
        for got, expected in ((block(x, param), from_torch(formula(xt))), (block(x, param, dzdy), from_torch(xt.grad))):
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def load_reference(name):
    cases = scipy.io.loadmat(os.path.join(DATA, f"mcn_{name}.mat"), squeeze_me=False,
                             struct_as_record=False)["cases"][0]
    return [pytest.param(name, c[0, 0], id=f"{name}-{c[0, 0].name[0]}") for c in cases]


@pytest.mark.parametrize("name, case", load_reference("noffset") + load_reference("spnorm"))
def test_matches_matconvnet(name, case):
    """MatConvNet beta25's own outputs. It computes in x's type; cnnx in double (spnorm's window
    means excepted), rounding once, and matches the float64 reference above to a few ulps."""
    block, reference, _ = BLOCKS[name]
    param = case.param.ravel().tolist()
    ulps = 4 * np.finfo(case.x.dtype).eps
    for got, expected, dzdy in ((block(case.x, param), case.y, None),
                                (block(case.x, param, case.dzdy), case.dzdx, case.dzdy)):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=ulps, atol=ulps * scale)
        np.testing.assert_allclose(got, reference(case.x, param, dzdy), rtol=ulps / 2, atol=ulps / 2 * scale)


@pytest.mark.parametrize("name", BLOCKS)
def test_same_bits_at_any_thread_count(name, restore_threads):
    block, _, params = BLOCKS[name]
    rng = np.random.default_rng(4)
    shape = (41, 40, 16, 4)  # two threads for the kernels and for pooling, a partial last block of pixels
    x, dzdy = randn(rng, shape, np.float32), randn(rng, shape, np.float32)
    results = []
    for n in (1, 2):
        cnnx.set_num_threads(n)
        results.append((block(x, params[0]), block(x, params[0], dzdy)))
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


# ------------------------------------------------------------------------------------------------
# The layer kinds
# ------------------------------------------------------------------------------------------------


def network(dtype, rng):
    conv = {"type": "conv", "name": "conv1", "weights": [randn(rng, (3, 3, 2, 4), dtype, 0.5),
                                                         randn(rng, (1, 4), dtype, 0.1)], "pad": 1}
    return {"layers": [conv, {"type": "noffset", "name": "off", "param": [0.3, 0.5]},
                       {"type": "spnorm", "name": "sp", "param": np.array([[3.0, 2.0, 0.5, 0.75]])}]}


@pytest.mark.parametrize("dtype", DTYPES)
def test_simplenn_and_dagnn_give_identical_values_and_derivatives(dtype):
    rng = np.random.default_rng(5)
    net = network(dtype, rng)
    x, dzdy = randn(rng, (5, 6, 2, 3), dtype), randn(rng, (5, 6, 4, 3), dtype)
    res = vl_simplenn(net, x, dzdy)
    np.testing.assert_array_equal(res[2]["x"], vl_nnnoffset(res[1]["x"], [0.3, 0.5]))
    np.testing.assert_array_equal(res[3]["x"], vl_nnspnorm(res[2]["x"], [3, 2, 0.5, 0.75]))
    np.testing.assert_array_equal(res[2]["dzdx"], vl_nnspnorm(res[2]["x"], [3, 2, 0.5, 0.75], dzdy))
    np.testing.assert_array_equal(res[1]["dzdx"], vl_nnnoffset(res[1]["x"], [0.3, 0.5], res[2]["dzdx"]))
    dag = DagNN.from_simplenn(net)
    blocks = [layer.block for layer in dag.layers[1:]]
    assert [type(b) for b in blocks] == [NormOffset, SpatialNorm]
    assert [b.param for b in blocks] == [(0.3, 0.5), (3, 2, 0.5, 0.75)]
    dag.conserve_memory = False
    dag.eval({"x0": x}, {"x3": dzdy})
    for i in range(4):
        np.testing.assert_array_equal(dag.get_var(f"x{i}").value, res[i]["x"])
        np.testing.assert_array_equal(dag.get_var(f"x{i}").der, res[i]["dzdx"])
    assert dag.get_var_sizes({"x0": x.shape})["x3"] == (5, 6, 4, 3)


def test_defaults_and_missing_params():
    assert NormOffset().param == (1.0, 0.5) and SpatialNorm().param == (2, 2, 10.0, 2.0)  # MatConvNet's
    for kind, what in (("noffset", "[k alpha] of vl_nnnoffset"), ("spnorm", "[PH PW alpha beta] of vl_nnspnorm")):
        with pytest.raises(ValueError, match=re.escape(
                f"vl_simplenn_tidy: layers[0]: missing field 'param' ({what}; vl_simplenn_tidy has "
                "no default for it)")):
            vl_simplenn_tidy({"layers": [{"type": kind}]})


def test_bad_params_name_the_layer_or_the_block():
    expected = "4 finite real numbers [PH PW ALPHA BETA] with PH and PW whole numbers from 1 to 2^62 - 1"
    with pytest.raises(ValueError, match=re.escape(
            f"vl_simplenn_tidy: layers[0] ('sp'): param must be {expected}, got [0, 2, 1, 1]")):
        vl_simplenn_tidy({"layers": [{"type": "spnorm", "name": "sp", "param": [0, 2, 1, 1]}]})
    with pytest.raises(ValueError, match=re.escape(f"SpatialNorm: param must be {expected}, got [3, 3, 1]")):
        SpatialNorm(param=[3, 3, 1])
    with pytest.raises(ValueError, match=re.escape(
            "NormOffset: param must be 2 finite real numbers [K ALPHA], got [1, nan]")):
        NormOffset(param=[1, np.nan])


def test_model_files_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    net = network(np.float32, rng)
    path = os.path.join(tmp_path, "simple.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)
    assert [layer["type"] for layer in loaded["layers"]] == ["conv", "noffset", "spnorm"]
    x = randn(rng, (5, 5, 2, 1), np.float32)
    np.testing.assert_array_equal(vl_simplenn(loaded, x)[-1]["x"], vl_simplenn(net, x)[-1]["x"])
    path = os.path.join(tmp_path, "dag.mat")
    save_matconvnet(DagNN.from_simplenn(net), path)
    again = load_matconvnet(path)
    assert [(type(layer.block), layer.block.param) for layer in again.layers[1:]] == [
        (NormOffset, (0.3, 0.5)), (SpatialNorm, (3, 2, 0.5, 0.75))]
    saved = again.saveobj()["layers"]
    assert [s["type"] for s in saved[1:]] == ["dagnn.NormOffset", "dagnn.SpatialNorm"]
    np.testing.assert_array_equal(saved[2]["block"]["param"], [3, 2, 0.5, 0.75])

"""vl_nnnormalize (LRN) and its layer kind ('normalize'/'lrn', dagnn.LRN): a NumPy reference, finite
differences, PyTorch, MatConvNet's outputs, threads, both graphs, model files."""
import os
import re

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnnormalize
from cnnx.dagnn import LRN, DagNN
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn, vl_simplenn_tidy
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
DATA = os.path.join(os.path.dirname(__file__), "data")


def lrn_reference(x, param, dzdy=None, magnitudes=False):
    """MatConvNet's formulas in float64, window by window, with the exact power. With
    ``magnitudes``, backward gives the sum of the sizes of dzdx's terms instead of their sum."""
    depth, kappa, alpha, beta = param
    x4 = x.astype(np.float64).reshape(x.shape + (1,) * (4 - x.ndim))
    channels = x4.shape[2]
    before, after = (int(depth) - 1) // 2, int(depth) - 1 - (int(depth) - 1) // 2
    windows = [range(max(0, k - before), min(channels, k + after + 1)) for k in range(channels)]
    level = np.stack([kappa + alpha * (x4[:, :, list(w)] ** 2).sum(axis=2) for w in windows], axis=2)
    if dzdy is None:
        return (x4 * level ** -beta).reshape(x.shape)
    d = dzdy.astype(np.float64).reshape(x4.shape)
    scale = alpha * beta
    if magnitudes:
        d, x4, scale = np.abs(d), np.abs(x4), -abs(scale)
    weighted = d * x4 * level ** (-beta - 1)
    dzdx = d * level ** -beta
    for t, w in enumerate(windows):
        for q in w:
            dzdx[:, :, q] -= 2 * scale * x4[:, :, q] * weighted[:, :, t]
    return dzdx.reshape(x.shape)


def randn(rng, shape, dtype, scale=1.0):
    return np.asfortranarray(rng.standard_normal(shape) * scale, dtype=dtype)


SHAPES = [(3, 4, 7, 2), (1, 1, 12, 5), (40, 3, 5, 1), (4, 3, 6), (5, 2)]
PARAMS = [(5, 1, 2e-5, 0.75), (1, 0.1, 0.5, 0.75), (2, 2, 0.3, 0.5), (3, 1, 1, 1), (4, 0.5, 2, 0.25),
          (8, 1, 0.1, 1.5), (13, 0, 1, 0.5), (2**40, 1, 0.2, 0.75)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("param", PARAMS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape, param, dtype):
    rng = np.random.default_rng(0)
    x, dzdy = randn(rng, shape, dtype, 2.0), randn(rng, shape, dtype)
    # one rounding of values computed in double; backward's terms may cancel, so its errors are
    # relative to the size of the terms
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    sizes = lrn_reference(x, param, dzdy, magnitudes=True)
    for got, expected, scale in ((vl_nnnormalize(x, param), lrn_reference(x, param), np.abs(x).max()),
                                 (vl_nnnormalize(x, param, dzdy), lrn_reference(x, param, dzdy), sizes.max())):
        assert got.shape == x.shape and got.dtype == dtype and got.flags.f_contiguous
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def test_call_forms():
    rng = np.random.default_rng(1)
    x, dzdy = randn(rng, (3, 3, 6, 2), np.float64), randn(rng, (3, 3, 6, 2), np.float64)
    param = [5, 1, 0.125, 0.75]  # exact in float32 too
    expected = vl_nnnormalize(x, param, dzdy)
    for got in (vl_nnnormalize(x, np.array(param), dzdy=dzdy), vl_nnnormalize(x, tuple(param), dzdy),
                vl_nnnormalize(np.ascontiguousarray(x), np.array([param]).T, np.ascontiguousarray(dzdy))):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(vl_nnnormalize(x, param, []), vl_nnnormalize(x, param))
    np.testing.assert_array_equal(vl_nnnormalize(x, np.array(param, np.float32)), vl_nnnormalize(x, param))


@pytest.mark.parametrize("param", [(5, 1, 0.3, 0.75), (2, 0.5, 1, 0.5), (4, 1, 2, 1.25), (11, 2, 1, 0.75)], ids=str)
def test_derivatives(param):
    rng = np.random.default_rng(2)
    x, dzdy = randn(rng, (3, 2, 6, 2), np.float64), randn(rng, (3, 2, 6, 2), np.float64)
    dzdx = vl_nnnormalize(x, param, dzdy)
    check_derivative(lambda t: vl_nnnormalize(t, param), x, dzdy, dzdx, method="central", rtol=1e-7, atol=1e-10)
    check_derivative(lambda t: vl_nnnormalize(t, param), x, dzdy, dzdx)  # MatConvNet's own check


def test_window_sums_are_exact():
    # A running sum (add the square entering the window, subtract the one leaving it) loses the
    # small squares once a large one has passed; the window sums here are sums of the window's terms.
    x = np.array([1e8] + [1e-3] * 9).reshape(1, 1, 10)
    y = vl_nnnormalize(x, [3, 0, 1, 0.5])
    np.testing.assert_allclose(y, lrn_reference(x, [3, 0, 1, 0.5]), rtol=1e-15)
    np.testing.assert_allclose(y.ravel()[2:9], 1 / np.sqrt(3), rtol=1e-15)  # the last window has 2 channels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("depth", [1, 2, 5, 6, 9])
def test_against_torch(dtype, depth):
    """torch's local_response_norm divides alpha by the window size, and centres an even window
    one channel lower (before = N // 2): with the channels reversed, its window is this one."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, dzdy = randn(rng, (4, 5, 9, 3), dtype, 2.0), randn(rng, (4, 5, 9, 3), dtype)
    kappa, alpha, beta = 1.5, 0.3, 0.75

    def to_torch(a):  # (H, W, C, N) -> (N, C, H, W), channels reversed
        return torch.tensor(np.ascontiguousarray(a.astype(np.float64)[:, :, ::-1].transpose(3, 2, 0, 1)))

    def from_torch(t):
        return t.detach().numpy().transpose(2, 3, 1, 0)[:, :, ::-1]

    xt = to_torch(x).requires_grad_(True)
    yt = torch.nn.functional.local_response_norm(xt, depth, alpha=depth * alpha, beta=beta, k=kappa)
    yt.backward(to_torch(dzdy))
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    param = [depth, kappa, alpha, beta]
    for got, expected in ((vl_nnnormalize(x, param), from_torch(yt)),
                          (vl_nnnormalize(x, param, dzdy), from_torch(xt.grad))):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def load_reference():
    cases = scipy.io.loadmat(os.path.join(DATA, "mcn_normalize.mat"), squeeze_me=False,
                             struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


@pytest.mark.parametrize("case", load_reference())
def test_matches_matconvnet(case):
    """MatConvNet beta25's outputs, computed with its approximate power (fast_pow: cubic log2 and
    exp2 polynomials, ~0.2 % mean and ~0.35 % worst relative error), and the same block with the
    exact power (y_exactpow, dzdx_exactpow), which cnnx computes."""
    param = case.param.ravel().tolist()
    ulps = 8 * np.finfo(case.x.dtype).eps
    y, dzdx = vl_nnnormalize(case.x, param), vl_nnnormalize(case.x, param, case.dzdy)
    assert y.shape == case.y.shape and y.dtype == case.y.dtype and dzdx.shape == case.dzdx.shape
    # exact power: MatConvNet's rounding errors only (its running window sums, its data type)
    np.testing.assert_allclose(y, case.y_exactpow, rtol=ulps, atol=ulps * np.abs(case.y_exactpow).max())
    np.testing.assert_allclose(dzdx, case.dzdx_exactpow, rtol=ulps, atol=ulps * np.abs(case.dzdy).max())
    # MatConvNet's approximate power: y = x L^-beta inherits fast_pow's relative error (at most
    # 0.35 %); so does each term of dzdx, which is then within 0.35 % of the sum of its terms' sizes
    np.testing.assert_allclose(y, case.y, rtol=3.5e-3, atol=0)
    bound = 3.5e-3 * lrn_reference(case.x, param, case.dzdy, magnitudes=True)
    assert (np.abs(dzdx - case.dzdx) <= bound + ulps * np.abs(case.dzdy).max()).all()


def test_same_bits_at_any_thread_count(restore_threads):
    rng = np.random.default_rng(4)
    shape = (33, 31, 16, 4)  # enough work for two threads, and a partial last block of pixels
    x, dzdy = randn(rng, shape, np.float32), randn(rng, shape, np.float32)
    results = []
    for n in (1, 2):
        cnnx.set_num_threads(n)
        results.append((vl_nnnormalize(x, [5, 1, 1e-2, 0.75]), vl_nnnormalize(x, [5, 1, 1e-2, 0.75], dzdy)))
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


# ------------------------------------------------------------------------------------------------
# The layer kind
# ------------------------------------------------------------------------------------------------


def network(dtype, rng, kind="normalize", **fields):
    conv = {"type": "conv", "name": "conv1", "weights": [randn(rng, (3, 3, 2, 6), dtype, 0.5),
                                                         randn(rng, (1, 6), dtype, 0.1)], "pad": 1}
    return {"layers": [conv, {"type": kind, "name": "norm1", **fields}, {"type": "relu", "name": "relu1"}]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normalize", "lrn"])
def test_simplenn_and_dagnn_give_identical_values_and_derivatives(dtype, kind):
    rng = np.random.default_rng(5)
    param = [3, 1, 0.5, 0.75]
    net = network(dtype, rng, kind, param=param)
    x, dzdy = randn(rng, (5, 5, 2, 3), dtype), randn(rng, (5, 5, 6, 3), dtype)
    res = vl_simplenn(net, x, dzdy)
    np.testing.assert_array_equal(res[2]["x"], vl_nnnormalize(res[1]["x"], param))
    np.testing.assert_array_equal(res[1]["dzdx"], vl_nnnormalize(res[1]["x"], param, res[2]["dzdx"]))
    dag = DagNN.from_simplenn(net)
    block = dag.layers[1].block
    assert type(block) is LRN and block.param == (3, 1.0, 0.5, 0.75) and block.block_type() == "dagnn.LRN"
    dag.conserve_memory = False
    dag.eval({"x0": x}, {"x3": dzdy})
    for i in range(4):
        np.testing.assert_array_equal(dag.get_var(f"x{i}").value, res[i]["x"])
        np.testing.assert_array_equal(dag.get_var(f"x{i}").der, res[i]["dzdx"])
    assert dag.get_var_sizes({"x0": x.shape})["x2"] == (5, 5, 6, 3)


def test_defaults_are_matconvnets(capsys):
    tidy = vl_simplenn_tidy({"layers": [{"type": "normalize"}, {"type": "lrn"}]})
    assert [layer["param"] for layer in tidy["layers"]] == [[5, 1, 0.0001 / 5, 0.75]] * 2
    assert LRN().param == (5, 1.0, 0.0001 / 5, 0.75)
    cnnx.vl_simplenn_display(tidy, input_size=[4, 4, 3, 1])
    assert re.search(r"type\|input\| *norm\| *lrn\|", capsys.readouterr().out)


def test_bad_params_name_the_layer_or_the_block():
    x = np.ones((2, 2, 3, 1), np.float32)
    expected = "4 finite real numbers [N KAPPA ALPHA BETA] with N a whole number from 1 to 2^62 - 1"
    with pytest.raises(ValueError, match=re.escape(
            f"vl_simplenn: layers[1] ('norm1'): param must be {expected}, got [1.5, 1, 1, 1]")):
        vl_simplenn(network(np.float32, np.random.default_rng(6), param=[1.5, 1, 1, 1]), x)
    with pytest.raises(ValueError, match=re.escape(f"LRN: param must be {expected}, got [5, 1, 1]")):
        LRN(param=[5, 1, 1])
    with pytest.raises(TypeError, match=re.escape(f"LRN: param must be {expected}, got the string 'x'")):
        LRN(param="x")


def test_model_files_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    net = network(np.float32, rng, param=[3, 2, 0.25, 0.5])
    net["layers"].append({"type": "lrn", "param": np.array([[7.0, 1.0, 1e-4, 0.75]])})
    path = os.path.join(tmp_path, "simple.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)
    assert [layer["type"] for layer in loaded["layers"]] == ["conv", "normalize", "relu", "lrn"]
    np.testing.assert_array_equal(np.ravel(loaded["layers"][1]["param"]), [3, 2, 0.25, 0.5])
    x = randn(rng, (5, 5, 2, 1), np.float32)
    np.testing.assert_array_equal(vl_simplenn(loaded, x)[-1]["x"], vl_simplenn(net, x)[-1]["x"])
    dag = DagNN.from_simplenn(net)
    path = os.path.join(tmp_path, "dag.mat")
    save_matconvnet(dag, path)
    again = load_matconvnet(path)
    assert [layer.block.param for layer in again.layers if isinstance(layer.block, LRN)] == [
        (3, 2.0, 0.25, 0.5), (7, 1.0, 1e-4, 0.75)]
    saved = again.saveobj()["layers"][1]
    assert saved["type"] == "dagnn.LRN"
    np.testing.assert_array_equal(saved["block"]["param"], [3, 2, 0.25, 0.5])

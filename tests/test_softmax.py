"""vl_nnsoftmax and vl_nnsigmoid, and their layer kinds ('softmax'/dagnn.SoftMax, 'sigmoid'/dagnn.Sigmoid):
a NumPy reference, finite differences, PyTorch, MatConvNet's outputs, threads, both graphs, model files."""
import os
import re

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnsigmoid, vl_nnsoftmax
from cnnx.dagnn import DagNN, Sigmoid, SoftMax
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn, vl_simplenn_tidy
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
DATA = os.path.join(os.path.dirname(__file__), "data")


def softmax_reference(x, dzdy=None):
    """MatConvNet's formulas in float64 along the third dimension of the 4-D view of x."""
    x4 = x.astype(np.float64).reshape(x.shape + (1,) * (4 - x.ndim))
    e = np.exp(x4 - x4.max(axis=2, keepdims=True))
    y = e / e.sum(axis=2, keepdims=True)
    if dzdy is None:
        return y.reshape(x.shape)
    d = dzdy.astype(np.float64).reshape(x4.shape)
    return (y * (d - (d * y).sum(axis=2, keepdims=True))).reshape(x.shape)


def sigmoid_reference(x, dzdy=None):
    y = 1 / (1 + np.exp(-x.astype(np.float64)))
    return y if dzdy is None else dzdy.astype(np.float64) * y * (1 - y)


BLOCKS = [(vl_nnsoftmax, softmax_reference), (vl_nnsigmoid, sigmoid_reference)]
SHAPES = [(3, 4, 5, 2), (1, 1, 10, 7), (600, 1, 3, 1), (4, 3, 6), (5, 2), (2, 2, 1, 3)]


def randn(rng, shape, dtype, scale=3.0):
    return np.asfortranarray(rng.standard_normal(shape) * scale, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block, reference", BLOCKS, ids=["softmax", "sigmoid"])
def test_matches_reference(block, reference, shape, dtype):
    rng = np.random.default_rng(0)
    x, dzdy = randn(rng, shape, dtype), randn(rng, shape, dtype, 1.0)
    # one rounding of a value computed in double: half an ulp of the result, and of its scale
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    for got, expected in ((block(x), reference(x)), (block(x, dzdy), reference(x, dzdy))):
        assert got.shape == x.shape and got.dtype == dtype and got.flags.f_contiguous
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("block", [vl_nnsoftmax, vl_nnsigmoid])
def test_call_forms(block):
    rng = np.random.default_rng(1)
    x, dzdy = randn(rng, (3, 3, 4, 2), np.float64), randn(rng, (3, 3, 4, 2), np.float64)
    expected = block(x, dzdy)
    for got in (block(x, dzdy=dzdy), block(np.ascontiguousarray(x), np.ascontiguousarray(dzdy))):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(block(x, []), block(x))
    np.testing.assert_array_equal(block(x, None), block(x))


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (2, 3, 4), (1, 1, 6, 3)])
@pytest.mark.parametrize("block", [vl_nnsoftmax, vl_nnsigmoid])
def test_derivatives(block, shape):
    rng = np.random.default_rng(2)
    x, dzdy = randn(rng, shape, np.float64, 2.0), randn(rng, shape, np.float64, 1.0)
    check_derivative(block, x, dzdy, block(x, dzdy), method="central", rtol=1e-7, atol=1e-9)
    check_derivative(block, x, dzdy, block(x, dzdy))  # MatConvNet's own check


def test_softmax_is_shift_invariant_and_does_not_overflow():
    x = np.array([1000.0, 1001.0, 999.0]).reshape(1, 1, 3)
    np.testing.assert_allclose(vl_nnsoftmax(x), vl_nnsoftmax(x - 1000), rtol=1e-15)
    assert np.isfinite(vl_nnsoftmax(x.astype(np.float32))).all()
    np.testing.assert_allclose(vl_nnsoftmax(x).sum(), 1.0, rtol=1e-15)


def test_nan_and_inf():
    # a NaN (or +inf: inf - inf) at a pixel makes every output of that pixel NaN, as in MatConvNet
    x = np.zeros((2, 1, 3))
    x[0, 0, 1] = np.nan
    x[1, 0, 2] = np.inf
    assert np.isnan(vl_nnsoftmax(x)).all()
    x[1, 0, 2] = -np.inf  # -inf is an ordinary class of probability 0
    np.testing.assert_array_equal(vl_nnsoftmax(x)[1, 0], [0.5, 0.5, 0.0])
    # the sigmoid saturates without overflow, and keeps NaN
    got = vl_nnsigmoid(np.array([-1000.0, 1000.0, np.nan], np.float32))
    np.testing.assert_array_equal(got[:2], [0.0, 1.0])
    assert np.isnan(got[2])
    np.testing.assert_array_equal(vl_nnsigmoid(np.array([-1000.0, 1000.0]), np.ones(2)), [0.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, dzdy = randn(rng, (4, 5, 6, 3), dtype), randn(rng, (4, 5, 6, 3), dtype, 1.0)
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    for block, torch_fn in ((vl_nnsoftmax, lambda t: torch.softmax(t, dim=2)), (vl_nnsigmoid, torch.sigmoid)):
        xt = torch.tensor(x.astype(np.float64), requires_grad=True)
        yt = torch_fn(xt)
        yt.backward(torch.tensor(dzdy.astype(np.float64)))
        for got, expected in ((block(x), yt.detach().numpy()), (block(x, dzdy), xt.grad.numpy())):
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def load_reference(name):
    cases = scipy.io.loadmat(os.path.join(DATA, f"mcn_{name}.mat"), squeeze_me=False,
                             struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


@pytest.mark.parametrize("block, reference, name", [(vl_nnsoftmax, softmax_reference, "softmax"),
                                                    (vl_nnsigmoid, sigmoid_reference, "sigmoid")])
def test_matches_matconvnet(block, reference, name):
    """MatConvNet beta25's own outputs. MatConvNet computes in the data's type, cnnx in double with
    one rounding at the end (it matches the float64 reference above to half an ulp). MatConvNet's
    rounding errors are a few ulps of the terms it adds: y <= 1 forward; backward, terms of the
    size of dzdy, which cancel (dzdy - sum(dzdy .* y) for softmax, 1 - y for the sigmoid), so
    small derivatives can differ from MatConvNet's by a large relative amount."""
    for param in load_reference(name):
        case = param.values[0]
        ulps = 4 * np.finfo(case.x.dtype).eps
        for got, expected, scale in ((block(case.x), case.y, 1.0),
                                     (block(case.x, case.dzdy), case.dzdx, np.abs(case.dzdy).max())):
            assert got.shape == expected.shape and got.dtype == expected.dtype
            np.testing.assert_allclose(got, expected, rtol=ulps, atol=ulps * scale, err_msg=str(case.name[0]))
            np.testing.assert_allclose(got, reference(case.x, case.dzdy if scale != 1.0 else None), rtol=ulps / 8,
                                       atol=ulps / 8 * np.abs(expected).max())


@pytest.mark.parametrize("block", [vl_nnsoftmax, vl_nnsigmoid])
def test_same_bits_at_any_thread_count(block, restore_threads):
    rng = np.random.default_rng(4)
    shape = (32, 33, 10, 4)  # enough work for two threads, and a partial last block of pixels
    x, dzdy = randn(rng, shape, np.float32), randn(rng, shape, np.float32)
    results = []
    for n in (1, 2):
        cnnx.set_num_threads(n)
        results.append((block(x), block(x, dzdy)))
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


# ------------------------------------------------------------------------------------------------
# The layer kinds
# ------------------------------------------------------------------------------------------------


def network(dtype, rng):
    conv = {"type": "conv", "name": "conv1", "weights": [randn(rng, (3, 3, 2, 4), dtype, 0.5),
                                                         randn(rng, (1, 4), dtype, 0.1)], "pad": 1}
    return {"layers": [conv, {"type": "sigmoid", "name": "sig"}, {"type": "softmax", "name": "prob"}]}


@pytest.mark.parametrize("dtype", DTYPES)
def test_simplenn_and_dagnn_give_identical_values_and_derivatives(dtype):
    rng = np.random.default_rng(5)
    net = network(dtype, rng)
    x, dzdy = randn(rng, (5, 5, 2, 3), dtype), randn(rng, (5, 5, 4, 3), dtype)
    res = vl_simplenn(net, x, dzdy)
    np.testing.assert_array_equal(res[2]["x"], vl_nnsigmoid(res[1]["x"]))
    np.testing.assert_array_equal(res[3]["x"], vl_nnsoftmax(res[2]["x"]))
    np.testing.assert_array_equal(res[2]["dzdx"], vl_nnsoftmax(res[2]["x"], dzdy))
    np.testing.assert_array_equal(res[1]["dzdx"], vl_nnsigmoid(res[1]["x"], res[2]["dzdx"]))
    dag = DagNN.from_simplenn(net)
    assert [type(layer.block) for layer in dag.layers[1:]] == [Sigmoid, SoftMax]
    assert [layer.block.block_type() for layer in dag.layers[1:]] == ["dagnn.Sigmoid", "dagnn.SoftMax"]
    dag.conserve_memory = False
    dag.eval({"x0": x}, {"x3": dzdy})
    for i in range(4):
        np.testing.assert_array_equal(dag.get_var(f"x{i}").value, res[i]["x"])
        np.testing.assert_array_equal(dag.get_var(f"x{i}").der, res[i]["dzdx"])
    assert dag.get_var_sizes({"x0": x.shape})["x3"] == (5, 5, 4, 3)


def test_canonical_names_call_the_softmax_output_prob():
    # MatConvNet's fromSimpleNN: the SoftMax's output is 'prob' and its input 'prediction'; a loss
    # reading a 'prob' keeps it
    rng = np.random.default_rng(8)
    net = network(np.float32, rng)
    dag = DagNN.from_simplenn(net, canonical_names=True)
    assert [v.name for v in dag.vars] == ["input", "x1", "prediction", "prob"]
    net["layers"].append({"type": "softmaxloss", "name": "loss"})
    dag = DagNN.from_simplenn(net, canonical_names=True)
    assert dag.get_layer("loss").inputs == ["prob", "label"] and dag.get_layer("loss").outputs == ["objective"]


def test_layers_have_no_fields_and_show_matconvnet_abbreviations(capsys):
    tidy = vl_simplenn_tidy({"layers": [{"type": "softmax"}, {"type": "sigmoid"}]})
    assert [sorted(layer) for layer in tidy["layers"]] == [["name", "precious", "type", "weights"]] * 2
    cnnx.vl_simplenn_display(tidy, input_size=[4, 4, 3, 1])
    table = capsys.readouterr().out
    assert re.search(r"type\|input\|softmx\|sigmoid\|", table)


def test_model_files_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    net = network(np.float32, rng)
    path = os.path.join(tmp_path, "simple.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)
    assert [layer["type"] for layer in loaded["layers"]] == ["conv", "sigmoid", "softmax"]
    x = randn(rng, (5, 5, 2, 1), np.float32)
    np.testing.assert_array_equal(vl_simplenn(loaded, x)[-1]["x"], vl_simplenn(net, x)[-1]["x"])
    dag = DagNN.from_simplenn(net)
    path = os.path.join(tmp_path, "dag.mat")
    save_matconvnet(dag, path)
    again = load_matconvnet(path)
    assert [type(layer.block) for layer in again.layers[1:]] == [Sigmoid, SoftMax]
    assert again.saveobj()["layers"][2]["type"] == "dagnn.SoftMax"

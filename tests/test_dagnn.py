"""DagNN (spec 4): building, evaluation, derivatives, memory, SimpleNN equivalence, save/load."""
import math
import os
import re

import numpy as np
import pytest

from cnnx.activations import vl_nnrelu
from cnnx.conv import vl_nnconv
from cnnx.dagnn import (
    Concat, Conv, DagNN, DropOut, Layer, Loss, Param, Pooling, PReLU, ReLU, Sum, Var,
)
from cnnx.layers import BLOCK_TYPES
from cnnx.nnloss import vl_nnloss
from cnnx.pool import vl_nnpool
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    # These tests run many tiny networks; the graph code does not depend on the thread count.
    pass


# ------------------------------------------------------------------------------------------------
# Networks used by the tests
# ------------------------------------------------------------------------------------------------

POOL1 = dict(method="max", pool_size=3, pad=(0, 1, 0, 1), stride=2)
POOL2 = dict(method="avg", pool_size=3, pad=(0, 1, 0, 1), stride=2)


def random_params(net, rng, dtype):
    """Random values for every parameter (non-zero biases, so that they matter)."""
    for layer in net.layers:
        if isinstance(layer.block, Conv):
            fh, fw, fc, k = layer.block.size
            filters = rng.standard_normal((fh, fw, fc, k)) * math.sqrt(2.0 / (fh * fw * fc))
            net.get_param(layer.params[0]).value = np.asfortranarray(filters, dtype=dtype)
            if layer.block.has_bias:
                net.get_param(layer.params[1]).value = (0.1 * rng.standard_normal((k, 1))).astype(dtype)


def lenet_like(rng, dtype, channels=(3, 8, 8, 10), size=(5, 3, 4)):
    """conv-maxpool-relu-conv-relu-avgpool-conv + softmaxlog and classerror losses (CIFAR lenet's shape)."""
    c0, c1, c2, c3 = channels
    net = DagNN()
    net.add_layer("conv1", Conv(size=(size[0], size[0], c0, c1), pad=size[0] // 2), "input", "x1",
                  ["conv1f", "conv1b"])
    net.add_layer("pool1", Pooling(**POOL1), "x1", "x2")
    net.add_layer("relu1", ReLU(), "x2", "x3")
    net.add_layer("conv2", Conv(size=(size[1], size[1], c1, c2), pad=size[1] // 2), "x3", "x4",
                  ["conv2f", "conv2b"])
    net.add_layer("relu2", ReLU(), "x4", "x5")
    net.add_layer("pool2", Pooling(**POOL2), "x5", "x6")
    net.add_layer("conv3", Conv(size=(size[2], size[2], c2, c3)), "x6", "prediction", ["conv3f", "conv3b"])
    net.add_layer("loss", Loss(), ["prediction", "label"], "objective")
    net.add_layer("error", Loss(loss="classerror"), ["prediction", "label"], "error")
    random_params(net, rng, dtype)
    return net


def lenet_by_hand(net, x, c):
    """The lenet-like network composed from the block functions: values and derivatives."""
    p = {param.name: param.value for param in net.params}
    v = {"input": x}
    v["x1"] = vl_nnconv(x, p["conv1f"], p["conv1b"], pad=net.get_layer("conv1").block.pad)
    v["x2"] = vl_nnpool(v["x1"], 3, pad=(0, 1, 0, 1), stride=2, method="max")
    v["x3"] = vl_nnrelu(v["x2"])
    v["x4"] = vl_nnconv(v["x3"], p["conv2f"], p["conv2b"], pad=net.get_layer("conv2").block.pad)
    v["x5"] = vl_nnrelu(v["x4"])
    v["x6"] = vl_nnpool(v["x5"], 3, pad=(0, 1, 0, 1), stride=2, method="avg")
    v["prediction"] = vl_nnconv(v["x6"], p["conv3f"], p["conv3b"])
    v["objective"] = vl_nnloss(v["prediction"], c)
    v["error"] = vl_nnloss(v["prediction"], c, loss="classerror")

    one = x.dtype.type(1)
    d = {"prediction": vl_nnloss(v["prediction"], c, one)}
    d["x6"], d["conv3f"], d["conv3b"] = vl_nnconv(v["x6"], p["conv3f"], p["conv3b"], d["prediction"])
    d["x5"] = vl_nnpool(v["x5"], 3, d["x6"], pad=(0, 1, 0, 1), stride=2, method="avg")
    d["x4"] = vl_nnrelu(v["x4"], d["x5"])
    d["x3"], d["conv2f"], d["conv2b"] = vl_nnconv(v["x3"], p["conv2f"], p["conv2b"], d["x4"],
                                                  pad=net.get_layer("conv2").block.pad)
    d["x2"] = vl_nnrelu(v["x2"], d["x3"])
    d["x1"] = vl_nnpool(v["x1"], 3, d["x2"], pad=(0, 1, 0, 1), stride=2, method="max")
    d["input"], d["conv1f"], d["conv1b"] = vl_nnconv(x, p["conv1f"], p["conv1b"], d["x1"],
                                                     pad=net.get_layer("conv1").block.pad)
    return v, d


class Scale(Layer):
    """A user-written block: y = s * x with a 1-element parameter s."""

    type_name = "tests.Scale"
    saved_properties = ("note",)

    def __init__(self, note="none"):
        self.note = note

    def forward(self, inputs, params):
        return [inputs[0] * params[0].reshape(())]

    def backward(self, inputs, params, der_outputs):
        dy = der_outputs[0]
        return [dy * params[0].reshape(())], [np.sum(dy * inputs[0]).reshape(params[0].shape)]

    def get_output_sizes(self, input_sizes, param_sizes):
        return [input_sizes[0]]


def branchy(rng, dtype):
    """A DAG with a branch, a Concat, a three-way Sum, a parameter shared by two layers, a PReLU and a
    user block; the input feeds three layers."""
    net = DagNN()
    net.add_layer("a", Conv(size=(3, 3, 3, 4), pad=1), "input", "xa", ["af", "ab"])
    net.add_layer("b", Conv(size=(1, 1, 3, 4)), "input", "xb", ["shared_f", "bb"])
    net.add_layer("relu", ReLU(leak=0.1), "xa", "xr")
    net.add_layer("cat", Concat(dim=3), ["xr", "xb"], "xc")
    net.add_layer("c", Conv(size=(3, 3, 8, 4), pad=1), "xc", "xd", ["cf", "cb"])
    net.add_layer("d", Conv(size=(1, 1, 3, 4)), "input", "xe", ["shared_f", "db"])
    net.add_layer("sum", Sum(), ["xd", "xe", "xb"], "xs")
    net.add_layer("prelu", PReLU(num_channels=4), "xs", "xp", "slopes")
    net.add_layer("scale", Scale(), "xp", "xq", "s")
    net.add_layer("pool", Pooling(method="avg", pool_size=5), "xq", "prediction")
    net.add_layer("loss", Loss(), ["prediction", "label"], "objective")
    random_params(net, rng, dtype)
    net.get_param("slopes").value = rng.uniform(0.1, 0.4, size=(4, 1)).astype(dtype)
    net.get_param("s").value = np.array([[1.5]], dtype=dtype)
    return net


def inputs_for(rng, dtype, size, n, classes):
    x = np.asfortranarray(rng.standard_normal((size, size, 3, n)), dtype=dtype)
    return x, rng.integers(1, classes + 1, size=n)


# ------------------------------------------------------------------------------------------------
# Evaluation equals the blocks composed by hand
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("conserve_memory", [False, True])
def test_lenet_like_equals_blocks_composed_by_hand(dtype, conserve_memory):
    rng = np.random.default_rng(0)
    net = lenet_like(rng, dtype)
    net.conserve_memory = conserve_memory
    x, c = inputs_for(rng, dtype, 16, 4, 10)
    net.eval({"input": x, "label": c}, {"objective": 1})
    values, ders = lenet_by_hand(net, x, c)

    for name in ("objective", "error"):
        np.testing.assert_array_equal(net.get_var(name).value, values[name])
    if not conserve_memory:
        for name, value in values.items():
            np.testing.assert_array_equal(net.get_var(name).value, value, err_msg=name)
        for name in ("x1", "x2", "x3", "x4", "x5", "x6", "prediction"):
            np.testing.assert_array_equal(net.get_var(name).der, ders[name], err_msg=name)
    for param in net.params:
        assert param.der.shape == param.value.shape and param.der.dtype == dtype
        np.testing.assert_array_equal(param.der, ders[param.name], err_msg=param.name)
    np.testing.assert_array_equal(net.get_var("input").der, ders["input"])
    assert net.get_var("label").der is None
    assert net.get_var("objective").value.dtype == dtype


def test_eval_accepts_matconvnet_flat_lists():
    rng = np.random.default_rng(1)
    net = lenet_like(rng, np.float32)
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    net.eval({"input": x, "label": c}, {"objective": 1})
    expected = [p.der for p in net.params]
    net.eval(["input", x, "label", c], ["objective", 1])
    for param, der in zip(net.params, expected):
        np.testing.assert_array_equal(param.der, der)


def test_forward_only_and_missing_labels_skip_the_losses():
    rng = np.random.default_rng(2)
    net = lenet_like(rng, np.float32)
    net.conserve_memory = False
    x, c = inputs_for(rng, np.float32, 16, 3, 10)
    net.eval({"input": x, "label": c})
    assert all(param.der is None for param in net.params)
    prediction = net.get_var("prediction").value
    net.eval({"input": x})  # deploy: no labels, the loss layers do not run
    np.testing.assert_array_equal(net.get_var("prediction").value, prediction)
    assert net.get_var("objective").value is None and net.get_var("label").value is None


# ------------------------------------------------------------------------------------------------
# Derivatives of whole networks (float64 finite differences)
# ------------------------------------------------------------------------------------------------


def objective_of_param(net, inputs, name):
    param = net.get_param(name)

    def g(value):
        saved = param.value
        param.value = value
        net.eval(inputs)
        param.value = saved
        return net.get_var("objective").value

    return g


def objective_of_input(net, inputs, name="input"):
    def g(value):
        net.eval({**inputs, name: value})
        return net.get_var("objective").value

    return g


def check_network_derivatives(net, inputs):
    net.eval(inputs, {"objective": 1})
    analytic = {p.name: p.der.copy() for p in net.params}
    input_der = net.get_var("input").der.copy()
    for param in net.params:
        check_derivative(objective_of_param(net, inputs, param.name), param.value, 1.0,
                         analytic[param.name], method="central", rtol=1e-6)
    check_derivative(objective_of_input(net, inputs), inputs["input"], 1.0, input_der,
                     method="central", rtol=1e-6)


def test_lenet_like_derivatives():
    rng = np.random.default_rng(3)
    net = lenet_like(rng, np.float64, channels=(3, 4, 4, 5), size=(3, 3, 2))
    x, c = inputs_for(rng, np.float64, 8, 2, 5)
    check_network_derivatives(net, {"input": x, "label": c})


def test_branch_concat_sum_shared_param_derivatives():
    rng = np.random.default_rng(4)
    net = branchy(rng, np.float64)
    assert net.get_param("shared_f").fanout == 2 and net.get_var("input").fanout == 3
    x, c = inputs_for(rng, np.float64, 5, 2, 4)
    check_network_derivatives(net, {"input": x, "label": c})


def test_shared_variable_and_parameter_derivatives_are_sums():
    # y = Sum(x, x, relu(x)): dy/dx = 2 + (x > 0); a parameter used by two layers gets both terms.
    net = DagNN()
    net.add_layer("relu", ReLU(), "x", "r")
    net.add_layer("sum", Sum(), ["x", "x", "r"], "y")
    net.add_layer("s1", Scale(), "y", "z1", "s")
    net.add_layer("s2", Scale(), "y", "z2", "s")
    net.add_layer("total", Sum(), ["z1", "z2"], "z")
    net.get_param("s").value = np.array([3.0])
    x = np.array([[-1.0, 2.0], [0.5, -3.0]])
    dz = np.array([[1.0, 2.0], [3.0, 4.0]])
    net.eval({"x": x}, {"z": dz})
    y = 2 * x + np.maximum(x, 0)
    np.testing.assert_array_equal(net.get_var("z").value, 6 * y)
    np.testing.assert_array_equal(net.get_var("x").der, 6 * dz * (2 + (x > 0)))
    np.testing.assert_array_equal(net.get_param("s").der, [2 * np.sum(dz * y)])


def test_derivative_given_for_an_intermediate_variable_adds_to_the_propagated_one():
    net = DagNN()
    net.add_layer("s1", Scale(), "x", "y", "a")
    net.add_layer("s2", Scale(), "y", "z", "b")
    net.get_param("a").value = np.array([2.0])
    net.get_param("b").value = np.array([5.0])
    net.conserve_memory = False
    x = np.ones((2, 2))
    net.eval({"x": x}, {"z": np.ones((2, 2)), "y": np.full((2, 2), 10.0)})
    np.testing.assert_array_equal(net.get_var("y").der, np.full((2, 2), 15.0))
    np.testing.assert_array_equal(net.get_var("x").der, np.full((2, 2), 30.0))


# ------------------------------------------------------------------------------------------------
# SimpleNN and DagNN agree
# ------------------------------------------------------------------------------------------------


def simplenn_net(rng, dtype):
    def conv(name, shape, **opts):
        fh, fw, fc, k = shape
        f = np.asfortranarray(rng.standard_normal(shape) * math.sqrt(2.0 / (fh * fw * fc)), dtype=dtype)
        b = (0.1 * rng.standard_normal((1, k))).astype(dtype)
        return {"type": "conv", "name": name, "weights": [f, b], "learningRate": [0.1, 2], **opts}

    return {"layers": [
        conv("conv1", (5, 5, 3, 8), pad=2),
        {"type": "pool", "name": "pool1", "method": "max", "pool": [3, 3], "stride": 2, "pad": [0, 1, 0, 1]},
        {"type": "relu", "name": "relu1"},
        conv("conv2", (3, 3, 8, 8), pad=1, stride=1),
        {"type": "prelu", "name": "prelu2", "weights": [np.full((8, 1), 0.2, dtype=dtype)]},
        {"type": "pool", "name": "pool2", "method": "avg", "pool": 3, "stride": 2, "pad": [0, 1, 0, 1]},
        {"type": "dropout", "name": "drop", "rate": 0.3},
        conv("conv3", (4, 4, 8, 10)),
        {"type": "relu", "name": "relu3", "leak": 0.05},
        {"type": "softmaxloss", "name": "loss"},
    ], "meta": {"inputSize": [16, 16, 3]}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["normal", "test"])
def test_simplenn_and_dagnn_give_identical_values_and_derivatives(dtype, mode):
    simplenn = pytest.importorskip("cnnx.simplenn")
    rng = np.random.default_rng(5)
    net = simplenn_net(rng, dtype)
    x, c = inputs_for(rng, dtype, 16, 3, 10)
    net["layers"][-1]["class"] = c
    res = simplenn.vl_simplenn(net, x, dtype(1), mode=mode, rng=np.random.default_rng(11))

    dag = DagNN.from_simplenn(net)
    dag.conserve_memory = False
    dag.mode = mode
    dag.rng = np.random.default_rng(11)
    dag.eval({"x0": x, "label": c}, {"x10": 1})
    for i, layer in enumerate(dag.layers):
        np.testing.assert_array_equal(dag.get_var(f"x{i + 1}").value, res[i + 1]["x"], err_msg=layer.name)
        np.testing.assert_array_equal(dag.get_var(f"x{i}").der, res[i]["dzdx"], err_msg=layer.name)
        for name, dzdw in zip(layer.params, res[i]["dzdw"]):
            np.testing.assert_array_equal(dag.get_param(name).der, dzdw, err_msg=name)


# ------------------------------------------------------------------------------------------------
# from_simplenn naming
# ------------------------------------------------------------------------------------------------


def test_from_simplenn_names_like_matconvnet():
    rng = np.random.default_rng(6)
    net = simplenn_net(rng, np.float32)
    net["layers"][3]["weights"][1] = np.zeros((0, 0), np.float32)  # conv2 without biases
    net["layers"][3]["learningRate"] = [0.5]
    net["layers"][3]["weightDecay"] = [0.25]
    del net["layers"][7]["name"]                                    # conv3 -> 'layer8'
    net["layers"].append({"type": "softmaxloss"})                   # a second loss
    dag = DagNN.from_simplenn(net)
    assert [v.name for v in dag.vars] == [f"x{i}" for i in range(10)] + ["label", "x10", "label1", "x11"]
    assert dag.get_inputs() == ["x0", "label", "label1"]
    assert dag.get_layer("loss").inputs == ["x9", "label"] and dag.get_layer("layer11").inputs == ["x10", "label1"]
    assert [p.name for p in dag.params] == ["conv1f", "conv1b", "conv2f", "prelu2a", "layer8f", "layer8b"]
    assert dag.get_param("conv1f").learning_rate == 0.1 and dag.get_param("conv1b").learning_rate == 2
    assert dag.get_param("conv2f").learning_rate == 0.5 and dag.get_param("conv2f").weight_decay == 0.25
    conv2 = dag.get_layer("conv2").block
    assert conv2.has_bias is False and conv2.size == (3, 3, 8, 8) and conv2.pad == (1, 1, 1, 1)
    pool1 = dag.get_layer("pool1").block
    assert (pool1.method, pool1.pool_size, pool1.pad, pool1.stride) == ("max", (3, 3), (0, 1, 0, 1), (2, 2))
    assert dag.get_layer("relu3").block.leak == 0.05 and dag.get_layer("drop").block.rate == 0.3
    assert dag.meta == {"inputSize": [16, 16, 3]}
    # Values are copies.
    assert not np.shares_memory(dag.get_param("conv1f").value, net["layers"][0]["weights"][0])
    np.testing.assert_array_equal(dag.get_param("conv1f").value, net["layers"][0]["weights"][0])


def test_from_simplenn_canonical_names():
    rng = np.random.default_rng(7)
    dag = DagNN.from_simplenn(simplenn_net(rng, np.float32), canonical_names=True)
    assert dag.get_inputs() == ["input", "label"] and dag.get_outputs() == ["objective"]
    assert dag.get_layer("conv1").inputs == ["input"] and dag.get_layer("relu3").outputs == ["prediction"]
    assert dag.get_layer("loss").inputs == ["prediction", "label"]
    assert [v.name for v in dag.vars][1:9] == [f"x{i}" for i in range(1, 9)]


def test_from_simplenn_rejects_types_without_a_block():
    net = {"layers": [{"type": "custom", "forward": lambda *a: None, "backward": lambda *a: None}]}
    with pytest.raises(ValueError, match="custom"):
        DagNN.from_simplenn(net)
    net = {"layers": [{"type": "relu"}, {"type": "custom", "name": "mine", "forward": lambda *a: None,
                                         "backward": lambda *a: None}]}
    with pytest.raises(ValueError, match=re.escape(
            "DagNN.from_simplenn: layers[1] ('mine') has type 'custom', which has no DagNN block (supported: "
            "conv, convt, pool, relu, prelu, elu, selu, softplus, tanh, silu, gelu, clippedrelu, dropout, bnorm, "
            "softmaxloss, loss, pdist, softmax, sigmoid, normalize, lrn, noffset, spnorm)")):
        DagNN.from_simplenn(net)


def test_loadobj_converts_a_simplenn_struct_with_a_warning():
    net = simplenn_net(np.random.default_rng(8), np.float32)
    with pytest.warns(UserWarning, match="SimpleNN"):
        dag = DagNN.loadobj(net)
    assert [layer.name for layer in dag.layers] == [layer["name"] for layer in net["layers"]]


# ------------------------------------------------------------------------------------------------
# Saving and loading
# ------------------------------------------------------------------------------------------------


def assert_same_structure(a, b, path="s"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for key in a:
            assert_same_structure(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_structure(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert type(a) is type(b) and a == b, path


def every_block_net():
    rng = np.random.default_rng(9)
    net = branchy(rng, np.float32)
    net.add_layer("drop", DropOut(rate=0.25, frozen=True), "xs", "xdrop")
    net.add_layer("maxpool", Pooling(method="max", pool_size=(2, 3), pad=(1, 0, 2, 1), stride=(1, 2)),
                  "xdrop", "xm")
    net.add_layer("dil", Conv(size=(2, 2, 4, 3), dilate=(2, 1), stride=(1, 2), has_bias=False), "xm", "xdil",
                  "dilf")
    net.add_layer("error", Loss(loss="classerror", ignore_average=True), ["prediction", "label"], "error")
    net.get_param("dilf").value = np.ones((2, 2, 4, 3), np.float32)
    net.get_var("xc").precious = True
    net.get_param("cb").learning_rate = 0.5
    net.get_param("cb").weight_decay = 0.0
    net.get_param("s").train_method = "average"
    net.meta = {"inputSize": [5, 5, 3], "classes": {"name": ["a", "b"]}}
    return net


def test_saveobj_layout_is_matconvnets():
    s = every_block_net().saveobj()
    assert list(s) == ["vars", "params", "layers", "meta"]
    assert list(s["vars"][0]) == ["name", "precious"]
    assert list(s["params"][0]) == ["name", "value", "learningRate", "weightDecay", "trainMethod"]
    assert list(s["layers"][0]) == ["name", "type", "inputs", "outputs", "params", "block"]
    by_name = {layer["name"]: layer for layer in s["layers"]}
    conv = by_name["a"]["block"]
    assert by_name["a"]["type"] == "dagnn.Conv"
    assert set(conv) == {"size", "hasBias", "opts", "pad", "stride", "dilate"}
    np.testing.assert_array_equal(conv["size"], [3, 3, 3, 4])
    assert conv["size"].dtype == np.float64 and conv["hasBias"] is True and conv["opts"] == []
    assert set(by_name["maxpool"]["block"]) == {"method", "poolSize", "opts", "pad", "stride", "dilate"}
    assert by_name["relu"]["block"] == {"useShortCircuit": True, "leak": 0.1, "opts": []}
    assert by_name["drop"]["block"] == {"rate": 0.25, "frozen": True}
    assert by_name["error"]["block"] == {"loss": "classerror", "ignoreAverage": True, "opts": []}
    assert by_name["cat"]["block"] == {"dim": 3.0} and by_name["sum"]["block"] == {}
    assert by_name["scale"]["type"] == "tests.Scale"


def test_saveobj_loadobj_round_trip_is_exact():
    net = every_block_net()
    s = net.saveobj()
    loaded = DagNN.loadobj(s, blocks={"tests.Scale": Scale})
    assert_same_structure(s, loaded.saveobj())
    assert loaded.get_var("xc").precious and loaded.get_param("s").train_method == "average"
    assert loaded.execution_order == net.execution_order
    # Values are copies, in both directions.
    assert not np.shares_memory(loaded.get_param("af").value, net.get_param("af").value)
    assert not np.shares_memory(s["params"][0]["value"], net.params[0].value)


def test_matconvnet_file_round_trip_is_exact(tmp_path):
    io = pytest.importorskip("cnnx.io")
    rng = np.random.default_rng(10)
    net = lenet_like(rng, np.float32)
    net.add_layer("drop", DropOut(rate=0.2), "x6", "x6d")
    net.add_layer("cat", Concat(dim=4), ["x6", "x6d"], "x6c")
    net.add_layer("sum", Sum(), ["x6", "x6d"], "x6s")
    net.add_layer("prelu", PReLU(num_channels=8), "x6s", "x6p", "slopes")
    net.get_param("slopes").value = np.full((8, 1), 0.3, np.float32)
    net.get_var("x3").precious = True
    net.get_param("conv1b").learning_rate = 2.0
    net.get_param("conv3f").weight_decay = 0.0
    net.meta = {"inputSize": np.array([16.0, 16.0, 3.0]), "note": "lenet-like"}
    path = os.path.join(tmp_path, "net.mat")
    io.save_matconvnet(net, path)
    loaded = io.load_matconvnet(path)
    assert isinstance(loaded, DagNN)
    assert_same_structure(net.saveobj(), loaded.saveobj())

    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    for dag in (net, loaded):
        dag.mode = "test"
        dag.eval({"input": x, "label": c}, {"objective": 1})
    for a, b in zip(net.params, loaded.params):
        np.testing.assert_array_equal(a.der, b.der)


def test_copy_is_independent():
    net = every_block_net()
    net.mode = "test"
    twin = net.copy()
    assert twin.mode == "test" and twin is not net
    twin.get_param("af").value[...] = 0
    assert np.any(net.get_param("af").value)


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------


class Probe(Layer):
    """Identity block that records which variables hold values when it runs."""

    def __init__(self):
        self.seen = None

    def forward(self, inputs, params):
        self.seen = sorted(v.name for v in self.net.vars if v.value is not None)
        return [inputs[0]]

    def backward(self, inputs, params, der_outputs):
        return [der_outputs[0]], []


def probed_lenet(rng):
    net = lenet_like(rng, np.float32)
    net.set_layer_outputs("conv3", "prediction0")
    net.add_layer("probe", Probe(), "prediction0", "prediction")
    return net, net.get_layer("probe").block


def test_conserve_memory_forward_only_frees_what_was_read():
    rng = np.random.default_rng(12)
    net, probe = probed_lenet(rng)
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    net.get_var("x3").precious = True
    net.eval({"input": x, "label": c})
    assert probe.seen == ["label", "x3"]  # the probe's own input is freed as it starts
    assert sorted(v.name for v in net.vars if v.value is not None) == ["error", "objective", "x3"]

    net.conserve_memory = False
    net.eval({"input": x, "label": c})
    assert all(v.value is not None for v in net.vars)


def test_max_pooling_keeps_its_winners_outside_test_mode():
    from cnnx.pool import PoolWinners

    rng = np.random.default_rng(14)
    net = lenet_like(rng, np.float32)
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    pool1 = net.get_layer("pool1").block
    net.conserve_memory = False
    net.eval({"input": x, "label": c}, {"objective": 1})
    assert isinstance(pool1.winners, PoolWinners) and net.get_layer("pool2").block.winners is None
    expected = vl_nnpool(net.get_var("x1").value, 3, pad=(0, 1, 0, 1), stride=2, winners=True)[1]
    np.testing.assert_array_equal(pool1.winners.index, expected.index)
    v, d = lenet_by_hand(net, x, c)
    np.testing.assert_array_equal(net.get_var("x1").der, d["x1"])
    net.mode = "test"
    net.eval({"input": x, "label": c})
    assert pool1.winners is None
    pool1.winners = expected
    pool1.reset()
    assert pool1.winners is None


def test_pooling_backward_reads_no_values_outside_test_mode():
    # Max pooling keeps its winners, average pooling its input's shape: backward reads neither the
    # input nor the output, and gives the derivatives of the block function's own backward call.
    rng = np.random.default_rng(15)
    net = lenet_like(rng, np.float32)
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    pool1, pool2 = net.get_layer("pool1").block, net.get_layer("pool2").block
    assert Pooling(method="avg").backward_reads_values  # outside a network
    assert not pool1.backward_reads_values and not pool2.backward_reads_values
    net.conserve_memory = False
    net.eval({"input": x, "label": c}, {"objective": 1})
    assert pool2.input_size == net.get_var("x5").value.shape and pool1.input_size is None
    dx5 = vl_nnpool(net.get_var("x5").value, POOL2["pool_size"], net.get_var("x6").der,
                    pad=POOL2.get("pad", 0), stride=POOL2.get("stride", 1), method="avg")
    np.testing.assert_array_equal(net.get_var("x5").der, dx5)
    assert pool2.backward(None, [], [net.get_var("x6").der])[0][0].tobytes() == dx5.tobytes()
    net.mode = "test"
    assert pool1.backward_reads_values and pool2.backward_reads_values
    net.eval({"input": x, "label": c})
    assert pool2.input_size is None and pool1.winners is None


def test_conserve_memory_with_derivatives_keeps_what_backward_needs():
    rng = np.random.default_rng(13)
    net, probe = probed_lenet(rng)
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    net.conserve_memory = False
    net.eval({"input": x, "label": c}, {"objective": 1})
    expected = {p.name: p.der for p in net.params}
    expected_input = net.get_var("input").der

    net.conserve_memory = True
    net.get_var("x4").precious = True
    net.eval({"input": x, "label": c}, {"objective": 1})
    # x2 only feeds relu1, which back-propagates from its output, and x4 only relu2: the first is
    # freed during forward, the precious second is not. x1 only feeds pool1, which keeps its
    # winners, and backward reads neither its input nor its output: x1 is freed too. x5 feeds
    # pool2 (which keeps x5's shape) but is relu2's output, which relu2's backward reads.
    assert probe.seen == ["input", "label", "prediction0", "x3", "x4", "x5", "x6"]
    kept = sorted(v.name for v in net.vars if v.value is not None)
    assert kept == ["error", "input", "label", "objective", "x4"]
    assert net.get_var("x4").der is not None and net.get_var("x3").der is None
    for param in net.params:
        np.testing.assert_array_equal(param.der, expected[param.name])
    np.testing.assert_array_equal(net.get_var("input").der, expected_input)


def test_short_circuit_relu_chains_keep_what_backward_needs():
    rng = np.random.default_rng(25)
    net = DagNN()
    net.add_layer("relu1", ReLU(), "x", "r1")
    net.add_layer("relu2", ReLU(leak=0.2), "r1", "r2")
    net.add_layer("relu3", ReLU(), "r2", "r3")
    net.add_layer("probe", Probe(), "r3", "y")
    x = rng.standard_normal((3, 3, 2, 2))
    dy = rng.standard_normal(x.shape)
    net.eval({"x": x}, {"y": dy})
    # Each ReLU back-propagates from its output: x is freed, the outputs are kept until backward.
    assert net.get_layer("probe").block.seen == ["r1", "r2", "r3"]
    np.testing.assert_array_equal(net.get_var("x").der, dy * (x > 0))  # relu1 zeroes what relu2 leaks


def test_short_circuit_can_be_turned_off():
    rng = np.random.default_rng(14)
    net, probe = probed_lenet(rng)
    net.get_layer("relu1").block.use_short_circuit = False
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    net.eval({"input": x, "label": c}, {"objective": 1})
    assert "x2" in probe.seen


def test_reset_clears_values_derivatives_and_state():
    rng = np.random.default_rng(15)
    net = lenet_like(rng, np.float32)
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    net.eval({"input": x, "label": c}, {"objective": 1})
    net.reset()
    assert all(v.value is None and v.der is None for v in net.vars)
    assert all(p.der is None for p in net.params) and all(p.value is not None for p in net.params)
    assert net.get_layer("loss").block.num_averaged == 0


# ------------------------------------------------------------------------------------------------
# Modes, losses, accumulation
# ------------------------------------------------------------------------------------------------


def test_test_mode_dropout_is_the_identity():
    rng = np.random.default_rng(16)
    net = DagNN()
    net.add_layer("drop", DropOut(rate=0.5), "x", "y")
    x = rng.standard_normal((4, 4, 3, 2)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    net.mode = "test"
    net.eval({"x": x}, {"y": dy})
    np.testing.assert_array_equal(net.get_var("y").value, x)
    np.testing.assert_array_equal(net.get_var("x").der, dy)

    net.mode = "train"
    assert net.mode == "normal"
    net.rng = np.random.default_rng(3)
    net.eval({"x": x}, {"y": dy})
    mask = net.get_layer("drop").block.mask
    assert set(np.unique(mask)) == {0.0, 2.0}
    np.testing.assert_array_equal(net.get_var("y").value, mask * x)
    np.testing.assert_array_equal(net.get_var("x").der, mask * dy)
    with pytest.raises(ValueError, match="mode"):
        net.mode = "eval"


def test_frozen_dropout_reuses_its_mask():
    net = DagNN()
    net.add_layer("drop", DropOut(rate=0.5, frozen=True), "x", "y")
    x = np.ones((6, 6, 2, 1), np.float32)
    net.eval({"x": x})
    first = net.get_var("y").value
    net.eval({"x": x})
    np.testing.assert_array_equal(net.get_var("y").value, first)


def test_loss_blocks_count_errors_and_keep_running_averages():
    rng = np.random.default_rng(17)
    net = lenet_like(rng, np.float32)
    x, c = inputs_for(rng, np.float32, 16, 5, 10)
    c[0] = 0  # ignored
    net.conserve_memory = False
    net.eval({"input": x, "label": c})
    net.eval({"input": x, "label": c})
    predicted = np.argmax(net.get_var("prediction").value.reshape(10, 5, order="F"), axis=0) + 1
    wrong = int(np.sum((predicted != c) & (c != 0)))
    assert net.get_var("error").value == wrong
    loss, error = net.get_layer("loss").block, net.get_layer("error").block
    assert error.num_averaged == 10 and loss.num_averaged == 10  # two calls of 5 images
    assert error.average == pytest.approx(wrong / 5)
    objective = float(net.get_var("objective").value)
    assert loss.average == pytest.approx(objective / 5, rel=1e-6)
    net.eval({"input": x[:, :, :, :2], "label": c[:2]})
    assert loss.num_averaged == 12
    assert loss.average == pytest.approx((10 * objective / 5 + float(net.get_var("objective").value)) / 12,
                                         rel=1e-6)


def test_accumulate_param_ders():
    rng = np.random.default_rng(18)
    net = lenet_like(rng, np.float32)
    x, c = inputs_for(rng, np.float32, 16, 2, 10)
    net.eval({"input": x, "label": c}, {"objective": 1})
    once = {p.name: p.der for p in net.params}
    net.eval({"input": x, "label": c}, {"objective": 1})
    for param in net.params:
        np.testing.assert_array_equal(param.der, once[param.name])
    net.accumulate_param_ders = True
    net.eval({"input": x, "label": c}, {"objective": 1})
    for param in net.params:
        np.testing.assert_array_equal(param.der, 2 * once[param.name])


def test_objective_derivative_weights_the_gradient():
    rng = np.random.default_rng(19)
    net = lenet_like(rng, np.float64)
    x, c = inputs_for(rng, np.float64, 16, 2, 10)
    net.eval({"input": x, "label": c}, {"objective": 1})
    once = {p.name: p.der for p in net.params}
    net.eval({"input": x, "label": c}, {"objective": np.array(0.5)})
    for param in net.params:
        np.testing.assert_allclose(param.der, 0.5 * once[param.name], rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# Sizes, printing, initialisation, lookups, editing
# ------------------------------------------------------------------------------------------------


def test_get_var_sizes_match_the_values():
    rng = np.random.default_rng(20)
    net = lenet_like(rng, np.float32)
    net.conserve_memory = False
    x, c = inputs_for(rng, np.float32, 16, 3, 10)
    net.eval({"input": x, "label": c})
    sizes = net.get_var_sizes({"input": x.shape})
    for var in net.vars:
        if var.name == "label":
            assert sizes[var.name] is None
        else:
            value = np.asarray(var.value)
            assert sizes[var.name] == value.shape + (1,) * (4 - value.ndim), var.name
    assert net.get_var_sizes(["input", [16, 16, 3]])["prediction"] == (1, 1, 10, 1)
    with pytest.raises(ValueError, match="x1"):
        net.get_var_sizes({"x1": (8, 8, 8, 3)})


def test_get_var_sizes_of_branches():
    net = branchy(np.random.default_rng(21), np.float32)
    sizes = net.get_var_sizes({"input": (5, 5, 3, 2), "label": (1, 1, 1, 2)})
    assert sizes["xc"] == (5, 5, 8, 2) and sizes["xq"] == (5, 5, 4, 2)
    assert sizes["prediction"] == (1, 1, 4, 2) and sizes["objective"] == (1, 1, 1, 1)


def test_print_shows_layers_variables_and_parameters(capsys):
    net = DagNN.from_simplenn(simplenn_net(np.random.default_rng(22), np.float32), canonical_names=True)
    net.print({"input": (16, 16, 3, 4)})
    text = capsys.readouterr().out
    for name in ["conv1", "pool1", "relu1", "prelu2", "drop", "loss", "input", "prediction", "objective",
                 "conv1f", "prelu2a", "16x16x8x4", "1x1x10x4", "Conv", "Pooling", "Loss"]:
        assert name in text, name
    total = sum(p.value.size for p in net.params)
    assert f"total: {total} parameters" in text
    assert str(net) == net.summary()


def test_init_params_is_matconvnets_he_init():
    net = DagNN()
    net.add_layer("conv", Conv(size=(5, 5, 16, 64)), "x", "y", ["f", "b"])
    net.add_layer("conv_nb", Conv(size=(3, 3, 64, 8), has_bias=False), "y", "z", "g")
    net.add_layer("prelu", PReLU(num_channels=8), "z", "w", "a")
    net.init_params(rng=0)
    f, b = net.get_param("f").value, net.get_param("b").value
    assert f.shape == (5, 5, 16, 64) and f.dtype == np.float32 and f.flags.f_contiguous
    assert b.shape == (64, 1) and b.dtype == np.float32 and not np.any(b)
    assert np.std(f) == pytest.approx(math.sqrt(2 / (5 * 5 * 16)), rel=0.03)
    assert net.get_param("g").value.shape == (3, 3, 64, 8)
    np.testing.assert_array_equal(net.get_param("a").value, np.full((8, 1), 0.25, np.float32))
    again = DagNN.loadobj(net.saveobj())
    again.init_params(rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again.get_param("f").value, f)
    with pytest.raises(ValueError, match="size"):
        Conv().init_params(np.random.default_rng(0))


def test_lookups():
    net = lenet_like(np.random.default_rng(23), np.float32)
    assert net.get_layer_index("conv2") == 3 and net.get_layer_index("nope") is None
    assert net.get_var_index(["input", "x1", "nope"]) == [0, 1, None]
    assert net.get_param_index("conv3b") == 5
    assert isinstance(net.get_var("x1"), Var) and isinstance(net.get_param("conv1f"), Param)
    assert net.get_inputs() == ["input", "label"] and net.get_outputs() == ["objective", "error"]
    assert net.get_var("prediction").fanout == 2 and net.get_var("prediction").fanin == 1
    assert net.execution_order == list(range(9))
    for getter in (net.get_var, net.get_param, net.get_layer):
        with pytest.raises(ValueError, match="nope"):
            getter("nope")


def test_execution_order_follows_the_graph_not_the_insertion_order():
    net = DagNN()
    net.add_layer("last", Sum(), ["b", "c"], "d")
    net.add_layer("middle", ReLU(), "a", "b")
    net.add_layer("first", ReLU(), "x", "a")
    net.add_layer("other", ReLU(), "x", "c")
    assert [net.layers[l].name for l in net.execution_order] == ["first", "middle", "other", "last"]
    x = np.array([[-1.0, 2.0]])
    net.eval({"x": x})
    np.testing.assert_array_equal(net.get_var("d").value, 2 * np.maximum(x, 0))


def test_rename_and_remove():
    net = lenet_like(np.random.default_rng(24), np.float32)
    net.rename_var("x3", "relu1_out")
    assert net.get_layer("relu1").outputs == ["relu1_out"] and net.get_layer("conv2").inputs == ["relu1_out"]
    net.rename_param("conv1f", "filters1")
    assert net.get_layer("conv1").params == ["filters1", "conv1b"] and net.get_param("filters1").value is not None
    net.rename_layer("error", "top1")
    assert net.get_layer_index("top1") == 8 and net.get_layer_index("error") is None
    net.remove_layer("top1")
    assert net.get_var_index("error") is None and net.get_outputs() == ["objective"]
    net.remove_layer(["loss", "conv3"])
    assert net.get_param_index("conv3f") is None and net.get_outputs() == ["x6"]
    x, _ = inputs_for(np.random.default_rng(0), np.float32, 16, 1, 10)
    net.eval({"input": x})
    assert net.get_var("x6").value.shape == (4, 4, 8, 1)
    with pytest.raises(ValueError, match="x1"):
        net.rename_var("relu1_out", "x1")
    with pytest.raises(ValueError, match="nope"):
        net.remove_layer("nope")
    with pytest.raises(ValueError, match="nope"):
        net.rename_param("nope", "other")


def test_blocks_normalise_matlab_properties():
    conv = Conv(size=[3, 3, 8], pad=[1, 2], stride=np.array([[2.0]]), dilate=(1, 2), has_bias=np.uint8(0))
    assert conv.size == (3, 3, 8, 1) and conv.pad == (1, 1, 2, 2) and conv.stride == (2, 2)
    assert conv.dilate == (1, 2) and conv.has_bias is False
    pool = Pooling(method="AVG", pool_size=np.array([2.0, 3.0]))
    assert pool.method == "avg" and pool.pool_size == (2, 3)
    conv.load({"opts": ["cuDNN"], "pad": 0.0})
    assert conv.opts == ("cuDNN",) and conv.pad == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: Conv(pad=[1, 2, 3]), ValueError, "pad"),
        (lambda: Conv(pad=-1), ValueError, "pad"),
        (lambda: Conv(stride=0), ValueError, "stride"),
        (lambda: Conv(size=[3, 3, 1.5, 2]), ValueError, "size"),
        (lambda: Conv(has_bias=2), ValueError, "has_bias"),
        (lambda: Pooling(method="median"), ValueError, "method"),
        (lambda: Pooling(dilate=2), ValueError, "dilate"),
        (lambda: Pooling(pool_size="3"), TypeError, "pool_size"),
        (lambda: ReLU(leak="x"), TypeError, "leak"),
        (lambda: Loss(loss="squared"), ValueError, "loss"),
        (lambda: Concat(dim=5), ValueError, "dim"),
        (lambda: Conv().load({"poolSize": 3}), ValueError, "poolSize"),
    ],
)
def test_block_property_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: Conv(pad=[1, 2, 3]), ValueError,
         "Conv: pad must be 1, 2 or 4 non-negative whole numbers, got [1, 2, 3]"),
        (lambda: Conv(pad=1.5), ValueError, "Conv: pad must be 1, 2 or 4 non-negative whole numbers, got 1.5"),
        (lambda: Conv(pad=math.nan), ValueError, "Conv: pad must be 1, 2 or 4 non-negative whole numbers, got nan"),
        (lambda: Conv(pad="abc"), TypeError,
         "Conv: pad must be 1, 2 or 4 non-negative whole numbers, got the string 'abc'"),
        (lambda: Conv(stride=np.array([0.0, 1.0])), ValueError,
         "Conv: stride must be 1 or 2 positive whole numbers, got [0, 1]"),
        (lambda: Conv(size=[3, 3, 1.5, 2]), ValueError,
         "Conv: size must be 2 to 4 non-negative whole numbers [FH FW FC K], got [3, 3, 1.5, 2]"),
        (lambda: Conv(size=[[3, 3], [1]]), TypeError,
         "Conv: size must be 2 to 4 non-negative whole numbers [FH FW FC K], got [[3, 3], [1]]"),
        (lambda: Conv(has_bias=math.nan), ValueError, "Conv: has_bias must be true or false, got nan"),
        (lambda: ReLU(leak=math.nan), ValueError, "ReLU: leak must be a finite number, got nan"),
        (lambda: ReLU(leak=[0.1, 0.2]), TypeError, "ReLU: leak must be a finite number, got [0.1, 0.2]"),
        (lambda: DropOut(rate=1.0), ValueError, "DropOut: rate must be a number in [0, 1), got 1"),
        (lambda: DropOut(rate=-0.5), ValueError, "DropOut: rate must be a number in [0, 1), got -0.5"),
        (lambda: Pooling(method=3), TypeError, "Pooling: method must be one of 'max', 'avg', got 3"),
        (lambda: Concat(dim=5), ValueError, "Concat: dim must be 1, 2, 3 or 4, got 5"),
        (lambda: Pooling().load({"poolSize": [2, 2, 2]}), ValueError,
         "Pooling: poolSize must be 1 or 2 positive whole numbers, got [2, 2, 2]"),
        (lambda: Pooling().load({"pool_size": 0}), ValueError,
         "Pooling: pool_size must be 1 or 2 positive whole numbers, got 0"),
        (lambda: ReLU().load({"alpha": 1}), ValueError,
         "ReLU has no property 'alpha' (its properties: useShortCircuit, leak, opts)"),
    ],
)
def test_block_property_messages_say_what_is_expected(make, error, message):
    with pytest.raises(error, match=re.escape(message)) as info:
        make()
    assert str(info.value) == message


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def small_net():
    net = DagNN()
    net.add_layer("relu", ReLU(), "x", "y")
    net.add_layer("loss", Loss(), ["y", "label"], "objective")
    return net


def test_graph_errors():
    net = small_net()
    with pytest.raises(ValueError, match="already a layer named 'relu'"):
        net.add_layer("relu", ReLU(), "y", "z")
    with pytest.raises(ValueError, match="'y' is already the output of layer 'relu'"):
        net.add_layer("relu2", ReLU(), "x", "y")
    with pytest.raises(ValueError, match="cycle.*relu -> back -> relu|cycle.*back -> relu -> back"):
        net.add_layer("back", ReLU(), "y", "x")
    with pytest.raises(ValueError, match="cycle"):
        net.add_layer("self", Sum(), ["x", "loop"], "loop")
    assert [layer.name for layer in net.layers] == ["relu", "loss"]  # failed additions left no trace
    assert net.get_var_index("loop") is None and net.get_inputs() == ["x", "label"]
    with pytest.raises(TypeError, match="block"):
        net.add_layer("bad", lambda x: x, "x", "z")
    with pytest.raises(ValueError, match="already belongs"):
        net.add_layer("again", net.get_layer("relu").block, "x", "z")
    with pytest.raises(TypeError, match="non-empty strings"):
        net.add_layer("bad", ReLU(), ["x", 3], "z")
    with pytest.raises(ValueError, match="twice"):
        net.add_layer("bad", ReLU(), "x", ["z", "z"])
    with pytest.raises(ValueError, match="cycle"):
        net.set_layer_inputs("relu", "objective")
    assert net.get_layer("relu").inputs == ["x"]


def test_eval_errors():
    net = small_net()
    x = np.ones((2, 2, 3, 1), np.float32)
    with pytest.raises(ValueError, match="'nope'"):
        net.eval({"nope": x})
    with pytest.raises(ValueError, match="'y' is computed by layer 'relu'"):
        net.eval({"x": x, "y": x})
    with pytest.raises(ValueError, match="network input 'x' \\(read by layer 'relu'\\) is not given"):
        net.eval({"label": [1]})
    with pytest.raises(ValueError, match="network input 'label' was not given"):
        net.eval({"x": x}, {"objective": 1})
    with pytest.raises(ValueError, match="'nope'"):
        net.eval({"x": x, "label": [1]}, {"nope": 1})
    with pytest.raises(ValueError, match="even length"):
        net.eval(["x", x, "label"])
    with pytest.raises(ValueError, match="twice"):
        net.eval(["x", x, "x", x])
    with pytest.raises(ValueError, match="shape"):
        net.eval({"x": x, "label": [1]}, {"y": np.ones((2, 2))})

    net = DagNN()
    net.add_layer("conv", Conv(size=(1, 1, 3, 2)), "x", "y", ["f", "b"])
    with pytest.raises(ValueError, match="layer 'conv': parameter 'f' has no value"):
        net.eval({"x": x})


@pytest.mark.parametrize("edit, error, message", [
    (lambda s: s["layers"][1]["block"].update(loss="squared"), ValueError,
     "layers[1] ('loss'): block.loss must be one of 'softmaxlog', 'log', 'mhinge', 'mshinge', 'classerror', "
     "'topkerror', 'binaryerror', 'binarylog', 'logistic', 'hinge', 'l2', got the string 'squared'"),
    (lambda s: s["layers"][0]["block"].update(leak=math.inf), ValueError,
     "layers[0] ('relu'): block.leak must be a finite number, got inf"),
    (lambda s: s["layers"][0].update(block=[1.0]), TypeError,
     "layers[0] ('relu'): block must be a struct (a dict) of the block's properties, got [1]"),
    (lambda s: s["layers"][0].update(name=None), TypeError, "layers[0]: name must be a string, got None"),
    (lambda s: s["layers"][1].update(outputs=["objective", ""]), TypeError,
     "layers[1] ('loss'): outputs must be non-empty strings, got the string ''"),
    (lambda s: s["layers"][1].update(outputs=["y"]), ValueError,
     "layers[1] ('loss'): variable 'y' is already the output of layer 'relu'; a variable has one producer"),
    (lambda s: s["vars"][0].update(precious=math.nan), ValueError,
     "vars[0] ('x'): precious must be true or false, got nan"),
    (lambda s: s["vars"][1].update(color="red"), ValueError,
     "vars[1] ('y'): unknown field 'color' (the fields of a variable: name, precious, value, der, fanin, fanout)"),
    (lambda s: s.update(conserveMemory=2.0), ValueError, "conserveMemory must be true or false, got 2"),
])
def test_loadobj_names_the_entry_and_the_field(edit, error, message):
    s = small_net().saveobj()
    edit(s)
    with pytest.raises(error, match=re.escape(f"DagNN.loadobj: {message}")) as info:
        DagNN.loadobj(s)
    assert str(info.value) == f"DagNN.loadobj: {message}"


def test_loadobj_checks_parameter_fields():
    net = DagNN()
    net.add_layer("conv", Conv(size=(1, 1, 2, 3)), "x", "y", ["f", "b"])
    good = net.saveobj()
    for field, value, error, message in [
        ("value", np.ones((1, 1, 2, 3), np.int64), TypeError,
         "value must be a float32 or float64 array, got a 1x1x2x3 int64 array"),
        ("value", [1, 2, 3], TypeError, "value must be a float32 or float64 array, got [1, 2, 3]"),
        ("learningRate", math.nan, ValueError, "learningRate must be a finite number, got nan"),
        ("weightDecay", "none", TypeError, "weightDecay must be a finite number, got the string 'none'"),
        ("trainMethod", "adam", ValueError,
         "trainMethod must be one of 'gradient', 'average', got the string 'adam'"),
        ("momentum", 0.9, ValueError, "unknown field 'momentum' (the fields of a parameter: name, value, "
                                      "learningRate, weightDecay, trainMethod)"),
    ]:
        s = {**good, "params": [dict(p) for p in good["params"]]}
        s["params"][1][field] = value
        with pytest.raises(error, match=re.escape(f"DagNN.loadobj: params[1] ('b'): {message}")):
            DagNN.loadobj(s)
    s = {**good, "params": [dict(p) for p in good["params"]]}
    s["params"][0]["value"] = np.ones((1, 1, 2, 3), np.float32)
    assert DagNN.loadobj(s).get_param("f").value.dtype == np.float32


def test_a_block_returning_the_wrong_number_of_values_is_named():
    class TwoOutputs(Layer):
        def forward(self, inputs, params):
            return [inputs[0], inputs[0]]

    net = DagNN()
    net.add_layer("odd", TwoOutputs(), "x", "y")
    with pytest.raises(ValueError, match="layer 'odd'.*2 outputs, expected 1"):
        net.eval({"x": np.ones(3)})


def test_loadobj_errors():
    s = small_net().saveobj()
    s["layers"][0]["type"] = "dagnn.Mystery"
    with pytest.raises(ValueError, match=re.escape(
            "DagNN.loadobj: layers[0] ('relu') has unknown block type 'dagnn.Mystery' (known: "
            f"{', '.join(sorted(BLOCK_TYPES))}; pass blocks={{type: class}} for others)")):
        DagNN.loadobj(s)
    s = small_net().saveobj()
    s["layers"][0]["block"]["alpha"] = 1.0
    with pytest.raises(ValueError, match=re.escape(
            "DagNN.loadobj: layers[0] ('relu'): ReLU has no property 'alpha' (its properties: useShortCircuit, "
            "leak, opts)")):
        DagNN.loadobj(s)
    s = small_net().saveobj()
    s["params"] = [{"name": "ghost", "value": np.ones(2)}]
    with pytest.raises(ValueError, match=re.escape("DagNN.loadobj: params[0] ('ghost') is not used by any layer")):
        DagNN.loadobj(s)
    s = every_block_net().saveobj()
    with pytest.raises(ValueError, match="tests.Scale"):
        DagNN.loadobj(s)

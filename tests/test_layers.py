"""Layer kinds (cnnx.layers): one definition per kind, consulted by SimpleNN, DagNN and model files."""
import os

import numpy as np
import pytest

from cnnx.dagnn import DagNN, Layer, Loss, ReLU
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.layers import BLOCK_TYPES, LAYER_TYPES, Conversion
from cnnx.simplenn import register_layer_type, vl_simplenn


class Scale(Layer):
    """y = x * s with one scale per channel (s is 1 x 1 x C x 1, which MATLAB stores as 1 x 1 x C)."""

    type_name = "tests.Scale"
    param_ndims = (4,)

    def forward(self, inputs, params):
        return [inputs[0] * params[0]]

    def backward(self, inputs, params, der_outputs):
        dy = der_outputs[0]
        return [dy * params[0]], [np.sum(dy * inputs[0], axis=(0, 1, 3), keepdims=True)]


def _scale_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = res_i["x"] * layer["weights"][0]


def _scale_backward(layer, res_i, res_ip1, ctx):
    dy = res_ip1["dzdx"]
    res_i["dzdx"] = dy * layer["weights"][0]
    return [np.sum(dy * res_i["x"], axis=(0, 1, 3), keepdims=True)]


@pytest.fixture
def scale_type():
    entry = register_layer_type("scale", _scale_forward, _scale_backward, weight_ndims=(4,), block=Scale,
                                to_dagnn=lambda layer: Conversion(Scale(), ("s",)))
    yield entry
    del LAYER_TYPES["scale"]
    del BLOCK_TYPES["tests.Scale"]


def scale_net(rng):
    s = rng.standard_normal((1, 1, 3, 1))
    return {"layers": [{"type": "scale", "name": "sc", "weights": [s]}, {"type": "relu"}]}


def test_registered_type_converts_to_dagnn(scale_type):
    rng = np.random.default_rng(0)
    net = scale_net(rng)
    x = rng.standard_normal((4, 4, 3, 2))
    dzdy = rng.standard_normal((4, 4, 3, 2))
    res = vl_simplenn(net, x, dzdy)
    dag = DagNN.from_simplenn(net)
    assert isinstance(dag.layers[0].block, Scale) and dag.layers[0].params == ["scs"]
    dag.eval({"x0": x}, {"x2": dzdy})
    assert np.array_equal(dag.get_var("x2").value, res[2]["x"])
    assert np.array_equal(dag.get_var("x0").der, res[0]["dzdx"])
    assert np.array_equal(dag.get_param("scs").der, res[0]["dzdw"][0])


def test_registered_type_round_trips_through_model_files(scale_type, tmp_path):
    net = scale_net(np.random.default_rng(1))
    path = os.path.join(tmp_path, "simple.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)["layers"][0]["weights"][0]
    assert loaded.shape == (1, 1, 3, 1) and np.array_equal(loaded, net["layers"][0]["weights"][0])
    dag = DagNN.from_simplenn(net)
    path = os.path.join(tmp_path, "dag.mat")
    save_matconvnet(dag, path)
    again = load_matconvnet(path)
    assert isinstance(again.layers[0].block, Scale)
    assert again.get_param("scs").value.shape == (1, 1, 3, 1)  # param_ndims puts MATLAB's dropped 1 back


def test_registered_type_without_a_conversion_says_so():
    register_layer_type("lonely", _scale_forward, _scale_backward)
    try:
        with pytest.raises(ValueError, match=r"layers\[0\] \('layer1'\) has type 'lonely', which has no DagNN block"):
            DagNN.from_simplenn({"layers": [{"type": "lonely", "weights": [np.ones(1)]}]})
    finally:
        del LAYER_TYPES["lonely"]


def test_register_layer_type_checks_the_conversion_and_block():
    with pytest.raises(TypeError, match="to_dagnn must be callable"):
        register_layer_type("broken", _scale_forward, _scale_backward, to_dagnn=3)
    with pytest.raises(TypeError, match="type_name"):
        register_layer_type("broken", _scale_forward, _scale_backward, block=Layer)
    assert "broken" not in LAYER_TYPES


@pytest.mark.parametrize("block, value", [
    (ReLU(opts=["cudnn"]), [[0.0, 2.0]]),
    (ReLU(opts=["NoCuDNN", "CudnnWorkspaceLimit", 1e9]), [[0.0, 2.0]]),
])
def test_every_dagnn_block_ignores_gpu_options(block, value):
    net = DagNN()
    net.add_layer("relu", block, "x", "y")
    net.eval({"x": np.array([[-1.0, 2.0]])}, {"y": np.ones((1, 2))})
    assert net.get_var("y").value.tolist() == value
    assert block.opts[0].lower() in ("cudnn", "nocudnn")  # saved as given


def test_loss_ignores_gpu_options():
    x = np.array([2.0, 0.0, 0.0, 3.0]).reshape(1, 1, 2, 2, order="F")
    with_gpu = Loss(opts=["cudnn"]).forward([x, [1, 1]], [])[0]
    assert with_gpu == Loss().forward([x, [1, 1]], [])[0]


class Labelled(Layer):
    """A block of its own whose second input is a label: the network may run without it."""

    type_name = "tests.Labelled"
    label_inputs = (1,)

    def forward(self, inputs, params):
        return [inputs[0] * 2]


def test_label_inputs_of_any_block_may_be_omitted():
    net = DagNN()
    net.add_layer("relu", ReLU(), "x", "y")
    net.add_layer("mine", Labelled(), ["y", "c"], "z")
    net.eval({"x": np.ones((1, 2))})  # 'mine' is skipped, as a Loss without labels
    assert net.get_var("y").value.tolist() == [[1.0, 1.0]] and net.get_var("z").value is None
    net = DagNN()
    net.add_layer("mine", Labelled(), ["y", "c"], "z")
    with pytest.raises(ValueError, match="network input 'y' \\(read by layer 'mine'\\) is not given"):
        net.eval({"c": np.ones((1, 2))})

"""Layer kinds (cnnx.layers): one definition per kind, consulted by SimpleNN, DagNN and model files."""
import os
import re

import numpy as np
import pytest

from cnnx.dagnn import Conv, DagNN, Layer, Loss, ReLU
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
    with pytest.raises(TypeError, match="^register_layer_type: tidy must be callable, got int$"):
        register_layer_type("broken", _scale_forward, _scale_backward, tidy=3)
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


# ------------------------------------------------------------------------------------------------
# What both graphs do alike
# ------------------------------------------------------------------------------------------------


def test_block_errors_name_the_layer_in_both_graphs():
    x = np.ones((5, 5, 3, 1), np.float32)
    f = np.ones((3, 3, 2, 4), np.float32)
    simple = {"layers": [{"type": "relu", "name": "relu0"}, {"type": "conv", "name": "conv7", "weights": [f, []]}]}
    with pytest.raises(ValueError) as simple_error:
        vl_simplenn(simple, x)
    dag = DagNN.from_simplenn(simple)
    with pytest.raises(ValueError) as dag_error:
        dag.eval({"x0": x})
    reason = "layers[1] ('conv7'): vl_nnconv: F has 2 channels but X has 3 (C must be a multiple of FC)"
    assert str(simple_error.value) == f"vl_simplenn: {reason}"
    assert str(dag_error.value) == f"DagNN.eval: {reason}"


class Broken(Layer):
    def forward(self, inputs, params):
        return [inputs[0]]

    def backward(self, inputs, params, der_outputs):
        raise ValueError("Broken: no backward")


def test_block_errors_in_backward_name_the_layer():
    net = DagNN()
    net.add_layer("relu", ReLU(), "x", "y")
    net.add_layer("b", Broken(), "y", "z")
    net.eval({"x": np.ones((2, 2))})
    with pytest.raises(ValueError, match=re.escape("DagNN.eval: layers[1] ('b'): Broken: no backward")):
        net.eval({"x": np.ones((2, 2))}, {"z": np.ones((2, 2))})


class Conv2(Layer):
    """Wraps a Conv block and records which input derivatives the graph asked for."""

    def __init__(self):
        from cnnx.dagnn import Conv
        self.inner = Conv(size=(3, 3, 2, 4), pad=1)
        self.asked = []

    def forward(self, inputs, params):
        return self.inner.forward(inputs, params)

    def backward(self, inputs, params, der_outputs):
        self.asked.append(self.needs_input_der)
        self.inner.needs_input_der = self.needs_input_der
        return self.inner.backward(inputs, params, der_outputs)


@pytest.mark.parametrize("conserve", [False, True])
def test_dagnn_input_derivatives_false_skips_what_only_inputs_need(conserve):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 5, 2, 2)).astype(np.float32)
    nets = []
    for wanted in (True, False):
        net = DagNN()
        net.add_layer("relu0", ReLU(), "x", "x1")  # leads only to the input: nothing to compute
        net.add_layer("conv", Conv2(), "x1", "x2", ["f", "b"])
        net.add_layer("relu", ReLU(), "x2", "x3")
        net.add_layer("loss", Loss(), ["x3", "label"], "objective")
        net.get_param("f").value = rng.standard_normal((3, 3, 2, 4)).astype(np.float32) if wanted else \
            nets[0].get_param("f").value
        net.get_param("b").value = np.ones((4, 1), np.float32)
        net.conserve_memory = conserve
        net.input_derivatives = wanted
        assert net.copy().input_derivatives is wanted
        net.eval({"x": x, "label": [1, 2]}, {"objective": 1})
        nets.append(net)
    full, lean = nets
    assert full.get_var("x").der is not None and lean.get_var("x").der is None
    assert lean.get_var("label").der is None and full.get_var("label").der is None
    assert full.layers[1].block.asked == [(True,)] and lean.layers[1].block.asked == [(False,)]
    for name in ("f", "b"):
        assert np.array_equal(full.get_param(name).der, lean.get_param(name).der)


class Labelled2(Labelled):
    def backward(self, inputs, params, der_outputs):
        return [der_outputs[0] * 2, np.ones_like(inputs[1])], []


def test_no_derivative_reaches_a_label_even_if_a_block_returns_one():
    net = DagNN()
    net.add_layer("relu", ReLU(), "x", "y")
    net.add_layer("mine", Labelled2(), ["y", "c"], "z")
    net.conserve_memory = False
    net.eval({"x": np.ones((1, 2)), "c": np.ones((1, 2))}, {"z": np.ones((1, 2))})
    assert net.get_layer("mine").block.needs_input_der == (True, False)
    assert net.get_var("c").der is None and net.get_var("x").der.tolist() == [[2.0, 2.0]]


# ------------------------------------------------------------------------------------------------
# What the trainer reads: block attributes, not classes or names
# ------------------------------------------------------------------------------------------------


def small_problem():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 4, 2, 40)).astype(np.float32)
    y = (1 + (x.sum(axis=(0, 1, 2)) > 0)).astype(np.float32)
    simple = {"layers": [{"type": "conv", "weights": [0.01 * rng.standard_normal((4, 4, 2, 2)).astype(np.float32),
                                                      np.zeros((2, 1), np.float32)]},
                         {"type": "softmaxloss"}]}
    return {"x": x, "y": y, "images": {"set": np.ones(40)}}, simple


QUIET = dict(progress=False, plot_statistics=False, exp_dir=None, batch_size=10, num_epochs=1)


def test_trainer_finds_labels_by_label_inputs_not_by_name():
    from cnnx.train import cnn_train

    imdb, simple = small_problem()
    runs = []
    for label in ("label", "classes"):
        dag = DagNN.from_simplenn(simple, canonical_names=True)
        dag.rename_var("label", label)
        batch = lambda db, b, label=label: {"input": db["x"][..., b], label: db["y"][b]}  # noqa: E731
        runs.append(cnn_train(dag, imdb, batch, **QUIET))
    (a, stats_a), (b, stats_b) = runs
    assert stats_a["train"][0]["objective"] == stats_b["train"][0]["objective"]
    assert np.array_equal(a.params[0].value, b.params[0].value)
    dag = DagNN.from_simplenn(simple, canonical_names=True)
    dag.rename_var("label", "classes")
    with pytest.raises(ValueError, match=re.escape("cnn_train: get_batch (train epoch 1, batch 1, 'classes'): labels C have shape (1,) for ")):
        cnn_train(dag, imdb, lambda db, b: {"input": db["x"][..., b], "classes": db["y"][b][:1]}, **QUIET)


class Averaged(Layer):
    """Not a Loss, but it keeps a running average the trainer reports."""

    type_name = "tests.Averaged"
    reports_average = True

    def __init__(self):
        self.average = 0.0

    def forward(self, inputs, params):
        self.average = 7.0
        return [np.sum(inputs[0]).reshape(1, 1, 1, 1)]


def test_trainer_reports_every_block_that_keeps_an_average():
    from cnnx.train import cnn_train

    imdb, simple = small_problem()
    dag = DagNN.from_simplenn(simple, canonical_names=True)
    dag.add_layer("sum", Averaged(), "prediction", "total")
    _, stats = cnn_train(dag, imdb, lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]}, **QUIET)
    assert stats["train"][0]["total"] == 7.0 and "objective" in stats["train"][0]


class AvgConv(Conv):
    """A convolution whose biases are a running average (as bnorm's moments), for the trainer."""

    type_name = "tests.AvgConv"
    param_train_methods = ("gradient", "average")


@pytest.fixture
def avgconv_type():
    conv = LAYER_TYPES["conv"]

    def to_dagnn(layer):
        converted = conv.to_dagnn(layer)
        block = AvgConv(size=converted.block.size, pad=converted.block.pad)
        return Conversion(block, converted.params)

    entry = register_layer_type("avgconv", conv.forward, conv.backward, defaults=conv.defaults, check=conv.check,
                                weight_train_methods=("gradient", "average"), block=AvgConv, to_dagnn=to_dagnn)
    yield entry
    del LAYER_TYPES["avgconv"]
    del BLOCK_TYPES["tests.AvgConv"]


def test_both_trainers_learn_average_weights_by_their_declared_method(avgconv_type):
    from cnnx.train import cnn_train

    imdb, simple = small_problem()
    simple["layers"][0]["type"] = "avgconv"
    simple["layers"][0]["learningRate"] = np.array([1.0, 0.1])
    dag = DagNN.from_simplenn(simple, canonical_names=True)
    assert [p.train_method for p in dag.params] == ["gradient", "average"]
    options = dict(QUIET, learning_rate=0.0, weight_decay=0.0, batch_size=40)
    trained_dag, _ = cnn_train(dag, imdb, lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]}, **options)
    trained, _ = cnn_train(simple, imdb, lambda db, b: (db["x"][..., b], db["y"][b]), **options)
    biases = trained["layers"][0]["weights"][1]
    assert not np.array_equal(biases, simple["layers"][0]["weights"][1])  # averaged, although the rate is 0
    np.testing.assert_array_equal(np.ravel(biases), np.ravel(trained_dag.params[1].value))
    np.testing.assert_array_equal(trained["layers"][0]["weights"][0], simple["layers"][0]["weights"][0])


def test_types_whose_layers_hold_functions_stay_out_of_model_files(tmp_path):
    register_layer_type("pyfunc", _scale_forward, _scale_backward, holds_functions=True)
    try:
        net = {"layers": [{"type": "pyfunc", "name": "mine", "weights": [np.ones(1)]}]}
        with pytest.raises(TypeError, match=re.escape(
                "save_matconvnet: net['layers'][0] is a pyfunc layer; its Python functions cannot be stored")):
            save_matconvnet(net, os.path.join(tmp_path, "net.mat"))
        LAYER_TYPES["pyfunc"].holds_functions = False
        save_matconvnet(net, os.path.join(tmp_path, "net.mat"))  # as MATLAB would write such a layer
        LAYER_TYPES["pyfunc"].holds_functions = True
        with pytest.raises(ValueError, match=re.escape(
                "layers[0] ('mine') is a pyfunc layer; its MATLAB functions cannot run in cnnx")):
            load_matconvnet(os.path.join(tmp_path, "net.mat"))
    finally:
        del LAYER_TYPES["pyfunc"]


@pytest.mark.parametrize("make, message", [
    (lambda: Conv(pad=2**62), "Conv: pad must be 1, 2 or 4 non-negative whole numbers below 2^62, got 4611686018427387904"),
    (lambda: Conv(stride=[1, 2**70]), "Conv: stride must be 1 or 2 positive whole numbers below 2^62, got [1, "
                                      "1180591620717411303424]"),
])
def test_block_integers_follow_the_option_limit(make, message):
    # The same whole-number reading and 2^62 limit as the block functions' options (cnnx._options).
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_property_errors_name_the_block_class_as_filter_ones_did():
    # Every property names type(block), as pad/stride/dilate always did (a subclass says its own name).
    with pytest.raises(ValueError, match=re.escape("AvgConv: has_bias must be true or false, got 2")):
        AvgConv(has_bias=2)
    with pytest.raises(ValueError, match=re.escape("AvgConv: pad must be 1, 2 or 4 non-negative whole numbers")):
        AvgConv(pad=-1)
    assert Conv.pad.__doc__.startswith("[top, bottom, left, right] zero padding")


def test_simplenn_trainer_gives_the_labels_to_the_loss_layer():
    # The loss layer is the one whose type says loss=True, not the last one: here an identity follows it.
    from cnnx.train import cnn_train

    imdb, simple = small_problem()
    identity = {"type": "custom", "forward": lambda layer, a, b: {**b, "x": a["x"]},
                "backward": lambda layer, a, b: {**a, "dzdx": b["dzdx"]}}
    followed = {"layers": simple["layers"] + [identity]}
    batch = lambda db, b: (db["x"][..., b], db["y"][b])  # noqa: E731
    trained, stats = cnn_train(followed, imdb, batch, **QUIET)
    plain, plain_stats = cnn_train(simple, imdb, batch, **QUIET)
    assert stats["train"][0]["objective"] == plain_stats["train"][0]["objective"]
    assert stats["train"][0]["top1err"] == plain_stats["train"][0]["top1err"]
    assert np.array_equal(trained["layers"][0]["weights"][0], plain["layers"][0]["weights"][0])
    assert "class" not in trained["layers"][1]  # the labels are taken back after training

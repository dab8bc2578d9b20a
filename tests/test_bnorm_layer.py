"""The bnorm layer kind: SimpleNN's 'bnorm' and DagNN's BatchNorm over vl_nnbnorm, in both modes."""
import re

import numpy as np
import pytest

from cnnx import testing, vl_nnbnorm
from cnnx.dagnn import BatchNorm, DagNN
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn, vl_simplenn_tidy
from cnnx.train import cnn_train
from test_bnorm import bnorm_reference, load_reference, mcn_options
from test_train import QUIET, dag_batch, simple_batch, to_dag, weights_of

DTYPES = [np.float32, np.float64]


def bnorm_layer(rng, channels, dtype, shape=None, **fields):
    shape = shape or (channels, 1)
    weights = [rng.uniform(0.5, 2.0, shape).astype(dtype), rng.standard_normal(shape).astype(dtype),
               np.column_stack([rng.standard_normal(channels), rng.uniform(0.5, 2.0, channels)]).astype(dtype)]
    return {"type": "bnorm", "name": "bn", "weights": weights, **fields}


def both_graphs(net, x, dzdy, mode):
    """(res of vl_simplenn, the DagNN from_simplenn made of net, evaluated alike)."""
    res = vl_simplenn(net, x, dzdy, mode=mode)
    dag = DagNN.from_simplenn(net)
    dag.mode = mode
    output = dag.layers[-1].outputs[0]
    dag.eval({"x0": x}, {output: dzdy})
    return res, dag


# ------------------------------------------------------------------------------------------------
# The layer over its block, in both graphs
# ------------------------------------------------------------------------------------------------


def test_tidy_adds_zero_moments_in_the_gains_precision_and_epsilon():
    for dtype in DTYPES:
        gains = np.ones((3, 1), dtype)
        net = {"layers": [{"type": "bnorm", "weights": [gains, np.zeros((3, 1), dtype)]}]}
        layer = vl_simplenn_tidy(net)["layers"][0]
        assert layer["epsilon"] == 1e-5
        moments = layer["weights"][2]
        assert moments.shape == (3, 2) and moments.dtype == dtype and not moments.any()
        assert len(net["layers"][0]["weights"]) == 2  # the caller's list is left alone


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["normal", "test"])
@pytest.mark.parametrize("shape", [(5, 4, 3, 6), (5, 4, 3)])  # 3-D: one image (MATLAB's dropped N)
def test_both_graphs_give_the_blocks_values(dtype, mode, shape):
    rng = np.random.default_rng(1)
    layer = bnorm_layer(rng, 3, dtype, shape=(1, 3), epsilon=0.01)  # rows: derivatives keep the shape
    x = rng.standard_normal(shape).astype(dtype)
    dzdy = rng.standard_normal(shape).astype(dtype)
    res, dag = both_graphs({"layers": [layer]}, x, dzdy, mode)

    gains, biases, moments = layer["weights"]
    given = {"moments": moments} if mode == "test" else {}
    y, _ = vl_nnbnorm(x, gains, biases, epsilon=0.01, **given)
    # backward: the batch's moments in either mode (vl_simplenn's rule)
    dzdx, dzdg, dzdb, batch_moments = vl_nnbnorm(x, gains, biases, dzdy, epsilon=0.01)
    images = shape[3] if len(shape) == 4 else 1
    expected = [dzdg.reshape(1, 3), dzdb.reshape(1, 3), batch_moments * images]
    np.testing.assert_array_equal(res[1]["x"], y)
    np.testing.assert_array_equal(res[0]["dzdx"], dzdx)
    np.testing.assert_array_equal(dag.get_var("x1").value, y)
    np.testing.assert_array_equal(dag.get_var("x0").der, dzdx)
    for got, param, want in zip(res[0]["dzdw"], dag.params, expected):
        assert got.shape == want.shape and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(param.der, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_test_mode_normalises_by_the_stored_moments(dtype):
    rng = np.random.default_rng(2)
    layer = bnorm_layer(rng, 4, dtype)
    x = rng.standard_normal((3, 3, 4, 2)).astype(dtype)
    gains, biases, moments = layer["weights"]
    expected, _ = bnorm_reference(x, gains, biases, 1e-5, moments=moments)
    batch, _ = bnorm_reference(x, gains, biases, 1e-5)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for mode, want in (("test", expected), ("normal", batch)):
        res = vl_simplenn({"layers": [layer]}, x, mode=mode)
        np.testing.assert_allclose(res[1]["x"], want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", load_reference())
def test_the_layer_gives_matconvnets_outputs(case):
    """MatConvNet beta25's vl_nnbnorm outputs, through the layer: normal mode for the batch-moment
    cases (the moments 'derivative' is moments_bwd * N), test mode for the given-moment ones."""
    opts = mcn_options(case)
    given = dict(zip(opts[::2], opts[1::2])).get("moments")
    weights = [case.g, case.b, given if given is not None else np.zeros((case.g.size, 2), case.x.dtype)]
    net = {"layers": [{"type": "bnorm", "weights": weights, "epsilon": 1e-4}]}
    tol = 1e-5 if case.x.dtype == np.float32 else 1e-12
    res = vl_simplenn(net, case.x, case.dzdy, mode="normal" if given is None else "test")
    np.testing.assert_allclose(res[1]["x"], case.y, rtol=tol, atol=tol * max(1.0, np.abs(case.y).max()))
    if given is None:
        images = case.x.shape[3] if case.x.ndim == 4 else 1
        for got, want in zip(res[0]["dzdw"], (case.dzdg, case.dzdb, case.moments_bwd * images)):
            want = want.reshape(got.shape)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))
        np.testing.assert_allclose(res[0]["dzdx"], case.dzdx, rtol=tol,
                                   atol=tol * max(1.0, np.abs(case.dzdx).max()))


def small_network(rng, dtype=np.float64):
    """conv - bnorm - relu - conv - softmaxloss on 5x5x2 images, 3 classes."""
    return {"layers": [
        {"type": "conv", "weights": [rng.standard_normal((3, 3, 2, 4)).astype(dtype), None], "pad": 1},
        bnorm_layer(rng, 4, dtype),
        {"type": "relu"},
        {"type": "conv", "weights": [rng.standard_normal((5, 5, 4, 3)).astype(dtype), np.zeros(3, dtype)]},
        {"type": "softmaxloss", "class": np.array([1.0, 3, 2, 2])},
    ]}


def test_finite_differences_through_a_network_in_train_mode():
    rng = np.random.default_rng(3)
    net = small_network(rng)
    x = rng.standard_normal((5, 5, 2, 4))
    res = vl_simplenn(net, x, 1.0)
    testing.check_derivative(lambda t: vl_simplenn(net, t)[-1]["x"], x, 1.0, res[0]["dzdx"], method="central",
                             rtol=1e-6, projections=8)
    for i in (0, 1, 3):
        for j in range(2):
            if net["layers"][i]["weights"][j] is None:
                continue

            def loss(value, i=i, j=j):
                layers = [dict(layer) for layer in net["layers"]]
                layers[i]["weights"] = list(layers[i]["weights"])
                layers[i]["weights"][j] = value
                return vl_simplenn({"layers": layers}, x)[-1]["x"]

            testing.check_derivative(loss, net["layers"][i]["weights"][j], 1.0, res[i]["dzdw"][j], method="central",
                                     rtol=1e-6)


def test_read_only_weights_and_input():
    rng = np.random.default_rng(4)
    layer = bnorm_layer(rng, 2, np.float32)
    x = rng.standard_normal((3, 3, 2, 2)).astype(np.float32)
    expected = [vl_simplenn({"layers": [layer]}, x, x, mode=mode) for mode in ("normal", "test")]
    for array in (*layer["weights"], x):
        array.setflags(write=False)
    for mode, want in zip(("normal", "test"), expected):
        res = vl_simplenn({"layers": [layer]}, x, x, mode=mode)
        np.testing.assert_array_equal(res[1]["x"], want[1]["x"])
        for got, der in zip(res[0]["dzdw"], want[0]["dzdw"]):
            np.testing.assert_array_equal(got, der)


# ------------------------------------------------------------------------------------------------
# Conversion, the DagNN block, model files
# ------------------------------------------------------------------------------------------------


def test_from_simplenn_names_the_parameters_and_keeps_the_rates():
    rng = np.random.default_rng(5)
    layer = bnorm_layer(rng, 3, np.float32, epsilon=1e-3)
    dag = DagNN.from_simplenn({"layers": [layer]})
    block = dag.layers[0].block
    assert isinstance(block, BatchNorm) and block.num_channels == 3 and block.epsilon == 1e-3
    assert [p.name for p in dag.params] == ["bnm", "bnb", "bnx"]
    assert [(p.train_method, p.learning_rate) for p in dag.params] == [
        ("gradient", 1.0), ("gradient", 1.0), ("average", 0.1)]  # BatchNorm's own rate for the moments
    for param, weight in zip(dag.params, layer["weights"]):
        np.testing.assert_array_equal(param.value, weight)
    rated = dict(layer, learningRate=np.array([1.0, 2.0, 0.05]), weightDecay=np.array([0.0, 0.0]))
    dag = DagNN.from_simplenn({"layers": [rated]})
    assert [p.learning_rate for p in dag.params] == [1.0, 2.0, 0.05]
    assert [p.weight_decay for p in dag.params][:2] == [0.0, 0.0]


def test_batchnorm_block_properties_and_parameters():
    block = BatchNorm(num_channels=2, epsilon=0.5, opts=["NoCuDNN"])
    assert block.save() == {"numChannels": 2.0, "epsilon": 0.5, "opts": ["NoCuDNN"]}
    gains, biases, moments = block.init_params(None)
    assert (gains.shape, biases.shape, moments.shape) == ((2, 1), (2, 1), (2, 2))
    assert gains.dtype == np.float32 and (gains == 1).all() and not biases.any() and not moments.any()
    unset = BatchNorm(num_channels=np.zeros((0, 0)))  # MatConvNet's [] (fromSimpleNN leaves it so)
    assert unset.num_channels == 0
    message = "BatchNorm: num_channels is not set; give BatchNorm(num_channels=C)"
    with pytest.raises(ValueError, match=re.escape(message)):
        unset.init_params(None)
    assert BatchNorm().get_output_sizes([(4, 5, 2, 3)], []) == [(4, 5, 2, 3)]


@pytest.mark.parametrize("make, error, message", [
    (lambda: BatchNorm(epsilon=-1), ValueError, "BatchNorm: epsilon must be a finite number >= 0, got -1"),
    (lambda: BatchNorm(epsilon=float("nan")), ValueError, "BatchNorm: epsilon must be a finite number >= 0, got nan"),
    (lambda: BatchNorm(epsilon="1"), TypeError, "BatchNorm: epsilon must be a finite number >= 0, got the string '1'"),
    (lambda: BatchNorm(num_channels=1.5), ValueError, "BatchNorm: num_channels must be a non-negative whole number, "
                                                      "got 1.5"),
    (lambda: BatchNorm(num_channels=-1), ValueError, "BatchNorm: num_channels must be a non-negative whole number, "
                                                     "got -1"),
])
def test_batchnorm_property_errors(make, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make()


def test_a_bnorm_error_names_the_layer_in_both_graphs():
    layer = bnorm_layer(np.random.default_rng(6), 3, np.float32)
    x = np.zeros((2, 2, 4, 1), np.float32)
    with pytest.raises(ValueError, match=re.escape(
            "vl_simplenn: layers[0] ('bn'): vl_nnbnorm: G has 3 elements but X has 4 channels")):
        vl_simplenn({"layers": [layer]}, x)
    dag = DagNN.from_simplenn({"layers": [layer]})
    with pytest.raises(ValueError, match=re.escape(
            "DagNN.eval: layers[0] ('bn'): vl_nnbnorm: G has 3 elements but X has 4 channels")):
        dag.eval({"x0": x})


G3 = np.ones((3, 1), np.float32)


@pytest.mark.parametrize("weights, error, message", [
    ([G3], ValueError, "'weights' must hold 3 arrays [G, B, MOMENTS], got 1"),
    ([G3, G3, np.zeros((3, 2)), G3], ValueError, "'weights' must hold 3 arrays [G, B, MOMENTS], got 4"),
    ([G3, G3[:2], np.zeros((3, 2), np.float32)], ValueError,
     "the biases weights[1] must have one element per gain (3), got shape (2, 1)"),
    ([G3, G3, np.zeros((3, 3), np.float32)], ValueError,
     "the moments weights[2] must be C x 2 [MU SIGMA] for the 3 gains, got shape (3, 3)"),
    ([G3, G3.astype(np.float64)], TypeError, "the biases are float64 but the gains are float32"),
    ([G3, G3, np.zeros((3, 2))], TypeError, "the moments are float64 but the gains are float32"),
    ([G3.astype(int), G3], TypeError, "the gains weights[0] must be a float32 or float64 numpy array, got int64"),
    ([G3, None, G3], TypeError, "the biases weights[1] must be a float32 or float64 numpy array, got NoneType"),
])
def test_malformed_layers(weights, error, message):
    net = {"layers": [{"type": "bnorm", "name": "bn", "weights": weights}]}
    full = "vl_simplenn_tidy: layers[0] ('bn'): " + message
    with pytest.raises(error, match=f"^{re.escape(full)}$"):
        vl_simplenn_tidy(net)


def test_epsilon_follows_the_blocks_rule_in_tidy():
    net = {"layers": [{"type": "bnorm", "name": "bn", "weights": [G3, G3], "epsilon": -1}]}
    with pytest.raises(ValueError, match=re.escape("vl_simplenn_tidy: layers[0] ('bn'): Epsilon must be at least 0, "
                                                   "got -1.0")):
        vl_simplenn_tidy(net)


@pytest.mark.parametrize("dtype", DTYPES)
def test_model_files_round_trip_both_graphs(tmp_path, dtype):
    rng = np.random.default_rng(7)
    net = vl_simplenn_tidy(small_network(rng, dtype))
    net["layers"][1]["learningRate"] = np.array([1.0, 1.0, 0.05])
    save_matconvnet(net, tmp_path / "simple.mat")
    loaded = load_matconvnet(tmp_path / "simple.mat")
    layer = loaded["layers"][1]
    assert layer["type"] == "bnorm" and layer["epsilon"] == 1e-5 and isinstance(layer["epsilon"], float)
    for got, want in zip(layer["weights"], net["layers"][1]["weights"]):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want.reshape(got.shape))
    x = rng.standard_normal((5, 5, 2, 4)).astype(dtype)
    for mode in ("normal", "test"):
        np.testing.assert_array_equal(vl_simplenn(loaded, x, mode=mode)[-1]["x"],
                                      vl_simplenn(net, x, mode=mode)[-1]["x"])

    dag = DagNN.from_simplenn(net)
    dag.layers[1].block.epsilon = 0.25
    save_matconvnet(dag, tmp_path / "dag.mat")
    back = load_matconvnet(tmp_path / "dag.mat")
    block = back.layers[1].block
    assert isinstance(block, BatchNorm) and (block.num_channels, block.epsilon) == (4, 0.25)
    assert [(p.name, p.train_method, p.learning_rate) for p in back.params[1:4]] == [
        ("bnm", "gradient", 1.0), ("bnb", "gradient", 1.0), ("bnx", "average", 0.05)]
    for got, want in zip(back.params, dag.params):
        np.testing.assert_array_equal(got.value, want.value.reshape(got.value.shape))


# ------------------------------------------------------------------------------------------------
# Training: the moments as a running average of the batches' moments
# ------------------------------------------------------------------------------------------------


def bnorm_problem(network_type="simplenn", seed=8):
    """(net, imdb, get_batch): conv (no biases) - bnorm - relu - conv - softmaxloss on 6x5x3
    images of 3 classes, the bnorm layer set up as MatConvNet's cnn_mnist_init inserts it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 5, 3, 80), dtype=np.float32) + 0.5
    y = 1.0 + (x[0, 0, 0] > 0.5) + (x[2, 2, 2] > 1.0)
    imdb = {"x": x, "y": y.astype(np.float32)}
    net = {"layers": [
        {"type": "conv", "weights": [0.3 * rng.standard_normal((3, 3, 3, 4), dtype=np.float32), None], "pad": 1},
        {"type": "bnorm", "weights": [np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32)],
         "learningRate": np.array([1.0, 1.0, 0.05]), "weightDecay": np.array([0.0, 0.0])},
        {"type": "relu"},
        {"type": "conv", "weights": [0.1 * rng.standard_normal((6, 5, 4, 3), dtype=np.float32),
                                     np.zeros((1, 3), np.float32)]},
        {"type": "softmaxloss"},
    ]}
    if network_type == "dagnn":
        return to_dag(net), imdb, dag_batch
    return net, imdb, simple_batch


TRAIN = dict(batch_size=10, learning_rate=0.05, weight_decay=1e-3, train=np.arange(60), val=np.arange(60, 80),
             exp_dir=None, **QUIET)


def test_a_network_with_bnorm_trains_and_validates_with_its_moments():
    net, imdb, get_batch = bnorm_problem()
    trained, stats = cnn_train(net, imdb, get_batch, num_epochs=5, **TRAIN)
    objectives = [s["objective"] for s in stats["train"]]
    assert objectives[-1] < 0.7 * objectives[0]
    moments = trained["layers"][1]["weights"][2]
    assert moments.shape == (4, 2) and moments.dtype == np.float32 and (moments[:, 1] > 0.1).all()
    # validation ran in test mode: by the stored moments, not the batch's
    val = imdb["x"][..., 60:]
    layers = [dict(layer) for layer in trained["layers"]]
    layers[-1]["class"] = imdb["y"][60:]
    test_loss, normal_loss = (float(vl_simplenn({"layers": layers}, val, mode=mode)[-1]["x"]) / 20
                              for mode in ("test", "normal"))
    assert stats["val"][-1]["objective"] == pytest.approx(test_loss, rel=1e-5)
    assert abs(test_loss - normal_loss) > 1e-3


@pytest.mark.parametrize("num_sub_batches", [1, 2])
def test_simplenn_and_dagnn_train_to_the_same_weights(one_thread, num_sub_batches):
    trained = []
    for network_type in ("simplenn", "dagnn"):
        net, imdb, get_batch = bnorm_problem(network_type)
        trained.append(cnn_train(net, imdb, get_batch, num_epochs=2, num_sub_batches=num_sub_batches, **TRAIN)[0])
    simple, dag = ([w for w in weights_of(net) if w.dtype != object] for net in trained)  # conv1 has no biases
    assert len(simple) == len(dag) == 6
    for a, b in zip(simple, dag):
        np.testing.assert_array_equal(a, b)
    assert [p.train_method for p in trained[1].params][1:4] == ["gradient", "gradient", "average"]


@pytest.mark.parametrize("network_type", ["simplenn", "dagnn"])
def test_the_moments_average_the_sub_batches_moments(network_type):
    """With the gradient steps off, each batch moves the moments towards the batch's moments, the
    average of its sub-batches' weighted by their images: w = (1 - m) w + m / B sum_s N_s moments_s."""
    rng = np.random.default_rng(9)
    channel_scale, channel_mean = np.array([1.0, 3.0])[:, None], np.array([0.5, -2.0])[:, None]
    x = (rng.standard_normal((4, 3, 2, 23)) * channel_scale + channel_mean).astype(np.float32)
    imdb = {"x": x, "y": np.ones(23, np.float32)}
    net = {"layers": [
        {"type": "bnorm", "weights": [np.ones(2, np.float32), np.zeros(2, np.float32)],
         "learningRate": np.array([0.0, 0.0, 0.3])},
        {"type": "conv", "weights": [np.ones((4, 3, 2, 2), np.float32), np.zeros(2, np.float32)]},
        {"type": "softmaxloss"},
    ]}
    pieces = []

    def get_batch(imdb, batch, inner=dag_batch if network_type == "dagnn" else simple_batch):
        pieces.append(batch)
        return inner(imdb, batch)

    if network_type == "dagnn":
        net = to_dag(net)
    trained, _ = cnn_train(net, imdb, get_batch, batch_size=8, num_sub_batches=3, num_epochs=1, learning_rate=0.0,
                           weight_decay=0.0, train=np.arange(23), val=[], exp_dir=None, **QUIET)
    assert [len(piece) for piece in pieces] == [3, 3, 2, 3, 3, 2, 3, 2, 2]  # 8 + 8 + 7 images
    expected = np.zeros((2, 2))
    for t in range(0, 9, 3):
        batch = pieces[t:t + 3]
        total = sum(len(piece) * vl_nnbnorm(x[..., piece].astype(np.float64), np.ones(2), np.zeros(2),
                                            epsilon=1e-5)[1] for piece in batch)
        expected = 0.7 * expected + 0.3 / sum(len(piece) for piece in batch) * total
    moments = trained["layers"][0]["weights"][2] if network_type == "simplenn" else trained.params[2].value
    np.testing.assert_allclose(moments, expected, rtol=1e-5)
    assert np.abs(expected).min() > 0.1


@pytest.mark.parametrize("network_type", ["simplenn", "dagnn"])
def test_resuming_gives_the_uninterrupted_weights(tmp_path, one_thread, network_type):
    options = dict(TRAIN, exp_dir=None)
    net, imdb, get_batch = bnorm_problem(network_type)
    straight, _ = cnn_train(net, imdb, get_batch, num_epochs=3, **options)
    options["exp_dir"] = tmp_path
    net, imdb, get_batch = bnorm_problem(network_type)
    cnn_train(net, imdb, get_batch, num_epochs=2, **options)
    net, imdb, get_batch = bnorm_problem(network_type)
    resumed, _ = cnn_train(net, imdb, get_batch, num_epochs=3, **options)
    for a, b in zip(weights_of(straight), weights_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights_of(straight)[3], weights_of(bnorm_problem(network_type)[0])[3])  # moments


def test_the_multipliers_of_a_bnorm_layer():
    net, imdb, get_batch = bnorm_problem()
    net["layers"][1]["learningRate"] = np.array([1.0, 1.0])
    with pytest.raises(ValueError, match=re.escape(
            "cnn_train: layers[1] ('layer2') has 3 weights but 2 learningRate multipliers")):
        cnn_train(net, imdb, get_batch, num_epochs=1, **TRAIN)
    net["layers"][1]["learningRate"] = np.array([1.0, 1.0, 0.0])
    net["layers"][1]["weightDecay"] = np.array([0.0])  # the biases' decay is read: it must be there
    with pytest.raises(ValueError, match=re.escape(
            "cnn_train: layers[1] ('layer2') has 3 weights but 1 weightDecay multipliers")):
        cnn_train(net, imdb, get_batch, num_epochs=1, **TRAIN)

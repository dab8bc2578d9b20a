"""MatConvNet's CIFAR-10 models (cnn_cifar_init and cnn_cifar_init_nin)."""
import numpy as np
import pytest

from cnnx.models import cifar_dagnn, cifar_lenet, cifar_nin, mnist_dagnn, mnist_lenet
from cnnx.simplenn import vl_simplenn

MODELS = {"lenet": cifar_lenet, "nin": cifar_nin}

LENET = [  # type, filter or window, pad, stride, method, learning rate, init std, output size
    ("conv", (5, 5, 3, 32), 2, 1, None, [0.1, 2], 0.01, (32, 32, 32)),
    ("pool", (3, 3), [0, 1, 0, 1], 2, "max", None, None, (16, 16, 32)),
    ("relu", None, None, None, None, None, None, (16, 16, 32)),
    ("conv", (5, 5, 32, 32), 2, 1, None, [0.1, 2], 0.05, (16, 16, 32)),
    ("relu", None, None, None, None, None, None, (16, 16, 32)),
    ("pool", (3, 3), [0, 1, 0, 1], 2, "avg", None, None, (8, 8, 32)),
    ("conv", (5, 5, 32, 64), 2, 1, None, [0.1, 2], 0.05, (8, 8, 64)),
    ("relu", None, None, None, None, None, None, (8, 8, 64)),
    ("pool", (3, 3), [0, 1, 0, 1], 2, "avg", None, None, (4, 4, 64)),
    ("conv", (4, 4, 64, 64), 0, 1, None, [0.1, 2], 0.05, (1, 1, 64)),
    ("relu", None, None, None, None, None, None, (1, 1, 64)),
    ("conv", (1, 1, 64, 10), 0, 1, None, [0.01, 0.2], 0.05, (1, 1, 10)),
    ("softmaxloss", None, None, None, None, None, None, ()),
]


def he(k, m):
    return np.sqrt(2 / (k * k * m))


NIN = [  # name, type, filter or window, pad, stride, method, learning rate, init std, output size
    ("conv1", "conv", (5, 5, 3, 192), 2, 1, None, [1, 10], he(5, 3), (32, 32, 192)),
    ("relu1", "relu", None, None, None, None, None, None, (32, 32, 192)),
    ("cccp1", "conv", (1, 1, 192, 160), 0, 1, None, [1, 10], he(1, 192), (32, 32, 160)),
    ("relu_cccp1", "relu", None, None, None, None, None, None, (32, 32, 160)),
    ("cccp2", "conv", (1, 1, 160, 96), 0, 1, None, [1, 10], he(1, 160), (32, 32, 96)),
    ("relu_cccp2", "relu", None, None, None, None, None, None, (32, 32, 96)),
    ("pool1", "pool", (3, 3), 0, 2, "max", None, None, (15, 15, 96)),
    ("dropout1", "dropout", None, None, None, None, None, None, (15, 15, 96)),
    ("conv2", "conv", (5, 5, 96, 192), 2, 1, None, [1, 10], he(5, 96), (15, 15, 192)),
    ("relu2", "relu", None, None, None, None, None, None, (15, 15, 192)),
    ("cccp3", "conv", (1, 1, 192, 192), 0, 1, None, [1, 10], he(1, 192), (15, 15, 192)),
    ("relu_cccp3", "relu", None, None, None, None, None, None, (15, 15, 192)),
    ("cccp4", "conv", (1, 1, 192, 192), 0, 1, None, [1, 10], he(1, 192), (15, 15, 192)),
    ("relu_cccp4", "relu", None, None, None, None, None, None, (15, 15, 192)),
    ("pool2", "pool", (3, 3), 0, 2, "avg", None, None, (7, 7, 192)),
    ("dropout2", "dropout", None, None, None, None, None, None, (7, 7, 192)),
    ("conv3", "conv", (3, 3, 192, 192), 1, 1, None, [1, 10], he(3, 192), (7, 7, 192)),
    ("relu3", "relu", None, None, None, None, None, None, (7, 7, 192)),
    ("cccp5", "conv", (1, 1, 192, 192), 0, 1, None, [1, 10], he(1, 192), (7, 7, 192)),
    ("relu_cccp5", "relu", None, None, None, None, None, None, (7, 7, 192)),
    ("cccp6", "conv", (1, 1, 192, 10), 0, 1, None, [0.001, 0.01], 0.1 * he(1, 192), (7, 7, 10)),
    ("pool3", "pool", (7, 7), 0, 1, "avg", None, None, (1, 1, 10)),
    ("layer23", "softmaxloss", None, None, None, None, None, None, ()),
]


def check_layer(layer, layer_type, size, pad, stride, method, learning_rate, std, bias_shape,
                dtype):
    assert layer["type"] == layer_type
    if layer_type == "conv":
        filters, biases = layer["weights"]
        assert filters.shape == size and filters.dtype == dtype
        assert biases.shape == bias_shape(size[3]) and biases.dtype == dtype
        assert not biases.any()
        assert layer["pad"] == pad and layer["stride"] == stride
        np.testing.assert_allclose(layer["learningRate"], learning_rate, rtol=1e-12)
        # the sample std of a few thousand normal draws is within a few percent of std
        assert abs(filters.std() / std - 1) < 8 / np.sqrt(filters.size)
        assert abs(filters.mean()) < 8 * std / np.sqrt(filters.size)
    elif layer_type == "pool":
        assert list(layer["pool"]) == list(size)
        assert layer["pad"] == pad and layer["stride"] == stride and layer["method"] == method
        assert layer["weights"] == []
    elif layer_type == "dropout":
        assert layer["rate"] == 0.5
    elif layer_type == "relu":
        assert layer["leak"] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lenet_layers(dtype):
    net = cifar_lenet(dtype=dtype)
    assert len(net["layers"]) == len(LENET)
    for i, (layer, row) in enumerate(zip(net["layers"], LENET)):
        layer_type, size, pad, stride, method, lr, std, _ = row
        assert layer["name"] == f"layer{i + 1}" and layer["precious"] is False
        check_layer(layer, layer_type, size, pad, stride, method, lr, std, lambda k: (1, k), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nin_layers(dtype):
    net = cifar_nin(dtype=dtype)
    assert len(net["layers"]) == len(NIN)
    for layer, row in zip(net["layers"], NIN):
        name, layer_type, size, pad, stride, method, lr, std, _ = row
        assert layer["name"] == name
        check_layer(layer, layer_type, size, pad, stride, method, lr, std, lambda k: (k, 1), dtype)


def count(net):
    weights = [w for layer in net["layers"] if layer["type"] == "conv" for w in layer["weights"]]
    return sum(w.size for w in weights[0::2]), sum(b.size for b in weights[1::2])


@pytest.mark.parametrize("model, filters, biases", [
    ("lenet", 145_376, 202), ("nin", 965_568, 1_418)])
def test_parameter_counts(model, filters, biases):
    net = MODELS[model]()
    assert count(net) == (filters, biases)
    assert sum(count(net)) == {"lenet": 145_578, "nin": 966_986}[model]


@pytest.mark.parametrize("model, rates, weight_decay", [
    ("lenet", [0.05] * 30 + [0.005] * 10 + [0.0005] * 5, 1e-4),
    ("nin", [0.002, 0.01, 0.02] + [0.04] * 80 + [0.004] * 10 + [0.0004] * 10, 5e-4),
])
def test_meta_and_schedule(model, rates, weight_decay):
    meta = MODELS[model]()["meta"]
    assert list(meta["inputSize"]) == [32, 32, 3]
    opts = meta["trainOpts"]
    np.testing.assert_allclose(opts["learningRate"], rates, rtol=1e-12)
    assert opts["numEpochs"] == len(rates) == {"lenet": 45, "nin": 103}[model]
    assert opts["weightDecay"] == weight_decay and opts["batchSize"] == 100


@pytest.mark.parametrize("model", sorted(MODELS))
def test_seeding(model):
    make = MODELS[model]
    first = make(rng=5)["layers"][0]["weights"][0]
    np.testing.assert_array_equal(first, make(rng=5)["layers"][0]["weights"][0])
    generated = make(rng=np.random.default_rng(5))["layers"][0]["weights"][0]
    np.testing.assert_array_equal(first, generated)
    assert not np.array_equal(first, make(rng=6)["layers"][0]["weights"][0])


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("dtype", [np.int32, np.float16, "complex64"])
def test_rejects_other_dtypes(model, dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        MODELS[model](dtype=dtype)


@pytest.mark.parametrize("model, table, column", [("lenet", LENET, 7), ("nin", NIN, 8)])
def test_output_sizes(model, table, column):
    net = MODELS[model]()
    rng = np.random.default_rng(0)
    x = np.asfortranarray(rng.standard_normal((32, 32, 3, 2), dtype=np.float32))
    net["layers"][-1]["class"] = np.array([3, 7], dtype=np.float32)
    res = vl_simplenn(net, x, mode="test")
    for i, row in enumerate(table):
        out = res[i + 1]["x"]
        if row[column]:
            assert out.shape == (*row[column], 2), (i, out.shape)
        else:
            assert out.size == 1 and np.isfinite(out).all()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_dagnn_version_adds_the_error_output(model):
    net = MODELS[model]()
    dag = cifar_dagnn(net)
    error = dag.get_layer("error")
    assert error.inputs == ["prediction", "label"] and error.outputs == ["error"]
    assert error.block.loss == "classerror"
    assert sorted(dag.get_outputs()) == ["error", "objective"]
    assert dag.get_inputs() == ["input", "label"]
    assert dag.meta["trainOpts"]["numEpochs"] == net["meta"]["trainOpts"]["numEpochs"]
    # the converted network computes what the SimpleNN one does
    rng = np.random.default_rng(1)
    x = np.asfortranarray(rng.standard_normal((32, 32, 3, 4), dtype=np.float32))
    labels = np.array([1, 4, 9, 10], dtype=np.float32)
    dag.mode = "test"
    dag.eval({"input": x, "label": labels})
    net["layers"][-1]["class"] = labels
    res = vl_simplenn(net, x, mode="test")
    np.testing.assert_allclose(dag.get_var("objective").value, res[-1]["x"], rtol=1e-6)
    predicted = res[-2]["x"].reshape(10, 4).argmax(axis=0) + 1
    np.testing.assert_allclose(dag.get_var("error").value, np.sum(predicted != labels))


# --------------------------------------------------------------------------------------------------
# batch_normalization: MatConvNet's cnn_mnist_init rule, for the MNIST and the CIFAR models
# --------------------------------------------------------------------------------------------------

BNORM_MODELS = {"cifar_lenet": cifar_lenet, "cifar_nin": cifar_nin, "mnist_lenet": mnist_lenet}


@pytest.mark.parametrize("model", sorted(BNORM_MODELS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_normalization_puts_bnorm_after_every_convolution_but_the_last(model, dtype):
    make = BNORM_MODELS[model]
    plain, net = make(dtype=dtype), make(dtype=dtype, batch_normalization=True)
    convolutions = [k for k, layer in enumerate(plain["layers"]) if layer["type"] == "conv"]
    expected = []
    for k, layer in enumerate(plain["layers"]):
        expected.append(layer["type"])
        if k in convolutions[:-1]:
            expected.append("bnorm")
    assert [layer["type"] for layer in net["layers"]] == expected
    np.testing.assert_array_equal(net["meta"]["trainOpts"]["learningRate"], plain["meta"]["trainOpts"]["learningRate"])
    plain_convs = iter(layer for layer in plain["layers"] if layer["type"] == "conv")
    for k, layer in enumerate(net["layers"]):
        if layer["type"] == "conv":
            same = next(plain_convs)
            np.testing.assert_array_equal(layer["weights"][0], same["weights"][0])  # the same draws
            followed = net["layers"][k + 1]["type"] == "bnorm"
            assert (layer["weights"][1] is None) == followed  # bnorm's biases replace the conv's
        if layer["type"] != "bnorm":
            continue
        channels = net["layers"][k - 1]["weights"][0].shape[3]
        gains, biases, moments = layer["weights"]
        assert (gains.shape, biases.shape, moments.shape) == ((channels, 1), (channels, 1), (channels, 2))
        assert gains.dtype == biases.dtype == moments.dtype == dtype
        assert (gains == 1).all() and not biases.any() and not moments.any()
        assert list(layer["learningRate"]) == [1, 1, 0.05] and list(layer["weightDecay"]) == [0, 0]
        assert layer["epsilon"] == 1e-5
        named = net["layers"][k - 1]["name"] + "_bn" if model == "cifar_nin" else f"layer{k + 1}"  # as tidy names
        assert layer["name"] == named


def test_mnist_with_batch_normalization_has_matconvnets_parameter_count():
    net = mnist_lenet(batch_normalization=True)
    assert sum(w.size for layer in net["layers"] for w in layer["weights"] if w is not None) == 431_080 + 3 * 570


@pytest.mark.parametrize("model, to_dag", [(cifar_lenet, cifar_dagnn), (mnist_lenet, mnist_dagnn)])
def test_batch_normalized_models_compute_alike_in_both_graphs(model, to_dag):
    net = model(batch_normalization=True)
    dag = to_dag(net)
    assert [p.train_method for p in dag.params].count("average") == {cifar_lenet: 4, mnist_lenet: 3}[model]
    size = net["meta"]["inputSize"]
    x = np.asfortranarray(np.random.default_rng(2).standard_normal((*size, 4), dtype=np.float32))
    labels = np.array([1, 4, 9, 10], dtype=np.float32)
    dag.eval({"input": x, "label": labels})  # normal mode: the batch's moments
    net["layers"][-1]["class"] = labels
    np.testing.assert_array_equal(dag.get_var("objective").value, vl_simplenn(net, x)[-1]["x"])


def test_batch_normalization_is_true_or_false():
    with pytest.raises(TypeError, match="^mnist_lenet: batch_normalization must be true or false, got 'yes'$"):
        mnist_lenet(batch_normalization="yes")

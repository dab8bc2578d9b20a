"""cnnx.deploy and examples/classify.py: trained networks, loss layers and all, classify new images.

The networks are small models of MatConvNet's ImageNet files (conv, bnorm, relu, LRN, pooling,
dropout, a fully connected conv, softmaxloss; a DagNN with BatchNorm and a Sum as in its ResNet
files) saved in MatConvNet's file layout; predictions are checked against a NumPy reference.
"""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnx import dagnn, models
from cnnx.deploy import cnn_imagenet_deploy, load_image, normalize_image, predict
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSIFY = os.path.join(os.path.dirname(HERE), "examples", "classify.py")
Image = pytest.importorskip("PIL.Image")


# ------------------------------------------------------------------------------------------------
# NumPy reference (float64)
# ------------------------------------------------------------------------------------------------


def conv_ref(x, f, b, pad=0):
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
    fh, fw, _, k = f.shape
    out = np.zeros((x.shape[0] - fh + 1, x.shape[1] - fw + 1, k, x.shape[3]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.einsum("abcn,abck->kn", x[i : i + fh, j : j + fw], f)
    return out + np.ravel(b).reshape(1, 1, -1, 1)


def bnorm_ref(x, g, b, moments):
    mu, sigma = moments[:, 0], moments[:, 1]
    return g.reshape(1, 1, -1, 1) * (x - mu.reshape(1, 1, -1, 1)) / sigma.reshape(1, 1, -1, 1) + b.reshape(1, 1, -1, 1)


def lrn_ref(x, n, kappa, alpha, beta):
    """MatConvNet's cross-channel LRN with the exact power: the window of channel k is
    [k - floor((n-1)/2), k + ceil((n-1)/2)]."""
    m1 = (n - 1) // 2
    m2 = n - 1 - m1
    out = np.empty_like(x)
    for k in range(x.shape[2]):
        window = x[:, :, max(0, k - m1) : min(x.shape[2], k + m2 + 1)]
        out[:, :, k] = x[:, :, k] * (kappa + alpha * (window**2).sum(axis=2)) ** -beta
    return out


def max_pool_ref(x, size):
    h, w = x.shape[0] // size, x.shape[1] // size
    return x[: h * size, : w * size].reshape(h, size, w, size, *x.shape[2:]).max(axis=(1, 3))


def softmax_ref(x):
    e = np.exp(x - x.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


# ------------------------------------------------------------------------------------------------
# Networks in MatConvNet's layouts
# ------------------------------------------------------------------------------------------------

CLASSES = ["tench", "goldfish", "great white shark", "tiger shark"]


def imagenet_style_simplenn(seed=0, scale=0.3):
    """conv-bnorm-relu-lrn-pool-dropout-conv(fc)-softmaxloss on 10x10x3 images, 4 classes; weights
    ``scale * randn`` (small ones keep the class scores of 0..255 images apart from 0 and 1)."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * scale

    moments = np.stack([rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)], axis=1).astype(np.float32)
    layers = [
        {"type": "conv", "name": "conv1", "weights": [w(3, 3, 3, 5), w(5)], "pad": 1, "stride": 1,
         "momentum": [np.zeros((3, 3, 3, 5), np.float32), np.zeros(5, np.float32)]},
        {"type": "bnorm", "name": "bn1", "weights": [1 + w(5), w(5), moments]},
        {"type": "relu", "name": "relu1"},
        {"type": "normalize", "name": "norm1", "param": [5, 1.0, 0.1, 0.75]},
        {"type": "pool", "name": "pool1", "method": "max", "pool": [2, 2], "stride": 2},
        {"type": "dropout", "name": "drop1", "rate": 0.5},
        {"type": "conv", "name": "fc", "weights": [w(5, 5, 5, 4), w(4)]},
        {"type": "softmaxloss", "name": "loss"},
    ]
    meta = {"normalization": {"imageSize": [10, 10, 3], "averageImage": np.array([120.0, 110.0, 100.0])},
            "classes": {"name": ["n01440764", "n01443537", "n01484850", "n01491361"], "description": CLASSES}}
    return {"layers": layers, "meta": meta}


def simplenn_ref(net, x):
    """The reference of imagenet_style_simplenn's network in test mode."""
    conv1, bn1, _, norm1, _, _, fc, _ = net["layers"]
    y = conv_ref(x, *conv1["weights"][:2], pad=1)
    y = np.maximum(bnorm_ref(y, *(np.asarray(v, np.float64) for v in bn1["weights"])), 0)
    y = max_pool_ref(lrn_ref(y, *norm1["param"]), 2)
    return softmax_ref(conv_ref(y, *fc["weights"]))


def resnet_style_dagnn(seed=1):
    """conv-BatchNorm-ReLU-conv-BatchNorm + skip (Sum) - ReLU - global average pool - fc - Loss, top1err."""
    rng = np.random.default_rng(seed)
    net = dagnn.DagNN()
    net.add_layer("conv1", dagnn.Conv(size=[3, 3, 3, 4], pad=1, has_bias=False), ["input"], ["x1"], ["conv1_f"])
    net.add_layer("bn1", dagnn.BatchNorm(num_channels=4), ["x1"], ["x2"], ["bn1_m", "bn1_b", "bn1_x"])
    net.add_layer("relu1", dagnn.ReLU(), ["x2"], ["x3"])
    net.add_layer("conv2", dagnn.Conv(size=[3, 3, 4, 4], pad=1, has_bias=False), ["x3"], ["x4"], ["conv2_f"])
    net.add_layer("bn2", dagnn.BatchNorm(num_channels=4), ["x4"], ["x5"], ["bn2_m", "bn2_b", "bn2_x"])
    net.add_layer("sum", dagnn.Sum(), ["x5", "x3"], ["x6"])
    net.add_layer("relu2", dagnn.ReLU(), ["x6"], ["x7"])
    net.add_layer("pool", dagnn.Pooling(method="avg", pool_size=[8, 8]), ["x7"], ["x8"])
    net.add_layer("fc", dagnn.Conv(size=[1, 1, 4, 4]), ["x8"], ["prediction"], ["fc_f", "fc_b"])
    net.add_layer("loss", dagnn.Loss(loss="softmaxlog"), ["prediction", "label"], ["objective"])
    net.add_layer("top1err", dagnn.Loss(loss="classerror"), ["prediction", "label"], ["top1err"])
    for p in net.params:
        if p.name.endswith("_x"):
            p.value = np.stack([rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)], axis=1).astype(np.float32)
        elif p.name.endswith("_m"):
            p.value = (1 + 0.3 * rng.standard_normal(4)).astype(np.float32)
        else:
            shape = {"conv1_f": (3, 3, 3, 4), "conv2_f": (3, 3, 4, 4), "fc_f": (1, 1, 4, 4)}.get(p.name, (4,))
            p.value = (0.3 * rng.standard_normal(shape)).astype(np.float32)
    net.meta = {"normalization": {"imageSize": [8, 8, 3], "averageImage": np.full((8, 8, 3), 50.0)},
                "classes": {"description": CLASSES}}
    return net


def dagnn_ref(net, x):
    v = {p.name: np.asarray(p.value, np.float64) for p in net.params}
    x3 = np.maximum(bnorm_ref(conv_ref(x, v["conv1_f"], np.zeros(4), pad=1), v["bn1_m"], v["bn1_b"], v["bn1_x"]), 0)
    x5 = bnorm_ref(conv_ref(x3, v["conv2_f"], np.zeros(4), pad=1), v["bn2_m"], v["bn2_b"], v["bn2_x"])
    x8 = np.maximum(x5 + x3, 0).mean(axis=(0, 1), keepdims=True)
    return softmax_ref(conv_ref(x8, v["fc_f"], v["fc_b"]))


# ------------------------------------------------------------------------------------------------
# cnn_imagenet_deploy and predict
# ------------------------------------------------------------------------------------------------


def test_simplenn_deploy_is_matconvnets(tmp_path):
    net = imagenet_style_simplenn()
    before = copy.deepcopy(net)
    deployed = cnn_imagenet_deploy(net)
    assert [layer["type"] for layer in deployed["layers"]] == ["conv", "relu", "normalize", "pool", "conv", "softmax"]
    assert deployed["layers"][-1]["name"] == "prob"
    assert all("momentum" not in layer for layer in deployed["layers"])
    # The input is not changed.
    assert [layer["type"] for layer in net["layers"]] == [layer["type"] for layer in before["layers"]]
    np.testing.assert_array_equal(net["layers"][0]["weights"][0], before["layers"][0]["weights"][0])
    # Folding the bnorm into conv1 is the bnorm in test mode.
    x = np.random.default_rng(3).standard_normal((10, 10, 3, 2)).astype(np.float32)
    undeployed = [layer for layer in net["layers"] if layer["type"] not in ("softmaxloss", "dropout")]
    folded = vl_simplenn({"layers": deployed["layers"][:4]}, x)[-1]["x"]
    tested = vl_simplenn({"layers": undeployed[:5]}, x, mode="test")[-1]["x"]
    np.testing.assert_allclose(folded, tested, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrapper", ["simplenn", "dagnn"])
def test_predict_from_a_model_file_is_the_reference(tmp_path, wrapper):
    net = imagenet_style_simplenn() if wrapper == "simplenn" else resnet_style_dagnn()
    size = (10, 10) if wrapper == "simplenn" else (8, 8)
    save_matconvnet(net, tmp_path / "model.mat")
    loaded = load_matconvnet(tmp_path / "model.mat")
    x = np.random.default_rng(4).standard_normal((*size, 3, 3)).astype(np.float32)
    expected = (simplenn_ref if wrapper == "simplenn" else dagnn_ref)(net, x.astype(np.float64))
    scores = predict(loaded, x)
    assert scores.shape == (1, 1, 4, 3) and scores.dtype == np.float32
    # The bnorm fold's float32 rounding only: cnnx computes LRN's power exactly, as the reference.
    np.testing.assert_allclose(scores, expected, rtol=2e-5, atol=2e-6)
    # A deployed network is used as it is, and gives the same.
    np.testing.assert_array_equal(predict(cnn_imagenet_deploy(loaded), x), scores)


def test_dagnn_deploy_folds_batchnorm_and_keeps_the_skip():
    net = resnet_style_dagnn()
    deployed = cnn_imagenet_deploy(net)
    kinds = [(layer.name, layer.block.type_name) for layer in deployed.layers]
    assert kinds == [("conv1", "dagnn.Conv"), ("relu1", "dagnn.ReLU"), ("conv2", "dagnn.Conv"),
                     ("sum", "dagnn.Sum"), ("relu2", "dagnn.ReLU"), ("pool", "dagnn.Pooling"), ("fc", "dagnn.Conv"),
                     ("prob", "dagnn.SoftMax")]
    assert deployed.mode == "test" and deployed.get_outputs() == ["prob"]
    assert deployed.get_layer("conv1").params == ["conv1_f", "conv1_b"] and deployed.get_layer("conv1").block.has_bias
    assert [layer.name for layer in net.layers][-2:] == ["loss", "top1err"]  # the input keeps its layers


def test_a_bnorm_without_a_conv_before_it_stays_and_runs_on_its_moments():
    net = imagenet_style_simplenn()
    layers = net["layers"]
    layers[1], layers[2] = layers[2], layers[1]  # relu, then bnorm
    deployed = cnn_imagenet_deploy(net)
    assert [layer["type"] for layer in deployed["layers"]][:3] == ["conv", "relu", "bnorm"]
    x = np.random.default_rng(5).standard_normal((10, 10, 3, 2)).astype(np.float32)
    conv1, relu1, bn1 = layers[:3]
    y = np.maximum(conv_ref(x.astype(np.float64), *conv1["weights"][:2], pad=1), 0)
    expected = bnorm_ref(y, *(np.asarray(v, np.float64) for v in bn1["weights"]))
    got = vl_simplenn({"layers": deployed["layers"][:3]}, x, mode="test")[-1]["x"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_loss_layer_of_any_kind_is_removed():
    net = imagenet_style_simplenn()
    net["layers"][-1] = {"type": "loss", "name": "objective", "loss": "softmaxlog"}
    net["layers"].append({"type": "loss", "name": "error", "loss": "classerror"})
    assert [layer["type"] for layer in cnn_imagenet_deploy(net)["layers"]][-2:] == ["conv", "softmax"]


def test_an_already_deployed_network_gets_no_second_softmax():
    deployed = cnn_imagenet_deploy(imagenet_style_simplenn())
    assert [layer["type"] for layer in cnn_imagenet_deploy(deployed)["layers"]].count("softmax") == 1


def test_a_dagnn_without_loss_and_two_outputs_is_an_error():
    net = dagnn.DagNN()
    net.add_layer("a", dagnn.ReLU(), ["input"], ["x"])
    net.add_layer("b", dagnn.ReLU(), ["input"], ["y"])
    with pytest.raises(ValueError) as error:
        cnn_imagenet_deploy(net)
    assert str(error.value) == ("cnn_imagenet_deploy: the DagNN has no loss layer and 2 outputs (x, y): which one "
                                "is the prediction is unknown")


def test_deploy_refuses_what_is_not_a_network():
    with pytest.raises(TypeError) as error:
        cnn_imagenet_deploy([1, 2])
    assert str(error.value) == "cnn_imagenet_deploy: net must be a SimpleNN dict or a cnnx.dagnn.DagNN, got list"


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------


def test_normalize_image_resizes_and_subtracts_the_average():
    meta = imagenet_style_simplenn()["meta"]
    image = np.full((20, 30, 3), 200.0, np.float32)
    out = normalize_image(image, meta)
    assert out.shape == (10, 10, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[4, 4], [80.0, 90.0, 100.0], rtol=1e-6)  # a flat image stays flat
    whole = {"normalization": {"imageSize": [2, 2, 1], "averageImage": np.arange(4.0).reshape(2, 2, 1)}}
    np.testing.assert_array_equal(normalize_image(np.full((2, 2), 5.0), whole)[..., 0], [[5, 4], [3, 2]])


@pytest.mark.parametrize("meta, image, message", [
    ({}, np.zeros((2, 2, 3)), "normalize_image: meta must have normalization.imageSize (MatConvNet's net.meta)"),
    ({"normalization": {"imageSize": [2, 2, 3]}}, np.zeros((2, 2, 1)),
     "normalize_image: the network takes 3-channel images, got shape (2, 2, 1)"),
])
def test_normalize_image_errors(meta, image, message):
    with pytest.raises(ValueError) as error:
        normalize_image(image, meta)
    assert str(error.value) == message


def test_load_image_reads_rgb_and_grey(tmp_path):
    pixels = np.random.default_rng(6).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), pixels.astype(np.float32))
    grey = load_image(tmp_path / "rgb.png", channels=1)
    assert grey.shape == (5, 7, 1)
    with pytest.raises(ValueError) as error:
        load_image(tmp_path / "rgb.png", channels=2)
    assert str(error.value) == "load_image: channels must be 1 or 3, got 2"


def test_without_pillow_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError) as error:
        load_image(tmp_path / "any.png")
    assert str(error.value) == ("cnnx.deploy: reading and resizing images needs Pillow: pip install 'cnnx[images]' "
                                "(or pip install Pillow)")


# ------------------------------------------------------------------------------------------------
# examples/classify.py
# ------------------------------------------------------------------------------------------------


def run_classify(*args):
    import cnnx

    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnx.__file__)))
    env = dict(os.environ, PYTHONPATH=root, CNNX_NUM_THREADS="1")
    return subprocess.run([sys.executable, CLASSIFY, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("wrapper", ["simplenn", "dagnn"])
def test_classify_prints_the_reference_top_classes(tmp_path, wrapper):
    net = imagenet_style_simplenn(scale=0.01) if wrapper == "simplenn" else resnet_style_dagnn()
    save_matconvnet(net, tmp_path / "model.mat")
    rng = np.random.default_rng(7)
    paths = []
    for n in range(2):
        path = tmp_path / f"photo{n}.png"
        Image.fromarray(rng.integers(0, 256, (24, 18, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    finished = run_classify(tmp_path / "model.mat", *paths, "--top", "3")
    assert finished.returncode == 0, finished.stderr
    reference = simplenn_ref if wrapper == "simplenn" else dagnn_ref
    expected = []
    for path in paths:
        x = normalize_image(load_image(path), net["meta"] if wrapper == "simplenn" else net.meta)
        scores = reference(net, x[..., None].astype(np.float64)).ravel()
        expected.append(f"{path}:")
        expected += [f"  {scores[k]:.4f}  {CLASSES[k]} ({k + 1})" for k in np.argsort(-scores, kind="stable")[:3]]
    assert finished.stdout.splitlines() == expected


def test_classify_digits_with_an_mnist_checkpoint(tmp_path):
    """A cnn_train checkpoint of the mnist example's network, loss layer and all, classifies PNG digits."""
    from cnnx.datasets import mnist
    from cnnx.train import cnn_train

    imdb = mnist.get_imdb(sample=True)
    train = np.flatnonzero(imdb["images"]["set"] == 1)[:300]
    net = models.mnist_lenet(rng=0)
    net["meta"]["classes"] = {"name": list(imdb["meta"]["classes"])}
    net["meta"]["normalization"] = {"imageSize": [28, 28, 1], "averageImage": imdb["images"]["data_mean"]}
    cnn_train(net, imdb, mnist.get_batch, exp_dir=tmp_path / "exp", num_epochs=1, batch_size=50, train=train,
              val=[], progress=False, plot_statistics=False)
    test = np.flatnonzero(imdb["images"]["set"] == 3)[:4]
    paths = []
    for n in test:  # the digits as a user has them: 0..255 grey levels
        pixels = imdb["images"]["data"][:, :, 0, n] + imdb["images"]["data_mean"][:, :, 0]
        path = tmp_path / f"digit{n}.png"
        Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    finished = run_classify(tmp_path / "exp" / "net-epoch-1.mat", *paths, "--top", "1")
    assert finished.returncode == 0, finished.stderr
    checkpoint = load_matconvnet(tmp_path / "exp" / "net-epoch-1.mat")
    images = np.stack([normalize_image(load_image(p, channels=1), checkpoint["meta"]) for p in paths], axis=3)
    scores = predict(checkpoint, images).reshape(10, -1)
    names = imdb["meta"]["classes"]
    lines = finished.stdout.splitlines()
    assert lines[0::2] == [f"{path}:" for path in paths]
    assert lines[1::2] == [f"  {scores[b, n]:.4f}  {names[b]} ({b + 1})" for n, b in enumerate(scores.argmax(axis=0))]


def test_classify_without_meta_normalization_says_so(tmp_path):
    net = imagenet_style_simplenn()
    del net["meta"]["normalization"]
    save_matconvnet(net, tmp_path / "model.mat")
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    finished = run_classify(tmp_path / "model.mat", tmp_path / "a.png")
    assert finished.returncode == 1
    assert finished.stderr == ("classify: normalize_image: meta must have normalization.imageSize "
                               "(MatConvNet's net.meta)\n")

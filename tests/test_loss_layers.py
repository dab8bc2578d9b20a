"""The loss layer kinds: SimpleNN's 'loss' and DagNN's Loss with every vl_nnloss type and option, both
graphs alike, the conversion, model files and the trainer's error reporting."""
import re

import numpy as np
import pytest

from cnnx import vl_nnloss
from cnnx.dagnn import Conv, DagNN, Loss
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn, vl_simplenn_tidy
from cnnx.train import cnn_train

BINARY = ("binaryerror", "binarylog", "logistic", "hinge", "l2")
# (loss, opts) of every type, with the options each one reads
LOSSES = [("softmaxlog", []), ("log", []), ("mhinge", []), ("mshinge", []), ("classerror", []),
          ("topkerror", ["topK", 2]), ("binaryerror", ["threshold", 0.1]), ("binarylog", []), ("logistic", []),
          ("hinge", []), ("l2", [])]


def problem(loss, rng):
    """A conv layer's input and filters, and labels for ``loss`` on its 3 x 3 x 4 x 2 output."""
    x = rng.standard_normal((5, 5, 3, 2))
    f = 0.3 * rng.standard_normal((3, 3, 3, 4))
    if loss in ("log", "binarylog"):
        f = np.abs(f) * 0.05  # scores in (0, 1): probabilities
        x = np.abs(x)
    if loss == "l2":
        c = rng.standard_normal((3, 3, 4, 2))
    elif loss in BINARY:
        c = rng.choice([-1.0, 0.0, 1.0], size=(3, 3, 4, 2))
    else:
        c = rng.integers(0, 5, size=(3, 3, 1, 2)).astype(np.float64)
    return x, f, c


def simple_net(f, c, loss, opts):
    return {"layers": [{"type": "conv", "name": "conv", "weights": [f, np.zeros(4)]},
                       {"type": "loss", "name": "loss", "class": c, "loss": loss, "opts": list(opts)}]}


@pytest.mark.parametrize("loss, opts", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_simplenn_and_dagnn_agree(loss, opts, weighted):
    rng = np.random.default_rng(len(loss))
    x, f, c = problem(loss, rng)
    if weighted:
        opts = opts + ["instanceWeights", rng.uniform(0.5, 2, size=(3, 3))]
    net = simple_net(f, c, loss, opts)
    res = vl_simplenn(net, x, 1.0)
    scores = res[1]["x"]
    assert res[2]["x"] == vl_nnloss(scores, c, *opts, loss=loss)
    np.testing.assert_array_equal(res[1]["dzdx"], vl_nnloss(scores, c, 1.0, *opts, loss=loss))

    dag = DagNN.from_simplenn(net, canonical_names=True)
    block = dag.layers[1].block
    assert isinstance(block, Loss) and block.loss == loss and list(block.opts[:2]) == opts[:2]
    assert dag.layers[1].inputs == ["prediction", "label"]
    dag.eval({"input": x, "label": c}, {"objective": 1.0})
    assert dag.get_var("objective").value == res[2]["x"]
    np.testing.assert_array_equal(dag.get_var("input").der, res[0]["dzdx"])
    np.testing.assert_array_equal(dag.get_param("convf").der, res[0]["dzdw"][0])


def test_simplenn_loss_defaults_and_checks():
    tidy = vl_simplenn_tidy({"layers": [{"type": "loss"}]})
    assert tidy["layers"][0]["loss"] == "softmaxlog" and tidy["layers"][0]["opts"] == []
    message = ("vl_simplenn_tidy: layers[0]: Loss must be one of 'softmaxlog', 'log', 'mhinge', 'mshinge', "
               "'classerror', 'topkerror', 'binaryerror', 'binarylog', 'logistic', 'hinge', 'l2', got 'squared'")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        vl_simplenn_tidy({"layers": [{"type": "loss", "loss": "squared"}]})
    message = "vl_simplenn: layers[0] ('layer1'): loss needs the labels in layer['class']"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        vl_simplenn({"layers": [{"type": "loss"}]}, np.zeros((1, 1, 3, 2)))


def test_dagnn_loss_options_reach_vl_nnloss():
    x = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]).T.reshape(1, 1, 3, 2, order="F")
    assert Loss(loss="topkerror", opts=["topK", 2]).forward([x, [2, 2]], [])[0] == 0
    assert Loss(loss="topkerror", opts=("TopK", 1)).forward([x, [2, 2]], [])[0] == 2
    block = Loss(loss="classerror", opts=["instanceWeights", [1.0, 4.0]])
    assert block.forward([x, [1, 1]], [])[0] == 4 and block.average == 2.0
    signs = np.sign(x - 2.5)
    assert Loss(loss="binaryerror", opts=["threshold", 2.5]).forward([x, signs], [])[0] == 0
    assert Loss(loss="binaryerror").forward([x, signs], [])[0] == 4  # threshold 0: every score is positive


@pytest.mark.parametrize("loss, opts", LOSSES)
def test_model_files_round_trip(tmp_path, loss, opts):
    rng = np.random.default_rng(1)
    x, f, c = problem(loss, rng)
    net = vl_simplenn_tidy(simple_net(f, None, loss, opts))
    del net["layers"][1]["class"]
    save_matconvnet(net, tmp_path / "simple.mat")
    loaded = load_matconvnet(tmp_path / "simple.mat")
    layer = loaded["layers"][1]
    assert layer["type"] == "loss" and layer["loss"] == loss and list(layer["opts"]) == opts
    dag = DagNN.from_simplenn(net)
    save_matconvnet(dag, tmp_path / "dag.mat")
    block = load_matconvnet(tmp_path / "dag.mat").layers[1].block
    assert block.loss == loss and list(block.opts) == opts
    for network in (DagNN.loadobj(dag.saveobj()), load_matconvnet(tmp_path / "dag.mat")):
        network.eval({"x0": x, "label": c})
        dag.eval({"x0": x, "label": c})
        assert network.get_var("x2").value == dag.get_var("x2").value


def test_cnn_train_reports_top1_and_top5_errors_of_loss_layers():
    """MatConvNet's DagNN examples: objective (softmaxlog), top1err (classerror), top5err (topkerror)."""
    rng = np.random.default_rng(2)
    images = rng.standard_normal((4, 4, 2, 40)).astype(np.float32)
    labels = rng.integers(1, 8, size=40).astype(np.float32)
    imdb = {"x": images, "y": labels, "images": {"set": np.ones(40)}}
    net = DagNN()
    net.add_layer("conv", Conv(size=(4, 4, 2, 7)), "input", "prediction", ["f", "b"])
    net.add_layer("objective", Loss(loss="softmaxlog"), ["prediction", "label"], "objective")
    net.add_layer("top1err", Loss(loss="classerror"), ["prediction", "label"], "top1err")
    net.add_layer("top5err", Loss(loss="topkerror", opts=["topK", 5]), ["prediction", "label"], "top5err")
    net.init_params()
    _, stats = cnn_train(net, imdb, lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]},
                         progress=False, plot_statistics=False, exp_dir=None, batch_size=10, num_epochs=1,
                         learning_rate=0.0)
    row = stats["train"][0]
    # the errors of the (unchanged: learning rate 0) initial network, over all 40 images
    net.conserve_memory = False
    net.eval({"input": images, "label": labels})
    scores = net.get_var("prediction").value
    assert row["top1err"] == pytest.approx(float(vl_nnloss(scores, labels, loss="classerror")) / 40)
    assert row["top5err"] == pytest.approx(float(vl_nnloss(scores, labels, loss="topkerror")) / 40)
    assert 0 < row["top5err"] < row["top1err"] < 1


def test_cnn_train_simplenn_with_a_loss_layer_and_its_errors():
    rng = np.random.default_rng(3)
    images = rng.standard_normal((4, 4, 2, 20)).astype(np.float32)
    labels = rng.integers(1, 8, size=20).astype(np.float32)
    imdb = {"x": images, "y": labels, "images": {"set": np.ones(20)}}
    f = (0.1 * rng.standard_normal((4, 4, 2, 7))).astype(np.float32)
    net = {"layers": [{"type": "conv", "weights": [f, np.zeros(7, np.float32)]},
                      {"type": "loss", "loss": "mshinge"}]}
    _, stats = cnn_train(net, imdb, lambda db, b: (db["x"][..., b], db["y"][b]), progress=False,
                         plot_statistics=False, exp_dir=None, batch_size=10, num_epochs=1, learning_rate=0.0)
    scores = vl_simplenn({"layers": net["layers"][:1]}, images)[1]["x"]
    row = stats["train"][0]
    assert row["objective"] == pytest.approx(float(vl_nnloss(scores, labels, loss="mshinge")) / 20, rel=1e-5)
    assert row["top1err"] == pytest.approx(float(vl_nnloss(scores, labels, loss="classerror")) / 20)

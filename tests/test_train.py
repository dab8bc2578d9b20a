"""cnn_train: MatConvNet's solver check, the update rule, statistics, checkpoints and resuming."""
import json
import os
import sys
import weakref

import numpy as np
import pytest

from cnnx import solvers
from cnnx import train as train_module
from cnnx.simplenn import vl_simplenn
from cnnx.train import cnn_train

SOLVERS = [None, "adam", "adagrad", "adadelta", "rmsprop"]


# --------------------------------------------------------------------------------------------------
# Data and networks
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussians():
    """MatConvNet's nnsolvers data: two classes of 100 Gaussian 15x10x5 samples, different means."""
    rng = np.random.default_rng(0)
    size = (15, 10, 5)
    x1 = 2 * rng.standard_normal(size + (100,), dtype=np.float32)  # mean at the origin
    x2 = 2 * rng.standard_normal(size + (1,), dtype=np.float32) + 2 * rng.standard_normal(
        size + (100,), dtype=np.float32)  # a random mean
    imdb = {
        "x": np.concatenate([x1, x2], axis=3),
        "y": np.concatenate([np.ones(100, np.float32), 2 * np.ones(100, np.float32)]),
        "images": {"set": np.ones(200)},
    }
    init_w = 1e-3 * rng.standard_normal(size + (2,), dtype=np.float32)
    init_b = np.zeros((2, 1), np.float32)
    return imdb, init_w, init_b


def logistic_net(init_w, init_b):
    return {"layers": [{"type": "conv", "weights": [init_w.copy(), init_b.copy()]}, {"type": "softmaxloss"}]}


def dropout_net(rng, classes=2, dtype=np.float32):
    """conv - relu - dropout - conv - softmaxloss on 15x10x5 inputs: exercises every random source."""
    return {"layers": [
        {"type": "conv", "weights": [0.05 * rng.standard_normal((3, 3, 5, 4), dtype=dtype), np.zeros(4, dtype)],
         "pad": 1},
        {"type": "relu"},
        {"type": "dropout", "rate": 0.3},
        {"type": "conv", "weights": [0.05 * rng.standard_normal((15, 10, 4, classes), dtype=dtype),
                                     np.zeros(classes, dtype)]},
        {"type": "softmaxloss"},
    ]}


def simple_batch(imdb, batch):
    return imdb["x"][..., batch], imdb["y"][batch]


def dag_batch(imdb, batch):
    return {"input": imdb["x"][..., batch], "label": imdb["y"][batch]}


def to_dag(net, top1err=True):
    from cnnx import dagnn

    dag = dagnn.DagNN.from_simplenn(net, canonical_names=True)
    if top1err:
        dag.add_layer("top1err", dagnn.Loss(loss="classerror"), ["prediction", "label"], "top1err")
    return dag


def weights_of(net):
    """Every parameter of a SimpleNN dict or a DagNN, flattened, in order."""
    if isinstance(net, dict):
        return [np.ravel(w) for layer in net["layers"] for w in layer.get("weights") or []]
    return [np.ravel(p.value) for p in net.params]


QUIET = {"progress": False, "plot_statistics": False}


# --------------------------------------------------------------------------------------------------
# MatConvNet's solver test (xtest/suite/nnsolvers.m)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("network_type", ["simplenn", "dagnn"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_one_epoch_of_every_solver_learns_two_gaussians(gaussians, tmp_path, network_type, solver):
    imdb, init_w, init_b = gaussians
    net = logistic_net(init_w, init_b)
    get_batch = simple_batch
    if network_type == "dagnn":
        net, get_batch = to_dag(net), dag_batch
    _, stats = cnn_train(net, imdb, get_batch, train=np.arange(200), val=[0], solver=solver,
                         batch_size=10, num_epochs=1, continue_=False, exp_dir=tmp_path, **QUIET)
    assert stats["train"][0]["num"] == 200
    assert stats["train"][0]["top1err"] < 0.35
    assert stats["train"][0]["objective"] < 0.5


def test_nesterov_learns_two_gaussians(gaussians):
    imdb, init_w, init_b = gaussians
    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, nesterov=True, batch_size=10,
                         num_epochs=1, exp_dir=None, **QUIET)
    assert stats["train"][0]["top1err"] < 0.35 and stats["train"][0]["objective"] < 0.5


# --------------------------------------------------------------------------------------------------
# The update rule, against a direct implementation of MatConvNet beta25's formulas
# --------------------------------------------------------------------------------------------------


class Recorder:
    """A get_batch that remembers the batches it served."""

    def __init__(self, inner=simple_batch):
        self.inner = inner
        self.batches = []

    def __call__(self, imdb, batch):
        self.batches.append(np.array(batch))
        return self.inner(imdb, batch)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_update_follows_matconvnet(gaussians, nesterov):
    imdb, init_w, init_b = gaussians
    rng = np.random.default_rng(3)
    init_w = 0.01 * rng.standard_normal(init_w.shape, dtype=np.float32)
    init_b = 0.1 * rng.standard_normal(init_b.shape, dtype=np.float32)
    net = logistic_net(init_w, init_b)
    net["layers"][0]["learningRate"] = [0.5, 2.0]
    net["layers"][0]["weightDecay"] = [1.0, 0.0]
    lr, wd, momentum = [0.02, 0.01], 0.05, 0.8
    record = Recorder()
    subset = np.arange(0, 200, 9)  # 23 images: batches of 7, 7, 7 and 2
    trained, _ = cnn_train(net, imdb, record, train=subset, val=[], batch_size=7, num_epochs=2,
                           learning_rate=lr, weight_decay=wd, momentum=momentum, nesterov=nesterov,
                           exp_dir=None, **QUIET)
    assert [len(b) for b in record.batches] == [7, 7, 7, 2] * 2
    assert sorted(np.concatenate(record.batches[:4]).tolist()) == subset.tolist()

    weights = [init_w.copy(), init_b.copy()]
    velocity = [np.zeros_like(w) for w in weights]
    layers = [{"type": "conv", "weights": weights}, {"type": "softmaxloss"}]
    for index, batch in enumerate(record.batches):
        rate = lr[index // 4]
        layers[1]["class"] = imdb["y"][batch]
        res = vl_simplenn({"layers": layers}, imdb["x"][..., batch], np.float32(1))
        for j, (rate_mult, decay_mult) in enumerate([(0.5, 1.0), (2.0, 0.0)]):
            g = res[0]["dzdw"][j] / np.float32(len(batch)) + np.float32(wd * decay_mult) * weights[j]
            velocity[j] = np.float32(momentum) * velocity[j] - g
            step = np.float32(momentum) * velocity[j] - g if nesterov else velocity[j]
            weights[j] = weights[j] + np.float32(rate * rate_mult) * step
    for got, want in zip(weights_of(trained), weights):
        np.testing.assert_allclose(got, np.ravel(want), rtol=1e-5, atol=1e-7)
    assert not np.allclose(weights[0], init_w)


def test_zero_rate_and_decay_leave_a_parameter_alone(gaussians):
    imdb, init_w, init_b = gaussians
    net = logistic_net(init_w, init_b)
    net["layers"][0]["learningRate"] = [0.0, 1.0]
    net["layers"][0]["weightDecay"] = [0.0, 1.0]
    trained, _ = cnn_train(net, imdb, simple_batch, batch_size=50, num_epochs=1, exp_dir=None, **QUIET)
    np.testing.assert_array_equal(trained["layers"][0]["weights"][0], init_w)
    assert not np.array_equal(trained["layers"][0]["weights"][1], init_b)


def test_sub_batches_give_the_same_update(gaussians):
    imdb, init_w, init_b = gaussians
    runs = [cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, batch_size=20, num_sub_batches=s,
                      num_epochs=1, learning_rate=0.01, exp_dir=None, **QUIET) for s in (1, 3)]
    for a, b in zip(weights_of(runs[0][0]), weights_of(runs[1][0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert runs[0][1]["train"][0]["objective"] == pytest.approx(runs[1][1]["train"][0]["objective"], rel=1e-6)


@pytest.mark.parametrize("sub_batches", [1, 2])
def test_the_last_batchs_results_are_freed_before_the_next(gaussians, monkeypatch, sub_batches):
    # Outside a batch's sub-batches (which accumulate), the res of the last one is spent once its
    # update is done: its derivatives must not stay alive through the next forward and backward.
    imdb, init_w, init_b = gaussians
    conv = train_module.LAYER_TYPES["conv"]
    backward, forward = conv.backward, conv.forward
    derivatives, alive = [], []

    def spy_backward(layer, res_i, res_ip1, ctx):
        ders = backward(layer, res_i, res_ip1, ctx)
        derivatives.append(weakref.ref(ders[0]))
        return ders

    def spy_forward(layer, res_i, res_ip1, ctx):
        alive.append(sum(ref() is not None for ref in derivatives))
        return forward(layer, res_i, res_ip1, ctx)

    monkeypatch.setattr(conv, "backward", spy_backward)
    monkeypatch.setattr(conv, "forward", spy_forward)
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, batch_size=50, num_sub_batches=sub_batches,
              num_epochs=1, learning_rate=0.01, exp_dir=None, val=[], **QUIET)
    # every forward starts with no derivative of an earlier batch alive, but the sub-batch's own
    assert alive == ([0, 1] * 4 if sub_batches == 2 else [0] * 4)


@pytest.mark.parametrize("name", ["adam", "adagrad", "adadelta", "rmsprop"])
def test_solvers_match_pytorch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    w = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(6)]
    lr = 0.01
    solver = solvers.SOLVERS[name]()
    state = solver.init_state(w)
    ours = w.copy()
    for g in grads:
        ours, state = solver.step(ours, state, g, lr)

    param = torch.tensor(w.copy(), requires_grad=True)
    optimizer = {
        "adam": lambda: torch.optim.Adam([param], lr=lr, betas=(0.9, 0.999), eps=1e-8),
        "adagrad": lambda: torch.optim.Adagrad([param], lr=lr, eps=1e-10),
        "adadelta": lambda: torch.optim.Adadelta([param], lr=1.0, rho=0.9, eps=1e-6),
        "rmsprop": lambda: torch.optim.RMSprop([param], lr=lr, alpha=0.99, eps=1e-8),
    }[name]()
    for g in grads:
        param.grad = torch.tensor(g)
        optimizer.step()
    np.testing.assert_allclose(ours, param.detach().numpy(), rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def test_statistics_are_per_image_sums(one_thread):
    rng = np.random.default_rng(2)
    classes, count = 7, 23
    x = rng.standard_normal((3, 2, 4, count), dtype=np.float32)
    labels = rng.integers(1, classes + 1, count).astype(np.float32)
    labels[5] = 0  # an ignored image counts in the denominator but never as an error
    imdb = {"x": x, "y": labels, "images": {"set": np.r_[np.ones(15), 2 * np.ones(8)]}}
    f = rng.standard_normal((3, 2, 4, classes), dtype=np.float32)
    b = rng.standard_normal(classes, dtype=np.float32)
    net = {"layers": [{"type": "conv", "weights": [f, b]}, {"type": "softmaxloss"}]}
    _, stats = cnn_train(net, imdb, simple_batch, batch_size=4, learning_rate=0.0, weight_decay=0.0,
                         num_epochs=1, exp_dir=None, **QUIET)

    scores = np.einsum("hwcn,hwck->kn", x.astype(np.float64), f.astype(np.float64)) + b[:, None]
    log_norm = np.log(np.exp(scores - scores.max(0)).sum(0)) + scores.max(0)
    for phase, images in (("train", np.arange(15)), ("val", np.arange(15, 23))):
        y = labels[images].astype(int)
        kept = y > 0
        loss = (log_norm[images] - scores[y - 1, images])[kept]
        ranks = np.argsort(-scores[:, images], axis=0, kind="stable") + 1
        top1 = np.sum(kept & (ranks[0] != y))
        top5 = np.sum(kept & ~np.any(ranks[:5] == y, axis=0))
        got = stats[phase][0]
        assert got["num"] == images.size
        assert got["objective"] == pytest.approx(loss.sum() / images.size, rel=1e-5)
        assert got["top1err"] == pytest.approx(top1 / images.size)
        assert got["top5err"] == pytest.approx(top5 / images.size)
        assert got["time"] > 0


@pytest.mark.parametrize("error_function, keys", [
    ("multiclass", {"objective", "top1err", "top5err"}),
    ("none", {"objective"}),
    ("binary", {"objective", "binerr"}),
])
def test_error_functions_name_their_statistics(gaussians, error_function, keys):
    imdb, init_w, init_b = gaussians
    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, error_function=error_function,
                         batch_size=50, num_epochs=1, exp_dir=None, val=[1, 2], **QUIET)
    for phase in ("train", "val"):
        assert set(stats[phase][0]) == keys | {"num", "time"}


def test_binary_error_counts_sign_disagreements():
    x = np.ones((1, 1, 1, 4), np.float32)
    imdb = {"x": x, "y": np.array([1, -1, 1, -1], np.float32)}
    # predictions = x * w = [2, 2, 2, 2]: the two labels of -1 are wrong
    net = {"layers": [{"type": "conv", "weights": [np.full((1, 1, 1, 1), 2, np.float32), np.zeros(1, np.float32)]},
                      {"type": "custom", "forward": lambda layer, a, b: {**b, "x": np.float32(0)},
                       "backward": lambda layer, a, b: a}]}
    _, stats = cnn_train(net, imdb, simple_batch, train=[], val=np.arange(4), error_function="binary",
                         batch_size=4, num_epochs=1, exp_dir=None, **QUIET)
    assert stats["val"][0]["binerr"] == 0.5


def test_callable_error_function_and_labels(gaussians):
    imdb, init_w, init_b = gaussians
    seen = []

    def count_images(opts, labels, res):
        seen.append(opts["batch_size"])
        return [labels.size, 2 * labels.size]

    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, error_function=count_images,
                         error_labels=["one", "two"], batch_size=50, num_epochs=1, exp_dir=None, **QUIET)
    assert stats["train"][0]["one"] == 1.0 and stats["train"][0]["two"] == 2.0
    assert seen == [50] * 4


def test_epoch_size_schedule_and_post_epoch_fn(gaussians):
    imdb, init_w, init_b = gaussians
    calls = []

    def post(net, opts, state):
        calls.append((state["epoch"], state["learning_rate"]))
        return 0.0 if state["epoch"] == 3 else None

    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch,
                         learning_rate=[0.1, 0.01, 0.001, 0.0001, 0.1], epoch_size=30, batch_size=10,
                         exp_dir=None, post_epoch_fn=post, **QUIET)
    assert calls == [(1, 0.1), (2, 0.01), (3, 0.001)]  # stopped by the 0 returned after epoch 3
    assert [s["num"] for s in stats["train"]] == [30, 30, 30]

    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, learning_rate=[0.1, 0.01],
                         epoch_size=10, batch_size=10, exp_dir=None, **QUIET)
    assert len(stats["train"]) == 2  # num_epochs defaults to the schedule's length


def test_callers_network_is_not_changed(gaussians):
    imdb, init_w, init_b = gaussians
    net = logistic_net(init_w, init_b)
    trained, _ = cnn_train(net, imdb, simple_batch, batch_size=50, num_epochs=1, exp_dir=None, **QUIET)
    np.testing.assert_array_equal(net["layers"][0]["weights"][0], init_w)
    assert set(net["layers"][0]) == {"type", "weights"}
    assert "class" not in trained["layers"][-1]
    assert not np.array_equal(trained["layers"][0]["weights"][0], init_w)


# --------------------------------------------------------------------------------------------------
# Reproducibility, checkpoints and resuming
# --------------------------------------------------------------------------------------------------


def make_net(network_type, seed=1):
    net = dropout_net(np.random.default_rng(seed))
    return (to_dag(net), dag_batch) if network_type == "dagnn" else (net, simple_batch)


@pytest.mark.parametrize("network_type, solver", [("simplenn", None), ("simplenn", "adam"),
                                                  ("simplenn", "adadelta"), ("dagnn", None),
                                                  ("dagnn", "rmsprop")])
def test_resumed_run_ends_with_the_uninterrupted_weights(gaussians, tmp_path, one_thread, network_type, solver):
    imdb, _, _ = gaussians
    opts = dict(batch_size=20, learning_rate=[0.05, 0.02, 0.01], solver=solver, epoch_size=120,
                val=np.arange(0, 200, 25), **QUIET)
    net, get_batch = make_net(network_type)
    straight, straight_stats = cnn_train(net, imdb, get_batch, exp_dir=tmp_path / "a", **opts)

    net, get_batch = make_net(network_type)
    cnn_train(net, imdb, get_batch, exp_dir=tmp_path / "b", num_epochs=2, **opts)
    record = Recorder(get_batch)
    net, _ = make_net(network_type)
    resumed, resumed_stats = cnn_train(net, imdb, record, exp_dir=tmp_path / "b", **opts)

    assert len(record.batches) == 6 + 1  # only epoch 3 ran: 6 training batches, 1 validation batch
    for a, b in zip(weights_of(straight), weights_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed_stats["train"][2]["objective"] == straight_stats["train"][2]["objective"]
    assert [s["objective"] for s in resumed_stats["train"][:2]] == pytest.approx(
        [s["objective"] for s in straight_stats["train"][:2]], rel=1e-12)

    # the seeds matter: another random_seed gives other weights
    net, get_batch = make_net(network_type)
    other, _ = cnn_train(net, imdb, get_batch, exp_dir=None, random_seed=7, **opts)
    assert not all(np.array_equal(a, b) for a, b in zip(weights_of(straight), weights_of(other)))


def test_checkpoints_stats_json_and_no_temp_files(gaussians, tmp_path):
    from cnnx.io import load_matconvnet

    imdb, init_w, init_b = gaussians
    net, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, batch_size=50, num_epochs=2,
                           val=np.arange(0, 200, 10), exp_dir=tmp_path, progress=False, plot_statistics=False)
    names = sorted(os.listdir(tmp_path))
    assert names == ["net-epoch-1.mat", "net-epoch-2.mat", "stats.json"]

    saved, extras = load_matconvnet(tmp_path / "net-epoch-2.mat", with_extra=True)
    for a, b in zip(weights_of(saved), weights_of(net), strict=True):
        np.testing.assert_array_equal(a, b)
    assert {"state", "stats"} <= set(extras)
    assert train_module._stats_from_saved(extras["stats"], "x") == stats

    with open(tmp_path / "stats.json") as f:
        records = json.load(f)
    for phase in ("train", "val"):
        assert [r["epoch"] for r in records[phase]] == [1, 2]
        for record, entry in zip(records[phase], stats[phase]):
            assert set(record) == {"epoch", "objective", "top1err", "top5err", "num", "time"}
            for key, value in entry.items():
                assert record[key] == pytest.approx(value)
    assert records["val"][0]["num"] == 20

    # a finished run resumes to its end: nothing is evaluated, the saved net and stats come back
    counter = Counter()
    again, again_stats = cnn_train(logistic_net(init_w, init_b), imdb, counter, batch_size=50, num_epochs=2,
                                   exp_dir=tmp_path, **QUIET)
    assert counter.calls == 0 and again_stats == stats
    for a, b in zip(weights_of(again), weights_of(net), strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_solver_state_a_resumed_run_restarts_the_momentum(gaussians, tmp_path, one_thread):
    from cnnx.io import load_matconvnet

    imdb, init_w, init_b = gaussians
    opts = dict(batch_size=20, learning_rate=0.01, **QUIET)
    straight, _ = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=2, exp_dir=None, **opts)
    for save_solver_state, same in ((True, True), (False, False)):
        folder = tmp_path / str(save_solver_state)
        cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=1, exp_dir=folder,
                  save_solver_state=save_solver_state, **opts)
        _, extras = load_matconvnet(folder / "net-epoch-1.mat", with_extra=True)
        assert (extras["state"]["solverState"] is None) == (not save_solver_state)
        resumed, _ = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=2, exp_dir=folder,
                               save_solver_state=save_solver_state, **opts)
        equal = all(np.array_equal(a, b) for a, b in zip(weights_of(straight), weights_of(resumed)))
        assert equal == same


def test_stray_temporary_checkpoint_is_ignored_and_reported(gaussians, tmp_path, capsys, one_thread):
    imdb, init_w, init_b = gaussians
    opts = dict(batch_size=50, exp_dir=tmp_path, **QUIET)
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=1, **opts)
    stray = tmp_path / ".net-epoch-2.mat.k2j4.tmp"
    stray.write_bytes(b"MATLAB 5.0 MAT-file, half written")
    capsys.readouterr()
    resumed, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=2, **opts)
    assert str(stray) in capsys.readouterr().out
    assert len(stats["train"]) == 2
    straight, _ = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=2,
                            **{**opts, "exp_dir": tmp_path / "straight"})
    for a, b in zip(weights_of(straight), weights_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_crash_while_saving_leaves_no_checkpoint(gaussians, tmp_path, monkeypatch):
    import scipy.io

    imdb, init_w, init_b = gaussians

    def crash(stream, *args, **kwargs):
        stream.write(b"MATLAB 5.0 MAT-file, half")
        raise KeyboardInterrupt

    monkeypatch.setattr(scipy.io, "savemat", crash)
    with pytest.raises(KeyboardInterrupt):
        cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, batch_size=50, num_epochs=1,
                  exp_dir=tmp_path, **QUIET)
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_without_stats_is_an_error(gaussians, tmp_path):
    from cnnx.io import save_matconvnet

    imdb, init_w, init_b = gaussians
    save_matconvnet(logistic_net(init_w, init_b), os.path.join(tmp_path, "net-epoch-1.mat"))
    with pytest.raises(ValueError, match="partially saved"):
        cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=2, exp_dir=tmp_path, **QUIET)
    # without continue_ the old checkpoint is not read
    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, num_epochs=1, continue_=False,
                         batch_size=50, exp_dir=tmp_path, **QUIET)
    assert len(stats["train"]) == 1


def test_evaluation_only_saves_no_checkpoint(gaussians, tmp_path):
    imdb, init_w, init_b = gaussians
    net, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, train=[], val=np.arange(200),
                           batch_size=100, num_epochs=1, exp_dir=tmp_path, **QUIET)
    assert stats["train"][0] == {"num": 0, "time": 0.0}
    assert stats["val"][0]["num"] == 200
    assert not any(name.endswith(".mat") for name in os.listdir(tmp_path))
    np.testing.assert_array_equal(net["layers"][0]["weights"][0], init_w)


# --------------------------------------------------------------------------------------------------
# Progress and the plot
# --------------------------------------------------------------------------------------------------


def test_plot_is_written_when_matplotlib_imports(gaussians, tmp_path):
    pytest.importorskip("matplotlib")
    imdb, init_w, init_b = gaussians
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, batch_size=100, num_epochs=2, exp_dir=tmp_path,
              val=[0, 1], progress=False)
    with open(tmp_path / "net-train.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_without_matplotlib_there_is_one_note_and_no_plot(gaussians, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    imdb, init_w, init_b = gaussians
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, batch_size=100, num_epochs=2, exp_dir=tmp_path,
              progress=False)
    assert not (tmp_path / "net-train.png").exists()
    assert capsys.readouterr().out.count("matplotlib is not installed") == 1


def test_progress_lines_and_bar(gaussians, capsys, monkeypatch):
    imdb, init_w, init_b = gaussians
    opts = dict(batch_size=10, num_epochs=1, exp_dir=None, val=np.arange(20), plot_statistics=False)
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, **opts)
    lines = capsys.readouterr().out.splitlines()
    train_lines = [line for line in lines if line.startswith("train: epoch 01:")]
    assert 2 <= len(train_lines) <= 11 and train_lines[-1].startswith("train: epoch 01:  20/ 20:")
    assert "img/s" in train_lines[-1] and "objective:" in train_lines[-1] and "top1err:" in train_lines[-1]
    assert any(line.startswith("val: epoch 01:   2/  2:") for line in lines)

    monkeypatch.setattr(train_module, "_is_terminal", lambda stream: True)
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, **opts)
    out = capsys.readouterr().out
    assert "train epoch 01" in out and "img/s" in out and "20/20" in out

    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, progress=False, **opts)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------------------------------
# Errors: before the first batch
# --------------------------------------------------------------------------------------------------


class Counter:
    def __init__(self, inner=simple_batch):
        self.inner, self.calls = inner, 0

    def __call__(self, imdb, batch):
        self.calls += 1
        return self.inner(imdb, batch)


@pytest.mark.parametrize("options, error, words", [
    ({"learning_rate": -0.1}, ValueError, "learning_rate"),
    ({"learning_rate": [0.1, float("nan")]}, ValueError, "learning_rate"),
    ({"learning_rate": []}, ValueError, "learning_rate"),
    ({"learning_rate": "fast"}, TypeError, "learning_rate"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, ValueError, "batch_size must hold whole numbers"),
    ({"num_sub_batches": 0}, ValueError, "num_sub_batches"),
    ({"num_epochs": -1}, ValueError, "num_epochs"),
    ({"epoch_size": 0}, ValueError, "epoch_size"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"random_seed": -1}, ValueError, "random_seed"),
    ({"learning_rat": 0.1}, TypeError, "learning_rat"),
    ({"solver": "sgdx"}, ValueError, "solver"),
    ({"solver": "adam", "solver_opts": {"beta3": 0.5}}, ValueError, "beta3"),
    ({"solver_opts": {"rho": 0.5}}, ValueError, "solver_opts"),
    ({"error_function": "top1"}, ValueError, "error_function"),
    ({"error_labels": "top1err"}, TypeError, "error_labels"),
    ({"continue_": "yes"}, TypeError, "continue_"),
    ({"continue_": True, "resume": False}, TypeError, "continue_"),
    ({"train": [0, 200]}, ValueError, "train"),
    ({"val": [-1]}, ValueError, "val"),
    ({"train": [True, False]}, TypeError, "train"),
    ({"post_epoch_fn": 3}, TypeError, "post_epoch_fn"),
    ({"der_outputs": {"objective": 1}}, TypeError, "der_outputs"),
    ({"exp_dir": 3}, TypeError, "exp_dir"),
])
def test_bad_options_fail_before_the_first_batch(gaussians, options, error, words):
    imdb, init_w, init_b = gaussians
    counter = Counter()
    with pytest.raises(error, match=words):
        cnn_train(logistic_net(init_w, init_b), imdb, counter, exp_dir=None, **{**QUIET, **options})
    assert counter.calls == 0


def test_matconvnet_name_value_pairs(gaussians):
    imdb, init_w, init_b = gaussians
    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, "BatchSize", 50, "numEpochs", 1,
                         "continue", False, "expDir", None, "nesterovUpdate", True, **QUIET)
    assert stats["train"][0]["num"] == 200
    with pytest.raises(ValueError, match="batch_size"):
        cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, "batchSize", -3, exp_dir=None)


def test_missing_sets_and_bad_networks(gaussians):
    imdb, init_w, init_b = gaussians
    with pytest.raises(ValueError, match="train"):
        cnn_train(logistic_net(init_w, init_b), {"x": imdb["x"]}, simple_batch, exp_dir=None)
    with pytest.raises(TypeError, match="net"):
        cnn_train([1, 2], imdb, simple_batch, exp_dir=None)
    with pytest.raises(TypeError, match="get_batch"):
        cnn_train(logistic_net(init_w, init_b), imdb, "batch", exp_dir=None)


def corrupt(change):
    def get_batch(imdb, batch):
        images, labels = simple_batch(imdb, batch)
        return change(images, labels)
    return get_batch


@pytest.mark.parametrize("get_batch, error, words", [
    (corrupt(lambda x, y: x), TypeError, "(images, labels)"),
    (corrupt(lambda x, y: (x.astype(np.float64), y)), TypeError, "float64 images"),
    (corrupt(lambda x, y: (x.astype(np.int32), y)), TypeError, "float32 or float64"),
    (corrupt(lambda x, y: (x.tolist(), y)), TypeError, "images"),
    (corrupt(lambda x, y: (x[..., :-1], y)), ValueError, "images"),
    (corrupt(lambda x, y: (x[..., None], y)), ValueError, "H x W x C x N"),
    (corrupt(lambda x, y: (x, y[:-1])), ValueError, "labels"),
    (corrupt(lambda x, y: (x, y + 0.5)), ValueError, "labels"),
    (corrupt(lambda x, y: (x, y + 2.0**63)), ValueError, "labels"),  # (labels of 0 or less are ignored)
    (corrupt(lambda x, y: (x, y * np.nan)), ValueError, "labels"),
    (corrupt(lambda x, y: (x, y.astype(str))), TypeError, "labels"),
])
def test_bad_batches_fail_at_the_first_batch(gaussians, get_batch, error, words):
    imdb, init_w, init_b = gaussians
    with pytest.raises(error, match=f"get_batch.*{words}" if words[0] != "(" else "get_batch"):
        cnn_train(logistic_net(init_w, init_b), imdb, get_batch, exp_dir=None, **QUIET)


@pytest.mark.parametrize("change, error, words", [
    (lambda d: {**d, "inputs": d["input"]}, ValueError, "inputs"),
    (lambda d: {"input": d["input"].astype(np.float64), "label": d["label"]}, TypeError, "float64"),
    (lambda d: {"input": d["input"][..., :2], "label": d["label"]}, ValueError, "images"),
    (lambda d: {"input": d["input"], "label": d["label"][:1]}, ValueError, "labels"),
    (lambda d: {"input": d["input"]}, ValueError, "label"),
    (lambda d: (d["input"], d["label"]), TypeError, "dict"),
    (lambda d: ["input", d["input"], "label"], TypeError, "dict"),
])
def test_bad_dagnn_batches(gaussians, change, error, words):
    imdb, init_w, init_b = gaussians
    dag = to_dag(logistic_net(init_w, init_b))
    with pytest.raises(error, match=words):
        cnn_train(dag, imdb, lambda db, b: change(dag_batch(db, b)), exp_dir=None, **QUIET)


def test_dagnn_flat_list_batches_and_loss_statistics(gaussians):
    imdb, init_w, init_b = gaussians
    flat = lambda db, b: ["input", db["x"][..., b], "label", db["y"][b]]  # noqa: E731
    net, stats = cnn_train(to_dag(logistic_net(init_w, init_b)), imdb, flat, batch_size=20, num_epochs=1,
                           exp_dir=None, val=[0, 150], **QUIET)
    assert set(stats["train"][0]) == {"objective", "top1err", "num", "time"}
    simple, simple_stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, batch_size=20,
                                     num_epochs=1, exp_dir=None, val=[0, 150], **QUIET)
    for key in ("objective", "top1err"):
        assert stats["train"][0][key] == pytest.approx(simple_stats["train"][0][key], rel=1e-5)
    for a, b in zip(weights_of(net), weights_of(simple)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("options, error, words", [
    ({"error_function": "binary"}, TypeError, "error_function"),
    ({"back_prop_depth": 1}, TypeError, "back_prop_depth"),
    ({"der_outputs": {"loss": 1}}, ValueError, "der_outputs"),
    ({"der_outputs": ["objective"]}, ValueError, "der_outputs"),
])
def test_bad_dagnn_options(gaussians, options, error, words):
    imdb, init_w, init_b = gaussians
    counter = Counter(dag_batch)
    with pytest.raises(error, match=words):
        cnn_train(to_dag(logistic_net(init_w, init_b)), imdb, counter, exp_dir=None, **{**QUIET, **options})
    assert counter.calls == 0


def test_dagnn_average_parameters_follow_their_own_rate(gaussians):
    imdb, init_w, init_b = gaussians
    dag = to_dag(logistic_net(init_w, init_b), top1err=False)
    dag.params[1].train_method = "average"
    dag.params[1].learning_rate = 0.1
    trained, _ = cnn_train(dag, imdb, dag_batch, batch_size=200, num_epochs=1, learning_rate=0.0,
                           weight_decay=0.0, exp_dir=None, **QUIET)
    layers = [{"type": "conv", "weights": [init_w, init_b]}, {"type": "softmaxloss", "class": imdb["y"]}]
    gradient = vl_simplenn({"layers": layers}, imdb["x"], np.float32(1))[0]["dzdw"][1]
    np.testing.assert_allclose(np.ravel(trained.params[1].value), np.ravel(0.9 * init_b + 0.1 / 200 * gradient),
                               rtol=1e-5, atol=1e-8)
    assert np.abs(gradient).min() > 0.1  # the expected change is not negligible
    np.testing.assert_array_equal(trained.params[0].value, init_w)  # rate and decay 0: untouched


def test_labels_may_be_lists(gaussians):
    imdb, init_w, init_b = gaussians
    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, lambda db, b: (db["x"][..., b], db["y"][b].tolist()),
                         batch_size=50, num_epochs=1, exp_dir=None, **QUIET)
    assert stats["train"][0]["num"] == 200


KEEP_FREED_MEMORY_CHILD = """
import resource, sys
import numpy as np
import cnnx
from cnnx._memory import keep_freed_memory

def faults_of_big_arrays():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        block = np.empty(64 << 20, np.uint8)
        block.fill(1)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

faults_of_big_arrays()  # imports and first-touch costs out of the way
before = faults_of_big_arrays()
kept = keep_freed_memory()
faults_of_big_arrays()  # the heap grows to hold the arrays once
after = faults_of_big_arrays()
print(kept, keep_freed_memory(), before, after)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
def test_keep_freed_memory_reuses_the_pages_of_freed_arrays():
    # A fresh process (the setting lasts for the process): 64 MB arrays freed and allocated again
    # fault in new pages each time, until keep_freed_memory makes malloc reuse its heap (once the
    # heap has grown to hold them).
    import subprocess
    out = subprocess.run([sys.executable, "-c", KEEP_FREED_MEMORY_CHILD], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(train_module.__file__))))
    kept, again, before, after = out.stdout.split()
    assert kept == again == "True"
    assert int(after) * 2 < int(before), out.stdout


def test_cnn_train_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(train_module, "keep_freed_memory", lambda: calls.append(1))
    x = np.zeros((1, 1, 2, 4), np.float32)
    net = {"layers": [{"type": "conv", "weights": [np.zeros((1, 1, 2, 2), np.float32), np.zeros(2, np.float32)]},
                      {"type": "softmaxloss"}]}
    imdb = {"images": {"set": np.ones(4)}}
    cnn_train(net, imdb, lambda db, b: (x[..., b], np.ones(len(b), np.float32)), exp_dir=None, batch_size=2,
              num_epochs=1, progress=False)
    assert calls == [1]

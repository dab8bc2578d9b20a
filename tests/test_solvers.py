"""cnnx.solvers: each solver bit for bit as cnn_train's update was, its options, its checkpoint state."""
import math
import os
import re
import shutil

import numpy as np
import pytest

from cnnx import solvers
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn
from cnnx.train import cnn_train
from test_train import (QUIET, Recorder, gaussians, logistic_net, make_net, simple_batch, to_dag,  # noqa: F401
                        weights_of)

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "solver_checkpoints")


# --------------------------------------------------------------------------------------------------
# The reference: cnn_train's update as first written (MatConvNet beta25's formulas), verbatim
# --------------------------------------------------------------------------------------------------


def reference_step(name, w, state, grad, opts, lr):
    """One update of the solver ``name`` as cnnx.train did it, from the state it kept (0.0 at first)."""
    if name == "sgd":
        if isinstance(state, float):
            state = np.zeros_like(w)
        momentum = opts["momentum"]
        state = momentum * state - grad
        delta = momentum * state - grad if opts["nesterov"] else state
        return w + lr * delta, state
    if name == "adam":
        if isinstance(state, float):
            state = {"m": np.zeros_like(w), "v": np.zeros_like(w), "t": 0}
        beta1, beta2 = opts["beta1"], opts["beta2"]
        m = beta1 * state["m"] + (1 - beta1) * grad
        v = beta2 * state["v"] + (1 - beta2) * grad * grad
        t = state["t"] + 1
        lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        return w - lr_t * m / (np.sqrt(v) + opts["eps"]), {"m": m, "v": v, "t": t}
    if name == "adadelta":
        if isinstance(state, float):
            state = {"g_sqr": np.zeros_like(w), "delta_sqr": np.zeros_like(w)}
        rho, eps = opts["rho"], opts["epsilon"]
        g_sqr = state["g_sqr"] * rho + grad * grad * (1 - rho)
        delta = -np.sqrt((state["delta_sqr"] + eps) / (g_sqr + eps)) * grad
        delta_sqr = state["delta_sqr"] * rho + delta * delta * (1 - rho)
        return w + delta, {"g_sqr": g_sqr, "delta_sqr": delta_sqr}
    if isinstance(state, float):
        state = np.zeros_like(w)
    if name == "adagrad":
        g_sqr = state * opts["rho"] + grad * grad
    else:  # rmsprop
        g_sqr = state * opts["rho"] + grad * grad * (1 - opts["rho"])
    return w - lr * grad / (np.sqrt(g_sqr) + opts["epsilon"]), g_sqr


DEFAULTS = {
    "sgd": {"momentum": 0.9, "nesterov": False},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adagrad": {"epsilon": 1e-10, "rho": 1.0},
    "adadelta": {"epsilon": 1e-6, "rho": 0.9},
    "rmsprop": {"epsilon": 1e-8, "rho": 0.99},
}

# (cnn_train options, the solver name and its options for the reference)
CASES = [
    ({}, "sgd", {}),
    ({"solver": "sgd", "momentum": 0.7, "nesterov": True}, "sgd", {"momentum": 0.7, "nesterov": True}),
    ({"momentum": 0.0}, "sgd", {"momentum": 0.0}),
    ({"solver": "adam"}, "adam", {}),
    ({"solver": "Adam", "solver_opts": {"beta1": 0.8, "eps": 1e-6}}, "adam", {"beta1": 0.8, "eps": 1e-6}),
    ({"solver": "adagrad"}, "adagrad", {}),
    ({"solver": "adagrad", "solver_opts": {"rho": 0.9}}, "adagrad", {"rho": 0.9}),
    ({"solver": "adadelta"}, "adadelta", {}),
    ({"solver": "rmsprop"}, "rmsprop", {}),
    ({"solver": "rmsprop", "solver_opts": {"rho": 0.9, "epsilon": 1e-6}}, "rmsprop", {"rho": 0.9, "epsilon": 1e-6}),
]
CASE_IDS = [f"{name}-{k}" for k, (_, name, _) in enumerate(CASES)]


def reference_solver(name, opts):
    merged = {**DEFAULTS[name], **opts}
    return lambda w, state, g, solver_opts, lr: reference_step(name, w, state, g, merged, lr)


# --------------------------------------------------------------------------------------------------
# Bit for bit
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("network_type", ["simplenn", "dagnn"])
@pytest.mark.parametrize("options, name, reference_opts", CASES, ids=CASE_IDS)
def test_every_solver_steps_as_the_reference_bit_for_bit(gaussians, one_thread, network_type, options, name,
                                                         reference_opts):
    imdb, _, _ = gaussians
    common = dict(batch_size=20, learning_rate=[0.05, 0.02, 0.01], epoch_size=100, weight_decay=0.001,
                  val=np.arange(0, 200, 50), exp_dir=None, **QUIET)
    net, get_batch = make_net(network_type)
    ours, our_stats = cnn_train(net, imdb, get_batch, **options, **common)
    net, get_batch = make_net(network_type)
    theirs, their_stats = cnn_train(net, imdb, get_batch, solver=reference_solver(name, reference_opts), **common)
    for a, b in zip(weights_of(ours), weights_of(theirs), strict=True):
        np.testing.assert_array_equal(a, b)
    assert our_stats["train"][-1]["objective"] == their_stats["train"][-1]["objective"]
    net, _ = make_net(network_type)
    assert not np.array_equal(weights_of(ours)[0], weights_of(net)[0])


@pytest.mark.parametrize("options, name, reference_opts", CASES, ids=CASE_IDS)
def test_the_whole_update_is_matconvnets_bit_for_bit(gaussians, one_thread, options, name, reference_opts):
    """Multipliers, weight decay, 1/batch scaling and the step, against a loop over vl_simplenn."""
    imdb, init_w, init_b = gaussians
    rng = np.random.default_rng(3)
    init_w = 0.01 * rng.standard_normal(init_w.shape, dtype=np.float32)
    init_b = 0.1 * rng.standard_normal(init_b.shape, dtype=np.float32)
    net = logistic_net(init_w, init_b)
    net["layers"][0]["learningRate"] = [0.5, 2.0]
    net["layers"][0]["weightDecay"] = [1.0, 0.0]
    lr, wd = [0.02, 0.01], 0.05
    record = Recorder()
    trained, _ = cnn_train(net, imdb, record, train=np.arange(0, 200, 9), val=[], batch_size=7, num_epochs=2,
                           learning_rate=lr, weight_decay=wd, exp_dir=None, **options, **QUIET)

    merged = {**DEFAULTS[name], **reference_opts}
    weights = [init_w.copy(), init_b.copy()]
    states = [0.0, 0.0]
    layers = [{"type": "conv", "weights": weights}, {"type": "softmaxloss"}]
    for index, batch in enumerate(record.batches):
        layers[1]["class"] = imdb["y"][batch]
        res = vl_simplenn({"layers": layers}, imdb["x"][..., batch], np.float32(1), input_derivative=False)
        for j, (rate_mult, decay_mult) in enumerate([(0.5, 1.0), (2.0, 0.0)]):
            g = (1.0 / len(batch)) * res[0]["dzdw"][j] + (wd * decay_mult) * weights[j]
            weights[j], states[j] = reference_step(name, weights[j], states[j], g, merged, lr[index // 4] * rate_mult)
    for got, want in zip(weights_of(trained), weights, strict=True):
        np.testing.assert_array_equal(got, np.ravel(want))


def test_callable_solver_gets_the_scaled_derivative_and_its_options(gaussians):
    imdb, init_w, init_b = gaussians
    calls = []

    def plain(w, state, g, solver_opts, lr):
        calls.append((state, solver_opts, lr))
        return w - solver_opts["scale"] * lr * g, state + 1

    opts = {"scale": 0.5}
    trained, _ = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, solver=plain, solver_opts=opts,
                           batch_size=100, num_epochs=1, learning_rate=0.1, weight_decay=0.0, exp_dir=None, **QUIET)
    # two parameters, two batches: the state starts at MatConvNet's 0.0 and is what the solver returned
    assert [c[0] for c in calls] == [0.0, 0.0, 1.0, 1.0]
    assert all(c[1] == opts and c[1] is calls[0][1] and c[2] == 0.1 for c in calls)
    assert calls[0][1] is not opts  # a copy: the caller's dict is not the solver's
    assert not np.array_equal(trained["layers"][0]["weights"][0], init_w)


def test_callable_solver_returning_another_shape_is_an_error(gaussians):
    imdb, init_w, init_b = gaussians
    with pytest.raises(ValueError, match=re.escape(
            "cnn_train: the solver returned an array of shape (2,) and dtype float64 for a parameter of "
            "shape (15, 10, 5, 2) and dtype float32")):
        cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, solver=lambda w, s, g, o, lr: (np.zeros(2), s),
                  batch_size=100, num_epochs=1, exp_dir=None, **QUIET)


# --------------------------------------------------------------------------------------------------
# Solver objects as cnn_train's solver
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver, options", [
    (solvers.SGD(), {}),
    (solvers.SGD(momentum=0.5, nesterov=True), {"momentum": 0.5, "nesterov": True}),
    (solvers.Adam(beta1=0.8), {"solver": "adam", "solver_opts": {"beta1": 0.8}}),
    (solvers.AdaGrad(rho=0.9), {"solver": "adagrad", "solver_opts": {"rho": 0.9}}),
    (solvers.AdaDelta(epsilon=1e-5), {"solver": "adadelta", "solver_opts": {"epsilon": 1e-5}}),
    (solvers.RMSProp(), {"solver": "rmsprop"}),
], ids=repr)
def test_a_solver_object_is_the_same_as_its_name_and_options(gaussians, tmp_path, one_thread, solver, options):
    imdb, _, _ = gaussians
    common = dict(batch_size=20, learning_rate=[0.05, 0.02], epoch_size=60, val=[0, 100], **QUIET)
    net, get_batch = make_net("simplenn")
    by_name, _ = cnn_train(net, imdb, get_batch, exp_dir=None, num_epochs=2, **options, **common)
    net, get_batch = make_net("simplenn")
    cnn_train(net, imdb, get_batch, exp_dir=tmp_path, num_epochs=1, solver=solver, **common)
    net, get_batch = make_net("simplenn")
    by_object, _ = cnn_train(net, imdb, get_batch, exp_dir=tmp_path, num_epochs=2, solver=solver, **common)
    for a, b in zip(weights_of(by_name), weights_of(by_object), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_options_show_the_solver_object_and_its_options(gaussians):
    imdb, init_w, init_b = gaussians
    seen = {}

    def post(net, opts, state):
        seen.update(solver=opts["solver"], solver_opts=opts["solver_opts"])

    common = dict(batch_size=100, num_epochs=1, exp_dir=None, post_epoch_fn=post, **QUIET)
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, solver="adam", solver_opts={"eps": 1e-6}, **common)
    assert isinstance(seen["solver"], solvers.Adam)
    assert seen["solver_opts"] == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-6}
    cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, momentum=0.5, **common)
    assert repr(seen["solver"]) == "SGD(momentum=0.5, nesterov=False)" and seen["solver_opts"] == {}


class Sign(solvers.Solver):
    """A user's solver: sign descent with a step counter, saved as a struct."""

    name = "sign"
    defaults = {"scale": 1.0}

    def init_state(self, w):
        return {"steps": 0}

    def step(self, w, state, g, lr):
        return w - (self.scale * lr) * np.sign(g), {"steps": state["steps"] + 1}

    def saved_state(self, state):
        return {"steps": state["steps"]}

    def restore_state(self, saved, w, where):
        return {"steps": int(saved["steps"])}


def test_a_solver_subclass_trains_and_resumes(gaussians, tmp_path, one_thread):
    imdb, _, _ = gaussians
    common = dict(batch_size=20, learning_rate=0.001, epoch_size=60, val=[0, 100], **QUIET)
    net, get_batch = make_net("dagnn")
    straight, _ = cnn_train(net, imdb, get_batch, exp_dir=None, num_epochs=2, solver=Sign(scale=2.0), **common)
    net, get_batch = make_net("dagnn")
    cnn_train(net, imdb, get_batch, exp_dir=tmp_path, num_epochs=1, solver=Sign(scale=2.0), **common)
    _, extras = load_matconvnet(tmp_path / "net-epoch-1.mat", with_extra=True)
    assert all(entry == {"steps": 3} for entry in extras["state"]["solverState"])
    net, get_batch = make_net("dagnn")
    resumed, _ = cnn_train(net, imdb, get_batch, exp_dir=tmp_path, num_epochs=2, solver=Sign(scale=2.0), **common)
    for a, b in zip(weights_of(straight), weights_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    _, extras = load_matconvnet(tmp_path / "net-epoch-2.mat", with_extra=True)
    assert all(entry == {"steps": 6} for entry in extras["state"]["solverState"])
    assert Sign().scale == 1.0 and Sign(scale=3).scale == 3.0


# --------------------------------------------------------------------------------------------------
# Options and their errors
# --------------------------------------------------------------------------------------------------


def test_registry_and_defaults():
    import cnnx

    assert cnnx.solvers is solvers and "solvers" in cnnx.__all__
    assert solvers.SOLVERS == {"sgd": solvers.SGD, "adam": solvers.Adam, "adagrad": solvers.AdaGrad,
                               "adadelta": solvers.AdaDelta, "rmsprop": solvers.RMSProp}
    for name, cls in solvers.SOLVERS.items():
        solver = cls()
        assert solver.name == name
        if name == "sgd":
            assert (solver.momentum, solver.nesterov, solver.options) == (0.9, False, {})
        else:
            assert solver.options == DEFAULTS[name] == cls.defaults
    assert repr(solvers.Adam(beta1=0.8)) == "Adam(beta1=0.8, beta2=0.999, eps=1e-08)"
    assert repr(solvers.RMSProp()) == "RMSProp(epsilon=1e-08, rho=0.99)"


UNKNOWN = ("use None (SGD with momentum), 'adam', 'adagrad', 'adadelta', 'rmsprop' or a callable "
           "solver(w, state, grad, solver_opts, lr) -> (w, state)")


@pytest.mark.parametrize("options, error, message", [
    ({"solver": "sgdx"}, ValueError, f"cnn_train: unknown solver 'sgdx'; {UNKNOWN}"),
    ({"solver": 3}, ValueError, f"cnn_train: unknown solver 3; {UNKNOWN}"),
    ({"solver_opts": [1]}, TypeError, "cnn_train: solver_opts must be a dict, got list"),
    ({"solver_opts": {"rho": 0.5}}, ValueError,
     "cnn_train: solver_opts given, but solver is None (SGD with momentum takes none)"),
    ({"solver": "sgd", "solver_opts": {}}, ValueError,
     "cnn_train: solver_opts given, but solver is None (SGD with momentum takes none)"),
    ({"solver": "adam", "solver_opts": {"beta3": 0.5}}, ValueError,
     "cnn_train: solver_opts has unknown key 'beta3' for solver 'adam'; valid keys are ['beta1', 'beta2', 'eps']"),
    ({"solver": "rmsprop", "solver_opts": {"eps": 0.5}}, ValueError,
     "cnn_train: solver_opts has unknown key 'eps' for solver 'rmsprop'; valid keys are ['epsilon', 'rho']"),
    ({"solver": "adagrad", "solver_opts": {"rho": "1"}}, TypeError,
     "cnn_train: solver_opts['rho'] must be a real number, got '1'"),
    ({"solver": "adagrad", "solver_opts": {"rho": True}}, TypeError,
     "cnn_train: solver_opts['rho'] must be a real number, got True"),
    ({"solver": "adadelta", "solver_opts": {"epsilon": math.inf}}, ValueError,
     "cnn_train: solver_opts['epsilon'] must be a finite real number, got inf"),
    ({"solver": "adam", "solver_opts": {"beta1": -0.5}}, ValueError,
     "cnn_train: solver_opts['beta1'] must be at least 0.0, got -0.5"),
    ({"momentum": 1.0}, ValueError, "cnn_train: momentum must be in [0.0, 1.0), got 1.0"),
    ({"nesterov": "yes"}, TypeError, "cnn_train: nesterov must be true or false, got 'yes'"),
    ({"solver": solvers.Adam(), "solver_opts": {"beta1": 0.5}}, ValueError,
     "cnn_train: solver_opts given, but the solver Adam(beta1=0.9, beta2=0.999, eps=1e-08) carries its own "
     "options"),
    ({"solver": solvers.SGD(), "momentum": 0.5}, ValueError,
     "cnn_train: momentum given, but the solver SGD(momentum=0.9, nesterov=False) carries its own options"),
    ({"solver": solvers.SGD(), "nesterov": False}, ValueError,
     "cnn_train: nesterov given, but the solver SGD(momentum=0.9, nesterov=False) carries its own options"),
    ({"solver": solvers.UserSolver(print), "solver_opts": {}}, ValueError,
     "cnn_train: solver_opts given, but the solver UserSolver(print, {}) carries its own options"),
    ({"solver": solvers.Adam}, TypeError,
     "cnn_train: solver is the class Adam; pass an object of it, such as Adam()"),
])
def test_bad_solver_options_fail_before_the_first_batch(gaussians, options, error, message):
    imdb, init_w, init_b = gaussians
    calls = []
    with pytest.raises(error, match=re.escape(message) + "$"):
        cnn_train(logistic_net(init_w, init_b), imdb, lambda db, b: calls.append(b), exp_dir=None,
                  **{**QUIET, **options})
    assert not calls


def test_matconvnet_spellings_of_the_solver_options_with_an_object(gaussians):
    imdb, init_w, init_b = gaussians
    _, stats = cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, solver=solvers.Adam(), solver_opts=None,
                         batch_size=100, num_epochs=1, exp_dir=None, **QUIET)  # None is no solver_opts
    assert stats["train"][0]["num"] == 200
    with pytest.raises(ValueError, match=re.escape("cnn_train: nesterov given, but the solver SGD(")):
        cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, "solver", solvers.SGD(), "nesterovUpdate",
                  True, exp_dir=None, **QUIET)
    with pytest.raises(ValueError, match=re.escape("cnn_train: solver_opts given, but the solver RMSProp(")):
        cnn_train(logistic_net(init_w, init_b), imdb, simple_batch, "Solver", solvers.RMSProp(), "solverOpts",
                  {}, exp_dir=None, **QUIET)


@pytest.mark.parametrize("make, error, message", [
    (lambda: solvers.SGD(momentum=1.0), ValueError, "SGD: momentum must be in [0.0, 1.0), got 1.0"),
    (lambda: solvers.SGD(momentum=-0.1), ValueError, "SGD: momentum must be in [0.0, 1.0), got -0.1"),
    (lambda: solvers.SGD(momentum="0.9"), TypeError, "SGD: momentum must be a real number, got '0.9'"),
    (lambda: solvers.SGD(nesterov=2), ValueError, "SGD: nesterov must be true or false (or 1 or 0), got 2"),
    (lambda: solvers.Adam(beta1=-1), ValueError, "Adam: beta1 must be at least 0.0, got -1.0"),
    (lambda: solvers.Adam(eps=math.nan), ValueError, "Adam: eps must be a finite real number, got nan"),
    (lambda: solvers.AdaGrad(rho=None), TypeError, "AdaGrad: rho must be a real number, got None"),
    (lambda: solvers.RMSProp(epsilon=[1]), TypeError, "RMSProp: epsilon must be a real number, got [1]"),
    (lambda: solvers.AdaDelta(rho=math.inf), ValueError, "AdaDelta: rho must be a finite real number, got inf"),
    (lambda: Sign(scales=1.0), TypeError, "Sign: unknown option 'scales'; the options are ['scale']"),
    (lambda: solvers.UserSolver(3), TypeError, "UserSolver: function must be callable, got int"),
    (lambda: solvers.UserSolver(print, [1]), TypeError, "UserSolver: solver_opts must be a dict, got list"),
])
def test_bad_solver_objects(make, error, message):
    with pytest.raises(error, match=re.escape(message) + "$"):
        make()


def test_base_class_methods_are_abstract():
    solver = solvers.Solver()
    for call in (lambda: solver.init_state(np.zeros(1)), lambda: solver.step(np.zeros(1), None, np.zeros(1), 1.0),
                 lambda: solver.saved_state(None), lambda: solver.restore_state(None, np.zeros(1), "w")):
        with pytest.raises(NotImplementedError):
            call()


# --------------------------------------------------------------------------------------------------
# Checkpoints: MatConvNet's layout, old files, restore errors
# --------------------------------------------------------------------------------------------------


def tiny_problem(network_type):
    """The problem of tests/data/solver_checkpoints/*.mat (make.py: one epoch, 4 batches of 10)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 3, 40)).astype(np.float32)
    y = (1.0 + (x[0, 0, 0] > x[0, 0, 1])).astype(np.float32)
    w = 0.1 * rng.standard_normal((1, 1, 3, 2)).astype(np.float32)
    net = {"layers": [{"type": "conv", "weights": [w, np.zeros(2, np.float32)]}, {"type": "softmaxloss"}]}
    get_batch = lambda db, b: (db["x"][..., b], db["y"][b])  # noqa: E731
    if network_type == "dagnn":
        net = to_dag(net, top1err=False)
        get_batch = lambda db, b: {"input": db["x"][..., b], "label": db["y"][b]}  # noqa: E731
    return net, {"x": x, "y": y}, get_batch


def counting(w, state, g, solver_opts, lr):
    """The callable solver of custom.mat: a dict state {'acc': array, 'count': int}."""
    if isinstance(state, float):
        state = {"acc": np.zeros_like(w), "count": 0}
    acc = state["acc"] + g * g
    return w - lr * g / np.sqrt(acc + 1.0), {"acc": acc, "count": state["count"] + 1}


FIXTURE_SOLVERS = {"sgd": "sgd", "adam": "adam", "adagrad": "adagrad", "adadelta": "adadelta",
                   "rmsprop": "rmsprop", "custom": counting, "dagnn-sgd": "sgd", "dagnn-adam": "adam"}


def assert_same_layout(a, b, exact):
    """The same nesting, field names, Python types, dtypes and shapes; and the same values (exact: bit
    for bit, False: to float32 rounding, None: any)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_layout(a[key], b[key], exact)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_layout(x, y, exact)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        if exact:
            np.testing.assert_array_equal(a, b)
        elif exact is not None:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    elif exact is not None:
        assert a == b


def train_tiny(fixture, exp_dir, **options):
    network_type = "dagnn" if fixture.startswith("dagnn") else "simplenn"
    net, imdb, get_batch = tiny_problem(network_type)
    options = {"train": np.arange(40), "val": [], "solver": FIXTURE_SOLVERS[fixture], "batch_size": 10,
               "learning_rate": 0.1, **QUIET, **options}
    return cnn_train(net, imdb, get_batch, exp_dir=exp_dir, **options)


def saved_state(path):
    return load_matconvnet(path, with_extra=True)[1]["state"]["solverState"]


@pytest.mark.parametrize("fixture", sorted(FIXTURE_SOLVERS))
def test_checkpoints_hold_the_state_as_before(fixture, tmp_path, one_thread):
    """A new checkpoint lays the state out as the committed ones (written by the first cnn_train)."""
    train_tiny(fixture, tmp_path, num_epochs=1)
    old = saved_state(os.path.join(FIXTURES, f"{fixture}.mat"))
    assert_same_layout(saved_state(tmp_path / "net-epoch-1.mat"), old, exact=False)
    if fixture == "adam":
        assert old[0][0]["t"] == 4 and old[1] == []  # MatConvNet's: a struct per weight, [] for the loss


@pytest.mark.parametrize("fixture", sorted(FIXTURE_SOLVERS))
def test_old_checkpoints_resume_with_their_state(fixture, tmp_path, one_thread):
    shutil.copy(os.path.join(FIXTURES, f"{fixture}.mat"), tmp_path / "net-epoch-1.mat")
    old_net, extras = load_matconvnet(tmp_path / "net-epoch-1.mat", with_extra=True)
    # a rate and decay of 0 leave every parameter and state as restored: the next checkpoint shows them
    net, _ = train_tiny(fixture, tmp_path, num_epochs=2, learning_rate=0.0, weight_decay=0.0)
    assert_same_layout(saved_state(tmp_path / "net-epoch-2.mat"), extras["state"]["solverState"], exact=True)
    for a, b in zip(weights_of(net), weights_of(old_net), strict=True):
        np.testing.assert_array_equal(a, b)
    # and training on from it moves on from that state
    moved, _ = train_tiny(fixture, tmp_path, num_epochs=3)
    assert not np.array_equal(weights_of(moved)[0], weights_of(old_net)[0])
    assert_same_layout(saved_state(tmp_path / "net-epoch-3.mat"), extras["state"]["solverState"], exact=None)


@pytest.mark.parametrize("fixture", ["sgd", "adam", "adagrad", "adadelta", "rmsprop", "dagnn-adam"])
def test_matconvnets_zero_state_is_the_initial_state(fixture, tmp_path, one_thread):
    """MatConvNet starts every solverState entry at 0; such a checkpoint resumes as one saved without."""
    for folder, state in (("zeros", 0.0), ("none", None)):
        train_tiny(fixture, tmp_path / folder, num_epochs=1)
        path = tmp_path / folder / "net-epoch-1.mat"
        net, extras = load_matconvnet(path, with_extra=True)
        entries = extras["state"]["solverState"]
        if state is not None:
            entries = ([state] * 2 if fixture.startswith("dagnn") else [[state] * 2, []])
        save_matconvnet(net, path, state={"solverState": entries if state is not None else None},
                        stats=extras["stats"])
    runs = [train_tiny(fixture, tmp_path / folder, num_epochs=2)[0] for folder in ("zeros", "none")]
    for a, b in zip(weights_of(runs[0]), weights_of(runs[1]), strict=True):
        np.testing.assert_array_equal(a, b)


WHERE = "cnn_train: the checkpoint's solver state for layers[0] ('layer1') weights[0]"


@pytest.mark.parametrize("fixture, entry, message", [
    ("sgd", np.ones(5, np.float32), f"{WHERE} has 5 elements, the parameter 6"),
    ("adam", {"m": np.ones(6), "v": np.ones(5), "t": 2.0}, f"{WHERE} has 5 elements, the parameter 6"),
    ("adam", np.ones(6, np.float32), f"{WHERE} is not a 'adam' state"),
    ("adam", {"m": np.ones(6), "t": 2.0}, f"{WHERE} is not a 'adam' state"),
    ("adadelta", {"g_sqr": np.ones(6), "delta": np.ones(6)}, f"{WHERE} is not a 'adadelta' state"),
    ("dagnn-sgd", np.ones(7, np.float32),
     "cnn_train: the checkpoint's solver state for parameter 'layer1f' has 7 elements, the parameter 6"),
])
def test_a_state_that_does_not_fit_is_an_error(fixture, entry, message, tmp_path):
    shutil.copy(os.path.join(FIXTURES, f"{fixture}.mat"), tmp_path / "net-epoch-1.mat")
    net, extras = load_matconvnet(tmp_path / "net-epoch-1.mat", with_extra=True)
    entries = extras["state"]["solverState"]
    if fixture.startswith("dagnn"):
        entries[0] = entry
    else:
        entries[0][0] = entry
    save_matconvnet(net, tmp_path / "net-epoch-1.mat", state={"solverState": entries}, stats=extras["stats"])
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        train_tiny(fixture, tmp_path, num_epochs=2)


# --------------------------------------------------------------------------------------------------
# SGD's fused update (cnnx/_ext/sgd.pyx): the bits of step() on the scaled, decayed derivative
# --------------------------------------------------------------------------------------------------


def awkward_values(rng, shape, dtype):
    """Random values with the cases where rounding differs: tiny, huge, subnormal, signed zeros, inf, NaN."""
    x = rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 6, shape)
    flat = x.reshape(-1)
    tiny = np.finfo(dtype).tiny
    specials = [0.0, -0.0, tiny / 3, -tiny / 7, np.inf, -np.inf, np.nan, 1e30, -1e30, 1.0, -1.0, 3.0]
    flat[:len(specials)] = specials[:flat.size]
    return np.asfortranarray(x.astype(dtype))


def numpy_sgd_update(w, v, der, scale, decay, momentum, lr, nesterov):
    """cnn_train's NumPy formula before the fused kernel."""
    with np.errstate(invalid="ignore", over="ignore"):
        g = scale * der + decay * w
        v = momentum * v - g
        delta = momentum * v - g if nesterov else v
        return w + lr * delta, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("shape", [(5, 5, 3, 32), (1, 10), (70000,)])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_sgd_update_is_the_numpy_formula_bit_for_bit(restore_threads, dtype, nesterov, shape, threads):
    import cnnx

    cnnx.set_num_threads(threads)
    rng = np.random.default_rng(7)
    w, v, der = (awkward_values(rng, shape, dtype) for _ in range(3))
    scale, decay, momentum, lr = 1.0 / 100, 5e-4, 0.9, 0.05 * 0.1
    want_w, want_v = numpy_sgd_update(w, v, der, scale, decay, momentum, lr, nesterov)
    before = w.copy()
    got_w, got_v = solvers.SGD(momentum, nesterov).update(w, v.copy(order="F"), der, scale, decay, lr)
    assert got_w.dtype == dtype and got_w.shape == shape and got_w.flags.f_contiguous
    np.testing.assert_array_equal(got_w.view(f"u{w.itemsize}"), want_w.view(f"u{w.itemsize}"))
    np.testing.assert_array_equal(got_v.view(f"u{w.itemsize}"), want_v.view(f"u{w.itemsize}"))
    np.testing.assert_array_equal(w, before)  # the parameter itself is left alone: a new array


def test_fused_sgd_update_updates_the_momentum_in_place_and_reads_read_only_arrays():
    rng = np.random.default_rng(8)
    w, v, der = (awkward_values(rng, (4, 4, 2, 3), np.float32) for _ in range(3))
    want_w, want_v = numpy_sgd_update(w, v, der, 0.5, 0.01, 0.9, 0.1, False)
    w.flags.writeable = der.flags.writeable = False
    got_w, got_v = solvers.SGD(0.9).update(w, v, der, 0.5, 0.01, 0.1)
    assert got_v is v
    np.testing.assert_array_equal(got_w, want_w)
    np.testing.assert_array_equal(got_v, want_v)


@pytest.mark.parametrize("layout", ["C order", "C-order momentum", "read-only momentum", "float64 derivative"])
def test_sgd_update_outside_the_kernels_reach_is_still_the_formula(layout):
    rng = np.random.default_rng(9)
    w, v, der = (awkward_values(rng, (3, 4, 2, 2), np.float32) for _ in range(3))
    if layout == "C order":
        w, v, der = (np.ascontiguousarray(a) for a in (w, v, der))
    elif layout == "C-order momentum":  # as a checkpoint restores it
        v = np.ascontiguousarray(v)
    elif layout == "read-only momentum":
        v.flags.writeable = False
    else:
        der = der.astype(np.float64, order="F")
    want_w, want_v = numpy_sgd_update(w, v, der, 0.25, 0.001, 0.8, 0.02, True)
    with np.errstate(invalid="ignore", over="ignore"):
        got_w, got_v = solvers.SGD(0.8, True).update(w, v, der, 0.25, 0.001, 0.02)
    assert got_w.dtype == want_w.dtype
    np.testing.assert_array_equal(got_w, want_w)
    np.testing.assert_array_equal(got_v, want_v)


def test_an_sgd_subclass_with_its_own_step_gets_its_step():
    class Halving(solvers.SGD):
        def step(self, w, state, g, lr):
            return w - 0.5 * lr * g, state

    w, der = np.ones(3, np.float32), np.full(3, 4.0, np.float32)
    got_w, got_v = Halving().update(w, np.zeros(3, np.float32), der, 0.5, 0.0, 1.0)
    np.testing.assert_array_equal(got_w, np.full(3, 0.0, np.float32))
    np.testing.assert_array_equal(got_v, np.zeros(3, np.float32))

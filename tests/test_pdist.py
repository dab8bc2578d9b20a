"""vl_nnpdist against a NumPy reference, finite differences, PyTorch and MatConvNet's outputs; its layer kinds."""
import os
import re

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnpdist, vl_simplenn
from cnnx.dagnn import DagNN, PDist
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn_tidy
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
DATA = os.path.join(os.path.dirname(__file__), "data", "mcn_pdist.mat")
PS = [0.5, 1, 2, 3]


def pdist_reference(x, x0, p, no_root=False, epsilon=1e-6, aggregate=False, weights=None, dzdy=None):
    """MatConvNet's vl_nnpdist in float64: y, or (dzdx, dzdx0 of X's shape) given dzdy."""
    d = x.astype(np.float64) - x0.astype(np.float64)
    total = np.sum(np.abs(d) ** p, axis=2, keepdims=True)
    if dzdy is None:
        y = total if no_root or p == 1 else total ** (1 / p)
        if weights is not None:
            y = weights * y
        return np.sum(y) if aggregate else y
    dy = np.asarray(dzdy, np.float64) * (1 if weights is None else weights)
    if p == 1:
        g = dy * np.sign(d)
    elif no_root and p == 2:
        g = 2 * dy * d
    elif no_root:
        a = np.maximum(np.abs(d), epsilon) if p < 1 else np.abs(d)
        g = p * dy * a ** (p - 1) * np.sign(d)
    elif p == 2:
        g = dy * np.maximum(total, epsilon) ** -0.5 * d
    elif p < 1:
        g = dy * total ** ((1 - p) / p) * np.maximum(np.abs(d), epsilon) ** (p - 1) * np.sign(d)
    else:
        g = dy * np.maximum(total, epsilon) ** ((1 - p) / p) * np.abs(d) ** (p - 1) * np.sign(d)
    return g, -g


def case(rng, dtype, broadcast, shape=(3, 4, 5, 2)):
    x = rng.standard_normal(shape).astype(dtype)
    x0 = rng.standard_normal((1, 1) + shape[2:] if broadcast else shape).astype(dtype)
    return x, x0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("no_root", [False, True])
@pytest.mark.parametrize("aggregate", [False, True])
@pytest.mark.parametrize("broadcast", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_reference(dtype, p, no_root, aggregate, broadcast, weighted):
    rng = np.random.default_rng(int(p * 10) + 3 * no_root + 5 * aggregate + 7 * broadcast)
    x, x0 = case(rng, dtype, broadcast)
    weights = rng.uniform(0.5, 2, size=(3, 4, 1, 2)) if weighted else None
    opts = dict(no_root=no_root, aggregate=aggregate, instance_weights=weights)
    y = vl_nnpdist(x, x0, p, "NoRoot", no_root, "Aggregate", aggregate, "InstanceWeights", weights)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    expected = pdist_reference(x, x0, p, weights=weights, no_root=no_root, aggregate=aggregate)
    if aggregate:
        assert isinstance(y, dtype)
    else:
        assert y.shape == (3, 4, 1, 2) and y.dtype == dtype
    np.testing.assert_allclose(y, expected, rtol=rtol)
    dzdy = np.array([1.5], dtype) if aggregate else rng.standard_normal((3, 4, 1, 2)).astype(dtype)
    dzdx, dzdx0 = vl_nnpdist(x, x0, p, dzdy, **opts)
    g, g0 = pdist_reference(x, x0, p, weights=weights, no_root=no_root, dzdy=dzdy.reshape(-1, 1, 1, 1)
                            if aggregate else dzdy)
    assert dzdx.shape == x.shape and dzdx0.shape == x0.shape and dzdx.dtype == dzdx0.dtype == dtype
    np.testing.assert_allclose(dzdx, g, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dzdx0, g0.sum(axis=(0, 1), keepdims=True) if broadcast else g0, rtol=rtol,
                               atol=10 * rtol)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("no_root", [False, True])
@pytest.mark.parametrize("broadcast", [False, True])
def test_both_derivatives_by_finite_differences(p, no_root, broadcast):
    rng = np.random.default_rng(int(p * 10) + no_root)
    x, x0 = case(rng, np.float64, broadcast, shape=(2, 3, 4, 2))
    dzdy = rng.standard_normal((2, 3, 1, 2))
    weights = rng.uniform(0.5, 2, size=2)
    dzdx, dzdx0 = vl_nnpdist(x, x0, p, dzdy, no_root=no_root, instance_weights=weights)
    check_derivative(lambda t: vl_nnpdist(t, x0, p, no_root=no_root, instance_weights=weights), x, dzdy, dzdx,
                     delta=1e-6, method="central", rtol=1e-6)
    check_derivative(lambda t: vl_nnpdist(x, t, p, no_root=no_root, instance_weights=weights), x0, dzdy, dzdx0,
                     delta=1e-6, method="central", rtol=1e-6)


def test_epsilon_bounds_the_derivative():
    x = np.zeros((1, 1, 3, 1))
    x[0, 0, 0, 0] = 1e-4
    dzdx, _ = vl_nnpdist(x, np.zeros_like(x), 2, 1.0, "Epsilon", 1e-2)
    np.testing.assert_allclose(dzdx.ravel(), [1e-4 / np.sqrt(1e-2), 0, 0], rtol=1e-14)
    dzdx, _ = vl_nnpdist(x, np.zeros_like(x), 0.5, 1.0, "noRoot", True, "epsilon", 1e-2)
    np.testing.assert_allclose(dzdx.ravel(), [0.5 * 1e-2 ** -0.5, 0, 0], rtol=1e-14)
    # the other exponents: exact at d = 0 (sign 0) and finite at S = 0 with epsilon
    dzdx, _ = vl_nnpdist(np.zeros((1, 1, 2, 1)), np.zeros((1, 1, 2, 1)), 3, 1.0)
    assert not np.any(dzdx)


def test_3d_input_and_python_numbers():
    rng = np.random.default_rng(5)
    x, x0 = rng.standard_normal((4, 3, 2)), rng.standard_normal((1, 1, 2))
    y = vl_nnpdist(x, x0, 2)
    assert y.shape == (4, 3, 1)
    dzdx, dzdx0 = vl_nnpdist(x, x0, 2, np.ones((4, 3)))
    assert dzdx.shape == x.shape and dzdx0.shape == x0.shape
    np.testing.assert_array_equal(vl_nnpdist(x, x0, 2, 1.0)[0], dzdx)
    np.testing.assert_array_equal(vl_nnpdist(x, x0, np.array([[2.0]])), y)


def test_matches_torch_pairwise_distance():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x, x0 = case(rng, np.float64, False, shape=(1, 1, 6, 5))
    for p in (1, 2, 3):
        a = torch.from_numpy(np.ascontiguousarray(x[0, 0].T)).requires_grad_()
        b = torch.from_numpy(np.ascontiguousarray(x0[0, 0].T)).requires_grad_()
        distance = torch.nn.functional.pairwise_distance(a, b, p=p, eps=0)
        distance.sum().backward()
        np.testing.assert_allclose(vl_nnpdist(x, x0, p).ravel(), distance.detach().numpy(), rtol=1e-12)
        dzdx, dzdx0 = vl_nnpdist(x, x0, p, np.ones((1, 1, 1, 5)))
        np.testing.assert_allclose(dzdx[0, 0].T, a.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(dzdx0[0, 0].T, b.grad.numpy(), rtol=1e-10)


def _mcn_cases():
    cases = scipy.io.loadmat(DATA, squeeze_me=False, struct_as_record=False)["cases"]
    for k in range(cases.shape[1]):
        c = cases[0, k][0, 0]
        yield pytest.param(c, [o.item() for o in c.opts.ravel()], id=str(c.name[0]))


@pytest.mark.parametrize("case, opts", list(_mcn_cases()))
def test_matches_matconvnet(case, opts):
    rtol = 1e-5 if case.x.dtype == np.float32 else 1e-12
    y = vl_nnpdist(case.x, case.x0, case.p, *opts)
    np.testing.assert_allclose(np.reshape(y, case.y.shape), case.y, rtol=rtol, atol=rtol)
    dzdx, dzdx0 = vl_nnpdist(case.x, case.x0, case.p, case.dzdy, *opts)
    np.testing.assert_allclose(dzdx, case.dzdx, rtol=rtol, atol=rtol)
    # MatConvNet's DZDX0 has X's shape even for a 1 x 1 x D x N X0; cnnx's is summed to X0's
    expected = case.dzdx0 if case.x0.shape == case.x.shape else case.dzdx0.sum(axis=(0, 1), keepdims=True)
    assert dzdx0.shape == case.x0.shape
    np.testing.assert_allclose(dzdx0, expected, rtol=rtol, atol=10 * rtol)


@pytest.mark.parametrize("p", PS)
def test_one_and_two_threads_agree_bitwise(p, restore_threads):
    rng = np.random.default_rng(7)
    x, x0 = case(rng, np.float32, True, shape=(40, 30, 8, 6))
    dzdy = rng.standard_normal((40, 30, 1, 6)).astype(np.float32)
    results = []
    for threads in (1, 2):
        cnnx.set_num_threads(threads)
        results.append((vl_nnpdist(x, x0, p), *vl_nnpdist(x, x0, p, dzdy)))
    for a, b in zip(*results):
        assert a.tobytes() == b.tobytes()


# ------------------------------------------------------------------------------------------------
# The layer kinds: SimpleNN 'pdist', DagNN PDist
# ------------------------------------------------------------------------------------------------


def regression_net(rng, target, **fields):
    f = rng.standard_normal((3, 3, 2, 4))
    return {"layers": [{"type": "conv", "name": "conv", "weights": [f, np.zeros(4)]},
                       {"type": "pdist", "name": "dist", "class": target, **fields}]}


@pytest.mark.parametrize("fields", [{}, {"p": 1, "aggregate": True}, {"p": 3, "noRoot": True, "epsilon": 0.1},
                                    {"aggregate": True, "instanceWeights": np.array([0.5, 2.0])}])
def test_simplenn_and_dagnn_agree(fields):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 5, 2, 2))
    target = rng.standard_normal((3, 3, 4, 2))
    net = regression_net(rng, target, **fields)
    dzdy = 1.0 if fields.get("aggregate") else rng.standard_normal((3, 3, 1, 2))
    res = vl_simplenn(net, x, dzdy)
    tidy = vl_simplenn_tidy(net)["layers"][1]
    opts = dict(no_root=tidy["noRoot"], epsilon=tidy["epsilon"], aggregate=tidy["aggregate"],
                instance_weights=tidy["instanceWeights"])
    np.testing.assert_array_equal(res[2]["x"], vl_nnpdist(res[1]["x"], target, tidy["p"], **opts))
    np.testing.assert_array_equal(res[1]["dzdx"], vl_nnpdist(res[1]["x"], target, tidy["p"], dzdy, **opts)[0])

    dag = DagNN.from_simplenn(net)
    block = dag.layers[1].block
    assert isinstance(block, PDist) and dag.layers[1].inputs == ["x1", "label"]
    assert (block.p, block.aggregate, block.no_root, block.epsilon) == (tidy["p"], tidy["aggregate"],
                                                                        tidy["noRoot"], tidy["epsilon"])
    dag.eval({"x0": x, "label": target}, {"x2": dzdy})
    np.testing.assert_array_equal(dag.get_var("x2").value, res[2]["x"])
    np.testing.assert_array_equal(dag.get_var("x0").der, res[0]["dzdx"])
    np.testing.assert_array_equal(dag.get_param("convf").der, res[0]["dzdw"][0])
    # the target gets its derivative too (it is no label: PDist's labels are its weights)
    np.testing.assert_array_equal(dag.get_var("label").der, vl_nnpdist(res[1]["x"], target, tidy["p"], dzdy,
                                                                      **opts)[1])


def test_simplenn_defaults_are_matconvnets():
    layer = vl_simplenn_tidy({"layers": [{"type": "pdist"}]})["layers"][0]
    assert (layer["p"], layer["noRoot"], layer["aggregate"], layer["epsilon"], layer["instanceWeights"]) == \
        (2.0, False, False, 1e-3, None)
    block = PDist()
    assert (block.p, block.aggregate, block.no_root, block.epsilon, block.loss) == (2.0, True, False, 1e-6, "pdist")


def test_display_shows_the_distance_sizes():
    from cnnx.simplenn import vl_simplenn_display
    for aggregate, expected in ((False, [3, 3, 1, 2]), (True, [1, 1, 1, 1])):
        net = regression_net(np.random.default_rng(11), None, aggregate=aggregate)
        info = vl_simplenn_display(net, input_size=[5, 5, 2, 2])
        assert info["dataSize"][:, 2].tolist() == expected


def test_dagnn_third_input_weighs_and_the_average_is_kept():
    rng = np.random.default_rng(9)
    x, x0 = case(rng, np.float64, False, shape=(2, 2, 3, 2))
    weights = np.array([1.0, 3.0])
    net = DagNN()
    net.add_layer("dist", PDist(p=1), ["x", "x0", "w"], "objective")
    net.eval({"x": x, "x0": x0, "w": weights}, {"objective": 1.0})
    y = vl_nnpdist(x, x0, 1, aggregate=True, instance_weights=weights)
    assert net.get_var("objective").value == y
    np.testing.assert_array_equal(net.get_var("x").der, vl_nnpdist(x, x0, 1, 1.0, instance_weights=weights)[0])
    assert net.get_var("w").der is None
    block = net.layers[0].block
    assert block.average == pytest.approx(float(y) / 8) and block.num_averaged == 8
    assert net.get_label_inputs() == ["w"]


def test_model_files_round_trip(tmp_path):
    rng = np.random.default_rng(10)
    net = vl_simplenn_tidy(regression_net(rng, None, p=3, noRoot=True, epsilon=0.25, aggregate=True))
    del net["layers"][1]["class"]
    save_matconvnet(net, tmp_path / "simple.mat")
    layer = load_matconvnet(tmp_path / "simple.mat")["layers"][1]
    assert (layer["type"], layer["p"], layer["noRoot"], layer["epsilon"], layer["aggregate"]) == \
        ("pdist", 3, True, 0.25, True)
    dag = DagNN.from_simplenn(net)
    save_matconvnet(dag, tmp_path / "dag.mat")
    for loaded in (load_matconvnet(tmp_path / "dag.mat"), DagNN.loadobj(dag.saveobj())):
        block = loaded.layers[1].block
        assert isinstance(block, PDist)
        assert (block.p, block.no_root, block.epsilon, block.aggregate) == (3.0, True, 0.25, True)


def test_loads_a_matconvnet_beta25_pdist_block():
    """beta25's dagnn.PDist has no noRoot and epsilon properties: their defaults apply."""
    block = PDist()
    block.load({"loss": "pdist", "ignoreAverage": False, "opts": [], "p": 1.0, "aggregate": True})
    assert (block.p, block.no_root, block.epsilon) == (1.0, False, 1e-6)


@pytest.mark.parametrize("make, error, message", [
    (lambda: PDist(p=0), ValueError, "PDist: p must be a finite number greater than 0, got 0"),
    (lambda: PDist(epsilon=-1), ValueError, "PDist: epsilon must be a finite number of at least 0, got -1"),
    (lambda: PDist(loss="softmaxlog"), ValueError, "PDist: loss must be one of 'pdist', got the string 'softmaxlog'"),
    (lambda: vl_simplenn_tidy({"layers": [{"type": "pdist", "p": -2}]}), ValueError,
     "vl_simplenn_tidy: layers[0]: P must be greater than 0, got -2.0"),
    (lambda: vl_simplenn({"layers": [{"type": "pdist"}]}, np.zeros((1, 1, 2, 1))), ValueError,
     "vl_simplenn: layers[0] ('layer1'): pdist needs the target in layer['class']"),
])
def test_layer_errors(make, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make()


def test_cnn_train_fits_a_regression_with_both_graphs():
    """MatConvNet's advice for an L2 regression: a pdist layer, aggregated; cnn_train reports it."""
    from cnnx.train import cnn_train

    rng = np.random.default_rng(12)
    images = rng.standard_normal((1, 1, 3, 60)).astype(np.float32)
    targets = np.tensordot(np.array([[1.0, -2.0, 0.5], [0.3, 0.0, 1.0]], np.float32), images[0, 0], 1)[None, None]
    imdb = {"x": images, "y": targets, "images": {"set": np.ones(60)}}
    f = np.zeros((1, 1, 3, 2), np.float32)
    net = {"layers": [{"type": "conv", "weights": [f, np.zeros(2, np.float32)]},
                      {"type": "pdist", "p": 2, "noRoot": True, "aggregate": True}]}
    common = dict(progress=False, plot_statistics=False, exp_dir=None, batch_size=10, num_epochs=3,
                  learning_rate=0.05)
    _, simple_stats = cnn_train(net, imdb, lambda db, b: (db["x"][..., b], db["y"][..., b]), error_function="none",
                                **common)
    dag = DagNN.from_simplenn(net)
    dag.rename_var("x2", "objective")
    _, dag_stats = cnn_train(dag, imdb, lambda db, b: {"x0": db["x"][..., b], "label": db["y"][..., b]},
                             **common)
    for stats in (simple_stats, dag_stats):
        objectives = [epoch["objective"] for epoch in stats["train"]]
        assert objectives[2] < objectives[1] < objectives[0]
    # the same numbers, up to the order of float32 sums (the DagNN's average is per pixel and image)
    np.testing.assert_allclose([e["objective"] for e in dag_stats["train"]],
                               [e["objective"] for e in simple_stats["train"]], rtol=1e-5)

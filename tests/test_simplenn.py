"""SimpleNN: forward/backward against the blocks composed by hand, derivative checks of whole
networks, MatConvNet's memory/accumulate/depth/skip semantics, custom layers, tidy and display."""
import math
import re
import tracemalloc

import numpy as np
import pytest

from cnnx import testing, vl_nnconv, vl_nndropout, vl_nnpool, vl_nnprelu, vl_nnrelu, vl_nnsoftmaxloss
from cnnx.simplenn import (LAYER_TYPES, register_layer_type, vl_simplenn, vl_simplenn_display,
                           vl_simplenn_tidy)

LABELS = np.array([1.0, 3.0, 2.0])


def randn(rng, *shape, dtype=np.float64):
    return np.asfortranarray(rng.standard_normal(shape).astype(dtype))


def lenet(dtype=np.float64, seed=0):
    """conv -> max pool -> leaky relu -> prelu -> dropout -> conv -> softmaxloss, 8x8x2 input."""
    rng = np.random.default_rng(seed)
    return {
        "layers": [
            {"type": "conv", "name": "conv1", "weights": [randn(rng, 3, 3, 2, 4, dtype=dtype),
                                                          randn(rng, 1, 4, dtype=dtype)], "pad": 1},
            {"type": "pool", "name": "pool1", "pool": [3, 3], "stride": 2, "pad": [0, 1, 0, 1],
             "method": "max"},
            {"type": "relu", "name": "relu1", "leak": 0.1},
            {"type": "prelu", "name": "prelu1", "weights": [np.abs(randn(rng, 1, 4, dtype=dtype)) * 0.5]},
            {"type": "dropout", "name": "drop1", "rate": 0.25},
            {"type": "conv", "name": "conv2", "weights": [randn(rng, 4, 4, 4, 3, dtype=dtype),
                                                          randn(rng, 1, 3, dtype=dtype)]},
            {"type": "softmaxloss", "name": "loss", "class": LABELS},
        ],
        "meta": {"inputSize": [8, 8, 2]},
    }


def lenet_input(dtype=np.float64, seed=1):
    return randn(np.random.default_rng(seed), 8, 8, 2, 3, dtype=dtype)


def by_hand(net, x, seed):
    """The lenet of `lenet` run by calling the blocks directly: outputs, dzdx, dzdw."""
    c1, p1, r1, pr1, d1, c2, loss = net["layers"]
    xs = [x]
    xs.append(vl_nnconv(xs[-1], *c1["weights"], pad=1))
    xs.append(vl_nnpool(xs[-1], [3, 3], stride=2, pad=[0, 1, 0, 1], method="max"))
    xs.append(vl_nnrelu(xs[-1], leak=0.1))
    xs.append(vl_nnprelu(xs[-1], pr1["weights"][0]))
    y, mask = vl_nndropout(xs[-1], rate=0.25, rng=np.random.default_rng(seed))
    xs.append(y)
    xs.append(vl_nnconv(xs[-1], *c2["weights"]))
    xs.append(vl_nnsoftmaxloss(xs[-1], LABELS))
    d = [None] * 8
    w = [[] for _ in range(8)]
    d[7] = 1.0
    d[6] = vl_nnsoftmaxloss(xs[6], LABELS, d[7])
    d[5], *w[5] = vl_nnconv(xs[5], *c2["weights"], d[6])
    d[4] = vl_nndropout(xs[4], d[5], mask=mask)
    d[3], *w[3] = vl_nnprelu(xs[3], pr1["weights"][0], d[4])
    d[2] = vl_nnrelu(xs[2], d[3], leak=0.1)
    d[1] = vl_nnpool(xs[1], [3, 3], d[2], stride=2, pad=[0, 1, 0, 1], method="max")
    d[0], *w[0] = vl_nnconv(xs[0], *c1["weights"], d[1], pad=1)
    return xs, d, w, mask


# ------------------------------------------------------------------------------------------------
# Forward / backward against the blocks
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_backward_match_blocks_composed_by_hand(dtype):
    net, x = lenet(dtype), lenet_input(dtype)
    res = vl_simplenn(net, x, 1.0, rng=np.random.default_rng(7))
    xs, d, w, mask = by_hand(net, x, 7)
    assert len(res) == 8
    assert res[0]["x"] is x
    for i in range(8):
        assert np.array_equal(res[i]["x"], xs[i]), f"res[{i}]['x']"
        assert np.array_equal(res[i]["dzdx"], d[i]), f"res[{i}]['dzdx']"
        assert len(res[i]["dzdw"]) == len(w[i])
        for got, want in zip(res[i]["dzdw"], w[i]):
            assert np.array_equal(got, want)
    assert res[5]["aux"] is not None and np.array_equal(res[5]["aux"], mask)
    assert res[7]["x"].dtype == dtype and res[1]["x"].dtype == dtype
    for r in res[:-1]:
        assert r["time"] >= 0 and r["backward_time"] >= 0


def test_net_is_not_modified():
    net = lenet()
    before = [dict(layer) for layer in net["layers"]]
    vl_simplenn(net, lenet_input(), 1.0, conserve_memory=True)
    for layer, old in zip(net["layers"], before):  # no field added, none replaced
        assert set(layer) == set(old) and all(layer[key] is old[key] for key in old)


def test_res_records_have_matconvnet_fields():
    res = vl_simplenn(lenet(), lenet_input())
    assert all(set(r) == {"x", "dzdx", "dzdw", "aux", "stats", "time", "backward_time"} for r in res)
    assert all(r["dzdx"] is None and r["dzdw"] == [] for r in res)


def whole_net_loss(net, x, seed):
    return vl_simplenn(net, x, rng=np.random.default_rng(seed))[-1]["x"]


@pytest.mark.parametrize("mode", ["normal", "test"])
def test_whole_network_derivatives(mode):
    net, x = lenet(), lenet_input()
    # A fresh generator with the same seed draws the same dropout mask on every evaluation.
    res = vl_simplenn(net, x, 1.0, mode=mode, rng=np.random.default_rng(3))

    def loss_of_input(t):
        return vl_simplenn(net, t, mode=mode, rng=np.random.default_rng(3))[-1]["x"]

    # Random directions keep the check fast (each evaluation runs the whole network).
    testing.check_derivative(loss_of_input, x, 1.0, res[0]["dzdx"], method="central", rtol=1e-5,
                             projections=8)
    for i, layer in enumerate(net["layers"]):
        for j, weight in enumerate(layer.get("weights", [])):
            def loss_of_weight(value, i=i, j=j):
                changed = {"layers": [dict(l) for l in net["layers"]], "meta": net["meta"]}
                changed["layers"][i]["weights"] = list(changed["layers"][i]["weights"])
                changed["layers"][i]["weights"][j] = value
                return vl_simplenn(changed, x, mode=mode, rng=np.random.default_rng(3))[-1]["x"]

            testing.check_derivative(loss_of_weight, weight, 1.0, res[i]["dzdw"][j], method="central",
                                     rtol=1e-5, projections=min(weight.size, 8))


def test_dzdy_scales_all_derivatives():
    net, x = lenet(), lenet_input()
    one = vl_simplenn(net, x, 1.0, mode="test")
    three = vl_simplenn(net, x, 3.0, mode="test")
    np.testing.assert_allclose(three[0]["dzdx"], 3 * one[0]["dzdx"], rtol=1e-12)
    np.testing.assert_allclose(three[0]["dzdw"][0], 3 * one[0]["dzdw"][0], rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# mode='test', dropout
# ------------------------------------------------------------------------------------------------


def test_test_mode_makes_dropout_the_identity():
    net, x = lenet(), lenet_input()
    without = {"layers": [l for l in net["layers"] if l["type"] != "dropout"], "meta": {}}
    res = vl_simplenn(net, x, 1.0, mode="test")
    ref = vl_simplenn(without, x, 1.0)
    assert res[5]["x"] is res[4]["x"]
    assert res[5]["aux"] is None
    assert res[4]["dzdx"] is res[5]["dzdx"]
    assert res[-1]["x"] == ref[-1]["x"]
    assert np.array_equal(res[0]["dzdx"], ref[0]["dzdx"])


def test_normal_mode_dropout_applies_its_mask():
    net, x = lenet(), lenet_input()
    res = vl_simplenn(net, x, 1.0, mode="normal", rng=np.random.default_rng(11))
    mask = res[5]["aux"]
    assert set(np.unique(mask)) <= {0.0, 1 / 0.75} and np.any(mask == 0)
    assert np.array_equal(res[5]["x"], mask * res[4]["x"])
    assert np.array_equal(res[4]["dzdx"], mask * res[5]["dzdx"])
    # 'train' is accepted as the normal mode.
    again = vl_simplenn(net, x, mode="train", rng=np.random.default_rng(11))
    assert np.array_equal(again[5]["aux"], mask)


# ------------------------------------------------------------------------------------------------
# conserveMemory, precious, accumulate, backPropDepth, skipForward
# ------------------------------------------------------------------------------------------------


def kept(res, key):
    return [i for i, r in enumerate(res) if r[key] is not None]


def test_conserve_memory_forward_only_keeps_only_the_output():
    net, x = lenet(), lenet_input()
    res = vl_simplenn(net, x, conserve_memory=True, mode="test")
    assert kept(res, "x") == [7]
    full = vl_simplenn(net, x, mode="test")
    assert kept(full, "x") == list(range(8))
    assert res[7]["x"] == full[7]["x"]


def test_conserve_memory_backward_keeps_ends_and_every_dzdw():
    net, x = lenet(), lenet_input()
    res = vl_simplenn(net, x, 1.0, conserve_memory=True, mode="test")
    assert kept(res, "x") == [0, 7]
    assert kept(res, "dzdx") == [0, 7]
    assert [len(r["dzdw"]) for r in res] == [2, 0, 0, 1, 0, 2, 0, 0]
    full = vl_simplenn(net, x, 1.0, mode="test")
    assert kept(full, "x") == list(range(8)) and kept(full, "dzdx") == list(range(8))
    assert np.array_equal(res[0]["dzdx"], full[0]["dzdx"])
    for i in (0, 3, 5):
        for a, b in zip(res[i]["dzdw"], full[i]["dzdw"]):
            assert np.array_equal(a, b)


def short_circuit_net(leak, second_relu=False, before="conv"):
    rng = np.random.default_rng(3)
    first = ({"type": "conv", "name": "conv1", "weights": [randn(rng, 3, 3, 2, 4), randn(rng, 1, 4)], "pad": 1}
             if before == "conv" else
             {"type": "custom", "name": "same", "forward": lambda l, a, b: {**b, "x": a["x"] * 1.0},
              "backward": lambda l, a, b: {**a, "dzdx": b["dzdx"] * (b["x"] is not None)}})
    layers = [first, {"type": "relu", "name": "relu1", "leak": leak}]
    if second_relu:
        layers.append({"type": "relu", "name": "relu2", "leak": 0.0})
    layers += [{"type": "conv", "name": "conv2", "weights": [randn(rng, 8, 8, 2 if before != "conv" else 4, 3),
                                                            randn(rng, 1, 3)]},
               {"type": "softmaxloss", "name": "loss", "class": np.array([1.0])}]
    return {"layers": layers}


@pytest.mark.parametrize("leak, second_relu, before, freed", [
    (0.0, False, "conv", True),     # conv -> relu: relu's input is freed after forward
    (0.2, False, "conv", True),     # leaky, leak >= 0: the output still has the input's signs
    (0.0, True, "conv", True),      # relu -> relu: the second relu's input is the first's output
    (0.0, False, "custom", False),  # a layer that may read its own output keeps it
])
def test_conserve_memory_frees_relu_inputs_in_backward_calls(monkeypatch, leak, second_relu, before, freed):
    # MatConvNet's DagNN ReLU short circuit in SimpleNN: with conserveMemory and a backward pass,
    # a ReLU (leak >= 0) back-propagates from its output, so the value before it is freed right
    # after forward, unless the layer that made it may read it in its own backward. The results
    # are exactly those of a call that keeps everything.
    seen = []
    relu = LAYER_TYPES["relu"]
    backward = relu.backward

    def spy(layer, res_i, res_ip1, ctx):
        seen.append((layer["name"], res_i["x"] is None, res_ip1["x"] is None))
        return backward(layer, res_i, res_ip1, ctx)

    net = short_circuit_net(leak, second_relu, before)
    x = np.random.default_rng(4).standard_normal((8, 8, 2, 1))
    full = vl_simplenn(net, x, 1.0)
    monkeypatch.setattr(relu, "backward", spy)
    res = vl_simplenn(net, x, 1.0, conserve_memory=True)
    if second_relu:
        # relu2's input, relu1's output, is freed too: relu1 kept the signs of its input instead
        assert seen == [("relu2", True, False), ("relu1", freed, True)]
    else:
        assert seen[-1] == ("relu1", freed, False)
    np.testing.assert_array_equal(res[0]["dzdx"], full[0]["dzdx"])
    for r, f in zip(res, full):
        for a, b in zip(r["dzdw"], f["dzdw"]):
            np.testing.assert_array_equal(a, b)


def nin_block(dtype=np.float64, seed=7):
    """NIN's pattern: conv -> relu -> 1x1 conv -> relu -> max pool -> dropout -> conv -> softmaxloss."""
    rng = np.random.default_rng(seed)
    return {"layers": [
        {"type": "conv", "name": "conv1", "weights": [randn(rng, 3, 3, 2, 4, dtype=dtype),
                                                      randn(rng, 1, 4, dtype=dtype)], "pad": 1},
        {"type": "relu", "name": "relu1"},
        {"type": "conv", "name": "cccp1", "weights": [randn(rng, 1, 1, 4, 4, dtype=dtype),
                                                      randn(rng, 1, 4, dtype=dtype)]},
        {"type": "relu", "name": "relu2", "leak": 0.1},
        {"type": "pool", "name": "pool1", "pool": [3, 3], "stride": 2},
        {"type": "dropout", "name": "drop1", "rate": 0.5},
        {"type": "conv", "name": "conv2", "weights": [randn(rng, 3, 3, 4, 3, dtype=dtype),
                                                      randn(rng, 1, 3, dtype=dtype)]},
        {"type": "softmaxloss", "name": "loss", "class": LABELS},
    ]}


@pytest.fixture
def overwrites(monkeypatch):
    """Spy on the relu and dropout layers: (pass, layer name, ctx's permission, whether the result
    is the array it was given) for every call."""
    seen = []

    def spy(step, flag, given, result):
        def run(layer, res_i, res_ip1, ctx):
            before = given(res_i, res_ip1)
            out = step(layer, res_i, res_ip1, ctx)
            seen.append((flag[:4], layer["name"], ctx[flag], result(res_i, res_ip1) is before))
            return out
        return run

    for kind in ("relu", "dropout"):
        entry = LAYER_TYPES[kind]
        monkeypatch.setattr(entry, "forward", spy(entry.forward, "overwrite_input", lambda a, b: a["x"],
                                                  lambda a, b: b["x"]))
        monkeypatch.setattr(entry, "backward", spy(entry.backward, "overwrite_der_output",
                                                   lambda a, b: b["dzdx"], lambda a, b: a["dzdx"]))
    return seen


def assert_same_results(res, full):
    """res (conserving memory) has full's bits wherever it kept a value."""
    for r, f in zip(res, full):
        for key in ("x", "dzdx"):
            if r[key] is not None:
                assert np.asarray(r[key]).tobytes() == np.asarray(f[key]).tobytes()
        assert [a.tobytes() for a in r["dzdw"]] == [b.tobytes() for b in f["dzdw"]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conserve_memory_writes_results_over_the_arrays_it_frees(overwrites, dtype):
    # Conserving memory in a backward call, a ReLU writes its output over its input (freed by the
    # short circuit), dropout its output over its input (which its backward does not read), and
    # each its input derivative over its output derivative (freed after it): the same bits.
    net = nin_block(dtype)
    x = lenet_input(dtype)
    dzdy = np.ones((), dtype)
    full = vl_simplenn(net, x, dzdy, rng=np.random.default_rng(0))
    assert all(not allowed and not written for _, _, allowed, written in overwrites)
    overwrites.clear()
    x_before = x.copy()
    res = vl_simplenn(net, x, dzdy, conserve_memory=True, rng=np.random.default_rng(0))
    assert overwrites == [("over", "relu1", True, True), ("over", "relu2", True, True),
                          ("over", "drop1", True, True), ("over", "drop1", True, True),
                          ("over", "relu2", True, True), ("over", "relu1", True, True)]
    assert_same_results(res, full)
    assert x.tobytes() == x_before.tobytes()


def test_the_callers_arrays_are_never_written_over(overwrites):
    # x and dzdy belong to the caller: a first ReLU (whose input a forward-only call frees) and a
    # last one (given dzdy) compute new arrays.
    rng = np.random.default_rng(8)
    net = {"layers": [{"type": "relu", "name": "first"},
                      {"type": "conv", "name": "conv", "weights": [randn(rng, 1, 1, 2, 2), randn(rng, 1, 2)]},
                      {"type": "relu", "name": "last"}]}
    x, dzdy = lenet_input(), randn(rng, 8, 8, 2, 3)
    x_before, dzdy_before = x.copy(), dzdy.copy()
    forward = vl_simplenn(net, x, conserve_memory=True)
    both = vl_simplenn(net, x, dzdy, conserve_memory=True)
    assert [(name, allowed) for _, name, allowed, _ in overwrites] == [
        ("first", False), ("last", True), ("first", False), ("last", True), ("last", False), ("first", True)]
    assert x.tobytes() == x_before.tobytes() and dzdy.tobytes() == dzdy_before.tobytes()
    assert_same_results(forward, vl_simplenn(net, x))
    assert_same_results(both, vl_simplenn(net, x, dzdy))


@pytest.fixture
def stashing_type():
    """A layer type that passes its input on and keeps it (so declares no fresh results)."""
    stash = []

    def forward(layer, res_i, res_ip1, ctx):
        stash.append(res_i["x"])
        res_ip1["x"] = res_i["x"]

    def backward(layer, res_i, res_ip1, ctx):
        stash.append(res_ip1["dzdx"])
        res_i["dzdx"] = res_ip1["dzdx"]

    register_layer_type("stashing", forward, backward, backward_reads_output=False)
    yield stash
    del LAYER_TYPES["stashing"]


def test_results_of_layers_without_fresh_results_are_not_written_over(overwrites, stashing_type):
    rng = np.random.default_rng(9)
    conv = {"type": "conv", "name": "conv", "weights": [randn(rng, 1, 1, 2, 2), randn(rng, 1, 2)]}
    net = {"layers": [conv, {"type": "stashing", "name": "stash"}, {"type": "relu", "name": "relu"}, dict(conv)]}
    x, dzdy = lenet_input(), randn(rng, 8, 8, 2, 3)
    res = vl_simplenn(net, x, dzdy, conserve_memory=True)
    assert [(name, allowed) for _, name, allowed, _ in overwrites] == [("relu", False), ("relu", True)]
    full = vl_simplenn(net, x, dzdy)
    assert stashing_type[0].tobytes() == full[1]["x"].tobytes()  # the conv output it kept
    assert stashing_type[1].tobytes() == full[2]["dzdx"].tobytes()  # the relu derivative it kept
    assert_same_results(res, full)
    assert not LAYER_TYPES["stashing"].fresh_results
    assert all(LAYER_TYPES[kind].fresh_results for kind in ("conv", "pool", "relu", "dropout"))


def test_test_mode_dropout_passes_on_what_it_may_overwrite(overwrites):
    # In test mode dropout passes its input on as its output: that array, freed as its input, is
    # still only res's, so the ReLU after it writes over it; values as without conserving memory.
    rng = np.random.default_rng(10)
    net = {"layers": [{"type": "conv", "name": "conv", "weights": [randn(rng, 1, 1, 2, 2), randn(rng, 1, 2)]},
                      {"type": "dropout", "name": "drop"}, {"type": "relu", "name": "relu"}]}
    x = lenet_input()
    res = vl_simplenn(net, x, conserve_memory=True, mode="test")
    assert overwrites == [("over", "drop", True, True), ("over", "relu", True, True)]
    assert_same_results(res, vl_simplenn(net, x, mode="test"))


def test_conserve_memory_frees_dropout_inputs_and_masks(monkeypatch):
    # Dropout's backward reads only its mask: conserving memory in a backward call, its input is
    # freed after forward (the pooling before it does not read its output), and each mask after
    # its layer's backward.
    seen = []
    conv = LAYER_TYPES["conv"]
    forward = conv.forward

    def spy(layer, res_i, res_ip1, ctx):
        seen.append((layer["name"], res_i["x"] is None))
        return forward(layer, res_i, res_ip1, ctx)

    monkeypatch.setattr(conv, "forward", spy)
    net, x = nin_block(), lenet_input()
    res = vl_simplenn(net, x, 1.0, conserve_memory=True)
    assert seen[-1] == ("conv2", False)
    assert [r["aux"] is None for r in res] == [True] * len(res)
    kept_all = vl_simplenn(net, x, 1.0)
    assert kept_all[6]["aux"] is not None and kept_all[5]["x"] is not None


def test_max_pooling_keeps_its_winners_for_backward(monkeypatch):
    # A backward call keeps max pooling's winners in aux and routes dzdx to them: conserving
    # memory, the pooling's input (conv1's output, which conv1's backward does not read) is then
    # freed after forward. A forward-only call finds no winners.
    from cnnx.pool import PoolWinners

    seen = []
    relu = LAYER_TYPES["relu"]
    forward = relu.forward

    def spy(layer, res_i, res_ip1, ctx):
        seen.append(res[1]["x"] is None)
        return forward(layer, res_i, res_ip1, ctx)

    net, x = lenet(), lenet_input()
    res = vl_simplenn(net, x)
    assert res[2]["aux"] is None
    res = vl_simplenn(net, x, 1.0, rng=np.random.default_rng(3))
    winners = res[2]["aux"]
    assert isinstance(winners, PoolWinners) and winners.input_shape == res[1]["x"].shape
    np.testing.assert_array_equal(winners.index, vl_nnpool(res[1]["x"], 3, stride=2, pad=[0, 1, 0, 1], winners=True)[1].index)
    monkeypatch.setattr(relu, "forward", spy)  # reads res[1] of the call below, which fills res
    conserved = vl_simplenn(net, x, 1.0, res, conserve_memory=True, rng=np.random.default_rng(3))
    assert seen == [True]
    kept = vl_simplenn(net, x, 1.0, rng=np.random.default_rng(3))
    assert conserved[0]["dzdx"].tobytes() == kept[0]["dzdx"].tobytes()


def test_relu_before_pooling_keeps_only_its_signs(monkeypatch):
    # conv -> relu -> avg pool -> conv -> relu -> max pool: the poolings keep what their backward
    # needs (the input's shape, the winners), so conserving memory frees their inputs, the ReLUs'
    # outputs, after forward; the ReLUs keep their inputs' signs instead. Same bits as keeping all.
    rng = np.random.default_rng(21)
    net = {"layers": [
        {"type": "conv", "name": "c1", "weights": [randn(rng, 3, 3, 2, 4), randn(rng, 1, 4)], "pad": 1},
        {"type": "relu", "name": "r1"},
        {"type": "pool", "name": "p1", "pool": [2, 2], "stride": 2, "method": "avg"},
        {"type": "conv", "name": "c2", "weights": [randn(rng, 3, 3, 4, 4), randn(rng, 1, 4)], "pad": 1},
        {"type": "relu", "name": "r2", "leak": 0.1},
        {"type": "pool", "name": "p2", "pool": [3, 3], "stride": 2, "pad": [0, 1, 0, 1], "method": "max"},
        {"type": "conv", "name": "c3", "weights": [randn(rng, 2, 2, 4, 3), randn(rng, 1, 3)]},
        {"type": "softmaxloss", "name": "loss", "class": np.array([1.0, 3.0])},
    ]}
    x = randn(rng, 8, 8, 2, 2)
    full = vl_simplenn(net, x, 1.0)
    assert all(full[i]["x"] is not None for i in range(len(full)))
    assert full[2]["aux"] is None and full[5]["aux"] is None  # nothing freed, no signs kept
    seen = []
    pool = LAYER_TYPES["pool"]
    backward = pool.backward

    def spy(layer, res_i, res_ip1, ctx):
        seen.append((layer["name"], res_i["x"] is None, type(res_ip1["aux"]).__name__,
                     type(res_i["aux"]).__name__))
        return backward(layer, res_i, res_ip1, ctx)

    monkeypatch.setattr(pool, "backward", spy)
    res = vl_simplenn(net, x, 1.0, conserve_memory=True)
    assert seen == [("p2", True, "PoolWinners", "ndarray"), ("p1", True, "tuple", "ndarray")]
    assert res[0]["dzdx"].tobytes() == full[0]["dzdx"].tobytes()
    for r, f in zip(res, full):
        for a, b in zip(r["dzdw"], f["dzdw"]):
            assert a.tobytes() == b.tobytes()


def test_conserve_memory_backward_peak_is_about_two_activations():
    # conv (1 -> 16 channels) -> relu -> conv (16 -> 1): conserving memory in a backward call,
    # the ReLU writes its output over the conv output and its derivative over the second conv's
    # input derivative, so no step holds more than two 16-channel activations (three without
    # writing over: the ReLU's output, the derivative it gets and the one it computes).
    rng = np.random.default_rng(6)
    net = {"layers": [{"type": "conv", "weights": [randn(rng, 1, 1, 1, 16), randn(rng, 1, 16)]},
                      {"type": "relu"},
                      {"type": "conv", "weights": [randn(rng, 1, 1, 16, 1), randn(rng, 1, 1)]}]}
    x = randn(rng, 64, 64, 1, 4)
    dzdy = randn(rng, 64, 64, 1, 4)
    activation = 16 * x.nbytes  # 2 MiB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        res = vl_simplenn(net, x, dzdy, conserve_memory=True, input_derivative=False)
        _, top = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert top < 2.3 * activation, top / activation
    assert_same_results(res, vl_simplenn(net, x, dzdy, input_derivative=False))


def test_precious_layer_keeps_its_output():
    net, x = lenet(), lenet_input()
    net["layers"][2]["precious"] = True  # relu1: its output is res[3]
    forward = vl_simplenn(net, x, conserve_memory=True, mode="test")
    assert kept(forward, "x") == [3, 7]
    both = vl_simplenn(net, x, 1.0, conserve_memory=True, mode="test")
    assert kept(both, "x") == [0, 3, 7]
    assert kept(both, "dzdx") == [0, 3, 7]


def test_loss_output_is_kept_when_not_last():
    identity = {"type": "custom", "forward": lambda l, a, b: {**b, "x": a["x"]},
                "backward": lambda l, a, b: {**a, "dzdx": b["dzdx"]}}
    net = lenet()
    net["layers"].append(identity)
    res = vl_simplenn(net, lenet_input(), conserve_memory=True, mode="test")
    assert kept(res, "x") == [7, 8]


@pytest.mark.parametrize("accumulate_form", [("Accumulate", True), ("accumulate", 1)])
def test_accumulate_adds_parameter_derivatives(accumulate_form):
    net, x = lenet(), lenet_input()
    first = vl_simplenn(net, x, 1.0, mode="test")
    single = [list(r["dzdw"]) for r in first]
    res = vl_simplenn(net, 2 * x, 1.0, first, *accumulate_form, mode="test")
    second = vl_simplenn(net, 2 * x, 1.0, mode="test")
    assert res is first
    for i in (0, 3, 5):
        for j in range(len(single[i])):
            np.testing.assert_allclose(res[i]["dzdw"][j], single[i][j] + second[i]["dzdw"][j], rtol=1e-12)
    # Without accumulate the derivatives are overwritten.
    again = vl_simplenn(net, 2 * x, 1.0, res, mode="test")
    assert np.array_equal(again[0]["dzdw"][0], second[0]["dzdw"][0])


@pytest.mark.parametrize("depth", [1, 2, 3, 6, 7, 100])
@pytest.mark.parametrize("conserve", [False, True])
def test_back_prop_depth_limits_backward(depth, conserve):
    net, x = lenet(), lenet_input()
    n = 7
    first = max(n - depth, 0)  # first back-propagated layer
    res = vl_simplenn(net, x, 1.0, back_prop_depth=depth, conserve_memory=conserve, mode="test")
    full = vl_simplenn(net, x, 1.0, mode="test")
    for i in range(n):
        if i >= first:
            assert len(res[i]["dzdw"]) == len(full[i]["dzdw"])
        else:
            assert res[i]["dzdw"] == []
    got_dzdx = kept(res, "dzdx")
    if not conserve:
        assert got_dzdx == list(range(first, n + 1))
        assert np.array_equal(res[first]["dzdx"], full[first]["dzdx"])
    else:
        assert got_dzdx == ([0, n] if first == 0 else [n])
        assert kept(res, "x") == ([0, n] if first == 0 else [n])
    for i in range(first, n):
        for a, b in zip(res[i]["dzdw"], full[i]["dzdw"]):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("bad", [0, -1, 1.5, math.nan])
def test_back_prop_depth_must_be_positive_integer(bad):
    with pytest.raises(ValueError, match="BackPropDepth"):
        vl_simplenn(lenet(), lenet_input(), 1.0, "backPropDepth", bad)


def test_back_prop_depth_inf_is_default():
    net, x = lenet(), lenet_input()
    res = vl_simplenn(net, x, 1.0, back_prop_depth=math.inf, mode="test")
    assert res[0]["dzdx"] is not None


def test_skip_forward_reuses_res():
    net, x = lenet(), lenet_input()
    res = vl_simplenn(net, x, mode="test")
    outputs = [r["x"] for r in res]
    back = vl_simplenn(net, np.zeros_like(x), 1.0, res, skip_forward=True, mode="test")
    full = vl_simplenn(net, x, 1.0, mode="test")
    assert back[0]["x"] is x and all(r["x"] is o for r, o in zip(back, outputs))
    assert np.array_equal(back[0]["dzdx"], full[0]["dzdx"])
    assert np.array_equal(back[5]["dzdw"][0], full[5]["dzdw"][0])


def test_skip_forward_errors():
    net, x = lenet(), lenet_input()
    res = vl_simplenn(net, x)
    with pytest.raises(ValueError, match="SkipForward needs a backward pass"):
        vl_simplenn(net, x, None, res, "skipForward", True)
    with pytest.raises(ValueError, match="SkipForward needs the res"):
        vl_simplenn(net, x, 1.0, skip_forward=True)
    with pytest.raises(ValueError, match="SkipForward needs the res"):
        vl_simplenn(net, x, 1.0, [], skip_forward=True)


def test_relu_backward_uses_output_when_input_was_freed():
    net = {"layers": [{"type": "relu"}, {"type": "relu", "leak": 0.2}]}
    x = randn(np.random.default_rng(2), 4, 3, 2, 2)
    res = vl_simplenn(net, x)
    res[1]["x"] = None
    dzdy = randn(np.random.default_rng(3), 4, 3, 2, 2)
    back = vl_simplenn(net, x, dzdy, res, skip_forward=True)
    assert np.array_equal(back[1]["dzdx"], vl_nnrelu(res[2]["x"], dzdy, leak=0.2))
    assert np.array_equal(back[0]["dzdx"], vl_nnrelu(x, back[1]["dzdx"]))


def test_empty_dzdy_means_forward_only():
    for dzdy in (None, [], np.zeros((0, 0))):
        res = vl_simplenn(lenet(), lenet_input(), dzdy, mode="test")
        assert all(r["dzdx"] is None for r in res)


# ------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------


def test_name_value_options_are_case_insensitive():
    net, x = lenet(), lenet_input()
    a = vl_simplenn(net, x, 1.0, None, "CONSERVEMEMORY", True, "Mode", "TEST", "cudnn", False, "sync", True)
    b = vl_simplenn(net, x, 1.0, conserve_memory=True, mode="test")
    assert kept(a, "x") == kept(b, "x") == [0, 7]
    assert np.array_equal(a[0]["dzdx"], b[0]["dzdx"])
    c = vl_simplenn(net, x, "mode", "test", "conserveMemory", True)
    assert kept(c, "x") == [7]


def test_option_errors():
    net, x = lenet(), lenet_input()
    with pytest.raises(TypeError, match="unknown option 'bogus'"):
        vl_simplenn(net, x, 1.0, None, "bogus", 1)
    with pytest.raises(ValueError, match="Mode"):
        vl_simplenn(net, x, mode="eval")
    with pytest.raises(TypeError, match="ConserveMemory"):
        vl_simplenn(net, x, conserve_memory="yes")
    with pytest.raises(TypeError, match="dzdy is given both"):
        vl_simplenn(net, x, 1.0, dzdy=1.0)
    with pytest.raises(ValueError, match="res must be a list of 8 dicts"):
        vl_simplenn(net, x, 1.0, [{}] * 3)
    with pytest.raises(TypeError, match="Rng"):
        vl_simplenn(net, x, rng="seed")



@pytest.mark.parametrize("name, display", [("conserve_memory", "ConserveMemory"), ("accumulate", "Accumulate"),
                                           ("skip_forward", "SkipForward"), ("cudnn", "CuDNN"), ("sync", "Sync"),
                                           ("input_derivative", "InputDerivative")])
def test_switches_follow_the_options_rules(name, display):
    # One validator (cnnx._options) for every true/false option: 2 is a value out of range, "yes" a wrong type.
    net, x = lenet(), lenet_input()
    with pytest.raises(ValueError, match=re.escape(f"vl_simplenn: {display} must be true or false (or 1 or 0), got 2")):
        vl_simplenn(net, x, **{name: 2})
    with pytest.raises(TypeError, match=re.escape(f"vl_simplenn: {display} must be true or false, got 'yes'")):
        vl_simplenn(net, x, 1.0, None, display, "yes")

def test_softmaxloss_without_labels_is_an_error():
    net = lenet()
    del net["layers"][-1]["class"]
    with pytest.raises(ValueError, match=r"vl_simplenn: layers\[6\] \('loss'\): softmaxloss needs the labels"):
        vl_simplenn(net, lenet_input(), mode="test")


# ------------------------------------------------------------------------------------------------
# Custom layers and the registry
# ------------------------------------------------------------------------------------------------


def scale_forward(layer, res_i, res_ip1):
    res_ip1 = dict(res_ip1)
    res_ip1["x"] = layer["scale"] * res_i["x"]
    return res_ip1


def scale_backward(layer, res_i, res_ip1):
    res_i["dzdx"] = layer["scale"] * res_ip1["dzdx"]  # in place, returning None also works


def test_custom_layer_uses_matconvnet_signature():
    rng = np.random.default_rng(4)
    f, b = randn(rng, 3, 3, 2, 2), randn(rng, 1, 2)
    custom = {"type": "custom", "scale": 3.0, "forward": scale_forward, "backward": scale_backward}
    net = {"layers": [{"type": "conv", "weights": [f, b]}, custom, {"type": "relu"}]}
    x = randn(rng, 5, 5, 2, 2)
    dzdy = randn(rng, 3, 3, 2, 2)
    res = vl_simplenn(net, x, dzdy)
    y1 = vl_nnconv(x, f, b)
    assert np.array_equal(res[2]["x"], 3.0 * y1)
    assert np.array_equal(res[3]["x"], vl_nnrelu(3.0 * y1))
    d2 = vl_nnrelu(3.0 * y1, dzdy)
    assert np.array_equal(res[1]["dzdx"], 3.0 * d2)
    dx, df, db = vl_nnconv(x, f, b, 3.0 * d2)
    assert np.array_equal(res[0]["dzdx"], dx) and np.array_equal(res[0]["dzdw"][0], df)
    assert res[1]["dzdw"] == []


def test_custom_layer_must_return_a_dict_or_none():
    net = {"layers": [{"type": "custom", "forward": lambda l, a, b: 5, "backward": scale_backward}]}
    with pytest.raises(TypeError, match=r"layers\[0\] \('layer1'\): a custom layer function must return a res dict"):
        vl_simplenn(net, np.ones((2, 2)))


@pytest.fixture
def doubling_type():
    def forward(layer, res_i, res_ip1, ctx):
        res_ip1["x"] = 2 * layer["weights"][0] * res_i["x"]

    def backward(layer, res_i, res_ip1, ctx):
        res_i["dzdx"] = 2 * layer["weights"][0] * res_ip1["dzdx"]
        return [np.sum(2 * res_i["x"] * res_ip1["dzdx"]).reshape(1, 1)]

    entry = register_layer_type("doubling", forward, backward, defaults={"factor": 2.0},
                                abbreviation="dbl")
    yield entry
    del LAYER_TYPES["doubling"]


def test_register_layer_type_is_one_call(doubling_type):
    a = np.array([[1.5]])
    net = {"layers": [{"type": "doubling", "weights": [a]}, {"type": "relu"}]}
    x = randn(np.random.default_rng(5), 3, 3, 1, 1)
    res = vl_simplenn(net, x, np.ones((3, 3, 1, 1)))
    assert np.array_equal(res[1]["x"], 3.0 * x)
    assert vl_simplenn_tidy(net)["layers"][0]["factor"] == 2.0
    testing.check_derivative(lambda t: vl_simplenn({"layers": [{"type": "doubling", "weights": [t]},
                                                               {"type": "relu"}]}, x)[-1]["x"],
                             a, np.ones((3, 3, 1, 1)), res[0]["dzdw"][0], method="central")
    info = vl_simplenn_display(net, input_size=[3, 3, 1])
    assert info["table"][1][2] == "dbl"
    with pytest.raises(ValueError, match="already registered"):
        register_layer_type("doubling", doubling_type.forward, doubling_type.backward)
    assert register_layer_type("doubling", doubling_type.forward, doubling_type.backward,
                               replace=True).name == "doubling"


def test_register_layer_type_checks_arguments():
    with pytest.raises(TypeError, match="forward must be callable"):
        register_layer_type("broken", None, lambda *a: None)
    with pytest.raises(TypeError, match="name"):
        register_layer_type("", lambda *a: None, lambda *a: None)
    assert "broken" not in LAYER_TYPES


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------


def test_conserve_memory_peak_is_about_two_activations():
    rng = np.random.default_rng(6)
    channels = 8
    layers = []
    for k in range(10):
        if k % 2 == 0:
            layers.append({"type": "conv", "weights": [randn(rng, 1, 1, channels, channels) * 0.3,
                                                       randn(rng, 1, channels)]})
        else:
            layers.append({"type": "relu"})
    net = {"layers": layers}
    x = randn(rng, 64, 64, channels, 4)  # 1 MiB per activation
    activation = x.nbytes

    def peak(conserve):
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            res = vl_simplenn(net, x, conserve_memory=conserve)
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return top, res

    top, res = peak(True)
    # The input belongs to the caller; a layer holds its input and output (+ small temporaries).
    assert top < 2.5 * activation, top / activation
    assert kept(res, "x") == [10]
    top_all, res_all = peak(False)
    assert top_all > 9.5 * activation, top_all / activation
    assert np.array_equal(res[10]["x"], res_all[10]["x"])


# ------------------------------------------------------------------------------------------------
# vl_simplenn_tidy
# ------------------------------------------------------------------------------------------------


def test_tidy_fills_matconvnet_defaults():
    f = np.zeros((3, 3, 2, 4), np.float32)
    net = {"layers": [{"type": "conv", "weights": [f, np.zeros((1, 4), np.float32)]},
                      {"type": "pool", "pool": 2}, {"type": "relu"}, {"type": "dropout"},
                      {"type": "softmaxloss", "name": "loss"}]}
    tidy = vl_simplenn_tidy(net)
    conv, pool, relu, drop, loss = tidy["layers"]
    assert conv["pad"] == 0 and conv["stride"] == 1 and conv["dilate"] == 1 and conv["opts"] == []
    assert pool["pad"] == 0 and pool["stride"] == 1 and pool["method"] == "max" and pool["opts"] == []
    assert relu["leak"] == 0 and drop["rate"] == 0.5 and relu["weights"] == []
    assert [l["name"] for l in tidy["layers"]] == ["layer1", "layer2", "layer3", "layer4", "loss"]
    assert all(l["precious"] is False for l in tidy["layers"])
    assert tidy["meta"] == {}
    assert conv["weights"][0] is f  # arrays are shared
    assert "pad" not in net["layers"][0] and "name" not in net["layers"][0]  # input untouched
    assert vl_simplenn_tidy(tidy)["layers"] == tidy["layers"]


def test_tidy_keeps_given_fields():
    net = {"layers": [{"type": "relu", "leak": 0.3, "name": "r", "precious": True, "learningRate": [1]}],
           "meta": {"inputSize": [4, 4, 1]}}
    layer = vl_simplenn_tidy(net)["layers"][0]
    assert layer == {"type": "relu", "leak": 0.3, "name": "r", "precious": True, "learningRate": [1],
                     "weights": []}


def test_tidy_converts_legacy_layout():
    f, b = np.ones((3, 3, 1, 2)), np.zeros((1, 2))
    net = {"layers": [{"type": "conv", "filters": f, "biases": b}],
           "classes": {"name": ["a", "b"]},
           "normalization": {"imageSize": [32, 32, 3], "border": [8, 8]}}
    tidy = vl_simplenn_tidy(net)
    layer = tidy["layers"][0]
    assert "filters" not in layer and "biases" not in layer
    assert layer["weights"][0] is f and layer["weights"][1] is b
    assert tidy["meta"]["classes"] == {"name": ["a", "b"]}
    np.testing.assert_allclose(tidy["meta"]["normalization"]["cropSize"], [32 / 40, 32 / 40])
    assert set(tidy) == {"layers", "meta"}


F4 = np.zeros((3, 3, 2, 4))
B4 = np.zeros((1, 4))


@pytest.mark.parametrize("layer, error, message", [
    ({"type": "mystery", "name": "norm1"}, ValueError, r"layers\[1\] \('norm1'\): unknown layer type 'mystery'"),
    ({"name": "x"}, ValueError, r"layers\[1\] \('x'\): missing or non-string 'type'"),
    ({"type": "conv", "name": "c"}, ValueError, r"layers\[1\] \('c'\): 'weights' must hold 2 arrays"),
    ({"type": "conv", "weights": [F4]}, ValueError, r"layers\[1\]: 'weights' must hold 2 arrays \[F, B\]"),
    ({"type": "conv", "name": "c", "weights": [F4, np.zeros((1, 3))]}, ValueError,
     r"layers\[1\] \('c'\): the biases weights\[1\] must have one element per filter \(4\)"),
    ({"type": "conv", "weights": [np.zeros((3, 3, 2, 4, 1)), B4]}, ValueError, "2 to 4 dimensions"),
    ({"type": "conv", "weights": [F4.astype(np.int64), B4]}, TypeError, "float32 or float64"),
    ({"type": "conv", "weights": [F4, B4.astype(np.float32)]}, TypeError, "biases are float32"),
    ({"type": "pool", "name": "p"}, ValueError, r"layers\[1\] \('p'\): missing field 'pool'"),
    ({"type": "prelu"}, ValueError, r"'weights' must hold 1 arrays"),
    ({"type": "prelu", "weights": [[0.1]]}, TypeError, "slopes weights\\[0\\] must be a float32"),
    ({"type": "dropout", "rate": 1.0}, ValueError, r"Rate must be in \[0, 1\), got 1.0"),
    ({"type": "custom", "forward": scale_forward}, ValueError, "missing field 'backward'"),
    ({"type": "custom", "forward": 3, "backward": scale_backward}, TypeError, "'forward' must be callable"),
    ({"type": "relu", "name": 5}, TypeError, "'name' must be a string"),
])
def test_tidy_errors_name_the_layer(layer, error, message):
    net = {"layers": [{"type": "relu"}, layer]}
    with pytest.raises(error, match=message) as info:
        vl_simplenn_tidy(net)
    assert str(info.value).startswith("vl_simplenn_tidy: layers[1]")
    # vl_simplenn runs the same structural checks.
    with pytest.raises(error, match=message) as info:
        vl_simplenn(net, np.ones((4, 4, 2)))
    assert str(info.value).startswith("vl_simplenn: layers[1]")


@pytest.mark.parametrize("layer, error, message", [
    ({"type": "conv", "weights": [F4, B4], "pad": -1}, ValueError, "Pad must be non-negative"),
    ({"type": "conv", "weights": [F4, B4], "stride": [1, 2, 3]}, ValueError, "Stride must have 1 or 2"),
    ({"type": "pool", "pool": 2, "method": "median"}, ValueError, "Method must be one of"),
    ({"type": "pool", "pool": 0}, ValueError, "Pool must be at least 1"),
    ({"type": "relu", "leak": "big"}, TypeError, "Leak must be a real number"),
])
def test_option_errors_name_the_layer(layer, error, message):
    net = {"layers": [{"type": "relu"}, dict(layer, name="bad")]}
    with pytest.raises(error, match=message) as info:
        vl_simplenn_tidy(net)
    assert str(info.value).startswith("vl_simplenn_tidy: layers[1] ('bad'): ")
    # vl_simplenn leaves option checks to the blocks and names the layer in their errors.
    with pytest.raises(error) as info:
        vl_simplenn(net, np.ones((4, 4, 2)))
    assert str(info.value).startswith("vl_simplenn: layers[1] ('bad'): vl_nn")


def test_tidy_rejects_non_networks():
    with pytest.raises(TypeError, match="net must be a dict with a 'layers' list"):
        vl_simplenn_tidy([{"type": "relu"}])
    with pytest.raises(TypeError, match="must be a list of layer dicts"):
        vl_simplenn_tidy({"layers": {"type": "relu"}})
    with pytest.raises(TypeError, match=r"layers\[0\] must be a dict"):
        vl_simplenn_tidy({"layers": ["relu"]})


def test_conv_layer_without_filters_or_biases():
    rng = np.random.default_rng(8)
    x = randn(rng, 5, 5, 3, 2)
    b = randn(rng, 1, 3)
    net = {"layers": [{"type": "conv", "weights": [None, b], "stride": 2, "pad": 1},
                      {"type": "conv", "weights": [randn(rng, 2, 2, 3, 4), np.zeros((0, 0))]}]}
    res = vl_simplenn(net, x, np.ones((3, 3, 4, 2)))
    y = vl_nnconv(x, None, b, stride=2, pad=1)
    assert np.array_equal(res[1]["x"], y)
    assert np.array_equal(res[2]["x"], vl_nnconv(y, net["layers"][1]["weights"][0], None))
    assert res[0]["dzdw"][0] is None and res[1]["dzdw"][1] is None



@pytest.mark.parametrize("filters", [np.zeros((3, 3, 0, 4)), np.zeros((3, 0)), np.zeros((0, 3, 3, 4))])
def test_conv_filters_with_a_zero_dimension_are_not_the_identity(filters):
    # Only None, [] or a 0 x 0 array mean "no filters" (as for vl_nnconv); not any zero-size bank.
    x = np.ones((4, 4, 3, 1))
    net = {"layers": [{"type": "conv", "name": "conv7", "weights": [filters, []]}]}
    with pytest.raises(ValueError, match=re.escape(
            f"vl_simplenn: layers[0] ('conv7'): vl_nnconv: F has shape {filters.shape}; FH, FW, FC and K "
            "must be at least 1 (None or [] is the identity filter bank)")):
        vl_simplenn(net, x)

def test_gpu_flags_in_layer_opts_are_ignored():
    rng = np.random.default_rng(9)
    f, b = randn(rng, 3, 3, 2, 2), randn(rng, 1, 2)
    x = randn(rng, 6, 6, 2, 1)
    net = {"layers": [{"type": "conv", "weights": [f, b], "opts": ["CuDNN", "cudnnworkspacelimit", 1e9]},
                      {"type": "pool", "pool": 2, "opts": ["NoCuDNN"]}]}
    res = vl_simplenn(net, x)
    assert np.array_equal(res[2]["x"], vl_nnpool(vl_nnconv(x, f, b), 2))


# ------------------------------------------------------------------------------------------------
# vl_simplenn_display
# ------------------------------------------------------------------------------------------------


def test_display_table_contents(capsys):
    info = vl_simplenn_display(lenet(), batch_size=3)
    printed = capsys.readouterr().out
    assert printed == info["text"]
    rows = {row[0]: row[1:] for row in info["table"]}
    assert rows["layer"] == ["0", "1", "2", "3", "4", "5", "6", "7"]
    assert rows["type"] == ["input", "conv", "mpool", "relu", "prelu", "dropout", "conv", "softmxl"]
    assert rows["name"] == ["n/a", "conv1", "pool1", "relu1", "prelu1", "drop1", "conv2", "loss"]
    assert rows["support"] == ["n/a", "3", "3", "1", "1", "1", "4", "1"]
    assert rows["filt dim"] == ["n/a", "2", "n/a", "n/a", "n/a", "n/a", "4", "n/a"]
    assert rows["num filts"] == ["n/a", "4", "n/a", "n/a", "n/a", "n/a", "3", "n/a"]
    assert rows["filt dilat"] == ["n/a", "1", "n/a", "n/a", "n/a", "n/a", "1", "n/a"]
    assert rows["stride"] == ["n/a", "1", "2", "1", "1", "1", "1", "1"]
    assert rows["pad"] == ["n/a", "1", "0x1x0x1", "0", "0", "0", "0", "0"]
    # rf size = 1 + sum(cumprod(stride) * (support - 1)): 3, 3+2, 5, ..., 5+2*3
    assert rows["rf size"] == ["n/a", "3", "5", "5", "5", "5", "11", "11"]
    # rf offset = 1 + sum(cumprod(stride) * ((support - 1)/2 - pad_top))
    assert rows["rf offset"] == ["n/a", "1", "2", "2", "2", "2", "5", "5"]
    assert rows["rf stride"] == ["n/a", "1", "2", "2", "2", "2", "2", "2"]
    # 8 -> conv pad 1: 8 -> pool 3 s2 pad [0 1]: floor((8+1-3)/2)+1 = 4 -> conv 4: 1
    assert rows["data size"] == ["8", "8", "4", "4", "4", "4", "1", "1"]
    assert rows["data depth"] == ["2", "4", "4", "4", "4", "4", "3", "1"]
    assert rows["data num"] == ["3", "3", "3", "3", "3", "3", "3", "1"]
    assert rows["data mem"] == ["2KB", "3KB", "768B", "768B", "768B", "768B", "36B", "4B"]
    assert rows["param mem"] == ["n/a", "304B", "0B", "0B", "16B", "0B", "780B", "0B"]
    assert info["parameterMemory"] == 4 * (72 + 4 + 4 + 192 + 3)
    assert "parameter memory|1KB (2.8e+02 parameters)|" in printed
    assert "data memory|" in printed and "(for batch size 3)|" in printed
    assert info["dataSize"].shape == (4, 8) and info["support"].shape == (2, 7)
    assert info["pad"].shape == (4, 7) and info["receptiveFieldSize"].shape == (2, 7)
    lines = printed.splitlines()
    assert lines[0].split("|")[:3] == ["     layer", "    0", "    1"]  # right-aligned to the widest cell
    assert set(lines[3]) == {"-", "|"}


def test_display_sizes_options_and_splitting(capsys):
    net = lenet()
    net["meta"] = {}
    info = vl_simplenn_display(net)
    assert np.isnan(info["dataSize"][:3, 0]).all() and info["dataSize"][3, 0] == 1
    assert info["table"][15][1] == "NaN"  # data size
    info = vl_simplenn_display(net, "InputSize", [16, 12, 2, 5], "maxNumColumns", 3)
    np.testing.assert_array_equal(info["dataSize"][:, 1], [16, 12, 4, 5])
    np.testing.assert_array_equal(info["dataSize"][:, 2], [8, 6, 4, 5])
    assert {row[0]: row for row in info["table"]}["data size"][2] == "16x12"
    tables = info["text"].strip("\n").split("\n\n")
    assert len(tables) == 4  # 8 columns in groups of 3, then the totals
    assert tables[0].splitlines()[0].count("|") == 4
    net["meta"] = {"normalization": {"imageSize": [10, 10, 2]}}
    assert vl_simplenn_display(net)["dataSize"][0, 0] == 10
    capsys.readouterr()


def test_display_custom_layer_sizes(capsys):
    custom = {"type": "custom", "forward": scale_forward, "backward": scale_backward}
    sized = dict(custom, getForwardSize=lambda layer, size: [size[0] * 2, size[1] * 2, 7, size[3]])
    info = vl_simplenn_display({"layers": [custom, sized]}, input_size=[4, 4, 3, 2])
    assert np.isnan(info["dataSize"][2, 1])
    np.testing.assert_array_equal(info["dataSize"][:, 2], [8, 8, 7, 2])
    capsys.readouterr()


def test_display_sizes_come_from_the_one_window_formula(capsys):
    # cnnx._shapes.window_output_size, as vl_nnconv: no window fits -> 0 (not a negative size).
    net = {"layers": [{"type": "conv", "weights": [np.ones((5, 5, 3, 2)), np.zeros(2)], "stride": 2},
                      {"type": "pool", "pool": [3, 2], "pad": [0, 1, 0, 1]}]}
    info = vl_simplenn_display(net, input_size=[2, 9, 3, 1])
    np.testing.assert_array_equal(info["dataSize"][:, 1], [0, 3, 2, 1])
    info = vl_simplenn_display(net, input_size=[9, 12, 3, 1])
    np.testing.assert_array_equal(info["dataSize"][:, 1:], [[3, 2], [4, 4], [2, 2], [1, 1]])
    capsys.readouterr()


@pytest.mark.parametrize("form", ["keyword", "pairs"])
def test_input_derivative_false_skips_only_the_input_derivative(form):
    net, x = lenet(), lenet_input()
    full = vl_simplenn(net, x, 1.0, rng=np.random.default_rng(5))
    options = {"input_derivative": False} if form == "keyword" else {}
    pairs = ("InputDerivative", False) if form == "pairs" else ()
    lean = vl_simplenn(net, x, 1.0, None, *pairs, rng=np.random.default_rng(5), **options)
    assert full[0]["dzdx"] is not None and lean[0]["dzdx"] is None
    for a, b in zip(full[1:], lean[1:]):
        np.testing.assert_array_equal(a["dzdx"], b["dzdx"])
    for a, b in zip(full, lean):
        for wa, wb in zip(a["dzdw"] or [], b["dzdw"] or []):
            np.testing.assert_array_equal(wa, wb)

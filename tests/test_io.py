"""MatConvNet .mat model files: MATLAB-layout files load and evaluate like the same net built in
Python, SimpleNN save/load round trips are exact, extras come back, and bad files fail clearly."""
import os
import re
import stat
import sys
import types

import numpy as np
import pytest
import scipy.io

from cnnx.io import load_matconvnet, save_matconvnet
from cnnx._options import Option
from cnnx.layers import BLOCK_TYPES
from cnnx.simplenn import LAYER_TYPES, register_layer_type, vl_simplenn, vl_simplenn_tidy

LABELS = np.array([2.0, 1.0])


def randn(rng, *shape, dtype=np.float32):
    return np.asfortranarray(rng.standard_normal(shape).astype(dtype))


def cell(*items):
    """A MATLAB 1xN cell array for scipy.io.savemat."""
    out = np.empty((1, len(items)), dtype=object)
    for k, item in enumerate(items):
        out[0, k] = item
    return out


def empty_cell():
    return np.empty((0, 0), dtype=object)


def row(*values):
    return np.array([values], dtype=np.float64)


def weights(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "f1": randn(rng, 3, 3, 2, 1),  # a bank of one filter: MATLAB stores it 3x3x2
        "b1": randn(rng, 1, 1),
        "a": np.abs(randn(rng, 1, 1)),
        "f2": randn(rng, 2, 2, 1, 3),
        "b2": randn(rng, 1, 3),
    }


def matlab_layers(w):
    """The layers of `python_net` as MATLAB writes them: dropped singleton dimensions, doubles for
    options, logicals, char arrays, 1x1 structs in a cell array, empty cells for opts."""
    return cell(
        {"name": "conv1", "type": "conv", "weights": cell(w["f1"][:, :, :, 0], w["b1"]),
         "pad": row(1), "stride": row(1), "dilate": row(1), "opts": empty_cell(),
         "precious": np.array([[False]]), "learningRate": row(1, 2), "weightDecay": row(1, 0)},
        {"name": "pool1", "type": "pool", "pool": row(3, 3), "stride": row(2), "pad": row(0, 1, 0, 1),
         "method": "avg", "opts": empty_cell(), "precious": np.array([[False]])},
        {"name": "relu1", "type": "relu", "leak": row(0.1), "precious": np.array([[True]])},
        {"name": "prelu1", "type": "prelu", "weights": cell(w["a"])},
        {"name": "drop1", "type": "dropout", "rate": row(0.5)},
        {"name": "conv2", "type": "conv", "weights": cell(w["f2"], w["b2"]), "pad": row(0),
         "stride": row(1), "opts": cell("CuDNN")},
        {"name": "loss", "type": "softmaxloss"},
    )


def matlab_meta():
    return {"inputSize": row(7, 7, 2),
            "normalization": {"imageSize": row(7, 7, 2), "averageImage": np.zeros((7, 7, 2), np.float32),
                              "interpolation": "bilinear"},
            "classes": {"name": cell("cat", "dog", "cow"), "description": cell("Cat")}}


def python_net(w):
    return {
        "layers": [
            {"type": "conv", "name": "conv1", "weights": [w["f1"], w["b1"]], "pad": 1},
            {"type": "pool", "name": "pool1", "pool": 3, "stride": 2, "pad": [0, 1, 0, 1], "method": "avg"},
            {"type": "relu", "name": "relu1", "leak": 0.1},
            {"type": "prelu", "name": "prelu1", "weights": [w["a"]]},
            {"type": "dropout", "name": "drop1"},
            {"type": "conv", "name": "conv2", "weights": [w["f2"], w["b2"]]},
            {"type": "softmaxloss", "name": "loss"},
        ]
    }


def evaluate(net, x):
    net = vl_simplenn_tidy(net)
    net["layers"][-1]["class"] = LABELS
    return vl_simplenn(net, x, 1.0, mode="test")


@pytest.mark.parametrize("layout", ["variable", "struct"])
def test_matlab_layout_file_loads_and_evaluates_like_python_net(tmp_path, layout):
    w = weights()
    path = tmp_path / "model.mat"
    if layout == "variable":  # save(path, 'net') as cnn_train does
        scipy.io.savemat(path, {"net": {"layers": matlab_layers(w), "meta": matlab_meta()}})
    else:  # save(path, '-struct', 'net') as the pretrained models are
        scipy.io.savemat(path, {"layers": matlab_layers(w), "meta": matlab_meta()})
    net = load_matconvnet(path)
    conv1, pool1, relu1, prelu1, drop1, conv2, loss = net["layers"]
    assert conv1["weights"][0].shape == (3, 3, 2, 1) and conv1["weights"][0].dtype == np.float32
    assert np.array_equal(conv1["weights"][0], w["f1"])
    assert conv1["weights"][1].shape == (1, 1) and conv2["weights"][1].shape == (1, 3)
    assert conv1["name"] == "conv1" and conv1["type"] == "conv"
    assert conv1["pad"] == 1 and conv1["opts"] == [] and conv1["precious"] is False
    assert np.array_equal(conv1["learningRate"], [1.0, 2.0]) and conv1["learningRate"].dtype == np.float64
    assert pool1["pool"] == [3, 3] and pool1["stride"] == 2 and pool1["pad"] == [0, 1, 0, 1]
    assert pool1["method"] == "avg"
    assert relu1["leak"] == 0.1 and relu1["precious"] is True
    assert prelu1["weights"][0].shape == (1, 1)
    assert drop1["rate"] == 0.5 and conv2["opts"] == ["CuDNN"]
    meta = net["meta"]
    assert np.array_equal(meta["inputSize"], [7.0, 7.0, 2.0])
    assert meta["classes"] == {"name": ["cat", "dog", "cow"], "description": ["Cat"]}
    assert meta["normalization"]["interpolation"] == "bilinear"
    assert meta["normalization"]["averageImage"].shape == (7, 7, 2)

    x = randn(np.random.default_rng(1), 7, 7, 2, 2)
    got, want = evaluate(net, x), evaluate(python_net(w), x)
    for a, b in zip(got, want):
        assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["dzdx"], b["dzdx"])
        assert all(np.array_equal(p, q) for p, q in zip(a["dzdw"], b["dzdw"]))


def test_matlab_legacy_layout(tmp_path):
    rng = np.random.default_rng(2)
    f, b = randn(rng, 3, 3, 2), randn(rng, 1, 1)
    layers = cell({"type": "conv", "filters": f, "biases": b, "stride": row(1), "pad": row(0)})
    scipy.io.savemat(tmp_path / "old.mat", {"layers": layers, "classes": {"name": cell("a")}})
    net = load_matconvnet(tmp_path / "old.mat")
    assert net["layers"][0]["filters"].shape == (3, 3, 2, 1)
    assert net["classes"] == {"name": ["a"]}
    tidy = vl_simplenn_tidy(net)
    assert tidy["meta"]["classes"] == {"name": ["a"]} and tidy["layers"][0]["weights"][0].shape == (3, 3, 2, 1)


def test_matlab_empty_weights_and_numbers(tmp_path):
    layers = cell({"type": "conv", "weights": cell(np.zeros((0, 0)), row(1, 2)), "stride": row(2, 1)})
    scipy.io.savemat(tmp_path / "m.mat", {"net": {"layers": layers, "meta": {"n": np.array([[3]], np.int32)}}})
    net = load_matconvnet(tmp_path / "m.mat")
    assert net["layers"][0]["weights"][0] is None
    assert net["layers"][0]["stride"] == [2, 1]
    assert net["meta"]["n"] == 3 and net["meta"]["n"].dtype == np.int32


# ------------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------------


def assert_same(a, b, where="net"):
    """Equal values of the same types; arrays of the same dtype and shape."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b) or set(a) == set(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for k, (p, q) in enumerate(zip(a, b)):
            assert_same(p, q, f"{where}[{k}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def round_trip_net(dtype):
    rng = np.random.default_rng(3)
    net = {
        "layers": [
            {"type": "conv", "name": "conv1", "weights": [randn(rng, 5, 5, 3, 1, dtype=dtype),
                                                          randn(rng, 1, 1, dtype=dtype)],
             "pad": [2, 2, 1, 1], "stride": [1, 2], "learningRate": np.array([1.0, 2.0]),
             "weightDecay": np.array([1.0, 0.0])},
            {"type": "pool", "name": "pool1", "pool": [3, 2], "stride": 2, "method": "avg"},
            {"type": "relu", "leak": 0.25, "precious": True},
            {"type": "prelu", "weights": [randn(rng, 1, 1, dtype=dtype)], "learningRate": np.array([0.5])},
            {"type": "dropout", "rate": 0.3},
            {"type": "conv", "weights": [randn(rng, 1, 1, 1, 4, dtype=dtype), None], "dilate": 2},
            {"type": "softmaxloss", "class": np.array([1.0, 4.0, 2.0])},
        ],
        "meta": {"inputSize": np.array([32.0, 32.0, 3.0]), "name": "test net", "version": 2.5,
                 "normalization": {"averageImage": randn(rng, 32, 32, 3, dtype=dtype), "keepAspect": True},
                 "classes": {"name": ["a", "b", "c", "d"]}, "empty": None},
    }
    return vl_simplenn_tidy(net)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simplenn_round_trip_is_exact(tmp_path, dtype):
    net = round_trip_net(dtype)
    path = tmp_path / "net.mat"
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)
    assert_same(net, loaded)
    # And again: what is loaded saves to the same thing.
    save_matconvnet(loaded, tmp_path / "again.mat")
    assert_same(net, load_matconvnet(tmp_path / "again.mat"))


def test_saved_file_is_in_matconvnet_layout(tmp_path):
    net = round_trip_net(np.float32)
    save_matconvnet(net, tmp_path / "net.mat")
    raw = scipy.io.loadmat(tmp_path / "net.mat", struct_as_record=False, mat_dtype=True)
    mnet = raw["net"][0, 0]
    assert raw["net"].shape == (1, 1)
    assert mnet.layers.shape == (1, 7) and mnet.layers.dtype == object  # a cell array
    conv = mnet.layers[0, 0][0, 0]
    assert conv.type[0] == "conv" and conv.weights.shape == (1, 2)
    assert conv.pad.dtype == np.float64 and conv.pad.shape == (1, 4)  # doubles, as vl_nnconv wants
    assert conv.stride.dtype == np.float64
    assert mnet.layers[0, 2][0, 0].precious.dtype == np.bool_
    assert conv.weights[0, 0].dtype == np.float32 and conv.weights[0, 0].shape == (5, 5, 3, 1)
    assert mnet.layers[0, 5][0, 0].weights[0, 1].shape == (0, 0)  # None is []
    assert mnet.layers[0, 0][0, 0].opts.shape == (0, 0) and mnet.layers[0, 0][0, 0].opts.dtype == object


def test_one_dimensional_biases_come_back_as_matlab_rows(tmp_path):
    b = np.arange(3, dtype=np.float32)
    net = {"layers": [{"type": "conv", "weights": [np.ones((1, 1, 2, 3), np.float32), b]}]}
    save_matconvnet(net, tmp_path / "n.mat")
    loaded = load_matconvnet(tmp_path / "n.mat")["layers"][0]["weights"][1]
    assert loaded.shape == (1, 3) and np.array_equal(loaded.ravel(), b)


def test_extras_round_trip(tmp_path):
    state = {"epoch": 7, "learningRate": 0.05, "done": False, "name": "lenet",
             "solverState": [[np.ones((3, 3, 2, 4), np.float32), None], []],
             "history": np.arange(5.0), "nothing": None}
    stats = {"train": [{"objective": 1.5, "top1err": 0.25, "num": 100, "time": 2.0},
                       {"objective": 1.25, "top1err": 0.2, "num": 100, "time": 2.5}],
             "val": [{"objective": 1.75, "num": 50}]}
    net = round_trip_net(np.float32)
    save_matconvnet(net, tmp_path / "net-epoch-7.mat", state=state, stats=stats)
    loaded, extras = load_matconvnet(tmp_path / "net-epoch-7.mat", with_extra=True)
    assert_same(net, loaded)
    assert set(extras) == {"state", "stats"}
    assert_same(state, extras["state"], "state")
    assert_same(stats, extras["stats"], "stats")
    assert isinstance(extras["state"]["epoch"], int)
    # Lists of numbers are MATLAB vectors: they come back as 1-D arrays.
    save_matconvnet(net, tmp_path / "v.mat", v={"ints": [1, 2, 3], "floats": [0.5, 1]})
    _, extras = load_matconvnet(tmp_path / "v.mat", with_extra=True)
    assert extras["v"]["ints"].dtype == np.int64 and np.array_equal(extras["v"]["ints"], [1, 2, 3])
    assert extras["v"]["floats"].dtype == np.float64 and np.array_equal(extras["v"]["floats"], [0.5, 1])


def test_load_without_extras_returns_only_the_net(tmp_path):
    save_matconvnet({"layers": [{"type": "relu"}]}, tmp_path / "n.mat", state={"epoch": 1})
    net = load_matconvnet(tmp_path / "n.mat")
    assert isinstance(net, dict) and net["layers"][0]["type"] == "relu" and net["meta"] == {}
    _, extras = load_matconvnet(tmp_path / "n.mat", with_extra=True)
    assert extras == {"state": {"epoch": 1}}


def test_save_overwrites_atomically(tmp_path, monkeypatch):
    path = tmp_path / "net.mat"
    save_matconvnet({"layers": [{"type": "relu"}]}, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    before = path.read_bytes()

    def broken_savemat(stream, *args, **kwargs):
        stream.write(b"MATLAB 5.0 MAT-file, partial")
        raise OSError("disk full")

    monkeypatch.setattr(scipy.io, "savemat", broken_savemat)
    with pytest.raises(OSError, match="disk full"):
        save_matconvnet({"layers": [{"type": "relu", "leak": 0.5}]}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["net.mat"]
    monkeypatch.undo()
    save_matconvnet({"layers": [{"type": "relu", "leak": 0.5}]}, path)
    assert load_matconvnet(path)["layers"][0]["leak"] == 0.5
    assert sorted(os.listdir(tmp_path)) == ["net.mat"]


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_not_a_mat_file(tmp_path):
    path = tmp_path / "notes.mat"
    path.write_text("just some text, not a MATLAB file\n" * 10)
    with pytest.raises(ValueError, match="not a MATLAB .mat file|cannot read"):
        load_matconvnet(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_matconvnet(tmp_path / "absent.mat")


NO_NETWORK = ("load_matconvnet: {path} holds no MatConvNet network: expected 'layers' (SimpleNN) or 'vars', "
              "'params' and 'layers' (DagNN); ")


@pytest.mark.parametrize("variables, message", [
    ({"x": np.ones((2, 2)), "y": "text"}, NO_NETWORK + "found variables: x, y"),
    ({"net": np.ones((1, 3))},
     "load_matconvnet: {path}: the variable 'net' must be a 1x1 struct, got a 1x3 float64 array"),
    ({"net": {"weights": np.ones(2), "meta": {}}}, NO_NETWORK + "the variable 'net' has fields: meta, weights"),
    ({"net": {"layers": np.ones((1, 2))}},
     "load_matconvnet: {path}: a SimpleNN network's 'layers' must be a cell array of structs, got a 1x2 float64 array"),
    ({"net": {"layers": cell({"type": "mystery", "name": "norm1", "param": row(5, 1, 2e-5, 0.75)})}},
     "load_matconvnet: {path}: layers[0] ('norm1') has type 'mystery', which cnnx does not implement (it "
     "implements: {known})"),
    ({"net": {"layers": cell({"type": "relu"}, {"type": "custom", "name": "mine"})}},
     "load_matconvnet: {path}: layers[1] ('mine') is a custom layer; its MATLAB functions cannot run in cnnx "
     "(build the layer in Python instead)"),
    ({"net": {"layers": cell({"type": "conv", "weights": cell(np.ones((3, 3, 2, 4)), row(1, 2))})}},
     "load_matconvnet: {path}: layers[0]: the biases weights[1] must have one element per filter (4), "
     "got shape (1, 2)"),
    ({"net": {"layers": cell({"type": "conv", "weights": "F"})}},
     "load_matconvnet: {path}: layers[0]: weights must be a cell array of arrays, got the string 'F'"),
])
def test_files_that_are_not_cnnx_networks(tmp_path, variables, message):
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, variables)
    known = ", ".join(sorted(LAYER_TYPES))  # other tests may register types of their own
    with pytest.raises(ValueError, match=re.escape(message.format(path=path, known=known))):
        load_matconvnet(path)


def test_save_errors(tmp_path):
    path = tmp_path / "n.mat"
    custom = {"type": "custom", "forward": lambda *a: None, "backward": lambda *a: None}
    with pytest.raises(TypeError, match=r"layers'\]\[0\] is a custom layer"):
        save_matconvnet({"layers": [custom]}, path)
    with pytest.raises(TypeError, match="must be a SimpleNN dict or a DagNN"):
        save_matconvnet([{"type": "relu"}], path)
    with pytest.raises(ValueError, match="unknown layer type 'mystery'"):
        save_matconvnet({"layers": [{"type": "mystery"}]}, path)
    with pytest.raises(ValueError, match="'_state' is not a MATLAB variable name"):
        save_matconvnet({"layers": []}, path, _state=1)
    with pytest.raises(TypeError, match=r"net\['meta'\]\['hook'\] is a Python function"):
        save_matconvnet({"layers": [], "meta": {"hook": print}}, path)
    with pytest.raises(ValueError, match=r"net\['meta'\] has the key 'bad key', which is not a MATLAB field name"):
        save_matconvnet({"layers": [], "meta": {"bad key": 1}}, path)
    with pytest.raises(TypeError, match=r"state\['s'\] is a set"):
        save_matconvnet({"layers": []}, path, state={"s": {1, 2}})
    assert not os.listdir(tmp_path)


# ------------------------------------------------------------------------------------------------
# DagNN files go through DagNN.loadobj / saveobj (checked here with a stand-in class)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_dagnn(monkeypatch):
    class FakeDagNN:
        def __init__(self, s):
            self.s = s

        @classmethod
        def loadobj(cls, s):
            return cls(s)

        def saveobj(self):
            return self.s

    module = types.ModuleType("cnnx.dagnn")
    module.DagNN = FakeDagNN
    monkeypatch.setitem(sys.modules, "cnnx.dagnn", module)
    return FakeDagNN


def matlab_struct_array(items):
    names = list(items[0])
    out = np.empty((1, len(items)), dtype=[(n, object) for n in names])
    for k, item in enumerate(items):
        out[0, k] = tuple(item[n] for n in names)
    return out


def test_dagnn_file_is_converted_for_loadobj(tmp_path, fake_dagnn):
    rng = np.random.default_rng(4)
    f, b = randn(rng, 3, 3, 2), randn(rng, 1, 1)
    s = {
        "vars": matlab_struct_array([{"name": "input", "precious": np.array([[False]])},
                                     {"name": "x1", "precious": np.array([[True]])}]),
        "params": matlab_struct_array([{"name": "conv1f", "value": f, "learningRate": row(1), "weightDecay": row(1)},
                                       {"name": "conv1b", "value": b, "learningRate": row(2), "weightDecay": row(0)}]),
        "layers": matlab_struct_array([{"name": "conv1", "type": "dagnn.Conv", "inputs": cell("input"),
                                        "outputs": cell("x1"), "params": cell("conv1f", "conv1b"),
                                        "block": {"size": row(3, 3, 2, 1), "hasBias": np.array([[True]]),
                                                  "pad": row(1), "opts": cell("cuDNN")}}]),
        "meta": {"inputSize": row(8, 8, 2)},
    }
    scipy.io.savemat(tmp_path / "dag.mat", {"net": s, "stats": {"epoch": row(3)}})
    net, extras = load_matconvnet(tmp_path / "dag.mat", with_extra=True)
    assert isinstance(net, fake_dagnn)
    got = net.s
    assert got["vars"] == [{"name": "input", "precious": False}, {"name": "x1", "precious": True}]
    assert [p["name"] for p in got["params"]] == ["conv1f", "conv1b"]
    assert got["params"][0]["value"].shape == (3, 3, 2, 1) and got["params"][0]["value"].dtype == np.float32
    assert got["params"][1]["value"].shape == (1, 1)
    assert got["params"][1]["learningRate"] == 2.0
    layer = got["layers"][0]
    assert layer["inputs"] == ["input"] and layer["outputs"] == ["x1"] and layer["params"] == ["conv1f", "conv1b"]
    assert layer["block"]["hasBias"] is True and layer["block"]["opts"] == ["cuDNN"]
    assert np.array_equal(layer["block"]["size"], [3, 3, 2, 1])
    assert extras == {"stats": {"epoch": 3.0}}

    # saveobj's struct is written as MATLAB struct arrays, and reads back the same.
    save_matconvnet(net, tmp_path / "dag2.mat")
    raw = scipy.io.loadmat(tmp_path / "dag2.mat", struct_as_record=False)["net"][0, 0]
    assert raw.vars.shape == (1, 2) and raw.layers.shape == (1, 1) and raw.params.shape == (1, 2)
    again = load_matconvnet(tmp_path / "dag2.mat").s
    assert_same(got, again, "s")


def test_dagnn_struct_arrays_must_have_uniform_fields(tmp_path, fake_dagnn):
    s = {"vars": [{"name": "a", "precious": False}, {"name": "b"}], "params": [], "layers": [], "meta": {}}
    with pytest.raises(ValueError, match=r"\['vars'\]\[1\] has fields \['name'\]"):
        save_matconvnet(fake_dagnn(s), tmp_path / "d.mat")


# ------------------------------------------------------------------------------------------------
# Malformed fields: one ValueError naming the file, the layer (0-based index and name), the field,
# what was expected and what was found. Files are written in MatConvNet's layout by scipy.
# ------------------------------------------------------------------------------------------------

F = np.ones((3, 3, 2, 4), np.float32)
B = np.zeros((1, 4), np.float32)


def _identity_forward(layer, res_i, res_ip1, ctx):
    res_ip1["x"] = res_i["x"]


def _identity_backward(layer, res_i, res_ip1, ctx):
    res_i["dzdx"] = res_ip1["dzdx"]


@pytest.fixture
def declared_type():
    """A layer type 'declared' registered with the public register_layer_type: its model-file
    fields are the ones it declares in options= (as convt's and bnorm's)."""
    options = {"numGroups": Option("int"), "crop": Option("pad4"), "upsample": Option("pair"),
               "epsilon": Option("float"), "keep": Option("bool"), "how": Option("choice", choices=("a", "b"))}
    register_layer_type("declared", _identity_forward, _identity_backward, options=options,
                        defaults={"numGroups": 1, "crop": 0, "upsample": 1, "epsilon": 1e-4, "keep": False,
                                  "how": "a"})
    yield
    del LAYER_TYPES["declared"]


def test_a_registered_type_round_trips_its_declared_fields(tmp_path, declared_type):
    layer = {"type": "declared", "name": "mine", "numGroups": 3, "crop": [1, 2, 3, 4], "upsample": [2, 1],
             "epsilon": 0.25, "keep": True, "how": "b", "other": 2}
    save_matconvnet({"layers": [layer]}, tmp_path / "mine.mat")
    loaded = load_matconvnet(tmp_path / "mine.mat")["layers"][0]
    for field in ("numGroups", "crop", "upsample", "epsilon", "keep", "how"):
        assert loaded[field] == layer[field] and type(loaded[field]) is type(layer[field]), field
    assert loaded["other"] == 2.0 and isinstance(loaded["other"], float)  # undeclared: as MATLAB stores it


def simplenn_file_with(path, field, value, layer_type="conv"):
    """A SimpleNN file of three layers whose third, 'conv2' (or a pool or relu layer 'layer3'),
    has ``field = value``; ``value=None`` removes the field."""
    third = {"conv": {"name": "conv2", "type": "conv", "weights": cell(F, B), "pad": row(1)},
             "pool": {"name": "pool2", "type": "pool", "pool": row(2), "method": "max"},
             "relu": {"name": "relu2", "type": "relu"},
             "dropout": {"name": "drop2", "type": "dropout"},
             "declared": {"name": "mine2", "type": "declared"},
             "bnorm": {"name": "bn2", "type": "bnorm", "weights": cell(np.ones((2, 1), np.float32),
                                                                       np.zeros((2, 1), np.float32))}}[layer_type]
    if value is None:
        del third[field]
    else:
        third[field] = value
    layers = cell({"name": "conv1", "type": "conv", "weights": cell(np.ones((1, 1, 2, 2), np.float32), row(0, 0)
                                                                   .astype(np.float32))},
                  {"name": "relu1", "type": "relu"}, third)
    scipy.io.savemat(path, {"net": {"layers": layers, "meta": {}}})


INT_PAD = "pad must be 1 or 4 whole numbers [TOP BOTTOM LEFT RIGHT]"
PAIR = "must be 1 or 2 whole numbers [Y X]"
FLOAT32_64 = "must be a float32 or float64 array (MATLAB single or double)"


@pytest.mark.parametrize("layer_type, field, value, message", [
    # int fields
    ("conv", "pad", "abc", f"{INT_PAD}, got the string 'abc'"),
    ("conv", "pad", row(np.nan), f"{INT_PAD}, got nan"),
    ("conv", "pad", row(np.inf), f"{INT_PAD}, got inf"),
    ("conv", "pad", row(1.5), f"{INT_PAD}, got 1.5"),
    ("conv", "pad", row(1, 1, 1), f"{INT_PAD}, got [1, 1, 1]"),
    ("conv", "pad", row(1, 2), f"{INT_PAD}, got [1, 2]"),
    ("conv", "pad", row(0, 1, np.nan, 1), f"{INT_PAD}, got [0, 1, nan, 1]"),
    ("conv", "pad", np.zeros((0, 0)), f"{INT_PAD}, got []"),
    ("conv", "pad", cell("a"), f"{INT_PAD}, got a 1x1 cell array"),
    ("conv", "pad", {"a": row(1)}, f"{INT_PAD}, got a 1x1 struct array"),
    ("conv", "pad", np.array([[True]]), f"{INT_PAD}, got a 1x1 logical array"),
    ("conv", "pad", np.array([[1 + 1j]]), f"{INT_PAD}, got a 1x1 complex128 array"),
    ("conv", "stride", row(2.5), f"stride {PAIR}, got 2.5"),
    ("conv", "stride", row(1, 2, 3), f"stride {PAIR}, got [1, 2, 3]"),
    ("conv", "stride", "2", f"stride {PAIR}, got the string '2'"),
    ("conv", "dilate", row(-np.inf), f"dilate {PAIR}, got -inf"),
    ("declared", "numGroups", row(1.5), "numGroups must be a whole number, got 1.5"),
    ("declared", "numGroups", row(1, 1), "numGroups must be a whole number, got [1, 1]"),
    ("declared", "crop", row(np.nan), "crop must be 1 or 4 whole numbers [TOP BOTTOM LEFT RIGHT], got nan"),
    ("declared", "upsample", row(0.5), f"upsample {PAIR}, got 0.5"),
    ("pool", "pool", row(2, 2, 2), f"pool {PAIR}, got [2, 2, 2]"),
    ("pool", "pool", "big", f"pool {PAIR}, got the string 'big'"),
    # float fields
    ("relu", "leak", "x", "leak must be a finite number, got the string 'x'"),
    ("relu", "leak", row(np.nan), "leak must be a finite number, got nan"),
    ("relu", "leak", row(np.inf), "leak must be a finite number, got inf"),
    ("relu", "leak", row(0.1, 0.2), "leak must be a finite number, got [0.1, 0.2]"),
    ("relu", "leak", np.array([[0.1j]]), "leak must be a finite number, got a 1x1 complex128 array"),
    ("dropout", "rate", "half", "rate must be a finite number, got the string 'half'"),
    ("dropout", "rate", row(np.nan), "rate must be a finite number, got nan"),
    ("declared", "epsilon", cell(1e-4), "epsilon must be a finite number, got a 1x1 cell array"),
    ("bnorm", "epsilon", row(np.nan), "epsilon must be a finite number, got nan"),
    ("bnorm", "epsilon", "small", "epsilon must be a finite number, got the string 'small'"),
    ("declared", "keep", row(0.5), "keep must be true or false (a logical, 0 or 1), got 0.5"),
    ("declared", "how", row(1), "how must be a string, got 1"),
    # bool fields
    ("relu", "precious", "x", "precious must be true or false (a logical, 0 or 1), got the string 'x'"),
    ("relu", "precious", row(2), "precious must be true or false (a logical, 0 or 1), got 2"),
    ("relu", "precious", row(np.nan), "precious must be true or false (a logical, 0 or 1), got nan"),
    ("relu", "precious", np.array([[True, False]]),
     "precious must be true or false (a logical, 0 or 1), got a 1x2 logical array"),
    # vector fields
    ("conv", "learningRate", "x", "learningRate must be finite numbers, got the string 'x'"),
    ("conv", "learningRate", row(1, np.nan), "learningRate must be finite numbers, got [1, nan]"),
    ("conv", "learningRate", np.array([[1, 2j]]), "learningRate must be finite numbers, got a 1x2 complex128 array"),
    ("conv", "weightDecay", row(np.inf, 0), "weightDecay must be finite numbers, got [inf, 0]"),
    ("conv", "weightDecay", cell(row(1), row(0)), "weightDecay must be finite numbers, got a 1x2 cell array"),
    ("conv", "weightDecay", np.zeros((0, 0)), "weightDecay must be finite numbers, got []"),
    # string fields
    ("conv", "type", row(1), "type must be a string, got 1"),
    ("pool", "method", row(1), "method must be a string, got 1"),
    ("pool", "method", cell("max"), "method must be a string, got a 1x1 cell array"),
    # weights
    ("conv", "weights", "F", "weights must be a cell array of arrays, got the string 'F'"),
    ("conv", "weights", {"f": F}, "weights must be a cell array of arrays, got a 1x1 struct array"),
    ("conv", "weights", cell(F * (1 + 1j), B), f"weights[0] {FLOAT32_64}, got a 3x3x2x4 complex64 array"),
    ("conv", "weights", cell(F, B * 1j), f"weights[1] {FLOAT32_64}, got a 1x4 complex64 array"),
    ("conv", "weights", cell(F.astype(np.float64) * 1j, B), f"weights[0] {FLOAT32_64}, got a 3x3x2x4 complex128 array"),
    ("conv", "weights", cell("abc", B), f"weights[0] {FLOAT32_64}, got the string 'abc'"),
    ("conv", "weights", cell(F.astype(np.int32), B), f"weights[0] {FLOAT32_64}, got a 3x3x2x4 int32 array"),
    ("conv", "weights", cell(F > 0, B), f"weights[0] {FLOAT32_64}, got a 3x3x2x4 logical array"),
    ("conv", "weights", cell(cell(F), B), f"weights[0] {FLOAT32_64}, got a 1x1 cell array"),
    ("conv", "weights", cell(F, {"b": B}), f"weights[1] {FLOAT32_64}, got a 1x1 struct array"),
])
def test_malformed_simplenn_fields(tmp_path, declared_type, layer_type, field, value, message):
    path = tmp_path / "bad.mat"
    simplenn_file_with(path, field, value, layer_type)
    name = {"conv": "conv2", "pool": "pool2", "relu": "relu2", "dropout": "drop2", "declared": "mine2",
            "bnorm": "bn2"}[layer_type]
    full = f"load_matconvnet: {path}: layers[2] ('{name}'): {message}"
    with pytest.raises(ValueError, match=re.escape(full)) as info:
        load_matconvnet(path)
    assert str(info.value) == full


def test_malformed_layer_name_and_struct(tmp_path):
    path = tmp_path / "bad.mat"
    simplenn_file_with(path, "name", row(3))
    with pytest.raises(ValueError, match=re.escape(f"load_matconvnet: {path}: layers[2]: name must be a string, "
                                                   "got 3")):
        load_matconvnet(path)
    scipy.io.savemat(path, {"net": {"layers": cell({"type": "relu"}, row(1, 2))}})
    with pytest.raises(ValueError, match=re.escape(f"load_matconvnet: {path}: layers[1] must be a 1x1 struct, "
                                                   "got a 1x2 float64 array")):
        load_matconvnet(path)


def test_legacy_filters_and_biases_must_be_real_arrays(tmp_path):
    path = tmp_path / "old.mat"
    layers = cell({"type": "conv", "name": "c", "filters": F * 1j, "biases": B})
    scipy.io.savemat(path, {"layers": layers})
    with pytest.raises(ValueError, match=re.escape(f"load_matconvnet: {path}: layers[0] ('c'): filters {FLOAT32_64}, "
                                                   "got a 3x3x2x4 complex64 array")):
        load_matconvnet(path)
    scipy.io.savemat(path, {"layers": cell({"type": "conv", "name": "c", "filters": F, "biases": "b"})})
    with pytest.raises(ValueError, match=re.escape(f"load_matconvnet: {path}: layers[0] ('c'): biases {FLOAT32_64}, "
                                                   "got the string 'b'")):
        load_matconvnet(path)


@pytest.mark.parametrize("layer_type, field, value, message", [
    # What the field-by-field conversion lets through, vl_simplenn_tidy's checks catch, named the same way.
    ("conv", "pad", row(-1), "Pad must be non-negative, got [-1, -1, -1, -1]"),
    ("conv", "stride", row(0), "Stride must be at least 1, got [0, 0]"),
    ("dropout", "rate", row(1.5), "Rate must be in [0, 1), got 1.5"),
    ("bnorm", "epsilon", row(-1e-5), "Epsilon must be at least 0, got -1e-05"),
    ("bnorm", "weights", cell(np.ones((2, 1), np.float32), np.zeros((2, 1), np.float32), np.zeros((2, 3), np.float32)),
     "the moments weights[2] must be C x 2 [MU SIGMA] for the 2 gains, got shape (2, 3)"),
    ("pool", "pool", None, "missing field 'pool' (the pooling window size, scalar or [PH, PW])"),
])
def test_malformed_simplenn_values_checked_by_tidy(tmp_path, layer_type, field, value, message):
    path = tmp_path / "bad.mat"
    simplenn_file_with(path, field, value, layer_type)
    name = {"conv": "conv2", "pool": "pool2", "relu": "relu2", "dropout": "drop2", "bnorm": "bn2"}[layer_type]
    with pytest.raises(ValueError, match=re.escape(f"load_matconvnet: {path}: layers[2] ('{name}'): {message}")):
        load_matconvnet(path)


def test_complex_numbers_outside_the_layers(tmp_path):
    path = tmp_path / "net.mat"
    meta = {"normalization": {"averageImage": np.ones((2, 2)) * (1 + 2j)}}
    scipy.io.savemat(path, {"net": {"layers": cell({"type": "relu", "name": "relu1"}), "meta": meta}})
    with pytest.raises(ValueError, match=re.escape(
            f"load_matconvnet: {path}: meta.normalization.averageImage must be real numbers (cnnx does not read "
            "complex numbers), got a 2x2 complex128 array")):
        load_matconvnet(path)
    # Complex numbers in another variable only matter when that variable is asked for.
    scipy.io.savemat(path, {"net": {"layers": cell({"type": "relu", "name": "relu1"})},
                            "state": {"x": cell("a", np.array([[1j]]))}})
    assert load_matconvnet(path)["layers"][0]["name"] == "relu1"
    with pytest.raises(ValueError, match=re.escape(
            f"load_matconvnet: {path}: state.x[1] must be real numbers (cnnx does not read complex numbers), "
            "got a 1x1 complex128 array")):
        load_matconvnet(path, with_extra=True)


# DagNN files, read by the real DagNN.loadobj.


def dagnn_file(path, change=None):
    """A DagNN file in MatConvNet's saveobj layout (conv1, relu1, pool1, drop1); ``change(s)``
    edits the dict of Python lists of dicts before it is written as struct arrays."""
    rng = np.random.default_rng(7)
    s = {
        "vars": [{"name": n, "precious": np.array([[False]])} for n in ("input", "x1", "x2", "x3", "x4")],
        "params": [{"name": "conv1f", "value": randn(rng, 3, 3, 2), "learningRate": row(1), "weightDecay": row(1),
                    "trainMethod": "gradient"},
                   {"name": "conv1b", "value": randn(rng, 1, 1), "learningRate": row(2), "weightDecay": row(0),
                    "trainMethod": "gradient"}],
        "layers": [
            {"name": "conv1", "type": "dagnn.Conv", "inputs": cell("input"), "outputs": cell("x1"),
             "params": cell("conv1f", "conv1b"),
             "block": {"size": row(3, 3, 2, 1), "hasBias": np.array([[True]]), "opts": cell("cuDNN"),
                       "pad": row(1), "stride": row(1), "dilate": row(1)}},
            {"name": "relu1", "type": "dagnn.ReLU", "inputs": cell("x1"), "outputs": cell("x2"),
             "params": empty_cell(), "block": {"useShortCircuit": np.array([[True]]), "leak": row(0.1),
                                               "opts": empty_cell()}},
            {"name": "pool1", "type": "dagnn.Pooling", "inputs": cell("x2"), "outputs": cell("x3"),
             "params": empty_cell(), "block": {"method": "avg", "poolSize": row(2, 2), "opts": empty_cell(),
                                               "pad": row(0), "stride": row(2), "dilate": row(1)}},
            {"name": "drop1", "type": "dagnn.DropOut", "inputs": cell("x3"), "outputs": cell("x4"),
             "params": empty_cell(), "block": {"rate": row(0.5), "frozen": np.array([[False]])}},
        ],
        "meta": {"inputSize": row(8, 8, 2)},
    }
    if change is not None:
        change(s)
    net = {"vars": matlab_struct_array(s["vars"]), "params": matlab_struct_array(s["params"]),
           "layers": matlab_struct_array(s["layers"]), "meta": s["meta"]}
    scipy.io.savemat(path, {"net": net})


def test_dagnn_file_loads_into_a_dagnn(tmp_path):
    from cnnx.dagnn import DagNN

    dagnn_file(tmp_path / "dag.mat")
    net = load_matconvnet(tmp_path / "dag.mat")
    assert isinstance(net, DagNN)
    assert [layer.name for layer in net.layers] == ["conv1", "relu1", "pool1", "drop1"]
    conv, relu, pool, drop = (layer.block for layer in net.layers)
    assert conv.size == (3, 3, 2, 1) and conv.pad == (1, 1, 1, 1) and conv.has_bias is True
    assert relu.leak == 0.1 and pool.method == "avg" and pool.pool_size == (2, 2) and drop.rate == 0.5
    assert net.get_param("conv1f").value.shape == (3, 3, 2, 1) and net.get_param("conv1b").learning_rate == 2.0


def set_block(layer, field, value):
    def change(s):
        s["layers"][layer]["block"][field] = value
    return change


def set_entry(kind, index, field, value):
    def change(s):
        s[kind][index][field] = value
    return change


DAG_PAD = "block.pad must be 1, 2 or 4 non-negative whole numbers"


@pytest.mark.parametrize("change, message", [
    (set_block(0, "pad", "abc"), f"layers[0] ('conv1'): {DAG_PAD}, got the string 'abc'"),
    (set_block(0, "pad", row(np.nan)), f"layers[0] ('conv1'): {DAG_PAD}, got nan"),
    (set_block(0, "pad", row(np.inf)), f"layers[0] ('conv1'): {DAG_PAD}, got inf"),
    (set_block(0, "pad", row(1.5)), f"layers[0] ('conv1'): {DAG_PAD}, got 1.5"),
    (set_block(0, "pad", row(1, 1, 1)), f"layers[0] ('conv1'): {DAG_PAD}, got [1, 1, 1]"),
    (set_block(0, "pad", row(-1)), f"layers[0] ('conv1'): {DAG_PAD}, got -1"),
    (set_block(0, "pad", np.array([[1 + 1j]])),
     "layers[0] ('conv1'): block.pad must be real numbers (cnnx does not read complex numbers), "
     "got a 1x1 complex128 array"),
    (set_block(0, "stride", row(0)), "layers[0] ('conv1'): block.stride must be 1 or 2 positive whole numbers, got 0"),
    (set_block(0, "dilate", row(1.5, 1)),
     "layers[0] ('conv1'): block.dilate must be 1 or 2 positive whole numbers, got [1.5, 1]"),
    (set_block(0, "size", "abc"),
     "layers[0] ('conv1'): block.size must be 2 to 4 non-negative whole numbers [FH FW FC K], got the string 'abc'"),
    (set_block(0, "size", row(3, 3, np.nan, 1)),
     "layers[0] ('conv1'): block.size must be 2 to 4 non-negative whole numbers [FH FW FC K], got [3, 3, nan, 1]"),
    (set_block(0, "hasBias", row(2)), "layers[0] ('conv1'): block.hasBias must be true or false, got 2"),
    (set_block(0, "hasBias", "yes"), "layers[0] ('conv1'): block.hasBias must be true or false, got the string 'yes'"),
    (set_block(1, "leak", "x"), "layers[1] ('relu1'): block.leak must be a finite number, got the string 'x'"),
    (set_block(1, "leak", row(np.nan)), "layers[1] ('relu1'): block.leak must be a finite number, got nan"),
    (set_block(1, "useShortCircuit", row(np.nan)),
     "layers[1] ('relu1'): block.useShortCircuit must be true or false, got nan"),
    (set_block(1, "alpha", row(1)),
     "layers[1] ('relu1'): ReLU has no property 'alpha' (its properties: useShortCircuit, leak, opts)"),
    (set_block(2, "method", row(1)), "layers[2] ('pool1'): block.method must be one of 'max', 'avg', got 1"),
    (set_block(2, "method", "median"),
     "layers[2] ('pool1'): block.method must be one of 'max', 'avg', got the string 'median'"),
    (set_block(2, "poolSize", row(2, 2, 2)),
     "layers[2] ('pool1'): block.poolSize must be 1 or 2 positive whole numbers, got [2, 2, 2]"),
    (set_block(2, "dilate", row(2)), "layers[2] ('pool1'): block.dilate must be 1 (vl_nnpool has no dilation), got 2"),
    (set_block(3, "rate", row(1.5)), "layers[3] ('drop1'): block.rate must be a number in [0, 1), got 1.5"),
    (set_block(3, "rate", row(np.nan)), "layers[3] ('drop1'): block.rate must be a number in [0, 1), got nan"),
    (set_block(3, "frozen", "no"), "layers[3] ('drop1'): block.frozen must be true or false, got the string 'no'"),
    (set_entry("layers", 0, "block", row(3)),
     "layers[0] ('conv1'): block must be a struct (a dict) of the block's properties, got 3"),
    (set_entry("layers", 0, "name", row(3)), "layers[0]: name must be a string, got 3"),
    (set_entry("layers", 1, "type", row(3)), "layers[1] ('relu1'): type must be a string, got 3"),
    (set_entry("layers", 1, "type", "mine.Block"),
     "layers[1] ('relu1') has unknown block type 'mine.Block' (known: "
     f"{', '.join(sorted(BLOCK_TYPES))}; pass blocks={{type: class}} for others)"),
    (set_entry("layers", 1, "inputs", cell(row(3))), "layers[1] ('relu1'): inputs must be non-empty strings, got 3"),
    (set_entry("params", 0, "value", F * 1j),
     f"params[0] ('conv1f'): value {FLOAT32_64}, got a 3x3x2x4 complex64 array"),
    (set_entry("params", 0, "value", "abc"), f"params[0] ('conv1f'): value {FLOAT32_64}, got the string 'abc'"),
    (set_entry("params", 0, "value", F.astype(np.int32)),
     f"params[0] ('conv1f'): value {FLOAT32_64}, got a 3x3x2x4 int32 array"),
    (set_entry("params", 1, "value", np.array([[True]])),
     f"params[1] ('conv1b'): value {FLOAT32_64}, got a 1x1 logical array"),
    (set_entry("params", 1, "learningRate", row(np.nan)),
     "params[1] ('conv1b'): learningRate must be a finite number, got nan"),
    (set_entry("params", 1, "weightDecay", "x"),
     "params[1] ('conv1b'): weightDecay must be a finite number, got the string 'x'"),
    (set_entry("params", 1, "trainMethod", "sgd"),
     "params[1] ('conv1b'): trainMethod must be one of 'gradient', 'average', got the string 'sgd'"),
    (set_entry("params", 1, "name", "ghost"), "params[1] ('ghost') is not used by any layer"),
    (set_entry("vars", 1, "precious", "x"), "vars[1] ('x1'): precious must be true or false, got the string 'x'"),
    (set_entry("vars", 2, "precious", row(2)), "vars[2] ('x2'): precious must be true or false, got 2"),
])
def test_malformed_dagnn_fields(tmp_path, change, message):
    path = tmp_path / "bad.mat"
    dagnn_file(path, change)
    with pytest.raises(ValueError, match=re.escape(f"load_matconvnet: {path}: {message}")) as info:
        load_matconvnet(path)
    assert str(info.value) == f"load_matconvnet: {path}: {message}"

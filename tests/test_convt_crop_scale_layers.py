"""Layer kinds over vl_nnconvt, vl_nncrop and broadcasting scale: SimpleNN's 'convt', DagNN's
ConvTranspose, Crop and Scale, and the ElementWise base of the blocks that keep their input's size."""
import os
import re

import numpy as np
import pytest

from cnnx import vl_nnconvt, vl_nncrop
from cnnx.dagnn import (ConvTranspose, Crop, DagNN, DropOut, ElementWise, Layer, PReLU, ReLU, Scale, Sum)
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.simplenn import vl_simplenn, vl_simplenn_display, vl_simplenn_tidy
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]


def randn(rng, *shape, dtype=np.float64):
    return np.asfortranarray(rng.standard_normal(shape).astype(dtype))


def exact(message):
    return f"^{re.escape(message)}$"


# ------------------------------------------------------------------------------------------------
# ConvTranspose / 'convt'
# ------------------------------------------------------------------------------------------------


def convt_net(rng, dtype, with_bias=True):
    f1 = randn(rng, 4, 3, 2, 6, dtype=dtype)  # K = 2 per group, C = 6 inputs, 3 groups -> 6 outputs
    b1 = randn(rng, 1, 6, dtype=dtype) if with_bias else None
    return {"layers": [
        {"type": "convt", "name": "up", "weights": [f1, b1], "upsample": [2, 3], "crop": [1, 0, 2, 1],
         "numGroups": 3, "opts": ["CuDNN"]},
        {"type": "relu", "name": "relu"},
        {"type": "convt", "name": "up2", "weights": [randn(rng, 2, 2, 1, 6, dtype=dtype), None]},
    ]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_convt_simplenn_and_dagnn_agree_with_the_block(dtype, with_bias):
    rng = np.random.default_rng(0)
    net = convt_net(rng, dtype, with_bias)
    x = randn(rng, 3, 4, 6, 2, dtype=dtype)
    f1, b1 = net["layers"][0]["weights"]
    y1 = vl_nnconvt(x, f1, b1, upsample=[2, 3], crop=[1, 0, 2, 1], num_groups=3)
    dzdy = randn(rng, *vl_nnconvt(np.maximum(y1, 0), net["layers"][2]["weights"][0], None).shape, dtype=dtype)
    res = vl_simplenn(net, x, dzdy)
    np.testing.assert_array_equal(res[1]["x"], y1)

    dag = DagNN.from_simplenn(net)
    block = dag.layers[0].block
    assert isinstance(block, ConvTranspose) and dag.layers[0].params == (["upf", "upb"] if with_bias else ["upf"])
    assert (block.size, block.upsample, block.crop, block.num_groups, block.has_bias, block.opts) == (
        (4, 3, 2, 6), (2, 3), (1, 0, 2, 1), 3, with_bias, ("CuDNN",))
    assert dag.layers[2].params == ["up2f"] and dag.layers[2].block.size == (2, 2, 1, 6)
    dag.conserve_memory = False
    dag.eval({"x0": x}, {"x3": dzdy})
    for i in range(3):
        np.testing.assert_array_equal(dag.get_var(f"x{i + 1}").value, res[i + 1]["x"])
        np.testing.assert_array_equal(dag.get_var(f"x{i}").der, res[i]["dzdx"])
    for name, der in zip(dag.layers[0].params, res[0]["dzdw"]):
        np.testing.assert_array_equal(dag.get_param(name).der, der)
    np.testing.assert_array_equal(dag.get_param("up2f").der, res[2]["dzdw"][0])
    sizes = dag.get_var_sizes({"x0": x.shape})
    assert [sizes[f"x{i}"] for i in range(4)] == [dag.get_var(f"x{i}").value.shape for i in range(4)]


def test_convt_block_derivatives_by_finite_differences():
    rng = np.random.default_rng(1)
    x, f, b = randn(rng, 3, 2, 4, 2), randn(rng, 3, 2, 3, 4), randn(rng, 6, 1)
    block = ConvTranspose(size=f.shape, upsample=2, crop=[1, 0], num_groups=2)
    y = block.forward([x], [f, b])[0]
    assert y.shape == block.get_output_sizes([x.shape], [f.shape])[0] == (5, 4, 6, 2)
    dzdy = randn(rng, *y.shape)
    (dx,), (df, db) = block.backward([x], [f, b], [dzdy])
    check_derivative(lambda t: block.forward([t], [f, b])[0], x, dzdy, dx, method="central", rtol=1e-7)
    check_derivative(lambda t: block.forward([x], [t, b])[0], f, dzdy, df, method="central", rtol=1e-7)
    check_derivative(lambda t: block.forward([x], [f, t])[0], b, dzdy, db, method="central", rtol=1e-7)


def test_convt_init_params_and_sizes_count_the_groups():
    block = ConvTranspose(size=[4, 4, 3], num_groups=2)  # MATLAB's size() of a 4x4x3x1 bank
    assert block.size == (4, 4, 3, 1)
    block.size = (4, 4, 3, 8)
    filters, biases = block.init_params(np.random.default_rng(0))
    assert filters.shape == (4, 4, 3, 8) and filters.dtype == np.float32 and biases.shape == (6, 1)
    assert not biases.any()
    assert abs(float(filters.std()) - np.sqrt(2 / (4 * 4 * 8))) < 0.05
    assert block.get_output_sizes([(5, 5, 8, 2)], [None]) == [(8, 8, 6, 2)]
    assert ConvTranspose(size=(2, 2, 1, 1), has_bias=False).init_params(np.random.default_rng(0))[0].shape == (
        2, 2, 1, 1)


@pytest.mark.parametrize("make, error, message", [
    (lambda: ConvTranspose(upsample=0), ValueError,
     "ConvTranspose: upsample must be 1 or 2 positive whole numbers, got 0"),
    (lambda: ConvTranspose(crop=[1, 2, 3]), ValueError,
     "ConvTranspose: crop must be 1, 2 or 4 non-negative whole numbers, got [1, 2, 3]"),
    (lambda: ConvTranspose(num_groups=0), ValueError,
     "ConvTranspose: num_groups must be a positive whole number, got 0"),
    (lambda: ConvTranspose(size=[3, 3, 1.5]), ValueError,
     "ConvTranspose: size must be 2 to 4 non-negative whole numbers [FH FW K C], got [3, 3, 1.5]"),
    (lambda: ConvTranspose().load({"numGroups": 1.5}), ValueError,
     "ConvTranspose: numGroups must be a positive whole number, got 1.5"),
    (lambda: ConvTranspose().init_params(np.random.default_rng(0)), ValueError,
     "ConvTranspose: size (0, 0, 0, 0) is not set; give ConvTranspose(size=(FH, FW, K, C))"),
    (lambda: ConvTranspose().forward([np.ones((2, 2))], [np.ones((2, 2))]), ValueError,
     "ConvTranspose: has_bias is true but the layer has no second parameter (the biases)"),
])
def test_convt_block_errors(make, error, message):
    with pytest.raises(error, match=exact(message)):
        make()


def test_convt_simplenn_layer_checks():
    rng = np.random.default_rng(2)
    net = convt_net(rng, np.float32)
    net["layers"][0]["numGroups"] = 0
    with pytest.raises(ValueError, match=exact("vl_simplenn_tidy: layers[0] ('up'): numGroups must be a positive "
                                               "integer, got 0")):
        vl_simplenn_tidy(net)
    net["layers"][0]["numGroups"] = 3
    net["layers"][0]["weights"][0] = np.ones((2, 2, 2, 2, 2), np.float32)
    with pytest.raises(ValueError, match=exact(
            "vl_simplenn_tidy: layers[0] ('up'): the filters weights[0] must be FH x FW x K x C (2 to 4 "
            "dimensions), got shape (2, 2, 2, 2, 2)")):
        vl_simplenn_tidy(net)


def test_convt_tidy_defaults_and_display(capsys):
    layer = vl_simplenn_tidy({"layers": [{"type": "convt", "weights": [np.ones((4, 4, 2, 3), np.float32), None]}]})
    layer = layer["layers"][0]
    assert (layer["crop"], layer["upsample"], layer["numGroups"], layer["opts"]) == (0, 1, 1, [])
    net = convt_net(np.random.default_rng(3), np.float32)
    info = vl_simplenn_display(net, input_size=[3, 4, 6, 2])
    assert "convt" in capsys.readouterr().out
    x = np.zeros((3, 4, 6, 2), np.float32)
    res = vl_simplenn(net, x)
    for l in range(4):
        assert tuple(info["dataSize"][:, l]) == res[l]["x"].shape + (1,) * (4 - res[l]["x"].ndim)


@pytest.mark.parametrize("dtype", DTYPES)
def test_convt_model_files_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(4)
    net = vl_simplenn_tidy(convt_net(rng, dtype))
    path = os.path.join(tmp_path, "net.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)
    for a, b in zip(net["layers"], loaded["layers"]):
        for field in ("type", "name", "upsample", "crop", "numGroups", "opts"):
            if field in a:
                assert np.array_equal(np.ravel(a[field]), np.ravel(b[field])), field
    x = randn(rng, 3, 4, 6, 2, dtype=dtype)
    np.testing.assert_array_equal(vl_simplenn(loaded, x)[-1]["x"], vl_simplenn(net, x)[-1]["x"])


# ------------------------------------------------------------------------------------------------
# Crop
# ------------------------------------------------------------------------------------------------


def crop_reference(x1, size2, crop):
    """MatConvNet's Crop: drop (H1-H2, W1-W2) rows/columns, at most crop[0]/crop[1] of them first."""
    dv, du = x1.shape[0] - size2[0], x1.shape[1] - size2[1]
    top, left = min(crop[0], dv), min(crop[1], du)
    return x1[top:top + size2[0], left:left + size2[1]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("crop, size2", [((0, 0), (5, 4)), ((1, 2), (5, 4)), ((9, 9), (5, 4)), (3, (8, 7)),
                                         ((2, 0), (3, 1))])
def test_crop_matches_matconvnet_rule(dtype, crop, size2):
    rng = np.random.default_rng(5)
    x1 = randn(rng, 8, 7, 3, 2, dtype=dtype)
    x2 = np.zeros(size2 + (5, 2), dtype)
    block = Crop(crop=crop)
    y = block.forward([x1, x2], [])[0]
    c = (crop, crop) if np.isscalar(crop) else crop
    np.testing.assert_array_equal(y, crop_reference(x1, size2, c))
    assert [y.shape] == block.get_output_sizes([x1.shape, x2.shape], [])
    dzdy = randn(rng, *y.shape, dtype=dtype)
    (dx1, dx2), dparams = block.backward([x1, x2], [], [dzdy])
    assert dx2 is None and dparams == []
    top, bottom, left, right = block.adapted_crop(x1.shape, x2.shape)
    np.testing.assert_array_equal(dx1, vl_nncrop(x1, [top, bottom, left, right], dzdy))
    if dtype == np.float64:
        check_derivative(lambda t: block.forward([t, x2], [])[0], x1, dzdy, dx1, method="central", rtol=1e-9)


def test_crop_in_a_network_takes_the_size_of_its_second_input():
    rng = np.random.default_rng(6)
    net = DagNN()
    net.add_layer("up", ConvTranspose(size=(4, 4, 2, 3), upsample=2, has_bias=False), "x", "big", "f")
    net.add_layer("crop", Crop(crop=1), ["big", "like"], "y")
    net.init_params(rng=0)
    x, like = randn(rng, 3, 3, 3, 1, dtype=np.float32), np.zeros((6, 5, 1, 1), np.float32)
    net.eval({"x": x, "like": like}, {"y": np.ones((6, 5, 2, 1), np.float32)})
    assert net.get_var("y").value.shape == (6, 5, 2, 1)
    assert net.get_var("like").der is None
    assert net.get_var_sizes({"x": x.shape, "like": like.shape})["y"] == (6, 5, 2, 1)


def test_crop_errors():
    with pytest.raises(ValueError, match=exact("Crop: input 0 is 4 x 4, smaller than input 1 (5 x 3); it can only "
                                               "be cropped to a smaller size")):
        Crop().forward([np.ones((4, 4)), np.ones((5, 3))], [])
    with pytest.raises(ValueError, match=exact("Crop: crop must be 1 or 2 non-negative whole numbers, got -1")):
        Crop(crop=-1)


# ------------------------------------------------------------------------------------------------
# Scale
# ------------------------------------------------------------------------------------------------


def scale_reference(x, s, b):
    """y[i,j,k,n] = x[i,j,k,n] * s[...] + b[...], each index of s and b taken as 0 where it is 1 (loops)."""
    x4 = x.reshape(x.shape + (1,) * (4 - x.ndim))
    s4 = s.reshape(s.shape + (1,) * (4 - s.ndim))
    b4 = None if b is None else b.reshape(b.shape + (1,) * (4 - b.ndim))
    y = np.empty_like(x4)
    for idx in np.ndindex(*x4.shape):
        at = tuple(i if d > 1 else 0 for i, d in zip(idx, s4.shape))
        y[idx] = x4[idx] * s4[at]
        if b4 is not None:
            y[idx] += b4[tuple(i if d > 1 else 0 for i, d in zip(idx, b4.shape))]
    return y.reshape(x.shape)


SCALE_SHAPES = [((4, 3, 5, 2), (1, 1, 5)), ((4, 3, 5, 2), (1, 1, 5, 2)), ((4, 3, 5), (4, 3)), ((4, 3, 5, 2), (1,)),
                ((4, 3, 5, 2), (4, 1, 1, 2)), ((3, 2), (3, 2))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, s_shape", SCALE_SHAPES)
def test_scale_broadcasts_as_matlab_and_its_derivatives(dtype, x_shape, s_shape):
    rng = np.random.default_rng(7)
    x, s, b = randn(rng, *x_shape, dtype=dtype), randn(rng, *s_shape, dtype=dtype), randn(rng, *s_shape, dtype=dtype)
    block = Scale(size=s_shape)
    y = block.forward([x], [s, b])[0]
    assert y.shape == x.shape and y.dtype == dtype and y.flags.f_contiguous
    np.testing.assert_allclose(y, scale_reference(x, s, b), rtol=1e-6 if dtype == np.float32 else 1e-15)
    assert block.get_output_sizes([x.shape], [s.shape, b.shape]) == [x.shape]
    dzdy = randn(rng, *x_shape, dtype=dtype)
    (dx,), (ds, db) = block.backward([x], [s, b], [dzdy])
    assert dx.shape == x.shape and ds.shape == s.shape and db.shape == b.shape
    assert dx.dtype == ds.dtype == db.dtype == dtype
    if dtype == np.float64:
        for k, (arg, der) in enumerate(((x, dx), (s, ds), (b, db))):
            def g(t, k=k):
                args = [x, s, b]
                args[k] = t
                return block.forward(args[:1], args[1:])[0]
            check_derivative(g, arg, dzdy, der, method="central", rtol=1e-8)


def test_scale_arguments_may_be_inputs_and_the_bias_optional():
    rng = np.random.default_rng(8)
    x, s, b = randn(rng, 3, 3, 2), randn(rng, 1, 1, 2), randn(rng, 1, 1, 2)
    dzdy = randn(rng, 3, 3, 2)
    by_params = Scale().backward([x], [s, b], [dzdy])
    der_inputs, der_params = Scale().backward([x, s], [b], [dzdy])
    assert len(der_inputs) == 2 and len(der_params) == 1
    for got, expected in zip(der_inputs + der_params, by_params[0] + by_params[1]):
        np.testing.assert_array_equal(got, expected)
    no_bias = Scale(has_bias=False)
    np.testing.assert_array_equal(no_bias.forward([x], [s])[0], x * s)
    assert len(no_bias.backward([x], [s], [dzdy])[1]) == 1
    ones, zeros = Scale(size=[1, 1, 2]).init_params(None)
    assert ones.shape == zeros.shape == (1, 1, 2) and ones.all() and not zeros.any()
    assert len(Scale(size=3, has_bias=False).init_params(None)) == 1


def test_scale_in_a_network_and_its_files(tmp_path):
    rng = np.random.default_rng(9)
    net = DagNN()
    net.add_layer("up", ConvTranspose(size=(3, 3, 2, 4), upsample=2, crop=1), "x", "u", ["uf", "ub"])
    net.add_layer("scale", Scale(size=[1, 1, 2]), "u", "s", ["sc", "sb"])
    net.add_layer("crop", Crop(crop=[1, 0]), ["s", "x"], "y")
    net.init_params(rng=0)
    net.get_param("sc").value = randn(rng, 1, 1, 2, dtype=np.float32)
    path = os.path.join(tmp_path, "net.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path)
    saved = net.saveobj()["layers"][1]["block"]
    assert set(saved) == {"size", "hasBias"} and np.array_equal(saved["size"], [1, 1, 2]) and saved["hasBias"] is True
    for a, b in zip(net.layers, loaded.layers):
        assert type(a.block) is type(b.block) and a.block.save().keys() == b.block.save().keys()
        for key, value in a.block.save().items():
            assert np.array_equal(np.ravel(value), np.ravel(b.block.save()[key])), key
    x = randn(rng, 4, 4, 4, 2, dtype=np.float32)
    dzdy = randn(rng, 4, 4, 2, 2, dtype=np.float32)
    for dag in (net, loaded):
        dag.eval({"x": x}, {"y": dzdy})
    for name in ("y", "x"):
        np.testing.assert_array_equal(net.get_var(name).value, loaded.get_var(name).value)
        np.testing.assert_array_equal(net.get_var(name).der, loaded.get_var(name).der)
    for a, b in zip(net.params, loaded.params):
        np.testing.assert_array_equal(a.der, b.der)


@pytest.mark.parametrize("make, error, message", [
    (lambda: Scale().forward([np.ones((4, 3))], [np.ones((1, 2)), np.ones(1)]), ValueError,
     "Scale: SCALE has shape (1, 2), which does not broadcast to X's (4, 3) (each dimension must be 1 or X's)"),
    (lambda: Scale().forward([np.ones((4, 3))], [np.ones((4, 3, 2)), np.ones(1)]), ValueError,
     "Scale: SCALE has shape (4, 3, 2), which does not broadcast to X's (4, 3) (each dimension must be 1 or X's)"),
    (lambda: Scale().forward([np.ones((4, 3))], [np.ones(1)]), ValueError,
     "Scale: needs 3 arguments (x, scale, bias) as inputs and parameters, got 2"),
    (lambda: Scale(has_bias=False).forward([np.ones((4, 3))], []), ValueError,
     "Scale: needs 2 arguments (x, scale) as inputs and parameters, got 1"),
    (lambda: Scale().forward([np.ones((4, 3))], [np.ones(1, np.float32), np.ones(1)]), TypeError,
     "Scale: SCALE is float32 but X is float64; all arrays must share one dtype"),
    (lambda: Scale().forward([np.ones((4, 3), int)], [np.ones(1), np.ones(1)]), TypeError,
     "Scale: X must be a float32 or float64 array, got an integer array (int64)"),
    (lambda: Scale(size=[1, -1]), ValueError, "Scale: size must be non-negative whole numbers (a shape) or [], "
                                              "got [1, -1]"),
    (lambda: Scale().init_params(None), ValueError,
     "Scale: size is not set; give Scale(size=...) the shape of the scale and bias"),
])
def test_scale_errors(make, error, message):
    with pytest.raises(error, match=exact(message)):
        make()


def test_scale_read_only_inputs():
    rng = np.random.default_rng(10)
    args = [randn(rng, 3, 4, 2), randn(rng, 1, 1, 2), randn(rng, 1, 4), randn(rng, 3, 4, 2)]
    expected = Scale().backward(args[:1], args[1:3], args[3:])
    for a in args:
        a.setflags(write=False)
    got = Scale().backward(args[:1], args[1:3], args[3:])
    for g, e in zip(got[0] + got[1], expected[0] + expected[1]):
        assert g.tobytes() == e.tobytes()


# ------------------------------------------------------------------------------------------------
# ElementWise
# ------------------------------------------------------------------------------------------------


def test_elementwise_blocks_keep_their_first_inputs_size():
    for block in (ReLU(), PReLU(), DropOut(), Sum(), Scale(), Crop()):
        assert isinstance(block, ElementWise)
    assert ReLU().get_output_sizes([(5, 4, 3, 2)], []) == [(5, 4, 3, 2)]
    assert Sum().get_output_sizes([(5, 4, 3, 2), (5, 4, 3, 2)], []) == [(5, 4, 3, 2)]
    assert Scale().get_output_sizes([None], [(1, 1, 3)]) == [None]
    assert not isinstance(ConvTranspose(), ElementWise) and issubclass(ElementWise, Layer)

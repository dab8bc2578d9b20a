"""ELU, SELU, softplus, tanh, SiLU, GELU and clipped ReLU: the blocks against NumPy references,
finite differences and PyTorch, their call forms, threads and edge values; their layer kinds in
both graphs and in model files.

None of them is in MatConvNet, so there are no MatConvNet reference outputs to compare with.
"""
import math
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.special import erfc, expit

import cnnx
from cnnx import (DagNN, load_matconvnet, save_matconvnet, vl_nnclippedrelu, vl_nnelu, vl_nngelu, vl_nnselu,
                  vl_nnsilu, vl_nnsoftplus, vl_nntanh, vl_simplenn, vl_simplenn_tidy)
from cnnx.dagnn import ELU, GELU, SELU, ClippedReLU, SiLU, Softplus, Tanh
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
# SELU's constants from its paper, independently of cnnx's
ALPHA_SELU = 1.6732632423543772848170429916717
SCALE_SELU = 1.0507009873554804934193349852946
K_GELU = math.sqrt(2 / math.pi)


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"


# ---------------------------------------------------------------- NumPy references (float64, obvious)
def elu_ref(alpha=1.0, scale=1.0):
    return (lambda x: scale * np.where(x > 0, x, alpha * np.expm1(x)),
            lambda x: scale * np.where(x > 0, 1.0, alpha * np.exp(x)))


# x / 2 * (1 + tanh(u)), with (1 + tanh(u)) / 2 = expit(2u) and 1 - tanh(u)^2 = 4 expit(2u) expit(-2u)
# (the forms without cancellation in the tails)
def gelu_tanh(x):
    return x * expit(2 * K_GELU * (x + 0.044715 * x**3))


def gelu_tanh_slope(x):
    u = K_GELU * (x + 0.044715 * x**3)
    return expit(2 * u) + 0.5 * x * 4 * expit(2 * u) * expit(-2 * u) * K_GELU * (1 + 3 * 0.044715 * x**2)


def clipped_ref(ceiling):
    return (lambda x: np.clip(x, 0, ceiling), lambda x: ((x > 0) & (x < ceiling)).astype(np.float64))


def silu_slope(x):
    s = expit(x)
    return s * (1 + x * (1 - s))


# (id, block function, options, reference y(x), reference dy/dx(x), PyTorch's y(F, t))
CASES = [
    ("elu", vl_nnelu, {}, *elu_ref(), lambda F, t: F.elu(t)),
    ("elu-alpha0.3", vl_nnelu, {"alpha": 0.3}, *elu_ref(0.3), lambda F, t: F.elu(t, alpha=0.3)),
    ("elu-alpha2.5", vl_nnelu, {"alpha": 2.5}, *elu_ref(2.5), lambda F, t: F.elu(t, alpha=2.5)),
    ("selu", vl_nnselu, {}, *elu_ref(ALPHA_SELU, SCALE_SELU), lambda F, t: F.selu(t)),
    ("softplus", vl_nnsoftplus, {}, lambda x: np.logaddexp(0, x), expit, lambda F, t: F.softplus(t)),
    ("tanh", vl_nntanh, {}, np.tanh, lambda x: 1 / np.cosh(x) ** 2, lambda F, t: F.tanh(t)),
    ("silu", vl_nnsilu, {}, lambda x: x * expit(x), silu_slope, lambda F, t: F.silu(t)),
    ("gelu", vl_nngelu, {}, lambda x: x * 0.5 * erfc(-x / math.sqrt(2)),
     lambda x: 0.5 * erfc(-x / math.sqrt(2)) + x * np.exp(-x**2 / 2) / math.sqrt(2 * math.pi),
     lambda F, t: F.gelu(t)),
    ("gelu-tanh", vl_nngelu, {"approximate": "tanh"}, gelu_tanh, gelu_tanh_slope,
     lambda F, t: F.gelu(t, approximate="tanh")),
    ("clippedrelu", vl_nnclippedrelu, {}, *clipped_ref(6.0), lambda F, t: F.relu6(t)),
    ("clippedrelu-1.5", vl_nnclippedrelu, {"ceiling": 1.5}, *clipped_ref(1.5),
     lambda F, t: F.hardtanh(t, 0.0, 1.5)),
]
IDS = [case[0] for case in CASES]
SHAPES = [(5, 4, 3, 2), (6, 5, 3), (7, 4), (11,), (2, 3, 2, 2, 2)]


def inputs(shape, dtype, seed=0):
    """Values in [-9, 9], none within 0.05 of a kink (0, 1.5, 6), so finite differences never cross one."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-9, 9, shape)
    for kink in (0.0, 1.5, 6.0):
        near = np.abs(x - kink) < 0.05
        x[near] = kink + 0.3
    return x.astype(dtype)


def reference(case, x, dzdy):
    """(y, dzdx) of the reference in float64, rounded to x's type."""
    _, _, _, value, slope, _ = case
    x64 = x.astype(np.float64)
    return value(x64).astype(x.dtype), (dzdy.astype(np.float64) * slope(x64)).astype(x.dtype)


def tolerances(dtype):
    # the kernels compute in double and round once: float32 results are within an ulp of the reference
    # (libm's and SciPy's functions may differ in the last bits of the double; erfc in the far tail by
    # about 100 ulp)
    return {"rtol": 1.2e-7, "atol": 1e-37} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-300}


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_numpy_reference(case, shape, dtype):
    _, fn, opts = case[:3]
    x = inputs(shape, dtype)
    dzdy = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    ref_y, ref_dzdx = reference(case, x, dzdy)
    y = fn(x, **opts)
    assert y.dtype == dtype and y.shape == x.shape and y.flags.f_contiguous
    np.testing.assert_allclose(y, ref_y, **tolerances(dtype))
    dzdx = fn(x, dzdy, **opts)
    assert dzdx.dtype == dtype and dzdx.shape == x.shape and dzdx.flags.f_contiguous
    np.testing.assert_allclose(dzdx, ref_dzdx, **tolerances(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_values_at_the_kinks_and_zero(case, dtype):
    _, fn, opts = case[:3]
    x = np.array([0.0, 1.5, 6.0, -0.0], dtype=dtype)
    ref_y, ref_dzdx = reference(case, x, np.ones_like(x))
    np.testing.assert_allclose(fn(x, **opts), ref_y, **tolerances(dtype))
    # at a kink the slope is the one from the left (ELU: alpha, clipped ReLU: 0 at 0 and at the ceiling)
    np.testing.assert_allclose(fn(x, np.ones_like(x), **opts), ref_dzdx, **tolerances(dtype))


def test_slopes_at_the_kinks():
    x = np.array([0.0, 6.0, 3.0])
    assert vl_nnelu(x, np.ones(3), alpha=0.3)[0] == 0.3
    np.testing.assert_array_equal(vl_nnclippedrelu(x, np.ones(3)), [0, 0, 1])
    np.testing.assert_array_equal(vl_nnclippedrelu(x, np.ones(3), ceiling=3), [0, 0, 0])


def test_memory_orders_and_views():
    base = inputs((6, 8, 4, 3), np.float64, seed=2)
    for x in (np.ascontiguousarray(base), base[::2, 1::3], base.transpose(2, 0, 3, 1)):
        dzdy = np.ascontiguousarray(np.random.default_rng(3).standard_normal(x.shape))
        for case in CASES:
            _, fn, opts = case[:3]
            ref_y, ref_dzdx = reference(case, x, dzdy)
            np.testing.assert_allclose(fn(x, **opts), ref_y, **tolerances(np.float64))
            np.testing.assert_allclose(fn(x, dzdy, **opts), ref_dzdx, **tolerances(np.float64))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_empty_and_zero_dimensional(case):
    _, fn, opts = case[:3]
    empty = np.zeros((0, 3, 2), np.float32)
    assert fn(empty, **opts).shape == (0, 3, 2) and fn(empty, empty, **opts).shape == (0, 3, 2)
    y = fn(np.float64(0.5), **opts)
    assert y.shape == ()
    np.testing.assert_allclose(y, reference(case, np.array(0.5), np.array(1.0))[0], **tolerances(np.float64))


def test_nan_and_infinities():
    nan, inf = np.nan, np.inf
    x = np.array([nan, inf, -inf, -1000.0, 1000.0])
    ones = np.ones_like(x)
    expected = {  # (y, dzdx for dzdy = 1)
        "elu": ([nan, inf, -1, -1, 1000], [nan, 1, 0, 0, 1]),
        "softplus": ([nan, inf, 0, 0, 1000], [nan, 1, 0, 0, 1]),
        "tanh": ([nan, 1, -1, -1, 1], [nan, 0, 0, 0, 0]),
        # -inf * sigmoid(-inf) and -inf * Phi(-inf) are -inf * 0, as in PyTorch; so is the slope at +-inf
        "silu": ([nan, inf, nan, -0.0, 1000], [nan, nan, nan, 0, 1]),
        "gelu": ([nan, inf, nan, -0.0, 1000], [nan, nan, nan, 0, 1]),
        "gelu-tanh": ([nan, inf, nan, -0.0, 1000], [nan, 1, 0, 0, 1]),
        "clippedrelu": ([nan, 6, 0, 0, 6], [0, 0, 0, 0, 0]),
    }
    for case in CASES:
        if case[0] in expected:
            _, fn, opts = case[:3]
            y, dzdx = expected[case[0]]
            np.testing.assert_array_equal(fn(x, **opts), y, err_msg=case[0])
            np.testing.assert_array_equal(fn(x, ones, **opts), dzdx, err_msg=case[0])
    # dzdy's inf and NaN propagate through the product with the slope
    np.testing.assert_array_equal(vl_nntanh(np.array([0.0, 0.0, inf]), np.array([inf, nan, inf])), [inf, nan, nan])
    # beyond float32's range of x, the tanh form's second term vanishes rather than giving inf * 0
    np.testing.assert_array_equal(vl_nngelu(np.array([1e200, -1e200]), np.ones(2), approximate="tanh"), [1, 0])


# ---------------------------------------------------------------- derivatives
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_matconvnet_check(case, dtype):
    _, fn, opts = case[:3]
    x = inputs((5, 4, 3, 2), dtype, seed=4)
    dzdy = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    check_derivative(lambda t: fn(t, **opts), x, dzdy, fn(x, dzdy, **opts))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_central_float64(case):
    _, fn, opts = case[:3]
    x = np.ascontiguousarray(inputs((4, 3, 5), np.float64, seed=6))
    dzdy = np.random.default_rng(7).standard_normal(x.shape)
    check_derivative(lambda t: fn(t, **opts), x, dzdy, fn(x, dzdy, **opts), method="central", rtol=1e-8)


# ---------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_torch(case, dtype):
    torch = pytest.importorskip("torch")
    _, fn, opts, _, _, torch_fn = case
    x = inputs((5, 6, 3, 4), dtype, seed=8)
    dzdy = np.random.default_rng(9).standard_normal(x.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(torch.nn.functional, xt)
    yt.backward(torch.tensor(dzdy))
    # PyTorch computes float32 in float32, and GELU's tanh form as 1 + tanh(u), which loses about
    # ulp(1) * |x| * |dzdy| in the lower tail (|x| < 9, |dzdy| < 4 here)
    tol = {"rtol": 2e-6, "atol": 5e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    np.testing.assert_allclose(fn(x, **opts), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(fn(x, dzdy, **opts), xt.grad.numpy(), **tol)


# ---------------------------------------------------------------- call forms
def test_call_forms_and_option_spellings():
    x = inputs((3, 4, 2), np.float32, seed=10)
    dzdy = np.random.default_rng(11).standard_normal(x.shape).astype(np.float32)
    for fn, name, value in ((vl_nnelu, "alpha", 0.4), (vl_nngelu, "approximate", "tanh"),
                            (vl_nnclippedrelu, "ceiling", 2.0)):
        y, back = fn(x, **{name: value}), fn(x, dzdy, **{name: value})
        for spelling in (name, name.upper(), name.capitalize()):
            np.testing.assert_array_equal(fn(x, spelling, value), y)
            np.testing.assert_array_equal(fn(x, [], spelling, value), y)
            np.testing.assert_array_equal(fn(x, None, spelling, value), y)
            np.testing.assert_array_equal(fn(x, dzdy, spelling, value), back)
        np.testing.assert_array_equal(fn(x, dzdy=dzdy, **{name: value}), back)
        np.testing.assert_array_equal(fn(x, dzdy=None, **{name: value}), y)
        assert not np.array_equal(fn(x), y)  # the option changed something
    np.testing.assert_array_equal(vl_nngelu(x, approximate="TANH"), vl_nngelu(x, approximate="tanh"))
    np.testing.assert_array_equal(vl_nngelu(x, approximate="None"), vl_nngelu(x))
    for fn in (vl_nnselu, vl_nnsoftplus, vl_nntanh, vl_nnsilu):
        np.testing.assert_array_equal(fn(x, []), fn(x))
        np.testing.assert_array_equal(fn(x, dzdy=dzdy), fn(x, dzdy))


def test_selu_is_elu_with_its_constants_scaled():
    x = inputs((4, 5, 3), np.float64, seed=12)
    np.testing.assert_allclose(vl_nnselu(x), SCALE_SELU * vl_nnelu(x, alpha=ALPHA_SELU), rtol=1e-15)
    np.testing.assert_array_equal(vl_nnelu(x, alpha=1), vl_nnelu(x))


def test_errors_name_the_function_and_argument():
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match=exact(
            "vl_nnelu: X must be a float32 or float64 array, got an integer array (int32)")):
        vl_nnelu(np.ones((2, 3), np.int32))
    with pytest.raises(TypeError, match=exact(
            "vl_nngelu: DZDY is float64 but X is float32; all arrays must share one dtype")):
        vl_nngelu(x, np.ones(x.shape))
    with pytest.raises(ValueError, match=exact("vl_nnsilu: DZDY has shape (2, 3) but X has shape (2, 3, 4)")):
        vl_nnsilu(x, np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=exact("vl_nnelu: unknown option 'leak'. Valid options are: Alpha")):
        vl_nnelu(x, "leak", 0.1)
    with pytest.raises(TypeError, match=exact("vl_nnselu: unknown option 'alpha'; vl_nnselu takes no options")):
        vl_nnselu(x, alpha=1.0)
    with pytest.raises(TypeError, match=exact("vl_nntanh: DZDY is given both positionally and as a keyword")):
        vl_nntanh(x, x, dzdy=x)
    with pytest.raises(ValueError, match=exact(
            "vl_nngelu: Approximate must be one of 'none', 'tanh', got 'erf'")):
        vl_nngelu(x, "Approximate", "erf")
    with pytest.raises(ValueError, match=exact("vl_nnclippedrelu: Ceiling must be at least 0.0, got -1.0")):
        vl_nnclippedrelu(x, ceiling=-1)


# ---------------------------------------------------------------- threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_identical_at_one_and_two_threads(dtype, restore_threads):
    x = inputs((60, 100, 3, 4), dtype, seed=13)  # 72000 elements: two threads under the policy
    dzdy = np.random.default_rng(14).standard_normal(x.shape).astype(dtype)
    results = []
    for threads in (1, 2):
        cnnx.set_num_threads(threads)
        results.append([out for _, fn, opts, *_ in CASES for out in (fn(x, **opts), fn(x, dzdy, **opts))])
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


def test_concurrent_calls_from_python_threads():
    xs = [inputs((32, 32, 8, 4), np.float32, seed=s) for s in range(4)]

    def work(x):
        return [out for _, fn, opts, *_ in CASES for out in (fn(x, **opts), fn(x, x, **opts))]

    expected = [work(x) for x in xs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(work, xs * 2))
    for i, result in enumerate(got):
        for r, e in zip(result, expected[i % len(xs)]):
            assert r.tobytes() == e.tobytes()


# ---------------------------------------------------------------- layer kinds
KINDS = [  # (SimpleNN layer, DagNN block, block function, options)
    ({"type": "elu", "alpha": 0.5}, ELU, vl_nnelu, {"alpha": 0.5}),
    ({"type": "selu"}, SELU, vl_nnselu, {}),
    ({"type": "softplus"}, Softplus, vl_nnsoftplus, {}),
    ({"type": "tanh"}, Tanh, vl_nntanh, {}),
    ({"type": "silu"}, SiLU, vl_nnsilu, {}),
    ({"type": "gelu", "approximate": "tanh"}, GELU, vl_nngelu, {"approximate": "tanh"}),
    ({"type": "clippedrelu", "ceiling": 1.5}, ClippedReLU, vl_nnclippedrelu, {"ceiling": 1.5}),
    ({"type": "gelu"}, GELU, vl_nngelu, {}),
    ({"type": "clippedrelu"}, ClippedReLU, vl_nnclippedrelu, {}),
]


def kinds_net(rng, dtype):
    """conv, then every activation kind with a 1x1 conv after each, then softmaxloss."""
    layers = [{"type": "conv", "name": "conv0", "weights": [rng.standard_normal((3, 3, 3, 4)).astype(dtype),
                                                           rng.standard_normal((1, 4)).astype(dtype)]}]
    for k, (layer, *_) in enumerate(KINDS):
        layers.append(dict(layer, name=f"act{k}"))
        layers.append({"type": "conv", "name": f"conv{k + 1}",
                       "weights": [rng.standard_normal((1, 1, 4, 4)).astype(dtype) * dtype(0.7),
                                   rng.standard_normal((1, 4)).astype(dtype)]})
    layers.append({"type": "softmaxloss", "name": "loss", "class": np.array([1.0, 3.0])})
    return {"layers": layers}


@pytest.mark.parametrize("dtype", DTYPES)
def test_simplenn_and_dagnn_give_identical_values_and_derivatives(dtype):
    rng = np.random.default_rng(15)
    net = kinds_net(rng, dtype)
    x = rng.standard_normal((6, 6, 3, 2)).astype(dtype)
    c = net["layers"][-1]["class"]
    res = vl_simplenn(net, x, dtype(1))
    dag = DagNN.from_simplenn(net)
    dag.conserve_memory = False
    n = len(net["layers"])
    dag.eval({"x0": x, "label": c}, {f"x{n}": 1})
    for i, layer in enumerate(dag.layers):
        if i % 2 == 1 and i < n - 1:  # the activations: the block, its properties and its own function's values
            _, block, fn, opts = KINDS[i // 2]
            defaults = {field: option.default for field, option in block.function_options.items()}
            assert type(layer.block) is block and layer.block.options() == {**defaults, **opts}
            np.testing.assert_array_equal(res[i + 1]["x"], fn(res[i]["x"], **opts))
        np.testing.assert_array_equal(dag.get_var(f"x{i + 1}").value, res[i + 1]["x"], err_msg=layer.name)
        np.testing.assert_array_equal(dag.get_var(f"x{i}").der, res[i]["dzdx"], err_msg=layer.name)
        for name, dzdw in zip(layer.params, res[i]["dzdw"]):
            np.testing.assert_array_equal(dag.get_param(name).der, dzdw, err_msg=name)
    assert res[0]["dzdx"].any()


def test_tidy_fills_the_defaults_and_checks_the_options():
    tidy = vl_simplenn_tidy({"layers": [dict(layer) for layer, *_ in KINDS[1:5]] + [
        {"type": "elu"}, {"type": "gelu"}, {"type": "clippedrelu"}]})["layers"]
    assert [layer["name"] for layer in tidy] == [f"layer{k}" for k in range(1, 8)]
    assert tidy[4]["alpha"] == 1.0 and tidy[5]["approximate"] == "none" and tidy[6]["ceiling"] == 6.0
    for layer, error, message in [
        ({"type": "elu", "alpha": np.nan}, ValueError, "Alpha must be a finite real number, got nan"),
        ({"type": "elu", "alpha": "1"}, TypeError, "Alpha must be a real number, got '1'"),
        ({"type": "gelu", "approximate": "erf"}, ValueError, "Approximate must be one of 'none', 'tanh', got 'erf'"),
        ({"type": "clippedrelu", "ceiling": -1}, ValueError, "Ceiling must be at least 0.0, got -1.0"),
    ]:
        with pytest.raises(error, match=exact(f"vl_simplenn_tidy: layers[0]: {message}")):
            vl_simplenn_tidy({"layers": [layer]})


def test_dagnn_blocks_properties_and_sizes():
    assert ELU().alpha == 1.0 and GELU().approximate == "none" and ClippedReLU().ceiling == 6.0
    assert GELU(approximate="TANH").approximate == "tanh" and ClippedReLU(ceiling=np.inf).ceiling == np.inf
    assert ELU(alpha=np.array([[0.5]])).alpha == 0.5  # as a MATLAB file gives it
    assert SELU().saved_properties == () and ELU().save() == {"alpha": 1.0}
    assert GELU().save() == {"approximate": "none"} and ClippedReLU(ceiling=3).save() == {"ceiling": 3.0}
    for block in (ELU(), SELU(), Softplus(), Tanh(), SiLU(), GELU(), ClippedReLU()):
        assert block.get_output_sizes([(5, 4, 3, 2)], []) == [(5, 4, 3, 2)]
        assert block.type_name == "dagnn." + type(block).__name__
    for make, error, message in [
        (lambda: ELU(alpha="x"), TypeError, "ELU: alpha must be a finite number, got the string 'x'"),
        (lambda: ELU(alpha=np.inf), ValueError, "ELU: alpha must be a finite number, got inf"),
        (lambda: GELU(approximate="erf"), ValueError,
         "GELU: approximate must be one of 'none', 'tanh', got the string 'erf'"),
        (lambda: ClippedReLU(ceiling=-1), ValueError, "ClippedReLU: ceiling must be a number of at least 0, got -1"),
        (lambda: ClippedReLU(ceiling=np.nan), ValueError,
         "ClippedReLU: ceiling must be a number of at least 0, got nan"),
        (lambda: SELU().load({"alpha": 1}), ValueError, "SELU has no property 'alpha' (its properties: none)"),
    ]:
        with pytest.raises(error, match=exact(message)):
            make()


def test_model_files_round_trip(tmp_path):
    rng = np.random.default_rng(16)
    net = vl_simplenn_tidy(kinds_net(rng, np.float32))
    save_matconvnet(net, tmp_path / "simple.mat")
    loaded = load_matconvnet(tmp_path / "simple.mat")
    for layer, again in zip(net["layers"], loaded["layers"]):
        assert set(layer) == set(again) and layer["type"] == again["type"]
        for field in ("alpha", "ceiling"):
            if field in layer:
                assert type(again[field]) is float and again[field] == layer[field]
        if "approximate" in layer:
            assert type(again["approximate"]) is str and again["approximate"] == layer["approximate"]
    x = rng.standard_normal((6, 6, 3, 2)).astype(np.float32)
    assert vl_simplenn(loaded, x)[-2]["x"].tobytes() == vl_simplenn(net, x)[-2]["x"].tobytes()

    dag = DagNN.from_simplenn(net)
    save_matconvnet(dag, tmp_path / "dag.mat")
    again = load_matconvnet(tmp_path / "dag.mat")
    assert [type(layer.block) for layer in again.layers] == [type(layer.block) for layer in dag.layers]
    activations = [k for k, layer in enumerate(dag.layers) if layer.name.startswith("act")]
    assert len(activations) == len(KINDS)
    assert [again.layers[k].block.save() for k in activations] == [dag.layers[k].block.save() for k in activations]
    assert again.get_layer("act5").block.approximate == "tanh" and again.get_layer("act6").block.ceiling == 1.5
    for net_ in (dag, again):
        net_.eval({"x0": x})
    last = f"x{len(net['layers']) - 1}"
    assert again.get_var(last).value.tobytes() == dag.get_var(last).value.tobytes()

"""Tests of vl_nnrelu and vl_nnprelu against NumPy references, finite differences and PyTorch."""
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnx
from cnnx import vl_nnprelu, vl_nnrelu
from cnnx.testing import check_derivative


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"


DTYPES = [np.float32, np.float64]
LEAKS = [0.0, 0.01, 0.1, 0.5]


# ---------------------------------------------------------------- NumPy references (slow, obvious)
def relu_reference(x, leak):
    if leak == 0:
        return np.where(x > 0, x, np.zeros_like(x))
    factor = np.where(x > 0, leak + (1 - leak), leak).astype(x.dtype)
    return x * factor


def relu_backward_reference(x, dzdy, leak):
    factor = np.where(x > 0, leak + (1 - leak), leak).astype(x.dtype)
    return dzdy * factor


def channel_slopes(x, a):
    """a broadcast to x's shape, as (H, W, C, N) with C from the third dimension."""
    x4 = x.reshape(x.shape + (1,) * (4 - x.ndim))
    slopes = np.broadcast_to(np.asarray(a).reshape(-1, order="F"), (x4.shape[2],))
    return np.broadcast_to(slopes[None, None, :, None], x4.shape).reshape(x.shape)


def prelu_reference(x, a):
    return np.where(x > 0, x, channel_slopes(x, a) * x)


def prelu_backward_reference(x, a, dzdy):
    slopes = channel_slopes(x, a)
    dzdx = np.where(x > 0, dzdy, slopes * dzdy)
    x4 = x.reshape(x.shape + (1,) * (4 - x.ndim)).astype(np.float64)
    d4 = dzdy.reshape(x4.shape).astype(np.float64)
    per_channel = np.sum(np.where(x4 > 0, 0.0, d4 * x4), axis=(0, 1, 3))
    if np.size(a) == x4.shape[2]:
        dzda = per_channel.reshape(np.shape(a), order="F")
    else:
        dzda = np.full(np.shape(a), per_channel.sum())
    return dzdx, dzda.astype(x.dtype)


def away_from_zero(shape, dtype, seed=0, gap=0.5):
    """Distinct values with |x| >= gap, so finite differences never cross the kink at 0."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    values = rng.permutation(n) - (n - 1) / 2.0  # ..., -1.5, -0.5, 0.5, 1.5, ... (spacing 1)
    return (values * (2 * gap)).reshape(shape).astype(dtype)


SHAPES = [(5, 4, 3, 2), (6, 5, 3), (7, 4), (1, 1, 16, 8)]


# ---------------------------------------------------------------- ReLU values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(11,), (2, 3, 2, 2, 2)])
@pytest.mark.parametrize("leak", LEAKS)
def test_relu_matches_reference(dtype, shape, leak):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0
    dzdy = rng.standard_normal(shape).astype(dtype)
    y = vl_nnrelu(x, leak=leak)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, relu_reference(x, leak))
    dzdx = vl_nnrelu(x, dzdy, leak=leak)
    assert dzdx.dtype == dtype and dzdx.shape == x.shape
    np.testing.assert_array_equal(dzdx, relu_backward_reference(x, dzdy, leak))
    # the derivative at 0 is the leak (0 for plain ReLU), per MatConvNet's formula
    assert dzdx.flat[0] == dtype(leak) * dzdy.flat[0]


@pytest.mark.parametrize("leak", LEAKS)
def test_relu_backward_accepts_y_for_x(leak):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3, 2)).astype(np.float32)
    dzdy = rng.standard_normal(x.shape).astype(np.float32)
    y = vl_nnrelu(x, leak=leak)
    np.testing.assert_array_equal(vl_nnrelu(y, dzdy, leak=leak), vl_nnrelu(x, dzdy, leak=leak))


def test_relu_call_forms_and_options():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    dzdy = rng.standard_normal(x.shape).astype(np.float32)
    leaky = vl_nnrelu(x, leak=0.2)
    np.testing.assert_array_equal(vl_nnrelu(x, [], "leak", 0.2), leaky)
    np.testing.assert_array_equal(vl_nnrelu(x, None, "LEAK", 0.2), leaky)
    np.testing.assert_array_equal(vl_nnrelu(x, "Leak", 0.2), leaky)
    np.testing.assert_array_equal(vl_nnrelu(x, dzdy=None, leak=0.2), leaky)
    back = vl_nnrelu(x, dzdy, "leak", 0.2)
    np.testing.assert_array_equal(vl_nnrelu(x, dzdy=dzdy, leak=0.2), back)
    np.testing.assert_array_equal(vl_nnrelu(x, dzdy, Leak=0.2), back)
    np.testing.assert_array_equal(vl_nnrelu(x), relu_reference(x, 0.0))


def test_relu_memory_orders_and_views():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((6, 8, 4, 3))
    for x in (np.ascontiguousarray(base), np.asfortranarray(base), base[::2, 1::3], base.transpose(2, 0, 3, 1)):
        dzdy = np.ascontiguousarray(rng.standard_normal(x.shape))
        np.testing.assert_array_equal(vl_nnrelu(x, leak=0.1), relu_reference(x, 0.1))
        np.testing.assert_array_equal(vl_nnrelu(x, dzdy, leak=0.1), relu_backward_reference(x, dzdy, 0.1))
        assert vl_nnrelu(x).flags.f_contiguous


def test_relu_empty_and_scalar():
    x = np.zeros((0, 3, 2), dtype=np.float32)
    assert vl_nnrelu(x).shape == (0, 3, 2)
    assert vl_nnrelu(x, x).shape == (0, 3, 2)
    y = vl_nnrelu(np.float64(-2.0), leak=0.5)
    assert y.shape == () and y == -1.0


def test_relu_nan_and_inf():
    x = np.array([np.nan, np.inf, -np.inf, -1.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(vl_nnrelu(x), [np.nan, np.inf, 0, 0, 2])
    np.testing.assert_array_equal(vl_nnrelu(x, leak=0.5), [np.nan, np.inf, -np.inf, -0.5, 2])
    dzdy = np.array([1.0, 1.0, np.inf, np.nan, 3.0], dtype=np.float32)
    # dzdy times the factor: inf * 0 is NaN, NaN stays NaN
    np.testing.assert_array_equal(vl_nnrelu(x, dzdy), [0, 1, np.nan, np.nan, 3])


# ---------------------------------------------------------------- ReLU derivatives
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("leak", LEAKS)
@pytest.mark.parametrize("shape", [(5, 4, 3, 2), (6, 5, 3)])
def test_relu_derivative_matconvnet_check(dtype, leak, shape):
    x = away_from_zero(shape, dtype, seed=5)
    dzdy = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    g = lambda t: vl_nnrelu(t, leak=leak)
    check_derivative(g, x, dzdy, vl_nnrelu(x, dzdy, leak=leak))


@pytest.mark.parametrize("leak", LEAKS)
def test_relu_derivative_central_float64_c_order(leak):
    x = np.ascontiguousarray(away_from_zero((4, 3, 5), np.float64, seed=7))
    dzdy = np.random.default_rng(8).standard_normal(x.shape)
    g = lambda t: vl_nnrelu(t, leak=leak)
    check_derivative(g, x, dzdy, vl_nnrelu(x, dzdy, leak=leak), method="central", rtol=1e-8)


# ---------------------------------------------------------------- PReLU values and derivatives
SLOPE_FORMS = ["per_channel_row", "per_channel_column", "shared_scalar", "shared_array"]


def make_slopes(form, channels, dtype, seed=9):
    rng = np.random.default_rng(seed)
    if form == "per_channel_row":
        return rng.uniform(0.05, 0.5, (1, channels)).astype(dtype)
    if form == "per_channel_column":
        return rng.uniform(0.05, 0.5, channels).astype(dtype)
    if form == "shared_scalar":
        return np.asarray(dtype(0.25))
    return np.full((1, 1), 0.3, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(3, 70, 5, 9)])
@pytest.mark.parametrize("form", SLOPE_FORMS)
def test_prelu_matches_reference(dtype, shape, form):
    rng = np.random.default_rng(10)
    channels = shape[2] if len(shape) > 2 else 1
    a = make_slopes(form, channels, dtype)
    x = rng.standard_normal(shape).astype(dtype)
    dzdy = rng.standard_normal(shape).astype(dtype)
    y = vl_nnprelu(x, a)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, prelu_reference(x, a))
    dzdx, dzda = vl_nnprelu(x, a, dzdy)
    ref_dzdx, ref_dzda = prelu_backward_reference(x, a, dzdy)
    np.testing.assert_array_equal(dzdx, ref_dzdx)
    assert dzda.shape == np.shape(a) and dzda.dtype == dtype
    np.testing.assert_allclose(dzda, ref_dzda, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", SLOPE_FORMS)
@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (5, 4, 2)])
def test_prelu_derivatives(dtype, form, shape):
    channels = shape[2]
    a = make_slopes(form, channels, dtype)
    x = away_from_zero(shape, dtype, seed=11)
    dzdy = np.random.default_rng(12).standard_normal(shape).astype(dtype)
    dzdx, dzda = vl_nnprelu(x, a, dzdy)
    check_derivative(lambda t: vl_nnprelu(t, a), x, dzdy, dzdx)
    check_derivative(lambda s: vl_nnprelu(x, s), a, dzdy, dzda)
    if dtype == np.float64:
        check_derivative(lambda t: vl_nnprelu(t, a), x, dzdy, dzdx, method="central", rtol=1e-8)
        check_derivative(lambda s: vl_nnprelu(x, s), a, dzdy, dzda, method="central", rtol=1e-8)


def test_prelu_c_ordered_input_and_keyword_dzdy():
    rng = np.random.default_rng(13)
    x = np.ascontiguousarray(rng.standard_normal((5, 6, 4, 3)))
    a = rng.uniform(0.1, 0.3, 4)
    dzdy = np.ascontiguousarray(rng.standard_normal(x.shape))
    dzdx, dzda = vl_nnprelu(x, a, dzdy=dzdy)
    ref_dzdx, ref_dzda = prelu_backward_reference(x, a, dzdy)
    np.testing.assert_array_equal(dzdx, ref_dzdx)
    np.testing.assert_allclose(dzda, ref_dzda, rtol=1e-12)
    np.testing.assert_array_equal(vl_nnprelu(x, a, []), prelu_reference(x, a))


def test_prelu_nan_propagates():
    x = np.array([[np.nan, -1.0], [2.0, -np.inf]]).reshape(2, 2, 1)
    a = np.array([0.5])
    y = vl_nnprelu(x, a)
    assert np.isnan(y[0, 0, 0]) and y[0, 1, 0] == -0.5 and y[1, 1, 0] == -np.inf
    dzdx, dzda = vl_nnprelu(x, a, np.ones_like(x))
    assert np.isnan(dzda[0])
    np.testing.assert_array_equal(dzdx[:, :, 0], [[0.5, 0.5], [1.0, 0.5]])


# ---------------------------------------------------------------- PyTorch cross-checks
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("leak", LEAKS)
def test_relu_against_torch(dtype, leak):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(14)
    x = rng.standard_normal((5, 6, 3, 4)).astype(dtype)
    dzdy = rng.standard_normal(x.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.relu(xt) if leak == 0 else F.leaky_relu(xt, leak)
    yt.backward(torch.tensor(dzdy))
    np.testing.assert_allclose(vl_nnrelu(x, leak=leak), yt.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(vl_nnrelu(x, dzdy, leak=leak), xt.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_against_torch(dtype, shared):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    x = rng.standard_normal((5, 6, 3, 4)).astype(dtype)  # (H, W, C, N)
    dzdy = rng.standard_normal(x.shape).astype(dtype)
    a = rng.uniform(0.05, 0.5, 1 if shared else 3).astype(dtype)
    to_torch = lambda t: torch.tensor(np.ascontiguousarray(t.transpose(3, 2, 0, 1)))
    xt = to_torch(x).requires_grad_(True)
    at = torch.tensor(a, requires_grad=True)
    yt = torch.nn.functional.prelu(xt, at)
    yt.backward(to_torch(dzdy))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(vl_nnprelu(x, a), yt.detach().numpy().transpose(2, 3, 1, 0), rtol=rtol)
    dzdx, dzda = vl_nnprelu(x, a, dzdy)
    np.testing.assert_allclose(dzdx, xt.grad.numpy().transpose(2, 3, 1, 0), rtol=rtol)
    np.testing.assert_allclose(dzda, at.grad.numpy(), rtol=rtol)


# ---------------------------------------------------------------- threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_identical_at_one_and_two_threads(dtype, restore_threads):
    rng = np.random.default_rng(16)
    # big enough to run threaded, with spans of several sizes (H*W = 6000 > one 4096-pixel span)
    x = rng.standard_normal((60, 100, 3, 4)).astype(dtype)
    dzdy = rng.standard_normal(x.shape).astype(dtype)
    a = rng.uniform(0.1, 0.3, 3).astype(dtype)
    results = []
    for threads in (1, 2):
        cnnx.set_num_threads(threads)
        results.append(
            [vl_nnrelu(x), vl_nnrelu(x, dzdy, leak=0.1), vl_nnprelu(x, a), *vl_nnprelu(x, a, dzdy),
             vl_nnprelu(x, a[:1], dzdy)[1]]
        )
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(17)
    inputs = [rng.standard_normal((32, 32, 8, 4)).astype(np.float32) for _ in range(6)]
    a = rng.uniform(0.1, 0.3, 8).astype(np.float32)

    def work(x):
        return vl_nnrelu(x, leak=0.1), vl_nnrelu(x, x), vl_nnprelu(x, a, x)[1]

    expected = [work(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(work, inputs * 3))
    for i, result in enumerate(got):
        for r, e in zip(result, expected[i % len(inputs)]):
            assert r.tobytes() == e.tobytes()


# ---------------------------------------------------------------- errors
def test_errors_name_the_argument():
    x = np.ones((2, 3, 4), dtype=np.float32)
    with pytest.raises(TypeError, match=exact(
            'vl_nnrelu: X must be a float32 or float64 array, got an integer array (int32)')):
        vl_nnrelu(np.ones((2, 3), dtype=np.int32))
    with pytest.raises(TypeError, match=exact(
            'vl_nnrelu: X must be a float32 or float64 array, got a complex array (complex64)')):
        vl_nnrelu(np.ones((2, 3), dtype=np.complex64))
    with pytest.raises(TypeError, match=exact(
            'vl_nnrelu: DZDY is float64 but X is float32; all arrays must share one dtype')):
        vl_nnrelu(x, np.ones(x.shape, dtype=np.float64))
    with pytest.raises(ValueError, match=exact('vl_nnrelu: DZDY has shape (2, 3) but X has shape (2, 3, 4)')):
        vl_nnrelu(x, np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=exact('vl_nnrelu: Leak must be a number from 0 to 2^52, got -0.1')):
        vl_nnrelu(x, leak=-0.1)
    with pytest.raises(ValueError, match=exact('vl_nnrelu: Leak must be a number from 0 to 2^52, got nan')):
        vl_nnrelu(x, leak=float("nan"))
    with pytest.raises(TypeError, match=exact("vl_nnrelu: Leak must be a real number, got 'big'")):
        vl_nnrelu(x, "leak", "big")
    with pytest.raises(TypeError, match=exact("vl_nnrelu: unknown option 'slope'. Valid options are: Leak, Out, Signs")):
        vl_nnrelu(x, "slope", 0.1)
    with pytest.raises(TypeError, match=exact('vl_nnrelu: DZDY is given both positionally and as a keyword')):
        vl_nnrelu(x, x, dzdy=x)
    with pytest.raises(TypeError, match=exact("vl_nnrelu: DZDY must be an array, got the string 'leak'")):
        vl_nnrelu(x, dzdy="leak")
    with pytest.raises(TypeError, match=exact(
            'vl_nnprelu: X must be a float32 or float64 array, got an integer array (int64)')):
        vl_nnprelu(np.ones((2, 3, 4), dtype=np.int64), np.ones(4))
    with pytest.raises(TypeError, match=exact(
            'vl_nnprelu: A is float64 but X is float32; all arrays must share one dtype')):
        vl_nnprelu(x, np.ones(4, dtype=np.float64))
    with pytest.raises(TypeError, match=exact(
            'vl_nnprelu: A must be a float32 or float64 array, got an integer array (int32)')):
        vl_nnprelu(x, np.ones(4, dtype=np.int32))
    with pytest.raises(ValueError, match=exact('vl_nnprelu: A has 3 elements but X has 4 channels (need 1 or C)')):
        vl_nnprelu(x, np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match=exact(
            'vl_nnprelu: DZDY has shape (2, 3, 4, 2) but X has shape (2, 3, 4)')):
        vl_nnprelu(x, np.ones(4, dtype=np.float32), np.ones((2, 3, 4, 2), dtype=np.float32))
    with pytest.raises(TypeError, match=exact(
            'vl_nnprelu: DZDY is float64 but X is float32; all arrays must share one dtype')):
        vl_nnprelu(x, np.ones(4, dtype=np.float32), np.ones(x.shape))
    with pytest.raises(ValueError, match=exact(
            'vl_nnprelu: X must have 2 to 4 dimensions (H x W x C x N), got 1 ((5,))')):
        vl_nnprelu(np.ones(5, dtype=np.float32), np.ones(1, dtype=np.float32))
    with pytest.raises(TypeError, match=exact("vl_nnprelu: unknown option 'leak'; vl_nnprelu takes no options")):
        vl_nnprelu(x, np.ones(4, dtype=np.float32), "leak", 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_relu_out_writes_over_x_or_dzdy_with_the_same_bits(dtype, leak):
    # vl_simplenn writes a ReLU's output over its freed input and its derivative over the freed
    # output derivative: the results must be those of new arrays.
    rng = np.random.default_rng(11)
    x = np.asfortranarray(rng.standard_normal((5, 4, 3, 2)).astype(dtype))
    dzdy = np.asfortranarray(rng.standard_normal(x.shape).astype(dtype))
    y = vl_nnrelu(x, leak=leak)
    dzdx = vl_nnrelu(x, dzdy, leak=leak)
    target = x.copy(order="F")
    assert vl_nnrelu(target, leak=leak, out=target) is target
    assert target.tobytes() == y.tobytes()
    target = dzdy.copy(order="F")
    assert vl_nnrelu(x, target, "Leak", leak, "Out", target) is target
    assert target.tobytes() == dzdx.tobytes()
    other = np.empty_like(x, order="F")
    assert vl_nnrelu(x, dzdy, leak=leak, out=other) is other
    assert other.tobytes() == dzdx.tobytes()


def test_relu_out_errors():
    x = np.asfortranarray(np.ones((4, 3, 2), np.float32))
    with pytest.raises(TypeError, match=exact("vl_nnrelu: OUT must be a float32 array, got a float64 array")):
        vl_nnrelu(x, out=np.ones(x.shape))
    with pytest.raises(TypeError, match=exact("vl_nnrelu: OUT must be a float32 array, got list")):
        vl_nnrelu(x, out=[1.0])
    layout = "vl_nnrelu: OUT must be a writeable, aligned, Fortran-contiguous array of shape (4, 3, 2); it {}"
    with pytest.raises(ValueError, match=exact(layout.format("has shape (4, 3)"))):
        vl_nnrelu(x, out=np.ones((4, 3), np.float32, order="F"))
    with pytest.raises(ValueError, match=exact(layout.format("is not Fortran-contiguous"))):
        vl_nnrelu(x, out=np.ones((4, 3, 2), np.float32))
    frozen = x.copy(order="F")
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=exact(layout.format("is read-only"))):
        vl_nnrelu(x, out=frozen)
    flat = np.ones(25, np.float32)
    with pytest.raises(ValueError, match=exact("vl_nnrelu: OUT overlaps an input without being it")):
        vl_nnrelu(flat[1:].reshape(x.shape, order="F"), out=flat[:24].reshape(x.shape, order="F"))


# ---------------------------------------------------------------- ReLU with packed signs
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(11,), (2, 3, 2, 2, 2), (0, 3), (1,), (9, 1)])
@pytest.mark.parametrize("leak", LEAKS)
def test_relu_signs_match_the_reference_and_the_plain_calls(dtype, shape, leak):
    rng = np.random.default_rng(12)
    x = rng.choice(np.array([-np.inf, -1.5, -0.0, 0.0, 0.7, np.inf, np.nan]), size=shape).astype(dtype)
    x = x + rng.standard_normal(shape).astype(dtype) * (rng.random(shape) < 0.5)
    dzdy = rng.standard_normal(shape).astype(dtype)
    y, signs = vl_nnrelu(x, leak=leak, signs=True)
    assert y.tobytes() == vl_nnrelu(x, leak=leak).tobytes() and y.flags.f_contiguous
    expected = np.packbits(x.reshape(-1, order="F") > 0, bitorder="little")
    assert signs.dtype == np.uint8 and signs.shape == ((x.size + 7) // 8,)
    np.testing.assert_array_equal(signs, expected)
    dzdx = vl_nnrelu(None, dzdy, leak=leak, signs=signs)
    assert dzdx.dtype == dtype and dzdx.shape == x.shape and dzdx.flags.f_contiguous
    assert dzdx.tobytes() == vl_nnrelu(x, dzdy, leak=leak).tobytes()
    np.testing.assert_array_equal(dzdx, relu_backward_reference(x, dzdy, leak))
    assert vl_nnrelu(x, dzdy, "Leak", leak, "Signs", signs).tobytes() == dzdx.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_signs_in_place_and_across_thread_counts(dtype, restore_threads):
    rng = np.random.default_rng(13)
    x = np.asfortranarray(rng.standard_normal((33, 31, 16, 7)).astype(dtype))  # several threads, odd size
    dzdy = np.asfortranarray(rng.standard_normal(x.shape).astype(dtype))
    results = []
    for threads in (1, 2, 3):
        cnnx.set_num_threads(threads)
        y, signs = vl_nnrelu(x, signs=True)
        results.append((y.tobytes(), signs.tobytes(), vl_nnrelu(None, dzdy, signs=signs).tobytes()))
    assert results[1] == results[0] and results[2] == results[0]
    target = x.copy(order="F")
    y, signs = vl_nnrelu(target, signs=True, out=target)
    assert y is target and target.tobytes() == results[0][0] and signs.tobytes() == results[0][1]
    back = dzdy.copy(order="F")
    assert vl_nnrelu(None, back, signs=signs, out=back) is back and back.tobytes() == results[0][2]
    signs.flags.writeable = False  # read-only signs (a memory map) need no copy
    assert vl_nnrelu(None, dzdy, signs=signs).tobytes() == results[0][2]


@pytest.mark.parametrize("call, message", [
    (lambda x, d, s: vl_nnrelu(x, signs=s), "vl_nnrelu: Signs in a forward call must be True or False, got ndarray"),
    (lambda x, d, s: vl_nnrelu(None, d, signs=True),
     "vl_nnrelu: Signs in a backward call must be the uint8 array of 3 bytes of the forward call, got bool"),
    (lambda x, d, s: vl_nnrelu(None, d, signs=s[:2]),
     "vl_nnrelu: Signs in a backward call must be the uint8 array of 3 bytes of the forward call, "
     "got uint8 array of shape (2,)"),
    (lambda x, d, s: vl_nnrelu(None, d, signs=s.astype(np.int32)),
     "vl_nnrelu: Signs in a backward call must be the uint8 array of 3 bytes of the forward call, "
     "got int32 array of shape (3,)"),
    (lambda x, d, s: vl_nnrelu(x[:2], d, signs=s), "vl_nnrelu: X has shape (2, 4) but DZDY has shape (5, 4)"),
])
def test_relu_signs_errors(call, message):
    x = np.ones((5, 4), np.float32)
    y, signs = vl_nnrelu(x, signs=True)
    with pytest.raises(ValueError, match=exact(message)):
        call(x, np.ones_like(x), signs)

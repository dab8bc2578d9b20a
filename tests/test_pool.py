"""Tests of vl_nnpool against a slow reference written from MatConvNet's definition."""
import itertools
import re
import threading

import numpy as np
import pytest

import cnnx
from cnnx import vl_nnpool
from cnnx.testing import check_derivative


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"

# --------------------------------------------------------------------------------------------------
# Reference: plain loops over the definition, vectorised only across the C*N planes.
# --------------------------------------------------------------------------------------------------


def _geometry(shape, pool, pad, stride):
    H, W = shape[:2]
    PH, PW = pool
    PT, PB, PL, PR = pad
    SY, SX = stride
    YH = (H + PT + PB - PH) // SY + 1
    YW = (W + PL + PR - PW) // SX + 1
    rows = [(max(i * SY - PT, 0), min(i * SY - PT + PH, H)) for i in range(YH)]
    cols = [(max(j * SX - PL, 0), min(j * SX - PL + PW, W)) for j in range(YW)]
    return rows, cols


def _window_cells(r0, r1, c0, c1):
    """The window's cells in MatConvNet's scan order: column by column, rows top to bottom."""
    return [(r, c) for c in range(c0, c1) for r in range(r0, r1)]


def _beats(v, best):
    return (v > best) | (np.isnan(v) & ~np.isnan(best))


def ref_forward(x, pool, pad=(0, 0, 0, 0), stride=(1, 1), method="max"):
    rows, cols = _geometry(x.shape, pool, pad, stride)
    y = np.empty((len(rows), len(cols)) + x.shape[2:], dtype=x.dtype)
    for j, (c0, c1) in enumerate(cols):
        for i, (r0, r1) in enumerate(rows):
            cells = _window_cells(r0, r1, c0, c1)
            if method == "max":
                best = x[cells[0]].copy()
                for cell in cells[1:]:
                    best = np.where(_beats(x[cell], best), x[cell], best)
                y[i, j] = best
            else:
                total = np.zeros(x.shape[2:], dtype=x.dtype)
                for cell in cells:
                    total += x[cell]
                y[i, j] = total / x.dtype.type(len(cells))
    return y


def ref_backward(x, dzdy, pool, pad=(0, 0, 0, 0), stride=(1, 1), method="max"):
    rows, cols = _geometry(x.shape, pool, pad, stride)
    dx = np.zeros_like(x)
    planes = np.indices(x.shape[2:])
    for j, (c0, c1) in enumerate(cols):  # outputs in column-major order
        for i, (r0, r1) in enumerate(rows):
            cells = _window_cells(r0, r1, c0, c1)
            if method == "max":
                best = x[cells[0]].copy()
                where = np.zeros(x.shape[2:], dtype=int)
                for n, cell in enumerate(cells[1:], start=1):
                    take = _beats(x[cell], best)
                    best = np.where(take, x[cell], best)
                    where = np.where(take, n, where)
                r = np.array([cell[0] for cell in cells])[where]
                c = np.array([cell[1] for cell in cells])[where]
                np.add.at(dx, (r, c) + tuple(planes), dzdy[i, j])
            else:
                share = dzdy[i, j] / x.dtype.type(len(cells))
                for cell in cells:
                    dx[cell] += share
    return dx


def distinct_values(shape, dtype, seed=0):
    """A permutation of 1..numel: no ties, so a small step never changes the argmax (as MatConvNet)."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))) + 1).reshape(shape).astype(dtype)


def four(x):
    return x.reshape(x.shape + (1,) * (4 - x.ndim))


# Geometry grid: pool, stride, pad; invalid combinations (pad >= pool) are dropped.
POOLS = [(1, 1), (2, 2), (3, 3), (2, 3), (3, 1), (4, 2)]
STRIDES = [(1, 1), (2, 2), (1, 2), (3, 2)]
PADS = [(0, 0, 0, 0), (0, 1, 0, 1), (1, 1, 1, 1), (1, 0, 2, 1), (2, 1, 0, 1)]
GRID = [
    (pool, stride, pad)
    for pool, stride, pad in itertools.product(POOLS, STRIDES, PADS)
    if pad[0] < pool[0] and pad[1] < pool[0] and pad[2] < pool[1] and pad[3] < pool[1]
]
# Odd sizes, each geometry in both precisions.
SHAPES = [(7, 6, 3, 2), (5, 9, 2, 1)]
DTYPES = [np.float32, np.float64]


def _opts(pad, stride, method):
    return ("Pad", list(pad), "Stride", list(stride), "Method", method)


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool,stride,pad", GRID)
@pytest.mark.parametrize("method", ["max", "avg"])
def test_forward_matches_reference(pool, stride, pad, method):
    for shape, dtype in zip(SHAPES, DTYPES):
        x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
        y = vl_nnpool(x, pool, *_opts(pad, stride, method))
        expected = ref_forward(x, pool, pad, stride, method)
        assert y.dtype == dtype and y.shape == expected.shape and y.flags.f_contiguous
        if method == "max":
            np.testing.assert_array_equal(y, expected)
        else:  # the kernel sums in another order
            np.testing.assert_allclose(y, expected, rtol=0, atol=8 * np.finfo(dtype).eps * np.abs(x).max())


@pytest.mark.parametrize("pool,stride,pad", GRID)
@pytest.mark.parametrize("method", ["max", "avg"])
def test_backward_matches_reference(pool, stride, pad, method):
    for shape, dtype in zip(SHAPES, DTYPES):
        rng = np.random.default_rng(2)
        x = rng.standard_normal(shape).astype(dtype)
        y_shape = vl_nnpool(x, pool, *_opts(pad, stride, method)).shape
        dzdy = rng.standard_normal(y_shape).astype(dtype)
        dx = vl_nnpool(x, pool, dzdy, *_opts(pad, stride, method))
        expected = ref_backward(x, dzdy, pool, pad, stride, method)
        assert dx.dtype == dtype and dx.shape == x.shape and dx.flags.f_contiguous
        if method == "max":  # same routing and the same order of accumulation: bitwise equal
            np.testing.assert_array_equal(dx, expected)
        else:
            np.testing.assert_allclose(dx, expected, rtol=0, atol=16 * np.finfo(dtype).eps * np.abs(dzdy).max())


@pytest.mark.parametrize("method", ["max", "avg"])
def test_lenet_layers(method):
    # 3x3 stride 2 with pad [0 1 0 1] gives Caffe's rounded-up sizes: 32 -> 16 -> 8 -> 4.
    for size in (32, 16, 8):
        x = np.random.default_rng(size).standard_normal((size, size, 5, 3)).astype(np.float32)
        opts = ("pad", [0, 1, 0, 1], "stride", 2, "method", method)
        y = vl_nnpool(x, 3, *opts)
        assert y.shape == (size // 2, size // 2, 5, 3)
        expected = ref_forward(x, (3, 3), (0, 1, 0, 1), (2, 2), method)
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_padding_cells_are_ignored():
    x = -np.ones((2, 2), dtype=np.float64)  # all negative: zero padding would change the max
    y = vl_nnpool(x, 2, pad=1)
    np.testing.assert_array_equal(y[:, :, 0], -np.ones((3, 3)))
    # Averages divide by the clipped area: a corner window holds one cell, the centre four.
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = vl_nnpool(x, 2, pad=1, method="avg")[:, :, 0]
    np.testing.assert_array_equal(y, [[1.0, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]])


@pytest.mark.parametrize("method", ["max", "avg"])
def test_padding_much_larger_than_the_input(method):
    # Windows that are mostly padding: work and scratch follow the clipped windows only.
    x = np.random.default_rng(15).standard_normal((3, 2, 2, 1))
    pool, pad, stride = (5000, 400), (4999, 4990, 399, 350), (2000, 150)
    opts = _opts(pad, stride, method)
    y = vl_nnpool(x, list(pool), *opts)
    assert y.shape == (3, 3, 2, 1)
    np.testing.assert_allclose(y, ref_forward(x, pool, pad, stride, method), rtol=1e-15, atol=0)
    dzdy = np.random.default_rng(16).standard_normal(y.shape)
    np.testing.assert_allclose(vl_nnpool(x, list(pool), dzdy, *opts), ref_backward(x, dzdy, pool, pad, stride, method),
                               rtol=1e-14, atol=0)


def test_output_size_uses_floor():
    x = np.zeros((7, 8, 1, 1), np.float32)
    assert vl_nnpool(x, 3, stride=2).shape[:2] == (3, 3)
    assert vl_nnpool(x, [2, 4], stride=[3, 2], pad=[1, 0, 2, 3]).shape[:2] == (3, 5)


# --------------------------------------------------------------------------------------------------
# Derivatives, ties, NaN
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("pool,stride,pad", [((3, 3), (2, 2), (0, 1, 0, 1)), ((2, 3), (1, 2), (1, 0, 2, 1)),
                                             ((1, 1), (1, 1), (0, 0, 0, 0)), ((4, 2), (3, 1), (2, 3, 1, 0))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_derivative_matconvnet_check(method, pool, stride, pad, dtype):
    # As MatConvNet: distinct integers and a step of 0.1, far below their gap of 1.
    x = distinct_values((6, 7, 2, 2), dtype)
    opts = _opts(pad, stride, method)
    y = vl_nnpool(x, pool, *opts)
    dzdy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    dzdx = vl_nnpool(x, pool, dzdy, *opts)
    check_derivative(lambda t: vl_nnpool(t, pool, *opts), x, dzdy, dzdx, delta=0.1)


@pytest.mark.parametrize("method", ["max", "avg"])
def test_derivative_central_float64(method):
    x = distinct_values((9, 8, 2, 1), np.float64) / 7.0
    opts = _opts((1, 2, 0, 1), (2, 1), method)
    dzdy = np.random.default_rng(4).standard_normal(vl_nnpool(x, [3, 2], *opts).shape)
    dzdx = vl_nnpool(x, [3, 2], dzdy, *opts)
    check_derivative(lambda t: vl_nnpool(t, [3, 2], *opts), x, dzdy, dzdx, method="central", rtol=1e-8)


def test_max_ties_go_to_first_in_column_major_order():
    # In the single 2x2 window, the maximum 5 sits at (0, 1) and (1, 0): column-major order
    # (columns left to right, rows top to bottom) reaches (1, 0) first.
    x = np.array([[1.0, 5.0], [5.0, 5.0]])
    dx = vl_nnpool(x, 2, np.array([[7.0]]))
    np.testing.assert_array_equal(dx, [[0.0, 0.0], [7.0, 0.0]])
    # Constant input: every window gives its dzdy to its first cell.
    x = np.zeros((5, 6, 2), np.float32)
    opts = ("Stride", 2, "Pad", [1, 0, 1, 1])
    dzdy = np.random.default_rng(5).standard_normal(vl_nnpool(x, 3, *opts).shape).astype(np.float32)
    dx = vl_nnpool(x, 3, dzdy, *opts)
    np.testing.assert_array_equal(dx, ref_backward(four(x), four(dzdy), (3, 3), (1, 0, 1, 1), (2, 2))[..., 0])
    rows, cols = _geometry(x.shape, (3, 3), (1, 0, 1, 1), (2, 2))
    expected = np.zeros_like(x)
    for j, (c0, _) in enumerate(cols):
        for i, (r0, _) in enumerate(rows):
            expected[r0, c0] += dzdy[i, j]
    np.testing.assert_array_equal(dx, expected)


def test_max_of_minus_infinity_routes_to_an_input_cell():
    # Padding must never win, even against -inf inputs.
    x = np.full((3, 4), -np.inf, np.float32)
    x[2, 3] = 1.0
    opts = ("Pad", [1, 1, 1, 1])
    y = vl_nnpool(x, 2, *opts)
    assert np.isneginf(y).sum() == y.size - 4
    dzdy = np.arange(1.0, y.size + 1, dtype=np.float32).reshape(y.shape)
    dx = vl_nnpool(x, 2, dzdy, *opts)
    np.testing.assert_array_equal(dx, ref_backward(four(x), four(dzdy), (2, 2), (1, 1, 1, 1), (1, 1))[:, :, 0, 0])
    assert dx.sum() == dzdy.sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_is_the_maximum(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 7, 2, 2)).astype(dtype)
    x[rng.random(x.shape) < 0.15] = np.nan
    x[0, 0, 0, 0] = x[1, 0, 0, 0] = np.nan  # two NaNs in one window: the first one wins
    opts = _opts((0, 1, 0, 1), (2, 2), "max")
    y = vl_nnpool(x, 3, *opts)
    expected = ref_forward(x, (3, 3), (0, 1, 0, 1), (2, 2))
    np.testing.assert_array_equal(y, expected)  # NaNs in the same places
    assert np.isnan(y).any() and not np.isnan(y).all()
    dzdy = rng.standard_normal(y.shape).astype(dtype)
    dx = vl_nnpool(x, 3, dzdy, *opts)
    np.testing.assert_array_equal(dx, ref_backward(x, dzdy, (3, 3), (0, 1, 0, 1), (2, 2)))
    assert dx[0, 0, 0, 0] == dzdy[0, 0, 0, 0] and dx[1, 0, 0, 0] == 0


def test_nan_and_inf_propagate_in_average():
    x = np.ones((4, 4), np.float64)
    x[0, 0] = np.nan
    x[3, 3] = np.inf
    y = vl_nnpool(x, 2, stride=2, method="avg")[:, :, 0]
    assert np.isnan(y[0, 0]) and np.isinf(y[1, 1]) and y[0, 1] == 1 and y[1, 0] == 1
    dzdy = np.ones((2, 2))
    dzdy[1, 0] = np.nan
    dx = vl_nnpool(x, 2, dzdy, stride=2, method="avg")
    expected_nan = np.zeros((4, 4), bool)
    expected_nan[2:, :2] = True
    np.testing.assert_array_equal(np.isnan(dx), expected_nan)


def test_max_ties_across_the_two_passes():
    # The window's maximum sits at (0, 1), (1, 2) and (2, 0): row by row, (0, 1) comes first, but
    # column-major order reaches (2, 0) first. Likewise when the maximum is NaN.
    for top in (2.0, np.nan):
        x = np.zeros((3, 3))
        x[0, 1] = x[1, 2] = x[2, 0] = top
        np.testing.assert_array_equal(vl_nnpool(x, 3, np.array([[7.0]])), [[0, 0, 0], [0, 0, 0], [7, 0, 0]])
        for pad, stride in (((1, 1, 1, 1), (2, 2)), ((2, 1, 0, 2), (1, 1))):  # and in clipped windows
            dzdy = np.random.default_rng(8).standard_normal(vl_nnpool(x, 3, *_opts(pad, stride, "max")).shape)
            dx = vl_nnpool(x, 3, dzdy, *_opts(pad, stride, "max"))
            np.testing.assert_array_equal(dx, ref_backward(four(x), four(dzdy), (3, 3), pad, stride)[:, :, 0, 0])


# Inputs of few values (ties everywhere, signed zeros, infinities, NaNs) over geometries that take
# every path of the kernels: strides 1, 2 and others (the generic loops), overlapping windows,
# windows that touch (stride = pool) or leave gaps, odd sizes, one row or column, N = 1, padding
# beyond what the buffers' guard cells cover (clipped windows), and a mix of both kinds of rows.
TIE_VALUES = np.array([-np.inf, -1.0, -0.0, 0.0, 1.0, np.inf, np.nan])
TIE_CASES = [  # shape, pool, stride, pad
    ((32, 32, 2, 1), (3, 3), (2, 2), (0, 1, 0, 1)),   # lenet's pool1
    ((9, 8, 3, 2), (3, 3), (2, 2), (0, 1, 0, 1)),
    ((8, 9, 2, 1), (3, 3), (2, 2), (1, 1, 1, 1)),
    ((7, 7, 2, 2), (3, 2), (1, 1), (2, 1, 1, 0)),
    ((10, 7, 2, 1), (4, 3), (3, 2), (3, 2, 2, 1)),
    ((8, 8, 2, 1), (2, 2), (2, 2), (0, 0, 0, 0)),
    ((9, 7, 2, 1), (2, 3), (3, 4), (1, 1, 2, 0)),
    ((1, 6, 2, 1), (1, 3), (1, 2), (0, 0, 1, 1)),
    ((5, 1, 2, 1), (3, 1), (2, 1), (2, 2, 0, 0)),
    ((3, 4, 2, 1), (8, 3), (1, 1), (7, 6, 2, 2)),    # rows 4 and 5 uniform, the others clipped
    ((4, 5, 2, 1), (6, 2), (2, 1), (5, 3, 1, 0)),    # row 0 clipped, the others uniform
]


@pytest.mark.parametrize("shape,pool,stride,pad", TIE_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_ties_nans_and_borders_match_reference(shape, pool, stride, pad, dtype):
    rng = np.random.default_rng(sum(shape) + sum(pool))
    x = rng.choice(TIE_VALUES, size=shape).astype(dtype)
    opts = _opts(pad, stride, "max")
    y = vl_nnpool(x, list(pool), *opts)
    np.testing.assert_array_equal(y, ref_forward(x, pool, pad, stride))  # -0.0 == 0.0: values only
    dzdy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(vl_nnpool(x, list(pool), dzdy, *opts), ref_backward(x, dzdy, pool, pad, stride))


@pytest.mark.parametrize("shape,pool,stride,pad", TIE_CASES)
def test_average_at_borders_matches_reference(shape, pool, stride, pad):
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    opts = _opts(pad, stride, "avg")
    y = vl_nnpool(x, list(pool), *opts)
    np.testing.assert_allclose(y, ref_forward(x, pool, pad, stride, "avg"), rtol=0, atol=1e-14)
    dzdy = np.random.default_rng(7).standard_normal(y.shape)
    np.testing.assert_allclose(vl_nnpool(x, list(pool), dzdy, *opts), ref_backward(x, dzdy, pool, pad, stride, "avg"),
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_pooled_either_way_give_the_same_bits(method, dtype):
    # Each window covers the whole column either way: pool 9 with pad 4 on 5 rows goes through the
    # buffers' guard cells, pool 2^20 + 1 with pad 2^19 (beyond the guards) over the clipped windows.
    rng = np.random.default_rng(18)
    x = rng.choice(TIE_VALUES[1:-1], size=(5, 4, 3, 2)).astype(dtype) + rng.standard_normal((5, 4, 3, 2)).astype(dtype)
    x[0, 1, 0, 0] = np.nan
    guarded = ([9, 1], [4, 4, 0, 0])
    clipped = ([2**20 + 1, 1], [2**19, 2**19, 0, 0])
    y = vl_nnpool(x, guarded[0], pad=guarded[1], method=method)
    np.testing.assert_array_equal(y, vl_nnpool(x, clipped[0], pad=clipped[1], method=method))
    assert (np.signbit(y) == np.signbit(vl_nnpool(x, clipped[0], pad=clipped[1], method=method))).all()
    dzdy = rng.standard_normal(y.shape).astype(dtype)
    dx = vl_nnpool(x, guarded[0], dzdy, pad=guarded[1], method=method)
    np.testing.assert_array_equal(dx, vl_nnpool(x, clipped[0], dzdy, pad=clipped[1], method=method))


# --------------------------------------------------------------------------------------------------
# PyTorch cross-check, where its semantics are MatConvNet's
# --------------------------------------------------------------------------------------------------


def _torch_pool(torch, x, pool, stride, padding, method, ceil_mode):
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(four(x).transpose(3, 2, 0, 1))).requires_grad_(True)
    if method == "max":
        y = F.max_pool2d(t, pool, stride, padding, ceil_mode=ceil_mode)
    else:
        y = F.avg_pool2d(t, pool, stride, padding, ceil_mode=ceil_mode, count_include_pad=False)
    return t, y


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("pool,stride,pad,torch_pad,ceil_mode", [
    ((3, 3), (2, 2), 0, 0, False),
    ((2, 3), (1, 2), 0, 0, False),
    ((3, 3), (1, 1), 1, 1, False),      # symmetric pad: torch excludes it too (count_include_pad=False, -inf)
    ((5, 3), (2, 3), [2, 2, 1, 1], (2, 1), False),
    ((3, 3), (2, 2), [0, 1, 0, 1], 0, True),  # lenet: [0 1 0 1] is Caffe/torch ceil mode
])
def test_matches_pytorch(method, pool, stride, pad, torch_pad, ceil_mode):
    torch = pytest.importorskip("torch")
    for shape in [(32, 32, 4, 3), (17, 15, 3, 2)]:
        x = distinct_values(shape, np.float64, seed=7) / 100.0
        opts = ("Pad", pad, "Stride", list(stride), "Method", method)
        y = vl_nnpool(x, pool, *opts)
        t, ty = _torch_pool(torch, x, pool, stride, torch_pad, method, ceil_mode)
        expected = ty.detach().numpy().transpose(2, 3, 1, 0)
        assert y.shape == expected.shape
        np.testing.assert_allclose(y, expected, rtol=1e-13, atol=0)
        dzdy = np.random.default_rng(8).standard_normal(y.shape)
        ty.backward(torch.from_numpy(np.ascontiguousarray(dzdy.transpose(3, 2, 0, 1))))
        np.testing.assert_allclose(vl_nnpool(x, pool, dzdy, *opts), t.grad.numpy().transpose(2, 3, 1, 0),
                                   rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# Shapes, layouts, call forms
# --------------------------------------------------------------------------------------------------


def test_two_and_three_dimensional_inputs():
    x2 = np.random.default_rng(9).standard_normal((6, 5)).astype(np.float32)
    y = vl_nnpool(x2, 2)
    assert y.shape == (5, 4, 1)
    np.testing.assert_array_equal(y, vl_nnpool(x2[:, :, None, None], 2)[:, :, :, 0])
    assert vl_nnpool(x2, 2, np.ones((5, 4, 1), np.float32)).shape == (6, 5)
    x3 = np.random.default_rng(9).standard_normal((6, 5, 3))
    assert vl_nnpool(x3, 2).shape == (5, 4, 3)
    dx = vl_nnpool(x3, 2, np.ones((5, 4, 3, 1)))  # DZDY may keep the trailing 1
    assert dx.shape == (6, 5, 3)
    np.testing.assert_array_equal(dx, vl_nnpool(x3[..., None], 2, np.ones((5, 4, 3, 1)))[..., 0])


@pytest.mark.parametrize("method", ["max", "avg"])
def test_any_memory_order(method):
    x = np.random.default_rng(10).standard_normal((9, 8, 3, 2)).astype(np.float32)
    y = vl_nnpool(x, 3, stride=2, method=method)
    dzdy = np.random.default_rng(11).standard_normal(y.shape).astype(np.float32)
    dx = vl_nnpool(x, 3, dzdy, stride=2, method=method)
    for variant in (np.ascontiguousarray(x), np.asfortranarray(x)):
        np.testing.assert_array_equal(vl_nnpool(variant, 3, stride=2, method=method), y)
        np.testing.assert_array_equal(vl_nnpool(variant, 3, np.ascontiguousarray(dzdy), stride=2, method=method), dx)
    big = np.zeros((18, 8, 6, 2), np.float32)
    big[::2, :, ::2] = x
    strided = big[::2, :, ::2]
    np.testing.assert_array_equal(vl_nnpool(strided, 3, stride=2, method=method), y)
    readonly = np.asfortranarray(x)
    readonly.flags.writeable = False
    np.testing.assert_array_equal(vl_nnpool(readonly, 3, stride=2, method=method), y)


def test_call_forms():
    x = np.random.default_rng(12).standard_normal((8, 9, 2, 2))
    y = vl_nnpool(x, [3, 2], pad=[1, 0, 0, 1], stride=[2, 1], method="avg")
    for args, kwargs in [
        (("Pad", [1, 0, 0, 1], "Stride", [2, 1], "Method", "avg"), {}),
        (("PAD", np.array([1, 0, 0, 1]), "sTrIdE", (2, 1), "method", "AVG"), {}),
        ((None, "pad", [1, 0, 0, 1], "stride", [2, 1]), {"Method": "Avg"}),
        (([], "pad", [1, 0, 0, 1]), {"stride": [2, 1], "method": "avg"}),
    ]:
        np.testing.assert_array_equal(vl_nnpool(x, (3, 2), *args, **kwargs), y)
    dzdy = np.ones_like(y)
    dx = vl_nnpool(x, [3, 2], dzdy, "Pad", [1, 0, 0, 1], "Stride", [2, 1], "Method", "avg")
    np.testing.assert_array_equal(vl_nnpool(x, [3, 2], dzdy=dzdy, pad=[1, 0, 0, 1], stride=[2, 1], method="avg"), dx)
    np.testing.assert_array_equal(vl_nnpool(x, 3), vl_nnpool(x, [3, 3], "method", "max", "pad", 0, "stride", 1))


def test_empty_channels_and_images():
    y = vl_nnpool(np.zeros((5, 5, 0, 2), np.float32), 2)
    assert y.shape == (4, 4, 0, 2) and y.dtype == np.float32
    dx = vl_nnpool(np.zeros((5, 5, 3, 0)), 2, np.zeros((4, 4, 3, 0)))
    assert dx.shape == (5, 5, 3, 0)


# --------------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_across_thread_counts(method, dtype, restore_threads):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((35, 33, 16, 9)).astype(dtype)  # large enough to run on several threads
    opts = _opts((1, 2, 0, 1), (2, 2), method)
    dzdy = rng.standard_normal(vl_nnpool(x, 3, *opts).shape).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        cnnx.set_num_threads(threads)
        results.append((vl_nnpool(x, 3, *opts), vl_nnpool(x, 3, dzdy, *opts)))
    for y, dx in results[1:]:
        assert y.tobytes() == results[0][0].tobytes() and dx.tobytes() == results[0][1].tobytes()


def test_concurrent_python_threads():
    rng = np.random.default_rng(14)
    jobs = []
    for k in range(8):
        x = rng.standard_normal((64, 64, 8, 2)).astype(np.float32)  # each call on 2 OpenMP threads
        method = ("max", "avg")[k % 2]
        dzdy = rng.standard_normal(vl_nnpool(x, 3, stride=2, method=method).shape).astype(np.float32)
        jobs.append((x, dzdy, method))
    expected = [(vl_nnpool(x, 3, stride=2, method=m), vl_nnpool(x, 3, d, stride=2, method=m)) for x, d, m in jobs]
    results = [None] * len(jobs)

    def work(k):
        x, dzdy, method = jobs[k]
        for _ in range(10):
            results[k] = (vl_nnpool(x, 3, stride=2, method=method), vl_nnpool(x, 3, dzdy, stride=2, method=method))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (y, dx), (ey, edx) in zip(results, expected):
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(dx, edx)


# --------------------------------------------------------------------------------------------------
# Max pooling's winners, kept from forward for backward
# --------------------------------------------------------------------------------------------------


def ref_winners(x, pool, pad, stride):
    """Each window's first maximum in column-major order as an index in its plane (i + H*j)."""
    rows, cols = _geometry(x.shape, pool, pad, stride)
    index = np.empty((len(rows), len(cols)) + x.shape[2:], dtype=np.int64)
    for j, (c0, c1) in enumerate(cols):
        for i, (r0, r1) in enumerate(rows):
            cells = _window_cells(r0, r1, c0, c1)
            best = x[cells[0]].copy()
            where = np.full(x.shape[2:], cells[0][0] + x.shape[0] * cells[0][1])
            for r, c in cells[1:]:
                take = _beats(x[r, c], best)
                best = np.where(take, x[r, c], best)
                where = np.where(take, r + x.shape[0] * c, where)
            index[i, j] = where
    return index


def _check_winners(x, pool, pad, stride):
    opts = _opts(pad, stride, "max")
    y, winners = vl_nnpool(x, list(pool), *opts, "Winners", True)
    np.testing.assert_array_equal(winners.index, ref_winners(x, pool, pad, stride))
    assert winners.index.dtype == np.int32 and winners.index.flags.f_contiguous
    assert winners.input_shape == x.shape and winners.dtype == x.dtype
    # y is the value at the winner, MatConvNet's choice between +0 and -0 included
    planes = four(x).reshape(x.shape[0] * x.shape[1], -1, order="F")
    at_winners = np.take_along_axis(planes, four(winners.index).reshape(-1, planes.shape[1], order="F"), axis=0)
    assert four(y).reshape(at_winners.shape, order="F").tobytes() == at_winners.tobytes()
    np.testing.assert_array_equal(y, vl_nnpool(x, list(pool), *opts))
    dzdy = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
    dx = vl_nnpool(None, list(pool), dzdy, *opts, "Winners", winners)
    assert dx.shape == x.shape and dx.dtype == x.dtype and dx.flags.f_contiguous
    assert dx.tobytes() == vl_nnpool(x, list(pool), dzdy, *opts).tobytes()
    np.testing.assert_array_equal(dx, ref_backward(x, dzdy, pool, pad, stride))
    assert vl_nnpool(x, list(pool), dzdy, *opts, winners=winners).tobytes() == dx.tobytes()


@pytest.mark.parametrize("pool,stride,pad", GRID)
def test_winners_match_reference(pool, stride, pad):
    for shape, dtype in zip(SHAPES, DTYPES):
        _check_winners(np.random.default_rng(4).standard_normal(shape).astype(dtype), pool, pad, stride)


@pytest.mark.parametrize("shape,pool,stride,pad", TIE_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_winners_with_ties_nans_and_borders(shape, pool, stride, pad, dtype):
    rng = np.random.default_rng(sum(shape) + sum(pool) + 1)
    _check_winners(rng.choice(TIE_VALUES, size=shape).astype(dtype), pool, pad, stride)


def test_winners_of_two_dimensional_input():
    x = np.random.default_rng(5).standard_normal((7, 5)).astype(np.float32)
    y, winners = vl_nnpool(x, 2, winners=True)
    assert y.shape == (6, 4, 1) and winners.index.shape == (6, 4, 1, 1)
    dzdy = np.ones_like(y)
    np.testing.assert_array_equal(vl_nnpool(None, 2, dzdy, winners=winners), vl_nnpool(x, 2, dzdy))
    y_plain = vl_nnpool(x, 2, winners=False)
    assert not isinstance(y_plain, tuple)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winners_bitwise_identical_across_thread_counts(dtype, restore_threads):
    rng = np.random.default_rng(15)
    x = rng.choice(TIE_VALUES[:-1], size=(35, 33, 16, 9)).astype(dtype)  # ties on several threads
    opts = _opts((1, 2, 0, 1), (2, 2), "max")
    dzdy = rng.standard_normal(vl_nnpool(x, 3, *opts).shape).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        cnnx.set_num_threads(threads)
        y, winners = vl_nnpool(x, 3, *opts, winners=True)
        results.append((y.tobytes(), winners.index.tobytes(), vl_nnpool(None, 3, dzdy, *opts, winners=winners).tobytes()))
    assert results[1] == results[0] and results[2] == results[0]
    assert results[0][2] == vl_nnpool(x, 3, dzdy, *opts).tobytes()


@pytest.mark.parametrize("pool,stride,pad", GRID)
def test_average_backward_from_the_input_size(pool, stride, pad):
    for shape, dtype in zip(SHAPES + [(7, 6)], DTYPES + [np.float32]):
        rng = np.random.default_rng(7)
        x = rng.standard_normal(shape).astype(dtype)
        opts = _opts(pad, stride, "avg")
        dzdy = rng.standard_normal(vl_nnpool(x, pool, *opts).shape).astype(dtype)
        dx = vl_nnpool(None, pool, dzdy, *opts, "InputSize", list(shape))
        assert dx.shape == x.shape and dx.dtype == dtype and dx.flags.f_contiguous
        assert dx.tobytes() == vl_nnpool(x, pool, dzdy, *opts).tobytes()


WX = np.random.default_rng(6).standard_normal((6, 6, 2, 2)).astype(np.float32)
WY, WINNERS = vl_nnpool(WX, 2, winners=True)


@pytest.mark.parametrize("call, error, message", [
    (lambda: vl_nnpool(WX, 2, method="avg", winners=True), ValueError,
     "vl_nnpool: Winners are those of max pooling, but the Method is 'avg'"),
    (lambda: vl_nnpool(WX, 2, "Winners", WINNERS), ValueError,
     "vl_nnpool: Winners in a forward call must be True or False, got PoolWinners"),
    (lambda: vl_nnpool(WX, 2, np.ones_like(WY), winners=True), ValueError,
     "vl_nnpool: Winners in a backward call must be the PoolWinners of the forward call, got bool"),
    (lambda: vl_nnpool(None, 2, np.ones_like(WY), stride=2, winners=WINNERS), ValueError,
     "vl_nnpool: the Winners are of pool, pad and stride ((2, 2), (0, 0, 0, 0), (1, 1)), "
     "this call's are ((2, 2), (0, 0, 0, 0), (2, 2))"),
    (lambda: vl_nnpool(WX[:5], 2, np.ones_like(WY), winners=WINNERS), ValueError,
     "vl_nnpool: X has shape (5, 6, 2, 2) but the Winners are of an X of shape (6, 6, 2, 2)"),
    (lambda: vl_nnpool(None, 2, np.ones(WY.shape), winners=WINNERS), TypeError,
     "vl_nnpool: DZDY is float64 but the Winners are of a float32 X"),
    (lambda: vl_nnpool(None, 2, np.ones((5, 5, 2, 1), np.float32), winners=WINNERS), ValueError,
     "vl_nnpool: DZDY has shape (5, 5, 2, 1) but the output of the pooling is (5, 5, 2, 2)"),
    (lambda: vl_nnpool(None, 2, np.ones_like(WY), input_size=WX.shape), ValueError,
     "vl_nnpool: InputSize is for the backward call of average pooling with X None"),
    (lambda: vl_nnpool(WX, 2, np.ones_like(WY), method="avg", input_size=WX.shape), ValueError,
     "vl_nnpool: InputSize is for the backward call of average pooling with X None"),
    (lambda: vl_nnpool(None, 2, method="avg", input_size=WX.shape), ValueError,
     "vl_nnpool: InputSize is for the backward call of average pooling with X None"),
    (lambda: vl_nnpool(None, 2, np.ones_like(WY), method="avg", input_size=[6]), ValueError,
     "vl_nnpool: InputSize must be 2 to 4 non-negative sizes [H W C N], got [6]"),
    (lambda: vl_nnpool(None, 2, np.ones_like(WY), method="avg", input_size=[6, -6, 2, 2]), ValueError,
     "vl_nnpool: InputSize must be 2 to 4 non-negative sizes [H W C N], got [6, -6, 2, 2]"),
    (lambda: vl_nnpool(None, 2, np.ones_like(WY), method="avg", input_size=[6, 7, 2, 2]), ValueError,
     "vl_nnpool: DZDY has shape (5, 5, 2, 2) but the output of the pooling is (5, 6, 2, 2)"),
])
def test_winners_errors(call, error, message):
    with pytest.raises(error, match=exact(message)):
        call()


def test_max_pooling_plane_of_two_to_the_31_cells_is_refused():
    # a broadcast view: the check runs before any memory is touched
    x = np.broadcast_to(np.float32(0), (2**16, 2**15 + 1))
    with pytest.raises(ValueError, match=exact(
            f"vl_nnpool: a max pooling's plane of X has 65536 x 32769 cells, more than {2**31 - 1}")):
        vl_nnpool(x, 2)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

X = np.zeros((6, 6, 2, 2), np.float32)
DY = np.zeros((5, 5, 2, 2), np.float32)


@pytest.mark.parametrize("call, error, message", [
    (lambda: vl_nnpool(np.zeros((6,), np.float32), 2), ValueError,
     'vl_nnpool: X must have 2 to 4 dimensions (H x W x C x N), got 1 ((6,))'),
    (lambda: vl_nnpool(np.zeros((6, 6, 2, 2, 2), np.float32), 2), ValueError,
     'vl_nnpool: X must have 2 to 4 dimensions (H x W x C x N), got 5 ((6, 6, 2, 2, 2))'),
    (lambda: vl_nnpool(X, 2, np.zeros((5, 5, 2, 2, 1, 2), np.float32)), ValueError,
     'vl_nnpool: DZDY must have 2 to 4 dimensions (H x W x C x N), got 6 ((5, 5, 2, 2, 1, 2))'),
    (lambda: vl_nnpool(X, 3, pad=3), ValueError,
     'vl_nnpool: Pad [3, 3, 3, 3] must be smaller than POOL [3, 3] (top and bottom below PH, left and right below PW)'),
    (lambda: vl_nnpool(X, [3, 2], pad=[0, 0, 0, 2]), ValueError,
     'vl_nnpool: Pad [0, 0, 0, 2] must be smaller than POOL [3, 2] (top and bottom below PH, left and right below PW)'),
    (lambda: vl_nnpool(X, [2, 3], "Pad", [2, 0, 0, 0]), ValueError,
     'vl_nnpool: Pad [2, 0, 0, 0] must be smaller than POOL [2, 3] (top and bottom below PH, left and right below PW)'),
    (lambda: vl_nnpool(X, 2, pad=-1), ValueError, 'vl_nnpool: Pad must be non-negative, got [-1, -1, -1, -1]'),
    (lambda: vl_nnpool(X, 2, pad=[0, 1]), ValueError,
     'vl_nnpool: Pad must have 1 or 4 elements [TOP BOTTOM LEFT RIGHT], got 2'),
    (lambda: vl_nnpool(X, 2, stride=0), ValueError, 'vl_nnpool: Stride must be at least 1, got [0, 0]'),
    (lambda: vl_nnpool(X, 2, "stride", [1, -2]), ValueError, 'vl_nnpool: Stride must be at least 1, got [1, -2]'),
    (lambda: vl_nnpool(X, 0), ValueError, 'vl_nnpool: POOL must be at least 1, got [0, 0]'),
    (lambda: vl_nnpool(X, [2, 0]), ValueError, 'vl_nnpool: POOL must be at least 1, got [2, 0]'),
    (lambda: vl_nnpool(X, [2, 2, 2]), ValueError, 'vl_nnpool: POOL must have 1 or 2 elements [Y X], got 3'),
    (lambda: vl_nnpool(X, 1.5), ValueError, 'vl_nnpool: POOL must hold whole numbers, got 1.5'),
    (lambda: vl_nnpool(X, 2**31), ValueError,
     'vl_nnpool: POOL [2147483648, 2147483648] is too large (at most 2147483646)'),
    (lambda: vl_nnpool(X, 7), ValueError, 'vl_nnpool: POOL [7, 7] is larger than X with padding (6 x 6)'),
    (lambda: vl_nnpool(X, [2, 9], pad=[0, 0, 1, 1]), ValueError,
     'vl_nnpool: POOL [2, 9] is larger than X with padding (6 x 8)'),
    (lambda: vl_nnpool(np.zeros((0, 4), np.float32), 1), ValueError,
     'vl_nnpool: X has zero height or width ((0, 4)); there is nothing to pool'),
    (lambda: vl_nnpool(np.zeros((6, 6), np.int32), 2), TypeError,
     'vl_nnpool: X must be a float32 or float64 array, got an integer array (int32)'),
    (lambda: vl_nnpool(np.zeros((6, 6), bool), 2), TypeError,
     'vl_nnpool: X must be a float32 or float64 array, got a logical array (bool)'),
    (lambda: vl_nnpool(np.zeros((6, 6), np.complex64), 2), TypeError,
     'vl_nnpool: X must be a float32 or float64 array, got a complex array (complex64)'),
    (lambda: vl_nnpool(X, 2, DY.astype(np.float64)), TypeError,
     'vl_nnpool: DZDY is float64 but X is float32; all arrays must share one dtype'),
    (lambda: vl_nnpool(X, 2, DY.astype(np.int64)), TypeError,
     'vl_nnpool: DZDY must be a float32 or float64 array, got an integer array (int64)'),
    (lambda: vl_nnpool(X, 2, DY[:4]), ValueError,
     'vl_nnpool: DZDY has shape (4, 5, 2, 2) but the output of the pooling is (5, 5, 2, 2)'),
    (lambda: vl_nnpool(X, 2, DY[:, :, :1]), ValueError,
     'vl_nnpool: DZDY has shape (5, 5, 1, 2) but the output of the pooling is (5, 5, 2, 2)'),
    (lambda: vl_nnpool(X, 2, DY, dzdy=DY), TypeError,
     'vl_nnpool: DZDY is given both positionally and as a keyword'),
    (lambda: vl_nnpool(X, 2, "Padding", 1), TypeError,
     "vl_nnpool: unknown option 'Padding'. Valid options are: Pad, Stride, Method, Winners, InputSize"),
    (lambda: vl_nnpool(X, 2, window=2), TypeError,
     "vl_nnpool: unknown option 'window'. Valid options are: Pad, Stride, Method, Winners, InputSize"),
    (lambda: vl_nnpool(X, 2, "Pad"), TypeError, "vl_nnpool: option 'Pad' needs a value"),
    (lambda: vl_nnpool(X, 2, "Pad", 1, "pad", 1), TypeError, "vl_nnpool: option 'Pad' is given twice"),
    (lambda: vl_nnpool(X, 2, method="median"), ValueError,
     "vl_nnpool: Method must be one of 'max', 'avg', got 'median'"),
    (lambda: vl_nnpool(X, 2, "Method", 2), ValueError, "vl_nnpool: Method must be one of 'max', 'avg', got 2"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=exact(message)) as info:
        call()
    assert str(info.value).startswith("vl_nnpool: ")

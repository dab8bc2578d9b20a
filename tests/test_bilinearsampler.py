"""vl_nnbilinearsampler against a loop reference of MatConvNet's rule, finite differences, PyTorch's
grid_sample and MatConvNet's own outputs; threads, read-only inputs, errors."""
import math
import os
import re

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnbilinearsampler
from cnnx.testing import check_derivative

DATA = os.path.join(os.path.dirname(__file__), "data", "mcn_bilinearsampler.mat")
DTYPES = [np.float32, np.float64]


def exact(message):
    return f"^{re.escape(message)}$"


def sampler_reference(x, grid, dzdy=None):
    """MatConvNet's CPU sampler, point by point, in float64: forward, or (dzdx, dzdgrid)."""
    H, W, C, N = x.shape
    _, Ho, Wo, No = grid.shape
    group = No // N
    y = np.zeros((Ho, Wo, C, No))
    dx, dgrid = np.zeros(x.shape), np.zeros(grid.shape)
    for m in range(No):
        image = x[:, :, :, m // group].astype(np.float64)
        for i in range(Ho):
            for j in range(Wo):
                py = (grid[0, i, j, m] + 1) / 2 * (H - 1)
                px = (grid[1, i, j, m] + 1) / 2 * (W - 1)
                sy, sx = math.floor(py), math.floor(px)
                if not (0 <= sy < H and 0 <= sx < W):
                    continue
                wy, wx = py - sy, px - sx
                for r, vy, dvy in ((sy, 1 - wy, -1), (sy + 1, wy, 1)):
                    for q, vx, dvx in ((sx, 1 - wx, -1), (sx + 1, wx, 1)):
                        if r >= H or q >= W:
                            continue
                        y[i, j, :, m] += vy * vx * image[r, q]
                        if dzdy is not None:
                            d = dzdy[i, j, :, m]
                            dx[r, q, :, m // group] += vy * vx * d
                            dgrid[0, i, j, m] += (H - 1) / 2 * dvy * vx * np.dot(d, image[r, q])
                            dgrid[1, i, j, m] += (W - 1) / 2 * vy * dvx * np.dot(d, image[r, q])
    return y if dzdy is None else (dx, dgrid)


def random_grid(rng, Ho, Wo, No, low=-1.2, high=1.2, H=None, W=None):
    """Grid points in [low, high], moved off the whole-pixel positions of an H x W image (where the
    sampler is not differentiable) when H and W are given."""
    grid = rng.uniform(low, high, (2, Ho, Wo, No))
    if H is not None:
        for k, size in ((0, H), (1, W)):
            pos = (grid[k] + 1) / 2 * (size - 1)
            frac = pos - np.floor(pos)
            pos = np.where(np.minimum(frac, 1 - frac) < 0.02, np.floor(pos) + 0.5, pos)
            grid[k] = pos / (size - 1) * 2 - 1
    return np.asfortranarray(grid)


SHAPES = [  # x shape, (Ho, Wo, No)
    ((5, 4, 3, 2), (3, 6, 2)),
    ((6, 6, 2, 1), (4, 3, 3)),   # three grids sample the one image
    ((4, 7, 1, 2), (5, 5, 6)),
    ((1, 5, 2, 1), (2, 3, 1)),   # a single row: every point reads row 0
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, out", SHAPES)
def test_matches_loop_reference(dtype, x_shape, out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    grid = random_grid(rng, *out).astype(dtype)
    dzdy = rng.standard_normal(out[:2] + (x_shape[2], out[2])).astype(dtype)
    y = vl_nnbilinearsampler(x, grid)
    assert y.dtype == dtype and y.flags.f_contiguous and y.shape == dzdy.shape
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, sampler_reference(x, grid), **tol)
    dx, dgrid = vl_nnbilinearsampler(x, grid, dzdy)
    assert dx.shape == x.shape and dgrid.shape == grid.shape and dx.dtype == dgrid.dtype == dtype
    ref_dx, ref_dgrid = sampler_reference(x, grid, dzdy)
    np.testing.assert_allclose(dx, ref_dx, **tol)
    np.testing.assert_allclose(dgrid, ref_dgrid, **tol)


@pytest.mark.parametrize("x_shape, out", SHAPES[:3])
def test_derivatives_by_finite_differences(x_shape, out):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)
    # Points inside the image and off whole-pixel positions: the sampler is smooth there.
    grid = random_grid(rng, *out, low=-0.95, high=0.95, H=x_shape[0], W=x_shape[1])
    dzdy = rng.standard_normal(out[:2] + (x_shape[2], out[2]))
    dx, dgrid = vl_nnbilinearsampler(x, grid, dzdy)
    check_derivative(lambda t: vl_nnbilinearsampler(t, grid), x, dzdy, dx, method="central", rtol=1e-8)
    check_derivative(lambda t: vl_nnbilinearsampler(x, t), grid, dzdy, dgrid, method="central", rtol=1e-6)


def test_grid_derivative_at_whole_pixels_is_the_one_towards_larger_coordinates():
    x = np.array([[0.0, 10.0, 30.0]])        # one row: y = x at column px
    grid = np.array([[0.0], [0.0]]).reshape(2, 1, 1)   # px = 1 exactly
    dx, dgrid = vl_nnbilinearsampler(x, grid, np.ones((1, 1)))
    assert dgrid[1, 0, 0] == (30.0 - 10.0) * (3 - 1) / 2   # the slope to the right, d px / d u = 1
    assert dx.tolist() == [[0.0, 1.0, 0.0]]


def test_matconvnets_range_rule():
    """Points whose floor is in [0, H) x [0, W) sample; just above the first pixel centre gives 0,
    just below the last reads the one pixel inside (MatConvNet's CPU code)."""
    x = np.array([[1.0], [2.0], [4.0]])      # H = 3, W = 1: py = (v + 1)
    v = np.array([-1.001, -1.0, 0.0, 0.9, 1.0, 1.5, 1.999, 2.0, np.inf, -np.inf])
    grid = np.stack([v, np.zeros_like(v)]).reshape(2, -1, 1)
    y = vl_nnbilinearsampler(x, grid)[:, 0, 0]
    np.testing.assert_allclose(y, [0.0, 1.0, 2.0, 3.8, 4.0, 2.0, 4.0 * 0.001, 0.0, 0.0, 0.0], atol=1e-12)
    nan_grid = np.array([np.nan, 0.0, 0.0, 0.0]).reshape(2, 2, 1)
    assert np.isnan(vl_nnbilinearsampler(x, nan_grid)[0, 0]) and vl_nnbilinearsampler(x, nan_grid)[1, 0] == 2.0
    dx, dgrid = vl_nnbilinearsampler(x, nan_grid, np.ones((2, 1)))
    assert np.isnan(dgrid[:, 0, 0]).all() and dx.ravel().tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, out", SHAPES)
def test_against_torch_grid_sample(dtype, x_shape, out):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(dtype)
    # PyTorch reads points in (-1 - 2/(H-1), -1) from the first pixel; MatConvNet gives 0 there.
    grid = random_grid(rng, *out, low=-1.0, high=1.3).astype(dtype)
    dzdy = rng.standard_normal(out[:2] + (x_shape[2], out[2])).astype(dtype)
    group = out[2] // x_shape[3]
    # torch: input (No, C, H, W), its image repeated per grid; grid (No, Ho, Wo, 2) as (u, v).
    xt = torch.tensor(np.repeat(x, group, axis=3).transpose(3, 2, 0, 1).copy(), requires_grad=True)
    gt = torch.tensor(grid[::-1].transpose(3, 1, 2, 0).copy(), requires_grad=True)
    yt = torch.nn.functional.grid_sample(xt, gt, mode="bilinear", padding_mode="zeros", align_corners=True)
    yt.backward(torch.tensor(dzdy.transpose(3, 2, 0, 1).copy()))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vl_nnbilinearsampler(x, grid), yt.detach().numpy().transpose(2, 3, 1, 0), **tol)
    dx, dgrid = vl_nnbilinearsampler(x, grid, dzdy)
    torch_dx = xt.grad.numpy().transpose(2, 3, 1, 0)
    torch_dx = torch_dx.reshape(x_shape[:3] + (x_shape[3], group)).sum(axis=4)
    np.testing.assert_allclose(dx, torch_dx, **tol)
    np.testing.assert_allclose(dgrid, gt.grad.numpy().transpose(3, 1, 2, 0)[::-1], **tol)


def test_same_bits_at_any_thread_count():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 20, 8, 2)).astype(np.float32)
    grid = random_grid(rng, 40, 40, 4).astype(np.float32)
    dzdy = rng.standard_normal((40, 40, 8, 4)).astype(np.float32)
    results = []
    before = cnnx.get_num_threads()
    try:
        for n in (1, 2):
            cnnx.set_num_threads(n)
            results.append((vl_nnbilinearsampler(x, grid),) + vl_nnbilinearsampler(x, grid, dzdy))
    finally:
        cnnx.set_num_threads(before)
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


def test_read_only_c_ordered_inputs_and_matlab_shapes():
    rng = np.random.default_rng(4)
    x = np.ascontiguousarray(rng.standard_normal((5, 4, 3)))
    grid = np.ascontiguousarray(random_grid(rng, 3, 2, 1)[..., 0])  # MATLAB's 2 x Ho x Wo for No = 1
    dzdy = np.ascontiguousarray(rng.standard_normal((3, 2, 3)))
    expected = (vl_nnbilinearsampler(x, grid),) + vl_nnbilinearsampler(x, grid, dzdy)
    for a in (x, grid, dzdy):
        a.setflags(write=False)
    got = (vl_nnbilinearsampler(x, grid),) + vl_nnbilinearsampler(x, grid, dzdy)
    assert got[0].shape == (3, 2, 3) and got[1].shape == x.shape and got[2].shape == (2, 3, 2)
    for g, e in zip(got, expected):
        assert g.tobytes() == e.tobytes()
    assert vl_nnbilinearsampler(x, grid, dzdy=dzdy)[1].tobytes() == expected[2].tobytes()


def test_empty_grids_and_channels():
    x = np.ones((3, 3, 2, 2), np.float32)
    assert vl_nnbilinearsampler(x, np.zeros((2, 0, 4, 2), np.float32)).shape == (0, 4, 2, 2)
    assert vl_nnbilinearsampler(x, np.zeros((2, 3, 3, 0), np.float32)).shape == (3, 3, 2, 0)
    assert vl_nnbilinearsampler(x[..., :0], np.zeros((2, 3, 3, 0), np.float32)).shape == (3, 3, 2, 0)
    dx, dgrid = vl_nnbilinearsampler(x[:, :, :0], np.zeros((2, 2, 2, 2), np.float32), np.zeros((2, 2, 0, 2),
                                                                                                np.float32))
    assert dx.shape == (3, 3, 0, 2) and not dgrid.any() and dgrid.shape == (2, 2, 2, 2)


X = np.zeros((4, 4, 2, 2))
GRID = np.zeros((2, 3, 3, 2))


@pytest.mark.parametrize("call, error, message", [
    (lambda: vl_nnbilinearsampler(X, np.zeros((3, 3, 3, 2))), ValueError,
     "vl_nnbilinearsampler: GRID has shape (3, 3, 3, 2); its first dimension must be 2 (the (v, u) coordinates "
     "of each point)"),
    (lambda: vl_nnbilinearsampler(X, np.zeros((2, 3, 3, 3))), ValueError,
     "vl_nnbilinearsampler: GRID has 3 grids (its 4th dimension), not a multiple of the 2 images of X"),
    (lambda: vl_nnbilinearsampler(X, GRID, np.zeros((3, 3, 2, 1))), ValueError,
     "vl_nnbilinearsampler: DZDY has shape (3, 3, 2, 1) but Y has shape (3, 3, 2, 2)"),
    (lambda: vl_nnbilinearsampler(X[:0], GRID), ValueError,
     "vl_nnbilinearsampler: X has shape (0, 4, 2, 2); H and W must be at least 1 (there must be pixels to "
     "sample)"),
    (lambda: vl_nnbilinearsampler(X[..., :0], GRID), ValueError,
     "vl_nnbilinearsampler: GRID has 2 grids (its 4th dimension), not a multiple of the 0 images of X"),
    (lambda: vl_nnbilinearsampler(X, GRID.astype(np.float32)), TypeError,
     "vl_nnbilinearsampler: GRID is float32 but X is float64; all arrays must share one dtype"),
    (lambda: vl_nnbilinearsampler(X, GRID.astype(int)), TypeError,
     "vl_nnbilinearsampler: GRID must be a float32 or float64 array, got an integer array (int64)"),
    (lambda: vl_nnbilinearsampler(X, np.zeros((2, 3, 3, 2, 1))), ValueError,
     "vl_nnbilinearsampler: GRID must have 2 to 4 dimensions (H x W x C x N), got 5 ((2, 3, 3, 2, 1))"),
    (lambda: vl_nnbilinearsampler(X, GRID, "NoCuDNN"), TypeError,
     "vl_nnbilinearsampler: unknown option 'NoCuDNN'; vl_nnbilinearsampler takes no options"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=exact(message)):
        call()


def load_reference():
    cases = scipy.io.loadmat(DATA, squeeze_me=False, struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


@pytest.mark.parametrize("case", load_reference())
def test_matches_matconvnet(case):
    tol = 1e-5 if case.x.dtype == np.float32 else 1e-12

    def close(got, expected):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * max(1.0, np.abs(expected).max()))

    close(vl_nnbilinearsampler(case.x, case.grid), case.y)
    dx, dgrid = vl_nnbilinearsampler(case.x, case.grid, case.dzdy)
    close(dx, case.dzdx)
    close(dgrid, case.dzdgrid)

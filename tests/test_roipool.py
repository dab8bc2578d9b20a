"""vl_nnroipool against a loop reference of MatConvNet's rule, finite differences, PyTorch's adaptive
pooling and MatConvNet's own outputs; the DagNN ROIPooling block; threads, read-only inputs, errors."""
import math
import os
import re

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnroipool
from cnnx.dagnn import DagNN, ROIPooling
from cnnx.io import load_matconvnet, save_matconvnet
from cnnx.roipool import roi_transform
from cnnx.testing import check_derivative

DATA = os.path.join(os.path.dirname(__file__), "data", "mcn_roipool.mat")
DTYPES = [np.float32, np.float64]


def exact(message):
    return f"^{re.escape(message)}$"


def round_half_away(v):
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def regions(rois, transform, dtype):
    """(image, top, left, height, width) of each region (0-based), by MatConvNet's rule."""
    t = transform
    out = []
    for t0, u0, v0, u1, v1 in np.asarray(rois, np.float64).reshape(5, -1, order="F").T:
        cu0, cv0 = dtype(t[0] * u0 + t[2] * v0 + t[4]), dtype(t[1] * u0 + t[3] * v0 + t[5])
        cu1, cv1 = dtype(t[0] * u1 + t[2] * v1 + t[4]), dtype(t[1] * u1 + t[3] * v1 + t[5])
        top, left = round_half_away(cv0) - 1, round_half_away(cu0) - 1
        height = max(round_half_away(cv1) - 1 - top + 1, 1)
        width = max(round_half_away(cu1) - 1 - left + 1, 1)
        out.append((int(t0) - 1, top, left, height, width))
    return out


def tile(p, count, side, first, size, dtype):
    """[start, stop) of tile p of a region side, in the data's arithmetic, clipped to [0, size]."""
    bin_size = dtype(side / count)
    start = math.floor(dtype(p) * bin_size) + first
    stop = math.ceil(dtype(p + 1) * bin_size) + first
    return min(max(start, 0), size), min(max(stop, 0), size)


def roipool_reference(x, rois, subdivisions=(1, 1), method="max", transform=1.0, dzdy=None):
    """MatConvNet's ROI pooling, tile by tile: forward, or dzdx given dzdy."""
    x4 = x.reshape(x.shape + (1,) * (4 - x.ndim))
    H, W, C, _ = x4.shape
    SH, SW = subdivisions
    dtype = x.dtype.type
    found = regions(rois, roi_transform(transform), dtype)
    y = np.zeros((SH, SW, C, len(found)))
    dx = np.zeros(x4.shape)
    for k, (image, top, left, height, width) in enumerate(found):
        for pw in range(SW):
            c0, c1 = tile(pw, SW, width, left, W, dtype)
            for ph in range(SH):
                r0, r1 = tile(ph, SH, height, top, H, dtype)
                if r1 <= r0 or c1 <= c0:
                    continue
                for c in range(C):
                    cells = x4[r0:r1, c0:c1, c, image].astype(np.float64)
                    if method == "avg":
                        y[ph, pw, c, k] = cells.mean()
                        if dzdy is not None:
                            dx[r0:r1, c0:c1, c, image] += dzdy[ph, pw, c, k] / cells.size
                    else:
                        first = int(np.argmax(cells.ravel(order="F")))  # the first maximum, column-major
                        r, q = r0 + first % (r1 - r0), c0 + first // (r1 - r0)
                        y[ph, pw, c, k] = x4[r, q, c, image]
                        if dzdy is not None:
                            dx[r, q, c, image] += dzdy[ph, pw, c, k]
    return y if dzdy is None else dx.reshape(x.shape)


def random_rois(rng, K, H, W, N, spill=0):
    """K random regions [t u0 v0 u1 v1]; corners up to ``spill`` pixels outside the image."""
    u = np.sort(rng.integers(1 - spill, W + 1 + spill, (2, K)), axis=0)
    v = np.sort(rng.integers(1 - spill, H + 1 + spill, (2, K)), axis=0)
    return np.vstack([rng.integers(1, N + 1, K), u[0], v[0], u[1], v[1]]).astype(np.float64)


CASES = [  # x shape, K, subdivisions, transform, spill
    ((9, 8, 3, 2), 5, (2, 3), 1.0, 0),
    ((12, 10, 2, 3), 7, (3, 3), 1.0, 3),            # corners outside the image: clipped and empty tiles
    ((15, 14, 2, 1), 4, (4, 2), 0.5, 0),            # scaled corners, more tiles than rows
    ((10, 11, 1, 2), 6, (1, 1), [0.5, 0.75], 2),
    ((8, 9, 2, 2), 3, (2, 2), [0.0, 1.0, 1.0, 0.0, 0.0, 0.0], 0),   # u and v swapped
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("x_shape, K, subdivisions, transform, spill", CASES)
def test_matches_loop_reference(dtype, method, x_shape, K, subdivisions, transform, spill):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    rois = random_rois(rng, K, x_shape[0], x_shape[1], x_shape[3], spill).astype(dtype)
    opts = ("Method", method, "Subdivisions", subdivisions, "Transform", transform)
    y = vl_nnroipool(x, rois, *opts)
    assert y.shape == subdivisions + (x_shape[2], K) and y.dtype == dtype and y.flags.f_contiguous
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(y, roipool_reference(x, rois, subdivisions, method, transform), **tol)
    dzdy = rng.standard_normal(y.shape).astype(dtype)
    dzdx = vl_nnroipool(x, rois, dzdy, *opts)
    assert dzdx.shape == x.shape and dzdx.dtype == dtype
    np.testing.assert_allclose(dzdx, roipool_reference(x, rois, subdivisions, method, transform, dzdy), **tol)


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("x_shape, K, subdivisions, transform, spill", CASES[:3])
def test_derivatives_by_finite_differences(method, x_shape, K, subdivisions, transform, spill):
    rng = np.random.default_rng(1)
    # Distinct values far apart (no two within 1e-3): max pooling is smooth for steps much smaller.
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape) * 1e-2 + rng.uniform(0, 1e-3, x_shape)
    rois = random_rois(rng, K, x_shape[0], x_shape[1], x_shape[3], spill)
    opts = dict(method=method, subdivisions=subdivisions, transform=transform)
    dzdy = rng.standard_normal(subdivisions + (x_shape[2], K))
    dzdx = vl_nnroipool(x, rois, dzdy, **opts)
    check_derivative(lambda t: vl_nnroipool(t, rois, **opts), x, dzdy, dzdx, method="central", rtol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["max", "avg"])
def test_against_torch_adaptive_pooling(dtype, method):
    """Regions inside the image are PyTorch's adaptive pooling of the cropped region (same tiles)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((13, 11, 3, 2)).astype(dtype)
    rois = random_rois(rng, 6, 13, 11, 2).astype(dtype)
    SH, SW = 3, 2
    dzdy = rng.standard_normal((SH, SW, 3, 6)).astype(dtype)
    xt = torch.tensor(x.transpose(3, 2, 0, 1).copy(), requires_grad=True)
    pool = torch.nn.functional.adaptive_max_pool2d if method == "max" else torch.nn.functional.adaptive_avg_pool2d
    outputs = []
    for t, u0, v0, u1, v1 in rois.astype(int).T:
        outputs.append(pool(xt[t - 1:t, :, v0 - 1:v1, u0 - 1:u1], (SH, SW)))
    yt = torch.cat(outputs)
    yt.backward(torch.tensor(dzdy.transpose(3, 2, 0, 1).copy()))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    opts = dict(method=method, subdivisions=[SH, SW])
    np.testing.assert_allclose(vl_nnroipool(x, rois, **opts), yt.detach().numpy().transpose(2, 3, 1, 0), **tol)
    np.testing.assert_allclose(vl_nnroipool(x, rois, dzdy, **opts), xt.grad.numpy().transpose(2, 3, 1, 0), **tol)


def test_max_ties_nan_and_minus_infinity():
    x = np.array([[1.0, 3.0], [3.0, 2.0]])          # 3 at (1, 0) comes first in column order
    whole = np.array([1.0, 1, 1, 2, 2])
    assert vl_nnroipool(x, whole, np.ones((1, 1))).tolist() == [[0.0, 0.0], [1.0, 0.0]]
    x = np.array([[1.0, np.nan], [np.nan, 2.0]])
    assert np.isnan(vl_nnroipool(x, whole)).all()
    assert vl_nnroipool(x, whole, np.ones((1, 1))).tolist() == [[0.0, 0.0], [1.0, 0.0]]
    x = np.full((2, 2), -np.inf)
    assert vl_nnroipool(x, whole)[0, 0, 0, 0] == -np.inf
    assert vl_nnroipool(x, whole, np.ones((1, 1))).tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_rounding_clipping_and_empty_tiles():
    x = np.arange(1.0, 21.0).reshape(4, 5, order="F")
    # Corners round half away from zero: u 1.5 -> 2, v 2.5 -> 3; 0.5 and -0.5 -> 1 and -1.
    rois = np.array([[1.0, 1.5, 2.5, 1.5, 2.5], [1.0, -0.5, -0.5, 0.5, 0.5]]).T
    np.testing.assert_array_equal(vl_nnroipool(x, rois)[0, 0, 0], [x[2, 1], x[0, 0]])
    # A region below the image: every tile empty, 0, no derivative.
    below = np.array([1.0, 1, 6, 2, 9])
    assert not vl_nnroipool(x, below, subdivisions=2).any()
    assert not vl_nnroipool(x, below, np.ones((2, 2, 1, 1)), subdivisions=2).any()
    # An inverted region is one pixel at its first corner.
    inverted = np.array([1.0, 3, 4, 1, 1])
    assert vl_nnroipool(x, inverted)[0, 0, 0, 0] == x[3, 2]


def test_transform_forms():
    assert roi_transform(2.0).tolist() == [2.0, 0.0, 0.0, 2.0, -1.0, -1.0]
    assert roi_transform([2.0, 3.0]).tolist() == [2.0, 0.0, 0.0, 3.0, -1.0, -2.0]
    matrix = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, -0.5]])  # MATLAB's 2 x 3, read in column order
    assert roi_transform(matrix.reshape(-1, order="F")).tolist() == [0.0, 1.0, 1.0, 0.0, 0.5, -0.5]


def test_same_bits_at_any_thread_count():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 40, 16, 4)).astype(np.float32)
    rois = random_rois(rng, 60, 40, 40, 4, spill=2).astype(np.float32)  # overlapping regions
    dzdy = rng.standard_normal((3, 3, 16, 60)).astype(np.float32)
    results = []
    before = cnnx.get_num_threads()
    try:
        for n in (1, 2):
            cnnx.set_num_threads(n)
            results.append([vl_nnroipool(x, rois, subdivisions=3, method=m) for m in ("max", "avg")]
                           + [vl_nnroipool(x, rois, dzdy, subdivisions=3, method=m) for m in ("max", "avg")])
    finally:
        cnnx.set_num_threads(before)
    for one, two in zip(*results):
        assert one.tobytes() == two.tobytes()


def test_read_only_c_ordered_inputs_and_matlab_shapes():
    rng = np.random.default_rng(4)
    x = np.ascontiguousarray(rng.standard_normal((6, 5, 2)))
    rois = np.ascontiguousarray(random_rois(rng, 1, 6, 5, 1)[:, 0])   # one region: MATLAB's 5 x 1
    dzdy = np.ascontiguousarray(rng.standard_normal((2, 2, 2)))       # MATLAB's 2 x 2 x 2 for K = 1
    expected = vl_nnroipool(x, rois, subdivisions=2), vl_nnroipool(x, rois, dzdy, subdivisions=2)
    for a in (x, rois, dzdy):
        a.setflags(write=False)
    got = vl_nnroipool(x, rois, subdivisions=2), vl_nnroipool(x, rois, dzdy=dzdy, subdivisions=2)
    assert got[0].shape == (2, 2, 2, 1) and got[1].shape == x.shape
    for g, e in zip(got, expected):
        assert g.tobytes() == e.tobytes()


def test_no_regions_and_no_channels():
    x = np.ones((4, 4, 3, 2))
    assert vl_nnroipool(x, np.zeros((5, 0)), subdivisions=2).shape == (2, 2, 3, 0)
    assert not vl_nnroipool(x, np.zeros((5, 0)), np.zeros((2, 2, 3, 0)), subdivisions=2).any()
    assert vl_nnroipool(x[:, :, :0], np.array([1.0, 1, 1, 2, 2])).shape == (1, 1, 0, 1)


X = np.zeros((4, 4, 2, 2))
ROI = np.array([1.0, 1, 1, 2, 2])


@pytest.mark.parametrize("call, error, message", [
    (lambda: vl_nnroipool(X, np.zeros(7)), ValueError,
     "vl_nnroipool: ROIS has 7 elements; it must be a 5 x K array [t u0 v0 u1 v1] (5 K elements)"),
    (lambda: vl_nnroipool(X, np.array([3.0, 1, 1, 2, 2])), ValueError,
     "vl_nnroipool: ROIS[0, 0] is image 3; image indices must be whole numbers in 1..2 (X has 2 images)"),
    (lambda: vl_nnroipool(X, np.array([[1.0, 1, 1, 2, 2], [1.5, 1, 1, 2, 2]]).T), ValueError,
     "vl_nnroipool: ROIS[0, 1] is image 1.5; image indices must be whole numbers in 1..2 (X has 2 images)"),
    (lambda: vl_nnroipool(X, np.array([1.0, np.nan, 1, 2, 2])), ValueError,
     "vl_nnroipool: ROIS must hold finite numbers"),
    (lambda: vl_nnroipool(X, np.array([1.0, 1, 1, 2, 2**53])), ValueError,
     f"vl_nnroipool: ROIS has corners at {2.0**53:g} after the Transform; they must be less than 2^52 in "
     "magnitude"),
    (lambda: vl_nnroipool(X, ROI, transform=[1, 2, 3]), ValueError,
     "vl_nnroipool: Transform must have 1, 2 or 6 elements (a scale, [Tu Tv] or a 2 x 3 matrix), got 3"),
    (lambda: vl_nnroipool(X, ROI, transform=np.inf), ValueError,
     "vl_nnroipool: Transform must be a finite real number, got inf"),
    (lambda: vl_nnroipool(X, ROI, transform="x"), TypeError, "vl_nnroipool: Transform must be a real number, "
                                                             "got 'x'"),
    (lambda: vl_nnroipool(X, ROI, subdivisions=0), ValueError,
     "vl_nnroipool: Subdivisions must be at least 1, got [0, 0]"),
    (lambda: vl_nnroipool(X, ROI, "Method", "median"), ValueError,
     "vl_nnroipool: Method must be one of 'max', 'avg', got 'median'"),
    (lambda: vl_nnroipool(X, ROI, np.zeros((1, 1, 2, 2))), ValueError,
     "vl_nnroipool: DZDY has shape (1, 1, 2, 2) but Y has shape (1, 1, 2, 1)"),
    (lambda: vl_nnroipool(X[:0], ROI), ValueError,
     "vl_nnroipool: X has shape (0, 4, 2, 2); H and W must be at least 1 (there must be pixels to pool)"),
    (lambda: vl_nnroipool(X, ROI.astype(np.float32)), TypeError,
     "vl_nnroipool: ROIS is float32 but X is float64; all arrays must share one dtype"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=exact(message)):
        call()


def load_reference():
    cases = scipy.io.loadmat(DATA, squeeze_me=False, struct_as_record=False)["cases"][0]
    return [pytest.param(c[0, 0], id=str(c[0, 0].name[0])) for c in cases]


@pytest.mark.parametrize("case", load_reference())
def test_matches_matconvnet(case):
    opts = [str(o.item()) if o.dtype.kind == "U" else o for o in case.opts.ravel()]
    tol = 1e-6 if case.x.dtype == np.float32 else 1e-13

    def close(got, expected):
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=tol, atol=tol)  # MATLAB drops 1s

    close(vl_nnroipool(case.x, case.rois, *opts), case.y)
    close(vl_nnroipool(case.x, case.rois, case.dzdy, *opts), case.dzdx)


# ------------------------------------------------------------------------------------------------
# DagNN ROIPooling
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flatten", [False, True])
def test_block_matches_the_function_and_its_sizes(flatten):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((10, 9, 3, 2)).astype(np.float32)
    rois = random_rois(rng, 4, 10, 9, 2).astype(np.float32)
    net = DagNN()
    net.add_layer("roi", ROIPooling(method="avg", subdivisions=[2, 3], transform=0.5, flatten=flatten),
                  ["x", "rois"], "y")
    net.conserve_memory = False
    opts = dict(method="avg", subdivisions=[2, 3], transform=0.5)
    y = vl_nnroipool(x, rois, **opts)
    shape = (1, 1, 18, 4) if flatten else (2, 3, 3, 4)
    dzdy = rng.standard_normal(shape).astype(np.float32)
    net.eval({"x": x, "rois": rois}, {"y": dzdy})
    np.testing.assert_array_equal(net.get_var("y").value, y.reshape(shape, order="F"))
    np.testing.assert_array_equal(net.get_var("x").der,
                                  vl_nnroipool(x, rois, dzdy.reshape(y.shape, order="F"), **opts))
    assert net.get_var("rois").der is None
    assert net.get_var_sizes({"x": x.shape, "rois": rois.shape})["y"] == shape


def test_block_properties_and_files(tmp_path):
    block = ROIPooling()
    assert (block.method, block.subdivisions, block.transform, block.flatten) == ("max", (6, 6), (1.0,), False)
    block = ROIPooling(method="AVG", subdivisions=7, transform=np.array([[0.0, 1, 0], [1, 0, 0]]), flatten=1)
    assert (block.method, block.subdivisions, block.flatten) == ("avg", (7, 7), True)
    assert block.transform == (0.0, 1.0, 1.0, 0.0, 0.0, 0.0)     # MATLAB's column order
    net = DagNN()
    net.add_layer("roi", block, ["x", "rois"], "y")
    path = os.path.join(tmp_path, "net.mat")
    save_matconvnet(net, path)
    loaded = load_matconvnet(path).layers[0].block
    assert isinstance(loaded, ROIPooling)
    assert (loaded.method, loaded.subdivisions, loaded.transform, loaded.flatten) == (
        block.method, block.subdivisions, block.transform, block.flatten)
    x = np.random.default_rng(6).standard_normal((8, 8, 2, 1))
    rois = np.array([1.0, 1, 2, 7, 8])
    np.testing.assert_array_equal(loaded.forward([x, rois], [])[0], block.forward([x, rois], [])[0])


@pytest.mark.parametrize("make, error, message", [
    (lambda: ROIPooling(method="min"), ValueError, "ROIPooling: method must be one of 'max', 'avg', got the string "
                                                   "'min'"),
    (lambda: ROIPooling(subdivisions=[1, 2, 3]), ValueError,
     "ROIPooling: subdivisions must be 1 or 2 positive whole numbers, got [1, 2, 3]"),
    (lambda: ROIPooling(transform=[1.0, 2.0, 3.0]), ValueError,
     "ROIPooling: transform must be 1, 2 or 6 finite numbers (a scale, [Tu Tv] or a 2 x 3 matrix), "
     "got [1, 2, 3]"),
    (lambda: ROIPooling(flatten="yes"), TypeError, "ROIPooling: flatten must be true or false, got the string "
                                                   "'yes'"),
])
def test_block_errors(make, error, message):
    with pytest.raises(error, match=exact(message)):
        make()

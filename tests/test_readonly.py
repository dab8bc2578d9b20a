"""Read-only inputs (np.load(..., mmap_mode='r'), arr.setflags(write=False)) work in every block,
forward and backward, and through vl_simplenn and DagNN: the kernels never write their inputs."""
import numpy as np
import pytest

from cnnx import (vl_nnbilinearsampler, vl_nnbnorm, vl_nnclippedrelu, vl_nnconv, vl_nndropout, vl_nnelu, vl_nngelu,
                  vl_nnpool, vl_nnprelu, vl_nnrelu, vl_nnroipool, vl_nnselu, vl_nnsilu, vl_nnsoftmaxloss, vl_nnsoftplus,
                  vl_nntanh)
from cnnx.concat import vl_nnconcat
from cnnx.dagnn import Conv, DagNN, Loss, Pooling, ReLU
from cnnx.nnloss import vl_nnloss
from cnnx.normalize import vl_nnnoffset, vl_nnnormalize, vl_nnnormalizelp, vl_nnspnorm
from cnnx.pdist import vl_nnpdist
from cnnx.softmax import vl_nnsigmoid, vl_nnsoftmax
from cnnx.simplenn import vl_simplenn

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=["setflags", "mmap"])
def read_only(request, tmp_path):
    """A function making a read-only copy of an array: flagged read-only, or memory-mapped 'r'."""
    count = [0]

    def make(arr):
        arr = np.array(arr)
        if request.param == "setflags":
            arr.setflags(write=False)
            return arr
        count[0] += 1
        path = tmp_path / f"a{count[0]}.npy"
        np.save(path, arr)
        return np.load(path, mmap_mode="r")

    return make


def randn(rng, shape, dtype, order="F"):
    return np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)


def assert_same(got, expected):
    """Results of the read-only call equal those of the writable call, bit for bit."""
    if isinstance(expected, (tuple, list)):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
    elif expected is None:
        assert got is None
    else:
        assert np.asarray(got).dtype == np.asarray(expected).dtype
        assert np.asarray(got).tobytes() == np.asarray(expected).tobytes()


def check(read_only, fn, *arrays, **kwargs):
    """fn(*arrays) with every array read-only gives what it gives with writable copies."""
    expected = fn(*[np.array(a) for a in arrays], **kwargs)
    frozen = [read_only(a) for a in arrays]
    assert all(not a.flags.writeable for a in frozen)
    assert_same(fn(*frozen, **kwargs), expected)


# (x shape, f shape or None, options): every kernel path of vl_nnconv (identity, 1x1 direct,
# fully connected with and without padding, im2row, im2col with and without one column of taps,
# strided, grouped), forward and backward.
CONV_CASES = [
    ((6, 5, 3, 2), None, {"pad": 1, "stride": 2}),
    ((6, 5, 3, 2), (1, 1, 3, 4), {}),
    ((4, 4, 3, 5), (4, 4, 3, 6), {}),
    ((3, 3, 3, 5), (4, 4, 3, 6), {"pad": [1, 0, 0, 1]}),
    ((7, 6, 2, 2), (3, 3, 2, 4), {"pad": 1}),
    ((10, 10, 4, 2), (3, 3, 4, 5), {"pad": 1}),
    ((9, 8, 4, 3), (3, 2, 4, 5), {"stride": 2, "dilate": [1, 2]}),
    ((7, 7, 6, 2), (3, 3, 2, 6), {"pad": [0, 1, 1, 0]}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_conv(case, dtype, read_only):
    xshape, fshape, opts = case
    rng = np.random.default_rng(0)
    x = randn(rng, xshape, dtype)
    f = None if fshape is None else randn(rng, fshape, dtype)
    k = xshape[2] if fshape is None else fshape[3]
    b = randn(rng, (1, k), dtype)
    y = vl_nnconv(x, f, b, **opts)
    dy = randn(rng, y.shape, dtype)
    if f is None:
        check(read_only, lambda x, b: vl_nnconv(x, None, b, **opts), x, b)
        check(read_only, lambda x, b, dy: vl_nnconv(x, None, b, dy, **opts), x, b, dy)
    else:
        check(read_only, lambda x, f, b: vl_nnconv(x, f, b, **opts), x, f, b)
        check(read_only, lambda x, f, b, dy: vl_nnconv(x, f, b, dy, **opts), x, f, b, dy)
        check(read_only, lambda x, f, dy: vl_nnconv(x, f, None, dy, "NoDerData", **opts), x, f, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["max", "avg"])
def test_pool(dtype, method, read_only):
    rng = np.random.default_rng(1)
    x = randn(rng, (7, 6, 3, 2), dtype)
    opts = {"pad": [0, 1, 0, 1], "stride": 2, "method": method}
    dy = randn(rng, vl_nnpool(x, 3, **opts).shape, dtype)
    check(read_only, lambda x: vl_nnpool(x, 3, **opts), x)
    check(read_only, lambda x, dy: vl_nnpool(x, 3, dy, **opts), x, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("leak", [0.0, 0.1])
def test_relu(dtype, leak, read_only):
    rng = np.random.default_rng(2)
    x = randn(rng, (5, 4, 3, 2), dtype)
    dy = randn(rng, x.shape, dtype)
    check(read_only, lambda x: vl_nnrelu(x, leak=leak), x)
    check(read_only, lambda x, dy: vl_nnrelu(x, dy, leak=leak), x, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn, opts", [
    (vl_nnelu, {"alpha": 0.5}), (vl_nnselu, {}), (vl_nnsoftplus, {}), (vl_nntanh, {}), (vl_nnsilu, {}),
    (vl_nngelu, {}), (vl_nngelu, {"approximate": "tanh"}), (vl_nnclippedrelu, {"ceiling": 1.0}),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_elementwise_activations(dtype, fn, opts, read_only):
    rng = np.random.default_rng(12)
    x = randn(rng, (5, 4, 3, 2), dtype)
    dy = randn(rng, x.shape, dtype)
    check(read_only, lambda x: fn(x, **opts), x)
    check(read_only, lambda x, dy: fn(x, dy, **opts), x, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slopes", [3, 1])
def test_prelu(dtype, slopes, read_only):
    rng = np.random.default_rng(3)
    x = randn(rng, (5, 4, 3, 2), dtype)
    a = np.asarray(rng.uniform(0.1, 0.5, (slopes, 1)), dtype=dtype)
    dy = randn(rng, x.shape, dtype)
    check(read_only, vl_nnprelu, x, a)
    check(read_only, vl_nnprelu, x, a, dy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bnorm(dtype, read_only):
    rng = np.random.default_rng(9)
    x = randn(rng, (5, 4, 3, 2), dtype)
    g, b, dy = randn(rng, (3, 1), dtype), randn(rng, (1, 3), dtype), randn(rng, x.shape, dtype)
    moments = np.asarray([[0.1, 1.5], [0.2, 0.5], [-0.3, 2.0]], dtype=dtype)
    check(read_only, vl_nnbnorm, x, g, b)
    check(read_only, vl_nnbnorm, x, g, b, dy)
    check(read_only, lambda x, g, b, m: vl_nnbnorm(x, g, b, moments=m), x, g, b, moments)
    check(read_only, lambda x, g, b, dy, m: vl_nnbnorm(x, g, b, dy, moments=m), x, g, b, dy, moments)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout(dtype, read_only):
    rng = np.random.default_rng(4)
    x = randn(rng, (5, 4, 3, 2), dtype)
    _, mask = vl_nndropout(x, rate=0.3, seed=5)
    dy = randn(rng, x.shape, dtype)
    check(read_only, lambda x: vl_nndropout(x, rate=0.3, seed=5), x)
    check(read_only, lambda x, mask: vl_nndropout(x, mask=mask), x, mask)
    check(read_only, lambda x, dy, mask: vl_nndropout(x, dy, mask=mask), x, dy, mask)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 2, 5, 2), (1, 1, 6, 4)])
def test_softmaxloss(dtype, shape, read_only):
    rng = np.random.default_rng(5)
    x = randn(rng, shape, dtype)
    h, w, d, n = shape
    c = rng.integers(0, d + 1, size=(h, w, 1, n)).astype(np.float64)
    weighted = np.concatenate([c, rng.uniform(0, 2, size=(h, w, 1, n))], axis=2)
    dy = np.ones(1, dtype)
    for labels in (c, weighted):
        check(read_only, vl_nnsoftmaxloss, x, labels)
        check(read_only, vl_nnsoftmaxloss, x, labels, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["softmaxlog", "log", "mhinge", "mshinge", "classerror", "topkerror",
                                  "binaryerror", "binarylog", "logistic", "hinge", "l2"])
def test_nnloss(dtype, loss, read_only):
    rng = np.random.default_rng(6)
    x = np.abs(randn(rng, (3, 2, 5, 2), dtype))
    if loss in ("binaryerror", "binarylog", "logistic", "hinge", "l2"):
        c = rng.integers(-1, 2, size=x.shape).astype(np.float64)
        weights = rng.uniform(0, 2, size=x.shape)
    else:
        c = rng.integers(0, 6, size=(3, 2, 1, 2)).astype(np.float64)
        weights = rng.uniform(0, 2, size=(3, 2, 1, 2))
    dy = np.ones(1, dtype)
    check(read_only, lambda x, c: vl_nnloss(x, c, loss=loss), x, c)
    check(read_only, lambda x, c, w: vl_nnloss(x, c, loss=loss, instance_weights=w), x, c, weights)
    check(read_only, lambda x, c, w, dy: vl_nnloss(x, c, dy, loss=loss, instance_weights=w),
          x, c, weights, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", [(3, 2, 5, 2), (1, 1, 5, 2)])
def test_pdist(dtype, target, read_only):
    rng = np.random.default_rng(12)
    x, x0 = randn(rng, (3, 2, 5, 2), dtype), randn(rng, target, dtype)
    weights = rng.uniform(0, 2, size=(3, 2, 1, 2))
    dy = randn(rng, (3, 2, 1, 2), dtype)
    check(read_only, lambda x, x0, w: vl_nnpdist(x, x0, 3, instance_weights=w), x, x0, weights)
    check(read_only, lambda x, x0, w, dy: vl_nnpdist(x, x0, 0.5, dy, instance_weights=w), x, x0, weights, dy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat(dtype, read_only):
    rng = np.random.default_rng(7)
    a, b = randn(rng, (3, 2, 2, 2), dtype), randn(rng, (3, 2, 3, 2), dtype)
    dy = randn(rng, (3, 2, 5, 2), dtype)
    check(read_only, lambda a, b: vl_nnconcat([a, b], 3), a, b)
    check(read_only, lambda a, b, dy: vl_nnconcat([a, b], 3, dy), a, b, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [vl_nnsoftmax, vl_nnsigmoid])
def test_softmax_and_sigmoid(dtype, block, read_only):
    rng = np.random.default_rng(10)
    x, dy = randn(rng, (5, 4, 3, 2), dtype), randn(rng, (5, 4, 3, 2), dtype)
    check(read_only, block, x)
    check(read_only, block, x, dy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalisation_blocks(dtype, read_only):
    rng = np.random.default_rng(11)
    x, dy = randn(rng, (5, 4, 6, 2), dtype), randn(rng, (5, 4, 6, 2), dtype)
    param = np.array([3, 1, 0.5, 0.75])
    check(read_only, vl_nnnormalize, x, param)
    check(read_only, vl_nnnormalize, x, param, dy)
    check(read_only, vl_nnnoffset, x, param[:2])
    check(read_only, vl_nnnoffset, x, param[:2], dy)
    check(read_only, vl_nnspnorm, x, param)
    check(read_only, vl_nnspnorm, x, param, dy)
    norms = vl_nnnormalizelp(x, p=4, dimensions=[1, 3])[1]
    for opts in ({}, {"p": 4, "dimensions": [1, 3]}):
        check(read_only, lambda x: vl_nnnormalizelp(x, **opts), x)
        check(read_only, lambda x, dy: vl_nnnormalizelp(x, dy, **opts), x, dy)
    check(read_only, lambda x, n: vl_nnnormalizelp(x, p=4, dimensions=[1, 3], norms=n), x, norms)
    check(read_only, lambda x, dy, n: vl_nnnormalizelp(x, dy, p=4, dimensions=[1, 3], norms=n), x, dy, norms)


def small_simplenn(dtype, frozen):
    rng = np.random.default_rng(8)
    return {"layers": [
        {"type": "conv", "weights": [frozen(randn(rng, (3, 3, 3, 4), dtype)),
                                     frozen(randn(rng, (1, 4), dtype))], "pad": 1},
        {"type": "pool", "pool": 2, "stride": 2},
        {"type": "relu"},
        {"type": "conv", "weights": [frozen(randn(rng, (3, 3, 4, 5), dtype)),
                                     frozen(randn(rng, (1, 5), dtype))]},
        {"type": "softmaxloss", "class": frozen(np.array([1.0, 3.0]))},
    ]}


@pytest.mark.parametrize("dtype", DTYPES)
def test_bilinearsampler(dtype, read_only):
    rng = np.random.default_rng(12)
    x, dy = randn(rng, (5, 4, 3, 2), dtype), randn(rng, (3, 6, 3, 4), dtype)
    grid = np.asarray(rng.uniform(-1.1, 1.1, (2, 3, 6, 4)), dtype=dtype, order="F")
    check(read_only, vl_nnbilinearsampler, x, grid)
    check(read_only, vl_nnbilinearsampler, x, grid, dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["max", "avg"])
def test_roipool(dtype, method, read_only):
    rng = np.random.default_rng(13)
    x, dy = randn(rng, (7, 6, 3, 2), dtype), randn(rng, (2, 3, 3, 3), dtype)
    rois = np.array([[1, 1, 1, 6, 7], [2, 2, 3, 4, 5], [1, 0, -1, 3, 9]], dtype).T
    check(read_only, lambda x, r: vl_nnroipool(x, r, method=method, subdivisions=[2, 3]), x, rois)
    check(read_only, lambda x, r, d: vl_nnroipool(x, r, d, method=method, subdivisions=[2, 3]), x, rois, dy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simplenn(dtype, read_only):
    x = randn(np.random.default_rng(9), (6, 6, 3, 2), dtype)
    expected = vl_simplenn(small_simplenn(dtype, np.array), np.array(x), 1.0)
    res = vl_simplenn(small_simplenn(dtype, read_only), read_only(x), 1.0)
    assert_same(res[-1]["x"], expected[-1]["x"])
    assert_same(res[0]["dzdx"], expected[0]["dzdx"])
    for got, want in zip(res, expected):
        assert_same(got["dzdw"], want["dzdw"])


def small_dagnn(dtype, frozen):
    rng = np.random.default_rng(10)
    net = DagNN()
    net.add_layer("conv1", Conv(size=(3, 3, 3, 4), pad=1), "input", "x1", ["c1f", "c1b"])
    net.add_layer("pool1", Pooling(method="avg", pool_size=2, stride=2), "x1", "x2")
    net.add_layer("relu1", ReLU(), "x2", "x3")
    net.add_layer("conv2", Conv(size=(3, 3, 4, 5)), "x3", "prediction", ["c2f", "c2b"])
    net.add_layer("loss", Loss(), ["prediction", "label"], "objective")
    for name, shape in (("c1f", (3, 3, 3, 4)), ("c1b", (4, 1)), ("c2f", (3, 3, 4, 5)), ("c2b", (5, 1))):
        net.get_param(name).value = frozen(randn(rng, shape, dtype))
    return net


@pytest.mark.parametrize("dtype", DTYPES)
def test_dagnn(dtype, read_only, one_thread):
    x = randn(np.random.default_rng(11), (6, 6, 3, 2), dtype)
    c = np.array([2.0, 5.0])
    expected = small_dagnn(dtype, np.array)
    expected.eval({"input": np.array(x), "label": c}, {"objective": 1})
    net = small_dagnn(dtype, read_only)
    net.eval({"input": read_only(x), "label": read_only(c)}, {"objective": 1})
    assert_same(net.get_var("objective").value, expected.get_var("objective").value)
    assert_same(net.get_var("input").der, expected.get_var("input").der)
    for got, want in zip(net.params, expected.params):
        assert_same(got.der, want.der)

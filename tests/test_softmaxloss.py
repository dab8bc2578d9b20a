"""Tests of vl_nnsoftmaxloss against a NumPy reference, finite differences and PyTorch."""
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnx
from cnnx import vl_nnsoftmaxloss
from cnnx.testing import check_derivative


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"


DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------- NumPy reference (slow, obvious)
def expand_labels(c, shape):
    """(classes, weights), each (H, W, N) float64, from any accepted label form."""
    height, width, _, images = shape
    c = np.asarray(c, dtype=np.float64)
    if c.size == images:
        c = c.reshape(1, 1, 1, images)
    c = c.reshape(c.shape + (1,) * (4 - c.ndim))
    c = np.broadcast_to(c, (height, width, c.shape[2], images))
    classes = c[:, :, 0, :]
    weights = c[:, :, 1, :] if c.shape[2] == 2 else np.ones_like(classes)
    return classes, weights


def softmaxloss_reference(x, c, dzdy=None):
    shape = x.shape + (1,) * (4 - x.ndim)
    x4 = x.reshape(shape).astype(np.float64)
    classes, weights = expand_labels(c, shape)
    loss = 0.0
    dzdx = np.zeros(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            for n in range(shape[3]):
                label = int(classes[i, j, n])
                if label == 0:
                    continue
                scores = x4[i, j, :, n]
                top = scores.max()
                total = np.sum(np.exp(scores - top))
                loss += weights[i, j, n] * (top + np.log(total) - scores[label - 1])
                grad = np.exp(scores - top) / total
                grad[label - 1] -= 1
                dzdx[i, j, :, n] = grad * weights[i, j, n]
    if dzdy is None:
        return loss
    return (dzdx * dzdy).reshape(x.shape)


def make_labels(form, shape, seed=0, dtype=np.float64):
    height, width, channels, images = shape
    rng = np.random.default_rng(seed)
    if form == "per_image":
        return rng.integers(1, channels + 1, images).astype(dtype)
    if form == "per_image_row":
        return rng.integers(1, channels + 1, (1, images)).astype(dtype)
    if form == "per_image_4d":
        return rng.integers(1, channels + 1, (1, 1, 1, images)).astype(dtype)
    if form == "per_pixel":
        c = rng.integers(0, channels + 1, (height, width, 1, images))  # 0s: ignored pixels
        return c.astype(dtype)
    if form == "weighted":
        c = np.empty((height, width, 2, images))
        c[:, :, 0, :] = rng.integers(0, channels + 1, (height, width, images))
        c[:, :, 1, :] = rng.uniform(0.5, 2.0, (height, width, images))
        return c.astype(dtype)
    if form == "replicated_weighted":
        c = np.empty((1, 1, 2, images))
        c[0, 0, 0, :] = rng.integers(0, channels + 1, images)
        c[0, 0, 1, :] = rng.uniform(0.5, 2.0, images)
        return c.astype(dtype)
    raise ValueError(form)


LABEL_FORMS = ["per_image", "per_image_row", "per_image_4d", "per_pixel", "weighted", "replicated_weighted"]


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", LABEL_FORMS)
@pytest.mark.parametrize("shape", [(1, 1, 10, 7), (4, 3, 5, 2), (17, 19, 6, 2)])
def test_matches_reference(dtype, form, shape):
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    c = make_labels(form, shape, seed=2)
    loss = vl_nnsoftmaxloss(x, c)
    assert isinstance(loss, dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, softmaxloss_reference(x, c), rtol=rtol)
    dzdx = vl_nnsoftmaxloss(x, c, 0.7)
    assert dzdx.shape == x.shape and dzdx.dtype == dtype
    np.testing.assert_allclose(dzdx, softmaxloss_reference(x, c, 0.7), rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8, np.float32, np.float64])
def test_label_dtypes(label_dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5, 2))
    c = make_labels("per_pixel", x.shape, seed=4)
    expected = softmaxloss_reference(x, c)
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c.astype(label_dtype)), expected, rtol=1e-12)


def test_three_and_two_dimensional_x():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 6))  # N = 1 dropped, as MATLAB does
    c = rng.integers(1, 7, (4, 3))
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), softmaxloss_reference(x, c), rtol=1e-12)
    dzdx = vl_nnsoftmaxloss(x, c, 1.0)
    assert dzdx.shape == x.shape
    np.testing.assert_allclose(dzdx, softmaxloss_reference(x, c, 1.0), atol=1e-14)
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, [2]), softmaxloss_reference(x, [2]), rtol=1e-12)


def test_c_ordered_and_strided_x():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((2, 8, 6, 5))
    for x in (np.ascontiguousarray(base), base[:, ::2], base.transpose(1, 0, 2, 3)):
        c = make_labels("weighted", x.shape, seed=7)
        np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), softmaxloss_reference(x, c), rtol=1e-12)
        np.testing.assert_allclose(vl_nnsoftmaxloss(x, c, 1.5), softmaxloss_reference(x, c, 1.5), atol=1e-14)


def test_call_forms_and_dzdy_scaling():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    c = make_labels("per_pixel", x.shape, seed=9)
    loss = vl_nnsoftmaxloss(x, c)
    assert vl_nnsoftmaxloss(x, c, []) == loss
    assert vl_nnsoftmaxloss(x, c, None) == loss
    dzdx = vl_nnsoftmaxloss(x, c, 2.5)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c, dzdy=2.5), dzdx)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c, np.array([[2.5]], dtype=np.float32)), dzdx)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c, np.float32(2.5)), dzdx)
    np.testing.assert_allclose(dzdx, 2.5 * vl_nnsoftmaxloss(x, c, 1), rtol=1e-6)


def test_ignored_pixels_contribute_nothing():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 2, 3, 1))
    c = np.array([[1, 0], [3, 0]]).reshape(2, 2, 1, 1)
    x[0, 1, :, 0] = np.nan  # ignored pixels: their scores never matter
    x[1, 1, 0, 0] = np.inf
    loss = vl_nnsoftmaxloss(x, c)
    assert np.isfinite(loss)
    dzdx = vl_nnsoftmaxloss(x, c, 1.0)
    assert np.all(dzdx[:, 1] == 0)
    assert np.all(np.isfinite(dzdx))
    assert vl_nnsoftmaxloss(x, np.zeros_like(c)) == 0
    assert np.all(vl_nnsoftmaxloss(x, np.zeros_like(c), 1.0) == 0)


def test_nan_and_inf_propagate_in_labelled_pixels():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 0] = np.nan
    x[0, 0, 2, 1] = np.inf
    loss = vl_nnsoftmaxloss(x, [1, 1, 1])
    assert np.isnan(loss)
    dzdx = vl_nnsoftmaxloss(x, [1, 1, 1], 1.0)
    assert np.all(np.isnan(dzdx[..., 0])) and np.all(np.isnan(dzdx[..., 1]))
    np.testing.assert_allclose(dzdx[0, 0, :, 2], [-2 / 3, 1 / 3, 1 / 3])
    # a very negative score is no problem: its probability is 0
    x = np.array([0.0, -1e4, -np.inf]).reshape(1, 1, 3, 1)
    assert vl_nnsoftmaxloss(x, [1]) == 0
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, [1], 1.0).ravel(), [0, 0, 0])


def test_stable_for_large_scores():
    x = np.array([1000.0, 999.0, -1000.0], dtype=np.float32).reshape(1, 1, 3, 1)
    expected = np.log1p(np.exp(-1.0))
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, [1]), expected, rtol=1e-5)


def test_empty_inputs():
    assert vl_nnsoftmaxloss(np.zeros((2, 2, 3, 0), dtype=np.float32), np.zeros(0)) == 0
    assert vl_nnsoftmaxloss(np.zeros((2, 2, 3, 0)), np.zeros(0), 1.0).shape == (2, 2, 3, 0)
    assert vl_nnsoftmaxloss(np.zeros((2, 2, 0, 3)), np.zeros(3)) == 0  # no classes: all ignored
    message = ("vl_nnsoftmaxloss: labels C must be whole numbers of at most 0 (1..C are the C = 0 classes, "
               "0 or less ignores an instance), got 1")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(np.zeros((2, 2, 0, 3)), np.ones(3))


# ---------------------------------------------------------------- derivatives
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["per_image", "per_pixel", "weighted", "replicated_weighted"])
@pytest.mark.parametrize("shape", [(3, 2, 5, 2), (1, 1, 6, 4)])
def test_derivative(dtype, form, shape):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    c = make_labels(form, shape, seed=12)
    g = lambda t: vl_nnsoftmaxloss(t, c)
    dzdx = vl_nnsoftmaxloss(x, c, 0.8)
    check_derivative(g, x, 0.8, dzdx)
    if dtype == np.float64:
        check_derivative(g, x, 0.8, dzdx, method="central", rtol=1e-7)


def test_derivative_c_ordered_3d_float64():
    rng = np.random.default_rng(13)
    x = np.ascontiguousarray(rng.standard_normal((4, 5, 3)))
    c = rng.integers(0, 4, (4, 5))
    check_derivative(lambda t: vl_nnsoftmaxloss(t, c), x, 1.3, vl_nnsoftmaxloss(x, c, 1.3), method="central", rtol=1e-7)


# ---------------------------------------------------------------- PyTorch cross-checks
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["per_image", "per_pixel", "weighted"])
def test_against_torch_cross_entropy(dtype, form):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(14)
    shape = (5, 4, 7, 3)
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    c = make_labels(form, shape, seed=15)
    classes, weights = expand_labels(c, shape)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(3, 2, 0, 1)), requires_grad=True)  # N, C, H, W
    target = torch.tensor(classes.transpose(2, 0, 1).astype(np.int64) - 1)  # 0 -> -1, ignored
    per_pixel = F.cross_entropy(xt, target, reduction="none", ignore_index=-1)
    lt = (per_pixel * torch.tensor(weights.transpose(2, 0, 1), dtype=xt.dtype)).sum()
    if form != "weighted":
        ref = F.cross_entropy(xt, target, reduction="sum", ignore_index=-1)
        np.testing.assert_allclose(ref.item(), lt.item(), rtol=1e-6)
    lt.backward(torch.tensor(0.5, dtype=xt.dtype))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c), lt.item(), rtol=rtol)
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c, 0.5), xt.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-15)


# ---------------------------------------------------------------- threads
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(40, 45, 7, 3), (1, 1, 10, 5000)])
def test_identical_at_one_and_two_threads(dtype, shape, restore_threads):
    rng = np.random.default_rng(16)
    x = rng.standard_normal(shape).astype(dtype)
    c = make_labels("weighted" if shape[0] > 1 else "per_image", shape, seed=17)
    results = []
    for threads in (1, 2):
        cnnx.set_num_threads(threads)
        results.append((vl_nnsoftmaxloss(x, c), vl_nnsoftmaxloss(x, c, 1.0)))
    assert results[0][0].tobytes() == results[1][0].tobytes()
    assert results[0][1].tobytes() == results[1][1].tobytes()


def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(18)
    cases = []
    for seed in range(5):
        x = rng.standard_normal((24, 24, 6, 4)).astype(np.float32)
        cases.append((x, make_labels("weighted", x.shape, seed=seed)))
    work = lambda case: (vl_nnsoftmaxloss(*case), vl_nnsoftmaxloss(*case, 1.0))
    expected = [work(case) for case in cases]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(work, cases * 3))
    for i, (loss, dzdx) in enumerate(got):
        assert loss == expected[i % 5][0]
        assert dzdx.tobytes() == expected[i % 5][1].tobytes()


# ---------------------------------------------------------------- InstanceWeights
def expand_instance_weights(w, shape):
    """InstanceWeights as (H, W, N) float64: N values are one per image, anything else is broadcast
    MATLAB-style (trailing singleton dimensions) to H x W x 1 x N."""
    height, width, _, images = shape
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 1 and w.size == images:
        w = w.reshape(1, 1, 1, images)
    w = w.reshape(w.shape + (1,) * (4 - w.ndim))
    return np.broadcast_to(w, (height, width, 1, images))[:, :, 0, :]


def instance_weighted_reference(x, c, w, dzdy=None):
    """The reference with the instance weights folded into the H x W x 2 x N label form."""
    shape = x.shape + (1,) * (4 - x.ndim)
    classes, weights = expand_labels(c, shape)
    labels = np.stack([classes, weights * expand_instance_weights(w, shape)], axis=2)
    return softmaxloss_reference(x, labels, dzdy)


def make_instance_weights(form, shape, seed=0):
    height, width, _, images = shape
    rng = np.random.default_rng(seed)
    if form == "scalar":
        return 1.75
    if form == "per_image":
        return rng.uniform(0, 2, images)
    if form == "per_image_4d":
        return rng.uniform(0, 2, (1, 1, 1, images))
    if form == "per_pixel":
        return rng.uniform(0, 2, (height, width, 1, images))
    if form == "per_pixel_int":
        return rng.integers(0, 4, (height, width, 1, images))
    raise ValueError(form)


WEIGHT_FORMS = ["scalar", "per_image", "per_image_4d", "per_pixel", "per_pixel_int"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["per_image", "per_pixel", "weighted", "replicated_weighted"])
@pytest.mark.parametrize("weight_form", WEIGHT_FORMS)
@pytest.mark.parametrize("shape", [(1, 1, 10, 7), (4, 3, 5, 2)])
def test_instance_weights_match_reference(dtype, form, weight_form, shape):
    rng = np.random.default_rng(30)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    c = make_labels(form, shape, seed=31)
    w = make_instance_weights(weight_form, shape, seed=32)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    loss = vl_nnsoftmaxloss(x, c, "instanceWeights", w)
    assert isinstance(loss, dtype)
    np.testing.assert_allclose(loss, instance_weighted_reference(x, c, w), rtol=rtol)
    dzdx = vl_nnsoftmaxloss(x, c, 0.7, "InstanceWeights", w)
    assert dzdx.shape == x.shape and dzdx.dtype == dtype
    np.testing.assert_allclose(dzdx, instance_weighted_reference(x, c, w, 0.7), rtol=rtol,
                               atol=1e-6 if dtype == np.float32 else 1e-14)


def test_instance_weights_multiply_each_image():
    # One weight per image: the loss is the weighted sum of the images' losses, and each image's
    # derivative is its own derivative times its weight, exactly.
    rng = np.random.default_rng(33)
    x = rng.standard_normal((3, 2, 4, 3))
    c = make_labels("per_pixel", x.shape, seed=34)
    w = np.array([0.5, 0.0, 2.0])
    per_image = [vl_nnsoftmaxloss(x[..., n], c[..., n]) for n in range(3)]
    np.testing.assert_allclose(vl_nnsoftmaxloss(x, c, instance_weights=w), np.dot(w, per_image), rtol=1e-14)
    dzdx = vl_nnsoftmaxloss(x, c, 1.0, instance_weights=w)
    for n in range(3):
        np.testing.assert_array_equal(dzdx[..., n], w[n] * vl_nnsoftmaxloss(x[..., n], c[..., n], 1.0))


def test_instance_weights_call_forms():
    rng = np.random.default_rng(35)
    x = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    c = make_labels("per_pixel", x.shape, seed=36)
    w = np.array([0.5, 3.0])
    loss = vl_nnsoftmaxloss(x, c, "instanceWeights", w)
    assert vl_nnsoftmaxloss(x, c, [], "InstanceWeights", w) == loss
    assert vl_nnsoftmaxloss(x, c, instance_weights=w) == loss
    assert vl_nnsoftmaxloss(x, c, instanceWeights=w) == loss
    dzdx = vl_nnsoftmaxloss(x, c, 1.0, "instanceweights", w)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c, dzdy=1.0, instance_weights=w), dzdx)
    # [] (MATLAB's empty) means no weights; ones change nothing
    assert vl_nnsoftmaxloss(x, c, "instanceWeights", []) == vl_nnsoftmaxloss(x, c)
    assert vl_nnsoftmaxloss(x, c, instance_weights=np.ones(2)) == vl_nnsoftmaxloss(x, c)
    np.testing.assert_array_equal(vl_nnsoftmaxloss(x, c, 1.0, instance_weights=None),
                                  vl_nnsoftmaxloss(x, c, 1.0))


def test_instance_weights_ignore_zero_labels_and_match_vl_nnloss():
    from cnnx.nnloss import vl_nnloss
    rng = np.random.default_rng(37)
    x = rng.standard_normal((4, 3, 5, 2))
    c = make_labels("per_pixel", x.shape, seed=38)
    w = rng.uniform(0, 2, (4, 3, 1, 2))
    w[c == 0] = np.nan  # ignored pixels contribute exactly 0, whatever their weight
    loss = vl_nnsoftmaxloss(x, c, instance_weights=w)
    assert np.isfinite(loss)
    assert loss == vl_nnloss(x, c, instance_weights=w)
    dzdx = vl_nnsoftmaxloss(x, c, 1.0, instance_weights=w)
    assert np.all(dzdx[np.broadcast_to(c == 0, x.shape)] == 0)
    np.testing.assert_array_equal(dzdx, vl_nnloss(x, c, 1.0, instance_weights=w))


@pytest.mark.parametrize("form", ["per_image", "weighted", "replicated_weighted"])
@pytest.mark.parametrize("weight_form", ["per_image", "per_pixel"])
@pytest.mark.parametrize("shape", [(3, 2, 5, 2), (1, 1, 6, 4)])
def test_instance_weights_derivative_float64(form, weight_form, shape):
    rng = np.random.default_rng(39)
    x = rng.standard_normal(shape)
    c = make_labels(form, shape, seed=40)
    w = make_instance_weights(weight_form, shape, seed=41)
    dzdx = vl_nnsoftmaxloss(x, c, 0.8, instance_weights=w)
    check_derivative(lambda t: vl_nnsoftmaxloss(t, c, instance_weights=w), x, 0.8, dzdx,
                     method="central", rtol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, form, weight_form", [((40, 45, 7, 3), "weighted", "per_pixel"),
                                                      ((40, 45, 7, 3), "per_image", "per_image"),
                                                      ((1, 1, 10, 5000), "per_image", "per_image")])
def test_instance_weights_identical_at_one_and_two_threads(dtype, shape, form, weight_form,
                                                           restore_threads):
    rng = np.random.default_rng(42)
    x = rng.standard_normal(shape).astype(dtype)
    c = make_labels(form, shape, seed=43)
    w = make_instance_weights(weight_form, shape, seed=44)
    results = []
    for threads in (1, 2):
        cnnx.set_num_threads(threads)
        results.append((vl_nnsoftmaxloss(x, c, instance_weights=w),
                        vl_nnsoftmaxloss(x, c, 1.0, instance_weights=w)))
    assert results[0][0].tobytes() == results[1][0].tobytes()
    assert results[0][1].tobytes() == results[1][1].tobytes()


@pytest.mark.parametrize("w, error, message", [
    ([1.0, 2.0, 3.0], ValueError,
     "vl_nnsoftmaxloss: InstanceWeights is a vector of 3 values; give N = 2 (one per image) or an "
     "array broadcastable to H x W x 1 x N"),
    (np.ones((2, 3, 1, 2)), ValueError,
     "vl_nnsoftmaxloss: InstanceWeights of shape (2, 3, 1, 2) does not broadcast to the instances "
     "3 x 2 x 1 x 2"),
    (np.ones((3, 2, 2, 2)), ValueError,
     "vl_nnsoftmaxloss: InstanceWeights of shape (3, 2, 2, 2) does not broadcast to the instances "
     "3 x 2 x 1 x 2"),
    (np.ones((3, 2, 1, 2, 1)), ValueError,
     "vl_nnsoftmaxloss: InstanceWeights must have at most 4 dimensions, got shape (3, 2, 1, 2, 1)"),
    (np.zeros((0, 0)), ValueError,
     "vl_nnsoftmaxloss: InstanceWeights of shape (0, 0) does not broadcast to the instances "
     "3 x 2 x 1 x 2"),
    (np.array(["a", "b"]), TypeError, "vl_nnsoftmaxloss: InstanceWeights must be numeric, got a <U1 array"),
    (np.array([True, False]), TypeError, "vl_nnsoftmaxloss: InstanceWeights must be numeric, got a bool array"),
])
def test_instance_weights_errors(w, error, message):
    x = np.zeros((3, 2, 4, 2), np.float32)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(x, [1, 2], instance_weights=w)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(x, [1, 2], 1.0, "InstanceWeights", w)


def test_unknown_option_lists_instance_weights():
    message = "vl_nnsoftmaxloss: unknown option 'normalise'. Valid options are: InstanceWeights"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(np.zeros((1, 1, 3, 2)), [1, 2], "normalise", True)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [6, -1.5, 1.5, np.nan, np.inf, -np.inf])
def test_labels_outside_range_are_errors(bad):
    x = np.zeros((2, 2, 5, 3), dtype=np.float32)
    c = np.ones((2, 2, 1, 3))
    c[1, 0, 0, 2] = bad
    shown = repr(int(bad)) if np.isfinite(bad) and float(bad).is_integer() else repr(float(bad))
    message = ("vl_nnsoftmaxloss: labels C must be whole numbers of at most 5 (1..C are the C = 5 classes, "
               f"0 or less ignores an instance), got {shown}")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(x, c)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(x, c, 1.0)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(x, [1, bad, 2])


@pytest.mark.parametrize("shape", [(2, 2, 3, 3), (3, 2, 1, 3), (2, 2, 1, 2), (2, 2, 1, 3, 2), (4,), (2, 1, 1, 3)])
def test_wrongly_shaped_labels_are_errors(shape):
    x = np.zeros((2, 2, 5, 3), dtype=np.float32)
    message = (f"vl_nnsoftmaxloss: labels C have shape {shape} but X is 2 x 2 x 5 x 3; give N labels "
               "(one per image), an H x W x 1 x N array, or H x W x 2 x N or 1 x 1 x 2 x N with weights "
               "in the second channel")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        vl_nnsoftmaxloss(x, np.ones(shape))


def test_other_errors_name_the_argument():
    x = np.zeros((2, 2, 5, 3), dtype=np.float32)
    c = np.ones(3)
    with pytest.raises(TypeError, match=exact(
            'vl_nnsoftmaxloss: X must be a float32 or float64 array, got an integer array (int32)')):
        vl_nnsoftmaxloss(np.zeros((2, 2, 5, 3), dtype=np.int32), c)
    with pytest.raises(TypeError, match=exact(
            'vl_nnsoftmaxloss: X must be a float32 or float64 array, got a complex array (complex64)')):
        vl_nnsoftmaxloss(np.zeros((2, 2, 5, 3), dtype=np.complex64), c)
    with pytest.raises(TypeError, match=exact("vl_nnsoftmaxloss: labels C must be real numbers, got a bool array")):
        vl_nnsoftmaxloss(x, np.ones(3, dtype=bool))
    with pytest.raises(TypeError,
                       match=exact("vl_nnsoftmaxloss: labels C must be real numbers, got a complex128 array")):
        vl_nnsoftmaxloss(x, np.ones(3, dtype=np.complex128))
    with pytest.raises(TypeError, match=exact(
            'vl_nnsoftmaxloss: DZDY is float64 but X is float32; all arrays must share one dtype')):
        vl_nnsoftmaxloss(x, c, np.ones(1, dtype=np.float64))
    with pytest.raises(ValueError, match=exact(
            'vl_nnsoftmaxloss: DZDY must be a scalar (1 element), got shape (2,)')):
        vl_nnsoftmaxloss(x, c, np.ones(2, dtype=np.float32))
    with pytest.raises(TypeError, match=exact(
            'vl_nnsoftmaxloss: DZDY must be a float32 or float64 array, got an integer array (int32)')):
        vl_nnsoftmaxloss(x, c, np.ones(1, dtype=np.int32))
    with pytest.raises(TypeError, match=exact(
            "vl_nnsoftmaxloss: unknown option 'normalise'. Valid options are: InstanceWeights")):
        vl_nnsoftmaxloss(x, c, "normalise", True)
    with pytest.raises(ValueError, match=exact(
            'vl_nnsoftmaxloss: X must have 2 to 4 dimensions (H x W x C x N), got 1 ((5,))')):
        vl_nnsoftmaxloss(np.zeros(5, dtype=np.float32), [1])

"""vl_nnconcat (spec 2.15) and vl_nnloss's 'softmaxlog' and 'classerror' types (spec 2.8)."""
import re

import numpy as np
import pytest

from cnnx.concat import vl_nnconcat
from cnnx.softmaxloss import vl_nnsoftmaxloss
from cnnx.nnloss import vl_nnloss
from cnnx.testing import check_derivative


def exact(message):
    """A pytest.raises pattern matching exactly ``message``."""
    return f"^{re.escape(message)}$"


DTYPES = [np.float32, np.float64]


def random_array(rng, shape, dtype, order="F"):
    return np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)


# ------------------------------------------------------------------------------------------------
# vl_nnconcat
# ------------------------------------------------------------------------------------------------


def concat_inputs(rng, dim, widths, dtype, base=(4, 5, 3, 2)):
    arrays = []
    for width in widths:
        shape = list(base)
        shape[dim - 1] = width
        arrays.append(random_array(rng, shape, dtype))
    return arrays


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("widths", [(1,), (2, 3), (1, 4, 2)])
def test_concat_forward_is_cat_along_dim(dtype, dim, widths):
    rng = np.random.default_rng(dim * 10 + len(widths))
    inputs = concat_inputs(rng, dim, widths, dtype)
    y = vl_nnconcat(inputs, dim)
    np.testing.assert_array_equal(y, np.concatenate(inputs, axis=dim - 1))
    assert y.dtype == dtype and y.flags.f_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_concat_backward_returns_slices_shaped_like_inputs(dtype, dim):
    rng = np.random.default_rng(dim)
    inputs = concat_inputs(rng, dim, (2, 1, 3), dtype)
    dzdy = random_array(rng, vl_nnconcat(inputs, dim).shape, dtype)
    ders = vl_nnconcat(inputs, dim, dzdy)
    bounds = np.cumsum([0] + [x.shape[dim - 1] for x in inputs])
    assert len(ders) == 3
    for der, x, start, stop in zip(ders, inputs, bounds[:-1], bounds[1:]):
        assert der.shape == x.shape and der.dtype == dtype and der.flags.f_contiguous
        np.testing.assert_array_equal(der, np.take(dzdy, np.arange(start, stop), axis=dim - 1))
    # The same from the sizes alone, given as a MatConvNet option or a keyword.
    sizes = [x.shape for x in inputs]
    for ders_from_sizes in (vl_nnconcat(None, dim, dzdy, "InputSizes", sizes),
                            vl_nnconcat([], dim, dzdy=dzdy, input_sizes=sizes)):
        for a, b in zip(ders, ders_from_sizes):
            np.testing.assert_array_equal(a, b)


def test_concat_default_dim_is_channels_and_keeps_matlab_dims():
    a = np.ones((2, 2, 1), np.float32)      # N = 1 dropped, as MATLAB does
    b = np.zeros((2, 2, 3), np.float32)
    y = vl_nnconcat([a, b])
    assert y.shape == (2, 2, 4)
    assert vl_nnconcat([a, a], 4).shape == (2, 2, 1, 2)  # joining along N adds that dimension
    da, db = vl_nnconcat([a, b], 3, np.ones((2, 2, 4), np.float32))
    assert da.shape == (2, 2, 1) and db.shape == (2, 2, 3)


def test_concat_accepts_c_ordered_inputs():
    rng = np.random.default_rng(3)
    a = np.ascontiguousarray(random_array(rng, (3, 4, 2, 2), np.float64))
    b = random_array(rng, (3, 4, 5, 2), np.float64)
    np.testing.assert_array_equal(vl_nnconcat([a, b], 3), np.concatenate([a, b], axis=2))


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_concat_derivative(dim):
    rng = np.random.default_rng(7)
    a, b = concat_inputs(rng, dim, (2, 3), np.float64)
    dzdy = random_array(rng, vl_nnconcat([a, b], dim).shape, np.float64)
    da, db = vl_nnconcat([a, b], dim, dzdy)
    check_derivative(lambda t: vl_nnconcat([t, b], dim), a, dzdy, da, method="central")
    check_derivative(lambda t: vl_nnconcat([a, t], dim), b, dzdy, db, method="central")


def test_concat_matches_torch_cat():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    inputs = concat_inputs(rng, 3, (2, 5), np.float32)
    expected = torch.cat([torch.from_numpy(np.ascontiguousarray(x)) for x in inputs], dim=2).numpy()
    np.testing.assert_array_equal(vl_nnconcat(inputs, 3), expected)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda a, b: vl_nnconcat([a, np.ones((3, 2, 1, 1), np.float32)], 3), ValueError,
         "vl_nnconcat: INPUTS[1] has shape (3, 2, 1, 1) but INPUTS[0] has (2, 2, 1, 1); they may differ only in "
         "dimension 3 (DIM)"),
        (lambda a, b: vl_nnconcat([a, b.astype(np.float64)], 3), TypeError,
         'vl_nnconcat: INPUTS[1] is float64 but INPUTS[0] is float32; all arrays must share one dtype'),
        (lambda a, b: vl_nnconcat([a, np.ones((2, 2, 1, 1), np.int32)], 3), TypeError,
         'vl_nnconcat: INPUTS[1] must be a float32 or float64 array, got an integer array (int32)'),
        (lambda a, b: vl_nnconcat([a, b], 0), ValueError,
         'vl_nnconcat: DIM must be an integer from 1 to 4, got 0'),
        (lambda a, b: vl_nnconcat([a, b], 5), ValueError,
         'vl_nnconcat: DIM must be an integer from 1 to 4, got 5'),
        (lambda a, b: vl_nnconcat([a, b], 2.5), ValueError,
         'vl_nnconcat: DIM must be an integer from 1 to 4, got 2.5'),
        (lambda a, b: vl_nnconcat([a, b], "3"), TypeError,
         "vl_nnconcat: DIM must be an integer from 1 to 4, got '3'"),
        (lambda a, b: vl_nnconcat([], 3), ValueError,
         'vl_nnconcat: INPUTS is empty; there is nothing to concatenate'),
        (lambda a, b: vl_nnconcat(a, 3), TypeError,
         'vl_nnconcat: INPUTS must be a list of arrays, got a single array'),
        (lambda a, b: vl_nnconcat([a, b], 3, np.ones((2, 2, 3, 1), np.float32)), ValueError,
         'vl_nnconcat: DZDY has shape (2, 2, 3, 1) but the concatenation has shape (2, 2, 4, 1)'),
        (lambda a, b: vl_nnconcat([a, b], 3, np.ones((2, 2, 4, 1), np.float64)), TypeError,
         'vl_nnconcat: DZDY is float64 but INPUTS[0] is float32; all arrays must share one dtype'),
        (lambda a, b: vl_nnconcat(None, 3, np.ones((2, 2, 4, 1), np.float32)), ValueError,
         'vl_nnconcat: backward needs INPUTS or the InputSizes option'),
        (lambda a, b: vl_nnconcat([a, b], 3, "Foo", 1), TypeError,
         "vl_nnconcat: unknown option 'Foo'. Valid options are: InputSizes"),
        (lambda a, b: vl_nnconcat([a, b], 3, np.ones((2, 2, 4, 1), np.float32), dzdy=1), TypeError,
         'vl_nnconcat: DZDY is given both positionally and as a keyword'),
    ],
)
def test_concat_errors(call, error, message):
    a = np.ones((2, 2, 1, 1), np.float32)
    b = np.ones((2, 2, 3, 1), np.float32)
    with pytest.raises(error, match=exact(message)):
        call(a, b)


# ------------------------------------------------------------------------------------------------
# vl_nnloss: a slow reference
# ------------------------------------------------------------------------------------------------


def labels_hw1n(c, shape):
    h, w, _, n = shape
    c = np.asarray(c)
    if c.size == n:
        return np.broadcast_to(c.reshape(1, 1, 1, n), (h, w, 1, n))
    return c.reshape(h, w, 1, n)


def reference_softmaxlog(x, c, weights):
    """Loss and derivative (dzdy = 1) in float64, one instance at a time."""
    x = np.asarray(x, np.float64)
    h, w, d, n = x.shape
    labels = labels_hw1n(c, x.shape)
    loss = 0.0
    dx = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            for k in range(n):
                label = int(labels[i, j, 0, k])
                if label == 0:
                    continue
                scores = x[i, j, :, k]
                top = scores.max()
                log_sum = top + np.log(np.sum(np.exp(scores - top)))
                loss += weights[i, j, 0, k] * (log_sum - scores[label - 1])
                grad = np.exp(scores - log_sum)
                grad[label - 1] -= 1
                dx[i, j, :, k] = weights[i, j, 0, k] * grad
    return loss, dx


def reference_classerror(x, c, weights):
    h, w, d, n = x.shape
    labels = labels_hw1n(c, x.shape)
    total = 0.0
    for i in range(h):
        for j in range(w):
            for k in range(n):
                label = int(labels[i, j, 0, k])
                scores = [(-np.inf if np.isnan(s) else s) for s in x[i, j, :, k]]
                best = int(np.argmax(scores)) + 1
                if label != 0 and best != label:
                    total += weights[i, j, 0, k]
    return total


def label_array(rng, shape, per_image, with_zeros):
    h, w, d, n = shape
    low = 0 if with_zeros else 1
    if per_image:
        return rng.integers(low, d + 1, size=n)
    return rng.integers(low, d + 1, size=(h, w, 1, n))


WEIGHT_FORMS = ["none", "scalar", "per_image", "1x1x1xN", "HxWx1xN", "HxW"]


def weight_array(rng, form, shape):
    h, w, _, n = shape
    if form == "none":
        return None, np.ones((h, w, 1, n))
    value = {
        "scalar": lambda: np.array(0.7),
        "per_image": lambda: rng.uniform(0.5, 2.0, size=n),
        "1x1x1xN": lambda: rng.uniform(0.5, 2.0, size=(1, 1, 1, n)),
        "HxWx1xN": lambda: rng.uniform(0.5, 2.0, size=(h, w, 1, n)),
        "HxW": lambda: rng.uniform(0.5, 2.0, size=(h, w)),
    }[form]()
    if value.ndim == 1:
        full = value.reshape(1, 1, 1, n)
    else:
        full = value.reshape(value.shape + (1,) * (4 - value.ndim))
    return value, np.broadcast_to(full, (h, w, 1, n))


# ------------------------------------------------------------------------------------------------
# vl_nnloss: softmaxlog
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("with_zeros", [False, True])
def test_softmaxlog_without_weights_is_vl_nnsoftmaxloss(dtype, per_image, with_zeros):
    rng = np.random.default_rng(int(per_image) * 2 + int(with_zeros))
    x = random_array(rng, (3, 2, 5, 4), dtype)
    c = label_array(rng, x.shape, per_image, with_zeros)
    assert vl_nnloss(x, c) == vl_nnsoftmaxloss(x, c)
    assert vl_nnloss(x, c).dtype == dtype
    np.testing.assert_array_equal(vl_nnloss(x, c, dtype(1)), vl_nnsoftmaxloss(x, c, dtype(1)))
    np.testing.assert_array_equal(vl_nnloss(x, c, [], "loss", "SoftMaxLog"), vl_nnsoftmaxloss(x, c))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", WEIGHT_FORMS)
@pytest.mark.parametrize("with_zeros", [False, True])
def test_softmaxlog_matches_reference(dtype, form, with_zeros):
    rng = np.random.default_rng(WEIGHT_FORMS.index(form) + 10 * int(with_zeros))
    x = random_array(rng, (3, 2, 4, 5), dtype)
    c = label_array(rng, x.shape, False, with_zeros)
    weights, full = weight_array(rng, form, x.shape)
    expected_loss, expected_dx = reference_softmaxlog(x, c, full)
    loss = vl_nnloss(x, c, instance_weights=weights)
    dx = vl_nnloss(x, c, 1.0, "instanceWeights", weights)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(float(loss), expected_loss, rtol=rtol)
    np.testing.assert_allclose(dx, expected_dx, rtol=rtol, atol=rtol)


def test_softmaxlog_scales_with_dzdy():
    rng = np.random.default_rng(4)
    x = random_array(rng, (2, 2, 3, 3), np.float64)
    c = label_array(rng, x.shape, True, False)
    w = rng.uniform(0.5, 2, size=3)
    np.testing.assert_allclose(vl_nnloss(x, c, dzdy=2.5, instance_weights=w),
                               2.5 * vl_nnloss(x, c, 1.0, instance_weights=w), rtol=1e-14)


def test_softmaxlog_derivative_with_weights_and_ignored_labels():
    rng = np.random.default_rng(5)
    x = random_array(rng, (2, 3, 4, 3), np.float64)
    c = label_array(rng, x.shape, False, True)
    w = rng.uniform(0.5, 2.0, size=(2, 3, 1, 3))
    dzdx = vl_nnloss(x, c, 1.0, instance_weights=w)
    check_derivative(lambda t: vl_nnloss(t, c, instance_weights=w), x, 1.0, dzdx, method="central")


def test_softmaxlog_matches_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = random_array(rng, (1, 1, 7, 6), np.float64)
    c = np.array([1, 7, 0, 3, 3, 2])
    w = rng.uniform(0.5, 2.0, size=6)
    scores = torch.from_numpy(np.ascontiguousarray(x[0, 0].T)).requires_grad_()
    per_image = torch.nn.functional.cross_entropy(
        scores, torch.from_numpy(c - 1).clamp(min=0), reduction="none")
    weights = torch.from_numpy(w * (c != 0))
    total = torch.sum(per_image * weights)
    total.backward()
    np.testing.assert_allclose(float(vl_nnloss(x, c, instance_weights=w)), total.item(), rtol=1e-12)
    np.testing.assert_allclose(vl_nnloss(x, c, 1.0, instance_weights=w)[0, 0].T, scores.grad.numpy(),
                               rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# vl_nnloss: classerror
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", WEIGHT_FORMS)
@pytest.mark.parametrize("per_image", [True, False])
def test_classerror_counts_wrong_top1(dtype, form, per_image):
    rng = np.random.default_rng(WEIGHT_FORMS.index(form) + 7 * int(per_image))
    x = random_array(rng, (2, 3, 4, 5), dtype)
    c = label_array(rng, x.shape, per_image, True)
    weights, full = weight_array(rng, form, x.shape)
    y = vl_nnloss(x, c, loss="classerror", instance_weights=weights)
    assert y.dtype == dtype
    np.testing.assert_allclose(float(y), reference_classerror(x, c, full), rtol=1e-6)
    dx = vl_nnloss(x, c, 1.0, loss="classerror", instance_weights=weights)
    assert dx.shape == x.shape and dx.dtype == dtype and not np.any(dx)


def test_classerror_ties_nan_and_ignored_labels():
    # Image 1: tie between classes 1 and 3 -> predicts 1. Image 2: NaN never wins -> predicts 2.
    # Image 3: all NaN -> predicts 1 (MATLAB's max). Image 4 predicts 3.
    x = np.array([[5, 0, 5], [np.nan, 2, 1], [np.nan, np.nan, np.nan], [0, 0, 9]], np.float32).T
    x = x.reshape(1, 1, 3, 4, order="F")
    assert vl_nnloss(x, [1, 2, 1, 0], loss="classerror") == 0
    assert vl_nnloss(x, [3, 1, 2, 1], loss="classerror") == 4
    assert vl_nnloss(x, [3, 1, 2, 0], "loss", "classerror", "instanceWeights", [1, 2, 4, 8]) == 7


def test_class_weights_are_accepted_and_ignored_as_in_matconvnet():
    rng = np.random.default_rng(8)
    x = random_array(rng, (1, 1, 3, 4), np.float32)
    c = label_array(rng, x.shape, True, False)
    assert vl_nnloss(x, c, class_weights=[5, 6, 7]) == vl_nnloss(x, c)


# ------------------------------------------------------------------------------------------------
# vl_nnloss: errors
# ------------------------------------------------------------------------------------------------


LABEL_VALUES = ("vl_nnloss: labels C must be whole numbers of at most 3 (1..C are the C = 3 classes, 0 or less "
                "ignores an instance), got ")
LOSS_CHOICES = ("'softmaxlog', 'log', 'mhinge', 'mshinge', 'classerror', 'topkerror', 'binaryerror', 'binarylog', "
                "'logistic', 'hinge', 'l2'")
LABEL_SHAPES = "but X is 1 x 1 x 3 x 2; give N labels (one per image) or an H x W x 1 x N array"


@pytest.mark.parametrize(
    "c, loss, kwargs, error, message",
    [
        ([1, 4], "softmaxlog", {}, ValueError, LABEL_VALUES + "4"),
        ([1, -1.5], "classerror", {}, ValueError, LABEL_VALUES + "-1.5"),
        ([1, 1.5], "softmaxlog", {}, ValueError, LABEL_VALUES + "1.5"),
        ([1, np.nan], "classerror", {}, ValueError, LABEL_VALUES + "nan"),
        (np.ones((2, 2, 1, 2)), "softmaxlog", {}, ValueError,
         f"vl_nnloss: labels C have shape (2, 2, 1, 2) {LABEL_SHAPES}"),
        (np.ones((1, 1, 2, 2)), "classerror", {}, ValueError,
         f"vl_nnloss: labels C have shape (1, 1, 2, 2) {LABEL_SHAPES}"),
        (np.array([True, False]), "softmaxlog", {}, TypeError,
         "vl_nnloss: labels C must be real numbers, got a bool array"),
        ([1, 2], "squared", {}, ValueError, f"vl_nnloss: Loss must be one of {LOSS_CHOICES}, got 'squared'"),
        ([1, 2], 3, {}, ValueError, f"vl_nnloss: Loss must be one of {LOSS_CHOICES}, got 3"),
        ([1, 2], "softmaxlog", {"instance_weights": [1, 2, 3]}, ValueError,
         "vl_nnloss: InstanceWeights is a vector of 3 values; give N = 2 (one per image) or an array "
         "broadcastable to H x W x 1 x N"),
        ([1, 2], "classerror", {"instance_weights": np.ones((2, 1, 1, 2))}, ValueError,
         "vl_nnloss: InstanceWeights of shape (2, 1, 1, 2) does not broadcast to the instances 1 x 1 x 1 x 2"),
        ([1, 2], "classerror", {"instance_weights": np.array(["a", "b"])}, TypeError,
         "vl_nnloss: InstanceWeights must be numeric, got a <U1 array"),
        ([1, 2], "softmaxlog", {"normalise": True}, TypeError,
         "vl_nnloss: unknown option 'normalise'. Valid options are: Loss, InstanceWeights, ClassWeights, "
         "Threshold, TopK"),
    ],
)
def test_loss_errors(c, loss, kwargs, error, message):
    x = np.zeros((1, 1, 3, 2), np.float32)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        vl_nnloss(x, c, loss=loss, **kwargs)


def test_loss_rejects_integer_scores_and_dzdy_given_twice():
    with pytest.raises(TypeError, match=exact(
            'vl_nnloss: X must be a float32 or float64 array, got an integer array (int32)')):
        vl_nnloss(np.zeros((1, 1, 3, 2), np.int32), [1, 2])
    x = np.zeros((1, 1, 3, 2), np.float32)
    with pytest.raises(TypeError, match=exact('vl_nnloss: DZDY is given both positionally and as a keyword')):
        vl_nnloss(x, [1, 2], np.ones(1), dzdy=1.0)

"""vl_nnloss's loss types against a NumPy reference, finite differences, PyTorch and MatConvNet's outputs.

(softmaxlog and classerror have more tests in test_concat_nnloss.py; their reference here is the same
one-pixel-at-a-time loop as for the other types.)
"""
import os

import numpy as np
import pytest
import scipy.io

import cnnx
from cnnx import vl_nnloss, vl_nnsoftmaxloss
from cnnx.testing import check_derivative

DTYPES = [np.float32, np.float64]
DATA = os.path.join(os.path.dirname(__file__), "data")
CATEGORICAL = ["softmaxlog", "log", "mhinge", "mshinge", "classerror", "topkerror"]
BINARY = ["binaryerror", "binarylog", "logistic", "hinge"]
ERRORS = ["classerror", "topkerror", "binaryerror"]


# ------------------------------------------------------------------------------------------------
# The NumPy reference: MatConvNet's definitions, one instance at a time, in float64
# ------------------------------------------------------------------------------------------------


def matlab_sort_descending(scores):
    """Class indices of ``scores`` in MATLAB's stable descending order (NaN first)."""
    return sorted(range(len(scores)), key=lambda k: (not np.isnan(scores[k]), -np.nan_to_num(scores[k]), k))


def categorical_reference(loss, x, c, w, top_k=5):
    """(loss, dzdx for dzdy = 1) of categorical ``loss``; x (H, W, D, N), c and w (H, W, N)."""
    h, wd, d, n = x.shape
    x = x.astype(np.float64)
    total, grad = 0.0, np.zeros_like(x)
    for i, j, m in np.ndindex(h, wd, n):
        if c[i, j, m] <= 0:
            continue
        s, k, weight = x[i, j, :, m], int(c[i, j, m]) - 1, w[i, j, m]
        g = np.zeros(d)
        if loss == "softmaxlog":
            top = s.max()
            t = top + np.log(np.exp(s - top).sum()) - s[k]
            g = np.exp(s - top) / np.exp(s - top).sum()
            g[k] -= 1
        elif loss == "log":
            t = -np.log(s[k])
            g[k] = -1 / max(s[k], 1e-8)
        elif loss == "mhinge":
            t = max(0.0, 1 - s[k])
            g[k] = -1.0 if s[k] < 1 else 0.0
        elif loss == "mshinge":
            others = [q for q in range(d) if q != k]
            q = max(others, key=lambda q: (s[q], -q))  # the first maximum
            t = max(0.0, 1 - s[k] + s[q])
            if s[k] - s[q] < 1:
                g[k], g[q] = -1.0, 1.0
        elif loss == "classerror":
            t = float(int(np.nanargmax(s)) != k)
        else:  # topkerror
            t = float(k not in matlab_sort_descending(s)[:top_k])
        total += weight * t
        grad[i, j, :, m] = weight * g
    return total, grad


def elementwise_reference(loss, x, c, w, threshold=0.0):
    """(loss, dzdx for dzdy = 1) of elementwise ``loss``; x, c, w of one shape."""
    x = x.astype(np.float64)
    mass = w * (c != 0) if loss != "l2" else w
    with np.errstate(divide="ignore", invalid="ignore"):
        if loss == "binaryerror":
            t, g = (np.sign(x - threshold) != c).astype(np.float64), np.zeros_like(x)
        elif loss == "binarylog":
            t, g = -np.log(c * (x - 0.5) + 0.5), -1 / (x + (c - 1) * 0.5)
        elif loss == "logistic":
            t, g = np.log1p(np.exp(-c * x)), -c / (1 + np.exp(c * x))
        elif loss == "hinge":
            t, g = np.maximum(0, 1 - c * x), -c * (c * x < 1)
        else:  # l2
            t, g = (x - c) ** 2, 2 * (x - c)
    keep = mass != 0
    return float(np.sum(mass[keep] * t[keep])), np.where(keep, mass * g, 0.0)


# ------------------------------------------------------------------------------------------------
# Random problems
# ------------------------------------------------------------------------------------------------


def scores(rng, loss, shape, dtype):
    """Scores the loss is meant for, away from its kinks: probabilities for 'log' and 'binarylog'."""
    if loss in ("log", "binarylog"):
        return rng.uniform(0.05, 0.95, size=shape).astype(dtype)
    x = rng.standard_normal(shape) * 1.5
    if loss in ("mhinge", "hinge"):
        x = np.round(x * 4) / 4 + 0.125  # margins 1 - x or 1 - c x: multiples of 1/4 plus 1/8, never 0
    return x.astype(dtype)


def labels_for(rng, loss, shape, form):
    """(labels as passed, labels as (H, W, N) or x's shape) in ``form``: 'per_image', 'per_pixel' or
    'ignored' (some labels 0 or negative)."""
    h, w, d, n = shape
    if loss in CATEGORICAL:
        if form == "per_image":
            c = rng.integers(1, d + 1, size=n)
            return c, np.broadcast_to(c, (h, w, n))
        c = rng.integers(-2 if form == "ignored" else 1, d + 1, size=(h, w, 1, n))
        return c, c[:, :, 0, :]
    if loss == "l2":
        c = rng.standard_normal(shape)
        return c, c
    c = rng.choice([-1, 1] + ([0] if form == "ignored" else []), size=shape)
    return c.astype(np.float64), c


def weights_for(rng, loss, shape, form):
    """(InstanceWeights as passed, the weights of every instance), for 'none', 'per_image', 'HxW', 'full'."""
    h, w, d, n = shape
    instances = (h, w, n) if loss in CATEGORICAL else shape
    if form == "none":
        return None, np.ones(instances)
    if form == "per_image":
        value = rng.uniform(0.5, 2, size=n)
        return value, np.broadcast_to(value, instances)
    if form == "HxW":
        value = rng.uniform(0.5, 2, size=(h, w))
        full = value[:, :, None] if loss in CATEGORICAL else value[:, :, None, None]
        return value, np.broadcast_to(full, instances)
    value = rng.uniform(0.5, 2, size=(h, w, 1, n) if loss in CATEGORICAL else shape)
    return value, value[:, :, 0, :] if loss in CATEGORICAL else value


def reference(loss, x, c, w, **opts):
    if loss in CATEGORICAL:
        return categorical_reference(loss, x, c, w, **opts)
    return elementwise_reference(loss, x, c, w, **opts)


ALL = CATEGORICAL + BINARY + ["l2"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ALL)
@pytest.mark.parametrize("labels", ["per_image", "per_pixel", "ignored"])
@pytest.mark.parametrize("weights", ["none", "per_image", "HxW", "full"])
def test_matches_reference(dtype, loss, labels, weights):
    rng = np.random.default_rng(ALL.index(loss) * 100 + len(labels) * 10 + len(weights))
    shape = (3, 2, 5, 4) if labels != "per_image" or loss in CATEGORICAL else (3, 2, 1, 4)
    x = scores(rng, loss, shape, dtype)
    c, c_full = labels_for(rng, loss, shape, labels)
    w, w_full = weights_for(rng, loss, shape, weights)
    expected, expected_dx = reference(loss, x, c_full, w_full)
    y = vl_nnloss(x, c, loss=loss, instance_weights=w)
    dx = vl_nnloss(x, c, dtype(1), "Loss", loss.upper(), "InstanceWeights", w)
    assert isinstance(y, dtype) and dx.dtype == dtype and dx.shape == x.shape
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(float(y), expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dx, expected_dx, rtol=rtol, atol=rtol)
    if loss in ERRORS:
        assert not np.any(dx)


@pytest.mark.parametrize("loss", ALL)
def test_dzdy_scales_the_derivative_and_3d_input_works(loss):
    rng = np.random.default_rng(3)
    x = scores(rng, loss, (3, 4, 5), np.float64)  # N = 1, dropped by MATLAB
    c, _ = labels_for(rng, loss, (3, 4, 5, 1), "per_pixel")
    c = c.reshape(c.shape[:3]) if loss in CATEGORICAL else c.reshape(x.shape)
    dx = vl_nnloss(x, c, 1.0, loss=loss)
    assert dx.shape == x.shape
    np.testing.assert_allclose(vl_nnloss(x, c, dzdy=np.array([2.5]), loss=loss), 2.5 * dx, rtol=1e-15)


@pytest.mark.parametrize("loss", ["softmaxlog", "log", "mhinge", "mshinge", "binarylog", "logistic", "hinge", "l2"])
@pytest.mark.parametrize("weighted", [False, True])
def test_derivatives_by_finite_differences(loss, weighted):
    rng = np.random.default_rng(4)
    shape = (2, 3, 4, 3)
    x = scores(rng, loss, shape, np.float64)
    c, _ = labels_for(rng, loss, shape, "ignored")
    w = weights_for(rng, loss, shape, "full")[0] if weighted else None
    dzdx = vl_nnloss(x, c, 1.0, loss=loss, instance_weights=w)
    check_derivative(lambda t: vl_nnloss(t, c, loss=loss, instance_weights=w), x, 1.0, dzdx,
                     delta=1e-6, method="central")


def test_ties_and_nan_follow_matlab():
    # image 1: tie of classes 1 and 3; image 2: NaN in class 1; image 3: all NaN
    x = np.array([[5, 0, 5], [np.nan, 2, 1], [np.nan, np.nan, np.nan]], np.float64).T.reshape(1, 1, 3, 3, order="F")
    # top-1 of a sort (NaN first) and of max (NaN never, unless all are) differ, as in MATLAB
    assert vl_nnloss(x, [3, 1, 1], "loss", "topkerror", "topK", 1) == 1  # image 1 sorts class 1 first
    assert vl_nnloss(x, [1, 1, 1], "loss", "topkerror", "topK", 1) == 0
    assert vl_nnloss(x, [1, 2, 1], loss="classerror") == 0
    assert vl_nnloss(x, [1, 2, 3], "loss", "topkerror", "topK", 2) == 1  # image 3: the classes in order
    # a NaN score gives a NaN loss (MatConvNet: 0, as MATLAB's max drops NaN) and no gradient
    x = np.array([0.5, np.nan]).reshape(1, 1, 2, 1)
    assert np.isnan(vl_nnloss(x, [2], loss="mhinge"))
    assert np.isnan(vl_nnloss(x, [1], loss="mshinge"))
    np.testing.assert_array_equal(vl_nnloss(x, [2], 1.0, loss="mhinge").ravel(), [0, 0])


def test_topk_beyond_the_classes_and_a_single_class():
    x = np.random.default_rng(5).standard_normal((2, 2, 3, 2))
    c = np.ones((2, 2, 1, 2))
    assert vl_nnloss(x, c, loss="topkerror") == 0  # TopK 5 >= 3 classes
    # one class: mshinge has no other class to beat (MatConvNet: a loss of 0 with a gradient)
    assert vl_nnloss(x[:, :, :1], c, loss="mshinge") == 0
    assert not np.any(vl_nnloss(x[:, :, :1], c, 1.0, loss="mshinge"))


def test_ignored_instances_contribute_exactly_zero():
    x = np.array([np.inf, -np.inf, np.nan, 0.0]).reshape(1, 1, 4, 1)
    for loss in CATEGORICAL:
        assert vl_nnloss(x, [0], loss=loss) == 0
        assert not np.any(vl_nnloss(x, [-3], 1.0, loss=loss))
    for loss in BINARY:
        assert vl_nnloss(x, np.zeros(x.shape), loss=loss) == 0
        assert not np.any(vl_nnloss(x, np.zeros(x.shape), 1.0, loss=loss))
    # L2 ignores nothing: a target 0 is a target
    assert vl_nnloss(np.ones((1, 1, 2, 1)), np.zeros((1, 1, 2, 1)), loss="l2") == 2


def test_threshold_and_case_insensitive_options():
    x = np.array([0.2, 0.6, -0.1]).reshape(1, 1, 3, 1)
    c = np.array([1.0, 1.0, -1.0]).reshape(x.shape)
    assert vl_nnloss(x, c, loss="binaryerror") == 0
    assert vl_nnloss(x, c, "LOSS", "BinaryError", "THRESHOLD", 0.5) == 1
    assert vl_nnloss(x, c, "loss", "binaryerror", "threshold", 0.2) == 1  # sign(0) = 0 is no label
    assert vl_nnloss(x, c, loss="binaryerror", threshold=-0.5) == 1


def test_l2_is_pdist_squared_and_per_image_targets():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 1, 4))
    targets = rng.standard_normal(4)
    np.testing.assert_allclose(vl_nnloss(x, targets, loss="l2"), np.sum((x - targets) ** 2), rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# PyTorch, where it has the loss
# ------------------------------------------------------------------------------------------------


def test_matches_torch():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(7)
    n, d = 6, 5

    def run(loss, x, c, expected, **kwargs):
        scores_t = torch.from_numpy(x).requires_grad_()
        value = expected(scores_t)
        value.backward()
        np.testing.assert_allclose(float(vl_nnloss(x, c, loss=loss, **kwargs)), value.item(), rtol=1e-12)
        np.testing.assert_allclose(vl_nnloss(x, c, 1.0, loss=loss, **kwargs), scores_t.grad.numpy(),
                                   rtol=1e-12, atol=1e-15)

    classes = rng.integers(1, d + 1, size=n)
    target = torch.from_numpy(classes - 1)
    probabilities = rng.uniform(0.05, 1, size=(1, 1, d, n))
    run("log", probabilities, classes,
        lambda p: functional.nll_loss(torch.log(p[0, 0].T), target, reduction="sum"))
    run("softmaxlog", rng.standard_normal((1, 1, d, n)), classes,
        lambda s: functional.cross_entropy(s[0, 0].T, target, reduction="sum"))
    signs = rng.choice([-1.0, 1.0], size=(2, 3, d, n))
    run("logistic", rng.standard_normal(signs.shape), signs,
        lambda s: functional.soft_margin_loss(s, torch.from_numpy(signs), reduction="sum"))
    run("binarylog", rng.uniform(0.05, 0.95, size=signs.shape), signs,
        lambda p: functional.binary_cross_entropy(p, torch.from_numpy((signs + 1) / 2), reduction="sum"))
    targets = rng.standard_normal(signs.shape)
    weights = rng.uniform(0.5, 2, size=signs.shape)
    run("l2", rng.standard_normal(signs.shape), targets,
        lambda s: torch.sum(torch.from_numpy(weights) * functional.mse_loss(s, torch.from_numpy(targets),
                                                                           reduction="none")),
        instance_weights=weights)
    # two classes: the structured hinge is the multiclass margin loss times C
    two = rng.standard_normal((1, 1, 2, n))
    labels = rng.integers(1, 3, size=n)
    run("mshinge", two, labels,
        lambda s: 2 * functional.multi_margin_loss(s[0, 0].T, torch.from_numpy(labels - 1), reduction="sum"))
    x = rng.standard_normal((1, 1, d, n))
    top3 = torch.topk(torch.from_numpy(x[0, 0].T), 3, dim=1).indices.numpy() + 1
    assert vl_nnloss(x, classes, "loss", "topkerror", "topK", 3) == np.sum(~np.any(top3 == classes[:, None], axis=1))


# ------------------------------------------------------------------------------------------------
# MatConvNet's own outputs
# ------------------------------------------------------------------------------------------------


def _cases(name):
    cases = scipy.io.loadmat(os.path.join(DATA, name), squeeze_me=False, struct_as_record=False)["cases"]
    for k in range(cases.shape[1]):
        case = cases[0, k][0, 0]
        opts = [o.item() if o.dtype.kind == "U" else o for o in case.opts.ravel()] if case.opts.size else []
        yield pytest.param(case, opts, id=str(case.name[0]))


@pytest.mark.parametrize("case, opts", list(_cases("mcn_loss.mat")))
def test_matches_matconvnet(case, opts):
    y = vl_nnloss(case.x, case.c, [], *opts)
    dzdx = vl_nnloss(case.x, case.c, case.dzdy, *opts)
    rtol = 1e-5 if case.x.dtype == np.float32 else 1e-12
    assert y.dtype == case.x.dtype and dzdx.dtype == case.x.dtype and dzdx.shape == case.dzdx.shape
    np.testing.assert_allclose(float(y), case.y.item(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dzdx, case.dzdx, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("case, opts", list(_cases("mcn_softmaxloss_neglabels.mat")))
def test_negative_labels_are_ignored_as_matconvnet(case, opts):
    rtol = 1e-5 if case.x.dtype == np.float32 else 1e-12
    assert np.any(case.c < 0)
    for loss_of in (vl_nnsoftmaxloss, vl_nnloss):
        np.testing.assert_allclose(float(loss_of(case.x, case.c)), case.y.item(), rtol=rtol)
        np.testing.assert_allclose(loss_of(case.x, case.c, case.dzdy), case.dzdx, rtol=rtol, atol=rtol)


# ------------------------------------------------------------------------------------------------
# Threads
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ALL)
def test_one_and_two_threads_agree_bitwise(loss, restore_threads):
    rng = np.random.default_rng(8)
    shape = (40, 30, 6, 8)  # above the two-thread threshold; several tasks per image
    x = scores(rng, loss, shape, np.float32)
    c, _ = labels_for(rng, loss, shape, "ignored")
    w = weights_for(rng, loss, shape, "full")[0]
    results = []
    for threads in (1, 2):
        cnnx.set_num_threads(threads)
        results.append((vl_nnloss(x, c, loss=loss, instance_weights=w),
                        vl_nnloss(x, c, 1.0, loss=loss, instance_weights=w)))
    assert results[0][0].tobytes() == results[1][0].tobytes()
    assert results[0][1].tobytes() == results[1][1].tobytes()

"""Softmax log-loss: ``vl_nnsoftmaxloss``."""
import numbers

import numpy as np

from ._checks import as_float_array, common_dtype, shape4
from ._ext import softmaxloss as _kernels
from ._ext.softmaxloss import CATEGORICAL
from ._labels import check_label_values, parse_labels
from ._options import Option, parse_options, take_derivative
from ._threads import threads_for

_OPTIONS = {"instance_weights": Option("any", None)}
_DEFAULTS = {name: option.default for name, option in _OPTIONS.items()}


def broadcast_weights(fname, weights, shape, depth="1"):
    """InstanceWeights broadcast (MATLAB-style) to ``shape`` (H, W, 1 or D, N), a read-only view, or
    None for none. N values (a vector) are one weight per image; any other array is broadcast to
    ``shape`` after padding its shape with trailing ones. ``depth`` names the third dimension in
    messages ('1' for one weight per pixel, 'D' for one per score)."""
    if weights is None or (not isinstance(weights, np.ndarray) and np.size(weights) == 0):
        return None  # None or MATLAB's []
    arr = np.asarray(weights)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{fname}: InstanceWeights must be numeric, got a {arr.dtype} array")
    images = shape[3]
    if arr.ndim == 1 and arr.size == images:
        arr = arr.reshape(1, 1, 1, images)
    elif arr.ndim == 1 and arr.size != 1:
        raise ValueError(
            f"{fname}: InstanceWeights is a vector of {arr.size} values; give N = {images} (one per image) "
            f"or an array broadcastable to H x W x {depth} x N"
        )
    if arr.ndim > 4:
        raise ValueError(f"{fname}: InstanceWeights must have at most 4 dimensions, got shape {arr.shape}")
    arr4 = arr.reshape(arr.shape + (1,) * (4 - arr.ndim))
    try:
        return np.broadcast_to(arr4, shape)
    except ValueError:
        raise ValueError(
            f"{fname}: InstanceWeights of shape {arr.shape} does not broadcast to the instances "
            f"{' x '.join(str(d) for d in shape)}"
        ) from None


def instance_weights(fname, weights, height, width, images):
    """InstanceWeights broadcast (:func:`broadcast_weights`) to the H x W x 1 x N instances, or None.

    Returns float64 of shape (1, N) when the weights do not vary over the pixels, else (H*W, N)
    with the pixels in Fortran order; None also when there are no instances (the loss is 0).
    """
    full = broadcast_weights(fname, weights, (height, width, 1, images))
    if full is None or full.size == 0:
        return None
    if full.strides[:2] == (0, 0) or height * width <= 1:  # (1, N): one weight per image
        return np.asfortranarray(full[0, 0], dtype=np.float64)
    return np.asfortranarray(full, dtype=np.float64).reshape((height * width, images), order="F")


def derivative_scale(fname, dzdy, x):
    """The scalar DZDY of a loss (a Python number, or a 1-element array of X's dtype) as a float."""
    if isinstance(dzdy, numbers.Real) and not isinstance(dzdy, (bool, np.generic)):
        try:
            return float(dzdy)
        except OverflowError:  # an int beyond double's range
            raise ValueError(f"{fname}: DZDY must be a finite number, got {dzdy!r}") from None
    dzdy = as_float_array(dzdy, "DZDY", fname)
    common_dtype(fname, X=x, DZDY=dzdy)
    if dzdy.size != 1:
        raise ValueError(f"{fname}: DZDY must be a scalar (1 element), got shape {dzdy.shape}")
    return float(dzdy.reshape(-1)[0])


def categorical_loss(fname, x, labels, scale, loss="softmaxlog", top_k=1):
    """Run the categorical loss kernel: the summed loss (X's dtype) when ``scale`` (DZDY) is None,
    else the derivative (X's shape). ``labels`` are :func:`parse_labels`' (H*W or 1, 1 or 2, N),
    their values checked on the way (a bad one raises :func:`check_label_values`' error)."""
    height, width, channels, images = shape4(x, "X", fname)
    dzdx = None if scale is None else np.empty(x.shape, dtype=x.dtype, order="F")
    dims = (height * width, channels, images)
    total, valid = _kernels.categorical(
        np.asfortranarray(x).reshape(dims, order="F"),
        labels,
        None if dzdx is None else dzdx.reshape(dims, order="F"),
        0.0 if scale is None else scale,
        CATEGORICAL[loss],
        top_k,
        threads_for(x.size),
    )
    if not valid or x.size == 0:  # the kernel found a bad label (an empty x: it checked none)
        check_label_values(fname, labels, channels)
    return x.dtype.type(total) if dzdx is None else dzdx


def weighted_labels(labels, weights):
    """The (H*W or 1, 2, N) label array whose weights are the labels' own (1 unless given) times
    the instance weights (1 or H*W, N)."""
    pixels = max(labels.shape[0], weights.shape[0])
    images = labels.shape[2]
    out = np.empty((pixels, 2, images), dtype=np.float64, order="F")
    out[:, 0, :] = labels[:, 0, :]
    if labels.shape[1] == 2:
        np.multiply(labels[:, 1, :], weights, out=out[:, 1, :])
    else:
        out[:, 1, :] = weights
    return out


def vl_nnsoftmaxloss(x, c, *args, **kwargs):
    """Softmax log-loss, summed over pixels and images (MatConvNet beta25).

    Call forms::

        loss = vl_nnsoftmaxloss(x, c)
        dzdx = vl_nnsoftmaxloss(x, c, dzdy)     # or vl_nnsoftmaxloss(x, c, dzdy=dzdy)
        loss = vl_nnsoftmaxloss(x, c, 'instanceWeights', w)   # or instance_weights=w
        dzdx = vl_nnsoftmaxloss(x, c, dzdy, 'instanceWeights', w)

    For every pixel (i, j) of every image n with class label ``c > 0`` (labels of 0 or less are
    ignored, as MatConvNet's) and weight ``w`` (1 unless given),
    ``loss += w * (log sum_k exp x[i, j, k, n] - x[i, j, c, n])``, computed stably with the
    largest score subtracted and accumulated in double. Backward gives
    ``dzdx = (softmax(x) - onehot(c)) * w * dzdy``. Both come from one kernel that never stores
    the softmax separately; the loss is the same bit for bit at any thread count. The weight of a
    pixel is the product of its weight in ``c`` (the H x W x 2 x N form) and its InstanceWeights.

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Class scores, C classes.
    c : array_like of integers (any real dtype holding whole numbers)
        1-based class labels, 0 or less marking a pixel to ignore. Accepted forms: N elements (one label
        per image, any shape), (H, W, 1, N) per-pixel labels, (H, W, 2, N) with per-pixel weights
        in the second channel, or (1, 1, 1 or 2, N), replicated over H and W.
    dzdy : scalar or 1-element ndarray (of x's dtype), optional
        Derivative of the objective with respect to the loss. None or ``[]`` means forward.
    InstanceWeights : None
        Weight of each pixel's loss and derivative, as in ``vl_nnloss``: N values (a vector, one
        per image), or an array broadcast MATLAB-style (trailing dimensions of size 1) to
        H x W x 1 x N, such as H x W x 1 x N, 1 x 1 x 1 x N or a scalar. Any real dtype.
        None or ``[]`` means no weights. Ignored pixels stay ignored whatever their weight.

    Returns
    -------
    loss : numpy scalar of x's dtype
        Forward output.
    dzdx : ndarray, shape and dtype of x, Fortran-ordered
        Backward output.

    Raises
    ------
    TypeError
        If x is not float32/float64, c or InstanceWeights is not real numeric, dzdy's dtype
        differs from x's, or an option is unknown.
    ValueError
        If c has the wrong shape, a label is not a whole number of at most C, dzdy has more than one
        element, or InstanceWeights does not broadcast to H x W x 1 x N.

    Notes
    -----
    As MatConvNet, any ``c <= 0`` marks a pixel to skip; labels above C (which MatConvNet reads
    from another pixel's scores) and labels that are not whole numbers are errors. Ignored pixels
    contribute exactly 0 to the loss and the gradient, even where x is inf or NaN; elsewhere NaN
    and inf propagate. A loss over no pixels (H, W or N = 0) or no classes (C = 0, where every
    label must be 0 or less) is 0, with an empty derivative.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnsoftmaxloss
    >>> x = np.zeros((1, 1, 4, 2), dtype=np.float32)      # 4 classes, 2 images, uniform scores
    >>> float(vl_nnsoftmaxloss(x, [1, 3])) == float(np.float32(2 * np.log(4)))
    True
    >>> vl_nnsoftmaxloss(x, [1, 0], 1.0)[..., 0].ravel()  # first image; the second is ignored
    array([-0.75,  0.25,  0.25,  0.25], dtype=float32)
    >>> float(vl_nnsoftmaxloss(x, [1, 3], 'instanceWeights', [0.5, 0])) == float(np.float32(0.5 * np.log(4)))
    True
    """
    fname = "vl_nnsoftmaxloss"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    opts = parse_options(fname, args, kwargs, _OPTIONS) if args or kwargs else _DEFAULTS
    x = as_float_array(x, "X", fname)
    height, width, channels, images = shape4(x, "X", fname)
    labels = parse_labels(fname, c, height, width, channels, images, weights=True, check_values=False)
    weights = instance_weights(fname, opts["instance_weights"], height, width, images)
    if weights is not None:
        labels = weighted_labels(labels, weights)
    scale = None if dzdy is None else derivative_scale(fname, dzdy, x)
    return categorical_loss(fname, x, labels, scale)

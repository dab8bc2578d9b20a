"""vl_nnloss: MatConvNet's general loss block, for the categorical losses 'softmaxlog' and 'classerror'.

'softmaxlog' delegates its arithmetic to :func:`cnnx.vl_nnsoftmaxloss` (the Cython kernel), instance
weights included; this module only checks the labels and the weights first, naming vl_nnloss. 'classerror' counts
wrong top-1 predictions, which is cheap enough for NumPy.
"""
import numpy as np

from ._checks import as_float_array, shape4
from ._labels import parse_labels
from ._options import Option, parse_options, take_derivative
from .softmaxloss import instance_weights, vl_nnsoftmaxloss

_FNAME = "vl_nnloss"
_SUPPORTED = ("softmaxlog", "classerror")
# MatConvNet's other loss types, which cnnx does not implement (yet).
_UNSUPPORTED = ("topkerror", "log", "mhinge", "mshinge", "binaryerror", "binarylog", "logistic", "hinge")
_SPEC = {
    "loss": Option("any", "softmaxlog"),
    "instance_weights": Option("any"),
    "class_weights": Option("any"),
}


def vl_nnloss(x, c, *args, **kwargs):
    """Classification loss summed over pixels and images: 'softmaxlog' (default) or 'classerror'.

    Call forms::

        Y = vl_nnloss(X, C)
        Y = vl_nnloss(X, C, [], 'loss', 'classerror')
        DZDX = vl_nnloss(X, C, DZDY, 'loss', 'softmaxlog', 'instanceWeights', W)

    With per-instance weights ``w`` the loss is ``Y = sum(w * t)`` over every pixel ``(i, j)`` and
    image ``n``, where the per-instance loss ``t`` is

    - ``'softmaxlog'``: ``log(sum_k exp X[i,j,k,n]) - X[i,j,c,n]`` (computed with the maximum
      subtracted); backward ``DZDX = DZDY * w * (softmax(X) - onehot(c))``;
    - ``'classerror'``: 1 if ``c`` is not the first index of the maximum of ``X[i,j,:,n]`` (NaN
      scores are never the maximum), else 0; backward gives zeros.

    A label 0 marks an instance to ignore (weight 0). As in MatConvNet beta25 the loss is a sum,
    not a mean, over the batch.

    Parameters
    ----------
    x : ndarray, shape (H, W, D, N)
        Prediction scores, float32 or float64 (3-D when N = 1).
    c : array_like of integers
        Class labels in 1..D, or 0 to ignore: either N values (one per image, used at every pixel)
        or an (H, W, 1, N) array of per-pixel labels. Any real dtype holding whole numbers.
    dzdy : scalar or 1-element array of X's dtype, optional
        Derivative of the output (positional after C, or ``dzdy=``; None or ``[]`` means forward),
        normally 1.
    Loss : 'softmaxlog'
        'softmaxlog' or 'classerror' (case-insensitive). MatConvNet's other types ('log',
        'mhinge', 'mshinge', 'topkerror', 'binaryerror', 'binarylog', 'logistic', 'hinge') are
        not implemented and raise ValueError.
    InstanceWeights : None
        Weight of each instance, broadcast (MATLAB-style, trailing dimensions of size 1) to
        (H, W, 1, N): a scalar, N values (a 1-D array, one per image) or an array of shape
        (H, W, 1, N) or broadcastable to it. Multiplied by the weights of ignored labels.
    ClassWeights : None
        Accepted and ignored, as in MatConvNet.

    Returns
    -------
    y : numpy scalar
        Forward: the summed loss, of X's dtype.
    dzdx : ndarray
        Backward: the derivative, of X's shape and dtype.

    Raises
    ------
    TypeError
        If X is not float32/float64, C or the weights are not numeric, or an option is unknown.
    ValueError
        If C's shape does not fit X (N labels, or H x W x 1 x N), a label is not a whole number in
        0..D, the weights do not broadcast, or LOSS is not a supported type. (An X with no pixels,
        images or classes is no error: its loss is 0, and every label must then be 0.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.nnloss import vl_nnloss
    >>> x = np.array([[[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]]], dtype=np.float32)  # 1x1x3x2
    >>> float(vl_nnloss(x, [1, 3], loss='classerror'))   # image 2 predicts class 2
    1.0
    >>> float(vl_nnloss(x, [1, 0], loss='classerror'))   # label 0: image 2 is ignored
    0.0
    """
    dzdy, args, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, args, kwargs, _SPEC)
    loss = _loss_type(opts["loss"])

    x = as_float_array(x, "X", _FNAME)
    h, w, d, n = shape4(x, "X", _FNAME)
    labels = parse_labels(_FNAME, c, h, w, d, n)  # (1 or H*W, 1, N)
    weights = instance_weights(_FNAME, opts["instance_weights"], h, w, n)

    if loss == "classerror":
        if dzdy is not None:
            return np.zeros(x.shape, dtype=x.dtype, order="F")
        if weights is not None:  # (1 or H*W, N) -> (H, W, N)
            per_pixel = (1, 1, n) if weights.shape[0] == 1 else (h, w, n)
            weights = np.broadcast_to(weights.reshape(per_pixel, order="F"), (h, w, n))
        labels = np.broadcast_to(labels, (h * w, 1, n)).reshape((h, w, n), order="F")
        return _class_error(x.reshape(h, w, d, n), labels.astype(np.int64), weights)

    # vl_nnsoftmaxloss ignores label 0, takes N or H x W x 1 x N labels and the same InstanceWeights.
    der = () if dzdy is None else (dzdy,)
    return vl_nnsoftmaxloss(x, np.asarray(c), *der, instance_weights=opts["instance_weights"])


def _loss_type(loss):
    if not isinstance(loss, str):
        raise TypeError(f"{_FNAME}: Loss must be a string, got {loss!r}")
    name = loss.lower()
    if name in _SUPPORTED:
        return name
    supported = ", ".join(f"'{s}'" for s in _SUPPORTED)
    if name in _UNSUPPORTED:
        raise ValueError(f"{_FNAME}: Loss '{loss}' is not implemented in cnnx; supported: {supported}")
    raise ValueError(f"{_FNAME}: unknown Loss '{loss}'; supported: {supported}")


def _class_error(x4, labels, weights):
    if x4.shape[2] == 0:  # no classes: every label is 0 (checked), nothing counts
        return x4.dtype.type(0)
    # The first maximum, with NaN never winning, as MATLAB's max does.
    scores = np.where(np.isnan(x4), -np.inf, x4)
    predicted = np.argmax(scores, axis=2) + 1
    wrong = predicted != labels
    mass = labels != 0
    if weights is not None:
        total = np.sum(weights * (wrong & mass))
    else:
        total = np.count_nonzero(wrong & mass)
    return x4.dtype.type(total)

"""vl_nnloss: MatConvNet's general loss block, its ten loss types and an L2 regression loss.

The categorical losses (one class label per pixel) run in the kernel that
:func:`cnnx.vl_nnsoftmaxloss` uses (``cnnx/_ext/softmaxloss.pyx``), the elementwise ones (one label
or target per score) in its elementwise kernel; this module checks the labels, the weights and the
options first, naming vl_nnloss.
"""
import numpy as np

from ._checks import as_float_array, shape4
from ._ext import softmaxloss as _kernels
from ._ext.softmaxloss import CATEGORICAL, ELEMENTWISE
from ._labels import check_binary_labels, parse_labels
from ._options import Option, parse_options, take_derivative
from ._threads import threads_for
from .softmaxloss import broadcast_weights, categorical_loss, derivative_scale, instance_weights, weighted_labels

_FNAME = "vl_nnloss"
# MatConvNet's ten loss types, then cnnx's own.
LOSS_TYPES = ("softmaxlog", "log", "mhinge", "mshinge", "classerror", "topkerror",
              "binaryerror", "binarylog", "logistic", "hinge", "l2")
# Losses whose backward is zero (error counts).
_ERRORS = ("classerror", "topkerror", "binaryerror")
_SPEC = {
    "loss": Option("choice", "softmaxlog", choices=LOSS_TYPES),
    "instance_weights": Option("any"),
    "class_weights": Option("any"),
    "threshold": Option("float", 0.0, finite=True),
    "top_k": Option("int", 5, low=1, display="TopK"),
}


def vl_nnloss(x, c, *args, **kwargs):
    """Loss summed over pixels and images: MatConvNet's ten loss types, and L2.

    Call forms::

        Y = vl_nnloss(X, C)
        Y = vl_nnloss(X, C, [], 'loss', 'classerror')
        DZDX = vl_nnloss(X, C, DZDY, 'loss', 'softmaxlog', 'instanceWeights', W)

    With per-instance weights ``w`` (1 unless given) the loss is ``Y = sum(w * t)`` over every
    instance, where the per-instance loss ``t`` is, for the **categorical** losses (an instance is
    a pixel ``(i, j)`` of image ``n``, with class label ``c``; ``x = X[i, j, :, n]``):

    - ``'softmaxlog'``: ``log(sum_k exp x[k]) - x[c]`` (computed with the maximum subtracted);
      backward ``DZDY * w * (softmax(x) - onehot(c))``;
    - ``'log'``: ``-log x[c]`` (x holds probabilities); backward ``-DZDY * w / max(x[c], 1e-8)`` at
      ``c``, 0 elsewhere;
    - ``'mhinge'``: ``max(0, 1 - x[c])``; backward ``-DZDY * w`` at ``c`` where ``x[c] < 1``;
    - ``'mshinge'``: ``max(0, 1 - x[c] + x[q])``, ``q`` the best other class (the first maximum);
      backward ``-DZDY * w`` at ``c`` and ``+DZDY * w`` at ``q`` where ``x[c] - x[q] < 1``;
    - ``'classerror'``: 1 if ``c`` is not the first index of the maximum of ``x`` (NaN scores
      are never the maximum, as MATLAB's max), else 0;
    - ``'topkerror'``: 1 if ``c`` is not among the first ``TopK`` classes of ``x`` sorted in
      descending order (stably; NaN first, as MATLAB's sort), else 0;

    and for the **elementwise** losses (an instance is a score ``x = X[i, j, d, n]`` with label
    ``c = C[i, j, d, n]``):

    - ``'binaryerror'``: 1 if ``sign(x - Threshold) != c``, else 0;
    - ``'binarylog'``: ``-log(c * (x - 0.5) + 0.5)`` (x a probability of +1); backward
      ``-DZDY * w / (x + (c - 1) / 2)``;
    - ``'logistic'``: ``log(1 + exp(-c x))`` (computed stably); backward
      ``-DZDY * w * c / (1 + exp(c x))``;
    - ``'hinge'``: ``max(0, 1 - c x)``; backward ``-DZDY * w * c`` where ``c x < 1``;
    - ``'l2'`` (cnnx's, not MatConvNet's): ``(x - c)^2`` with ``c`` the regression target; backward
      ``2 * DZDY * w * (x - c)``. So ``Y`` is the weighted squared Euclidean distance, summed as
      every other loss (PyTorch's ``mse_loss(..., reduction='sum')``, and ``vl_nnpdist(X, C, 2,
      'noRoot', true, 'aggregate', true)``).

    The error counts (classerror, topkerror, binaryerror) have a zero backward. Ignored instances
    (below) contribute exactly 0 to the loss and the derivative, whatever their scores; elsewhere
    a NaN score gives a NaN loss, also through the hinges (whose derivative is 0 there; MatConvNet's
    hinge losses are 0, as MATLAB's max drops NaN), and infinite scores propagate. As in
    MatConvNet beta25 the loss is a sum, not a mean, over the batch.

    Parameters
    ----------
    x : ndarray, shape (H, W, D, N)
        Prediction scores, float32 or float64 (3-D when N = 1).
    c : array_like of real numbers
        Categorical losses: class labels, whole numbers of at most D; 1..D are classes and 0 or
        less ignores the pixel (MatConvNet's ``c > 0``); either N values (one per image, used at
        every pixel) or an (H, W, 1, N) array of per-pixel labels. Binary losses: +1 or -1 per
        score, 0 ignoring it, as an (H, W, D, N) array (or N values when D = 1). L2: the targets,
        an (H, W, D, N) array (or N values when D = 1); no value is ignored. Any real dtype.
    dzdy : scalar or 1-element array of X's dtype, optional
        Derivative of the output (positional after C, or ``dzdy=``; None or ``[]`` means forward),
        normally 1.
    Loss : 'softmaxlog'
        'softmaxlog', 'log', 'mhinge', 'mshinge', 'classerror', 'topkerror', 'binaryerror',
        'binarylog', 'logistic', 'hinge' or 'l2' (case-insensitive).
    InstanceWeights : None
        Weight of each instance, broadcast (MATLAB-style, trailing dimensions of size 1) to the
        instances, (H, W, 1, N) for the categorical losses and (H, W, D, N) for the others: a
        scalar, N values (a 1-D array, one per image) or an array broadcastable to them (such as
        H x W). Multiplied by the weights of ignored labels (0).
    ClassWeights : None
        Accepted and ignored, as in MatConvNet.
    Threshold : 0
        'binaryerror': the score that separates the two classes.
    TopK : 5
        'topkerror': how many of the best classes may hold the label (a positive integer; from
        D on, nothing is an error; MatConvNet fails there).

    Returns
    -------
    y : numpy scalar
        Forward: the summed loss, of X's dtype.
    dzdx : ndarray
        Backward: the derivative, of X's shape and dtype.

    Raises
    ------
    TypeError
        If X is not float32/float64, C or the weights are not numeric, DZDY is not a number of
        X's dtype, or an option is unknown.
    ValueError
        If C's shape does not fit X and the loss, a class label is not a whole number of at most
        D, a binary label is not +1, -1 or 0, the weights do not broadcast, or an option value is
        not one of those above. (An X with no pixels, images or classes is no error: its loss is 0.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx.nnloss import vl_nnloss
    >>> x = np.array([[[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]]], dtype=np.float32)  # 1x1x3x2
    >>> float(vl_nnloss(x, [1, 3], loss='classerror'))   # image 2 predicts class 2
    1.0
    >>> float(vl_nnloss(x, [1, 0], loss='classerror'))   # label 0: image 2 is ignored
    0.0
    >>> float(vl_nnloss(x, [1, 3], 'loss', 'topkerror', 'topK', 2))   # class 3 ranks second
    0.0
    >>> float(vl_nnloss(x, np.ones_like(x), loss='l2'))  # 1 + 1 + 0 + 1 + 4 + 0
    7.0
    """
    dzdy, args, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, args, kwargs, _SPEC)
    loss = opts["loss"]
    x = as_float_array(x, "X", _FNAME)
    h, w, d, n = shape4(x, "X", _FNAME)
    scale = None if dzdy is None else derivative_scale(_FNAME, dzdy, x)
    if loss in CATEGORICAL:
        labels = parse_labels(_FNAME, c, h, w, d, n)  # (1 or H*W, 1, N)
        weights = instance_weights(_FNAME, opts["instance_weights"], h, w, n)
        if weights is not None:
            labels = weighted_labels(labels, weights)
        if scale is not None and loss in _ERRORS:
            return np.zeros(x.shape, dtype=x.dtype, order="F")
        return categorical_loss(_FNAME, x, labels, scale, loss, opts["top_k"])

    labels = parse_labels(_FNAME, c, h, w, d, n, attributes=True)  # (1 or H*W, D, N)
    if loss != "l2":
        check_binary_labels(_FNAME, labels, loss)
    weights = broadcast_weights(_FNAME, opts["instance_weights"], (h, w, d, n), depth="D")
    if scale is not None and loss in _ERRORS:
        return np.zeros(x.shape, dtype=x.dtype, order="F")
    dzdx = None if scale is None else np.empty(x.shape, dtype=x.dtype, order="F")
    total = _kernels.elementwise(
        np.asfortranarray(x).reshape(-1, order="F"),
        np.asfortranarray(np.broadcast_to(labels, (h * w, d, n))).reshape(-1, order="F"),
        None if weights is None else np.asfortranarray(weights, dtype=np.float64).reshape(-1, order="F"),
        None if dzdx is None else dzdx.reshape(-1, order="F"),
        0.0 if scale is None else scale,
        ELEMENTWISE[loss],
        opts["threshold"],
        loss != "l2",
        threads_for(x.size),
    )
    return x.dtype.type(total) if dzdx is None else dzdx

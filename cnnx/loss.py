"""Softmax log-loss: ``vl_nnsoftmaxloss``."""
import numbers

import numpy as np

from ._checks import as_float_array, common_dtype, shape4
from ._ext import loss as _kernels
from ._options import parse_options, take_derivative
from ._threads import threads_for


def _label_array(fname, c, height, width, images):
    """Labels as a Fortran float64 (H*W or 1, 1 or 2, N) array: classes, then optional weights."""
    c = np.asarray(c)
    if c.dtype.kind not in "iuf":
        raise TypeError(f"{fname}: labels c must be a real numeric array, got {c.dtype}")
    if c.size == images:
        dims = (1, 1, images)  # one label per image
    else:
        c_height, c_width, depth, c_images = shape4(c, "labels c", fname) if c.ndim >= 2 else (0, 0, 0, 0)
        if (
            depth not in (1, 2)
            or c_images != images
            or (c_height, c_width) not in ((height, width), (1, 1))
        ):
            raise ValueError(
                f"{fname}: labels c must have N = {images} elements or shape H x W x {{1,2}} x N "
                f"(or 1 x 1 x {{1,2}} x N) with H x W = {height} x {width}, got shape {c.shape}"
            )
        dims = (c_height * c_width, depth, images)
    return np.asfortranarray(c, dtype=np.float64).reshape(dims, order="F")


def _bad_labels(labels, channels):
    """The labels that are not integers in 0..channels (the kernel only says whether there are any)."""
    classes = labels[:, 0, :]
    valid = (classes >= 0) & (classes <= channels) & (classes == np.floor(classes))
    return classes[~valid]


def vl_nnsoftmaxloss(x, c, *args, **kwargs):
    """Softmax log-loss, summed over pixels and images (MatConvNet beta25).

    Call forms::

        loss = vl_nnsoftmaxloss(x, c)
        dzdx = vl_nnsoftmaxloss(x, c, dzdy)     # or vl_nnsoftmaxloss(x, c, dzdy=dzdy)

    For every pixel (i, j) of every image n with class label ``c > 0`` and weight ``w`` (1 unless
    given), ``loss += w * (log sum_k exp x[i, j, k, n] - x[i, j, c, n])``, computed stably with the
    largest score subtracted and accumulated in double. Backward gives
    ``dzdx = (softmax(x) - onehot(c)) * w * dzdy``. Both come from one kernel that never stores
    the softmax separately; the loss is the same bit for bit at any thread count.

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Class scores, C classes.
    c : array_like of integers (any real dtype holding whole numbers)
        1-based class labels, 0 marking a pixel to ignore. Accepted forms: N elements (one label
        per image, any shape), (H, W, 1, N) per-pixel labels, (H, W, 2, N) with per-pixel weights
        in the second channel, or (1, 1, 1 or 2, N), replicated over H and W.
    dzdy : scalar or 1-element ndarray (of x's dtype), optional
        Derivative of the objective with respect to the loss. None or ``[]`` means forward.

    Returns
    -------
    loss : numpy scalar of x's dtype
        Forward output.
    dzdx : ndarray, shape and dtype of x, Fortran-ordered
        Backward output.

    Raises
    ------
    TypeError
        If x is not float32/float64, c is not real numeric, dzdy's dtype differs from x's, or an
        option is given (there are none).
    ValueError
        If c has the wrong shape, a label is not an integer in 0..C, or dzdy has more than one
        element.

    Notes
    -----
    MatConvNet marks skipped pixels with any ``c <= 0``; here only 0 does, and negative labels
    are errors. Ignored pixels contribute exactly 0 to the loss and the gradient, even where x is
    inf or NaN; elsewhere NaN and inf propagate.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnsoftmaxloss
    >>> x = np.zeros((1, 1, 4, 2), dtype=np.float32)      # 4 classes, 2 images, uniform scores
    >>> float(vl_nnsoftmaxloss(x, [1, 3])) == float(np.float32(2 * np.log(4)))
    True
    >>> vl_nnsoftmaxloss(x, [1, 0], 1.0)[..., 0].ravel()  # first image; the second is ignored
    array([-0.75,  0.25,  0.25,  0.25], dtype=float32)
    """
    fname = "vl_nnsoftmaxloss"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    if args or kwargs:
        parse_options(fname, args, kwargs, {})  # there are no options: reports the unknown one
    x = as_float_array(x, "X", fname)
    height, width, channels, images = shape4(x, "X", fname)
    labels = _label_array(fname, c, height, width, images)
    dzdx = None
    scale = 1.0
    if dzdy is not None:
        if isinstance(dzdy, numbers.Real) and not isinstance(dzdy, (bool, np.generic)):
            scale = float(dzdy)
        else:
            dzdy = as_float_array(dzdy, "DZDY", fname)
            common_dtype(fname, X=x, DZDY=dzdy)
            if dzdy.size != 1:
                raise ValueError(f"{fname}: DZDY must be a scalar (1 element), got shape {dzdy.shape}")
            scale = float(dzdy.reshape(-1)[0])
        dzdx = np.empty(x.shape, dtype=x.dtype, order="F")
    dims = (height * width, channels, images)
    loss, valid = _kernels.softmaxloss(
        np.asfortranarray(x).reshape(dims, order="F"),
        labels,
        None if dzdx is None else dzdx.reshape(dims, order="F"),
        scale,
        threads_for(x.size),
    )
    bad = _bad_labels(labels, channels) if not valid or x.size == 0 else ()  # empty x: no kernel check
    if len(bad):
        raise ValueError(
            f"{fname}: labels c must be integers in 0..C (C = {channels} classes, 0 = ignore), "
            f"got {float(bad[0])!r}"
        )
    return x.dtype.type(loss) if dzdx is None else dzdx

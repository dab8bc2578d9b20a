"""vl_nnpdist: the p-distance of every pixel's channels to a target, the kernels in ``cnnx/_ext/pdist.pyx``."""
import numbers

import numpy as np

from ._checks import as_float_array, common_dtype, out_shape, shape4
from ._ext import pdist as _kernels
from ._options import Option, parse_options, take_derivative, validate_value
from ._threads import threads_for
from .softmaxloss import broadcast_weights, derivative_scale

_FNAME = "vl_nnpdist"
_P = Option("float", finite=True, low=0, low_open=True)
_SPEC = {
    "no_root": Option("bool", False),
    "epsilon": Option("float", 1e-6, low=0, finite=True),
    "aggregate": Option("bool", False),
    "instance_weights": Option("any"),
}


def vl_nnpdist(x, x0, p, *args, **kwargs):
    """p-distance between the channels of X and X0 at every pixel (MatConvNet beta25).

    Call forms::

        Y = vl_nnpdist(X, X0, P)
        Y = vl_nnpdist(X, X0, P, 'noRoot', true, 'aggregate', true)
        DZDX, DZDX0 = vl_nnpdist(X, X0, P, DZDY, ...)      # or dzdy=DZDY

    With ``d = X - X0`` (X0 broadcast over H x W when it is 1 x 1 x D x N), at every pixel
    ``Y[i, j, 0, n] = (sum_k |d[i, j, k, n]|^P)^(1/P)``, or ``sum_k |d|^P`` with ``NoRoot``;
    multiplied by ``InstanceWeights`` and, with ``Aggregate``, summed to one number. Backward gives
    the derivative of that with respect to X, as MatConvNet computes it: for the root,
    ``DZDY * sign(d)`` (P = 1), ``DZDY * d / sqrt(max(S, Epsilon))`` (P = 2),
    ``DZDY * S^((1-P)/P) * max(|d|, Epsilon)^(P-1) * sign(d)`` (P < 1) and
    ``DZDY * max(S, Epsilon)^((1-P)/P) * |d|^(P-1) * sign(d)`` (others), S = sum_k |d|^P; without
    the root ``P * DZDY * |d|^(P-1) * sign(d)`` (``max(|d|, Epsilon)`` for P < 1; exactly
    ``2 * DZDY * d`` for P = 2). The derivative with respect to X0 is minus that, summed over
    H x W when X0 is 1 x 1 x D x N. Sums run over the channels in order, in double.

    Parameters
    ----------
    x : ndarray, shape (H, W, D, N)
        float32 or float64 (3-D when N = 1).
    x0 : ndarray, shape (H, W, D, N) or (1, 1, D, N)
        The target, of X's dtype.
    p : float
        The exponent, a finite number greater than 0.
    dzdy : ndarray or scalar, optional
        Derivative of Y (positional after P, or ``dzdy=``; None or ``[]`` means forward): of Y's
        shape (H x W x 1 x N), or one number (always so with ``Aggregate``), of X's dtype.
    NoRoot : False
        Return the sum of the P-th powers, not its P-th root.
    Epsilon : 1e-6
        Lower bound where the derivatives divide (at least 0).
    Aggregate : False
        Sum Y (after the weights) to one number.
    InstanceWeights : None
        Weight of each pixel's distance (forward) and derivative (backward), broadcast MATLAB-style
        to H x W x 1 x N: a scalar, N values (one per image) or an array broadcastable to it.

    Returns
    -------
    y : ndarray, shape (H, W, 1, N), or numpy scalar with Aggregate
        Forward, of X's dtype.
    dzdx, dzdx0 : ndarray
        Backward: of X's and X0's shapes and X's dtype.

    Raises
    ------
    TypeError
        If X, X0 or DZDY is not float32/float64 or their dtypes differ, or an option is unknown.
    ValueError
        If X0 or DZDY has another shape, P is not a finite number above 0, Epsilon is negative or
        not finite, or the weights do not broadcast to H x W x 1 x N.

    Notes
    -----
    MatConvNet returns DZDX0 with X's shape even when X0 is 1 x 1 x D x N (the broadcast is not
    back-propagated); cnnx sums it to X0's shape, as every derivative has its argument's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnpdist
    >>> x = np.array([3.0, 4.0]).reshape(1, 1, 2, 1)
    >>> vl_nnpdist(x, np.zeros_like(x), 2).shape, float(vl_nnpdist(x, np.zeros_like(x), 2)[0, 0, 0, 0])
    ((1, 1, 1, 1), 5.0)
    >>> float(vl_nnpdist(x, np.zeros_like(x), 2, 'noRoot', True, 'aggregate', True))
    25.0
    >>> dzdx, dzdx0 = vl_nnpdist(x, np.zeros_like(x), 1, np.ones((1, 1, 1)))
    >>> dzdx.ravel().tolist(), dzdx0.ravel().tolist()
    ([1.0, 1.0], [-1.0, -1.0])
    """
    dzdy, args, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, args, kwargs, _SPEC)
    x = as_float_array(x, "X", _FNAME)
    x0 = as_float_array(x0, "X0", _FNAME)
    common_dtype(_FNAME, X=x, X0=x0)
    h, w, d, n = shape4(x, "X", _FNAME)
    target = shape4(x0, "X0", _FNAME)
    if target not in ((h, w, d, n), (1, 1, d, n)):
        raise ValueError(f"{_FNAME}: X0 has shape {x0.shape} but X is {h} x {w} x {d} x {n}; give X0 of X's shape "
                         f"or 1 x 1 x {d} x {n}")
    p = validate_value(_FNAME, "P", _P, p.item() if isinstance(p, np.ndarray) and p.size == 1 else p)
    weights = broadcast_weights(_FNAME, opts["instance_weights"], (h, w, 1, n))
    x3 = np.asfortranarray(x).reshape((h * w, d, n), order="F")
    x03 = np.asfortranarray(x0).reshape((target[0] * target[1], d, n), order="F")
    threads = threads_for(x.size)
    if dzdy is None:
        y = np.empty((h * w, n), dtype=np.float64, order="F")
        _kernels.pdist_forward(x3, x03, y, p, opts["no_root"], threads)
        if weights is not None:
            y *= weights.reshape((h * w, n), order="F")
        if opts["aggregate"]:
            return x.dtype.type(np.sum(y))
        return y.astype(x.dtype).reshape(out_shape((h, w, 1, n), x.ndim), order="F")

    dy = _derivative(dzdy, x, (h, w, 1, n))
    if weights is not None:
        dy = dy * weights
    dy = np.asfortranarray(np.broadcast_to(dy, (h, w, 1, n)), dtype=np.float64).reshape((h * w, n), order="F")
    dzdx = np.empty(x.shape, dtype=x.dtype, order="F")
    _kernels.pdist_backward(x3, x03, dy, dzdx.reshape((h * w, d, n), order="F"), p, opts["no_root"],
                            opts["epsilon"], threads)
    dzdx0 = -dzdx
    if target[:2] == (1, 1) and (h, w) != (1, 1):
        dzdx0 = np.asfortranarray(dzdx0.reshape((h, w, d, n), order="F").sum(axis=(0, 1), keepdims=True))
    return dzdx, dzdx0.reshape(x0.shape, order="F")


def _derivative(dzdy, x, y_shape):
    """DZDY as a float64 array broadcastable to Y's 4-D shape: one number, or an array of Y's shape."""
    if not isinstance(dzdy, numbers.Real) or isinstance(dzdy, np.generic):
        arr = as_float_array(dzdy, "DZDY", _FNAME)
        common_dtype(_FNAME, X=x, DZDY=arr)
        if arr.size != 1:
            if arr.ndim > 4 or arr.shape + (1,) * (4 - arr.ndim) != y_shape:
                raise ValueError(f"{_FNAME}: DZDY has shape {arr.shape} but Y is {' x '.join(map(str, y_shape))}; "
                                 "give one number or an array of Y's shape")
            return arr.reshape(y_shape).astype(np.float64)
    return np.full((1, 1, 1, 1), derivative_scale(_FNAME, dzdy, x))

"""Rectified linear units: ``vl_nnrelu`` (ReLU / leaky ReLU, as MatConvNet) and ``vl_nnprelu``."""
import numpy as np

from ._checks import as_float_array, common_dtype, like, shape4
from ._ext import activations as _kernels
from ._options import Option, parse_options, take_derivative
from ._threads import threads_for

_RELU_OPTIONS = {"leak": Option("float", 0.0)}
# Up to 2^52, leak + (1 - leak), the kernel's (and MatConvNet's) slope for x > 0, is exactly 1.
_MAX_LEAK = 2.0**52

def vl_nnrelu(x, *args, **kwargs):
    """Rectified linear unit, optionally leaky.

    Call forms::

        y = vl_nnrelu(x)
        y = vl_nnrelu(x, [], 'leak', leak)      # or vl_nnrelu(x, leak=leak)
        dzdx = vl_nnrelu(x, dzdy, 'leak', leak)  # or vl_nnrelu(x, dzdy=dzdy, leak=leak)

    With ``Leak`` 0, ``y = max(x, 0)`` and ``dzdx = dzdy * (x > 0)`` (the slope at 0 is 0).
    Otherwise ``y = x * (leak + (1 - leak) * (x > 0))`` and ``dzdx = dzdy`` times the same factor.
    The backward call may be given ``y`` in place of ``x``: both have the same sign pattern, so the
    result is the same (``vl_simplenn`` relies on this when it frees ``x``).

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input (or, for the backward call, the forward output).
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to the output. None or ``[]`` means forward.
    Leak : 0
        Slope for x <= 0, from 0 to 2^52 (a negative leak would break the ``y``-for-``x``
        substitution above; beyond 2^52 the slope 1 of x > 0 would be lost to rounding).

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is unknown.
    ValueError
        If dzdy's shape differs from x's, or Leak is NaN or outside [0, 2^52]. (An empty x gives
        an empty result.)

    Notes
    -----
    A NaN in x gives NaN in y (MATLAB's ``max`` would drop it); NaN or inf in dzdy propagate through
    the product with the factor, so an inf where the factor is 0 gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnrelu
    >>> x = np.array([[-2.0, 3.0]], dtype=np.float32)
    >>> vl_nnrelu(x)
    array([[0., 3.]], dtype=float32)
    >>> vl_nnrelu(x, [], 'Leak', 0.5)
    array([[-1.,  3.]], dtype=float32)
    >>> vl_nnrelu(x, np.ones_like(x))
    array([[0., 1.]], dtype=float32)
    """
    fname = "vl_nnrelu"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    leak = parse_options(fname, args, kwargs, _RELU_OPTIONS)["leak"] if args or kwargs else 0.0
    if not 0 <= leak <= _MAX_LEAK:  # also refuses NaN and inf
        raise ValueError(f"{fname}: Leak must be a number from 0 to 2^52, got {leak!r}")
    x = as_float_array(x, "X", fname)
    n_threads = threads_for(x.size)
    out = np.empty(x.shape, dtype=x.dtype, order="F")
    if dzdy is None:
        _kernels.relu_forward(np.asfortranarray(x), out, leak, n_threads)
    else:
        dzdy = like(dzdy, "DZDY", fname, x, "X")
        _kernels.relu_backward(np.asfortranarray(x), np.asfortranarray(dzdy), out, leak, n_threads)
    return out


def vl_nnprelu(x, a, *args, **kwargs):
    """Parametric ReLU: ``y = x`` where ``x > 0`` and ``a[c] * x`` elsewhere, one slope per channel.

    Not a MatConvNet block (He et al., 2015); it follows the same conventions.

    Call forms::

        y = vl_nnprelu(x, a)
        dzdx, dzda = vl_nnprelu(x, a, dzdy)      # or vl_nnprelu(x, a, dzdy=dzdy)

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Input.
    a : ndarray, dtype of x, C elements (any shape) or 1 element
        Slopes for x <= 0: one per channel, or one shared by all channels.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y : ndarray, shape and dtype of x
        Forward output.
    dzdx, dzda : ndarray, shaped like x and like a
        Backward outputs: ``dzdx = dzdy * (1 if x > 0 else a[c])`` and ``dzda[c]`` the sum of
        ``dzdy * x`` over the elements of channel c with x <= 0 (over all channels for a shared a).
        dzda is summed in double in an order fixed by the shape, so it is the same bit for bit at
        any thread count.

    Raises
    ------
    TypeError
        If x, a or dzdy is not float32/float64, their dtypes differ, or an option is given.
    ValueError
        If x does not have 2 to 4 dimensions, a has neither 1 nor C elements, or dzdy's shape
        differs from x's. (An empty x gives an empty y and, summed over no elements, a zero dzda.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnprelu
    >>> x = np.array([-2.0, 3.0, -1.0, 4.0]).reshape(1, 2, 2, order='F')   # 2 channels
    >>> vl_nnprelu(x, np.array([0.5, 0.1]))
    array([[[-1. , -0.1],
            [ 3. ,  4. ]]])
    >>> dzdx, dzda = vl_nnprelu(x, np.array([0.5, 0.1]), np.ones_like(x))
    >>> dzda
    array([-2., -1.])
    """
    fname = "vl_nnprelu"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    if args or kwargs:
        parse_options(fname, args, kwargs, {})  # vl_nnprelu has no options: reports the unknown one
    x = as_float_array(x, "X", fname)
    a = as_float_array(a, "A", fname)
    common_dtype(fname, X=x, A=a)
    height, width, channels, images = shape4(x, "X", fname)
    if a.size == channels:
        slopes = np.ascontiguousarray(a.reshape(-1, order="F"))
    elif a.size == 1:
        slopes = np.full(channels, a.reshape(-1)[0], dtype=x.dtype)
    else:
        raise ValueError(f"{fname}: A has {a.size} elements but X has {channels} channels (need 1 or C)")
    n_threads = threads_for(x.size)
    dims = (height * width, channels, images)
    x3 = np.asfortranarray(x).reshape(dims, order="F")
    out = np.empty(x.shape, dtype=x.dtype, order="F")
    if dzdy is None:
        _kernels.prelu_forward(x3, slopes, out.reshape(dims, order="F"), n_threads)
        return out
    dzdy = like(dzdy, "DZDY", fname, x, "X")
    per_channel = np.empty(channels, dtype=np.float64)
    _kernels.prelu_backward(x3, slopes, np.asfortranarray(dzdy).reshape(dims, order="F"),
                            out.reshape(dims, order="F"), per_channel, n_threads)
    if a.size == channels:
        dzda = per_channel.astype(x.dtype).reshape(a.shape, order="F")
    else:
        dzda = np.full(a.shape, per_channel.sum(), dtype=x.dtype)
    return out, dzda

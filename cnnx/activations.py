"""Activation blocks: MatConvNet's ``vl_nnrelu`` (ReLU / leaky ReLU), and beyond MatConvNet, in its
style, ``vl_nnprelu``, ``vl_nnelu``, ``vl_nnselu``, ``vl_nnsoftplus``, ``vl_nntanh``, ``vl_nnsilu``,
``vl_nngelu`` and ``vl_nnclippedrelu``.

All but PReLU are one elementwise kernel (``cnnx._ext.activations.elementwise_forward`` /
``elementwise_backward``) told which activation to compute; ``_elementwise`` is their common call.
"""
import numpy as np

from ._checks import as_float_array, common_dtype, like, result_array, shape4
from ._ext import activations as _kernels
from ._options import Option, parse_options, take_derivative
from ._threads import threads_for

# The elementwise kernel's codes of its activations.
_Activation = _kernels.Activation

_RELU_OPTIONS = {"leak": Option("float", 0.0), "out": Option("any"), "signs": Option("any")}
# Up to 2^52, leak + (1 - leak), the kernel's (and MatConvNet's) slope for x > 0, is exactly 1.
_MAX_LEAK = 2.0**52

# The options of the other elementwise blocks (their layer kinds declare the same ones).
ELU_OPTIONS = {"alpha": Option("float", 1.0, finite=True)}
GELU_OPTIONS = {"approximate": Option("choice", "none", choices=("none", "tanh"))}
CLIPPED_RELU_OPTIONS = {"ceiling": Option("float", 6.0, low=0.0)}

# SELU's constants (Klambauer et al., 2017, to 20 digits): it is ELU with this alpha, scaled.
SELU_ALPHA = 1.6732632423543772848
SELU_SCALE = 1.0507009873554804934


def vl_nnrelu(x, *args, **kwargs):
    """Rectified linear unit, optionally leaky.

    Call forms::

        y = vl_nnrelu(x)
        y = vl_nnrelu(x, [], 'leak', leak)      # or vl_nnrelu(x, leak=leak)
        dzdx = vl_nnrelu(x, dzdy, 'leak', leak)  # or vl_nnrelu(x, dzdy=dzdy, leak=leak)
        y, signs = vl_nnrelu(x, signs=True)      # cnnx: also the signs of x, packed in bits
        dzdx = vl_nnrelu(None, dzdy, signs=signs)

    With ``Leak`` 0, ``y = max(x, 0)`` and ``dzdx = dzdy * (x > 0)`` (the slope at 0 is 0).
    Otherwise ``y = x * (leak + (1 - leak) * (x > 0))`` and ``dzdx = dzdy`` times the same factor.
    The backward call may be given ``y`` in place of ``x``: both have the same sign pattern, so the
    result is the same (``vl_simplenn`` relies on this when it frees ``x``).

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape, or None
        Input (or, for the backward call, the forward output; None with ``Signs``).
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to the output. None or ``[]`` means forward.
    Leak : 0
        Slope for x <= 0, from 0 to 2^52 (a negative leak would break the ``y``-for-``x``
        substitution above; beyond 2^52 the slope 1 of x > 0 would be lost to rounding).
    Out : None
        (cnnx only.) The array to write the result into instead of a new one: writeable, aligned,
        Fortran-contiguous, of x's shape and dtype; it may be x or dzdy itself (``vl_simplenn``
        overwrites so the arrays it frees), but not overlap one of them otherwise.
    Signs : None
        (cnnx only.) In a forward call, True also returns the signs of x, all the backward call
        needs: ``x > 0`` packed in bits, bit k of byte b for element ``8b + k`` in Fortran order
        (a uint8 array of ``ceil(x.size / 8)`` bytes, a 32nd of float32 x's memory). In a backward
        call, those signs, in place of x (which may then be None): the same bits as from x.
        ``vl_simplenn`` keeps them when it frees the output before backward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered (``Out`` when given)
    signs : ndarray, uint8, (ceil(x.size / 8),)
        Forward call with ``Signs`` True: the packed signs.

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, an option is unknown, or Out is
        not an array of x's dtype.
    ValueError
        If dzdy's shape differs from x's, Leak is NaN or outside [0, 2^52], Out is not shaped
        and laid out as above, or Signs is not True or False in a forward call, or not a 1-D uint8
        array of ``ceil(dzdy.size / 8)`` bytes in a backward call. (An empty x gives an empty
        result.)

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
    >>> y, signs = vl_nnrelu(x, signs=True)
    >>> signs
    array([2], dtype=uint8)
    >>> vl_nnrelu(None, np.ones_like(x), signs=signs)
    array([[0., 1.]], dtype=float32)
    >>> y = vl_nnrelu(x, out=x)
    >>> y is x, x
    (True, array([[0., 3.]], dtype=float32))
    """
    fname = "vl_nnrelu"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    opts = parse_options(fname, args, kwargs, _RELU_OPTIONS)
    leak, signs = opts["leak"], opts["signs"]
    if not 0 <= leak <= _MAX_LEAK:  # also refuses NaN and inf
        raise ValueError(f"{fname}: Leak must be a number from 0 to 2^52, got {leak!r}")
    if dzdy is None and isinstance(signs, (bool, np.bool_)) and signs:
        x = as_float_array(x, "X", fname)
        y = result_array(fname, opts["out"], x, x)
        signs = np.empty((x.size + 7) // 8, np.uint8)
        _kernels.relu_signs(np.asfortranarray(x), y, signs, False, leak, threads_for(x.size))
        return y, signs
    if dzdy is None and not isinstance(signs, (bool, np.bool_, type(None))):
        raise ValueError(f"{fname}: Signs in a forward call must be True or False, got {type(signs).__name__}")
    if dzdy is not None and signs is not None:
        return _relu_backward_from_signs(fname, x, dzdy, signs, leak, opts["out"])
    return _elementwise(fname, _Activation.RELU, x, dzdy, leak, out=opts["out"])


def _relu_backward_from_signs(fname, x, dzdy, signs, leak, out):
    """vl_nnrelu's backward call given the packed signs of its input (x: None, or of dzdy's shape)."""
    dzdy = as_float_array(dzdy, "DZDY", fname)
    if x is not None and np.shape(x) != dzdy.shape:
        raise ValueError(f"{fname}: X has shape {np.shape(x)} but DZDY has shape {dzdy.shape}")
    expected = (dzdy.size + 7) // 8
    if not (isinstance(signs, np.ndarray) and signs.dtype == np.uint8 and signs.shape == (expected,)):
        got = f"{signs.dtype} array of shape {signs.shape}" if isinstance(signs, np.ndarray) else type(signs).__name__
        raise ValueError(f"{fname}: Signs in a backward call must be the uint8 array of {expected} bytes of the "
                         f"forward call, got {got}")
    out = result_array(fname, out, dzdy, dzdy)
    _kernels.relu_signs(np.asfortranarray(dzdy), out, np.ascontiguousarray(signs), True, leak,
                        threads_for(dzdy.size))
    return out


def _elementwise(fname, kind, x, dzdy, p=0.0, q=0.0, out=None):
    """The elementwise kernel's activation ``kind`` (with its parameters p, q) of x: y, or dzdx
    given dzdy; written into ``out`` when given (see ``cnnx._checks.result_array``)."""
    x = as_float_array(x, "X", fname)
    n_threads = threads_for(x.size)
    if dzdy is None:
        out = result_array(fname, out, x, x)
        _kernels.elementwise_forward(kind, np.asfortranarray(x), out, p, q, n_threads)
    else:
        dzdy = like(dzdy, "DZDY", fname, x, "X")
        out = result_array(fname, out, x, x, dzdy)
        _kernels.elementwise_backward(kind, np.asfortranarray(x), np.asfortranarray(dzdy), out, p, q, n_threads)
    return out


def _derivative_and_options(fname, args, kwargs, spec):
    """(dzdy or None, the validated options) of a block call."""
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    return dzdy, parse_options(fname, args, kwargs, spec)


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


# ------------------------------------------------------------------------------------------------
# Smooth and clipped activations: elementwise, forward and backward in one function each
# ------------------------------------------------------------------------------------------------
# Each computes every element in double and rounds it once to x's type. The backward call takes x
# (not y) and returns dzdy times the derivative at x, a product, so that inf and NaN in dzdy
# propagate as in vl_nnrelu.


def vl_nnelu(x, *args, **kwargs):
    """Exponential linear unit: ``y = x`` where ``x > 0`` and ``alpha * (exp(x) - 1)`` elsewhere.

    Not a MatConvNet block (Clevert et al., 2016); it follows MatConvNet's conventions.

    Call forms::

        y = vl_nnelu(x)
        y = vl_nnelu(x, [], 'Alpha', alpha)      # or vl_nnelu(x, alpha=alpha)
        dzdx = vl_nnelu(x, dzdy, 'Alpha', alpha)  # or vl_nnelu(x, dzdy=dzdy, alpha=alpha)

    ``dzdx = dzdy`` where ``x > 0`` and ``dzdy * alpha * exp(x)`` elsewhere (at 0 the slope from the
    left, alpha, as ReLU's slope at 0 is its leak); ``exp(x) - 1`` is computed as ``expm1(x)``.

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.
    Alpha : 1
        Value approached as x goes to -inf is ``-alpha``; any finite number.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is unknown or not a
        number.
    ValueError
        If dzdy's shape differs from x's, or Alpha is not finite. (An empty x gives an empty result.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnelu
    >>> x = np.array([-1.0, 0.0, 2.0])
    >>> vl_nnelu(x)
    array([-0.63212056,  0.        ,  2.        ])
    >>> vl_nnelu(x, np.ones_like(x), 'Alpha', 0.5)
    array([0.18393972, 0.5       , 1.        ])
    """
    fname = "vl_nnelu"
    dzdy, opts = _derivative_and_options(fname, args, kwargs, ELU_OPTIONS)
    return _elementwise(fname, _Activation.ELU, x, dzdy, opts["alpha"], 1.0)


def vl_nnselu(x, *args, **kwargs):
    """Scaled exponential linear unit: ``y = scale * x`` where ``x > 0`` and
    ``scale * alpha * (exp(x) - 1)`` elsewhere, with SELU's fixed constants.

    Not a MatConvNet block (Klambauer et al., 2017); it follows MatConvNet's conventions. It is
    :func:`vl_nnelu` with ``alpha = 1.6732632423543772848``, times ``scale = 1.0507009873554804934``
    (``SELU_ALPHA``, ``SELU_SCALE``), as PyTorch's ``selu``.

    Call forms::

        y = vl_nnselu(x)
        dzdx = vl_nnselu(x, dzdy)      # or vl_nnselu(x, dzdy=dzdy)

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered
        ``dzdx = dzdy * scale`` where ``x > 0``, ``dzdy * scale * alpha * exp(x)`` elsewhere.

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is given.
    ValueError
        If dzdy's shape differs from x's. (An empty x gives an empty result.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnselu
    >>> vl_nnselu(np.array([-1.0, 0.0, 2.0]))
    array([-1.11133074,  0.        ,  2.10140197])
    """
    fname = "vl_nnselu"
    dzdy, _ = _derivative_and_options(fname, args, kwargs, {})
    return _elementwise(fname, _Activation.ELU, x, dzdy, SELU_ALPHA, SELU_SCALE)


def vl_nnsoftplus(x, *args, **kwargs):
    """Softplus: ``y = log(1 + exp(x))``, a smooth ReLU; ``dzdx = dzdy * sigmoid(x)``.

    Not a MatConvNet block; it follows MatConvNet's conventions. Computed as
    ``max(x, 0) + log1p(exp(-|x|))``, which neither overflows nor loses the small values of
    x << 0, so PyTorch's ``threshold`` (a switch to ``y = x`` for large x) has no use here; its
    ``beta`` is not offered either.

    Call forms::

        y = vl_nnsoftplus(x)
        dzdx = vl_nnsoftplus(x, dzdy)      # or vl_nnsoftplus(x, dzdy=dzdy)

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is given.
    ValueError
        If dzdy's shape differs from x's. (An empty x gives an empty result.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnsoftplus
    >>> x = np.array([-40.0, 0.0, 40.0])
    >>> vl_nnsoftplus(x)
    array([4.24835426e-18, 6.93147181e-01, 4.00000000e+01])
    >>> vl_nnsoftplus(x, np.ones_like(x))
    array([4.24835426e-18, 5.00000000e-01, 1.00000000e+00])
    """
    fname = "vl_nnsoftplus"
    dzdy, _ = _derivative_and_options(fname, args, kwargs, {})
    return _elementwise(fname, _Activation.SOFTPLUS, x, dzdy)


def vl_nntanh(x, *args, **kwargs):
    """Hyperbolic tangent: ``y = tanh(x)``; ``dzdx = dzdy * (1 - tanh(x)^2)``.

    Not a MatConvNet block (MatConvNet users wrote it as a custom layer); it follows MatConvNet's
    conventions.

    Call forms::

        y = vl_nntanh(x)
        dzdx = vl_nntanh(x, dzdy)      # or vl_nntanh(x, dzdy=dzdy)

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is given.
    ValueError
        If dzdy's shape differs from x's. (An empty x gives an empty result.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nntanh
    >>> x = np.array([-1.0, 0.0, np.inf])
    >>> vl_nntanh(x)
    array([-0.76159416,  0.        ,  1.        ])
    >>> vl_nntanh(x, np.ones_like(x))
    array([0.41997434, 1.        , 0.        ])
    """
    fname = "vl_nntanh"
    dzdy, _ = _derivative_and_options(fname, args, kwargs, {})
    return _elementwise(fname, _Activation.TANH, x, dzdy)


def vl_nnsilu(x, *args, **kwargs):
    """Sigmoid linear unit (swish): ``y = x * sigmoid(x)``.

    Not a MatConvNet block (Elfwing et al., 2018; Ramachandran et al., 2017, with beta 1); it
    follows MatConvNet's conventions. ``dzdx = dzdy * s * (1 + x * (1 - s))`` with
    ``s = sigmoid(x)``. At ``x = -inf`` both are NaN (``-inf * 0``), as PyTorch's ``silu``.

    Call forms::

        y = vl_nnsilu(x)
        dzdx = vl_nnsilu(x, dzdy)      # or vl_nnsilu(x, dzdy=dzdy)

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is given.
    ValueError
        If dzdy's shape differs from x's. (An empty x gives an empty result.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnsilu
    >>> x = np.array([-1.0, 0.0, 2.0])
    >>> vl_nnsilu(x)
    array([-0.26894142,  0.        ,  1.76159416])
    >>> vl_nnsilu(x, np.ones_like(x))
    array([0.07232949, 0.5       , 1.09078425])
    """
    fname = "vl_nnsilu"
    dzdy, _ = _derivative_and_options(fname, args, kwargs, {})
    return _elementwise(fname, _Activation.SILU, x, dzdy)


def vl_nngelu(x, *args, **kwargs):
    """Gaussian error linear unit: ``y = x * Phi(x)``, Phi the standard normal distribution function.

    Not a MatConvNet block (Hendrycks and Gimpel, 2016); it follows MatConvNet's conventions.
    By default the exact form, ``Phi(x) = erfc(-x / sqrt(2)) / 2`` (``(1 + erf(x / sqrt(2))) / 2``
    without its cancellation for x << 0), and ``dzdx = dzdy * (Phi(x) + x * phi(x))``, phi the
    normal density. ``'Approximate', 'tanh'`` gives the tanh approximation instead (as PyTorch's
    ``gelu(x, approximate='tanh')``): ``y = x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))``
    and its exact derivative. At ``x = -inf`` y and dzdx are NaN (``-inf * 0``), as in PyTorch.

    Call forms::

        y = vl_nngelu(x)
        y = vl_nngelu(x, [], 'Approximate', 'tanh')      # or vl_nngelu(x, approximate='tanh')
        dzdx = vl_nngelu(x, dzdy, 'Approximate', 'tanh')

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.
    Approximate : 'none'
        ``'none'`` (the exact erf form) or ``'tanh'``, in any case.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is unknown.
    ValueError
        If dzdy's shape differs from x's, or Approximate is neither 'none' nor 'tanh'. (An empty x
        gives an empty result.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nngelu
    >>> x = np.array([-1.0, 0.0, 2.0])
    >>> vl_nngelu(x)
    array([-0.15865525,  0.        ,  1.95449974])
    >>> vl_nngelu(x, [], 'Approximate', 'tanh')
    array([-0.15880801,  0.        ,  1.95459769])
    >>> vl_nngelu(x, np.ones_like(x))
    array([-0.08331547,  0.5       ,  1.0852318 ])
    """
    fname = "vl_nngelu"
    dzdy, opts = _derivative_and_options(fname, args, kwargs, GELU_OPTIONS)
    kind = _Activation.GELU_TANH if opts["approximate"] == "tanh" else _Activation.GELU
    return _elementwise(fname, kind, x, dzdy)


def vl_nnclippedrelu(x, *args, **kwargs):
    """Clipped ReLU: ``y = min(max(x, 0), ceiling)``; ReLU6 with the default ceiling.

    Not a MatConvNet block; it follows MatConvNet's conventions, and is named as MATLAB's
    ``clippedReluLayer(ceiling)``. ``dzdx = dzdy`` where ``0 < x < ceiling`` and 0 elsewhere (the
    slope at both kinks is 0, as ``vl_nnrelu``'s at 0 and PyTorch's ``relu6`` and ``hardtanh``).
    NaN in x gives NaN in y and 0 slope.

    Call forms::

        y = vl_nnclippedrelu(x)                               # ReLU6
        y = vl_nnclippedrelu(x, [], 'Ceiling', ceiling)       # or vl_nnclippedrelu(x, ceiling=ceiling)
        dzdx = vl_nnclippedrelu(x, dzdy, 'Ceiling', ceiling)

    Parameters
    ----------
    x : ndarray, float32 or float64, any shape
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.
    Ceiling : 6
        The largest output, at least 0 (inf gives ReLU). It is rounded to x's type in y.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is unknown or not a
        number.
    ValueError
        If dzdy's shape differs from x's, or Ceiling is NaN or negative. (An empty x gives an empty
        result.)

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnclippedrelu
    >>> x = np.array([-1.0, 3.0, 8.0])
    >>> vl_nnclippedrelu(x)
    array([0., 3., 6.])
    >>> vl_nnclippedrelu(x, np.ones_like(x), 'Ceiling', 4)
    array([0., 1., 0.])
    """
    fname = "vl_nnclippedrelu"
    dzdy, opts = _derivative_and_options(fname, args, kwargs, CLIPPED_RELU_OPTIONS)
    return _elementwise(fname, _Activation.CLIPPED_RELU, x, dzdy, opts["ceiling"])

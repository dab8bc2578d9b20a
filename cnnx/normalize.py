"""Normalisation blocks: local response normalisation across channels (``vl_nnnormalize``), the
norm-dependent offset (``vl_nnnoffset``), spatial normalisation (``vl_nnspnorm``) and Lp
normalisation (``vl_nnnormalizelp``)."""
import math

import numpy as np

from ._checks import as_float_array, common_dtype, fortran4, like, out_shape, shape4
from ._ext import normalize as _kernels
from ._options import INT_OPTION_LIMIT, Option, parse_options, real_number, take_derivative, whole_numbers
from ._threads import threads_for
from .pool import vl_nnpool


class ParamVector:
    """The rule of a block's PARAM vector: ``len(names)`` finite real numbers, those at the
    positions ``whole`` whole numbers from 1 to below 2^62 (the kernels' integer limit).

    The blocks call :meth:`parse` with their name and ``'PARAM'``; the layer kinds call it with the
    block class and ``'param'``, so that both word an error alike.

    Examples
    --------
    >>> from cnnx.normalize import LRN_PARAM
    >>> LRN_PARAM.parse('vl_nnnormalize', 'PARAM', [5, 1, 2e-5, 0.75])
    (5, 1.0, 2e-05, 0.75)
    """

    def __init__(self, names, whole=()):
        self.names = tuple(names)
        self.whole = tuple(whole)
        integers = " and ".join(self.names[i] for i in self.whole)
        kind = "a whole number" if len(self.whole) == 1 else "whole numbers"
        self.expected = (f"{len(self.names)} finite real numbers [{' '.join(self.names)}]"
                         + (f" with {integers} {kind} from 1 to 2^62 - 1" if self.whole else ""))

    def parse(self, fname, label, value):
        """The numbers of ``value`` (any sequence or array of them) as a tuple: ints at the whole
        positions, floats elsewhere; a TypeError (not numbers) or ValueError naming ``fname`` and
        ``label``."""
        def fail(kind):
            raise kind(f"{fname}: {label} must be {self.expected}, got {_shown(value)}") from None

        try:
            items = np.asarray(value, dtype=object).reshape(-1).tolist()
        except (TypeError, ValueError):
            fail(TypeError)
        if any(isinstance(v, (str, bytes, bool, np.bool_)) or not isinstance(v, (int, float, np.number))
               or isinstance(v, complex) or np.iscomplexobj(v) for v in items):
            fail(TypeError)
        if len(items) != len(self.names):
            fail(ValueError)
        numbers = []
        for i, v in enumerate(items):
            try:
                number = real_number(fname, label, v, finite=True)
            except ValueError:
                fail(ValueError)
            if i in self.whole:
                exact = int(v) if isinstance(v, (int, np.integer)) else number  # 2^62 - 1 is no double
                if exact != math.trunc(exact) or not 1 <= exact < INT_OPTION_LIMIT:
                    fail(ValueError)
                number = int(exact)
            numbers.append(number)
        return tuple(numbers)


def _shown(value):
    """A PARAM value as an error message shows it: the numbers of an array as a list."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size <= 8:
        return repr(value.reshape(-1).tolist())
    return repr(value)


LRN_PARAM = ParamVector(("N", "KAPPA", "ALPHA", "BETA"), whole=(0,))
NOFFSET_PARAM = ParamVector(("K", "ALPHA"))
SPNORM_PARAM = ParamVector(("PH", "PW", "ALPHA", "BETA"), whole=(0, 1))


def vl_nnnormalize(x, param, *args, **kwargs):
    """Local response normalisation (LRN) across channels.

    Call forms::

        y = vl_nnnormalize(x, param)
        dzdx = vl_nnnormalize(x, param, dzdy)     # or vl_nnnormalize(x, param, dzdy=dzdy)

    With ``param = [N, kappa, alpha, beta]``, each value is divided by a power of the sum of
    squares over a window of N channels around its own:
    ``y[i, j, k, n] = x[i, j, k, n] * L[i, j, k, n]^-beta``,
    ``L[i, j, k, n] = kappa + alpha * sum_{q in Q(k)} x[i, j, q, n]^2``, where (0-based channels)
    ``Q(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)]`` clipped to the C channels. N >= 2C - 1 makes
    every window hold all the channels (an L2 normalisation). Backward gives
    ``dzdx[q] = dzdy[q] L[q]^-beta - 2 alpha beta x[q] sum_{t : q in Q(t)} dzdy[t] x[t] L[t]^(-beta-1)``.
    Caffe's LRN parameters are ``[N, kappa, N * alpha, beta]`` in this convention (PyTorch's
    ``local_response_norm(size=N, alpha=N * alpha, beta, k=kappa)`` also divides alpha by N; its
    window for an even N is the mirror image of this one).

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Input.
    param : sequence of 4 numbers
        ``[N, kappa, alpha, beta]``: N a whole number >= 1 (the window size), the others finite.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, PARAM is not numbers, or an
        option is given (the block has none; MatConvNet's 'Verbose' only prints).
    ValueError
        If x does not have 2 to 4 dimensions, dzdy's shape differs from x's, or PARAM does not
        hold 4 finite numbers with N a whole number >= 1 (MatConvNet truncates a fractional N).

    Notes
    -----
    cnnx computes ``L^-beta`` with the exact power, in double, and rounds once to x's type.
    MatConvNet's CPU code evaluates it with a fast approximation (cubic polynomials for log2 and
    exp2, in single and double precision alike) whose relative error is about 0.2 % on average
    and up to about 0.35 %, so cnnx's results differ from MatConvNet-CPU's by up to that much
    (MatConvNet's GPU code uses the exact power, as cnnx does). The window sums are exact sums of
    the window's squares (MatConvNet keeps a running sum, adding and subtracting, in x's type).
    A negative L (kappa or alpha < 0) gives NaN, as a real power of a negative number.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnnormalize
    >>> x = np.array([3.0, 4.0]).reshape(1, 1, 2)
    >>> vl_nnnormalize(x, [3, 0, 1, 0.5]).ravel()        # N >= 2C - 1, kappa 0: L2 normalisation
    array([0.6, 0.8])
    >>> vl_nnnormalize(x, [1, 1, 1, 1]).ravel()           # x / (1 + x^2)
    array([0.3       , 0.23529412])
    """
    fname = "vl_nnnormalize"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    parse_options(fname, args, kwargs, {})  # no options: reports any given
    x = as_float_array(x, "X", fname)
    height, width, channels, images = shape4(x, "X", fname)
    depth, kappa, alpha, beta = LRN_PARAM.parse(fname, "PARAM", param)
    dims = (height * width, channels, images)
    x3 = fortran4(x, dims)
    dzdy3 = x3 if dzdy is None else fortran4(like(dzdy, "DZDY", fname, x, "X"), dims)  # x3: not read
    out = np.empty(x.shape, dtype=x.dtype, order="F")
    _kernels.lrn(x3, dzdy3, out.reshape(dims, order="F"), dzdy is not None, depth, kappa, alpha, beta,
                 threads_for(x.size))
    return out


def vl_nnnoffset(x, param, *args, **kwargs):
    """Norm-dependent offset: subtract from every value a power of its pixel's squared norm.

    Call forms::

        y = vl_nnnoffset(x, param)
        dzdx = vl_nnnoffset(x, param, dzdy)       # or vl_nnnoffset(x, param, dzdy=dzdy)

    With ``param = [k, alpha]``: ``y[i, j, c, n] = x[i, j, c, n] - k * L[i, j, n]^alpha``, where
    ``L = max(sum_c x[i, j, c, n]^2, 1e-8)``. Backward gives
    ``dzdx = dzdy - 2 k alpha x (sum_c dzdy[i, j, c, n]) L^(alpha - 1)`` (MatConvNet's formula,
    which ignores the floor at 1e-8; ``dagnn.NormOffset``'s default param is ``[1, 0.5]``).

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Input.
    param : sequence of 2 numbers
        ``[k, alpha]``, finite.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, PARAM is not numbers, or an
        option is given (the block has none).
    ValueError
        If x does not have 2 to 4 dimensions, dzdy's shape differs from x's, or PARAM does not
        hold 2 finite numbers.

    Notes
    -----
    The sums over channels and the power run in double; results are rounded once to x's type
    (MatConvNet computes in x's type). A NaN at a pixel makes its L NaN (MATLAB's ``max`` would
    replace it by the floor), so all of that pixel's outputs are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnnoffset
    >>> x = np.array([3.0, 4.0]).reshape(1, 1, 2)
    >>> vl_nnnoffset(x, [1, 0.5]).ravel()                 # x - |x|
    array([-2., -1.])
    """
    fname = "vl_nnnoffset"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    parse_options(fname, args, kwargs, {})  # no options: reports any given
    x = as_float_array(x, "X", fname)
    height, width, channels, images = shape4(x, "X", fname)
    scale, power = NOFFSET_PARAM.parse(fname, "PARAM", param)
    dims = (height * width, channels, images)
    x3 = fortran4(x, dims)
    dzdy3 = x3 if dzdy is None else fortran4(like(dzdy, "DZDY", fname, x, "X"), dims)  # x3: not read
    out = np.empty(x.shape, dtype=x.dtype, order="F")
    _kernels.noffset(x3, dzdy3, out.reshape(dims, order="F"), dzdy is not None, scale, power, threads_for(x.size))
    return out


def vl_nnspnorm(x, param, *args, **kwargs):
    """Spatial normalisation: divide every value by a power of the mean square around it.

    Call forms::

        y = vl_nnspnorm(x, param)
        dzdx = vl_nnspnorm(x, param, dzdy)        # or vl_nnspnorm(x, param, dzdy=dzdy)

    With ``param = [PH, PW, alpha, beta]``: ``y = x * (1 + alpha * n2)^-beta``, where ``n2`` is the
    mean of ``x^2`` over the PH x PW window around each pixel, within its channel, over the window's
    part inside the image (MatConvNet's help says the sum; its code, and this, take the mean). The
    window spans rows ``i - floor((PH-1)/2)`` to ``i + ceil((PH-1)/2)``, and likewise columns.
    Backward gives ``dzdx = f^-beta dzdy - 2 alpha beta x t``, ``f = 1 + alpha n2`` and ``t`` the
    adjoint of the window mean applied to ``f^(-beta-1) dzdy x``. Both run as MatConvNet's do,
    through average pooling (``vl_nnpool`` with stride 1 and padding ``[floor((PH-1)/2),
    ceil((PH-1)/2), floor((PW-1)/2), ceil((PW-1)/2)]``, which leaves the padding out of the mean).

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Input.
    param : sequence of 4 numbers
        ``[PH, PW, alpha, beta]``: PH and PW whole numbers >= 1, alpha and beta finite
        (``dagnn.SpatialNorm``'s default is ``[2, 2, 10, 2]``).
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, PARAM is not numbers, or an
        option is given (the block has none).
    ValueError
        If x does not have 2 to 4 dimensions, dzdy's shape differs from x's, or PARAM does not
        hold 4 finite numbers with whole PH, PW >= 1 (beyond the image they are what pooling takes).

    Notes
    -----
    The window means are ``vl_nnpool``'s, in x's type; ``f`` and its powers are computed in double
    and the results rounded once to x's type.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnspnorm
    >>> x = np.full((2, 2), 2.0)
    >>> vl_nnspnorm(x, [3, 3, 0.75, 0.5])                 # 2 / sqrt(1 + 0.75 * 4)
    array([[1., 1.],
           [1., 1.]])
    """
    fname = "vl_nnspnorm"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    parse_options(fname, args, kwargs, {})  # no options: reports any given
    x = as_float_array(x, "X", fname)
    shape4(x, "X", fname)
    pool_h, pool_w, alpha, beta = SPNORM_PARAM.parse(fname, "PARAM", param)
    if dzdy is not None:
        dzdy = like(dzdy, "DZDY", fname, x, "X")
    top, left = (pool_h - 1) // 2, (pool_w - 1) // 2
    window = dict(method="avg", pad=(top, pool_h - 1 - top, left, pool_w - 1 - left))
    squares = x * x

    def window_means(*dzdy):  # or their adjoint, given dzdy; x's shape (vl_nnpool makes a 2-D x 3-D)
        try:
            return vl_nnpool(squares, [pool_h, pool_w], *dzdy, **window).reshape(x.shape).astype(np.float64)
        except ValueError as error:  # a window too large for the pooling kernel
            raise ValueError(f"{fname}: PARAM's window {pool_h} x {pool_w}: {error}") from None

    level = 1 + alpha * window_means()
    if dzdy is None:
        return np.asfortranarray(level ** -beta * x, dtype=x.dtype)
    weighted = (level ** (-beta - 1) * dzdy * x).astype(x.dtype)
    dzdx = level ** -beta * dzdy - (2 * alpha * beta) * (x * window_means(weighted))
    return np.asfortranarray(dzdx, dtype=x.dtype)


_NORMALIZELP_OPTIONS = {
    "epsilon": Option("float", 1e-2, finite=True),
    "exponent": Option("float", None, finite=True),
    "p": Option("float", None, finite=True, display="P"),
    "dimensions": Option("any", None),
    "spatial": Option("flag", False),
    "norms": Option("any", None),
}


def _reduced_dimensions(fname, value):
    """DIMENSIONS as a sorted tuple of 0-based axes (1-based whole numbers from 1 to 4 given)."""
    message = f"{fname}: Dimensions must be whole numbers from 1 to 4 (the dimensions of X to reduce), got {value!r}"
    try:
        dims = whole_numbers(fname, "Dimensions", value)
    except (TypeError, ValueError) as error:
        raise type(error)(message) from None
    if not dims or min(dims) < 1 or max(dims) > 4:
        raise ValueError(message)
    return tuple(sorted({d - 1 for d in dims}))


def vl_nnnormalizelp(x, *args, **kwargs):
    """Lp normalisation: divide x by its Lp norms over some dimensions (by default the channels).

    Call forms::

        y, norms = vl_nnnormalizelp(x, 'Epsilon', e, 'P', p, 'Dimensions', dims)   # or keywords
        y, norms = vl_nnnormalizelp(x, 'Norms', norms)           # with given norms
        dzdx = vl_nnnormalizelp(x, dzdy, ...)                     # or vl_nnnormalizelp(x, dzdy=dzdy, ...)

    ``norms = (sum_{dims} x^p + epsilon)^(1/p)`` (sums over the dimensions ``Dimensions``, all
    other indices fixed) and ``y = x / norms``, broadcast. Backward gives
    ``dzdx = dzdy / norms - (sum_{dims} dzdy x) x^(p-1) / norms^(p+1)``. The values are raised to
    the power p as they are, without an absolute value (MatConvNet's rule), so an odd or
    fractional p is only meaningful for non-negative x. This is MatConvNet's MEX function, which
    shadows its M-file of the same name; MatConvNet has no layer for it.

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Input.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.
    Epsilon : 0.01
        Added to the sum of powers; finite.
    Exponent : 2
        The exponent p, finite and not 0. ``P`` is another name of it (give one of the two).
    Dimensions : [3]
        The 1-based dimensions (1 to 4, any subset) to reduce over.
    Spatial : false
        A flag (no value in the name/value form; ``spatial=True`` as a keyword): reduce over
        dimensions [1 2] (give it or Dimensions, not both).
    Norms : None
        Norms to use instead of computing them, in forward and backward: as many elements of x's
        dtype as ``norms`` has (any shape; read in column order).

    Returns
    -------
    y, norms : ndarray
        Forward outputs: y shaped like x; the norms (computed or given), shaped like x with the
        reduced dimensions set to 1 (3-D when x is).
    dzdx : ndarray
        Backward output, shaped like x.

    Raises
    ------
    TypeError
        If x, dzdy or Norms is not float32/float64, their dtypes differ, an option is unknown or
        of the wrong type, or both Exponent and P (or Spatial and Dimensions) are given.
    ValueError
        If x does not have 2 to 4 dimensions, dzdy's shape differs from x's, Norms has the wrong
        number of elements, Epsilon or the exponent is not finite, the exponent is 0, or Dimensions
        holds anything but whole numbers from 1 to 4.

    Notes
    -----
    The sums and powers run in double, the norms are rounded to x's type and y and dzdx are
    computed from the rounded norms, as MatConvNet does; MatConvNet sums in x's type.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnnormalizelp
    >>> x = np.array([3.0, 4.0]).reshape(1, 1, 2)
    >>> y, norms = vl_nnnormalizelp(x, epsilon=0)
    >>> y.ravel(), norms
    (array([0.6, 0.8]), array([[[5.]]]))
    """
    fname = "vl_nnnormalizelp"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    opts = parse_options(fname, args, kwargs, _NORMALIZELP_OPTIONS)
    if opts["exponent"] is not None and opts["p"] is not None:
        raise TypeError(f"{fname}: give the exponent as Exponent or as P, not both")
    power = next((p for p in (opts["exponent"], opts["p"]) if p is not None), 2.0)
    if power == 0:
        raise ValueError(f"{fname}: the exponent (Exponent or P) must not be 0")
    if opts["spatial"] and opts["dimensions"] is not None:
        raise TypeError(f"{fname}: give Spatial or Dimensions, not both")
    reduced = (0, 1) if opts["spatial"] else _reduced_dimensions(fname, [3] if opts["dimensions"] is None
                                                                 else opts["dimensions"])
    x = as_float_array(x, "X", fname)
    x4 = fortran4(x, shape4(x, "X", fname))
    kept = tuple(d for d in range(4) if d not in reduced)
    norms_shape = tuple(1 if d in reduced else x4.shape[d] for d in range(4))
    rows = int(np.prod([x4.shape[d] for d in reduced]))
    columns = int(np.prod(norms_shape))
    if dzdy is not None:
        dzdy = like(dzdy, "DZDY", fname, x, "X")
    norms = np.empty(columns, dtype=x.dtype)
    given = opts["norms"]
    if given is not None:
        given = as_float_array(given, "NORMS", fname)
        common_dtype(fname, X=x, NORMS=given)
        if given.size != columns:
            raise ValueError(f"{fname}: NORMS has {given.size} elements but X's norms have {columns} "
                             f"(shape {out_shape(norms_shape, x.ndim)})")
        norms[:] = given.reshape(-1, order="F")

    def as_columns(a):  # the reduced dimensions first: column k holds the values of norm k
        return np.asfortranarray(a.transpose(reduced + kept)).reshape((rows, columns), order="F")

    x2 = as_columns(x4)
    dzdy2 = x2 if dzdy is None else as_columns(fortran4(dzdy, x4.shape))  # x2: not read
    out2 = np.empty((rows, columns), dtype=x.dtype, order="F")
    _kernels.lp(x2, dzdy2, norms, out2, given is None, dzdy is not None, power, opts["epsilon"],
                threads_for(x.size))
    moved = tuple(x4.shape[d] for d in reduced + kept)
    out = np.asfortranarray(out2.reshape(moved, order="F").transpose(np.argsort(reduced + kept))).reshape(
        x.shape, order="F")
    if dzdy is not None:
        return out
    return out, norms.reshape(out_shape(norms_shape, x.ndim), order="F")

"""Normalisation blocks: cross-channel local response normalisation, ``vl_nnnormalize``."""
import math

import numpy as np

from ._checks import as_float_array, fortran4, like, shape4
from ._ext import normalize as _kernels
from ._options import INT_OPTION_LIMIT, parse_options, real_number, take_derivative
from ._threads import threads_for


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
        self.expected = (f"{len(self.names)} finite real numbers [{' '.join(self.names)}]"
                         + (f" with {integers} whole numbers from 1 to 2^62 - 1" if self.whole else ""))

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
                if number != math.trunc(number) or not 1 <= number < INT_OPTION_LIMIT:
                    fail(ValueError)
                number = int(v) if isinstance(v, (int, np.integer)) else int(number)
            numbers.append(number)
        return tuple(numbers)


def _shown(value):
    """A PARAM value as an error message shows it: the numbers of an array as a list."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size <= 8:
        return repr(value.reshape(-1).tolist())
    return repr(value)


LRN_PARAM = ParamVector(("N", "KAPPA", "ALPHA", "BETA"), whole=(0,))


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

"""Softmax over channels, ``vl_nnsoftmax``, and the logistic sigmoid, ``vl_nnsigmoid``."""
import numpy as np

from ._checks import as_float_array, fortran4, like, shape4
from ._ext import softmax as _kernels
from ._options import parse_options, take_derivative
from ._threads import threads_for


def vl_nnsoftmax(x, *args, **kwargs):
    """Softmax over the channels, at every pixel of every image.

    Call forms::

        y = vl_nnsoftmax(x)
        dzdx = vl_nnsoftmax(x, dzdy)              # or vl_nnsoftmax(x, dzdy=dzdy)

    ``y[i, j, :, n] = exp(x[i, j, :, n] - m) / sum_k exp(x[i, j, k, n] - m)`` with m the largest of
    ``x[i, j, :, n]`` (which leaves y unchanged and keeps exp from overflowing). Backward gives
    ``dzdx = y * (dzdy - sum_k dzdy[..., k, :] * y[..., k, :])``, y recomputed from x.

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Input; the softmax runs along the third dimension (C, the classes).
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.

    Returns
    -------
    y or dzdx : ndarray, shape and dtype of x, Fortran-ordered

    Raises
    ------
    TypeError
        If x or dzdy is not float32/float64, their dtypes differ, or an option is given (the
        block has none).
    ValueError
        If x does not have 2 to 4 dimensions, or dzdy's shape differs from x's. (An empty x gives
        an empty result.)

    Notes
    -----
    Every value is computed in double and rounded once to x's type (MatConvNet computes in x's
    type), so float32 results can differ from MatConvNet's in the last bits. A NaN at a pixel
    makes all of that pixel's outputs NaN, as in MatConvNet; so does +inf (inf - inf).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnsoftmax
    >>> x = np.log(np.array([1.0, 3.0])).reshape(1, 1, 2)
    >>> vl_nnsoftmax(x).ravel()
    array([0.25, 0.75])
    >>> vl_nnsoftmax(x, np.array([1.0, 0.0]).reshape(1, 1, 2)).ravel()
    array([ 0.1875, -0.1875])
    """
    fname = "vl_nnsoftmax"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    parse_options(fname, args, kwargs, {})  # no options: reports any given
    x = as_float_array(x, "X", fname)
    height, width, channels, images = shape4(x, "X", fname)
    dims = (height * width, channels, images)
    x3 = fortran4(x, dims)
    out = np.empty(x.shape, dtype=x.dtype, order="F")
    if dzdy is None:
        dzdy3 = x3  # not read
    else:
        dzdy3 = fortran4(like(dzdy, "DZDY", fname, x, "X"), dims)
    _kernels.softmax(x3, dzdy3, out.reshape(dims, order="F"), dzdy is not None, threads_for(x.size))
    return out


def vl_nnsigmoid(x, *args, **kwargs):
    """Logistic sigmoid, elementwise: ``y = 1 / (1 + exp(-x))``.

    Call forms::

        y = vl_nnsigmoid(x)
        dzdx = vl_nnsigmoid(x, dzdy)              # or vl_nnsigmoid(x, dzdy=dzdy)

    Backward gives ``dzdx = dzdy * y * (1 - y)``, y recomputed from x.

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
        If x or dzdy is not float32/float64, their dtypes differ, or an option is given (the
        block has none).
    ValueError
        If dzdy's shape differs from x's. (An empty x gives an empty result.)

    Notes
    -----
    Computed in double and rounded once to x's type (MatConvNet computes in x's type). Large
    negative x gives 0 and large positive x gives 1, without overflow warnings; NaN gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnsigmoid
    >>> x = np.array([[0.0, np.log(3.0)]])
    >>> vl_nnsigmoid(x)
    array([[0.5 , 0.75]])
    >>> vl_nnsigmoid(x, np.ones_like(x))
    array([[0.25  , 0.1875]])
    """
    fname = "vl_nnsigmoid"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    parse_options(fname, args, kwargs, {})  # no options: reports any given
    x = as_float_array(x, "X", fname)
    if dzdy is not None:
        dzdy = np.asfortranarray(like(dzdy, "DZDY", fname, x, "X"))
    out = np.empty(x.shape, dtype=x.dtype, order="F")
    _kernels.sigmoid(np.asfortranarray(x), dzdy, out, threads_for(x.size))
    return out

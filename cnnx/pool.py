"""MatConvNet's pooling block ``vl_nnpool``: max or average pooling of each channel."""
import numpy as np

from ._checks import as_float_array, check_elements, common_dtype, fortran4, out_shape, shape4
from ._ext import pool as _kernel
from ._options import Option, parse_options, take_derivative, validate_value
from ._shapes import window_output_size
from ._threads import POOL_ELEMENTS_PER_THREAD, threads_for_work

_FNAME = "vl_nnpool"
# The kernel keeps positions inside a window as C ints.
_MAX_POOL = 2**31 - 2

_OPTIONS = {
    "pad": Option("pad4", (0, 0, 0, 0)),
    "stride": Option("pair", (1, 1)),
    "method": Option("choice", "max", choices=("max", "avg")),
}


def vl_nnpool(x, pool, *args, **kwargs):
    """Max or average pooling of every channel of X, MatConvNet's ``vl_nnpool``.

    Call forms::

        Y = vl_nnpool(X, POOL, 'Pad', PAD, 'Stride', STRIDE, 'Method', METHOD)
        DZDX = vl_nnpool(X, POOL, DZDY, ...)
        Y = vl_nnpool(X, POOL, pad=PAD, stride=STRIDE, method=METHOD)
        DZDX = vl_nnpool(X, POOL, dzdy=DZDY, ...)

    The window of output ``(i, j)`` (0-based) covers input rows
    ``[i*SY - PT, i*SY - PT + PH)`` and columns ``[j*SX - PL, j*SX - PL + PW)``, clipped to the
    input: padding cells are ignored, not zeros. Max pooling takes the maximum of the clipped
    window; average pooling divides its sum by the clipped area. The output size is
    ``YH = floor((H + PT + PB - PH) / SY) + 1`` (and likewise YW), never rounded up; an asymmetric pad
    such as ``[0 1 0 1]`` gives Caffe's rounded-up sizes.

    In the backward pass each DZDY element of a max window goes entirely to the window's first
    maximum in column-major order (columns left to right, rows top to bottom within a column);
    an average window spreads it evenly over its clipped area. Overlapping windows accumulate.

    A NaN counts as larger than every number: a max window holding a NaN gives NaN, and its
    derivative goes to the window's first NaN in column-major order. Average pooling propagates
    NaN and inf as arithmetic does.

    Parameters
    ----------
    x : array_like, (H, W, C, N) float32 or float64
        Input. A 2-D or 3-D array is taken as N = 1 (and C = 1), as MATLAB drops trailing
        singleton dimensions. Any memory order is accepted.
    pool : int or sequence of 2 ints
        Window size, ``PH`` (square) or ``[PH, PW]``, each from 1 to 2^31 - 2.
    dzdy : array_like, (YH, YW, C, N), optional
        Derivative of the objective with respect to the output: the first positional argument
        after ``pool`` (unless it is a string) or the keyword ``dzdy``. Same dtype as ``x``. ``None``
        or ``[]`` means a forward call.
    Pad : 0
        ``P`` or ``[PT, PB, PL, PR]`` (top, bottom, left, right), each at least 0 and smaller than
        the pool size in its direction.
    Stride : 1
        ``S`` or ``[SY, SX]``, each at least 1 and below 2^62.
    Method : 'max'
        ``'max'`` or ``'avg'``.

    Options are MatConvNet name/value pairs (``'Pad', [0, 1, 0, 1]``; names case-insensitive) or
    Python keywords (``pad=...``).

    Returns
    -------
    y : ndarray, (YH, YW, C, N)
        Forward call: the pooled input, Fortran order, dtype of ``x``; 3-D if ``x`` was 2-D or 3-D.
    dzdx : ndarray, shape of ``x``
        Backward call: the derivative with respect to ``x``, Fortran order, dtype of ``x``.

    Raises
    ------
    TypeError
        If ``x`` or ``dzdy`` is not a float32/float64 array (integer, bool, complex), their dtypes
        differ, an option is unknown or given twice, or ``dzdy`` is given twice.
    ValueError
        If ``x`` or ``dzdy`` does not have 2 to 4 dimensions, ``x`` has zero height or width (zero
        channels or images give an empty result), the pool, stride or pad are out of range
        (pool < 1 or above 2^31 - 2, stride < 1, pad < 0, pad >= pool, values that are not whole
        numbers below 2^62), the pool is larger than the padded input, ``dzdy`` does not have
        the output's shape, or the method is not 'max' or 'avg'.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnpool
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4, order='F')
    >>> vl_nnpool(x, 2, 'Stride', 2)[:, :, 0]
    array([[ 5., 13.],
           [ 7., 15.]], dtype=float32)
    >>> vl_nnpool(x, 3, 'Stride', 2, 'Pad', [0, 1, 0, 1], 'Method', 'avg')[:, :, 0]
    array([[ 5. , 11. ],
           [ 6.5, 12.5]], dtype=float32)
    >>> vl_nnpool(x, 2, np.ones((2, 2), np.float32), stride=2)
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]], dtype=float32)
    """
    dzdy, args, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, args, kwargs, _OPTIONS)

    x = as_float_array(x, "X", _FNAME)
    height, width, channels, images = shape4(x, "X", _FNAME)
    pool_y, pool_x = validate_value(_FNAME, "POOL", Option("pair"), pool)
    if max(pool_y, pool_x) > _MAX_POOL:
        raise ValueError(f"{_FNAME}: POOL {[pool_y, pool_x]} is too large (at most {_MAX_POOL})")
    pad_top, pad_bottom, pad_left, pad_right = opts["pad"]
    stride_y, stride_x = opts["stride"]
    if pad_top >= pool_y or pad_bottom >= pool_y or pad_left >= pool_x or pad_right >= pool_x:
        raise ValueError(
            f"{_FNAME}: Pad {list(opts['pad'])} must be smaller than POOL {[pool_y, pool_x]} "
            "(top and bottom below PH, left and right below PW)"
        )
    if height == 0 or width == 0:
        raise ValueError(f"{_FNAME}: X has zero height or width ({x.shape}); there is nothing to pool")
    padded_h = height + pad_top + pad_bottom
    padded_w = width + pad_left + pad_right
    if pool_y > padded_h or pool_x > padded_w:
        raise ValueError(
            f"{_FNAME}: POOL {[pool_y, pool_x]} is larger than X with padding ({padded_h} x {padded_w})"
        )
    out_h, out_w = window_output_size(height, width, (pool_y, pool_x), opts["pad"], opts["stride"])
    check_elements(_FNAME, "the output", out_h, out_w, channels, images)
    planes = channels * images
    geometry = (height, width, out_h, out_w, pool_y, pool_x, stride_y, stride_x, pad_top, pad_left)
    average = opts["method"] == "avg"
    n_threads = threads_for_work(x.size, POOL_ELEMENTS_PER_THREAD, most=planes)

    x4 = fortran4(x, (height, width, channels, images))
    if dzdy is None:
        y = np.empty((out_h, out_w, channels, images), dtype=x.dtype, order="F")
        if planes:
            _kernel.forward(_flat(x4), _flat(y), planes, *geometry, average, n_threads)
        return y.reshape(out_shape(y.shape, x.ndim), order="F")

    dzdy = as_float_array(dzdy, "DZDY", _FNAME)
    common_dtype(_FNAME, X=x, DZDY=dzdy)
    expected = (out_h, out_w, channels, images)
    if shape4(dzdy, "DZDY", _FNAME) != expected:
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but the output of the pooling is {expected}")
    dy4 = fortran4(dzdy, expected)
    dx = np.empty((height, width, channels, images), dtype=x.dtype, order="F")
    if planes:
        _kernel.backward(_flat(x4), _flat(dy4), _flat(dx), planes, *geometry, average, n_threads)
    return dx.reshape(x.shape, order="F")


def _flat(arr):
    """The data of a Fortran-contiguous array as a 1-D view (no copy)."""
    return arr.reshape(-1, order="F")

"""MatConvNet's pooling block ``vl_nnpool``: max or average pooling of each channel."""
from dataclasses import dataclass

import numpy as np

from ._checks import as_float_array, check_elements, common_dtype, fortran4, input_size, out_shape, shape4
from ._ext import pool as _kernel
from ._options import Option, parse_options, take_derivative, validate_value
from ._shapes import window_output_size
from ._threads import POOL_ELEMENTS_PER_THREAD, threads_for_work

_FNAME = "vl_nnpool"
# The kernel keeps positions inside a window, and max pooling's winners inside a plane, as C ints.
_MAX_POOL = 2**31 - 2
_MAX_MAX_PLANE = 2**31 - 1

_OPTIONS = {
    "pad": Option("pad4", (0, 0, 0, 0)),
    "stride": Option("pair", (1, 1)),
    "method": Option("choice", "max", choices=("max", "avg")),
    "winners": Option("any", None),
    "inputsize": Option("any", None, display="InputSize"),
}


@dataclass(frozen=True, eq=False)
class PoolWinners:
    """Where the windows of a max pooling found their maxima: ``vl_nnpool(..., winners=True)``
    returns it with the output, and its backward call takes it (``winners=``) instead of finding
    them again in X, which it then no longer needs.

    Attributes
    ----------
    index : ndarray, (YH, YW, C, N) int32
        For each output, the index in its input plane (column-major, ``i + H*j``) of its window's
        first maximum in column-major order, the cell that receives its derivative.
    input_shape : tuple of int
        The shape of the forward call's X (that of DZDX).
    dtype : numpy.dtype
        The dtype of X.
    geometry : tuple
        The forward call's pool, pad and stride, which the backward call must repeat.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnpool
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4, order='F')
    >>> y, winners = vl_nnpool(x, 2, stride=2, winners=True)
    >>> winners.index[:, :, 0, 0]
    array([[ 5, 13],
           [ 7, 15]], dtype=int32)
    >>> vl_nnpool(None, 2, np.ones((2, 2), np.float32), stride=2, winners=winners)[:2, :2]
    array([[0., 0.],
           [0., 1.]], dtype=float32)
    """

    index: np.ndarray
    input_shape: tuple
    dtype: np.dtype
    geometry: tuple


def vl_nnpool(x, pool, *args, **kwargs):
    """Max or average pooling of every channel of X, MatConvNet's ``vl_nnpool``.

    Call forms::

        Y = vl_nnpool(X, POOL, 'Pad', PAD, 'Stride', STRIDE, 'Method', METHOD)
        DZDX = vl_nnpool(X, POOL, DZDY, ...)
        Y = vl_nnpool(X, POOL, pad=PAD, stride=STRIDE, method=METHOD)
        DZDX = vl_nnpool(X, POOL, dzdy=DZDY, ...)
        Y, WINNERS = vl_nnpool(X, POOL, ..., winners=True)       # max pooling (cnnx)
        DZDX = vl_nnpool(X, POOL, DZDY, ..., winners=WINNERS)    # X may be None
        DZDX = vl_nnpool(None, POOL, DZDY, ..., method='avg', input_size=X.shape)   # (cnnx)

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
    x : array_like, (H, W, C, N) float32 or float64, or None
        Input. A 2-D or 3-D array is taken as N = 1 (and C = 1), as MATLAB drops trailing
        singleton dimensions. Any memory order is accepted. None in a backward call with
        ``Winners`` or (average pooling) ``InputSize``, which stand in for it.
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
    Winners : None
        cnnx's, for max pooling. In a forward call, True also returns the :class:`PoolWinners`
        (where each window's maximum lies; the output then takes MatConvNet's choice between +0
        and -0 as well). In a backward call, those winners: the derivatives are routed to them
        with the bits of finding them again, and X is not read.
    InputSize : None
        cnnx's, for the backward call of average pooling with X None: X's shape, 2 to 4
        non-negative sizes (the backward pass of average pooling reads only the shape of X).

    Options are MatConvNet name/value pairs (``'Pad', [0, 1, 0, 1]``; names case-insensitive) or
    Python keywords (``pad=...``).

    Returns
    -------
    y : ndarray, (YH, YW, C, N)
        Forward call: the pooled input, Fortran order, dtype of ``x``; 3-D if ``x`` was 2-D or 3-D.
    winners : PoolWinners
        Forward call with ``Winners`` True: the winners, for the backward call.
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
        the output's shape, or the method is not 'max' or 'avg'; if ``Winners`` is given to
        average pooling, is not True or False in a forward call, is not the ``PoolWinners`` of
        a forward call of the same pool, pad, stride, dtype and X shape in a backward call, a
        max pooling's plane has 2^31 cells or more, or InputSize is given to another call than an
        average pooling's backward call with X None, or is not 2 to 4 non-negative sizes.

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
    winners = opts["winners"]
    if opts["inputsize"] is not None and (x is not None or dzdy is None or opts["method"] != "avg"):
        raise ValueError(f"{_FNAME}: InputSize is for the backward call of average pooling with X None")
    if winners is not None and opts["method"] != "max":
        raise ValueError(f"{_FNAME}: Winners are those of max pooling, but the Method is '{opts['method']}'")
    if dzdy is not None and winners is not None:
        return _route_to_winners(x, pool, dzdy, winners, opts)
    if dzdy is None and not isinstance(winners, (bool, np.bool_, type(None))):
        raise ValueError(f"{_FNAME}: Winners in a forward call must be True or False, got {type(winners).__name__}")

    if opts["inputsize"] is not None:
        shape = input_size(_FNAME, "InputSize", opts["inputsize"])
        dtype = as_float_array(dzdy, "DZDY", _FNAME).dtype
    else:
        x = as_float_array(x, "X", _FNAME)
        shape4(x, "X", _FNAME)
        shape, dtype = x.shape, x.dtype
    height, width, channels, images = tuple(shape) + (1,) * (4 - len(shape))
    geometry = _geometry(shape, height, width, pool, opts)
    out_h, out_w = geometry[2:4]
    check_elements(_FNAME, "the output", out_h, out_w, channels, images)
    if opts["method"] == "max" and height * width > _MAX_MAX_PLANE:
        raise ValueError(f"{_FNAME}: a max pooling's plane of X has {height} x {width} cells, "
                         f"more than {_MAX_MAX_PLANE}")
    planes = channels * images
    average = opts["method"] == "avg"
    n_threads = threads_for_work(height * width * planes, POOL_ELEMENTS_PER_THREAD, most=planes)

    x4 = None if x is None else fortran4(x, (height, width, channels, images))
    if dzdy is None:
        y = np.empty((out_h, out_w, channels, images), dtype=dtype, order="F")
        index = np.empty(y.shape, dtype=np.int32, order="F") if winners else None
        if planes:
            _kernel.forward(_flat(x4), _flat(y), None if index is None else _flat(index), planes, *geometry,
                            average, n_threads)
        y = y.reshape(out_shape(y.shape, x.ndim), order="F")
        if index is None:
            return y
        return y, PoolWinners(index, x.shape, x.dtype, _call_geometry(pool, opts))

    dzdy = as_float_array(dzdy, "DZDY", _FNAME)
    common_dtype(_FNAME, X=x, DZDY=dzdy)
    dy4 = _dzdy4(dzdy, (out_h, out_w, channels, images))
    dx = np.empty((height, width, channels, images), dtype=dtype, order="F")
    if planes:
        # average pooling does not read X (InputSize stands in for it): any array of the dtype will do
        _kernel.backward(_flat(dy4 if x4 is None else x4), _flat(dy4), _flat(dx), planes, *geometry, average,
                         n_threads)
    return dx.reshape(shape, order="F")


def _geometry(shape, height, width, pool, opts):
    """The kernels' geometry (H, W, YH, YW, PH, PW, SY, SX, PT, PL) of X's H x W planes (X of
    ``shape``), after checking POOL and the options against them."""
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
        raise ValueError(f"{_FNAME}: X has zero height or width ({shape}); there is nothing to pool")
    padded_h = height + pad_top + pad_bottom
    padded_w = width + pad_left + pad_right
    if pool_y > padded_h or pool_x > padded_w:
        raise ValueError(
            f"{_FNAME}: POOL {[pool_y, pool_x]} is larger than X with padding ({padded_h} x {padded_w})"
        )
    out_h, out_w = window_output_size(height, width, (pool_y, pool_x), opts["pad"], opts["stride"])
    return (height, width, out_h, out_w, pool_y, pool_x, stride_y, stride_x, pad_top, pad_left)


def _call_geometry(pool, opts):
    """What a backward call with winners must repeat of the forward call: pool, pad, stride."""
    return (validate_value(_FNAME, "POOL", Option("pair"), pool), tuple(opts["pad"]), tuple(opts["stride"]))


def _dzdy4(dzdy, expected):
    """DZDY as a Fortran (YH, YW, C, N) array, after checking that it has the output's shape."""
    if shape4(dzdy, "DZDY", _FNAME) != expected:
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but the output of the pooling is {expected}")
    return fortran4(dzdy, expected)


def _route_to_winners(x, pool, dzdy, winners, opts):
    """The backward call with the winners of the forward call: DZDX without reading X."""
    if not isinstance(winners, PoolWinners):
        raise ValueError(f"{_FNAME}: Winners in a backward call must be the PoolWinners of the forward call, "
                         f"got {type(winners).__name__}")
    geometry = _call_geometry(pool, opts)
    if geometry != winners.geometry:
        raise ValueError(f"{_FNAME}: the Winners are of pool, pad and stride {winners.geometry}, "
                         f"this call's are {geometry}")
    if x is not None and np.shape(x) != winners.input_shape:
        raise ValueError(f"{_FNAME}: X has shape {np.shape(x)} but the Winners are of an X of shape "
                         f"{winners.input_shape}")
    dzdy = as_float_array(dzdy, "DZDY", _FNAME)
    if dzdy.dtype != winners.dtype:
        raise TypeError(f"{_FNAME}: DZDY is {dzdy.dtype} but the Winners are of a {winners.dtype} X")
    out_h, out_w, channels, images = winners.index.shape
    dy4 = _dzdy4(dzdy, winners.index.shape)
    height, width = (tuple(winners.input_shape) + (1, 1))[:2]
    dx = np.empty((height, width, channels, images), dtype=dzdy.dtype, order="F")
    if dx.size:
        n_threads = threads_for_work(dx.size, POOL_ELEMENTS_PER_THREAD, most=channels * images)
        _kernel.route(_flat(dy4), _flat(winners.index), _flat(dx), channels * images, height, width, out_h,
                      out_w, n_threads)
    return dx.reshape(winners.input_shape, order="F")


def _flat(arr):
    """The data of a Fortran-contiguous array as a 1-D view (no copy)."""
    return arr.reshape(-1, order="F")

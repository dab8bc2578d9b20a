"""vl_nnroipool: region-of-interest pooling (MatConvNet's vl_nnroipool)."""
import numpy as np

from ._checks import as_float_array, check_elements, common_dtype, shape4
from ._ext import roipool as _kernel
from ._options import Option, parse_options, real_number, take_derivative
from ._threads import POOL_ELEMENTS_PER_THREAD, threads_for_work

_FNAME = "vl_nnroipool"

_OPTIONS = {
    "method": Option("choice", "max", choices=("max", "avg")),
    "subdivisions": Option("pair", (1, 1)),
    "transform": Option("any", 1.0),
}

# Transformed corners must be exact in double and their rounding fit the kernel's 64-bit integers.
_COORDINATE_LIMIT = 2.0**52


def roi_transform(value, fname=_FNAME, label="Transform"):
    """MatConvNet's Transform (1, 2 or 6 numbers) as its six doubles [T11 T21 T12 T22 T13 T23].

    A scalar T is ``u' = T (u - 1) + 1``, ``v' = T (v - 1) + 1``; [Tu Tv] scales u and v apart; six
    numbers are the 2 x 3 matrix in column order: ``u' = T11 u + T12 v + T13``, ``v' = T21 u + T22 v + T23``.
    """
    try:
        flat = np.asarray(value, dtype=object).reshape(-1, order="F")
    except ValueError:  # ragged sequences
        raise TypeError(f"{fname}: {label} must be 1, 2 or 6 real numbers, got {value!r}") from None
    numbers = [real_number(fname, label, v, finite=True) for v in flat]
    if len(numbers) == 6:
        return np.array(numbers)
    if len(numbers) not in (1, 2):
        raise ValueError(f"{fname}: {label} must have 1, 2 or 6 elements (a scale, [Tu Tv] or a 2 x 3 matrix), "
                         f"got {len(numbers)}")
    tu, tv = numbers[0], numbers[-1]
    return np.array([tu, 0.0, 0.0, tv, 1.0 - tu, 1.0 - tv])


def vl_nnroipool(x, rois, *args, **kwargs):
    """Pool each channel of X over the tiles of regions of interest (MatConvNet's vl_nnroipool).

    Call forms::

        y = vl_nnroipool(x, rois, 'Method', 'max', 'Subdivisions', [SH SW], 'Transform', T)
        dzdx = vl_nnroipool(x, rois, dzdy, ...)

    Region k is the column ``rois[:, k] = [t, u0, v0, u1, v1]``: image t (1-based) and the corners
    (u0, v0) (top left) and (u1, v1) (bottom right), 1-based and inclusive, u horizontal and v
    vertical. Both corners are first mapped by Transform (see ``Parameters``), then rounded half away
    from zero: the region covers rows ``round(v0') - 1 ... round(v1') - 1`` (0-based) and the
    columns likewise, at least one of each. It is cut into SH x SW tiles: tile (i, j) covers rows
    ``[floor(i h / SH), ceil((i + 1) h / SH))`` of the region's h rows, and columns likewise, clipped
    to the image; an empty tile gives 0 and no derivative. Max pooling takes the tile's maximum and
    gives its derivative to the first maximum (scanning columns, then rows within a column); average
    pooling takes ``sum * (1 / area)`` and spreads the derivative evenly over the tile.

    Parameters
    ----------
    x : ndarray, (H, W, C, N)
        Images, float32 or float64 (2 to 4 dimensions), H and W at least 1.
    rois : ndarray with 5 K elements, (5, K)
        The regions, x's dtype, any shape holding 5 K finite numbers (a 5 x K array). Each t must
        be a whole number in 1..N (MatConvNet clamps others into range; cnnx refuses them). K = 0
        regions give an empty y.
    dzdy : ndarray, (SH, SW, C, K), optional
        Derivative of the objective with respect to y. Given, the call runs backward.
    Method : 'max'
        'max' or 'avg'.
    Subdivisions : [1 1]
        Tiles [SH SW] per region, each >= 1 (a scalar for both).
    Transform : 1
        The map of the corners: a scalar T (``u' = T (u - 1) + 1``, ``v' = T (v - 1) + 1``),
        [Tu Tv] (u and v scaled apart), or 6 numbers, the 2 x 3 matrix in column order
        (``u' = T11 u + T12 v + T13``, ``v' = T21 u + T22 v + T23``), all finite.

    Returns
    -------
    y : ndarray, (SH, SW, C, K)
        Forward: the pooled tiles, Fortran-ordered, of x's dtype (always 4-D).
    dzdx : ndarray
        Backward: the derivative, shaped like x.

    Raises
    ------
    TypeError
        Arrays that are not float32/float64 or not of one dtype, an unknown option, a non-numeric
        Transform.
    ValueError
        Wrong dimensions, x with no height or width, rois whose size is not a multiple of 5, non-finite
        rois, an image index t not in 1..N, corners too far out to round (|u'|, |v'| >= 2^52),
        Subdivisions below 1, a Transform of other than 1, 2 or 6 finite numbers, a dzdy of the
        wrong shape.

    Notes
    -----
    NaN is the maximum of a tile (MatConvNet's ``std::max`` drops it), and a tile of only -inf gives
    its derivative to its first cell (MatConvNet's gives it to none), as ``vl_nnpool`` does. A scalar
    Subdivisions means both (MatConvNet's MEX reads the element after it, a missing ``break``), and
    no regions (K = 0) give an empty result (MatConvNet refuses them).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnroipool
    >>> x = np.arange(16.0).reshape(4, 4, order="F")        # x[i, j] = i + 4 j
    >>> rois = np.array([1.0, 2, 1, 4, 4])                  # image 1, columns 2..4, rows 1..4
    >>> vl_nnroipool(x, rois, 'Subdivisions', [2, 1])[:, :, 0, 0]
    array([[13.],
           [15.]])
    >>> vl_nnroipool(x, rois, method='avg')[0, 0, 0, 0]
    np.float64(9.5)
    >>> vl_nnroipool(x, rois, np.ones((1, 1, 1, 1)))
    array([[0., 0., 0., 0.],
           [0., 0., 0., 0.],
           [0., 0., 0., 0.],
           [0., 0., 0., 1.]])
    """
    dzdy, rest, kwargs = take_derivative(args, kwargs, _FNAME)
    opts = parse_options(_FNAME, rest, kwargs, _OPTIONS)
    transform = roi_transform(opts["transform"])
    SH, SW = opts["subdivisions"]
    x = as_float_array(x, "X", _FNAME)
    rois = as_float_array(rois, "ROIS", _FNAME)
    dzdy = as_float_array(dzdy, "DZDY", _FNAME, allow_none=True)
    common_dtype(_FNAME, X=x, ROIS=rois, DZDY=dzdy)
    H, W, C, N = shape4(x, "X", _FNAME)
    if min(H, W) == 0:
        raise ValueError(f"{_FNAME}: X has shape {x.shape}; H and W must be at least 1 (there must be pixels "
                         "to pool)")
    if rois.size % 5:
        raise ValueError(f"{_FNAME}: ROIS has {rois.size} elements; it must be a 5 x K array [t u0 v0 u1 v1] "
                         "(5 K elements)")
    columns = np.asarray(rois, dtype=np.float64).reshape(5, -1, order="F")
    K = columns.shape[1]
    if not np.isfinite(columns).all():
        raise ValueError(f"{_FNAME}: ROIS must hold finite numbers")
    images = columns[0]
    bad = (images != np.round(images)) | (images < 1) | (images > N)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{_FNAME}: ROIS[0, {k}] is image {images[k]:g}; image indices must be whole numbers "
                         f"in 1..{N} (X has {N} images)")
    matrix = transform.reshape(2, 3, order="F")  # [u'; v'] = matrix @ [u; v; 1]
    corners = [matrix @ np.vstack([columns[rows], np.ones(K)]) for rows in ([1, 2], [3, 4])]
    largest = max(np.abs(c).max() for c in corners) if K else 0.0
    if not largest < _COORDINATE_LIMIT:
        raise ValueError(f"{_FNAME}: ROIS has corners at {largest:g} after the Transform; they must be less "
                         "than 2^52 in magnitude")
    y_shape = (SH, SW, C, K)
    if dzdy is not None and shape4(dzdy, "DZDY", _FNAME) != y_shape:
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but Y has shape {y_shape}")

    average = opts["method"] == "avg"
    n_threads = threads_for_work(x.size + check_elements(_FNAME, "Y", *y_shape), POOL_ELEMENTS_PER_THREAD)
    flat_rois = np.asfortranarray(rois).reshape(-1, order="F")
    x1 = np.asfortranarray(x).reshape(-1, order="F")
    if dzdy is None:
        y = np.zeros(y_shape, x.dtype, order="F")
        if y.size:
            _kernel.forward(x1, flat_rois, transform, y.reshape(-1, order="F"), H, W, C, SH, SW, average, n_threads)
        return y
    dzdx = np.zeros(x.shape, x.dtype, order="F")
    if dzdy.size:
        _kernel.backward(x1, flat_rois, transform, np.asfortranarray(dzdy).reshape(-1, order="F"),
                         dzdx.reshape(-1, order="F"), H, W, C, N, SH, SW, average, n_threads)
    return dzdx

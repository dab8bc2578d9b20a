"""vl_nnbilinearsampler: bilinear resampling of images at grid points (spatial transformers)."""
import numpy as np

from ._checks import as_float_array, check_elements, common_dtype, fortran4, shape4
from ._ext import bilinearsampler as _kernels
from ._options import parse_options, take_derivative
from ._threads import ELEMENTWISE_ELEMENTS_PER_THREAD, threads_for_work

_FNAME = "vl_nnbilinearsampler"


def vl_nnbilinearsampler(x, grid, *args, **kwargs):
    """Sample images at the points of a grid with bilinear interpolation (MatConvNet's vl_nnbilinearsampler).

    Call forms::

        y = vl_nnbilinearsampler(x, grid)
        dzdx, dzdgrid = vl_nnbilinearsampler(x, grid, dzdy)

    ``grid[:, i, j, m]`` is a point (v, u) of output image m: v the vertical and u the horizontal
    coordinate, both normalised to [-1, 1], where -1 is the centre of the first pixel (row or
    column) and +1 the centre of the last. It reads input position (0-based)
    ``py = (v + 1) / 2 * (H - 1)``, ``px = (u + 1) / 2 * (W - 1)``, from its four neighbours::

        y[i, j, c, m] = sum over r in {sy, sy+1}, q in {sx, sx+1} of
                        (1 - |py - r|) (1 - |px - q|) x[r, q, c, m // (No / N)]

    with ``sy = floor(py)``, ``sx = floor(px)``. Neighbours outside the image count as zero, and a
    point with ``sy`` or ``sx`` outside [0, H) or [0, W) samples nothing (y = 0). That is what
    MatConvNet's CPU code computes (its test is meant to be [-1, H), but compares the int -1 with an
    unsigned size), so a point just above or left of the first pixel centre gives 0, while one just
    below or right of the last still reads its one neighbour inside. The No grids are split into N
    groups of No / N consecutive ones, group n sampling image n. In PyTorch terms this is
    ``grid_sample`` with ``align_corners=True`` and zero padding, the grid's coordinates in (v, u)
    order in its first dimension instead of (x, y) in its last, except for those points just above
    or left of the first pixel centre.

    Parameters
    ----------
    x : ndarray, (H, W, C, N)
        Images, float32 or float64 (2 to 4 dimensions), H and W at least 1; N = 0 images take
        No = 0 grids and give an empty y.
    grid : ndarray, (2, Ho, Wo, No)
        Sampling points of x's dtype (2 to 4 dimensions, MATLAB's trailing singletons dropped); No
        must be a multiple of N.
    dzdy : ndarray, (Ho, Wo, C, No), optional
        Derivative of the objective with respect to y. Given, the call runs backward.

    Returns
    -------
    y : ndarray, (Ho, Wo, C, No)
        Forward: the samples, Fortran-ordered, of x's dtype; 3-D when the grid came without its
        4th dimension.
    dzdx, dzdgrid : ndarray
        Backward: the derivatives, shaped like x and grid. At a point where py or px is a whole
        number the sample is not differentiable; dzdgrid is then the one-sided derivative towards
        larger coordinates (that of the cell with the point on its top or left edge), as MatConvNet
        computes it. A NaN grid
        coordinate gives NaN samples and a NaN dzdgrid there.

    Raises
    ------
    TypeError
        Arrays that are not float32/float64 or not of one dtype, or any option (there are none).
    ValueError
        Arrays of the wrong number of dimensions, a grid whose first dimension is not 2, x with no
        height or width, No not a multiple of N, a dzdy of the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnbilinearsampler
    >>> x = np.array([[0.0, 10.0], [20.0, 30.0]])      # 2 x 2, one channel, one image
    >>> grid = np.array([-1.0, -1.0, 0.0, 0.0, 1.0, 0.0]).reshape(2, 3, 1, order="F")
    >>> vl_nnbilinearsampler(x, grid)[:, 0, 0]          # the corner, the centre, the middle of the bottom
    array([ 0., 15., 25.])
    >>> dzdx, dzdgrid = vl_nnbilinearsampler(x, grid, np.ones((3, 1, 1)))
    >>> dzdx
    array([[1.25, 0.25],
           [0.75, 0.75]])
    """
    dzdy, rest, kwargs = take_derivative(args, kwargs, _FNAME)
    parse_options(_FNAME, rest, kwargs, {})
    x = as_float_array(x, "X", _FNAME)
    grid = as_float_array(grid, "GRID", _FNAME)
    dzdy = as_float_array(dzdy, "DZDY", _FNAME, allow_none=True)
    common_dtype(_FNAME, X=x, GRID=grid, DZDY=dzdy)
    H, W, C, N = shape4(x, "X", _FNAME)
    if min(H, W) == 0:
        raise ValueError(f"{_FNAME}: X has shape {x.shape}; H and W must be at least 1 (there must be pixels "
                         "to sample)")
    two, Ho, Wo, No = shape4(grid, "GRID", _FNAME)
    if two != 2:
        raise ValueError(f"{_FNAME}: GRID has shape {grid.shape}; its first dimension must be 2 (the (v, u) "
                         "coordinates of each point)")
    if (No % N if N else No):
        raise ValueError(f"{_FNAME}: GRID has {No} grids (its 4th dimension), not a multiple of the {N} "
                         "images of X")
    y_shape = (Ho, Wo, C, No)
    check_elements(_FNAME, "Y", *y_shape)
    shown = y_shape if grid.ndim == 4 else y_shape[:3]
    if dzdy is not None and shape4(dzdy, "DZDY", _FNAME) != y_shape:
        raise ValueError(f"{_FNAME}: DZDY has shape {dzdy.shape} but Y has shape {shown}")

    flat = {"order": "F"}
    geometry = (H, W, C, Ho * Wo, No, No // N if N else 1)
    n_threads = threads_for_work(Ho * Wo * C * No, ELEMENTWISE_ELEMENTS_PER_THREAD)
    x1 = np.asfortranarray(x).reshape(-1, **flat)
    grid1 = np.asfortranarray(grid).reshape(-1, **flat)
    if dzdy is None:
        y = np.zeros(y_shape, x.dtype, order="F")
        if y.size:
            _kernels.forward(x1, grid1, y.reshape(-1, **flat), *geometry, n_threads)
        return y.reshape(shown, order="F")
    dzdx = np.zeros(x.shape, x.dtype, order="F")
    dzdgrid = np.zeros(grid.shape, x.dtype, order="F")
    if dzdy.size:
        dy1 = fortran4(dzdy, y_shape).reshape(-1, **flat)
        _kernels.backward(x1, grid1, dy1, dzdx.reshape(-1, **flat), dzdgrid.reshape(-1, **flat), *geometry,
                          n_threads)
    return dzdx, dzdgrid

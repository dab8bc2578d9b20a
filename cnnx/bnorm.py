"""Batch normalisation: ``vl_nnbnorm``."""
import numpy as np

from ._checks import as_float_array, common_dtype, fortran4, like, shape4
from ._ext import bnorm as _kernels
from ._options import Option, parse_options, take_derivative
from ._threads import ELEMENTWISE_ELEMENTS_PER_THREAD, threads_for_work

_OPTIONS = {
    "epsilon": Option("float", 1e-4, low=0, finite=True),
    "moments": Option("any", None),
}


def _per_channel(value, name, fname, x, channels):
    """``value`` (C elements, any shape) as a contiguous vector of x's dtype."""
    arr = as_float_array(value, name, fname)
    common_dtype(fname, X=x, **{name: arr})
    if arr.size != channels:
        raise ValueError(f"{fname}: {name} has {arr.size} elements but X has {channels} channels")
    return np.ascontiguousarray(arr.reshape(-1, order="F"))


def vl_nnbnorm(x, g, b, *args, **kwargs):
    """Batch normalisation: normalise each channel by its mean and deviation, then scale and shift.

    Call forms::

        y, moments = vl_nnbnorm(x, g, b)                          # training: the batch's moments
        y, moments = vl_nnbnorm(x, g, b, 'Moments', moments)      # test: given moments
        dzdx, dzdg, dzdb, moments = vl_nnbnorm(x, g, b, dzdy)     # or dzdy=dzdy; 'Moments' as above

    ``y[..., k, :] = g[k] * (x[..., k, :] - mu[k]) / sigma[k] + b[k]``, with, over the M = H*W*N
    values of channel k, ``mu = mean(x)`` and ``sigma = sqrt(max(0, mean(x^2) - mu^2) + epsilon)``
    (MatConvNet's formula). Backward gives ``dzdb = sum(dzdy)``, ``dzdg = sum(dzdy * xhat)`` and
    ``dzdx = g/sigma * (dzdy - dzdb/M - xhat * dzdg/M)`` with ``xhat = (x - mu) / sigma``: the
    derivative through the batch statistics, also when the moments are given (MatConvNet's rule).

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (H, W, C, N) (or 2-D/3-D, MATLAB's dropped singletons)
        Input.
    g, b : ndarray, dtype of x, C elements each (any shape)
        Gains and biases.
    dzdy : ndarray, shape and dtype of x, optional
        Derivative of the objective with respect to y. None or ``[]`` means forward.
    Epsilon : 1e-4
        Added to the variance, a finite number >= 0 (``vl_simplenn`` and ``dagnn.BatchNorm`` pass
        1e-5).
    Moments : None
        C x 2 array ``[mu, sigma]`` (2C elements of x's dtype, read in column order: the C means,
        then the C sigmas) used instead of the batch's moments; Epsilon is then not used.

    Returns
    -------
    y, moments : ndarray
        Forward outputs: y shaped like x; moments (C, 2), ``[mu, sigma]`` (sigma includes Epsilon),
        computed or the given ones.
    dzdx, dzdg, dzdb, moments : ndarray
        Backward outputs: dzdx shaped like x; dzdg and dzdb (C, 1) columns whatever the shape of g
        and b (as MatConvNet returns them); moments as in the forward call.

    Raises
    ------
    TypeError
        If an array is not float32/float64, the dtypes differ, or an option is unknown.
    ValueError
        If x does not have 2 to 4 dimensions, g, b or Moments have the wrong number of elements,
        dzdy's shape differs from x's, Epsilon is negative or not finite, or the moments are to be
        computed from no values (H*W*N = 0).

    Notes
    -----
    The sums run in double for both dtypes (MatConvNet sums in the data type), one channel per
    thread in a fixed order, so the results are the same bit for bit at any thread count. With
    Epsilon 0, a constant channel has sigma 0 and gives inf or NaN, as in MatConvNet.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnx import vl_nnbnorm
    >>> x = np.array([1.0, 3.0, 10.0, 20.0]).reshape(1, 2, 2, order='F')   # 2 channels
    >>> y, moments = vl_nnbnorm(x, np.ones(2), np.zeros(2), epsilon=0)
    >>> y
    array([[[-1., -1.],
            [ 1.,  1.]]])
    >>> moments
    array([[ 2.,  1.],
           [15.,  5.]])
    >>> dzdx, dzdg, dzdb, _ = vl_nnbnorm(x, np.ones(2), np.zeros(2), np.ones_like(x), epsilon=0)
    >>> dzdb
    array([[2.],
           [2.]])
    """
    fname = "vl_nnbnorm"
    dzdy, args, kwargs = take_derivative(args, kwargs, fname)
    opts = parse_options(fname, args, kwargs, _OPTIONS)
    epsilon = opts["epsilon"]
    x = as_float_array(x, "X", fname)
    height, width, channels, images = shape4(x, "X", fname)
    g = _per_channel(g, "G", fname, x, channels)
    b = _per_channel(b, "B", fname, x, channels)
    if dzdy is not None:
        dzdy = like(dzdy, "DZDY", fname, x, "X")
    moments = opts["moments"]
    compute = moments is None
    if compute:
        if channels and not height * width * images:
            raise ValueError(f"{fname}: X has shape {x.shape}; the moments of a batch without values "
                             "(H*W*N = 0) are undefined (give Moments)")
        moments = np.zeros((channels, 2), dtype=x.dtype, order="F")
    else:
        given = as_float_array(moments, "MOMENTS", fname)
        if given.size != 2 * channels:
            raise ValueError(f"{fname}: MOMENTS has {given.size} elements but X has {channels} channels "
                             "(need 2C: C x 2 [MU SIGMA])")
        common_dtype(fname, X=x, MOMENTS=given)
        moments = np.array(given.reshape((channels, 2), order="F"), order="F")
    flat_moments = moments.reshape(-1, order="F")
    dims = (height * width, channels, images)
    x3 = fortran4(x, dims)
    n_threads = threads_for_work(x.size, ELEMENTWISE_ELEMENTS_PER_THREAD, most=channels)
    out = np.zeros(x.shape, dtype=x.dtype, order="F")
    out3 = out.reshape(dims, order="F")
    if dzdy is None:
        if x.size:
            _kernels.forward(x3, g, b, flat_moments, compute, epsilon, out3, n_threads)
        return out, moments
    dzdg = np.zeros((channels, 1), dtype=x.dtype)
    dzdb = np.zeros((channels, 1), dtype=x.dtype)
    if x.size:
        dzdy3 = fortran4(dzdy, dims)
        _kernels.backward(x3, g, dzdy3, flat_moments, compute, epsilon, out3, dzdg.reshape(-1),
                          dzdb.reshape(-1), n_threads)
    return out, dzdg, dzdb, moments

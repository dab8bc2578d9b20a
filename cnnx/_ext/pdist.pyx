"""p-distance kernels (vl_nnpdist): per pixel, the p-norm over the channels of X - X0, and its gradient.

Arrays come as (H*W, D, N) Fortran memoryviews; X0 may have one pixel (P = 1, broadcast over H x W).
The work is cut into tasks of at most BLOCK consecutive pixels of one image (boundaries set by the
shape only); a task sums over the channels in channel order for each of its pixels, so that the
inner loops walk the pixels and every result is the same at any thread count.
"""
from cython.parallel cimport prange
cimport numpy as cnp
from .arrays cimport float_kind
from cython cimport floating
from libc.math cimport fabs, pow, sqrt

cnp.import_array()

cdef enum:
    BLOCK = 256


cdef inline double power_of(double d, double p) noexcept nogil:
    """|d|^p, exact for p = 1 and p = 2."""
    if p == 1:
        return fabs(d)
    if p == 2:
        return d * d
    return pow(fabs(d), p)


cdef inline double sign(double d) noexcept nogil:
    """MATLAB's sign: -1, 0 or 1, NaN for NaN."""
    return 1 if d > 0 else (-1 if d < 0 else (0 if d == 0 else d))


cdef inline void block_sums(const floating* x, const floating* x0, Py_ssize_t x0_step, Py_ssize_t hw,
                            Py_ssize_t npix, Py_ssize_t channels, Py_ssize_t x0_channel_step, double p,
                            double* total) noexcept nogil:
    """total[q] = sum over channels k of |x[q + k * hw] - x0[q * x0_step + k * x0_channel_step]|^p."""
    cdef Py_ssize_t q, k
    for q in range(npix):
        total[q] = 0
    for k in range(channels):
        for q in range(npix):
            total[q] += power_of(<double>x[q + k * hw] - x0[q * x0_step + k * x0_channel_step], p)


cdef inline double finished(double total, double p, bint no_root) noexcept nogil:
    """The distance from the sum of powers: its p-th root unless ``no_root``."""
    if no_root or p == 1:
        return total
    if p == 2:
        return sqrt(total)
    return pow(total, 1 / p)


cdef inline void forward_block(const floating* x, const floating* x0, Py_ssize_t x0_step, Py_ssize_t hw,
                               Py_ssize_t npix, Py_ssize_t channels, Py_ssize_t x0_channel_step, double p,
                               bint no_root, double* y) noexcept nogil:
    """y[q] for the npix pixels from x (see :func:`block_sums`)."""
    cdef double total[BLOCK]
    cdef Py_ssize_t q
    block_sums(x, x0, x0_step, hw, npix, channels, x0_channel_step, p, total)
    for q in range(npix):
        y[q] = finished(total[q], p, no_root)


def _pdist_forward(const floating[::1, :, :] x, const floating[::1, :, :] x0, double[::1, :] y, double p,
                   bint no_root, int n_threads):
    """y[q, n] = the p-distance (or, with ``no_root``, the sum of p-th powers) of pixel q of image n."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t blocks = (hw + BLOCK - 1) // BLOCK
    cdef Py_ssize_t x0_step = 1 if x0.shape[0] > 1 else 0
    cdef Py_ssize_t t, n, first
    if hw == 0 or images == 0:
        return
    for t in prange(blocks * images, nogil=True, num_threads=n_threads, schedule='static'):
        n = t // blocks
        first = (t % blocks) * BLOCK
        forward_block(&x[first, 0, n], &x0[first * x0_step, 0, n], x0_step, hw, min(BLOCK, hw - first),
                      channels, x0.shape[0], p, no_root, &y[first, n])


cdef inline double gradient(double d, double dy, double total, double p, bint no_root,
                            double epsilon) noexcept nogil:
    """The derivative of the distance (or of the sum of powers) with respect to the difference d,
    times dy, as MatConvNet computes it (the epsilon bounds where it takes them)."""
    cdef double a
    if p == 1:
        return dy * sign(d)
    if no_root:
        if p == 2:
            return 2 * dy * d
        a = fabs(d)
        if p < 1 and a < epsilon:
            a = epsilon
        return p * dy * pow(a, p - 1) * sign(d)
    if p == 2:
        return dy * pow(total if total > epsilon else epsilon, -0.5) * d
    if p < 1:
        a = fabs(d)
        return dy * pow(total, (1 - p) / p) * pow(a if a > epsilon else epsilon, p - 1) * sign(d)
    return dy * pow(total if total > epsilon else epsilon, (1 - p) / p) * pow(fabs(d), p - 1) * sign(d)


cdef inline void backward_block(const floating* x, const floating* x0, Py_ssize_t x0_step, Py_ssize_t hw,
                                Py_ssize_t npix, Py_ssize_t channels, Py_ssize_t x0_channel_step,
                                const double* dy, floating* dzdx, double p, bint no_root,
                                double epsilon) noexcept nogil:
    """dzdx (laid out as x) of the npix pixels from x (see :func:`block_sums`), dy[q] each pixel's factor."""
    cdef double total[BLOCK]
    cdef Py_ssize_t q, k
    block_sums(x, x0, x0_step, hw, npix, channels, x0_channel_step, p, total)
    for k in range(channels):
        for q in range(npix):
            dzdx[q + k * hw] = <floating>gradient(<double>x[q + k * hw] - x0[q * x0_step + k * x0_channel_step],
                                                  dy[q], total[q], p, no_root, epsilon)


def _pdist_backward(const floating[::1, :, :] x, const floating[::1, :, :] x0, const double[::1, :] dy,
                    floating[::1, :, :] dzdx, double p, bint no_root, double epsilon, int n_threads):
    """dzdx = the derivative of the p-distance (or the sum of powers), each pixel's times dy (H*W, N)."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t blocks = (hw + BLOCK - 1) // BLOCK
    cdef Py_ssize_t x0_step = 1 if x0.shape[0] > 1 else 0
    cdef Py_ssize_t t, n, first
    if hw == 0 or images == 0 or channels == 0:
        return
    for t in prange(blocks * images, nogil=True, num_threads=n_threads, schedule='static'):
        n = t // blocks
        first = (t % blocks) * BLOCK
        backward_block(&x[first, 0, n], &x0[first * x0_step, 0, n], x0_step, hw, min(BLOCK, hw - first),
                       channels, x0.shape[0], &dy[first, n], &dzdx[first, 0, n], p, no_root, epsilon)


def pdist_forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_pdist_forward``."""
    float_kind("cnnx._ext.pdist.pdist_forward", x)
    _pdist_forward(x, *args)


def pdist_backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_pdist_backward``."""
    float_kind("cnnx._ext.pdist.pdist_backward", x)
    _pdist_backward(x, *args)

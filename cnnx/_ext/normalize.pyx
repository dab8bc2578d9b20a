"""Cross-channel local response normalisation (LRN) and Lp normalisation kernels.

LRN works on (H*W, C, N) Fortran views in tasks of at most BLOCK consecutive pixels of one image,
with thread-private scratch of a few C x BLOCK double arrays (the inner loops run over the
task's pixels). Its window sums over channels are exact sums of the window's terms, without the
running add-and-subtract (which loses the small terms after a large one has left the window):
the channels are cut into runs of the window's width, every window is the tail of one run plus
the head of the next, and the heads and tails are accumulated in double from the run's ends, so
each channel costs O(1) whatever the window's width.

Lp normalisation reduces over any subset of the four dimensions. The block transposes its (views
of the) arrays so that one kept dimension comes last, and the threads take slices of it: every
norm is summed in double by one thread in memory order, so nothing depends on the thread count.
"""
cimport numpy as cnp
from .arrays cimport float_kind
from cython.parallel cimport parallel, prange
from cython cimport floating
from libc.math cimport pow
from libc.stdlib cimport malloc, free

cnp.import_array()

cdef enum:
    BLOCK = 32


cdef void window_sums(double* values, double* head, double* tail, Py_ssize_t count, Py_ssize_t channels,
                      Py_ssize_t left, Py_ssize_t right) noexcept nogil:
    """values[k*BLOCK + p] <- sum of values[q*BLOCK + p] over q in [k - left, k + right] clipped to the
    channels, for the ``count`` pixels p. head and tail are scratch of the same size."""
    cdef Py_ssize_t width = left + right + 1
    cdef Py_ssize_t p, q, k, lo, hi
    for q in range(channels):
        for p in range(count):
            if q % width == 0:
                head[q * BLOCK + p] = values[q * BLOCK + p]
            else:
                head[q * BLOCK + p] = head[(q - 1) * BLOCK + p] + values[q * BLOCK + p]
    for q in range(channels - 1, -1, -1):
        for p in range(count):
            if q == channels - 1 or (q + 1) % width == 0:
                tail[q * BLOCK + p] = values[q * BLOCK + p]
            else:
                tail[q * BLOCK + p] = tail[(q + 1) * BLOCK + p] + values[q * BLOCK + p]
    for k in range(channels):
        lo = k - left if k > left else 0
        hi = k + right if k + right < channels else channels - 1
        # [lo, hi] is at most one run long: it is the tail of lo's run and the head of hi's, or,
        # within one run, that run's head (lo starts it) or its tail (hi ends it or the channels)
        if lo // width != hi // width:
            for p in range(count):
                values[k * BLOCK + p] = tail[lo * BLOCK + p] + head[hi * BLOCK + p]
        elif lo % width == 0:
            for p in range(count):
                values[k * BLOCK + p] = head[hi * BLOCK + p]
        else:
            for p in range(count):
                values[k * BLOCK + p] = tail[lo * BLOCK + p]


cdef void lrn_block(const floating* x, const floating* dzdy, floating* out, Py_ssize_t hw,
                    Py_ssize_t channels, Py_ssize_t count, Py_ssize_t depth, double kappa, double alpha,
                    double beta, double* scratch) noexcept nogil:
    """One task: forward (dzdy NULL) or backward, for ``count`` pixels; scratch holds 4 C x BLOCK
    doubles."""
    cdef Py_ssize_t stride = channels * BLOCK
    cdef double* norm = scratch                 # sum of squares, then L^-beta
    cdef double* weighted = scratch + stride    # dzdy x L^(-beta-1), then its window sums
    cdef double* head = scratch + 2 * stride
    cdef double* tail = scratch + 3 * stride
    cdef Py_ssize_t before = (depth - 1) // 2, after = depth - 1 - (depth - 1) // 2
    cdef Py_ssize_t p, q, k, i
    cdef double v, level
    for q in range(channels):
        for p in range(count):
            v = x[p + q * hw]
            norm[q * BLOCK + p] = v * v
    window_sums(norm, head, tail, count, channels, before, after)
    if dzdy == NULL:
        for k in range(channels):
            for p in range(count):
                i = p + k * hw
                out[i] = <floating>(x[i] * pow(kappa + alpha * norm[k * BLOCK + p], -beta))
        return
    for k in range(channels):
        for p in range(count):
            i = p + k * hw
            level = kappa + alpha * norm[k * BLOCK + p]
            norm[k * BLOCK + p] = pow(level, -beta)
            weighted[k * BLOCK + p] = <double>dzdy[i] * x[i] * (norm[k * BLOCK + p] / level)
    # x_q reaches the outputs t with q in [t - before, t + after], that is t in [q - after, q + before]
    window_sums(weighted, head, tail, count, channels, after, before)
    for q in range(channels):
        for p in range(count):
            i = p + q * hw
            out[i] = <floating>(dzdy[i] * norm[q * BLOCK + p]
                                - 2 * alpha * beta * x[i] * weighted[q * BLOCK + p])


def _lrn(const floating[::1, :, :] x, const floating[::1, :, :] dzdy, floating[::1, :, :] out, bint backward,
         Py_ssize_t depth, double kappa, double alpha, double beta, int n_threads):
    """out = x * (kappa + alpha * window sum of x^2)^-beta over axis 1 (forward), or the derivative
    projected on dzdy (backward; dzdy is ignored in forward)."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t blocks = (hw + BLOCK - 1) // BLOCK
    cdef Py_ssize_t t, n, start
    cdef double* scratch
    cdef const floating* dzdy_data
    cdef int failed[1]
    if hw == 0 or channels == 0 or images == 0:
        return
    dzdy_data = &dzdy[0, 0, 0] if backward else NULL
    failed[0] = 0
    with nogil, parallel(num_threads=n_threads):
        scratch = <double*>malloc(4 * channels * BLOCK * sizeof(double))
        if scratch == NULL:
            failed[0] = 1
        for t in prange(blocks * images, schedule='static'):
            if failed[0]:
                continue
            n = t // blocks
            start = (t % blocks) * BLOCK
            lrn_block(&x[start, 0, n], NULL if dzdy_data == NULL else dzdy_data + start + n * hw * channels,
                      &out[start, 0, n], hw, channels, min(BLOCK, hw - start), depth, kappa, alpha, beta,
                      scratch)
        free(scratch)
    if failed[0]:
        raise MemoryError("vl_nnnormalize: cannot allocate the window sums' scratch")


def lrn(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_lrn``."""
    float_kind("cnnx._ext.normalize.lrn", x)
    return _lrn(x, *args)

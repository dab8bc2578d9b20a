"""Normalisation kernels: cross-channel local response normalisation (LRN), the norm-dependent
offset (noffset) and Lp normalisation.

LRN and noffset work on (H*W, C, N) Fortran views in tasks of at most BLOCK consecutive pixels of
one image, so that the inner loops run over the task's pixels; their sums over channels are in
double. LRN's window sums are exact sums of the window's terms, without a running add-and-subtract
(which loses the small terms after a large one has left the window): the channels are cut into
runs of the window's width, every window is the tail of one run plus the head of the next, and
the heads and tails are accumulated from the runs' ends in thread-private scratch (a few C x BLOCK
doubles), so each channel costs O(1) whatever the window's width.

Lp normalisation takes a (R, K) Fortran matrix whose columns are the K groups of R values that
share a norm (the block moves the reduced dimensions first); one thread sums a column in double,
in order.

No sum is split between threads, so no result depends on the thread count.
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


cdef void noffset_block(const floating* x, const floating* dzdy, floating* out, Py_ssize_t hw,
                        Py_ssize_t channels, Py_ssize_t count, double scale, double power) noexcept nogil:
    """One task of ``count`` pixels: forward (dzdy NULL) or backward of vl_nnnoffset."""
    cdef double level[BLOCK]
    cdef double total[BLOCK]
    cdef Py_ssize_t p, c, i
    cdef double v
    for p in range(count):
        level[p] = 0
        total[p] = 0
    for c in range(channels):
        for p in range(count):
            v = x[p + c * hw]
            level[p] += v * v
            if dzdy != NULL:
                total[p] += dzdy[p + c * hw]
    for p in range(count):
        if level[p] < 1e-8:  # MatConvNet's floor, also where the derivative is taken
            level[p] = 1e-8
        if dzdy == NULL:
            level[p] = scale * pow(level[p], power)
        else:
            level[p] = 2 * scale * power * total[p] * pow(level[p], power - 1)
    for c in range(channels):
        for p in range(count):
            i = p + c * hw
            if dzdy == NULL:
                out[i] = <floating>(x[i] - level[p])
            else:
                out[i] = <floating>(dzdy[i] - x[i] * level[p])


def _noffset(const floating[::1, :, :] x, const floating[::1, :, :] dzdy, floating[::1, :, :] out,
             bint backward, double scale, double power, int n_threads):
    """out = x - scale * L^power with L = max(sum over axis 1 of x^2, 1e-8) (forward), or
    dzdy - 2 scale power x (sum over axis 1 of dzdy) L^(power - 1) (backward; dzdy is ignored in
    forward)."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t blocks = (hw + BLOCK - 1) // BLOCK
    cdef Py_ssize_t t, n, start
    if hw == 0 or channels == 0 or images == 0:
        return
    for t in prange(blocks * images, nogil=True, num_threads=n_threads, schedule='static'):
        n = t // blocks
        start = (t % blocks) * BLOCK
        noffset_block(&x[start, 0, n], &dzdy[start, 0, n] if backward else NULL, &out[start, 0, n], hw, channels,
                      min(BLOCK, hw - start), scale, power)


def noffset(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_noffset``."""
    float_kind("cnnx._ext.normalize.noffset", x)
    return _noffset(x, *args)


cdef void lp_column(const floating* x, const floating* dzdy, floating* out, floating* norm, Py_ssize_t rows,
                    bint compute_norm, double power, double epsilon) noexcept nogil:
    """One norm's column of ``rows`` values: its norm (if asked), then y = x / norm (dzdy NULL) or
    dzdx = dzdy / norm - (sum dzdy x) x^(power - 1) / norm^(power + 1)."""
    cdef Py_ssize_t r
    cdef double total = 0, n
    if compute_norm:
        for r in range(rows):
            total += pow(x[r], power)
        norm[0] = <floating>pow(total + epsilon, 1.0 / power)
    n = norm[0]
    if dzdy == NULL:
        for r in range(rows):
            out[r] = <floating>(x[r] / n)
        return
    total = 0
    for r in range(rows):
        total += <double>dzdy[r] * x[r]
    for r in range(rows):
        out[r] = <floating>(dzdy[r] / n - total * pow(x[r], power - 1) / pow(n, power + 1))


def _lp(const floating[::1, :] x, const floating[::1, :] dzdy, floating[::1] norms, floating[::1, :] out,
        bint compute_norms, bint backward, double power, double epsilon, int n_threads):
    """Lp normalisation of the columns of x (the block puts the reduced dimensions first): the
    norms (sum x^power + epsilon)^(1/power) if asked (else the given ones), then out = x / norm or,
    backward, the derivative projected on dzdy (ignored in forward). One thread per column."""
    cdef Py_ssize_t rows = x.shape[0], columns = x.shape[1]
    cdef Py_ssize_t k
    if columns == 0:
        return
    for k in prange(columns, nogil=True, num_threads=n_threads, schedule='static'):
        lp_column(&x[0, k], &dzdy[0, k] if backward and rows else NULL, &out[0, k] if rows else NULL, &norms[k],
                  rows, compute_norms, power, epsilon)


def lp(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_lp``."""
    float_kind("cnnx._ext.normalize.lp", x)
    return _lp(x, *args)

"""Softmax over channels and the logistic sigmoid, forward and backward.

Softmax works on (H*W, C, N) Fortran views in tasks of at most BLOCK consecutive pixels of one
image; a task keeps its pixels' maximum, sum of exponentials and (backward) sum of dzdy * y in
double on its stack and walks the channels one at a time, so the inner loops run over contiguous
pixels. The sigmoid is elementwise, one contiguous span per thread. Every value is computed in
double from the input and rounded once to the input's type. No result depends on how the work is
split, so the thread count never changes a bit.
"""
cimport numpy as cnp
from .arrays cimport data_of, float_kind
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport exp

cnp.import_array()

cdef enum:
    BLOCK = 256


cdef inline void softmax_scales(const floating* x, Py_ssize_t hw, Py_ssize_t channels, Py_ssize_t count,
                                double* top, double* total) noexcept nogil:
    """top[p] = max over channels of x, total[p] = sum over channels of exp(x - top[p]), for the
    ``count`` pixels from x (channel c of pixel p at x[p + c*hw]). A NaN first value stays the
    maximum (every later compare is false), so a pixel with a NaN gives NaN throughout, as
    MatConvNet's softmax does (its max skips NaN, its exp(NaN - max) does not)."""
    cdef Py_ssize_t p, c
    cdef double v
    for p in range(count):
        top[p] = x[p]
        total[p] = 0
    for c in range(1, channels):
        for p in range(count):
            v = x[p + c * hw]
            if v > top[p]:
                top[p] = v
    for c in range(channels):
        for p in range(count):
            total[p] += exp(x[p + c * hw] - top[p])


cdef void softmax_block(const floating* x, floating* y, Py_ssize_t hw, Py_ssize_t channels,
                        Py_ssize_t count) noexcept nogil:
    cdef double top[BLOCK]
    cdef double total[BLOCK]
    cdef Py_ssize_t p, c, k
    softmax_scales(x, hw, channels, count, top, total)
    for c in range(channels):
        for p in range(count):
            k = p + c * hw
            y[k] = <floating>(exp(x[k] - top[p]) / total[p])


cdef void softmax_back_block(const floating* x, const floating* dzdy, floating* dzdx, Py_ssize_t hw,
                             Py_ssize_t channels, Py_ssize_t count) noexcept nogil:
    """dzdx = y * (dzdy - sum over channels of dzdy * y), y the softmax of x (recomputed)."""
    cdef double top[BLOCK]
    cdef double total[BLOCK]
    cdef double dot[BLOCK]
    cdef Py_ssize_t p, c, k
    softmax_scales(x, hw, channels, count, top, total)
    for p in range(count):
        dot[p] = 0
    for c in range(channels):
        for p in range(count):
            k = p + c * hw
            dot[p] += dzdy[k] * (exp(x[k] - top[p]) / total[p])
    for c in range(channels):
        for p in range(count):
            k = p + c * hw
            dzdx[k] = <floating>((exp(x[k] - top[p]) / total[p]) * (dzdy[k] - dot[p]))


def _softmax(const floating[::1, :, :] x, const floating[::1, :, :] dzdy, floating[::1, :, :] out,
             bint backward, int n_threads):
    """out = softmax of x over axis 1 (forward), or its derivative projected on dzdy (backward;
    dzdy is ignored in forward)."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t blocks = (hw + BLOCK - 1) // BLOCK
    cdef Py_ssize_t t, n, start
    if hw == 0 or channels == 0 or images == 0:
        return
    for t in prange(blocks * images, nogil=True, num_threads=n_threads, schedule='static'):
        n = t // blocks
        start = (t % blocks) * BLOCK
        if backward:
            softmax_back_block(&x[start, 0, n], &dzdy[start, 0, n], &out[start, 0, n], hw, channels,
                               min(BLOCK, hw - start))
        else:
            softmax_block(&x[start, 0, n], &out[start, 0, n], hw, channels, min(BLOCK, hw - start))


def softmax(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_softmax``."""
    float_kind("cnnx._ext.softmax.softmax", x)
    return _softmax(x, *args)


cdef void sigmoid_span(const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = <floating>(1.0 / (1.0 + exp(-<double>x[i])))


cdef void sigmoid_back_span(const floating* x, const floating* dzdy, floating* dzdx,
                            Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double y
    for i in range(n):
        y = 1.0 / (1.0 + exp(-<double>x[i]))
        dzdx[i] = <floating>(dzdy[i] * (y * (1.0 - y)))


cdef void sigmoid_run(const floating* x, const floating* dzdy, floating* out, Py_ssize_t n,
                      int n_threads) noexcept nogil:
    """One contiguous span per thread: out = sigmoid(x), or dzdy * y * (1 - y) if dzdy is given."""
    cdef Py_ssize_t span = (n + n_threads - 1) // n_threads
    cdef Py_ssize_t t, start
    if n_threads == 1:  # skip the parallel region: on small tensors it costs more than the work
        if dzdy == NULL:
            sigmoid_span(x, out, n)
        else:
            sigmoid_back_span(x, dzdy, out, n)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        start = t * span
        if start < n:
            if dzdy == NULL:
                sigmoid_span(x + start, out + start, min(span, n - start))
            else:
                sigmoid_back_span(x + start, dzdy + start, out + start, min(span, n - start))


# Elementwise entry points take whole arrays, as the ReLU kernels do.
def sigmoid(cnp.ndarray x, object dzdy, cnp.ndarray out, int n_threads):
    """out = 1 / (1 + exp(-x)); with dzdy (an array, else None) out = dzdy * y * (1 - y)."""
    cdef int kind = float_kind("cnnx._ext.softmax.sigmoid", x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void* xp = data_of(x, x, False)
    cdef void* dyp = NULL if dzdy is None else data_of(dzdy, x, False)
    cdef void* outp = data_of(out, x, True)
    with nogil:
        if kind == 0:
            sigmoid_run(<const float*>xp, <const float*>dyp, <float*>outp, n, n_threads)
        else:
            sigmoid_run(<const double*>xp, <const double*>dyp, <double*>outp, n, n_threads)

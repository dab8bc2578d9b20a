"""ReLU / leaky ReLU and PReLU kernels over Fortran-ordered buffers.

Elementwise work is cut into one contiguous span per thread. The ReLU span loops are plain C
compiled twice, for AVX2 and for the baseline, the loader picking what the CPU runs (GCC on
glibc; elsewhere the baseline only): these loops stream memory, and with the baseline's 16-byte
vectors they ran at two thirds of the speed. Both versions give the same bits (no FMA is involved).

The PReLU slope gradient is a reduction: it is cut into tasks of at most SPAN pixels of one channel
of one image (boundaries set by the shape only), each task's partial sum is kept, and the partials
are added in task order, so the result does not depend on the thread count.
"""
cimport numpy as cnp
from .arrays cimport data_of, float_kind
from cython.parallel cimport prange
from cython cimport floating
from libc.stdlib cimport malloc, free

cnp.import_array()

# Pixels per PReLU task: long enough to amortise scheduling, short enough to balance small batches.
cdef enum:
    SPAN = 4096

cdef extern from *:
    """
    #include "simd.h"

    /* y = max(x, 0), written as "x <= 0 gives 0" so that NaN passes through;
       y = x * (x > 0 ? pos : neg);  dzdx = dzdy * (x > 0 ? pos : neg), a product so that inf and
       NaN in dzdy propagate as in MatConvNet's dzdy .* factor. */
    #define CNNX_DEFINE_RELU(T, S)                                                                 \
    CNNX_CLONES_AVX2 static void cnnx_relu_##S(const T* x, T* y, Py_ssize_t n) {                  \
        for (Py_ssize_t i = 0; i < n; i++) y[i] = x[i] <= 0 ? (T)0 : x[i];                        \
    }                                                                                              \
    CNNX_CLONES_AVX2 static void cnnx_leaky_##S(const T* x, T* y, Py_ssize_t n, T pos, T neg) {   \
        for (Py_ssize_t i = 0; i < n; i++) y[i] = x[i] * (x[i] > 0 ? pos : neg);                  \
    }                                                                                              \
    CNNX_CLONES_AVX2 static void cnnx_relu_back_##S(const T* x, const T* dzdy, T* dzdx,           \
                                                    Py_ssize_t n, T pos, T neg) {                  \
        for (Py_ssize_t i = 0; i < n; i++) dzdx[i] = dzdy[i] * (x[i] > 0 ? pos : neg);            \
    }
    CNNX_DEFINE_RELU(float, f)
    CNNX_DEFINE_RELU(double, d)
    """
    void relu_f "cnnx_relu_f"(const float* x, float* y, Py_ssize_t n) noexcept nogil
    void relu_d "cnnx_relu_d"(const double* x, double* y, Py_ssize_t n) noexcept nogil
    void leaky_f "cnnx_leaky_f"(const float* x, float* y, Py_ssize_t n, float pos,
                                float neg) noexcept nogil
    void leaky_d "cnnx_leaky_d"(const double* x, double* y, Py_ssize_t n, double pos,
                                double neg) noexcept nogil
    void relu_back_f "cnnx_relu_back_f"(const float* x, const float* dzdy, float* dzdx,
                                        Py_ssize_t n, float pos, float neg) noexcept nogil
    void relu_back_d "cnnx_relu_back_d"(const double* x, const double* dzdy, double* dzdx,
                                        Py_ssize_t n, double pos, double neg) noexcept nogil


cdef inline void relu_span(const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    if floating is float:
        relu_f(x, y, n)
    else:
        relu_d(x, y, n)


cdef inline void leaky_span(const floating* x, floating* y, Py_ssize_t n,
                            floating pos, floating neg) noexcept nogil:
    if floating is float:
        leaky_f(x, y, n, pos, neg)
    else:
        leaky_d(x, y, n, pos, neg)


cdef inline void relu_back_span(const floating* x, const floating* dzdy, floating* dzdx,
                                Py_ssize_t n, floating pos, floating neg) noexcept nogil:
    if floating is float:
        relu_back_f(x, dzdy, dzdx, n, pos, neg)
    else:
        relu_back_d(x, dzdy, dzdx, n, pos, neg)


cdef void relu_forward_run(const floating* x, floating* y, Py_ssize_t n, double leak,
                           int n_threads) noexcept nogil:
    cdef Py_ssize_t span = (n + n_threads - 1) // n_threads
    cdef Py_ssize_t t, start
    # the factors are computed in double, as MatConvNet's formula does, then rounded to x's type
    cdef floating pos = <floating>(leak + (1.0 - leak))
    cdef floating neg = <floating>leak
    if n_threads == 1:  # skip the parallel region: on small tensors it costs more than the work
        if leak == 0:
            relu_span(x, y, n)
        else:
            leaky_span(x, y, n, pos, neg)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        start = t * span
        if start < n:
            if leak == 0:
                relu_span(x + start, y + start, min(span, n - start))
            else:
                leaky_span(x + start, y + start, min(span, n - start), pos, neg)


cdef void relu_backward_run(const floating* x, const floating* dzdy, floating* dzdx, Py_ssize_t n,
                            double leak, int n_threads) noexcept nogil:
    cdef Py_ssize_t span = (n + n_threads - 1) // n_threads
    cdef Py_ssize_t t, start
    cdef floating pos = <floating>(leak + (1.0 - leak))
    cdef floating neg = <floating>leak
    if n_threads == 1:
        relu_back_span(x, dzdy, dzdx, n, pos, neg)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        start = t * span
        if start < n:
            relu_back_span(x + start, dzdy + start, dzdx + start, min(span, n - start), pos, neg)


# The elementwise entry points take whole arrays rather than memoryviews: on the small tensors
# of a network's last layers, acquiring buffers would cost as much as the work.
def relu_forward(cnp.ndarray x, cnp.ndarray y, double leak, int n_threads):
    """y = max(x, 0) (leak == 0) or x * (leak + (1 - leak) * (x > 0)) (leak != 0)."""
    cdef int kind = float_kind("cnnx._ext.activations.relu_forward", x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void* xp = data_of(x, x, False)
    cdef void* yp = data_of(y, x, True)
    with nogil:
        if kind == 0:
            relu_forward_run(<const float*>xp, <float*>yp, n, leak, n_threads)
        else:
            relu_forward_run(<const double*>xp, <double*>yp, n, leak, n_threads)


def relu_backward(cnp.ndarray x, cnp.ndarray dzdy, cnp.ndarray dzdx, double leak, int n_threads):
    """dzdx = dzdy * (leak + (1 - leak) * (x > 0)); leak == 0 gives dzdy * (x > 0)."""
    cdef int kind = float_kind("cnnx._ext.activations.relu_backward", x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void* xp = data_of(x, x, False)
    cdef void* dyp = data_of(dzdy, x, False)
    cdef void* dxp = data_of(dzdx, x, True)
    with nogil:
        if kind == 0:
            relu_backward_run(<const float*>xp, <const float*>dyp, <float*>dxp, n, leak, n_threads)
        else:
            relu_backward_run(<const double*>xp, <const double*>dyp, <double*>dxp, n, leak, n_threads)


cdef inline void prelu_span(const floating* x, floating* y, Py_ssize_t n, floating a) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating zero = 0
    for i in range(n):
        y[i] = x[i] if x[i] > zero else a * x[i]


cdef inline double prelu_back_span(const floating* x, const floating* dzdy, floating* dzdx,
                                   Py_ssize_t n, floating a) noexcept nogil:
    """Write dzdx for one span and return its share of dz/da, summed in double."""
    cdef Py_ssize_t i
    # four interleaved sums break the add latency chain; their order is fixed, so is the result
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef floating zero = 0
    for i in range(0, n - 3, 4):
        dzdx[i] = dzdy[i] if x[i] > zero else a * dzdy[i]
        dzdx[i + 1] = dzdy[i + 1] if x[i + 1] > zero else a * dzdy[i + 1]
        dzdx[i + 2] = dzdy[i + 2] if x[i + 2] > zero else a * dzdy[i + 2]
        dzdx[i + 3] = dzdy[i + 3] if x[i + 3] > zero else a * dzdy[i + 3]
        s0 += 0 if x[i] > zero else <double>dzdy[i] * x[i]
        s1 += 0 if x[i + 1] > zero else <double>dzdy[i + 1] * x[i + 1]
        s2 += 0 if x[i + 2] > zero else <double>dzdy[i + 2] * x[i + 2]
        s3 += 0 if x[i + 3] > zero else <double>dzdy[i + 3] * x[i + 3]
    for i in range(n - n % 4, n):
        dzdx[i] = dzdy[i] if x[i] > zero else a * dzdy[i]
        s0 += 0 if x[i] > zero else <double>dzdy[i] * x[i]
    return (s0 + s1) + (s2 + s3)


def _prelu_forward(const floating[::1, :, :] x, const floating[::1] a, floating[::1, :, :] y,
                   int n_threads):
    """y = x where x > 0, a[c] * x elsewhere; x and y are (H*W, C, N) Fortran views."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t spans = (hw + SPAN - 1) // SPAN
    cdef Py_ssize_t t, q, c, n, start
    if hw == 0:
        return
    for t in prange(spans * channels * images, nogil=True, num_threads=n_threads, schedule='static'):
        q = t % spans
        c = (t // spans) % channels
        n = t // (spans * channels)
        start = q * SPAN
        prelu_span(&x[start, c, n], &y[start, c, n], min(SPAN, hw - start), a[c])


def prelu_forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_prelu_forward``."""
    float_kind("cnnx._ext.activations.prelu_forward", x)
    return _prelu_forward(x, *args)


def _prelu_backward(const floating[::1, :, :] x, const floating[::1] a,
                    const floating[::1, :, :] dzdy, floating[::1, :, :] dzdx,
                    double[::1] dzda, int n_threads):
    """dzdx = dzdy * (1 if x > 0 else a[c]); dzda[c] = sum of dzdy * x over x <= 0 (in double)."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t spans = (hw + SPAN - 1) // SPAN
    cdef Py_ssize_t tasks = spans * channels * images
    cdef Py_ssize_t t, q, c, n, start
    cdef double total
    cdef double* partial
    if tasks == 0:
        dzda[:] = 0
        return
    partial = <double*>malloc(tasks * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    try:
        for t in prange(tasks, nogil=True, num_threads=n_threads, schedule='static'):
            q = t % spans
            c = (t // spans) % channels
            n = t // (spans * channels)
            start = q * SPAN
            partial[t] = prelu_back_span(&x[start, c, n], &dzdy[start, c, n], &dzdx[start, c, n],
                                         min(SPAN, hw - start), a[c])
        # fixed-order sum of the partials of each channel: over images, then spans
        for c in range(channels):
            total = 0
            for n in range(images):
                for q in range(spans):
                    total += partial[q + spans * (c + channels * n)]
            dzda[c] = total
    finally:
        free(partial)


def prelu_backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_prelu_backward``."""
    float_kind("cnnx._ext.activations.prelu_backward", x)
    return _prelu_backward(x, *args)

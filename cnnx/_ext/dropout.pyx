"""Inverted-dropout kernels: the mask is drawn inside the kernel from a counter-based generator.

Element i (in Fortran order) gets the 64-bit hash splitmix64(key + (i + 1) * GAMMA), with key the
mixed seed; its top 53 bits u53 are a uniform integer in [0, 2^53), so u = u53 / 2^53 is uniform in
[0, 1). The element is kept iff u >= rate, tested exactly as u53 >= ceil(rate * 2^53). The mask
thus depends on the seed and the element index only, never on how the work is split among threads.
"""
cimport numpy as cnp
from .arrays cimport data_of, float_kind
from cython.parallel cimport prange
from cython cimport floating
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    /* splitmix64's output function (Steele, Lea and Flood 2014): a bijective 64-bit mixer. */
    static inline uint64_t cnnx_mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    static const uint64_t CNNX_GAMMA = 0x9E3779B97F4A7C15ULL;

    /* The span loops are compiled twice, for AVX2 and for the baseline, the loader picking what
       the CPU runs (GCC on glibc; elsewhere the baseline only). Both give the same bits. */
    #include "simd.h"

    /* Elements first .. first + n - 1: mask = scale * (u53 >= threshold), y = x * mask. The 0/1
       keep bit is computed by arithmetic (u53 and threshold are below 2^53, so their difference
       wraps to a number with the top bit set iff u53 < threshold): a compare would become a
       branch, mispredicted half the time on a coin flip. y is a product, not a selection, so that
       inf and NaN in x propagate as in MatConvNet's mask .* x. */
    #define CNNX_DEFINE_DROPOUT(T, S)                                                              \
    CNNX_CLONES_AVX2 static void cnnx_dropout_##S(const T* x, T* y, T* mask, Py_ssize_t first,    \
                                                  Py_ssize_t n, uint64_t key, uint64_t threshold,  \
                                                  T scale) {                                       \
        uint64_t counter = key + (uint64_t)(first + 1) * CNNX_GAMMA;                               \
        for (Py_ssize_t i = 0; i < n; i++) {                                                       \
            uint64_t keep = (((cnnx_mix64(counter) >> 11) - threshold) >> 63) ^ 1;                \
            T m = scale * (T)keep;                                                                 \
            counter += CNNX_GAMMA;                                                                 \
            mask[i] = m;                                                                           \
            y[i] = x[i] * m;                                                                       \
        }                                                                                          \
    }                                                                                              \
    CNNX_CLONES_AVX2 static void cnnx_multiply_##S(const T* a, const T* b, T* out, Py_ssize_t n) { \
        for (Py_ssize_t i = 0; i < n; i++) out[i] = a[i] * b[i];                                   \
    }
    CNNX_DEFINE_DROPOUT(float, f)
    CNNX_DEFINE_DROPOUT(double, d)
    """
    uint64_t mix64 "cnnx_mix64"(uint64_t z) noexcept nogil
    void dropout_f "cnnx_dropout_f"(const float* x, float* y, float* mask, Py_ssize_t first,
                                    Py_ssize_t n, uint64_t key, uint64_t threshold,
                                    float scale) noexcept nogil
    void dropout_d "cnnx_dropout_d"(const double* x, double* y, double* mask, Py_ssize_t first,
                                    Py_ssize_t n, uint64_t key, uint64_t threshold,
                                    double scale) noexcept nogil
    void multiply_f "cnnx_multiply_f"(const float* a, const float* b, float* out,
                                      Py_ssize_t n) noexcept nogil
    void multiply_d "cnnx_multiply_d"(const double* a, const double* b, double* out,
                                      Py_ssize_t n) noexcept nogil

cnp.import_array()


cdef inline void dropout_span(const floating* x, floating* y, floating* mask, Py_ssize_t first,
                              Py_ssize_t n, uint64_t key, uint64_t threshold,
                              floating scale) noexcept nogil:
    if floating is float:
        dropout_f(x, y, mask, first, n, key, threshold, scale)
    else:
        dropout_d(x, y, mask, first, n, key, threshold, scale)


cdef inline void multiply_span(const floating* a, const floating* b, floating* out,
                               Py_ssize_t n) noexcept nogil:
    if floating is float:
        multiply_f(a, b, out, n)
    else:
        multiply_d(a, b, out, n)


cdef void dropout_forward_run(const floating* x, floating* y, floating* mask, Py_ssize_t n,
                              uint64_t seed, uint64_t threshold, double scale,
                              int n_threads) noexcept nogil:
    cdef Py_ssize_t span = (n + n_threads - 1) // n_threads
    cdef Py_ssize_t t, start
    # mixing the seed keeps the streams of nearby seeds (0, 1, 2, ...) unrelated
    cdef uint64_t key = mix64(seed)
    if n_threads == 1:  # skip the parallel region: on small tensors it costs more than the work
        dropout_span(x, y, mask, 0, n, key, threshold, <floating>scale)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        start = t * span
        if start < n:
            dropout_span(x + start, y + start, mask + start, start, min(span, n - start), key,
                         threshold, <floating>scale)


cdef void multiply_run(const floating* a, const floating* b, floating* out, Py_ssize_t n,
                       int n_threads) noexcept nogil:
    cdef Py_ssize_t span = (n + n_threads - 1) // n_threads
    cdef Py_ssize_t t, start
    if n_threads == 1:
        multiply_span(a, b, out, n)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        start = t * span
        if start < n:
            multiply_span(a + start, b + start, out + start, min(span, n - start))


# The entry points take whole arrays rather than memoryviews: on small tensors, acquiring buffers
# would cost as much as the work.
def dropout_forward(cnp.ndarray x, cnp.ndarray y, cnp.ndarray mask, uint64_t seed,
                    uint64_t threshold, double scale, int n_threads):
    """Draw mask = scale * (u >= rate) (threshold = ceil(rate * 2^53)) and set y = mask * x."""
    cdef int kind = float_kind("cnnx._ext.dropout.dropout_forward", x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void* xp = data_of(x, x, False)
    cdef void* yp = data_of(y, x, True)
    cdef void* mp = data_of(mask, x, True)
    with nogil:
        if kind == 0:
            dropout_forward_run(<const float*>xp, <float*>yp, <float*>mp, n, seed, threshold, scale,
                                n_threads)
        else:
            dropout_forward_run(<const double*>xp, <double*>yp, <double*>mp, n, seed, threshold,
                                scale, n_threads)


def multiply(cnp.ndarray a, cnp.ndarray b, cnp.ndarray out, int n_threads):
    """out = a * b elementwise (dropout's backward, and its forward with a given mask)."""
    cdef int kind = float_kind("cnnx._ext.dropout.multiply", a)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(a)
    cdef void* ap = data_of(a, a, False)
    cdef void* bp = data_of(b, a, False)
    cdef void* op = data_of(out, a, True)
    with nogil:
        if kind == 0:
            multiply_run(<const float*>ap, <const float*>bp, <float*>op, n, n_threads)
        else:
            multiply_run(<const double*>ap, <const double*>bp, <double*>op, n, n_threads)

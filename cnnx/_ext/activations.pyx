"""The activations' kernels over Fortran-ordered buffers: ReLU / leaky ReLU, ELU (and SELU), softplus,
tanh, SiLU, GELU (exact and tanh form) and clipped ReLU through one elementwise driver told the
activation by an ``Activation`` code, and PReLU.

Elementwise work is cut into one contiguous span per thread. The activations other than ReLU
compute each element in double (libm's expm1, log1p, tanh, cosh, erfc, in forms without
cancellation) and round it once to the array's type. The ReLU span loops are plain C compiled
twice, for AVX2 and for the baseline, the loader picking what the CPU runs (GCC on glibc; elsewhere
the baseline only): these loops stream memory, and with the baseline's 16-byte vectors they ran at
two thirds of the speed. Both versions give the same bits (no FMA is involved).

The PReLU slope gradient is a reduction: it is cut into tasks of at most SPAN pixels of one channel
of one image (boundaries set by the shape only), each task's partial sum is kept, and the partials
are added in task order, so the result does not depend on the thread count.
"""
cimport numpy as cnp
from .arrays cimport data_of, float_kind
from cython.parallel cimport prange
from cython cimport floating
from libc.stdlib cimport malloc, free
from libc.math cimport cosh, erfc, exp, expm1, fabs, log1p, tanh

cnp.import_array()

# Pixels per PReLU task: long enough to amortise scheduling, short enough to balance small batches.
cdef enum:
    SPAN = 4096

cdef extern from *:
    """
    #include <string.h>
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

    /* The same passes with the signs of x packed in bits: bit k of signs[b] is x[8b + k] > 0 (the
       span starts at a byte). Forward writes y as above (leaky: the leaky form) and the signs;
       backward takes the factor from the signs, with the bits of reading x. */
    /* Backward a byte at a time in GCC's vector extensions: its 8 bits as lane masks select each
       lane's factor bit for bit (an and-or of pos and neg), then one vector product. */
    #if defined(__GNUC__) || defined(__clang__)
    #define CNNX_DEFINE_RELU_BACK_SIGNS(T, S, I)                                                   \
    typedef T cnnx_v8##S __attribute__((vector_size(8 * sizeof(T)), aligned(sizeof(T))));          \
    typedef I cnnx_m8##S __attribute__((vector_size(8 * sizeof(T))));                              \
    CNNX_CLONES_AVX2 static void cnnx_relu_back_signs_##S(const unsigned char* signs,             \
                                                          const T* dzdy, T* dzdx, Py_ssize_t n,    \
                                                          T pos, T neg) {                          \
        const cnnx_m8##S lane = {1, 2, 4, 8, 16, 32, 64, 128};                                     \
        cnnx_v8##S posv = {pos, pos, pos, pos, pos, pos, pos, pos};                                \
        cnnx_v8##S negv = {neg, neg, neg, neg, neg, neg, neg, neg};                                \
        cnnx_m8##S posm, negm;                                                                     \
        memcpy(&posm, &posv, sizeof posm);                                                         \
        memcpy(&negm, &negv, sizeof negm);                                                         \
        for (Py_ssize_t b = 0; b < n / 8; b++) {                                                   \
            cnnx_m8##S take = ((cnnx_m8##S){0} + (I)signs[b] & lane) != 0;                         \
            cnnx_m8##S factor_bits = (posm & take) | (negm & ~take);                               \
            cnnx_v8##S factor, d;                                                                  \
            memcpy(&factor, &factor_bits, sizeof factor);                                          \
            memcpy(&d, dzdy + 8 * b, sizeof d);                                                    \
            d = d * factor;                                                                        \
            memcpy(dzdx + 8 * b, &d, sizeof d);                                                    \
        }                                                                                          \
        for (Py_ssize_t i = n - n % 8; i < n; i++)                                                 \
            dzdx[i] = dzdy[i] * ((signs[i >> 3] >> (i & 7)) & 1 ? pos : neg);                      \
    }
    #else
    #define CNNX_DEFINE_RELU_BACK_SIGNS(T, S, I)                                                   \
    static void cnnx_relu_back_signs_##S(const unsigned char* signs, const T* dzdy, T* dzdx,       \
                                         Py_ssize_t n, T pos, T neg) {                             \
        for (Py_ssize_t i = 0; i < n; i++)                                                         \
            dzdx[i] = dzdy[i] * ((signs[i >> 3] >> (i & 7)) & 1 ? pos : neg);                      \
    }
    #endif

    #define CNNX_DEFINE_RELU_SIGNS(T, S, I)                                                        \
    CNNX_CLONES_AVX2 static void cnnx_relu_signs_##S(const T* x, T* y, unsigned char* signs,      \
                                                     Py_ssize_t n, int leaky, T pos, T neg) {      \
        for (Py_ssize_t b = 0; b < (n + 7) / 8; b++) {                                             \
            Py_ssize_t i0 = 8 * b, k1 = n - i0 < 8 ? n - i0 : 8;                                   \
            unsigned bits = 0;                                                                     \
            for (Py_ssize_t k = 0; k < k1; k++) {                                                  \
                T v = x[i0 + k];                                                                   \
                bits |= (unsigned)(v > 0) << k;                                                    \
                y[i0 + k] = leaky ? v * (v > 0 ? pos : neg) : (v <= 0 ? (T)0 : v);                 \
            }                                                                                      \
            signs[b] = (unsigned char)bits;                                                        \
        }                                                                                          \
    }                                                                                              \
    CNNX_DEFINE_RELU_BACK_SIGNS(T, S, I)
    CNNX_DEFINE_RELU_SIGNS(float, f, int)
    CNNX_DEFINE_RELU_SIGNS(double, d, long long)
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
    void relu_signs_f "cnnx_relu_signs_f"(const float* x, float* y, unsigned char* signs, Py_ssize_t n,
                                          int leaky, float pos, float neg) noexcept nogil
    void relu_signs_d "cnnx_relu_signs_d"(const double* x, double* y, unsigned char* signs, Py_ssize_t n,
                                          int leaky, double pos, double neg) noexcept nogil
    void relu_back_signs_f "cnnx_relu_back_signs_f"(const unsigned char* signs, const float* dzdy,
                                                    float* dzdx, Py_ssize_t n, float pos,
                                                    float neg) noexcept nogil
    void relu_back_signs_d "cnnx_relu_back_signs_d"(const unsigned char* signs, const double* dzdy,
                                                    double* dzdx, Py_ssize_t n, double pos,
                                                    double neg) noexcept nogil


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


# The elementwise activations, named by the block functions; p and q are each one's parameters.
cpdef enum Activation:
    RELU          # p = leak: max(x, 0) (p = 0) or x * (x > 0 ? 1 : p)
    ELU           # p = alpha, q = scale: q * (x > 0 ? x : p * (exp(x) - 1)); SELU is ELU scaled
    SOFTPLUS      # log(1 + exp(x))
    TANH          # tanh(x)
    SILU          # x * sigmoid(x)
    GELU          # x * Phi(x), Phi the standard normal distribution function
    GELU_TANH     # x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
    CLIPPED_RELU  # p = ceiling: min(max(x, 0), p)

cdef enum:
    ACTIVATIONS = CLIPPED_RELU + 1

cdef double SQRT_HALF = 0.70710678118654752440         # 1 / sqrt(2)
cdef double INV_SQRT_2PI = 0.39894228040143267794      # 1 / sqrt(2 pi)
cdef double SQRT_2_OVER_PI = 0.79788456080286535588    # sqrt(2 / pi)
cdef double GELU_CUBIC = 0.044715


cdef inline double logistic(double v) noexcept nogil:
    """1 / (1 + exp(-v)), without overflow for large |v|."""
    cdef double e
    if v >= 0:
        return 1 / (1 + exp(-v))
    e = exp(v)
    return e / (1 + e)


cdef inline double gelu_tanh_argument(double v) noexcept nogil:
    """The argument u of tanh in the tanh approximation of GELU."""
    return SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v)


cdef inline double activation_value(int kind, double v, double p, double q) noexcept nogil:
    """The activation of one element, in double; NaN gives NaN."""
    if kind == ELU:
        return q * (v if v > 0 else p * expm1(v))
    if kind == SOFTPLUS:  # max(v, 0) + log(1 + exp(-|v|)): no overflow, full precision for v << 0
        return (v if v > 0 else 0) + log1p(exp(-fabs(v)))
    if kind == TANH:
        return tanh(v)
    if kind == SILU:
        return v * logistic(v)
    if kind == GELU:  # Phi(v) = erfc(-v / sqrt(2)) / 2, accurate in the lower tail (1 + erf is not)
        return v * (0.5 * erfc(-v * SQRT_HALF))
    if kind == GELU_TANH:  # (1 + tanh(u)) / 2 = logistic(2u), without 1 + tanh's cancellation for v << 0
        return v * logistic(2 * gelu_tanh_argument(v))
    # CLIPPED_RELU: written so that NaN passes through
    return 0 if v <= 0 else (p if v >= p else v)


cdef inline double activation_slope(int kind, double v, double p, double q) noexcept nogil:
    """The derivative of the activation at one element, in double; NaN gives NaN (0 for CLIPPED_RELU)."""
    cdef double s, c, two_u, s_times_1_minus_s
    if kind == ELU:  # at 0, the slope from the left (p * q), as ReLU's is its leak
        return q * (1 if v > 0 else p * exp(v))
    if kind == SOFTPLUS:
        return logistic(v)
    if kind == TANH:  # 1 - tanh(v)^2, without its cancellation where tanh(v) is near +-1
        c = cosh(v)
        return 1 / (c * c)
    if kind == SILU:
        s = logistic(v)
        return s * (1 + v * (1 - s))
    if kind == GELU:
        return 0.5 * erfc(-v * SQRT_HALF) + v * INV_SQRT_2PI * exp(-0.5 * v * v)
    if kind == GELU_TANH:  # d/dv of v * s, s = logistic(2u): s + v * s * (1 - s) * 2 du/dv
        two_u = 2 * gelu_tanh_argument(v)
        s = logistic(two_u)
        s_times_1_minus_s = s * logistic(-two_u)  # accurate near s = 1 too
        # where s is saturated the second term is 0, also where v^2 overflows a double
        return s + (0 if s_times_1_minus_s == 0 else
                    v * s_times_1_minus_s * 2 * SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * v * v))
    return 1 if v > 0 and v < p else 0


cdef inline void activation_span(int kind, const floating* x, const floating* dzdy, floating* out,
                                 Py_ssize_t start, Py_ssize_t stop, double p, double q) noexcept nogil:
    """Elements start to stop - 1 of the forward (dzdy NULL: out = y) or backward (out = dzdx = dzdy
    times the slope) pass.

    ReLU runs its C loops above, its factors computed in double, as MatConvNet's formula does, then
    rounded; the others compute each element in double and round it once to x's type.
    """
    cdef Py_ssize_t i
    cdef floating pos, neg
    if kind == RELU:
        pos = <floating>(p + (1.0 - p))
        neg = <floating>p
        if dzdy != NULL:
            relu_back_span(x + start, dzdy + start, out + start, stop - start, pos, neg)
        elif p == 0:
            relu_span(x + start, out + start, stop - start)
        else:
            leaky_span(x + start, out + start, stop - start, pos, neg)
    elif dzdy == NULL:
        for i in range(start, stop):
            out[i] = <floating>activation_value(kind, x[i], p, q)
    else:
        for i in range(start, stop):
            out[i] = <floating>(dzdy[i] * activation_slope(kind, x[i], p, q))


cdef void elementwise_run(int kind, const floating* x, const floating* dzdy, floating* out, Py_ssize_t n,
                          double p, double q, int n_threads) noexcept nogil:
    """activation_span over one contiguous span per thread (dzdy NULL: forward)."""
    cdef Py_ssize_t span = (n + n_threads - 1) // n_threads
    cdef Py_ssize_t t
    if n_threads == 1:  # skip the parallel region: on small tensors it costs more than the work
        activation_span(kind, x, dzdy, out, 0, n, p, q)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        if t * span < n:
            activation_span(kind, x, dzdy, out, t * span, min((t + 1) * span, n), p, q)


cdef int check_activation(str kernel, int kind) except -1:
    """A ValueError naming ``kernel`` unless ``kind`` is an ``Activation`` code."""
    if not 0 <= kind < ACTIVATIONS:
        raise ValueError(f"{kernel}: unknown activation {kind}")
    return 0


# The elementwise entry points take whole arrays rather than memoryviews: on the small tensors
# of a network's last layers, acquiring buffers would cost as much as the work.
def elementwise_forward(int kind, cnp.ndarray x, cnp.ndarray y, double p, double q, int n_threads):
    """y = the activation ``kind`` (an ``Activation``, with its parameters p and q) of x."""
    cdef str name = "cnnx._ext.activations.elementwise_forward"
    cdef int dtype = float_kind(name, x)
    cdef void* xp = data_of(x, x, False)
    cdef void* yp = data_of(y, x, True)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    check_activation(name, kind)
    with nogil:
        if dtype == 0:
            elementwise_run(kind, <const float*>xp, <const float*>NULL, <float*>yp, n, p, q, n_threads)
        else:
            elementwise_run(kind, <const double*>xp, <const double*>NULL, <double*>yp, n, p, q, n_threads)


def elementwise_backward(int kind, cnp.ndarray x, cnp.ndarray dzdy, cnp.ndarray dzdx, double p, double q,
                         int n_threads):
    """dzdx = dzdy * the derivative at x of the activation ``kind`` (with its parameters p and q)."""
    cdef str name = "cnnx._ext.activations.elementwise_backward"
    cdef int dtype = float_kind(name, x)
    cdef void* xp = data_of(x, x, False)
    cdef void* dyp = data_of(dzdy, x, False)
    cdef void* dxp = data_of(dzdx, x, True)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    check_activation(name, kind)
    with nogil:
        if dtype == 0:
            elementwise_run(kind, <const float*>xp, <const float*>dyp, <float*>dxp, n, p, q, n_threads)
        else:
            elementwise_run(kind, <const double*>xp, <const double*>dyp, <double*>dxp, n, p, q, n_threads)


cdef void relu_signs_run(const floating* x, const floating* dzdy, floating* out, unsigned char* signs,
                         Py_ssize_t n, double leak, int n_threads) noexcept nogil:
    """ReLU with packed signs over one span per thread, each a whole number of bytes of signs
    (dzdy NULL: forward, out = y and signs written; else out = dzdx from the signs)."""
    cdef Py_ssize_t span = (((n + n_threads - 1) // n_threads + 7) // 8) * 8
    cdef Py_ssize_t t, start, stop
    cdef floating pos = <floating>(leak + (1.0 - leak)), neg = <floating>leak
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        start = t * span
        stop = min(start + span, n)
        if start >= stop:
            continue
        if dzdy != NULL:
            if floating is float:
                relu_back_signs_f(signs + start // 8, dzdy + start, out + start, stop - start, pos, neg)
            else:
                relu_back_signs_d(signs + start // 8, dzdy + start, out + start, stop - start, pos, neg)
        elif floating is float:
            relu_signs_f(x + start, out + start, signs + start // 8, stop - start, leak != 0, pos, neg)
        else:
            relu_signs_d(x + start, out + start, signs + start // 8, stop - start, leak != 0, pos, neg)


def relu_signs(cnp.ndarray source, cnp.ndarray out, const unsigned char[::1] signs, bint backward, double leak,
               int n_threads):
    """The ReLU (leaky: ``leak``) with the signs of its input packed in ``signs`` (ceil(size / 8)
    bytes; bit k of byte b for element 8b + k in Fortran order). Forward: source is x, out = y, and
    the signs are written (a new array of the caller's). Backward: source is dzdy, out = dzdx from
    the signs, the bits of ``elementwise_backward`` at those inputs."""
    cdef str name = "cnnx._ext.activations.relu_signs"
    cdef int dtype = float_kind(name, source)
    cdef void* sp = data_of(source, source, False)
    cdef void* op = data_of(out, source, True)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(source)
    if signs.shape[0] != (n + 7) // 8:
        raise ValueError(f"{name}: signs must have {(n + 7) // 8} bytes, got {signs.shape[0]}")
    if n == 0:
        return
    cdef unsigned char* bits = <unsigned char*>&signs[0]
    with nogil:
        if dtype == 0 and backward:
            relu_signs_run(<const float*>NULL, <const float*>sp, <float*>op, bits, n, leak, n_threads)
        elif dtype == 0:
            relu_signs_run(<const float*>sp, <const float*>NULL, <float*>op, bits, n, leak, n_threads)
        elif backward:
            relu_signs_run(<const double*>NULL, <const double*>sp, <double*>op, bits, n, leak, n_threads)
        else:
            relu_signs_run(<const double*>sp, <const double*>NULL, <double*>op, bits, n, leak, n_threads)


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

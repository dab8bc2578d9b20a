"""The losses' kernels: the categorical losses of vl_nnloss (softmax log-loss, log, multiclass
hinge and structured hinge, top-1 and top-K errors) and its elementwise losses (binary error,
binary log-loss, logistic, hinge, L2), each giving the loss and, for backward, its gradient.

Categorical losses: the work is cut into tasks of at most BLOCK consecutive pixels of one image,
or of BLOCK images when each image has one pixel (boundaries set by the shape only). A task reads
its labels once (whole numbers up to C; 0 or less ignores the pixel) and keeps per-pixel scratch on
its stack. The softmax log-loss runs over the channels one at a time, so that its inner loops walk
the pixels (the softmax numerators go straight into the gradient's buffer); the other losses look
at one pixel's scores at a time. Elementwise losses: tasks of ELEMENTS consecutive elements. Each
task's loss is kept and the partials are added in task order, so the loss does not depend on the
thread count; the gradient is elementwise.
"""
from cython.parallel cimport prange
cimport numpy as cnp
from .arrays cimport float_kind
from cython cimport floating
from libc.math cimport INFINITY, exp, fabs, floor, log, log1p
from libc.stdlib cimport malloc, free

cnp.import_array()

cdef enum:
    BLOCK = 256
    ELEMENTS = 4096

# The loss types (vl_nnloss's names), as the entries take them.
cdef enum Kind:
    SOFTMAXLOG, LOG, MHINGE, MSHINGE, CLASSERROR, TOPKERROR,
    BINARYERROR, BINARYLOG, LOGISTIC, HINGE, L2

CATEGORICAL = {"softmaxlog": SOFTMAXLOG, "log": LOG, "mhinge": MHINGE, "mshinge": MSHINGE,
               "classerror": CLASSERROR, "topkerror": TOPKERROR}
ELEMENTWISE = {"binaryerror": BINARYERROR, "binarylog": BINARYLOG, "logistic": LOGISTIC,
               "hinge": HINGE, "l2": L2}


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* exp(v) for v <= 0 or NaN (softmax arguments x - max x), written so that compilers vectorise
       the loops calling it. v = n ln2 + r with n an integer and |r| <= ln2/2 (n is rounded by
       adding 1.5 * 2^mantissa_bits, whose low bits then hold n); exp(r) from its Taylor series,
       truncated below the type's rounding error; 2^n written into the exponent bits. v below LOW
       (where 2^n would leave the normal range) gives 0. Selections are bit masks from integer
       compares: floating-point compares in a branch would stop the vectoriser (they may trap). */
    static inline float cnnx_exp_nonpos_f(float v) {
        const float magic = 12582912.0f, low = -87.0f;
        const int32_t magic_bits = 0x4B400000, abs_low_bits = 0x42AE0000, inf_bits = 0x7F800000;
        int32_t v_bits, abs_bits, tiny, s_bits, scale_bits, e_bits;
        float c, s, n, scale, r, p;
        memcpy(&v_bits, &v, sizeof v);
        abs_bits = v_bits & 0x7FFFFFFF;
        tiny = -(int32_t)((abs_bits > abs_low_bits) & (abs_bits <= inf_bits));  /* v < low, not NaN */
        memcpy(&s_bits, &low, sizeof low);
        s_bits = (tiny & s_bits) | (~tiny & v_bits);
        memcpy(&c, &s_bits, sizeof c);
        s = c * 1.44269504088896341f + magic;
        n = s - magic;
        memcpy(&s_bits, &s, sizeof s);
        scale_bits = (s_bits - magic_bits + 127) << 23;
        memcpy(&scale, &scale_bits, sizeof scale);
        r = (c - n * 0.693359375f) - n * -2.12194440e-4f;  /* ln2 in two parts for accuracy */
        p = 1.0f / 5040;
        p = p * r + 1.0f / 720;
        p = p * r + 1.0f / 120;
        p = p * r + 1.0f / 24;
        p = p * r + 1.0f / 6;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        p = p * scale;
        memcpy(&e_bits, &p, sizeof p);
        e_bits &= ~tiny;
        memcpy(&p, &e_bits, sizeof p);
        return p;
    }
    static inline double cnnx_exp_nonpos_d(double v) {
        const double magic = 6755399441055744.0, low = -708.0;
        const int64_t magic_bits = 0x4338000000000000LL, abs_low_bits = 0x4086200000000000LL,
                      inf_bits = 0x7FF0000000000000LL;
        int64_t v_bits, abs_bits, tiny, s_bits, scale_bits, e_bits;
        double c, s, n, scale, r, p;
        memcpy(&v_bits, &v, sizeof v);
        abs_bits = v_bits & 0x7FFFFFFFFFFFFFFFLL;
        tiny = -(int64_t)((abs_bits > abs_low_bits) & (abs_bits <= inf_bits));
        memcpy(&s_bits, &low, sizeof low);
        s_bits = (tiny & s_bits) | (~tiny & v_bits);
        memcpy(&c, &s_bits, sizeof c);
        s = c * 1.4426950408889634 + magic;
        n = s - magic;
        memcpy(&s_bits, &s, sizeof s);
        scale_bits = (s_bits - magic_bits + 1023) << 52;
        memcpy(&scale, &scale_bits, sizeof scale);
        r = (c - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
        p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        p = p * scale;
        memcpy(&e_bits, &p, sizeof p);
        e_bits &= ~tiny;
        memcpy(&p, &e_bits, sizeof p);
        return p;
    }

    /* log(t) for t >= 1 or NaN (a softmax denominator), written to vectorise like the exp above:
       t = 2^e m with m in [sqrt(1/2), sqrt(2)) (e from the bits: t >= 1 makes the difference with
       sqrt(1/2)'s bits positive, so logical shifts suffice), log m = 2 atanh(s), s = (m-1)/(m+1),
       from its series (truncation below double rounding). Adding t - t turns NaN into NaN. */
    static inline double cnnx_log_ge1(double t) {
        const uint64_t sqrt_half_bits = 0x3FE6A09E667F3BCDULL, magic_bits = 0x4330000000000000ULL;
        uint64_t bits, e, m_bits, e_bits;
        double m, s, s2, p, e_value;
        memcpy(&bits, &t, sizeof t);
        e = (bits - sqrt_half_bits) >> 52;
        m_bits = bits - (e << 52);
        memcpy(&m, &m_bits, sizeof m);
        e_bits = e | magic_bits;                         /* 2^52 + e, converted without cvtqq2pd */
        memcpy(&e_value, &e_bits, sizeof e_value);
        e_value -= 4503599627370496.0;
        s = (m - 1) / (m + 1);
        s2 = s * s;
        p = 1.0 / 19;
        p = p * s2 + 1.0 / 17;
        p = p * s2 + 1.0 / 15;
        p = p * s2 + 1.0 / 13;
        p = p * s2 + 1.0 / 11;
        p = p * s2 + 1.0 / 9;
        p = p * s2 + 1.0 / 7;
        p = p * s2 + 1.0 / 5;
        p = p * s2 + 1.0 / 3;
        p = p * s2 + 1.0;
        return e_value * 6.93147180369123816490e-01
               + (2 * s * p + e_value * 1.90821492927058770002e-10) + (t - t);
    }

    /* The loops that call exp and log are compiled for AVX-512, AVX2 and the baseline, and the
       loader picks the best the CPU runs (GCC on glibc; elsewhere the baseline only). The AVX2
       and baseline versions give the same bits; the AVX-512 one fuses multiply-adds, which may
       change the last bit of an exp or log (never with the thread count). */
    #include "simd.h"

    #define CNNX_DEFINE_LOOPS(T, SUFFIX)                                                         \
    CNNX_CLONES_AVX512 static void cnnx_exp_sum_##SUFFIX(const T* x, Py_ssize_t step, const T* top,  \
                                                       T* total, T* out, Py_ssize_t n) {           \
        Py_ssize_t p;                                                                              \
        T e;                                                                                       \
        if (step == 1 && out == NULL) {                                                            \
            for (p = 0; p < n; p++) total[p] += cnnx_exp_nonpos_##SUFFIX(x[p] - top[p]);           \
        } else if (step == 1) {                                                                    \
            for (p = 0; p < n; p++) {                                                              \
                e = cnnx_exp_nonpos_##SUFFIX(x[p] - top[p]);                                       \
                total[p] += e;                                                                     \
                out[p] = e;                                                                        \
            }                                                                                      \
        } else {                                                                                   \
            for (p = 0; p < n; p++) {                                                              \
                e = cnnx_exp_nonpos_##SUFFIX(x[p * step] - top[p]);                                \
                total[p] += e;                                                                     \
                if (out != NULL) out[p * step] = e;                                                \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    CNNX_CLONES_AVX512 static void cnnx_log_all_##SUFFIX(const T* t, double* out, Py_ssize_t n) {    \
        for (Py_ssize_t p = 0; p < n; p++) out[p] = cnnx_log_ge1(t[p]);                            \
    }                                                                                              \
    CNNX_CLONES_AVX512 static void cnnx_max_update_##SUFFIX(const T* x, Py_ssize_t step, T* top,    \
                                                          Py_ssize_t n) {                          \
        Py_ssize_t p;                                                                              \
        if (step == 1) {                                                                           \
            for (p = 0; p < n; p++) top[p] = x[p] > top[p] ? x[p] : top[p];                        \
        } else {                                                                                   \
            for (p = 0; p < n; p++) top[p] = x[p * step] > top[p] ? x[p * step] : top[p];          \
        }                                                                                          \
    }                                                                                              \
    CNNX_CLONES_AVX512 static void cnnx_scale_##SUFFIX(T* d, Py_ssize_t step, const T* inv,         \
                                                     const T* factor, Py_ssize_t n) {              \
        Py_ssize_t p;                                                                              \
        if (step == 1) {                                                                           \
            for (p = 0; p < n; p++) d[p] = d[p] * inv[p] * factor[p];                              \
        } else {                                                                                   \
            for (p = 0; p < n; p++) d[p * step] = d[p * step] * inv[p] * factor[p];                \
        }                                                                                          \
    }
    CNNX_DEFINE_LOOPS(float, f)
    CNNX_DEFINE_LOOPS(double, d)
    """
    void exp_sum_f "cnnx_exp_sum_f"(const float* x, Py_ssize_t step, const float* top,
                                    float* total, float* out, Py_ssize_t n) noexcept nogil
    void exp_sum_d "cnnx_exp_sum_d"(const double* x, Py_ssize_t step, const double* top,
                                    double* total, double* out, Py_ssize_t n) noexcept nogil
    void log_all_f "cnnx_log_all_f"(const float* t, double* out, Py_ssize_t n) noexcept nogil
    void log_all_d "cnnx_log_all_d"(const double* t, double* out, Py_ssize_t n) noexcept nogil
    void max_update_f "cnnx_max_update_f"(const float* x, Py_ssize_t step, float* top,
                                          Py_ssize_t n) noexcept nogil
    void max_update_d "cnnx_max_update_d"(const double* x, Py_ssize_t step, double* top,
                                          Py_ssize_t n) noexcept nogil
    void scale_f "cnnx_scale_f"(float* d, Py_ssize_t step, const float* inv, const float* factor,
                                Py_ssize_t n) noexcept nogil
    void scale_d "cnnx_scale_d"(double* d, Py_ssize_t step, const double* inv,
                                const double* factor, Py_ssize_t n) noexcept nogil


cdef inline void exp_sum(const floating* x, Py_ssize_t step, const floating* top, floating* total,
                         floating* out, Py_ssize_t n) noexcept nogil:
    """total[p] += e = exp(x[p * step] - top[p]) for p < n, also storing e in out[p * step] unless
    out is NULL."""
    if floating is float:
        exp_sum_f(x, step, top, total, out, n)
    else:
        exp_sum_d(x, step, top, total, out, n)


cdef inline void log_all(const floating* t, double* out, Py_ssize_t n) noexcept nogil:
    """out[p] = log(t[p]) for t[p] >= 1 or NaN."""
    if floating is float:
        log_all_f(t, out, n)
    else:
        log_all_d(t, out, n)


cdef inline void max_update(const floating* x, Py_ssize_t step, floating* top,
                            Py_ssize_t n) noexcept nogil:
    """top[p] = max(top[p], x[p * step]) for p < n (a NaN in x is skipped here; exp passes it on)."""
    if floating is float:
        max_update_f(x, step, top, n)
    else:
        max_update_d(x, step, top, n)


cdef inline void scale(floating* d, Py_ssize_t step, const floating* inv, const floating* factor,
                       Py_ssize_t n) noexcept nogil:
    """d[p * step] *= inv[p] * factor[p] (in that order) for p < n."""
    if floating is float:
        scale_f(d, step, inv, factor, n)
    else:
        scale_d(d, step, inv, factor, n)


cdef inline bint read_targets(const double* labels, Py_ssize_t label_step, const double* weights,
                              Py_ssize_t npix, Py_ssize_t channels, Py_ssize_t* target,
                              double* mass) noexcept nogil:
    """target[p]: the 0-based class of pixel p (-1: ignored), mass[p] its weight (0 if ignored).

    ``labels[p * label_step]`` is the 1-based class (0 or less: ignored) and, when ``weights`` is
    not NULL, ``weights[p * label_step]`` the weight. Returns whether a label is not a whole number
    of at most ``channels`` (that pixel is then ignored).
    """
    cdef bint bad = False
    cdef Py_ssize_t p
    cdef double label
    for p in range(npix):
        label = labels[p * label_step]
        # NaN fails the first test, infinities the last two
        if not (label <= channels and label == floor(label) and label > -INFINITY):
            bad = True
            label = 0
        if label <= 0:
            target[p] = -1
            mass[p] = 0
        else:
            target[p] = <Py_ssize_t>label - 1
            mass[p] = 1 if weights == NULL else weights[p * label_step]
    return bad


cdef inline double softmaxlog_block(const floating* x, Py_ssize_t pixel_step, Py_ssize_t channel_step,
                                    Py_ssize_t npix, Py_ssize_t channels, const Py_ssize_t* target,
                                    const double* mass, floating* dzdx, double dzdy) noexcept nogil:
    """Softmax log-loss of ``npix`` pixels, x[p * pixel_step + k * channel_step] being channel k of
    pixel p, with the targets and weights of :func:`read_targets`.

    Writes dzdx (laid out as x) unless it is NULL. The loops over pixels are the C ones above,
    vectorised for pixel_step 1 (pixels of an image).
    """
    cdef floating top[BLOCK]
    cdef floating inv[BLOCK]
    cdef floating factor[BLOCK]
    cdef floating target_exp[BLOCK]
    # sums of at most C terms in (0, 1], one of them 1: x's precision is enough, and float sums
    # keep float32's vector loops twice as wide
    cdef floating total[BLOCK]
    cdef double log_total[BLOCK]
    cdef Py_ssize_t p, k
    cdef double loss = 0
    # stable log-sum-exp: subtract the largest score of each pixel (channel by channel, so that
    # the inner loops run over pixels)
    for p in range(npix):
        top[p] = x[p * pixel_step]
        total[p] = 0
    for k in range(1, channels):
        max_update(x + channel_step * k, pixel_step, top, npix)
    for k in range(channels):
        # the softmax numerators go to dzdx, normalised below
        exp_sum(x + channel_step * k, pixel_step, top, total,
                NULL if dzdx == NULL else dzdx + channel_step * k, npix)
    log_all(total, log_total, npix)  # total >= 1: the top score contributes exp(0)
    for p in range(npix):
        if target[p] >= 0:
            loss += mass[p] * (top[p] + log_total[p] - x[p * pixel_step + channel_step * target[p]])
    if dzdx == NULL:
        return loss
    # dzdx = (softmax - onehot) * mass * dzdy: scale every channel, then fix the target's entry
    for p in range(npix):
        inv[p] = <floating>(1.0 / total[p])
        factor[p] = <floating>(mass[p] * dzdy)
        target_exp[p] = dzdx[p * pixel_step + channel_step * target[p]] if target[p] >= 0 else 0
    for k in range(channels):
        scale(dzdx + channel_step * k, pixel_step, inv, factor, npix)
    for p in range(npix):
        if target[p] >= 0:
            dzdx[p * pixel_step + channel_step * target[p]] = (target_exp[p] * inv[p] - 1) * factor[p]
        else:
            for k in range(channels):
                dzdx[p * pixel_step + channel_step * k] = 0  # ignored: exactly 0 even for inf/NaN x
    return loss


cdef inline double hinge(double margin) noexcept nogil:
    """max(0, margin), NaN passed on."""
    return 0 if margin <= 0 else margin


cdef inline bint ranks_before(double a, Py_ssize_t i, double b, Py_ssize_t j) noexcept nogil:
    """Whether score a (class i) comes before score b (class j) in MATLAB's stable descending sort,
    which puts NaN first."""
    if a != a or b != b:
        return a != a and (b == b or i < j)
    return a > b or (a == b and i < j)


cdef inline double pixel_loss(int kind, const floating* x, Py_ssize_t step, Py_ssize_t channels,
                              Py_ssize_t c, double mass, floating* dx, double dzdy,
                              Py_ssize_t top_k) noexcept nogil:
    """Loss ``kind`` (not SOFTMAXLOG) of one pixel of class c >= 0, x[k * step] its score of class
    k, weighted by ``mass``; writes the gradient to dx[k * step] (zeroed first) unless dx is NULL.

    The margins and their tests are computed in x's precision, as MatConvNet does; a NaN score
    gives a NaN loss and no gradient (MatConvNet's loss is 0 there, as MATLAB's max drops NaN).
    """
    cdef Py_ssize_t k, best
    cdef floating xc = x[c * step], v
    cdef floating factor = <floating>(mass * dzdy)
    if dx != NULL:
        for k in range(channels):
            dx[k * step] = 0
    if kind == LOG:
        if dx != NULL:
            dx[c * step] = -factor / (xc if xc > <floating>1e-8 else <floating>1e-8)  # max() drops NaN
        return mass * -log(xc)
    if kind == MHINGE:
        if dx != NULL and xc < 1:
            dx[c * step] = -factor
        return mass * hinge(1 - xc)
    if kind == MSHINGE:
        # the best other class: the first maximum, a NaN before all (so that it propagates)
        best = -1
        for k in range(channels):
            if k != c and (best < 0 or ranks_before(x[k * step], k, x[best * step], best)):
                best = k
        if best < 0:  # a single class: no other to beat
            return 0
        v = x[best * step]
        if dx != NULL and xc - v < 1:
            dx[c * step] = -factor
            dx[best * step] = factor
        return mass * hinge(1 - xc + v)
    if kind == CLASSERROR:
        # MATLAB's max: the first maximum, NaN never chosen unless all are NaN
        best = 0
        for k in range(1, channels):
            v = x[k * step]
            if v > x[best * step] or (x[best * step] != x[best * step] and v == v):
                best = k
        return mass if best != c else 0
    # TOPKERROR: the class's rank in MATLAB's stable descending sort
    best = 0
    for k in range(channels):
        if k != c and ranks_before(x[k * step], k, xc, c):
            best += 1
    return mass if best >= top_k else 0


cdef inline double block_loss(int kind, const floating* x, Py_ssize_t pixel_step, Py_ssize_t channel_step,
                              Py_ssize_t npix, Py_ssize_t channels, const double* labels,
                              Py_ssize_t label_step, const double* weights, floating* dzdx,
                              double dzdy, Py_ssize_t top_k, bint* bad) noexcept nogil:
    """Loss ``kind`` of ``npix`` pixels (see :func:`softmaxlog_block` for the layout and
    :func:`read_targets` for the labels); sets ``bad`` for a label that is not valid."""
    cdef Py_ssize_t target[BLOCK]
    cdef double mass[BLOCK]
    cdef Py_ssize_t p, k
    cdef double loss = 0
    bad[0] = read_targets(labels, label_step, weights, npix, channels, target, mass)
    if kind == SOFTMAXLOG:
        return softmaxlog_block(x, pixel_step, channel_step, npix, channels, target, mass, dzdx, dzdy)
    for p in range(npix):
        if target[p] >= 0:
            loss += pixel_loss(kind, x + p * pixel_step, channel_step, channels, target[p], mass[p],
                               NULL if dzdx == NULL else dzdx + p * pixel_step, dzdy, top_k)
        elif dzdx != NULL:
            for k in range(channels):
                dzdx[p * pixel_step + channel_step * k] = 0
    return loss


def _categorical(const floating[::1, :, :] x, const double[::1, :, :] c, floating[::1, :, :] dzdx,
                 double dzdy, int kind, Py_ssize_t top_k, int n_threads):
    """Return (loss summed over pixels and images, labels valid); fill dzdx unless it is None.

    x is (H*W, C, N); c is (H*W or 1, 1 or 2, N): labels in channel 0, optional weights in channel
    1, a first dimension of 1 meaning one label per image. dzdx, when given, is x's shape.
    ``kind`` is a value of CATEGORICAL, ``top_k`` TOPKERROR's K.

    A task is a block of at most BLOCK pixels of one image or, when images have a single pixel
    (a classifier's output), a block of BLOCK images.
    """
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t blocks = (hw + BLOCK - 1) // BLOCK if hw > 1 else (images + BLOCK - 1) // BLOCK
    cdef Py_ssize_t tasks = blocks * images if hw > 1 else blocks
    cdef Py_ssize_t label_step = 1 if c.shape[0] > 1 else 0
    cdef Py_ssize_t depth = c.shape[1]
    cdef bint with_weights = depth == 2
    cdef bint with_grad = dzdx is not None
    cdef Py_ssize_t t, q, n, first
    cdef double loss = 0
    cdef double* partial
    cdef bint* bad
    if hw == 0 or images == 0 or channels == 0:
        return 0.0, True
    partial = <double*>malloc(tasks * sizeof(double))
    bad = <bint*>malloc(tasks * sizeof(bint))
    if partial == NULL or bad == NULL:
        free(partial)
        free(bad)
        raise MemoryError()
    try:
        if hw > 1:
            for t in prange(tasks, nogil=True, num_threads=n_threads, schedule='static'):
                q = t % blocks
                n = t // blocks
                first = q * BLOCK
                partial[t] = block_loss(
                    kind, &x[first, 0, n], 1, hw, min(BLOCK, hw - first), channels,
                    &c[first * label_step, 0, n], label_step,
                    &c[first * label_step, 1, n] if with_weights else NULL,
                    &dzdx[first, 0, n] if with_grad else NULL, dzdy, top_k, &bad[t])
        else:
            for t in prange(tasks, nogil=True, num_threads=n_threads, schedule='static'):
                first = t * BLOCK
                partial[t] = block_loss(
                    kind, &x[0, 0, first], channels, 1, min(BLOCK, images - first), channels,
                    &c[0, 0, first], depth, &c[0, 1, first] if with_weights else NULL,
                    &dzdx[0, 0, first] if with_grad else NULL, dzdy, top_k, &bad[t])
        for t in range(tasks):
            loss += partial[t]
            if bad[t]:
                return loss, False
        return loss, True
    finally:
        free(partial)
        free(bad)


def categorical(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_categorical``."""
    float_kind("cnnx._ext.softmaxloss.categorical", x)
    return _categorical(x, *args)


cdef inline double element_loss(int kind, double x, double c, double threshold, double factor,
                                double* grad) noexcept nogil:
    """The per-element loss ``kind`` (a value of ELEMENTWISE) of score x and label (or target) c,
    unweighted; grad[0] gets its derivative times ``factor`` (for HINGE as :func:`pixel_loss`'s
    hinges: a NaN score gives a NaN loss and no gradient)."""
    cdef double a
    if kind == BINARYERROR:
        a = x - threshold
        grad[0] = 0
        return 0 if (a > 0) - (a < 0) == c else 1  # sign(x - threshold) != c; NaN: an error
    if kind == BINARYLOG:
        grad[0] = -factor / (x + (c - 1) * 0.5)
        return -log(c * (x - 0.5) + 0.5)
    if kind == LOGISTIC:
        a = -c * x
        grad[0] = -factor * c / (1 + exp(c * x))
        return (a if a > 0 else 0) + log1p(exp(-fabs(a)))
    if kind == HINGE:
        grad[0] = -factor * c if c * x < 1 else 0
        return hinge(1 - c * x)
    a = x - c  # L2
    grad[0] = 2 * factor * a
    return a * a


cdef inline double elements_loss(int kind, const floating* x, const double* c, const double* w,
                                 floating* dzdx, Py_ssize_t n, double dzdy, double threshold,
                                 bint ignore_zero) noexcept nogil:
    """Loss of n elements, each weighted by w[i] (1 if w is NULL); a label 0 ignores its element
    when ``ignore_zero``. Writes dzdx unless it is NULL."""
    cdef Py_ssize_t i
    cdef double mass, grad, loss = 0, t
    for i in range(n):
        mass = 1 if w == NULL else w[i]
        if ignore_zero and c[i] == 0:
            if dzdx != NULL:
                dzdx[i] = 0  # ignored: exactly 0 whatever x is
            continue
        t = element_loss(kind, x[i], c[i], threshold, mass * dzdy, &grad)
        loss += mass * t
        if dzdx != NULL:
            dzdx[i] = <floating>grad
    return loss


def _elementwise(const floating[::1] x, const double[::1] c, const double[::1] w, floating[::1] dzdx,
                 double dzdy, int kind, double threshold, bint ignore_zero, int n_threads):
    """Return the loss summed over the elements of x; fill dzdx unless it is None.

    c (labels or targets) has x's size, as do the weights w (None: all 1) and dzdx. ``kind`` is a
    value of ELEMENTWISE; a label 0 ignores its element when ``ignore_zero``.
    """
    cdef Py_ssize_t size = x.shape[0]
    cdef Py_ssize_t tasks = (size + ELEMENTS - 1) // ELEMENTS
    cdef bint with_weights = w is not None
    cdef bint with_grad = dzdx is not None
    cdef Py_ssize_t t, first
    cdef double loss = 0
    cdef double* partial
    if size == 0:
        return 0.0
    partial = <double*>malloc(tasks * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    try:
        for t in prange(tasks, nogil=True, num_threads=n_threads, schedule='static'):
            first = t * ELEMENTS
            partial[t] = elements_loss(kind, &x[first], &c[first], &w[first] if with_weights else NULL,
                                       &dzdx[first] if with_grad else NULL, min(ELEMENTS, size - first),
                                       dzdy, threshold, ignore_zero)
        for t in range(tasks):
            loss += partial[t]
        return loss
    finally:
        free(partial)


def elementwise(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_elementwise``."""
    float_kind("cnnx._ext.softmaxloss.elementwise", x)
    return _elementwise(x, *args)

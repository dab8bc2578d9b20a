"""Softmax log-loss kernel: the loss and, for backward, its gradient, in one kernel.

The work is cut into tasks of at most BLOCK consecutive pixels of one image, or of BLOCK images
when each image has one pixel (boundaries set by the shape only). A task keeps per-pixel scratch
on its stack (the softmax numerators go straight into the gradient's buffer) and runs over the
channels one at a time, so the inner loops walk the pixels. Each task's loss is kept and the
partials are added in task order, so the loss does not depend on the thread count; the gradient
is elementwise.
"""
from cython.parallel cimport prange
cimport numpy as cnp
from .arrays cimport float_kind
from cython cimport floating
from libc.stdlib cimport malloc, free

cnp.import_array()

cdef enum:
    BLOCK = 256


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


cdef inline double block_loss(const floating* x, Py_ssize_t pixel_step, Py_ssize_t channel_step,
                              Py_ssize_t npix, Py_ssize_t channels, const double* labels,
                              Py_ssize_t label_step, const double* weights, floating* dzdx,
                              double dzdy, bint* bad) noexcept nogil:
    """Loss of ``npix`` pixels, x[p * pixel_step + k * channel_step] being channel k of pixel p.

    Writes dzdx (laid out as x) unless it is NULL. ``labels[p * label_step]`` is the 1-based class
    of pixel p (0: ignored) and, when ``weights`` is not NULL, ``weights[p * label_step]`` its
    weight. Sets ``bad`` for a label that is not an integer in 0..channels (that pixel is ignored).
    The loops over pixels are the C ones above, vectorised for pixel_step 1 (pixels of an image).
    """
    cdef floating top[BLOCK]
    cdef floating inv[BLOCK]
    cdef floating factor[BLOCK]
    cdef floating target_exp[BLOCK]
    # sums of at most C terms in (0, 1], one of them 1: x's precision is enough, and float sums
    # keep float32's vector loops twice as wide
    cdef floating total[BLOCK]
    cdef double mass[BLOCK]
    cdef double log_total[BLOCK]
    cdef Py_ssize_t target[BLOCK]
    cdef Py_ssize_t p, k
    cdef double label, loss = 0
    for p in range(npix):
        label = labels[p * label_step]
        # whole number in 0..channels (the cast is in range once the bounds hold; NaN fails them)
        if not (label >= 0 and label <= channels and label == <double><Py_ssize_t>label):
            bad[0] = True
            label = 0
        target[p] = <Py_ssize_t>label - 1  # -1 marks an ignored pixel
        mass[p] = 0 if label == 0 else (1 if weights == NULL else weights[p * label_step])
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


def _softmaxloss(const floating[::1, :, :] x, const double[::1, :, :] c, floating[::1, :, :] dzdx,
                 double dzdy, int n_threads):
    """Return (loss summed over pixels and images, labels valid); fill dzdx unless it is None.

    x is (H*W, C, N); c is (H*W or 1, 1 or 2, N): labels in channel 0, optional weights in channel
    1, a first dimension of 1 meaning one label per image. dzdx, when given, is x's shape.

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
                bad[t] = False
                partial[t] = block_loss(
                    &x[first, 0, n], 1, hw, min(BLOCK, hw - first), channels,
                    &c[first * label_step, 0, n], label_step,
                    &c[first * label_step, 1, n] if with_weights else NULL,
                    &dzdx[first, 0, n] if with_grad else NULL, dzdy, &bad[t])
        else:
            for t in prange(tasks, nogil=True, num_threads=n_threads, schedule='static'):
                first = t * BLOCK
                bad[t] = False
                partial[t] = block_loss(
                    &x[0, 0, first], channels, 1, min(BLOCK, images - first), channels,
                    &c[0, 0, first], depth, &c[0, 1, first] if with_weights else NULL,
                    &dzdx[0, 0, first] if with_grad else NULL, dzdy, &bad[t])
        for t in range(tasks):
            loss += partial[t]
            if bad[t]:
                return loss, False
        return loss, True
    finally:
        free(partial)
        free(bad)


def softmaxloss(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_softmaxloss``."""
    float_kind("cnnx._ext.softmaxloss.softmaxloss", x)
    return _softmaxloss(x, *args)

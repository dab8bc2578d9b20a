/* Matrix transposes for the convolution kernels: t[c + ldt*r] = a[r + lda*c] (+ row_add[r]).

   The implicit GEMMs turn every image from MatConvNet's pixels-first layout to channels first and
   their results back, so these copies run once per image and layer; written as scalar loops they
   cost about as much as the GEMM of a 3-channel layer. On CPUs with AVX2 the float version moves
   8 x 8 blocks through registers (unpack, shuffle and lane-permute steps); the edges, double
   precision and other CPUs use the blocked scalar loop. Both give the same bits: each element is a
   copy, or one rounded addition of its row's value. */
#ifndef CNNX_TRANSPOSE_H
#define CNNX_TRANSPOSE_H

#include <stddef.h>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define CNNX_TRANSPOSE_AVX2 1
#include <immintrin.h>
#else
#define CNNX_TRANSPOSE_AVX2 0
#endif

/* The rows [r0, r1) x columns [c0, c1) of the transpose, one element at a time; rows cut into
   blocks of 16 so that the writes stay within a few cache lines. */
#define CNNX_TRANSPOSE_SCALAR(T, a, lda, r0, r1, c0, c1, t, ldt, row_add)                       \
    {                                                                                            \
        ptrdiff_t rb, r, c;                                                                      \
        for (rb = (r0); rb < (r1); rb += 16) {                                                   \
            ptrdiff_t re = rb + 16 < (r1) ? rb + 16 : (r1);                                      \
            for (c = (c0); c < (c1); c++)                                                        \
                for (r = rb; r < re; r++)                                                        \
                    (t)[c + (ldt) * r] = (row_add) ? (a)[r + (lda) * c] + (row_add)[r]           \
                                                   : (a)[r + (lda) * c];                         \
        }                                                                                        \
    }

static void cnnx_transpose_f64(const double* a, ptrdiff_t lda, ptrdiff_t rows, ptrdiff_t cols,
                               double* t, ptrdiff_t ldt, const double* row_add)
{
    CNNX_TRANSPOSE_SCALAR(double, a, lda, 0, rows, 0, cols, t, ldt, row_add)
}

#if CNNX_TRANSPOSE_AVX2
/* The 8 x 8 block at a (columns lda apart) into t (rows ldt apart). */
__attribute__((target("avx2"))) static inline void cnnx_transpose_8x8(const float* a, ptrdiff_t lda,
                                                                     float* t, ptrdiff_t ldt,
                                                                     const float* row_add)
{
    __m256 s[8], u[8], v[8];
    int i;
    for (i = 0; i < 8; i++)
        s[i] = _mm256_loadu_ps(a + lda * i);
    for (i = 0; i < 8; i += 2) {
        u[i] = _mm256_unpacklo_ps(s[i], s[i + 1]);
        u[i + 1] = _mm256_unpackhi_ps(s[i], s[i + 1]);
    }
    for (i = 0; i < 8; i += 4) {
        v[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
        v[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
        v[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
        v[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
    }
    for (i = 0; i < 4; i++) {
        s[i] = _mm256_permute2f128_ps(v[i], v[i + 4], 0x20);
        s[i + 4] = _mm256_permute2f128_ps(v[i], v[i + 4], 0x31);
    }
    for (i = 0; i < 8; i++) {
        if (row_add)
            s[i] = _mm256_add_ps(s[i], _mm256_set1_ps(row_add[i]));
        _mm256_storeu_ps(t + ldt * i, s[i]);
    }
}

__attribute__((target("avx2"))) static void cnnx_transpose_f32_avx2(const float* a, ptrdiff_t lda,
                                                                   ptrdiff_t rows, ptrdiff_t cols,
                                                                   float* t, ptrdiff_t ldt,
                                                                   const float* row_add)
{
    ptrdiff_t r8 = rows / 8 * 8, c8 = cols / 8 * 8, r, c;
    /* Along the rows of t, so that each of its 8 rows in flight is written contiguously. */
    for (r = 0; r < r8; r += 8)
        for (c = 0; c < c8; c += 8)
            cnnx_transpose_8x8(a + r + lda * c, lda, t + c + ldt * r, ldt, row_add ? row_add + r : NULL);
    CNNX_TRANSPOSE_SCALAR(float, a, lda, r8, rows, 0, cols, t, ldt, row_add)
    CNNX_TRANSPOSE_SCALAR(float, a, lda, 0, r8, c8, cols, t, ldt, row_add)
}
#endif

/* 1 when the AVX2 blocks may run (the CPU has AVX2); cnnx_transpose_init() sets it once. */
static int cnnx_transpose_vector = 0;

static void cnnx_transpose_init(void)
{
#if CNNX_TRANSPOSE_AVX2
    __builtin_cpu_init();
    cnnx_transpose_vector = __builtin_cpu_supports("avx2");
#endif
}

/* t[c + ldt*r] = a[r + lda*c] (+ row_add[r] unless NULL) for the rows x cols matrix a; ``vector``
   0 forces the scalar loop (the tests compare the two). */
static void cnnx_transpose_f32(const float* a, ptrdiff_t lda, ptrdiff_t rows, ptrdiff_t cols,
                               float* t, ptrdiff_t ldt, const float* row_add, int vector)
{
#if CNNX_TRANSPOSE_AVX2
    if (vector && cnnx_transpose_vector) {
        cnnx_transpose_f32_avx2(a, lda, rows, cols, t, ldt, row_add);
        return;
    }
#endif
    (void)vector;
    CNNX_TRANSPOSE_SCALAR(float, a, lda, 0, rows, 0, cols, t, ldt, row_add)
}

#endif

/* Convolution tiles with the output pixels of one image column as the vector dimension, for the
   forward pass ``implicit_columns`` (conv.pyx): MatConvNet's images are H-major (H x W x C), so
   MR consecutive output rows of a column (stride 1) read MR consecutive rows of the padded input
   column for every filter tap. The tile loads them in place, broadcasts the packed filters, and
   writes Y in place: neither the image nor the output is transposed, as the implicit GEMM of
   gemm.h needs (its vectors run over filters). The tile is the GEMM tile's shape (MR x NR of
   cnnx_tile_of, MR = 2 vectors) turned around: MR rows x NR filters.

   y[r + ldy*k] = bias[k] + sum over taps t of x[seg[t / run] + (t % run) * du + r] * fp[NR*t + k]
   for r < MR and k < NR: taps in runs of ``run`` (a filter column's rows, du apart) starting at
   the ``n_seg`` offsets ``seg`` (one per channel and filter column); ``fp`` holds the NR filters'
   weights tap after tap. Every output is one chain of multiply-adds in tap order, then the bias
   added (MatConvNet's order: the GEMM, then the biases), so results do not depend on the thread
   count. */
#ifndef CNNX_COLUMNS_H
#define CNNX_COLUMNS_H

#include "gemm.h"

typedef void (*cnnx_column_tile_fn)(ptrdiff_t n_seg, const ptrdiff_t* seg, ptrdiff_t run, ptrdiff_t du,
                                    const float* x, const float* fp, const float* bias, float* y,
                                    ptrdiff_t ldy);

#define CNNX_COLUMN_TILE(ISA, TARGET, VEC, LANES, LOADU, STOREU, ZERO, SET1, FMA, ADD, NR)          \
    TARGET static void cnnx_column_tile_##ISA##_##NR(ptrdiff_t n_seg, const ptrdiff_t* seg,          \
                                                     ptrdiff_t run, ptrdiff_t du, const float* x,    \
                                                     const float* fp, const float* bias, float* y,   \
                                                     ptrdiff_t ldy)                                  \
    {                                                                                                \
        VEC c0[NR], c1[NR];                                                                          \
        ptrdiff_t s, u;                                                                              \
        int j;                                                                                       \
        for (j = 0; j < NR; j++) {                                                                   \
            c0[j] = ZERO();                                                                          \
            c1[j] = ZERO();                                                                          \
        }                                                                                            \
        for (s = 0; s < n_seg; s++) {                                                                \
            const float* xp = x + seg[s];                                                            \
            for (u = 0; u < run; u++) {                                                              \
                VEC a0 = LOADU(xp);                                                                  \
                VEC a1 = LOADU(xp + LANES);                                                          \
                for (j = 0; j < NR; j++) {                                                           \
                    VEC fj = SET1(fp[j]);                                                            \
                    c0[j] = FMA(a0, fj, c0[j]);                                                      \
                    c1[j] = FMA(a1, fj, c1[j]);                                                      \
                }                                                                                    \
                xp += du;                                                                            \
                fp += NR;                                                                            \
            }                                                                                        \
        }                                                                                            \
        for (j = 0; j < NR; j++) {                                                                   \
            if (bias) {                                                                              \
                VEC bj = SET1(bias[j]);                                                              \
                c0[j] = ADD(c0[j], bj);                                                              \
                c1[j] = ADD(c1[j], bj);                                                              \
            }                                                                                        \
            STOREU(y + ldy * j, c0[j]);                                                              \
            STOREU(y + ldy * j + LANES, c1[j]);                                                      \
        }                                                                                            \
    }

/* The dispatch on the tile's width: one kernel per NR, so that the accumulators stay in registers. */
#define CNNX_COLUMN_TILE_SWITCH(ISA, TARGET, NRMAX)                                                  \
    TARGET static void cnnx_column_tile_##ISA(int nr, ptrdiff_t n_seg, const ptrdiff_t* seg,         \
                                              ptrdiff_t run, ptrdiff_t du, const float* x,           \
                                              const float* fp, const float* bias, float* y,          \
                                              ptrdiff_t ldy)                                         \
    {                                                                                                \
        static const cnnx_column_tile_fn tiles[NRMAX] = CNNX_COLUMN_TILES_##ISA;                     \
        tiles[(nr < 1 ? 1 : nr > NRMAX ? NRMAX : nr) - 1](n_seg, seg, run, du, x, fp, bias, y, ldy); \
    }

/* ---- portable: 8 rows (2 vectors of 4) ----------------------------------------------------- */
#if defined(__GNUC__) || defined(__clang__)
CNNX_INLINE cnnx_v4 cnnx_v4_add(cnnx_v4 a, cnnx_v4 b) { return a + b; }
#define CNNX_COLUMN_TILE_GENERIC(NR) CNNX_COLUMN_TILE(generic, , cnnx_v4, 4, cnnx_v4_loadu,       \
                                                      cnnx_v4_storeu, cnnx_v4_zero, cnnx_v4_set1,   \
                                                      cnnx_v4_madd, cnnx_v4_add, NR)
#else
#define CNNX_COLUMN_TILE_GENERIC(NR)                                                                 \
    static void cnnx_column_tile_generic_##NR(ptrdiff_t n_seg, const ptrdiff_t* seg, ptrdiff_t run,  \
                                              ptrdiff_t du, const float* x, const float* fp,         \
                                              const float* bias, float* y, ptrdiff_t ldy)            \
    {                                                                                                \
        float acc[NR][CNNX_GENERIC_MR];                                                              \
        ptrdiff_t s, u;                                                                              \
        int i, j;                                                                                    \
        for (j = 0; j < NR; j++)                                                                     \
            for (i = 0; i < CNNX_GENERIC_MR; i++)                                                    \
                acc[j][i] = 0.0f;                                                                    \
        for (s = 0; s < n_seg; s++) {                                                                \
            const float* xp = x + seg[s];                                                            \
            for (u = 0; u < run; u++) {                                                              \
                for (j = 0; j < NR; j++)                                                             \
                    for (i = 0; i < CNNX_GENERIC_MR; i++)                                            \
                        acc[j][i] += xp[i] * fp[j];                                                  \
                xp += du;                                                                            \
                fp += NR;                                                                            \
            }                                                                                        \
        }                                                                                            \
        for (j = 0; j < NR; j++)                                                                     \
            for (i = 0; i < CNNX_GENERIC_MR; i++)                                                    \
                y[i + ldy * j] = bias ? acc[j][i] + bias[j] : acc[j][i];                             \
    }
#endif
CNNX_COLUMN_TILE_GENERIC(1)
CNNX_COLUMN_TILE_GENERIC(2)
CNNX_COLUMN_TILE_GENERIC(3)
CNNX_COLUMN_TILE_GENERIC(4)
CNNX_COLUMN_TILE_GENERIC(5)
CNNX_COLUMN_TILE_GENERIC(6)
#define CNNX_COLUMN_TILES_generic                                                                    \
    {cnnx_column_tile_generic_1, cnnx_column_tile_generic_2, cnnx_column_tile_generic_3,            \
     cnnx_column_tile_generic_4, cnnx_column_tile_generic_5, cnnx_column_tile_generic_6}
CNNX_COLUMN_TILE_SWITCH(generic, , CNNX_GENERIC_NR)

#if CNNX_X86_KERNELS
/* ---- AVX2 + FMA: 16 rows x up to 6 filters ------------------------------------------------- */
#define CNNX_COLUMN_TILE_AVX2(NR) CNNX_COLUMN_TILE(avx2, CNNX_TARGET_AVX2, __m256, 8, _mm256_loadu_ps, \
                                                   _mm256_storeu_ps, _mm256_setzero_ps,             \
                                                   _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, NR)
CNNX_COLUMN_TILE_AVX2(1)
CNNX_COLUMN_TILE_AVX2(2)
CNNX_COLUMN_TILE_AVX2(3)
CNNX_COLUMN_TILE_AVX2(4)
CNNX_COLUMN_TILE_AVX2(5)
CNNX_COLUMN_TILE_AVX2(6)
#define CNNX_COLUMN_TILES_avx2                                                                       \
    {cnnx_column_tile_avx2_1, cnnx_column_tile_avx2_2, cnnx_column_tile_avx2_3,                     \
     cnnx_column_tile_avx2_4, cnnx_column_tile_avx2_5, cnnx_column_tile_avx2_6}
CNNX_COLUMN_TILE_SWITCH(avx2, CNNX_TARGET_AVX2, CNNX_AVX2_NR)

/* ---- AVX-512: 32 rows x up to 12 filters --------------------------------------------------- */
#define CNNX_COLUMN_TILE_AVX512(NR) CNNX_COLUMN_TILE(avx512, CNNX_TARGET_AVX512, __m512, 16,         \
                                                     _mm512_loadu_ps, _mm512_storeu_ps,             \
                                                     _mm512_setzero_ps, _mm512_set1_ps,             \
                                                     _mm512_fmadd_ps, _mm512_add_ps, NR)
CNNX_COLUMN_TILE_AVX512(1)
CNNX_COLUMN_TILE_AVX512(2)
CNNX_COLUMN_TILE_AVX512(3)
CNNX_COLUMN_TILE_AVX512(4)
CNNX_COLUMN_TILE_AVX512(5)
CNNX_COLUMN_TILE_AVX512(6)
CNNX_COLUMN_TILE_AVX512(7)
CNNX_COLUMN_TILE_AVX512(8)
CNNX_COLUMN_TILE_AVX512(9)
CNNX_COLUMN_TILE_AVX512(10)
CNNX_COLUMN_TILE_AVX512(11)
CNNX_COLUMN_TILE_AVX512(12)
#define CNNX_COLUMN_TILES_avx512                                                                     \
    {cnnx_column_tile_avx512_1, cnnx_column_tile_avx512_2, cnnx_column_tile_avx512_3,               \
     cnnx_column_tile_avx512_4, cnnx_column_tile_avx512_5, cnnx_column_tile_avx512_6,               \
     cnnx_column_tile_avx512_7, cnnx_column_tile_avx512_8, cnnx_column_tile_avx512_9,               \
     cnnx_column_tile_avx512_10, cnnx_column_tile_avx512_11, cnnx_column_tile_avx512_12}
CNNX_COLUMN_TILE_SWITCH(avx512, CNNX_TARGET_AVX512, CNNX_AVX512_NR)
#endif

/* One tile on ``isa`` (its MR rows and NR filters are cnnx_tile_of's), ``nr`` <= NR filters wide.
   The caller checked that the CPU supports ``isa``. */
static void cnnx_column_tile(int isa, int nr, ptrdiff_t n_seg, const ptrdiff_t* seg, ptrdiff_t run,
                             ptrdiff_t du, const float* x, const float* fp, const float* bias, float* y,
                             ptrdiff_t ldy)
{
#if CNNX_X86_KERNELS
    if (isa == CNNX_ISA_AVX512) {
        cnnx_column_tile_avx512(nr, n_seg, seg, run, du, x, fp, bias, y, ldy);
        return;
    }
    if (isa == CNNX_ISA_AVX2) {
        cnnx_column_tile_avx2(nr, n_seg, seg, run, du, x, fp, bias, y, ldy);
        return;
    }
#endif
    (void)isa;
    cnnx_column_tile_generic(nr, n_seg, seg, run, du, x, fp, bias, y, ldy);
}

#endif

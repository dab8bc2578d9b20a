/* cnnx's own single-precision GEMM, C = A @ B (+ C), for column-major matrices, with one
   register-blocked micro-kernel per instruction set, chosen at run time.

   Wheels are built for baseline x86-64; the AVX2+FMA and AVX-512 kernels are compiled with
   per-function target attributes and only called after cnnx_isa_supported() said the CPU (and the
   OS) has them. Other compilers and other CPUs build the portable kernel only.

   Blocking: C is cut into MR x NR tiles (MR rows = a few SIMD vectors, NR columns = as many
   accumulators as the registers hold). For every block of kc steps of the inner dimension, an
   MR x kc panel of A is packed (zero-padded to MR rows) once and reused for all tiles of its rows;
   B is read in place, a broadcast per element (each of the NR columns is a contiguous stream),
   nc columns at a time, so that their kc x nc block stays in cache while all row tiles pass.
   The caller picks kc from the L1 data cache size (the packed panel and a panel of B fit in it)
   and nc from the L2 size.
   Every element of C is one chain of multiply-adds in the order of the inner index, whatever kc
   is: a tile continues from the partial sums it stored after the previous block. So results
   depend on the instruction set (FMA or not) only, never on the blocking or the thread count. */
#ifndef CNNX_GEMM_H
#define CNNX_GEMM_H

#include <stddef.h>
#include <string.h>

#define CNNX_ISA_GENERIC 0
#define CNNX_ISA_AVX2 1
#define CNNX_ISA_AVX512 2

#define CNNX_KC_MAX 512  /* inner-dimension block, at most (sizes the packed panel on the stack) */
#define CNNX_MR_MAX 32
#define CNNX_NR_MAX 12

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define CNNX_X86_KERNELS 1
#include <immintrin.h>
#else
#define CNNX_X86_KERNELS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CNNX_INLINE static inline __attribute__((always_inline))
#define CNNX_ALIGN64 __attribute__((aligned(64)))
#else
#define CNNX_INLINE static inline
#define CNNX_ALIGN64
#endif

/* Where B's elements are: B[p, j] = b[seg(p) + col(j)], with
     seg(p) = (p % run) * rs + (p / run) * ts   (the inner index in runs of ``run`` steps of rs)
     col(j) = (j % group) * cs + (j / group) * gs   (the columns in groups of ``group``).
   A column-major k x n matrix is rs = 1, run = k, cs = ldb, group = n. Convolutions read the
   image in place with it (implicit GEMM): the taps of one output pixel are runs of FH*FC values
   of the channels-first padded image, one run per filter column, and the output pixels of one
   output column are ``group`` columns cs apart.
   A packed A (cnnx_pack_a) follows the same runs: step p reads its packed column
   p + (p / run) * askip, so that a GEMM over part of every run (the filter gradient over the
   output rows one filter row reaches) reads A packed once whole. 0 when A is not packed. */
typedef struct {
    const float* b;
    ptrdiff_t rs, run, ts, cs, group, gs, askip;
} cnnx_bview;

/* A tile kernel: c (MR x nr, leading dimension ldc) = [c +] ap @ B, where ap is a packed MR x kc
   panel (kc columns of MR values) and B's kc x nr block starts ``q0`` steps into the run at
   ``seg``, its columns cs apart. */
typedef void (*cnnx_tile_fn)(ptrdiff_t kc, const float* ap, const float* seg, ptrdiff_t q0,
                             const cnnx_bview* v, float* c, ptrdiff_t ldc, int nr, int accumulate);

/* One tile kernel per width NR. Its 2 x NR accumulators are named variables, those of columns
   NR and beyond unused (NR is a constant), so that the compiler keeps them all in registers: arrays
   of vectors went through the stack on entry and exit (AVX-512, 32 x 12 tiles on 64 inner steps:
   163 -> 181 GFLOP/s, on 32 steps 152 -> 175). */
#define CNNX_TILE_COLUMNS(X, ...)                                                                \
    X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) X(3, __VA_ARGS__) X(4, __VA_ARGS__)    \
    X(5, __VA_ARGS__) X(6, __VA_ARGS__) X(7, __VA_ARGS__) X(8, __VA_ARGS__) X(9, __VA_ARGS__)    \
    X(10, __VA_ARGS__) X(11, __VA_ARGS__)
#define CNNX_TILE_ZERO(J, VEC, ZERO) VEC c0_##J = ZERO(), c1_##J = ZERO();
#define CNNX_TILE_LOAD(J, LOADU, LANES, NR)                                                      \
    if (J < NR) {                                                                                \
        c0_##J = LOADU(c + ldc * J);                                                             \
        c1_##J = LOADU(c + ldc * J + LANES);                                                     \
    }
#define CNNX_TILE_FMA(J, VEC, SET1, FMA, NR)                                                     \
    if (J < NR) {                                                                                \
        VEC b_##J = SET1(bp[cs * J]);                                                            \
        c0_##J = FMA(a0, b_##J, c0_##J);                                                         \
        c1_##J = FMA(a1, b_##J, c1_##J);                                                         \
    }
#define CNNX_TILE_STORE(J, STOREU, LANES, NR)                                                    \
    if (J < NR) {                                                                                \
        STOREU(c + ldc * J, c0_##J);                                                             \
        STOREU(c + ldc * J + LANES, c1_##J);                                                     \
    }
#define CNNX_TILE(ISA, TARGET, VEC, LANES, LOADU, STOREU, ZERO, SET1, FMA, NR)                   \
    TARGET static void cnnx_tile_##ISA##_##NR(ptrdiff_t kc, const float* ap, const float* seg,  \
                                              ptrdiff_t q0, const cnnx_bview* v, float* c,       \
                                              ptrdiff_t ldc, int accumulate)                     \
    {                                                                                            \
        const ptrdiff_t rs = v->rs, cs = v->cs, ts = v->ts, run = v->run;                        \
        const ptrdiff_t askip = 2 * LANES * v->askip;                                            \
        const float* bp = seg + q0 * rs;                                                         \
        ptrdiff_t p, left = run - q0;                                                            \
        CNNX_TILE_COLUMNS(CNNX_TILE_ZERO, VEC, ZERO)                                             \
        if (accumulate) {                                                                        \
            CNNX_TILE_COLUMNS(CNNX_TILE_LOAD, LOADU, LANES, NR)                                  \
        }                                                                                        \
        for (p = 0; p < kc; p++) {                                                               \
            VEC a0 = LOADU(ap);                                                                  \
            VEC a1 = LOADU(ap + LANES);                                                          \
            CNNX_TILE_COLUMNS(CNNX_TILE_FMA, VEC, SET1, FMA, NR)                                 \
            ap += 2 * LANES;                                                                     \
            bp += rs;                                                                            \
            if (--left == 0) {                                                                   \
                seg += ts;                                                                       \
                bp = seg;                                                                        \
                left = run;                                                                      \
                ap += askip;                                                                     \
            }                                                                                    \
        }                                                                                        \
        CNNX_TILE_COLUMNS(CNNX_TILE_STORE, STOREU, LANES, NR)                                    \
    }
/* ---- portable kernel: 8 x 6 tiles of 4-float vectors (GCC/Clang vector extensions: SSE2 on
   baseline x86-64, NEON on ARM), or of scalars with other compilers --------------------------- */
#define CNNX_GENERIC_MR 8
#define CNNX_GENERIC_NR 6
#if defined(__GNUC__) || defined(__clang__)
typedef float cnnx_v4 __attribute__((vector_size(16)));
CNNX_INLINE cnnx_v4 cnnx_v4_loadu(const float* p) { cnnx_v4 v; memcpy(&v, p, sizeof v); return v; }
CNNX_INLINE void cnnx_v4_storeu(float* p, cnnx_v4 v) { memcpy(p, &v, sizeof v); }
CNNX_INLINE cnnx_v4 cnnx_v4_zero(void) { cnnx_v4 v = {0.0f, 0.0f, 0.0f, 0.0f}; return v; }
CNNX_INLINE cnnx_v4 cnnx_v4_set1(float x) { cnnx_v4 v = {x, x, x, x}; return v; }
CNNX_INLINE cnnx_v4 cnnx_v4_madd(cnnx_v4 a, cnnx_v4 b, cnnx_v4 c) { return a * b + c; }
#define CNNX_TILE_GENERIC(NR) CNNX_TILE(generic, , cnnx_v4, 4, cnnx_v4_loadu, cnnx_v4_storeu,     \
                                        cnnx_v4_zero, cnnx_v4_set1, cnnx_v4_madd, NR)
#else
#define CNNX_TILE_GENERIC(NR)                                                                   \
    static void cnnx_tile_generic_##NR(ptrdiff_t kc, const float* ap, const float* seg,         \
                                       ptrdiff_t q0, const cnnx_bview* v, float* c,              \
                                       ptrdiff_t ldc, int accumulate)                            \
    {                                                                                            \
        float acc[NR][CNNX_GENERIC_MR];                                                          \
        const float* bp = seg + q0 * v->rs;                                                      \
        ptrdiff_t p, left = v->run - q0;                                                         \
        int i, j;                                                                                \
        for (j = 0; j < NR; j++)                                                                 \
            for (i = 0; i < CNNX_GENERIC_MR; i++)                                                \
                acc[j][i] = accumulate ? c[i + ldc * j] : 0.0f;                                  \
        for (p = 0; p < kc; p++) {                                                               \
            for (j = 0; j < NR; j++)                                                             \
                for (i = 0; i < CNNX_GENERIC_MR; i++)                                            \
                    acc[j][i] += ap[i] * bp[v->cs * j];                                          \
            ap += CNNX_GENERIC_MR;                                                               \
            bp += v->rs;                                                                         \
            if (--left == 0) {                                                                   \
                seg += v->ts;                                                                    \
                bp = seg;                                                                        \
                left = v->run;                                                                   \
                ap += CNNX_GENERIC_MR * v->askip;                                                \
            }                                                                                    \
        }                                                                                        \
        for (j = 0; j < NR; j++)                                                                 \
            for (i = 0; i < CNNX_GENERIC_MR; i++)                                                \
                c[i + ldc * j] = acc[j][i];                                                      \
    }
#endif
CNNX_TILE_GENERIC(1)
CNNX_TILE_GENERIC(2)
CNNX_TILE_GENERIC(3)
CNNX_TILE_GENERIC(4)
CNNX_TILE_GENERIC(5)
CNNX_TILE_GENERIC(6)

static void cnnx_tile_generic(ptrdiff_t kc, const float* ap, const float* seg, ptrdiff_t q0,
                              const cnnx_bview* v, float* c, ptrdiff_t ldc, int nr, int accumulate)
{
    switch (nr) {
    case 6: cnnx_tile_generic_6(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 5: cnnx_tile_generic_5(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 4: cnnx_tile_generic_4(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 3: cnnx_tile_generic_3(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 2: cnnx_tile_generic_2(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    default: cnnx_tile_generic_1(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    }
}

#if CNNX_X86_KERNELS
/* ---- AVX2 + FMA: 16 x 6 tiles (12 accumulators, 2 vectors of A, 1 broadcast) ---------------- */
#define CNNX_AVX2_MR 16
#define CNNX_AVX2_NR 6
#define CNNX_TARGET_AVX2 __attribute__((target("avx2,fma")))

#define CNNX_TILE_AVX2(NR) CNNX_TILE(avx2, CNNX_TARGET_AVX2, __m256, 8, _mm256_loadu_ps,        \
                                     _mm256_storeu_ps, _mm256_setzero_ps, _mm256_set1_ps,        \
                                     _mm256_fmadd_ps, NR)
CNNX_TILE_AVX2(1)
CNNX_TILE_AVX2(2)
CNNX_TILE_AVX2(3)
CNNX_TILE_AVX2(4)
CNNX_TILE_AVX2(5)
CNNX_TILE_AVX2(6)

CNNX_TARGET_AVX2 static void cnnx_tile_avx2(ptrdiff_t kc, const float* ap, const float* seg,
                                            ptrdiff_t q0, const cnnx_bview* v, float* c,
                                            ptrdiff_t ldc, int nr, int accumulate)
{
    switch (nr) {
    case 6: cnnx_tile_avx2_6(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 5: cnnx_tile_avx2_5(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 4: cnnx_tile_avx2_4(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 3: cnnx_tile_avx2_3(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 2: cnnx_tile_avx2_2(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    default: cnnx_tile_avx2_1(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    }
}

/* ---- AVX-512: 32 x 12 tiles (24 accumulators, 2 vectors of A, broadcasts from memory) -------- */
#define CNNX_AVX512_MR 32
#define CNNX_AVX512_NR 12
#define CNNX_TARGET_AVX512 __attribute__((target("avx512f")))

#define CNNX_TILE_AVX512(NR) CNNX_TILE(avx512, CNNX_TARGET_AVX512, __m512, 16, _mm512_loadu_ps, \
                                       _mm512_storeu_ps, _mm512_setzero_ps, _mm512_set1_ps,      \
                                       _mm512_fmadd_ps, NR)
CNNX_TILE_AVX512(1)
CNNX_TILE_AVX512(2)
CNNX_TILE_AVX512(3)
CNNX_TILE_AVX512(4)
CNNX_TILE_AVX512(5)
CNNX_TILE_AVX512(6)
CNNX_TILE_AVX512(7)
CNNX_TILE_AVX512(8)
CNNX_TILE_AVX512(9)
CNNX_TILE_AVX512(10)
CNNX_TILE_AVX512(11)
CNNX_TILE_AVX512(12)

CNNX_TARGET_AVX512 static void cnnx_tile_avx512(ptrdiff_t kc, const float* ap, const float* seg,
                                                ptrdiff_t q0, const cnnx_bview* v, float* c,
                                                ptrdiff_t ldc, int nr, int accumulate)
{
    switch (nr) {
    case 12: cnnx_tile_avx512_12(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 11: cnnx_tile_avx512_11(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 10: cnnx_tile_avx512_10(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 9: cnnx_tile_avx512_9(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 8: cnnx_tile_avx512_8(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 7: cnnx_tile_avx512_7(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 6: cnnx_tile_avx512_6(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 5: cnnx_tile_avx512_5(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 4: cnnx_tile_avx512_4(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 3: cnnx_tile_avx512_3(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    case 2: cnnx_tile_avx512_2(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    default: cnnx_tile_avx512_1(kc, ap, seg, q0, v, c, ldc, accumulate); break;
    }
}
#endif

/* 1 if this CPU and OS run the kernels of ``isa`` (a CNNX_ISA_* value). */
static int cnnx_isa_supported(int isa)
{
    if (isa == CNNX_ISA_GENERIC)
        return 1;
#if CNNX_X86_KERNELS
    __builtin_cpu_init();
    if (isa == CNNX_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == CNNX_ISA_AVX512)
        return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

/* The tile of ``isa``: its kernel and MR x NR; the portable one for an unknown value. */
static cnnx_tile_fn cnnx_tile_of(int isa, int* mr, int* nr)
{
#if CNNX_X86_KERNELS
    if (isa == CNNX_ISA_AVX512) {
        *mr = CNNX_AVX512_MR;
        *nr = CNNX_AVX512_NR;
        return cnnx_tile_avx512;
    }
    if (isa == CNNX_ISA_AVX2) {
        *mr = CNNX_AVX2_MR;
        *nr = CNNX_AVX2_NR;
        return cnnx_tile_avx2;
    }
#endif
    (void)isa;
    *mr = CNNX_GENERIC_MR;
    *nr = CNNX_GENERIC_NR;
    return cnnx_tile_generic;
}

/* The rows of A rounded up to whole tiles of ``isa``: a packed copy of A takes that times k floats. */
static ptrdiff_t cnnx_packed_rows(int isa, ptrdiff_t m)
{
    int MR, NR;
    cnnx_tile_of(isa, &MR, &NR);
    return (m + MR - 1) / MR * MR;
}

/* The MR x pk panel of A (m x k, lda) at rows i0.., inner steps p0.., zero-padded to MR rows. */
/* Whole columns of MR rows, MR a constant: the copies are inlined vector moves (a copy of a
   run-time length is a call of memmove per column, 12% of a 1x1 convolution's time). */
#define CNNX_PACK_WHOLE(MR)                                                                      \
    for (p = 0; p < pk; p++, dst += MR)                                                          \
        memcpy(dst, a + i0 + lda * (p0 + p), MR * sizeof(float));                               \
    return;

static void cnnx_pack_panel(const float* a, ptrdiff_t lda, ptrdiff_t m, ptrdiff_t i0, ptrdiff_t p0,
                            ptrdiff_t pk, int MR, float* dst)
{
    ptrdiff_t mr = m - i0 < MR ? m - i0 : MR, p, i;
    if (mr == MR) {
        switch (MR) {
        case 32: CNNX_PACK_WHOLE(32)
        case 16: CNNX_PACK_WHOLE(16)
        case 8: CNNX_PACK_WHOLE(8)
        default: break;
        }
    }
    for (p = 0; p < pk; p++) {
        const float* col = a + i0 + lda * (p0 + p);
        for (i = 0; i < mr; i++)
            dst[i] = col[i];
        for (i = mr; i < MR; i++)
            dst[i] = 0.0f;
        dst += MR;
    }
}

/* The inner-dimension block cnnx_gemm uses for k steps at most kc long: k cut into
   as few blocks as kc allows, of near-equal lengths (800 steps at kc 192 are 5 blocks of 160, not
   4 of 192 and one of 32, whose partial sums C would store and load again for little work). */
static inline ptrdiff_t cnnx_block_k(ptrdiff_t k, ptrdiff_t kc)
{
    ptrdiff_t blocks;
    if (kc < 1 || kc > CNNX_KC_MAX)
        kc = CNNX_KC_MAX;
    blocks = (k + kc - 1) / kc;
    return blocks > 1 ? (k + blocks - 1) / blocks : kc;
}

/* The columns (p % run) + (p / run) * rstride (p < k) of A (column-major, lda), packed once for
   cnnx_gemm with the same isa into ``out`` (cnnx_packed_rows(isa, m) * k floats): the MR x k panel
   of rows i0.. at out + i0 * k, its column p at MR * p within the panel (zero-padded to MR rows).
   All of A is run = k. Any range of the packed columns is a packed A of its own: columns p0.. are
   at out + MR * p0, with k panel columns. */
static void cnnx_pack_a(int isa, ptrdiff_t m, ptrdiff_t k, const float* a, ptrdiff_t lda, ptrdiff_t run,
                        ptrdiff_t rstride, float* out)
{
    int MR, NR;
    ptrdiff_t i0, p0;
    cnnx_tile_of(isa, &MR, &NR);
    if (run < 1)
        run = k;
    for (i0 = 0; i0 < m; i0 += MR)
        for (p0 = 0; p0 < k; p0 += run)
            cnnx_pack_panel(a + lda * (p0 / run) * rstride, lda, m, i0, 0, k - p0 < run ? k - p0 : run, MR,
                            out + i0 * k + MR * p0);
}

/* C (m x n) = A (m x k) @ B (k x n, as ``v`` says), plus C's old values when ``accumulate``.
   A is either ``packed`` by cnnx_pack_a with the same isa (``lda``: the columns of its panels; its
   columns read as v->askip says) or, when that is NULL, column-major at (a, lda), packed here
   panel by panel (v->askip 0). C's rows are
   contiguous and its columns are in B's groups: column j at c + (j % group) * ldc +
   (j / group) * ldcg (a plain column-major C is ldcg = group * ldc). ``kc`` bounds the
   inner-dimension block (1 .. CNNX_KC_MAX; the blocks are cnnx_block_k's) and ``nc`` is the
   number of columns of B whose kc x nc block stays in cache while every row tile of C passes over
   it. No panel of NR columns crosses a group of B's columns. The caller checked that the CPU
   supports ``isa``. */
static void cnnx_gemm(int isa, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float* packed,
                      const float* a, ptrdiff_t lda, const cnnx_bview* v, int accumulate, float* c,
                      ptrdiff_t ldc, ptrdiff_t ldcg, ptrdiff_t kc, ptrdiff_t nc)
{
    float apack[CNNX_MR_MAX * CNNX_KC_MAX] CNNX_ALIGN64;
    float ctile[CNNX_MR_MAX * CNNX_NR_MAX] CNNX_ALIGN64;
    int MR, NR;
    cnnx_tile_fn tile = cnnx_tile_of(isa, &MR, &NR);
    ptrdiff_t group = v->group > 0 ? v->group : n;
    ptrdiff_t jc, jend, p0, i0, j, t;
    kc = cnnx_block_k(k, kc);
    if (nc < NR)
        nc = NR;
    if (k == 0 && !accumulate) {
        for (j = 0; j < n; j++)
            memset(c + (j % group) * ldc + (j / group) * ldcg, 0, (size_t)m * sizeof(float));
    }
    for (jc = 0; jc < n; jc = jend) {
        /* Blocks of whole groups of columns, or of pieces of one group. */
        if (group <= nc)
            jend = jc + nc / group * group;
        else
            jend = jc + nc < (jc / group + 1) * group ? jc + nc : (jc / group + 1) * group;
        if (jend > n)
            jend = n;
        for (p0 = 0; p0 < k; p0 += kc) {
            ptrdiff_t pk = k - p0 < kc ? k - p0 : kc;
            int acc = accumulate || p0 > 0;
            const float* seg = v->b + (p0 / v->run) * v->ts;
            ptrdiff_t q0 = p0 % v->run;
            for (i0 = 0; i0 < m; i0 += MR) {
                ptrdiff_t mr = m - i0 < MR ? m - i0 : MR, j1;
                const float* ap;
                if (packed) {
                    ap = packed + i0 * lda + MR * (p0 + (p0 / v->run) * v->askip);
                } else {
                    cnnx_pack_panel(a, lda, m, i0, p0, pk, MR, apack);
                    ap = apack;
                }
                for (j = jc; j < jend; j = j1) {
                    /* The columns of one group in the block, cut into panels of near-equal
                       widths (none much narrower than NR). */
                    ptrdiff_t width, panels;
                    j1 = (j / group + 1) * group < jend ? (j / group + 1) * group : jend;
                    width = j1 - j;
                    panels = (width + NR - 1) / NR;
                    for (t = 0; t < panels; t++) {
                        ptrdiff_t j0 = j + t * (width / panels) + (t < width % panels ? t : width % panels);
                        int nr = (int)(width / panels + (t < width % panels));
                        const float* sj = seg + (j0 % group) * v->cs + (j0 / group) * v->gs;
                        float* cp = c + i0 + (j0 % group) * ldc + (j0 / group) * ldcg;
                        int jj, ii;
                        if (mr == MR) {
                            tile(pk, ap, sj, q0, v, cp, ldc, nr, acc);
                            continue;
                        }
                        /* The last rows of C: the full tile on a copy, keeping the rows that exist. */
                        for (jj = 0; jj < nr; jj++)
                            for (ii = 0; ii < MR; ii++)
                                ctile[ii + MR * jj] = (acc && ii < mr) ? cp[ii + ldc * jj] : 0.0f;
                        tile(pk, ap, sj, q0, v, ctile, MR, nr, acc);
                        for (jj = 0; jj < nr; jj++)
                            memcpy(cp + ldc * jj, ctile + MR * jj, (size_t)mr * sizeof(float));
                    }
                }
            }
        }
    }
}

/* C (m x n, ldc) = A (m x k, lda) @ B (k x n, ldb), plus C's old values when ``accumulate``;
   all column-major (cnnx_gemm with A packed on the way and B a plain matrix). */
static void cnnx_sgemm_nn(int isa, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float* a,
                          ptrdiff_t lda, const float* b, ptrdiff_t ldb, int accumulate, float* c,
                          ptrdiff_t ldc, ptrdiff_t kc, ptrdiff_t nc)
{
    cnnx_bview v;
    v.b = b;
    v.rs = 1;
    v.run = k > 0 ? k : 1;
    v.ts = 0;
    v.cs = ldb;
    v.group = n;
    v.gs = 0;
    v.askip = 0;
    cnnx_gemm(isa, m, n, k, NULL, a, lda, &v, accumulate, c, ldc, n * ldc, kc, nc);
}

/* Multiply-adds on ``isa``'s widest vectors in 12 independent chains (so that the FMA units,
   not the latency of one chain, are the limit): ``iterations`` x 12 vector multiply-adds. Returns
   the number of float operations done (2 per lane per multiply-add); ``sink`` keeps the result
   alive. The benchmarks time it for the machine's ceiling. */
#define CNNX_FMA_CHAINS(VEC, SET1, FMA, ADD, STORE, LANES)                                     \
    {                                                                                          \
        VEC acc[12], mul = SET1(0.999f), add = SET1(0.001f);                                   \
        float out[LANES];                                                                      \
        long it;                                                                               \
        int i, l;                                                                              \
        for (i = 0; i < 12; i++)                                                               \
            acc[i] = SET1((float)i);                                                           \
        for (it = 0; it < iterations; it++)                                                    \
            for (i = 0; i < 12; i++)                                                           \
                acc[i] = FMA(acc[i], mul, add);                                                \
        for (i = 1; i < 12; i++)                                                               \
            acc[0] = ADD(acc[0], acc[i]);                                                      \
        STORE(out, acc[0]);                                                                    \
        for (l = 0; l < LANES; l++)                                                            \
            *sink += out[l];                                                                   \
        return 2.0 * LANES * 12 * (double)iterations;                                          \
    }

#if CNNX_X86_KERNELS
CNNX_TARGET_AVX512 static double cnnx_fma_loop_avx512(long iterations, float* sink)
CNNX_FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, 16)

CNNX_TARGET_AVX2 static double cnnx_fma_loop_avx2(long iterations, float* sink)
CNNX_FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps, 8)
#endif

/* Multiply-add then add, as the portable kernel does (two operations per lane). */
typedef struct { float v[4]; } cnnx_f4;
static inline cnnx_f4 cnnx_f4_set1(float x) { cnnx_f4 r; r.v[0] = r.v[1] = r.v[2] = r.v[3] = x; return r; }
static inline cnnx_f4 cnnx_f4_madd(cnnx_f4 a, cnnx_f4 m, cnnx_f4 d)
{
    int l;
    for (l = 0; l < 4; l++)
        a.v[l] = a.v[l] * m.v[l] + d.v[l];
    return a;
}
static inline cnnx_f4 cnnx_f4_add(cnnx_f4 a, cnnx_f4 b)
{
    int l;
    for (l = 0; l < 4; l++)
        a.v[l] += b.v[l];
    return a;
}
static inline void cnnx_f4_store(float* out, cnnx_f4 a) { memcpy(out, a.v, sizeof a.v); }

static double cnnx_fma_loop_generic(long iterations, float* sink)
CNNX_FMA_CHAINS(cnnx_f4, cnnx_f4_set1, cnnx_f4_madd, cnnx_f4_add, cnnx_f4_store, 4)

static double cnnx_fma_loop(int isa, long iterations, float* sink)
{
#if CNNX_X86_KERNELS
    if (isa == CNNX_ISA_AVX512)
        return cnnx_fma_loop_avx512(iterations, sink);
    if (isa == CNNX_ISA_AVX2)
        return cnnx_fma_loop_avx2(iterations, sink);
#endif
    (void)isa;
    return cnnx_fma_loop_generic(iterations, sink);
}

#endif

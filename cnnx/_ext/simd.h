/* Function multiversioning for cnnx's innermost loops.

   Wheels are built for baseline x86-64 (SSE2), so a plain loop never uses AVX. On GCC >= 8 with
   glibc, target_clones compiles a loop once per listed instruction set and picks the best one
   when the module loads; elsewhere the macros expand to nothing and the baseline loop is used.
   CNNX_CLONES_AVX2 keeps results bitwise identical across CPUs (no FMA contraction differences in
   the loops that use it); CNNX_CLONES_AVX512 may fuse multiply-adds, so its results can differ in
   the last bit between CPUs (never between thread counts). */
#ifndef CNNX_SIMD_H
#define CNNX_SIMD_H

#if defined(__GNUC__) && __GNUC__ >= 8 && !defined(__clang__) && defined(__x86_64__) \
    && defined(__GLIBC__)
#define CNNX_CLONES_AVX2 __attribute__((target_clones("avx2", "default")))
#define CNNX_CLONES_AVX512 __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CNNX_CLONES_AVX2
#define CNNX_CLONES_AVX512
#endif

#endif

/* Plane kernels of pool.pyx (see its docstring for the scheme), once per precision.

   The plane kernels are compiled for AVX-512, AVX2 and the baseline (simd.h), the loader picking
   what the CPU runs. They compare, select, add and divide, never multiply-add, so every version
   gives the same bits. */
#ifndef CNNX_POOL_H
#define CNNX_POOL_H

#include <limits.h>
#include <math.h>
#include <string.h>
#include "simd.h"

#if defined(__GNUC__) || defined(__clang__)
#define CNNX_POOL_INLINE static inline __attribute__((always_inline))
#define CNNX_POOL_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define CNNX_POOL_INLINE static __forceinline
#define CNNX_POOL_RESTRICT __restrict
#else
#define CNNX_POOL_INLINE static inline
#define CNNX_POOL_RESTRICT
#endif

/* The column offset of a guard cell: larger than any in a window, so a guard never wins a tie. */
#define CNNX_POOL_GUARD_COLUMN INT_MAX

typedef struct {
    Py_ssize_t height, width;          /* input plane H x W */
    Py_ssize_t out_height, out_width;  /* output plane YH x YW */
    Py_ssize_t pool_y, pool_x;
    Py_ssize_t stride_y, stride_x;
    Py_ssize_t pad_top, pad_left;
    /* The buffer of an output column: guard_top guard cells, the H rows, then guard_bottom guard
       cells (buffer_len cells). The YW buffers of a plane are stored by phase (cnnx_pool_cell) in
       plane_cells cells, which include phase_len cells of slack at the end. */
    Py_ssize_t guard_top, guard_bottom, buffer_len, phase_len, plane_cells;
    /* Output rows [uniform_start, uniform_stop) have all their window rows in the buffer. */
    Py_ssize_t uniform_start, uniform_stop;
} cnnx_pool_geometry;

/* Where cell u of column j's buffer is stored: by phase of the row stride, u = step*t + q at
   (q*YW + j)*phase_len + t. So cell k of the windows of consecutive output rows of a column are
   contiguous, and those of all columns are too, phase_len apart: pass 2 runs over them all in one
   loop (also over the few cells in between, whose results it drops). */
CNNX_POOL_INLINE Py_ssize_t cnnx_pool_cell(Py_ssize_t u, Py_ssize_t j, Py_ssize_t step,
                                           Py_ssize_t out_width, Py_ssize_t phase_len) {
    return ((u % step) * out_width + j) * phase_len + u / step;
}

CNNX_POOL_INLINE Py_ssize_t cnnx_pool_min(Py_ssize_t a, Py_ssize_t b) { return a < b ? a : b; }
CNNX_POOL_INLINE Py_ssize_t cnnx_pool_max(Py_ssize_t a, Py_ssize_t b) { return a > b ? a : b; }

/* The first input row (column) of window k, clipped, and one past its last. */
CNNX_POOL_INLINE Py_ssize_t cnnx_pool_start(Py_ssize_t k, Py_ssize_t stride, Py_ssize_t pad) {
    return cnnx_pool_max(k * stride - pad, 0);
}

CNNX_POOL_INLINE Py_ssize_t cnnx_pool_stop(Py_ssize_t k, Py_ssize_t stride, Py_ssize_t pad,
                                           Py_ssize_t pool, Py_ssize_t size) {
    return cnnx_pool_min(k * stride - pad + pool, size);
}

/* Guards cover the padding rows the windows reach, up to H on each side: the scratch stays within
   3 H per buffer, and so does the work of a uniform row (its window is at most the buffer's
   length). Rows whose windows reach beyond the guards are few and pooled one by one. */
static void cnnx_pool_init_geometry(cnnx_pool_geometry* g, Py_ssize_t height, Py_ssize_t width,
                                    Py_ssize_t out_height, Py_ssize_t out_width, Py_ssize_t pool_y,
                                    Py_ssize_t pool_x, Py_ssize_t stride_y, Py_ssize_t stride_x,
                                    Py_ssize_t pad_top, Py_ssize_t pad_left) {
    Py_ssize_t padded_rows = (out_height - 1) * stride_y + pool_y;  /* rows the windows span */
    Py_ssize_t last;
    g->height = height;
    g->width = width;
    g->out_height = out_height;
    g->out_width = out_width;
    g->pool_y = pool_y;
    g->pool_x = pool_x;
    g->stride_y = stride_y;
    g->stride_x = stride_x;
    g->pad_top = pad_top;
    g->pad_left = pad_left;
    g->guard_top = cnnx_pool_min(pad_top, height);
    g->guard_bottom = cnnx_pool_min(cnnx_pool_max(padded_rows - pad_top - height, 0), height);
    g->buffer_len = g->guard_top + height + g->guard_bottom;
    g->phase_len = (g->buffer_len + stride_y - 1) / stride_y;
    g->plane_cells = (stride_y >= g->buffer_len ? g->buffer_len : stride_y * g->phase_len)
                         * out_width + g->phase_len;
    /* Uniform: i*SY - PT >= -guard_top and i*SY - PT + PH <= H + guard_bottom. */
    g->uniform_start = cnnx_pool_min((pad_top - g->guard_top + stride_y - 1) / stride_y, out_height);
    last = height + g->guard_bottom + pad_top - pool_y;
    g->uniform_stop = last < 0 ? g->uniform_start
                               : cnnx_pool_max(cnnx_pool_min(last / stride_y + 1, out_height),
                                               g->uniform_start);
}

#define CNNX_T float
#define CNNX_S(name) name##_f
#include "pool_plane.h"
#undef CNNX_T
#undef CNNX_S

#define CNNX_T double
#define CNNX_S(name) name##_d
#include "pool_plane.h"
#undef CNNX_T
#undef CNNX_S

#endif

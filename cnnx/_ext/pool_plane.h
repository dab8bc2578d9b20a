/* The pooling plane kernels in one precision: pool.h includes this file once per type, with CNNX_T
   the element type and CNNX_S(name) the name with the type's suffix (no include guard).

   The kernels keep one buffer per output column, all stored by phase of the row stride
   (cnnx_pool_cell). A guard cell is neutral for its reduction: -inf for a maximum (with column
   offset CNNX_POOL_GUARD_COLUMN, so it never wins a tie), -0.0 for a sum (x + -0.0 is x, bit for
   bit, -0.0 included); in the average backward pass it takes what falls on padding. Pass 1 runs
   over the whole plane before pass 2, which so reads what was stored long before (no stall on
   stores still under way). */

#define CNNX_POOL_R CNNX_POOL_RESTRICT

#ifndef CNNX_POOL_WITH_STEP
/* Runs the statement with `step` the row stride: a constant for strides 2 and 1, so that the
   compiler specialises their loops. */
#define CNNX_POOL_WITH_STEP(stride, ...)                                                           \
    do {                                                                                           \
        if ((stride) == 2) {                                                                       \
            const Py_ssize_t step = 2;                                                             \
            __VA_ARGS__;                                                                           \
        } else if ((stride) == 1) {                                                                \
            const Py_ssize_t step = 1;                                                             \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            const Py_ssize_t step = (stride);                                                      \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

/* Runs the statement for every input row r of output column j's buffer, with cell where the
   buffers store it. Stride 2 runs over pairs of rows, so that the loop's loads are whole vectors
   (the loads of one phase alone leave gaps, which the compiler cannot vectorise in short
   columns), 8 pairs a vector at most so that columns of 8 rows vectorise too; other strides run
   over each phase. */
#define CNNX_POOL_FOR_ROWS(step, j, g, ...)                                                        \
    do {                                                                                           \
        Py_ssize_t H_ = (g)->height;                                                               \
        if ((step) == 2) {                                                                         \
            Py_ssize_t even_ = CNNX_POOL_CELL((g)->guard_top, j, 2, g);                            \
            Py_ssize_t odd_ = CNNX_POOL_CELL((g)->guard_top + 1, j, 2, g);                         \
            _Pragma("omp simd simdlen(8)")                                                         \
            for (Py_ssize_t t_ = 0; t_ < H_ / 2; t_++) {                                           \
                {                                                                                  \
                    Py_ssize_t r = 2 * t_, cell = even_ + t_;                                      \
                    __VA_ARGS__;                                                                   \
                }                                                                                  \
                {                                                                                  \
                    Py_ssize_t r = 2 * t_ + 1, cell = odd_ + t_;                                   \
                    __VA_ARGS__;                                                                   \
                }                                                                                  \
            }                                                                                      \
            if (H_ % 2) {                                                                          \
                Py_ssize_t r = H_ - 1, cell = even_ + H_ / 2;                                      \
                __VA_ARGS__;                                                                       \
            }                                                                                      \
        } else {                                                                                   \
            for (Py_ssize_t q_ = 0; q_ < (step) && q_ < H_; q_++) {                                \
                Py_ssize_t first_ = CNNX_POOL_CELL((g)->guard_top + q_, j, step, g);               \
                for (Py_ssize_t t_ = 0; t_ < (H_ - q_ + (step) - 1) / (step); t_++) {              \
                    Py_ssize_t r = t_ * (step) + q_, cell = first_ + t_;                           \
                    __VA_ARGS__;                                                                   \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define CNNX_POOL_CELL(u, j, step, g) cnnx_pool_cell(u, j, step, (g)->out_width, (g)->phase_len)
#endif

/* Whether v replaces best in a max scan: strictly larger, or the first NaN (NaN is the maximum). */
CNNX_POOL_INLINE int CNNX_S(cnnx_pool_beats)(CNNX_T v, CNNX_T best) {
    return (v > best) | ((v != v) & (best == best));
}

/* Whether (v, column) replaces (best, best_column), each the maximum of some cells of one window
   and the column offset of its leftmost cell: it beats it, or ties (equal, or both NaN) from a
   column further left. Scanning rows in any order, this keeps the first maximum in column-major
   order (leftmost column, then topmost row) provided ties within a column keep the earlier row. */
CNNX_POOL_INLINE int CNNX_S(cnnx_pool_wins)(CNNX_T v, int column, CNNX_T best, int best_column) {
    return CNNX_S(cnnx_pool_beats)(v, best)
           | (((v == best) | ((v != v) & (best != best))) & (column < best_column));
}

/* The larger of v and current, NaN if either is NaN (a form compilers turn into max instructions). */
CNNX_POOL_INLINE CNNX_T CNNX_S(cnnx_pool_nan_max)(CNNX_T v, CNNX_T current) {
    CNNX_T larger = v > current ? v : current;
    return v != v ? v : larger;
}

/* The reduction of a forward pass: acc + v (average) or the NaN-propagating maximum. */
CNNX_POOL_INLINE CNNX_T CNNX_S(cnnx_pool_combine)(int average, CNNX_T v, CNNX_T acc) {
    return average ? acc + v : CNNX_S(cnnx_pool_nan_max)(v, acc);
}

/* Prepares a thread's buffers (plane_cells) for a max (-inf guards) or a sum (-0.0 guards), and
   their column offsets if columns is not NULL. Pass 1 never writes the guards, so once for all
   planes; the other cells are zeroed so that pass 2 never reads uninitialised memory. */
static void CNNX_S(cnnx_pool_prepare_buffers)(CNNX_T* buffers, int* columns, int average,
                                              const cnnx_pool_geometry* g) {
    memset(buffers, 0, g->plane_cells * sizeof(CNNX_T));
    if (columns) memset(columns, 0, g->plane_cells * sizeof(int));
    for (Py_ssize_t j = 0; j < g->out_width; j++) {
        for (int side = 0; side < 2; side++) {  /* above the rows, then below */
            Py_ssize_t u1 = side ? g->buffer_len : g->guard_top;
            for (Py_ssize_t u = side ? g->guard_top + g->height : 0; u < u1; u++) {
                Py_ssize_t cell = CNNX_POOL_CELL(u, j, g->stride_y, g);
                buffers[cell] = average ? (CNNX_T)-0.0 : (CNNX_T)-INFINITY;
                if (columns) columns[cell] = CNNX_POOL_GUARD_COLUMN;
            }
        }
    }
}

/* Where the buffers store cell k of the window of column 0's first uniform row. */
CNNX_POOL_INLINE Py_ssize_t CNNX_S(cnnx_pool_uniform_cell)(Py_ssize_t k, Py_ssize_t step,
                                                           const cnnx_pool_geometry* g) {
    return CNNX_POOL_CELL(g->guard_top - g->pad_top + g->uniform_start * step + k, 0, step, g);
}

/* ---- forward ---------------------------------------------------------------------------------- */

/* Pass 1: the cell of each row r of column j's buffer = input row r reduced over columns
   [c0, c1). */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_reduce_columns)(int average, const CNNX_T* CNNX_POOL_R x,
                                                       CNNX_T* CNNX_POOL_R buffers, Py_ssize_t j,
                                                       Py_ssize_t step,
                                                       const cnnx_pool_geometry* g) {
    Py_ssize_t c0 = cnnx_pool_start(j, g->stride_x, g->pad_left);
    Py_ssize_t c1 = cnnx_pool_stop(j, g->stride_x, g->pad_left, g->pool_x, g->width);
    const CNNX_T* column = x + c0 * g->height;
    if (c1 - c0 == 1) {
        CNNX_POOL_FOR_ROWS(step, j, g, buffers[cell] = column[r]);
        return;
    }
    /* the first two columns straight from x, no copy */
    CNNX_POOL_FOR_ROWS(step, j, g,
                       buffers[cell] = CNNX_S(cnnx_pool_combine)(average, column[r + g->height],
                                                                 column[r]));
    for (Py_ssize_t c = c0 + 2; c < c1; c++) {
        column = x + c * g->height;
        CNNX_POOL_FOR_ROWS(step, j, g,
                           buffers[cell] = CNNX_S(cnnx_pool_combine)(average, column[r],
                                                                     buffers[cell]));
    }
}

/* Pass 2, the uniform output rows of all columns in one loop: out[j*phase_len + i] = the window of
   uniform row i of column j reduced in order (out: YW*phase_len). */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_reduce_rows)(int average, const CNNX_T* CNNX_POOL_R buffers,
                                                    CNNX_T* CNNX_POOL_R out, Py_ssize_t step,
                                                    const cnnx_pool_geometry* g) {
    Py_ssize_t n = g->out_width * g->phase_len;
    const CNNX_T* cells = buffers + CNNX_S(cnnx_pool_uniform_cell)(0, step, g);
    for (Py_ssize_t m = 0; m < n; m++) out[m] = cells[m];
    for (Py_ssize_t k = 1; k < g->pool_y; k++) {
        cells = buffers + CNNX_S(cnnx_pool_uniform_cell)(k, step, g);
        for (Py_ssize_t m = 0; m < n; m++)
            out[m] = CNNX_S(cnnx_pool_combine)(average, cells[m], out[m]);
    }
}

/* Pass 2, output rows [i0, i1) (not uniform) of column j: y = the clipped window reduced. */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_reduce_clipped_rows)(int average,
                                                            const CNNX_T* CNNX_POOL_R buffers,
                                                            CNNX_T* CNNX_POOL_R y, Py_ssize_t j,
                                                            Py_ssize_t i0, Py_ssize_t i1,
                                                            Py_ssize_t step,
                                                            const cnnx_pool_geometry* g) {
    for (Py_ssize_t i = i0; i < i1; i++) {
        Py_ssize_t r0 = cnnx_pool_start(i, g->stride_y, g->pad_top);
        Py_ssize_t r1 = cnnx_pool_stop(i, g->stride_y, g->pad_top, g->pool_y, g->height);
        CNNX_T acc = buffers[CNNX_POOL_CELL(g->guard_top + r0, j, step, g)];
        for (Py_ssize_t r = r0 + 1; r < r1; r++)
            acc = CNNX_S(cnnx_pool_combine)(
                average, buffers[CNNX_POOL_CELL(g->guard_top + r, j, step, g)], acc);
        y[i + g->out_height * j] = acc;
    }
}

/* y = each clipped window's maximum, or its sum / its area (areas, YH x YW) if average.
   buffers: plane_cells, prepared; out: YW*phase_len. */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_forward)(int average, const CNNX_T* CNNX_POOL_R x,
                                                CNNX_T* CNNX_POOL_R y, CNNX_T* CNNX_POOL_R buffers,
                                                CNNX_T* CNNX_POOL_R out,
                                                const CNNX_T* CNNX_POOL_R areas, Py_ssize_t step,
                                                const cnnx_pool_geometry* g) {
    Py_ssize_t YH = g->out_height, YW = g->out_width, M = g->phase_len;
    Py_ssize_t i0 = g->uniform_start, n = g->uniform_stop - i0;
    for (Py_ssize_t j = 0; j < YW; j++) CNNX_S(cnnx_pool_reduce_columns)(average, x, buffers, j, step, g);
    if (n > 0) CNNX_S(cnnx_pool_reduce_rows)(average, buffers, out, step, g);
    for (Py_ssize_t j = 0; j < YW; j++) {
        CNNX_S(cnnx_pool_reduce_clipped_rows)(average, buffers, y, j, 0, i0, step, g);
        CNNX_S(cnnx_pool_reduce_clipped_rows)(average, buffers, y, j, i0 + n, YH, step, g);
        for (Py_ssize_t i = 0; i < n; i++) y[i0 + i + YH * j] = out[i + M * j];
    }
    if (average)
        for (Py_ssize_t i = 0; i < YH * YW; i++) y[i] = y[i] / areas[i];
}

/* The forward kernels; buffers: plane_cells, prepared; out: YW*phase_len. */
CNNX_CLONES_AVX512 static void CNNX_S(cnnx_pool_max_forward)(const CNNX_T* x, CNNX_T* y,
                                                             CNNX_T* buffers, CNNX_T* out,
                                                             const cnnx_pool_geometry* g) {
    CNNX_POOL_WITH_STEP(g->stride_y,
                        CNNX_S(cnnx_pool_forward)(0, x, y, buffers, out, NULL, step, g));
}

CNNX_CLONES_AVX512 static void CNNX_S(cnnx_pool_avg_forward)(const CNNX_T* x, CNNX_T* y,
                                                             CNNX_T* buffers, CNNX_T* out,
                                                             const CNNX_T* areas,
                                                             const cnnx_pool_geometry* g) {
    CNNX_POOL_WITH_STEP(g->stride_y,
                        CNNX_S(cnnx_pool_forward)(1, x, y, buffers, out, areas, step, g));
}

/* ---- max backward ----------------------------------------------------------------------------- */

/* Pass 1 with positions: the cell of each row r of column j's buffer = the maximum of input row r
   over columns [c0, c1), that of columns the offset from c0 of its leftmost cell. */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_column_winners)(const CNNX_T* CNNX_POOL_R x,
                                                       CNNX_T* CNNX_POOL_R buffers,
                                                       int* CNNX_POOL_R columns, Py_ssize_t j,
                                                       Py_ssize_t step,
                                                       const cnnx_pool_geometry* g) {
    Py_ssize_t c0 = cnnx_pool_start(j, g->stride_x, g->pad_left);
    Py_ssize_t c1 = cnnx_pool_stop(j, g->stride_x, g->pad_left, g->pool_x, g->width);
    const CNNX_T* column = x + c0 * g->height;
    if (c1 - c0 == 1) {
        CNNX_POOL_FOR_ROWS(step, j, g, {
            buffers[cell] = column[r];
            columns[cell] = 0;
        });
        return;
    }
    CNNX_POOL_FOR_ROWS(step, j, g, {  /* the first two columns straight from x */
        CNNX_T v = column[r + g->height], current = column[r];
        int take = CNNX_S(cnnx_pool_beats)(v, current);
        buffers[cell] = take ? v : current;
        columns[cell] = take;
    });
    for (Py_ssize_t c = c0 + 2; c < c1; c++) {
        int offset = (int)(c - c0);
        column = x + c * g->height;
        CNNX_POOL_FOR_ROWS(step, j, g, {
            CNNX_T v = column[r], current = buffers[cell];
            int take = CNNX_S(cnnx_pool_beats)(v, current);
            buffers[cell] = take ? v : current;
            columns[cell] = take ? offset : columns[cell];
        });
    }
}

/* Pass 2, the uniform output rows of all columns in one loop: the winner of the window of uniform
   row i of column j, its value in best[j*phase_len + i], its column offset in best_column and its
   row in the window in best_row (each YW*phase_len). */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_row_winners)(const CNNX_T* CNNX_POOL_R buffers,
                                                    const int* CNNX_POOL_R columns,
                                                    CNNX_T* CNNX_POOL_R best,
                                                    int* CNNX_POOL_R best_column,
                                                    int* CNNX_POOL_R best_row, Py_ssize_t step,
                                                    const cnnx_pool_geometry* g) {
    Py_ssize_t n = g->out_width * g->phase_len;
    Py_ssize_t cell = CNNX_S(cnnx_pool_uniform_cell)(0, step, g);
    for (Py_ssize_t m = 0; m < n; m++) {
        best[m] = buffers[cell + m];
        best_column[m] = columns[cell + m];
        best_row[m] = 0;
    }
    for (Py_ssize_t k = 1; k < g->pool_y; k++) {
        const CNNX_T* cells;
        const int* cell_columns;
        cell = CNNX_S(cnnx_pool_uniform_cell)(k, step, g);
        cells = buffers + cell;
        cell_columns = columns + cell;
        for (Py_ssize_t m = 0; m < n; m++) {
            CNNX_T v = cells[m], current = best[m];
            int column = cell_columns[m], current_column = best_column[m];
            int take = CNNX_S(cnnx_pool_wins)(v, column, current, current_column);
            best[m] = take ? v : current;
            best_column[m] = take ? column : current_column;
            best_row[m] = take ? (int)k : best_row[m];
        }
    }
}

/* Pass 2, output rows [i0, i1) (not uniform) of column j: where = the index in the plane of the
   winner of each clipped window (column: that of the window's first column's first cell). */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_clipped_row_winners)(const CNNX_T* CNNX_POOL_R buffers,
                                                            const int* CNNX_POOL_R columns,
                                                            int* CNNX_POOL_R where, Py_ssize_t j,
                                                            Py_ssize_t column, Py_ssize_t i0,
                                                            Py_ssize_t i1, Py_ssize_t step,
                                                            const cnnx_pool_geometry* g) {
    for (Py_ssize_t i = i0; i < i1; i++) {
        Py_ssize_t r0 = cnnx_pool_start(i, g->stride_y, g->pad_top);
        Py_ssize_t r1 = cnnx_pool_stop(i, g->stride_y, g->pad_top, g->pool_y, g->height);
        Py_ssize_t cell = CNNX_POOL_CELL(g->guard_top + r0, j, step, g), row = r0;
        CNNX_T best = buffers[cell];
        int best_column = columns[cell];
        for (Py_ssize_t r = r0 + 1; r < r1; r++) {
            cell = CNNX_POOL_CELL(g->guard_top + r, j, step, g);
            if (CNNX_S(cnnx_pool_wins)(buffers[cell], columns[cell], best, best_column)) {
                best = buffers[cell];
                best_column = columns[cell];
                row = r;
            }
        }
        where[i + g->out_height * j] = (int)(column + row + g->height * best_column);
    }
}

/* where (YH x YW) = the index in the plane (below 2^31) of each window's winner: its first
   maximum in column-major order.

   buffers, columns: plane_cells, prepared; best, best_column, best_row: YW*phase_len. */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_max_winners_by_step)(
    const CNNX_T* CNNX_POOL_R x, CNNX_T* CNNX_POOL_R buffers, int* CNNX_POOL_R columns,
    CNNX_T* CNNX_POOL_R best, int* CNNX_POOL_R best_column, int* CNNX_POOL_R best_row,
    int* CNNX_POOL_R where, Py_ssize_t step, const cnnx_pool_geometry* g) {
    Py_ssize_t H = g->height, YH = g->out_height, YW = g->out_width, M = g->phase_len;
    Py_ssize_t i0 = g->uniform_start, n = g->uniform_stop - i0;
    for (Py_ssize_t j = 0; j < YW; j++)
        CNNX_S(cnnx_pool_column_winners)(x, buffers, columns, j, step, g);
    if (n > 0) CNNX_S(cnnx_pool_row_winners)(buffers, columns, best, best_column, best_row, step, g);
    for (Py_ssize_t j = 0; j < YW; j++) {
        Py_ssize_t column = H * cnnx_pool_start(j, g->stride_x, g->pad_left);
        Py_ssize_t corner = column + i0 * step - g->pad_top;  /* row i0's window's first cell */
        CNNX_S(cnnx_pool_clipped_row_winners)(buffers, columns, where, j, column, 0, i0, step, g);
        CNNX_S(cnnx_pool_clipped_row_winners)(buffers, columns, where, j, column, i0 + n, YH, step,
                                              g);
        for (Py_ssize_t i = 0; i < n; i++)
            where[i0 + i + YH * j] =
                (int)(corner + i * step + best_row[i + M * j] + H * best_column[i + M * j]);
    }
}

CNNX_CLONES_AVX512 static void CNNX_S(cnnx_pool_max_winners)(
    const CNNX_T* x, CNNX_T* buffers, int* columns, CNNX_T* best, int* best_column, int* best_row,
    int* where, const cnnx_pool_geometry* g) {
    CNNX_POOL_WITH_STEP(g->stride_y,
                        CNNX_S(cnnx_pool_max_winners_by_step)(x, buffers, columns, best,
                                                              best_column, best_row, where, step,
                                                              g));
}

/* y = the value of x at each window's winner (where, YH x YW). */
static void CNNX_S(cnnx_pool_gather)(const CNNX_T* CNNX_POOL_R x, const int* CNNX_POOL_R where,
                                     CNNX_T* CNNX_POOL_R y, const cnnx_pool_geometry* g) {
    for (Py_ssize_t i = 0; i < g->out_height * g->out_width; i++) y[i] = x[where[i]];
}

/* dx = each dzdy routed to its window's winner (where): added into the zeroed plane in the
   outputs' column-major order, so that overlapping windows accumulate in a fixed order. */
static void CNNX_S(cnnx_pool_route)(const CNNX_T* CNNX_POOL_R dzdy, const int* CNNX_POOL_R where,
                                    CNNX_T* CNNX_POOL_R dx, const cnnx_pool_geometry* g) {
    memset(dx, 0, g->height * g->width * sizeof(CNNX_T));
    for (Py_ssize_t i = 0; i < g->out_height * g->out_width; i++) dx[where[i]] += dzdy[i];
}

/* ---- average backward ------------------------------------------------------------------------- */

/* Output rows [i0, i1) (not uniform) of column j: the cells of its buffer's rows += each clipped
   window's share. */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_spread_clipped_rows)(const CNNX_T* CNNX_POOL_R dzdy,
                                                            const CNNX_T* CNNX_POOL_R areas,
                                                            CNNX_T* CNNX_POOL_R buffers,
                                                            Py_ssize_t j, Py_ssize_t i0,
                                                            Py_ssize_t i1, Py_ssize_t step,
                                                            const cnnx_pool_geometry* g) {
    for (Py_ssize_t i = i0; i < i1; i++) {
        CNNX_T share = dzdy[i + g->out_height * j] / areas[i + g->out_height * j];
        Py_ssize_t r1 = cnnx_pool_stop(i, g->stride_y, g->pad_top, g->pool_y, g->height);
        for (Py_ssize_t r = cnnx_pool_start(i, g->stride_y, g->pad_top); r < r1; r++)
            buffers[CNNX_POOL_CELL(g->guard_top + r, j, step, g)] += share;
    }
}

/* dx = each dzdy / its clipped area, spread over its clipped window: the two passes reversed.

   buffers: plane_cells; share: YW*phase_len. Each input row receives its shares in the order of
   the output rows (the uniform ones for k downwards, which is i upwards), whichever way it is
   reached, so both give the same bits. The uniform loop also adds the zero shares of the cells
   between columns: x + 0.0 is x for every sum there (one of +0.0 and a number is never -0.0). */
CNNX_POOL_INLINE void CNNX_S(cnnx_pool_avg_backward_by_step)(
    const CNNX_T* CNNX_POOL_R dzdy, CNNX_T* CNNX_POOL_R dx, CNNX_T* CNNX_POOL_R buffers,
    CNNX_T* CNNX_POOL_R share, const CNNX_T* CNNX_POOL_R areas, Py_ssize_t step,
    const cnnx_pool_geometry* g) {
    Py_ssize_t H = g->height, YH = g->out_height, YW = g->out_width, M = g->phase_len;
    Py_ssize_t i0 = g->uniform_start, n = g->uniform_stop - i0;
    memset(buffers, 0, g->plane_cells * sizeof(CNNX_T));
    for (Py_ssize_t j = 0; j < YW; j++) {
        for (Py_ssize_t i = 0; i < n; i++)
            share[i + M * j] = dzdy[i0 + i + YH * j] / areas[i0 + i + YH * j];
        for (Py_ssize_t i = n; i < M; i++) share[i + M * j] = 0;
        CNNX_S(cnnx_pool_spread_clipped_rows)(dzdy, areas, buffers, j, 0, i0, step, g);
    }
    for (Py_ssize_t k = g->pool_y - 1; k >= 0 && n > 0; k--) {
        CNNX_T* cells = buffers + CNNX_S(cnnx_pool_uniform_cell)(k, step, g);
        for (Py_ssize_t m = 0; m < YW * M; m++) cells[m] += share[m];
    }
    memset(dx, 0, H * g->width * sizeof(CNNX_T));
    for (Py_ssize_t j = 0; j < YW; j++) {
        Py_ssize_t c1 = cnnx_pool_stop(j, g->stride_x, g->pad_left, g->pool_x, g->width);
        CNNX_S(cnnx_pool_spread_clipped_rows)(dzdy, areas, buffers, j, i0 + n, YH, step, g);
        for (Py_ssize_t c = cnnx_pool_start(j, g->stride_x, g->pad_left); c < c1; c++) {
            CNNX_T* column = dx + c * H;
            CNNX_POOL_FOR_ROWS(step, j, g, column[r] += buffers[cell]);
        }
    }
}

CNNX_CLONES_AVX512 static void CNNX_S(cnnx_pool_avg_backward)(
    const CNNX_T* dzdy, CNNX_T* dx, CNNX_T* buffers, CNNX_T* share, const CNNX_T* areas,
    const cnnx_pool_geometry* g) {
    CNNX_POOL_WITH_STEP(g->stride_y, CNNX_S(cnnx_pool_avg_backward_by_step)(dzdy, dx, buffers, share,
                                                                           areas, step, g));
}

/* areas (YH x YW) = the number of input cells in each clipped window. */
static void CNNX_S(cnnx_pool_window_areas)(CNNX_T* areas, const cnnx_pool_geometry* g) {
    for (Py_ssize_t j = 0; j < g->out_width; j++) {
        Py_ssize_t columns = cnnx_pool_stop(j, g->stride_x, g->pad_left, g->pool_x, g->width)
                             - cnnx_pool_start(j, g->stride_x, g->pad_left);
        for (Py_ssize_t i = 0; i < g->out_height; i++)
            areas[i + g->out_height * j] =
                (CNNX_T)((cnnx_pool_stop(i, g->stride_y, g->pad_top, g->pool_y, g->height)
                          - cnnx_pool_start(i, g->stride_y, g->pad_top))
                         * columns);
    }
}

#undef CNNX_POOL_R

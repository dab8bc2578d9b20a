"""Max and average pooling kernels for vl_nnpool.

Every array is a stack of planes: a Fortran (H, W, C, N) array is C*N contiguous H x W column-major
planes, and pooling works on each plane alone. The loops run over planes in parallel; a backward
pass only writes inside its own plane, so it needs no locks and its sums have a fixed order. The
plane kernels are C (pool.h, pool_plane.h), compiled for AVX-512, AVX2 and the baseline: they
compare, select, add and divide, never multiply-add, so every version gives the same bits.

Windows are clipped to the plane (padding cells are ignored, as in MatConvNet): the window of output
row i spans input rows [i*SY - PT, i*SY - PT + PH) intersected with [0, H), and likewise for columns.
The Python layer guarantees that every clipped window holds at least one input.

A plane is pooled in two passes:
1. across columns: for each output column j, every input row's maximum or sum over the window's
   (clipped) columns, written into buffer j. These loops run down whole columns, branch-free and
   vectorised (stride 2: over pairs of rows).
2. down rows: output row i of column j reduces rows [i*SY - PT, i*SY - PT + PH) of buffer j. A
   buffer has guard cells above and below its H rows, neutral for the reduction (-inf for a
   maximum, -0.0 for a sum), over the padding the windows reach (up to H rows each side), and the
   buffers are stored by phase of the row stride SY, so that cell k of the windows of consecutive
   rows is contiguous, in all columns at once: the rows whose window lies in the buffer ("uniform")
   are reduced for each k in one vectorised loop over the plane. Any others (padding larger than
   H) are reduced one by one over their clipped windows, in the same order.
So the work is that of the clipped windows, or at most three times it with large padding. Pass 1
runs over the whole plane before pass 2, so that pass 2 does not wait for stores under way.

The forward max keeps values only: of values that compare equal (+0 and -0) it may return another
one than MatConvNet's column-major scan. The backward pass keeps with each row maximum the column of
its leftmost cell, so that pass 2 breaks ties by column (a guard's column is larger than any) and
routes each derivative to the first maximum in column-major order, as MatConvNet does; the
derivatives are then added into the zeroed plane in the outputs' column-major order. The average
backward pass reverses the two passes with one buffer in row order, each input row receiving its
shares in the order of the output rows.
"""
cimport numpy as cnp
from .arrays cimport float_kind
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

cdef extern from "pool.h" nogil:
    ctypedef struct Geometry "cnnx_pool_geometry":
        Py_ssize_t buffer_len, phase_len, plane_cells
    void init_geometry "cnnx_pool_init_geometry"(
        Geometry* g, Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_height,
        Py_ssize_t out_width, Py_ssize_t pool_y, Py_ssize_t pool_x, Py_ssize_t stride_y,
        Py_ssize_t stride_x, Py_ssize_t pad_top, Py_ssize_t pad_left) noexcept
    void max_forward_f "cnnx_pool_max_forward_f"(const float* x, float* y, float* buffers,
                                                 float* out, const Geometry* g) noexcept
    void max_forward_d "cnnx_pool_max_forward_d"(const double* x, double* y, double* buffers,
                                                 double* out, const Geometry* g) noexcept
    void avg_forward_f "cnnx_pool_avg_forward_f"(const float* x, float* y, float* buffers,
                                                 float* out, const float* areas,
                                                 const Geometry* g) noexcept
    void avg_forward_d "cnnx_pool_avg_forward_d"(const double* x, double* y, double* buffers,
                                                 double* out, const double* areas,
                                                 const Geometry* g) noexcept
    void max_backward_f "cnnx_pool_max_backward_f"(
        const float* x, const float* dzdy, float* dx, float* buffers, int* columns, float* best,
        int* best_column, int* best_row, Py_ssize_t* where, const Geometry* g) noexcept
    void max_backward_d "cnnx_pool_max_backward_d"(
        const double* x, const double* dzdy, double* dx, double* buffers, int* columns,
        double* best, int* best_column, int* best_row, Py_ssize_t* where,
        const Geometry* g) noexcept
    void avg_backward_f "cnnx_pool_avg_backward_f"(const float* dzdy, float* dx, float* buffer,
                                                   float* share, const float* areas,
                                                   const Geometry* g) noexcept
    void avg_backward_d "cnnx_pool_avg_backward_d"(const double* dzdy, double* dx, double* buffer,
                                                   double* share, const double* areas,
                                                   const Geometry* g) noexcept
    void prepare_buffers_f "cnnx_pool_prepare_buffers_f"(float* buffers, int* columns, int average,
                                                         const Geometry* g) noexcept
    void prepare_buffers_d "cnnx_pool_prepare_buffers_d"(double* buffers, int* columns,
                                                         int average, const Geometry* g) noexcept
    void window_areas_f "cnnx_pool_window_areas_f"(float* areas, const Geometry* g) noexcept
    void window_areas_d "cnnx_pool_window_areas_d"(double* areas, const Geometry* g) noexcept

cnp.import_array()


cdef inline void max_forward_plane(const floating* x, floating* y, floating* buffers,
                                   floating* out, const Geometry* g) noexcept nogil:
    if floating is float:
        max_forward_f(x, y, buffers, out, g)
    else:
        max_forward_d(x, y, buffers, out, g)


cdef inline void avg_forward_plane(const floating* x, floating* y, floating* buffers,
                                   floating* out, const floating* areas,
                                   const Geometry* g) noexcept nogil:
    if floating is float:
        avg_forward_f(x, y, buffers, out, areas, g)
    else:
        avg_forward_d(x, y, buffers, out, areas, g)


cdef inline void max_backward_plane(const floating* x, const floating* dzdy, floating* dx,
                                    floating* buffers, int* columns, floating* best,
                                    int* best_column, int* best_row, Py_ssize_t* where,
                                    const Geometry* g) noexcept nogil:
    if floating is float:
        max_backward_f(x, dzdy, dx, buffers, columns, best, best_column, best_row, where, g)
    else:
        max_backward_d(x, dzdy, dx, buffers, columns, best, best_column, best_row, where, g)


cdef inline void avg_backward_plane(const floating* dzdy, floating* dx, floating* buffer,
                                    floating* share, const floating* areas,
                                    const Geometry* g) noexcept nogil:
    if floating is float:
        avg_backward_f(dzdy, dx, buffer, share, areas, g)
    else:
        avg_backward_d(dzdy, dx, buffer, share, areas, g)


cdef inline void prepare_buffers(floating* buffers, int* columns, bint average,
                                 const Geometry* g) noexcept nogil:
    if floating is float:
        prepare_buffers_f(buffers, columns, average, g)
    else:
        prepare_buffers_d(buffers, columns, average, g)


cdef inline void fill_window_areas(floating* areas, const Geometry* g) noexcept nogil:
    if floating is float:
        window_areas_f(areas, g)
    else:
        window_areas_d(areas, g)


def _forward(const floating[::1] x, floating[::1] y, Py_ssize_t planes,
             Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_height, Py_ssize_t out_width,
             Py_ssize_t pool_y, Py_ssize_t pool_x, Py_ssize_t stride_y, Py_ssize_t stride_x,
             Py_ssize_t pad_top, Py_ssize_t pad_left, bint average, int n_threads):
    """Pool ``planes`` H x W planes of x into YH x YW planes of y (max, or average if ``average``).

    x and y are the flat Fortran-order data of (H, W, planes) and (YH, YW, planes) arrays; the
    geometry must be valid (checked by the caller), planes > 0 and the pool below 2^31 - 1.
    """
    cdef Geometry g
    cdef const floating* xp = &x[0]
    cdef floating* yp = &y[0]
    cdef Py_ssize_t in_plane = height * width, out_plane = out_height * out_width
    cdef Py_ssize_t p
    cdef floating* buffers = NULL
    cdef floating* areas = NULL
    cdef Py_ssize_t failed = 0
    init_geometry(&g, height, width, out_height, out_width, pool_y, pool_x, stride_y, stride_x,
                  pad_top, pad_left)
    if average:
        areas = <floating*> malloc(out_plane * sizeof(floating))
        if areas == NULL:
            raise MemoryError("vl_nnpool: out of memory for the window areas")
        fill_window_areas(areas, &g)
    with nogil, parallel(num_threads=n_threads):
        # Per thread: the buffers, then pass 2's results.
        buffers = <floating*> malloc((g.plane_cells + out_width * g.phase_len) * sizeof(floating))
        if buffers != NULL:
            prepare_buffers(buffers, NULL, average, &g)
        for p in prange(planes, schedule="static"):
            if buffers == NULL:
                failed += 1
            elif average:
                avg_forward_plane(xp + p * in_plane, yp + p * out_plane, buffers,
                                  buffers + g.plane_cells, areas, &g)
            else:
                max_forward_plane(xp + p * in_plane, yp + p * out_plane, buffers,
                                  buffers + g.plane_cells, &g)
        free(buffers)
    free(areas)
    if failed:
        raise MemoryError("vl_nnpool: out of memory for the pooling buffers")


def forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_forward``."""
    float_kind("cnnx._ext.pool.forward", x)
    return _forward(x, *args)


def _backward(const floating[::1] x, const floating[::1] dzdy, floating[::1] dx, Py_ssize_t planes,
              Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_height, Py_ssize_t out_width,
              Py_ssize_t pool_y, Py_ssize_t pool_x, Py_ssize_t stride_y, Py_ssize_t stride_x,
              Py_ssize_t pad_top, Py_ssize_t pad_left, bint average, int n_threads):
    """Write into dx (shaped like x, overwritten) the derivative of the pooling projected on dzdy.

    Same layout and preconditions as ``forward``; dzdy has the layout of its output.
    """
    cdef Geometry g
    cdef const floating* xp = &x[0]
    cdef const floating* dyp = &dzdy[0]
    cdef floating* dxp = &dx[0]
    cdef Py_ssize_t in_plane = height * width, out_plane = out_height * out_width
    cdef Py_ssize_t p, buffers_len, results_len
    cdef floating* floats = NULL
    cdef int* ints = NULL
    cdef Py_ssize_t* where = NULL
    cdef floating* areas = NULL
    cdef Py_ssize_t failed = 0
    init_geometry(&g, height, width, out_height, out_width, pool_y, pool_x, stride_y, stride_x,
                  pad_top, pad_left)
    # The buffers, then pass 2's results (average: the uniform rows' shares).
    buffers_len = g.plane_cells
    results_len = out_width * g.phase_len
    if average:
        areas = <floating*> malloc(out_plane * sizeof(floating))
        if areas == NULL:
            raise MemoryError("vl_nnpool: out of memory for the window areas")
        fill_window_areas(areas, &g)
    with nogil, parallel(num_threads=n_threads):
        # Per thread. Max: the ints are the buffers' column offsets, then the winners' columns and
        # rows; where, the winners' indices.
        floats = <floating*> malloc((buffers_len + results_len) * sizeof(floating))
        ints = NULL
        where = NULL
        if not average:
            ints = <int*> malloc((buffers_len + 2 * results_len) * sizeof(int))
            where = <Py_ssize_t*> malloc(out_plane * sizeof(Py_ssize_t))
            if floats != NULL and ints != NULL:
                prepare_buffers(floats, ints, False, &g)
        for p in prange(planes, schedule="static"):
            if floats == NULL or (not average and (ints == NULL or where == NULL)):
                failed += 1
            elif average:
                avg_backward_plane(dyp + p * out_plane, dxp + p * in_plane, floats,
                                   floats + buffers_len, areas, &g)
            else:
                max_backward_plane(xp + p * in_plane, dyp + p * out_plane, dxp + p * in_plane,
                                   floats, ints, floats + buffers_len, ints + buffers_len,
                                   ints + buffers_len + results_len, where, &g)
        free(floats)
        free(ints)
        free(where)
    free(areas)
    if failed:
        raise MemoryError("vl_nnpool: out of memory for the pooling buffers")


def backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_backward``."""
    float_kind("cnnx._ext.pool.backward", x)
    return _backward(x, *args)

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
derivatives are then added into the zeroed plane in the outputs' column-major order. A forward
pass can find those winners too and keep their indices (int32, one per output), from which
``route`` does the backward pass alone, without the input, with the same bits. The average
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
        Py_ssize_t height, width, out_height, out_width, buffer_len, phase_len, plane_cells
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
    void max_winners_f "cnnx_pool_max_winners_f"(
        const float* x, float* buffers, int* columns, float* best, int* best_column, int* best_row,
        int* where, const Geometry* g) noexcept
    void max_winners_d "cnnx_pool_max_winners_d"(
        const double* x, double* buffers, int* columns, double* best, int* best_column,
        int* best_row, int* where, const Geometry* g) noexcept
    void gather_f "cnnx_pool_gather_f"(const float* x, const int* where, float* y,
                                       const Geometry* g) noexcept
    void gather_d "cnnx_pool_gather_d"(const double* x, const int* where, double* y,
                                       const Geometry* g) noexcept
    void route_f "cnnx_pool_route_f"(const float* dzdy, const int* where, float* dx,
                                     const Geometry* g) noexcept
    void route_d "cnnx_pool_route_d"(const double* dzdy, const int* where, double* dx,
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


cdef inline void plane_winners(const floating* x, floating* floats, int* ints, int* where,
                               const Geometry* g) noexcept nogil:
    """where = the winners of x's plane; floats and ints: a thread's scratch (winner_scratch)."""
    cdef Py_ssize_t results = g.out_width * g.phase_len
    if floating is float:
        max_winners_f(x, floats, ints, floats + g.plane_cells, ints + g.plane_cells,
                      ints + g.plane_cells + results, where, g)
    else:
        max_winners_d(x, floats, ints, floats + g.plane_cells, ints + g.plane_cells,
                      ints + g.plane_cells + results, where, g)


cdef inline int* winner_scratch(floating** floats, const Geometry* g) noexcept nogil:
    """A thread's scratch for plane_winners, prepared: floats (the buffers, then pass 2's maxima)
    and the returned ints (the buffers' column offsets, then the winners' columns and rows);
    NULL (and nothing held) if out of memory."""
    cdef Py_ssize_t results = g.out_width * g.phase_len
    cdef int* ints = <int*> malloc((g.plane_cells + 2 * results) * sizeof(int))
    floats[0] = <floating*> malloc((g.plane_cells + results) * sizeof(floating))
    if ints == NULL or floats[0] == NULL:
        free(ints)
        free(floats[0])
        floats[0] = NULL
        return NULL
    prepare_buffers(floats[0], ints, False, g)
    return ints


cdef inline void gather_plane(const floating* x, const int* where, floating* y,
                              const Geometry* g) noexcept nogil:
    if floating is float:
        gather_f(x, where, y, g)
    else:
        gather_d(x, where, y, g)


cdef inline void route_plane(const floating* dzdy, const int* where, floating* dx,
                             const Geometry* g) noexcept nogil:
    if floating is float:
        route_f(dzdy, where, dx, g)
    else:
        route_d(dzdy, where, dx, g)


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


def _forward(const floating[::1] x, floating[::1] y, int[::1] winners, Py_ssize_t planes,
             Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_height, Py_ssize_t out_width,
             Py_ssize_t pool_y, Py_ssize_t pool_x, Py_ssize_t stride_y, Py_ssize_t stride_x,
             Py_ssize_t pad_top, Py_ssize_t pad_left, bint average, int n_threads):
    """Pool ``planes`` H x W planes of x into YH x YW planes of y (max, or average if ``average``).

    x and y are the flat Fortran-order data of (H, W, planes) and (YH, YW, planes) arrays; the
    geometry must be valid (checked by the caller), planes > 0 and the pool below 2^31 - 1. With
    ``winners`` (max only, laid out as y, planes below 2^31 cells), each window's winner, its first
    maximum in column-major order, is found as the backward pass finds it: winners holds its index
    in the plane and y its value (which so also follows MatConvNet's choice between +0 and -0).
    """
    cdef Geometry g
    cdef const floating* xp = &x[0]
    cdef floating* yp = &y[0]
    cdef int* wp = NULL if winners is None else &winners[0]
    cdef Py_ssize_t in_plane = height * width, out_plane = out_height * out_width
    cdef Py_ssize_t p
    cdef floating* buffers = NULL
    cdef int* ints = NULL
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
        # Per thread: the buffers, then pass 2's results (with winners, winner_scratch's).
        ints = NULL
        if wp != NULL:
            ints = winner_scratch(&buffers, &g)
        else:
            buffers = <floating*> malloc((g.plane_cells + out_width * g.phase_len) * sizeof(floating))
            if buffers != NULL:
                prepare_buffers(buffers, NULL, average, &g)
        for p in prange(planes, schedule="static"):
            if buffers == NULL:
                failed += 1
            elif wp != NULL:
                plane_winners(xp + p * in_plane, buffers, ints, wp + p * out_plane, &g)
                gather_plane(xp + p * in_plane, wp + p * out_plane, yp + p * out_plane, &g)
            elif average:
                avg_forward_plane(xp + p * in_plane, yp + p * out_plane, buffers,
                                  buffers + g.plane_cells, areas, &g)
            else:
                max_forward_plane(xp + p * in_plane, yp + p * out_plane, buffers,
                                  buffers + g.plane_cells, &g)
        free(buffers)
        free(ints)
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

    Same layout and preconditions as ``forward`` (max: planes below 2^31 cells); dzdy has the
    layout of its output. Max pooling finds the winners again (``route`` takes them from forward).
    """
    cdef Geometry g
    cdef const floating* xp = &x[0]
    cdef const floating* dyp = &dzdy[0]
    cdef floating* dxp = &dx[0]
    cdef Py_ssize_t in_plane = height * width, out_plane = out_height * out_width
    cdef Py_ssize_t p
    cdef floating* floats = NULL
    cdef int* ints = NULL
    cdef int* where = NULL
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
        # Per thread. Average: the buffers, then the uniform rows' shares. Max: winner_scratch's,
        # and where, the winners' indices.
        ints = NULL
        where = NULL
        if average:
            floats = <floating*> malloc((g.plane_cells + out_width * g.phase_len) * sizeof(floating))
        else:
            ints = winner_scratch(&floats, &g)
            where = <int*> malloc(out_plane * sizeof(int))
        for p in prange(planes, schedule="static"):
            if floats == NULL or (not average and where == NULL):
                failed += 1
            elif average:
                avg_backward_plane(dyp + p * out_plane, dxp + p * in_plane, floats,
                                   floats + g.plane_cells, areas, &g)
            else:
                plane_winners(xp + p * in_plane, floats, ints, where, &g)
                route_plane(dyp + p * out_plane, where, dxp + p * in_plane, &g)
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


def _route(const floating[::1] dzdy, const int[::1] winners, floating[::1] dx, Py_ssize_t planes,
           Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_height, Py_ssize_t out_width,
           int n_threads):
    """The max pooling's backward pass from the winners that ``forward`` found: dx (H x W planes,
    overwritten) = each dzdy added at its winner, in the outputs' column-major order, the bits of
    ``backward``. dzdy and winners are laid out as the output (YH x YW planes)."""
    cdef Geometry g
    cdef const floating* dyp = &dzdy[0]
    cdef const int* wp = &winners[0]
    cdef floating* dxp = &dx[0]
    cdef Py_ssize_t in_plane = height * width, out_plane = out_height * out_width, p
    g.height, g.width, g.out_height, g.out_width = height, width, out_height, out_width
    with nogil:
        for p in prange(planes, schedule="static", num_threads=n_threads):
            route_plane(dyp + p * out_plane, wp + p * out_plane, dxp + p * in_plane, &g)


def route(dzdy, *args):
    """Check the dtype of ``dzdy`` (float32/float64), then run ``_route``."""
    float_kind("cnnx._ext.pool.route", dzdy)
    return _route(dzdy, *args)

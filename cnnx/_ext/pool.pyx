"""Max and average pooling kernels for vl_nnpool.

Every array is a stack of planes: a Fortran (H, W, C, N) array is C*N contiguous H x W column-major
planes, and pooling works on each plane alone. The loops run over planes in parallel; a backward
pass only writes inside its own plane, so it needs no locks and its sums have a fixed order.

Windows are clipped to the plane (padding cells are ignored, as in MatConvNet): the window of output
row i spans input rows [i*SY - PT, i*SY - PT + PH) intersected with [0, H), and likewise for columns.
The Python layer guarantees that every clipped window holds at least one input.

A plane is pooled in two passes:
1. across columns: for each output column j, every input row's maximum or sum over the window's
   (clipped) columns, written into buffer j (H long). These loops run down whole columns:
   contiguous, branch-free, vectorised.
2. down rows: output row i of column j reduces rows [i*SY - PT, i*SY - PT + PH) of buffer j. For the
   interior rows, whose windows need no clipping, the loops run over all of them for each offset in
   the window (vectorised); the few border rows are reduced one by one over their clipped windows.
So the work is that of the clipped windows, whatever the padding.

The forward max keeps values only: of values that compare equal (+0 and -0) it may return another
one than MatConvNet's column-major scan. The backward pass tracks positions and follows that scan
exactly.
"""
cimport numpy as cnp
from .arrays cimport float_kind
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cnp.import_array()


cdef struct Geometry:
    Py_ssize_t height, width          # input plane H x W
    Py_ssize_t out_height, out_width  # output plane YH x YW
    Py_ssize_t pool_y, pool_x
    Py_ssize_t stride_y, stride_x
    Py_ssize_t pad_top, pad_left
    Py_ssize_t interior_start         # output rows [interior_start, interior_stop) have windows
    Py_ssize_t interior_stop          # that lie inside the input rows (no clipping)


cdef inline bint beats(floating v, floating best) noexcept nogil:
    """Whether v replaces best in a max scan: strictly larger, or the first NaN (NaN is the maximum)."""
    return (v > best) | ((v != v) & (best == best))


cdef union Float32Bits:
    float value
    int32_t bits


cdef union Float64Bits:
    double value
    int64_t bits


cdef inline floating choose(bint take, floating a, floating b) noexcept nogil:
    """take ? a : b with bit masks, no branch.

    Compilers turn a float select on a compound condition into a branch, which random data
    mispredicts half the time: not in vectorised loops, but in their scalar remainders. (Only for
    pass 2: in pass 1 the masks would stop the float64 loop from vectorising.)
    """
    cdef Float32Bits a32, b32
    cdef Float64Bits a64, b64
    if floating is float:
        a32.value, b32.value = a, b
        a32.bits = (a32.bits & -<int32_t> take) | (b32.bits & (<int32_t> take - 1))
        return a32.value
    else:
        a64.value, b64.value = a, b
        a64.bits = (a64.bits & -<int64_t> take) | (b64.bits & (<int64_t> take - 1))
        return a64.value


cdef inline int choose_int(bint take, int a, int b) noexcept nogil:
    return (a & -<int> take) | (b & (<int> take - 1))


cdef inline floating nan_max(floating v, floating current) noexcept nogil:
    """The larger of v and current, NaN if either is NaN (a form compilers turn into max instructions)."""
    cdef floating larger = v if v > current else current
    return v if v != v else larger


cdef inline bint wins(floating v, int offset, floating best, int best_offset) noexcept nogil:
    """Whether a row maximum (v, at window column offset) replaces the best so far, rows scanned downwards.

    Ties (equal, or both NaN) go to the smaller column offset, so the winner is the first maximum in
    column-major order: leftmost column, then topmost row.
    """
    return beats(v, best) | (((v == best) | ((v != v) & (best != best))) & (offset < best_offset))


cdef inline Py_ssize_t window_start(Py_ssize_t k, Py_ssize_t stride, Py_ssize_t pad) noexcept nogil:
    return max(k * stride - pad, 0)


cdef inline Py_ssize_t window_stop(Py_ssize_t k, Py_ssize_t stride, Py_ssize_t pad,
                                   Py_ssize_t pool, Py_ssize_t size) noexcept nogil:
    return min(k * stride - pad + pool, size)


cdef inline Py_ssize_t first_row(Py_ssize_t i, const Geometry* g) noexcept nogil:
    return window_start(i, g.stride_y, g.pad_top)


cdef inline Py_ssize_t stop_row(Py_ssize_t i, const Geometry* g) noexcept nogil:
    return window_stop(i, g.stride_y, g.pad_top, g.pool_y, g.height)


cdef inline Py_ssize_t first_column(Py_ssize_t j, const Geometry* g) noexcept nogil:
    return window_start(j, g.stride_x, g.pad_left)


cdef inline Py_ssize_t stop_column(Py_ssize_t j, const Geometry* g) noexcept nogil:
    return window_stop(j, g.stride_x, g.pad_left, g.pool_x, g.width)


cdef inline bint is_border_row(Py_ssize_t i, const Geometry* g) noexcept nogil:
    return i < g.interior_start or i >= g.interior_stop


cdef void max_forward_plane(const floating* x, floating* y, floating* buffers,
                            const Geometry* g) noexcept nogil:
    """y = max over each clipped window; buffers: YW buffers of H."""
    cdef Py_ssize_t H = g.height, YH = g.out_height, SY = g.stride_y, PT = g.pad_top
    cdef Py_ssize_t i, j, k, c, r, c0, c1
    cdef floating* buffer
    cdef const floating* column
    cdef floating* out
    cdef floating current
    for j in range(g.out_width):
        buffer = buffers + j * H
        c0 = first_column(j, g)
        c1 = stop_column(j, g)
        column = x + c0 * H
        if c1 - c0 == 1:
            for r in range(H):
                buffer[r] = column[r]
        else:  # the first two columns straight from x (no copy), the others in place
            for r in range(H):
                buffer[r] = nan_max(column[r + H], column[r])
        for c in range(c0 + 2, c1):
            column = x + c * H
            for r in range(H):
                buffer[r] = nan_max(column[r], buffer[r])
    for j in range(g.out_width):
        buffer = buffers + j * H
        out = y + j * YH
        for i in range(YH):
            if is_border_row(i, g):
                current = buffer[first_row(i, g)]
                for r in range(first_row(i, g) + 1, stop_row(i, g)):
                    current = nan_max(buffer[r], current)
                out[i] = current
        for i in range(g.interior_start, g.interior_stop):
            out[i] = buffer[i * SY - PT]
        for k in range(1, g.pool_y):
            for i in range(g.interior_start, g.interior_stop):
                out[i] = nan_max(buffer[i * SY - PT + k], out[i])


cdef void avg_forward_plane(const floating* x, floating* y, floating* buffers, const floating* areas,
                            const Geometry* g) noexcept nogil:
    """y = sum over each clipped window / its clipped area; buffers: YW buffers of H."""
    cdef Py_ssize_t H = g.height, YH = g.out_height, SY = g.stride_y, PT = g.pad_top
    cdef Py_ssize_t i, j, k, c, r, c0, c1
    cdef floating* buffer
    cdef const floating* column
    cdef floating* out
    cdef floating total
    for j in range(g.out_width):
        buffer = buffers + j * H
        c0 = first_column(j, g)
        c1 = stop_column(j, g)
        column = x + c0 * H
        if c1 - c0 == 1:
            for r in range(H):
                buffer[r] = column[r]
        else:  # the first two columns straight from x (no copy), the others in place
            for r in range(H):
                buffer[r] = column[r] + column[r + H]
        for c in range(c0 + 2, c1):
            column = x + c * H
            for r in range(H):
                buffer[r] = buffer[r] + column[r]
    for j in range(g.out_width):
        buffer = buffers + j * H
        out = y + j * YH
        for i in range(YH):
            if is_border_row(i, g):
                total = buffer[first_row(i, g)]
                for r in range(first_row(i, g) + 1, stop_row(i, g)):
                    total = total + buffer[r]
                out[i] = total
        for i in range(g.interior_start, g.interior_stop):
            out[i] = buffer[i * SY - PT]
        for k in range(1, g.pool_y):
            for i in range(g.interior_start, g.interior_stop):
                out[i] = out[i] + buffer[i * SY - PT + k]
    for i in range(YH * g.out_width):
        y[i] = y[i] / areas[i]


cdef void max_backward_plane(const floating* x, const floating* dzdy, floating* dx,
                             floating* buffers, int* offsets, floating* best, int* best_row,
                             int* best_offset, const Geometry* g) noexcept nogil:
    """dx = each dzdy routed to the first maximum of its window in column-major order.

    buffers: as in the forward pass; offsets: same layout, the window column (counted from the
    window's first) of the leftmost cell holding each row maximum. best, best_row (counted from the
    window's unclipped first row) and best_offset: YH-long, each output row's winner. Positions
    are ints so that these loops vectorise along with the float ones.
    """
    cdef Py_ssize_t H = g.height, YH = g.out_height, SY = g.stride_y, PT = g.pad_top
    cdef Py_ssize_t i, j, k, c, r, c0
    cdef floating* buffer
    cdef int* buffer_offsets
    cdef const floating* column
    cdef floating v, current
    cdef int offset, current_row, current_offset
    cdef bint take
    memset(dx, 0, H * g.width * sizeof(floating))
    for j in range(g.out_width):
        buffer = buffers + j * H
        buffer_offsets = offsets + j * H
        c0 = first_column(j, g)
        column = x + c0 * H
        for r in range(H):
            buffer[r] = column[r]
            buffer_offsets[r] = 0
        for c in range(c0 + 1, stop_column(j, g)):
            column = x + c * H
            for r in range(H):
                # Every array read once into a local and written once: branch-free, vectorised.
                v = column[r]
                current = buffer[r]
                current_offset = buffer_offsets[r]
                take = beats(v, current)
                buffer[r] = v if take else current
                buffer_offsets[r] = <int> (c - c0) if take else current_offset
    for j in range(g.out_width):
        buffer = buffers + j * H
        buffer_offsets = offsets + j * H
        for i in range(YH):
            if is_border_row(i, g):
                for r in range(first_row(i, g), stop_row(i, g)):
                    if r == first_row(i, g) or wins(buffer[r], buffer_offsets[r], best[i], best_offset[i]):
                        best[i] = buffer[r]
                        best_offset[i] = buffer_offsets[r]
                        best_row[i] = <int> (r - i * SY + PT)
        for i in range(g.interior_start, g.interior_stop):
            best[i] = buffer[i * SY - PT]
            best_row[i] = 0
            best_offset[i] = buffer_offsets[i * SY - PT]
        for k in range(1, g.pool_y):
            for i in range(g.interior_start, g.interior_stop):
                v = buffer[i * SY - PT + k]
                offset = buffer_offsets[i * SY - PT + k]
                current = best[i]
                current_row = best_row[i]
                current_offset = best_offset[i]
                take = wins(v, offset, current, current_offset)
                best[i] = choose(take, v, current)
                best_row[i] = choose_int(take, <int> k, current_row)
                best_offset[i] = choose_int(take, offset, current_offset)
        # Outputs in column-major order, so overlapping windows accumulate in a fixed order.
        c0 = first_column(j, g)
        for i in range(YH):
            dx[i * SY - PT + best_row[i] + H * (c0 + best_offset[i])] += dzdy[i + YH * j]


cdef void avg_backward_plane(const floating* dzdy, floating* dx, floating* buffer, floating* share,
                             const floating* areas, const Geometry* g) noexcept nogil:
    """dx = each dzdy / clipped area, spread over its clipped window.

    buffer: H long; share: YH long.
    """
    cdef Py_ssize_t H = g.height, YH = g.out_height, SY = g.stride_y, PT = g.pad_top
    cdef Py_ssize_t i, j, k, c, r
    cdef floating* column
    memset(dx, 0, H * g.width * sizeof(floating))
    for j in range(g.out_width):
        for i in range(YH):
            share[i] = dzdy[i + YH * j] / areas[i + YH * j]
        # Pass 2 reversed: buffer[r] is what each input of row r receives from output column j.
        memset(buffer, 0, H * sizeof(floating))
        for i in range(YH):
            if is_border_row(i, g):
                for r in range(first_row(i, g), stop_row(i, g)):
                    buffer[r] += share[i]
        for k in range(g.pool_y):
            for i in range(g.interior_start, g.interior_stop):
                buffer[i * SY - PT + k] += share[i]
        # Pass 1 reversed.
        for c in range(first_column(j, g), stop_column(j, g)):
            column = dx + c * H
            for r in range(H):
                column[r] += buffer[r]


cdef void init_geometry(Geometry* g, Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_height,
                        Py_ssize_t out_width, Py_ssize_t pool_y, Py_ssize_t pool_x,
                        Py_ssize_t stride_y, Py_ssize_t stride_x, Py_ssize_t pad_top,
                        Py_ssize_t pad_left) noexcept nogil:
    g.height, g.width = height, width
    g.out_height, g.out_width = out_height, out_width
    g.pool_y, g.pool_x = pool_y, pool_x
    g.stride_y, g.stride_x = stride_y, stride_x
    g.pad_top, g.pad_left = pad_top, pad_left
    # Interior: i*SY >= PT (no padding above) and i*SY - PT + PH <= H (none below).
    g.interior_start = min((pad_top + stride_y - 1) // stride_y, out_height)
    if height + pad_top - pool_y < 0:
        g.interior_stop = g.interior_start
    else:
        g.interior_stop = max(min((height + pad_top - pool_y) // stride_y + 1, out_height),
                              g.interior_start)


cdef void fill_window_areas(floating* areas, const Geometry* g) noexcept nogil:
    """areas (YH x YW) = the number of input cells in each clipped window."""
    cdef Py_ssize_t i, j
    for j in range(g.out_width):
        for i in range(g.out_height):
            areas[i + g.out_height * j] = <floating> ((stop_row(i, g) - first_row(i, g))
                                                      * (stop_column(j, g) - first_column(j, g)))


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
        buffers = <floating*> malloc(height * out_width * sizeof(floating))
        for p in prange(planes, schedule="static"):
            if buffers == NULL:
                failed += 1
            elif average:
                avg_forward_plane(xp + p * in_plane, yp + p * out_plane, buffers, areas, &g)
            else:
                max_forward_plane(xp + p * in_plane, yp + p * out_plane, buffers, &g)
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
    cdef Py_ssize_t p, buffers_len = height * out_width
    cdef floating* floats = NULL
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
        # Per thread: the buffers (and their offsets), then YH-long scratch.
        floats = <floating*> malloc((buffers_len + out_height) * sizeof(floating))
        ints = <int*> malloc((buffers_len + 2 * out_height) * sizeof(int))
        for p in prange(planes, schedule="static"):
            if floats == NULL or ints == NULL:
                failed += 1
            elif average:
                avg_backward_plane(dyp + p * out_plane, dxp + p * in_plane, floats,
                                   floats + buffers_len, areas, &g)
            else:
                max_backward_plane(xp + p * in_plane, dyp + p * out_plane, dxp + p * in_plane,
                                   floats, ints, floats + buffers_len, ints + buffers_len,
                                   ints + buffers_len + out_height, &g)
        free(floats)
        free(ints)
    free(areas)
    if failed:
        raise MemoryError("vl_nnpool: out of memory for the pooling buffers")


def backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_backward``."""
    float_kind("cnnx._ext.pool.backward", x)
    return _backward(x, *args)

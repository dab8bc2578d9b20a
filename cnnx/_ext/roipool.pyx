"""Region-of-interest pooling kernels (vl_nnroipool): max or average over the tiles of each region.

Buffers are flat Fortran-ordered arrays: x (H, W, C, N), rois (5, K) of x's dtype, each column
[t u0 v0 u1 v1] (1-based image t, 1-based inclusive corners, u horizontal, v vertical), y and dzdy
(SH, SW, C, K); the transform is MatConvNet's six doubles [T11 T21 T12 T22 T13 T23]
(u' = T11 u + T12 v + T13, v' = T21 u + T22 v + T23). The arithmetic is MatConvNet's, in its
precisions: corners transformed in double and stored in the data's type, rounded half away from
zero; tile bounds from a bin size in the data's type.

Each output value is written by one thread: forward splits the (region, channel) planes of y, backward
the (image, channel) planes of dzdx, each adding its regions' tiles in their order (regions, then tile
columns, then tiles), so the results are the same bit for bit at any thread count.
"""
cimport numpy as cnp
from .arrays cimport float_kind
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport ceil, floor, round

cnp.import_array()


cdef struct Region:
    Py_ssize_t image, top, left, height, width


cdef inline Region region_of(const floating* roi, const double* t) noexcept nogil:
    """The 0-based image, first row and column and size (at least 1 x 1) of one region."""
    cdef Region r
    cdef floating u0 = <floating>(t[0] * roi[1] + t[2] * roi[2] + t[4])
    cdef floating v0 = <floating>(t[1] * roi[1] + t[3] * roi[2] + t[5])
    cdef floating u1 = <floating>(t[0] * roi[3] + t[2] * roi[4] + t[4])
    cdef floating v1 = <floating>(t[1] * roi[3] + t[3] * roi[4] + t[5])
    r.image = <Py_ssize_t>roi[0] - 1
    r.top = <Py_ssize_t>round(v0) - 1
    r.left = <Py_ssize_t>round(u0) - 1
    r.height = max(<Py_ssize_t>round(v1) - 1 - r.top + 1, 1)
    r.width = max(<Py_ssize_t>round(u1) - 1 - r.left + 1, 1)
    return r


cdef inline Py_ssize_t clamp(Py_ssize_t v, Py_ssize_t size) noexcept nogil:
    return 0 if v < 0 else (size if v > size else v)


cdef inline void tile_span(Py_ssize_t p, floating bin_size, Py_ssize_t first, Py_ssize_t size,
                           Py_ssize_t* start, Py_ssize_t* stop) noexcept nogil:
    """Tile p of a region side starting at ``first``: [floor(p bin), ceil((p + 1) bin)) + first,
    clipped to [0, size]."""
    start[0] = clamp(<Py_ssize_t>floor(<floating>p * bin_size) + first, size)
    stop[0] = clamp(<Py_ssize_t>ceil(<floating>(p + 1) * bin_size) + first, size)


cdef inline bint beats(floating v, floating best) noexcept nogil:
    """v replaces the running maximum: larger, or the first NaN (NaN is the maximum)."""
    return v > best or (v != v and best == best)


cdef inline Py_ssize_t tile_argmax(const floating* plane, Py_ssize_t H, Py_ssize_t r0, Py_ssize_t r1,
                                   Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """The offset of a tile's first maximum, scanning columns, then rows within a column."""
    cdef Py_ssize_t best = r0 + c0 * H, r, c
    for c in range(c0, c1):
        for r in range(r0, r1):
            if beats(plane[r + c * H], plane[best]):
                best = r + c * H
    return best


cdef inline floating tile_mean(const floating* plane, Py_ssize_t H, Py_ssize_t r0, Py_ssize_t r1,
                               Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """sum * (1 / area) over a tile, in the data's type (MatConvNet's order)."""
    cdef floating total = 0
    cdef Py_ssize_t r, c
    for c in range(c0, c1):
        for r in range(r0, r1):
            total = total + plane[r + c * H]
    return total * (<floating>1 / <floating>((r1 - r0) * (c1 - c0)))


cdef void forward_plane(const floating* xp, const floating* roi, const double* transform, floating* out,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t SH, Py_ssize_t SW, bint average) noexcept nogil:
    """The SH x SW tiles of one region in one channel plane ``xp`` of its image (0 where empty)."""
    cdef Region g = region_of(roi, transform)
    cdef floating bin_h = <floating>(<double>g.height / SH)
    cdef floating bin_w = <floating>(<double>g.width / SW)
    cdef Py_ssize_t ph, pw, r0, r1, c0, c1
    for pw in range(SW):
        tile_span(pw, bin_w, g.left, W, &c0, &c1)
        for ph in range(SH):
            tile_span(ph, bin_h, g.top, H, &r0, &r1)
            if r1 <= r0 or c1 <= c0:
                out[ph + SH * pw] = 0
            elif average:
                out[ph + SH * pw] = tile_mean(xp, H, r0, r1, c0, c1)
            else:
                out[ph + SH * pw] = xp[tile_argmax(xp, H, r0, r1, c0, c1)]


def _forward(const floating[::1] x, const floating[::1] rois, const double[::1] transform, floating[::1] y,
             Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t SH, Py_ssize_t SW, bint average,
             int n_threads):
    """y[ph, pw, c, k]: the max or mean of tile (ph, pw) of region k in channel c (0 if it is empty)."""
    cdef Py_ssize_t K = rois.shape[0] // 5
    cdef Py_ssize_t plane, k, c
    for plane in prange(K * C, nogil=True, num_threads=n_threads, schedule='dynamic'):
        k = plane // C
        c = plane % C
        forward_plane(&x[H * W * (c + C * (<Py_ssize_t>rois[5 * k] - 1))], &rois[5 * k], &transform[0],
                      &y[SH * SW * plane], H, W, SH, SW, average)


cdef void backward_plane(const floating* xp, const floating* rois, const double* transform, const floating* dzdy,
                         floating* dxp, Py_ssize_t image, Py_ssize_t c, Py_ssize_t K, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t C, Py_ssize_t SH, Py_ssize_t SW, bint average) noexcept nogil:
    """Add into one plane of dzdx (image, channel c) the dzdy of every region of that image."""
    cdef Py_ssize_t k, ph, pw, r0, r1, c0, c1, r, col
    cdef Region g
    cdef floating bin_h, bin_w, share
    cdef const floating* dy
    for k in range(K):
        g = region_of(rois + 5 * k, transform)
        if g.image != image:
            continue
        bin_h = <floating>(<double>g.height / SH)
        bin_w = <floating>(<double>g.width / SW)
        dy = dzdy + SH * SW * (c + C * k)
        for pw in range(SW):
            tile_span(pw, bin_w, g.left, W, &c0, &c1)
            for ph in range(SH):
                tile_span(ph, bin_h, g.top, H, &r0, &r1)
                if r1 <= r0 or c1 <= c0:
                    continue
                if average:
                    share = dy[ph + SH * pw] * (<floating>1 / <floating>((r1 - r0) * (c1 - c0)))
                    for col in range(c0, c1):
                        for r in range(r0, r1):
                            dxp[r + col * H] += share
                else:
                    dxp[tile_argmax(xp, H, r0, r1, c0, c1)] += dy[ph + SH * pw]


def _backward(const floating[::1] x, const floating[::1] rois, const double[::1] transform,
              const floating[::1] dzdy, floating[::1] dzdx, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
              Py_ssize_t N, Py_ssize_t SH, Py_ssize_t SW, bint average, int n_threads):
    """dzdx (zeros on entry): each tile's dzdy to its first maximum, or spread evenly over it."""
    cdef Py_ssize_t K = rois.shape[0] // 5
    cdef Py_ssize_t plane
    for plane in prange(N * C, nogil=True, num_threads=n_threads, schedule='dynamic'):
        backward_plane(&x[H * W * plane], &rois[0], &transform[0], &dzdy[0], &dzdx[H * W * plane],
                       plane // C, plane % C, K, H, W, C, SH, SW, average)


def forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_forward``."""
    float_kind("cnnx._ext.roipool.forward", x)
    return _forward(x, *args)


def backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_backward``."""
    float_kind("cnnx._ext.roipool.backward", x)
    return _backward(x, *args)

"""Bilinear sampler kernels (vl_nnbilinearsampler): sample images at grid points, and the derivatives.

Buffers are flat Fortran-ordered arrays: x (H, W, C, N), grid (2, Ho, Wo, No), y and dzdy
(Ho, Wo, C, No); output image m reads input image m // (No / N). A grid point (gy, gx) in [-1, 1]
is the input position py = (gy + 1) / 2 * (H - 1), px = (gx + 1) / 2 * (W - 1) (0-based), read from
its four neighbours with bilinear weights; neighbours outside the image count as zero, and a point
whose floor is outside [0, H) x [0, W) samples nothing (what MatConvNet's CPU code does: it means
[-1, H), but compares the int -1 with an unsigned size). A NaN coordinate gives NaN. The arithmetic is MatConvNet's, in the data's precision, in its order of neighbours.

Every output value is written by one thread: forward splits the (image, channel) planes of y, the
data derivative the (image, channel) planes of x (each adds its samples in a fixed order), the grid
derivative the grid points (each sums its channels in double, in order), so the results are the same
bit for bit at any thread count.
"""
cimport numpy as cnp
from .arrays cimport float_kind
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport floor, NAN

cnp.import_array()


cdef struct Point:
    Py_ssize_t sy, sx      # the top-left neighbour
    bint inside            # it is in [0, H) x [0, W)
    bint undefined         # a coordinate is NaN


cdef inline Point locate(floating gy, floating gx, Py_ssize_t H, Py_ssize_t W, floating* wy,
                         floating* wx) noexcept nogil:
    """The neighbours of grid point (gy, gx) and its weights wy, wx (the fractional parts)."""
    cdef Point p
    cdef floating py = <floating>0.5 * (gy + <floating>1.0) * <floating>(H - 1)
    cdef floating px = <floating>0.5 * (gx + <floating>1.0) * <floating>(W - 1)
    cdef double fy = floor(py), fx = floor(px)
    p.undefined = py != py or px != px
    p.inside = fy >= 0 and fy < H and fx >= 0 and fx < W
    p.sy = 0
    p.sx = 0
    if p.inside:
        p.sy = <Py_ssize_t>fy
        p.sx = <Py_ssize_t>fx
        wy[0] = py - <floating>p.sy
        wx[0] = px - <floating>p.sx
    return p


cdef inline floating weight(int k, floating w) noexcept nogil:
    """MatConvNet's (1 - k)(1 - w) + k w for neighbour k in {0, 1}: 1 - w or w."""
    return <floating>(1 - k) * (<floating>1.0 - w) + <floating>k * w


cdef inline floating sample(const floating* plane, Py_ssize_t H, Py_ssize_t W, floating gy,
                            floating gx) noexcept nogil:
    """The bilinear sample of one H x W plane at grid point (gy, gx)."""
    cdef floating wy = 0, wx = 0, acc = 0
    cdef Point p = locate(gy, gx, H, W, &wy, &wx)
    cdef int i, j
    cdef Py_ssize_t r, c
    if p.undefined:
        return <floating>NAN
    if not p.inside:
        return 0
    for j in range(2):
        for i in range(2):
            r = p.sy + i
            c = p.sx + j
            if r >= H or c >= W:
                continue
            acc = acc + weight(j, wx) * weight(i, wy) * plane[r + c * H]
    return acc


def _forward(const floating[::1] x, const floating[::1] grid, floating[::1] y, Py_ssize_t H, Py_ssize_t W,
             Py_ssize_t C, Py_ssize_t points, Py_ssize_t out_images, Py_ssize_t group, int n_threads):
    """y[s, c, m] = the sample of x[:, :, c, m // group] at grid point s of image m."""
    cdef Py_ssize_t plane, m, c, s
    cdef const floating* g
    cdef const floating* xp
    for plane in prange(out_images * C, nogil=True, num_threads=n_threads, schedule='dynamic'):
        m = plane // C
        c = plane % C
        g = &grid[2 * points * m]
        xp = &x[H * W * (c + C * (m // group))]
        for s in range(points):
            y[s + points * plane] = sample(xp, H, W, g[2 * s], g[2 * s + 1])


cdef void scatter_plane(floating* dxp, const floating* grid, const floating* dzdy, Py_ssize_t H,
                        Py_ssize_t W, Py_ssize_t C, Py_ssize_t points, Py_ssize_t first, Py_ssize_t count,
                        Py_ssize_t c) noexcept nogil:
    """Add into one H x W plane of dzdx channel c's dzdy of output images first .. first + count - 1."""
    cdef Py_ssize_t m, s, r, col
    cdef floating wy, wx, dy
    cdef const floating* g
    cdef Point p
    cdef int i, j
    for m in range(first, first + count):
        g = grid + 2 * points * m
        for s in range(points):
            wy = 0
            wx = 0
            p = locate(g[2 * s], g[2 * s + 1], H, W, &wy, &wx)
            if not p.inside or p.undefined:
                continue
            dy = dzdy[s + points * (c + C * m)]
            for j in range(2):
                for i in range(2):
                    r = p.sy + i
                    col = p.sx + j
                    if r >= H or col >= W:
                        continue
                    dxp[r + col * H] += weight(j, wx) * weight(i, wy) * dy


cdef void grid_point_derivative(const floating* x, const floating* g, const floating* dzdy, floating* dg,
                                Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t points) noexcept nogil:
    """dg[0:2] = d/d(gy, gx) of sum_c dzdy[c] * y[c] at one grid point; x is its input image,
    dzdy its first channel's value (channels are ``points`` apart)."""
    cdef floating wy = 0, wx = 0, v, dy, dgy, dgx
    cdef double sum_y = 0, sum_x = 0
    cdef Point p = locate(g[0], g[1], H, W, &wy, &wx)
    cdef Py_ssize_t c, r, col
    cdef int i, j
    if p.undefined:
        dg[0] = <floating>NAN
        dg[1] = <floating>NAN
        return
    if p.inside:
        for c in range(C):
            dy = dzdy[points * c]
            dgy = 0
            dgx = 0
            for j in range(2):
                for i in range(2):
                    r = p.sy + i
                    col = p.sx + j
                    if r >= H or col >= W:
                        continue
                    v = x[r + col * H + H * W * c]
                    dgx = dgx + <floating>(2 * j - 1) * weight(i, wy) * dy * v
                    dgy = dgy + <floating>(2 * i - 1) * weight(j, wx) * dy * v
            sum_y += dgy
            sum_x += dgx
    dg[0] = <floating>(0.5 * (H - 1) * sum_y)
    dg[1] = <floating>(0.5 * (W - 1) * sum_x)


def _backward(const floating[::1] x, const floating[::1] grid, const floating[::1] dzdy, floating[::1] dzdx,
              floating[::1] dgrid, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t points,
              Py_ssize_t out_images, Py_ssize_t group, int n_threads):
    """dzdx (zeros on entry) and dgrid of the sampler, projected onto dzdy."""
    cdef Py_ssize_t plane, b, c, k, m, s
    cdef Py_ssize_t in_images = out_images // group
    for plane in prange(in_images * C, nogil=True, num_threads=n_threads, schedule='dynamic'):
        b = plane // C
        c = plane % C
        scatter_plane(&dzdx[H * W * plane], &grid[0], &dzdy[0], H, W, C, points, b * group, group, c)
    for k in prange(out_images * points, nogil=True, num_threads=n_threads, schedule='static'):
        m = k // points
        s = k % points
        grid_point_derivative(&x[H * W * C * (m // group)], &grid[2 * k], &dzdy[s + points * C * m],
                              &dgrid[2 * k], H, W, C, points)


def forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_forward``."""
    float_kind("cnnx._ext.bilinearsampler.forward", x)
    return _forward(x, *args)


def backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_backward``."""
    float_kind("cnnx._ext.bilinearsampler.backward", x)
    return _backward(x, *args)

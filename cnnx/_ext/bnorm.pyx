"""Batch-normalisation kernels: per-channel moments, the normalisation and its derivatives.

Arrays are (H*W, C, N) Fortran views; the moments are a flat 2C buffer [means, sigmas] (MatConvNet's
C x 2 array in column order). The work is split over channels: one thread computes all of a
channel, summing its H*W*N values in double in one fixed order, so the results are the same bit for
bit at any thread count.
"""
cimport numpy as cnp
from .arrays cimport float_kind
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport sqrt

cnp.import_array()


cdef inline void channel_sums(const floating* x, const floating* dzdy, Py_ssize_t hw, Py_ssize_t stride,
                              Py_ssize_t images, double* sums) noexcept nogil:
    """sums = [sum x, sum x^2, sum dzdy, sum dzdy * x] over one channel (dzdy may be NULL), in double.

    Two interleaved partial sums per quantity break the add latency chain; the order is fixed.
    """
    cdef Py_ssize_t n, i
    cdef double v, d
    cdef double s0 = 0, s1 = 0, q0 = 0, q1 = 0, d0 = 0, d1 = 0, p0 = 0, p1 = 0
    cdef const floating* xp
    cdef const floating* dp
    for n in range(images):
        xp = x + n * stride
        if dzdy == NULL:
            for i in range(0, hw - 1, 2):
                v = xp[i]
                s0 += v
                q0 += v * v
                v = xp[i + 1]
                s1 += v
                q1 += v * v
            if hw % 2:
                v = xp[hw - 1]
                s0 += v
                q0 += v * v
        else:
            dp = dzdy + n * stride
            for i in range(0, hw - 1, 2):
                v = xp[i]
                d = dp[i]
                s0 += v
                q0 += v * v
                d0 += d
                p0 += d * v
                v = xp[i + 1]
                d = dp[i + 1]
                s1 += v
                q1 += v * v
                d1 += d
                p1 += d * v
            if hw % 2:
                v = xp[hw - 1]
                d = dp[hw - 1]
                s0 += v
                q0 += v * v
                d0 += d
                p0 += d * v
    sums[0] = s0 + s1
    sums[1] = q0 + q1
    sums[2] = d0 + d1
    sums[3] = p0 + p1


cdef inline void set_moments(const double* sums, double mass, double epsilon, floating* mean,
                             floating* sigma) noexcept nogil:
    """MatConvNet's moments: mean, sigma = sqrt(max(0, E[x^2] - mean^2) + epsilon)."""
    cdef double mu = sums[0] / mass
    cdef double var = sums[1] / mass - mu * mu
    if var < 0:
        var = 0
    mean[0] = <floating>mu
    sigma[0] = <floating>sqrt(var + epsilon)


cdef void forward_channel(const floating* x, floating* y, Py_ssize_t hw, Py_ssize_t stride,
                          Py_ssize_t images, floating g, floating b, floating* mean, floating* sigma,
                          bint compute_moments, double epsilon) noexcept nogil:
    """One channel of the forward pass (its moments first, if asked)."""
    cdef double sums[4]
    cdef Py_ssize_t n, i
    cdef floating coefficient, mu
    if compute_moments:
        channel_sums(x, <const floating*>NULL, hw, stride, images, sums)
        set_moments(sums, <double>hw * images, epsilon, mean, sigma)
    coefficient = g / sigma[0]
    mu = mean[0]
    for n in range(images):
        for i in range(hw):
            y[n * stride + i] = coefficient * (x[n * stride + i] - mu) + b


cdef void backward_channel(const floating* x, const floating* dzdy, floating* dzdx, Py_ssize_t hw,
                           Py_ssize_t stride, Py_ssize_t images, floating g, floating* mean,
                           floating* sigma, floating* dzdg, floating* dzdb, bint compute_moments,
                           double epsilon) noexcept nogil:
    """One channel of the backward pass (its moments too, if asked)."""
    cdef double sums[4]
    cdef double mass = <double>hw * images
    cdef double der_g, der_b, g1
    cdef floating c1, c2, muz, mu
    cdef Py_ssize_t n, i, k
    channel_sums(x, dzdy, hw, stride, images, sums)
    if compute_moments:
        set_moments(sums, mass, epsilon, mean, sigma)
    mu = mean[0]
    der_b = sums[2]
    der_g = (sums[3] - mu * der_b) / sigma[0]
    dzdb[0] = <floating>der_b
    dzdg[0] = <floating>der_g
    g1 = g / <double>sigma[0]
    c1 = <floating>g1
    muz = <floating>(der_b / mass)
    c2 = <floating>(g1 * der_g / (mass * sigma[0]))
    for n in range(images):
        for i in range(hw):
            k = n * stride + i
            dzdx[k] = c1 * (dzdy[k] - muz) - c2 * (x[k] - mu)


def _forward(const floating[::1, :, :] x, const floating[::1] g, const floating[::1] b,
             floating[::1] moments, bint compute_moments, double epsilon, floating[::1, :, :] y,
             int n_threads):
    """y = g/sigma * (x - mean) + b per channel; the moments are computed first if asked."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t c
    for c in prange(channels, nogil=True, num_threads=n_threads, schedule='dynamic'):
        forward_channel(&x[0, c, 0], &y[0, c, 0], hw, hw * channels, images, g[c], b[c],
                        &moments[c], &moments[c + channels], compute_moments, epsilon)


def _backward(const floating[::1, :, :] x, const floating[::1] g, const floating[::1, :, :] dzdy,
              floating[::1] moments, bint compute_moments, double epsilon, floating[::1, :, :] dzdx,
              floating[::1] dzdg, floating[::1] dzdb, int n_threads):
    """MatConvNet's derivatives: dzdb = sum dzdy, dzdg = (sum dzdy*x - mean*dzdb) / sigma and
    dzdx = g/sigma * (dzdy - dzdb/M) - g/sigma * dzdg/(M*sigma) * (x - mean), M = H*W*N."""
    cdef Py_ssize_t hw = x.shape[0], channels = x.shape[1], images = x.shape[2]
    cdef Py_ssize_t c
    for c in prange(channels, nogil=True, num_threads=n_threads, schedule='dynamic'):
        backward_channel(&x[0, c, 0], &dzdy[0, c, 0], &dzdx[0, c, 0], hw, hw * channels, images, g[c],
                         &moments[c], &moments[c + channels], &dzdg[c], &dzdb[c], compute_moments, epsilon)


def forward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_forward``."""
    float_kind("cnnx._ext.bnorm.forward", x)
    return _forward(x, *args)


def backward(x, *args):
    """Check the dtype of ``x`` (float32/float64), then run ``_backward``."""
    float_kind("cnnx._ext.bnorm.backward", x)
    return _backward(x, *args)

"""cnn_train's SGD-with-momentum update of one parameter, fused into one pass over its elements.

Per element, in the dtype of the parameter and in the order of cnn_train's NumPy formula, each
operation rounded once (no fused multiply-add, as the baseline build and its AVX2 clones have
none), so the bits are those of

    g = scale * der + decay * w
    v = momentum * v - g
    w_new = w + lr * (momentum * v - g if nesterov else v)

The momentum ``v`` is updated in place and the new parameter written to ``w_new``. Elements are
independent: the result does not depend on the thread count.
"""
cimport numpy as cnp
from .arrays cimport data_of, float_kind
from cython.parallel cimport prange
from cython cimport floating

cnp.import_array()


cdef void sgd_span(const floating* w, floating* v, const floating* der, floating* w_new, Py_ssize_t n,
                   floating scale, floating decay, floating momentum, floating lr,
                   bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, velocity
    if nesterov:
        for i in range(n):
            g = scale * der[i] + decay * w[i]
            velocity = momentum * v[i] - g
            v[i] = velocity
            w_new[i] = w[i] + lr * (momentum * velocity - g)
    else:
        for i in range(n):
            g = scale * der[i] + decay * w[i]
            velocity = momentum * v[i] - g
            v[i] = velocity
            w_new[i] = w[i] + lr * velocity


cdef void sgd_run(const floating* w, floating* v, const floating* der, floating* w_new, Py_ssize_t n,
                  double scale, double decay, double momentum, double lr, bint nesterov,
                  int n_threads) noexcept nogil:
    # The scalars are rounded to the parameter's dtype, as NumPy does with a Python float.
    cdef Py_ssize_t span = (n + n_threads - 1) // n_threads
    cdef Py_ssize_t t, start
    if n_threads == 1:  # skip the parallel region: on small parameters it costs more than the work
        sgd_span(w, v, der, w_new, n, <floating> scale, <floating> decay, <floating> momentum,
                 <floating> lr, nesterov)
        return
    for t in prange(n_threads, num_threads=n_threads, schedule='static'):
        start = t * span
        if start < n:
            sgd_span(w + start, v + start, der + start, w_new + start, min(span, n - start),
                     <floating> scale, <floating> decay, <floating> momentum, <floating> lr, nesterov)


def sgd_step(cnp.ndarray w, cnp.ndarray v, cnp.ndarray der, cnp.ndarray w_new, double scale,
             double decay, double momentum, double lr, bint nesterov, int n_threads):
    """Update ``v`` in place and write the new parameter into ``w_new`` (see the module's formula).

    All four arrays are Fortran-contiguous, of one dtype and size; ``v`` and ``w_new`` writable.
    """
    cdef int kind = float_kind("cnnx._ext.sgd.sgd_step", w)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(w)
    cdef void* wp = data_of(w, w, False)
    cdef void* vp = data_of(v, w, True)
    cdef void* dp = data_of(der, w, False)
    cdef void* op = data_of(w_new, w, True)
    with nogil:
        if kind == 0:
            sgd_run(<const float*> wp, <float*> vp, <const float*> dp, <float*> op, n, scale, decay,
                    momentum, lr, nesterov, n_threads)
        else:
            sgd_run(<const double*> wp, <double*> vp, <const double*> dp, <double*> op, n, scale, decay,
                    momentum, lr, nesterov, n_threads)

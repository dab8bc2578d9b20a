"""One fused-type GEMM over SciPy's BLAS, callable without the GIL from any kernel.

Use it inside ``with blas_single_threaded():`` (cnnx/_threads.py) when calling it from OpenMP threads,
so that BLAS itself does not start threads of its own.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(char transa, char transb, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb, floating beta,
                      floating* c, int ldc) noexcept nogil:
    """C = alpha * op(A) @ op(B) + beta * C for column-major (Fortran) matrices.

    op(X) is X for 'N' and X^T for 'T'; C is m x n and the inner dimension is k, as in BLAS.
    """
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb, &beta, c, &ldc)

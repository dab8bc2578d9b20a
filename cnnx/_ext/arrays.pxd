"""Shared pieces of the kernels' entry points: the dtype dispatch and raw buffers of NumPy arrays.

Every kernel entry is a ``def`` taking NumPy arrays the block function has already validated
(Fortran-contiguous, one dtype); it starts with ``float_kind`` on its first array, so that every
dtype dispatch ends in a TypeError naming the kernel and the dtype (float16, integers, complex),
and runs one fused-type (``cython.floating``) implementation for float32 and float64.
"""
cimport numpy as cnp


cdef inline int float_kind(str kernel, object a) except -1:
    """0 if ``a`` is a float32 array, 1 if float64; otherwise a TypeError naming ``kernel``."""
    cdef int t
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{kernel}: expected a float32 or float64 array, got {type(a).__name__}")
    t = cnp.PyArray_TYPE(<cnp.ndarray> a)
    if t == cnp.NPY_FLOAT32:
        return 0
    if t == cnp.NPY_FLOAT64:
        return 1
    raise TypeError(f"{kernel}: unsupported dtype {(<cnp.ndarray> a).dtype}; the kernels take float32 or float64")


cdef inline void* data_of(cnp.ndarray a, cnp.ndarray like, bint writable) except NULL:
    """The buffer of ``a``, which must be Fortran-contiguous, of ``like``'s dtype and size."""
    if (cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(like) or cnp.PyArray_SIZE(a) != cnp.PyArray_SIZE(like)
            or not cnp.PyArray_IS_F_CONTIGUOUS(a) or (writable and not cnp.PyArray_ISWRITEABLE(a))):
        raise ValueError("kernel arguments must be Fortran-contiguous arrays of one dtype and size")
    return cnp.PyArray_DATA(a)

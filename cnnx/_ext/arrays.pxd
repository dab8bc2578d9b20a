"""Raw buffers of NumPy arrays for the elementwise kernels' entry points."""
cimport numpy as cnp


cdef inline void* data_of(cnp.ndarray a, cnp.ndarray like, bint writable) except NULL:
    """The buffer of ``a``, which must be Fortran-contiguous, of ``like``'s dtype and size."""
    if (cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(like) or cnp.PyArray_SIZE(a) != cnp.PyArray_SIZE(like)
            or not cnp.PyArray_IS_F_CONTIGUOUS(a) or (writable and not cnp.PyArray_ISWRITEABLE(a))):
        raise ValueError("kernel arguments must be Fortran-contiguous arrays of one dtype and size")
    return cnp.PyArray_DATA(a)

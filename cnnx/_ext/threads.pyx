"""Whether the kernels were compiled with OpenMP."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #define CNNX_HAVE_OPENMP 1
    #else
    #define CNNX_HAVE_OPENMP 0
    #endif
    """
    const int CNNX_HAVE_OPENMP


def openmp_enabled():
    """Return True if the kernels were built with OpenMP (otherwise they run on one thread)."""
    return bool(CNNX_HAVE_OPENMP)

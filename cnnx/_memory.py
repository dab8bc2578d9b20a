"""How the process gets memory for the large arrays of a training step.

glibc's malloc maps every block above its mmap threshold (at most 32 MB) with a fresh mmap and
unmaps it when freed, so the next step's arrays of that size land on new pages that the kernel
must fault in and zero: for NIN's 65-80 MB activations (batch 100) that was ~15% of a 1x1
convolution's time and 7% of a training step at 1 thread. ``keep_freed_memory`` makes malloc
serve such blocks from its heap and keep what is freed there, so every step reuses the pages of
the one before.
"""
import ctypes
import platform
import sys

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int: the largest keeps the heap's free top

_kept = False


def keep_freed_memory():
    """Ask glibc's malloc to serve large blocks from its heap and to keep freed memory there, for
    the rest of the process.

    Training steps allocate arrays of the same sizes over and over; with this, each reuses memory
    the previous step freed instead of new pages that the kernel must fault in and zero. The
    process then keeps its peak memory until it exits (what it freed stays in malloc's heap for
    its own later arrays). :func:`cnnx.train.cnn_train` calls it.

    Returns
    -------
    bool
        True where it applies (Linux with glibc; calls after the first are no-ops), False
        elsewhere, where nothing changes.

    Examples
    --------
    >>> from cnnx._memory import keep_freed_memory
    >>> keep_freed_memory() in (True, False)
    True
    """
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _kept = bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES) and mallopt(_M_MMAP_MAX, 0))
    return _kept

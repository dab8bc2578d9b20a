"""Thread count for the kernels, and keeping BLAS single-threaded while they run.

The kernels parallelise over images with OpenMP and call BLAS from inside those threads, so BLAS
itself must run on one thread: otherwise OpenMP and BLAS threads oversubscribe the cores, and
OpenBLAS's idle workers keep spinning after each call and slow the loops that follow.
"""
import os
import threading
from contextlib import contextmanager

from ._ext.threads import openmp_enabled

_ENV = "CNNX_NUM_THREADS"


def _default_num_threads():
    """CNNX_NUM_THREADS if set (an empty or blank value counts as unset), else the usable cores."""
    raw = os.environ.get(_ENV)
    if raw is not None and raw.strip():
        try:
            n = int(raw)
        except ValueError:
            raise ValueError(f"{_ENV} must be a positive integer, got {raw!r}") from None
        if n < 1:
            raise ValueError(f"{_ENV} must be a positive integer, got {raw!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


_num_threads = _default_num_threads()


def set_num_threads(n):
    """Set the number of threads the cnnx kernels use.

    Parameters
    ----------
    n : int
        Number of OpenMP threads, at least 1. The default comes from the environment variable
        ``CNNX_NUM_THREADS`` (a positive integer, read when cnnx is imported; empty means unset)
        or, without it, the number of cores this process may use.

    Examples
    --------
    >>> import cnnx
    >>> cnnx.set_num_threads(1)
    >>> cnnx.get_num_threads()
    1
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) and not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be at least 1, got {n}")
    _num_threads = n


def get_num_threads():
    """Return the number of threads the cnnx kernels use (1 when built without OpenMP).

    Examples
    --------
    >>> import cnnx
    >>> cnnx.get_num_threads() >= 1
    True
    """
    return _num_threads if openmp_enabled() else 1


# Below this many elements of light (elementwise) work a second thread costs more to wake than it saves.
PARALLEL_MIN_ELEMENTS = 1 << 15


def threads_for(n_elements):
    """Number of kernel threads for ``n_elements`` of elementwise work: 1 for small tensors."""
    return 1 if n_elements < PARALLEL_MIN_ELEMENTS else get_num_threads()


_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved = None
_blas_controller = None


def _blas_libraries():
    """(get, set) thread-count functions of every loaded BLAS, found once with threadpoolctl.

    For OpenBLAS the raw C entry points are used: threadpoolctl's own wrappers cost ~0.1 ms a call
    and ignore calls from all but the first thread that used them.
    """
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        import scipy.linalg.cython_blas  # noqa: F401  (make sure SciPy's BLAS is loaded and seen)

        found = []
        for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
            affixes = lib._find_affixes() if lib.internal_api == "openblas" else None
            if affixes is not None and lib.threading_layer != "openmp":
                prefix, suffix = affixes
                getter = getattr(lib.dynlib, f"{prefix}openblas_get_num_threads{suffix}")
                setter = getattr(lib.dynlib, f"{prefix}openblas_set_num_threads{suffix}")
                found.append((getter, setter))
            else:
                found.append((lib.get_num_threads, lib.set_num_threads))
        _blas_controller = found
    return _blas_controller


@contextmanager
def blas_single_threaded():
    """Run the enclosed kernels with every loaded BLAS limited to one thread, then restore it.

    Nested and concurrent uses (several Python threads) share one limit, restored by the last to leave.
    """
    global _blas_users, _blas_saved
    with _blas_lock:
        if _blas_users == 0:
            libs = _blas_libraries()
            _blas_saved = [get() for get, _ in libs]
            for (_, set_threads), n in zip(libs, _blas_saved):
                if n != 1:
                    set_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for (_, set_threads), n in zip(_blas_libraries(), _blas_saved):
                    if n is not None and n != 1:
                        set_threads(n)

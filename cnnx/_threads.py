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


# The thread policy: a kernel gets one thread per ``min_per_thread`` units of work (at least one,
# at most get_num_threads()): waking a thread, and on a shared machine waiting for it to be
# scheduled, costs more than it saves on small work. The thresholds below were measured on a
# 2-core AMD EPYC (Zen 3) VM, one thread against two side by side, single-thread times shown:
#   relu (elementwise): 2^15 elements 1.6 us (2 threads 1.9), 2^16 3.2 us (2.7), 2^17 8.4 (4.4)
#   pool 3x3 stride 2:  2^14 input elements 11 us (10), 2^16 32 us (30), 2^18 146 us
#   conv forward:       0.08 MFLOP 19 us (20), 1.8 MFLOP 55 us (48), 7.2 MFLOP 309 us (194);
#                       6x6x3x1 * 3x3x3x2 (2 kFLOP, the README's check_derivative): 15 us, and
#                       0.1 ms against 0.8 ms a call at 2 threads on a busy machine.
# The thread count never changes results: work is cut by size only (see DESIGN.md).
ELEMENTWISE_ELEMENTS_PER_THREAD = 1 << 15
POOL_ELEMENTS_PER_THREAD = 1 << 16
CONV_FLOPS_PER_THREAD = 1 << 20


def threads_for_work(work, min_per_thread, most=None):
    """Number of kernel threads for ``work`` units: one per started ``min_per_thread`` units
    (so 1 below ``min_per_thread``), at most get_num_threads() and ``most`` (the number of
    parallel items, if given).

    ``work`` and ``min_per_thread`` share a unit chosen by the caller: elements for elementwise
    kernels (``ELEMENTWISE_ELEMENTS_PER_THREAD``) and pooling (``POOL_ELEMENTS_PER_THREAD``,
    input elements), floating-point operations for convolutions (``CONV_FLOPS_PER_THREAD``).
    """
    n = min(get_num_threads(), -(-int(work) // min_per_thread))
    if most is not None:
        n = min(n, most)
    return int(max(1, n))


def threads_for(n_elements):
    """Threads for ``n_elements`` of elementwise work (``threads_for_work`` with the elementwise rate)."""
    return threads_for_work(n_elements, ELEMENTWISE_ELEMENTS_PER_THREAD)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved = None
_blas_controller = None


def _openblas_entry_points(filepath):
    """(get, set) of OpenBLAS's own thread-count C functions in the library at ``filepath``, or
    None. Builds name them with a prefix and a suffix (SciPy's and NumPy's wheels:
    ``scipy_openblas_set_num_threads`` and ``scipy_openblas_set_num_threads64_``)."""
    import ctypes

    try:
        dll = ctypes.CDLL(filepath)  # already loaded by NumPy/SciPy: the same handle
    except OSError:
        return None
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            try:
                getter = getattr(dll, f"{prefix}openblas_get_num_threads{suffix}")
                setter = getattr(dll, f"{prefix}openblas_set_num_threads{suffix}")
            except AttributeError:
                continue
            getter.restype = ctypes.c_int
            getter.argtypes = []
            setter.restype = None
            setter.argtypes = [ctypes.c_int]
            return getter, setter
    return None


def _blas_libraries():
    """(get, set) thread-count functions of every loaded BLAS, found once (then cached) from
    threadpoolctl's public description of the loaded libraries (``ThreadpoolController.info()``).

    For OpenBLAS (not its OpenMP build, which follows the OpenMP settings) the raw C entry points
    are called through ctypes: threadpoolctl's own limits cost ~0.1 ms a call and ignore calls
    from all but the first thread that used them. Other libraries go through threadpoolctl's
    public ``limit``.
    """
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        import scipy.linalg.cython_blas  # noqa: F401  (make sure SciPy's BLAS is loaded and seen)

        found = []
        controller = ThreadpoolController()
        for info in controller.info():
            if info.get("user_api") != "blas":
                continue
            entry = None
            if info.get("internal_api") == "openblas" and info.get("threading_layer") != "openmp":
                entry = _openblas_entry_points(info["filepath"])
            if entry is None:
                lib = controller.select(filepath=info["filepath"])
                entry = (lambda lib=lib: lib.info()[0]["num_threads"],
                         lambda n, lib=lib: lib.limit(limits=n))
            found.append(entry)
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

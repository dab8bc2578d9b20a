"""Writing files all or nothing: checkpoints, statistics, plots, downloads and caches."""
import os
import uuid
from contextlib import contextmanager


@contextmanager
def atomic_open(path, mode="wb"):
    """Open a hidden temporary file beside ``path``; rename it over ``path`` when the block succeeds.

    If the block raises (or the process dies), ``path`` is untouched and the temporary file is
    removed (or, after a crash, left as ``.NAME.*.tmp``, which nothing trusts). Yields the open file.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, mode.replace("w", "x")) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)

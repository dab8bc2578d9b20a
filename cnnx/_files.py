"""Writing files all or nothing: checkpoints, statistics, plots, downloads and caches."""
import errno
import os
import re
import uuid
from contextlib import contextmanager

# The temporary files atomic_open makes: ".NAME.PID.HEX8.tmp" beside NAME.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.tmp")


@contextmanager
def atomic_open(path, mode="wb", fname="cnnx", what="the file"):
    """Open a hidden temporary file beside ``path``; rename it over ``path`` when the block succeeds.

    If the block raises (or the process dies), ``path`` is untouched and the temporary file is
    removed (or, after a crash, left as ``.NAME.PID.HEX8.tmp``, which nothing trusts and
    :func:`remove_stale_temporaries` deletes). An OSError while writing (a full disk, a quota)
    is raised again as one OSError with the same errno whose message starts with ``fname`` and
    names ``what`` was being written and ``path``. Yields the open file.
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
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"{fname}: could not write {what} {path}: {reason}; "
                                   f"the file is unchanged") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as error:  # EPERM: alive, someone else's
        return error.errno == errno.EPERM
    return True


def remove_stale_temporaries(folder, names):
    """Delete the temporary files atomic_open left in ``folder`` for the files matching ``names``.

    ``names`` is a compiled pattern the final file name must fully match. Files of a process that
    is still running (another writer of the same folder) are kept. Returns the removed names.
    """
    removed = []
    for entry in sorted(os.listdir(folder)):
        match = _TEMPORARY.fullmatch(entry)
        if not match or not names.fullmatch(match["name"]) or _process_alive(int(match["pid"])):
            continue
        try:
            os.remove(os.path.join(folder, entry))
        except FileNotFoundError:  # removed by a concurrent resume
            continue
        removed.append(entry)
    return removed

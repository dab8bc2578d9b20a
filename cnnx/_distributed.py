"""Data-parallel training over MPI for ``cnn_train`` (mpi4py; the optional extra ``cnnx[mpi]``).

Every rank holds the whole network. Rank ``r`` of ``K`` evaluates ``batch[r::K]`` of every batch
(shares differ by at most one image), then one collective call per step, an allgather of one
contiguous byte buffer holding the rank's parameter derivatives and its running statistics,
gives every rank every partial. Each rank sums them itself in rank order, so all ranks hold the
same derivatives, bit for bit, and take the same solver step.

Why an allgather and not an allreduce: MPI may sum the partials of an allreduce in any grouping,
and floating-point sums depend on it. Summed in rank order, K ranks give exactly the derivatives
one process computes with ``num_sub_batches = K`` (the same interleaved pieces, the same kernels,
added one after the other in the same order), hence exactly its weights. Compared with
``num_sub_batches = 1`` the derivatives differ by the rounding of that regrouping (float32: a
relative 1e-7 per step, growing slowly over training). The cost: each rank receives ``K - 1``
buffers per step, against about two for an allreduce; for the few machines this is meant for that
is the same order.

bnorm moments and every other parameter learned by a running average (the registry's
``weight_train_methods == 'average'``, DagNN's ``train_method = 'average'``) travel in the same
buffer: their "derivative" is the batch moments times the images, so the sum over ranks divided by
the global batch size is the average of the ranks' moments weighted by their images, as
MatConvNet's multi-GPU training averages them.

Every collective call waits at most ``comm_timeout`` seconds (nonblocking calls polled with short
sleeps, which also keeps a waiting rank off the cores the others compute on): then the rank says
so on stderr and aborts the MPI job (``MPI_Abort``), since neither MPI nor the process could end
cleanly while another rank hangs. A rank that died, hangs or stopped on an error of its own is
therefore an error, not a hang. At the start one handshake compares what must
be equal on every rank (cnnx version, network, initial weights, batch size, sets, schedule, solver).
"""
import hashlib
import os
import sys
import time

import numpy as np

from ._threads import get_num_threads, set_num_threads

_FNAME = "cnn_train"
_LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def launched_ranks():
    """The number of ranks mpiexec started this process with (1 when not started by mpiexec)."""
    for name in _LAUNCHER_SIZES:
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return 1


def communicator(comm):
    """The communicator cnn_train's ``comm`` option asks for, or None for a single process.

    ``'auto'`` is MPI's COMM_WORLD when mpiexec started more than one rank, else None; None is a
    single process; anything else must be an mpi4py communicator.
    """
    if isinstance(comm, str) and comm == "auto":
        size = launched_ranks()
        if size < 2:
            return None
        try:
            from mpi4py import MPI
        except ImportError:
            raise RuntimeError(f"{_FNAME}: mpiexec started {size} ranks but mpi4py is not installed "
                               "(pip install 'cnnx[mpi]'), so they cannot train together") from None
        comm = MPI.COMM_WORLD
    if comm is None:
        return None
    if not all(hasattr(comm, name) for name in ("Get_rank", "Get_size", "Iallgather", "Ibcast")):
        raise TypeError(f"{_FNAME}: comm must be 'auto', None or an mpi4py communicator, got {comm!r}")
    return comm if comm.Get_size() > 1 else None


class Ranks:
    """One rank's side of the data-parallel training: its share of a batch, the step's exchange."""

    def __init__(self, comm, timeout):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        self.layout = None  # (key, offset, shape, dtype) of each derivative in the buffer
        self.bytes_per_step = 0  # what one training step's allgather brings into each rank
        self.reported = False  # whether cnn_train has printed the ranks and bytes_per_step
        self._threads_per_rank()

    @property
    def is_root(self):
        return self.rank == 0

    def _threads_per_rank(self):
        """CNNX_NUM_THREADS, or the cores shared by the ranks on this machine, so they never oversubscribe."""
        if os.environ.get("CNNX_NUM_THREADS", "").strip():
            return
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        if get_num_threads() != cores:
            return  # set by the program (cnnx.set_num_threads): its choice stands
        from mpi4py import MPI

        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        set_num_threads(max(1, cores // local.Get_size()))
        local.Free()

    def share(self, batch):
        """This rank's images of ``batch``: every K-th, from the rank's position."""
        return batch[self.rank :: self.size]

    def _wait(self, request, what):
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not request.Test():
            if time.monotonic() > deadline:
                # MPI cannot finish (nor this process exit) while a rank hangs: say why, end the job
                print(f"{_FNAME}: rank {self.rank} of {self.size} waited {self.timeout:g} s for the other ranks "
                      f"at {what}: a rank died, hangs or stopped with an error (see its output); "
                      "aborting the MPI job", file=sys.stderr, flush=True)
                self.comm.Abort(1)
            time.sleep(pause)
            pause = min(2 * pause, 2e-3)

    def allgather(self, data, what):
        """Every rank's bytes ``data`` (equal sizes), as a (ranks, bytes) uint8 array."""
        gathered = np.empty((self.size, data.size), dtype=np.uint8)
        self._wait(self.comm.Iallgather(data, gathered), what)
        return gathered

    def broadcast(self, data, what):
        """Rank 0's bytes (a uint8 array there; anything on the others), on every rank."""
        size = np.array([data.size if self.is_root else 0], dtype=np.int64)
        self._wait(self.comm.Ibcast(size, root=0), what)
        out = data if self.is_root else np.empty(int(size[0]), dtype=np.uint8)
        self._wait(self.comm.Ibcast(out, root=0), what)
        return out

    # ---------------------------------------------------------------------------------------------
    # Start-up handshake
    # ---------------------------------------------------------------------------------------------

    def handshake(self, facts):
        """ValueError on every rank unless ``facts`` ({name: value}) are equal on all of them.

        Numbers are compared as they are (and shown), anything else by a digest of its repr.
        """
        names = list(facts)
        row = np.zeros((len(names), 5), dtype=np.float64)  # a number, or 32 digest bytes
        for i, name in enumerate(names):
            value = facts[name]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[i, 0] = value
            else:
                row[i, 1:] = np.frombuffer(hashlib.sha256(repr(value).encode()).digest(), dtype=np.float64)
        table = self.allgather(row.reshape(-1).view(np.uint8), "the start-up handshake")
        table = table.view(np.float64).reshape(self.size, len(names), 5)
        for i, name in enumerate(names):
            for r in range(1, self.size):
                if np.array_equal(table[r, i].view(np.uint64), table[0, i].view(np.uint64)):
                    continue
                numeric = not table[0, i, 1:].any() and not table[r, i, 1:].any()
                shown = f" ({table[r, i, 0]:g} on rank {r}, {table[0, i, 0]:g} on rank 0)" if numeric else ""
                raise ValueError(f"{_FNAME}: rank {r} of {self.size} has another {name} than rank 0{shown}; "
                                 "every rank must run the same training")

    def check_batches(self, phase, count, batch_size):
        """ValueError unless every rank gets images from the first batch of a phase of ``count`` images."""
        first = min(count, batch_size)
        if 0 < first < self.size:
            raise ValueError(f"{_FNAME}: the {phase} set's first batch has {first} images for {self.size} ranks; "
                             "every rank needs at least one (use fewer ranks or more images)")

    def resumed(self, resume, load):
        """Resume on every rank from the checkpoint rank 0 chooses.

        Rank 0 calls ``resume()`` -> ``(result, path)`` (``path``: the checkpoint it resumed from,
        or None) and sends the file's bytes, so that no folder needs to be shared; the other ranks
        call ``load(path)`` on their copy. An error on rank 0 is an error on every rank.
        """
        import json
        import tempfile

        header, data, failure, result = {}, np.zeros(0, dtype=np.uint8), None, None
        if self.is_root:
            try:
                result, path = resume()
            except Exception as err:  # noqa: BLE001 - every rank must hear of it before rank 0 raises it
                failure = err
                header = {"error": f"{type(err).__name__}: {err}"}
            else:
                header = {"name": None if path is None else os.path.basename(path)}
                if path is not None:
                    data = np.fromfile(path, dtype=np.uint8)
        text = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        header = json.loads(self.broadcast(text, "resuming (the checkpoint's name)").tobytes())
        data = self.broadcast(data, "resuming (the checkpoint)")
        if failure is not None:
            raise failure
        if "error" in header:
            raise RuntimeError(f"{_FNAME}: rank 0 could not resume, so rank {self.rank} stops too: {header['error']}")
        if self.is_root:
            return result
        if header["name"] is None:
            return load(None)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, header["name"])
            data.tofile(path)
            return load(path)

    # ---------------------------------------------------------------------------------------------
    # One step's exchange
    # ---------------------------------------------------------------------------------------------

    def _plan(self, slots, num_sums):
        layout, offset = [], 8 + 8 * num_sums  # the rank's image count, then its statistic sums
        for key, slot in slots:
            der = np.asarray(slot.der)
            layout.append((key, offset, der.shape, der.dtype))
            offset += -(-der.nbytes // 8) * 8  # 8-byte aligned, for the float64 views
        self.layout = layout
        self._num_sums = num_sums
        self._buffer = np.zeros(offset, dtype=np.uint8)
        self.bytes_per_step = (self.size - 1) * offset

    def exchange(self, images, sums, slots=None):
        """Sum the statistics and (in training) the derivatives of every rank, in rank order.

        ``images``: the images this rank evaluated in this step (0: its derivatives are not read);
        ``sums``: its float64 statistic sums of the phase so far; ``slots``: the model's
        ``(key, _Slot)`` list, whose ``der`` is replaced by the sum over the ranks. Returns the
        summed statistics.
        """
        sums = np.asarray(sums, dtype=np.float64)
        slots = slots or []
        keys = [key for key, _ in slots]
        if self.layout is None or self._num_sums != sums.size or (
                slots and images and keys != [key for key, *_ in self.layout]):
            if slots and not images:
                raise RuntimeError(f"{_FNAME}: rank {self.rank} has no derivatives to send yet")
            self._plan(slots, sums.size)
        buffer = self._buffer
        buffer[:8].view(np.int64)[0] = images
        buffer[8 : 8 + 8 * sums.size].view(np.float64)[:] = sums
        ders = {}
        if slots:
            for (key, slot), (_, offset, shape, dtype) in zip(slots, self.layout):
                size = int(np.prod(shape))
                part = buffer[offset : offset + size * dtype.itemsize].view(dtype)
                part[:] = np.asarray(slot.der).reshape(-1, order="F") if images else 0
            gathered = self.allgather(buffer, "the exchange of derivatives")
        else:
            gathered = self.allgather(buffer[: 8 + 8 * sums.size], "the exchange of statistics")
        counts = gathered[:, :8].copy().view(np.int64).reshape(-1)
        given = [r for r in range(self.size) if counts[r] > 0]
        table = gathered[:, 8 : 8 + 8 * sums.size].copy().view(np.float64)
        total = table[0].copy()
        for r in range(1, self.size):
            total += table[r]
        for (key, slot), (_, offset, shape, dtype) in zip(slots, self.layout):
            size = int(np.prod(shape))
            parts = [gathered[r, offset : offset + size * dtype.itemsize].view(dtype) for r in given]
            der = parts[0].copy()
            for part in parts[1:]:
                der += part  # one after the other, as num_sub_batches accumulates
            ders[key] = der.reshape(shape, order="F")
            slot.der = ders[key]
        return total


def digest_of_weights(arrays):
    """SHA-256 of a sequence of arrays (their dtypes, shapes and bytes), as hex."""
    sha = hashlib.sha256()
    for arr in arrays:
        arr = np.asarray(arr)
        sha.update(f"{arr.dtype.str}{arr.shape}".encode())
        sha.update(np.ascontiguousarray(arr).tobytes())
    return sha.hexdigest()

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
import random
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


def plan_offsets(sizes, starts, ends, align=64, budget=2_000_000):
    """Offsets in one arena for blocks with known lifetimes, so that blocks alive at the same time
    never overlap, and the arena is small.

    Each trial places the blocks one by one, in some order, each at the lowest offset clear of the
    placed blocks that meet it in time. The orders tried: by size, by size times lifetime, then
    random perturbations of these (from a fixed seed, so the plan is the same every run) until
    the arena is as small as the most bytes alive at once, which no plan can beat, or until about
    ``budget`` block comparisons are spent. The smallest arena found wins.

    Parameters
    ----------
    sizes : sequence of int
        Bytes of each block.
    starts, ends : sequence of int
        When each block is allocated and released (block i is alive from ``starts[i]`` up to
        ``ends[i]``); ``ends[i] < 0`` leaves block i unplanned.
    align : int, default 64
        Every offset is a multiple of it.
    budget : int, default 2000000
        About how many block comparisons the search may spend.

    Returns
    -------
    offsets : list of int
        Each block's offset, or -1 if unplanned.
    size : int
        The arena's bytes: the end of the last block.

    Examples
    --------
    >>> plan_offsets([100, 100, 50], [0, 2, 1], [1, 3, 4])  # block 2 meets block 1, not block 0
    ([0, 64, 0], 164)
    """
    planned = [i for i in range(len(sizes)) if ends[i] >= 0]
    if not planned:
        return [-1] * len(sizes), 0
    rounded = {i: -(-sizes[i] // align) * align for i in planned}
    events = sorted([(ends[i], -rounded[i]) for i in planned] + [(starts[i], rounded[i]) for i in planned])
    alive = bound = 0
    for _, change in events:  # releases sort before allocations at the same time
        alive += change
        bound = max(bound, alive)
    # About the smallest arena any plan can have: the most bytes alive at once, the blocks rounded
    # up as their offsets are (all but the one on top, taken as the largest). The search stops there.
    bound = bound - max(rounded.values()) + max(sizes[i] for i in planned)

    def trial(order):
        offsets = [-1] * len(sizes)
        placed = []  # (start, end, offset, size)
        for i in order:
            offset = 0
            for lo, hi in sorted((o, o + n) for a, b, o, n in placed if a < ends[i] and starts[i] < b):
                if lo >= offset + sizes[i]:
                    break
                offset = max(offset, -(-hi // align) * align)
            offsets[i] = offset
            placed.append((starts[i], ends[i], offset, sizes[i]))
        return max(o + n for _, _, o, n in placed), offsets

    def lifetime(i):
        return ends[i] - starts[i]

    rng = random.Random(0)
    orders = [lambda: sorted(planned, key=lambda i: (-sizes[i], starts[i])),
              lambda: sorted(planned, key=lambda i: (-sizes[i] * lifetime(i), starts[i]))]
    best = None
    for t in range(max(2, budget // len(planned) ** 2)):
        if t < len(orders):
            order = orders[t]()
        else:
            order = sorted(planned, key=lambda i: -sizes[i] * rng.uniform(0.5, 1.5) * lifetime(i) ** rng.random())
        found = trial(order)
        if best is None or found[0] < best[0]:
            best = found
        if best[0] <= bound:
            break
    return best[1], best[0]


class StepMemory:
    """Lay out the large arrays of repeated training steps in one planned arena (NumPy's memory
    handler, in the current thread's context, while the ``with`` block runs).

    Steps are marked by :meth:`start_step` and :meth:`end_step`. The first step only warms up;
    the second is recorded: every NumPy array of at least ``threshold`` bytes, its size and when
    it was allocated and freed. :func:`plan_offsets` then places the blocks freed within that step
    in one arena, and from the third step on the k-th large array of a step goes to the k-th
    planned offset when its size matches and no array alive in the arena is in the way. The other
    large arrays of a step (those that outlive it, or of a step that differs) come from malloc;
    between steps, large arrays take the lowest free place in the arena (else malloc); before the
    plan, each gets a mapping of its own, given back to the system when freed, so that the
    unplanned steps leave no holes in malloc's heap. So a step needs no new pages, and the memory
    held is about the most a step holds at once. Smaller arrays use malloc.

    Parameters
    ----------
    threshold : int, default 262144
        Arrays of at least this many bytes are planned.
    max_blocks : int, default 4096
        The most large arrays of the recorded step that are planned.

    Examples
    --------
    >>> import numpy as np
    >>> with StepMemory(threshold=1 << 16) as memory:
    ...     for step in range(4):
    ...         memory.start_step()
    ...         a = np.ones(1 << 15)      # 256 KiB
    ...         b = a * 2                 # alive with a: another place
    ...         del a, b
    ...         memory.end_step()
    >>> memory.hits, memory.misses, memory.arena_size
    (4, 0, 524288)
    """

    def __init__(self, threshold=1 << 18, max_blocks=4096):
        from ._ext.step_memory import StepMemoryHandler

        self._handler = StepMemoryHandler(threshold, max_blocks)
        self._previous = None
        self._steps = 0
        self._arena_size = 0

    def __enter__(self):
        self._previous = self._handler.install()
        return self

    def __exit__(self, *exc):
        self._handler.restore(self._previous)
        self._handler.retire()
        return False

    def start_step(self):
        """A step starts."""
        self._steps += 1
        if self._steps == 2:
            self._handler.record()
        else:
            self._handler.start_step()

    def end_step(self):
        """The step ended; the end of the recorded step plans the arena."""
        if self._steps == 2:
            sizes, starts, ends = self._handler.recorded()
            offsets, self._arena_size = plan_offsets(sizes.tolist(), starts.tolist(), ends.tolist())
            if not self._handler.serve(sizes, offsets, self._arena_size):
                self._arena_size = 0
        self._handler.pause()

    @property
    def arena_size(self):
        """Bytes of the planned arena (0 until the recorded step ends)."""
        return self._arena_size

    @property
    def hits(self):
        """Large arrays of the served steps that got their planned place."""
        return self._handler.hits

    @property
    def misses(self):
        """Large arrays of the served steps that did not."""
        return self._handler.misses

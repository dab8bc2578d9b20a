"""The NumPy memory handler of step_memory.h, which lays out repeated training steps' large arrays
in one planned arena; :class:`cnnx._memory.StepMemory` drives it."""
import numpy as np

cimport numpy as cnp
from libc.stdlib cimport calloc, malloc

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

cdef extern from "step_memory.h" nogil:
    enum:
        CNNX_IDLE
        CNNX_RECORDING
        CNNX_SERVING
        CNNX_PAUSED
    ctypedef struct cnnx_step_memory:
        size_t threshold
        int mode
        Py_ssize_t n_records, max_records
        size_t* record_size
        Py_ssize_t* record_start
        Py_ssize_t* record_end
        Py_ssize_t clock
        Py_ssize_t n_slots, position
        size_t* plan_size
        Py_ssize_t* plan_offset
        char* arena
        size_t arena_size
        Py_ssize_t n_in_arena
        Py_ssize_t n_own
        cnnx_block* own
        Py_ssize_t hits, misses
    ctypedef struct cnnx_block:
        Py_ssize_t slot
    char* cnnx_map(size_t size)
    void cnnx_step_memory_retire(cnnx_step_memory* m)
    void cnnx_step_memory_destroy(cnnx_step_memory* m)

cdef extern from "step_memory.h":
    object cnnx_step_memory_capsule(cnnx_step_memory* m)


cdef class StepMemoryHandler:
    """The handler and its state: record a step's large requests, then serve planned offsets.

    Parameters
    ----------
    threshold : int
        Requests of at least this many bytes are large (the rest go to malloc).
    max_records : int
        The most large requests one recorded step may plan.
    """
    cdef cnnx_step_memory* m
    cdef readonly object capsule

    def __cinit__(self, size_t threshold, Py_ssize_t max_records):
        if threshold < 1 or max_records < 1:
            raise ValueError("StepMemoryHandler: threshold and max_records must be positive")
        cdef cnnx_step_memory* m = <cnnx_step_memory*> calloc(1, sizeof(cnnx_step_memory))
        if m == NULL:
            raise MemoryError("StepMemoryHandler: cannot allocate its state")
        m.threshold = threshold
        m.max_records = max_records
        m.record_size = <size_t*> malloc(max_records * sizeof(size_t))
        m.record_start = <Py_ssize_t*> malloc(max_records * sizeof(Py_ssize_t))
        m.record_end = <Py_ssize_t*> malloc(max_records * sizeof(Py_ssize_t))
        if m.record_size == NULL or m.record_start == NULL or m.record_end == NULL:
            cnnx_step_memory_destroy(m)
            raise MemoryError("StepMemoryHandler: cannot allocate its record")
        self.capsule = cnnx_step_memory_capsule(m)  # owns m from here on
        self.m = m

    def install(self):
        """Make NumPy allocate through this handler (in the current context); return the
        handler it replaces, for :meth:`restore`."""
        return PyDataMem_SetHandler(self.capsule)

    @staticmethod
    def restore(previous):
        """Reinstall ``previous`` (what :meth:`install` returned)."""
        PyDataMem_SetHandler(previous)

    def record(self):
        """Start recording the large requests (each gets a mapping of its own meanwhile)."""
        self.m.mode = CNNX_RECORDING
        self.m.n_records = 0
        self.m.clock = 0

    def recorded(self):
        """Stop recording; return the recorded requests' sizes, and the event clock at their
        allocation and at their release (-1: still alive), as int64 arrays."""
        cdef Py_ssize_t k, n = self.m.n_records
        sizes = np.empty(n, np.int64)
        starts = np.empty(n, np.int64)
        ends = np.empty(n, np.int64)
        for k in range(n):
            sizes[k] = <cnp.int64_t> self.m.record_size[k]
            starts[k] = self.m.record_start[k]
            ends[k] = self.m.record_end[k]
        for k in range(self.m.n_own):
            self.m.own[k].slot = -1
        self.m.mode = CNNX_PAUSED
        return sizes, starts, ends

    def serve(self, sizes, offsets, size_t arena_size):
        """Map an arena of ``arena_size`` bytes and serve slot k's request (``sizes[k]`` bytes) at
        ``offsets[k]`` (-1: unplanned) from the next step on. Returns False (and serves nothing)
        when the arena cannot be mapped."""
        cdef const cnp.int64_t[::1] size_view = np.ascontiguousarray(sizes, np.int64)
        cdef const cnp.int64_t[::1] offset_view = np.ascontiguousarray(offsets, np.int64)
        cdef Py_ssize_t k, n = size_view.shape[0]
        if self.m.plan_size != NULL or self.m.arena != NULL:
            raise ValueError("StepMemoryHandler.serve: a plan is already served")
        if offset_view.shape[0] != n:
            raise ValueError("StepMemoryHandler.serve: sizes and offsets must have one entry per slot")
        for k in range(n):
            if size_view[k] < 1 or offset_view[k] < -1 or (
                    offset_view[k] >= 0 and <size_t> (offset_view[k] + size_view[k]) > arena_size):
                raise ValueError(f"StepMemoryHandler.serve: slot {k} does not fit the arena")
        if n == 0 or arena_size == 0:
            return False
        self.m.plan_size = <size_t*> malloc(n * sizeof(size_t))
        self.m.plan_offset = <Py_ssize_t*> malloc(n * sizeof(Py_ssize_t))
        self.m.arena = cnnx_map(arena_size)
        if self.m.plan_size == NULL or self.m.plan_offset == NULL or self.m.arena == NULL:
            return False  # destroy() frees what was allocated; nothing is served
        for k in range(n):
            self.m.plan_size[k] = <size_t> size_view[k]
            self.m.plan_offset[k] = offset_view[k]
        self.m.arena_size = arena_size
        self.m.n_slots = n
        self.m.position = 0
        self.m.mode = CNNX_PAUSED
        return True

    def start_step(self):
        """A step starts: serve its requests from the plan's first slot on."""
        if self.m.n_slots > 0:
            self.m.mode = CNNX_SERVING
            self.m.position = 0

    def pause(self):
        """Between steps: large requests take the lowest free place in the arena (or a mapping
        of their own), leaving the plan alone."""
        if self.m.mode != CNNX_RECORDING:
            self.m.mode = CNNX_PAUSED

    def retire(self):
        """The handler is no longer installed: give back the arena's unused pages (all of it
        when no array is left there)."""
        cnnx_step_memory_retire(self.m)

    @property
    def arena_size(self):
        """Bytes of the arena (0 before :meth:`serve`, or once retired and empty)."""
        return self.m.arena_size if self.m.arena != NULL else 0

    @property
    def hits(self):
        """Large requests of served steps that got their planned place."""
        return self.m.hits

    @property
    def misses(self):
        """Large requests of served steps that did not."""
        return self.m.misses

    @property
    def alive(self):
        """Large blocks alive now: (in the arena, in mappings of their own)."""
        return self.m.n_in_arena, self.m.n_own

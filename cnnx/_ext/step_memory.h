/* A NumPy memory handler that lays out the large arrays of repeated training steps in one arena.
 *
 * A training step allocates and frees the same large arrays in the same order every time. The
 * handler records one step's large allocations (size, and when each was allocated and freed), the
 * caller plans an offset for each in one arena (blocks alive at the same time never overlap), and
 * later steps get their k-th large array at the k-th planned offset: no page faults, no heap
 * fragmentation, and the arena's size is about the most the step holds at once.
 *
 * Safety does not depend on the steps repeating: a planned offset is used only when the size
 * matches and no block now alive in the arena overlaps it. Other large requests of a step (those
 * that outlive it) and those between steps that do not fit the arena's free space go to malloc;
 * before the plan, each is mapped on its own (mmap, returned to the system when freed), so that
 * the unplanned steps leave no holes in malloc's heap. Blocks below the threshold go to malloc.
 * NumPy calls the handler with the GIL held, which serialises these functions.
 */
#ifndef CNNX_STEP_MEMORY_H
#define CNNX_STEP_MEMORY_H

#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define CNNX_HAVE_MMAP 1
#else
#define CNNX_HAVE_MMAP 0
#endif

/* How far ahead a request whose size differs from the next planned one looks for its size. */
#define CNNX_RESYNC 8

enum { CNNX_IDLE = 0, CNNX_RECORDING = 1, CNNX_SERVING = 2, CNNX_PAUSED = 3 };

typedef struct {     /* a large block held outside malloc: in the arena, or mapped on its own */
    char* ptr;
    size_t size;     /* bytes requested (arena) or mapped (own mapping) */
    Py_ssize_t slot; /* arena: the planned slot it fills, or -1; own: its record index, or -1 */
} cnnx_block;

typedef struct {
    size_t threshold;            /* requests of at least this many bytes are large */
    int mode;
    int retired;                 /* the handler is no longer installed */
    /* recording: the large requests of one step, in order */
    Py_ssize_t n_records, max_records;
    size_t* record_size;
    Py_ssize_t* record_start;    /* event clock at allocation */
    Py_ssize_t* record_end;      /* event clock at release, -1 while alive */
    Py_ssize_t clock;
    /* the plan: slot k holds a block of plan_size[k] bytes at plan_offset[k], or -1 (unplanned) */
    Py_ssize_t n_slots, position;
    size_t* plan_size;
    Py_ssize_t* plan_offset;
    char* arena;
    size_t arena_size;
    /* large blocks now alive */
    cnnx_block* in_arena;
    Py_ssize_t n_in_arena, cap_in_arena;
    cnnx_block* own;
    Py_ssize_t n_own, cap_own;
    /* counts of large requests since serving started */
    Py_ssize_t hits, misses;
} cnnx_step_memory;

static int cnnx_push(cnnx_block** list, Py_ssize_t* n, Py_ssize_t* cap, char* ptr, size_t size, Py_ssize_t slot)
{
    if (*n == *cap) {
        Py_ssize_t cap2 = *cap ? 2 * *cap : 64;
        cnnx_block* grown = (cnnx_block*) realloc(*list, (size_t) cap2 * sizeof(cnnx_block));
        if (grown == NULL)
            return -1;
        *list = grown;
        *cap = cap2;
    }
    (*list)[*n].ptr = ptr;
    (*list)[*n].size = size;
    (*list)[*n].slot = slot;
    (*n)++;
    return 0;
}

static Py_ssize_t cnnx_find(const cnnx_block* list, Py_ssize_t n, const void* ptr)
{
    Py_ssize_t i;
    for (i = n - 1; i >= 0; i--)  /* the newest blocks are freed first, mostly */
        if (list[i].ptr == ptr)
            return i;
    return -1;
}

static void cnnx_remove(cnnx_block* list, Py_ssize_t* n, Py_ssize_t i)
{
    list[i] = list[*n - 1];
    (*n)--;
}

/* A mapping of its own for a large block (zero-filled by the system). */
static char* cnnx_map(size_t size)
{
#if CNNX_HAVE_MMAP
    void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (size >= ((size_t) 4 << 20))  /* as NumPy's own allocator asks for its large arrays */
        madvise(p, size, MADV_HUGEPAGE);
#endif
    return (char*) p;
#else
    return (char*) calloc(1, size);
#endif
}

static void cnnx_unmap(char* p, size_t size)
{
#if CNNX_HAVE_MMAP
    munmap(p, size);
#else
    (void) size;
    free(p);
#endif
}

static void* cnnx_own_block(cnnx_step_memory* m, size_t size, Py_ssize_t record)
{
    char* p = cnnx_map(size);
    if (p == NULL)
        return NULL;
    if (cnnx_push(&m->own, &m->n_own, &m->cap_own, p, size, record) != 0) {
        cnnx_unmap(p, size);
        return NULL;
    }
    return p;
}

/* Whether [offset, offset + size) of the arena is free of every block now alive there. */
static int cnnx_arena_free(const cnnx_step_memory* m, size_t offset, size_t size)
{
    Py_ssize_t i;
    for (i = 0; i < m->n_in_arena; i++) {
        size_t lo = (size_t) (m->in_arena[i].ptr - m->arena);
        if (lo < offset + size && offset < lo + m->in_arena[i].size)
            return 0;
    }
    return 1;
}

/* The lowest offset where size bytes fit between the blocks alive in the arena, or -1. */
static Py_ssize_t cnnx_first_fit(const cnnx_step_memory* m, size_t size)
{
    size_t offset = 0;
    int moved = 1;
    Py_ssize_t i;
    while (moved) {  /* few blocks are alive at once: a quadratic scan is cheap */
        moved = 0;
        if (offset + size > m->arena_size)
            return -1;
        for (i = 0; i < m->n_in_arena; i++) {
            size_t lo = (size_t) (m->in_arena[i].ptr - m->arena), hi = lo + m->in_arena[i].size;
            if (lo < offset + size && offset < hi) {
                offset = (hi + 63) & ~(size_t) 63;
                moved = 1;
            }
        }
    }
    return (Py_ssize_t) offset;
}

static void* cnnx_arena_block(cnnx_step_memory* m, size_t offset, size_t size, Py_ssize_t slot)
{
    if (cnnx_push(&m->in_arena, &m->n_in_arena, &m->cap_in_arena, m->arena + offset, size, slot) != 0)
        return NULL;
    return m->arena + offset;
}

/* The next planned slot for a large request of size bytes, or -1. */
static Py_ssize_t cnnx_next_slot(cnnx_step_memory* m, size_t size)
{
    Py_ssize_t k;
    for (k = m->position; k < m->n_slots && k < m->position + CNNX_RESYNC; k++) {
        if (m->plan_size[k] == size) {
            m->position = k + 1;
            return m->plan_offset[k] >= 0 ? k : -1;
        }
    }
    return -1;  /* a request the plan does not know: the position stays */
}

static void* cnnx_large(cnnx_step_memory* m, size_t size)
{
    Py_ssize_t k, offset;
    void* p;
    if (m->mode == CNNX_SERVING) {
        k = cnnx_next_slot(m, size);
        if (k >= 0 && cnnx_arena_free(m, (size_t) m->plan_offset[k], size)) {
            p = cnnx_arena_block(m, (size_t) m->plan_offset[k], size, k);
            if (p != NULL) {
                m->hits++;
                return p;
            }
        }
        m->misses++;
        return malloc(size);  /* the few of them reuse malloc's heap, as every step repeats them */
    }
    if (m->mode == CNNX_PAUSED && m->arena != NULL) {
        offset = cnnx_first_fit(m, size);
        if (offset >= 0 && (p = cnnx_arena_block(m, (size_t) offset, size, -1)) != NULL)
            return p;
        return malloc(size);
    }
    if (m->mode == CNNX_RECORDING && m->n_records < m->max_records) {
        k = m->n_records;
        p = cnnx_own_block(m, size, k);
        if (p != NULL) {
            m->record_size[k] = size;
            m->record_start[k] = m->clock++;
            m->record_end[k] = -1;
            m->n_records++;
        }
        return p;
    }
    /* before the plan: mappings of their own, so that whole steps never settle in malloc's heap */
    return cnnx_own_block(m, size, -1);
}

/* Release a block that is not malloc's; returns 0 if ptr is not such a block. */
static int cnnx_release(cnnx_step_memory* m, void* ptr)
{
    Py_ssize_t i = cnnx_find(m->in_arena, m->n_in_arena, ptr);
    if (i >= 0) {
        cnnx_remove(m->in_arena, &m->n_in_arena, i);
        if (m->retired && m->n_in_arena == 0) {
            cnnx_unmap(m->arena, m->arena_size);
            m->arena = NULL;
        }
        return 1;
    }
    i = cnnx_find(m->own, m->n_own, ptr);
    if (i >= 0) {
        if (m->own[i].slot >= 0 && m->mode == CNNX_RECORDING)
            m->record_end[m->own[i].slot] = m->clock++;
        cnnx_unmap(m->own[i].ptr, m->own[i].size);
        cnnx_remove(m->own, &m->n_own, i);
        return 1;
    }
    return 0;
}

static size_t cnnx_block_size(const cnnx_step_memory* m, const void* ptr)
{
    Py_ssize_t i = cnnx_find(m->in_arena, m->n_in_arena, ptr);
    if (i >= 0)
        return m->in_arena[i].size;
    i = cnnx_find(m->own, m->n_own, ptr);
    return i >= 0 ? m->own[i].size : 0;
}

/* The PyDataMemAllocator functions (ctx is the cnnx_step_memory). */

static void* cnnx_sm_malloc(void* ctx, size_t size)
{
    cnnx_step_memory* m = (cnnx_step_memory*) ctx;
    return size >= m->threshold && !m->retired ? cnnx_large(m, size) : malloc(size);
}

static void* cnnx_sm_calloc(void* ctx, size_t nelem, size_t elsize)
{
    cnnx_step_memory* m = (cnnx_step_memory*) ctx;
    size_t size;
    char* p;
    if (elsize != 0 && nelem > SIZE_MAX / elsize)
        return NULL;
    size = nelem * elsize;
    if (size < m->threshold || m->retired)
        return calloc(nelem, elsize);
    p = (char*) cnnx_large(m, size);
    /* a new mapping of its own comes zero-filled; arena and malloc blocks may hold old values */
    if (p != NULL && !(m->n_own > 0 && m->own[m->n_own - 1].ptr == p))
        memset(p, 0, size);
    return p;
}

static void cnnx_sm_free(void* ctx, void* ptr, size_t size)
{
    cnnx_step_memory* m = (cnnx_step_memory*) ctx;
    (void) size;  /* the handler's own tables know each block's size */
    if (ptr != NULL && !cnnx_release(m, ptr))
        free(ptr);
}

static void* cnnx_sm_realloc(void* ctx, void* ptr, size_t new_size)
{
    cnnx_step_memory* m = (cnnx_step_memory*) ctx;
    size_t old_size;
    void* p;
    if (ptr == NULL)
        return cnnx_sm_malloc(ctx, new_size);
    old_size = cnnx_block_size(m, ptr);
    if (old_size == 0)  /* malloc's block: it stays malloc's */
        return realloc(ptr, new_size);
    p = malloc(new_size ? new_size : 1);  /* resized arrays are not a step's planned blocks */
    if (p == NULL)
        return NULL;
    memcpy(p, ptr, old_size < new_size ? old_size : new_size);
    cnnx_release(m, ptr);
    return p;
}

static void cnnx_step_memory_destroy(cnnx_step_memory* m)
{
    Py_ssize_t i;
    if (m == NULL)
        return;
    for (i = 0; i < m->n_own; i++)  /* none are left once every array is gone; kept for safety */
        cnnx_unmap(m->own[i].ptr, m->own[i].size);
    if (m->arena != NULL)
        cnnx_unmap(m->arena, m->arena_size);
    free(m->record_size);
    free(m->record_start);
    free(m->record_end);
    free(m->plan_size);
    free(m->plan_offset);
    free(m->in_arena);
    free(m->own);
    free(m);
}

/* Give back the arena's pages that no alive block uses (the handler is no longer installed). */
static void cnnx_step_memory_retire(cnnx_step_memory* m)
{
    m->retired = 1;
    m->mode = CNNX_IDLE;
    if (m->arena == NULL)
        return;
    if (m->n_in_arena == 0) {
        cnnx_unmap(m->arena, m->arena_size);
        m->arena = NULL;
        return;
    }
#if CNNX_HAVE_MMAP && defined(MADV_DONTNEED)
    {
        const size_t page = 4096;
        size_t start = 0, next, lo, hi;
        Py_ssize_t i;
        while (start < m->arena_size) {  /* from start, the next gap up to the next alive block */
            next = m->arena_size;
            for (i = 0; i < m->n_in_arena; i++) {
                lo = (size_t) (m->in_arena[i].ptr - m->arena);
                hi = lo + m->in_arena[i].size;
                if (lo <= start && start < hi) {  /* start is inside a block: past it, look again */
                    start = hi;
                    next = m->arena_size;
                    i = -1;
                    continue;
                }
                if (lo > start && lo < next)
                    next = lo;
            }
            if (start >= m->arena_size)
                break;
            lo = (start + page - 1) & ~(page - 1);
            hi = next & ~(page - 1);
            if (hi > lo)
                madvise(m->arena + lo, hi - lo, MADV_DONTNEED);
            start = next;
        }
    }
#endif
}

/* The handler as NumPy takes it: a "mem_handler" capsule that owns m (freed with the capsule, once
 * no array allocated through it is left). Returns NULL (and destroys m) on failure. */
static void cnnx_step_memory_capsule_destroy(PyObject* capsule)
{
    PyDataMem_Handler* handler = (PyDataMem_Handler*) PyCapsule_GetPointer(capsule, "mem_handler");
    if (handler == NULL)
        return;
    cnnx_step_memory_destroy((cnnx_step_memory*) handler->allocator.ctx);
    free(handler);
}

static PyObject* cnnx_step_memory_capsule(cnnx_step_memory* m)
{
    PyObject* capsule;
    PyDataMem_Handler* handler = (PyDataMem_Handler*) calloc(1, sizeof(PyDataMem_Handler));
    if (handler == NULL) {
        cnnx_step_memory_destroy(m);
        return PyErr_NoMemory();
    }
    strncpy(handler->name, "cnnx_step_memory", sizeof(handler->name) - 1);
    handler->version = 1;
    handler->allocator.ctx = m;
    handler->allocator.malloc = cnnx_sm_malloc;
    handler->allocator.calloc = cnnx_sm_calloc;
    handler->allocator.realloc = cnnx_sm_realloc;
    handler->allocator.free = cnnx_sm_free;
    capsule = PyCapsule_New(handler, "mem_handler", cnnx_step_memory_capsule_destroy);
    if (capsule == NULL) {
        cnnx_step_memory_destroy(m);
        free(handler);
    }
    return capsule;
}

#endif

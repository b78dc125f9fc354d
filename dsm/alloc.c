/*
 * alloc.c - where DSM memory comes from, and which node homes each page.
 *
 * The global space is split in two: the lower half for collective allocations (dsm_alloc*),
 * the upper half into one dsm_malloc arena per node, arena k homed on node k, so any node can
 * compute the home of any malloc'd address without asking. Collective allocation runs the
 * same deterministic first-fit heap on every node, so every node computes the same address;
 * the collective agreement in sync.c catches nodes that call it differently.
 *
 * Heap metadata lives in ordinary local memory, never in DSM pages: allocating must not cause
 * coherence traffic, and the fault handler must never need the allocator.
 *
 * Threads: the collective heap is used by the one thread that makes collective calls; the
 * arena heap by any thread under arena_lock. Frees of this node's arena requested by other
 * nodes arrive in the protocol engine (possibly inside a fault handler, where arena_lock must
 * not be taken), so they are queued in a lock-free ring and applied at the next malloc/free.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "heap.h"
#include "internal.h"

static struct dsm_heap *coll_heap, *arena_heap;
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;

#define REMOTE_FREES 4096
static uint64_t remote_free[REMOTE_FREES];
static _Atomic uint32_t rf_head, rf_tail; /* producer: token holder; consumer: arena_lock */

static uint64_t arena_first(int node)
{
    return g.coll_pages + (uint64_t)node * g.arena_pages;
}

int dsm_alloc_init(char *err, size_t errlen)
{
    g.coll_pages = g.npages / 2;
    g.arena_pages = (g.npages - g.coll_pages) / (uint64_t)g.nodes;
    coll_heap = dsm_heap_create(g.coll_pages * PAGE_SIZE, PAGE_SIZE);
    arena_heap = dsm_heap_create(g.arena_pages * PAGE_SIZE, 16);
    if (!coll_heap || !arena_heap) {
        snprintf(err, errlen, "cannot create the allocators' metadata (out of memory)");
        return DSM_ENOMEM;
    }
    for (int n = 0; n < g.nodes; n++) memset(g.home + arena_first(n), n, g.arena_pages);
    return DSM_OK;
}

void dsm_alloc_fini(void)
{
    dsm_heap_destroy(coll_heap);
    dsm_heap_destroy(arena_heap);
    coll_heap = arena_heap = NULL;
    rf_head = rf_tail = 0;
}

void *dsm_alloc(size_t size)
{
    return dsm_alloc_placed(size, DSM_PLACE_BLOCK, 0);
}

void *dsm_alloc_placed(size_t size, int policy, size_t arg)
{
    if (!g.initialized) {
        LOGE("dsm_alloc called before dsm_init");
        return NULL;
    }
    char why[160] = "";
    uint64_t off = 0;
    int rc = -1;
    if (size == 0)
        snprintf(why, sizeof why, "size 0");
    else if (dsm_place_check(policy, arg, g.nodes, why, sizeof why) == 0)
        rc = dsm_heap_alloc(coll_heap, size, PAGE_SIZE, &off);
    if (rc == 0) {
        /* Homes are recorded before this node tells the others it has allocated: a peer that
         * finishes the agreement first may fault on these pages at once. */
        uint64_t first = off / PAGE_SIZE, np = (size + PAGE_SIZE - 1) / PAGE_SIZE;
        for (uint64_t i = 0; i < np; i++)
            g.home[first + i] = (uint8_t)dsm_place_home(policy, arg, g.nodes, np, i);
    }
    dsm_collective(COLL_ALLOC, size, (uint64_t)policy, arg);
    if (rc == 0) return g.base + off;
    if (why[0])
        LOGE("dsm_alloc_placed(%zu, %d, %zu): %s", size, policy, arg, why);
    else
        LOGE("dsm_alloc(%zu): global memory exhausted (%llu bytes free in one piece of %llu for "
             "collective allocations); raise DSM_MEMORY (now %llu bytes)",
             size, (unsigned long long)dsm_heap_largest_free(coll_heap),
             (unsigned long long)(g.coll_pages * PAGE_SIZE), (unsigned long long)g.cfg.memory);
    return NULL;
}

/* Applies frees other nodes asked for. arena_lock held. */
static void drain_remote_frees(void)
{
    uint32_t h = atomic_load_explicit(&rf_head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&rf_tail, memory_order_acquire);
    for (; h != t; h++) {
        uint64_t off = remote_free[h % REMOTE_FREES], sz;
        if (dsm_heap_free(arena_heap, off, &sz))
            LOGE("dsm_free(%p) from another node: not a live dsm_malloc block (double free?)",
                 (void *)(g.base + arena_first(g.rank) * PAGE_SIZE + off));
    }
    atomic_store_explicit(&rf_head, h, memory_order_release);
}

void dsm_malloc_free_home(uint64_t addr)
{
    uint64_t lo = (uint64_t)(uintptr_t)g.base + arena_first(g.rank) * PAGE_SIZE;
    if (addr < lo || addr >= lo + g.arena_pages * PAGE_SIZE) {
        LOGE("a peer asked to free %p, which is not in this node's dsm_malloc arena",
             (void *)(uintptr_t)addr);
        return;
    }
    uint32_t t = atomic_load_explicit(&rf_tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&rf_head, memory_order_acquire) >= REMOTE_FREES) {
        LOGW("too many remote frees pending; %p stays allocated", (void *)(uintptr_t)addr);
        return;
    }
    remote_free[t % REMOTE_FREES] = addr - lo;
    atomic_store_explicit(&rf_tail, t + 1, memory_order_release);
}

void *dsm_malloc(size_t size)
{
    if (!g.initialized) {
        LOGE("dsm_malloc called before dsm_init");
        return NULL;
    }
    if (!size) size = 1;
    uint64_t off;
    pthread_mutex_lock(&arena_lock);
    drain_remote_frees();
    /* Page-sized and larger blocks start on a page, so they share no page (and no false
     * sharing) with their neighbours; small ones pack on cache lines. */
    int rc = dsm_heap_alloc(arena_heap, size, size >= PAGE_SIZE ? PAGE_SIZE : 64, &off);
    uint64_t largest = rc ? dsm_heap_largest_free(arena_heap) : 0;
    pthread_mutex_unlock(&arena_lock);
    if (rc) {
        LOGE("dsm_malloc(%zu): node %d's arena is exhausted (largest free piece %llu of %llu "
             "bytes); raise DSM_MEMORY (each node's arena is half of it divided by the nodes)",
             size, g.rank, (unsigned long long)largest,
             (unsigned long long)(g.arena_pages * PAGE_SIZE));
        return NULL;
    }
    return g.base + arena_first(g.rank) * PAGE_SIZE + off;
}

void dsm_free(void *ptr)
{
    if (!ptr) return;
    if (!g.initialized || !dsm_in_region(ptr)) {
        LOGE("dsm_free(%p): not DSM memory (use free() for malloc'd memory)", ptr);
        return;
    }
    uint64_t page = dsm_page_of(ptr);
    uint64_t off = (uint64_t)((char *)ptr - g.base);
    if (page < g.coll_pages) {
        /* Collective: after the agreement no node uses the block any more, so each can
         * forget its copies and, as a home, its directory entries and store. The agreement
         * comes first so that a bad pointer is reported on every node alike instead of
         * leaving the others waiting. */
        dsm_collective(COLL_FREE, off, 0, 0);
        uint64_t sz;
        if (dsm_heap_free(coll_heap, off, &sz)) {
            LOGE("dsm_free(%p): not the start of a live dsm_alloc block", ptr);
            return;
        }
        dsm_token_acquire();
        dsm_region_reset(page, sz / PAGE_SIZE);
        memset(g.home + page, HOME_NONE, sz / PAGE_SIZE);
        dsm_token_release();
        return;
    }
    int owner = (int)((page - g.coll_pages) / g.arena_pages);
    if (owner >= g.nodes) {
        LOGE("dsm_free(%p): outside every allocator's range", ptr);
        return;
    }
    if (owner == g.rank) {
        uint64_t sz;
        pthread_mutex_lock(&arena_lock);
        drain_remote_frees();
        int rc = dsm_heap_free(arena_heap, off - arena_first(g.rank) * PAGE_SIZE, &sz);
        pthread_mutex_unlock(&arena_lock);
        if (rc) LOGE("dsm_free(%p): not a live dsm_malloc block (double free?)", ptr);
        return;
    }
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_FREE, (uint32_t)g.rank);
    h.arg0 = (uint64_t)(uintptr_t)ptr;
    dsm_token_acquire();
    dsm_send(owner, &h, NULL);
    dsm_progress();
    dsm_token_release();
}

int dsm_home(const void *addr)
{
    if (!g.initialized || !dsm_in_region(addr)) return -1;
    uint8_t h = g.home[dsm_page_of(addr)];
    return h == HOME_NONE ? -1 : h;
}

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
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "heap.h"
#include "log.h"
#include "trace.h"

static uint64_t arena_first(const struct dsm_node *n, int node)
{
    return n->coll_pages + (uint64_t)node * n->arena_pages;
}

int dsm_alloc_init(struct dsm_node *n, char *err, size_t errlen)
{
    n->coll_pages = n->npages / 2;
    n->arena_pages = (n->npages - n->coll_pages) / (uint64_t)n->nodes;
    n->coll_heap = dsm_heap_create(n->coll_pages * PAGE_SIZE, PAGE_SIZE);
    n->arena_heap = dsm_heap_create(n->arena_pages * PAGE_SIZE, 16);
    if (!n->coll_heap || !n->arena_heap || pthread_mutex_init(&n->arena_lock, NULL)) {
        snprintf(err, errlen, "cannot create the allocators' metadata (out of memory)");
        return DSM_ENOMEM;
    }
    /* Arena pages are homed on their node without a write (dsm_home_of); their protocol is
     * the default one, which costs a write per page only when it is not SC (all zeros). */
    if (n->cfg.default_proto != DSM_PROTO_SC)
        for (int k = 0; k < n->nodes; k++)
            memset(n->proto + arena_first(n, k), n->cfg.default_proto, n->arena_pages);
    return DSM_OK;
}

void dsm_alloc_fini(struct dsm_node *n)
{
    if (n->coll_heap || n->arena_heap) pthread_mutex_destroy(&n->arena_lock);
    dsm_heap_destroy(n->coll_heap);
    dsm_heap_destroy(n->arena_heap);
    n->coll_heap = n->arena_heap = NULL;
}

uint64_t dsm_node_alloc_placed(struct dsm_node *n, size_t size, int policy, size_t arg)
{
    char why[160] = "";
    uint64_t off = 0;
    int rc = -1;
    int place = policy & DSM_PLACE_MASK;
    int proto = (policy & DSM_RC)   ? DSM_PROTO_RC
                : (policy & DSM_SC) ? DSM_PROTO_SC
                                    : n->cfg.default_proto;
    if (size == 0)
        snprintf(why, sizeof why, "size 0");
    else if (policy & ~(DSM_PLACE_MASK | DSM_SC | DSM_RC))
        snprintf(why, sizeof why, "unknown flags 0x%x in the policy",
                 policy & ~(DSM_PLACE_MASK | DSM_SC | DSM_RC));
    else if ((policy & DSM_SC) && (policy & DSM_RC))
        snprintf(why, sizeof why, "both DSM_SC and DSM_RC: an allocation has one protocol");
    else if (dsm_place_check(place, arg, n->nodes, why, sizeof why) == 0)
        rc = dsm_heap_alloc(n->coll_heap, size, PAGE_SIZE, &off);
    if (rc == 0) {
        /* Homes are recorded before this node tells the others it has allocated: a peer that
         * finishes the agreement first may fault on these pages at once. */
        uint64_t first = off / PAGE_SIZE, np = (size + PAGE_SIZE - 1) / PAGE_SIZE;
        dsm_token_acquire(n);
        for (uint64_t i = 0; i < np; i++) {
            dsm_set_home(n, first + i, dsm_place_home(place, arg, n->nodes, np, i));
            n->proto[first + i] = (uint8_t)proto;
            /* Until every node has agreed, a home may still be forgetting a freed block at
             * these pages: another thread's read-ahead must not ask for them yet (found by
             * tests/engine). The program itself cannot: it has no pointer to them yet. */
            n->pf[first + i] = PF_NOAHEAD;
        }
        dsm_token_release(n);
    }
    dsm_collective(n, COLL_ALLOC, size, (uint64_t)policy, arg);
    if (rc == 0) {
        uint64_t first = off / PAGE_SIZE, np = (size + PAGE_SIZE - 1) / PAGE_SIZE;
        dsm_token_acquire(n);
        for (uint64_t i = 0; i < np; i++) {
            n->pf[first + i] &= (uint8_t)~PF_NOAHEAD;
            n->ev_homed += dsm_home_of(n, first + i) == n->rank;
        }
        uint64_t homed = n->ev_homed;
        dsm_token_release(n);
        /* So that dsmtrace can name page ranges by the allocation that holds them. offset:
         * the placement policy; peer: the home when one node homes it all. */
        DSM_TRACE(DSM_TR_ALLOC, proto == DSM_PROTO_RC ? DSM_TR_F_RC : 0, first, dsm_node_now(n),
                  np > UINT32_MAX ? UINT32_MAX : np, (uint32_t)place,
                  place == DSM_PLACE_NODE ? (int)arg : -1, 0);
        /* Fail now, with the reason, rather than be OOM-killed later: a home keeps each page
         * it homes once (its view is the store, region.c) or, where the kernel cannot share
         * them, twice (the home store and its own mapping), plus its page cache. */
        uint64_t copies = n->mem->map_home ? 1 : 2;
        uint64_t need =
            copies * homed * PAGE_SIZE + n->cfg.cache_pages * PAGE_SIZE + n->cfg.mem_base;
        if (n->cfg.mem_limit && need > n->cfg.mem_limit)
            dsm_node_fatal(n,
                           "dsm_alloc(%zu): node %d would home %llu MiB of DSM data, which "
                           "takes %llu MiB here (%s) plus a page cache of %llu MiB and the "
                           "%llu MiB the process used before any DSM data: more than the %llu "
                           "MiB this node may use (its memory cgroup's limit, or the memory "
                           "available); use more nodes, place the data on other nodes "
                           "(dsm_alloc_placed), or a smaller DSM_CACHE",
                           size, n->rank, (unsigned long long)(homed * PAGE_SIZE >> 20),
                           (unsigned long long)(copies * homed * PAGE_SIZE >> 20),
                           copies == 1
                               ? "one copy"
                               : "the home store and the node's own copy: DSM_HOME_STORE=two, or a "
                                 "kernel before 6.4",
                           (unsigned long long)(n->cfg.cache_pages * PAGE_SIZE >> 20),
                           (unsigned long long)(n->cfg.mem_base >> 20),
                           (unsigned long long)(n->cfg.mem_limit >> 20));
        return n->cfg.base + off;
    }
    if (why[0])
        LOGE("dsm_alloc_placed(%zu, %d, %zu): %s", size, policy, arg, why);
    else
        LOGE("dsm_alloc(%zu): global memory exhausted (%llu bytes free in one piece of %llu for "
             "collective allocations); raise DSM_MEMORY (now %llu bytes)",
             size, (unsigned long long)dsm_heap_largest_free(n->coll_heap),
             (unsigned long long)(n->coll_pages * PAGE_SIZE), (unsigned long long)n->cfg.memory);
    return 0;
}

/* Applies frees other nodes asked for. arena_lock held. */
static void drain_remote_frees(struct dsm_node *n)
{
    uint32_t h = atomic_load_explicit(&n->rf_head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&n->rf_tail, memory_order_acquire);
    for (; h != t; h++) {
        uint64_t off = n->remote_free[h % REMOTE_FREES], sz;
        if (dsm_heap_free(n->arena_heap, off, &sz))
            LOGE("dsm_free(%p) from another node: not a live dsm_malloc block (double free?)",
                 (void *)(uintptr_t)(n->cfg.base + arena_first(n, n->rank) * PAGE_SIZE + off));
    }
    atomic_store_explicit(&n->rf_head, h, memory_order_release);
}

void dsm_malloc_free_home(struct dsm_node *n, uint64_t addr)
{
    uint64_t lo = n->cfg.base + arena_first(n, n->rank) * PAGE_SIZE;
    if (addr < lo || addr >= lo + n->arena_pages * PAGE_SIZE) {
        LOGE("a peer asked to free %p, which is not in this node's dsm_malloc arena",
             (void *)(uintptr_t)addr);
        return;
    }
    uint32_t t = atomic_load_explicit(&n->rf_tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&n->rf_head, memory_order_acquire) >= REMOTE_FREES) {
        LOGW("too many remote frees pending; %p stays allocated", (void *)(uintptr_t)addr);
        return;
    }
    n->remote_free[t % REMOTE_FREES] = addr - lo;
    atomic_store_explicit(&n->rf_tail, t + 1, memory_order_release);
}

uint64_t dsm_node_malloc(struct dsm_node *n, size_t size)
{
    if (!size) size = 1;
    uint64_t off;
    pthread_mutex_lock(&n->arena_lock);
    drain_remote_frees(n);
    /* Page-sized and larger blocks start on a page, so they share no page (and no false
     * sharing) with their neighbours; small ones pack on cache lines. */
    int rc = dsm_heap_alloc(n->arena_heap, size, size >= PAGE_SIZE ? PAGE_SIZE : 64, &off);
    uint64_t largest = rc ? dsm_heap_largest_free(n->arena_heap) : 0;
    uint64_t end = rc ? 0 : (off + size + PAGE_SIZE - 1) / PAGE_SIZE;
    if (end > atomic_load_explicit(&n->arena_hwm, memory_order_relaxed))
        atomic_store_explicit(&n->arena_hwm, end, memory_order_relaxed);
    pthread_mutex_unlock(&n->arena_lock);
    if (rc) {
        LOGE("dsm_malloc(%zu): node %d's arena is exhausted (largest free piece %llu of %llu "
             "bytes); raise DSM_MEMORY (each node's arena is half of it divided by the nodes)",
             size, n->rank, (unsigned long long)largest,
             (unsigned long long)(n->arena_pages * PAGE_SIZE));
        return 0;
    }
    uint64_t first = arena_first(n, n->rank) + off / PAGE_SIZE;
    /* Page-sized blocks own their pages: label them for dsmtrace (small ones share pages). */
    if (size >= PAGE_SIZE)
        DSM_TRACE(DSM_TR_ALLOC,
                  DSM_TR_F_MALLOC | (n->cfg.default_proto == DSM_PROTO_RC ? DSM_TR_F_RC : 0), first,
                  dsm_node_now(n), (size + PAGE_SIZE - 1) / PAGE_SIZE, 0, n->rank, 0);
    return n->cfg.base + arena_first(n, n->rank) * PAGE_SIZE + off;
}

struct range_wait {
    struct dsm_node *n;
    uint64_t first, count;
};

/* Whether no transaction on a page of the range involves this node any more: no request of
 * its own in flight (a read-ahead reply, a grant), and as a home no directory entry waiting
 * for acks or a write-back. */
static __attribute__((unused)) int range_quiet(void *arg)
{
    struct range_wait *w = arg;
    struct dsm_node *n = w->n;
    if (atomic_load(&n->rc_outstanding)) return 0; /* write-backs on their way to homes */
    for (uint64_t p = w->first; p < w->first + w->count; p++) {
        const struct coh_protocol *pr = coh_protocol_get(n->proto[p]);
        if (!pr->node_stable(atomic_load_explicit(&n->pstate[p], memory_order_acquire))) return 0;
        const void *d =
            n->proto[p] == DSM_PROTO_RC ? (const void *)&n->rcdir[p] : (const void *)&n->dir[p];
        if (dsm_home_of(n, p) == n->rank && !pr->dir_idle(d)) return 0;
    }
    return 1;
}

void dsm_node_reset(struct dsm_node *n, uint64_t first, uint64_t count)
{
    if (!count) return;
    n->mem->reset(n->mem_ctx, first, count);
    for (uint64_t p = first; p < first + count; p++) {
        atomic_store_explicit(&n->pstate[p], COH_I, memory_order_relaxed);
        coh_dir_init(&n->dir[p]);
        dsm_node_forget_rc(n, p);
        n->proto[p] = (uint8_t)n->cfg.default_proto;
        __atomic_store_n(&n->hold_until[p], 0, __ATOMIC_RELAXED);
        n->pf[p] = 0;
        __atomic_store_n(&n->mig[p], 0, __ATOMIC_RELAXED);
        dsm_evict_forget(n, p);
        if (dsm_home_of(n, p) == n->rank && p < n->coll_pages) n->ev_homed--;
        dsm_set_home(n, p, HOME_NONE);
    }
    if (n->pf_next >= first && n->pf_next <= first + count) n->pf_next = UINT64_MAX;
}

void dsm_node_free(struct dsm_node *n, uint64_t addr)
{
    if (!addr) return;
    if (!dsm_node_in_region(n, addr)) {
        LOGE("dsm_free(%p): not DSM memory (use free() for malloc'd memory)",
             (void *)(uintptr_t)addr);
        return;
    }
    uint64_t page = dsm_node_page_of(n, addr);
    uint64_t off = addr - n->cfg.base;
    if (page < n->coll_pages) {
        /* Collective: after the agreement no node uses the block any more, so each can
         * forget its copies and, as a home, its directory entries and store. The agreement
         * comes first so that a bad pointer is reported on every node alike instead of
         * leaving the others waiting. */
        /* No eviction until the pages are reset: a PUT_S or PUT_M has no answer to wait
         * for, so one sent during the free could reach its home after the home reset (or
         * re-placed) the page. One sent before this point precedes this node's COLL message
         * to every home (channels are FIFO), and every home waits for that message. */
        atomic_fetch_add(&n->ev_frozen, 1);
        dsm_collective(n, COLL_FREE, off, 0, 0);
        uint64_t sz;
        if (dsm_heap_free(n->coll_heap, off, &sz)) {
            atomic_fetch_sub(&n->ev_frozen, 1);
            LOGE("dsm_free(%p): not the start of a live dsm_alloc block", (void *)(uintptr_t)addr);
            return;
        }
        struct range_wait w = {n, page, sz / PAGE_SIZE};
        /* From here on no read-ahead of another thread may ask for these pages. */
        dsm_token_acquire(n);
        for (uint64_t p = w.first; p < w.first + w.count; p++) n->pf[p] |= PF_NOAHEAD;
        dsm_token_release(n);
#ifndef UFDSM_INJECT_FREE_BUG
        /* Requests the program made before the free may still be in flight: read-ahead
         * replies, and the recalls and invalidations a home sent to serve them. Resetting a
         * page under them makes the reply meet a page that no longer expects it (found by
         * tests/engine: 3 nodes, a few sequential reads, then a collective free). So every
         * node first waits until none of its own transactions on the range is open, and a
         * barrier makes sure all have got there before any forgets the pages. */
        dsm_wait(n, range_quiet, &w);
        dsm_node_barrier(n);
#endif
        dsm_token_acquire(n);
        dsm_node_reset(n, w.first, w.count);
        dsm_token_release(n);
        atomic_fetch_sub(&n->ev_frozen, 1);
        return;
    }
    int owner = (int)((page - n->coll_pages) / n->arena_pages);
    if (owner >= n->nodes) {
        LOGE("dsm_free(%p): outside every allocator's range", (void *)(uintptr_t)addr);
        return;
    }
    if (owner == n->rank) {
        uint64_t sz;
        pthread_mutex_lock(&n->arena_lock);
        drain_remote_frees(n);
        int rc = dsm_heap_free(n->arena_heap, off - arena_first(n, n->rank) * PAGE_SIZE, &sz);
        pthread_mutex_unlock(&n->arena_lock);
        if (rc) LOGE("dsm_free(%p): not a live dsm_malloc block (double free?)", (void *)addr);
        return;
    }
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_FREE, (uint32_t)n->rank);
    h.arg0 = addr;
    dsm_token_acquire(n);
    dsm_send(n, owner, &h, NULL);
    dsm_progress(n);
    dsm_token_release(n);
}

int dsm_node_home(const struct dsm_node *n, uint64_t addr)
{
    if (!dsm_node_in_region(n, addr)) return DSM_EINVAL;
    int h = dsm_home_of(n, dsm_node_page_of(n, addr));
    return h == HOME_NONE ? DSM_EINVAL : h;
}

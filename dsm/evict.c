/*
 * evict.c - the bounded cache of remote pages: which copy goes when the cache is full, and
 * how it goes.
 *
 * A node keeps at most cfg.cache_pages copies of pages homed on other nodes (pages it homes
 * are not counted: they are its share of the data and live in the home store anyway). Every
 * copy counts from the moment it is requested (a request in flight will need the room) until
 * the page is back in I, whatever took it there: an eviction, an invalidation, a recall, an
 * acquire, a free.
 *
 * Choosing a victim: CLOCK (second chance). The hardware accessed bit of a mapped page is not
 * visible to us, so "used recently" is what the fault path sees: a fault on the page (a miss
 * or an upgrade, by a thread or for a system call) sets its reference bit, which costs
 * nothing on hits. The hand sweeps the set of cached pages; a referenced page loses its bit
 * and stays, an unreferenced one is evicted. Pages read ahead and never touched are
 * therefore the first to go, and a page touched once is kept one sweep longer than one that
 * was never touched.
 *
 * Never evicted: a page in a transient state (a request of ours in flight, read-ahead
 * included), a page still held after its grant (the faulting thread has not used it yet:
 * taking it away could make two threads take pages from each other forever), and a page a
 * system call is using (pinned by fault.c around the call).
 *
 * Evicting is the protocol's business: a clean SC read copy is dropped with PUT_S, a dirty
 * exclusive SC copy is written back with PUT_M (coh_node_evict); an RC page written this
 * interval first sends its diff (or whole page) to its home, exactly as a release does for
 * that page, and is then dropped - its home's classification directory keeps this node as a
 * reader, so later CLASS notices still reach it and are acked in state I.
 *
 * When: the faulting thread makes room for itself (and the read-ahead window) before it
 * sends a request, if the cache is full; the service thread evicts down to a low-water mark
 * whenever the cache is above a high one, so that faults usually find room ready.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "trace.h"

int dsm_evict_init(struct dsm_node *n, char *err, size_t errlen)
{
    uint64_t cap = n->cfg.cache_pages;
    if (!cap) return 0;
    /* Background eviction keeps a margin free: enough for a read-ahead window and a little
     * more, but never more than a quarter of the cache. */
    uint64_t margin = (uint64_t)n->cfg.prefetch + 1;
    if (margin < cap / 16) margin = cap / 16;
    if (margin > cap / 4) margin = cap / 4;
    n->ev_high = cap - margin;
    n->ev_low = cap - 2 * margin;
    /* Only the entries of pages that are used cost memory (dsm_page_array). */
    n->ev_set = dsm_page_array(n->npages, sizeof *n->ev_set);
    n->ev_pos = dsm_page_array(n->npages, sizeof *n->ev_pos);
    n->ev_flags = dsm_page_array(n->npages, 1);
    n->ev_pin = dsm_page_array(n->npages, sizeof *n->ev_pin);
    if (!n->ev_set || !n->ev_pos || !n->ev_flags || !n->ev_pin) {
        snprintf(err, errlen,
                 "cannot allocate the page cache's bookkeeping for %llu pages (out "
                 "of memory)",
                 (unsigned long long)n->npages);
        return -1;
    }
    return 0;
}

void dsm_evict_fini(struct dsm_node *n)
{
    dsm_page_array_free(n->ev_set, n->npages, sizeof *n->ev_set);
    dsm_page_array_free(n->ev_pos, n->npages, sizeof *n->ev_pos);
    dsm_page_array_free(n->ev_flags, n->npages, 1);
    dsm_page_array_free((void *)n->ev_pin, n->npages, sizeof *n->ev_pin);
    n->ev_set = NULL;
    n->ev_pos = NULL;
    n->ev_flags = NULL;
    n->ev_pin = NULL;
}

static void set_del(struct dsm_node *n, uint64_t p)
{
    if (!n->ev_pos[p]) return;
    uint64_t i = n->ev_pos[p] - 1, last = atomic_load_explicit(&n->ev_n, memory_order_relaxed) - 1;
    n->ev_set[i] = n->ev_set[last];
    n->ev_pos[n->ev_set[i]] = (uint32_t)(i + 1);
    n->ev_pos[p] = 0;
    atomic_store_explicit(&n->ev_n, last, memory_order_relaxed);
}

void dsm_evict_track(struct dsm_node *n, uint64_t p, uint8_t st)
{
    if (!n->ev_pos || dsm_home_of(n, p) == n->rank || dsm_home_of(n, p) == HOME_NONE) return;
    if (st == COH_I) {
        set_del(n, p);
        return;
    }
    if (n->ev_pos[p]) return;
    uint64_t k = atomic_load_explicit(&n->ev_n, memory_order_relaxed);
    n->ev_set[k] = p;
    n->ev_pos[p] = (uint32_t)(k + 1);
    atomic_store_explicit(&n->ev_n, k + 1, memory_order_relaxed);
    if (__atomic_load_n(&n->ev_flags[p], __ATOMIC_RELAXED) & EV_EVICTED) {
        __atomic_fetch_and(&n->ev_flags[p], (uint8_t)~EV_EVICTED, __ATOMIC_RELAXED);
        atomic_fetch_add_explicit(&n->ev_st.refetches, 1, memory_order_relaxed);
    }
}

void dsm_evict_forget(struct dsm_node *n, uint64_t p)
{
    if (!n->ev_pos) return;
    set_del(n, p);
    __atomic_store_n(&n->ev_flags[p], 0, __ATOMIC_RELAXED);
}

void dsm_evict_pin(struct dsm_node *n, uint64_t first, uint64_t last, int delta)
{
    if (!n->ev_pin) return;
    for (uint64_t p = first; p <= last; p++)
        __atomic_fetch_add(&n->ev_pin[p], (uint16_t)delta, __ATOMIC_RELAXED);
}

/* Evicts page p if it may go now. 1 if it went. */
static int evict_one(struct dsm_node *n, uint64_t p, uint64_t now)
{
    uint8_t st = atomic_load_explicit(&n->pstate[p], memory_order_relaxed);
    if (st != COH_S && st != COH_M) return 0;
    if (n->pf[p]) return 0; /* read-ahead in flight, or a block being freed */
    if (__atomic_load_n(&n->hold_until[p], __ATOMIC_RELAXED) > now) return 0;
    if (__atomic_load_n(&n->ev_pin[p], __ATOMIC_RELAXED)) return 0;
    struct coh_out out;
    out.n = 0;
    int dirty = st == COH_M;
    int home = dsm_home_of(n, p);
    if (n->proto[p] == DSM_PROTO_RC) {
        /* Its changes go home first, as at a release, but always write-protected first (a
         * release may leave the page writable); then the read-only copy is dropped. */
#if UFDSM_INJECT_EVICT_BUG != 1 /* self-test of the checks: a dirty RC page dropped unsent */
        rc_node_write_back(&st, &n->rcx[p], n->rank, home, p, &out);
#else
        if (n->rcx[p].flags & RC_N_TWIN) {
            out.a[out.n].kind = COH_A_DROP_TWIN;
            out.a[out.n++].msg = (struct coh_msg){.page = p};
            n->rcx[p].flags &= (uint16_t)~RC_N_TWIN;
        }
#endif
        out.a[out.n].kind = COH_A_UNMAP;
        out.a[out.n++].msg = (struct coh_msg){.page = p};
        st = COH_I;
    } else if (coh_node_evict(&st, n->rank, home, p, &out)) {
        return 0; /* transient after all */
    }
    /* An exclusive copy taken on a migratory guess and not written: the guess stays (the
     * page was upgraded here before), only the "not written yet" mark goes with the copy. */
    if (n->mig[p] & MIG_CLEAN) __atomic_store_n(&n->mig[p], MIG_SEEN, __ATOMIC_RELAXED);
    dsm_node_apply(n, p, &out, st);
    __atomic_store_n(&n->ev_flags[p], EV_EVICTED, __ATOMIC_RELAXED);
    if (dirty)
        atomic_fetch_add_explicit(&n->ev_st.dirty, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&n->ev_st.clean, 1, memory_order_relaxed);
    DSM_TRACE(DSM_TR_EVICTED, dirty ? DSM_TR_F_WRITE : 0, p, now, 0, 0, home, (unsigned)out.n);
    return 1;
}

/* Runs the hand until the cache holds at most `target` pages, or two full sweeps found
 * nothing that may go. Returns the pages evicted. */
static int evict_to(struct dsm_node *n, uint64_t target)
{
    int evicted = 0;
    if (atomic_load_explicit(&n->ev_frozen, memory_order_relaxed)) return 0; /* alloc.c */
    uint64_t now = dsm_node_now(n);
    uint64_t looked = 0;
    while (atomic_load_explicit(&n->ev_n, memory_order_relaxed) > target) {
        uint64_t cnt = atomic_load_explicit(&n->ev_n, memory_order_relaxed);
        if (looked > 2 * cnt) break; /* every page referenced twice over, held or busy */
        if (n->ev_hand >= cnt) n->ev_hand = 0;
        uint64_t p = n->ev_set[n->ev_hand];
        looked++;
        if (__atomic_load_n(&n->ev_flags[p], __ATOMIC_RELAXED) & EV_REF) {
            __atomic_fetch_and(&n->ev_flags[p], (uint8_t)~EV_REF, __ATOMIC_RELAXED);
            n->ev_hand++;
            continue;
        }
        /* On success the last entry moved into this slot: look at it next. */
        if (evict_one(n, p, now))
            evicted++;
        else
            n->ev_hand++;
    }
    /* The write-backs leave now, whatever the caller does next. */
    if (evicted && n->tp) n->tp->ops->flush(n->tp);
    return evicted;
}

void dsm_evict_room(struct dsm_node *n, uint64_t want)
{
    uint64_t cap = n->cfg.cache_pages;
    if (!cap) return;
    if (want > cap) want = cap;
    uint64_t cnt = atomic_load_explicit(&n->ev_n, memory_order_relaxed);
    if (cnt + want <= cap) return;
    evict_to(n, cap - want);
    cnt = atomic_load_explicit(&n->ev_n, memory_order_relaxed);
    if (cnt + 1 > cap) {
        /* Nothing could go: every cached page is in flight, held or in a system call. The
         * request goes ahead over the cap rather than waiting (that could wait forever), and
         * the user hears once why the cache does not hold. */
        atomic_fetch_add_explicit(&n->ev_st.stuck, 1, memory_order_relaxed);
        if (!n->ev_warned) {
            n->ev_warned = 1;
            LOGW("the page cache (DSM_CACHE, %llu pages) is too small for the pages this node's "
                 "threads and system calls use at once (%llu in use, none evictable): it goes "
                 "over its size; raise DSM_CACHE or use smaller system-call buffers",
                 (unsigned long long)cap, (unsigned long long)cnt);
        }
    }
}

int dsm_evict_background(struct dsm_node *n)
{
    if (!dsm_evict_wanted(n)) return 0;
    return evict_to(n, n->ev_low);
}

static uint64_t homed_in(struct dsm_node *n, uint64_t first, uint64_t end)
{
    uint64_t k = 0;
    for (uint64_t p = first; p < end; p++) {
        if (dsm_home_of(n, p) != n->rank) continue;
        int rc = n->proto[p] == DSM_PROTO_RC;
        k += (rc ? n->rcdir[p].written : n->dir[p].written) ||
             atomic_load_explicit(&n->pstate[p], memory_order_relaxed) != COH_I;
    }
    return k;
}

/* The collective pages, and the part of this node's dsm_malloc arena ever handed out (other
 * arenas are homed elsewhere). Walking the whole arena read the directory entries of pages
 * never allocated, each 4 KiB of them a fault on untouched memory: a dsm_stats call took tens
 * of milliseconds at 2 nodes, with the token held (a tenth of md's profile with DSM_STATS). */
uint64_t dsm_evict_homed_pages(struct dsm_node *n)
{
    if (!n->arena_pages) return homed_in(n, 0, n->npages);
    uint64_t arena = n->coll_pages + (uint64_t)n->rank * n->arena_pages;
    uint64_t hwm = atomic_load_explicit(&n->arena_hwm, memory_order_relaxed);
    return homed_in(n, 0, n->coll_pages) +
           homed_in(n, arena, arena + (hwm < n->arena_pages ? hwm : n->arena_pages));
}

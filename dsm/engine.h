/*
 * engine.h - the protocol engine of one node: one object, its effects behind ops tables.
 *
 * Everything that decides which messages a node sends, and when, lives in a struct dsm_node:
 * page states, directory entries, the hold and deferral of invalidations and recalls,
 * read-ahead, migratory prediction, collective agreement, barriers, the lock manager, the
 * allocators and the homes of pages. The engine never makes a system call, never reads a
 * clock and never touches application memory itself. Its effects go through three tables the
 * embedder supplies:
 *   - memory (struct dsm_mem_ops): install a page read-only or writable, write-protect,
 *     drop, reset a range, and give access to this node's copy and to the home store;
 *   - environment (struct dsm_env_ops): the time, how a thread waits for a condition, how
 *     sleepers are woken, and what a fatal error does;
 *   - the transport (transport/transport.h), for messages to other nodes.
 * The real runtime (region.c, service.c, init.c) implements them with userfaultfd, the clock,
 * futexes, and TCP or RDMA. The in-process fixture (tests/engine) implements them with plain
 * memory, a virtual clock, coroutines and in-memory FIFO channels, and runs whole clusters of
 * engines in one process under a seeded scheduler. What the fixture checks is what runs.
 *
 * Threads and who owns what (the real runtime; in the fixture everything runs on one thread):
 *   - The PROGRESS TOKEN (n->token) serialises every protocol step on a node: whoever holds
 *     it (an application thread waiting in a fault, a barrier or a lock, or the service
 *     thread) receives messages, runs the protocol, changes mappings and sends. Fields marked
 *     [token] are read and written only by the holder. It is a try-lock, never slept on.
 *   - Fields marked [atomic] are read by anyone without the token (waiters poll them) and
 *     written by the token holder.
 *   - Fields marked [init] are set by dsm_node_create and read-only after.
 *   - Fields marked [arena] are under n->arena_lock (dsm_malloc's heap).
 */
#ifndef DSM_ENGINE_H
#define DSM_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "coh.h"
#include "dsm.h"
#include "hist.h"
#include "proto.h"
#include "rc.h"
#include "transport.h"

#define PAGE_SIZE      DSM_PAGE_SIZE
#define PAGE_SHIFT     12
#define HOME_NONE      0xFF /* page not allocated */
#define DSM_PLACE_MASK 0xFF /* the placement part of dsm_alloc_placed's policy */
#define PF_INFLIGHT    1    /* a read-ahead request for the page is in flight */
#define PF_NOAHEAD     2    /* not (or no more) a live allocation everywhere: never read ahead */
#define MIG_SEEN       1    /* this node upgraded the page before: read misses ask for ownership */
#define MIG_CLEAN      2    /* owned by such a guess and not written yet: mapped read-only */
/* The words of a page's entry in a shared directory (dsm_mem_ops.dir_words, rc.h). */
#define DIR_READERS   0 /* readers: set by themselves, or published by the home */
#define DIR_WRITERS   1 /* writers the home registered by message */
#define DIR_SELFREG   2 /* writers that registered themselves (they always twin) */
#define DSM_DIR_WORDS 3

struct dsm_node;

/* ---------------------------------------------------------------- effects */

/* Memory of one node. Every call is made by the token holder; failures are fatal inside the
 * implementation (they mean a protocol bug or a broken kernel, never a user error). */
struct dsm_mem_ops {
    /* Installs `page` with a copy of `data` (NULL: zeros), read-only or writable. The page
     * has no copy here (installing over a present page is an error, as with UFFDIO_COPY). */
    void (*map)(void *ctx, uint64_t page, const void *data, int writable);
    /* Makes a present page read-only (protect=1) or writable again (0), data kept. */
    void (*protect)(void *ctx, uint64_t page, int protect);
    /* Makes present pages [first, first + count) read-only in one step (NULL: page by page). */
    void (*protect_range)(void *ctx, uint64_t first, uint64_t count);
    /* Drops this node's copy of the page. */
    void (*unmap)(void *ctx, uint64_t page);
    /* Drops this node's copies of [first, first + count) at once (one system call, one TLB
     * flush): pages it does not home and has no copy of any more (engine state I), the ones
     * just dropped and, between them, ones that had none. NULL: page by page. */
    void (*unmap_range)(void *ctx, uint64_t first, uint64_t count);
    /* Drops this node's copies and home-store contents of [first, first + count). */
    void (*reset)(void *ctx, uint64_t first, uint64_t count);
    /* This node's present copy of `page` (read for write-backs). */
    const void *(*page)(void *ctx, uint64_t page);
    /* The home store's copy of `page` (this node homes it). */
    void *(*store)(void *ctx, uint64_t page);
    /* Room for the twin of `page` (release consistency), and giving it back. */
    void *(*twin)(void *ctx, uint64_t page);
    void (*twin_drop)(void *ctx, uint64_t page);
    /* One copy at the home. When set, this node's view of a page it homes and the home store
     * are the same memory (a memory file mapped twice, region.c): map_home makes the store's
     * page visible in the view (read-only or writable) instead of copying it in, and
     * unmap_home hides it again, keeping the store. The engine then never copies between
     * the two and never applies its own write-backs (they are already in place). NULL: two
     * copies, and map/unmap serve homed pages too. */
    void (*map_home)(void *ctx, uint64_t page, int writable);
    void (*unmap_home)(void *ctx, uint64_t page);
    /* One-sided page service. peer_readable: whether node `node`'s home store can be read
     * from here without asking that node (a co-located node's memory file: region.c). Only
     * for homes with one copy (their view is their store, so it holds every write of
     * theirs; with two copies the home's own writes stay in its view until someone asks).
     * peer_store: that node's current copy of `page`, read now, valid until the next call;
     * called only by the token holder, and only when peer_readable said yes. NULL ops:
     * never. */
    int (*peer_readable)(void *ctx, int node);
    const void *(*peer_store)(void *ctx, int node, uint64_t page);
    /* Overwrites this node's present copy of `page` with node `node`'s store, in place: the
     * mapping and its protection stay as they are (no fault, no TLB flush). Only where
     * peer_readable(node) says yes; NULL: copies can only be dropped and fetched again. */
    void (*refresh)(void *ctx, int node, uint64_t page);
    /* This node's present, writable copy of `page` as its threads see it, for the engine to
     * merge the home's store into (COH_A_MERGE) while they may be writing it: every change
     * is a compare-and-swap of one aligned word. Set wherever refresh is. */
    void *(*view)(void *ctx, uint64_t page);
    /* The shared directory (one-sided registration, rc.h): the DSM_DIR_WORDS words of
     * `page`'s entry in node `node`'s directory (DIR_READERS, DIR_WRITERS, DIR_SELFREG), which
     * this node and `node` update with atomics: `node` is this node (the home) or one
     * peer_readable says yes to. Only a home whose view of its pages is its store (map_home)
     * may share its directory: one-sided writers rely on it. NULL (op or result): no shared
     * directory there, and registration goes by message. */
    uint64_t *(*dir_words)(void *ctx, int node, uint64_t page);
    /* The watchers word of node `node`'s shared directory: the nodes that read its writers
     * words at every acquire (rc.h, watchers), so it tells them of new writers only if they
     * write. Wherever dir_words(node) is not NULL. */
    uint64_t *(*dir_watchers)(void *ctx, int node);
    /* One-sided mutexes (sync.c): node `node`'s lock table (DSM_LOCK_SLOTS slots), where
     * `node` is this node or one whose table is mapped here. This node's own table must exist
     * whenever any peer can reach it (the manager serves requests by message through it too).
     * NULL (op or result): `node`'s mutexes go by message. */
    struct dsm_lock_slot *(*lock_table)(void *ctx, int node);
};

/* Time, waiting, waking and dying. */
struct dsm_env_ops {
    /* Monotonic time in nanoseconds: the only clock the engine reads. */
    uint64_t (*now)(void *ctx);
    /* Returns once cond(arg) is true, driving the engine (dsm_progress) while it waits. */
    void (*wait)(struct dsm_node *n, int (*cond)(void *), void *arg);
    /* The engine changed state that sleeping waiters may be waiting for. */
    void (*wake)(struct dsm_node *n);
    /* A fatal error (text already formatted). Must not return. */
    void (*fatal)(struct dsm_node *n, const char *text) __attribute__((noreturn));
};

/* ---------------------------------------------------------------- configuration */

struct dsm_engine_cfg {
    int rank, nodes;
    uint64_t npages;      /* pages in the global space */
    uint64_t base;        /* its address (addresses of mutexes and dsm_malloc blocks are in it) */
    uint64_t memory;      /* bytes of the global space (for messages) */
    long hold_us;         /* how long a granted page stays before a recall is honoured */
    int prefetch;         /* most pages read ahead of a sequential read stream, 0: off */
    uint32_t locks_max;   /* mutexes one node manages at once (a power of two) */
    uint32_t lq_cap;      /* local message queue capacity (messages to self) */
    int default_proto;    /* DSM_PROTO_*: protocol of allocations that name none */
    uint64_t cache_pages; /* most copies of pages homed elsewhere kept at once; 0: unbounded */
    uint64_t mem_limit;   /* bytes this node may use (cgroup limit, else available); 0: unknown */
    uint64_t mem_base;    /* bytes the process used when it became a node (before any DSM data) */
};

/* ---------------------------------------------------------------- the node */

/* One page of a release batch (dsm_node_release): the actions the protocol decided for it (a
 * release sends at most a protection, a write-back and a twin's end) and its new state. */
#define DSM_REL_BATCH 64
#define DSM_REL_ACTS  4
struct dsm_rel_item {
    uint64_t page;
    uint8_t st, n;
    struct coh_action a[DSM_REL_ACTS];
};

struct local_msg {
    struct dsm_wire_hdr h;
    uint32_t slot; /* payload slot, if h.len */
};

enum { COLL_BARRIER = 1, COLL_ALLOC = 2, COLL_FREE = 3, COLL_FINALIZE = 4 };

struct coll_rec {
    uint64_t seq; /* 0: none yet */
    uint32_t kind;
    uint64_t a, b, c;
};

#define WAITER_SLOTS 1024
enum { W_FREE = 0, W_WAITING = 1, W_GRANTED = 2, W_BUSY = 3, W_CHECKING = 4 };
#define QNIL 0xFFFFFFFFu

struct lock_ent {
    uint64_t addr; /* 0: empty slot */
    uint32_t head, tail;
    uint16_t holder;
    uint8_t held;
};
struct qnode {
    uint64_t waiter;
    uint32_t next;
    uint16_t node;
};

/* One-sided mutexes (sync.c): a slot of a manager's shared lock table, which lives in its
 * memory file beside the shared directory and which the manager and every co-located node
 * update with atomics. Slots are claimed for a mutex address and never given back. */
struct dsm_lock_slot {
    _Atomic uint64_t addr;    /* the mutex; 0: free slot */
    _Atomic uint64_t holder;  /* rank + 1 of the node holding it; 0: free */
    _Atomic uint64_t waiters; /* bit per node with a thread (or, at the manager, a queued
                                 request) waiting for it: woken by LOCK_WAKE at unlock */
    _Atomic uint64_t last;    /* rank + 1 of the node that unlocked it last; 0: never */
};
#define DSM_LOCK_SLOTS 16384u /* per manager: 512 KiB of its memory file */

#define REMOTE_FREES   4096
#define DSM_DEFER_CAP  4096 /* recalls set aside at once */
#define DSM_DROP_BATCH 1024 /* copies an acquire drops before it unmaps them (engine.c) */

struct dsm_node {
    /* [init] */
    struct dsm_engine_cfg cfg;
    int rank, nodes;
    uint64_t npages;
    uint64_t coll_pages;  /* pages [0, coll_pages) are for dsm_alloc, the rest for arenas */
    uint64_t arena_pages; /* per-node dsm_malloc arena size in pages */
    const struct dsm_mem_ops *mem;
    void *mem_ctx;
    const struct dsm_env_ops *env;
    void *env_ctx;
    struct dsm_tp *tp; /* NULL for a single node */

    /* Per-page bookkeeping, indexed by page number. */
    _Atomic uint8_t *pstate; /* [atomic] enum coh_nstate on this node */
    uint8_t *home1;          /* [token] home node + 1, 0 if unallocated: read it with
                              * dsm_home_of (all-zero is the initial state, see engine.c) */
    uint8_t *proto;          /* [token] DSM_PROTO_* of the allocation holding the page */
    struct coh_dir *dir;     /* [token] SC directory entries (of homed pages) */
    struct rc_dir *rcdir;    /* [token] RC directory entries (of homed pages) */
    struct rc_node *rcx;     /* [token] RC node-side state beyond pstate */
    uint64_t *hold_until;    /* [atomic] recalls wait until this time (ns), see engine.c */
    uint8_t *pf;             /* [token] PF_* */
    uint8_t *mig;            /* [atomic] MIG_* (engine.c); written by the token holder */

    /* Progress (engine.c). */
    _Atomic int token;           /* 0 free, else the holder's thread id */
    _Atomic uint64_t poll_epoch; /* bumped whenever an application thread takes the token */
    _Atomic uint32_t wake_seq;   /* futex word of the real runtime's sleepers */
    _Atomic int sleepers;
    int finalizing;       /* [token] BYE exchange under way: peers closing is expected */
    _Atomic int byes;     /* peers that said BYE */
    struct local_msg *lq; /* [token] messages to self, FIFO */
    char (*lq_payload)[PAGE_SIZE];
    uint32_t lq_head, lq_tail;
    struct dsm_wire_hdr *deferred; /* [token] recalls set aside during a hold, FIFO */
    uint32_t def_head, def_tail;
    uint64_t pf_next; /* [token] read-ahead: the page that would extend the stream */
    int pf_win;       /* [token] read-ahead window */
    uint64_t pf_last; /* [token] the last read miss, and the distance to the one before */
    uint64_t pf_gap;
    uint32_t pf_step; /* [token] the stream's stride in pages (1: sequential) */

    /* Release consistency (engine.c): the RC pages this node has a copy of or a request for
     * (acquires go through them), and those written this interval (releases do). Each list
     * is an array plus every page's position in it (0: absent), for O(1) removal. */
    uint64_t *rc_live, *rc_dirty;         /* [token] */
    uint32_t *rc_live_pos, *rc_dirty_pos; /* [token] index + 1 */
    _Atomic uint32_t rc_live_n, rc_dirty_n;
    _Atomic int rc_outstanding; /* write-backs sent and not yet acknowledged by their home */
    uint64_t watching;          /* [token] homes whose watchers word has this node's bit (rc.h) */
    struct dsm_rel_item *rel;   /* [token] dsm_node_release's batch, DSM_REL_BATCH items */
    uint64_t *drops;            /* [token] copies an acquire dropped, not yet unmapped */
    uint32_t drops_n;
    int drops_on; /* [token] an acquire is collecting them (exec_actions) */

    /* Collectives and barriers (sync.c). */
    uint64_t cseq; /* [token] collectives entered by this node */
    int cur_kind;  /* [token] kind of collective `cseq` */
    uint64_t cur_a, cur_b, cur_c;
    uint64_t bar_recv[64][2];               /* [atomic] [round][seq parity] = seq received */
    struct coll_rec coll[DSM_MAX_NODES][2]; /* [atomic seq] [peer][seq parity] */

    /* Mutexes (sync.c): requesting side. */
    _Atomic int waiter[WAITER_SLOTS]; /* W_* per outstanding lock call */
    _Atomic int rel_outstanding;      /* releases sent to other managers, not yet acked */
    uint64_t *held;     /* [token] mutexes this node holds (open addressing, locks_max) */
    uint32_t held_live; /* [token] entries in use */
    /* Manager side [token]: an entry exists while its mutex is held (or waited for). */
    struct lock_ent *locks; /* open addressing, cfg.locks_max entries */
    uint32_t locks_live;    /* entries in use */
    struct qnode *qnodes;
    uint32_t qfree, qnext_unused;

    /* Allocation (alloc.c). */
    struct dsm_heap *coll_heap;  /* used by the one thread that makes collective calls */
    struct dsm_heap *arena_heap; /* [arena] */
    _Atomic uint64_t arena_hwm;  /* [arena] writes: pages of this node's arena ever handed out
                                    (dsm_evict_homed_pages walks no further) */
    pthread_mutex_t arena_lock;
    uint64_t remote_free[REMOTE_FREES]; /* frees of this arena asked for by other nodes */
    _Atomic uint32_t rf_head, rf_tail;  /* producer: token holder; consumer: arena_lock */

    /* Counters [atomic]: updated by whichever thread sees the event. */
    struct {
        _Atomic uint64_t read_faults, write_faults, upgrades, waits_joined, inv_sent, inv_recv,
            recalls_sent, recalls_recv, pages_fetched, pages_sent, barriers, lock_acquires,
            kernel_retries, local_msgs, local_bytes, pages_prefetched, migratory_reads,
            strided_prefetched, /* (of onesided_prefetched: a stream of stride > 1; the fixture) */
            acquires_skipped,   /* (locks last unlocked by this node: no acquire; the fixture) */
            onesided_fetches, onesided_refreshes, onesided_prefetched, onesided_registered,
            onesided_locks, onesided_watched, onesided_writers;
    } st;
    struct dsm_hist fault_hist; /* under fault_hist_lock (held for one add) */
    atomic_flag fault_hist_lock;

    /* Bounded cache of remote pages (evict.c). The copies this node holds of pages homed
     * elsewhere (any state but I) form a set swept by a CLOCK hand; a fault sets the page's
     * reference bit, the hand clears it, and a page found unreferenced is evicted through its
     * protocol. Only used when cfg.cache_pages is not 0. */
    uint64_t ev_high, ev_low; /* [init] background eviction starts above high, stops at low */
    uint64_t *ev_set;         /* [token] the cached remote pages (unordered; the hand sweeps it) */
    uint32_t *ev_pos;         /* [token] index + 1 of each page in ev_set, 0: absent */
    _Atomic uint64_t ev_n;    /* entries of ev_set */
    uint64_t ev_hand;         /* [token] next index the hand looks at */
    uint8_t *ev_flags;        /* [atomic] EV_* per page */
    uint16_t *ev_pin;         /* [atomic] system calls using the page right now */
    int ev_warned;            /* [token] the "cache too small" warning was given */
    _Atomic int ev_frozen;    /* collective frees under way: no eviction (alloc.c says why) */
    uint64_t ev_homed;        /* [token] pages of dsm_alloc blocks homed here */
    struct {
        _Atomic uint64_t clean, dirty, writebacks, refetches, stuck;
    } ev_st;
};

/* Per-page arrays of count entries of size bytes: reserved, zero-filled on first touch
 * (engine.c says why). NULL if the address space is exhausted. */
void *dsm_page_array(uint64_t count, size_t size);
void dsm_page_array_free(void *p, uint64_t count, size_t size);

/* The home node of a page, HOME_NONE if it is not allocated. */
static inline int dsm_home_of(const struct dsm_node *n, uint64_t p)
{
    if (n->home1[p]) return n->home1[p] - 1;
    /* dsm_malloc arenas (alloc.c) are homed on their node from the start: computed, so that
     * creating a node touches none of its per-page arrays. */
    if (p >= n->coll_pages && n->arena_pages) {
        uint64_t k = (p - n->coll_pages) / n->arena_pages;
        if (k < (uint64_t)n->nodes) return (int)k;
    }
    return HOME_NONE;
}

static inline void dsm_set_home(struct dsm_node *n, uint64_t p, int home)
{
    n->home1[p] = home == HOME_NONE ? 0 : (uint8_t)(home + 1);
}

#define EV_REF     1 /* touched since the hand last passed */
#define EV_EVICTED 2 /* evicted, not fetched again yet (re-fetches are counted) */

/* ---------------------------------------------------------------- eviction (evict.c) */

/* Sets up the cache bookkeeping (from dsm_node_create). 0, or -1 with err filled. */
int dsm_evict_init(struct dsm_node *n, char *err, size_t errlen);
void dsm_evict_fini(struct dsm_node *n);
/* A page's node-side state is changing to `st` (set_state; token held). */
void dsm_evict_track(struct dsm_node *n, uint64_t p, uint8_t st);
/* A thread touched the page (fault path, any thread): a second chance for it. */
static inline void dsm_evict_ref(struct dsm_node *n, uint64_t p)
{
    if (n->ev_flags && !(__atomic_load_n(&n->ev_flags[p], __ATOMIC_RELAXED) & EV_REF))
        __atomic_fetch_or(&n->ev_flags[p], EV_REF, __ATOMIC_RELAXED);
}
/* Makes room for `want` more remote pages before a request (fault path; token held). */
void dsm_evict_room(struct dsm_node *n, uint64_t want);
/* Evicts down to the low-water mark if the cache is above the high one (the service thread;
 * token held). Returns the pages evicted. */
int dsm_evict_background(struct dsm_node *n);
/* Whether the background eviction has work (any thread, no token). */
static inline int dsm_evict_wanted(const struct dsm_node *n)
{
    return n->cfg.cache_pages && atomic_load_explicit(&n->ev_n, memory_order_relaxed) > n->ev_high;
}
/* System calls on DSM buffers: the pages [first, last] stay until the call returns (any
 * thread). delta: +1 before the call, -1 after. */
void dsm_evict_pin(struct dsm_node *n, uint64_t first, uint64_t last, int delta);
/* A page left this node by a reset (free): forget it (token held). */
void dsm_evict_forget(struct dsm_node *n, uint64_t p);
/* Pages homed here that hold data (stats; token held). */
uint64_t dsm_evict_homed_pages(struct dsm_node *n);
/* Engine internals evict.c uses (engine.c): carries out `out` for page p, then sets its
 * state to st. Token held. */
void dsm_node_apply(struct dsm_node *n, uint64_t p, const struct coh_out *out, uint8_t st);

/* ---------------------------------------------------------------- life cycle (engine.c) */

/* Creates a node's engine. The ops tables and contexts must outlive it. NULL on out of
 * memory (with err filled). tp may be set later (before any message moves). */
struct dsm_node *dsm_node_create(const struct dsm_engine_cfg *cfg, const struct dsm_mem_ops *mem,
                                 void *mem_ctx, const struct dsm_env_ops *env, void *env_ctx,
                                 char *err, size_t errlen);
void dsm_node_destroy(struct dsm_node *n);

/* ---------------------------------------------------------------- addresses */

static inline uint64_t dsm_node_page_of(const struct dsm_node *n, uint64_t addr)
{
    return (addr - n->cfg.base) >> PAGE_SHIFT;
}
static inline int dsm_node_in_region(const struct dsm_node *n, uint64_t addr)
{
    return addr - n->cfg.base < n->npages * PAGE_SIZE;
}

/* ---------------------------------------------------------------- errors */

/* Formats and hands the text to env->fatal. Never returns. */
void dsm_node_fatal(struct dsm_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* ---------------------------------------------------------------- progress (engine.c) */

int dsm_token_try(struct dsm_node *n);
/* Spins (yielding now and then) until the token is ours. */
void dsm_token_acquire(struct dsm_node *n);
void dsm_token_release(struct dsm_node *n);
/* Runs the engine (expired deferrals, the local queue, the network) until a pass finds
 * nothing. Token held. Returns the number of messages handled. */
int dsm_progress(struct dsm_node *n);
/* Whether recalls are set aside waiting for a page hold to end (token holder). */
int dsm_deferred_pending(const struct dsm_node *n);
/* The earliest time a set-aside recall may be handled (0: none). Token holder. */
uint64_t dsm_deferred_due(const struct dsm_node *n);
/* Sends a frame (dst may be this node: it goes through the local queue). Token held. */
void dsm_send(struct dsm_node *n, int dst, const struct dsm_wire_hdr *h, const void *payload);
/* The transport's deliver callback (ctx = the node). Token held. */
void dsm_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload);
/* The transport's lost-peer callback (ctx = the node). */
void dsm_peer_lost(void *ctx, int peer, const char *why);
/* Waits for cond through env->wait. */
static inline void dsm_wait(struct dsm_node *n, int (*cond)(void *), void *arg)
{
    n->env->wait(n, cond, arg);
}
static inline uint64_t dsm_node_now(struct dsm_node *n)
{
    return n->env->now(n->env_ctx);
}

/* ---------------------------------------------------------------- access (engine.c) */

/* Resolves one access to a page: returns when this node holds the needed permission.
 * from_fault: 1 for a trapped access (offset = its byte offset in the page, for tracing),
 * 0 for a buffer made present for a system call. */
void dsm_access(struct dsm_node *n, uint64_t page, int write, int from_fault, uint32_t offset);
/* Whether this node may access the page now (write: writably). Any thread. */
int dsm_access_ok(struct dsm_node *n, uint64_t page, int write);
/* Release: this node's writes to RC memory go to their homes; returns once every home has
 * applied them. Acquire: drops the cached RC pages other nodes write. Any thread; no-ops
 * while the node has no RC pages. */
void dsm_node_release(struct dsm_node *n);
void dsm_node_acquire(struct dsm_node *n);

/* ---------------------------------------------------------------- sync.c */

int dsm_sync_init(struct dsm_node *n, char *err, size_t errlen);
void dsm_sync_fini(struct dsm_node *n);
/* Handles a synchronisation message (LOCK_*, BARRIER, COLL, FREE, BYE, ABORT). Token held. */
void dsm_sync_recv(struct dsm_node *n, const struct dsm_wire_hdr *h, const void *payload);
/* Every collective goes through here: all nodes must call it in the same order with the same
 * kind and arguments; a disagreement is fatal on every node with a message naming both. */
void dsm_collective(struct dsm_node *n, int kind, uint64_t a, uint64_t b, uint64_t c);
void dsm_node_barrier(struct dsm_node *n);
/* Mutexes, by their address in the global space. 0 or a DSM_E* code (see dsm.h). */
int dsm_node_mutex_init(struct dsm_node *n, uint64_t m);
int dsm_node_mutex_lock(struct dsm_node *n, uint64_t m);
int dsm_node_mutex_trylock(struct dsm_node *n, uint64_t m);
int dsm_node_mutex_unlock(struct dsm_node *n, uint64_t m);
int dsm_node_mutex_destroy(struct dsm_node *n, uint64_t m);
/* The goodbye exchange of dsm_finalize: tells every peer and waits (bounded) for theirs.
 * Returns 1 if every peer said goodbye in time. */
int dsm_node_goodbye(struct dsm_node *n, uint64_t timeout_ns);

/* ---------------------------------------------------------------- alloc.c */

int dsm_alloc_init(struct dsm_node *n, char *err, size_t errlen);
void dsm_alloc_fini(struct dsm_node *n);
/* The allocators, with addresses as offsets into the global space plus cfg.base.
 * Return 0 (no address) on failure, with the cause logged. */
uint64_t dsm_node_alloc_placed(struct dsm_node *n, size_t size, int policy, size_t arg);
uint64_t dsm_node_malloc(struct dsm_node *n, size_t size);
void dsm_node_free(struct dsm_node *n, uint64_t addr);
/* The node that homes this address, -1 if it is not allocated DSM memory. */
int dsm_node_home(const struct dsm_node *n, uint64_t addr);
/* A FREE message from a peer (token held). */
void dsm_malloc_free_home(struct dsm_node *n, uint64_t addr);
/* Forgets the release-consistency state of a page (a reset). Token held. */
void dsm_node_forget_rc(struct dsm_node *n, uint64_t p);
/* Resets pages to "never used" on this node: copies dropped, homed entries zeroed. Token. */
void dsm_node_reset(struct dsm_node *n, uint64_t first, uint64_t count);

#endif /* DSM_ENGINE_H */

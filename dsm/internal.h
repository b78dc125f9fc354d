/*
 * internal.h - the runtime's shared state and the functions its files export to each other.
 *
 * Threads and who owns what:
 *   - The PROGRESS TOKEN (g.token) serialises every protocol step on this node: whoever holds
 *     it (an application thread waiting in a fault, a barrier or a lock, or the service
 *     thread) receives messages, runs the coherence state machines, changes mappings and
 *     sends. Page states, directory entries, the local message queue, the transport's
 *     send/poll side, the lock manager tables and the collective bookkeeping are read and
 *     written only under the token. It is a try-lock, never slept on: a waiting thread that
 *     cannot take it spins (it is being made useful by whoever holds it) and later sleeps on
 *     g.wake_seq. See progress.c for why the design avoids a dedicated protocol thread.
 *   - The SERVICE THREAD serves requests when every application thread is busy computing.
 *   - Read without the token (atomics): page states (waiters poll them to see their page
 *     arrive), barrier/collective progress counters, stats counters.
 *   - Set once in dsm_init, read-only after: everything in struct dsm_cfg.
 * Nothing under the token ever touches an application page that is not mapped, so the fault
 * handler (which takes the token) cannot recurse into itself.
 */
#ifndef DSM_INTERNAL_H
#define DSM_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "coh.h"
#include "dsm.h"
#include "hist.h"
#include "transport.h"

#define PAGE_SIZE  DSM_PAGE_SIZE
#define PAGE_SHIFT 12
#define HOME_NONE  0xFF /* page not allocated */
#define MIG_SEEN   1    /* this node upgraded the page before: read misses ask for ownership */
#define MIG_CLEAN  2    /* owned by such a guess and not written yet: mapped read-only */

/* ---------------------------------------------------------------- logging (log.c) */
enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
extern int dsm_log_level;
/* Async-signal-safe (formats into a stack buffer, one write(2)); usable in the fault path. */
void dsm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define LOGE(...) dsm_log(LOG_ERROR, __VA_ARGS__)
#define LOGW(...) dsm_log(LOG_WARN, __VA_ARGS__)
#define LOGI(...) dsm_log(LOG_INFO, __VA_ARGS__)
#define LOGD(...)                                                                                  \
    do {                                                                                           \
        if (dsm_log_level >= LOG_DEBUG) dsm_log(LOG_DEBUG, __VA_ARGS__);                           \
    } while (0)
/* Logs, tells the peers (ABORT) and exits the process with status 3. Never returns. */
void dsm_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---------------------------------------------------------------- configuration (env.c) */
struct dsm_cfg {
    int rank, nodes;
    char coordinator[128];
    char job[48];
    uint64_t memory;   /* bytes of global space */
    uint64_t base;     /* its address */
    char transport[8]; /* tcp | rdma | auto */
    int stats;
    int connect_timeout_ms;
    long spin_us; /* how long a waiter spins before sleeping */
    long hold_us; /* how long a granted page stays before a recall is honoured */
    int prefetch; /* most pages read ahead of a sequential stream of read misses, 0: off */
    /* Who started this process and how to fix what depends on it, for messages (env.c). */
    char launcher[32];   /* "dsmrun", "srun (Slurm)", "mpirun (Open MPI)", "by hand", ... */
    char rank_from[96];  /* "from OMPI_COMM_WORLD_RANK", "from DSM_RANK", ... */
    char port_hint[128]; /* how to move the coordinator to another port with that launcher */
};
/* Fills cfg from opts (NULL = all from the environment). DSM_OK or DSM_EINVAL (logged). */
int dsm_cfg_load(struct dsm_cfg *cfg, const dsm_options_t *opts);
/* Parses "4G", "512M", "65536" (bytes). 0 and *out, or -1. */
int dsm_parse_size(const char *s, uint64_t *out);

/* ---------------------------------------------------------------- global state */
struct local_msg; /* progress.c */

struct dsm_global {
    int initialized;
    struct dsm_cfg cfg;
    int rank, nodes;

    /* region.c: the global space and its bookkeeping, all indexed by page number */
    char *base; /* application view: fixed address, registered with userfaultfd */
    uint64_t npages;
    int uffd;
    char *store;             /* home store: backing copy of pages homed here (same offsets) */
    _Atomic uint8_t *pstate; /* enum coh_nstate per page (written under token) */
    uint8_t *home;           /* home node per page, HOME_NONE if unallocated */
    struct coh_dir *dir;     /* directory entries (only those of homed pages are used) */
    uint64_t *hold_until;    /* per page: recalls wait until this time (ns), see progress.c */
    uint8_t *pf;             /* per page: 1 while a prefetch request is in flight */
    uint8_t *mig;            /* per page: MIG_* (fault.c); token holder writes, atomically */
    uint64_t coll_pages;     /* pages [0, coll_pages) are for dsm_alloc, the rest for arenas */
    uint64_t arena_pages;    /* per-node dsm_malloc arena size in pages */

    /* progress.c */
    _Atomic int token;           /* 0 free, else the holder's thread id */
    _Atomic uint64_t poll_epoch; /* bumped whenever an application thread takes the token */
    _Atomic uint32_t wake_seq;   /* futex: bumped when state changed and someone sleeps */
    _Atomic int sleepers;
    struct dsm_tp *tp;
    int svc_stop;
    int finalizing;   /* BYE exchange under way: peers closing is expected */
    _Atomic int byes; /* peers that said BYE */

    /* stats (atomics: updated by whichever thread sees the event) */
    struct {
        _Atomic uint64_t read_faults, write_faults, upgrades, waits_joined, inv_sent, inv_recv,
            recalls_sent, recalls_recv, pages_fetched, pages_sent, barriers, lock_acquires,
            kernel_retries, local_msgs, local_bytes, pages_prefetched, migratory_reads;
    } st;
    struct dsm_hist fault_hist; /* under fault_hist_lock (held for one add) */
    atomic_flag fault_hist_lock;
};
extern struct dsm_global g;

/* ---------------------------------------------------------------- region.c */
int dsm_region_map(char *err, size_t errlen);
void dsm_region_unmap(void);
static inline int dsm_in_region(const void *p)
{
    return g.base && (uintptr_t)p - (uintptr_t)g.base < g.npages * PAGE_SIZE;
}
static inline uint64_t dsm_page_of(const void *p)
{
    return ((uintptr_t)p - (uintptr_t)g.base) >> PAGE_SHIFT;
}
static inline char *dsm_page_addr(uint64_t page)
{
    return g.base + (page << PAGE_SHIFT);
}
/* Mapping operations on the application view (under token). Fatal on failure. */
void dsm_map_page(uint64_t page, const void *data, int writable); /* data NULL: zeros */
void dsm_protect_page(uint64_t page, int protect);
void dsm_unmap_page(uint64_t page);
/* Resets pages to "never used" on this node: local copies dropped, homed entries zeroed. */
void dsm_region_reset(uint64_t first, uint64_t count);

/* ---------------------------------------------------------------- progress.c */
int dsm_token_try(void);
/* Spins (yielding now and then) until the token is ours. */
void dsm_token_acquire(void);
void dsm_token_release(void);
/* Runs the protocol engine (deferred recalls, local queue, network) until a pass finds
 * nothing. Token held.
 * Returns the number of messages handled. */
int dsm_progress(void);
/* Whether recalls are set aside waiting for a page hold to end (token holder). */
int dsm_deferred_pending(void);
/* Carries out coherence actions; `payload` is the handled message's payload (or NULL). */
void dsm_exec(const struct coh_out *out, const void *payload);
/* Sends a frame (dst may be this node: it goes through the local queue). Token held. */
void dsm_send(int dst, const struct dsm_wire_hdr *h, const void *payload);
/* Spin-then-sleep until cond(arg) is true, driving progress while waiting. */
void dsm_wait(int (*cond)(void *), void *arg);
/* Wakes sleeping waiters if any (after a state change outside a progress pass). */
void dsm_wake_waiters(void);
int dsm_service_start(char *err, size_t errlen);
void dsm_service_stop(void);
void dsm_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload);
void dsm_peer_lost(void *ctx, int peer, const char *why);
/* Thread id, cached per thread (async-signal-safe). */
int dsm_tid(void);
uint64_t dsm_now_ns(void);

/* ---------------------------------------------------------------- fault.c */
int dsm_fault_install(char *err, size_t errlen);
void dsm_fault_uninstall(void);
/* Makes [addr, addr+len) accessible (write: writable) on this node, fetching as needed. */
void dsm_prefault(const void *addr, size_t len, int write);
/* Resolves one access to a page: returns when this node holds the needed permission.
 * from_fault: 1 for a trapped access (offset = its byte offset in the page, for tracing),
 * 0 for a buffer made present for a system call. */
void dsm_access(uint64_t page, int write, int from_fault, uint32_t offset);

/* ---------------------------------------------------------------- sync.c */
void dsm_sync_init(void);
/* Handles a synchronisation message (LOCK_*, BARRIER, COLL, FREE, BYE, ABORT). */
void dsm_sync_recv(const struct dsm_wire_hdr *h, const void *payload);
enum { COLL_BARRIER = 1, COLL_ALLOC = 2, COLL_FREE = 3, COLL_FINALIZE = 4 };
/* Every collective goes through here: all nodes must call it in the same order with the same
 * kind and arguments; a disagreement is fatal on every node with a message naming both. */
void dsm_collective(int kind, uint64_t a, uint64_t b, uint64_t c);

/* ---------------------------------------------------------------- alloc.c */
int dsm_alloc_init(char *err, size_t errlen);
void dsm_alloc_fini(void);
/* Home of a dsm_malloc arena page (computed, no table). */
void dsm_malloc_free_home(uint64_t addr); /* FREE message received (token held) */

#endif /* DSM_INTERNAL_H */

/*
 * dsm.h - the public API of ufdsm, a page-based distributed shared memory.
 *
 * N processes ("nodes") share one global address space: a region mapped at the same virtual
 * address on every node, so pointers into it are valid everywhere. Pages are cached on each
 * node and kept coherent (single writer / multiple readers, sequentially consistent) by a
 * directory protocol; see docs/memory-model.md for exactly what is guaranteed.
 *
 * Threads: any thread of a node may call any function here, except dsm_init, dsm_finalize,
 * dsm_barrier, dsm_alloc, dsm_alloc_placed and the collective dsm_free, which one thread per
 * node calls (the same one on each node, in the same order on every node).
 */
#ifndef DSM_H
#define DSM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSM_VERSION_MAJOR 0
#define DSM_VERSION_MINOR 1

/* Error codes: every function that returns int returns 0 or one of these (negative). */
enum {
    DSM_OK = 0,
    DSM_EINVAL = -1,       /* a bad argument or environment value */
    DSM_EPERM = -2,        /* userfaultfd not permitted */
    DSM_EADDRINUSE = -3,   /* the fixed address range of the global space is taken */
    DSM_EPEER = -4,        /* a peer could not be reached, or was lost */
    DSM_EHANDSHAKE = -5,   /* a peer belongs to another job, version or configuration */
    DSM_ENOMEM = -6,       /* out of local or global memory */
    DSM_ETRANSPORT = -7,   /* the requested transport cannot work here */
    DSM_ESTATE = -8,       /* called in the wrong state (e.g. dsm_init twice) */
    DSM_ESYS = -9,         /* an unexpected system call failure (logged with errno) */
    DSM_ECOLLECTIVE = -10, /* nodes disagree on a collective call (order, size, kind) */
    DSM_EBUSY = -11,       /* the mutex is held (trylock), or held or waited for (destroy) */
};

/* Options for dsm_init. dsm_options_init() fills every field with "take it from the
 * environment" (see README: DSM_RANK, DSM_NODES, DSM_COORDINATOR, DSM_MEMORY, ...). */
typedef struct dsm_options {
    int rank;                /* this node, 0..nodes-1; -1: from the environment */
    int nodes;               /* number of nodes; 0: from the environment */
    const char *coordinator; /* "host:port" of rank 0's bootstrap listener; NULL: environment */
    size_t memory;           /* bytes of global space (rounded up to pages); 0: environment */
    const char *transport;   /* "tcp", "rdma" or "auto"; NULL: environment (default auto) */
    const char *job;         /* job identifier all nodes must share; NULL: DSM_JOB or a default */
    int stats;               /* 1: print this node's counters at dsm_finalize; -1: DSM_STATS */
    int log_level;           /* 0 error, 1 warn, 2 info, 3 debug; -1: DSM_LOG */
    int connect_timeout_ms;  /* bounded wait for peers at startup; 0: DSM_CONNECT_TIMEOUT/30 s */
    int protocol;            /* default protocol: DSM_SC or DSM_RC; 0: DSM_PROTOCOL (default sc) */
    /* Appended fields (the struct only ever grows at its end; the library learns its size
     * from the macros below, so binaries built against an older header keep working). */
    size_t cache; /* most bytes of copies of pages homed elsewhere; 0: DSM_CACHE or the default
                     (a share of the memory available to the process, see README) */
} dsm_options_t;

/* Both take the size of the caller's dsm_options_t (the macros pass it): dsm_options_init
 * fills every field with "from the environment", dsm_init joins the job - connects to every
 * node, maps the global space; opts NULL: all from the environment. dsm_init returns 0 or a
 * negative DSM_E* code (the cause is also logged). */
void dsm_options_init_sized(dsm_options_t *opts, size_t size);
int dsm_init_sized(const dsm_options_t *opts, size_t size);
/* The same for binaries built before dsm_options_t had `cache`. */
void dsm_options_init(dsm_options_t *opts);
int dsm_init(const dsm_options_t *opts);
#define dsm_options_init(opts) dsm_options_init_sized((opts), sizeof(dsm_options_t))
#define dsm_init(opts)         dsm_init_sized((opts), sizeof(dsm_options_t))
/* Collective: every node calls it. Waits for all nodes, disconnects, unmaps. */
void dsm_finalize(void);
/* A human-readable message for a DSM_E* code. */
const char *dsm_strerror(int err);
int dsm_rank(void); /* 0 .. dsm_nodes()-1 */
int dsm_nodes(void);

/* Placement policies for dsm_alloc_placed: which node homes (holds the directory entry and
 * the backing copy of) each page. */
enum {
    DSM_PLACE_BLOCK = 0,  /* cut into dsm_nodes() contiguous chunks, chunk k homed on node k */
    DSM_PLACE_CYCLIC = 1, /* arg = block size in bytes (a page multiple), dealt round-robin */
    DSM_PLACE_NODE = 2,   /* arg = the node that homes all of it */
};

/* The coherence protocol of an allocation, OR'ed into the policy of dsm_alloc_placed (e.g.
 * DSM_PLACE_BLOCK | DSM_RC). Neither: the default protocol (DSM_PROTOCOL, default sc), which
 * dsm_alloc and dsm_malloc always use. docs/memory-model.md says what each guarantees.
 *   DSM_SC: sequentially consistent; C11 atomics are atomic across nodes.
 *   DSM_RC: release consistency with multiple writers: a data-race-free program sees
 *           sequential consistency; writes become visible to other nodes at synchronisation
 *           (mutexes, barriers, dsm_release/dsm_acquire). Keep atomics and flags in SC memory. */
enum { DSM_SC = 0x100, DSM_RC = 0x200 };

/* Collective: every node calls it in the same order with the same size and gets the same
 * address; zero-filled, page-aligned; DSM_PLACE_BLOCK. NULL (and a log line) when the global
 * space is exhausted or nodes disagree. */
void *dsm_alloc(size_t size);
void *dsm_alloc_placed(size_t size, int policy, size_t arg);
/* Not collective: any node, any thread, any time; homed on the caller; visible to all. */
void *dsm_malloc(size_t size);
/* Frees memory from either allocator. Memory from dsm_alloc: collective, like dsm_alloc.
 * Memory from dsm_malloc: any node, any thread. */
void dsm_free(void *ptr);
/* The node that homes this address (0 .. dsm_nodes()-1), or DSM_EINVAL (-1) if the address
 * is not in allocated DSM memory. */
int dsm_home(const void *addr);

/* All nodes, one call per node. Every write before it is visible to every read after it (a
 * release followed by an acquire). */
void dsm_barrier(void);

/* For programs that synchronise outside this API (e.g. a flag in SC memory written with a
 * C11 atomic): dsm_release makes this node's writes to RC memory visible to whoever acquires
 * next (it returns once their homes have them); dsm_acquire makes every released write
 * visible to this node. Lock calls and barriers do both by themselves. */
void dsm_release(void);
void dsm_acquire(void);

/* A mutex that lives in DSM memory, managed by the node that homes the mutex's address.
 * Nodes on the manager's host lock it with an atomic on the manager's lock table (no
 * message); others ask the manager, which serves their requests in FIFO order. Like a pthread
 * mutex it is not fair: a node that unlocks and locks again may take it before a waiter.
 * Ownership belongs to the node (any thread of the holding node may unlock). The mutex's bytes are
 * never touched, and a free mutex costs its manager nothing, so a program may create any number of
 * them over its life. Every call returns 0, or: DSM_EINVAL if the mutex is not in allocated DSM
 * memory, DSM_ESTATE before dsm_init, and as noted below. */
typedef struct dsm_mutex {
    uint64_t opaque[2];
} dsm_mutex_t;
int dsm_mutex_init(dsm_mutex_t *m);    /* by one node, before others use it; DSM_EBUSY: held */
int dsm_mutex_destroy(dsm_mutex_t *m); /* DSM_EBUSY if held or waited for */
int dsm_mutex_lock(dsm_mutex_t *m);    /* an acquire */
int dsm_mutex_trylock(dsm_mutex_t *m); /* an acquire; DSM_EBUSY if another holds it */
int dsm_mutex_unlock(dsm_mutex_t *m);  /* a release; DSM_EPERM if this node does not hold it */

/* Per-transport traffic counters; index with DSM_TP_*. */
enum { DSM_TP_TCP = 0, DSM_TP_RDMA = 1, DSM_TP_LOCAL = 2, DSM_TP_COUNT = 3 };
typedef struct dsm_tp_stats {
    uint64_t msgs_sent, msgs_recv;   /* protocol messages */
    uint64_t bytes_sent, bytes_recv; /* headers and payloads */
} dsm_tp_stats_t;

/* This node's counters since dsm_init. */
typedef struct dsm_stats {
    uint64_t read_faults;    /* faults on pages this node had no copy of, by a read */
    uint64_t write_faults;   /* faults on pages this node had no copy of, by a write */
    uint64_t upgrades;       /* writes to a read-only copy (write-protect faults) */
    uint64_t waits_joined;   /* faults that found a request for the page already in flight */
    uint64_t inv_sent;       /* invalidations this node sent as a home */
    uint64_t inv_recv;       /* invalidations this node received */
    uint64_t recalls_sent;   /* write-back requests sent to an exclusive owner, as a home */
    uint64_t recalls_recv;   /* write-back requests received as an owner */
    uint64_t pages_fetched;  /* page payloads received (from the network or the local home) */
    uint64_t pages_sent;     /* page payloads sent */
    uint64_t barriers;       /* dsm_barrier calls */
    uint64_t lock_acquires;  /* dsm_mutex_lock / successful trylock calls */
    uint64_t kernel_retries; /* system calls on DSM buffers retried after EFAULT */
    dsm_tp_stats_t tp[DSM_TP_COUNT];
    /* Fault service time: from the trap to the page being usable, in microseconds. */
    uint64_t fault_count;
    double fault_mean_us, fault_p50_us, fault_p90_us, fault_p99_us, fault_max_us;
    uint64_t pages_prefetched; /* pages read ahead of a sequential stream (DSM_PREFETCH) */
    uint64_t migratory_reads;  /* read misses that asked for an exclusive copy: the page had
                                  been read, then written, here before (counted in read_faults) */
    /* Bytes of this struct the library filled: counters are only ever appended, so a program
     * built against a newer header and run with an older library sees the newer fields as 0
     * and can tell from `size` which fields the library knew. */
    size_t size;
    /* The bounded page cache (DSM_CACHE). */
    uint64_t cache_bytes;     /* its size: most bytes of copies of pages homed elsewhere */
    uint64_t cached_pages;    /* copies of pages homed elsewhere held now (or being fetched) */
    uint64_t homed_pages;     /* pages this node homes that hold data (written or in use) */
    uint64_t evictions_clean; /* copies dropped to make room, with nothing to write back */
    uint64_t evictions_dirty; /* copies written back to their home to make room, then dropped */
    uint64_t writebacks;      /* pages sent back to their home: eviction, recall or release */
    uint64_t refetches;       /* pages fetched again after being evicted */
    uint64_t cache_overruns;  /* misses that found nothing evictable (cache too small) */
    /* One-sided page service (release consistency, nodes on one host): pages taken straight
     * from their home's memory, with no message and without the home's CPU (counted in
     * read_faults / write_faults too). */
    uint64_t onesided_fetches;
    /* Copies overwritten in place from their co-located home's memory at an acquire, instead
     * of being dropped and faulted in again (pages read interval after interval). */
    uint64_t onesided_refreshes;
    /* Frames to and from nodes on this host through the shared-memory rings (DSM_TRANSPORT
     * auto or shm); tp[] counts the rest, over TCP or RDMA. */
    dsm_tp_stats_t tp_shm;
    /* Pages read ahead of a stream of one-sided fetches, straight from their home's memory
     * like them (counted in pages_prefetched too). */
    uint64_t onesided_prefetched;
    /* First reads of pages homed on this host registered in the home's shared directory by
     * this node itself, with no message and without the home's CPU (the page then comes
     * one-sided: counted in onesided_fetches or onesided_prefetched too). */
    uint64_t onesided_registered;
    /* Mutexes taken (lock or trylock) with an atomic on their manager's lock table, this
     * node's own or a co-located node's, with no message and without the manager's CPU
     * (counted in lock_acquires too). */
    uint64_t onesided_locks;
    /* Readers of pages this node homes (co-located nodes that watch its shared directory)
     * that learned of a new writer from the directory at their next acquire instead of by a
     * message the writer had to wait for (counted here, at the home, once per reader). */
    uint64_t onesided_watched;
    /* First writes of pages homed on this host registered in the home's shared directory by
     * this node itself, with no message and without the home's (or another writer's) CPU
     * (counted in write_faults too). */
    uint64_t onesided_writers;
} dsm_stats_t;

/* Fills *out (`size` bytes of it: pass sizeof *out) with this node's counters. 0, or
 * DSM_ESTATE before dsm_init. dsm_stats(out) passes the size of the caller's struct, so a
 * program keeps working with a library that has more counters than its header. */
int dsm_stats_sized(dsm_stats_t *out, size_t size);
int dsm_stats(dsm_stats_t *out); /* binaries built before dsm_stats_sized existed */
#define dsm_stats(out) dsm_stats_sized((out), sizeof *(out))

#ifdef __cplusplus
}
#endif
#endif /* DSM_H */

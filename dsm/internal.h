/*
 * internal.h - the real runtime around the engine: one process, one node.
 *
 * The engine (engine.h) decides; this layer gives it effects and threads:
 *   - region.c: the global space at its fixed address, userfaultfd, the home store - the
 *     memory ops (rt_mem_ops);
 *   - service.c: how threads wait (spin, then sleep on a futex), the service thread, the
 *     clock, fatal errors - the environment ops (rt_env_ops);
 *   - fault.c: the SIGBUS handler and the interposed system calls, which turn accesses into
 *     dsm_access on the process's node;
 *   - init.c, env.c, api.c: dsm_init/dsm_finalize, configuration, the public API.
 *
 * Threads and who owns what, beyond engine.h:
 *   - Set once in dsm_init, read-only after: cfg, base, npages, uffd, store, node.
 *   - The service thread owns svc_*; svc_stop is written once by dsm_finalize.
 * A process has at most one runtime at a time (the signal handler must find it): ufdsm_rt,
 * NULL outside dsm_init..dsm_finalize. It is internal to the library (not exported).
 */
#ifndef DSM_INTERNAL_H
#define DSM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "engine.h"
#include "log.h"

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
    long spin_us;   /* how long a waiter spins before sleeping */
    long hold_us;   /* how long a granted page stays before a recall is honoured */
    int prefetch;   /* most pages read ahead of a sequential stream of read misses, 0: off */
    int protocol;   /* DSM_PROTO_*: of dsm_alloc, dsm_malloc, and dsm_alloc_placed without a flag */
    uint64_t cache; /* bytes of copies of remote pages kept at most (DSM_CACHE) */
    struct dsm_auth_key key; /* from DSM_SECRET / DSM_SECRET_FILE; key.secret 0: none */
    int peer_timeout_ms;     /* a peer silent this long is declared dead (DSM_PEER_TIMEOUT) */
    int home_store;          /* DSM_HOME_STORE: HOME_STORE_* (region.c) */
    int onesided;            /* DSM_ONESIDED: 1 auto (co-located homes read in place), 0 off */
    /* Who started this process and how to fix what depends on it, for messages (env.c). */
    char launcher[32];   /* "dsmrun", "srun (Slurm)", "mpirun (Open MPI)", "by hand", ... */
    char rank_from[96];  /* "from OMPI_COMM_WORLD_RANK", "from DSM_RANK", ... */
    char port_hint[128]; /* how to move the coordinator to another port with that launcher */
};
enum { HOME_STORE_AUTO, HOME_STORE_ONE, HOME_STORE_TWO };
/* Fills cfg from opts (NULL = all from the environment). DSM_OK or DSM_EINVAL (logged). */
int dsm_cfg_load(struct dsm_cfg *cfg, const dsm_options_t *opts);
/* Parses "4G", "512M", "65536" (bytes). 0 and *out, or -1. */
int dsm_parse_size(const char *s, uint64_t *out);
/* A full-size copy of the caller's options of `size` bytes (older binaries pass fewer; NULL:
 * all from the environment). */
/* Bytes this process may use: its memory cgroup's limit, else MemAvailable; 0: unknown. */
uint64_t dsm_mem_limit(void);
void dsm_options_widen(dsm_options_t *full, const dsm_options_t *opts, size_t size);

/* ---------------------------------------------------------------- the runtime */
struct dsm_runtime {
    int initialized; /* dsm_init done: faults and interposed calls are ours to serve */
    struct dsm_cfg cfg;
    struct dsm_node *node;
    char *base; /* application view: fixed address, registered with userfaultfd */
    uint64_t npages;
    int uffd;
    char *store;       /* home store: backing copy of pages homed here (same offsets) */
    int home_fd;       /* one copy at the home: the memory file behind base and store; else -1 */
    int no_copy_range; /* [token] copy_file_range between memory files refused: refresh by pread */
    char *twins;       /* twins of RC pages written this interval (same offsets) */
    /* Bit per page: its twin slot may hold memory [token]. A dropped twin's memory is kept
     * until the copy itself goes (unmap_page, reset_range): giving it back at every release
     * was an madvise, and so a TLB flush across CPUs, per page per release. */
    uint64_t *twin_res;
    pthread_t svc_thread;
    int svc_started;
    int svc_stop;
    /* Frames received from each node, counted as they are delivered (under the token) and
     * read by the service thread to tell who has gone silent (liveness, service.c). */
    _Atomic uint64_t rx[DSM_MAX_NODES];
    /* One-sided page service (region.c): each co-located node's memory file, open here
     * read-write (the pages are only read), -1 for the others. Written once per peer when its
     * announcement arrives (before dsm_init's closing barrier: FIFO), read by the token holder.
     * peer_page receives what is read from them: one page, used only by the token holder
     * (COH_A_FETCH runs under the token), so one per node is enough. */
    int peer_fd[DSM_MAX_NODES];
    char *peer_page;
    /* The shared directory (one copy at the home): two words a page - readers, writers - in
     * the memory file after the pages, where co-located nodes register as readers of pages
     * this node homes without a message (rc.h, dsm_mem_ops.dir_words). dir is this node's;
     * peer_dir[k] node k's, mapped from its file when its announcement arrives (like
     * peer_fd), NULL where there is none. */
    uint64_t *dir;
    uint64_t *peer_dir[DSM_MAX_NODES];
};
extern struct dsm_runtime *ufdsm_rt;

/* Logs, tells the peers (ABORT) and exits the process with status 3. Never returns. */
void dsm_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static inline int dsm_in_region(const void *p)
{
    struct dsm_runtime *rt = ufdsm_rt;
    return rt && (uintptr_t)p - (uintptr_t)rt->base < rt->npages * PAGE_SIZE;
}
static inline uint64_t dsm_page_of(const void *p)
{
    return ((uintptr_t)p - (uintptr_t)ufdsm_rt->base) >> PAGE_SHIFT;
}

/* region.c */
/* ctx: struct dsm_runtime. The second when rt->home_fd >= 0 (one copy at the home). */
extern const struct dsm_mem_ops rt_mem_ops, rt_mem_ops_one_copy;
int dsm_region_map(struct dsm_runtime *rt, char *err, size_t errlen);
void dsm_region_unmap(struct dsm_runtime *rt);
/* One-sided page service between nodes on one host: tells every peer where this node's
 * memory file is (DSM_MSG_SHM; only with one copy at the home and DSM_ONESIDED=auto), and maps
 * a peer's when its announcement arrives (token held, from dsm_rt_deliver). */
void dsm_onesided_announce(struct dsm_runtime *rt);
void dsm_onesided_recv(struct dsm_runtime *rt, const struct dsm_wire_hdr *h, const void *payload);

/* service.c */
extern const struct dsm_env_ops rt_env_ops; /* ctx: struct dsm_runtime */
uint64_t dsm_now_ns(void);
int dsm_service_start(struct dsm_runtime *rt, char *err, size_t errlen);
/* The transport's deliver callback: counts the frame for liveness, drops PINGs, hands the
 * rest to the engine (dsm_deliver). ctx: the struct dsm_node. */
void dsm_rt_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload);
void dsm_service_stop(struct dsm_runtime *rt);

/* fault.c */
int dsm_fault_install(char *err, size_t errlen);
void dsm_fault_uninstall(void);
/* Makes [addr, addr+len) accessible (write: writable) on this node, fetching as needed. */
void dsm_prefault(const void *addr, size_t len, int write);

#endif /* DSM_INTERNAL_H */

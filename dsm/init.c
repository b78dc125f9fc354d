/*
 * init.c - joining and leaving a job, the identity of this node, errors and counters.
 *
 * dsm_init order matters: the global space and the fault handler exist before any peer can
 * send a request, and the first barrier makes sure every node is ready before any returns.
 * dsm_finalize is a collective followed by a goodbye exchange, so that connections closing
 * afterwards are not mistaken for a lost node.
 */
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "select.h"
#include "trace.h"

const char *dsm_strerror(int err)
{
    switch (err) {
    case DSM_OK:
        return "success";
    case DSM_EINVAL:
        return "invalid argument or configuration";
    case DSM_EPERM:
        return "userfaultfd not permitted (run as root or with CAP_SYS_PTRACE, give this user "
               "access to /dev/userfaultfd, or set vm.unprivileged_userfaultfd=1)";
    case DSM_EADDRINUSE:
        return "the address range of the global space is taken (set DSM_BASE)";
    case DSM_EPEER:
        return "a peer could not be reached or was lost";
    case DSM_EHANDSHAKE:
        return "a peer belongs to another job, version or configuration";
    case DSM_ENOMEM:
        return "out of memory";
    case DSM_ETRANSPORT:
        return "the requested transport cannot work here";
    case DSM_ESTATE:
        return "called in the wrong state (before dsm_init, or dsm_init twice)";
    case DSM_ESYS:
        return "unexpected system call failure";
    case DSM_ECOLLECTIVE:
        return "nodes disagree on a collective call";
    case DSM_EBUSY:
        return "the mutex is held by another thread or node";
    default:
        return "unknown error";
    }
}

struct dsm_runtime *ufdsm_rt;

/* The runtime lives in static storage (there is one per process), but every field is reset
 * by dsm_init, so dsm_init after dsm_finalize starts from nothing. */
static struct dsm_runtime the_rt;

int dsm_rank(void)
{
    return ufdsm_rt ? ufdsm_rt->cfg.rank : 0;
}

int dsm_nodes(void)
{
    return ufdsm_rt ? ufdsm_rt->cfg.nodes : 1;
}

static void teardown(struct dsm_runtime *rt)
{
    rt->initialized = 0;
    if (rt->node) dsm_service_stop(rt);
    dsm_trace_close();
    if (rt->node && rt->node->tp) rt->node->tp->ops->destroy(rt->node->tp);
    dsm_fault_uninstall();
    /* No fault can be served any more: forget the runtime before its memory goes. */
    ufdsm_rt = NULL;
    dsm_node_destroy(rt->node);
    rt->node = NULL;
    dsm_region_unmap(rt);
}

/* The bootstrap and the TCP mesh report harmless events (strangers closed) through this. */
static void boot_note(void *ctx, const char *msg)
{
    (void)ctx;
    LOGW("%s", msg);
}

static int start_transport(struct dsm_runtime *rt, char *err, size_t errlen)
{
    if (rt->cfg.nodes == 1) return DSM_OK;
    struct dsm_boot_cfg bc = {.rank = rt->cfg.rank,
                              .nodes = rt->cfg.nodes,
                              .coordinator = rt->cfg.coordinator,
                              .timeout_ms = rt->cfg.connect_timeout_ms,
                              .key = &rt->cfg.key,
                              .peer_timeout_ms = rt->cfg.peer_timeout_ms,
                              .note = boot_note};
    snprintf(bc.desc.job, sizeof bc.desc.job, "%s", rt->cfg.job);
    bc.desc.version = DSM_WIRE_VERSION;
    bc.desc.nodes = (uint32_t)rt->cfg.nodes;
    bc.desc.region_base = rt->cfg.base;
    bc.desc.region_size = rt->cfg.memory;
    bc.desc.page_size = PAGE_SIZE;
    struct dsm_peer_addr addrs[DSM_MAX_NODES];
    int lfd = -1;
    int rc = dsm_bootstrap(&bc, &lfd, addrs, err, errlen);
    if (rc) return rc;
    struct dsm_wire_limits lim = {.npages = rt->npages,
                                  .base = (uint64_t)(uintptr_t)rt->base,
                                  .nodes = (uint32_t)rt->cfg.nodes};
    /* tcp, rdma or auto: decided by all nodes together (transport/select.h). */
    char chosen[1024];
    rc = dsm_transport_create(rt->cfg.transport, &bc, lfd, addrs, &lim, dsm_rt_deliver,
                              dsm_peer_lost, rt->node, &rt->node->tp, chosen, sizeof chosen, err,
                              errlen);
    if (!rc) LOGI("transport: %s", chosen);
    return rc;
}

#undef dsm_init
/* This process's resident memory now (0 if unknown): what it uses besides DSM data, measured
 * before there is any, for the allocation-time check that homed pages fit (alloc.c). */
static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    unsigned long long size = 0, res = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
    fclose(f);
    return res * (uint64_t)sysconf(_SC_PAGESIZE);
}

int dsm_init(const dsm_options_t *opts)
{
    return dsm_init_sized(opts, offsetof(dsm_options_t, cache));
}

int dsm_init_sized(const dsm_options_t *caller_opts, size_t size)
{
    dsm_options_t full, *opts = caller_opts ? &full : NULL;
    dsm_options_widen(&full, caller_opts, size);
    if (ufdsm_rt) {
        LOGE("dsm_init called twice");
        return DSM_ESTATE;
    }
    struct dsm_runtime *rt = &the_rt;
    memset(rt, 0, sizeof *rt);
    rt->uffd = rt->home_fd = -1;
    for (int p = 0; p < DSM_MAX_NODES; p++) rt->peer_fd[p] = -1;
    int rc = dsm_cfg_load(&rt->cfg, opts);
    if (rc) return rc;
    dsm_log_rank = rt->cfg.rank;
    char err[512] = "";
    if ((rc = dsm_region_map(rt, err, sizeof err))) goto fail;
    struct dsm_engine_cfg ec = {.rank = rt->cfg.rank,
                                .nodes = rt->cfg.nodes,
                                .npages = rt->npages,
                                .base = (uint64_t)(uintptr_t)rt->base,
                                .memory = rt->cfg.memory,
                                .hold_us = rt->cfg.hold_us,
                                .prefetch = rt->cfg.prefetch,
                                .default_proto = rt->cfg.protocol,
                                .cache_pages = rt->cfg.cache / PAGE_SIZE,
                                .mem_limit = dsm_mem_limit()};
    rt->node = dsm_node_create(&ec, rt->home_fd >= 0 ? &rt_mem_ops_one_copy : &rt_mem_ops, rt,
                               &rt_env_ops, rt, err, sizeof err);
    if (!rt->node) {
        rc = DSM_ENOMEM;
        goto fail;
    }
    ufdsm_rt = rt;
    if ((rc = dsm_fault_install(err, sizeof err)) ||
        (rc = dsm_trace_open(rt->cfg.rank, rt->cfg.nodes, (uint64_t)(uintptr_t)rt->base,
                             rt->cfg.memory, err, sizeof err)) ||
        (rc = start_transport(rt, err, sizeof err)) ||
        (rc = dsm_service_start(rt, err, sizeof err)))
        goto fail;
    /* Before the barrier: every peer's announcement arrives before its barrier message (FIFO),
     * so one-sided service is set up on every node when dsm_init returns. */
    dsm_onesided_announce(rt);
    rt->node->cfg.mem_base = resident_bytes();
    rt->initialized = 1;
    dsm_collective(rt->node, COLL_BARRIER, 0, 0, 0);
    LOGI("node %d of %d ready: %llu MiB of global space at %p", rt->cfg.rank, rt->cfg.nodes,
         (unsigned long long)(rt->cfg.memory >> 20), (void *)rt->base);
    return DSM_OK;
fail:
    LOGE("dsm_init: %s", err);
    teardown(rt);
    return rc;
}

static void print_stats(struct dsm_runtime *rt)
{
    dsm_stats_t s;
    dsm_stats(&s);
    struct dsm_tp *tp = rt->node->tp;
    const char *tpname = tp ? tp->ops->name : "tcp";
    int k = strstr(tpname, "rdma") ? DSM_TP_RDMA : DSM_TP_TCP;
    int r = rt->cfg.rank;
    fprintf(stderr,
            "ufdsm[node %d] stats: read_faults %llu write_faults %llu upgrades %llu "
            "waits_joined %llu inv_sent %llu inv_recv %llu recalls_sent %llu recalls_recv %llu "
            "pages_fetched %llu pages_sent %llu barriers %llu lock_acquires %llu "
            "kernel_retries %llu pages_prefetched %llu migratory_reads %llu\n"
            "ufdsm[node %d] stats: %s msgs_sent %llu msgs_recv %llu bytes_sent %llu "
            "bytes_recv %llu; shm msgs_sent %llu msgs_recv %llu; local msgs %llu bytes %llu\n"
            "ufdsm[node %d] stats: fault service time us: count %llu mean %.1f p50 %.1f p90 "
            "%.1f p99 %.1f max %.1f\n",
            r, (unsigned long long)s.read_faults, (unsigned long long)s.write_faults,
            (unsigned long long)s.upgrades, (unsigned long long)s.waits_joined,
            (unsigned long long)s.inv_sent, (unsigned long long)s.inv_recv,
            (unsigned long long)s.recalls_sent, (unsigned long long)s.recalls_recv,
            (unsigned long long)s.pages_fetched, (unsigned long long)s.pages_sent,
            (unsigned long long)s.barriers, (unsigned long long)s.lock_acquires,
            (unsigned long long)s.kernel_retries, (unsigned long long)s.pages_prefetched,
            (unsigned long long)s.migratory_reads, r, tpname, (unsigned long long)s.tp[k].msgs_sent,
            (unsigned long long)s.tp[k].msgs_recv, (unsigned long long)s.tp[k].bytes_sent,
            (unsigned long long)s.tp[k].bytes_recv, (unsigned long long)s.tp_shm.msgs_sent,
            (unsigned long long)s.tp_shm.msgs_recv,
            (unsigned long long)s.tp[DSM_TP_LOCAL].msgs_sent,
            (unsigned long long)s.tp[DSM_TP_LOCAL].bytes_sent, r, (unsigned long long)s.fault_count,
            s.fault_mean_us, s.fault_p50_us, s.fault_p90_us, s.fault_p99_us, s.fault_max_us);
    fprintf(stderr,
            "ufdsm[node %d] stats: cache %llu MiB: cached_pages %llu homed_pages %llu "
            "evictions_clean %llu evictions_dirty %llu writebacks %llu refetches %llu "
            "cache_overruns %llu\n",
            r, (unsigned long long)(s.cache_bytes >> 20), (unsigned long long)s.cached_pages,
            (unsigned long long)s.homed_pages, (unsigned long long)s.evictions_clean,
            (unsigned long long)s.evictions_dirty, (unsigned long long)s.writebacks,
            (unsigned long long)s.refetches, (unsigned long long)s.cache_overruns);
    fprintf(stderr,
            "ufdsm[node %d] stats: onesided_fetches %llu onesided_refreshes %llu "
            "onesided_prefetched %llu onesided_registered %llu onesided_locks %llu "
            "onesided_watched %llu onesided_writers %llu\n",
            r, (unsigned long long)s.onesided_fetches, (unsigned long long)s.onesided_refreshes,
            (unsigned long long)s.onesided_prefetched, (unsigned long long)s.onesided_registered,
            (unsigned long long)s.onesided_locks, (unsigned long long)s.onesided_watched,
            (unsigned long long)s.onesided_writers);
}

void dsm_finalize(void)
{
    struct dsm_runtime *rt = ufdsm_rt;
    if (!rt || !rt->initialized) return;
    struct dsm_node *n = rt->node;
    dsm_node_release(n); /* finalize is a release: nothing written stays behind */
    dsm_collective(n, COLL_FINALIZE, 0, 0, 0);
    if (rt->cfg.stats) print_stats(rt);
    if (n->tp && !dsm_node_goodbye(n, 5000000000ull))
        LOGW("dsm_finalize: not every node said goodbye within 5 s; leaving anyway");
    teardown(rt);
}

/* The first version of dsm_stats_t, before it had room to grow: what binaries built against
 * it receive from the unversioned entry point. */
#define STATS_V1_SIZE (offsetof(dsm_stats_t, migratory_reads) + sizeof(uint64_t))

#undef dsm_stats
int dsm_stats(dsm_stats_t *o)
{
    return dsm_stats_sized(o, STATS_V1_SIZE);
}

int dsm_stats_sized(dsm_stats_t *out, size_t size)
{
    struct dsm_runtime *rt = ufdsm_rt;
    if (!rt || !out) return rt ? DSM_EINVAL : DSM_ESTATE;
    struct dsm_node *n = rt->node;
    dsm_stats_t s;
    memset(&s, 0, sizeof s);
#define C(f) s.f = atomic_load_explicit(&n->st.f, memory_order_relaxed)
    C(read_faults);
    C(write_faults);
    C(upgrades);
    C(waits_joined);
    C(inv_sent);
    C(inv_recv);
    C(recalls_sent);
    C(recalls_recv);
    C(pages_fetched);
    C(pages_sent);
    C(barriers);
    C(lock_acquires);
    C(kernel_retries);
    C(pages_prefetched);
    C(migratory_reads);
    C(onesided_fetches);
    C(onesided_refreshes);
    C(onesided_prefetched);
    C(onesided_registered);
    C(onesided_locks);
    C(onesided_watched);
    C(onesided_writers);
#undef C
    if (n->tp) {
        int k = strstr(n->tp->ops->name, "rdma") ? DSM_TP_RDMA : DSM_TP_TCP;
        const struct dsm_tp_counters *c = &n->tp->cnt, *g = &n->tp->ring_cnt;
        s.tp[k] = (dsm_tp_stats_t){c->msgs_sent, c->msgs_recv, c->bytes_sent, c->bytes_recv};
        s.tp_shm = (dsm_tp_stats_t){g->msgs_sent, g->msgs_recv, g->bytes_sent, g->bytes_recv};
    }
    uint64_t lm = atomic_load(&n->st.local_msgs), lb = atomic_load(&n->st.local_bytes);
    s.tp[DSM_TP_LOCAL] = (dsm_tp_stats_t){lm, lm, lb, lb};
    struct dsm_hist h = n->fault_hist; /* a racy snapshot is fine for counters */
    s.fault_count = h.count;
    s.fault_mean_us = dsm_hist_mean_ns(&h) / 1000.0;
    s.fault_p50_us = dsm_hist_quantile_ns(&h, 0.50) / 1000.0;
    s.fault_p90_us = dsm_hist_quantile_ns(&h, 0.90) / 1000.0;
    s.fault_p99_us = dsm_hist_quantile_ns(&h, 0.99) / 1000.0;
    s.fault_max_us = h.max_ns / 1000.0;
    s.cache_bytes = n->cfg.cache_pages * PAGE_SIZE;
    s.cached_pages = atomic_load_explicit(&n->ev_n, memory_order_relaxed);
    s.evictions_clean = atomic_load(&n->ev_st.clean);
    s.evictions_dirty = atomic_load(&n->ev_st.dirty);
    s.writebacks = atomic_load(&n->ev_st.writebacks);
    s.refetches = atomic_load(&n->ev_st.refetches);
    s.cache_overruns = atomic_load(&n->ev_st.stuck);
    dsm_token_acquire(n); /* homes and directory entries are the token holder's */
    s.homed_pages = dsm_evict_homed_pages(n);
    dsm_token_release(n);
    s.size = sizeof s;
    /* Fields a caller's (older, smaller) struct has room for; newer ones are appended, and a
     * newer caller's fields this library does not know stay zero (s.size says how far). */
    memset(out, 0, size);
    memcpy(out, &s, size < sizeof s ? size : sizeof s);
    return DSM_OK;
}

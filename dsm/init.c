/*
 * init.c - joining and leaving a job, the identity of this node, errors and counters.
 *
 * dsm_init order matters: the global space and the fault handler exist before any peer can
 * send a request, and the first barrier makes sure every node is ready before any returns.
 * dsm_finalize is a collective followed by a goodbye exchange, so that connections closing
 * afterwards are not mistaken for a lost node.
 */
#include <sched.h>
#include <stdio.h>
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
        return "userfaultfd not permitted (run as root or set "
               "vm.unprivileged_userfaultfd=1)";
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
    default:
        return "unknown error";
    }
}

int dsm_rank(void)
{
    return g.rank;
}

int dsm_nodes(void)
{
    return g.nodes ? g.nodes : 1;
}

static void teardown(void)
{
    dsm_service_stop();
    dsm_trace_close();
    if (g.tp) g.tp->ops->destroy(g.tp);
    g.tp = NULL;
    dsm_fault_uninstall();
    dsm_alloc_fini();
    dsm_region_unmap();
}

static int start_transport(char *err, size_t errlen)
{
    if (g.nodes == 1) return DSM_OK;
    struct dsm_boot_cfg bc = {.rank = g.rank,
                              .nodes = g.nodes,
                              .coordinator = g.cfg.coordinator,
                              .timeout_ms = g.cfg.connect_timeout_ms};
    snprintf(bc.desc.job, sizeof bc.desc.job, "%s", g.cfg.job);
    bc.desc.version = DSM_WIRE_VERSION;
    bc.desc.nodes = (uint32_t)g.nodes;
    bc.desc.region_base = g.cfg.base;
    bc.desc.region_size = g.cfg.memory;
    bc.desc.page_size = PAGE_SIZE;
    struct dsm_peer_addr addrs[DSM_MAX_NODES];
    int lfd = -1;
    int rc = dsm_bootstrap(&bc, &lfd, addrs, err, errlen);
    if (rc) return rc;
    struct dsm_wire_limits lim = {
        .npages = g.npages, .base = (uint64_t)(uintptr_t)g.base, .nodes = (uint32_t)g.nodes};
    /* tcp, rdma or auto: decided by all nodes together (transport/select.h). */
    char chosen[1024];
    rc = dsm_transport_create(g.cfg.transport, &bc, lfd, addrs, &lim, dsm_deliver, dsm_peer_lost,
                              NULL, &g.tp, chosen, sizeof chosen, err, errlen);
    if (!rc) LOGI("transport: %s", chosen);
    return rc;
}

int dsm_init(const dsm_options_t *opts)
{
    if (g.initialized) {
        LOGE("dsm_init called twice");
        return DSM_ESTATE;
    }
    int rc = dsm_cfg_load(&g.cfg, opts);
    if (rc) return rc;
    g.rank = g.cfg.rank;
    g.nodes = g.cfg.nodes;
    char err[512] = "";
    memset(&g.st, 0, sizeof g.st);
    dsm_hist_reset(&g.fault_hist);
    g.finalizing = 0;
    g.byes = 0;
    g.svc_stop = 0;
    if ((rc = dsm_region_map(err, sizeof err)) || (rc = dsm_alloc_init(err, sizeof err)) ||
        (rc = dsm_fault_install(err, sizeof err)) || (rc = dsm_trace_open(err, sizeof err))) {
        LOGE("dsm_init: %s", err);
        teardown();
        return rc;
    }
    dsm_sync_init();
    if ((rc = start_transport(err, sizeof err)) || (rc = dsm_service_start(err, sizeof err))) {
        LOGE("dsm_init: %s", err);
        teardown();
        return rc;
    }
    g.initialized = 1;
    dsm_collective(COLL_BARRIER, 0, 0, 0);
    LOGI("node %d of %d ready: %llu MiB of global space at %p", g.rank, g.nodes,
         (unsigned long long)(g.cfg.memory >> 20), (void *)g.base);
    return DSM_OK;
}

static int all_byes(void *arg)
{
    (void)arg;
    return atomic_load(&g.byes) >= g.nodes - 1;
}

static void print_stats(void)
{
    dsm_stats_t s;
    dsm_stats(&s);
    const char *tpname = g.tp ? g.tp->ops->name : "tcp";
    int k = strcmp(tpname, "rdma") ? DSM_TP_TCP : DSM_TP_RDMA;
    fprintf(stderr,
            "ufdsm[node %d] stats: read_faults %llu write_faults %llu upgrades %llu "
            "waits_joined %llu inv_sent %llu inv_recv %llu recalls_sent %llu recalls_recv %llu "
            "pages_fetched %llu pages_sent %llu barriers %llu lock_acquires %llu "
            "kernel_retries %llu pages_prefetched %llu migratory_reads %llu\n"
            "ufdsm[node %d] stats: %s msgs_sent %llu msgs_recv %llu bytes_sent %llu "
            "bytes_recv %llu; local msgs %llu bytes %llu\n"
            "ufdsm[node %d] stats: fault service time us: count %llu mean %.1f p50 %.1f p90 "
            "%.1f p99 %.1f max %.1f\n",
            g.rank, (unsigned long long)s.read_faults, (unsigned long long)s.write_faults,
            (unsigned long long)s.upgrades, (unsigned long long)s.waits_joined,
            (unsigned long long)s.inv_sent, (unsigned long long)s.inv_recv,
            (unsigned long long)s.recalls_sent, (unsigned long long)s.recalls_recv,
            (unsigned long long)s.pages_fetched, (unsigned long long)s.pages_sent,
            (unsigned long long)s.barriers, (unsigned long long)s.lock_acquires,
            (unsigned long long)s.kernel_retries, (unsigned long long)s.pages_prefetched,
            (unsigned long long)s.migratory_reads, g.rank, tpname,
            (unsigned long long)s.tp[k].msgs_sent, (unsigned long long)s.tp[k].msgs_recv,
            (unsigned long long)s.tp[k].bytes_sent, (unsigned long long)s.tp[k].bytes_recv,
            (unsigned long long)s.tp[DSM_TP_LOCAL].msgs_sent,
            (unsigned long long)s.tp[DSM_TP_LOCAL].bytes_sent, g.rank,
            (unsigned long long)s.fault_count, s.fault_mean_us, s.fault_p50_us, s.fault_p90_us,
            s.fault_p99_us, s.fault_max_us);
}

void dsm_finalize(void)
{
    if (!g.initialized) return;
    dsm_collective(COLL_FINALIZE, 0, 0, 0);
    if (g.cfg.stats) print_stats();
    g.finalizing = 1;
    if (g.tp) {
        struct dsm_wire_hdr h;
        dsm_wire_init(&h, DSM_MSG_BYE, (uint32_t)g.rank);
        dsm_token_acquire();
        for (int n = 0; n < g.nodes; n++)
            if (n != g.rank) dsm_send(n, &h, NULL);
        dsm_progress();
        dsm_token_release();
        /* Bounded: a peer that dies now has finished its part anyway. */
        uint64_t deadline = dsm_now_ns() + 5000000000ull;
        while (!all_byes(NULL) && dsm_now_ns() < deadline) {
            if (dsm_token_try()) {
                dsm_progress();
                dsm_token_release();
            }
            sched_yield();
        }
        if (!all_byes(NULL))
            LOGW("dsm_finalize: not every node said goodbye within 5 s; leaving anyway");
    }
    g.initialized = 0;
    teardown();
}

int dsm_stats(dsm_stats_t *o)
{
    if (!g.base) return DSM_ESTATE;
    memset(o, 0, sizeof *o);
#define C(f) o->f = atomic_load_explicit(&g.st.f, memory_order_relaxed)
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
#undef C
    if (g.tp) {
        int k = strcmp(g.tp->ops->name, "rdma") ? DSM_TP_TCP : DSM_TP_RDMA;
        o->tp[k].msgs_sent = g.tp->cnt.msgs_sent;
        o->tp[k].msgs_recv = g.tp->cnt.msgs_recv;
        o->tp[k].bytes_sent = g.tp->cnt.bytes_sent;
        o->tp[k].bytes_recv = g.tp->cnt.bytes_recv;
    }
    uint64_t lm = atomic_load(&g.st.local_msgs), lb = atomic_load(&g.st.local_bytes);
    o->tp[DSM_TP_LOCAL] = (dsm_tp_stats_t){lm, lm, lb, lb};
    struct dsm_hist h = g.fault_hist; /* a racy snapshot is fine for counters */
    o->fault_count = h.count;
    o->fault_mean_us = dsm_hist_mean_ns(&h) / 1000.0;
    o->fault_p50_us = dsm_hist_quantile_ns(&h, 0.50) / 1000.0;
    o->fault_p90_us = dsm_hist_quantile_ns(&h, 0.90) / 1000.0;
    o->fault_p99_us = dsm_hist_quantile_ns(&h, 0.99) / 1000.0;
    o->fault_max_us = h.max_ns / 1000.0;
    return DSM_OK;
}

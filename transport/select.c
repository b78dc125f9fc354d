/*
 * select.c - DSM_TRANSPORT=tcp|rdma|shm|auto, decided by all nodes together (see select.h).
 *
 * While the nodes agree, the TCP transport delivers to this file (sel_deliver), which takes
 * the selection records and keeps every other frame: a node that decided first may already
 * run the runtime and send to us. If TCP is kept, its ops table is replaced by a copy whose
 * poll first delivers those kept frames (in arrival order, so per-peer FIFO holds) and whose
 * destroy frees this file's state; every other op is TCP's own. The per-frame cost of the
 * indirection is one extra call in deliver.
 *
 * Threading: dsm_transport_create runs before the service thread exists and blocks within
 * cfg->timeout_ms per phase (plus the RDMA connect timeout). Afterwards sel_poll / sel_deliver
 * run under the runtime's progress token like any poll, sel_destroy alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"
#include "net.h"
#include "rdma.h"
#include "rdma_logic.h"
#include "select.h"
#include "shm.h"
#include "transport.h"
#include "wire.h"

struct kept {
    struct kept *next;
    struct dsm_wire_hdr h;
    uint8_t payload[]; /* h.len bytes */
};

struct sel {
    struct dsm_tp *tcp;
    struct dsm_tp_ops ops; /* TCP's with poll and destroy replaced */
    const struct dsm_tp_ops *tcp_ops;
    dsm_tp_deliver_fn deliver; /* the runtime's */
    dsm_tp_lost_fn lost;
    void *cb_ctx;
    int selecting; /* records are being collected */
    int replaying;
    struct kept *head, **tail; /* frames for the runtime that came early */
    struct kept *cursor;       /* the next one to deliver */
    int oom;
    int phase;
    struct dsm_sel_rec rec[DSM_MAX_NODES][2]; /* [node][phase - 1] */
    uint8_t got[DSM_MAX_NODES][2];
    uint8_t gone[DSM_MAX_NODES];
    char gone_why[DSM_MAX_NODES][160];
    char bad[400]; /* a protocol error seen in deliver, reported by the waiting loop */
};

static void sel_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct sel *s = ctx;
    if (!s->selecting) {
        s->deliver(s->cb_ctx, h, payload);
        return;
    }
    struct dsm_sel_rec r;
    if (h->type == DSM_MSG_ABORT && !dsm_sel_parse(payload, h->len, &r)) {
        if (s->got[h->src][r.phase - 1] && !s->bad[0])
            snprintf(s->bad, sizeof s->bad, "node %u sent its phase-%d transport choice twice",
                     h->src, r.phase);
        s->rec[h->src][r.phase - 1] = r;
        s->got[h->src][r.phase - 1] = 1;
        return;
    }
    /* A node that runs the runtime already must have sent its records first (FIFO). */
    if (!s->got[h->src][0] && !s->bad[0])
        snprintf(s->bad, sizeof s->bad,
                 "node %u sent %s before taking part in choosing the transport — set the same "
                 "DSM_TRANSPORT on every node (it was tcp there?)",
                 h->src, dsm_wire_type_name(h->type));
    struct kept *k = malloc(sizeof *k + h->len);
    if (!k) {
        s->oom = 1;
        return;
    }
    k->next = NULL;
    k->h = *h;
    if (h->len) memcpy(k->payload, payload, h->len);
    *s->tail = k;
    s->tail = &k->next;
}

static void sel_lost(void *ctx, int peer, const char *why)
{
    struct sel *s = ctx;
    if (!s->selecting) {
        if (s->lost) s->lost(s->cb_ctx, peer, why);
        return;
    }
    s->gone[peer] = 1;
    snprintf(s->gone_why[peer], sizeof s->gone_why[peer], "%s", why);
}

static int sel_poll(struct dsm_tp *tp)
{
    struct sel *s = tp->cb_ctx;
    if (s->replaying) { /* a poll from inside a replayed deliver: only flush */
        s->tcp_ops->flush(tp);
        return 0;
    }
    int n = 0;
    if (s->cursor) {
        /* Not freed here (destroy does): this may run inside the runtime's SIGBUS handler,
         * which may have interrupted malloc. */
        s->replaying = 1;
        while (s->cursor) {
            struct kept *k = s->cursor;
            s->cursor = k->next;
            s->deliver(s->cb_ctx, &k->h, k->h.len ? k->payload : NULL);
            n++;
        }
        s->replaying = 0;
    }
    return n + s->tcp_ops->poll(tp);
}

static void free_kept(struct sel *s)
{
    while (s->head) {
        struct kept *k = s->head;
        s->head = k->next;
        free(k);
    }
}

static void sel_destroy(struct dsm_tp *tp)
{
    struct sel *s = tp->cb_ctx;
    const struct dsm_tp_ops *o = s->tcp_ops;
    free_kept(s);
    free(s);
    o->destroy(tp);
}

/* ---------------------------------------------------------------- exchanging records */

static void sleep_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* Sends our record of this phase to everybody and waits for everybody's. */
static int exchange(struct sel *s, const struct dsm_boot_cfg *cfg, const struct dsm_sel_rec *mine,
                    char *err, size_t errlen)
{
    struct dsm_tp *tp = s->tcp;
    int ph = mine->phase - 1;
    s->rec[cfg->rank][ph] = *mine;
    s->got[cfg->rank][ph] = 1;
    char text[DSM_SEL_TEXT];
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_ABORT, (uint32_t)cfg->rank);
    h.len = (uint32_t)dsm_sel_encode(mine, text, sizeof text);
    for (int n = 0; n < cfg->nodes; n++)
        if (n != cfg->rank) s->tcp_ops->send(tp, n, &h, text);
    int timeout = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    uint64_t deadline = dsm_net_now_ms() + (uint64_t)timeout;
    for (;;) {
        s->tcp_ops->poll(tp);
        if (s->bad[0]) {
            snprintf(err, errlen, "choosing the transport: %s", s->bad);
            return DSM_EHANDSHAKE;
        }
        if (s->oom) {
            snprintf(err, errlen, "choosing the transport: out of memory");
            return DSM_ENOMEM;
        }
        int missing = -1;
        for (int n = 0; n < cfg->nodes && missing < 0; n++)
            if (!s->got[n][ph]) missing = n;
        if (missing < 0) return DSM_OK;
        if (s->gone[missing]) {
            snprintf(err, errlen, "choosing the transport: node %d went away: %s", missing,
                     s->gone_why[missing]);
            return DSM_EPEER;
        }
        if (dsm_net_now_ms() >= deadline) {
            char secs[32];
            snprintf(err, errlen,
                     "choosing the transport: node %d did not answer within %s (phase %d) — is "
                     "it stuck, or does it run another ufdsm build?",
                     missing, dsm_net_secs(timeout, secs, sizeof secs), mine->phase);
            return DSM_EPEER;
        }
        sleep_us(100); /* setup path: no need to spin */
    }
}

/* The first node whose record of this phase says no, or -1. */
static int first_no(const struct sel *s, int nodes, int ph)
{
    for (int n = 0; n < nodes; n++)
        if (!s->rec[n][ph].ok) return n;
    return -1;
}

/* Hands the TCP transport over to the runtime (see the top of the file). */
static struct dsm_tp *keep_tcp(struct sel *s)
{
    struct dsm_tp *tp = s->tcp;
    s->selecting = 0;
    s->cursor = s->head;
    s->ops = *s->tcp_ops;
    s->ops.poll = sel_poll;
    s->ops.destroy = sel_destroy;
    tp->ops = &s->ops;
    memset(&tp->cnt, 0, sizeof tp->cnt); /* the runtime's traffic only */
    return tp;
}

/* Phase 1's shared-memory part: attaches every peer's rings that can be (a direction is the
 * sender's alone to decide, shm.h). With `force` (DSM_TRANSPORT=shm), a peer that cannot be
 * reached so is an error. Appends "; shared memory to nodes ..." to chosen. */
static int attach_rings(struct sel *s, struct dsm_shm *shm, const struct dsm_boot_cfg *cfg,
                        int force, char *chosen, size_t chosenlen, char *err, size_t errlen)
{
    char list[DSM_MAX_NODES * 4] = "";
    size_t used = 0;
    for (int n = 0; n < cfg->nodes; n++) {
        if (n == cfg->rank) continue;
        char why[300];
        int r =
            dsm_shm_attach(shm, n, s->rec[n][0].shm[0] ? s->rec[n][0].shm : "-", why, sizeof why);
        if (r < 0) {
            snprintf(err, errlen,
                     "choosing the transport: node %d announced its rings as '%.80s', "
                     "which is not an announcement — another ufdsm build?",
                     n, s->rec[n][0].shm);
            return DSM_EHANDSHAKE;
        }
        if (!r && force) {
            snprintf(err, errlen,
                     "DSM_TRANSPORT=shm, but node %d cannot be reached through shared memory: %s "
                     "— shm needs every node on this host; use auto to mix",
                     n, why);
            return DSM_ETRANSPORT;
        }
        if (r && used < sizeof list - 8)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%d", used ? "," : "", n);
    }
    if (used) {
        size_t k = strlen(chosen);
        snprintf(chosen + k, chosenlen - k, "; shared memory to node%s %s (this host)",
                 dsm_shm_routes(shm) > 1 ? "s" : "", list);
    }
    return DSM_OK;
}

/* The transport handed to the runtime: base alone when no frame goes through a ring (its
 * callbacks pointed at shm's forwarders, so they are pointed back at the runtime's). */
static struct dsm_tp *finish(struct dsm_shm *shm, struct dsm_tp *base, struct sel *s,
                             dsm_tp_deliver_fn deliver, dsm_tp_lost_fn lost, void *cb_ctx)
{
    if (!shm) return base;
    if (dsm_shm_routes(shm)) return dsm_shm_wrap(shm, base);
    if (s) { /* TCP kept: sel forwards */
        s->deliver = deliver;
        s->lost = lost;
        s->cb_ctx = cb_ctx;
    } else {
        base->deliver = deliver;
        base->lost = lost;
        base->cb_ctx = cb_ctx;
    }
    dsm_shm_free(shm);
    return base;
}

int dsm_transport_create(const char *kind, const struct dsm_boot_cfg *cfg, int listen_fd,
                         const struct dsm_peer_addr *addrs, const struct dsm_wire_limits *limits,
                         dsm_tp_deliver_fn deliver, dsm_tp_lost_fn lost, void *cb_ctx,
                         struct dsm_tp **out, char *chosen, size_t chosenlen, char *err,
                         size_t errlen)
{
    *out = NULL;
    chosen[0] = 0;
    int force = !strcmp(kind, "rdma"), only_shm = !strcmp(kind, "shm");
    if (!strcmp(kind, "tcp")) {
        snprintf(chosen, chosenlen, "tcp (requested)");
        return dsm_tcp_create(cfg, listen_fd, addrs, limits, deliver, lost, cb_ctx, out, err,
                              errlen);
    }
    if (!force && !only_shm && strcmp(kind, "auto")) {
        close(listen_fd);
        snprintf(err, errlen, "DSM_TRANSPORT='%s' is not valid: expected tcp, rdma, shm or auto",
                 kind);
        return DSM_EINVAL;
    }
    struct sel *s = calloc(1, sizeof *s);
    if (!s) {
        close(listen_fd);
        snprintf(err, errlen, "out of memory choosing the transport");
        return DSM_ENOMEM;
    }
    /* Rings before anything is announced: a peer that decides first may write at once. */
    struct dsm_shm *shm = NULL;
    char shm_why[200] = "";
    if (!force) {
        int rc = dsm_shm_create(cfg->rank, cfg->nodes, &shm, shm_why, sizeof shm_why);
        if (rc && only_shm) {
            close(listen_fd);
            free(s);
            snprintf(err, errlen, "DSM_TRANSPORT=shm, but this node cannot make its rings: %s",
                     shm_why);
            return rc;
        }
    }
    /* With rings, every base transport hands frames and losses to shm.c, which passes them
     * on: a peer's loss must wait until what it wrote into our ring is delivered. */
    dsm_tp_deliver_fn b_deliver = shm ? dsm_shm_base_deliver : deliver;
    dsm_tp_lost_fn b_lost = shm ? dsm_shm_base_lost : lost;
    void *b_ctx = shm ? (void *)shm : cb_ctx;
    if (shm) dsm_shm_set_callbacks(shm, deliver, lost, cb_ctx);
    s->deliver = b_deliver;
    s->lost = b_lost;
    s->cb_ctx = b_ctx;
    s->selecting = 1;
    s->tail = &s->head;
    int rc = dsm_tcp_create(cfg, listen_fd, addrs, limits, sel_deliver, sel_lost, s, &s->tcp, err,
                            errlen);
    if (rc) {
        dsm_shm_free(shm);
        free(s);
        return rc;
    }
    s->tcp_ops = s->tcp->ops;

    /* Phase 1: can every node do RDMA? And where are its rings? */
    struct dsm_rdma_prep *prep = NULL;
    struct dsm_sel_rec me = {.phase = 1};
    if (only_shm) {
        snprintf(me.why, sizeof me.why, "DSM_TRANSPORT=shm");
    } else {
        rc = dsm_rdma_prepare(cfg, &addrs[cfg->rank], &prep, me.addr, &me.port, me.why,
                              sizeof me.why);
        me.ok = rc == DSM_OK;
        if (me.ok) snprintf(me.why, sizeof me.why, "%s", dsm_rdma_prep_device(prep));
    }
    if (shm) dsm_shm_announce(shm, me.shm, sizeof me.shm);
    rc = exchange(s, cfg, &me, err, errlen);
    if (rc) {
        dsm_rdma_prep_free(prep);
        goto fail;
    }
    if (only_shm) {
        snprintf(chosen, chosenlen, "tcp (requested shm: TCP for setup and loss only)");
        rc = attach_rings(s, shm, cfg, 1, chosen, chosenlen, err, errlen);
        if (rc) goto fail;
        *out = finish(shm, keep_tcp(s), s, deliver, lost, cb_ctx);
        return DSM_OK;
    }
    int no = first_no(s, cfg->nodes, 0);
    if (no >= 0) {
        dsm_rdma_prep_free(prep);
        if (force) {
            snprintf(err, errlen, "DSM_TRANSPORT=rdma, but node %d%s cannot use RDMA: %s", no,
                     no == cfg->rank ? " (this node)" : "", s->rec[no][0].why);
            rc = DSM_ETRANSPORT;
            goto fail;
        }
        snprintf(chosen, chosenlen, "tcp (auto: node %d cannot use RDMA: %s)", no,
                 s->rec[no][0].why);
        if (shm && (rc = attach_rings(s, shm, cfg, 0, chosen, chosenlen, err, errlen))) goto fail;
        *out = finish(shm, keep_tcp(s), s, deliver, lost, cb_ctx);
        return DSM_OK;
    }
    /* Phase 2: every node can; does the RDMA mesh connect? */
    struct dsm_peer_addr raddrs[DSM_MAX_NODES];
    for (int n = 0; n < cfg->nodes; n++) {
        memset(&raddrs[n], 0, sizeof raddrs[n]);
        snprintf(raddrs[n].host, sizeof raddrs[n].host, "%s", s->rec[n][0].addr);
        raddrs[n].port = s->rec[n][0].port;
    }
    char dev[80];
    snprintf(dev, sizeof dev, "%s", dsm_rdma_prep_device(prep));
    struct dsm_tp *rt = NULL;
    struct dsm_sel_rec me2 = {.phase = 2};
    rc = dsm_rdma_connect(prep, cfg, raddrs, limits, b_deliver, b_lost, b_ctx, &rt, me2.why,
                          sizeof me2.why);
    me2.ok = rc == DSM_OK;
    if (me2.ok) snprintf(me2.why, sizeof me2.why, "connected");
    rc = exchange(s, cfg, &me2, err, errlen);
    if (rc) {
        if (rt) rt->ops->destroy(rt);
        goto fail;
    }
    no = first_no(s, cfg->nodes, 1);
    if (no >= 0) {
        if (rt) rt->ops->destroy(rt);
        if (force) {
            snprintf(err, errlen, "DSM_TRANSPORT=rdma, but node %d could not connect over RDMA: %s",
                     no, s->rec[no][1].why);
            rc = DSM_ETRANSPORT;
            goto fail;
        }
        snprintf(chosen, chosenlen, "tcp (auto: node %d could not connect over RDMA: %s)", no,
                 s->rec[no][1].why);
        if (shm && (rc = attach_rings(s, shm, cfg, 0, chosen, chosenlen, err, errlen))) goto fail;
        *out = finish(shm, keep_tcp(s), s, deliver, lost, cb_ctx);
        return DSM_OK;
    }
    if (s->head) {
        /* Nobody runs the runtime over TCP once everybody said RDMA works. */
        rt->ops->destroy(rt);
        snprintf(err, errlen,
                 "choosing the transport: node %u sent %s over TCP after agreeing "
                 "on RDMA — a ufdsm bug, please report it",
                 s->head->h.src, dsm_wire_type_name(s->head->h.type));
        rc = DSM_EHANDSHAKE;
        goto fail;
    }
    /* Every node has every record: TCP has nothing left to carry. Its peers closing now is
     * expected (closing transports report nothing). */
    s->selecting = 0;
    s->lost = NULL;
    s->tcp_ops->destroy(s->tcp);
    snprintf(chosen, chosenlen,
             "rdma (%s: every node has an active RDMA port, all connected; "
             "here %s)",
             force ? "requested" : "auto", dev);
    if (shm && (rc = attach_rings(s, shm, cfg, 0, chosen, chosenlen, err, errlen))) {
        rt->ops->destroy(rt);
        dsm_shm_free(shm);
        free(s);
        return rc;
    }
    free(s);
    *out = finish(shm, rt, NULL, deliver, lost, cb_ctx);
    return DSM_OK;

fail:
    s->selecting = 0;
    s->lost = NULL;
    s->tcp_ops->destroy(s->tcp);
    free_kept(s);
    free(s);
    dsm_shm_free(shm);
    return rc;
}

/*
 * rdma.c - the RDMA transport: one reliable-connected queue pair per peer (libibverbs,
 * connected with librdmacm), protocol frames as SENDs into pre-posted receive buffers,
 * credit-based flow control, and a completion channel for the service thread.
 *
 * Why it looks like this:
 *   - One frame per SEND, into a receive buffer of header + a whole page. A page reply lands
 *     in registered memory with no copy; deliver() gets it in place and the runtime installs
 *     it with UFFDIO_COPY straight from the buffer (transport.h). One-sided RDMA WRITE into a
 *     landing ring would save nothing on the receive side and would need a second message
 *     (or WRITE_WITH_IMM bookkeeping) to say where the page is.
 *   - The sender copies every frame into a registered send slot. transport.h says send copies
 *     before it returns (the runtime's page may change right after), the source is either a
 *     DSM page or the home store, and registering those (the whole global space) would pin
 *     gigabytes and break RLIMIT_MEMLOCK. A hot 4 KiB memcpy costs 0.03 us (floors.md).
 *   - Flow control by credits in the SEND's immediate data (rdma_logic.h): a burst never
 *     finds the receiver without a posted buffer, so RNR retries never happen, and the wire
 *     format stays the same as TCP's (no header field added).
 *   - poll is the fast path: it polls both CQs without a system call and never sleeps. The
 *     receive CQ is armed (ibv_req_notify_cq) by poll itself, once after each event the
 *     service thread consumed, followed by one more poll of the CQ, so a completion that
 *     arrives between the last poll and the arming is never missed. wait() only blocks in
 *     ppoll on the completion channel, the rdma_cm event channel and the kick eventfd, with
 *     the caller's timeout.
 *   - Registered memory: exactly the receive buffers and send slots (one MR, local write
 *     only: nothing here is remotely accessible), sized to fit RLIMIT_MEMLOCK.
 *
 * Threading (transport.h): send/flush/poll by the token holder; wait by the service thread,
 * which touches only the completion channel, the event channel's fd, the eventfd and the two
 * atomics cq_armed and cm_ready; kick writes the eventfd. deliver and lost run inside poll
 * (lost also inside flush) at points where send/flush may be re-entered; a nested poll only
 * flushes. send may run inside the runtime's SIGBUS handler: it never calls malloc (the
 * backlog is mmap-ed, like TCP's send buffers).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <infiniband/verbs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"
#include "net.h"
#include "rdma.h"
#include "auth.h"
#include "rdma_logic.h"
#include "tp_common.h"
#include "transport.h"
#include "wire.h"

#define HDR DSM_WIRE_HDR_SIZE
/* Receive completions taken per ibv_poll_cq call. */
#define WC_BATCH 32
/* destroy: how long to wait for queued frames (a final BYE) to be acknowledged. */
#define DRAIN_MS 1000
/* poll looks at the rdma_cm event channel at least this often (in calls) even when the
 * service thread did not see it readable: a disconnect must not wait for a quiet moment. */
#define CM_CHECK_EVERY 1024
/* Backlog (frames waiting for a credit or a slot): mapped, doubles as needed. */
#define BL_MIN (64u << 10)
/* Setup: resolve timeouts, and the backoff between connection attempts. */
#define RESOLVE_MS 2000

enum { C_IDLE, C_RETRY, C_ADDR, C_ROUTE, C_CONNECTING, C_ACCEPTING, C_UP };

struct rpeer {
    struct rdma_cm_id *id;
    struct ibv_qp *qp;
    struct dsm_tp_loss loss;          /* tp_common.h */
    char name[DSM_NET_ADDRSTR + 120]; /* "node 1 (10.0.2.15:41234 via rxe0 port 1)" */
    struct dsm_wire_limits lim;
    struct dsm_rdma_credits cr;
    struct dsm_rdma_ring ring;
    uint8_t *rx, *tx; /* depth receive buffers, depth send slots (registered) */
    uint32_t tx_len[DSM_RDMA_DEPTH_MAX];
    int tx_err; /* a send completion failed: reported after the receive side is drained */
    char tx_why[200];
    int disc;             /* rdma_cm said the connection is gone: reported likewise */
    struct dsm_frameq bl; /* backlog: encoded frames that found no credit or slot yet */
    /* setup */
    int state;
    uint64_t retry_at;
    int backoff;
    char last[200];
    struct sockaddr_storage sa;
    /* A dropped attempt's id: destroyed only after its event was acknowledged (rdma_destroy_id
     * waits for that, so destroying it while handling the event would hang). */
    struct rdma_cm_id *zombie;
};

struct rdma {
    struct dsm_tp tp; /* first: the runtime holds a pointer to this */
    struct rpeer *peers;
    struct dsm_job_desc desc;
    struct rdma_event_channel *ec;
    struct rdma_cm_id *listener;
    struct rdma_cm_id *strays[8]; /* refused strangers' ids, destroyed once acknowledged */
    int nstrays;
    struct ibv_context *verbs; /* the listener's device (librdmacm owns it) */
    struct ibv_pd *pd;
    struct ibv_comp_channel *cch;
    struct ibv_cq *scq, *rcq;
    struct ibv_mr *mr;
    uint8_t *mem;
    size_t memlen;
    uint32_t depth;
    char dev[80];  /* "rxe0 port 1" */
    char addr[64]; /* the listener's address */
    uint16_t port;
    int efd;
    _Atomic int cq_armed; /* rcq armed and its event not consumed yet */
    _Atomic int cm_ready; /* the service thread saw the event channel readable */
    unsigned polls;
    int in_poll, losses, closing;
};

struct dsm_rdma_prep {
    struct rdma r;
};

static struct rdma *R(struct dsm_tp *tp)
{
    return (struct rdma *)tp;
}

static int is_dead(const struct rpeer *p)
{
    return dsm_tp_is_dead(&p->loss);
}

/* ---------------------------------------------------------------- losing a peer */

static void kill_peer(struct rdma *t, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void kill_peer(struct rdma *t, int i, const char *fmt, ...)
{
    struct rpeer *p = &t->peers[i];
    va_list ap;
    va_start(ap, fmt);
    int marked = dsm_tp_loss_mark(&p->loss, fmt, ap);
    va_end(ap);
    if (!marked) return;
    /* The peer sees the disconnect; our QP goes to error and flushes its work requests. */
    if (p->id) rdma_disconnect(p->id);
    t->losses++;
}

static struct dsm_tp_loss *loss_of(void *ctx, int i)
{
    return &((struct rdma *)ctx)->peers[i].loss;
}

static void forget(void *ctx, int i)
{
    dsm_frameq_free(&((struct rdma *)ctx)->peers[i].bl);
}

static void report_losses(struct rdma *t)
{
    dsm_tp_report_losses(&t->tp, &t->losses, &t->closing, loss_of, forget, t);
}

/* ---------------------------------------------------------------- posting */

static int post_recv(struct rdma *t, int i, uint32_t k)
{
    struct rpeer *p = &t->peers[i];
    struct ibv_sge sge = {.addr = (uintptr_t)(p->rx + (size_t)k * DSM_RDMA_STRIDE),
                          .length = DSM_RDMA_STRIDE,
                          .lkey = t->mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = (uint64_t)i << 16 | k, .sg_list = &sge, .num_sge = 1};
    struct ibv_recv_wr *bad;
    return ibv_post_recv(p->qp, &wr, &bad);
}

/* Posts every filled, unposted slot of peer i as one chain of SEND_WITH_IMMs; the first
 * carries the credits we owe. */
static void post_sends(struct rdma *t, int i)
{
    struct rpeer *p = &t->peers[i];
    uint32_t n = dsm_rdma_ring_unposted(&p->ring);
    if (!n || is_dead(p)) return;
    struct ibv_send_wr wr[DSM_RDMA_DEPTH_MAX];
    struct ibv_sge sge[DSM_RDMA_DEPTH_MAX];
    for (uint32_t k = 0; k < n; k++) {
        uint32_t slot = (p->ring.posted + k) % p->ring.n;
        sge[k] = (struct ibv_sge){.addr = (uintptr_t)(p->tx + (size_t)slot * DSM_RDMA_STRIDE),
                                  .length = p->tx_len[slot],
                                  .lkey = t->mr->lkey};
        wr[k] = (struct ibv_send_wr){.wr_id = (uint64_t)i << 16 | slot,
                                     .next = k + 1 < n ? &wr[k + 1] : NULL,
                                     .sg_list = &sge[k],
                                     .num_sge = p->tx_len[slot] ? 1 : 0,
                                     .opcode = IBV_WR_SEND_WITH_IMM,
                                     .send_flags = IBV_SEND_SIGNALED,
                                     .imm_data = 0};
    }
    wr[0].imm_data = htonl(dsm_rdma_credits_piggyback(&p->cr));
    struct ibv_send_wr *bad = NULL;
    int e = ibv_post_send(p->qp, wr, &bad);
    if (e) {
        kill_peer(t, i, "sending to %s over %s failed: ibv_post_send: %s", p->name, t->dev,
                  strerror(e));
        return;
    }
    p->ring.posted += n;
}

/* Copies a frame into the next send slot (the caller checked a slot and a credit exist). */
static void fill_slot(struct rpeer *p, const void *hdr_wire, const struct dsm_wire_hdr *h,
                      const void *payload)
{
    int slot = dsm_rdma_ring_fill(&p->ring);
    uint8_t *s = p->tx + (size_t)slot * DSM_RDMA_STRIDE;
    if (hdr_wire)
        memcpy(s, hdr_wire, HDR + h->len); /* from the backlog: already encoded */
    else {
        dsm_wire_encode(h, s);
        if (h->len && payload) memcpy(s + HDR, payload, h->len);
    }
    p->tx_len[slot] = HDR + h->len;
    dsm_rdma_credits_take(&p->cr);
}

static int can_fill(const struct rpeer *p)
{
    return p->ring.filled - p->ring.done < p->ring.n && dsm_rdma_credits_can_data(&p->cr);
}

static void *map_anon(size_t len)
{
    void *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return b == MAP_FAILED ? NULL : b;
}

/* Moves backlog frames into slots while credits and slots last. */
static void bl_drain(struct rpeer *p)
{
    while (dsm_frameq_len(&p->bl) && can_fill(p)) {
        struct dsm_wire_hdr h;
        dsm_wire_decode(p->bl.buf + p->bl.head, dsm_frameq_len(&p->bl), &h);
        fill_slot(p, p->bl.buf + p->bl.head, &h, NULL);
        dsm_frameq_consume(&p->bl, HDR + h.len);
    }
}

/* Takes send completions: frees slots, records failures. */
static void reap_sends(struct rdma *t)
{
    struct ibv_wc wc[WC_BATCH];
    int n;
    while ((n = ibv_poll_cq(t->scq, WC_BATCH, wc)) > 0) {
        for (int k = 0; k < n; k++) {
            int i = (int)(wc[k].wr_id >> 16);
            uint32_t slot = (uint32_t)(wc[k].wr_id & 0xffff);
            if (i < 0 || i >= t->tp.nodes) continue;
            struct rpeer *p = &t->peers[i];
            if (!p->qp || wc[k].qp_num != p->qp->qp_num || is_dead(p)) continue;
            if (wc[k].status != IBV_WC_SUCCESS) {
                if (!p->tx_err)
                    snprintf(p->tx_why, sizeof p->tx_why, "%s (status %d)",
                             ibv_wc_status_str(wc[k].status), wc[k].status);
                p->tx_err = 1;
                continue;
            }
            if (dsm_rdma_ring_complete(&p->ring, slot))
                kill_peer(t, i, "the queue pair to %s over %s completed send slot %u out of order",
                          p->name, t->dev, slot);
        }
    }
    if (n < 0)
        for (int i = 0; i < t->tp.nodes; i++)
            if (t->peers[i].qp)
                kill_peer(t, i, "lost %s: polling the send completion queue of %s failed",
                          t->peers[i].name, t->dev);
}

/* One explicit credit message for every peer that owes many and has nothing to carry them. */
static void send_credits(struct rdma *t, int i)
{
    struct rpeer *p = &t->peers[i];
    if (!dsm_rdma_credits_want_msg(&p->cr) || dsm_rdma_ring_unposted(&p->ring)) return;
    if (p->ring.filled - p->ring.done >= p->ring.n) return; /* next time: a slot frees soon */
    int slot = dsm_rdma_ring_fill(&p->ring);
    p->tx_len[slot] = 0;
    dsm_rdma_credits_take(&p->cr);
}

static void flush_all(struct rdma *t)
{
    reap_sends(t);
    for (int i = 0; i < t->tp.nodes; i++) {
        struct rpeer *p = &t->peers[i];
        if (!p->qp || is_dead(p) || p->tx_err) continue;
        bl_drain(p);
        send_credits(t, i);
        post_sends(t, i);
    }
}

static void rdma_flush(struct dsm_tp *tp)
{
    struct rdma *t = R(tp);
    flush_all(t);
    report_losses(t);
}

static int rdma_send(struct dsm_tp *tp, int dst, const struct dsm_wire_hdr *h, const void *payload)
{
    struct rdma *t = R(tp);
    if (dst < 0 || dst >= tp->nodes || dst == tp->rank) return -1;
    struct rpeer *p = &t->peers[dst];
    if (is_dead(p) || p->tx_err || !p->qp) return -1;
    if (h->len > DSM_WIRE_MAX_PAYLOAD) return -1; /* a runtime bug: never on the wire */
    if (!dsm_frameq_len(&p->bl) && can_fill(p)) {
        fill_slot(p, NULL, h, payload);
    } else if (dsm_frameq_push(&p->bl, h, payload, BL_MIN)) {
        kill_peer(t, dst, "lost %s: out of memory queueing %zu bytes for it", p->name,
                  dsm_frameq_len(&p->bl) + HDR + h->len);
        return -1;
    }
    tp->cnt.msgs_sent++;
    tp->cnt.bytes_sent += HDR + h->len;
    return 0;
}

/* ---------------------------------------------------------------- receiving */

static void on_cm_event(struct rdma *t, struct rdma_cm_event *ev);

static void cm_drain(struct rdma *t)
{
    atomic_store_explicit(&t->cm_ready, 0, memory_order_relaxed);
    struct rdma_cm_event *ev;
    while (rdma_get_cm_event(t->ec, &ev) == 0) {
        on_cm_event(t, ev);
        rdma_ack_cm_event(ev);
    }
}

static int on_recv(struct rdma *t, const struct ibv_wc *wc)
{
    int i = (int)(wc->wr_id >> 16);
    uint32_t k = (uint32_t)(wc->wr_id & 0xffff);
    if (i < 0 || i >= t->tp.nodes || k >= t->depth) return 0;
    struct rpeer *p = &t->peers[i];
    if (!p->qp || wc->qp_num != p->qp->qp_num || is_dead(p)) return 0;
    if (wc->status != IBV_WC_SUCCESS) {
        kill_peer(t, i, "lost %s: receiving over %s failed: %s (status %d)", p->name, t->dev,
                  ibv_wc_status_str(wc->status), wc->status);
        return 0;
    }
    if (wc->opcode != IBV_WC_RECV || !(wc->wc_flags & IBV_WC_WITH_IMM)) {
        kill_peer(t, i, "%s sent something that is not a ufdsm frame (opcode %d, flags 0x%x)",
                  p->name, wc->opcode, wc->wc_flags);
        return 0;
    }
    uint32_t imm = ntohl(wc->imm_data);
    if (dsm_rdma_credits_returned(&p->cr, imm)) {
        kill_peer(t, i,
                  "%s returned %u credits but only %u of its buffers were in use — a "
                  "corrupt peer; closing the connection",
                  p->name, imm, p->cr.depth - p->cr.avail);
        return 0;
    }
    int n = 0;
    if (wc->byte_len) {
        const uint8_t *f = p->rx + (size_t)k * DSM_RDMA_STRIDE;
        struct dsm_wire_hdr h;
        char why[256];
        if (dsm_rdma_frame_check(f, wc->byte_len, &p->lim, &h, why, sizeof why) != DSM_WIRE_OK) {
            kill_peer(t, i, "%s sent a corrupt frame: %s — closing the connection", p->name, why);
            return 0;
        }
        t->tp.cnt.msgs_recv++;
        t->tp.cnt.bytes_recv += wc->byte_len;
        /* In place: the buffer is posted again only after deliver returned. */
        t->tp.deliver(t->tp.cb_ctx, &h, h.len ? f + HDR : NULL);
        n = 1;
    }
    if (is_dead(p)) return n;
    int e = post_recv(t, i, k);
    if (e)
        kill_peer(t, i, "lost %s: re-posting a receive buffer on %s failed: %s", p->name, t->dev,
                  strerror(e));
    else
        dsm_rdma_credits_consumed(&p->cr);
    return n;
}

static int rdma_poll(struct dsm_tp *tp)
{
    struct rdma *t = R(tp);
    if (t->in_poll) { /* from inside deliver: the outer poll receives */
        rdma_flush(tp);
        return 0;
    }
    t->in_poll = 1;
    flush_all(t); /* replies queued since the last call leave first */
    int delivered = 0, rearmed = 0;
    for (;;) {
        struct ibv_wc wc[WC_BATCH];
        int n = ibv_poll_cq(t->rcq, WC_BATCH, wc);
        if (n < 0) {
            for (int i = 0; i < tp->nodes; i++)
                if (t->peers[i].qp)
                    kill_peer(t, i, "lost %s: polling the receive completion queue of %s failed",
                              t->peers[i].name, t->dev);
            break;
        }
        for (int k = 0; k < n; k++) delivered += on_recv(t, &wc[k]);
        if (n == WC_BATCH) continue;
        /* Empty. If the service thread consumed the last event, arm again and look once
         * more: a completion that came in between raised no event. */
        if (rearmed || atomic_load_explicit(&t->cq_armed, memory_order_acquire)) break;
        if (ibv_req_notify_cq(t->rcq, 0) == 0)
            atomic_store_explicit(&t->cq_armed, 1, memory_order_release);
        rearmed = 1;
    }
    if (atomic_load_explicit(&t->cm_ready, memory_order_relaxed) ||
        ++t->polls % CM_CHECK_EVERY == 0)
        cm_drain(t);
    /* Send failures and disconnects are reported only now that everything the peer sent
     * before (an ABORT naming its reason) has been delivered. */
    for (int i = 0; i < tp->nodes; i++) {
        struct rpeer *p = &t->peers[i];
        if (!p->qp || is_dead(p)) continue;
        if (p->tx_err)
            kill_peer(t, i, "lost %s: sending over %s failed: %s", p->name, t->dev, p->tx_why);
        else if (p->disc)
            kill_peer(t, i, "%s closed the connection", p->name);
    }
    report_losses(t);
    flush_all(t); /* what deliver queued goes out now */
    report_losses(t);
    t->in_poll = 0;
    return delivered;
}

/* ---------------------------------------------------------------- service wait */

static int rdma_wait(struct dsm_tp *tp, int arm, long timeout_us)
{
    struct rdma *t = R(tp);
    struct pollfd pf[4] = {{.fd = t->efd, .events = POLLIN},
                           {.fd = t->ec->fd, .events = POLLIN},
                           {.fd = arm ? t->cch->fd : -1, .events = POLLIN},
                           {.fd = arm ? tp->wake_fd : -1, .events = POLLIN}};
    struct timespec ts, *tsp = NULL;
    if (timeout_us >= 0) {
        ts.tv_sec = timeout_us / 1000000;
        ts.tv_nsec = (timeout_us % 1000000) * 1000;
        tsp = &ts;
    }
    int n = ppoll(pf, 4, tsp, NULL);
    if (n <= 0) return 0;
    int fired = pf[3].revents != 0; /* drained by its owner (shm.c) */
    if (pf[0].revents) {
        uint64_t v;
        ssize_t r = read(t->efd, &v, sizeof v); /* non-blocking: drains the count */
        (void)r;
    }
    if (pf[1].revents) {
        atomic_store_explicit(&t->cm_ready, 1, memory_order_relaxed);
        fired = 1;
    }
    if (pf[2].revents) {
        struct ibv_cq *cq;
        void *ctx;
        if (ibv_get_cq_event(t->cch, &cq, &ctx) == 0) {
            ibv_ack_cq_events(cq, 1);
            atomic_store_explicit(&t->cq_armed, 0, memory_order_release);
            fired = 1;
        }
    }
    return fired;
}

static void rdma_kick(struct dsm_tp *tp)
{
    int saved = errno; /* may run in a signal handler */
    uint64_t one = 1;
    ssize_t w = write(R(tp)->efd, &one, sizeof one);
    (void)w;
    errno = saved;
}

/* ---------------------------------------------------------------- teardown */

static int tx_pending(struct rdma *t)
{
    for (int i = 0; i < t->tp.nodes; i++) {
        struct rpeer *p = &t->peers[i];
        if (!p->qp || is_dead(p) || p->tx_err) continue;
        if (dsm_frameq_len(&p->bl) || p->ring.filled != p->ring.done) return 1;
    }
    return 0;
}

static void free_rdma(struct rdma *t)
{
    if (t->peers) {
        for (int i = 0; i < t->tp.nodes; i++) {
            struct rpeer *p = &t->peers[i];
            if (p->id) {
                if (p->qp) rdma_destroy_qp(p->id);
                rdma_destroy_id(p->id);
            }
            p->id = NULL;
            p->qp = NULL;
            if (p->zombie) rdma_destroy_id(p->zombie);
            p->zombie = NULL;
            dsm_frameq_free(&p->bl);
        }
    }
    while (t->nstrays > 0) rdma_destroy_id(t->strays[--t->nstrays]);
    if (t->listener) rdma_destroy_id(t->listener);
    if (t->mr) ibv_dereg_mr(t->mr);
    if (t->scq) ibv_destroy_cq(t->scq);
    if (t->rcq) ibv_destroy_cq(t->rcq);
    if (t->cch) ibv_destroy_comp_channel(t->cch);
    if (t->pd) ibv_dealloc_pd(t->pd);
    if (t->ec) rdma_destroy_event_channel(t->ec);
    if (t->mem) munmap(t->mem, t->memlen);
    if (t->efd >= 0) close(t->efd);
    free(t->peers);
    free(t);
}

static void rdma_destroy(struct dsm_tp *tp)
{
    struct rdma *t = R(tp);
    t->closing = 1; /* peers going away from here on is expected: no lost() */
    uint64_t deadline = dsm_net_now_ms() + DRAIN_MS;
    for (;;) {
        rdma_flush(tp);
        if (!tx_pending(t) || dsm_net_now_ms() >= deadline) break;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < tp->nodes; i++)
        if (t->peers[i].id && !is_dead(&t->peers[i])) rdma_disconnect(t->peers[i].id);
    /* Events for our ids must be acknowledged before the ids can be destroyed. */
    struct rdma_cm_event *ev;
    while (rdma_get_cm_event(t->ec, &ev) == 0) rdma_ack_cm_event(ev);
    free_rdma(t);
}

static const struct dsm_tp_ops rdma_ops = {
    .name = "rdma",
    .send = rdma_send,
    .flush = rdma_flush,
    .poll = rdma_poll,
    .wait = rdma_wait,
    .kick = rdma_kick,
    .destroy = rdma_destroy,
};

/* ---------------------------------------------------------------- rdma_cm events */

static struct rpeer *peer_of(struct rdma *t, struct rdma_cm_id *id, int *idx)
{
    for (int i = 0; i < t->tp.nodes; i++)
        if (t->peers[i].id == id) {
            *idx = i;
            return &t->peers[i];
        }
    return NULL;
}

/* After setup: only disconnects and device trouble matter. */
static void on_cm_event(struct rdma *t, struct rdma_cm_event *ev)
{
    int i;
    struct rpeer *p = peer_of(t, ev->id, &i);
    switch (ev->event) {
    case RDMA_CM_EVENT_DISCONNECTED:
        if (p && !is_dead(p)) p->disc = 1;
        break;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
    case RDMA_CM_EVENT_ADDR_CHANGE:
        if (p) kill_peer(t, i, "lost %s: %s on %s", p->name, rdma_event_str(ev->event), t->dev);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- setup */

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* The IPv4 address of the netdev behind GID `gi` of dev/port, for nodes whose table address
 * is loopback (rdma_cm cannot use lo). 0, or -1. */
static int netdev_addr(const char *dev, int port, char *out, size_t outlen)
{
    for (int gi = 0; gi < 16; gi++) {
        char path[256], ifname[IF_NAMESIZE + 2] = "";
        snprintf(path, sizeof path, "/sys/class/infiniband/%s/ports/%d/gid_attrs/ndevs/%d", dev,
                 port, gi);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        char *ok = fgets(ifname, sizeof ifname, f);
        fclose(f);
        if (!ok) continue;
        ifname[strcspn(ifname, "\n")] = 0;
        struct ifaddrs *ifa, *a;
        if (getifaddrs(&ifa)) return -1;
        int found = -1;
        for (a = ifa; a && found; a = a->ifa_next)
            if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET && !strcmp(a->ifa_name, ifname))
                found = inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, out,
                                  (socklen_t)outlen)
                            ? 0
                            : -1;
        freeifaddrs(ifa);
        if (!found) return 0;
    }
    return -1;
}

/* Finds the first port that is ACTIVE with a non-zero GID. 0 with dev/port, or -1 with why
 * naming what is missing (no device, every port down, no GID). */
static int find_port(char *dev, size_t devlen, int *port, char *why, size_t whylen)
{
    int num = 0;
    struct ibv_device **list = ibv_get_device_list(&num);
    if (!list || num == 0) {
        int e = errno;
        if (list) ibv_free_device_list(list);
        snprintf(why, whylen,
                 "no RDMA device (%s) — load the device's driver, or for soft-RoCE: modprobe "
                 "rdma_rxe && rdma link add rxe0 type rxe netdev eth0",
                 list || e == ENOSYS ? "none in /sys/class/infiniband" : strerror(e));
        return -1;
    }
    char seen[400] = "";
    size_t m = 0;
    int rc = -1;
    for (int d = 0; d < num && rc; d++) {
        const char *name = ibv_get_device_name(list[d]);
        struct ibv_context *ctx = ibv_open_device(list[d]);
        struct ibv_device_attr da;
        if (!ctx || ibv_query_device(ctx, &da)) {
            m += (size_t)snprintf(seen + m, m < sizeof seen ? sizeof seen - m : 0,
                                  "%s%s: cannot be opened (%s)", m ? "; " : "", name,
                                  strerror(errno));
            if (ctx) ibv_close_device(ctx);
            continue;
        }
        for (int pn = 1; pn <= da.phys_port_cnt && rc; pn++) {
            struct ibv_port_attr pa;
            const char *st = NULL;
            if (ibv_query_port(ctx, (uint8_t)pn, &pa))
                st = "cannot be queried";
            else if (pa.state != IBV_PORT_ACTIVE)
                st = pa.state == IBV_PORT_DOWN ? "is DOWN (is its netdev up?)" : "is not ACTIVE";
            else {
                union ibv_gid gid;
                int have = 0;
                for (int gi = 0; gi < pa.gid_tbl_len && gi < 16 && !have; gi++) {
                    static const uint8_t zero[16];
                    if (!ibv_query_gid(ctx, (uint8_t)pn, gi, &gid) && memcmp(gid.raw, zero, 16))
                        have = 1;
                }
                if (!have)
                    st = "has no usable GID (does its netdev have an IP address?)";
                else {
                    snprintf(dev, devlen, "%s", name);
                    *port = pn;
                    rc = 0;
                }
            }
            if (st)
                m += (size_t)snprintf(seen + m, m < sizeof seen ? sizeof seen - m : 0,
                                      "%s%s port %d %s", m ? "; " : "", name, pn, st);
        }
        ibv_close_device(ctx);
    }
    ibv_free_device_list(list);
    if (rc) snprintf(why, whylen, "no usable RDMA port: %s", seen);
    return rc;
}

void dsm_rdma_prep_free(struct dsm_rdma_prep *prep)
{
    if (prep) free_rdma(&prep->r);
}

const char *dsm_rdma_prep_device(const struct dsm_rdma_prep *prep)
{
    return prep->r.dev;
}

int dsm_rdma_prepare(const struct dsm_boot_cfg *cfg, const struct dsm_peer_addr *self,
                     struct dsm_rdma_prep **prepp, char *addr, uint16_t *portp, char *why,
                     size_t whylen)
{
    *prepp = NULL;
    char dev[64];
    int pn;
    if (find_port(dev, sizeof dev, &pn, why, whylen)) return DSM_ETRANSPORT;

    /* Listen where the peers reach us: our bootstrap address, unless that is loopback
     * (single-host runs), which rdma_cm cannot use: then the address of the port's netdev. */
    struct sockaddr_storage ss;
    socklen_t sl;
    char host[64];
    snprintf(host, sizeof host, "%s", self->host);
    if (dsm_net_numeric(host, 0, &ss, &sl))
        return fail(why, whylen, DSM_EINVAL, "this node's address '%s' is not numeric", host);
    if (dsm_net_is_loopback((struct sockaddr *)&ss)) {
        if (netdev_addr(dev, pn, host, sizeof host))
            return fail(why, whylen, DSM_ETRANSPORT,
                        "this node's address is loopback (%s), which rdma_cm cannot use, and %s "
                        "port %d has no IPv4 address on its netdev to use instead — give the "
                        "netdev an address, or start the nodes on a non-loopback address",
                        self->host, dev, pn);
        dsm_net_numeric(host, 0, &ss, &sl);
    }

    uint64_t need = 0, memlock = UINT64_MAX;
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        memlock = (uint64_t)rl.rlim_cur;
    uint32_t depth = dsm_rdma_depth(memlock, cfg->nodes - 1, &need);
    if (!depth)
        return fail(why, whylen, DSM_ETRANSPORT,
                    "RLIMIT_MEMLOCK (ulimit -l) is %llu KiB, too small to register the RDMA "
                    "buffers for %d peers — raise it to at least %llu KiB (ulimit -l, or "
                    "memlock in /etc/security/limits.conf)",
                    (unsigned long long)(memlock >> 10), cfg->nodes - 1,
                    (unsigned long long)(need >> 10));

    struct dsm_rdma_prep *prep = calloc(1, sizeof *prep);
    if (!prep) return fail(why, whylen, DSM_ENOMEM, "out of memory");
    struct rdma *t = &prep->r;
    t->efd = -1;
    t->depth = depth;
    t->desc = cfg->desc;
    t->tp.nodes = cfg->nodes;
    t->tp.rank = cfg->rank;
    t->tp.wake_fd = -1;
    t->peers = calloc((size_t)cfg->nodes, sizeof *t->peers);
    int rc = DSM_ETRANSPORT;
    if (!t->peers) {
        rc = fail(why, whylen, DSM_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(t->dev, sizeof t->dev, "%s port %d", dev, pn);
    t->ec = rdma_create_event_channel();
    if (!t->ec) {
        fail(why, whylen, 0,
             "rdma_create_event_channel: %s — is rdma_ucm loaded (modprobe "
             "rdma_ucm) and /dev/infiniband/rdma_cm accessible?",
             strerror(errno));
        goto out;
    }
    if (rdma_create_id(t->ec, &t->listener, NULL, RDMA_PS_TCP)) {
        fail(why, whylen, 0, "rdma_create_id: %s", strerror(errno));
        goto out;
    }
    dsm_net_set_port(&ss, 0);
    if (rdma_bind_addr(t->listener, (struct sockaddr *)&ss) || !t->listener->verbs) {
        fail(why, whylen, 0, "address %s is not on an RDMA device (rdma_bind_addr: %s)", host,
             t->listener->verbs ? strerror(errno) : "bound to no device");
        goto out;
    }
    t->verbs = t->listener->verbs;
    snprintf(t->dev, sizeof t->dev, "%s port %u", ibv_get_device_name(t->verbs->device),
             t->listener->port_num);
    struct ibv_port_attr pa;
    if (ibv_query_port(t->verbs, t->listener->port_num, &pa) || pa.state != IBV_PORT_ACTIVE) {
        fail(why, whylen, 0, "%s (where %s lives) is not ACTIVE", t->dev, host);
        goto out;
    }
    if (rdma_listen(t->listener, 2 * DSM_MAX_NODES)) {
        fail(why, whylen, 0, "rdma_listen on %s (%s): %s", host, t->dev, strerror(errno));
        goto out;
    }
    int fl = fcntl(t->ec->fd, F_GETFL);
    if (fl < 0 || fcntl(t->ec->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        fail(why, whylen, 0, "the rdma_cm event channel: %s", strerror(errno));
        goto out;
    }

    /* Buffers: for every peer, depth receive buffers then depth send slots. */
    int peers = cfg->nodes - 1;
    t->memlen = 2 * (size_t)peers * depth * DSM_RDMA_STRIDE;
    t->mem = map_anon(t->memlen);
    t->pd = ibv_alloc_pd(t->verbs);
    t->cch = ibv_create_comp_channel(t->verbs);
    /* Receive CQ: every posted buffer, twice (a retried connection's flushed requests). */
    int rcqe = 2 * peers * (int)depth + 64, scqe = 2 * peers * (int)depth + 64;
    if (t->cch) t->rcq = ibv_create_cq(t->verbs, rcqe, NULL, t->cch, 0);
    t->scq = ibv_create_cq(t->verbs, scqe, NULL, NULL, 0);
    if (!t->mem || !t->pd || !t->cch || !t->rcq || !t->scq) {
        fail(why, whylen, 0, "cannot create %s on %s: %s",
             !t->mem  ? "the buffers"
             : !t->pd ? "a protection domain"
                      : "completion queues",
             t->dev, strerror(errno));
        goto out;
    }
    t->mr = ibv_reg_mr(t->pd, t->mem, t->memlen, IBV_ACCESS_LOCAL_WRITE);
    if (!t->mr) {
        int e = errno;
        fail(why, whylen, 0, "registering %zu KiB of buffers on %s failed: %s%s", t->memlen >> 10,
             t->dev, strerror(e),
             e == ENOMEM || e == EPERM
                 ? " — RLIMIT_MEMLOCK (ulimit -l) is too small: raise it (memlock in "
                   "/etc/security/limits.conf)"
                 : "");
        goto out;
    }
    fl = fcntl(t->cch->fd, F_GETFL);
    t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fl < 0 || fcntl(t->cch->fd, F_SETFL, fl | O_NONBLOCK) < 0 || t->efd < 0) {
        fail(why, whylen, 0, "completion channel / eventfd: %s", strerror(errno));
        goto out;
    }
    snprintf(t->addr, sizeof t->addr, "%s", host);
    t->port = ntohs(rdma_get_src_port(t->listener));
    snprintf(addr, 64, "%s", host);
    *portp = t->port;
    *prepp = prep;
    return DSM_OK;
out:
    free_rdma(t);
    return rc;
}

static void set_conn_param(struct rdma_conn_param *cp, const uint8_t *priv)
{
    memset(cp, 0, sizeof *cp);
    cp->private_data = priv;
    cp->private_data_len = DSM_RDMA_PRIV_SIZE;
    cp->retry_count = 7;
    /* Credits mean a receiver is never without a posted buffer; a few RNR retries cover a
     * bug without hanging forever on one. */
    cp->rnr_retry_count = 3;
}

static int make_qp(struct rdma *t, int i, struct rdma_cm_id *id, char *err, size_t errlen)
{
    struct rpeer *p = &t->peers[i];
    if (id->verbs != t->verbs)
        return fail(err, errlen, DSM_ETRANSPORT,
                    "%s is reached through another RDMA device than %s, where this node listens "
                    "— use one RDMA network for the whole job",
                    p->name, t->dev);
    struct ibv_qp_init_attr qa = {.send_cq = t->scq,
                                  .recv_cq = t->rcq,
                                  .cap = {.max_send_wr = t->depth,
                                          .max_recv_wr = t->depth,
                                          .max_send_sge = 1,
                                          .max_recv_sge = 1},
                                  .qp_type = IBV_QPT_RC,
                                  .sq_sig_all = 0};
    if (rdma_create_qp(id, t->pd, &qa))
        return fail(err, errlen, DSM_ETRANSPORT, "creating the queue pair for %s on %s: %s",
                    p->name, t->dev, strerror(errno));
    p->id = id;
    p->qp = id->qp;
    for (uint32_t k = 0; k < t->depth; k++) {
        int e = post_recv(t, i, k);
        if (e)
            return fail(err, errlen, DSM_ETRANSPORT, "posting receive buffers for %s on %s: %s",
                        p->name, t->dev, strerror(e));
    }
    dsm_rdma_ring_init(&p->ring, t->depth);
    return DSM_OK;
}

static void drop_attempt(struct rpeer *p, uint64_t now, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An outgoing attempt failed: note why, destroy it, try again after a backoff. */
static void drop_attempt(struct rpeer *p, uint64_t now, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->last, sizeof p->last, fmt, ap);
    va_end(ap);
    if (p->id && p->qp) rdma_destroy_qp(p->id);
    p->zombie = p->id;
    p->id = NULL;
    p->qp = NULL;
    p->state = C_RETRY;
    p->retry_at = now + (uint64_t)p->backoff;
    p->backoff = p->backoff * 2 > 200 ? 200 : p->backoff * 2;
}

static void bury(struct rdma *t)
{
    for (int i = 0; i < t->tp.nodes; i++)
        if (t->peers[i].zombie) {
            rdma_destroy_id(t->peers[i].zombie);
            t->peers[i].zombie = NULL;
        }
    while (t->nstrays > 0) rdma_destroy_id(t->strays[--t->nstrays]);
}

/* A refused stranger's id: destroyed by bury, after its event has been acknowledged (an id
 * cannot be destroyed while an event of it is held). The setup loop buries after every
 * event, so one slot is ever in use. */
static void stray(struct rdma *t, struct rdma_cm_id *id)
{
    if (t->nstrays < (int)(sizeof t->strays / sizeof t->strays[0])) t->strays[t->nstrays++] = id;
}

static int start_attempt(struct rdma *t, int i, uint64_t now)
{
    struct rpeer *p = &t->peers[i];
    struct rdma_cm_id *id;
    if (rdma_create_id(t->ec, &id, NULL, RDMA_PS_TCP)) {
        drop_attempt(p, now, "rdma_create_id: %s", strerror(errno));
        return 0;
    }
    p->id = id;
    struct sockaddr_storage src;
    socklen_t sl;
    dsm_net_numeric(t->addr, 0, &src, &sl);
    if (rdma_resolve_addr(id, (struct sockaddr *)&src, (struct sockaddr *)&p->sa, RESOLVE_MS)) {
        drop_attempt(p, now, "rdma_resolve_addr: %s", strerror(errno));
        return 0;
    }
    p->state = C_ADDR;
    return 0;
}

/* One rdma_cm event during setup. DSM_OK, or an error that ends the setup. */
static int setup_event(struct rdma *t, const struct dsm_boot_cfg *cfg, struct rdma_cm_event *ev,
                       int *done, char *err, size_t errlen)
{
    uint64_t now = dsm_net_now_ms();
    uint8_t priv[DSM_RDMA_PRIV_SIZE];
    dsm_rdma_priv_encode(priv, cfg->rank, t->depth, &cfg->desc);
    struct rdma_conn_param cp;
    int i = -1;
    struct rpeer *p = peer_of(t, ev->id, &i);

    if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
        struct dsm_rdma_priv pr;
        char why[200], from[DSM_NET_ADDRSTR] = "?";
        dsm_net_fmt(rdma_get_peer_addr(ev->id), from, sizeof from);
        /* A connection that cannot prove the job's secret is a stranger's: refused, and the
         * setup carries on for the real nodes (docs/security.md). */
        if (dsm_rdma_priv_verify(ev->param.conn.private_data, ev->param.conn.private_data_len,
                                 cfg->key, cfg->rank, DSM_AUTH_CONNECTOR, why, sizeof why)) {
            rdma_reject(ev->id, NULL, 0);
            stray(t, ev->id);
            dsm_tp_note(cfg, "refused an RDMA connection from %s on %s: %s", from, t->dev, why);
            return DSM_OK;
        }
        if (dsm_rdma_priv_decode(ev->param.conn.private_data, ev->param.conn.private_data_len, &pr,
                                 why, sizeof why)) {
            rdma_reject(ev->id, NULL, 0);
            return fail(err, errlen, DSM_EHANDSHAKE, "an RDMA connection from %s on %s sent %s",
                        from, t->dev, why);
        }
        char who[DSM_NET_ADDRSTR + 40];
        snprintf(who, sizeof who, "node %d (RDMA from %s)", pr.rank, from);
        if (dsm_rdma_priv_compare(&cfg->desc, &pr, who, err, errlen)) {
            rdma_reject(ev->id, NULL, 0);
            return DSM_EHANDSHAKE;
        }
        if (pr.rank <= cfg->rank || pr.rank >= cfg->nodes) {
            rdma_reject(ev->id, NULL, 0);
            return fail(err, errlen, DSM_EHANDSHAKE,
                        "an RDMA connection from %s says it is node %d, but only nodes %d..%d "
                        "connect to node %d — two nodes with the same DSM_RANK?",
                        from, pr.rank, cfg->rank + 1, cfg->nodes - 1, cfg->rank);
        }
        struct rpeer *q = &t->peers[pr.rank];
        if (q->state != C_IDLE) {
            rdma_reject(ev->id, NULL, 0);
            return fail(err, errlen, DSM_EHANDSHAKE,
                        "node %d connected twice over RDMA (again from %s) — two nodes with "
                        "DSM_RANK=%d?",
                        pr.rank, from, pr.rank);
        }
        int rc = make_qp(t, pr.rank, ev->id, err, errlen);
        if (rc) {
            rdma_reject(ev->id, NULL, 0);
            q->id = ev->id; /* destroyed with the rest, after the event is acknowledged */
            return rc;
        }
        dsm_rdma_credits_init(&q->cr, pr.depth, t->depth);
        dsm_rdma_priv_seal(priv, cfg->key, pr.rank, DSM_AUTH_ACCEPTOR);
        set_conn_param(&cp, priv);
        if (rdma_accept(ev->id, &cp))
            return fail(err, errlen, DSM_ETRANSPORT, "accepting %s on %s: %s", q->name, t->dev,
                        strerror(errno));
        q->state = C_ACCEPTING;
        return DSM_OK;
    }
    if (!p) return DSM_OK; /* an event of an attempt already dropped */

    switch (ev->event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED: {
        int rc = make_qp(t, i, ev->id, err, errlen);
        if (rc) return rc;
        if (rdma_resolve_route(ev->id, RESOLVE_MS))
            drop_attempt(p, now, "rdma_resolve_route: %s", strerror(errno));
        else
            p->state = C_ROUTE;
        return DSM_OK;
    }
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        dsm_rdma_priv_seal(priv, cfg->key, i, DSM_AUTH_CONNECTOR);
        set_conn_param(&cp, priv);
        if (rdma_connect(ev->id, &cp))
            drop_attempt(p, now, "rdma_connect: %s", strerror(errno));
        else
            p->state = C_CONNECTING;
        return DSM_OK;
    case RDMA_CM_EVENT_ESTABLISHED:
        if (p->state == C_CONNECTING) {
            struct dsm_rdma_priv pr;
            char why[200];
            if (dsm_rdma_priv_verify(ev->param.conn.private_data, ev->param.conn.private_data_len,
                                     cfg->key, cfg->rank, DSM_AUTH_ACCEPTOR, why, sizeof why))
                return fail(err, errlen, DSM_EHANDSHAKE,
                            "%s answered over RDMA without proof of the job's secret: %s — a "
                            "stranger on that address?",
                            p->name, why);
            if (dsm_rdma_priv_decode(ev->param.conn.private_data, ev->param.conn.private_data_len,
                                     &pr, why, sizeof why))
                return fail(err, errlen, DSM_EHANDSHAKE, "%s answered over RDMA with %s", p->name,
                            why);
            if (dsm_rdma_priv_compare(&cfg->desc, &pr, p->name, err, errlen)) return DSM_EHANDSHAKE;
            if (pr.rank != i)
                return fail(err, errlen, DSM_EHANDSHAKE,
                            "%s answered as node %d over RDMA — the address table is stale (did "
                            "a node restart?)",
                            p->name, pr.rank);
            dsm_rdma_credits_init(&p->cr, pr.depth, t->depth);
        }
        p->state = C_UP;
        (*done)++;
        return DSM_OK;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_REJECTED:
    case RDMA_CM_EVENT_CONNECT_ERROR:
        if (p->state == C_ACCEPTING)
            return fail(err, errlen, DSM_EPEER, "%s went away while connecting over RDMA (%s)",
                        p->name, rdma_event_str(ev->event));
        /* Ours: the peer may not be listening yet, or the fabric is slow. Again, until the
         * deadline, which names the last reason. */
        drop_attempt(p, now, "%s (status %d)", rdma_event_str(ev->event), ev->status);
        return DSM_OK;
    case RDMA_CM_EVENT_DISCONNECTED:
        return fail(err, errlen, DSM_EPEER, "%s disconnected while the RDMA mesh was forming",
                    p->name);
    default:
        return DSM_OK;
    }
}

int dsm_rdma_connect(struct dsm_rdma_prep *prep, const struct dsm_boot_cfg *cfg,
                     const struct dsm_peer_addr *raddrs, const struct dsm_wire_limits *limits,
                     dsm_tp_deliver_fn deliver, dsm_tp_lost_fn lost, void *cb_ctx,
                     struct dsm_tp **out, char *err, size_t errlen)
{
    *out = NULL;
    struct rdma *t = &prep->r;
    int rc = DSM_OK;
    if (!deliver || !limits || limits->nodes != (uint32_t)cfg->nodes || cfg->nodes != t->tp.nodes ||
        cfg->rank != t->tp.rank) {
        rc = fail(err, errlen, DSM_EINVAL, "dsm_rdma_connect: bad configuration");
        goto bad;
    }
    t->tp.ops = &rdma_ops;
    t->tp.deliver = deliver;
    t->tp.lost = lost;
    t->tp.cb_ctx = cb_ctx;
    t->tp.limits = *limits;
    int peers = cfg->nodes - 1;
    for (int i = 0, k = 0; i < cfg->nodes; i++) {
        struct rpeer *p = &t->peers[i];
        p->lim = *limits;
        p->lim.peer = (uint32_t)i;
        p->backoff = 20;
        socklen_t sl;
        if (dsm_net_numeric(raddrs[i].host, raddrs[i].port, &p->sa, &sl) || !raddrs[i].port) {
            rc = fail(err, errlen, DSM_EINVAL,
                      "the RDMA address of node %d ('%.64s', port %u) is not usable", i,
                      raddrs[i].host, raddrs[i].port);
            goto bad;
        }
        char a[DSM_NET_ADDRSTR];
        dsm_net_fmt((struct sockaddr *)&p->sa, a, sizeof a);
        snprintf(p->name, sizeof p->name, "node %d (%s via %s)", i, a, t->dev);
        if (i == cfg->rank) continue;
        p->rx = t->mem + (size_t)k * 2 * t->depth * DSM_RDMA_STRIDE;
        p->tx = p->rx + (size_t)t->depth * DSM_RDMA_STRIDE;
        k++;
        p->state = i < cfg->rank ? C_RETRY : C_IDLE; /* we connect to lower ranks */
    }

    int timeout = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    uint64_t deadline = dsm_net_now_ms() + (uint64_t)timeout;
    int done = 0;
    while (done < peers) {
        uint64_t now = dsm_net_now_ms();
        if (now >= deadline) {
            char secs[32];
            size_t m =
                (size_t)snprintf(err, errlen, "timed out after %s connecting over RDMA (%s):",
                                 dsm_net_secs(timeout, secs, sizeof secs), t->dev);
            for (int i = 0; i < cfg->nodes && m < errlen; i++) {
                struct rpeer *p = &t->peers[i];
                if (i == cfg->rank || p->state == C_UP) continue;
                m += (size_t)snprintf(err + m, errlen - m, " %s: %s;", p->name,
                                      p->last[0]                ? p->last
                                      : p->state == C_IDLE      ? "never connected to us"
                                      : p->state == C_ACCEPTING ? "accepted, not established"
                                                                : "no answer");
            }
            if (m < errlen)
                snprintf(err + m, errlen - m,
                         " — is the RDMA network between the nodes working (rping, ib_send_lat "
                         "-R)?");
            rc = DSM_EPEER;
            goto bad;
        }
        uint64_t wake = deadline;
        for (int i = 0; i < cfg->nodes; i++) {
            struct rpeer *p = &t->peers[i];
            if (p->state != C_RETRY) continue;
            if (p->retry_at <= now) start_attempt(t, i, now);
            bury(t);
            if (p->state == C_RETRY && p->retry_at < wake) wake = p->retry_at;
        }
        struct pollfd pf = {.fd = t->ec->fd, .events = POLLIN};
        int n = poll(&pf, 1, wake > now ? (int)(wake - now) : 0);
        if (n < 0 && errno != EINTR) {
            rc = fail(err, errlen, DSM_ESYS, "poll on the rdma_cm channel: %s", strerror(errno));
            goto bad;
        }
        struct rdma_cm_event *ev;
        while (rdma_get_cm_event(t->ec, &ev) == 0) {
            rc = setup_event(t, cfg, ev, &done, err, errlen);
            rdma_ack_cm_event(ev);
            bury(t);
            if (rc) goto bad;
        }
    }
    /* The mesh is complete: nobody else may connect. */
    rdma_destroy_id(t->listener);
    t->listener = NULL;
    if (ibv_req_notify_cq(t->rcq, 0) == 0) atomic_store(&t->cq_armed, 1);
    *out = &t->tp;
    return DSM_OK;
bad:
    /* Acknowledge what is left so the ids can go. */
    {
        struct rdma_cm_event *ev;
        while (rdma_get_cm_event(t->ec, &ev) == 0) rdma_ack_cm_event(ev);
    }
    for (int i = 0; i < t->tp.nodes; i++)
        if (t->peers[i].id) rdma_disconnect(t->peers[i].id);
    free_rdma(t);
    return rc;
}

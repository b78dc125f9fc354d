/*
 * tcp.c - the TCP transport: a full mesh of connections, driven by io_uring without ever
 * sleeping on the fast path.
 *
 * Why it looks like this: waking a sleeping thread from the other CPU costs 10-25 us, while a
 * busy-polled loopback round trip is ~7 us. So whoever waits for a message polls for it
 * itself. io_uring lets one system call try a non-blocking receive on every peer and push
 * every queued send: RECV and SEND with MSG_DONTWAIT complete inline during
 * io_uring_submit (bytes, or -EAGAIN), without arming a poll or leaving task_work behind.
 *
 * Two rings, because io_uring requests that *do* wait complete through task_work of the thread
 * that submitted them:
 *   - ring A (send / flush / poll): only inline, non-blocking requests, submitted and reaped
 *     within one call. The runtime serialises these calls (its progress token) but they may
 *     come from a different thread each time, which is fine exactly because nothing is ever
 *     left in flight on ring A between calls.
 *   - ring B (wait): the service thread's alone. One-shot POLL_ADDs on the peer sockets and a
 *     READ on an eventfd (written by kick) are left pending there and complete through the
 *     service thread's own task_work when it waits.
 *
 * Threading:
 *   - send, flush, poll: one caller at a time (any thread). deliver and lost are called from
 *     inside poll / flush only at points where ring A is idle, so they may call send and
 *     flush again (replies); a nested poll just flushes.
 *   - wait: the service thread only, concurrently with the above. It reads a peer's fd (fixed
 *     after create) and its `dead` flag (atomic); everything else it touches is its own.
 *   - kick: any thread or signal handler (one write(2) to the eventfd).
 *   - destroy: alone, after the service thread has stopped.
 * A failed connection is shut down (the peer sees the close) but its descriptor is only
 * closed in destroy, so the service thread can never poll a reused descriptor number.
 *
 * Buffers: per peer, a linear receive buffer (RX_CAP) that frames are parsed and delivered
 * from in place, and a growable send buffer that send() appends to; flush writes what the
 * socket takes and keeps the rest, so a send never blocks and never drops.
 *
 * Two details transport.h leaves open: deliver gets payload == NULL when h->len == 0 (the
 * runtime reads NULL as "no data", e.g. a ZERO page, as from its local queue); and
 * dsm_tcp_create owns listen_fd: it is closed before the call returns, success or failure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4; the CMake build defines it anyway */
#endif
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "dsm.h"
#include "net.h"
#include "tp_common.h"
#include "transport.h"
#include "wire.h"

#define HDR       DSM_WIRE_HDR_SIZE
#define MAX_FRAME (DSM_WIRE_HDR_SIZE + DSM_WIRE_MAX_PAYLOAD)
/* 64 page frames: one receive drains a lot of backlog, and 63 peers cost 16 MiB. */
#define RX_CAP (256u << 10)
/* The partial frame left after parsing is shorter than MAX_FRAME, so sliding it down costs at
 * most that much; doing it once the free tail drops below this keeps receives large. */
#define RX_COMPACT_BELOW (64u << 10)
_Static_assert(RX_COMPACT_BELOW >= MAX_FRAME && RX_CAP >= 2 * RX_COMPACT_BELOW,
               "a receive must always have room for a whole frame");
/* A receive that filled the buffer may have left more behind: receive again, this often. */
#define RECV_ROUNDS 8
/* Send buffers start here, double as needed, and are given back once empty above TX_KEEP. */
#define TX_MIN  (64u << 10)
#define TX_KEEP (1u << 20)
/* destroy: how long to keep trying to push out queued bytes (a final BYE). */
#define DRAIN_MS 1000

#define KICK_TAG UINT64_MAX
#define WAKE_TAG (UINT64_MAX - 1)

struct peer {
    int fd;                          /* -1 for this node */
    struct dsm_tp_loss loss;         /* connection failed or closed (tp_common.h) */
    char name[DSM_NET_ADDRSTR + 32]; /* "node 2 (127.0.0.1:40412)" */
    struct dsm_wire_limits lim;      /* the job's limits with peer = this rank */

    uint8_t *rx;
    size_t rx_start, rx_end; /* unparsed bytes */
    size_t rx_asked;         /* length of the RECV in flight */
    int rx_more;             /* the last RECV filled its space: there may be more */
    int rx_eof;

    struct dsm_frameq txq; /* encoded frames not sent yet (tp_common.h) */
    int tx_err;            /* a SEND failed (errno): reported once the receive side is drained */

    int armed; /* ring B has a POLL_ADD pending on fd (service thread only) */
};

struct tcp {
    struct dsm_tp tp; /* first: the runtime holds a pointer to this */
    struct peer *peers;
    struct io_uring ra, rb;
    int ra_ok, rb_ok;
    int efd;
    uint64_t kick_val;
    int kick_pending; /* ring B has the eventfd READ pending */
    int wake_armed;   /* ring B has a POLL_ADD pending on tp.wake_fd */
    int in_poll;
    int losses; /* peers whose loss is pending */
    int closing;
};

static struct tcp *T(struct dsm_tp *tp)
{
    return (struct tcp *)tp;
}

/* ---------------------------------------------------------------- losing a peer */

/* Marks a peer dead and shuts its socket down (the peer sees the close; pending polls on
 * ring B fire). lost() is called later, by report_losses, where re-entry is safe. */
static void kill_peer(struct tcp *t, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void kill_peer(struct tcp *t, int i, const char *fmt, ...)
{
    struct peer *p = &t->peers[i];
    va_list ap;
    va_start(ap, fmt);
    int marked = dsm_tp_loss_mark(&p->loss, fmt, ap);
    va_end(ap);
    if (!marked) return;
    shutdown(p->fd, SHUT_RDWR);
    t->losses++;
}

static struct dsm_tp_loss *loss_of(void *ctx, int i)
{
    return &((struct tcp *)ctx)->peers[i].loss;
}

static void forget(void *ctx, int i)
{
    dsm_frameq_free(&((struct tcp *)ctx)->peers[i].txq);
}

static void report_losses(struct tcp *t)
{
    dsm_tp_report_losses(&t->tp, &t->losses, &t->closing, loss_of, forget, t);
}

static int is_dead(const struct peer *p)
{
    return dsm_tp_is_dead(&p->loss);
}

/* ---------------------------------------------------------------- ring A */

static void rx_make_room(struct peer *p)
{
    if (p->rx_start == p->rx_end) {
        p->rx_start = p->rx_end = 0;
    } else if (RX_CAP - p->rx_end < RX_COMPACT_BELOW) {
        size_t n = p->rx_end - p->rx_start; /* < MAX_FRAME: a partial frame */
        memmove(p->rx, p->rx + p->rx_start, n);
        p->rx_start = 0;
        p->rx_end = n;
    }
}

static void on_send(struct tcp *t, int i, int res)
{
    struct peer *p = &t->peers[i];
    if (is_dead(p)) return;
    if (res > 0) {
        dsm_frameq_consume(&p->txq, (size_t)res);
        /* A burst is over: give its memory back. */
        if (!dsm_frameq_len(&p->txq) && p->txq.cap > TX_KEEP) dsm_frameq_free(&p->txq);
    } else if (res != -EAGAIN && res != -EINTR && res != 0) {
        /* Not reported yet: a peer that closed (EPIPE, reset) may have sent frames before
         * that, an ABORT naming its reason for one. Receiving goes on until they are
         * delivered; poll then reports the close, or this error if the receive side says
         * nothing. Sending stops now. */
        p->tx_err = -res;
        p->txq.head = p->txq.tail = 0;
    }
}

static void on_recv(struct tcp *t, int i, int res)
{
    struct peer *p = &t->peers[i];
    p->rx_more = 0;
    if (is_dead(p)) return;
    if (res > 0) {
        p->rx_end += (size_t)res;
        p->rx_more = (size_t)res == p->rx_asked;
    } else if (res == 0) {
        p->rx_eof = 1; /* reported after the frames before it are delivered */
    } else if (res != -EAGAIN && res != -EINTR) {
        kill_peer(t, i, "lost the connection to %s: %s", p->name, strerror(-res));
    }
}

/*
 * One batch on ring A: a SEND of everything queued for every live peer and, if want_recv, a
 * RECV into the free tail of every peer it marks; one io_uring_submit for all of them. They
 * complete inline, so the CQEs are there when submit returns; should one not be (a kernel
 * that punts), we wait for it here, so that ring A is idle again when this returns.
 */
static void ring_a_batch(struct tcp *t, const uint8_t *want_recv)
{
    struct io_uring *r = &t->ra;
    unsigned n = 0;
    for (int i = 0; i < t->tp.nodes; i++) {
        struct peer *p = &t->peers[i];
        if (p->fd < 0 || is_dead(p)) continue;
        if (dsm_frameq_len(&p->txq) && !p->tx_err) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            /* MSG_NOSIGNAL: a peer that went away must be an error here, not a SIGPIPE. */
            io_uring_prep_send(sqe, p->fd, p->txq.buf + p->txq.head, dsm_frameq_len(&p->txq),
                               MSG_DONTWAIT | MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, (uint64_t)i << 1);
            n++;
        }
        if (want_recv && want_recv[i]) {
            rx_make_room(p);
            p->rx_asked = RX_CAP - p->rx_end;
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            io_uring_prep_recv(sqe, p->fd, p->rx + p->rx_end, p->rx_asked, MSG_DONTWAIT);
            io_uring_sqe_set_data64(sqe, (uint64_t)i << 1 | 1);
            n++;
        }
    }
    if (!n) return;

    unsigned submitted = 0, reaped = 0;
    while (reaped < n) {
        if (submitted < n) {
            int s = io_uring_submit(r);
            if (s > 0)
                submitted += (unsigned)s;
            else if (s < 0 && s != -EINTR && s != -EAGAIN && s != -EBUSY) {
                /* Nothing can be sent or received any more; the runtime must hear it. */
                for (int i = 0; i < t->tp.nodes; i++)
                    if (t->peers[i].fd >= 0)
                        kill_peer(t, i, "lost the connection to %s: io_uring_submit: %s",
                                  t->peers[i].name, strerror(-s));
                return;
            }
        }
        struct io_uring_cqe *cqe;
        int w = io_uring_peek_cqe(r, &cqe);
        if (w == -EAGAIN && submitted == n) w = io_uring_wait_cqe(r, &cqe);
        if (w) continue;
        uint64_t d = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(r, cqe);
        reaped++;
        if (d & 1)
            on_recv(t, (int)(d >> 1), res);
        else
            on_send(t, (int)(d >> 1), res);
    }
}

/* ---------------------------------------------------------------- receiving */

/* Delivers every complete frame of peer i's buffer, in order, each checked first. */
static int parse(struct tcp *t, int i)
{
    struct peer *p = &t->peers[i];
    int n = 0;
    while (!is_dead(p)) {
        size_t avail = p->rx_end - p->rx_start;
        if (avail < HDR) break;
        const uint8_t *f = p->rx + p->rx_start;
        struct dsm_wire_hdr h;
        dsm_wire_decode(f, avail, &h);
        /* Checked as soon as the header is here, so a bad length is caught before we would
         * wait for (or make room for) its payload. */
        char why[256];
        if (dsm_wire_check(&h, &p->lim, why, sizeof why) != DSM_WIRE_OK) {
            kill_peer(t, i, "%s sent a corrupt frame: %s — closing the connection", p->name, why);
            break;
        }
        size_t len = HDR + h.len;
        if (avail < len) break;
        p->rx_start += len;
        t->tp.cnt.msgs_recv++;
        t->tp.cnt.bytes_recv += len;
        /* NULL without a payload, as from the runtime's local queue: it means "no data" to
         * the runtime (a ZERO page), and f + HDR would be the next frame's header. */
        t->tp.deliver(t->tp.cb_ctx, &h, h.len ? f + HDR : NULL);
        n++;
    }
    if (p->rx_eof && !is_dead(p)) {
        size_t left = p->rx_end - p->rx_start;
        if (!left) {
            kill_peer(t, i, "%s closed the connection", p->name);
        } else if (left < HDR) {
            kill_peer(t, i,
                      "%s closed the connection in the middle of a frame (%zu of its %u header "
                      "bytes arrived)",
                      p->name, left, HDR);
        } else {
            struct dsm_wire_hdr h;
            dsm_wire_decode(p->rx + p->rx_start, left, &h);
            kill_peer(t, i,
                      "%s closed the connection in the middle of a %s frame (%zu of %u bytes "
                      "arrived)",
                      p->name, dsm_wire_type_name(h.type), left, HDR + h.len);
        }
    }
    return n;
}

static void tcp_flush(struct dsm_tp *tp)
{
    struct tcp *t = T(tp);
    ring_a_batch(t, NULL);
    report_losses(t);
}

static int tcp_poll(struct dsm_tp *tp)
{
    struct tcp *t = T(tp);
    if (t->in_poll) { /* called from inside deliver: the outer poll receives */
        tcp_flush(tp);
        return 0;
    }
    t->in_poll = 1;
    uint8_t want[DSM_MAX_NODES];
    int delivered = 0, any = 0;
    for (int i = 0; i < tp->nodes; i++)
        any |= (want[i] = t->peers[i].fd >= 0 && !is_dead(&t->peers[i]));
    /* The first batch also flushes: replies queued since the last call leave with it. */
    for (int round = 0; any && round < RECV_ROUNDS; round++) {
        ring_a_batch(t, want);
        any = 0;
        for (int i = 0; i < tp->nodes; i++) {
            if (!want[i]) continue;
            struct peer *p = &t->peers[i];
            delivered += parse(t, i);
            if (p->tx_err && !p->rx_more && !is_dead(p))
                kill_peer(t, i, "lost the connection to %s: sending failed: %s", p->name,
                          strerror(p->tx_err));
            any |= (want[i] = p->rx_more && !is_dead(p));
        }
        report_losses(t);
    }
    /* And ends with one: what deliver queued goes out now, not at the next call. */
    tcp_flush(tp);
    t->in_poll = 0;
    return delivered;
}

/* ---------------------------------------------------------------- sending */

static int tcp_send(struct dsm_tp *tp, int dst, const struct dsm_wire_hdr *h, const void *payload)
{
    struct tcp *t = T(tp);
    if (dst < 0 || dst >= tp->nodes || dst == tp->rank) return -1;
    struct peer *p = &t->peers[dst];
    if (is_dead(p) || p->tx_err) return -1; /* tx_err: lost, reported by the next poll */
    size_t need = HDR + (size_t)h->len;
    if (dsm_frameq_push(&p->txq, h, payload, TX_MIN)) {
        /* Dropping one frame would desynchronise the protocol: the peer is gone for us. */
        kill_peer(t, dst, "lost the connection to %s: out of memory queueing %zu bytes for it",
                  p->name, dsm_frameq_len(&p->txq) + need);
        return -1; /* reported by the next flush or poll, which always follows */
    }
    tp->cnt.msgs_sent++;
    tp->cnt.bytes_sent += need;
    return 0;
}

/* ---------------------------------------------------------------- service wait (ring B) */

static int tcp_wait(struct dsm_tp *tp, int arm, long timeout_us)
{
    struct tcp *t = T(tp);
    struct io_uring *r = &t->rb;
    if (arm) {
        for (int i = 0; i < tp->nodes; i++) {
            struct peer *p = &t->peers[i];
            if (p->fd < 0 || p->armed || is_dead(p)) continue;
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            if (!sqe) break; /* cannot happen: the ring has a slot per peer */
            io_uring_prep_poll_add(sqe, p->fd, POLLIN);
            io_uring_sqe_set_data64(sqe, (uint64_t)i);
            p->armed = 1;
        }
        if (tp->wake_fd >= 0 && !t->wake_armed) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            if (sqe) {
                io_uring_prep_poll_add(sqe, tp->wake_fd, POLLIN);
                io_uring_sqe_set_data64(sqe, WAKE_TAG);
                t->wake_armed = 1;
            }
        }
    }
    if (!t->kick_pending) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(r);
        if (sqe) {
            io_uring_prep_read(sqe, t->efd, &t->kick_val, sizeof t->kick_val, 0);
            io_uring_sqe_set_data64(sqe, KICK_TAG);
            t->kick_pending = 1;
        }
    }
    struct io_uring_cqe *cqe = NULL;
    if (timeout_us < 0) {
        io_uring_submit_and_wait(r, 1);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_us / 1000000,
                                       .tv_nsec = (timeout_us % 1000000) * 1000};
        io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
    }
    /* Take everything that is there: a kick and a poll together still mean "look". */
    int fired = 0;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(r, head, cqe)
    {
        uint64_t d = io_uring_cqe_get_data64(cqe);
        seen++;
        if (d == KICK_TAG) {
            t->kick_pending = 0; /* the READ consumed the count; re-posted next time */
        } else if (d == WAKE_TAG) {
            t->wake_armed = 0;
            fired = 1;
        } else if (d < (uint64_t)tp->nodes) {
            t->peers[d].armed = 0;
            if (!is_dead(&t->peers[d])) fired = 1;
        } /* else: liburing's own timeout entry on kernels without EXT_ARG */
    }
    io_uring_cq_advance(r, seen);
    return fired;
}

static void tcp_kick(struct dsm_tp *tp)
{
    int saved = errno; /* may run in a signal handler */
    uint64_t one = 1;
    ssize_t w = write(T(tp)->efd, &one, sizeof one);
    (void)w; /* the only failure, a counter at 2^64-2, still leaves it readable */
    errno = saved;
}

/* ---------------------------------------------------------------- teardown */

static int tx_pending(struct tcp *t)
{
    for (int i = 0; i < t->tp.nodes; i++)
        if (t->peers[i].fd >= 0 && !is_dead(&t->peers[i]) && !t->peers[i].tx_err &&
            dsm_frameq_len(&t->peers[i].txq))
            return 1;
    return 0;
}

static void free_tcp(struct tcp *t)
{
    if (t->rb_ok) io_uring_queue_exit(&t->rb);
    if (t->ra_ok) io_uring_queue_exit(&t->ra);
    if (t->efd >= 0) close(t->efd);
    if (t->peers) {
        for (int i = 0; i < t->tp.nodes; i++) {
            if (t->peers[i].fd >= 0) close(t->peers[i].fd);
            free(t->peers[i].rx);
            dsm_frameq_free(&t->peers[i].txq);
        }
    }
    free(t->peers);
    free(t);
}

static void tcp_destroy(struct dsm_tp *tp)
{
    struct tcp *t = T(tp);
    t->closing = 1; /* from here on, peers going away is expected: no lost() */
    /* The last frames (a BYE) may still sit in our buffers: give them a bounded chance. */
    uint64_t deadline = dsm_net_now_ms() + DRAIN_MS;
    for (;;) {
        tcp_flush(tp);
        if (!tx_pending(t) || dsm_net_now_ms() >= deadline) break;
        struct pollfd pf[DSM_MAX_NODES];
        int n = 0;
        for (int i = 0; i < tp->nodes; i++) {
            struct peer *p = &t->peers[i];
            if (p->fd >= 0 && !is_dead(p) && !p->tx_err && dsm_frameq_len(&p->txq))
                pf[n++] = (struct pollfd){.fd = p->fd, .events = POLLOUT};
        }
        poll(pf, (nfds_t)n, 10);
    }
    free_tcp(t);
}

static const struct dsm_tp_ops tcp_ops = {
    .name = "tcp",
    .send = tcp_send,
    .flush = tcp_flush,
    .poll = tcp_poll,
    .wait = tcp_wait,
    .kick = tcp_kick,
    .destroy = tcp_destroy,
};

/* ---------------------------------------------------------------- connecting the mesh */

enum { HS_FREE, HS_RETRY, HS_CONNECTING, HS_HELLO, HS_DONE };

/* Each side's byte stream on a new connection: challenge, response (auth.h), hello. Our
 * response is only written once their challenge is in, our hello once their response has
 * proven the secret: nothing about the job goes to a connection that has not. */
#define HS_TOTAL (DSM_AUTH_SIZE + DSM_NET_HELLO_SIZE)

/* One connection being set up. Outgoing ones (to lower ranks) know their peer; accepted
 * ones learn it from the hello. */
struct hs {
    int state;
    int fd;
    int peer;
    int out;
    uint64_t retry_at;
    uint64_t auth_deadline; /* incoming: closed if not authenticated by then */
    int backoff;
    int last_err; /* outgoing: why the last attempt failed (-errno, or 1: closed early) */
    int authed;
    size_t sent, got, outlen;
    struct dsm_auth au;
    uint8_t in[HS_TOTAL];
    uint8_t outb[HS_TOTAL];
    char from[DSM_NET_ADDRSTR];
};

/* Readies the exchange on a new connection: our challenge goes first. */
static void hs_begin(struct hs *h, const struct dsm_boot_cfg *cfg, int role)
{
    h->sent = h->got = 0;
    h->authed = 0;
    h->outlen = DSM_AUTH_REC_SIZE;
    (void)dsm_auth_start(&h->au, cfg->key, role, h->outb); /* sodium was initialised by the
                                                               caller: it cannot fail here */
}

static void hs_note(const struct dsm_boot_cfg *cfg, const struct hs *h, const char *why)
{
    dsm_tp_note(cfg,
                "closed a connection from %s to this node's data port: %s — not a node of this "
                "job (a stray program, or a node with another DSM_SECRET); the job goes on",
                h->from, why);
}

static void hs_close(struct hs *h)
{
    if (h->fd >= 0) close(h->fd);
    h->fd = -1;
}

/* An outgoing attempt failed: try again after a backoff (20 ms doubling to 200 ms). */
static void hs_retry(struct hs *h, int why, uint64_t now)
{
    hs_close(h);
    h->state = HS_RETRY;
    h->last_err = why;
    h->retry_at = now + (uint64_t)h->backoff;
    h->backoff = h->backoff * 2 > 200 ? 200 : h->backoff * 2;
}

static int hs_start(struct hs *h, const struct dsm_boot_cfg *cfg, const struct sockaddr_storage *sa,
                    socklen_t len)
{
    int pending;
    int fd = dsm_net_connect_start((const struct sockaddr *)sa, len, &pending);
    if (fd < 0) return fd;
    h->fd = fd;
    h->state = pending ? HS_CONNECTING : HS_HELLO;
    hs_begin(h, cfg, DSM_AUTH_CONNECTOR);
    return 0;
}

/* A complete hello arrived on h: checks it and makes the connection peer's. */
static int hs_check(struct tcp *t, const struct dsm_boot_cfg *cfg, struct hs *h, char *err,
                    size_t errlen)
{
    int rank;
    struct dsm_job_desc d;
    char why[200];
    const char *who = h->out ? t->peers[h->peer].name : h->from;
    if (dsm_net_hello_decode(h->in + DSM_AUTH_SIZE, &rank, &d, why, sizeof why)) {
        snprintf(err, errlen, "%s%s sent %s", h->out ? "" : "a connection from ", who, why);
        return DSM_EHANDSHAKE;
    }
    char label[DSM_NET_ADDRSTR + 40];
    if (h->out)
        snprintf(label, sizeof label, "%s", who);
    else if (rank < cfg->nodes)
        snprintf(label, sizeof label, "%s", t->peers[rank].name);
    else
        snprintf(label, sizeof label, "node %d (from %s)", rank, h->from);
    int rc = dsm_net_desc_compare(&cfg->desc, &d, label, err, errlen);
    if (rc) return rc;
    if (h->out && rank != h->peer) {
        snprintf(err, errlen,
                 "%s answered as node %d — the address table is stale (did a node restart?)", who,
                 rank);
        return DSM_EHANDSHAKE;
    }
    if (!h->out) {
        if (rank <= cfg->rank || rank >= cfg->nodes) {
            snprintf(err, errlen,
                     "a connection from %s says it is node %d, but only nodes %d..%d connect "
                     "to node %d — two nodes with the same DSM_RANK?",
                     h->from, rank, cfg->rank + 1, cfg->nodes - 1, cfg->rank);
            return DSM_EHANDSHAKE;
        }
        if (t->peers[rank].fd >= 0) {
            snprintf(err, errlen,
                     "node %d connected twice (again from %s) — two nodes with DSM_RANK=%d?", rank,
                     h->from, rank);
            return DSM_EHANDSHAKE;
        }
        h->peer = rank;
    }
    if (cfg->peer_timeout_ms > 0) {
        unsigned ut = (unsigned)cfg->peer_timeout_ms;
        (void)setsockopt(h->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
    }
    t->peers[h->peer].fd = h->fd;
    h->fd = -1;
    h->state = HS_DONE;
    return DSM_OK;
}

/* snprintf at err + *m, keeping *m inside the buffer whatever the text's length. */
static void append(char *err, size_t errlen, size_t *m, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *err, size_t errlen, size_t *m, const char *fmt, ...)
{
    if (*m + 1 >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err + *m, errlen - *m, fmt, ap);
    va_end(ap);
    if (n > 0) *m = *m + (size_t)n < errlen ? *m + (size_t)n : errlen - 1;
}

static void timeout_message(struct tcp *t, const struct dsm_boot_cfg *cfg, struct hs *hs, int nhs,
                            char *err, size_t errlen)
{
    char secs[32];
    size_t m = 0;
    append(err, errlen, &m, "timed out after %s connecting to the other nodes:",
           dsm_net_secs(cfg->timeout_ms, secs, sizeof secs));
    int listed = 0, missing = 0;
    for (int r = 0; r < cfg->nodes; r++) {
        if (r == cfg->rank || t->peers[r].fd >= 0) continue;
        missing++;
        if (m + 120 >= errlen) continue; /* counted below */
        const char *state = "never connected";
        for (int k = 0; k < nhs; k++) {
            struct hs *h = &hs[k];
            if (h->peer != r) continue;
            if (h->state == HS_HELLO)
                state = "no handshake";
            else if (h->last_err == 1)
                state = "closed the connection during the handshake";
            else if (h->last_err < 0)
                state = strerror(-h->last_err);
            else
                state = "no answer";
        }
        append(err, errlen, &m, "%s %s: %s", listed ? ";" : "", t->peers[r].name, state);
        listed++;
    }
    if (missing > listed) append(err, errlen, &m, "; and %d more", missing - listed);
    append(err, errlen, &m, " — did %s start? (see %s log)", missing > 1 ? "they" : "it",
           missing > 1 ? "their" : "its");
}

/* A node in the address table opened its data listener before it joined, and keeps it open
 * until its mesh is complete: a refused connection means it has exited since. Names it now
 * rather than after the whole connect timeout. */
static void gone_message(struct tcp *t, int peer, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "%s refused the connection: it was listening when it joined the job, so it has "
             "exited since (see its log, or the launcher's report on it)",
             t->peers[peer].name);
}

/* Is the node at sa gone (its listener refuses)? A short synchronous probe, at most 50 ms;
 * a probe that connects is closed at once without a byte, which the node ignores. */
static int peer_gone(const struct sockaddr_storage *sa, socklen_t len)
{
    int pending;
    int fd = dsm_net_connect_start((const struct sockaddr *)sa, len, &pending);
    if (fd == -ECONNREFUSED) return 1;
    if (fd < 0) return 0;
    int e = 0;
    if (pending) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        e = poll(&p, 1, 50) == 1 ? dsm_net_connect_result(fd) : 0;
    }
    close(fd);
    return e == -ECONNREFUSED;
}

/* Connects to every lower rank, accepts every higher one, hello both ways on each. */
static int connect_mesh(struct tcp *t, const struct dsm_boot_cfg *cfg, int lfd,
                        const struct sockaddr_storage *sa, const socklen_t *salen, char *err,
                        size_t errlen)
{
    const int nodes = cfg->nodes, rank = cfg->rank;
    const int cap = 2 * DSM_MAX_NODES; /* our outgoing ones, the incoming ones, a few strays */
    struct hs *hs = calloc((size_t)cap, sizeof *hs);
    struct pollfd *pf = calloc((size_t)cap + 1, sizeof *pf);
    int rc = DSM_OK;
    if (!hs || !pf) {
        snprintf(err, errlen, "out of memory connecting the mesh");
        rc = DSM_ENOMEM;
        goto out;
    }
    for (int k = 0; k < cap; k++) hs[k].fd = -1, hs[k].peer = -1;
    uint8_t hello[DSM_NET_HELLO_SIZE];
    dsm_net_hello_encode(hello, rank, &cfg->desc);
    {
        uint8_t scratch[DSM_AUTH_REC_SIZE];
        struct dsm_auth probe;
        if (dsm_auth_start(&probe, cfg->key, DSM_AUTH_CONNECTOR, scratch)) {
            snprintf(err, errlen, "libsodium cannot be initialised (no randomness source?)");
            rc = DSM_ESYS;
            goto out;
        }
    }
    uint64_t deadline = dsm_net_now_ms() + (uint64_t)cfg->timeout_ms;
    int nhs = 0, done = 0;
    uint64_t next_probe = dsm_net_now_ms() + 250;
    for (int j = 0; j < rank; j++) {
        struct hs *h = &hs[nhs++];
        h->state = HS_RETRY;
        h->peer = j;
        h->out = 1;
        h->backoff = 20;
    }

    while (done < nodes - 1) {
        uint64_t now = dsm_net_now_ms();
        if (now >= deadline) {
            timeout_message(t, cfg, hs, nhs, err, errlen);
            rc = DSM_EPEER;
            goto out;
        }
        uint64_t wake = deadline;
        for (int k = 0; k < nhs; k++) {
            struct hs *h = &hs[k];
            if (h->state != HS_RETRY) continue;
            if (h->retry_at <= now) {
                int e = hs_start(h, cfg, &sa[h->peer], salen[h->peer]);
                if (e == -ECONNREFUSED) {
                    gone_message(t, h->peer, err, errlen);
                    rc = DSM_EPEER;
                    goto out;
                }
                if (e) hs_retry(h, e, now);
            }
            if (h->state == HS_RETRY && h->retry_at < wake) wake = h->retry_at;
        }
        /* The higher ranks connect to us: one that died after joining would only be noticed
         * at the deadline, so every 250 ms each one still missing is probed. */
        if (now >= next_probe) {
            next_probe = now + 250;
            for (int r = rank + 1; r < nodes; r++) {
                if (t->peers[r].fd >= 0 || !peer_gone(&sa[r], salen[r])) continue;
                gone_message(t, r, err, errlen);
                rc = DSM_EPEER;
                goto out;
            }
        }
        if (next_probe < wake) wake = next_probe;
        /* Strangers that have not authenticated in time go; nodes are not affected. */
        for (int k = 0; k < nhs; k++) {
            struct hs *h = &hs[k];
            if (h->out || h->state != HS_HELLO || h->authed) continue;
            if (h->auth_deadline <= now) {
                hs_note(cfg, h,
                        h->got ? "it did not complete the authentication in time"
                               : "it sent nothing within the deadline");
                hs_close(h), h->state = HS_FREE;
            } else if (h->auth_deadline < wake)
                wake = h->auth_deadline;
        }
        int free_slot = -1;
        for (int k = 0; k < cap && free_slot < 0; k++)
            if (hs[k].state == HS_FREE && (k >= nhs || !hs[k].out)) free_slot = k;
        if (free_slot < 0) {
            /* Full of strangers: the one that has waited longest makes room, so they can
             * never keep a node out (a real one authenticates within a round trip). */
            for (int k = 0; k < nhs; k++) {
                struct hs *h = &hs[k];
                if (h->out || h->state != HS_HELLO || h->authed) continue;
                if (free_slot < 0 || h->auth_deadline < hs[free_slot].auth_deadline) free_slot = k;
            }
            if (free_slot >= 0) {
                hs_note(cfg, &hs[free_slot],
                        "all connection slots are taken and it is the "
                        "oldest that has not authenticated");
                hs_close(&hs[free_slot]);
                hs[free_slot].state = HS_FREE;
            }
        }
        int np = 0;
        pf[np++] = (struct pollfd){.fd = free_slot >= 0 ? lfd : -1, .events = POLLIN};
        for (int k = 0; k < nhs; k++) {
            struct hs *h = &hs[k];
            short ev = 0;
            if (h->state == HS_CONNECTING) ev = POLLOUT;
            if (h->state == HS_HELLO) ev = POLLIN | (h->sent < h->outlen ? POLLOUT : 0);
            pf[np++] = (struct pollfd){.fd = ev ? h->fd : -1, .events = ev};
        }
        int n = poll(pf, (nfds_t)np, wake > now ? (int)(wake - now) : 0);
        if (n < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll failed connecting the mesh: %s", strerror(errno));
            rc = DSM_ESYS;
            goto out;
        }
        if (n <= 0) continue;
        now = dsm_net_now_ms();

        for (int k = 0; k < nhs; k++) {
            struct hs *h = &hs[k];
            short rev = pf[1 + k].revents;
            if (!rev) continue;
            if (h->state == HS_CONNECTING) {
                int e = dsm_net_connect_result(h->fd);
                if (e == -ECONNREFUSED) {
                    gone_message(t, h->peer, err, errlen);
                    rc = DSM_EPEER;
                    goto out;
                }
                if (e)
                    hs_retry(h, e, now);
                else
                    h->state = HS_HELLO;
                continue;
            }
            if (h->state != HS_HELLO) continue;
            if (h->sent < h->outlen) {
                ssize_t w = send(h->fd, h->outb + h->sent, h->outlen - h->sent,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0)
                    h->sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    if (h->out)
                        hs_retry(h, -errno, now);
                    else
                        hs_close(h), h->state = HS_FREE;
                    continue;
                }
            }
            size_t want = h->got < DSM_AUTH_REC_SIZE ? DSM_AUTH_REC_SIZE
                          : !h->authed               ? DSM_AUTH_SIZE
                                                     : HS_TOTAL;
            if (h->got < want) {
                ssize_t g = recv(h->fd, h->in + h->got, want - h->got, MSG_DONTWAIT);
                if (g > 0)
                    h->got += (size_t)g;
                else if (g == 0 || (errno != EAGAIN && errno != EINTR)) {
                    /* Before it proved the secret, a peer that goes away is retried
                     * (outgoing) or was a stranger (incoming); the hello of a peer that
                     * rejects us comes first. */
                    int e = g == 0 ? 1 : -errno;
                    if (h->out)
                        hs_retry(h, e, now);
                    else if (!h->authed) {
                        if (h->got)
                            hs_note(cfg, h, "it closed the connection before authenticating");
                        hs_close(h), h->state = HS_FREE;
                    } else {
                        snprintf(err, errlen,
                                 "a node connected from %s that knows this job's secret closed "
                                 "the connection in the middle of its handshake (%zu of %d "
                                 "bytes) — see that node's log",
                                 h->from, h->got - DSM_AUTH_SIZE, DSM_NET_HELLO_SIZE);
                        rc = DSM_EPEER;
                        goto out;
                    }
                    continue;
                }
                char why[300];
                const char *who = h->out ? t->peers[h->peer].name : h->from;
                if (h->got == DSM_AUTH_REC_SIZE && h->outlen == DSM_AUTH_REC_SIZE) {
                    if (dsm_auth_on_challenge(&h->au, h->in, h->outb + DSM_AUTH_REC_SIZE, why,
                                              sizeof why)) {
                        if (!h->out) {
                            hs_note(cfg, h, why);
                            hs_close(h), h->state = HS_FREE;
                            continue;
                        }
                        snprintf(err, errlen,
                                 "%s sent %s — the address table names a program that is not "
                                 "a node of this job (did that node exit and another program "
                                 "take its port?)",
                                 who, why);
                        rc = DSM_EHANDSHAKE;
                        goto out;
                    }
                    h->outlen = DSM_AUTH_SIZE;
                } else if (h->got == DSM_AUTH_SIZE && !h->authed) {
                    if (dsm_auth_on_response(&h->au, h->in + DSM_AUTH_REC_SIZE, why, sizeof why)) {
                        if (!h->out) {
                            hs_note(cfg, h, why);
                            hs_close(h), h->state = HS_FREE;
                            continue;
                        }
                        snprintf(err, errlen, "%s gave %s — refusing to connect", who, why);
                        rc = DSM_EHANDSHAKE;
                        goto out;
                    }
                    h->authed = 1;
                    memcpy(h->outb + DSM_AUTH_SIZE, hello, DSM_NET_HELLO_SIZE);
                    h->outlen = HS_TOTAL;
                }
                /* What we may send now goes at once, not after another poll. */
                if (h->sent < h->outlen) {
                    ssize_t w = send(h->fd, h->outb + h->sent, h->outlen - h->sent,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
                    if (w > 0) h->sent += (size_t)w;
                }
            }
            if (h->got == HS_TOTAL && h->sent == HS_TOTAL) {
                rc = hs_check(t, cfg, h, err, errlen);
                if (rc) goto out;
                done++;
            }
        }
        if (pf[0].revents && free_slot >= 0) {
            struct sockaddr_storage from;
            socklen_t fl = sizeof from;
            int fd = accept4(lfd, (struct sockaddr *)&from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                struct hs *h = &hs[free_slot];
                memset(h, 0, sizeof *h);
                h->fd = fd;
                h->peer = -1;
                h->state = HS_HELLO;
                h->auth_deadline = now + DSM_AUTH_DEADLINE_MS;
                hs_begin(h, cfg, DSM_AUTH_ACCEPTOR);
                dsm_net_fmt((struct sockaddr *)&from, h->from, sizeof h->from);
                if (free_slot >= nhs) nhs = free_slot + 1;
            }
        }
    }
out:
    if (hs)
        for (int k = 0; k < cap; k++) hs_close(&hs[k]);
    free(hs);
    free(pf);
    return rc;
}

/* ---------------------------------------------------------------- creation */

static int ring_init(struct io_uring *r, unsigned entries, unsigned flags)
{
    int e = io_uring_queue_init(entries, r, flags);
    if (e == -EINVAL && flags) e = io_uring_queue_init(entries, r, 0); /* older kernel */
    return e;
}

int dsm_tcp_create(const struct dsm_boot_cfg *cfg, int listen_fd, const struct dsm_peer_addr *addrs,
                   const struct dsm_wire_limits *limits, dsm_tp_deliver_fn deliver,
                   dsm_tp_lost_fn lost, void *cb_ctx, struct dsm_tp **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = DSM_OK;
    struct tcp *t = NULL;
    struct sockaddr_storage *sa = NULL;
    socklen_t *salen = NULL;

    if (cfg->nodes < 1 || cfg->nodes > DSM_MAX_NODES || cfg->rank < 0 || cfg->rank >= cfg->nodes ||
        !deliver || !limits || limits->nodes != (uint32_t)cfg->nodes) {
        snprintf(err, errlen, "dsm_tcp_create: bad configuration (rank %d, %d nodes)", cfg->rank,
                 cfg->nodes);
        rc = DSM_EINVAL;
        goto fail;
    }
    t = calloc(1, sizeof *t);
    sa = calloc((size_t)cfg->nodes, sizeof *sa);
    salen = calloc((size_t)cfg->nodes, sizeof *salen);
    if (t) {
        t->efd = -1; /* before any goto fail: free_tcp closes what is >= 0 */
        t->peers = calloc((size_t)cfg->nodes, sizeof *t->peers);
    }
    if (!t || !sa || !salen || !t->peers) {
        snprintf(err, errlen, "out of memory creating the TCP transport");
        rc = DSM_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < cfg->nodes; i++) t->peers[i].fd = -1; /* before any goto fail */
    t->tp.ops = &tcp_ops;
    t->tp.rank = cfg->rank;
    t->tp.nodes = cfg->nodes;
    t->tp.deliver = deliver;
    t->tp.lost = lost;
    t->tp.cb_ctx = cb_ctx;
    t->tp.limits = *limits;
    t->tp.wake_fd = -1;
    for (int i = 0; i < cfg->nodes; i++) {
        struct peer *p = &t->peers[i];
        p->lim = *limits;
        p->lim.peer = (uint32_t)i;
        if (dsm_net_numeric(addrs[i].host, addrs[i].port, &sa[i], &salen[i]) || !addrs[i].port) {
            snprintf(err, errlen, "the address of node %d ('%.64s', port %u) is not usable", i,
                     addrs[i].host, addrs[i].port);
            rc = DSM_EINVAL;
            goto fail;
        }
        char a[DSM_NET_ADDRSTR];
        dsm_net_fmt((struct sockaddr *)&sa[i], a, sizeof a);
        snprintf(p->name, sizeof p->name, "node %d (%s)", i, a);
    }

    struct dsm_boot_cfg c = *cfg;
    if (c.timeout_ms <= 0) c.timeout_ms = 30000;
    struct dsm_auth_key none;
    if (!c.key) {
        if (dsm_auth_key_init(&none, NULL, 0, err, errlen)) {
            rc = DSM_ESYS;
            goto fail;
        }
        c.key = &none;
    }
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "the data listener is not usable: %s", strerror(errno));
        rc = DSM_ESYS;
        goto fail;
    }
    rc = connect_mesh(t, &c, listen_fd, sa, salen, err, errlen);
    if (rc) goto fail;
    close(listen_fd);
    listen_fd = -1;

    for (int i = 0; i < cfg->nodes; i++) {
        struct peer *p = &t->peers[i];
        if (i == cfg->rank) continue;
        /* Accepted sockets inherit the listener's buffer sizes (set before listen, so the
         * window scale is right); both sides need NODELAY: every frame is latency-bound. */
        int one = 1;
        setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        p->rx = malloc(RX_CAP);
        if (!p->rx) {
            snprintf(err, errlen, "out of memory for receive buffers");
            rc = DSM_ENOMEM;
            goto fail;
        }
    }
    /* Ring A holds at most a SEND and a RECV per peer at a time. */
    unsigned ea = 8;
    while (ea < 2u * (unsigned)cfg->nodes) ea *= 2;
    int e = ring_init(&t->ra, ea, 0);
    if (!e) {
        t->ra_ok = 1;
        /* Ring B: a POLL_ADD per peer and one for tp.wake_fd, the eventfd READ, and a spare for
         * liburing's timeout on kernels without EXT_ARG. COOP_TASKRUN: a poll that fires while the
         * service thread runs the engine need not interrupt it; it is reaped at the next wait. */
        unsigned eb = 8;
        while (eb < (unsigned)cfg->nodes + 3) eb *= 2;
        e = ring_init(&t->rb, eb, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
        if (!e) t->rb_ok = 1;
    }
    if (e) {
        snprintf(err, errlen, "cannot create an io_uring: %s%s", strerror(-e),
                 e == -EPERM || e == -ENOSYS
                     ? " — io_uring is disabled here (kernel.io_uring_disabled?)"
                     : "");
        rc = DSM_ETRANSPORT;
        goto fail;
    }
    /* Blocking on purpose: io_uring then waits for a kick with a poll, never returns
     * -EAGAIN for it. kick's write cannot block (it would take 2^64-2 unread kicks). */
    t->efd = eventfd(0, EFD_CLOEXEC);
    if (t->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        rc = DSM_ESYS;
        goto fail;
    }
    free(sa);
    free(salen);
    *out = &t->tp;
    return DSM_OK;

fail:
    /* The listener is ours either way: the caller has nothing left to clean up. */
    if (listen_fd >= 0) close(listen_fd);
    if (t) free_tcp(t);
    free(sa);
    free(salen);
    return rc;
}

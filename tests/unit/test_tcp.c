/*
 * test_tcp.c - the TCP transport with several nodes as threads of this process, over
 * 127.0.0.1: mesh setup (and its failures), FIFO delivery of many frames with and without
 * pages, replies sent from inside deliver, a burst larger than the socket buffers, corrupt
 * and closing peers (a raw socket that speaks the handshake, then misbehaves), and the
 * service wait (armed, dormant, timeout, kick).
 *
 * Threading: each node is a thread that owns its transport, as the runtime's token holder
 * would; deliver and lost run on that thread. Threads record the first failure in their own
 * struct and the main thread asserts after joining them (cmocka asserts are not
 * thread-safe). Cross-thread signals are atomics. No timing is asserted except generous
 * bounds; the watchdog alarm turns a hang into a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"
#include "net.h"
#include "auth.h"
#include "transport.h"
#include "wire.h"

#define NPAGES 1024u
#define BASE   0x500000000000ull

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("'%s' not in '%s'", (needle), (hay));               \
    } while (0)

/* A 4 KiB page whose bytes depend on (src, dst, seq): a misplaced or torn payload shows. */
static void fill_page(uint8_t *p, int src, int dst, uint64_t seq)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15ull ^ (uint64_t)(src * 64 + dst) << 48;
    for (unsigned i = 0; i < DSM_PAGE_SIZE; i += 8) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        memcpy(p + i, &x, 8);
    }
}

/* ---------------------------------------------------------------- a node */

struct node {
    int rank, nodes;
    int timeout_ms;
    char coord[64];
    struct dsm_boot_cfg cfg;
    struct dsm_peer_addr addrs[DSM_MAX_NODES];
    struct dsm_wire_limits lim;
    struct dsm_tp *tp;
    int rc;
    char err[512];
    char fail[512]; /* first failure seen on the node's thread */
    pthread_t th;
    void (*body)(struct node *);
    struct scen *sc;

    /* what deliver saw */
    uint64_t next_seq[DSM_MAX_NODES];   /* data frames: GET_S (even seq), DATA_S (odd) */
    uint64_t next_reply[DSM_MAX_NODES]; /* INV_ACKs, the replies to our GET_S */
    int byes[DSM_MAX_NODES];
    int reply_from_deliver; /* answer every GET_S from inside deliver */
    uint64_t delivered;
    int lost_count, lost_peer, lost_after_bye;
    char lost_why[512];
    char notes[2048]; /* strangers the mesh closed (only the node's own thread writes) */
};

static void take_note(void *ctx, const char *msg)
{
    struct node *n = ctx;
    size_t l = strlen(n->notes);
    snprintf(n->notes + l, sizeof n->notes - l, "%s\n", msg);
}

/* Shared by the nodes of one scenario. */
struct scen {
    struct node n[4];
    int count;
    _Atomic int flag[4];
    struct node *raw; /* the scenario's raw peer, if any */
    int raw_kind;
};

static void tfail(struct node *n, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tfail(struct node *n, int line, const char *fmt, ...)
{
    if (n->fail[0]) return;
    int k = snprintf(n->fail, sizeof n->fail, "node %d, line %d: ", n->rank, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->fail + k, sizeof n->fail - (size_t)k, fmt, ap);
    va_end(ap);
}
#define TCHECK(n, cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) tfail((n), __LINE__, __VA_ARGS__);                                            \
    } while (0)

static void on_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct node *n = ctx;
    int src = h->src;
    n->delivered++;
    /* The runtime reads a NULL payload as "no data" (e.g. a ZERO page). */
    TCHECK(n, (h->len == 0) == (payload == NULL), "%s with len %u has payload %p",
           dsm_wire_type_name(h->type), h->len, payload);
    if (src < 0 || src >= n->nodes || src == n->rank) {
        tfail(n, __LINE__, "frame from src %d", src);
        return;
    }
    TCHECK(n, !n->byes[src], "a %s from node %d after its BYE", dsm_wire_type_name(h->type), src);
    switch (h->type) {
    case DSM_MSG_GET_S:
    case DSM_MSG_DATA_S: {
        uint64_t seq = h->arg1;
        TCHECK(n, seq == n->next_seq[src], "from node %d: seq %llu, expected %llu", src,
               (unsigned long long)seq, (unsigned long long)n->next_seq[src]);
        n->next_seq[src] = seq + 1;
        TCHECK(n, h->arg0 == seq % NPAGES, "page %llu for seq %llu", (unsigned long long)h->arg0,
               (unsigned long long)seq);
        if (h->type == DSM_MSG_DATA_S) {
            uint8_t want[DSM_PAGE_SIZE];
            fill_page(want, src, n->rank, seq);
            TCHECK(n, h->len == DSM_PAGE_SIZE && !memcmp(payload, want, DSM_PAGE_SIZE),
                   "payload of seq %llu from node %d differs", (unsigned long long)seq, src);
        } else if (n->reply_from_deliver) {
            struct dsm_wire_hdr r;
            dsm_wire_init(&r, DSM_MSG_INV_ACK, (uint32_t)n->rank);
            r.arg0 = h->arg0;
            r.arg1 = seq;
            TCHECK(n, n->tp->ops->send(n->tp, src, &r, NULL) == 0, "reply to node %d failed", src);
        }
        break;
    }
    case DSM_MSG_INV_ACK:
        TCHECK(n, h->arg1 == n->next_reply[src], "reply %llu from node %d, expected %llu",
               (unsigned long long)h->arg1, src, (unsigned long long)n->next_reply[src]);
        n->next_reply[src] = h->arg1 + 2;
        break;
    case DSM_MSG_BYE:
        n->byes[src] = 1;
        break;
    default:
        tfail(n, __LINE__, "unexpected %s", dsm_wire_type_name(h->type));
    }
}

static void on_lost(void *ctx, int peer, const char *why)
{
    struct node *n = ctx;
    if (peer >= 0 && peer < n->nodes && n->byes[peer]) {
        n->lost_after_bye++; /* its close after its goodbye: expected */
        return;
    }
    n->lost_count++;
    n->lost_peer = peer;
    snprintf(n->lost_why, sizeof n->lost_why, "%s", why);
}

static void init_node(struct node *n, struct scen *sc, int rank, int nodes, int port,
                      int timeout_ms)
{
    memset(n, 0, sizeof *n);
    n->sc = sc;
    n->rank = rank;
    n->nodes = nodes;
    n->timeout_ms = timeout_ms;
    snprintf(n->coord, sizeof n->coord, "127.0.0.1:%d", port);
    n->cfg.rank = rank;
    n->cfg.nodes = nodes;
    n->cfg.coordinator = n->coord;
    n->cfg.timeout_ms = timeout_ms;
    snprintf(n->cfg.desc.job, sizeof n->cfg.desc.job, "a");
    n->cfg.desc.version = DSM_WIRE_VERSION;
    n->cfg.desc.nodes = (uint32_t)nodes;
    n->cfg.desc.region_base = BASE;
    n->cfg.desc.region_size = (uint64_t)NPAGES * DSM_PAGE_SIZE;
    n->cfg.desc.page_size = DSM_PAGE_SIZE;
    n->lim = (struct dsm_wire_limits){.npages = NPAGES, .base = BASE, .nodes = (uint32_t)nodes};
    n->cfg.note = take_note;
    n->cfg.note_ctx = n;
}

/* The connector's half of the authentication (auth.h), by hand, with no secret (as the
 * nodes under test have none). 0, or -1. */
static int raw_auth(int s)
{
    struct dsm_auth_key key;
    struct dsm_auth au;
    uint8_t out[DSM_AUTH_REC_SIZE], in[DSM_AUTH_REC_SIZE];
    char why[256];
    if (dsm_auth_key_init(&key, NULL, 0, why, sizeof why) ||
        dsm_auth_start(&au, &key, DSM_AUTH_CONNECTOR, out) ||
        write(s, out, sizeof out) != (ssize_t)sizeof out)
        return -1;
    for (int step = 0; step < 2; step++) {
        size_t got = 0;
        while (got < sizeof in) {
            ssize_t r = read(s, in + got, sizeof in - got);
            if (r <= 0) return -1;
            got += (size_t)r;
        }
        if (step == 0 && (dsm_auth_on_challenge(&au, in, out, why, sizeof why) ||
                          write(s, out, sizeof out) != (ssize_t)sizeof out))
            return -1;
        if (step == 1 && dsm_auth_on_response(&au, in, why, sizeof why)) return -1;
    }
    return 0;
}

/* Bootstrap, connect, run the body, tear down: a node's life. */
static void *node_main(void *arg)
{
    struct node *n = arg;
    int lfd;
    n->rc = dsm_bootstrap(&n->cfg, &lfd, n->addrs, n->err, sizeof n->err);
    if (!n->rc)
        n->rc = dsm_tcp_create(&n->cfg, lfd, n->addrs, &n->lim, on_deliver, on_lost, n, &n->tp,
                               n->err, sizeof n->err);
    if (getenv("TEST_VERBOSE") && n->rc)
        fprintf(stderr, "    node %d: rc %d: %s\n", n->rank, n->rc, n->err);
    if (n->body) n->body(n); /* bodies look at n->rc themselves */
    if (n->tp) n->tp->ops->destroy(n->tp);
    n->tp = NULL;
    return NULL;
}

static void run_scen(struct scen *sc)
{
    for (int i = 0; i < sc->count; i++)
        assert_int_equal(pthread_create(&sc->n[i].th, NULL, node_main, &sc->n[i]), 0);
    for (int i = 0; i < sc->count; i++) pthread_join(sc->n[i].th, NULL);
    for (int i = 0; i < sc->count; i++)
        if (sc->n[i].fail[0]) fail_msg("%s", sc->n[i].fail);
}

static void send_data(struct node *n, int dst, uint64_t seq)
{
    struct dsm_wire_hdr h;
    static __thread uint8_t page[DSM_PAGE_SIZE];
    const void *payload = NULL;
    dsm_wire_init(&h, seq & 1 ? DSM_MSG_DATA_S : DSM_MSG_GET_S, (uint32_t)n->rank);
    h.arg0 = seq % NPAGES;
    h.arg1 = seq;
    if (seq & 1) {
        fill_page(page, n->rank, dst, seq);
        h.len = DSM_PAGE_SIZE;
        payload = page;
    }
    TCHECK(n, n->tp->ops->send(n->tp, dst, &h, payload) == 0, "send to %d failed", dst);
}

static void send_bye(struct node *n, int dst)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_BYE, (uint32_t)n->rank);
    TCHECK(n, n->tp->ops->send(n->tp, dst, &h, NULL) == 0, "BYE to %d failed", dst);
}

/* Polls (yielding when idle: the nodes share two CPUs) until cond or the bound. */
static int poll_until(struct node *n, int (*cond)(struct node *), double bound_s)
{
    double end = now_s() + bound_s;
    while (!cond(n)) {
        if (now_s() > end) return 0;
        if (n->tp->ops->poll(n->tp) == 0) sched_yield();
    }
    return 1;
}

static int all_byes(struct node *n)
{
    for (int i = 0; i < n->nodes; i++)
        if (i != n->rank && !n->byes[i]) return 0;
    return 1;
}

/* ---------------------------------------------------------------- traffic in a 3-node mesh */

#define NFRAMES 10000u /* per ordered pair, half of them with a page */

struct service {
    struct dsm_tp *tp;
    _Atomic int stop;
    int woke;
};

/* The service thread of node 0: waits (armed) on ring B while the node thread polls on
 * ring A, as in the runtime. */
static void *service_main(void *arg)
{
    struct service *s = arg;
    while (!atomic_load(&s->stop)) s->woke += s->tp->ops->wait(s->tp, 1, 20000);
    return NULL;
}

static int traffic_done(struct node *n)
{
    for (int i = 0; i < n->nodes; i++) {
        if (i == n->rank) continue;
        if (n->next_seq[i] != NFRAMES || n->next_reply[i] != NFRAMES) return 0;
    }
    return 1;
}

static void traffic_body(struct node *n)
{
    if (n->rc) return;
    struct service svc = {.tp = n->tp};
    pthread_t st;
    if (n->rank == 0) pthread_create(&st, NULL, service_main, &svc);
    n->reply_from_deliver = 1;
    uint64_t sent[DSM_MAX_NODES] = {0};
    double end = now_s() + 60;
    int bye_sent = 0;
    while (!(bye_sent && all_byes(n)) && !n->fail[0]) {
        for (int d = 0; d < n->nodes; d++) {
            if (d == n->rank) continue;
            for (int k = 0; k < 32 && sent[d] < NFRAMES; k++) send_data(n, d, sent[d]++);
        }
        if (n->tp->ops->poll(n->tp) == 0) sched_yield();
        if (!bye_sent && traffic_done(n)) {
            for (int d = 0; d < n->nodes; d++)
                if (d != n->rank) send_bye(n, d);
            bye_sent = 1;
        }
        if (now_s() > end) {
            tfail(n, __LINE__, "stuck: got %llu/%llu from node %d",
                  (unsigned long long)n->next_seq[(n->rank + 1) % n->nodes],
                  (unsigned long long)NFRAMES, (n->rank + 1) % n->nodes);
            break;
        }
    }
    n->tp->ops->flush(n->tp);
    if (n->rank == 0) {
        atomic_store(&svc.stop, 1);
        n->tp->ops->kick(n->tp);
        pthread_join(st, NULL);
        TCHECK(n, svc.woke > 0, "the service thread never saw data");
    }
    TCHECK(n, n->lost_count == 0, "lost node %d: %s", n->lost_peer, n->lost_why);
    /* Per peer: NFRAMES data frames, NFRAMES / 2 replies (to its GET_S), one BYE. */
    uint64_t peers = (uint64_t)n->nodes - 1;
    uint64_t msgs = peers * (NFRAMES + NFRAMES / 2 + 1);
    uint64_t bytes = peers * ((NFRAMES + NFRAMES / 2 + 1) * (uint64_t)DSM_WIRE_HDR_SIZE +
                              NFRAMES / 2 * (uint64_t)DSM_PAGE_SIZE);
    struct dsm_tp_counters *c = &n->tp->cnt;
    TCHECK(n, c->msgs_sent == msgs && c->msgs_recv == msgs, "msgs sent %llu recv %llu, want %llu",
           (unsigned long long)c->msgs_sent, (unsigned long long)c->msgs_recv,
           (unsigned long long)msgs);
    TCHECK(n, c->bytes_sent == bytes && c->bytes_recv == bytes,
           "bytes sent %llu recv %llu, want %llu", (unsigned long long)c->bytes_sent,
           (unsigned long long)c->bytes_recv, (unsigned long long)bytes);
}

static void mesh3_traffic(void **state)
{
    (void)state;
    struct scen sc = {.count = 3};
    int port = free_port();
    for (int i = 0; i < 3; i++) {
        init_node(&sc.n[i], &sc, i, 3, port, 5000);
        sc.n[i].body = traffic_body;
    }
    run_scen(&sc);
    for (int i = 0; i < 3; i++) assert_int_equal(sc.n[i].rc, DSM_OK);
}

/* ---------------------------------------------------------------- a burst */

#define BURST_FRAMES 5120u /* 20 MiB of pages */

static void burst_body(struct node *n)
{
    if (n->rc) return;
    struct scen *sc = n->sc;
    if (n->rank == 0) {
        /* Pages only (odd seqs), each followed by a flush as the runtime does: with the
         * receiver not reading, most of it must wait in our buffer, and nothing blocks. */
        double t0 = now_s();
        for (uint64_t s = 1; s < 2 * BURST_FRAMES; s += 2) {
            send_data(n, 1, s);
            n->tp->ops->flush(n->tp);
        }
        double took = now_s() - t0;
        TCHECK(n, took < 10, "queueing the burst took %.1f s", took);
        atomic_store(&sc->flag[0], 1); /* now the receiver may start */
        TCHECK(n, poll_until(n, all_byes, 30), "no BYE from the receiver");
    } else {
        while (!atomic_load(&sc->flag[0])) sleep_ms(1);
        /* Odd seqs only (burst_deliver skips the even ones): the last is 2 * BURST - 1. */
        double end = now_s() + 30;
        while (n->next_seq[0] < 2 * BURST_FRAMES + 1 && now_s() < end && !n->fail[0])
            if (n->tp->ops->poll(n->tp) == 0) sched_yield();
        TCHECK(n, n->next_seq[0] == 2 * BURST_FRAMES + 1, "received up to seq %llu",
               (unsigned long long)n->next_seq[0]);
        TCHECK(n, n->tp->cnt.msgs_recv == BURST_FRAMES, "msgs_recv %llu",
               (unsigned long long)n->tp->cnt.msgs_recv);
        send_bye(n, 0);
        n->tp->ops->flush(n->tp);
    }
    TCHECK(n, n->lost_count == 0, "lost node %d: %s", n->lost_peer, n->lost_why);
}

/* deliver's seq check expects consecutive seqs; the burst sends odd ones only. */
static void burst_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct node *n = ctx;
    if (h->type == DSM_MSG_DATA_S && n->next_seq[h->src] == 0) n->next_seq[h->src] = 1;
    on_deliver(ctx, h, payload);
    if (h->type == DSM_MSG_DATA_S) n->next_seq[h->src]++; /* skip the even one */
}

static void *burst_node_main(void *arg)
{
    struct node *n = arg;
    int lfd;
    n->rc = dsm_bootstrap(&n->cfg, &lfd, n->addrs, n->err, sizeof n->err);
    if (!n->rc)
        n->rc = dsm_tcp_create(&n->cfg, lfd, n->addrs, &n->lim, burst_deliver, on_lost, n, &n->tp,
                               n->err, sizeof n->err);
    burst_body(n);
    if (n->tp) n->tp->ops->destroy(n->tp);
    return NULL;
}

static void burst_beyond_socket_buffers(void **state)
{
    (void)state;
    struct scen sc = {.count = 2};
    int port = free_port();
    for (int i = 0; i < 2; i++) init_node(&sc.n[i], &sc, i, 2, port, 5000);
    for (int i = 0; i < 2; i++) pthread_create(&sc.n[i].th, NULL, burst_node_main, &sc.n[i]);
    for (int i = 0; i < 2; i++) pthread_join(sc.n[i].th, NULL);
    for (int i = 0; i < 2; i++) {
        if (sc.n[i].rc) fail_msg("node %d: %s", i, sc.n[i].err);
        if (sc.n[i].fail[0]) fail_msg("%s", sc.n[i].fail);
    }
}

/* ---------------------------------------------------------------- misbehaving peers */

enum {
    RAW_BAD_MAGIC,
    RAW_BAD_PAGE,
    RAW_BIG_LEN,
    RAW_TRUNC_HDR,
    RAW_TRUNC_PAYLOAD,
    RAW_EOF,
    RAW_RESET,
    RAW_WRONG_SRC,
};

/* Node 1 as a raw socket: bootstraps like a node, connects to node 0's data listener, does
 * the handshake by hand, sends one good frame and then the misbehaviour. */
static void *raw_main(void *arg)
{
    struct node *n = arg;
    struct scen *sc = n->sc;
    int lfd = -1;
    n->rc = dsm_bootstrap(&n->cfg, &lfd, n->addrs, n->err, sizeof n->err);
    if (n->rc) return NULL;
    close(lfd);
    struct sockaddr_storage ss;
    socklen_t sl;
    TCHECK(n, dsm_net_numeric(n->addrs[0].host, n->addrs[0].port, &ss, &sl) == 0, "address");
    int s = socket(ss.ss_family, SOCK_STREAM, 0);
    TCHECK(n, connect(s, (struct sockaddr *)&ss, sl) == 0, "connect: %s", strerror(errno));
    TCHECK(n, raw_auth(s) == 0, "authentication with node 0 failed");
    uint8_t hello[DSM_NET_HELLO_SIZE];
    dsm_net_hello_encode(hello, 1, &n->cfg.desc);
    TCHECK(n, write(s, hello, sizeof hello) == (ssize_t)sizeof hello, "hello");
    size_t got = 0;
    while (got < sizeof hello) {
        ssize_t r = read(s, hello + got, sizeof hello - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    TCHECK(n, got == sizeof hello, "no hello from node 0");

    uint8_t buf[2 * (DSM_WIRE_HDR_SIZE + DSM_PAGE_SIZE)];
    size_t len = 0;
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_GET_S, 1); /* the good frame */
    h.arg1 = 0;
    dsm_wire_encode(&h, buf);
    len = DSM_WIRE_HDR_SIZE;
    uint8_t *bad = buf + len;
    dsm_wire_init(&h, DSM_MSG_GET_S, 1);
    h.arg1 = 1;
    switch (sc->raw_kind) {
    case RAW_BAD_MAGIC:
        dsm_wire_encode(&h, bad);
        bad[0] ^= 0xff;
        len += DSM_WIRE_HDR_SIZE;
        break;
    case RAW_BAD_PAGE:
        h.arg0 = 99999;
        dsm_wire_encode(&h, bad);
        len += DSM_WIRE_HDR_SIZE;
        break;
    case RAW_BIG_LEN:
        h.type = DSM_MSG_DATA_S;
        h.len = 1u << 30;
        dsm_wire_encode(&h, bad);
        len += DSM_WIRE_HDR_SIZE;
        break;
    case RAW_WRONG_SRC:
        h.src = 0;
        dsm_wire_encode(&h, bad);
        len += DSM_WIRE_HDR_SIZE;
        break;
    case RAW_TRUNC_HDR:
        dsm_wire_encode(&h, bad);
        len += 20;
        break;
    case RAW_TRUNC_PAYLOAD:
        h.type = DSM_MSG_DATA_S;
        h.len = DSM_PAGE_SIZE;
        dsm_wire_encode(&h, bad);
        len += DSM_WIRE_HDR_SIZE + 1000;
        break;
    default:
        break; /* EOF, RESET: just the good frame */
    }
    /* For the corrupt kinds, a good frame after the bad one must never be delivered. */
    if (sc->raw_kind <= RAW_BIG_LEN || sc->raw_kind == RAW_WRONG_SRC) {
        dsm_wire_init(&h, DSM_MSG_GET_S, 1);
        h.arg1 = 1;
        dsm_wire_encode(&h, buf + len);
        len += DSM_WIRE_HDR_SIZE;
    }
    TCHECK(n, write(s, buf, len) == (ssize_t)len, "write");
    if (sc->raw_kind == RAW_RESET) {
        /* Wait for node 0's frame to sit unread here, then close: that sends a reset. */
        struct pollfd p = {.fd = s, .events = POLLIN};
        TCHECK(n, poll(&p, 1, 5000) == 1, "node 0 sent nothing");
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(s);
        atomic_store(&sc->flag[1], 1);
        return NULL;
    }
    if (sc->raw_kind < RAW_TRUNC_HDR || sc->raw_kind == RAW_WRONG_SRC) {
        /* Stay connected until node 0 has judged: its verdict must not need our close. */
        while (!atomic_load(&sc->flag[0])) sleep_ms(1);
    }
    close(s);
    return NULL;
}

static int lost_one(struct node *n)
{
    return n->lost_count > 0;
}

static void victim_body(struct node *n)
{
    if (n->rc) return;
    struct scen *sc = n->sc;
    if (sc->raw_kind == RAW_RESET) {
        /* Queue a frame for the raw peer, and only look again once it has reset the
         * connection: the next poll's send fails, and the frame it sent before must still
         * be delivered first. */
        send_data(n, 1, 0);
        n->tp->ops->flush(n->tp);
        while (!atomic_load(&sc->flag[1])) sleep_ms(1);
        sleep_ms(20);
        send_data(n, 1, 1);
    }
    TCHECK(n, poll_until(n, lost_one, 10), "no lost() callback");
    /* Keep polling a while: nothing more may be delivered, nor reported. */
    double end = now_s() + 0.05;
    while (now_s() < end) n->tp->ops->poll(n->tp);
    atomic_store(&sc->flag[0], 1); /* the raw peer may close now */
    end = now_s() + 0.05;
    while (now_s() < end) n->tp->ops->poll(n->tp);
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_BYE, 0);
    TCHECK(n, n->tp->ops->send(n->tp, 1, &h, NULL) == -1, "send to a lost peer succeeded");
    TCHECK(n, n->tp->ops->send(n->tp, 0, &h, NULL) == -1, "send to self succeeded");
}

static void misbehaving_peer(int kind, const char *why1, const char *why2)
{
    struct scen sc = {.count = 2, .raw_kind = kind};
    int port = free_port();
    for (int i = 0; i < 2; i++) init_node(&sc.n[i], &sc, i, 2, port, 5000);
    sc.n[0].body = victim_body;
    pthread_create(&sc.n[0].th, NULL, node_main, &sc.n[0]);
    pthread_create(&sc.n[1].th, NULL, raw_main, &sc.n[1]);
    for (int i = 0; i < 2; i++) pthread_join(sc.n[i].th, NULL);
    for (int i = 0; i < 2; i++) {
        if (sc.n[i].rc) fail_msg("node %d: %s", i, sc.n[i].err);
        if (sc.n[i].fail[0]) fail_msg("%s", sc.n[i].fail);
    }
    struct node *v = &sc.n[0];
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "    lost: %s\n", v->lost_why);
    assert_int_equal(v->lost_count, 1);
    assert_int_equal(v->lost_peer, 1);
    assert_int_equal(v->delivered, 1); /* the good frame before, nothing after */
    char name[64];
    snprintf(name, sizeof name, "node 1 (127.0.0.1:%u)", v->addrs[1].port);
    assert_has(v->lost_why, name);
    assert_has(v->lost_why, why1);
    if (why2) assert_has(v->lost_why, why2);
}

static void peer_bad_magic(void **state)
{
    (void)state;
    misbehaving_peer(RAW_BAD_MAGIC, "sent a corrupt frame: magic 0x", "closing the connection");
}

static void peer_bad_page(void **state)
{
    (void)state;
    misbehaving_peer(RAW_BAD_PAGE, "sent a corrupt frame: GET_S page index 99999 outside",
                     "closing the connection");
}

static void peer_oversized_len(void **state)
{
    (void)state;
    misbehaving_peer(RAW_BIG_LEN, "sent a corrupt frame: DATA_S payload length 1073741824",
                     "closing the connection");
}

static void peer_wrong_src(void **state)
{
    (void)state;
    misbehaving_peer(RAW_WRONG_SRC,
                     "sent a corrupt frame: GET_S src 0 on the connection of "
                     "node 1",
                     NULL);
}

static void peer_truncated_header(void **state)
{
    (void)state;
    misbehaving_peer(RAW_TRUNC_HDR, "closed the connection in the middle of a frame",
                     "20 of its 32 header bytes");
}

static void peer_truncated_payload(void **state)
{
    (void)state;
    misbehaving_peer(RAW_TRUNC_PAYLOAD, "closed the connection in the middle of a DATA_S frame",
                     "1032 of 4128 bytes");
}

static void peer_eof(void **state)
{
    (void)state;
    misbehaving_peer(RAW_EOF, "closed the connection", NULL);
}

static void peer_reset_after_frame(void **state)
{
    (void)state;
    /* Whether the send or the receive notices first, the frame sent before the reset is
     * delivered (misbehaving_peer checks delivered == 1) and the loss is reported once. */
    misbehaving_peer(RAW_RESET, "lost the connection to node 1", NULL);
}

/* ---------------------------------------------------------------- service wait */

enum { CMD_NONE, CMD_SEND, CMD_QUIT };

static void sender_body(struct node *n)
{
    if (n->rc) return;
    struct scen *sc = n->sc;
    uint64_t seq = 0;
    for (;;) {
        int cmd = atomic_load(&sc->flag[1]);
        if (cmd == CMD_QUIT) break;
        if (cmd == CMD_SEND) {
            sleep_ms(50); /* let the other side get into its wait */
            send_data(n, 0, seq);
            seq += 2; /* GET_S only */
            n->tp->ops->flush(n->tp);
            atomic_store(&sc->flag[1], CMD_NONE);
        }
        sleep_ms(1);
    }
}

static void command(struct node *n, int cmd)
{
    atomic_store(&n->sc->flag[1], cmd);
}

static void wait_for_sender(struct node *n)
{
    while (atomic_load(&n->sc->flag[1]) != CMD_NONE) sleep_ms(1);
}

struct kicker {
    struct dsm_tp *tp;
    int delay_ms;
};

static void *kicker_main(void *arg)
{
    struct kicker *k = arg;
    sleep_ms(k->delay_ms);
    k->tp->ops->kick(k->tp);
    return NULL;
}

static void waiter_body(struct node *n)
{
    if (n->rc) return;
    struct dsm_tp *tp = n->tp;
    double t0;
    int r;
    /* deliver checks seqs: the sender sends GET_S 0, 2, 4, ... */
    n->reply_from_deliver = 0;
#define GOT_ONE()                                                                                  \
    do {                                                                                           \
        uint64_t before = n->delivered;                                                            \
        double e = now_s() + 5;                                                                    \
        while (n->delivered == before && now_s() < e) tp->ops->poll(tp);                           \
        TCHECK(n, n->delivered == before + 1, "the frame did not arrive");                         \
        n->next_seq[1]++; /* the sender skips odd seqs */                                          \
    } while (0)

    /* Armed, nothing comes: the timeout. */
    t0 = now_s();
    r = tp->ops->wait(tp, 1, 100000);
    TCHECK(n, r == 0 && now_s() - t0 >= 0.08, "quiet armed wait: %d after %.3f s", r, now_s() - t0);

    /* Armed, a frame comes: 1, well before the timeout. */
    command(n, CMD_SEND);
    t0 = now_s();
    r = tp->ops->wait(tp, 1, 5000000);
    TCHECK(n, r == 1 && now_s() - t0 < 4, "armed wait with data: %d after %.3f s", r, now_s() - t0);
    wait_for_sender(n);
    GOT_ONE();

    /* Re-armed, nothing new: the timeout again. */
    r = tp->ops->wait(tp, 1, 50000);
    TCHECK(n, r == 0, "re-armed quiet wait: %d", r);
    /* That wait armed the poll again; let it fire on the next frame, then go dormant. */
    command(n, CMD_SEND);
    r = tp->ops->wait(tp, 1, 5000000);
    TCHECK(n, r == 1, "armed wait with data (2): %d", r);
    wait_for_sender(n);
    GOT_ONE();
    /* Dormant (not armed, the fired poll is not re-armed): data arriving does not wake. */
    command(n, CMD_SEND);
    t0 = now_s();
    r = tp->ops->wait(tp, 0, 300000);
    TCHECK(n, r == 0 && now_s() - t0 >= 0.25, "dormant wait: %d after %.3f s", r, now_s() - t0);
    wait_for_sender(n);
    /* Armed again with the frame already there: at once. */
    t0 = now_s();
    r = tp->ops->wait(tp, 1, 5000000);
    TCHECK(n, r == 1 && now_s() - t0 < 1, "armed wait on waiting data: %d after %.3f s", r,
           now_s() - t0);
    GOT_ONE();

    /* A kick from another thread ends a long wait promptly, and says 0. */
    pthread_t kt;
    struct kicker k = {.tp = tp, .delay_ms = 50};
    pthread_create(&kt, NULL, kicker_main, &k);
    t0 = now_s();
    r = tp->ops->wait(tp, 1, 5000000);
    pthread_join(kt, NULL);
    TCHECK(n, r == 0 && now_s() - t0 < 2, "kicked wait: %d after %.3f s", r, now_s() - t0);
    /* ... also with no timeout at all. */
    pthread_create(&kt, NULL, kicker_main, &k);
    r = tp->ops->wait(tp, 1, -1);
    pthread_join(kt, NULL);
    TCHECK(n, r == 0, "kicked endless wait: %d", r);
    /* A kick before the wait makes the next wait return at once. */
    tp->ops->kick(tp);
    t0 = now_s();
    r = tp->ops->wait(tp, 1, 5000000);
    TCHECK(n, r == 0 && now_s() - t0 < 1, "pre-kicked wait: %d after %.3f s", r, now_s() - t0);
    /* ... and only that one. */
    t0 = now_s();
    r = tp->ops->wait(tp, 1, 50000);
    TCHECK(n, r == 0 && now_s() - t0 >= 0.04, "wait after the kick: %d after %.3f s", r,
           now_s() - t0);
    command(n, CMD_QUIT);
#undef GOT_ONE
}

static void service_wait(void **state)
{
    (void)state;
    struct scen sc = {.count = 2};
    int port = free_port();
    for (int i = 0; i < 2; i++) init_node(&sc.n[i], &sc, i, 2, port, 5000);
    sc.n[0].body = waiter_body;
    sc.n[1].body = sender_body;
    run_scen(&sc);
    for (int i = 0; i < 2; i++) assert_int_equal(sc.n[i].rc, DSM_OK);
}

/* ---------------------------------------------------------------- mesh setup failures */

static void absent_body(struct node *n)
{
    (void)n;
}

static void *absent_main(void *arg)
{
    /* Node 2 bootstraps, then never connects: its listener closes. */
    struct node *n = arg;
    int lfd;
    n->rc = dsm_bootstrap(&n->cfg, &lfd, n->addrs, n->err, sizeof n->err);
    if (!n->rc) close(lfd);
    return NULL;
}

static void mesh_missing_node(void **state)
{
    (void)state;
    struct scen sc = {.count = 3};
    int port = free_port();
    for (int i = 0; i < 3; i++) init_node(&sc.n[i], &sc, i, 3, port, 800);
    sc.n[0].body = sc.n[1].body = absent_body;
    double t0 = now_s();
    pthread_create(&sc.n[0].th, NULL, node_main, &sc.n[0]);
    pthread_create(&sc.n[1].th, NULL, node_main, &sc.n[1]);
    pthread_create(&sc.n[2].th, NULL, absent_main, &sc.n[2]);
    for (int i = 0; i < 3; i++) pthread_join(sc.n[i].th, NULL);
    assert_true(now_s() - t0 < 5);
    assert_int_equal(sc.n[2].rc, DSM_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sc.n[i].rc, DSM_EPEER);
        /* Named as soon as a probe finds its listener closed, not at the deadline. */
        char want[96];
        snprintf(want, sizeof want,
                 "node 2 (127.0.0.1:%u) refused the connection: it was listening when it joined",
                 sc.n[i].addrs[2].port);
        assert_has(sc.n[i].err, want);
        assert_true(sc.n[i].tp == NULL);
    }
}

/* Two nodes connect directly (no bootstrap, so nothing checked the job before). */
struct direct {
    struct node *n;
    int lfd;
};

static void *direct_main(void *arg)
{
    struct direct *d = arg;
    struct node *n = d->n;
    n->rc = dsm_tcp_create(&n->cfg, d->lfd, n->addrs, &n->lim, on_deliver, on_lost, n, &n->tp,
                           n->err, sizeof n->err);
    if (n->tp) n->tp->ops->destroy(n->tp);
    return NULL;
}

static int open_listener(struct dsm_peer_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd;
    assert_int_equal(dsm_net_numeric("127.0.0.1", 0, &ss, &sl), 0);
    assert_int_equal(dsm_net_listen((struct sockaddr *)&ss, sl, 16, 0, &fd), 0);
    sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    snprintf(a->host, sizeof a->host, "127.0.0.1");
    a->port = dsm_net_port((struct sockaddr *)&ss);
    return fd;
}

static void mesh_job_mismatch(void **state)
{
    (void)state;
    struct scen sc = {.count = 2};
    struct direct d[2];
    struct dsm_peer_addr addrs[2];
    for (int i = 0; i < 2; i++) {
        init_node(&sc.n[i], &sc, i, 2, 1, 3000);
        d[i] = (struct direct){.n = &sc.n[i], .lfd = open_listener(&addrs[i])};
    }
    snprintf(sc.n[1].cfg.desc.job, sizeof sc.n[1].cfg.desc.job, "b");
    for (int i = 0; i < 2; i++) {
        memcpy(sc.n[i].addrs, addrs, sizeof addrs);
        pthread_create(&sc.n[i].th, NULL, direct_main, &d[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(sc.n[i].th, NULL);
    char want[160];
    assert_int_equal(sc.n[0].rc, DSM_EHANDSHAKE);
    snprintf(want, sizeof want,
             "node 1 (127.0.0.1:%u) belongs to another job: job 'a' here, 'b' there",
             addrs[1].port);
    assert_has(sc.n[0].err, want);
    assert_int_equal(sc.n[1].rc, DSM_EHANDSHAKE);
    snprintf(want, sizeof want,
             "node 0 (127.0.0.1:%u) belongs to another job: job 'b' here, 'a' there",
             addrs[0].port);
    assert_has(sc.n[1].err, want);
}

static void *junk_client(void *arg)
{
    struct dsm_peer_addr *a = arg;
    struct sockaddr_storage ss;
    socklen_t sl;
    dsm_net_numeric(a->host, a->port, &ss, &sl);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&ss, sl) == 0) {
        char junk[DSM_NET_HELLO_SIZE];
        memset(junk, 'x', sizeof junk);
        ssize_t w = write(s, junk, sizeof junk);
        (void)w;
        char b[256];
        while (read(s, b, sizeof b) > 0) {
        }
    }
    close(s);
    return NULL;
}

static void mesh_junk_connection(void **state)
{
    (void)state;
    /* Node 0 of 2 waits for node 1; a stranger connects instead and sends junk: it is closed
     * and does not end the job (which then ends for lack of node 1). */
    struct scen sc = {.count = 1};
    struct dsm_peer_addr addrs[2];
    init_node(&sc.n[0], &sc, 0, 2, 1, 3000);
    struct direct d = {.n = &sc.n[0], .lfd = open_listener(&addrs[0])};
    /* Node 1 "exists" (its listener is open, so node 0's probes find it alive) but never
     * connects. */
    int l1 = open_listener(&addrs[1]);
    memcpy(sc.n[0].addrs, addrs, sizeof addrs);
    pthread_t jt;
    pthread_create(&sc.n[0].th, NULL, direct_main, &d);
    pthread_create(&jt, NULL, junk_client, &addrs[0]);
    pthread_join(sc.n[0].th, NULL);
    pthread_join(jt, NULL);
    /* The stranger is closed with a note, and node 0 goes on waiting for node 1. */
    assert_int_equal(sc.n[0].rc, DSM_EPEER);
    close(l1);
    char want[96];
    snprintf(want, sizeof want, "node 1 (127.0.0.1:%u): never connected", addrs[1].port);
    assert_has(sc.n[0].err, want);
    assert_has(sc.n[0].notes, "closed a connection from 127.0.0.1:");
    assert_has(sc.n[0].notes, "data that is not from ufdsm (magic 0x78787878");
}

int main(void)
{
    alarm(120); /* a hang is a failure, not a stuck CI job */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mesh3_traffic),
        cmocka_unit_test(burst_beyond_socket_buffers),
        cmocka_unit_test(peer_bad_magic),
        cmocka_unit_test(peer_bad_page),
        cmocka_unit_test(peer_oversized_len),
        cmocka_unit_test(peer_wrong_src),
        cmocka_unit_test(peer_truncated_header),
        cmocka_unit_test(peer_truncated_payload),
        cmocka_unit_test(peer_eof),
        cmocka_unit_test(peer_reset_after_frame),
        cmocka_unit_test(service_wait),
        cmocka_unit_test(mesh_missing_node),
        cmocka_unit_test(mesh_job_mismatch),
        cmocka_unit_test(mesh_junk_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

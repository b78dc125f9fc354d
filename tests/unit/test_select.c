/*
 * test_select.c - DSM_TRANSPORT=auto|rdma|tcp chosen by all nodes together
 * (transport/select.c), with nodes as threads of this process over 127.0.0.1.
 *
 *   - auto: every node makes the same choice and says why; on a host without an RDMA device
 *     (CI, this machine) that is TCP with "cannot use RDMA: no RDMA device"; inside a
 *     soft-RoCE guest it is RDMA. Either way frames then flow both ways, pages intact, in
 *     order, also replies sent from inside deliver.
 *   - rdma forced where there is no device: every node fails with DSM_ETRANSPORT and the
 *     reason (skipped where a device exists: then it must work, and is checked like auto).
 *   - a node with DSM_TRANSPORT=tcp next to one with auto: the auto node names the mismatch
 *     instead of waiting for a record that never comes.
 *   - a one-way flood (the receiver never replies): over RDMA, credits must come back in
 *     credit messages of their own, or the sender stalls after one window; through the
 *     shared-memory rings, the ring fills and the rest waits in the sender's backlog.
 *   - shared memory (transport/shm.c): auto and shm route frames between nodes of one host
 *     through rings (the nodes here are threads of one process, which /proc serves the same
 *     way); tcp does not. A receiver asleep in wait() is woken by the doorbell.
 *
 * Threads record their first failure; the main thread asserts after joining (cmocka asserts
 * are not thread-safe). The watchdog alarm turns a hang into a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"
#include "net.h"
#include "select.h"
#include "transport.h"
#include "wire.h"

#define NPAGES 256u
#define BASE   0x500000000000ull
#define FRAMES 300
#define FLOOD  2000

static void fill_page(uint8_t *p, int src, uint64_t seq)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15ull ^ (uint64_t)src << 56;
    for (unsigned i = 0; i < DSM_PAGE_SIZE; i += 8) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        memcpy(p + i, &x, 8);
    }
}

struct node {
    int rank, nodes;
    const char *kind;
    char coord[64];
    struct dsm_boot_cfg cfg;
    struct dsm_wire_limits lim;
    struct dsm_tp *tp;
    int rc;
    char err[1024], chosen[1024];
    char fail[512];
    int exchange; /* run the frame exchange after a successful create (2: one way, 3: a
                   * sleeping receiver) */
    int woke;     /* exchange 3: what the receiver's wait returned */
    uint64_t next_seq, acks;
    int bye, lost;
    char tp_name[16]; /* the created transport's ops name */
    pthread_t th;
};

static void tfail(struct node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tfail(struct node *n, const char *fmt, ...)
{
    if (n->fail[0]) return;
    int k = snprintf(n->fail, sizeof n->fail, "node %d: ", n->rank);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->fail + k, sizeof n->fail - (size_t)k, fmt, ap);
    va_end(ap);
}

static void on_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct node *n = ctx;
    if ((h->len == 0) != (payload == NULL)) tfail(n, "len %u with payload %p", h->len, payload);
    switch (h->type) {
    case DSM_MSG_DATA_S: {
        if (h->arg1 != n->next_seq)
            tfail(n, "seq %llu, expected %llu", (unsigned long long)h->arg1,
                  (unsigned long long)n->next_seq);
        n->next_seq = h->arg1 + 1;
        uint8_t want[DSM_PAGE_SIZE];
        fill_page(want, h->src, h->arg1);
        if (h->len != DSM_PAGE_SIZE || memcmp(payload, want, DSM_PAGE_SIZE))
            tfail(n, "page of seq %llu differs", (unsigned long long)h->arg1);
        /* One way: no replies to carry credits back, so the receiver must return them in
         * credit messages of their own; one reply at the end says "all here". */
        if (n->exchange == 2 && n->next_seq < FLOOD) break;
        /* A reply from inside deliver, as the runtime does. */
        struct dsm_wire_hdr r;
        dsm_wire_init(&r, DSM_MSG_INV_ACK, (uint32_t)n->rank);
        r.arg0 = h->arg0;
        if (n->tp->ops->send(n->tp, h->src, &r, NULL)) tfail(n, "reply failed");
        break;
    }
    case DSM_MSG_INV_ACK:
        n->acks++;
        break;
    case DSM_MSG_BYE:
        n->bye = 1;
        break;
    case DSM_MSG_ABORT:
        /* The tcp node of the mismatch gets the auto node's selection record: its runtime
         * would stop on it, naming the sender. */
        if (!n->exchange) break;
        /* fall through */
    default:
        tfail(n, "unexpected %s", dsm_wire_type_name(h->type));
    }
}

static void on_lost(void *ctx, int peer, const char *why)
{
    struct node *n = ctx;
    (void)peer;
    if (!n->bye) {
        n->lost = 1;
        if (n->exchange) tfail(n, "lost: %s", why);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void exchange(struct node *n)
{
    int peer = 1 - n->rank;
    static __thread uint8_t page[DSM_PAGE_SIZE];
    /* A burst larger than any receive window: flow control must hold it, not drop it. */
    for (uint64_t s = 0; s < FRAMES; s++) {
        struct dsm_wire_hdr h;
        dsm_wire_init(&h, DSM_MSG_DATA_S, (uint32_t)n->rank);
        h.arg0 = s % NPAGES;
        h.arg1 = s;
        h.len = DSM_PAGE_SIZE;
        fill_page(page, n->rank, s);
        if (n->tp->ops->send(n->tp, peer, &h, page))
            tfail(n, "send %llu failed", (unsigned long long)s);
    }
    double end = now_s() + 20;
    while ((n->next_seq < FRAMES || n->acks < FRAMES) && now_s() < end && !n->fail[0]) {
        n->tp->ops->poll(n->tp);
        n->tp->ops->flush(n->tp);
    }
    if (n->next_seq < FRAMES || n->acks < FRAMES)
        tfail(n, "got %llu frames and %llu replies of %d", (unsigned long long)n->next_seq,
              (unsigned long long)n->acks, FRAMES);
    struct dsm_wire_hdr b;
    dsm_wire_init(&b, DSM_MSG_BYE, (uint32_t)n->rank);
    n->tp->ops->send(n->tp, peer, &b, NULL);
    end = now_s() + 10;
    while (!n->bye && now_s() < end) n->tp->ops->poll(n->tp);
    if (!n->bye) tfail(n, "no BYE");
    if (n->tp->cnt.msgs_sent + n->tp->ring_cnt.msgs_sent < FRAMES ||
        n->tp->cnt.msgs_recv + n->tp->ring_cnt.msgs_recv < FRAMES)
        tfail(n, "counters: %llu sent, %llu received", (unsigned long long)n->tp->cnt.msgs_sent,
              (unsigned long long)n->tp->cnt.msgs_recv);
}

/* Node 0 floods node 1, which only receives; node 1 answers once at the end. */
static void one_way(struct node *n)
{
    static __thread uint8_t page[DSM_PAGE_SIZE];
    double end = now_s() + 60;
    if (n->rank == 0) {
        for (uint64_t s = 0; s < FLOOD; s++) {
            struct dsm_wire_hdr h;
            dsm_wire_init(&h, DSM_MSG_DATA_S, 0);
            h.arg0 = s % NPAGES;
            h.arg1 = s;
            h.len = DSM_PAGE_SIZE;
            fill_page(page, 0, s);
            if (n->tp->ops->send(n->tp, 1, &h, page))
                tfail(n, "send %llu failed", (unsigned long long)s);
            if (s % 100 == 0) n->tp->ops->poll(n->tp);
        }
        while (!n->acks && now_s() < end && !n->fail[0]) n->tp->ops->poll(n->tp);
        if (!n->acks) tfail(n, "node 1 never confirmed the flood");
    } else {
        while (n->next_seq < FLOOD && now_s() < end && !n->fail[0]) n->tp->ops->poll(n->tp);
        if (n->next_seq < FLOOD)
            tfail(n, "got %llu of %d flooded frames", (unsigned long long)n->next_seq, FLOOD);
    }
    struct dsm_wire_hdr b;
    dsm_wire_init(&b, DSM_MSG_BYE, (uint32_t)n->rank);
    n->tp->ops->send(n->tp, 1 - n->rank, &b, NULL);
    while (!n->bye && now_s() < end) n->tp->ops->poll(n->tp);
    if (!n->bye) tfail(n, "no BYE");
}

/* Node 1 goes to sleep in wait() with a long timeout (armed, as the service thread does);
 * node 0 sends one frame once node 1 says it sleeps. Without the doorbell, node 1 would sleep
 * out the whole timeout and wait would say 0. */
static _Atomic int sleeper_ready;
static void sleeper(struct node *n)
{
    if (n->rank == 1) {
        atomic_store(&sleeper_ready, 1);
        n->woke = n->tp->ops->wait(n->tp, 1, 60 * 1000000L);
        double end = now_s() + 10;
        while (!n->next_seq && now_s() < end) n->tp->ops->poll(n->tp);
        if (!n->next_seq) tfail(n, "the frame never came");
    } else {
        while (!atomic_load(&sleeper_ready)) usleep(1000);
        usleep(200 * 1000); /* into its sleep (or not yet: the test holds either way) */
        static __thread uint8_t page[DSM_PAGE_SIZE];
        struct dsm_wire_hdr h;
        dsm_wire_init(&h, DSM_MSG_DATA_S, 0);
        h.len = DSM_PAGE_SIZE;
        fill_page(page, 0, 0);
        if (n->tp->ops->send(n->tp, 1, &h, page)) tfail(n, "send failed");
        n->tp->ops->flush(n->tp);
        double end = now_s() + 10;
        while (!n->acks && now_s() < end) n->tp->ops->poll(n->tp);
    }
    struct dsm_wire_hdr b;
    dsm_wire_init(&b, DSM_MSG_BYE, (uint32_t)n->rank);
    n->tp->ops->send(n->tp, 1 - n->rank, &b, NULL);
    double end = now_s() + 10;
    while (!n->bye && now_s() < end) n->tp->ops->poll(n->tp);
}

static void *node_main(void *arg)
{
    struct node *n = arg;
    int lfd;
    struct dsm_peer_addr addrs[DSM_MAX_NODES];
    n->rc = dsm_bootstrap(&n->cfg, &lfd, addrs, n->err, sizeof n->err);
    if (!n->rc)
        n->rc = dsm_transport_create(n->kind, &n->cfg, lfd, addrs, &n->lim, on_deliver, on_lost, n,
                                     &n->tp, n->chosen, sizeof n->chosen, n->err, sizeof n->err);
    if (n->tp) snprintf(n->tp_name, sizeof n->tp_name, "%s", n->tp->ops->name);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "    node %d (%s): rc %d: %s%s\n", n->rank, n->kind, n->rc, n->chosen,
                n->err);
    if (!n->rc && n->exchange == 1) exchange(n);
    if (!n->rc && n->exchange == 2) one_way(n);
    if (!n->rc && n->exchange == 3) sleeper(n);
    if (!n->rc && !n->exchange) {
        /* The tcp node of the mismatch: talk first, then wait for the other to give up. */
        struct dsm_wire_hdr h;
        dsm_wire_init(&h, DSM_MSG_INV_ACK, (uint32_t)n->rank);
        n->tp->ops->send(n->tp, 1 - n->rank, &h, NULL);
        double end = now_s() + 20;
        while (!n->lost && now_s() < end) n->tp->ops->poll(n->tp);
        if (!n->lost) tfail(n, "the peer never gave up");
    }
    if (n->tp) n->tp->ops->destroy(n->tp);
    return NULL;
}

static void run(struct node *n, const char *k0, const char *k1, int exchange_frames)
{
    int port = free_port();
    for (int r = 0; r < 2; r++) {
        memset(&n[r], 0, sizeof n[r]);
        n[r].rank = r;
        n[r].nodes = 2;
        n[r].kind = r ? k1 : k0;
        n[r].exchange = exchange_frames;
        snprintf(n[r].coord, sizeof n[r].coord, "127.0.0.1:%d", port);
        n[r].cfg = (struct dsm_boot_cfg){
            .rank = r, .nodes = 2, .coordinator = n[r].coord, .timeout_ms = 10000};
        snprintf(n[r].cfg.desc.job, sizeof n[r].cfg.desc.job, "select");
        n[r].cfg.desc.version = DSM_WIRE_VERSION;
        n[r].cfg.desc.nodes = 2;
        n[r].cfg.desc.region_base = BASE;
        n[r].cfg.desc.region_size = (uint64_t)NPAGES * DSM_PAGE_SIZE;
        n[r].cfg.desc.page_size = DSM_PAGE_SIZE;
        n[r].lim = (struct dsm_wire_limits){.npages = NPAGES, .base = BASE, .nodes = 2};
    }
    for (int r = 0; r < 2; r++)
        assert_int_equal(pthread_create(&n[r].th, NULL, node_main, &n[r]), 0);
    for (int r = 0; r < 2; r++) pthread_join(n[r].th, NULL);
    for (int r = 0; r < 2; r++)
        if (n[r].fail[0]) fail_msg("%s", n[r].fail);
}

#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("'%s' not in '%s'", (needle), (hay));               \
    } while (0)

static int have_device;

static void auto_agrees_and_works(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "auto", "auto", 1);
    for (int r = 0; r < 2; r++) assert_int_equal(n[r].rc, 0);
    /* The same choice everywhere, said with its reason. */
    int tcp0 = !strncmp(n[0].chosen, "tcp (auto: ", 11),
        tcp1 = !strncmp(n[1].chosen, "tcp (auto: ", 11);
    assert_int_equal(tcp0, tcp1);
    /* Both nodes are on this host: frames go through the rings either way. */
    for (int r = 0; r < 2; r++) {
        assert_has(n[r].chosen, "; shared memory to node");
        assert_string_equal(n[r].tp_name, "shm+tcp");
    }
    if (tcp0) {
        assert_has(n[0].chosen, "cannot use RDMA");
        assert_int_equal(strcspn(n[0].chosen, ";"), strcspn(n[1].chosen, ";"));
        assert_memory_equal(n[0].chosen, n[1].chosen, strcspn(n[0].chosen, ";"));
        if (!have_device) assert_has(n[0].chosen, "no RDMA device");
    } else {
        assert_has(n[0].chosen, "rdma (auto");
        assert_has(n[1].chosen, "rdma (auto");
    }
}

static void forced_rdma(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "rdma", "rdma", have_device);
    if (have_device) {
        for (int r = 0; r < 2; r++) assert_int_equal(n[r].rc, 0);
        assert_has(n[0].chosen, "rdma (requested");
        return;
    }
    for (int r = 0; r < 2; r++) {
        assert_int_equal(n[r].rc, DSM_ETRANSPORT);
        assert_has(n[r].err, "DSM_TRANSPORT=rdma");
        assert_has(n[r].err, "no RDMA device");
        assert_null(n[r].tp);
    }
}

static void tcp_next_to_auto(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "tcp", "auto", 0);
    assert_int_equal(n[0].rc, 0);
    assert_string_equal(n[0].chosen, "tcp (requested)");
    assert_int_equal(n[1].rc, DSM_EHANDSHAKE);
    assert_has(n[1].err, "DSM_TRANSPORT");
}

static void one_way_flood(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "auto", "auto", 2);
    for (int r = 0; r < 2; r++) assert_int_equal(n[r].rc, 0);
    assert_int_equal(n[1].next_seq, FLOOD);
}

static void tcp_requested(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "tcp", "tcp", 1);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(n[r].rc, 0);
        assert_string_equal(n[r].chosen, "tcp (requested)");
        assert_string_equal(n[r].tp_name, "tcp");
    }
}

static void shm_requested(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "shm", "shm", 1);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(n[r].rc, 0);
        assert_has(n[r].chosen, "requested shm");
        assert_has(n[r].chosen, "; shared memory to node");
        assert_string_equal(n[r].tp_name, "shm+tcp");
    }
}

static void shm_flood(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "shm", "shm", 2);
    for (int r = 0; r < 2; r++) assert_int_equal(n[r].rc, 0);
    assert_int_equal(n[1].next_seq, FLOOD);
}

static void shm_wakes_a_sleeper(void **state)
{
    (void)state;
    struct node n[2];
    atomic_store(&sleeper_ready, 0);
    run(n, "shm", "shm", 3);
    for (int r = 0; r < 2; r++) assert_int_equal(n[r].rc, 0);
    assert_int_equal(n[1].woke, 1);
    assert_int_equal(n[1].next_seq, 1);
}

static void shm_next_to_tcp(void **state)
{
    (void)state;
    struct node n[2];
    run(n, "tcp", "shm", 0);
    assert_int_equal(n[0].rc, 0);
    assert_int_equal(n[1].rc, DSM_EHANDSHAKE);
    assert_has(n[1].err, "DSM_TRANSPORT");
}

int main(void)
{
    alarm(300); /* a hang is a failure */
    have_device = access("/sys/class/infiniband", F_OK) == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auto_agrees_and_works),
        cmocka_unit_test(forced_rdma),
        cmocka_unit_test(tcp_next_to_auto),
        cmocka_unit_test(one_way_flood),
        cmocka_unit_test(tcp_requested),
        cmocka_unit_test(shm_requested),
        cmocka_unit_test(shm_flood),
        cmocka_unit_test(shm_wakes_a_sleeper),
        cmocka_unit_test(shm_next_to_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

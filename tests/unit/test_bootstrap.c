/*
 * test_bootstrap.c - dsm_bootstrap with several nodes as threads of this process, over
 * 127.0.0.1: agreement on the table, every named mismatch on both sides, unreachable
 * coordinator, missing and duplicate nodes, garbage on the coordinator port (both ways), and
 * malformed coordinator addresses.
 *
 * Threading: each node is one thread running dsm_bootstrap with its own configuration; the
 * threads only write their own struct node, and cmocka asserts run on the main thread after
 * they have been joined. Coordinator ports are picked free by the kernel, so the test can run
 * beside other tests.
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "dsm.h"
#include "transport.h"

struct node {
    struct dsm_boot_cfg cfg;
    char coord[64];
    int rc;
    int lfd;
    struct dsm_peer_addr addrs[DSM_MAX_NODES];
    char err[512];
    double secs; /* how long dsm_bootstrap took */
    pthread_t th;
    struct dsm_auth_key key;
    pthread_mutex_t mu;
    char notes[4096]; /* what the bootstrap told us about closed strangers */
};

static void take_note(void *ctx, const char *msg)
{
    struct node *n = ctx;
    pthread_mutex_lock(&n->mu);
    size_t l = strlen(n->notes);
    snprintf(n->notes + l, sizeof n->notes - l, "%s\n", msg);
    pthread_mutex_unlock(&n->mu);
}

/* Gives the node a secret (and a notebook for what it closes). */
static void set_secret(struct node *n, const char *secret)
{
    char why[256];
    if (dsm_auth_key_init(&n->key, secret, strlen(secret), why, sizeof why)) fail_msg("%s", why);
    n->cfg.key = &n->key;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void init_node(struct node *n, int rank, int nodes, int port, int timeout_ms)
{
    memset(n, 0, sizeof *n);
    snprintf(n->coord, sizeof n->coord, "127.0.0.1:%d", port);
    n->cfg.rank = rank;
    n->cfg.nodes = nodes;
    n->cfg.coordinator = n->coord;
    n->cfg.timeout_ms = timeout_ms;
    snprintf(n->cfg.desc.job, sizeof n->cfg.desc.job, "a");
    n->cfg.desc.version = DSM_WIRE_VERSION;
    n->cfg.desc.nodes = (uint32_t)nodes;
    n->cfg.desc.region_base = 0x500000000000ull;
    n->cfg.desc.region_size = 4294967296ull;
    n->cfg.desc.page_size = DSM_PAGE_SIZE;
    n->lfd = -2;
    pthread_mutex_init(&n->mu, NULL);
    n->cfg.note = take_note;
    n->cfg.note_ctx = n;
}

static void *node_main(void *arg)
{
    struct node *n = arg;
    double t0 = now_s();
    n->rc = dsm_bootstrap(&n->cfg, &n->lfd, n->addrs, n->err, sizeof n->err);
    n->secs = now_s() - t0;
    return NULL;
}

static void start(struct node *n)
{
    assert_int_equal(pthread_create(&n->th, NULL, node_main, n), 0);
}

static void finish(struct node *n)
{
    pthread_join(n->th, NULL);
    if (n->rc && getenv("TEST_VERBOSE")) /* to read the messages as users will */
        fprintf(stderr, "    node %d: rc %d: %s\n", n->cfg.rank, n->rc, n->err);
    if (n->rc == DSM_OK) {
        assert_true(n->lfd >= 0);
        close(n->lfd);
    } else {
        assert_int_equal(n->lfd, -1);
    }
}

static void run_all(struct node *n, int count)
{
    for (int i = 0; i < count; i++) start(&n[i]);
    for (int i = 0; i < count; i++) finish(&n[i]);
}

#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        if (!strstr((hay), (needle))) fail_msg("'%s' not in '%s'", (needle), (hay));               \
    } while (0)

/* ---------------------------------------------------------------- tests */

static void three_nodes_agree(void **state)
{
    (void)state;
    struct node n[3];
    int port = free_port();
    for (int i = 0; i < 3; i++) init_node(&n[i], i, 3, port, 5000);
    for (int i = 0; i < 3; i++) start(&n[i]);
    /* The listeners are the real ones: check each node's port before closing them. */
    uint16_t lport[3];
    for (int i = 0; i < 3; i++) {
        pthread_join(n[i].th, NULL);
        if (n[i].rc) fail_msg("node %d: %s", i, n[i].err);
        struct sockaddr_in a;
        socklen_t l = sizeof a;
        assert_int_equal(getsockname(n[i].lfd, (struct sockaddr *)&a, &l), 0);
        lport[i] = ntohs(a.sin_port);
        close(n[i].lfd);
    }
    for (int i = 0; i < 3; i++) {
        for (int r = 0; r < 3; r++) {
            assert_string_equal(n[i].addrs[r].host, "127.0.0.1");
            assert_int_equal(n[i].addrs[r].port, lport[r]);
            assert_memory_equal(&n[i].addrs[r], &n[0].addrs[r], sizeof n[0].addrs[r]);
        }
    }
}

static void single_node(void **state)
{
    (void)state;
    struct node n;
    init_node(&n, 0, 1, free_port(), 1000);
    run_all(&n, 1);
    assert_int_equal(n.rc, DSM_OK);
    assert_true(n.addrs[0].port != 0);
}

static void localhost_by_name(void **state)
{
    (void)state;
    struct node n[2];
    int port = free_port();
    for (int i = 0; i < 2; i++) {
        init_node(&n[i], i, 2, port, 5000);
        snprintf(n[i].coord, sizeof n[i].coord, "localhost:%d", port);
    }
    run_all(n, 2);
    for (int i = 0; i < 2; i++)
        if (n[i].rc) fail_msg("node %d: %s", i, n[i].err);
    assert_string_equal(n[1].addrs[0].host, "127.0.0.1");
    assert_string_equal(n[0].addrs[1].host, "127.0.0.1");
}

/* Two nodes, node 1 configured by `tweak`; both must fail naming the difference. */
static void mismatch(void (*tweak)(struct dsm_job_desc *), const char *at0, const char *at1)
{
    struct node n[2];
    int port = free_port();
    for (int i = 0; i < 2; i++) init_node(&n[i], i, 2, port, 5000);
    tweak(&n[1].cfg.desc);
    run_all(n, 2);
    assert_int_equal(n[0].rc, DSM_EHANDSHAKE);
    assert_int_equal(n[1].rc, DSM_EHANDSHAKE);
    assert_has(n[0].err, at0);
    assert_has(n[1].err, at1);
    assert_true(n[0].secs < 4 && n[1].secs < 4); /* at once, not at the timeout */
}

static void job_b(struct dsm_job_desc *d)
{
    snprintf(d->job, sizeof d->job, "b");
}
static void version_next(struct dsm_job_desc *d)
{
    d->version = DSM_WIRE_VERSION + 1;
}
static void memory_2g(struct dsm_job_desc *d)
{
    d->region_size = 2147483648ull;
}
static void base_other(struct dsm_job_desc *d)
{
    d->region_base = 0x600000000000ull;
}

static void job_mismatch(void **state)
{
    (void)state;
    mismatch(job_b,
             "node 1 belongs to another job: job 'a' here, 'b' there — start all nodes "
             "with the same DSM_JOB",
             "node 0 belongs to another job: job 'b' here, 'a' there");
}

static void version_mismatch(void **state)
{
    (void)state;
    mismatch(version_next,
             "protocol version 3 here, 4 on node 1 — run the same ufdsm build everywhere",
             "protocol version 4 here, 3 on node 0");
}

static void memory_mismatch(void **state)
{
    (void)state;
    mismatch(memory_2g, "DSM_MEMORY differs: 4294967296 here, 2147483648 on node 1",
             "DSM_MEMORY differs: 2147483648 here, 4294967296 on node 0");
}

static void base_mismatch(void **state)
{
    (void)state;
    mismatch(base_other, "region base differs: 0x500000000000 here, 0x600000000000 on node 1",
             "region base differs: 0x600000000000 here, 0x500000000000 on node 0");
}

static void coordinator_unreachable(void **state)
{
    (void)state;
    struct node n;
    int port = free_port();
    init_node(&n, 1, 2, port, 600);
    run_all(&n, 1);
    assert_int_equal(n.rc, DSM_EPEER);
    char want[128];
    snprintf(want, sizeof want,
             "cannot reach the coordinator (node 0) at 127.0.0.1:%d after 0.6 s: Connection "
             "refused — start node 0",
             port);
    assert_has(n.err, want);
    assert_true(n.secs >= 0.5 && n.secs < 3);
}

static void missing_node(void **state)
{
    (void)state;
    struct node n[2];
    int port = free_port();
    for (int i = 0; i < 2; i++) init_node(&n[i], i, 3, port, 700); /* node 2 never comes */
    run_all(n, 2);
    assert_int_equal(n[0].rc, DSM_EPEER);
    assert_has(n[0].err, "waiting for node 2 to join");
    assert_has(n[0].err, "(2 of 3 nodes are here)");
    /* The node that did join hears why from the coordinator, before its own timeout. */
    assert_int_equal(n[1].rc, DSM_EPEER);
    assert_has(n[1].err, "gave up: timed out");
    assert_has(n[1].err, "node 2");
    assert_true(n[0].secs < 3 && n[1].secs < 3);
}

static void duplicate_rank(void **state)
{
    (void)state;
    struct node n[3];
    int port = free_port();
    for (int i = 0; i < 3; i++) init_node(&n[i], i == 2 ? 1 : i, 3, port, 3000);
    run_all(n, 3);
    assert_int_equal(n[0].rc, DSM_EHANDSHAKE);
    assert_has(n[0].err, "node 1 joined twice");
    assert_int_equal(n[1].rc, DSM_EHANDSHAKE);
    assert_int_equal(n[2].rc, DSM_EHANDSHAKE);
    assert_has(n[1].err, "joined twice");
    assert_has(n[2].err, "joined twice");
}

static void bad_coordinator_strings(void **state)
{
    (void)state;
    const char *bad[] = {NULL,
                         "",
                         "127.0.0.1",
                         "127.0.0.1:",
                         ":7400",
                         "127.0.0.1:0",
                         "127.0.0.1:70000",
                         "127.0.0.1:74x",
                         "::1:7400",
                         "[::1",
                         "[::1]7400"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct node n;
        init_node(&n, 1, 2, 1, 500);
        n.cfg.coordinator = bad[i];
        run_all(&n, 1);
        if (n.rc != DSM_EINVAL)
            fail_msg("'%s': rc %d (%s), expected DSM_EINVAL", bad[i] ? bad[i] : "(null)", n.rc,
                     n.err);
        assert_has(n.err, "host:port");
    }
    /* A name that does not resolve: EINVAL, or EPEER if the resolver itself is unreachable
     * (EAI_AGAIN); both say what was expected. */
    struct node n;
    init_node(&n, 1, 2, 1, 500);
    n.cfg.coordinator = "host.invalid.:7400";
    run_all(&n, 1);
    assert_true(n.rc == DSM_EINVAL || n.rc == DSM_EPEER);
    assert_has(n.err, "cannot resolve the coordinator host 'host.invalid.'");
    assert_has(n.err, "host:port");
}

static void bad_config(void **state)
{
    (void)state;
    struct node n;
    init_node(&n, 2, 2, 7400, 500);
    run_all(&n, 1);
    assert_int_equal(n.rc, DSM_EINVAL);
    assert_has(n.err, "DSM_RANK=2 is not in 0..1");
    init_node(&n, 0, 65, 7400, 500);
    run_all(&n, 1);
    assert_int_equal(n.rc, DSM_EINVAL);
}

/* A program that is not a ufdsm node connects to the coordinator and talks. */
struct raw {
    int port;
    pthread_t th;
};

static void *garbage_client(void *arg)
{
    struct raw *r = arg;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int tries = 0; tries < 200; tries++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
            char junk[200];
            memset(junk, 0xab, sizeof junk);
            ssize_t w = write(s, junk, sizeof junk);
            (void)w;
            char buf[256];
            while (read(s, buf, sizeof buf) > 0) {
            }
            close(s);
            return NULL;
        }
        close(s);
        usleep(10000);
    }
    return NULL;
}

/* Garbage on the coordinator port is closed with a note naming its address; the real
 * node that joins afterwards is not affected. */
static void garbage_at_coordinator(void **state)
{
    (void)state;
    struct node n[2];
    struct raw r = {.port = free_port()};
    for (int i = 0; i < 2; i++) init_node(&n[i], i, 2, r.port, 3000);
    start(&n[0]);
    pthread_create(&r.th, NULL, garbage_client, &r);
    pthread_join(r.th, NULL); /* the coordinator closed it: the garbage came first */
    start(&n[1]);
    finish(&n[0]);
    finish(&n[1]);
    if (n[0].rc || n[1].rc) fail_msg("node 0: %s / node 1: %s", n[0].err, n[1].err);
    assert_has(n[0].notes, "closed a connection from 127.0.0.1:");
    assert_has(n[0].notes, "data that is not from ufdsm (magic 0xabababab");
}

/* A node with the right job but the wrong secret is refused (and says why); the job it
 * tried to join completes with the right nodes. */
static void wrong_secret_refused(void **state)
{
    (void)state;
    struct node n[3];
    int port = free_port();
    for (int i = 0; i < 3; i++) {
        init_node(&n[i], i, 2, port, 4000);
        set_secret(&n[i], i == 2 ? "not-the-secret-of-this-job" : "0123456789abcdef-right");
    }
    n[2].cfg.rank = 1; /* the intruder claims the rank the real node 1 has */
    start(&n[0]);
    start(&n[2]);
    finish(&n[2]);
    start(&n[1]);
    finish(&n[0]);
    finish(&n[1]);
    if (n[0].rc || n[1].rc) fail_msg("node 0: %s / node 1: %s", n[0].err, n[1].err);
    assert_int_equal(n[2].rc, DSM_EHANDSHAKE);
    assert_has(n[2].err, "no proof of this job's secret");
    assert_has(n[2].err, "refusing to join");
    assert_has(n[0].notes, "no proof of this job's secret");
}

/* A program with the wrong secret on the coordinator port (squatting it) is refused: the
 * joiner sends it nothing about the job. */
static void fake_coordinator_refused(void **state)
{
    (void)state;
    struct node n[2];
    int port = free_port();
    for (int i = 0; i < 2; i++) {
        init_node(&n[i], i, 2, port, 3000);
        set_secret(&n[i], i ? "the-real-secret-0123" : "a-squatter-guessing-it");
    }
    n[0].cfg.desc.region_size = 1; /* would be named as a mismatch if a join got through */
    run_all(n, 2);
    assert_int_equal(n[1].rc, DSM_EHANDSHAKE);
    assert_has(n[1].err, "the coordinator at 127.0.0.1:");
    assert_has(n[1].err, "no proof of this job's secret");
    assert_int_equal(n[0].rc, DSM_EPEER); /* its join never came */
}

/* Many idle connections (more than the coordinator's slots) during startup: they are closed
 * (deadline or eviction) and the real node joins. */
static void idle_connections(void **state)
{
    (void)state;
    enum { IDLE = 160 };
    struct node n[2];
    int port = free_port();
    for (int i = 0; i < 2; i++) init_node(&n[i], i, 2, port, 8000);
    start(&n[0]);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fds[IDLE], nfd = 0;
    for (int tries = 0; nfd < IDLE && tries < 400; tries++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            fds[nfd++] = s;
        else {
            close(s);
            usleep(10000);
        }
    }
    assert_int_equal(nfd, IDLE);
    start(&n[1]);
    finish(&n[0]);
    finish(&n[1]);
    for (int i = 0; i < nfd; i++) close(fds[i]);
    if (n[0].rc || n[1].rc) fail_msg("node 0: %s / node 1: %s", n[0].err, n[1].err);
    assert_has(n[0].notes, "closed a connection from 127.0.0.1:");
}

/* A coordinator that other hosts can reach needs a secret. */
static void no_secret_off_loopback(void **state)
{
    (void)state;
    struct node n;
    init_node(&n, 1, 2, 7400, 500);
    snprintf(n.coord, sizeof n.coord, "0.0.0.0:7400");
    run_all(&n, 1);
    assert_int_equal(n.rc, DSM_EINVAL);
    assert_has(n.err, "DSM_SECRET");
    assert_has(n.err, "DSM_SECRET_FILE");
}

/* Something that is not a coordinator listens on the coordinator port and talks. */
static void *garbage_server(void *arg)
{
    struct raw *r = arg;
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4)) {
        close(l);
        return NULL;
    }
    int s = accept(l, NULL, NULL);
    const char banner[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    ssize_t w = write(s, banner, sizeof banner - 1);
    (void)w;
    char buf[256];
    while (read(s, buf, sizeof buf) > 0) {
    }
    close(s);
    close(l);
    return NULL;
}

static void garbage_from_coordinator(void **state)
{
    (void)state;
    struct node n;
    struct raw r = {.port = free_port()};
    pthread_create(&r.th, NULL, garbage_server, &r);
    init_node(&n, 1, 2, r.port, 3000);
    run_all(&n, 1);
    pthread_join(r.th, NULL);
    assert_int_equal(n.rc, DSM_EHANDSHAKE);
    assert_has(n.err, "the coordinator address 127.0.0.1:");
    assert_has(n.err, "sent data that is not from ufdsm");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(three_nodes_agree),
        cmocka_unit_test(single_node),
        cmocka_unit_test(localhost_by_name),
        cmocka_unit_test(job_mismatch),
        cmocka_unit_test(version_mismatch),
        cmocka_unit_test(memory_mismatch),
        cmocka_unit_test(base_mismatch),
        cmocka_unit_test(coordinator_unreachable),
        cmocka_unit_test(missing_node),
        cmocka_unit_test(duplicate_rank),
        cmocka_unit_test(bad_coordinator_strings),
        cmocka_unit_test(bad_config),
        cmocka_unit_test(garbage_at_coordinator),
        cmocka_unit_test(garbage_from_coordinator),
        cmocka_unit_test(wrong_secret_refused),
        cmocka_unit_test(fake_coordinator_refused),
        cmocka_unit_test(idle_connections),
        cmocka_unit_test(no_secret_off_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * boot.c - dsm_bootstrap on loopback against bytes played by a thread (see boot.h).
 *
 * Ports: the fake coordinator (boot_joiner) is a listener kept open for the whole process, so
 * nothing else can take its port. The real coordinator (boot_coordinator) binds its port
 * anew on every run, with SO_REUSEADDR; this file keeps that port reserved in between with a
 * socket bound to it (SO_REUSEADDR, never listening): Linux lets the coordinator listen there
 * too, but gives the port to nobody else (no bind(0), no outgoing connection), so the fake
 * joiners can never reach another program's listener and send it garbage.
 */
#include "boot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "fuzz.h"

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

/* A socket bound to a free loopback port (SO_REUSEADDR), listening or not. */
static int bound_socket(int listening, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0, "socket: %s (the harness needs TCP on loopback)", strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = loopback(0);
    socklen_t l = sizeof a;
    FUZZ_CHECK(!bind(fd, (struct sockaddr *)&a, sizeof a) && (!listening || !listen(fd, 16)) &&
                   !getsockname(fd, (struct sockaddr *)&a, &l),
               "cannot bind a loopback port: %s (the harness needs TCP on 127.0.0.1)",
               strerror(errno));
    *port = ntohs(a.sin_port);
    return fd;
}

/* Waits for fd to be readable, or for the deadline or *stop. 1 readable, 0 not. */
static int wait_readable(int fd, uint64_t deadline, atomic_int *stop)
{
    for (;;) {
        uint64_t now = dsm_net_now_ms();
        if (now >= deadline || (stop && atomic_load(stop))) return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t left = deadline - now;
        int n = poll(&p, 1, stop ? 20 : (int)left);
        if (n > 0) return 1;
        if (n < 0 && errno != EINTR) return 0;
    }
}

/* Reads until EOF, an error, the deadline or cap bytes (callers pass one more than a record
 * can have, so a full buffer means "too long"). */
static size_t read_to_eof(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    uint64_t deadline = dsm_net_now_ms() + 2 * BOOT_TIMEOUT_MS;
    while (got < cap && wait_readable(fd, deadline, NULL)) {
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    return got;
}

static void send_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* the other side gave up on us: that is its verdict, not ours */
        p += n;
        len -= (size_t)n;
    }
}

/* Our half of the authentication (transport/auth.h) with the empty secret, as the node
 * under test has none: the fuzzed bytes then reach the records behind it. 0, or -1 if the
 * node under test gave up first (its verdict, not ours). */
static int boot_auth(int fd, int role)
{
    struct dsm_auth_key key;
    struct dsm_auth au;
    uint8_t out[DSM_AUTH_REC_SIZE], in[DSM_AUTH_REC_SIZE];
    char why[256];
    FUZZ_CHECK(!dsm_auth_key_init(&key, NULL, 0, why, sizeof why) &&
                   !dsm_auth_start(&au, &key, role, out),
               "libsodium: %s", why);
    send_all(fd, out, sizeof out);
    uint64_t deadline = dsm_net_now_ms() + 2 * BOOT_TIMEOUT_MS;
    for (int step = 0; step < 2; step++) {
        size_t got = 0;
        while (got < sizeof in && wait_readable(fd, deadline, NULL)) {
            ssize_t n = recv(fd, in + got, sizeof in - got, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return -1;
            got += (size_t)n;
        }
        if (got < sizeof in) return -1;
        if (step == 0) {
            FUZZ_CHECK(!dsm_auth_on_challenge(&au, in, out, why, sizeof why),
                       "the node under test sent a bad challenge: %s", why);
            send_all(fd, out, sizeof out);
        } else {
            FUZZ_CHECK(!dsm_auth_on_response(&au, in, why, sizeof why),
                       "the node under test gave a bad response: %s", why);
        }
    }
    return 0;
}

int boot_entry_get(const uint8_t *p, struct dsm_peer_addr *a)
{
    memset(a, 0, sizeof *a);
    if (!memchr(p, 0, sizeof a->host)) return -1;
    memcpy(a->host, p, sizeof a->host);
    a->port = (uint16_t)fuzz_le(p + sizeof a->host, 2);
    struct in6_addr x;
    if (!a->port || (inet_pton(AF_INET, a->host, &x) != 1 && inet_pton(AF_INET6, a->host, &x) != 1))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- node 0 under test */

static int reserve_fd = -1;
static uint16_t reserved_port;

struct coord_worker {
    struct boot_coord_run *r;
    size_t size;
    uint16_t port;
    atomic_int stop;
};

/* Connects to the coordinator port, which dsm_bootstrap opens a moment after it is called:
 * refused until then. -1 if it never came (dsm_bootstrap failed before listening). */
static int connect_coordinator(struct coord_worker *w)
{
    struct sockaddr_in a = loopback(w->port);
    uint64_t deadline = dsm_net_now_ms() + BOOT_TIMEOUT_MS;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
        if (!connect(fd, (struct sockaddr *)&a, sizeof a)) return fd;
        int e = errno;
        close(fd);
        if (e != ECONNREFUSED || atomic_load(&w->stop) || dsm_net_now_ms() >= deadline) return -1;
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
}

static void *coord_worker(void *arg)
{
    struct coord_worker *w = arg;
    struct boot_coord_run *r = w->r;
    int fds[BOOT_MAX_JOINERS];
    int n = 0;
    /* All connected before any byte goes: the coordinator cannot decide (and close the
     * listener) before every joiner is in. */
    while (n < r->joiners && (fds[n] = connect_coordinator(w)) >= 0) n++;
    for (int i = 0; i < n; i++) {
        if (boot_auth(fds[i], DSM_AUTH_CONNECTOR)) continue;
        size_t off = (size_t)i * BOOT_JOIN_SIZE;
        size_t len = w->size - off < BOOT_JOIN_SIZE ? w->size - off : BOOT_JOIN_SIZE;
        send_all(fds[i], r->data + off, len);
        /* A short record is followed by EOF, as from a joiner that died while sending. */
        shutdown(fds[i], SHUT_WR);
    }
    for (int i = 0; i < r->joiners; i++) {
        r->reply_len[i] = 0;
        if (i >= n) continue;
        r->reply_len[i] = read_to_eof(fds[i], r->reply[i], sizeof r->reply[i]);
        close(fds[i]);
    }
    return NULL;
}

void boot_coordinator(struct boot_coord_run *r)
{
    size_t size = r->size;
    if (size > (size_t)BOOT_MAX_JOINERS * BOOT_JOIN_SIZE)
        size = (size_t)BOOT_MAX_JOINERS * BOOT_JOIN_SIZE;
    r->joiners = (int)((size + BOOT_JOIN_SIZE - 1) / BOOT_JOIN_SIZE);
    FUZZ_CHECK(r->joiners > 0, "boot_coordinator needs at least one byte");
    struct dsm_boot_cfg cfg = {.rank = 0, .nodes = r->joiners + 1, .timeout_ms = BOOT_TIMEOUT_MS};
    fuzz_desc(&cfg.desc, (uint32_t)cfg.nodes);
    for (int attempt = 0;; attempt++) {
        if (reserve_fd < 0) reserve_fd = bound_socket(0, &reserved_port);
        char coord[32];
        snprintf(coord, sizeof coord, "127.0.0.1:%u", reserved_port);
        cfg.coordinator = coord;
        struct coord_worker w = {.r = r, .size = size, .port = reserved_port};
        atomic_init(&w.stop, 0);
        pthread_t th;
        FUZZ_CHECK(!pthread_create(&th, NULL, coord_worker, &w), "pthread_create");
        r->listen_fd = -1;
        r->err[0] = 0;
        memset(r->addrs, 0, sizeof r->addrs);
        r->rc = dsm_bootstrap(&cfg, &r->listen_fd, r->addrs, r->err, sizeof r->err);
        atomic_store(&w.stop, 1);
        pthread_join(th, NULL);
        /* Not the input's doing: the port went to a program binding it with SO_REUSEADDR
         * too. Move to another one. */
        if (r->rc == DSM_ESYS && attempt < 10 && strstr(r->err, "cannot listen")) {
            close(reserve_fd);
            reserve_fd = -1;
            continue;
        }
        break;
    }
    r->data_port = 0;
    if (r->listen_fd >= 0) {
        struct sockaddr_in a;
        socklen_t l = sizeof a;
        if (!getsockname(r->listen_fd, (struct sockaddr *)&a, &l)) r->data_port = ntohs(a.sin_port);
        close(r->listen_fd);
    }
}

/* ---------------------------------------------------------------- a joiner under test */

static int fake_fd = -1;
static uint16_t fake_port;

struct join_worker {
    struct boot_join_run *r;
    atomic_int stop;
};

static void *join_worker(void *arg)
{
    struct join_worker *w = arg;
    struct boot_join_run *r = w->r;
    uint64_t deadline = dsm_net_now_ms() + BOOT_TIMEOUT_MS;
    r->join_len = 0;
    r->sent_len = 0;
    if (!wait_readable(fake_fd, deadline, &w->stop)) return NULL;
    int fd = accept4(fake_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return NULL;
    if (boot_auth(fd, DSM_AUTH_ACCEPTOR)) {
        close(fd);
        return NULL;
    }
    r->join_len = read_to_eof(fd, r->join, sizeof r->join);
    r->sent_len = r->size < sizeof r->sent ? r->size : sizeof r->sent;
    if (r->sent_len) memcpy(r->sent, r->data, r->sent_len); /* the generator sends nothing */
    if (r->join_len == BOOT_JOIN_SIZE) {
        r->data_port = (uint16_t)fuzz_le(r->join + 96 + 64, 2);
        size_t at = BOOT_TABLE_OFF + (size_t)r->rank * BOOT_ENTRY_SIZE + 64;
        if (r->sent_len >= at + 2 && fuzz_le(r->sent + at, 2) == BOOT_PORT_SELF) {
            r->sent[at] = (uint8_t)r->data_port;
            r->sent[at + 1] = (uint8_t)(r->data_port >> 8);
        }
    }
    send_all(fd, r->sent, r->sent_len);
    close(fd);
    return NULL;
}

void boot_joiner(struct boot_join_run *r)
{
    if (fake_fd < 0) fake_fd = bound_socket(1, &fake_port);
    char coord[32];
    snprintf(coord, sizeof coord, "127.0.0.1:%u", fake_port);
    struct dsm_boot_cfg cfg = {
        .rank = r->rank, .nodes = r->nodes, .coordinator = coord, .timeout_ms = BOOT_TIMEOUT_MS};
    fuzz_desc(&cfg.desc, (uint32_t)r->nodes);
    struct join_worker w = {.r = r};
    atomic_init(&w.stop, 0);
    r->data_port = 0;
    pthread_t th;
    FUZZ_CHECK(!pthread_create(&th, NULL, join_worker, &w), "pthread_create");
    int lfd = -1;
    r->err[0] = 0;
    memset(r->addrs, 0, sizeof r->addrs);
    r->rc = dsm_bootstrap(&cfg, &lfd, r->addrs, r->err, sizeof r->err);
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    if (lfd >= 0) close(lfd);
}

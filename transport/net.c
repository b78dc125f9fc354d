/*
 * net.c - socket helpers shared by bootstrap.c and tcp.c (see net.h): address parsing and
 * formatting, listen / connect / read / write with deadlines, buffer tuning, and the job
 * description and handshake records.
 *
 * Threading: no shared state; every function may be called from any thread. Functions that
 * wait do so in poll(2), never past the deadline they are given. Setup path only: nothing
 * here is used once a transport is running.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"

/* ---------------------------------------------------------------- time */

uint64_t dsm_net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *dsm_net_secs(int ms, char *buf, size_t len)
{
    snprintf(buf, len, "%g s", ms / 1000.0);
    return buf;
}

/* Milliseconds left until the deadline, clamped for poll(2). */
static int remaining_ms(uint64_t deadline_ms)
{
    uint64_t now = dsm_net_now_ms();
    if (now >= deadline_ms) return 0;
    uint64_t left = deadline_ms - now;
    return left > 1000000 ? 1000000 : (int)left;
}

/* ---------------------------------------------------------------- addresses */

int dsm_net_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port, char *err,
                           size_t errlen)
{
    const char *why = NULL;
    const char *h = s, *hend = NULL, *p = NULL;
    if (!s || !*s) {
        snprintf(err, errlen,
                 "no coordinator address given — expected host:port, e.g. 127.0.0.1:7400 "
                 "(DSM_COORDINATOR)");
        return DSM_EINVAL;
    }
    if (s[0] == '[') { /* [v6]:port: the brackets keep the address's colons apart */
        h = s + 1;
        hend = strchr(h, ']');
        if (!hend)
            why = "no closing ']' after the IPv6 address";
        else if (hend[1] != ':')
            why = "no ':port' after the IPv6 address";
        else
            p = hend + 2;
    } else {
        const char *c = strrchr(s, ':');
        if (!c)
            why = "no ':port'";
        else if (memchr(s, ':', (size_t)(c - s)))
            why = "an IPv6 address needs brackets";
        else {
            hend = c;
            p = c + 1;
        }
    }
    if (!why && hend == h) why = "no host";
    if (!why && (size_t)(hend - h) >= hostlen) why = "the host name is too long";
    unsigned long v = 0;
    if (!why) {
        if (!*p) why = "no port number";
        for (const char *q = p; !why && *q; q++) {
            if (*q < '0' || *q > '9')
                why = "the port is not a number";
            else if ((v = v * 10 + (unsigned long)(*q - '0')) > 65535)
                why = "port above 65535";
        }
        if (!why && v == 0) why = "port 0";
    }
    if (why) {
        snprintf(err, errlen,
                 "coordinator address '%.100s' is not valid (%s) — expected host:port, e.g. "
                 "127.0.0.1:7400 or [::1]:7400 (DSM_COORDINATOR)",
                 s, why);
        return DSM_EINVAL;
    }
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = 0;
    *port = (uint16_t)v;
    return DSM_OK;
}

int dsm_net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *sslen,
                    char *err, size_t errlen)
{
    /* No AI_ADDRCONFIG: it ignores loopback, so on a host without a network even
     * "127.0.0.1" would not resolve. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc) {
        snprintf(err, errlen,
                 "cannot resolve the coordinator host '%.100s': %s — DSM_COORDINATOR must be "
                 "host:port with a host this machine can resolve",
                 host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return rc == EAI_AGAIN ? DSM_EPEER : DSM_EINVAL;
    }
    /* "localhost" may give ::1 and 127.0.0.1 in either order: prefer IPv4 so that every
     * node picks the same family whatever its resolver configuration. */
    struct addrinfo *pick = NULL;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
        if (!pick && a->ai_family == AF_INET6) pick = a;
    }
    if (!pick) {
        freeaddrinfo(res);
        snprintf(err, errlen, "the coordinator host '%.100s' has no IPv4 or IPv6 address", host);
        return DSM_EINVAL;
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, pick->ai_addr, pick->ai_addrlen);
    *sslen = pick->ai_addrlen;
    freeaddrinfo(res);
    dsm_net_set_port(ss, port);
    return DSM_OK;
}

int dsm_net_numeric(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *sslen)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *sslen = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *sslen = sizeof *a6;
        return 0;
    }
    return -1;
}

void dsm_net_host(const struct sockaddr *sa, char *buf, size_t len)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family == AF_INET6 ? AF_INET6 : AF_INET, a, buf, (socklen_t)len))
        snprintf(buf, len, "?");
}

uint16_t dsm_net_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

void dsm_net_set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

void dsm_net_fmt(const struct sockaddr *sa, char *buf, size_t len)
{
    char h[INET6_ADDRSTRLEN];
    dsm_net_host(sa, h, sizeof h);
    if (sa->sa_family == AF_INET6)
        snprintf(buf, len, "[%s]:%u", h, dsm_net_port(sa));
    else
        snprintf(buf, len, "%s:%u", h, dsm_net_port(sa));
}

int dsm_net_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a);
    }
    return 0;
}

void dsm_net_wildcard(const struct sockaddr *sa, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_any;
        *len = sizeof *a6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)out;
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
        *len = sizeof *a4;
    }
}

/* ---------------------------------------------------------------- sockets */

static unsigned long read_sysctl(const char *path)
{
    char buf[32] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strtoul(buf, NULL, 10);
}

void dsm_net_tune_buffers(int fd)
{
    int v = (int)DSM_NET_SOCKBUF;
    /* Failures are harmless (autotuning stays on), so they are not reported. */
    if (read_sysctl("/proc/sys/net/core/wmem_max") >= DSM_NET_SOCKBUF)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    if (read_sysctl("/proc/sys/net/core/rmem_max") >= DSM_NET_SOCKBUF)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

int dsm_net_listen(const struct sockaddr *sa, socklen_t len, int backlog, int reuse, int *fd)
{
    int s = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    int one = 1;
    if (reuse) (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    dsm_net_tune_buffers(s);
    if (bind(s, sa, len) < 0 || listen(s, backlog) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    *fd = s;
    return 0;
}

int dsm_net_connect_start(const struct sockaddr *sa, socklen_t len, int *pending)
{
    int s = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    int one = 1;
    (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    dsm_net_tune_buffers(s);
    *pending = 0;
    if (connect(s, sa, len) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(s);
            return -e;
        }
        *pending = 1;
    }
    return s;
}

int dsm_net_connect_result(int fd)
{
    int e = 0;
    socklen_t l = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0) return -errno;
    return -e;
}

int dsm_net_connect_retry(const struct sockaddr *sa, socklen_t len, uint64_t deadline_ms)
{
    int backoff = 20, last = -ETIMEDOUT;
    for (;;) {
        int pending;
        int s = dsm_net_connect_start(sa, len, &pending);
        if (s >= 0 && pending) {
            struct pollfd p = {.fd = s, .events = POLLOUT};
            int n = poll(&p, 1, remaining_ms(deadline_ms));
            int rc = n > 0 ? dsm_net_connect_result(s) : n == 0 ? -ETIMEDOUT : -errno;
            if (rc) {
                close(s);
                s = rc;
            }
        }
        if (s >= 0) return s;
        /* A timed-out attempt says less than the refusal before it. */
        if (s != -ETIMEDOUT || last == -ETIMEDOUT) last = s;
        int left = remaining_ms(deadline_ms);
        if (left == 0) return last;
        struct timespec ts = {0, (long)(backoff < left ? backoff : left) * 1000000L};
        nanosleep(&ts, NULL);
        if (remaining_ms(deadline_ms) == 0) return last;
        backoff = backoff * 2 > 200 ? 200 : backoff * 2;
    }
}

int dsm_net_write_all(int fd, const void *buf, size_t len, uint64_t deadline_ms)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) return -errno;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int left = remaining_ms(deadline_ms);
        if (left == 0 || poll(&p, 1, left) == 0) return -ETIMEDOUT;
    }
    return 0;
}

int dsm_net_read_all(int fd, void *buf, size_t len, size_t *got, uint64_t deadline_ms)
{
    size_t done = 0;
    int rc = 0;
    while (done < len) {
        ssize_t n = recv(fd, (char *)buf + done, len - done, MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0) {
            rc = -EPIPE;
            break;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) {
            rc = -errno;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = remaining_ms(deadline_ms);
        if (left == 0 || poll(&p, 1, left) == 0) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    if (got) *got = done;
    return rc;
}

/* ---------------------------------------------------------------- job description */

void dsm_net_desc_put(uint8_t *p, const struct dsm_job_desc *d)
{
    memset(p, 0, DSM_NET_DESC_SIZE);
    size_t n = strnlen(d->job, sizeof d->job - 1); /* always leaves a terminating NUL */
    memcpy(p, d->job, n);
    dsm_net_put32(p + 48, d->version);
    dsm_net_put32(p + 52, d->nodes);
    dsm_net_put64(p + 56, d->region_base);
    dsm_net_put64(p + 64, d->region_size);
    dsm_net_put32(p + 72, d->page_size);
}

int dsm_net_desc_get(const uint8_t *p, struct dsm_job_desc *d)
{
    memset(d, 0, sizeof *d);
    if (!memchr(p, 0, sizeof d->job)) return -1;
    memcpy(d->job, p, sizeof d->job);
    d->version = dsm_net_get32(p + 48);
    d->nodes = dsm_net_get32(p + 52);
    d->region_base = dsm_net_get64(p + 56);
    d->region_size = dsm_net_get64(p + 64);
    d->page_size = dsm_net_get32(p + 72);
    return 0;
}

/* A job name as received may hold anything: show it without control characters. */
static void printable(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in[i] && i + 1 < outlen; i++)
        out[i] = ((unsigned char)in[i] < 0x20 || in[i] == 0x7f) ? '?' : in[i];
    out[i] = 0;
}

int dsm_net_desc_compare(const struct dsm_job_desc *here, const struct dsm_job_desc *there,
                         const char *who, char *err, size_t errlen)
{
    /* The version first: with another version, the other fields may mean other things. */
    if (here->version != there->version) {
        snprintf(err, errlen,
                 "protocol version %u here, %u on %s — run the same ufdsm build everywhere",
                 here->version, there->version, who);
        return DSM_EHANDSHAKE;
    }
    if (strncmp(here->job, there->job, sizeof here->job)) {
        char a[sizeof here->job], b[sizeof there->job];
        printable(here->job, a, sizeof a);
        printable(there->job, b, sizeof b);
        snprintf(err, errlen,
                 "%s belongs to another job: job '%s' here, '%s' there — start all nodes with "
                 "the same DSM_JOB (dsmrun does this)",
                 who, a, b);
        return DSM_EHANDSHAKE;
    }
    if (here->nodes != there->nodes) {
        snprintf(err, errlen,
                 "DSM_NODES differs: %u here, %u on %s — start all nodes with the same "
                 "DSM_NODES (dsmrun does this)",
                 here->nodes, there->nodes, who);
        return DSM_EHANDSHAKE;
    }
    if (here->region_size != there->region_size) {
        snprintf(err, errlen,
                 "DSM_MEMORY differs: %llu here, %llu on %s — start all nodes with the same "
                 "DSM_MEMORY",
                 (unsigned long long)here->region_size, (unsigned long long)there->region_size,
                 who);
        return DSM_EHANDSHAKE;
    }
    if (here->region_base != there->region_base) {
        snprintf(err, errlen,
                 "region base differs: 0x%llx here, 0x%llx on %s — start all nodes with the "
                 "same DSM_BASE (or none)",
                 (unsigned long long)here->region_base, (unsigned long long)there->region_base,
                 who);
        return DSM_EHANDSHAKE;
    }
    if (here->page_size != there->page_size) {
        snprintf(err, errlen,
                 "page size differs: %u here, %u on %s — all nodes must use the same page size",
                 here->page_size, there->page_size, who);
        return DSM_EHANDSHAKE;
    }
    return DSM_OK;
}

/* ---------------------------------------------------------------- handshake */

void dsm_net_hello_encode(uint8_t *out, int rank, const struct dsm_job_desc *d)
{
    dsm_net_put32(out, DSM_NET_HELLO_MAGIC);
    dsm_net_put32(out + 4, DSM_NET_HELLO_VERSION);
    dsm_net_put32(out + 8, (uint32_t)rank);
    dsm_net_put32(out + 12, 0);
    dsm_net_desc_put(out + 16, d);
}

int dsm_net_hello_decode(const uint8_t *in, int *rank, struct dsm_job_desc *d, char *why,
                         size_t whylen)
{
    uint32_t magic = dsm_net_get32(in), version = dsm_net_get32(in + 4);
    uint32_t r = dsm_net_get32(in + 8);
    if (magic != DSM_NET_HELLO_MAGIC) {
        snprintf(why, whylen,
                 "data that is not from ufdsm (handshake magic 0x%08x, expected 0x%08x)", magic,
                 DSM_NET_HELLO_MAGIC);
        return -1;
    }
    if (version != DSM_NET_HELLO_VERSION) {
        snprintf(why, whylen,
                 "handshake format %u, expected %u — run the same ufdsm build everywhere", version,
                 DSM_NET_HELLO_VERSION);
        return -1;
    }
    if (r >= DSM_MAX_NODES) {
        snprintf(why, whylen, "handshake rank %u is not below %d", r, DSM_MAX_NODES);
        return -1;
    }
    if (dsm_net_desc_get(in + 16, d)) {
        snprintf(why, whylen, "corrupt handshake (job name not terminated)");
        return -1;
    }
    *rank = (int)r;
    return 0;
}

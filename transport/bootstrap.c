/*
 * bootstrap.c - agreeing on who is in the job before any data connection exists.
 *
 * Every node opens its data listener first (so that its address exists before anyone learns
 * it). Rank 0 then listens on the coordinator address and collects one JOIN record from every
 * other rank: its rank, its job description and the address of its data listener. It checks
 * each against its own description and answers everyone with the full address table, or with
 * the reason the job cannot start. The check happens here, once, with messages that name the
 * field, both values and the fix; the TCP mesh repeats it per connection (tcp.c).
 *
 * The records are fixed-size little-endian byte layouts (below), with a magic and a format
 * version first, checked as soon as those arrive, so a stray program on the port or a node
 * from another ufdsm build is named instead of being waited for or misread.
 *
 * Threading: dsm_bootstrap keeps no state outside its own stack and heap, so several nodes
 * may bootstrap in one process on different threads (the unit tests do). It blocks, always
 * within cfg->timeout_ms (a joiner gets the same bound again to wait for the table, see
 * join()).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4; the CMake build defines it anyway */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "dsm.h"
#include "net.h"
#include "tp_common.h"
#include "transport.h"

/* ---------------------------------------------------------------- records */

#define BOOT_MAGIC   0x424d5344u /* "DSMB" */
#define BOOT_VERSION 1u
enum { K_JOIN = 1, K_TABLE = 2, K_MISMATCH = 3, K_FAIL = 4 };

/* Both records start with magic, format version, kind: checked once these 12 bytes are in. */
#define BOOT_HDR 12

/* JOIN, joiner -> coordinator:
 *   0 magic, 4 version, 8 kind, 12 rank, 16 job description (80), 96 host[64],
 *   160 port (u16), 162 zeros (6) */
#define JOIN_SIZE 168

/* Reply, coordinator -> joiner:
 *   0 magic, 4 version, 8 kind (TABLE / MISMATCH / FAIL), 12 code (DSM_E*, two's complement),
 *   16 nodes, 20 zeros, 24 the coordinator's job description (80),
 *   104 table: DSM_MAX_NODES entries of host[64], port (u16), zeros (6),
 *   4712 text[512] (FAIL: why, NUL-terminated)
 * MISMATCH carries no text: the joiner names the mismatch from its own point of view by
 * comparing the coordinator's description with its own. */
#define ENTRY_SIZE 72
#define TABLE_OFF  (24 + DSM_NET_DESC_SIZE)
#define TEXT_OFF   (TABLE_OFF + DSM_MAX_NODES * ENTRY_SIZE)
#define TEXT_MAX   512
#define REPLY_SIZE (TEXT_OFF + TEXT_MAX)
#define HOST_FIELD 64
_Static_assert(sizeof(((struct dsm_peer_addr *)0)->host) == HOST_FIELD, "host field size");

static void put_hdr(uint8_t *p, uint32_t kind)
{
    dsm_net_put32(p, BOOT_MAGIC);
    dsm_net_put32(p + 4, BOOT_VERSION);
    dsm_net_put32(p + 8, kind);
}

/* Checks the first BOOT_HDR bytes. 0, or -1 with the reason. */
static int check_hdr(const uint8_t *p, uint32_t kmin, uint32_t kmax, char *why, size_t whylen)
{
    uint32_t magic = dsm_net_get32(p), version = dsm_net_get32(p + 4);
    uint32_t kind = dsm_net_get32(p + 8);
    if (magic != BOOT_MAGIC) {
        snprintf(why, whylen, "data that is not from ufdsm (magic 0x%08x, expected 0x%08x)", magic,
                 BOOT_MAGIC);
        return -1;
    }
    if (version != BOOT_VERSION) {
        snprintf(why, whylen,
                 "bootstrap format %u, expected %u — run the same ufdsm build everywhere", version,
                 BOOT_VERSION);
        return -1;
    }
    if (kind < kmin || kind > kmax) {
        snprintf(why, whylen, "unexpected record kind %u", kind);
        return -1;
    }
    return 0;
}

/* A host/port pair from a record: NUL-terminated numeric address and a real port. */
static int get_addr(const uint8_t *p, struct dsm_peer_addr *a)
{
    memset(a, 0, sizeof *a);
    if (!memchr(p, 0, HOST_FIELD)) return -1;
    memcpy(a->host, p, HOST_FIELD);
    a->port = dsm_net_get16(p + HOST_FIELD);
    struct sockaddr_storage ss;
    socklen_t l;
    if (a->port == 0 || dsm_net_numeric(a->host, a->port, &ss, &l)) return -1;
    return 0;
}

static void put_addr(uint8_t *p, const struct dsm_peer_addr *a)
{
    memset(p, 0, ENTRY_SIZE);
    memcpy(p, a->host, strnlen(a->host, HOST_FIELD - 1));
    dsm_net_put16(p + HOST_FIELD, a->port);
}

/* ---------------------------------------------------------------- coordinator (rank 0) */

/* What a joiner sends: its challenge and response (auth.h), then its JOIN. */
#define IN_SIZE (DSM_AUTH_SIZE + JOIN_SIZE)

struct conn {
    int fd;
    int rank; /* -1 until its JOIN was accepted */
    int authed;
    uint64_t auth_deadline; /* closed if not authenticated by then */
    size_t got;
    struct dsm_auth au;
    char from[DSM_NET_ADDRSTR];
    char local[INET6_ADDRSTRLEN]; /* our address as this joiner reached us */
    uint8_t buf[IN_SIZE];
};

/* Closes a connection that has not proven the secret: it is not a node of this job, so the
 * job goes on without it. It learns nothing (no reply: that would tell it about the job). */
static void drop(const struct dsm_boot_cfg *cfg, struct conn *j, const char *why)
{
    dsm_tp_note(cfg,
                "closed a connection from %s to the coordinator: %s — not a node of this job (a "
                "stray program, or a node with another DSM_SECRET); the job goes on",
                j->from, why);
    close(j->fd);
    j->fd = -1;
    j->rank = -1;
    j->authed = 0;
}

/* Sends one small record on a fresh non-blocking socket: it fits the empty send buffer, so
 * anything short of all of it means the peer is gone or hostile. 0 or -1. */
static int send_small(int fd, const uint8_t *p, size_t len)
{
    ssize_t w = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return w == (ssize_t)len ? 0 : -1;
}

/* Best effort: the reply fits an empty socket buffer, and a joiner that is gone anyway
 * must not delay the error everyone else is waiting for. */
static void send_reply(int fd, uint32_t kind, int code, const struct dsm_job_desc *desc,
                       const char *text)
{
    uint8_t *r = calloc(1, REPLY_SIZE);
    if (!r) return;
    put_hdr(r, kind);
    dsm_net_put32(r + 12, (uint32_t)code);
    dsm_net_put32(r + 16, desc->nodes);
    dsm_net_desc_put(r + 24, desc);
    if (text) snprintf((char *)r + TEXT_OFF, TEXT_MAX, "%s", text);
    (void)dsm_net_write_all(fd, r, REPLY_SIZE, dsm_net_now_ms() + 1000);
    free(r);
}

/* Tells every joined node (except `skip`, which got its own answer) why the job fails. */
static void fail_all(struct conn *c, int nconn, int skip, int code, const struct dsm_job_desc *desc,
                     const char *text)
{
    for (int i = 0; i < nconn; i++)
        if (i != skip && c[i].rank >= 0) send_reply(c[i].fd, K_FAIL, code, desc, text);
}

/* Validates a complete JOIN from conns[i]. DSM_OK (and addrs[rank] filled), or an error
 * already reported to that joiner. */
static int accept_join(const struct dsm_boot_cfg *cfg, struct conn *c, int nconn, int i,
                       struct dsm_peer_addr *addrs, char *err, size_t errlen)
{
    struct conn *j = &c[i];
    const uint8_t *p = j->buf + DSM_AUTH_SIZE;
    uint32_t rank = dsm_net_get32(p + 12);
    struct dsm_job_desc d;
    struct dsm_peer_addr a;
    if (dsm_net_desc_get(p + 16, &d) || get_addr(p + 96, &a)) {
        snprintf(err, errlen,
                 "a connection from %s to the coordinator sent a corrupt join record (%s) — "
                 "is another program using this port?",
                 j->from,
                 dsm_net_desc_get(p + 16, &d) ? "job name not terminated"
                                              : "bad data listener address");
        send_reply(j->fd, K_FAIL, DSM_EHANDSHAKE, &cfg->desc, err);
        return DSM_EHANDSHAKE;
    }
    char who[32];
    snprintf(who, sizeof who, "node %u", rank);
    int rc = dsm_net_desc_compare(&cfg->desc, &d, who, err, errlen);
    if (rc) {
        send_reply(j->fd, K_MISMATCH, rc, &cfg->desc, NULL);
        return rc;
    }
    if (rank == 0 || rank >= (uint32_t)cfg->nodes) {
        snprintf(err, errlen,
                 "a node at %s joined as node %u, but this is node 0 of a %d-node job — "
                 "give every node its own DSM_RANK in 0..%d (dsmrun does this)",
                 j->from, rank, cfg->nodes, cfg->nodes - 1);
        send_reply(j->fd, K_FAIL, DSM_EHANDSHAKE, &cfg->desc, err);
        return DSM_EHANDSHAKE;
    }
    for (int k = 0; k < nconn; k++) {
        if (c[k].rank == (int)rank) {
            snprintf(err, errlen,
                     "node %u joined twice (from %s and from %s) — two nodes were started with "
                     "DSM_RANK=%u",
                     rank, c[k].from, j->from, rank);
            send_reply(j->fd, K_FAIL, DSM_EHANDSHAKE, &cfg->desc, err);
            return DSM_EHANDSHAKE;
        }
    }
    j->rank = (int)rank;
    addrs[rank] = a;
    return DSM_OK;
}

/* A slot for a new connection: one a stranger left, else a new one; -1 if full. */
static int free_slot(const struct conn *c, int nconn, int cap)
{
    for (int i = 0; i < nconn; i++)
        if (c[i].fd < 0 && c[i].rank < 0) return i;
    return nconn < cap ? nconn : -1;
}

/* All slots taken: the unauthenticated connection that has waited longest makes room, so
 * strangers can never keep a real node out (joined nodes use at most DSM_MAX_NODES - 1 of
 * the 2 * DSM_MAX_NODES slots, and a real node authenticates within a round trip). */
static int evict_slot(const struct dsm_boot_cfg *cfg, struct conn *c, int nconn)
{
    int old = -1;
    for (int i = 0; i < nconn; i++)
        if (c[i].fd >= 0 && !c[i].authed && (old < 0 || c[i].auth_deadline < c[old].auth_deadline))
            old = i;
    if (old >= 0)
        drop(cfg, &c[old],
             "all connection slots are taken and it is the oldest that "
             "has not authenticated");
    return old;
}

static void close_conns(struct conn *c, int nconn)
{
    for (int i = 0; i < nconn; i++)
        if (c[i].fd >= 0) close(c[i].fd);
}

static int coordinator(const struct dsm_boot_cfg *cfg, const struct sockaddr *coord, socklen_t clen,
                       int loopback, const char *coord_str, struct dsm_peer_addr *addrs,
                       uint64_t deadline, char *err, size_t errlen)
{
    char secs[32];
    if (cfg->nodes == 1) return DSM_OK; /* nobody to wait for; addrs[0] is already set */
    const struct dsm_auth_key *key = cfg->key;

    struct sockaddr_storage bind_sa;
    socklen_t blen = clen;
    if (loopback)
        memcpy(&bind_sa, coord, clen);
    else {
        dsm_net_wildcard(coord, &bind_sa, &blen);
        dsm_net_set_port(&bind_sa, dsm_net_port(coord));
    }
    int cfd;
    int e = dsm_net_listen((struct sockaddr *)&bind_sa, blen, cfg->nodes > 128 ? cfg->nodes : 128,
                           1, &cfd);
    if (e) {
        snprintf(err, errlen, "node 0 cannot listen on the coordinator address %s: %s%s", coord_str,
                 strerror(-e),
                 e == -EADDRINUSE      ? " — another job (or a node of an earlier run) uses this "
                                         "port; pick another port in DSM_COORDINATOR"
                 : e == -EADDRNOTAVAIL ? " — start node 0 on the host DSM_COORDINATOR names"
                                       : "");
        return DSM_ESYS;
    }

    /* Room for every joiner plus a few strays (port probes); more wait in the backlog. */
    const int cap = 2 * DSM_MAX_NODES;
    struct conn *c = calloc((size_t)cap, sizeof *c);
    struct pollfd *pf = calloc((size_t)cap + 1, sizeof *pf);
    int nconn = 0, joined = 0, rc = DSM_OK;
    if (!c || !pf) {
        snprintf(err, errlen, "out of memory in the bootstrap");
        rc = DSM_ENOMEM;
        goto out;
    }

    while (joined < cfg->nodes - 1) {
        uint64_t now = dsm_net_now_ms();
        if (now >= deadline) {
            char missing[256] = "";
            size_t m = 0;
            for (int r = 1; r < cfg->nodes; r++) {
                int seen = 0;
                for (int i = 0; i < nconn; i++) seen |= c[i].rank == r;
                if (!seen && m < sizeof missing - 16)
                    m +=
                        (size_t)snprintf(missing + m, sizeof missing - m, "%s%d", m ? ", " : "", r);
            }
            snprintf(err, errlen,
                     "timed out after %s waiting for node%s %s to join at %s (%d of %d nodes "
                     "are here) — start %s with DSM_COORDINATOR=%s, or raise "
                     "DSM_CONNECT_TIMEOUT",
                     dsm_net_secs(cfg->timeout_ms, secs, sizeof secs),
                     cfg->nodes - 1 - joined > 1 ? "s" : "", missing, coord_str, joined + 1,
                     cfg->nodes, cfg->nodes - 1 - joined > 1 ? "them" : "it", coord_str);
            rc = DSM_EPEER;
            fail_all(c, nconn, -1, rc, &cfg->desc, err);
            goto out;
        }
        /* Strangers that have not authenticated in time go; real nodes are not affected. */
        uint64_t wake = deadline;
        for (int i = 0; i < nconn; i++) {
            if (c[i].fd < 0 || c[i].authed) continue;
            if (c[i].auth_deadline <= now) {
                drop(cfg, &c[i],
                     c[i].got ? "it did not complete the authentication within "
                                "the deadline"
                              : "it sent nothing within the deadline");
                continue;
            }
            if (c[i].auth_deadline < wake) wake = c[i].auth_deadline;
        }
        /* Joined connections are not watched: they only wait for the table now. */
        int np = 0;
        pf[np++] = (struct pollfd){.fd = cfd, .events = POLLIN};
        for (int i = 0; i < nconn; i++)
            pf[np++] = (struct pollfd){.fd = c[i].rank < 0 ? c[i].fd : -1, .events = POLLIN};
        uint64_t left = wake - now;
        int n = poll(pf, (nfds_t)np, left > 1000000 ? 1000000 : (int)left);
        if (n < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll failed in the bootstrap: %s", strerror(errno));
            rc = DSM_ESYS;
            fail_all(c, nconn, -1, rc, &cfg->desc, err);
            goto out;
        }
        if (n <= 0) continue;

        /* Read before accepting: pf[1 + i] is connection i as it was when polled. */
        for (int i = 0; i < nconn; i++) {
            struct conn *j = &c[i];
            if (j->fd < 0 || j->rank >= 0 || !pf[1 + i].revents) continue;
            /* Never past the challenge and response before they are checked: a joiner
             * only sends its JOIN once it has checked ours, so nothing is lost. */
            size_t want = j->got < DSM_AUTH_REC_SIZE ? DSM_AUTH_REC_SIZE
                          : !j->authed               ? DSM_AUTH_SIZE
                                                     : IN_SIZE;
            ssize_t r = recv(j->fd, j->buf + j->got, want - j->got, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0) {
                if (!j->authed) {
                    /* A port probe, a stranger, or a node that refused our proof (it says
                     * why on its side). */
                    char why[96];
                    snprintf(why, sizeof why, "it %s after %zu bytes without authenticating",
                             r == 0 ? "closed the connection" : strerror(errno), j->got);
                    drop(cfg, j, why);
                    continue;
                }
                snprintf(err, errlen,
                         "an authenticated node connected from %s to the coordinator %s after "
                         "%zu of the %d bytes of its join record — did that node crash?",
                         j->from, r == 0 ? "closed" : strerror(errno), j->got - DSM_AUTH_SIZE,
                         JOIN_SIZE);
                rc = DSM_EPEER;
                fail_all(c, nconn, -1, rc, &cfg->desc, err);
                goto out;
            }
            size_t before = j->got;
            j->got += (size_t)r;
            char why[300];
            if (j->got == DSM_AUTH_REC_SIZE) {
                uint8_t resp[DSM_AUTH_REC_SIZE];
                if (dsm_auth_on_challenge(&j->au, j->buf, resp, why, sizeof why)) {
                    drop(cfg, j, why);
                    continue;
                }
                if (send_small(j->fd, resp, sizeof resp)) {
                    drop(cfg, j, "it did not take our authentication response");
                    continue;
                }
                continue;
            }
            if (j->got == DSM_AUTH_SIZE && !j->authed) {
                if (dsm_auth_on_response(&j->au, j->buf + DSM_AUTH_REC_SIZE, why, sizeof why)) {
                    drop(cfg, j, why);
                    continue;
                }
                j->authed = 1;
                continue;
            }
            if (!j->authed) continue;
            const size_t hdr = DSM_AUTH_SIZE + BOOT_HDR;
            if (before < hdr && j->got >= hdr &&
                check_hdr(j->buf + DSM_AUTH_SIZE, K_JOIN, K_JOIN, why, sizeof why)) {
                snprintf(err, errlen,
                         "a node at %s that knows this job's secret sent %s instead of its join "
                         "record — run the same ufdsm build everywhere",
                         j->from, why);
                rc = DSM_EHANDSHAKE;
                send_reply(j->fd, K_FAIL, rc, &cfg->desc, err);
                fail_all(c, nconn, i, rc, &cfg->desc, err);
                goto out;
            }
            if (j->got < IN_SIZE) continue;
            rc = accept_join(cfg, c, nconn, i, addrs, err, errlen);
            if (rc) {
                fail_all(c, nconn, i, rc, &cfg->desc, err);
                goto out;
            }
            joined++;
        }
        if (pf[0].revents) {
            /* Bounded per round, so a flood of connections cannot keep us from reading. */
            for (int k = 0; k < 64; k++) {
                struct sockaddr_storage from, me;
                socklen_t fl = sizeof from, ml = sizeof me;
                int fd = accept4(cfd, (struct sockaddr *)&from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) break; /* EAGAIN, or a connection that died in the backlog */
                int slot = free_slot(c, nconn, cap);
                if (slot < 0) slot = evict_slot(cfg, c, nconn);
                if (slot < 0) { /* cannot happen: joined nodes never fill the table */
                    close(fd);
                    break;
                }
                if (slot == nconn) nconn++;
                struct conn *j = &c[slot];
                memset(j, 0, sizeof *j);
                j->fd = fd;
                j->rank = -1;
                j->auth_deadline = dsm_net_now_ms() + DSM_AUTH_DEADLINE_MS;
                dsm_net_fmt((struct sockaddr *)&from, j->from, sizeof j->from);
                if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
                    dsm_net_host((struct sockaddr *)&me, j->local, sizeof j->local);
                uint8_t chal[DSM_AUTH_REC_SIZE];
                if (dsm_auth_start(&j->au, key, DSM_AUTH_ACCEPTOR, chal)) {
                    snprintf(err, errlen, "libsodium cannot be initialised (no randomness?)");
                    rc = DSM_ESYS;
                    fail_all(c, nconn, -1, rc, &cfg->desc, err);
                    goto out;
                }
                if (send_small(fd, chal, sizeof chal))
                    drop(cfg, j, "it did not take our challenge");
            }
        }
    }

    /* Node 0's own address: on a wildcard listener, the one the joiners reached it by
     * (preferring one that is not loopback, which other hosts could not use). */
    if (!loopback) {
        const char *best = NULL;
        for (int i = 0; i < nconn; i++) {
            if (c[i].rank < 0 || !c[i].local[0]) continue;
            struct sockaddr_storage ss;
            socklen_t l;
            int lo = !dsm_net_numeric(c[i].local, 1, &ss, &l) &&
                     dsm_net_is_loopback((struct sockaddr *)&ss);
            if (!best || !lo) best = c[i].local;
            if (!lo) break;
        }
        if (best) snprintf(addrs[0].host, sizeof addrs[0].host, "%s", best);
    }

    uint8_t *r = calloc(1, REPLY_SIZE);
    if (!r) {
        snprintf(err, errlen, "out of memory in the bootstrap");
        rc = DSM_ENOMEM;
        fail_all(c, nconn, -1, rc, &cfg->desc, err);
        goto out;
    }
    put_hdr(r, K_TABLE);
    dsm_net_put32(r + 12, 0);
    dsm_net_put32(r + 16, (uint32_t)cfg->nodes);
    dsm_net_desc_put(r + 24, &cfg->desc);
    for (int i = 0; i < cfg->nodes; i++) put_addr(r + TABLE_OFF + i * ENTRY_SIZE, &addrs[i]);
    for (int i = 0; i < nconn; i++) {
        if (c[i].rank < 0) continue;
        /* The joiners are waiting on exactly this; allow a second past the deadline so a
         * table that is ready is not thrown away for being late. */
        e = dsm_net_write_all(c[i].fd, r, REPLY_SIZE, dsm_net_now_ms() + 1000);
        if (e) {
            snprintf(err, errlen, "cannot send the address table to node %d (%s): %s", c[i].rank,
                     c[i].from, strerror(-e));
            rc = DSM_EPEER;
            fail_all(c, nconn, i, rc, &cfg->desc, err);
            break;
        }
    }
    free(r);
out:
    if (c) close_conns(c, nconn);
    free(c);
    free(pf);
    close(cfd);
    return rc;
}

/* ---------------------------------------------------------------- joiner (rank > 0) */

/* join_auth: lost or stalled before the end, try another connection. */
#define RETRY 1

/* The joiner's half of auth.h on a fresh connection to the coordinator: nothing about the
 * job is sent before the coordinator has proven the secret. DSM_OK; RETRY if the connection
 * was lost or stalled before the end (the coordinator may have dropped it as the oldest of
 * many unauthenticated ones); else an error in err. */
static int join_auth(const struct dsm_boot_cfg *cfg, int fd, const char *coord_str,
                     uint64_t deadline, char *err, size_t errlen)
{
    struct dsm_auth au;
    uint8_t mine[DSM_AUTH_REC_SIZE], theirs[DSM_AUTH_REC_SIZE];
    char why[300];
    if (dsm_auth_start(&au, cfg->key, DSM_AUTH_CONNECTOR, mine)) {
        snprintf(err, errlen, "libsodium cannot be initialised (no randomness source?)");
        return DSM_ESYS;
    }
    /* A real coordinator answers within a round trip; one that does not is retried. */
    uint64_t step = dsm_net_now_ms() + 2 * DSM_AUTH_DEADLINE_MS;
    if (step > deadline) step = deadline;
    size_t got = 0;
    int e = dsm_net_write_all(fd, mine, sizeof mine, step);
    if (!e) e = dsm_net_read_all(fd, theirs, sizeof theirs, &got, step);
    if (e && got >= 4 && dsm_net_get32(theirs) != DSM_AUTH_MAGIC) {
        /* Short of a record, but enough to tell it is not ours (a banner, say). */
        snprintf(err, errlen,
                 "the program at the coordinator address %s sent data that is not from ufdsm "
                 "(magic 0x%08x) — it is not node 0 of a ufdsm job: is DSM_COORDINATOR right, "
                 "or does another program use that port?",
                 coord_str, dsm_net_get32(theirs));
        return DSM_EHANDSHAKE;
    }
    if (e) return RETRY;
    if (dsm_auth_on_challenge(&au, theirs, mine, why, sizeof why)) {
        snprintf(err, errlen,
                 "the program at the coordinator address %s sent %s — it is not node 0 of a "
                 "ufdsm job: is DSM_COORDINATOR right, or does another program use that port?",
                 coord_str, why);
        return DSM_EHANDSHAKE;
    }
    e = dsm_net_write_all(fd, mine, sizeof mine, step);
    if (!e) e = dsm_net_read_all(fd, theirs, sizeof theirs, &got, step);
    if (e) return RETRY;
    if (dsm_auth_on_response(&au, theirs, why, sizeof why)) {
        snprintf(err, errlen,
                 "the coordinator at %s gave %s — refusing to join: either the secrets differ "
                 "(set the same DSM_SECRET or DSM_SECRET_FILE on every node; dsmrun does it) or "
                 "a program that is not node 0 of this job holds that port",
                 coord_str, why);
        return DSM_EHANDSHAKE;
    }
    return DSM_OK;
}

static int join(const struct dsm_boot_cfg *cfg, const struct sockaddr *coord, socklen_t clen,
                const char *coord_str, uint16_t lport, struct dsm_peer_addr *addrs,
                uint64_t deadline, char *err, size_t errlen)
{
    char secs[32];
    int fd;
    for (;;) {
        fd = dsm_net_connect_retry(coord, clen, deadline);
        if (fd < 0) {
            snprintf(err, errlen,
                     "cannot reach the coordinator (node 0) at %s after %s: %s — start node 0, "
                     "or check DSM_COORDINATOR and the firewall",
                     coord_str, dsm_net_secs(cfg->timeout_ms, secs, sizeof secs), strerror(-fd));
            return DSM_EPEER;
        }
        int rc = join_auth(cfg, fd, coord_str, deadline, err, errlen);
        if (rc == DSM_OK) break;
        close(fd);
        if (rc != RETRY) return rc;
        if (dsm_net_now_ms() + 100 >= deadline) {
            snprintf(err, errlen,
                     "the coordinator at %s accepted connections for %s but never completed the "
                     "authentication — is node 0 overloaded, or is another program on that port?",
                     coord_str, dsm_net_secs(cfg->timeout_ms, secs, sizeof secs));
            return DSM_EPEER;
        }
        usleep(100 * 1000);
    }
    /* The coordinator may have started long after this node and then waits up to the full
     * timeout for the others: give it that long plus a second, so that its own message
     * (naming the missing nodes) arrives here instead of a vaguer timeout. */
    uint64_t reply_deadline = dsm_net_now_ms() + (uint64_t)cfg->timeout_ms + 1000;

    /* Advertise the address this node reaches the coordinator from: on loopback that is
     * 127.0.0.1, on a network it is the interface that routes to node 0's network. */
    struct sockaddr_storage me;
    socklen_t ml = sizeof me;
    struct dsm_peer_addr self = {.port = lport};
    if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0) {
        snprintf(err, errlen, "getsockname on the coordinator connection: %s", strerror(errno));
        close(fd);
        return DSM_ESYS;
    }
    dsm_net_host((struct sockaddr *)&me, self.host, sizeof self.host);

    uint8_t jr[JOIN_SIZE] = {0};
    put_hdr(jr, K_JOIN);
    dsm_net_put32(jr + 12, (uint32_t)cfg->rank);
    dsm_net_desc_put(jr + 16, &cfg->desc);
    memcpy(jr + 96, self.host, strnlen(self.host, HOST_FIELD - 1));
    dsm_net_put16(jr + 96 + HOST_FIELD, self.port);

    int rc = DSM_OK;
    uint8_t *r = calloc(1, REPLY_SIZE);
    if (!r) {
        snprintf(err, errlen, "out of memory in the bootstrap");
        close(fd);
        return DSM_ENOMEM;
    }
    size_t got = 0;
    int e = dsm_net_write_all(fd, jr, JOIN_SIZE, reply_deadline);
    if (!e) e = dsm_net_read_all(fd, r, BOOT_HDR, &got, reply_deadline);
    char why[160];
    if (!e && check_hdr(r, K_TABLE, K_FAIL, why, sizeof why)) {
        snprintf(err, errlen, "the coordinator at %s sent %s — is DSM_COORDINATOR right?",
                 coord_str, why);
        rc = DSM_EHANDSHAKE;
        goto out;
    }
    if (!e) {
        size_t more = 0;
        e = dsm_net_read_all(fd, r + BOOT_HDR, REPLY_SIZE - BOOT_HDR, &more, reply_deadline);
        got += more;
    }
    if (e == -ETIMEDOUT) {
        snprintf(err, errlen,
                 "connected to the coordinator (node 0) at %s, but no address table came within "
                 "%s — node 0 is probably waiting for other nodes (see its log)",
                 coord_str, dsm_net_secs(cfg->timeout_ms, secs, sizeof secs));
        rc = DSM_EPEER;
        goto out;
    }
    if (e) {
        snprintf(err, errlen,
                 "the coordinator (node 0) at %s %s before sending the address table (%zu of "
                 "%d bytes) — see node 0's log",
                 coord_str, e == -EPIPE ? "closed the connection" : strerror(-e), got, REPLY_SIZE);
        rc = DSM_EPEER;
        goto out;
    }

    uint32_t kind = dsm_net_get32(r + 8);
    int code = (int)dsm_net_get32(r + 12);
    struct dsm_job_desc theirs;
    if (dsm_net_desc_get(r + 24, &theirs)) {
        snprintf(err, errlen, "the coordinator at %s sent a corrupt reply (job name)", coord_str);
        rc = DSM_EHANDSHAKE;
        goto out;
    }
    if (kind == K_MISMATCH) {
        rc = dsm_net_desc_compare(&cfg->desc, &theirs, "node 0", err, errlen);
        if (!rc) { /* it saw a difference we do not: show both descriptions' job names */
            snprintf(err, errlen,
                     "the coordinator (node 0) at %s rejected this node's job description "
                     "(job '%s') — run the same ufdsm build with the same settings everywhere",
                     coord_str, cfg->desc.job);
            rc = DSM_EHANDSHAKE;
        }
        goto out;
    }
    if (kind == K_FAIL) {
        char *text = (char *)r + TEXT_OFF;
        text[TEXT_MAX - 1] = 0;
        /* As received, so it may hold anything; it goes into our log: no control characters
         * (a newline would forge a log line), as for job names (net.c). */
        for (char *c = text; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
        snprintf(err, errlen, "the coordinator (node 0) at %s gave up: %s", coord_str, text);
        rc = (code <= DSM_EINVAL && code >= DSM_ECOLLECTIVE) ? code : DSM_EHANDSHAKE;
        goto out;
    }
    /* K_TABLE: every entry must be a usable address, and ours must be what we sent. */
    rc = dsm_net_desc_compare(&cfg->desc, &theirs, "node 0", err, errlen);
    if (rc) goto out;
    if (dsm_net_get32(r + 16) != (uint32_t)cfg->nodes) {
        snprintf(err, errlen, "the coordinator at %s sent a table of %u nodes, expected %d",
                 coord_str, dsm_net_get32(r + 16), cfg->nodes);
        rc = DSM_EHANDSHAKE;
        goto out;
    }
    for (int i = 0; i < cfg->nodes; i++) {
        if (get_addr(r + TABLE_OFF + i * ENTRY_SIZE, &addrs[i])) {
            snprintf(err, errlen,
                     "the coordinator at %s sent a corrupt address table (entry of node %d)",
                     coord_str, i);
            rc = DSM_EHANDSHAKE;
            goto out;
        }
    }
    if (addrs[cfg->rank].port != self.port || strcmp(addrs[cfg->rank].host, self.host)) {
        snprintf(err, errlen,
                 "the coordinator at %s lists node %d at %s:%u, but this node is %s:%u — two "
                 "nodes were started with DSM_RANK=%d?",
                 coord_str, cfg->rank, addrs[cfg->rank].host, addrs[cfg->rank].port, self.host,
                 self.port, cfg->rank);
        rc = DSM_EHANDSHAKE;
    }
out:
    free(r);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- entry point */

static int check_cfg(const struct dsm_boot_cfg *cfg, char *err, size_t errlen)
{
    if (cfg->nodes < 1 || cfg->nodes > DSM_MAX_NODES) {
        snprintf(err, errlen, "DSM_NODES=%d is not in 1..%d", cfg->nodes, DSM_MAX_NODES);
        return DSM_EINVAL;
    }
    if (cfg->rank < 0 || cfg->rank >= cfg->nodes) {
        snprintf(err, errlen, "DSM_RANK=%d is not in 0..%d (DSM_NODES=%d)", cfg->rank,
                 cfg->nodes - 1, cfg->nodes);
        return DSM_EINVAL;
    }
    if (cfg->desc.nodes != (uint32_t)cfg->nodes) {
        snprintf(err, errlen, "the job description says %u nodes, the configuration %d",
                 cfg->desc.nodes, cfg->nodes);
        return DSM_EINVAL;
    }
    if (!memchr(cfg->desc.job, 0, sizeof cfg->desc.job)) {
        snprintf(err, errlen, "the job name is longer than %zu characters",
                 sizeof cfg->desc.job - 1);
        return DSM_EINVAL;
    }
    return DSM_OK;
}

int dsm_bootstrap(const struct dsm_boot_cfg *cfg, int *listen_fd, struct dsm_peer_addr *addrs,
                  char *err, size_t errlen)
{
    *listen_fd = -1;
    int rc = check_cfg(cfg, err, errlen);
    if (rc) return rc;
    int timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    struct dsm_boot_cfg c = *cfg;
    c.timeout_ms = timeout_ms;
    struct dsm_auth_key none;
    if (!c.key) {
        if (dsm_auth_key_init(&none, NULL, 0, err, errlen)) return DSM_ESYS;
        c.key = &none;
    }
    uint64_t deadline = dsm_net_now_ms() + (uint64_t)timeout_ms;

    char host[DSM_NET_HOST_MAX];
    uint16_t port;
    struct sockaddr_storage coord;
    socklen_t clen;
    if ((rc = dsm_net_parse_hostport(cfg->coordinator, host, sizeof host, &port, err, errlen)) ||
        (rc = dsm_net_resolve(host, port, &coord, &clen, err, errlen)))
        return rc;
    char coord_str[DSM_NET_ADDRSTR + DSM_NET_HOST_MAX];
    char numeric[DSM_NET_ADDRSTR];
    dsm_net_fmt((struct sockaddr *)&coord, numeric, sizeof numeric);
    struct sockaddr_storage probe;
    socklen_t pl;
    if (!dsm_net_numeric(host, port, &probe, &pl))
        snprintf(coord_str, sizeof coord_str, "%s", numeric);
    else
        snprintf(coord_str, sizeof coord_str, "%s (%s)", cfg->coordinator, numeric);

    /* A job on loopback keeps its ports on loopback. A host *name* that resolves to
     * loopback here (Debian maps the host name to 127.0.1.1) may well be reachable by that
     * name from other hosts, so it gets the wildcard like any network address. */
    int loopback = dsm_net_is_loopback((struct sockaddr *)&coord) &&
                   (!dsm_net_numeric(host, port, &probe, &pl) || !strcmp(host, "localhost"));

    if (!c.key->secret && !loopback) {
        snprintf(err, errlen,
                 "no secret for a job whose coordinator %s is reachable from other hosts: anyone "
                 "who can reach its ports could join it — set DSM_SECRET (16+ characters, the "
                 "same on every node) or DSM_SECRET_FILE (a file of mode 600 holding it); "
                 "dsmrun does this for you (docs/security.md)",
                 coord_str);
        return DSM_EINVAL;
    }
    if (!c.key->secret && cfg->nodes > 1)
        dsm_tp_note(&c,
                    "no DSM_SECRET or DSM_SECRET_FILE: any local user could join this job on its "
                    "loopback ports — dsmrun sets a secret for you (docs/security.md)");

    struct sockaddr_storage dsa;
    socklen_t dlen = clen;
    if (loopback)
        memcpy(&dsa, &coord, clen);
    else
        dsm_net_wildcard((struct sockaddr *)&coord, &dsa, &dlen);
    dsm_net_set_port(&dsa, 0);
    int lfd;
    int e =
        dsm_net_listen((struct sockaddr *)&dsa, dlen, cfg->nodes > 128 ? cfg->nodes : 128, 0, &lfd);
    socklen_t gl = sizeof dsa;
    if (!e && getsockname(lfd, (struct sockaddr *)&dsa, &gl) < 0) {
        e = -errno;
        close(lfd);
    }
    if (e) {
        snprintf(err, errlen, "node %d cannot open its data listener: %s", cfg->rank, strerror(-e));
        return DSM_ESYS;
    }
    uint16_t lport = dsm_net_port((struct sockaddr *)&dsa);

    if (cfg->rank == 0) {
        /* Until a joiner tells us better (wildcard case), our address is the coordinator's. */
        memset(&addrs[0], 0, sizeof addrs[0]);
        dsm_net_host((struct sockaddr *)&coord, addrs[0].host, sizeof addrs[0].host);
        addrs[0].port = lport;
        rc = coordinator(&c, (struct sockaddr *)&coord, clen, loopback, coord_str, addrs, deadline,
                         err, errlen);
    } else {
        rc = join(&c, (struct sockaddr *)&coord, clen, coord_str, lport, addrs, deadline, err,
                  errlen);
    }
    if (rc) {
        close(lfd);
        return rc;
    }
    *listen_fd = lfd;
    return DSM_OK;
}

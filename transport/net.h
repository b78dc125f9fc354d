/*
 * net.h - socket helpers shared by the bootstrap (bootstrap.c) and the TCP transport (tcp.c):
 * address parsing and formatting, listening and connecting with deadlines, socket tuning, and
 * the two records both of them put on the wire before any frame: the job description and the
 * per-connection handshake ("hello").
 *
 * Everything here is setup-path code: it may block, but only up to a deadline the caller
 * passes (absolute, in dsm_net_now_ms() milliseconds). No state is kept between calls, so
 * every function may be called from any thread.
 *
 * Records are fixed-size and little-endian, written byte by byte (no struct is ever sent
 * as-is), so padding and host layout never leak onto the wire.
 */
#ifndef DSM_NET_H
#define DSM_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "transport.h"

/* Socket buffers we ask for on data connections. Only applied when the kernel allows that
 * much (net.core.[rw]mem_max): asking for more than the cap silently gets the cap AND turns
 * off autotuning, which is worse than not asking. */
#define DSM_NET_SOCKBUF (4u << 20)

/* Longest host text we accept in a coordinator address (a DNS name may be 253 characters). */
#define DSM_NET_HOST_MAX 256
/* "[v6 address]:port" fits. */
#define DSM_NET_ADDRSTR 80

/* ---------------------------------------------------------------- little-endian fields */
static inline void dsm_net_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void dsm_net_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void dsm_net_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t dsm_net_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}
static inline uint32_t dsm_net_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static inline uint64_t dsm_net_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ---------------------------------------------------------------- time */
/* CLOCK_MONOTONIC in milliseconds: the unit of every deadline here. */
uint64_t dsm_net_now_ms(void);
/* "30 s", "0.5 s": a timeout as users configure it, for messages. */
const char *dsm_net_secs(int ms, char *buf, size_t len);

/* ---------------------------------------------------------------- addresses */
/* Splits "host:port" or "[v6]:port". DSM_OK, or DSM_EINVAL with a message showing the
 * expected form. */
int dsm_net_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port, char *err,
                           size_t errlen);
/* Resolves a host name or numeric address (IPv4 preferred when a name has both). */
int dsm_net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *sslen,
                    char *err, size_t errlen);
/* A numeric address as in struct dsm_peer_addr: 0, or -1 if `host` is not one. */
int dsm_net_numeric(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *sslen);
/* "1.2.3.4:5" or "[::1]:5". */
void dsm_net_fmt(const struct sockaddr *sa, char *buf, size_t len);
/* The numeric host part only. */
void dsm_net_host(const struct sockaddr *sa, char *buf, size_t len);
uint16_t dsm_net_port(const struct sockaddr *sa);
void dsm_net_set_port(struct sockaddr_storage *ss, uint16_t port);
int dsm_net_is_loopback(const struct sockaddr *sa);
/* The wildcard address of sa's family. */
void dsm_net_wildcard(const struct sockaddr *sa, struct sockaddr_storage *out, socklen_t *len);

/* ---------------------------------------------------------------- sockets */
/* Sets the buffer sizes above when the kernel permits them (before connect / listen, so the
 * window scale is negotiated for them; accepted sockets inherit the listener's). */
void dsm_net_tune_buffers(int fd);
/* Non-blocking, close-on-exec TCP listener; port 0 picks one. 0 or -errno. */
int dsm_net_listen(const struct sockaddr *sa, socklen_t len, int backlog, int reuse, int *fd);
/* Starts a non-blocking connect: a socket >= 0 (*pending = 1 while the connect is under
 * way: wait for POLLOUT, then dsm_net_connect_result), or -errno. */
int dsm_net_connect_start(const struct sockaddr *sa, socklen_t len, int *pending);
/* 0 if the pending connect succeeded, else -errno. */
int dsm_net_connect_result(int fd);
/* Connects, retrying refused / unreachable attempts with backoff (20 ms doubling to 200 ms)
 * until the deadline. A socket (non-blocking), or -errno of the last attempt. */
int dsm_net_connect_retry(const struct sockaddr *sa, socklen_t len, uint64_t deadline_ms);
/* Writes or reads exactly len bytes of a non-blocking socket before the deadline.
 * 0; -ETIMEDOUT; -EPIPE if the peer closed (reads: *got says how far it came); -errno. */
int dsm_net_write_all(int fd, const void *buf, size_t len, uint64_t deadline_ms);
int dsm_net_read_all(int fd, void *buf, size_t len, size_t *got, uint64_t deadline_ms);

/* ---------------------------------------------------------------- job description */
/* job[48], version, nodes, region_base, region_size, page_size, 4 bytes of zeros. */
#define DSM_NET_DESC_SIZE 80
void dsm_net_desc_put(uint8_t *p, const struct dsm_job_desc *d);
/* -1 if the job name is not NUL-terminated (a corrupt record). */
int dsm_net_desc_get(const uint8_t *p, struct dsm_job_desc *d);
/* Compares this node's description with a peer's (`who`: "node 3", or with its address).
 * 0 if equal, else DSM_EHANDSHAKE with a message naming the field, both values and the fix. */
int dsm_net_desc_compare(const struct dsm_job_desc *here, const struct dsm_job_desc *there,
                         const char *who, char *err, size_t errlen);

/* ---------------------------------------------------------------- handshake */
/* Sent both ways first on every data connection: magic, format version, sender rank, job
 * description. Each side checks the other's, so a mismatch is named on both. */
#define DSM_NET_HELLO_MAGIC   0x484d5344u /* "DSMH" */
#define DSM_NET_HELLO_VERSION 1u
#define DSM_NET_HELLO_SIZE    (16 + DSM_NET_DESC_SIZE)
void dsm_net_hello_encode(uint8_t *out, int rank, const struct dsm_job_desc *d);
/* 0, or -1 with a reason in why (bad magic, format version, unterminated job name). */
int dsm_net_hello_decode(const uint8_t *in, int *rank, struct dsm_job_desc *d, char *why,
                         size_t whylen);

#endif /* DSM_NET_H */

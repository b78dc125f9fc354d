/*
 * transport.h - the one interface the runtime uses to move protocol messages between nodes.
 *
 * Implementations: TCP driven by io_uring (tcp.c), RDMA over verbs (rdma.c); select.h
 * creates the one the nodes agree on (DSM_TRANSPORT).
 * The transport knows frames, peers and buffers; it knows nothing of coherence.
 *
 * Threading contract (the runtime guarantees it, implementations rely on it):
 *   - send, flush, poll: called only by the thread holding the runtime's progress token, so
 *     never concurrently with each other; they never block.
 *   - wait: called only by the runtime's service thread; it may block (bounded by timeout).
 *   - kick: any thread, any time (async-signal-safe); makes a blocked or the next wait return.
 * Received payloads are handed to the deliver callback in place (in the transport's receive
 * buffer, valid until the callback returns), so a page lands with no extra copy: the runtime
 * installs it straight from there with UFFDIO_COPY. RDMA places pages the same way, in its
 * registered receive buffers.
 */
#ifndef DSM_TRANSPORT_H
#define DSM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct dsm_tp;

/* Called for every valid received frame, in per-peer FIFO order. `payload` has h->len bytes. */
typedef void (*dsm_tp_deliver_fn)(void *ctx, const struct dsm_wire_hdr *h, const void *payload);
/* Called once when a peer's connection fails (EOF, reset, corrupt frame) outside shutdown.
 * `why` names the cause (and the peer's address). The runtime decides what to do. */
typedef void (*dsm_tp_lost_fn)(void *ctx, int peer, const char *why);

struct dsm_tp_counters {
    uint64_t msgs_sent, msgs_recv, bytes_sent, bytes_recv;
};

struct dsm_tp_ops {
    const char *name;
    /* Queues one frame for dst (!= self). The header and payload (h->len bytes) are copied
     * before return. 0, or -1 if dst is lost (already reported through lost). */
    int (*send)(struct dsm_tp *tp, int dst, const struct dsm_wire_hdr *h, const void *payload);
    /* Pushes queued frames toward the wire without blocking. */
    void (*flush)(struct dsm_tp *tp);
    /* Flushes, then receives whatever has arrived and delivers every complete frame. Never
     * blocks. Returns the number of frames delivered. */
    int (*poll)(struct dsm_tp *tp);
    /* Blocks until a peer may have data (if `arm`), a kick, or timeout_us (-1: none).
     * Returns 1 if data may be ready, 0 on timeout or kick. */
    int (*wait)(struct dsm_tp *tp, int arm, long timeout_us);
    void (*kick)(struct dsm_tp *tp);
    /* Orderly shutdown: stop reporting lost peers, close everything, free. */
    void (*destroy)(struct dsm_tp *tp);
};

struct dsm_tp {
    const struct dsm_tp_ops *ops;
    int rank, nodes;
    dsm_tp_deliver_fn deliver;
    dsm_tp_lost_fn lost;
    void *cb_ctx;
    struct dsm_wire_limits limits;   /* limits.peer is set per connection by the implementation */
    struct dsm_tp_counters cnt;      /* updated by send/poll (token holder only) */
    struct dsm_tp_counters ring_cnt; /* shm.c: frames through the shared-memory rings */
    /* -1, or a descriptor that wait() with arm also watches, returning 1 when it is readable:
     * the doorbell of the shared-memory rings (shm.h), set by dsm_shm_wrap. The owner of the
     * descriptor drains it. */
    int wake_fd;
};

/* The address table and identity a bootstrap agrees on before transports connect. */
struct dsm_peer_addr {
    char host[64]; /* numeric IPv4/IPv6 address */
    uint16_t port; /* the node's data listener */
};

/* What every node must agree on; checked at bootstrap, mismatches are named. */
struct dsm_job_desc {
    char job[48];     /* job identifier */
    uint32_t version; /* DSM_WIRE_VERSION */
    uint32_t nodes;
    uint64_t region_base; /* address of the global space */
    uint64_t region_size; /* bytes */
    uint32_t page_size;
};

struct dsm_auth_key;

struct dsm_boot_cfg {
    int rank, nodes;
    const char *coordinator; /* "host:port": rank 0 listens there, others connect */
    int timeout_ms;          /* bounded wait for every step */
    struct dsm_job_desc desc;
    /* The job's secret (auth.h), proven on every connection before anything else crosses
     * it. NULL: no secret (the exchange runs with the empty one; loopback jobs only). */
    const struct dsm_auth_key *key;
    /* TCP_USER_TIMEOUT of the mesh connections (ms): unacknowledged data for this long ends
     * the connection (a peer cut off). 0: the kernel's default. */
    int peer_timeout_ms;
    /* Told about connections that were closed without harm to the job (strangers, port
     * probes, wrong secrets), since nothing in transport/ logs. NULL: not told. */
    void (*note)(void *ctx, const char *msg);
    void *note_ctx;
};

/*
 * Bootstrap: rank 0 listens on the coordinator address, every other rank connects (retrying
 * until timeout_ms), sends its job description and the address of its data listener; rank 0
 * checks each description against its own and replies with the full address table or an
 * error naming the mismatching field. On success, *listen_fd is this node's data listener
 * (already listening) and addrs[0..nodes-1] is filled. On failure, writes a message naming
 * the cause and the fix into err[errlen] and returns a DSM_E* code.
 */
int dsm_bootstrap(const struct dsm_boot_cfg *cfg, int *listen_fd, struct dsm_peer_addr *addrs,
                  char *err, size_t errlen);

/* Connects the TCP full mesh (a handshake on every connection repeats the job check) and
 * returns a transport. Same error convention as dsm_bootstrap. */
int dsm_tcp_create(const struct dsm_boot_cfg *cfg, int listen_fd, const struct dsm_peer_addr *addrs,
                   const struct dsm_wire_limits *limits, dsm_tp_deliver_fn deliver,
                   dsm_tp_lost_fn lost, void *cb_ctx, struct dsm_tp **out, char *err,
                   size_t errlen);

#endif /* DSM_TRANSPORT_H */

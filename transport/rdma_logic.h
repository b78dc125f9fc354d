/*
 * rdma_logic.h - the parts of the RDMA transport that need no device: credit-based flow
 * control, the send-slot ring, checking a received buffer as a frame, the connection's private
 * data (the per-connection job check), how many buffers fit under RLIMIT_MEMLOCK, and the
 * records nodes exchange to choose a transport together.
 *
 * All pure (no I/O, no allocation), so they are unit-tested with cmocka on hosts without
 * RDMA hardware (tests/unit/test_rdma_logic.c). rdma.c and select.c are the only users.
 */
#ifndef DSM_RDMA_LOGIC_H
#define DSM_RDMA_LOGIC_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"
#include "wire.h"

/* One receive buffer / send slot holds one whole frame: header + the largest payload, rounded
 * up to a cache line so buffers never share one. */
#define DSM_RDMA_FRAME_MAX (DSM_WIRE_HDR_SIZE + DSM_WIRE_MAX_PAYLOAD)
#define DSM_RDMA_STRIDE    ((DSM_RDMA_FRAME_MAX + 63u) & ~63u)
/* Receive buffers per peer: fewer than MIN and a burst of page replies stalls on credits;
 * more than MAX buys nothing (a fault needs one or two frames in flight). */
#define DSM_RDMA_DEPTH_MIN 8u
#define DSM_RDMA_DEPTH_MAX 64u

/* ---------------------------------------------------------------- credits */
/*
 * Each side keeps `depth` receive buffers posted for each peer. A sender holds one credit per
 * buffer the peer has posted for it and not yet seen consumed; every SEND uses one. The
 * receiver counts the buffers it consumed and re-posted (to_return) and gives them back in
 * the 32-bit immediate of its next SEND to that peer (piggybacked), or, if it has nothing to
 * send and to_return reached `thresh`, in a zero-length SEND (an explicit credit message).
 *
 * Why this cannot deadlock: a data frame may only use a credit while at least one more is
 * left (avail > 1), so the last credit is kept for a credit message; both sides can always
 * return credits to each other. Credit messages consume a buffer too and are counted in
 * to_return like any frame, but one is only sent once to_return >= thresh (>= 2 with the
 * minimum depth), so they never ping-pong.
 */
struct dsm_rdma_credits {
    uint32_t depth;     /* receive buffers the peer posted for us (its depth) */
    uint32_t avail;     /* credits we hold for the peer's buffers */
    uint32_t to_return; /* our buffers consumed and re-posted, not yet returned */
    uint32_t thresh;    /* explicit credit message from this many */
};

/* peer_depth: the peer's buffers for us (from its private data); own_depth: ours for it. */
void dsm_rdma_credits_init(struct dsm_rdma_credits *c, uint32_t peer_depth, uint32_t own_depth);
/* May a data frame be posted now (keeping the last credit for credit messages)? */
int dsm_rdma_credits_can_data(const struct dsm_rdma_credits *c);
/* Should an explicit credit message go now (nothing to piggyback on)? */
int dsm_rdma_credits_want_msg(const struct dsm_rdma_credits *c);
/* A frame (data or credit message) takes a send slot: it uses one credit. The caller has
 * checked can_data / want_msg. */
void dsm_rdma_credits_take(struct dsm_rdma_credits *c);
/* Posting SENDs: the credits to put in the immediate of the first (all of to_return, now
 * zero). */
uint32_t dsm_rdma_credits_piggyback(struct dsm_rdma_credits *c);
/* A frame arrived carrying `imm` returned credits. 0, or -1 if the peer returned more than
 * it could owe (avail would exceed depth): a corrupt or hostile peer. */
int dsm_rdma_credits_returned(struct dsm_rdma_credits *c, uint32_t imm);
/* One of our receive buffers was consumed and is posted again. */
void dsm_rdma_credits_consumed(struct dsm_rdma_credits *c);

/* ---------------------------------------------------------------- send slots */
/*
 * Per peer, n registered send slots used in order: a frame is copied into slot `filled`,
 * posted in order (`posted`), and its slot is free again when its completion arrives
 * (`done`); RC completes a QP's sends in order, so a ring suffices and a completion out of
 * order means the queue pair is broken. Counters only grow (uint32 wrap-around is fine).
 *   done <= posted <= filled <= done + n
 */
struct dsm_rdma_ring {
    uint32_t n, done, posted, filled;
};

void dsm_rdma_ring_init(struct dsm_rdma_ring *r, uint32_t n);
/* The slot index for the next frame, or -1 if every slot is in use. Marks it filled. */
int dsm_rdma_ring_fill(struct dsm_rdma_ring *r);
/* Frames filled but not posted yet. */
uint32_t dsm_rdma_ring_unposted(const struct dsm_rdma_ring *r);
/* Slots posted and not completed. */
uint32_t dsm_rdma_ring_inflight(const struct dsm_rdma_ring *r);
/* The completion of slot `slot` arrived: 0, or -1 if it is not the oldest one in flight. */
int dsm_rdma_ring_complete(struct dsm_rdma_ring *r, uint32_t slot);

/* ---------------------------------------------------------------- frames */
/* Checks `len` received bytes as exactly one frame, with the same rules as TCP
 * (dsm_wire_check) plus: the buffer holds the header and exactly h->len payload bytes.
 * DSM_WIRE_OK with *h filled, or DSM_WIRE_BAD with the reason in why. */
int dsm_rdma_frame_check(const void *buf, size_t len, const struct dsm_wire_limits *lim,
                         struct dsm_wire_hdr *h, char *why, size_t whylen);

/* ---------------------------------------------------------------- connection private data */
/*
 * The job check repeated on every RDMA connection, in the connect request's and the
 * accept's private data. rdma_cm leaves 56 bytes there for an RC connect request, too few
 * for the full 96-byte TCP hello, so the job name travels as a 64-bit FNV-1a hash; the full
 * description was compared at bootstrap and by the TCP handshake already, so this check is
 * about stray or stale connections (another job, a restarted node, a wrong rank).
 *   0 magic "DSMR", 4 format version (u16), 6 wire version (u16), 8 rank (u16),
 *   10 nodes (u16), 12 page size, 16 region base, 24 region size, 32 job hash, 40 depth,
 *   44 seal (12 bytes)
 * The seal proves the sender knows the job's secret (docs/security.md): the first 12 bytes
 * of HMAC-SHA-256(key, "ufdsm-rdma-1" | bytes 0..44 | receiver's rank (u16) | role), role
 * 'C' from the connecting node, 'A' from the accepting one - so it is bound to this pair and
 * direction and cannot be reflected. One message each way leaves no room for fresh nonces:
 * the seal does not stop an observer of the RDMA network replaying it to the same node
 * (the trust model excludes on-path attackers).
 */
#define DSM_RDMA_PRIV_MAGIC   0x524d5344u /* "DSMR" */
#define DSM_RDMA_PRIV_VERSION 2u
#define DSM_RDMA_PRIV_SEALED  44 /* bytes the seal covers */
#define DSM_RDMA_PRIV_SEAL    12
#define DSM_RDMA_PRIV_SIZE    (DSM_RDMA_PRIV_SEALED + DSM_RDMA_PRIV_SEAL)
struct dsm_rdma_priv {
    int rank;
    uint32_t depth;           /* receive buffers the sender posted per peer: our credits for it */
    struct dsm_job_desc desc; /* job[] is not carried: compare job_hash */
    uint64_t job_hash;
};
uint64_t dsm_rdma_job_hash(const char *job);
void dsm_rdma_priv_encode(uint8_t *out, int rank, uint32_t depth, const struct dsm_job_desc *d);
/* Decodes `len` bytes (a transport may pad private data with zeros). 0, or -1 with why. */
int dsm_rdma_priv_decode(const uint8_t *in, size_t len, struct dsm_rdma_priv *p, char *why,
                         size_t whylen);
struct dsm_auth_key;
/* Seals encoded private data for node `to`; role: DSM_AUTH_CONNECTOR or DSM_AUTH_ACCEPTOR. */
void dsm_rdma_priv_seal(uint8_t *out, const struct dsm_auth_key *key, int to, int role);
/* Whether private data from a node in `sender_role` was sealed for node `self` with `key`. 0, or
 * -1 with why (too short, or not sealed with this job's secret). Check it before decoding:
 * only then is the rest worth reporting as a misconfigured node rather than a stranger. */
int dsm_rdma_priv_verify(const uint8_t *in, size_t len, const struct dsm_auth_key *key, int self,
                         int sender_role, char *why, size_t whylen);
/* Compares a peer's private data with our job. 0, or -1 with a message naming the field,
 * both values and `who`. */
int dsm_rdma_priv_compare(const struct dsm_job_desc *here, const struct dsm_rdma_priv *there,
                          const char *who, char *err, size_t errlen);

/* ---------------------------------------------------------------- registration budget */
/* Receive buffers per peer so that send slots and receive buffers for `peers` peers
 * (2 * peers * depth * DSM_RDMA_STRIDE bytes, all registered) fit in 3/4 of `memlock`
 * bytes (RLIMIT_MEMLOCK; UINT64_MAX: unlimited), capped at DSM_RDMA_DEPTH_MAX.
 * The depth, or 0 if not even DSM_RDMA_DEPTH_MIN fits; *need is then the limit that would
 * do (bytes). */
uint32_t dsm_rdma_depth(uint64_t memlock, int peers, uint64_t *need);

/* ---------------------------------------------------------------- choosing a transport */
/*
 * Before the runtime starts, nodes agree on the transport over the (already connected) TCP
 * mesh, in two phases, each a record from every node to every other:
 *   phase 1: "can I do RDMA": ok, and the address and rdma_cm port of my listener, or why not;
 *   phase 2 (only if every node said ok): "did I connect to every peer over RDMA".
 * Every node sees the same records, so every node reaches the same decision.
 * The record is text (it carries the reason for the logs), sent as the payload of a frame of
 * type DSM_MSG_ABORT through the TCP transport, before the runtime is attached to it.
 * Phase 1 also carries the node's shared-memory rings (shm.h: one word, "-" for none), so
 * nodes on the same host can send to each other through them whatever the base transport.
 *   "ufdsm-select 2 phase=P ok=O port=N addr=A shm=S why=..."
 */
#define DSM_SEL_PREFIX "ufdsm-select 2 "
#define DSM_SEL_SHM    160
#define DSM_SEL_TEXT   (DSM_SEL_WHY + DSM_SEL_SHM + 160) /* the longest record */
#define DSM_SEL_WHY    512
struct dsm_sel_rec {
    int phase; /* 1 or 2 */
    int ok;
    uint16_t port;         /* phase 1, ok: rdma_cm listener port */
    char addr[64];         /* phase 1, ok: numeric address of the listener */
    char shm[DSM_SEL_SHM]; /* phase 1: the announcement of its rings, or "" */
    char why[DSM_SEL_WHY];
};
/* Text of a record into out[outlen]; returns its length (without the NUL), at most
 * outlen - 1; why is cut to fit. */
size_t dsm_sel_encode(const struct dsm_sel_rec *r, char *out, size_t outlen);
/* Parses `len` bytes (not NUL-terminated). 0, or -1 if this is not a valid record. */
int dsm_sel_parse(const void *buf, size_t len, struct dsm_sel_rec *r);

#endif /* DSM_RDMA_LOGIC_H */

/*
 * wire.h - the framed message format shared by every transport (TCP and RDMA).
 *
 * A frame is a fixed 32-byte header followed by `len` payload bytes. Every multi-byte field is
 * little-endian (the only byte order this project builds for; checked at compile time). The
 * header is versioned: a peer speaking another version is rejected at the handshake, and a
 * frame with a wrong magic or version afterwards means a corrupt stream.
 *
 * Nothing here does I/O: encode, decode and validate are pure functions, so the checks every
 * received frame goes through are unit-tested on truncated, oversized and corrupt input.
 */
#ifndef DSM_WIRE_H
#define DSM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "../coherence/messages.h"

#define DSM_WIRE_MAGIC   0xD5A1u
#define DSM_WIRE_VERSION 3u /* 2: DSM_MSG_SHM; 3: DSM_MSG_LOCK_WAKE */
#define DSM_PAGE_SIZE    4096u
#define DSM_MAX_NODES    64 /* sharer sets are 64-bit masks */
/* Largest payload of any frame: a page, or a text/agreement record. */
#define DSM_WIRE_MAX_PAYLOAD DSM_PAGE_SIZE

/* Message types. The coherence protocols' messages, their flags and payloads are defined
 * once, in coherence/messages.h (the only thing transport/ knows of coherence/); the
 * runtime's own messages (locks, barriers, collectives, shutdown) are defined here. */
enum dsm_wire_type {
    DSM_MSG_NONE = 0,
#define DSM_X_SC(n, v, h, f, p) DSM_MSG_##n = v,
#define DSM_X_RC(n, v, h, f, p) DSM_MSG_RC_##n = v,
    COH_SC_MESSAGES(DSM_X_SC) /* 1-11: the single-writer protocol (coh.h) */
    DSM_MSG_LOCK_REQ = 12,    /* node -> lock manager; aux = 1 for trylock */
    DSM_MSG_LOCK_GRANT = 13,  /* manager -> node; aux = 1 granted, 0 busy (trylock only) */
    DSM_MSG_LOCK_REL = 14,    /* node -> manager */
    DSM_MSG_LOCK_INIT = 15,   /* node -> manager: reset this mutex */
    DSM_MSG_BARRIER = 16,     /* dissemination round; aux = round, arg0 = collective sequence */
    DSM_MSG_COLL = 17,        /* collective agreement; payload = struct dsm_coll_rec */
    DSM_MSG_FREE = 18,        /* node -> home: free this dsm_malloc block (arg0 = address) */
    DSM_MSG_BYE = 19,         /* finalize: no more messages from me */
    DSM_MSG_ABORT = 20,       /* a fatal error on the sender; payload = text */
    COH_RC_MESSAGES(DSM_X_RC) /* 21-28: release consistency (rc.h) */
#undef DSM_X_SC
#undef DSM_X_RC
    /* Liveness: sent by the runtime's service thread every DSM_PEER_TIMEOUT/4, so that a node
     * heard nothing from for DSM_PEER_TIMEOUT is known to be frozen or cut off. No payload;
     * the runtime drops it on arrival (it only counts as "heard from"). */
    DSM_MSG_PING = 29,
    /* One-sided page service (dsm/region.c): where the sender's memory file is, for nodes on
     * the same host to map it. Payload: struct dsm_shm_hello, in the sender's byte order
     * (only a node on the same machine, same boot, can use it; others ignore it). */
    DSM_MSG_SHM = 30,
    /* One-sided mutexes (dsm/sync.c): the mutex at arg0 was unlocked through its manager's
     * shared lock table and the receiver had asked to be told (a waiters bit). No payload. */
    DSM_MSG_LOCK_WAKE = 31,
    DSM_MSG_TYPE_COUNT
};

struct dsm_shm_hello {
    uint8_t boot_id[16]; /* /proc/sys/kernel/random/boot_id: the same kernel, the same boot */
    uint64_t ino, dev;   /* the memory file's identity (fstat), checked after opening it */
    uint32_t pid, fd;    /* where to open it: /proc/<pid>/fd/<fd> */
};
#define DSM_SHM_HELLO_LEN 40u

/* Header flags: the protocols' (messages.h says which message may carry which). */
#define DSM_WF_RC_WRITE COH_F_WRITE
#define DSM_WF_RC_FULL  COH_F_FULL
#define DSM_WF_NODATA   COH_F_NODATA
#define DSM_WF_ZERO     COH_F_ZERO
#define DSM_WF_ALL      COH_F_ALL

struct dsm_wire_hdr {
    uint16_t magic;  /* DSM_WIRE_MAGIC */
    uint8_t version; /* DSM_WIRE_VERSION */
    uint8_t type;    /* enum dsm_wire_type */
    uint32_t len;    /* payload bytes after the header */
    uint16_t src;    /* sender rank; must equal the connection's peer */
    uint16_t flags;  /* DSM_WF_* */
    uint32_t aux;    /* type-specific */
    uint64_t arg0;   /* page index, address or sequence, by type */
    uint64_t arg1;   /* type-specific */
};
#define DSM_WIRE_HDR_SIZE 32u

/* What a receiver knows that lets it check a frame: its view of the job. */
struct dsm_wire_limits {
    uint64_t npages; /* pages in the global space: coherence arg0 must be below */
    uint64_t base;   /* address of the global space: mutex / free addresses inside */
    uint32_t nodes;  /* number of nodes */
    uint32_t peer;   /* the rank this connection belongs to (src must match) */
};

enum dsm_wire_status {
    DSM_WIRE_OK = 0,
    DSM_WIRE_SHORT = 1, /* not a whole header / frame yet: read more */
    DSM_WIRE_BAD = -1,  /* corrupt: close the connection */
};

/* Fills a header with magic, version, type, src, len = 0 and zeros elsewhere. */
void dsm_wire_init(struct dsm_wire_hdr *h, enum dsm_wire_type type, uint32_t src);
/* Writes the header in wire order into out[DSM_WIRE_HDR_SIZE]. */
void dsm_wire_encode(const struct dsm_wire_hdr *h, void *out);
/* Reads a header from `avail` bytes at `in`. DSM_WIRE_SHORT if avail < header size. */
int dsm_wire_decode(const void *in, size_t avail, struct dsm_wire_hdr *h);
/* Checks a decoded header against the limits: magic, version, type, flags, payload length
 * for the type, page index and node ids in range, src == limits->peer. On DSM_WIRE_BAD,
 * writes a one-line reason into why[whylen] (naming the field and the value). */
int dsm_wire_check(const struct dsm_wire_hdr *h, const struct dsm_wire_limits *lim, char *why,
                   size_t whylen);
/* The name of a message type, "?" if unknown. */
const char *dsm_wire_type_name(unsigned type);

#endif /* DSM_WIRE_H */

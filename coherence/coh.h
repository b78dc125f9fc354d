/*
 * coh.h - the default coherence protocol of ufdsm as pure state machines.
 *
 * Single writer / multiple readers per page (MSI, write-invalidate), with a blocking
 * directory at each page's home node: the home serves one request per page at a time and
 * collects invalidation acks itself; requests that arrive while a page is busy wait in a
 * per-page queue served round-robin by node id (so no node starves).
 *
 * Nothing here does I/O, takes locks, allocates or reads a clock. The runtime feeds events in
 * (a local access that needs permission, a received message, a voluntary eviction) and gets
 * back a list of actions to carry out in order (send a message, map/protect/unmap the local
 * copy, update the home's backing store). The model checker in tests/ drives exactly these
 * functions, so what is checked is what runs.
 *
 * Assumptions the protocol relies on (the transports provide them): messages between any
 * ordered pair of nodes are delivered reliably and in FIFO order, including a node's
 * messages to itself (the runtime's local queue).
 *
 * Payloads are implied by the message type: PUT_M and WB carry the sender's copy of the page,
 * taken when the SEND action is carried out (the copy is write-protected before that, and an
 * UNMAP that follows comes after the send); DATA_S and DATA_M carry the home's store unless
 * flagged ZERO (the store was never written: all zeros) or NODATA (the requester's copy is
 * current).
 */
#ifndef DSM_COH_H
#define DSM_COH_H

#include <stdint.h>

#include "messages.h"

#define COH_MAX_NODES 64

/* Message types (messages.h defines them, their flags and payloads; the wire uses the same
 * numbers). */
enum coh_mtype {
#define COH_X(n, v, h, f, p) COH_##n = v,
    COH_SC_MESSAGES(COH_X)
#undef COH_X
        COH_MTYPE_END = 12
};

struct coh_msg {
    uint8_t type;  /* enum coh_mtype (or enum rc_mtype, rc.h) */
    uint8_t flags; /* COH_F_* (RC_F_*) */
    uint8_t src, dst;
    uint64_t page;
    uint64_t arg; /* release consistency: the page's writer set (rc.h); 0 here */
};

/* Whether a message of this type and flags carries a page payload. */
int coh_msg_has_payload(const struct coh_msg *m);
/* Messages handled by the directory (node -> home) vs. by the node side (home -> node). */
int coh_msg_to_home(unsigned type);
const char *coh_mtype_name(unsigned type);

/* Node-side state of one page on one node. */
enum coh_nstate {
    COH_I = 0,     /* no copy */
    COH_S = 1,     /* read-only copy */
    COH_M = 2,     /* exclusive writable copy */
    COH_IS_D = 3,  /* I -> S: GET_S sent, waiting for data */
    COH_IM_AD = 4, /* I -> M: GET_M sent, waiting for grant with data */
    COH_SM_A = 5,  /* S -> M: GET_M sent holding a read copy (still readable), waiting */
    COH_NSTATE_END = 6
};
const char *coh_nstate_name(unsigned st);

/* Directory state of one page at its home. */
enum coh_dstate {
    COH_D_SHARED = 0,   /* store valid; `sharers` hold read copies (possibly none) */
    COH_D_EXCL = 1,     /* `owner` holds the only, writable copy; store stale */
    COH_D_BUSY_WB = 2,  /* recalled `owner` for `req`; waiting for its WB or PUT_M */
    COH_D_BUSY_INV = 3, /* invalidated `sharers` for `req`'s GET_M; waiting for `acks` acks */
    COH_DSTATE_END = 4
};
const char *coh_dstate_name(unsigned st);

struct coh_dir {
    uint8_t state;    /* enum coh_dstate */
    uint8_t written;  /* 0: the store was never written back, the page is all zeros */
    uint8_t owner;    /* EXCL, BUSY_WB */
    uint8_t req;      /* BUSY_*: the requester being served */
    uint8_t req_type; /* BUSY_*: COH_GET_S or COH_GET_M */
    uint8_t req_had;  /* BUSY_INV: the requester held a read copy (grant without data) */
    uint8_t acks;     /* BUSY_INV: acks still expected */
    uint8_t rr;       /* round-robin cursor over queued requesters */
    uint64_t sharers; /* SHARED: readers; BUSY_INV: nodes whose ack is awaited */
    uint64_t pend_s;  /* queued GET_S requesters (at most one request per node per page) */
    uint64_t pend_m;  /* queued GET_M requesters */
};

/* Actions the runtime carries out, in order. */
enum coh_akind {
    COH_A_SEND = 1,      /* send `msg` (payload per coh_msg_has_payload, taken now) */
    COH_A_MAP_RO = 2,    /* map `page` read-only with the handled message's payload (or zeros) */
    COH_A_MAP_RW = 3,    /* map `page` writable with the handled message's payload (or zeros) */
    COH_A_PROTECT = 4,   /* make the mapped copy read-only */
    COH_A_UNPROTECT = 5, /* make the mapped read-only copy writable, data kept */
    COH_A_UNMAP = 6,     /* drop the local copy */
    COH_A_STORE = 7,     /* home: store <- the handled message's payload */
    /* release consistency (rc.h) */
    COH_A_TWIN = 8,       /* keep a copy (twin) of the page as it is now */
    COH_A_DROP_TWIN = 9,  /* forget the twin */
    COH_A_APPLY = 10,     /* home: apply the handled message's diff (or whole page) to the store */
    COH_A_REFRESH = 12,   /* overwrite this node's read-only copy of `page` in place with its
                             home's store (no mapping change, no fault): offered at an acquire
                             with COH_ACC_REFRESH */
    COH_A_FETCH = 11,     /* install `page` read-only from its home's store, read in place: no
                             message (offered by the engine with COH_ACC_FETCH) */
    COH_A_DIFF_KEEP = 13, /* send `msg`, an RC_DIFF against the twin, and bring the twin up to
                             what was sent in the same pass: the copy stays writable, and a
                             write that lands after its bytes were read differs from the twin
                             and goes in the next diff */
    COH_A_MERGE = 14,     /* a writable copy with a twin, at an acquire with COH_ACC_REFRESH:
                             every byte still equal to the twin takes the home store's value,
                             every byte this node changed since stays, and the twin becomes the
                             store's page (so the next diff sends exactly this node's changes) */
};

/* The `how` argument of a protocol's node_access (proto.h): bits. */
#define COH_ACC_WRITE 0x1 /* the thread writes (else it reads) */
#define COH_ACC_FETCH                                                                              \
    0x2 /* the home's store can be read in place from this node and holds every write-back         \
           this node sent (one-sided page service: the page may be taken without asking the        \
           home, COH_A_FETCH, where the protocol allows it) */
#define COH_ACC_REFRESH                                                                            \
    0x8 /* at an acquire (node_acquire's `how`): as COH_ACC_FETCH, and this node's copy can be     \
           overwritten in place from the home's store (COH_A_REFRESH) */
#define COH_REL_CLEAN                                                                              \
    0x10 /* at a release (node_release's `how`): the copy was found equal to its twin - a hint     \
            for bookkeeping only, never for what is sent, since a write may land just after */
#define COH_ACC_INPLACE                                                                            \
    0x4 /* this node homes the page and its view of it is the home store itself (one copy at       \
           the home, dsm_mem_ops.map_home): what other nodes release lands in what this node's     \
           threads see, and what they write is in the store as they write it */

struct coh_action {
    uint8_t kind;       /* enum coh_akind */
    struct coh_msg msg; /* SEND: the message; others: msg.page is the page */
};

/* At most: one action per node for an invalidation round, plus a handful. */
#define COH_OUT_MAX (COH_MAX_NODES + 8)
struct coh_out {
    int n;
    struct coh_action a[COH_OUT_MAX];
};

/* Result of coh_node_access. */
enum {
    COH_ACCESS_OK = 0,   /* the access is already permitted (a spurious or raced fault) */
    COH_ACCESS_WAIT = 1, /* a request is in flight (just sent, or earlier): wait for a change */
};

/* Error: a message that cannot arrive in this state under the protocol's assumptions. The
 * runtime treats it as fatal (it is a protocol bug or a corrupt peer); `*why` says which. */
#define COH_EPROTO (-1)

/* A local thread needs read (write=0) or write access to `page`, homed on `home`.
 * Returns COH_ACCESS_OK or COH_ACCESS_WAIT; appends the request to `out` if one is sent. */
int coh_node_access(uint8_t *st, int self, int home, uint64_t page, int write, struct coh_out *out);
/* The node side receives a home -> node message. 0, or COH_EPROTO with *why set. */
int coh_node_recv(uint8_t *st, int self, const struct coh_msg *m, struct coh_out *out,
                  const char **why);
/* Voluntarily drop the local copy (eviction). 0 if dropped (actions appended), 1 if the
 * page is in a transient state and cannot be dropped now, 0 with no action if no copy. */
int coh_node_evict(uint8_t *st, int self, int home, uint64_t page, struct coh_out *out);

/* A fresh directory entry: SHARED, no sharers, never written (all zeros). */
void coh_dir_init(struct coh_dir *d);
/* The directory at `home` receives a node -> home message. 0, or COH_EPROTO with *why. */
int coh_dir_recv(struct coh_dir *d, int home, const struct coh_msg *m, struct coh_out *out,
                 const char **why);
/* Whether the directory is between requests (no transient state, nothing queued). */
int coh_dir_idle(const struct coh_dir *d);

#endif /* DSM_COH_H */

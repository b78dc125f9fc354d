/*
 * messages.h - the coherence protocols' messages, defined once: number, name, direction,
 * the flags each may carry and what payload it carries.
 *
 * Both protocols (coh.h, rc.h) take their message enums from these tables, and the wire
 * format (transport/wire.h, wire.c) takes its protocol message numbers, names, allowed flags
 * and payload lengths from them too: a message or a payload rule cannot be changed in one
 * place and forgotten in another. Pure definitions, no code that does anything but look up
 * this table, so transport/ may include it without knowing anything else of coherence/.
 */
#ifndef DSM_MESSAGES_H
#define DSM_MESSAGES_H

#include <stdint.h>

#define COH_PAGE_SIZE 4096u

/* Flags; every message may carry only the ones its table entry allows. */
#define COH_F_WRITE  0x1 /* RC_GET: register the requester as a writer */
#define COH_F_FULL   0x2 /* RC_DIFF: the payload is the whole page */
#define COH_F_NODATA 0x2 /* DATA_M: no payload, the requester's copy is current */
#define COH_F_ZERO   0x4 /* DATA_S, DATA_M, RC_DATA: no payload, the page is all zeros */
#define COH_F_ALL    0x7

/* Payloads. */
enum coh_payload {
    COH_P_NONE = 0, /* none */
    COH_P_PAGE = 1, /* a page (the sender's copy, or the home's store) */
    COH_P_DATA = 2, /* a page unless flagged ZERO or NODATA */
    COH_P_DIFF = 3, /* runs of changed bytes [u16 off][u16 len][bytes]..., or a page if FULL */
};

/* X(name, number, to_home, allowed flags, payload). */
#define COH_SC_MESSAGES(X)                                                                         \
    X(GET_S, 1, 1, 0, COH_P_NONE)           /* node -> home: a read copy please */                 \
    X(GET_M, 2, 1, 0, COH_P_NONE)           /* node -> home: an exclusive copy please */           \
    X(PUT_S, 3, 1, 0, COH_P_NONE)           /* node -> home: dropped my read copy */               \
    X(PUT_M, 4, 1, 0, COH_P_PAGE)           /* node -> home: dropped my exclusive copy */          \
    X(WB, 5, 1, 0, COH_P_PAGE)              /* owner -> home: reply to a recall */                 \
    X(INV_ACK, 6, 1, 0, COH_P_NONE)         /* sharer -> home */                                   \
    X(DATA_S, 7, 0, COH_F_ZERO, COH_P_DATA) /* home -> node: a read copy */                        \
    X(DATA_M, 8, 0, COH_F_ZERO | COH_F_NODATA, COH_P_DATA) /* home -> node: exclusive */           \
    X(INV, 9, 0, 0, COH_P_NONE)       /* home -> sharer: drop your copy, ack */                    \
    X(RECALL_S, 10, 0, 0, COH_P_NONE) /* home -> owner: downgrade, write back */                   \
    X(RECALL_I, 11, 0, 0, COH_P_NONE) /* home -> owner: drop your copy, write back */

/* Release consistency (rc.h). Numbered after the runtime's own messages (transport/wire.h). */
#define COH_RC_MESSAGES(X)                                                                         \
    X(GET, 21, 1, COH_F_WRITE, COH_P_NONE) /* node -> home: a copy (WRITE: and register me) */     \
    X(DATA, 22, 0, COH_F_ZERO, COH_P_DATA) /* home -> node: the page; arg = writer set */          \
    X(WREG, 23, 1, 0, COH_P_NONE)          /* node -> home: register me as a writer */             \
    X(WREG_ACK, 24, 0, 0, COH_P_NONE)      /* home -> node; arg = writer set */                    \
    X(CLASS, 25, 0, 0, COH_P_NONE)         /* home -> node: the writer set grew; ack it */         \
    X(CLASS_ACK, 26, 1, 0, COH_P_NONE)     /* node -> home */                                      \
    X(DIFF, 27, 1, COH_F_FULL, COH_P_DIFF) /* node -> home: changed bytes, or the page */          \
    X(DIFF_ACK, 28, 0, 0, COH_P_NONE)      /* home -> node: applied */

struct coh_msginfo {
    const char *name; /* NULL: not a protocol message */
    uint8_t to_home;
    uint8_t flags;   /* allowed */
    uint8_t payload; /* enum coh_payload */
};

/* The table entry of a message number (a protocol message or not). */
static inline struct coh_msginfo coh_msginfo(unsigned type)
{
    switch (type) {
#define COH_X_SC(n, v, h, f, p)                                                                    \
    case v:                                                                                        \
        return (struct coh_msginfo){#n, h, f, p};
#define COH_X_RC(n, v, h, f, p)                                                                    \
    case v:                                                                                        \
        return (struct coh_msginfo){"RC_" #n, h, f, p};
        COH_SC_MESSAGES(COH_X_SC)
        COH_RC_MESSAGES(COH_X_RC)
#undef COH_X_SC
#undef COH_X_RC
    default:
        return (struct coh_msginfo){0, 0, 0, 0};
    }
}

/* The payload length a message of this type and these flags carries: 0, a page, or -1 for a
 * diff (1 .. a page of runs; its format is checked where it is applied). Flags are assumed
 * to be allowed ones. */
static inline int coh_payload_len(unsigned type, unsigned flags)
{
    switch (coh_msginfo(type).payload) {
    case COH_P_PAGE:
        return (int)COH_PAGE_SIZE;
    case COH_P_DATA:
        return (flags & (COH_F_ZERO | COH_F_NODATA)) ? 0 : (int)COH_PAGE_SIZE;
    case COH_P_DIFF:
        return (flags & COH_F_FULL) ? (int)COH_PAGE_SIZE : -1;
    default:
        return 0;
    }
}

#endif /* DSM_MESSAGES_H */

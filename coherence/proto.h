/*
 * proto.h - the one interface through which the engine drives a coherence protocol.
 *
 * A protocol is a set of pure state machines - events in, actions out, no I/O, no clock -
 * chosen per allocation: every page records the protocol of the allocation that holds it,
 * and the engine calls that protocol's functions for it. Each page has a node-side state
 * code (enum coh_nstate's numbering: I, S, M are stable, the rest are requests in flight),
 * plus per-protocol extra state on the node (`x`, NULL-able for protocols without) and a
 * directory entry at its home (`d`). Implementations:
 *   - DSM_PROTO_SC (coh.h): sequentially consistent, single writer / multiple readers;
 *   - DSM_PROTO_RC (rc.h): home-based release consistency with multiple writers.
 */
#ifndef DSM_PROTO_H
#define DSM_PROTO_H

#include <stdint.h>

#include "coh.h"

enum { DSM_PROTO_SC = 0, DSM_PROTO_RC = 1, DSM_PROTO_COUNT = 2 };

struct coh_protocol {
    const char *name;
    /* Whether a message type is this protocol's, and whether it is handled by the home. */
    int (*msg_is_mine)(unsigned type);
    int (*msg_to_home)(unsigned type);
    const char *(*mtype_name)(unsigned type);
    /* A local thread needs read or write access: COH_ACCESS_OK or COH_ACCESS_WAIT. `how`:
     * COH_ACC_* bits (coh.h): write or read, and whether the home's store is readable here. */
    int (*node_access)(uint8_t *st, void *x, int self, int home, uint64_t page, unsigned how,
                       struct coh_out *out);
    /* The node side receives a home -> node message. 0, or COH_EPROTO with *why set. */
    int (*node_recv)(uint8_t *st, void *x, int self, const struct coh_msg *m, struct coh_out *out,
                     const char **why);
    /* Synchronisation points (NULL: the protocol needs none). */
    /* how: COH_REL_CLEAN or 0 */
    void (*node_release)(uint8_t *st, void *x, int self, int home, uint64_t page, unsigned how,
                         struct coh_out *out);
    /* how: COH_ACC_REFRESH or 0 */
    void (*node_acquire)(uint8_t *st, void *x, int self, int home, uint64_t page, unsigned how,
                         struct coh_out *out);
    void (*dir_init)(void *d);
    /* The directory receives a node -> home message. 0, or COH_EPROTO with *why set. */
    int (*dir_recv)(void *d, int home, const struct coh_msg *m, struct coh_out *out,
                    const char **why);
    /* Between requests: no transient state, nothing queued. */
    int (*dir_idle)(const void *d);
    /* Whether a node-side state is stable (no request of this node in flight). */
    int (*node_stable)(uint8_t st);
};

/* The protocol with this id (DSM_PROTO_*), NULL if there is none. */
const struct coh_protocol *coh_protocol_get(unsigned id);
/* The protocol a message type belongs to (DSM_PROTO_*), -1 for none. */
int coh_protocol_of_msg(unsigned type);

#endif /* DSM_PROTO_H */

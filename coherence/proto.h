/*
 * proto.h - the one interface through which the engine drives a coherence protocol.
 *
 * A protocol is a set of pure state machines - events in, actions out, no I/O, no clock -
 * chosen per allocation: every page records the protocol of the allocation that holds it,
 * and the engine calls that protocol's functions for it. The sequentially consistent
 * single-writer protocol of coh.h is the first implementation (DSM_PROTO_SC).
 */
#ifndef DSM_PROTO_H
#define DSM_PROTO_H

#include <stdint.h>

#include "coh.h"

enum { DSM_PROTO_SC = 0, DSM_PROTO_COUNT = 1 };

struct coh_protocol {
    const char *name;
    /* A local thread needs read or write access: COH_ACCESS_OK or COH_ACCESS_WAIT. */
    int (*node_access)(uint8_t *st, int self, int home, uint64_t page, int write,
                       struct coh_out *out);
    /* The node side receives a home -> node message. 0, or COH_EPROTO with *why set. */
    int (*node_recv)(uint8_t *st, int self, const struct coh_msg *m, struct coh_out *out,
                     const char **why);
    /* Voluntarily drop the local copy: 0 dropped (or nothing to drop), 1 not now. */
    int (*node_evict)(uint8_t *st, int self, int home, uint64_t page, struct coh_out *out);
    void (*dir_init)(struct coh_dir *d);
    /* The directory receives a node -> home message. 0, or COH_EPROTO with *why set. */
    int (*dir_recv)(struct coh_dir *d, int home, const struct coh_msg *m, struct coh_out *out,
                    const char **why);
    /* Between requests: no transient state, nothing queued. */
    int (*dir_idle)(const struct coh_dir *d);
    /* Whether a node-side state is stable (no request of this node in flight). */
    int (*node_stable)(uint8_t st);
};

/* The protocol with this id (DSM_PROTO_*), NULL if there is none. */
const struct coh_protocol *coh_protocol_get(unsigned id);

#endif /* DSM_PROTO_H */

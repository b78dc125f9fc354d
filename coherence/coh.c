/*
 * coh.c - transitions of the node-side page state machine and of the home directory.
 * See coh.h for the protocol, its assumptions and the action vocabulary. Every function is
 * pure: state in, actions out. Transitions that the protocol makes unreachable return
 * COH_EPROTO with a reason instead of guessing, so the model checker and the runtime both
 * notice if one is ever reached.
 *
 * COH_INJECT_BUG (build-time, tests only) plants a known bug so that the model checker can
 * show it catches it: 1 = grant exclusivity before the invalidation acks are in,
 * 2 = forget to record a reader in the sharer set.
 */
#include "coh.h"
#include "proto.h"

#include <stddef.h>

#ifndef COH_INJECT_BUG
#define COH_INJECT_BUG 0
#endif

static const char *const nstate_names[COH_NSTATE_END] = {"I", "S", "M", "IS_D", "IM_AD", "SM_A"};
static const char *const dstate_names[COH_DSTATE_END] = {"SHARED", "EXCL", "BUSY_WB", "BUSY_INV"};

const char *coh_mtype_name(unsigned type)
{
    return type < COH_MTYPE_END && coh_msginfo(type).name ? coh_msginfo(type).name : "?";
}

const char *coh_nstate_name(unsigned st)
{
    return st < COH_NSTATE_END ? nstate_names[st] : "?";
}

const char *coh_dstate_name(unsigned st)
{
    return st < COH_DSTATE_END ? dstate_names[st] : "?";
}

int coh_msg_has_payload(const struct coh_msg *m)
{
    return coh_payload_len(m->type, m->flags) != 0;
}

int coh_msg_to_home(unsigned type)
{
    return type < COH_MTYPE_END && coh_msginfo(type).to_home;
}

static void act(struct coh_out *out, uint8_t kind, uint64_t page)
{
    struct coh_action *a = &out->a[out->n++];
    a->kind = kind;
    a->msg = (struct coh_msg){.page = page};
}

static void send(struct coh_out *out, uint8_t type, uint8_t flags, int src, int dst, uint64_t page)
{
    struct coh_action *a = &out->a[out->n++];
    a->kind = COH_A_SEND;
    a->msg = (struct coh_msg){
        .type = type, .flags = flags, .src = (uint8_t)src, .dst = (uint8_t)dst, .page = page};
}

static uint64_t bit(int node)
{
    return (uint64_t)1 << node;
}

/* ---------------------------------------------------------------- node side */

int coh_node_access(uint8_t *st, int self, int home, uint64_t page, int write, struct coh_out *out)
{
    switch (*st) {
    case COH_I:
        send(out, write ? COH_GET_M : COH_GET_S, 0, self, home, page);
        *st = write ? COH_IM_AD : COH_IS_D;
        return COH_ACCESS_WAIT;
    case COH_S:
        if (!write) return COH_ACCESS_OK;
        send(out, COH_GET_M, 0, self, home, page);
        *st = COH_SM_A;
        return COH_ACCESS_WAIT;
    case COH_M:
        return COH_ACCESS_OK;
    case COH_SM_A:
        /* The read copy stays mapped while the upgrade is in flight. */
        return write ? COH_ACCESS_WAIT : COH_ACCESS_OK;
    default: /* IS_D, IM_AD: one request per page per node; the waiter retries later. */
        return COH_ACCESS_WAIT;
    }
}

int coh_node_recv(uint8_t *st, int self, const struct coh_msg *m, struct coh_out *out,
                  const char **why)
{
    const uint64_t p = m->page;
    const int home = m->src;

    switch (m->type) {
    case COH_DATA_S:
        if (*st != COH_IS_D) break;
        act(out, COH_A_MAP_RO, p);
        *st = COH_S;
        return 0;

    case COH_DATA_M:
        if (*st == COH_IM_AD && !(m->flags & COH_F_NODATA)) {
            act(out, COH_A_MAP_RW, p);
            *st = COH_M;
            return 0;
        }
        if (*st == COH_SM_A && (m->flags & COH_F_NODATA)) {
            act(out, COH_A_UNPROTECT, p);
            *st = COH_M;
            return 0;
        }
        break;

    case COH_INV:
        /* Every INV is acked exactly once: the home counts them. A node that is not in S
         * dropped its copy already (its PUT_S crossed this INV); it acks all the same. */
        if (*st == COH_S || *st == COH_SM_A) act(out, COH_A_UNMAP, p);
        if (*st == COH_S)
            *st = COH_I;
        else if (*st == COH_SM_A)
            *st = COH_IM_AD;
        else if (*st == COH_M)
            break;
        send(out, COH_INV_ACK, 0, self, home, p);
        return 0;

    case COH_RECALL_S:
    case COH_RECALL_I:
        if (*st == COH_M) {
            /* Protect first so no local thread can write after the copy is taken. */
            act(out, COH_A_PROTECT, p);
            send(out, COH_WB, 0, self, home, p);
            if (m->type == COH_RECALL_I) {
                act(out, COH_A_UNMAP, p);
                *st = COH_I;
            } else {
                *st = COH_S;
            }
            return 0;
        }
        /* A recall that crossed this node's PUT_M: the home takes the PUT_M as the
         * write-back, so this one is stale. It can only arrive before any later grant. */
        if (*st == COH_I || *st == COH_IS_D || *st == COH_IM_AD) return 0;
        break;

    default:
        *why = "a node received a message meant for a directory";
        return COH_EPROTO;
    }
    *why = "node received a message it cannot receive in this state";
    return COH_EPROTO;
}

int coh_node_evict(uint8_t *st, int self, int home, uint64_t page, struct coh_out *out)
{
    switch (*st) {
    case COH_I:
        return 0;
    case COH_S:
        send(out, COH_PUT_S, 0, self, home, page);
        act(out, COH_A_UNMAP, page);
        *st = COH_I;
        return 0;
    case COH_M:
        act(out, COH_A_PROTECT, page);
        send(out, COH_PUT_M, 0, self, home, page);
        act(out, COH_A_UNMAP, page);
        *st = COH_I;
        return 0;
    default:
        return 1;
    }
}

/* ---------------------------------------------------------------- directory */

void coh_dir_init(struct coh_dir *d)
{
    *d = (struct coh_dir){.state = COH_D_SHARED};
}

int coh_dir_idle(const struct coh_dir *d)
{
    return (d->state == COH_D_SHARED || d->state == COH_D_EXCL) && !d->pend_s && !d->pend_m;
}

static uint8_t data_flags(const struct coh_dir *d)
{
    return d->written ? 0 : COH_F_ZERO;
}

static void grant_m(struct coh_dir *d, int home, int r, int had, uint64_t p, struct coh_out *out)
{
    d->state = COH_D_EXCL;
    d->owner = (uint8_t)r;
    d->sharers = 0;
    send(out, COH_DATA_M, had ? COH_F_NODATA : data_flags(d), home, r, p);
}

/* Starts serving a request; the page is not busy. */
static int serve(struct coh_dir *d, int home, int r, int type, uint64_t p, struct coh_out *out,
                 const char **why)
{
    if (d->state == COH_D_EXCL) {
        if (d->owner == r) {
            *why = "request from the node the directory records as exclusive owner";
            return COH_EPROTO;
        }
        d->state = COH_D_BUSY_WB;
        d->req = (uint8_t)r;
        d->req_type = (uint8_t)type;
        send(out, type == COH_GET_S ? COH_RECALL_S : COH_RECALL_I, 0, home, d->owner, p);
        return 0;
    }
    /* SHARED */
    if (type == COH_GET_S) {
        if (d->sharers & bit(r)) {
            *why = "GET_S from a node already recorded as a sharer";
            return COH_EPROTO;
        }
#if COH_INJECT_BUG != 2
        d->sharers |= bit(r);
#endif
        send(out, COH_DATA_S, data_flags(d), home, r, p);
        return 0;
    }
    uint64_t others = d->sharers & ~bit(r);
    int had = (d->sharers & bit(r)) != 0;
    if (!others) {
        grant_m(d, home, r, had, p, out);
        return 0;
    }
    d->state = COH_D_BUSY_INV;
    d->req = (uint8_t)r;
    d->req_type = COH_GET_M;
    d->req_had = (uint8_t)had;
    d->sharers = others;
    d->acks = (uint8_t)__builtin_popcountll(others);
    for (int n = 0; n < COH_MAX_NODES; n++)
        if (others & bit(n)) send(out, COH_INV, 0, home, n, p);
#if COH_INJECT_BUG == 1
    grant_m(d, home, r, had, p, out);
    d->state = COH_D_BUSY_INV;
#endif
    return 0;
}

/* Serves queued requests, round-robin by node id from the cursor, until one makes the page
 * busy again or none is left. */
static int drain(struct coh_dir *d, int home, uint64_t p, struct coh_out *out, const char **why)
{
    while ((d->state == COH_D_SHARED || d->state == COH_D_EXCL) && (d->pend_s | d->pend_m)) {
        uint64_t pend = d->pend_s | d->pend_m;
        int n = d->rr;
        for (int i = 1; i <= COH_MAX_NODES; i++) {
            int c = (d->rr + i) % COH_MAX_NODES;
            if (pend & bit(c)) {
                n = c;
                break;
            }
        }
        d->rr = (uint8_t)n;
        int type = (d->pend_m & bit(n)) ? COH_GET_M : COH_GET_S;
        d->pend_s &= ~bit(n);
        d->pend_m &= ~bit(n);
        int rc = serve(d, home, n, type, p, out, why);
        if (rc) return rc;
    }
    return 0;
}

/* The recalled owner's copy arrived (WB: it kept a read copy if the recall said so; PUT_M:
 * it dropped its copy on its own). */
static int finish_wb(struct coh_dir *d, int home, int kept, uint64_t p, struct coh_out *out,
                     const char **why)
{
    int o = d->owner, r = d->req;
    act(out, COH_A_STORE, p);
    d->written = 1;
    if (d->req_type == COH_GET_S) {
        d->state = COH_D_SHARED;
        d->sharers = (kept ? bit(o) : 0) | bit(r);
        send(out, COH_DATA_S, 0, home, r, p);
    } else {
        grant_m(d, home, r, 0, p, out);
    }
    return drain(d, home, p, out, why);
}

int coh_dir_recv(struct coh_dir *d, int home, const struct coh_msg *m, struct coh_out *out,
                 const char **why)
{
    const uint64_t p = m->page;
    const int n = m->src;
    const int busy = d->state == COH_D_BUSY_WB || d->state == COH_D_BUSY_INV;

    switch (m->type) {
    case COH_GET_S:
    case COH_GET_M:
        if ((d->pend_s | d->pend_m) & bit(n)) {
            *why = "second request for one page from one node";
            return COH_EPROTO;
        }
        if (busy || d->pend_s || d->pend_m) {
            if (m->type == COH_GET_S)
                d->pend_s |= bit(n);
            else
                d->pend_m |= bit(n);
            return busy ? 0 : drain(d, home, p, out, why);
        }
        return serve(d, home, n, m->type, p, out, why);

    case COH_PUT_S:
        if (d->state == COH_D_SHARED && (d->sharers & bit(n))) {
            d->sharers &= ~bit(n);
            return 0;
        }
        /* Crossed an INV to the same node: its INV_ACK follows and is what counts. */
        if (d->state == COH_D_BUSY_INV && (d->sharers & bit(n))) return 0;
        *why = "PUT_S from a node that is not a sharer";
        return COH_EPROTO;

    case COH_PUT_M:
        if (d->state == COH_D_EXCL && d->owner == n) {
            act(out, COH_A_STORE, p);
            d->written = 1;
            d->state = COH_D_SHARED;
            d->sharers = 0;
            return drain(d, home, p, out, why);
        }
        if (d->state == COH_D_BUSY_WB && d->owner == n) return finish_wb(d, home, 0, p, out, why);
        *why = "PUT_M from a node that is not the owner";
        return COH_EPROTO;

    case COH_WB:
        if (d->state == COH_D_BUSY_WB && d->owner == n)
            return finish_wb(d, home, d->req_type == COH_GET_S, p, out, why);
        *why = "write-back from a node that was not recalled";
        return COH_EPROTO;

    case COH_INV_ACK:
        if (d->state != COH_D_BUSY_INV || !(d->sharers & bit(n))) {
            *why = "INV_ACK from a node that was not invalidated";
            return COH_EPROTO;
        }
        d->sharers &= ~bit(n);
        if (--d->acks == 0) {
#if COH_INJECT_BUG == 1
            d->state = COH_D_EXCL;
            d->owner = d->req;
#else
            grant_m(d, home, d->req, d->req_had, p, out);
#endif
            return drain(d, home, p, out, why);
        }
        return 0;

    default:
        *why = "a directory received a message meant for a node";
        return COH_EPROTO;
    }
}

/* ---------------------------------------------------------------- as a protocol */

static int node_stable(uint8_t st)
{
    return st == COH_I || st == COH_S || st == COH_M;
}

static int sc_is_mine(unsigned type)
{
    return type >= COH_GET_S && type < COH_MTYPE_END;
}

static int sc_access(uint8_t *st, void *x, int self, int home, uint64_t page, unsigned how,
                     struct coh_out *out)
{
    (void)x;
    /* No one-sided fetch (COH_ACC_FETCH) under SC: the directory must know every reader to
     * invalidate it before a write. */
    return coh_node_access(st, self, home, page, (how & COH_ACC_WRITE) != 0, out);
}

static int sc_recv(uint8_t *st, void *x, int self, const struct coh_msg *m, struct coh_out *out,
                   const char **why)
{
    (void)x;
    return coh_node_recv(st, self, m, out, why);
}

static void sc_dir_init(void *d)
{
    coh_dir_init(d);
}

static int sc_dir_recv(void *d, int home, const struct coh_msg *m, struct coh_out *out,
                       const char **why)
{
    return coh_dir_recv(d, home, m, out, why);
}

static int sc_dir_idle(const void *d)
{
    return coh_dir_idle(d);
}

static const struct coh_protocol coh_sc = {
    .name = "sc",
    .msg_is_mine = sc_is_mine,
    .msg_to_home = coh_msg_to_home,
    .mtype_name = coh_mtype_name,
    .node_access = sc_access,
    .node_recv = sc_recv,
    .dir_init = sc_dir_init,
    .dir_recv = sc_dir_recv,
    .dir_idle = sc_dir_idle,
    .node_stable = node_stable,
};

extern const struct coh_protocol coh_rc; /* rc.c */

const struct coh_protocol *coh_protocol_get(unsigned id)
{
    return id == DSM_PROTO_SC ? &coh_sc : id == DSM_PROTO_RC ? &coh_rc : NULL;
}

int coh_protocol_of_msg(unsigned type)
{
    for (unsigned id = 0; id < DSM_PROTO_COUNT; id++)
        if (coh_protocol_get(id)->msg_is_mine(type)) return (int)id;
    return -1;
}

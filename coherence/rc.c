/*
 * rc.c - every transition of the release-consistency protocol (rc.h explains it).
 *
 * Order of actions matters where application threads of the node may write concurrently:
 * a page is write-protected before its changes are read for a write-back, so a write that
 * comes later faults (and waits for the engine) instead of slipping between the diff and the
 * protection and being lost.
 */
#include <stddef.h>

#include "proto.h"
#include "rc.h"

int rc_msg_is_rc(unsigned type)
{
    return type >= RC_MTYPE_FIRST && type < RC_MTYPE_END;
}

int rc_msg_to_home(unsigned type)
{
    return rc_msg_is_rc(type) && coh_msginfo(type).to_home;
}

const char *rc_mtype_name(unsigned type)
{
    return rc_msg_is_rc(type) ? coh_msginfo(type).name : "?";
}

static uint64_t bit(int node)
{
    return (uint64_t)1 << node;
}

static void act(struct coh_out *out, uint8_t kind, uint64_t page)
{
    struct coh_action *a = &out->a[out->n++];
    a->kind = kind;
    a->msg = (struct coh_msg){.page = page};
}

static void send(struct coh_out *out, uint8_t type, uint8_t flags, int src, int dst, uint64_t page,
                 uint64_t arg)
{
    struct coh_action *a = &out->a[out->n++];
    a->kind = COH_A_SEND;
    a->msg = (struct coh_msg){.type = type,
                              .flags = flags,
                              .src = (uint8_t)src,
                              .dst = (uint8_t)dst,
                              .page = page,
                              .arg = arg};
}

/* ---------------------------------------------------------------- node side */

/* The mapped read-only copy becomes writable for this interval. Other writers, or a writer
 * that registered itself in the shared directory (RC_N_SELFREG: others may join without
 * telling it): keep a twin to diff against at the release. Sole writer: the whole page goes
 * back, no twin needed - and if this node is also the home, nothing goes back at all: the home
 * copies its page into the store when someone asks for it. */
static void become_writer(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page,
                          struct coh_out *out)
{
    uint16_t twin_always = RC_N_SELFREG;
#if UFDSM_INJECT_RC_BUG == 8 /* self-test of the checkers: a one-sided writer may not twin */
    twin_always = 0;
#endif
    if (x->flags & RC_N_INPLACE) {
        x->flags |= RC_N_OWNED; /* writes land in the store itself: nothing ever to send */
    } else if ((x->writers & ~bit(self)) || (x->flags & twin_always) ||
               (home != self && (x->flags & RC_N_AGAIN))) {
        act(out, COH_A_TWIN, page);
        x->flags |= RC_N_TWIN;
        /* Written again soon after a release: kept writable, with the twin, so that each
         * release sends only what changed (nothing, when nothing did) and a write renews it. */
        if (x->flags & RC_N_AGAIN) x->keep = RC_KEEP_TWINNED;
    } else if (home == self) {
        x->flags |= RC_N_OWNED;
    }
    x->flags &= (uint16_t)~RC_N_AGAIN;
    x->idle = 0;
    act(out, COH_A_UNPROTECT, page);
    *st = COH_M;
}

int rc_home_flush(const uint8_t *st, const struct rc_node *x)
{
    return *st == COH_M && (x->flags & RC_N_OWNED);
}

int rc_node_access(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page, unsigned how,
                   struct coh_out *out)
{
    const int write = (how & COH_ACC_WRITE) != 0;
    if (how & COH_ACC_INPLACE) x->flags |= RC_N_INPLACE;
#if UFDSM_INJECT_RC_BUG == 4 /* self-test of the checkers: trust a copy that is not the store */
    if (home == self) x->flags |= RC_N_INPLACE;
#endif
    switch (*st) {
    case COH_I:
        if (x->flags & RC_N_DROPPED) { /* read again after an acquire dropped it */
            x->flags &= (uint16_t)~RC_N_DROPPED;
            x->hot = RC_REFRESHES;
        }
        /* One-sided: the home would only answer with its store and the writer set, which this
         * node already tracks (RC_N_READER); a writer must be registered already (RC_N_REG). */
        if ((how & COH_ACC_FETCH) && (x->flags & RC_N_READER) &&
            (!write || (x->flags & RC_N_REG))) {
            act(out, COH_A_FETCH, page);
            *st = COH_S;
            if (write) become_writer(st, x, self, home, page, out);
            return COH_ACCESS_OK;
        }
        send(out, RC_GET, write ? RC_F_WRITE : 0, self, home, page, 0);
        *st = write ? COH_IM_AD : COH_IS_D;
        x->flags &= (uint16_t)~RC_N_STALE;
        return COH_ACCESS_WAIT;
    case COH_S:
        if (!write) return COH_ACCESS_OK;
        if (x->flags & RC_N_REG) { /* a writer already: no message, a local upgrade */
            become_writer(st, x, self, home, page, out);
            return COH_ACCESS_OK;
        }
        send(out, RC_WREG, 0, self, home, page, 0);
        *st = COH_SM_A;
        x->flags &= (uint16_t)~RC_N_STALE;
        return COH_ACCESS_WAIT;
    case COH_M:
        return COH_ACCESS_OK;
    case COH_SM_A:
        return write ? COH_ACCESS_WAIT : COH_ACCESS_OK;
    default:
        return COH_ACCESS_WAIT;
    }
}

/* Sends what the node has written so far: a diff against the twin, or the whole page. The
 * page is write-protected first (see the top of this file). */
static void write_back(struct rc_node *x, int self, int home, uint64_t page, struct coh_out *out)
{
    act(out, COH_A_PROTECT, page);
    if (x->flags & RC_N_TWIN) {
#if UFDSM_INJECT_RC_BUG == 2 /* self-test of the checkers: a release that loses its diff */
        if (0)
#endif
            send(out, RC_DIFF, 0, self, home, page, 0);
        act(out, COH_A_DROP_TWIN, page);
        x->flags &= (uint16_t)~RC_N_TWIN;
    } else {
        send(out, RC_DIFF, RC_F_FULL, self, home, page, 0);
    }
}

int rc_node_recv(uint8_t *st, struct rc_node *x, int self, const struct coh_msg *m,
                 struct coh_out *out, const char **why)
{
    const uint64_t p = m->page;
    const int home = m->src;
    uint64_t others;
    switch (m->type) {
    case RC_DATA:
        if ((*st != COH_IS_D && *st != COH_IM_AD) || (x->flags & RC_N_WREG)) {
            *why = "page data this node did not ask for";
            return COH_EPROTO;
        }
        /* (Writer sets only grow: a watcher may know more than the reply, read at an acquire.) */
        x->writers |= m->arg;
        x->flags |= RC_N_READER;
        others = x->writers & ~bit(self);
        if (*st == COH_IM_AD) {
            if (!(m->arg & bit(self))) {
                *why = "page data for a write that did not register the writer";
                return COH_EPROTO;
            }
            x->flags |= RC_N_REG;
        }
        if ((x->flags & RC_N_STALE) && others) {
            /* Asked before an acquire, maybe answered before the releaser's changes reached
             * the home: the waiting thread asks again. */
            x->flags &= (uint16_t)~RC_N_STALE;
            *st = COH_I;
            return 0;
        }
        x->flags &= (uint16_t)~RC_N_STALE;
        if (*st == COH_IS_D) {
            act(out, COH_A_MAP_RO, p);
            *st = COH_S;
        } else {
            act(out, COH_A_MAP_RO, p);
            become_writer(st, x, self, home, p, out);
        }
        return 0;
    case RC_WREG_ACK:
        if ((*st != COH_SM_A && !(*st == COH_IM_AD && (x->flags & RC_N_WREG))) ||
            !(m->arg & bit(self))) {
            *why = "a writer registration this node did not ask for";
            return COH_EPROTO;
        }
        x->writers |= m->arg;
        x->flags |= RC_N_REG | RC_N_READER;
        if (*st == COH_IM_AD) {
            /* Registered, but the copy was dropped by an acquire meanwhile (rc_node_acquire):
             * the waiting thread takes the page again as the writer it now is. */
            x->flags &= (uint16_t) ~(RC_N_WREG | RC_N_STALE);
            *st = COH_I;
            return 0;
        }
        if ((x->flags & RC_N_STALE) && (x->writers & ~bit(self))) {
            x->flags &= (uint16_t)~RC_N_STALE;
            act(out, COH_A_UNMAP, p);
            *st = COH_I;
            return 0;
        }
        x->flags &= (uint16_t)~RC_N_STALE;
        become_writer(st, x, self, home, p, out);
        return 0;
    case RC_CLASS:
        x->writers |= m->arg;
        /* (A home writing in place has nothing to send: its writes are in the store.) */
        if (*st == COH_M && !(x->flags & (RC_N_TWIN | RC_N_INPLACE)) && (m->arg & ~bit(self))) {
            x->flags &= (uint16_t)~RC_N_OWNED;
            x->keep = 0;
            /* A second writer: what this node wrote so far as sole writer goes back whole,
             * and from here on it diffs against a twin of exactly that. */
            write_back(x, self, home, p, out);
            act(out, COH_A_TWIN, p);
            x->flags |= RC_N_TWIN;
            act(out, COH_A_UNPROTECT, p);
        }
        send(out, RC_CLASS_ACK, 0, self, home, p, 0);
        return 0;
    case RC_DIFF_ACK:
        return 0;
    default:
        *why = "a node received a message meant for a home";
        return COH_EPROTO;
    }
}

void rc_node_write_back(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page,
                        struct coh_out *out)
{
    if (*st != COH_M || (x->flags & RC_N_OWNED)) return;
    x->flags |= RC_N_AGAIN;
    x->idle = 0;
    x->keep = 0;
    write_back(x, self, home, page, out);
    *st = COH_S;
}

void rc_node_release(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page,
                     unsigned how, struct coh_out *out)
{
    if (*st == COH_M && x->keep && !(x->flags & RC_N_OWNED)) {
        /* Still writable, so a write made while this is sent is in the page for the next
         * release to send (the last one protects before it sends): as a diff that brings the
         * twin up to what it sent, so the write still differs (a kept page always has a twin:
         * become_writer). A page written in this interval stays writable for RC_KEEP_TWINNED
         * more releases (a page falsely shared for good is never protected again); one that
         * was not, for what is left. */
        x->keep--;
        if (!(how & COH_REL_CLEAN)) x->keep = RC_KEEP_TWINNED;
        send(out, RC_DIFF, 0, self, home, page, 0);
        out->a[out->n - 1].kind = COH_A_DIFF_KEEP;
        return;
    }
    rc_node_write_back(st, x, self, home, page, out);
}

void rc_node_acquire(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page,
                     unsigned how, struct coh_out *out)
{
    int others = (x->writers & ~bit(self)) != 0;
    int sent = 0;
#if UFDSM_INJECT_RC_BUG == 1 /* self-test of the checkers: an acquire that keeps stale copies */
    if (*st == COH_S) return;
#endif
    /* The home's view is its store, which holds every released change: nothing to drop. */
    if ((x->flags & RC_N_INPLACE) && (*st == COH_S || *st == COH_M)) return;
    if (*st == COH_S && (x->flags & RC_N_AGAIN) && ++x->idle > RC_AGAIN_ACQS) {
        /* The first acquire after the release starts the next interval; the one after
         * RC_AGAIN_ACQS intervals without a write ends them. */
        x->flags &= (uint16_t)~RC_N_AGAIN;
        x->idle = 0;
    }
    switch (*st) {
    case COH_M:
        if (!others) return;
#if UFDSM_INJECT_RC_BUG == 5 /* self-test of the checkers: merge without the offer */
        how |= COH_ACC_REFRESH;
#endif
        if ((how & COH_ACC_REFRESH) && (x->flags & RC_N_TWIN)) {
            /* Changes this node has not sent stay in the copy; the rest becomes current. */
            act(out, COH_A_MERGE, page);
            return;
        }
        rc_node_write_back(st, x, self, home, page, out); /* protected before it is dropped */
        sent = 1;
        __attribute__((fallthrough)); /* now a read-only copy others write */
    case COH_S:
        if (!others) return;
        /* (Not right after sending: the store may not hold this node's own changes yet.) */
        if ((how & COH_ACC_REFRESH) && x->hot && !sent) {
            x->hot--;
            act(out, COH_A_REFRESH, page);
            return;
        }
        act(out, COH_A_UNMAP, page);
        x->flags &= (uint16_t)~RC_N_AGAIN;
        x->idle = 0;
        x->flags |= RC_N_DROPPED;
        x->hot = 0;
        *st = COH_I;
        return;
    case COH_SM_A:
#if UFDSM_INJECT_RC_BUG != 3 /* self-test of the checkers: the copy stays readable */
        if (others) {
            /* Another thread of this node may read the copy while the registration is on its
             * way, and the acquire may be its lock's: the copy must not outlive the acquire.
             * Without it the page waits for the registration like a write miss. */
            act(out, COH_A_UNMAP, page);
            x->flags |= RC_N_WREG;
            *st = COH_IM_AD;
            return;
        }
#endif
        x->flags |= RC_N_STALE;
        return;
    case COH_IS_D:
    case COH_IM_AD:
        x->flags |= RC_N_STALE;
        return;
    default:
        return;
    }
}

int rc_node_may_register(uint8_t st, const struct rc_node *x, unsigned how)
{
    return st == COH_I && !(x->flags & RC_N_READER) && !(how & COH_ACC_WRITE) &&
           (how & COH_ACC_FETCH);
}

void rc_node_registered(struct rc_node *x, uint64_t writers)
{
    x->flags |= RC_N_READER;
    x->writers |= writers;
}

int rc_node_may_register_writer(uint8_t st, const struct rc_node *x, unsigned how)
{
    return (st == COH_I || st == COH_S) && !(x->flags & (RC_N_REG | RC_N_SELFREG)) &&
           (how & COH_ACC_WRITE) && (how & COH_ACC_FETCH);
}

int rc_node_registered_writer(struct rc_node *x, int self, int home, uint64_t readers,
                              uint64_t writers, uint64_t selfreg, uint64_t watchers)
{
    /* Registered as a reader too: its bit went into the readers word before the writers
     * words were read. */
    rc_node_registered(x, writers | selfreg | bit(self));
    x->flags |= RC_N_SELFREG;
    /* Who learns of this writer by itself: watchers that do not write the page, or write it
     * with a twin whatever happens (one-sided writers); and the home, whose view is its store. */
    uint64_t told = watchers & (~writers | selfreg);
#if UFDSM_INJECT_RC_BUG == 7 /* self-test of the checkers: a writer that does not look */
    told = ~0ull;
#endif
    if ((readers | writers | selfreg) & ~bit(self) & ~bit(home) & ~told) return 0;
    x->flags |= RC_N_REG;
    return 1;
}

/* ---------------------------------------------------------------- home side */

uint64_t rc_dir_publish(const struct rc_dir *d, const struct coh_msg *m)
{
    const int reg = (m->type == RC_GET && (m->flags & RC_F_WRITE)) || m->type == RC_WREG;
    return reg && !(d->writers & bit(m->src)) ? bit(m->src) : 0;
}

void rc_dir_readers_seen(struct rc_dir *d, uint64_t readers)
{
    d->readers |= readers;
}

/* A request: the node will hold a copy (GET) or holds one (WREG). */
static int request(const struct coh_msg *m)
{
    return m->type == RC_GET || m->type == RC_WREG;
}

uint64_t rc_dir_publish_reader(const struct rc_dir *d, const struct coh_msg *m)
{
    return request(m) && !(d->readers & bit(m->src)) ? bit(m->src) : 0;
}

void rc_dir_writers_seen(struct rc_dir *d, uint64_t selfreg)
{
    d->selfreg |= selfreg;
}

void rc_node_watch(struct rc_node *x, uint64_t writers)
{
#if UFDSM_INJECT_RC_BUG == 6 /* self-test of the checkers: a watcher that does not look */
    (void)x;
    (void)writers;
    return;
#endif
    x->writers |= writers;
}

void rc_dir_watchers_seen(struct rc_dir *d, uint64_t watchers)
{
    d->watchers |= watchers;
}

void rc_dir_init(struct rc_dir *d)
{
    *d = (struct rc_dir){0};
}

int rc_dir_idle(const struct rc_dir *d)
{
    return !d->acks_from && !d->pend_get && !d->pend_reg;
}

static void reply(struct rc_dir *d, int home, int to, uint8_t type, uint64_t page,
                  struct coh_out *out)
{
    const uint64_t writers = d->writers | d->selfreg;
    if (type == RC_GET)
        send(out, RC_DATA, d->written ? 0 : RC_F_ZERO, home, to, page, writers);
    else
        send(out, RC_WREG_ACK, 0, home, to, page, writers);
}

/* Registers a writer: every other node that may cache the page learns the new writer set
 * before the writer may write (so none can acquire its release without dropping its copy). */
static void start_registration(struct rc_dir *d, int home, int node, uint8_t type, uint64_t page,
                               struct coh_out *out)
{
    d->writers |= bit(node);
    d->readers |= bit(node);
    /* A home writer may write its store in place (one copy at the home, dsm_mem_ops.map_home)
     * before any write-back reaches this directory: from here on the store may hold data, and
     * a reply must carry it rather than say "all zeros" (rc_model --one-copy found a reply
     * of zeros racing the home's first write-back). */
    if (node == home) d->written = 1;
    /* Watchers learn the writer from the shared words at their next acquire: those that only
     * read, and those that write with a twin whatever happens (one-sided writers). The others
     * that write must start a twin now. */
    uint64_t notify = (d->readers | d->writers | d->selfreg) & ~bit(node) &
                      ~(d->watchers & (~d->writers | d->selfreg));
    if (!notify) {
        reply(d, home, node, type, page, out);
        return;
    }
    for (int k = 0; k < COH_MAX_NODES; k++)
        if (notify & bit(k)) send(out, RC_CLASS, 0, home, k, page, d->writers);
    d->acks_from = notify;
    d->req = (uint8_t)node;
    d->req_type = type;
}

static void registration(struct rc_dir *d, int home, int node, uint8_t type, uint64_t page,
                         struct coh_out *out)
{
    if (d->acks_from) { /* one registration at a time; the requester waits its turn */
        if (type == RC_GET)
            d->pend_get |= bit(node);
        else
            d->pend_reg |= bit(node);
        return;
    }
    start_registration(d, home, node, type, page, out);
}

int rc_dir_recv(struct rc_dir *d, int home, const struct coh_msg *m, struct coh_out *out,
                const char **why)
{
    const uint64_t b = bit(m->src), p = m->page;
    switch (m->type) {
    case RC_GET:
        if ((d->pend_get | d->pend_reg) & b || (d->acks_from && d->req == m->src)) {
            *why = "a second request for a page while the first is pending";
            return COH_EPROTO;
        }
        d->readers |= b;
        if ((m->flags & RC_F_WRITE) && !(d->writers & b))
            registration(d, home, m->src, RC_GET, p, out);
        else
            reply(d, home, m->src, RC_GET, p, out);
        return 0;
    case RC_WREG:
        if ((d->pend_get | d->pend_reg) & b || (d->acks_from && d->req == m->src)) {
            *why = "a second request for a page while the first is pending";
            return COH_EPROTO;
        }
        d->readers |= b;
        if (d->writers & b)
            reply(d, home, m->src, RC_WREG, p, out);
        else
            registration(d, home, m->src, RC_WREG, p, out);
        return 0;
    case RC_CLASS_ACK:
        if (!(d->acks_from & b)) {
            *why = "a CLASS_ACK from a node that was not told of a new writer";
            return COH_EPROTO;
        }
        d->acks_from &= ~b;
        if (d->acks_from) return 0;
        reply(d, home, d->req, d->req_type, p, out);
        /* Next queued registration, round-robin by node id so that none starves. */
        while (!d->acks_from && (d->pend_get | d->pend_reg)) {
            int k = d->rr;
            for (int i = 0; i < COH_MAX_NODES; i++, k = (k + 1) % COH_MAX_NODES)
                if ((d->pend_get | d->pend_reg) & bit(k)) break;
            d->rr = (uint8_t)((k + 1) % COH_MAX_NODES);
            uint8_t type = (d->pend_get & bit(k)) ? RC_GET : RC_WREG;
            d->pend_get &= ~bit(k);
            d->pend_reg &= ~bit(k);
            if (d->writers & bit(k))
                reply(d, home, k, type, p, out);
            else
                start_registration(d, home, k, type, p, out);
        }
        return 0;
    case RC_DIFF:
        if (!((d->writers | d->selfreg) & b)) {
            *why = "changes from a node that never registered as a writer of the page";
            return COH_EPROTO;
        }
        act(out, COH_A_APPLY, p);
        d->written = 1;
        send(out, RC_DIFF_ACK, 0, home, m->src, p, 0);
        return 0;
    default:
        *why = "a home received a message meant for a node";
        return COH_EPROTO;
    }
}

/* ---------------------------------------------------------------- as a protocol */

static int rc_access(uint8_t *st, void *x, int self, int home, uint64_t page, unsigned how,
                     struct coh_out *out)
{
    return rc_node_access(st, x, self, home, page, how, out);
}

static int rc_recv(uint8_t *st, void *x, int self, const struct coh_msg *m, struct coh_out *out,
                   const char **why)
{
    return rc_node_recv(st, x, self, m, out, why);
}

static void rc_release(uint8_t *st, void *x, int self, int home, uint64_t page, unsigned how,
                       struct coh_out *out)
{
    rc_node_release(st, x, self, home, page, how, out);
}

static void rc_acquire(uint8_t *st, void *x, int self, int home, uint64_t page, unsigned how,
                       struct coh_out *out)
{
    rc_node_acquire(st, x, self, home, page, how, out);
}

static void dir_init(void *d)
{
    rc_dir_init(d);
}

static int dir_recv(void *d, int home, const struct coh_msg *m, struct coh_out *out,
                    const char **why)
{
    return rc_dir_recv(d, home, m, out, why);
}

static int dir_idle(const void *d)
{
    return rc_dir_idle(d);
}

static int node_stable(uint8_t st)
{
    return st == COH_I || st == COH_S || st == COH_M;
}

const struct coh_protocol coh_rc = {
    .name = "rc",
    .msg_is_mine = rc_msg_is_rc,
    .msg_to_home = rc_msg_to_home,
    .mtype_name = rc_mtype_name,
    .node_access = rc_access,
    .node_recv = rc_recv,
    .node_release = rc_release,
    .node_acquire = rc_acquire,
    .dir_init = dir_init,
    .dir_recv = dir_recv,
    .dir_idle = dir_idle,
    .node_stable = node_stable,
};

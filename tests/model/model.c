/*
 * model.c - transitions, invariants and encodings of the abstract DSM system state, with the
 * real protocol (coherence/coh.c) in the middle of every transition.
 *
 * A transition is one atomic event of the runtime: an application access or eviction on one
 * node (coh_node_access / coh_node_evict), a waiting thread re-trying its access, or the
 * delivery of the head message of one channel (coh_dir_recv / coh_node_recv). The actions the
 * protocol returns are carried out here on the abstract state the way dsm/engine.c carries
 * them out on real memory: SEND takes its payload when it runs (the sender's copy for
 * WB/PUT_M, the home store for DATA), MAP installs the handled message's payload (or zeros),
 * UNMAP drops the copy, STORE overwrites the home store with the handled payload. Everything
 * the runtime would trip over is a violation here too: an action for another page, a message
 * of the wrong direction or with impossible flags, a payload sent from a page that is not
 * mapped, mapping a page that is mapped already, protecting one that is not writable, a
 * mapping that disagrees with the page state afterwards, and any COH_EPROTO.
 */
#include "model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- small helpers */

static void logf_(struct stepinfo *info, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(struct stepinfo *info, const char *fmt, ...)
{
    if (!info || !info->log) return;
    size_t used = strlen(info->log);
    if (used + 1 >= info->logsize) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->log + used, info->logsize - used, fmt, ap);
    va_end(ap);
}

static int fail(struct stepinfo *info, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct stepinfo *info, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->why, sizeof info->why, fmt, ap);
    va_end(ap);
    return rc;
}

static int readable(unsigned ns)
{
    return ns == COH_S || ns == COH_M || ns == COH_SM_A;
}

static int transient(unsigned ns)
{
    return ns == COH_IS_D || ns == COH_IM_AD || ns == COH_SM_A;
}

/* The mapping a page state implies: 0 none, 1 read-only, 2 writable. */
static int expected_map(unsigned ns)
{
    return ns == COH_M ? 2 : (ns == COH_S || ns == COH_SM_A) ? 1 : 0;
}

static const char *map_name(int m)
{
    return m == 2 ? "writable" : m == 1 ? "read-only" : "unmapped";
}

static struct coh_msg to_coh(const struct mmsg *m, int src, int dst)
{
    return (struct coh_msg){.type = m->type,
                            .flags = m->flags,
                            .src = (uint8_t)src,
                            .dst = (uint8_t)dst,
                            .page = m->page};
}

static void flags_str(unsigned flags, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s%s", flags ? "[" : "", (flags & COH_F_ZERO) ? "ZERO" : "",
             (flags & COH_F_NODATA) ? "NODATA" : "", flags ? "]" : "");
}

static void val_str(unsigned v, char *buf, size_t len)
{
    if (v == NOCOPY)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "v%u", v);
}

static void mask_str(uint64_t m, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "{");
    int first = 1;
    for (int n = 0; n < 64 && o < len; n++)
        if (m & ((uint64_t)1 << n)) {
            o += (size_t)snprintf(buf + o, len - o, "%s%d", first ? "" : ",", n);
            first = 0;
        }
    if (o < len) snprintf(buf + o, len - o, "}");
}

static void msg_str(const struct mmsg *m, int src, int dst, char *buf, size_t len)
{
    char fl[32], v[16] = "";
    flags_str(m->flags, fl, sizeof fl);
    struct coh_msg cm = to_coh(m, src, dst);
    if (coh_msg_has_payload(&cm)) snprintf(v, sizeof v, " (v%u)", m->val);
    snprintf(buf, len, "%s%s node%d->node%d page %u%s", coh_mtype_name(m->type), fl, src, dst,
             m->page, v);
}

static void dir_str(const struct coh_dir *d, char *buf, size_t len)
{
    char a[80], b[80], q[200] = "";
    size_t o = 0;
    switch (d->state) {
    case COH_D_SHARED:
        mask_str(d->sharers, a, sizeof a);
        o = (size_t)snprintf(buf, len, "SHARED sharers=%s", a);
        break;
    case COH_D_EXCL:
        o = (size_t)snprintf(buf, len, "EXCL owner=%u", d->owner);
        break;
    case COH_D_BUSY_WB:
        o = (size_t)snprintf(buf, len, "BUSY_WB owner=%u req=%u(%s)", d->owner, d->req,
                             coh_mtype_name(d->req_type));
        break;
    case COH_D_BUSY_INV:
        mask_str(d->sharers, a, sizeof a);
        o = (size_t)snprintf(buf, len, "BUSY_INV req=%u(%s%s) acks=%u awaiting=%s", d->req,
                             coh_mtype_name(d->req_type), d->req_had ? ",had" : "", d->acks, a);
        break;
    default:
        o = (size_t)snprintf(buf, len, "state=%u?", d->state);
    }
    if (d->pend_s | d->pend_m) {
        mask_str(d->pend_s, a, sizeof a);
        mask_str(d->pend_m, b, sizeof b);
        snprintf(q, sizeof q, " queued S=%s M=%s rr=%u", a, b, d->rr);
    }
    if (o < len) snprintf(buf + o, len - o, "%s%s", q, d->written ? "" : " never-written");
}

/* ---------------------------------------------------------------- set-up */

void model_dir_normalize(struct coh_dir *d)
{
    if (d->state != COH_D_EXCL && d->state != COH_D_BUSY_WB) d->owner = 0;
    if (d->state != COH_D_BUSY_WB && d->state != COH_D_BUSY_INV) d->req = 0, d->req_type = 0;
    if (d->state != COH_D_BUSY_INV) d->req_had = 0, d->acks = 0;
}

/* Field by field: struct coh_action has padding. */
static int same_actions(const struct coh_out *a, const struct coh_out *b)
{
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const struct coh_action *x = &a->a[i], *y = &b->a[i];
        if (x->kind != y->kind || x->msg.type != y->msg.type || x->msg.flags != y->msg.flags ||
            x->msg.src != y->msg.src || x->msg.dst != y->msg.dst || x->msg.page != y->msg.page)
            return 0;
    }
    return 1;
}

/* The stale fields of a normalized directory set to other (in-range) values. */
static void dir_poison(const struct mconfig *c, struct coh_dir *d)
{
    if (d->state != COH_D_EXCL && d->state != COH_D_BUSY_WB) d->owner = (uint8_t)(c->nodes - 1);
    if (d->state != COH_D_BUSY_WB && d->state != COH_D_BUSY_INV)
        d->req = (uint8_t)(c->nodes - 1), d->req_type = COH_GET_M;
    if (d->state != COH_D_BUSY_INV) d->req_had = 1, d->acks = (uint8_t)c->nodes;
}

void model_init(const struct mconfig *c, struct mstate *s)
{
    memset(s, 0, sizeof *s);
    for (int n = 0; n < MAXN; n++)
        for (int p = 0; p < MAXP; p++) {
            s->ns[n][p] = COH_I;
            s->copy[n][p] = NOCOPY;
        }
    for (int p = 0; p < c->pages; p++) coh_dir_init(&s->dir[p]);
}

int model_labels(const struct mconfig *c, unsigned *labels)
{
    int k = 0;
    for (int n = 0; n < c->nodes; n++)
        for (int p = 0; p < c->pages; p++) {
            labels[k++] = LABEL(T_READ, n, p, 0, 0);
            labels[k++] = LABEL(T_WRITE, n, p, 0, 0);
            labels[k++] = LABEL(T_EVICT, n, p, 0, 0);
            labels[k++] = LABEL(T_RETRY_R, n, p, 0, 0);
            labels[k++] = LABEL(T_RETRY_W, n, p, 0, 0);
        }
    const int at = c->order == ORDER_NONE ? MAXQ : 1;
    for (int s = 0; s < c->nodes; s++)
        for (int d = 0; d < c->nodes; d++)
            for (int i = 0; i < at; i++) labels[k++] = LABEL_AT(LABEL(T_DELIVER, 0, 0, s, d), i);
    return k;
}

void model_label_name(unsigned l, char *buf, size_t len)
{
    static const char *const k[T_KINDS] = {"READ",       "WRITE",       "EVICT",
                                           "retry READ", "retry WRITE", "deliver"};
    if (L_KIND(l) == T_DELIVER && L_INDEX(l))
        snprintf(buf, len, "deliver message %u of node%u->node%u", L_INDEX(l), L_SRC(l), L_DST(l));
    else if (L_KIND(l) == T_DELIVER)
        snprintf(buf, len, "deliver head of node%u->node%u", L_SRC(l), L_DST(l));
    else
        snprintf(buf, len, "node%u %s page %u", L_NODE(l), k[L_KIND(l)], L_PAGE(l));
}

/* Whether node n may start another operation (read, write, eviction). */
static int op_allowed(const struct mconfig *c, const struct mstate *s, int n)
{
    if (c->bound < 0) return 1;
    if (s->ops[n] >= c->bound) return 0;
    if (c->total > 0) {
        int sum = 0;
        for (int i = 0; i < c->nodes; i++) sum += s->ops[i];
        if (sum >= c->total) return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- carrying out actions */

struct ctx {
    const struct mconfig *c;
    struct mstate *s;
    struct stepinfo *info;
    uint8_t map[MAXN][MAXP];
};

static unsigned max_value(const struct mconfig *c, const struct mstate *s)
{
    unsigned m = 0;
    for (int p = 0; p < c->pages; p++) {
        if (s->lastw[p] > m) m = s->lastw[p];
        if (s->store[p] > m) m = s->store[p];
        for (int n = 0; n < c->nodes; n++)
            if (s->copy[n][p] != NOCOPY && s->copy[n][p] > m) m = s->copy[n][p];
    }
    for (int a = 0; a < c->nodes; a++)
        for (int b = 0; b < c->nodes; b++)
            for (int i = 0; i < s->ch[a][b].n; i++)
                if (s->ch[a][b].m[i].val > m) m = s->ch[a][b].m[i].val;
    return m;
}

static unsigned fresh_value(struct ctx *x)
{
    if (x->info->fresh) return (*x->info->fresh)++;
    return max_value(x->c, x->s) + 1;
}

static int in_flight(const struct mconfig *c, const struct mstate *s)
{
    int k = 0;
    for (int a = 0; a < c->nodes; a++)
        for (int b = 0; b < c->nodes; b++) k += s->ch[a][b].n;
    return k;
}

/* node >= 0: the node side of `node`; node < 0: the directory of `page` at its home. */
static int exec(struct ctx *x, int node, int page, const struct coh_out *o,
                const struct mmsg *handled)
{
    const struct mconfig *c = x->c;
    struct mstate *s = x->s;
    struct stepinfo *info = x->info;
    const int home = c->home[page];
    const char *who = node >= 0 ? "node" : "directory";

    if (o->n < 0 || o->n > COH_OUT_MAX)
        return fail(info, STEP_VIOLATION, "action list length %d out of range", o->n);
    for (int i = 0; i < o->n; i++) {
        const struct coh_action *a = &o->a[i];
        if (a->msg.page != (uint64_t)page)
            return fail(info, STEP_VIOLATION, "%s action %d names page %llu while handling page %d",
                        who, a->kind, (unsigned long long)a->msg.page, page);
        uint8_t *mp = node >= 0 ? &x->map[node][page] : NULL;
        switch (a->kind) {
        case COH_A_SEND: {
            const struct coh_msg *m = &a->msg;
            if (m->type < COH_GET_S || m->type >= COH_MTYPE_END)
                return fail(info, STEP_VIOLATION, "%s sends message type %u", who, m->type);
            if (node >= 0 && (m->src != node || m->dst != home || !coh_msg_to_home(m->type)))
                return fail(info, STEP_VIOLATION,
                            "node%d sends %s node%u->node%u for page %d homed on node%d", node,
                            coh_mtype_name(m->type), m->src, m->dst, page, home);
            if (node < 0 && (m->src != home || m->dst >= c->nodes || coh_msg_to_home(m->type)))
                return fail(info, STEP_VIOLATION,
                            "directory of page %d (node%d) sends %s node%u->node%u", page, home,
                            coh_mtype_name(m->type), m->src, m->dst);
            unsigned allowed = m->type == COH_DATA_S   ? COH_F_ZERO
                               : m->type == COH_DATA_M ? COH_F_ZERO | COH_F_NODATA
                                                       : 0;
            if ((m->flags & ~allowed) || ((m->flags & COH_F_ZERO) && (m->flags & COH_F_NODATA)))
                return fail(info, STEP_VIOLATION, "%s sends %s with flags 0x%x", who,
                            coh_mtype_name(m->type), m->flags);
            struct mmsg mm = {.type = m->type, .flags = m->flags, .page = (uint8_t)page};
            if (coh_msg_has_payload(m)) {
                if (node >= 0) {
                    if (*mp == 0)
                        return fail(info, STEP_VIOLATION,
                                    "node%d sends %s for page %d but has no copy mapped", node,
                                    coh_mtype_name(m->type), page);
                    if (*mp == 2)
                        return fail(info, STEP_VIOLATION,
                                    "node%d sends %s for page %d while the copy is still "
                                    "writable (a write could follow the snapshot)",
                                    node, coh_mtype_name(m->type), page);
                    mm.val = s->copy[node][page];
                } else {
                    mm.val = s->store[page];
                }
            }
            struct mchan *ch = &s->ch[m->src][m->dst];
            if (ch->n >= MAXQ)
                return fail(info, STEP_LIMIT, "channel node%u->node%u holds %d messages (MAXQ)",
                            m->src, m->dst, MAXQ);
            if (c->order == ORDER_GLOBAL) {
                int inflight = in_flight(c, s);
                if (inflight > MAXSEQ)
                    return fail(info, STEP_LIMIT, "more than %d messages in flight", MAXSEQ);
                mm.seq = (uint8_t)inflight; /* sent last: ranks 0..inflight-1 are taken */
            }
            ch->m[ch->n++] = mm;
            if (info->log) {
                char ms[96];
                msg_str(&mm, m->src, m->dst, ms, sizeof ms);
                logf_(info, ", sends %s", ms);
            }
            break;
        }
        case COH_A_MAP_RO:
        case COH_A_MAP_RW: {
            if (node < 0) return fail(info, STEP_VIOLATION, "directory asked to map a page");
            if (!handled || (handled->type != COH_DATA_S && handled->type != COH_DATA_M))
                return fail(info, STEP_VIOLATION, "node%d maps page %d without a grant", node,
                            page);
            if (*mp != 0)
                return fail(info, STEP_VIOLATION, "node%d maps page %d which is already %s", node,
                            page, map_name(*mp));
            struct coh_msg hm = to_coh(handled, home, node);
            unsigned v;
            if (coh_msg_has_payload(&hm))
                v = handled->val;
            else if (handled->flags & COH_F_ZERO)
                v = 0;
            else
                return fail(info, STEP_VIOLATION,
                            "node%d maps page %d from a %s that carries no data", node, page,
                            coh_mtype_name(handled->type));
            *mp = a->kind == COH_A_MAP_RW ? 2 : 1;
            s->copy[node][page] = (uint8_t)v;
            logf_(info, ", node%d maps %s v%u", node, map_name(*mp), v);
            break;
        }
        case COH_A_PROTECT:
            if (node < 0) return fail(info, STEP_VIOLATION, "directory asked to protect a page");
            if (*mp != 2)
                return fail(info, STEP_VIOLATION, "node%d protects page %d which is %s", node, page,
                            map_name(*mp));
            *mp = 1;
            break;
        case COH_A_UNPROTECT:
            if (node < 0) return fail(info, STEP_VIOLATION, "directory asked to unprotect a page");
            if (*mp != 1)
                return fail(info, STEP_VIOLATION, "node%d unprotects page %d which is %s", node,
                            page, map_name(*mp));
            *mp = 2;
            break;
        case COH_A_UNMAP:
            if (node < 0) return fail(info, STEP_VIOLATION, "directory asked to unmap a page");
            if (*mp == 0)
                return fail(info, STEP_VIOLATION, "node%d unmaps page %d which is not mapped", node,
                            page);
            *mp = 0;
            s->copy[node][page] = NOCOPY;
            break;
        case COH_A_STORE: {
            if (node >= 0)
                return fail(info, STEP_VIOLATION, "node%d asked to update a home store", node);
            struct coh_msg hm = handled ? to_coh(handled, 0, home) : (struct coh_msg){0};
            if (!handled || !coh_msg_has_payload(&hm))
                return fail(info, STEP_VIOLATION,
                            "directory stores page %d from a message without payload", page);
            s->store[page] = handled->val;
            logf_(info, ", home stores v%u", handled->val);
            break;
        }
        default:
            return fail(info, STEP_VIOLATION, "unknown action kind %d", a->kind);
        }
    }
    return STEP_OK;
}

static int check_map(struct ctx *x, int node, int page)
{
    unsigned ns = x->s->ns[node][page];
    if (x->map[node][page] != expected_map(ns))
        return fail(x->info, STEP_VIOLATION,
                    "node%d page %d is %s but its mapping is %s after the actions", node, page,
                    coh_nstate_name(ns), map_name(x->map[node][page]));
    return STEP_OK;
}

/* The access of node n on page p completes: a read checks its value, a write makes a new one. */
static int complete(struct ctx *x, int n, int p, int write)
{
    struct mstate *s = x->s;
    int need = write ? 2 : 1;
    if (x->map[n][p] < need)
        return fail(x->info, STEP_VIOLATION, "node%d may %s page %d (state %s) but the page is %s",
                    n, write ? "write" : "read", p, coh_nstate_name(s->ns[n][p]),
                    map_name(x->map[n][p]));
    if (write) {
        unsigned v = fresh_value(x);
        s->copy[n][p] = (uint8_t)v;
        s->lastw[p] = (uint8_t)v;
        logf_(x->info, ": writes v%u", v);
        return STEP_OK;
    }
    if (s->copy[n][p] != s->lastw[p])
        return fail(x->info, STEP_VIOLATION,
                    "stale read: node%d reads v%u from page %d (state %s), the last completed "
                    "write is v%u",
                    n, s->copy[n][p], p, coh_nstate_name(s->ns[n][p]), s->lastw[p]);
    logf_(x->info, ": reads v%u", s->copy[n][p]);
    return STEP_OK;
}

/* A (new or retried) access through coh_node_access. */
static int do_access(struct ctx *x, int n, int p, int write, int retry)
{
    struct mstate *s = x->s;
    const int bitk = write ? PEND_W : PEND_R;
    uint8_t st = s->ns[n][p];
    struct coh_out o;
    o.n = 0;
    int rc = coh_node_access(&st, n, x->c->home[p], (uint64_t)p, write, &o);
    if (rc == COH_ACCESS_WAIT && retry && o.n == 0 && st == s->ns[n][p])
        return STEP_DISABLED; /* still waiting: nothing to retry */
    if (rc != COH_ACCESS_OK && rc != COH_ACCESS_WAIT)
        return fail(x->info, STEP_VIOLATION, "coh_node_access returned %d", rc);
    logf_(x->info, " -> %s", rc == COH_ACCESS_OK ? "OK" : "WAIT");
    int r = exec(x, n, p, &o, NULL);
    if (r != STEP_OK) return r;
    s->ns[n][p] = st;
    if ((r = check_map(x, n, p)) != STEP_OK) return r;
    if (rc == COH_ACCESS_OK) {
        s->pend[n][p] &= (uint8_t)~bitk;
        return complete(x, n, p, write);
    }
    s->pend[n][p] |= (uint8_t)bitk;
    return STEP_OK;
}

int model_step(const struct mconfig *c, const struct mstate *in, unsigned label, struct mstate *out,
               struct stepinfo *info)
{
    const unsigned kind = L_KIND(label);
    const int n = (int)L_NODE(label), p = (int)L_PAGE(label);
    struct ctx x = {.c = c, .s = out, .info = info};
    char ln[64];

    *out = *in;
    info->why[0] = 0;
    for (int a = 0; a < c->nodes; a++)
        for (int b = 0; b < c->pages; b++) x.map[a][b] = (uint8_t)expected_map(in->ns[a][b]);

    switch (kind) {
    case T_READ:
    case T_WRITE: {
        int w = kind == T_WRITE;
        if (!op_allowed(c, in, n) || (in->pend[n][p] & (w ? PEND_W : PEND_R))) return STEP_DISABLED;
        if (c->bound >= 0) out->ops[n]++;
        if (info->log) {
            model_label_name(label, ln, sizeof ln);
            logf_(info, "%s (%s)", ln, coh_nstate_name(in->ns[n][p]));
        }
        return do_access(&x, n, p, w, 0);
    }
    case T_RETRY_R:
    case T_RETRY_W: {
        int w = kind == T_RETRY_W;
        if (!(in->pend[n][p] & (w ? PEND_W : PEND_R))) return STEP_DISABLED;
        if (info->log) model_label_name(label, ln, sizeof ln);
        if (c->wait_only) {
            /* dsm_access: wait until the state permits the access, then return. */
            if (w ? in->ns[n][p] != COH_M : !readable(in->ns[n][p])) return STEP_DISABLED;
            logf_(info, "%s (%s) -> OK", ln, coh_nstate_name(in->ns[n][p]));
            out->pend[n][p] &= (uint8_t) ~(w ? PEND_W : PEND_R);
            return complete(&x, n, p, w);
        }
        logf_(info, "%s (%s)", ln, coh_nstate_name(in->ns[n][p]));
        return do_access(&x, n, p, w, 1);
    }
    case T_EVICT: {
        if (!op_allowed(c, in, n)) return STEP_DISABLED;
        uint8_t st = in->ns[n][p];
        struct coh_out o;
        o.n = 0;
        int rc = coh_node_evict(&st, n, c->home[p], (uint64_t)p, &o);
        if (rc != 0 && rc != 1) return fail(info, STEP_VIOLATION, "coh_node_evict returned %d", rc);
        if (o.n == 0 && st == in->ns[n][p]) return STEP_DISABLED; /* nothing to drop now */
        if (c->bound >= 0) out->ops[n]++;
        if (info->log) {
            model_label_name(label, ln, sizeof ln);
            logf_(info, "%s (%s)", ln, coh_nstate_name(in->ns[n][p]));
        }
        int r = exec(&x, n, p, &o, NULL);
        if (r != STEP_OK) return r;
        out->ns[n][p] = st;
        return check_map(&x, n, p);
    }
    case T_DELIVER: {
        const int src = (int)L_SRC(label), dst = (int)L_DST(label);
        const int at = (int)L_INDEX(label);
        struct mchan *ch = &out->ch[src][dst];
        if (at >= ch->n) return STEP_DISABLED;
        struct mmsg m = ch->m[at];
        /* Global order: only the message sent first of all goes next; the others move up. */
        if (c->order == ORDER_GLOBAL && m.seq != 0) return STEP_DISABLED;
        memmove(&ch->m[at], &ch->m[at + 1], (size_t)(ch->n - 1 - at) * sizeof ch->m[0]);
        ch->n--;
        memset(&ch->m[ch->n], 0, sizeof ch->m[0]);
        if (c->order == ORDER_GLOBAL)
            for (int a = 0; a < c->nodes; a++)
                for (int b = 0; b < c->nodes; b++)
                    for (int i = 0; i < out->ch[a][b].n; i++) out->ch[a][b].m[i].seq--;
        char ms[96] = "";
        if (info->log) {
            msg_str(&m, src, dst, ms, sizeof ms);
            logf_(info, "deliver %s", ms);
            if (at) logf_(info, " (overtaking %d sent before it on this pair)", at);
        }
        struct coh_msg cm = to_coh(&m, src, dst);
        struct coh_out o;
        o.n = 0;
        const char *why = NULL;
        const int pg = m.page;
        if (coh_msg_to_home(m.type)) {
            if (c->home[pg] != dst)
                return fail(info, STEP_VIOLATION, "%s reached node%d, not the home of page %d",
                            coh_mtype_name(m.type), dst, pg);
            int rc = coh_dir_recv(&out->dir[pg], dst, &cm, &o, &why);
            if (!c->exact_dir) {
                /* The explored directories have their stale fields zeroed. Run the same
                 * message on a copy whose stale fields hold other values: if anything
                 * differs, coh.c reads a field the normalization assumes it ignores. */
                struct coh_dir alt = in->dir[pg];
                dir_poison(c, &alt);
                struct coh_out o2;
                o2.n = 0;
                const char *why2 = NULL;
                int rc2 = coh_dir_recv(&alt, dst, &cm, &o2, &why2);
                model_dir_normalize(&out->dir[pg]);
                model_dir_normalize(&alt);
                if (rc2 != rc || !same_actions(&o, &o2) ||
                    memcmp(&alt, &out->dir[pg], sizeof alt)) {
                    msg_str(&m, src, dst, ms, sizeof ms);
                    return fail(info, STEP_LIMIT,
                                "coh_dir_recv(%s) depends on a directory field that is stale "
                                "in state %s: run with --exact-dir",
                                ms, coh_dstate_name(in->dir[pg].state));
                }
            }
            if (rc) {
                char before[200];
                dir_str(&in->dir[pg], before, sizeof before);
                msg_str(&m, src, dst, ms, sizeof ms);
                return fail(info, STEP_VIOLATION,
                            "COH_EPROTO from coh_dir_recv: %s (message %s, directory of page "
                            "%d was %s)",
                            why ? why : "(no reason given)", ms, pg, before);
            }
            return exec(&x, -1, pg, &o, &m);
        }
        uint8_t st = in->ns[dst][pg];
        int rc = coh_node_recv(&st, dst, &cm, &o, &why);
        if (rc) {
            msg_str(&m, src, dst, ms, sizeof ms);
            return fail(info, STEP_VIOLATION,
                        "COH_EPROTO from coh_node_recv: %s (message %s, node%d page %d was %s)",
                        why ? why : "(no reason given)", ms, dst, pg,
                        coh_nstate_name(in->ns[dst][pg]));
        }
        int r = exec(&x, dst, pg, &o, &m);
        if (r != STEP_OK) return r;
        out->ns[dst][pg] = st;
        return check_map(&x, dst, pg);
    }
    }
    return STEP_DISABLED;
}

/* ---------------------------------------------------------------- canonical form */

void model_canon(const struct mconfig *c, struct mstate *s)
{
    uint8_t ren[256];
    memset(ren, 0xff, sizeof ren);
    ren[0] = 0;
    unsigned next = 1;
#define REN(v)                                                                                     \
    do {                                                                                           \
        if ((v) != NOCOPY) {                                                                       \
            if (ren[(v)] == 0xff) ren[(v)] = (uint8_t)next++;                                      \
            (v) = ren[(v)];                                                                        \
        }                                                                                          \
    } while (0)
    for (int p = 0; p < c->pages; p++) {
        REN(s->lastw[p]);
        REN(s->store[p]);
        for (int n = 0; n < c->nodes; n++) REN(s->copy[n][p]);
    }
    for (int a = 0; a < c->nodes; a++)
        for (int b = 0; b < c->nodes; b++)
            for (int i = 0; i < s->ch[a][b].n; i++) {
                struct mmsg *m = &s->ch[a][b].m[i];
                struct coh_msg cm = to_coh(m, a, b);
                if (coh_msg_has_payload(&cm))
                    REN(m->val);
                else
                    m->val = 0;
            }
#undef REN
}

/* ---------------------------------------------------------------- invariants */

int model_quiescent(const struct mconfig *c, const struct mstate *s)
{
    for (int n = 0; n < c->nodes; n++) {
        for (int p = 0; p < c->pages; p++)
            if (s->pend[n][p]) return 0;
        for (int d = 0; d < c->nodes; d++)
            if (s->ch[n][d].n) return 0;
    }
    return 1;
}

const char *model_invariants(const struct mconfig *c, const struct mstate *s, char *buf, size_t len)
{
    int empty = 1;
    for (int a = 0; a < c->nodes; a++)
        for (int b = 0; b < c->nodes; b++)
            if (s->ch[a][b].n) empty = 0;

    for (int p = 0; p < c->pages; p++) {
        const struct coh_dir *d = &s->dir[p];
        int writer = -1;
        for (int n = 0; n < c->nodes; n++) {
            if (s->ns[n][p] != COH_M) continue;
            if (writer >= 0) {
                snprintf(buf, len, "SWMR: node%d and node%d are both in M on page %d", writer, n,
                         p);
                return buf;
            }
            writer = n;
        }
        for (int n = 0; n < c->nodes; n++) {
            if (writer >= 0 && n != writer && readable(s->ns[n][p])) {
                snprintf(buf, len,
                         "SWMR: node%d is in M on page %d while node%d holds a "
                         "readable copy (%s)",
                         writer, p, n, coh_nstate_name(s->ns[n][p]));
                return buf;
            }
            if (readable(s->ns[n][p]) && s->copy[n][p] != s->lastw[p]) {
                char v[16];
                val_str(s->copy[n][p], v, sizeof v);
                snprintf(buf, len,
                         "data: node%d holds %s of page %d in %s, the last completed "
                         "write is v%u",
                         n, v, p, coh_nstate_name(s->ns[n][p]), s->lastw[p]);
                return buf;
            }
        }
        if (d->state == COH_D_SHARED && writer < 0 && s->store[p] != s->lastw[p]) {
            snprintf(buf, len,
                     "data: the home store of page %d holds v%u while the directory "
                     "is SHARED, but the last completed write is v%u",
                     p, s->store[p], s->lastw[p]);
            return buf;
        }
        if (!d->written && s->store[p] != 0) {
            snprintf(buf, len, "data: page %d is marked never-written but its store holds v%u", p,
                     s->store[p]);
            return buf;
        }
        if (!empty) continue;
        /* Every channel is empty: the directory must agree with the nodes exactly. */
        char ds[200];
        dir_str(d, ds, sizeof ds);
        if (d->state != COH_D_SHARED && d->state != COH_D_EXCL) {
            snprintf(buf, len, "quiescence: every channel is empty but dir[%d] is %s", p, ds);
            return buf;
        }
        if (d->pend_s | d->pend_m) {
            snprintf(buf, len,
                     "quiescence: every channel is empty but dir[%d] has queued "
                     "requests: %s",
                     p, ds);
            return buf;
        }
        uint64_t in_s = 0;
        for (int n = 0; n < c->nodes; n++) {
            if (transient(s->ns[n][p])) {
                snprintf(buf, len,
                         "quiescence: every channel is empty but node%d is in %s on "
                         "page %d",
                         n, coh_nstate_name(s->ns[n][p]), p);
                return buf;
            }
            if (s->ns[n][p] == COH_S) in_s |= (uint64_t)1 << n;
        }
        if (d->state == COH_D_SHARED && (writer >= 0 || d->sharers != in_s)) {
            char m[80];
            mask_str(in_s, m, sizeof m);
            snprintf(buf, len, "quiescence: dir[%d] is %s but the nodes in S are %s%s", p, ds, m,
                     writer >= 0 ? " and one is in M" : "");
            return buf;
        }
        if (d->state == COH_D_EXCL && (writer != d->owner || in_s)) {
            snprintf(buf, len, "quiescence: dir[%d] is %s but node%u is %s and %s", p, ds, d->owner,
                     coh_nstate_name(s->ns[d->owner % MAXN][p]),
                     in_s ? "others hold S copies" : "no one else has a copy");
            return buf;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- packed encoding */

struct bits {
    uint8_t *buf;
    int pos;
    int rd;
};

/* nb <= 32 bits at b->pos; the write buffer is zeroed beforehand and has 8 bytes of slack. */
static void fld(struct bits *b, uint64_t *v, int nb)
{
    uint64_t w;
    uint8_t *at = b->buf + (b->pos >> 3);
    const int sh = b->pos & 7;
    memcpy(&w, at, 8);
    if (b->rd) {
        *v = nb ? (w >> sh) & ((1ull << nb) - 1) : 0;
    } else {
        w |= *v << sh;
        memcpy(at, &w, 8);
    }
    b->pos += nb;
}

static int bits_for(unsigned maxv)
{
    int n = 0;
    while ((1u << n) <= maxv) n++;
    return n;
}

static void die_range(const char *what, unsigned long long v)
{
    fprintf(stderr, "model_check: internal: %s = %llu does not fit the encoding\n", what, v);
    abort();
}

static void f8(struct bits *b, uint8_t *v, int nb, const char *what)
{
    uint64_t t = *v;
    if (!b->rd && nb < 8 && t >> nb) die_range(what, t);
    fld(b, &t, nb);
    *v = (uint8_t)t;
}

static void f64(struct bits *b, uint64_t *v, int nb, const char *what)
{
    if (!b->rd && nb < 64 && *v >> nb) die_range(what, *v);
    fld(b, v, nb);
}

/* Page values: 0..MAXVAL, NOCOPY as 31. */
static void fval(struct bits *b, uint8_t *v)
{
    uint8_t t = *v == NOCOPY ? 31 : *v;
    if (!b->rd && t > 31) die_range("page value", t);
    f8(b, &t, 5, "page value");
    *v = t == 31 ? NOCOPY : t;
}

static void codec(const struct mconfig *c, struct mstate *s, int proj, struct bits *b)
{
    const int nbn = bits_for((unsigned)c->nodes - 1), nba = bits_for((unsigned)c->nodes);
    const int nbp = bits_for((unsigned)c->pages - 1);
    const int nbo = c->bound >= 0 ? bits_for((unsigned)c->bound) : 0;
    const int nbq = bits_for(MAXQ);
    for (int n = 0; n < c->nodes; n++) {
        if (!proj && c->bound >= 0) f8(b, &s->ops[n], nbo, "ops");
        for (int p = 0; p < c->pages; p++) {
            f8(b, &s->ns[n][p], 3, "node state");
            f8(b, &s->pend[n][p], 2, "pending");
            if (proj) continue;
            if (readable(s->ns[n][p]))
                fval(b, &s->copy[n][p]);
            else if (b->rd)
                s->copy[n][p] = NOCOPY;
            else if (s->copy[n][p] != NOCOPY)
                die_range("copy of an unmapped page", s->copy[n][p]);
        }
    }
    for (int p = 0; p < c->pages; p++) {
        struct coh_dir *d = &s->dir[p];
        f8(b, &d->state, 2, "dir.state");
        f8(b, &d->written, 1, "dir.written");
        f8(b, &d->owner, nbn, "dir.owner");
        f8(b, &d->req, nbn, "dir.req");
        f8(b, &d->req_type, 2, "dir.req_type");
        f8(b, &d->req_had, 1, "dir.req_had");
        f8(b, &d->acks, nba, "dir.acks");
        f8(b, &d->rr, nbn, "dir.rr");
        f64(b, &d->sharers, c->nodes, "dir.sharers");
        f64(b, &d->pend_s, c->nodes, "dir.pend_s");
        f64(b, &d->pend_m, c->nodes, "dir.pend_m");
        if (proj) continue;
        fval(b, &s->store[p]);
        fval(b, &s->lastw[p]);
    }
    for (int a = 0; a < c->nodes; a++)
        for (int d = 0; d < c->nodes; d++) {
            struct mchan *ch = &s->ch[a][d];
            f8(b, &ch->n, nbq, "channel length");
            for (int i = 0; i < ch->n; i++) {
                struct mmsg *m = &ch->m[i];
                f8(b, &m->type, 4, "message type");
                f8(b, &m->page, nbp, "message page");
                if (m->type == COH_DATA_S || m->type == COH_DATA_M) {
                    uint8_t fl = (uint8_t)(m->flags >> 1);
                    f8(b, &fl, 2, "message flags");
                    m->flags = (uint8_t)(fl << 1);
                } else if (b->rd) {
                    m->flags = 0;
                }
                /* The protocol state leaves the ranks out: then it compares with ORDER_PAIR's. */
                if (c->order == ORDER_GLOBAL && !proj)
                    f8(b, &m->seq, bits_for(MAXSEQ), "message rank");
                else if (b->rd)
                    m->seq = 0;
                struct coh_msg cm = to_coh(m, a, d);
                if (!proj && coh_msg_has_payload(&cm))
                    fval(b, &m->val);
                else if (b->rd)
                    m->val = 0;
            }
        }
}

int model_encode(const struct mconfig *c, const struct mstate *s, int proj, uint8_t *buf)
{
    struct mstate t = *s;
    struct bits b = {.buf = buf, .pos = 0, .rd = 0};
    memset(buf, 0, ENC_MAX + 8);
    codec(c, &t, proj, &b);
    int len = (b.pos + 7) >> 3;
    if (len > ENC_MAX) die_range("encoded length", (unsigned long long)len);
    return len;
}

void model_decode(const struct mconfig *c, const uint8_t *buf, struct mstate *s)
{
    model_init(c, s);
    struct bits b = {.buf = (uint8_t *)buf, .pos = 0, .rd = 1};
    codec(c, s, 0, &b);
}

/* ---------------------------------------------------------------- rendering */

void model_describe(const struct mconfig *c, const struct mstate *s, char *buf, size_t len)
{
    size_t o = 0;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        if (o < len) o += (size_t)snprintf(buf + o, len - o, __VA_ARGS__);                         \
    } while (0)
    for (int n = 0; n < c->nodes; n++) {
        if (c->bound >= 0)
            OUT("  node%d (ops %u):", n, s->ops[n]);
        else
            OUT("  node%d:", n);
        for (int p = 0; p < c->pages; p++) {
            char v[16];
            val_str(s->copy[n][p], v, sizeof v);
            OUT(" page %d %s", p, coh_nstate_name(s->ns[n][p]));
            if (s->copy[n][p] != NOCOPY) OUT("(%s)", v);
            if (s->pend[n][p])
                OUT(" [waiting:%s%s]", (s->pend[n][p] & PEND_R) ? " read" : "",
                    (s->pend[n][p] & PEND_W) ? " write" : "");
            OUT(p + 1 < c->pages ? ";" : "");
        }
        OUT("\n");
    }
    for (int p = 0; p < c->pages; p++) {
        char ds[200];
        dir_str(&s->dir[p], ds, sizeof ds);
        OUT("  dir[%d] at node%d: %s, store v%u, last write v%u\n", p, c->home[p], ds, s->store[p],
            s->lastw[p]);
    }
    for (int a = 0; a < c->nodes; a++)
        for (int d = 0; d < c->nodes; d++) {
            const struct mchan *ch = &s->ch[a][d];
            if (!ch->n) continue;
            OUT("  channel node%d->node%d:", a, d);
            for (int i = 0; i < ch->n; i++) {
                char fl[32], v[16] = "";
                flags_str(ch->m[i].flags, fl, sizeof fl);
                struct coh_msg cm = to_coh(&ch->m[i], a, d);
                if (coh_msg_has_payload(&cm)) snprintf(v, sizeof v, "(v%u)", ch->m[i].val);
                OUT(" %s%s p%u%s", coh_mtype_name(ch->m[i].type), fl, ch->m[i].page, v);
            }
            OUT("\n");
        }
#undef OUT
}

void model_diff(const struct mconfig *c, const struct mstate *a, const struct mstate *b, char *buf,
                size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (int n = 0; n < c->nodes; n++)
        for (int p = 0; p < c->pages; p++) {
            if (a->ns[n][p] != b->ns[n][p] && o < len)
                o += (size_t)snprintf(buf + o, len - o, " | node%d page %d %s->%s", n, p,
                                      coh_nstate_name(a->ns[n][p]), coh_nstate_name(b->ns[n][p]));
            if (a->pend[n][p] != b->pend[n][p] && o < len)
                o += (size_t)snprintf(buf + o, len - o, " | node%d page %d waiting:%s%s%s", n, p,
                                      (b->pend[n][p] & PEND_R) ? " read" : "",
                                      (b->pend[n][p] & PEND_W) ? " write" : "",
                                      b->pend[n][p] ? "" : " none");
        }
    for (int p = 0; p < c->pages; p++)
        if (memcmp(&a->dir[p], &b->dir[p], sizeof a->dir[p]) && o < len) {
            char ds[200];
            dir_str(&b->dir[p], ds, sizeof ds);
            o += (size_t)snprintf(buf + o, len - o, " | dir[%d] %s", p, ds);
        }
}

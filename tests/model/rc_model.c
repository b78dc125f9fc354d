/*
 * rc_model.c - the release-consistency system (rc_model.h) and its transitions, over the real
 * coherence/rc.c.
 *
 * Actions are carried out as dsm/engine.c carries them out: SEND enqueues with the payload
 * taken at that moment (RC_DATA: the home store, or nothing with ZERO; RC_DIFF: the bytes of the
 * copy that differ from the twin, or the whole copy with FULL); MAP_RO installs the handled
 * message's page; PROTECT/UNPROTECT change only the mapping; UNMAP drops the copy; TWIN keeps
 * a copy of the page as it is; APPLY writes the handled diff into the home store. Before a
 * home's directory handles a request from another node, a page the home writes alone in place
 * (RC_N_OWNED) is copied into the store, as the engine does (rc_home_flush).
 *
 * With one copy at the home (mconfig.one_copy) the home's mapped copy of its page is the store
 * itself: installing shows the store (not the payload), a write by the home writes the store,
 * a diff applied from another node changes the home's mapped copy too, and the home's own
 * write-backs and flushes do nothing. COH_A_FETCH (one-sided page service) installs the
 * store's current contents at another node, with no message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rc_model.h"

struct ctx {
    const struct mconfig *c;
    struct mstate *s;
    struct stepinfo *info;
    int hsrc; /* the sender of the message being handled */
};

static void logf_(struct stepinfo *info, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(struct stepinfo *info, const char *fmt, ...)
{
    if (!info->log) return;
    size_t o = strlen(info->log);
    if (o + 1 >= info->logsize) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->log + o, info->logsize - o, fmt, ap);
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

static int nbytes(const struct mconfig *c)
{
    return c->nodes + 1;
}

static const char *const phase_name[PH_COUNT] = {"WRITE", "READ", "LOCK"};
static const char *const sync_name[] = {"idle", "unlocking", "barrier-releasing", "barrier-arrived",
                                        "barrier-acquiring"};

void model_init(const struct mconfig *c, struct mstate *s)
{
    memset(s, 0, sizeof *s);
    s->holder = NOLOCK;
    for (int p = 0; p < c->pages; p++) rc_dir_init(&s->dir[p]);
}

int model_labels(const struct mconfig *c, unsigned *labels)
{
    int k = 0;
    for (int n = 0; n < c->nodes; n++) {
        for (int t = 0; t < c->threads; t++)
            for (int p = 0; p < c->pages; p++) {
                labels[k++] = LABEL_T(T_READ, n, p, t);
                labels[k++] = LABEL_T(T_WRITE, n, p, t);
                labels[k++] = LABEL_T(T_RETRY_R, n, p, t);
                labels[k++] = LABEL_T(T_RETRY_W, n, p, t);
            }
        for (int op = 0; op < 4; op++) labels[k++] = LABEL(T_SYNC, n, op, 0, 0);
        labels[k++] = LABEL(T_SYNC_GO, n, 0, 0, 0);
    }
    labels[k++] = LABEL(T_BAR_DONE, 0, 0, 0, 0);
    for (int a = 0; a < c->nodes; a++)
        for (int b = 0; b < c->nodes; b++)
            for (int i = 0; i < (c->order == ORDER_NONE ? MAXQ : 1); i++)
                labels[k++] = LABEL_AT(LABEL(T_DELIVER, 0, 0, a, b), (unsigned)i);
    return k;
}

void model_label_name(unsigned l, char *buf, size_t len)
{
    static const char *const sync_op[] = {"LOCK", "UNLOCK", "BARRIER", "ACQUIRE"};
    /* The first thread is the node itself, as in the one-thread traces. */
    const char *thr = L_THREAD(l) ? " thread 2" : "";
    switch (L_KIND(l)) {
    case T_READ:
        snprintf(buf, len, "node%u%s READ page %u", L_NODE(l), thr, L_PAGE(l));
        break;
    case T_WRITE:
        snprintf(buf, len, "node%u%s WRITE page %u", L_NODE(l), thr, L_PAGE(l));
        break;
    case T_RETRY_R:
        snprintf(buf, len, "node%u%s retries its READ of page %u", L_NODE(l), thr, L_PAGE(l));
        break;
    case T_RETRY_W:
        snprintf(buf, len, "node%u%s retries its WRITE of page %u", L_NODE(l), thr, L_PAGE(l));
        break;
    case T_SYNC:
        snprintf(buf, len, "node%u %s", L_NODE(l), sync_op[L_PAGE(l) % 4]);
        break;
    case T_SYNC_GO:
        snprintf(buf, len, "node%u synchronisation moves on", L_NODE(l));
        break;
    case T_BAR_DONE:
        snprintf(buf, len, "the barrier opens");
        break;
    default:
        snprintf(buf, len, "deliver node%u->node%u", L_SRC(l), L_DST(l));
        break;
    }
}

static void vals_str(const uint8_t *v, int nb, char *buf, size_t len)
{
    size_t o = 0;
    for (int b = 0; b < nb && o < len; b++)
        o += (size_t)snprintf(buf + o, len - o, "%s%u", b ? "," : "", v[b]);
}

static void msg_str(const struct mconfig *c, const struct mmsg *m, int src, int dst, char *buf,
                    size_t len)
{
    char v[32] = "";
    vals_str(m->val, nbytes(c), v, sizeof v);
    snprintf(buf, len, "%s%s%s node%d->node%d page %u writers=%#x%s%s%s", rc_mtype_name(m->type),
             (m->flags & RC_F_FULL) && m->type == RC_DIFF ? "[FULL]" : "",
             (m->flags & RC_F_ZERO) && m->type == RC_DATA ? "[ZERO]" : "", src, dst, m->page,
             m->arg, m->type == RC_DATA || m->type == RC_DIFF ? " [" : "",
             m->type == RC_DATA || m->type == RC_DIFF ? v : "",
             m->type == RC_DATA || m->type == RC_DIFF ? "]" : "");
}

/* ---------------------------------------------------------------- actions */

static int enqueue(struct ctx *x, int src, int dst, const struct mmsg *m)
{
    struct mchan *ch = &x->s->ch[src][dst];
    if (ch->n >= MAXQ)
        return fail(x->info, STEP_LIMIT, "more than %d messages node%d->node%d", MAXQ, src, dst);
    ch->m[ch->n] = *m;
    if (x->c->order == ORDER_GLOBAL) {
        int inflight = 0;
        for (int a = 0; a < x->c->nodes; a++)
            for (int b = 0; b < x->c->nodes; b++) inflight += x->s->ch[a][b].n;
        if (inflight > MAXSEQ)
            return fail(x->info, STEP_LIMIT, "more than %d messages in flight", MAXSEQ);
        ch->m[ch->n].seq = (uint8_t)inflight;
    }
    ch->n++;
    return STEP_OK;
}

/* Carries out the actions of node `n` (-1: the home of page p's directory) for page p; `hm` is
 * the message being handled (NULL for an access, release or acquire). */
static int exec(struct ctx *x, int n, int p, const struct coh_out *o, const struct mmsg *hm)
{
    struct mstate *s = x->s;
    const struct mconfig *c = x->c;
    const int nb = nbytes(c);
    const int self = n < 0 ? c->home[p] : n;
    for (int i = 0; i < o->n; i++) {
        const struct coh_action *a = &o->a[i];
        if ((int)a->msg.page != p)
            return fail(x->info, STEP_VIOLATION, "an action for page %llu while handling page %d",
                        (unsigned long long)a->msg.page, p);
        if (a->kind != COH_A_SEND && a->kind != COH_A_APPLY && n < 0)
            return fail(x->info, STEP_VIOLATION, "the directory asked for node-side action %u",
                        a->kind);
        if (a->kind == COH_A_APPLY && n >= 0)
            return fail(x->info, STEP_VIOLATION,
                        "node%d asked to APPLY a diff outside its directory", n);
        switch (a->kind) {
        case COH_A_DIFF_KEEP:
            if (a->msg.type != RC_DIFF || (a->msg.flags & RC_F_FULL))
                return fail(x->info, STEP_VIOLATION,
                            "node%d's DIFF_KEEP of page %d is not a diff against a twin", n, p);
            __attribute__((fallthrough));
        case COH_A_SEND: {
            const struct coh_msg *cm = &a->msg;
            const int keep = a->kind == COH_A_DIFF_KEEP;
            struct mmsg m = {
                .type = cm->type, .flags = cm->flags, .page = (uint8_t)p, .arg = (uint8_t)cm->arg};
            if (!rc_msg_is_rc(cm->type))
                return fail(x->info, STEP_VIOLATION,
                            "rc.c sent a message of type %u, not an RC type", cm->type);
            if (cm->src != self || cm->dst >= c->nodes)
                return fail(x->info, STEP_VIOLATION, "%s from node%u to node%u sent by node%d",
                            rc_mtype_name(cm->type), cm->src, cm->dst, self);
            int to_home = rc_msg_to_home(cm->type);
            if (to_home ? (n < 0 || cm->dst != c->home[p]) : (n >= 0 || cm->src != c->home[p]))
                return fail(x->info, STEP_VIOLATION,
                            "%s goes the wrong way (node%u->node%u, page %d homed on node%d)",
                            rc_mtype_name(cm->type), cm->src, cm->dst, p, c->home[p]);
            if (cm->type == RC_DATA) {
                if (cm->flags & RC_F_ZERO) {
                    for (int b = 0; b < nb; b++)
                        if (s->store[p][b])
                            return fail(x->info, STEP_VIOLATION,
                                        "RC_DATA[ZERO] for page %d whose store holds byte %d = %u",
                                        p, b, s->store[p][b]);
                } else {
                    memcpy(m.val, s->store[p], MAXB);
                }
            } else if (cm->type == RC_DIFF) {
                if (s->map[n][p] == MAP_NONE)
                    return fail(x->info, STEP_VIOLATION,
                                "node%d sends a write-back of page %d it has no copy of", n, p);
                /* Reading a writable copy for a write-back is safe only if the copy is sent
                 * whole and stays writable (and so dirty, check_node): a write that slips
                 * past is sent by a later release. A diff against a twin, or a protection
                 * or drop after the read, would lose it. */
                int later = 0;
                for (int j = i + 1; j < o->n; j++)
                    later |= o->a[j].kind == COH_A_PROTECT || o->a[j].kind == COH_A_UNMAP ||
                             o->a[j].kind == COH_A_TWIN || o->a[j].kind == COH_A_DROP_TWIN;
                if (s->map[n][p] == MAP_RW && ((!(cm->flags & RC_F_FULL) && !keep) || later))
                    return fail(
                        x->info, STEP_VIOLATION,
                        "node%d reads its changes to page %d while the page is still writable "
                        "(a write could slip past the write-back)",
                        n, p);
                if (cm->flags & RC_F_FULL) {
                    memcpy(m.val, s->copy[n][p], MAXB);
                } else {
                    if (!s->hastwin[n][p])
                        return fail(x->info, STEP_VIOLATION, "node%d diffs page %d without a twin",
                                    n, p);
                    for (int b = 0; b < nb; b++)
                        if (s->copy[n][p][b] != s->twin[n][p][b]) {
                            m.dmask |= (uint8_t)(1u << b);
                            m.val[b] = s->copy[n][p][b];
                        }
                    /* What was read is the twin now (the engine copies each word it read). */
                    if (keep) memcpy(s->twin[n][p], s->copy[n][p], MAXB);
                }
                if (s->outst[n] == 255)
                    return fail(x->info, STEP_LIMIT, "outstanding counter overflow");
                s->outst[n]++;
            }
            char ms[128];
            if (x->info->log) {
                msg_str(c, &m, cm->src, cm->dst, ms, sizeof ms);
                logf_(x->info, ", sends %s", ms);
            }
            int r = enqueue(x, cm->src, cm->dst, &m);
            if (r != STEP_OK) return r;
            break;
        }
        case COH_A_MAP_RO:
        case COH_A_MAP_RW:
            if (s->map[n][p] != MAP_NONE)
                return fail(x->info, STEP_VIOLATION, "node%d maps page %d twice", n, p);
            if (!hm || hm->type != RC_DATA)
                return fail(x->info, STEP_VIOLATION, "node%d maps page %d without page data", n, p);
            s->map[n][p] = a->kind == COH_A_MAP_RO ? MAP_RO : MAP_RW;
            /* One copy: the home shows its store, newer than the payload it sent itself. */
            memcpy(s->copy[n][p], c->one_copy && n == c->home[p] ? s->store[p] : hm->val, MAXB);
            break;
        case COH_A_FETCH:
            if (!c->onesided || n < 0 || n == c->home[p])
                return fail(x->info, STEP_VIOLATION,
                            "node%d fetches page %d one-sided, which it was not offered", n, p);
            if (s->map[n][p] != MAP_NONE)
                return fail(x->info, STEP_VIOLATION, "node%d fetches page %d it has mapped", n, p);
            s->map[n][p] = MAP_RO;
            memcpy(s->copy[n][p], s->store[p], MAXB);
            logf_(x->info, ", fetches it from the home's store");
            break;
        case COH_A_REFRESH:
            if (!c->onesided || n < 0 || n == c->home[p])
                return fail(x->info, STEP_VIOLATION,
                            "node%d refreshes page %d in place, which it was not offered", n, p);
            if (s->map[n][p] != MAP_RO)
                return fail(x->info, STEP_VIOLATION, "node%d refreshes page %d, which is %s", n, p,
                            s->map[n][p] ? "writable" : "not mapped");
            memcpy(s->copy[n][p], s->store[p], MAXB);
            logf_(x->info, ", refreshes it from the home's store");
            break;
        case COH_A_MERGE:
            if (!c->onesided || n < 0 || n == c->home[p])
                return fail(x->info, STEP_VIOLATION,
                            "node%d merges page %d in place, which it was not offered", n, p);
            if (s->map[n][p] != MAP_RW || !s->hastwin[n][p])
                return fail(x->info, STEP_VIOLATION, "node%d merges page %d, which is %s", n, p,
                            s->map[n][p] != MAP_RW ? "not writable" : "without a twin");
            for (int b = 0; b < nb; b++) {
                if (s->copy[n][p][b] == s->twin[n][p][b]) s->copy[n][p][b] = s->store[p][b];
                s->twin[n][p][b] = s->store[p][b];
            }
            logf_(x->info, ", merges the home's store into it");
            break;
        case COH_A_PROTECT:
            if (s->map[n][p] != MAP_RW)
                return fail(x->info, STEP_VIOLATION,
                            "node%d protects page %d which is not writable", n, p);
            s->map[n][p] = MAP_RO;
            break;
        case COH_A_UNPROTECT:
            if (s->map[n][p] != MAP_RO)
                return fail(x->info, STEP_VIOLATION,
                            "node%d unprotects page %d which is not read-only", n, p);
            s->map[n][p] = MAP_RW;
            break;
        case COH_A_UNMAP:
            if (s->map[n][p] == MAP_NONE)
                return fail(x->info, STEP_VIOLATION, "node%d unmaps page %d which is not mapped", n,
                            p);
            if (s->hastwin[n][p])
                return fail(x->info, STEP_VIOLATION,
                            "node%d drops page %d while keeping a twin (unsent changes lost?)", n,
                            p);
            s->map[n][p] = MAP_NONE;
            memset(s->copy[n][p], 0, MAXB);
            break;
        case COH_A_TWIN:
            if (s->map[n][p] == MAP_NONE || s->hastwin[n][p])
                return fail(x->info, STEP_VIOLATION, "node%d twins page %d (%s)", n, p,
                            s->hastwin[n][p] ? "twice" : "not mapped");
            s->hastwin[n][p] = 1;
            memcpy(s->twin[n][p], s->copy[n][p], MAXB);
            break;
        case COH_A_DROP_TWIN:
            if (!s->hastwin[n][p])
                return fail(x->info, STEP_VIOLATION, "node%d drops a twin of page %d it lacks", n,
                            p);
            s->hastwin[n][p] = 0;
            memset(s->twin[n][p], 0, MAXB);
            break;
        case COH_A_APPLY: {
            if (!hm || hm->type != RC_DIFF)
                return fail(x->info, STEP_VIOLATION, "APPLY on page %d without a diff", p);
            if (c->one_copy && x->hsrc == c->home[p]) break; /* already in place */
            int home = c->home[p], shown = c->one_copy && s->map[home][p] != MAP_NONE;
            for (int b = 0; b < nb; b++)
                if ((hm->flags & RC_F_FULL) || (hm->dmask & (1u << b))) {
                    s->store[p][b] = hm->val[b];
                    if (shown) s->copy[home][p][b] = hm->val[b];
                }
            break;
        }
        default:
            return fail(x->info, STEP_VIOLATION, "rc.c asked for action %u, which RC never uses",
                        a->kind);
        }
    }
    return STEP_OK;
}

static int expected_map(uint8_t st)
{
    return st == COH_M ? MAP_RW : (st == COH_S || st == COH_SM_A) ? MAP_RO : MAP_NONE;
}

static int check_node(struct ctx *x, int n, int p)
{
    const struct mstate *s = x->s;
    if (s->map[n][p] != expected_map(s->ns[n][p]))
        return fail(x->info, STEP_VIOLATION, "node%d page %d is %s but mapped %s", n, p,
                    coh_nstate_name(s->ns[n][p]),
                    s->map[n][p] == MAP_RW ? "writable"
                    : s->map[n][p]         ? "read-only"
                                           : "not at all");
    if (!!(s->x[n][p].flags & RC_N_TWIN) != !!s->hastwin[n][p])
        return fail(x->info, STEP_VIOLATION, "node%d page %d: the TWIN flag and the twin disagree",
                    n, p);
    if (x->c->one_copy && n == x->c->home[p] && s->map[n][p] != MAP_NONE &&
        memcmp(s->copy[n][p], s->store[p], MAXB))
        return fail(x->info, STEP_VIOLATION, "node%d's view of page %d it homes is not its store",
                    n, p);
    if ((s->x[n][p].flags & RC_N_OWNED) && (s->ns[n][p] != COH_M || x->c->home[p] != n))
        return fail(x->info, STEP_VIOLATION, "node%d page %d OWNED in state %s (home node%d)", n, p,
                    coh_nstate_name(s->ns[n][p]), x->c->home[p]);
    return STEP_OK;
}

/* ---------------------------------------------------------------- the program */

static int op_allowed(const struct mconfig *c, const struct mstate *s, int n)
{
    if (c->bound < 0) return 1;
    if (s->ops[n] >= c->bound) return 0;
    if (c->total > 0) {
        int t = 0;
        for (int a = 0; a < c->nodes; a++) t += s->ops[a];
        if (t >= c->total) return 0;
    }
    return 1;
}

/* The pending-access bit of thread t's read or write. */
static uint8_t pend_bit(int write, int t)
{
    return (uint8_t)((write ? PEND_W : PEND_R) << (2 * t));
}

/* Thread t of node n waits for an access to some page. */
static int waiting(const struct mconfig *c, const struct mstate *s, int n, int t)
{
    for (int p = 0; p < c->pages; p++)
        if (s->pend[n][p] & (pend_bit(0, t) | pend_bit(1, t))) return 1;
    return 0;
}

/* Thread t of node n cannot start an access: it waits for one, or the first thread is in a
 * synchronisation, or the second is outside the LOCK phase or its node is in a barrier (which
 * the node enters only once the second thread is idle: the barrier is both threads'). The
 * second thread runs on while the first unlocks: that wait is the first thread's alone. */
static int busy(const struct mconfig *c, const struct mstate *s, int n, int t)
{
    if (waiting(c, s, n, t)) return 1;
    if (t) return s->phase != PH_LOCK || (s->sync[n] != SY_IDLE && s->sync[n] != SY_UNLOCKING);
    return s->sync[n] != SY_IDLE;
}

/* Which bytes thread t of node n may read now (bit b = byte b), per the program. */
static unsigned readable_bytes(const struct mconfig *c, const struct mstate *s, int n, int t)
{
    if (t) return s->phase == PH_LOCK ? 1u << (1 + n) : 0;
    switch (s->phase) {
    case PH_WRITE:
        return 1u | 1u << (1 + n);
    case PH_READ:
        return (1u << nbytes(c)) - 1;
    default:
        if (s->holder != n) return 0;
        /* The second threads write their bytes in this phase, unordered with the holder. */
        return c->threads > 1 ? 1u : (1u << nbytes(c)) - 1;
    }
}

static int written_byte(const struct mstate *s, int n, int t)
{
    if (t) return s->phase == PH_LOCK ? 1 + n : -1;
    if (s->phase == PH_WRITE) return 1 + n;
    if (s->phase == PH_LOCK && s->holder == n) return 0;
    return -1;
}

static uint8_t max_val(const struct mconfig *c, const struct mstate *s, int p, int b)
{
    uint8_t m = s->lastw[p][b];
    if (s->store[p][b] > m) m = s->store[p][b];
    for (int n = 0; n < c->nodes; n++) {
        if (s->copy[n][p][b] > m) m = s->copy[n][p][b];
        if (s->twin[n][p][b] > m) m = s->twin[n][p][b];
    }
    for (int a = 0; a < c->nodes; a++)
        for (int d = 0; d < c->nodes; d++)
            for (int i = 0; i < s->ch[a][d].n; i++)
                if (s->ch[a][d].m[i].page == p && s->ch[a][d].m[i].val[b] > m)
                    m = s->ch[a][d].m[i].val[b];
    return m;
}

/* The access is permitted: do it. A read checks every byte the program may read now against
 * the last write of that byte: in a data-race-free program that is exactly what RC promises. */
static int complete(struct ctx *x, int n, int p, int write, int t)
{
    struct mstate *s = x->s;
    const struct mconfig *c = x->c;
    if (!write) {
        unsigned rb = readable_bytes(c, s, n, t);
        for (int b = 0; b < nbytes(c); b++)
            if ((rb & (1u << b)) && s->copy[n][p][b] != s->lastw[p][b])
                return fail(x->info, STEP_VIOLATION,
                            "data (DRF): node%d read byte %d of page %d as v%u, but the last write "
                            "of it, which happens-before the read, wrote v%u",
                            n, b, p, s->copy[n][p][b], s->lastw[p][b]);
        logf_(x->info, ", reads ok");
        return STEP_OK;
    }
    int b = written_byte(s, n, t);
    if (s->map[n][p] != MAP_RW)
        return fail(x->info, STEP_VIOLATION, "node%d writes page %d, which is not writable", n, p);
    unsigned v;
    if (x->info->fresh)
        v = (*x->info->fresh)++;
    else
        v = max_val(c, s, p, b) + 1u;
    if (v > MAXVAL)
        return fail(x->info, STEP_LIMIT, "more than %d distinct values of one byte", MAXVAL);
    s->copy[n][p][b] = (uint8_t)v;
    if (c->one_copy && n == c->home[p]) s->store[p][b] = (uint8_t)v;
    s->lastw[p][b] = (uint8_t)v;
    logf_(x->info, ", writes byte %d = v%u", b, v);
    return STEP_OK;
}

/* Whether node n shares a host (and so the home's memory and directory words) with the home
 * of page p, which is not n itself. */
static int colocated(const struct mconfig *c, int n, int p)
{
    return c->onesided && n != c->home[p] && !((c->remote >> n) & 1) &&
           !((c->remote >> c->home[p]) & 1);
}

static int do_access(struct ctx *x, int n, int p, int write, int t, int retry)
{
    struct mstate *s = x->s;
    const uint8_t bitk = pend_bit(write, t);
    uint8_t st = s->ns[n][p];
    struct rc_node rx = s->x[n][p];
    struct coh_out o;
    o.n = 0;
    const struct mconfig *c = x->c;
    unsigned how = write ? COH_ACC_WRITE : 0;
    if (colocated(c, n, p) && (c->fetch_early || !s->outst[n])) how |= COH_ACC_FETCH;
    if (c->one_copy && n == c->home[p]) how |= COH_ACC_INPLACE;
    /* The engine's one-sided registration (engine.c, register_onesided), in the same step as
     * the fetch it allows: the two words are written and read in the order rc.h gives. */
    if (!c->no_dir && rc_node_may_register(st, &rx, how)) {
        s->shr[p] |= (uint8_t)(1u << n);
        rc_node_registered(&rx, c->register_blind ? 0 : s->shw[p] | s->shs[p]);
        logf_(x->info, ", registers as a reader in the home's directory (writers=%#x+%#x)",
              s->shw[p], s->shs[p]);
    }
    /* One-sided writer registration (engine.c, register_writer_onesided), where the home's
     * view is its store: the words are written, then read, in one step as above. */
    if (c->one_copy && !c->register_blind && !c->no_dir &&
        rc_node_may_register_writer(st, &rx, how)) {
        s->shr[p] |= (uint8_t)(1u << n);
        s->shs[p] |= (uint8_t)(1u << n);
        int ok = rc_node_registered_writer(&rx, n, c->home[p], s->shr[p], s->shw[p], s->shs[p],
                                           s->watch);
        logf_(x->info,
              ", registers as a writer in the home's directory (readers=%#x writers=%#x+%#x "
              "watchers=%#x): %s",
              s->shr[p], s->shw[p], s->shs[p], s->watch, ok ? "done" : "must ask the home");
    }
    int rc = rc_node_access(&st, &rx, n, c->home[p], (uint64_t)p, how, &o);
    if (rc == COH_ACCESS_WAIT && retry && o.n == 0 && st == s->ns[n][p] &&
        !memcmp(&rx, &s->x[n][p], sizeof rx))
        return STEP_DISABLED; /* still waiting: nothing to retry */
    if (rc != COH_ACCESS_OK && rc != COH_ACCESS_WAIT)
        return fail(x->info, STEP_VIOLATION, "rc_node_access returned %d", rc);
    logf_(x->info, " -> %s", rc == COH_ACCESS_OK ? "OK" : "WAIT");
    int r = exec(x, n, p, &o, NULL);
    if (r != STEP_OK) return r;
    s->ns[n][p] = st;
    s->x[n][p] = rx;
    if ((r = check_node(x, n, p)) != STEP_OK) return r;
    if (rc == COH_ACCESS_OK) {
        s->pend[n][p] &= (uint8_t)~bitk;
        return complete(x, n, p, write, t);
    }
    s->pend[n][p] |= (uint8_t)bitk;
    return STEP_OK;
}

/* Release or acquire every page, as dsm_node_release / dsm_node_acquire do. */
static int sync_pages(struct ctx *x, int n, int acquire)
{
    for (int p = 0; p < x->c->pages; p++) {
        uint8_t st = x->s->ns[n][p];
        struct rc_node rx = x->s->x[n][p];
        struct coh_out o;
        o.n = 0;
        /* A watcher reads the writers word of each page homed elsewhere (engine.c). */
        if (acquire && colocated(x->c, n, p) && !x->c->register_blind && !x->c->no_dir) {
            x->s->watch |= (uint8_t)(1u << n);
            rc_node_watch(&rx, x->s->shw[p] | x->s->shs[p]);
        }
        /* In-place refresh under the conditions of a one-sided fetch (do_access). */
        unsigned how =
            colocated(x->c, n, p) && (x->c->fetch_early || !x->s->outst[n]) ? COH_ACC_REFRESH : 0;
        if (acquire)
            rc_node_acquire(&st, &rx, n, x->c->home[p], (uint64_t)p, how, &o);
        else
            rc_node_release(&st, &rx, n, x->c->home[p], (uint64_t)p,
                            x->s->hastwin[n][p] && !memcmp(x->s->copy[n][p], x->s->twin[n][p], MAXB)
                                ? COH_REL_CLEAN
                                : 0,
                            &o);
        int r = exec(x, n, p, &o, NULL);
        if (r != STEP_OK) return r;
        x->s->ns[n][p] = st;
        x->s->x[n][p] = rx;
        if ((r = check_node(x, n, p)) != STEP_OK) return r;
    }
    return STEP_OK;
}

static int deliver(struct ctx *x, const struct mstate *in, unsigned label)
{
    struct mstate *s = x->s;
    const struct mconfig *c = x->c;
    const int src = (int)L_SRC(label), dst = (int)L_DST(label), at = (int)L_INDEX(label);
    struct mchan *ch = &s->ch[src][dst];
    if (at >= ch->n) return STEP_DISABLED;
    struct mmsg m = ch->m[at];
    if (c->order == ORDER_GLOBAL && m.seq != 0) return STEP_DISABLED;
    memmove(&ch->m[at], &ch->m[at + 1], (size_t)(ch->n - 1 - at) * sizeof ch->m[0]);
    ch->n--;
    memset(&ch->m[ch->n], 0, sizeof ch->m[0]);
    if (c->order == ORDER_GLOBAL)
        for (int a = 0; a < c->nodes; a++)
            for (int b = 0; b < c->nodes; b++)
                for (int i = 0; i < s->ch[a][b].n; i++) s->ch[a][b].m[i].seq--;
    char ms[128] = "";
    if (x->info->log) {
        msg_str(c, &m, src, dst, ms, sizeof ms);
        logf_(x->info, "deliver %s", ms);
        if (at) logf_(x->info, " (overtaking %d sent before it on this pair)", at);
    }
    const int p = m.page;
    struct coh_msg cm = {.type = m.type,
                         .flags = m.flags,
                         .src = (uint8_t)src,
                         .dst = (uint8_t)dst,
                         .page = (uint64_t)p,
                         .arg = m.arg};
    struct coh_out o;
    o.n = 0;
    const char *why = NULL;
    x->hsrc = src;
    if (rc_msg_to_home(m.type)) {
        if (c->home[p] != dst)
            return fail(x->info, STEP_VIOLATION, "%s reached node%d, not the home of page %d",
                        rc_mtype_name(m.type), dst, p);
        /* The engine's flush of a page the home writes alone in place (engine.c). */
        if (m.type != RC_DIFF && m.type != RC_CLASS_ACK && src != dst &&
            rc_home_flush(&s->ns[dst][p], &s->x[dst][p])) {
            if (!c->one_copy) memcpy(s->store[p], s->copy[dst][p], MAXB);
            s->dir[p].written = 1;
            logf_(x->info, ", home flushes its copy into the store");
        }
        /* The engine's side of the shared directory (engine.c, deliver_coh). */
        if (c->onesided && !c->no_dir) {
            s->shw[p] |= (uint8_t)rc_dir_publish(&s->dir[p], &cm);
            s->shr[p] |= (uint8_t)rc_dir_publish_reader(&s->dir[p], &cm);
            rc_dir_readers_seen(&s->dir[p], s->shr[p]);
            rc_dir_writers_seen(&s->dir[p], s->shs[p]);
            rc_dir_watchers_seen(&s->dir[p], s->watch & ~(1u << c->home[p]));
        }
        if (rc_dir_recv(&s->dir[p], dst, &cm, &o, &why))
            return fail(x->info, STEP_VIOLATION, "COH_EPROTO from rc_dir_recv: %s (message %s)",
                        why ? why : "(no reason)", ms);
        return exec(x, -1, p, &o, &m);
    }
    if (m.type == RC_DIFF_ACK) {
        if (!s->outst[dst])
            return fail(x->info, STEP_VIOLATION, "node%d got an RC_DIFF_ACK it was not owed", dst);
        s->outst[dst]--;
    }
    uint8_t st = s->ns[dst][p];
    struct rc_node rx = s->x[dst][p];
    if (rc_node_recv(&st, &rx, dst, &cm, &o, &why))
        return fail(x->info, STEP_VIOLATION,
                    "COH_EPROTO from rc_node_recv: %s (message %s, node%d page %d was %s)",
                    why ? why : "(no reason)", ms, dst, p, coh_nstate_name(in->ns[dst][p]));
    int r = exec(x, dst, p, &o, &m);
    if (r != STEP_OK) return r;
    s->ns[dst][p] = st;
    s->x[dst][p] = rx;
    return check_node(x, dst, p);
}

int model_step(const struct mconfig *c, const struct mstate *in, unsigned label, struct mstate *out,
               struct stepinfo *info)
{
    const unsigned kind = L_KIND(label);
    const int n = (int)L_NODE(label), p = (int)L_PAGE(label), t = (int)L_THREAD(label);
    struct ctx x = {.c = c, .s = out, .info = info, .hsrc = -1};
    char ln[64];
    *out = *in;
    info->why[0] = 0;
    if (info->log) model_label_name(label, ln, sizeof ln);

    switch (kind) {
    case T_READ:
    case T_WRITE: {
        int w = kind == T_WRITE;
        if (busy(c, in, n, t) || !op_allowed(c, in, n)) return STEP_DISABLED;
        if (w ? written_byte(in, n, t) < 0 : !readable_bytes(c, in, n, t)) return STEP_DISABLED;
        if (c->bound >= 0) out->ops[n]++;
        logf_(info, "%s (%s)", ln, coh_nstate_name(in->ns[n][p]));
        return do_access(&x, n, p, w, t, 0);
    }
    case T_RETRY_R:
    case T_RETRY_W: {
        int w = kind == T_RETRY_W;
        if (!(in->pend[n][p] & pend_bit(w, t))) return STEP_DISABLED;
        logf_(info, "%s (%s)", ln, coh_nstate_name(in->ns[n][p]));
        return do_access(&x, n, p, w, t, 1);
    }
    case T_SYNC:
        if (busy(c, in, n, 0)) return STEP_DISABLED;
        if (p == 3) { /* dsm_acquire alone, at any point of the program (mconfig.acquire_op) */
            if (!c->acquire_op || !op_allowed(c, in, n)) return STEP_DISABLED;
            if (c->bound >= 0) out->ops[n]++;
            logf_(info, "%s", ln);
            return sync_pages(&x, n, 1);
        }
        if (p == 0) { /* lock */
            if (in->phase != PH_LOCK || in->holder != NOLOCK || !op_allowed(c, in, n))
                return STEP_DISABLED;
            if (c->bound >= 0) out->ops[n]++;
            logf_(info, "%s: acquire", ln);
            out->holder = (uint8_t)n;
            return sync_pages(&x, n, 1);
        }
        if (p == 1) { /* unlock */
            if (in->holder != n) return STEP_DISABLED;
            logf_(info, "%s: release", ln);
            out->sync[n] = SY_UNLOCKING;
            return sync_pages(&x, n, 0);
        }
        if (in->holder == n) return STEP_DISABLED;      /* unlock first */
        if (waiting(c, in, n, 1)) return STEP_DISABLED; /* both threads enter the barrier */
        logf_(info, "%s: release", ln);
        out->sync[n] = SY_BAR_REL;
        return sync_pages(&x, n, 0);
    case T_SYNC_GO:
        switch (in->sync[n]) {
        case SY_UNLOCKING:
            if (in->outst[n]) return STEP_DISABLED;
            logf_(info, "node%d: write-backs acknowledged, the lock is free", n);
            out->sync[n] = SY_IDLE;
            out->holder = NOLOCK;
            return STEP_OK;
        case SY_BAR_REL:
            if (in->outst[n]) return STEP_DISABLED;
            logf_(info, "node%d: write-backs acknowledged, arrives at the barrier", n);
            out->sync[n] = SY_BAR_IN;
            return STEP_OK;
        case SY_BAR_ACQ:
            logf_(info, "node%d leaves the barrier: acquire", n);
            out->sync[n] = SY_IDLE;
            return sync_pages(&x, n, 1);
        default:
            return STEP_DISABLED;
        }
    case T_BAR_DONE:
        for (int a = 0; a < c->nodes; a++)
            if (in->sync[a] != SY_BAR_IN) return STEP_DISABLED;
        out->phase = (uint8_t)((in->phase + 1) % PH_COUNT);
        for (int a = 0; a < c->nodes; a++) out->sync[a] = SY_BAR_ACQ;
        logf_(info, "the barrier opens: phase %s", phase_name[out->phase]);
        return STEP_OK;
    case T_DELIVER:
        return deliver(&x, in, label);
    }
    return STEP_DISABLED;
}

/* ---------------------------------------------------------------- invariants */

const char *model_invariants(const struct mconfig *c, const struct mstate *s, char *buf, size_t len)
{
    const int nb = nbytes(c);
    if (s->holder != NOLOCK && s->phase != PH_LOCK) {
        snprintf(buf, len, "node%u holds the lock in phase %s", s->holder, phase_name[s->phase]);
        return buf;
    }
    if (!model_quiescent(c, s)) return NULL;
    for (int p = 0; p < c->pages; p++) {
        if (!rc_dir_idle(&s->dir[p])) {
            snprintf(buf, len,
                     "quiescence: every channel is empty but the directory of page %d is busy", p);
            return buf;
        }
        int in_m = 0;
        for (int n = 0; n < c->nodes; n++) in_m |= s->ns[n][p] == COH_M;
        for (int n = 0; n < c->nodes; n++)
            if (s->ns[n][p] != COH_I && s->ns[n][p] != COH_S && s->ns[n][p] != COH_M) {
                snprintf(buf, len, "quiescence: node%d page %d is in transient state %s", n, p,
                         coh_nstate_name(s->ns[n][p]));
                return buf;
            }
        /* Nobody holds unreleased writes: the home store must have every write. */
        if (!in_m)
            for (int b = 0; b < nb; b++)
                if (s->store[p][b] != s->lastw[p][b]) {
                    snprintf(buf, len,
                             "quiescence: every write of page %d has been released, but the home "
                             "store holds v%u for byte %d, whose last write was v%u (a write-back "
                             "lost or applied out of order)",
                             p, s->store[p][b], b, s->lastw[p][b]);
                    return buf;
                }
        if (!s->dir[p].written)
            for (int b = 0; b < nb; b++)
                if (s->store[p][b]) {
                    snprintf(buf, len,
                             "page %d's directory says never written, its store holds v%u", p,
                             s->store[p][b]);
                    return buf;
                }
    }
    return NULL;
}

int model_quiescent(const struct mconfig *c, const struct mstate *s)
{
    int arrived = 0;
    for (int n = 0; n < c->nodes; n++) {
        for (int p = 0; p < c->pages; p++)
            if (s->pend[n][p]) return 0;
        if (s->sync[n] != SY_IDLE && s->sync[n] != SY_BAR_IN) return 0;
        arrived += s->sync[n] == SY_BAR_IN;
    }
    if (arrived == c->nodes) return 0; /* the barrier must open */
    for (int a = 0; a < c->nodes; a++)
        for (int b = 0; b < c->nodes; b++)
            if (s->ch[a][b].n) return 0;
    return 1;
}

/* ---------------------------------------------------------------- canonical form */

/* Renames each byte's values (0 stays 0) in order of first appearance: only equality of values
 * of the same byte matters. */
void model_canon(const struct mconfig *c, struct mstate *s)
{
    for (int p = 0; p < c->pages; p++)
        for (int b = 0; b < nbytes(c); b++) {
            uint8_t map[256] = {0};
            uint8_t next = 1;
#define CANON(v)                                                                                   \
    do {                                                                                           \
        if (v) {                                                                                   \
            if (!map[v]) map[v] = next++;                                                          \
            (v) = map[v];                                                                          \
        }                                                                                          \
    } while (0)
            /* The values must be renamed consistently: first collect, then rewrite. */
            uint8_t *slots[64];
            int k = 0;
            slots[k++] = &s->lastw[p][b];
            slots[k++] = &s->store[p][b];
            for (int n = 0; n < c->nodes; n++) {
                slots[k++] = &s->copy[n][p][b];
                slots[k++] = &s->twin[n][p][b];
            }
            for (int a = 0; a < c->nodes; a++)
                for (int d = 0; d < c->nodes; d++)
                    for (int i = 0; i < s->ch[a][d].n && k < 64; i++)
                        if (s->ch[a][d].m[i].page == p) slots[k++] = &s->ch[a][d].m[i].val[b];
            for (int i = 0; i < k; i++) CANON(*slots[i]);
#undef CANON
        }
}

/* ---------------------------------------------------------------- encoding */

static uint8_t dir_byte(uint64_t set)
{
    return (uint8_t)(set & 0xff);
}

_Static_assert(RC_KEEP_TWINNED < 16 && RC_REFRESHES < 16, "keep and hot share a byte");

int model_encode(const struct mconfig *c, const struct mstate *s, int proj, uint8_t *buf)
{
    int k = 0;
    const int nb = nbytes(c);
    for (int n = 0; n < c->nodes; n++) {
        for (int p = 0; p < c->pages; p++) {
            buf[k++] = s->ns[n][p];
            buf[k++] = dir_byte(s->x[n][p].writers);
            buf[k++] = (uint8_t)s->x[n][p].flags;
            buf[k++] = (uint8_t)(s->x[n][p].flags >> 8);
            buf[k++] = (uint8_t)(s->x[n][p].keep | s->x[n][p].hot << 4);
            buf[k++] = s->x[n][p].idle;
            buf[k++] = s->pend[n][p];
            buf[k++] = (uint8_t)(s->map[n][p] | s->hastwin[n][p] << 4);
            if (!proj)
                for (int b = 0; b < nb; b++) {
                    buf[k++] = s->copy[n][p][b];
                    buf[k++] = s->twin[n][p][b];
                }
        }
        if (!proj) buf[k++] = s->ops[n];
        buf[k++] = s->outst[n];
        buf[k++] = s->sync[n];
    }
    buf[k++] = s->phase;
    buf[k++] = s->holder;
    buf[k++] = s->watch;
    for (int p = 0; p < c->pages; p++) {
        const struct rc_dir *d = &s->dir[p];
        buf[k++] = dir_byte(d->readers);
        buf[k++] = dir_byte(d->writers);
        buf[k++] = dir_byte(d->acks_from);
        buf[k++] = dir_byte(d->pend_get);
        buf[k++] = dir_byte(d->pend_reg);
        buf[k++] = d->req;
        buf[k++] = d->req_type;
        buf[k++] = d->written;
        buf[k++] = d->rr;
        buf[k++] = s->shr[p];
        buf[k++] = s->shw[p];
        buf[k++] = s->shs[p];
        buf[k++] = dir_byte(d->watchers);
        buf[k++] = dir_byte(d->selfreg);
        if (!proj)
            for (int b = 0; b < nb; b++) {
                buf[k++] = s->store[p][b];
                buf[k++] = s->lastw[p][b];
            }
    }
    for (int a = 0; a < c->nodes; a++)
        for (int d = 0; d < c->nodes; d++) {
            const struct mchan *ch = &s->ch[a][d];
            buf[k++] = ch->n;
            for (int i = 0; i < ch->n; i++) {
                const struct mmsg *m = &ch->m[i];
                buf[k++] = m->type;
                buf[k++] = m->flags;
                buf[k++] = m->page;
                buf[k++] = m->arg;
                buf[k++] = m->dmask;
                if (!proj) {
                    for (int b = 0; b < nb; b++) buf[k++] = m->val[b];
                    buf[k++] = m->seq;
                }
            }
        }
    return k;
}

void model_decode(const struct mconfig *c, const uint8_t *buf, struct mstate *s)
{
    int k = 0;
    const int nb = nbytes(c);
    memset(s, 0, sizeof *s);
    for (int p = 0; p < MAXP; p++) rc_dir_init(&s->dir[p]);
    for (int n = 0; n < c->nodes; n++) {
        for (int p = 0; p < c->pages; p++) {
            s->ns[n][p] = buf[k++];
            s->x[n][p].writers = buf[k++];
            s->x[n][p].flags = buf[k++];
            s->x[n][p].flags |= (uint16_t)(buf[k++] << 8);
            s->x[n][p].keep = buf[k] & 0xf;
            s->x[n][p].hot = buf[k++] >> 4;
            s->x[n][p].idle = buf[k++];
            s->pend[n][p] = buf[k++];
            s->map[n][p] = buf[k] & 0xf;
            s->hastwin[n][p] = buf[k++] >> 4;
            for (int b = 0; b < nb; b++) {
                s->copy[n][p][b] = buf[k++];
                s->twin[n][p][b] = buf[k++];
            }
        }
        s->ops[n] = buf[k++];
        s->outst[n] = buf[k++];
        s->sync[n] = buf[k++];
    }
    s->phase = buf[k++];
    s->holder = buf[k++];
    s->watch = buf[k++];
    for (int p = 0; p < c->pages; p++) {
        struct rc_dir *d = &s->dir[p];
        d->readers = buf[k++];
        d->writers = buf[k++];
        d->acks_from = buf[k++];
        d->pend_get = buf[k++];
        d->pend_reg = buf[k++];
        d->req = buf[k++];
        d->req_type = buf[k++];
        d->written = buf[k++];
        d->rr = buf[k++];
        s->shr[p] = buf[k++];
        s->shw[p] = buf[k++];
        s->shs[p] = buf[k++];
        d->watchers = buf[k++];
        d->selfreg = buf[k++];
        for (int b = 0; b < nb; b++) {
            s->store[p][b] = buf[k++];
            s->lastw[p][b] = buf[k++];
        }
    }
    for (int a = 0; a < c->nodes; a++)
        for (int d = 0; d < c->nodes; d++) {
            struct mchan *ch = &s->ch[a][d];
            ch->n = buf[k++];
            for (int i = 0; i < ch->n; i++) {
                struct mmsg *m = &ch->m[i];
                m->type = buf[k++];
                m->flags = buf[k++];
                m->page = buf[k++];
                m->arg = buf[k++];
                m->dmask = buf[k++];
                for (int b = 0; b < nb; b++) m->val[b] = buf[k++];
                m->seq = buf[k++];
            }
        }
}

/* ---------------------------------------------------------------- rendering */

static size_t node_page_str(const struct mconfig *c, const struct mstate *s, int n, int p,
                            char *buf, size_t len)
{
    char v[32] = "", t[32] = "";
    vals_str(s->copy[n][p], nbytes(c), v, sizeof v);
    vals_str(s->twin[n][p], nbytes(c), t, sizeof t);
    return (size_t)snprintf(
        buf, len,
        "node%d page %d %s writers=%#llx%s%s%s%s%s%s%s%s%s keep=%u hot=%u%s%s copy=[%s]%s%s%s", n,
        p, coh_nstate_name(s->ns[n][p]), (unsigned long long)s->x[n][p].writers,
        s->x[n][p].flags & RC_N_REG ? " REG" : "", s->x[n][p].flags & RC_N_TWIN ? " TWIN" : "",
        s->x[n][p].flags & RC_N_STALE ? " STALE" : "",
        s->x[n][p].flags & RC_N_OWNED ? " OWNED" : "",
        s->x[n][p].flags & RC_N_AGAIN ? " AGAIN" : "", s->x[n][p].flags & RC_N_WREG ? " WREG" : "",
        s->x[n][p].flags & RC_N_INPLACE ? " INPLACE" : "",
        s->x[n][p].flags & RC_N_DROPPED ? " DROPPED" : "",
        s->x[n][p].flags & RC_N_SELFREG ? " SELFREG" : "", (unsigned)s->x[n][p].keep,
        (unsigned)s->x[n][p].hot, s->pend[n][p] & (PEND_R | PEND_W) ? " (waiting)" : "",
        s->pend[n][p] & (PEND_R2 | PEND_W2) ? " (thread 2 waiting)" : "", s->map[n][p] ? v : "-",
        s->hastwin[n][p] ? " twin=[" : "", s->hastwin[n][p] ? t : "", s->hastwin[n][p] ? "]" : "");
}

static size_t dir_str(const struct mconfig *c, const struct mstate *s, int p, char *buf, size_t len)
{
    const struct rc_dir *d = &s->dir[p];
    char v[32], w[32];
    vals_str(s->store[p], nbytes(c), v, sizeof v);
    vals_str(s->lastw[p], nbytes(c), w, sizeof w);
    return (size_t)snprintf(
        buf, len,
        "dir[%d] readers=%#llx writers=%#llx%s acks_from=%#llx pend=%#llx/%#llx "
        "selfreg=%#llx shared readers=%#x writers=%#x+%#x watchers=%#llx store=[%s] last "
        "writes=[%s]",
        p, (unsigned long long)d->readers, (unsigned long long)d->writers,
        d->written ? "" : " never-written", (unsigned long long)d->acks_from,
        (unsigned long long)d->pend_get, (unsigned long long)d->pend_reg,
        (unsigned long long)d->selfreg, s->shr[p], s->shw[p], s->shs[p],
        (unsigned long long)d->watchers, v, w);
}

void model_describe(const struct mconfig *c, const struct mstate *s, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "  phase %s, lock %s\n", phase_name[s->phase],
                                s->holder == NOLOCK ? "free" : "held");
    for (int n = 0; n < c->nodes && o < len; n++) {
        o += (size_t)snprintf(buf + o, len - o, "  node%d: %s, %u write-backs unacknowledged\n", n,
                              sync_name[s->sync[n]], s->outst[n]);
        for (int p = 0; p < c->pages && o < len; p++) {
            o += (size_t)snprintf(buf + o, len - o, "    ");
            if (o < len) o += node_page_str(c, s, n, p, buf + o, len - o);
            if (o < len) o += (size_t)snprintf(buf + o, len - o, "\n");
        }
    }
    for (int p = 0; p < c->pages && o < len; p++) {
        o += (size_t)snprintf(buf + o, len - o, "  ");
        if (o < len) o += dir_str(c, s, p, buf + o, len - o);
        if (o < len) o += (size_t)snprintf(buf + o, len - o, "\n");
    }
    for (int a = 0; a < c->nodes; a++)
        for (int d = 0; d < c->nodes; d++)
            for (int i = 0; i < s->ch[a][d].n && o < len; i++) {
                char ms[128];
                msg_str(c, &s->ch[a][d].m[i], a, d, ms, sizeof ms);
                o += (size_t)snprintf(buf + o, len - o, "  in flight: %s\n", ms);
            }
}

void model_diff(const struct mconfig *c, const struct mstate *a, const struct mstate *b, char *buf,
                size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (int n = 0; n < c->nodes; n++)
        for (int p = 0; p < c->pages; p++)
            if (a->ns[n][p] != b->ns[n][p] || memcmp(&a->x[n][p], &b->x[n][p], sizeof a->x[n][p]) ||
                a->map[n][p] != b->map[n][p] || memcmp(a->copy[n][p], b->copy[n][p], MAXB) ||
                a->hastwin[n][p] != b->hastwin[n][p] || a->pend[n][p] != b->pend[n][p]) {
                if (o < len) o += (size_t)snprintf(buf + o, len - o, " | ");
                if (o < len) o += node_page_str(c, b, n, p, buf + o, len - o);
            }
    for (int p = 0; p < c->pages; p++)
        if (memcmp(&a->dir[p], &b->dir[p], sizeof a->dir[p]) ||
            memcmp(a->store[p], b->store[p], MAXB)) {
            if (o < len) o += (size_t)snprintf(buf + o, len - o, " | ");
            if (o < len) o += dir_str(c, b, p, buf + o, len - o);
        }
}

/*
 * history.c - the coherence checker for operation histories (history.h).
 *
 * What it checks: per-location coherence - that all threads agree on one order of the
 * writes to each location, consistent with every thread's program order, in which every
 * read returns the latest write before it - and RMW atomicity - that nothing is written
 * between the write an RMW read and the RMW's own write (no lost update). That is exactly what
 * a page-based DSM with single-writer/multiple-reader pages must provide (docs/memory-model.md,
 * point 1 and 3). Why that catches a broken DSM: a stale read-only copy that survived an
 * invalidation makes a thread read an overwritten value after having seen the newer one (or
 * after another thread that it already heard from saw it); a page installed from an old
 * backing copy (a lost write-back) makes a write vanish or come back; two nodes holding a
 * page writable at once make two RMWs read the same value. Each of these is a cycle in the
 * graph below, a value read twice by RMWs, or a value no write wrote.
 *
 * How (the standard "memory coherence with a read mapping" check, which is exact, not just
 * sound, because written values are unique). For one location:
 *   1. Every write w (the initial value 0 is a virtual first write) starts a cluster: w and
 *      the reads that read from w. In any valid order of the location's operations, each
 *      cluster is contiguous and starts with its write, so the question is only how the
 *      clusters are ordered.
 *   2. An RMW reads from w' and writes w: its cluster must come right after w''s (nothing in
 *      between). Two RMWs reading the same w' is a violation (lost update); these "immediately
 *      after" links glue clusters into chains, which are placed as one block.
 *   3. Program order: for consecutive operations a, b of one thread on the location, a's
 *      cluster must not come after b's (same cluster: a read must not precede the cluster's
 *      own write in that thread). Within a chain that is a position check; between chains it
 *      is an edge of a graph on chains. The chain with the initial value comes first and
 *      the one with the final value last (edges to/from every other chain).
 *   4. The history is coherent for the location iff no check fails and that graph is
 *      acyclic: a topological order of the chains, each expanded into its clusters, each
 *      cluster "write, then its reads in program order", is a valid total order. A cycle is
 *      reported with the operations that created its edges.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

#define NONE UINT32_MAX

/* An operation of one location: thread and index in that thread's log. */
typedef struct ref {
    uint32_t th, idx;
} ref_t;

/* An edge between chains, and why it is there (the two operations, or a marker). */
typedef struct edge {
    uint32_t from, to;
    ref_t a, b;
    int why; /* 0: program order a -> b; 1: initial value first; 2: final value last */
} edge_t;

typedef struct ctx {
    const hist_thread_t *th;
    FILE *out;
    int max_reports;
    size_t violations;
    const uint64_t *final;
} ctx_t;

static const hev_t *ev_of(const ctx_t *c, ref_t r)
{
    return &c->th[r.th].ev[r.idx];
}

static void violation(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(ctx_t *c, const char *fmt, ...)
{
    c->violations++;
    if (!c->out || (int)c->violations > c->max_reports) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(c->out, "VIOLATION: ");
    vfprintf(c->out, fmt, ap);
    fprintf(c->out, "\n");
    va_end(ap);
}

static const char *kind_name(int k)
{
    switch (k) {
    case HK_READ:
        return "read";
    case HK_WRITE:
        return "write";
    case HK_FADD:
        return "fetch_add";
    case HK_CAS:
        return "cas";
    case HK_XCHG:
        return "xchg";
    default:
        return "?";
    }
}

/* "node 1 thread 0 op 17 (cas old=0x.. new=0x..)" */
static void describe(const ctx_t *c, ref_t r, char *buf, size_t len)
{
    if (r.th == NONE) {
        snprintf(buf, len, "the initial value 0");
        return;
    }
    const hev_t *e = ev_of(c, r);
    const hist_thread_t *t = &c->th[r.th];
    int n = snprintf(buf, len, "node %d thread %d op %u (%s", t->node, t->thread, r.idx,
                     kind_name(e->kind));
    if (n < 0 || (size_t)n >= len) return;
    if (e->kind == HK_READ)
        snprintf(buf + n, len - (size_t)n, " %#" PRIx64 ")", e->rd);
    else if (e->kind == HK_WRITE)
        snprintf(buf + n, len - (size_t)n, " %#" PRIx64 ")", e->wr);
    else if (e->kind == HK_CAS && !e->ok)
        snprintf(buf + n, len - (size_t)n, " failed, read %#" PRIx64 ")", e->rd);
    else
        snprintf(buf + n, len - (size_t)n, " old %#" PRIx64 " new %#" PRIx64 ")", e->rd, e->wr);
}

/* "location L: <a><mid><b><tail>", a and b described. */
static void violation_pair(ctx_t *c, int loc, ref_t a, const char *mid, ref_t b, const char *tail)
{
    char x[160], y[160];
    describe(c, a, x, sizeof x);
    describe(c, b, y, sizeof y);
    violation(c, "location %d: %s%s%s%s", loc, x, mid, y, tail);
}

/* ---------------------------------------------------------------- value -> write map */

typedef struct vmap {
    uint64_t *key;
    uint32_t *val;
    size_t cap;
} vmap_t;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static bool vmap_init(vmap_t *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n + 16) m->cap *= 2;
    m->key = malloc(m->cap * sizeof *m->key);
    m->val = malloc(m->cap * sizeof *m->val);
    if (!m->key || !m->val) return false;
    for (size_t i = 0; i < m->cap; i++) m->val[i] = NONE;
    return true;
}

static void vmap_free(vmap_t *m)
{
    free(m->key); /* free(NULL) is fine: vmap_init may not have run */
    free(m->val);
}

/* Returns the slot of key: val[slot] == NONE if absent. */
static size_t vmap_slot(const vmap_t *m, uint64_t key)
{
    size_t s = mix(key) & (m->cap - 1);
    while (m->val[s] != NONE && m->key[s] != key) s = (s + 1) & (m->cap - 1);
    return s;
}

static uint32_t vmap_get(const vmap_t *m, uint64_t key)
{
    return m->val[vmap_slot(m, key)];
}

/* ---------------------------------------------------------------- one location */

typedef struct loc_work {
    ref_t *ops; /* the location's operations, thread by thread, in program order */
    size_t nops;
    uint32_t *tstart; /* ops of thread t: [tstart[t], tstart[t + 1]) */
} loc_work_t;

/* Finds and reports one cycle among the chains the topological sort left over (those with
 * indeg > 0): each has an incoming edge from another one left over, so walking backwards
 * along such edges closes a cycle. */
static void report_cycle(ctx_t *c, int loc, uint32_t nsup, const edge_t *edges, size_t nedges,
                         const uint32_t *indeg)
{
    if (!c->out || (int)c->violations > c->max_reports) return;
    uint32_t *in = malloc(nsup * sizeof *in); /* an edge into each chain from a leftover one */
    uint32_t *seen = malloc(nsup * sizeof *seen);
    if (!in || !seen) goto out;
    for (uint32_t s = 0; s < nsup; s++) in[s] = seen[s] = NONE;
    for (size_t e = 0; e < nedges; e++)
        if (indeg[edges[e].from] && indeg[edges[e].to]) in[edges[e].to] = (uint32_t)e;
    uint32_t cur = NONE;
    for (uint32_t s = 0; s < nsup && cur == NONE; s++)
        if (indeg[s] && in[s] != NONE) cur = s;
    while (cur != NONE && seen[cur] == NONE && in[cur] != NONE) {
        seen[cur] = 1;
        cur = edges[in[cur]].from;
    }
    if (cur == NONE || in[cur] == NONE) goto out;
    fprintf(c->out,
            "  location %d: these operations force a cycle in the order of its writes "
            "(read each line as: X must come before Y):\n",
            loc);
    uint32_t start = cur;
    int lines = 0;
    do {
        const edge_t *e = &edges[in[cur]];
        char a[160], b[160];
        describe(c, e->a, a, sizeof a);
        describe(c, e->b, b, sizeof b);
        const char *why = e->why == 0   ? "program order"
                          : e->why == 1 ? "the initial value comes first"
                                        : "the final value comes last";
        fprintf(c->out, "    %s  before  %s  (%s)\n", a, b, why);
        cur = e->from;
    } while (cur != start && ++lines < 32);
out:
    free(in);
    free(seen);
}

/* Checks one location (step numbers as in the comment at the top). Returns false if out of
 * memory. */
static bool check_loc(ctx_t *c, int nth, int loc, const loc_work_t *w, hist_stats_t *st)
{
    const size_t n = w->nops;
    size_t nw = 1; /* write 0 is the initial value, write k >= 1 an operation */
    for (size_t i = 0; i < n; i++) nw += hev_writes(ev_of(c, w->ops[i])) != 0;
    const size_t cap = n + 2 * nw + 4; /* edges: program order, initial first, final last */
    ref_t *wref = malloc(nw * sizeof *wref);
    uint32_t *wcl = malloc((n + 1) * sizeof *wcl); /* op -> the write it made, or NONE */
    uint32_t *rcl = malloc((n + 1) * sizeof *rcl); /* op -> the write it read, or NONE */
    uint32_t *next = malloc(nw * sizeof *next), *prev = malloc(nw * sizeof *prev);
    uint32_t *sup = malloc(nw * sizeof *sup), *pos = malloc(nw * sizeof *pos);
    uint32_t *chead = malloc(nw * sizeof *chead), *ctail = malloc(nw * sizeof *ctail);
    uint32_t *indeg = calloc(nw, sizeof *indeg), *estart = calloc(nw + 1, sizeof *estart);
    uint32_t *fill = calloc(nw, sizeof *fill), *order = malloc(nw * sizeof *order);
    edge_t *edges = malloc(cap * sizeof *edges);
    uint32_t *eidx = malloc(cap * sizeof *eidx);
    vmap_t m = {0};
    bool mem = wref && wcl && rcl && next && prev && sup && pos && chead && ctail && indeg &&
               estart && fill && order && edges && eidx && vmap_init(&m, nw);
    if (!mem) goto out;

    /* 1. Writes, by value. */
    wref[0] = (ref_t){NONE, 0};
    {
        size_t s0 = vmap_slot(&m, 0);
        m.key[s0] = 0;
        m.val[s0] = 0;
    }
    nw = 1;
    for (size_t i = 0; i < n; i++) {
        const hev_t *e = ev_of(c, w->ops[i]);
        wcl[i] = rcl[i] = NONE;
        if (!hev_writes(e)) continue;
        size_t s = vmap_slot(&m, e->wr);
        if (m.val[s] == NONE) {
            m.key[s] = e->wr;
            m.val[s] = (uint32_t)nw;
            wref[nw] = w->ops[i];
            wcl[i] = (uint32_t)nw++;
            continue;
        }
        char a[160], b[160];
        describe(c, w->ops[i], a, sizeof a);
        describe(c, wref[m.val[s]], b, sizeof b);
        const hev_t *o = m.val[s] ? ev_of(c, wref[m.val[s]]) : NULL;
        if (o && hev_reads(e) && hev_reads(o) && e->rd == o->rd)
            violation(c, "location %d: lost update: %s and %s both read %#" PRIx64, loc, b, a,
                      e->rd);
        else
            violation(c, "location %d: %s and %s wrote the same value (values are unique)", loc, b,
                      a);
    }

    /* 2. Reads-from; RMWs glue the write they read to their own. */
    for (uint32_t k = 0; k < nw; k++) next[k] = prev[k] = NONE;
    for (size_t i = 0; i < n; i++) {
        const hev_t *e = ev_of(c, w->ops[i]);
        if (!hev_reads(e)) continue;
        uint32_t src = vmap_get(&m, e->rd);
        char a[160], b[160];
        if (src == NONE) {
            describe(c, w->ops[i], a, sizeof a);
            violation(c, "location %d: %s: the value %#" PRIx64 " was never written there", loc, a,
                      e->rd);
            continue;
        }
        rcl[i] = src;
        if (src == 0) {
            st->rf_init++;
        } else {
            if (wref[src].th != w->ops[i].th) st->rf_other++;
            if (c->th[wref[src].th].node != c->th[w->ops[i].th].node) st->rf_remote++;
        }
        if (wcl[i] == NONE) continue; /* a read or a failed CAS, or a write already reported */
        if (src == wcl[i]) {
            describe(c, w->ops[i], a, sizeof a);
            violation(c, "location %d: %s read the value it wrote", loc, a);
        } else if (next[src] != NONE) {
            describe(c, wref[next[src]], a, sizeof a);
            describe(c, w->ops[i], b, sizeof b);
            violation(c,
                      "location %d: lost update: %s and %s both read %#" PRIx64
                      " (an RMW was not atomic)",
                      loc, a, b, e->rd);
        } else {
            next[src] = wcl[i];
            prev[wcl[i]] = src;
        }
    }

    /* 3. Chains of writes glued by RMWs, and each write's position in its chain. */
    uint32_t nsup = 0;
    for (uint32_t k = 0; k < nw; k++) sup[k] = NONE;
    for (uint32_t k = 0; k < nw; k++) {
        if (prev[k] != NONE) continue;
        uint32_t p = 0;
        for (uint32_t x = k; x != NONE; x = next[x]) sup[x] = nsup, pos[x] = p++;
        nsup++;
    }
    for (uint32_t k = 0; k < nw; k++) {
        if (sup[k] != NONE) continue;
        char a[160];
        describe(c, wref[k], a, sizeof a);
        violation(c, "location %d: RMWs read each other's values in a circle (one is %s)", loc, a);
        /* Cut the circle where the walk closes it, so that the chain has a head and a
         * tail like any other: the ordering steps below need both. */
        uint32_t p = 0, last = k;
        for (uint32_t x = k; x != NONE && sup[x] == NONE; x = next[x])
            sup[x] = nsup, pos[x] = p++, last = x;
        ctail[nsup++] = last;
    }
    st->chains += nsup;
    for (uint32_t k = 0; k < nw; k++) {
        if (pos[k] == 0) chead[sup[k]] = k;
        if (next[k] == NONE) ctail[sup[k]] = k;
    }

    /* 4. Program order, thread by thread, as positions within a chain or edges between
     * chains; then the initial value's chain first and the final value's last. */
    size_t ne = 0;
    for (int t = 0; t < nth; t++) {
        for (uint32_t a = w->tstart[t]; a + 1 < w->tstart[t + 1]; a++) {
            uint32_t b = a + 1;
            uint32_t ca = wcl[a] != NONE ? wcl[a] : rcl[a], cb = wcl[b] != NONE ? wcl[b] : rcl[b];
            if (ca == NONE || cb == NONE) continue; /* already reported */
            if (ca == cb) {
                if (wcl[a] == NONE && wcl[b] != NONE)
                    violation_pair(c, loc, w->ops[a],
                                   " read the value that the same thread only wrote afterwards, "
                                   "in ",
                                   w->ops[b], "");
            } else if (sup[ca] != sup[cb]) {
                edges[ne++] = (edge_t){sup[ca], sup[cb], w->ops[a], w->ops[b], 0};
            } else if (pos[ca] > pos[cb]) {
                violation_pair(c, loc, w->ops[a], ", then ", w->ops[b],
                               ", which is older along a chain of RMWs (the location went "
                               "backwards)");
            }
        }
    }
    for (uint32_t s = 0; s < nsup; s++)
        if (s != sup[0]) edges[ne++] = (edge_t){sup[0], s, wref[0], wref[chead[s]], 1};
    if (c->final) {
        uint32_t fw = vmap_get(&m, c->final[loc]);
        char a[160];
        if (fw == NONE) {
            violation(c, "location %d: its final value %#" PRIx64 " was never written", loc,
                      c->final[loc]);
        } else {
            if (next[fw] != NONE) {
                describe(c, wref[next[fw]], a, sizeof a);
                violation(c, "location %d: its final value %#" PRIx64 " was overwritten by %s", loc,
                          c->final[loc], a);
            }
            for (uint32_t s = 0; s < nsup; s++)
                if (s != sup[fw]) edges[ne++] = (edge_t){s, sup[fw], wref[ctail[s]], wref[fw], 2};
        }
    }

    /* 5. Topological sort of the chains (Kahn): coherent iff every chain gets sorted. */
    for (size_t e = 0; e < ne; e++) {
        indeg[edges[e].to]++;
        estart[edges[e].from + 1]++;
    }
    for (uint32_t s = 0; s < nsup; s++) estart[s + 1] += estart[s];
    for (size_t e = 0; e < ne; e++) {
        uint32_t f = edges[e].from;
        eidx[estart[f] + fill[f]++] = (uint32_t)e;
    }
    uint32_t head = 0, tail = 0;
    for (uint32_t s = 0; s < nsup; s++)
        if (!indeg[s]) order[tail++] = s;
    while (head < tail) {
        uint32_t s = order[head++];
        for (uint32_t k = estart[s]; k < estart[s + 1]; k++)
            if (--indeg[edges[eidx[k]].to] == 0) order[tail++] = edges[eidx[k]].to;
    }
    if (tail != nsup) {
        violation(c,
                  "location %d: no order of its writes agrees with every thread's program "
                  "order (%u of its %u write chains cannot be placed)",
                  loc, nsup - tail, nsup);
        report_cycle(c, loc, nsup, edges, ne, indeg);
    }
out:
    vmap_free(&m);
    free(wref), free(wcl), free(rcl), free(next), free(prev), free(sup), free(pos);
    free(chead), free(ctail), free(indeg), free(estart), free(fill), free(order), free(edges);
    free(eidx);
    return mem;
}

size_t hist_check(const hist_thread_t *th, int nth, int nloc, const uint64_t *final, FILE *out,
                  int max_reports, hist_stats_t *stp)
{
    hist_stats_t st;
    memset(&st, 0, sizeof st);
    ctx_t c = {.th = th, .out = out, .max_reports = max_reports, .final = final};
    /* Bucket every operation by location, keeping each thread's program order. */
    size_t *count = calloc((size_t)nloc + 1, sizeof *count);
    uint32_t **tstart = calloc((size_t)nloc, sizeof *tstart);
    ref_t **ops = calloc((size_t)nloc, sizeof *ops);
    bool oom = !count || !tstart || !ops;
    for (int t = 0; t < nth && !oom; t++) {
        for (size_t i = 0; i < th[t].n; i++) {
            const hev_t *e = &th[t].ev[i];
            st.ops++;
            if (e->loc >= nloc || e->kind < HK_READ || e->kind > HK_XCHG) {
                char a[160];
                describe(&c, (ref_t){(uint32_t)t, (uint32_t)i}, a, sizeof a);
                violation(&c, "%s: bad location %u or kind %u in the log", a, e->loc, e->kind);
                continue;
            }
            count[e->loc]++;
            st.reads += hev_reads(e) != 0;
            st.writes += hev_writes(e) != 0;
            st.rmws += hev_reads(e) && hev_writes(e);
            st.cas_failed += e->kind == HK_CAS && !e->ok;
        }
    }
    for (int l = 0; l < nloc && !oom; l++) {
        ops[l] = malloc((count[l] ? count[l] : 1) * sizeof *ops[l]);
        tstart[l] = malloc(((size_t)nth + 1) * sizeof *tstart[l]);
        oom = !ops[l] || !tstart[l];
    }
    if (!oom) {
        size_t *fill = calloc((size_t)nloc, sizeof *fill);
        oom = !fill;
        for (int t = 0; t < nth && !oom; t++) {
            for (int l = 0; l < nloc; l++) tstart[l][t] = (uint32_t)fill[l];
            for (size_t i = 0; i < th[t].n; i++) {
                const hev_t *e = &th[t].ev[i];
                if (e->loc >= nloc || e->kind < HK_READ || e->kind > HK_XCHG) continue;
                ops[e->loc][fill[e->loc]++] = (ref_t){(uint32_t)t, (uint32_t)i};
            }
        }
        for (int l = 0; l < nloc && !oom; l++) tstart[l][nth] = (uint32_t)fill[l];
        free(fill);
    }
    for (int l = 0; l < nloc && !oom; l++) {
        loc_work_t w = {.ops = ops[l], .nops = count[l], .tstart = tstart[l]};
        oom = !check_loc(&c, nth, l, &w, &st);
    }
    if (oom) violation(&c, "the checker ran out of memory");
    for (int l = 0; l < nloc && ops && tstart; l++) {
        free(ops[l]);
        free(tstart[l]);
    }
    free(ops);
    free(tstart);
    free(count);
    if (out && (int)c.violations > max_reports)
        fprintf(out, "(%zu more violations not shown)\n", c.violations - (size_t)max_reports);
    st.violations = c.violations;
    if (stp) *stp = st;
    return c.violations;
}

/*
 * litmus_rc.c - litmus tests on release-consistent memory (DSM_RC), run across nodes thousands
 * of times each, with an outcome histogram per test and layout; any outcome the model forbids
 * fails the run. litmus.c does the same for sequentially consistent memory; this file keeps its
 * structure (layouts, role barrier, random page-taking, histograms) and adds synchronisation.
 *
 * What it checks. docs/memory-model.md (DSM_RC) promises: a data-race-free program sees
 * sequential consistency on RC memory, where the synchronisation is unlock -> lock of one
 * dsm_mutex, dsm_barrier, or dsm_release -> a C11 atomic flag in SC memory -> dsm_acquire; and
 * a racy program may see old or new values (each node reads its cached copy until its next
 * acquire), but never a value nobody wrote, nor a byte mixed from two writes. The variables
 * x, y (and the outcome registers' meaning) are those of litmus.c; all variables live in RC
 * memory, mutexes and flags in SC memory. "-" is a register that was not read (the program
 * reads it only when that read is race-free).
 *
 * Data-race-free tests (SC is the only allowed behaviour):
 *   MP+lock    P0: x=1; lock m; y=1; unlock m      P1: lock m; r1=y; unlock m; if r1: r2=x
 *              allowed r1=0,r2=- / r1=1,r2=1; forbidden r1=1,r2=0 (the lock's hand-over did
 *              not carry x's write: a stale copy survived the acquire, or the diff was lost)
 *   MP+bar     P0: x=1; y=1; barrier               P1: barrier; r1=y; r2=x
 *              allowed only r1=1,r2=1
 *   MP+relacq  P0: x=1; y=1; dsm_release; flag=1 (seq_cst store, SC memory)
 *              P1: wait for flag; dsm_acquire; r1=y; r2=x
 *              allowed only r1=1,r2=1
 *   SB+lock    P0: lock mx; x=1; unlock mx; lock my; r1=y; unlock my
 *              P1: lock my; y=1; unlock my; lock mx; r2=x; unlock mx
 *              allowed 0,1 / 1,0 / 1,1; forbidden r1=0,r2=0 (a store buffer the size of a
 *              page: each node kept its write until after it had read the other's variable)
 *   SB+bar     P0: x=1; barrier; r1=y              P1: y=1; barrier; r2=x
 *              allowed only r1=1,r2=1
 *   IRIW+lock  P0: lock mx; x=1; unlock mx         P1: lock my; y=1; unlock my
 *              P2: lock mx; r1=x; unlock mx; lock my; r2=y; unlock my
 *              P3: lock my; r3=y; unlock my; lock mx; r4=x; unlock mx
 *              forbidden r1=1,r2=0,r3=1,r4=0 (the readers disagree on the order of the writes)
 *   IRIW+bar   P0: x=1   P1: y=1   barrier   P2: r1=x; r2=y   P3: r3=y; r4=x
 *              allowed only all four 1
 * Racy tests (they document what a racy program may see; pass unless a value nobody wrote
 * appears):
 *   MP+norel   as MP+relacq without P0's dsm_release: r1,r2 any of 0/1 (P0's writes may stay
 *              in its cache, so P1 may see y's write and not x's, or neither)
 *   MP+noacq   as MP+relacq without P1's dsm_acquire: r1,r2 any of 0/1 (P1 may read a copy it
 *              cached before the writes)
 *   WW+racy    P0: x=0x0101..01   P1: x=0x0202..02 (8 bytes, same interval)   barrier
 *              P0: r1=x   P1: r2=x        every byte of r1 is 1 or 2 (one write or the other
 *              per byte, never a mixture within a byte) and r1=r2 (after the barrier the home
 *              keeps one value and both nodes read it)
 *
 * How (as litmus.c): ITERS iterations per layout, each on fresh zeroed slots (64 bytes per
 * iteration per variable), in two layouts - diff-homes (x and y on pages homed on different
 * nodes, homes rotating every 64 iterations) and same-page (x and y on one page, so the page
 * has several writers and its diffs must merge). Before its part each role takes a random copy
 * of each variable's page: read-only (reading its own scratch word of the slot) or writable
 * (writing its scratch word) - never the variable itself, so the page-taking is race-free and
 * the DRF tests stay DRF. That is what lets a stale copy kept across an acquire show: the
 * reader holds the page before the writer writes it. Roles are mapped onto nodes round-robin
 * (role r on node r % N). Lock and release/acquire tests run each role as a thread, and the
 * roles meet before every iteration at a role barrier in SC memory (C11 atomics: it is *not* a
 * synchronisation for RC memory, it only lines the roles up; every variable is fresh, so no
 * ordering between iterations is needed). Barrier tests run on every node's main thread:
 * each node runs its roles' parts before the barrier, calls dsm_barrier (every node does, one
 * thread per node), then its roles' parts after it. Every outcome that is not explicitly
 * allowed - including a value nobody wrote - counts as forbidden; node 0 prints a histogram
 * per test and layout and exits 1 if any forbidden outcome was seen.
 *
 * Usage: litmus_rc [-t TEST[,TEST...]|all] [-l diff|same|both] [-i ITERS] [-d DELAY_US]
 *                  [-s SEED] [-X] [-L]
 *   -X expects a broken protocol (the self-test with a library built with
 *   UFDSM_INJECT_RC_BUG): succeeds only if some forbidden outcome was seen. -L lists the tests.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mn.h"

#define MAXV     2  /* shared variables per iteration */
#define MAXO     4  /* registers per outcome */
#define MAXROLES 4  /* roles per test */
#define SLOT     64 /* bytes of each variable array per iteration */
#define SLOTW    (SLOT / 8)
#define MAXHIST  64 /* distinct outcomes kept per run */
#define SCRATCH  4  /* words 4..7 of a slot: role r reads or writes word 4 + r to take the page */
#define NOTREAD  UINT64_MAX
#define NMUTEX   8 /* the pool; mutex k of iteration i is pool[(i + k) % NMUTEX] */

/* ---------------------------------------------------------------- per-thread helpers */

typedef struct rt {
    mn_rng_t rng;
    uint64_t delay_ns;
} rt_t;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits ns nanoseconds, yielding the CPU: a busy spin would keep this node's protocol engine
 * off the CPU on a small machine (see litmus.c). */
static void spin_ns(uint64_t ns)
{
    if (!ns) return;
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < ns) sched_yield();
}

/* In [0, delay_ns], skewed towards short pauses, as litmus.c. */
static uint64_t rand_delay(rt_t *t)
{
    double u = (double)(mn_rand(&t->rng) >> 11) / 9007199254740992.0;
    return (uint64_t)(u * u * (double)t->delay_ns);
}

static inline void gap(rt_t *t)
{
    uint64_t r = mn_rand(&t->rng);
    if ((r & 3) == 0) spin_ns((r >> 8) % (t->delay_ns / 4 + 1));
}

#define LD(p)       (*(volatile uint64_t *)(p))
#define ST(p, x)    (*(volatile uint64_t *)(p) = (x))
#define AT(p)       ((_Atomic uint64_t *)(p))
#define LD_SC(p)    atomic_load_explicit(AT(p), memory_order_seq_cst)
#define ST_SC(p, x) atomic_store_explicit(AT(p), (x), memory_order_seq_cst)

/* ---------------------------------------------------------------- the tests */

/* What a role's part sees of one iteration. */
typedef struct ctx {
    uint64_t *const *v;  /* v[k]: variable k of this iteration (RC memory) */
    uint64_t *r;         /* this iteration's registers (each role writes only its own) */
    dsm_mutex_t *m[2];   /* mutexes of this iteration (SC memory) */
    _Atomic uint64_t *f; /* this iteration's flag (SC memory) */
    const char *what;    /* test, layout and iteration, for a timeout's message */
    rt_t *t;
} ctx_t;

typedef void role_fn(ctx_t *c);

enum { K_THREADS, K_BARRIER };

typedef struct test {
    const char *name;
    int kind; /* K_THREADS: roles are threads; K_BARRIER: parts around one dsm_barrier */
    bool racy;
    int roles, vars, regs;
    int reg_role[MAXO];
    const char *names[MAXO];
    role_fn *pre[MAXROLES];  /* K_THREADS: the part; K_BARRIER: before the barrier */
    role_fn *post[MAXROLES]; /* K_BARRIER: after the barrier */
    bool (*allowed)(const uint64_t *o);
    const char *forbidden; /* the canonical forbidden outcome, for the report */
} test_t;

#define X (c->v[0])
#define Y (c->v[1])
#define R (c->r)

static void lock(dsm_mutex_t *m)
{
    CHECK(dsm_mutex_lock(m) == 0, "dsm_mutex_lock failed (see the log line above)");
}
static void unlock(dsm_mutex_t *m)
{
    CHECK(dsm_mutex_unlock(m) == 0, "dsm_mutex_unlock failed (see the log line above)");
}
static void wait_flag(ctx_t *c)
{
    MN_WAIT_UNTIL(LD_SC(c->f) != 0,
                  "%s: the reader waited %.0f s for the writer's flag (the writer's node is "
                  "stuck or lost)",
                  c->what, MN_WAIT_SECONDS);
}
static bool is1(uint64_t a)
{
    return a == 1;
}
static bool in01(uint64_t a)
{
    return a <= 1;
}
static void nothing(ctx_t *c)
{
    (void)c;
}

/* MP+lock */
static void mpl_p0(ctx_t *c)
{
    ST(X, 1);
    gap(c->t);
    lock(c->m[0]);
    ST(Y, 1);
    unlock(c->m[0]);
}
static void mpl_p1(ctx_t *c)
{
    lock(c->m[0]);
    R[0] = LD(Y);
    unlock(c->m[0]);
    gap(c->t);
    R[1] = R[0] ? LD(X) : NOTREAD; /* x only after seeing y=1: then it is race-free */
}
static bool mpl_ok(const uint64_t *o)
{
    return (o[0] == 0 && o[1] == NOTREAD) || (o[0] == 1 && o[1] == 1);
}

/* MP+bar */
static void mpb_p0(ctx_t *c)
{
    ST(X, 1);
    gap(c->t);
    ST(Y, 1);
}
static void mpb_p1(ctx_t *c)
{
    R[0] = LD(Y);
    gap(c->t);
    R[1] = LD(X);
}
static bool all1(const uint64_t *o)
{
    return is1(o[0]) && is1(o[1]);
}

/* MP+relacq and its racy variants */
static void mpra_p0(ctx_t *c)
{
    ST(X, 1);
    gap(c->t);
    ST(Y, 1);
    dsm_release();
    ST_SC(c->f, 1);
}
static void mpra_p1(ctx_t *c)
{
    wait_flag(c);
    dsm_acquire();
    R[0] = LD(Y);
    gap(c->t);
    R[1] = LD(X);
}
static void mpnorel_p0(ctx_t *c)
{
    ST(X, 1);
    gap(c->t);
    ST(Y, 1);
    ST_SC(c->f, 1); /* no dsm_release: a data race */
}
static void mpnoacq_p1(ctx_t *c)
{
    wait_flag(c); /* no dsm_acquire: a data race */
    R[0] = LD(Y);
    gap(c->t);
    R[1] = LD(X);
}
static bool both01(const uint64_t *o)
{
    return in01(o[0]) && in01(o[1]);
}

/* SB+lock */
static void sbl_p0(ctx_t *c)
{
    lock(c->m[0]);
    ST(X, 1);
    unlock(c->m[0]);
    lock(c->m[1]);
    R[0] = LD(Y);
    unlock(c->m[1]);
}
static void sbl_p1(ctx_t *c)
{
    lock(c->m[1]);
    ST(Y, 1);
    unlock(c->m[1]);
    lock(c->m[0]);
    R[1] = LD(X);
    unlock(c->m[0]);
}
static bool sbl_ok(const uint64_t *o)
{
    return both01(o) && !(o[0] == 0 && o[1] == 0);
}

/* SB+bar */
static void sbb_p0_pre(ctx_t *c)
{
    ST(X, 1);
}
static void sbb_p1_pre(ctx_t *c)
{
    ST(Y, 1);
}
static void sbb_p0_post(ctx_t *c)
{
    R[0] = LD(Y);
}
static void sbb_p1_post(ctx_t *c)
{
    R[1] = LD(X);
}

/* IRIW+lock */
static void iriwl_p0(ctx_t *c)
{
    lock(c->m[0]);
    ST(X, 1);
    unlock(c->m[0]);
}
static void iriwl_p1(ctx_t *c)
{
    lock(c->m[1]);
    ST(Y, 1);
    unlock(c->m[1]);
}
static void iriwl_p2(ctx_t *c)
{
    lock(c->m[0]);
    R[0] = LD(X);
    unlock(c->m[0]);
    gap(c->t);
    lock(c->m[1]);
    R[1] = LD(Y);
    unlock(c->m[1]);
}
static void iriwl_p3(ctx_t *c)
{
    lock(c->m[1]);
    R[2] = LD(Y);
    unlock(c->m[1]);
    gap(c->t);
    lock(c->m[0]);
    R[3] = LD(X);
    unlock(c->m[0]);
}
static bool iriwl_ok(const uint64_t *o)
{
    for (int k = 0; k < 4; k++)
        if (!in01(o[k])) return false;
    return !(o[0] == 1 && o[1] == 0 && o[2] == 1 && o[3] == 0);
}

/* IRIW+bar */
static void iriwb_p2(ctx_t *c)
{
    R[0] = LD(X);
    gap(c->t);
    R[1] = LD(Y);
}
static void iriwb_p3(ctx_t *c)
{
    R[2] = LD(Y);
    gap(c->t);
    R[3] = LD(X);
}
static bool iriwb_ok(const uint64_t *o)
{
    return is1(o[0]) && is1(o[1]) && is1(o[2]) && is1(o[3]);
}

/* WW+racy */
#define WW0 0x0101010101010101ull
#define WW1 0x0202020202020202ull
static void ww_p0_pre(ctx_t *c)
{
    ST(X, WW0);
}
static void ww_p1_pre(ctx_t *c)
{
    ST(X, WW1);
}
static void ww_p0_post(ctx_t *c)
{
    R[0] = LD(X);
}
static void ww_p1_post(ctx_t *c)
{
    R[1] = LD(X);
}
static bool ww_ok(const uint64_t *o)
{
    for (int b = 0; b < 8; b++) {
        unsigned byte = (unsigned)(o[0] >> (8 * b)) & 0xff;
        if (byte != 1 && byte != 2) return false;
    }
    return o[0] == o[1];
}

/* clang-format off */
static const test_t tests[] = {
    {"MP+lock", K_THREADS, false, 2, 2, 2, {1, 1}, {"r1", "r2"}, {mpl_p0, mpl_p1}, {0},
     mpl_ok, "r1=1,r2=0"},
    {"MP+bar", K_BARRIER, false, 2, 2, 2, {1, 1}, {"r1", "r2"}, {mpb_p0, nothing},
     {nothing, mpb_p1}, all1, "anything but r1=1,r2=1"},
    {"MP+relacq", K_THREADS, false, 2, 2, 2, {1, 1}, {"r1", "r2"}, {mpra_p0, mpra_p1}, {0},
     all1, "anything but r1=1,r2=1"},
    {"SB+lock", K_THREADS, false, 2, 2, 2, {0, 1}, {"r1", "r2"}, {sbl_p0, sbl_p1}, {0},
     sbl_ok, "r1=0,r2=0"},
    {"SB+bar", K_BARRIER, false, 2, 2, 2, {0, 1}, {"r1", "r2"}, {sbb_p0_pre, sbb_p1_pre},
     {sbb_p0_post, sbb_p1_post}, all1, "anything but r1=1,r2=1"},
    {"IRIW+lock", K_THREADS, false, 4, 2, 4, {2, 2, 3, 3}, {"r1", "r2", "r3", "r4"},
     {iriwl_p0, iriwl_p1, iriwl_p2, iriwl_p3}, {0}, iriwl_ok, "r1=1,r2=0,r3=1,r4=0"},
    {"IRIW+bar", K_BARRIER, false, 4, 2, 4, {2, 2, 3, 3}, {"r1", "r2", "r3", "r4"},
     {sbb_p0_pre, sbb_p1_pre, nothing, nothing},
     {nothing, nothing, iriwb_p2, iriwb_p3}, iriwb_ok, "anything but all four 1"},
    {"MP+norel", K_THREADS, true, 2, 2, 2, {1, 1}, {"r1", "r2"}, {mpnorel_p0, mpra_p1}, {0},
     both01, "a value nobody wrote"},
    {"MP+noacq", K_THREADS, true, 2, 2, 2, {1, 1}, {"r1", "r2"}, {mpra_p0, mpnoacq_p1}, {0},
     both01, "a value nobody wrote"},
    {"WW+racy", K_BARRIER, true, 2, 1, 2, {0, 1}, {"r1", "r2"}, {ww_p0_pre, ww_p1_pre},
     {ww_p0_post, ww_p1_post}, ww_ok, "a byte other than 1 or 2, or r1!=r2"},
};
/* clang-format on */
#define NTESTS ((int)(sizeof tests / sizeof tests[0]))

/* ---------------------------------------------------------------- one run */

enum { DIFF_HOMES, SAME_PAGE, LAYOUTS };
static const char *const layout_name[LAYOUTS] = {"diff-homes", "same-page"};

typedef struct run {
    const test_t *t;
    int layout;
    long iters;
    uint64_t gen0;       /* iteration i of this run is generation gen0 + i + 1 */
    uint64_t *var[MAXV]; /* variable k of iteration i: var[k] + i * SLOTW (RC memory) */
    uint64_t *flags;     /* flag of iteration i: flags[i * SLOTW] (SC memory) */
    uint64_t *local[MAXROLES];
    uint64_t delay_ns, seed;
    int slotoff[MAXV];
} run_t;

static _Atomic uint64_t *ready[MAXROLES]; /* role r's "I am at generation g", page r (SC) */
static dsm_mutex_t *pool[NMUTEX]; /* the mutexes (SC memory), one per page, homes rotating */

static void seed_role(rt_t *rt, const run_t *run, int role)
{
    rt->delay_ns = run->delay_ns;
    mn_rng_seed(&rt->rng,
                mn_mix(run->seed ^ mn_mix((uint64_t)(run->t - tests) * 16 + (uint64_t)role) ^
                       ((uint64_t)run->layout << 40)));
}

/* Takes a random copy of each variable's page for role me: none, read-only (reads the role's
 * scratch word of the slot) or writable (writes it). Race-free: only role me touches that
 * word. */
static void take_pages(const run_t *run, uint64_t *const *v, int me, rt_t *rt, uint64_t gen)
{
    uint64_t pt = mn_rand(&rt->rng);
    for (int k = 0; k < run->t->vars; k++, pt >>= 2) {
        uint64_t *scratch = v[k] - run->slotoff[k] + SCRATCH + me;
        if ((pt & 3) == 1) (void)LD(scratch);
        if ((pt & 3) == 2) ST(scratch, gen);
    }
}

static void make_ctx(ctx_t *c, const run_t *run, long i, uint64_t **v, rt_t *rt, int role,
                     char *what, size_t wlen)
{
    for (int k = 0; k < run->t->vars; k++) v[k] = run->var[k] + (size_t)i * SLOTW;
    snprintf(what, wlen, "%s %s, iteration %ld", run->t->name, layout_name[run->layout], i);
    *c = (ctx_t){.v = v,
                 .r = run->local[role] + (size_t)i * MAXO,
                 .m = {pool[i % NMUTEX], pool[(i + 1) % NMUTEX]},
                 .f = AT(run->flags + (size_t)i * SLOTW),
                 .what = what,
                 .t = rt};
}

typedef struct role_arg {
    run_t *run;
    int role;
} role_arg_t;

/* K_THREADS: one role's iterations, as a thread. */
static void *role_main(void *p)
{
    role_arg_t *a = p;
    run_t *run = a->run;
    const test_t *t = run->t;
    const int me = a->role;
    rt_t rt;
    seed_role(&rt, run, me);
    for (long i = 0; i < run->iters; i++) {
        uint64_t gen = run->gen0 + (uint64_t)i + 1;
        uint64_t *v[MAXV];
        char what[96];
        ctx_t c;
        make_ctx(&c, run, i, v, &rt, me, what, sizeof what);
        atomic_store_explicit(ready[me], gen, memory_order_release);
        for (int q = 0; q < t->roles; q++)
            if (q != me)
                MN_WAIT_UNTIL(atomic_load_explicit(ready[q], memory_order_acquire) >= gen,
                              "%s: role %d waited for role %d (node %d) for %.0f s", what, me, q,
                              q % mn_nodes, MN_WAIT_SECONDS);
        take_pages(run, v, me, &rt, gen);
        spin_ns(rand_delay(&rt));
        t->pre[me](&c);
    }
    return NULL;
}

/* K_BARRIER: this node's roles, in turn, around one dsm_barrier per iteration. */
static void barrier_roles(run_t *run)
{
    const test_t *t = run->t;
    rt_t rt[MAXROLES];
    for (int r = 0; r < t->roles; r++) seed_role(&rt[r], run, r);
    for (long i = 0; i < run->iters; i++) {
        uint64_t gen = run->gen0 + (uint64_t)i + 1;
        uint64_t *v[MAXROLES][MAXV];
        char what[MAXROLES][96];
        ctx_t c[MAXROLES];
        for (int r = 0; r < t->roles; r++) {
            if (r % mn_nodes != mn_rank) continue;
            make_ctx(&c[r], run, i, v[r], &rt[r], r, what[r], sizeof what[r]);
            take_pages(run, v[r], r, &rt[r], gen);
            spin_ns(rand_delay(&rt[r]));
            t->pre[r](&c[r]);
        }
        dsm_barrier();
        for (int r = 0; r < t->roles; r++) {
            if (r % mn_nodes != mn_rank) continue;
            spin_ns(rand_delay(&rt[r]) / 4);
            t->post[r](&c[r]);
        }
    }
}

typedef struct hist {
    uint64_t o[MAXO];
    long count;
} hist_t;

static void outcome_str(const test_t *t, const uint64_t *o, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (int k = 0; k < t->regs && n < len; k++) {
        if (o[k] == NOTREAD)
            n += (size_t)snprintf(buf + n, len - n, "%s%s=-", k ? "," : "", t->names[k]);
        else if (o[k] > 9)
            n += (size_t)snprintf(buf + n, len - n, "%s%s=%#llx", k ? "," : "", t->names[k],
                                  (unsigned long long)o[k]);
        else
            n += (size_t)snprintf(buf + n, len - n, "%s%s=%llu", k ? "," : "", t->names[k],
                                  (unsigned long long)o[k]);
    }
}

static int cmp_hist(const void *a, const void *b)
{
    const hist_t *x = a, *y = b;
    return (x->count < y->count) - (x->count > y->count);
}

/* Runs test t in one layout on every node; node 0 prints the histogram. Returns the number of
 * forbidden outcomes seen (node 0; 0 elsewhere). */
static long run_one(const test_t *t, int layout, long iters, uint64_t *gen, uint64_t delay_ns,
                    uint64_t seed)
{
    const int N = mn_nodes, me = mn_rank;
    run_t run = {
        .t = t, .layout = layout, .iters = iters, .gen0 = *gen, .delay_ns = delay_ns, .seed = seed};
    *gen += (uint64_t)iters;

    size_t slots_bytes = (size_t)iters * SLOT;
    size_t pages = (slots_bytes + MN_PAGE - 1) / MN_PAGE;
    void *region[MAXV] = {0};
    int nregion;
    if (layout == DIFF_HOMES) {
        nregion = t->vars;
        for (int k = 0; k < t->vars; k++) {
            region[k] =
                MN_ALLOC_PLACED((pages + (size_t)N) * MN_PAGE, DSM_PLACE_CYCLIC | DSM_RC, MN_PAGE);
            /* variable k of iteration i homed on (k + 1 + i / 64) % N, as litmus.c */
            int o = 0;
            while (o < N && dsm_home((char *)region[k] + (size_t)o * MN_PAGE) != (k + 1) % N) o++;
            CHECK(o < N, "layout: no page of a cyclic allocation is homed on node %d", (k + 1) % N);
            run.var[k] = (uint64_t *)((char *)region[k] + (size_t)o * MN_PAGE);
        }
        if (t->vars == 2 && N >= 2)
            for (long i = 0; i < iters; i += 64)
                CHECK(dsm_home(run.var[0] + i * SLOTW) != dsm_home(run.var[1] + i * SLOTW),
                      "layout: the two variables of iteration %ld share a home", i);
    } else {
        nregion = 1;
        region[0] = MN_ALLOC_PLACED(pages * MN_PAGE, DSM_PLACE_CYCLIC | DSM_RC, MN_PAGE);
        for (int k = 0; k < t->vars; k++) {
            run.var[k] = (uint64_t *)region[0] + k;
            run.slotoff[k] = k;
        }
    }
    /* Flags (SC memory: C11 atomics are atomic across nodes only there). */
    run.flags = MN_ALLOC_PLACED(pages * MN_PAGE, DSM_PLACE_CYCLIC | DSM_SC, MN_PAGE);
    /* Registers as they are gathered (SC memory): register k of iteration i at
     * results[k * iters + i]. */
    uint64_t *results = MN_ALLOC_PLACED((size_t)t->regs * (size_t)iters * sizeof(uint64_t),
                                        DSM_PLACE_BLOCK | DSM_SC, 0);

    for (int r = 0; r < t->roles; r++) {
        if (r % N != me) continue;
        run.local[r] = calloc((size_t)iters * MAXO, sizeof(uint64_t));
        CHECK(run.local[r], "out of memory");
    }
    dsm_barrier();
    double t0 = mn_now();
    if (t->kind == K_THREADS) {
        pthread_t th[MAXROLES];
        role_arg_t args[MAXROLES];
        int nth = 0;
        for (int r = 0; r < t->roles; r++) {
            if (r % N != me) continue;
            args[nth] = (role_arg_t){.run = &run, .role = r};
            CHECK(pthread_create(&th[nth], NULL, role_main, &args[nth]) == 0, "pthread_create");
            nth++;
        }
        for (int k = 0; k < nth; k++) pthread_join(th[k], NULL);
    } else {
        barrier_roles(&run);
    }
    double elapsed = mn_now() - t0;
    for (int k = 0; k < t->regs; k++) {
        int r = t->reg_role[k];
        if (r % N != me) continue;
        for (long i = 0; i < iters; i++)
            results[(size_t)k * (size_t)iters + (size_t)i] =
                run.local[r][(size_t)i * MAXO + (size_t)k];
    }
    dsm_barrier();

    long forbidden = 0;
    if (me == 0) {
        hist_t h[MAXHIST];
        int nh = 0;
        long other = 0, other_forbidden = 0;
        for (long i = 0; i < iters; i++) {
            uint64_t o[MAXO] = {0};
            for (int k = 0; k < t->regs; k++) o[k] = results[(size_t)k * (size_t)iters + (size_t)i];
            bool ok = t->allowed(o);
            if (!ok) {
                if (forbidden == 0) {
                    char s[160];
                    outcome_str(t, o, s, sizeof s);
                    mn_say("FORBIDDEN: %s %s, iteration %ld (first of this run): %s", t->name,
                           layout_name[layout], i, s);
                }
                forbidden++;
            }
            int j = 0;
            while (j < nh && memcmp(h[j].o, o, sizeof o)) j++;
            if (j == nh && nh < MAXHIST) h[nh++] = (hist_t){.count = 0};
            if (j < nh) {
                memcpy(h[j].o, o, sizeof o);
                h[j].count++;
            } else {
                other++;
                other_forbidden += !ok;
            }
        }
        qsort(h, (size_t)nh, sizeof h[0], cmp_hist);
        char line[4096];
        size_t n = (size_t)snprintf(line, sizeof line, "%s %s:", t->name, layout_name[layout]);
        for (int j = 0; j < nh && n < sizeof line; j++) {
            char s[160];
            outcome_str(t, h[j].o, s, sizeof s);
            n += (size_t)snprintf(line + n, sizeof line - n, "  %s%s: %ld", s,
                                  t->allowed(h[j].o) ? "" : " (FORBIDDEN)", h[j].count);
        }
        if (other && n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, "  (%ld more, %ld forbidden)", other,
                                  other_forbidden);
        if (!forbidden && n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, "  | %s (forbidden): 0", t->forbidden);
        if (n < sizeof line)
            snprintf(line + n, sizeof line - n, "  [%ld iters, %.2f s, %.0f us/iter]", iters,
                     elapsed, elapsed * 1e6 / (double)iters);
        printf("%s\n", line);
        fflush(stdout);
    }
    dsm_barrier(); /* node 0 has read everything: the memory can go */
    dsm_free(results);
    dsm_free(run.flags);
    for (int k = 0; k < nregion; k++) dsm_free(region[k]);
    for (int r = 0; r < t->roles; r++) free(run.local[r]);
    return forbidden;
}

/* ---------------------------------------------------------------- main */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [-t TEST[,TEST...]|all] [-l diff|same|both] [-i ITERS] [-d DELAY_US] "
            "[-s SEED] [-X] [-L]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *which = "all", *layouts = "both";
    long iters = 1000, delay_us = 200;
    bool expect_bug = false;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            which = argv[++i];
        } else if (!strcmp(argv[i], "-l") && i + 1 < argc) {
            layouts = argv[++i];
        } else if (!strcmp(argv[i], "-i") && i + 1 < argc) {
            iters = mn_parse_long("iteration count", argv[++i], 1, 10000000L);
        } else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            delay_us = mn_parse_long("delay", argv[++i], 0, 1000000L);
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            seed = (uint64_t)mn_parse_long("seed", argv[++i], 0, 0x7fffffffffffffffL);
        } else if (!strcmp(argv[i], "-X")) {
            expect_bug = true;
        } else if (!strcmp(argv[i], "-L")) {
            for (int k = 0; k < NTESTS; k++)
                printf("%s%s\n", tests[k].name, tests[k].racy ? " (racy)" : "");
            return 0;
        } else {
            usage(argv[0]);
        }
    }
    bool want[NTESTS] = {0};
    if (!strcmp(which, "all")) {
        for (int k = 0; k < NTESTS; k++) want[k] = true;
    } else {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", which);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            int k = 0;
            while (k < NTESTS && strcasecmp(tests[k].name, tok)) k++;
            if (k == NTESTS) {
                fprintf(stderr, "unknown test '%s' (-L lists them)\n", tok);
                exit(2);
            }
            want[k] = true;
        }
    }
    bool lay[LAYOUTS] = {!strcmp(layouts, "diff") || !strcmp(layouts, "both"),
                         !strcmp(layouts, "same") || !strcmp(layouts, "both")};
    if (!lay[0] && !lay[1]) usage(argv[0]);

    mn_begin(1);
    if (mn_rank == 0)
        mn_say("litmus_rc: %d nodes, %ld iterations per test and layout, delay 0..%ld us, seed "
               "%llu%s",
               mn_nodes, iters, delay_us, (unsigned long long)seed,
               expect_bug ? " (expecting a broken protocol: -X)" : "");
    /* One page per role for the iteration barrier, page r homed on node r % N; SC memory. */
    uint64_t *sync = MN_ALLOC_PLACED(MAXROLES * MN_PAGE, DSM_PLACE_CYCLIC | DSM_SC, MN_PAGE);
    for (int r = 0; r < MAXROLES; r++) ready[r] = AT(sync + (size_t)r * (MN_PAGE / 8));
    /* The mutexes, one per page so that their managers (the homes) rotate over the nodes. */
    char *mpages = MN_ALLOC_PLACED(NMUTEX * MN_PAGE, DSM_PLACE_CYCLIC | DSM_SC, MN_PAGE);
    for (int k = 0; k < NMUTEX; k++) pool[k] = (dsm_mutex_t *)(mpages + (size_t)k * MN_PAGE);
    if (mn_rank == 0)
        for (int k = 0; k < NMUTEX; k++) CHECK(dsm_mutex_init(pool[k]) == 0, "dsm_mutex_init");
    dsm_barrier();

    uint64_t gen = 0;
    long forbidden = 0;
    double t0 = mn_now();
    for (int k = 0; k < NTESTS; k++) {
        if (!want[k]) continue;
        for (int l = 0; l < LAYOUTS; l++) {
            if (!lay[l]) continue;
            forbidden += run_one(&tests[k], l, iters, &gen, (uint64_t)delay_us * 1000, seed);
        }
    }
    int rc = 0;
    if (mn_rank == 0) {
        if (expect_bug) {
            mn_say("%s: %ld forbidden outcomes with the injected protocol bug (%.1f s)",
                   forbidden ? "self-test passed" : "SELF-TEST FAILED: the check missed the bug",
                   forbidden, mn_now() - t0);
            rc = forbidden ? 0 : 1;
        } else if (forbidden) {
            mn_say("FAILED: %ld forbidden outcomes (seed %llu, %.1f s)", forbidden,
                   (unsigned long long)seed, mn_now() - t0);
            rc = 1;
        } else {
            mn_say("no forbidden outcome (%.1f s)", mn_now() - t0);
        }
    }
    dsm_finalize();
    if (rc == 0 && mn_rank == 0 && !expect_bug) printf("litmus_rc: passed on %d nodes\n", mn_nodes);
    return rc;
}

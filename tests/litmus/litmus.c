/*
 * litmus.c - the classic memory-model litmus tests, run across nodes, thousands of times each,
 * with an outcome histogram per test and layout; any outcome the model forbids fails the run.
 *
 * What it checks. docs/memory-model.md promises per-location coherence, sequential
 * consistency for data-race-free programs, atomic RMWs across nodes, and x86-TSO-like
 * behaviour between nodes. Each litmus test below is a tiny racy program whose possible
 * outcomes under that model are known exactly:
 *
 *   MP      P0: x=1; y=1            P1: r1=y; r2=x              forbidden r1=1,r2=0
 *   SB      P0: x=1; r1=y           P1: y=1; r2=x               r1=0,r2=0 allowed (TSO)
 *   SB+sc   as SB, seq_cst atomic store and load                forbidden r1=0,r2=0
 *           (gcc: xchg for the store; other compilers: mov + mfence)
 *   SB+mfence as SB, with an mfence between the store and the load
 *                                                               forbidden r1=0,r2=0
 *   SB+rmw  as SB, the stores are atomic_fetch_add (lock xadd)  forbidden r1=0,r2=0
 *   LB      P0: r1=x; y=1           P1: r2=y; x=1               forbidden r1=1,r2=1
 *   WRC     P0: x=1   P1: r1=x; y=1   P2: r2=y; r3=x            forbidden r1=1,r2=1,r3=0
 *   IRIW    P0: x=1   P1: y=1   P2: r1=x; r2=y   P3: r3=y; r4=x
 *                                                   forbidden r1=1,r2=0,r3=1,r4=0
 *   CoRR    P0: x=1; x=2            P1: r1=x; r2=x              forbidden r2 older than r1
 *   CoRR2   P0: x=1   P1: x=2   P2: r1=x; r2=x   P3: r3=x; r4=x
 *           forbidden: the two readers (or the final value) disagree on the order of the writes
 *   CoWW    P0: x=1; x=2            P1: x=3; r1=x               forbidden final x=1, or
 *                                                   final x=3 with r1!=3
 *   2+2W    P0: x=2; y=1            P1: y=2; x=1                forbidden final x=2,y=2
 *   ADD     P0: r1=fetch_add(x,1)   P1: r2=fetch_add(x,2)       allowed only (0,1,x=3), (2,0,x=3)
 *   CAS     P0: r1=cas(x,0->1)      P1: r2=cas(x,0->2)          exactly one succeeds; x = its value
 *   MP+rmw  P0: x=1; fetch_add(y,1) P1: r1=cas(y,1->2); r2=x    forbidden r1=1,r2=0 (and y must
 *                                                   match r1)
 *
 * (r = the value read, or the old value an RMW returned; "final" = the value after the run.)
 * Plain accesses are volatile loads and stores (plain movs); the compiler keeps volatile
 * accesses in program order, and x86 keeps everything but store->load in order, so any
 * forbidden outcome is the DSM's doing. Every outcome that is not explicitly allowed -
 * including a value nobody wrote - counts as forbidden.
 *
 * Why that catches a broken DSM. MP and WRC fail if a write becomes visible before an earlier
 * write of the same node (pages handed over out of order, a write completing before the
 * invalidations of the other copies are acknowledged), or if a reader keeps a stale read-only
 * copy of x after a lost invalidation. IRIW and CoRR2 fail if two readers can see two
 * independent writes in different orders, which is what a home that lets readers keep old
 * copies while granting a new writer (non-multi-copy-atomic propagation) produces. CoRR,
 * CoWW and 2+2W fail if a node's view of one location goes backwards (a stale page installed
 * after a newer one, a write-back lost or applied out of order, a page recalled from the
 * wrong owner). LB fails if a load can be satisfied by a store that comes later (a page
 * served from a buffer that already holds a future write). SB+sc and SB+rmw fail if a fence
 * or locked instruction does not make the store globally visible before the load reads
 * (two nodes both writing the same or different pages while holding stale copies). ADD, CAS
 * and MP+rmw fail if an RMW is not atomic across nodes (two nodes holding the page writable
 * at once) or lets the data race past it.
 *
 * How. Every test runs ITERS iterations (default 2000) in two layouts:
 *   diff-homes  each variable in its own array, the variables of one iteration on pages
 *               homed on different nodes (and homes rotating every 64 iterations);
 *   same-page   all variables of one iteration on one page (homes rotating likewise).
 * Iteration i uses its own slot (64 bytes) of those arrays, so variables are fresh (zero)
 * without any reset; consecutive iterations share pages, so every iteration moves pages
 * between nodes and invalidates copies. The roles (threads P0..P3) are synchronised before
 * every iteration by a cheap role-only barrier: role r publishes "I am at iteration i" in a
 * word of its own page (homed on its node) and spins until every other role has. Then each
 * role takes a random copy of each variable's page (none, read-only by reading the variable,
 * or writable by writing its own scratch word of the slot) - otherwise the node that went
 * last in one iteration would still hold exactly the pages it needs for the next, run its
 * part in nanoseconds without a fault, and the roles would just take turns - waits a random
 * 0..DELAY microseconds (skewed to short pauses; default 200), and runs its part, with random
 * short gaps between its accesses. Waits yield the CPU: a busy wait would keep the node's
 * protocol engine from answering the other roles' requests on a small machine. Roles are
 * mapped onto nodes round-robin: role r runs on node r % N as that node's thread r / N.
 * With 4 nodes every IRIW/CoRR2 role has a node of its own; with 2 nodes IRIW runs as 2
 * nodes x 2 threads (node 0: writer of x and the x-then-y reader; node 1: writer of y and the
 * y-then-x reader, the mapping under which a non-multi-copy-atomic DSM shows the forbidden
 * outcome: each reader sees its own node's write first); with 3 nodes node 0 has two roles.
 * x86-TSO forbids these outcomes between threads of one node as well. The 2-role tests run on
 * nodes 0 and 1; with more nodes the other nodes still home variables (the diff-homes
 * layout rotates the homes over all nodes), so requests take the three-hop paths too.
 * After the iterations each node copies its roles' registers into DSM memory, a barrier
 * follows, and node 0 reads them and the final values, and prints one histogram line:
 *
 *   MP diff-homes: r1=0,r2=0: 1212  r1=1,r2=1: 700  r1=0,r2=1: 88  | r1=1,r2=0 (forbidden): 0
 *
 * Outcomes that are allowed only because of store buffers (SB's r1=0,r2=0) are marked
 * "(TSO)" and do not fail the run. Node 0 exits 1 if any forbidden outcome was seen.
 *
 * Usage: litmus [-t TEST[,TEST...]|all] [-l diff|same|both] [-i ITERS] [-d DELAY_US]
 *               [-p 0|1] [-s SEED] [-x] [-L]
 *   -p 0 turns the random page-taking off; -s seeds the random delays and page-taking (the
 *   interleavings themselves are not reproducible); -L lists the tests. -x is the checker's
 *   self-test: node 0 replaces the outcome of the first iteration of every run with a
 *   forbidden one (test_t.bad), and the program succeeds only if every run reports exactly
 *   that one forbidden outcome - proof that the histogram check can fail.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mn.h"

#define MAXV     2  /* shared variables per iteration */
#define MAXO     6  /* registers + final values per outcome */
#define MAXROLES 4  /* threads per test */
#define SLOT     64 /* bytes of each variable array per iteration */
#define SLOTW    (SLOT / 8)
#define MAXHIST  64 /* distinct outcomes kept per run */
#define SCRATCH  4  /* words 4..7 of a slot: touched by role r (word 4 + r) to take the page */

/* ---------------------------------------------------------------- per-thread helpers */

typedef struct rt {
    mn_rng_t rng;
    uint64_t delay_ns; /* the random pre-delay is in [0, delay_ns] (rand_delay) */
} rt_t;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits ns nanoseconds, yielding the CPU meanwhile: a busy spin would keep this node's
 * protocol engine (its service thread) off the CPU on a small machine, and the other roles'
 * faults would then wait for the spin to end - exactly the serialisation the delay is meant
 * to break. */
static void spin_ns(uint64_t ns)
{
    if (!ns) return;
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < ns) sched_yield();
}

/* The pause before a role's part: in [0, delay_ns], skewed towards short ones (u^2 for u
 * uniform in [0, 1): half of them below delay_ns / 4). Short pauses make the roles' accesses
 * race closely; the long ones let a role that must first take a page from another node go
 * first now and then (taking a page costs a few hundred microseconds on a small machine). */
static uint64_t rand_delay(rt_t *t)
{
    double u = (double)(mn_rand(&t->rng) >> 11) / 9007199254740992.0;
    return (uint64_t)(u * u * (double)t->delay_ns);
}

/* Between two accesses of a role: one time in four, a short random pause. */
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

/* A full fence, literally mfence on x86 (gcc compiles atomic_thread_fence to lock or). */
static inline void mfence(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("mfence" ::: "memory");
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* compare-exchange that returns the old value (whether or not it succeeded) */
static inline uint64_t cas_old(uint64_t *p, uint64_t expect, uint64_t desired)
{
    uint64_t e = expect;
    atomic_compare_exchange_strong(AT(p), &e, desired);
    return e;
}

/* ---------------------------------------------------------------- the tests */

/* A role's part of one iteration: v[k] points to variable k of this iteration, r to this
 * iteration's registers (each role writes only its own). */
typedef void role_fn(uint64_t *const *v, uint64_t *r, rt_t *t);

typedef struct test {
    const char *name;
    int roles, vars, regs, nfinal;
    int reg_role[MAXO];      /* which role writes register k */
    int final_var[MAXV];     /* variables whose value after the run is part of the outcome */
    const char *names[MAXO]; /* registers, then finals */
    role_fn *role[MAXROLES];
    bool (*allowed)(const uint64_t *o);  /* o: registers, then finals */
    bool (*tso_only)(const uint64_t *o); /* allowed, but only through store buffers */
    const char *forbidden;               /* the canonical forbidden outcome, for the report */
    uint64_t bad[MAXO]; /* a forbidden outcome: -x feeds it to the checker, which must reject it */
} test_t;

#define X v[0]
#define Y v[1]

static bool in01(uint64_t a)
{
    return a <= 1;
}

/* MP */
static void mp_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r;
    ST(X, 1);
    gap(t);
    ST(Y, 1);
}
static void mp_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[0] = LD(Y);
    gap(t);
    r[1] = LD(X);
}
static bool mp_ok(const uint64_t *o)
{
    return in01(o[0]) && in01(o[1]) && !(o[0] == 1 && o[1] == 0);
}

/* SB, SB+sc, SB+rmw */
static void sb_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t; /* no gap: the window between the store and the load is the point */
    ST(X, 1);
    r[0] = LD(Y);
}
static void sb_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    ST(Y, 1);
    r[1] = LD(X);
}
static bool sb_ok(const uint64_t *o)
{
    return in01(o[0]) && in01(o[1]);
}
static bool sb_weak(const uint64_t *o)
{
    return o[0] == 0 && o[1] == 0;
}
static void sbsc_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    ST_SC(X, 1);
    r[0] = LD_SC(Y);
}
static void sbsc_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    ST_SC(Y, 1);
    r[1] = LD_SC(X);
}
static bool sbsc_ok(const uint64_t *o)
{
    return sb_ok(o) && !sb_weak(o);
}
static void sbfence_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    ST(X, 1);
    mfence();
    r[0] = LD(Y);
}
static void sbfence_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    ST(Y, 1);
    mfence();
    r[1] = LD(X);
}
static void sbrmw_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    r[2] = atomic_fetch_add(AT(X), 1); /* lock xadd */
    r[0] = LD(Y);
}
static void sbrmw_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    r[3] = atomic_fetch_add(AT(Y), 1);
    r[1] = LD(X);
}
static bool sbrmw_ok(const uint64_t *o)
{
    return sbsc_ok(o) && o[2] == 0 && o[3] == 0;
}

/* LB */
static void lb_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[0] = LD(X);
    gap(t);
    ST(Y, 1);
}
static void lb_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[1] = LD(Y);
    gap(t);
    ST(X, 1);
}
static bool lb_ok(const uint64_t *o)
{
    return in01(o[0]) && in01(o[1]) && !(o[0] == 1 && o[1] == 1);
}

/* WRC */
static void wrc_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r, (void)t;
    ST(X, 1);
}
static void wrc_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[0] = LD(X);
    gap(t);
    ST(Y, 1);
}
static void wrc_p2(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[1] = LD(Y);
    gap(t);
    r[2] = LD(X);
}
static bool wrc_ok(const uint64_t *o)
{
    return in01(o[0]) && in01(o[1]) && in01(o[2]) && !(o[0] == 1 && o[1] == 1 && o[2] == 0);
}

/* IRIW */
static void iriw_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r, (void)t;
    ST(X, 1);
}
static void iriw_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r, (void)t;
    ST(Y, 1);
}
static void iriw_p2(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[0] = LD(X);
    gap(t);
    r[1] = LD(Y);
}
static void iriw_p3(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[2] = LD(Y);
    gap(t);
    r[3] = LD(X);
}
static bool iriw_ok(const uint64_t *o)
{
    for (int k = 0; k < 4; k++)
        if (!in01(o[k])) return false;
    return !(o[0] == 1 && o[1] == 0 && o[2] == 1 && o[3] == 0);
}

/* Coherence helpers: is the sequence of reads a, b (values) consistent with the write order
 * ord[0..n-1] (ord[0] = 0, the initial value)? */
static int co_index(const uint64_t *ord, int n, uint64_t val)
{
    for (int k = 0; k < n; k++)
        if (ord[k] == val) return k;
    return -1;
}
static bool co_reads_ok(const uint64_t *ord, int n, uint64_t a, uint64_t b)
{
    int ia = co_index(ord, n, a), ib = co_index(ord, n, b);
    return ia >= 0 && ib >= 0 && ia <= ib;
}

/* CoRR */
static void corr_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r;
    ST(X, 1);
    gap(t);
    ST(X, 2);
}
static void corr_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[0] = LD(X);
    gap(t);
    r[1] = LD(X);
}
static bool corr_ok(const uint64_t *o)
{
    static const uint64_t ord[] = {0, 1, 2};
    return co_reads_ok(ord, 3, o[0], o[1]) && o[2] == 2;
}

/* CoRR2 */
static void corr2_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r, (void)t;
    ST(X, 1);
}
static void corr2_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r, (void)t;
    ST(X, 2);
}
static void corr2_p2(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[0] = LD(X);
    gap(t);
    r[1] = LD(X);
}
static void corr2_p3(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[2] = LD(X);
    gap(t);
    r[3] = LD(X);
}
static bool corr2_ok(const uint64_t *o)
{
    static const uint64_t ords[2][3] = {{0, 1, 2}, {0, 2, 1}};
    for (int k = 0; k < 2; k++) {
        const uint64_t *ord = ords[k];
        if (co_reads_ok(ord, 3, o[0], o[1]) && co_reads_ok(ord, 3, o[2], o[3]) && o[4] == ord[2])
            return true;
    }
    return false;
}

/* CoWW */
static void coww_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r;
    ST(X, 1);
    gap(t);
    ST(X, 2);
}
static void coww_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    ST(X, 3);
    gap(t);
    r[0] = LD(X);
}
static bool coww_ok(const uint64_t *o)
{
    /* write orders with 1 before 2 (P0's program order); P1 reads its own write or a later one */
    static const uint64_t ords[3][4] = {{0, 1, 2, 3}, {0, 1, 3, 2}, {0, 3, 1, 2}};
    for (int k = 0; k < 3; k++) {
        const uint64_t *ord = ords[k];
        if (co_reads_ok(ord, 4, 3, o[0]) && o[1] == ord[3]) return true;
    }
    return false;
}

/* 2+2W */
static void w22_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r;
    ST(X, 2);
    gap(t);
    ST(Y, 1);
}
static void w22_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r;
    ST(Y, 2);
    gap(t);
    ST(X, 1);
}
static bool w22_ok(const uint64_t *o)
{
    bool vals = (o[0] == 1 || o[0] == 2) && (o[1] == 1 || o[1] == 2);
    return vals && !(o[0] == 2 && o[1] == 2);
}

/* ADD */
static void add_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    r[0] = atomic_fetch_add(AT(X), 1);
}
static void add_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    r[1] = atomic_fetch_add(AT(X), 2);
}
static bool add_ok(const uint64_t *o)
{
    return o[2] == 3 && ((o[0] == 0 && o[1] == 1) || (o[0] == 2 && o[1] == 0));
}

/* CAS */
static void cas_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    r[0] = cas_old(X, 0, 1);
}
static void cas_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)t;
    r[1] = cas_old(X, 0, 2);
}
static bool cas_ok(const uint64_t *o)
{
    return (o[0] == 0 && o[1] == 1 && o[2] == 1) || (o[0] == 2 && o[1] == 0 && o[2] == 2);
}

/* MP+rmw */
static void mprmw_p0(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    (void)r;
    ST(X, 1);
    gap(t);
    atomic_fetch_add(AT(Y), 1);
}
static void mprmw_p1(uint64_t *const *v, uint64_t *r, rt_t *t)
{
    r[0] = cas_old(Y, 1, 2);
    gap(t);
    r[1] = LD(X);
}
static bool mprmw_ok(const uint64_t *o)
{
    /* the CAS succeeded (read 1) iff y ends at 2; otherwise it read 0 and P0's add made y 1 */
    bool y_ok = (o[0] == 1 && o[2] == 2) || (o[0] == 0 && o[2] == 1);
    return mp_ok(o) && y_ok;
}

/* clang-format off */
static const test_t tests[] = {
    {"MP", 2, 2, 2, 0, {1, 1}, {0}, {"r1", "r2"}, {mp_p0, mp_p1}, mp_ok, NULL, "r1=1,r2=0", {1, 0}},
    {"SB", 2, 2, 2, 0, {0, 1}, {0}, {"r1", "r2"}, {sb_p0, sb_p1}, sb_ok, sb_weak, NULL, {2, 0}},
    {"SB+sc", 2, 2, 2, 0, {0, 1}, {0}, {"r1", "r2"}, {sbsc_p0, sbsc_p1}, sbsc_ok, NULL,
     "r1=0,r2=0", {0, 0}},
    {"SB+mfence", 2, 2, 2, 0, {0, 1}, {0}, {"r1", "r2"}, {sbfence_p0, sbfence_p1}, sbsc_ok, NULL,
     "r1=0,r2=0", {0, 0}},
    {"SB+rmw", 2, 2, 4, 0, {0, 1, 0, 1}, {0}, {"r1", "r2", "old0", "old1"},
     {sbrmw_p0, sbrmw_p1}, sbrmw_ok, NULL, "r1=0,r2=0", {0, 0, 0, 0}},
    {"LB", 2, 2, 2, 0, {0, 1}, {0}, {"r1", "r2"}, {lb_p0, lb_p1}, lb_ok, NULL, "r1=1,r2=1", {1, 1}},
    {"WRC", 3, 2, 3, 0, {1, 2, 2}, {0}, {"r1", "r2", "r3"}, {wrc_p0, wrc_p1, wrc_p2}, wrc_ok,
     NULL, "r1=1,r2=1,r3=0", {1, 1, 0}},
    {"IRIW", 4, 2, 4, 0, {2, 2, 3, 3}, {0}, {"r1", "r2", "r3", "r4"},
     {iriw_p0, iriw_p1, iriw_p2, iriw_p3}, iriw_ok, NULL, "r1=1,r2=0,r3=1,r4=0", {1, 0, 1, 0}},
    {"CoRR", 2, 1, 2, 1, {1, 1}, {0}, {"r1", "r2", "x"}, {corr_p0, corr_p1}, corr_ok, NULL,
     "r1>r2 (e.g. r1=2,r2=1)", {2, 1, 2}},
    {"CoRR2", 4, 1, 4, 1, {2, 2, 3, 3}, {0}, {"r1", "r2", "r3", "r4", "x"},
     {corr2_p0, corr2_p1, corr2_p2, corr2_p3}, corr2_ok, NULL, "r1=1,r2=2,r3=2,r4=1", {1, 2, 2, 1, 2}},
    {"CoWW", 2, 1, 1, 1, {1}, {0}, {"r1", "x"}, {coww_p0, coww_p1}, coww_ok, NULL,
     "x=1, or x=3 with r1!=3", {3, 1}},
    {"2+2W", 2, 2, 0, 2, {0}, {0, 1}, {"x", "y"}, {w22_p0, w22_p1}, w22_ok, NULL, "x=2,y=2", {2, 2}},
    {"ADD", 2, 1, 2, 1, {0, 1}, {0}, {"r1", "r2", "x"}, {add_p0, add_p1}, add_ok, NULL,
     "anything but r1=0,r2=1,x=3 / r1=2,r2=0,x=3", {0, 0, 2}},
    {"CAS", 2, 1, 2, 1, {0, 1}, {0}, {"r1", "r2", "x"}, {cas_p0, cas_p1}, cas_ok, NULL,
     "r1=0,r2=0 (both succeed)", {0, 0, 2}},
    {"MP+rmw", 2, 2, 2, 1, {1, 1}, {1}, {"r1", "r2", "y"}, {mprmw_p0, mprmw_p1}, mprmw_ok, NULL,
     "r1=1,r2=0", {1, 0, 2}},
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
    uint64_t gen0;             /* iteration i of this run is generation gen0 + i + 1 */
    uint64_t *var[MAXV];       /* variable k of iteration i: var[k] + i * SLOTW */
    uint64_t *local[MAXROLES]; /* this node's roles' registers: [i * MAXO + k] */
    uint64_t delay_ns, seed;
    int slotoff[MAXV]; /* the word of its slot variable k occupies */
    int pretouch;
} run_t;

typedef struct role_arg {
    run_t *run;
    int role;
} role_arg_t;

static _Atomic uint64_t *ready[MAXROLES]; /* role r's "I am at generation g", page r */

static void *role_main(void *p)
{
    role_arg_t *a = p;
    run_t *run = a->run;
    const test_t *t = run->t;
    const int me = a->role;
    rt_t rt = {.delay_ns = run->delay_ns};
    mn_rng_seed(&rt.rng, mn_mix(run->seed ^ mn_mix((uint64_t)(t - tests) * 16 + (uint64_t)me) ^
                                ((uint64_t)run->layout << 40)));
    uint64_t *regs = run->local[me];
    for (long i = 0; i < run->iters; i++) {
        uint64_t gen = run->gen0 + (uint64_t)i + 1;
        uint64_t *v[MAXV];
        for (int k = 0; k < t->vars; k++) v[k] = run->var[k] + (size_t)i * SLOTW;
        atomic_store_explicit(ready[me], gen, memory_order_release);
        for (int q = 0; q < t->roles; q++)
            if (q != me)
                MN_WAIT_UNTIL(atomic_load_explicit(ready[q], memory_order_acquire) >= gen,
                              "%s %s, iteration %ld: role %d waited for role %d (node %d) for "
                              "%.0f s",
                              t->name, layout_name[run->layout], i, me, q, q % mn_nodes,
                              MN_WAIT_SECONDS);
        /* Shake the pages up: without this, the node that went last in one iteration holds
         * just the copies it needs for the next one, runs its part without a single fault in
         * nanoseconds, and the roles merely take turns. So each role first takes a random
         * copy (read-only: reads the variable; writable: writes its own scratch word in the
         * slot) of each variable's page, racing with the other roles' parts. */
        if (run->pretouch) {
            uint64_t pt = mn_rand(&rt.rng);
            for (int k = 0; k < t->vars; k++, pt >>= 2) {
                if ((pt & 3) == 1) (void)LD(v[k]);
                if ((pt & 3) == 2) ST(v[k] - run->slotoff[k] + SCRATCH + me, gen);
            }
        }
        spin_ns(rand_delay(&rt));
        t->role[me](v, regs + (size_t)i * MAXO, &rt);
    }
    return NULL;
}

typedef struct hist {
    uint64_t o[MAXO];
    long count, first;
} hist_t;

static void outcome_str(const test_t *t, const uint64_t *o, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (int k = 0; k < t->regs + t->nfinal && n < len; k++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s=%llu", k ? "," : "", t->names[k],
                              (unsigned long long)o[k]);
}

static int cmp_hist(const void *a, const void *b)
{
    const hist_t *x = a, *y = b;
    return (x->count < y->count) - (x->count > y->count);
}

/* Runs test t in one layout on every node; node 0 prints the histogram. Returns the number
 * of forbidden outcomes seen (node 0; 0 elsewhere). */
static long run_one(const test_t *t, int layout, long iters, uint64_t *gen, uint64_t delay_ns,
                    uint64_t seed, int pretouch, bool inject)
{
    const int N = mn_nodes, me = mn_rank;
    run_t run = {.t = t,
                 .layout = layout,
                 .iters = iters,
                 .gen0 = *gen,
                 .delay_ns = delay_ns,
                 .seed = seed,
                 .pretouch = pretouch};
    *gen += (uint64_t)iters;

    /* Variables. */
    size_t slots_bytes = (size_t)iters * SLOT;
    size_t pages = (slots_bytes + MN_PAGE - 1) / MN_PAGE;
    void *region[MAXV] = {0};
    int nregion;
    if (layout == DIFF_HOMES) {
        nregion = t->vars;
        for (int k = 0; k < t->vars; k++) {
            region[k] = MN_ALLOC_PLACED((pages + (size_t)N) * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
            /* start on the page homed on node (k + 1) % N: variable k of iteration i is then
             * homed on (k + 1 + i / 64) % N - different nodes for different variables */
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
        region[0] = MN_ALLOC_PLACED(pages * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
        for (int k = 0; k < t->vars; k++) {
            run.var[k] = (uint64_t *)region[0] + k;
            run.slotoff[k] = k;
        }
    }
    /* Registers as they are gathered: register k of iteration i at results[k * iters + i]. */
    uint64_t *results = NULL;
    if (t->regs) results = MN_ALLOC((size_t)t->regs * (size_t)iters * sizeof(uint64_t));

    /* This node's roles. */
    pthread_t th[MAXROLES];
    role_arg_t args[MAXROLES];
    int nth = 0;
    for (int r = 0; r < t->roles; r++) {
        if (r % N != me) continue;
        run.local[r] = calloc((size_t)iters * MAXO, sizeof(uint64_t));
        CHECK(run.local[r], "out of memory");
    }
    dsm_barrier();
    double t0 = mn_now();
    for (int r = 0; r < t->roles; r++) {
        if (r % N != me) continue;
        args[nth] = (role_arg_t){.run = &run, .role = r};
        CHECK(pthread_create(&th[nth], NULL, role_main, &args[nth]) == 0, "pthread_create");
        nth++;
    }
    for (int k = 0; k < nth; k++) pthread_join(th[k], NULL);
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
        hist_t h[MAXHIST + 1];
        int nh = 0;
        long other = 0, other_forbidden = 0;
        for (long i = 0; i < iters; i++) {
            uint64_t o[MAXO] = {0};
            for (int k = 0; k < t->regs; k++) o[k] = results[(size_t)k * (size_t)iters + (size_t)i];
            for (int f = 0; f < t->nfinal; f++)
                o[t->regs + f] = LD(run.var[t->final_var[f]] + i * SLOTW);
            /* -x: pretend the DSM produced a forbidden outcome, to show it is caught. */
            if (inject && i == 0) memcpy(o, t->bad, sizeof o);
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
            if (j == nh && nh < MAXHIST) h[nh++] = (hist_t){.count = 0, .first = i};
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
            const char *mark = !t->allowed(h[j].o)                  ? " (FORBIDDEN)"
                               : t->tso_only && t->tso_only(h[j].o) ? " (TSO)"
                                                                    : "";
            n += (size_t)snprintf(line + n, sizeof line - n, "  %s%s: %ld", s, mark, h[j].count);
        }
        if (other && n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, "  (%ld more, %ld forbidden)", other,
                                  other_forbidden);
        if (t->forbidden && !forbidden && n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, "  | %s (forbidden): 0", t->forbidden);
        if (n < sizeof line)
            snprintf(line + n, sizeof line - n, "  [%ld iters, %.2f s, %.0f us/iter]", iters,
                     elapsed, elapsed * 1e6 / (double)iters);
        printf("%s\n", line);
    }
    dsm_barrier(); /* node 0 has read everything: the memory can go */
    if (results) dsm_free(results);
    for (int k = 0; k < nregion; k++) dsm_free(region[k]);
    for (int r = 0; r < t->roles; r++) free(run.local[r]);
    return forbidden;
}

/* ---------------------------------------------------------------- main */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [-t TEST[,TEST...]|all] [-l diff|same|both] [-i ITERS] [-d DELAY_US] "
            "[-p 0|1] [-s SEED] [-x] [-L]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *which = "all", *layouts = "both";
    long iters = 2000, delay_us = 200;
    int pretouch = 1;
    bool inject = false;
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
        } else if (!strcmp(argv[i], "-p") && i + 1 < argc) {
            pretouch = (int)mn_parse_long("pretouch (0 or 1)", argv[++i], 0, 1);
        } else if (!strcmp(argv[i], "-x")) {
            inject = true;
        } else if (!strcmp(argv[i], "-L")) {
            for (int k = 0; k < NTESTS; k++) printf("%s\n", tests[k].name);
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
        mn_say("litmus: %d nodes, %ld iterations per test and layout, delay 0..%ld us, seed %llu",
               mn_nodes, iters, delay_us, (unsigned long long)seed);
    /* One page per role for the iteration barrier, page r homed on node r % N (role r's). */
    uint64_t *sync = MN_ALLOC_PLACED(MAXROLES * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
    for (int r = 0; r < MAXROLES; r++) ready[r] = AT(sync + (size_t)r * (MN_PAGE / 8));

    uint64_t gen = 0;
    long forbidden = 0, runs = 0, caught = 0;
    double t0 = mn_now();
    for (int k = 0; k < NTESTS; k++) {
        if (!want[k]) continue;
        for (int l = 0; l < LAYOUTS; l++) {
            if (!lay[l]) continue;
            long f = run_one(&tests[k], l, iters, &gen, (uint64_t)delay_us * 1000, seed, pretouch,
                             inject);
            forbidden += f;
            runs++;
            caught += f == 1;
        }
    }
    if (mn_rank == 0 && inject) {
        /* Every run must have rejected exactly its one injected outcome: more would be a real
         * forbidden outcome, fewer a checker that accepts what the model forbids. */
        bool ok = caught == runs;
        mn_say("%s: %ld of %ld runs rejected their injected forbidden outcome, and only it",
               ok ? "self-test passed" : "SELF-TEST FAILED", caught, runs);
        dsm_finalize();
        return ok ? 0 : 1;
    }
    if (inject) {
        dsm_finalize();
        return 0;
    }
    if (mn_rank == 0) {
        if (forbidden)
            mn_say("FAILED: %ld forbidden outcomes (seed %llu, %.1f s)", forbidden,
                   (unsigned long long)seed, mn_now() - t0);
        else
            mn_say("no forbidden outcome (%.1f s)", mn_now() - t0);
    }
    dsm_finalize();
    if (forbidden) return 1;
    if (mn_rank == 0) printf("litmus: passed on %d nodes\n", mn_nodes);
    return 0;
}

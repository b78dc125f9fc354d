/*
 * fixture.c - whole clusters of ufdsm engines in one process, under a seeded scheduler.
 *
 * The model is canonical/raft's fixture: the engine (dsm/engine.h) takes its effects through
 * ops tables, and here they are all fakes. Memory is plain arrays with a permission per page
 * (as userfaultfd would enforce it), the transport is one FIFO channel per ordered pair of
 * nodes (as TCP and RDMA RC deliver), time is a virtual clock, and application threads are
 * coroutines (ucontext) that yield to the scheduler whenever the engine would make them
 * wait. The scheduler - a seeded random generator, or in exhaustive mode an enumeration of
 * every choice sequence up to a depth - decides at every step which message is delivered
 * next, which thread runs next, when a service thread polls and when time advances.
 *
 * After every step it checks:
 *   - single writer or readers: at most one node maps a page writable, and then no other
 *     node maps it at all;
 *   - data values: every mapped copy holds the last value written to each word (the
 *     "golden" copy that every write updates), and every read returns it;
 *   - mutual exclusion of every mutex, and at the end every lock-protected counter;
 * and it detects a cluster that stops: no message in flight, nothing deferred, and every
 * unfinished thread still waiting after it ran once more (a lost wake-up or a deadlock), or
 * a step budget exhausted (a livelock). A failure prints the seed, the scenario and the
 * steps leading to it; `--seed S --verbose` replays it step by step.
 *
 * With --one-copy, memory is laid out as the runtime does it on Linux 6.4+ (region.c): a
 * node's view of a page it homes is its home store itself (dsm_mem_ops.map_home), so the
 * engine's handling of its own write-backs, flushes and diffs arriving while the home's
 * threads write is explored too. --onesided adds one-sided page service (implies --one-copy):
 * every node can read every other node's store in place (dsm_mem_ops.peer_store), and the
 * release-consistency protocol takes pages from it without a message when it may.
 *
 * Usage: engine_fixture [--seeds A:B] [--seed S] [--scenario random|free_readahead]
 *                       [--exhaustive DEPTH] [--cache PAGES] [--one-copy] [--onesided]
 *                       [--expect-failure] [--verbose]
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "engine.h"
#include "log.h"

#define MAXN       4
#define MAXT       2 /* application threads per node */
#define NPAGES     64
#define CHECKED    128 /* bytes at the start of each page that operations use and checks compare */
#define STACK_SIZE (256 * 1024)
#define MAXLOCKS   3
#define MAILBOX    16
#define STEP_LIMIT 400000

/* ---------------------------------------------------------------- random numbers */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------- state */

struct msg {
    struct dsm_wire_hdr h;
    struct msg *next;
    uint8_t payload[];
};

struct chan {
    struct msg *head, *tail;
    int len;
};

struct fmem {
    int node;
    uint8_t perm[NPAGES]; /* 0 none, 1 read-only, 2 writable */
    /* Page-aligned, as the real ones are (the engine's merge swaps aligned words of app). */
    _Alignas(PAGE_SIZE) uint8_t app[NPAGES][PAGE_SIZE];
    uint8_t store[NPAGES][PAGE_SIZE];
    uint8_t twin[NPAGES][PAGE_SIZE];
    uint8_t has_twin[NPAGES];
    uint64_t dirw[NPAGES][DSM_DIR_WORDS];       /* --onesided: the shared directory (DIR_*) */
    uint64_t watchers;                          /* --onesided: its watchers word (rc.h) */
    struct dsm_lock_slot locks[DSM_LOCK_SLOTS]; /* --one-copy: the lock table (sync.c) */
};

enum { T_NEW, T_RUN, T_WAIT, T_DONE };

struct fthread {
    ucontext_t uc;
    char *stack;
    int node, idx, state;
    uint64_t rng;
    char doing[96]; /* the operation under way, for reports */
    long progress;  /* operations completed */
};

struct fx {
    /* scenario */
    uint64_t seed;
    int nn, nt, phases, ops, scenario;
    long hold_us;
    int prefetch;
    uint64_t cache; /* --cache: pages of the bounded cache of remote pages, 0: unbounded */
    int one_copy;   /* --one-copy: a home's view of its pages is its store */
    int onesided;   /* --onesided: nodes may read each other's stores (dsm_mem_ops.peer_store) */
    int remote;     /* --remote K: node K is on a host of its own: nothing one-sided to or from it
                       (-1: every node on one host) */
    uint64_t onesided_fetches; /* total over every run: the path must have been taken */
    uint64_t refreshes;        /* copies refreshed in place at an acquire (m_refresh), ditto */
    uint64_t merges;           /* writable copies merged with the home's store (m_view), ditto */
    uint64_t inplace_ahead;    /* pages read ahead of one-sided fetches (engine count), ditto */
    uint64_t registered;       /* first reads registered in a shared directory (engine), ditto */
    uint64_t watched;          /* new writers learned by watching readers (engine), ditto */
    uint64_t wregistered;      /* first writes registered in a shared directory (engine), ditto */
    uint64_t range_drops, range_multi;  /* unmap_range calls, and those of several pages */
    uint64_t locks_onesided, locks_msg; /* mutexes taken in a lock table / by message, ditto */
    uint64_t acq_skipped;  /* of locks_onesided: last unlocked by the same node, no acquire */
    uint64_t strided;      /* pages read ahead in place at a stride > 1 (engine), ditto */
    uint64_t protect_runs; /* release protections made as runs (m_protect_range) */
    uint64_t shown_home;   /* --one-copy: pages shown from the store (map_home), ditto */
    /* totals over every run (--cache): eviction must actually have been exercised */
    uint64_t ev_clean, ev_dirty, ev_refetch;
    /* exploration */
    uint64_t rng;
    int exhaustive, depth;
    int *script, script_len, script_cap; /* exhaustive: choices to replay */
    int *trail_k, *trail_c, trail_len;   /* exhaustive: choices made, and how many there were */
    int verbose, expect_failure;
    long steps;
    /* cluster */
    struct dsm_node *n[MAXN];
    struct fmem *mem[MAXN];
    struct dsm_tp tp[MAXN];
    struct chan ch[MAXN][MAXN];
    uint64_t now;
    struct fthread th[MAXN * MAXT];
    ucontext_t sched;
    struct fthread *cur;
    uint8_t golden[NPAGES][PAGE_SIZE]; /* the last value written to every byte */
    /* shared allocations */
    uint64_t s_addr, v_addr[MAXN];
    int s_pages, v_pages, r_pages;
    uint64_t r_addr; /* release-consistent memory (DSM_RC) */
    long rc_incs[MAXLOCKS];
    int s_ready[MAXN];
    int freeing; /* nodes inside the collective free of V */
    uint64_t freeing_first, freeing_count;
    int lock_holder[MAXLOCKS]; /* thread index + 1, 0: free */
    long lock_incs[MAXLOCKS];
    uint64_t mailbox[MAILBOX];
    int mail;
    /* report */
    char logbuf[512][200];
    unsigned nlog;
};

static struct fx F;

static void fx_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    char *b = F.logbuf[F.nlog++ % 512];
    int k = snprintf(b, 200, "%6ld t=%-6" PRIu64 " ", F.steps, F.now / 1000);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + k, 200 - (size_t)k, fmt, ap);
    va_end(ap);
    if (F.verbose) printf("%s\n", b);
}

static void describe_scenario(FILE *f)
{
    fprintf(f,
            "seed %" PRIu64 ": %s, %d nodes x %d threads, %d phases of %d ops, hold %ld us, "
            "read-ahead %d, cache %" PRIu64 " pages\n",
            F.seed, F.scenario ? "free_readahead" : "random", F.nn, F.nt, F.phases, F.ops,
            F.hold_us, F.prefetch, F.cache);
}

static void fx_fail(const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (F.expect_failure) {
        printf("caught (as expected) at step %ld: %s\n", F.steps, text);
        describe_scenario(stdout);
        exit(0);
    }
    fprintf(stderr, "FAIL at step %ld: %s\n", F.steps, text);
    describe_scenario(stderr);
    if (!F.verbose) {
        unsigned first = F.nlog > 512 ? F.nlog - 512 : 0;
        fprintf(stderr, "last %u steps:\n", F.nlog - first);
        for (unsigned i = first; i < F.nlog; i++) fprintf(stderr, "  %s\n", F.logbuf[i % 512]);
    }
    for (int i = 0; i < F.nn * F.nt; i++)
        if (F.th[i].state != T_DONE)
            fprintf(stderr, "  thread %d.%d: %s\n", F.th[i].node, F.th[i].idx, F.th[i].doing);
    if (F.exhaustive) {
        fprintf(stderr, "choices:");
        for (int i = 0; i < F.trail_len; i++) fprintf(stderr, " %d/%d", F.trail_c[i], F.trail_k[i]);
        fprintf(stderr, "\n");
    }
    fprintf(stderr,
            "replay: engine_fixture --seed %" PRIu64 "%s%s%s --cache %" PRIu64 " --verbose\n",
            F.seed, F.scenario ? " --scenario free_readahead" : "", F.one_copy ? " --one-copy" : "",
            F.onesided ? " --onesided" : "", F.cache);
    exit(1);
}

/* One scheduling decision among k. */
static int choose(int k)
{
    if (k <= 1) return 0;
    if (!F.exhaustive) return (int)(splitmix(&F.rng) % (uint64_t)k);
    /* Past the depth, a fixed rotation: fair, so every run ends, and deterministic. */
    int c = (int)(F.steps % (uint64_t)k);
    if (F.trail_len < F.script_len)
        c = F.script[F.trail_len];
    else if (F.trail_len < F.depth)
        c = 0;
    if (F.trail_len < F.depth) {
        F.trail_k[F.trail_len] = k;
        F.trail_c[F.trail_len] = c;
        F.trail_len++;
    }
    return c;
}

/* ---------------------------------------------------------------- memory ops */

static int homes(const struct fmem *m, uint64_t page)
{
    return F.one_copy && dsm_home_of(F.n[m->node], page) == m->node;
}

/* What the node's threads see at page: with --one-copy, a homed page is the store itself. */
static uint8_t *view(struct fmem *m, uint64_t page)
{
    return homes(m, page) ? m->store[page] : m->app[page];
}

static void m_map(void *ctx, uint64_t page, const void *data, int writable)
{
    struct fmem *m = ctx;
    if (homes(m, page))
        fx_fail("node %d: page %" PRIu64 " it homes installed by copy, not shown from its store",
                m->node, page);
    if (m->perm[page])
        fx_fail("node %d: page %" PRIu64 " installed while present (UFFDIO_COPY would fail)",
                m->node, page);
    if (data)
        memcpy(m->app[page], data, PAGE_SIZE);
    else
        memset(m->app[page], 0, PAGE_SIZE);
    m->perm[page] = writable ? 2 : 1;
}

static void m_protect(void *ctx, uint64_t page, int protect)
{
    struct fmem *m = ctx;
    if (m->perm[page]) m->perm[page] = protect ? 1 : 2;
}

static void m_protect_range(void *ctx, uint64_t first, uint64_t count)
{
    struct fmem *m = ctx;
    for (uint64_t p = first; p < first + count; p++) {
        if (m->perm[p] != 2)
            fx_fail("node %d: page %" PRIu64 " write-protected in a run of %" PRIu64
                    " from %" PRIu64 ", but it is %s",
                    m->node, p, count, first, m->perm[p] ? "read-only already" : "not present");
        m->perm[p] = 1;
    }
    F.protect_runs++;
}

static void m_unmap(void *ctx, uint64_t page)
{
    struct fmem *m = ctx;
    if (homes(m, page))
        fx_fail("node %d: page %" PRIu64 " it homes dropped like a copy (its store with it)",
                m->node, page);
    m->perm[page] = 0;
    memset(m->app[page], 0xEE, PAGE_SIZE); /* a stale read of a dropped page shows */
}

/* The engine promises that it has no copy of any page of the range any more and homes none. */
static void m_unmap_range(void *ctx, uint64_t first, uint64_t count)
{
    struct fmem *m = ctx;
    for (uint64_t p = first; p < first + count; p++) {
        uint8_t st = atomic_load(&F.n[m->node]->pstate[p]);
        if (st == COH_S || st == COH_M || st == COH_SM_A)
            fx_fail("node %d: page %" PRIu64 " dropped in a range (%" PRIu64 "-%" PRIu64
                    ") while its copy is in use (%s)",
                    m->node, p, first, first + count - 1, coh_nstate_name(st));
        if (m->perm[p])
            m_unmap(ctx, p);
        else if (homes(m, p))
            fx_fail("node %d: page %" PRIu64 " it homes inside a range of dropped copies", m->node,
                    p);
    }
    F.range_drops++;
    F.range_multi += count > 1;
}

static void m_reset(void *ctx, uint64_t first, uint64_t count)
{
    struct fmem *m = ctx;
    for (uint64_t p = first; p < first + count; p++) {
        m->perm[p] = 0;
        memset(m->app[p], 0, PAGE_SIZE);
        memset(m->store[p], 0, PAGE_SIZE);
    }
}

static const void *m_page(void *ctx, uint64_t page)
{
    struct fmem *m = ctx;
    if (!m->perm[page])
        fx_fail("node %d: the engine read its copy of page %" PRIu64 ", which is not present",
                m->node, page);
    return view(m, page);
}

static void *m_store(void *ctx, uint64_t page)
{
    struct fmem *m = ctx;
    return m->store[page];
}

static void *m_twin(void *ctx, uint64_t page)
{
    struct fmem *m = ctx;
    m->has_twin[page] = 1;
    return m->twin[page];
}

static void m_twin_drop(void *ctx, uint64_t page)
{
    struct fmem *m = ctx;
    if (!m->has_twin[page])
        fx_fail("node %d: the engine dropped a twin of page %" PRIu64 " it never made", m->node,
                page);
    m->has_twin[page] = 0;
    memset(m->twin[page], 0xDD, PAGE_SIZE);
}

static void m_map_home(void *ctx, uint64_t page, int writable)
{
    struct fmem *m = ctx;
    if (!homes(m, page))
        fx_fail("node %d: page %" PRIu64 " shown from the store of a node that does not home it",
                m->node, page);
    if (m->perm[page])
        fx_fail("node %d: page %" PRIu64 " shown while present (UFFDIO_CONTINUE would fail)",
                m->node, page);
    m->perm[page] = writable ? 2 : 1;
    F.shown_home++;
}

static void m_unmap_home(void *ctx, uint64_t page)
{
    struct fmem *m = ctx;
    if (!homes(m, page))
        fx_fail("node %d: page %" PRIu64 " hidden as homed by a node that does not home it",
                m->node, page);
    m->perm[page] = 0;
}

/* One-sided mutexes: with one copy, a node's own lock table, so that its threads lock there and
 * the others' requests by message are served through it; with --onesided, every node's, as
 * co-located nodes map each other's (region.c). */
/* Whether nodes a and b run on different hosts (--remote): neither maps the other's memory. */
static int across(int a, int b)
{
    return F.remote >= 0 && (a == F.remote) != (b == F.remote);
}

static struct dsm_lock_slot *m_lock_table(void *ctx, int node)
{
    struct fmem *m = ctx;
    if (node < 0 || node >= F.nn) fx_fail("node %d: asked for node %d's lock table", m->node, node);
    return node == m->node || (F.onesided && !across(m->node, node)) ? F.mem[node]->locks : NULL;
}

static const struct dsm_mem_ops fx_mem_ops_one_copy = {
    .map = m_map,
    .protect = m_protect,
    .protect_range = m_protect_range,
    .unmap = m_unmap,
    .unmap_range = m_unmap_range,
    .reset = m_reset,
    .page = m_page,
    .store = m_store,
    .twin = m_twin,
    .twin_drop = m_twin_drop,
    .map_home = m_map_home,
    .unmap_home = m_unmap_home,
    .lock_table = m_lock_table,
};

/* One-sided page service: every node's store is readable by every other node, as co-located
 * nodes' memory files are (region.c). */
static int m_peer_readable(void *ctx, int node)
{
    struct fmem *m = ctx;
    return node != m->node && node >= 0 && node < F.nn && !across(m->node, node);
}

static const void *m_peer_store(void *ctx, int node, uint64_t page)
{
    struct fmem *m = ctx;
    if (node == m->node || node < 0 || node >= F.nn || across(m->node, node) ||
        dsm_home_of(F.n[node], page) != node)
        fx_fail("node %d: asked for node %d's store of page %" PRIu64 ", which that node does "
                "not home",
                m->node, node, page);
    return F.mem[node]->store[page];
}

/* An in-place change of a copy of a page homed elsewhere (`what`) needs it present with
 * permission `perm` (1 read-only, 2 writable). */
static void in_place(struct fmem *m, uint64_t page, int perm, const char *what)
{
    if (homes(m, page) || m->perm[page] != perm)
        fx_fail("node %d: %s page %" PRIu64 " in place, which is %s", m->node, what, page,
                homes(m, page)       ? "its own"
                : m->perm[page] == 1 ? "read-only"
                : m->perm[page] == 2 ? "writable"
                                     : "not present");
}

static void m_refresh(void *ctx, int node, uint64_t page)
{
    struct fmem *m = ctx;
    in_place(m, page, 1, "refreshed");
    memcpy(m->app[page], m_peer_store(ctx, node, page), PAGE_SIZE);
    F.refreshes++;
}

static void *m_view(void *ctx, uint64_t page)
{
    struct fmem *m = ctx;
    in_place(m, page, 2, "merged into");
    if (!m->has_twin[page])
        fx_fail("node %d: merged into page %" PRIu64 ", which has no twin", m->node, page);
    F.merges++;
    return m->app[page];
}

/* The shared directory: every node's, to every node, as co-located nodes map each other's
 * (region.c). */
static uint64_t *m_dir_words(void *ctx, int node, uint64_t page)
{
    struct fmem *m = ctx;
    if (node < 0 || node >= F.nn || page >= NPAGES)
        fx_fail("node %d: asked for node %d's directory words of page %" PRIu64, m->node, node,
                page);
    return across(m->node, node) ? NULL : F.mem[node]->dirw[page];
}

static uint64_t *m_dir_watchers(void *ctx, int node)
{
    struct fmem *m = ctx;
    if (node < 0 || node >= F.nn)
        fx_fail("node %d: asked for node %d's watchers word", m->node, node);
    return across(m->node, node) ? NULL : &F.mem[node]->watchers;
}

/* fx_mem_ops_one_copy with peer_store (set in main: one table, not a second copy of it). */
static struct dsm_mem_ops fx_mem_ops_onesided;

static const struct dsm_mem_ops fx_mem_ops = {
    .map = m_map,
    .protect = m_protect,
    .protect_range = m_protect_range,
    .unmap = m_unmap,
    .unmap_range = m_unmap_range,
    .reset = m_reset,
    .page = m_page,
    .store = m_store,
    .twin = m_twin,
    .twin_drop = m_twin_drop,
};

/* ---------------------------------------------------------------- environment ops */

static uint64_t e_now(void *ctx)
{
    (void)ctx;
    return F.now;
}

static void e_wait(struct dsm_node *n, int (*cond)(void *), void *arg)
{
    struct fthread *t = F.cur;
    if (!t) fx_fail("node %d: the scheduler itself was asked to wait", n->rank);
    for (;;) {
        if (cond(arg)) break;
        if (dsm_token_try(n)) {
            dsm_progress(n);
            dsm_token_release(n);
            if (cond(arg)) break;
        }
        t->state = T_WAIT;
        swapcontext(&t->uc, &F.sched);
    }
    /* The real wait (service.c) may test a condition again after it was true (before going
     * to sleep, and then at the top of its loop): one with a side effect, such as taking a
     * lock, must remember that it succeeded. */
    if (!cond(arg)) fx_fail("node %d: a wait condition was true, then false at once", n->rank);
}

static void e_wake(struct dsm_node *n)
{
    (void)n;
}

__attribute__((noreturn)) static void e_fatal(struct dsm_node *n, const char *text)
{
    fx_fail("node %d stopped the job: %s", n->rank, text);
}

static const struct dsm_env_ops fx_env_ops = {
    .now = e_now,
    .wait = e_wait,
    .wake = e_wake,
    .fatal = e_fatal,
};

/* ---------------------------------------------------------------- transport ops */

static int t_send(struct dsm_tp *tp, int dst, const struct dsm_wire_hdr *h, const void *payload)
{
    struct msg *m = malloc(sizeof *m + h->len);
    if (!m) fx_fail("out of memory");
    m->h = *h;
    m->next = NULL;
    if (h->len) memcpy(m->payload, payload, h->len);
    struct chan *c = &F.ch[tp->rank][dst];
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    c->len++;
    return 0;
}

static void t_flush(struct dsm_tp *tp)
{
    (void)tp;
}

/* Messages move only when the scheduler says so (deliver steps). */
static int t_poll(struct dsm_tp *tp)
{
    (void)tp;
    return 0;
}

static int t_wait(struct dsm_tp *tp, int arm, long timeout_us)
{
    (void)tp, (void)arm, (void)timeout_us;
    return 0;
}

static void t_kick(struct dsm_tp *tp)
{
    (void)tp;
}

static void t_destroy(struct dsm_tp *tp)
{
    (void)tp;
}

static const struct dsm_tp_ops fx_tp_ops = {
    .name = "fixture",
    .send = t_send,
    .flush = t_flush,
    .poll = t_poll,
    .wait = t_wait,
    .kick = t_kick,
    .destroy = t_destroy,
};

/* ---------------------------------------------------------------- checks */

static int page_unchecked(uint64_t p)
{
    return F.freeing && p >= F.freeing_first && p < F.freeing_first + F.freeing_count;
}

/* Every step compares the first CHECKED bytes of each copy (where the data words are);
 * every 64th step and the last compare whole pages (dsm_malloc blocks lie anywhere). */
/* The bounded cache (--cache): its count is exactly the copies of remote pages a node has
 * (or is fetching), and it stays within its size unless the node said it could not. */
static void check_cache(void)
{
    for (int k = 0; k < F.nn && F.cache; k++) {
        struct dsm_node *n = F.n[k];
        uint64_t copies = 0;
        for (uint64_t p = 0; p < NPAGES; p++)
            copies += dsm_home_of(n, p) != HOME_NONE && dsm_home_of(n, p) != k &&
                      atomic_load(&n->pstate[p]) != COH_I;
        uint64_t counted = atomic_load(&n->ev_n);
        if (copies != counted)
            fx_fail("node %d: the page cache counts %" PRIu64 " remote copies, there are %" PRIu64,
                    k, counted, copies);
        if (counted > F.cache && !atomic_load(&n->ev_st.stuck))
            fx_fail("node %d: %" PRIu64 " remote copies in a cache of %" PRIu64
                    " pages, and no overrun was reported",
                    k, counted, F.cache);
    }
}

static void check_invariants(int whole)
{
    size_t len = whole ? PAGE_SIZE : CHECKED;
    check_cache();
    for (uint64_t p = 0; p < NPAGES; p++) {
        /* Release consistency lets copies differ and writers coexist between synchronisation
         * points: its pages are checked where the program synchronised (reads under a lock,
         * after a barrier: rd()). */
        if (F.n[0]->proto[p] == DSM_PROTO_RC) continue;
        int writers = 0, readers = 0;
        for (int k = 0; k < F.nn; k++) {
            writers += F.mem[k]->perm[p] == 2;
            readers += F.mem[k]->perm[p] == 1;
        }
        if (writers > 1 || (writers && readers))
            fx_fail("page %" PRIu64 ": %d writable and %d read-only copies at once", p, writers,
                    readers);
        if (page_unchecked(p)) continue;
        for (int k = 0; k < F.nn; k++)
            if (F.mem[k]->perm[p] && memcmp(view(F.mem[k], p), F.golden[p], len)) {
                int w = 0;
                while (view(F.mem[k], p)[w] == F.golden[p][w]) w++;
                fx_fail("page %" PRIu64 ": node %d's copy differs from the last written "
                        "value at byte %d",
                        p, k, w);
            }
    }
}

/* ---------------------------------------------------------------- application operations */

static void yield(void)
{
    struct fthread *t = F.cur;
    t->state = T_RUN;
    swapcontext(&t->uc, &F.sched);
}

static void doing(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void doing(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(F.cur->doing, sizeof F.cur->doing, fmt, ap);
    va_end(ap);
    note("thread %d.%d: %s", F.cur->node, F.cur->idx, F.cur->doing);
}

static struct dsm_node *me(void)
{
    return F.n[F.cur->node];
}

static uint64_t page_of(uint64_t addr)
{
    return dsm_node_page_of(me(), addr);
}

/* What the SIGBUS handler does: the access is retried until the page allows it. */
static void touch(uint64_t addr, int write)
{
    struct fmem *m = F.mem[F.cur->node];
    uint64_t p = page_of(addr);
    while (m->perm[p] < (write ? 2 : 1)) {
        dsm_access(me(), p, write, 1, (uint32_t)(addr & (PAGE_SIZE - 1)));
        /* The return from the signal handler: others may act before the access is retried
         * (what the hold after a grant is for). */
        yield();
    }
}

static uint64_t rd(uint64_t addr)
{
    touch(addr, 0);
    uint64_t p = page_of(addr), off = addr & (PAGE_SIZE - 1), v, want;
    memcpy(&v, &view(F.mem[F.cur->node], p)[off], 8);
    memcpy(&want, &F.golden[p][off], 8);
    if (v != want)
        fx_fail("node %d read %" PRIu64 " at page %" PRIu64 "+%" PRIu64 ", but the last value "
                "written there is %" PRIu64,
                F.cur->node, v, p, off, want);
    return v;
}

static void wr(uint64_t addr, uint64_t v)
{
    touch(addr, 1);
    uint64_t p = page_of(addr), off = addr & (PAGE_SIZE - 1);
    memcpy(&view(F.mem[F.cur->node], p)[off], &v, 8);
    memcpy(&F.golden[p][off], &v, 8);
}

static uint64_t data_word(uint64_t base, int pages, uint64_t r)
{
    return base + (r % (uint64_t)pages) * PAGE_SIZE + ((r >> 8) % 8) * 8;
}

static uint64_t mutex_addr(int i)
{
    return F.s_addr + (uint64_t)(i % F.s_pages) * PAGE_SIZE + 1024 + 16 * (uint64_t)i;
}

static uint64_t counter_addr(int i)
{
    return F.s_addr + (uint64_t)((i + 1) % F.s_pages) * PAGE_SIZE + 64 + 8 * (uint64_t)i;
}

/* RC memory: page i % r_pages, word 8 + i: the counters of the mutexes, so that several
 * nodes write different words of one page under different locks (multiple writers). */
static uint64_t rc_counter_addr(int i)
{
    return F.r_addr + (uint64_t)(i % F.r_pages) * PAGE_SIZE + 64 + 8 * (uint64_t)i;
}

static uint64_t next_value(void)
{
    static uint64_t v;
    return ++v;
}

static void locked_inc(int i, int try, int in_rc)
{
    struct dsm_node *n = me();
    int rc;
    if (try) {
        doing("trylock mutex %d", i);
        rc = dsm_node_mutex_trylock(n, mutex_addr(i));
        if (rc == DSM_EBUSY) return;
    } else {
        doing("lock mutex %d", i);
        rc = dsm_node_mutex_lock(n, mutex_addr(i));
    }
    if (rc) fx_fail("node %d: locking mutex %d returned %d", F.cur->node, i, rc);
    int id = (int)(F.cur - F.th) + 1;
    if (F.lock_holder[i])
        fx_fail("mutex %d granted to thread %d.%d while thread %d.%d holds it", i, F.cur->node,
                F.cur->idx, F.th[F.lock_holder[i] - 1].node, F.th[F.lock_holder[i] - 1].idx);
    F.lock_holder[i] = id;
    uint64_t a = in_rc ? rc_counter_addr(i) : counter_addr(i);
    doing("increment the %s counter of mutex %d", in_rc ? "RC" : "SC", i);
    uint64_t c = rd(a); /* under the lock: data-race-free, so the last value in RC too */
    yield();
    wr(a, c + 1);
    if (in_rc)
        F.rc_incs[i]++;
    else
        F.lock_incs[i]++;
    yield();
    F.lock_holder[i] = 0;
    doing("unlock mutex %d", i);
    if ((rc = dsm_node_mutex_unlock(n, mutex_addr(i))))
        fx_fail("node %d: unlocking mutex %d returned %d", F.cur->node, i, rc);
}

/* One random operation on the stable allocation (S), the arena, or (thread 0) V. */
static void random_op(struct fthread *t)
{
    uint64_t r = splitmix(&t->rng);
    int use_v = t->idx == 0 && (r & 1);
    uint64_t base = use_v ? F.v_addr[t->node] : F.s_addr;
    int pages = use_v ? F.v_pages : F.s_pages;
    switch ((r >> 1) % 10) {
    case 0:
    case 1: {
        uint64_t a = data_word(base, pages, r >> 5);
        doing("read %s page %" PRIu64, use_v ? "V" : "S", page_of(a));
        rd(a);
        break;
    }
    case 2:
    case 3: {
        uint64_t a = data_word(base, pages, r >> 5);
        doing("write %s page %" PRIu64, use_v ? "V" : "S", page_of(a));
        wr(a, next_value());
        break;
    }
    case 4: { /* an atomic read-modify-write: one access with the page writable */
        uint64_t a = data_word(base, pages, r >> 5);
        doing("atomic add on %s page %" PRIu64, use_v ? "V" : "S", page_of(a));
        touch(a, 1);
        wr(a, rd(a) + 1);
        break;
    }
    case 5: { /* a sequential read stream: read-ahead */
        int first = (int)((r >> 5) % (uint64_t)pages);
        for (int i = first; i < pages; i++) {
            doing("sequential read of %s page %" PRIu64, use_v ? "V" : "S",
                  page_of(base + (uint64_t)i * PAGE_SIZE));
            rd(base + (uint64_t)i * PAGE_SIZE);
            yield();
        }
        break;
    }
    case 6:
    case 7:
        locked_inc((int)((r >> 5) % MAXLOCKS), (r >> 9) & 1, (r >> 10) & 1);
        break;
    case 8: { /* dsm_malloc here, written, handed to whoever frees it */
        doing("dsm_malloc");
        uint64_t a = dsm_node_malloc(me(), 8 + (size_t)((r >> 5) % 1500));
        if (!a) break;
        doing("write a dsm_malloc block at page %" PRIu64, page_of(a));
        wr(a, next_value());
        if (F.mail < MAILBOX)
            F.mailbox[F.mail++] = a;
        else
            dsm_node_free(me(), a);
        break;
    }
    case 9: /* take a block another thread (or node) allocated: read it, free it */
        if (F.mail) {
            uint64_t a = F.mailbox[--F.mail];
            doing("read a dsm_malloc block at page %" PRIu64 " (home %d)", page_of(a),
                  dsm_node_home(me(), a));
            rd(a);
            doing("dsm_free a block homed on node %d", dsm_node_home(me(), a));
            dsm_node_free(me(), a);
        }
        break;
    }
}

static void alloc_v(uint64_t *scen)
{
    struct fthread *t = F.cur;
    uint64_t r = splitmix(scen);
    int policy = (int)(r % 3);
    size_t arg = policy == DSM_PLACE_CYCLIC ? PAGE_SIZE
                 : policy == DSM_PLACE_NODE ? (r >> 8) % (uint64_t)F.nn
                                            : 0;
    doing("dsm_alloc_placed(V, %d pages, policy %d)", F.v_pages, policy);
    F.v_addr[t->node] = dsm_node_alloc_placed(me(), (size_t)F.v_pages * PAGE_SIZE, policy, arg);
    if (!F.v_addr[t->node]) fx_fail("node %d: dsm_alloc_placed of V failed", t->node);
}

static void free_v(void)
{
    struct fthread *t = F.cur;
    uint64_t first = page_of(F.v_addr[t->node]);
    if (!F.freeing) {
        F.freeing_first = first;
        F.freeing_count = (uint64_t)F.v_pages;
    }
    F.freeing++;
    doing("dsm_free(V)");
    dsm_node_free(me(), F.v_addr[t->node]);
    if (++F.freeing == 2 * F.nn) { /* every node is through: V is fresh memory again */
        F.freeing = 0;
        for (uint64_t p = first; p < first + (uint64_t)F.v_pages; p++)
            memset(F.golden[p], 0, PAGE_SIZE);
    }
}

/* Word w (of 8, at the start) of RC page pg. */
static uint64_t rc_word(int pg, int w)
{
    return F.r_addr + (uint64_t)pg * PAGE_SIZE + 8 * (uint64_t)w;
}

/* Whether word w of RC page pg is this node's to write in this phase. */
static int rc_mine(int node, int pg, int w, int phase)
{
    /* The last RC page has a single writer, node 0 (its home or not, by the placement), from
     * the second phase on: in the first every node reads it only, so node 0 becomes its
     * writer while the others hold copies (the home tells them, or they watch: rc.h). */
    return pg == F.r_pages - 1 ? node == 0 && phase > 0 : (w + phase) % F.nn == node;
}

/* Release consistency without locks: in each phase every node writes the words of every RC
 * page that are its own in this phase (multiple writers of one page, disjoint bytes), a
 * barrier, everybody reads everything (must see every write), a barrier. In odd phases a
 * node also acquires after its writes (dsm_acquire: its changes to pages others write go to
 * their homes, its copies are dropped) and reads its own words back at once: they must still
 * be there, although the write-backs may not have reached the homes yet. */
static void rc_phase(struct fthread *t, int phase)
{
    for (int pg = 0; pg < F.r_pages; pg++)
        for (int w = 0; w < 8; w++)
            if (rc_mine(t->node, pg, w, phase)) {
                uint64_t a = rc_word(pg, w);
                doing("write RC page %" PRIu64 " word %d", page_of(a), w);
                wr(a, next_value());
                yield();
            }
    if (phase % 2) {
        doing("dsm_acquire after RC writes");
        dsm_node_acquire(me());
        for (int pg = 0; pg < F.r_pages; pg++)
            for (int w = 0; w < 8; w++)
                if (rc_mine(t->node, pg, w, phase)) {
                    uint64_t a = rc_word(pg, w);
                    doing("read own RC word %d of page %" PRIu64 " after dsm_acquire", w,
                          page_of(a));
                    rd(a);
                    yield();
                }
    }
    doing("dsm_barrier (RC writes)");
    dsm_node_barrier(me());
    /* In odd phases every other page first (a stride of two: read ahead in place at a
     * stride, where a home has pages at that stride), then the rest. */
    for (int k = 0; k < F.r_pages; k++) {
        int pg = phase % 2 ? (2 * k < F.r_pages ? 2 * k : 2 * k - F.r_pages + 1) : k;
        for (int w = 0; w < 8; w++) {
            uint64_t a = rc_word(pg, w);
            doing("read RC page %" PRIu64 " word %d after the barrier", page_of(a), w);
            rd(a);
            yield();
        }
    }
    doing("dsm_barrier (RC reads)");
    dsm_node_barrier(me());
}

/* Thread 0 of each node: the collective calls, the same on every node, plus random ops. */
static void main_thread(struct fthread *t)
{
    uint64_t scen = F.seed * 7919 + 17; /* the same collective script on every node */
    doing("dsm_alloc(S)");
    F.s_addr = dsm_node_alloc_placed(me(), (size_t)F.s_pages * PAGE_SIZE,
                                     (int)(splitmix(&scen) % 2), PAGE_SIZE);
    if (!F.s_addr) fx_fail("node %d: dsm_alloc of S failed", t->node);
    alloc_v(&scen);
    doing("dsm_alloc_placed(R, %d pages, DSM_RC)", F.r_pages);
    F.r_addr = dsm_node_alloc_placed(me(), (size_t)F.r_pages * PAGE_SIZE,
                                     (int)(splitmix(&scen) % 2) | DSM_RC, PAGE_SIZE);
    if (!F.r_addr) fx_fail("node %d: dsm_alloc of R failed", t->node);
    F.s_ready[t->node] = 1;
    for (int ph = 0; ph < F.phases; ph++) {
        if (F.scenario == 0) rc_phase(t, ph);
        if (F.scenario == 1) {
            /* The regression: other nodes own V's pages, this one reads them in sequence
             * (read-ahead), and the free follows at once. */
            for (int i = 0; i < F.v_pages; i++) {
                uint64_t a = F.v_addr[t->node] + (uint64_t)i * PAGE_SIZE;
                if (t->node == F.nn - 1) {
                    doing("write V page %" PRIu64, page_of(a));
                    wr(a, next_value());
                } else if (t->node == 1 % F.nn && i < 2) {
                    /* Two reads start a stream: the rest of V is read ahead, and the free
                     * below comes while those requests may still be in flight. */
                    doing("sequential read of V page %" PRIu64, page_of(a));
                    rd(a);
                }
                yield();
            }
        } else {
            for (int i = 0; i < F.ops; i++) {
                random_op(t);
                t->progress++;
                yield();
            }
        }
        if (splitmix(&scen) & 1) {
            doing("dsm_barrier");
            dsm_node_barrier(me());
        }
        free_v();
        alloc_v(&scen);
    }
    doing("final dsm_barrier");
    dsm_node_barrier(me());
}

static void other_thread(struct fthread *t)
{
    doing("wait for S");
    while (!F.s_ready[t->node]) yield();
    for (int i = 0; i < F.phases * F.ops; i++) {
        random_op(t);
        t->progress++;
        yield();
    }
}

static void thread_entry(unsigned lo, unsigned hi)
{
    (void)hi;
    struct fthread *t = &F.th[lo];
    F.cur = t;
    if (t->idx == 0)
        main_thread(t);
    else
        other_thread(t);
    snprintf(t->doing, sizeof t->doing, "done");
    t->state = T_DONE;
    swapcontext(&t->uc, &F.sched);
}

/* ---------------------------------------------------------------- the scheduler */

static void set_log_rank(int k)
{
    dsm_log_rank = k;
}

static void deliver(int s, int d)
{
    struct chan *c = &F.ch[s][d];
    struct msg *m = c->head;
    c->head = m->next;
    if (!c->head) c->tail = NULL;
    c->len--;
    note("deliver %s page/arg %" PRIu64 " flags %u aux %u: node %d -> node %d",
         dsm_wire_type_name(m->h.type), m->h.arg0, m->h.flags, m->h.aux, s, d);
    struct dsm_node *n = F.n[d];
    set_log_rank(d);
    if (!dsm_token_try(n)) fx_fail("node %d's token is held between steps", d);
    dsm_deliver(n, &m->h, m->h.len ? m->payload : NULL);
    dsm_progress(n);
    dsm_token_release(n);
    free(m);
}

static void resume(struct fthread *t)
{
    set_log_rank(t->node);
    F.cur = t;
    if (t->state == T_NEW) t->state = T_RUN;
    swapcontext(&F.sched, &t->uc);
    F.cur = NULL;
}

/* A service thread's look: run the engine of one node (expired holds, local queue). */
static void service(int k)
{
    struct dsm_node *n = F.n[k];
    set_log_rank(k);
    if (!dsm_token_try(n)) fx_fail("node %d's token is held between steps", k);
    int h = dsm_progress(n);
    int e = dsm_evict_background(n); /* the bounded cache's low-water mark */
    if (e) dsm_progress(n);
    dsm_token_release(n);
    if (h) note("service thread of node %d handled %d messages", k, h);
    if (e) note("service thread of node %d evicted %d pages", k, e);
}

static int in_flight(void)
{
    int m = 0;
    for (int s = 0; s < F.nn; s++)
        for (int d = 0; d < F.nn; d++) m += F.ch[s][d].len;
    return m;
}

static uint64_t next_due(void)
{
    uint64_t due = 0;
    for (int k = 0; k < F.nn; k++) {
        uint64_t t = dsm_deferred_due(F.n[k]);
        if (t && (!due || t < due)) due = t;
    }
    return due;
}

/* Everything quiet and someone still waiting: run every waiting thread once more; if none of
 * them gets anywhere and no message appears, they never will. */
static void check_stuck(void)
{
    long before[MAXN * MAXT];
    int nth = F.nn * F.nt;
    for (int i = 0; i < nth; i++) before[i] = F.th[i].state == T_DONE ? -1 : F.th[i].progress;
    char was[MAXN * MAXT][96];
    for (int i = 0; i < nth; i++) memcpy(was[i], F.th[i].doing, sizeof was[i]);
    for (int i = 0; i < nth; i++)
        if (F.th[i].state != T_DONE) resume(&F.th[i]);
    if (in_flight() || next_due()) return;
    for (int i = 0; i < nth; i++)
        if (F.th[i].state == T_DONE || F.th[i].progress != before[i] ||
            strcmp(F.th[i].doing, was[i]) || F.th[i].state != T_WAIT)
            return;
    fx_fail("every thread that has not finished waits and nothing is in flight: a lost "
            "wake-up or a deadlock");
}

static void run_cluster(void)
{
    int nth = F.nn * F.nt;
    for (;;) {
        check_invariants((F.steps & 63) == 0);
        int live = 0, waiting = 0;
        for (int i = 0; i < nth; i++) {
            live += F.th[i].state != T_DONE;
            waiting += F.th[i].state == T_WAIT;
        }
        int msgs = in_flight();
        uint64_t due = next_due();
        if (!live && !msgs && !due) break;
        if (++F.steps > STEP_LIMIT)
            fx_fail("no end after %d steps: a livelock (pages or locks passed back and forth "
                    "without the threads getting anywhere)",
                    STEP_LIMIT);
        if (!msgs && !due && live && waiting == live) {
            check_stuck();
            continue;
        }
        /* Choices: each nonempty channel, each unfinished thread, a service look, time. */
        int opts[MAXN * MAXN + MAXN * MAXT + 2][2], k = 0;
        for (int s = 0; s < F.nn; s++)
            for (int d = 0; d < F.nn; d++)
                if (F.ch[s][d].len) opts[k][0] = 0, opts[k][1] = s * MAXN + d, k++;
        for (int i = 0; i < nth; i++)
            if (F.th[i].state != T_DONE) opts[k][0] = 1, opts[k][1] = i, k++;
        opts[k][0] = 2, opts[k][1] = 0, k++;
        if (due) opts[k][0] = 3, opts[k][1] = 0, k++;
        int c = choose(k);
        switch (opts[c][0]) {
        case 0:
            deliver(opts[c][1] / MAXN, opts[c][1] % MAXN);
            break;
        case 1:
            resume(&F.th[opts[c][1]]);
            break;
        case 2:
            service(choose(F.nn));
            break;
        case 3: /* time passes up to the next hold's end */
            if (due > F.now) F.now = due;
            note("time advances to %" PRIu64 " us", F.now / 1000);
            service(choose(F.nn));
            break;
        }
        F.now += 100; /* every step takes a little time */
    }
    check_invariants(1);
    /* Every write to RC memory was released (unlocks, barriers): each home's store must hold
     * the last value of every word - no write-back lost, none applied over a newer one. */
    for (uint64_t p = 0; p < NPAGES; p++) {
        if (F.n[0]->proto[p] != DSM_PROTO_RC || dsm_home_of(F.n[0], p) == HOME_NONE) continue;
        int h = dsm_home_of(F.n[0], p);
        /* A page its home alone writes stays in the home's own copy until someone asks. */
        const uint8_t *home_copy =
            rc_home_flush((const uint8_t *)&F.n[h]->pstate[p], &F.n[h]->rcx[p])
                ? view(F.mem[h], p)
                : F.mem[h]->store[p];
        if (memcmp(home_copy, F.golden[p], CHECKED)) {
            int w = 0;
            while (home_copy[w] == F.golden[p][w]) w++;
            fx_fail("RC page %" PRIu64 ": the home's copy differs from the last written value "
                    "at byte %d after every write was released",
                    p, w);
        }
    }
    for (int i = 0; i < MAXLOCKS; i++) {
        uint64_t v;
        uint64_t a = counter_addr(i), p = (a - F.n[0]->cfg.base) >> PAGE_SHIFT;
        memcpy(&v, &F.golden[p][a & (PAGE_SIZE - 1)], 8);
        if (v != (uint64_t)F.lock_incs[i])
            fx_fail("the counter of mutex %d is %" PRIu64 " after %ld locked increments", i, v,
                    F.lock_incs[i]);
        if (!F.r_addr) continue;
        a = rc_counter_addr(i);
        p = (a - F.n[0]->cfg.base) >> PAGE_SHIFT;
        memcpy(&v, &F.golden[p][a & (PAGE_SIZE - 1)], 8);
        if (v != (uint64_t)F.rc_incs[i])
            fx_fail("the RC counter of mutex %d is %" PRIu64 " after %ld locked increments", i, v,
                    F.rc_incs[i]);
    }
}

static void setup(uint64_t seed)
{
    for (int k = 0; k < MAXN; k++)
        for (int d = 0; d < MAXN; d++)
            while (F.ch[k][d].head) {
                struct msg *m = F.ch[k][d].head;
                F.ch[k][d].head = m->next;
                free(m);
            }
    struct fx keep = F;
    memset(&F, 0, sizeof F);
    F.exhaustive = keep.exhaustive;
    F.depth = keep.depth;
    F.script = keep.script;
    F.script_len = keep.script_len;
    F.script_cap = keep.script_cap;
    F.trail_k = keep.trail_k;
    F.trail_c = keep.trail_c;
    F.verbose = keep.verbose;
    F.expect_failure = keep.expect_failure;
    F.scenario = keep.scenario;
    F.cache = keep.cache;
    F.one_copy = keep.one_copy;
    F.onesided = keep.onesided;
    F.remote = keep.remote;
    F.onesided_fetches = keep.onesided_fetches;
    F.refreshes = keep.refreshes;
    F.merges = keep.merges;
    F.inplace_ahead = keep.inplace_ahead;
    F.registered = keep.registered;
    F.watched = keep.watched;
    F.wregistered = keep.wregistered;
    F.range_drops = keep.range_drops;
    F.range_multi = keep.range_multi;
    F.locks_onesided = keep.locks_onesided;
    F.locks_msg = keep.locks_msg;
    F.acq_skipped = keep.acq_skipped;
    F.strided = keep.strided;
    F.protect_runs = keep.protect_runs;
    F.shown_home = keep.shown_home;
    F.ev_clean = keep.ev_clean;
    F.ev_dirty = keep.ev_dirty;
    F.ev_refetch = keep.ev_refetch;
    for (int k = 0; k < MAXN; k++) F.mem[k] = keep.mem[k];
    for (int i = 0; i < MAXN * MAXT; i++) F.th[i].stack = keep.th[i].stack;

    F.seed = seed;
    uint64_t s = seed;
    F.rng = splitmix(&s);
    uint64_t r = splitmix(&s);
    if (F.scenario == 1) { /* free_readahead */
        F.nn = 3;
        F.nt = 1;
        F.phases = 2;
        F.ops = 0;
        F.hold_us = (r & 1) ? 20 : 0;
        F.prefetch = 8;
    } else {
        F.nn = 2 + (int)(r % 3);
        F.nt = 1 + (int)((r >> 4) % 2);
        F.phases = 1 + (int)((r >> 8) % 3);
        F.ops = 3 + (int)((r >> 12) % 10);
        F.hold_us = (r >> 20) & 1 ? 20 : 0;
        F.prefetch = (r >> 21) & 1 ? 8 : 0;
    }
    if (F.exhaustive) { /* small enough to enumerate */
        F.nn = 2;
        F.nt = 1;
        F.phases = 1;
        F.ops = 2;
    }
    F.s_pages = 3;
    F.v_pages = 4;
    /* Random runs: enough RC pages for a node to read three of one home in a row after a
     * barrier, so that one-sided fetches start a stream and pages are read ahead in place;
     * with --onesided, five of one home at a stride of two (rc_phase), with 2 nodes and cyclic
     * placement. */
    F.r_pages = F.exhaustive ? 3 : F.onesided ? 8 : 6;
    for (int k = 0; k < F.nn; k++) {
        if (!F.mem[k] && !(F.mem[k] = aligned_alloc(PAGE_SIZE, sizeof *F.mem[k])))
            fx_fail("out of memory");
        /* Fresh memory, as a new process has: a store left from the previous run would show
         * wherever the engine trusts a never-written page to be zeros. */
        memset(F.mem[k], 0, sizeof *F.mem[k]);
        F.mem[k]->node = k;
        struct dsm_engine_cfg ec = {.rank = k,
                                    .nodes = F.nn,
                                    .npages = NPAGES,
                                    .base = 0x500000000000ull,
                                    .memory = NPAGES * PAGE_SIZE,
                                    .hold_us = F.hold_us,
                                    .prefetch = F.prefetch,
                                    .locks_max = 64,
                                    .lq_cap = 256,
                                    .default_proto = DSM_PROTO_SC,
                                    .cache_pages = F.cache};
        char err[256];
        F.n[k] = dsm_node_create(&ec,
                                 F.onesided   ? &fx_mem_ops_onesided
                                 : F.one_copy ? &fx_mem_ops_one_copy
                                              : &fx_mem_ops,
                                 F.mem[k], &fx_env_ops, &F, err, sizeof err);
        if (!F.n[k]) fx_fail("node %d: %s", k, err);
        F.tp[k] = (struct dsm_tp){.ops = &fx_tp_ops, .rank = k, .nodes = F.nn};
        F.n[k]->tp = F.nn > 1 ? &F.tp[k] : NULL;
    }
    for (int i = 0; i < F.nn * F.nt; i++) {
        struct fthread *t = &F.th[i];
        t->node = i / F.nt;
        t->idx = i % F.nt;
        t->state = T_NEW;
        t->rng = seed * 1000003 + (uint64_t)i;
        if (!t->stack && !(t->stack = malloc(STACK_SIZE))) fx_fail("out of memory");
        getcontext(&t->uc);
        t->uc.uc_stack.ss_sp = t->stack;
        t->uc.uc_stack.ss_size = STACK_SIZE;
        t->uc.uc_link = NULL;
        makecontext(&t->uc, (void (*)(void))thread_entry, 2, (unsigned)i, 0u);
    }
}

static void teardown(void)
{
    for (int k = 0; k < F.nn; k++) {
        F.ev_clean += atomic_load(&F.n[k]->ev_st.clean);
        F.ev_dirty += atomic_load(&F.n[k]->ev_st.dirty);
        F.ev_refetch += atomic_load(&F.n[k]->ev_st.refetches);
        F.onesided_fetches += atomic_load(&F.n[k]->st.onesided_fetches);
        F.inplace_ahead += atomic_load(&F.n[k]->st.onesided_prefetched);
        F.registered += atomic_load(&F.n[k]->st.onesided_registered);
        F.watched += atomic_load(&F.n[k]->st.onesided_watched);
        F.wregistered += atomic_load(&F.n[k]->st.onesided_writers);
        F.locks_onesided += atomic_load(&F.n[k]->st.onesided_locks);
        F.acq_skipped += atomic_load(&F.n[k]->st.acquires_skipped);
        F.locks_msg +=
            atomic_load(&F.n[k]->st.lock_acquires) - atomic_load(&F.n[k]->st.onesided_locks);
        F.strided += atomic_load(&F.n[k]->st.strided_prefetched);
        dsm_node_destroy(F.n[k]);
        F.n[k] = NULL;
    }
}

static long run_one(uint64_t seed)
{
    setup(seed);
    run_cluster();
    teardown();
    return F.steps;
}

/* Enumerates every choice sequence up to the depth: after each run, the last choice that
 * has an untried alternative is advanced and everything after it starts over. */
static long explore_exhaustive(int depth, long *runs)
{
    F.depth = depth;
    F.script = calloc((size_t)depth, sizeof *F.script);
    F.trail_k = calloc((size_t)depth, sizeof *F.trail_k);
    F.trail_c = calloc((size_t)depth, sizeof *F.trail_c);
    long steps = 0;
    F.script_len = 0;
    for (;;) {
        F.trail_len = 0;
        steps += run_one(1);
        (*runs)++;
        int i = F.trail_len - 1;
        while (i >= 0 && F.trail_c[i] + 1 >= F.trail_k[i]) i--;
        if (i < 0) break;
        for (int j = 0; j < i; j++) F.script[j] = F.trail_c[j];
        F.script[i] = F.trail_c[i] + 1;
        F.script_len = i + 1;
    }
    return steps;
}

int main(int argc, char **argv)
{
    uint64_t lo = 1, hi = 200;
    int depth = 0;
    F.remote = -1;
    fx_mem_ops_onesided = fx_mem_ops_one_copy;
    fx_mem_ops_onesided.peer_readable = m_peer_readable;
    fx_mem_ops_onesided.peer_store = m_peer_store;
    fx_mem_ops_onesided.refresh = m_refresh;
    fx_mem_ops_onesided.view = m_view;
    fx_mem_ops_onesided.dir_words = m_dir_words;
    fx_mem_ops_onesided.dir_watchers = m_dir_watchers;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
            if (sscanf(argv[++i], "%" SCNu64 ":%" SCNu64, &lo, &hi) != 2 || hi < lo) {
                fprintf(stderr, "--seeds wants A:B with A <= B\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            lo = hi = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--scenario") && i + 1 < argc) {
            const char *s = argv[++i];
            if (!strcmp(s, "random"))
                F.scenario = 0;
            else if (!strcmp(s, "free_readahead"))
                F.scenario = 1;
            else {
                fprintf(stderr, "unknown scenario '%s' (random, free_readahead)\n", s);
                return 2;
            }
        } else if (!strcmp(argv[i], "--exhaustive") && i + 1 < argc) {
            depth = atoi(argv[++i]);
            F.exhaustive = 1;
        } else if (!strcmp(argv[i], "--cache") && i + 1 < argc) {
            F.cache = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--one-copy")) {
            F.one_copy = 1;
        } else if (!strcmp(argv[i], "--onesided")) {
            F.one_copy = F.onesided = 1; /* only homes with one copy can be read in place */
        } else if (!strcmp(argv[i], "--remote") && i + 1 < argc) {
            F.remote = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--verbose")) {
            F.verbose = 1;
        } else if (!strcmp(argv[i], "--expect-failure")) {
            F.expect_failure = 1;
        } else {
            fprintf(stderr,
                    "usage: %s [--seeds A:B | --seed S] [--scenario random|free_readahead] "
                    "[--exhaustive DEPTH] [--cache PAGES] [--one-copy] [--onesided] "
                    "[--remote NODE] [--expect-failure] [--verbose]\n",
                    argv[0]);
            return 2;
        }
    }
    dsm_log_level = LOG_ERROR;
    long steps = 0, runs = 0;
    if (F.exhaustive) {
        steps = explore_exhaustive(depth, &runs);
        printf("exhaustive: %ld schedules up to depth %d, %ld steps, all checks held\n", runs,
               depth, steps);
    } else {
        for (uint64_t s = lo; s <= hi; s++) {
            steps += run_one(s);
            runs++;
        }
        printf("%s: seeds %" PRIu64 "..%" PRIu64 ", %ld runs, %ld steps, all checks held\n",
               F.scenario ? "free_readahead" : "random", lo, hi, runs, steps);
    }
    if (F.cache) {
        printf("cache of %" PRIu64 " pages: %" PRIu64 " clean and %" PRIu64
               " dirty evictions, %" PRIu64 " re-fetches\n",
               F.cache, F.ev_clean, F.ev_dirty, F.ev_refetch);
        /* A cache that never evicted tested nothing. */
        if (F.exhaustive || F.scenario ? !(F.ev_clean + F.ev_dirty)
                                       : !F.ev_clean || !F.ev_dirty || !F.ev_refetch) {
            printf("FAILED: the runs never evicted a clean page, a dirty page, or re-fetched "
                   "one: the cache is not doing its job (or is too large for the scenario)\n");
            return 1;
        }
    }
    printf("release protections made as runs: %" PRIu64 "\n", F.protect_runs);
    printf("copies an acquire dropped, unmapped in ranges: %" PRIu64 " ranges, %" PRIu64
           " of several pages\n",
           F.range_drops, F.range_multi);
    if (!F.range_multi && !F.exhaustive && !F.scenario) {
        printf("FAILED: no acquire ever unmapped several copies at once\n");
        return 1;
    }
    /* A mode whose path was never taken tested nothing (a lost option once did just that). */
    if (F.one_copy) {
        printf("pages shown from the home's store: %" PRIu64 "\n", F.shown_home);
        if (!F.shown_home) {
            printf("FAILED: no home ever showed a page from its store (--one-copy unused)\n");
            return 1;
        }
        /* Lock tables: with --one-copy a node takes its own mutexes there and the others ask
         * it by message; with --onesided every node takes every mutex there (but those managed
         * across hosts, with --remote: by message, as with --one-copy). */
        printf("mutexes taken in a lock table: %" PRIu64 " (%" PRIu64
               " last unlocked by the same node: no acquire), by message: %" PRIu64 "\n",
               F.locks_onesided, F.acq_skipped, F.locks_msg);
        if (!F.exhaustive && F.scenario == 0 &&
            (!F.locks_onesided || !F.acq_skipped ||
             (F.onesided && F.remote < 0 ? F.locks_msg != 0 : !F.locks_msg))) {
            printf("FAILED: %s\n", !F.locks_onesided ? "no mutex was ever taken in a lock table"
                                   : !F.acq_skipped
                                       ? "no lock skipped its acquire (last unlocked here)"
                                   : F.onesided && F.remote < 0
                                       ? "a mutex was taken by message with every lock table mapped"
                                       : "no mutex request by message was ever served through a "
                                         "lock table");
            return 1;
        }
    }
    if (F.onesided) {
        printf("one-sided fetches: %" PRIu64 ", copies refreshed in place: %" PRIu64
               ", writable copies merged: %" PRIu64 ", pages read ahead in place: %" PRIu64
               " (at a stride: %" PRIu64 "), first reads registered in a shared directory: %" PRIu64
               ", first writes registered there: %" PRIu64
               ", new writers learned at an acquire by watching readers: %" PRIu64 "\n",
               F.onesided_fetches, F.refreshes, F.merges, F.inplace_ahead, F.strided, F.registered,
               F.wregistered, F.watched);
        /* (The exhaustive scenario is too short to write a page in the interval after a
         * refresh and acquire again, or to write a page first after others read it: only the random
         * runs reach a merge or a watching reader.) */
        if (!F.onesided_fetches || !F.refreshes || !F.registered || !F.wregistered ||
            ((!F.merges || !F.inplace_ahead || !F.strided || !F.watched) && !F.exhaustive)) {
            printf("FAILED: no page was ever %s\n",
                   !F.onesided_fetches ? "fetched one-sided"
                   : !F.refreshes      ? "refreshed in place"
                   : !F.registered     ? "registered for by its reader in a shared directory"
                   : !F.wregistered    ? "registered for by its writer in a shared directory"
                   : !F.watched        ? "given a new writer that its watching readers learned "
                                         "at their acquire"
                   : !F.merges         ? "merged with its home's store while writable"
                   : !F.inplace_ahead  ? "read ahead in place after one-sided fetches"
                                       : "read ahead in place at a stride");
            return 1;
        }
    }
    if (F.expect_failure) {
        printf("the injected bug was NOT caught\n");
        return 1;
    }
    return 0;
}

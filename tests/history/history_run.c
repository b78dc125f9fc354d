/*
 * history_run.c - a randomized history test: N nodes x T threads hammer a few shared words
 * with reads, writes and atomic RMWs, log every operation, and node 0 checks that the whole
 * history is coherent (history.c) and that no RMW update was lost.
 *
 * What it does. 9 words on 4 pages (page p homed on node p % N): some pages hold several
 * words (same cache line, same page far apart), one holds a single word. 6 words are
 * "registers": plain writes (volatile, relaxed, release or seq_cst stores), xchg, and
 * compare-exchange from the value the thread last saw (or from 0); 3 are "counters": fetch_add
 * of 1 and compare-exchange increments. Everything may be read, by volatile, relaxed, acquire
 * or seq_cst loads. Every register write writes a value unique to (node, thread, sequence);
 * counters only ever grow by 1, so their values are unique as long as RMWs are atomic. Which
 * operation each thread does is drawn from a PRNG seeded with (SEED, node, thread): the
 * operation sequences of a seed are reproducible (-s SEED), the interleaving is not. Threads
 * pause at random now and then (yielding the CPU) so that pages move between nodes often.
 *
 * Every thread logs each operation - kind, word, value read or RMW old value, value written -
 * in program order in local memory. At the end the nodes copy their logs into DSM memory
 * (node k's on pages homed on node k), and after a barrier node 0 reads them all and the final
 * values, and checks: per-location coherence (one order of each word's writes, consistent with
 * every thread's program order, in which every read returns the latest earlier write, every
 * RMW writes right after the write it read, and the final value is last) and, for counters,
 * final value == number of increments. With -o DIR every node also writes its logs to DIR
 * (history_check DIR re-checks them offline).
 *
 * Why that catches a broken DSM: a node that keeps reading a read-only copy after it should
 * have been invalidated returns a value older than one its thread (or a thread it has
 * heard from through the same word) already saw; a page installed from a stale backing copy
 * makes a word go backwards or a written value vanish; two nodes holding a page writable at
 * once make two RMWs return the same old value and the counter come out short; a page served
 * with another page's contents produces values nobody wrote there. The checker reports each
 * with the operations involved; the seed to replay is printed first.
 *
 * Release-consistent memory (-p rc). The words live in DSM_RC memory, where C11 atomics are
 * atomic only within a node and writes travel only at synchronisation, so every operation is
 * done under a dsm_mutex: NLOCKS mutexes (SC memory, managers on different nodes), word l
 * under mutex l % NLOCKS, so the words of one page are written under different mutexes at the
 * same time (several writers of one page, whose diffs must merge). The program is then
 * data-race-free, and release consistency promises it sequential consistency: the history of
 * each word must be linearizable, in the order the mutex was held. To know that order, each
 * critical section also takes a ticket: a per-mutex counter in RC memory (all on one page),
 * read and incremented under the mutex, logged in the operation's aux field. Node 0 checks,
 * besides the coherence check above: each mutex's tickets are exactly 0, 1, ..., K-1 (a
 * duplicate or a gap is a lost update of the counter itself), and replaying each mutex's
 * operations in ticket order, every read and RMW returns the value of the latest earlier write
 * and each word ends at the last value written. A stale copy kept across a lock's acquire, or a
 * diff lost at an unlock's release, makes a read return an older value than the replay's
 * (UFDSM_INJECT_RC_BUG builds show it: ctest history.selftest.rc_bug1/2). -X expects that: the
 * run succeeds only if a violation was found.
 *
 * Usage: history_run [-p sc|rc] [-t THREADS] [-i TOTAL_OPS] [-s SEED] [-d PAUSE_US] [-o DIR]
 *                    [-X]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "history.h"
#include "mn.h"

#define NPAGES      4
#define MAX_THREADS 4
#define NLOCKS      4 /* -p rc: word l is under mutex l % NLOCKS */

static const struct locdef {
    int page, offset; /* bytes into the page */
    bool counter;
} locs[] = {
    {0, 0, false},  {0, 8, false},    {0, 2048, true}, /* three words on one page */
    {1, 0, false},                                     /* alone on its page */
    {2, 64, false}, {2, 1024, false}, {2, 4000, true},
    {3, 0, true},   {3, 16, false}, /* a counter and a register in one cache line */
};
#define NLOC ((int)(sizeof locs / sizeof locs[0]))

static uint64_t *addr[NLOC];
static int threads = 1;
static long per_thread;
static uint64_t seed;
static uint64_t pause_ns;
static hev_t *logs[MAX_THREADS];
static bool rc;                    /* -p rc: the words in RC memory, every operation locked */
static dsm_mutex_t *mutex[NLOCKS]; /* -p rc: SC memory, one per page */
static volatile uint64_t *ticket;  /* -p rc: ticket[k * 8]: mutex k's next ticket (RC memory) */

#define AT(p) ((_Atomic uint64_t *)(p))

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A load of one of four kinds; aux records which. */
static uint64_t do_load(uint64_t *p, unsigned how)
{
    switch (how & 3) {
    case 0:
        return *(volatile uint64_t *)p;
    case 1:
        return atomic_load_explicit(AT(p), memory_order_relaxed);
    case 2:
        return atomic_load_explicit(AT(p), memory_order_acquire);
    default:
        return atomic_load_explicit(AT(p), memory_order_seq_cst);
    }
}

static void do_store(uint64_t *p, uint64_t v, unsigned how)
{
    switch (how & 3) {
    case 0:
        *(volatile uint64_t *)p = v;
        break;
    case 1:
        atomic_store_explicit(AT(p), v, memory_order_relaxed);
        break;
    case 2:
        atomic_store_explicit(AT(p), v, memory_order_release);
        break;
    default:
        atomic_store_explicit(AT(p), v, memory_order_seq_cst);
        break;
    }
}

static void *worker(void *arg)
{
    const int me = (int)(intptr_t)arg;
    mn_rng_t rng;
    mn_rng_seed(&rng, mn_mix(seed ^ mn_mix(((uint64_t)mn_rank << 8) | (uint64_t)me)));
    hev_t *log = logs[me];
    uint64_t seen[NLOC] = {0}; /* the last value this thread saw in each word */
    const uint64_t tag = ((uint64_t)(mn_rank + 1) << 56) | ((uint64_t)(me + 1) << 48);
    int hot = 0;
    for (long i = 0; i < per_thread; i++) {
        uint64_t r = mn_rand(&rng);
        /* Half of the time the thread's current favourite word (it changes every 64
         * operations or so), so that each thread also works on one word for a while. */
        if ((r & 63) == 0) hot = (int)((r >> 6) % NLOC);
        int l = (r >> 12) & 1 ? hot : (int)((r >> 13) % NLOC);
        uint64_t *p = addr[l];
        unsigned how = (unsigned)(r >> 24) & 3, pick = (unsigned)((r >> 32) % 100);
        hev_t e = {.loc = (uint16_t)l, .aux = how};
        const uint64_t uniq = tag | (uint64_t)(i + 1);
        const int k = l % NLOCKS;
        if (rc) {
            CHECK(dsm_mutex_lock(mutex[k]) == 0, "dsm_mutex_lock failed (see the log line above)");
            uint64_t tk = ticket[k * 8];
            CHECK(tk < UINT32_MAX, "mutex %d's ticket %llu does not fit the log's aux field", k,
                  (unsigned long long)tk);
            ticket[k * 8] = tk + 1;
            e.aux = (uint32_t)tk;
        }
        if (pick < 40) {
            e.kind = HK_READ;
            e.rd = do_load(p, how);
            seen[l] = e.rd;
        } else if (locs[l].counter) {
            if (pick < 80) {
                e.kind = HK_FADD;
                e.rd = how & 1 ? atomic_fetch_add_explicit(AT(p), 1, memory_order_relaxed)
                               : atomic_fetch_add(AT(p), 1);
                e.wr = e.rd + 1;
            } else {
                uint64_t exp = seen[l];
                e.kind = HK_CAS;
                e.ok = (uint8_t)atomic_compare_exchange_strong(AT(p), &exp, seen[l] + 1);
                e.rd = exp; /* the old value, whether or not it succeeded */
                e.wr = e.ok ? exp + 1 : 0;
            }
            seen[l] = e.ok || e.kind == HK_FADD ? e.rd + 1 : e.rd;
        } else if (pick < 70) {
            e.kind = HK_WRITE;
            e.wr = uniq;
            do_store(p, uniq, how);
            seen[l] = uniq;
        } else if (pick < 85) {
            uint64_t exp = (r >> 40) % 5 ? seen[l] : 0;
            e.kind = HK_CAS;
            e.ok = (uint8_t)atomic_compare_exchange_strong(AT(p), &exp, uniq);
            e.rd = exp;
            e.wr = e.ok ? uniq : 0;
            seen[l] = e.ok ? uniq : exp;
        } else {
            e.kind = HK_XCHG;
            e.wr = uniq;
            e.rd = atomic_exchange(AT(p), uniq);
            seen[l] = uniq;
        }
        if (rc) CHECK(dsm_mutex_unlock(mutex[k]) == 0, "dsm_mutex_unlock failed (see above)");
        log[i] = e;
        /* A pause of up to pause_ns after every operation, yielding the CPU (a busy pause
         * would keep this node's protocol engine from serving the others): without it a
         * thread runs thousands of operations on the pages it holds before another node gets
         * a turn, and few reads see another node's writes. */
        if (pause_ns) {
            uint64_t until = now_ns() + (r >> 44) % pause_ns;
            while (now_ns() < until) sched_yield();
        }
    }
    return NULL;
}

typedef struct tref {
    uint32_t ticket;
    int th;
    size_t idx;
} tref_t;

static int cmp_tref(const void *a, const void *b)
{
    const tref_t *x = a, *y = b;
    return (x->ticket > y->ticket) - (x->ticket < y->ticket);
}

/* -p rc: the history of every word is linearizable in the order its mutex was held. For each
 * mutex: its tickets are exactly 0..K-1; replayed in ticket order, each operation reads the
 * latest value written before it (an RMW's old value, a failed CAS's value included) and each
 * word ends at its last write. Prints the first max_reports violations; returns how many. */
static size_t check_locked(const hist_thread_t *ht, int nth, const uint64_t *final, int max_reports)
{
    size_t bad = 0;
    for (int k = 0; k < NLOCKS; k++) {
        size_t n = 0;
        for (int t = 0; t < nth; t++)
            for (size_t i = 0; i < ht[t].n; i++) n += ht[t].ev[i].loc % NLOCKS == k;
        tref_t *order = calloc(n ? n : 1, sizeof *order);
        CHECK(order, "out of memory for the linearizability check");
        size_t m = 0;
        for (int t = 0; t < nth; t++)
            for (size_t i = 0; i < ht[t].n; i++)
                if (ht[t].ev[i].loc % NLOCKS == k) order[m++] = (tref_t){ht[t].ev[i].aux, t, i};
        qsort(order, n, sizeof *order, cmp_tref);
        uint64_t cur[NLOC] = {0};
        for (size_t j = 0; j < n; j++) {
            const tref_t *o = &order[j];
            const hev_t *e = &ht[o->th].ev[o->idx];
            /* tickets 0, 1, 2, ...: a repeat is a lost increment of the counter (the next
             * holder read a stale copy), a gap a ticket nobody logged; the replay goes on in
             * ticket order either way */
            uint32_t due = j ? order[j - 1].ticket + 1 : 0;
            if (o->ticket != due && bad++ < (size_t)max_reports)
                printf("VIOLATION: mutex %d: node %d thread %d op %zu took ticket %u where %u was "
                       "due: %s\n",
                       k, ht[o->th].node, ht[o->th].thread, o->idx, o->ticket, due,
                       o->ticket < due ? "a ticket taken twice (the previous holder's increment "
                                         "of the counter under the mutex was not seen)"
                                       : "a ticket skipped");
            if (hev_reads(e) && e->rd != cur[e->loc]) {
                if (bad++ < (size_t)max_reports)
                    printf("VIOLATION: word %d, ticket %u of mutex %d (node %d thread %d op %zu, "
                           "kind %d): read %#llx, but the latest write before it in the mutex's "
                           "order wrote %#llx (a stale copy kept across the lock's acquire, or "
                           "a write lost at the previous holder's release)\n",
                           e->loc, o->ticket, k, ht[o->th].node, ht[o->th].thread, o->idx, e->kind,
                           (unsigned long long)e->rd, (unsigned long long)cur[e->loc]);
            }
            if (hev_writes(e)) cur[e->loc] = e->wr;
        }
        for (int l = k; l < NLOC; l += NLOCKS)
            if (final[l] != cur[l] && bad++ < (size_t)max_reports)
                printf("VIOLATION: word %d ends at %#llx, but its last write in mutex %d's order "
                       "wrote %#llx (a lost or reordered write-back)\n",
                       l, (unsigned long long) final[l], k, (unsigned long long)cur[l]);
        free(order);
    }
    return bad;
}

static void write_file(const char *dir, const char *name, const void *hdr, size_t hlen,
                       const void *data, size_t dlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot create %s: %s", path, strerror(errno));
    CHECK(fwrite(hdr, 1, hlen, f) == hlen && (!dlen || fwrite(data, 1, dlen, f) == dlen) &&
              fclose(f) == 0,
          "cannot write %s", path);
}

int main(int argc, char **argv)
{
    long total = 60000, pause_us = 30;
    const char *dir = NULL;
    bool seeded = false, expect_bug = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc) {
            const char *pr = argv[++i];
            if (strcmp(pr, "sc") && strcmp(pr, "rc")) {
                fprintf(stderr, "-p %s: the protocol is sc or rc\n", pr);
                return 2;
            }
            rc = !strcmp(pr, "rc");
        } else if (!strcmp(argv[i], "-X")) {
            expect_bug = true;
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            threads = (int)mn_parse_long("thread count", argv[++i], 1, MAX_THREADS);
        } else if (!strcmp(argv[i], "-i") && i + 1 < argc) {
            total = mn_parse_long("operation count", argv[++i], 1, 100000000L);
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            seed = (uint64_t)mn_parse_long("seed", argv[++i], 0, 0x7fffffffffffffffL);
            seeded = true;
        } else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            pause_us = mn_parse_long("pause", argv[++i], 0, 1000000L);
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: %s [-p sc|rc] [-t THREADS] [-i TOTAL_OPS] [-s SEED] [-d PAUSE_US] "
                    "[-o DIR] [-X]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!seeded) { /* every node must use the same seed: derive it from the job */
        const char *job = getenv("DSM_JOB");
        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
        for (const char *c = job ? job : ""; *c; c++)
            h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
        seed = mn_mix(h) >> 16;
    }
    pause_ns = (uint64_t)pause_us * 1000;
    mn_begin(1);
    const int N = mn_nodes;
    per_thread = total / (N * threads);
    if (per_thread < 1) per_thread = 1;
    if (mn_rank == 0)
        mn_say("history: %s memory%s, %d nodes x %d threads, %ld operations each, seed %llu "
               "(replay with -s %llu)",
               rc ? "RC" : "SC", rc ? ", every operation under a mutex" : "", N, threads,
               per_thread, (unsigned long long)seed, (unsigned long long)seed);

    char *words =
        MN_ALLOC_PLACED(NPAGES * MN_PAGE, DSM_PLACE_CYCLIC | (rc ? DSM_RC : DSM_SC), MN_PAGE);
    char *mpages = NULL;
    if (rc) {
        /* the mutexes one per page (their managers on different nodes), SC memory; the tickets
         * on one RC page homed on the last node */
        mpages = MN_ALLOC_PLACED(NLOCKS * MN_PAGE, DSM_PLACE_CYCLIC | DSM_SC, MN_PAGE);
        for (int k = 0; k < NLOCKS; k++) mutex[k] = (dsm_mutex_t *)(mpages + (size_t)k * MN_PAGE);
        ticket = MN_ALLOC_PLACED(MN_PAGE, DSM_PLACE_NODE | DSM_RC, (size_t)(N - 1));
        if (mn_rank == 0)
            for (int k = 0; k < NLOCKS; k++) CHECK(dsm_mutex_init(mutex[k]) == 0, "dsm_mutex_init");
    }
    for (int l = 0; l < NLOC; l++)
        addr[l] = (uint64_t *)(words + locs[l].page * MN_PAGE + locs[l].offset);
    for (int t = 0; t < threads; t++) {
        logs[t] = calloc((size_t)per_thread, sizeof(hev_t));
        CHECK(logs[t], "out of memory for the logs");
    }

    /* Run. */
    dsm_barrier();
    double t0 = mn_now();
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0, "pthread_create");
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    double run_s = mn_now() - t0;

    /* Ship the logs to node 0 through DSM memory: node k's part homed on node k. */
    size_t seg = (size_t)threads * (size_t)per_thread * sizeof(hev_t);
    seg = (seg + MN_PAGE - 1) / MN_PAGE * MN_PAGE;
    char *all = MN_ALLOC_PLACED((size_t)N * seg, DSM_PLACE_BLOCK, 0);
    for (int t = 0; t < threads; t++)
        memcpy(all + (size_t)mn_rank * seg + (size_t)t * (size_t)per_thread * sizeof(hev_t),
               logs[t], (size_t)per_thread * sizeof(hev_t));
    if (dir) {
        if (mkdir(dir, 0777) && errno != EEXIST)
            CHECK(0, "cannot create %s: %s", dir, strerror(errno));
        for (int t = 0; t < threads; t++) {
            hist_file_hdr_t h = {HIST_MAGIC, 1, mn_rank, t, (uint64_t)per_thread};
            char name[64];
            snprintf(name, sizeof name, HIST_LOG_FMT, mn_rank, t);
            write_file(dir, name, &h, sizeof h, logs[t], (size_t)per_thread * sizeof(hev_t));
        }
    }
    dsm_barrier();

    size_t bad = 0;
    if (mn_rank == 0) {
        double t1 = mn_now();
        uint64_t final[NLOC];
        for (int l = 0; l < NLOC; l++) final[l] = *(volatile uint64_t *)addr[l];
        hev_t *copy = malloc((size_t)N * seg);
        CHECK(copy, "out of memory for the logs");
        memcpy(copy, all, (size_t)N * seg);
        int nth = N * threads;
        hist_thread_t *ht = calloc((size_t)nth, sizeof *ht);
        CHECK(ht, "out of memory");
        for (int n = 0; n < N; n++)
            for (int t = 0; t < threads; t++)
                ht[n * threads + t] =
                    (hist_thread_t){n, t,
                                    (const hev_t *)((char *)copy + (size_t)n * seg +
                                                    (size_t)t * (size_t)per_thread * sizeof(hev_t)),
                                    (size_t)per_thread};
        hist_stats_t st;
        bad = hist_check(ht, nth, NLOC, final, stdout, 20, &st);
        /* Counters: the final value is the number of increments. */
        for (int l = 0; l < NLOC; l++) {
            if (!locs[l].counter) continue;
            uint64_t inc = 0;
            for (int k = 0; k < nth; k++)
                for (size_t i = 0; i < ht[k].n; i++)
                    inc += ht[k].ev[i].loc == l && hev_writes(&ht[k].ev[i]);
            if (final[l] != inc) {
                printf("VIOLATION: counter %d ends at %llu after %llu increments (lost updates)\n",
                       l, (unsigned long long) final[l], (unsigned long long)inc);
                bad++;
            }
        }
        if (rc) bad += check_locked(ht, nth, final, 20);
        if (dir) {
            hist_final_hdr_t h = {HIST_MAGIC, 1, N, threads, NLOC, 0, seed, (uint64_t)total};
            write_file(dir, HIST_FINAL, &h, sizeof h, final, sizeof final);
        }
        mn_say("ran %.2f s; checked %.2f s: %zu operations verified (%zu reads, %zu writes, %zu "
               "RMWs, %zu failed CAS) on %d words; %zu reads saw another thread's write, %zu "
               "another node's (%.0f%%); %zu write chains",
               run_s, mn_now() - t1, st.ops, st.reads, st.writes, st.rmws, st.cas_failed, NLOC,
               st.rf_other, st.rf_remote,
               st.reads ? 100.0 * (double)st.rf_remote / (double)st.reads : 0.0, st.chains);
        if (bad)
            mn_say(
                "FAILED: %zu violations; seed %llu (replay: dsmrun -n %d %s -p %s -t %d -i %ld -s "
                "%llu)",
                bad, (unsigned long long)seed, N, argv[0], rc ? "rc" : "sc", threads, total,
                (unsigned long long)seed);
        else if (rc)
            mn_say("linearizable: every word's operations, in the order its mutex was held, read "
                   "the latest write; no ticket lost or repeated; every word ends at its last "
                   "write");
        else
            mn_say("coherent: every word has one write order that explains every read, and no "
                   "RMW update was lost");
        if (expect_bug)
            mn_say("%s", bad ? "self-test passed: the injected protocol bug was caught"
                             : "SELF-TEST FAILED: no violation with an injected protocol bug");
        free(ht);
        free(copy);
    }
    dsm_barrier();
    dsm_free(all);
    dsm_free(words);
    if (rc) {
        dsm_free((void *)ticket);
        dsm_free(mpages);
    }
    for (int t = 0; t < threads; t++) free(logs[t]);
    dsm_finalize();
    if (expect_bug) return mn_rank == 0 && !bad ? 1 : 0;
    if (bad) return 1;
    if (mn_rank == 0) printf("history: passed on %d nodes\n", N);
    return 0;
}

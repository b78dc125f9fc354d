/*
 * history_check.c - checks saved operation histories for coherence, and proves that the
 * checker can fail.
 *
 *   history_check DIR          checks the logs history_run -o DIR wrote (every node's logs
 *                              and final.bin in one directory)
 *   history_check --break stale|lost|unwritten DIR
 *                              the same after breaking one operation of the logs: a read
 *                              returns the initial value after its thread saw a newer one, an
 *                              RMW returns another RMW's old value, or a read returns a value
 *                              nobody wrote; must report the violation (exit 1)
 *   history_check --self-test  runs the checker on hand-made histories: coherent ones must
 *                              pass, each broken one must be rejected; then on random
 *                              histories of a simulated coherent memory (must pass) and on
 *                              copies of them with one operation made to return an overwritten
 *                              or duplicated value (must fail)
 *
 * Why the self-test matters: a checker that accepts everything makes every history test pass
 * while the DSM loses updates or serves stale pages. The hand-made histories are the
 * textbook coherence violations a broken DSM produces (a read returning an overwritten value,
 * two readers disagreeing on the order of two writes, a lost RMW update, a value that was
 * never written, a final value that is not the last write, a write "from the future"), and
 * the random ones make sure it raises no false alarm on large valid histories with RMW
 * chains, and catches a single bad value among thousands.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

/* ---------------------------------------------------------------- self-test */

static int failures;

/* clang-format off */
#define R(l, v)        {HK_READ, 0, l, 0, v, 0}
#define W(l, v)        {HK_WRITE, 0, l, 0, 0, v}
#define FADD(l, o, n)  {HK_FADD, 0, l, 0, o, n}
#define CAS(l, o, n)   {HK_CAS, 1, l, 0, o, n}
#define CASF(l, o)     {HK_CAS, 0, l, 0, o, 0}
#define XCHG(l, o, n)  {HK_XCHG, 0, l, 0, o, n}
#define END            {0, 0, 0, 0, 0, 0}

typedef struct hcase {
    const char *name;
    bool coherent;      /* the expected verdict */
    const char *expect; /* a broken history: a word the report must contain */
    int nloc;
    const uint64_t *final; /* NULL: no final values */
    hev_t ev[4][8];        /* up to 4 threads, END-terminated */
} hcase_t;

static const uint64_t fin_2[] = {2}, fin_1[] = {1}, fin_3[] = {3}, fin_21[] = {2, 1};

static const hcase_t cases[] = {
    /* coherent histories */
    {"CoRR, reads in write order", true, NULL, 1, fin_2,
     {{W(0, 1), W(0, 2), END}, {R(0, 1), R(0, 2), END}, {R(0, 0), R(0, 1), END}}},
    {"two writers, readers agree", true, NULL, 1, fin_1,
     {{W(0, 1), END}, {W(0, 2), END}, {R(0, 2), R(0, 1), END}, {R(0, 0), R(0, 2), END}}},
    {"reading one's own write early", true, NULL, 1, fin_2,
     {{W(0, 1), R(0, 1), R(0, 2), END}, {W(0, 2), R(0, 2), END}}},
    {"RMW chain with readers", true, NULL, 1, fin_3,
     {{FADD(0, 0, 1), R(0, 2), END}, {R(0, 1), FADD(0, 1, 2), R(0, 3), END},
      {R(0, 0), FADD(0, 2, 3), END}}},
    {"CAS success and failure", true, NULL, 1, fin_2,
     {{CAS(0, 0, 1), CASF(0, 2), END}, {CASF(0, 0), CAS(0, 1, 2), END}}},
    {"xchg after plain writes", true, NULL, 1, fin_3,
     {{W(0, 1), XCHG(0, 2, 3), END}, {R(0, 1), W(0, 2), END}}},
    {"two locations", true, NULL, 2, fin_21,
     {{W(0, 1), W(1, 1), R(0, 2), END}, {W(0, 2), R(1, 1), END}}},
    /* broken histories */
    {"CoRR: a read returns an overwritten value", false, "cycle", 1, fin_2,
     {{W(0, 1), W(0, 2), END}, {R(0, 2), R(0, 1), END}}},
    {"own write overwritten, then read back stale", false, "cycle", 1, fin_2,
     {{W(0, 1), W(0, 2), R(0, 1), END}}},
    {"reading the initial value after a write", false, "cycle", 1, fin_1,
     {{W(0, 1), END}, {R(0, 1), R(0, 0), END}}},
    {"CoRR2: two readers disagree on the order", false, "cycle", 1, NULL,
     {{W(0, 1), END}, {W(0, 2), END}, {R(0, 1), R(0, 2), END}, {R(0, 2), R(0, 1), END}}},
    {"CoWR: each writer reads the other's write as later", false, "cycle", 1, NULL,
     {{W(0, 1), R(0, 2), END}, {W(0, 2), R(0, 1), END}}},
    {"lost update: two fetch_adds read the same value", false, "lost update", 1, fin_1,
     {{FADD(0, 0, 1), END}, {FADD(0, 0, 1), END}}},
    {"lost update: two CASes succeed from the same value", false, "lost update", 1, NULL,
     {{CAS(0, 0, 1), END}, {CAS(0, 0, 2), END}}},
    {"a write between an RMW's read and its write", false, "cycle", 1, fin_2,
     {{W(0, 1), END}, {XCHG(0, 1, 2), END}, {R(0, 1), W(0, 3), R(0, 2), END}}},
    {"a value nobody wrote", false, "never written", 1, NULL,
     {{W(0, 1), END}, {R(0, 7), END}}},
    {"a value read before its own thread wrote it", false, "afterwards", 1, NULL,
     {{R(0, 1), W(0, 1), END}}},
    {"the final value is not the last write", false, "cycle", 1, fin_1,
     {{W(0, 1), W(0, 2), END}}},
    {"the final value was overwritten by an RMW", false, "overwritten", 1, fin_1,
     {{W(0, 1), FADD(0, 1, 2), END}}},
    {"the final value was never written", false, "never written", 1, fin_3,
     {{W(0, 1), END}}},
    {"going backwards along an RMW chain", false, "backwards", 1, NULL,
     {{FADD(0, 0, 1), FADD(0, 1, 2), END}, {R(0, 2), R(0, 1), END}}},
    {"RMWs read each other's values in a circle", false, "circle", 1, NULL,
     {{XCHG(0, 2, 1), END}, {XCHG(0, 1, 2), END}}},
    {"a circle of RMWs, then the final value", false, "circle", 1, fin_3,
     {{XCHG(0, 2, 1), END}, {XCHG(0, 1, 2), END}, {W(0, 3), END}}},
};

/* clang-format on */

static size_t count_ev(const hev_t *ev)
{
    size_t n = 0;
    while (n < 8 && ev[n].kind) n++;
    return n;
}

static void run_case(const hcase_t *c)
{
    hist_thread_t th[4];
    int nth = 0;
    for (int t = 0; t < 4; t++) {
        size_t n = count_ev(c->ev[t]);
        if (!n) continue;
        th[nth++] = (hist_thread_t){t, 0, c->ev[t], n};
    }
    char *report = NULL;
    size_t rlen = 0;
    FILE *out = open_memstream(&report, &rlen);
    hist_stats_t st;
    size_t bad = hist_check(th, nth, c->nloc, c->final, out, 10, &st);
    fclose(out);
    bool pass = c->coherent ? bad == 0 : bad > 0 && strstr(report, c->expect) != NULL;
    printf("  %-52s %s: %s\n", c->name, c->coherent ? "coherent" : "broken",
           pass ? "ok" : "WRONG VERDICT");
    if (!pass) {
        failures++;
        printf("%s", report);
    } else if (!c->coherent && getenv("HISTORY_VERBOSE")) {
        printf("%s", report);
    }
    free(report);
}

/* A random history of a coherent memory: threads' operations interleaved at random on one
 * shared array (so it is sequentially consistent, hence coherent). Location 0..nloc/2-1
 * take plain writes, xchg and CAS; the rest are counters (fetch_add, CAS increments). */
typedef struct sim {
    int nth, nloc;
    size_t per; /* operations per thread */
    hev_t **ev; /* ev[t][i] */
    uint64_t *mem;
} sim_t;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void sim_run(sim_t *s, uint64_t seed)
{
    uint64_t rng = seed;
    size_t *done = calloc((size_t)s->nth, sizeof *done);
    uint64_t **seen = calloc((size_t)s->nth, sizeof *seen); /* last value seen per loc */
    s->mem = calloc((size_t)s->nloc, sizeof *s->mem);
    s->ev = calloc((size_t)s->nth, sizeof *s->ev);
    for (int t = 0; t < s->nth; t++) {
        s->ev[t] = calloc(s->per, sizeof(hev_t));
        seen[t] = calloc((size_t)s->nloc, sizeof(uint64_t));
    }
    size_t left = (size_t)s->nth * s->per;
    uint64_t seq = 0;
    while (left) {
        int t = (int)(rng_next(&rng) % (uint64_t)s->nth);
        if (done[t] == s->per) continue;
        hev_t *e = &s->ev[t][done[t]++];
        left--;
        int l = (int)(rng_next(&rng) % (uint64_t)s->nloc);
        uint64_t *m = &s->mem[l], r = rng_next(&rng) % 100;
        bool counter = l >= s->nloc / 2;
        uint64_t uniq = ((uint64_t)(t + 1) << 40) | ++seq;
        e->loc = (uint16_t)l;
        if (r < 45) {
            *e = (hev_t){HK_READ, 0, (uint16_t)l, 0, *m, 0};
        } else if (counter && r < 80) {
            *e = (hev_t){HK_FADD, 0, (uint16_t)l, 0, *m, *m + 1};
            *m += 1;
        } else if (counter) {
            uint64_t exp = seen[t][l];
            bool ok = *m == exp;
            *e = (hev_t){HK_CAS, ok, (uint16_t)l, 0, *m, ok ? exp + 1 : 0};
            if (ok) *m = exp + 1;
        } else if (r < 75) {
            *e = (hev_t){HK_WRITE, 0, (uint16_t)l, 0, 0, uniq};
            *m = uniq;
        } else if (r < 88) {
            uint64_t exp = seen[t][l];
            bool ok = *m == exp;
            *e = (hev_t){HK_CAS, ok, (uint16_t)l, 0, *m, ok ? uniq : 0};
            if (ok) *m = uniq;
        } else {
            *e = (hev_t){HK_XCHG, 0, (uint16_t)l, 0, *m, uniq};
            *m = uniq;
        }
        seen[t][l] = *m;
    }
    for (int t = 0; t < s->nth; t++) free(seen[t]);
    free(seen);
    free(done);
}

static void sim_free(sim_t *s)
{
    for (int t = 0; t < s->nth; t++) free(s->ev[t]);
    free(s->ev);
    free(s->mem);
}

static size_t sim_check(const sim_t *s, hist_stats_t *st, FILE *out)
{
    hist_thread_t *th = calloc((size_t)s->nth, sizeof *th);
    for (int t = 0; t < s->nth; t++) th[t] = (hist_thread_t){t / 2, t % 2, s->ev[t], s->per};
    size_t bad = hist_check(th, s->nth, s->nloc, s->mem, out, 3, st);
    free(th);
    return bad;
}

/* Mutations that must always be caught, applied to one operation of a history (thread t's
 * log is ev[t][0 .. n[t])):
 *  - MUT_STALE: a plain read, by a thread that has already seen a non-initial value of that
 *    location, made to return the initial value 0 (the initial value is first in every
 *    order, so the thread would have gone backwards);
 *  - MUT_LOST: an RMW made to return the same old value as another RMW on the location (two
 *    RMWs reading one value: a lost update);
 *  - MUT_UNWRITTEN: a read made to return a value nobody wrote. */
enum { MUT_STALE, MUT_LOST, MUT_UNWRITTEN, MUT_KINDS };
static const char *const mut_name[MUT_KINDS] = {"stale", "lost", "unwritten"};

static bool mutate(hev_t *const *ev, const size_t *n, int nth, uint64_t *rng, int kind, char *what,
                   size_t len)
{
    for (int tries = 0; tries < 100000; tries++) {
        int t = (int)(rng_next(rng) % (uint64_t)nth);
        if (!n[t]) continue;
        size_t i = rng_next(rng) % n[t];
        hev_t *e = &ev[t][i];
        if (kind == MUT_UNWRITTEN) {
            if (e->kind != HK_READ) continue;
            snprintf(what, len, "thread %d op %zu reads 0xbad0bad0bad0bad0 instead of %#llx", t, i,
                     (unsigned long long)e->rd);
            e->rd = 0xbad0bad0bad0bad0ull;
            return true;
        }
        if (kind == MUT_STALE) {
            if (e->kind != HK_READ || e->rd == 0) continue;
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++) {
                const hev_t *p = &ev[t][j];
                seen = p->loc == e->loc && ((hev_reads(p) && p->rd) || (hev_writes(p) && p->wr));
            }
            if (!seen) continue;
            snprintf(what, len, "thread %d op %zu reads 0 instead of %#llx", t, i,
                     (unsigned long long)e->rd);
            e->rd = 0;
            return true;
        }
        if (!(hev_reads(e) && hev_writes(e))) continue;
        for (int u = 0; u < nth; u++)
            for (size_t j = 0; j < n[u]; j++) {
                const hev_t *o = &ev[u][j];
                if (o == e || o->loc != e->loc || !(hev_reads(o) && hev_writes(o)) ||
                    o->rd == e->rd)
                    continue;
                snprintf(what, len, "thread %d op %zu (an RMW) returns %#llx instead of %#llx", t,
                         i, (unsigned long long)o->rd, (unsigned long long)e->rd);
                e->rd = o->rd;
                return true;
            }
    }
    return false;
}

static int self_test(void)
{
    printf("hand-made histories:\n");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) run_case(&cases[k]);

    printf("random coherent histories, and one bad value in a copy of each:\n");
    for (uint64_t seed = 1; seed <= 12; seed++) {
        sim_t s = {.nth = 2 + (int)(seed % 5),
                   .nloc = 2 + (int)(seed % 6),
                   .per = seed < 10 ? 2000 : 20000};
        sim_run(&s, seed);
        hist_stats_t st;
        size_t bad = sim_check(&s, &st, stdout);
        bool ok = bad == 0;
        printf("  seed %2llu: %d threads, %d locations, %zu ops (%zu RMWs, %zu chains): %s",
               (unsigned long long)seed, s.nth, s.nloc, st.ops, st.rmws, st.chains,
               ok ? "coherent, ok" : "REJECTED (false alarm)");
        failures += !ok;
        uint64_t rng = seed * 7919;
        for (int kind = 0; kind < MUT_KINDS; kind++) {
            sim_t m = s;
            sim_run(&m, seed); /* a fresh copy of the same history */
            size_t *n = calloc((size_t)m.nth, sizeof *n);
            for (int t = 0; t < m.nth; t++) n[t] = m.per;
            char what[160];
            bool mutated = mutate(m.ev, n, m.nth, &rng, kind, what, sizeof what);
            free(n);
            if (!mutated) {
                printf("; (no %s mutation possible)", mut_name[kind]);
                sim_free(&m);
                continue;
            }
            size_t mbad = sim_check(&m, &st, NULL);
            printf("; %s: %s", mut_name[kind], mbad ? "rejected, ok" : "ACCEPTED");
            if (!mbad) {
                printf(" (%s)", what);
                failures++;
            }
            sim_free(&m);
        }
        printf("\n");
        sim_free(&s);
    }
    if (failures) {
        printf("history_check self-test: FAILED (%d wrong verdicts)\n", failures);
        return 1;
    }
    printf("history_check self-test: passed (the checker accepts coherent histories and "
           "rejects every broken one)\n");
    return 0;
}

/* ---------------------------------------------------------------- checking a directory */

static void *read_file(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "history_check: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(sz > 0 ? (size_t)sz : 1);
    if (!buf || sz < 0 || fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        fprintf(stderr, "history_check: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)sz;
    return buf;
}

/* Checks the logs in dir; mut >= 0: first breaks one operation (MUT_*), so the check must
 * fail - the proof that real logs, read from files, are checked at all. */
static int check_dir(const char *dir, int mut)
{
    size_t len;
    hist_final_hdr_t *fh = read_file(dir, HIST_FINAL, &len);
    if (!fh) return 2;
    if (len < sizeof *fh || fh->magic != HIST_MAGIC || fh->nloc <= 0 || fh->nloc > HIST_MAXLOC ||
        len != sizeof *fh + (size_t)fh->nloc * sizeof(uint64_t)) {
        fprintf(stderr, "history_check: %s/%s is not a final-values file\n", dir, HIST_FINAL);
        return 2;
    }
    const uint64_t *final = (const uint64_t *)(fh + 1);
    int nth = fh->nodes * fh->threads;
    hist_thread_t *th = calloc((size_t)nth, sizeof *th);
    void **bufs = calloc((size_t)nth, sizeof *bufs);
    if (!th || !bufs) return 2;
    int k = 0;
    for (int n = 0; n < fh->nodes; n++)
        for (int t = 0; t < fh->threads; t++, k++) {
            char name[64];
            snprintf(name, sizeof name, HIST_LOG_FMT, n, t);
            bufs[k] = read_file(dir, name, &len);
            if (!bufs[k]) return 2;
            hist_file_hdr_t *h = bufs[k];
            if (len < sizeof *h || h->magic != HIST_MAGIC ||
                len != sizeof *h + h->n * sizeof(hev_t)) {
                fprintf(stderr, "history_check: %s/%s is not a log file\n", dir, name);
                return 2;
            }
            th[k] = (hist_thread_t){h->node, h->thread, (const hev_t *)(h + 1), (size_t)h->n};
        }
    if (mut >= 0) {
        hev_t **ev = calloc((size_t)nth, sizeof *ev);
        size_t *n = calloc((size_t)nth, sizeof *n);
        if (!ev || !n) return 2;
        for (k = 0; k < nth; k++) ev[k] = (hev_t *)th[k].ev, n[k] = th[k].n;
        uint64_t rng = 12345;
        char what[160];
        bool done = mutate(ev, n, nth, &rng, mut, what, sizeof what);
        free(ev);
        free(n);
        if (!done) {
            fprintf(stderr, "history_check: the logs have no operation to break that way (%s)\n",
                    mut_name[mut]);
            return 2;
        }
        printf("history_check: broke the logs on purpose: %s\n", what);
    }
    hist_stats_t st;
    size_t bad = hist_check(th, nth, fh->nloc, final, stdout, 20, &st);
    printf("history_check %s: %d nodes x %d threads, seed %llu: %zu operations (%zu reads, "
           "%zu writes, %zu RMWs, %zu failed CAS) on %d locations: %s\n",
           dir, fh->nodes, fh->threads, (unsigned long long)fh->seed, st.ops, st.reads, st.writes,
           st.rmws, st.cas_failed, fh->nloc, bad ? "NOT COHERENT" : "coherent");
    for (k = 0; k < nth; k++) free(bufs[k]);
    free(bufs);
    free(th);
    free(fh);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--self-test")) return self_test();
    if (argc == 2 && argv[1][0] != '-') return check_dir(argv[1], -1);
    if (argc == 4 && !strcmp(argv[1], "--break"))
        for (int k = 0; k < MUT_KINDS; k++)
            if (!strcmp(argv[2], mut_name[k])) return check_dir(argv[3], k);
    fprintf(stderr, "usage: %s DIR | --break stale|lost|unwritten DIR | --self-test\n", argv[0]);
    return 2;
}

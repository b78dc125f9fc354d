/*
 * faultlat.c - the latency of single faults, by kind: read miss, write miss, upgrade (and, as
 * a baseline, a first-touch write to a page homed on the faulting node itself).
 *
 * Measured on the faulting node, per access: clock_gettime(CLOCK_MONOTONIC) right before and
 * right after the first touch of each page, so the number includes everything the
 * application sees (trap, signal delivery, protocol round trip, mapping, return) and does not
 * depend on the runtime's own histogram. Node 1 faults; node 0 homes the pages and serves
 * (it waits in a barrier meanwhile). Two regions R and W of n pages each, homed on node 0,
 * which first writes p+1 into word 0 of every page of both. Then, each phase a barrier apart:
 *   read:    node 1 reads word 0 of every page of R      -> a read miss each (checked: p+1)
 *   upgrade: node 1 writes word 0 of every page of R     -> an upgrade each (read copy held)
 *   write:   node 1 writes word 0 of every page of W     -> a write miss each
 *   local:   node 1 writes word 0 of n pages it homes itself and never touched (no network)
 * Pages are visited in address order (-o seq) or in a fixed random permutation (-o rand).
 * Each phase checks with dsm_stats that node 1 counted exactly n faults of the intended kind,
 * so a sample is never attributed to the wrong kind.
 * Output: one RESULT per kind (value = p50 in us; p90, p99, max, mean, count as keys), exact
 * percentiles of the raw samples; -d FILE writes every sample ("kind ns" per line) for the
 * CDF plots of bench/run. timer_ns is the cost of one clock_gettime pair (not subtracted).
 *
 * Prefetching is switched off (DSM_PREFETCH=0, set before dsm_init): a prefetched page takes
 * no fault, and this program measures single faults; readfault shows what prefetch gains.
 *
 * Usage: faultlat [-n PAGES] [-o seq|rand] [-d FILE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "faultlat"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n + 0.999999); /* nearest rank */
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)sorted[rank - 1] / 1e3;
}

enum { K_READ, K_UPGRADE, K_WRITE, K_LOCAL, K_COUNT };
static const char *const kind_name[K_COUNT] = {"read", "upgrade", "write", "local"};

static uint64_t stat_of(const dsm_stats_t *s, int kind)
{
    return kind == K_READ ? s->read_faults : kind == K_UPGRADE ? s->upgrades : s->write_faults;
}

/* One phase on node 1: touches base[order[i]] for every i, recording each access. */
static void phase(int kind, volatile uint64_t *base, const size_t *order, size_t n,
                  uint64_t *samples, const char *ord, FILE *dump, double timer_ns)
{
    dsm_barrier();
    if (bench_rank == 1) {
        dsm_stats_t b, a;
        bench_stats(&b);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            size_t p = order[i];
            volatile uint64_t *w = base + p * BENCH_WORDS_PER_PAGE;
            uint64_t t0 = bench_now_ns();
            if (kind == K_READ)
                bad += *w != p + 1;
            else
                *w = p + 100;
            uint64_t t1 = bench_now_ns();
            samples[i] = t1 - t0;
        }
        bench_stats(&a);
        BENCH_CHECK(!bad, "%s: %zu pages read a wrong value", kind_name[kind], bad);
        uint64_t got = stat_of(&a, kind) - stat_of(&b, kind);
        BENCH_CHECK(got == n,
                    "%s phase: the runtime counted %llu faults of this kind for %zu first touches "
                    "(the phase did not measure what it claims)",
                    kind_name[kind], (unsigned long long)got, n);
        if (dump)
            for (size_t i = 0; i < n; i++)
                fprintf(dump, "%s %llu\n", kind_name[kind], (unsigned long long)samples[i]);
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++) sum += samples[i];
        qsort(samples, n, sizeof *samples, cmp_u64);
        bench_line("RESULT name=%s variant=%s.%s nodes=%d value=%.3f unit=us p90=%.3f p99=%.3f "
                   "max=%.3f mean=%.3f min=%.3f count=%zu timer_ns=%.0f",
                   NAME, ord, kind_name[kind], bench_nodes, pct(samples, n, 0.5),
                   pct(samples, n, 0.9), pct(samples, n, 0.99), (double)samples[n - 1] / 1e3,
                   (double)sum / 1e3 / (double)n, (double)samples[0] / 1e3, n, timer_ns);
    }
    dsm_barrier();
}

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long n = 4096;
    int rnd = 0, opt;
    const char *dump_path = NULL;
    while ((opt = getopt(argc, argv, "n:o:d:")) != -1) {
        if (opt == 'n')
            n = bench_arg_long("-n", optarg, 1, 1L << 24);
        else if (opt == 'o' && (!strcmp(optarg, "seq") || !strcmp(optarg, "rand")))
            rnd = !strcmp(optarg, "rand");
        else if (opt == 'd')
            dump_path = optarg;
        else {
            fprintf(stderr, "usage: %s [-n PAGES] [-o seq|rand] [-d FILE]\n", argv[0]);
            return 2;
        }
    }
    setenv("DSM_PREFETCH", "0", 1);
    bench_begin(argv[0]);
    BENCH_CHECK(bench_nodes >= 2, "needs at least 2 nodes (node 1 faults, node 0 serves)");
    size_t bytes = (size_t)n * BENCH_PAGE;
    volatile uint64_t *R = dsm_alloc_placed(bytes, DSM_PLACE_NODE, 0);
    volatile uint64_t *W = dsm_alloc_placed(bytes, DSM_PLACE_NODE, 0);
    volatile uint64_t *L = dsm_alloc_placed(bytes, DSM_PLACE_NODE, 1);
    BENCH_CHECK(R && W && L, "allocation of 3 x %zu bytes failed: raise DSM_MEMORY", bytes);

    size_t *order = malloc((size_t)n * sizeof *order);
    uint64_t *samples = malloc((size_t)n * sizeof *samples);
    BENCH_CHECK(order && samples, "out of local memory");
    for (size_t i = 0; i < (size_t)n; i++) order[i] = i;
    if (rnd) {
        uint64_t seed = 12345;
        for (size_t i = (size_t)n - 1; i > 0; i--) {
            size_t j = (size_t)(bench_rand(&seed) % (i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }

    /* The cost of the timer itself: median of 1001 back-to-back pairs. */
    uint64_t tm[1001];
    for (int i = 0; i < 1001; i++) {
        uint64_t a = bench_now_ns();
        tm[i] = bench_now_ns() - a;
    }
    qsort(tm, 1001, sizeof tm[0], cmp_u64);

    if (bench_rank == 0)
        for (size_t p = 0; p < (size_t)n; p++) {
            R[p * BENCH_WORDS_PER_PAGE] = p + 1;
            W[p * BENCH_WORDS_PER_PAGE] = p + 1;
        }

    FILE *dump = NULL;
    if (dump_path && bench_rank == 1) {
        dump = fopen(dump_path, "w");
        BENCH_CHECK(dump, "cannot write %s", dump_path);
    }
    const char *ord = rnd ? "rand" : "seq";
    dsm_stats_t before, after;
    bench_stats(&before);
    phase(K_READ, R, order, (size_t)n, samples, ord, dump, (double)tm[500]);
    phase(K_UPGRADE, R, order, (size_t)n, samples, ord, dump, (double)tm[500]);
    phase(K_WRITE, W, order, (size_t)n, samples, ord, dump, (double)tm[500]);
    phase(K_LOCAL, L, order, (size_t)n, samples, ord, dump, (double)tm[500]);
    bench_stats(&after);
    if (dump) BENCH_CHECK(fclose(dump) == 0, "writing %s failed", dump_path);

    /* The homes check the last values written. */
    if (bench_rank == 0)
        for (size_t p = 0; p < (size_t)n; p++) {
            BENCH_CHECK(R[p * BENCH_WORDS_PER_PAGE] == p + 100 &&
                            W[p * BENCH_WORDS_PER_PAGE] == p + 100,
                        "page %zu does not hold node 1's write", p);
        }
    dsm_barrier();
    bench_stats_print(NAME, ord, &before, &after);
    free(order);
    free(samples);
    bench_end();
    return 0;
}

/*
 * readfault.c - workload (a): the cost of a remote read fault, per page, on a sequential walk.
 *
 * Layout (docs/performance.md, workload (a)): global memory of G = 128 MiB homed in contiguous
 * halves (node k homes [k*G/P, (k+1)*G/P)); a 32 MiB pad, then A = 64 MiB + one page, so A
 * starts at G/4 and about half of its pages are homed on each node. ufdsm's placement policies
 * apply per allocation, so this layout is built exactly with one DSM_PLACE_NODE allocation per
 * home chunk (bench_alloc_global_block); run it with DSM_MEMORY=256M so that the collective
 * half of the space (what dsm_alloc draws from) is the 128 MiB of the definition.
 *
 *   home-written: every node writes A[p][0] = p+1 into each page of A it homes; barrier;
 *                 node 1 alone reads the word of every page not homed on it, in order.
 *                 Only that loop is timed: result = loop time / pages read.
 *   re-fetch:     the homes rewrite p+2 into their pages (invalidating node 1's copies);
 *                 barrier; node 1 repeats the loop.
 * Node 1 checks every value it read; a wrong one fails the run.
 *
 * The loop takes one CLOCK_MONOTONIC timestamp after each page (about 20 ns, against a fault
 * of 10 us or more), so the same loop gives the result (last minus first timestamp, over the
 * pages) and the per-page distribution: p50/p90/p99/max keys. With prefetching, pages that
 * arrived with an earlier fault cost almost nothing, and the distribution shows it.
 * Extra keys: msgs_per_page (messages node 1 sent during the loop, per page read: read-ahead
 * still asks for each page, but a window of them in one batch) and faults_per_page (read
 * faults per page read: the round trips the reader waited for; 1 without read-ahead, below 1
 * when sequential faults are read ahead).
 *
 * Prefetch: the runtime reads DSM_PREFETCH (pages, 0 = off). When it is set, the variants are
 * named "<variant>.pf<N>" so that both settings can sit in one summary; bench/run runs
 * DSM_PREFETCH=0 and DSM_PREFETCH=8.
 *
 * Usage: readfault [-a MIB]   (size of A without its extra page; default 64, G = 2*MIB)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "readfault"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted nanosecond values, in microseconds. */
static double pct_us(const uint64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)sorted[rank - 1] / 1e3;
}

/* ts: n + 1 timestamps of scratch space. */
static void walk(const char *variant, volatile uint64_t *A, const size_t *list, size_t n,
                 uint64_t add, uint64_t *ts)
{
    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    if (bench_rank == 1) {
        uint64_t bad = 0, first_bad = 0;
        dsm_stats_t lb, la; /* around the loop only: no barrier or invalidation traffic */
        bench_stats(&lb);
        ts[0] = bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            size_t p = list[i];
            bad += A[p * BENCH_WORDS_PER_PAGE] != p + add;
            ts[i + 1] = bench_now_ns();
        }
        bench_stats(&la);
        uint64_t total = ts[n] - ts[0];
        if (bad)
            for (size_t i = 0; i < n && !first_bad; i++)
                if (A[list[i] * BENCH_WORDS_PER_PAGE] != list[i] + add) first_bad = list[i] + 1;
        BENCH_CHECK(!bad,
                    "%s: %llu of %zu pages read a wrong value (first: page %llu holds %llu, "
                    "expected %llu)",
                    variant, (unsigned long long)bad, n, (unsigned long long)(first_bad - 1),
                    (unsigned long long)A[(first_bad - 1) * BENCH_WORDS_PER_PAGE],
                    (unsigned long long)(first_bad - 1 + add));
        for (size_t i = 0; i < n; i++) ts[i] = ts[i + 1] - ts[i];
        qsort(ts, n, sizeof *ts, cmp_u64);
        const char *pf = getenv("DSM_PREFETCH");
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=us/page pages=%zu "
                   "total_ms=%.3f p50=%.3f p90=%.3f p99=%.3f max=%.3f msgs_per_page=%.3f "
                   "faults_per_page=%.3f prefetch=%s",
                   NAME, variant, bench_nodes, (double)total / 1e3 / (double)n, n,
                   (double)total / 1e6, pct_us(ts, n, 0.5), pct_us(ts, n, 0.9), pct_us(ts, n, 0.99),
                   (double)ts[n - 1] / 1e3,
                   (double)(bench_msgs_sent(&la) - bench_msgs_sent(&lb)) / (double)n,
                   (double)(la.read_faults - lb.read_faults) / (double)n, pf ? pf : "default");
    }
    dsm_barrier();
    bench_stats(&after);
    bench_stats_print(NAME, variant, &before, &after);
}

/* "<base>" or "<base>.pf<N>" when DSM_PREFETCH is set (see the header comment). */
static void variant_name(char *out, size_t len, const char *base)
{
    const char *pf = getenv("DSM_PREFETCH");
    if (!pf) {
        snprintf(out, len, "%s", base);
        return;
    }
    BENCH_CHECK(*pf && strspn(pf, "0123456789") == strlen(pf),
                "DSM_PREFETCH=%s: expected a page count (0 = off)", pf);
    snprintf(out, len, "%s.pf%s", base, pf);
}

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long a_mib = 64;
    int opt;
    while ((opt = getopt(argc, argv, "a:")) != -1) {
        if (opt == 'a')
            a_mib = bench_arg_long("-a", optarg, 1, 1 << 20);
        else {
            fprintf(stderr, "usage: %s [-a MIB]\n", argv[0]);
            return 2;
        }
    }
    bench_begin(argv[0]);
    BENCH_CHECK(bench_nodes >= 2, "needs at least 2 nodes (node 1 does the reading)");

    size_t np;
    volatile uint64_t *A = bench_alloc_fault_layout(a_mib, &np);
    bench_reduce_init();

    /* Pages this node homes, and (node 1) pages it will read. */
    size_t *mine = malloc(np * sizeof *mine), *list = malloc(np * sizeof *list);
    uint64_t *ts = malloc((np + 1) * sizeof *ts);
    BENCH_CHECK(mine && list && ts, "out of local memory");
    size_t nmine = 0, nlist = 0, homed[256] = {0};
    for (size_t p = 0; p < np; p++) {
        int h = dsm_home((const char *)A + p * BENCH_PAGE);
        BENCH_CHECK(h >= 0 && h < bench_nodes, "page %zu of A has no home", p);
        homed[h]++;
        if (h == bench_rank) mine[nmine++] = p;
        if (h != 1) list[nlist++] = p;
    }
    if (bench_rank == 0) {
        char buf[512];
        int off = snprintf(buf, sizeof buf, "INFO name=%s pages=%zu", NAME, np);
        for (int k = 0; k < bench_nodes && off < (int)sizeof buf - 32; k++)
            off += snprintf(buf + off, sizeof buf - (size_t)off, " homed_on_%d=%zu", k, homed[k]);
        bench_line("%s", buf);
    }

    char variant[64];
    for (size_t i = 0; i < nmine; i++) A[mine[i] * BENCH_WORDS_PER_PAGE] = mine[i] + 1;
    variant_name(variant, sizeof variant, "home-written");
    walk(variant, A, list, nlist, 1, ts);

    for (size_t i = 0; i < nmine; i++) A[mine[i] * BENCH_WORDS_PER_PAGE] = mine[i] + 2;
    variant_name(variant, sizeof variant, "re-fetch");
    walk(variant, A, list, nlist, 2, ts);

    free(ts);
    free(mine);
    free(list);
    bench_end();
    return 0;
}

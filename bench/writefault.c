/*
 * writefault.c - workload (b): the cost of a write fault on pages homed on another node.
 *
 * Same layout as readfault.c (workload (a)): G = 128 MiB homed in contiguous halves, a 32 MiB
 * pad, then A = 64 MiB + one page (run with DSM_MEMORY=256M). The pages start untouched.
 *   -v both:  every node writes rank+1 into the word of every page of A not homed on itself;
 *   -v node1: node 1 alone does so (the others only take part in the barrier).
 * Then a barrier. Two results, each the maximum over the writing nodes of time / pages
 * written: "<v>-loop" times the loop only, "<v>-barrier" the loop plus the closing barrier.
 * Then every home verifies every page it homes (with two nodes the value is exact; with more,
 * concurrent writers race on the same word, so it must be one of the other nodes' values).
 * A fresh process per variant: the pages must be untouched when the timed loop starts.
 *
 * Usage: writefault [-v both|node1] [-a MIB]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "writefault"

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long a_mib = 64;
    int only1 = 0, opt;
    while ((opt = getopt(argc, argv, "a:v:")) != -1) {
        if (opt == 'a')
            a_mib = bench_arg_long("-a", optarg, 1, 1 << 20);
        else if (opt == 'v' && (!strcmp(optarg, "both") || !strcmp(optarg, "node1")))
            only1 = !strcmp(optarg, "node1");
        else {
            fprintf(stderr, "usage: %s [-v both|node1] [-a MIB]\n", argv[0]);
            return 2;
        }
    }
    const char *variant = only1 ? "node1" : "both";
    bench_begin(argv[0]);
    BENCH_CHECK(bench_nodes >= 2, "needs at least 2 nodes");

    size_t np;
    volatile uint64_t *A = bench_alloc_fault_layout(a_mib, &np);
    bench_reduce_init();

    int *home = malloc(np * sizeof *home);
    size_t *list = malloc(np * sizeof *list);
    BENCH_CHECK(home && list, "out of local memory");
    size_t n = 0;
    int writer = !only1 || bench_rank == 1;
    for (size_t p = 0; p < np; p++) {
        home[p] = dsm_home((const char *)A + p * BENCH_PAGE);
        BENCH_CHECK(home[p] >= 0 && home[p] < bench_nodes, "page %zu of A has no home", p);
        if (writer && home[p] != bench_rank) list[n++] = p;
    }

    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    uint64_t val = (uint64_t)bench_rank + 1;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) A[list[i] * BENCH_WORDS_PER_PAGE] = val;
    uint64_t t1 = bench_now_ns();
    dsm_barrier();
    uint64_t t2 = bench_now_ns();
    bench_stats(&after);

    double loop_us = n ? (double)(t1 - t0) / 1e3 / (double)n : 0;
    double bar_us = n ? (double)(t2 - t0) / 1e3 / (double)n : 0;
    double max_loop = bench_max(loop_us), max_bar = bench_max(bar_us);
    double pages = bench_sum((double)n);

    /* The homes verify every page they home. */
    size_t bad = 0, first_bad = 0;
    for (size_t p = 0; p < np; p++) {
        if (home[p] != bench_rank) continue;
        uint64_t v = A[p * BENCH_WORDS_PER_PAGE];
        int ok;
        if (only1)
            ok = v == (home[p] == 1 ? 0 : 2);
        else if (bench_nodes == 2)
            ok = v == (uint64_t)(2 - home[p]); /* written by the other node: other + 1 */
        else
            ok = v >= 1 && v <= (uint64_t)bench_nodes && v != (uint64_t)home[p] + 1;
        if (!ok && !bad++) first_bad = p;
    }
    BENCH_CHECK(!bad, "%s: %zu of the pages homed here hold a wrong value (first: page %zu = %llu)",
                variant, bad, first_bad, (unsigned long long)A[first_bad * BENCH_WORDS_PER_PAGE]);
    dsm_barrier();

    bench_stats_print(NAME, variant, &before, &after);
    if (bench_rank == 0) {
        bench_line("RESULT name=%s variant=%s-loop nodes=%d value=%.3f unit=us/page "
                   "pages_total=%.0f",
                   NAME, variant, bench_nodes, max_loop, pages);
        bench_line("RESULT name=%s variant=%s-barrier nodes=%d value=%.3f unit=us/page "
                   "pages_total=%.0f",
                   NAME, variant, bench_nodes, max_bar, pages);
    }
    free(home);
    free(list);
    bench_end();
    return 0;
}

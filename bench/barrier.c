/*
 * barrier.c - workload (e): the cost of dsm_barrier, empty and with a dirty remote page.
 *
 *   empty: 100 warm-up barriers, then 10000 timed barriers; result = max over nodes of
 *          time / 10000. Check: dsm_stats counts exactly 10000 barriers in the timed phase.
 *   dirty: the same, but before each barrier every node stores to one word of a page homed on
 *          the next node ((r+1) % P; for two nodes, "the other node"). Check: after the run,
 *          each home reads the last value written into its page by its neighbour.
 * Both variants run in one process, empty first.
 *
 * Usage: barrier [-n BARRIERS] [-w WARMUP]
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"

#define NAME "barrier"

static void run(const char *variant, volatile uint64_t *pages, long n, long warm)
{
    volatile uint64_t *mine = NULL;
    if (pages) mine = pages + (size_t)((bench_rank + 1) % bench_nodes) * BENCH_WORDS_PER_PAGE;
    for (long i = 0; i < warm; i++) {
        if (mine) *mine = (uint64_t)i + 1;
        dsm_barrier();
    }
    dsm_stats_t before, after;
    bench_stats(&before);
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        if (mine) *mine = (uint64_t)(warm + i) + 1;
        dsm_barrier();
    }
    uint64_t t1 = bench_now_ns();
    bench_stats(&after);
    BENCH_CHECK(after.barriers - before.barriers == (uint64_t)n,
                "%s: dsm_stats counted %llu barriers, expected %ld", variant,
                (unsigned long long)(after.barriers - before.barriers), n);
    if (pages) {
        /* The page this node homes was written last by node (r-1) with warm+n. */
        uint64_t got = pages[(size_t)bench_rank * BENCH_WORDS_PER_PAGE];
        BENCH_CHECK(got == (uint64_t)(warm + n),
                    "dirty: the page homed here holds %llu, expected %ld (the last store of node "
                    "%d)",
                    (unsigned long long)got, warm + n,
                    (bench_rank + bench_nodes - 1) % bench_nodes);
    }
    double secs = bench_max((double)(t1 - t0) * 1e-9);
    bench_stats_print(NAME, variant, &before, &after);
    if (bench_rank == 0)
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=us/barrier barriers=%ld "
                   "total_ms=%.3f",
                   NAME, variant, bench_nodes, secs * 1e6 / (double)n, n, secs * 1e3);
}

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long n = 10000, warm = 100;
    int opt;
    while ((opt = getopt(argc, argv, "n:w:")) != -1) {
        if (opt == 'n')
            n = bench_arg_long("-n", optarg, 1, 1L << 30);
        else if (opt == 'w')
            warm = bench_arg_long("-w", optarg, 0, 1L << 30);
        else {
            fprintf(stderr, "usage: %s [-n BARRIERS] [-w WARMUP]\n", argv[0]);
            return 2;
        }
    }
    bench_begin(argv[0]);
    /* Page k homed on node k. */
    volatile uint64_t *pages =
        dsm_alloc_placed((size_t)bench_nodes * BENCH_PAGE, DSM_PLACE_CYCLIC, BENCH_PAGE);
    BENCH_CHECK(pages, "dsm_alloc_placed failed");
    bench_reduce_init();
    for (int k = 0; k < bench_nodes; k++)
        BENCH_CHECK(dsm_home((const char *)pages + (size_t)k * BENCH_PAGE) == k,
                    "page %d is not homed on node %d", k, k);
    run("empty", NULL, n, warm);
    run("dirty", pages, n, warm);
    bench_end();
    return 0;
}

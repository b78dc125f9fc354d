/*
 * falseshare.c - workload (d): false sharing, two nodes writing disjoint halves of one page.
 *
 * One 4 KiB page homed on node 0 (dsm_alloc_placed(DSM_PLACE_NODE, 0)). Its 512 words are
 * cut into P equal parts (P = 2: node 0 owns bytes [0, 2048), node 1 [2048, 4096), 256 words
 * each). 1000 rounds; in each a node does K writes - the j-th write of the run goes to slot
 * j % S of its part (S = 512/P words, 256 for two nodes), value j+1 - then a barrier.
 * Result = max over nodes of time / rounds (us per round), for K = 1, 16 and 256, one after
 * another in the same process (each run starts after a barrier; values are checked after
 * every run). Node 0 verifies every part at the end of each run: slot s of node q holds
 * j+1 for the last j < 1000*K with j % S == s (0 if there was none).
 *
 * Usage: falseshare [-r ROUNDS] [-k K1,K2,...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "falseshare"

static void run(volatile uint64_t *page, long rounds, long k)
{
    size_t spn = BENCH_WORDS_PER_PAGE / (size_t)bench_nodes; /* slots per node */
    volatile uint64_t *part = page + (size_t)bench_rank * spn;
    char variant[32];
    snprintf(variant, sizeof variant, "k%ld", k);

    /* Start from a zero page, so that every run is checked on its own writes only. */
    if (bench_rank == 0)
        for (size_t i = 0; i < BENCH_WORDS_PER_PAGE; i++) page[i] = 0;
    dsm_barrier();
    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    uint64_t j = 0;
    uint64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < k; i++, j++) part[j % spn] = j + 1;
        dsm_barrier();
    }
    uint64_t t1 = bench_now_ns();
    bench_stats(&after);

    if (bench_rank == 0) {
        uint64_t total = (uint64_t)rounds * (uint64_t)k;
        for (int q = 0; q < bench_nodes; q++)
            for (size_t s = 0; s < spn; s++) {
                uint64_t want = 0;
                if (total > s) want = (total - 1 - s) / spn * spn + s + 1;
                uint64_t got = page[(size_t)q * spn + s];
                BENCH_CHECK(got == want,
                            "K=%ld: slot %zu of node %d's part holds %llu, expected "
                            "%llu: a write was lost",
                            k, s, q, (unsigned long long)got, (unsigned long long)want);
            }
    }
    double secs = bench_max((double)(t1 - t0) * 1e-9);
    bench_stats_print(NAME, variant, &before, &after);
    if (bench_rank == 0)
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=us/round rounds=%ld "
                   "writes_per_round=%ld total_ms=%.3f",
                   NAME, variant, bench_nodes, secs * 1e6 / (double)rounds, rounds, k, secs * 1e3);
}

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long rounds = 1000;
    char klist[128] = "1,16,256";
    int opt;
    while ((opt = getopt(argc, argv, "r:k:")) != -1) {
        if (opt == 'r')
            rounds = bench_arg_long("-r", optarg, 1, 1L << 30);
        else if (opt == 'k' && strlen(optarg) < sizeof klist)
            strcpy(klist, optarg);
        else {
            fprintf(stderr, "usage: %s [-r ROUNDS] [-k K1,K2,...]\n", argv[0]);
            return 2;
        }
    }
    bench_begin(argv[0]);
    BENCH_CHECK(bench_nodes >= 2 && BENCH_WORDS_PER_PAGE % (size_t)bench_nodes == 0,
                "needs a node count that divides 512 and is at least 2 (got %d)", bench_nodes);
    volatile uint64_t *page = dsm_alloc_placed(BENCH_PAGE, DSM_PLACE_NODE, 0);
    BENCH_CHECK(page, "dsm_alloc_placed failed");
    bench_reduce_init();
    for (char *save = NULL, *tok = strtok_r(klist, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
        run(page, rounds, bench_arg_long("-k", tok, 1, 1L << 20));
    bench_end();
    return 0;
}

/*
 * lockpp.c - workload (c): lock ping-pong, the cost of handing a lock and its data across.
 *
 * One global lock (a dsm_mutex_t from dsm_alloc) and a counter on its own page (another
 * dsm_alloc; both single-page allocations, so both homed on node 0 by the default placement),
 * the counter initially 0. Node r loops: lock; if counter % P == r then counter++ and its own
 * count++; unlock; until it has made N/P increments (N = 10000 in total; P = 2 gives the
 * definition's "counter % 2 == r"). Strict alternation: every increment moves the lock and
 * the counter's page once. Result = max over nodes of wall time / N (us per handoff).
 * Checks: each node made exactly N/P increments, and the counter ends at N.
 * Extra keys: tries_per_incr (lock acquisitions per increment: 1.0 means perfect alternation,
 * more means a node got the lock back while it was not its turn).
 *
 * Usage: lockpp [-n N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"

#define NAME "lockpp"

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long total = 10000;
    int opt;
    while ((opt = getopt(argc, argv, "n:")) != -1) {
        if (opt == 'n')
            total = bench_arg_long("-n", optarg, 2, 1L << 40);
        else {
            fprintf(stderr, "usage: %s [-n N]\n", argv[0]);
            return 2;
        }
    }
    bench_begin(argv[0]);
    dsm_mutex_t *lock = dsm_alloc(sizeof *lock);
    volatile uint64_t *counter = dsm_alloc(BENCH_PAGE);
    BENCH_CHECK(lock && counter, "dsm_alloc failed");
    bench_reduce_init();
    uint64_t per_node = (uint64_t)total / (uint64_t)bench_nodes;
    uint64_t n = per_node * (uint64_t)bench_nodes; /* N rounded down to a multiple of P */
    if (bench_rank == 0) {
        dsm_mutex_init(lock);
        *counter = 0;
    }

    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    uint64_t mine = 0, tries = 0;
    uint64_t t0 = bench_now_ns();
    while (mine < per_node) {
        dsm_mutex_lock(lock);
        tries++;
        uint64_t c = *counter;
        if (c % (uint64_t)bench_nodes == (uint64_t)bench_rank) {
            *counter = c + 1;
            mine++;
        }
        dsm_mutex_unlock(lock);
    }
    uint64_t t1 = bench_now_ns();
    bench_stats(&after);
    dsm_barrier();

    BENCH_CHECK(mine == per_node, "made %llu increments, expected %llu", (unsigned long long)mine,
                (unsigned long long)per_node);
    uint64_t final = *counter;
    BENCH_CHECK(final == n, "counter is %llu after all increments, expected %llu",
                (unsigned long long) final, (unsigned long long)n);
    double secs = (double)(t1 - t0) * 1e-9;
    double max_s = bench_max(secs), all_tries = bench_sum((double)tries);
    bench_stats_print(NAME, "handoff", &before, &after);
    if (bench_rank == 0)
        bench_line("RESULT name=%s variant=handoff nodes=%d value=%.3f unit=us/handoff "
                   "increments=%llu total_ms=%.3f tries_per_incr=%.3f",
                   NAME, bench_nodes, max_s * 1e6 / (double)n, (unsigned long long)n, max_s * 1e3,
                   all_tries / (double)n);
    bench_end();
    return 0;
}

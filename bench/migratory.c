/*
 * migratory.c - migratory data: a record of several pages that the nodes update in turn
 * under a lock, so the whole record moves from node to node (read, then write, by one node
 * at a time) - the pattern of data protected by a lock in a shared-memory program.
 *
 * A record of D pages (homed on node 0) and one dsm_mutex (its own allocation, homed on node
 * 0). Page 0's word 0 is the turn counter. Node r loops: lock; if turn % P == r, then for
 * every page of the record and 8 words in it (one every 512 bytes) word += 1 (a read then a
 * write), turn++, its own count++; unlock; until it has made M/P migrations. Under a plain
 * MSI protocol each page of each migration costs a read miss and then an upgrade; a protocol
 * that recognises migratory sharing grants the page writable on the read and halves that.
 * The keys say which one happened: faults_per_page_visit (read misses + upgrades + write
 * misses over D * M) is 2 for the former, 1 for the latter.
 * Result: value = max over nodes of time / M (us per migration of the whole record); key
 * us_per_page = value / D. Checks: every counted word ends at M, the turn at M.
 *
 * Usage: migratory [-d PAGES] [-m MIGRATIONS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"

#define NAME  "migratory"
#define WORDS 8
#define STEP  (BENCH_WORDS_PER_PAGE / WORDS)

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long d = 8, m = 2000;
    int opt;
    while ((opt = getopt(argc, argv, "d:m:")) != -1) {
        if (opt == 'd')
            d = bench_arg_long("-d", optarg, 1, 1 << 20);
        else if (opt == 'm')
            m = bench_arg_long("-m", optarg, 1, 1L << 32);
        else {
            fprintf(stderr, "usage: %s [-d PAGES] [-m MIGRATIONS]\n", argv[0]);
            return 2;
        }
    }
    bench_begin(argv[0]);
    dsm_mutex_t *lock = dsm_alloc_placed(sizeof *lock, DSM_PLACE_NODE, 0);
    volatile uint64_t *rec = dsm_alloc_placed((size_t)d * BENCH_PAGE, DSM_PLACE_NODE, 0);
    BENCH_CHECK(lock && rec, "allocation failed");
    bench_reduce_init();
    uint64_t per_node = (uint64_t)m / (uint64_t)bench_nodes;
    uint64_t total = per_node * (uint64_t)bench_nodes;
    if (bench_rank == 0) dsm_mutex_init(lock);

    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    uint64_t mine = 0;
    uint64_t t0 = bench_now_ns();
    while (mine < per_node) {
        dsm_mutex_lock(lock);
        uint64_t turn = rec[0];
        if (turn % (uint64_t)bench_nodes == (uint64_t)bench_rank) {
            for (long p = 0; p < d; p++)
                for (size_t w = 1; w <= WORDS; w++) {
                    volatile uint64_t *x = rec + (size_t)p * BENCH_WORDS_PER_PAGE + w * STEP - 1;
                    *x = *x + 1;
                }
            rec[0] = turn + 1;
            mine++;
        }
        dsm_mutex_unlock(lock);
    }
    uint64_t t1 = bench_now_ns();
    bench_stats(&after);
    dsm_barrier();

    if (bench_rank == 0) {
        BENCH_CHECK(rec[0] == total, "turn counter is %llu, expected %llu",
                    (unsigned long long)rec[0], (unsigned long long)total);
        for (long p = 0; p < d; p++)
            for (size_t w = 1; w <= WORDS; w++) {
                uint64_t v = rec[(size_t)p * BENCH_WORDS_PER_PAGE + w * STEP - 1];
                BENCH_CHECK(v == total,
                            "page %ld word %zu is %llu, expected %llu: an update was "
                            "lost",
                            p, w * STEP - 1, (unsigned long long)v, (unsigned long long)total);
            }
    }
    double faults = (double)(after.read_faults - before.read_faults) +
                    (double)(after.write_faults - before.write_faults) +
                    (double)(after.upgrades - before.upgrades);
    double all_faults = bench_sum(faults);
    double secs = bench_max((double)(t1 - t0) * 1e-9);
    bench_stats_print(NAME, "record", &before, &after);
    if (bench_rank == 0)
        bench_line("RESULT name=%s variant=record nodes=%d value=%.3f unit=us/migration "
                   "pages=%ld migrations=%llu us_per_page=%.3f faults_per_page_visit=%.3f",
                   NAME, bench_nodes, secs * 1e6 / (double)total, d, (unsigned long long)total,
                   secs * 1e6 / (double)total / (double)d,
                   all_faults / ((double)total * (double)d));
    bench_end();
    return 0;
}

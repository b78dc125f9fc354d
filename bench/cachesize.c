/*
 * cachesize.c - throughput against the size of the bounded page cache (DSM_CACHE).
 *
 * A working set of W MiB (default 32) homed in contiguous halves (block placement), so that
 * half of it is remote for each node. Node 1 alone visits pages of it, one visit = read the
 * page's first word, check it, write it back incremented; node 0 serves. Orders:
 *   seq:  V passes over the whole array in order (streaming: read-ahead, and with a cache
 *         smaller than the remote half, every remote page is evicted before it comes round
 *         again - LRU's worst case);
 *   rand: W*256*V visits of uniformly random pages (with a cache of C of the R remote
 *         bytes, about C/R of the remote visits hit).
 * The runner sets DSM_CACHE per run (bench/run: cachesize-<order>-<size>), from much smaller
 * than the remote half to larger.
 *
 * RESULT value = visits per second (MB/s would be the same times 4 KiB); keys: hit = the
 * fraction of node 1's visits that found the page present (1 - (read_faults + write_faults)
 * / visits; a write to a read copy is not counted as a miss), cache_kib, evictions (clean + dirty)
 * and refetches during the loop. Node 1 checks every value it reads and, at the end, node 0 checks
 * every word: a lost write-back fails the run.
 *
 * Usage: cachesize -o seq|rand [-w MIB] [-v PASSES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "cachesize"

int main(int argc, char **argv)
{
    bench_set_prog(NAME);
    const char *order = "seq";
    long mib = 32, passes = 2;
    int c;
    while ((c = getopt(argc, argv, "o:w:v:")) != -1) {
        if (c == 'o')
            order = optarg;
        else if (c == 'w')
            mib = bench_arg_long("-w", optarg, 1, 4096);
        else if (c == 'v')
            passes = bench_arg_long("-v", optarg, 1, 1000);
        else {
            fprintf(stderr, "usage: %s -o seq|rand [-w MIB] [-v PASSES]\n", NAME);
            return 2;
        }
    }
    int rnd = !strcmp(order, "rand");
    if (!rnd && strcmp(order, "seq")) {
        fprintf(stderr, "%s: -o must be seq or rand, not '%s'\n", NAME, order);
        return 2;
    }
    bench_begin(NAME);
    BENCH_CHECK(bench_nodes >= 2, "needs 2 nodes or more (got %d)", bench_nodes);
    size_t pages = (size_t)mib * 256;
    volatile uint64_t *a = dsm_alloc_placed(pages * BENCH_PAGE, DSM_PLACE_BLOCK, 0);
    BENCH_CHECK(a, "dsm_alloc of %ld MiB failed", mib);
    uint64_t *visits_of = calloc(pages, sizeof *visits_of); /* node 1's visits per page */
    BENCH_CHECK(visits_of, "out of memory");
    dsm_barrier();
    dsm_stats_t before, after;
    bench_stats(&before);
    uint64_t n = 0;
    double t0 = bench_now_s();
    if (bench_rank == 1) {
        uint64_t rng = 42, total = rnd ? (uint64_t)pages * (uint64_t)passes : 0;
        for (long v = 0; !rnd && v < passes; v++)
            for (size_t p = 0; p < pages; p++, n++) {
                volatile uint64_t *w = a + p * BENCH_WORDS_PER_PAGE;
                BENCH_CHECK(*w == visits_of[p], "page %zu holds %llu after %llu visits", p,
                            (unsigned long long)*w, (unsigned long long)visits_of[p]);
                *w = ++visits_of[p];
            }
        for (; n < total; n++) {
            size_t p = (size_t)(bench_rand(&rng) % pages);
            volatile uint64_t *w = a + p * BENCH_WORDS_PER_PAGE;
            BENCH_CHECK(*w == visits_of[p], "page %zu holds %llu after %llu visits", p,
                        (unsigned long long)*w, (unsigned long long)visits_of[p]);
            *w = ++visits_of[p];
        }
    }
    double secs = bench_now_s() - t0;
    bench_stats(&after);
    dsm_barrier();
    /* Node 1 publishes what it counted; node 0 checks every page against it. */
    volatile uint64_t *counts = dsm_alloc_placed(pages * sizeof(uint64_t), DSM_PLACE_NODE, 0);
    BENCH_CHECK(counts, "dsm_alloc of the check array failed");
    if (bench_rank == 1)
        for (size_t p = 0; p < pages; p++) counts[p] = visits_of[p];
    dsm_barrier();
    if (bench_rank == 0)
        for (size_t p = 0; p < pages; p++)
            BENCH_CHECK(a[p * BENCH_WORDS_PER_PAGE] == counts[p],
                        "page %zu holds %llu after node 1's %llu visits: a write was lost", p,
                        (unsigned long long)a[p * BENCH_WORDS_PER_PAGE],
                        (unsigned long long)counts[p]);
    if (bench_rank == 1) {
        uint64_t miss =
            (after.read_faults - before.read_faults) + (after.write_faults - before.write_faults);
        double hit = n ? 1.0 - (double)miss / (double)n : 0;
        bench_line("RESULT name=%s variant=%s.c%llu nodes=%d value=%.1f unit=visits/s hit=%.4f "
                   "cache_kib=%llu visits=%llu misses=%llu evictions=%llu refetches=%llu "
                   "secs=%.3f working_set_mib=%ld",
                   NAME, order, (unsigned long long)(after.cache_bytes >> 10), bench_nodes,
                   (double)n / secs, hit, (unsigned long long)(after.cache_bytes >> 10),
                   (unsigned long long)n, (unsigned long long)miss,
                   (unsigned long long)(after.evictions_clean + after.evictions_dirty -
                                        before.evictions_clean - before.evictions_dirty),
                   (unsigned long long)(after.refetches - before.refetches), secs, mib);
    }
    bench_stats_print(NAME, order, &before, &after);
    free(visits_of);
    bench_end();
    return 0;
}

/*
 * synthetic.c - a synthetic access stream with knobs: how fast DSM memory is for a mix of
 * reads and writes over private and shared pages with a given locality.
 *
 * Pages: PAGES in all; a fraction F of them is shared (dealt round-robin over the nodes'
 * homes, DSM_PLACE_CYCLIC), the rest is split into one private area per node, homed on it
 * and touched only by it. Each node makes OPS accesses to the pages it can see (the shared
 * ones and its own private ones). For each access:
 *   page:  with probability T (temporal locality) one of the 16 pages it accessed last;
 *          otherwise with probability S (spatial locality) the page after the previous one;
 *          otherwise a page chosen uniformly.
 *   kind:  a read with probability R, else a write.
 * Every page has one 64-byte slot per node. A write stores (this node's count of its writes
 * to that page) into its own slot - a plain store, no read first. A read loads its own slot,
 * which must equal that count (read-your-writes through coherence: a failure is a lost or
 * stale write), and the next node's slot. After a closing barrier every node checks all of
 * its slots again, and node 0 checks that the slots of all pages add up to the number of
 * writes all nodes made.
 * Result: value = max over nodes of time / OPS (us per access); keys: total throughput and
 * the faults per access this node mix caused.
 *
 * Usage: synthetic [-r READ] [-f SHARED] [-s SPATIAL] [-t TEMPORAL] [-p PAGES] [-n OPS]
 *                  [-S SEED]
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"

#define NAME   "synthetic"
#define RECENT 16
#define SLOT   8 /* words: one 64-byte line per node */

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    double rr = 0.8, ff = 0.25, ss = 0.5, tt = 0.5;
    long pages = 4096, ops = 100000, seed = 1;
    int opt;
    while ((opt = getopt(argc, argv, "r:f:s:t:p:n:S:")) != -1) {
        switch (opt) {
        case 'r':
            rr = bench_arg_double("-r", optarg, 0, 1);
            break;
        case 'f':
            ff = bench_arg_double("-f", optarg, 0, 1);
            break;
        case 's':
            ss = bench_arg_double("-s", optarg, 0, 1);
            break;
        case 't':
            tt = bench_arg_double("-t", optarg, 0, 1);
            break;
        case 'p':
            pages = bench_arg_long("-p", optarg, 1, 1L << 22);
            break;
        case 'n':
            ops = bench_arg_long("-n", optarg, 1, 1L << 34);
            break;
        case 'S':
            seed = bench_arg_long("-S", optarg, 0, 1L << 40);
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-r READ] [-f SHARED] [-s SPATIAL] [-t TEMPORAL] [-p PAGES] "
                    "[-n OPS] [-S SEED]\n",
                    argv[0]);
            return 2;
        }
    }
    bench_begin(argv[0]);
    BENCH_CHECK(bench_nodes <= (int)(BENCH_WORDS_PER_PAGE / SLOT), "at most %d nodes",
                (int)(BENCH_WORDS_PER_PAGE / SLOT));
    size_t nshared = (size_t)((double)pages * ff + 0.5);
    size_t npriv = ((size_t)pages - nshared) / (size_t)bench_nodes;
    size_t nvis = nshared + npriv;
    BENCH_CHECK(nvis > 0, "no pages to access");
    char *shared = NULL, *priv[256] = {0};
    if (nshared) {
        shared = dsm_alloc_placed(nshared * BENCH_PAGE, DSM_PLACE_CYCLIC, BENCH_PAGE);
        BENCH_CHECK(shared, "allocation failed: raise DSM_MEMORY");
    }
    for (int k = 0; k < bench_nodes && npriv; k++) {
        priv[k] = dsm_alloc_placed(npriv * BENCH_PAGE, DSM_PLACE_NODE, (size_t)k);
        BENCH_CHECK(priv[k], "allocation failed: raise DSM_MEMORY");
    }
    bench_reduce_init();

    /* Visible page v: shared page v, or private page v - nshared of this node. */
    volatile uint64_t **vis = malloc(nvis * sizeof *vis);
    uint64_t *count = calloc(nvis, sizeof *count);
    BENCH_CHECK(vis && count, "out of local memory");
    for (size_t v = 0; v < nvis; v++)
        vis[v] = (volatile uint64_t *)(v < nshared ? shared + v * BENCH_PAGE
                                                   : priv[bench_rank] + (v - nshared) * BENCH_PAGE);
    size_t me = (size_t)bench_rank * SLOT, next = (size_t)((bench_rank + 1) % bench_nodes) * SLOT;

    uint64_t rng = (uint64_t)seed * 1000003u + (uint64_t)bench_rank;
    size_t recent[RECENT] = {0}, nrecent = 0, prev = 0;
    uint64_t writes = 0, reads = 0, bad = 0, checksum = 0;

    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < ops; i++) {
        size_t v;
        if (nrecent && bench_rand01(&rng) < tt)
            v = recent[bench_rand(&rng) % (nrecent < RECENT ? nrecent : RECENT)];
        else if (i && bench_rand01(&rng) < ss)
            v = (prev + 1) % nvis;
        else
            v = (size_t)(bench_rand(&rng) % nvis);
        recent[nrecent++ % RECENT] = v;
        prev = v;
        volatile uint64_t *pg = vis[v];
        if (bench_rand01(&rng) < rr) {
            bad += pg[me] != count[v];
            checksum += pg[next];
            reads++;
        } else {
            pg[me] = ++count[v];
            writes++;
        }
    }
    uint64_t t1 = bench_now_ns();
    dsm_barrier();
    bench_stats(&after);
    BENCH_CHECK(!bad, "%llu reads of this node's own slot returned a stale value",
                (unsigned long long)bad);
    for (size_t v = 0; v < nvis; v++)
        BENCH_CHECK(vis[v][me] == count[v], "page %zu: own slot holds %llu, wrote %llu times", v,
                    (unsigned long long)vis[v][me], (unsigned long long)count[v]);

    double all_writes = bench_sum((double)writes);
    if (bench_rank == 0) {
        double found = 0;
        for (size_t v = 0; v < nshared; v++)
            for (int k = 0; k < bench_nodes; k++)
                found += (double)((volatile uint64_t *)(shared + v * BENCH_PAGE))[k * SLOT];
        for (int k = 0; k < bench_nodes; k++)
            for (size_t v = 0; v < npriv; v++)
                found += (double)((volatile uint64_t *)(priv[k] + v * BENCH_PAGE))[k * SLOT];
        BENCH_CHECK(found == all_writes,
                    "the slots add up to %.0f writes, the nodes made %.0f: writes were lost", found,
                    all_writes);
    }
    double secs = bench_max((double)(t1 - t0) * 1e-9);
    double faults = (double)(after.read_faults - before.read_faults) +
                    (double)(after.write_faults - before.write_faults) +
                    (double)(after.upgrades - before.upgrades);
    double all_faults = bench_sum(faults);
    char variant[96];
    snprintf(variant, sizeof variant, "r%.2f-f%.2f-s%.2f-t%.2f", rr, ff, ss, tt);
    bench_stats_print(NAME, variant, &before, &after);
    if (bench_rank == 0)
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=us/access "
                   "accesses_per_s=%.0f faults_per_access=%.4f pages=%ld shared_pages=%zu "
                   "ops_per_node=%ld node0_reads=%llu checksum=%llu",
                   NAME, variant, bench_nodes, secs * 1e6 / (double)ops,
                   (double)ops * bench_nodes / secs, all_faults / ((double)ops * bench_nodes),
                   pages, nshared, ops, (unsigned long long)reads,
                   (unsigned long long)(checksum & 0xffff));
    free(vis);
    free(count);
    bench_end();
    return 0;
}

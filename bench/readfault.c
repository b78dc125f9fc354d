/*
 * readfault.c - workload (a): the cost of a remote read fault, per page, on a sequential walk.
 *
 * Layout (bench-workloads.md (a)): global memory of G = 128 MiB homed in contiguous halves
 * (node k homes [k*G/P, (k+1)*G/P)); a 32 MiB pad, then A = 64 MiB + one page, so A starts at
 * G/4 and about half of its pages are homed on each node. ufdsm's placement policies apply
 * per allocation, so this layout is built exactly with one DSM_PLACE_NODE allocation per
 * home chunk (bench_alloc_global_block); run it with DSM_MEMORY=256M so that the collective
 * half of the space (what dsm_alloc draws from) is the 128 MiB of the definition.
 *
 *   home-written: every node writes A[p][0] = p+1 into each page of A it homes; barrier;
 *                 node 1 alone reads the word of every page not homed on it, in order.
 *                 Only that loop is timed: result = loop time / pages read.
 *   re-fetch:     the homes rewrite p+2 into their pages (invalidating node 1's copies);
 *                 barrier; node 1 repeats the loop.
 * Node 1 checks every value it read; a wrong one fails the run.
 * Extra keys: msgs_per_page (TCP messages node 1 sent per page read: 1 means one round trip
 * per page, i.e. no prefetching of sequential streams).
 *
 * Usage: readfault [-a MIB]   (size of A without its extra page; default 64, G = 2*MIB)
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"

#define NAME "readfault"

static void walk(const char *variant, volatile uint64_t *A, const size_t *list, size_t n,
                 uint64_t add)
{
    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    if (bench_rank == 1) {
        uint64_t bad = 0, first_bad = 0;
        uint64_t t0 = bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            size_t p = list[i];
            bad += A[p * BENCH_WORDS_PER_PAGE] != p + add;
        }
        uint64_t t1 = bench_now_ns();
        if (bad)
            for (size_t i = 0; i < n && !first_bad; i++)
                if (A[list[i] * BENCH_WORDS_PER_PAGE] != list[i] + add) first_bad = list[i] + 1;
        BENCH_CHECK(!bad,
                    "%s: %llu of %zu pages read a wrong value (first: page %llu holds %llu, "
                    "expected %llu)",
                    variant, (unsigned long long)bad, n, (unsigned long long)(first_bad - 1),
                    (unsigned long long)A[(first_bad - 1) * BENCH_WORDS_PER_PAGE],
                    (unsigned long long)(first_bad - 1 + add));
        bench_stats(&after);
        double us = (double)(t1 - t0) / 1e3 / (double)n;
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=us/page pages=%zu "
                   "total_ms=%.3f msgs_per_page=%.3f",
                   NAME, variant, bench_nodes, us, n, (double)(t1 - t0) / 1e6,
                   (double)(after.tp[DSM_TP_TCP].msgs_sent - before.tp[DSM_TP_TCP].msgs_sent) /
                       (double)n);
    }
    dsm_barrier();
    bench_stats(&after);
    bench_stats_print(NAME, variant, &before, &after);
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

    size_t global = (size_t)a_mib << 21, pad = global / 4;
    size_t asize = ((size_t)a_mib << 20) + BENCH_PAGE, np = asize / BENCH_PAGE;
    void *padp = bench_alloc_global_block(0, pad, global);
    volatile uint64_t *A = bench_alloc_global_block(pad, asize, global);
    BENCH_CHECK(padp && A, "allocation failed");
    bench_reduce_init();

    /* Pages this node homes, and (node 1) pages it will read. */
    size_t *mine = malloc(np * sizeof *mine), *list = malloc(np * sizeof *list);
    BENCH_CHECK(mine && list, "out of local memory");
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

    for (size_t i = 0; i < nmine; i++) A[mine[i] * BENCH_WORDS_PER_PAGE] = mine[i] + 1;
    walk("home-written", A, list, nlist, 1);

    for (size_t i = 0; i < nmine; i++) A[mine[i] * BENCH_WORDS_PER_PAGE] = mine[i] + 2;
    walk("re-fetch", A, list, nlist, 2);

    free(mine);
    free(list);
    bench_end();
    return 0;
}

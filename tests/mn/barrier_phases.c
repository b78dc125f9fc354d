/*
 * barrier_phases.c - dsm_barrier separates phases: every write before it is seen by every
 * read after it, on every node, phase after phase.
 *
 * In phase p each node writes values derived from (p, rank, index) into its own slots: a
 * contiguous run of 1000 words (8000 bytes, so runs straddle page boundaries and share pages
 * with the neighbouring nodes' runs), and every N-th word of one fully interleaved page. The
 * array's pages are dealt round-robin over the nodes, so a node's slots are mostly homed
 * elsewhere. Barrier; then every node checks every slot of every node for phase p, exactly.
 * Phases alternate between two arrays, so a single barrier per phase is enough: the array
 * written in phase p+1 is not the one being checked for phase p, and the one written in p+2
 * was checked by everybody before they entered the barrier of phase p+1. Now and then one node
 * is late writing, so a barrier that lets nodes through early is caught.
 *
 * What a broken DSM does to it: a missing invalidation leaves a reader with its copy from
 * phase p-2 (wrong values, exactly detected); a write lost when a page with several writers
 * migrates shows up as an old value in somebody's slot; a barrier that does not wait for all
 * nodes, or does not order the writes before it with the reads after it, shows up as a
 * previous phase's values.
 *
 * Usage: barrier_phases [PHASES]
 */
#include <stdint.h>

#include "mn.h"

#define SLOTS       1000 /* contiguous words per node */
#define INTERLEAVED (MN_PAGE / 8)

static uint64_t want(long phase, int node, long index)
{
    return mn_val((uint64_t)phase, (uint64_t)node, (uint64_t)index);
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 200, 1);
    mn_begin(1);
    const int n = mn_nodes, me = mn_rank;
    const size_t words = (size_t)n * SLOTS + INTERLEAVED;
    uint64_t *buf[2];
    for (int b = 0; b < 2; b++) {
        buf[b] = MN_ALLOC_PLACED(words * sizeof(uint64_t), DSM_PLACE_CYCLIC, MN_PAGE);
    }
    double t0 = mn_now();
    for (long p = 0; p < a.iters; p++) {
        uint64_t *run = buf[p % 2], *inter = run + (size_t)n * SLOTS;
        /* The previous contents (phase p-2, or zero) must still be there before we write. */
        if (p >= 2) {
            CHECK(run[(size_t)me * SLOTS] == want(p - 2, me, 0),
                  "phase %ld: my first slot does not hold what I wrote in phase %ld", p, p - 2);
        }
        if (p % 7 == 3 && p % n == me) usleep(2000); /* a late writer */
        for (long i = 0; i < SLOTS; i++) run[(size_t)me * SLOTS + (size_t)i] = want(p, me, i);
        for (long w = me; w < INTERLEAVED; w += n) inter[w] = want(p, me, SLOTS + w);
        dsm_barrier();
        for (int k = 0; k < n; k++) {
            for (long i = 0; i < SLOTS; i++) {
                uint64_t got = run[(size_t)k * SLOTS + (size_t)i], exp = want(p, k, i);
                if (got == exp) continue;
                long stale = -1;
                for (long q = p - 1; q >= 0 && q >= p - 4; q--)
                    if (got == want(q, k, i)) stale = q;
                CHECK(0,
                      "phase %ld: word %ld of node %d's slots (page homed on node %d) is "
                      "%#llx, expected %#llx (%s %ld)",
                      p, i, k, dsm_home(&run[(size_t)k * SLOTS + (size_t)i]),
                      (unsigned long long)got, (unsigned long long)exp,
                      stale >= 0 ? "a stale value, from phase" : "not from any phase since",
                      stale >= 0 ? stale : (p > 4 ? p - 4 : 0));
            }
        }
        for (long w = 0; w < INTERLEAVED; w++)
            CHECK(inter[w] == want(p, (int)(w % n), SLOTS + w),
                  "phase %ld: interleaved word %ld (written by node %d) is %#llx, expected %#llx",
                  p, w, (int)(w % n), (unsigned long long)inter[w],
                  (unsigned long long)want(p, (int)(w % n), SLOTS + w));
    }
    dsm_barrier();
    if (me == 0)
        mn_say("%ld phases over %zu words on %d nodes: every slot exact (%.2f s)", a.iters, words,
               n, mn_now() - t0);
    mn_end("barrier_phases");
    return 0;
}

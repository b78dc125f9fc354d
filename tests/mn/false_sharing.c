/*
 * false_sharing.c - nodes writing disjoint parts of one page never lose each other's writes.
 *
 * One page, cut into N slices (node k owns bytes [4096k/N, 4096(k+1)/N)). Each round, every
 * node writes every byte of its slice with values derived from (round, node, byte), in four
 * chunks with a yield in between so that the page is taken away in the middle of a slice.
 *   - Free-running: ROUNDS rounds with no synchronisation; after writing, each node reads its
 *     own slice back and checks it holds exactly this round's values (nobody else writes
 *     there, so anything else is a lost write). At the end, after a barrier, every node checks
 *     the whole page: every slice must hold its node's last round.
 *   - With barriers: ROUNDS/5 rounds of write, barrier, every node checks the whole page,
 *     barrier.
 * The page is homed on node 0 in the first part and on node N-1 in the second.
 *
 * What a broken DSM does to it: with a single-writer protocol the page bounces between the
 * writers; if the new owner starts from a stale copy (the previous owner's writes not
 * written back, or a write that raced with the recall not included), or a multiple-writer
 * merge gets a byte wrong, some node's slice loses bytes: the owner's read-back or the final
 * check shows the value of an older round, exactly and byte by byte.
 *
 * Usage: false_sharing [ROUNDS]
 */
#include <sched.h>
#include <stdint.h>

#include "mn.h"

/* A per-byte pattern shifted by the round: a byte from any of the previous 255 rounds
 * differs from the expected one, so every stale byte is detected. */
static uint8_t want(long round, int node, size_t i)
{
    return (uint8_t)((uint64_t)round + mn_val((uint64_t)node, i, 0x77));
}

static size_t slice_lo(int k)
{
    return (size_t)MN_PAGE * (size_t)k / (size_t)mn_nodes;
}

static void write_slice(volatile uint8_t *page, long round)
{
    size_t lo = slice_lo(mn_rank), hi = slice_lo(mn_rank + 1), len = hi - lo;
    for (int chunk = 0; chunk < 4; chunk++) {
        for (size_t i = lo + len * (size_t)chunk / 4; i < lo + len * (size_t)(chunk + 1) / 4; i++)
            page[i] = want(round, mn_rank, i);
        sched_yield();
    }
}

static void check_slice(volatile uint8_t *page, int k, long round, const char *when)
{
    for (size_t i = slice_lo(k); i < slice_lo(k + 1); i++) {
        uint8_t got = page[i];
        if (got == want(round, k, i)) continue;
        long from = -1;
        for (long q = round - 1; q >= 0 && q >= round - 8; q--)
            if (got == want(q, k, i)) from = q;
        CHECK(0,
              "%s: byte %zu (node %d's slice) is %#x, expected %#x of round %ld%s%ld: a write "
              "to the shared page was lost",
              when, i, k, got, want(round, k, i), round,
              from >= 0 ? "; it matches round " : "; it matches no round since ",
              from >= 0 ? from : (round > 8 ? round - 8 : 0));
    }
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 1000, 1);
    mn_begin(1);
    const int n = mn_nodes;
    char when[96];
    volatile uint8_t *p1 = MN_ALLOC_PLACED(MN_PAGE, DSM_PLACE_NODE, 0);
    volatile uint8_t *p2 = MN_ALLOC_PLACED(MN_PAGE, DSM_PLACE_NODE, n - 1);
    CHECK(dsm_home((const void *)p1) == 0 && dsm_home((const void *)p2) == n - 1,
          "the pages are homed on %d and %d, not 0 and %d", dsm_home((const void *)p1),
          dsm_home((const void *)p2), n - 1);
    dsm_barrier();

    double t0 = mn_now();
    const long rounds = a.iters;
    for (long r = 0; r < rounds; r++) {
        write_slice(p1, r);
        snprintf(when, sizeof when, "free-running round %ld, reading back my own slice", r);
        check_slice(p1, mn_rank, r, when);
    }
    dsm_barrier();
    for (int k = 0; k < n; k++) check_slice(p1, k, rounds - 1, "after the free-running rounds");
    dsm_barrier();
    if (mn_rank == 0)
        mn_say("%ld free-running rounds on one page, %d writers: no write lost (%.2f s)", rounds, n,
               mn_now() - t0);

    t0 = mn_now();
    const long brounds = rounds / 5 > 0 ? rounds / 5 : 1;
    for (long r = 0; r < brounds; r++) {
        write_slice(p2, r);
        dsm_barrier();
        snprintf(when, sizeof when, "round %ld with barriers", r);
        for (int k = 0; k < n; k++) check_slice(p2, k, r, when);
        dsm_barrier();
    }
    if (mn_rank == 0)
        mn_say("%ld rounds with barriers: every node saw every slice exact (%.2f s)", brounds,
               mn_now() - t0);
    mn_end("false_sharing");
    return 0;
}

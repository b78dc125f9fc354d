/*
 * message_flag.c - message passing through DSM memory: data written before a flag is complete
 * when the flag is seen.
 *
 * A data block of 5 pages + 1000 bytes, starting mid-page and spanning 6 pages homed on
 * different nodes, and a flag. In round k the sender (node k % N) fills the block with values
 * derived from (k, index) and then sets the flag to k+1; the receiver (node (k+1) % N, which
 * is the next round's sender, so no barrier is needed between rounds) spins on the flag until
 * it reads k+1, then checks every word of the block. Three variants of the flag, each for
 * ROUNDS rounds: a plain volatile store/volatile read on a page of its own; a C11 release
 * store/acquire load on a page of its own; the same on the last page of the data block.
 * Spinning nodes also check that the flag never goes backwards and never runs ahead.
 *
 * What a broken DSM does to it: the point of sequential consistency is that the flag cannot
 * become visible before the data written earlier. If a node's write to the flag page can
 * complete before its writes to the data pages (e.g. data writes buffered or the page handed
 * over before the writes landed), or the receiver keeps a stale read-only copy of a data page
 * because an invalidation was lost, the receiver sees part of the block from an older round:
 * caught exactly, word by word. A receiver whose flag copy is never invalidated spins
 * forever: caught by the wait timeout. A flag read that goes backwards is a stale copy too.
 *
 * Usage: message_flag [ROUNDS]
 */
#include <stdatomic.h>
#include <stdint.h>

#include "mn.h"

#define DATA_WORDS  ((5 * MN_PAGE + 1000) / 8)
#define DATA_OFFSET 96 /* words: the block starts mid-page */

enum { PLAIN, ATOMIC, ATOMIC_SAME_PAGE, VARIANTS };
static const char *const variant_name[] = {"plain volatile flag", "atomic release/acquire flag",
                                           "atomic flag on a data page"};

static uint64_t want(int variant, long round, long i)
{
    return mn_val((uint64_t)variant * 1000003u + (uint64_t)round, (uint64_t)i, 0x5a);
}

static void store_flag(int variant, uint64_t *flag, uint64_t v)
{
    if (variant == PLAIN) {
        atomic_signal_fence(memory_order_seq_cst); /* keep the compiler from sinking data stores */
        *(volatile uint64_t *)flag = v;
    } else {
        atomic_store_explicit((_Atomic uint64_t *)flag, v, memory_order_release);
    }
}

static uint64_t load_flag(int variant, uint64_t *flag)
{
    uint64_t v;
    if (variant == PLAIN) {
        v = *(volatile uint64_t *)flag;
        atomic_signal_fence(memory_order_seq_cst);
    } else {
        v = atomic_load_explicit((_Atomic uint64_t *)flag, memory_order_acquire);
    }
    return v;
}

/* Spins until the flag reads k+1; every value read on the way must lie between the last
 * value this node saw and k+1 (the flag only grows, and nobody sets k+2 before we do). */
static uint64_t wait_flag(int variant, uint64_t *flag, long k, uint64_t last_seen, int sender)
{
    const uint64_t target = (uint64_t)k + 1;
    double t0 = mn_now();
    for (unsigned spins = 0;; spins++) {
        uint64_t v = load_flag(variant, flag);
        CHECK(v >= last_seen && v <= target,
              "%s, round %ld: read the flag as %llu after seeing %llu (it must lie in [%llu, "
              "%llu])",
              variant_name[variant], k, (unsigned long long)v, (unsigned long long)last_seen,
              (unsigned long long)last_seen, (unsigned long long)target);
        last_seen = v;
        if (v == target) return v;
        sched_yield();
        if ((spins & 1023) == 1023)
            CHECK(mn_now() - t0 < MN_WAIT_SECONDS,
                  "%s, round %ld: node %d never saw the flag set by node %d (still reads %llu)",
                  variant_name[variant], k, mn_rank, sender, (unsigned long long)v);
    }
}

static void run(int variant, uint64_t *data, uint64_t *flag, long rounds)
{
    const int n = mn_nodes, me = mn_rank;
    uint64_t last_seen = 0;
    for (long k = 0; k < rounds; k++) {
        int sender = (int)(k % n), receiver = (int)((k + 1) % n);
        if (me == sender) {
            for (long i = 0; i < DATA_WORDS; i++) data[i] = want(variant, k, i);
            store_flag(variant, flag, (uint64_t)k + 1);
            last_seen = (uint64_t)k + 1;
        }
        if (me == receiver) {
            last_seen = wait_flag(variant, flag, k, last_seen, sender);
            for (long i = 0; i < DATA_WORDS; i++) {
                uint64_t got = data[i];
                if (got == want(variant, k, i)) continue;
                long from = -1;
                for (long q = k - 1; q >= 0 && q >= k - 2 * n; q--)
                    if (got == want(variant, q, i)) from = q;
                CHECK(0,
                      "%s, round %ld: after seeing the flag, word %ld of the block (page homed "
                      "on node %d) is %#llx, expected %#llx%s%ld)",
                      variant_name[variant], k, i, dsm_home(&data[i]), (unsigned long long)got,
                      (unsigned long long)want(variant, k, i),
                      from >= 0 ? " (stale: written in round " : " (not from any round since ",
                      from >= 0 ? from : (k > 2 * n ? k - 2 * n : 0));
            }
        }
    }
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 200, 1);
    mn_begin(2);
    size_t block_bytes = (DATA_OFFSET + DATA_WORDS + 64) * sizeof(uint64_t);
    uint64_t *block = MN_ALLOC_PLACED(block_bytes, DSM_PLACE_CYCLIC, MN_PAGE);
    uint64_t *flags = MN_ALLOC_PLACED(2 * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
    uint64_t *data = block + DATA_OFFSET;
    uint64_t *flag[VARIANTS] = {
        [PLAIN] = flags,
        [ATOMIC] = flags + MN_PAGE / 8,
        [ATOMIC_SAME_PAGE] = data + DATA_WORDS + 8, /* on the block's last page */
    };
    CHECK((uintptr_t)flag[ATOMIC_SAME_PAGE] / MN_PAGE == (uintptr_t)&data[DATA_WORDS - 1] / MN_PAGE,
          "layout: the in-block flag is not on the block's last page");
    double t0 = mn_now();
    for (int v = 0; v < VARIANTS; v++) {
        dsm_barrier();
        run(v, data, flag[v], a.iters);
        dsm_barrier();
        if (mn_rank == 0) mn_say("%s: %ld rounds exact", variant_name[v], a.iters);
    }
    if (mn_rank == 0) mn_say("%.2f s", mn_now() - t0);
    mn_end("message_flag");
    return 0;
}

/*
 * prodcons.c - a producer/consumer stream through a ring of pages in DSM memory: the
 * throughput and per-item cost of handing data from one node to another with flags.
 *
 * Nodes pair up (0 -> 1, 2 -> 3, ...; with an odd count the last node only takes part in the
 * barriers). Each pair has a ring of SLOTS pages, homed on the producer (-H producer, the
 * default: the consumer's read is then one round trip to the data's home) or on the consumer
 * (-H consumer: the producer fetches every slot for writing and the consumer recalls it), and
 * a "done" counter on its own page homed on the consumer. Item k goes to slot k % SLOTS: the
 * producer waits until done > k - SLOTS, writes BYTES of payload (word i = a hash of (k, i))
 * after the slot's sequence word, then stores seq = k+1 with release semantics ("data, then
 * flag", which docs/memory-model.md guarantees). The consumer waits for seq == k+1 (acquire),
 * checks every payload word, and publishes done every SLOTS/4 items. Both sides spin on DSM
 * memory, as a shared-memory program would.
 * Under DSM_PROTOCOL=rc the ring is release-consistent, and the program is written as an RC
 * program must be (docs/memory-model.md): a flag is not atomic across nodes in RC memory, so
 * the sequence words and the "done" counter live in SC memory of their own (DSM_SC, pages of
 * their own, homed as the ring and the counter are), the producer calls dsm_release between the
 * payload and the flag, and the consumer dsm_acquire between the flag and the payload. The
 * same layout under sc would cost a second page per item, so sc keeps the flag in the slot.
 * Result: value = max over pairs of time / ITEMS (us per item); keys: MB/s per pair.
 * Checks: every payload word of every item, and the item count.
 *
 * Usage: prodcons [-n ITEMS] [-q SLOTS] [-b BYTES] [-H producer|consumer]
 *        (DSM_PROTOCOL=rc: the RC form above)
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "prodcons"

static inline uint64_t payload_word(uint64_t k, uint64_t i)
{
    uint64_t s = k * 0x100000001b3ull + i;
    return bench_rand(&s);
}

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    long items = 20000, slots = 16, bytes = 4000;
    int home_consumer = 0, opt;
    while ((opt = getopt(argc, argv, "n:q:b:H:")) != -1) {
        if (opt == 'n')
            items = bench_arg_long("-n", optarg, 1, 1L << 34);
        else if (opt == 'q')
            slots = bench_arg_long("-q", optarg, 4, 1 << 16);
        else if (opt == 'b')
            bytes = bench_arg_long("-b", optarg, 8, BENCH_PAGE - 8);
        else if (opt == 'H' && (!strcmp(optarg, "producer") || !strcmp(optarg, "consumer")))
            home_consumer = !strcmp(optarg, "consumer");
        else {
            fprintf(stderr, "usage: %s [-n ITEMS] [-q SLOTS] [-b BYTES] [-H producer|consumer]\n",
                    argv[0]);
            return 2;
        }
    }
    bench_begin(argv[0]);
    BENCH_CHECK(bench_nodes >= 2, "needs at least 2 nodes");
    int pairs = bench_nodes / 2;
    const char *proto = getenv("DSM_PROTOCOL");
    const int rc = proto && !strcmp(proto, "rc");
    char *ring[128];
    _Atomic uint64_t *done[128], *seqs[128];
    for (int p = 0; p < pairs; p++) {
        int prod = 2 * p, cons = 2 * p + 1;
        size_t ring_home = (size_t)(home_consumer ? cons : prod);
        ring[p] = dsm_alloc_placed((size_t)slots * BENCH_PAGE, DSM_PLACE_NODE, ring_home);
        done[p] = dsm_alloc_placed(BENCH_PAGE, DSM_PLACE_NODE | (rc ? DSM_SC : 0), (size_t)cons);
        seqs[p] = rc ? dsm_alloc_placed((size_t)slots * sizeof *seqs[p], DSM_PLACE_NODE | DSM_SC,
                                        ring_home)
                     : NULL;
        BENCH_CHECK(ring[p] && done[p] && (!rc || seqs[p]), "allocation failed");
    }
    bench_reduce_init();
    int pair = bench_rank / 2, role = bench_rank % 2; /* role 0 producer, 1 consumer */
    int active = pair < pairs;
    size_t words = (size_t)bytes / 8;
    long publish = slots / 4;

    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    uint64_t t0 = bench_now_ns(), bad = 0;
    if (active && role == 0) {
        for (long k = 0; k < items; k++) {
            while ((uint64_t)k >=
                   atomic_load_explicit(done[pair], memory_order_acquire) + (uint64_t)slots)
                bench_relax();
            char *slot = ring[pair] + (size_t)(k % slots) * BENCH_PAGE;
            volatile uint64_t *data = (volatile uint64_t *)slot + 1;
            for (size_t i = 0; i < words; i++) data[i] = payload_word((uint64_t)k, i);
            _Atomic uint64_t *seq = (_Atomic uint64_t *)slot;
            if (rc) {
                dsm_release(); /* the payload reaches its home before the flag is set */
                seq = &seqs[pair][k % slots];
            }
            atomic_store_explicit(seq, (uint64_t)k + 1, memory_order_release);
        }
    } else if (active) {
        for (long k = 0; k < items; k++) {
            char *slot = ring[pair] + (size_t)(k % slots) * BENCH_PAGE;
            _Atomic uint64_t *seq = rc ? &seqs[pair][k % slots] : (_Atomic uint64_t *)slot;
            while (atomic_load_explicit(seq, memory_order_acquire) != (uint64_t)k + 1)
                bench_relax();
            if (rc) dsm_acquire(); /* then this node's stale copy of the slot is gone */
            volatile uint64_t *data = (volatile uint64_t *)slot + 1;
            for (size_t i = 0; i < words; i++) bad += data[i] != payload_word((uint64_t)k, i);
            if ((k + 1) % publish == 0 || k + 1 == items)
                atomic_store_explicit(done[pair], (uint64_t)k + 1, memory_order_release);
        }
    }
    uint64_t t1 = bench_now_ns();
    bench_stats(&after);
    dsm_barrier();
    BENCH_CHECK(!bad, "%llu payload words arrived wrong", (unsigned long long)bad);
    if (active && role == 1)
        BENCH_CHECK(atomic_load(done[pair]) == (uint64_t)items, "consumed %llu items of %ld",
                    (unsigned long long)atomic_load(done[pair]), items);
    double secs = bench_max((double)(t1 - t0) * 1e-9);
    const char *variant = home_consumer ? "home-consumer" : "home-producer";
    bench_stats_print(NAME, variant, &before, &after);
    if (bench_rank == 0)
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=us/item items=%ld "
                   "slots=%ld bytes=%ld mb_per_s_per_pair=%.1f pairs=%d",
                   NAME, variant, bench_nodes, secs * 1e6 / (double)items, items, slots, bytes,
                   (double)items * (double)bytes / secs / 1e6, pairs);
    bench_end();
    return 0;
}

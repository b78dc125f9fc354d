/*
 * migratory.c - migratory data (read, then written, by one node after another) moves with one
 * request per visit, and the guess that a page is migratory is withdrawn when it is wrong.
 *
 * 1. A counter on a page homed on node 0 and a mutex; the nodes take turns strictly (node r
 *    increments when counter % N == r), 100 turns each. The counter must end at 100 * N.
 *    On 2 nodes (strict alternation: every visit increments), after each node's first turn
 *    (a read miss and an upgrade) every visit must be a single exclusive request: at most 2
 *    upgrades per node in all, and at least 95 read misses that asked for ownership. With
 *    more nodes the lock hands the counter to nodes whose turn it is not, so only the
 *    count is checked there.
 * 2. Producer/consumer, where the guess is wrong: the last node reads then writes a page (an
 *    upgrade: a migratory candidate there). Then for 20 rounds node 0 writes it and the last
 *    node reads it. The first of those reads asks for ownership; node 0's next write takes
 *    the page back unwritten, which must withdraw the guess: exactly 1 ownership-asking read
 *    in the 20 rounds.
 *
 * What a broken runtime does to it: without the prediction, part 1 counts 100 upgrades per
 * node; a prediction that never withdraws counts 20 in part 2; a page mapped writable by a
 * guess without marking it clean, or left read-only after the guess was confirmed, either
 * loses the write detection or faults forever (the test times out).
 *
 * Usage: migratory
 */
#include "mn.h"

#define TURNS  100
#define ROUNDS 20

int main(void)
{
    mn_begin(2);
    struct shared {
        dsm_mutex_t m;
        char pad1[MN_PAGE - sizeof(dsm_mutex_t)];
        volatile uint64_t counter;
        char pad2[MN_PAGE - 8];
        volatile uint64_t mostly_read;
    } *s = dsm_alloc_placed(sizeof *s, DSM_PLACE_NODE, 0);
    CHECK(s, "dsm_alloc_placed failed");
    if (mn_rank == 0) dsm_mutex_init(&s->m);
    dsm_barrier();

    dsm_stats_t a, b;
    CHECK(dsm_stats(&a) == 0, "dsm_stats failed");
    for (int done = 0; done < TURNS;) {
        dsm_mutex_lock(&s->m);
        if (s->counter % (uint64_t)mn_nodes == (uint64_t)mn_rank) {
            s->counter++;
            done++;
        }
        dsm_mutex_unlock(&s->m);
    }
    CHECK(dsm_stats(&b) == 0, "dsm_stats failed");
    dsm_barrier();
    CHECK(s->counter == (uint64_t)TURNS * (uint64_t)mn_nodes, "counter is %llu, expected %d",
          (unsigned long long)s->counter, TURNS * mn_nodes);
    uint64_t upg = b.upgrades - a.upgrades, mig = b.migratory_reads - a.migratory_reads;
    CHECK(mn_nodes > 2 || (upg <= 2 && mig >= TURNS - 5),
          "%d turns on a migratory counter: %llu upgrades and %llu ownership-asking read "
          "misses; expected at most 2 and at least %d",
          TURNS, (unsigned long long)upg, (unsigned long long)mig, TURNS - 5);
    dsm_barrier();

    int last = mn_nodes - 1;
    if (mn_rank == last) s->mostly_read = s->mostly_read + 1; /* read miss, then upgrade */
    dsm_barrier();
    CHECK(dsm_stats(&a) == 0, "dsm_stats failed");
    for (int r = 0; r < ROUNDS; r++) {
        if (mn_rank == 0) s->mostly_read = (uint64_t)r + 2;
        dsm_barrier();
        if (mn_rank == last)
            CHECK(s->mostly_read == (uint64_t)r + 2, "round %d: read %llu, expected %d", r,
                  (unsigned long long)s->mostly_read, r + 2);
        dsm_barrier();
    }
    CHECK(dsm_stats(&b) == 0, "dsm_stats failed");
    if (mn_rank == last)
        CHECK(b.migratory_reads - a.migratory_reads == 1,
              "a producer/consumer page: %llu ownership-asking reads in %d rounds, expected "
              "exactly 1 "
              "(the guess must be withdrawn once the page is taken back unwritten)",
              (unsigned long long)(b.migratory_reads - a.migratory_reads), ROUNDS);
    mn_end("migratory");
    return 0;
}

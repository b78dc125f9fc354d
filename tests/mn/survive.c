/*
 * survive.c - memory a node homes survives its use by others: after any sequence of writes
 * by any nodes, every node reads the last value written to every word.
 *
 * An array of 4 pages per node, dealt round-robin over all homes, and a seed that node 0
 * picks (or takes from the command line) and shares through DSM memory. TURNS turns
 * separated by barriers; in each, a PRNG seeded with the shared seed - so every node draws
 * the same numbers - picks up to 8 distinct words and, for each, a writer node and a value
 * (a quarter of them single-byte stores into the word); the chosen nodes perform their
 * writes, and every node applies them all to a private copy of the expected contents. Now and
 * then a randomly chosen node reads a random word mid-run and checks it. At the end every node
 * checks the whole array against its private copy, byte for byte.
 *
 * What a broken DSM does to it: the words' pages go back and forth between readers, writers
 * and their homes in an irregular order no hand-written test would think of. A write lost
 * when a page is recalled to its home, a home serving its stale backing copy after a remote
 * node modified the page, a reader keeping an old copy after an invalidation, a byte store
 * that clobbers the rest of its word: each leaves some word different from the expected copy,
 * and the message names the word, its home and the seed to replay it.
 *
 * Usage: survive [TURNS]   (environment MN_SEED=<number> to replay a given seed)
 */
#include <stdint.h>
#include <string.h>

#include "mn.h"

#define PAGES_PER_NODE  4
#define WRITES_PER_TURN 8

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 100, 1);
    mn_begin(1);
    const int n = mn_nodes, me = mn_rank;
    const size_t words = (size_t)n * PAGES_PER_NODE * (MN_PAGE / 8);
    uint64_t *arr = MN_ALLOC_PLACED(words * 8, DSM_PLACE_CYCLIC, MN_PAGE);
    uint64_t *seedp = MN_ALLOC(8);
    if (me == 0) {
        const char *s = getenv("MN_SEED");
        uint64_t seed = s && *s ? strtoull(s, NULL, 0) : mn_mix((uint64_t)time(NULL) ^ getpid());
        *seedp = seed;
        mn_say("seed %llu (replay with MN_SEED=%llu)", (unsigned long long)seed,
               (unsigned long long)seed);
    }
    dsm_barrier();
    const uint64_t seed = *seedp;
    uint64_t *expect = calloc(words, 8);
    CHECK(expect, "malloc");
    mn_rng_t rng;
    mn_rng_seed(&rng, seed);
    long writes = 0, mine = 0;

    for (long turn = 0; turn < a.iters; turn++) {
        /* a spot check by a random node, of the state left by the previous turns; nobody
         * writes that word in this turn */
        int reader = (int)mn_rand_below(&rng, (uint64_t)n);
        size_t probe = (size_t)mn_rand_below(&rng, words);
        if (reader == me)
            CHECK(arr[probe] == expect[probe],
                  "turn %ld: word %zu (page homed on node %d) reads %#llx, expected %#llx "
                  "(seed %llu)",
                  turn, probe, dsm_home(&arr[probe]), (unsigned long long)arr[probe],
                  (unsigned long long)expect[probe], (unsigned long long)seed);

        size_t idx[WRITES_PER_TURN];
        int nw = 1 + (int)mn_rand_below(&rng, WRITES_PER_TURN);
        for (int k = 0; k < nw; k++) {
            size_t w;
            int dup;
            do { /* distinct words within a turn: no two nodes race on one */
                w = (size_t)mn_rand_below(&rng, words);
                dup = w == probe;
                for (int q = 0; q < k; q++) dup |= idx[q] == w;
            } while (dup);
            idx[k] = w;
            int writer = (int)mn_rand_below(&rng, (uint64_t)n);
            uint64_t val = mn_rand(&rng);
            int byte = mn_rand_below(&rng, 4) == 0 ? (int)mn_rand_below(&rng, 8) : -1;
            if (byte >= 0) {
                ((uint8_t *)&expect[w])[byte] = (uint8_t)val;
                if (writer == me) ((volatile uint8_t *)&arr[w])[byte] = (uint8_t)val;
            } else {
                expect[w] = val;
                if (writer == me) arr[w] = val;
            }
            mine += writer == me;
            writes++;
        }
        dsm_barrier();
    }
    dsm_barrier();
    for (size_t w = 0; w < words; w++)
        CHECK(arr[w] == expect[w],
              "at the end: word %zu (page %zu, homed on node %d) is %#llx, expected %#llx "
              "(seed %llu)",
              w, w / (MN_PAGE / 8), dsm_home(&arr[w]), (unsigned long long)arr[w],
              (unsigned long long)expect[w], (unsigned long long)seed);
    dsm_barrier();
    if (me == 0)
        mn_say("%ld writes (%ld by node 0) in %ld turns over %zu words: all survived", writes, mine,
               a.iters, words);
    free(expect);
    mn_end("survive");
    return 0;
}

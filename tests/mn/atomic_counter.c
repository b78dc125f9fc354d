/*
 * atomic_counter.c - C11 atomic read-modify-writes on DSM memory are atomic across nodes.
 *
 * Every thread of every node, with no lock, K times: atomic_fetch_add(c1, 1) (seq_cst); a
 * relaxed fetch_add(c3, 3) and fetch_sub(c3, 1) on another word of the same page; and a
 * compare-exchange loop incrementing c2 (on a page with another home). Then, after a barrier,
 * every node checks c1 == c2 == T and c3 == 2T exactly (T = nodes x threads x K).
 *
 * Beyond the totals: every value fetch_add returned and every value a successful
 * compare-exchange replaced is recorded in a per-node bitmap; the bitmaps are published in DSM
 * memory and every node checks that each value 0..T-1 was obtained by exactly one thread.
 * Each thread also checks that the values it sees only grow.
 *
 * What a broken DSM does to it: an RMW is atomic only if the page is held exclusively for the
 * whole instruction; if two nodes can hold writable copies at once (a missing invalidation, a
 * grant before the previous owner gave the page up), or a node keeps using a stale copy after
 * losing the page, two threads obtain the same old value - a duplicate in the bitmaps - and
 * the totals come out short. A node reading from a stale copy also sees the counter go
 * backwards, caught by the per-thread monotonicity check.
 *
 * Usage: atomic_counter [-t THREADS] [ITERS]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "mn.h"

#define MAX_THREADS 16

struct hot { /* page 0, homed on node 0 */
    _Atomic uint64_t c1;
    char pad[256];
    _Atomic uint64_t c3; /* same page, different word */
};
struct cas { /* page 1, homed on node 1 % N */
    _Atomic uint64_t c2;
};

static struct hot *hot;
static struct cas *cas;
static long iters;
static int threads;
static uint64_t total;
static _Atomic uint64_t *seen1, *seen2; /* local bitmaps of values obtained on this node */

static void mark(_Atomic uint64_t *bm, uint64_t v, const char *what)
{
    CHECK(v < total, "%s obtained %llu, beyond the final total %llu", what, (unsigned long long)v,
          (unsigned long long)total);
    uint64_t bit = 1ull << (v % 64);
    uint64_t old = atomic_fetch_or(&bm[v / 64], bit);
    CHECK(!(old & bit), "%s obtained the value %llu twice on this node", what,
          (unsigned long long)v);
}

static void *worker(void *arg)
{
    (void)arg;
    uint64_t prev1 = 0, prev2 = 0;
    int first = 1;
    for (long i = 0; i < iters; i++) {
        uint64_t v = atomic_fetch_add(&hot->c1, 1);
        CHECK(first || v > prev1, "fetch_add returned %llu after %llu: the counter went back",
              (unsigned long long)v, (unsigned long long)prev1);
        prev1 = v;
        mark(seen1, v, "fetch_add");

        atomic_fetch_add_explicit(&hot->c3, 3, memory_order_relaxed);
        atomic_fetch_sub_explicit(&hot->c3, 1, memory_order_relaxed);

        uint64_t cur = atomic_load(&cas->c2);
        CHECK(first || cur >= prev2, "c2 read %llu after this thread saw %llu",
              (unsigned long long)cur, (unsigned long long)prev2);
        while (!atomic_compare_exchange_weak(&cas->c2, &cur, cur + 1)) {
            CHECK(cur >= prev2, "compare-exchange saw c2=%llu after this thread saw %llu",
                  (unsigned long long)cur, (unsigned long long)prev2);
        }
        prev2 = cur + 1;
        mark(seen2, cur, "compare-exchange");
        first = 0;
        /* Give the CPU away: the nodes share few CPUs, and a node that kept running would
         * keep the pages too; this way the counters' pages change hands all the time. */
        sched_yield();
    }
    return NULL;
}

/* Every value in [0, total) must be set in exactly one node's bitmap. */
static void check_bitmaps(const uint64_t *shared, size_t words, const char *what)
{
    for (size_t w = 0; w < words; w++) {
        uint64_t any = 0;
        for (int n = 0; n < mn_nodes; n++) {
            uint64_t b = shared[(size_t)n * words + w];
            CHECK(!(any & b), "%s: value %llu was obtained by node %d and by another node as well",
                  what, (unsigned long long)(w * 64 + (unsigned)__builtin_ctzll(any & b)), n);
            any |= b;
        }
        uint64_t want = ~0ull;
        if (w * 64 + 64 > total) want = total % 64 ? (1ull << (total % 64)) - 1 : ~0ull;
        if (w * 64 >= total) want = 0;
        CHECK(any == want, "%s: value %llu was obtained by no thread", what,
              (unsigned long long)(w * 64 + (unsigned)__builtin_ctzll(~any & want)));
    }
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 500, 1);
    iters = a.iters;
    threads = a.threads;
    CHECK(threads <= MAX_THREADS, "at most %d threads", MAX_THREADS);
    mn_begin(1);
    total = (uint64_t)mn_nodes * (uint64_t)threads * (uint64_t)iters;
    size_t words = (size_t)(total + 63) / 64;

    char *base = MN_ALLOC_PLACED(2 * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
    hot = (struct hot *)base;
    cas = (struct cas *)(base + MN_PAGE);
    CHECK(atomic_is_lock_free(&hot->c1), "64-bit atomics are not lock-free here");
    /* bitmaps published by every node: [2][nodes][words] */
    uint64_t *pub = MN_ALLOC(2 * (size_t)mn_nodes * words * sizeof(uint64_t));
    seen1 = calloc(words, sizeof *seen1);
    seen2 = calloc(words, sizeof *seen2);
    CHECK(seen1 && seen2, "out of local memory");
    CHECK(atomic_load(&hot->c1) == 0 && atomic_load(&cas->c2) == 0, "fresh memory is not zero");
    dsm_barrier();

    double t0 = mn_now();
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        CHECK(pthread_create(&th[t], NULL, worker, NULL) == 0, "pthread_create");
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    for (size_t w = 0; w < words; w++) {
        pub[(size_t)mn_rank * words + w] = atomic_load(&seen1[w]);
        pub[((size_t)mn_nodes + (size_t)mn_rank) * words + w] = atomic_load(&seen2[w]);
    }
    dsm_barrier();

    uint64_t c1 = atomic_load(&hot->c1), c2 = atomic_load(&cas->c2), c3 = atomic_load(&hot->c3);
    CHECK(c1 == total, "fetch_add counter is %llu, expected exactly %llu", (unsigned long long)c1,
          (unsigned long long)total);
    CHECK(c2 == total, "compare-exchange counter is %llu, expected exactly %llu",
          (unsigned long long)c2, (unsigned long long)total);
    CHECK(c3 == 2 * total, "relaxed add/sub counter is %llu, expected exactly %llu",
          (unsigned long long)c3, (unsigned long long)(2 * total));
    check_bitmaps(pub, words, "fetch_add");
    check_bitmaps(pub + (size_t)mn_nodes * words, words, "compare-exchange");
    if (mn_rank == 0)
        mn_say("%llu atomic increments of each kind: exact, every value obtained once (%.2f s)",
               (unsigned long long)total, mn_now() - t0);
    free(seen1);
    free(seen2);
    dsm_barrier();
    mn_end("atomic_counter");
    return 0;
}

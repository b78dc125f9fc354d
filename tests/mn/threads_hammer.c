/*
 * threads_hammer.c - many threads per node on the same few pages: a node's threads share its
 * page copies, and faults taken by several threads at once must not lose anyone's writes.
 *
 * THREADS threads per node (default 4), each ITERS times:
 *   - atomic_fetch_add on one of four counters on page 0 (rotating), then atomic loads of all
 *     four, checking that no counter this thread has seen ever goes backwards;
 *   - its own plain word on page 0 (the same page as the counters, written by no one else):
 *     checks it still holds what it wrote last time, writes the next value, reads it back;
 *   - every 4th iteration, under a dsm_mutex whose page (homed elsewhere) also holds a record
 *     of 8 words that must always be mutually consistent: checks the record, rewrites it
 *     with the next sequence number, and increments its own tally there.
 * At the end, after a barrier, every node checks the counter sum, every thread's own word,
 * every tally and the record, exactly.
 *
 * What a broken DSM does to it: page 0 is written by every thread of every node all the time,
 * so it migrates constantly while other threads of the same node keep using it. If a thread's
 * fault installs a stale copy over one another thread of the node just wrote to (or a page
 * arrives while a local writer still thinks it holds the old one), a plain write vanishes: the
 * own-word check fails on the next iteration. Atomics that are not atomic across the threads
 * of two nodes lose increments; a torn or stale record under the lock shows inconsistent
 * copies; a missing invalidation makes a counter go backwards.
 *
 * Usage: threads_hammer [-t THREADS] [ITERS]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "mn.h"

#define MAX_THREADS 16
#define MAX_GIDS    256
#define COPIES      8

struct hot { /* page 0 */
    _Atomic uint64_t ctr[4];
    uint64_t own[MAX_GIDS]; /* own[g] is written only by thread g */
};
struct locked { /* page 1 */
    dsm_mutex_t m;
    uint64_t seq;
    uint64_t copies[COPIES];
    uint64_t tally[MAX_GIDS];
};
_Static_assert(sizeof(struct hot) <= MN_PAGE && sizeof(struct locked) <= MN_PAGE, "one page each");

static struct hot *hot;
static struct locked *lk;
static long iters;
static int threads;

static void check_record(const char *when)
{
    for (int j = 0; j < COPIES; j++)
        CHECK(lk->copies[j] == mn_val(lk->seq, (uint64_t)j, 0),
              "%s: record copy %d does not match sequence %llu (torn or stale record)", when, j,
              (unsigned long long)lk->seq);
}

static void *worker(void *arg)
{
    int g = mn_rank * threads + (int)(intptr_t)arg;
    uint64_t seen[4] = {0, 0, 0, 0};
    for (long i = 0; i < iters; i++) {
        atomic_fetch_add(&hot->ctr[(g + i) % 4], 1);
        for (int c = 0; c < 4; c++) {
            uint64_t v = atomic_load(&hot->ctr[c]);
            CHECK(v >= seen[c], "thread %d: counter %d read %llu after %llu", g, c,
                  (unsigned long long)v, (unsigned long long)seen[c]);
            seen[c] = v;
        }

        volatile uint64_t *own = &hot->own[g];
        CHECK(*own == (uint64_t)i,
              "thread %d, iteration %ld: my own word on the shared page holds %llu, but I "
              "wrote %ld: a write was lost while the page moved",
              g, i, (unsigned long long)*own, i);
        *own = (uint64_t)i + 1;
        CHECK(*own == (uint64_t)i + 1, "thread %d: read back %llu right after writing %ld", g,
              (unsigned long long)*own, i + 1);

        if (i % 4 == 0) {
            dsm_mutex_lock(&lk->m);
            check_record("under the lock");
            uint64_t s = lk->seq + 1;
            for (int j = 0; j < COPIES; j++) lk->copies[j] = mn_val(s, (uint64_t)j, 0);
            lk->seq = s;
            lk->tally[g]++;
            dsm_mutex_unlock(&lk->m);
        }
        sched_yield(); /* let the other threads and nodes in: the pages must keep moving */
    }
    return NULL;
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 300, 4);
    iters = a.iters;
    threads = a.threads;
    CHECK(threads <= MAX_THREADS, "at most %d threads", MAX_THREADS);
    mn_begin(1);
    CHECK(mn_nodes * threads <= MAX_GIDS, "at most %d threads in all", MAX_GIDS);
    char *base = MN_ALLOC_PLACED(2 * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
    hot = (struct hot *)base;
    lk = (struct locked *)(base + MN_PAGE);
    if (mn_rank == 0) {
        dsm_mutex_init(&lk->m);
        for (int j = 0; j < COPIES; j++) lk->copies[j] = mn_val(0, (uint64_t)j, 0);
    }
    dsm_barrier();

    double t0 = mn_now();
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0, "pthread_create");
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    dsm_barrier();

    const int gids = mn_nodes * threads;
    uint64_t sum = 0;
    for (int c = 0; c < 4; c++) sum += atomic_load(&hot->ctr[c]);
    CHECK(sum == (uint64_t)gids * (uint64_t)iters, "the counters sum to %llu, expected %llu",
          (unsigned long long)sum, (unsigned long long)gids * (unsigned long long)iters);
    uint64_t locked = 0;
    for (int g = 0; g < gids; g++) {
        CHECK(hot->own[g] == (uint64_t)iters, "thread %d's own word is %llu, expected %ld", g,
              (unsigned long long)hot->own[g], iters);
        CHECK(lk->tally[g] == (uint64_t)(iters + 3) / 4, "thread %d's tally is %llu, expected %ld",
              g, (unsigned long long)lk->tally[g], (iters + 3) / 4);
        locked += lk->tally[g];
    }
    CHECK(lk->seq == locked, "the record's sequence is %llu, expected %llu",
          (unsigned long long)lk->seq, (unsigned long long)locked);
    check_record("at the end");
    if (mn_rank == 0)
        mn_say("%d threads x %ld iterations: exact (%.2f s)", gids, iters, mn_now() - t0);
    dsm_barrier();
    mn_end("threads_hammer");
    return 0;
}

/*
 * lock_counter.c - dsm_mutex gives mutual exclusion across nodes (and threads), and the data
 * written inside a critical section is what the next holder reads.
 *
 * Every thread of every node increments shared counters K times inside a dsm_mutex, reading
 * the counter, yielding now and then (to widen the window), then writing counter+1. Two
 * mutexes homed on different nodes guard two counters, one on the mutex's own page and one on
 * a page homed elsewhere; a third of the increments go through dsm_mutex_trylock retry loops.
 * An "owner" word set on entry and checked on exit catches two holders at once directly.
 * At the end every node checks, after a barrier, that each counter is exactly the number of
 * increments made, and each thread's own tally.
 *
 * What a broken DSM does to it: if two nodes (or two threads of one node) can hold the lock
 * together, the owner check fails or increments are lost; if the lock grant is not ordered
 * with the page protocol (the next holder reads a stale copy of the counter page, or an
 * invalidation is missing), increments are lost and the total is short; if a write is lost
 * when the page moves, likewise. Exact totals catch a single lost increment.
 *
 * Then dsm_mutex_trylock, driven by barriers so that the answer is deterministic: it returns
 * 0 on a free mutex; nonzero on every other node (and on another thread of the holding node)
 * while one node holds it; and 0 again for a node that tries right after the holder released
 * it and everybody passed a barrier - which also catches a failed trylock leaving a "ghost"
 * request queued at the home that later grants the lock to nobody.
 *
 * Usage: lock_counter [-t THREADS] [ITERS]   (ITERS = locked increments per thread)
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "mn.h"

#define MAX_THREADS 16
#define MAX_SLOTS   (64 * MAX_THREADS)

/* Four pages, dealt round-robin: page k is homed on node k % N. */
struct page0 { /* homed on node 0 */
    dsm_mutex_t a;
    uint64_t owner_a; /* gid+1 of the holder of a, 0 when free */
    uint64_t count_a; /* guarded by a, on a's own page */
};
struct page1 { /* homed on node 1 % N */
    dsm_mutex_t b;
};
struct page2 {        /* homed on node 2 % N */
    uint64_t count_b; /* guarded by b, on a page homed away from b */
};
struct page3 { /* homed on node 3 % N */
    uint64_t owner_b;
    dsm_mutex_t t;            /* the trylock test mutex */
    uint64_t done[MAX_SLOTS]; /* per-thread tallies, each written only by its thread */
};

static struct page0 *p0;
static struct page1 *p1;
static struct page2 *p2;
static struct page3 *p3;
static long iters;
static int threads;

static long trylock_iters(void)
{
    return iters / 3 > 0 ? iters / 3 : 1;
}

static void critical(dsm_mutex_t *m, uint64_t *owner, uint64_t *count, uint64_t me, long i)
{
    CHECK(*owner == 0, "entered the critical section of mutex %p while thread %llu held it", m,
          (unsigned long long)*owner - 1);
    *owner = me;
    uint64_t c = *(volatile uint64_t *)count;
    if (i % 16 == 0) sched_yield(); /* let another holder, if there were one, interleave */
    *(volatile uint64_t *)count = c + 1;
    CHECK(*owner == me, "mutex %p: thread %llu entered while thread %llu was inside", m,
          (unsigned long long)*owner - 1, (unsigned long long)me - 1);
    *owner = 0;
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    int gid = mn_rank * threads + t;
    uint64_t me = (uint64_t)gid + 1;
    for (long i = 0; i < iters; i++) {
        if (i % 2 == 0) {
            dsm_mutex_lock(&p0->a);
            critical(&p0->a, &p0->owner_a, &p0->count_a, me, i);
            p3->done[gid]++; /* only this thread writes it; its page is shared with others */
            dsm_mutex_unlock(&p0->a);
        } else {
            dsm_mutex_lock(&p1->b);
            critical(&p1->b, &p3->owner_b, &p2->count_b, me, i);
            p3->done[gid]++;
            dsm_mutex_unlock(&p1->b);
        }
    }
    for (long i = 0; i < trylock_iters(); i++) {
        dsm_mutex_t *m = i % 2 ? &p1->b : &p0->a;
        long spins = 0;
        while (dsm_mutex_trylock(m) != 0) {
            sched_yield();
            CHECK(++spins < 10000000, "dsm_mutex_trylock never succeeded in 10^7 attempts");
        }
        if (i % 2)
            critical(&p1->b, &p3->owner_b, &p2->count_b, me, i);
        else
            critical(&p0->a, &p0->owner_a, &p0->count_a, me, i);
        p3->done[gid]++;
        dsm_mutex_unlock(m);
    }
    return NULL;
}

static void *other_thread_trylock(void *arg)
{
    int *rc = arg;
    *rc = dsm_mutex_trylock(&p3->t);
    if (*rc == 0) dsm_mutex_unlock(&p3->t);
    return NULL;
}

static void check_totals(void)
{
    long n = (long)mn_nodes * threads;
    /* per thread: ceil(iters/2) + ceil(trylock_iters/2) on a, the rest on b */
    uint64_t want_a = (uint64_t)n * (uint64_t)((iters + 1) / 2 + (trylock_iters() + 1) / 2);
    uint64_t want_b = (uint64_t)n * (uint64_t)(iters / 2 + trylock_iters() / 2);
    CHECK(p0->count_a == want_a, "counter A is %llu, expected exactly %llu (%llu lost updates)",
          (unsigned long long)p0->count_a, (unsigned long long)want_a,
          (unsigned long long)(want_a - p0->count_a));
    CHECK(p2->count_b == want_b, "counter B is %llu, expected exactly %llu (%llu lost updates)",
          (unsigned long long)p2->count_b, (unsigned long long)want_b,
          (unsigned long long)(want_b - p2->count_b));
    for (long g = 0; g < n; g++)
        CHECK(p3->done[g] == (uint64_t)(iters + trylock_iters()),
              "thread %ld (node %ld) tallied %llu critical sections, expected %ld", g, g / threads,
              (unsigned long long)p3->done[g], iters + trylock_iters());
    CHECK(p0->owner_a == 0 && p3->owner_b == 0, "a mutex owner word was left set (%llu, %llu)",
          (unsigned long long)p0->owner_a, (unsigned long long)p3->owner_b);
}

static void trylock_protocol(void)
{
    int n = mn_nodes;
    for (int h = 0; h < n; h++) {
        if (mn_rank == h)
            CHECK(dsm_mutex_trylock(&p3->t) == 0, "trylock of a free mutex failed (round %d)", h);
        dsm_barrier(); /* node h now holds t */
        if (mn_rank != h) {
            int rc = dsm_mutex_trylock(&p3->t);
            CHECK(rc != 0, "trylock succeeded while node %d holds the mutex", h);
        } else {
            int rc = -12345;
            pthread_t th;
            CHECK(pthread_create(&th, NULL, other_thread_trylock, &rc) == 0, "pthread_create");
            pthread_join(th, NULL);
            CHECK(rc != 0,
                  "trylock from a second thread of node %d succeeded while the first "
                  "thread holds the mutex",
                  h);
        }
        dsm_barrier(); /* every attempt is over */
        if (mn_rank == h) dsm_mutex_unlock(&p3->t);
        dsm_barrier(); /* t is free again */
        if (mn_rank == (h + 1) % n) {
            CHECK(dsm_mutex_trylock(&p3->t) == 0,
                  "trylock failed on a mutex released by node %d before a barrier (a failed "
                  "trylock left a queued request, or the release was not complete)",
                  h);
            dsm_mutex_unlock(&p3->t);
        }
        dsm_barrier();
    }
    /* Blocking lock after all those trylocks: every node in turn must get it. */
    dsm_mutex_lock(&p3->t);
    dsm_mutex_unlock(&p3->t);
    dsm_barrier();
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 200, 1);
    iters = a.iters;
    threads = a.threads;
    CHECK(threads <= MAX_THREADS, "at most %d threads", MAX_THREADS);
    mn_begin(1);
    CHECK(mn_nodes * threads <= MAX_SLOTS, "too many nodes x threads");

    char *base = MN_ALLOC_PLACED(4 * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
    p0 = (struct page0 *)base;
    p1 = (struct page1 *)(base + MN_PAGE);
    p2 = (struct page2 *)(base + 2 * MN_PAGE);
    p3 = (struct page3 *)(base + 3 * MN_PAGE);
    for (int k = 0; k < 4; k++)
        CHECK(dsm_home(base + k * MN_PAGE) == k % mn_nodes, "page %d is homed on node %d, not %d",
              k, dsm_home(base + k * MN_PAGE), k % mn_nodes);
    if (mn_rank == 0) {
        dsm_mutex_init(&p0->a);
        dsm_mutex_init(&p1->b);
        dsm_mutex_init(&p3->t);
    }
    dsm_barrier();

    double t0 = mn_now();
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0, "pthread_create");
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    dsm_barrier();
    check_totals();
    if (mn_rank == 0)
        mn_say("%d x %d threads x %ld locked increments: exact (%.2f s)", mn_nodes, threads,
               iters + trylock_iters(), mn_now() - t0);

    trylock_protocol();
    check_totals(); /* nothing above may have disturbed them */
    dsm_barrier();

    /* Which path the locks took (MN_EXPECT_ONESIDED): with every node's lock table mapped,
     * every lock is an atomic there; with DSM_ONESIDED=off only a node's own mutexes are (a
     * and b are managed by different nodes, and every node locks both). */
    dsm_stats_t st;
    CHECK(dsm_stats(&st) == 0, "dsm_stats");
    const char *expect = mn_expect_onesided();
    mn_say("%llu of %llu locks taken in a lock table, without a message",
           (unsigned long long)st.onesided_locks, (unsigned long long)st.lock_acquires);
    if (expect && expect[0] == '1')
        CHECK(st.onesided_locks > 0 && st.onesided_locks == st.lock_acquires,
              "%llu of %llu locks went by message, though the nodes share a host and "
              "DSM_ONESIDED is on (DSM_LOG=info says why a peer's memory was not mapped)",
              (unsigned long long)(st.lock_acquires - st.onesided_locks),
              (unsigned long long)st.lock_acquires);
    if (expect && expect[0] == '0')
        CHECK(st.onesided_locks < st.lock_acquires && (mn_rank != 0 || st.onesided_locks > 0),
              "%llu of %llu locks taken in a lock table with DSM_ONESIDED=off (expected only, "
              "and on node 0 some, of the node's own mutexes)",
              (unsigned long long)st.onesided_locks, (unsigned long long)st.lock_acquires);
    mn_end("lock_counter");
    return 0;
}

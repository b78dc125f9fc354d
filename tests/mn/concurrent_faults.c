/*
 * concurrent_faults.c - several threads faulting on the same pages cost one request each.
 *
 * Every node owns 64 pages (homed on it) that it fills first. Then 4 threads per node wait on
 * a start flag and all read every page homed on the next node, in the same order, at once.
 * The pages are never written afterwards, so a page, once fetched, stays: the node's
 * read_faults counter (requests it sent) must grow by exactly 64, however the threads
 * interleave, and every thread must read the right values. A runtime that sends one request
 * per faulting thread, or wakes a thread before its page is in place, fails here.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "mn.h"

#define PAGES   64
#define THREADS 4

static uint64_t *mine, *theirs;
static int next;
static atomic_int go;

static void *reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&go)) sched_yield();
    for (int p = 0; p < PAGES; p++) {
        uint64_t v = theirs[p * 512];
        CHECK(v == mn_val(next, (uint64_t)p, 7), "page %d of node %d read %llu", p, next,
              (unsigned long long)v);
    }
    return NULL;
}

int main(void)
{
    /* Counting requests needs every request to come from a fault: read-ahead would add its
     * own, possibly for the next node's pages too (trace_prefetch tests read-ahead). */
    setenv("DSM_PREFETCH", "0", 1);
    mn_begin(2);
    next = (mn_rank + 1) % mn_nodes;
    uint64_t *blocks[64];
    for (int k = 0; k < mn_nodes; k++) {
        blocks[k] = dsm_alloc_placed(PAGES * 4096, DSM_PLACE_NODE, (size_t)k);
        CHECK(blocks[k], "dsm_alloc_placed failed");
    }
    mine = blocks[mn_rank];
    theirs = blocks[next];
    for (int p = 0; p < PAGES; p++) mine[p * 512] = mn_val(mn_rank, (uint64_t)p, 7);
    dsm_barrier();

    dsm_stats_t before, after;
    CHECK(dsm_stats(&before) == 0, "dsm_stats failed");
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, reader, NULL);
    atomic_store(&go, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK(dsm_stats(&after) == 0, "dsm_stats failed");
    uint64_t sent = after.read_faults - before.read_faults;
    CHECK(sent == PAGES,
          "%d threads reading %d remote pages sent %llu read requests, expected exactly %d "
          "(%llu faults joined a request in flight)",
          THREADS, PAGES, (unsigned long long)sent, PAGES,
          (unsigned long long)(after.waits_joined - before.waits_joined));
    CHECK(after.write_faults == before.write_faults, "reads caused write requests");
    if (mn_rank == 0)
        printf("node 0: %d threads x %d pages: %d requests, %llu joined\n", THREADS, PAGES, PAGES,
               (unsigned long long)(after.waits_joined - before.waits_joined));
    dsm_barrier();
    mn_end("concurrent_faults");
    return 0;
}

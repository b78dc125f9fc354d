/*
 * malloc_shared.c - dsm_malloc: local allocation, homed on the caller, usable everywhere once
 * the pointer is passed on; freeable by any node; address space reused.
 *
 * 1. Each node in turn is the allocator: it dsm_mallocs six blocks (8 bytes to 64 KiB + 8,
 *    small and multi-page), checks each is 16-byte aligned and homed on itself on every page,
 *    fills them and publishes the pointers in a dsm_alloc'ed table; barrier. Every node checks
 *    the blocks do not overlap. Then each other node in turn checks the current contents and
 *    rewrites them with the next version (barrier after each), the allocator checks the final
 *    version in its own memory, and a node other than the allocator dsm_frees them.
 * 2. Two threads per node concurrently malloc, fill, verify and free batches of blocks of
 *    random sizes (overlapping blocks would corrupt each other's patterns).
 * 3. Address-space reuse: each node mallocs and frees 1 MiB blocks in a loop, in total twice
 *    the global memory; then every node mallocs 4 MiB blocks that the next node frees, in total
 *    more than the global memory. Without reuse of freed space (locally, and after a free by
 *    another node) dsm_malloc would return NULL.
 *
 * What a broken DSM does to it: a wrong home (dsm_home, or the runtime's own idea of it)
 * sends requests for arena pages to the wrong node: hangs or wrong data. Memory that is only
 * usable by its allocator (arena pages not registered on the other nodes) faults or reads
 * zeros elsewhere; lost or stale writes show as the wrong version. A remote dsm_free that is
 * dropped, or a free list that is never reused, runs the arena out: NULL in part 3.
 *
 * Usage: malloc_shared [ROUNDS]
 */
#include <pthread.h>
#include <stdint.h>

#include "mn.h"

#define NBLOCKS 6
static const size_t block_size[NBLOCKS] = {8, 24, 100, MN_PAGE, 3 * MN_PAGE + 123, 65536 + 8};

struct entry {
    uint64_t ptr, size;
};

static uint8_t pat(int alloc, int block, size_t i, int version)
{
    return (uint8_t)((uint64_t)version * 131u + mn_val((uint64_t)alloc, (uint64_t)block, i / 8) +
                     i);
}

static void check_block(const uint8_t *p, size_t len, int alloc, int block, int version,
                        const char *who)
{
    for (size_t i = 0; i < len; i++)
        CHECK(p[i] == pat(alloc, block, i, version),
              "%s: block %d of node %d (%p, %zu bytes, home %d): byte %zu is %#x, expected "
              "version %d's %#x",
              who, block, alloc, (const void *)p, len, dsm_home(p), i, p[i], version,
              pat(alloc, block, i, version));
}

static void check_home(const uint8_t *p, size_t len, int want)
{
    for (size_t off = 0; off < len; off += MN_PAGE)
        CHECK(dsm_home(p + off) == want, "dsm_malloc'ed %p + %zu is homed on %d, expected %d",
              (const void *)p, off, dsm_home(p + off), want);
    CHECK(dsm_home(p + len - 1) == want, "the last byte of %p (%zu bytes) is homed on %d, not %d",
          (const void *)p, len, dsm_home(p + len - 1), want);
}

static void part1(struct entry *table, long round)
{
    const int n = mn_nodes, me = mn_rank;
    for (int a = 0; a < n; a++) {
        if (me == a) {
            for (int j = 0; j < NBLOCKS; j++) {
                uint8_t *p = dsm_malloc(block_size[j]);
                CHECK(p, "dsm_malloc(%zu) returned NULL", block_size[j]);
                CHECK((uintptr_t)p % 16 == 0, "dsm_malloc(%zu) returned %p, not 16-byte aligned",
                      block_size[j], (void *)p);
                check_home(p, block_size[j], me);
                for (size_t i = 0; i < block_size[j]; i++) p[i] = pat(a, j, i, (int)round);
                table[j] = (struct entry){(uint64_t)(uintptr_t)p, block_size[j]};
            }
        }
        dsm_barrier();
        for (int j = 0; j < NBLOCKS; j++) {
            CHECK(table[j].size == block_size[j], "table entry %d: size %llu", j,
                  (unsigned long long)table[j].size);
            uint64_t lo = table[j].ptr, hi = lo + table[j].size;
            check_home((const uint8_t *)(uintptr_t)lo, table[j].size, a);
            for (int k = 0; k < j; k++)
                CHECK(hi <= table[k].ptr || table[k].ptr + table[k].size <= lo,
                      "node %d's blocks %d [%#llx,+%llu) and %d [%#llx,+%llu) overlap", a, j,
                      (unsigned long long)lo, (unsigned long long)table[j].size, k,
                      (unsigned long long)table[k].ptr, (unsigned long long)table[k].size);
        }
        /* each other node: check version v, write version v+1 */
        int version = (int)round;
        for (int step = 1; step < n; step++) {
            int b = (a + step) % n;
            if (me == b) {
                for (int j = 0; j < NBLOCKS; j++) {
                    uint8_t *p = (uint8_t *)(uintptr_t)table[j].ptr;
                    check_block(p, block_size[j], a, j, version, "a reader on another node");
                    for (size_t i = 0; i < block_size[j]; i++) p[i] = pat(a, j, i, version + 1);
                }
            }
            version++;
            dsm_barrier();
        }
        for (int j = 0; j < NBLOCKS; j++)
            check_block((const uint8_t *)(uintptr_t)table[j].ptr, block_size[j], a, j, version,
                        me == a ? "the allocator, after the others wrote" : "every node");
        dsm_barrier();
        if (me == (a + 1) % n)
            for (int j = 0; j < NBLOCKS; j++) dsm_free((void *)(uintptr_t)table[j].ptr);
        dsm_barrier();
    }
}

static void *part2_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    mn_rng_t rng;
    mn_rng_seed(&rng, (uint64_t)mn_rank * 1000 + (uint64_t)t);
    for (int r = 0; r < 100; r++) {
        uint8_t *p[8];
        size_t len[8];
        for (int j = 0; j < 8; j++) {
            len[j] = 1 + mn_rand_below(&rng, 20000);
            p[j] = dsm_malloc(len[j]);
            CHECK(p[j], "thread %d: dsm_malloc(%zu) returned NULL", t, len[j]);
            CHECK(dsm_home(p[j]) == mn_rank, "thread %d: block homed on %d", t, dsm_home(p[j]));
            memset(p[j], (t * 8 + j + r) & 0xff, len[j]);
        }
        for (int j = 0; j < 8; j++) {
            for (size_t i = 0; i < len[j]; i++)
                CHECK(p[j][i] == ((t * 8 + j + r) & 0xff),
                      "thread %d: block %d (%p, %zu bytes) byte %zu was overwritten with %#x: "
                      "two live blocks overlap",
                      t, j, (void *)p[j], len[j], i, p[j][i]);
            dsm_free(p[j]);
        }
    }
    return NULL;
}

static void part3(uint64_t *slots)
{
    const int n = mn_nodes, me = mn_rank;
    const uint64_t mem = mn_global_memory();
    long local_loops = (long)(2 * mem / (1u << 20)) + 16;
    if (local_loops > 20000) local_loops = 20000;
    for (long i = 0; i < local_loops; i++) {
        volatile uint8_t *p = dsm_malloc(1u << 20);
        CHECK(p,
              "dsm_malloc(1 MiB) returned NULL after %ld malloc/free pairs (%llu MiB in "
              "all): freed space is not reused",
              i, (unsigned long long)i);
        p[0] = 1;
        p[(1u << 20) - 1] = 2;
        dsm_free((void *)p);
    }
    long remote_loops = (long)(mem / (4u << 20)) + 8;
    if (remote_loops > 2000) remote_loops = 2000;
    for (long i = 0; i < remote_loops; i++) {
        uint8_t *p = dsm_malloc(4u << 20);
        CHECK(p,
              "dsm_malloc(4 MiB) returned NULL after %ld blocks freed by node %d: space "
              "freed by another node is not reused",
              i, (me + 1) % n);
        p[0] = (uint8_t)i;
        slots[me] = (uint64_t)(uintptr_t)p;
        dsm_barrier();
        uint8_t *q = (uint8_t *)(uintptr_t)slots[(me + n - 1) % n];
        CHECK(q[0] == (uint8_t)i, "the block from node %d holds %#x, expected %#x",
              (me + n - 1) % n, q[0], (uint8_t)i);
        dsm_free(q);
        dsm_barrier();
    }
    if (me == 0)
        mn_say("reuse: %ld local and %ld remote malloc/free pairs per node, never NULL",
               local_loops, remote_loops);
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 2, 1);
    mn_begin(2);
    struct entry *table = MN_ALLOC(NBLOCKS * sizeof(struct entry));
    uint64_t *slots = MN_ALLOC((size_t)mn_nodes * sizeof(uint64_t));
    double t0 = mn_now();
    for (long r = 0; r < a.iters; r++) part1(table, r);
    if (mn_rank == 0)
        mn_say("blocks from every node read and written everywhere (%.2f s)", mn_now() - t0);

    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        CHECK(pthread_create(&th[t], NULL, part2_thread, (void *)(intptr_t)t) == 0,
              "pthread_create");
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    dsm_barrier();

    part3(slots);
    dsm_barrier();
    mn_end("malloc_shared");
    return 0;
}

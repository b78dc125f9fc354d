/*
 * cache_big.c - data larger than a node's memory, through the bounded page cache.
 *
 * Usage: mn_cache_big MIB   (run by cache_cgroup.sh, each node in a memory cgroup smaller
 * than MIB, with DSM_CACHE far smaller than what a node touches).
 *
 * One dsm_alloc of MIB MiB (block placement, the default protocol: DSM_PROTOCOL=sc or rc).
 * Every page is owned by one writer, node (page % N), so every value is known everywhere:
 *   1. each node writes its pages in order (most are homed elsewhere: they leave the cache
 *      dirty and must reach their homes through eviction write-backs), barrier;
 *   2. each node reads every page in order and checks every word (sequential: read-ahead
 *      and eviction together), barrier;
 *   3. each node writes its pages again in a random order with new values, barrier;
 *   4. each node reads every page in a random order and checks every word.
 * A dirty page lost by eviction, a stale copy kept, or a clean copy served with old data
 * fails the check with the page and word. The cache must actually have evicted clean and
 * dirty pages and fetched some again (else nothing was tested), and no node may have been
 * OOM-killed (dsmrun reports it). Prints the time of each phase.
 */
#include <stdint.h>
#include <time.h>

#include "mn.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t word(uint64_t page, uint64_t w, uint64_t round)
{
    return mn_val(page, w, round);
}

static void write_page(uint64_t *base, uint64_t p, uint64_t round)
{
    uint64_t *pg = base + p * (MN_PAGE / 8);
    for (uint64_t w = 0; w < MN_PAGE / 8; w++) pg[w] = word(p, w, round);
}

static void check_page(const uint64_t *base, uint64_t p, uint64_t round, const char *phase)
{
    const uint64_t *pg = base + p * (MN_PAGE / 8);
    for (uint64_t w = 0; w < MN_PAGE / 8; w++)
        CHECK(pg[w] == word(p, w, round),
              "%s: page %llu word %llu holds %#llx, expected %#llx (round %llu): a write was "
              "lost or a stale copy served",
              phase, (unsigned long long)p, (unsigned long long)w, (unsigned long long)pg[w],
              (unsigned long long)word(p, w, round), (unsigned long long)round);
}

/* A random permutation of [0, n), the same on every node for a given seed. */
static uint64_t *permutation(uint64_t n, uint64_t seed)
{
    uint64_t *a = malloc(n * sizeof *a);
    CHECK(a, "out of memory for a permutation of %llu pages", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) a[i] = i;
    mn_rng_t r;
    mn_rng_seed(&r, seed);
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = mn_rand(&r) % (i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return a;
}

int main(int argc, char **argv)
{
    uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 64;
    if (dsm_init(NULL)) return 1;
    mn_rank = dsm_rank();
    mn_nodes = dsm_nodes();
    uint64_t n = (uint64_t)mn_nodes, me = (uint64_t)mn_rank;
    uint64_t pages = mib * (1 << 20) / MN_PAGE;
    uint64_t *d = dsm_alloc(pages * MN_PAGE);
    CHECK(d, "dsm_alloc of %llu MiB failed", (unsigned long long)mib);
    double t0 = now_s();

    for (uint64_t p = me; p < pages; p += n) write_page(d, p, 1);
    dsm_barrier();
    double t1 = now_s();
    for (uint64_t p = 0; p < pages; p++) check_page(d, p, 1, "sequential read");
    dsm_barrier();
    double t2 = now_s();

    uint64_t *perm = permutation(pages, 12345);
    for (uint64_t i = 0; i < pages; i++)
        if (perm[i] % n == me) write_page(d, perm[i], 2);
    dsm_barrier();
    double t3 = now_s();
    uint64_t *perm2 = permutation(pages, 777 + me);
    for (uint64_t i = 0; i < pages; i++) check_page(d, perm2[i], 2, "random read");
    double t4 = now_s();
    dsm_barrier();

    dsm_stats_t s;
    dsm_stats(&s);
    /* Resident memory now, for the record (never judged here: the cgroup limit of
     * cache_cgroup.sh is what judges). PSS, not RSS: with one copy at the home, a homed page
     * is mapped twice (the view and the store) and RSS counts it twice. */
    long pss_kib = 0;
    FILE *st = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    while (st && fgets(line, sizeof line, st)) sscanf(line, "Pss: %ld", &pss_kib);
    if (st) fclose(st);
    mn_say("resident %ld MiB (PSS); homes %llu pages with data, caches %llu", pss_kib >> 10,
           (unsigned long long)s.homed_pages, (unsigned long long)s.cached_pages);
    mn_say("%llu MiB on %llu nodes, cache %llu MiB: write %.2f s, sequential read %.2f s, "
           "random write %.2f s, random read %.2f s; evictions clean %llu dirty %llu, "
           "re-fetches %llu, overruns %llu",
           (unsigned long long)mib, (unsigned long long)n,
           (unsigned long long)(s.cache_bytes >> 20), t1 - t0, t2 - t1, t3 - t2, t4 - t3,
           (unsigned long long)s.evictions_clean, (unsigned long long)s.evictions_dirty,
           (unsigned long long)s.refetches, (unsigned long long)s.cache_overruns);
    CHECK(s.size >= sizeof s, "the library does not report the cache counters");
    CHECK(s.evictions_clean > 0 && s.evictions_dirty > 0 && s.refetches > 0,
          "the cache never evicted a clean page (%llu), a dirty page (%llu) or fetched one again "
          "(%llu): this test tested nothing (is DSM_CACHE smaller than the data?)",
          (unsigned long long)s.evictions_clean, (unsigned long long)s.evictions_dirty,
          (unsigned long long)s.refetches);
    free(perm);
    free(perm2);
    dsm_free(d);
    dsm_finalize();
    printf("cache_big: passed on %d nodes\n", mn_nodes);
    return 0;
}

/*
 * trace_prefetch.c - read-ahead of sequential read streams (DSM_PREFETCH) and the per-page
 * event trace (DSM_TRACE), checked against each other and against dsm_stats.
 *
 * 1. 64 pages homed on node 0, written by it. Every other node reads them in order. With
 *    read-ahead on, every page arrives either by a read miss or by read-ahead (read misses +
 *    pages prefetched = 64 exactly) and at most 16 of them are misses (the window doubles
 *    to 8 pages: about 64/9 misses plus the ramp); with it off, all 64 are misses.
 * 2. Node 1 writes byte offset 40 of page 0 (an upgrade: it holds a read copy), then node 0
 *    reads page 0 (a read miss that recalls node 1's copy).
 * After dsm_finalize every node reads its own trace file back: the header describes this
 * node and the global space, and the records agree with dsm_stats kind by kind (read misses,
 * write misses, upgrades, read-ahead arrivals, invalidations, recalls); fault records name a
 * page inside the space and a non-zero service time; node 1's upgrade record carries offset
 * 40; node 0 recorded serving node 1 at least 64 pages; exactly one allocation record
 * names the array (its first page, 64 pages, DSM_PLACE_NODE homed on node 0), so dsmtrace
 * can label its pages.
 *
 * What a broken runtime does to it: no read-ahead shows as 64 misses; read-ahead that
 * fetches a page twice or misses one breaks the exact sum; a recorder that drops, duplicates
 * or mislabels events breaks the per-kind equalities.
 *
 * Usage: trace_prefetch PREFETCH   (the DSM_PREFETCH value to run with: 0 or 8)
 */
#include <fcntl.h>
#include <stdint.h>

#include "mn.h"

#define NPAGES 64

struct rec {
    uint64_t t_ns, page;
    uint32_t service_ns, tid;
    uint16_t offset, peer, msgs;
    uint8_t kind, flags;
};
enum {
    K_READ = 1,
    K_WRITE,
    K_UPGRADE,
    K_INV,
    K_RECALL,
    K_SERVED,
    K_PREFETCHED,
    K_KERNEL,
    K_ALLOC,
    K_N
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PREFETCH\n", argv[0]);
        return 2;
    }
    long prefetch = mn_parse_long("PREFETCH", argv[1], 0, 64);
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char pat[512], path[600];
    /* Every node of one dsmrun has the same parent: a name all nodes agree on. */
    snprintf(pat, sizeof pat, "%s/ufdsm-trace-test-%d.%%r", dir, (int)getppid());
    setenv("DSM_TRACE", pat, 1);
    setenv("DSM_PREFETCH", argv[1], 1);
    mn_begin(2);
    snprintf(path, sizeof path, "%s/ufdsm-trace-test-%d.%d", dir, (int)getppid(), mn_rank);

    volatile uint64_t *a = dsm_alloc_placed(NPAGES * MN_PAGE, DSM_PLACE_NODE, 0);
    CHECK(a, "dsm_alloc_placed failed");
    const size_t W = MN_PAGE / 8;
    if (mn_rank == 0)
        for (size_t p = 0; p < NPAGES; p++) a[p * W] = p + 1;
    dsm_barrier();

    dsm_stats_t s0, s1;
    CHECK(dsm_stats(&s0) == 0, "dsm_stats failed");
    if (mn_rank != 0)
        for (size_t p = 0; p < NPAGES; p++)
            CHECK(a[p * W] == p + 1, "page %zu holds %llu, expected %zu", p,
                  (unsigned long long)a[p * W], p + 1);
    CHECK(dsm_stats(&s1) == 0, "dsm_stats failed");
    if (mn_rank != 0) {
        uint64_t misses = s1.read_faults - s0.read_faults;
        uint64_t ahead = s1.pages_prefetched - s0.pages_prefetched;
        CHECK(misses + ahead == NPAGES,
              "%llu read misses + %llu pages read ahead, expected %d pages in all",
              (unsigned long long)misses, (unsigned long long)ahead, NPAGES);
        if (prefetch)
            CHECK(misses <= 16,
                  "%llu read misses on a sequential walk of %d pages with "
                  "DSM_PREFETCH=%ld: read-ahead is not working",
                  (unsigned long long)misses, NPAGES, prefetch);
        else
            CHECK(misses == NPAGES && ahead == 0, "DSM_PREFETCH=0 but %llu pages were read ahead",
                  (unsigned long long)ahead);
    }
    dsm_barrier();
    if (mn_rank == 1) ((volatile char *)a)[40] = 7;
    dsm_barrier();
    if (mn_rank == 0) CHECK(((volatile char *)a)[40] == 7, "node 1's write is not visible");
    dsm_barrier();
    dsm_stats_t st;
    CHECK(dsm_stats(&st) == 0, "dsm_stats failed");
    uintptr_t abase = (uintptr_t)a;
    mn_end("trace_prefetch");

    /* The file is complete once dsm_finalize returned. */
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0, "cannot open the trace file %s: %s", path, strerror(errno));
    static char buf[8 << 20];
    ssize_t len = read(fd, buf, sizeof buf);
    close(fd);
    unlink(path);
    CHECK(len >= 64 && (len - 64) % 32 == 0, "trace file %s has %zd bytes: not 64 + 32*k", path,
          len);
    uint32_t hv[4];
    uint64_t base, size, t0, recsz;
    memcpy(hv, buf + 8, sizeof hv);
    memcpy(&base, buf + 24, 8);
    memcpy(&size, buf + 32, 8);
    memcpy(&t0, buf + 40, 8);
    memcpy(&recsz, buf + 48, 4);
    recsz &= 0xffffffffu;
    CHECK(!memcmp(buf, "UFDSMTR1", 8), "bad magic in %s", path);
    CHECK(hv[0] == 1 && hv[1] == (uint32_t)mn_rank && hv[2] == (uint32_t)mn_nodes &&
              hv[3] == MN_PAGE && recsz == 32,
          "header: version %u rank %u nodes %u page %u record %llu", hv[0], hv[1], hv[2], hv[3],
          (unsigned long long)recsz);
    CHECK(abase >= base && abase < base + size, "the array %#lx is outside the traced space",
          (unsigned long)abase);
    uint64_t count[K_N] = {0}, served_to_1 = 0, upgrade_at_40 = 0, array_allocs = 0;
    size_t n = (size_t)(len - 64) / 32;
    for (size_t i = 0; i < n; i++) {
        struct rec r;
        memcpy(&r, buf + 64 + i * 32, sizeof r);
        CHECK(r.kind >= 1 && r.kind < K_N, "record %zu has kind %u", i, r.kind);
        CHECK(r.page < size / MN_PAGE, "record %zu names page %llu outside the space", i,
              (unsigned long long)r.page);
        CHECK(r.t_ns >= t0, "record %zu is older than dsm_init", i);
        count[r.kind]++;
        if (r.kind <= K_UPGRADE)
            CHECK(r.service_ns > 0 && r.offset < MN_PAGE && r.peer == 0,
                  "fault record %zu: service %u ns, offset %u, home %u", i, r.service_ns, r.offset,
                  r.peer);
        if (r.kind == K_SERVED && r.peer == 1) served_to_1++;
        if (r.kind == K_ALLOC && r.page == (abase - base) / MN_PAGE) {
            CHECK(r.service_ns == NPAGES && r.offset == DSM_PLACE_NODE && r.peer == 0 &&
                      !(r.flags & 4),
                  "allocation record of the array: %u pages, policy %u, home %u, flags %u",
                  r.service_ns, r.offset, r.peer, r.flags);
            array_allocs++;
        }
        if (r.kind == K_UPGRADE && r.page == (abase - base) / MN_PAGE && r.offset == 40)
            upgrade_at_40++;
    }
    CHECK(count[K_READ] == st.read_faults && count[K_WRITE] == st.write_faults &&
              count[K_UPGRADE] == st.upgrades && count[K_PREFETCHED] == st.pages_prefetched &&
              count[K_INV] == st.inv_recv && count[K_RECALL] == st.recalls_recv,
          "trace vs stats: read %llu/%llu write %llu/%llu upgrade %llu/%llu prefetched "
          "%llu/%llu inv %llu/%llu recall %llu/%llu",
          (unsigned long long)count[K_READ], (unsigned long long)st.read_faults,
          (unsigned long long)count[K_WRITE], (unsigned long long)st.write_faults,
          (unsigned long long)count[K_UPGRADE], (unsigned long long)st.upgrades,
          (unsigned long long)count[K_PREFETCHED], (unsigned long long)st.pages_prefetched,
          (unsigned long long)count[K_INV], (unsigned long long)st.inv_recv,
          (unsigned long long)count[K_RECALL], (unsigned long long)st.recalls_recv);
    if (mn_rank == 1) CHECK(upgrade_at_40 == 1, "no upgrade record at offset 40 of page 0");
    CHECK(array_allocs == 1, "%llu allocation records name the array, expected 1",
          (unsigned long long)array_allocs);
    if (mn_rank == 0)
        CHECK(served_to_1 >= NPAGES, "node 0 recorded serving node 1 only %llu pages",
              (unsigned long long)served_to_1);
    return 0;
}

/*
 * home_memory.c - a home node holds the pages it homes once (DSM_HOME_STORE=one) or twice
 * (two), and its data stays right either way.
 *
 * Usage: dsmrun -n 2 mn_home_memory one|two sc|rc
 *
 * Node 0 homes H = 32 MiB (DSM_PLACE_NODE 0) and writes all of it; node 1 reads all of it
 * (served from node 0's home store) and rewrites every other page; node 0 reads all of it
 * again; every word is checked on both nodes. Node 0's proportional resident memory (PSS:
 * with one copy every homed page is mapped twice, the view and the store, and RSS would
 * count it twice) grows by about H with one copy and by about 2H with two (1.6H under RC,
 * where node 0 drops the half node 1 wrote at the barrier and fetches it back only into its
 * view). The test checks
 * the growth against each mode's expectation with a wide margin, so it fails if the mode
 * does not do what it says (two copies where one was asked for, or the measurement blind to
 * the difference) - memory, unlike time, is deterministic enough to judge.
 */
#include "mn.h"

#define H_MIB 32u

/* The sanitizer build's shadow memory (x86-64 ASan: [0x7fff8000, 0x10007fff8000)) grows by an
 * eighth of every byte it checks - here the view and the store, about 8 MiB - and is not the
 * home's memory: it is left out of the sum, so the bound stays the same in both builds. */
static int in_shadow(unsigned long long lo, unsigned long long hi)
{
#if defined(__SANITIZE_ADDRESS__)
    return lo >= 0x7fff8000ull && hi <= 0x10007fff8000ull;
#else
    (void)lo, (void)hi;
    return 0;
#endif
}

/* Node 0's proportional resident memory in KiB: the sum of Pss over its mappings. */
static long pss_kib(void)
{
    long kib = -1, sum = 0;
    int skip = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long lo, hi;
        long v;
        if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2)
            skip = in_shadow(lo, hi);
        else if (sscanf(line, "Pss: %ld", &v) == 1 && !skip)
            sum += v, kib = sum;
    }
    if (f) fclose(f);
    return kib;
}

static uint64_t word(uint64_t page, int round)
{
    return mn_val(page, (uint64_t)round, 0x5eed);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "one") && strcmp(argv[1], "two")) ||
        (strcmp(argv[2], "sc") && strcmp(argv[2], "rc"))) {
        fprintf(stderr, "usage: %s one|two sc|rc (run it with dsmrun -n 2)\n", argv[0]);
        return 2;
    }
    int one = !strcmp(argv[1], "one");
    setenv("DSM_HOME_STORE", argv[1], 1);
    mn_begin(2);
    int rc = !strcmp(argv[2], "rc");
    const uint64_t pages = (uint64_t)H_MIB << 20 >> 12;

    long before = pss_kib();
    CHECK(before > 0, "cannot read Pss from /proc/self/smaps");
    uint64_t *d =
        dsm_alloc_placed((size_t)pages * MN_PAGE, DSM_PLACE_NODE | (rc ? DSM_RC : DSM_SC), 0);
    CHECK(d, "dsm_alloc_placed(%u MiB on node 0) failed", H_MIB);
    const uint64_t stride = MN_PAGE / sizeof *d;

    /* Node 0 writes its pages; node 1 reads them and rewrites every other one. */
    if (mn_rank == 0)
        for (uint64_t p = 0; p < pages; p++) d[p * stride + (p % 7)] = word(p, 1);
    dsm_barrier();
    if (mn_rank == 1) {
        for (uint64_t p = 0; p < pages; p++)
            CHECK(d[p * stride + (p % 7)] == word(p, 1), "page %llu: node 0's write not seen",
                  (unsigned long long)p);
        for (uint64_t p = 0; p < pages; p += 2) d[p * stride + (p % 7)] = word(p, 2);
    }
    dsm_barrier();
    /* Node 0 reads all of it again: its own writes and node 1's. */
    if (mn_rank == 0)
        for (uint64_t p = 0; p < pages; p++)
            CHECK(d[p * stride + (p % 7)] == word(p, p % 2 ? 1 : 2),
                  "page %llu: read %llx, want %llx", (unsigned long long)p,
                  (unsigned long long)d[p * stride + (p % 7)],
                  (unsigned long long)word(p, p % 2 ? 1 : 2));
    dsm_barrier();

    if (mn_rank == 0) {
        long grew = pss_kib() - before;
        long h = (long)H_MIB << 10;
        mn_say("home_memory: %s, %s: node 0 homes %u MiB, its resident memory (PSS) grew by "
               "%ld MiB",
               one ? "one copy" : "two copies", argv[2], H_MIB, grew >> 10);
        if (one)
            CHECK(grew < h + h / 4, "one copy at the home: grew by %ld KiB, more than 1.25 x %ld",
                  grew, h);
        else
            CHECK(grew > h + 2 * h / 5,
                  "two copies at the home: grew by %ld KiB, less than 1.4 x %ld: the "
                  "measurement cannot tell the modes apart",
                  grew, h);
    }
    dsm_free(d);
    mn_end("home_memory");
    return 0;
}

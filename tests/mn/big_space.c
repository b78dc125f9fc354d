/*
 * big_space.c - a large global space costs memory only for the pages used.
 *
 * Joins a job with a 4 TiB global space (1 G pages), then checks that this node's peak
 * resident memory stayed small: the engine's per-page bookkeeping (state, home, directory,
 * protocol, read-ahead, RC lists: ~140 bytes a page, ~140 GiB here) must be reserved and
 * zero-filled on first touch, never initialised page by page. It once was: a 256 GiB space
 * took 8.5 s and ~2 GB to start, 4 TiB a gigabyte of memsets, and 16 TiB could not be
 * allocated at all. Then it uses a little of the space (collective and dsm_malloc memory)
 * to show the lazily zeroed state is a working one.
 *
 * Usage: big_space [SIZE]   (default 4T; sets DSM_MEMORY itself)
 */
#include "mn.h"

static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    setenv("DSM_MEMORY", argc > 1 ? argv[1] : "4T", 1);
    mn_begin(1);
    long kb = peak_rss_kb();
    CHECK(kb > 0, "cannot read VmHWM from /proc/self/status");
    /* Generous: the library, its buffers and the local queue are a few MB; the bookkeeping of
     * 1 G pages, if touched, is gigabytes. */
    CHECK(kb < 256 * 1024,
          "peak resident memory after dsm_init is %ld MB with DSM_MEMORY=%s: per-page "
          "bookkeeping is being initialised eagerly",
          kb / 1024, getenv("DSM_MEMORY"));
    volatile uint64_t *a = MN_ALLOC(64 * MN_PAGE);
    uint64_t *mine = dsm_malloc(4096);
    CHECK(mine != NULL, "dsm_malloc in a 4 TiB space");
    for (int i = 0; i < 64; i++)
        if (i % mn_nodes == mn_rank) a[i * MN_PAGE / 8] = (uint64_t)i + 1;
    mine[0] = (uint64_t)mn_rank + 100;
    dsm_barrier();
    for (int i = 0; i < 64; i++)
        CHECK(a[i * MN_PAGE / 8] == (uint64_t)i + 1, "page %d reads %llu", i,
              (unsigned long long)a[i * MN_PAGE / 8]);
    CHECK(mine[0] == (uint64_t)mn_rank + 100, "dsm_malloc memory lost its value");
    dsm_barrier();
    if (mn_rank == 0)
        mn_say("DSM_MEMORY=%s: peak resident %ld MB after dsm_init, memory usable",
               getenv("DSM_MEMORY"), kb / 1024);
    dsm_free(mine);
    mn_end("big_space");
    return 0;
}

/*
 * alloc_rules.c - the allocation contract of dsm.h, checked rule by rule on every node.
 *
 *   - dsm_alloc returns the same address on every node (compared through DSM memory),
 *     page-aligned, zero-filled (every byte read by every node), for odd sizes too;
 *   - dsm_home() follows the placement exactly, for every page: DSM_PLACE_BLOCK (dsm_alloc's
 *     default; exact chunk k -> node k when the size divides evenly, contiguous and ascending
 *     otherwise), DSM_PLACE_CYCLIC (page- and 2-page blocks, dealt round-robin), DSM_PLACE_NODE
 *     (each node in turn);
 *   - dsm_alloc/dsm_alloc_placed of more than the global memory (and of sizes whose rounding
 *     to pages would overflow) return NULL on every node, and the job carries on: the next
 *     allocation succeeds, at the same address everywhere;
 *   - dsm_home of addresses outside the global space (stack, heap, static data, code, NULL,
 *     the bytes just below and just above the region) is -1;
 *   - a collective dsm_free followed by dsm_alloc reuses the space and hands it out zeroed,
 *     even though every node had cached (read and written) copies of the old pages, and also
 *     when the new allocation homes the pages on different nodes; repeated alloc/free of a
 *     quarter of the global memory goes on far beyond what fits without reuse.
 *
 * What a broken DSM does to it: nodes that disagree on the address of an allocation write to
 * different places (their table slots differ); a wrong home table means requests go to the
 * wrong node; stale cached copies or home backing copies that survive a free are read back as
 * nonzero bytes in the next allocation; a size overflow hands out a tiny block for a huge
 * request; a failed allocation that only some nodes see desynchronises all later ones.
 *
 * Usage: alloc_rules [ROUNDS]   (ROUNDS of the large alloc/free loop; default 12)
 */
#include <stdint.h>
#include <string.h>

#include "mn.h"

static uint64_t *slots; /* one word per node, for comparing addresses across nodes */
static int static_var;

static void same_everywhere(const void *p, const char *what)
{
    slots[mn_rank] = (uint64_t)(uintptr_t)p;
    dsm_barrier();
    for (int k = 0; k < mn_nodes; k++)
        CHECK(slots[k] == (uint64_t)(uintptr_t)p, "%s: node %d got %#llx, this node %p", what, k,
              (unsigned long long)slots[k], p);
    dsm_barrier(); /* before anyone reuses the slots */
}

static void all_zero(const uint8_t *p, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        CHECK(p[i] == 0, "%s: byte %zu (page homed on node %d) is %#x, not zero", what, i,
              dsm_home(&p[i]), p[i]);
}

static size_t npages_of(size_t size)
{
    return (size + MN_PAGE - 1) / MN_PAGE;
}

/* The home of every page must be want(page index). */
static void homes_exact(const uint8_t *p, size_t size, int (*want)(size_t, size_t), size_t arg,
                        const char *what)
{
    for (size_t pg = 0; pg < npages_of(size); pg++) {
        int w = want(pg, arg);
        CHECK(dsm_home(p + pg * MN_PAGE) == w,
              "%s: page %zu of %zu is homed on node %d, expected %d", what, pg, npages_of(size),
              dsm_home(p + pg * MN_PAGE), w);
        size_t last = pg * MN_PAGE + MN_PAGE - 1 < size ? pg * MN_PAGE + MN_PAGE - 1 : size - 1;
        CHECK(dsm_home(p + last) == w, "%s: byte %zu is homed on node %d, expected %d", what, last,
              dsm_home(p + last), w);
    }
}

static int want_block_even(size_t pg, size_t pages)
{
    return (int)(pg / (pages / (size_t)mn_nodes));
}
static int want_cyclic(size_t pg, size_t block_pages)
{
    return (int)((pg / block_pages) % (size_t)mn_nodes);
}
static int want_node(size_t pg, size_t node)
{
    (void)pg;
    return (int)node;
}

/* Block placement of a size that may not divide evenly: node 0 first, never decreasing,
 * never skipping back, all within [0, N). */
static void homes_block_shape(const uint8_t *p, size_t size, const char *what)
{
    int prev = 0;
    for (size_t pg = 0; pg < npages_of(size); pg++) {
        int h = dsm_home(p + pg * MN_PAGE);
        CHECK(h >= 0 && h < mn_nodes, "%s: page %zu homed on %d", what, pg, h);
        CHECK(pg > 0 || h == 0, "%s: the first page is homed on %d, not 0", what, h);
        CHECK(h >= prev,
              "%s: page %zu is homed on %d after a page homed on %d: block placement "
              "must be contiguous chunks in node order",
              what, pg, h, prev);
        prev = h;
    }
}

static void basic_allocs(void)
{
    const int n = mn_nodes;
    const size_t sizes[] = {1,
                            8,
                            MN_PAGE,
                            MN_PAGE + 1,
                            10 * MN_PAGE + 5,
                            (size_t)n * MN_PAGE,
                            (size_t)n * 3 * MN_PAGE,
                            1u << 20};
    char what[96];
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        snprintf(what, sizeof what, "dsm_alloc(%zu)", sizes[k]);
        uint8_t *p = dsm_alloc(sizes[k]);
        CHECK(p, "%s returned NULL", what);
        CHECK((uintptr_t)p % MN_PAGE == 0, "%s returned %p: not page-aligned", what, (void *)p);
        same_everywhere(p, what);
        all_zero(p, sizes[k], what);
        if (npages_of(sizes[k]) % (size_t)n == 0)
            homes_exact(p, sizes[k], want_block_even, npages_of(sizes[k]), what);
        else
            homes_block_shape(p, sizes[k], what);
        dsm_barrier(); /* everybody has checked the zeros before anybody writes */
        /* usable: every node writes its own byte of the first page, everybody reads them */
        if ((size_t)mn_rank < sizes[k]) p[mn_rank] = (uint8_t)(0xa0 + mn_rank);
        dsm_barrier();
        for (int r = 0; r < n && (size_t)r < sizes[k]; r++)
            CHECK(p[r] == (uint8_t)(0xa0 + r), "%s: byte %d written by node %d reads %#x", what, r,
                  r, p[r]);
        dsm_barrier();
    }

    struct {
        int policy;
        size_t arg, pages;
        int (*want)(size_t, size_t);
        size_t want_arg;
    } placed[] = {
        {DSM_PLACE_BLOCK, 0, (size_t)n * 2, want_block_even, (size_t)n * 2},
        {DSM_PLACE_CYCLIC, MN_PAGE, (size_t)n * 3 + 1, want_cyclic, 1},
        {DSM_PLACE_CYCLIC, 2 * MN_PAGE, (size_t)n * 4 + 1, want_cyclic, 2},
        {DSM_PLACE_CYCLIC, 3 * MN_PAGE, (size_t)n * 3, want_cyclic, 3},
    };
    for (size_t k = 0; k < sizeof placed / sizeof placed[0]; k++) {
        size_t size = placed[k].pages * MN_PAGE - 100;
        snprintf(what, sizeof what, "dsm_alloc_placed(%zu, %s, %zu)", size,
                 placed[k].policy == DSM_PLACE_BLOCK ? "BLOCK" : "CYCLIC", placed[k].arg);
        uint8_t *p = dsm_alloc_placed(size, placed[k].policy, placed[k].arg);
        CHECK(p, "%s returned NULL", what);
        CHECK((uintptr_t)p % MN_PAGE == 0, "%s: %p is not page-aligned", what, (void *)p);
        same_everywhere(p, what);
        homes_exact(p, size, placed[k].want, placed[k].want_arg, what);
        all_zero(p, size, what);
    }
    for (int node = 0; node < n; node++) {
        size_t size = 3 * MN_PAGE + 7;
        snprintf(what, sizeof what, "dsm_alloc_placed(%zu, NODE, %d)", size, node);
        uint8_t *p = dsm_alloc_placed(size, DSM_PLACE_NODE, (size_t)node);
        CHECK(p, "%s returned NULL", what);
        same_everywhere(p, what);
        homes_exact(p, size, want_node, (size_t)node, what);
        all_zero(p, size, what);
    }
}

static void too_big(void)
{
    const uint64_t mem = mn_global_memory();
    const size_t sizes[] = {(size_t)mem + MN_PAGE, (size_t)mem * 2, (size_t)1 << 40, (size_t)-1,
                            (size_t)-1 - MN_PAGE + 2};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        void *p = dsm_alloc(sizes[k]);
        CHECK(p == NULL, "dsm_alloc(%zu) of more than the %llu-byte global memory returned %p",
              sizes[k], (unsigned long long)mem, p);
        p = dsm_alloc_placed(sizes[k], DSM_PLACE_CYCLIC, MN_PAGE);
        CHECK(p == NULL,
              "dsm_alloc_placed(%zu, CYCLIC) of more than the global memory "
              "returned %p",
              sizes[k], p);
        /* the job goes on, and the nodes still agree */
        uint8_t *q = dsm_alloc(MN_PAGE);
        CHECK(q, "dsm_alloc(4096) after a failed dsm_alloc(%zu) returned NULL", sizes[k]);
        same_everywhere(q, "dsm_alloc after a failed one");
        all_zero(q, MN_PAGE, "dsm_alloc after a failed one");
        dsm_free(q);
    }
}

static void not_dsm(void)
{
    int stack_var = 0;
    void *heap = malloc(64);
    CHECK(heap, "malloc");
    uintptr_t base = 0x200000000000ull; /* DSM_DEFAULT_BASE */
    const char *s = getenv("DSM_BASE");
    if (s && *s) base = (uintptr_t)strtoull(s, NULL, 16);
    const struct {
        const void *p;
        const char *what;
    } cases[] = {
        {&stack_var, "a stack variable"},
        {heap, "malloc'ed memory"},
        {&static_var, "a static variable"},
        {(const void *)(uintptr_t)&not_dsm, "code"},
        {NULL, "NULL"},
        {(const void *)(base - 1), "the byte below the global space"},
        {(const void *)(base + mn_global_memory()), "the byte above the global space"},
        {(const void *)(base + mn_global_memory() + (1u << 30)), "1 GiB above the global space"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        CHECK(dsm_home(cases[k].p) == -1, "dsm_home(%s, %p) is %d, expected -1", cases[k].what,
              cases[k].p, dsm_home(cases[k].p));
    free(heap);
}

static void free_and_reuse(long rounds)
{
    const int n = mn_nodes, me = mn_rank;
    const size_t size = (size_t)n * 8 * MN_PAGE;
    uint8_t *x = MN_ALLOC(size);
    /* every node dirties its chunk, then reads everything: copies everywhere */
    for (size_t i = (size_t)me * 8 * MN_PAGE; i < (size_t)(me + 1) * 8 * MN_PAGE; i++)
        x[i] = (uint8_t)(i * 7 + 1) | 1;
    dsm_barrier();
    for (size_t i = 0; i < size; i++)
        CHECK(x[i] == ((uint8_t)(i * 7 + 1) | 1), "before the free: byte %zu is %#x", i, x[i]);
    dsm_barrier();
    /* and node k writes into node k+1's chunk, so some pages are held writable away from
     * their home at the moment of the free */
    x[(size_t)((me + 1) % n) * 8 * MN_PAGE + 5] = 0xee;
    dsm_barrier();
    dsm_free(x);

    uint8_t *y = MN_ALLOC(size);
    CHECK(y < x + size && x < y + size,
          "dsm_alloc(%zu) right after dsm_free of the same size returned %p, which does not "
          "reuse the freed [%p, %p)",
          size, (void *)y, (void *)x, (void *)(x + size));
    same_everywhere(y, "dsm_alloc after dsm_free");
    all_zero(y, size, "dsm_alloc right after dsm_free (stale copies of the freed pages?)");
    dsm_barrier();
    dsm_free(y);

    /* the same space, now homed round-robin: the directory moves to other nodes */
    uint8_t *z = MN_ALLOC_PLACED(size, DSM_PLACE_CYCLIC, MN_PAGE);
    same_everywhere(z, "dsm_alloc_placed after dsm_free");
    homes_exact(z, size, want_cyclic, 1, "CYCLIC allocation reusing freed space");
    all_zero(z, size, "CYCLIC allocation reusing freed space");
    dsm_barrier();
    for (size_t pg = 0; pg < size / MN_PAGE; pg++)
        if ((int)(pg % (size_t)n) == (me + 1) % n) z[pg * MN_PAGE + 100] = (uint8_t)(pg | 0x80);
    dsm_barrier();
    for (size_t pg = 0; pg < size / MN_PAGE; pg++)
        CHECK(z[pg * MN_PAGE + 100] == (uint8_t)(pg | 0x80),
              "reused page %zu (homed on node %d) reads %#x after a write by node %d", pg,
              dsm_home(&z[pg * MN_PAGE]), z[pg * MN_PAGE + 100], (int)((pg + 1) % (size_t)n));
    dsm_barrier();
    dsm_free(z);

    /* far more than the global memory, a quarter at a time */
    const size_t big = (size_t)(mn_global_memory() / 4) & ~(size_t)(MN_PAGE - 1);
    const size_t stride = big / 64 / MN_PAGE * MN_PAGE;
    for (long r = 0; r < rounds; r++) {
        uint8_t *b = dsm_alloc(big);
        CHECK(b,
              "round %ld: dsm_alloc(%zu) (a quarter of the global memory) returned NULL: "
              "freed space is not reused",
              r, big);
        same_everywhere(b, "large dsm_alloc");
        for (int k = 0; k < 64; k++) {
            uint8_t *q = b + (size_t)k * stride + (size_t)(r % 7) * 8;
            CHECK(*q == 0, "round %ld: byte at offset %zu of a reused allocation is %#x, not zero",
                  r, (size_t)(q - b), *q);
        }
        dsm_barrier();
        for (int k = me; k < 64; k += n) b[(size_t)k * stride + (size_t)(r % 7) * 8] = 0x5a;
        dsm_barrier();
        for (int k = 0; k < 64; k++)
            CHECK(b[(size_t)k * stride + (size_t)(r % 7) * 8] == 0x5a, "round %ld: lost write", r);
        dsm_barrier();
        dsm_free(b);
    }
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 12, 1);
    mn_begin(1);
    slots = MN_ALLOC((size_t)mn_nodes * sizeof(uint64_t));
    CHECK((uintptr_t)slots % MN_PAGE == 0, "dsm_alloc returned %p: not page-aligned",
          (void *)slots);
    same_everywhere(slots, "the first dsm_alloc");
    double t0 = mn_now();
    basic_allocs();
    too_big();
    not_dsm();
    free_and_reuse(a.iters);
    dsm_barrier();
    if (mn_rank == 0) mn_say("every allocation rule holds (%.2f s)", mn_now() - t0);
    mn_end("alloc_rules");
    return 0;
}

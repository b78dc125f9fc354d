/*
 * test_heap.c - unit tests of the range allocator and the placement arithmetic (dsm/heap.c).
 *
 * Hand-written cases pin down each documented behaviour; a randomized run then checks every
 * answer of the allocator (offsets, failures, sizes, free-space figures) against a bitmap
 * model that implements first fit in the most obvious way, and a timed run checks the
 * complexity claims with 100k blocks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dsm.h"
#include "heap.h"

static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t alloc_ok(struct dsm_heap *h, uint64_t size, uint64_t align)
{
    uint64_t off = 0xdeadbeef;
    int rc = dsm_heap_alloc(h, size, align, &off);
    if (rc)
        fail_msg("alloc(%llu, %llu) failed: %d", (unsigned long long)size,
                 (unsigned long long)align, rc);
    return off;
}

static void free_ok(struct dsm_heap *h, uint64_t off, uint64_t want_size)
{
    uint64_t sz = 0;
    assert_int_equal(dsm_heap_free(h, off, &sz), 0);
    assert_int_equal(sz, want_size);
}

/* ------------------------------------------------------------------ allocator basics */

static void test_create_args(void **state)
{
    (void)state;
    assert_null(dsm_heap_create(1024, 0));
    assert_null(dsm_heap_create(1024, 3));
    assert_null(dsm_heap_create(1024, 48));
    assert_null(dsm_heap_create(1000, 16)); /* not a multiple of the granule */
    struct dsm_heap *h = dsm_heap_create(1024, 16);
    assert_non_null(h);
    assert_int_equal(dsm_heap_free_bytes(h), 1024);
    assert_int_equal(dsm_heap_largest_free(h), 1024);
    dsm_heap_destroy(h);
    h = dsm_heap_create(4096, 4096); /* a single granule */
    assert_non_null(h);
    assert_int_equal(alloc_ok(h, 1, 0), 0);
    dsm_heap_destroy(h);
    /* An empty heap is valid; it just never has room. */
    h = dsm_heap_create(0, 16);
    assert_non_null(h);
    uint64_t off;
    assert_int_equal(dsm_heap_alloc(h, 16, 0, &off), -ENOMEM);
    assert_int_equal(dsm_heap_free(h, 0, NULL), -EINVAL);
    assert_int_equal(dsm_heap_free_bytes(h), 0);
    assert_int_equal(dsm_heap_largest_free(h), 0);
    assert_int_equal(dsm_heap_block_size(h, 0), 0);
    dsm_heap_destroy(h);
    dsm_heap_destroy(NULL);
}

static void test_rounding(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(1 << 20, 16);
    uint64_t a = alloc_ok(h, 1, 0);
    uint64_t b = alloc_ok(h, 16, 0);
    uint64_t c = alloc_ok(h, 17, 0);
    uint64_t d = alloc_ok(h, 33, 0);
    assert_int_equal(a, 0);
    assert_int_equal(b, 16);
    assert_int_equal(c, 32);
    assert_int_equal(d, 64);
    assert_int_equal(dsm_heap_block_size(h, a), 16);
    assert_int_equal(dsm_heap_block_size(h, b), 16);
    assert_int_equal(dsm_heap_block_size(h, c), 32);
    assert_int_equal(dsm_heap_block_size(h, d), 48);
    assert_int_equal(dsm_heap_free_bytes(h), (1 << 20) - 112);
    free_ok(h, c, 32);
    free_ok(h, d, 48);
    /* size_out is optional */
    assert_int_equal(dsm_heap_free(h, a, NULL), 0);
    dsm_heap_destroy(h);
}

static void test_bad_args(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(1 << 20, 16);
    uint64_t off = 12345;
    assert_int_equal(dsm_heap_alloc(h, 0, 0, &off), -EINVAL);
    assert_int_equal(dsm_heap_alloc(h, 16, 3, &off), -EINVAL); /* not a power of two */
    assert_int_equal(dsm_heap_alloc(h, 16, 8, &off), -EINVAL); /* below the granule */
    assert_int_equal(dsm_heap_alloc(h, 16, 48, &off), -EINVAL);
    assert_int_equal(dsm_heap_alloc(h, UINT64_MAX, 0, &off), -EINVAL); /* rounding overflows */
    assert_int_equal(dsm_heap_alloc(h, UINT64_MAX - 14, 0, &off), -EINVAL);
    assert_int_equal(off, 12345); /* untouched on failure */
    /* Representable but too large: no room, not a bad argument. */
    assert_int_equal(dsm_heap_alloc(h, UINT64_MAX - 15, 0, &off), -ENOMEM);
    assert_int_equal(dsm_heap_alloc(h, (1 << 20) + 1, 0, &off), -ENOMEM);
    /* Alignment beyond the heap: only offset 0 qualifies. */
    assert_int_equal(alloc_ok(h, 16, 1ull << 63), 0);
    assert_int_equal(dsm_heap_alloc(h, 16, 1ull << 63, &off), -ENOMEM);
    assert_int_equal(dsm_heap_free_bytes(h), (1 << 20) - 16);
    dsm_heap_destroy(h);
}

static void test_alignment(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(1 << 20, 16);
    assert_int_equal(alloc_ok(h, 16, 0), 0);
    /* The leading fragment of an aligned allocation stays free and is used first. */
    assert_int_equal(alloc_ok(h, 16, 256), 256);
    assert_int_equal(alloc_ok(h, 16, 0), 16);
    assert_int_equal(alloc_ok(h, 200, 0), 32); /* 208 bytes: 32..240 fit before 256 */
    assert_int_equal(alloc_ok(h, 16, 0), 240);
    assert_int_equal(alloc_ok(h, 16, 0), 272);
    assert_int_equal(alloc_ok(h, 1, 4096), 4096);
    assert_int_equal(alloc_ok(h, 5000, 4096), 8192);
    rng_state = 11;
    for (int i = 0; i < 2000; i++) {
        uint64_t align = 16ull << (rng() % 9);
        uint64_t off = alloc_ok(h, 1 + rng() % 100, align);
        assert_int_equal(off % align, 0);
    }
    dsm_heap_destroy(h);
    /* Page granule, as the collective heap uses it. */
    h = dsm_heap_create(64 * 4096, 4096);
    assert_int_equal(alloc_ok(h, 1, 4096), 0);
    assert_int_equal(alloc_ok(h, 4097, 4096), 4096);
    assert_int_equal(dsm_heap_block_size(h, 4096), 8192);
    assert_int_equal(alloc_ok(h, 4096, 4 * 4096), 4 * 4096);
    assert_int_equal(alloc_ok(h, 4096, 0), 3 * 4096);
    dsm_heap_destroy(h);
}

static void test_exhaustion(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(1024, 16);
    uint64_t off;
    assert_int_equal(alloc_ok(h, 1024, 0), 0);
    assert_int_equal(dsm_heap_alloc(h, 1, 0, &off), -ENOMEM);
    assert_int_equal(dsm_heap_free_bytes(h), 0);
    assert_int_equal(dsm_heap_largest_free(h), 0);
    free_ok(h, 0, 1024);
    assert_int_equal(dsm_heap_alloc(h, 1025, 0, &off), -ENOMEM);
    /* Fill exactly with small blocks: the last one fits, the next does not. */
    for (int i = 0; i < 64; i++) assert_int_equal(alloc_ok(h, 16, 0), (uint64_t)i * 16);
    assert_int_equal(dsm_heap_alloc(h, 16, 0, &off), -ENOMEM);
    /* Fragmentation: half the bytes free, but in 16-byte holes. */
    for (int i = 0; i < 64; i += 2) free_ok(h, (uint64_t)i * 16, 16);
    assert_int_equal(dsm_heap_free_bytes(h), 512);
    assert_int_equal(dsm_heap_largest_free(h), 16);
    assert_int_equal(dsm_heap_alloc(h, 17, 0, &off), -ENOMEM);
    assert_int_equal(dsm_heap_alloc(h, 32, 0, &off), -ENOMEM);
    assert_int_equal(alloc_ok(h, 16, 0), 0);
    /* A hole long enough but wrongly aligned does not count. */
    free_ok(h, 16, 16); /* joins the hole at 32: [16, 48), 32 bytes but at 16 mod 32 */
    assert_int_equal(dsm_heap_largest_free(h), 32);
    assert_int_equal(dsm_heap_alloc(h, 32, 32, &off), -ENOMEM);
    assert_int_equal(alloc_ok(h, 32, 16), 16);
    dsm_heap_destroy(h);

    /* 96 free bytes at 32: a 64-aligned block starts at 64, leaving room for 64, not 80. */
    h = dsm_heap_create(256, 16);
    assert_int_equal(alloc_ok(h, 32, 0), 0);
    assert_int_equal(alloc_ok(h, 96, 0), 32);
    assert_int_equal(alloc_ok(h, 128, 0), 128);
    free_ok(h, 32, 96);
    assert_int_equal(dsm_heap_alloc(h, 80, 64, &off), -ENOMEM); /* 64 + 80 > 128 */
    assert_int_equal(alloc_ok(h, 64, 64), 64);
    dsm_heap_destroy(h);
}

static void test_reuse(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(1 << 16, 16);
    uint64_t a = alloc_ok(h, 100, 0), b = alloc_ok(h, 100, 0), c = alloc_ok(h, 100, 0);
    free_ok(h, b, 112);
    assert_int_equal(alloc_ok(h, 100, 0), b);
    free_ok(h, b, 112);
    /* A smaller block goes at the start of the hole, the rest stays usable. */
    assert_int_equal(alloc_ok(h, 40, 0), b);
    assert_int_equal(alloc_ok(h, 64, 0), b + 48);
    /* Too big for the hole: goes after c. */
    assert_int_equal(alloc_ok(h, 200, 0), c + 112);
    (void)a;
    dsm_heap_destroy(h);
}

static void test_coalesce(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(5 * 64, 16);
    uint64_t o[5];
    for (int i = 0; i < 5; i++) o[i] = alloc_ok(h, 64, 0);
    assert_int_equal(dsm_heap_largest_free(h), 0);
    free_ok(h, o[2], 64);
    assert_int_equal(dsm_heap_largest_free(h), 64);
    free_ok(h, o[1], 64); /* merges with the hole after it */
    assert_int_equal(dsm_heap_largest_free(h), 128);
    free_ok(h, o[3], 64); /* and with the one before it */
    assert_int_equal(dsm_heap_largest_free(h), 192);
    uint64_t off;
    assert_int_equal(alloc_ok(h, 192, 0), o[1]); /* one hole, not three */
    free_ok(h, o[1], 192);
    free_ok(h, o[0], 64);
    free_ok(h, o[4], 64);
    assert_int_equal(dsm_heap_largest_free(h), 5 * 64);
    assert_int_equal(dsm_heap_free_bytes(h), 5 * 64);
    assert_int_equal(alloc_ok(h, 5 * 64, 0), 0);
    assert_int_equal(dsm_heap_alloc(h, 1, 0, &off), -ENOMEM);
    free_ok(h, 0, 5 * 64);

    /* Both neighbours at once: a block freed between two holes joins them. */
    for (int i = 0; i < 5; i++) o[i] = alloc_ok(h, 64, 0);
    free_ok(h, o[1], 64);
    free_ok(h, o[3], 64);
    assert_int_equal(dsm_heap_largest_free(h), 64);
    free_ok(h, o[2], 64);
    assert_int_equal(dsm_heap_largest_free(h), 192);
    dsm_heap_destroy(h);
}

static void test_bad_free(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(1 << 16, 16);
    uint64_t sz = 777;
    assert_int_equal(dsm_heap_free(h, 0, &sz), -EINVAL); /* nothing allocated */
    assert_int_equal(sz, 777);
    uint64_t a = alloc_ok(h, 64, 0), b = alloc_ok(h, 64, 0);
    assert_int_equal(dsm_heap_free(h, a + 16, &sz), -EINVAL); /* inside a block */
    assert_int_equal(dsm_heap_free(h, a + 1, &sz), -EINVAL);
    assert_int_equal(dsm_heap_free(h, b + 64, &sz), -EINVAL);  /* free space */
    assert_int_equal(dsm_heap_free(h, 1 << 16, &sz), -EINVAL); /* beyond the heap */
    assert_int_equal(dsm_heap_free(h, UINT64_MAX, &sz), -EINVAL);
    assert_int_equal(sz, 777);
    free_ok(h, a, 64);
    assert_int_equal(dsm_heap_free(h, a, &sz), -EINVAL); /* double free */
    assert_int_equal(dsm_heap_block_size(h, a), 0);
    assert_int_equal(dsm_heap_block_size(h, b), 64);
    assert_int_equal(dsm_heap_block_size(h, b + 16), 0);
    /* the failed frees changed nothing */
    assert_int_equal(dsm_heap_free_bytes(h), (1 << 16) - 64);
    assert_int_equal(alloc_ok(h, 64, 0), a);
    dsm_heap_destroy(h);
}

/* The metadata bound at its tightest: as many free ranges as live blocks + 1, at the largest
 * live count so far, then an aligned allocation that splits a range in two. The node for the
 * second piece must already be there (dsm_heap_free never allocates, so alloc reserves). */
static void test_split_at_metadata_bound(void **state)
{
    (void)state;
    struct dsm_heap *h = dsm_heap_create(256, 16);
    assert_int_equal(alloc_ok(h, 16, 0), 0);
    assert_int_equal(alloc_ok(h, 16, 0), 16);
    free_ok(h, 0, 16); /* ranges [0, 16) and [32, 256) around one live block */
    assert_int_equal(alloc_ok(h, 32, 64), 64); /* [32, 64) and [96, 256) remain */
    assert_int_equal(dsm_heap_free_bytes(h), 256 - 48);
    assert_int_equal(dsm_heap_largest_free(h), 160);
    free_ok(h, 16, 16);
    free_ok(h, 64, 32);
    assert_int_equal(dsm_heap_largest_free(h), 256);
    dsm_heap_destroy(h);
}

/* Two heaps fed the same calls (as every node's collective heap is) agree on every answer. */
static void test_determinism(void **state)
{
    (void)state;
    struct dsm_heap *x = dsm_heap_create(1 << 24, 16), *y = dsm_heap_create(1 << 24, 16);
    enum { N = 5000 };
    static uint64_t live[N];
    size_t nlive = 0;
    rng_state = 12;
    for (int i = 0; i < 40000; i++) {
        if (nlive && (nlive == N || rng() % 3 == 0)) {
            size_t k = rng() % nlive;
            uint64_t s1, s2;
            assert_int_equal(dsm_heap_free(x, live[k], &s1), 0);
            assert_int_equal(dsm_heap_free(y, live[k], &s2), 0);
            assert_int_equal(s1, s2);
            live[k] = live[--nlive];
        } else {
            uint64_t size = 1 + rng() % 3000, align = 16ull << (rng() % 5), o1 = 1, o2 = 2;
            int r1 = dsm_heap_alloc(x, size, align, &o1), r2 = dsm_heap_alloc(y, size, align, &o2);
            assert_int_equal(r1, r2);
            if (r1 == 0) {
                assert_int_equal(o1, o2);
                live[nlive++] = o1;
            }
        }
    }
    assert_int_equal(dsm_heap_free_bytes(x), dsm_heap_free_bytes(y));
    assert_int_equal(dsm_heap_largest_free(x), dsm_heap_largest_free(y));
    dsm_heap_destroy(x);
    dsm_heap_destroy(y);
}

/* ------------------------------------------------------------------ reference model */

/* First fit done the obvious way: one byte per granule, linear scans. */
struct ref {
    uint64_t size, granule, ngran;
    uint8_t *used;
    uint64_t *block; /* by granule index: rounded size of the live block starting there, or 0 */
};

static int ref_alloc(struct ref *r, uint64_t size, uint64_t align, uint64_t *off)
{
    if (align == 0) align = r->granule;
    if (size == 0 || (align & (align - 1)) || align < r->granule) return -EINVAL;
    if (size > UINT64_MAX - (r->granule - 1)) return -EINVAL;
    uint64_t g = (size + r->granule - 1) / r->granule;
    for (uint64_t start = 0; start + g * r->granule <= r->size; start += align) {
        uint64_t s = start / r->granule, j;
        for (j = 0; j < g && !r->used[s + j]; j++) continue;
        if (j == g) {
            memset(r->used + s, 1, g);
            r->block[s] = g * r->granule;
            *off = start;
            return 0;
        }
        /* skip past the used granule; the next candidate is the next aligned start */
        uint64_t past = (s + j + 1) * r->granule;
        start = (past + align - 1) / align * align - align;
        if (start + align < start) break;
    }
    return -ENOMEM;
}

static int ref_free(struct ref *r, uint64_t off, uint64_t *size_out)
{
    if (off % r->granule || off >= r->size || !r->block[off / r->granule]) return -EINVAL;
    uint64_t s = off / r->granule, sz = r->block[s];
    memset(r->used + s, 0, sz / r->granule);
    r->block[s] = 0;
    *size_out = sz;
    return 0;
}

static void ref_stats(const struct ref *r, uint64_t *free_bytes, uint64_t *largest)
{
    uint64_t run = 0, total = 0, best = 0;
    for (uint64_t i = 0; i < r->ngran; i++) {
        run = r->used[i] ? 0 : run + 1;
        total += !r->used[i];
        if (run > best) best = run;
    }
    *free_bytes = total * r->granule;
    *largest = best * r->granule;
}

static void stress_vs_reference(uint64_t size, uint64_t granule, int ops, uint64_t seed)
{
    struct dsm_heap *h = dsm_heap_create(size, granule);
    assert_non_null(h);
    struct ref r = {.size = size, .granule = granule, .ngran = size / granule};
    r.used = calloc(r.ngran, 1);
    r.block = calloc(r.ngran, sizeof *r.block);
    uint64_t *live = calloc(r.ngran, sizeof *live);
    assert_true(r.used && r.block && live);
    size_t nlive = 0;
    unsigned nomem = 0, ok = 0;
    rng_state = seed;
    for (int i = 0; i < ops; i++) {
        uint64_t x = rng();
        /* Drift between filling up and draining, so both full and empty heaps are seen. */
        int phase = (i / 2000) % 2;
        if (nlive && x % 100 < (phase ? 65u : 35u)) {
            size_t k = rng() % nlive;
            uint64_t s1 = 0, s2 = 0;
            assert_int_equal(dsm_heap_free(h, live[k], &s1), 0);
            assert_int_equal(ref_free(&r, live[k], &s2), 0);
            assert_int_equal(s1, s2);
            assert_int_equal(dsm_heap_free(h, live[k], &s1), -EINVAL);
            live[k] = live[--nlive];
        } else if (x % 100 < 97) {
            uint64_t sz, al;
            switch ((x >> 8) % 6) {
            case 0:
                sz = 1 + rng() % granule;
                break;
            case 1:
                sz = 1 + rng() % (4 * granule);
                break;
            case 2:
                sz = 1 + rng() % (64 * granule);
                break;
            case 3:
                sz = 1 + rng() % (size / 4);
                break;
            case 4:
                sz = granule * (1 + rng() % 8);
                break;
            default:
                sz = 1 + rng() % (size + granule);
                break; /* sometimes too big */
            }
            switch ((x >> 16) % 5) {
            case 0:
                al = 0;
                break;
            case 1:
                al = granule;
                break;
            case 2:
                al = granule << (rng() % 4);
                break;
            case 3:
                al = granule << (rng() % 12);
                break;
            default:
                al = (rng() % 8 == 0) ? granule / 2 + 3 : granule * 2;
                break;
            }
            uint64_t o1 = 1, o2 = 2;
            int r1 = dsm_heap_alloc(h, sz, al, &o1), r2 = ref_alloc(&r, sz, al, &o2);
            if (r1 != r2)
                fail_msg("op %d: alloc(%llu, %llu): heap %d, reference %d", i,
                         (unsigned long long)sz, (unsigned long long)al, r1, r2);
            if (r1 == 0) {
                if (o1 != o2)
                    fail_msg("op %d: alloc(%llu, %llu): heap at %llu, reference at %llu", i,
                             (unsigned long long)sz, (unsigned long long)al, (unsigned long long)o1,
                             (unsigned long long)o2);
                live[nlive++] = o1;
                ok++;
            } else if (r1 == -ENOMEM) {
                nomem++;
            }
        } else {
            /* frees of things that are not live blocks */
            uint64_t off = rng() % (size + granule), s1 = 0, s2 = 0;
            int r1 = dsm_heap_free(h, off, &s1), r2 = ref_free(&r, off, &s2);
            assert_int_equal(r1, r2);
            if (r1 == 0) {
                assert_int_equal(s1, s2);
                for (size_t k = 0; k < nlive; k++)
                    if (live[k] == off) {
                        live[k] = live[--nlive];
                        break;
                    }
            }
        }
        uint64_t fb, lg;
        ref_stats(&r, &fb, &lg);
        assert_int_equal(dsm_heap_free_bytes(h), fb);
        assert_int_equal(dsm_heap_largest_free(h), lg);
        uint64_t probe = (rng() % r.ngran) * granule;
        assert_int_equal(dsm_heap_block_size(h, probe), r.block[probe / granule]);
    }
    /* Both outcomes must have been exercised. */
    assert_true(ok > (unsigned)ops / 4);
    assert_true(nomem > 10);
    for (size_t k = 0; k < nlive; k++) {
        uint64_t s;
        assert_int_equal(dsm_heap_free(h, live[k], &s), 0);
    }
    assert_int_equal(dsm_heap_free_bytes(h), size);
    assert_int_equal(dsm_heap_largest_free(h), size);
    free(live);
    free(r.used);
    free(r.block);
    dsm_heap_destroy(h);
}

static void test_stress_small_granule(void **state)
{
    (void)state;
    stress_vs_reference(64 * 1024, 16, 30000, 101);
}

static void test_stress_page_granule(void **state)
{
    (void)state;
    stress_vs_reference(256 * 4096, 4096, 20000, 102);
}

static void test_stress_tiny_heap(void **state)
{
    (void)state;
    stress_vs_reference(2048, 64, 20000, 103);
}

/* ------------------------------------------------------------------ churn */

/* Large-scale churn: 100k blocks allocated and freed in random order, then steady-state
 * alloc/free over a fragmented heap, checking that everything coalesces back. The times are
 * printed for information only: timing never decides a test here (a loaded CI machine would
 * make it flaky); the allocator's speed belongs to the benchmarks. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void timed_churn(uint64_t align, const char *what)
{
    enum { N = 100000 };
    const uint64_t size = 256ull << 20;
    struct dsm_heap *h = dsm_heap_create(size, 16);
    uint64_t *off = malloc(N * sizeof *off);
    assert_non_null(off);
    rng_state = 13;
    double t0 = now_s();
    for (int i = 0; i < N; i++) off[i] = alloc_ok(h, 1 + rng() % 512, align);
    for (int i = N - 1; i > 0; i--) { /* free in random order */
        int j = (int)(rng() % (uint64_t)(i + 1));
        uint64_t t = off[i];
        off[i] = off[j];
        off[j] = t;
    }
    for (int i = 0; i < N; i++) assert_int_equal(dsm_heap_free(h, off[i], NULL), 0);
    double t1 = now_s();
    assert_int_equal(dsm_heap_largest_free(h), size);
    /* Steady-state churn over a fragmented heap: half the blocks live at any time. */
    for (int i = 0; i < N / 2; i++) off[i] = alloc_ok(h, 1 + rng() % 512, align);
    size_t nlive = N / 2;
    for (int i = 0; i < N; i++) {
        size_t k = rng() % nlive;
        assert_int_equal(dsm_heap_free(h, off[k], NULL), 0);
        off[k] = alloc_ok(h, 1 + rng() % 512, align);
    }
    double t2 = now_s();
    print_message("%s: 100k allocs + 100k random frees %.3f s; 100k free/alloc pairs with 50k "
                  "live %.3f s\n",
                  what, t1 - t0, t2 - t1);
    free(off);
    dsm_heap_destroy(h);
}

static void test_churn_granule_aligned(void **state)
{
    (void)state;
    timed_churn(0, "align 16");
}

static void test_churn_cache_line_aligned(void **state)
{
    (void)state;
    timed_churn(64, "align 64"); /* what dsm_malloc asks for */
}

/* ------------------------------------------------------------------ placement */

static void expect_homes(int policy, uint64_t arg, int nodes, uint64_t npages, const int *want)
{
    char why[160] = "";
    assert_int_equal(dsm_place_check(policy, arg, nodes, why, sizeof why), 0);
    for (uint64_t p = 0; p < npages; p++) {
        int got = dsm_place_home(policy, arg, nodes, npages, p);
        if (got != want[p])
            fail_msg("policy %d arg %llu nodes %d npages %llu page %llu: node %d, want %d", policy,
                     (unsigned long long)arg, nodes, (unsigned long long)npages,
                     (unsigned long long)p, got, want[p]);
    }
    assert_int_equal(dsm_place_home(policy, arg, nodes, npages, npages), -EINVAL);
}

static void test_place_block(void **state)
{
    (void)state;
    expect_homes(DSM_PLACE_BLOCK, 0, 4, 8, (const int[]){0, 0, 1, 1, 2, 2, 3, 3});
    /* 10 pages on 4 nodes: chunks of 3, the last node gets the remainder */
    expect_homes(DSM_PLACE_BLOCK, 0, 4, 10, (const int[]){0, 0, 0, 1, 1, 1, 2, 2, 2, 3});
    /* 5 pages on 4 nodes: chunks of 2, node 3 gets nothing */
    expect_homes(DSM_PLACE_BLOCK, 0, 4, 5, (const int[]){0, 0, 1, 1, 2});
    /* fewer pages than nodes: one page each on the first nodes */
    expect_homes(DSM_PLACE_BLOCK, 0, 8, 3, (const int[]){0, 1, 2});
    expect_homes(DSM_PLACE_BLOCK, 0, 1, 4, (const int[]){0, 0, 0, 0});
    expect_homes(DSM_PLACE_BLOCK, 0, 64, 1, (const int[]){0});
    /* arg is ignored */
    expect_homes(DSM_PLACE_BLOCK, 12345, 2, 3, (const int[]){0, 0, 1});
    /* npages near 2^64 does not overflow the rounding up */
    assert_int_equal(dsm_place_home(DSM_PLACE_BLOCK, 0, 3, UINT64_MAX, UINT64_MAX - 1), 2);
    assert_int_equal(dsm_place_home(DSM_PLACE_BLOCK, 0, 3, UINT64_MAX, UINT64_MAX / 3 - 1), 0);
    assert_int_equal(dsm_place_home(DSM_PLACE_BLOCK, 0, 3, UINT64_MAX, UINT64_MAX / 3), 1);
    assert_int_equal(dsm_place_home(DSM_PLACE_BLOCK, 0, 2, UINT64_MAX, UINT64_MAX / 2), 0);
    assert_int_equal(dsm_place_home(DSM_PLACE_BLOCK, 0, 2, UINT64_MAX, UINT64_MAX / 2 + 1), 1);
    /* The general shape, for many sizes: contiguous chunks of ceil(npages / nodes), in node
     * order, every page homed on a real node. */
    for (int nodes = 1; nodes <= 9; nodes++)
        for (uint64_t np = 1; np <= 100; np++) {
            uint64_t chunk = (np + (uint64_t)nodes - 1) / (uint64_t)nodes;
            for (uint64_t p = 0; p < np; p++) {
                int n = dsm_place_home(DSM_PLACE_BLOCK, 0, nodes, np, p);
                assert_true(n >= 0 && n < nodes);
                assert_int_equal((uint64_t)n, p / chunk);
            }
        }
}

static void test_place_cyclic(void **state)
{
    (void)state;
    expect_homes(DSM_PLACE_CYCLIC, 4096, 3, 7, (const int[]){0, 1, 2, 0, 1, 2, 0});
    expect_homes(DSM_PLACE_CYCLIC, 8192, 3, 8, (const int[]){0, 0, 1, 1, 2, 2, 0, 0});
    /* a partial last block */
    expect_homes(DSM_PLACE_CYCLIC, 3 * 4096, 2, 10, (const int[]){0, 0, 0, 1, 1, 1, 0, 0, 0, 1});
    /* a block larger than the allocation: all on node 0 */
    expect_homes(DSM_PLACE_CYCLIC, 1 << 20, 4, 5, (const int[]){0, 0, 0, 0, 0});
    /* fewer pages than nodes */
    expect_homes(DSM_PLACE_CYCLIC, 4096, 8, 3, (const int[]){0, 1, 2});
    expect_homes(DSM_PLACE_CYCLIC, 4096, 1, 3, (const int[]){0, 0, 0});
    /* huge block sizes and page numbers */
    assert_int_equal(dsm_place_home(DSM_PLACE_CYCLIC, 4096, 64, UINT64_MAX, UINT64_MAX - 1), 62);
    assert_int_equal(dsm_place_home(DSM_PLACE_CYCLIC, UINT64_MAX - 4095, 2, 10, 9), 0);
}

static void test_place_node(void **state)
{
    (void)state;
    expect_homes(DSM_PLACE_NODE, 2, 4, 5, (const int[]){2, 2, 2, 2, 2});
    expect_homes(DSM_PLACE_NODE, 0, 1, 2, (const int[]){0, 0});
    expect_homes(DSM_PLACE_NODE, 63, 64, 1, (const int[]){63});
}

static void expect_rejected(int policy, uint64_t arg, int nodes, const char *needle)
{
    char why[160] = "";
    assert_int_equal(dsm_place_check(policy, arg, nodes, why, sizeof why), -EINVAL);
    if (!strstr(why, needle)) fail_msg("reason \"%s\" does not mention \"%s\"", why, needle);
    assert_int_equal(dsm_place_home(policy, arg, nodes, 16, 0), -EINVAL);
    assert_int_equal(dsm_place_check(policy, arg, nodes, NULL, 0), -EINVAL);
}

static void test_place_rejected(void **state)
{
    (void)state;
    expect_rejected(DSM_PLACE_CYCLIC, 0, 4, "block size 0");
    expect_rejected(DSM_PLACE_CYCLIC, 4095, 4, "block size 4095");
    expect_rejected(DSM_PLACE_CYCLIC, 4097, 4, "block size 4097");
    expect_rejected(DSM_PLACE_CYCLIC, 6144, 4, "block size 6144");
    expect_rejected(DSM_PLACE_CYCLIC, UINT64_MAX, 4, "block size");
    expect_rejected(DSM_PLACE_NODE, 4, 4, "node 4");
    expect_rejected(DSM_PLACE_NODE, UINT64_MAX, 4, "node 18446744073709551615");
    expect_rejected(3, 0, 4, "policy 3");
    expect_rejected(-1, 0, 4, "policy -1");
    expect_rejected(DSM_PLACE_BLOCK, 0, 0, "node count 0");
    expect_rejected(DSM_PLACE_NODE, 0, -2, "node count -2");
    /* A tiny reason buffer is truncated, not overrun. */
    char tiny[6];
    assert_int_equal(dsm_place_check(7, 0, 4, tiny, sizeof tiny), -EINVAL);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    /* The boundary values that are accepted. */
    char why[8];
    assert_int_equal(dsm_place_check(DSM_PLACE_CYCLIC, 4096, 4, why, sizeof why), 0);
    assert_int_equal(dsm_place_check(DSM_PLACE_NODE, 3, 4, why, sizeof why), 0);
    assert_int_equal(dsm_place_check(DSM_PLACE_BLOCK, 0, 1, why, sizeof why), 0);
    /* Pages of an empty allocation do not exist. */
    assert_int_equal(dsm_place_home(DSM_PLACE_BLOCK, 0, 4, 0, 0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_args),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_exhaustion),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_bad_free),
        cmocka_unit_test(test_split_at_metadata_bound),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_stress_small_granule),
        cmocka_unit_test(test_stress_page_granule),
        cmocka_unit_test(test_stress_tiny_heap),
        cmocka_unit_test(test_churn_granule_aligned),
        cmocka_unit_test(test_churn_cache_line_aligned),
        cmocka_unit_test(test_place_block),
        cmocka_unit_test(test_place_cyclic),
        cmocka_unit_test(test_place_node),
        cmocka_unit_test(test_place_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

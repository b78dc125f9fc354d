/*
 * test_hist.c - unit tests of the latency histogram (dsm/hist.c).
 *
 * The accuracy tests compare quantiles against the exact nearest-rank quantiles of the same
 * samples, sorted, over several distributions; the bound checked is the documented one
 * (6.25% of the true value, exact for small values), not a looser statistical one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"

static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank sample for q, with the rank computed as hist.h defines it. */
static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
    double x = q * (double)n;
    size_t rank = 1;
    while ((double)rank < x) rank++;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static const double qs[] = {0,   1e-5, 0.001, 0.01, 1.0 / 64, 0.1,   0.25,     1.0 / 3,
                            0.5, 0.75, 0.9,   0.95, 0.99,     0.999, 1 - 1e-5, 1};

/* Asserts every quantile of h is within the documented bound of the exact one. */
static void check_quantiles(const struct dsm_hist *h, uint64_t *samples, size_t n)
{
    qsort(samples, n, sizeof *samples, cmp_u64);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        double est = dsm_hist_quantile_ns(h, qs[i]);
        uint64_t truth = exact_quantile(samples, n, qs[i]);
        assert_true(est >= (double)samples[0] && est <= (double)samples[n - 1]);
        if (truth < 32) {
            /* buckets of width one: exact */
            if (est != (double)truth)
                fail_msg("q=%g: %.3f, exact %llu", qs[i], est, (unsigned long long)truth);
        } else if (est < (double)truth * (1 - 1.0 / 16) || est > (double)truth * (1 + 1.0 / 16)) {
            fail_msg("q=%g: %.3f, exact %llu: beyond 6.25%%", qs[i], est,
                     (unsigned long long)truth);
        }
    }
    /* The extremes are exact: they are clamped to the recorded min and max. */
    assert_true(dsm_hist_quantile_ns(h, 0) == (double)samples[0]);
    assert_true(dsm_hist_quantile_ns(h, 1) == (double)samples[n - 1]);
}

static void fill_and_check(uint64_t (*gen)(void), size_t n)
{
    uint64_t *s = malloc(n * sizeof *s);
    assert_non_null(s);
    struct dsm_hist h;
    dsm_hist_reset(&h);
    uint64_t min = UINT64_MAX, max = 0;
    long double sum = 0;
    for (size_t i = 0; i < n; i++) {
        s[i] = gen();
        dsm_hist_add(&h, s[i]);
        if (s[i] < min) min = s[i];
        if (s[i] > max) max = s[i];
        sum += s[i];
    }
    assert_int_equal(h.count, n);
    assert_int_equal(h.min_ns, min);
    assert_int_equal(h.max_ns, max);
    double mean = dsm_hist_mean_ns(&h);
    assert_true(mean >= (double)(sum / n) * (1 - 1e-9) && mean <= (double)(sum / n) * (1 + 1e-9));
    check_quantiles(&h, s, n);
    free(s);
}

static uint64_t gen_uniform(void)
{
    return rng() % 1000000;
}
static uint64_t gen_small(void)
{
    return rng() % 40;
}
static uint64_t gen_log_uniform(void)
{
    /* every magnitude from 1 ns to 2^50 ns equally likely: all bucket groups */
    return rng() >> (14 + rng() % 50);
}
static uint64_t gen_bimodal(void)
{
    /* a fast local path and a slow remote one, like page faults */
    uint64_t r = rng();
    return (r & 7) ? 2000 + (r >> 8) % 300 : 80000 + (r >> 8) % 40000;
}
static uint64_t gen_heavy_tail(void)
{
    /* roughly exponential: each doubling is half as likely */
    uint64_t r = rng();
    unsigned k = (unsigned)__builtin_ctzll(r | (1ull << 40));
    return (1000ull << k) + (rng() % (1000ull << k));
}
static uint64_t gen_constant(void)
{
    return 123457;
}
static uint64_t gen_bucket_edges(void)
{
    /* powers of two and their neighbours: where the bucket arithmetic changes */
    unsigned e = 4 + (unsigned)(rng() % 46);
    return (1ull << e) + (uint64_t)(int64_t)((int)(rng() % 5) - 2);
}

static void test_empty(void **state)
{
    (void)state;
    struct dsm_hist h;
    memset(&h, 0x77, sizeof h);
    dsm_hist_reset(&h);
    assert_int_equal(h.count, 0);
    assert_true(dsm_hist_mean_ns(&h) == 0);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        assert_true(dsm_hist_quantile_ns(&h, qs[i]) == 0);
    /* all-zero is empty too, and the first sample sets min correctly */
    struct dsm_hist z = {0};
    assert_true(dsm_hist_quantile_ns(&z, 0.5) == 0);
    dsm_hist_add(&z, 500);
    assert_int_equal(z.min_ns, 500);
    assert_int_equal(z.max_ns, 500);
    assert_true(dsm_hist_quantile_ns(&z, 0) == 500);
    assert_true(dsm_hist_quantile_ns(&z, 0.5) == 500);
    assert_true(dsm_hist_mean_ns(&z) == 500);
    /* reset forgets */
    dsm_hist_reset(&z);
    assert_true(dsm_hist_quantile_ns(&z, 0.5) == 0);
    struct dsm_hist zero = {0};
    assert_memory_equal(&z, &zero, sizeof z);
}

static void test_small_values_exact(void **state)
{
    (void)state;
    /* Every value below 32 lands in a bucket of its own: all quantiles are exact. */
    struct dsm_hist h;
    dsm_hist_reset(&h);
    uint64_t s[1000];
    size_t n = 0;
    for (uint64_t v = 0; v < 32; v++)
        for (uint64_t k = 0; k <= v % 7; k++) {
            s[n++] = v;
            dsm_hist_add(&h, v);
        }
    qsort(s, n, sizeof *s, cmp_u64);
    for (size_t r = 1; r <= n; r++) {
        double q = ((double)r - 0.5) / (double)n;
        assert_true(dsm_hist_quantile_ns(&h, q) == (double)exact_quantile(s, n, q));
    }
    for (uint64_t v = 0; v < 32; v++) {
        struct dsm_hist one;
        dsm_hist_reset(&one);
        dsm_hist_add(&one, v);
        dsm_hist_add(&one, v);
        assert_true(dsm_hist_quantile_ns(&one, 0.5) == (double)v);
    }
}

static void test_single_sample(void **state)
{
    (void)state;
    uint64_t vals[] = {0,          1,         16, 17, 1000, 123456789, 1ull << 40, (1ull << 51) - 1,
                       1ull << 51, UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct dsm_hist h;
        dsm_hist_reset(&h);
        dsm_hist_add(&h, vals[i]);
        for (size_t j = 0; j < sizeof qs / sizeof qs[0]; j++)
            assert_true(dsm_hist_quantile_ns(&h, qs[j]) == (double)vals[i]);
        assert_true(dsm_hist_mean_ns(&h) == (double)vals[i]);
    }
}

static void test_uniform(void **state)
{
    (void)state;
    rng_state = 1;
    fill_and_check(gen_uniform, 100000);
}

static void test_small_random(void **state)
{
    (void)state;
    rng_state = 2;
    fill_and_check(gen_small, 10000);
}

static void test_log_uniform(void **state)
{
    (void)state;
    rng_state = 3;
    fill_and_check(gen_log_uniform, 100000);
}

static void test_bimodal(void **state)
{
    (void)state;
    rng_state = 4;
    fill_and_check(gen_bimodal, 100000);
}

static void test_heavy_tail(void **state)
{
    (void)state;
    rng_state = 5;
    fill_and_check(gen_heavy_tail, 100000);
}

static void test_constant(void **state)
{
    (void)state;
    fill_and_check(gen_constant, 1000);
}

static void test_bucket_edges(void **state)
{
    (void)state;
    rng_state = 6;
    fill_and_check(gen_bucket_edges, 50000);
}

static void test_min_max(void **state)
{
    (void)state;
    struct dsm_hist h;
    dsm_hist_reset(&h);
    rng_state = 7;
    uint64_t min = UINT64_MAX, max = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t v = 1000 + rng() % 100000;
        if (v < min) min = v;
        if (v > max) max = v;
        dsm_hist_add(&h, v);
        assert_int_equal(h.min_ns, min);
        assert_int_equal(h.max_ns, max);
    }
    assert_true(dsm_hist_quantile_ns(&h, 0) == (double)min);
    assert_true(dsm_hist_quantile_ns(&h, 1) == (double)max);
    /* q outside [0, 1] (or NaN) is clamped rather than trusted */
    assert_true(dsm_hist_quantile_ns(&h, -3) == (double)min);
    assert_true(dsm_hist_quantile_ns(&h, 7) == (double)max);
    assert_true(dsm_hist_quantile_ns(&h, __builtin_nan("")) == (double)min);
    assert_true(dsm_hist_quantile_ns(&h, __builtin_inf()) == (double)max);
    assert_true(dsm_hist_quantile_ns(&h, -__builtin_inf()) == (double)min);
    /* quantiles are monotonic in q */
    double prev = 0;
    for (int i = 0; i <= 1000; i++) {
        double v = dsm_hist_quantile_ns(&h, i / 1000.0);
        assert_true(v >= prev);
        prev = v;
    }
}

static void test_huge_values(void **state)
{
    (void)state;
    struct dsm_hist h;
    dsm_hist_reset(&h);
    uint64_t vals[] = {1ull << 50, (1ull << 51) - 1, 1ull << 51,
                       1ull << 63, UINT64_MAX,       UINT64_MAX - 1};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) dsm_hist_add(&h, vals[i]);
    assert_int_equal(h.count, 6);
    assert_int_equal(h.min_ns, 1ull << 50);
    assert_int_equal(h.max_ns, UINT64_MAX);
    /* the sum saturates instead of wrapping to something small */
    assert_int_equal(h.sum_ns, UINT64_MAX);
    assert_true(dsm_hist_mean_ns(&h) >= (double)(1ull << 60));
    double prev = 0;
    for (int i = 0; i <= 100; i++) {
        double v = dsm_hist_quantile_ns(&h, i / 100.0);
        assert_true(v >= (double)(1ull << 50) && v <= (double)UINT64_MAX);
        assert_true(v >= prev);
        prev = v;
    }
    assert_true(dsm_hist_quantile_ns(&h, 1) == (double)UINT64_MAX);
    /* A value in the regular range is still accurate next to huge ones in the last bucket. */
    dsm_hist_reset(&h);
    for (int i = 0; i < 99; i++) dsm_hist_add(&h, 5000000);
    dsm_hist_add(&h, UINT64_MAX);
    double p50 = dsm_hist_quantile_ns(&h, 0.5);
    assert_true(p50 >= 5000000 * (1 - 1.0 / 16) && p50 <= 5000000 * (1 + 1.0 / 16));
    assert_true(dsm_hist_quantile_ns(&h, 0.99) <= 5000000 * (1 + 1.0 / 16));
    assert_true(dsm_hist_quantile_ns(&h, 0.995) == (double)UINT64_MAX);
}

static void test_merge(void **state)
{
    (void)state;
    struct dsm_hist all, part[3], merged;
    dsm_hist_reset(&all);
    for (int i = 0; i < 3; i++) dsm_hist_reset(&part[i]);
    rng_state = 8;
    for (int i = 0; i < 30000; i++) {
        uint64_t v = gen_log_uniform();
        dsm_hist_add(&all, v);
        dsm_hist_add(&part[rng() % 3], v);
    }
    /* into an empty one, then the rest: identical to adding everything */
    dsm_hist_reset(&merged);
    for (int i = 0; i < 3; i++) dsm_hist_merge(&merged, &part[i]);
    assert_memory_equal(&merged, &all, sizeof all);
    /* into a non-empty one, in another order */
    merged = part[2];
    dsm_hist_merge(&merged, &part[0]);
    dsm_hist_merge(&merged, &part[1]);
    assert_memory_equal(&merged, &all, sizeof all);
    /* merging an empty histogram changes nothing (its zero min must not leak in) */
    struct dsm_hist empty;
    dsm_hist_reset(&empty);
    merged = all;
    dsm_hist_merge(&merged, &empty);
    assert_memory_equal(&merged, &all, sizeof all);
    /* merging into a zero-initialised (never reset) histogram copies min and max */
    struct dsm_hist z = {0}, one;
    dsm_hist_reset(&one);
    dsm_hist_add(&one, 777);
    dsm_hist_merge(&z, &one);
    assert_int_equal(z.min_ns, 777);
    assert_int_equal(z.max_ns, 777);
    /* the sum saturates on merge too */
    struct dsm_hist a, b;
    dsm_hist_reset(&a);
    dsm_hist_reset(&b);
    dsm_hist_add(&a, UINT64_MAX - 5);
    dsm_hist_add(&b, 10);
    dsm_hist_merge(&a, &b);
    assert_int_equal(a.sum_ns, UINT64_MAX);
}

static void test_torn_snapshot(void **state)
{
    (void)state;
    /* A copy taken while another thread adds can have count ahead of the buckets, or min
     * above max; answers must stay finite and in range rather than crash. */
    struct dsm_hist h;
    dsm_hist_reset(&h);
    for (int i = 0; i < 100; i++) dsm_hist_add(&h, 1000 + (uint64_t)i);
    h.count += 5;
    assert_true(dsm_hist_quantile_ns(&h, 1) == (double)h.max_ns);
    assert_true(dsm_hist_quantile_ns(&h, 0.5) <= (double)h.max_ns);
    h.min_ns = 5000;
    double v = dsm_hist_quantile_ns(&h, 0.5);
    assert_true(v == (double)h.max_ns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),         cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_single_sample), cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_small_random),  cmocka_unit_test(test_log_uniform),
        cmocka_unit_test(test_bimodal),       cmocka_unit_test(test_heavy_tail),
        cmocka_unit_test(test_constant),      cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_min_max),       cmocka_unit_test(test_huge_values),
        cmocka_unit_test(test_merge),         cmocka_unit_test(test_torn_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

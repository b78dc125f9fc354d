/*
 * hist.c - bucket arithmetic and summary statistics of the latency histogram (see hist.h).
 *
 * Bucket layout, with SUB = 16 = 2^4: values v < 16 go to bucket v. A larger v with its top
 * bit at position e (>= 4) goes to bucket 16 * (e - 3) + the 4 bits below the top bit, so
 * each power of two [2^e, 2^(e+1)) gets 16 buckets of width 2^(e-4). The mapping is monotonic
 * in v, which is what lets a quantile be found by walking the buckets in order.
 */
#include "hist.h"

#include <string.h>

_Static_assert(DSM_HIST_SUB == 16, "the bucket arithmetic below assumes 4 sub-bucket bits");

#define SUB_BITS 4
#define LAST     (DSM_HIST_BUCKETS - 1)

static unsigned bucket_of(uint64_t v)
{
    if (v < DSM_HIST_SUB) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned idx =
        DSM_HIST_SUB * (e - SUB_BITS + 1) + (unsigned)((v >> (e - SUB_BITS)) & (DSM_HIST_SUB - 1));
    return idx < LAST ? idx : LAST;
}

/* Smallest value of bucket i, and its width (number of integer values it holds). */
static uint64_t bucket_lo(unsigned i, uint64_t *width)
{
    if (i < DSM_HIST_SUB) {
        *width = 1;
        return i;
    }
    unsigned e = i / DSM_HIST_SUB + SUB_BITS - 1, sub = i % DSM_HIST_SUB;
    *width = 1ull << (e - SUB_BITS);
    return (uint64_t)(DSM_HIST_SUB + sub) << (e - SUB_BITS);
}

void dsm_hist_reset(struct dsm_hist *h)
{
    memset(h, 0, sizeof *h);
}

void dsm_hist_add(struct dsm_hist *h, uint64_t ns)
{
    if (h->count == 0 || ns < h->min_ns) h->min_ns = ns;
    if (h->count == 0 || ns > h->max_ns) h->max_ns = ns;
    h->count++;
    if (__builtin_add_overflow(h->sum_ns, ns, &h->sum_ns)) h->sum_ns = UINT64_MAX;
    h->bucket[bucket_of(ns)]++;
}

void dsm_hist_merge(struct dsm_hist *dst, const struct dsm_hist *src)
{
    if (src->count == 0) return;
    if (dst->count == 0 || src->min_ns < dst->min_ns) dst->min_ns = src->min_ns;
    if (dst->count == 0 || src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
    dst->count += src->count;
    if (__builtin_add_overflow(dst->sum_ns, src->sum_ns, &dst->sum_ns)) dst->sum_ns = UINT64_MAX;
    for (unsigned i = 0; i < DSM_HIST_BUCKETS; i++) dst->bucket[i] += src->bucket[i];
}

static double clamp(double v, const struct dsm_hist *h)
{
    /* max wins over min so that a torn snapshot (min > max) still yields a sample value */
    if (v < (double)h->min_ns) v = (double)h->min_ns;
    if (v > (double)h->max_ns) v = (double)h->max_ns;
    return v;
}

double dsm_hist_quantile_ns(const struct dsm_hist *h, double q)
{
    if (h->count == 0) return 0;
    if (!(q > 0)) q = 0; /* also NaN */
    if (q > 1) q = 1;
    /* ceil by hand: this file must not need libm. x < count keeps the conversion defined. */
    double x = q * (double)h->count;
    uint64_t rank = h->count;
    if (x < (double)h->count) {
        rank = (uint64_t)x;
        if ((double)rank < x) rank++;
        if (rank == 0) rank = 1;
    }
    /* The extremes are known exactly; no need to estimate them from a bucket (which, for the
     * open-ended last one, could be far off). */
    if (rank == h->count) return (double)h->max_ns;
    if (rank == 1) return clamp((double)h->min_ns, h);

    uint64_t seen = 0;
    for (unsigned i = 0; i < DSM_HIST_BUCKETS; i++) {
        uint64_t n = h->bucket[i];
        if (n == 0 || seen + n < rank) {
            seen += n;
            continue;
        }
        uint64_t width;
        uint64_t lo = bucket_lo(i, &width);
        /* The top of the bucket is its largest possible value; the last bucket is open-ended,
         * and the largest value it actually holds is max. */
        double top = i == LAST && h->max_ns > lo ? (double)h->max_ns : (double)(lo + width - 1);
        /* Samples are assumed spread evenly over the bucket: the k-th of n sits at the
         * middle of the k-th n-th of it. Stays inside [lo, top], which is all the error bound
         * needs; the interpolation only makes typical answers better than the bound. */
        double frac = ((double)(rank - seen) - 0.5) / (double)n;
        return clamp((double)lo + frac * (top - (double)lo), h);
    }
    /* The buckets hold fewer samples than count: only a torn snapshot, or counters that
     * wrapped. The maximum is the honest answer for a rank we cannot find. */
    return (double)h->max_ns;
}

double dsm_hist_mean_ns(const struct dsm_hist *h)
{
    return h->count ? (double)h->sum_ns / (double)h->count : 0;
}

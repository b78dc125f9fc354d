/*
 * hist.h - a fixed-size latency histogram with bounded relative error.
 *
 * Responsible for recording durations (nanoseconds) in the fault path and answering mean and
 * quantile questions about them at the end. Recording must be cheap and must not allocate,
 * lock or touch floating point (it runs inside the SIGBUS handler's call chain), so the
 * histogram is a fixed array of log-linear buckets: values 0..15 have a bucket each, and each
 * power of two above is split into DSM_HIST_SUB equal sub-buckets. A bucket spans at most
 * 1/16 of its lower bound, so any value read back from a bucket is within 6.25% of every
 * sample in it, except in the last bucket, which also takes every value of 2^51 ns (26 days)
 * and more.
 *
 * Not thread-safe: callers serialise (the runtime records under its progress token). A
 * snapshot copied while another thread writes may be inconsistent; the readers tolerate that
 * (they never index outside the array and fall back to max) rather than crash.
 */
#ifndef DSM_HIST_H
#define DSM_HIST_H

#include <stdint.h>

#define DSM_HIST_SUB     16 /* sub-buckets per power of two: <= 6.25% relative error */
#define DSM_HIST_BUCKETS (DSM_HIST_SUB * 48)

/* All-zero is a valid empty histogram (so a zero-initialised global needs no reset).
 * min_ns and max_ns are meaningful only when count > 0. sum_ns saturates at UINT64_MAX
 * instead of wrapping, so an absurd sample makes the mean large, not small. */
struct dsm_hist {
    uint64_t count, sum_ns, max_ns, min_ns;
    uint32_t bucket[DSM_HIST_BUCKETS];
};

void dsm_hist_reset(struct dsm_hist *h);
/* O(1), no floating point, no locks. */
void dsm_hist_add(struct dsm_hist *h, uint64_t ns);
/* dst += src, as if every sample of src had been added to dst. */
void dsm_hist_merge(struct dsm_hist *dst, const struct dsm_hist *src);
/* The q-quantile (q in [0,1], clamped) by the nearest-rank definition: the sample of rank
 * max(1, ceil(q * count)) in sorted order, so q = 0 is the minimum and q = 1 the maximum.
 * The result lies in the bucket of that sample (interpolated by rank inside it), hence
 * within 6.25% of it (exact below 16), and is clamped to [min, max]. 0 if empty. */
double dsm_hist_quantile_ns(const struct dsm_hist *h, double q);
/* 0 if empty. */
double dsm_hist_mean_ns(const struct dsm_hist *h);

#endif /* DSM_HIST_H */

/*
 * radix.c - SPLASH-2-style parallel radix sort of N 32-bit keys (bench/kernels; kern.h builds
 * it SPMD on ufdsm and as plain pthreads).
 *
 * Keys live in two shared arrays (src, dst), process p owning the contiguous share
 * [N*p/P, N*(p+1)/P) of each (homed on it in the DSM build). Each pass over one digit of R
 * bits: every process histograms the digit over its share into its own row of a shared
 * histogram table (one page-padded row per process), a barrier, then every process reads
 * all rows to compute where each of its keys goes (digit rank over all processes, stable by
 * process and position) and writes its keys there - scattered writes into the whole of dst,
 * so every page of dst gets writes from every process: page-level write-write false sharing,
 * the case a single-writer protocol handles worst. A barrier, and src/dst swap.
 *
 * Check (after the timed part): every process checks its share of the result is sorted and
 * follows the previous share's last key, and sums a hash of each key of its share; process 0
 * compares the total with the same sum over the input, which it regenerates from the key
 * generator (key i = hash(i), masked to the key bits), so a lost, duplicated or corrupted key
 * fails the run.
 *
 *   -n N   keys (default 1048576)      -r R   bits per digit (default 10: radix 1024)
 *   -k K   key bits (default 20; keys are uniform in [0, 2^K))
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern.h"

const char *kern_name = "radix";
const char *kern_usage = "-n KEYS (1048576)  -r DIGIT_BITS (10)  -k KEY_BITS (20)";

static long nkeys = 1048576;
static int rbits = 10, kbits = 20;
static uint32_t *keys[2];
static uint64_t *hist;  /* procs rows of hist_stride entries */
static uint64_t *check; /* procs rows of 512 words: sum of hashes, share's first and last key */
static size_t hist_stride;
static char extra[64];

int kern_options(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "n:r:k:")) != -1) {
        switch (c) {
        case 'n':
            nkeys = kern_arg_long("-n", optarg, 1, 1L << 30);
            break;
        case 'r':
            rbits = (int)kern_arg_long("-r", optarg, 1, 16);
            break;
        case 'k':
            kbits = (int)kern_arg_long("-k", optarg, 1, 32);
            break;
        default:
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "radix: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    return 0;
}

long kern_size(void)
{
    return nkeys;
}

const char *kern_extra(void)
{
    snprintf(extra, sizeof extra, "digit_bits=%d key_bits=%d", rbits, kbits);
    return extra;
}

static uint32_t key_of(long i)
{
    uint64_t h = kern_hash(0x5eed0000ull + (uint64_t)i);
    return kbits == 32 ? (uint32_t)h : (uint32_t)(h & ((1ull << kbits) - 1));
}

void kern_setup(void)
{
    int P = kern_procs();
    long radix = 1L << rbits;
    hist_stride = ((size_t)radix * sizeof(uint64_t) + 4095) / 4096 * 4096 / sizeof(uint64_t);
    keys[0] = kern_alloc((size_t)nkeys * sizeof(uint32_t));
    keys[1] = kern_alloc((size_t)nkeys * sizeof(uint32_t));
    /* One page-multiple row per process, homed on it (block placement of P equal rows). */
    hist = kern_alloc((size_t)P * hist_stride * sizeof(uint64_t));
    check = kern_alloc((size_t)P * 4096);
}

void kern_body(int me)
{
    int P = kern_procs();
    long radix = 1L << rbits, lo, hi;
    kern_split(nkeys, P, me, &lo, &hi);
    uint64_t *count = malloc((size_t)radix * sizeof *count);
    uint64_t *where = malloc((size_t)radix * sizeof *where);
    KERN_CHECK(count && where, "malloc of %ld-entry histograms failed", radix);

    /* Every process touches its share of every shared array before the timer (as SPLASH's
     * initialisation does), so the timed part does not include first-touch page faults. */
    for (long i = lo; i < hi; i++) {
        keys[0][i] = key_of(i);
        keys[1][i] = 0;
    }
    memset(hist + (size_t)me * hist_stride, 0, hist_stride * sizeof *hist);
    kern_timer_start();

    int passes = (kbits + rbits - 1) / rbits, s = 0;
    for (int pass = 0; pass < passes; pass++, s ^= 1) {
        const uint32_t *src = keys[s];
        uint32_t *dst = keys[s ^ 1];
        int shift = pass * rbits;
        uint32_t mask = (uint32_t)(radix - 1);
        memset(count, 0, (size_t)radix * sizeof *count);
        for (long i = lo; i < hi; i++) count[(src[i] >> shift) & mask]++;
        memcpy(hist + (size_t)me * hist_stride, count, (size_t)radix * sizeof *count);
        kern_barrier();
        /* where[d] = keys of smaller digits anywhere + keys of digit d in lower shares. */
        uint64_t base = 0;
        for (long d = 0; d < radix; d++) {
            uint64_t before = 0, total = 0;
            for (int q = 0; q < P; q++) {
                uint64_t c = hist[(size_t)q * hist_stride + (size_t)d];
                if (q < me) before += c;
                total += c;
            }
            where[d] = base + before;
            base += total;
        }
        KERN_CHECK(base == (uint64_t)nkeys, "pass %d: histograms sum to %llu keys, not %ld", pass,
                   (unsigned long long)base, nkeys);
        for (long i = lo; i < hi; i++) {
            uint32_t k = src[i];
            dst[where[(k >> shift) & mask]++] = k;
        }
        kern_barrier(); /* dst complete before the next pass reads it (and rewrites hist) */
    }
    kern_timer_stop();

    uint32_t *out = keys[s];
    if (kern_inject && me == 0 && hi > lo) out[lo] ^= 1u; /* a key changes: must be caught */
    uint64_t sum = 0;
    for (long i = lo; i < hi; i++) {
        if (i > lo && out[i - 1] > out[i])
            kern_fail("not sorted: key[%ld] = %u > key[%ld] = %u", i - 1, out[i - 1], i, out[i]);
        sum += kern_hash(out[i]);
    }
    uint64_t *row = check + (size_t)me * 512;
    row[0] = sum;
    row[1] = hi > lo ? out[lo] : 0;
    row[2] = hi > lo ? out[hi - 1] : 0;
    row[3] = (uint64_t)(hi - lo);
    kern_barrier();
    if (me == 0) {
        uint64_t total = 0, want = 0, prev_last = 0;
        int seen = 0;
        for (int q = 0; q < P; q++) {
            const uint64_t *r = check + (size_t)q * 512;
            total += r[0];
            if (!r[3]) continue;
            if (seen && r[1] < prev_last)
                kern_fail("not sorted across shares: share %d starts with %llu after %llu", q,
                          (unsigned long long)r[1], (unsigned long long)prev_last);
            prev_last = r[2];
            seen = 1;
        }
        for (long i = 0; i < nkeys; i++) want += kern_hash(key_of(i));
        KERN_CHECK(total == want,
                   "the sorted keys are not a permutation of the input (hash sum %016llx, input "
                   "%016llx): keys were lost, duplicated or corrupted",
                   (unsigned long long)total, (unsigned long long)want);
    }
    free(count);
    free(where);
}

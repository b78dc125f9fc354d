/*
 * fft.c - SPLASH-2-style six-step 1-D complex FFT of N = 2^m points (bench/kernels; kern.h
 * builds it SPMD on ufdsm and as plain pthreads).
 *
 * The N points are a sqrt(N) x sqrt(N) row-major matrix (m even); two such shared arrays, x
 * and y. Process p owns the contiguous rows [n1*p/P, n1*(p+1)/P) of both (homed on it in the
 * DSM build when a row is a page multiple, n1 >= 256). The six steps, each process working
 * on its own rows with a barrier after every transpose:
 *   1. y = x^T          (each process writes its rows of y, reading columns of all of x)
 *   2. FFT of each row of y, 3. y[r][c] *= w_N^(r*c)   (own rows only, no barrier between)
 *   4. x = y^T          5. FFT of each row of x
 *   6. y = x^T          y is then the DFT of the input, in natural order.
 * The transposes are the all-to-all communication of the kernel.
 *
 * The input: x_j = (hash(2j), hash(2j+1)) in [-1, 1)^2. Check (after the timed part): every
 * process sums |y|^2 over its rows; Parseval (sum |y|^2 = N sum |x|^2) must hold to 1e-9
 * relative, and process 0 computes 20 coefficients directly from the regenerated input
 * (k = 0, N-1, the first of each process's rows, and pseudo-random ones), each within
 * 1e-9 N of y[k].
 *
 *   -m M   log2 of the number of points (even; default 20)
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern.h"

const char *kern_name = "fft";
const char *kern_usage = "-m LOG2_POINTS (20, even)";

typedef struct {
    double re, im;
} cplx;

static int m = 20;
static long N, n1;
static cplx *x, *y;
static double *sums; /* one page-padded row per process: sum |y|^2 of its rows */
static char extra[32];

int kern_options(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            m = (int)kern_arg_long("-m", optarg, 2, 28);
            break;
        default:
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fft: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    if (m % 2) {
        fprintf(stderr,
                "fft: -m %d is odd: the six-step FFT needs a square matrix, pick an even m\n", m);
        return 1;
    }
    return 0;
}

long kern_size(void)
{
    return N;
}

const char *kern_extra(void)
{
    snprintf(extra, sizeof extra, "m=%d", m);
    return extra;
}

static cplx x_init(long j)
{
    cplx v = {2.0 * kern_hash01(0x20000000ull + 2 * (uint64_t)j) - 1.0,
              2.0 * kern_hash01(0x20000000ull + 2 * (uint64_t)j + 1) - 1.0};
    return v;
}

void kern_setup(void)
{
    N = 1L << m;
    n1 = 1L << (m / 2);
    x = kern_alloc((size_t)N * sizeof(cplx));
    y = kern_alloc((size_t)N * sizeof(cplx));
    sums = kern_alloc((size_t)kern_procs() * 4096);
}

static inline cplx mul(cplx a, cplx b)
{
    cplx r = {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
    return r;
}

/* In-place radix-2 FFT of one row of n1 points; w[k] = w_N^k (forward: exp(-2 pi i k / N)). */
static void row_fft(cplx *a, const cplx *w)
{
    for (long i = 1, j = 0; i < n1; i++) {
        long bit = n1 >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            cplx t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
    }
    for (long len = 2; len <= n1; len <<= 1) {
        long half = len >> 1, step = N / len;
        for (long s = 0; s < n1; s += len)
            for (long k = 0; k < half; k++) {
                cplx t = mul(a[s + k + half], w[k * step]);
                cplx u = a[s + k];
                a[s + k].re = u.re + t.re;
                a[s + k].im = u.im + t.im;
                a[s + k + half].re = u.re - t.re;
                a[s + k + half].im = u.im - t.im;
            }
    }
}

/* Rows [lo, hi) of dst = src^T, in tiles so both sides stay in cache. */
static void transpose(cplx *dst, const cplx *src, long lo, long hi)
{
    const long T = 16;
    for (long r0 = lo; r0 < hi; r0 += T)
        for (long c0 = 0; c0 < n1; c0 += T)
            for (long r = r0; r < r0 + T && r < hi; r++)
                for (long c = c0; c < c0 + T && c < n1; c++) dst[r * n1 + c] = src[c * n1 + r];
}

void kern_body(int me)
{
    int P = kern_procs();
    long lo, hi;
    kern_split(n1, P, me, &lo, &hi);
    /* Roots of unity, private to each process (computed outside the timed part). */
    cplx *w = malloc((size_t)N * sizeof *w);
    KERN_CHECK(w, "malloc of %ld roots of unity failed: pick a smaller -m", N);
    for (long k = 0; k < N; k++) {
        double a = -2.0 * M_PI * (double)k / (double)N;
        w[k].re = cos(a);
        w[k].im = sin(a);
    }
    /* Own rows of both arrays touched before the timer: no first-touch faults in it. */
    for (long j = lo * n1; j < hi * n1; j++) {
        x[j] = x_init(j);
        y[j].re = y[j].im = 0;
    }

    kern_timer_start();
    transpose(y, x, lo, hi);
    kern_barrier();
    for (long r = lo; r < hi; r++) {
        row_fft(y + r * n1, w);
        for (long c = 1; c < n1; c++) y[r * n1 + c] = mul(y[r * n1 + c], w[r * c]);
    }
    kern_barrier();
    transpose(x, y, lo, hi);
    kern_barrier();
    for (long r = lo; r < hi; r++) row_fft(x + r * n1, w);
    kern_barrier();
    transpose(y, x, lo, hi);
    kern_timer_stop();

    if (kern_inject && me == 0) y[0].re += 1.0;
    double s = 0;
    for (long j = lo * n1; j < hi * n1; j++) s += y[j].re * y[j].re + y[j].im * y[j].im;
    sums[(size_t)me * 512] = s;
    kern_barrier();
    if (me != 0) {
        free(w);
        return;
    }
    double got = 0, want = 0;
    for (int q = 0; q < P; q++) got += sums[(size_t)q * 512];
    for (long j = 0; j < N; j++) {
        cplx v = x_init(j);
        want += v.re * v.re + v.im * v.im;
    }
    want *= (double)N;
    KERN_CHECK(fabs(got - want) <= 1e-9 * want,
               "Parseval fails: sum |X|^2 = %.10g, N sum |x|^2 = %.10g: a row or transpose was "
               "lost or read stale",
               got, want);
    long ks[20 + 64];
    int nk = 0;
    ks[nk++] = 0;
    ks[nk++] = N - 1;
    for (int q = 0; q < P && q < 64; q++) {
        long qlo, qhi;
        kern_split(n1, P, q, &qlo, &qhi);
        ks[nk++] = qlo * n1 % N;
    }
    for (int i = 0; nk < 20 + (P < 64 ? P : 64) && i < 18; i++)
        ks[nk++] = (long)(kern_hash(0x30000000ull + (uint64_t)i) % (uint64_t)N);
    for (int i = 0; i < nk; i++) {
        long k = ks[i];
        cplx d = {0, 0};
        for (long j = 0; j < N; j++) {
            cplx t =
                mul(x_init(j), w[(long)(((unsigned long)j * (unsigned long)k) % (unsigned long)N)]);
            d.re += t.re;
            d.im += t.im;
        }
        double err = hypot(y[k].re - d.re, y[k].im - d.im);
        KERN_CHECK(err <= 1e-9 * (double)N,
                   "X[%ld] = (%.10g, %.10g) but the direct sum gives (%.10g, %.10g) (error %.3g)",
                   k, y[k].re, y[k].im, d.re, d.im, err);
    }
    free(w);
}

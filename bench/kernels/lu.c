/*
 * lu.c - SPLASH-2-style blocked LU factorisation without pivoting of an n x n column-major
 * matrix (bench/kernels; kern.h builds it SPMD on ufdsm and as plain pthreads). One source,
 * two kernels:
 *   LU_CONTIG=1  lu-contig: every B x B block is stored contiguously (column-major inside the
 *                block), and the blocks of each process are grouped together, in a share of
 *                the array homed on that process: a process writes only its own pages.
 *   LU_CONTIG=0  lu-noncontig: the blocks are strided sub-matrices of one column-major array
 *                (leading dimension n): a page holds pieces of several blocks of one block
 *                column, owned by different processes - write-write false sharing.
 * Blocks are owned round-robin in 2-D: with the processes as a pr x pc grid (pr the largest
 * divisor of P not above sqrt(P)), block (I, J) belongs to (I mod pr) + pr * (J mod pc).
 *
 * Step K of the right-looking factorisation: the owner of the diagonal block factors it; a
 * barrier; the owners of the blocks below it solve them against its U, the owners of the
 * blocks to its right against its L; a barrier; every process updates its blocks of the
 * trailing sub-matrix, A_IJ -= A_IK * A_KJ.
 *
 * The matrix: a(i, j) = hash(i*n + j) in [0, 1), plus n on the diagonal, so it is diagonally
 * dominant and needs no pivoting. Check (after the timed part): process 0 solves L U x = b
 * with b_i = sum_j a(i, j), regenerated from the generator; x must be all ones (max error
 * below 1e-8), so any lost or stale block update fails the run.
 *
 *   -n N   matrix order (default 512)   -b B   block size (default 16; must divide N)
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern.h"

#ifndef LU_CONTIG
#error "compile with -DLU_CONTIG=1 (lu-contig) or -DLU_CONTIG=0 (lu-noncontig)"
#endif

#if LU_CONTIG
const char *kern_name = "lu-contig";
#else
const char *kern_name = "lu-noncontig";
#endif
const char *kern_usage = "-n ORDER (512)  -b BLOCK (16, divides ORDER)";

static long n = 512, bs = 16, nb;
static int pr, pc;
static double *mat; /* the shared matrix */
#if LU_CONTIG
static size_t *blk_off; /* offset (in doubles) of block I + J*nb; private, same everywhere */
#endif
static char extra[64];

int kern_options(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "n:b:")) != -1) {
        switch (c) {
        case 'n':
            n = kern_arg_long("-n", optarg, 1, 16384);
            break;
        case 'b':
            bs = kern_arg_long("-b", optarg, 1, 1024);
            break;
        default:
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", kern_name, argv[optind]);
        return 1;
    }
    if (n % bs) {
        fprintf(stderr, "%s: the block size %ld does not divide the order %ld: pick -b that does\n",
                kern_name, bs, n);
        return 1;
    }
    return 0;
}

long kern_size(void)
{
    return n;
}

const char *kern_extra(void)
{
    snprintf(extra, sizeof extra, "block=%ld grid=%dx%d", bs, pr, pc);
    return extra;
}

static int owner(long I, long J)
{
    return (int)(I % pr) + pr * (int)(J % pc);
}

/* Block (I, J): its first element and the leading dimension of its columns. */
static double *block(long I, long J, long *ld)
{
#if LU_CONTIG
    *ld = bs;
    return mat + blk_off[I + J * nb];
#else
    *ld = n;
    return mat + I * bs + J * bs * n;
#endif
}

static double a_init(long i, long j)
{
    double v = kern_hash01(0x10000000ull + (uint64_t)i * (uint64_t)n + (uint64_t)j);
    return i == j ? v + (double)n : v;
}

void kern_setup(void)
{
    int P = kern_procs();
    pr = 1;
    for (int d = 1; d * d <= P; d++)
        if (P % d == 0) pr = d;
    pc = P / pr;
    nb = n / bs;
#if LU_CONTIG
    /* Blocks grouped by owner, each owner's group in an equal, page-aligned share: the block
     * placement of kern_alloc then homes every block on its owner. */
    long *cnt = calloc((size_t)P, sizeof *cnt);
    blk_off = malloc((size_t)(nb * nb) * sizeof *blk_off);
    KERN_CHECK(cnt && blk_off, "malloc of the block table (%ld blocks) failed", nb * nb);
    long most = 0;
    for (long J = 0; J < nb; J++)
        for (long I = 0; I < nb; I++) {
            long c = ++cnt[owner(I, J)];
            if (c > most) most = c;
        }
    size_t share = ((size_t)most * (size_t)(bs * bs) * sizeof(double) + 4095) / 4096 * 4096;
    memset(cnt, 0, (size_t)P * sizeof *cnt);
    for (long J = 0; J < nb; J++)
        for (long I = 0; I < nb; I++) {
            int o = owner(I, J);
            blk_off[I + J * nb] =
                (o * share) / sizeof(double) + (size_t)(cnt[o]++) * (size_t)(bs * bs);
        }
    free(cnt);
    mat = kern_alloc((size_t)P * share);
#else
    mat = kern_alloc((size_t)(n * n) * sizeof(double));
#endif
}

/* Factors the diagonal block in place: unit lower L below, U on and above the diagonal. */
static void factor(double *d, long ld)
{
    for (long k = 0; k < bs; k++) {
        double piv = d[k + k * ld];
        for (long i = k + 1; i < bs; i++) d[i + k * ld] /= piv;
        for (long j = k + 1; j < bs; j++) {
            double ukj = d[k + j * ld];
            for (long i = k + 1; i < bs; i++) d[i + j * ld] -= d[i + k * ld] * ukj;
        }
    }
}

/* A block below the diagonal: a = a U^-1. */
static void bdiv(double *a, long lda, const double *d, long ldd)
{
    for (long j = 0; j < bs; j++) {
        for (long k = 0; k < j; k++) {
            double ukj = d[k + j * ldd];
            for (long i = 0; i < bs; i++) a[i + j * lda] -= a[i + k * lda] * ukj;
        }
        double ujj = d[j + j * ldd];
        for (long i = 0; i < bs; i++) a[i + j * lda] /= ujj;
    }
}

/* A block right of the diagonal: a = L^-1 a (L unit lower). */
static void bmodd(double *a, long lda, const double *d, long ldd)
{
    for (long j = 0; j < bs; j++)
        for (long k = 0; k < bs; k++) {
            double akj = a[k + j * lda];
            for (long i = k + 1; i < bs; i++) a[i + j * lda] -= d[i + k * ldd] * akj;
        }
}

/* c -= a * b. */
static void bmod(double *c, long ldc, const double *a, long lda, const double *b, long ldb)
{
    for (long j = 0; j < bs; j++)
        for (long k = 0; k < bs; k++) {
            double bkj = b[k + j * ldb];
            for (long i = 0; i < bs; i++) c[i + j * ldc] -= a[i + k * lda] * bkj;
        }
}

static double get(long i, long j)
{
    long ld;
    const double *b = block(i / bs, j / bs, &ld);
    return b[(i % bs) + (j % bs) * ld];
}

static void check(void)
{
    double *x = malloc((size_t)n * sizeof *x);
    KERN_CHECK(x, "malloc of %ld doubles for the check failed", n);
    for (long i = 0; i < n; i++) {
        double s = 0;
        for (long j = 0; j < n; j++) s += a_init(i, j);
        x[i] = s;
    }
    /* L y = b (unit lower), then U x = y, column by column (the matrix is column-major). */
    for (long j = 0; j < n; j++)
        for (long i = j + 1; i < n; i++) x[i] -= get(i, j) * x[j];
    for (long j = n - 1; j >= 0; j--) {
        x[j] /= get(j, j);
        for (long i = 0; i < j; i++) x[i] -= get(i, j) * x[j];
    }
    double worst = 0;
    long at = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs(x[i] - 1.0);
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    KERN_CHECK(worst < 1e-8,
               "L U x = A 1 gives x[%ld] = %.12g, not 1 (max error %.3g): a block update was "
               "lost or read stale",
               at, x[at], worst);
    free(x);
}

void kern_body(int me)
{
    long ld, lda, ldb;
    for (long J = 0; J < nb; J++)
        for (long I = 0; I < nb; I++) {
            if (owner(I, J) != me) continue;
            double *b = block(I, J, &ld);
            for (long j = 0; j < bs; j++)
                for (long i = 0; i < bs; i++) b[i + j * ld] = a_init(I * bs + i, J * bs + j);
        }
    kern_timer_start();
    for (long K = 0; K < nb; K++) {
        double *d = block(K, K, &ld);
        if (owner(K, K) == me) factor(d, ld);
        kern_barrier();
        for (long I = K + 1; I < nb; I++)
            if (owner(I, K) == me) {
                double *a = block(I, K, &lda);
                bdiv(a, lda, d, ld);
            }
        for (long J = K + 1; J < nb; J++)
            if (owner(K, J) == me) {
                double *a = block(K, J, &lda);
                bmodd(a, lda, d, ld);
            }
        kern_barrier();
        for (long J = K + 1; J < nb; J++)
            for (long I = K + 1; I < nb; I++) {
                if (owner(I, J) != me) continue;
                double *c = block(I, J, &ld);
                const double *a = block(I, K, &lda), *b = block(K, J, &ldb);
                bmod(c, ld, a, lda, b, ldb);
            }
        /* No barrier here: step K+1 starts with the diagonal block's owner, which updated
         * that block itself, and its first barrier orders every update before any use. */
    }
    kern_timer_stop();
    if (kern_inject && me == 0) {
        double *b = block(0, 0, &ld); /* owner(0, 0) is process 0 */
        b[0] += 1.0;
    }
    kern_barrier();
    if (me == 0) check();
}

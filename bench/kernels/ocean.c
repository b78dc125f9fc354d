/*
 * ocean.c - a simplified Ocean (SPLASH-2): red-black successive over-relaxation on several
 * 2-D grids, with row blocks per process (bench/kernels; kern.h builds it SPMD on ufdsm and as
 * plain pthreads).
 *
 * G grids of n x n doubles (boundary included), each one shared allocation; the interior rows
 * 1 .. n-2 are cut into one contiguous block per process, so the pages that travel are the
 * boundary rows of neighbouring blocks. Each iteration: a red sweep over every grid (cells
 * with i+j even), a barrier, a black sweep, a barrier:
 *     u[i][j] = (1-w) u[i][j] + w/4 (u[i-1][j] + u[i+1][j] + u[i][j-1] + u[i][j+1] - f[i][j])
 * with f a fixed source term per grid. After the last iteration every process adds its
 * block's residual norm of each grid into a shared accumulator under that grid's lock (the
 * global reductions Ocean does under locks), and a barrier.
 *
 * Check (after the timed part): a red (black) cell depends only on black (red) ones, so the
 * result does not depend on how rows are split; process 0 recomputes grid 0 serially in
 * private memory with the same row kernels and compares it bit for bit, and checks each
 * grid's accumulated residual against its own sum over the final grids (1e-9 relative).
 *
 *   -n N   grid order including boundary (default 1026)   -g G   grids (default 4)
 *   -i I   iterations (default 20)
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern.h"

const char *kern_name = "ocean";
const char *kern_usage = "-n ORDER (1026)  -g GRIDS (4)  -i ITERATIONS (20)";

#define OMEGA 1.5

static long n = 1026;
static int ngrids = 4, iters = 20;
static double **grid, **src; /* private arrays of pointers to the shared grids */
static double *resid;        /* ngrids accumulators, one page-padded row each */
static char extra[48];

int kern_options(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "n:g:i:")) != -1) {
        switch (c) {
        case 'n':
            n = kern_arg_long("-n", optarg, 4, 16384);
            break;
        case 'g':
            ngrids = (int)kern_arg_long("-g", optarg, 1, 64);
            break;
        case 'i':
            iters = (int)kern_arg_long("-i", optarg, 1, 100000);
            break;
        default:
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ocean: unexpected argument '%s'\n", argv[optind]);
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
    snprintf(extra, sizeof extra, "grids=%d iterations=%d", ngrids, iters);
    return extra;
}

static double f_init(int g, long i, long j)
{
    return 1e-3 * kern_hash01(0x40000000ull + ((uint64_t)g << 40) + (uint64_t)i * (uint64_t)n +
                              (uint64_t)j);
}

void kern_setup(void)
{
    grid = malloc((size_t)ngrids * sizeof *grid);
    src = malloc((size_t)ngrids * sizeof *src);
    KERN_CHECK(grid && src, "malloc of %d grid pointers failed", ngrids);
    for (int g = 0; g < ngrids; g++) {
        grid[g] = kern_alloc((size_t)(n * n) * sizeof(double));
        src[g] = kern_alloc((size_t)(n * n) * sizeof(double));
    }
    resid = kern_alloc((size_t)ngrids * 4096);
    kern_locks(ngrids);
}

/* One colour of one row: the same instructions in the parallel and the serial computation,
 * so the check can compare bit for bit. */
__attribute__((noinline)) static void sweep_row(double *restrict u, const double *up,
                                                const double *down, const double *f, long i,
                                                int colour)
{
    for (long j = 1 + ((i + 1 + colour) & 1); j < n - 1; j += 2)
        u[j] = (1.0 - OMEGA) * u[j] + OMEGA * 0.25 * (up[j] + down[j] + u[j - 1] + u[j + 1] - f[j]);
}

__attribute__((noinline)) static double resid_row(const double *u, const double *up,
                                                  const double *down, const double *f)
{
    double s = 0;
    for (long j = 1; j < n - 1; j++) {
        double r = up[j] + down[j] + u[j - 1] + u[j + 1] - 4.0 * u[j] - f[j];
        s += r * r;
    }
    return s;
}

/* Rows [lo, hi) of one grid and source: boundary 1 on row 0, 0 elsewhere. */
static void init_rows(double *u, double *f, int g, long lo, long hi)
{
    for (long i = lo; i < hi; i++)
        for (long j = 0; j < n; j++) {
            u[i * n + j] = i == 0 ? 1.0 : 0.0;
            f[i * n + j] = f_init(g, i, j);
        }
}

static void check(void)
{
    double *u = malloc((size_t)(n * n) * sizeof *u), *f = malloc((size_t)(n * n) * sizeof *f);
    KERN_CHECK(u && f, "malloc of the serial reference grid (%ld x %ld) failed", n, n);
    init_rows(u, f, 0, 0, n);
    for (int it = 0; it < iters; it++)
        for (int colour = 0; colour < 2; colour++)
            for (long i = 1; i < n - 1; i++)
                sweep_row(u + i * n, u + (i - 1) * n, u + (i + 1) * n, f + i * n, i, colour);
    for (long k = 0; k < n * n; k++)
        if (memcmp(&u[k], &grid[0][k], sizeof u[k]))
            kern_fail("grid 0 cell (%ld, %ld) is %.17g, the serial computation gives %.17g: a "
                      "boundary row was read stale or a write was lost",
                      k / n, k % n, grid[0][k], u[k]);
    for (int g = 0; g < ngrids; g++) {
        double want = 0;
        for (long i = 1; i < n - 1; i++)
            want += resid_row(grid[g] + i * n, grid[g] + (i - 1) * n, grid[g] + (i + 1) * n,
                              src[g] + i * n);
        double got = resid[(size_t)g * 512];
        KERN_CHECK(fabs(got - want) <= 1e-9 * fabs(want) + 1e-300,
                   "grid %d: the residual accumulated under its lock is %.17g, the final grid's "
                   "is %.17g: a locked update was lost",
                   g, got, want);
    }
    free(u);
    free(f);
}

void kern_body(int me)
{
    int P = kern_procs();
    long lo, hi;
    kern_split(n - 2, P, me, &lo, &hi);
    lo += 1;
    hi += 1;
    /* Process 0 also initialises row 0, the last one row n-1. */
    long ilo = me == 0 ? 0 : lo, ihi = me == P - 1 ? n : hi;
    for (int g = 0; g < ngrids; g++) init_rows(grid[g], src[g], g, ilo, ihi);

    kern_timer_start();
    for (int it = 0; it < iters; it++)
        for (int colour = 0; colour < 2; colour++) {
            for (int g = 0; g < ngrids; g++) {
                double *u = grid[g], *f = src[g];
                for (long i = lo; i < hi; i++)
                    sweep_row(u + i * n, u + (i - 1) * n, u + (i + 1) * n, f + i * n, i, colour);
            }
            kern_barrier();
        }
    for (int g = 0; g < ngrids; g++) {
        double *u = grid[g], *f = src[g], s = 0;
        for (long i = lo; i < hi; i++)
            s += resid_row(u + i * n, u + (i - 1) * n, u + (i + 1) * n, f + i * n);
        kern_lock(g);
        resid[(size_t)g * 512] += s;
        kern_unlock(g);
    }
    kern_timer_stop();

    if (kern_inject && me == 0) grid[0][n + 1] += 1e-9; /* row 1 belongs to process 0 */
    kern_barrier();
    if (me == 0) check();
}

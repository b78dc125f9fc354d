/*
 * jacobi.c - workload (f2): 50 Jacobi iterations on a 1024 x 1024 grid in DSM memory, and its
 * serial reference on malloc'd memory.
 *
 * Grids u and v of N x N doubles including the boundary (N = 1024: a row is two pages). Row 0
 * is 1.0, all else 0. The interior rows 1..N-2 are split into P contiguous blocks (block r
 * starts at 1 + (N-2)*r/P); node r initialises its rows in both grids (node 0 also row 0,
 * node P-1 also row N-1); barrier. Then 50 iterations of
 *     v[i][j] = 0.25 * (u[i-1][j] + u[i+1][j] + u[i][j-1] + u[i][j+1])
 * over the node's rows and j in 1..N-2, a barrier, and a swap of u and v. The 50 iterations
 * with their barriers are timed; result = max over nodes, in ms.
 * Check (node 0, untimed): the sum of u is 4608.37395 to 1e-5 relative (for other sizes or
 * iteration counts: equal to the serial computation's sum).
 *
 * Placements (-p), as in matmul.c: default (one dsm_alloc per grid: block placement per
 * allocation, which for P = 2 and N = 1024 homes each node's rows on it), local (each node's
 * rows homed on it, explicitly), node0 (both grids homed on node 0).
 * -s: the serial reference without DSM: the same row kernel over rows 1..N-2, no barriers.
 *
 * Usage: jacobi [-p default|local|node0] [-n N] [-i ITERS] | jacobi -s [-n N] [-i ITERS]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "jacobi"

/* One row of the update, out of line so that the DSM and the serial runs execute the same
 * code. */
__attribute__((noinline)) static void relax_row(double *restrict out, const double *up,
                                                const double *mid, const double *down, int n)
{
    for (int j = 1; j < n - 1; j++) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
}

static void init_rows(double *g, int n, int lo, int hi)
{
    for (int i = lo; i < hi; i++)
        for (int j = 0; j < n; j++) g[(size_t)i * (size_t)n + j] = i == 0 ? 1.0 : 0.0;
}

/* iters sweeps over rows [lo, hi); returns the grid holding the result. */
static double *sweep(double *u, double *v, int n, int lo, int hi, int iters, int sync)
{
    for (int it = 0; it < iters; it++) {
        for (int i = lo; i < hi; i++) {
            size_t r = (size_t)i * (size_t)n;
            relax_row(v + r, u + r - n, u + r, u + r + n, n);
        }
        if (sync) dsm_barrier();
        double *t = u;
        u = v;
        v = t;
    }
    return u;
}

static double sum_of(const double *g, int n)
{
    double s = 0;
    for (size_t x = 0; x < (size_t)n * (size_t)n; x++) s += g[x];
    return s;
}

static double serial(int n, int iters, double *sum)
{
    size_t bytes = (size_t)n * (size_t)n * sizeof(double);
    double *u = malloc(bytes), *v = malloc(bytes);
    BENCH_CHECK(u && v, "out of memory");
    init_rows(u, n, 0, n);
    init_rows(v, n, 0, n);
    double t0 = bench_now_s();
    double *res = sweep(u, v, n, 1, n - 1, iters, 0);
    double t1 = bench_now_s();
    *sum = sum_of(res, n);
    free(u);
    free(v);
    return t1 - t0;
}

static void check_sum(double sum, int n, int iters, const char *variant)
{
    if (n == 1024 && iters == 50) {
        double rel = fabs(sum - 4608.37395) / 4608.37395;
        BENCH_CHECK(rel <= 1e-5, "%s: sum of u is %.6f, expected 4608.37395 (relative error %.2e)",
                    variant, sum, rel);
    } else {
        double ref;
        serial(n, iters, &ref);
        BENCH_CHECK(sum == ref, "%s: sum of u is %.10f, the serial computation gives %.10f",
                    variant, sum, ref);
    }
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [-p default|local|node0] [-n N] [-i ITERS] | %s -s [-n N] [-i ITERS]\n",
            prog, prog);
    exit(2);
}

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    int n = 1024, iters = 50, is_serial = 0, opt;
    const char *place = "default";
    while ((opt = getopt(argc, argv, "p:n:i:s")) != -1) {
        if (opt == 'p' && bench_place_ok(optarg))
            place = optarg;
        else if (opt == 'n')
            n = (int)bench_arg_long("-n", optarg, 3, 16384);
        else if (opt == 'i')
            iters = (int)bench_arg_long("-i", optarg, 0, 1000000);
        else if (opt == 's')
            is_serial = 1;
        else
            usage(argv[0]);
    }
    if (is_serial) {
        double sum, secs = serial(n, iters, &sum);
        check_sum(sum, n, iters, "serial");
        bench_line("RESULT name=%s variant=serial nodes=1 value=%.3f unit=ms sum=%.6f n=%d "
                   "iters=%d",
                   NAME, secs * 1e3, sum, n, iters);
        return 0;
    }

    bench_begin(argv[0]);
    BENCH_CHECK(bench_nodes <= 256 && bench_nodes <= n - 2, "too many nodes for N = %d", n);
    /* Interior block of node p: [blk[p], blk[p+1]); rows a node initialises (and, with
     * -p local, homes): [own[p], own[p+1]) with row 0 added to node 0 and N-1 to node P-1. */
    size_t blk[258], own[258];
    for (int p = 0; p <= bench_nodes; p++) {
        blk[p] = 1 + (size_t)(n - 2) * (size_t)p / (size_t)bench_nodes;
        own[p] = blk[p];
    }
    own[0] = 0;
    own[bench_nodes] = (size_t)n;
    size_t row = (size_t)n * sizeof(double);
    double *grid[2];
    for (int a = 0; a < 2; a++) grid[a] = bench_alloc_app(place, row, (size_t)n, own);
    bench_reduce_init();
    int lo = (int)own[bench_rank], hi = (int)own[bench_rank + 1];
    int local_rows = 0;
    for (int i = lo; i < hi; i++)
        local_rows += dsm_home(grid[0] + (size_t)i * (size_t)n) == bench_rank;

    init_rows(grid[0], n, lo, hi);
    init_rows(grid[1], n, lo, hi);
    dsm_barrier();

    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    double t0 = bench_now_s();
    double *u =
        sweep(grid[0], grid[1], n, (int)blk[bench_rank], (int)blk[bench_rank + 1], iters, 1);
    double t1 = bench_now_s();
    bench_stats(&after);
    double secs = bench_max(t1 - t0);
    double frac_local = bench_sum(local_rows) / n;

    if (bench_rank == 0) {
        double sum = sum_of(u, n);
        check_sum(sum, n, iters, place);
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=ms sum=%.6f n=%d "
                   "iters=%d rows_homed_locally=%.3f",
                   NAME, place, bench_nodes, secs * 1e3, sum, n, iters, frac_local);
    }
    dsm_barrier();
    bench_stats_print(NAME, place, &before, &after);
    bench_end();
    return 0;
}

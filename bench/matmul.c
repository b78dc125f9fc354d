/*
 * matmul.c - workload (f1): a 512 x 512 matrix multiply on DSM memory, and its serial
 * reference on malloc'd memory.
 *
 * Three collective arrays A, B, C of N x N doubles, row-major (N = 512: a row is one page).
 * Node r owns rows [r*N/P, (r+1)*N/P). Init (timed apart, reported as init_ms): for its rows i
 * and all k, A[i][k] = ((i*N+k) % 7) * 0.5 and B[i][k] = ((i*N+k) % 5) * 0.25. Barrier.
 * Compute (timed, with the closing barrier): for each own row i, C[i][*] = 0, then for k in
 * 0..N-1, for j in 0..N-1: C[i][j] += A[i][k] * B[k][j]. Result = max over nodes, in ms.
 * Check (node 0, untimed): the sum of C is 1.006625e+08 (for N = 512, to the 7 digits given;
 * for another N, equal to the serial computation's sum).
 *
 * Placements (-p):
 *   default  one dsm_alloc per array (ufdsm's default: block placement per allocation; with
 *            P = 2 and N = 512 this homes every node's rows on it, the same as "local")
 *   local    each node's rows homed on it (bench_alloc_rows: one DSM_PLACE_NODE piece per node)
 *   node0    everything homed on node 0 (what a DSM whose default cuts the *whole* global
 *            space into per-node blocks does to small arrays, e.g. the peer's default)
 * -s: the serial reference, no DSM (run it without dsmrun): the same loops and the same
 *     out-of-line row kernel on malloc'd memory.
 *
 * Usage: matmul [-p default|local|node0] [-n N] | matmul -s [-n N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NAME "matmul"

/* One row of C. Out of line so that the DSM and the serial runs execute the same code. */
__attribute__((noinline)) static void mm_row(double *restrict c, const double *restrict a,
                                             const double *restrict b, int n)
{
    for (int j = 0; j < n; j++) c[j] = 0;
    for (int k = 0; k < n; k++) {
        double aik = a[k];
        const double *restrict bk = b + (size_t)k * (size_t)n;
        for (int j = 0; j < n; j++) c[j] += aik * bk[j];
    }
}

static void init_rows(double *A, double *B, int n, int lo, int hi)
{
    for (int i = lo; i < hi; i++)
        for (int k = 0; k < n; k++) {
            long x = (long)i * n + k;
            A[x] = (double)(x % 7) * 0.5;
            B[x] = (double)(x % 5) * 0.25;
        }
}

static double sum_of(const double *C, int n)
{
    double s = 0;
    for (size_t x = 0; x < (size_t)n * (size_t)n; x++) s += C[x];
    return s;
}

/* The serial computation: returns the compute time in seconds, the sum in *sum. */
static double serial(int n, double *sum, double *init_s)
{
    size_t bytes = (size_t)n * (size_t)n * sizeof(double);
    double *A = malloc(bytes), *B = malloc(bytes), *C = malloc(bytes);
    BENCH_CHECK(A && B && C, "out of memory");
    double t0 = bench_now_s();
    init_rows(A, B, n, 0, n);
    /* C is left untouched, as in the DSM run, where C's pages are first touched by the
     * compute loop too: "the same loops", including their first-touch page faults. */
    double t1 = bench_now_s();
    for (int i = 0; i < n; i++) mm_row(C + (size_t)i * (size_t)n, A + (size_t)i * (size_t)n, B, n);
    double t2 = bench_now_s();
    *sum = sum_of(C, n);
    *init_s = t1 - t0;
    free(A);
    free(B);
    free(C);
    return t2 - t1;
}

static void check_sum(double sum, int n, const char *variant)
{
    if (n == 512) {
        char got[32];
        snprintf(got, sizeof got, "%.6e", sum);
        BENCH_CHECK(!strcmp(got, "1.006625e+08"),
                    "%s: sum of C is %.10e (%s), expected 1.006625e+08", variant, sum, got);
    } else {
        double ref, init_s;
        serial(n, &ref, &init_s);
        BENCH_CHECK(sum == ref, "%s: sum of C is %.10e, the serial computation gives %.10e",
                    variant, sum, ref);
    }
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [-p default|local|node0] [-n N] | %s -s [-n N]\n", prog, prog);
    exit(2);
}

int main(int argc, char **argv)
{
    bench_set_prog(argv[0]);
    int n = 512, is_serial = 0, opt;
    const char *place = "default";
    while ((opt = getopt(argc, argv, "p:n:s")) != -1) {
        if (opt == 'p' && bench_place_ok(optarg))
            place = optarg;
        else if (opt == 'n')
            n = (int)bench_arg_long("-n", optarg, 2, 8192);
        else if (opt == 's')
            is_serial = 1;
        else
            usage(argv[0]);
    }
    if (is_serial) {
        double sum, init_s, secs = serial(n, &sum, &init_s);
        check_sum(sum, n, "serial");
        bench_line("RESULT name=%s variant=serial nodes=1 value=%.3f unit=ms init_ms=%.3f "
                   "sum=%.10e n=%d",
                   NAME, secs * 1e3, init_s * 1e3, sum, n);
        return 0;
    }

    bench_begin(argv[0]);
    size_t row = (size_t)n * sizeof(double);
    size_t first[257];
    BENCH_CHECK(bench_nodes <= 256, "too many nodes");
    for (int p = 0; p <= bench_nodes; p++) first[p] = (size_t)n * (size_t)p / (size_t)bench_nodes;
    double *arr[3];
    for (int a = 0; a < 3; a++) arr[a] = bench_alloc_app(place, row, (size_t)n, first);
    double *A = arr[0], *B = arr[1], *C = arr[2];
    bench_reduce_init();
    int lo = (int)first[bench_rank], hi = (int)first[bench_rank + 1];

    /* How many of this node's rows of C are homed on it: says what "default" really did. */
    int local_rows = 0;
    for (int i = lo; i < hi; i++) local_rows += dsm_home(C + (size_t)i * (size_t)n) == bench_rank;

    double t0 = bench_now_s();
    init_rows(A, B, n, lo, hi);
    double t1 = bench_now_s();
    dsm_barrier();
    double init_s = bench_max(t1 - t0);

    dsm_stats_t before, after;
    bench_stats(&before);
    dsm_barrier();
    t0 = bench_now_s();
    for (int i = lo; i < hi; i++)
        mm_row(C + (size_t)i * (size_t)n, A + (size_t)i * (size_t)n, B, n);
    dsm_barrier();
    t1 = bench_now_s();
    bench_stats(&after);
    double secs = bench_max(t1 - t0);
    double frac_local = bench_sum(local_rows) / n;

    if (bench_rank == 0) {
        double sum = sum_of(C, n);
        check_sum(sum, n, place);
        bench_line("RESULT name=%s variant=%s nodes=%d value=%.3f unit=ms init_ms=%.3f "
                   "sum=%.10e n=%d rows_homed_locally=%.3f",
                   NAME, place, bench_nodes, secs * 1e3, init_s * 1e3, sum, n, frac_local);
    }
    dsm_barrier();
    bench_stats_print(NAME, place, &before, &after);
    bench_end();
    return 0;
}

/*
 * jacobi_check.c - a real computation on DSM memory gives exactly the serial result.
 *
 * The Jacobi relaxation of examples/jacobi.c, smaller: an N x N grid of doubles (boundary
 * included) with row 0 = 1.0 and everything else 0, two grids u and v, the interior rows
 * 1..N-2 cut into one contiguous block per node. Each node initialises its rows (node 0 also
 * row 0, node P-1 also row N-1) in both grids; then ITERS times: every node computes
 * v[i][j] = 0.25 * (u[i-1][j] + u[i+1][j] + u[i][j-1] + u[i][j+1]) over its rows, barrier,
 * swap. Every node then computes the same thing serially in private memory and compares the
 * grids with memcmp: bit for bit, since both run the very same (non-inlined) row kernel.
 * Two placements: one dsm_alloc per grid (default block placement, so row blocks and homes do
 * not line up and the pages at block boundaries are shared by two nodes), and one
 * dsm_alloc_placed(DSM_PLACE_NODE) per node and grid, homing each node's rows on it. Two
 * sizes: 256 (a row is half a page) and 130 (rows straddle page boundaries).
 *
 * What a broken DSM does to it: each iteration every node reads its neighbours' boundary rows
 * of the previous iteration. A stale copy (missing invalidation), a lost write at a page
 * shared by two row blocks, or a barrier that does not order the iterations changes some
 * cells, and the error spreads: memcmp reports the first differing cell.
 *
 * Usage: jacobi_check [ITERS]
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mn.h"

/* The row kernel, out of line so that the DSM and the serial computation execute exactly the
 * same instructions (no difference in vectorisation or contraction between two inlined
 * copies): bit-identical results are then a property of the data alone. */
__attribute__((noinline)) static void relax_row(double *restrict out, const double *up,
                                                const double *mid, const double *down, int n)
{
    for (int j = 1; j < n - 1; j++) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
}

struct grid {
    double **row;    /* row pointers (local memory; the rows are DSM memory) */
    void *alloc[64]; /* the DSM allocations, freed in this order on every node */
    int nalloc;
};

static int block_lo(int n, int p)
{
    return 1 + (int)((long)(n - 2) * p / mn_nodes);
}

/* Rows a node initialises: its interior block, plus row 0 (node 0) and row n-1 (node P-1). */
static int own_first(int n, int p)
{
    return p == 0 ? 0 : block_lo(n, p);
}

static int own_last(int n, int p)
{
    return p == mn_nodes - 1 ? n : block_lo(n, p + 1);
}

static void grid_alloc(struct grid *g, int n, int placed)
{
    g->row = malloc((size_t)n * sizeof *g->row);
    CHECK(g->row, "malloc");
    g->nalloc = 0;
    if (!placed) {
        double *a = MN_ALLOC((size_t)n * (size_t)n * sizeof(double));
        g->alloc[g->nalloc++] = a;
        for (int i = 0; i < n; i++) g->row[i] = a + (size_t)i * (size_t)n;
        return;
    }
    CHECK(mn_nodes <= 64, "at most 64 nodes");
    for (int p = 0; p < mn_nodes; p++) {
        int first = own_first(n, p), last = own_last(n, p);
        if (last <= first) continue;
        double *a = MN_ALLOC_PLACED((size_t)(last - first) * (size_t)n * sizeof(double),
                                    DSM_PLACE_NODE, (size_t)p);
        g->alloc[g->nalloc++] = a;
        for (int i = first; i < last; i++) {
            g->row[i] = a + (size_t)(i - first) * (size_t)n;
            CHECK(dsm_home(g->row[i]) == p && dsm_home(&g->row[i][n - 1]) == p,
                  "row %d of node %d's block is homed on %d", i, p, dsm_home(g->row[i]));
        }
    }
}

static void grid_free(struct grid *g)
{
    for (int k = 0; k < g->nalloc; k++) dsm_free(g->alloc[k]);
    free(g->row);
}

static void init_rows(double *const *row, int n, int first, int last)
{
    for (int i = first; i < last; i++)
        for (int j = 0; j < n; j++) row[i][j] = i == 0 ? 1.0 : 0.0;
}

static void check(int n, int iters, int placed)
{
    const char *how = placed ? "rows homed locally" : "default placement";
    struct grid gu, gv;
    grid_alloc(&gu, n, placed);
    grid_alloc(&gv, n, placed);
    double **u = gu.row, **v = gv.row;
    const int me = mn_rank;
    init_rows(u, n, own_first(n, me), own_last(n, me));
    init_rows(v, n, own_first(n, me), own_last(n, me));
    dsm_barrier();
    const int lo = block_lo(n, me), hi = block_lo(n, me + 1);
    for (int it = 0; it < iters; it++) {
        for (int i = lo; i < hi; i++) relax_row(v[i], u[i - 1], u[i], u[i + 1], n);
        dsm_barrier();
        double **t = u;
        u = v;
        v = t;
    }

    /* The serial computation, in private memory. */
    double **su = malloc((size_t)n * sizeof *su), **sv = malloc((size_t)n * sizeof *sv);
    double *mu = calloc((size_t)n * (size_t)n, sizeof(double));
    double *mv = calloc((size_t)n * (size_t)n, sizeof(double));
    CHECK(su && sv && mu && mv, "malloc");
    for (int i = 0; i < n; i++) {
        su[i] = mu + (size_t)i * (size_t)n;
        sv[i] = mv + (size_t)i * (size_t)n;
    }
    init_rows(su, n, 0, n);
    init_rows(sv, n, 0, n);
    for (int it = 0; it < iters; it++) {
        for (int i = 1; i < n - 1; i++) relax_row(sv[i], su[i - 1], su[i], su[i + 1], n);
        double **t = su;
        su = sv;
        sv = t;
    }
    double sum = 0, ssum = 0;
    for (int i = 0; i < n; i++) {
        if (memcmp(u[i], su[i], (size_t)n * sizeof(double))) {
            int j = 0;
            while (j < n && !memcmp(&u[i][j], &su[i][j], sizeof(double))) j++;
            CHECK(0,
                  "%dx%d, %s: cell [%d][%d] (page homed on node %d) is %.17g, the serial "
                  "computation gives %.17g",
                  n, n, how, i, j, dsm_home(&u[i][j]), u[i][j], su[i][j]);
        }
        for (int j = 0; j < n; j++) {
            sum += u[i][j];
            ssum += su[i][j];
        }
    }
    CHECK(sum == ssum && isfinite(sum) && sum > n, "sums differ: %.17g vs %.17g", sum, ssum);
    if (me == 0)
        mn_say("%dx%d, %d iterations, %s: identical to the serial result (sum %.6f)", n, n, iters,
               how, sum);
    free(mu);
    free(mv);
    free(su);
    free(sv);
    dsm_barrier();
    grid_free(&gv);
    grid_free(&gu);
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 30, 1);
    mn_begin(1);
    double t0 = mn_now();
    for (int placed = 0; placed < 2; placed++) {
        check(256, (int)a.iters, placed);
        check(130, (int)a.iters, placed);
    }
    if (mn_rank == 0) mn_say("%.2f s", mn_now() - t0);
    mn_end("jacobi_check");
    return 0;
}

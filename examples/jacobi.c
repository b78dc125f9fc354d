/*
 * jacobi.c - Jacobi relaxation on a grid in DSM memory, checked against the serial result.
 *
 * The main example of ufdsm: an ordinary shared-memory stencil code, with the grid in the
 * global space instead of malloc'd memory, run on several nodes and compared bit for bit with
 * the same computation done serially on one node.
 *
 *   build/dsmrun -n 2 build/jacobi                  1024x1024, 50 iterations, rows homed locally
 *   build/dsmrun -n 4 build/jacobi -n 2048 -i 100 -p default
 *
 * The grid is N x N doubles including the boundary: row 0 is 1.0, everything else 0 (the
 * boundary stays fixed). Two grids, u and v. The interior rows 1..N-2 are cut into one
 * contiguous block per node. With -p local (the default) each node's rows live in an
 * allocation homed on that node (dsm_alloc_placed(..., DSM_PLACE_NODE, node)), so the only
 * pages that travel are the boundary rows of neighbouring blocks; with -p default each grid is
 * one dsm_alloc (block placement, which does not line up with the row blocks). Each node
 * initialises its rows of both grids (node 0 also row 0, the last node also row N-1); then
 * every iteration computes
 *     v[i][j] = 0.25 * (u[i-1][j] + u[i+1][j] + u[i][j-1] + u[i][j+1])
 * over the node's rows and columns 1..N-2, a barrier, and u and v swap roles.
 *
 * Node 0 then recomputes everything serially in private memory with the same row kernel,
 * compares the grids byte for byte and prints the sum of the final grid and both times. Exit
 * status 0 when identical, 1 (after printing the first differing cell) otherwise; dsmrun
 * exits with the worst status of the nodes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"

struct grid {
    double **row; /* row pointers in local memory, identical on every node */
    void **alloc; /* the DSM allocations behind the rows */
    int nalloc;
};

static int nodes, rank;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One row of the update. Out of line, so that the distributed and the serial computation run
 * exactly the same instructions and their results can be compared bit for bit. */
__attribute__((noinline)) static void relax_row(double *restrict out, const double *up,
                                                const double *mid, const double *down, int n)
{
    for (int j = 1; j < n - 1; j++) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
}

/* First interior row of node p's block (block_lo(n, nodes) == n - 1). */
static int block_lo(int n, int p)
{
    return 1 + (int)((long)(n - 2) * p / nodes);
}

/* The rows node p initialises (and, with -p local, homes): [own_first, own_last). */
static int own_first(int n, int p)
{
    return p == 0 ? 0 : block_lo(n, p);
}

static int own_last(int n, int p)
{
    return p == nodes - 1 ? n : block_lo(n, p + 1);
}

static void die(const char *what)
{
    fprintf(stderr, "jacobi: node %d: %s\n", rank, what);
    exit(2);
}

/* Collective: every node allocates the same things in the same order. */
static void grid_alloc(struct grid *g, int n, int local)
{
    g->row = malloc((size_t)n * sizeof *g->row);
    g->alloc = malloc((size_t)nodes * sizeof *g->alloc);
    if (!g->row || !g->alloc) die("out of local memory");
    g->nalloc = 0;
    if (!local) {
        double *a = dsm_alloc((size_t)n * (size_t)n * sizeof(double));
        if (!a) die("dsm_alloc failed: the grid does not fit in the global memory (DSM_MEMORY)");
        g->alloc[g->nalloc++] = a;
        for (int i = 0; i < n; i++) g->row[i] = a + (size_t)i * (size_t)n;
        return;
    }
    for (int p = 0; p < nodes; p++) {
        int first = own_first(n, p), last = own_last(n, p);
        if (last <= first) continue; /* more nodes than rows */
        double *a = dsm_alloc_placed((size_t)(last - first) * (size_t)n * sizeof(double),
                                     DSM_PLACE_NODE, (size_t)p);
        if (!a) die("dsm_alloc_placed failed: the grid does not fit in the global memory");
        g->alloc[g->nalloc++] = a;
        for (int i = first; i < last; i++) g->row[i] = a + (size_t)(i - first) * (size_t)n;
    }
}

static void init_rows(double *const *row, int n, int first, int last)
{
    for (int i = first; i < last; i++)
        for (int j = 0; j < n; j++) row[i][j] = i == 0 ? 1.0 : 0.0;
}

/* ITERS sweeps over rows [lo, hi); returns the grid holding the result. With sync, a barrier
 * after each sweep (the distributed run). */
static double **sweep(double **u, double **v, int n, int lo, int hi, int iters, int sync)
{
    for (int it = 0; it < iters; it++) {
        for (int i = lo; i < hi; i++) relax_row(v[i], u[i - 1], u[i], u[i + 1], n);
        if (sync) dsm_barrier();
        double **t = u;
        u = v;
        v = t;
    }
    return u;
}

static double grid_sum(double *const *g, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) s += g[i][j];
    return s;
}

static void usage(const char *prog)
{
    const char *r = getenv("DSM_RANK"); /* under dsmrun, one copy of the text is enough */
    if (r && strcmp(r, "0")) exit(2);
    fprintf(stderr,
            "usage: %s [-n N] [-i ITERS] [-p local|default]\n"
            "  -n N      grid size including the boundary (default 1024, at least 3)\n"
            "  -i ITERS  iterations (default 50)\n"
            "  -p local  each node's rows homed on that node (default)\n"
            "  -p default  one dsm_alloc per grid (block placement)\n"
            "Run it with dsmrun, e.g. build/dsmrun -n 2 build/jacobi\n",
            prog);
    exit(2);
}

int main(int argc, char **argv)
{
    int n = 1024, iters = 50, local = 1, opt;
    const char *r = getenv("DSM_RANK");
    if (r && strcmp(r, "0")) opterr = 0; /* under dsmrun, node 0 reports bad options */
    while ((opt = getopt(argc, argv, "n:i:p:h")) != -1) {
        char *end;
        switch (opt) {
        case 'n':
            n = (int)strtol(optarg, &end, 10);
            if (*end || n < 3 || n > 65536) usage(argv[0]);
            break;
        case 'i':
            iters = (int)strtol(optarg, &end, 10);
            if (*end || iters < 0) usage(argv[0]);
            break;
        case 'p':
            if (!strcmp(optarg, "local"))
                local = 1;
            else if (!strcmp(optarg, "default"))
                local = 0;
            else
                usage(argv[0]);
            break;
        default:
            usage(argv[0]);
        }
    }
    if (optind != argc) usage(argv[0]);

    int rc = dsm_init(NULL);
    if (rc) {
        fprintf(stderr,
                "jacobi: dsm_init failed: %s (start it with dsmrun, e.g. build/dsmrun "
                "-n 2 build/jacobi)\n",
                dsm_strerror(rc));
        return 2;
    }
    rank = dsm_rank();
    nodes = dsm_nodes();

    struct grid gu, gv;
    grid_alloc(&gu, n, local);
    grid_alloc(&gv, n, local);
    init_rows(gu.row, n, own_first(n, rank), own_last(n, rank));
    init_rows(gv.row, n, own_first(n, rank), own_last(n, rank));
    dsm_barrier();

    double t0 = now();
    double **u = sweep(gu.row, gv.row, n, block_lo(n, rank), block_lo(n, rank + 1), iters, 1);
    double t_dsm = now() - t0;

    int status = 0;
    if (rank == 0) {
        /* The serial reference, on ordinary memory, with the same kernel. */
        double *mu = calloc((size_t)n * (size_t)n, sizeof(double));
        double *mv = calloc((size_t)n * (size_t)n, sizeof(double));
        double **su = malloc((size_t)n * sizeof *su), **sv = malloc((size_t)n * sizeof *sv);
        if (!mu || !mv || !su || !sv) die("out of local memory for the serial reference");
        for (int i = 0; i < n; i++) {
            su[i] = mu + (size_t)i * (size_t)n;
            sv[i] = mv + (size_t)i * (size_t)n;
        }
        init_rows(su, n, 0, n);
        init_rows(sv, n, 0, n);
        t0 = now();
        double **s = sweep(su, sv, n, 1, n - 1, iters, 0);
        double t_serial = now() - t0;

        double sum = grid_sum(u, n), ssum = grid_sum(s, n);
        printf("jacobi: %d node%s, %dx%d, %d iterations%s: sum %.6f (serial %.6f)", nodes,
               nodes == 1 ? "" : "s", n, n, iters, local ? "" : " (default placement)", sum, ssum);
        int bad_i = -1, bad_j = -1;
        for (int i = 0; i < n && bad_i < 0; i++) {
            if (!memcmp(u[i], s[i], (size_t)n * sizeof(double))) continue;
            for (int j = 0; j < n; j++)
                if (memcmp(&u[i][j], &s[i][j], sizeof(double))) {
                    bad_i = i;
                    bad_j = j;
                    break;
                }
        }
        if (bad_i < 0) {
            printf(" \xe2\x80\x94 identical to the serial result; %.1f ms (serial %.1f ms)\n",
                   t_dsm * 1e3, t_serial * 1e3);
        } else {
            printf(" \xe2\x80\x94 DIFFERENT from the serial result: first at [%d][%d] = %.17g, "
                   "serial %.17g (page homed on node %d)\n",
                   bad_i, bad_j, u[bad_i][bad_j], s[bad_i][bad_j], dsm_home(&u[bad_i][bad_j]));
            status = 1;
        }
        fflush(stdout);
        free(mu);
        free(mv);
        free(su);
        free(sv);
    }
    free(gu.row);
    free(gu.alloc);
    free(gv.row);
    free(gv.alloc);
    dsm_finalize();
    return status;
}

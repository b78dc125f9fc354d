/*
 * md.c - an irregular kernel: 2-D Lennard-Jones molecular dynamics with cell lists, forces
 * accumulated into a shared array under one lock per cell (bench/kernels; kern.h builds it
 * SPMD on ufdsm and as plain pthreads).
 *
 * Np = k*k particles start on a jittered lattice in a periodic square box, at rest. Process p
 * owns particles [Np*p/P, Np*(p+1)/P) (their positions and velocities: a contiguous share,
 * homed on it in the DSM build). Each step:
 *   A. every process bins all positions into C x C cells (private cell lists, cells at least
 *      the cut-off 2.5 wide), computes the force of each pair (i, j > i) with i its own and j
 *      in i's or a neighbouring cell into a private buffer, then adds the buffer into the
 *      shared force array cell by cell, holding that cell's lock: the writes into force[]
 *      come from every process, page by page, in an order only the locks fix;
 *   a barrier;
 *   B. every process moves its own particles (v += f dt, x += v dt, wrapped) and zeroes their
 *      force; a barrier.
 *
 * Check (after the timed part): process 0 runs the same steps serially in private memory;
 * every position must agree within 1e-9 (only the order of the force additions differs), and
 * the total momentum must stay zero (Newton's third law; 1e-9 per particle).
 *
 *   -k K   particles per lattice side (default 96: 9216 particles)   -s S   steps (default 5)
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern.h"

const char *kern_name = "md";
const char *kern_usage = "-k PARTICLES_PER_SIDE (96)  -s STEPS (5)";

#define SPACING 1.1
#define CUTOFF  2.5
#define DT      0.002

static long side = 96, np;
static int steps = 5, ncell1; /* cells per side */
static double box, cellw;
static double *pos, *vel, *force; /* shared, 2 doubles per particle */
static char extra[48];

int kern_options(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "k:s:")) != -1) {
        switch (c) {
        case 'k':
            side = kern_arg_long("-k", optarg, 8, 4096);
            break;
        case 's':
            steps = (int)kern_arg_long("-s", optarg, 1, 100000);
            break;
        default:
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "md: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    return 0;
}

long kern_size(void)
{
    return np;
}

const char *kern_extra(void)
{
    snprintf(extra, sizeof extra, "steps=%d cells=%dx%d", steps, ncell1, ncell1);
    return extra;
}

void kern_setup(void)
{
    np = side * side;
    box = SPACING * (double)side;
    ncell1 = (int)floor(box / CUTOFF);
    KERN_CHECK(ncell1 >= 3,
               "a box of %ld particles per side has fewer than 3 cells per side: "
               "use -k 8 or more",
               side);
    cellw = box / ncell1;
    pos = kern_alloc((size_t)np * 2 * sizeof(double));
    vel = kern_alloc((size_t)np * 2 * sizeof(double));
    force = kern_alloc((size_t)np * 2 * sizeof(double));
    kern_locks(ncell1 * ncell1);
}

static void init_particle(long i, double *p)
{
    long a = i % side, b = i / side;
    p[0] = SPACING * ((double)a + 0.5) + 0.1 * (kern_hash01(0x50000000ull + 2 * (uint64_t)i) - 0.5);
    p[1] = SPACING * ((double)b + 0.5) +
           0.1 * (kern_hash01(0x50000000ull + 2 * (uint64_t)i + 1) - 0.5);
}

/* Private cell lists over all particles. */
struct cells {
    long *head, *next;
    int *cell;
};

static void cells_alloc(struct cells *c)
{
    c->head = malloc((size_t)ncell1 * (size_t)ncell1 * sizeof *c->head);
    c->next = malloc((size_t)np * sizeof *c->next);
    c->cell = malloc((size_t)np * sizeof *c->cell);
    KERN_CHECK(c->head && c->next && c->cell, "malloc of cell lists for %ld particles failed", np);
}

static void cells_free(struct cells *c)
{
    free(c->head);
    free(c->next);
    free(c->cell);
}

static int coord_cell(double v)
{
    int k = (int)(v / cellw);
    return k < 0 ? 0 : k >= ncell1 ? ncell1 - 1 : k;
}

/* Bins the particles; built in reverse so every list is in increasing particle order. */
static void cells_build(struct cells *c, const double *p)
{
    for (long k = 0; k < (long)ncell1 * ncell1; k++) c->head[k] = -1;
    for (long i = np - 1; i >= 0; i--) {
        int k = coord_cell(p[2 * i]) + ncell1 * coord_cell(p[2 * i + 1]);
        c->cell[i] = k;
        c->next[i] = c->head[k];
        c->head[k] = i;
    }
}

static double wrap_d(double d)
{
    if (d > 0.5 * box) return d - box;
    if (d < -0.5 * box) return d + box;
    return d;
}

/* Forces of the pairs (i, j > i), i in [lo, hi), into f (2 per particle, zeroed by the
 * caller); marks every cell whose particles got a contribution in touched[]. */
static void pair_forces(const struct cells *c, const double *p, long lo, long hi, double *f,
                        char *touched)
{
    for (long i = lo; i < hi; i++) {
        int ci = c->cell[i], cx = ci % ncell1, cy = ci / ncell1;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int k = (cx + dx + ncell1) % ncell1 + ncell1 * ((cy + dy + ncell1) % ncell1);
                for (long j = c->head[k]; j >= 0; j = c->next[j]) {
                    if (j <= i) continue;
                    double rx = wrap_d(p[2 * i] - p[2 * j]),
                           ry = wrap_d(p[2 * i + 1] - p[2 * j + 1]);
                    double r2 = rx * rx + ry * ry;
                    if (r2 >= CUTOFF * CUTOFF) continue;
                    double s2 = 1.0 / r2, s6 = s2 * s2 * s2;
                    double g = 24.0 * s2 * s6 * (2.0 * s6 - 1.0); /* F = g r */
                    f[2 * i] += g * rx;
                    f[2 * i + 1] += g * ry;
                    f[2 * j] -= g * rx;
                    f[2 * j + 1] -= g * ry;
                    touched[k] = 1;
                }
            }
        touched[ci] = 1;
    }
}

static void move(double *p, double *v, double *f, long lo, long hi)
{
    for (long i = lo; i < hi; i++)
        for (int d = 0; d < 2; d++) {
            v[2 * i + d] += f[2 * i + d] * DT;
            double x = p[2 * i + d] + v[2 * i + d] * DT;
            if (x >= box) x -= box;
            if (x < 0) x += box;
            p[2 * i + d] = x;
            f[2 * i + d] = 0;
        }
}

static void check(void)
{
    size_t bytes = (size_t)np * 2 * sizeof(double);
    double *p = malloc(bytes), *v = calloc(1, bytes), *f = calloc(1, bytes);
    char *touched = calloc((size_t)ncell1 * ncell1, 1);
    struct cells c;
    KERN_CHECK(p && v && f && touched, "malloc of the serial reference (%ld particles) failed", np);
    cells_alloc(&c);
    for (long i = 0; i < np; i++) init_particle(i, p + 2 * i);
    for (int s = 0; s < steps; s++) {
        cells_build(&c, p);
        pair_forces(&c, p, 0, np, f, touched);
        move(p, v, f, 0, np);
    }
    double mx = 0, my = 0;
    for (long i = 0; i < np; i++) {
        for (int d = 0; d < 2; d++) {
            double e = wrap_d(pos[2 * i + d] - p[2 * i + d]);
            if (!(fabs(e) <= 1e-9))
                kern_fail("particle %ld coordinate %d is %.15g, the serial run gives %.15g: a "
                          "force contribution was lost or a position read stale",
                          i, d, pos[2 * i + d], p[2 * i + d]);
        }
        mx += vel[2 * i];
        my += vel[2 * i + 1];
    }
    KERN_CHECK(fabs(mx) <= 1e-9 * (double)np && fabs(my) <= 1e-9 * (double)np,
               "total momentum (%.3g, %.3g) is not zero: forces do not cancel in pairs", mx, my);
    cells_free(&c);
    free(p);
    free(v);
    free(f);
    free(touched);
}

void kern_body(int me)
{
    long lo, hi;
    kern_split(np, kern_procs(), me, &lo, &hi);
    int ncells = ncell1 * ncell1;
    double *fbuf = calloc((size_t)np * 2, sizeof *fbuf);
    char *touched = calloc((size_t)ncells, 1);
    struct cells c;
    KERN_CHECK(fbuf && touched, "malloc of the private force buffer (%ld particles) failed", np);
    cells_alloc(&c);
    /* Own share of every shared array touched before the timer: no first-touch faults in it. */
    for (long i = lo; i < hi; i++) {
        init_particle(i, pos + 2 * i);
        vel[2 * i] = vel[2 * i + 1] = force[2 * i] = force[2 * i + 1] = 0;
    }

    kern_timer_start();
    for (int s = 0; s < steps; s++) {
        cells_build(&c, pos);
        pair_forces(&c, pos, lo, hi, fbuf, touched);
        for (int k = 0; k < ncells; k++) {
            if (!touched[k]) continue;
            touched[k] = 0;
            kern_lock(k);
            for (long j = c.head[k]; j >= 0; j = c.next[j]) {
                force[2 * j] += fbuf[2 * j];
                force[2 * j + 1] += fbuf[2 * j + 1];
                fbuf[2 * j] = fbuf[2 * j + 1] = 0;
            }
            kern_unlock(k);
        }
        kern_barrier();
        move(pos, vel, force, lo, hi);
        kern_barrier();
    }
    kern_timer_stop();

    if (kern_inject && me == 0) pos[0] += 1e-3;
    kern_barrier();
    if (me == 0) check();
    cells_free(&c);
    free(fbuf);
    free(touched);
}

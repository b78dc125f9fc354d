/*
 * common.h - what every benchmark of bench/ shares: start and end, clocks, failing loudly,
 * reductions across nodes, the machine-readable output lines, and placement helpers.
 *
 * Output contract (bench/run parses it; one line each, written with a single write(2) so that
 * the lines of different nodes never interleave mid-line):
 *   RESULT name=<workload> variant=<v> nodes=<P> value=<number> unit=<unit> [key=value ...]
 *       the workload's result, printed once (by node 0 unless stated);
 *   STATS name=<workload> variant=<v> node=<r> <counter>=<delta> ... cum_p50_us=...
 *       one per node: dsm_stats() counters over the timed phase (after minus before), and the
 *       runtime's fault service time percentiles. Those are cumulative since dsm_init (the
 *       runtime keeps one histogram and percentiles cannot be subtracted), hence "cum_".
 *   FAIL <message>
 *       on stderr, before exiting with status 1: a result that is wrong. dsmrun then exits
 *       non-zero too, and the runner records the run as failed.
 * Timing never decides success; only correctness checks do.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "dsm.h"

#define BENCH_PAGE           4096u
#define BENCH_WORDS_PER_PAGE (BENCH_PAGE / sizeof(uint64_t))

extern int bench_rank, bench_nodes;

/* Names the program in messages (call first, before parsing options). */
void bench_set_prog(const char *prog);
/* dsm_init(NULL) or exit(2) with a message saying how to start the program. */
void bench_begin(const char *prog);
/* dsm_finalize. */
void bench_end(void);

/* CLOCK_MONOTONIC in nanoseconds / seconds. */
uint64_t bench_now_ns(void);
double bench_now_s(void);

/* Prints "FAIL node R: <message>" on stderr and exits 1 (_exit: from any state). */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define BENCH_CHECK(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) bench_fail(__VA_ARGS__);                                                      \
    } while (0)

/* Prints one line on stdout with a single write(2). */
void bench_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Collective: allocates the pages the reductions below exchange values through (one page per
 * node, homed on it). Call it after the workload's own allocations, so that those lie where
 * the workload definition puts them. */
void bench_reduce_init(void);
/* Collective (two barriers each): the maximum / sum over all nodes of v. */
double bench_max(double v);
double bench_sum(double v);

/* Snapshot of this node's counters (dsm_stats, fatal on error). */
void bench_stats(dsm_stats_t *s);
/* Protocol messages this node sent, over every transport (TCP, RDMA, shared-memory rings). */
uint64_t bench_msgs_sent(const dsm_stats_t *s);
/* Prints this node's STATS line for the phase between two snapshots. */
void bench_stats_print(const char *name, const char *variant, const dsm_stats_t *before,
                       const dsm_stats_t *after);

/* Collective: allocates `size` bytes homed as if the collective space were one array of
 * `global` bytes cut into dsm_nodes() contiguous chunks (chunk k homed on node k), with this
 * allocation at byte `offset` of it. ufdsm's placement policies apply per allocation, so this
 * is done with one DSM_PLACE_NODE allocation per chunk the range crosses; the first-fit
 * collective heap puts consecutive allocations next to each other in a fresh process, which
 * is checked (fatal otherwise). */
void *bench_alloc_global_block(size_t offset, size_t size, size_t global);
/* Collective: one contiguous array of nrows rows of row_bytes (a page multiple) each, in
 * which rows [first(p), first(p+1)) are homed on node p, first(p) given by row_first[p]
 * (row_first[nodes] = nrows). Same technique as above. */
void *bench_alloc_rows(size_t row_bytes, size_t nrows, const size_t *row_first);

/* Collective: the layout of workloads (a) and (b): a global space of G = 2*a_mib MiB homed in
 * contiguous per-node chunks, a pad of G/4 (32 MiB for the definition's a_mib = 64), then the
 * array A of a_mib MiB plus one page, returned; *npages = its page count. Fatal on failure. */
volatile uint64_t *bench_alloc_fault_layout(long a_mib, size_t *npages);
/* Collective: one N x N array of rows of row_bytes for workloads (f1)/(f2), placed by
 * `place`: "default" (dsm_alloc, ufdsm's own default), "local" (rows [row_first[p],
 * row_first[p+1]) homed on node p) or "node0" (all homed on node 0). Fatal on failure. */
void *bench_alloc_app(const char *place, size_t row_bytes, size_t nrows, const size_t *row_first);
/* 1 if s names one of those placements. */
int bench_place_ok(const char *s);

/* A small deterministic PRNG (splitmix64). */
static inline uint64_t bench_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double bench_rand01(uint64_t *s)
{
    return (double)(bench_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

static inline void bench_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Parses a whole number option value in [lo, hi] or exits 2 naming the option. */
long bench_arg_long(const char *opt, const char *s, long lo, long hi);
double bench_arg_double(const char *opt, const char *s, double lo, double hi);

#endif /* BENCH_COMMON_H */

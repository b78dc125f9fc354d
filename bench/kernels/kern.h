/*
 * kern.h - the thin layer that lets each kernel of bench/kernels be written once and built
 * twice:
 *   KERN_DSM       SPMD against the public ufdsm API: every node runs main, shared arrays
 *                  come from collective dsm_alloc_placed, work is split by dsm_rank(),
 *                  synchronisation is dsm_barrier / dsm_mutex_*. Linked with libufdsm.
 *   KERN_PTHREADS  plain pthreads in one process: T threads, shared arrays from malloc,
 *                  pthread_barrier / pthread_mutex. The serial/threaded reference; it knows
 *                  nothing of ufdsm (no dsm.h, no libufdsm), so it stays an ordinary pthreads
 *                  program (issue 11 runs such programs unmodified).
 *
 * A kernel is written as an SPMD body, kern_body(me), that runs once per "process" (a node,
 * or a thread), after kern_setup() allocated the shared data. In both builds the body sees
 * the same things: its index `me`, kern_procs(), kern_alloc'd memory, kern_barrier(),
 * kern_lock(i)/kern_unlock(i).
 *
 * Output contract (bench/run kernels parses it; the same shape as bench/common.h's):
 *   RESULT name=<kernel> variant=<build>.<protocol> nodes=<P> value=<seconds> unit=s
 *          build=dsm|pthreads protocol=sc|rc|none procs=<P or T> size=<problem size> ...
 *     printed once, by process 0, after the result was checked;
 *   FAIL <kernel> ...: on stderr, then exit 1 (the result was wrong).
 * Timing never decides success; only the kernel's own check does.
 */
#ifndef KERN_H
#define KERN_H

#include <stddef.h>
#include <stdint.h>

#if defined(KERN_DSM) == defined(KERN_PTHREADS)
#error "compile with exactly one of -DKERN_DSM or -DKERN_PTHREADS"
#endif

/* ---- what each kernel provides ---- */
extern const char *kern_name; /* e.g. "radix" */
/* Parses the kernel's own options (argv without the common ones; see kern_usage_common).
 * Returns 0, or prints a message and returns nonzero. */
int kern_options(int argc, char **argv);
/* Once per process before the body, with the same results everywhere: kern_alloc the shared
 * data here (collective in the DSM build, so every node must call it in the same order). */
void kern_setup(void);
/* The SPMD body: initialise your part, kern_barrier(), kern_timer_start(), compute,
 * kern_timer_stop(), check. Runs in every process with me = 0 .. kern_procs()-1. */
void kern_body(int me);
/* Problem size for the RESULT line, and any extra "key=value ..." text (may be ""). */
long kern_size(void);
const char *kern_extra(void);
/* One line for --help: the kernel's options. */
extern const char *kern_usage;

/* ---- what the layer provides ---- */
int kern_procs(void);
/* "sc", "rc" (DSM build: the allocation protocol in effect) or "none" (pthreads). */
const char *kern_protocol(void);
/* Shared, zero-filled, page-aligned memory. DSM build: collective, homed by placement:
 * KERN_PLACE_BLOCK cuts it into kern_procs() contiguous chunks, chunk k homed on process k
 * (so a kernel that gives process k the k-th equal, page-aligned share of an array touches
 * only memory homed on itself); KERN_PLACE_CYCLIC deals `arg`-byte pieces (a page multiple)
 * round-robin. The protocol is the default one (DSM_PROTOCOL). pthreads build: malloc. */
enum { KERN_PLACE_BLOCK = 0, KERN_PLACE_CYCLIC = 1 };
void *kern_alloc(size_t size);
void *kern_alloc_placed(size_t size, int place, size_t arg);
/* n locks, usable as kern_lock(0 .. n-1). Call once, from kern_setup. */
void kern_locks(int n);
void kern_lock(int i);
void kern_unlock(int i);
void kern_barrier(void);
/* Process 0's timer: start and stop are each preceded by a barrier, so the interval covers
 * every process's work. Call in every process. */
void kern_timer_start(void);
void kern_timer_stop(void);
/* Prints "FAIL <kernel> proc <me>: ..." on stderr and exits 1. */
void kern_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define KERN_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) kern_fail(__VA_ARGS__);                                                       \
    } while (0)
/* 1 when run with --inject: the kernel corrupts its result after the timed part and before
 * its check (one wrong element), so that a test can show the check catches a wrong result. */
extern int kern_inject;
/* Parses a whole number in [lo, hi] or exits 2 naming the option. */
long kern_arg_long(const char *opt, const char *s, long lo, long hi);

/* Deterministic per-index pseudo-random numbers (splitmix64 of seed+index): every process can
 * regenerate any element of the input without reading shared memory, which the checks use. */
static inline uint64_t kern_hash(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline double kern_hash01(uint64_t x)
{
    return (double)(kern_hash(x) >> 11) * (1.0 / 9007199254740992.0);
}

/* [lo, hi) of n items split evenly over procs, share p. */
static inline void kern_split(long n, int procs, int p, long *lo, long *hi)
{
    *lo = n * p / procs;
    *hi = n * (p + 1) / procs;
}

#endif /* KERN_H */

/*
 * mn.h - shared helpers of the multi-node behaviour tests (the programs in tests/mn).
 *
 * Every test is one program started on N nodes by dsmrun. The helpers here keep the tests
 * short and their failures readable:
 *   - CHECK(cond, fmt, ...) prints "node R: FAILED at file:line: <message>" and exits 1 at
 *     once (with _exit, from any thread), so dsmrun's exit status - the worst of the nodes' -
 *     reports the failure and the first broken expectation is the one on the screen.
 *   - mn_begin()/mn_end() wrap dsm_init/dsm_finalize, naming the error if dsm_init fails.
 *   - a deterministic PRNG (splitmix64): every node can compute the values any other node
 *     wrote, so every check is exact.
 *   - mn_args() parses the "[-t THREADS] [-i ITERS | ITERS]" arguments all tests accept.
 *
 * Header-only (static functions) so that each test is a single translation unit.
 */
#ifndef MN_H
#define MN_H

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "dsm.h"

/* The coherence unit of ufdsm (4 KiB pages on every platform it supports). */
#define MN_PAGE 4096u

/* The exit status of a test that cannot run with this many nodes (ctest SKIP_RETURN_CODE). */
#define MN_SKIP 77

static int mn_rank = -1;
static int mn_nodes = 0;

static void mn_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn, unused));

static void mn_fail(const char *file, int line, const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "node %d: FAILED at %s:%d: ", mn_rank, file, line);
    if (n < 0 || n >= (int)sizeof buf) n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    fflush(stdout);
    ssize_t w = write(STDERR_FILENO, buf, len); /* one write: no interleaving mid-line */
    (void)w;
    _exit(1);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) mn_fail(__FILE__, __LINE__, __VA_ARGS__);                                     \
    } while (0)

/* Informational line, prefixed with the node. */
static void mn_say(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void mn_say(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "node %d: ", mn_rank);
    if (n < 0 || n >= (int)sizeof buf) n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(STDOUT_FILENO, buf, len);
    (void)w;
}

/* ---------------------------------------------------------------- PRNG (splitmix64) */

/* A stateless 64-bit mixer: mn_mix(x) is a fixed, well-scrambled function of x. Tests use it
 * to derive the value of "word i of round r written by node k" on every node. */
static inline uint64_t mn_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Combines up to three small integers into one value (never 0 in practice: zero is what
 * fresh DSM memory holds, so a test value of 0 could hide a missing write). */
static inline uint64_t mn_val(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t v = mn_mix(mn_mix(mn_mix(a) ^ b) ^ c);
    return v ? v : 1;
}

typedef struct mn_rng {
    uint64_t s;
} mn_rng_t;

static inline void mn_rng_seed(mn_rng_t *r, uint64_t seed)
{
    r->s = seed;
}

static inline uint64_t mn_rand(mn_rng_t *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (the modulo bias is irrelevant here; determinism is what counts). */
static inline uint64_t mn_rand_below(mn_rng_t *r, uint64_t n)
{
    return mn_rand(r) % n;
}

/* ---------------------------------------------------------------- arguments */

typedef struct mn_args {
    long iters;  /* the test's main repetition count */
    int threads; /* application threads per node (tests that support it) */
} mn_args_t;

static long mn_parse_long(const char *what, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "bad %s '%s': expected a whole number from %ld to %ld\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

/* Accepts "[-t THREADS] [-i ITERS] [ITERS]" in any order; anything else is a usage error
 * (exit 2). Defaults come from the test. */
static mn_args_t mn_args(int argc, char **argv, long def_iters, int def_threads)
    __attribute__((unused));
static mn_args_t mn_args(int argc, char **argv, long def_iters, int def_threads)
{
    mn_args_t a = {.iters = def_iters, .threads = def_threads};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            a.threads = (int)mn_parse_long("thread count", argv[++i], 1, 64);
        } else if (!strcmp(argv[i], "-i") && i + 1 < argc) {
            a.iters = mn_parse_long("iteration count", argv[++i], 1, 1000000000L);
        } else if (argv[i][0] != '-') {
            a.iters = mn_parse_long("iteration count", argv[i], 1, 1000000000L);
        } else {
            fprintf(stderr, "usage: %s [-t THREADS] [-i ITERS | ITERS]\n", argv[0]);
            exit(2);
        }
    }
    return a;
}

/* ---------------------------------------------------------------- start and end */

/* dsm_init(NULL) with a readable failure. min_nodes: the test needs at least that many nodes;
 * with fewer it prints why and exits MN_SKIP (every node does the same, so nobody hangs). */
static void mn_begin(int min_nodes) __attribute__((unused));
static void mn_begin(int min_nodes)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *r = getenv("DSM_RANK");
    mn_rank = r ? atoi(r) : -1;
    int rc = dsm_init(NULL);
    if (rc != 0) {
        fprintf(stderr, "node %d: FAILED: dsm_init: %s (error %d)%s\n", mn_rank, dsm_strerror(rc),
                rc, r ? "" : "; DSM_RANK is not set: start the program with dsmrun");
        _exit(1);
    }
    mn_rank = dsm_rank();
    mn_nodes = dsm_nodes();
    CHECK(mn_nodes >= 1 && mn_rank >= 0 && mn_rank < mn_nodes,
          "dsm_rank()=%d / dsm_nodes()=%d are inconsistent", mn_rank, mn_nodes);
    if (r) CHECK(atoi(r) == mn_rank, "DSM_RANK=%s but dsm_rank()=%d", r, mn_rank);
    if (mn_nodes < min_nodes) {
        if (mn_rank == 0)
            printf("skipped: this test needs at least %d nodes (got %d)\n", min_nodes, mn_nodes);
        dsm_finalize();
        exit(MN_SKIP);
    }
}

/* dsm_finalize, then a one-line success summary from node 0. */
static void mn_end(const char *test) __attribute__((unused));
static void mn_end(const char *test)
{
    dsm_finalize();
    if (mn_rank == 0) printf("%s: passed on %d nodes\n", test, mn_nodes);
}

/* ---------------------------------------------------------------- small utilities */

static inline double mn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* MN_EXPECT_ONESIDED ("1": nodes share this host and their memory files are mapped, so the
 * one-sided paths must be taken; "0": DSM_ONESIDED=off, so only a node's own; else no check),
 * with "1" dropped (and said) where the kernel cannot hold a home's pages once (before 6.4),
 * since there is no memory file to map. */
static const char *mn_expect_onesided(void) __attribute__((unused));
static const char *mn_expect_onesided(void)
{
    const char *expect = getenv("MN_EXPECT_ONESIDED");
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0) sscanf(u.release, "%d.%d", &major, &minor);
    if (expect && expect[0] == '1' && (major < 6 || (major == 6 && minor < 4))) {
        mn_say("one-sided check skipped: Linux %d.%d cannot hold a home's pages once (6.4+)", major,
               minor);
        return NULL;
    }
    return expect;
}

/* The size of the global space as the runtime will see it: DSM_MEMORY ("256M", "4G", bytes)
 * or the documented default of 4 GiB. */
static uint64_t mn_global_memory(void) __attribute__((unused));
static uint64_t mn_global_memory(void)
{
    const char *s = getenv("DSM_MEMORY");
    if (!s || !*s) return 4ull << 30;
    char *end;
    uint64_t v = strtoull(s, &end, 10);
    const char *units = "KMGT";
    const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (u) v <<= 10 * (1 + (u - units));
    return v;
}

/* dsm_alloc that must succeed. */
#define MN_ALLOC(size)                                                                             \
    ({                                                                                             \
        size_t mn_sz_ = (size);                                                                    \
        void *mn_p_ = dsm_alloc(mn_sz_);                                                           \
        CHECK(mn_p_ != NULL, "dsm_alloc(%zu) returned NULL", mn_sz_);                              \
        mn_p_;                                                                                     \
    })

#define MN_ALLOC_PLACED(size, policy, arg)                                                         \
    ({                                                                                             \
        size_t mn_sz_ = (size);                                                                    \
        void *mn_p_ = dsm_alloc_placed(mn_sz_, (policy), (arg));                                   \
        CHECK(mn_p_ != NULL, "dsm_alloc_placed(%zu, %d, %zu) returned NULL", mn_sz_,               \
              (int)(policy), (size_t)(arg));                                                       \
        mn_p_;                                                                                     \
    })

/* How long a spin-wait may last before the test declares the DSM stuck (a lost update or a
 * missing invalidation typically shows up as a flag that never changes). */
#define MN_WAIT_SECONDS 60.0

/* Spins (yielding: the tests oversubscribe the CPUs) until cond holds; fails naming `what`
 * if it does not within MN_WAIT_SECONDS. cond is re-evaluated each time, so it must read the
 * shared variable through a volatile or atomic access. */
#define MN_WAIT_UNTIL(cond, ...)                                                                   \
    do {                                                                                           \
        double mn_t0_ = 0;                                                                         \
        for (unsigned mn_n_ = 0; !(cond); mn_n_++) {                                               \
            sched_yield();                                                                         \
            if ((mn_n_ & 1023) == 1023) {                                                          \
                if (mn_t0_ == 0)                                                                   \
                    mn_t0_ = mn_now();                                                             \
                else if (mn_now() - mn_t0_ > MN_WAIT_SECONDS)                                      \
                    mn_fail(__FILE__, __LINE__, __VA_ARGS__);                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#endif /* MN_H */

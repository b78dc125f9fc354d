/*
 * kern.c - the two builds of the kernel layer (kern.h): KERN_DSM runs the body once per node
 * through the public ufdsm API; KERN_PTHREADS runs it in T threads of one process. Everything
 * here is outside the timed interval except the two barriers around it.
 */
#include "kern.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef KERN_DSM
#include "dsm.h"
#else
#include <pthread.h>
#endif

static int procs = 1;
int kern_inject;
static double t_start, t_stop;

#ifdef KERN_DSM
static int my_rank;
static dsm_mutex_t *locks;
static int nlocks;
#else
static pthread_barrier_t bar;
static pthread_mutex_t *locks;
static int nlocks;
static __thread int my_rank;
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        buf += w;
        len -= (size_t)w;
    }
}

void kern_fail(const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "FAIL %s proc %d of %d (%s build, protocol %s): ", kern_name,
                     my_rank, procs,
#ifdef KERN_DSM
                     "dsm",
#else
                     "pthreads",
#endif
                     kern_protocol());
    if (n < 0 || n >= (int)sizeof buf) n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    fflush(stdout);
    write_all(STDERR_FILENO, buf, len);
    _exit(1);
}

long kern_arg_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "%s: bad value '%s' for %s: expected a whole number from %ld to %ld\n",
                kern_name, s, opt, lo, hi);
        exit(2);
    }
    return v;
}

int kern_procs(void)
{
    return procs;
}

const char *kern_protocol(void)
{
#ifdef KERN_DSM
    /* The allocations use the default protocol, which DSM_PROTOCOL sets (dsm/env.c rejects
     * any other value than sc and rc at dsm_init). */
    const char *p = getenv("DSM_PROTOCOL");
    return p && !strcmp(p, "rc") ? "rc" : "sc";
#else
    return "none";
#endif
}

void *kern_alloc(size_t size)
{
    return kern_alloc_placed(size, KERN_PLACE_BLOCK, 0);
}

void *kern_alloc_placed(size_t size, int place, size_t arg)
{
    if (!size) size = 1;
#ifdef KERN_DSM
    void *p = dsm_alloc_placed(
        size, place == KERN_PLACE_CYCLIC ? DSM_PLACE_CYCLIC : DSM_PLACE_BLOCK, arg);
    KERN_CHECK(p,
               "dsm_alloc_placed of %zu bytes failed: raise DSM_MEMORY (e.g. DSM_MEMORY=2G) or "
               "choose a smaller size",
               size);
    return p;
#else
    (void)place;
    (void)arg;
    size_t rounded = (size + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(4096, rounded);
    KERN_CHECK(p, "aligned_alloc of %zu bytes failed: choose a smaller size", rounded);
    memset(p, 0, rounded);
    return p;
#endif
}

void kern_locks(int n)
{
    KERN_CHECK(n > 0 && !locks, "kern_locks(%d): call once, with n > 0", n);
    nlocks = n;
#ifdef KERN_DSM
    locks = dsm_alloc((size_t)n * sizeof *locks);
    KERN_CHECK(locks, "dsm_alloc of %d mutexes failed: raise DSM_MEMORY", n);
    if (my_rank == 0)
        for (int i = 0; i < n; i++) {
            int rc = dsm_mutex_init(&locks[i]);
            KERN_CHECK(rc == 0, "dsm_mutex_init of lock %d: %s", i, dsm_strerror(rc));
        }
    dsm_barrier(); /* nobody locks before node 0 initialised them */
#else
    locks = malloc((size_t)n * sizeof *locks);
    KERN_CHECK(locks, "malloc of %d mutexes failed", n);
    for (int i = 0; i < n; i++) pthread_mutex_init(&locks[i], NULL);
#endif
}

void kern_lock(int i)
{
    KERN_CHECK(i >= 0 && i < nlocks, "lock %d out of range (%d locks)", i, nlocks);
#ifdef KERN_DSM
    int rc = dsm_mutex_lock(&locks[i]);
    KERN_CHECK(rc == 0, "dsm_mutex_lock(%d): %s", i, dsm_strerror(rc));
#else
    pthread_mutex_lock(&locks[i]);
#endif
}

void kern_unlock(int i)
{
#ifdef KERN_DSM
    int rc = dsm_mutex_unlock(&locks[i]);
    KERN_CHECK(rc == 0, "dsm_mutex_unlock(%d): %s", i, dsm_strerror(rc));
#else
    pthread_mutex_unlock(&locks[i]);
#endif
}

void kern_barrier(void)
{
#ifdef KERN_DSM
    dsm_barrier();
#else
    pthread_barrier_wait(&bar);
#endif
}

void kern_timer_start(void)
{
    kern_barrier();
    if (my_rank == 0) t_start = now_s();
}

void kern_timer_stop(void)
{
    kern_barrier();
    if (my_rank == 0) t_stop = now_s();
}

static void usage(FILE *f, const char *prog)
{
#ifdef KERN_DSM
    fprintf(f,
            "usage: dsmrun -n P %s [options]\n"
            "  SPMD build of the %s kernel (one process per node; DSM_PROTOCOL=sc|rc picks the\n"
            "  protocol of its shared arrays)\n",
            prog, kern_name);
#else
    fprintf(f,
            "usage: %s [-t THREADS] [options]\n"
            "  pthreads build of the %s kernel (one process, THREADS threads, default 1)\n",
            prog, kern_name);
#endif
    fprintf(f, "  options: %s\n", kern_usage);
    fprintf(f, "  --inject: corrupt one element of the result before the check (it must FAIL)\n");
}

static void result(void)
{
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "RESULT name=%s variant=%s.%s nodes=%d value=%.6f unit=s build=%s "
                     "protocol=%s procs=%d size=%ld %s\n",
                     kern_name,
#ifdef KERN_DSM
                     "dsm", kern_protocol(), procs,
#else
                     "pthreads", kern_protocol(), 1,
#endif
                     t_stop - t_start,
#ifdef KERN_DSM
                     "dsm",
#else
                     "pthreads",
#endif
                     kern_protocol(), procs, kern_size(), kern_extra());
    if (n > 0)
        write_all(STDOUT_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Takes the common options out of argv (-h, --inject; -t THREADS in the pthreads build) and hands
 * the rest to the kernel. */
static int parse(int argc, char **argv)
{
    char **rest = malloc(((size_t)argc + 1) * sizeof *rest);
    if (!rest) return 2;
    int nrest = 0;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout, argv[0]);
            exit(0);
        }
        if (!strcmp(argv[i], "--inject")) {
            kern_inject = 1;
            continue;
        }
        if (!strcmp(argv[i], "-t")) {
#ifdef KERN_DSM
            fprintf(stderr,
                    "%s: -t is for the pthreads build; the DSM build runs one process per node "
                    "(dsmrun -n P)\n",
                    kern_name);
            return 2;
#else
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: -t needs a thread count\n", kern_name);
                return 2;
            }
            procs = (int)kern_arg_long("-t", argv[++i], 1, 256);
            continue;
#endif
        }
        rest[nrest++] = argv[i];
    }
    rest[nrest] = NULL;
    int rc = kern_options(nrest, rest);
    free(rest);
    if (rc) usage(stderr, argv[0]);
    return rc ? 2 : 0;
}

#ifdef KERN_DSM
int main(int argc, char **argv)
{
    if (parse(argc, argv)) return 2;
    int rc = dsm_init(NULL);
    if (rc) {
        fprintf(stderr, "%s: dsm_init failed: %s (start it with dsmrun, e.g. dsmrun -n 2 %s)\n",
                kern_name, dsm_strerror(rc), argv[0]);
        return 2;
    }
    procs = dsm_nodes();
    my_rank = dsm_rank();
    kern_setup();
    kern_body(my_rank);
    kern_barrier(); /* every node's check is done before the result is printed */
    if (my_rank == 0) result();
    dsm_finalize();
    return 0;
}
#else
static void *thread_main(void *arg)
{
    my_rank = (int)(intptr_t)arg;
    kern_body(my_rank);
    return NULL;
}

int main(int argc, char **argv)
{
    if (parse(argc, argv)) return 2;
    my_rank = 0;
    kern_setup();
    int rc = pthread_barrier_init(&bar, NULL, (unsigned)procs);
    KERN_CHECK(rc == 0, "pthread_barrier_init: %s", strerror(rc));
    pthread_t *tid = calloc((size_t)procs, sizeof *tid);
    KERN_CHECK(tid, "calloc of %d thread ids failed", procs);
    for (int t = 1; t < procs; t++) {
        rc = pthread_create(&tid[t], NULL, thread_main, (void *)(intptr_t)t);
        KERN_CHECK(rc == 0, "pthread_create of thread %d: %s (lower -t)", t, strerror(rc));
    }
    kern_body(0);
    for (int t = 1; t < procs; t++) pthread_join(tid[t], NULL);
    result();
    free(tid);
    return 0;
}
#endif

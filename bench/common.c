/*
 * common.c - the helpers every benchmark shares (see common.h): start/end, clocks, loud
 * failures, cross-node reductions through DSM pages, the RESULT/STATS output lines, and the
 * allocation helpers that reproduce "global block" and "rows homed locally" placements.
 * Nothing here is timed; the helpers run outside every measured phase.
 */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int bench_rank = -1, bench_nodes = 0;
static const char *prog_name = "bench";
static volatile double *reduce_pages; /* page k (homed on node k) holds node k's value */

void bench_set_prog(const char *prog)
{
    const char *slash = strrchr(prog, '/');
    prog_name = slash ? slash + 1 : prog;
}

void bench_begin(const char *prog)
{
    bench_set_prog(prog);
    const char *r = getenv("DSM_RANK");
    bench_rank = r ? atoi(r) : 0;
    int rc = dsm_init(NULL);
    if (rc) {
        fprintf(stderr,
                "%s: dsm_init failed: %s (start it with dsmrun, e.g. dsmrun -n 2 %s; "
                "bench/run does that)\n",
                prog, dsm_strerror(rc), prog);
        exit(2);
    }
    bench_rank = dsm_rank();
    bench_nodes = dsm_nodes();
}

void bench_end(void)
{
    dsm_finalize();
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double bench_now_s(void)
{
    return (double)bench_now_ns() * 1e-9;
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

void bench_fail(const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "FAIL %s node %d: ", prog_name, bench_rank);
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

void bench_line(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    size_t len = (size_t)m < sizeof buf - 2 ? (size_t)m : sizeof buf - 2;
    buf[len++] = '\n';
    fflush(stdout);
    write_all(STDOUT_FILENO, buf, len);
}

void bench_reduce_init(void)
{
    reduce_pages = dsm_alloc_placed((size_t)bench_nodes * BENCH_PAGE, DSM_PLACE_CYCLIC, BENCH_PAGE);
    BENCH_CHECK(reduce_pages, "dsm_alloc_placed of %d reduction pages failed", bench_nodes);
}

/* Every node's v, in out[0..nodes). Collective. */
static void gather(double v, double *out)
{
    BENCH_CHECK(reduce_pages, "bench_reduce_init was not called");
    reduce_pages[(size_t)bench_rank * BENCH_WORDS_PER_PAGE] = v;
    dsm_barrier();
    for (int k = 0; k < bench_nodes; k++) out[k] = reduce_pages[(size_t)k * BENCH_WORDS_PER_PAGE];
    dsm_barrier(); /* nobody overwrites a value before everyone has read it */
}

double bench_max(double v)
{
    double all[256];
    gather(v, all);
    double m = all[0];
    for (int k = 1; k < bench_nodes; k++)
        if (all[k] > m) m = all[k];
    return m;
}

double bench_sum(double v)
{
    double all[256];
    gather(v, all);
    double s = 0;
    for (int k = 0; k < bench_nodes; k++) s += all[k];
    return s;
}

void bench_stats(dsm_stats_t *s)
{
    int rc = dsm_stats(s);
    BENCH_CHECK(rc == 0, "dsm_stats failed: %s", dsm_strerror(rc));
}

uint64_t bench_msgs_sent(const dsm_stats_t *s)
{
    return s->tp[DSM_TP_TCP].msgs_sent + s->tp[DSM_TP_RDMA].msgs_sent + s->tp_shm.msgs_sent;
}

void bench_stats_print(const char *name, const char *variant, const dsm_stats_t *b,
                       const dsm_stats_t *a)
{
#define D(f) (unsigned long long)(a->f - b->f)
    bench_line("STATS name=%s variant=%s node=%d read_faults=%llu write_faults=%llu "
               "upgrades=%llu waits_joined=%llu inv_sent=%llu inv_recv=%llu recalls_sent=%llu "
               "recalls_recv=%llu pages_fetched=%llu pages_sent=%llu barriers=%llu "
               "lock_acquires=%llu kernel_retries=%llu tcp_msgs_sent=%llu tcp_msgs_recv=%llu "
               "tcp_bytes_sent=%llu tcp_bytes_recv=%llu shm_msgs_sent=%llu shm_msgs_recv=%llu "
               "local_msgs=%llu fault_count=%llu "
               "cum_fault_count=%llu cum_mean_us=%.2f cum_p50_us=%.2f cum_p90_us=%.2f "
               "cum_p99_us=%.2f cum_max_us=%.2f",
               name, variant, bench_rank, D(read_faults), D(write_faults), D(upgrades),
               D(waits_joined), D(inv_sent), D(inv_recv), D(recalls_sent), D(recalls_recv),
               D(pages_fetched), D(pages_sent), D(barriers), D(lock_acquires), D(kernel_retries),
               D(tp[DSM_TP_TCP].msgs_sent), D(tp[DSM_TP_TCP].msgs_recv),
               D(tp[DSM_TP_TCP].bytes_sent), D(tp[DSM_TP_TCP].bytes_recv), D(tp_shm.msgs_sent),
               D(tp_shm.msgs_recv), D(tp[DSM_TP_LOCAL].msgs_sent), D(fault_count),
               (unsigned long long)a->fault_count, a->fault_mean_us, a->fault_p50_us,
               a->fault_p90_us, a->fault_p99_us, a->fault_max_us);
#undef D
}

/* Allocates consecutive pieces [piece_lo[i], piece_lo[i+1]) homed on piece_home[i] and checks
 * that they are contiguous. */
static void *alloc_pieces(int npieces, const size_t *piece_lo, const int *piece_home)
{
    char *first = NULL, *expect = NULL;
    for (int i = 0; i < npieces; i++) {
        size_t len = piece_lo[i + 1] - piece_lo[i];
        if (!len) continue;
        char *p = dsm_alloc_placed(len, DSM_PLACE_NODE, (size_t)piece_home[i]);
        BENCH_CHECK(p, "dsm_alloc_placed(%zu, NODE, %d) failed: raise DSM_MEMORY", len,
                    piece_home[i]);
        if (!first) first = p;
        BENCH_CHECK(!expect || p == expect,
                    "placement helper: piece %d landed at %p, not right after the previous "
                    "piece (%p); the collective heap was not fresh",
                    i, (void *)p, (void *)expect);
        expect = p + len;
    }
    return first;
}

void *bench_alloc_global_block(size_t offset, size_t size, size_t global)
{
    int n = bench_nodes;
    size_t lo[258];
    int home[257], np = 0;
    BENCH_CHECK(n <= 256 && global % ((size_t)n * BENCH_PAGE) == 0 && offset % BENCH_PAGE == 0,
                "bad global block layout (%zu nodes, global %zu, offset %zu)", (size_t)n, global,
                offset);
    size_t chunk = global / (size_t)n, end = offset + size;
    size_t at = offset;
    while (at < end) {
        size_t k = at / chunk;
        if (k >= (size_t)n) k = (size_t)n - 1; /* past the modelled space: the last node */
        size_t stop = k == (size_t)n - 1 ? end : (k + 1) * chunk;
        if (stop > end) stop = end;
        lo[np] = at - offset;
        home[np++] = (int)k;
        at = stop;
    }
    lo[np] = size;
    return alloc_pieces(np, lo, home);
}

void *bench_alloc_rows(size_t row_bytes, size_t nrows, const size_t *row_first)
{
    size_t lo[258];
    int home[257];
    BENCH_CHECK(bench_nodes <= 256 && row_bytes % BENCH_PAGE == 0,
                "rows of %zu bytes cannot be homed per node (not a page multiple)", row_bytes);
    for (int p = 0; p < bench_nodes; p++) {
        lo[p] = row_first[p] * row_bytes;
        home[p] = p;
    }
    lo[bench_nodes] = nrows * row_bytes;
    return alloc_pieces(bench_nodes, lo, home);
}

volatile uint64_t *bench_alloc_fault_layout(long a_mib, size_t *npages)
{
    size_t global = (size_t)a_mib << 21, pad = global / 4;
    size_t asize = ((size_t)a_mib << 20) + BENCH_PAGE;
    /* The pad is never touched: it only pushes A to where the definition puts it. */
    void *padp = bench_alloc_global_block(0, pad, global);
    volatile uint64_t *A = bench_alloc_global_block(pad, asize, global);
    BENCH_CHECK(padp && A, "allocation of the pad and A failed: run with DSM_MEMORY=256M");
    *npages = asize / BENCH_PAGE;
    return A;
}

int bench_place_ok(const char *s)
{
    return !strcmp(s, "default") || !strcmp(s, "local") || !strcmp(s, "node0");
}

void *bench_alloc_app(const char *place, size_t row_bytes, size_t nrows, const size_t *row_first)
{
    size_t bytes = row_bytes * nrows;
    void *p;
    if (!strcmp(place, "default"))
        p = dsm_alloc(bytes);
    else if (!strcmp(place, "node0"))
        p = dsm_alloc_placed(bytes, DSM_PLACE_NODE, 0);
    else {
        BENCH_CHECK(row_bytes % BENCH_PAGE == 0,
                    "-p local needs rows of whole pages (N a multiple of 512), rows of %zu bytes",
                    row_bytes);
        p = bench_alloc_rows(row_bytes, nrows, row_first);
    }
    BENCH_CHECK(p, "allocation of %zu bytes failed: raise DSM_MEMORY", bytes);
    return p;
}

long bench_arg_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "%s: bad value '%s' for %s: expected a whole number from %ld to %ld\n",
                prog_name, s, opt, lo, hi);
        exit(2);
    }
    return v;
}

double bench_arg_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: bad value '%s' for %s: expected a number from %g to %g\n", prog_name,
                s, opt, lo, hi);
        exit(2);
    }
    return v;
}

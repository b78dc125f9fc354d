/*
 * trace.c - the DSM_TRACE recorder (format: docs/tracing.md; reader: tools/dsmtrace).
 *
 * Ownership: a thread's buffer is written only by that thread; the list of buffers is
 * append-only (lock-free push) and is walked only by dsm_trace_close, after the service
 * thread has stopped and with recording switched off. Buffers are mmap'd, never malloc'd,
 * because the first record of a thread may come from inside its SIGBUS handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sys/syscall.h>
#include <time.h>

#include "engine.h"
#include "log.h"
#include "trace.h"

#define TB_CAP 4096 /* records per thread buffer: 128 KiB, one write(2) when full */

struct tbuf {
    struct tbuf *next;
    uint32_t n;
    uint32_t gen;
    struct dsm_trace_rec r[TB_CAP];
};

int dsm_trace_on;
static int trace_fd = -1;
static uint32_t trace_gen; /* bumped per open, so a buffer from an earlier dsm_init is not reused */
static struct tbuf *_Atomic all_bufs;
static __thread struct tbuf *my_buf;
static __thread uint32_t my_gen; /* my_buf is valid only if this equals trace_gen */
static _Atomic uint64_t dropped;

struct trace_hdr {
    char magic[8];
    uint32_t version, rank, nodes, page_size;
    uint64_t region_base, region_size, t0_ns;
    uint32_t record_size;
    uint8_t reserved[12];
};
_Static_assert(sizeof(struct trace_hdr) == 64, "trace header layout is part of the format");

/* The trace is output, not a decision: it reads the clock and the thread id itself (the
 * engine's records carry the engine's time; this is only the file header's origin). */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static __thread int my_tid;

static int tid(void)
{
    if (!my_tid) my_tid = (int)syscall(SYS_gettid);
    return my_tid;
}

static int write_all(const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(trace_fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void flush_buf(struct tbuf *b)
{
    if (b->n && write_all(b->r, b->n * sizeof b->r[0]) < 0)
        atomic_fetch_add_explicit(&dropped, b->n, memory_order_relaxed);
    b->n = 0;
}

int dsm_trace_open(int rank, int nodes, uint64_t base, uint64_t size, char *err, size_t errlen)
{
    const char *pat = getenv("DSM_TRACE");
    if (!pat || !*pat) return DSM_OK;
    char path[4096];
    const char *r = strstr(pat, "%r");
    int len = r ? snprintf(path, sizeof path, "%.*s%d%s", (int)(r - pat), pat, rank, r + 2)
                : snprintf(path, sizeof path, "%s.%d", pat, rank);
    if (len < 0 || (size_t)len >= sizeof path) {
        snprintf(err, errlen, "DSM_TRACE='%s' is too long a path", pat);
        return DSM_EINVAL;
    }
    trace_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (trace_fd < 0) {
        snprintf(err, errlen,
                 "DSM_TRACE: cannot create '%s': %s; give a path in a writable directory", path,
                 strerror(errno));
        return DSM_ESYS;
    }
    struct trace_hdr h = {.magic = "UFDSMTR1",
                          .version = 1,
                          .rank = (uint32_t)rank,
                          .nodes = (uint32_t)nodes,
                          .page_size = PAGE_SIZE,
                          .region_base = base,
                          .region_size = size,
                          .t0_ns = now_ns(),
                          .record_size = sizeof(struct dsm_trace_rec)};
    if (write_all(&h, sizeof h) < 0) {
        snprintf(err, errlen, "DSM_TRACE: cannot write '%s': %s", path, strerror(errno));
        close(trace_fd);
        trace_fd = -1;
        return DSM_ESYS;
    }
    trace_gen++;
    atomic_store(&dropped, 0);
    dsm_trace_on = 1;
    LOGI("tracing coherence events to %s", path);
    return DSM_OK;
}

void dsm_trace_rec(uint8_t kind, uint8_t flags, uint64_t page, uint64_t t_ns, uint64_t service_ns,
                   uint32_t offset, int peer, unsigned msgs)
{
    struct tbuf *b = my_buf;
    if (!b || my_gen != trace_gen) {
        b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED) {
            atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
            return;
        }
        b->gen = trace_gen;
        b->next = atomic_load(&all_bufs);
        while (!atomic_compare_exchange_weak(&all_bufs, &b->next, b)) {
        }
        my_buf = b;
        my_gen = trace_gen;
    }
    if (b->n == TB_CAP) flush_buf(b);
    b->r[b->n++] = (struct dsm_trace_rec){
        .t_ns = t_ns,
        .page = page,
        .service_ns = service_ns > UINT32_MAX ? UINT32_MAX : (uint32_t)service_ns,
        .tid = (uint32_t)tid(),
        .offset = (uint16_t)offset,
        .peer = peer < 0 ? DSM_TR_NO_PEER : (uint16_t)peer,
        .msgs = msgs > 0xFFFF ? 0xFFFF : (uint16_t)msgs,
        .kind = kind,
        .flags = flags,
    };
}

void dsm_trace_close(void)
{
    if (trace_fd < 0) return;
    dsm_trace_on = 0;
    struct tbuf *b = atomic_exchange(&all_bufs, NULL);
    while (b) {
        struct tbuf *next = b->next;
        if (b->gen == trace_gen) flush_buf(b);
        munmap(b, sizeof *b);
        b = next;
    }
    uint64_t d = atomic_load(&dropped);
    if (d) LOGW("DSM_TRACE: %llu events could not be written", (unsigned long long)d);
    close(trace_fd);
    trace_fd = -1;
}

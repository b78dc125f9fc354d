/*
 * trace.h - per-page coherence event tracing (DSM_TRACE=path), file format in docs/tracing.md.
 *
 * Off by default and then free apart from one predictable branch per event. When on, each
 * thread appends fixed-size records to a buffer of its own (no lock, no atomic read-modify-
 * write on the fault path) and hands a full buffer to the file with one write(2) on an
 * O_APPEND descriptor, which keeps concurrent writers' batches whole. Recording is
 * async-signal-safe: it runs inside the SIGBUS handler.
 */
#ifndef DSM_TRACE_H
#define DSM_TRACE_H

#include <stddef.h>
#include <stdint.h>

enum dsm_trace_kind {
    DSM_TR_READ_MISS = 1,    /* read fault, no copy here */
    DSM_TR_WRITE_MISS = 2,   /* write fault, no copy here */
    DSM_TR_UPGRADE = 3,      /* write fault on a read-only copy */
    DSM_TR_INVALIDATED = 4,  /* this node's copy was invalidated */
    DSM_TR_RECALLED = 5,     /* this node's writable copy was recalled by the home */
    DSM_TR_SERVED = 6,       /* as home: sent the page's data to a node */
    DSM_TR_PREFETCHED = 7,   /* a page arrived that nobody faulted on yet (prefetch) */
    DSM_TR_KERNEL_FAULT = 8, /* a system call's buffer made present (interposed syscalls) */
    DSM_TR_ALLOC = 9,        /* an allocation: page = first page, service_ns = pages (a label
                                for the tools, not a coherence event) */
};
#define DSM_TR_F_WRITE  1u
#define DSM_TR_F_RC     2u /* DSM_TR_ALLOC: the allocation is release-consistent */
#define DSM_TR_F_MALLOC 4u /* DSM_TR_ALLOC: from dsm_malloc (else the collective dsm_alloc) */
#define DSM_TR_NO_PEER  0xFFFFu

/* 32 bytes, little-endian on disk (the only byte order this runtime runs on). */
struct dsm_trace_rec {
    uint64_t t_ns;
    uint64_t page;
    uint32_t service_ns;
    uint32_t tid;
    uint16_t offset;
    uint16_t peer;
    uint16_t msgs;
    uint8_t kind;
    uint8_t flags;
};
_Static_assert(sizeof(struct dsm_trace_rec) == 32, "trace record layout is part of the format");

extern int dsm_trace_on;

/* Opens the node's file from DSM_TRACE (called in dsm_init after the region exists). 0, or a
 * DSM_E* code with err filled. */
int dsm_trace_open(int rank, int nodes, uint64_t base, uint64_t size, char *err, size_t errlen);
/* Writes every thread's pending records and closes the file. */
void dsm_trace_close(void);
void dsm_trace_rec(uint8_t kind, uint8_t flags, uint64_t page, uint64_t t_ns, uint64_t service_ns,
                   uint32_t offset, int peer, unsigned msgs);

#define DSM_TRACE(...)                                                                             \
    do {                                                                                           \
        if (__builtin_expect(dsm_trace_on, 0)) dsm_trace_rec(__VA_ARGS__);                         \
    } while (0)

#endif /* DSM_TRACE_H */

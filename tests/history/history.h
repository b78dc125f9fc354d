/*
 * history.h - operation histories of concurrent threads on shared words, and a checker that
 * decides whether a history is coherent (see history.c for the algorithm).
 *
 * A history is one log per thread: the operations it performed on a set of locations, in
 * program order, each with the value it read (or the old value an RMW returned) and the value
 * it wrote. Every write writes a value no other write to the same location writes (the
 * producer makes them unique; an RMW's new value is unique when RMWs are atomic), so each
 * read names the write it read from. The checker needs no DSM: history_run produces histories
 * on N nodes, history_check checks saved ones and proves on hand-made ones that it can fail.
 */
#ifndef HISTORY_H
#define HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    HK_READ = 1,  /* rd: the value read */
    HK_WRITE = 2, /* wr: the value written */
    HK_FADD = 3,  /* rd: the old value, wr: old + delta */
    HK_CAS = 4,   /* rd: the old value; ok: it succeeded, and then wr: the value written */
    HK_XCHG = 5,  /* rd: the old value, wr: the value written */
};

/* One operation, 24 bytes, the same on every node (logs travel between nodes and to files). */
typedef struct hev {
    uint8_t kind;
    uint8_t ok;   /* HK_CAS: 1 if it succeeded */
    uint16_t loc; /* which location */
    uint32_t aux; /* the producer's (history_run: how the access was made); ignored */
    uint64_t rd, wr;
} hev_t;

static inline int hev_reads(const hev_t *e)
{
    return e->kind != HK_WRITE;
}

static inline int hev_writes(const hev_t *e)
{
    return e->kind == HK_WRITE || e->kind == HK_FADD || e->kind == HK_XCHG ||
           (e->kind == HK_CAS && e->ok);
}

/* One thread's log. node/thread only name it in reports and statistics. */
typedef struct hist_thread {
    int node, thread;
    const hev_t *ev;
    size_t n;
} hist_thread_t;

typedef struct hist_stats {
    size_t ops;        /* operations checked */
    size_t reads;      /* operations that read (plain reads, RMWs, failed CASes) */
    size_t writes;     /* operations that wrote (plain writes and RMWs) */
    size_t rmws;       /* read-modify-writes that wrote */
    size_t cas_failed; /* compare-exchanges that failed (they only read) */
    size_t rf_init;    /* reads of the initial value */
    size_t rf_remote;  /* reads of a value written on another node */
    size_t rf_other;   /* reads of a value written by another thread (any node) */
    size_t chains;     /* per location: write sequences glued together by RMWs, summed */
    size_t violations; /* coherence violations found (0: the history is coherent) */
} hist_stats_t;

/* Checks per-location coherence of the history of nth threads over locations 0..nloc-1:
 *   - every value read was written (or is the initial value, 0);
 *   - no two writes to a location write the same value, and no two RMWs read the same value
 *     (either means an RMW was not atomic: a lost update);
 *   - there is one order of the writes to each location, with the initial value first, each
 *     RMW's write right after the write it read, and final[loc] (if final is not NULL) last,
 *     such that every thread's operations on the location, in program order, read and write
 *     along that order (each read returns the latest write before it).
 * Violations are described on out (the first max_reports of them; out may be NULL). Returns
 * the number of violations; fills *st (may be NULL). Checks operations with loc >= nloc as
 * violations too. */
size_t hist_check(const hist_thread_t *th, int nth, int nloc, const uint64_t *final, FILE *out,
                  int max_reports, hist_stats_t *st);

/* ---------------------------------------------------------------- files (history_run -o) */

#define HIST_MAGIC   0x31534948u /* "HIS1" */
#define HIST_MAXLOC  64
#define HIST_FINAL   "final.bin"
#define HIST_LOG_FMT "log.n%d.t%d.bin"

/* log.n<node>.t<thread>.bin: this header, then n hev_t. */
typedef struct hist_file_hdr {
    uint32_t magic, version;
    int32_t node, thread;
    uint64_t n;
} hist_file_hdr_t;

/* final.bin: this header, then nloc uint64_t (the values after the run). */
typedef struct hist_final_hdr {
    uint32_t magic, version;
    int32_t nodes, threads, nloc, pad;
    uint64_t seed, ops;
} hist_final_hdr_t;

#endif /* HISTORY_H */

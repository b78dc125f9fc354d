/*
 * model.h - the abstract system state explored by the model checker, and its transitions.
 *
 * The checker drives the real protocol (coherence/coh.c) and checks what it does, so this
 * header only describes what surrounds the protocol: the nodes' page states and copies, the
 * homes' directories and stores, the per-pair FIFO channels, the application's pending
 * accesses, and the bookkeeping the invariants need (the last completed write per page).
 * Page contents are abstracted to one small integer per copy: 0 is the all-zeros page, every
 * write stores a value that exists nowhere else.
 */
#ifndef DSM_MODEL_H
#define DSM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "coh.h"

#define MAXN   4    /* nodes */
#define MAXP   4    /* pages */
#define MAXQ   12   /* messages in one channel (a model limit, reported if reached) */
#define NOCOPY 0xff /* copy[][] of a node that has no copy mapped */
#define MAXVAL 30   /* largest canonical page value that fits the packed encoding */
#define MAXSEQ 31   /* ORDER_GLOBAL: most messages in flight at once (a model limit) */

/* Pending application accesses of a node on a page (one waiting reader, one waiting writer:
 * threads of the same kind are collapsed into one). */
#define PEND_R 1
#define PEND_W 2

struct mmsg {
    uint8_t type, flags, page, val; /* val: the payload, when coh_msg_has_payload */
    uint8_t seq; /* ORDER_GLOBAL only: rank among all messages in flight (0 = sent first) */
};

struct mchan {
    uint8_t n;
    struct mmsg m[MAXQ];
};

struct mstate {
    uint8_t ns[MAXN][MAXP];      /* enum coh_nstate */
    uint8_t pend[MAXN][MAXP];    /* PEND_* */
    uint8_t copy[MAXN][MAXP];    /* the value of the mapped copy, NOCOPY if none */
    uint8_t ops[MAXN];           /* application operations used (reads, writes, evictions) */
    struct coh_dir dir[MAXP];    /* at the page's home */
    uint8_t store[MAXP];         /* the home's backing copy */
    uint8_t lastw[MAXP];         /* the value of the last completed write (0: none yet) */
    struct mchan ch[MAXN][MAXN]; /* ch[src][dst], FIFO */
};

struct mconfig {
    int nodes, pages;
    int bound; /* operations per node; < 0: unbounded (no counters: every reachable state) */
    int total; /* > 0: also at most this many operations over all nodes (needs bound >= 0) */
    int home[MAXP];
    /* 0: a waiting thread re-runs coh_node_access when the page state changes (the contract
     * in coh.h); 1: it only waits until the state permits the access (never re-requests). */
    int wait_only;
    /* 0: directory fields that coh.c does not read in the current directory state (owner
     * outside EXCL/BUSY_WB, req and req_type outside BUSY_*, req_had and acks outside
     * BUSY_INV) are zeroed in the explored states, which merges states that differ only in
     * leftovers; every directory transition is run a second time with those fields set to
     * other values to check that coh.c indeed ignores them. 1: keep the struct verbatim. */
    int exact_dir;
    int order; /* ORDER_*: which deliveries the network may make */
};

/* Delivery orders. ORDER_PAIR is what coh.h assumes and what TCP and RDMA reliable
 * connections give: FIFO per ordered pair of nodes, any interleaving across pairs (so a
 * message may overtake an earlier one sent on another pair). ORDER_GLOBAL delivers every
 * message in the order it was sent, network-wide (no reordering at all): a subset of
 * ORDER_PAIR, explored to count what the reordering across pairs adds. ORDER_NONE lets any
 * in-flight message of a pair go first: it breaks the assumption, and the checker must then
 * find a violation (the self-test that FIFO is needed and that reorderings are explored). */
enum { ORDER_PAIR = 0, ORDER_GLOBAL = 1, ORDER_NONE = 2 };

/* Transition labels: kind | node << 3 | page << 5 | src << 7 | dst << 9 | index << 11 (index:
 * which message of the channel is delivered; always 0 except with ORDER_NONE). */
enum { T_READ = 0, T_WRITE, T_EVICT, T_RETRY_R, T_RETRY_W, T_DELIVER, T_KINDS };
#define LABEL(k, n, p, s, d) ((unsigned)((k) | (n) << 3 | (p) << 5 | (s) << 7 | (d) << 9))
#define LABEL_AT(l, i)       ((l) | (unsigned)(i) << 11)
#define L_INDEX(l)           (((l) >> 11) & 15u)
#define MAXLABELS            (MAXN * MAXP * 5 + MAXN * MAXN * MAXQ)
#define L_KIND(l)            ((l)&7u)
#define L_NODE(l)            (((l) >> 3) & 3u)
#define L_PAGE(l)            (((l) >> 5) & 3u)
#define L_SRC(l)             (((l) >> 7) & 3u)
#define L_DST(l)             (((l) >> 9) & 3u)
/* Progress without the application's help: what liveness may lean on (check.c). */
#define L_PROGRESS(l) (L_KIND(l) == T_DELIVER || L_KIND(l) == T_RETRY_R || L_KIND(l) == T_RETRY_W)

#define MODEL_NAME "model_check"
#define MODEL_INITIAL                                                                              \
    "every page I on every node, every directory SHARED without sharers and never written; v0 = "  \
    "the all-zeros page"

/* Results of model_step. */
enum { STEP_DISABLED = 0, STEP_OK = 1, STEP_VIOLATION = 2, STEP_LIMIT = 3 };

struct stepinfo {
    char why[512]; /* STEP_VIOLATION / STEP_LIMIT: what went wrong */
    char *log;     /* if set: a readable account of the step is appended here */
    size_t logsize;
    unsigned *fresh; /* if set: the next fresh write value (trace replay); else max + 1 */
};

void model_init(const struct mconfig *c, struct mstate *s);
/* Zeroes the fields of *d that have no meaning in its state (see exact_dir). */
void model_dir_normalize(struct coh_dir *d);
/* Fills *labels with every label that may be enabled in this configuration; returns count. */
int model_labels(const struct mconfig *c, unsigned *labels);
/* Applies one transition; out is a full copy of in, changed. */
int model_step(const struct mconfig *c, const struct mstate *in, unsigned label, struct mstate *out,
               struct stepinfo *info);
/* Renames page values (except 0) in order of first appearance: states equal up to renaming
 * become identical. */
void model_canon(const struct mconfig *c, struct mstate *s);
/* The state invariants; NULL if they hold, else a description (in buf). */
const char *model_invariants(const struct mconfig *c, const struct mstate *s, char *buf,
                             size_t len);
/* No pending access and every channel empty. */
int model_quiescent(const struct mconfig *c, const struct mstate *s);

/* Packed encodings. proj = 1 drops page values, op counters and ORDER_GLOBAL message ranks (the
 * "protocol state": node states, waiting accesses, directories, channel contents).
 * Buffers need ENC_MAX + 8 bytes: the codec reads and writes 8-byte words. */
#define ENC_MAX 256
int model_encode(const struct mconfig *c, const struct mstate *s, int proj, uint8_t *buf);
void model_decode(const struct mconfig *c, const uint8_t *buf, struct mstate *s);

/* Readable renderings. */
void model_describe(const struct mconfig *c, const struct mstate *s, char *buf, size_t len);
void model_diff(const struct mconfig *c, const struct mstate *a, const struct mstate *b, char *buf,
                size_t len);
void model_label_name(unsigned label, char *buf, size_t len);

#endif /* DSM_MODEL_H */

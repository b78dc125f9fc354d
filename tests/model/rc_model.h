/*
 * rc_model.h - the abstract system explored by rc_model_check: the release-consistency
 * protocol (coherence/rc.c, linked unchanged) under a data-race-free program with locks and
 * barriers.
 *
 * check.c is shared with the single-writer model (model.h); this header gives the same names
 * (struct mstate, struct mconfig, model_step, ...) for the RC system, and check.c is compiled a
 * second time with -DMODEL_RC. README.md says what is modelled and why.
 *
 * The program. Each page has MAXB "bytes" (small integers standing for byte contents): byte 0
 * is written only under the one lock, byte 1 + n only by node n. The nodes go through phases
 * together, separated by barriers: WRITE (every node may write its own byte of any page and
 * read byte 0 and its own byte), READ (every node may read every byte, nobody writes), LOCK
 * (the lock holder may read every byte and write byte 0; lock and unlock are the program's
 * choice). Every access of this program is ordered by happens-before with every conflicting
 * access, so it is data-race-free, and release consistency promises it sequential
 * consistency: every read returns the last write of each byte, exactly.
 *
 * Threads. One application thread per node by default. With --threads 2 (mconfig.threads) each
 * node n has a second thread in the LOCK phase only, which reads and writes byte 1 + n of any
 * page, without the lock: nobody else touches that byte in the LOCK phase, and the lock holder
 * then reads byte 0 only, so the program stays data-race-free. The second thread waits for its
 * own accesses (PEND_R2/PEND_W2) independently of the first, so a node can take the lock
 * (an acquire) while its other thread waits for a page - which one thread never does. The
 * barrier waits for the second thread to be idle, as a barrier of both threads would.
 */
#ifndef DSM_RC_MODEL_H
#define DSM_RC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "coh.h"
#include "rc.h"

#define MAXN   3 /* nodes */
#define MAXP   2 /* pages */
#define MAXB   (MAXN + 1)
#define MAXQ   12   /* messages in one channel (a model limit, reported if reached) */
#define MAXVAL 60   /* largest canonical byte value (a model limit, reported if reached) */
#define MAXSEQ 31   /* ORDER_GLOBAL: most messages in flight at once (a model limit) */
#define NOLOCK 0xff /* holder when the lock is free */

/* Waiting accesses of a node on a page: the first thread's, and (--threads 2) the second's. */
#define PEND_R  1
#define PEND_W  2
#define PEND_R2 4
#define PEND_W2 8

/* Mappings of a node's copy of a page. */
enum { MAP_NONE = 0, MAP_RO = 1, MAP_RW = 2 };

/* Program phases, in the order barriers move through them. */
enum { PH_WRITE = 0, PH_READ = 1, PH_LOCK = 2, PH_COUNT };

/* A node's synchronisation state (its one thread). */
enum {
    SY_IDLE = 0,      /* running the program */
    SY_UNLOCKING = 1, /* released; the lock goes when every write-back is acknowledged */
    SY_BAR_REL = 2,   /* in a barrier: released, waiting for its write-back acks */
    SY_BAR_IN = 3,    /* in a barrier: arrived, waiting for the others */
    SY_BAR_ACQ = 4,   /* leaving a barrier: acquire next */
};

struct mmsg {
    uint8_t type, flags, page;
    uint8_t arg;       /* writer set (RC_DATA, RC_WREG_ACK, RC_CLASS) */
    uint8_t dmask;     /* RC_DIFF without FULL: which bytes the diff carries */
    uint8_t val[MAXB]; /* RC_DATA: the page; RC_DIFF: the bytes (all if FULL); else zeros */
    uint8_t seq;       /* ORDER_GLOBAL only: rank among all messages in flight */
};

struct mchan {
    uint8_t n;
    struct mmsg m[MAXQ];
};

struct mstate {
    uint8_t ns[MAXN][MAXP]; /* enum coh_nstate */
    struct rc_node x[MAXN][MAXP];
    uint8_t pend[MAXN][MAXP];
    uint8_t map[MAXN][MAXP];        /* MAP_* */
    uint8_t copy[MAXN][MAXP][MAXB]; /* the mapped copy (zeros when unmapped) */
    uint8_t hastwin[MAXN][MAXP];
    uint8_t twin[MAXN][MAXP][MAXB];
    uint8_t ops[MAXN];   /* application accesses used (reads, writes, locks) */
    uint8_t outst[MAXN]; /* RC_DIFFs sent and not yet acknowledged */
    uint8_t sync[MAXN];  /* SY_* */
    uint8_t phase;       /* PH_* */
    uint8_t holder;      /* the node holding the lock, NOLOCK */
    struct rc_dir dir[MAXP];
    /* The shared directory words (one-sided registration, rc.h): readers (set by themselves
     * or published by the home), writers the home published before handling their
     * registration, and writers that set their bit themselves (one-sided writers). */
    uint8_t shr[MAXP], shw[MAXP], shs[MAXP];
    /* Watchers (rc.h): nodes that set their bit in every home's watchers word - at their
     * first acquire, as the engine does - and from then on read the writers word of each copy
     * at every acquire. */
    uint8_t watch;
    uint8_t store[MAXP][MAXB];
    uint8_t lastw[MAXP][MAXB]; /* the value of the last write of each byte (0: never written) */
    struct mchan ch[MAXN][MAXN];
};

struct mconfig {
    int nodes, pages;
    int bound; /* accesses and lock acquisitions per node; < 0: unbounded */
    int total; /* > 0: also at most this many over all nodes */
    int home[MAXP];
    int wait_only, exact_dir; /* options of the single-writer model; refused here */
    int order;                /* ORDER_* */
    /* One copy at the home (DSM_HOME_STORE=one): a home's mapped copy of its page and the
     * store are the same memory, its write-backs to itself are not applied and it never
     * flushes. */
    int one_copy;
    /* One-sided page service: accesses from nodes other than the home carry COH_ACC_FETCH
     * while the node has no write-back in flight (the engine's rule); fetch_early drops that
     * rule (a self-test: it must be caught). Without one_copy it is the other self-test. */
    int onesided, fetch_early;
    /* With onesided, a node's first read registers it as a reader in the home's shared
     * directory words instead of asking the home (rc_node_may_register), and with one_copy too
     * its first write registers it as a writer there (rc_node_may_register_writer) where the
     * words allow it; register_blind does
     * so without reading the writers word, and no node watches the word at its acquires
     * (which would read it again): a self-test, it must be caught. */
    int register_blind;
    /* With onesided: nodes (a bit each) that run on a host of their own, as in a job over
     * several machines: they reach other nodes' pages, and other nodes theirs, by message only,
     * and never watch a shared directory. */
    unsigned remote;
    /* With onesided: no shared directory words (the engine when it cannot map them): pages are
     * still taken from the home's store, but every registration is a message and no node
     * watches. */
    int no_dir;
    /* The program may also call dsm_acquire alone at any point (after writing, say: the
     * acquire then releases the node's changes to pages others write and drops them). */
    int acquire_op;
    /* Application threads per node, 1 or 2: the second exists in the LOCK phase only (above). */
    int threads;
};

enum { ORDER_PAIR = 0, ORDER_GLOBAL = 1, ORDER_NONE = 2 };

/* Transition labels: kind | node << 3 | page << 5 | src << 7 | dst << 9 | index << 11.
 * T_SYNC's page field says which operation: 0 lock, 1 unlock, 2 barrier. Accesses and their
 * retries carry the thread (0 or 1) in the src field (L_THREAD). */
enum {
    T_READ = 0,
    T_WRITE = 1,
    T_SYNC = 2,    /* the program locks, unlocks or enters a barrier */
    T_RETRY_R = 3, /* a waiting access re-runs rc_node_access */
    T_RETRY_W = 4,
    T_DELIVER = 5,
    T_SYNC_GO = 6,  /* a node's synchronisation moves on by itself (acks in, or acquire) */
    T_BAR_DONE = 7, /* every node has arrived: the barrier opens, the next phase begins */
    T_KINDS
};
#define LABEL(k, n, p, s, d) ((unsigned)((k) | (n) << 3 | (p) << 5 | (s) << 7 | (d) << 9))
#define LABEL_AT(l, i)       ((l) | (unsigned)(i) << 11)
#define L_INDEX(l)           (((l) >> 11) & 15u)
#define LABEL_T(k, n, p, t)  LABEL(k, n, p, t, 0)
#define MAXLABELS            (2 * MAXN * MAXP * 4 + MAXN * 5 + 1 + MAXN * MAXN * MAXQ)
#define L_KIND(l)            ((l)&7u)
#define L_NODE(l)            (((l) >> 3) & 3u)
#define L_PAGE(l)            (((l) >> 5) & 3u)
#define L_SRC(l)             (((l) >> 7) & 3u)
#define L_DST(l)             (((l) >> 9) & 3u)
#define L_THREAD(l)          L_SRC(l)
/* Progress without the program's help: what liveness may lean on. */
#define L_PROGRESS(l)                                                                              \
    (L_KIND(l) == T_DELIVER || L_KIND(l) == T_RETRY_R || L_KIND(l) == T_RETRY_W ||                 \
     L_KIND(l) == T_SYNC_GO || L_KIND(l) == T_BAR_DONE)

#define MODEL_NAME "rc_model_check"
#define MODEL_INITIAL                                                                              \
    "every page I on every node, every directory without readers or writers, every byte 0, "       \
    "phase WRITE, the lock free"

enum { STEP_DISABLED = 0, STEP_OK = 1, STEP_VIOLATION = 2, STEP_LIMIT = 3 };

struct stepinfo {
    char why[512];
    char *log;
    size_t logsize;
    unsigned *fresh; /* if set: the next fresh write value (trace replay); else max + 1 */
};

void model_init(const struct mconfig *c, struct mstate *s);
int model_labels(const struct mconfig *c, unsigned *labels);
int model_step(const struct mconfig *c, const struct mstate *in, unsigned label, struct mstate *out,
               struct stepinfo *info);
void model_canon(const struct mconfig *c, struct mstate *s);
const char *model_invariants(const struct mconfig *c, const struct mstate *s, char *buf,
                             size_t len);
int model_quiescent(const struct mconfig *c, const struct mstate *s);

#define ENC_MAX 1600
int model_encode(const struct mconfig *c, const struct mstate *s, int proj, uint8_t *buf);
void model_decode(const struct mconfig *c, const uint8_t *buf, struct mstate *s);

void model_describe(const struct mconfig *c, const struct mstate *s, char *buf, size_t len);
void model_diff(const struct mconfig *c, const struct mstate *a, const struct mstate *b, char *buf,
                size_t len);
void model_label_name(unsigned label, char *buf, size_t len);

#endif /* DSM_RC_MODEL_H */

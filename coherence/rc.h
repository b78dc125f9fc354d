/*
 * rc.h - home-based release consistency with multiple writers, as pure state machines.
 *
 * Between synchronisation points a node writes its cached copy of a page freely. The first
 * write of an interval keeps a twin of the page (a write-protect fault, no message); at a
 * release the difference against the twin goes to the page's home, which applies it to its
 * store. Writers of disjoint bytes of a page therefore merge at the home; overlapping
 * concurrent writes are a data race and the program's bug.
 *
 * Which cached pages an acquire must drop is decided by a classification directory (as in
 * ArgoDSM): the home of each page records which nodes have read it and which have written it
 * (both sets only grow until the page is freed). A node drops at an acquire exactly the
 * cached pages that some other node writes; private pages, read-only pages and pages only
 * this node writes stay cached across acquires. A node learns a page's writer set with every
 * reply from the home, and when a new writer registers, the home tells every node that may
 * cache the page (CLASS) and waits for all of them before it lets the writer go on, so no
 * node can acquire a writer's release without knowing the writer. A page with a single writer
 * needs no twin and no diff: its writer sends the whole page at a release; when a second
 * writer registers, the first one sends what it has so far and starts keeping twins.
 *
 * A release normally write-protects what it sends, so that the next write faults and shows
 * the page is dirty again. Write-protecting costs a TLB shootdown on every CPU that runs a
 * thread of the process (an interrupt to the other vCPU: 12% of a dirty barrier's samples),
 * and the fault that follows 20-30 us. So a page written again within RC_AGAIN_ACQS intervals
 * of the release that protected it is kept writable from then on, with a twin even if it has
 * a single writer (a 4 KiB copy at that write), for its next RC_KEEP_TWINNED releases, which
 * every release that finds it written renews: each sends the diff and brings the twin up to
 * what it sent in one pass (COH_A_DIFF_KEEP), so a write that comes later still differs from
 * the twin. At an acquire such a copy cannot simply be dropped or overwritten (it may hold
 * changes not yet sent); where the engine can read the home's store in place
 * (COH_ACC_REFRESH) it merges instead (COH_A_MERGE): the bytes this node has not changed take
 * the store's value, the ones it changed stay. False sharing then costs a diff and a merge per
 * interval, no fault and no protection (workload (d): the write-protect's TLB shootdown was
 * most of a round).
 *
 * A home whose view of its page is its store (one copy at the home, COH_ACC_INPLACE) needs none
 * of this for that page: diffs from other nodes land in what its threads see, and its own
 * writes are in the store as they are made. It keeps its copy across acquires and, once a
 * writer, writes in place for good: no twin, no write-back, no protection, whoever else writes
 * the page (false sharing with the home costs the home nothing).
 *
 * Where the engine can overwrite a copy in place from the home's store (nodes on one host,
 * COH_ACC_REFRESH), a page that is read again in the interval after an acquire dropped it is
 * refreshed, not dropped, at the next RC_REFRESHES acquires: a stencil's boundary rows then
 * cost a copy per interval instead of a fault, and the drop (an madvise that flushes the TLB
 * of every CPU running the process).
 *
 * Like coh.h: no I/O, no clock, no allocation. Events in (an access, a message, a release, an
 * acquire), actions out. Channels between node pairs are reliable and FIFO.
 */
#ifndef DSM_RC_H
#define DSM_RC_H

#include <stdint.h>

#include "coh.h"

/* Message types (messages.h: numbers, flags, payloads), numbered after every other wire type. */
enum rc_mtype {
#define RC_X(n, v, h, f, p) RC_##n = v,
    COH_RC_MESSAGES(RC_X)
#undef RC_X
        RC_MTYPE_END = 29
};
#define RC_MTYPE_FIRST RC_GET

#define RC_F_WRITE COH_F_WRITE /* RC_GET */
#define RC_F_FULL  COH_F_FULL  /* RC_DIFF: payload is the whole page */
#define RC_F_ZERO  COH_F_ZERO  /* RC_DATA: the page is all zeros, no payload */

/* Node-side per-page state beyond the coh_nstate code: I (no copy), S (read-only copy),
 * M (writable, written this interval), IS_D (fetching), IM_AD (fetching to write, or - with
 * RC_N_WREG - registering as a writer after an acquire dropped the copy), SM_A (registering as
 * a writer while holding a readable copy). */
struct rc_node {
    uint64_t writers; /* the writer set as last heard from the home */
    uint16_t flags;   /* RC_N_* */
    uint8_t keep;     /* (at most 15) releases left that send this page (its diff with the twin
                         kept) and leave it writable */
    uint8_t hot;      /* acquires left that refresh this copy in place instead of dropping it */
    uint8_t idle;     /* with RC_N_AGAIN: acquires since that release (RC_AGAIN_ACQS at most) */
    uint8_t pad[3];   /* named, so that copies keep them zero: the model checker hashes states */
};
#define RC_N_REG   0x1 /* this node is a registered writer */
#define RC_N_TWIN  0x2 /* a twin exists (the page has other writers) */
#define RC_N_STALE 0x4 /* an acquire happened while a request was in flight: distrust its data */
#define RC_N_OWNED                                                                                 \
    0x8 /* this node homes the page and is its only writer: it keeps writing its                   \
           copy across releases with nothing to send; the home copies it into                      \
           its store when another node asks (rc_home_flush) */
#define RC_N_READER                                                                                \
    0x10 /* the home counts this node among the page's readers (sticky until the page is freed),   \
            so it tells this node of every new writer (CLASS) before the writer may write, even    \
            while this node holds no copy: x->writers stays current, and a copy taken straight     \
            from the home's store (COH_ACC_FETCH) needs no message */

#define RC_N_SELFREG                                                                               \
    0x40 /* this node set its bit in the home's one-sided writers word                             \
            (rc_node_registered_writer): from then on it twins whenever it writes the page, even   \
            as its only writer, so that no other writer has to tell it to start */
#define RC_N_AGAIN                                                                                 \
    0x20 /* the last release wrote this page back and protected it: a write in one of the next     \
            RC_AGAIN_ACQS intervals shows it is written again and again (keep) */
#ifndef RC_AGAIN_ACQS /* (the model checker builds with fewer: a smaller state space) */
#define RC_AGAIN_ACQS                                                                              \
    4 /* a blocked LU writes a block every third interval or so; protecting it at each release     \
         and faulting at its next write cost it 6 us (the protection: every change of a page       \
         table entry is a trap to the hypervisor here) and 20-30 us (the fault), where keeping     \
         it writable costs a compare of 4 KiB at each release and a merge at each acquire */
#endif
#define RC_N_WREG                                                                                  \
    0x80 /* IM_AD reached from SM_A: the request in flight is a writer registration (RC_WREG),     \
            whose copy an acquire dropped (another thread of the node could have read it stale) */
#define RC_N_INPLACE                                                                               \
    0x100 /* this node homes the page and its view of it is the store (COH_ACC_INPLACE, recorded   \
             at every access): it never drops its copy at an acquire, since every released diff    \
             is applied to what its threads see, and as a writer it never twins, sends or          \
             write-protects, since its writes are in the store as they are made (RC_N_OWNED        \
             for good, whoever else writes the page) */
#define RC_N_DROPPED                                                                               \
    0x200 /* an acquire dropped this node's copy: taking the page again shows it is read interval  \
             after interval, and the next RC_REFRESHES acquires that would drop it refresh it in   \
             place instead, where the engine can (COH_ACC_REFRESH) */
#ifndef RC_REFRESHES /* (the model checker builds with fewer: a smaller state space) */
#define RC_REFRESHES                                                                               \
    8 /* a refresh is a pread of 4 KiB (1-2 us), a fault it saves 20-30 us: a page no longer       \
         read costs at most 8 refreshes before it is dropped */
#endif
#ifndef RC_KEEP_TWINNED /* (the model checker builds with fewer: a smaller state space) */
#define RC_KEEP_TWINNED                                                                            \
    15 /* a diff of an unchanged page is a compare and no message, a merge a read of 4 KiB: a      \
          page that stopped being written costs at most that 15 times; a falsely shared page       \
          written every interval is protected (and faults) once in 16 */
#endif

/* Home directory entry. */
struct rc_dir {
    uint64_t readers, writers;   /* sticky until the page is freed */
    uint64_t acks_from;          /* CLASS acks still awaited (busy while non-zero) */
    uint64_t pend_get, pend_reg; /* registrations queued while busy (GET+WRITE, WREG) */
    uint8_t req, req_type;       /* busy: the node registering and how it asked */
    uint8_t written;             /* 0: the store was never written, the page is all zeros */
    uint8_t rr;                  /* round-robin cursor over queued requesters */
    uint64_t watchers;           /* nodes that read the shared writers words at every acquire
                                    (rc_dir_watchers_seen): told of a new writer only if they
                                    write the page without a twin */
    uint64_t selfreg;            /* writers that registered in the shared one-sided writers word
                                    (rc_dir_writers_seen): they always keep a twin */
};

/* Whether a message type belongs to this protocol, and whether it goes to the home. */
int rc_msg_is_rc(unsigned type);
int rc_msg_to_home(unsigned type);
const char *rc_mtype_name(unsigned type);

/* A local thread needs read or write access (how: COH_ACC_* bits): COH_ACCESS_OK or
 * COH_ACCESS_WAIT. With COH_ACC_FETCH, a node without a copy that the home knows as a reader
 * (and as a writer, to write) takes the page from the home's store itself (COH_A_FETCH). */
int rc_node_access(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page, unsigned how,
                   struct coh_out *out);
/* A home -> node message. 0, or COH_EPROTO with *why. */
int rc_node_recv(uint8_t *st, struct rc_node *x, int self, const struct coh_msg *m,
                 struct coh_out *out, const char **why);
/* Release: a page written this interval goes back to its home (diff or whole page) and stays
 * cached read-only, or writable (with its twin) while it has `keep` releases left; a page
 * that was written (no COH_REL_CLEAN in `how`) gets its whole `keep` back. Nothing for other
 * states. */
void rc_node_release(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page,
                     unsigned how, struct coh_out *out);
/* The same, but the copy always ends read-only: for a copy about to be dropped (eviction),
 * which a thread of this node must not be able to write after its contents were sent. */
void rc_node_write_back(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page,
                        struct coh_out *out);
/* Acquire: drop the copy if another node writes the page (sending this node's own changes
 * first), or, with COH_ACC_REFRESH in `how`, merge the home's store into a writable copy with
 * a twin, and overwrite a read-only copy read again after an earlier acquire dropped it
 * (RC_N_DROPPED, `hot`) in place with the home's store; a request in flight is marked so that
 * its answer is not trusted. */
void rc_node_acquire(uint8_t *st, struct rc_node *x, int self, int home, uint64_t page,
                     unsigned how, struct coh_out *out);

/* One-sided reader registration (a shared directory: nodes on one host, engine.c). Where
 * node and home can both update two words of the page's directory entry atomically - the
 * readers and the writers - a node's first read of a page needs no message: it ORs its bit
 * into the readers word, then reads the writers word, and takes the page from the home's
 * store (COH_A_FETCH). The home, before it handles a writer's registration, ORs the writer
 * into the writers word and then reads the readers word into its directory (rc_dir_publish,
 * rc_dir_readers_seen). Both sides write, then read the other's word, with sequentially
 * consistent atomics: of a reader and a writer that register at the same time, either the
 * home sees the reader (and tells it of the writer with CLASS before the writer may write, as
 * for any reader) or the reader sees the writer (and drops its copy at its next acquire).
 * Neither can miss the other. */
/* Whether this access may register the node as a reader one-sided: a read, of a page it has no
 * copy of and was never registered for, that may be taken from the home's store
 * (COH_ACC_FETCH). */
int rc_node_may_register(uint8_t st, const struct rc_node *x, unsigned how);
/* The node's bit is in the home's readers word now, and `writers` is the writers word as read
 * after that: the node is a reader the home will tell of every new writer (RC_N_READER). */
void rc_node_registered(struct rc_node *x, uint64_t writers);
/* The writers to add to the shared writers word before the home handles m (a writer's
 * registration: its sender, if not a writer yet), 0 for none. */
uint64_t rc_dir_publish(const struct rc_dir *d, const struct coh_msg *m);
/* The shared readers word, read after that: nodes that registered one-sided. */
void rc_dir_readers_seen(struct rc_dir *d, uint64_t readers);

/* Watchers (a shared directory, engine.c). A node that can read a co-located home's writers
 * word reads it for each of its copies of that home's pages at every acquire
 * (rc_node_watch), so the home need not tell it of a new writer with CLASS: the home publishes
 * the writer in the word before the writer may write, so an acquire that follows the writer's
 * release sees it there. The node says so in a word of the home's shared directory (it sets
 * its bit before it first relies on it); the home takes that word in (rc_dir_watchers_seen)
 * and sends CLASS to a watcher only if it writes the page: a writer must learn of the others
 * at once, to start keeping a twin. A registration then needs no other node's CPU unless
 * the page has other writers (the six-step FFT's transposes: each home writes pages the other
 * node has read, 41 us a write fault when the reader had to answer). */
/* The writers word as read at an acquire, before rc_node_acquire. */
void rc_node_watch(struct rc_node *x, uint64_t writers);
/* The nodes that watch this home's writers word (never the home itself). */
void rc_dir_watchers_seen(struct rc_dir *d, uint64_t watchers);

/* One-sided writer registration (a shared directory whose home's view of its pages is its
 * store: nodes on one host, engine.c). A node's first write of a page homed on its host need
 * not wait for the home either. It sets RC_N_SELFREG (it will keep a twin at every write of
 * the page from now on), ORs its bit into the readers word and into a third word of the
 * page's entry, the one-sided writers, and then reads the readers, the writers, the one-sided
 * writers and the home's watchers word. It may write at once if every other node those words
 * name will learn of it without being told: the home (its view is its store, so it never
 * drops a copy and never sends a page), and watchers that do not write the page or write it
 * with twins (they read the writers words at their next acquire; with a twin, a second
 * writer changes nothing in what they send). Any other node - a reader on another host, a
 * node that has not watched yet, a writer that sends its page whole - must be told before
 * this node writes: it registers by message as before, and the home sends CLASS where needed.
 * The home, for its part, publishes every reader and writer it registers by message in the
 * readers and writers words before it reads the one-sided writers word (rc_dir_publish,
 * rc_dir_publish_reader, rc_dir_writers_seen): of a one-sided writer and a node registering
 * by message at the same time, one sees the other, as for readers. The home takes one-sided
 * writers as writers of the page (a diff from them is expected, a reply carries them), and
 * does not send them CLASS when they watch, since they twin already. (Radix sort's scattered
 * permutation: every page of the output is first written by both nodes in the same interval,
 * each first write a registration the busy home or the other writer had to answer, 40-50 us
 * at p50.) */
/* Whether this access may register the node as a writer one-sided: a write of a page it is
 * not registered to write and has not tried to register for this way before, that it holds
 * read-only or may take from the home's store (COH_ACC_FETCH). */
int rc_node_may_register_writer(uint8_t st, const struct rc_node *x, unsigned how);
/* The node's bit is in the page's shared readers and one-sided writers words now, and the
 * words were read after that. 1: the node is a registered writer (RC_N_REG) and writes
 * without a message; 0: some node must be told first, and the access asks the home. */
int rc_node_registered_writer(struct rc_node *x, int self, int home, uint64_t readers,
                              uint64_t writers, uint64_t selfreg, uint64_t watchers);
/* The reader to add to the shared readers word before the home handles m (a request from a
 * node it does not count as a reader yet), 0 for none. */
uint64_t rc_dir_publish_reader(const struct rc_dir *d, const struct coh_msg *m);
/* The shared one-sided writers word, read after the home published what m registers. */
void rc_dir_writers_seen(struct rc_dir *d, uint64_t selfreg);

/* Whether the home must copy its own writable copy into its store before it serves a
 * request from another node (the page is RC_N_OWNED on the home's node side). */
int rc_home_flush(const uint8_t *st, const struct rc_node *x);

void rc_dir_init(struct rc_dir *d);
/* A node -> home message. 0, or COH_EPROTO with *why. */
int rc_dir_recv(struct rc_dir *d, int home, const struct coh_msg *m, struct coh_out *out,
                const char **why);
int rc_dir_idle(const struct rc_dir *d);

#endif /* DSM_RC_H */

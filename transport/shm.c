/*
 * shm.c - frames between nodes on the same host through shared-memory rings (see shm.h).
 *
 * This node's file: a header page, then one ring per possible sender at a fixed offset.
 *   header page: magic, nodes, rank; `sleeping` on a cache line of its own.
 *   ring (producer p): `tail` (written by p) and `head` (written by this node) on separate
 *   cache lines, then the byte length of each slot's frame, then SLOTS slots of one whole frame
 *   each (DSM_RDMA_STRIDE: header + the largest payload, like an RDMA receive buffer).
 * The producer copies a frame into slot tail % SLOTS and stores its length; flush publishes
 * what was written with a release store of tail (as TCP sends only at flush, a batch becomes
 * visible at once); the consumer acquires tail, checks and delivers the frame in
 * place, and only then releases head + 1, so a slot is never rewritten while it is read.
 * A frame that finds the ring full waits in the sender's backlog (tp_common.h), drained by
 * flush and poll: a send never blocks and never drops.
 *
 * Waking: the consumer's service thread, about to sleep (wait with arm), stores sleeping = 1,
 * then looks at every ring once more; a producer stores tail, then reads sleeping. Both sides
 * put a sequentially consistent fence between their store and their load (Dekker), so either
 * the consumer sees the frame or the producer sees the flag; the producer that sees it swaps
 * it back to 0 and writes one byte into the doorbell. A polling consumer costs producers one
 * fence and one load per frame, and no system call.
 *
 * In place: a frame is checked and delivered from the ring, not copied out. A sender could
 * rewrite a slot between the check and the use only by breaking the ring's rules on purpose,
 * and a process that can open this node's files through /proc can already read and write
 * all of its memory; the check catches what matters, a broken or mismatched sender.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsm.h"
#include "net.h"
#include "rdma_logic.h"
#include "shm.h"
#include "tp_common.h"

#define PAGE        4096u
#define SLOTS       1024u /* 4 MiB a ring (transport/README.md, "Memory") */
#define STRIDE      DSM_RDMA_STRIDE
#define RING_HDR    (2 * PAGE)
#define RING_BYTES  ((size_t)RING_HDR + (size_t)SLOTS * STRIDE)
#define SHM_MAGIC   0x75666473686d3031ull /* "ufdshm01" */
#define BL_MIN      (64u << 10)
#define DRAIN_MS    1000
#define SPIN_CHECKS 4096 /* destroy: ring-full retries between looks at the clock */
#define BASE_EVERY  64u  /* see quiet_base */

struct file_hdr {
    uint64_t magic;
    uint32_t nodes, rank;
    uint8_t pad[48];
    _Atomic uint32_t sleeping; /* the owner's service thread is (about to be) asleep */
};

struct ring {
    _Atomic uint64_t tail;     /* frames published (producer) */
    _Atomic uint32_t attached; /* the producer sends everything for us through this ring */
    uint8_t pad1[52];
    _Atomic uint64_t head; /* frames consumed (consumer) */
    uint8_t pad2[56];
    uint32_t len[SLOTS]; /* bytes of the frame in each slot */
};
_Static_assert(sizeof(struct ring) <= RING_HDR, "ring header fits its page");

static size_t ring_off(int producer)
{
    return PAGE + (size_t)producer * RING_BYTES;
}

size_t dsm_shm_slot_offset(int producer, unsigned slot)
{
    return ring_off(producer) + RING_HDR + (size_t)(slot % SLOTS) * STRIDE;
}

static uint8_t *slot_of(struct ring *r, uint64_t i)
{
    return (uint8_t *)r + RING_HDR + (size_t)(i % SLOTS) * STRIDE;
}

struct shm_peer {
    /* sending to this peer (routed) */
    int route;
    struct dsm_tp_loss loss;
    uint8_t *map; /* the peer's file, [0, ring_off(me) + RING_BYTES) */
    size_t maplen;
    struct file_hdr *hdr;
    struct ring *out;     /* our ring in its file */
    uint64_t tail;        /* frames written into out (the next goes to slot tail) */
    uint64_t published;   /* out->tail as last stored: the frames the peer may read */
    uint64_t head_seen;   /* out->head at the last look */
    int bell;             /* its doorbell's write end */
    struct dsm_frameq bl; /* frames that found the ring full */
    /* receiving from it */
    struct ring *in; /* its ring in our file */
    struct dsm_wire_limits lim;
    int in_mapped;   /* its ring is attached and mapped in whole here */
    _Atomic int bad; /* it wrote a corrupt frame: its ring is no longer read (wait reads it) */
};

struct dsm_shm {
    struct dsm_tp tp; /* first: the runtime holds a pointer to this */
    struct dsm_tp *base;
    dsm_tp_deliver_fn deliver;
    dsm_tp_lost_fn lost;
    void *cb_ctx;
    int fd; /* our file */
    uint8_t *map;
    size_t len;
    struct file_hdr *hdr;
    int bell[2]; /* our doorbell: [0] watched by the base's wait, [1] opened by peers */
    uint8_t boot[16];
    struct shm_peer *peers;
    int routes;
    /* Every peer is on this host, both ways: the base only carries losses (a closed
     * connection), so poll looks at it only every BASE_EVERY calls, or when wait saw it
     * readable, instead of a system call per poll. */
    int quiet_base;
    _Atomic int base_hint; /* set by wait (service thread), taken by poll */
    unsigned polls;
    int in_poll, losses, closing;
};

/* Touches every page of [p, p + len) from user mode, writing each (the byte it holds, so
 * nothing changes: only for memory no other process writes) or reading it. Populating a mapping
 * (MADV_POPULATE_*) is not enough on every machine: under a hypervisor that shadows the guest's
 * page tables (this project's standard VM), the first user-mode access of each page still exits to
 * the hypervisor, 5-13 us a page (tools: a populated 8 MiB memfd mapping, first pass 5.3 us a page
 * with no guest fault, second 0.02). In a ring every slot is a page of its own, so the job's first
 * 1024 messages each way paid it twice - an empty barrier took 20-25 us instead of 1.7 for the
 * first 25 ms of every job. */
static void touch_pages(uint8_t *p, size_t len, int write)
{
    for (size_t o = 0; o < len; o += PAGE) {
        volatile uint8_t *b = p + o;
        uint8_t v = *b;
        if (write) *b = v;
    }
}

static struct dsm_shm *S(struct dsm_tp *tp)
{
    return (struct dsm_shm *)tp;
}

/* Marks peer i lost (once), to be reported by the next poll. */
static void mark_lost(struct dsm_shm *s, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mark_lost(struct dsm_shm *s, int i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (dsm_tp_loss_mark(&s->peers[i].loss, fmt, ap)) s->losses++;
    va_end(ap);
}

/* The runtime reads the base's counters as cnt, the rings' as ring_cnt. */
static void sync_cnt(struct dsm_shm *s)
{
    s->tp.cnt = s->base->cnt;
}

/* ---------------------------------------------------------------- opening a peer's files */

int dsm_shm_boot_id(uint8_t out[16])
{
    char text[64];
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return -1;
    size_t got = 0;
    const char *end;
    return sodium_hex2bin(out, 16, text, (size_t)n, "-", &got, &end) == 0 && got == 16 ? 0 : -1;
}

int dsm_shm_open_peer_fd(uint32_t pid, uint32_t fd, uint64_t ino, uint64_t dev, uint64_t size,
                         int flags, char *why, size_t whylen)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%" PRIu32 "/fd/%" PRIu32, pid, fd);
    int pfd = open(path, O_PATH | O_CLOEXEC);
    if (pfd < 0) {
        snprintf(why, whylen,
                 "%s cannot be opened here (%s; it takes the same user or root, and one pid "
                 "namespace)",
                 path, strerror(errno));
        return -1;
    }
    struct stat st;
    int fifo = size == UINT64_MAX;
    if (fstat(pfd, &st) < 0 || (fifo ? !S_ISFIFO(st.st_mode) : !S_ISREG(st.st_mode)) ||
        (uint64_t)st.st_ino != ino || (uint64_t)st.st_dev != dev ||
        (!fifo && (uint64_t)st.st_size != size)) {
        snprintf(why, whylen, "%s is not the announced %s", path, fifo ? "pipe" : "file");
        close(pfd);
        return -1;
    }
    char again[64];
    snprintf(again, sizeof again, "/proc/self/fd/%d", pfd);
    int out = open(again, flags | O_CLOEXEC);
    int e = errno;
    close(pfd);
    if (out < 0) snprintf(why, whylen, "%s cannot be opened here (%s)", path, strerror(e));
    return out;
}

/* ---------------------------------------------------------------- setting up */

int dsm_shm_create(int rank, int nodes, struct dsm_shm **out, char *why, size_t whylen)
{
    *out = NULL;
    struct dsm_shm *s = calloc(1, sizeof *s);
    struct shm_peer *peers = calloc((size_t)nodes, sizeof *peers);
    if (!s || !peers) {
        free(s);
        free(peers);
        snprintf(why, whylen, "out of memory");
        return DSM_ENOMEM;
    }
    s->peers = peers;
    s->fd = s->bell[0] = s->bell[1] = -1;
    for (int i = 0; i < nodes; i++) peers[i].bell = -1;
    s->tp.rank = rank;
    s->tp.nodes = nodes;
    s->len = ring_off(nodes);
    if (dsm_shm_boot_id(s->boot) < 0) {
        snprintf(why, whylen, "cannot read this kernel's boot id");
        goto fail;
    }
    /* Sparse: only the rings that peers write into ever get memory. */
    s->fd = memfd_create("ufdsm-rings", MFD_CLOEXEC);
    if (s->fd < 0 || ftruncate(s->fd, (off_t)s->len) < 0) {
        snprintf(why, whylen, "cannot make the memory file for the rings: %s", strerror(errno));
        goto fail;
    }
    s->map = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        snprintf(why, whylen, "cannot map the rings: %s", strerror(errno));
        goto fail;
    }
    if (pipe2(s->bell, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(why, whylen, "cannot make the doorbell pipe: %s", strerror(errno));
        goto fail;
    }
    s->hdr = (struct file_hdr *)s->map;
    s->hdr->nodes = (uint32_t)nodes;
    s->hdr->rank = (uint32_t)rank;
    atomic_store(&s->hdr->sleeping, 0);
    for (int i = 0; i < nodes; i++) {
        peers[i].in = (struct ring *)(s->map + ring_off(i));
    }
    /* The magic last: a peer that maps the file sees a whole header or none. */
    atomic_thread_fence(memory_order_release);
    s->hdr->magic = SHM_MAGIC;
    *out = s;
    return DSM_OK;
fail:
    dsm_shm_free(s);
    return DSM_ETRANSPORT;
}

void dsm_shm_announce(const struct dsm_shm *s, char *out, size_t outlen)
{
    struct stat f, b;
    char boot[33];
    if (fstat(s->fd, &f) < 0 || fstat(s->bell[1], &b) < 0) {
        snprintf(out, outlen, "-");
        return;
    }
    sodium_bin2hex(boot, sizeof boot, s->boot, sizeof s->boot);
    snprintf(out, outlen, "%s.%u.%d.%" PRIu64 ".%" PRIu64 ".%d.%" PRIu64 ".%" PRIu64, boot,
             (unsigned)getpid(), s->fd, (uint64_t)f.st_ino, (uint64_t)f.st_dev, s->bell[1],
             (uint64_t)b.st_ino, (uint64_t)b.st_dev);
}

int dsm_shm_attach(struct dsm_shm *s, int peer, const char *ann, char *why, size_t whylen)
{
    struct shm_peer *p = &s->peers[peer];
    char hex[33];
    unsigned pid, fd, bfd;
    uint64_t ino, dev, bino, bdev;
    int used = -1;
    if (!strcmp(ann, "-")) {
        snprintf(why, whylen, "it offers no shared memory");
        return 0;
    }
    if (sscanf(ann, "%32[0-9a-f].%u.%u.%" SCNu64 ".%" SCNu64 ".%u.%" SCNu64 ".%" SCNu64 "%n", hex,
               &pid, &fd, &ino, &dev, &bfd, &bino, &bdev, &used) != 8 ||
        used < 0 || ann[used] || strlen(hex) != 32)
        return -1;
    uint8_t boot[16];
    size_t got = 0;
    if (sodium_hex2bin(boot, sizeof boot, hex, 32, NULL, &got, NULL) || got != 16) return -1;
    if (memcmp(boot, s->boot, sizeof boot)) {
        snprintf(why, whylen, "it runs on another host (or boot)");
        return 0;
    }
    size_t maplen = ring_off(s->tp.rank) + RING_BYTES;
    int f = dsm_shm_open_peer_fd(pid, fd, ino, dev, ring_off(s->tp.nodes), O_RDWR, why, whylen);
    if (f < 0) return 0;
    p->map = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    if (p->map != MAP_FAILED) {
        /* Our ring's pages now, not one fault per slot on the first pass of the job's
         * traffic (a shared-memory fault allocates and zeroes a page: 850 more faults in one
         * matmul launch). They are charged to this process, the one that writes them. */
        size_t o = ring_off(s->tp.rank);
        madvise(p->map + o, RING_BYTES, MADV_POPULATE_WRITE);
        /* The slots by writing (only we write them); the header by reading (the consumer
         * writes its head there). */
        touch_pages(p->map + o, RING_HDR, 0);
        touch_pages(p->map + o + RING_HDR, RING_BYTES - RING_HDR, 1);
    }
    close(f);
    if (p->map == MAP_FAILED) {
        p->map = NULL;
        snprintf(why, whylen, "its rings cannot be mapped here: %s", strerror(errno));
        return 0;
    }
    p->maplen = maplen;
    p->hdr = (struct file_hdr *)p->map;
    if (p->hdr->magic != SHM_MAGIC || p->hdr->nodes != (uint32_t)s->tp.nodes ||
        p->hdr->rank != (uint32_t)peer) {
        snprintf(why, whylen, "its memory file holds no rings of this job");
        goto undo;
    }
    atomic_thread_fence(memory_order_acquire);
    p->bell =
        dsm_shm_open_peer_fd(pid, bfd, bino, bdev, UINT64_MAX, O_WRONLY | O_NONBLOCK, why, whylen);
    if (p->bell < 0) goto undo;
    p->out = (struct ring *)(p->map + ring_off(s->tp.rank));
    /* A ring is written by one producer for the whole job: it starts where the file does. */
    p->tail = p->published = atomic_load_explicit(&p->out->tail, memory_order_relaxed);
    p->head_seen = atomic_load_explicit(&p->out->head, memory_order_acquire);
    p->route = 1;
    s->routes++;
    /* Before any frame of ours: the peer learns it need not listen for us on the base. */
    atomic_store_explicit(&p->out->attached, 1, memory_order_release);
    return 1;
undo:
    munmap(p->map, p->maplen);
    p->map = NULL;
    p->hdr = NULL;
    return 0;
}

int dsm_shm_routes(const struct dsm_shm *s)
{
    return s->routes;
}

void dsm_shm_set_callbacks(struct dsm_shm *s, dsm_tp_deliver_fn deliver, dsm_tp_lost_fn lost,
                           void *cb_ctx)
{
    s->deliver = deliver;
    s->lost = lost;
    s->cb_ctx = cb_ctx;
}

/* ---------------------------------------------------------------- sending */

static int ring_room(struct shm_peer *p)
{
    if (p->tail - p->head_seen < SLOTS) return 1;
    p->head_seen = atomic_load_explicit(&p->out->head, memory_order_acquire);
    return p->tail - p->head_seen < SLOTS;
}

/* Publishes what was written up to p->tail, and rings the doorbell if the peer sleeps. Only
 * flush publishes (send only writes), as TCP sends only at flush: what the runtime sends in
 * one go - a page and the pages read ahead after it - becomes visible at once, so the one
 * poll that finds the first finds them all. Published frame by frame, the first woke the
 * faulting thread and the rest waited in the ring for its next fault (matmul lost what read-
 * ahead gains, 1.18x). */
static void publish(struct shm_peer *p)
{
    if (p->tail == p->published) return;
    p->published = p->tail;
    atomic_store_explicit(&p->out->tail, p->tail, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&p->hdr->sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&p->hdr->sleeping, 0, memory_order_relaxed)) {
        char one = 1;
        ssize_t w = write(p->bell, &one, 1); /* EAGAIN: full, so it rings already */
        (void)w;
    }
}

/* Moves backlog frames into the ring while it has room, unpublished. */
static void bl_drain(struct shm_peer *p)
{
    while (dsm_frameq_len(&p->bl) && ring_room(p)) {
        struct dsm_wire_hdr h;
        dsm_wire_decode(p->bl.buf + p->bl.head, dsm_frameq_len(&p->bl), &h);
        size_t n = DSM_WIRE_HDR_SIZE + h.len;
        memcpy(slot_of(p->out, p->tail), p->bl.buf + p->bl.head, n);
        p->out->len[p->tail % SLOTS] = (uint32_t)n;
        p->tail++;
        dsm_frameq_consume(&p->bl, n);
    }
}

static int shm_send(struct dsm_tp *tp, int dst, const struct dsm_wire_hdr *h, const void *payload)
{
    struct dsm_shm *s = S(tp);
    struct shm_peer *p = &s->peers[dst];
    if (!p->route) return s->base->ops->send(s->base, dst, h, payload);
    if (dsm_tp_is_dead(&p->loss)) return -1;
    s->tp.ring_cnt.msgs_sent++;
    s->tp.ring_cnt.bytes_sent += DSM_WIRE_HDR_SIZE + h->len;
    if (!dsm_frameq_len(&p->bl) && ring_room(p)) {
        uint8_t *slot = slot_of(p->out, p->tail);
        dsm_wire_encode(h, slot);
        if (h->len && payload) memcpy(slot + DSM_WIRE_HDR_SIZE, payload, h->len);
        p->out->len[p->tail % SLOTS] = DSM_WIRE_HDR_SIZE + h->len;
        p->tail++; /* published by the next flush */
        return 0;
    }
    if (dsm_frameq_push(&p->bl, h, payload, BL_MIN)) {
        /* As TCP does when its queue cannot grow: the peer is lost to us. */
        mark_lost(s, dst, "out of memory queueing frames for node %d", dst);
        return -1;
    }
    return 0;
}

static void shm_flush(struct dsm_tp *tp)
{
    struct dsm_shm *s = S(tp);
    for (int i = 0; i < tp->nodes; i++)
        if (s->peers[i].route && !dsm_tp_is_dead(&s->peers[i].loss)) {
            bl_drain(&s->peers[i]);
            publish(&s->peers[i]);
        }
    /* With every peer routed nothing is ever sent through the base: a waiting thread polls
     * (and flushes) millions of times, and the base's flush showed up at 4% of its samples. */
    if (!s->quiet_base) s->base->ops->flush(s->base);
    sync_cnt(s);
}

/* ---------------------------------------------------------------- receiving */

static int ring_pending(const struct shm_peer *p)
{
    return !p->bad && atomic_load_explicit(&p->in->tail, memory_order_acquire) !=
                          atomic_load_explicit(&p->in->head, memory_order_relaxed);
}

static struct dsm_tp_loss *loss_of(void *ctx, int i)
{
    return &((struct dsm_shm *)ctx)->peers[i].loss;
}

static void forget(void *ctx, int i)
{
    dsm_frameq_free(&((struct dsm_shm *)ctx)->peers[i].bl);
}

/* Delivers every complete frame peer i has published. The number delivered. */
static int drain_in(struct dsm_shm *s, int i)
{
    struct shm_peer *p = &s->peers[i];
    if (p->bad || i == s->tp.rank) return 0;
    uint64_t head = atomic_load_explicit(&p->in->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&p->in->tail, memory_order_acquire);
    int n = 0;
    if (tail - head > SLOTS) {
        p->bad = 1;
        mark_lost(s, i,
                  "node %d broke the shared-memory ring (%" PRIu64 " frames published, %" PRIu64
                  " read) — closing it",
                  i, tail, head);
        return 0;
    }
    while (head != tail) {
        uint32_t len = p->in->len[head % SLOTS];
        const uint8_t *f = slot_of(p->in, head);
        struct dsm_wire_hdr h;
        char why[256];
        if (len > STRIDE ||
            dsm_rdma_frame_check(f, len, &p->lim, &h, why, sizeof why) != DSM_WIRE_OK) {
            p->bad = 1;
            mark_lost(s, i,
                      "node %d wrote a corrupt frame into shared memory: %s — closing its ring", i,
                      len > STRIDE ? "longer than a slot" : why);
            break;
        }
        s->tp.ring_cnt.msgs_recv++;
        s->tp.ring_cnt.bytes_recv += len;
        s->deliver(s->cb_ctx, &h, h.len ? f + DSM_WIRE_HDR_SIZE : NULL);
        n++;
        head++;
        atomic_store_explicit(&p->in->head, head, memory_order_release);
    }
    return n;
}

/* Whether every peer sends to us through our ring and we to it through its. On the way, maps
 * each newly attached peer's ring in whole (its pages exist: the producer populated them
 * before it set attached), so reading it takes no page faults either. */
static int all_attached(struct dsm_shm *s)
{
    int all = s->routes == s->tp.nodes - 1;
    for (int i = 0; i < s->tp.nodes; i++) {
        struct shm_peer *p = &s->peers[i];
        if (i == s->tp.rank || p->in_mapped) continue;
        if (!atomic_load_explicit(&p->in->attached, memory_order_acquire)) {
            all = 0;
            continue;
        }
        madvise(s->map + ring_off(i), RING_BYTES, MADV_POPULATE_READ);
        touch_pages(s->map + ring_off(i), RING_BYTES, 0);
        p->in_mapped = 1;
    }
    return all;
}

static int shm_poll(struct dsm_tp *tp)
{
    struct dsm_shm *s = S(tp);
    if (s->in_poll) { /* from inside a deliver: only flush */
        shm_flush(tp);
        return 0;
    }
    s->in_poll = 1;
    int n = 0;
    if (!s->quiet_base) s->quiet_base = all_attached(s);
    if (!s->quiet_base || atomic_exchange_explicit(&s->base_hint, 0, memory_order_relaxed) ||
        ++s->polls % BASE_EVERY == 0)
        n = s->base->ops->poll(s->base);
    for (int i = 0; i < tp->nodes; i++)
        if (ring_pending(&s->peers[i])) n += drain_in(s, i);
    shm_flush(tp);
    s->in_poll = 0;
    if (s->losses) dsm_tp_report_losses(tp, &s->losses, &s->closing, loss_of, forget, s);
    sync_cnt(s);
    return n;
}

/* The base transport lost a peer: whatever the peer wrote into our ring before it went is
 * delivered first (its last frame may be an ABORT naming why), then the loss is reported. */
void dsm_shm_base_lost(void *ctx, int peer, const char *why)
{
    struct dsm_shm *s = ctx;
    if (s->closing || peer < 0 || peer >= s->tp.nodes) return;
    /* Reported by our next poll, after its ring (any peer may write into ours) is drained;
     * also when the base lost it inside a flush. */
    mark_lost(s, peer, "%s", why);
}

void dsm_shm_base_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct dsm_shm *s = ctx;
    s->deliver(s->cb_ctx, h, payload);
}

/* ---------------------------------------------------------------- waiting */

static int any_pending(struct dsm_shm *s)
{
    for (int i = 0; i < s->tp.nodes; i++)
        if (i != s->tp.rank && ring_pending(&s->peers[i])) return 1;
    return 0;
}

static int shm_wait(struct dsm_tp *tp, int arm, long timeout_us)
{
    struct dsm_shm *s = S(tp);
    if (arm) {
        atomic_store_explicit(&s->hdr->sleeping, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (any_pending(s)) return 1;
    }
    /* `sleeping` stays set until a sender takes it (and rings): like the sockets' one-shot
     * polls, an armed doorbell also ends the unarmed waits that follow, so a frame that
     * comes when the application threads stopped polling is not left for a timeout. */
    int r = s->base->ops->wait(s->base, arm, timeout_us);
    if (r) { /* the service thread polls next, under the token */
        atomic_store_explicit(&s->base_hint, 1, memory_order_relaxed);
        char buf[64];
        while (read(s->bell[0], buf, sizeof buf) > 0) {
        }
    }
    return r || any_pending(s);
}

static void shm_kick(struct dsm_tp *tp)
{
    struct dsm_shm *s = S(tp);
    s->base->ops->kick(s->base);
}

/* ---------------------------------------------------------------- teardown */

void dsm_shm_free(struct dsm_shm *s)
{
    if (!s) return;
    if (s->peers) {
        for (int i = 0; i < s->tp.nodes; i++) {
            struct shm_peer *p = &s->peers[i];
            if (p->map) munmap(p->map, p->maplen);
            if (p->bell >= 0) close(p->bell);
            dsm_frameq_free(&p->bl);
        }
        free(s->peers);
    }
    if (s->map) munmap(s->map, s->len);
    if (s->fd >= 0) close(s->fd);
    if (s->bell[0] >= 0) close(s->bell[0]);
    if (s->bell[1] >= 0) close(s->bell[1]);
    free(s);
}

static void shm_destroy(struct dsm_tp *tp)
{
    struct dsm_shm *s = S(tp);
    s->closing = 1;
    /* The last frames (a BYE) may wait for room: give the peers a bounded chance to read. */
    uint64_t deadline = dsm_net_now_ms() + DRAIN_MS;
    for (unsigned k = 0;; k++) {
        int left = 0;
        for (int i = 0; i < tp->nodes; i++) {
            struct shm_peer *p = &s->peers[i];
            if (!p->route || dsm_tp_is_dead(&p->loss)) continue;
            bl_drain(p);
            publish(p);
            left |= dsm_frameq_len(&p->bl) != 0;
        }
        if (!left || (k % SPIN_CHECKS == 0 && dsm_net_now_ms() >= deadline)) break;
        /* Frames from the peers must still be taken, or two closing nodes wait on each
         * other's full rings. They are not delivered: the runtime is gone. */
        for (int i = 0; i < tp->nodes; i++) {
            struct shm_peer *p = &s->peers[i];
            if (i == tp->rank || p->bad) continue;
            atomic_store_explicit(&p->in->head, atomic_load(&p->in->tail), memory_order_release);
        }
    }
    s->base->ops->destroy(s->base);
    dsm_shm_free(s);
}

/* Two tables that differ in the name only: the runtime counts the base's traffic by it. */
#define SHM_OPS(label)                                                                             \
    {                                                                                              \
        .name = label, .send = shm_send, .flush = shm_flush, .poll = shm_poll, .wait = shm_wait,   \
        .kick = shm_kick, .destroy = shm_destroy,                                                  \
    }
static const struct dsm_tp_ops shm_ops_tcp = SHM_OPS("shm+tcp"), shm_ops_rdma = SHM_OPS("shm+rdma");

struct dsm_tp *dsm_shm_wrap(struct dsm_shm *s, struct dsm_tp *base)
{
    s->base = base;
    s->tp.ops = strcmp(base->ops->name, "rdma") ? &shm_ops_tcp : &shm_ops_rdma;
    s->tp.deliver = s->deliver;
    s->tp.lost = s->lost;
    s->tp.cb_ctx = s->cb_ctx;
    s->tp.limits = base->limits;
    for (int i = 0; i < s->tp.nodes; i++) {
        s->peers[i].lim = base->limits;
        s->peers[i].lim.peer = (uint32_t)i;
    }
    base->wake_fd = s->bell[0];
    return &s->tp;
}

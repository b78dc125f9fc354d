/*
 * engine.c - a node's protocol engine: creating it, running it, and turning accesses into
 * protocol requests.
 *
 * Who runs the engine: whoever holds the progress token. A thread that has to wait (in a
 * fault, a barrier, a lock) takes the token if it is free and runs the engine itself -
 * receiving, handling, sending - until what it waits for has happened (env->wait; the real
 * runtime's loop is in service.c). Whoever holds the token also serves everybody else's
 * messages, so a node whose threads are waiting answers its peers at polling speed, with no
 * handoff between threads on the fast path (a cross-CPU wakeup costs 10-25 us on the
 * machines this is tuned for, more than a busy-polled round trip).
 *
 * Nothing here makes a system call or reads a clock: memory changes go through n->mem, time
 * and waiting through n->env, messages through n->tp. That is what lets tests/engine run
 * several engines in one process under a seeded scheduler.
 */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "trace.h"

/* ---------------------------------------------------------------- life cycle */

/* Per-page bookkeeping: reserved, not committed (MAP_NORESERVE), and zero-filled by the
 * kernel on first touch, so a node costs memory only for the pages it uses and creating it
 * touches nothing. calloc would be refused by the overcommit heuristic beyond the machine's
 * memory (16 TiB of global space is 4 G pages: ~570 GB of arrays, almost all never touched),
 * and an initialising loop cost 8.5 s at 256 GiB. So the initial state of every entry must
 * be all zeros - checked here. */
_Static_assert(COH_I == 0 && COH_D_SHARED == 0 && DSM_PROTO_SC == 0,
               "per-page bookkeeping starts as zeros: I, SHARED, the SC protocol");

void *dsm_page_array(uint64_t count, size_t size)
{
    if (count > SIZE_MAX / size) return NULL;
    void *p = mmap(NULL, count * size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void dsm_page_array_free(void *p, uint64_t count, size_t size)
{
    if (p) munmap(p, count * size);
}

struct dsm_node *dsm_node_create(const struct dsm_engine_cfg *cfg, const struct dsm_mem_ops *mem,
                                 void *mem_ctx, const struct dsm_env_ops *env, void *env_ctx,
                                 char *err, size_t errlen)
{
    struct dsm_node *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory for the protocol engine");
        return NULL;
    }
    n->cfg = *cfg;
    if (!n->cfg.locks_max) n->cfg.locks_max = 65536;
    if (!n->cfg.lq_cap) n->cfg.lq_cap = 1024;
    n->rank = cfg->rank;
    n->nodes = cfg->nodes;
    n->npages = cfg->npages;
    n->mem = mem;
    n->mem_ctx = mem_ctx;
    n->env = env;
    n->env_ctx = env_ctx;
    n->pf_next = UINT64_MAX;
    n->pf_step = 1;
    n->pstate = dsm_page_array(n->npages, 1);
    n->home1 = dsm_page_array(n->npages, 1);
    n->proto = dsm_page_array(n->npages, 1);
    n->dir = dsm_page_array(n->npages, sizeof *n->dir);
    n->hold_until = dsm_page_array(n->npages, sizeof *n->hold_until);
    n->pf = dsm_page_array(n->npages, 1);
    n->mig = dsm_page_array(n->npages, 1);
    n->lq = calloc(n->cfg.lq_cap, sizeof *n->lq);
    n->lq_payload = calloc(n->cfg.lq_cap, PAGE_SIZE);
    n->deferred = calloc(DSM_DEFER_CAP, sizeof *n->deferred);
    n->rcdir = dsm_page_array(n->npages, sizeof *n->rcdir);
    n->rcx = dsm_page_array(n->npages, sizeof *n->rcx);
    n->rc_live = dsm_page_array(n->npages, sizeof *n->rc_live);
    n->rc_dirty = dsm_page_array(n->npages, sizeof *n->rc_dirty);
    n->rc_live_pos = dsm_page_array(n->npages, sizeof *n->rc_live_pos);
    n->rc_dirty_pos = dsm_page_array(n->npages, sizeof *n->rc_dirty_pos);
    n->rel = calloc(DSM_REL_BATCH, sizeof *n->rel);
    n->drops = calloc(DSM_DROP_BATCH, sizeof *n->drops);
    if (!n->rel || !n->drops || !n->pstate || !n->home1 || !n->proto || !n->dir || !n->hold_until ||
        !n->pf || !n->mig || !n->lq || !n->lq_payload || !n->deferred || !n->rcdir || !n->rcx ||
        !n->rc_live || !n->rc_dirty || !n->rc_live_pos || !n->rc_dirty_pos) {
        snprintf(err, errlen, "cannot allocate bookkeeping for %llu pages (out of memory)",
                 (unsigned long long)n->npages);
        dsm_node_destroy(n);
        return NULL;
    }
    if (dsm_alloc_init(n, err, errlen) || dsm_sync_init(n, err, errlen) ||
        dsm_evict_init(n, err, errlen) /* evict: the bounded cache (evict.c) */) {
        dsm_node_destroy(n);
        return NULL;
    }
    dsm_hist_reset(&n->fault_hist);
    return n;
}

void dsm_node_destroy(struct dsm_node *n)
{
    if (!n) return;
    dsm_sync_fini(n);
    dsm_alloc_fini(n);
    dsm_evict_fini(n); /* evict */
    dsm_page_array_free((void *)n->pstate, n->npages, 1);
    dsm_page_array_free(n->home1, n->npages, 1);
    dsm_page_array_free(n->proto, n->npages, 1);
    dsm_page_array_free(n->dir, n->npages, sizeof *n->dir);
    dsm_page_array_free(n->hold_until, n->npages, sizeof *n->hold_until);
    dsm_page_array_free(n->pf, n->npages, 1);
    dsm_page_array_free(n->mig, n->npages, 1);
    free(n->lq);
    free(n->lq_payload);
    free(n->deferred);
    dsm_page_array_free(n->rcdir, n->npages, sizeof *n->rcdir);
    dsm_page_array_free(n->rcx, n->npages, sizeof *n->rcx);
    dsm_page_array_free(n->rc_live, n->npages, sizeof *n->rc_live);
    dsm_page_array_free(n->rc_dirty, n->npages, sizeof *n->rc_dirty);
    dsm_page_array_free(n->rc_live_pos, n->npages, sizeof *n->rc_live_pos);
    dsm_page_array_free(n->rc_dirty_pos, n->npages, sizeof *n->rc_dirty_pos);
    free(n->rel);
    free(n->drops);
    free(n);
}

void dsm_node_fatal(struct dsm_node *n, const char *fmt, ...)
{
    char text[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    n->env->fatal(n, text);
}

/* ---------------------------------------------------------------- the token */

static __thread int tls_tid;

static int my_tid(void)
{
    if (!tls_tid) tls_tid = (int)syscall(SYS_gettid);
    return tls_tid;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

int dsm_token_try(struct dsm_node *n)
{
    int me = my_tid();
    int expect = 0;
    if (atomic_load_explicit(&n->token, memory_order_relaxed)) {
        if (atomic_load_explicit(&n->token, memory_order_relaxed) == me)
            dsm_node_fatal(n, "the protocol engine was re-entered by the thread running it: a "
                              "signal handler touched DSM memory while this thread was inside "
                              "ufdsm; do not touch DSM memory from signal handlers");
        return 0;
    }
    return atomic_compare_exchange_strong_explicit(&n->token, &expect, me, memory_order_acquire,
                                                   memory_order_relaxed);
}

void dsm_token_acquire(struct dsm_node *n)
{
    unsigned spins = 0;
    while (!dsm_token_try(n)) {
        cpu_relax();
        if ((++spins & 63) == 0) sched_yield();
    }
}

void dsm_token_release(struct dsm_node *n)
{
    atomic_store_explicit(&n->token, 0, memory_order_release);
}

/* ---------------------------------------------------------------- local queue */

/* Messages a node sends to itself (it is the home of the page it faults on, or manages its
 * own lock) go through this FIFO instead of the network, so the protocol sees the same
 * ordered channel either way. Fixed size: the engine drains it before returning, so it only
 * ever holds the few messages one event causes. */
static void lq_push(struct dsm_node *n, const struct dsm_wire_hdr *h, const void *payload)
{
    if (n->lq_tail - n->lq_head >= n->cfg.lq_cap)
        dsm_node_fatal(n,
                       "local message queue overflow (%u messages): a protocol bug, please "
                       "report it",
                       n->cfg.lq_cap);
    uint32_t slot = n->lq_tail % n->cfg.lq_cap;
    struct local_msg *m = &n->lq[slot];
    m->h = *h;
    m->slot = slot;
    if (h->len) memcpy(n->lq_payload[slot], payload, h->len);
    n->lq_tail++;
    atomic_fetch_add_explicit(&n->st.local_msgs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->st.local_bytes, DSM_WIRE_HDR_SIZE + h->len, memory_order_relaxed);
}

static int lq_drain(struct dsm_node *n)
{
    int k = 0;
    while (n->lq_head != n->lq_tail) {
        struct local_msg *m = &n->lq[n->lq_head % n->cfg.lq_cap];
        n->lq_head++;
        dsm_deliver(n, &m->h, m->h.len ? n->lq_payload[m->slot] : NULL);
        k++;
    }
    return k;
}

/* ---------------------------------------------------------------- sending */

void dsm_send(struct dsm_node *n, int dst, const struct dsm_wire_hdr *h, const void *payload)
{
    if (dst == n->rank)
        lq_push(n, h, payload);
    else
        n->tp->ops->send(n->tp, dst, h, payload);
}

/* Release consistency: a write-back as runs of changed bytes, [u16 offset][u16 length][bytes]
 * each, in as many RC_DIFF frames as it takes (at most a page of payload per frame). Only
 * bytes that differ from the twin are sent: an unchanged byte may hold another writer's
 * update at the home, so runs are never merged across unchanged bytes. */
/* Sends the runs of bytes of page that differ from its twin. With `keep` (COH_A_DIFF_KEEP) the
 * copy is still writable: it is read once, into a snapshot, which is diffed and then becomes
 * the twin. A byte written after the snapshot read it differs from the new twin, so it goes
 * in the next diff; diffing the live copy and copying it into the twin afterwards would lose
 * a write that lands between the two. */
static void send_diff(struct dsm_node *n, struct dsm_wire_hdr *h, int dst, uint64_t page, int keep)
{
    const uint8_t *cur = n->mem->page(n->mem_ctx, page);
    uint8_t *tw = n->mem->twin(n->mem_ctx, page);
    uint8_t buf[PAGE_SIZE], snap[PAGE_SIZE];
    if (keep) {
        memcpy(snap, cur, PAGE_SIZE);
        cur = snap;
    }
    uint32_t len = 0, off = 0;
    for (;;) {
        /* Skip equal words, then equal bytes. */
        while (off + 8 <= PAGE_SIZE && !memcmp(cur + off, tw + off, 8)) off += 8;
        while (off < PAGE_SIZE && cur[off] == tw[off]) off++;
        if (off >= PAGE_SIZE) break;
        uint32_t end = off;
        while (end < PAGE_SIZE && cur[end] != tw[end]) end++;
        while (off < end) {
            if (len + 5 > PAGE_SIZE) { /* no room for even one byte of a run: next frame */
                h->len = len;
                atomic_fetch_add(&n->rc_outstanding, 1);
                dsm_send(n, dst, h, buf);
                len = 0;
            }
            uint32_t run = end - off;
            if (run > PAGE_SIZE - len - 4) run = PAGE_SIZE - len - 4;
            uint16_t o16 = (uint16_t)off, r16 = (uint16_t)run;
            memcpy(buf + len, &o16, 2);
            memcpy(buf + len + 2, &r16, 2);
            memcpy(buf + len + 4, cur + off, run);
            len += 4 + run;
            off += run;
        }
    }
    if (len) {
        h->len = len;
        atomic_fetch_add(&n->rc_outstanding, 1);
        dsm_send(n, dst, h, buf);
    }
    if (keep) memcpy(tw, snap, PAGE_SIZE);
}

#ifndef UFDSM_INJECT_MERGE_BUG
#define UFDSM_INJECT_MERGE_BUG 0
#endif

/* Each byte of an 8-byte word that is non-zero, as 0xff (the rest 0). */
static uint64_t byte_mask(uint64_t x)
{
    x |= x >> 4; /* bit 0 of each byte ends up the OR of its eight bits; higher bits are */
    x |= x >> 2; /* polluted by the next byte, and masked off below */
    x |= x >> 1;
    return (x & 0x0101010101010101ull) * 0xff;
}

/* COH_A_MERGE: page p is writable here and has a twin; the home's store holds every change
 * released to it, this node's included (acquire_how). Each word takes the store's bytes where
 * the copy still equals the twin and keeps the bytes this node changed, by compare-and-swap,
 * since the node's threads may be writing the page meanwhile (a write that beats the swap
 * makes it fail and be redone; one that comes after it differs from the new twin). The twin
 * becomes the store's page: the next diff sends exactly what this node changed. */
static void merge_copy(struct dsm_node *n, uint64_t p)
{
    const uint64_t *home = n->mem->peer_store(n->mem_ctx, dsm_home_of(n, p), p);
    uint64_t *tw = n->mem->twin(n->mem_ctx, p);
    uint64_t *v = n->mem->view(n->mem_ctx, p);
    for (size_t i = 0; i < PAGE_SIZE / 8; i++) {
        uint64_t st = home[i], t = tw[i];
        uint64_t old = __atomic_load_n(&v[i], __ATOMIC_RELAXED);
        for (;;) {
#if UFDSM_INJECT_MERGE_BUG /* self-test of the fixture: the bytes this node changed are lost */
            uint64_t mine = 0 * byte_mask(old ^ t);
#else
            uint64_t mine = byte_mask(old ^ t);
#endif
            uint64_t want = (old & mine) | (st & ~mine);
            if (want == old || __atomic_compare_exchange_n(&v[i], &old, want, 0, __ATOMIC_RELAXED,
                                                           __ATOMIC_RELAXED))
                break;
        }
        tw[i] = st;
    }
}

/* Applies a write-back to the home store; the runs were checked by apply_ok. */
static void apply_diff(struct dsm_node *n, const struct dsm_wire_hdr *h, const uint8_t *payload)
{
    uint8_t *store = n->mem->store(n->mem_ctx, h->arg0);
    if (h->flags & RC_F_FULL) {
        memcpy(store, payload, PAGE_SIZE);
        return;
    }
    for (uint32_t pos = 0; pos < h->len;) {
        uint16_t off, run;
        memcpy(&off, payload + pos, 2);
        memcpy(&run, payload + pos + 2, 2);
        memcpy(store + off, payload + pos + 4, run);
        pos += 4u + run;
    }
}

/* Whether an RC_DIFF payload is well formed: whole runs inside the page. */
static int apply_ok(const struct dsm_wire_hdr *h, const uint8_t *payload)
{
    if (h->flags & RC_F_FULL) return h->len == PAGE_SIZE;
    if (!h->len) return 0;
    for (uint32_t pos = 0; pos < h->len;) {
        uint16_t off, run;
        if (h->len - pos < 4) return 0;
        memcpy(&off, payload + pos, 2);
        memcpy(&run, payload + pos + 2, 2);
        if (!run || (uint32_t)off + run > PAGE_SIZE || h->len - pos - 4 < run) return 0;
        pos += 4u + run;
    }
    return 1;
}

static void send_coh(struct dsm_node *n, const struct coh_msg *m, int keep)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, (enum dsm_wire_type)m->type, (uint32_t)n->rank);
    h.arg0 = m->page;
    h.arg1 = m->arg;
    h.flags = m->flags;
    const void *payload = NULL;
    /* evict: pages written back to their homes, for whatever reason (stats). */
    if (m->type == COH_WB || m->type == COH_PUT_M || m->type == RC_DIFF)
        atomic_fetch_add_explicit(&n->ev_st.writebacks, 1, memory_order_relaxed);
    if (m->type == RC_DIFF) {
        atomic_fetch_add_explicit(&n->st.pages_sent, 1, memory_order_relaxed);
        if (m->flags & RC_F_FULL) {
            h.len = PAGE_SIZE;
            atomic_fetch_add(&n->rc_outstanding, 1);
            dsm_send(n, m->dst, &h, n->mem->page(n->mem_ctx, m->page));
        } else {
            send_diff(n, &h, m->dst, m->page, keep);
        }
        return;
    }
    if (coh_msg_has_payload(m)) {
        h.len = PAGE_SIZE;
        /* To the home (WB, PUT_M): this node's copy, write-protected by a preceding action.
         * From the home (DATA_S, DATA_M, RC_DATA): the home store. */
        int to_home = coh_msginfo(m->type).to_home;
        payload = to_home ? n->mem->page(n->mem_ctx, m->page) : n->mem->store(n->mem_ctx, m->page);
        atomic_fetch_add_explicit(&n->st.pages_sent, 1, memory_order_relaxed);
        if (!to_home)
            DSM_TRACE(DSM_TR_SERVED, m->type == COH_DATA_M ? DSM_TR_F_WRITE : 0, m->page,
                      dsm_node_now(n), 0, 0, m->dst, 1);
    }
    if (m->type == COH_INV) atomic_fetch_add_explicit(&n->st.inv_sent, 1, memory_order_relaxed);
    if (m->type == COH_RECALL_S || m->type == COH_RECALL_I)
        atomic_fetch_add_explicit(&n->st.recalls_sent, 1, memory_order_relaxed);
    dsm_send(n, m->dst, &h, payload);
}

/* Whether this node's view of page p is its home store itself (one copy at the home,
 * dsm_mem_ops.map_home). */
static int home_shared(const struct dsm_node *n, uint64_t p)
{
    return n->mem->map_home && dsm_home_of(n, p) == n->rank;
}

/* Installs page p. With one copy at the home the page the home serves is the store itself,
 * newer than or equal to the payload (which it sent itself). */
static void install(struct dsm_node *n, uint64_t p, const void *payload, int writable)
{
    if (home_shared(n, p))
        n->mem->map_home(n->mem_ctx, p, writable);
    else
        n->mem->map(n->mem_ctx, p, payload, writable);
}

/* Whether a write-back or diff is the home's own with one copy at the home: it is already in
 * the store, and applying it could even be wrong (the home's threads may have written the
 * page again since it was taken - a new interval - and the old bytes would overwrite the new). */
static int own_writeback(const struct dsm_node *n, uint64_t p, const struct dsm_wire_hdr *h)
{
    return home_shared(n, p) && h && h->src == n->rank;
}

/* ---------------------------------------------------------------- dropping copies in ranges */

/* An acquire drops every copy that another node writes: the FFT's transposes make each node
 * drop 256 pages at a barrier. Dropped one by one, each is an madvise and a TLB shootdown
 * across the CPUs (an interrupt to the other vCPU): 22-35 us a page here, 9 ms of a 12 ms
 * barrier. So an acquire only collects them (drop_later) and unmaps them at its end in ranges
 * (drops_flush): a range runs from one dropped page to the next as long as every page between
 * has no copy here either (it is then unaffected), up to DROP_GAP of them. The FFT's copies
 * are every other page, so its 256 drops become one call: 0.5-0.8 ms. A thread of this node
 * that reads such a copy before the flush reads it as it was before the acquire, which it may:
 * it has not synchronised with the acquire. Writes fault (the copy is read-only, or protected
 * before its write-back) and wait for the token, which the acquire holds until the flush. */
#define DROP_GAP 64

/* Page numbers in ascending order (qsort): drops here, protections and dirty lists below. */
static int cmp_page(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

#ifndef UFDSM_INJECT_RANGE_BUG
#define UFDSM_INJECT_RANGE_BUG 0
#endif

/* Whether page q has no copy here and is not homed here: a range drop leaves it as it is. */
static int copyless(const struct dsm_node *n, uint64_t q)
{
    return (atomic_load_explicit(&n->pstate[q], memory_order_relaxed) == COH_I ||
            UFDSM_INJECT_RANGE_BUG) && /* (self-test: a range over copies in use) */
           dsm_home_of(n, q) != n->rank;
}

/* Unmaps the collected copies (token held; their state is I already). */
static void drops_flush(struct dsm_node *n)
{
    if (!n->drops_n) return;
    qsort(n->drops, n->drops_n, sizeof *n->drops, cmp_page);
    for (uint32_t i = 0, j; i < n->drops_n; i = j) {
        uint64_t first = n->drops[i], last = first;
        for (j = i + 1; j < n->drops_n && n->drops[j] - last <= DROP_GAP; j++) {
            uint64_t g = last + 1;
            while (g < n->drops[j] && copyless(n, g)) g++;
            if (g < n->drops[j]) break;
            last = n->drops[j];
        }
        n->mem->unmap_range(n->mem_ctx, first, last - first + 1);
    }
    n->drops_n = 0;
}

static void drop_later(struct dsm_node *n, uint64_t p)
{
    if (n->drops_n == DSM_DROP_BATCH) drops_flush(n); /* (p's state is not I yet: not covered) */
    n->drops[n->drops_n++] = p;
}

/* A page installed read-only (COH_A_MAP_RO, COH_A_FETCH) only to be twinned and made writable
 * by the actions that follow (a write miss: become_writer) is installed writable at once, its
 * twin taken from the same bytes: one ioctl instead of two, and no write-protect change, which
 * costs 6 us here (every page-table change is a trap to the hypervisor). Equivalent, since no
 * thread can write the page before it is installed. The number of actions it took, 0 if the
 * actions do not have that shape (or the page is its home's own store, which has no twin). */
static int install_writable(struct dsm_node *n, const struct coh_out *out, int i,
                            const void *payload)
{
    const struct coh_action *a = &out->a[i];
    const uint64_t p = a->msg.page;
    int j = i + 1;
    const int twin = j < out->n && out->a[j].kind == COH_A_TWIN && out->a[j].msg.page == p;
    j += twin;
    if (j >= out->n || out->a[j].kind != COH_A_UNPROTECT || out->a[j].msg.page != p) return 0;
    const int fetch = a->kind == COH_A_FETCH;
    if (!fetch && home_shared(n, p)) {
        if (twin) return 0;
        n->mem->map_home(n->mem_ctx, p, 1);
        return j - i + 1;
    }
    const void *src = fetch ? n->mem->peer_store(n->mem_ctx, dsm_home_of(n, p), p) : payload;
    if (twin) {
        void *t = n->mem->twin(n->mem_ctx, p);
        if (src)
            memcpy(t, src, PAGE_SIZE);
        else
            memset(t, 0, PAGE_SIZE); /* (no payload: the page is all zeros) */
        src = t;
    }
    n->mem->map(n->mem_ctx, p, src, 1);
    if (fetch) atomic_fetch_add_explicit(&n->st.pages_fetched, 1, memory_order_relaxed);
    return j - i + 1;
}

/* Carries out a protocol's actions; `payload` is the handled message's payload (or NULL),
 * h_of_payload its header (for APPLY). */
static void exec_actions(struct dsm_node *n, const struct coh_out *out, const void *payload,
                         const struct dsm_wire_hdr *h_of_payload)
{
    for (int i = 0; i < out->n; i++) {
        const struct coh_action *a = &out->a[i];
        uint64_t p = a->msg.page;
        if (a->kind == COH_A_MAP_RO || a->kind == COH_A_FETCH) {
            int k = install_writable(n, out, i, payload);
            if (k) {
                i += k - 1;
                continue;
            }
        }
        switch (a->kind) {
        case COH_A_SEND:
        case COH_A_DIFF_KEEP:
            send_coh(n, &a->msg, a->kind == COH_A_DIFF_KEEP);
            break;
        case COH_A_MAP_RO:
            install(n, p, payload, 0);
            break;
        case COH_A_MAP_RW:
            /* An exclusive copy asked for by a read miss (migratory guess) starts read-only. */
            install(n, p, payload, !(n->mig[p] & MIG_CLEAN));
            break;
        case COH_A_PROTECT:
            n->mem->protect(n->mem_ctx, p, 1);
            break;
        case COH_A_UNPROTECT:
            n->mem->protect(n->mem_ctx, p, 0);
            break;
        case COH_A_UNMAP:
            if (home_shared(n, p))
                n->mem->unmap_home(n->mem_ctx, p);
            else if (n->drops_on)
                drop_later(n, p);
            else
                n->mem->unmap(n->mem_ctx, p);
            break;
        case COH_A_STORE:
            if (!own_writeback(n, p, h_of_payload))
                memcpy(n->mem->store(n->mem_ctx, p), payload, PAGE_SIZE);
            break;
        case COH_A_TWIN:
            memcpy(n->mem->twin(n->mem_ctx, p), n->mem->page(n->mem_ctx, p), PAGE_SIZE);
            break;
        case COH_A_DROP_TWIN:
            n->mem->twin_drop(n->mem_ctx, p);
            break;
        case COH_A_APPLY:
            if (!own_writeback(n, p, h_of_payload)) apply_diff(n, h_of_payload, payload);
            break;
        case COH_A_REFRESH:
            n->mem->refresh(n->mem_ctx, dsm_home_of(n, p), p);
            atomic_fetch_add_explicit(&n->st.onesided_refreshes, 1, memory_order_relaxed);
            break;
        case COH_A_MERGE:
            merge_copy(n, p);
            atomic_fetch_add_explicit(&n->st.onesided_refreshes, 1, memory_order_relaxed);
            break;
        case COH_A_FETCH:
            n->mem->map(n->mem_ctx, p, n->mem->peer_store(n->mem_ctx, dsm_home_of(n, p), p), 0);
            atomic_fetch_add_explicit(&n->st.pages_fetched, 1, memory_order_relaxed);
            break;
        }
    }
}

static const struct coh_protocol *proto_of(const struct dsm_node *n, uint64_t page)
{
    return coh_protocol_get(n->proto[page]);
}

/* The protocol-specific state of a page: the node side's extra state, the home's entry. */
static void *ext_of(struct dsm_node *n, uint64_t page)
{
    return n->proto[page] == DSM_PROTO_RC ? (void *)&n->rcx[page] : NULL;
}

static void *dir_of(struct dsm_node *n, uint64_t page)
{
    return n->proto[page] == DSM_PROTO_RC ? (void *)&n->rcdir[page] : (void *)&n->dir[page];
}

/* ---------------------------------------------------------------- RC page lists */

static void list_add(uint64_t *arr, uint32_t *pos, _Atomic uint32_t *cnt, uint64_t p)
{
    if (pos[p]) return;
    uint32_t k = atomic_load_explicit(cnt, memory_order_relaxed);
    arr[k] = p;
    pos[p] = k + 1;
    atomic_store_explicit(cnt, k + 1, memory_order_release);
}

static void list_del(uint64_t *arr, uint32_t *pos, _Atomic uint32_t *cnt, uint64_t p)
{
    if (!pos[p]) return;
    uint32_t i = pos[p] - 1, last = atomic_load_explicit(cnt, memory_order_relaxed) - 1;
    arr[i] = arr[last];
    pos[arr[i]] = i + 1;
    pos[p] = 0;
    atomic_store_explicit(cnt, last, memory_order_release);
}

/* Keeps the lists in step with an RC page's state (token held). */
static void rc_track(struct dsm_node *n, uint64_t p, uint8_t st)
{
    if (n->proto[p] != DSM_PROTO_RC) return;
    if (st == COH_I)
        list_del(n->rc_live, n->rc_live_pos, &n->rc_live_n, p);
    else
        list_add(n->rc_live, n->rc_live_pos, &n->rc_live_n, p);
    /* A page this node homes and alone writes has nothing to send at a release. */
    if (st == COH_M && !(n->rcx[p].flags & RC_N_OWNED))
        list_add(n->rc_dirty, n->rc_dirty_pos, &n->rc_dirty_n, p);
    else
        list_del(n->rc_dirty, n->rc_dirty_pos, &n->rc_dirty_n, p);
}

/* Sets a page's node-side state: mappings have changed before (a waiter that sees S or M
 * finds the page in place). */
static void set_state(struct dsm_node *n, uint64_t p, uint8_t st)
{
    rc_track(n, p, st);
    dsm_evict_track(n, p, st); /* evict: the cache counts every copy of a remote page */
    atomic_store_explicit(&n->pstate[p], st, memory_order_release);
}

/* evict: how evict.c carries out a protocol's eviction of a page. */
void dsm_node_apply(struct dsm_node *n, uint64_t p, const struct coh_out *out, uint8_t st)
{
    exec_actions(n, out, NULL, NULL);
    set_state(n, p, st);
}

/* The shared half of page p's directory entry, where this node homes p and shares its
 * directory (dsm_mem_ops.dir_words); NULL otherwise. */
static uint64_t *own_dir_words(struct dsm_node *n, uint64_t p)
{
    return dsm_home_of(n, p) == n->rank && n->mem->dir_words
               ? n->mem->dir_words(n->mem_ctx, n->rank, p)
               : NULL;
}

void dsm_node_forget_rc(struct dsm_node *n, uint64_t p)
{
    if (n->rcx[p].flags & RC_N_TWIN) n->mem->twin_drop(n->mem_ctx, p);
    list_del(n->rc_live, n->rc_live_pos, &n->rc_live_n, p);
    list_del(n->rc_dirty, n->rc_dirty_pos, &n->rc_dirty_n, p);
    n->rcx[p] = (struct rc_node){0};
    rc_dir_init(&n->rcdir[p]);
    uint64_t *w = own_dir_words(n, p); /* its shared half too, readers' sticky bits included */
    if (w)
        for (int k = 0; k < DSM_DIR_WORDS; k++) __atomic_store_n(&w[k], 0, __ATOMIC_SEQ_CST);
}

/* ---------------------------------------------------------------- receiving */

/* Holding a granted page. A thread that faulted gets the page, but it only uses it after it
 * sees the grant and returns from its fault handler; if a recall for the page is handled
 * first (often in the same engine pass), the page leaves before it was used and two nodes can
 * take a page from each other forever without either making progress. So an invalidation or
 * recall that arrives within cfg.hold_us of a grant is set aside and handled once the time is
 * up - or sooner: the thread that waited for the page cuts the hold short to a few
 * microseconds once it has seen the page arrive (dsm_access), so a page that is used at once
 * (a lock handoff) is not kept from the next node for the whole hold. That is safe with
 * respect to ordering: the home sends nothing more about that page to this node until it
 * gets the answer, and messages about other pages are independent. */
static int defer_if_held(struct dsm_node *n, const struct dsm_wire_hdr *h)
{
    uint64_t until = __atomic_load_n(&n->hold_until[h->arg0], __ATOMIC_RELAXED);
    if (!until || n->def_tail - n->def_head >= DSM_DEFER_CAP) return 0;
    if (dsm_node_now(n) >= until) {
        __atomic_store_n(&n->hold_until[h->arg0], 0, __ATOMIC_RELAXED);
        return 0;
    }
    n->deferred[n->def_tail++ % DSM_DEFER_CAP] = *h;
    return 1;
}

static void deliver_coh(struct dsm_node *n, const struct dsm_wire_hdr *h, const void *payload);

/* Handles set-aside messages whose hold has expired, in arrival order. */
static int run_deferred(struct dsm_node *n)
{
    int k = 0;
    uint32_t end = n->def_tail;
    uint64_t now = 0;
    while (n->def_head != end) {
        struct dsm_wire_hdr h = n->deferred[n->def_head % DSM_DEFER_CAP];
        if (!now) now = dsm_node_now(n);
        if (__atomic_load_n(&n->hold_until[h.arg0], __ATOMIC_RELAXED) > now)
            break; /* FIFO: later ones wait behind it */
        n->def_head++;
        __atomic_store_n(&n->hold_until[h.arg0], 0, __ATOMIC_RELAXED);
        deliver_coh(n, &h, NULL);
        k++;
    }
    return k;
}

int dsm_deferred_pending(const struct dsm_node *n)
{
    return n->def_head != n->def_tail;
}

uint64_t dsm_deferred_due(const struct dsm_node *n)
{
    if (n->def_head == n->def_tail) return 0;
    const struct dsm_wire_hdr *h = &n->deferred[n->def_head % DSM_DEFER_CAP];
    uint64_t t = __atomic_load_n(&n->hold_until[h->arg0], __ATOMIC_RELAXED);
    return t ? t : 1;
}

/* Counters and trace records of a node-side message that was handled. */
static void account_node_msg(struct dsm_node *n, const struct dsm_wire_hdr *h, uint64_t p)
{
    if (h->type == COH_INV) {
        atomic_fetch_add_explicit(&n->st.inv_recv, 1, memory_order_relaxed);
        DSM_TRACE(DSM_TR_INVALIDATED, 0, p, dsm_node_now(n), 0, 0, h->src, 1);
    }
    if (h->type == COH_RECALL_S || h->type == COH_RECALL_I) {
        atomic_fetch_add_explicit(&n->st.recalls_recv, 1, memory_order_relaxed);
        DSM_TRACE(DSM_TR_RECALLED, 0, p, dsm_node_now(n), 0, 0, h->src, 1);
    }
    if (h->len) atomic_fetch_add_explicit(&n->st.pages_fetched, 1, memory_order_relaxed);
}

/* The nodes of the job, as a set. */
static uint64_t node_mask(const struct dsm_node *n)
{
    return n->nodes >= 64 ? ~0ull : ((uint64_t)1 << n->nodes) - 1;
}

/* The home's side (token held, before its directory handles m): publish a node registering
 * by message (as a reader, a writer), then take in the nodes that registered themselves. The
 * words may be written by any process on this host that can open this one's memory: only bits
 * of nodes of the job are taken. */
static void shared_dir_sync(struct dsm_node *n, uint64_t p, const struct coh_msg *m)
{
    uint64_t *w = own_dir_words(n, p);
    if (!w) return;
    uint64_t pub = rc_dir_publish(&n->rcdir[p], m);
    uint64_t rpub = rc_dir_publish_reader(&n->rcdir[p], m);
    if (rpub) __atomic_fetch_or(&w[DIR_READERS], rpub, __ATOMIC_SEQ_CST);
    if (pub) __atomic_fetch_or(&w[DIR_WRITERS], pub, __ATOMIC_SEQ_CST);
    rc_dir_readers_seen(&n->rcdir[p],
                        __atomic_load_n(&w[DIR_READERS], __ATOMIC_SEQ_CST) & node_mask(n));
    rc_dir_writers_seen(&n->rcdir[p],
                        __atomic_load_n(&w[DIR_SELFREG], __ATOMIC_SEQ_CST) & node_mask(n));
    uint64_t *watchers = n->mem->dir_watchers ? n->mem->dir_watchers(n->mem_ctx, n->rank) : NULL;
    if (!watchers) return;
    struct rc_dir *d = &n->rcdir[p];
    rc_dir_watchers_seen(d, __atomic_load_n(watchers, __ATOMIC_SEQ_CST) & node_mask(n) &
                                ~((uint64_t)1 << n->rank));
    /* (Counted as the registration is seen: one queued behind another is counted early.) */
    if (pub)
        atomic_fetch_add_explicit(
            &n->st.onesided_watched,
            (uint64_t)__builtin_popcountll(d->readers & d->watchers & ~d->writers & ~pub),
            memory_order_relaxed);
}

static void deliver_coh(struct dsm_node *n, const struct dsm_wire_hdr *h, const void *payload)
{
    uint64_t p = h->arg0;
    struct coh_msg m = {.type = h->type,
                        .flags = (uint8_t)h->flags,
                        .src = (uint8_t)h->src,
                        .dst = (uint8_t)n->rank,
                        .page = p,
                        .arg = h->arg1};
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    const struct coh_protocol *pr = proto_of(n, p);
    /* The frame checks of the transport cannot know homes or protocols: check them here, so
     * a confused or hostile peer cannot make this node act as the directory of a page it
     * does not home, or drive a page with the wrong protocol. */
    if (dsm_home_of(n, p) == HOME_NONE || coh_protocol_of_msg(m.type) != n->proto[p])
        dsm_node_fatal(n,
                       "node %d sent %s for page %llu, which is not %s memory here: node %d "
                       "is misbehaving (or runs another version of ufdsm)",
                       h->src, dsm_wire_type_name(m.type), (unsigned long long)p,
                       dsm_home_of(n, p) == HOME_NONE ? "allocated" : pr->name, h->src);
    if (pr->msg_to_home(m.type)) {
        if (dsm_home_of(n, p) != n->rank)
            dsm_node_fatal(n,
                           "node %d sent %s for page %llu, which node %d does not home "
                           "(home: %d): node %d is misbehaving",
                           h->src, pr->mtype_name(m.type), (unsigned long long)p, n->rank,
                           dsm_home_of(n, p), h->src);
        /* The home writes its own page in place and copies it into the store only when
         * another node asks (rc.h: RC_N_OWNED). */
        if (m.type != RC_DIFF && m.type != RC_CLASS_ACK && h->src != n->rank &&
            n->proto[p] == DSM_PROTO_RC &&
            rc_home_flush((const uint8_t *)&n->pstate[p], &n->rcx[p])) {
            /* (Nothing to copy when the view is the store: a copy onto itself could even undo
             * a write the home's threads make meanwhile.) */
            if (!n->mem->map_home)
                memcpy(n->mem->store(n->mem_ctx, p), n->mem->page(n->mem_ctx, p), PAGE_SIZE);
            n->rcdir[p].written = 1; /* the store is no longer all zeros */
        }
        if (m.type == RC_DIFF && !apply_ok(h, payload))
            dsm_node_fatal(n,
                           "node %d sent a malformed write-back for page %llu (%u bytes): "
                           "node %d is misbehaving",
                           h->src, (unsigned long long)p, h->len, h->src);
        if (n->proto[p] == DSM_PROTO_RC) shared_dir_sync(n, p, &m);
        if (pr->dir_recv(dir_of(n, p), n->rank, &m, &out, &why))
            dsm_node_fatal(n,
                           "node %d sent %s for page %llu, which the home cannot accept "
                           "now (%s): node %d is misbehaving",
                           h->src, pr->mtype_name(m.type), (unsigned long long)p, why, h->src);
        exec_actions(n, &out, payload, h);
        return;
    }
    if (dsm_home_of(n, p) != h->src)
        dsm_node_fatal(n,
                       "node %d sent %s for page %llu, which it does not home: node %d is "
                       "misbehaving",
                       h->src, pr->mtype_name(m.type), (unsigned long long)p, h->src);
    if ((m.type == COH_INV || m.type == COH_RECALL_S || m.type == COH_RECALL_I) &&
        defer_if_held(n, h))
        return;
    if (m.type == RC_DIFF_ACK && atomic_fetch_sub(&n->rc_outstanding, 1) <= 0)
        dsm_node_fatal(n,
                       "node %d acknowledged a write-back of page %llu this node did not "
                       "send: node %d is misbehaving",
                       h->src, (unsigned long long)p, h->src);
    uint8_t st = atomic_load_explicit(&n->pstate[p], memory_order_relaxed);
    uint8_t before = st;
    if (pr->node_recv(&st, ext_of(n, p), n->rank, &m, &out, &why))
        dsm_node_fatal(n,
                       "node %d sent %s for page %llu, which this node cannot accept in "
                       "state %s (%s): node %d is misbehaving",
                       h->src, pr->mtype_name(m.type), (unsigned long long)p,
                       coh_nstate_name(before), why, h->src);
    int data = m.type == COH_DATA_S || m.type == COH_DATA_M || m.type == RC_DATA;
    /* A page read ahead has nobody about to use it: no hold. Only the single-writer protocol
     * takes pages back (recalls), so only it needs holds. */
    if (data && n->cfg.hold_us && !(n->pf[p] & PF_INFLIGHT) && n->proto[p] == DSM_PROTO_SC)
        __atomic_store_n(&n->hold_until[p], dsm_node_now(n) + (uint64_t)n->cfg.hold_us * 1000,
                         __ATOMIC_RELAXED);
    /* Taken back before it was written: the page is not migratory after all. */
    if ((m.type == COH_RECALL_S || m.type == COH_RECALL_I) && (n->mig[p] & MIG_CLEAN))
        __atomic_store_n(&n->mig[p], 0, __ATOMIC_RELAXED);
    account_node_msg(n, h, p);
    if (data && (n->pf[p] & PF_INFLIGHT)) {
        n->pf[p] &= (uint8_t)~PF_INFLIGHT;
        atomic_fetch_add_explicit(&n->st.pages_prefetched, 1, memory_order_relaxed);
        DSM_TRACE(DSM_TR_PREFETCHED, 0, p, dsm_node_now(n), 0, 0, h->src, 0);
    }
    /* Mappings change before the state says so: a waiter that sees S or M finds the page in
     * place. Downgrades are the other way round, which is fine because a thread that sees the
     * old state just faults again. */
    exec_actions(n, &out, payload, h);
    set_state(n, p, st);
}

void dsm_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct dsm_node *n = ctx;
    if (coh_protocol_of_msg(h->type) >= 0)
        deliver_coh(n, h, payload);
    else
        dsm_sync_recv(n, h, payload);
}

void dsm_peer_lost(void *ctx, int peer, const char *why)
{
    struct dsm_node *n = ctx;
    if (n->finalizing && atomic_load(&n->byes) >= 0) {
        /* During the goodbye exchange a peer closing is the expected end. */
        LOGD("node %d disconnected during finalize: %s", peer, why);
        return;
    }
    dsm_node_fatal(n, "lost node %d: %s; the job cannot continue without it", peer, why);
}

/* Until a pass finds nothing, not a single pass: measured, a single pass made barriers and
 * read faults slower (p50 7.6 -> 8.4 us and 21 -> 28 us), although every caller polls again
 * anyway - the extra receive catches the reply already on its way. */
int dsm_progress(struct dsm_node *n)
{
    int total = 0, k;
    do {
        k = n->def_head != n->def_tail ? run_deferred(n) : 0;
        k += lq_drain(n);
        if (n->tp) {
            k += n->tp->ops->poll(n->tp);
            k += lq_drain(n);
            n->tp->ops->flush(n->tp);
        }
        total += k;
    } while (k);
    if (total) n->env->wake(n);
    return total;
}

/* ---------------------------------------------------------------- access */

int dsm_access_ok(struct dsm_node *n, uint64_t page, int write)
{
    uint8_t st = atomic_load_explicit(&n->pstate[page], memory_order_acquire);
    if (write)
        return st == COH_M && !(__atomic_load_n(&n->mig[page], __ATOMIC_RELAXED) & MIG_CLEAN);
    return st == COH_S || st == COH_M || st == COH_SM_A;
}

struct access_wait {
    struct dsm_node *n;
    uint64_t page;
    int write;
};

/* Done waiting: either the access is allowed, or the page is in a stable state that does not
 * allow it (the grant came and the page was taken away again before this thread looked, or a
 * read grant came for a thread that wants to write): then the caller asks again. Waiting for
 * "allowed" alone can wait forever, because nothing else would send a new request. */
static int access_settled(void *arg)
{
    struct access_wait *w = arg;
    if (dsm_access_ok(w->n, w->page, w->write)) return 1;
    uint8_t st = atomic_load_explicit(&w->n->pstate[w->page], memory_order_acquire);
    return st == COH_I || st == COH_S || st == COH_M;
}

/* Read-ahead of sequential read streams (token held). A read miss on the page right after
 * the last one this node asked for (by fault or read-ahead) extends the stream: the next
 * `win` pages are requested too, the window doubling up to cfg.prefetch. The requests leave
 * together and the home answers them together, so a stream pays one round trip per window
 * instead of one per page. A thread that touches a page still in flight simply waits for it
 * (no second request). Any other miss ends the stream. Write misses never read ahead: taking
 * ownership early would steal pages from their writers. */
/* Strides up to this many pages make a stream for read-ahead in place (read_ahead_inplace). */
#define PF_MAX_STRIDE 16

/* Whether a read miss on `page` extends the stream; if so, widens the window. `strided`: the
 * caller can read ahead at a stride (n->pf_step) - then three misses at one distance of 2 to
 * PF_MAX_STRIDE pages start a stream too (a transpose reads one page of every other row). */
static int stream_extends(struct dsm_node *n, uint64_t page, int strided)
{
    uint64_t gap = page - n->pf_last; /* (huge when going backwards: no stride) */
    n->pf_last = page;
    if (page == n->pf_next && (strided || n->pf_step == 1)) {
        n->pf_gap = n->pf_step;
        n->pf_win = n->pf_win ? n->pf_win * 2 : 2;
        if (n->pf_win > n->cfg.prefetch) n->pf_win = n->cfg.prefetch;
        return 1;
    }
    if (strided && gap > 1 && gap <= PF_MAX_STRIDE && gap == n->pf_gap) {
        n->pf_step = (uint32_t)gap;
        n->pf_win = 2;
        return 1;
    }
    n->pf_gap = gap;
    n->pf_win = 0;
    n->pf_step = 1;
    n->pf_next = page + 1;
    return 0;
}

static void read_ahead(struct dsm_node *n, uint64_t page)
{
    if (!stream_extends(n, page, 0)) return;
    uint64_t q = page + 1;
    for (; q <= page + (uint64_t)n->pf_win && q < n->npages; q++) {
        uint8_t st = atomic_load_explicit(&n->pstate[q], memory_order_relaxed);
        /* Only pages nobody is asking for, of a live allocation: read-ahead runs on behalf
         * of one thread and may cross into a neighbouring allocation that another thread
         * is freeing (found by tests/engine), which must not see new requests. */
        if (dsm_home_of(n, q) == HOME_NONE || st != COH_I || n->pf[q] ||
            n->proto[q] != n->proto[page])
            break;
        /* evict: read-ahead never pushes out pages to make room for itself. */
        if (n->cfg.cache_pages && dsm_home_of(n, q) != n->rank &&
            atomic_load_explicit(&n->ev_n, memory_order_relaxed) >= n->cfg.cache_pages)
            break;
        struct coh_out out;
        out.n = 0;
        proto_of(n, q)->node_access(&st, ext_of(n, q), n->rank, dsm_home_of(n, q), q, 0, &out);
        n->pf[q] = PF_INFLIGHT;
        exec_actions(n, &out, NULL, NULL);
        set_state(n, q, st);
    }
    n->pf_next = q;
}

/* Self-tests of the fixture (engine.selftest.fetch_bug / refresh_bug): a one-sided fetch, or an
 * in-place refresh, while this node's write-backs are in flight; (ahead_bug) a page read ahead
 * in place without this node ever registering as its reader. */
#ifndef UFDSM_INJECT_AHEAD_BUG
#define UFDSM_INJECT_AHEAD_BUG 0
#endif
#ifndef UFDSM_INJECT_FETCH_BUG
#define UFDSM_INJECT_FETCH_BUG 0
#endif
#ifndef UFDSM_INJECT_REFRESH_BUG
#define UFDSM_INJECT_REFRESH_BUG 0
#endif

/* Whether node `home`'s store can be read in place from here and holds every write-back of
 * this node: none may be in flight - it could still be on its way to that very page (an
 * acquire sends changes and drops the copy without waiting), and a copy taken before the home
 * applied it would lose this node's own write (rc_model --fetch-early shows the trace).
 * `injected`: skip that last check (the self-tests above). */
static int home_store_current(struct dsm_node *n, int home, int injected)
{
    return home != n->rank && n->mem->peer_readable &&
           (injected || atomic_load_explicit(&n->rc_outstanding, memory_order_acquire) == 0) &&
           n->mem->peer_readable(n->mem_ctx, home);
}

/* How an access may be served (COH_ACC_*): one-sided from the home's store when the
 * protocol allows it (release consistency) and the store is current (home_store_current). */
static unsigned access_how(struct dsm_node *n, uint64_t page, int home, int ask_write)
{
    unsigned how = ask_write ? COH_ACC_WRITE : 0;
    if (n->proto[page] == DSM_PROTO_RC && home_store_current(n, home, UFDSM_INJECT_FETCH_BUG))
        how |= COH_ACC_FETCH;
    if (home_shared(n, page)) how |= COH_ACC_INPLACE;
    return how;
}

#ifndef UFDSM_INJECT_REGISTER_BUG
#define UFDSM_INJECT_REGISTER_BUG 0
#endif
#ifndef UFDSM_INJECT_WATCH_BUG
#define UFDSM_INJECT_WATCH_BUG 0
#endif

/* Every writer a shared directory entry names: registered by message or by themselves. */
static uint64_t all_writers(const struct dsm_node *n, const uint64_t *w)
{
    return (__atomic_load_n(&w[DIR_WRITERS], __ATOMIC_SEQ_CST) |
            __atomic_load_n(&w[DIR_SELFREG], __ATOMIC_SEQ_CST)) &
           node_mask(n);
}

/* One-sided reader registration (token held; rc.h explains why it is safe): a first read of
 * an RC page whose co-located home shares its directory sets this node's bit in the readers
 * word and reads the writers word, and the access that follows takes the page from the home's
 * store. A node's first read of a page used to be a message the home had to answer, and the
 * home is usually computing: 75-130 us at p50 in the kernels, against 5 for a one-sided read.
 * `x`: the page's protocol state, or a copy of it (read-ahead tries its pages on copies). */
static void register_onesided(struct dsm_node *n, uint64_t page, int home, uint8_t st,
                              struct rc_node *x, unsigned how)
{
    if (!n->mem->dir_words || !rc_node_may_register(st, x, how)) return;
    uint64_t *w = n->mem->dir_words(n->mem_ctx, home, page);
    if (!w) return;
    __atomic_fetch_or(&w[DIR_READERS], (uint64_t)1 << n->rank, __ATOMIC_SEQ_CST);
    uint64_t writers = all_writers(n, w);
#if UFDSM_INJECT_REGISTER_BUG /* self-test of the fixture: registered, blind to the writers */
    writers = 0;
#endif
    rc_node_registered(x, writers);
    atomic_fetch_add_explicit(&n->st.onesided_registered, 1, memory_order_relaxed);
}

#ifndef UFDSM_INJECT_WRITER_BUG
#define UFDSM_INJECT_WRITER_BUG 0
#endif

/* One-sided writer registration (token held; rc.h explains why it is safe): a first write of
 * an RC page whose co-located home shares its directory (and so its store: dir_words) sets
 * this node's bit in the readers and one-sided writers words and reads what the words and the
 * home's watchers word say; where no other node must be told first, the access that follows
 * writes at once (taking the page from the home's store if it has no copy). Otherwise it asks
 * the home as before. A radix sort's output pages are each first written by every node in the
 * same interval, and each of those registrations waited 40-50 us at p50 for a busy node. */
static void register_writer_onesided(struct dsm_node *n, uint64_t page, int home, uint8_t st,
                                     struct rc_node *x, unsigned how)
{
    if (!n->mem->dir_words || !n->mem->dir_watchers || !rc_node_may_register_writer(st, x, how))
        return;
    uint64_t *w = n->mem->dir_words(n->mem_ctx, home, page);
    uint64_t *ww = n->mem->dir_watchers(n->mem_ctx, home);
    if (!w || !ww) return;
    const uint64_t me = (uint64_t)1 << n->rank, all = node_mask(n);
    __atomic_fetch_or(&w[DIR_READERS], me, __ATOMIC_SEQ_CST);
    __atomic_fetch_or(&w[DIR_SELFREG], me, __ATOMIC_SEQ_CST);
    uint64_t readers = __atomic_load_n(&w[DIR_READERS], __ATOMIC_SEQ_CST) & all;
    uint64_t writers = __atomic_load_n(&w[DIR_WRITERS], __ATOMIC_SEQ_CST) & all;
    uint64_t selfreg = __atomic_load_n(&w[DIR_SELFREG], __ATOMIC_SEQ_CST) & all;
    uint64_t watchers = __atomic_load_n(ww, __ATOMIC_SEQ_CST) & all;
#if UFDSM_INJECT_WRITER_BUG /* self-test of the fixture: a writer that sees no one to tell */
    readers = writers = selfreg = 0;
#endif
    if (rc_node_registered_writer(x, n->rank, home, readers, writers, selfreg, watchers))
        atomic_fetch_add_explicit(&n->st.onesided_writers, 1, memory_order_relaxed);
}

static int fetched_onesided(const struct coh_out *out)
{
    for (int i = 0; i < out->n; i++)
        if (out->a[i].kind == COH_A_FETCH) return 1;
    return 0;
}

static unsigned count_sends(const struct coh_out *out)
{
    unsigned k = 0;
    for (int i = 0; i < out->n; i++) k += out->a[i].kind == COH_A_SEND;
    return k;
}

/* Read-ahead in place (token held): a read miss served from the home's store
 * (COH_A_FETCH) that extends a stream - sequential, or of a stride of up to PF_MAX_STRIDE
 * pages (stream_extends) - takes the next pages of the window the same way, each
 * as the read access it is about to be, as long as the protocol lets this node take them
 * without a message. No request, no wait: here a fault costs 12-17 us on top of the page
 * (SIGBUS and its return under this hypervisor) and a page copied in place 2-4 us, so a
 * stream re-read after an acquire dropped it no longer pays a fault per page. A page never read
 * before is registered for in the home's shared directory first (register_onesided), so a first
 * pass over a co-located home's pages streams too. The window ends at the first page that needs
 * its home (a first read where there is no shared directory: the message read-ahead takes
 * those), another home, one that is not an unasked-for RC page, or a full cache (DSM_CACHE: as
 * above, read-ahead never makes room for itself). */
static void read_ahead_inplace(struct dsm_node *n, uint64_t page)
{
    if (!stream_extends(n, page, 1)) return;
    int home = dsm_home_of(n, page);
    const uint64_t step = n->pf_step;
    uint64_t q = page + step;
    for (; q <= page + step * (uint64_t)n->pf_win && q < n->npages; q += step) {
        uint8_t st = atomic_load_explicit(&n->pstate[q], memory_order_relaxed);
        if (dsm_home_of(n, q) != home || st != COH_I || n->pf[q] || n->proto[q] != DSM_PROTO_RC)
            break;
        /* evict: read-ahead never pushes out pages to make room for itself. */
        if (n->cfg.cache_pages &&
            atomic_load_explicit(&n->ev_n, memory_order_relaxed) >= n->cfg.cache_pages)
            break;
        /* Tried on copies: a page that would need a message is left exactly as it was. */
        struct rc_node x = n->rcx[q];
#if UFDSM_INJECT_AHEAD_BUG /* self-test: as if the home knew this node as a reader already */
        x.flags |= RC_N_READER;
#endif
        struct coh_out out;
        out.n = 0;
        unsigned how = access_how(n, q, home, 0);
        register_onesided(n, q, home, st, &x, how);
        if (rc_node_access(&st, &x, n->rank, home, q, how, &out) != COH_ACCESS_OK ||
            !fetched_onesided(&out) || count_sends(&out))
            break;
        n->rcx[q] = x;
        exec_actions(n, &out, NULL, NULL);
        set_state(n, q, st);
        atomic_fetch_add_explicit(&n->st.pages_prefetched, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st.onesided_prefetched, 1, memory_order_relaxed);
        if (step > 1) atomic_fetch_add_explicit(&n->st.strided_prefetched, 1, memory_order_relaxed);
        DSM_TRACE(DSM_TR_PREFETCHED, 0, q, dsm_node_now(n), 0, 0, home, 0);
    }
    n->pf_next = q;
}

/* The counters and trace kind of a request this node just sent for an access. */
static uint8_t account_request(struct dsm_node *n, uint64_t page, uint8_t st, int write,
                               int ask_write, int onesided)
{
    if (onesided) { /* S or M already: counted as the miss it was */
        atomic_fetch_add_explicit(&n->st.onesided_fetches, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(write ? &n->st.write_faults : &n->st.read_faults, 1,
                                  memory_order_relaxed);
        return write ? DSM_TR_WRITE_MISS : DSM_TR_READ_MISS;
    }
    if (ask_write && !write) {
        atomic_fetch_add_explicit(&n->st.read_faults, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&n->st.migratory_reads, 1, memory_order_relaxed);
        return DSM_TR_READ_MISS; /* a read fault, whatever was asked for */
    }
    if (st == COH_IS_D) {
        atomic_fetch_add_explicit(&n->st.read_faults, 1, memory_order_relaxed);
        return DSM_TR_READ_MISS;
    }
    if (st == COH_IM_AD) {
        atomic_fetch_add_explicit(&n->st.write_faults, 1, memory_order_relaxed);
        return DSM_TR_WRITE_MISS;
    }
    atomic_fetch_add_explicit(&n->st.upgrades, 1, memory_order_relaxed);
    if (n->proto[page] == DSM_PROTO_SC) __atomic_store_n(&n->mig[page], MIG_SEEN, __ATOMIC_RELAXED);
    return DSM_TR_UPGRADE;
}

/* How long a page stays after the thread that waited for it saw it arrive: long enough to
 * return from the signal handler and retry the access. */
#define HOLD_GRACE_NS 3000

void dsm_access(struct dsm_node *n, uint64_t page, int write, int from_fault, uint32_t offset)
{
    uint64_t t0 = dsm_node_now(n);
    int home = dsm_home_of(n, page);
    if (home == HOME_NONE)
        dsm_node_fatal(n,
                       "access to unallocated DSM memory at %p (page %llu): the address was "
                       "never returned by dsm_alloc/dsm_malloc, or was freed",
                       (void *)(uintptr_t)(n->cfg.base + (page << PAGE_SHIFT)),
                       (unsigned long long)page);
    const struct coh_protocol *pr = proto_of(n, page);
    struct access_wait w = {n, page, write};
    int requested = 0;
    uint8_t kind = 0;
    unsigned msgs = 0;
    dsm_evict_ref(n, page); /* evict: a fault is a reference */
    for (;;) {
        dsm_token_acquire(n);
        atomic_fetch_add_explicit(&n->poll_epoch, 1, memory_order_relaxed);
        /* evict: a miss on a remote page makes room first (and for a read-ahead window if it
         * extends a stream), so the cache stays within its size. */
        if (n->cfg.cache_pages && home != n->rank &&
            atomic_load_explicit(&n->pstate[page], memory_order_relaxed) == COH_I)
            dsm_evict_room(n, page == n->pf_next ? 1 + (uint64_t)n->cfg.prefetch : 1);
        uint8_t st = atomic_load_explicit(&n->pstate[page], memory_order_relaxed);
        struct coh_out out;
        out.n = 0;
        /* Migratory data (read, then written, by one node after another: a counter under a
         * lock) costs two round trips per visit, a read miss and an upgrade. A page this node
         * had to upgrade before is asked for exclusively on a read miss (the protocol allows
         * a GET_M for any access), mapped read-only all the same, so that the first write
         * shows: a write confirms the guess (one local fault, no message), losing the page
         * unwritten withdraws it. */
        int sc = n->proto[page] == DSM_PROTO_SC;
        int ask_write = write || (sc && st == COH_I && (n->mig[page] & MIG_SEEN) && n->nodes > 1);
        unsigned how = access_how(n, page, home, ask_write);
        if (n->proto[page] == DSM_PROTO_RC) {
            register_onesided(n, page, home, st, &n->rcx[page], how);
            register_writer_onesided(n, page, home, st, &n->rcx[page], how);
        }
        int rc = pr->node_access(&st, ext_of(n, page), n->rank, home, page, how, &out);
        if (write && st == COH_M && (n->mig[page] & MIG_CLEAN)) {
            n->mem->protect(n->mem_ctx, page, 0);
            __atomic_store_n(&n->mig[page], MIG_SEEN, __ATOMIC_RELAXED);
        }
        if (out.n && ask_write && !write)
            __atomic_store_n(&n->mig[page], MIG_SEEN | MIG_CLEAN, __ATOMIC_RELAXED);
        if (out.n) {
            if (!requested)
                kind = account_request(n, page, st, write, ask_write, fetched_onesided(&out));
            requested = 1;
            msgs += count_sends(&out);
            exec_actions(n, &out, NULL, NULL);
            set_state(n, page, st);
            if (st == COH_IS_D && n->cfg.prefetch)
                read_ahead(n, page);
            else if (st == COH_S && !write && n->cfg.prefetch && fetched_onesided(&out))
                read_ahead_inplace(n, page);
            dsm_progress(n);
        } else if (rc == COH_ACCESS_WAIT && !requested) {
            atomic_fetch_add_explicit(&n->st.waits_joined, 1, memory_order_relaxed);
        }
        dsm_token_release(n);
        if (rc == COH_ACCESS_OK) break; /* allowed (possibly raced with the page's arrival) */
        dsm_wait(n, access_settled, &w);
        if (dsm_access_ok(n, page, write)) break;
    }
    dsm_evict_ref(n, page); /* evict: its second chance starts when it arrives */
    uint64_t now = dsm_node_now(n);
    /* The page is in place and this thread is about to use it: a recall may go ahead as soon
     * as the access has been retried, which takes a signal return, not a whole hold. */
    uint64_t until = __atomic_load_n(&n->hold_until[page], __ATOMIC_RELAXED);
    if (until > now + HOLD_GRACE_NS)
        __atomic_store_n(&n->hold_until[page], now + HOLD_GRACE_NS, __ATOMIC_RELAXED);
    if (!requested) return;
    uint64_t dt = now - t0;
    DSM_TRACE(from_fault ? kind : DSM_TR_KERNEL_FAULT, write ? DSM_TR_F_WRITE : 0, page, t0, dt,
              offset, home, msgs);
    if (from_fault) {
        /* Its own lock, not the token: the token may be busy for a whole engine pass, this
         * lock only for the few instructions of one add, and no sample is lost. */
        while (atomic_flag_test_and_set_explicit(&n->fault_hist_lock, memory_order_acquire))
            ;
        dsm_hist_add(&n->fault_hist, dt);
        atomic_flag_clear_explicit(&n->fault_hist_lock, memory_order_release);
    }
}

/* ---------------------------------------------------------------- release consistency */

static int writebacks_done(void *arg)
{
    struct dsm_node *n = arg;
    return atomic_load_explicit(&n->rc_outstanding, memory_order_acquire) == 0;
}

/* Write-protects pages [first, first + count): one call where the memory can do it. */
static void protect_run(struct dsm_node *n, uint64_t first, uint64_t count)
{
    if (n->mem->protect_range)
        n->mem->protect_range(n->mem_ctx, first, count);
    else
        for (uint64_t p = first; p < first + count; p++) n->mem->protect(n->mem_ctx, p, 1);
}

/* Carries out the release actions decided for a batch of pages (token held). The
 * write-protections come first, runs of consecutive pages in one call each: every call flushes
 * the TLB of each CPU running a thread of the process, an interrupt to the other vCPU, and a
 * release that protected a thousand pages one by one spent most of its time there. Then each
 * page's other actions, in order: a page is still protected before its contents are read for
 * its write-back (rc.c), and a write that comes later faults and waits for the token. */
static void release_batch(struct dsm_node *n, struct dsm_rel_item *b, int k)
{
    uint64_t prot[DSM_REL_BATCH];
    int np = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < b[i].n; j++)
            if (b[i].a[j].kind == COH_A_PROTECT) prot[np++] = b[i].page;
    qsort(prot, (size_t)np, sizeof prot[0], cmp_page);
    for (int i = 0, j; i < np; i = j) {
        for (j = i + 1; j < np && prot[j] == prot[j - 1] + 1;) j++;
        protect_run(n, prot[i], (uint64_t)(j - i));
    }
    for (int i = 0; i < k; i++) {
        struct coh_out out;
        out.n = 0;
        for (int j = 0; j < b[i].n; j++)
            if (b[i].a[j].kind != COH_A_PROTECT) out.a[out.n++] = b[i].a[j];
        exec_actions(n, &out, NULL, NULL);
        set_state(n, b[i].page, b[i].st);
        /* Write-backs to pages this node homes go through the local queue: apply them as we
         * go. Only those can be there, so no list changes under the loop. */
        if (n->lq_tail - n->lq_head > n->cfg.lq_cap / 2) lq_drain(n);
    }
    /* Out now, a batch at a time: a release of a thousand pages queued 4 MiB for one peer
     * first, and the transport grew (and later gave back) a buffer for it at every release -
     * a page fault per page of it, and copies - while the receiver sat idle. */
    if (n->tp) n->tp->ops->flush(n->tp);
}

/* COH_REL_CLEAN for a writable twinned RC page no thread changed since its last diff: the
 * protocol then lets it run out of releases kept writable (rc.h, RC_KEEP_TWINNED). A write
 * landing just after the compare is still sent (the hint changes no action, only `keep`). */
static unsigned release_how(struct dsm_node *n, uint64_t p, uint8_t st)
{
    if (n->proto[p] != DSM_PROTO_RC || st != COH_M || !(n->rcx[p].flags & RC_N_TWIN) ||
        !n->rcx[p].keep)
        return 0;
    return memcmp(n->mem->page(n->mem_ctx, p), n->mem->twin(n->mem_ctx, p), PAGE_SIZE)
               ? 0
               : COH_REL_CLEAN;
}

void dsm_node_release(struct dsm_node *n)
{
    if (atomic_load_explicit(&n->rc_dirty_n, memory_order_acquire) || !writebacks_done(n)) {
        dsm_token_acquire(n);
        /* Backwards, a batch at a time: a page leaves the list when its batch is carried out,
         * and the last one takes its place - always one of the batch's own positions, so the
         * positions below the batch are untouched. The list is in the order the pages were
         * first written; sorted, each batch is a stretch of the address space, and its
         * write-protections are runs (release_batch): a radix sort's scattered writes made
         * 129 protections of one page each, 4-5 ms of its barrier, where a few runs do. */
        struct dsm_rel_item *b = n->rel;
        uint32_t i = atomic_load_explicit(&n->rc_dirty_n, memory_order_relaxed);
        qsort(n->rc_dirty, i, sizeof *n->rc_dirty, cmp_page);
        for (uint32_t j = 0; j < i; j++) n->rc_dirty_pos[n->rc_dirty[j]] = j + 1;
        while (i > 0) {
            int k = 0;
            while (i > 0 && k < DSM_REL_BATCH) {
                uint64_t p = n->rc_dirty[--i];
                uint8_t st = atomic_load_explicit(&n->pstate[p], memory_order_relaxed);
                struct coh_out out;
                out.n = 0;
                proto_of(n, p)->node_release(&st, ext_of(n, p), n->rank, dsm_home_of(n, p), p,
                                             release_how(n, p, st), &out);
                if (out.n > DSM_REL_ACTS) { /* not batched: the batch so far, then this page */
                    release_batch(n, b, k);
                    k = 0;
                    exec_actions(n, &out, NULL, NULL);
                    set_state(n, p, st);
                    continue;
                }
                b[k].page = p;
                b[k].st = st;
                b[k].n = (uint8_t)out.n;
                memcpy(b[k].a, out.a, (size_t)out.n * sizeof out.a[0]);
                k++;
            }
            release_batch(n, b, k);
        }
        dsm_progress(n);
        dsm_token_release(n);
        /* The next acquirer fetches from the homes: they must have applied everything. */
        dsm_wait(n, writebacks_done, n);
    }
}

/* What an acquire may do to page p besides dropping it (COH_ACC_REFRESH): overwrite the copy
 * from its home's store in place, under the same conditions as a one-sided fetch - none of
 * this node's write-backs in flight, which an earlier page of this very acquire may have
 * sent (access_how). */
static unsigned acquire_how(struct dsm_node *n, uint64_t p)
{
    return n->mem->refresh && n->mem->view &&
                   home_store_current(n, dsm_home_of(n, p), UFDSM_INJECT_REFRESH_BUG)
               ? COH_ACC_REFRESH
               : 0;
}

/* Watching (token held; rc.h explains why it is safe): the writers words of page p in its
 * co-located home's shared directory, read at an acquire, so that the home need not tell this
 * node of a new writer of a page it only reads (or writes with a twin). This node sets its bit
 * in that home's watchers word at its first acquire that can read the home's words
 * (watch_homes), before it reads any of them: until the home sees the bit it sends CLASS as
 * before, and after that every acquire of this node reads the words. NULL where p's home is
 * this node or is not watched. */
static const uint64_t *watched_words(struct dsm_node *n, uint64_t p, int home)
{
    if (home == n->rank || !(n->watching & ((uint64_t)1 << home))) return NULL;
    return n->mem->dir_words(n->mem_ctx, home, p);
}

/* Sets this node's bit in the watchers word of every co-located home it does not watch yet
 * (token held, at an acquire, before any word is read): a node watches every home it can, not
 * only those it holds copies of, because a one-sided writer must see every other writer and
 * reader of its page watching to write without a message (rc_node_registered_writer). At 4
 * nodes, a radix sort's writers fell back to messages for about a third of their first writes,
 * to pages written by nodes that held no copy from that home at their acquires before. */
static void watch_homes(struct dsm_node *n)
{
    if (!n->mem->dir_watchers) return;
    for (int h = 0; h < n->nodes; h++) {
        if (h == n->rank || (n->watching & ((uint64_t)1 << h))) continue;
        uint64_t *ww = n->mem->dir_watchers(n->mem_ctx, h);
        if (!ww) continue;
        __atomic_fetch_or(ww, (uint64_t)1 << n->rank, __ATOMIC_SEQ_CST);
        n->watching |= (uint64_t)1 << h;
    }
}

void dsm_node_acquire(struct dsm_node *n)
{
    if (!atomic_load_explicit(&n->rc_live_n, memory_order_acquire)) return;
    dsm_token_acquire(n);
    watch_homes(n);
    /* Copies dropped are unmapped in ranges, before anything else may install a page. */
    const int batch = n->mem->unmap_range != NULL;
    n->drops_on = batch;
    for (uint32_t i = atomic_load_explicit(&n->rc_live_n, memory_order_relaxed); i-- > 0;) {
        uint64_t p = n->rc_live[i];
        uint8_t st = atomic_load_explicit(&n->pstate[p], memory_order_relaxed);
        struct coh_out out;
        out.n = 0;
        const uint64_t *w = watched_words(n, p, dsm_home_of(n, p));
/* (Self-tests: a blind watcher. A node's acquire reading the word covers a registration it
 * missed, so the self-tests of registration and read-ahead turn watching off too.) */
#if !UFDSM_INJECT_REGISTER_BUG && !UFDSM_INJECT_WATCH_BUG && !UFDSM_INJECT_AHEAD_BUG
        if (w) rc_node_watch(&n->rcx[p], all_writers(n, w));
#else
        (void)w;
#endif
        proto_of(n, p)->node_acquire(&st, ext_of(n, p), n->rank, dsm_home_of(n, p), p,
                                     acquire_how(n, p), &out);
        if (!out.n && st == atomic_load_explicit(&n->pstate[p], memory_order_relaxed)) continue;
        exec_actions(n, &out, NULL, NULL);
        set_state(n, p, st);
        if (n->lq_tail - n->lq_head > n->cfg.lq_cap / 2) {
            drops_flush(n);
            n->drops_on = 0; /* (a message handled here unmaps at once) */
            lq_drain(n);
            n->drops_on = batch;
        }
    }
    drops_flush(n);
    n->drops_on = 0;
    dsm_progress(n);
    dsm_token_release(n);
}

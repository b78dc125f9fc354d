/*
 * sync.c - barriers, collective agreement, mutexes, and the goodbye/abort messages.
 *
 * Collectives (barrier, alloc, free, finalize) share one sequence number per node. Barriers
 * are dissemination barriers (ceil(log2 N) rounds of one message each, so two nodes need one
 * one-way message, not a round trip through a coordinator). The rarer collectives that carry
 * arguments (alloc, free, finalize) do an all-to-all exchange of what each node called, so
 * every node can name a disagreement; a barrier message that meets an alloc (or the other way
 * round) at the same sequence number is a disagreement too. Disagreement is fatal: the
 * program is not the same program on every node any more.
 *
 * Mutexes are granted by a manager, the node that homes the mutex's address, in FIFO order.
 * The mutex's own bytes are never touched, so locking costs no page traffic; the data a lock
 * protects moves by the normal protocol when it is used. All tables are fixed-size and
 * preallocated: the manager runs under the progress token, possibly inside a fault handler,
 * where malloc is not allowed.
 *
 * State here is owned by the progress-token holder; waiters read progress counters with
 * atomic loads.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* ---------------------------------------------------------------- collectives */

static int releases_done(void *arg);

struct coll_rec {
    uint64_t seq; /* 0: none yet */
    uint32_t kind;
    uint64_t a, b, c;
};

static uint64_t cseq; /* collectives entered by this node */
static int cur_kind;  /* kind of collective `cseq` */
static uint64_t cur_a, cur_b, cur_c;
static uint64_t bar_recv[64][2];               /* [round][seq parity] = seq of last BARRIER msg */
static struct coll_rec coll[DSM_MAX_NODES][2]; /* [peer][seq parity] */

static void describe(char *buf, size_t len, int kind, uint64_t a, uint64_t b, uint64_t c)
{
    switch (kind) {
    case COLL_BARRIER:
        snprintf(buf, len, "dsm_barrier()");
        break;
    case COLL_ALLOC:
        snprintf(buf, len, "dsm_alloc_placed(size %llu, policy %llu, arg %llu)",
                 (unsigned long long)a, (unsigned long long)b, (unsigned long long)c);
        break;
    case COLL_FREE:
        snprintf(buf, len, "dsm_free(%p)", (void *)(g.base + a));
        break;
    case COLL_FINALIZE:
        snprintf(buf, len, "dsm_finalize()");
        break;
    default:
        snprintf(buf, len, "an unknown collective (%d)", kind);
    }
}

static void mismatch(int peer, int kind, uint64_t a, uint64_t b, uint64_t c)
{
    char mine[128], theirs[128];
    describe(mine, sizeof mine, cur_kind, cur_a, cur_b, cur_c);
    describe(theirs, sizeof theirs, kind, a, b, c);
    dsm_fatal("collective call #%llu differs between nodes: node %d called %s, node %d called "
              "%s - every node must make the same collective calls (dsm_alloc, "
              "dsm_alloc_placed, dsm_free of dsm_alloc memory, dsm_barrier, dsm_finalize) in "
              "the same order with the same arguments",
              (unsigned long long)cseq, g.rank, mine, peer, theirs);
}

static int rounds(void)
{
    int r = 0;
    while ((1 << r) < g.nodes) r++;
    return r;
}

struct bar_wait {
    int round;
    uint64_t seq;
};

static int bar_done(void *arg)
{
    struct bar_wait *w = arg;
    return __atomic_load_n(&bar_recv[w->round][w->seq & 1], __ATOMIC_ACQUIRE) == w->seq;
}

static int coll_done(void *arg)
{
    uint64_t seq = *(uint64_t *)arg;
    for (int n = 0; n < g.nodes; n++)
        if (n != g.rank && __atomic_load_n(&coll[n][seq & 1].seq, __ATOMIC_ACQUIRE) != seq)
            return 0;
    return 1;
}

void dsm_collective(int kind, uint64_t a, uint64_t b, uint64_t c)
{
    if (!releases_done(NULL)) dsm_wait(releases_done, NULL);
    dsm_token_acquire();
    cseq++;
    cur_kind = kind;
    cur_a = a;
    cur_b = b;
    cur_c = c;
    uint64_t seq = cseq;
    /* Messages for this collective that arrived before we got here. */
    for (int n = 0; n < g.nodes; n++) {
        struct coll_rec *r = &coll[n][seq & 1];
        if (n != g.rank && r->seq == seq &&
            (kind == COLL_BARRIER || r->kind != (uint32_t)kind || r->a != a || r->b != b ||
             r->c != c))
            mismatch(n, (int)r->kind, r->a, r->b, r->c);
    }
    if (kind != COLL_BARRIER)
        for (int k = 0; k < rounds(); k++)
            if (bar_recv[k][seq & 1] == seq)
                mismatch((g.rank - (1 << k) + g.nodes) % g.nodes, COLL_BARRIER, 0, 0, 0);

    if (kind == COLL_BARRIER) {
        for (int k = 0; k < rounds(); k++) {
            struct dsm_wire_hdr h;
            dsm_wire_init(&h, DSM_MSG_BARRIER, (uint32_t)g.rank);
            h.aux = (uint32_t)k;
            h.arg0 = seq;
            dsm_send((g.rank + (1 << k)) % g.nodes, &h, NULL);
            dsm_progress();
            dsm_token_release();
            struct bar_wait w = {k, seq};
            dsm_wait(bar_done, &w);
            dsm_token_acquire();
        }
        dsm_token_release();
        return;
    }
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_COLL, (uint32_t)g.rank);
    h.arg0 = seq;
    h.aux = (uint32_t)kind;
    h.arg1 = a;
    uint64_t payload[2] = {b, c};
    h.len = sizeof payload;
    for (int n = 0; n < g.nodes; n++)
        if (n != g.rank) dsm_send(n, &h, payload);
    dsm_progress();
    dsm_token_release();
    dsm_wait(coll_done, &seq);
    for (int n = 0; n < g.nodes; n++) {
        struct coll_rec *r = &coll[n][seq & 1];
        if (n != g.rank && (r->kind != (uint32_t)kind || r->a != a || r->b != b || r->c != c))
            mismatch(n, (int)r->kind, r->a, r->b, r->c);
    }
}

static void recv_barrier(const struct dsm_wire_hdr *h)
{
    uint64_t seq = h->arg0;
    /* A peer is at most one collective ahead of us (it cannot finish one we have not
     * entered), so two parities suffice; anything else is a corrupt or foreign stream. */
    if (seq != cseq && seq != cseq + 1)
        dsm_fatal("node %d sent a barrier message for collective #%llu while this node is at "
                  "#%llu: the nodes are out of step",
                  h->src, (unsigned long long)seq, (unsigned long long)cseq);
    if (seq == cseq && cur_kind != COLL_BARRIER) mismatch(h->src, COLL_BARRIER, 0, 0, 0);
    __atomic_store_n(&bar_recv[h->aux][seq & 1], seq, __ATOMIC_RELEASE);
}

static void recv_coll(const struct dsm_wire_hdr *h, const void *payload)
{
    uint64_t seq = h->arg0, bc[2];
    memcpy(bc, payload, sizeof bc);
    if (seq != cseq && seq != cseq + 1)
        dsm_fatal("node %d sent a collective message for #%llu while this node is at #%llu: "
                  "the nodes are out of step",
                  h->src, (unsigned long long)seq, (unsigned long long)cseq);
    struct coll_rec *r = &coll[h->src][seq & 1];
    r->kind = h->aux;
    r->a = h->arg1;
    r->b = bc[0];
    r->c = bc[1];
    if (seq == cseq && cur_kind == COLL_BARRIER) mismatch(h->src, (int)h->aux, r->a, bc[0], bc[1]);
    __atomic_store_n(&r->seq, seq, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- mutex: requesting side */

#define WAITER_SLOTS 1024
/* arg1 of a LOCK_REL, echoed in the manager's LOCK_GRANT: "your release is done". */
#define REL_ACK_ID WAITER_SLOTS
enum { W_FREE = 0, W_WAITING = 1, W_GRANTED = 2, W_BUSY = 3 };
static _Atomic int waiter[WAITER_SLOTS];
/* Releases sent to another node's manager and not yet acknowledged. Unlock does not wait for
 * the ack (a lock handoff should cost one message, not a round trip), but every collective
 * does, so that "unlock; barrier" on one node and "barrier; trylock" on another always finds
 * the mutex free: the release and the trylock travel on different connections otherwise. */
static _Atomic int rel_outstanding;

static int releases_done(void *arg)
{
    (void)arg;
    return atomic_load_explicit(&rel_outstanding, memory_order_acquire) == 0;
}

static int slot_get(void)
{
    for (;;) {
        for (int i = 0; i < WAITER_SLOTS; i++) {
            int f = W_FREE;
            if (atomic_load_explicit(&waiter[i], memory_order_relaxed) == W_FREE &&
                atomic_compare_exchange_strong(&waiter[i], &f, W_WAITING))
                return i;
        }
        sched_yield(); /* more than WAITER_SLOTS threads in lock calls at once */
    }
}

static int slot_answered(void *arg)
{
    return atomic_load_explicit(&waiter[*(int *)arg], memory_order_acquire) != W_WAITING;
}

static int manager_of(const dsm_mutex_t *m, const char *fn)
{
    int home = dsm_home(m);
    if (home < 0)
        dsm_fatal("%s(%p): the mutex is not in DSM memory; put dsm_mutex_t in memory from "
                  "dsm_alloc or dsm_malloc so every node names the same mutex",
                  fn, (const void *)m);
    return home;
}

/* Sends a lock message and waits for the manager's answer. Returns W_GRANTED or W_BUSY. */
static int lock_call(dsm_mutex_t *m, int type, int aux, const char *fn)
{
    int mgr = manager_of(m, fn);
    int slot = slot_get();
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, (enum dsm_wire_type)type, (uint32_t)g.rank);
    h.arg0 = (uint64_t)(uintptr_t)m;
    h.arg1 = (uint64_t)slot;
    h.aux = (uint32_t)aux;
    dsm_token_acquire();
    dsm_send(mgr, &h, NULL);
    dsm_progress();
    dsm_token_release();
    dsm_wait(slot_answered, &slot);
    int r = atomic_load(&waiter[slot]);
    atomic_store(&waiter[slot], W_FREE);
    return r;
}

void dsm_mutex_init(dsm_mutex_t *m)
{
    lock_call(m, DSM_MSG_LOCK_INIT, 0, "dsm_mutex_init");
}

void dsm_mutex_lock(dsm_mutex_t *m)
{
    lock_call(m, DSM_MSG_LOCK_REQ, 0, "dsm_mutex_lock");
    atomic_fetch_add_explicit(&g.st.lock_acquires, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
}

int dsm_mutex_trylock(dsm_mutex_t *m)
{
    if (lock_call(m, DSM_MSG_LOCK_REQ, 1, "dsm_mutex_trylock") != W_GRANTED) return 1;
    atomic_fetch_add_explicit(&g.st.lock_acquires, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    return 0;
}

void dsm_mutex_unlock(dsm_mutex_t *m)
{
    int mgr = manager_of(m, "dsm_mutex_unlock");
    /* Every write of the critical section is performed (this node holds the page exclusively
     * or it has been written back) before the release leaves: SC needs no flush here, only
     * that the CPU's stores are visible to the engine, which this fence orders. */
    atomic_thread_fence(memory_order_seq_cst);
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_LOCK_REL, (uint32_t)g.rank);
    h.arg0 = (uint64_t)(uintptr_t)m;
    h.arg1 = REL_ACK_ID;
    if (mgr != g.rank) atomic_fetch_add(&rel_outstanding, 1);
    dsm_token_acquire();
    dsm_send(mgr, &h, NULL);
    dsm_progress();
    dsm_token_release();
}

static void recv_grant(const struct dsm_wire_hdr *h)
{
    if (h->arg1 == REL_ACK_ID) {
        if (atomic_fetch_sub(&rel_outstanding, 1) <= 0)
            dsm_fatal("node %d acknowledged a mutex release this node did not send", h->src);
        return;
    }
    if (h->arg1 >= WAITER_SLOTS || atomic_load(&waiter[h->arg1]) != W_WAITING)
        dsm_fatal("node %d answered a lock request this node did not make (slot %llu)", h->src,
                  (unsigned long long)h->arg1);
    atomic_store_explicit(&waiter[h->arg1], h->aux ? W_GRANTED : W_BUSY, memory_order_release);
}

/* ---------------------------------------------------------------- mutex: manager side */

#define LOCKS_MAX  65536 /* mutexes one node can manage at once (open addressing) */
#define QNODES_MAX 65536 /* queued lock requests on one manager */
#define QNIL       0xFFFFFFFFu

struct lock_ent {
    uint64_t addr; /* 0: empty slot */
    uint32_t head, tail;
    uint16_t holder;
    uint8_t held;
};
struct qnode {
    uint64_t waiter;
    uint32_t next;
    uint16_t node;
};
static struct lock_ent *locks;
static struct qnode *qnodes;
static uint32_t qfree = QNIL;
static uint32_t qnext_unused;

static struct lock_ent *lock_find(uint64_t addr, int create)
{
    uint64_t h = (addr >> 3) * 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < LOCKS_MAX; i++) {
        struct lock_ent *e = &locks[(h + i) & (LOCKS_MAX - 1)];
        if (e->addr == addr) return e;
        if (!e->addr) {
            if (!create) return NULL;
            *e = (struct lock_ent){.addr = addr, .head = QNIL, .tail = QNIL};
            return e;
        }
    }
    dsm_fatal("node %d manages more than %d mutexes; raise LOCKS_MAX in dsm/sync.c", g.rank,
              LOCKS_MAX);
}

static void grant(int node, uint64_t addr, uint64_t w, int granted)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_LOCK_GRANT, (uint32_t)g.rank);
    h.arg0 = addr;
    h.arg1 = w;
    h.aux = (uint32_t)granted;
    dsm_send(node, &h, NULL);
}

static void manage(const struct dsm_wire_hdr *h)
{
    uint64_t addr = h->arg0;
    if (dsm_home((void *)(uintptr_t)addr) != g.rank)
        dsm_fatal("node %d sent a lock message for %p, which node %d does not manage", h->src,
                  (void *)(uintptr_t)addr, g.rank);
    struct lock_ent *e = lock_find(addr, 1);
    switch (h->type) {
    case DSM_MSG_LOCK_INIT:
        if (e->held)
            dsm_fatal("dsm_mutex_init(%p) on node %d while node %d holds it", (void *)addr, h->src,
                      e->holder);
        grant(h->src, addr, h->arg1, 1);
        break;
    case DSM_MSG_LOCK_REQ:
        if (!e->held) {
            e->held = 1;
            e->holder = h->src;
            grant(h->src, addr, h->arg1, 1);
        } else if (h->aux) {
            grant(h->src, addr, h->arg1, 0);
        } else {
            uint32_t q = qfree;
            if (q != QNIL)
                qfree = qnodes[q].next;
            else if (qnext_unused < QNODES_MAX)
                q = qnext_unused++;
            else
                dsm_fatal("more than %d lock requests queued on node %d", QNODES_MAX, g.rank);
            qnodes[q] = (struct qnode){.waiter = h->arg1, .next = QNIL, .node = h->src};
            if (e->tail == QNIL)
                e->head = q;
            else
                qnodes[e->tail].next = q;
            e->tail = q;
        }
        break;
    case DSM_MSG_LOCK_REL:
        if (!e->held || e->holder != h->src)
            dsm_fatal("node %d unlocked mutex %p, which it does not hold (dsm_mutex_unlock "
                      "without a matching lock)",
                      h->src, (void *)addr);
        if (h->src != g.rank) grant(h->src, addr, REL_ACK_ID, 1);
        if (e->head == QNIL) {
            e->held = 0;
        } else {
            uint32_t q = e->head;
            e->head = qnodes[q].next;
            if (e->head == QNIL) e->tail = QNIL;
            e->holder = qnodes[q].node;
            grant(qnodes[q].node, addr, qnodes[q].waiter, 1);
            qnodes[q].next = qfree;
            qfree = q;
        }
        break;
    }
}

/* ---------------------------------------------------------------- dispatch */

void dsm_sync_init(void)
{
    locks = mmap(NULL, LOCKS_MAX * sizeof *locks, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    qnodes = mmap(NULL, QNODES_MAX * sizeof *qnodes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (locks == MAP_FAILED || qnodes == MAP_FAILED)
        dsm_fatal("cannot map the lock manager tables: %s", strerror(errno));
    cseq = 0;
    memset(bar_recv, 0, sizeof bar_recv);
    memset(coll, 0, sizeof coll);
}

void dsm_sync_recv(const struct dsm_wire_hdr *h, const void *payload)
{
    switch (h->type) {
    case DSM_MSG_LOCK_REQ:
    case DSM_MSG_LOCK_REL:
    case DSM_MSG_LOCK_INIT:
        manage(h);
        break;
    case DSM_MSG_LOCK_GRANT:
        recv_grant(h);
        break;
    case DSM_MSG_BARRIER:
        recv_barrier(h);
        break;
    case DSM_MSG_COLL:
        recv_coll(h, payload);
        break;
    case DSM_MSG_FREE:
        dsm_malloc_free_home(h->arg0);
        break;
    case DSM_MSG_BYE:
        atomic_fetch_add(&g.byes, 1);
        break;
    case DSM_MSG_ABORT: {
        char text[1025];
        size_t n = h->len < 1024 ? h->len : 1024;
        memcpy(text, payload, n);
        text[n] = 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)text[i] < 32 && text[i]) text[i] = '?';
        g.finalizing = 1; /* the others are going down too: no "lost node" noise */
        LOGE("node %d failed: %s", h->src, text);
        _exit(3);
    }
    default:
        dsm_fatal("node %d sent an unexpected message type %u", h->src, h->type);
    }
}

void dsm_barrier(void)
{
    if (!g.initialized) {
        LOGE("dsm_barrier called before dsm_init");
        return;
    }
    atomic_fetch_add_explicit(&g.st.barriers, 1, memory_order_relaxed);
    dsm_collective(COLL_BARRIER, 0, 0, 0);
}

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
 * protects moves by the normal protocol when it is used. A manager keeps an entry only while
 * its mutex is held or waited for, so a program may create and drop any number of mutexes
 * over its life. Each node also remembers which mutexes it holds, so that unlocking a mutex
 * this node does not hold is an error returned to the caller (as pthreads does), not a fatal
 * message at the manager. Tables are allocated once at creation: the manager runs under the
 * progress token, possibly inside a fault handler, where malloc is not allowed.
 *
 * One-sided mutexes. A manager with a memory file (one copy at the home) keeps a lock table in
 * it, beside the shared directory, and every node on its host maps it (region.c). There a
 * mutex is a slot: its holder word is taken with a compare-and-swap and given back with a
 * store, so a lock, a trylock and an unlock need no message and not the manager's CPU, which
 * in a parallel program is computing (a lock request waited 10-25 us or more for it to wake:
 * shared/facts/floors.md). A node that must wait sets its bit in the slot's waiters word and
 * tries once more (the unlocker frees the holder word and then takes the waiters word, both
 * sequentially consistent: one of the two sees the other, so no wake-up is lost); the unlocker
 * sends LOCK_WAKE to every node whose bit it took, which wakes that node's sleeping threads.
 * Requests by message (nodes on other hosts) go through the same slot: the manager takes the
 * holder word for the requester, queues requests it cannot grant yet (FIFO among them) with
 * its own waiters bit set, and retries at each LOCK_WAKE. Slots are claimed for an address and
 * never given back, so a mutex whose slots (LOCK_PROBES from its hash) all belong to other
 * mutexes goes by message for good, at every node alike. Waiting one-sided is not FIFO: a
 * node that unlocks and locks again may overtake a sleeping waiter, as with a futex.
 *
 * A lock taken in a table whose last unlock was this node's own is not an acquire: the
 * release it synchronises with is this node's, so it makes nothing newly visible here. Any
 * write of another node that happens before it reached this node through an acquire this
 * node already made (a chain of synchronisation from another node into this one enters it by
 * some acquire, and every thread of a node shares its copies). So a node that keeps taking
 * the same mutexes (the cells it owns, in the molecular-dynamics kernel) keeps its copies of
 * the pages other nodes write: no drop, fault or refresh for them at every lock.
 *
 * State here is owned by the progress-token holder; waiters read progress counters with
 * atomic loads (see engine.h).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"

/* ---------------------------------------------------------------- collectives */

static int releases_done(void *arg);

static void describe(struct dsm_node *n, char *buf, size_t len, int kind, uint64_t a, uint64_t b,
                     uint64_t c)
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
        snprintf(buf, len, "dsm_free(%p)", (void *)(uintptr_t)(n->cfg.base + a));
        break;
    case COLL_FINALIZE:
        snprintf(buf, len, "dsm_finalize()");
        break;
    default:
        snprintf(buf, len, "an unknown collective (%d)", kind);
    }
}

static void mismatch(struct dsm_node *n, int peer, int kind, uint64_t a, uint64_t b, uint64_t c)
{
    char mine[128], theirs[128];
    describe(n, mine, sizeof mine, n->cur_kind, n->cur_a, n->cur_b, n->cur_c);
    describe(n, theirs, sizeof theirs, kind, a, b, c);
    dsm_node_fatal(n,
                   "collective call #%llu differs between nodes: node %d called %s, node %d "
                   "called %s - every node must make the same collective calls (dsm_alloc, "
                   "dsm_alloc_placed, dsm_free of dsm_alloc memory, dsm_barrier, dsm_finalize) "
                   "in the same order with the same arguments",
                   (unsigned long long)n->cseq, n->rank, mine, peer, theirs);
}

static int rounds(const struct dsm_node *n)
{
    int r = 0;
    while ((1 << r) < n->nodes) r++;
    return r;
}

struct bar_wait {
    struct dsm_node *n;
    int round;
    uint64_t seq;
};

static int bar_done(void *arg)
{
    struct bar_wait *w = arg;
    return __atomic_load_n(&w->n->bar_recv[w->round][w->seq & 1], __ATOMIC_ACQUIRE) == w->seq;
}

struct coll_wait {
    struct dsm_node *n;
    uint64_t seq;
};

static int coll_done(void *arg)
{
    struct coll_wait *w = arg;
    for (int k = 0; k < w->n->nodes; k++)
        if (k != w->n->rank &&
            __atomic_load_n(&w->n->coll[k][w->seq & 1].seq, __ATOMIC_ACQUIRE) != w->seq)
            return 0;
    return 1;
}

void dsm_collective(struct dsm_node *n, int kind, uint64_t a, uint64_t b, uint64_t c)
{
    if (!releases_done(n)) dsm_wait(n, releases_done, n);
    dsm_token_acquire(n);
    n->cseq++;
    n->cur_kind = kind;
    n->cur_a = a;
    n->cur_b = b;
    n->cur_c = c;
    uint64_t seq = n->cseq;
    /* Messages for this collective that arrived before we got here. */
    for (int k = 0; k < n->nodes; k++) {
        struct coll_rec *r = &n->coll[k][seq & 1];
        if (k != n->rank && r->seq == seq &&
            (kind == COLL_BARRIER || r->kind != (uint32_t)kind || r->a != a || r->b != b ||
             r->c != c))
            mismatch(n, k, (int)r->kind, r->a, r->b, r->c);
    }
    if (kind != COLL_BARRIER)
        for (int k = 0; k < rounds(n); k++)
            if (n->bar_recv[k][seq & 1] == seq)
                mismatch(n, (n->rank - (1 << k) + n->nodes) % n->nodes, COLL_BARRIER, 0, 0, 0);

    if (kind == COLL_BARRIER) {
        for (int k = 0; k < rounds(n); k++) {
            struct dsm_wire_hdr h;
            dsm_wire_init(&h, DSM_MSG_BARRIER, (uint32_t)n->rank);
            h.aux = (uint32_t)k;
            h.arg0 = seq;
            dsm_send(n, (n->rank + (1 << k)) % n->nodes, &h, NULL);
            dsm_progress(n);
            dsm_token_release(n);
            struct bar_wait w = {n, k, seq};
            dsm_wait(n, bar_done, &w);
            dsm_token_acquire(n);
        }
        dsm_token_release(n);
        return;
    }
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_COLL, (uint32_t)n->rank);
    h.arg0 = seq;
    h.aux = (uint32_t)kind;
    h.arg1 = a;
    uint64_t payload[2] = {b, c};
    h.len = sizeof payload;
    for (int k = 0; k < n->nodes; k++)
        if (k != n->rank) dsm_send(n, k, &h, payload);
    dsm_progress(n);
    dsm_token_release(n);
    struct coll_wait w = {n, seq};
    dsm_wait(n, coll_done, &w);
    for (int k = 0; k < n->nodes; k++) {
        struct coll_rec *r = &n->coll[k][seq & 1];
        if (k != n->rank && (r->kind != (uint32_t)kind || r->a != a || r->b != b || r->c != c))
            mismatch(n, k, (int)r->kind, r->a, r->b, r->c);
    }
}

static void recv_barrier(struct dsm_node *n, const struct dsm_wire_hdr *h)
{
    uint64_t seq = h->arg0;
    /* A peer is at most one collective ahead of us (it cannot finish one we have not
     * entered), so two parities suffice; anything else is a corrupt or foreign stream. */
    if (seq != n->cseq && seq != n->cseq + 1)
        dsm_node_fatal(n,
                       "node %d sent a barrier message for collective #%llu while this node "
                       "is at #%llu: the nodes are out of step",
                       h->src, (unsigned long long)seq, (unsigned long long)n->cseq);
    if (h->aux >= 64 || (1 << h->aux) >= 2 * n->nodes)
        dsm_node_fatal(n, "node %d sent a barrier message for round %u of %d", h->src, h->aux,
                       rounds(n));
    if (seq == n->cseq && n->cur_kind != COLL_BARRIER) mismatch(n, h->src, COLL_BARRIER, 0, 0, 0);
    __atomic_store_n(&n->bar_recv[h->aux][seq & 1], seq, __ATOMIC_RELEASE);
}

static void recv_coll(struct dsm_node *n, const struct dsm_wire_hdr *h, const void *payload)
{
    uint64_t seq = h->arg0, bc[2];
    memcpy(bc, payload, sizeof bc);
    if (seq != n->cseq && seq != n->cseq + 1)
        dsm_node_fatal(n,
                       "node %d sent a collective message for #%llu while this node is at "
                       "#%llu: the nodes are out of step",
                       h->src, (unsigned long long)seq, (unsigned long long)n->cseq);
    struct coll_rec *r = &n->coll[h->src][seq & 1];
    r->kind = h->aux;
    r->a = h->arg1;
    r->b = bc[0];
    r->c = bc[1];
    if (seq == n->cseq && n->cur_kind == COLL_BARRIER)
        mismatch(n, h->src, (int)h->aux, r->a, bc[0], bc[1]);
    __atomic_store_n(&r->seq, seq, __ATOMIC_RELEASE);
}

void dsm_node_barrier(struct dsm_node *n)
{
    atomic_fetch_add_explicit(&n->st.barriers, 1, memory_order_relaxed);
    dsm_node_release(n); /* a barrier is a release followed by an acquire */
    dsm_collective(n, COLL_BARRIER, 0, 0, 0);
    dsm_node_acquire(n);
}

/* ---------------------------------------------------------------- address tables */

/* Open addressing with linear probing over a power-of-two table, deleted by shifting the
 * following run back (no tombstones, so a table that sees millions of mutexes come and go
 * never fills up with dead entries). */
static uint32_t slot_of(uint64_t addr, uint32_t cap)
{
    return (uint32_t)(((addr >> 3) * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* The mutexes this node holds. */
static int held_find(struct dsm_node *n, uint64_t addr, uint32_t *at)
{
    uint32_t cap = n->cfg.locks_max;
    for (uint32_t i = slot_of(addr, cap);; i = (i + 1) & (cap - 1)) {
        if (n->held[i] == addr) {
            *at = i;
            return 1;
        }
        if (!n->held[i]) {
            *at = i;
            return 0;
        }
    }
}

static void held_add(struct dsm_node *n, uint64_t addr)
{
    uint32_t i;
    if (held_find(n, addr, &i)) return;
    if (n->held_live + 1 >= n->cfg.locks_max)
        dsm_node_fatal(n, "node %d holds %u mutexes at once, the most it can track", n->rank,
                       n->held_live);
    n->held[i] = addr;
    n->held_live++;
}

static void held_del(struct dsm_node *n, uint32_t i)
{
    uint32_t cap = n->cfg.locks_max;
    n->held[i] = 0;
    n->held_live--;
    for (uint32_t j = (i + 1) & (cap - 1); n->held[j]; j = (j + 1) & (cap - 1)) {
        uint32_t want = slot_of(n->held[j], cap);
        /* Move j back into the hole at i unless its home slot lies cyclically in (i, j]. */
        if ((j > i && (want <= i || want > j)) || (j < i && want <= i && want > j)) {
            n->held[i] = n->held[j];
            n->held[j] = 0;
            i = j;
        }
    }
}

/* The manager's entries. */
static struct lock_ent *lock_find(struct dsm_node *n, uint64_t addr, int create)
{
    uint32_t cap = n->cfg.locks_max;
    for (uint32_t i = slot_of(addr, cap);; i = (i + 1) & (cap - 1)) {
        struct lock_ent *e = &n->locks[i];
        if (e->addr == addr) return e;
        if (!e->addr) {
            if (!create) return NULL;
            if (n->locks_live + 1 >= cap)
                dsm_node_fatal(n,
                               "node %d manages %u mutexes that are held or waited for at "
                               "once, the most it can: spread mutexes over the nodes' memory",
                               n->rank, n->locks_live);
            *e = (struct lock_ent){.addr = addr, .head = QNIL, .tail = QNIL};
            n->locks_live++;
            return e;
        }
    }
}

static void lock_del(struct dsm_node *n, struct lock_ent *e)
{
    uint32_t cap = n->cfg.locks_max, i = (uint32_t)(e - n->locks);
    n->locks[i].addr = 0;
    n->locks_live--;
    for (uint32_t j = (i + 1) & (cap - 1); n->locks[j].addr; j = (j + 1) & (cap - 1)) {
        uint32_t want = slot_of(n->locks[j].addr, cap);
        if ((j > i && (want <= i || want > j)) || (j < i && want <= i && want > j)) {
            n->locks[i] = n->locks[j];
            n->locks[j].addr = 0;
            i = j;
        }
    }
}

/* ---------------------------------------------------------------- mutex: requesting side */

/* arg1 of a LOCK_REL, echoed in the manager's LOCK_GRANT: "your release is done". */
#define REL_ACK_ID WAITER_SLOTS

/* Releases sent to another node's manager and not yet acknowledged. Unlock does not wait for
 * the ack (a lock handoff should cost one message, not a round trip), but every collective
 * does, so that "unlock; barrier" on one node and "barrier; trylock" on another always finds
 * the mutex free: the release and the trylock travel on different connections otherwise. */
static int releases_done(void *arg)
{
    struct dsm_node *n = arg;
    return atomic_load_explicit(&n->rel_outstanding, memory_order_acquire) == 0;
}

/* A waiter slot in state `waiting` (W_WAITING for a lock request, W_CHECKING for an
 * init/destroy check: only a granted lock request makes this node a holder). */
static int slot_get(struct dsm_node *n, int waiting)
{
    for (;;) {
        for (int i = 0; i < WAITER_SLOTS; i++) {
            int f = W_FREE;
            if (atomic_load_explicit(&n->waiter[i], memory_order_relaxed) == W_FREE &&
                atomic_compare_exchange_strong(&n->waiter[i], &f, waiting))
                return i;
        }
        sched_yield(); /* more than WAITER_SLOTS threads in lock calls at once */
    }
}

struct slot_wait {
    struct dsm_node *n;
    int slot;
};

static int slot_answered(void *arg)
{
    struct slot_wait *w = arg;
    int s = atomic_load_explicit(&w->n->waiter[w->slot], memory_order_acquire);
    return s != W_WAITING && s != W_CHECKING;
}

/* ---------------------------------------------------------------- one-sided mutexes */

#define LOCK_PROBES 64 /* slots a mutex may take, from its hash on */

/* Self-tests of the fixture (tests/engine): LOCK, queued requests by message are forgotten;
 * SKIP, a lock in a table skips its acquire whoever unlocked it last. */
#ifndef UFDSM_INJECT_LOCK_BUG
#define UFDSM_INJECT_LOCK_BUG 0
#endif
#ifndef UFDSM_INJECT_SKIP_BUG
#define UFDSM_INJECT_SKIP_BUG 0
#endif

/* Mutex m's slot in node mgr's lock table, claimed if need be; NULL if that table is not
 * reachable from here or every slot m may take belongs to another mutex (final: slots are
 * never given back). Any thread: the table is shared memory, updated only with atomics. */
static struct dsm_lock_slot *lock_slot(struct dsm_node *n, int mgr, uint64_t m)
{
    struct dsm_lock_slot *t = n->mem->lock_table ? n->mem->lock_table(n->mem_ctx, mgr) : NULL;
    if (!t) return NULL;
    uint32_t i = slot_of(m, DSM_LOCK_SLOTS);
    for (int k = 0; k < LOCK_PROBES; k++, i = (i + 1) & (DSM_LOCK_SLOTS - 1)) {
        uint64_t a = atomic_load_explicit(&t[i].addr, memory_order_acquire);
        if (!a && atomic_compare_exchange_strong(&t[i].addr, &a, m)) return &t[i];
        if (a == m) return &t[i];
    }
    return NULL;
}

static int lock_try(struct dsm_lock_slot *s, uint64_t who)
{
    uint64_t free = 0;
    return atomic_load_explicit(&s->holder, memory_order_relaxed) == 0 &&
           atomic_compare_exchange_strong(&s->holder, &free, who);
}

/* Takes the holder word for `who`, or makes sure node `rank` is woken when it is freed. */
static int lock_try_or_ask(struct dsm_lock_slot *s, uint64_t who, int rank)
{
    if (lock_try(s, who)) return 1;
    uint64_t bit = 1ull << rank;
    if (!(atomic_load_explicit(&s->waiters, memory_order_relaxed) & bit))
        atomic_fetch_or(&s->waiters, bit);
    /* After the bit is visible: an unlock that freed the word before it took the waiters word
     * without this bit is seen here. */
    uint64_t free = 0;
    return atomic_compare_exchange_strong(&s->holder, &free, who);
}

struct slot_take {
    struct dsm_node *n;
    struct dsm_lock_slot *s;
    int taken;
};

/* A wait condition must stay true once true (env_wait may test it again before it returns),
 * so the holder word taken is remembered. */
static int slot_taken(void *arg)
{
    struct slot_take *w = arg;
    if (!w->taken) w->taken = lock_try_or_ask(w->s, (uint64_t)w->n->rank + 1, w->n->rank);
    return w->taken;
}

/* Frees the holder word of node `holder` and wakes whoever asked. Token held. */
static void lock_give_back(struct dsm_node *n, struct dsm_lock_slot *s, uint64_t m, int holder)
{
    uint64_t h = (uint64_t)holder + 1;
    /* (Read by the next holder after it took the holder word freed below.) */
    atomic_store_explicit(&s->last, h, memory_order_relaxed);
    if (!atomic_compare_exchange_strong(&s->holder, &h, 0))
        dsm_node_fatal(n,
                       "mutex %p: its shared lock word names node %lld as the holder, not node "
                       "%d, which unlocks it (the lock table in node %d's memory file was "
                       "overwritten)",
                       (void *)(uintptr_t)m, (long long)h - 1, holder, dsm_node_home(n, m));
    uint64_t w = atomic_exchange(&s->waiters, 0);
    for (int k = 0; w && k < n->nodes; k++) {
        if (!(w & (1ull << k))) continue;
        w &= ~(1ull << k);
        struct dsm_wire_hdr wh;
        dsm_wire_init(&wh, DSM_MSG_LOCK_WAKE, (uint32_t)n->rank);
        wh.arg0 = m;
        dsm_send(n, k, &wh, NULL);
    }
}

static int manager_of(struct dsm_node *n, uint64_t m, const char *fn)
{
    int home = dsm_node_home(n, m);
    if (home < 0)
        LOGE("%s(%p): the mutex is not in allocated DSM memory; put dsm_mutex_t in memory from "
             "dsm_alloc or dsm_malloc so every node names the same mutex",
             fn, (void *)(uintptr_t)m);
    return home;
}

/* Sends a lock message to the manager and waits for its answer: W_GRANTED or W_BUSY. */
static int lock_call(struct dsm_node *n, int mgr, uint64_t m, int type, int aux)
{
    int slot = slot_get(n, type == DSM_MSG_LOCK_REQ ? W_WAITING : W_CHECKING);
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, (enum dsm_wire_type)type, (uint32_t)n->rank);
    h.arg0 = m;
    h.arg1 = (uint64_t)slot;
    h.aux = (uint32_t)aux;
    dsm_token_acquire(n);
    dsm_send(n, mgr, &h, NULL);
    dsm_progress(n);
    dsm_token_release(n);
    struct slot_wait w = {n, slot};
    dsm_wait(n, slot_answered, &w);
    int r = atomic_load(&n->waiter[slot]);
    atomic_store(&n->waiter[slot], W_FREE);
    return r;
}

/* Whether nobody holds or waits for mutex m: init and destroy both check only that (the
 * manager keeps nothing for a free mutex). */
static int mutex_check(struct dsm_node *n, uint64_t m, const char *fn)
{
    int mgr = manager_of(n, m, fn);
    if (mgr < 0) return DSM_EINVAL;
    struct dsm_lock_slot *s = lock_slot(n, mgr, m);
    if (s) return atomic_load(&s->holder) || atomic_load(&s->waiters) ? DSM_EBUSY : DSM_OK;
    return lock_call(n, mgr, m, DSM_MSG_LOCK_INIT, 0) == W_GRANTED ? DSM_OK : DSM_EBUSY;
}

int dsm_node_mutex_init(struct dsm_node *n, uint64_t m)
{
    return mutex_check(n, m, "dsm_mutex_init");
}

int dsm_node_mutex_destroy(struct dsm_node *n, uint64_t m)
{
    return mutex_check(n, m, "dsm_mutex_destroy");
}

/* Lock (try: trylock): DSM_OK once this node holds m, DSM_EBUSY (try only), DSM_EINVAL. */
static int mutex_take(struct dsm_node *n, uint64_t m, int try, const char *fn)
{
    int mgr = manager_of(n, m, fn);
    if (mgr < 0) return DSM_EINVAL;
    struct dsm_lock_slot *s = lock_slot(n, mgr, m);
    int mine = 0; /* this node unlocked it last: no acquire (the file comment says why) */
    if (s) {
        struct slot_take w = {n, s, 0};
        if (try ? !lock_try(s, (uint64_t)n->rank + 1) : !slot_taken(&w)) {
            if (try) return DSM_EBUSY;
            dsm_wait(n, slot_taken, &w);
        }
        dsm_token_acquire(n);
        held_add(n, m);
        dsm_token_release(n);
        atomic_fetch_add_explicit(&n->st.onesided_locks, 1, memory_order_relaxed);
        mine = atomic_load_explicit(&s->last, memory_order_relaxed) == (uint64_t)n->rank + 1 ||
               UFDSM_INJECT_SKIP_BUG;
    } else if (lock_call(n, mgr, m, DSM_MSG_LOCK_REQ, try) != W_GRANTED) {
        return DSM_EBUSY;
    }
    atomic_fetch_add_explicit(&n->st.lock_acquires, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (mine)
        atomic_fetch_add_explicit(&n->st.acquires_skipped, 1, memory_order_relaxed);
    else
        dsm_node_acquire(n);
    return DSM_OK;
}

int dsm_node_mutex_lock(struct dsm_node *n, uint64_t m)
{
    return mutex_take(n, m, 0, "dsm_mutex_lock");
}

int dsm_node_mutex_trylock(struct dsm_node *n, uint64_t m)
{
    return mutex_take(n, m, 1, "dsm_mutex_trylock");
}

int dsm_node_mutex_unlock(struct dsm_node *n, uint64_t m)
{
    int mgr = manager_of(n, m, "dsm_mutex_unlock");
    if (mgr < 0) return DSM_EINVAL;
    /* Every write of the critical section is performed (this node holds the page exclusively
     * or it has been written back) before the release leaves: SC needs no flush here, only
     * that the CPU's stores are visible to the engine, which this fence orders. */
    atomic_thread_fence(memory_order_seq_cst);
    /* Release consistency: the critical section's writes reach their homes first. */
    dsm_node_release(n);
    dsm_token_acquire(n);
    uint32_t i;
    if (!held_find(n, m, &i)) {
        dsm_token_release(n);
        LOGE("dsm_mutex_unlock(%p): this node does not hold the mutex (unlock without a "
             "matching lock, or a second unlock)",
             (void *)(uintptr_t)m);
        return DSM_EPERM;
    }
    held_del(n, i);
    struct dsm_lock_slot *s = lock_slot(n, mgr, m);
    if (s) {
        lock_give_back(n, s, m, n->rank);
        dsm_progress(n);
        dsm_token_release(n);
        return DSM_OK;
    }
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_LOCK_REL, (uint32_t)n->rank);
    h.arg0 = m;
    h.arg1 = REL_ACK_ID;
    if (mgr != n->rank) atomic_fetch_add(&n->rel_outstanding, 1);
    dsm_send(n, mgr, &h, NULL);
    dsm_progress(n);
    dsm_token_release(n);
    return DSM_OK;
}

static void recv_grant(struct dsm_node *n, const struct dsm_wire_hdr *h)
{
    if (h->arg1 == REL_ACK_ID) {
        if (atomic_fetch_sub(&n->rel_outstanding, 1) <= 0)
            dsm_node_fatal(n, "node %d acknowledged a mutex release this node did not send",
                           h->src);
        return;
    }
    int s = h->arg1 < WAITER_SLOTS ? atomic_load(&n->waiter[h->arg1]) : W_FREE;
    if (s != W_WAITING && s != W_CHECKING)
        dsm_node_fatal(n, "node %d answered a lock request this node did not make (slot %llu)",
                       h->src, (unsigned long long)h->arg1);
    if (s == W_WAITING && h->aux) held_add(n, h->arg0);
    atomic_store_explicit(&n->waiter[h->arg1], h->aux ? W_GRANTED : W_BUSY, memory_order_release);
}

/* ---------------------------------------------------------------- mutex: manager side */

/* aux of a LOCK_GRANT: 1 granted (or: the init/destroy check passed), 0 busy. */
static void grant(struct dsm_node *n, int node, uint64_t addr, uint64_t w, int granted)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_LOCK_GRANT, (uint32_t)n->rank);
    h.arg0 = addr;
    h.arg1 = w;
    h.aux = (uint32_t)granted;
    dsm_send(n, node, &h, NULL);
}

static void enqueue(struct dsm_node *n, struct lock_ent *e, int node, uint64_t waiter)
{
    uint32_t q = n->qfree;
    if (q != QNIL)
        n->qfree = n->qnodes[q].next;
    else if (n->qnext_unused < n->cfg.locks_max)
        q = n->qnext_unused++;
    else
        dsm_node_fatal(n, "more than %u lock requests queued on node %d", n->cfg.locks_max,
                       n->rank);
    n->qnodes[q] = (struct qnode){.waiter = waiter, .next = QNIL, .node = (uint16_t)node};
    if (e->tail == QNIL)
        e->head = q;
    else
        n->qnodes[e->tail].next = q;
    e->tail = q;
}

/* The first queued request, taken off the queue (which must not be empty). */
static struct qnode dequeue(struct dsm_node *n, struct lock_ent *e)
{
    uint32_t q = e->head;
    struct qnode r = n->qnodes[q];
    e->head = r.next;
    if (e->head == QNIL) e->tail = QNIL;
    n->qnodes[q].next = n->qfree;
    n->qfree = q;
    return r;
}

static void not_held(struct dsm_node *n, const struct dsm_wire_hdr *h)
{
    dsm_node_fatal(n,
                   "node %d released mutex %p, which it does not hold (it checks that itself: "
                   "its messages cannot be trusted)",
                   h->src, (void *)(uintptr_t)h->arg0);
}

/* Requests by message for a mutex of this node's lock table wait in e's queue, in order, with
 * this node's waiters bit set: grants the first if the holder word can be taken for it. */
static void serve_queue(struct dsm_node *n, struct dsm_lock_slot *s, struct lock_ent *e)
{
    if (e->head == QNIL || !lock_try_or_ask(s, (uint64_t)n->qnodes[e->head].node + 1, n->rank))
        return;
    struct qnode q = dequeue(n, e);
    uint64_t addr = e->addr;
    if (e->head == QNIL)
        lock_del(n, e);
    else if (!UFDSM_INJECT_LOCK_BUG) /* before the grant, so the new holder's unlock sees it */
        atomic_fetch_or(&s->waiters, 1ull << n->rank);
    grant(n, q.node, addr, q.waiter, 1);
}

/* A lock message for a mutex that has a slot in this node's lock table: the message's sender
 * takes, or gives back, the holder word as a co-located node would, the manager acting for it.
 * Its lock_ent only queues the requests that wait. */
static void manage_shared(struct dsm_node *n, struct dsm_lock_slot *s, const struct dsm_wire_hdr *h)
{
    uint64_t addr = h->arg0, who = (uint64_t)h->src + 1;
    struct lock_ent *e = lock_find(n, addr, 0);
    switch (h->type) {
    case DSM_MSG_LOCK_INIT:
        grant(n, h->src, addr, h->arg1, !e && !atomic_load(&s->holder));
        break;
    case DSM_MSG_LOCK_REQ:
        if (!e && lock_try(s, who)) { /* nobody queued before it: no overtaking */
            grant(n, h->src, addr, h->arg1, 1);
        } else if (h->aux) {
            grant(n, h->src, addr, h->arg1, 0);
        } else {
            if (!e) e = lock_find(n, addr, 1);
            enqueue(n, e, h->src, h->arg1);
            serve_queue(n, s, e);
        }
        break;
    case DSM_MSG_LOCK_REL:
        if (atomic_load(&s->holder) != who) not_held(n, h);
        if (h->src != n->rank) grant(n, h->src, addr, REL_ACK_ID, 1);
        lock_give_back(n, s, addr, h->src);
        break;
    }
}

static void manage(struct dsm_node *n, const struct dsm_wire_hdr *h)
{
    uint64_t addr = h->arg0;
    if (dsm_node_home(n, addr) != n->rank)
        dsm_node_fatal(n, "node %d sent a lock message for %p, which node %d does not manage",
                       h->src, (void *)(uintptr_t)addr, n->rank);
    if (h->type != DSM_MSG_LOCK_REL && h->arg1 >= WAITER_SLOTS)
        dsm_node_fatal(n, "node %d sent a lock request with waiter slot %llu (at most %d)", h->src,
                       (unsigned long long)h->arg1, WAITER_SLOTS - 1);
    struct dsm_lock_slot *s = lock_slot(n, n->rank, addr);
    if (s) {
        manage_shared(n, s, h);
        return;
    }
    struct lock_ent *e;
    switch (h->type) {
    case DSM_MSG_LOCK_INIT: /* also destroy: both only check that nobody holds it */
        e = lock_find(n, addr, 0);
        grant(n, h->src, addr, h->arg1, !e);
        break;
    case DSM_MSG_LOCK_REQ:
        e = lock_find(n, addr, 1);
        if (!e->held) {
            e->held = 1;
            e->holder = (uint16_t)h->src;
            grant(n, h->src, addr, h->arg1, 1);
        } else if (h->aux) {
            grant(n, h->src, addr, h->arg1, 0);
        } else {
            enqueue(n, e, h->src, h->arg1);
        }
        break;
    case DSM_MSG_LOCK_REL:
        e = lock_find(n, addr, 0);
        if (!e || !e->held || e->holder != h->src) not_held(n, h);
        if (h->src != n->rank) grant(n, h->src, addr, REL_ACK_ID, 1);
        if (e->head == QNIL) {
            lock_del(n, e); /* free and nobody waiting: nothing to remember */
        } else {
            struct qnode q = dequeue(n, e);
            e->holder = q.node;
            grant(n, q.node, addr, q.waiter, 1);
        }
        break;
    }
}

/* ---------------------------------------------------------------- life cycle and dispatch */

int dsm_sync_init(struct dsm_node *n, char *err, size_t errlen)
{
    uint32_t cap = n->cfg.locks_max;
    if (cap & (cap - 1)) {
        snprintf(err, errlen, "the lock table size %u is not a power of two", cap);
        return DSM_EINVAL;
    }
    n->locks = calloc(cap, sizeof *n->locks);
    n->qnodes = calloc(cap, sizeof *n->qnodes);
    n->held = calloc(cap, sizeof *n->held);
    if (!n->locks || !n->qnodes || !n->held) {
        snprintf(err, errlen, "cannot allocate the lock manager's tables (out of memory)");
        return DSM_ENOMEM;
    }
    n->qfree = QNIL;
    return DSM_OK;
}

void dsm_sync_fini(struct dsm_node *n)
{
    free(n->locks);
    free(n->qnodes);
    free(n->held);
    n->locks = NULL;
    n->qnodes = NULL;
    n->held = NULL;
}

void dsm_sync_recv(struct dsm_node *n, const struct dsm_wire_hdr *h, const void *payload)
{
    switch (h->type) {
    case DSM_MSG_LOCK_REQ:
    case DSM_MSG_LOCK_REL:
    case DSM_MSG_LOCK_INIT:
        manage(n, h);
        break;
    case DSM_MSG_LOCK_GRANT:
        recv_grant(n, h);
        break;
    case DSM_MSG_LOCK_WAKE: {
        /* Threads waiting here try again; so do requests by message queued here. */
        n->env->wake(n);
        struct lock_ent *e;
        struct dsm_lock_slot *s;
        if (dsm_node_home(n, h->arg0) == n->rank && (e = lock_find(n, h->arg0, 0)) &&
            (s = lock_slot(n, n->rank, h->arg0)))
            serve_queue(n, s, e);
        break;
    }
    case DSM_MSG_BARRIER:
        recv_barrier(n, h);
        break;
    case DSM_MSG_COLL:
        recv_coll(n, h, payload);
        break;
    case DSM_MSG_FREE:
        dsm_malloc_free_home(n, h->arg0);
        break;
    case DSM_MSG_BYE:
        atomic_fetch_add(&n->byes, 1);
        break;
    case DSM_MSG_ABORT: {
        char text[1025];
        size_t len = h->len < 1024 ? h->len : 1024;
        memcpy(text, payload, len);
        text[len] = 0;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)text[i] < 32 && text[i]) text[i] = '?';
        n->finalizing = 1; /* the others are going down too: no "lost node" noise */
        dsm_node_fatal(n, "node %d failed: %s", h->src, text);
    }
    default:
        dsm_node_fatal(n, "node %d sent an unexpected message type %u", h->src, h->type);
    }
}

static int all_byes(void *arg)
{
    struct dsm_node *n = arg;
    return atomic_load(&n->byes) >= n->nodes - 1;
}

int dsm_node_goodbye(struct dsm_node *n, uint64_t timeout_ns)
{
    dsm_token_acquire(n);
    n->finalizing = 1;
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_BYE, (uint32_t)n->rank);
    for (int k = 0; k < n->nodes; k++)
        if (k != n->rank) dsm_send(n, k, &h, NULL);
    dsm_progress(n);
    dsm_token_release(n);
    /* Bounded: a peer that dies now has finished its part anyway. */
    uint64_t deadline = dsm_node_now(n) + timeout_ns;
    while (!all_byes(n) && dsm_node_now(n) < deadline) {
        if (dsm_token_try(n)) {
            dsm_progress(n);
            dsm_token_release(n);
        }
        sched_yield();
    }
    return all_byes(n);
}

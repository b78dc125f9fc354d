/*
 * progress.c - the protocol engine: who runs it, and how waiting threads learn they can go.
 *
 * Why there is no dedicated protocol thread: on the machines this is tuned for, waking a
 * sleeping thread on another CPU costs 10-25 us, more than a whole busy-polled round trip.
 * A design where the faulting thread hands its fault to a protocol thread and sleeps pays
 * that twice per fault. Instead, the protocol engine is a token: a thread that has to wait
 * (in a fault, a barrier, a lock) takes the token if it is free and runs the engine itself -
 * receiving, handling, sending - until what it waits for has happened. Whoever holds the
 * token also serves everybody else's messages, so a node whose threads are waiting answers
 * its peers at polling speed.
 *
 * The service thread covers the remaining case, a node whose threads all compute: it sleeps
 * in the transport's wait and runs the engine when a message arrives. While application
 * threads are polling it stays "dormant" (not woken by the network, which would steal their
 * CPU for nothing) and looks again after a short timeout or when a waiter goes to sleep.
 *
 * Waiters spin (yielding the CPU now and then, so threads sharing it still progress) until
 * cfg.spin_us have passed without any message to handle, then sleep on a futex that the
 * engine bumps whenever it changed something.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "trace.h"

struct dsm_global g = {.uffd = -1};

/* ---------------------------------------------------------------- small helpers */

static __thread int tls_tid;

int dsm_tid(void)
{
    if (!tls_tid) tls_tid = (int)syscall(SYS_gettid);
    return tls_tid;
}

uint64_t dsm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

int dsm_token_try(void)
{
    int me = dsm_tid();
    int expect = 0;
    if (atomic_load_explicit(&g.token, memory_order_relaxed)) {
        if (atomic_load_explicit(&g.token, memory_order_relaxed) == me)
            dsm_fatal("the protocol engine was re-entered by the thread running it: a signal "
                      "handler touched DSM memory while this thread was inside ufdsm; do not "
                      "touch DSM memory from signal handlers");
        return 0;
    }
    return atomic_compare_exchange_strong_explicit(&g.token, &expect, me, memory_order_acquire,
                                                   memory_order_relaxed);
}

void dsm_token_acquire(void)
{
    unsigned spins = 0;
    while (!dsm_token_try()) {
        cpu_relax();
        if ((++spins & 63) == 0) sched_yield();
    }
}

void dsm_token_release(void)
{
    atomic_store_explicit(&g.token, 0, memory_order_release);
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void dsm_wake_waiters(void)
{
    if (atomic_load_explicit(&g.sleepers, memory_order_seq_cst) > 0) {
        atomic_fetch_add(&g.wake_seq, 1);
        futex(&g.wake_seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
    }
}

/* ---------------------------------------------------------------- local queue */

/* Messages a node sends to itself (it is the home of the page it faults on, or manages its
 * own lock) go through this FIFO instead of the network, so the protocol sees the same
 * ordered channel either way. Only the token holder touches it. Fixed size: the engine drains
 * it before returning, so it only ever holds the few messages one event causes. */
#define LQ_CAP 1024
struct local_msg {
    struct dsm_wire_hdr h;
    uint32_t slot; /* payload slot, if h.len */
};
static struct local_msg lq[LQ_CAP];
static uint32_t lq_head, lq_tail;
static char (*lq_payload)[PAGE_SIZE]; /* LQ_CAP page-sized slots, mapped in dsm_service_start */

static void lq_push(const struct dsm_wire_hdr *h, const void *payload)
{
    if (lq_tail - lq_head >= LQ_CAP)
        dsm_fatal("local message queue overflow (%d messages): a protocol bug, please report it",
                  LQ_CAP);
    struct local_msg *m = &lq[lq_tail % LQ_CAP];
    m->h = *h;
    m->slot = lq_tail % LQ_CAP;
    if (h->len) memcpy(lq_payload[m->slot], payload, h->len);
    lq_tail++;
    atomic_fetch_add_explicit(&g.st.local_msgs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g.st.local_bytes, DSM_WIRE_HDR_SIZE + h->len, memory_order_relaxed);
}

static int lq_drain(void)
{
    int n = 0;
    while (lq_head != lq_tail) {
        struct local_msg *m = &lq[lq_head % LQ_CAP];
        lq_head++;
        dsm_deliver(NULL, &m->h, m->h.len ? lq_payload[m->slot] : NULL);
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------- sending */

void dsm_send(int dst, const struct dsm_wire_hdr *h, const void *payload)
{
    if (dst == g.rank)
        lq_push(h, payload);
    else
        g.tp->ops->send(g.tp, dst, h, payload);
}

static void send_coh(const struct coh_msg *m)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, (enum dsm_wire_type)m->type, (uint32_t)g.rank);
    h.arg0 = m->page;
    h.flags = m->flags;
    const void *payload = NULL;
    if (coh_msg_has_payload(m)) {
        h.len = PAGE_SIZE;
        /* WB / PUT_M carry this node's copy (write-protected by a preceding action); DATA
         * carries the home store. */
        payload = (m->type == COH_WB || m->type == COH_PUT_M) ? dsm_page_addr(m->page)
                                                              : g.store + m->page * PAGE_SIZE;
        atomic_fetch_add_explicit(&g.st.pages_sent, 1, memory_order_relaxed);
        if (m->type == COH_DATA_S || m->type == COH_DATA_M)
            DSM_TRACE(DSM_TR_SERVED, m->type == COH_DATA_M ? DSM_TR_F_WRITE : 0, m->page,
                      dsm_now_ns(), 0, 0, m->dst, 1);
    }
    if (m->type == COH_INV) atomic_fetch_add_explicit(&g.st.inv_sent, 1, memory_order_relaxed);
    if (m->type == COH_RECALL_S || m->type == COH_RECALL_I)
        atomic_fetch_add_explicit(&g.st.recalls_sent, 1, memory_order_relaxed);
    dsm_send(m->dst, &h, payload);
}

void dsm_exec(const struct coh_out *out, const void *payload)
{
    for (int i = 0; i < out->n; i++) {
        const struct coh_action *a = &out->a[i];
        uint64_t p = a->msg.page;
        switch (a->kind) {
        case COH_A_SEND:
            send_coh(&a->msg);
            break;
        case COH_A_MAP_RO:
            dsm_map_page(p, payload, 0);
            break;
        case COH_A_MAP_RW:
            /* An exclusive copy asked for by a read miss (fault.c) starts read-only. */
            dsm_map_page(p, payload, !(g.mig[p] & MIG_CLEAN));
            break;
        case COH_A_PROTECT:
            dsm_protect_page(p, 1);
            break;
        case COH_A_UNPROTECT:
            dsm_protect_page(p, 0);
            break;
        case COH_A_UNMAP:
            dsm_unmap_page(p);
            break;
        case COH_A_STORE:
            memcpy(g.store + p * PAGE_SIZE, payload, PAGE_SIZE);
            break;
        }
    }
}

/* ---------------------------------------------------------------- receiving */

/* Holding a granted page. A thread that faulted gets the page, but it only uses it after it
 * sees the grant and returns from its fault handler; if a recall for the page is handled
 * first (often in the same engine pass), the page leaves before it was used and two nodes can
 * take a page from each other forever without either making progress. So an invalidation or
 * recall that arrives within cfg.hold_us of a grant is set aside and handled once the time is
 * up - or sooner: the thread that waited for the page cuts the hold short to a few
 * microseconds once it has seen the page arrive (fault.c), so a page that is used at once
 * (a lock handoff) is not kept from the next node for the whole hold. That is safe with respect to
 * ordering: the home sends nothing more about that page to this node until it gets the answer, and
 * messages about other pages are independent. */
#define DEFER_CAP 4096
static struct dsm_wire_hdr deferred[DEFER_CAP];
static uint32_t def_head, def_tail;

static int defer_if_held(const struct dsm_wire_hdr *h)
{
    uint64_t until = __atomic_load_n(&g.hold_until[h->arg0], __ATOMIC_RELAXED);
    if (!until || def_tail - def_head >= DEFER_CAP) return 0;
    if (dsm_now_ns() >= until) {
        __atomic_store_n(&g.hold_until[h->arg0], 0, __ATOMIC_RELAXED);
        return 0;
    }
    deferred[def_tail++ % DEFER_CAP] = *h;
    return 1;
}

static void deliver_coh(const struct dsm_wire_hdr *h, const void *payload);

/* Handles set-aside messages whose hold has expired, in arrival order. */
static int run_deferred(void)
{
    int n = 0;
    uint32_t end = def_tail;
    uint64_t now = 0;
    while (def_head != end) {
        struct dsm_wire_hdr h = deferred[def_head % DEFER_CAP];
        if (!now) now = dsm_now_ns();
        if (__atomic_load_n(&g.hold_until[h.arg0], __ATOMIC_RELAXED) > now)
            break; /* FIFO: later ones wait behind it */
        def_head++;
        __atomic_store_n(&g.hold_until[h.arg0], 0, __ATOMIC_RELAXED);
        deliver_coh(&h, NULL);
        n++;
    }
    return n;
}

int dsm_deferred_pending(void)
{
    return def_head != def_tail;
}

static void deliver_coh(const struct dsm_wire_hdr *h, const void *payload)
{
    uint64_t p = h->arg0;
    struct coh_msg m = {.type = h->type,
                        .flags = (uint8_t)h->flags,
                        .src = (uint8_t)h->src,
                        .dst = (uint8_t)g.rank,
                        .page = p};
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    int rc;
    /* The frame checks of the transport cannot know homes: check them here, so a confused or
     * hostile peer cannot make this node act as the directory of a page it does not home. */
    if (coh_msg_to_home(m.type)) {
        if (g.home[p] != g.rank)
            dsm_fatal("node %d sent %s for page %llu, which node %d does not home (home: %d)",
                      h->src, coh_mtype_name(m.type), (unsigned long long)p, g.rank,
                      g.home[p] == HOME_NONE ? -1 : g.home[p]);
        rc = coh_dir_recv(&g.dir[p], g.rank, &m, &out, &why);
    } else {
        if (g.home[p] != h->src)
            dsm_fatal("node %d sent %s for page %llu, which it does not home", h->src,
                      coh_mtype_name(m.type), (unsigned long long)p);
        if ((m.type == COH_INV || m.type == COH_RECALL_S || m.type == COH_RECALL_I) &&
            defer_if_held(h))
            return;
        uint8_t st = atomic_load_explicit(&g.pstate[p], memory_order_relaxed);
        rc = coh_node_recv(&st, g.rank, &m, &out, &why);
        /* A page read ahead has nobody about to use it: no hold. */
        if (!rc && (m.type == COH_DATA_S || m.type == COH_DATA_M) && g.cfg.hold_us && !g.pf[p])
            __atomic_store_n(&g.hold_until[p], dsm_now_ns() + (uint64_t)g.cfg.hold_us * 1000,
                             __ATOMIC_RELAXED);
        if (!rc) {
            if (m.type == COH_INV) {
                atomic_fetch_add_explicit(&g.st.inv_recv, 1, memory_order_relaxed);
                DSM_TRACE(DSM_TR_INVALIDATED, 0, p, dsm_now_ns(), 0, 0, h->src, 1);
            }
            if (m.type == COH_RECALL_S || m.type == COH_RECALL_I) {
                atomic_fetch_add_explicit(&g.st.recalls_recv, 1, memory_order_relaxed);
                /* Taken back before it was written: the page is not migratory after all. */
                if (g.mig[p] & MIG_CLEAN) __atomic_store_n(&g.mig[p], 0, __ATOMIC_RELAXED);
                DSM_TRACE(DSM_TR_RECALLED, 0, p, dsm_now_ns(), 0, 0, h->src, 1);
            }
            if (h->len) atomic_fetch_add_explicit(&g.st.pages_fetched, 1, memory_order_relaxed);
            if (g.pf[p] && (m.type == COH_DATA_S || m.type == COH_DATA_M)) {
                g.pf[p] = 0;
                atomic_fetch_add_explicit(&g.st.pages_prefetched, 1, memory_order_relaxed);
                DSM_TRACE(DSM_TR_PREFETCHED, 0, p, dsm_now_ns(), 0, 0, h->src, 0);
            }
            /* Mappings change before the state says so: a waiter that sees S or M finds the
             * page in place. Downgrades are the other way round, which is fine because a
             * thread that sees the old state just faults again. */
            dsm_exec(&out, payload);
            atomic_store_explicit(&g.pstate[p], st, memory_order_release);
            return;
        }
    }
    if (rc)
        dsm_fatal("coherence protocol violation on page %llu: %s (message %s from node %d, "
                  "local state %s, directory %s) - please report this bug",
                  (unsigned long long)p, why, coh_mtype_name(m.type), h->src,
                  coh_nstate_name(atomic_load(&g.pstate[p])), coh_dstate_name(g.dir[p].state));
    dsm_exec(&out, payload);
}

void dsm_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    (void)ctx;
    if (h->type >= DSM_MSG_GET_S && h->type <= DSM_MSG_RECALL_I)
        deliver_coh(h, payload);
    else
        dsm_sync_recv(h, payload);
}

void dsm_peer_lost(void *ctx, int peer, const char *why)
{
    (void)ctx;
    if (g.finalizing && atomic_load(&g.byes) >= 0) {
        /* During the goodbye exchange a peer closing is the expected end. */
        LOGD("node %d disconnected during finalize: %s", peer, why);
        return;
    }
    dsm_fatal("lost node %d: %s; the job cannot continue without it", peer, why);
}

/* Until a pass finds nothing, not a single pass: measured, a single pass made barriers and
 * read faults slower (p50 7.6 -> 8.4 us and 21 -> 28 us), although every caller polls again
 * anyway - the extra receive catches the reply already on its way. */
int dsm_progress(void)
{
    int total = 0, n;
    do {
        n = def_head != def_tail ? run_deferred() : 0;
        n += lq_drain();
        if (g.tp) {
            n += g.tp->ops->poll(g.tp);
            n += lq_drain();
            g.tp->ops->flush(g.tp);
        }
        total += n;
    } while (n);
    if (total) dsm_wake_waiters();
    return total;
}

/* ---------------------------------------------------------------- waiting */

void dsm_wait(int (*cond)(void *), void *arg)
{
    uint64_t start = 0;
    unsigned spins = 0;
    for (;;) {
        if (cond(arg)) return;
        if (dsm_token_try()) {
            atomic_fetch_add_explicit(&g.poll_epoch, 1, memory_order_relaxed);
            /* Serving peers counts as activity: a waiter that is answering requests (a home
             * node in a barrier while another node streams faults at it) keeps polling, so
             * the requests are not left to a service thread that would have to be woken. */
            if (dsm_progress()) start = 0;
            dsm_token_release();
            if (cond(arg)) return;
        } else {
            cpu_relax();
        }
        if ((++spins & 63) == 0) {
            /* Someone else may hold the token on this CPU; let it run. */
            sched_yield();
            uint64_t now = dsm_now_ns();
            if (!start) start = now;
            if ((long)((now - start) / 1000) < g.cfg.spin_us) continue;
            /* Sleep until the engine changes something. The service thread must be listening
             * to the network while nobody polls: kick it out of its dormant wait. */
            uint32_t seq = atomic_load(&g.wake_seq);
            atomic_fetch_add(&g.sleepers, 1);
            if (g.tp) g.tp->ops->kick(g.tp);
            if (!cond(arg)) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                futex(&g.wake_seq, FUTEX_WAIT_PRIVATE, seq, &ts);
            }
            atomic_fetch_sub(&g.sleepers, 1);
        }
    }
}

/* ---------------------------------------------------------------- service thread */

static pthread_t svc_thread;
static int svc_started;
/* Dormant: application threads were polling at the last look, so the service thread does not
 * listen to the network; it looks again after a while. Each look that finds them still
 * polling doubles the while (each look preempts a polling thread: at a fixed 200 us that put
 * a 50 us tail on every barrier), and a look that finds nobody polling starts over. A node
 * that turns from polling to computing is listened to again within the current while:
 * 200 us after short waits, up to 3.2 ms after long stretches of polling. */
#define SVC_DORMANT_MIN_US 200
#define SVC_DORMANT_MAX_US 3200
#define SVC_ARMED_US       20000

/* How long the service thread keeps polling after it last handled a message. */
#define SVC_LINGER_US 50

static void svc_linger(void)
{
    uint64_t last = dsm_now_ns();
    unsigned spins = 0;
    while (!__atomic_load_n(&g.svc_stop, __ATOMIC_ACQUIRE)) {
        if (dsm_token_try()) {
            int n = dsm_progress();
            dsm_token_release();
            if (n) last = dsm_now_ns();
        }
        cpu_relax();
        if ((++spins & 15) == 0 && dsm_now_ns() - last > SVC_LINGER_US * 1000ull) return;
    }
}

static void *svc_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int armed = 1;
    long dormant_us = SVC_DORMANT_MIN_US;
    uint64_t seen_epoch = atomic_load(&g.poll_epoch);
    while (!__atomic_load_n(&g.svc_stop, __ATOMIC_ACQUIRE)) {
        long timeout = armed ? SVC_ARMED_US : dormant_us;
        if (dsm_deferred_pending() && timeout > g.cfg.hold_us) timeout = g.cfg.hold_us + 1;
        g.tp->ops->wait(g.tp, armed, timeout);
        if (__atomic_load_n(&g.svc_stop, __ATOMIC_ACQUIRE)) break;
        uint64_t epoch = atomic_load(&g.poll_epoch);
        int app_polling = epoch != seen_epoch;
        seen_epoch = epoch;
        if (atomic_load(&g.sleepers) > 0) app_polling = 0; /* they asked us to listen */
        if (!app_polling)
            dormant_us = SVC_DORMANT_MIN_US;
        else if (!armed && dormant_us < SVC_DORMANT_MAX_US)
            dormant_us *= 2;
        if (dsm_token_try()) {
            int handled = dsm_progress();
            dsm_token_release();
            armed = !app_polling;
            /* Requests come in streams (a peer faulting through an array, a lock handed
             * back and forth): after serving one, keep polling briefly, so the next one of
             * the stream finds a running thread instead of paying for a wakeup. */
            if (handled && armed) svc_linger();
        } else {
            armed = 0;
        }
    }
    return NULL;
}

int dsm_service_start(char *err, size_t errlen)
{
    lq_payload = mmap(NULL, (size_t)LQ_CAP * PAGE_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (lq_payload == MAP_FAILED) {
        lq_payload = NULL;
        snprintf(err, errlen, "cannot map the local message queue: %s", strerror(errno));
        return DSM_ENOMEM;
    }
    if (!g.tp) return DSM_OK; /* a single node has no peers to serve */
    int rc = pthread_create(&svc_thread, NULL, svc_main, NULL);
    if (rc) {
        snprintf(err, errlen, "cannot start the service thread: %s", strerror(rc));
        return DSM_ESYS;
    }
    svc_started = 1;
    return DSM_OK;
}

void dsm_service_stop(void)
{
    if (svc_started) {
        __atomic_store_n(&g.svc_stop, 1, __ATOMIC_RELEASE);
        g.tp->ops->kick(g.tp);
        pthread_join(svc_thread, NULL);
        svc_started = 0;
    }
    if (lq_payload) munmap(lq_payload, (size_t)LQ_CAP * PAGE_SIZE);
    lq_payload = NULL;
    lq_head = lq_tail = 0;
    def_head = def_tail = 0;
}

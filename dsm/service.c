/*
 * service.c - the real runtime's environment for the engine: how threads wait, the service
 * thread, the clock, and what a fatal error does.
 *
 * Waiters spin (yielding the CPU now and then, so threads sharing it still progress) until
 * cfg.spin_us have passed without any message to handle, then sleep on a futex that the
 * engine bumps whenever it changed something. While spinning they take the progress token
 * whenever it is free and run the engine themselves (see engine.c for why there is no
 * dedicated protocol thread).
 *
 * The service thread covers the remaining case, a node whose threads all compute: it sleeps
 * in the transport's wait and runs the engine when a message arrives. While application
 * threads are polling it stays "dormant" (not woken by the network, which would steal their
 * CPU for nothing) and looks again after a short timeout or when a waiter goes to sleep.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

uint64_t dsm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t env_now(void *ctx)
{
    (void)ctx;
    return dsm_now_ns();
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

static void env_wake(struct dsm_node *n)
{
    if (atomic_load_explicit(&n->sleepers, memory_order_seq_cst) > 0) {
        atomic_fetch_add(&n->wake_seq, 1);
        futex(&n->wake_seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
    }
}

static void env_wait(struct dsm_node *n, int (*cond)(void *), void *arg)
{
    struct dsm_runtime *rt = n->env_ctx;
    uint64_t start = 0;
    unsigned spins = 0;
    for (;;) {
        if (cond(arg)) return;
        if (dsm_token_try(n)) {
            atomic_fetch_add_explicit(&n->poll_epoch, 1, memory_order_relaxed);
            /* Serving peers counts as activity: a waiter that is answering requests (a home
             * node in a barrier while another node streams faults at it) keeps polling, so
             * the requests are not left to a service thread that would have to be woken. */
            if (dsm_progress(n)) start = 0;
            dsm_token_release(n);
            if (cond(arg)) return;
        } else {
            cpu_relax();
        }
        if ((++spins & 63) == 0) {
            /* Someone else may hold the token on this CPU; let it run. */
            sched_yield();
            uint64_t now = dsm_now_ns();
            if (!start) start = now;
            if ((long)((now - start) / 1000) < rt->cfg.spin_us) continue;
            /* Sleep until the engine changes something. The service thread must be listening
             * to the network while nobody polls: kick it out of its dormant wait. */
            uint32_t seq = atomic_load(&n->wake_seq);
            atomic_fetch_add(&n->sleepers, 1);
            if (n->tp) n->tp->ops->kick(n->tp);
            if (!cond(arg)) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                futex(&n->wake_seq, FUTEX_WAIT_PRIVATE, seq, &ts);
            }
            atomic_fetch_sub(&n->sleepers, 1);
        }
    }
}

/* Logs, tells every peer why (so that each of them can exit naming this node and the cause
 * instead of only seeing a connection drop), and exits with status 3. */
__attribute__((noreturn)) static void env_fatal(struct dsm_node *n, const char *msg)
{
    static _Atomic int in_fatal;
    if (atomic_exchange(&in_fatal, 1)) _exit(3); /* a second failure while reporting one */
    char text[1024];
    snprintf(text, sizeof text, "%s", msg);
    dsm_log(LOG_ERROR, "%s", text);
    /* Best effort: the token may be held by the thread we interrupted, in which case the
     * peers see the drop. */
    int me = (int)syscall(SYS_gettid);
    int expect = 0;
    if (n && n->tp && !n->finalizing &&
        (atomic_load(&n->token) == me || atomic_compare_exchange_strong(&n->token, &expect, me))) {
        struct dsm_wire_hdr h;
        dsm_wire_init(&h, DSM_MSG_ABORT, (uint32_t)n->rank);
        h.len = (uint32_t)strlen(text) + 1;
        for (int k = 0; k < n->nodes; k++)
            if (k != n->rank) n->tp->ops->send(n->tp, k, &h, text);
        n->tp->ops->flush(n->tp);
    }
    _exit(3);
}

void dsm_fatal(const char *fmt, ...)
{
    char text[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    env_fatal(ufdsm_rt ? ufdsm_rt->node : NULL, text);
}

const struct dsm_env_ops rt_env_ops = {
    .now = env_now,
    .wait = env_wait,
    .wake = env_wake,
    .fatal = env_fatal,
};

/* ---------------------------------------------------------------- liveness */

/*
 * A node that stops responding (SIGSTOP, a hung host, a network that silently drops its
 * packets) would otherwise hang the job forever: TCP only notices when it has data in flight,
 * and a node that is waiting sends nothing. So the service thread - never the application's,
 * which may compute for hours - sends a PING to every peer every DSM_PEER_TIMEOUT/4, and a
 * peer from which no frame at all arrived for DSM_PEER_TIMEOUT is declared dead through the
 * same fatal path as a lost connection: this node exits naming it and tells the others (ABORT).
 * The fault path is untouched: receiving costs one relaxed counter update per frame, and no
 * clock is read there; the clock is read here, a few times per timeout.
 */
void dsm_rt_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct dsm_node *n = ctx;
    struct dsm_runtime *rt = n->env_ctx;
    /* src was checked against the connection's peer by the transport (dsm_wire_check). */
    _Atomic uint64_t *c = &rt->rx[h->src];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (h->type == DSM_MSG_PING) return;
    if (h->type == DSM_MSG_SHM) {
        dsm_onesided_recv(rt, h, payload);
        return;
    }
    dsm_deliver(ctx, h, payload);
}

struct liveness {
    uint64_t seen[DSM_MAX_NODES];  /* rx[] at the last look */
    uint64_t heard[DSM_MAX_NODES]; /* when rx[] last changed (ns) */
    uint64_t next_look, next_ping;
};

static void liveness_init(struct dsm_runtime *rt, struct liveness *lv)
{
    uint64_t now = dsm_now_ns();
    for (int p = 0; p < rt->cfg.nodes; p++) {
        lv->seen[p] = atomic_load_explicit(&rt->rx[p], memory_order_relaxed);
        lv->heard[p] = now;
    }
    lv->next_look = lv->next_ping = now;
}

static void liveness(struct dsm_runtime *rt, struct liveness *lv)
{
    struct dsm_node *n = rt->node;
    uint64_t now = dsm_now_ns(), timeout = (uint64_t)rt->cfg.peer_timeout_ms * 1000000u;
    if (now >= lv->next_ping && dsm_token_try(n)) {
        /* Every peer, idle or not: 32 bytes per peer per DSM_PEER_TIMEOUT/4. */
        struct dsm_wire_hdr h;
        dsm_wire_init(&h, DSM_MSG_PING, (uint32_t)n->rank);
        if (!n->finalizing)
            for (int p = 0; p < n->nodes; p++)
                if (p != n->rank) n->tp->ops->send(n->tp, p, &h, NULL);
        n->tp->ops->flush(n->tp);
        dsm_token_release(n);
        lv->next_ping = now + timeout / 4;
    }
    if (now < lv->next_look) return;
    lv->next_look = now + timeout / 16;
    for (int p = 0; p < rt->cfg.nodes; p++) {
        if (p == rt->cfg.rank) continue;
        uint64_t v = atomic_load_explicit(&rt->rx[p], memory_order_relaxed);
        if (v != lv->seen[p]) {
            lv->seen[p] = v;
            lv->heard[p] = now;
        } else if (now - lv->heard[p] >= timeout &&
                   !__atomic_load_n(&n->finalizing, __ATOMIC_RELAXED)) {
            dsm_fatal("node %d stopped responding: nothing received from it for %.1f s "
                      "(DSM_PEER_TIMEOUT=%d ms) — it is frozen (stopped, swapping, hung) or cut "
                      "off by the network; the job cannot continue without it",
                      p, (double)(now - lv->heard[p]) / 1e9, rt->cfg.peer_timeout_ms);
        }
    }
}

/* ---------------------------------------------------------------- service thread */

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

static void svc_linger(struct dsm_runtime *rt, struct liveness *lv)
{
    struct dsm_node *n = rt->node;
    uint64_t last = dsm_now_ns();
    unsigned spins = 0;
    while (!__atomic_load_n(&rt->svc_stop, __ATOMIC_ACQUIRE)) {
        if (dsm_token_try(n)) {
            int k = dsm_progress(n);
            dsm_token_release(n);
            if (k) last = dsm_now_ns();
        }
        cpu_relax();
        if ((++spins & 1023) == 0) liveness(rt, lv); /* a stream from one node may last */
        if ((spins & 15) == 0 && dsm_now_ns() - last > SVC_LINGER_US * 1000ull) return;
    }
}

static void *svc_main(void *arg)
{
    struct dsm_runtime *rt = arg;
    struct dsm_node *n = rt->node;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int armed = 1;
    long dormant_us = SVC_DORMANT_MIN_US;
    uint64_t seen_epoch = atomic_load(&n->poll_epoch);
    struct liveness lv;
    liveness_init(rt, &lv);
    while (!__atomic_load_n(&rt->svc_stop, __ATOMIC_ACQUIRE)) {
        liveness(rt, &lv);
        long timeout = armed ? SVC_ARMED_US : dormant_us;
        if (dsm_deferred_pending(n) && timeout > rt->cfg.hold_us) timeout = rt->cfg.hold_us + 1;
        n->tp->ops->wait(n->tp, armed, timeout);
        if (__atomic_load_n(&rt->svc_stop, __ATOMIC_ACQUIRE)) break;
        uint64_t epoch = atomic_load(&n->poll_epoch);
        int app_polling = epoch != seen_epoch;
        seen_epoch = epoch;
        if (atomic_load(&n->sleepers) > 0) app_polling = 0; /* they asked us to listen */
        if (!app_polling)
            dormant_us = SVC_DORMANT_MIN_US;
        else if (!armed && dormant_us < SVC_DORMANT_MAX_US)
            dormant_us *= 2;
        if (dsm_token_try(n)) {
            int handled = dsm_progress(n);
            /* The bounded cache: make room ahead of the faults that will need it. */
            if (dsm_evict_background(n)) dsm_progress(n);
            dsm_token_release(n);
            armed = !app_polling;
            /* Requests come in streams (a peer faulting through an array, a lock handed
             * back and forth): after serving one, keep polling briefly, so the next one of
             * the stream finds a running thread instead of paying for a wakeup. */
            if (handled && armed) svc_linger(rt, &lv);
        } else {
            armed = 0;
        }
    }
    return NULL;
}

int dsm_service_start(struct dsm_runtime *rt, char *err, size_t errlen)
{
    if (!rt->node->tp) return DSM_OK; /* a single node has no peers to serve */
    rt->svc_stop = 0;
    int rc = pthread_create(&rt->svc_thread, NULL, svc_main, rt);
    if (rc) {
        snprintf(err, errlen, "cannot start the service thread: %s", strerror(rc));
        return DSM_ESYS;
    }
    rt->svc_started = 1;
    return DSM_OK;
}

void dsm_service_stop(struct dsm_runtime *rt)
{
    if (!rt->svc_started) return;
    __atomic_store_n(&rt->svc_stop, 1, __ATOMIC_RELEASE);
    rt->node->tp->ops->kick(rt->node->tp);
    pthread_join(rt->svc_thread, NULL);
    rt->svc_started = 0;
}

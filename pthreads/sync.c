/*
 * sync.c - pthread mutexes, barriers, condition variables, once, semaphores, read-write locks
 * and (under release consistency) spinlocks across nodes.
 *
 * Only objects in the global space (the program's globals, heap and stacks) take these paths;
 * others (glibc's, the runtime's, a library's own statics outside the executable) keep the
 * real, node-local functions.
 *
 * Mutexes map onto the runtime's DSM mutexes (dsm_mutex_lock on the object's address): FIFO
 * grants by the node that homes the address, no page traffic to lock, an acquire at lock and
 * a release at unlock, and a free mutex costs nothing, so PTHREAD_MUTEX_INITIALIZER (all
 * zero) needs no set-up. The runtime never touches the mutex's bytes, so the recursive and
 * error-checking kinds keep their owner and count in glibc's own fields (__owner, __count;
 * __kind says the kind, as the static initialisers and pthread_mutex_init leave it); normal
 * mutexes never write them, so locking one moves no page.
 *
 * Barriers and condition variables are built from atomics on the object itself, which lives
 * in sequentially consistent memory (the default protocol), so the atomics are atomic across
 * nodes; a waiter polls its own read copy, which costs nothing until the writer's change
 * invalidates it. dsm_release/dsm_acquire around them keep release-consistent memory correct.
 * A condition variable is a sequence number: signal and broadcast both bump it, and every
 * waiter wakes (POSIX allows spurious wake-ups; programs loop on their predicate).
 * pthread_once, read-write locks and unnamed semaphores are the same kind of atomics; glibc's
 * versions would sleep on a futex, whose wake-up does not reach another node.
 *
 * Release consistency (pt_rc, DSM_PROTOCOL=rc): the objects are in the program's memory,
 * which is then RC, where atomics are atomic only among one node's threads and a node sees
 * another's writes only after their release and its own acquire. So on that path every
 * object's fields are read and written only while holding the runtime's mutex on the
 * object's own address ("guard" below): a free mutex costs nothing, lock is an acquire and
 * unlock a release, so what is read inside is current, and every synchronisation call is an
 * acquire and/or a release as the program's data needs: a barrier releases at arrival and
 * acquires when it sees the generation move, signal/broadcast/sem_post/rwlock unlock release,
 * a successful wait/lock acquires. Waiters poll by lock, read, unlock, with the usual
 * backoff. Each object is a different address from every other, user mutexes included (the
 * kinds that keep owner and count in the pthread_mutex_t only touch them while holding that
 * mutex), so no runtime mutex serves two purposes. Spinlocks are interposed on this path
 * only: glibc's are plain atomics, right on SC memory. The SC path is chosen at start and
 * stays as it was.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <time.h>

#include "pt.h"

static inline int shared(const void *o)
{
    return pt_ready && !pt_internal && pt_in_dsm(o);
}

/* RC path: the runtime's mutex on the object's address guards its fields. */
static void guard(void *o)
{
    int rc = (int)PT_RT1(pt_dsm.mutex_lock, o);
    if (rc)
        pt_die("cannot lock the runtime's mutex that guards the synchronisation object at %p "
               "(%s); keep pthread objects in the program's globals, heap or stacks",
               o, pt_dsm.strerror(rc));
}

static void unguard(void *o)
{
    int rc = (int)PT_RT1(pt_dsm.mutex_unlock, o);
    if (rc)
        pt_die("cannot unlock the runtime's mutex that guards the synchronisation object at "
               "%p (%s); this is a bug in ufdsm's pthreads support",
               o, pt_dsm.strerror(rc));
}

/* A 32-bit field `f` of the object `o`, read (or added to, returning the new value) as one
 * step that other nodes see: an SC atomic, or under the object's guard (RC). */
static uint32_t load32(void *o, uint32_t *f)
{
    if (!pt_rc) return __atomic_load_n(f, __ATOMIC_SEQ_CST);
    guard(o);
    uint32_t v = *(volatile uint32_t *)f;
    unguard(o);
    return v;
}

static uint32_t add32(void *o, uint32_t *f, uint32_t d)
{
    if (!pt_rc) return __atomic_add_fetch(f, d, __ATOMIC_SEQ_CST);
    guard(o);
    uint32_t v = *(volatile uint32_t *)f += d;
    unguard(o);
    return v;
}

/* ---------------------------------------------------------------- mutexes */

static int kind_of(pthread_mutex_t *m)
{
    return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) & 3;
}

int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
    if (!shared(m)) return pt_real.mutex_init(m, a);
    int kind = PTHREAD_MUTEX_NORMAL;
    if (a) pthread_mutexattr_gettype(a, &kind);
    memset(m, 0, sizeof *m);
    m->__data.__kind = kind & 3;
    return 0;
}

int pthread_mutex_destroy(pthread_mutex_t *m)
{
    if (!shared(m)) return pt_real.mutex_destroy(m);
    int rc = (int)PT_RT1(pt_dsm.mutex_destroy, m);
    return rc == DSM_EBUSY ? EBUSY : rc ? EINVAL : 0;
}

static int lock(pthread_mutex_t *m, int try)
{
    int kind = kind_of(m), me = pt_self_tid();
    if (kind != PTHREAD_MUTEX_NORMAL &&
        __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) == me) {
        if (kind == PTHREAD_MUTEX_ERRORCHECK) return EDEADLK;
        m->__data.__count++;
        return 0;
    }
    int rc = (int)(try ? PT_RT1(pt_dsm.mutex_trylock, m) : PT_RT1(pt_dsm.mutex_lock, m));
    if (rc == DSM_EBUSY) return EBUSY;
    if (rc) return EINVAL;
    if (kind != PTHREAD_MUTEX_NORMAL) {
        __atomic_store_n(&m->__data.__owner, me, __ATOMIC_RELAXED);
        m->__data.__count = 1;
    }
    return 0;
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
    if (!shared(m)) return pt_real.mutex_lock(m);
    return lock(m, 0);
}

int pthread_mutex_trylock(pthread_mutex_t *m)
{
    if (!shared(m)) return pt_real.mutex_trylock(m);
    return lock(m, 1);
}

/* The clocks a deadline may be given on (the _clock variants take one; POSIX asks for these
 * two at least). */
static int bad_clock(clockid_t clk)
{
    return clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC;
}

/* The runtime's mutexes have no timed wait: try until the deadline. */
static int timedlock(pthread_mutex_t *m, clockid_t clk, const struct timespec *abstime)
{
    unsigned round = 0;
    for (;;) {
        int rc = lock(m, 1);
        if (rc != EBUSY) return rc;
        if (pt_past(clk, abstime)) return ETIMEDOUT;
        pt_backoff(&round);
    }
}

int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
    if (!shared(m)) return pt_real.mutex_timedlock(m, abstime);
    return timedlock(m, CLOCK_REALTIME, abstime);
}

int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clk, const struct timespec *abstime)
{
    if (!shared(m)) {
        PT_REAL(pthread_mutex_clocklock);
        return real_fn(m, clk, abstime);
    }
    return bad_clock(clk) ? EINVAL : timedlock(m, clk, abstime);
}

int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (!shared(m)) return pt_real.mutex_unlock(m);
    if (kind_of(m) != PTHREAD_MUTEX_NORMAL) {
        if (__atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) != pt_self_tid()) return EPERM;
        if (--m->__data.__count > 0) return 0;
        __atomic_store_n(&m->__data.__owner, 0, __ATOMIC_RELAXED);
    }
    int rc = (int)PT_RT1(pt_dsm.mutex_unlock, m);
    return rc ? EPERM : 0;
}

/* ---------------------------------------------------------------- barriers */

struct pt_barrier {
    uint32_t count;
    uint32_t arrived;
    uint32_t gen;
};
_Static_assert(sizeof(struct pt_barrier) <= sizeof(pthread_barrier_t), "barrier too big");

int pthread_barrier_init(pthread_barrier_t *b, const pthread_barrierattr_t *a, unsigned count)
{
    if (!shared(b)) return pt_real.barrier_init(b, a, count);
    if (!count) return EINVAL;
    struct pt_barrier *p = (struct pt_barrier *)b;
    memset(b, 0, sizeof *b);
    __atomic_store_n(&p->count, count, __ATOMIC_SEQ_CST);
    return 0;
}

int pthread_barrier_destroy(pthread_barrier_t *b)
{
    if (!shared(b)) return pt_real.barrier_destroy(b);
    return 0;
}

/* RC: arrival is one guarded step (its unlock releases what this node wrote); a waiter's
 * poll that sees the generation move has acquired what every arrival released. */
static int barrier_wait_rc(struct pt_barrier *p)
{
    guard(p);
    uint32_t gen = p->gen;
    int last = ++p->arrived == p->count;
    if (last) {
        p->arrived = 0;
        p->gen++;
    }
    unguard(p);
    if (last) return PTHREAD_BARRIER_SERIAL_THREAD;
    unsigned round = 0;
    while (load32(p, &p->gen) == gen) pt_backoff(&round);
    return 0;
}

int pthread_barrier_wait(pthread_barrier_t *b)
{
    if (!shared(b)) return pt_real.barrier_wait(b);
    struct pt_barrier *p = (struct pt_barrier *)b;
    if (pt_rc) return barrier_wait_rc(p);
    PT_RT0(pt_dsm.release);
    uint32_t gen = __atomic_load_n(&p->gen, __ATOMIC_SEQ_CST);
    uint32_t count = __atomic_load_n(&p->count, __ATOMIC_SEQ_CST);
    int rc = 0;
    if (__atomic_add_fetch(&p->arrived, 1, __ATOMIC_SEQ_CST) == count) {
        /* The last one resets before it opens: nobody can arrive for the next round until
         * the generation moves. */
        __atomic_store_n(&p->arrived, 0, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&p->gen, 1, __ATOMIC_SEQ_CST);
        rc = PTHREAD_BARRIER_SERIAL_THREAD;
    } else {
        unsigned round = 0;
        while (__atomic_load_n(&p->gen, __ATOMIC_SEQ_CST) == gen) pt_backoff(&round);
    }
    PT_RT0(pt_dsm.acquire);
    return rc;
}

/* ---------------------------------------------------------------- condition variables */

static uint32_t *seq_of(pthread_cond_t *c)
{
    return (uint32_t *)c;
}

/* The clock of a condition's timedwait (pthread_condattr_setclock), kept in the object next
 * to the sequence number; 0 (PTHREAD_COND_INITIALIZER) is CLOCK_REALTIME. */
static uint32_t *clock_of(pthread_cond_t *c)
{
    return seq_of(c) + 1;
}

int pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *a)
{
    if (!shared(c)) return pt_real.cond_init(c, a);
    clockid_t clk = CLOCK_REALTIME;
    if (a) pthread_condattr_getclock(a, &clk);
    if (bad_clock(clk)) return EINVAL;
    memset(c, 0, sizeof *c);
    *clock_of(c) = (uint32_t)clk;
    return 0;
}

int pthread_cond_destroy(pthread_cond_t *c)
{
    if (!shared(c)) return pt_real.cond_destroy(c);
    return 0;
}

static int wait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                const struct timespec *abstime)
{
    if (!pt_in_dsm(m))
        pt_die("pthread_cond_wait(%p, %p): the condition variable is in the program's shared "
               "memory but the mutex is not; keep both in globals, heap or stack",
               (void *)c, (void *)m);
    /* The mutex's unlock releases; its lock again at the end acquires. */
    uint32_t seq = load32(c, seq_of(c));
    int rc = pthread_mutex_unlock(m);
    if (rc) return rc;
    unsigned round = 0;
    int timed_out = 0;
    while (load32(c, seq_of(c)) == seq) {
        if (abstime && pt_past(clk, abstime)) {
            timed_out = 1;
            break;
        }
        pt_backoff(&round);
    }
    rc = pthread_mutex_lock(m);
    return rc ? rc : timed_out ? ETIMEDOUT : 0;
}

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    if (!shared(c)) return pt_real.cond_wait(c, m);
    return wait(c, m, CLOCK_REALTIME, NULL);
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *t)
{
    if (!shared(c)) return pt_real.cond_timedwait(c, m, t);
    /* Written once at init, before any thread can wait: a plain read is current. */
    return wait(c, m, (clockid_t)*clock_of(c), t);
}

int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                           const struct timespec *t)
{
    if (!shared(c)) {
        PT_REAL(pthread_cond_clockwait);
        return real_fn(c, m, clk, t);
    }
    return bad_clock(clk) ? EINVAL : wait(c, m, clk, t);
}

/* RC: the guard's unlock releases what the signaller wrote. */
int pthread_cond_signal(pthread_cond_t *c)
{
    if (!shared(c)) return pt_real.cond_signal(c);
    add32(c, seq_of(c), 1);
    return 0;
}

int pthread_cond_broadcast(pthread_cond_t *c)
{
    if (!shared(c)) return pt_real.cond_broadcast(c);
    add32(c, seq_of(c), 1);
    return 0;
}

/* ---------------------------------------------------------------- pthread_once */

/* RC: the runner claims and completes under the guard (completion's unlock releases what fn
 * wrote); the others poll under it, so seeing "done" has acquired that. */
static int once_rc(uint32_t *st, void (*fn)(void))
{
    guard(st);
    uint32_t s = *st;
    if (s == 0) *st = 1;
    unguard(st);
    if (s == 0) {
        fn(); /* a cancelled or exiting fn is not handled: the others would wait for ever */
        guard(st);
        *st = 2;
        unguard(st);
        return 0;
    }
    unsigned round = 0;
    while (s != 2) {
        pt_backoff(&round);
        s = load32(st, st);
    }
    return 0;
}

/* 0: not run; 1: running; 2: done (glibc's initialiser PTHREAD_ONCE_INIT is 0). */
int pthread_once(pthread_once_t *o, void (*fn)(void))
{
    if (!shared(o)) return pt_real.once(o, fn);
    if (pt_rc) return once_rc((uint32_t *)o, fn);
    int *st = (int *)o;
    int s = __atomic_load_n(st, __ATOMIC_SEQ_CST);
    if (s == 2) return 0;
    int zero = 0;
    if (s == 0 &&
        __atomic_compare_exchange_n(st, &zero, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        fn(); /* a cancelled or exiting fn is not handled: the others would wait for ever */
        __atomic_store_n(st, 2, __ATOMIC_SEQ_CST);
        return 0;
    }
    unsigned round = 0;
    while (__atomic_load_n(st, __ATOMIC_SEQ_CST) != 2) pt_backoff(&round);
    return 0;
}

/* ---------------------------------------------------------------- semaphores */

/* The count lives in the sem_t's first word. Named semaphores (sem_open) are files of
 * their own, never in the global space, so they keep glibc's functions. */
static unsigned *count_of(sem_t *s)
{
    return (unsigned *)s;
}

int sem_init(sem_t *s, int pshared, unsigned value)
{
    if (!shared(s)) return pt_real.sem_init(s, pshared, value);
    memset(s, 0, sizeof *s);
    __atomic_store_n(count_of(s), value, __ATOMIC_SEQ_CST);
    return 0;
}

int sem_destroy(sem_t *s)
{
    if (!shared(s)) return pt_real.sem_destroy(s);
    return 0;
}

int sem_post(sem_t *s)
{
    if (!shared(s)) return pt_real.sem_post(s);
    PT_RT0(pt_dsm.release);
    add32(s, count_of(s), 1); /* RC: the guard's unlock releases too */
    return 0;
}

static int sem_take(sem_t *s)
{
    if (pt_rc) { /* a successful take has acquired with the guard's lock */
        guard(s);
        unsigned v = *count_of(s);
        if (v) *count_of(s) = v - 1;
        unguard(s);
        return v > 0;
    }
    unsigned v = __atomic_load_n(count_of(s), __ATOMIC_SEQ_CST);
    while (v > 0)
        if (__atomic_compare_exchange_n(count_of(s), &v, v - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
            PT_RT0(pt_dsm.acquire);
            return 1;
        }
    return 0;
}

int sem_trywait(sem_t *s)
{
    if (!shared(s)) return pt_real.sem_trywait(s);
    if (sem_take(s)) return 0;
    errno = EAGAIN;
    return -1;
}

static int sem_wait_until(sem_t *s, clockid_t clk, const struct timespec *abstime)
{
    unsigned round = 0;
    while (!sem_take(s)) {
        if (abstime && pt_past(clk, abstime)) {
            errno = ETIMEDOUT;
            return -1;
        }
        pt_backoff(&round);
    }
    return 0;
}

int sem_wait(sem_t *s)
{
    if (!shared(s)) return pt_real.sem_wait(s);
    return sem_wait_until(s, CLOCK_REALTIME, NULL);
}

int sem_timedwait(sem_t *s, const struct timespec *abstime)
{
    if (!shared(s)) return pt_real.sem_timedwait(s, abstime);
    return sem_wait_until(s, CLOCK_REALTIME, abstime);
}

int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *abstime)
{
    if (!shared(s)) {
        PT_REAL(sem_clockwait);
        return real_fn(s, clk, abstime);
    }
    if (bad_clock(clk)) {
        errno = EINVAL;
        return -1;
    }
    return sem_wait_until(s, clk, abstime);
}

int sem_getvalue(sem_t *s, int *v)
{
    if (!shared(s)) return pt_real.sem_getvalue(s, v);
    *v = (int)load32(s, count_of(s));
    return 0;
}

/* ---------------------------------------------------------------- read-write locks */

/* The first word: RW_WRITER when a writer holds it, else the number of readers
 * (PTHREAD_RWLOCK_INITIALIZER leaves it 0: free). Readers are preferred: a steady stream
 * of readers can starve a writer. */
#define RW_WRITER 0x80000000u

static unsigned *rw_of(pthread_rwlock_t *l)
{
    return (unsigned *)l;
}

int pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *a)
{
    if (!shared(l)) return pt_real.rwlock_init(l, a);
    memset(l, 0, sizeof *l);
    return 0;
}

int pthread_rwlock_destroy(pthread_rwlock_t *l)
{
    if (!shared(l)) return pt_real.rwlock_destroy(l);
    return load32(l, rw_of(l)) ? EBUSY : 0;
}

/* RC: taking it acquires with the guard's lock, giving it back releases with its unlock. */
static int rw_try_rc(pthread_rwlock_t *l, int write)
{
    guard(l);
    unsigned v = *rw_of(l);
    int busy = write ? v != 0 : (v & RW_WRITER) != 0;
    if (!busy) *rw_of(l) = write ? RW_WRITER : v + 1;
    unguard(l);
    return busy ? EBUSY : 0;
}

static int rw_try(pthread_rwlock_t *l, int write)
{
    if (pt_rc) return rw_try_rc(l, write);
    unsigned v = __atomic_load_n(rw_of(l), __ATOMIC_SEQ_CST);
    for (;;) {
        if (write ? v != 0 : (v & RW_WRITER) != 0) return EBUSY;
        if (__atomic_compare_exchange_n(rw_of(l), &v, write ? RW_WRITER : v + 1, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return 0;
    }
}

/* Waits for the lock (until abstime on clk, if given: then ETIMEDOUT). */
static int rw_lock(pthread_rwlock_t *l, int write, clockid_t clk, const struct timespec *abstime)
{
    unsigned round = 0;
    while (rw_try(l, write)) {
        if (abstime && pt_past(clk, abstime)) return ETIMEDOUT;
        pt_backoff(&round);
    }
    return 0;
}

int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    if (!shared(l)) return pt_real.rwlock_rdlock(l);
    return rw_lock(l, 0, CLOCK_REALTIME, NULL);
}

int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    if (!shared(l)) return pt_real.rwlock_wrlock(l);
    return rw_lock(l, 1, CLOCK_REALTIME, NULL);
}

int pthread_rwlock_timedrdlock(pthread_rwlock_t *l, const struct timespec *abstime)
{
    if (!shared(l)) {
        PT_REAL(pthread_rwlock_timedrdlock);
        return real_fn(l, abstime);
    }
    return rw_lock(l, 0, CLOCK_REALTIME, abstime);
}

int pthread_rwlock_timedwrlock(pthread_rwlock_t *l, const struct timespec *abstime)
{
    if (!shared(l)) {
        PT_REAL(pthread_rwlock_timedwrlock);
        return real_fn(l, abstime);
    }
    return rw_lock(l, 1, CLOCK_REALTIME, abstime);
}

int pthread_rwlock_clockrdlock(pthread_rwlock_t *l, clockid_t clk, const struct timespec *abstime)
{
    if (!shared(l)) {
        PT_REAL(pthread_rwlock_clockrdlock);
        return real_fn(l, clk, abstime);
    }
    return bad_clock(clk) ? EINVAL : rw_lock(l, 0, clk, abstime);
}

int pthread_rwlock_clockwrlock(pthread_rwlock_t *l, clockid_t clk, const struct timespec *abstime)
{
    if (!shared(l)) {
        PT_REAL(pthread_rwlock_clockwrlock);
        return real_fn(l, clk, abstime);
    }
    return bad_clock(clk) ? EINVAL : rw_lock(l, 1, clk, abstime);
}

int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    if (!shared(l)) return pt_real.rwlock_tryrdlock(l);
    return rw_try(l, 0);
}

int pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    if (!shared(l)) return pt_real.rwlock_trywrlock(l);
    return rw_try(l, 1);
}

int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    if (!shared(l)) return pt_real.rwlock_unlock(l);
    if (pt_rc) {
        guard(l);
        unsigned v = *rw_of(l);
        if (v) *rw_of(l) = v & RW_WRITER ? 0 : v - 1;
        unguard(l);
        return v ? 0 : EPERM;
    }
    unsigned v = __atomic_load_n(rw_of(l), __ATOMIC_SEQ_CST);
    if (!v) return EPERM;
    if (v & RW_WRITER)
        __atomic_store_n(rw_of(l), 0, __ATOMIC_SEQ_CST);
    else
        __atomic_sub_fetch(rw_of(l), 1, __ATOMIC_SEQ_CST);
    return 0;
}

/* ---------------------------------------------------------------- spinlocks */

/* glibc's spinlocks are plain atomics on the lock word, atomic across nodes on SC memory, so
 * they run unchanged there. On RC memory they would not exclude another node, and the data
 * they protect would not travel: there, a spinlock is the runtime's mutex on its address
 * (lock an acquire, unlock a release), like a normal pthread mutex. */
static int rc_spin(pthread_spinlock_t *l)
{
    return pt_rc && shared((const void *)l);
}

int pthread_spin_init(pthread_spinlock_t *l, int pshared)
{
    if (!rc_spin(l)) return pt_real.spin_init(l, pshared);
    *l = 0;
    return 0;
}

int pthread_spin_destroy(pthread_spinlock_t *l)
{
    if (!rc_spin(l)) return pt_real.spin_destroy(l);
    return 0;
}

int pthread_spin_lock(pthread_spinlock_t *l)
{
    if (!rc_spin(l)) return pt_real.spin_lock(l);
    return PT_RT1(pt_dsm.mutex_lock, l) ? EINVAL : 0;
}

int pthread_spin_trylock(pthread_spinlock_t *l)
{
    if (!rc_spin(l)) return pt_real.spin_trylock(l);
    int rc = (int)PT_RT1(pt_dsm.mutex_trylock, l);
    return rc == DSM_EBUSY ? EBUSY : rc ? EINVAL : 0;
}

int pthread_spin_unlock(pthread_spinlock_t *l)
{
    if (!rc_spin(l)) return pt_real.spin_unlock(l);
    return PT_RT1(pt_dsm.mutex_unlock, l) ? EPERM : 0;
}

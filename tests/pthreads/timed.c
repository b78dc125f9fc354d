/*
 * timed.c - the timed and clock variants of pthread waits, on objects another thread holds:
 * pthread_mutex_timedlock/clocklock, pthread_rwlock_timed{rd,wr}lock and clock{rd,wr}lock,
 * sem_timedwait/clockwait, pthread_cond_timedwait on a condition whose clock is
 * CLOCK_MONOTONIC (pthread_condattr_setclock) and pthread_cond_clockwait. Each must time out
 * with ETIMEDOUT, and not before its deadline (a deadline read on the wrong clock passes at
 * once), while the holder (another thread: another node under dsmrun --pthreads) keeps the
 * object; a clock that is not allowed gives EINVAL; and each succeeds once the holder lets
 * go. With --min-procs 2 the holder must have run in another process than main (another
 * node). An ordinary pthreads program (no ufdsm). Prints "timed: ok" or "FAIL ..." (status 1).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t ctl = PTHREAD_MUTEX_INITIALIZER; /* guards step */
static int step;                                        /* 1: holder holds; 2: let go */
static pthread_mutex_t mx = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static sem_t sem;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv; /* CLOCK_MONOTONIC */
static int ready;         /* under cm */
static int bad;
static pid_t holder_pid; /* under ctl, with step 1 */

static void fail(const char *what, int got, int want)
{
    fprintf(stderr, "FAIL: %s: got %d (%s), want %d\n", what, got, strerror(got), want);
    bad = 1;
}

static int get_step(void)
{
    pthread_mutex_lock(&ctl);
    int s = step;
    pthread_mutex_unlock(&ctl);
    return s;
}

static void set_step(int s)
{
    pthread_mutex_lock(&ctl);
    step = s;
    pthread_mutex_unlock(&ctl);
}

static void *holder(void *a)
{
    (void)a;
    pthread_mutex_lock(&mx);
    pthread_rwlock_wrlock(&rw);
    pthread_mutex_lock(&ctl);
    holder_pid = getpid();
    pthread_mutex_unlock(&ctl);
    set_step(1);
    while (get_step() != 2) usleep(1000);
    pthread_mutex_unlock(&mx);
    pthread_rwlock_unlock(&rw);
    sem_post(&sem);
    pthread_mutex_lock(&cm);
    ready = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&cm);
    return NULL;
}

static struct timespec in_ms(clockid_t clk, long ms)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    return ts;
}

/* Whether the deadline on clk has passed: a wait that timed out must not end before it. */
static int passed(clockid_t clk, const struct timespec *d)
{
    struct timespec now;
    clock_gettime(clk, &now);
    return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

#define TIMES_OUT(what, clk, call)                                                                 \
    do {                                                                                           \
        struct timespec d = in_ms(clk, 60);                                                        \
        int rc = (call);                                                                           \
        if (rc != ETIMEDOUT)                                                                       \
            fail(what " on a held object", rc, ETIMEDOUT);                                         \
        else if (!passed(clk, &d))                                                                 \
            fail(what " timed out before its deadline", rc, ETIMEDOUT);                            \
    } while (0)

static int sem_rc(int r)
{
    return r ? errno : 0;
}

int main(int argc, char **argv)
{
    int min_procs = argc == 3 && !strcmp(argv[1], "--min-procs") ? atoi(argv[2]) : 1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &ca);
    pthread_condattr_destroy(&ca);
    sem_init(&sem, 0, 0);
    pthread_t h;
    if (pthread_create(&h, NULL, holder, NULL)) {
        fprintf(stderr, "FAIL: pthread_create\n");
        return 1;
    }
    while (get_step() != 1) usleep(1000);
    pthread_mutex_lock(&ctl);
    int procs = 1 + (holder_pid != getpid());
    pthread_mutex_unlock(&ctl);
    if (procs < min_procs) {
        fprintf(stderr, "FAIL: the holder ran in main's process, want %d processes\n", min_procs);
        bad = 1;
    }

    TIMES_OUT("pthread_mutex_timedlock", CLOCK_REALTIME, pthread_mutex_timedlock(&mx, &d));
    TIMES_OUT("pthread_mutex_clocklock", CLOCK_MONOTONIC,
              pthread_mutex_clocklock(&mx, CLOCK_MONOTONIC, &d));
    TIMES_OUT("pthread_rwlock_timedrdlock", CLOCK_REALTIME, pthread_rwlock_timedrdlock(&rw, &d));
    TIMES_OUT("pthread_rwlock_timedwrlock", CLOCK_REALTIME, pthread_rwlock_timedwrlock(&rw, &d));
    TIMES_OUT("pthread_rwlock_clockrdlock", CLOCK_MONOTONIC,
              pthread_rwlock_clockrdlock(&rw, CLOCK_MONOTONIC, &d));
    TIMES_OUT("pthread_rwlock_clockwrlock", CLOCK_MONOTONIC,
              pthread_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &d));
    TIMES_OUT("sem_timedwait", CLOCK_REALTIME, sem_rc(sem_timedwait(&sem, &d)));
    TIMES_OUT("sem_clockwait", CLOCK_MONOTONIC, sem_rc(sem_clockwait(&sem, CLOCK_MONOTONIC, &d)));
    pthread_mutex_lock(&cm);
    TIMES_OUT("pthread_cond_timedwait (CLOCK_MONOTONIC condition)", CLOCK_MONOTONIC,
              pthread_cond_timedwait(&cv, &cm, &d));
    TIMES_OUT("pthread_cond_clockwait", CLOCK_REALTIME,
              pthread_cond_clockwait(&cv, &cm, CLOCK_REALTIME, &d));
    pthread_mutex_unlock(&cm);
    struct timespec d = in_ms(CLOCK_MONOTONIC, 60);
    int rc = pthread_mutex_clocklock(&mx, CLOCK_PROCESS_CPUTIME_ID, &d);
    if (rc != EINVAL) fail("pthread_mutex_clocklock on CLOCK_PROCESS_CPUTIME_ID", rc, EINVAL);

    set_step(2); /* the holder lets go of everything */
    d = in_ms(CLOCK_REALTIME, 30000);
    if ((rc = pthread_mutex_timedlock(&mx, &d))) fail("pthread_mutex_timedlock, released", rc, 0);
    pthread_mutex_unlock(&mx);
    d = in_ms(CLOCK_MONOTONIC, 30000);
    if ((rc = pthread_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &d)))
        fail("pthread_rwlock_clockwrlock, released", rc, 0);
    pthread_rwlock_unlock(&rw);
    d = in_ms(CLOCK_REALTIME, 30000);
    if ((rc = sem_rc(sem_timedwait(&sem, &d)))) fail("sem_timedwait, posted", rc, 0);
    pthread_mutex_lock(&cm);
    d = in_ms(CLOCK_MONOTONIC, 30000);
    while (!ready && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&cv, &cm, &d);
    if (!ready) fail("pthread_cond_timedwait, signalled", rc, 0);
    pthread_mutex_unlock(&cm);
    pthread_join(h, NULL);
    printf("%s\n", bad ? "FAIL: see above" : "timed: ok");
    return bad;
}

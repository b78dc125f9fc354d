/*
 * tcalls.c - the calls that take a pthread_t besides join/detach/self/equal, on threads that
 * run elsewhere. An ordinary pthreads program (no ufdsm); it checks itself natively too.
 *
 *   tcalls            joins that do not block or block until a deadline (tryjoin, timedjoin,
 *                     clockjoin), pthread_kill with signal 0, and calls a thread makes on
 *                     itself (setname/getname, getaffinity/setaffinity, getschedparam,
 *                     a signal to itself, getattr_np's stack holding one of its locals).
 *                     Prints "tcalls: ok" or "FAIL ..." (status 1).
 *   tcalls --min-procs N   the same, and the waiters ran in at least N processes (nodes)
 *   tcalls cancel     pthread_cancel on a waiting thread (under dsmrun --pthreads the job
 *                     must stop, naming the call)
 *   tcalls kill       pthread_kill(SIGUSR1) to another thread (likewise)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static int go;  /* under m: the waiting threads may end */
static int bad; /* under m: a check in a thread failed */
static volatile sig_atomic_t got_usr1;
static pid_t pids[3]; /* each waiter's, read by main after the joins */

static void fail(const char *what, long got, long want)
{
    fprintf(stderr, "FAIL: %s: got %ld, want %ld\n", what, got, want);
    pthread_mutex_lock(&m);
    bad = 1;
    pthread_mutex_unlock(&m);
}

static int released(void)
{
    pthread_mutex_lock(&m);
    int g = go;
    pthread_mutex_unlock(&m);
    return g;
}

static void on_usr1(int sig)
{
    (void)sig;
    got_usr1 = 1;
}

/* Waits until main says go, then checks the calls a thread makes on itself. */
static void *waiter(void *arg)
{
    pids[(intptr_t)arg] = getpid();
    while (!released()) usleep(1000);
    pthread_t me = pthread_self();
    char name[16] = "";
    int rc = pthread_setname_np(me, "tcalls-w");
    if (rc) fail("pthread_setname_np on itself", rc, 0);
    rc = pthread_getname_np(me, name, sizeof name);
    if (rc || strcmp(name, "tcalls-w")) fail("pthread_getname_np on itself", rc, 0);
    cpu_set_t set;
    rc = pthread_getaffinity_np(me, sizeof set, &set);
    if (rc || CPU_COUNT(&set) < 1)
        fail("pthread_getaffinity_np on itself", rc, 0);
    else if ((rc = pthread_setaffinity_np(me, sizeof set, &set)))
        fail("pthread_setaffinity_np on itself", rc, 0);
    int policy;
    struct sched_param sp;
    if ((rc = pthread_getschedparam(me, &policy, &sp))) fail("pthread_getschedparam", rc, 0);
    if ((rc = pthread_kill(me, 0))) fail("pthread_kill(itself, 0)", rc, 0);
    /* Dispositions are per node (docs/pthreads.md, signals): main's signal() reached node
     * 0 only, so the thread installs the handler where it runs. */
    signal(SIGUSR1, on_usr1);
    got_usr1 = 0;
    if ((rc = pthread_kill(me, SIGUSR1)) || !got_usr1)
        fail("pthread_kill(itself, SIGUSR1) ran the handler", got_usr1, 1);
    /* Its stack, as getattr_np reports it, holds its own locals. */
    pthread_attr_t a;
    void *lo;
    size_t size;
    if ((rc = pthread_getattr_np(me, &a))) {
        fail("pthread_getattr_np on itself", rc, 0);
    } else {
        pthread_attr_getstack(&a, &lo, &size);
        char *p = (char *)&a;
        if (p < (char *)lo || p >= (char *)lo + size)
            fail("pthread_getattr_np: a local outside the stack it reports", 0, 1);
        pthread_attr_destroy(&a);
    }
    return (void *)((intptr_t)arg * 10 + 7);
}

static void deadline(struct timespec *ts, clockid_t clk, long ms)
{
    clock_gettime(clk, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) ts->tv_sec++, ts->tv_nsec -= 1000000000;
}

int main(int argc, char **argv)
{
    signal(SIGUSR1, on_usr1);
    pthread_t t[3];
    for (intptr_t i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, waiter, (void *)i)) {
            fprintf(stderr, "FAIL: pthread_create\n");
            return 1;
        }
    if (argc == 2 && !strcmp(argv[1], "cancel")) {
        pthread_cancel(t[0]);
        void *rv;
        pthread_join(t[0], &rv);
        printf("tcalls: cancelled: %s\n", rv == PTHREAD_CANCELED ? "yes" : "no");
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "kill")) {
        pthread_kill(t[0], SIGUSR1);
        printf("tcalls: signal sent\n");
        pthread_mutex_lock(&m);
        go = 1;
        pthread_mutex_unlock(&m);
        for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
        return 0;
    }
    int min_procs = argc == 3 && !strcmp(argv[1], "--min-procs") ? atoi(argv[2]) : 1;
    void *rv;
    int rc;
    if ((rc = pthread_kill(t[0], 0))) fail("pthread_kill(a running thread, 0)", rc, 0);
    if ((rc = pthread_tryjoin_np(t[0], &rv)) != EBUSY)
        fail("pthread_tryjoin_np on a running thread", rc, EBUSY);
    struct timespec ts;
    deadline(&ts, CLOCK_REALTIME, 50);
    if ((rc = pthread_timedjoin_np(t[0], &rv, &ts)) != ETIMEDOUT)
        fail("pthread_timedjoin_np, 50 ms, on a running thread", rc, ETIMEDOUT);
    deadline(&ts, CLOCK_MONOTONIC, 50);
    if ((rc = pthread_clockjoin_np(t[1], &rv, CLOCK_MONOTONIC, &ts)) != ETIMEDOUT)
        fail("pthread_clockjoin_np, 50 ms, on a running thread", rc, ETIMEDOUT);
    pthread_mutex_lock(&m);
    go = 1;
    pthread_mutex_unlock(&m);
    deadline(&ts, CLOCK_REALTIME, 30000);
    if ((rc = pthread_timedjoin_np(t[0], &rv, &ts)) || (intptr_t)rv != 7)
        fail("pthread_timedjoin_np, 30 s: value", (intptr_t)rv, 7);
    deadline(&ts, CLOCK_MONOTONIC, 30000);
    if ((rc = pthread_clockjoin_np(t[1], &rv, CLOCK_MONOTONIC, &ts)) || (intptr_t)rv != 17)
        fail("pthread_clockjoin_np, 30 s: value", (intptr_t)rv, 17);
    while ((rc = pthread_tryjoin_np(t[2], &rv)) == EBUSY) usleep(1000);
    if (rc || (intptr_t)rv != 27) fail("pthread_tryjoin_np once ended: value", (intptr_t)rv, 27);
    int procs = 1 + (pids[1] != pids[0]) + (pids[2] != pids[0] && pids[2] != pids[1]);
    if (procs < min_procs) fail("processes the waiters ran in", procs, min_procs);
    pthread_mutex_lock(&m);
    int b = bad;
    pthread_mutex_unlock(&m);
    printf("%s\n", b ? "FAIL: see above" : "tcalls: ok");
    return b;
}

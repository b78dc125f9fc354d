/*
 * basic.c - an ordinary pthreads program that checks its own result. It knows nothing of
 * ufdsm: built with plain `cc -pthread`, it runs natively and under `dsmrun --pthreads`.
 *
 *   basic [--min-procs K] [--exit S]
 *
 * Checks: globals with initial values (.data) and zeroed ones (.bss); pointers to main's
 * locals handed to threads (read and written); heap objects malloc'd by one thread and freed
 * by another; a counter under a statically initialised mutex, a recursive mutex and trylock;
 * a reduction in barrier-separated phases; a work queue with a condition variable; a thread
 * created by a thread; join values, half of them through pthread_exit; a detached thread;
 * pthread_self/pthread_equal; pthread_once (once, and once called by every thread at the same
 * moment: one run, whose writes every caller sees); a read-write lock; pthread_mutex_timedlock;
 * a counter under a spinlock; an unnamed semaphore posted by every thread and waited for by
 * main; that the threads ran in at least K processes (getpid() of every thread; K = 1
 * natively, the node count under dsmrun); that what a thread's creator wrote before
 * pthread_create is seen by the new thread, and what a thread wrote after its last
 * synchronisation is seen by the thread that joins it (handoff(): blocks homed on every node,
 * which the reader has cached before, with node 0 running main alone: what release
 * consistency must make visible at create and join, and no other thread's synchronisation
 * does it by chance). --exit S makes main return S after the checks, to test that the status
 * reaches the caller.
 *
 * Two flags are C11 atomics that main polls without other synchronisation (the threads that
 * reached the work queue, the detached thread's write). Under `DSM_PROTOCOL=rc` the program's
 * memory is release-consistent, where atomics are not atomic across nodes and a node sees
 * another's writes only after synchronising, so with DSM_PROTOCOL=rc in the environment those
 * two flags are read and written under a mutex instead (the last line says "flags under a
 * mutex"); everything else is data-race-free and checked the same way in both modes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP */
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NT    8
#define ITER  100
#define ITEMS 64

/* .data: initial values the program relies on. */
int table[8] = {3, 1, 4, 1, 5, 9, 2, 6};
const char *greeting = "hello";
long magic = 0x5eed1234;
/* .bss */
long counter;  /* under mtx */
long rcounter; /* under rmtx */
pid_t pids[NT + 2];
long partial[NT];
long total;
void *slot[NT];
int failures;

pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t rmtx = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
pthread_barrier_t bar;

/* The work queue. */
pthread_mutex_t qm = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t qc = PTHREAD_COND_INITIALIZER;
int queue[ITEMS];
int qhead, qtail, qdone;
long consumed_sum;
int at_queue;     /* threads that reached the work queue */
int detached_ran; /* set by the detached thread */

pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
int rw_data[4];
pthread_once_t once = PTHREAD_ONCE_INIT;
/* A second once, called by every thread at the same moment (right after a barrier), whose
 * function takes a while: the others really wait for it, and must then see what it wrote. */
pthread_once_t once2 = PTHREAD_ONCE_INIT;
int once2_runs; /* under mtx */
long once2_value;
int once_runs;
pthread_spinlock_t spin;
long spin_counter;
sem_t done_sem;
int posted[NT];
/* Visibility at thread start and end: a page-sized block per worker (homed where it ran
 * under dsmrun), written by a creator before pthread_create and read by the new threads, then
 * written by those and read after joining them (see handoff()); and values each worker
 * writes after its last synchronisation, read by main after joining it. */
long *cblk[NT];
long late[NT];
#define CBLK_LONGS 512
#define NY         4 /* handoff threads: with 8 + 2 threads before, some land on every node */
#define SPIN_ITER  20
/* DSM_PROTOCOL=rc: the polled flags are under flag_m, not atomics (see the top). */
int locked_flags;
pthread_mutex_t flag_m = PTHREAD_MUTEX_INITIALIZER;

static void flag_add(int *f, int v)
{
    if (!locked_flags) {
        __atomic_add_fetch(f, v, __ATOMIC_SEQ_CST);
        return;
    }
    pthread_mutex_lock(&flag_m);
    *f += v;
    pthread_mutex_unlock(&flag_m);
}

static int flag_get(int *f)
{
    if (!locked_flags) return __atomic_load_n(f, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&flag_m);
    int v = *f;
    pthread_mutex_unlock(&flag_m);
    return v;
}

struct arg {
    int id;
    int *main_local;  /* points to main's stack */
    long *main_slots; /* main's array, one per thread */
};

static void fail(const char *what, long got, long want)
{
    pthread_mutex_lock(&mtx);
    fprintf(stderr, "FAIL: %s: got %ld, want %ld\n", what, got, want);
    failures++;
    pthread_mutex_unlock(&mtx);
}

static void *child(void *a)
{
    for (int k = 0; k < NT; k++)
        if (cblk[k][0] != 1000 + k)
            fail("a block its creator wrote before pthread_create, read by the new thread",
                 cblk[k][0], 1000 + k);
    return (void *)((intptr_t)a * 2);
}

static void once2_fn(void)
{
    usleep(20000);
    pthread_mutex_lock(&mtx);
    once2_runs++;
    pthread_mutex_unlock(&mtx);
    once2_value = 0x0dce;
}

static void once_fn(void)
{
    /* Under a mutex, not an atomic: two runs on two nodes must add up on RC memory too. */
    pthread_mutex_lock(&mtx);
    once_runs++;
    pthread_mutex_unlock(&mtx);
}

static void *detached(void *a)
{
    pids[NT + 1] = getpid();
    flag_add(&detached_ran, (int)(intptr_t)a);
    return NULL;
}

static void *worker(void *p)
{
    struct arg *a = p;
    int id = a->id;
    pids[id] = getpid();
    pthread_t me = pthread_self();
    if (!pthread_equal(me, pthread_self())) fail("pthread_equal(self, self)", 0, 1);

    /* globals with their initial values */
    long s = 0;
    for (int i = 0; i < 8; i++) s += table[i];
    if (s != 31) fail("sum of the initialised table", s, 31);
    if (strcmp(greeting, "hello")) fail("initialised string pointer", 0, 1);
    if (magic != 0x5eed1234) fail("initialised long", magic, 0x5eed1234);
    /* main's locals */
    if (*a->main_local != 42) fail("main's local seen by a thread", *a->main_local, 42);
    a->main_slots[id] = 100 + id;

    /* heap: an object of ours, freed later by the next thread */
    long *obj = malloc(1000 * sizeof *obj);
    for (int i = 0; i < 1000; i++) obj[i] = id * 1000 + i;
    slot[id] = obj;

    /* counter under mutexes */
    for (int i = 0; i < ITER; i++) {
        pthread_mutex_lock(&mtx);
        /* Read, give the CPU away, write: without mutual exclusion other threads' updates
         * are lost (a single counter++ could be one instruction and hide that). */
        long c = *(volatile long *)&counter;
        sched_yield();
        *(volatile long *)&counter = c + 1;
        pthread_mutex_unlock(&mtx);
    }
    if (pthread_mutex_lock(&rmtx)) fail("recursive mutex: first lock", 1, 0);
    if (pthread_mutex_lock(&rmtx)) fail("recursive mutex: second lock by its owner", 1, 0);
    rcounter += 1000;
    if (pthread_mutex_unlock(&rmtx)) fail("recursive mutex: inner unlock", 1, 0);
    if (pthread_mutex_unlock(&rmtx)) fail("recursive mutex: outer unlock", 1, 0);
    pthread_once(&once, once_fn);
    pthread_mutex_lock(&mtx);
    int runs = once_runs;
    pthread_mutex_unlock(&mtx);
    if (runs != 1) fail("pthread_once: runs seen after it returned", runs, 1);
    for (int i = 0; i < SPIN_ITER; i++) {
        pthread_spin_lock(&spin);
        spin_counter++;
        pthread_spin_unlock(&spin);
    }
    int tries = 0;
    while (pthread_mutex_trylock(&mtx)) tries++;
    counter++;
    pthread_mutex_unlock(&mtx);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    if (pthread_mutex_timedlock(&mtx, &dl)) fail("pthread_mutex_timedlock", 1, 0);
    counter++;
    pthread_mutex_unlock(&mtx);

    /* read-write lock: one writer per round writes all of rw_data, readers (yielding while
     * they hold it) must never see a half-written state */
    for (int r = 0; r < 8; r++) {
        if (r == id % 8) {
            pthread_rwlock_wrlock(&rw);
            for (int k = 0; k < 4; k++) {
                rw_data[k] = id + 1 + r * 100;
                sched_yield();
            }
            pthread_rwlock_unlock(&rw);
        }
        pthread_rwlock_rdlock(&rw);
        int v0 = rw_data[0];
        sched_yield();
        for (int k = 1; k < 4; k++)
            if (rw_data[k] != v0) fail("read-write lock: torn read", rw_data[k], v0);
        if (pthread_rwlock_trywrlock(&rw) != EBUSY)
            fail("trywrlock while a read lock is held", 0, EBUSY);
        pthread_rwlock_unlock(&rw);
    }

    cblk[id] = calloc(CBLK_LONGS, sizeof(long));

    /* phased reduction */
    long part = 0;
    for (long i = id * 1000; i < (id + 1) * 1000; i++) part += i;
    partial[id] = part;
    int r = pthread_barrier_wait(&bar);
    pthread_once(&once2, once2_fn);
    if (once2_value != 0x0dce)
        fail("what the once function wrote, after pthread_once", once2_value, 0x0dce);
    if (r == PTHREAD_BARRIER_SERIAL_THREAD) {
        long t = 0;
        for (int i = 0; i < NT; i++) t += partial[i];
        total = t;
    } else if (r) {
        fail("pthread_barrier_wait", r, 0);
    }
    pthread_barrier_wait(&bar);
    long want = (long)NT * 1000 * (NT * 1000 - 1) / 2;
    if (total != want) fail("reduction after the barrier", total, want);

    /* the next thread's object: check it and free it */
    long *o = slot[(id + 1) % NT];
    for (int i = 0; i < 1000; i++)
        if (o[i] != ((id + 1) % NT) * 1000 + i) {
            fail("heap object written by another thread", o[i], ((id + 1) % NT) * 1000 + i);
            break;
        }
    pthread_barrier_wait(&bar); /* everyone has read before anyone frees */
    free(o);

    /* consume from the work queue: main produces only once every thread is here, so the
     * consumers really wait (a 10 s deadline turns a lost wake-up into a failure) */
    flag_add(&at_queue, 1);
    for (;;) {
        pthread_mutex_lock(&qm);
        while (qhead == qtail && !qdone) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 10;
            if (pthread_cond_timedwait(&qc, &qm, &until) == ETIMEDOUT) {
                pthread_mutex_unlock(&qm);
                fail("condition wait: no wake-up within 10 s", 0, 1);
                goto consumed;
            }
        }
        if (qhead == qtail && qdone) {
            pthread_mutex_unlock(&qm);
            break;
        }
        int v = queue[qhead++ % ITEMS];
        consumed_sum += v;
        pthread_mutex_unlock(&qm);
    }
consumed:

    if (id == 0) {                                          /* a thread created by a thread */
        for (int k = 0; k < NT; k++) cblk[k][0] = 1000 + k; /* the barriers published cblk */
        pthread_t c;
        void *rv;
        pthread_create(&c, NULL, child, (void *)(intptr_t)21);
        pthread_join(c, &rv);
        if ((intptr_t)rv != 42) fail("join value of a thread's thread", (intptr_t)rv, 42);
    }
    __atomic_store_n(&posted[id], 1, __ATOMIC_SEQ_CST);
    sem_post(&done_sem);
    late[id] = id + 2; /* only the thread's end between here and main's join */
    if (id % 2) pthread_exit((void *)(intptr_t)(id * 3 + 1));
    return (void *)(intptr_t)(id * 3 + 1);
}

/* A handoff thread: reads what main wrote before creating it, then writes with nothing but
 * its end between that and main's join. */
static void *handoff_thread(void *p)
{
    long j = (intptr_t)p;
    for (int i = 0; i < NT; i++) {
        if (cblk[i][0] != 2000 + i)
            fail("a block main wrote before pthread_create, read by the new thread", cblk[i][0],
                 2000 + i);
        cblk[i][1 + j] = 3000 + j;
    }
    return NULL;
}

/* Once every worker has ended, node 0 runs main alone, so no other thread's synchronisation
 * does main's release or acquire for it: main writes the workers' blocks (homed on every
 * node, and cached here once written), creates NY threads that check them and write them
 * again, and checks that after joining. */
static void handoff(void)
{
    pthread_t y[NY];
    for (int i = 0; i < NT; i++) cblk[i][0] = 2000 + i;
    for (long j = 0; j < NY; j++)
        if (pthread_create(&y[j], NULL, handoff_thread, (void *)(intptr_t)j))
            fail("pthread_create of a handoff thread", 1, 0);
    for (int j = 0; j < NY; j++) pthread_join(y[j], NULL);
    for (int i = 0; i < NT; i++) {
        for (int j = 0; j < NY; j++)
            if (cblk[i][1 + j] != 3000 + j)
                fail("a block a thread wrote after its last synchronisation, after join",
                     cblk[i][1 + j], 3000 + j);
        free(cblk[i]);
    }
}

int main(int argc, char **argv)
{
    int min_procs = 1, status = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--min-procs"))
            min_procs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--exit"))
            status = atoi(argv[i + 1]);
    }
    const char *proto = getenv("DSM_PROTOCOL");
    locked_flags = proto && !strcmp(proto, "rc");
    int main_local = 42;
    long main_slots[NT] = {0};
    struct arg args[NT];
    pthread_t th[NT];
    pthread_barrier_init(&bar, NULL, NT);
    pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE);
    sem_init(&done_sem, 0, 0);
    pids[NT] = getpid();
    for (int i = 0; i < NT; i++) {
        args[i] = (struct arg){i, &main_local, main_slots};
        if (pthread_create(&th[i], NULL, worker, &args[i])) {
            fprintf(stderr, "FAIL: pthread_create\n");
            return 1;
        }
    }
    pthread_attr_t da;
    pthread_attr_init(&da);
    pthread_attr_setdetachstate(&da, PTHREAD_CREATE_DETACHED);
    pthread_t dt;
    if (pthread_create(&dt, &da, detached, (void *)(intptr_t)5)) fail("detached create", 1, 0);
    pthread_attr_destroy(&da);
    /* produce the work, once every consumer waits */
    while (flag_get(&at_queue) < NT) usleep(1000);
    usleep(20000);
    long produced = 0;
    for (int i = 1; i <= ITEMS; i++) {
        pthread_mutex_lock(&qm);
        queue[qtail++ % ITEMS] = i;
        produced += i;
        pthread_cond_signal(&qc);
        pthread_mutex_unlock(&qm);
    }
    pthread_mutex_lock(&qm);
    qdone = 1;
    pthread_cond_broadcast(&qc);
    pthread_mutex_unlock(&qm);

    for (int i = 0; i < NT; i++) sem_wait(&done_sem); /* every thread posts once */
    int sv = -1;
    sem_getvalue(&done_sem, &sv);
    if (sv != 0) fail("semaphore value after NT waits", sv, 0);
    for (int i = 0; i < NT; i++)
        if (!__atomic_load_n(&posted[i], __ATOMIC_SEQ_CST))
            fail("a thread had not posted when main's waits returned", i, -1);
    if (sem_trywait(&done_sem) == 0) fail("sem_trywait on an empty semaphore", 0, -1);
    for (int i = 0; i < NT; i++) {
        void *rv;
        if (pthread_join(th[i], &rv)) fail("pthread_join", 1, 0);
        if ((intptr_t)rv != i * 3 + 1) fail("join value", (intptr_t)rv, i * 3 + 1);
        if (main_slots[i] != 100 + i)
            fail("main's local written by a thread", main_slots[i], 100 + i);
        if (late[i] != i + 2)
            fail("a global written after a thread's last synchronisation, after join", late[i],
                 i + 2);
    }
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 3000 && !flag_get(&detached_ran); i++) usleep(1000);
    if (detached_ran != 5) fail("detached thread's write", detached_ran, 5);
    handoff();
    long want = (long)NT * (ITER + 2);
    if (counter != want) fail("mutex-protected counter", counter, want);
    if (rcounter != (long)NT * 1000)
        fail("counter under the recursive mutex", rcounter, (long)NT * 1000);
    if (once_runs != 1) fail("pthread_once runs", once_runs, 1);
    if (once2_runs != 1) fail("runs of a pthread_once called at the same time", once2_runs, 1);
    sem_getvalue(&done_sem, &sv);
    if (sv != 0) fail("semaphore value after every thread ended", sv, 0);
    if (spin_counter != (long)NT * SPIN_ITER)
        fail("spinlock-protected counter", spin_counter, (long)NT * SPIN_ITER);
    if (consumed_sum != produced) fail("work-queue sum", consumed_sum, produced);
    int procs = 0;
    for (int i = 0; i <= NT + 1; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= pids[j] == pids[i];
        procs += !seen;
    }
    if (procs < min_procs) fail("processes the threads ran in", procs, min_procs);
    printf("basic: %d threads in %d process(es), counter %ld, total %ld, queue %ld, flags %s: "
           "%s\n",
           NT, procs, counter, total, consumed_sum,
           locked_flags ? "under a mutex (DSM_PROTOCOL=rc)" : "atomic", failures ? "FAILED" : "ok");
    return failures ? 1 : status;
}

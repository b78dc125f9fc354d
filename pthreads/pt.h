/*
 * pt.h - what the files of the pthreads preload (libufdsm_pthreads.so) share.
 *
 * The preload sits above dsm/: it calls the public API (include/dsm.h) and one internal hook
 * (dsm/preload_hooks.h). See README.md for what lives where.
 */
#ifndef UFDSM_PT_H
#define UFDSM_PT_H

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <ucontext.h>

#include "dsm.h"

#define PT_MAX_NODES 256
#define PT_MAGIC     0x7074687265616431ull /* "pthread1": marks a thread record */

/* One thread started through the interposed pthread_create: lives in the global space (a
 * slot of the records pool, SC memory, preferably homed on the creating node), so any node
 * can join or detach it. Its address is the pthread_t the program sees. */
struct pt_thread {
    uint64_t magic;
    void *(*fn)(void *);
    void *arg;
    void *ret;
    size_t stacksize;
    struct pt_thread *next; /* in a node's start queue */
    uint32_t tid;           /* job-wide thread id (mutex owners) */
    int node;               /* where it runs */
    _Atomic int state;      /* PT_RUNNING, PT_DONE or PT_DETACHED */
    _Atomic int used;       /* the pool slot is taken (thread.c) */
    /* Attributes the creator set, applied where the thread runs (thread.c). */
    void *ustack;       /* pthread_attr_setstack: the program's own stack, or NULL */
    int has_cpus;       /* pthread_attr_setaffinity_np */
    int sched_explicit; /* PTHREAD_EXPLICIT_SCHED: policy and param below */
    int policy;
    struct sched_param param;
    cpu_set_t cpus;
} __attribute__((aligned(64)));
enum { PT_RUNNING = 0, PT_DONE = 1, PT_DETACHED = 2 };

/* One node's queue of threads to start: a page of its own, homed on that node, so that the
 * node polls it without traffic until someone pushes. */
struct pt_queue {
    _Atomic(struct pt_thread *) head;
    char pad[4096 - sizeof(void *)];
};

/* What every node must agree on (checked at start). */
struct pt_ident {
    uint64_t exe, libc, ldso, data_lo, data_hi;
};

/* The job's control block: global space homed on node 0. */
struct pt_ctl {
    _Atomic uint64_t rr;       /* round-robin placement cursor */
    _Atomic uint64_t exiting;  /* 0, or (1 << 32) | status: the job is ending */
    _Atomic int64_t live;      /* threads started and not finished */
    _Atomic uint32_t next_tid; /* job-wide thread ids */
    struct pt_ident ident[PT_MAX_NODES];
    uint32_t per_node[PT_MAX_NODES]; /* threads a node takes in turn (DSM_THREAD_PLACEMENT) */
};

/* Thread records: PT_RECORDS slots per node, node k's homed on node k. */
#define PT_RECORDS 4096

extern struct pt_ctl *pt_ctl;
extern struct pt_queue *pt_queues;
extern struct pt_thread *pt_records;
extern int pt_rank, pt_nodes;
/* 1 when the program's memory is release-consistent (DSM_PROTOCOL=rc): every
 * synchronisation call then also releases and/or acquires, and the objects that keep state
 * in themselves (barriers, conditions, semaphores, once, rwlocks, spinlocks) guard it with
 * the runtime's mutex on their address (sync.c). Chosen once at start. */
extern int pt_rc;
/* 1 once the global space serves the program (malloc from it, threads placed on nodes). */
extern int pt_ready;
/* >0 while this thread runs the runtime's code, or for the runtime's own threads: their
 * allocations go to glibc and their threads stay local. */
extern __thread int pt_internal;
extern __thread struct pt_thread *pt_self;
/* The thread record behind a pthread_t the preload handed out, or NULL (a glibc thread). */
struct pt_thread *pt_ours(pthread_t th);
int pt_join(struct pt_thread *t, void **ret, int try, clockid_t clk,
            const struct timespec *abstime);
/* The calling thread's stack in the global space (NULL, 0 outside one). */
extern __thread void *pt_stack_lo;
extern __thread size_t pt_stack_size;

/* The real functions behind the interposed ones (resolved once at start, start.c). */
struct pt_real {
    int (*create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    int (*join)(pthread_t, void **);
    int (*detach)(pthread_t);
    void (*exit)(void *) __attribute__((noreturn));
    pthread_t (*self)(void);
    int (*mutex_init)(pthread_mutex_t *, const pthread_mutexattr_t *);
    int (*mutex_destroy)(pthread_mutex_t *);
    int (*mutex_lock)(pthread_mutex_t *);
    int (*mutex_trylock)(pthread_mutex_t *);
    int (*mutex_unlock)(pthread_mutex_t *);
    int (*barrier_init)(pthread_barrier_t *, const pthread_barrierattr_t *, unsigned);
    int (*barrier_destroy)(pthread_barrier_t *);
    int (*barrier_wait)(pthread_barrier_t *);
    int (*cond_init)(pthread_cond_t *, const pthread_condattr_t *);
    int (*cond_destroy)(pthread_cond_t *);
    int (*cond_wait)(pthread_cond_t *, pthread_mutex_t *);
    int (*cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    int (*cond_signal)(pthread_cond_t *);
    int (*cond_broadcast)(pthread_cond_t *);
    int (*once)(pthread_once_t *, void (*)(void));
    int (*mutex_timedlock)(pthread_mutex_t *, const struct timespec *);
    int (*rwlock_init)(pthread_rwlock_t *, const pthread_rwlockattr_t *);
    int (*rwlock_destroy)(pthread_rwlock_t *);
    int (*rwlock_rdlock)(pthread_rwlock_t *);
    int (*rwlock_wrlock)(pthread_rwlock_t *);
    int (*rwlock_tryrdlock)(pthread_rwlock_t *);
    int (*rwlock_trywrlock)(pthread_rwlock_t *);
    int (*rwlock_unlock)(pthread_rwlock_t *);
    int (*sem_init)(sem_t *, int, unsigned);
    int (*sem_destroy)(sem_t *);
    int (*sem_post)(sem_t *);
    int (*sem_wait)(sem_t *);
    int (*sem_trywait)(sem_t *);
    int (*sem_timedwait)(sem_t *, const struct timespec *);
    int (*sem_getvalue)(sem_t *, int *);
    int (*spin_init)(pthread_spinlock_t *, int);
    int (*spin_destroy)(pthread_spinlock_t *);
    int (*spin_lock)(pthread_spinlock_t *);
    int (*spin_trylock)(pthread_spinlock_t *);
    int (*spin_unlock)(pthread_spinlock_t *);
    size_t (*usable_size)(void *);
    void (*exit_proc)(int) __attribute__((noreturn));
};
extern struct pt_real pt_real;

/* The runtime's API, from libufdsm.so.0 loaded with dlopen once the global space's range is
 * reserved (start.c says why it is not a link-time dependency). */
struct pt_dsm {
    int (*init_sized)(const dsm_options_t *, size_t);
    void (*finalize)(void);
    const char *(*strerror)(int);
    int (*rank)(void);
    int (*nodes)(void);
    void *(*alloc_placed)(size_t, int, size_t);
    void *(*malloc)(size_t);
    void (*free)(void *);
    void (*barrier)(void);
    void (*release)(void);
    void (*acquire)(void);
    int (*mutex_destroy)(dsm_mutex_t *);
    int (*mutex_lock)(dsm_mutex_t *);
    int (*mutex_trylock)(dsm_mutex_t *);
    int (*mutex_unlock)(dsm_mutex_t *);
    void (*map_over)(uintptr_t, size_t);
    void *handle;
};
extern struct pt_dsm pt_dsm;

/* io.c: the interposed system calls go to `where` (RTLD_NEXT: libc; or the runtime's handle). */
void pt_io_resolve(void *where);

/* Reserves the global space's range above the data segment, once (start.c). */
void pt_reserve_space(void);

/* Allocates this thread's block of the runtime's thread-locals now, from glibc (start.c). */
void pt_tls_prime(void);
/* The dynamic loader's code: its allocations (TLS blocks, link maps) stay in glibc's heap. */
extern uintptr_t pt_ldso_lo, pt_ldso_hi;

/* The global space, once mapped. */
extern uintptr_t pt_lo, pt_hi;
static inline int pt_in_dsm(const void *p)
{
    return (uintptr_t)p - pt_lo < pt_hi - pt_lo;
}

_Noreturn void pt_exit_now(int status);
/* Prints "ufdsm pthreads: ..." and exits the process with status 1. */
/* A thread's end: the free small blocks it keeps (malloc.c) go back to the arena. */
void pt_malloc_thread_end(void);

/* glibc's version of fn (an interposed call), looked up at its first use: for the calls that
 * are not in pt_real (start.c resolves those eagerly). Declares real_fn. */
#define PT_REAL(fn)                                                                                \
    static __typeof__(&fn) real_fn;                                                                \
    if (!real_fn) real_fn = (__typeof__(&fn))dlsym(RTLD_NEXT, #fn);                                \
    if (!real_fn) pt_die("cannot find glibc's " #fn ": %s", dlerror())

void pt_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Prints "ufdsm pthreads: ..." and goes on. */
void pt_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Waits a little, longer the longer it has waited (round: how often it has been called). */
void pt_backoff(unsigned *round);
/* Whether the deadline abstime on clock clk has passed. */
int pt_past(clockid_t clk, const struct timespec *abstime);
/* Global-space memory of the program's kind (the default protocol: thread stacks, the heap):
 * dsm_malloc with the runtime's allocations kept in glibc. NULL when the space is exhausted.
 * The preload's own shared state is SC memory allocated at start instead (start.c). */
void *pt_dsm_malloc(size_t size);
void pt_dsm_free(void *p);

/* Calls fn(a0..a5) (any function of at most six integer or pointer arguments, returning
 * one or nothing) with the runtime's thread-local flag set and, if this thread is running
 * on a stack in the global space, on its real stack instead (thread.c says why). */
long pt_rt_call(void *fn, long a0, long a1, long a2, long a3, long a4, long a5);
#define PT_RT0(fn)          pt_rt_call((void *)(fn), 0, 0, 0, 0, 0, 0)
#define PT_RT1(fn, a)       pt_rt_call((void *)(fn), (long)(a), 0, 0, 0, 0, 0)
#define PT_RT3(fn, a, b, c) pt_rt_call((void *)(fn), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* Under RC: makes this node's writes visible to the next acquirer (pt_release) or the
 * writes released by others visible here (pt_acquire). Nothing under SC, where every write
 * is visible at once. */
#define pt_release()                                                                               \
    do {                                                                                           \
        if (pt_rc) PT_RT0(pt_dsm.release);                                                         \
    } while (0)
#define pt_acquire()                                                                               \
    do {                                                                                           \
        if (pt_rc) PT_RT0(pt_dsm.acquire);                                                         \
    } while (0)

/* start.c: the end of the job stops the program's threads of this node first (they would
 * fault on the global space while dsm_finalize unmaps it). A thread inside the runtime
 * when asked parks as soon as it leaves it. */
extern __thread int pt_park_pending;
void pt_park_now(void) __attribute__((noreturn));
int pt_app_thread_register(void);
void pt_app_thread_unregister(int slot);

/* thread.c */
void pt_threads_start_queued(void); /* starts what this node's queue holds */
/* Runs fn on a stack of `size` bytes in the global space (homed here), with an alternate
 * signal stack for the SIGBUS of faults on that stack. pt_exit_to_runner ends it early. */
void pt_run_on_dsm_stack(void (*fn)(void), size_t size, void *given);
void pt_exit_to_runner(void) __attribute__((noreturn));
/* Placement (DSM_THREAD_PLACEMENT): pt_place_init reads the variables and publishes this
 * node's share in the control block, before the start barrier; pt_place_ready takes every
 * node's after it. pt_place(i) is the node of the i-th thread created in the job. */
void pt_place_init(void);
void pt_place_ready(void);
int pt_place(uint64_t i);
/* A free slot of the records pool (this node's first), zeroed; NULL when all are taken. */
struct pt_thread *pt_record_alloc(void);
void pt_record_free(struct pt_thread *t);
int pt_self_tid(void);

#endif /* UFDSM_PT_H */

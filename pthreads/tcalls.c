/*
 * tcalls.c - the other calls that take a pthread_t, on threads the preload placed; and the
 * calls that start programs (at the end).
 *
 * A placed thread's pthread_t is its record in the global space, not a glibc descriptor, so
 * glibc's versions of these calls must never see it (they would read the record as a
 * descriptor: undefined, likely a crash). Each call is therefore interposed and does one of:
 *   - what the program asked, where it can be done: the timed and non-blocking joins (the
 *     same wait as pthread_join); pthread_kill with signal 0 (is the thread there?); and
 *     every call on the calling thread itself (its name, affinity, scheduling, a signal to
 *     itself, its attributes with its stack in the global space), done on its real thread;
 *   - stop the job naming the call and what to do instead, where the program's logic
 *     depends on it and no node-local substitute keeps it right: pthread_cancel, and a
 *     signal sent to another thread (it may be on another node);
 *   - return ENOTSUP after saying so once, where a program can go on without it: names,
 *     affinity and scheduling of another thread.
 * Threads the preload did not place (glibc's own, the runtime's) get glibc's versions.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pt.h"

extern char **environ;

/* Once per call name: the program asked for something about another thread that the
 * preload cannot do across nodes; the call returns ENOTSUP. */
static int unsupported(const char *call, _Atomic int *said)
{
    if (!atomic_exchange(said, 1))
        pt_warn("%s on another thread is not supported under dsmrun --pthreads (the thread may "
                "run on another node); it returns ENOTSUP. Call it from the thread itself "
                "(docs/pthreads.md, limits)",
                call);
    return ENOTSUP;
}

static int self(const struct pt_thread *t)
{
    return t == pt_self;
}

/* ---------------------------------------------------------------- joins */

int pthread_tryjoin_np(pthread_t th, void **ret)
{
    struct pt_thread *t = pt_ours(th);
    if (!t) {
        PT_REAL(pthread_tryjoin_np);
        return real_fn(th, ret);
    }
    return pt_join(t, ret, 1, CLOCK_REALTIME, NULL);
}

int pthread_timedjoin_np(pthread_t th, void **ret, const struct timespec *abstime)
{
    struct pt_thread *t = pt_ours(th);
    if (!t) {
        PT_REAL(pthread_timedjoin_np);
        return real_fn(th, ret, abstime);
    }
    return pt_join(t, ret, 0, CLOCK_REALTIME, abstime);
}

int pthread_clockjoin_np(pthread_t th, void **ret, clockid_t clk, const struct timespec *abstime)
{
    struct pt_thread *t = pt_ours(th);
    if (!t) {
        PT_REAL(pthread_clockjoin_np);
        return real_fn(th, ret, clk, abstime);
    }
    if (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC) return EINVAL;
    return pt_join(t, ret, 0, clk, abstime);
}

/* ---------------------------------------------------------------- signals, cancellation */

int pthread_kill(pthread_t th, int sig)
{
    PT_REAL(pthread_kill);
    struct pt_thread *t = pt_ours(th);
    if (!t) return real_fn(th, sig);
    if (sig == 0) return atomic_load(&t->state) == PT_DONE ? ESRCH : 0;
    if (self(t)) return real_fn(pt_real.self(), sig);
    pt_die("pthread_kill(thread %u, signal %d): a signal to another thread cannot be delivered "
           "under dsmrun --pthreads (the thread may run on another node). Send it to the thread "
           "from itself (raise), to a process with kill(2), or set a flag the thread polls",
           t->tid, sig);
}

int pthread_sigqueue(pthread_t th, int sig, const union sigval value)
{
    PT_REAL(pthread_sigqueue);
    struct pt_thread *t = pt_ours(th);
    if (!t) return real_fn(th, sig, value);
    if (self(t)) return real_fn(pt_real.self(), sig, value);
    pt_die("pthread_sigqueue(thread %u, signal %d): a signal to another thread cannot be "
           "delivered under dsmrun --pthreads (the thread may run on another node); set a flag "
           "the thread polls instead",
           t->tid, sig);
}

int pthread_cancel(pthread_t th)
{
    struct pt_thread *t = pt_ours(th);
    if (!t) {
        PT_REAL(pthread_cancel);
        return real_fn(th);
    }
    pt_die("pthread_cancel(thread %u): cancellation is not supported under dsmrun --pthreads "
           "(the thread runs its routine on a stack of the global space, which glibc's "
           "unwinding does not know). End the thread with a flag it polls and pthread_exit or "
           "a return",
           t->tid);
}

/* ---------------------------------------------------------------- names */

int pthread_setname_np(pthread_t th, const char *name)
{
    PT_REAL(pthread_setname_np);
    static _Atomic int said;
    struct pt_thread *t = pt_ours(th);
    if (!t) return real_fn(th, name);
    return self(t) ? real_fn(pt_real.self(), name) : unsupported("pthread_setname_np", &said);
}

int pthread_getname_np(pthread_t th, char *name, size_t len)
{
    PT_REAL(pthread_getname_np);
    static _Atomic int said;
    struct pt_thread *t = pt_ours(th);
    if (!t) return real_fn(th, name, len);
    return self(t) ? real_fn(pt_real.self(), name, len) : unsupported("pthread_getname_np", &said);
}

/* ---------------------------------------------------------------- affinity, scheduling */

/* The buffers of these calls go to and from the kernel through local copies: they may be in
 * the global space (a global, or malloc'ed memory), and the kernel cannot fault a page of it
 * in - a call would fail with EFAULT wherever the page is not present or is write-protected
 * on this node. (Sets larger than PT_CPUSET_MAX bytes, from CPU_ALLOC, are passed as they are.) */
#define PT_CPUSET_MAX 1024

/* The thread these calls act on: th itself if it is not one of ours, the calling thread's real
 * thread if th is the caller; 0 for another thread of ours (unsupported). */
static pthread_t real_target(pthread_t th)
{
    struct pt_thread *t = pt_ours(th);
    if (!t) return th;
    return self(t) ? pt_real.self() : 0;
}

int pthread_setaffinity_np(pthread_t th, size_t size, const cpu_set_t *set)
{
    PT_REAL(pthread_setaffinity_np);
    static _Atomic int said;
    pthread_t r = real_target(th);
    if (!r) return unsupported("pthread_setaffinity_np", &said);
    if (size > PT_CPUSET_MAX) return real_fn(r, size, set);
    unsigned char buf[PT_CPUSET_MAX] __attribute__((aligned(8)));
    memcpy(buf, set, size);
    return real_fn(r, size, (const cpu_set_t *)buf);
}

int pthread_getaffinity_np(pthread_t th, size_t size, cpu_set_t *set)
{
    PT_REAL(pthread_getaffinity_np);
    static _Atomic int said;
    pthread_t r = real_target(th);
    if (!r) return unsupported("pthread_getaffinity_np", &said);
    if (size > PT_CPUSET_MAX) return real_fn(r, size, set);
    unsigned char buf[PT_CPUSET_MAX] __attribute__((aligned(8)));
    int rc = real_fn(r, size, (cpu_set_t *)buf);
    if (!rc) memcpy(set, buf, size);
    return rc;
}

int pthread_setschedparam(pthread_t th, int policy, const struct sched_param *param)
{
    PT_REAL(pthread_setschedparam);
    static _Atomic int said;
    pthread_t r = real_target(th);
    if (!r) return unsupported("pthread_setschedparam", &said);
    const struct sched_param p = *param;
    return real_fn(r, policy, &p);
}

int pthread_getschedparam(pthread_t th, int *policy, struct sched_param *param)
{
    PT_REAL(pthread_getschedparam);
    static _Atomic int said;
    pthread_t r = real_target(th);
    if (!r) return unsupported("pthread_getschedparam", &said);
    int pol;
    struct sched_param p;
    int rc = real_fn(r, &pol, &p);
    if (!rc) {
        *policy = pol;
        *param = p;
    }
    return rc;
}

int pthread_setschedprio(pthread_t th, int prio)
{
    PT_REAL(pthread_setschedprio);
    static _Atomic int said;
    struct pt_thread *t = pt_ours(th);
    if (!t) return real_fn(th, prio);
    return self(t) ? real_fn(pt_real.self(), prio) : unsupported("pthread_setschedprio", &said);
}

/* The calling thread's attributes are its real thread's, with the stack it runs on: the one
 * in the global space (a program that looks for its stack's bounds, as garbage collectors
 * and stack-overflow handlers do, finds the right ones). Another thread's: ENOTSUP. */
int pthread_getattr_np(pthread_t th, pthread_attr_t *attr)
{
    PT_REAL(pthread_getattr_np);
    static _Atomic int said;
    struct pt_thread *t = pt_ours(th);
    if (!t) return real_fn(th, attr);
    if (!self(t)) return unsupported("pthread_getattr_np", &said);
    int rc = real_fn(pt_real.self(), attr);
    if (!rc && pt_stack_lo) rc = pthread_attr_setstack(attr, pt_stack_lo, pt_stack_size);
    return rc;
}

/* ---------------------------------------------------------------- starting programs */

/*
 * The kernel reads an exec's arguments and environment itself, and a page of the global
 * space that is not present on this node is not fetched for it: execve fails with EFAULT
 * (dsm/fault.c: the runtime runs in SIGBUS mode). The program's argv, envp and the strings
 * they point to may well be there (a thread's stack, the heap, node 0's `environ`), so each
 * way of starting a program first reads every one of them, which makes them present.
 */
static void touch_str(const char *s)
{
    if (!s || !pt_in_dsm(s)) return;
    while (*(volatile const char *)s) s++;
}

static void touch_vec(char *const *v)
{
    if (!v) return;
    for (; *(char *volatile const *)v; v++) touch_str(*v);
}

/* A page touched above may be taken away again before the kernel reads it (another node
 * writes data that shares the page: under SC its copy here is then invalidated). The start
 * fails with EFAULT and nothing has run, so it is retried, touching again, up to SPAWN_TRIES
 * times. (The spawn test failed so about half of its launches on a busy day.) */
#define SPAWN_TRIES 16

/* SPAWN_PID: libc writes the child's pid with every signal blocked (around its clone), and a
 * fault on the global space is resolved by a SIGBUS handler: blocked, the kernel kills the
 * process instead (node 0 of the spawn test died so, writing into a FILE of popen's in the
 * global heap). So libc gets a pid variable on this frame, present and writable since we run
 * on it, and the caller's is written after, with signals as they were. */
static int spawn(__typeof__(&posix_spawn) real_fn, pid_t *pid, const char *path,
                 const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *at,
                 char *const argv[], char *const envp[])
{
    pid_t mine = 0; /* see SPAWN_PID */
    for (int k = 0;; k++) {
        touch_str(path), touch_vec(argv), touch_vec(envp);
        int rc = real_fn(&mine, path, fa, at, argv, envp);
        if (rc != EFAULT || k == SPAWN_TRIES) {
            if (!rc && pid) *pid = mine;
            return rc;
        }
    }
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    PT_REAL(posix_spawn);
    return spawn(real_fn, pid, path, fa, at, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    PT_REAL(posix_spawnp);
    return spawn(real_fn, pid, file, fa, at, argv, envp);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    PT_REAL(execve);
    for (int k = 0;; k++) {
        touch_str(path), touch_vec(argv), touch_vec(envp);
        real_fn(path, argv, envp); /* returns only on failure */
        if (errno != EFAULT || k == SPAWN_TRIES) return -1;
    }
}

int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

int execvp(const char *file, char *const argv[])
{
    return execvpe(file, argv, environ);
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
    PT_REAL(execvpe);
    for (int k = 0;; k++) {
        touch_str(file), touch_vec(argv), touch_vec(envp);
        real_fn(file, argv, envp);
        if (errno != EFAULT || k == SPAWN_TRIES) return -1;
    }
}

/* libc's system reports a failed start as "exit status 127" with errno set from it; a shell
 * that really exited with 127 leaves errno as it was (0 here). */
int system(const char *command)
{
    PT_REAL(system);
    for (int k = 0;; k++) {
        touch_str(command), touch_vec(environ);
        errno = 0;
        int st = real_fn(command);
        if (!(command && st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 127 && errno == EFAULT) ||
            k == SPAWN_TRIES)
            return st;
    }
}

/* libc's popen reports a failed start as NULL with the start's error; the spawn test also saw
 * ENOMEM there under the same conditions (not traced further), so that is retried too. */
FILE *popen(const char *command, const char *mode)
{
    PT_REAL(popen);
    for (int k = 0;; k++) {
        touch_str(command), touch_vec(environ);
        errno = 0;
        /* libc's popen writes the child's pid into its FILE with every signal blocked (see
         * SPAWN_PID), and its child reads the file actions popen allocated: both from this
         * node's own heap, then (pt_internal), never the global space. The stream is this
         * node's anyway: its pipe exists only in this process. */
        pt_internal++;
        FILE *f = real_fn(command, mode);
        pt_internal--;
        if (f || (errno != EFAULT && errno != ENOMEM) || k == SPAWN_TRIES) return f;
    }
}

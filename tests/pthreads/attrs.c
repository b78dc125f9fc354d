/*
 * attrs.c - the thread attributes pthread_create honours: a stack size, a stack of the
 * program's own (pthread_attr_setstack on memory from malloc: a thread's locals must lie in
 * it), an affinity (the thread must find itself on exactly that CPU), and the detach state.
 * With --min-procs N the threads must have run in at least N processes (nodes). An ordinary
 * pthreads program (no ufdsm). Prints "attrs: ok" or "FAIL ..." (status 1).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NT        4
#define OWN_STACK (512u << 10)

static char *own_stack; /* from malloc: the program's own memory */
static pid_t pids[NT];
static int bad;

struct arg {
    int id;
    int want_cpu; /* -1: any */
    int own;      /* runs on own_stack */
};

static void *thread(void *p)
{
    struct arg *a = p;
    pids[a->id] = getpid(); /* read by main after the join */
    char local[64];
    memset(local, a->id, sizeof local);
    if (a->own && (local < own_stack || local >= own_stack + OWN_STACK))
        return (void *)"a local is not on the stack pthread_attr_setstack gave";
    if (a->want_cpu >= 0) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) || CPU_COUNT(&set) != 1 ||
            !CPU_ISSET(a->want_cpu, &set))
            return (void *)"the affinity pthread_attr_setaffinity_np gave does not hold";
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int min_procs = argc == 3 && !strcmp(argv[1], "--min-procs") ? atoi(argv[2]) : 1;
    if (posix_memalign((void **)&own_stack, 4096, OWN_STACK)) {
        fprintf(stderr, "FAIL: no memory for a stack\n");
        return 1;
    }
    const int cpu = 0; /* every node has a CPU 0 */
    struct arg args[NT] = {{0, -1, 0}, {1, -1, 1}, {2, cpu, 0}, {3, -1, 0}};
    pthread_t t[NT];
    for (int i = 0; i < NT; i++) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        if (i == 0) pthread_attr_setstacksize(&at, 16u << 20);
        if (i == 1) pthread_attr_setstack(&at, own_stack, OWN_STACK);
        if (i == 2) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            pthread_attr_setaffinity_np(&at, sizeof set, &set);
        }
        if (pthread_create(&t[i], &at, thread, &args[i])) {
            fprintf(stderr, "FAIL: pthread_create of thread %d\n", i);
            return 1;
        }
        pthread_attr_destroy(&at);
    }
    for (int i = 0; i < NT; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        if (rv) {
            fprintf(stderr, "FAIL: thread %d: %s\n", i, (const char *)rv);
            bad = 1;
        }
    }
    int procs = 0;
    for (int i = 0; i < NT; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= pids[j] == pids[i];
        procs += !seen;
    }
    if (procs < min_procs) {
        fprintf(stderr, "FAIL: the threads ran in %d process(es), want %d\n", procs, min_procs);
        bad = 1;
    }
    printf("%s\n", bad ? "FAIL: see above" : "attrs: ok");
    return bad;
}

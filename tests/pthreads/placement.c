/*
 * placement.c - where `dsmrun --pthreads` puts a program's threads (DSM_THREAD_PLACEMENT).
 * An ordinary pthreads program (no ufdsm): it creates threads one after the other, each notes
 * getpid() (its node's process), and main compares the pattern with the expected one.
 *
 *   placement EXPECTED            e.g. placement 0,1,0,1   or   placement 0,0,1,1,0,0
 *   placement fill NODES THREADS  the pattern of DSM_THREAD_PLACEMENT=fill with the default
 *                                 DSM_THREADS_PER_NODE (this process's CPUs; every node of
 *                                 the test runs on this host)
 *
 * EXPECTED names the node of thread i (in creation order): node 0 is main's process; the
 * other numbers only say which threads share a process (thread i and j run in the same
 * process exactly when their numbers are equal). Prints "FAIL" and returns 1 when wrong.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_COUNT */
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXT 64

pid_t pids[MAXT];

static void *note(void *a)
{
    pids[(intptr_t)a] = getpid();
    return NULL;
}

int main(int argc, char **argv)
{
    int want[MAXT], n = 0;
    if (argc == 4 && !strcmp(argv[1], "fill")) {
        cpu_set_t set;
        int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        int nodes = atoi(argv[2]);
        n = atoi(argv[3]);
        if (nodes < 1 || n < 1 || n > MAXT) {
            fprintf(stderr, "FAIL: bad arguments: fill NODES THREADS (1 to %d threads)\n", MAXT);
            return 1;
        }
        /* main is thread 0 of node 0: created thread i is the job's thread i + 1 */
        for (int i = 0; i < n; i++) want[i] = ((i + 1) % (nodes * cpus)) / cpus;
        printf("placement: %d CPUs per node\n", cpus);
    } else if (argc == 2) {
        for (char *p = argv[1]; *p && n < MAXT; n++) {
            want[n] = (int)strtol(p, &p, 10);
            if (*p == ',') p++;
        }
    } else {
        fprintf(stderr, "FAIL: usage: placement EXPECTED | placement fill NODES THREADS\n");
        return 1;
    }
    /* One at a time, so the creation order is the order of the numbers. */
    for (intptr_t i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, note, (void *)i) || pthread_join(t, NULL)) {
            fprintf(stderr, "FAIL: pthread_create/join of thread %d\n", (int)i);
            return 1;
        }
    }
    int bad = 0;
    pid_t me = getpid();
    for (int i = 0; i < n; i++) {
        if ((pids[i] == me) != (want[i] == 0)) bad = 1;
        for (int j = 0; j < i; j++)
            if ((pids[i] == pids[j]) != (want[i] == want[j])) bad = 1;
    }
    printf("placement: pids");
    for (int i = 0; i < n; i++) printf(" %s%d", pids[i] == me ? "main:" : "", (int)pids[i]);
    printf("\n%s\n", bad ? "FAIL: the threads are not where the placement puts them" : "ok");
    return bad;
}

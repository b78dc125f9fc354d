/*
 * exit_thread.c - exit() called by a thread ends the whole program with that status, even
 * while main is blocked in pthread_join. An ordinary pthreads program (no ufdsm): under
 * `dsmrun --pthreads` the exiting thread runs on another node than main, so the status must
 * travel to node 0 and every node must end with it.
 *
 *   exit_thread [STATUS]     (default 5; the test expects exactly this status)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int status = 5;
pid_t main_pid;

static void *sleeper(void *a)
{
    (void)a;
    for (;;) pause();
    return NULL;
}

static void *exiter(void *a)
{
    (void)a;
    printf("exit_thread: exiting with %d from pid %d (main's: %d)\n", status, (int)getpid(),
           (int)main_pid);
    fflush(stdout);
    exit(status);
}

int main(int argc, char **argv)
{
    if (argc > 1) status = atoi(argv[1]);
    main_pid = getpid();
    pthread_t a, b;
    /* Round robin: the first thread lands on node 0, the second on node 1. */
    if (pthread_create(&a, NULL, sleeper, NULL) || pthread_create(&b, NULL, exiter, NULL)) {
        fprintf(stderr, "FAIL: pthread_create\n");
        return 1;
    }
    pthread_join(a, NULL); /* never returns: the exiting thread ends the program */
    fprintf(stderr, "FAIL: main's join returned\n");
    return 1;
}

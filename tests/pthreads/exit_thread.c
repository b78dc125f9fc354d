/*
 * exit_thread.c - exit() called by a thread ends the whole program with that status, even
 * while main is blocked in pthread_join. An ordinary pthreads program (no ufdsm): under
 * `dsmrun --pthreads` the exiting thread runs on another node than main, so the status must
 * travel to node 0 and every node must end with it.
 *
 *   exit_thread [STATUS]     (default 5; the test expects exactly this status)
 *
 * main's exit handler (which under dsmrun runs on node 0, once the exiting node has ended the
 * job) must see what the exiting thread wrote just before exit: in a heap block of the
 * exiting node that main has read (so node 0 holds a copy) before, and in a global (homed on
 * node 0). With DSM_PROTOCOL=rc the first takes an acquire by node 0, the second a release by
 * the exiting node. It prints "FAIL" otherwise.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int status = 5;
pid_t main_pid;
/* The handshake: the exiting thread publishes a heap block, main reads it and says so. */
pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
long *block;
int main_read;
long last_global; /* written by the exiting thread just before exit */

static void check_at_exit(void)
{
    long want = status * 1000L + 7;
    if (!block) return; /* main failed before the handshake */
    if (*block != want)
        printf("FAIL: the exit handler sees %ld in the block written before exit, want %ld\n",
               *block, want);
    else if (last_global != want)
        printf("FAIL: the exit handler sees %ld in the global written before exit, want %ld\n",
               last_global, want);
    else
        printf("exit_thread: the exit handler sees the exiting thread's last writes\n");
    fflush(stdout);
}

static int locked_get(int *f)
{
    pthread_mutex_lock(&m);
    int v = *f;
    pthread_mutex_unlock(&m);
    return v;
}

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
    long *b = malloc(sizeof *b);
    *b = 1;
    pthread_mutex_lock(&m);
    block = b;
    pthread_mutex_unlock(&m);
    while (!locked_get(&main_read)) usleep(1000);
    *b = status * 1000L + 7;
    last_global = status * 1000L + 7;
    exit(status);
}

int main(int argc, char **argv)
{
    if (argc > 1) status = atoi(argv[1]);
    main_pid = getpid();
    atexit(check_at_exit);
    pthread_t a, b;
    /* Round robin: the first thread lands on node 0, the second on node 1. */
    if (pthread_create(&a, NULL, sleeper, NULL) || pthread_create(&b, NULL, exiter, NULL)) {
        fprintf(stderr, "FAIL: pthread_create\n");
        return 1;
    }
    for (;;) {
        pthread_mutex_lock(&m);
        long v = block ? *block : 0;
        if (block) main_read = 1;
        pthread_mutex_unlock(&m);
        if (v) break;
        usleep(1000);
    }
    pthread_join(a, NULL); /* never returns: the exiting thread ends the program */
    fprintf(stderr, "FAIL: main's join returned\n");
    return 1;
}

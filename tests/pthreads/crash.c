/*
 * crash.c - a thread that crashes: under `dsmrun --pthreads` the message must name the node
 * and the thread (its job-wide number, its start routine), not only "lost node N". An
 * ordinary pthreads program (no ufdsm).
 *
 *   crash segv|abort
 *
 * main (thread 1, node 0) creates crasher (thread 2: node 1 with round robin), which writes
 * through a null pointer or calls abort(), and a thread that waits (thread 3: node 0), so
 * that the crashing node is not alone.
 * crasher is exported (the test links with ENABLE_EXPORTS) so that the message can name it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mode_abort;
int *volatile nowhere; /* NULL, and the compiler cannot know it */

static void *waiter(void *a)
{
    (void)a;
    for (;;) pause();
    return NULL;
}

void *crasher(void *a)
{
    (void)a;
    if (mode_abort) abort();
    *nowhere = 1;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "segv") && strcmp(argv[1], "abort"))) {
        fprintf(stderr, "FAIL: usage: crash segv|abort\n");
        return 1;
    }
    mode_abort = !strcmp(argv[1], "abort");
    pthread_t w, c;
    if (pthread_create(&c, NULL, crasher, NULL) || pthread_create(&w, NULL, waiter, NULL)) {
        fprintf(stderr, "FAIL: pthread_create\n");
        return 1;
    }
    pthread_join(c, NULL); /* never returns: the crash ends the job */
    fprintf(stderr, "FAIL: the crashing thread was joined\n");
    return 1;
}

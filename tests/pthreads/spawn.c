/*
 * spawn.c - starting other programs from a thread: posix_spawn, system and popen must work
 * from a thread of any node (they run the child on a stack of their own); with the argument
 * "fork", a thread calls fork() and the child _exit()s at once, which natively ends with
 * status 0 and under dsmrun --pthreads dies naming fork() (the child has none of the
 * program's shared memory). An ordinary pthreads program (no ufdsm). Prints "spawn: ok" or
 * "FAIL ..." (status 1); --min-procs N: its threads ran in at least N processes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define NT 2
static pid_t pids[NT];

static void *spawner(void *arg)
{
    int id = (int)(intptr_t)arg;
    pids[id] = getpid(); /* read by main after the join */
    char code[32];
    snprintf(code, sizeof code, "exit %d", 3 + id);
    char *argv[] = {"sh", "-c", code, NULL};
    pid_t c;
    int st;
    if (posix_spawn(&c, "/bin/sh", NULL, NULL, argv, environ) || waitpid(c, &st, 0) != c ||
        !WIFEXITED(st) || WEXITSTATUS(st) != 3 + id)
        return (void *)"posix_spawn of sh -c 'exit N' did not end with N";
    st = system(code);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 3 + id) return (void *)"system did not give N";
    FILE *f = popen("echo spawned", "r");
    char line[32] = "";
    if (!f || !fgets(line, sizeof line, f) || strcmp(line, "spawned\n"))
        return (void *)"popen did not read the child's line";
    pclose(f);
    return NULL;
}

static void *forker(void *arg)
{
    (void)arg;
    pid_t c = fork();
    if (c == 0) _exit(0);
    int st = 0;
    waitpid(c, &st, 0);
    printf("spawn: fork()ed child ended with %s %d\n", WIFEXITED(st) ? "status" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[NT];
    if (argc == 2 && !strcmp(argv[1], "fork")) {
        pthread_create(&t[0], NULL, forker, NULL);
        pthread_join(t[0], NULL);
        return 0;
    }
    int min_procs = argc == 3 && !strcmp(argv[1], "--min-procs") ? atoi(argv[2]) : 1;
    int bad = 0;
    for (intptr_t i = 0; i < NT; i++) pthread_create(&t[i], NULL, spawner, (void *)i);
    for (int i = 0; i < NT; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        if (rv) {
            fprintf(stderr, "FAIL: thread %d: %s\n", i, (const char *)rv);
            bad = 1;
        }
    }
    if (min_procs > 1 && pids[0] == pids[1]) {
        fprintf(stderr, "FAIL: both threads ran in one process, want %d\n", min_procs);
        bad = 1;
    }
    printf("%s\n", bad ? "FAIL: see above" : "spawn: ok");
    return bad;
}

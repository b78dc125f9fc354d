/*
 * heap.c - the heap under churn: each thread keeps up to LIVE blocks of random small and
 * large sizes, made with malloc, calloc, realloc and posix_memalign, fills each with a
 * pattern of its own, checks it before freeing or growing it, and hands every fourth block
 * to the next thread through a mailbox, which checks and frees it (a block of another node,
 * under dsmrun --pthreads). Two live blocks that overlap, a block handed out twice, a
 * calloc block that is not zero or a realloc that loses bytes breaks a pattern. With
 * --min-procs N the workers must have run in at least N processes (nodes). An ordinary
 * pthreads program (no ufdsm). Prints "heap: ok" or "FAIL ..." (status 1).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NT     4
#define LIVE   48
#define ROUNDS 3000

struct blk {
    unsigned char *p;
    size_t n;
    unsigned char tag;
};

static pthread_mutex_t box_m[NT];
static struct blk box[NT][LIVE]; /* box[i]: blocks handed to thread i */
static int box_n[NT];
static int bad;
static pid_t pids[NT];

static void fail(const char *what, long a)
{
    fprintf(stderr, "FAIL: %s (%ld)\n", what, a);
    __atomic_store_n(&bad, 1, __ATOMIC_SEQ_CST);
}

static void fill(struct blk *b)
{
    for (size_t i = 0; i < b->n; i++) b->p[i] = (unsigned char)(b->tag + i * 7);
}

static void check(const struct blk *b, const char *what)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] != (unsigned char)(b->tag + i * 7)) {
            fail(what, (long)i);
            return;
        }
}

static size_t pick(unsigned *s)
{
    unsigned r = rand_r(s);
    return r % 8 ? 1 + r % 1024 : 1025 + r % 20000; /* mostly small: the cached classes */
}

static void take_mail(int me)
{
    pthread_mutex_lock(&box_m[me]);
    for (int i = 0; i < box_n[me]; i++) {
        check(&box[me][i], "a block handed over by another thread");
        free(box[me][i].p);
    }
    box_n[me] = 0;
    pthread_mutex_unlock(&box_m[me]);
}

static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    pids[me] = getpid(); /* read by main after the join */
    unsigned seed = 12345u + (unsigned)me;
    struct blk live[LIVE] = {{0}};
    for (int r = 0; r < ROUNDS && !__atomic_load_n(&bad, __ATOMIC_SEQ_CST); r++) {
        struct blk *b = &live[rand_r(&seed) % LIVE];
        if (b->p) {
            check(b, "a live block");
            int op = rand_r(&seed) % 4;
            if (op == 0) { /* grow or shrink it */
                size_t n = pick(&seed);
                unsigned char *q = realloc(b->p, n);
                if (!q) fail("realloc", (long)n);
                b->p = q;
                if (n < b->n) b->n = n;
                check(b, "realloc kept the bytes");
                b->n = n;
                fill(b);
                continue;
            }
            if (op == 1) { /* to the next thread */
                int to = (me + 1) % NT;
                pthread_mutex_lock(&box_m[to]);
                if (box_n[to] < LIVE) {
                    box[to][box_n[to]++] = *b;
                    b->p = NULL;
                }
                pthread_mutex_unlock(&box_m[to]);
                if (!b->p) continue;
            }
            free(b->p);
            b->p = NULL;
            continue;
        }
        b->n = pick(&seed);
        b->tag = (unsigned char)(me * 61 + r);
        int how = rand_r(&seed) % 3;
        if (how == 0) {
            b->p = calloc(1, b->n);
            for (size_t i = 0; b->p && i < b->n; i++)
                if (b->p[i]) {
                    fail("calloc gave a block that is not zero", (long)i);
                    break;
                }
        } else if (how == 1) {
            void *q = NULL;
            b->p = posix_memalign(&q, 64, b->n) ? NULL : q;
            if (b->p && (uintptr_t)b->p % 64) fail("posix_memalign(64) alignment", 0);
        } else {
            b->p = malloc(b->n);
        }
        if (!b->p) fail("allocation", (long)b->n);
        fill(b);
        if (r % 64 == 0) take_mail(me);
    }
    for (int i = 0; i < LIVE; i++)
        if (live[i].p) {
            check(&live[i], "a live block at the end");
            free(live[i].p);
        }
    return NULL;
}

/* Short-lived threads that each free what they allocated: their kept blocks go back. */
static void *brief(void *arg)
{
    (void)arg;
    void *p[100];
    for (int i = 0; i < 100; i++) p[i] = malloc(16 + i % 200);
    for (int i = 0; i < 100; i++) free(p[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    int min_procs = argc == 3 && !strcmp(argv[1], "--min-procs") ? atoi(argv[2]) : 1;
    pthread_t t[NT];
    for (int i = 0; i < NT; i++) pthread_mutex_init(&box_m[i], NULL);
    for (intptr_t i = 0; i < NT; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < NT; i++) pthread_join(t[i], NULL);
    int procs = 0;
    for (int i = 0; i < NT; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= pids[j] == pids[i];
        procs += !seen;
    }
    if (procs < min_procs) fail("processes the workers ran in", procs);
    for (int i = 0; i < NT; i++) take_mail(i);
    for (int k = 0; k < 40; k++) {
        pthread_t b;
        pthread_create(&b, NULL, brief, NULL);
        pthread_join(b, NULL);
    }
    printf("%s\n", bad ? "FAIL: see above" : "heap: ok");
    return bad;
}

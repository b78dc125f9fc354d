/*
 * victim.c - the program node_killed.sh runs: all nodes busy in barriers and page faults when
 * one of them dies.
 *
 * Every node loops until node 0 says MN_VICTIM_SECONDS (default 60) seconds have passed:
 * writes its word on a shared page, reads the next node's word on another page (page faults
 * every time, since the pages keep moving), and enters a barrier, twice per iteration. Node
 * MN_VICTIM (default 1) starts a thread that SIGKILLs the whole process after MN_VICTIM_KILL_MS
 * milliseconds (default 1000): no goodbye, no flushed sockets - what a crashed machine or an OOM
 * kill looks like to the others. The survivors are then inside a barrier or waiting for a page or a
 * reply from the dead node; the runtime must notice the loss, say so naming the node, and end the
 * job rather than hang. If the loop runs to the end (nobody was killed), every node exits 0.
 *
 * What a broken DSM does to it: survivors that wait forever in a barrier or a fault (the
 * script's time bound), exit silently, or exit 0 as if nothing had happened.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "mn.h"

static long kill_ms = 1000;
static int stop_instead; /* MN_VICTIM_SIGNAL=STOP: freeze (SIGSTOP) rather than die */

static void *killer(void *arg)
{
    (void)arg;
    usleep((useconds_t)kill_ms * 1000);
    char msg[96];
    int len = snprintf(msg, sizeof msg, "victim: node %d %s now\n", mn_rank,
                       stop_instead ? "stops itself with SIGSTOP" : "kills itself with SIGKILL");
    ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
    (void)w;
    kill(getpid(), stop_instead ? SIGSTOP : SIGKILL);
    return NULL;
}

static long env_long(const char *name, long def)
{
    const char *s = getenv(name);
    return s && *s ? mn_parse_long(name, s, 0, 100000000L) : def;
}

int main(void)
{
    mn_begin(2);
    const int n = mn_nodes, me = mn_rank;
    kill_ms = env_long("MN_VICTIM_KILL_MS", 1000);
    const char *sig = getenv("MN_VICTIM_SIGNAL");
    stop_instead = sig && !strcmp(sig, "STOP");
    const long compute_ms = env_long("MN_VICTIM_COMPUTE_MS", 0);
    const long victim = env_long("MN_VICTIM", 1), seconds = env_long("MN_VICTIM_SECONDS", 60);
    uint64_t *a = MN_ALLOC_PLACED(2 * MN_PAGE, DSM_PLACE_CYCLIC, MN_PAGE);
    uint64_t *b = a + MN_PAGE / 8;
    dsm_barrier();
    if (compute_ms) {
        /* A long compute phase: no DSM call, no shared access, on every node. Nobody may
         * mistake that for a dead node. */
        double end = mn_now() + (double)compute_ms / 1000;
        volatile uint64_t x = 0;
        while (mn_now() < end) x = x * 6364136223846793005ull + 1;
        dsm_barrier();
        mn_say("computed %ld ms without DSM traffic and was not declared dead", compute_ms);
        mn_end("victim");
        return 0;
    }
    if (me == victim) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, killer, NULL) == 0, "pthread_create");
        pthread_detach(th);
    }
    volatile uint64_t *stop = a + 256; /* written by node 0 only, read after a barrier */
    double t0 = mn_now();
    uint64_t it;
    for (it = 1; !*stop; it++) {
        a[me] = it;
        CHECK(b[(me + 1) % n] == it - 1, "iteration %llu: node %d's word reads %llu",
              (unsigned long long)it, (me + 1) % n, (unsigned long long)b[(me + 1) % n]);
        dsm_barrier();
        b[me] = it;
        CHECK(a[(me + 1) % n] == it, "iteration %llu: node %d's word reads %llu",
              (unsigned long long)it, (me + 1) % n, (unsigned long long)a[(me + 1) % n]);
        if (me == 0 && mn_now() - t0 >= seconds) *stop = 1;
        dsm_barrier();
    }
    mn_say("ran to the end (%llu iterations) without losing a node", (unsigned long long)it);
    mn_end("victim");
    return 0;
}

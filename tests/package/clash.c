/*
 * clash.c - a program may use any name that include/dsm.h does not declare.
 *
 * libufdsm.so exports only its API and the libc calls it interposes (dsm/libufdsm.map). If it
 * exported its internals, the dynamic linker would bind the library's own references to the
 * program's definitions of the same names: the library's state `g` would live in this
 * program's `g`, and its internal calls to dsm_log and dsm_send would land in this program's
 * functions of those names. This program defines exactly those names (plus `cfg` and `state`,
 * the next ones an internal global is likely to be called) with other types and signatures,
 * then runs a small real job: a lock-protected counter every node increments, checked after a
 * barrier.
 *
 * What a leaking library does to it (each of g, dsm_log and dsm_send alone fails it against
 * the library before dsm/libufdsm.map): the library's first log line or protocol message
 * runs this program's dsm_log/dsm_send, which fail at once when not called by the program;
 * dsm_init reads this program's g, filled with a pattern, as its own state ("dsm_init called
 * twice") or writes into it (the pattern check after every step names the byte). Either way
 * the program exits non-zero.
 *
 * Usage: dsmrun -n N clash [ITERS]   (ITERS = locked increments per node, default 2000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dsm.h>

/* Names the library uses internally, defined here with other types. Large enough that a
 * library writing its state into them writes inside them (a clean failure of the pattern
 * check below, not a random overwrite). */
struct program_g {
    unsigned char bytes[1 << 16];
};
struct program_g g;

struct program_cfg {
    long iters;
    unsigned char fill;
};
struct program_cfg cfg = {.iters = 2000, .fill = 0xa5};

struct program_state {
    long log_calls, send_calls;         /* calls to the functions below */
    long own_log_calls, own_send_calls; /* ... that this program made */
};
struct program_state state;

static int rank = -1;
/* Set around this program's own calls of dsm_log/dsm_send: any other call came from the
 * library (on any of its threads). */
static _Thread_local int own_call;

/* Straight to the kernel: write(2) is one of the calls the library interposes, and a library
 * that reads this program's g as its state cannot be trusted to forward it. */
static void fail(const char *what)
{
    char buf[600];
    int n = snprintf(buf, sizeof buf,
                     "node %d: FAILED: %s. libufdsm.so exports internal names that a program "
                     "may use for its own: it must export only include/dsm.h and the "
                     "interposed libc calls (dsm/libufdsm.map)\n",
                     rank, what);
    if (n > 0) syscall(SYS_write, 2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    _exit(1);
}

/* Same names as the library's internal logger and message sender, other signatures. A call
 * from the library (int level, const char *fmt, ... / int dst, header, payload) fails at once
 * instead of swallowing a log line or a protocol message (which would hang the job). */
long dsm_log(const char *tag, double value);
long dsm_log(const char *tag, double value)
{
    (void)tag;
    (void)value;
    if (!own_call) fail("the library called this program's dsm_log");
    return ++state.log_calls;
}

int dsm_send(long a, long b, long c, long d);
int dsm_send(long a, long b, long c, long d)
{
    (void)a, (void)b, (void)c, (void)d;
    if (!own_call) fail("the library called this program's dsm_send");
    return (int)++state.send_calls;
}

static void check_g(const char *when)
{
    if (cfg.fill != 0xa5) fail("this program's global cfg changed");
    for (size_t i = 0; i < sizeof g.bytes; i++)
        if (g.bytes[i] != cfg.fill) {
            char msg[200];
            snprintf(msg, sizeof msg, "this program's global g changed %s (byte %zu is 0x%02x)",
                     when, i, g.bytes[i]);
            fail(msg);
        }
}

static void check_state(const char *when)
{
    if (state.log_calls != state.own_log_calls || state.send_calls != state.own_send_calls) {
        char msg[240];
        snprintf(msg, sizeof msg,
                 "this program's global state changed %s (it counts %ld dsm_log and %ld "
                 "dsm_send calls, the program made %ld and %ld)",
                 when, state.log_calls, state.send_calls, state.own_log_calls,
                 state.own_send_calls);
        fail(msg);
    }
}

/* The program's own uses of its names: they must reach its own definitions. */
static void use_own_names(void)
{
    own_call = 1;
    state.own_log_calls++;
    if (dsm_log("step", 1.0) != state.own_log_calls) fail("dsm_log returned a foreign count");
    state.own_send_calls++;
    if (dsm_send(1, 2, 3, 4) != state.own_send_calls) fail("dsm_send returned a foreign count");
    own_call = 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 2 || (argc == 2 && (cfg.iters = strtol(argv[1], NULL, 10)) <= 0)) {
        fprintf(stderr, "usage: %s [ITERS]   (ITERS: a positive count of increments per node)\n",
                argv[0]);
        return 2;
    }
    const char *r = getenv("DSM_RANK"); /* names the node in failures before dsm_init */
    if (r) rank = atoi(r);
    memset(g.bytes, cfg.fill, sizeof g.bytes);
    use_own_names();

    int rc = dsm_init(NULL);
    if (rc != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "dsm_init: %s (error %d)%s", dsm_strerror(rc), rc,
                 getenv("DSM_RANK") ? "" : "; DSM_RANK is not set: start it with dsmrun");
        fail(msg);
    }
    rank = dsm_rank();
    int nodes = dsm_nodes();
    check_g("during dsm_init");
    check_state("during dsm_init");

    long *counter = dsm_alloc(sizeof *counter);
    dsm_mutex_t *m = dsm_alloc(sizeof *m);
    if (!counter || !m) fail("dsm_alloc returned NULL");
    if (rank == 0) dsm_mutex_init(m);
    dsm_barrier();
    for (long i = 0; i < cfg.iters; i++) {
        dsm_mutex_lock(m);
        long v = *counter;
        *counter = v + 1;
        dsm_mutex_unlock(m);
    }
    use_own_names();
    dsm_barrier();
    long want = cfg.iters * nodes;
    if (*counter != want) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the counter is %ld after %ld locked increments on each of %d nodes, "
                 "expected %ld",
                 *counter, cfg.iters, nodes, want);
        fail(msg);
    }
    check_g("during the job");
    check_state("during the job");
    if (rank == 0)
        printf("clash: counter %ld = %d nodes x %ld; g, cfg, state, dsm_log, dsm_send kept "
               "apart\n",
               *counter, nodes, cfg.iters);
    dsm_barrier();
    dsm_finalize();
    check_g("during dsm_finalize");
    check_state("during dsm_finalize");
    return 0;
}

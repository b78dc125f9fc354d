/*
 * env_vars.h - every DSM_* environment variable the runtime reads, with its default and
 * meaning: the one list that env.c checks the environment against (a DSM_* name not in it
 * draws a "did you mean" warning) and that `dsmrun --help` prints. A variable read anywhere
 * in the library (env.c, trace.c, ...) must be listed here, or setting it would be reported
 * as a misspelling.
 *
 * Header only (data and one pure helper): tools/dsmrun.c includes it too, without linking the
 * runtime, for its --help and for its own DSMRUN_* variables' spelling check.
 */
#ifndef DSM_ENV_VARS_H
#define DSM_ENV_VARS_H

/* Defaults that env.c applies; the table shows the same macros as text. */
#define DSM_DEFAULT_MEMORY "4G"
/* 32 TiB: below where Linux puts a PIE executable and its heap (~0x555555554000 + ASLR, i.e.
 * 85 TiB) and far below the libraries and stacks (top-down from ~0x7fxxxxxxxxxx), so that
 * [base, base + 16 TiB) - the largest DSM_MEMORY - is free in a normal process. The old
 * 0x500000000000 (80 TiB) ran into the executable from about 6 TiB on. */
#define DSM_DEFAULT_BASE            0x200000000000
#define DSM_DEFAULT_PORT            7400 /* first coordinator port; see DSM_PORT_SPAN */
#define DSM_PORT_SPAN               1024 /* per-job ports: DSM_DEFAULT_PORT + (job key % span) */
#define DSM_DEFAULT_CONNECT_TIMEOUT 30000
#define DSM_DEFAULT_PEER_TIMEOUT    10000
#define DSM_DEFAULT_SPIN_US         1000
#define DSM_DEFAULT_HOLD_US         20
#define DSM_DEFAULT_PREFETCH        8

#define DSM_ENV_STR_(x) #x
#define DSM_ENV_STR(x)  DSM_ENV_STR_(x)

struct dsm_env_var {
    const char *name;
    const char *def;     /* the default, as a user would write it */
    const char *meaning; /* one line */
};

static const struct dsm_env_var dsm_env_vars[] = {
    {"DSM_RANK", "from the launcher", "this node's number, 0..DSM_NODES-1"},
    {"DSM_NODES", "from the launcher, else 1", "how many nodes the job has"},
    {"DSM_COORDINATOR", "from the launcher, else 127.0.0.1, port per job",
     "host:port where node 0 listens for the others at startup"},
    {"DSM_JOB", "from the launcher, else default",
     "job identifier; nodes of different jobs refuse to connect"},
    {"DSM_MEMORY", DSM_DEFAULT_MEMORY, "size of the global space (4G, 512M, bytes)"},
    {"DSM_BASE", DSM_ENV_STR(DSM_DEFAULT_BASE), "hex address of the global space"},
    {"DSM_TRANSPORT", "auto", "tcp, rdma or auto (RDMA when every node can use it)"},
    {"DSM_STATS", "0", "1: print this node's counters at dsm_finalize"},
    {"DSM_LOG", "warn", "error, warn, info or debug"},
    {"DSM_CONNECT_TIMEOUT", DSM_ENV_STR(DSM_DEFAULT_CONNECT_TIMEOUT),
     "milliseconds to wait for peers at startup"},
    {"DSM_PEER_TIMEOUT", DSM_ENV_STR(DSM_DEFAULT_PEER_TIMEOUT),
     "milliseconds without a word from a node before it is declared dead"},
    {"DSM_SECRET", "from dsmrun, else none",
     "the job's secret (16+ characters) every node must prove; see docs/security.md"},
    {"DSM_SECRET_FILE", "none", "file holding the job's secret (mode 600), instead of DSM_SECRET"},
    {"DSM_SPIN_US", DSM_ENV_STR(DSM_DEFAULT_SPIN_US),
     "microseconds a waiting thread polls before it sleeps"},
    {"DSM_HOLD_US", DSM_ENV_STR(DSM_DEFAULT_HOLD_US),
     "microseconds a granted page stays before a recall is honoured"},
    {"DSM_PREFETCH", DSM_ENV_STR(DSM_DEFAULT_PREFETCH),
     "most pages read ahead of sequential read misses; 0: off"},
    {"DSM_PROTOCOL", "sc",
     "protocol of dsm_alloc, dsm_malloc and unflagged dsm_alloc_placed: sc or rc"},
    {"DSM_CACHE", "a quarter of the cgroup limit or MemAvailable",
     "most memory for copies of pages homed elsewhere (256M, 1G, bytes)"},
    {"DSM_HOME_STORE", "auto",
     "one: the pages a node homes are held once (Linux 6.4+); two: twice; auto: one if possible"},
    {"DSM_ONESIDED", "auto",
     "auto: RC pages homed by a node on this host are read from its memory, no message; off"},
    {"DSM_PTHREADS", "(dsmrun --pthreads: the program's name)",
     "--pthreads: the program the preload makes a node of; other processes stay plain"},
    {"DSM_THREAD_PLACEMENT", "rr",
     "--pthreads: where threads go: rr (round robin), fill or block:K (node by node)"},
    {"DSM_THREADS_PER_NODE", "the node's CPUs",
     "--pthreads, DSM_THREAD_PLACEMENT=fill: threads each node takes before the next"},
    {"DSM_TRACE", "off", "path: record coherence events into PATH.<rank> (%r: the rank)"},
};
#define DSM_ENV_VAR_COUNT (sizeof dsm_env_vars / sizeof dsm_env_vars[0])

/* Optimal-string-alignment distance between a and b (insertions, deletions, substitutions
 * and swaps of two neighbours each cost 1), so that DSM_MEMROY is 1 away from DSM_MEMORY.
 * Names longer than 63 characters are compared on their first 63. */
static inline int dsm_env_distance(const char *a, const char *b)
{
    enum { N = 64 };
    int la = 0, lb = 0;
    while (a[la] && la < N - 1) la++;
    while (b[lb] && lb < N - 1) lb++;
    static _Thread_local int d[N][N];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++) {
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

/* The name in names[0..n) closest to `name`, or NULL when none is close enough to be a likely
 * misspelling (more than a third of the name would have to change). */
static inline const char *dsm_env_closest(const char *name, const char *const *names, int n)
{
    const char *best = NULL;
    int bestd = 1 << 30, len = 0;
    while (name[len]) len++;
    for (int i = 0; i < n; i++) {
        int dist = dsm_env_distance(name, names[i]);
        if (dist < bestd) {
            bestd = dist;
            best = names[i];
        }
    }
    return bestd <= (len < 9 ? 3 : len / 3) ? best : NULL;
}

#endif /* DSM_ENV_VARS_H */

/*
 * env.c - where the runtime's configuration comes from: dsm_options_t, else the environment
 * (DSM_* variables, or what the launcher that started this process set), else defaults. Every
 * bad value is rejected with a message naming the variable, the value and what is expected.
 *
 * Rank, size, coordinator and job come from the launcher that actually started this process.
 * Launchers nest: mpirun run inside a Slurm allocation passes the allocation's SLURM_PROCID=0
 * and SLURM_NTASKS on to every rank it starts, so reading Slurm first would make every rank
 * node 0. The variables of the innermost launcher - the one that sets a per-process rank for
 * this very process - win: DSM_RANK (dsmrun, or set by hand), then Open MPI's
 * OMPI_COMM_WORLD_*, then PMI (MPICH's hydra, srun --mpi=pmi2), then PMIx, then Slurm's own.
 * docs/launching.md is the user's account of these rules; DSM_LOG=info prints, once, where
 * each value came from.
 *
 * The coordinator's port is chosen per job (DSM_DEFAULT_PORT plus the job's id modulo
 * DSM_PORT_SPAN), so that two jobs sharing their first host do not both try to listen on one
 * port. Sequential ids (Slurm's) map to distinct ports, which is what concurrent jobs on one
 * host usually have.
 *
 * Messages printed here carry the rank once it is known and say "before rank is known" until
 * then: a configuration error must not claim to come from node 0 on every node.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "env_vars.h"
#include "internal.h"

extern char **environ;

/* The size of dsm_options_t before `cache` was appended: what binaries built against that
 * header pass (through the unsized dsm_options_init and dsm_init). */
#define OPTIONS_V1_SIZE offsetof(dsm_options_t, cache)

#undef dsm_options_init
void dsm_options_init_sized(dsm_options_t *o, size_t size)
{
    dsm_options_t d = {.rank = -1, .stats = -1, .log_level = -1};
    memcpy(o, &d, size < sizeof d ? size : sizeof d);
}

void dsm_options_init(dsm_options_t *o)
{
    dsm_options_init_sized(o, OPTIONS_V1_SIZE);
}

void dsm_options_widen(dsm_options_t *full, const dsm_options_t *opts, size_t size)
{
    dsm_options_init_sized(full, sizeof *full);
    if (opts) memcpy(full, opts, size < sizeof *full ? size : sizeof *full);
}

/* ---------------------------------------------------------------- the default cache size */

/* The memory limit of this process's memory cgroup, 0 if none (or unlimited). v1: the
 * memory controller's line of /proc/self/cgroup; v2: the unified line. */
static uint64_t cgroup_limit(char *where, size_t wlen)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[512], path[512];
    uint64_t limit = 0;
    while (!limit && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctl = c1 + 1, *cg = c2 + 1;
        int v1 = !strcmp(ctl, "memory") || strstr(ctl, "memory,") || strstr(ctl, ",memory");
        int v2 = !strcmp(line, "0") && !*ctl;
        if (!v1 && !v2) continue;
        snprintf(path, sizeof path, "/sys/fs/cgroup%s%s/%s", v1 ? "/memory" : "", cg,
                 v1 ? "memory.limit_in_bytes" : "memory.max");
        FILE *g = fopen(path, "r");
        if (!g) continue;
        unsigned long long v;
        if (fscanf(g, "%llu", &v) == 1 && v < (1ull << 60)) { /* v1 "unlimited" is ~2^63 */
            limit = v;
            snprintf(where, wlen, "%s", path);
        }
        fclose(g);
    }
    fclose(f);
    return limit;
}

static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb << 10;
}

/* A quarter of the memory this process may use: its cgroup's limit if it has one, else what
 * the machine has available now. The rest is for the pages the node homes (once, or twice on
 * kernels before 6.4: region.c) and the program's own memory. At least 1 MiB. */
static uint64_t default_cache(char *why, size_t wlen)
{
    char where[600] = "";
    uint64_t lim = cgroup_limit(where, sizeof where);
    if (lim) {
        snprintf(why, wlen, "a quarter of the cgroup limit %llu MiB (%s)",
                 (unsigned long long)(lim >> 20), where);
    } else {
        lim = mem_available();
        snprintf(why, wlen, "a quarter of MemAvailable %llu MiB", (unsigned long long)(lim >> 20));
    }
    uint64_t c = lim / 4;
    if (c < (1u << 20)) c = 1u << 20;
    return c;
}

uint64_t dsm_mem_limit(void)
{
    char where[600];
    uint64_t lim = cgroup_limit(where, sizeof where);
    return lim ? lim : mem_available();
}

int dsm_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-') return -1;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 0:
        break;
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case 'T':
        shift = 40;
        break;
    default:
        return -1;
    }
    if (*end && end[1] && !(toupper((unsigned char)end[1]) == 'B' && !end[2])) {
        if (!(toupper((unsigned char)end[1]) == 'I' && toupper((unsigned char)end[2]) == 'B' &&
              !end[3]))
            return -1;
    }
    if (shift && v > (~0ull >> shift)) return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* ---------------------------------------------------------------- messages */

/* The rank these messages name; -1 until it is known. */
static int msg_rank = -1;

/* Like dsm_log (one write(2) per line, same level filter), but labelled with the rank found
 * so far: log.c labels lines with dsm_log_rank, which dsm_init sets only after this file is done.
 */
static void __attribute__((format(printf, 2, 3))) cfg_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > dsm_log_level) return;
    char buf[1536];
    int n = msg_rank >= 0
                ? snprintf(buf, sizeof buf, "ufdsm[node %d] %s: ", msg_rank, names[level])
                : snprintf(buf, sizeof buf, "ufdsm[before rank is known] %s: ", names[level]);
    if (n < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}
#define CERR(...)  cfg_log(LOG_ERROR, __VA_ARGS__)
#define CWARN(...) cfg_log(LOG_WARN, __VA_ARGS__)

static int parse_int(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        CERR("%s='%s' is not valid: expected a whole number from %ld to %ld", name, s, lo, hi);
        return DSM_EINVAL;
    }
    *out = v;
    return DSM_OK;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* ---------------------------------------------------------------- launchers */

enum launcher { L_NONE, L_DSMRUN, L_HAND, L_OMPI, L_PMI, L_PMIX, L_SLURM };

/* What fits each launcher when a node's identity or the coordinator port must change. */
static const struct {
    const char *name;
    const char *start;     /* how to start N nodes with it */
    const char *port_hint; /* how to move the coordinator to another port */
} launchers[] = {
    [L_NONE] = {"none", "start the program with dsmrun -n N (or under srun or mpirun)",
                "set DSM_COORDINATOR=host:port with another port"},
    [L_DSMRUN] = {"dsmrun", "start every node with one dsmrun",
                  "give dsmrun another --port (or leave --port out: it picks one per job)"},
    [L_HAND] = {"by hand", "give every process the same DSM_NODES and its own DSM_RANK",
                "set DSM_COORDINATOR=host:port with another port on every node"},
    [L_OMPI] = {"mpirun (Open MPI)", "start every node with one mpirun -n N",
                "pass another port with mpirun -x DSM_COORDINATOR=host:port"},
    [L_PMI] = {"a PMI launcher (mpiexec)", "start every node with one mpiexec -n N",
               "pass another port in DSM_COORDINATOR=host:port (mpiexec -genv)"},
    [L_PMIX] = {"a PMIx launcher", "start every node with one launch of N processes",
                "pass another port in DSM_COORDINATOR=host:port"},
    [L_SLURM] = {"srun (Slurm)", "start every node with one srun -n N",
                 "set DSM_COORDINATOR=host:port with another port for this step"},
};

/* Whether Slurm's variables describe this process: srun sets SLURM_STEP_ID and a
 * SLURM_PROCID equal to the rank that PMI/PMIx (if any) give. */
static int slurm_agrees(const char *rank)
{
    const char *p = env("SLURM_PROCID");
    return p && (env("SLURM_STEP_ID") || env("SLURM_STEPID")) && !strcmp(p, rank);
}

static const char *slurm_size_var(void)
{
    static const char *const names[] = {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (env(names[i])) return names[i];
    return NULL;
}

/* The launcher whose per-process rank describes this process, and the variables naming its
 * rank and size (size NULL: the launcher does not export one). */
static enum launcher detect(const char **rank_var, const char **size_var)
{
    *rank_var = *size_var = NULL;
    if (env("OMPI_COMM_WORLD_RANK")) {
        *rank_var = "OMPI_COMM_WORLD_RANK";
        *size_var = env("OMPI_COMM_WORLD_SIZE") ? "OMPI_COMM_WORLD_SIZE" : NULL;
        return L_OMPI;
    }
    if (env("PMI_RANK")) {
        *rank_var = "PMI_RANK";
        *size_var = env("PMI_SIZE") ? "PMI_SIZE" : NULL;
        if (slurm_agrees(env("PMI_RANK"))) return L_SLURM; /* srun --mpi=pmi2 */
        return L_PMI;
    }
    if (env("PMIX_RANK")) {
        *rank_var = "PMIX_RANK";
        if (slurm_agrees(env("PMIX_RANK"))) { /* srun --mpi=pmix: PMIx exports no size */
            *size_var = slurm_size_var();
            return L_SLURM;
        }
        return L_PMIX;
    }
    if (env("SLURM_PROCID")) {
        *rank_var = "SLURM_PROCID";
        *size_var = slurm_size_var();
        return L_SLURM;
    }
    return L_NONE;
}

/* ---------------------------------------------------------------- coordinator and job */

/* Slurm host list: the first host of "host", "h1,h2", "prefix[01-04,07]suffix" and of
 * several bracket groups ("r[1-2]n[3-4]" -> "r1n3"). */
static int slurm_first_host(const char *nl, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; nl[i] && nl[i] != ','; i++) {
        if (nl[i] == '[') {
            i++;
            while (nl[i] && nl[i] != '-' && nl[i] != ',' && nl[i] != ']') {
                if (o + 1 < len) out[o++] = nl[i];
                i++;
            }
            while (nl[i] && nl[i] != ']') i++;
            if (!nl[i]) break;
            continue;
        }
        if (o + 1 < len) out[o++] = nl[i];
    }
    out[o] = 0;
    return o ? 0 : -1;
}

/* Open MPI 4 (ORTE): OMPI_MCA_orte_hnp_uri is "JOBID.VPID;tcp://ADDR,ADDR:PORT" or
 * "...;tcp6://[ADDR,ADDR]:PORT", the addresses of the host mpirun runs on. The first one. */
static int ompi_hnp_host(const char *uri, char *out, size_t len)
{
    const char *p = strstr(uri, "tcp://");
    size_t n;
    if (p) {
        p += 6;
        n = strcspn(p, ",:;");
    } else if ((p = strstr(uri, "tcp6://["))) {
        p += 8;
        n = strcspn(p, ",]");
    } else {
        return -1;
    }
    if (n == 0 || n + 1 > len) return -1;
    memcpy(out, p, n);
    out[n] = 0;
    return 0;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Whether `addr` (numeric) is an address of one of this host's interfaces. -1: cannot tell. */
static int is_local_address(const char *addr)
{
    unsigned char want[16];
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, addr, want) != 1) return -1;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs)) return -1;
    int found = 0;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != fam) continue;
        if (fam == AF_INET)
            found = !memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr, want, 4);
        else
            found = !memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, want, 16);
    }
    freeifaddrs(ifs);
    return found;
}

struct origin {
    char rank[96], nodes[96], coord[256], job[96];
};

/* The coordinator address when DSM_COORDINATOR is not given: a host the launcher names and a
 * port from the job's id. Fills o->coord. DSM_OK or DSM_EINVAL (reported). */
static int derive_coordinator(struct dsm_cfg *cfg, enum launcher l, struct origin *o)
{
    char host[100] = "127.0.0.1";
    const char *host_from = "the default: no launcher names a host";
    int host_check = 0; /* 1: Slurm node name, 2: an address of this host, for rank 0 */
    const char *v;
    if (l == L_OMPI && (v = env("OMPI_MCA_orte_hnp_uri")) && !ompi_hnp_host(v, host, sizeof host)) {
        host_from = "mpirun's host (first address in OMPI_MCA_orte_hnp_uri)";
        host_check = 2;
    } else if ((l == L_OMPI || l == L_SLURM || l == L_PMI || l == L_PMIX) &&
               (((v = env("SLURM_STEP_NODELIST")) && l == L_SLURM) ||
                (v = env("SLURM_JOB_NODELIST")) || (v = env("SLURM_NODELIST"))) &&
               !slurm_first_host(v, host, sizeof host)) {
        host_from = l == L_SLURM && env("SLURM_STEP_NODELIST") ? "the first host of the Slurm step"
                                                               : "the first host of the Slurm job";
        host_check = 1;
    } else {
        strcpy(host, "127.0.0.1");
    }

    /* The port: from the job's id, else the base port. */
    char port_from[160] = "the default port: no job id to derive one from";
    uint64_t key = 0;
    int have_key = 0;
    const char *job, *step;
    if (l == L_OMPI && (v = env("OMPI_MCA_ess_base_jobid"))) {
        /* ORTE job ids: the upper 16 bits tell mpirun invocations apart (a hash of the host
         * and mpirun's pid), the lower 16 number the jobs of one mpirun. */
        uint64_t id = strtoull(v, NULL, 10);
        key = (id >> 16) * 16 + (id & 0xffff) % 16;
        have_key = 1;
        snprintf(port_from, sizeof port_from, "port from Open MPI job %s", v);
    } else if (l == L_SLURM && ((job = env("SLURM_JOB_ID")) || (job = env("SLURM_JOBID")))) {
        step = env("SLURM_STEP_ID");
        if (!step) step = env("SLURM_STEPID");
        /* Job ids are sequential: job * 16 + step keeps concurrent jobs and steps apart. */
        key = strtoull(job, NULL, 10) * 16 + (step ? strtoull(step, NULL, 10) % 16 : 0);
        have_key = 1;
        snprintf(port_from, sizeof port_from, "port from Slurm job %s step %s", job,
                 step ? step : "(none)");
    } else if ((l == L_PMIX || l == L_OMPI) && (v = env("PMIX_NAMESPACE"))) {
        key = fnv1a(v);
        have_key = 1;
        snprintf(port_from, sizeof port_from, "port from PMIx namespace %s", v);
    } else if (l == L_PMI && (v = env("PMI_JOBID"))) {
        key = fnv1a(v);
        have_key = 1;
        snprintf(port_from, sizeof port_from, "port from PMI_JOBID %s", v);
    }
    int port = DSM_DEFAULT_PORT + (have_key ? (int)(key % DSM_PORT_SPAN) : 0);
    if (strchr(host, ':'))
        snprintf(cfg->coordinator, sizeof cfg->coordinator, "[%s]:%d", host, port);
    else
        snprintf(cfg->coordinator, sizeof cfg->coordinator, "%s:%d", host, port);
    /* Truncation of this report line is harmless (it is only printed at DSM_LOG=info). */
    int cn = snprintf(o->coord, sizeof o->coord, "%s from %s (%s)", cfg->coordinator, host_from,
                      port_from);
    (void)cn;

    /* Node 0 must run on the host the others will look for it on. Where the launcher put it
     * elsewhere, say so now rather than after DSM_CONNECT_TIMEOUT. */
    if (cfg->rank != 0 || cfg->nodes < 2) return DSM_OK;
    if (host_check == 1 && (v = env("SLURMD_NODENAME")) && strcasecmp(v, host)) {
        CERR("node 0 runs on %s, but the coordinator is expected on %s, %s: ask Slurm to "
             "place task 0 on the first node (the default distribution does), or set "
             "DSM_COORDINATOR=%s:PORT on every node",
             v, host, host_from, v);
        return DSM_EINVAL;
    }
    if (host_check == 2 && is_local_address(host) == 0) {
        CERR("node 0 does not run on %s, %s, where the other nodes will look for it: run "
             "rank 0 on the host mpirun runs on (the default mapping does), or pass "
             "mpirun -x DSM_COORDINATOR=<rank 0's host>:PORT",
             host, host_from);
        return DSM_EINVAL;
    }
    return DSM_OK;
}

/* The job name when DSM_JOB is not given. */
static void derive_job(struct dsm_cfg *cfg, enum launcher l, struct origin *o)
{
    const char *v, *job, *step;
    if (l == L_OMPI && (v = env("OMPI_MCA_ess_base_jobid"))) {
        snprintf(cfg->job, sizeof cfg->job, "ompi-%s", v);
        snprintf(o->job, sizeof o->job, "from OMPI_MCA_ess_base_jobid");
    } else if (l == L_SLURM && ((job = env("SLURM_JOB_ID")) || (job = env("SLURM_JOBID")))) {
        step = env("SLURM_STEP_ID");
        if (!step) step = env("SLURM_STEPID");
        snprintf(cfg->job, sizeof cfg->job, "slurm-%s.%s", job, step ? step : "batch");
        snprintf(o->job, sizeof o->job, "from SLURM_JOB_ID and SLURM_STEP_ID");
    } else if ((l == L_PMIX || l == L_OMPI) && (v = env("PMIX_NAMESPACE"))) {
        /* a namespace longer than the field keeps its start and a hash of the whole */
        if (strlen(v) < sizeof cfg->job)
            snprintf(cfg->job, sizeof cfg->job, "%s", v);
        else
            snprintf(cfg->job, sizeof cfg->job, "%.38s-%08x", v, fnv1a(v));
        snprintf(o->job, sizeof o->job, "from PMIX_NAMESPACE");
    } else if (l == L_PMI && (v = env("PMI_JOBID"))) {
        snprintf(cfg->job, sizeof cfg->job, "pmi-%.40s", v);
        snprintf(o->job, sizeof o->job, "from PMI_JOBID");
    } else {
        snprintf(cfg->job, sizeof cfg->job, "default");
        snprintf(o->job, sizeof o->job, "the default (no launcher job id)");
    }
}

/* A DSM_* variable in the environment that ufdsm does not read is almost always a misspelling
 * of one it does; name the closest. Node 0 warns, the others say it only at info level, so a
 * job of 64 nodes prints the warning once. */
static void check_unknown_vars(int rank)
{
    const char *names[DSM_ENV_VAR_COUNT];
    for (size_t i = 0; i < DSM_ENV_VAR_COUNT; i++) names[i] = dsm_env_vars[i].name;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "DSM_", 4)) continue;
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[64];
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, *e, len);
        name[len] = 0;
        int known = 0;
        for (size_t i = 0; i < DSM_ENV_VAR_COUNT && !known; i++) known = !strcmp(name, names[i]);
        if (known) continue;
        const char *near = dsm_env_closest(name, names, (int)DSM_ENV_VAR_COUNT);
        int level = rank <= 0 ? LOG_WARN : LOG_INFO;
        if (near)
            cfg_log(level, "%s is not a ufdsm variable (did you mean %s?); it is ignored", name,
                    near);
        else
            cfg_log(level,
                    "%s is not a ufdsm variable; it is ignored ('dsmrun --help' lists them all)",
                    name);
    }
}

/* ---------------------------------------------------------------- the configuration */

int dsm_cfg_load(struct dsm_cfg *cfg, const dsm_options_t *opts)
{
    dsm_options_t none;
    if (!opts) {
        dsm_options_init_sized(&none, sizeof none);
        opts = &none;
    }
    memset(cfg, 0, sizeof *cfg);
    msg_rank = -1;
    long v;
    const char *s;
    struct origin o = {{0}};

    if (opts->log_level >= 0)
        dsm_log_level = opts->log_level;
    else if ((s = getenv("DSM_LOG")) && *s) {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (!strcasecmp(s, names[i])) found = i;
        if (found < 0 && !strcasecmp(s, "warning")) found = LOG_WARN;
        if (found < 0 && isdigit((unsigned char)*s) && !s[1] && *s <= '3') found = *s - '0';
        if (found < 0) {
            CERR("DSM_LOG='%s' is not valid: expected error, warn, info or debug", s);
            return DSM_EINVAL;
        }
        dsm_log_level = found;
    }

    /* Identity: explicit settings first, then the launcher that started this process. */
    const char *rank_var, *size_var;
    enum launcher l = detect(&rank_var, &size_var);
    const char *l_rank_var = rank_var;
    if (env("DSMRUN_VERSION") && env("DSM_RANK"))
        l = L_DSMRUN;
    else if (env("DSM_RANK") && l == L_NONE)
        l = L_HAND;
    if (env("DSM_RANK")) rank_var = "DSM_RANK";
    if (env("DSM_NODES")) size_var = "DSM_NODES";
    snprintf(cfg->launcher, sizeof cfg->launcher, "%s", launchers[l].name);
    snprintf(cfg->port_hint, sizeof cfg->port_hint, "%s", launchers[l].port_hint);

    if (opts->nodes > 0) {
        cfg->nodes = opts->nodes;
        snprintf(o.nodes, sizeof o.nodes, "from dsm_options_t");
    } else if (size_var) {
        if (parse_int(size_var, env(size_var), 1, DSM_MAX_NODES, &v)) return DSM_EINVAL;
        cfg->nodes = (int)v;
        snprintf(o.nodes, sizeof o.nodes, "from %s", size_var);
    } else if (l == L_PMIX && opts->rank < 0 && !env("DSM_RANK")) {
        CERR("PMIX_RANK=%s gives this process's rank but PMIx exports no number of nodes: set "
             "DSM_NODES (the same on every node)",
             env("PMIX_RANK"));
        return DSM_EINVAL;
    } else {
        cfg->nodes = 1;
        snprintf(o.nodes, sizeof o.nodes, "the default (no launcher)");
    }
    if (cfg->nodes < 1 || cfg->nodes > DSM_MAX_NODES) {
        CERR("%d nodes requested: ufdsm supports 1 to %d", cfg->nodes, DSM_MAX_NODES);
        return DSM_EINVAL;
    }
    if (opts->rank >= 0) {
        cfg->rank = opts->rank;
        snprintf(o.rank, sizeof o.rank, "from dsm_options_t");
    } else if (rank_var) {
        if (parse_int(rank_var, env(rank_var), 0, DSM_MAX_NODES - 1, &v)) return DSM_EINVAL;
        cfg->rank = (int)v;
        snprintf(o.rank, sizeof o.rank, "from %s", rank_var);
    } else if (cfg->nodes > 1) {
        CERR("%s=%d but no rank given: %s", size_var ? size_var : "the options say nodes",
             cfg->nodes, launchers[l == L_NONE ? L_HAND : l].start);
        return DSM_EINVAL;
    } else {
        snprintf(o.rank, sizeof o.rank, "the default (a single node)");
    }
    snprintf(cfg->rank_from, sizeof cfg->rank_from, "%s", o.rank);
    if (cfg->rank >= cfg->nodes) {
        CERR("rank %d (%s) is not below the number of nodes, %d (%s): %s", cfg->rank, o.rank,
             cfg->nodes, o.nodes, launchers[l == L_NONE ? L_HAND : l].start);
        return DSM_EINVAL;
    }
    msg_rank = cfg->rank;
    check_unknown_vars(cfg->rank);

    if (opts->coordinator || env("DSM_COORDINATOR")) {
        s = opts->coordinator ? opts->coordinator : env("DSM_COORDINATOR");
        if (strlen(s) >= sizeof cfg->coordinator) {
            CERR("DSM_COORDINATOR is too long (at most %zu characters)",
                 sizeof cfg->coordinator - 1);
            return DSM_EINVAL;
        }
        strcpy(cfg->coordinator, s);
        snprintf(o.coord, sizeof o.coord, "%s from %s%s", s,
                 opts->coordinator ? "dsm_options_t" : "DSM_COORDINATOR",
                 l == L_DSMRUN ? " (set by dsmrun)" : "");
    } else if (derive_coordinator(cfg, l, &o)) {
        return DSM_EINVAL;
    }

    if (opts->job || env("DSM_JOB")) {
        snprintf(cfg->job, sizeof cfg->job, "%s", opts->job ? opts->job : env("DSM_JOB"));
        snprintf(o.job, sizeof o.job, "from %s%s", opts->job ? "dsm_options_t" : "DSM_JOB",
                 l == L_DSMRUN ? " (set by dsmrun)" : "");
    } else {
        derive_job(cfg, l, &o);
    }

    /* Once per process: where the identity came from, and which launcher variables lost. */
    if (rank_var && l_rank_var && strcmp(rank_var, l_rank_var) &&
        strcmp(env(rank_var), env(l_rank_var)))
        cfg_log(LOG_INFO, "%s=%s is not used: %s names this process", l_rank_var, env(l_rank_var),
                rank_var);
    if (rank_var && env("SLURM_PROCID") && strcmp(rank_var, "SLURM_PROCID") &&
        strcmp(l_rank_var ? l_rank_var : "", "SLURM_PROCID") &&
        strcmp(env(rank_var), env("SLURM_PROCID")))
        cfg_log(LOG_INFO,
                "SLURM_PROCID=%s is not used: inherited from the Slurm allocation, while %s "
                "names this process",
                env("SLURM_PROCID"), rank_var);
    cfg_log(LOG_INFO, "started by %s: rank %d %s, size %d %s, coordinator %s, job %s %s",
            cfg->launcher, cfg->rank, o.rank, cfg->nodes, o.nodes, o.coord, cfg->job, o.job);

    cfg->memory = opts->memory;
    if (!cfg->memory && (s = env("DSM_MEMORY"))) {
        if (dsm_parse_size(s, &cfg->memory) || cfg->memory == 0) {
            CERR("DSM_MEMORY='%s' is not a size: expected e.g. 4G, 512M or a byte count", s);
            return DSM_EINVAL;
        }
    }
    if (!cfg->memory && dsm_parse_size(DSM_DEFAULT_MEMORY, &cfg->memory)) return DSM_EINVAL;
    /* Room for the dsm_malloc arenas: at least one page per node and a collective half. */
    uint64_t min = (uint64_t)PAGE_SIZE * 2 * (uint64_t)cfg->nodes * 16;
    if (cfg->memory < min) {
        CERR("global memory of %llu bytes is too small for %d nodes: use DSM_MEMORY of at least "
             "%llu",
             (unsigned long long)cfg->memory, cfg->nodes, (unsigned long long)min);
        return DSM_EINVAL;
    }
    if (cfg->memory > (1ull << 44)) {
        CERR("DSM_MEMORY of %llu bytes is larger than the 16 TiB ufdsm can map",
             (unsigned long long)cfg->memory);
        return DSM_EINVAL;
    }
    cfg->memory = (cfg->memory + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);

    cfg->base = DSM_DEFAULT_BASE;
    if ((s = env("DSM_BASE"))) {
        char *end;
        errno = 0;
        unsigned long long b = strtoull(s, &end, 16);
        if (end == s || *end || errno || (b & (PAGE_SIZE - 1)) || b < (1ull << 32)) {
            CERR("DSM_BASE='%s' is not valid: expected a page-aligned hexadecimal address "
                 "between 0x100000000 and 0x800000000000 minus DSM_MEMORY",
                 s);
            return DSM_EINVAL;
        }
        /* Compared without adding, so that a base near 2^64 cannot wrap into range. */
        if (b >= (1ull << 47) || cfg->memory > (1ull << 47) - b) {
            CERR("DSM_BASE=%s with DSM_MEMORY=%llu gives the range [0x%llx, 0x%llx%s), which "
                 "does not fit the user address space of x86-64 Linux (below 0x800000000000): "
                 "choose a lower DSM_BASE, or leave it unset (default %#llx)",
                 s, (unsigned long long)cfg->memory, b, b + cfg->memory,
                 b + cfg->memory < b ? ", wrapping past 2^64" : "",
                 (unsigned long long)DSM_DEFAULT_BASE);
            return DSM_EINVAL;
        }
        cfg->base = b;
    }

    s = opts->transport ? opts->transport : env("DSM_TRANSPORT");
    if (!s) s = "auto";
    if (strcmp(s, "tcp") && strcmp(s, "rdma") && strcmp(s, "shm") && strcmp(s, "auto")) {
        CERR("DSM_TRANSPORT='%s' is not valid: expected tcp, rdma, shm or auto", s);
        return DSM_EINVAL;
    }
    snprintf(cfg->transport, sizeof cfg->transport, "%s", s);

    if (opts->stats >= 0)
        cfg->stats = opts->stats;
    else if ((s = env("DSM_STATS")))
        cfg->stats = strcmp(s, "0") != 0;

    cfg->connect_timeout_ms = opts->connect_timeout_ms;
    if (!cfg->connect_timeout_ms && (s = env("DSM_CONNECT_TIMEOUT"))) {
        if (parse_int("DSM_CONNECT_TIMEOUT", s, 1, 3600000, &v)) return DSM_EINVAL;
        cfg->connect_timeout_ms = (int)v;
    }
    if (!cfg->connect_timeout_ms) cfg->connect_timeout_ms = DSM_DEFAULT_CONNECT_TIMEOUT;

    cfg->peer_timeout_ms = DSM_DEFAULT_PEER_TIMEOUT;
    if ((s = env("DSM_PEER_TIMEOUT"))) {
        if (parse_int("DSM_PEER_TIMEOUT", s, 100, 3600000, &v)) return DSM_EINVAL;
        cfg->peer_timeout_ms = (int)v;
    }

    /* The job's secret: never from the command line (visible to every user in ps). */
    char aerr[512];
    if (dsm_auth_key_from_env(&cfg->key, env("DSM_SECRET"), env("DSM_SECRET_FILE"), aerr,
                              sizeof aerr)) {
        CERR("%s", aerr);
        return DSM_EINVAL;
    }

    cfg->spin_us = DSM_DEFAULT_SPIN_US;
    if ((s = env("DSM_SPIN_US"))) {
        if (parse_int("DSM_SPIN_US", s, 0, 10000000, &v)) return DSM_EINVAL;
        cfg->spin_us = v;
    }
    cfg->prefetch = DSM_DEFAULT_PREFETCH;
    if ((s = env("DSM_PREFETCH"))) {
        if (parse_int("DSM_PREFETCH", s, 0, 64, &v)) return DSM_EINVAL;
        cfg->prefetch = (int)v;
    }
    cfg->hold_us = DSM_DEFAULT_HOLD_US;
    if ((s = env("DSM_HOLD_US"))) {
        if (parse_int("DSM_HOLD_US", s, 0, 1000000, &v)) return DSM_EINVAL;
        cfg->hold_us = v;
    }
    char why[700] = "set by dsm_options_t.cache";
    cfg->cache = opts->cache;
    if (!cfg->cache && (s = env("DSM_CACHE"))) {
        if (dsm_parse_size(s, &cfg->cache) || cfg->cache < PAGE_SIZE) {
            CERR("DSM_CACHE='%s' is not a size of at least one page: expected e.g. 256M, 1G or "
                 "a byte count",
                 s);
            return DSM_EINVAL;
        }
        snprintf(why, sizeof why, "set by DSM_CACHE");
    }
    if (!cfg->cache) cfg->cache = default_cache(why, sizeof why);
    cfg->cache &= ~(uint64_t)(PAGE_SIZE - 1);
    cfg_log(LOG_INFO,
            "page cache: at most %llu MiB (%llu pages) of copies of pages homed "
            "elsewhere, %s",
            (unsigned long long)(cfg->cache >> 20), (unsigned long long)(cfg->cache / PAGE_SIZE),
            why);

    cfg->home_store = HOME_STORE_AUTO;
    if ((s = env("DSM_HOME_STORE"))) {
        if (!strcmp(s, "one"))
            cfg->home_store = HOME_STORE_ONE;
        else if (!strcmp(s, "two"))
            cfg->home_store = HOME_STORE_TWO;
        else if (strcmp(s, "auto")) {
            CERR("DSM_HOME_STORE='%s' is not valid: expected auto, one (the pages a node homes "
                 "held once: Linux 6.4+) or two (held twice, any kernel)",
                 s);
            return DSM_EINVAL;
        }
    }

    /* On by default: it serves a re-fetch without the home's CPU (docs/design.md, one-sided
     * page service). It was off while a lost update under it was unexplained; the cause was
     * a protocol race it only made likelier (248f031), and the model now covers it. */
    cfg->onesided = 1;
    if ((s = env("DSM_ONESIDED"))) {
        if (!strcmp(s, "off"))
            cfg->onesided = 0;
        else if (strcmp(s, "auto")) {
            CERR("DSM_ONESIDED='%s' is not valid: expected auto (pages homed by a node on this "
                 "host are read from its memory, no message) or off (always by message)",
                 s);
            return DSM_EINVAL;
        }
    }

    cfg->protocol = DSM_PROTO_SC;
    if (opts && opts->protocol) {
        if (opts->protocol != DSM_SC && opts->protocol != DSM_RC) {
            CERR("dsm_options_t.protocol %d is neither DSM_SC nor DSM_RC", opts->protocol);
            return DSM_EINVAL;
        }
        cfg->protocol = opts->protocol == DSM_RC ? DSM_PROTO_RC : DSM_PROTO_SC;
    } else if ((s = env("DSM_PROTOCOL"))) {
        if (!strcmp(s, "rc"))
            cfg->protocol = DSM_PROTO_RC;
        else if (strcmp(s, "sc")) {
            CERR("DSM_PROTOCOL='%s' is not a protocol: use sc (sequential consistency) or rc "
                 "(release consistency)",
                 s);
            return DSM_EINVAL;
        }
    }
    return DSM_OK;
}

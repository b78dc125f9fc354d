/*
 * env.c - where the runtime's configuration comes from: dsm_options_t, else the environment
 * (DSM_* variables, or what Slurm and Open MPI's mpirun set), else defaults. Every bad value
 * is rejected with a message naming the variable, the value and what is expected.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_MEMORY (4ull << 30)
#define DEFAULT_BASE   0x500000000000ull
#define DEFAULT_PORT   7400

void dsm_options_init(dsm_options_t *o)
{
    *o = (dsm_options_t){.rank = -1, .stats = -1, .log_level = -1};
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

static int parse_int(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        LOGE("%s='%s' is not valid: expected a whole number from %ld to %ld", name, s, lo, hi);
        return DSM_EINVAL;
    }
    *out = v;
    return DSM_OK;
}

/* The first value set among several variables (launchers name rank and size differently). */
static const char *first_env(const char *const *names, const char **which)
{
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (v && *v) {
            *which = *names;
            return v;
        }
    }
    return NULL;
}

/* Slurm: the first host of SLURM_JOB_NODELIST / SLURM_NODELIST, for the simple forms
 * "host", "host1,host2" and "prefix[01-04,07]". */
static int slurm_first_host(char *out, size_t len)
{
    const char *nl = getenv("SLURM_JOB_NODELIST");
    if (!nl || !*nl) nl = getenv("SLURM_NODELIST");
    if (!nl || !*nl) return -1;
    size_t i = 0, o = 0;
    while (nl[i] && nl[i] != ',' && nl[i] != '[' && o + 1 < len) out[o++] = nl[i++];
    if (nl[i] == '[') {
        i++;
        while (nl[i] && isdigit((unsigned char)nl[i]) && o + 1 < len) out[o++] = nl[i++];
    }
    out[o] = 0;
    return o ? 0 : -1;
}

int dsm_cfg_load(struct dsm_cfg *cfg, const dsm_options_t *opts)
{
    dsm_options_t none;
    if (!opts) {
        dsm_options_init(&none);
        opts = &none;
    }
    memset(cfg, 0, sizeof *cfg);
    long v;
    const char *s, *which = NULL;

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
            LOGE("DSM_LOG='%s' is not valid: expected error, warn, info or debug", s);
            return DSM_EINVAL;
        }
        dsm_log_level = found;
    }

    static const char *const size_vars[] = {"DSM_NODES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                                            NULL};
    static const char *const rank_vars[] = {"DSM_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK",
                                            NULL};
    if (opts->nodes > 0)
        cfg->nodes = opts->nodes;
    else if ((s = first_env(size_vars, &which))) {
        if (parse_int(which, s, 1, DSM_MAX_NODES, &v)) return DSM_EINVAL;
        cfg->nodes = (int)v;
    } else {
        cfg->nodes = 1;
    }
    if (cfg->nodes < 1 || cfg->nodes > DSM_MAX_NODES) {
        LOGE("%d nodes requested: ufdsm supports 1 to %d", cfg->nodes, DSM_MAX_NODES);
        return DSM_EINVAL;
    }
    if (opts->rank >= 0)
        cfg->rank = opts->rank;
    else if ((s = first_env(rank_vars, &which))) {
        if (parse_int(which, s, 0, cfg->nodes - 1, &v)) return DSM_EINVAL;
        cfg->rank = (int)v;
    } else if (cfg->nodes > 1) {
        LOGE("DSM_NODES=%d but no rank given: set DSM_RANK (or start the program with dsmrun)",
             cfg->nodes);
        return DSM_EINVAL;
    }
    if (cfg->rank >= cfg->nodes) {
        LOGE("rank %d is not below the number of nodes (%d)", cfg->rank, cfg->nodes);
        return DSM_EINVAL;
    }

    if (opts->coordinator)
        s = opts->coordinator;
    else
        s = getenv("DSM_COORDINATOR");
    if (s && *s) {
        if (strlen(s) >= sizeof cfg->coordinator) {
            LOGE("DSM_COORDINATOR is too long (at most %zu characters)", sizeof cfg->coordinator);
            return DSM_EINVAL;
        }
        strcpy(cfg->coordinator, s);
    } else {
        char host[100] = "127.0.0.1";
        slurm_first_host(host, sizeof host);
        snprintf(cfg->coordinator, sizeof cfg->coordinator, "%s:%d", host, DEFAULT_PORT);
    }

    if (opts->job)
        s = opts->job;
    else if (!(s = getenv("DSM_JOB")) || !*s) {
        s = getenv("SLURM_JOB_ID");
        if (!s || !*s) s = getenv("OMPI_MCA_ess_base_jobid");
        if (!s || !*s) s = "default";
    }
    snprintf(cfg->job, sizeof cfg->job, "%s", s);

    cfg->memory = opts->memory;
    if (!cfg->memory && (s = getenv("DSM_MEMORY")) && *s) {
        if (dsm_parse_size(s, &cfg->memory) || cfg->memory == 0) {
            LOGE("DSM_MEMORY='%s' is not a size: expected e.g. 4G, 512M or a byte count", s);
            return DSM_EINVAL;
        }
    }
    if (!cfg->memory) cfg->memory = DEFAULT_MEMORY;
    /* Room for the dsm_malloc arenas: at least one page per node and a collective half. */
    uint64_t min = (uint64_t)PAGE_SIZE * 2 * (uint64_t)cfg->nodes * 16;
    if (cfg->memory < min) {
        LOGE("global memory of %llu bytes is too small for %d nodes: use DSM_MEMORY of at least "
             "%llu",
             (unsigned long long)cfg->memory, cfg->nodes, (unsigned long long)min);
        return DSM_EINVAL;
    }
    if (cfg->memory > (1ull << 44)) {
        LOGE("DSM_MEMORY of %llu bytes is larger than the 16 TiB ufdsm can map",
             (unsigned long long)cfg->memory);
        return DSM_EINVAL;
    }
    cfg->memory = (cfg->memory + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);

    cfg->base = DEFAULT_BASE;
    if ((s = getenv("DSM_BASE")) && *s) {
        char *end;
        errno = 0;
        unsigned long long b = strtoull(s, &end, 16);
        if (end == s || *end || errno || (b & (PAGE_SIZE - 1)) || b < (1ull << 32) ||
            b + cfg->memory > (1ull << 47)) {
            LOGE("DSM_BASE='%s' is not valid: expected a page-aligned hexadecimal address "
                 "between 0x100000000 and 0x800000000000 minus DSM_MEMORY",
                 s);
            return DSM_EINVAL;
        }
        cfg->base = b;
    }

    s = opts->transport ? opts->transport : getenv("DSM_TRANSPORT");
    if (!s || !*s) s = "auto";
    if (strcmp(s, "tcp") && strcmp(s, "rdma") && strcmp(s, "auto")) {
        LOGE("DSM_TRANSPORT='%s' is not valid: expected tcp, rdma or auto", s);
        return DSM_EINVAL;
    }
    snprintf(cfg->transport, sizeof cfg->transport, "%s", s);

    if (opts->stats >= 0)
        cfg->stats = opts->stats;
    else if ((s = getenv("DSM_STATS")) && *s)
        cfg->stats = strcmp(s, "0") != 0;

    cfg->connect_timeout_ms = opts->connect_timeout_ms;
    if (!cfg->connect_timeout_ms && (s = getenv("DSM_CONNECT_TIMEOUT")) && *s) {
        if (parse_int("DSM_CONNECT_TIMEOUT", s, 1, 3600000, &v)) return DSM_EINVAL;
        cfg->connect_timeout_ms = (int)v;
    }
    if (!cfg->connect_timeout_ms) cfg->connect_timeout_ms = 30000;

    cfg->spin_us = 1000;
    if ((s = getenv("DSM_SPIN_US")) && *s) {
        if (parse_int("DSM_SPIN_US", s, 0, 10000000, &v)) return DSM_EINVAL;
        cfg->spin_us = v;
    }
    cfg->prefetch = 8;
    if ((s = getenv("DSM_PREFETCH")) && *s) {
        if (parse_int("DSM_PREFETCH", s, 0, 64, &v)) return DSM_EINVAL;
        cfg->prefetch = (int)v;
    }
    cfg->hold_us = 20;
    if ((s = getenv("DSM_HOLD_US")) && *s) {
        if (parse_int("DSM_HOLD_US", s, 0, 1000000, &v)) return DSM_EINVAL;
        cfg->hold_us = v;
    }
    return DSM_OK;
}

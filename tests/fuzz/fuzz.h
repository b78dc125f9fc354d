/*
 * fuzz.h - what every harness of tests/fuzz shares: the property check that turns a violated
 * rule into a crash (libFuzzer and the replay driver both report a crash with the input), the
 * job the harnesses play, and little-endian readers for checking decoded fields against the
 * documented byte layouts independently of the decoders under test.
 */
#ifndef UFDSM_FUZZ_H
#define UFDSM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsm.h" /* the DSM_E* codes */
#include "transport.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the code under test promises and broke: abort, so that libFuzzer saves the
 * input as a crash and the replay test fails on it. The message says which rule. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property violated: %s\n  ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The job the harnesses play: what dsm_init builds from the defaults (DSM_MEMORY=4G at
 * DSM_BASE=0x500000000000, 4 KiB pages). The global space that frames address is the same. */
#define FUZZ_JOB    "fuzz-job"
#define FUZZ_BASE   0x500000000000ull
#define FUZZ_MEMORY (4ull << 30)

static inline void fuzz_desc(struct dsm_job_desc *d, uint32_t nodes)
{
    memset(d, 0, sizeof *d);
    snprintf(d->job, sizeof d->job, "%s", FUZZ_JOB);
    d->version = DSM_WIRE_VERSION;
    d->nodes = nodes;
    d->region_base = FUZZ_BASE;
    d->region_size = FUZZ_MEMORY;
    d->page_size = DSM_PAGE_SIZE;
}

/* Two job descriptions are the same job (what dsm_net_desc_compare accepts). */
static inline int fuzz_desc_equal(const struct dsm_job_desc *a, const struct dsm_job_desc *b)
{
    return !strncmp(a->job, b->job, sizeof a->job) && a->version == b->version &&
           a->nodes == b->nodes && a->region_base == b->region_base &&
           a->region_size == b->region_size && a->page_size == b->page_size;
}

/* Little-endian fields, written here rather than taken from net.h so that a bug shared by
 * the decoders and their helpers cannot hide itself. */
static inline uint64_t fuzz_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* A message a function returned on failure: present and terminated inside its buffer. */
#define FUZZ_CHECK_MESSAGE(buf, what)                                                              \
    FUZZ_CHECK((buf)[0] && memchr((buf), 0, sizeof(buf)), "%s: no message, or not terminated",     \
               (what))

/* Messages end up in logs and terminals: whatever a peer sent, they carry no control
 * characters (a newline would forge a log line, an escape sequence would drive the terminal). */
#define FUZZ_CHECK_PRINTABLE(msg, what)                                                            \
    do {                                                                                           \
        for (const char *c_ = (msg); *c_; c_++)                                                    \
            FUZZ_CHECK((unsigned char)*c_ >= 0x20 && *c_ != 0x7f,                                  \
                       "%s: control character 0x%02x in the message: %s", (what),                  \
                       (unsigned char)*c_, (msg));                                                 \
    } while (0)

#endif /* UFDSM_FUZZ_H */

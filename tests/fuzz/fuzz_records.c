/*
 * fuzz_records.c - the fixed records nodes exchange while connecting: the TCP handshake
 * ("hello", dsm_net_hello_decode) and the job description inside it (dsm_net_desc_get,
 * dsm_net_desc_compare) from transport/net.c, the RDMA connection private data
 * (dsm_rdma_priv_decode / _compare) and the transport selection record (dsm_sel_parse) from
 * transport/rdma_logic.c (select.c hands it the payload of a frame).
 *
 * The first byte of the input picks the record (its low two bits), the rest is the record
 * as it came off the socket / out of the connect event. Each record is given to its decoder in
 * a buffer of exactly the size its caller reads (hello 96, description 80, private data and
 * selection text: any length), so a read past it is an ASan report. For each:
 *   - accepted fields are where the documented layout puts them, and inside the documented
 *     ranges (rank below DSM_MAX_NODES, job name terminated, phase / ok / port / address of
 *     a selection record);
 *   - round trip: what was decoded, encoded again with the real encoder, decodes to the same
 *     thing, and equals the input in every byte the decoder reads;
 *   - the comparisons with this node's job accept exactly an equal job, and always name the
 *     difference otherwise;
 *   - text that came from the peer and ends up in a log line (job names, the reason in a
 *     selection record) carries no control characters.
 */
#include <arpa/inet.h>
#include <ctype.h>

#include "fuzz.h"
#include "net.h"
#include "rdma_logic.h"

enum { REC_HELLO, REC_DESC, REC_PRIV, REC_SELECT };

static uint8_t *exact_copy(const uint8_t *data, size_t size)
{
    uint8_t *p = calloc(size ? size : 1, 1);
    FUZZ_CHECK(p, "out of memory");
    if (size) memcpy(p, data, size);
    return p;
}

/* A description decoded from `raw` (80 bytes, DSM_NET_DESC_SIZE): fields where the layout
 * says, and the comparisons with this node's job behave. */
static void check_desc(const uint8_t *raw, const struct dsm_job_desc *d)
{
    size_t n = strnlen((const char *)raw, sizeof d->job);
    FUZZ_CHECK(n < sizeof d->job, "accepted a job name without its NUL");
    FUZZ_CHECK(!memcmp(d->job, raw, n) && !d->job[n], "job name not copied up to its NUL");
    FUZZ_CHECK(d->version == fuzz_le(raw + 48, 4) && d->nodes == fuzz_le(raw + 52, 4) &&
                   d->region_base == fuzz_le(raw + 56, 8) &&
                   d->region_size == fuzz_le(raw + 64, 8) && d->page_size == fuzz_le(raw + 72, 4),
               "description fields are not where net.h puts them");

    /* Round trip: every byte the decoder reads comes back (the rest is zeros by the format:
     * after the name's NUL, and the 4 bytes of padding). */
    uint8_t again[DSM_NET_DESC_SIZE];
    dsm_net_desc_put(again, d);
    FUZZ_CHECK(!memcmp(again, raw, n + 1) && !memcmp(again + 48, raw + 48, 28),
               "desc_put(desc_get(x)) differs from x");
    struct dsm_job_desc d2;
    FUZZ_CHECK(dsm_net_desc_get(again, &d2) == 0 && fuzz_desc_equal(d, &d2),
               "desc_get(desc_put(d)) != d");

    char err[1024] = "";
    FUZZ_CHECK(dsm_net_desc_compare(d, d, "itself", err, sizeof err) == DSM_OK,
               "a description differs from itself: %s", err);
    struct dsm_job_desc here;
    fuzz_desc(&here, 4);
    for (int dir = 0; dir < 2; dir++) {
        err[0] = 0;
        int rc = dir ? dsm_net_desc_compare(d, &here, "node 1", err, sizeof err)
                     : dsm_net_desc_compare(&here, d, "node 1", err, sizeof err);
        FUZZ_CHECK(rc == DSM_OK || rc == DSM_EHANDSHAKE, "desc_compare returned %d", rc);
        FUZZ_CHECK((rc == DSM_OK) == fuzz_desc_equal(&here, d), "desc_compare says %s for a %s job",
                   rc ? "different" : "same", fuzz_desc_equal(&here, d) ? "same" : "different");
        if (rc) {
            FUZZ_CHECK_MESSAGE(err, "dsm_net_desc_compare");
            FUZZ_CHECK_PRINTABLE(err, "dsm_net_desc_compare");
        }
    }
}

static void fuzz_hello(const uint8_t *data, size_t size)
{
    /* tcp.c reads exactly DSM_NET_HELLO_SIZE bytes before decoding: never fewer. */
    if (size < DSM_NET_HELLO_SIZE) return;
    uint8_t *in = exact_copy(data, DSM_NET_HELLO_SIZE);
    int rank = -12345;
    struct dsm_job_desc d;
    char why[200] = "";
    int rc = dsm_net_hello_decode(in, &rank, &d, why, sizeof why);
    FUZZ_CHECK(rc == 0 || rc == -1, "hello_decode returned %d", rc);
    int valid = fuzz_le(in, 4) == DSM_NET_HELLO_MAGIC && fuzz_le(in + 4, 4) == 1 &&
                fuzz_le(in + 8, 4) < DSM_MAX_NODES && memchr(in + 16, 0, 48) != NULL;
    FUZZ_CHECK((rc == 0) == valid, "hello_decode %s a hello the format %s: %s",
               rc ? "rejected" : "accepted", valid ? "allows" : "forbids", why);
    if (rc) {
        FUZZ_CHECK_MESSAGE(why, "dsm_net_hello_decode");
        free(in);
        return;
    }
    FUZZ_CHECK(rank >= 0 && rank < DSM_MAX_NODES && (uint32_t)rank == fuzz_le(in + 8, 4), "rank %d",
               rank);
    check_desc(in + 16, &d);
    uint8_t again[DSM_NET_HELLO_SIZE];
    dsm_net_hello_encode(again, rank, &d);
    int rank2;
    struct dsm_job_desc d2;
    FUZZ_CHECK(!memcmp(again, in, 12) &&
                   !dsm_net_hello_decode(again, &rank2, &d2, why, sizeof why) && rank2 == rank &&
                   fuzz_desc_equal(&d, &d2),
               "hello round trip");
    free(in);
}

static void fuzz_desc_rec(const uint8_t *data, size_t size)
{
    if (size < DSM_NET_DESC_SIZE) return; /* only ever read from a whole hello or join record */
    uint8_t *in = exact_copy(data, DSM_NET_DESC_SIZE);
    struct dsm_job_desc d;
    int rc = dsm_net_desc_get(in, &d);
    FUZZ_CHECK(rc == 0 || rc == -1, "desc_get returned %d", rc);
    FUZZ_CHECK(!rc == !!memchr(in, 0, 48), "desc_get %s",
               rc ? "rejected a terminated name" : "accepted an unterminated name");
    if (!rc) check_desc(in, &d);
    free(in);
}

static void fuzz_priv(const uint8_t *data, size_t size)
{
    uint8_t *in = exact_copy(data, size);
    struct dsm_rdma_priv p = {0};
    char why[200] = "";
    int rc = dsm_rdma_priv_decode(in, size, &p, why, sizeof why);
    FUZZ_CHECK(rc == 0 || rc == -1, "priv_decode returned %d", rc);
    int valid = size >= DSM_RDMA_PRIV_SIZE && fuzz_le(in, 4) == DSM_RDMA_PRIV_MAGIC &&
                fuzz_le(in + 4, 2) == DSM_RDMA_PRIV_VERSION;
    FUZZ_CHECK((rc == 0) == valid, "priv_decode %s private data the format %s: %s",
               rc ? "rejected" : "accepted", valid ? "allows" : "forbids", why);
    if (rc) {
        FUZZ_CHECK_MESSAGE(why, "dsm_rdma_priv_decode");
        /* rdma_cm hands over NULL when a connect carried no private data. */
        FUZZ_CHECK(dsm_rdma_priv_decode(NULL, size, &p, why, sizeof why) == -1, "NULL data");
        free(in);
        return;
    }
    FUZZ_CHECK(p.desc.version == fuzz_le(in + 6, 2) && (uint64_t)p.rank == fuzz_le(in + 8, 2) &&
                   p.desc.nodes == fuzz_le(in + 10, 2) && p.desc.page_size == fuzz_le(in + 12, 4) &&
                   p.desc.region_base == fuzz_le(in + 16, 8) &&
                   p.desc.region_size == fuzz_le(in + 24, 8) && p.job_hash == fuzz_le(in + 32, 8) &&
                   p.depth == fuzz_le(in + 40, 4),
               "private data fields are not where rdma_logic.h puts them");
    FUZZ_CHECK(!p.desc.job[0], "a job name out of private data that carries only its hash");

    /* Round trip through the real encoder; the job name travels as its hash, which cannot
     * be inverted, so the hash is put back by hand. */
    uint8_t again[DSM_RDMA_PRIV_SIZE];
    dsm_rdma_priv_encode(again, p.rank, p.depth, &p.desc);
    FUZZ_CHECK(!memcmp(again, in, 32) && !memcmp(again + 40, in + 40, 4),
               "priv_encode(priv_decode(x)) differs from x outside the hash");
    for (int i = 0; i < 8; i++) again[32 + i] = (uint8_t)(p.job_hash >> (8 * i));
    struct dsm_rdma_priv p2;
    FUZZ_CHECK(!dsm_rdma_priv_decode(again, sizeof again, &p2, why, sizeof why) &&
                   p2.rank == p.rank && p2.depth == p.depth && p2.job_hash == p.job_hash &&
                   fuzz_desc_equal(&p.desc, &p2.desc),
               "priv_decode(priv_encode(p)) != p");

    /* Accepted by the job check exactly when it is this job, with a depth we can serve. */
    struct dsm_job_desc here;
    fuzz_desc(&here, 4);
    char err[1024] = "";
    int c = dsm_rdma_priv_compare(&here, &p, "node 2 (RDMA)", err, sizeof err);
    int same = p.desc.version == here.version && p.job_hash == dsm_rdma_job_hash(here.job) &&
               p.desc.nodes == here.nodes && p.desc.page_size == here.page_size &&
               p.desc.region_base == here.region_base && p.desc.region_size == here.region_size &&
               p.depth >= DSM_RDMA_DEPTH_MIN && p.depth <= DSM_RDMA_DEPTH_MAX;
    FUZZ_CHECK((c == 0) == same, "priv_compare %s private data of %s job (depth %u)",
               c ? "rejected" : "accepted", same ? "this" : "another", p.depth);
    if (c) {
        FUZZ_CHECK_MESSAGE(err, "dsm_rdma_priv_compare");
        FUZZ_CHECK_PRINTABLE(err, "dsm_rdma_priv_compare");
    }
    free(in);
}

static void check_sel(const struct dsm_sel_rec *r)
{
    FUZZ_CHECK(r->phase == 1 || r->phase == 2, "phase %d", r->phase);
    FUZZ_CHECK(r->ok == 0 || r->ok == 1, "ok %d", r->ok);
    FUZZ_CHECK(memchr(r->addr, 0, sizeof r->addr) && memchr(r->why, 0, sizeof r->why),
               "unterminated addr or why");
    for (const char *c = r->addr; *c; c++)
        FUZZ_CHECK(!isspace((unsigned char)*c), "white space in the address");
    /* select.c puts the reason into the log line that says which transport was chosen. */
    FUZZ_CHECK_PRINTABLE(r->why, "dsm_sel_parse: why");
    if (r->phase == 1 && r->ok) {
        /* select.c connects to this: a real port on a numeric address. */
        struct in6_addr a;
        FUZZ_CHECK(r->port && (inet_pton(AF_INET, r->addr, &a) == 1 ||
                               inet_pton(AF_INET6, r->addr, &a) == 1),
                   "phase-1 ok record with port %u, address '%s'", r->port, r->addr);
    }
}

static void fuzz_select(const uint8_t *data, size_t size)
{
    uint8_t *in = exact_copy(data, size);
    struct dsm_sel_rec r;
    int rc = dsm_sel_parse(in, size, &r);
    FUZZ_CHECK(rc == 0 || rc == -1, "sel_parse returned %d", rc);
    /* A record is text: no NUL inside, and it starts with the prefix. */
    if (!rc)
        FUZZ_CHECK(!memchr(in, 0, size) && size >= sizeof DSM_SEL_PREFIX - 1 &&
                       !memcmp(in, DSM_SEL_PREFIX, sizeof DSM_SEL_PREFIX - 1),
                   "accepted something that is not a record");
    free(in);
    if (rc) return;
    check_sel(&r);

    /* Round trip: what was parsed, written again, parses to the same record (the encoder
     * turns newlines of the reason into spaces, to keep logs one line). */
    char text[DSM_SEL_TEXT]; /* (the longest record: a full shm field and reason) */
    size_t n = dsm_sel_encode(&r, text, sizeof text);
    FUZZ_CHECK(n < sizeof text && strlen(text) == n, "encode returned %zu", n);
    struct dsm_sel_rec r2;
    FUZZ_CHECK(dsm_sel_parse(text, n, &r2) == 0, "its own record rejected: '%s'", text);
    char why[DSM_SEL_WHY];
    size_t k = 0;
    for (; r.why[k]; k++) why[k] = r.why[k] == '\n' ? ' ' : r.why[k];
    why[k] = 0;
    FUZZ_CHECK(r2.phase == r.phase && r2.ok == r.ok && r2.port == r.port &&
                   !strcmp(r2.addr, r.addr) && !strcmp(r2.shm, r.shm) && !strcmp(r2.why, why),
               "parse(encode(r)) != r for '%s'", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    switch (data[0] & 3) {
    case REC_HELLO:
        fuzz_hello(data + 1, size - 1);
        break;
    case REC_DESC:
        fuzz_desc_rec(data + 1, size - 1);
        break;
    case REC_PRIV:
        fuzz_priv(data + 1, size - 1);
        break;
    case REC_SELECT:
        fuzz_select(data + 1, size - 1);
        break;
    }
    return 0;
}

/*
 * test_wire.c - unit tests of the frame header codec and validator (transport/wire.c).
 *
 * Besides one test per rejection rule, the corrupt-input tests compare dsm_wire_check against
 * an independent restatement of the rules (ref_ok below, written from the specification, not
 * from wire.c) on every single-bit and single-byte corruption of valid headers and on random
 * headers. Agreement in both directions matters: a false accept lets a corrupt frame reach
 * the protocol engine, a false reject closes a healthy connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

#define NPAGES 65536u
#define BASE   0x7f0000000000ull
#define NODES  4u
#define PEER   2u

static const struct dsm_wire_limits lim = {
    .npages = NPAGES, .base = BASE, .nodes = NODES, .peer = PEER};

/* ------------------------------------------------------------------ helpers */

static int is_coherence(unsigned t)
{
    return (t >= DSM_MSG_GET_S && t <= DSM_MSG_RECALL_I) ||
           (t >= DSM_MSG_RC_GET && t <= DSM_MSG_RC_DIFF_ACK);
}

static int is_addr_type(unsigned t)
{
    return t == DSM_MSG_LOCK_REQ || t == DSM_MSG_LOCK_GRANT || t == DSM_MSG_LOCK_REL ||
           t == DSM_MSG_LOCK_INIT || t == DSM_MSG_LOCK_WAKE || t == DSM_MSG_FREE;
}

/* A valid header of each type, with typical field values. */
static struct dsm_wire_hdr valid_hdr(unsigned type)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, (enum dsm_wire_type)type, PEER);
    if (is_coherence(type)) h.arg0 = 1234;
    if (is_addr_type(type)) h.arg0 = BASE + 5 * DSM_PAGE_SIZE + 64;
    switch (type) {
    case DSM_MSG_PUT_M:
    case DSM_MSG_WB:
    case DSM_MSG_DATA_S:
    case DSM_MSG_DATA_M:
    case DSM_MSG_RC_DATA:
        h.len = DSM_PAGE_SIZE;
        break;
    case DSM_MSG_RC_DIFF: /* one run of 8 bytes */
        h.len = 12;
        break;
    case DSM_MSG_COLL:
        h.len = 16;
        h.arg0 = 77;
        h.aux = 2;
        h.arg1 = 1u << 20;
        break;
    case DSM_MSG_ABORT:
    case DSM_MSG_SHM: /* struct dsm_shm_hello */
        h.len = 40;
        break;
    case DSM_MSG_BARRIER:
        h.aux = 3;
        h.arg0 = 9;
        h.arg1 = 0xdeadbeefcafef00dull;
        break;
    case DSM_MSG_LOCK_REQ:
        h.arg1 = 17;
        break;
    default:
        break;
    }
    return h;
}

/* The rules restated from the specification, independently of wire.c. */
static int ref_len_ok(unsigned type, unsigned flags, uint32_t len)
{
    if (len > DSM_WIRE_MAX_PAYLOAD) return 0;
    switch (type) {
    case DSM_MSG_PUT_M:
    case DSM_MSG_WB:
        return len == 4096;
    case DSM_MSG_DATA_S:
        return (flags & DSM_WF_ZERO) ? len == 0 : len == 4096;
    case DSM_MSG_DATA_M:
        return (flags & (DSM_WF_ZERO | DSM_WF_NODATA)) ? len == 0 : len == 4096;
    case DSM_MSG_RC_DATA:
        return (flags & DSM_WF_ZERO) ? len == 0 : len == 4096;
    case DSM_MSG_RC_DIFF:
        return (flags & DSM_WF_RC_FULL) ? len == 4096 : len >= 5 && len <= 4096;
    case DSM_MSG_COLL:
        return len == 16;
    case DSM_MSG_ABORT:
        return len >= 1 && len <= 1024;
    case DSM_MSG_SHM:
        return len == 40;
    default:
        return len == 0;
    }
}

static int ref_ok(const struct dsm_wire_hdr *h, const struct dsm_wire_limits *l)
{
    static const unsigned flags_ok[DSM_MSG_TYPE_COUNT] = {
        [DSM_MSG_DATA_S] = DSM_WF_ZERO,     [DSM_MSG_DATA_M] = DSM_WF_ZERO | DSM_WF_NODATA,
        [DSM_MSG_RC_GET] = DSM_WF_RC_WRITE, [DSM_MSG_RC_DATA] = DSM_WF_ZERO,
        [DSM_MSG_RC_DIFF] = DSM_WF_RC_FULL,
    };
    if (h->magic != 0xD5A1 || h->version != 3) return 0;
    if (h->type < 1 || h->type > 31) return 0;
    if (h->src >= l->nodes || h->src != l->peer) return 0;
    if (h->flags & ~flags_ok[h->type]) return 0;
    if ((h->flags & DSM_WF_ZERO) && (h->flags & DSM_WF_NODATA)) return 0;
    if (!ref_len_ok(h->type, h->flags, h->len)) return 0;
    if (is_coherence(h->type) && !(h->arg0 < l->npages)) return 0;
    if (is_addr_type(h->type)) {
        /* 128-bit arithmetic: the reference must not share wire.c's overflow reasoning. */
        unsigned __int128 end = (unsigned __int128)l->base + (unsigned __int128)l->npages * 4096;
        if (h->arg0 < l->base || (unsigned __int128)h->arg0 >= end) return 0;
    }
    if ((h->type == DSM_MSG_LOCK_REQ || h->type == DSM_MSG_LOCK_GRANT) && h->aux > 1) return 0;
    if (h->type == DSM_MSG_BARRIER && h->aux >= 64) return 0;
    return 1;
}

static int check(const struct dsm_wire_hdr *h)
{
    char why[256] = "";
    int rc = dsm_wire_check(h, &lim, why, sizeof why);
    if (rc == DSM_WIRE_BAD) {
        assert_true(why[0] != '\0');
        assert_null(strchr(why, '\n'));
    } else {
        assert_int_equal(rc, DSM_WIRE_OK);
    }
    return rc;
}

/* Asserts the header is rejected with a reason containing `needle`. */
static void expect_bad(const struct dsm_wire_hdr *h, const char *needle)
{
    char why[256] = "";
    assert_int_equal(dsm_wire_check(h, &lim, why, sizeof why), DSM_WIRE_BAD);
    if (!strstr(why, needle)) fail_msg("reason \"%s\" does not mention \"%s\"", why, needle);
}

static void expect_ok(const struct dsm_wire_hdr *h)
{
    char why[256] = "";
    int rc = dsm_wire_check(h, &lim, why, sizeof why);
    if (rc != DSM_WIRE_OK)
        fail_msg("rejected a valid %s header: %s", dsm_wire_type_name(h->type), why);
}

static void assert_hdr_equal(const struct dsm_wire_hdr *a, const struct dsm_wire_hdr *b)
{
    assert_int_equal(a->magic, b->magic);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->len, b->len);
    assert_int_equal(a->src, b->src);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->aux, b->aux);
    assert_int_equal(a->arg0, b->arg0);
    assert_int_equal(a->arg1, b->arg1);
}

static uint64_t rng_state;
static uint64_t rng(void)
{
    /* splitmix64: fixed seed, so failures reproduce */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ codec */

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(dsm_wire_type_name(DSM_MSG_GET_S), "GET_S");
    assert_string_equal(dsm_wire_type_name(DSM_MSG_RECALL_I), "RECALL_I");
    assert_string_equal(dsm_wire_type_name(DSM_MSG_LOCK_GRANT), "LOCK_GRANT");
    assert_string_equal(dsm_wire_type_name(DSM_MSG_ABORT), "ABORT");
    assert_string_equal(dsm_wire_type_name(DSM_MSG_TYPE_COUNT), "?");
    assert_string_equal(dsm_wire_type_name(255), "?");
    assert_string_equal(dsm_wire_type_name(~0u), "?");
    for (unsigned t = 1; t < DSM_MSG_TYPE_COUNT; t++)
        assert_string_not_equal(dsm_wire_type_name(t), "?");
}

static void test_init(void **state)
{
    (void)state;
    struct dsm_wire_hdr h;
    memset(&h, 0xab, sizeof h);
    dsm_wire_init(&h, DSM_MSG_INV, 7);
    assert_int_equal(h.magic, DSM_WIRE_MAGIC);
    assert_int_equal(h.version, DSM_WIRE_VERSION);
    assert_int_equal(h.type, DSM_MSG_INV);
    assert_int_equal(h.src, 7);
    assert_int_equal(h.len, 0);
    assert_int_equal(h.flags, 0);
    assert_int_equal(h.aux, 0);
    assert_int_equal(h.arg0, 0);
    assert_int_equal(h.arg1, 0);
}

/* The byte layout is the contract between builds: pin it down literally. */
static void test_encode_layout(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = {.magic = 0xD5A1,
                             .version = 2,
                             .type = 8,
                             .len = 0x11223344,
                             .src = 0x5566,
                             .flags = 0x7788,
                             .aux = 0x99aabbcc,
                             .arg0 = 0x0102030405060708ull,
                             .arg1 = 0xf1f2f3f4f5f6f7f8ull};
    static const uint8_t want[DSM_WIRE_HDR_SIZE] = {0xa1, 0xd5, 0x02, 0x08, 0x44, 0x33, 0x22, 0x11,
                                                    0x66, 0x55, 0x88, 0x77, 0xcc, 0xbb, 0xaa, 0x99,
                                                    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
                                                    0xf8, 0xf7, 0xf6, 0xf5, 0xf4, 0xf3, 0xf2, 0xf1};
    uint8_t out[DSM_WIRE_HDR_SIZE + 2];
    memset(out, 0xee, sizeof out);
    dsm_wire_encode(&h, out);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(out[DSM_WIRE_HDR_SIZE], 0xee); /* wrote exactly 32 bytes */
    assert_int_equal(out[DSM_WIRE_HDR_SIZE + 1], 0xee);
}

static void test_round_trip_every_type(void **state)
{
    (void)state;
    for (unsigned t = 1; t < DSM_MSG_TYPE_COUNT; t++) {
        struct dsm_wire_hdr h = valid_hdr(t), d;
        h.arg1 = 0x8000000000000001ull ^ t;
        /* Odd offset: decode and encode must not assume an aligned buffer. */
        uint8_t buf[DSM_WIRE_HDR_SIZE + 1];
        dsm_wire_encode(&h, buf + 1);
        memset(&d, 0x5a, sizeof d);
        assert_int_equal(dsm_wire_decode(buf + 1, DSM_WIRE_HDR_SIZE, &d), DSM_WIRE_OK);
        assert_hdr_equal(&h, &d);
        expect_ok(&d);
        /* A longer buffer (header + payload) decodes the same. */
        uint8_t big[DSM_WIRE_HDR_SIZE + 64];
        memset(big, 0xff, sizeof big);
        dsm_wire_encode(&h, big);
        assert_int_equal(dsm_wire_decode(big, sizeof big, &d), DSM_WIRE_OK);
        assert_hdr_equal(&h, &d);
    }
    /* Extreme field values survive too. */
    struct dsm_wire_hdr h, d;
    memset(&h, 0xff, sizeof h);
    uint8_t buf[DSM_WIRE_HDR_SIZE];
    dsm_wire_encode(&h, buf);
    for (unsigned i = 0; i < sizeof buf; i++) assert_int_equal(buf[i], 0xff);
    dsm_wire_decode(buf, sizeof buf, &d);
    assert_hdr_equal(&h, &d);
}

static void test_round_trip_flag_variants(void **state)
{
    (void)state;
    struct {
        unsigned type, flags;
        uint32_t len;
    } v[] = {
        {DSM_MSG_RC_GET, DSM_WF_RC_WRITE, 0}, {DSM_MSG_DATA_S, DSM_WF_ZERO, 0},
        {DSM_MSG_DATA_M, DSM_WF_ZERO, 0},     {DSM_MSG_DATA_M, DSM_WF_NODATA, 0},
        {DSM_MSG_DATA_S, 0, DSM_PAGE_SIZE},   {DSM_MSG_DATA_M, 0, DSM_PAGE_SIZE},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct dsm_wire_hdr h = valid_hdr(v[i].type), d;
        h.flags = (uint16_t)v[i].flags;
        h.len = v[i].len;
        uint8_t buf[DSM_WIRE_HDR_SIZE];
        dsm_wire_encode(&h, buf);
        assert_int_equal(dsm_wire_decode(buf, sizeof buf, &d), DSM_WIRE_OK);
        assert_hdr_equal(&h, &d);
        expect_ok(&d);
    }
}

static void test_decode_truncated(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_GET_S), d, untouched;
    uint8_t buf[DSM_WIRE_HDR_SIZE];
    dsm_wire_encode(&h, buf);
    memset(&untouched, 0x3c, sizeof untouched);
    for (size_t n = 0; n < DSM_WIRE_HDR_SIZE; n++) {
        d = untouched;
        assert_int_equal(dsm_wire_decode(buf, n, &d), DSM_WIRE_SHORT);
        assert_memory_equal(&d, &untouched, sizeof d); /* nothing half-written */
    }
    assert_int_equal(dsm_wire_decode(NULL, 0, &d), DSM_WIRE_SHORT);
    assert_int_equal(dsm_wire_decode(buf, DSM_WIRE_HDR_SIZE, &d), DSM_WIRE_OK);
}

/* ------------------------------------------------------------------ one test per rule */

static void test_reject_magic(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_GET_S);
    h.magic = 0xA1D5; /* byte-swapped: a peer of the other endianness */
    expect_bad(&h, "magic 0xa1d5");
    h.magic = 0;
    expect_bad(&h, "magic");
}

static void test_reject_version(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_GET_S);
    h.version = 2; /* the previous version: no DSM_MSG_LOCK_WAKE */
    expect_bad(&h, "version 2");
    h.version = 4;
    expect_bad(&h, "version 4");
    h.version = 0;
    expect_bad(&h, "version 0");
}

static void test_reject_type(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_BYE);
    h.type = DSM_MSG_NONE;
    expect_bad(&h, "type 0");
    h.type = DSM_MSG_TYPE_COUNT;
    expect_bad(&h, "type 32");
    h.type = 255;
    expect_bad(&h, "type 255");
    h = valid_hdr(DSM_MSG_TYPE_COUNT - 1); /* LOCK_WAKE: last valid */
    expect_ok(&h);
    h = valid_hdr(DSM_MSG_GET_S); /* first valid */
    expect_ok(&h);
}

static void test_reject_len_above_max(void **state)
{
    (void)state;
    /* Even for ABORT, where a length rule comes later, and with other fields also wrong: the
     * length bound comes first. */
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_ABORT);
    h.len = DSM_WIRE_MAX_PAYLOAD + 1;
    expect_bad(&h, "payload length 4097");
    h.len = UINT32_MAX;
    h.src = 60000;
    h.flags = 0xffff;
    expect_bad(&h, "payload length 4294967295");
    h = valid_hdr(DSM_MSG_PUT_M);
    h.len = DSM_WIRE_MAX_PAYLOAD + 1;
    expect_bad(&h, "length 4097");
}

static void test_reject_src_out_of_job(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_GET_S);
    h.src = NODES; /* == nodes: first invalid */
    expect_bad(&h, "src 4");
    h.src = 0xffff;
    expect_bad(&h, "src 65535");
    /* src < nodes and == peer, with peer the last node: valid. */
    struct dsm_wire_limits l = lim;
    l.peer = NODES - 1;
    h.src = NODES - 1;
    char why[128];
    assert_int_equal(dsm_wire_check(&h, &l, why, sizeof why), DSM_WIRE_OK);
    /* A limits struct whose peer is itself out of range must not make src == nodes pass. */
    l.peer = NODES;
    h.src = NODES;
    assert_int_equal(dsm_wire_check(&h, &l, why, sizeof why), DSM_WIRE_BAD);
}

static void test_reject_wrong_peer(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_GET_S);
    h.src = PEER - 1;
    expect_bad(&h, "src 1");
    h.src = PEER + 1;
    expect_bad(&h, "src 3");
}

static void test_reject_unknown_flags(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_DATA_M);
    for (unsigned bit = 3; bit < 16; bit++) {
        h.flags = (uint16_t)(1u << bit);
        expect_bad(&h, "flags");
    }
}

static void test_reject_flags_for_type(void **state)
{
    (void)state;
    for (unsigned t = 1; t < DSM_MSG_TYPE_COUNT; t++) {
        for (unsigned f = 1; f <= DSM_WF_ALL; f <<= 1) {
            struct dsm_wire_hdr h = valid_hdr(t);
            h.flags = (uint16_t)f;
            if (f & (DSM_WF_ZERO | DSM_WF_NODATA) && t != DSM_MSG_RC_DIFF) h.len = 0;
            if (f == DSM_WF_RC_FULL && t == DSM_MSG_RC_DIFF) h.len = DSM_PAGE_SIZE;
            int allowed = (f == DSM_WF_ZERO &&
                           (t == DSM_MSG_DATA_S || t == DSM_MSG_DATA_M || t == DSM_MSG_RC_DATA)) ||
                          (f == DSM_WF_NODATA && t == DSM_MSG_DATA_M) ||
                          (f == DSM_WF_RC_WRITE && t == DSM_MSG_RC_GET) ||
                          (f == DSM_WF_RC_FULL && t == DSM_MSG_RC_DIFF);
            if (allowed)
                expect_ok(&h);
            else
                expect_bad(&h, "flags");
        }
    }
}

static void test_reject_zero_and_nodata(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_DATA_M);
    h.flags = DSM_WF_ZERO | DSM_WF_NODATA;
    h.len = 0;
    expect_bad(&h, "flags 0x6");
    h.len = DSM_PAGE_SIZE;
    expect_bad(&h, "flags 0x6");
}

static void test_reject_page_index(void **state)
{
    (void)state;
    for (unsigned t = DSM_MSG_GET_S; t <= DSM_MSG_RECALL_I; t++) {
        struct dsm_wire_hdr h = valid_hdr(t);
        h.arg0 = NPAGES - 1; /* last valid */
        expect_ok(&h);
        h.arg0 = 0;
        expect_ok(&h);
        h.arg0 = NPAGES; /* first invalid */
        expect_bad(&h, "page index 65536 outside the global space (65536 pages)");
        h.arg0 = 99999;
        expect_bad(&h, "page index 99999 outside the global space (65536 pages)");
        h.arg0 = UINT64_MAX;
        expect_bad(&h, "page index");
    }
    /* An empty global space has no valid page. */
    struct dsm_wire_limits l = lim;
    l.npages = 0;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_GET_S);
    h.arg0 = 0;
    char why[128];
    assert_int_equal(dsm_wire_check(&h, &l, why, sizeof why), DSM_WIRE_BAD);
}

static void test_reject_page_payload_len(void **state)
{
    (void)state;
    /* Types that always carry a page. */
    unsigned page_types[] = {DSM_MSG_PUT_M, DSM_MSG_WB, DSM_MSG_DATA_S, DSM_MSG_DATA_M};
    for (size_t i = 0; i < 4; i++) {
        struct dsm_wire_hdr h = valid_hdr(page_types[i]);
        h.len = 4096;
        expect_ok(&h);
        h.len = 4095;
        expect_bad(&h, "payload length 4095");
        h.len = 4097;
        expect_bad(&h, "payload length 4097");
        h.len = 0;
        expect_bad(&h, "payload length 0");
    }
    /* Flags that mean "no page": exactly 0. */
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_DATA_S);
    h.flags = DSM_WF_ZERO;
    h.len = 0;
    expect_ok(&h);
    h.len = 4096;
    expect_bad(&h, "payload length 4096");
    h.len = 1;
    expect_bad(&h, "payload length 1");
    h = valid_hdr(DSM_MSG_DATA_M);
    for (unsigned f = DSM_WF_NODATA; f <= DSM_WF_ZERO; f <<= 1) {
        h.flags = (uint16_t)f;
        h.len = 0;
        expect_ok(&h);
        h.len = 4096;
        expect_bad(&h, "payload length 4096");
    }
    /* Coherence types without payload. */
    unsigned empty_types[] = {DSM_MSG_GET_S, DSM_MSG_GET_M,    DSM_MSG_PUT_S,   DSM_MSG_INV_ACK,
                              DSM_MSG_INV,   DSM_MSG_RECALL_S, DSM_MSG_RECALL_I};
    for (size_t i = 0; i < sizeof empty_types / sizeof empty_types[0]; i++) {
        h = valid_hdr(empty_types[i]);
        expect_ok(&h);
        h.len = 1;
        expect_bad(&h, "payload length 1");
        h.len = 4096;
        expect_bad(&h, "payload length 4096");
    }
}

static void test_reject_sync_address(void **state)
{
    (void)state;
    unsigned types[] = {DSM_MSG_LOCK_REQ,  DSM_MSG_LOCK_GRANT, DSM_MSG_LOCK_REL,
                        DSM_MSG_LOCK_INIT, DSM_MSG_LOCK_WAKE,  DSM_MSG_FREE};
    uint64_t end = BASE + (uint64_t)NPAGES * DSM_PAGE_SIZE;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct dsm_wire_hdr h = valid_hdr(types[i]);
        h.arg0 = BASE;
        expect_ok(&h);
        h.arg0 = end - 1;
        expect_ok(&h);
        h.arg0 = end;
        expect_bad(&h, "address 0x");
        h.arg0 = BASE - 1;
        expect_bad(&h, "address");
        h.arg0 = 0;
        expect_bad(&h, "address");
        h.arg0 = UINT64_MAX;
        expect_bad(&h, "address");
        h.arg0 = BASE;
        h.len = 1;
        expect_bad(&h, "payload length 1");
        h.len = 16;
        expect_bad(&h, "payload length 16");
    }
    /* A space ending at the top of the address space must not wrap. */
    struct dsm_wire_limits l = lim;
    l.npages = 16;
    l.base = UINT64_MAX - 16 * DSM_PAGE_SIZE + 1;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_FREE);
    char why[160];
    h.arg0 = UINT64_MAX;
    assert_int_equal(dsm_wire_check(&h, &l, why, sizeof why), DSM_WIRE_OK);
    h.arg0 = l.base - 1;
    assert_int_equal(dsm_wire_check(&h, &l, why, sizeof why), DSM_WIRE_BAD);
    /* npages so large that npages * page size overflows: everything above base is inside. */
    l.base = 4096;
    l.npages = UINT64_MAX / 1024;
    h.arg0 = UINT64_MAX;
    assert_int_equal(dsm_wire_check(&h, &l, why, sizeof why), DSM_WIRE_OK);
    h.arg0 = 4095;
    assert_int_equal(dsm_wire_check(&h, &l, why, sizeof why), DSM_WIRE_BAD);
}

static void test_reject_lock_aux(void **state)
{
    (void)state;
    unsigned binary[] = {DSM_MSG_LOCK_REQ, DSM_MSG_LOCK_GRANT};
    for (size_t i = 0; i < 2; i++) {
        struct dsm_wire_hdr h = valid_hdr(binary[i]);
        h.aux = 0;
        expect_ok(&h);
        h.aux = 1;
        expect_ok(&h);
        h.aux = 2;
        expect_bad(&h, "aux 2");
        h.aux = UINT32_MAX;
        expect_bad(&h, "aux 4294967295");
    }
    /* REL / INIT / WAKE / FREE do not constrain aux. */
    unsigned free_aux[] = {DSM_MSG_LOCK_REL, DSM_MSG_LOCK_INIT, DSM_MSG_LOCK_WAKE, DSM_MSG_FREE};
    for (size_t i = 0; i < sizeof free_aux / sizeof free_aux[0]; i++) {
        struct dsm_wire_hdr h = valid_hdr(free_aux[i]);
        h.aux = 12345;
        expect_ok(&h);
    }
}

static void test_reject_barrier(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_BARRIER);
    h.aux = 0;
    expect_ok(&h);
    h.aux = 63;
    expect_ok(&h);
    h.aux = 64;
    expect_bad(&h, "round (aux) 64");
    h.aux = UINT32_MAX;
    expect_bad(&h, "aux");
    h.aux = 0;
    h.len = 1;
    expect_bad(&h, "payload length 1");
    /* arg0 (the collective sequence) and arg1 (unused) are not checked by the wire. */
    h.len = 0;
    h.arg0 = UINT64_MAX;
    h.arg1 = UINT64_MAX;
    expect_ok(&h);
}

static void test_reject_coll(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_COLL);
    expect_ok(&h);
    uint32_t wrong[] = {0, 15, 17, 32, 4096};
    for (size_t i = 0; i < 5; i++) {
        h.len = wrong[i];
        expect_bad(&h, "payload length");
    }
}

static void test_reject_bye(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_BYE);
    expect_ok(&h);
    h.len = 1;
    expect_bad(&h, "BYE payload length 1");
}

static void test_reject_abort(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_ABORT);
    h.len = 1;
    expect_ok(&h);
    h.len = 1024;
    expect_ok(&h);
    h.len = 0;
    expect_bad(&h, "ABORT payload length 0");
    h.len = 1025;
    expect_bad(&h, "ABORT payload length 1025");
    h.len = 4096;
    expect_bad(&h, "payload length 4096");
}

static void test_reason_buffer(void **state)
{
    (void)state;
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_GET_S);
    h.arg0 = 99999;
    /* No room, or no buffer at all: still rejected, nothing written. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    assert_int_equal(dsm_wire_check(&h, &lim, tiny, 0), DSM_WIRE_BAD);
    assert_int_equal(tiny[0], 'x');
    assert_int_equal(dsm_wire_check(&h, &lim, NULL, 0), DSM_WIRE_BAD);
    /* A short buffer is truncated and terminated. */
    assert_int_equal(dsm_wire_check(&h, &lim, tiny, sizeof tiny), DSM_WIRE_BAD);
    assert_int_equal(strnlen(tiny, sizeof tiny), sizeof tiny - 1);
    /* Accepting never needs the buffer. */
    h.arg0 = 1;
    assert_int_equal(dsm_wire_check(&h, &lim, NULL, 0), DSM_WIRE_OK);
}

/* ------------------------------------------------------------------ corrupt input */

static unsigned n_accept, n_reject;

/* Decodes, checks and compares against the reference; accepted frames must re-encode to the
 * very same bytes (so what was checked is what was received). */
static void judge(const uint8_t *buf)
{
    struct dsm_wire_hdr h;
    assert_int_equal(dsm_wire_decode(buf, DSM_WIRE_HDR_SIZE, &h), DSM_WIRE_OK);
    int rc = check(&h);
    int want = ref_ok(&h, &lim);
    if ((rc == DSM_WIRE_OK) != want) {
        char why[256] = "";
        dsm_wire_check(&h, &lim, why, sizeof why);
        fail_msg("type %u len %u src %u flags 0x%x aux %u arg0 0x%llx: check %d, reference %d "
                 "(%s)",
                 h.type, h.len, h.src, h.flags, h.aux, (unsigned long long)h.arg0, rc, want, why);
    }
    if (rc == DSM_WIRE_OK) {
        uint8_t again[DSM_WIRE_HDR_SIZE];
        dsm_wire_encode(&h, again);
        assert_memory_equal(again, buf, DSM_WIRE_HDR_SIZE);
        n_accept++;
    } else {
        n_reject++;
    }
}

/* Valid headers to corrupt: every type, every flag variant, boundary values. */
static size_t seed_headers(struct dsm_wire_hdr *out)
{
    size_t n = 0;
    for (unsigned t = 1; t < DSM_MSG_TYPE_COUNT; t++) {
        out[n++] = valid_hdr(t);
        struct dsm_wire_hdr h = valid_hdr(t);
        if (is_coherence(t)) h.arg0 = NPAGES - 1;
        if (is_addr_type(t)) h.arg0 = BASE + (uint64_t)NPAGES * DSM_PAGE_SIZE - 1;
        if (t == DSM_MSG_BARRIER) h.aux = 63;
        if (t == DSM_MSG_LOCK_REQ || t == DSM_MSG_LOCK_GRANT) h.aux = 1;
        if (t == DSM_MSG_ABORT) h.len = 1024;
        out[n++] = h;
    }
    struct dsm_wire_hdr h = valid_hdr(DSM_MSG_RC_GET);
    h.flags = DSM_WF_RC_WRITE;
    out[n++] = h;
    h = valid_hdr(DSM_MSG_DATA_S);
    h.flags = DSM_WF_ZERO;
    h.len = 0;
    out[n++] = h;
    h = valid_hdr(DSM_MSG_DATA_M);
    h.flags = DSM_WF_ZERO;
    h.len = 0;
    out[n++] = h;
    h.flags = DSM_WF_NODATA;
    out[n++] = h;
    return n;
}

static void test_corrupt_sweep(void **state)
{
    (void)state;
    struct dsm_wire_hdr seeds[2 * DSM_MSG_TYPE_COUNT + 4];
    size_t ns = seed_headers(seeds);
    n_accept = n_reject = 0;
    rng_state = 42;
    for (size_t s = 0; s < ns; s++) {
        uint8_t orig[DSM_WIRE_HDR_SIZE], buf[DSM_WIRE_HDR_SIZE];
        dsm_wire_encode(&seeds[s], orig);
        judge(orig);
        for (unsigned bit = 0; bit < 8 * DSM_WIRE_HDR_SIZE; bit++) {
            memcpy(buf, orig, sizeof buf);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            judge(buf);
        }
        for (unsigned i = 0; i < DSM_WIRE_HDR_SIZE; i++) {
            uint8_t vals[] = {0x00,
                              0x01,
                              0x02,
                              0x3f,
                              0x40,
                              0x7f,
                              0x80,
                              0xfe,
                              0xff,
                              (uint8_t)(orig[i] + 1),
                              (uint8_t)(orig[i] - 1),
                              (uint8_t)rng(),
                              (uint8_t)rng()};
            for (size_t v = 0; v < sizeof vals; v++) {
                memcpy(buf, orig, sizeof buf);
                buf[i] = vals[v];
                judge(buf);
            }
        }
        /* Pairs of corrupted bytes inside the length and page/address fields, where a false
         * accept would hurt most. */
        static const unsigned hot[] = {4, 5, 6, 7, 8, 9, 16, 17, 18, 19, 20, 21, 22, 23};
        for (size_t a = 0; a < sizeof hot / sizeof hot[0]; a++)
            for (size_t b = a + 1; b < sizeof hot / sizeof hot[0]; b++)
                for (int k = 0; k < 8; k++) {
                    memcpy(buf, orig, sizeof buf);
                    buf[hot[a]] = (uint8_t)rng();
                    buf[hot[b]] = (uint8_t)rng();
                    judge(buf);
                }
        /* Whole-field values next to every limit: single-byte corruption rarely lands a
         * field exactly one past its bound, which is where off-by-one bugs live. */
        const uint64_t end = BASE + (uint64_t)NPAGES * DSM_PAGE_SIZE;
        const uint64_t marks[] = {
            0,    1,    2,    15,    16,   17,     63,   64,  1023,       1024,       1025,
            4095, 4096, 4097, NODES, PEER, NPAGES, BASE, end, UINT16_MAX, UINT32_MAX, UINT64_MAX};
        for (int field = 0; field < 6; field++)
            for (size_t m = 0; m < sizeof marks / sizeof marks[0]; m++)
                for (int d = -2; d <= 2; d++) {
                    struct dsm_wire_hdr h = seeds[s];
                    uint64_t v = marks[m] + (uint64_t)(int64_t)d;
                    switch (field) {
                    case 0:
                        h.len = (uint32_t)v;
                        break;
                    case 1:
                        h.src = (uint16_t)v;
                        break;
                    case 2:
                        h.flags = (uint16_t)v;
                        break;
                    case 3:
                        h.aux = (uint32_t)v;
                        break;
                    case 4:
                        h.arg0 = v;
                        break;
                    default:
                        h.type = (uint8_t)v;
                        break;
                    }
                    dsm_wire_encode(&h, buf);
                    judge(buf);
                }
    }
    /* The sweep must exercise both outcomes, or it proves nothing. */
    print_message("sweep: %u accepted, %u rejected\n", n_accept, n_reject);
    assert_true(n_accept > 1000);
    assert_true(n_reject > 10000);
}

static void test_random_garbage(void **state)
{
    (void)state;
    rng_state = 0x5eed;
    n_accept = n_reject = 0;
    uint8_t buf[DSM_WIRE_HDR_SIZE + 7];
    for (int i = 0; i < 100000; i++) {
        for (size_t j = 0; j < sizeof buf; j += 8) {
            uint64_t r = rng();
            memcpy(buf + j, &r, sizeof buf - j < 8 ? sizeof buf - j : 8);
        }
        /* Every alignment of the input buffer. */
        judge(buf + (i & 7));
    }
    /* Pure garbage almost never has the magic; now garbage behind a valid magic, version and
     * src, so the per-type rules see random values too. */
    for (int i = 0; i < 100000; i++) {
        for (size_t j = 0; j < DSM_WIRE_HDR_SIZE; j += 8) {
            uint64_t r = rng();
            memcpy(buf + j, &r, 8);
        }
        buf[0] = 0xa1;
        buf[1] = 0xd5;
        buf[2] = 3;
        buf[3] %= 33; /* every type, and one past the last (DSM_MSG_LOCK_WAKE = 31) */
        buf[8] = PEER;
        buf[9] = 0;
        if (buf[10] & 3) { /* flags: mostly plausible */
            buf[10] = (uint8_t)((buf[10] >> 2) & (buf[10] & 2 ? 7 : 0));
            buf[11] = 0;
        }
        if (buf[4] & 3) { /* len: mostly near the real sizes */
            static const uint32_t lens[] = {0,  0,    0,    1,    15,   16,  17,
                                            40, 1024, 1025, 4095, 4096, 4097};
            uint32_t l = lens[buf[5] % 13];
            memcpy(buf + 4, &l, 4);
        }
        if (buf[12] & 3) { /* aux: mostly small */
            buf[12] = (uint8_t)(buf[12] >> 2 & (buf[12] & 2 ? 0x7f : 1));
            buf[13] = buf[14] = buf[15] = 0;
        }
        uint64_t a0;
        memcpy(&a0, buf + 16, 8);
        switch (buf[31] % 4) {
        case 0:
            a0 %= NPAGES + 2;
            break;
        case 1:
            a0 = BASE + a0 % ((uint64_t)NPAGES * DSM_PAGE_SIZE + 8192) - 4096;
            break;
        default:
            break;
        }
        memcpy(buf + 16, &a0, 8);
        judge(buf);
    }
    print_message("garbage: %u accepted, %u rejected\n", n_accept, n_reject);
    assert_true(n_accept > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_encode_layout),
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_round_trip_flag_variants),
        cmocka_unit_test(test_decode_truncated),
        cmocka_unit_test(test_reject_magic),
        cmocka_unit_test(test_reject_version),
        cmocka_unit_test(test_reject_type),
        cmocka_unit_test(test_reject_len_above_max),
        cmocka_unit_test(test_reject_src_out_of_job),
        cmocka_unit_test(test_reject_wrong_peer),
        cmocka_unit_test(test_reject_unknown_flags),
        cmocka_unit_test(test_reject_flags_for_type),
        cmocka_unit_test(test_reject_zero_and_nodata),
        cmocka_unit_test(test_reject_page_index),
        cmocka_unit_test(test_reject_page_payload_len),
        cmocka_unit_test(test_reject_sync_address),
        cmocka_unit_test(test_reject_lock_aux),
        cmocka_unit_test(test_reject_barrier),
        cmocka_unit_test(test_reject_coll),
        cmocka_unit_test(test_reject_bye),
        cmocka_unit_test(test_reject_abort),
        cmocka_unit_test(test_reason_buffer),
        cmocka_unit_test(test_corrupt_sweep),
        cmocka_unit_test(test_random_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_wire.c - the frame format (transport/wire.c) and the RDMA frame check
 * (dsm_rdma_frame_check in transport/rdma_logic.c).
 *
 * The input is a byte stream as one TCP connection delivers it. It is parsed the way tcp.c
 * parses a receive buffer: decode a header, check it against the limits, then take the payload
 * of the length the header claims (if all of it is there), and so on until a bad frame (the
 * connection would close) or the end. For every header:
 *   - decode never reads past what it was given, and encode(decode(bytes)) == bytes (every
 *     byte of the header is a field, so the format is canonical);
 *   - dsm_wire_check accepts exactly the frames the rules of wire.h allow (spec_ok below, an
 *     independent statement of those rules), under realistic limits and under limits at the
 *     edge of 64-bit arithmetic; a rejection always comes with a reason;
 *   - an accepted payload fits the receiver's buffer (DSM_WIRE_MAX_PAYLOAD);
 *   - the same frame, as the exact bytes of one RDMA receive, passes dsm_rdma_frame_check,
 *     and one byte more or less fails it.
 * The whole input is also checked as a single RDMA receive.
 */
#include "fuzz.h"
#include "rdma_logic.h"

/* What the runtime passes: a 4 GiB global space at the default base, 4 nodes, connection of
 * node 1. */
static const struct dsm_wire_limits lim_real = {
    .npages = FUZZ_MEMORY / DSM_PAGE_SIZE, .base = FUZZ_BASE, .nodes = 4, .peer = 1};
/* A space that ends past 2^64 and the largest job: base + npages * page overflows, so an
 * address check done with plain addition would accept what it must not. */
static const struct dsm_wire_limits lim_edge = {
    .npages = 1ull << 52, .base = 0xfffff00000000000ull, .nodes = DSM_MAX_NODES, .peer = 63};

/* The rules, restated from the comments of wire.h and wire.c. */
static int spec_ok(const struct dsm_wire_hdr *h, const struct dsm_wire_limits *lim)
{
    unsigned t = h->type, f = h->flags;
    if (h->magic != DSM_WIRE_MAGIC || h->version != DSM_WIRE_VERSION) return 0;
    if (t < DSM_MSG_GET_S || t > DSM_MSG_LOCK_WAKE) return 0;
    if (h->len > DSM_WIRE_MAX_PAYLOAD) return 0;
    if (h->src >= lim->nodes || h->src != lim->peer) return 0;
    unsigned allowed = t == DSM_MSG_DATA_S    ? DSM_WF_ZERO
                       : t == DSM_MSG_DATA_M  ? DSM_WF_ZERO | DSM_WF_NODATA
                       : t == DSM_MSG_RC_GET  ? DSM_WF_RC_WRITE
                       : t == DSM_MSG_RC_DATA ? DSM_WF_ZERO
                       : t == DSM_MSG_RC_DIFF ? DSM_WF_RC_FULL
                                              : 0;
    if (f & ~allowed) return 0;
    if ((f & DSM_WF_ZERO) && (f & DSM_WF_NODATA)) return 0;
    uint32_t want = 0;
    switch (t) {
    case DSM_MSG_PUT_M:
    case DSM_MSG_WB:
        want = DSM_PAGE_SIZE;
        /* fall through */
    case DSM_MSG_GET_S:
    case DSM_MSG_GET_M:
    case DSM_MSG_PUT_S:
    case DSM_MSG_INV_ACK:
    case DSM_MSG_INV:
    case DSM_MSG_RECALL_S:
    case DSM_MSG_RECALL_I:
        if (h->arg0 >= lim->npages) return 0; /* a page index */
        break;
    case DSM_MSG_DATA_S:
    case DSM_MSG_DATA_M:
    case DSM_MSG_RC_DATA:
        if (h->arg0 >= lim->npages) return 0;
        want = (f & (DSM_WF_ZERO | DSM_WF_NODATA)) ? 0 : DSM_PAGE_SIZE;
        break;
    case DSM_MSG_RC_GET:
    case DSM_MSG_RC_WREG:
    case DSM_MSG_RC_WREG_ACK:
    case DSM_MSG_RC_CLASS:
    case DSM_MSG_RC_CLASS_ACK:
    case DSM_MSG_RC_DIFF_ACK:
        if (h->arg0 >= lim->npages) return 0;
        break;
    case DSM_MSG_RC_DIFF: /* runs of changed bytes (checked where applied), or a whole page */
        if (h->arg0 >= lim->npages) return 0;
        return (f & DSM_WF_RC_FULL) ? h->len == DSM_PAGE_SIZE : h->len >= 5;
    case DSM_MSG_LOCK_REQ:
    case DSM_MSG_LOCK_GRANT:
    case DSM_MSG_LOCK_REL:
    case DSM_MSG_LOCK_INIT:
    case DSM_MSG_LOCK_WAKE:
    case DSM_MSG_FREE: { /* an address inside the global space, in 128 bits: no overflow */
        unsigned __int128 end =
            (unsigned __int128)lim->base + (unsigned __int128)lim->npages * DSM_PAGE_SIZE;
        if (h->arg0 < lim->base || (unsigned __int128)h->arg0 >= end) return 0;
        if ((t == DSM_MSG_LOCK_REQ || t == DSM_MSG_LOCK_GRANT) && h->aux > 1) return 0;
        break;
    }
    case DSM_MSG_BARRIER:
        if (h->aux >= 64) return 0; /* the round indexes a 64-entry table */
        break;
    case DSM_MSG_COLL:
        want = 16; /* struct dsm_coll_rec */
        break;
    case DSM_MSG_ABORT:
        return h->len >= 1 && h->len <= 1024; /* a log line */
    case DSM_MSG_SHM:
        want = 40; /* struct dsm_shm_hello */
        break;
    default:
        break;
    }
    return h->len == want;
}

static int same_hdr(const struct dsm_wire_hdr *a, const struct dsm_wire_hdr *b)
{
    return a->magic == b->magic && a->version == b->version && a->type == b->type &&
           a->len == b->len && a->src == b->src && a->flags == b->flags && a->aux == b->aux &&
           a->arg0 == b->arg0 && a->arg1 == b->arg1;
}

/* dsm_wire_check under one set of limits; returns its verdict after checking it. */
static int check_one(const struct dsm_wire_hdr *h, const struct dsm_wire_limits *lim)
{
    char why[256];
    memset(why, 0x7f, sizeof why);
    int rc = dsm_wire_check(h, lim, why, sizeof why);
    FUZZ_CHECK(rc == DSM_WIRE_OK || rc == DSM_WIRE_BAD, "check returned %d", rc);
    int want = spec_ok(h, lim);
    FUZZ_CHECK((rc == DSM_WIRE_OK) == want,
               "dsm_wire_check %s a %s frame (len %u, src %u, flags 0x%x, aux %u, arg0 0x%llx) "
               "that the rules %s (limits: %llu pages at 0x%llx, %u nodes, peer %u)%s%s",
               rc == DSM_WIRE_OK ? "accepted" : "rejected", dsm_wire_type_name(h->type), h->len,
               h->src, h->flags, h->aux, (unsigned long long)h->arg0, want ? "allow" : "forbid",
               (unsigned long long)lim->npages, (unsigned long long)lim->base, lim->nodes,
               lim->peer, rc == DSM_WIRE_OK ? "" : ": ", rc == DSM_WIRE_OK ? "" : why);
    if (rc == DSM_WIRE_BAD) FUZZ_CHECK_MESSAGE(why, "dsm_wire_check");
    /* Callers that do not want the reason get the same verdict, and a one-byte buffer is
     * only ever given its terminator. */
    FUZZ_CHECK(dsm_wire_check(h, lim, NULL, 0) == rc, "verdict depends on the why buffer");
    char tiny[1] = {'x'};
    FUZZ_CHECK(dsm_wire_check(h, lim, tiny, sizeof tiny) == rc && (rc == 0 || tiny[0] == 0),
               "one-byte why buffer");
    return rc == DSM_WIRE_OK;
}

/* bytes[0..len) as one RDMA receive; `want` is the expected verdict. */
static void rdma_receive(const uint8_t *bytes, size_t len, int want,
                         const struct dsm_wire_limits *lim)
{
    uint8_t *copy = calloc(len ? len : 1, 1); /* exact size: ASan sees any read past it */
    FUZZ_CHECK(copy, "out of memory");
    if (len) memcpy(copy, bytes, len);
    struct dsm_wire_hdr h;
    char why[256] = "";
    int rc = dsm_rdma_frame_check(copy, len, lim, &h, why, sizeof why);
    FUZZ_CHECK(rc == (want ? DSM_WIRE_OK : DSM_WIRE_BAD),
               "dsm_rdma_frame_check on %zu bytes returned %d, expected %s (%s)", len, rc,
               want ? "OK" : "BAD", why);
    if (rc == DSM_WIRE_OK) {
        FUZZ_CHECK(len == DSM_WIRE_HDR_SIZE + (size_t)h.len && spec_ok(&h, lim),
                   "accepted frame of %zu bytes, header len %u", len, h.len);
    } else {
        FUZZ_CHECK_MESSAGE(why, "dsm_rdma_frame_check");
    }
    free(copy);
}

/* Is bytes[0..len) exactly one frame the limits accept? (The RDMA receiver's rule.) */
static int one_frame(const uint8_t *bytes, size_t len, const struct dsm_wire_limits *lim)
{
    struct dsm_wire_hdr h;
    if (len < DSM_WIRE_HDR_SIZE) return 0;
    dsm_wire_decode(bytes, len, &h);
    return spec_ok(&h, lim) && len == DSM_WIRE_HDR_SIZE + (size_t)h.len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rdma_receive(data, size, one_frame(data, size, &lim_real), &lim_real);

    size_t off = 0;
    for (;;) {
        size_t avail = size - off;
        struct dsm_wire_hdr h;
        memset(&h, 0xa5, sizeof h);
        int rc = dsm_wire_decode(data + off, avail, &h);
        if (avail < DSM_WIRE_HDR_SIZE) {
            FUZZ_CHECK(rc == DSM_WIRE_SHORT, "decode of %zu bytes returned %d", avail, rc);
            break;
        }
        FUZZ_CHECK(rc == DSM_WIRE_OK, "decode of a whole header returned %d", rc);

        uint8_t again[DSM_WIRE_HDR_SIZE];
        dsm_wire_encode(&h, again);
        FUZZ_CHECK(!memcmp(again, data + off, DSM_WIRE_HDR_SIZE),
                   "encode(decode(header)) differs from the header");
        struct dsm_wire_hdr h2;
        FUZZ_CHECK(dsm_wire_decode(again, sizeof again, &h2) == DSM_WIRE_OK && same_hdr(&h, &h2),
                   "decode(encode(h)) != h");
        FUZZ_CHECK(h.magic == fuzz_le(data + off, 2) && h.type == data[off + 3] &&
                       h.len == fuzz_le(data + off + 4, 4) && h.arg0 == fuzz_le(data + off + 16, 8),
                   "fields not where wire.h puts them");

        /* The edge limits with the sender they expect, so their address arithmetic is
         * reached by every frame, and as sent. */
        struct dsm_wire_hdr he = h;
        he.src = (uint16_t)lim_edge.peer;
        check_one(&he, &lim_edge);
        check_one(&h, &lim_edge);
        if (!check_one(&h, &lim_real)) break; /* the receiver closes the connection */

        size_t flen = DSM_WIRE_HDR_SIZE + (size_t)h.len;
        if (avail < flen) break; /* wait for the rest of the payload */
        /* Into a buffer of the size the receivers reserve for one payload. */
        uint8_t payload[DSM_WIRE_MAX_PAYLOAD];
        memcpy(payload, data + off + DSM_WIRE_HDR_SIZE, h.len);

        rdma_receive(data + off, flen, 1, &lim_real);
        rdma_receive(data + off, flen - 1, 0, &lim_real);
        if (avail > flen) rdma_receive(data + off, flen + 1, 0, &lim_real);
        off += flen;
    }
    return 0;
}

/*
 * wire.c - encoding, decoding and validation of frame headers (see wire.h for the format).
 *
 * Every received frame passes dsm_wire_check before anything acts on it, so this file is the
 * line between bytes from the network and the protocol engine: after it, a page index is
 * inside the global space, a payload length is exactly what the type carries, an address is
 * inside the global space and the sender is who the connection says it is. The rules are
 * deliberately exact (not "at most"): a frame that is merely plausible is still a sign of a
 * corrupt stream or a peer built from other sources, and it is cheaper to close the
 * connection than to reason about what a half-valid frame would do.
 *
 * Fields are moved byte by byte, so neither the host byte order nor the alignment of the
 * receive buffer matters here; the byte-order assertion below is for the payloads (pages and
 * collective records), which travel in host order.
 */
#include "wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Payload sizes that are fixed by the protocol rather than by the header. */
#define COLL_PAYLOAD   16u   /* two u64: the collective's remaining arguments */
#define ABORT_MAX_TEXT 1024u /* a log line, not a document */
#define BARRIER_ROUNDS 64u   /* the receiver indexes a 64-entry table by round */

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "ufdsm's payloads travel in host order, which must be little-endian");
_Static_assert(sizeof(struct dsm_shm_hello) == DSM_SHM_HELLO_LEN,
               "struct dsm_shm_hello has padding");
_Static_assert(DSM_WIRE_MAX_PAYLOAD >= COLL_PAYLOAD && DSM_WIRE_MAX_PAYLOAD >= ABORT_MAX_TEXT,
               "the fixed payloads (collective record, abort text) must fit a frame");

/* The runtime's own messages; the protocols' names come from coherence/messages.h. */
static const char *const type_names[DSM_MSG_TYPE_COUNT] = {
    [DSM_MSG_NONE] = "NONE",
    [DSM_MSG_LOCK_REQ] = "LOCK_REQ",
    [DSM_MSG_LOCK_GRANT] = "LOCK_GRANT",
    [DSM_MSG_LOCK_REL] = "LOCK_REL",
    [DSM_MSG_LOCK_INIT] = "LOCK_INIT",
    [DSM_MSG_BARRIER] = "BARRIER",
    [DSM_MSG_COLL] = "COLL",
    [DSM_MSG_FREE] = "FREE",
    [DSM_MSG_BYE] = "BYE",
    [DSM_MSG_ABORT] = "ABORT",
    [DSM_MSG_PING] = "PING",
    [DSM_MSG_SHM] = "SHM",
    [DSM_MSG_LOCK_WAKE] = "LOCK_WAKE",
};

const char *dsm_wire_type_name(unsigned type)
{
    if (type >= DSM_MSG_TYPE_COUNT) return "?";
    if (coh_msginfo(type).name) return coh_msginfo(type).name;
    return type_names[type] ? type_names[type] : "?";
}

void dsm_wire_init(struct dsm_wire_hdr *h, enum dsm_wire_type type, uint32_t src)
{
    memset(h, 0, sizeof *h);
    h->magic = DSM_WIRE_MAGIC;
    h->version = DSM_WIRE_VERSION;
    h->type = (uint8_t)type;
    h->src = (uint16_t)src;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

void dsm_wire_encode(const struct dsm_wire_hdr *h, void *out)
{
    uint8_t *p = out;
    put16(p + 0, h->magic);
    p[2] = h->version;
    p[3] = h->type;
    put32(p + 4, h->len);
    put16(p + 8, h->src);
    put16(p + 10, h->flags);
    put32(p + 12, h->aux);
    put64(p + 16, h->arg0);
    put64(p + 24, h->arg1);
}

int dsm_wire_decode(const void *in, size_t avail, struct dsm_wire_hdr *h)
{
    if (avail < DSM_WIRE_HDR_SIZE) return DSM_WIRE_SHORT;
    const uint8_t *p = in;
    h->magic = get16(p + 0);
    h->version = p[2];
    h->type = p[3];
    h->len = get32(p + 4);
    h->src = get16(p + 8);
    h->flags = get16(p + 10);
    h->aux = get32(p + 12);
    h->arg0 = get64(p + 16);
    h->arg1 = get64(p + 24);
    return DSM_WIRE_OK;
}

/* Flags each type may carry (messages.h); everything else must be clear. The runtime's own
 * messages carry none. */
static unsigned allowed_flags(unsigned type)
{
    return coh_msginfo(type).flags;
}

/* Fills `why` (if the caller gave room) and returns DSM_WIRE_BAD, so a rule is one statement. */
static int bad(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return DSM_WIRE_BAD;
}

/* The payload length a frame of this type must carry (-1: a diff, 5 .. a page); flags have
 * already been checked. */
static int expected_len(const struct dsm_wire_hdr *h)
{
    if (coh_msginfo(h->type).name) return coh_payload_len(h->type, h->flags);
    if (h->type == DSM_MSG_SHM) return (int)DSM_SHM_HELLO_LEN;
    return h->type == DSM_MSG_COLL ? (int)COLL_PAYLOAD : 0;
}

int dsm_wire_check(const struct dsm_wire_hdr *h, const struct dsm_wire_limits *lim, char *why,
                   size_t whylen)
{
    if (h->magic != DSM_WIRE_MAGIC)
        return bad(why, whylen, "magic 0x%04x is not 0x%04x", h->magic, DSM_WIRE_MAGIC);
    if (h->version != DSM_WIRE_VERSION)
        return bad(why, whylen, "version %u is not %u", h->version, DSM_WIRE_VERSION);
    if (h->type == DSM_MSG_NONE || h->type >= DSM_MSG_TYPE_COUNT)
        return bad(why, whylen, "type %u is not a message type", h->type);
    const char *tn = dsm_wire_type_name(h->type);
    /* Before anything else reads len: the receiver sizes its buffer by this bound. */
    if (h->len > DSM_WIRE_MAX_PAYLOAD)
        return bad(why, whylen, "%s payload length %u above the maximum %u", tn, h->len,
                   DSM_WIRE_MAX_PAYLOAD);
    if (h->src >= lim->nodes)
        return bad(why, whylen, "%s src %u outside the job (%u nodes)", tn, h->src, lim->nodes);
    if (h->src != lim->peer)
        return bad(why, whylen, "%s src %u on the connection of node %u", tn, h->src, lim->peer);
    if (h->flags & ~(unsigned)DSM_WF_ALL)
        return bad(why, whylen, "%s flags 0x%x has unknown bits", tn, h->flags);
    if (h->flags & ~allowed_flags(h->type))
        return bad(why, whylen, "%s flags 0x%x not allowed for this type (allowed 0x%x)", tn,
                   h->flags, allowed_flags(h->type));
    if ((h->flags & DSM_WF_ZERO) && (h->flags & DSM_WF_NODATA))
        return bad(why, whylen, "%s flags 0x%x has both ZERO and NODATA", tn, h->flags);

    const int proto = coh_msginfo(h->type).name != NULL;
    if (proto && h->arg0 >= lim->npages)
        return bad(why, whylen, "%s page index %llu outside the global space (%llu pages)", tn,
                   (unsigned long long)h->arg0, (unsigned long long)lim->npages);
    switch (h->type) {
    case DSM_MSG_LOCK_REQ:
    case DSM_MSG_LOCK_GRANT:
    case DSM_MSG_LOCK_REL:
    case DSM_MSG_LOCK_INIT:
    case DSM_MSG_LOCK_WAKE:
    case DSM_MSG_FREE:
        /* Compared page-wise so that a huge npages cannot overflow base + size. */
        if (h->arg0 < lim->base || (h->arg0 - lim->base) / DSM_PAGE_SIZE >= lim->npages)
            return bad(why, whylen,
                       "%s address 0x%llx outside the global space [0x%llx, +%llu pages)", tn,
                       (unsigned long long)h->arg0, (unsigned long long)lim->base,
                       (unsigned long long)lim->npages);
        if ((h->type == DSM_MSG_LOCK_REQ || h->type == DSM_MSG_LOCK_GRANT) && h->aux > 1)
            return bad(why, whylen, "%s aux %u is not 0 or 1", tn, h->aux);
        break;
    case DSM_MSG_BARRIER:
        if (h->aux >= BARRIER_ROUNDS)
            return bad(why, whylen, "%s round (aux) %u is not below %u", tn, h->aux,
                       BARRIER_ROUNDS);
        break;
    case DSM_MSG_ABORT:
        if (h->len < 1 || h->len > ABORT_MAX_TEXT)
            return bad(why, whylen, "%s payload length %u outside [1, %u]", tn, h->len,
                       ABORT_MAX_TEXT);
        return DSM_WIRE_OK;
    default:
        break;
    }

    int want = expected_len(h);
    if (want < 0) { /* a diff: runs of changed bytes, their format checked where applied */
        if (h->len < 5)
            return bad(why, whylen, "%s payload length %u with flags 0x%x (expected 5 to %u)", tn,
                       h->len, h->flags, DSM_PAGE_SIZE);
    } else if (h->len != (uint32_t)want) {
        return bad(why, whylen, "%s payload length %u with flags 0x%x (expected %d)", tn, h->len,
                   h->flags, want);
    }
    return DSM_WIRE_OK;
}

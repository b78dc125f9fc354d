/*
 * rdma_logic.c - the device-free parts of the RDMA transport (see rdma_logic.h for why each
 * rule is what it is). Pure functions: no I/O, no allocation, no global state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "net.h"
#include "rdma_logic.h"

/* ---------------------------------------------------------------- credits */

void dsm_rdma_credits_init(struct dsm_rdma_credits *c, uint32_t peer_depth, uint32_t own_depth)
{
    c->depth = peer_depth;
    c->avail = peer_depth;
    c->to_return = 0;
    /* Half our buffers: a node that only receives returns credits in few messages, and the
     * sender still has half its window left when they arrive. */
    c->thresh = own_depth / 2 > 2 ? own_depth / 2 : 2;
}

int dsm_rdma_credits_can_data(const struct dsm_rdma_credits *c)
{
    return c->avail > 1;
}

int dsm_rdma_credits_want_msg(const struct dsm_rdma_credits *c)
{
    return c->to_return >= c->thresh && c->avail >= 1;
}

void dsm_rdma_credits_take(struct dsm_rdma_credits *c)
{
    if (c->avail) c->avail--;
}

uint32_t dsm_rdma_credits_piggyback(struct dsm_rdma_credits *c)
{
    uint32_t r = c->to_return;
    c->to_return = 0;
    return r;
}

int dsm_rdma_credits_returned(struct dsm_rdma_credits *c, uint32_t imm)
{
    if (imm > c->depth - c->avail) return -1;
    c->avail += imm;
    return 0;
}

void dsm_rdma_credits_consumed(struct dsm_rdma_credits *c)
{
    c->to_return++;
}

/* ---------------------------------------------------------------- send slots */

void dsm_rdma_ring_init(struct dsm_rdma_ring *r, uint32_t n)
{
    r->n = n;
    r->done = r->posted = r->filled = 0;
}

int dsm_rdma_ring_fill(struct dsm_rdma_ring *r)
{
    if (r->filled - r->done >= r->n) return -1;
    return (int)(r->filled++ % r->n);
}

uint32_t dsm_rdma_ring_unposted(const struct dsm_rdma_ring *r)
{
    return r->filled - r->posted;
}

uint32_t dsm_rdma_ring_inflight(const struct dsm_rdma_ring *r)
{
    return r->posted - r->done;
}

int dsm_rdma_ring_complete(struct dsm_rdma_ring *r, uint32_t slot)
{
    if (r->posted == r->done || slot != r->done % r->n) return -1;
    r->done++;
    return 0;
}

/* ---------------------------------------------------------------- frames */

int dsm_rdma_frame_check(const void *buf, size_t len, const struct dsm_wire_limits *lim,
                         struct dsm_wire_hdr *h, char *why, size_t whylen)
{
    if (len < DSM_WIRE_HDR_SIZE || dsm_wire_decode(buf, len, h) != DSM_WIRE_OK) {
        snprintf(why, whylen, "a message of %zu bytes, shorter than a frame header (%u)", len,
                 DSM_WIRE_HDR_SIZE);
        return DSM_WIRE_BAD;
    }
    if (dsm_wire_check(h, lim, why, whylen) != DSM_WIRE_OK) return DSM_WIRE_BAD;
    if (len != DSM_WIRE_HDR_SIZE + (size_t)h->len) {
        snprintf(why, whylen, "a %s frame of %zu bytes whose header says %u",
                 dsm_wire_type_name(h->type), len, DSM_WIRE_HDR_SIZE + h->len);
        return DSM_WIRE_BAD;
    }
    return DSM_WIRE_OK;
}

/* ---------------------------------------------------------------- private data */

uint64_t dsm_rdma_job_hash(const char *job)
{
    uint64_t x = 0xcbf29ce484222325ull; /* FNV-1a 64 */
    for (const unsigned char *s = (const unsigned char *)job; *s; s++) {
        x ^= *s;
        x *= 0x100000001b3ull;
    }
    return x;
}

void dsm_rdma_priv_encode(uint8_t *out, int rank, uint32_t depth, const struct dsm_job_desc *d)
{
    memset(out, 0, DSM_RDMA_PRIV_SIZE);
    dsm_net_put32(out, DSM_RDMA_PRIV_MAGIC);
    dsm_net_put16(out + 4, DSM_RDMA_PRIV_VERSION);
    dsm_net_put16(out + 6, (uint16_t)d->version);
    dsm_net_put16(out + 8, (uint16_t)rank);
    dsm_net_put16(out + 10, (uint16_t)d->nodes);
    dsm_net_put32(out + 12, d->page_size);
    dsm_net_put64(out + 16, d->region_base);
    dsm_net_put64(out + 24, d->region_size);
    dsm_net_put64(out + 32, dsm_rdma_job_hash(d->job));
    dsm_net_put32(out + 40, depth);
}

static void seal_of(const uint8_t *in, const struct dsm_auth_key *key, int to, int role,
                    uint8_t out[32])
{
    uint8_t m[DSM_RDMA_PRIV_SEALED + 3];
    memcpy(m, in, DSM_RDMA_PRIV_SEALED);
    dsm_net_put16(m + DSM_RDMA_PRIV_SEALED, (uint16_t)to);
    m[DSM_RDMA_PRIV_SEALED + 2] = (uint8_t)role;
    dsm_auth_hmac(key, "ufdsm-rdma-1", m, sizeof m, out);
}

void dsm_rdma_priv_seal(uint8_t *out, const struct dsm_auth_key *key, int to, int role)
{
    uint8_t mac[32];
    seal_of(out, key, to, role, mac);
    memcpy(out + DSM_RDMA_PRIV_SEALED, mac, DSM_RDMA_PRIV_SEAL);
}

int dsm_rdma_priv_verify(const uint8_t *in, size_t len, const struct dsm_auth_key *key, int self,
                         int sender_role, char *why, size_t whylen)
{
    if (!in || len < DSM_RDMA_PRIV_SIZE) {
        snprintf(why, whylen, "no ufdsm connection data (%zu bytes, expected %d)", in ? len : 0,
                 DSM_RDMA_PRIV_SIZE);
        return -1;
    }
    uint8_t mac[32];
    seal_of(in, key, self, sender_role, mac);
    if (!dsm_auth_equal(mac, in + DSM_RDMA_PRIV_SEALED, DSM_RDMA_PRIV_SEAL)) {
        snprintf(why, whylen,
                 "connection data not sealed with this job's secret (a stranger, or a node "
                 "given another DSM_SECRET)");
        return -1;
    }
    return 0;
}

int dsm_rdma_priv_decode(const uint8_t *in, size_t len, struct dsm_rdma_priv *p, char *why,
                         size_t whylen)
{
    memset(p, 0, sizeof *p);
    if (!in || len < DSM_RDMA_PRIV_SIZE) {
        snprintf(why, whylen, "no ufdsm connection data (%zu bytes, expected %d)", in ? len : 0,
                 DSM_RDMA_PRIV_SIZE);
        return -1;
    }
    uint32_t magic = dsm_net_get32(in);
    if (magic != DSM_RDMA_PRIV_MAGIC) {
        snprintf(why, whylen, "connection data that is not from ufdsm (magic 0x%08x)", magic);
        return -1;
    }
    unsigned fmt = dsm_net_get16(in + 4);
    if (fmt != DSM_RDMA_PRIV_VERSION) {
        snprintf(why, whylen,
                 "connection data format %u, expected %u — run the same ufdsm build everywhere",
                 fmt, DSM_RDMA_PRIV_VERSION);
        return -1;
    }
    p->desc.version = dsm_net_get16(in + 6);
    p->rank = dsm_net_get16(in + 8);
    p->desc.nodes = dsm_net_get16(in + 10);
    p->desc.page_size = dsm_net_get32(in + 12);
    p->desc.region_base = dsm_net_get64(in + 16);
    p->desc.region_size = dsm_net_get64(in + 24);
    p->job_hash = dsm_net_get64(in + 32);
    p->depth = dsm_net_get32(in + 40);
    return 0;
}

int dsm_rdma_priv_compare(const struct dsm_job_desc *here, const struct dsm_rdma_priv *there,
                          const char *who, char *err, size_t errlen)
{
    const struct dsm_job_desc *t = &there->desc;
    if (t->version != here->version) {
        snprintf(err, errlen,
                 "%s speaks wire version %u, this node %u — run the same ufdsm build everywhere",
                 who, t->version, here->version);
        return -1;
    }
    if (there->job_hash != dsm_rdma_job_hash(here->job)) {
        snprintf(err, errlen,
                 "%s belongs to another job (job name hash %016" PRIx64 ", this node's job '%s' "
                 "hashes to %016" PRIx64 ") — set the same DSM_JOB everywhere",
                 who, there->job_hash, here->job, dsm_rdma_job_hash(here->job));
        return -1;
    }
    if (t->nodes != here->nodes || t->page_size != here->page_size ||
        t->region_base != here->region_base || t->region_size != here->region_size) {
        snprintf(err, errlen,
                 "%s has another job shape: %u nodes, page %u, base 0x%" PRIx64 ", %" PRIu64
                 " bytes; this node: %u nodes, page %u, base 0x%" PRIx64 ", %" PRIu64
                 " bytes — set the same DSM_NODES, DSM_BASE and DSM_MEMORY everywhere",
                 who, t->nodes, t->page_size, t->region_base, t->region_size, here->nodes,
                 here->page_size, here->region_base, here->region_size);
        return -1;
    }
    if (there->depth < DSM_RDMA_DEPTH_MIN || there->depth > DSM_RDMA_DEPTH_MAX) {
        snprintf(err, errlen, "%s says it posts %u receive buffers per peer (valid: %u..%u)", who,
                 there->depth, DSM_RDMA_DEPTH_MIN, DSM_RDMA_DEPTH_MAX);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- registration budget */

uint32_t dsm_rdma_depth(uint64_t memlock, int peers, uint64_t *need)
{
    if (peers < 1) peers = 1;
    uint64_t per = 2ull * (uint64_t)peers * DSM_RDMA_STRIDE; /* bytes per unit of depth */
    uint64_t budget = memlock == UINT64_MAX ? UINT64_MAX : memlock / 4 * 3;
    uint64_t d = budget / per;
    if (d > DSM_RDMA_DEPTH_MAX) d = DSM_RDMA_DEPTH_MAX;
    if (d < DSM_RDMA_DEPTH_MIN) {
        /* Limit l with l / 4 * 3 >= per * MIN, rounded up to a MiB. */
        uint64_t n = (per * DSM_RDMA_DEPTH_MIN + 2) / 3 * 4;
        *need = (n + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
        return 0;
    }
    *need = 0;
    return (uint32_t)d;
}

/* ---------------------------------------------------------------- selection records */

size_t dsm_sel_encode(const struct dsm_sel_rec *r, char *out, size_t outlen)
{
    /* why is last and free text: newlines would break nothing, but keep the logs one line. */
    char why[DSM_SEL_WHY];
    size_t k = 0;
    for (const char *s = r->why; *s && k + 1 < sizeof why; s++) why[k++] = *s == '\n' ? ' ' : *s;
    why[k] = 0;
    int n = snprintf(out, outlen, DSM_SEL_PREFIX "phase=%d ok=%d port=%u addr=%s shm=%s why=%s",
                     r->phase, r->ok ? 1 : 0, r->port, r->addr[0] ? r->addr : "-",
                     r->shm[0] ? r->shm : "-", why);
    if (n < 0) return 0;
    return (size_t)n < outlen ? (size_t)n : outlen - 1;
}

int dsm_sel_parse(const void *buf, size_t len, struct dsm_sel_rec *r)
{
    memset(r, 0, sizeof *r);
    char s[DSM_SEL_TEXT];
    if (!buf || len >= sizeof s || len < sizeof DSM_SEL_PREFIX - 1) return -1;
    memcpy(s, buf, len);
    s[len] = 0;
    if (strlen(s) != len || strncmp(s, DSM_SEL_PREFIX, sizeof DSM_SEL_PREFIX - 1)) return -1;
    int phase, ok, used = -1;
    unsigned port;
    char addr[64], shm[DSM_SEL_SHM];
    if (sscanf(s + sizeof DSM_SEL_PREFIX - 1, "phase=%d ok=%d port=%u addr=%63s shm=%159s why=%n",
               &phase, &ok, &port, addr, shm, &used) != 5 ||
        used < 0)
        return -1;
    if ((phase != 1 && phase != 2) || (ok != 0 && ok != 1) || port > 65535) return -1;
    r->phase = phase;
    r->ok = ok;
    r->port = (uint16_t)port;
    if (strcmp(addr, "-")) snprintf(r->addr, sizeof r->addr, "%s", addr);
    if (strcmp(shm, "-")) snprintf(r->shm, sizeof r->shm, "%s", shm);
    snprintf(r->why, sizeof r->why, "%s", s + sizeof DSM_SEL_PREFIX - 1 + used);
    /* The peer's text goes into our log line that says which transport was chosen: no
     * control characters (a newline would forge a log line), as for job names (net.c). */
    for (char *c = r->why; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    if (phase == 1 && ok) {
        struct sockaddr_storage ss;
        socklen_t l;
        if (!port || dsm_net_numeric(r->addr, r->port, &ss, &l)) return -1;
    }
    return 0;
}

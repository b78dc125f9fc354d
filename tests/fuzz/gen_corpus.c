/*
 * gen_corpus.c - writes the seed corpus of every harness from the real encoders:
 *   fuzz_gen_corpus DIR      (DIR/wire, DIR/records, DIR/boot_join, DIR/boot_reply, DIR/auth)
 * wire: one valid frame of each type (payloads included) and a stream of several;
 * records: a hello, a job description, RDMA private data and selection records, each behind
 *   the byte that picks its decoder;
 * boot_join: JOIN records captured from dsm_bootstrap joiners (boot_joiner), one and two;
 * boot_reply: replies captured from a dsm_bootstrap coordinator (boot_coordinator) fed with
 *   those: a TABLE (own port replaced by BOOT_PORT_SELF), a MISMATCH and a FAIL;
 * auth: a stranger's challenge and honest peers with equal, different and too short secrets.
 * Seeds are the starting points, kept few and small; libFuzzer finds the rest. The captured
 * records carry the kernel's port numbers of the run, so regenerating changes those bytes.
 */
#include <errno.h>
#include <sys/stat.h>

#include "auth.h"
#include "boot.h"
#include "fuzz.h"
#include "net.h"
#include "rdma_logic.h"

static const char *outdir;

static void put_file(const char *harness, const char *name, const void *a, size_t alen,
                     const void *b, size_t blen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, harness);
    if (mkdir(path, 0755) && errno != EEXIST) {
        fprintf(stderr, "gen_corpus: cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", outdir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) ||
        fclose(f)) {
        fprintf(stderr, "gen_corpus: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* ---------------------------------------------------------------- wire */

/* Appends one frame of node 1 to buf at *len. */
static void frame(uint8_t *buf, size_t *len, enum dsm_wire_type t, unsigned flags, uint32_t aux,
                  uint64_t arg0, const void *payload, uint32_t plen)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, t, 1);
    h.flags = (uint16_t)flags;
    h.aux = aux;
    h.arg0 = arg0;
    h.arg1 = 0x1234;
    h.len = plen;
    dsm_wire_encode(&h, buf + *len);
    if (plen) memcpy(buf + *len + DSM_WIRE_HDR_SIZE, payload, plen);
    *len += DSM_WIRE_HDR_SIZE + plen;
}

static void gen_wire(void)
{
    static uint8_t page[DSM_PAGE_SIZE], buf[8 * (DSM_WIRE_HDR_SIZE + DSM_PAGE_SIZE)];
    for (size_t i = 0; i < sizeof page; i++) page[i] = (uint8_t)(i * 7);
    const uint64_t lock = FUZZ_BASE + 0x40; /* a mutex in the global space */
    const char abort_text[] = "node 1: out of memory in dsm_alloc";
    const uint64_t coll[2] = {4096, 1};
    struct dsm_shm_hello shm = {
        .boot_id = {0x0b, 0x00, 0x71, 0xd0}, .ino = 4242, .dev = 17, .pid = 1, .fd = 9};
    struct {
        const char *name;
        enum dsm_wire_type t;
        unsigned flags;
        uint32_t aux;
        uint64_t arg0;
        const void *payload;
        uint32_t plen;
    } f[] = {
        {"get_s", DSM_MSG_GET_S, 0, 0, 5, NULL, 0},
        {"rc_get_write", DSM_MSG_RC_GET, DSM_WF_RC_WRITE, 0, 6, NULL, 0},
        {"put_s", DSM_MSG_PUT_S, 0, 0, 7, NULL, 0},
        {"put_m", DSM_MSG_PUT_M, 0, 0, 8, page, DSM_PAGE_SIZE},
        {"wb", DSM_MSG_WB, 0, 0, 9, page, DSM_PAGE_SIZE},
        {"inv_ack", DSM_MSG_INV_ACK, 0, 0, 10, NULL, 0},
        {"data_s", DSM_MSG_DATA_S, 0, 0, 11, page, DSM_PAGE_SIZE},
        {"data_s_zero", DSM_MSG_DATA_S, DSM_WF_ZERO, 0, 12, NULL, 0},
        {"data_m_nodata", DSM_MSG_DATA_M, DSM_WF_NODATA, 0, 13, NULL, 0},
        {"inv", DSM_MSG_INV, 0, 0, 14, NULL, 0},
        {"recall_s", DSM_MSG_RECALL_S, 0, 0, 15, NULL, 0},
        {"recall_i", DSM_MSG_RECALL_I, 0, 0, (FUZZ_MEMORY / DSM_PAGE_SIZE) - 1, NULL, 0},
        {"lock_req_try", DSM_MSG_LOCK_REQ, 0, 1, lock, NULL, 0},
        {"lock_grant", DSM_MSG_LOCK_GRANT, 0, 1, lock, NULL, 0},
        {"lock_rel", DSM_MSG_LOCK_REL, 0, 0, lock, NULL, 0},
        {"lock_init", DSM_MSG_LOCK_INIT, 0, 0, lock, NULL, 0},
        {"lock_wake", DSM_MSG_LOCK_WAKE, 0, 0, lock, NULL, 0},
        {"barrier", DSM_MSG_BARRIER, 0, 3, 17, NULL, 0},
        {"coll", DSM_MSG_COLL, 0, 0, 2, coll, sizeof coll},
        {"free", DSM_MSG_FREE, 0, 0, FUZZ_BASE + FUZZ_MEMORY - 64, NULL, 0},
        {"bye", DSM_MSG_BYE, 0, 0, 0, NULL, 0},
        {"ping", DSM_MSG_PING, 0, 0, 0, NULL, 0},
        {"shm", DSM_MSG_SHM, 0, 0, 0, &shm, sizeof shm},
        {"abort", DSM_MSG_ABORT, 0, 0, 0, abort_text, sizeof abort_text - 1},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        size_t len = 0;
        frame(buf, &len, f[i].t, f[i].flags, f[i].aux, f[i].arg0, f[i].payload, f[i].plen);
        put_file("wire", f[i].name, buf, len, NULL, 0);
    }
    /* What one receive of a busy connection holds: several frames, the last one cut short. */
    size_t len = 0;
    frame(buf, &len, DSM_MSG_GET_S, 0, 0, 1, NULL, 0);
    frame(buf, &len, DSM_MSG_LOCK_REQ, 0, 0, lock, NULL, 0);
    frame(buf, &len, DSM_MSG_DATA_M, DSM_WF_ZERO, 0, 2, NULL, 0);
    frame(buf, &len, DSM_MSG_COLL, 0, 0, 3, coll, sizeof coll);
    frame(buf, &len, DSM_MSG_PUT_M, 0, 0, 4, page, DSM_PAGE_SIZE);
    put_file("wire", "stream", buf, len - DSM_PAGE_SIZE / 2, NULL, 0);
}

/* ---------------------------------------------------------------- records */

static void gen_records(void)
{
    struct dsm_job_desc d;
    fuzz_desc(&d, 4);
    uint8_t sel = 0;
    uint8_t hello[DSM_NET_HELLO_SIZE];
    dsm_net_hello_encode(hello, 2, &d);
    put_file("records", "hello", &sel, 1, hello, sizeof hello);
    sel = 1;
    uint8_t desc[DSM_NET_DESC_SIZE];
    dsm_net_desc_put(desc, &d);
    put_file("records", "desc", &sel, 1, desc, sizeof desc);
    sel = 2;
    uint8_t priv[DSM_RDMA_PRIV_SIZE];
    dsm_rdma_priv_encode(priv, 2, 32, &d);
    put_file("records", "priv", &sel, 1, priv, sizeof priv);
    sel = 3;
    struct dsm_sel_rec recs[] = {
        {.phase = 1, .ok = 1, .port = 40000, .addr = "10.0.0.2"},
        {.phase = 1, .ok = 1, .port = 40001, .addr = "fe80::1"},
        {.phase = 1, .ok = 0, .why = "no RDMA device (is rdma_rxe or a NIC driver loaded?)"},
        {.phase = 2, .ok = 1},
    };
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        char text[DSM_SEL_WHY + 160], name[32];
        size_t n = dsm_sel_encode(&recs[i], text, sizeof text);
        snprintf(name, sizeof name, "select_%zu", i + 1);
        put_file("records", name, &sel, 1, text, n);
    }
}

/* ---------------------------------------------------------------- bootstrap */

static struct boot_join_run jr;
static struct boot_coord_run cr;

/* The JOIN node `rank` of a `nodes`-node job sends (the reply it gets is empty). */
static void capture_join(int rank, int nodes, uint8_t out[BOOT_JOIN_SIZE])
{
    memset(&jr, 0, sizeof jr);
    jr.rank = rank;
    jr.nodes = nodes;
    boot_joiner(&jr);
    if (jr.join_len != BOOT_JOIN_SIZE) {
        fprintf(stderr, "gen_corpus: node %d sent %zu bytes, not a JOIN (%s)\n", rank, jr.join_len,
                jr.err);
        exit(1);
    }
    memcpy(out, jr.join, BOOT_JOIN_SIZE);
}

/* The reply node 0 sends to the first of these JOINs. */
static void capture_reply(const uint8_t *joins, size_t len, const char *name, int patch_self)
{
    memset(&cr, 0, sizeof cr);
    cr.data = joins;
    cr.size = len;
    boot_coordinator(&cr);
    if (cr.reply_len[0] != BOOT_REPLY_SIZE) {
        fprintf(stderr, "gen_corpus: node 0 replied %zu bytes (%s)\n", cr.reply_len[0], cr.err);
        exit(1);
    }
    if (patch_self) { /* entry 1: the joiner's own, whose port boot_joiner fills in */
        uint8_t *port = cr.reply[0] + BOOT_TABLE_OFF + BOOT_ENTRY_SIZE + 64;
        port[0] = port[1] = 0xff;
    }
    put_file("boot_reply", name, cr.reply[0], BOOT_REPLY_SIZE, NULL, 0);
}

static void gen_boot(void)
{
    uint8_t two[BOOT_JOIN_SIZE], three[2 * BOOT_JOIN_SIZE];
    capture_join(1, 2, two);
    capture_join(1, 3, three);
    capture_join(2, 3, three + BOOT_JOIN_SIZE);
    put_file("boot_join", "join_1of2", two, sizeof two, NULL, 0);
    put_file("boot_join", "join_2of3", three, sizeof three, NULL, 0);

    capture_reply(three, sizeof three, "table_3", 1);
    uint8_t bad[BOOT_JOIN_SIZE];
    memcpy(bad, two, sizeof bad);
    bad[16] = 'F'; /* job "Fuzz-job": another job */
    capture_reply(bad, sizeof bad, "mismatch", 0);
    memcpy(bad, two, sizeof bad);
    bad[12] = 7; /* node 7 of a 2-node job */
    capture_reply(bad, sizeof bad, "fail", 0);
}

/* ---------------------------------------------------------------- auth */

/* A stranger's valid challenge with a garbage response (mode 0), and honest peers holding
 * the same secret, another one, and one too short (mode 1). */
static void gen_auth(void)
{
    struct dsm_auth_key key;
    struct dsm_auth a;
    uint8_t rec[1 + 2 * DSM_AUTH_REC_SIZE] = {0};
    char why[256];
    if (dsm_auth_key_init(&key, NULL, 0, why, sizeof why) ||
        dsm_auth_start(&a, &key, DSM_AUTH_CONNECTOR, rec + 1)) {
        fprintf(stderr, "gen_corpus: libsodium: %s\n", why);
        exit(1);
    }
    memset(rec + 1 + DSM_AUTH_REC_SIZE, 0x41, DSM_AUTH_REC_SIZE);
    put_file("auth", "stranger", rec, sizeof rec, NULL, 0);
    static const uint8_t same[] = "\x01\x00dsmrun-0123456789abcdef",
                         other[] = "\x01\x02dsmrun-0123456789abcdef", shorty[] = "\x01\x00short";
    put_file("auth", "honest_same", same, sizeof same - 1, NULL, 0);
    put_file("auth", "honest_other", other, sizeof other - 1, NULL, 0);
    put_file("auth", "honest_short", shorty, sizeof shorty - 1, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr,
                "usage: %s DIR — writes the seed corpus of each harness into DIR/<harness>\n",
                argv[0]);
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) && errno != EEXIST) {
        fprintf(stderr, "gen_corpus: cannot create %s: %s\n", outdir, strerror(errno));
        return 1;
    }
    gen_wire();
    gen_records();
    gen_boot();
    gen_auth();
    return 0;
}

/*
 * test_rdma_logic.c - the RDMA transport's device-free rules (transport/rdma_logic.h):
 * credit accounting (no overrun, no deadlock, no credit-message ping-pong, a lying peer
 * caught), the send-slot ring (order, wrap-around, out-of-order completion caught), frames
 * checked with the same rules as TCP plus the exact length, connection private data (every
 * mismatch named), the registration budget under RLIMIT_MEMLOCK, and the selection records.
 *
 * The credit tests run two simulated endpoints against each other: "posted buffers" are
 * counters, a message in flight is a queue entry, so a rule violation shows as a receiver
 * without a posted buffer (what RNR would be on a real QP) or as both sides stuck.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "rdma_logic.h"
#include "wire.h"

/* ---------------------------------------------------------------- credits */

static void credits_basic(void **state)
{
    (void)state;
    struct dsm_rdma_credits c;
    dsm_rdma_credits_init(&c, 8, 16);
    assert_int_equal(c.avail, 8);
    assert_int_equal(c.thresh, 8);
    /* Data may use all but the last credit. */
    for (int i = 0; i < 7; i++) {
        assert_true(dsm_rdma_credits_can_data(&c));
        dsm_rdma_credits_take(&c);
    }
    assert_false(dsm_rdma_credits_can_data(&c));
    assert_int_equal(c.avail, 1);
    /* The last one is for a credit message, once enough is owed. */
    assert_false(dsm_rdma_credits_want_msg(&c));
    for (int i = 0; i < 8; i++) dsm_rdma_credits_consumed(&c);
    assert_true(dsm_rdma_credits_want_msg(&c));
    dsm_rdma_credits_take(&c);
    assert_int_equal(dsm_rdma_credits_piggyback(&c), 8);
    assert_int_equal(c.to_return, 0);
    assert_int_equal(c.avail, 0);
    assert_false(dsm_rdma_credits_want_msg(&c));
    /* Returned credits: up to what is outstanding, never more. */
    assert_int_equal(dsm_rdma_credits_returned(&c, 3), 0);
    assert_int_equal(c.avail, 3);
    assert_int_equal(dsm_rdma_credits_returned(&c, 6), -1);
    assert_int_equal(c.avail, 3);
    assert_int_equal(dsm_rdma_credits_returned(&c, 5), 0);
    assert_int_equal(c.avail, 8);
    assert_int_equal(dsm_rdma_credits_returned(&c, 1), -1);
    assert_int_equal(dsm_rdma_credits_returned(&c, 0), 0);
}

static void credits_thresh_floor(void **state)
{
    (void)state;
    struct dsm_rdma_credits c;
    dsm_rdma_credits_init(&c, 2, 3);
    assert_int_equal(c.thresh, 2); /* never 1: a credit message would answer a credit message */
}

/* Two endpoints, a and b. Each has `depth` receive buffers; a message is (credits it
 * carries, is it data). Links are FIFOs. The receiver consumes a buffer per message and
 * re-posts it after "delivery"; data frames queue in a backlog when credits are short. */
#define QCAP 4096
struct ep {
    struct dsm_rdma_credits cr;
    int posted;  /* free receive buffers */
    int backlog; /* data frames waiting for a credit */
    int sent_data, got_data, credit_msgs;
    int in_q[QCAP][2]; /* incoming: {imm, is_data} */
    int q_head, q_tail;
};

static void ep_init(struct ep *e, int depth)
{
    memset(e, 0, sizeof *e);
    dsm_rdma_credits_init(&e->cr, (uint32_t)depth, (uint32_t)depth);
    e->posted = depth;
}

/* Like rdma.c's flush: move the backlog under credits, then a credit message if owed and
 * nothing carried the credits. Returns the number of messages sent. */
static int ep_flush(struct ep *e, struct ep *to)
{
    int n = 0, carried = 0;
    while (e->backlog && dsm_rdma_credits_can_data(&e->cr)) {
        dsm_rdma_credits_take(&e->cr);
        uint32_t imm = carried ? 0 : dsm_rdma_credits_piggyback(&e->cr);
        carried = 1;
        assert_true(to->q_tail - to->q_head < QCAP);
        to->in_q[to->q_tail % QCAP][0] = (int)imm;
        to->in_q[to->q_tail % QCAP][1] = 1;
        to->q_tail++;
        e->backlog--;
        e->sent_data++;
        n++;
    }
    if (!carried && dsm_rdma_credits_want_msg(&e->cr)) {
        dsm_rdma_credits_take(&e->cr);
        to->in_q[to->q_tail % QCAP][0] = (int)dsm_rdma_credits_piggyback(&e->cr);
        to->in_q[to->q_tail % QCAP][1] = 0;
        to->q_tail++;
        e->credit_msgs++;
        n++;
    }
    return n;
}

/* Receives up to `max` messages. Each must find a posted buffer (no RNR). */
static int ep_recv(struct ep *e, int max)
{
    int n = 0;
    while (e->q_head != e->q_tail && n < max) {
        int imm = e->in_q[e->q_head % QCAP][0], data = e->in_q[e->q_head % QCAP][1];
        e->q_head++;
        assert_true(e->posted > 0); /* the receiver had a buffer for it */
        e->posted--;
        assert_int_equal(dsm_rdma_credits_returned(&e->cr, (uint32_t)imm), 0);
        if (data) e->got_data++;
        e->posted++; /* delivered, re-posted */
        dsm_rdma_credits_consumed(&e->cr);
        n++;
    }
    return n;
}

static void run_pair(int depth, int burst_a, int burst_b, int recv_per_step)
{
    struct ep a, b;
    ep_init(&a, depth);
    ep_init(&b, depth);
    a.backlog = burst_a;
    b.backlog = burst_b;
    int idle = 0;
    for (int step = 0; step < 1000000 && idle < 3; step++) {
        int moved = ep_flush(&a, &b) + ep_flush(&b, &a);
        moved += ep_recv(&a, recv_per_step) + ep_recv(&b, recv_per_step);
        idle = moved ? 0 : idle + 1;
    }
    assert_int_equal(a.backlog, 0); /* no deadlock: every frame went out */
    assert_int_equal(b.backlog, 0);
    assert_int_equal(b.got_data, burst_a);
    assert_int_equal(a.got_data, burst_b);
    /* Credit messages are a small fraction, and they stop (no ping-pong): idle reached. */
    assert_true(a.credit_msgs + b.credit_msgs <= (burst_a + burst_b) / 2 + 2);
}

static void credits_one_way_burst(void **state)
{
    (void)state;
    run_pair(8, 10000, 0, 1);
    run_pair(8, 10000, 0, 1000);
    run_pair(64, 100000, 0, 3);
}

static void credits_both_ways(void **state)
{
    (void)state;
    run_pair(8, 5000, 5000, 1);
    run_pair(8, 7, 7, 1);
    run_pair(16, 3, 50000, 2);
}

static void credits_small_replies(void **state)
{
    (void)state;
    /* Request / reply: piggybacked credits alone keep both sides going. */
    struct ep a, b;
    ep_init(&a, 8);
    ep_init(&b, 8);
    for (int i = 0; i < 10000; i++) {
        a.backlog = 1;
        ep_flush(&a, &b);
        ep_recv(&b, 100);
        b.backlog = 1;
        ep_flush(&b, &a);
        ep_recv(&a, 100);
    }
    assert_int_equal(b.got_data, 10000);
    assert_int_equal(a.got_data, 10000);
    assert_int_equal(a.credit_msgs + b.credit_msgs, 0);
}

/* ---------------------------------------------------------------- ring */

static void ring_order_and_wrap(void **state)
{
    (void)state;
    struct dsm_rdma_ring r;
    dsm_rdma_ring_init(&r, 4);
    for (int round = 0; round < 1000; round++) {
        int s0 = dsm_rdma_ring_fill(&r), s1 = dsm_rdma_ring_fill(&r);
        assert_int_equal(s1, (s0 + 1) % 4);
        assert_int_equal(dsm_rdma_ring_unposted(&r), 2);
        r.posted += 2;
        assert_int_equal(dsm_rdma_ring_inflight(&r), 2);
        assert_int_equal(dsm_rdma_ring_complete(&r, (uint32_t)s1), -1); /* out of order */
        assert_int_equal(dsm_rdma_ring_complete(&r, (uint32_t)s0), 0);
        assert_int_equal(dsm_rdma_ring_complete(&r, (uint32_t)s1), 0);
        assert_int_equal(dsm_rdma_ring_complete(&r, (uint32_t)s1), -1); /* nothing in flight */
    }
    /* Full: the fifth frame waits for a completion. */
    for (int i = 0; i < 4; i++) assert_true(dsm_rdma_ring_fill(&r) >= 0);
    assert_int_equal(dsm_rdma_ring_fill(&r), -1);
    r.posted += 4;
    assert_int_equal(dsm_rdma_ring_complete(&r, r.done % 4), 0);
    assert_true(dsm_rdma_ring_fill(&r) >= 0);
}

static void ring_counter_wrap(void **state)
{
    (void)state;
    struct dsm_rdma_ring r;
    dsm_rdma_ring_init(&r, 8);
    r.done = r.posted = r.filled = UINT32_MAX - 3; /* 2^32 is a multiple of 8 */
    for (int i = 0; i < 100; i++) {
        int s = dsm_rdma_ring_fill(&r);
        assert_true(s >= 0);
        r.posted++;
        assert_int_equal(dsm_rdma_ring_complete(&r, (uint32_t)s), 0);
    }
}

/* ---------------------------------------------------------------- frames */

static const struct dsm_wire_limits LIM = {
    .npages = 100, .base = 0x500000000000ull, .nodes = 4, .peer = 2};

static size_t frame(uint8_t *buf, unsigned type, uint32_t len, uint64_t arg0)
{
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, (enum dsm_wire_type)type, 2);
    h.len = len;
    h.arg0 = arg0;
    dsm_wire_encode(&h, buf);
    memset(buf + DSM_WIRE_HDR_SIZE, 0xab, len);
    return DSM_WIRE_HDR_SIZE + len;
}

static void frame_checks(void **state)
{
    (void)state;
    static uint8_t buf[DSM_RDMA_STRIDE + 64];
    struct dsm_wire_hdr h;
    char why[256];
    size_t n = frame(buf, DSM_MSG_DATA_S, DSM_PAGE_SIZE, 7);
    assert_int_equal(dsm_rdma_frame_check(buf, n, &LIM, &h, why, sizeof why), DSM_WIRE_OK);
    assert_int_equal(h.arg0, 7);
    /* A message that is longer or shorter than its header says. */
    assert_int_equal(dsm_rdma_frame_check(buf, n - 1, &LIM, &h, why, sizeof why), DSM_WIRE_BAD);
    assert_non_null(strstr(why, "header says"));
    assert_int_equal(dsm_rdma_frame_check(buf, n + 1, &LIM, &h, why, sizeof why), DSM_WIRE_BAD);
    /* Shorter than a header. */
    assert_int_equal(dsm_rdma_frame_check(buf, 31, &LIM, &h, why, sizeof why), DSM_WIRE_BAD);
    assert_non_null(strstr(why, "shorter"));
    /* The same rules as TCP: page index, src, magic. */
    n = frame(buf, DSM_MSG_GET_S, 0, 100);
    assert_int_equal(dsm_rdma_frame_check(buf, n, &LIM, &h, why, sizeof why), DSM_WIRE_BAD);
    assert_non_null(strstr(why, "page index"));
    n = frame(buf, DSM_MSG_GET_S, 0, 1);
    buf[8] = 1; /* src */
    assert_int_equal(dsm_rdma_frame_check(buf, n, &LIM, &h, why, sizeof why), DSM_WIRE_BAD);
    assert_non_null(strstr(why, "src"));
    n = frame(buf, DSM_MSG_GET_S, 0, 1);
    buf[0] ^= 1;
    assert_int_equal(dsm_rdma_frame_check(buf, n, &LIM, &h, why, sizeof why), DSM_WIRE_BAD);
    assert_non_null(strstr(why, "magic"));
    /* Every frame fits a buffer. */
    assert_true(DSM_RDMA_STRIDE >= DSM_WIRE_HDR_SIZE + DSM_WIRE_MAX_PAYLOAD);
    assert_int_equal(DSM_RDMA_STRIDE % 64, 0);
}

/* ---------------------------------------------------------------- private data */

static struct dsm_job_desc desc(void)
{
    struct dsm_job_desc d = {.version = DSM_WIRE_VERSION,
                             .nodes = 4,
                             .region_base = 0x500000000000ull,
                             .region_size = 1ull << 30,
                             .page_size = 4096};
    snprintf(d.job, sizeof d.job, "job-42");
    return d;
}

static void priv_roundtrip_and_mismatch(void **state)
{
    (void)state;
    struct dsm_job_desc d = desc();
    uint8_t b[DSM_RDMA_PRIV_SIZE] = {0}; /* 56: all rdma_cm allows in a connect request */
    dsm_rdma_priv_encode(b, 3, 32, &d);
    struct dsm_rdma_priv p;
    char why[400];
    assert_int_equal(dsm_rdma_priv_decode(b, sizeof b, &p, why, sizeof why), 0);
    assert_int_equal(p.rank, 3);
    assert_int_equal(p.depth, 32);
    assert_int_equal(dsm_rdma_priv_compare(&d, &p, "node 3", why, sizeof why), 0);

    struct dsm_job_desc o = d;
    snprintf(o.job, sizeof o.job, "job-43");
    assert_int_equal(dsm_rdma_priv_compare(&o, &p, "node 3", why, sizeof why), -1);
    assert_non_null(strstr(why, "another job"));
    assert_non_null(strstr(why, "DSM_JOB"));
    o = d;
    o.region_size *= 2;
    assert_int_equal(dsm_rdma_priv_compare(&o, &p, "node 3", why, sizeof why), -1);
    assert_non_null(strstr(why, "DSM_MEMORY"));
    o = d;
    o.version++;
    assert_int_equal(dsm_rdma_priv_compare(&o, &p, "node 3", why, sizeof why), -1);
    assert_non_null(strstr(why, "wire version"));

    /* Corrupt or foreign data. */
    assert_int_equal(dsm_rdma_priv_decode(b, 40, &p, why, sizeof why), -1);
    assert_int_equal(dsm_rdma_priv_decode(NULL, 0, &p, why, sizeof why), -1);
    b[0] ^= 0xff;
    assert_int_equal(dsm_rdma_priv_decode(b, sizeof b, &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "not from ufdsm"));
    b[0] ^= 0xff;
    b[4] = 9;
    assert_int_equal(dsm_rdma_priv_decode(b, sizeof b, &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "format"));
    b[4] = 1;
    dsm_rdma_priv_encode(b, 3, 1000, &d);
    assert_int_equal(dsm_rdma_priv_decode(b, sizeof b, &p, why, sizeof why), 0);
    assert_int_equal(dsm_rdma_priv_compare(&d, &p, "node 3", why, sizeof why), -1);
    assert_non_null(strstr(why, "receive buffers"));
}

/* The seal: only a holder of the job's secret makes private data another node accepts, bound
 * to the receiver and the direction (security issue: RDMA set-up was keyed by nothing). */
static void priv_sealed_with_the_secret(void **state)
{
    (void)state;
    struct dsm_job_desc d = desc();
    struct dsm_auth_key k, other;
    char why[200];
    assert_int_equal(dsm_auth_key_init(&k, "the secret of this job", 22, why, sizeof why), 0);
    assert_int_equal(dsm_auth_key_init(&other, "the secret of another", 21, why, sizeof why), 0);
    uint8_t b[DSM_RDMA_PRIV_SIZE];
    dsm_rdma_priv_encode(b, 3, 32, &d);
    /* Unsealed (what a stranger who knows the job's name and shape could send). */
    assert_int_equal(dsm_rdma_priv_verify(b, sizeof b, &k, 1, DSM_AUTH_CONNECTOR, why, sizeof why),
                     -1);
    assert_non_null(strstr(why, "secret"));
    dsm_rdma_priv_seal(b, &k, 1, DSM_AUTH_CONNECTOR);
    assert_int_equal(dsm_rdma_priv_verify(b, sizeof b, &k, 1, DSM_AUTH_CONNECTOR, why, sizeof why),
                     0);
    /* Another secret, another receiver, the other direction (reflection), too short. */
    assert_int_equal(
        dsm_rdma_priv_verify(b, sizeof b, &other, 1, DSM_AUTH_CONNECTOR, why, sizeof why), -1);
    assert_int_equal(dsm_rdma_priv_verify(b, sizeof b, &k, 2, DSM_AUTH_CONNECTOR, why, sizeof why),
                     -1);
    assert_int_equal(dsm_rdma_priv_verify(b, sizeof b, &k, 1, DSM_AUTH_ACCEPTOR, why, sizeof why),
                     -1);
    assert_int_equal(dsm_rdma_priv_verify(b, 48, &k, 1, DSM_AUTH_CONNECTOR, why, sizeof why), -1);
    assert_int_equal(dsm_rdma_priv_verify(NULL, 0, &k, 1, DSM_AUTH_CONNECTOR, why, sizeof why), -1);
    /* Every sealed byte counts: a changed rank, depth or job shape breaks the seal. */
    for (int i = 0; i < DSM_RDMA_PRIV_SEALED; i++) {
        b[i] ^= 0x10;
        assert_int_equal(
            dsm_rdma_priv_verify(b, sizeof b, &k, 1, DSM_AUTH_CONNECTOR, why, sizeof why), -1);
        b[i] ^= 0x10;
    }
    /* The sealed data still decodes as before. */
    struct dsm_rdma_priv p;
    assert_int_equal(dsm_rdma_priv_decode(b, sizeof b, &p, why, sizeof why), 0);
    assert_int_equal(p.rank, 3);
}

/* ---------------------------------------------------------------- registration budget */

static void depth_budget(void **state)
{
    (void)state;
    uint64_t need;
    /* Debian's default ulimit -l: 8 MiB. */
    uint32_t d = dsm_rdma_depth(8u << 20, 1, &need);
    assert_int_equal(d, DSM_RDMA_DEPTH_MAX);
    d = dsm_rdma_depth(8u << 20, 63, &need);
    assert_true(d >= DSM_RDMA_DEPTH_MIN && d < DSM_RDMA_DEPTH_MAX);
    assert_true(2ull * 63 * d * DSM_RDMA_STRIDE <= (8ull << 20) / 4 * 3);
    assert_int_equal(dsm_rdma_depth(UINT64_MAX, 63, &need), DSM_RDMA_DEPTH_MAX);
    /* Too small: 0, and the limit that would do, which does. */
    assert_int_equal(dsm_rdma_depth(64u << 10, 8, &need), 0);
    assert_true(need > (64u << 10));
    assert_true(dsm_rdma_depth(need, 8, &need) >= DSM_RDMA_DEPTH_MIN);
}

/* ---------------------------------------------------------------- selection records */

static void sel_records(void **state)
{
    (void)state;
    struct dsm_sel_rec r = {.phase = 1, .ok = 1, .port = 4791};
    snprintf(r.addr, sizeof r.addr, "10.0.2.15");
    snprintf(r.why, sizeof r.why, "rxe0 port 1\nsecond line");
    snprintf(r.shm, sizeof r.shm, "0123456789abcdef0123456789abcdef.42.7.99.12.8.1234.13");
    char t[DSM_SEL_TEXT];
    size_t n = dsm_sel_encode(&r, t, sizeof t);
    assert_int_equal(n, strlen(t));
    struct dsm_sel_rec q;
    assert_int_equal(dsm_sel_parse(t, n, &q), 0);
    assert_int_equal(q.phase, 1);
    assert_int_equal(q.ok, 1);
    assert_int_equal(q.port, 4791);
    assert_string_equal(q.addr, "10.0.2.15");
    assert_string_equal(q.why, "rxe0 port 1 second line");
    assert_string_equal(q.shm, r.shm);

    struct dsm_sel_rec no = {.phase = 2, .ok = 0};
    snprintf(no.why, sizeof no.why, "timed out: node 1 (10.0.2.16:1234) no answer");
    n = dsm_sel_encode(&no, t, sizeof t);
    assert_int_equal(dsm_sel_parse(t, n, &q), 0);
    assert_int_equal(q.ok, 0);
    assert_int_equal(q.addr[0], 0);
    assert_int_equal(q.shm[0], 0);
    assert_string_equal(q.why, no.why);

    /* Not records: an ordinary ABORT text, bad fields, an ok phase 1 without an address. */
    const char *bad[] = {
        "node 1 aborted: out of memory",
        "ufdsm-select 2 phase=3 ok=1 port=1 addr=1.2.3.4 shm=- why=x",
        "ufdsm-select 2 phase=1 ok=2 port=1 addr=1.2.3.4 shm=- why=x",
        "ufdsm-select 2 phase=1 ok=1 port=70000 addr=1.2.3.4 shm=- why=x",
        "ufdsm-select 2 phase=1 ok=1 port=0 addr=1.2.3.4 shm=- why=x",
        "ufdsm-select 2 phase=1 ok=1 port=5 addr=not-an-ip shm=- why=x",
        "ufdsm-select 2 phase=1 ok=1 port=5 addr=1.2.3.4 shm=-",
        "ufdsm-select 2 phase=1 ok=1 port=5 addr=1.2.3.4 why=x", /* no shm field */
        "ufdsm-select 1 phase=1 ok=1 port=5 addr=1.2.3.4 why=x", /* the format before it */
        "ufdsm-select 3 phase=1 ok=1 port=5 addr=1.2.3.4 shm=- why=x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(dsm_sel_parse(bad[i], strlen(bad[i]), &q), -1);
    /* Embedded NUL, and a why cut to fit the output. */
    char z[] = "ufdsm-select 2 phase=2 ok=1 port=0 addr=- shm=- why=a\0b";
    assert_int_equal(dsm_sel_parse(z, sizeof z - 1, &q), -1);
    memset(r.why, 'x', sizeof r.why - 1);
    r.why[sizeof r.why - 1] = 0;
    char small[64];
    n = dsm_sel_encode(&r, small, sizeof small);
    assert_int_equal(n, sizeof small - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(credits_basic),
        cmocka_unit_test(credits_thresh_floor),
        cmocka_unit_test(credits_one_way_burst),
        cmocka_unit_test(credits_both_ways),
        cmocka_unit_test(credits_small_replies),
        cmocka_unit_test(ring_order_and_wrap),
        cmocka_unit_test(ring_counter_wrap),
        cmocka_unit_test(frame_checks),
        cmocka_unit_test(priv_roundtrip_and_mismatch),
        cmocka_unit_test(priv_sealed_with_the_secret),
        cmocka_unit_test(depth_budget),
        cmocka_unit_test(sel_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

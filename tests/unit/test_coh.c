/*
 * test_coh.c - unit tests of the coherence state machines (coherence/coh.c), transition by
 * transition.
 *
 * Every (state, event) pair of both machines is covered by a table entry that gives the exact
 * outcome: the return code, the whole resulting state (for the directory, every field of
 * struct coh_dir, leftovers included), and the exact action list (kind, message type, flags,
 * source, destination, page). The table tests also check that they are complete: every node
 * state x message type (x meaningful flag) and every directory state x message type has an
 * entry. On top of that: the stale-message rules (INV to a node without a copy is acked,
 * RECALL to a node without a copy is ignored, PUT_M crossing a RECALL is the write-back,
 * PUT_S crossing an INV), queued requests served round-robin by node id, the ZERO/NODATA
 * rules, and a few end-to-end races played through both machines. Why: the runtime trusts
 * these functions blindly, and the model checker (tests/model) only finds what the
 * transitions do in combination; here a wrong flag or a wrong destination fails on its own
 * line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "coh.h"

#define HOME 2
#define SELF 1
#define PAGE 0x123456789ull /* above 32 bits: the page number must pass through untouched */

#define BIT(n) ((uint64_t)1 << (n))

/* ------------------------------------------------------------------ helpers */

/* One expected action. For non-SEND actions only the kind (and the page) matter. */
struct ea {
    uint8_t kind, type, flags, src, dst;
};

#define SEND(t, f, s, d) {COH_A_SEND, (t), (f), (s), (d)}
#define ACT(k)           {(k), 0, 0, 0, 0}
#define MAXA             8

static const char *kind_name(unsigned k)
{
    static const char *const n[] = {"?",       "SEND",      "MAP_RO", "MAP_RW",
                                    "PROTECT", "UNPROTECT", "UNMAP",  "STORE"};
    return k < 8 ? n[k] : "?";
}

static void fmt_actions_got(const struct coh_out *o, char *buf, size_t len)
{
    size_t p = 0;
    buf[0] = 0;
    for (int i = 0; i < o->n && p < len; i++) {
        const struct coh_action *a = &o->a[i];
        if (a->kind == COH_A_SEND)
            p += (size_t)snprintf(buf + p, len - p, " SEND(%s,f=%u,%u->%u,page=%llx)",
                                  coh_mtype_name(a->msg.type), a->msg.flags, a->msg.src,
                                  a->msg.dst, (unsigned long long)a->msg.page);
        else
            p += (size_t)snprintf(buf + p, len - p, " %s(page=%llx)", kind_name(a->kind),
                                  (unsigned long long)a->msg.page);
    }
}

static void fmt_actions_exp(const struct ea *e, int n, char *buf, size_t len)
{
    size_t p = 0;
    buf[0] = 0;
    for (int i = 0; i < n && p < len; i++) {
        if (e[i].kind == COH_A_SEND)
            p += (size_t)snprintf(buf + p, len - p, " SEND(%s,f=%u,%u->%u)",
                                  coh_mtype_name(e[i].type), e[i].flags, e[i].src, e[i].dst);
        else p += (size_t)snprintf(buf + p, len - p, " %s", kind_name(e[i].kind));
    }
}

/* Asserts that `o` is exactly the expected list, every action for `page`. */
static void expect_actions(const char *ctx, const struct coh_out *o, const struct ea *e, int n,
                           uint64_t page)
{
    int ok = o->n == n;
    for (int i = 0; ok && i < n; i++) {
        const struct coh_action *a = &o->a[i];
        if (a->kind != e[i].kind || a->msg.page != page) ok = 0;
        else if (a->kind == COH_A_SEND &&
                 (a->msg.type != e[i].type || a->msg.flags != e[i].flags ||
                  a->msg.src != e[i].src || a->msg.dst != e[i].dst))
            ok = 0;
    }
    if (!ok) {
        char got[1024], exp[1024];
        fmt_actions_got(o, got, sizeof got);
        fmt_actions_exp(e, n, exp, sizeof exp);
        fail_msg("%s: actions\n  expected:%s\n  got:     %s", ctx, exp[0] ? exp : " (none)",
                 got[0] ? got : " (none)");
    }
}

static void dir_fmt(const struct coh_dir *d, char *buf, size_t len)
{
    snprintf(buf, len,
             "{%s written=%u owner=%u req=%u req_type=%u req_had=%u acks=%u rr=%u sharers=%llx "
             "pend_s=%llx pend_m=%llx}",
             coh_dstate_name(d->state), d->written, d->owner, d->req, d->req_type, d->req_had,
             d->acks, d->rr, (unsigned long long)d->sharers, (unsigned long long)d->pend_s,
             (unsigned long long)d->pend_m);
}

static void expect_dir(const char *ctx, const struct coh_dir *got, const struct coh_dir *exp)
{
    if (got->state != exp->state || got->written != exp->written || got->owner != exp->owner ||
        got->req != exp->req || got->req_type != exp->req_type ||
        got->req_had != exp->req_had || got->acks != exp->acks || got->rr != exp->rr ||
        got->sharers != exp->sharers || got->pend_s != exp->pend_s ||
        got->pend_m != exp->pend_m) {
        char g[256], x[256];
        dir_fmt(got, g, sizeof g);
        dir_fmt(exp, x, sizeof x);
        fail_msg("%s: directory\n  expected: %s\n  got:      %s", ctx, x, g);
    }
}

static struct coh_msg msg(unsigned type, unsigned flags, int src, int dst, uint64_t page)
{
    return (struct coh_msg){.type = (uint8_t)type, .flags = (uint8_t)flags, .src = (uint8_t)src,
                            .dst = (uint8_t)dst, .page = page};
}

static const uint8_t all_nstates[] = {COH_I, COH_S, COH_M, COH_IS_D, COH_IM_AD, COH_SM_A};

/* ------------------------------------------------------------------ helpers of coh.h */

static void test_names(void **state)
{
    (void)state;
    static const char *const m[] = {"?",       "GET_S",  "GET_M",  "PUT_S",
                                    "PUT_M",   "WB",     "INV_ACK", "DATA_S",
                                    "DATA_M",  "INV",    "RECALL_S", "RECALL_I"};
    for (unsigned t = 0; t < COH_MTYPE_END; t++) assert_string_equal(coh_mtype_name(t), m[t]);
    assert_string_equal(coh_mtype_name(COH_MTYPE_END), "?");
    assert_string_equal(coh_mtype_name(~0u), "?");
    static const char *const s[] = {"I", "S", "M", "IS_D", "IM_AD", "SM_A"};
    for (unsigned t = 0; t < COH_NSTATE_END; t++) assert_string_equal(coh_nstate_name(t), s[t]);
    assert_string_equal(coh_nstate_name(COH_NSTATE_END), "?");
    static const char *const d[] = {"SHARED", "EXCL", "BUSY_WB", "BUSY_INV"};
    for (unsigned t = 0; t < COH_DSTATE_END; t++) assert_string_equal(coh_dstate_name(t), d[t]);
    assert_string_equal(coh_dstate_name(COH_DSTATE_END), "?");
    assert_string_equal(coh_dstate_name(~0u), "?");
}

static void test_msg_to_home(void **state)
{
    (void)state;
    for (unsigned t = 0; t <= 255; t++) {
        int exp = t >= COH_GET_S && t <= COH_INV_ACK;
        assert_int_equal(coh_msg_to_home(t), exp);
    }
    assert_int_equal(coh_msg_to_home(~0u), 0);
}

static void test_msg_has_payload(void **state)
{
    (void)state;
    for (unsigned t = 0; t <= COH_MTYPE_END; t++)
        for (unsigned f = 0; f < 8; f++) {
            struct coh_msg m = msg(t, f, 0, 1, PAGE);
            int exp;
            if (t == COH_PUT_M || t == COH_WB) exp = 1; /* flags never matter */
            else if (t == COH_DATA_S || t == COH_DATA_M)
                exp = !(f & (COH_F_ZERO | COH_F_NODATA));
            else exp = 0;
            if (coh_msg_has_payload(&m) != exp)
                fail_msg("%s flags %u: payload %d, expected %d", coh_mtype_name(t), f,
                         coh_msg_has_payload(&m), exp);
        }
}

static void test_dir_init_and_idle(void **state)
{
    (void)state;
    struct coh_dir d;
    memset(&d, 0xa5, sizeof d);
    coh_dir_init(&d);
    const struct coh_dir z = {.state = COH_D_SHARED};
    expect_dir("coh_dir_init", &d, &z);
    assert_true(coh_dir_idle(&d));

    struct coh_dir e = {.state = COH_D_EXCL, .owner = 3};
    assert_true(coh_dir_idle(&e));
    e.pend_s = BIT(1);
    assert_false(coh_dir_idle(&e));
    e.pend_s = 0;
    e.pend_m = BIT(0);
    assert_false(coh_dir_idle(&e));
    struct coh_dir b = {.state = COH_D_BUSY_WB};
    assert_false(coh_dir_idle(&b));
    b.state = COH_D_BUSY_INV;
    assert_false(coh_dir_idle(&b));
    struct coh_dir s = {.state = COH_D_SHARED, .sharers = BIT(0) | BIT(5), .written = 1};
    assert_true(coh_dir_idle(&s));
    s.pend_m = BIT(63);
    assert_false(coh_dir_idle(&s));
}

/* ------------------------------------------------------------------ node: access */

struct access_case {
    uint8_t st;
    int write;
    int rc;
    uint8_t after;
    int n;
    struct ea a[MAXA];
};

static const struct access_case access_cases[] = {
    /* I: a request goes out, the node enters the matching transient state. */
    {COH_I, 0, COH_ACCESS_WAIT, COH_IS_D, 1, {SEND(COH_GET_S, 0, SELF, HOME)}},
    {COH_I, 1, COH_ACCESS_WAIT, COH_IM_AD, 1, {SEND(COH_GET_M, 0, SELF, HOME)}},
    /* S: reads are permitted; a write upgrades, keeping the read copy. */
    {COH_S, 0, COH_ACCESS_OK, COH_S, 0, {{0}}},
    {COH_S, 1, COH_ACCESS_WAIT, COH_SM_A, 1, {SEND(COH_GET_M, 0, SELF, HOME)}},
    /* M: everything is permitted (a raced or spurious fault). */
    {COH_M, 0, COH_ACCESS_OK, COH_M, 0, {{0}}},
    {COH_M, 1, COH_ACCESS_OK, COH_M, 0, {{0}}},
    /* Transient: one request per page per node; the thread waits and retries later. */
    {COH_IS_D, 0, COH_ACCESS_WAIT, COH_IS_D, 0, {{0}}},
    {COH_IS_D, 1, COH_ACCESS_WAIT, COH_IS_D, 0, {{0}}},
    {COH_IM_AD, 0, COH_ACCESS_WAIT, COH_IM_AD, 0, {{0}}},
    {COH_IM_AD, 1, COH_ACCESS_WAIT, COH_IM_AD, 0, {{0}}},
    /* SM_A: the read copy stays readable during the upgrade. */
    {COH_SM_A, 0, COH_ACCESS_OK, COH_SM_A, 0, {{0}}},
    {COH_SM_A, 1, COH_ACCESS_WAIT, COH_SM_A, 0, {{0}}},
};

static void test_node_access_table(void **state)
{
    (void)state;
    int seen[COH_NSTATE_END][2] = {{0}};
    for (size_t i = 0; i < sizeof access_cases / sizeof access_cases[0]; i++) {
        const struct access_case *c = &access_cases[i];
        char ctx[96];
        snprintf(ctx, sizeof ctx, "access %s %s", coh_nstate_name(c->st),
                 c->write ? "write" : "read");
        uint8_t st = c->st;
        struct coh_out out;
        out.n = 0;
        int rc = coh_node_access(&st, SELF, HOME, PAGE, c->write, &out);
        if (rc != c->rc) fail_msg("%s: rc %d, expected %d", ctx, rc, c->rc);
        if (st != c->after)
            fail_msg("%s: state %s, expected %s", ctx, coh_nstate_name(st),
                     coh_nstate_name(c->after));
        expect_actions(ctx, &out, c->a, c->n, PAGE);
        seen[c->st][c->write]++;
    }
    for (int s = 0; s < COH_NSTATE_END; s++)
        for (int w = 0; w < 2; w++)
            if (seen[s][w] != 1)
                fail_msg("access table: %s %s covered %d times", coh_nstate_name(s),
                         w ? "write" : "read", seen[s][w]);
}

/* Actions are appended: a caller may batch several calls into one list. */
static void test_node_access_appends(void **state)
{
    (void)state;
    struct coh_out out;
    out.n = 0;
    uint8_t a = COH_I, b = COH_S;
    coh_node_access(&a, SELF, HOME, 1, 0, &out);
    coh_node_access(&b, SELF, HOME, 2, 1, &out);
    assert_int_equal(out.n, 2);
    assert_int_equal(out.a[0].msg.type, COH_GET_S);
    assert_int_equal(out.a[0].msg.page, 1);
    assert_int_equal(out.a[1].msg.type, COH_GET_M);
    assert_int_equal(out.a[1].msg.page, 2);
}

/* The home may be the node itself: requests then go over the node's own local queue. */
static void test_node_access_self_home(void **state)
{
    (void)state;
    uint8_t st = COH_I;
    struct coh_out out;
    out.n = 0;
    assert_int_equal(coh_node_access(&st, HOME, HOME, PAGE, 1, &out), COH_ACCESS_WAIT);
    const struct ea e[] = {SEND(COH_GET_M, 0, HOME, HOME)};
    expect_actions("self-homed write", &out, e, 1, PAGE);
}

/* ------------------------------------------------------------------ node: eviction */

static void test_node_evict(void **state)
{
    (void)state;
    static const struct {
        uint8_t st;
        int rc;
        uint8_t after;
        int n;
        struct ea a[MAXA];
    } cases[] = {
        {COH_I, 0, COH_I, 0, {{0}}}, /* no copy: nothing to do */
        {COH_S, 0, COH_I, 2, {SEND(COH_PUT_S, 0, SELF, HOME), ACT(COH_A_UNMAP)}},
        /* Protect before the copy is taken, unmap after it was sent. */
        {COH_M,
         0,
         COH_I,
         3,
         {ACT(COH_A_PROTECT), SEND(COH_PUT_M, 0, SELF, HOME), ACT(COH_A_UNMAP)}},
        {COH_IS_D, 1, COH_IS_D, 0, {{0}}}, /* transient: cannot drop now */
        {COH_IM_AD, 1, COH_IM_AD, 0, {{0}}},
        {COH_SM_A, 1, COH_SM_A, 0, {{0}}},
    };
    assert_int_equal(sizeof cases / sizeof cases[0], COH_NSTATE_END);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "evict in %s", coh_nstate_name(cases[i].st));
        uint8_t st = cases[i].st;
        struct coh_out out;
        out.n = 0;
        int rc = coh_node_evict(&st, SELF, HOME, PAGE, &out);
        if (rc != cases[i].rc) fail_msg("%s: rc %d, expected %d", ctx, rc, cases[i].rc);
        if (st != cases[i].after)
            fail_msg("%s: state %s, expected %s", ctx, coh_nstate_name(st),
                     coh_nstate_name(cases[i].after));
        expect_actions(ctx, &out, cases[i].a, cases[i].n, PAGE);
    }
}

/* ------------------------------------------------------------------ node: messages */

#define EPROTO_NODE 0xff /* marks an entry whose outcome is COH_EPROTO, state unchanged */

struct nrecv_case {
    uint8_t st, type, flags;
    uint8_t after; /* EPROTO_NODE: COH_EPROTO expected */
    int n;
    struct ea a[MAXA];
};

#define NE(st, t, f) {(st), (t), (f), EPROTO_NODE, 0, {{0}}}

static const struct nrecv_case nrecv_cases[] = {
    /* DATA_S: only a node waiting for a read copy takes it. */
    {COH_IS_D, COH_DATA_S, 0, COH_S, 1, {ACT(COH_A_MAP_RO)}},
    {COH_IS_D, COH_DATA_S, COH_F_ZERO, COH_S, 1, {ACT(COH_A_MAP_RO)}},
    NE(COH_I, COH_DATA_S, 0),
    NE(COH_I, COH_DATA_S, COH_F_ZERO),
    NE(COH_S, COH_DATA_S, 0),
    NE(COH_S, COH_DATA_S, COH_F_ZERO),
    NE(COH_M, COH_DATA_S, 0),
    NE(COH_M, COH_DATA_S, COH_F_ZERO),
    NE(COH_IM_AD, COH_DATA_S, 0),
    NE(COH_IM_AD, COH_DATA_S, COH_F_ZERO),
    NE(COH_SM_A, COH_DATA_S, 0),
    NE(COH_SM_A, COH_DATA_S, COH_F_ZERO),

    /* DATA_M: with data (or zeros) for IM_AD; without data (NODATA) for an upgrading SM_A. */
    {COH_IM_AD, COH_DATA_M, 0, COH_M, 1, {ACT(COH_A_MAP_RW)}},
    {COH_IM_AD, COH_DATA_M, COH_F_ZERO, COH_M, 1, {ACT(COH_A_MAP_RW)}},
    NE(COH_IM_AD, COH_DATA_M, COH_F_NODATA), /* no copy to make writable */
    {COH_SM_A, COH_DATA_M, COH_F_NODATA, COH_M, 1, {ACT(COH_A_UNPROTECT)}},
    NE(COH_SM_A, COH_DATA_M, 0), /* a sharer's upgrade is always granted without data */
    NE(COH_SM_A, COH_DATA_M, COH_F_ZERO),
    NE(COH_I, COH_DATA_M, 0),
    NE(COH_I, COH_DATA_M, COH_F_ZERO),
    NE(COH_I, COH_DATA_M, COH_F_NODATA),
    NE(COH_S, COH_DATA_M, 0),
    NE(COH_S, COH_DATA_M, COH_F_ZERO),
    NE(COH_S, COH_DATA_M, COH_F_NODATA),
    NE(COH_M, COH_DATA_M, 0),
    NE(COH_M, COH_DATA_M, COH_F_ZERO),
    NE(COH_M, COH_DATA_M, COH_F_NODATA),
    NE(COH_IS_D, COH_DATA_M, 0),
    NE(COH_IS_D, COH_DATA_M, COH_F_ZERO),
    NE(COH_IS_D, COH_DATA_M, COH_F_NODATA),

    /* INV: always acked exactly once (the home counts acks), to the sender. A node without a
     * copy acks a stale INV (its PUT_S crossed it); an upgrading sharer loses its copy and
     * keeps waiting, now for data. An owner is never invalidated (it is recalled). */
    {COH_S, COH_INV, 0, COH_I, 2, {ACT(COH_A_UNMAP), SEND(COH_INV_ACK, 0, SELF, HOME)}},
    {COH_SM_A, COH_INV, 0, COH_IM_AD, 2, {ACT(COH_A_UNMAP), SEND(COH_INV_ACK, 0, SELF, HOME)}},
    {COH_I, COH_INV, 0, COH_I, 1, {SEND(COH_INV_ACK, 0, SELF, HOME)}},
    {COH_IS_D, COH_INV, 0, COH_IS_D, 1, {SEND(COH_INV_ACK, 0, SELF, HOME)}},
    {COH_IM_AD, COH_INV, 0, COH_IM_AD, 1, {SEND(COH_INV_ACK, 0, SELF, HOME)}},
    NE(COH_M, COH_INV, 0),

    /* RECALL_S: the owner write-protects, writes back, keeps a read copy. */
    {COH_M,
     COH_RECALL_S,
     0,
     COH_S,
     2,
     {ACT(COH_A_PROTECT), SEND(COH_WB, 0, SELF, HOME)}},
    /* RECALL_I: the same, then drops the copy (after the send took it). */
    {COH_M,
     COH_RECALL_I,
     0,
     COH_I,
     3,
     {ACT(COH_A_PROTECT), SEND(COH_WB, 0, SELF, HOME), ACT(COH_A_UNMAP)}},
    /* A recall that crossed the node's PUT_M is stale: ignored in I and in the transient
     * states a new request can put the node in before the recall arrives. */
    {COH_I, COH_RECALL_S, 0, COH_I, 0, {{0}}},
    {COH_IS_D, COH_RECALL_S, 0, COH_IS_D, 0, {{0}}},
    {COH_IM_AD, COH_RECALL_S, 0, COH_IM_AD, 0, {{0}}},
    {COH_I, COH_RECALL_I, 0, COH_I, 0, {{0}}},
    {COH_IS_D, COH_RECALL_I, 0, COH_IS_D, 0, {{0}}},
    {COH_IM_AD, COH_RECALL_I, 0, COH_IM_AD, 0, {{0}}},
    /* A stale recall always arrives before any later grant, so never in S or SM_A. */
    NE(COH_S, COH_RECALL_S, 0),
    NE(COH_SM_A, COH_RECALL_S, 0),
    NE(COH_S, COH_RECALL_I, 0),
    NE(COH_SM_A, COH_RECALL_I, 0),
};

/* Directory-bound types reaching the node side, in every state. */
static const uint8_t to_home_types[] = {COH_GET_S, COH_GET_M, COH_PUT_S,
                                        COH_PUT_M, COH_WB,    COH_INV_ACK};

static void run_nrecv(const char *ctx, uint8_t st0, unsigned type, unsigned flags,
                      uint8_t after, const struct ea *a, int n)
{
    uint8_t st = st0;
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    struct coh_msg m = msg(type, flags, HOME, SELF, PAGE);
    int rc = coh_node_recv(&st, SELF, &m, &out, &why);
    if (after == EPROTO_NODE) {
        if (rc != COH_EPROTO) fail_msg("%s: rc %d, expected COH_EPROTO", ctx, rc);
        if (!why || !why[0]) fail_msg("%s: COH_EPROTO without a reason", ctx);
        if (st != st0) fail_msg("%s: state changed to %s on COH_EPROTO", ctx, coh_nstate_name(st));
        if (out.n) fail_msg("%s: %d actions emitted on COH_EPROTO", ctx, out.n);
        return;
    }
    if (rc != 0) fail_msg("%s: rc %d (%s), expected 0", ctx, rc, why ? why : "");
    if (st != after)
        fail_msg("%s: state %s, expected %s", ctx, coh_nstate_name(st), coh_nstate_name(after));
    expect_actions(ctx, &out, a, n, PAGE);
}

static void test_node_recv_table(void **state)
{
    (void)state;
    int seen[COH_NSTATE_END][COH_MTYPE_END][8];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < sizeof nrecv_cases / sizeof nrecv_cases[0]; i++) {
        const struct nrecv_case *c = &nrecv_cases[i];
        char ctx[96];
        snprintf(ctx, sizeof ctx, "node in %s receives %s flags %u", coh_nstate_name(c->st),
                 coh_mtype_name(c->type), c->flags);
        run_nrecv(ctx, c->st, c->type, c->flags, c->after, c->a, c->n);
        seen[c->st][c->type][c->flags]++;
    }
    /* Completeness: every state x node-bound type, with every meaningful flag. */
    for (size_t s = 0; s < sizeof all_nstates; s++)
        for (unsigned t = COH_DATA_S; t < COH_MTYPE_END; t++) {
            unsigned fl[3] = {0, 0, 0};
            int nf = 1;
            if (t == COH_DATA_S) fl[nf++] = COH_F_ZERO;
            if (t == COH_DATA_M) fl[nf++] = COH_F_ZERO, fl[nf++] = COH_F_NODATA;
            for (int f = 0; f < nf; f++)
                if (seen[all_nstates[s]][t][fl[f]] != 1)
                    fail_msg("node table: %s x %s flags %u covered %d times",
                             coh_nstate_name(all_nstates[s]), coh_mtype_name(t), fl[f],
                             seen[all_nstates[s]][t][fl[f]]);
        }
}

static void test_node_recv_wrong_direction(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof all_nstates; s++) {
        for (size_t t = 0; t < sizeof to_home_types; t++) {
            char ctx[96];
            snprintf(ctx, sizeof ctx, "node in %s receives %s", coh_nstate_name(all_nstates[s]),
                     coh_mtype_name(to_home_types[t]));
            run_nrecv(ctx, all_nstates[s], to_home_types[t], 0, EPROTO_NODE, NULL, 0);
        }
        /* Types outside the enum are rejected the same way. */
        run_nrecv("node receives type 0", all_nstates[s], 0, 0, EPROTO_NODE, NULL, 0);
        run_nrecv("node receives type END", all_nstates[s], COH_MTYPE_END, 0, EPROTO_NODE, NULL,
                  0);
        run_nrecv("node receives type 255", all_nstates[s], 255, 0, EPROTO_NODE, NULL, 0);
    }
}

/* The ack and the write-back go back to whoever sent the INV/RECALL (the message's src),
 * and they carry the message's page. */
static void test_node_replies_to_sender(void **state)
{
    (void)state;
    const int home = 5;
    uint8_t st = COH_S;
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    struct coh_msg m = msg(COH_INV, 0, home, SELF, 77);
    assert_int_equal(coh_node_recv(&st, SELF, &m, &out, &why), 0);
    const struct ea e1[] = {ACT(COH_A_UNMAP), SEND(COH_INV_ACK, 0, SELF, home)};
    expect_actions("INV from node 5", &out, e1, 2, 77);

    st = COH_M;
    out.n = 0;
    m = msg(COH_RECALL_I, 0, home, SELF, 78);
    assert_int_equal(coh_node_recv(&st, SELF, &m, &out, &why), 0);
    const struct ea e2[] = {ACT(COH_A_PROTECT), SEND(COH_WB, 0, SELF, home), ACT(COH_A_UNMAP)};
    expect_actions("RECALL_I from node 5", &out, e2, 3, 78);

    /* A self-homed page: the ack goes to the node itself. */
    st = COH_S;
    out.n = 0;
    m = msg(COH_INV, 0, SELF, SELF, 79);
    assert_int_equal(coh_node_recv(&st, SELF, &m, &out, &why), 0);
    const struct ea e3[] = {ACT(COH_A_UNMAP), SEND(COH_INV_ACK, 0, SELF, SELF)};
    expect_actions("self-homed INV", &out, e3, 2, 79);
}

/* ------------------------------------------------------------------ directory: table */

#define A 0 /* node ids as seen by the directory at HOME; A is the home itself */
#define B 1
#define C 3
#define D 4

struct drecv_case {
    const char *what;
    struct coh_dir before;
    uint8_t type, src;
    int rc; /* 0 or COH_EPROTO */
    struct coh_dir after;
    int n;
    struct ea a[MAXA];
};

#define SH(...)  ((struct coh_dir){.state = COH_D_SHARED, __VA_ARGS__})
#define EX(...)  ((struct coh_dir){.state = COH_D_EXCL, __VA_ARGS__})
#define BWB(...) ((struct coh_dir){.state = COH_D_BUSY_WB, __VA_ARGS__})
#define BIV(...) ((struct coh_dir){.state = COH_D_BUSY_INV, __VA_ARGS__})

/* Fields a transition leaves behind stay as they were: the tables spell out every field. */
static const struct drecv_case drecv_cases[] = {
    /* ---------------- SHARED */
    {"GET_S, never written: granted zero-filled, reader recorded",
     SH(.written = 0, .sharers = BIT(C)), COH_GET_S, B, 0,
     SH(.written = 0, .sharers = BIT(B) | BIT(C)), 1, {SEND(COH_DATA_S, COH_F_ZERO, HOME, B)}},
    {"GET_S, written: granted with the store", SH(.written = 1), COH_GET_S, B, 0,
     SH(.written = 1, .sharers = BIT(B)), 1, {SEND(COH_DATA_S, 0, HOME, B)}},
    {"GET_S from the home itself", SH(.written = 1), COH_GET_S, HOME, 0,
     SH(.written = 1, .sharers = BIT(HOME)), 1, {SEND(COH_DATA_S, 0, HOME, HOME)}},
    {"GET_S from a recorded sharer", SH(.written = 1, .sharers = BIT(B)), COH_GET_S, B,
     COH_EPROTO, SH(.written = 1, .sharers = BIT(B)), 0, {{0}}},
    {"GET_M, no copies, never written: exclusive, zero-filled", SH(.written = 0), COH_GET_M, B,
     0, EX(.written = 0, .owner = B), 1, {SEND(COH_DATA_M, COH_F_ZERO, HOME, B)}},
    {"GET_M, no copies, written", SH(.written = 1), COH_GET_M, B, 0, EX(.written = 1, .owner = B),
     1, {SEND(COH_DATA_M, 0, HOME, B)}},
    {"GET_M from the only sharer: upgrade without data", SH(.written = 1, .sharers = BIT(B)),
     COH_GET_M, B, 0, EX(.written = 1, .owner = B), 1,
     {SEND(COH_DATA_M, COH_F_NODATA, HOME, B)}},
    {"GET_M from the only sharer, never written: NODATA wins over ZERO",
     SH(.written = 0, .sharers = BIT(B)), COH_GET_M, B, 0, EX(.written = 0, .owner = B), 1,
     {SEND(COH_DATA_M, COH_F_NODATA, HOME, B)}},
    {"GET_M with other sharers: invalidate them in node order, count acks",
     SH(.written = 1, .sharers = BIT(D) | BIT(A) | BIT(C)), COH_GET_M, B, 0,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .req_had = 0, .acks = 3,
         .sharers = BIT(A) | BIT(C) | BIT(D)),
     3,
     {SEND(COH_INV, 0, HOME, A), SEND(COH_INV, 0, HOME, C), SEND(COH_INV, 0, HOME, D)}},
    {"GET_M from a sharer with other sharers: remembers it had a copy",
     SH(.written = 0, .sharers = BIT(B) | BIT(C)), COH_GET_M, B, 0,
     BIV(.written = 0, .req = B, .req_type = COH_GET_M, .req_had = 1, .acks = 1,
         .sharers = BIT(C)),
     1, {SEND(COH_INV, 0, HOME, C)}},
    {"GET_M, the home is a sharer: it invalidates itself over its own queue",
     SH(.written = 1, .sharers = BIT(HOME)), COH_GET_M, C, 0,
     BIV(.written = 1, .req = C, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(HOME)), 1,
     {SEND(COH_INV, 0, HOME, HOME)}},
    {"PUT_S from a sharer", SH(.written = 1, .sharers = BIT(B) | BIT(C)), COH_PUT_S, B, 0,
     SH(.written = 1, .sharers = BIT(C)), 0, {{0}}},
    {"PUT_S from a non-sharer", SH(.written = 1, .sharers = BIT(C)), COH_PUT_S, B, COH_EPROTO,
     SH(.written = 1, .sharers = BIT(C)), 0, {{0}}},
    {"PUT_M while SHARED", SH(.written = 1, .sharers = BIT(B), .owner = B), COH_PUT_M, B,
     COH_EPROTO, SH(.written = 1, .sharers = BIT(B), .owner = B), 0, {{0}}},
    {"WB while SHARED", SH(.written = 1, .owner = B), COH_WB, B, COH_EPROTO,
     SH(.written = 1, .owner = B), 0, {{0}}},
    {"INV_ACK while SHARED", SH(.written = 1, .sharers = BIT(B)), COH_INV_ACK, B, COH_EPROTO,
     SH(.written = 1, .sharers = BIT(B)), 0, {{0}}},

    /* ---------------- EXCL */
    {"GET_S while EXCL: recall the owner keeping a read copy", EX(.written = 0, .owner = C),
     COH_GET_S, B, 0, BWB(.written = 0, .owner = C, .req = B, .req_type = COH_GET_S), 1,
     {SEND(COH_RECALL_S, 0, HOME, C)}},
    {"GET_M while EXCL: recall the owner dropping its copy", EX(.written = 1, .owner = C),
     COH_GET_M, B, 0, BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_M), 1,
     {SEND(COH_RECALL_I, 0, HOME, C)}},
    {"GET_M while EXCL, the owner is the home", EX(.written = 1, .owner = HOME), COH_GET_M, B, 0,
     BWB(.written = 1, .owner = HOME, .req = B, .req_type = COH_GET_M), 1,
     {SEND(COH_RECALL_I, 0, HOME, HOME)}},
    {"GET_S from the owner", EX(.written = 1, .owner = B), COH_GET_S, B, COH_EPROTO,
     EX(.written = 1, .owner = B), 0, {{0}}},
    {"GET_M from the owner", EX(.written = 1, .owner = B), COH_GET_M, B, COH_EPROTO,
     EX(.written = 1, .owner = B), 0, {{0}}},
    {"PUT_M from the owner: store, back to SHARED without sharers",
     EX(.written = 0, .owner = B, .req = C, .req_type = COH_GET_M), COH_PUT_M, B, 0,
     SH(.written = 1, .owner = B, .req = C, .req_type = COH_GET_M), 1, {ACT(COH_A_STORE)}},
    {"PUT_M from a non-owner", EX(.written = 1, .owner = B), COH_PUT_M, C, COH_EPROTO,
     EX(.written = 1, .owner = B), 0, {{0}}},
    {"PUT_S while EXCL", EX(.written = 1, .owner = B), COH_PUT_S, C, COH_EPROTO,
     EX(.written = 1, .owner = B), 0, {{0}}},
    {"PUT_S from the owner", EX(.written = 1, .owner = B), COH_PUT_S, B, COH_EPROTO,
     EX(.written = 1, .owner = B), 0, {{0}}},
    {"WB while EXCL (no recall)", EX(.written = 1, .owner = B), COH_WB, B, COH_EPROTO,
     EX(.written = 1, .owner = B), 0, {{0}}},
    {"INV_ACK while EXCL", EX(.written = 1, .owner = B), COH_INV_ACK, C, COH_EPROTO,
     EX(.written = 1, .owner = B), 0, {{0}}},

    /* ---------------- BUSY_WB */
    {"WB for a GET_S: owner keeps a copy, both are sharers",
     BWB(.written = 0, .owner = C, .req = B, .req_type = COH_GET_S), COH_WB, C, 0,
     SH(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S,
        .sharers = BIT(B) | BIT(C)),
     2, {ACT(COH_A_STORE), SEND(COH_DATA_S, 0, HOME, B)}},
    {"WB for a GET_M: the requester becomes the owner, with the written-back data",
     BWB(.written = 0, .owner = C, .req = B, .req_type = COH_GET_M), COH_WB, C, 0,
     EX(.written = 1, .owner = B, .req = B, .req_type = COH_GET_M), 2,
     {ACT(COH_A_STORE), SEND(COH_DATA_M, 0, HOME, B)}},
    {"PUT_M crossing a RECALL_S is the write-back; the owner kept nothing",
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S), COH_PUT_M, C, 0,
     SH(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .sharers = BIT(B)), 2,
     {ACT(COH_A_STORE), SEND(COH_DATA_S, 0, HOME, B)}},
    {"PUT_M crossing a RECALL_I is the write-back",
     BWB(.written = 0, .owner = C, .req = B, .req_type = COH_GET_M), COH_PUT_M, C, 0,
     EX(.written = 1, .owner = B, .req = B, .req_type = COH_GET_M), 2,
     {ACT(COH_A_STORE), SEND(COH_DATA_M, 0, HOME, B)}},
    {"WB from a node that was not recalled",
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S), COH_WB, B, COH_EPROTO,
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S), 0, {{0}}},
    {"PUT_M from a node that is not the owner",
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S), COH_PUT_M, D, COH_EPROTO,
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S), 0, {{0}}},
    {"GET_S while BUSY_WB: queued",
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S), COH_GET_S, D, 0,
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .pend_s = BIT(D)), 0,
     {{0}}},
    {"GET_M while BUSY_WB: queued",
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .pend_s = BIT(D)),
     COH_GET_M, A, 0,
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .pend_s = BIT(D),
         .pend_m = BIT(A)),
     0, {{0}}},
    {"second GET_S from a queued node",
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .pend_s = BIT(D)),
     COH_GET_S, D, COH_EPROTO,
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .pend_s = BIT(D)), 0,
     {{0}}},
    {"GET_M from a node with a queued GET_S",
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .pend_s = BIT(D)),
     COH_GET_M, D, COH_EPROTO,
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S, .pend_s = BIT(D)), 0,
     {{0}}},
    {"PUT_S while BUSY_WB", BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S),
     COH_PUT_S, D, COH_EPROTO, BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S),
     0, {{0}}},
    {"INV_ACK while BUSY_WB", BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_M),
     COH_INV_ACK, C, COH_EPROTO,
     BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_M), 0, {{0}}},

    /* ---------------- BUSY_INV */
    {"INV_ACK, more to come",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 2, .sharers = BIT(C) | BIT(D)),
     COH_INV_ACK, D, 0,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)), 0,
     {{0}}},
    {"last INV_ACK: exclusive to the requester, with data",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_INV_ACK, C, 0, EX(.written = 1, .owner = B, .req = B, .req_type = COH_GET_M), 1,
     {SEND(COH_DATA_M, 0, HOME, B)}},
    {"last INV_ACK, never written: zero-filled",
     BIV(.written = 0, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_INV_ACK, C, 0, EX(.written = 0, .owner = B, .req = B, .req_type = COH_GET_M), 1,
     {SEND(COH_DATA_M, COH_F_ZERO, HOME, B)}},
    {"last INV_ACK for an upgrade: no data",
     BIV(.written = 0, .req = B, .req_type = COH_GET_M, .req_had = 1, .acks = 1,
         .sharers = BIT(C)),
     COH_INV_ACK, C, 0,
     EX(.written = 0, .owner = B, .req = B, .req_type = COH_GET_M, .req_had = 1), 1,
     {SEND(COH_DATA_M, COH_F_NODATA, HOME, B)}},
    {"INV_ACK from a node that was not invalidated",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_INV_ACK, D, COH_EPROTO,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)), 0,
     {{0}}},
    {"INV_ACK from the requester",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_INV_ACK, B, COH_EPROTO,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)), 0,
     {{0}}},
    {"PUT_S crossing an INV: ignored, its INV_ACK follows and counts",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 2, .sharers = BIT(C) | BIT(D)),
     COH_PUT_S, C, 0,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 2, .sharers = BIT(C) | BIT(D)),
     0, {{0}}},
    {"PUT_S from a node not being invalidated",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_PUT_S, D, COH_EPROTO,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)), 0,
     {{0}}},
    {"PUT_M while BUSY_INV",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_PUT_M, C, COH_EPROTO,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)), 0,
     {{0}}},
    {"WB while BUSY_INV",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)), COH_WB,
     C, COH_EPROTO,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)), 0,
     {{0}}},
    {"GET_S while BUSY_INV: queued",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_GET_S, D, 0,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C),
         .pend_s = BIT(D)),
     0, {{0}}},
    {"GET_M while BUSY_INV, from a node being invalidated: queued",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
     COH_GET_M, C, 0,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C),
         .pend_m = BIT(C)),
     0, {{0}}},
    {"second GET_M from a queued node",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C),
         .pend_m = BIT(C)),
     COH_GET_M, C, COH_EPROTO,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C),
         .pend_m = BIT(C)),
     0, {{0}}},
    {"GET_S from a node with a queued GET_M",
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C),
         .pend_m = BIT(C)),
     COH_GET_S, C, COH_EPROTO,
     BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C),
         .pend_m = BIT(C)),
     0, {{0}}},
};

static void run_drecv(const struct drecv_case *c)
{
    struct coh_dir d = c->before;
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    struct coh_msg m = msg(c->type, 0, c->src, HOME, PAGE);
    int rc = coh_dir_recv(&d, HOME, &m, &out, &why);
    char ctx[200];
    snprintf(ctx, sizeof ctx, "[%s] %s from %d in %s", c->what, coh_mtype_name(c->type), c->src,
             coh_dstate_name(c->before.state));
    if (rc != c->rc) fail_msg("%s: rc %d (%s), expected %d", ctx, rc, why ? why : "-", c->rc);
    if (rc == COH_EPROTO && (!why || !why[0])) fail_msg("%s: COH_EPROTO without a reason", ctx);
    expect_dir(ctx, &d, &c->after);
    expect_actions(ctx, &out, c->a, c->n, PAGE);
}

static void test_dir_recv_table(void **state)
{
    (void)state;
    int seen[COH_DSTATE_END][COH_MTYPE_END];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < sizeof drecv_cases / sizeof drecv_cases[0]; i++) {
        run_drecv(&drecv_cases[i]);
        seen[drecv_cases[i].before.state][drecv_cases[i].type]++;
    }
    /* Completeness: every directory state x node -> home type has at least one entry. */
    for (int s = 0; s < COH_DSTATE_END; s++)
        for (unsigned t = COH_GET_S; t <= COH_INV_ACK; t++)
            if (!seen[s][t])
                fail_msg("directory table: %s x %s not covered", coh_dstate_name(s),
                         coh_mtype_name(t));
}

/* Node-bound types (and unknown types) reaching a directory, in every state. */
static void test_dir_recv_wrong_direction(void **state)
{
    (void)state;
    const struct coh_dir states[] = {
        SH(.written = 1, .sharers = BIT(B)),
        EX(.written = 1, .owner = B),
        BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S),
        BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C)),
    };
    const unsigned types[] = {COH_DATA_S, COH_DATA_M, COH_INV, COH_RECALL_S, COH_RECALL_I,
                              0,          COH_MTYPE_END, 255};
    for (size_t s = 0; s < sizeof states / sizeof states[0]; s++)
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            struct drecv_case c = {.what = "node-bound message", .before = states[s],
                                   .type = (uint8_t)types[t], .src = B, .rc = COH_EPROTO,
                                   .after = states[s]};
            run_drecv(&c);
        }
}

/* ------------------------------------------------------------------ directory: queue */

static void dir_step(const char *ctx, struct coh_dir *d, unsigned type, int src,
                     const struct ea *e, int n)
{
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    struct coh_msg m = msg(type, 0, src, HOME, PAGE);
    int rc = coh_dir_recv(d, HOME, &m, &out, &why);
    if (rc) fail_msg("%s: COH_EPROTO: %s", ctx, why ? why : "-");
    expect_actions(ctx, &out, e, n, PAGE);
}

/* After the write-back, queued readers are all served in one go (SHARED stays not busy),
 * round-robin from the cursor: the cursor was 0, so 3, then 4, then wrap to 0. */
static void test_queue_readers_served_together(void **state)
{
    (void)state;
    struct coh_dir d = BWB(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S);
    dir_step("queue 0", &d, COH_GET_S, A, NULL, 0);
    dir_step("queue 4", &d, COH_GET_S, D, NULL, 0);
    const struct ea e[] = {ACT(COH_A_STORE), SEND(COH_DATA_S, 0, HOME, B),
                           SEND(COH_DATA_S, 0, HOME, D), SEND(COH_DATA_S, 0, HOME, A)};
    dir_step("WB", &d, COH_WB, C, e, 4);
    const struct coh_dir exp = SH(.written = 1, .owner = C, .req = B, .req_type = COH_GET_S,
                                  .rr = A, .sharers = BIT(A) | BIT(B) | BIT(C) | BIT(D));
    expect_dir("after WB", &d, &exp);
    assert_true(coh_dir_idle(&d));
}

/* A queued request that makes the page busy again stops the drain; the rest stay queued. */
static void test_queue_drain_stops_when_busy(void **state)
{
    (void)state;
    struct coh_dir d = BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1,
                           .sharers = BIT(C), .rr = 0);
    dir_step("queue GET_S 4", &d, COH_GET_S, D, NULL, 0);
    dir_step("queue GET_M 0", &d, COH_GET_M, A, NULL, 0);
    /* The last ack grants B; then 4 (next after the cursor 0) is served: B is recalled. */
    const struct ea e[] = {SEND(COH_DATA_M, 0, HOME, B), SEND(COH_RECALL_S, 0, HOME, B)};
    dir_step("last ack", &d, COH_INV_ACK, C, e, 2);
    const struct coh_dir exp =
        BWB(.written = 1, .owner = B, .req = D, .req_type = COH_GET_S, .rr = D,
            .pend_m = BIT(A));
    expect_dir("after last ack", &d, &exp);
    /* The write-back serves 4 (B keeps a copy), then 0's GET_M must invalidate both. */
    const struct ea e2[] = {ACT(COH_A_STORE), SEND(COH_DATA_S, 0, HOME, D),
                            SEND(COH_INV, 0, HOME, B), SEND(COH_INV, 0, HOME, D)};
    dir_step("WB", &d, COH_WB, B, e2, 4);
    const struct coh_dir exp2 = BIV(.written = 1, .owner = B, .req = A, .req_type = COH_GET_M,
                                    .req_had = 0, .acks = 2, .rr = A,
                                    .sharers = BIT(B) | BIT(D));
    expect_dir("after WB", &d, &exp2);
}

/* Round-robin by node id from the cursor: with the cursor at 3, node 4 goes before node 1,
 * and node 3 itself (queued again) goes last. */
static void test_queue_round_robin_order(void **state)
{
    (void)state;
    struct coh_dir d = BWB(.written = 1, .owner = 5, .req = 2, .req_type = COH_GET_S, .rr = 3);
    dir_step("queue 1", &d, COH_GET_S, 1, NULL, 0);
    dir_step("queue 3", &d, COH_GET_S, 3, NULL, 0);
    dir_step("queue 4", &d, COH_GET_S, 4, NULL, 0);
    dir_step("queue 63", &d, COH_GET_S, 63, NULL, 0);
    const struct ea e[] = {ACT(COH_A_STORE), SEND(COH_DATA_S, 0, HOME, 2),
                           SEND(COH_DATA_S, 0, HOME, 4), SEND(COH_DATA_S, 0, HOME, 63),
                           SEND(COH_DATA_S, 0, HOME, 1), SEND(COH_DATA_S, 0, HOME, 3)};
    dir_step("PUT_M", &d, COH_PUT_M, 5, e, 6);
    assert_int_equal(d.rr, 3);
    assert_int_equal(d.state, COH_D_SHARED);
    assert_int_equal(d.sharers, BIT(1) | BIT(2) | BIT(3) | BIT(4) | BIT(63));
}

/* No starvation: two nodes that keep asking for exclusivity while a third is queued - the
 * third is served after at most one turn of each. */
static void test_queue_no_starvation(void **state)
{
    (void)state;
    struct coh_dir d = EX(.written = 1, .owner = 1);
    /* 2 asks: recall 1. */
    const struct ea r1[] = {SEND(COH_RECALL_I, 0, HOME, 1)};
    dir_step("2 GET_M", &d, COH_GET_M, 2, r1, 1);
    dir_step("3 GET_M queued", &d, COH_GET_M, 3, NULL, 0);
    dir_step("1 GET_M queued", &d, COH_GET_M, 1, NULL, 0);
    /* 1 writes back: 2 is granted; the cursor (0) says 1 is next, and 1 recalls 2. */
    const struct ea w1[] = {ACT(COH_A_STORE), SEND(COH_DATA_M, 0, HOME, 2),
                            SEND(COH_RECALL_I, 0, HOME, 2)};
    dir_step("WB from 1", &d, COH_WB, 1, w1, 3);
    assert_int_equal(d.req, 1);
    dir_step("2 GET_M queued again", &d, COH_GET_M, 2, NULL, 0);
    /* 2 writes back: 1 is granted; next after the cursor 1 is 2, then 3: 2 is served... */
    const struct ea w2[] = {ACT(COH_A_STORE), SEND(COH_DATA_M, 0, HOME, 1),
                            SEND(COH_RECALL_I, 0, HOME, 1)};
    dir_step("WB from 2", &d, COH_WB, 2, w2, 3);
    assert_int_equal(d.req, 2);
    dir_step("1 GET_M queued again", &d, COH_GET_M, 1, NULL, 0);
    /* ... and after 2, the cursor moves on to 3 before wrapping to 1. */
    const struct ea w3[] = {ACT(COH_A_STORE), SEND(COH_DATA_M, 0, HOME, 2),
                            SEND(COH_RECALL_I, 0, HOME, 2)};
    dir_step("WB from 1", &d, COH_WB, 1, w3, 3);
    assert_int_equal(d.req, 3);
    assert_int_equal(d.rr, 3);
    assert_int_equal(d.pend_m, BIT(1));
}

/* A queued request from the node that becomes the owner when it is served (it sent a second
 * request although its first was being served - impossible with one request per page per
 * node) is only rejected when the drain reaches it. */
static void test_queue_duplicate_of_requester(void **state)
{
    (void)state;
    struct coh_dir d =
        BIV(.written = 1, .req = B, .req_type = COH_GET_M, .acks = 1, .sharers = BIT(C));
    dir_step("B again, queued", &d, COH_GET_S, B, NULL, 0);
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    struct coh_msg m = msg(COH_INV_ACK, 0, C, HOME, PAGE);
    assert_int_equal(coh_dir_recv(&d, HOME, &m, &out, &why), COH_EPROTO);
    assert_non_null(why);
    assert_non_null(strstr(why, "owner"));
}

/* Not busy but requests queued (the directory never leaves itself so; the code drains). */
static void test_queue_drain_when_not_busy(void **state)
{
    (void)state;
    struct coh_dir d = SH(.written = 1, .pend_s = BIT(C));
    const struct ea e[] = {SEND(COH_DATA_S, 0, HOME, B), SEND(COH_DATA_S, 0, HOME, C)};
    dir_step("GET_S with a queue", &d, COH_GET_S, B, e, 2);
    const struct coh_dir exp = SH(.written = 1, .rr = C, .sharers = BIT(B) | BIT(C));
    expect_dir("after", &d, &exp);
}

/* Node ids up to COH_MAX_NODES - 1 work in every mask. */
static void test_dir_high_node_ids(void **state)
{
    (void)state;
    struct coh_dir d = SH(.written = 1, .sharers = BIT(63) | BIT(62));
    const struct ea e[] = {SEND(COH_INV, 0, HOME, 62), SEND(COH_INV, 0, HOME, 63)};
    dir_step("GET_M from 0", &d, COH_GET_M, 0, e, 2);
    dir_step("ack 63", &d, COH_INV_ACK, 63, NULL, 0);
    const struct ea g[] = {SEND(COH_DATA_M, 0, HOME, 0)};
    dir_step("ack 62", &d, COH_INV_ACK, 62, g, 1);
    assert_int_equal(d.state, COH_D_EXCL);
    assert_int_equal(d.owner, 0);
}

/* ------------------------------------------------------------------ races end to end */

/* Both machines, messages carried by hand in FIFO order per pair. */
static void node_step(const char *ctx, uint8_t *st, int self, unsigned type, unsigned flags,
                      int home, uint8_t after)
{
    struct coh_out out;
    out.n = 0;
    const char *why = NULL;
    struct coh_msg m = msg(type, flags, home, self, PAGE);
    int rc = coh_node_recv(st, self, &m, &out, &why);
    if (rc) fail_msg("%s: COH_EPROTO: %s", ctx, why ? why : "-");
    if (*st != after)
        fail_msg("%s: state %s, expected %s", ctx, coh_nstate_name(*st), coh_nstate_name(after));
}

/* The owner evicts (PUT_M) while the home recalls it for a reader: the PUT_M is the
 * write-back, the RECALL arrives at a node without a copy and is dropped. */
static void test_race_put_m_crosses_recall(void **state)
{
    (void)state;
    uint8_t own = COH_M;
    struct coh_dir d = EX(.written = 1, .owner = C);
    struct coh_out out;
    out.n = 0;
    assert_int_equal(coh_node_evict(&own, C, HOME, PAGE, &out), 0);   /* PUT_M in flight */
    const struct ea r[] = {SEND(COH_RECALL_S, 0, HOME, C)};
    dir_step("GET_S from B", &d, COH_GET_S, B, r, 1);                 /* RECALL_S in flight */
    const struct ea w[] = {ACT(COH_A_STORE), SEND(COH_DATA_S, 0, HOME, B)};
    dir_step("PUT_M arrives", &d, COH_PUT_M, C, w, 2);
    assert_int_equal(d.sharers, BIT(B));
    node_step("stale RECALL_S", &own, C, COH_RECALL_S, 0, HOME, COH_I);
    /* The former owner asks again: the stale recall it might still see in IS_D is dropped. */
    uint8_t again = COH_IS_D;
    node_step("stale RECALL_S in IS_D", &again, C, COH_RECALL_S, 0, HOME, COH_IS_D);
}

/* A sharer evicts (PUT_S) while the home invalidates it for a writer: the PUT_S is ignored,
 * the INV is acked from I, and the ack completes the round. */
static void test_race_put_s_crosses_inv(void **state)
{
    (void)state;
    uint8_t sh = COH_S;
    struct coh_dir d = SH(.written = 1, .sharers = BIT(C));
    struct coh_out out;
    out.n = 0;
    assert_int_equal(coh_node_evict(&sh, C, HOME, PAGE, &out), 0); /* PUT_S in flight */
    const struct ea inv[] = {SEND(COH_INV, 0, HOME, C)};
    dir_step("GET_M from B", &d, COH_GET_M, B, inv, 1);
    dir_step("PUT_S arrives", &d, COH_PUT_S, C, NULL, 0);
    assert_int_equal(d.state, COH_D_BUSY_INV);
    assert_int_equal(d.acks, 1);
    out.n = 0;
    const char *why = NULL;
    struct coh_msg m = msg(COH_INV, 0, HOME, C, PAGE);
    assert_int_equal(coh_node_recv(&sh, C, &m, &out, &why), 0);
    const struct ea ack[] = {SEND(COH_INV_ACK, 0, C, HOME)};
    expect_actions("stale INV", &out, ack, 1, PAGE);
    const struct ea g[] = {SEND(COH_DATA_M, 0, HOME, B)};
    dir_step("INV_ACK", &d, COH_INV_ACK, C, g, 1);
    assert_int_equal(d.state, COH_D_EXCL);
}

/* Two sharers upgrade at once: the first GET_M to arrive wins; the loser's INV turns its
 * SM_A into IM_AD, so its queued GET_M is later served with data, not NODATA. */
static void test_race_two_upgrades(void **state)
{
    (void)state;
    uint8_t b = COH_SM_A, c = COH_SM_A; /* both sent GET_M from S */
    struct coh_dir d = SH(.written = 1, .sharers = BIT(B) | BIT(C));
    const struct ea inv[] = {SEND(COH_INV, 0, HOME, C)};
    dir_step("GET_M from B", &d, COH_GET_M, B, inv, 1);
    dir_step("GET_M from C queued", &d, COH_GET_M, C, NULL, 0);
    node_step("INV at C", &c, C, COH_INV, 0, HOME, COH_IM_AD);
    const struct ea g[] = {SEND(COH_DATA_M, COH_F_NODATA, HOME, B),
                           SEND(COH_RECALL_I, 0, HOME, B)};
    dir_step("INV_ACK from C", &d, COH_INV_ACK, C, g, 2);
    node_step("DATA_M at B", &b, B, COH_DATA_M, COH_F_NODATA, HOME, COH_M);
    node_step("RECALL_I at B", &b, B, COH_RECALL_I, 0, HOME, COH_I);
    const struct ea w[] = {ACT(COH_A_STORE), SEND(COH_DATA_M, 0, HOME, C)};
    dir_step("WB from B", &d, COH_WB, B, w, 2);
    node_step("DATA_M at C", &c, C, COH_DATA_M, 0, HOME, COH_M);
    /* req_had is left over from B's upgrade: only BUSY_INV reads it. */
    const struct coh_dir exp = EX(.written = 1, .owner = C, .req = C, .req_type = COH_GET_M,
                                  .req_had = 1, .rr = C);
    expect_dir("end", &d, &exp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_msg_to_home),
        cmocka_unit_test(test_msg_has_payload),
        cmocka_unit_test(test_dir_init_and_idle),
        cmocka_unit_test(test_node_access_table),
        cmocka_unit_test(test_node_access_appends),
        cmocka_unit_test(test_node_access_self_home),
        cmocka_unit_test(test_node_evict),
        cmocka_unit_test(test_node_recv_table),
        cmocka_unit_test(test_node_recv_wrong_direction),
        cmocka_unit_test(test_node_replies_to_sender),
        cmocka_unit_test(test_dir_recv_table),
        cmocka_unit_test(test_dir_recv_wrong_direction),
        cmocka_unit_test(test_queue_readers_served_together),
        cmocka_unit_test(test_queue_drain_stops_when_busy),
        cmocka_unit_test(test_queue_round_robin_order),
        cmocka_unit_test(test_queue_no_starvation),
        cmocka_unit_test(test_queue_duplicate_of_requester),
        cmocka_unit_test(test_queue_drain_when_not_busy),
        cmocka_unit_test(test_dir_high_node_ids),
        cmocka_unit_test(test_race_put_m_crosses_recall),
        cmocka_unit_test(test_race_put_s_crosses_inv),
        cmocka_unit_test(test_race_two_upgrades),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

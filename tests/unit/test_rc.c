/*
 * test_rc.c - unit tests of the release-consistency node machine's release policy
 * (coherence/rc.c): which releases write-protect a single writer's page and which keep it
 * writable (`keep`), and that every path that drops or diffs a copy protects it first.
 *
 * Why here as well as in the model checker: the model (tests/model) has one thread per node,
 * so it can only check that a copy read for a write-back and left writable stays dirty; it
 * cannot see a second thread write between a read and a protection. The order of the actions
 * is what prevents that, and these tests pin it, action by action. They also pin the policy
 * itself (a page written once is protected at its first release; one written again within
 * RC_AGAIN_ACQS intervals is kept writable, with a twin, for RC_KEEP_TWINNED releases renewed
 * by every write; one written again after a longer pause is not), which no correctness checker
 * would notice going away. And they pin what an
 * acquire does to a copy whose node is registering as a writer (SM_A) - another thread of the
 * node may be waiting on that registration while this one takes a lock - which the model,
 * with its one thread per node, never reaches. Last, the rules of one-sided writer
 * registration: whom the shared words may name for a node to write without a message, and how
 * the home treats the writers it finds there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "coh.h"
#include "rc.h"

#define HOME  0
#define SELF  1
#define OTHER 2
#define PAGE  7

#define BIT(n) ((uint64_t)1 << (n))

/* The action kinds of `o`, with SENDs as their message type's negative, for comparison. */
static int kinds(const struct coh_out *o, int *k)
{
    for (int i = 0; i < o->n; i++)
        k[i] = o->a[i].kind == COH_A_SEND ? -(int)o->a[i].msg.type : o->a[i].kind;
    return o->n;
}

static void expect_actions(const struct coh_out *o, const int *want, int nwant, const char *what)
{
    int got[COH_OUT_MAX] = {0};
    int n = kinds(o, got);
    int same = n == nwant;
    for (int i = 0; same && i < n; i++) same = got[i] == want[i];
    if (!same) {
        char g[256] = "", w[256] = "";
        for (int i = 0; i < n; i++) snprintf(g + strlen(g), sizeof g - strlen(g), " %d", got[i]);
        for (int i = 0; i < nwant; i++)
            snprintf(w + strlen(w), sizeof w - strlen(w), " %d", want[i]);
        fail_msg("%s: actions [%s ] (negative: a SEND of that type), expected [%s ]", what, g, w);
    }
}

/* A registered single writer of a page homed elsewhere, holding a read-only copy. */
static void single_writer(uint8_t *st, struct rc_node *x)
{
    *st = COH_S;
    *x = (struct rc_node){.writers = BIT(SELF), .flags = RC_N_REG | RC_N_READER};
}

static void write_access(uint8_t *st, struct rc_node *x)
{
    struct coh_out o = {0};
    assert_int_equal(rc_node_access(st, x, SELF, HOME, PAGE, COH_ACC_WRITE, &o), COH_ACCESS_OK);
    const int want[] = {COH_A_UNPROTECT};
    expect_actions(&o, want, 1, "a registered single writer's write");
    assert_int_equal(*st, COH_M);
}

static void release(uint8_t *st, struct rc_node *x, struct coh_out *o)
{
    o->n = 0;
    rc_node_release(st, x, SELF, HOME, PAGE, 0, o);
}

static const int protect_and_send[] = {COH_A_PROTECT, -RC_DIFF};
static const int diff_kept[] = {COH_A_DIFF_KEEP};
static const int protect_diff_untwin[] = {COH_A_PROTECT, -RC_DIFF, COH_A_DROP_TWIN};

/* A write that finds the page written back at a recent release: it keeps a twin and stays
 * writable for RC_KEEP_TWINNED releases. */
static void write_again(uint8_t *st, struct rc_node *x)
{
    struct coh_out o = {0};
    assert_int_equal(rc_node_access(st, x, SELF, HOME, PAGE, COH_ACC_WRITE, &o), COH_ACCESS_OK);
    const int want[] = {COH_A_TWIN, COH_A_UNPROTECT};
    expect_actions(&o, want, 2, "a single writer's write soon after a write-back");
    assert_int_equal(*st, COH_M);
    assert_int_equal(x->keep, RC_KEEP_TWINNED);
    assert_int_not_equal(x->flags & RC_N_TWIN, 0);
}

static void release_how(uint8_t *st, struct rc_node *x, unsigned how, struct coh_out *o)
{
    o->n = 0;
    rc_node_release(st, x, SELF, HOME, PAGE, how, o);
}

/* A single writer's page written, released (protected) and written again in the next
 * interval: kept writable from then on. */
static void kept_writer(uint8_t *st, struct rc_node *x)
{
    struct coh_out o;
    single_writer(st, x);
    write_access(st, x);
    release(st, x, &o);
    expect_actions(&o, protect_and_send, 2, "first release");
    write_again(st, x);
}

static void test_written_once_is_protected_at_once(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    single_writer(&st, &x);
    write_access(&st, &x);
    release(&st, &x, &o);
    expect_actions(&o, protect_and_send, 2, "first release");
    assert_int_equal(o.a[1].msg.flags, RC_F_FULL);
    assert_int_equal(st, COH_S);
    release(&st, &x, &o);
    expect_actions(&o, NULL, 0, "a release with nothing written");
}

static void test_written_again_is_kept(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    kept_writer(&st, &x); /* written again in the next interval: kept from now on */
    release(&st, &x, &o); /* written: the diff, and the whole keep again */
    expect_actions(&o, diff_kept, 1, "a release of a written kept page");
    assert_int_equal(o.a[0].msg.flags & RC_F_FULL, 0); /* a diff against the twin */
    assert_int_equal(o.a[0].msg.dst, HOME);
    assert_int_equal(x.keep, RC_KEEP_TWINNED);
    for (int r = 0; r < RC_KEEP_TWINNED; r++) { /* then releases with nothing written */
        release_how(&st, &x, COH_REL_CLEAN, &o);
        expect_actions(&o, diff_kept, 1, "a release of an unwritten kept page");
        assert_int_equal(st, COH_M);
    }
    release_how(&st, &x, COH_REL_CLEAN, &o);
    expect_actions(&o, protect_diff_untwin, 3, "the release after the kept ones");
    assert_int_equal(st, COH_S);
    write_again(&st, &x); /* and the cycle starts again */
    release(&st, &x, &o);
    expect_actions(&o, diff_kept, 1, "a kept page, second cycle");
}

static void acquire(uint8_t *st, struct rc_node *x)
{
    struct coh_out o = {0};
    rc_node_acquire(st, x, SELF, HOME, PAGE, 0, &o);
    expect_actions(&o, NULL, 0, "an acquire of a page only this node writes");
}

/* A page written again after more than RC_AGAIN_ACQS intervals without a write is protected
 * at every release that sends it; one written within them is kept writable. */
static void test_written_after_a_long_pause_is_not_kept(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    single_writer(&st, &x);
    for (int round = 0; round < 3; round++) {
        write_access(&st, &x);
        release(&st, &x, &o); /* a barrier: release, then acquire */
        expect_actions(&o, protect_and_send, 2, "release after a write");
        acquire(&st, &x);
        for (int k = 0; k < RC_AGAIN_ACQS; k++) {
            assert_int_equal(x.flags & RC_N_AGAIN, RC_N_AGAIN);
            release(&st, &x, &o); /* an interval without a write */
            expect_actions(&o, NULL, 0, "release after an interval without a write");
            acquire(&st, &x);
        }
        assert_int_equal(x.flags & RC_N_AGAIN, 0);
    }
}

static void test_written_every_other_interval_is_kept(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    single_writer(&st, &x);
    write_access(&st, &x);
    release(&st, &x, &o);
    expect_actions(&o, protect_and_send, 2, "release after the first write");
    acquire(&st, &x);
    release(&st, &x, &o); /* an interval without a write */
    expect_actions(&o, NULL, 0, "release after an interval without a write");
    acquire(&st, &x);
    write_again(&st, &x);
    release(&st, &x, &o);
    expect_actions(&o, diff_kept, 1, "release of a page written again after one pause");
}

static void test_barrier_interval_write_is_kept(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    single_writer(&st, &x);
    write_access(&st, &x);
    release(&st, &x, &o);
    acquire(&st, &x); /* the barrier's acquire starts the next interval */
    write_again(&st, &x);
    release(&st, &x, &o);
    expect_actions(&o, diff_kept, 1, "release of a page written in consecutive intervals");
}

static void test_acquire_protects_a_kept_page_before_dropping_it(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    kept_writer(&st, &x);
    release(&st, &x, &o);
    expect_actions(&o, diff_kept, 1, "kept");
    x.writers |= BIT(OTHER); /* another writer, as a CLASS would have said */
    o.n = 0;
    rc_node_acquire(&st, &x, SELF, HOME, PAGE, 0, &o);
    const int want[] = {COH_A_PROTECT, -RC_DIFF, COH_A_DROP_TWIN, COH_A_UNMAP};
    expect_actions(&o, want, 4, "acquire of a kept page another node writes");
    assert_int_equal(st, COH_I);
    assert_int_equal(x.keep, 0);
    assert_int_equal(x.flags & RC_N_AGAIN, 0);
}

static void test_write_back_always_protects(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o = {0};
    kept_writer(&st, &x);
    o.n = 0;
    rc_node_write_back(&st, &x, SELF, HOME, PAGE, &o); /* eviction */
    expect_actions(&o, protect_diff_untwin, 3, "write-back of a kept page (eviction)");
    assert_int_equal(st, COH_S);
    assert_int_equal(x.keep, 0);
}

/* A second writer: a single writer holding the page writable without a twin sends what it
 * wrote so far whole and starts keeping one; a kept page has its twin already. */
static void test_second_writer_starts_the_twin(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o = {0};
    single_writer(&st, &x);
    write_access(&st, &x);
    struct coh_msg m = {
        .type = RC_CLASS, .src = HOME, .dst = SELF, .page = PAGE, .arg = BIT(SELF) | BIT(OTHER)};
    const char *why = NULL;
    o.n = 0;
    assert_int_equal(rc_node_recv(&st, &x, SELF, &m, &o, &why), 0);
    const int want[] = {COH_A_PROTECT, -RC_DIFF, COH_A_TWIN, COH_A_UNPROTECT, -RC_CLASS_ACK};
    expect_actions(&o, want, 5, "CLASS to a kept page");
    assert_int_equal(x.keep, 0);
    assert_int_not_equal(x.flags & RC_N_TWIN, 0);
    /* From here on it diffs against its twin, and every release protects first. */
    release(&st, &x, &o);
    const int diff[] = {COH_A_PROTECT, -RC_DIFF, COH_A_DROP_TWIN};
    expect_actions(&o, diff, 3, "release with a twin");
    assert_int_equal(o.a[1].msg.flags & RC_F_FULL, 0);
    assert_int_equal(st, COH_S);
    kept_writer(&st, &x); /* (a fresh single writer, kept) */
    o.n = 0;
    assert_int_equal(rc_node_recv(&st, &x, SELF, &m, &o, &why), 0);
    const int ack[] = {-RC_CLASS_ACK};
    expect_actions(&o, ack, 1, "CLASS to a kept page (twinned already)");
    assert_int_equal(x.keep, RC_KEEP_TWINNED);
    release(&st, &x, &o);
    expect_actions(&o, diff_kept, 1, "release of a kept page with two writers");
}

static void test_home_writer_is_never_kept(void **state)
{
    (void)state;
    uint8_t st = COH_S;
    struct rc_node x = {.writers = BIT(HOME), .flags = RC_N_REG | RC_N_READER | RC_N_AGAIN};
    struct coh_out o = {0};
    assert_int_equal(rc_node_access(&st, &x, HOME, HOME, PAGE, COH_ACC_WRITE, &o), COH_ACCESS_OK);
    assert_int_not_equal(x.flags & RC_N_OWNED, 0);
    assert_int_equal(x.keep, 0); /* it writes in place and sends nothing */
    o.n = 0;
    rc_node_release(&st, &x, HOME, HOME, PAGE, 0, &o);
    expect_actions(&o, NULL, 0, "release by the home, sole writer");
    assert_int_equal(st, COH_M);
}

/* A home whose view of the page is its store (COH_ACC_INPLACE) and which shares the page with
 * another writer: it writes in place with no twin, sends nothing at a release, keeps its copy
 * at an acquire (every released diff lands in what it sees), and a new writer's CLASS only
 * gets an ack. Without INPLACE the same home twins, and drops its copy at the acquire. */
static void test_inplace_home_shares_without_cost(void **state)
{
    (void)state;
    for (int inplace = 1; inplace >= 0; inplace--) {
        uint8_t st = COH_S;
        struct rc_node x = {.writers = BIT(HOME) | BIT(OTHER), .flags = RC_N_REG | RC_N_READER};
        struct coh_out o = {0};
        const unsigned how = COH_ACC_WRITE | (inplace ? COH_ACC_INPLACE : 0);
        assert_int_equal(rc_node_access(&st, &x, HOME, HOME, PAGE, how, &o), COH_ACCESS_OK);
        assert_int_equal(st, COH_M);
        if (!inplace) {
            const int want[] = {COH_A_TWIN, COH_A_UNPROTECT};
            expect_actions(&o, want, 2, "a home writer of a shared page, two copies");
            o.n = 0;
            rc_node_acquire(&st, &x, HOME, HOME, PAGE, 0, &o);
            assert_int_equal(st, COH_I);
            continue;
        }
        const int want[] = {COH_A_UNPROTECT};
        expect_actions(&o, want, 1, "a home writer of a shared page, in place");
        assert_int_not_equal(x.flags & RC_N_OWNED, 0);
        for (int round = 0; round < 3; round++) {
            o.n = 0;
            rc_node_release(&st, &x, HOME, HOME, PAGE, 0, &o);
            expect_actions(&o, NULL, 0, "release by an in-place home");
            rc_node_acquire(&st, &x, HOME, HOME, PAGE, 0, &o);
            expect_actions(&o, NULL, 0, "acquire by an in-place home");
            assert_int_equal(st, COH_M);
        }
        const struct coh_msg class = {.type = RC_CLASS,
                                      .src = HOME,
                                      .dst = HOME,
                                      .page = PAGE,
                                      .arg = BIT(HOME) | BIT(OTHER) | BIT(SELF)};
        const char *why = NULL;
        assert_int_equal(rc_node_recv(&st, &x, HOME, &class, &o, &why), 0);
        const int ack[] = {-RC_CLASS_ACK};
        expect_actions(&o, ack, 1, "CLASS at an in-place home writer");
        assert_int_equal(st, COH_M);
        assert_int_equal(x.flags & RC_N_TWIN, 0);
    }
}

/* A read copy of a page another node writes, at acquires. Dropped the first time; read again,
 * it is refreshed in place at the next RC_REFRESHES acquires where the engine offers it, then
 * dropped again. Never refreshed without the offer, nor right after sending its own changes
 * (the store may not hold them yet). */
static void test_refresh_of_a_copy_read_again(void **state)
{
    (void)state;
    uint8_t st = COH_S;
    struct rc_node x = {.writers = BIT(OTHER), .flags = RC_N_READER};
    struct coh_out o = {0};
    const int drop[] = {COH_A_UNMAP}, refresh[] = {COH_A_REFRESH}, fetch[] = {COH_A_FETCH};
    rc_node_acquire(&st, &x, SELF, HOME, PAGE, COH_ACC_REFRESH, &o);
    expect_actions(&o, drop, 1, "first acquire: the copy is not known to be read again");
    assert_int_equal(st, COH_I);
    o.n = 0;
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_FETCH, &o), COH_ACCESS_OK);
    expect_actions(&o, fetch, 1, "read again after the drop");
    for (int i = 0; i < RC_REFRESHES; i++) {
        o.n = 0;
        rc_node_acquire(&st, &x, SELF, HOME, PAGE, COH_ACC_REFRESH, &o);
        expect_actions(&o, refresh, 1, "acquire of a copy read again");
        assert_int_equal(st, COH_S);
    }
    o.n = 0;
    rc_node_acquire(&st, &x, SELF, HOME, PAGE, COH_ACC_REFRESH, &o);
    expect_actions(&o, drop, 1, "acquire after RC_REFRESHES refreshes");
    o.n = 0;
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_FETCH, &o), COH_ACCESS_OK);
    o.n = 0;
    rc_node_acquire(&st, &x, SELF, HOME, PAGE, 0, &o);
    expect_actions(&o, drop, 1, "acquire without the offer (another host, a write-back in flight)");

    /* A writer among others: with the offer, the home's store is merged into its copy,
     * which keeps what this node wrote (to send at its release); without it (another host,
     * a write-back in flight), its changes go home and the copy goes. */
    st = COH_S;
    x = (struct rc_node){
        .writers = BIT(SELF) | BIT(OTHER), .flags = RC_N_REG | RC_N_READER, .hot = 3};
    o.n = 0;
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_WRITE, &o), COH_ACCESS_OK);
    o.n = 0;
    rc_node_acquire(&st, &x, SELF, HOME, PAGE, COH_ACC_REFRESH, &o);
    const int merge[] = {COH_A_MERGE};
    expect_actions(&o, merge, 1, "acquire of a copy written among other writers, offered");
    assert_int_equal(st, COH_M);
    o.n = 0;
    rc_node_acquire(&st, &x, SELF, HOME, PAGE, 0, &o);
    const int send_drop[] = {COH_A_PROTECT, -RC_DIFF, COH_A_DROP_TWIN, COH_A_UNMAP};
    expect_actions(&o, send_drop, 4, "acquire of a copy written among other writers");
    assert_int_equal(st, COH_I);
}

/* False sharing (workload (d)): a page with other writers that is written again in the
 * interval right after its release stays writable, twin and all, and each release sends a
 * diff that keeps the twin (no protection, so no fault at the next write). A written page
 * gets its whole budget back at every release; one left unwritten (COH_REL_CLEAN) runs out
 * of it and is protected, its twin dropped, as before. */
static void test_falsely_shared_page_stays_writable(void **state)
{
    (void)state;
    uint8_t st = COH_S;
    struct rc_node x = {.writers = BIT(SELF) | BIT(OTHER), .flags = RC_N_REG | RC_N_READER};
    struct coh_out o = {0};
    const int twin_w[] = {COH_A_TWIN, COH_A_UNPROTECT};
    const int wb[] = {COH_A_PROTECT, -RC_DIFF, COH_A_DROP_TWIN};
    const int keep[] = {COH_A_DIFF_KEEP};
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_WRITE, &o), COH_ACCESS_OK);
    expect_actions(&o, twin_w, 2, "first write among other writers");
    release(&st, &x, &o);
    expect_actions(&o, wb, 3, "release of a page written once");
    assert_int_equal(st, COH_S);
    o.n = 0;
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_WRITE, &o), COH_ACCESS_OK);
    expect_actions(&o, twin_w, 2, "written again in the next interval");
    assert_int_equal(x.keep, RC_KEEP_TWINNED);
    for (int i = 0; i < 3 * RC_KEEP_TWINNED; i++) { /* written every interval: never protected */
        release(&st, &x, &o);
        expect_actions(&o, keep, 1, "release of a page written interval after interval");
        assert_int_equal(o.a[0].msg.type, RC_DIFF);
        assert_int_equal(o.a[0].msg.flags & RC_F_FULL, 0);
        assert_int_equal(st, COH_M);
        assert_int_equal(x.keep, RC_KEEP_TWINNED);
    }
    for (int i = 0; i < RC_KEEP_TWINNED; i++) { /* no longer written */
        o.n = 0;
        rc_node_release(&st, &x, SELF, HOME, PAGE, COH_REL_CLEAN, &o);
        expect_actions(&o, keep, 1, "release of a kept page left unwritten");
    }
    o.n = 0;
    rc_node_release(&st, &x, SELF, HOME, PAGE, COH_REL_CLEAN, &o);
    expect_actions(&o, wb, 3, "release once the budget is spent");
    assert_int_equal(st, COH_S);
}

/* Another thread of the node acquires (its lock) while the first waits for its registration
 * as a writer, holding a read-only copy (SM_A). If another node writes the page, the copy
 * may be older than that node's release the acquire is ordered after: it must go, or the
 * acquiring thread reads it (history_run -p rc -t 2 lost lock-protected increments so). */
static void registering_reader_acquires(uint8_t *st, struct rc_node *x, struct coh_out *o)
{
    *st = COH_S;
    *x = (struct rc_node){.writers = BIT(OTHER), .flags = RC_N_READER};
    o->n = 0;
    assert_int_equal(rc_node_access(st, x, SELF, HOME, PAGE, COH_ACC_WRITE, o), COH_ACCESS_WAIT);
    const int want[] = {-RC_WREG};
    expect_actions(o, want, 1, "a write to a read copy of a page another node writes");
    assert_int_equal(*st, COH_SM_A);
    o->n = 0;
    assert_int_equal(rc_node_access(st, x, SELF, HOME, PAGE, 0, o), COH_ACCESS_OK);
    /* Another thread's acquire. */
    o->n = 0;
    rc_node_acquire(st, x, SELF, HOME, PAGE, 0, o);
}

static void test_acquire_while_registering_drops_the_copy(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    registering_reader_acquires(&st, &x, &o);
    const int unmap[] = {COH_A_UNMAP};
    expect_actions(&o, unmap, 1, "an acquire while registering as a writer");
    /* Reads now wait too (no copy), and the registration's answer does not restore one. */
    o.n = 0;
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, 0, &o), COH_ACCESS_WAIT);
    assert_int_equal(o.n, 0);
    const char *why = NULL;
    struct coh_msg ack = {
        .type = RC_WREG_ACK, .src = HOME, .dst = SELF, .page = PAGE, .arg = BIT(SELF) | BIT(OTHER)};
    o.n = 0;
    assert_int_equal(rc_node_recv(&st, &x, SELF, &ack, &o, &why), 0);
    assert_int_equal(o.n, 0);
    assert_int_equal(st, COH_I);
    assert_true(x.flags & RC_N_REG);
    /* The retried write takes the page again: one-sided as a registered writer (with a twin:
     * there is another writer), or by asking the home. */
    o.n = 0;
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_WRITE | COH_ACC_FETCH, &o),
                     COH_ACCESS_OK);
    const int fetch[] = {COH_A_FETCH, COH_A_TWIN, COH_A_UNPROTECT};
    expect_actions(&o, fetch, 3, "the retried write, one-sided");
    assert_int_equal(st, COH_M);
}

/* The same state must not accept page data: nothing was asked for but the registration. */
static void test_registration_without_copy_refuses_data(void **state)
{
    (void)state;
    uint8_t st;
    struct rc_node x;
    struct coh_out o;
    registering_reader_acquires(&st, &x, &o);
    const char *why = NULL;
    struct coh_msg data = {
        .type = RC_DATA, .src = HOME, .dst = SELF, .page = PAGE, .arg = BIT(SELF) | BIT(OTHER)};
    o.n = 0;
    assert_int_equal(rc_node_recv(&st, &x, SELF, &data, &o, &why), COH_EPROTO);
}

/* With no other writer known, the copy is current at the acquire and stays readable. */
static void test_acquire_while_registering_alone_keeps_the_copy(void **state)
{
    (void)state;
    uint8_t st = COH_S;
    struct rc_node x = {.writers = 0, .flags = RC_N_READER};
    struct coh_out o = {0};
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_WRITE, &o), COH_ACCESS_WAIT);
    o.n = 0;
    rc_node_acquire(&st, &x, SELF, HOME, PAGE, 0, &o);
    assert_int_equal(o.n, 0);
    assert_int_equal(st, COH_SM_A);
    o.n = 0;
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, 0, &o), COH_ACCESS_OK);
}

/* One-sided writer registration (rc.h): who the words may name for a node to write at once. */
static void test_onesided_writer_may_write_alone(void **state)
{
    (void)state;
    uint8_t st = COH_I;
    struct rc_node x = {0};
    struct coh_out o = {0};
    const unsigned how = COH_ACC_WRITE | COH_ACC_FETCH;
    assert_true(rc_node_may_register_writer(st, &x, how));
    assert_false(rc_node_may_register_writer(st, &x, COH_ACC_WRITE)); /* not offered */
    assert_false(rc_node_may_register_writer(st, &x, COH_ACC_FETCH)); /* a read */
    /* Its own bits, and the home's as reader and writer (its view is its store), are no one to
     * tell: it writes at once, a reader and a writer now, taking the page from the store. */
    assert_int_equal(
        rc_node_registered_writer(&x, SELF, HOME, BIT(SELF) | BIT(HOME), BIT(HOME), BIT(SELF), 0),
        1);
    assert_int_equal(x.flags & (RC_N_REG | RC_N_READER | RC_N_SELFREG),
                     RC_N_REG | RC_N_READER | RC_N_SELFREG);
    assert_int_equal(x.writers, BIT(SELF) | BIT(HOME));
    assert_false(rc_node_may_register_writer(st, &x, how)); /* once */
    assert_int_equal(rc_node_access(&st, &x, SELF, HOME, PAGE, how, &o), COH_ACCESS_OK);
    const int want[] = {COH_A_FETCH, COH_A_TWIN, COH_A_UNPROTECT};
    expect_actions(&o, want, 3, "a one-sided writer's first write");
    /* Alone or not, it twins at every write: a second writer need not tell it to start. */
    release(&st, &x, &o);
    expect_actions(&o, protect_diff_untwin, 3, "a one-sided writer's release");
    assert_int_equal(o.a[1].msg.flags & RC_F_FULL, 0);
}

static void test_onesided_writer_tells_who_cannot_see(void **state)
{
    (void)state;
    const uint64_t me = BIT(SELF), other = BIT(OTHER);
    struct {
        uint64_t readers, writers, selfreg, watchers;
        int alone;
        const char *what;
    } cases[] = {
        {me | other, 0, me, 0, 0, "a reader that does not watch"},
        {me | other, 0, me, other, 1, "a reader that watches"},
        {me | other, other, me, other, 0, "a watching writer that sends its page whole"},
        {me | other, other, me | other, other, 1, "a watching writer that twins"},
        {me | other, 0, me | other, 0, 0, "a writer that twins but does not watch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t st = COH_S;
        struct rc_node x = {.flags = RC_N_READER};
        struct coh_out o = {0};
        int alone = rc_node_registered_writer(&x, SELF, HOME, cases[i].readers, cases[i].writers,
                                              cases[i].selfreg, cases[i].watchers);
        if (alone != cases[i].alone)
            fail_msg("%s: registered %d, expected %d", cases[i].what, alone, cases[i].alone);
        /* Told first or not, it keeps a twin from its first write. */
        assert_int_not_equal(x.flags & RC_N_SELFREG, 0);
        if (alone) continue;
        assert_int_equal(
            rc_node_access(&st, &x, SELF, HOME, PAGE, COH_ACC_WRITE | COH_ACC_FETCH, &o),
            COH_ACCESS_WAIT);
        const int wreg[] = {-RC_WREG};
        expect_actions(&o, wreg, 1, cases[i].what);
    }
}

/* The home takes one-sided writers in from the words: it expects their diffs, names them in
 * replies, and tells them of a new writer only where they do not watch. */
static void test_home_knows_onesided_writers(void **state)
{
    (void)state;
    struct rc_dir d;
    struct coh_out o = {0};
    const char *why = NULL;
    rc_dir_init(&d);
    struct coh_msg diff = {.type = RC_DIFF, .src = SELF, .dst = HOME, .page = PAGE};
    assert_int_equal(rc_dir_recv(&d, HOME, &diff, &o, &why), COH_EPROTO); /* unknown writer */
    rc_dir_readers_seen(&d, BIT(SELF));
    rc_dir_writers_seen(&d, BIT(SELF));
    o.n = 0;
    assert_int_equal(rc_dir_recv(&d, HOME, &diff, &o, &why), 0);
    /* A reader asking by message is published as one; it is told SELF writes. */
    struct coh_msg get = {.type = RC_GET, .src = OTHER, .dst = HOME, .page = PAGE};
    assert_int_equal(rc_dir_publish_reader(&d, &get), BIT(OTHER));
    assert_int_equal(rc_dir_publish(&d, &get), 0);
    o.n = 0;
    assert_int_equal(rc_dir_recv(&d, HOME, &get, &o, &why), 0);
    assert_int_equal(o.a[0].msg.type, RC_DATA);
    assert_int_equal(o.a[0].msg.arg, BIT(SELF));
    assert_int_equal(rc_dir_publish_reader(&d, &get), 0); /* once */
    /* OTHER registers to write: SELF watches and twins, so only an unwatching one is told. */
    struct coh_msg wreg = {.type = RC_WREG, .src = OTHER, .dst = HOME, .page = PAGE};
    assert_int_equal(rc_dir_publish(&d, &wreg), BIT(OTHER));
    rc_dir_watchers_seen(&d, BIT(SELF));
    o.n = 0;
    assert_int_equal(rc_dir_recv(&d, HOME, &wreg, &o, &why), 0);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.a[0].msg.type, RC_WREG_ACK);
    assert_int_equal(o.a[0].msg.arg, BIT(SELF) | BIT(OTHER));
    /* Without watching, SELF is told (CLASS) before the new writer may write. */
    rc_dir_init(&d);
    rc_dir_readers_seen(&d, BIT(SELF));
    rc_dir_writers_seen(&d, BIT(SELF));
    o.n = 0;
    assert_int_equal(rc_dir_recv(&d, HOME, &wreg, &o, &why), 0);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.a[0].msg.type, RC_CLASS);
    assert_int_equal(o.a[0].msg.dst, SELF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_written_once_is_protected_at_once),
        cmocka_unit_test(test_written_again_is_kept),
        cmocka_unit_test(test_written_after_a_long_pause_is_not_kept),
        cmocka_unit_test(test_written_every_other_interval_is_kept),
        cmocka_unit_test(test_barrier_interval_write_is_kept),
        cmocka_unit_test(test_acquire_protects_a_kept_page_before_dropping_it),
        cmocka_unit_test(test_write_back_always_protects),
        cmocka_unit_test(test_second_writer_starts_the_twin),
        cmocka_unit_test(test_home_writer_is_never_kept),
        cmocka_unit_test(test_inplace_home_shares_without_cost),
        cmocka_unit_test(test_refresh_of_a_copy_read_again),
        cmocka_unit_test(test_falsely_shared_page_stays_writable),
        cmocka_unit_test(test_acquire_while_registering_drops_the_copy),
        cmocka_unit_test(test_registration_without_copy_refuses_data),
        cmocka_unit_test(test_acquire_while_registering_alone_keeps_the_copy),
        cmocka_unit_test(test_onesided_writer_may_write_alone),
        cmocka_unit_test(test_onesided_writer_tells_who_cannot_see),
        cmocka_unit_test(test_home_knows_onesided_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_shm.c - the shared-memory rings (transport/shm.c) on their own: two nodes in this
 * process, each wrapped around a fake base transport that records what reaches it.
 *
 *   - announcements: a node attaches its peer's rings from a good announcement, refuses a
 *     malformed one (-1), and routes to the base (0, with the reason) for another boot id, a
 *     descriptor that is not the announced file, and "-";
 *   - frames: pages cross in order, intact, through the ring and (beyond 1024 in flight) the
 *     backlog; nothing reaches the base for a routed peer, everything for an unrouted one;
 *     sent frames become visible at flush, all together, not one by one;
 *   - losses: when the base loses a peer, what the peer left in the ring is delivered first,
 *     then the loss is reported, once;
 *   - a corrupt frame in the ring loses the peer with a reason naming it, and is not delivered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsm.h"
#include "shm.h"
#include "transport.h"
#include "wire.h"

#define NPAGES 64u
#define BASE   0x500000000000ull

/* ---------------------------------------------------------------- a fake base transport */

struct fake {
    struct dsm_tp tp;
    int sent[2];   /* frames handed to the base, per destination */
    int lose_peer; /* poll reports this peer lost (once), -1: none */
};

static int f_send(struct dsm_tp *tp, int dst, const struct dsm_wire_hdr *h, const void *payload)
{
    (void)h;
    (void)payload;
    ((struct fake *)tp)->sent[dst]++;
    return 0;
}
static void f_flush(struct dsm_tp *tp)
{
    (void)tp;
}
static int f_poll(struct dsm_tp *tp)
{
    struct fake *f = (struct fake *)tp;
    if (f->lose_peer >= 0) {
        int p = f->lose_peer;
        f->lose_peer = -1;
        tp->lost(tp->cb_ctx, p, "node 1 closed the connection");
    }
    return 0;
}
static int f_wait(struct dsm_tp *tp, int arm, long timeout_us)
{
    (void)tp;
    (void)arm;
    (void)timeout_us;
    return 0;
}
static void f_kick(struct dsm_tp *tp)
{
    (void)tp;
}
static void f_destroy(struct dsm_tp *tp)
{
    free(tp);
}
static const struct dsm_tp_ops fake_ops = {"tcp",  f_send, f_flush,  f_poll,
                                           f_wait, f_kick, f_destroy};

/* ---------------------------------------------------------------- a node */

struct node {
    int rank;
    struct dsm_shm *shm;
    struct fake *base;
    struct dsm_tp *tp;
    uint64_t next_seq; /* DATA_S frames seen, in order */
    int bad_page, out_of_order, lost, delivered_after_lost;
    char lost_why[512];
};

static void fill(uint8_t *p, uint64_t seq)
{
    for (unsigned i = 0; i < DSM_PAGE_SIZE; i++) p[i] = (uint8_t)(seq * 31 + i);
}

static void on_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload)
{
    struct node *n = ctx;
    if (n->lost) n->delivered_after_lost++;
    if (h->type != DSM_MSG_DATA_S) return;
    if (h->arg1 != n->next_seq) n->out_of_order++;
    n->next_seq = h->arg1 + 1;
    uint8_t want[DSM_PAGE_SIZE];
    fill(want, h->arg1);
    if (h->len != DSM_PAGE_SIZE || memcmp(payload, want, DSM_PAGE_SIZE)) n->bad_page++;
}

static void on_lost(void *ctx, int peer, const char *why)
{
    struct node *n = ctx;
    (void)peer;
    n->lost++;
    snprintf(n->lost_why, sizeof n->lost_why, "%s", why);
}

static void make(struct node *n, int rank)
{
    memset(n, 0, sizeof *n);
    n->rank = rank;
    char why[256];
    assert_int_equal(dsm_shm_create(rank, 2, &n->shm, why, sizeof why), 0);
    dsm_shm_set_callbacks(n->shm, on_deliver, on_lost, n);
    n->base = calloc(1, sizeof *n->base);
    assert_non_null(n->base);
    n->base->tp = (struct dsm_tp){.ops = &fake_ops,
                                  .rank = rank,
                                  .nodes = 2,
                                  .deliver = dsm_shm_base_deliver,
                                  .lost = dsm_shm_base_lost,
                                  .cb_ctx = n->shm,
                                  .wake_fd = -1};
    n->base->tp.limits = (struct dsm_wire_limits){.npages = NPAGES, .base = BASE, .nodes = 2};
    n->base->lose_peer = -1;
}

static void wrap(struct node *n)
{
    n->tp = dsm_shm_wrap(n->shm, &n->base->tp);
}

/* Both nodes made and each attached to the other. */
static void pair(struct node n[2])
{
    char ann[2][DSM_SHM_ANN], why[300];
    make(&n[0], 0);
    make(&n[1], 1);
    for (int r = 0; r < 2; r++) dsm_shm_announce(n[r].shm, ann[r], sizeof ann[r]);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(dsm_shm_attach(n[r].shm, 1 - r, ann[1 - r], why, sizeof why), 1);
        assert_int_equal(dsm_shm_routes(n[r].shm), 1);
        wrap(&n[r]);
    }
}

static void send_page(struct node *n, int dst, uint64_t seq)
{
    static uint8_t page[DSM_PAGE_SIZE];
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_DATA_S, (uint32_t)n->rank);
    h.arg0 = seq % NPAGES;
    h.arg1 = seq;
    h.len = DSM_PAGE_SIZE;
    fill(page, seq);
    assert_int_equal(n->tp->ops->send(n->tp, dst, &h, page), 0);
}

/* ---------------------------------------------------------------- tests */

static void announcements(void **state)
{
    (void)state;
    struct node a, b;
    make(&a, 0);
    make(&b, 1);
    char ann[DSM_SHM_ANN], why[300], bad[DSM_SHM_ANN + 8];
    dsm_shm_announce(b.shm, ann, sizeof ann);

    assert_int_equal(dsm_shm_attach(a.shm, 1, "-", why, sizeof why), 0);
    assert_non_null(strstr(why, "no shared memory"));
    assert_int_equal(dsm_shm_attach(a.shm, 1, "not an announcement", why, sizeof why), -1);
    assert_int_equal(dsm_shm_attach(a.shm, 1, "", why, sizeof why), -1);
    snprintf(bad, sizeof bad, "%s.9", ann); /* trailing field */
    assert_int_equal(dsm_shm_attach(a.shm, 1, bad, why, sizeof why), -1);

    /* Another boot id: another host. */
    snprintf(bad, sizeof bad, "%s", ann);
    bad[0] = bad[0] == '0' ? '1' : '0';
    assert_int_equal(dsm_shm_attach(a.shm, 1, bad, why, sizeof why), 0);
    assert_non_null(strstr(why, "another host"));

    /* The right boot and pid, a descriptor that is not the file (the inode says so). */
    unsigned pid, fd, bfd;
    unsigned long long ino, dev, bino, bdev;
    char hex[40];
    assert_int_equal(sscanf(ann, "%32[0-9a-f].%u.%u.%llu.%llu.%u.%llu.%llu", hex, &pid, &fd, &ino,
                            &dev, &bfd, &bino, &bdev),
                     8);
    snprintf(bad, sizeof bad, "%s.%u.%u.%llu.%llu.%u.%llu.%llu", hex, pid, fd, ino + 1, dev, bfd,
             bino, bdev);
    assert_int_equal(dsm_shm_attach(a.shm, 1, bad, why, sizeof why), 0);
    assert_non_null(strstr(why, "not the announced"));
    /* The doorbell swapped for the file: a regular file where a pipe was announced. */
    snprintf(bad, sizeof bad, "%s.%u.%u.%llu.%llu.%u.%llu.%llu", hex, pid, fd, ino, dev, fd, ino,
             dev);
    assert_int_equal(dsm_shm_attach(a.shm, 1, bad, why, sizeof why), 0);
    assert_non_null(strstr(why, "not the announced pipe"));
    assert_int_equal(dsm_shm_routes(a.shm), 0);

    assert_int_equal(dsm_shm_attach(a.shm, 1, ann, why, sizeof why), 1);
    assert_int_equal(dsm_shm_routes(a.shm), 1);
    dsm_shm_free(a.shm);
    dsm_shm_free(b.shm);
    free(a.base);
    free(b.base);
}

static void frames_in_order_through_ring_and_backlog(void **state)
{
    (void)state;
    struct node n[2];
    pair(n);
    const uint64_t count = 3000; /* ~3 rings' worth: most wait in the backlog at first */
    for (uint64_t s = 0; s < count; s++) send_page(&n[0], 1, s);
    for (int spins = 0; n[1].next_seq < count && spins < 300000; spins++) {
        n[0].tp->ops->flush(n[0].tp);
        n[1].tp->ops->poll(n[1].tp);
    }
    assert_int_equal(n[1].next_seq, count);
    assert_int_equal(n[1].out_of_order, 0);
    assert_int_equal(n[1].bad_page, 0);
    assert_int_equal(n[0].base->sent[1], 0); /* nothing went to the base */
    assert_int_equal(n[0].tp->ring_cnt.msgs_sent, count);
    assert_int_equal(n[1].tp->ring_cnt.msgs_recv, count);
    assert_string_equal(n[0].tp->ops->name, "shm+tcp");
    for (int r = 0; r < 2; r++) n[r].tp->ops->destroy(n[r].tp);
}

static void visible_at_flush(void **state)
{
    (void)state;
    struct node n[2];
    pair(n);
    for (uint64_t s = 0; s < 9; s++) send_page(&n[0], 1, s);
    n[1].tp->ops->poll(n[1].tp);
    assert_int_equal(n[1].next_seq, 0); /* written, not published */
    n[0].tp->ops->flush(n[0].tp);
    n[1].tp->ops->poll(n[1].tp);
    assert_int_equal(n[1].next_seq, 9); /* one poll takes the whole batch */
    for (int r = 0; r < 2; r++) n[r].tp->ops->destroy(n[r].tp);
}

static void unrouted_peer_uses_the_base(void **state)
{
    (void)state;
    struct node n;
    make(&n, 0);
    wrap(&n); /* never attached */
    send_page(&n, 1, 0);
    assert_int_equal(n.base->sent[1], 1);
    assert_int_equal(n.tp->ring_cnt.msgs_sent, 0);
    n.tp->ops->destroy(n.tp);
}

static void loss_after_what_the_peer_left(void **state)
{
    (void)state;
    struct node n[2];
    pair(n);
    for (uint64_t s = 0; s < 10; s++) send_page(&n[1], 0, s);
    n[1].tp->ops->flush(n[1].tp); /* frames become visible at flush, as over TCP */
    /* Node 1's connection closes before node 0 polled: the frames come first, then the loss.
     * Every peer is on this host both ways, so the base is looked at every 64th poll only
     * (or when wait saw it readable): the loss is seen within 64 polls. */
    n[0].base->lose_peer = 1;
    for (int k = 0; k < 64 && !n[0].lost; k++) n[0].tp->ops->poll(n[0].tp);
    assert_int_equal(n[0].next_seq, 10);
    assert_int_equal(n[0].lost, 1);
    assert_int_equal(n[0].delivered_after_lost, 0);
    assert_non_null(strstr(n[0].lost_why, "closed the connection"));
    /* Lost once, and sending to it fails from now on. */
    n[0].tp->ops->poll(n[0].tp);
    assert_int_equal(n[0].lost, 1);
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_INV_ACK, 0);
    assert_int_equal(n[0].tp->ops->send(n[0].tp, 1, &h, NULL), -1);
    for (int r = 0; r < 2; r++) n[r].tp->ops->destroy(n[r].tp);
}

static void corrupt_frame_loses_the_peer(void **state)
{
    (void)state;
    struct node n[2];
    pair(n);
    send_page(&n[1], 0, 0);
    send_page(&n[1], 0, 1);
    /* Node 1's second frame, in node 0's ring for it: break its page index. */
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_DATA_S, 1);
    h.arg0 = NPAGES + 5; /* outside the global space */
    h.arg1 = 1;
    h.len = DSM_PAGE_SIZE;
    n[1].tp->ops->flush(n[1].tp);
    /* Through node 0's file, found from its announcement, as a broken producer would. */
    char ann[DSM_SHM_ANN];
    dsm_shm_announce(n[0].shm, ann, sizeof ann);
    unsigned pid, fd;
    assert_int_equal(sscanf(ann, "%*32[0-9a-f].%u.%u.", &pid, &fd), 2);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%u", fd);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    uint8_t hdr[DSM_WIRE_HDR_SIZE];
    dsm_wire_encode(&h, hdr);
    assert_int_equal(fseek(f, (long)dsm_shm_slot_offset(1, 1), SEEK_SET), 0);
    assert_int_equal(fwrite(hdr, 1, sizeof hdr, f), sizeof hdr);
    fclose(f);
    n[0].tp->ops->poll(n[0].tp);
    assert_int_equal(n[0].next_seq, 1); /* the first frame only */
    assert_int_equal(n[0].lost, 1);
    assert_non_null(strstr(n[0].lost_why, "corrupt frame"));
    for (int r = 0; r < 2; r++) n[r].tp->ops->destroy(n[r].tp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(announcements),
        cmocka_unit_test(frames_in_order_through_ring_and_backlog),
        cmocka_unit_test(visible_at_flush),
        cmocka_unit_test(unrouted_peer_uses_the_base),
        cmocka_unit_test(loss_after_what_the_peer_left),
        cmocka_unit_test(corrupt_frame_loses_the_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

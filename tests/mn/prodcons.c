/*
 * prodcons.c - a single-producer/single-consumer ring buffer in DSM memory.
 *
 * Node 0 produces ITEMS items into a ring of 512 slots of 48 bytes (6 pages, so some items
 * straddle a page boundary); node 1 consumes them. head (next slot to fill, written by the
 * producer) and tail (next slot to drain, written by the consumer) are C11 atomics, each on a
 * page of its own, away from the data; the producer publishes head with a release store after
 * every 64 items or when the ring is full, the consumer publishes tail likewise. Each item
 * carries its sequence number, two payload words derived from it, and a checksum of the
 * three; the consumer checks all of them, in order. At the end the consumer publishes its
 * count and running checksum, and every node (also the idle ones: with N > 2 nodes the others
 * only take part in the barriers) checks them exactly.
 *
 * What a broken DSM does to it: if the consumer can see the new head before the slot contents
 * written earlier (a stale copy of a data page, an invalidation lost or applied late), it
 * reads an old item - wrong sequence number - or half an old one - wrong checksum, which is
 * also what a torn read of an item straddling two pages looks like. If the producer sees a
 * stale tail it overwrites unread items: a sequence number is skipped. A lost head/tail write
 * leaves one side waiting forever: caught by the wait timeout.
 *
 * Usage: prodcons [ITEMS]
 */
#include <stdatomic.h>
#include <stdint.h>

#include "mn.h"

#define SLOTS   512
#define PUBLISH 64

struct item {
    uint64_t seq;
    uint64_t a, b;
    uint64_t pad[2];
    uint64_t sum;
};
_Static_assert(sizeof(struct item) == 48, "48-byte items straddle page boundaries");

struct ctl {
    _Atomic uint64_t head; /* page of its own */
    char pad1[MN_PAGE - 8];
    _Atomic uint64_t tail; /* page of its own */
    char pad2[MN_PAGE - 8];
    uint64_t consumed, checksum; /* the consumer's results, read by every node at the end */
};

static uint64_t item_sum(const struct item *it)
{
    return mn_mix(it->seq ^ mn_mix(it->a) ^ (mn_mix(it->b) << 1) ^ it->pad[0] ^ it->pad[1]);
}

static void produce(struct ctl *c, struct item *ring, uint64_t items)
{
    uint64_t head = 0, tail = 0, published = 0;
    double t0 = mn_now();
    unsigned spins = 0;
    while (head < items) {
        if (head - tail == SLOTS) {
            if (published != head) {
                atomic_store_explicit(&c->head, head, memory_order_release);
                published = head;
            }
            uint64_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
            CHECK(t >= tail && t <= head, "producer read tail=%llu after %llu (head %llu)",
                  (unsigned long long)t, (unsigned long long)tail, (unsigned long long)head);
            if (t == tail) {
                sched_yield();
                if ((++spins & 1023) == 0)
                    CHECK(mn_now() - t0 < MN_WAIT_SECONDS,
                          "producer: the consumer never freed a slot (tail stuck at %llu)",
                          (unsigned long long)t);
                continue;
            }
            tail = t;
            t0 = mn_now();
        }
        struct item *it = &ring[head % SLOTS];
        it->seq = head;
        it->a = mn_val(head, 1, 0);
        it->b = mn_val(head, 2, 0);
        it->pad[0] = head * 3;
        it->pad[1] = ~head;
        it->sum = item_sum(it);
        head++;
        if (head % PUBLISH == 0 || head == items) {
            atomic_store_explicit(&c->head, head, memory_order_release);
            published = head;
        }
    }
}

static void consume(struct ctl *c, struct item *ring, uint64_t items)
{
    uint64_t tail = 0, head = 0, checksum = 0;
    double t0 = mn_now();
    unsigned spins = 0;
    while (tail < items) {
        if (tail == head) {
            uint64_t h = atomic_load_explicit(&c->head, memory_order_acquire);
            CHECK(h >= head && h <= tail + SLOTS && h <= items,
                  "consumer read head=%llu after %llu (tail %llu)", (unsigned long long)h,
                  (unsigned long long)head, (unsigned long long)tail);
            if (h == head) {
                sched_yield();
                if ((++spins & 1023) == 0)
                    CHECK(mn_now() - t0 < MN_WAIT_SECONDS,
                          "consumer: no new item for %.0f s (head stuck at %llu)", MN_WAIT_SECONDS,
                          (unsigned long long)h);
                continue;
            }
            head = h;
            t0 = mn_now();
        }
        const struct item *it = &ring[tail % SLOTS];
        struct item copy = *it;
        CHECK(copy.seq == tail, "item %llu (slot %llu): sequence number is %llu%s",
              (unsigned long long)tail, (unsigned long long)(tail % SLOTS),
              (unsigned long long)copy.seq,
              copy.seq + SLOTS == tail ? ", the previous lap's item (stale slot)" : "");
        CHECK(copy.sum == item_sum(&copy), "item %llu: checksum mismatch (torn or stale item)",
              (unsigned long long)tail);
        CHECK(copy.a == mn_val(tail, 1, 0) && copy.b == mn_val(tail, 2, 0) &&
                  copy.pad[0] == tail * 3 && copy.pad[1] == ~tail,
              "item %llu: payload is not the one produced", (unsigned long long)tail);
        checksum = mn_mix(checksum ^ copy.sum);
        tail++;
        if (tail % PUBLISH == 0 || tail == head)
            atomic_store_explicit(&c->tail, tail, memory_order_release);
    }
    c->consumed = tail;
    c->checksum = checksum;
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 100000, 1);
    mn_begin(2);
    const uint64_t items = (uint64_t)a.iters;
    struct ctl *c = MN_ALLOC_PLACED(sizeof(struct ctl), DSM_PLACE_CYCLIC, MN_PAGE);
    struct item *ring = MN_ALLOC_PLACED(SLOTS * sizeof(struct item), DSM_PLACE_CYCLIC, MN_PAGE);
    dsm_barrier();
    double t0 = mn_now();
    if (mn_rank == 0) produce(c, ring, items);
    if (mn_rank == 1) consume(c, ring, items);
    dsm_barrier();

    uint64_t checksum = 0;
    for (uint64_t s = 0; s < items; s++) {
        struct item it = {.seq = s, .a = mn_val(s, 1, 0), .b = mn_val(s, 2, 0)};
        it.pad[0] = s * 3;
        it.pad[1] = ~s;
        checksum = mn_mix(checksum ^ item_sum(&it));
    }
    CHECK(c->consumed == items, "the consumer reports %llu items, expected %llu",
          (unsigned long long)c->consumed, (unsigned long long)items);
    CHECK(c->checksum == checksum, "the consumer's checksum %#llx differs from %#llx",
          (unsigned long long)c->checksum, (unsigned long long)checksum);
    CHECK(atomic_load(&c->head) == items && atomic_load(&c->tail) == items,
          "final head/tail are %llu/%llu, expected %llu", (unsigned long long)atomic_load(&c->head),
          (unsigned long long)atomic_load(&c->tail), (unsigned long long)items);
    if (mn_rank == 0)
        mn_say("%llu items through a %d-slot ring, in order and intact (%.2f s)",
               (unsigned long long)items, SLOTS, mn_now() - t0);
    dsm_barrier();
    mn_end("prodcons");
    return 0;
}

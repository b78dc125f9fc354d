/*
 * tp_common.c - the transport-independent half of TCP and RDMA (tp_common.h says why).
 */
#include "tp_common.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static void *map_anon(size_t len)
{
    void *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return b == MAP_FAILED ? NULL : b;
}

int dsm_frameq_reserve(struct dsm_frameq *q, size_t need, size_t min_cap)
{
    if (q->cap - q->tail >= need) return 0;
    size_t live = q->tail - q->head;
    if (q->head >= live && q->cap - live >= need) {
        memmove(q->buf, q->buf + q->head, live);
        q->head = 0;
        q->tail = live;
        return 0;
    }
    size_t cap = q->cap ? q->cap : min_cap;
    while (cap - live < need) cap *= 2;
    uint8_t *nb = map_anon(cap);
    if (!nb) return -1;
    if (live) memcpy(nb, q->buf + q->head, live);
    if (q->buf) munmap(q->buf, q->cap);
    q->buf = nb;
    q->cap = cap;
    q->head = 0;
    q->tail = live;
    return 0;
}

int dsm_frameq_push(struct dsm_frameq *q, const struct dsm_wire_hdr *h, const void *payload,
                    size_t min_cap)
{
    size_t need = DSM_WIRE_HDR_SIZE + (size_t)h->len;
    if (dsm_frameq_reserve(q, need, min_cap)) return -1;
    dsm_wire_encode(h, q->buf + q->tail);
    if (h->len) memcpy(q->buf + q->tail + DSM_WIRE_HDR_SIZE, payload, h->len);
    q->tail += need;
    return 0;
}

void dsm_frameq_consume(struct dsm_frameq *q, size_t n)
{
    q->head += n;
    if (q->head == q->tail) q->head = q->tail = 0;
}

void dsm_frameq_free(struct dsm_frameq *q)
{
    if (q->buf) munmap(q->buf, q->cap);
    q->buf = NULL;
    q->cap = q->head = q->tail = 0;
}

void dsm_tp_note(const struct dsm_boot_cfg *cfg, const char *fmt, ...)
{
    if (!cfg->note) return;
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cfg->note(cfg->note_ctx, msg);
}

int dsm_tp_loss_mark(struct dsm_tp_loss *l, const char *fmt, va_list ap)
{
    if (dsm_tp_is_dead(l)) return 0;
    vsnprintf(l->why, sizeof l->why, fmt, ap);
    atomic_store_explicit(&l->dead, 1, memory_order_release);
    l->pending = 1;
    return 1;
}

void dsm_tp_report_losses(struct dsm_tp *tp, int *losses, const int *closing,
                          struct dsm_tp_loss *(*loss_of)(void *ctx, int i),
                          void (*forget)(void *ctx, int i), void *ctx)
{
    while (*losses > 0) {
        for (int i = 0; i < tp->nodes; i++) {
            struct dsm_tp_loss *l = loss_of(ctx, i);
            if (!l->pending) continue;
            l->pending = 0;
            (*losses)--;
            forget(ctx, i); /* nothing will go to it any more */
            if (!*closing && tp->lost) tp->lost(tp->cb_ctx, i, l->why);
        }
    }
}

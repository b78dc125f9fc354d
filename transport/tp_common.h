/*
 * tp_common.h - the half of a transport that does not depend on how bytes move: the growable
 * queue of encoded frames waiting to go out, and the record of a lost peer with the loop that
 * reports losses. TCP (tcp.c) and RDMA (rdma.c) both use them, so a fix to either is made once.
 *
 * Threads: a transport's send/poll/flush run under the runtime's token (transport.h), so
 * neither structure locks; `dead` is atomic because other threads read it without the token.
 */
#ifndef DSM_TP_COMMON_H
#define DSM_TP_COMMON_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"
#include "wire.h"

/* Encoded frames, FIFO: bytes [head, tail) of buf. The memory is mapped and unmapped
 * directly rather than malloc'd: sends happen on the runtime's fast path, which may run
 * inside a fault handler (SIGBUS) that interrupted malloc itself; mmap is async-signal-safe.
 * Capacities are powers of two times the minimum the transport chooses (page multiples). */
struct dsm_frameq {
    uint8_t *buf;
    size_t head, tail, cap;
};

static inline size_t dsm_frameq_len(const struct dsm_frameq *q)
{
    return q->tail - q->head;
}

/* Room for `need` more bytes at the tail: slides the queued bytes down when the part already
 * consumed is at least as large as what is left (so the copy is paid for by bytes that went
 * out, and queueing stays linear), else doubles from min_cap. 0, or -1 out of memory. */
int dsm_frameq_reserve(struct dsm_frameq *q, size_t need, size_t min_cap);
/* Appends one frame, encoded. 0, or -1 out of memory (the queue is unchanged). */
int dsm_frameq_push(struct dsm_frameq *q, const struct dsm_wire_hdr *h, const void *payload,
                    size_t min_cap);
/* `n` bytes at the head went out; an emptied queue restarts at offset 0. */
void dsm_frameq_consume(struct dsm_frameq *q, size_t n);
/* Gives the memory back (the queue is empty afterwards). */
void dsm_frameq_free(struct dsm_frameq *q);

/* A peer's loss: marked where it is found (possibly deep inside send or poll), reported to
 * the runtime later, at a point where the runtime may re-enter the transport. */
struct dsm_tp_loss {
    _Atomic int dead; /* set once; read by any thread */
    int pending;      /* dead, and lost() not called yet */
    char why[512];    /* what happened, naming the peer */
};

static inline int dsm_tp_is_dead(const struct dsm_tp_loss *l)
{
    return atomic_load_explicit(&l->dead, memory_order_relaxed);
}

/* Records the loss once (later calls do nothing): 1 if this call marked it. */
int dsm_tp_loss_mark(struct dsm_tp_loss *l, const char *fmt, va_list ap);

/* Calls tp->lost for each peer with a pending loss (unless the transport is closing), after
 * forget(ctx, i) has dropped what was queued for it. lost() may send or flush, which may lose
 * further peers: loops until *losses (the count of pending ones) is 0. loss_of(ctx, i) gives
 * peer i's record. */
void dsm_tp_report_losses(struct dsm_tp *tp, int *losses, const int *closing,
                          struct dsm_tp_loss *(*loss_of)(void *ctx, int i),
                          void (*forget)(void *ctx, int i), void *ctx);

/* Passes a message about a harmless event (a stranger refused, say) to the runtime's log, if
 * it asked for them (cfg->note); transport/ does not log itself. */
void dsm_tp_note(const struct dsm_boot_cfg *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* DSM_TP_COMMON_H */

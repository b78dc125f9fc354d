/*
 * rdma.h - the RDMA transport (rdma.c), in two steps so that nodes can choose a transport
 * together (select.c) before any of them commits to one:
 *
 *   dsm_rdma_prepare: can this node do RDMA at all? Finds an active port with a GID, picks
 *     the address to listen on, registers the buffers, opens an rdma_cm listener. Touches no
 *     peer. On failure, `why` says what is missing (no device, port down, no GID, memlock).
 *   dsm_rdma_connect: connects an RC queue pair to every peer (rdma_cm, the job check in the
 *     private data) and returns the transport. On failure, `err` names device, port and peer.
 *
 * Both block only within cfg->timeout_ms and keep no global state (several nodes may run in
 * one process on different threads).
 */
#ifndef DSM_RDMA_H
#define DSM_RDMA_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct dsm_rdma_prep;

/* self: this node's entry in the bootstrap address table. On success, *prep is ready for
 * dsm_rdma_connect and addr/port (addr: 64 bytes) are what peers connect to; 0. Otherwise a
 * DSM_E* code with why filled (a reason, not an instruction to fail: auto falls back). */
int dsm_rdma_prepare(const struct dsm_boot_cfg *cfg, const struct dsm_peer_addr *self,
                     struct dsm_rdma_prep **prep, char *addr, uint16_t *port, char *why,
                     size_t whylen);
void dsm_rdma_prep_free(struct dsm_rdma_prep *prep);
/* The device and port the listener is bound to: "rxe0 port 1". */
const char *dsm_rdma_prep_device(const struct dsm_rdma_prep *prep);

/* Consumes prep either way. raddrs: every node's listener (from dsm_rdma_prepare on each). */
int dsm_rdma_connect(struct dsm_rdma_prep *prep, const struct dsm_boot_cfg *cfg,
                     const struct dsm_peer_addr *raddrs, const struct dsm_wire_limits *limits,
                     dsm_tp_deliver_fn deliver, dsm_tp_lost_fn lost, void *cb_ctx,
                     struct dsm_tp **out, char *err, size_t errlen);

#endif /* DSM_RDMA_H */

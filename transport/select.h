/*
 * select.h - creating the transport the job runs on: DSM_TRANSPORT=tcp, rdma or auto.
 *
 * tcp connects the TCP mesh and is done. rdma and auto connect the TCP mesh too (it is
 * cheap, every node can do it, and it is what the nodes talk over to agree), then decide
 * together, so that no node ever picks RDMA while a peer picks TCP:
 *   1. every node reports whether it can do RDMA (an ACTIVE port with a GID, an address
 *      rdma_cm can bind, buffers registered under RLIMIT_MEMLOCK) and where it listens;
 *   2. if all can, every node connects the RDMA mesh and reports whether that worked;
 *   3. if all did, every node closes TCP and runs on RDMA; otherwise auto stays on TCP and
 *      rdma fails with the reason of the first node that could not.
 * The records travel as frames of the TCP transport (rdma_logic.h, "choosing a transport").
 * Frames of the runtime that arrive over TCP from a faster node before this node has
 * decided are kept and delivered, in order, by the first poll.
 */
#ifndef DSM_SELECT_H
#define DSM_SELECT_H

#include <stddef.h>

#include "transport.h"

/* kind: "tcp", "rdma" or "auto". Arguments as for dsm_tcp_create (listen_fd is owned either
 * way). On success, *out is the transport and chosen[chosenlen] says which one and why, for
 * the log ("rdma (auto: ...)", "tcp (auto: node 1: no RDMA device ...)"). Same error
 * convention as dsm_tcp_create; DSM_ETRANSPORT when a forced rdma cannot work. */
int dsm_transport_create(const char *kind, const struct dsm_boot_cfg *cfg, int listen_fd,
                         const struct dsm_peer_addr *addrs, const struct dsm_wire_limits *limits,
                         dsm_tp_deliver_fn deliver, dsm_tp_lost_fn lost, void *cb_ctx,
                         struct dsm_tp **out, char *chosen, size_t chosenlen, char *err,
                         size_t errlen);

#endif /* DSM_SELECT_H */

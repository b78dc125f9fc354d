/*
 * shm.h - frames between nodes on the same host through shared-memory rings.
 *
 * Each node makes one memory file (memfd) holding an inbound ring per peer, and a doorbell
 * (a pipe). It announces both in its first transport record (select.c): the boot id of its
 * kernel, its pid, the two descriptors and the file's identity. A peer that receives the
 * announcement from the same boot of the same kernel opens /proc/<pid>/fd/<fd> (the same
 * user, or root, in one pid namespace), checks that it is the announced file, and from then
 * on writes every frame for that node into its ring there: a copy into memory the receiver
 * reads, with no system call and no wake-up when the receiver is polling. A receiver about to
 * sleep says so in its file, and the sender writes a byte into its doorbell, which the
 * receiver's service thread watches beside the sockets (dsm_tp.wake_fd).
 *
 * Each direction is decided by its sender alone (it could open the receiver's file, or not),
 * so no agreement is needed and per-peer FIFO holds: all of a sender's frames to one node go
 * one way. The base transport (TCP or RDMA) stays connected to every peer: it carries the
 * frames to peers elsewhere, and a peer's connection closing is how its death is noticed
 * (the ring has no EOF). Frames read from a ring are checked as network input
 * (dsm_rdma_frame_check) before they are delivered.
 *
 * Threads: as transport.h. send/flush/poll under the runtime's token; wait on the service
 * thread; kick anywhere. A ring has one producer (the sending node's token holder) and one
 * consumer (the receiving node's token holder).
 */
#ifndef DSM_SHM_H
#define DSM_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct dsm_shm;

/* Longest announcement text (dsm_shm_announce). */
#define DSM_SHM_ANN 160

/* Makes this node's rings and doorbell. 0, or a DSM_E* code with a reason in why. */
int dsm_shm_create(int rank, int nodes, struct dsm_shm **out, char *why, size_t whylen);
/* This node's announcement, one word of text without spaces, into out[outlen]. */
void dsm_shm_announce(const struct dsm_shm *s, char *out, size_t outlen);
/* Takes peer's announcement: 1 if frames to it will go through its ring, 0 if not (another
 * host, or its file cannot be opened here: why says which), -1 if the text is malformed. */
int dsm_shm_attach(struct dsm_shm *s, int peer, const char *ann, char *why, size_t whylen);
/* How many peers frames go to through rings. */
int dsm_shm_routes(const struct dsm_shm *s);

/* The callbacks to give the base transport: they pass frames on to the runtime, and hold a
 * peer's loss back until what it wrote into this node's ring has been delivered. ctx is s. */
void dsm_shm_base_deliver(void *ctx, const struct dsm_wire_hdr *h, const void *payload);
void dsm_shm_base_lost(void *ctx, int peer, const char *why);
/* Sets the runtime's callbacks (before the base transport may call the two above). */
void dsm_shm_set_callbacks(struct dsm_shm *s, dsm_tp_deliver_fn deliver, dsm_tp_lost_fn lost,
                           void *cb_ctx);
/* The transport the runtime uses: rings to attached peers, base to every other. Owns base and
 * s from here on (its destroy destroys both). */
struct dsm_tp *dsm_shm_wrap(struct dsm_shm *s, struct dsm_tp *base);
/* Frees s when it was never wrapped. */
void dsm_shm_free(struct dsm_shm *s);
/* The byte offset of slot `slot` (0..1023) of the ring `producer` writes, in a node's file: the
 * layout, for tests that play a broken producer. */
size_t dsm_shm_slot_offset(int producer, unsigned slot);

/* ---------------------------------------------------------------- shared with dsm/region.c */
/* This boot of this kernel (/proc/sys/kernel/random/boot_id, 16 bytes). 0, or -1. */
int dsm_shm_boot_id(uint8_t out[16]);
/* Opens another process's descriptor through /proc/<pid>/fd/<fd>, with `flags`, after checking
 * (through an O_PATH descriptor, which neither blocks nor has side effects) that it names what
 * was announced: a regular file of inode `ino` on device `dev` and `size` bytes, or, with
 * size == UINT64_MAX, a FIFO (a pipe). The numbers come from the network. The descriptor, or
 * -1 with the reason in why. */
int dsm_shm_open_peer_fd(uint32_t pid, uint32_t fd, uint64_t ino, uint64_t dev, uint64_t size,
                         int flags, char *why, size_t whylen);

#endif /* DSM_SHM_H */

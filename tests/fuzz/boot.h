/*
 * boot.h - runs the real bootstrap (dsm_bootstrap, transport/bootstrap.c) on loopback with
 * this process playing the other side with given bytes, for the bootstrap harnesses and the
 * corpus generator.
 *
 * The parsers of the bootstrap records are static and live inside its socket loops (the
 * coordinator's reading of JOIN records, the joiner's reading of the reply), and dsm_bootstrap
 * opens its own sockets from a "host:port" string, so the bytes have to come over TCP:
 *   boot_coordinator: dsm_bootstrap as node 0; a thread connects once per 168-byte JOIN record
 *     of the input (the last may be short), sends it, half-closes, and reads the reply;
 *   boot_joiner: dsm_bootstrap as a joining node; a thread accepts it on a listener this file
 *     keeps open, reads its JOIN and answers with the input.
 *
 * The record layouts are copied from the comments of bootstrap.c (they are static there);
 * the corpus generator captures real records from dsm_bootstrap, so a layout that drifts
 * shows up as seeds the harness rejects.
 */
#ifndef UFDSM_FUZZ_BOOT_H
#define UFDSM_FUZZ_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "transport.h"

#define BOOT_MAGIC   0x424d5344u /* "DSMB" */
#define BOOT_VERSION 1u
enum { BOOT_K_JOIN = 1, BOOT_K_TABLE = 2, BOOT_K_MISMATCH = 3, BOOT_K_FAIL = 4 };
#define BOOT_HDR         12
#define BOOT_JOIN_SIZE   168 /* magic, version, kind, rank, desc(80), host[64], port, zeros(6) */
#define BOOT_ENTRY_SIZE  72  /* host[64], port, zeros(6) */
#define BOOT_TABLE_OFF   (24 + DSM_NET_DESC_SIZE)
#define BOOT_TEXT_OFF    (BOOT_TABLE_OFF + DSM_MAX_NODES * BOOT_ENTRY_SIZE)
#define BOOT_TEXT_MAX    512
#define BOOT_REPLY_SIZE  (BOOT_TEXT_OFF + BOOT_TEXT_MAX)
#define BOOT_MAX_JOINERS (DSM_MAX_NODES - 1)

/* In a reply given to boot_joiner: this port in the joiner's own table entry is replaced by
 * the data port its JOIN announced (chosen by the kernel, so an input cannot know it). */
#define BOOT_PORT_SELF 0xffffu

/* Timeout given to dsm_bootstrap. No input should ever make it wait: every connection sends
 * its bytes and half-closes, so a run that takes this long is a hang to report. */
#define BOOT_TIMEOUT_MS 5000

struct boot_coord_run {
    /* in */
    const uint8_t *data;
    size_t size; /* > 0; one connection per BOOT_JOIN_SIZE bytes, at most BOOT_MAX_JOINERS */
    /* out */
    int joiners; /* connections made: the job has joiners + 1 nodes */
    int rc;
    char err[1024];
    int listen_fd; /* dsm_bootstrap's data listener (closed by boot_coordinator) */
    uint16_t data_port;
    struct dsm_peer_addr addrs[DSM_MAX_NODES];
    /* What each connection received, and how much (BOOT_REPLY_SIZE + 1 means more). */
    uint8_t reply[BOOT_MAX_JOINERS][BOOT_REPLY_SIZE + 1];
    size_t reply_len[BOOT_MAX_JOINERS];
};
/* Runs node 0 of a (joiners + 1)-node job of fuzz_desc against the input. */
void boot_coordinator(struct boot_coord_run *r);

struct boot_join_run {
    /* in */
    const uint8_t *data; /* the reply to send, up to BOOT_REPLY_SIZE + 64 bytes */
    size_t size;
    int rank, nodes;
    /* out */
    int rc;
    char err[1024];
    uint16_t data_port; /* the joiner's data listener, as its JOIN announced */
    struct dsm_peer_addr addrs[DSM_MAX_NODES];
    uint8_t join[BOOT_JOIN_SIZE]; /* what the joiner sent */
    size_t join_len;
    uint8_t sent[BOOT_REPLY_SIZE + 64]; /* the reply as sent (after BOOT_PORT_SELF) */
    size_t sent_len;
};
/* Runs node `rank` of a `nodes`-node job of fuzz_desc against the input as the reply. */
void boot_joiner(struct boot_join_run *r);

/* A table entry as dsm_bootstrap reads it: a NUL-terminated numeric address and a port that
 * is not 0. 0, or -1 (a corrupt entry). */
int boot_entry_get(const uint8_t *p, struct dsm_peer_addr *a);

#endif /* UFDSM_FUZZ_BOOT_H */

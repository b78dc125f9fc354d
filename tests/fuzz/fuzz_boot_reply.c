/*
 * fuzz_boot_reply.c - what a joining node makes of the coordinator's reply
 * (transport/bootstrap.c: join, check_hdr, get_addr).
 *
 * Node 1 of a 3-node job runs the real dsm_bootstrap; a fake coordinator on loopback reads its
 * JOIN and answers with the input (boot.h). Its own table entry must carry the data port the
 * kernel gave it, which no input can know: the port BOOT_PORT_SELF (65535) in entry 1 is
 * replaced by it. Properties:
 *   - the JOIN the node sent is a whole, valid JOIN of this job (the real encoder);
 *   - the node accepts exactly a whole TABLE reply of this job for 3 nodes whose entries are
 *     usable addresses, its own being the address it announced (reply_ok: the rules
 *     restated), and then its table is exactly those entries;
 *   - otherwise it names the cause: a FAIL reply's code is passed on only when it is a
 *     DSM_E* code (never DSM_OK), anything else is a handshake error or a lost peer.
 */
#include "boot.h"
#include "fuzz.h"

#define NODES 3
#define RANK  1

static struct boot_join_run run;

static int reply_ok(const uint8_t *s, size_t n, struct dsm_peer_addr *e)
{
    struct dsm_job_desc d, here;
    fuzz_desc(&here, NODES);
    if (n < BOOT_REPLY_SIZE || fuzz_le(s, 4) != BOOT_MAGIC || fuzz_le(s + 4, 4) != BOOT_VERSION ||
        fuzz_le(s + 8, 4) != BOOT_K_TABLE || dsm_net_desc_get(s + 24, &d) ||
        !fuzz_desc_equal(&d, &here) || fuzz_le(s + 16, 4) != NODES)
        return 0;
    for (int i = 0; i < NODES; i++)
        if (boot_entry_get(s + BOOT_TABLE_OFF + i * BOOT_ENTRY_SIZE, &e[i])) return 0;
    return !strcmp(e[RANK].host, "127.0.0.1") && e[RANK].port == run.data_port;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run.data = data;
    run.size = size;
    run.rank = RANK;
    run.nodes = NODES;
    boot_joiner(&run);

    struct dsm_job_desc d, here;
    fuzz_desc(&here, NODES);
    struct dsm_peer_addr self;
    const uint8_t *j = run.join;
    FUZZ_CHECK(run.join_len == BOOT_JOIN_SIZE && fuzz_le(j, 4) == BOOT_MAGIC &&
                   fuzz_le(j + 4, 4) == BOOT_VERSION && fuzz_le(j + 8, 4) == BOOT_K_JOIN &&
                   fuzz_le(j + 12, 4) == RANK && !dsm_net_desc_get(j + 16, &d) &&
                   fuzz_desc_equal(&d, &here) && !boot_entry_get(j + 96, &self) &&
                   !strcmp(self.host, "127.0.0.1") && self.port == run.data_port,
               "node %d sent a bad JOIN (%zu bytes)", RANK, run.join_len);

    struct dsm_peer_addr e[NODES];
    int valid = reply_ok(run.sent, run.sent_len, e);
    FUZZ_CHECK((run.rc == DSM_OK) == valid, "node %d %s a reply the rules %s (rc %d: %s)", RANK,
               run.rc == DSM_OK ? "accepted" : "rejected", valid ? "allow" : "forbid", run.rc,
               run.err);
    if (valid) {
        for (int i = 0; i < NODES; i++)
            FUZZ_CHECK(!strcmp(run.addrs[i].host, e[i].host) && run.addrs[i].port == e[i].port,
                       "entry %d is %s:%u, the table said %s:%u", i, run.addrs[i].host,
                       run.addrs[i].port, e[i].host, e[i].port);
        return 0;
    }
    FUZZ_CHECK_MESSAGE(run.err, "dsm_bootstrap");
    FUZZ_CHECK_PRINTABLE(run.err, "dsm_bootstrap");
    const uint8_t *s = run.sent;
    int whole = run.sent_len >= BOOT_REPLY_SIZE && fuzz_le(s, 4) == BOOT_MAGIC &&
                fuzz_le(s + 4, 4) == BOOT_VERSION && memchr(s + 24, 0, 48);
    int kind = whole ? (int)fuzz_le(s + 8, 4) : 0;
    int expect = DSM_EHANDSHAKE;
    if (kind == BOOT_K_FAIL) {
        int code = (int)fuzz_le(s + 12, 4);
        if (code <= DSM_EINVAL && code >= DSM_ECOLLECTIVE) expect = code;
    } else if (!whole || kind < BOOT_K_TABLE || kind > BOOT_K_FAIL) {
        /* Cut short (EPIPE: DSM_EPEER) or not a reply at all (DSM_EHANDSHAKE). */
        FUZZ_CHECK(run.rc == DSM_EHANDSHAKE || run.rc == DSM_EPEER, "rc %d (%s)", run.rc, run.err);
        return 0;
    }
    FUZZ_CHECK(run.rc == expect, "rc %d, expected %d for a reply of kind %d (%s)", run.rc, expect,
               kind, run.err);
    return 0;
}

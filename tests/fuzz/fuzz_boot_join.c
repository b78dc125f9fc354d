/*
 * fuzz_boot_join.c - what node 0 makes of the JOIN records joining nodes send it
 * (transport/bootstrap.c: coordinator, check_hdr, accept_join, get_addr).
 *
 * The input is cut into 168-byte JOIN records, one connection each (the last may be short:
 * that connection then closes mid-record); node 0 runs the real dsm_bootstrap of a job with one
 * node more than there are records (boot.h explains why over loopback TCP). Properties:
 *   - the job starts exactly when every record is a whole JOIN of this job, from a distinct
 *     rank in 1..nodes-1, with a usable data address (join_ok below: the rules restated);
 *   - then the address table holds exactly those addresses, and every joiner got the same
 *     well-formed TABLE reply;
 *   - otherwise dsm_bootstrap names the cause, and whatever a joiner was sent is a whole
 *     MISMATCH or FAIL reply with a terminated text, never a table;
 *   - no input makes node 0 wait for its timeout (libFuzzer's -timeout reports that).
 * An empty input is skipped: a connection that sends nothing is a port probe, for which node
 * 0 rightly keeps waiting for the real joiner.
 */
#include "boot.h"
#include "fuzz.h"

static struct boot_coord_run run; /* 330 KiB of reply buffers: not on the stack */

/* Record i of the input as the coordinator must judge it. */
static int join_ok(const uint8_t *j, size_t len, uint32_t nodes, uint32_t *rank,
                   struct dsm_peer_addr *a)
{
    struct dsm_job_desc d, here;
    fuzz_desc(&here, nodes);
    *rank = len >= 16 ? (uint32_t)fuzz_le(j + 12, 4) : 0;
    return len == BOOT_JOIN_SIZE && fuzz_le(j, 4) == BOOT_MAGIC &&
           fuzz_le(j + 4, 4) == BOOT_VERSION && fuzz_le(j + 8, 4) == BOOT_K_JOIN &&
           !dsm_net_desc_get(j + 16, &d) && fuzz_desc_equal(&d, &here) &&
           !boot_entry_get(j + 96, a) && *rank >= 1 && *rank < nodes;
}

static void check_reply(const uint8_t *p, size_t len, int started, int nodes)
{
    struct dsm_job_desc d, here;
    fuzz_desc(&here, (uint32_t)nodes);
    if (!started && len == 0) return; /* a failing coordinator answers only whom it can */
    FUZZ_CHECK(len == BOOT_REPLY_SIZE, "a joiner received %zu bytes, not a %d-byte reply", len,
               BOOT_REPLY_SIZE);
    uint32_t kind = (uint32_t)fuzz_le(p + 8, 4);
    FUZZ_CHECK(fuzz_le(p, 4) == BOOT_MAGIC && fuzz_le(p + 4, 4) == BOOT_VERSION, "reply header");
    FUZZ_CHECK(!dsm_net_desc_get(p + 24, &d) && fuzz_desc_equal(&d, &here),
               "the reply does not carry node 0's job description");
    if (!started) {
        FUZZ_CHECK(kind == BOOT_K_MISMATCH || kind == BOOT_K_FAIL,
                   "kind %u sent by a coordinator that failed", kind);
        FUZZ_CHECK(memchr(p + BOOT_TEXT_OFF, 0, BOOT_TEXT_MAX), "unterminated FAIL text");
        return;
    }
    FUZZ_CHECK(kind == BOOT_K_TABLE && fuzz_le(p + 12, 4) == 0 &&
                   fuzz_le(p + 16, 4) == (uint64_t)nodes,
               "kind %u, code %d, nodes %u in the reply of a job that started", kind,
               (int)fuzz_le(p + 12, 4), (unsigned)fuzz_le(p + 16, 4));
    for (int i = 0; i < nodes; i++) {
        struct dsm_peer_addr a;
        FUZZ_CHECK(!boot_entry_get(p + BOOT_TABLE_OFF + i * BOOT_ENTRY_SIZE, &a) &&
                       !strcmp(a.host, run.addrs[i].host) && a.port == run.addrs[i].port,
                   "table entry %d is not node %d's address", i, i);
    }
    for (size_t k = BOOT_TABLE_OFF + (size_t)nodes * BOOT_ENTRY_SIZE; k < BOOT_REPLY_SIZE; k++)
        FUZZ_CHECK(!p[k], "byte %zu after the table is not zero", k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    run.data = data;
    run.size = size;
    boot_coordinator(&run);
    const int k = run.joiners, nodes = k + 1;
    if (size > (size_t)k * BOOT_JOIN_SIZE) size = (size_t)k * BOOT_JOIN_SIZE;

    int valid = 1;
    uint64_t seen = 0;
    struct dsm_peer_addr want[DSM_MAX_NODES];
    for (int i = 0; i < k; i++) {
        size_t off = (size_t)i * BOOT_JOIN_SIZE;
        size_t len = size - off < BOOT_JOIN_SIZE ? size - off : BOOT_JOIN_SIZE;
        uint32_t rank;
        struct dsm_peer_addr a;
        if (!join_ok(data + off, len, (uint32_t)nodes, &rank, &a) || (seen >> rank & 1)) {
            valid = 0;
            break;
        }
        seen |= 1ull << rank;
        want[rank] = a;
    }
    FUZZ_CHECK((run.rc == DSM_OK) == valid, "node 0 of %d %s joins the rules %s (rc %d: %s)", nodes,
               run.rc == DSM_OK ? "accepted" : "rejected", valid ? "allow" : "forbid", run.rc,
               run.err);
    if (run.rc == DSM_OK) {
        FUZZ_CHECK(!strcmp(run.addrs[0].host, "127.0.0.1") && run.addrs[0].port == run.data_port,
                   "node 0's own entry is %s:%u", run.addrs[0].host, run.addrs[0].port);
        for (int r = 1; r < nodes; r++)
            FUZZ_CHECK(!strcmp(run.addrs[r].host, want[r].host) &&
                           run.addrs[r].port == want[r].port,
                       "node %d is at %s:%u, its JOIN said %s:%u", r, run.addrs[r].host,
                       run.addrs[r].port, want[r].host, want[r].port);
    } else {
        FUZZ_CHECK(run.rc == DSM_EHANDSHAKE || run.rc == DSM_EPEER, "rc %d for bad joiners (%s)",
                   run.rc, run.err);
        FUZZ_CHECK_MESSAGE(run.err, "dsm_bootstrap");
        FUZZ_CHECK_PRINTABLE(run.err, "dsm_bootstrap");
    }
    for (int i = 0; i < k; i++)
        check_reply(run.reply[i], run.reply_len[i], run.rc == DSM_OK, nodes);
    return 0;
}

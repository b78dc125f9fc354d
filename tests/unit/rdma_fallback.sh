#!/usr/bin/env bash
# rdma_fallback.sh DSMRUN PROGRAM - DSM_TRANSPORT choice, end to end through dsmrun, 2 nodes.
#
# Where no RDMA device exists (this machine, CI): auto runs the program over TCP and every
# node logs why ("no RDMA device"); forced rdma fails on every node with DSM_ETRANSPORT, a
# message naming the reason, and a non-zero exit, within seconds (no hang).
# Where a device exists (inside the soft-RoCE guest): auto and forced rdma both run over RDMA.
# Either way the two nodes share a host: auto also sends between them through the shared-memory
# rings (and counts frames there), shm requires the rings, tcp and rdma never use them.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 DSMRUN PROGRAM" >&2
    exit 2
fi
DSMRUN=$1
PROG=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (No process substitution: the soft-RoCE guest has no /dev/fd.)
for v in $(compgen -e | grep '^DSM_' || true); do unset "$v"; done
export DSM_MEMORY=64M DSM_LOG=info

fail() {
    echo "rdma_fallback: FAILED: $*" >&2
    sed 's/^/  | /' "$tmp/log" >&2 || true
    exit 1
}

device=0
if [ -d /sys/class/infiniband ] && [ -n "$(ls -A /sys/class/infiniband 2>/dev/null)" ]; then
    device=1
fi

# shm msgs_sent from the DSM_STATS=1 lines: "N N" for the two nodes.
shm_sent() {
    sed -n 's/.*stats: .* shm msgs_sent \([0-9]*\) .*/\1/p' "$tmp/log" | tr '\n' ' '
}

# auto (the default)
DSM_STATS=1 timeout 60 "$DSMRUN" -n 2 "$PROG" >"$tmp/log" 2>&1 || fail "auto: the program failed (exit $?)"
[ "$(grep -c 'transport: .*; shared memory to node' "$tmp/log")" = 2 ] ||
    fail "auto: both nodes should send to each other through the shared-memory rings"
for c in $(shm_sent); do [ "$c" -gt 0 ] || fail "auto: a node sent nothing through the rings ($(shm_sent))"; done
[ -n "$(shm_sent)" ] || fail "auto: no stats line with shm counters"
n=$(grep -c 'transport: ' "$tmp/log" || true)
[ "$n" = 2 ] || fail "auto: expected both nodes to log their transport, saw $n"
if ((device)); then
    [ "$(grep -c 'transport: rdma (auto' "$tmp/log")" = 2 ] || fail "auto: not rdma on both nodes"
else
    [ "$(grep -c 'transport: tcp (auto: node 0 cannot use RDMA: no RDMA device' "$tmp/log")" = 2 ] ||
        fail "auto: both nodes should run over tcp and say there is no RDMA device"
fi

# forced rdma
start=$(date +%s)
set +e
DSM_TRANSPORT=rdma timeout 60 "$DSMRUN" -n 2 "$PROG" >"$tmp/log" 2>&1
rc=$?
set -e
if ((device)); then
    [ $rc = 0 ] || fail "rdma: the program failed (exit $rc)"
    [ "$(grep -c 'transport: rdma (requested' "$tmp/log")" = 2 ] || fail "rdma: not on both nodes"
else
    [ $rc != 0 ] && [ $rc != 124 ] || fail "rdma without a device: exit $rc (expected a failure, not a hang)"
    [ $(($(date +%s) - start)) -lt 30 ] || fail "rdma without a device: took too long to fail"
    [ "$(grep -c 'DSM_TRANSPORT=rdma, but node 0.*no RDMA device' "$tmp/log")" = 2 ] ||
        fail "rdma without a device: both nodes should name the reason"
    grep -q 'the requested transport cannot work here' "$tmp/log" || fail "rdma: no DSM_ETRANSPORT"
fi
# shm: the rings, TCP kept for setup and losses
DSM_STATS=1 DSM_TRANSPORT=shm timeout 60 "$DSMRUN" -n 2 "$PROG" >"$tmp/log" 2>&1 ||
    fail "shm: the program failed (exit $?)"
[ "$(grep -c 'transport: tcp (requested shm.*; shared memory to node' "$tmp/log")" = 2 ] ||
    fail "shm: both nodes should say they use the rings"
for c in $(shm_sent); do [ "$c" -gt 0 ] || fail "shm: a node sent nothing through the rings"; done

# tcp: no rings at all
DSM_STATS=1 DSM_TRANSPORT=tcp timeout 60 "$DSMRUN" -n 2 "$PROG" >"$tmp/log" 2>&1 ||
    fail "tcp: the program failed (exit $?)"
! grep -q 'shared memory to node' "$tmp/log" || fail "tcp: the rings were used"
[ "$(shm_sent)" = "0 0 " ] || fail "tcp: frames went through the rings ($(shm_sent))"
echo "rdma_fallback: passed (device: $device)"

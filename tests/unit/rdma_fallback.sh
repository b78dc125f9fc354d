#!/usr/bin/env bash
# rdma_fallback.sh DSMRUN PROGRAM - DSM_TRANSPORT choice, end to end through dsmrun, 2 nodes.
#
# Where no RDMA device exists (this machine, CI): auto runs the program over TCP and every
# node logs why ("no RDMA device"); forced rdma fails on every node with DSM_ETRANSPORT, a
# message naming the reason, and a non-zero exit, within seconds (no hang).
# Where a device exists (inside the soft-RoCE guest): auto and forced rdma both run over RDMA.
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

# auto (the default)
timeout 60 "$DSMRUN" -n 2 "$PROG" >"$tmp/log" 2>&1 || fail "auto: the program failed (exit $?)"
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
echo "rdma_fallback: passed (device: $device)"

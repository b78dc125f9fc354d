#!/usr/bin/env bash
# guest_checks.sh one|two - runs INSIDE a soft-RoCE guest started by tools/rxe/rxe-cluster
# (rxe_smoke.sh starts it). Checks that the guest's rxe device is usable the way the RDMA
# transport will use it: listed by ibv_devices, port active in ibv_devinfo, and a real
# connection set up through rdma_cm (-R) moving SENDs and RDMA READs.
#   one: both perftest sides in this guest, over rxe0 on eth0 (ib_send_lat, ib_read_lat)
#   two: guest A serves, guest B connects to it (ib_send_lat), across two kernels
# Prints "RESULT <where> <tool> typical=<us> p99=<us>" per measurement for rxe_smoke.sh.
set -euo pipefail
: "${RXE_DEV:?not inside an rxe-cluster guest}" "${RXE_GID_INDEX:?}" "${RXE_IP:?}"
iters=2000
size=64
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

fail() {
    echo "guest_checks: FAILED: $*" >&2
    exit 1
}

# perf TOOL [SERVER_IP] - one side of a perftest pair with rdma_cm connection set-up.
perf() {
    timeout 120 "$1" -R -d "$RXE_DEV" -x "$RXE_GID_INDEX" -s $size -n $iters ${2:+"$2"}
}

# client TOOL IP OUT - the server may not listen yet: a refused connect fails at once, so retry.
client() {
    for _ in $(seq 40); do
        perf "$1" "$2" >"$3" 2>&1 && return 0
        sleep 0.5
    done
    cat "$3" >&2
    return 1
}

# result WHERE TOOL OUT - the figures of perftest's result line (t_typical and the 99th percentile).
result() {
    local line
    line=$(awk '/t_typical/ { getline; print; exit }' "$3")
    [ -n "$line" ] || { cat "$3" >&2; fail "$2 printed no result line"; }
    # shellcheck disable=SC2086 # split the row into perftest's columns
    set -- "$1" "$2" $line
    echo "RESULT $1 $2 typical=${7} p99=${10}"
}

case ${1:-} in
one)
    ibv_devices | grep -qw "$RXE_DEV" || fail "ibv_devices does not list $RXE_DEV"
    ibv_devinfo -d "$RXE_DEV" | grep -q 'state:.*PORT_ACTIVE' ||
        { ibv_devinfo -d "$RXE_DEV" >&2; fail "ibv_devinfo: $RXE_DEV port 1 is not active"; }
    echo "guest_checks: ibv_devices and ibv_devinfo see $RXE_DEV active (RoCE v2 GID index $RXE_GID_INDEX)"
    for tool in ib_send_lat ib_read_lat; do
        perf $tool >"$tmp/$tool.server" 2>&1 &
        server=$!
        client $tool "$RXE_IP" "$tmp/$tool.client" || fail "$tool client to $RXE_IP never completed"
        wait $server || { cat "$tmp/$tool.server" >&2; fail "$tool server failed"; }
        result one-guest $tool "$tmp/$tool.client"
    done
    ;;
two)
    # SENDs only, and fewer of them: across the emulated UDP link a lost packet costs rxe a
    # retransmission timeout, and an RDMA READ stream of 2000 could outlast the 120 s limit
    # (seen in CI). The transport moves everything with SENDs; READ is checked in one guest.
    iters=300
    tool=ib_send_lat
    if [ "$RXE_GUEST" = 0 ]; then
        perf $tool >"$tmp/$tool.server" 2>&1 || { cat "$tmp/$tool.server" >&2; fail "$tool server failed"; }
        echo "guest_checks: guest A served $tool to $RXE_PEER_IP"
    else
        client $tool "$RXE_PEER_IP" "$tmp/$tool.client" || fail "$tool to $RXE_PEER_IP never completed"
        result two-guests $tool "$tmp/$tool.client"
    fi
    ;;
*)
    echo "usage: $0 one|two (inside an rxe-cluster guest)" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# node_killed.sh DSMRUN VICTIM - a node dies (SIGKILL) in the middle of a job.
#
# Runs the victim program (victim.c: all nodes looping through page faults and barriers; node
# 1 SIGKILLs itself after 1 s) under dsmrun with 3 and with 2 nodes, and checks that
#   - dsmrun exits non-zero (the job failed, and says so),
#   - every surviving node printed a line naming node 1 as lost (the runtime's log lines
#     start with "ufdsm[node R]"; the line must contain "lost" and "node 1"),
#   - everything ended promptly: well within 20 s of the start (the kill is at 1 s).
# A DSM that does not watch its peers would leave the survivors blocked forever in a barrier
# or a page fault (caught by the time bound), or let them exit 0 or without a word.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DSMRUN VICTIM" >&2
    exit 2
fi
DSMRUN=$1
VICTIM=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "node_killed: FAILED: $*" >&2
    echo "--- stdout:" >&2
    sed 's/^/  | /' "$out" >&2 || true
    echo "--- stderr:" >&2
    sed 's/^/  | /' "$err" >&2 || true
    exit 1
}

for n in 3 2; do
    out=$tmp/out.$n
    err=$tmp/err.$n
    start=$(date +%s%N)
    rc=0
    MN_VICTIM=1 MN_VICTIM_KILL_MS=1000 MN_VICTIM_SECONDS=60 \
        timeout -k 5 90 "$DSMRUN" -n "$n" "$VICTIM" >"$out" 2>"$err" || rc=$?
    end=$(date +%s%N)
    ms=$(((end - start) / 1000000))

    # (timeout exits 124, or 137 if it had to SIGKILL; dsmrun itself may exit 137 as well,
    # reporting node 1's SIGKILL, so the elapsed time decides)
    if [ "$rc" -eq 124 ] || [ "$ms" -ge 90000 ]; then
        fail "-n $n: the job was still running after 90 s (node 1 was killed at 1 s)"
    fi
    if grep -q "ran to the end" "$out"; then
        fail "-n $n: the victim was never killed (is MN_VICTIM_KILL_MS passed through dsmrun?)"
    fi
    grep -q "node 1 kills itself" "$err" || fail "-n $n: node 1 did not announce its death"
    [ "$rc" -ne 0 ] || fail "-n $n: dsmrun exited 0 although node 1 was killed"
    [ "$ms" -lt 20000 ] || fail "-n $n: the job took ${ms} ms to end (node 1 died at ~1000 ms)"
    for ((r = 0; r < n; r++)); do
        [ "$r" -eq 1 ] && continue
        if ! grep -E "\[node $r\]" "$err" | grep -i "lost" | grep -Eq "node 1([^0-9]|$)"; then
            fail "-n $n: surviving node $r printed no line naming node 1 as lost"
        fi
    done
    echo "node_killed: -n $n: dsmrun exited $rc after ${ms} ms; every survivor reported node 1 lost"
done

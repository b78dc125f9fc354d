#!/usr/bin/env bash
# security.sh DSMRUN VICTIM - liveness and membership of a real job under dsmrun (issue 12).
#
#   1. frozen node: node 1 of 3 SIGSTOPs itself at 1 s with DSM_PEER_TIMEOUT=2000; the job
#      must end non-zero within the timeout plus a margin (15 s from the start), every
#      survivor must name node 1, and one at least must say it stopped responding. Without
#      heartbeats and the timeout the survivors wait in a barrier forever (the time bound).
#   2. compute phase: every node of 3 computes for 3x DSM_PEER_TIMEOUT without any DSM call;
#      the job must exit 0 (pings come from the service thread, not the application).
#   3. secrets: dsmrun hands the nodes a secret (DSM_SECRET is in a node's environment, not
#      on any command line).
#   4. by hand: an intruder with the right job id and rank but the wrong secret, started before
#      the real node 1, is refused and says why; node 0 logs its address and the job completes.
#      DSM_SECRET_FILE readable by others is refused, saying chmod 600.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DSMRUN VICTIM" >&2
    exit 2
fi
DSMRUN=$1
VICTIM=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
err=$tmp/err

fail() {
    echo "security: FAILED: $*" >&2
    echo "--- stdout:" >&2
    sed 's/^/  | /' "$out" >&2 || true
    echo "--- stderr:" >&2
    sed 's/^/  | /' "$err" >&2 || true
    exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- 1. a frozen node
start=$(now_ms)
rc=0
MN_VICTIM=1 MN_VICTIM_SIGNAL=STOP MN_VICTIM_KILL_MS=1000 MN_VICTIM_SECONDS=60 DSM_PEER_TIMEOUT=2000 \
    timeout -k 5 90 "$DSMRUN" -n 3 "$VICTIM" >"$out" 2>"$err" || rc=$?
ms=$(($(now_ms) - start))
[ "$ms" -lt 60000 ] || fail "frozen node: the job was still running after ${ms} ms (node 1 froze at 1 s, DSM_PEER_TIMEOUT=2 s)"
grep -q "node 1 stops itself with SIGSTOP" "$err" || fail "frozen node: node 1 never froze"
[ "$rc" -ne 0 ] || fail "frozen node: dsmrun exited 0"
[ "$ms" -lt 15000 ] || fail "frozen node: the job took ${ms} ms to end (froze at ~1000 ms, timeout 2000 ms)"
# The first survivor to time out ends the job: dsmrun then kills the stopped node 1 at once,
# so the other survivor may see node 1's connection reset before its own timeout fires (CI
# saw this). Every survivor must name node 1; at least one must say it stopped responding.
froze_named=0
for r in 0 2; do
    if grep -E "\[node $r\]" "$err" | grep -q "node 1 stopped responding"; then
        froze_named=1
    else
        grep -E "\[node $r\]" "$err" | grep -q "lost node 1" ||
            fail "frozen node: survivor node $r did not name node 1 as the node it lost"
    fi
done
[ "$froze_named" = 1 ] || fail "frozen node: no survivor said that node 1 stopped responding"
echo "security: frozen node: dsmrun exited $rc after ${ms} ms, survivors named node 1"

# ---- 2. a long compute phase is not a dead node
rc=0
MN_VICTIM_COMPUTE_MS=6000 DSM_PEER_TIMEOUT=2000 timeout -k 5 90 "$DSMRUN" -n 3 "$VICTIM" \
    >"$out" 2>"$err" || rc=$?
[ "$rc" -eq 0 ] || fail "compute phase: a 6 s computation with DSM_PEER_TIMEOUT=2000 ended the job (exit $rc)"
grep -q "was not declared dead" "$out" "$err" || fail "compute phase: the program did not get to its end"
echo "security: compute phase of 3x DSM_PEER_TIMEOUT: exit 0"

# ---- 3. the secret dsmrun gives, and a node with the wrong one
cat >"$tmp/show.sh" <<'SH'
#!/bin/sh
# prints whether the node has a secret, and whether it is on its command line
[ -n "$DSM_SECRET" ] && echo "secret-len ${#DSM_SECRET}"
ps -eo args | grep -F -- "$DSM_SECRET" | grep -v grep >/dev/null && echo "SECRET ON A COMMAND LINE"
exit 0
SH
chmod +x "$tmp/show.sh"
env -u DSM_SECRET -u DSM_SECRET_FILE "$DSMRUN" -n 2 "$tmp/show.sh" >"$out" 2>"$err" || fail "dsmrun -n 2 show.sh failed"
[ "$(grep -c 'secret-len 64' "$out")" -eq 2 ] || fail "dsmrun did not give both nodes a 64-digit secret"
grep -q "SECRET ON A COMMAND LINE" "$out" && fail "the secret is visible on a command line"
echo "security: dsmrun gave every node a secret, on no command line"

# ---- 4. an intruder with the right job id but the wrong secret, started by hand before the
# real node 1: it is refused and says so; the real job completes. Then DSM_SECRET_FILE rules.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
common=(DSM_NODES=2 DSM_JOB=security-test "DSM_COORDINATOR=127.0.0.1:$port" DSM_CONNECT_TIMEOUT=20000
    MN_VICTIM_COMPUTE_MS=1)
env "${common[@]}" DSM_RANK=0 DSM_SECRET=the-real-secret-of-this-job timeout 60 "$VICTIM" \
    >"$tmp/n0.out" 2>"$tmp/n0.err" &
p0=$!
rc=0
env "${common[@]}" DSM_RANK=1 DSM_SECRET=an-intruder-guessing-wrong timeout 60 "$VICTIM" \
    >"$out" 2>"$err" || rc=$?
[ "$rc" -ne 0 ] || fail "intruder: a node with the wrong secret was accepted"
grep -q "no proof of this job's secret" "$err" || fail "intruder: refused without saying why"
rc=0
env "${common[@]}" DSM_RANK=1 DSM_SECRET=the-real-secret-of-this-job timeout 60 "$VICTIM" \
    >"$out" 2>"$err" || rc=$?
[ "$rc" -eq 0 ] || fail "intruder: the real node 1 failed after the intruder was refused (exit $rc)"
rc=0
wait "$p0" || rc=$?
cat "$tmp/n0.err" >>"$err"
[ "$rc" -eq 0 ] || fail "intruder: node 0 failed after the intruder was refused (exit $rc)"
grep -q "closed a connection from 127.0.0.1:.*no proof of this job's secret" "$tmp/n0.err" ||
    fail "intruder: node 0 did not log the refused connection with its address"
echo "security: intruder with the wrong secret refused, the job completed"

printf 'a-secret-in-a-file-0123\n' >"$tmp/secret"
chmod 644 "$tmp/secret"
rc=0
env -u DSM_SECRET DSM_NODES=1 DSM_RANK=0 DSM_SECRET_FILE="$tmp/secret" MN_VICTIM_COMPUTE_MS=1 \
    "$VICTIM" >"$out" 2>"$err" || rc=$?
[ "$rc" -ne 0 ] || fail "DSM_SECRET_FILE readable by others was accepted"
grep -q "chmod 600" "$err" || fail "DSM_SECRET_FILE of mode 644: the message does not say chmod 600"
echo "security: DSM_SECRET_FILE readable by others refused"

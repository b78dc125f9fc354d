#!/usr/bin/env bash
# broken_logs.sh - proves the history checker rejects broken histories of a real run: runs
# history_run on 2 nodes with -o (every node saves its logs), checks the saved logs offline
# (must pass), then breaks one operation in three ways - a stale read, a lost RMW update, a
# value nobody wrote - and each time history_check must report a violation (exit 1).
# usage: broken_logs.sh DSMRUN HISTORY_RUN HISTORY_CHECK
set -u
dsmrun=$1 run=$2 check=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/ufdsm-history.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
fail() { echo "broken_logs: FAILED: $*"; exit 1; }

timeout 120 "$dsmrun" -n 2 "$run" -t 2 -i 6000 -s 77 -o "$dir/logs" ||
  fail "history_run on 2 nodes failed (see above)"
timeout 60 "$check" "$dir/logs" || fail "the unbroken logs of a passing run were rejected"
for how in stale lost unwritten; do
  out=$(timeout 60 "$check" --break "$how" "$dir/logs" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  [ "$rc" -eq 1 ] || fail "history_check --break $how exited $rc, expected 1 (violation found)"
  printf '%s\n' "$out" | grep -q '^VIOLATION' || fail "no VIOLATION line for --break $how"
done
echo "broken_logs: the checker accepted the real logs and rejected each broken copy"

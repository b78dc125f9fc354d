#!/usr/bin/env bash
# A node killed while the others run: dsmrun names it, gives the others the grace period, then
# stops them, and exits with at least 128 + 9.
. "$(dirname "$0")/lib.sh"

begin node_1_killed
run -n 3 --grace 2 sh "$NODE" "$D" fail 1 kill9
[ "$rc" -ge $((128 + 9)) ] || fail "dsmrun exited with $rc, expected 137 or more"
expect_within 15
expect_err "node 1 (pid $(<"$D/pid.1")) was killed by signal 9"
expect_err "giving the other nodes 2 s to exit"
expect_err "sending SIGTERM"
expect_err "node 0 was killed by signal 15 (SIGTERM), sent by dsmrun"
expect_gone

begin grace_zero
run -n 2 --grace 0 sh "$NODE" "$D" fail 0 kill9
[ "$rc" -ge $((128 + 9)) ] || fail "dsmrun exited with $rc, expected 137 or more"
expect_within 10
expect_err "node 0 (pid $(<"$D/pid.0")) was killed by signal 9"
expect_gone

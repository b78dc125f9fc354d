#!/usr/bin/env bash
# A node exiting non-zero while the others would wait forever: dsmrun names it and stops the
# rest after the grace period. Nodes that exit by themselves within it keep their own status.
. "$(dirname "$0")/lib.sh"

begin node_2_exits_3
run -n 3 --grace 2 sh "$NODE" "$D" fail 2 3
[ "$rc" -ge 3 ] || fail "dsmrun exited with $rc"
expect_within 15
expect_err "node 2 (pid $(<"$D/pid.2")) exited with status 3; giving the other nodes 2 s to exit"
expect_err "node 2 exited with status 3"
expect_gone

begin grace_from_environment
DSMRUN_GRACE=1 run -n 2 sh "$NODE" "$D" fail 1 4
[ "$rc" -ge 4 ] || fail "dsmrun exited with $rc"
expect_within 15
expect_err "giving the other nodes 1 s to exit"
expect_gone

# The DSM runtime reports a lost peer and exits 3 by itself; dsmrun must let it, not kill it.
begin others_exit_by_themselves
run -n 3 --grace 30 sh "$NODE" "$D" follow 0 5
expect_rc 5
expect_within 25
expect_err "node 0 exited with status 5"
expect_err "node 1 exited with status 3"
expect_err "node 2 exited with status 3"
expect_no_err "SIGTERM"
expect_no_err "sent by dsmrun"

begin node_exiting_0_is_normal
run -n 2 --grace 0 sh -c '[ "$DSM_RANK" = 0 ] || sleep 0.5'
expect_rc 0
[ ! -s "$D/err" ] || fail "nothing should be reported"

#!/usr/bin/env bash
# Remote nodes never outlive dsmrun. The fake ssh runs here with FAKE_SSH_DETACH, which puts
# the "remote" command in a session of its own as sshd does: dsmrun's signals then reach only
# its ssh clients, and the remote side must stop by itself when its ssh input ends (the
# wrapper dsmrun puts around every remote node). A remote death by a signal is reported as
# such, not as an ssh failure. (test_sshd.sh does the same through a real sshd.)
. "$(dirname "$0")/lib.sh"

mkdir "$T/bin"
cp "$HERE/fake-ssh" "$T/bin/fake-ssh"
export DSMRUN_SSH="sh $T/bin/fake-ssh -o BatchMode=yes"
export FAKE_SSH_DETACH=1

begin sigint_stops_remote_nodes
start env --default-signal=INT "$DSMRUN" --hosts a,b,c sh "$NODE" "$D" sleep
wait_up 3
kill -INT "$bgpid"
finish
[ "$rc" -ne 0 ] || fail "an interrupted job exited 0"
expect_err "interrupted, stopping 3 nodes"
expect_gone

begin stubborn_remote_node_gets_sigkill
start "$DSMRUN" --hosts a,b sh "$NODE" "$D" stubborn
wait_up 2
kill -TERM "$bgpid"
finish
[ "$rc" -ne 0 ] || fail "an interrupted job exited 0"
expect_gone

# dsmrun killed outright cannot stop anything: the end of the ssh input must do it.
begin dsmrun_killed
start "$DSMRUN" --hosts a,b sh "$NODE" "$D" sleep
wait_up 2
kill -KILL "$bgpid"
finish
expect_gone

# An ssh that fails stops the job at once: the others would otherwise wait for a node that
# never comes until their connect timeout (here: the grace period would not end in time).
begin ssh_failure_stops_the_others
FAKE_SSH_DOWN_WAIT="$D/up.0 $D/up.2" run --hosts a,down,c --grace 100 sh "$NODE" "$D" sleep
expect_rc 255
expect_err "node 1 (down, pid"
expect_err "stopping the other nodes now"
expect_err "node 1 (down) exited with status 255 (ssh's own failure status"
expect_gone

begin remote_node_killed_by_signal
run --hosts a,b --grace 1 sh "$NODE" "$D" fail 1 kill9
[ "$rc" -ge $((128 + 9)) ] || fail "dsmrun exited with $rc, expected 137 or more"
expect_err "node 1 (b, pid"
expect_err "was killed by signal 9 (SIGKILL) on b; giving the other nodes 1 s to exit"
expect_err "node 1 on host b was killed by signal 9 (SIGKILL)"
expect_no_err "ssh's own failure"
expect_no_err "dsmrun-wrapper:"
expect_gone

#!/usr/bin/env bash
# SIGTERM, SIGINT or SIGHUP to dsmrun stops every node (SIGTERM, then SIGKILL 3 s later) and
# dsmrun exits non-zero in bounded time. A signal ignored when dsmrun started stays ignored.
. "$(dirname "$0")/lib.sh"

begin sigterm
start "$DSMRUN" -n 3 sh "$NODE" "$D" sleep
wait_up 3
kill -TERM "$bgpid"
finish
expect_rc $((128 + 15))
expect_err "interrupted, stopping 3 nodes"
expect_err "node 2 was killed by signal 15 (SIGTERM), sent by dsmrun"
expect_gone

# A background job of a script starts with SIGINT ignored; give dsmrun the terminal's default.
begin sigint
start env --default-signal=INT "$DSMRUN" -n 2 sh "$NODE" "$D" sleep
wait_up 2
kill -INT "$bgpid"
finish
[ "$rc" -ne 0 ] || fail "an interrupted job exited 0"
expect_err "interrupted, stopping 2 nodes"
expect_gone

begin sighup
start "$DSMRUN" -n 2 sh "$NODE" "$D" sleep
wait_up 2
kill -HUP "$bgpid"
finish
[ "$rc" -ne 0 ] || fail "an interrupted job exited 0"
expect_err "interrupted"
expect_gone

begin sigkill_after_3_s
start "$DSMRUN" -n 2 sh "$NODE" "$D" stubborn
wait_up 2
kill -TERM "$bgpid"
finish
expect_rc $((128 + 9))
expect_within 15
expect_err "sending SIGKILL"
expect_gone

begin second_signal_kills_at_once
start "$DSMRUN" -n 2 sh "$NODE" "$D" stubborn
wait_up 2
kill -TERM "$bgpid"
for ((i = 0; i < 100; i++)); do
    [[ $(<"$D/err") == *interrupted* ]] && break
    sleep 0.1
done
kill -TERM "$bgpid"
finish
expect_rc $((128 + 9))
expect_err "interrupted again, killing 2 nodes"
expect_gone

# nohup: dsmrun started with SIGHUP ignored must survive a hangup.
begin ignored_sighup
start env --ignore-signal=HUP "$DSMRUN" -n 2 sh "$NODE" "$D" until-go
wait_up 2
kill -HUP "$bgpid"
: >"$D/go"
finish
expect_rc 0

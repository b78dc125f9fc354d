#!/usr/bin/env bash
# dsmrun's exit status is the worst of its nodes' (exit code, or 128 + signal), and the nodes'
# output passes through untouched.
. "$(dirname "$0")/lib.sh"

begin worst_exit_code
run -n 3 sh -c 'exit $DSM_RANK'
expect_rc 2
expect_err "node 1 exited with status 1"
expect_err "node 2 exited with status 2"
expect_no_err "node 0 exited"

begin all_zero
run -n 3 true
expect_rc 0
[ ! -s "$D/err" ] || fail "a successful job should print nothing"

begin one_node
run -n 1 sh -c 'exit 7'
expect_rc 7

begin signal_counts_as_128_plus
run -n 2 sh -c '[ "$DSM_RANK" = 0 ] || kill -USR1 $$'
expect_rc $((128 + 10))
expect_err "node 1 was killed by signal 10 (SIGUSR1)"

begin exit_200_beats_sigterm
run -n 3 sh -c 'case $DSM_RANK in 0) exit 200;; 1) kill -TERM $$;; *) exit 1;; esac'
expect_rc 200

begin sixty_four_nodes
run -n 64 true
expect_rc 0

begin output_untouched
run -n 2 sh -c 'echo "hello from $DSM_RANK"'
expect_rc 0
[ "$(sort "$D/out")" = "$(printf 'hello from 0\nhello from 1')" ] ||
    fail "stdout was altered: $(<"$D/out")"

#!/usr/bin/env bash
# A program that cannot be run: every node reports it and exits 127, and so does dsmrun,
# without waiting out the grace period.
. "$(dirname "$0")/lib.sh"

begin missing_path
run -n 2 /nonexistent/dir/prog
expect_rc 127
expect_err "dsmrun: cannot run '/nonexistent/dir/prog': No such file or directory"
expect_within 10

begin not_in_path
run -n 1 dsmrun-no-such-program
expect_rc 127
expect_err "cannot run 'dsmrun-no-such-program'"

begin not_executable
: >"$D/data"
run -n 1 "$D/data"
expect_rc 127
expect_err "Permission denied"

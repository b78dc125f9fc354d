#!/bin/sh
# expect_violation.sh - runs a model checker built with an injected protocol bug
# (COH_INJECT_BUG) and succeeds only if it reports the expected violation with a
# counterexample trace: this is how ctest shows that the checker catches known bugs.
# usage: expect_violation.sh PATTERN model_check_bugN [args...]
#   PATTERN: a grep -E pattern the VIOLATION line must match
pattern=$1
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 1 ]; then
    echo "expect_violation: exit code $rc, expected 1 (violation found)"
    exit 1
fi
if ! printf '%s\n' "$out" | grep -E '^VIOLATION' | grep -Eq "$pattern"; then
    echo "expect_violation: no VIOLATION line matching '$pattern'"
    exit 1
fi
if ! printf '%s\n' "$out" | grep -q '^step 1: '; then
    echo "expect_violation: no counterexample trace"
    exit 1
fi
echo "expect_violation: the injected bug was caught, with a trace"

#!/usr/bin/env bash
# alloc_mismatch.sh DSMRUN ALLOC_MISMATCH - nodes disagreeing on a collective must not run on.
#
# Runs alloc_mismatch.c under dsmrun with 2 and 3 nodes in its two modes: "size" (node 1
# passes a different size to the 2nd dsm_alloc) and "order" (node 1 calls dsm_alloc where the
# others call dsm_barrier). Each run must
#   - end (within 60 s: a mismatched collective must not hang),
#   - exit non-zero (a fatal error, or NULL from dsm_alloc: the program exits 3 then),
#   - have no node report that it "continued past the mismatched collective",
#   - print on stderr a message about the mismatch (mentioning "collective", "mismatch" or
#     "disagree").
# A DSM that does not check collectives hands the nodes different or overlapping memory and
# they corrupt each other silently; that is what this catches.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DSMRUN ALLOC_MISMATCH" >&2
    exit 2
fi
DSMRUN=$1
PROG=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "alloc_mismatch: FAILED: $*" >&2
    echo "--- stdout:" >&2
    sed 's/^/  | /' "$out" >&2 || true
    echo "--- stderr:" >&2
    sed 's/^/  | /' "$err" >&2 || true
    exit 1
}

for mode in size order; do
    for n in 2 3; do
        out=$tmp/out.$mode.$n
        err=$tmp/err.$mode.$n
        rc=0
        start=$(date +%s)
        timeout -k 5 60 "$DSMRUN" -n "$n" "$PROG" "$mode" >"$out" 2>"$err" || rc=$?
        if [ "$rc" -eq 124 ] || [ $(($(date +%s) - start)) -ge 60 ]; then
            fail "$mode, -n $n: still running after 60 s (the mismatched collective hangs)"
        fi
        [ "$rc" -ne 0 ] || fail "$mode, -n $n: dsmrun exited 0"
        if grep -q "continued past the mismatched collective" "$out" "$err"; then
            fail "$mode, -n $n: a node got through the mismatched collective"
        fi
        grep -Eiq "collective|mismatch|disagree" "$err" ||
            fail "$mode, -n $n: no message on stderr says the nodes disagree on a collective"
        echo "alloc_mismatch: $mode, -n $n: stopped (exit $rc) with: $(grep -Ei -m1 "collective|mismatch|disagree" "$err")"
    done
done

#!/usr/bin/env bash
# memory_sizes.sh DSMRUN INIT_ERROR - the global space's address range for every documented
# DSM_MEMORY (issue 12, item 5), on one node (mn_init_error without arguments: dsm_init,
# then exit 0).
#   - DSM_MEMORY of 1G, 64G, 1T, 4T, 6200G, 8T, 12T and 16T at the default DSM_BASE: each
#     initialises (the per-page bookkeeping is reserved lazily, so even 16T is quick). With the
#     old default base (0x500000000000) a PIE executable sits inside [base, base + 16T), and
#     sizes from ~6T on failed with "cannot be mapped".
#   - that old base with 16T: refused, naming the mapping in the way (this executable).
#   - DSM_BASE=fffffffffffff000: refused, naming the wrapping range (it used to pass).
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 DSMRUN INIT_ERROR" >&2
    exit 2
fi
PROG=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
fail() {
    echo "memory_sizes: FAILED: $*" >&2
    sed 's/^/  | /' "$log" >&2
    exit 1
}
run() { # run VAR=VALUE...: one node, no coordinator needed
    rc=0
    env DSM_NODES=1 DSM_RANK=0 DSM_COORDINATOR=127.0.0.1:9 "$@" timeout 120 "$PROG" >"$log" 2>&1 ||
        rc=$?
}
for m in 1G 64G 1T 4T 6200G 8T 12T 16T; do
    run DSM_MEMORY=$m
    [ "$rc" -eq 0 ] || fail "DSM_MEMORY=$m: dsm_init failed (exit $rc)"
    grep -q "dsm_init succeeded" "$log" || fail "DSM_MEMORY=$m: exit 0 without initialising"
    echo "memory_sizes: DSM_MEMORY=$m initialises"
done
run DSM_MEMORY=16T DSM_BASE=500000000000
[ "$rc" -ne 0 ] || fail "16T at 0x500000000000 initialised: expected the executable in the way"
grep -q "this mapping is in the way: \[0x[0-9a-f]*, 0x[0-9a-f]*) .*$(basename "$PROG")" "$log" ||
    fail "16T at 0x500000000000: the message does not name the mapping in the way"
echo "memory_sizes: old base with 16T: $(grep -o 'this mapping is in the way: [^;]*' "$log")"
run DSM_BASE=fffffffffffff000
[ "$rc" -ne 0 ] || fail "DSM_BASE=fffffffffffff000 accepted"
grep -q "gives the range \[0xfffffffffffff000, 0x[0-9a-f]*, wrapping past 2^64)" "$log" ||
    fail "DSM_BASE=fffffffffffff000: the message does not name the wrapping range"
echo "memory_sizes: wrapping DSM_BASE refused, naming the range"

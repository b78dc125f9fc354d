#!/usr/bin/env bash
# memory_sizes.sh DSMRUN INIT_ERROR - the global space's address range for every documented
# DSM_MEMORY (issue 12, item 5), on one node (mn_init_error without arguments: dsm_init,
# then exit 0).
#   - DSM_MEMORY of 1G, 4T, 6200G, 8T and 16T at the default DSM_BASE: the range maps. Each
#     size either initialises, or is refused for the one documented reason left: the
#     per-page bookkeeping does not fit this machine ("cannot allocate bookkeeping", until
#     dsm_node_create allocates it lazily). Never "cannot be mapped": with the old default
#     base (0x500000000000) a PIE executable sits inside [base, base + 16T).
#   - that old base with 16T: refused, naming the mapping in the way (this executable).
#   - DSM_BASE=fffffffffffff000: refused, naming the wrapping range (it used to pass).
# Sizes between 64G and 2T are left out on purpose: their bookkeeping is allocated and
# zeroed eagerly, which takes from seconds to minutes (reported to the owner).
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
for m in 1G 4T 6200G 8T 16T; do
    run DSM_MEMORY=$m
    if [ "$rc" -eq 0 ]; then
        grep -q "dsm_init succeeded" "$log" || fail "DSM_MEMORY=$m: exit 0 without initialising"
        echo "memory_sizes: DSM_MEMORY=$m initialises"
    else
        grep -q "cannot be mapped" "$log" && fail "DSM_MEMORY=$m: the default range is in use"
        grep -q "cannot allocate bookkeeping" "$log" ||
            fail "DSM_MEMORY=$m: refused (exit $rc) for an undocumented reason"
        echo "memory_sizes: DSM_MEMORY=$m maps, refused: $(grep -o 'cannot allocate bookkeeping[^)]*)' "$log")"
    fi
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

#!/usr/bin/env bash
# cache_cgroup.sh DSMRUN CACHE_BIG - data larger than any node's memory, each node in a memory
# cgroup of its own.
#
# Runs cache_big.c (write, read in order, write and read at random, every word checked) on 3
# nodes over MIB MiB of global data, each node in its own memory cgroup of CAP MiB < MIB,
# with DSM_CACHE far below what a node touches, under DSM_PROTOCOL=sc and rc. Without a
# bounded cache a node keeps every page it touched and is OOM-killed; with eviction that
# loses a dirty page the checks fail. Prints the data size, the cap, the peak memory of each
# cgroup and the time. Then the same data in cgroups of 3/4 of a node's share: the homed
# pages cannot fit,
# and the job must stop at dsm_alloc with a message naming the limit and the fix (not be
# OOM-killed). Creates the cgroups (v1 memory controller or v2) and removes them;
# skips (77) where it cannot create them (not root, no memory controller).
#
# Why 3 nodes: on kernels before 6.4 a home holds each page it homes twice (its own mapping
# and the home store; dsm/region.c), so a node needs about 2 x MIB/N + cache; with N = 3 that
# fits a cap below MIB on every kernel. With one copy (6.4+) it needs about MIB/N + cache.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 DSMRUN CACHE_BIG" >&2
    exit 2
fi
DSMRUN=$1
PROG=$2
NODES=${CACHE_NODES:-3}
MIB=${CACHE_MIB:-96}
CAP=${CACHE_CAP_MIB:-90}
CACHE=${CACHE_SIZE:-8M}

if [ -d /sys/fs/cgroup/memory ] && [ -w /sys/fs/cgroup/memory ]; then
    V=1
    ROOT=/sys/fs/cgroup/memory
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers &&
    [ -w /sys/fs/cgroup ] &&
    { grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
        echo +memory >/sys/fs/cgroup/cgroup.subtree_control; } 2>/dev/null; then
    V=2 # children of the root get memory.max only once the root delegates the controller
    ROOT=/sys/fs/cgroup
else
    echo "cache_cgroup: SKIPPED: no writable memory cgroup (v1 or v2) here; run as root" >&2
    exit 77
fi

tmp=$(mktemp -d)
NAME=ufdsm_cache_$$
cleanup() {
    for ((r = 0; r < NODES; r++)); do
        [ -d "$ROOT/$NAME.$r" ] && rmdir "$ROOT/$NAME.$r" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# Each node moves itself into its cgroup, then becomes the test program.
cat >"$tmp/in_cgroup.sh" <<'WRAP'
#!/usr/bin/env bash
echo $$ >"$CG_ROOT/$CG_NAME.$DSM_RANK/cgroup.procs"
exec "$@"
WRAP
chmod +x "$tmp/in_cgroup.sh"

status=0
for proto in sc rc; do
    for ((r = 0; r < NODES; r++)); do
        d=$ROOT/$NAME.$r
        mkdir "$d"
        if [ $V = 1 ]; then
            echo $((CAP << 20)) >"$d/memory.limit_in_bytes"
            echo 0 >"$d/memory.swappiness" 2>/dev/null || true
        else
            echo $((CAP << 20)) >"$d/memory.max"
            echo 0 >"$d/memory.swap.max" 2>/dev/null || true
        fi
    done
    start=$(date +%s.%N)
    set +e
    CG_ROOT=$ROOT CG_NAME=$NAME DSM_PROTOCOL=$proto DSM_CACHE=$CACHE DSM_MEMORY=256M \
        timeout 240 "$DSMRUN" -n "$NODES" "$tmp/in_cgroup.sh" "$PROG" "$MIB" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
    end=$(date +%s.%N)
    peaks=""
    for ((r = 0; r < NODES; r++)); do
        d=$ROOT/$NAME.$r
        if [ $V = 1 ]; then
            peak=$(cat "$d/memory.max_usage_in_bytes")
            oom=$(awk '/oom_kill /{print $2}' "$d/memory.oom_control" 2>/dev/null || echo 0)
        else
            peak=$(cat "$d/memory.peak" 2>/dev/null || echo 0)
            oom=$(awk '/oom_kill /{print $2}' "$d/memory.events" 2>/dev/null || echo 0)
        fi
        peaks="$peaks node$r=$((peak >> 20))MiB(oom_kills=${oom:-0})"
    done
    printf 'cache_cgroup: %s, %d nodes, %d MiB of data, cgroup cap %d MiB per node, DSM_CACHE=%s: exit %d in %.1f s; peak memory:%s\n' \
        "$proto" "$NODES" "$MIB" "$CAP" "$CACHE" "$rc" "$(echo "$end - $start" | bc)" "$peaks"
    sed 's/^/  | /' "$tmp/out"
    if [ $rc -ne 0 ] || ! grep -q "cache_big: passed" "$tmp/out"; then
        echo "cache_cgroup: FAILED under DSM_PROTOCOL=$proto (exit $rc; a node OOM-killed shows as a lost node)" >&2
        sed 's/^/  | /' "$tmp/err" >&2
        status=1
    fi
    for ((r = 0; r < NODES; r++)); do rmdir "$ROOT/$NAME.$r"; done
done

# A node whose homed pages cannot fit its cgroup: the job must stop at the allocation with a
# message saying so and what to do, not be OOM-killed later.
SMALL=$((MIB * 3 / (4 * NODES)))
for ((r = 0; r < NODES; r++)); do
    d=$ROOT/$NAME.$r
    mkdir "$d"
    if [ $V = 1 ]; then echo $((SMALL << 20)) >"$d/memory.limit_in_bytes"; else echo $((SMALL << 20)) >"$d/memory.max"; fi
done
set +e
CG_ROOT=$ROOT CG_NAME=$NAME DSM_CACHE=$CACHE DSM_MEMORY=256M \
    timeout 120 "$DSMRUN" -n "$NODES" "$tmp/in_cgroup.sh" "$PROG" "$MIB" >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
oom=0
for ((r = 0; r < NODES; r++)); do
    d=$ROOT/$NAME.$r
    if [ $V = 1 ]; then
        k=$(awk '/oom_kill /{print $2}' "$d/memory.oom_control" 2>/dev/null || echo 0)
    else
        k=$(awk '/oom_kill /{print $2}' "$d/memory.events" 2>/dev/null || echo 0)
    fi
    oom=$((oom + ${k:-0}))
    rmdir "$d"
done
msg=$(grep -m1 "more than the .* MiB this node may use" "$tmp/err" || true)
echo "cache_cgroup: $MIB MiB on $NODES nodes in cgroups of $SMALL MiB: exit $rc, OOM kills $oom; message: ${msg:-none}"
if [ $rc -eq 0 ] || [ $oom -ne 0 ] || [ -z "$msg" ] || ! grep -q "use more nodes" "$tmp/err"; then
    echo "cache_cgroup: FAILED: homed pages that cannot fit must stop the job at dsm_alloc with a message naming the limit and the fix" >&2
    sed 's/^/  | /' "$tmp/err" >&2
    status=1
fi
exit $status

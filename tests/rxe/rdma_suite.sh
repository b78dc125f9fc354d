#!/usr/bin/env bash
# The multi-node suite over real RDMA (soft-RoCE: rdma_rxe) inside qemu guests, forced with
# DSM_TRANSPORT=rdma so that a silent fallback to TCP would fail instead of passing:
#   1. one guest, 2 nodes over rxe0 on eth0: every 2-node multi-node test of ctest, and the
#      scripted failure tests (a node killed mid-run, mismatched allocations, the transport
#      choice);
#   2. two guests (two kernels joined by a virtual link), one node each: lock counter, Jacobi
#      against the serial result, message passing with a flag.
# DSM_SPIN_US=0: under emulation a waiter that spins takes the vCPU from the thread it waits
# for (a guest vCPU is 30-60 times slower than the host's).
#
# Usage: tests/rxe/rdma_suite.sh BUILD_DIR   (a build of this tree, inside the tree, so the
#        guests see it at the same path)
set -euo pipefail
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
rxe=$src/tools/rxe/rxe-cluster
case $build in
  "$src"/*) ;;
  *) echo "rdma_suite.sh: $build is outside $src; the guests only see the source tree" >&2; exit 2 ;;
esac

t0=$(date +%s)
echo "== rdma suite 1/2: 2 nodes in one guest over rxe0"
# Then, in the same guest, the remote read-fault latency over RDMA (node 1's fault service
# time from DSM_STATS=1, read-ahead off, waiters polling as by default) next to ib_read_lat.
# Under emulation the fault path itself (signal, userfaultfd ioctls) dominates: over TCP in
# the same guest it costs the same.
# shellcheck disable=SC2016 # expanded inside the guest
"$rxe" run --timeout 1200 --env DSM_TRANSPORT=rdma --env DSM_SPIN_US=0 -- bash -c '
  set -eo pipefail
  ctest --test-dir "$1" -L multinode -R "(\.n2|node_killed|alloc_mismatch|rdma\.fallback)\$" \
    --output-on-failure --timeout 400
  "$2"/tests/rxe/guest_checks.sh one
  DSM_SPIN_US=1000 DSM_STATS=1 DSM_PREFETCH=0 "$1"/dsmrun -n 2 "$1"/readfaults 2000 2>&1 |
    grep -E "readfaults:|node 1\] stats: (rdma|fault)"' _ "$build" "$src"
t1=$(date +%s)

echo "== rdma suite 2/2: one node in each of two guests"
# Each program gets a port of its own: rank 1 of the next program must not reach rank 0 of
# the previous one while it is still finishing.
# Started by hand across two hosts (the guests), so the job needs a secret as a real cluster
# would (docs/security.md): a coordinator other hosts can reach refuses to run without one.
secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
# shellcheck disable=SC2016 # expanded inside the guests
"$rxe" run --guests 2 --timeout 900 --env DSM_TRANSPORT=rdma --env DSM_SPIN_US=0 \
  --env DSM_MEMORY=256M --env DSM_SECRET="$secret" -- sh -c '
    port=7400
    for t in "lock_counter" "jacobi_check" "message_flag 20"; do
      set -- $t
      port=$((port + 1))
      DSM_RANK=$RXE_GUEST DSM_NODES=2 DSM_COORDINATOR=$RXE_IP_A:$port DSM_JOB=$RXE_RUN_ID-$1 \
        timeout 600 '"$build"'/tests/mn/mn_"$@" || { echo "mn_$1 failed over RDMA across two guests"; exit 1; }
      echo "mn_$1: passed across two guests over RDMA"
    done'
t2=$(date +%s)
echo "rdma suite: one guest $((t1 - t0)) s, two guests $((t2 - t1)) s"

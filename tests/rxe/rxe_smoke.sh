#!/usr/bin/env bash
# rxe_smoke.sh - end-to-end check of tools/rxe/rxe-cluster: boots one soft-RoCE guest and runs
# guest_checks.sh there (ibv_devices, ibv_devinfo, ib_send_lat and ib_read_lat between two
# processes over rxe0 with rdma_cm), then, with RXE_SMOKE_TWO_GUESTS=1, two guests joined
# by a UDP link and ib_send_lat (-R) across them. Needs root on Debian 12 (rxe-cluster installs qemu and
# builds or restores its cached guest image: ~2-3 min the first time, seconds after).
# Prints each step's time and the latencies, and the closing line "rxe_smoke: N passed, N
# failed".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rxe=$here/../../tools/rxe/rxe-cluster
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# step NAME CMD... - runs CMD, its output also kept in $log, and counts the result. A step
# that fails is run once more (a fresh guest, or a fresh download of the image's packages):
# rxe.smoke failed once in CI where it passes here, fresh image and all, and its output was
# lost; perftest over emulated RoCE in an emulated machine, and the package mirror, can fail
# once with nothing wrong in the tooling. Both attempts' output is printed, and a pass on the
# second attempt says so.
step() {
    local name=$1 t0=$SECONDS attempt
    shift
    for attempt in 1 2; do
        if "$@" 2>&1 | tee "$log"; then
            local how=""
            [ "$attempt" = 2 ] && how=" (on the second attempt: the first failed, output above)"
            echo "rxe_smoke: $name: ok in $((SECONDS - t0)) s$how"
            passed=$((passed + 1))
            break
        fi
        echo "rxe_smoke: $name: attempt $attempt FAILED after $((SECONDS - t0)) s"
        if [ "$attempt" = 2 ]; then
            echo "rxe_smoke: $name: FAILED"
            failed=$((failed + 1))
            break
        fi
    done
    grep '^\(\[.\] \)\?RESULT' "$log" | sed 's/^\(\[.\] \)\?RESULT /rxe_smoke: latency (us, 64 B): /' || true
}

# The guests see only what is shared: this directory, at the same path.
step "image (build or restore)" "$rxe" build
step "one guest" "$rxe" run --share "$here" --timeout 300 -- bash "$here/guest_checks.sh" one
# perftest across two guests is opt-in (RXE_SMOKE_TWO_GUESTS=1): its connection set-up has no
# retry on the server side, and over the emulated UDP link it failed 2 CI runs in 4 waiting
# for a client that never got through. The multi-node suite across two guests
# (rdma_suite.sh), whose connections retry, is what CI relies on for two kernels.
if [ "${RXE_SMOKE_TWO_GUESTS:-0}" = 1 ]; then
  step "two guests" "$rxe" run --guests 2 --share "$here" --timeout 300 -- bash "$here/guest_checks.sh" two
else
  echo "rxe_smoke: two guests: skipped (RXE_SMOKE_TWO_GUESTS=1 runs perftest across two guests)"
fi
echo "rxe_smoke: $passed passed, $failed failed"
((failed == 0))

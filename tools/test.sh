#!/usr/bin/env bash
# Builds ufdsm twice - optimised, and with AddressSanitizer + UndefinedBehaviorSanitizer - and
# runs the whole test suite on each: unit tests, the launcher, the multi-node tests through
# dsmrun at 2, 3 and 4 nodes, the protocol model checker, the litmus tests and the history
# checker - and, on the optimised build, runs the soft-RoCE checks and the multi-node suite
# over RDMA inside qemu guests (UFDSM_RXE=OFF skips them). Needs root (userfaultfd).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
jobs=$(nproc)
run() { # build-dir, cmake args...
  local dir=$1; shift
  echo "== build $dir ($*)"
  cmake -S . -B "$dir" -DUFDSM_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" 2>&1 | grep -E 'error|warning' || true
  cmake --build "$dir" -j"$jobs" >/dev/null
  echo "== test $dir"
  # One test at a time: multi-node tests busy-poll and would share the CPUs with anything
  # beside them, and dsmrun picks its coordinator port by binding port 0 and releasing it,
  # which a concurrent test could take in between.
  ctest --test-dir "$dir" --output-on-failure --timeout 600
}
# -DUFDSM_RXE=ON adds rxe.smoke: soft-RoCE guests (qemu) checked with perftest.
run build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUFDSM_RXE="${UFDSM_RXE:-ON}"
if [ "${UFDSM_RXE:-ON}" = ON ]; then
  # The multi-node suite again, over real RDMA (rdma_rxe) in one soft-RoCE guest and across two.
  echo "== test build over RDMA (soft-RoCE guests)"
  tests/rxe/rdma_suite.sh build
fi
# -O3 inlines differently and finds warnings -O2 does not: users build Release, so it must
# compile cleanly too (compile only; the tests above ran on the same code).
echo "== build build-release (compile check, -DCMAKE_BUILD_TYPE=Release)"
cmake -S . -B build-release -DUFDSM_WERROR=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$jobs" 2>&1 | grep -E 'error|warning' || true
cmake --build build-release -j"$jobs" >/dev/null
if [ "${UFDSM_SKIP_SANITIZE:-0}" != 1 ]; then
  # The model checker is pure computation already checked above: under the sanitizers only its
  # fast configurations and self-tests are registered, and the litmus and history tests run
  # fewer iterations (see tests/model, tests/litmus, tests/history CMakeLists.txt).
  ASAN_OPTIONS=handle_sigbus=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run build-asan -DCMAKE_BUILD_TYPE=Debug -DUFDSM_SANITIZE=ON
fi

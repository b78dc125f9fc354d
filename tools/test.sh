#!/usr/bin/env bash
# Builds ufdsm twice - optimised, and with AddressSanitizer + UndefinedBehaviorSanitizer - and
# runs the whole test suite on each: unit tests, the launcher, the multi-node tests through
# dsmrun at 2, 3 and 4 nodes, and the protocol model checker. Needs root (userfaultfd).
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
  # Multi-node tests share the 2 CPUs (RESOURCE_LOCK); the rest run beside them.
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600
}
run build -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${UFDSM_SKIP_SANITIZE:-0}" != 1 ]; then
  # The model checker is pure computation already checked above; skip it under sanitizers.
  ASAN_OPTIONS=handle_sigbus=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run build-asan -DCMAKE_BUILD_TYPE=Debug -DUFDSM_SANITIZE=ON
fi

#!/usr/bin/env bash
# Builds ufdsm twice - optimised, and with AddressSanitizer + UndefinedBehaviorSanitizer - and
# runs the whole test suite on each: unit tests, the launcher, the multi-node tests through
# dsmrun at 2, 3 and 4 nodes, the protocol model checker, the litmus tests and the history
# checker - and, on the optimised build, runs the soft-RoCE checks and the multi-node suite
# over RDMA inside qemu guests (UFDSM_RXE=OFF skips them) - and then fuzzes the network
# parsers with clang's libFuzzer for UFDSM_FUZZ_SECONDS per harness (default 60;
# UFDSM_SKIP_FUZZ=1 skips it). Needs root (userfaultfd).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
jobs=$(nproc)
# A failing suite does not stop the others: one run reports every failure (CI runs are long).
# Build errors do stop it (set -e), and the script exits 8 at the end if any suite failed.
failed_suites=()
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
  if ! ctest --test-dir "$dir" --output-on-failure --timeout 600; then
    failed_again "$dir"
    failed_suites+=("ctest in $dir")
  fi
}
# failed_again DIR - the output of each test that failed, again, after the summary: a log read
# from its end (or cut in the middle) still shows why each one failed.
failed_again() {
  local log=$1/Testing/Temporary/LastTest.log
  echo "== $1: the output of the failed tests again (last 40 lines of each)"
  [ -f "$log" ] || return 0
  # Each test's block runs from "N/M Test: NAME" to "Test Passed." or "Test Failed."; its
  # output sits between "Output:" plus a rule and "<end of output>".
  awk '
    / Test: / { name = $3; n = 0; inout = 0 }
    inout && /^<end of output>$/ { inout = 0; next }
    inout { buf[n++] = $0; next }
    /^Output:$/ { getline; inout = 1; next }
    /^Test (Failed|Not Run)/ && name != "" && !(name in shown) {
      shown[name] = 1
      print "--- " name " (" $0 ")"
      for (i = (n > 40 ? n - 40 : 0); i < n; i++) print "  | " buf[i]
    }' "$log"
}
# -DUFDSM_RXE=ON adds rxe.smoke: soft-RoCE guests (qemu) checked with perftest.
run build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUFDSM_RXE="${UFDSM_RXE:-ON}"
if [ "${UFDSM_RXE:-ON}" = ON ]; then
  # The multi-node suite again, over real RDMA (rdma_rxe) in one soft-RoCE guest and across two.
  echo "== test build over RDMA (soft-RoCE guests)"
  tests/rxe/rdma_suite.sh build || failed_suites+=("the multi-node suite over RDMA (tests/rxe/rdma_suite.sh)")
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
if [ "${UFDSM_SKIP_FUZZ:-0}" != 1 ]; then
  # Fuzzing (tests/fuzz/README.md): every harness for UFDSM_FUZZ_SECONDS (default 60) from a
  # copy of its seed corpus in a temporary directory, so nothing new is ever written into the
  # repository; crash files go to build-fuzz/fuzz-artifacts/. clang is installed here rather
  # than by deps.sh: only this step needs it (~400 MB with its runtime), users building ufdsm
  # do not. libclang-rt-14-dev holds libFuzzer and is only a recommendation of clang.
  fuzz_pkgs=(clang libclang-rt-14-dev)
  missing=()
  for p in "${fuzz_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "== install ${missing[*]} (fuzzing)"
    if [ "$(id -u)" != 0 ]; then
      echo "test.sh: fuzzing needs ${missing[*]} - run as root, install them, or set UFDSM_SKIP_FUZZ=1" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  harnesses=(wire records boot_join boot_reply auth)
  echo "== build build-fuzz (clang, -DUFDSM_FUZZ=ON: libFuzzer + ASan + UBSan)"
  CC=clang cmake -S . -B build-fuzz -DUFDSM_WERROR=ON -DUFDSM_FUZZ=ON >/dev/null
  # Only the harnesses: they carry their own instrumented copy of transport/.
  cmake --build build-fuzz -j"$jobs" --target "${harnesses[@]/#/fuzz_}" 2>&1 | grep -E 'error|warning' || true
  cmake --build build-fuzz -j"$jobs" --target "${harnesses[@]/#/fuzz_}" >/dev/null
  secs=${UFDSM_FUZZ_SECONDS:-60}
  fuzz_tmp=$(mktemp -d)
  trap 'rm -rf "$fuzz_tmp"' EXIT
  for h in "${harnesses[@]}"; do
    art=$PWD/build-fuzz/fuzz-artifacts/$h
    rm -rf "$art" && mkdir -p "$art" "$fuzz_tmp/$h"
    cp tests/fuzz/corpus/"$h"/* "$fuzz_tmp/$h/"
    echo "== fuzz $h (${secs} s)"
    # -timeout: no input may make a harness wait (the bootstrap ones give up after 5 s).
    if ! build-fuzz/tests/fuzz/fuzz_"$h" -max_total_time="$secs" -timeout=30 -print_final_stats=1 \
      -artifact_prefix="$art/" "$fuzz_tmp/$h" >"$fuzz_tmp/$h.log" 2>&1; then
      # The broken property (or sanitizer report) first, then how libFuzzer ended.
      grep -E -A3 'property violated|ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error' \
        "$fuzz_tmp/$h.log" | head -n 30 || true
      tail -n 12 "$fuzz_tmp/$h.log"
      echo "fuzz_$h found an input that breaks a property (log above), saved as:" >&2
      ls -1 "$art"/* >&2 || true
      echo "copy it into tests/fuzz/regressions/$h/ under a name that says what it was, check that" \
        "ctest -R fuzz.$h fails, fix the code, and check that it passes (tests/fuzz/README.md)" >&2
      failed_suites+=("fuzz_$h")
      continue
    fi
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' \
      "$fuzz_tmp/$h.log" || true
  done
fi
if ((${#failed_suites[@]})); then
  printf 'test.sh: FAILED: %s\n' "${failed_suites[@]}" >&2
  exit 8
fi
echo "test.sh: all suites passed"

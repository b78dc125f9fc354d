#!/usr/bin/env bash
# smoke.sh - the ctest smoke test of the benchmark suite (bench.smoke): runs bench/run
# --quick on 2 nodes, 1 repetition, into a temporary directory, and checks that the runner
# wrote a JSON file per run, the summary, and the Markdown table (and the plots, when gnuplot
# is installed: fault latency CDFs, applications, lock handoff, barrier, false sharing).
# Proves the suite works end to end; never judges timing.
#
# Usage: smoke.sh PYTHON RUNNER DSMRUN BENCH_BIN_DIR
set -euo pipefail
python=$1 runner=$2 dsmrun=$3 bindir=$4
out=$(mktemp -d "${TMPDIR:-/tmp}/ufdsm-bench-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT
plots=()
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "smoke: gnuplot not found (Debian: apt-get install gnuplot-nox); checking without plots"
  plots=(--no-plots)
fi
"$python" "$runner" --quick --nodes 2 --reps 1 --dsmrun "$dsmrun" --bin-dir "$bindir" \
  --out "$out" "${plots[@]}"
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
n=$(find "$out/runs" -name '*.json' | wc -l)
[ "$n" -ge 10 ] || fail "expected a JSON file per run in $out/runs, found $n"
[ -s "$out/summary.json" ] || fail "no summary.json"
[ -s "$out/results.md" ] || fail "no results.md"
grep -q '^| (a)' "$out/results.md" || fail "results.md has no row for workload (a)"
"$python" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["results"], "empty"' \
  "$out/summary.json" || fail "summary.json is not valid or has no results"
if [ ${#plots[@]} -eq 0 ]; then
  for p in faultlat_cdf_read.png faultlat_cdf_write.png faultlat_cdf_upgrade.png apps.png \
    lockpp.png barrier.png falseshare.png; do
    [ -s "$out/$p" ] || fail "plot $p was not written"
  done
fi
echo "smoke: OK ($n runs; JSON, summary, table$([ ${#plots[@]} -eq 0 ] && echo ', plots') written)"

#!/usr/bin/env bash
# smoke.sh - ctest kernels.run.smoke: runs `bench/run kernels --quick` on the fft kernel (its
# pthreads build at T=1,2, ufdsm at P=1,2 under sc and rc, and the pthreads build across
# P=1,2 nodes under dsmrun --pthreads, sc and rc; one launch each) into a
# temporary directory and checks that the runner wrote a JSON file per launch, the summary and
# the table. Proves the runner works end to end; never judges timing.
#
# Usage: smoke.sh PYTHON RUNNER DSMRUN KERNEL_BIN_DIR [BUILDS]
# BUILDS: bench/run kernels --builds (default pthreads,dsm,ptdsm; the sanitizer build, which
# cannot run the pthreads preload, passes pthreads,dsm).
set -euo pipefail
python=$1 runner=$2 dsmrun=$3 bindir=$4 builds=${5:-pthreads,dsm,ptdsm}
out=$(mktemp -d "${TMPDIR:-/tmp}/ufdsm-kernels-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$python" "$runner" kernels --quick --only fft --reps 1 --dsmrun "$dsmrun" --bin-dir "$bindir" \
  --out "$out" --no-plots --builds "$builds"
# pthreads t1 t2; dsm: sc and rc at p1 p2; ptdsm: pt-sc and pt-rc at p1 p2
want=2
case ,$builds, in *,dsm,*) want=$((want + 4)) ;; esac
case ,$builds, in *,ptdsm,*) want=$((want + 4)) ;; esac
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
n=$(find "$out/runs" -name '*.json' | wc -l)
[ "$n" -eq "$want" ] || fail "expected $want JSON files ($builds: pthreads t1 t2, sc/rc p1 p2, pt-sc/pt-rc p1 p2) in $out/runs, found $n"
[ -s "$out/summary.json" ] || fail "no summary.json"
grep -q '^| fft | 4096 |' "$out/results.md" || fail "results.md has no row for fft"
case ,$builds, in *,ptdsm,*)
    grep -q '^| fft (--pthreads) |' "$out/results.md" ||
        fail "results.md has no rc/sc row for fft under --pthreads" ;;
esac
"$python" -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d["results"]; assert len(r) == int(sys.argv[2]) and all(x["median"] for x in r), r' \
  "$out/summary.json" "$want" || fail "summary.json does not hold a median for each of the $want configurations"
echo "smoke: OK ($n launches; JSON, summary, table written)"

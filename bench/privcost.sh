#!/usr/bin/env bash
# bench/privcost.sh BUILD [REPS] - what unprivileged operation costs on the fault path.
#
# Runs bench_readfault (2 nodes, DSM_PREFETCH=0: one remote read fault per page) and
# bench_faultlat (per-fault latency by kind) alternately, REPS times each (default 5), as
#   priv:   root, UFFD_USER_MODE_ONLY refused and /dev/userfaultfd hidden (a seccomp filter and
#           a private mount namespace), so the plain, privileged userfaultfd is used;
#   unpriv: nobody:nogroup (setpriv), so UFFD_USER_MODE_ONLY is used;
# and prints, per metric, the median of each and the ratio unpriv / priv. Alternating in one run
# is what makes the ratio meaningful on a machine whose speed drifts. Timing only: this is a
# benchmark, never a test. Needs root, setpriv, unshare and the built tests/unpriv/uffd_block.
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD [REPS]}" && pwd)
REPS=${2:-5}
[ "$(id -u)" = 0 ] || { echo "privcost: run as root (it switches to nobody for one side)" >&2; exit 2; }
while read -r v; do unset "$v"; done < <(compgen -e | grep '^DSM_' || true)
tmp=$(mktemp -d)
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/not-a-device"
export DSM_MEMORY=256M DSM_PREFETCH=0 DSM_LOG=info

run() { # run MODE OUTFILE PROG ARGS...
    local mode=$1 out=$2
    shift 2
    if [ "$mode" = priv ]; then
        unshare --mount --propagation private bash -c '
            if [ -e /dev/userfaultfd ]; then mount --bind "$1" /dev/userfaultfd; fi
            cd "$2"; shift 2; exec "$@"' _ "$tmp/not-a-device" "$tmp" \
            "$BUILD/tests/unpriv/uffd_block" umo "$BUILD/dsmrun" -n 2 "$@"
    else
        (cd "$tmp" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
            "$BUILD/dsmrun" -n 2 "$@")
    fi >"$out" 2>&1
    local want='plain system call'
    [ "$mode" = priv ] || want='UFFD_USER_MODE_ONLY'
    grep -q "userfaultfd: opened with.*$want\|userfaultfd: opened with the $want" "$out" || {
        echo "privcost: the $mode run did not use the intended route:" >&2
        cat "$out" >&2
        exit 1
    }
}

for i in $(seq 1 "$REPS"); do
    for mode in priv unpriv; do
        run $mode "$tmp/rf.$mode.$i" "$BUILD/bench/bench_readfault"
        run $mode "$tmp/fl.$mode.$i" "$BUILD/bench/bench_faultlat" -o seq
    done
    echo "privcost: round $i/$REPS done" >&2
done

python3 - "$tmp" "$REPS" <<'PY'
import re, statistics, sys
d, reps = sys.argv[1], int(sys.argv[2])
def results(path):
    out = {}
    for line in open(path):
        if line.startswith("RESULT "):
            kv = dict(t.split("=", 1) for t in line.split()[1:] if "=" in t)
            out[kv["variant"]] = kv
    return out
rows = [("readfault home-written (us/page)", "rf", "home-written.pf0", "value"),
        ("readfault home-written p50 (us)", "rf", "home-written.pf0", "p50"),
        ("readfault re-fetch (us/page)", "rf", "re-fetch.pf0", "value"),
        ("faultlat read miss p50 (us)", "fl", "seq.read", "value"),
        ("faultlat write miss p50 (us)", "fl", "seq.write", "value"),
        ("faultlat upgrade p50 (us)", "fl", "seq.upgrade", "value"),
        ("faultlat local first touch p50 (us)", "fl", "seq.local", "value")]
print(f"| metric | privileged (plain userfaultfd) | unprivileged (UFFD_USER_MODE_ONLY) | ratio |")
print("|---|---|---|---|")
for title, prog, variant, key in rows:
    med = {}
    for mode in ("priv", "unpriv"):
        vals = [float(results(f"{d}/{prog}.{mode}.{i}").get(variant, {}).get(key, "nan"))
                for i in range(1, reps + 1)]
        vals = [v for v in vals if v == v]
        med[mode] = (statistics.median(vals), min(vals), max(vals)) if vals else None
    if not med["priv"] or not med["unpriv"]:
        continue
    p, u = med["priv"], med["unpriv"]
    print(f"| {title} | {p[0]:.2f} ({p[1]:.2f}-{p[2]:.2f}) | {u[0]:.2f} ({u[1]:.2f}-{u[2]:.2f}) "
          f"| {u[0] / p[0]:.2f} |")
PY

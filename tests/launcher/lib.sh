# lib.sh - what the launcher tests share: the dsmrun under test (first argument of every test
# script), a scratch directory that is removed - along with any node left running - when the
# script exits, bounded runs of dsmrun, and checks that name what went wrong. The second
# argument, the path of launcher_probe (a real ufdsm node), is $PROBE.
# Only bash, coreutils and the helpers in this directory are used.
set -euo pipefail
export LC_ALL=C

DSMRUN=$(realpath "${1:?usage: $0 path/to/dsmrun}")
[ -x "$DSMRUN" ] || { echo "FAIL: $DSMRUN is not executable" >&2; exit 1; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
NODE=$HERE/node.sh
# shellcheck disable=SC2034 # a real ufdsm node (probe.c), second argument of every script
PROBE=${2:-}

# The outcome must not depend on the environment the suite happens to run in.
for v in $(compgen -e); do
    case $v in DSM_* | DSMRUN_*) unset "$v" ;; esac
done

T=$(mktemp -d "${TMPDIR:-/tmp}/dsmrun-test.XXXXXX")
cleanup() {
    # A failed check must not leave sleeping nodes behind; only pids that still look like
    # ours are killed, in case one was reused.
    local f p cmd
    for f in "$T"/*/pid.* "$T"/*/child.*; do
        [ -s "$f" ] || continue
        p=$(<"$f")
        cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
        case $cmd in *node.sh* | *sleep* | *probe*) kill -9 "$p" 2>/dev/null || true ;; esac
    done
    rm -rf "$T"
}
trap cleanup EXIT

CASE=none
ERR=/dev/null
fail() {
    echo "FAIL [$CASE]: $*" >&2
    if [ -s "$ERR" ]; then
        echo "--- dsmrun's stderr:" >&2
        cat "$ERR" >&2
    fi
    exit 1
}

# begin NAME: starts a case; its files go to $D.
begin() {
    CASE=$1
    D=$T/$1
    mkdir -p "$D"
    ERR=$D/err
    echo "== $CASE"
}

now_ms() { date +%s%3N; }

# run ARGS...: runs dsmrun with ARGS (stdout to $D/out, stderr to $D/err); sets $rc and $ms.
# The 60 s bound only keeps a broken dsmrun from hanging the suite; cases check tighter ones.
run() {
    local t0
    t0=$(now_ms)
    rc=0
    timeout -k 5 60 "$DSMRUN" "$@" >"$D/out" 2>"$D/err" || rc=$?
    ms=$(($(now_ms) - t0))
    [ "$rc" != 124 ] || fail "dsmrun did not finish within 60 s"
}

# start CMD...: starts CMD (dsmrun, possibly behind env) in the background; finish waits.
start() {
    t0=$(now_ms)
    "$@" >"$D/out" 2>"$D/err" &
    bgpid=$!
}
finish() {
    local i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$bgpid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$bgpid" 2>/dev/null; then
        kill -9 "$bgpid"
        fail "dsmrun was still running 30 s later"
    fi
    rc=0
    wait "$bgpid" || rc=$?
    ms=$(($(now_ms) - t0))
}

expect_rc() { [ "$rc" = "$1" ] || fail "dsmrun exited with $rc, expected $1"; }
expect_within() { [ "$ms" -lt "$(($1 * 1000))" ] || fail "dsmrun took $ms ms, expected < $1 s"; }
# expect_err TEXT / expect_no_err TEXT: TEXT is (not) part of dsmrun's stderr.
expect_err() { [[ $(<"$D/err") == *"$1"* ]] || fail "stderr lacks: $1"; }
expect_no_err() { [[ $(<"$D/err") != *"$1"* ]] || fail "stderr should not contain: $1"; }

# wait_up N: waits until N nodes of the case have written $D/up.RANK.
wait_up() {
    local i up
    for ((i = 0; i < 200; i++)); do
        up=("$D"/up.*)
        [ -e "${up[0]}" ] && [ "${#up[@]}" -ge "$1" ] && return 0
        sleep 0.1
    done
    fail "only ${#up[@]} of $1 nodes started within 20 s"
}

# A zombie is not a leftover: it is dead, merely not yet reaped by whoever adopted it.
alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}

# expect_gone: every process the case's nodes recorded (pid.*, child.*) has exited. The
# signals have landed before dsmrun returns, so the 5 s allowed is only for scheduling.
expect_gone() {
    local f p i n=0
    for f in "$D"/pid.* "$D"/child.*; do
        [ -s "$f" ] || continue
        p=$(<"$f")
        n=$((n + 1))
        for ((i = 0; i < 50; i++)); do
            alive "$p" || break
            sleep 0.1
        done
        if alive "$p"; then fail "process $p (${f##*/}) is still running after dsmrun exited"; fi
    done
    [ "$n" -gt 0 ] || fail "the nodes recorded no pids"
}

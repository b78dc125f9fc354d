#!/usr/bin/env bash
# The options users of mpirun look for: -x, --hostfile, --tag-output, --version, and a --help
# that lists every option and every DSM_* variable the library reads, with its default.
# Remote cases go through the fake ssh, which gives the node a fresh environment.
. "$(dirname "$0")/lib.sh"

mkdir "$T/bin"
cp "$HERE/fake-ssh" "$T/bin/fake-ssh"
FAKE="sh $T/bin/fake-ssh -o BatchMode=yes"

begin x_local_and_remote
show='printf "%s|%s|%s\n" "${MY_LIB:-unset}" "${PLAIN:-unset}" "${DSM_MEMORY:-unset}" >"$1/env.$DSM_RANK"'
# local: -x VAR=VALUE sets it, -x VAR passes dsmrun's value (already inherited locally)
PLAIN=p DSM_MEMORY=256M run -n 2 -x MY_LIB=/opt/lib -x PLAIN sh -c "$show" sh "$D"
expect_rc 0
for r in 0 1; do
    [ "$(<"$D/env.$r")" = "/opt/lib|p|256M" ] || fail "local node $r saw $(<"$D/env.$r")"
done
# remote: only DSM_* and -x variables cross ssh; -x wins over a DSM_* of the same name
rm -f "$D"/env.*
PLAIN=p DSM_MEMORY=256M DSMRUN_SSH=$FAKE \
    run --hosts a,b -x MY_LIB="/opt/my lib's" -x PLAIN -x DSM_MEMORY=1G sh -c "$show" sh "$D"
expect_rc 0
for r in 0 1; do
    [ "$(<"$D/env.$r")" = "/opt/my lib's|p|1G" ] || fail "remote node $r saw $(<"$D/env.$r")"
done
# and without -x, a non-DSM variable does not reach a remote node
rm -f "$D"/env.*
PLAIN=p DSMRUN_SSH=$FAKE run --hosts a sh -c "$show" sh "$D"
[ "$(<"$D/env.0")" = "unset|unset|unset" ] || fail "remote node saw $(<"$D/env.0") without -x"

begin x_errors
run -n 1 -x 'BAD NAME=1' true
expect_rc 2
expect_err "variable name"
env -u NOT_SET_ANYWHERE "$DSMRUN" -n 1 -x NOT_SET_ANYWHERE true >"$D/out" 2>"$D/err" && rc=0 || rc=$?
expect_rc 2
expect_err "NOT_SET_ANYWHERE is not set"

begin hostfile
cat >"$D/hosts" <<'EOF'
# the cluster
hostA slots=2   # two nodes here

hostB
  hostC slots=1
EOF
show='printf "%s %s\n" "$DSM_RANK" "$DSM_COORDINATOR" >"$1/at.$DSM_RANK"'
DSMRUN_SSH=$FAKE FAKE_SSH_LOG=$D/log run --hostfile "$D/hosts" sh -c "$show" sh "$D"
expect_rc 0
[ "$(cat "$D/log" | sort | tr '\n' ' ')" = "hostA hostA hostB hostC " ] ||
    fail "ssh went to $(tr '\n' ' ' <"$D/log")"
read -r _ coord <"$D/at.3"
[[ $coord == hostA:* ]] || fail "the coordinator is $coord, expected the first host"
# -n takes the first N slots
: >"$D/log"
DSMRUN_SSH=$FAKE FAKE_SSH_LOG=$D/log run --hostfile "$D/hosts" -n 3 true
expect_rc 0
[ "$(sort "$D/log" | tr '\n' ' ')" = "hostA hostA hostB " ] || fail "-n 3 used $(tr '\n' ' ' <"$D/log")"
run --hostfile "$D/hosts" -n 5 true
expect_rc 2
expect_err "only 4 slots"
printf 'hostA slot=2\n' >"$D/bad"
run --hostfile "$D/bad" true
expect_rc 2
expect_err "$D/bad:1: 'slot=2' is not understood"
run --hostfile "$D/missing" true
expect_rc 2
expect_err "cannot be read"
run --hostfile "$D/hosts" --hosts a true
expect_rc 2
expect_err "cannot be used together"

begin tag_output
# two nodes writing many lines each, partly without a trailing newline: every line arrives
# whole, tagged with its node, on the stream it was written to
prog='for i in $(seq 200); do echo "out $DSM_RANK line $i of a longer text"; echo "err $DSM_RANK $i" >&2; done; printf "last $DSM_RANK"'
run -n 2 --tag-output sh -c "$prog"
expect_rc 0
for r in 0 1; do
    n=$(grep -c "^\[$r\] out $r line [0-9]* of a longer text$" "$D/out") || true
    [ "$n" = 200 ] || fail "$n intact stdout lines of node $r, expected 200"
    n=$(grep -c "^\[$r\] err $r [0-9]*$" "$D/err") || true
    [ "$n" = 200 ] || fail "$n intact stderr lines of node $r, expected 200"
    grep -q "^\[$r\] last $r" "$D/out" || fail "node $r's unterminated last line is missing"
done
if grep -v '^\[[01]\] ' "$D/out" | grep -q .; then fail "untagged stdout: $(grep -v '^\[' "$D/out" | head -3)"; fi
# remote nodes too
DSMRUN_SSH=$FAKE run --hosts a,b --tag-output sh -c 'echo "hello from $DSM_RANK"'
expect_rc 0
grep -qx "\[1\] hello from 1" "$D/out" || fail "remote output not tagged: $(<"$D/out")"

begin version
run --version
expect_rc 0
[ "$(<"$D/out")" = "dsmrun (ufdsm) ${UFDSM_VERSION:?ctest sets UFDSM_VERSION}" ] ||
    fail "--version printed '$(<"$D/out")', expected the project version $UFDSM_VERSION"

begin help_lists_everything
run --help
expect_rc 0
for opt in -n --hosts --hostfile --port -x --tag-output --grace --dry-run --version --help; do
    grep -qE -- "(^ *|, )$opt[ ,]" "$D/out" || fail "--help does not list $opt"
done
# every DSM_* variable read anywhere in the library or dsmrun, each with its default
src=${UFDSM_SOURCE_DIR:?ctest sets UFDSM_SOURCE_DIR}
vars=$(grep -rhoE 'getenv\("DSM_[A-Z_]+"\)|env\("DSM_[A-Z_]+"\)' "$src/dsm" "$src/transport" "$src/tools" |
    grep -oE 'DSM_[A-Z_]+' | sort -u)
[ -n "$vars" ] || fail "found no getenv(\"DSM_...\") in $src"
for v in $vars DSM_TRACE DSM_STATS DSM_PREFETCH DSM_HOLD_US DSM_SPIN_US; do
    grep -qE "^  $v +.*\(default: [^)]+\)" "$D/out" || fail "--help does not list $v with its default"
done
grep -qE "^  DSM_PREFETCH +.*\(default: 8\)" "$D/out" || fail "DSM_PREFETCH's default is not 8"

begin misspelt_dsmrun_variable
DSMRUN_GRAEC=3 run -n 1 true
expect_rc 0
expect_err "DSMRUN_GRAEC is not a dsmrun variable (did you mean DSMRUN_GRACE?)"

#!/usr/bin/env bash
# --dry-run prints one runnable line per node and runs nothing; usage errors exit 2 and say
# what is wrong; --help documents the options.
. "$(dirname "$0")/lib.sh"

begin dry_run_local
prog='echo "$DSM_RANK:$DSM_NODES:$DSM_COORDINATOR:$DSM_JOB:$DSM_MEMORY:$1"; : >"$2/ran"'
DSM_MEMORY=1G DSM_JOB=job-x run -n 2 --port 9000 --dry-run -- sh -c "$prog" sh "a 'b" "$D"
expect_rc 0
mapfile -t lines <"$D/out"
[ "${#lines[@]}" = 2 ] || fail "expected 2 lines, got: $(<"$D/out")"
[ ! -e "$D/ran" ] || fail "--dry-run ran the program"
for r in 0 1; do
    [[ ${lines[r]} == *"DSM_RANK=$r "* ]] || fail "line $r: ${lines[r]}"
    # the line is a shell command that runs the node by itself
    got=$(env -u DSM_MEMORY sh -c "${lines[r]}")
    [ "$got" = "$r:2:127.0.0.1:9000:job-x:1G:a 'b" ] || fail "line $r ran as: $got"
done

begin dry_run_hosts
DSM_STATS=1 run --hosts hA,hB --dry-run prog -x
expect_rc 0
mapfile -t lines <"$D/out"
[ "${#lines[@]}" = 2 ] || fail "expected 2 lines, got: $(<"$D/out")"
[[ ${lines[1]} == "ssh -o BatchMode=yes hB 'cd "* ]] || fail "line 1: ${lines[1]}"
for want in DSM_RANK=1 DSM_NODES=2 DSM_COORDINATOR=hA: DSM_JOB= DSM_STATS=1 " prog -x'"; do
    [[ ${lines[1]} == *"$want"* ]] || fail "line 1 lacks $want: ${lines[1]}"
done
# The coordinator port is chosen per run from 7400..8423 unless --port gives one.
[[ ${lines[1]} =~ DSM_COORDINATOR=hA:([0-9]+) ]] || fail "no port in: ${lines[1]}"
port=${BASH_REMATCH[1]}
[ "$port" -ge 7400 ] && [ "$port" -le 8423 ] || fail "port $port is outside 7400..8423"
[[ ${lines[0]} == *"DSM_COORDINATOR=hA:$port "* ]] || fail "node 0 got another port: ${lines[0]}"
DSM_STATS=1 run --hosts hA,hB --port 7400 --dry-run prog
[[ $(<"$D/out") == *"DSM_COORDINATOR=hA:7400 "* ]] || fail "--port 7400 not used: $(<"$D/out")"

begin program_options_left_alone
run -n 1 --dry-run ls -n --port 5
expect_rc 0
[[ $(<"$D/out") == *" ls -n --port 5" ]] || fail "got: $(<"$D/out")"

begin help
run --help
expect_rc 0
for want in "Usage:" "-n N" "--hosts" "--port" "--grace" "--dry-run" "same path" "ssh" \
    "DSM_RANK" "DSMRUN_SSH"; do
    [[ $(<"$D/out") == *"$want"* ]] || fail "--help does not mention $want"
done
run -h
expect_rc 0

# usage_error EXPECTED-TEXT ARGS...: dsmrun ARGS must exit 2 explaining EXPECTED-TEXT.
usage_error() {
    local want=$1
    shift
    begin "usage: $*"
    run "$@"
    expect_rc 2
    expect_err "$want"
    expect_err "dsmrun --help"
    [ ! -s "$D/out" ] || fail "a usage error printed to stdout"
}
usage_error "how many nodes" true
usage_error "how many nodes"
usage_error "no program" -n 2
usage_error "expected 1 to 64" -n 0 true
usage_error "expected 1 to 64" -n 65 true
usage_error "expected 1 to 64" -n two true
usage_error "-n needs a number" -n
usage_error "cannot be used together" -n 2 --hosts a,b true
usage_error "empty host name" --hosts a,,b true
usage_error "empty host name" --hosts a, true
usage_error "empty host name" --hosts "" true
usage_error "expected a number from 1 to 65535" -n 2 --port 0 true
usage_error "expected a number from 1 to 65535" -n 2 --port 65536 true
usage_error "expected a number from 1 to 65535" -n 2 --port http true
usage_error "needs a value" -n 2 --port
usage_error "seconds" -n 2 --grace -1 true
usage_error "seconds" -n 2 --grace soon true
usage_error "unknown option '--bogus'" -n 2 --bogus true
DSMRUN_GRACE=soon usage_error "DSMRUN_GRACE" -n 1 true

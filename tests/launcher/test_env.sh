#!/usr/bin/env bash
# Every node gets DSM_RANK, DSM_NODES, DSM_COORDINATOR and DSM_JOB, and inherits the rest of
# dsmrun's environment.
. "$(dirname "$0")/lib.sh"

show='printf "%s|%s|%s|%s|%s|%s\n" "$DSM_RANK" "$DSM_NODES" "$DSM_COORDINATOR" "$DSM_JOB" \
    "$DSM_MEMORY" "${OTHER_VAR:-}" >"$1/env.$DSM_RANK"'

begin four_nodes
# A DSM_RANK already in the environment (dsmrun run from inside another job) is replaced.
DSM_MEMORY=512M OTHER_VAR=kept DSM_RANK=99 run -n 4 sh -c "$show" sh "$D"
expect_rc 0
first_job=
for r in 0 1 2 3; do
    [ -f "$D/env.$r" ] || fail "node $r did not run"
    IFS='|' read -r rank nodes coord job mem other <"$D/env.$r"
    [ "$rank" = "$r" ] || fail "node $r saw DSM_RANK=$rank"
    [ "$nodes" = 4 ] || fail "node $r saw DSM_NODES=$nodes"
    [[ $coord =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "node $r saw DSM_COORDINATOR=$coord"
    [[ $job == dsmrun-* ]] || fail "node $r saw DSM_JOB=$job"
    [ "$mem" = 512M ] || fail "node $r saw DSM_MEMORY=$mem"
    [ "$other" = kept ] || fail "node $r lost OTHER_VAR"
    if [ "$r" = 0 ]; then
        first_coord=$coord first_job=$job
    else
        [ "$coord" = "$first_coord" ] || fail "nodes 0 and $r have different coordinators"
        [ "$job" = "$first_job" ] || fail "nodes 0 and $r have different DSM_JOB"
    fi
done
port=${first_coord#*:}
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then fail "port $port"; fi

begin job_id_unique_per_run
run -n 1 sh -c "$show" sh "$D"
IFS='|' read -r _ _ _ job _ <"$D/env.0"
[ "$job" != "$first_job" ] || fail "two runs got the same DSM_JOB $job"

begin job_id_kept
DSM_JOB=my-job run -n 2 sh -c "$show" sh "$D"
expect_rc 0
for r in 0 1; do
    IFS='|' read -r _ _ _ job _ <"$D/env.$r"
    [ "$job" = my-job ] || fail "node $r saw DSM_JOB=$job, expected the inherited my-job"
done

begin port_option
run -n 2 --port 7777 sh -c "$show" sh "$D"
expect_rc 0
IFS='|' read -r _ _ coord _ <"$D/env.1"
[ "$coord" = 127.0.0.1:7777 ] || fail "DSM_COORDINATOR=$coord with --port 7777"

begin stdin_goes_to_node_0
echo data >"$D/in"
run -n 2 sh -c 'cat >"$1/stdin.$DSM_RANK"' sh "$D" <"$D/in"
expect_rc 0
[ "$(<"$D/stdin.0")" = data ] || fail "node 0 did not get dsmrun's standard input"
[ ! -s "$D/stdin.1" ] || fail "node 1 read standard input too"

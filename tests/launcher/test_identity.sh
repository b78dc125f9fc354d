#!/usr/bin/env bash
# Where a node's rank, size, coordinator and job come from, with the real runtime (probe.c):
# processes are started here by hand with the variables srun or mpirun would give them (neither
# is installed), including the stale Slurm variables mpirun passes on inside an allocation.
# Also: per-job coordinator ports let concurrent jobs share a host, configuration messages
# name the real rank, misspelt DSM_* variables are named, hints fit the launcher.
. "$(dirname "$0")/lib.sh"
[ -x "$PROBE" ] || fail "usage: $0 DSMRUN PROBE"
for v in $(compgen -e); do
    case $v in SLURM_* | SLURMD_* | OMPI_* | PMI_* | PMIX_*) unset "$v" ;; esac
done
export DSM_MEMORY=64M DSM_CONNECT_TIMEOUT=20000

# A port on 127.0.0.1 that nobody listens on now.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The per-job port (docs/launching.md): 7400 + (KEY % 1024). For Slurm, KEY is
# job * 16 + step % 16; for Open MPI, with J = OMPI_MCA_ess_base_jobid, (J >> 16) * 16 +
# (J & 0xffff) % 16.
slurm_port() { echo $((7400 + ($1 * 16 + $2 % 16) % 1024)); }
ompi_port() { echo $((7400 + ((($1 >> 16) * 16 + ($1 & 0xffff) % 16) % 1024))); }

# launch NAME VAR=VALUE... -- starts one probe in the background with that environment (on top
# of this one), output to $D/NAME; its pid is appended to pids.
pids=()
launch() {
    local name=$1
    shift
    local envs=()
    while [ "$1" != -- ]; do
        envs+=("$1")
        shift
    done
    shift
    env "${envs[@]}" timeout -k 5 60 "$PROBE" "$@" >"$D/$name" 2>&1 &
    pids+=($!)
}
# collect: waits for every launched probe; rcs[i] is the status of pids[i].
collect() {
    rcs=()
    local p r
    for p in "${pids[@]}"; do
        r=0
        wait "$p" || r=$?
        rcs+=("$r")
    done
    pids=()
}
# expect_in FILE TEXT / expect_not_in FILE TEXT
expect_in() { grep -qF -- "$2" "$D/$1" || { ERR=$D/$1 && fail "$1 lacks: $2"; }; }
expect_not_in() { ! grep -qF -- "$2" "$D/$1" || { ERR=$D/$1 && fail "$1 should not contain: $2"; }; }

# mpirun inside a Slurm allocation: every rank inherits the batch step's SLURM_PROCID=0 and
# SLURM_NTASKS, and gets its own OMPI_COMM_WORLD_RANK. Open MPI's describe the process; the
# coordinator is on mpirun's host (127.0.0.1 here, from OMPI_MCA_orte_hnp_uri), not on the
# allocation's first node (a host that does not exist).
begin mpirun_inside_slurm
for family in 58384 1234 4321 999; do
    jobid=$((family * 65536 + 1))
    port=$(ompi_port $jobid)
    port_free "$port" && break
done
for r in 0 1; do
    launch "node.$r" DSM_LOG=info OMPI_COMM_WORLD_RANK=$r OMPI_COMM_WORLD_SIZE=2 \
        OMPI_MCA_ess_base_jobid=$jobid "OMPI_MCA_orte_hnp_uri=$((jobid - 1)).0;tcp://127.0.0.1:35000" \
        SLURM_PROCID=0 SLURM_NTASKS=4 SLURM_JOB_ID=4242 SLURM_JOB_NODELIST='nosuchnode[1-4]' \
        SLURMD_NODENAME=nosuchnode1 --
done
collect
for r in 0 1; do
    [ "${rcs[r]}" = 0 ] || { ERR=$D/node.$r && fail "rank $r exited ${rcs[r]}"; }
    expect_in "node.$r" "probe: rank $r of 2"
    expect_in "node.$r" "rank $r from OMPI_COMM_WORLD_RANK, size 2 from OMPI_COMM_WORLD_SIZE"
    expect_in "node.$r" "coordinator 127.0.0.1:$port from mpirun's host (first address in OMPI_MCA_orte_hnp_uri) (port from Open MPI job $jobid)"
    expect_in "node.$r" "job ompi-$jobid from OMPI_MCA_ess_base_jobid"
done
expect_in node.1 "SLURM_PROCID=0 is not used"
[ "$(grep -c 'started by' "$D/node.1")" = 1 ] || fail "the origin line is not printed exactly once"

# Two srun steps of one job on the same host at the same time: each gets its own port (and
# job name), so the second starts while the first is still up.
begin concurrent_slurm_steps
for job in 500 777 1300 2001; do
    p0=$(slurm_port $job 0) p1=$(slurm_port $job 1)
    port_free "$p0" && port_free "$p1" && break
done
slurm() { # STEP RANK
    echo SLURM_JOB_ID=$job SLURM_STEP_ID=$1 SLURM_PROCID=$2 SLURM_STEP_NUM_TASKS=2 \
        SLURM_NTASKS=2 SLURM_STEP_NODELIST=127.0.0.1 SLURM_JOB_NODELIST=127.0.0.1
}
mkdir "$D/hold"
# shellcheck disable=SC2046 # word splitting of slurm's output is intended
for r in 0 1; do launch "a.$r" DSM_LOG=info $(slurm 0 $r) -- hold "$D/hold"; done
first=("${pids[@]}")
for ((i = 0; i < 300; i++)); do
    [ -e "$D/hold/up.0" ] && [ -e "$D/hold/up.1" ] && break
    sleep 0.1
done
[ -e "$D/hold/up.1" ] || { ERR=$D/a.1 && fail "step 0 did not come up"; }
pids=()
# shellcheck disable=SC2046
for r in 0 1; do launch "b.$r" DSM_LOG=info $(slurm 1 $r) --; done
collect
for r in 0 1; do
    [ "${rcs[r]}" = 0 ] || { ERR=$D/b.$r && fail "step 1, rank $r exited ${rcs[r]} while step 0 ran"; }
    expect_in "b.$r" "probe: rank $r of 2"
    expect_in "b.$r" "coordinator 127.0.0.1:$p1 from the first host of the Slurm step (port from Slurm job $job step 1)"
    expect_in "b.$r" "job slurm-$job.1 from SLURM_JOB_ID and SLURM_STEP_ID"
done
: >"$D/hold/go"
pids=("${first[@]}")
collect
for r in 0 1; do
    [ "${rcs[r]}" = 0 ] || { ERR=$D/a.$r && fail "step 0, rank $r exited ${rcs[r]}"; }
    expect_in "a.$r" "coordinator 127.0.0.1:$p0 from the first host"
done

# Slurm placed task 0 somewhere else than the step's first node: said at once, by node 0.
begin slurm_rank0_elsewhere
launch n0 SLURM_JOB_ID=9 SLURM_STEP_ID=0 SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=2 \
    'SLURM_STEP_NODELIST=cn[07-08]' SLURMD_NODENAME=cn08 --
collect
[ "${rcs[0]}" = 11 ] || { ERR=$D/n0 && fail "expected DSM_EINVAL (exit 11), got ${rcs[0]}"; }
expect_in n0 "ufdsm[node 0] error: node 0 runs on cn08, but the coordinator is expected on cn07"
expect_in n0 "DSM_COORDINATOR"

# Hints fit the launcher: no "dsmrun" advice to a process srun started.
begin hints_fit_the_launcher
launch bad SLURM_JOB_ID=9 SLURM_STEP_ID=0 SLURM_PROCID=3 SLURM_STEP_NUM_TASKS=2 \
    SLURM_STEP_NODELIST=127.0.0.1 --
collect
[ "${rcs[0]}" = 11 ] || { ERR=$D/bad && fail "expected DSM_EINVAL (exit 11), got ${rcs[0]}"; }
expect_in bad "rank 3 (from SLURM_PROCID) is not below the number of nodes, 2 (from SLURM_STEP_NUM_TASKS)"
expect_in bad "srun -n N"
expect_not_in bad "dsmrun"
launch ompi OMPI_COMM_WORLD_RANK=2 OMPI_COMM_WORLD_SIZE=2 --
collect
expect_in ompi "mpirun -n N"
expect_not_in ompi "dsmrun"

# Configuration errors carry the rank that has them, or say that it is not known yet.
begin error_labels
launch early DSM_LOG=bogus DSM_RANK=1 DSM_NODES=2 --
launch late DSM_RANK=1 DSM_NODES=2 DSM_MEMORY=lots --
collect
[ "${rcs[0]}" = 11 ] && [ "${rcs[1]}" = 11 ] || fail "expected DSM_EINVAL twice, got ${rcs[*]}"
expect_in early "ufdsm[before rank is known] error: DSM_LOG='bogus'"
expect_in late "ufdsm[node 1] error: DSM_MEMORY='lots'"
expect_not_in late "node 0"

begin misspelt_variables
launch typo DSM_MEMROY=1G DSM_PREFECTH=0 DSM_ZZZZZZZZZZZZ=1 --
collect
[ "${rcs[0]}" = 0 ] || { ERR=$D/typo && fail "a misspelt variable made dsm_init fail (${rcs[0]})"; }
expect_in typo "ufdsm[node 0] warning: DSM_MEMROY is not a ufdsm variable (did you mean DSM_MEMORY?)"
expect_in typo "DSM_PREFECTH is not a ufdsm variable (did you mean DSM_PREFETCH?)"
expect_in typo "DSM_ZZZZZZZZZZZZ is not a ufdsm variable; it is ignored ('dsmrun --help'"
launch known DSM_PREFETCH=0 DSM_TRACE= DSM_STATS=0 DSM_HOLD_US=20 DSM_SPIN_US=10 --
collect
expect_not_in known "not a ufdsm variable"

# Two processes claiming one rank: the coordinator says so (transport/bootstrap.c).
begin duplicate_rank
p=0
for p in $(shuf -i 20000-30000 -n 20); do port_free "$p" && break; done
for r in 0 1 1; do
    launch "dup.$r.${#pids[@]}" DSM_RANK=$r DSM_NODES=3 DSM_COORDINATOR=127.0.0.1:$p DSM_JOB=dup --
done
collect
[ "${rcs[0]}" != 0 ] || fail "node 0 accepted two nodes 1"
cat "$D"/dup.* >"$D/all"
expect_in all "node 1 joined twice"

# Under dsmrun the origin line says so.
begin under_dsmrun
DSM_LOG=info run -n 2 "$PROBE"
expect_rc 0
grep -q "ufdsm\[node 1\] info: started by dsmrun: rank 1 from DSM_RANK, size 2 from DSM_NODES, coordinator 127.0.0.1:[0-9]* from DSM_COORDINATOR (set by dsmrun)" "$D/err" ||
    fail "no origin line for dsmrun's node 1"

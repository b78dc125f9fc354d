#!/usr/bin/env bash
# launchers.sh PRELOAD PROG - an unmodified pthreads program under a launcher other than
# dsmrun (docs/pthreads.md, launching): each node is started as Open MPI's mpirun or Slurm's
# srun would start it, with LD_PRELOAD=libufdsm_pthreads.so and DSM_PTHREADS naming the
# program. Each node runs under `timeout`, which inherits the preload as a wrapper would: it
# must stay a plain process (DSM_PTHREADS names the program, not it), or it would become the
# node itself and crash at its fork. Without DSM_PTHREADS the preload must refuse, naming it.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PRELOAD PROG" >&2; exit 2; }
PRELOAD=$1 PROG=$2
name=$(basename "$PROG")
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(DSM_|SLURM_|OMPI_)' || true)
export DSM_MEMORY=4G DSM_CONNECT_TIMEOUT=20000 DSM_SECRET=launchers-test-secret-$$-0123456789

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

fail() { # case-name message
    echo "launchers: FAILED: $1: $2" >&2
    for f in "$tmp/$1".*; do echo "  $f:"; sed 's/^/  | /' "$f"; done >&2
    exit 1
}

check() { # case-name
    for r in 0 1; do
        wait "${pids[$r]}" || fail "$1" "node $r exited with status $?"
    done
    grep -q "^basic: .* in 2 process(es).*: ok" "$tmp/$1.0" ||
        fail "$1" "node 0 did not report the program's own check passing in 2 processes"
    echo "launchers: $1: the program ran across 2 nodes and checked itself"
}

# Open MPI: rank and size from OMPI_COMM_WORLD_*, the coordinator given explicitly.
port=$(free_port)
pids=()
for r in 0 1; do
    env OMPI_COMM_WORLD_RANK=$r OMPI_COMM_WORLD_SIZE=2 DSM_COORDINATOR=127.0.0.1:$port \
        DSM_JOB=ompi-$$ LD_PRELOAD="$PRELOAD" DSM_PTHREADS="$name" \
        timeout 60 "$PROG" --min-procs 2 >"$tmp/ompi.$r" 2>&1 &
    pids+=($!)
done
check ompi

# Slurm: rank and size from SLURM_*, the coordinator from the node list (port 7400).
if python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",7400))' 2>/dev/null; then
    pids=()
    for r in 0 1; do
        env SLURM_PROCID=$r SLURM_NTASKS=2 SLURM_JOB_NODELIST=127.0.0.1 SLURM_JOB_ID=$$ \
            LD_PRELOAD="$PRELOAD" DSM_PTHREADS="$PROG" \
            timeout 60 "$PROG" --min-procs 2 >"$tmp/slurm.$r" 2>&1 &
        pids+=($!)
    done
    check slurm
else
    echo "launchers: slurm case skipped: port 7400 is in use on this machine"
fi

# No DSM_PTHREADS: the preload stops at once and says what to set.
if env OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=1 LD_PRELOAD="$PRELOAD" \
    "$PROG" >"$tmp/unset.0" 2>&1; then
    fail unset "the program ran with the preload but no DSM_PTHREADS"
fi
grep -q "DSM_PTHREADS is not set" "$tmp/unset.0" || fail unset "the message does not name DSM_PTHREADS"
echo "launchers: unset: refused, naming DSM_PTHREADS"
echo "launchers: passed"

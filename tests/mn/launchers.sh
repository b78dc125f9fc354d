#!/usr/bin/env bash
# launchers.sh DSMRUN WHOAMI - dsm_init(NULL) takes rank and size from Slurm (SLURM_PROCID,
# SLURM_NTASKS, coordinator on the first host of SLURM_JOB_NODELIST) and from Open MPI's
# mpirun (OMPI_COMM_WORLD_RANK/SIZE with DSM_COORDINATOR), without any DSM_RANK/DSM_NODES.
# Each case starts two processes by hand, as those launchers would, and expects each to
# report its own rank of 2 and both to pass a barrier.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DSMRUN WHOAMI" >&2; exit 2; }
PROG=$2
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(DSM_|SLURM_|OMPI_)' || true)
export DSM_MEMORY=64M DSM_CONNECT_TIMEOUT=20000

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

check() { # case-name
    for r in 0 1; do
        if ! wait "${pids[$r]}"; then
            echo "launchers: FAILED: $1: rank $r exited non-zero" >&2
            sed 's/^/  | /' "$tmp/$1.$r" >&2
            exit 1
        fi
        grep -q "whoami: rank $r of 2" "$tmp/$1.$r" || {
            echo "launchers: FAILED: $1: rank $r did not report 'rank $r of 2'" >&2
            sed 's/^/  | /' "$tmp/$1.$r" >&2
            exit 1
        }
    done
    echo "launchers: $1: both ranks found themselves and passed a barrier"
}

# Open MPI: rank and size from OMPI_COMM_WORLD_*, the coordinator given explicitly.
port=$(free_port)
pids=()
for r in 0 1; do
    OMPI_COMM_WORLD_RANK=$r OMPI_COMM_WORLD_SIZE=2 DSM_COORDINATOR=127.0.0.1:$port \
        DSM_JOB=ompi-$$ timeout 60 "$PROG" >"$tmp/ompi.$r" 2>&1 &
    pids+=($!)
done
check ompi

# Slurm: rank and size from SLURM_*, the coordinator found from the node list (port 7400)
# and the job id shared through SLURM_JOB_ID.
if python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",7400))' 2>/dev/null; then
    pids=()
    for r in 0 1; do
        SLURM_PROCID=$r SLURM_NTASKS=2 SLURM_JOB_NODELIST=127.0.0.1 SLURM_JOB_ID=$$ \
            timeout 60 "$PROG" >"$tmp/slurm.$r" 2>&1 &
        pids+=($!)
    done
    check slurm
else
    echo "launchers: slurm case skipped: port 7400 is in use on this machine"
fi
echo "launchers: passed"

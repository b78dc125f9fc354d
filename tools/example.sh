#!/usr/bin/env bash
# Builds ufdsm and runs the main example (Jacobi, rows homed on their nodes) on 2 local nodes.
# It prints the result and whether it is identical to the serial computation.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
# RelWithDebInfo (-O2 -g): the configuration CI builds and tests with -Werror.
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec build/dsmrun -n 2 build/jacobi "$@"

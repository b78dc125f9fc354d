#!/bin/sh
# node.sh - a stand-in for a ufdsm node in the launcher tests, so that they exercise dsmrun's
# failure handling without the DSM runtime. Usage: node.sh DIR MODE [ARGS]
#
# A node records its pid in DIR/pid.RANK and, if it sleeps, its sleeping child's pid in
# DIR/child.RANK (the test checks afterwards that all of them are gone), then marks itself up
# with DIR/up.RANK. Modes:
#   sleep             sleep "forever" (1000 s) and wait for it
#   stubborn          the same, but ignoring SIGTERM, the child too: only SIGKILL stops it
#   fail R kill9|CODE rank R waits until the other nodes are up, then kills itself with
#                     SIGKILL or exits CODE; the others sleep
#   follow R CODE     rank R exits CODE; the others notice (DIR/failed) and exit 3 by
#                     themselves, the way the DSM runtime reacts to a lost peer
#   until-go          exit 0 once DIR/go exists
set -eu
dir=$1
mode=$2
rank=${DSM_RANK:?DSM_RANK is not set}
echo $$ >"$dir/pid.$rank"

sleep_forever() {
    sleep 1000 &
    echo $! >"$dir/child.$rank"
    : >"$dir/up.$rank"
    wait
}

# wait_for COUNT NAME: up to 20 s for COUNT files $dir/NAME*.
wait_for() {
    i=0
    while [ $i -lt 200 ]; do
        n=0
        for f in "$dir/$2"*; do
            if [ -e "$f" ]; then n=$((n + 1)); fi
        done
        [ $n -ge "$1" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
}

case $mode in
sleep) sleep_forever ;;
stubborn)
    trap '' TERM
    sleep_forever
    ;;
fail)
    [ "$rank" = "$3" ] || sleep_forever
    : >"$dir/up.$rank"
    wait_for "$DSM_NODES" up.
    if [ "$4" = kill9 ]; then kill -9 $$; fi
    exit "$4"
    ;;
follow)
    : >"$dir/up.$rank"
    if [ "$rank" = "$3" ]; then
        : >"$dir/failed"
        exit "$4"
    fi
    wait_for 1 failed
    exit 3
    ;;
until-go)
    : >"$dir/up.$rank"
    wait_for 1 go
    exit 0
    ;;
*)
    echo "node.sh: unknown mode $mode" >&2
    exit 99
    ;;
esac

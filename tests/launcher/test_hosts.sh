#!/usr/bin/env bash
# --hosts through a fake ssh that runs the command here, in a fresh environment and another
# directory: the command line dsmrun builds must carry the rank, the coordinator, the job, the
# DSM_* variables, the working directory and the arguments, quoted to survive a shell.
. "$(dirname "$0")/lib.sh"

# The ssh command is split on spaces, so the fake ssh must live at a path without any.
mkdir "$T/bin"
cp "$HERE/fake-ssh" "$T/bin/fake-ssh"
export DSMRUN_SSH="sh $T/bin/fake-ssh -o BatchMode=yes"

show='printf "%s\n" "$DSM_RANK" "$DSM_NODES" "$DSM_COORDINATOR" "$DSM_JOB" "$DSM_MEMORY" \
    "$DSM_LOG" "$(pwd -P)" "$1" >"$2/out.$DSM_RANK"'
weird="it's \"quoted\" \$HOME \`x\` *"

begin three_hosts
work="$D/work dir's"
mkdir "$work"
cd "$work"
FAKE_SSH_LOG=$D/hosts DSM_MEMORY=1G DSM_LOG='a b$c' \
    run --hosts hostA,hostB,user@hostC --port 7555 sh -c "$show" sh "$weird" "$D"
cd /
expect_rc 0
for r in 0 1 2; do
    [ -f "$D/out.$r" ] || fail "node $r did not run"
    mapfile -t v <"$D/out.$r"
    [ "${v[0]}" = "$r" ] || fail "node $r saw DSM_RANK=${v[0]}"
    [ "${v[1]}" = 3 ] || fail "node $r saw DSM_NODES=${v[1]}"
    [ "${v[2]}" = hostA:7555 ] || fail "node $r saw DSM_COORDINATOR=${v[2]}"
    [[ ${v[3]} == dsmrun-* ]] || fail "node $r saw DSM_JOB=${v[3]}"
    [ "$r" = 0 ] || [ "${v[3]}" = "$job0" ] || fail "nodes 0 and $r have different DSM_JOB"
    job0=${v[3]}
    [ "${v[4]}" = 1G ] || fail "node $r saw DSM_MEMORY=${v[4]}"
    [ "${v[5]}" = 'a b$c' ] || fail "node $r saw DSM_LOG=${v[5]}"
    [ "${v[6]}" = "$(realpath "$work")" ] || fail "node $r ran in ${v[6]}, not in $work"
    [ "${v[7]}" = "$weird" ] || fail "node $r got the argument ${v[7]}"
done
[ "$(sort "$D/hosts" | tr '\n' ' ')" = "hostA hostB user@hostC " ] ||
    fail "ssh was called for $(tr '\n' ' ' <"$D/hosts")"

# A directory reached through a symbolic link is named by that path (more likely to be the same
# on every host than what it resolves to here).
begin cwd_through_symlink
mkdir "$D/real"
ln -s real "$D/link"
cd "$D/link"
run --hosts hostA --dry-run prog
cd /
expect_rc 0
[[ $(<"$D/out") == *"'cd $D/link && exec env "* ]] || fail "the node does not start in $D/link: $(<"$D/out")"

# Without --port, each run picks its coordinator port in 7400..8423 (per job, so that two
# jobs whose first host is the same do not collide), and all nodes get the same one.
begin default_port
run --hosts hostA,hostB sh -c "$show" sh x "$D"
expect_rc 0
mapfile -t v0 <"$D/out.0"
mapfile -t v <"$D/out.1"
[[ ${v[2]} =~ ^hostA:([0-9]+)$ ]] || fail "DSM_COORDINATOR=${v[2]}, expected hostA:PORT"
port=${BASH_REMATCH[1]}
[ "$port" -ge 7400 ] && [ "$port" -le 8423 ] || fail "port $port is outside 7400..8423"
[ "${v0[2]}" = "${v[2]}" ] || fail "nodes 0 and 1 got ${v0[2]} and ${v[2]}"

begin worst_status
run --hosts a,b,c sh -c 'exit $((DSM_RANK * 2))'
expect_rc 4
expect_err "node 2 (c) exited with status 4"

begin node_fails
run --hosts a,b,c --grace 1 sh "$NODE" "$D" fail 1 6
[ "$rc" -ge 6 ] || fail "dsmrun exited with $rc"
expect_within 15
expect_err "node 1 (b, pid"
expect_err "exited with status 6"
expect_gone

begin ssh_fails
run --hosts hostA,down true
expect_rc 255
expect_err "node 1 (down) exited with status 255 (ssh"

begin no_ssh
DSMRUN_SSH=/nonexistent/ssh run --hosts a true
expect_rc 127
expect_err "cannot run '/nonexistent/ssh'"

#!/usr/bin/env bash
# dsmrun --hosts through a real sshd on 127.0.0.1 (started here on a free port, with its own
# host key and an authorized key made for the test, stopped at the end), with real ufdsm nodes
# (probe.c). Under sshd the nodes are not dsmrun's descendants: only the remote wrapper can
# stop them. Checked:
#   - two jobs on the same hosts at the same time (each its own coordinator port); SIGINT to
#     one leaves no process of it behind while the other completes;
#   - dsmrun killed with SIGKILL leaves no remote node behind;
#   - a remote node killed by a signal is reported as killed by that signal;
#   - -x passes a variable to remote nodes.
# Skipped (77) when openssh-server is not installed (tools/deps.sh installs it).
. "$(dirname "$0")/lib.sh"
[ -x "$PROBE" ] || fail "usage: $0 DSMRUN PROBE"
SSHD=/usr/sbin/sshd
if [ ! -x "$SSHD" ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
    echo "SKIP: openssh-server and openssh-client are needed (tools/deps.sh installs them)"
    exit 77
fi
# sshd insists on its privilege separation directory, even for a test instance.
if [ ! -d /run/sshd ]; then
    mkdir -p -m 0755 /run/sshd 2>/dev/null || { echo "SKIP: /run/sshd missing and not creatable"; exit 77; }
fi
export DSM_MEMORY=64M DSM_CONNECT_TIMEOUT=20000

S=$T/ssh
mkdir -m 700 "$S"
ssh-keygen -q -t ed25519 -N '' -f "$S/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$S/id"
cp "$S/id.pub" "$S/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$S/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $S/hostkey
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers $(id -un)
EOF
"$SSHD" -D -e -f "$S/sshd_config" 2>"$S/log" &
sshd_pid=$!
stop_sshd() {
    # a failed case may leave remote nodes behind: every process naming this test's own
    # scratch directory is one of ours
    local p
    for p in $(pgrep -f -- "$T/" || true); do kill -9 "$p" 2>/dev/null || true; done
    kill "$sshd_pid" 2>/dev/null || true
    wait "$sshd_pid" 2>/dev/null || true
    cleanup
}
trap stop_sshd EXIT
export DSMRUN_SSH="ssh -F /dev/null -i $S/id -p $port -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
ok=
for ((i = 0; i < 100; i++)); do
    # shellcheck disable=SC2086 # DSMRUN_SSH is a command line
    if $DSMRUN_SSH 127.0.0.1 true 2>"$S/client"; then
        ok=1
        break
    fi
    kill -0 "$sshd_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$ok" ] || fail "the test sshd does not let us in: $(cat "$S/client" "$S/log")"
H=127.0.0.1,127.0.0.1

# leftovers DIR: pids of processes (wrappers, nodes) whose command line names DIR, once none
# has been seen for up to 10 s (pgrep matches a pattern; the test directories hold no
# characters special to it but '.', which matches itself too).
leftovers() {
    local i found
    for ((i = 0; i < 100; i++)); do
        found=$(pgrep -f -- "$1" | tr '\n' ' ') || true
        [ -z "$found" ] && return 0
        sleep 0.1
    done
    echo "$found"
}

begin two_jobs_and_sigint
mkdir "$D/a" "$D/b"
env --default-signal=INT "$DSMRUN" --hosts $H "$PROBE" hold "$D/a" >"$D/a.out" 2>"$D/a.err" &
job_a=$!
for ((i = 0; i < 300; i++)); do
    [ -e "$D/a/up.0" ] && [ -e "$D/a/up.1" ] && break
    sleep 0.1
done
ERR=$D/a.err
[ -e "$D/a/up.1" ] || fail "job A did not come up"
# job B on the same hosts while A holds its coordinator port
rc=0
timeout -k 5 60 "$DSMRUN" --hosts $H "$PROBE" >"$D/b.out" 2>"$D/b.err" || rc=$?
ERR=$D/b.err
[ "$rc" = 0 ] || fail "job B exited $rc while job A was running"
grep -q "probe: rank 1 done" "$D/b.out" || fail "job B's node 1 did not finish"
ERR=$D/a.err
kill -0 "$job_a" 2>/dev/null || fail "job A ended before it was interrupted"
kill -INT "$job_a"
rc=0
wait "$job_a" || rc=$?
[ "$rc" != 0 ] || fail "interrupted job A exited 0"
left=$(leftovers "$D/a")
[ -z "$left" ] || fail "processes of job A still run: $left"

begin dsmrun_killed
mkdir "$D/h"
"$DSMRUN" --hosts $H "$PROBE" hold "$D/h" >"$D/out" 2>"$D/err" &
job=$!
for ((i = 0; i < 300; i++)); do
    [ -e "$D/h/up.0" ] && [ -e "$D/h/up.1" ] && break
    sleep 0.1
done
[ -e "$D/h/up.1" ] || fail "the job did not come up"
kill -KILL "$job"
wait "$job" 2>/dev/null || true
left=$(leftovers "$D/h")
[ -z "$left" ] || fail "processes of the killed dsmrun's job still run: $left"

begin remote_node_killed
run --hosts $H --grace 5 "$PROBE" die 1 9
[ "$rc" != 0 ] || fail "a job whose node was killed exited 0"
expect_err "node 1 on host 127.0.0.1 was killed by signal 9 (SIGKILL)"
expect_no_err "ssh's own failure"

begin x_over_ssh
run --hosts 127.0.0.1 -x LD_LIBRARY_PATH=/opt/x -x "NOTE=a b" sh -c 'echo "$LD_LIBRARY_PATH|$NOTE"'
expect_rc 0
[ "$(<"$D/out")" = "/opt/x|a b" ] || fail "the remote node saw: $(<"$D/out")"

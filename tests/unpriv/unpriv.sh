#!/usr/bin/env bash
# unpriv.sh DSMRUN UFFD_BLOCK INIT_ERROR [sc:|both:]MN_PROGRAM... - ufdsm works for an ordinary user on a
# machine where unprivileged userfaultfd is switched off (vm.unprivileged_userfaultfd=0, the
# Debian default), by each route dsm/region.c knows, and says how to allow one when all are
# closed.
#
#   (a) as nobody:nogroup (setpriv, no supplementary groups), every MN_PROGRAM on 2 nodes with
#       DSM_PROTOCOL=sc, and those marked both: with rc too (the others rely on atomics or
#       flags in default memory, which RC does not make atomic; rc_memory allocates RC memory
#       itself): exit 0, and DSM_LOG=info names UFFD_USER_MODE_ONLY;
#   (b) as nobody, with UFFD_USER_MODE_ONLY refused (uffd_block umo: as on Linux < 5.11) and
#       /dev/userfaultfd group-accessible to nogroup in a private mount namespace: a program
#       runs through /dev/userfaultfd (skipped when the kernel has no /dev/userfaultfd);
#   (c) as root with UFFD_USER_MODE_ONLY refused and /dev/userfaultfd hidden: the plain
#       system call is used;
#   (d) as nobody with UFFD_USER_MODE_ONLY refused, /dev/userfaultfd root-only and the sysctl
#       0: dsm_init fails with DSM_EPERM, and the message names all three ways to allow it
#       (/dev/userfaultfd, root or CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1);
#   (e) as nobody with every userfaultfd call refused (uffd_block all, as in a container):
#       the same message.
# The sysctl must be 0: with 1, a library that only knew the plain system call would pass (a),
# so the test skips (exit 77) and says so. A library that needs root fails (a); one that
# does not try /dev/userfaultfd fails (b); a bare "not permitted" fails (d) and (e).
set -euo pipefail

if [ $# -lt 4 ]; then
    echo "usage: $0 DSMRUN UFFD_BLOCK INIT_ERROR [sc:|both:]MN_PROGRAM..." >&2
    exit 2
fi
DSMRUN=$1
BLOCK=$2
INIT_ERROR=$3
shift 3
PROGS=()
RC_PROGS=()
for a in "$@"; do
    case $a in
    sc:*) PROGS+=("${a#sc:}") ;;
    both:*)
        PROGS+=("${a#both:}")
        RC_PROGS+=("${a#both:}")
        ;;
    *)
        echo "unpriv: $a: prefix each program with sc: or both: (the protocols to run it with)" >&2
        exit 2
        ;;
    esac
done

skip() {
    echo "unpriv: SKIPPED: $*" >&2
    exit 77
}
if [ "$(id -u)" -ne 0 ]; then
    skip "needs root to switch to an unprivileged user (setpriv); run ctest -L unpriv as root"
fi
command -v setpriv >/dev/null || skip "setpriv (util-linux) is missing: apt-get install util-linux"
sysctl=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null || echo missing)
if [ "$sysctl" != 0 ]; then
    skip "vm.unprivileged_userfaultfd is '$sysctl', not 0: an unprivileged run would succeed" \
        "even if ufdsm needed the sysctl, so it proves nothing; 'sysctl" \
        "vm.unprivileged_userfaultfd=0' to run this test"
fi

# Nothing inherited from the caller's environment may change the cases.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^DSM_' || true)
export DSM_MEMORY=256M

tmp=$(mktemp -d)
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log
fail() {
    echo "unpriv: FAILED: $*" >&2
    sed 's/^/  | /' "$log" >&2 || true
    exit 1
}

NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all)
for f in "$DSMRUN" "$BLOCK" "$INIT_ERROR" "${PROGS[@]}"; do
    "${NOBODY[@]}" test -x "$f" ||
        fail "$f cannot be run by nobody: make the build directory and its parents world-" \
            "readable (chmod o+rx)"
done
# The switch really drops root (else case (a) would prove nothing).
[ "$("${NOBODY[@]}" id -u)" != 0 ] || fail "setpriv did not drop root"

# (a) the multi-node programs as nobody, both protocols.
for proto in sc rc; do
    if [ $proto = sc ]; then list=("${PROGS[@]}"); else list=("${RC_PROGS[@]}"); fi
    for prog in "${list[@]}"; do
        name=$(basename "$prog")
        if ! (cd "$tmp" && "${NOBODY[@]}" env DSM_PROTOCOL=$proto DSM_LOG=info \
            timeout 120 "$DSMRUN" -n 2 "$prog") >"$log" 2>&1; then
            fail "(a) $name with DSM_PROTOCOL=$proto as nobody"
        fi
        grep -q 'userfaultfd: opened with UFFD_USER_MODE_ONLY' "$log" ||
            fail "(a) $name ($proto) did not log the UFFD_USER_MODE_ONLY route at DSM_LOG=info"
        echo "unpriv: (a) $name DSM_PROTOCOL=$proto as nobody: ok"
    done
done

# (b) /dev/userfaultfd, group-accessible, in a private mount namespace (the real node is
# untouched: a copy of it on a private tmpfs is bound over it for this process tree only).
mountns=1
unshare --mount --propagation private true 2>/dev/null || mountns=0
if [ $mountns = 0 ]; then
    echo "unpriv: (b) skipped: cannot make a private mount namespace here (unshare --mount)"
elif [ -c /dev/userfaultfd ]; then
    majmin=$(stat -c '%t %T' /dev/userfaultfd)
    set -- $majmin
    mkdir "$tmp/dev"
    if ! unshare --mount --propagation private bash -c '
        set -e
        mount -t tmpfs -o mode=755 none "$1"
        mknod "$1/uffd" c $((0x$2)) $((0x$3))
        chgrp nogroup "$1/uffd"
        chmod 660 "$1/uffd"
        mount --bind "$1/uffd" /dev/userfaultfd
        cd "$4"
        exec setpriv --reuid=nobody --regid=nogroup --init-groups --inh-caps=-all \
            env DSM_LOG=info DSM_NODES=1 "$5" umo "$6"
    ' _ "$tmp/dev" "$1" "$2" "$tmp" "$BLOCK" "$INIT_ERROR" >"$log" 2>&1; then
        fail "(b) a node as nobody through a group-accessible /dev/userfaultfd"
    fi
    grep -q 'userfaultfd: opened through /dev/userfaultfd' "$log" ||
        fail "(b) the /dev/userfaultfd route was not the one logged"
    echo "unpriv: (b) /dev/userfaultfd route as nobody: ok"
else
    echo "unpriv: (b) skipped: this kernel has no /dev/userfaultfd (Linux 6.1+)"
fi

# (c) root without UFFD_USER_MODE_ONLY and without /dev/userfaultfd (an empty file bound over
# it in a private mount namespace: root could open the real one): the plain system call.
if [ $mountns = 1 ]; then
    : >"$tmp/not-a-device"
    unshare --mount --propagation private bash -c '
        set -e
        if [ -e /dev/userfaultfd ]; then mount --bind "$1" /dev/userfaultfd; fi
        cd "$2"
        DSM_LOG=info DSM_NODES=1 exec "$3" umo "$4"
    ' _ "$tmp/not-a-device" "$tmp" "$BLOCK" "$INIT_ERROR" >"$log" 2>&1 ||
        fail "(c) root with UFFD_USER_MODE_ONLY refused and no /dev/userfaultfd"
    grep -q 'userfaultfd: opened with the plain system call' "$log" ||
        fail "(c) the plain system call route was not the one logged"
    echo "unpriv: (c) plain system call as root: ok"
else
    echo "unpriv: (c) skipped: root can open /dev/userfaultfd, and hiding it needs a private mount namespace"
fi

# (d), (e) every route closed: DSM_EPERM (exit 12) and a message naming the three ways.
[ "$(stat -c %a /dev/userfaultfd 2>/dev/null || echo 600)" = 600 ] ||
    skip "/dev/userfaultfd is not root-only here ($(stat -c %a /dev/userfaultfd)): case (d)" \
        "cannot close that route"
for mode in umo all; do
    rc=0
    (cd "$tmp" && "${NOBODY[@]}" env DSM_NODES=1 "$BLOCK" $mode "$INIT_ERROR") >"$log" 2>&1 ||
        rc=$?
    [ $rc = 12 ] || fail "($mode) every route closed: exit $rc, expected 12 (DSM_EPERM)"
    for want in /dev/userfaultfd CAP_SYS_PTRACE 'vm.unprivileged_userfaultfd=1' \
        UFFD_USER_MODE_ONLY; do
        grep -qF -- "$want" "$log" || fail "($mode) the error does not name $want"
    done
    echo "unpriv: ($mode) every route closed: the error names all three ways: ok"
done
echo "unpriv: PASSED"

#!/usr/bin/env bash
# build-guest.sh OUTDIR SOURCES... - builds the soft-RoCE guest into OUTDIR: vmlinuz (Debian
# bookworm's linux-image-amd64, which has rdma_rxe as a module), initrd.img (busybox-static
# plus the virtio/ext4 modules, see initramfs-init) and root.img (ext4, made by mmdebstrap and
# mkfs.ext4 -d without loop mounts). SOURCES are the host's apt sources files, handed to
# mmdebstrap as its mirrors so that no mirror name is written here. Called by `rxe-cluster
# build` (which installs the host packages this needs and caches the result); run as root.
# Everything that decides the image's contents is in this file or in files it copies in, and
# rxe-cluster hashes them into the cache key.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 OUTDIR SOURCES..." >&2; exit 2; }
out=$1
shift

# What the guest needs to bring up rxe and to run the project's binaries and tests as built on
# the host (host and guest are both bookworm with rdma-core 44): rdma tools and perftest; the
# runtime libraries (liburing2, libcmocka0, librdmacm1/libibverbs1 via rdma-core's tools,
# libasan8/libubsan1 for the sanitizer build); ctest (cmake) and what tests/ scripts call
# (bash, coreutils, grep, sed: essential; python3 for free ports; procps for ps/kill).
GUEST_PACKAGES=(
    mount kmod iproute2 procps iputils-ping
    rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest
    liburing2 libcmocka0 libibverbs1 librdmacm1 libsodium23 libasan8 libubsan1
    cmake python3
)

log() { echo "build-guest: $*" >&2; }
die() {
    echo "build-guest: error: $*" >&2
    exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/rxe-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

log "mmdebstrap: bookworm, variant essential, ${#GUEST_PACKAGES[@]} packages"
# Docs, man pages and translations are a third of an essential system and no test reads them.
include=$(IFS=,; echo "${GUEST_PACKAGES[*]}")
if ! mmdebstrap --variant=essential --include="$include" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$root" "$@" >"$work/mmdebstrap.log" 2>&1; then
    tail -n 40 "$work/mmdebstrap.log" >&2
    die "mmdebstrap failed (its last lines are above). Check that the sources files ($*) name a
reachable bookworm mirror and that 'apt-get update' works on this host."
fi

log "kernel: apt-get download"
mkdir -p "$work/dl"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || die "apt-cache cannot resolve linux-image-amd64 to a kernel package: run 'apt-get update'"
# apt-get download writes into the current directory; _apt must be able to write there.
chown _apt "$work/dl" 2>/dev/null || true
(cd "$work/dl" && apt-get download -q "$kpkg" busybox-static >"$work/download.log" 2>&1) || {
    cat "$work/download.log" >&2
    die "apt-get download $kpkg busybox-static failed (output above)"
}
dpkg-deb -x "$work"/dl/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/dl/busybox-static_*.deb "$work/busybox"
kver=$(basename "$(ls -d "$work"/kernel/lib/modules/*)")
log "kernel $kver"

# Only the module trees a virtio guest with rxe, 9p and ext4 can use: the whole set is 5x
# larger (GPU, wireless, sound, hardware NICs) and would only slow the build and the cache.
kmods=$work/kernel/lib/modules/$kver
mkdir -p "$root/lib/modules/$kver/kernel/drivers"
cp -a "$kmods"/modules.builtin* "$kmods"/modules.order "$root/lib/modules/$kver/"
for d in arch crypto fs lib net; do
    cp -a "$kmods/kernel/$d" "$root/lib/modules/$kver/kernel/"
done
for d in virtio block net/virtio_net.ko net/net_failover.ko infiniband/core infiniband/sw/rxe char/hw_random; do
    mkdir -p "$root/lib/modules/$kver/kernel/drivers/$(dirname "$d")"
    cp -a "$kmods/kernel/drivers/$d" "$root/lib/modules/$kver/kernel/drivers/$d"
done
# depmod is not on a Debian host without kmod; the rootfs has it.
chroot "$root" depmod -a "$kver" || die "depmod -a $kver inside the rootfs failed"
cp "$work"/kernel/boot/vmlinuz-"$kver" "$out/vmlinuz"

log "initramfs"
ird=$work/initramfs
mkdir -p "$ird/bin" "$ird/lib/modules"
cp "$work/busybox/bin/busybox" "$ird/bin/busybox"
cp "$here/initramfs-init" "$ird/init"
chmod 755 "$ird/init"
# The modules for virtio-pci, virtio-blk and ext4 (crc32c_generic: ext4 asks the crypto API
# for crc32c, which modules.dep does not show), dependencies first, from modules.dep.
declare -A seen=()
order=()
add_module() { # path relative to lib/modules/KVER
    local m=$1 deps dep
    [ -z "${seen[$m]:-}" ] || return 0
    seen[$m]=1
    deps=$(awk -v m="$m:" '$1 == m { $1 = ""; print; exit }' "$root/lib/modules/$kver/modules.dep")
    for dep in $deps; do add_module "$dep"; done
    order+=("$m")
}
for name in virtio_pci virtio_blk crc32c_generic ext4; do
    path=$(grep -oE "^[^:]*/$name\.ko(\.[a-z]+)?:" "$root/lib/modules/$kver/modules.dep" | tr -d :) ||
        die "module $name not in modules.dep of $kver"
    add_module "$path"
done
for m in "${order[@]}"; do
    mkdir -p "$ird/lib/modules/$(dirname "$m")"
    cp "$root/lib/modules/$kver/$m" "$ird/lib/modules/$m"
    case $m in *.xz | *.zst | *.gz) die "compressed module $m: teach build-guest.sh to unpack it" ;; esac
done
printf '%s\n' "${order[@]}" >"$ird/modules.order"
# busybox's own cpio: the host need not have cpio installed.
(cd "$ird" && find . | "$ird/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$out/initrd.img"

log "root image"
install -m 755 "$here/stage2" "$root/usr/local/sbin/rxe-stage2"
mkdir -p "$root/rxe"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# Room for what tests write outside the tmpfs mounts; the image file stays sparse.
size_mb=$(($(du -sm "$root" | cut -f1) * 5 / 4 + 256))
mkfs.ext4 -q -F -L rxe-root -d "$root" "$out/root.img" "${size_mb}M" ||
    die "mkfs.ext4 -d failed (needs e2fsprogs >= 1.43)"
echo "$kver" >"$out/kernel-version"
log "done: $(du -sh --apparent-size "$out/root.img" | cut -f1) image, kernel $kver"

#!/usr/bin/env bash
# Builds the parts of the arm64 QEMU test board that do not depend on
# seesaw, once, and caches them:
#
#   CACHE/rootfs/        the x86_64 board's Debian 12 root (tests/qemu/
#                        build-guest.sh: debootstrap minbase with systemd,
#                        udev and dbus, the board's configuration from
#                        tests/qemu/guest/) with every architecture-dependent
#                        package replaced by the arm64 build of it
#   CACHE/kernel/vmlinuz Debian's arm64 kernel (an uncompressed Image; the
#                        package is downloaded and unpacked, never installed)
#   CACHE/initrd.img     the busybox initramfs (tests/qemu/initramfs-init)
#                        with arm64 busybox and the board's modules
#
# Why the root is converted rather than debootstrapped for arm64: a foreign
# debootstrap's second stage runs the packages' maintainer scripts, which
# needs arm64 code to run in a chroot (binfmt_misc registration of
# qemu-user on the host). The x86_64 root's maintainer scripts have already
# made everything that does not depend on the architecture (users and
# groups, enabled units, alternatives, configuration files); the arm64
# packages of the same suite are unpacked over it, the amd64 libraries are
# removed, and a check refuses any x86-64 ELF file left behind.
#
# Usage: tests/qemu/arm64/build-guest.sh CACHE_DIR X86_CACHE_DIR
# Needs root (the x86_64 root's debootstrap), qemu-user (the checks run the
# root's systemd and fw_printenv), kmod, cpio, gzip, xz-utils.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
qemu=$(cd "$here/.." && pwd)
cache=${1:?usage: build-guest.sh CACHE_DIR X86_CACHE_DIR}
x86=${2:?usage: build-guest.sh CACHE_DIR X86_CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
export LC_ALL=C
say() { echo "build-guest-arm64: $*"; }

bash "$qemu/build-guest.sh" "$x86"
x86=$(cd "$x86" && pwd)

# shellcheck source=apt-arm64.sh
. "$here/apt-arm64.sh"
apt_arm64_init "$cache/apt"

# ---------------------------------------------------------------------------
# Root file system
# ---------------------------------------------------------------------------
sum=$( (cat "$x86/rootfs.stamp" "$here/build-guest.sh"; stat -c %Y "$x86/rootfs.stamp") | sha256sum | cut -c1-16)
if [ "$(cat "$cache/rootfs.stamp" 2>/dev/null)" != "$sum" ]; then
    start=$SECONDS
    r=$cache/rootfs
    rm -rf "$r" "$cache/debs"
    cp -a "$x86/rootfs" "$r"
    mapfile -t pkgs < <(dpkg-query --admindir="$r/var/lib/dpkg" -W -f '${Package} ${Architecture}\n' |
        awk '$2 != "all" { print $1 }')
    mkdir -p "$cache/debs"
    # libubootenv-tool: the test board's fw_printenv (as on the x86_64 board,
    # only the reader is kept).
    (cd "$cache/debs" && apt_arm64 download "${pkgs[@]}" libubootenv-tool libubootenv0.1 >/dev/null)
    say "unpacking ${#pkgs[@]} arm64 packages over the x86_64 root"
    for deb in "$cache/debs"/*.deb; do
        dpkg-deb --fsys-tarfile "$deb" |
            tar -x --keep-directory-symlink -C "$r" \
                --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/info \
                --exclude=./usr/share/locale --exclude=./usr/share/lintian
    done
    rm -f "$r/usr/bin/fw_setenv" "$r/etc/ld.so.cache"
    rm -rf "$r/usr/lib/x86_64-linux-gnu" "$r/usr/lib64" "$r/lib64"
    # Nothing built for x86-64 may be left (a file only the amd64 build of
    # a package ships would be).
    left=$(python3 - "$r" <<'PY'
import os, sys
root = sys.argv[1]
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        try:
            with open(p, 'rb') as fh:
                h = fh.read(20)
        except OSError:
            continue
        if h[:4] == b'\x7fELF' and len(h) == 20 and int.from_bytes(h[18:20], 'little') == 0x3e:
            print(os.path.relpath(p, root))
PY
)
    if [ -n "$left" ]; then
        echo "build-guest-arm64: x86-64 files left in the arm64 root:" >&2
        echo "$left" | head -20 >&2
        exit 1
    fi
    for cmd in "usr/lib/systemd/systemd --version" "usr/bin/fw_printenv -h" "usr/bin/dbus-daemon --version"; do
        # shellcheck disable=SC2086
        qemu-aarch64 -L "$r" "$r"/$cmd >/dev/null 2>&1 || {
            echo "build-guest-arm64: $cmd does not run in the arm64 root" >&2
            exit 1
        }
    done
    rm -rf "$cache/debs"
    echo "$sum" >"$cache/rootfs.stamp"
    say "root file system ready in $((SECONDS - start)) s ($(du -sm "$r" | cut -f1) MiB)"
fi

# ---------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------
if [ ! -f "$cache/kernel/vmlinuz" ]; then
    start=$SECONDS
    rm -rf "$cache/kernel" "$cache/kernel.tmp"
    mkdir -p "$cache/kernel.tmp"
    pkg=$(apt_arm64_cache depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    say "kernel package $pkg"
    (cd "$cache/kernel.tmp" && apt_arm64 download "$pkg" busybox-static >/dev/null)
    dpkg-deb -x "$cache/kernel.tmp"/linux-image-*.deb "$cache/kernel.tmp/x"
    dpkg-deb -x "$cache/kernel.tmp"/busybox-static_*.deb "$cache/kernel.tmp/bb"
    kver=$(ls "$cache/kernel.tmp/x/lib/modules")
    depmod -b "$cache/kernel.tmp/x" "$kver"
    mkdir -p "$cache/kernel/modules"
    cp "$cache/kernel.tmp/x/boot/vmlinuz-$kver" "$cache/kernel/vmlinuz"
    cp "$cache/kernel.tmp/bb/bin/busybox" "$cache/kernel/busybox"
    echo "$kver" >"$cache/kernel/version"
    # The board's modules: virtio (the disk, the network), the SD card on
    # sdhci-pci (the i.MX-like board's environment), file systems, the
    # i6300esb watchdog; dependencies first, decompressed.
    : >"$cache/kernel/modules/order"
    for m in virtio_pci virtio_blk virtio_net sdhci_pci mmc_block ext4 vfat nls_cp437 nls_ascii nls_utf8 i6300esb; do
        modprobe -d "$cache/kernel.tmp/x" -S "$kver" --show-depends "$m" |
            while read -r kind path _; do
                [ "$kind" = insmod ] || continue
                name=$(basename "$path")
                name=${name%.xz}
                if [ ! -f "$cache/kernel/modules/$name" ]; then
                    case "$path" in
                    *.xz) xz -dc "$path" >"$cache/kernel/modules/$name" ;;
                    *) cp "$path" "$cache/kernel/modules/$name" ;;
                    esac
                    echo "$name" >>"$cache/kernel/modules/order"
                fi
            done
    done
    rm -rf "$cache/kernel.tmp" "$cache/initrd.img"
    say "kernel $kver ready in $((SECONDS - start)) s"
fi

# ---------------------------------------------------------------------------
# initramfs
# ---------------------------------------------------------------------------
if [ ! -f "$cache/initrd.img" ] || [ "$qemu/initramfs-init" -nt "$cache/initrd.img" ]; then
    t=$cache/initramfs.tmp
    rm -rf "$t"
    mkdir -p "$t"/{bin,dev,proc,sys,newroot,lib/modules}
    cp "$cache/kernel/busybox" "$t/bin/busybox"
    cp "$qemu/initramfs-init" "$t/init"
    chmod 755 "$t/init"
    cp "$cache/kernel/modules/"* "$t/lib/modules/"
    (cd "$t" && find . | cpio -o -H newc --quiet | gzip -9) >"$cache/initrd.img.tmp"
    mv "$cache/initrd.img.tmp" "$cache/initrd.img"
    rm -rf "$t"
    say "initramfs ready ($(du -k "$cache/initrd.img" | cut -f1) KiB)"
fi

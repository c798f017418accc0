#!/usr/bin/env bash
# Builds the parts of the QEMU test board that do not depend on seesaw, once,
# and caches them (a rerun with everything present takes well under a second):
#
#   CACHE/rootfs/        a minimal Debian 12 root (debootstrap --variant=minbase
#                        with systemd as init, udev and dbus), trimmed of
#                        documentation and apt lists, with the board's fixed
#                        configuration from tests/qemu/guest/ applied
#   CACHE/kernel/vmlinuz Debian's x86_64 kernel (the linux-image package is
#                        downloaded and unpacked, never installed on the host)
#   CACHE/initrd.img     a busybox initramfs that loads the few modules the
#                        board needs and switch_roots into the slot's ext4
#
# Usage: tests/qemu/build-guest.sh CACHE_DIR
# Needs root (debootstrap), debootstrap, busybox-static, kmod, cpio, gzip,
# xz-utils (tests/qemu-packages.sh installs them).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: build-guest.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

if [ "$(id -u)" -ne 0 ]; then
    echo "build-guest: debootstrap needs root" >&2
    exit 1
fi

say() { echo "build-guest: $*"; }

# The Debian mirror this machine already uses (never a fixed host name).
mirror() {
    local m
    m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    if [ -z "$m" ]; then
        echo "build-guest: no bookworm apt source found for debootstrap" >&2
        exit 1
    fi
    echo "$m"
}

# ---------------------------------------------------------------------------
# Root file system
# ---------------------------------------------------------------------------
# The stamp names the inputs: a change to the guest configuration rebuilds.
# (and the host's libubootenv, whose fw_printenv the board gets, see below).
guest_sum=$( (cd "$here" && find guest build-guest.sh -type f -print0 | sort -z | xargs -0 sha256sum
    dpkg-query -W libubootenv-tool libubootenv0.1) | sha256sum | cut -c1-16)
if [ "$(cat "$cache/rootfs.stamp" 2>/dev/null)" != "$guest_sum" ]; then
    start=$SECONDS
    if [ ! -f "$cache/debootstrap.done" ]; then
        rm -rf "$cache/debootstrap"
        say "debootstrap bookworm (minbase + systemd, udev, dbus) from $(mirror)"
        debootstrap --variant=minbase \
            --include=systemd,systemd-sysv,udev,dbus \
            bookworm "$cache/debootstrap" "$(mirror)" >"$cache/debootstrap.log" 2>&1 || {
            tail -30 "$cache/debootstrap.log" >&2
            exit 1
        }
        # Documentation, locales, apt's package lists and caches are of no use
        # on the board and only make every slot image bigger.
        rm -rf "$cache/debootstrap"/usr/share/{doc,man,info,locale,lintian} \
            "$cache/debootstrap"/var/lib/apt/lists/* \
            "$cache/debootstrap"/var/cache/apt/* \
            "$cache/debootstrap"/var/cache/debconf/*-old \
            "$cache/debootstrap"/var/log/*.log
        touch "$cache/debootstrap.done"
    fi
    rm -rf "$cache/rootfs"
    cp -a "$cache/debootstrap" "$cache/rootfs"
    r=$cache/rootfs
    # The board's fixed configuration (fstab, network, the test units).
    cp -a "$here/guest/." "$r/"
    echo seesaw-qemu >"$r/etc/hostname"
    # A fixed machine id: both slots are one board.
    echo 5ee5a0aa5ee5a0aa5ee5a0aa5ee5a0aa >"$r/etc/machine-id"
    # No root password: the serial console is the test's only way in, and
    # nothing logs in on it.
    chroot "$r" passwd -d root >/dev/null
    chroot "$r" systemctl enable systemd-networkd.service seesaw-test-step.service >/dev/null 2>&1
    # The board has no use for these, and a unit that fails on an emulated
    # board would make systemd's state "degraded", which the health gate
    # counts as unhealthy.
    chroot "$r" systemctl mask systemd-networkd-wait-online.service \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer >/dev/null 2>&1 || true
    # Test board only: the real fw_printenv (Debian's libubootenv-tool, the
    # same package and version the host's test uses), so that the test step
    # can print the environment pair as libubootenv reads it after seesaw
    # started. Only the reader: nothing on the board but seesaw writes the
    # environment. Taken from the host's installed package (zlib, its only
    # other dependency, is in the root already).
    for f in /usr/bin/fw_printenv $(dpkg -L libubootenv0.1 | grep '/libubootenv\.so'); do
        cp -a "$f" "$r$f"
    done
    chroot "$r" fw_printenv -h >/dev/null 2>&1 || {
        echo "build-guest: fw_printenv does not run in the guest root" >&2
        exit 1
    }
    # /boot is the FAT boot partition in Linux; the kernel and initramfs that
    # U-Boot loads live in the slot's own /boot below it.
    mkdir -p "$r/boot" "$r/var/lib/seesaw"
    echo "$guest_sum" >"$cache/rootfs.stamp"
    say "root file system ready in $((SECONDS - start)) s ($(du -sm "$r" | cut -f1) MiB)"
fi

# ---------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------
if [ ! -f "$cache/kernel/vmlinuz" ]; then
    start=$SECONDS
    rm -rf "$cache/kernel" "$cache/kernel.tmp"
    mkdir -p "$cache/kernel.tmp"
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    if [ -z "$pkg" ]; then
        apt-get update >/dev/null
        pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    fi
    say "kernel package $pkg"
    (cd "$cache/kernel.tmp" && apt-get -o APT::Sandbox::User=root download "$pkg" >/dev/null)
    dpkg-deb -x "$cache/kernel.tmp"/*.deb "$cache/kernel.tmp/x"
    kver=$(ls "$cache/kernel.tmp/x/lib/modules")
    depmod -b "$cache/kernel.tmp/x" "$kver"
    mkdir -p "$cache/kernel/modules"
    cp "$cache/kernel.tmp/x/boot/vmlinuz-$kver" "$cache/kernel/vmlinuz"
    echo "$kver" >"$cache/kernel/version"
    # The modules the board needs, dependencies first, decompressed (busybox
    # insmod). Anything built into the kernel is reported as "builtin".
    : >"$cache/kernel/modules/order"
    for m in virtio_pci virtio_blk virtio_net ext4 vfat nls_cp437 nls_ascii nls_utf8 i6300esb; do
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
if [ ! -f "$cache/initrd.img" ] || [ "$here/initramfs-init" -nt "$cache/initrd.img" ]; then
    t=$cache/initramfs.tmp
    rm -rf "$t"
    mkdir -p "$t"/{bin,dev,proc,sys,newroot,lib/modules}
    cp /bin/busybox "$t/bin/busybox"
    cp "$here/initramfs-init" "$t/init"
    chmod 755 "$t/init"
    cp "$cache/kernel/modules/"* "$t/lib/modules/"
    (cd "$t" && find . | cpio -o -H newc --quiet | gzip -9) >"$cache/initrd.img.tmp"
    mv "$cache/initrd.img.tmp" "$cache/initrd.img"
    rm -rf "$t"
    say "initramfs ready ($(du -k "$cache/initrd.img" | cut -f1) KiB)"
fi

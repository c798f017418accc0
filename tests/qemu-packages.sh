#!/usr/bin/env bash
# Install the host packages the boot-script tests need (Debian 12 "bookworm",
# x86_64). Safe to run again: packages already present are left alone.
#
#   u-boot-tools      mkimage, dumpimage (compile and inspect boot.scr)
#   libubootenv-tool  fw_printenv, fw_setenv (read/write the environment pair
#                     seesaw.env + seesaw-redund.env)
#   u-boot-qemu       /usr/lib/u-boot/qemu-x86/u-boot.rom
#   mtools dosfstools fdisk   build a disk image without root or loop devices
#   debootstrap busybox-static kmod cpio xz-utils e2fsprogs
#                     the boot-chain test's guest (tests/qemu/build-guest.sh):
#                     a minimal Debian root, its initramfs, its kernel
#                     modules; debugfs reads the guest's state afterwards
#   qemu-user dpkg-dev bison flex bc gcc-aarch64-linux-gnu libssl-dev
#                     the arm64 boards (tests/qemu/arm64/): U-Boot built from
#                     Debian's source package, checks of the arm64 root
#   qemu-system-x86 qemu-system-arm (+ common, data, seabios) from bookworm-backports: the host
#   may carry qemu-utils from backports, which conflicts with bookworm's 7.2
#   qemu-system packages. Only these packages are taken from backports; a
#   blanket "-t bookworm-backports" would also upgrade systemd, udev, e2fsprogs.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive

BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Use the same Debian mirror the machine already uses for bookworm.
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    if [ -z "$mirror" ]; then
        mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    fi
    if [ -z "$mirror" ]; then
        echo "qemu-packages: no bookworm apt source found to derive a backports source from" >&2
        exit 1
    fi
    $SUDO tee "$BACKPORTS_LIST" >/dev/null <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    need_update=1
fi

plain=(u-boot-tools libubootenv-tool u-boot-qemu mtools dosfstools fdisk
    debootstrap busybox-static kmod cpio xz-utils e2fsprogs
    qemu-user dpkg-dev bison flex bc gcc-aarch64-linux-gnu libc6-dev-arm64-cross libssl-dev)
backports=(qemu-system-x86 qemu-system-arm qemu-system-common qemu-system-data seabios)
backports_pinned=(
    qemu-system-x86/bookworm-backports
    qemu-system-arm/bookworm-backports
    qemu-system-common/bookworm-backports
    qemu-system-data/bookworm-backports
    seabios/bookworm-backports
)

missing=()
for p in "${plain[@]}" "${backports[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "qemu-packages: all packages present"
    exit 0
fi

$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
    "${plain[@]}" \
    "${backports_pinned[@]}"

echo "qemu-packages: installed ${missing[*]}"

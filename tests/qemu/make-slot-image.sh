#!/usr/bin/env bash
# Makes one slot image of the QEMU test board: the cached Debian root
# (build-guest.sh) plus seesaw as a product image carries it (the binary,
# systemd/seesaw.service, the watchdog drop-in, the D-Bus policy, the journald
# catalog, /etc/seesaw/seesaw.toml with its trust keys and CA, the
# fw_env.config of the env-file boot script), the kernel and initramfs in the
# slot's /boot, a release marker, and the overlay of a test variant. Packed
# with mkfs.ext4 -d (no root, no loop device, no mount).
#
# Usage: make-slot-image.sh CACHE_DIR SEESAW_BIN KEYS_DIR CA_PEM RELEASE VARIANT SIZE_MIB OUT [BOARD [DTB]]
#   KEYS_DIR  holds release.pub and fleet.pub (keys/make-dev-keys.sh)
#   VARIANT   good | unhealthy (its health check fails) | hangs (kernel panic
#             before seesaw confirms; see variants/hangs)
#   BOARD     x86 (default: the env-file script's board, CACHE from
#             build-guest.sh) | rpi | imx (the arm64 boards, CACHE from
#             arm64/build-guest.sh: the board's fw_env.config from
#             bootloader-scripts/BOARD/, arm64/boards/BOARD/ for the rest,
#             the kernel as /boot/Image)
#   DTB       a device tree for the slot's /boot/qemu-virt.dtb (the i.MX
#             script loads /boot/${fdtfile})
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ "$#" -ge 8 ] && [ "$#" -le 10 ] || { echo "usage: make-slot-image.sh CACHE SEESAW KEYS CA RELEASE VARIANT SIZE_MIB OUT [BOARD [DTB]]" >&2; exit 2; }
cache=$1 seesaw=$2 keys=$3 ca=$4 release=$5 variant=$6 size=$7 out=$8 board=${9:-x86} dtb=${10:-}
case "$variant" in good | unhealthy | hangs) ;; *) echo "unknown variant $variant" >&2; exit 2 ;; esac
case "$board" in x86 | rpi | imx) ;; *) echo "unknown board $board" >&2; exit 2 ;; esac

t=$out.tree
rm -rf "$t"
cp -a "$cache/rootfs" "$t"
install -D -m 755 "$seesaw" "$t/usr/bin/seesaw"
install -D -m 644 "$repo/systemd/seesaw.service" "$t/usr/lib/systemd/system/seesaw.service"
install -D -m 644 "$repo/systemd/10-seesaw-watchdog.conf" "$t/usr/lib/systemd/system.conf.d/10-seesaw-watchdog.conf"
install -D -m 644 "$repo/systemd/org.seesaw.Updater1.conf" "$t/usr/share/dbus-1/system.d/org.seesaw.Updater1.conf"
install -D -m 644 "$repo/systemd/seesaw.catalog" "$t/usr/lib/systemd/catalog/seesaw.catalog"
mkdir -p "$t/etc/systemd/system/multi-user.target.wants"
ln -sf /usr/lib/systemd/system/seesaw.service "$t/etc/systemd/system/multi-user.target.wants/seesaw.service"
if [ "$board" = x86 ]; then
    install -D -m 644 "$repo/bootloader-scripts/env-file/fw_env.config" "$t/etc/fw_env.config"
    install -D -m 644 "$here/seesaw.toml" "$t/etc/seesaw/seesaw.toml"
    install -D -m 644 "$cache/kernel/vmlinuz" "$t/boot/vmlinuz"
else
    # The shipped fw_env.config of the board; on the i.MX-like board the
    # disk is mmc 0 (/dev/mmcblk0) rather than the EVK's eMMC (mmcblk2),
    # offsets and sizes as shipped.
    sed -e 's|^/dev/mmcblk2 |/dev/mmcblk0 |' "$repo/bootloader-scripts/$board/fw_env.config" >"$t/etc/fw_env.config"
    install -D -m 644 "$here/arm64/boards/$board/seesaw.toml" "$t/etc/seesaw/seesaw.toml"
    cp -a "$here/arm64/boards/$board/root/." "$t/"
    mkdir -p "$t/boot/firmware"
    install -D -m 644 "$cache/kernel/vmlinuz" "$t/boot/Image"
    if [ -n "$dtb" ]; then
        install -D -m 644 "$dtb" "$t/boot/qemu-virt.dtb"
    fi
fi
install -D -m 644 "$keys/release.pub" "$t/etc/seesaw/keys/release.pub"
install -D -m 644 "$keys/fleet.pub" "$t/etc/seesaw/keys/fleet.pub"
install -D -m 644 "$ca" "$t/etc/seesaw/ca.pem"
install -D -m 644 "$cache/initrd.img" "$t/boot/initrd.img"
echo "$release" >"$t/etc/seesaw-board-release"
if [ "$variant" != good ]; then
    cp -a "$here/variants/$variant/." "$t/"
fi
rm -f "$out"
mkfs.ext4 -q -F -L "slot-$release" -d "$t" "$out" "${size}M"
rm -rf "$t"

#!/usr/bin/env bash
# Makes one slot image of the QEMU test board: the cached Debian root
# (build-guest.sh) plus seesaw as a product image carries it (the binary,
# systemd/seesaw.service, the watchdog drop-in, the D-Bus policy, the journald
# catalog, /etc/seesaw/seesaw.toml with its trust keys and CA, the
# fw_env.config of the env-file boot script), the kernel and initramfs in the
# slot's /boot, a release marker, and the overlay of a test variant. Packed
# with mkfs.ext4 -d (no root, no loop device, no mount).
#
# Usage: make-slot-image.sh CACHE_DIR SEESAW_BIN KEYS_DIR CA_PEM RELEASE VARIANT SIZE_MIB OUT
#   KEYS_DIR  holds release.pub and fleet.pub (keys/make-dev-keys.sh)
#   VARIANT   good | unhealthy (its health check fails) | hangs (kernel panic
#             before seesaw confirms; see variants/hangs)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ "$#" -eq 8 ] || { echo "usage: make-slot-image.sh CACHE SEESAW KEYS CA RELEASE VARIANT SIZE_MIB OUT" >&2; exit 2; }
cache=$1 seesaw=$2 keys=$3 ca=$4 release=$5 variant=$6 size=$7 out=$8
case "$variant" in good | unhealthy | hangs) ;; *) echo "unknown variant $variant" >&2; exit 2 ;; esac

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
install -D -m 644 "$repo/bootloader-scripts/env-file/fw_env.config" "$t/etc/fw_env.config"
install -D -m 644 "$keys/release.pub" "$t/etc/seesaw/keys/release.pub"
install -D -m 644 "$keys/fleet.pub" "$t/etc/seesaw/keys/fleet.pub"
install -D -m 644 "$ca" "$t/etc/seesaw/ca.pem"
install -D -m 644 "$here/seesaw.toml" "$t/etc/seesaw/seesaw.toml"
install -D -m 644 "$cache/kernel/vmlinuz" "$t/boot/vmlinuz"
install -D -m 644 "$cache/initrd.img" "$t/boot/initrd.img"
echo "$release" >"$t/etc/seesaw-board-release"
if [ "$variant" != good ]; then
    cp -a "$here/variants/$variant/." "$t/"
fi
rm -f "$out"
mkfs.ext4 -q -F -L "slot-$release" -d "$t" "$out" "${size}M"
rm -rf "$t"

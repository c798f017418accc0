#!/usr/bin/env bash
# Builds U-Boot for the arm64 test board from Debian's u-boot source package
# (apt-get source through a private apt, apt-arm64.sh; dpkg-source applies
# Debian's patches), plus the board patch, in the two board configurations
# the shipped boards promise:
#
#   CACHE/u-boot/rpi/u-boot.bin   qemu_arm64_defconfig + common.config + rpi.config
#   CACHE/u-boot/imx/u-boot.bin   qemu_arm64_defconfig + common.config + imx.config
#
# Each build keeps its .config beside u-boot.bin. Cached: a rerun with the
# same inputs (the source package's version, this script, the patch, the
# fragments) takes well under a second.
#
# Usage: tests/qemu/arm64/build-u-boot.sh CACHE_DIR
# Needs dpkg-dev (dpkg-source), bison, flex, bc, make and, on a host that is
# not arm64, gcc-aarch64-linux-gnu (tests/qemu-packages.sh installs them).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: build-u-boot.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
export LC_ALL=C
say() { echo "build-u-boot: $*"; }

# shellcheck source=apt-arm64.sh
. "$here/apt-arm64.sh"
apt_arm64_init "$cache/apt"

version=$(apt_arm64_cache showsrc u-boot 2>/dev/null | awk '/^Version:/ { print $2; exit }')
[ -n "$version" ] || { echo "build-u-boot: no u-boot source package in the private apt" >&2; exit 1; }
sum=$( (echo "$version"; cd "$here" && cat build-u-boot.sh u-boot-qemu-arm-boards.patch common.config rpi.config imx.config) |
    sha256sum | cut -c1-16)
out=$cache/u-boot
if [ "$(cat "$out/stamp" 2>/dev/null)" = "$sum" ]; then
    exit 0
fi

start=$SECONDS
src=$cache/u-boot-src
if [ "$(cat "$src/version" 2>/dev/null)" != "$version" ]; then
    rm -rf "$src"
    mkdir -p "$src/dl"
    say "Debian source package u-boot $version"
    (cd "$src/dl" && apt_arm64 source --download-only "u-boot=$version" >/dev/null)
    dpkg-source --no-check -x "$src/dl"/u-boot_*.dsc "$src/tree" >/dev/null
    echo "$version" >"$src/version"
fi

cross=
if [ "$(uname -m)" != aarch64 ]; then
    cross=aarch64-linux-gnu-
    command -v "${cross}gcc" >/dev/null || { echo "build-u-boot: ${cross}gcc missing (gcc-aarch64-linux-gnu)" >&2; exit 1; }
fi

rm -rf "$out"
mkdir -p "$out"
for board in rpi imx; do
    b=$cache/u-boot-build/$board
    rm -rf "$b"
    mkdir -p "$b"
    cp -a "$src/tree/." "$b/"
    patch -s -d "$b" -p1 <"$here/u-boot-qemu-arm-boards.patch"
    cat "$b/configs/qemu_arm64_defconfig" "$here/common.config" "$here/$board.config" >"$b/configs/seesaw_qemu_${board}_defconfig"
    # (Kconfig warns of every option a fragment overrides: expected.)
    make -s -C "$b" CROSS_COMPILE=$cross "seesaw_qemu_${board}_defconfig" >"$b/defconfig.log" 2>&1 || {
        cat "$b/defconfig.log" >&2
        exit 1
    }
    # Every option the fragments set must have survived Kconfig (a
    # misspelt or unmet one is dropped silently).
    while IFS= read -r line; do
        case "$line" in
        CONFIG_*=*) grep -qxF "$line" "$b/.config" || { echo "build-u-boot: $board: $line did not take" >&2; exit 1; } ;;
        "# CONFIG_"*" is not set")
            opt=${line#\# }
            opt=${opt%% *}
            if grep -q "^$opt=" "$b/.config"; then echo "build-u-boot: $board: $opt is still set" >&2; exit 1; fi ;;
        esac
    done < <(cat "$here/common.config" "$here/$board.config")
    make -s -C "$b" CROSS_COMPILE=$cross -j"$(nproc)" u-boot.bin u-boot-initial-env >"$b/build.log" 2>&1 || {
        tail -30 "$b/build.log" >&2
        exit 1
    }
    mkdir -p "$out/$board"
    cp "$b/u-boot.bin" "$b/.config" "$b/u-boot-initial-env" "$out/$board/"
    rm -rf "$b"
    say "$board: u-boot.bin ($(stat -c %s "$out/$board/u-boot.bin") bytes)"
done
echo "$sum" >"$out/stamp"
say "built in $((SECONDS - start)) s"

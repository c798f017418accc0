#!/usr/bin/env bash
# Cross-builds the release `seesaw` for the boards' targets with Debian's
# cross toolchains and prints the stripped size of each binary.
#
#   bash tests/cross-build.sh [TARGET...]
#
# Default targets: x86_64-unknown-linux-gnu (the host, as the baseline),
# aarch64-unknown-linux-gnu (Raspberry Pi 3/4/5 and i.MX 8 in 64-bit mode),
# armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS, i.MX 6/7).
# Installs what it needs (the cross gcc and libc for the C parts: ring and
# zstd-sys) and the Rust targets; safe to run again. The stripped binaries are
# left in target/<triple>/release/seesaw.stripped.
#
# SEESAW_SIZE_BUDGET (bytes, optional): fail when a stripped board binary
# (every target but the host) is larger.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=apt-missing.sh
. "$repo/tests/apt-missing.sh"

host=x86_64-unknown-linux-gnu
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("$host" aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

# target -> Debian gcc prefix and packages
gnu_prefix() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
        *) echo "" ;;
    esac
}
packages=()
for t in "${targets[@]}"; do
    case "$t" in
        "$host") ;;
        aarch64-unknown-linux-gnu) packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
        armv7-unknown-linux-gnueabihf) packages+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
        *) echo "cross-build: unknown target $t" >&2; exit 2 ;;
    esac
done
apt_install_missing "${packages[@]}"

status=0
report=()
for t in "${targets[@]}"; do
    prefix=$(gnu_prefix "$t")
    if [ -n "$prefix" ]; then
        rustup target add "$t" >/dev/null
        upper=$(echo "$t" | tr 'a-z-' 'A-Z_')
        lower=$(echo "$t" | tr '-' '_')
        export "CARGO_TARGET_${upper}_LINKER=${prefix}-gcc"
        export "CC_${lower}=${prefix}-gcc"
        export "AR_${lower}=${prefix}-ar"
        strip_tool=${prefix}-strip
    else
        strip_tool=strip
    fi
    echo "== cargo build --release --target $t"
    cargo build --release --locked --target "$t" -p seesaw --bin seesaw
    bin=target/$t/release/seesaw
    "$strip_tool" -o "$bin.stripped" "$bin"
    size=$(stat -c %s "$bin.stripped")
    report+=("$(printf '%-32s %9d bytes  %6.2f MiB' "$t" "$size" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')")")
    if [ -n "${SEESAW_SIZE_BUDGET:-}" ] && [ "$t" != "$host" ] && [ "$size" -gt "$SEESAW_SIZE_BUDGET" ]; then
        echo "cross-build: $t is $size bytes, over the budget of $SEESAW_SIZE_BUDGET" >&2
        status=1
    fi
done
echo "== stripped size of seesaw per target"
printf '%s\n' "${report[@]}"
exit "$status"

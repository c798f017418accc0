#!/usr/bin/env bash
# The real boot chain on the arm64 boards in QEMU: U-Boot built from
# Debian's source package in a Raspberry Pi-like and an i.MX-like
# configuration runs bootloader-scripts/rpi/boot.cmd and
# bootloader-scripts/imx/boot.cmd as shipped, which boot Debian's arm64
# kernel from the chosen slot; systemd starts the aarch64 seesaw with its
# real unit, watchdog drop-in, D-Bus policy and configuration; an i6300esb
# watchdog resets a hung slot. Four scenarios per board: update and commit
# (then five reboots of the committed slot), health failure, hung slot
# (watchdog), power cut during an install. See tests/qemu/README.md.
# Prints the wall time of every scenario.
#
# Usage: bash tests/qemu-arm64-boot-chain.sh [--ci | TEST_NAME_FILTER...]
#   no argument: all of them (both boards, all scenarios and the scripts'
#   refusals); --ci: the set tests/run-tests.sh runs (see below);
#   arm64_imx (one board), arm64_rpi_hung_slot (one scenario).
#   U-Boot, the guest parts, keys, slot images and bundles are cached in
#   work/qemu-arm64/cache (delete it to rebuild); console logs go to
#   work/qemu-arm64/logs. The x86_64 board's root (work/qemu/cache) is made
#   first if missing: the arm64 root is converted from it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash tests/qemu-packages.sh
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

start=$SECONDS
# The guest runs the aarch64 release build (tests/cross-build.sh, the same
# one tests/cross-check.sh checks; a no-op when it is up to date).
bash tests/cross-build.sh aarch64-unknown-linux-gnu
# The host makes the bundles with its own build.
cargo build --release --quiet --bin seesaw
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export SEESAW_QEMU_HOST_SEESAW=$target/release/seesaw
# The slots carry the stripped binary, as a board image does.
export SEESAW_QEMU_SEESAW_ARM64=$target/aarch64-unknown-linux-gnu/release/seesaw.stripped
echo "== arm64 boot chain in QEMU (guest runs $SEESAW_QEMU_SEESAW_ARM64)"
if [ "${1:-}" = "--ci" ]; then
    # The set tests/run-tests.sh runs, to keep CI within its time: every
    # scenario on at least one arm64 board, the commit with five reboots and
    # the scripts' refusals on both (about 20 minutes on 2 cores; all ten
    # take about 30). Without --ci, all of them.
    set -- arm64_rpi_update_and_commit arm64_rpi_health_failure arm64_rpi_power_cut \
        arm64_rpi_boot_script arm64_imx_update_and_commit arm64_imx_hung_slot arm64_imx_boot_script
elif [ "$#" -eq 0 ]; then
    set -- arm64_
fi
cargo test --test boot_chain_qemu -- --ignored --test-threads=1 --nocapture "$@"
echo "== arm64 boot chain in QEMU: $((SECONDS - start)) s in all"

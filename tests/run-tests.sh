#!/usr/bin/env bash
# Runs every seesaw test, exactly what CI runs: installs the real tools the
# tests use, checks formatting and lints, runs the simulated-board update
# cycle, the board binaries (cross builds, size budget, the same bytes as the
# host's under qemu-user), the real boot chain in QEMU on the x86_64 board and
# on the Raspberry Pi-like and i.MX-like arm64 boards (tests/qemu/README.md),
# then the unit and integration tests (including the boot scripts in U-Boot
# under QEMU).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash tests/test-packages.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== simulated board: full update cycle"
bash tests/simulated-board.sh "$repo/work/ci-simulated-board"
echo "== Yocto layer: oelint-adv, crates .inc in sync, layout consistency"
bash tests/yocto-checks.sh
echo "== cargo deny: licenses, bans, sources"
bash tests/deny.sh
echo "== board binaries: aarch64 and armv7 release builds within 4 MiB, the same bytes as the host's under qemu-user"
bash tests/cross-check.sh
echo "== boot chain in QEMU: commit and five reboots, health rollback, watchdog rollback, power cut, power cuts in U-Boot's environment write"
bash tests/qemu-boot-chain.sh
echo "== arm64 boot chain in QEMU: the rpi and imx scripts in U-Boot built for each board, the aarch64 seesaw; commit and five reboots and the scripts' refusals on both boards, health rollback and power cut on rpi, watchdog rollback on imx"
bash tests/qemu-arm64-boot-chain.sh --ci
echo "== cargo test"
cargo test --workspace 2>&1

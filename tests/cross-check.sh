#!/usr/bin/env bash
# The board binaries, checked: release builds for aarch64 and armv7 within
# the size budget (tests/cross-build.sh), then daemon/tests/cross_binary.rs
# with each of them under qemu-user next to the host's binary: the same
# steps on copies of one simulated board must leave the same bytes.
#
#   bash tests/cross-check.sh
#
# SEESAW_SIZE_BUDGET (bytes, default 4194304 = 4 MiB): the largest stripped
# board binary allowed. The repository's path must not contain spaces.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=apt-missing.sh
. "$repo/tests/apt-missing.sh"
apt_install_missing qemu-user libubootenv-tool e2fsprogs

export SEESAW_SIZE_BUDGET=${SEESAW_SIZE_BUDGET:-4194304}
bash tests/cross-build.sh aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf

aarch64="qemu-aarch64 -L /usr/aarch64-linux-gnu $repo/target/aarch64-unknown-linux-gnu/release/seesaw"
armv7="qemu-arm -L /usr/arm-linux-gnueabihf $repo/target/armv7-unknown-linux-gnueabihf/release/seesaw"
export SEESAW_CROSS_RUNNERS="aarch64=$aarch64;armv7=$armv7"
echo "== the same steps with the host's, the aarch64 and the armv7 seesaw"
cargo test -p seesaw --test cross_binary -- --nocapture

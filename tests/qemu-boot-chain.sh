#!/usr/bin/env bash
# The real boot chain in QEMU: U-Boot, the env-file boot script, Debian's
# kernel, systemd and seesaw, with a hardware watchdog. Five scenarios:
# update and commit (then five reboots of the committed slot), health
# failure, hung slot (watchdog), power cut during an install, power cuts
# during U-Boot's write of the environment. See tests/qemu/README.md.
# Prints the wall time of every scenario.
#
# Usage: bash tests/qemu-boot-chain.sh [TEST_NAME_FILTER...]
#   Guest parts, keys, slot images and bundles are cached in work/qemu/cache
#   (delete it to rebuild); console logs go to work/qemu/logs.
#   SEESAW_CUT_SEED=N repeats the power cut delays of an earlier run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash tests/qemu-packages.sh
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

start=$SECONDS
# The guest runs the optimised build: hashing and decompressing a slot image
# in an emulated CPU is several times slower than on the host.
cargo build --release --quiet --bin seesaw
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export SEESAW_QEMU_SEESAW=$target/release/seesaw
echo "== boot chain in QEMU (guest runs $SEESAW_QEMU_SEESAW)"
# The arm64 boards have their own step (tests/qemu-arm64-boot-chain.sh).
cargo test --test boot_chain_qemu -- --ignored --test-threads=1 --nocapture --skip arm64_ "$@"
echo "== boot chain in QEMU: $((SECONDS - start)) s in all"

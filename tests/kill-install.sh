#!/usr/bin/env bash
# kill -9 of the seesaw daemon at random moments of an install, 50 trials
# (daemon/tests/kill_install.rs). Needs root, dbus-daemon and a Rust
# toolchain. Override with SEESAW_KILL_TRIALS, SEESAW_KILL_SEED (e.g. the
# seed a failing run printed) and SEESAW_KILL_IMAGE_MIB.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export SEESAW_KILL_TRIALS="${SEESAW_KILL_TRIALS:-50}"
start=$(date +%s)
cargo test -p seesaw --test kill_install -- --nocapture --test-threads=1 \
    kill_9_at_random_moments_of_an_install
echo "kill-install: $SEESAW_KILL_TRIALS trials passed in $(( $(date +%s) - start )) s"

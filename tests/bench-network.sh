#!/usr/bin/env bash
# Benchmark: a full HTTPS install of a 512 MiB real root filesystem image
# (the one tests/bench-install.sh builds) from a local HTTPS server, next to
# `curl | dd` of the raw image from the same server, in the same run.
# Prints seconds, bytes downloaded and seesaw's peak RSS.
# Usage: tests/bench-network.sh [--runs N]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=3
[[ ${1:-} == --runs ]] && runs=$2
for tool in curl dd /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y curl coreutils time" >&2; exit 1; }
done
image=$repo/work/bench-install/rootfs.ext4
if [[ ! -f $image ]]; then
    # Builds the same image the install benchmark uses.
    bash "$repo/tests/bench-install.sh" --runs 1 >/dev/null
fi
mkdir -p "$repo/work/bench-network"
cd "$repo"
SEESAW_BENCH_IMAGE=$image SEESAW_BENCH_RUNS=$runs SEESAW_BENCH_DIR=$repo/work/bench-network \
    cargo test --release -q -p seesaw --test bench_network -- --ignored --nocapture 2>&1 |
    grep -E '^(image|run|median)'

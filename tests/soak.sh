#!/usr/bin/env bash
# The lifetime soak (daemon/tests/soak.rs) as a long campaign: 100,000
# events by default, from a seed given or made from the clock (printed).
# Usage: bash tests/soak.sh [EVENTS] [SEED]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash tests/test-packages.sh >/dev/null
export SEESAW_SOAK_EVENTS=${1:-100000}
export SEESAW_SOAK_SEED=${2:-$(date +%s%N)}
echo "== lifetime soak: $SEESAW_SOAK_EVENTS events, seed $SEESAW_SOAK_SEED"
cargo test --release --test soak -- --nocapture

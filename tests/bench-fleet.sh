#!/usr/bin/env bash
# Benchmark of the fleet link against a real Mosquitto on 127.0.0.1 (TLS,
# client certificates, ACLs), in one run:
#   1. push -> download start: `seesaw fleet publish` to the first HTTPS
#      request of the device's `seesaw daemon`, over several runs, median
#      (each run is cancelled right after it starts);
#   2. load: N simulated devices (rumqttc, one client certificate each)
#      connect, receive one group deployment and answer with a status;
#      time to reach all, and for `seesaw fleet status` to list all.
# Usage: tests/bench-fleet.sh [--runs N] [--devices N]   (defaults 7, 2000)
# Needs root (the daemon owns its D-Bus name as uid 0), mosquitto,
# mosquitto-clients and dbus-daemon (tests/test-packages.sh installs them).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=7
devices=2000
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --devices) devices=$2; shift 2 ;;
        *) echo "usage: $0 [--runs N] [--devices N]" >&2; exit 2 ;;
    esac
done
for tool in mosquitto mosquitto_pub dbus-daemon; do
    command -v "$tool" >/dev/null || { echo "missing $tool: bash tests/test-packages.sh" >&2; exit 1; }
done
# Every simulated device holds a socket here and in the broker.
ulimit -n "$(ulimit -Hn)"
need=$((devices * 2 + 512))
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $need ]]; then
    echo "file descriptor limit $(ulimit -n) is below $need for $devices devices" >&2
    exit 1
fi
cd "$repo"
SEESAW_FLEET_RUNS=$runs SEESAW_FLEET_DEVICES=$devices \
    cargo test -q -p seesaw --test fleet_mqtt -- --ignored --nocapture --test-threads 1 bench_ 2>&1 |
    grep -E '^(push|  |fleet load)'

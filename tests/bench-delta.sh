#!/usr/bin/env bash
# Benchmark: the bytes a v1 -> v2 update downloads when the running slot
# already holds v1, in one run on one 512 MiB image pair:
#   v1  debootstrap minbase bookworm (+ systemd, udev, python3, perl,
#       openssh-server, curl), mkfs.ext4 -d with fixed UUID, hash seed, time;
#   v2  the same tree with about 1% of the files changed or added, rebuilt
#       the same way (most blocks move, few are new).
# Prints:
#   - the floor: v2's 4 KiB blocks found nowhere in v1, and their size
#     compressed (gzip -9, zstd -19);
#   - full download: `curl | dd` of the raw v2 image vs a seesaw HTTPS install
#     of v2 into an empty slot (wall time, bytes served), zstd -19 of v2;
#   - delta v1 -> v2: bytes served, requests and wall time for
#     `casync extract --seed=v1`, `zckdl --source v1.zck` and seesaw with v1
#     in the running slot, each as a ratio to the floor;
#   - peak RSS of each.
# Medians over --runs N (default 3). Everything is served by the test
# HTTPS server of daemon/tests/support/https_server.rs on 127.0.0.1. casync
# and zckdl (libcurl) trust its test CA through a private mount namespace in
# which it is bind-mounted over the system CA bundle (root; the machine's
# trust is untouched); plain HTTP if that fails (the output says which).
#
# Usage: tests/bench-delta.sh [--runs N] [--install-packages] [WORKDIR]
#   --install-packages  apt-get install the tools this needs (Debian 12) even
#                       when none is missing (it does so anyway if one is)
#   WORKDIR             cache and scratch space (default work/bench-delta);
#                       the debootstrap tree, images, floor, casync store and
#                       zchunk files are kept there between runs.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/tests/bench-delta
runs=3
install=0
work=$repo/work/bench-delta
while (($#)); do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    --install-packages) install=1; shift ;;
    -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
    *) work=$1; shift ;;
    esac
done

# Debian 12 packages of the tools used; installed here (not in CI's
# test-packages.sh: the benchmark is not part of CI) when one is missing.
packages=(debootstrap e2fsprogs casync zchunk zstd gzip curl time python3 diffutils)
tools=(debootstrap mkfs.ext4 casync zck zckdl unzck zstd gzip curl dd cmp python3 /usr/bin/time)
missing() { for t in "${tools[@]}"; do command -v "$t" >/dev/null || return 0; done; return 1; }
if ((install)) || missing; then
    ((EUID == 0)) || { echo "missing tools: apt-get install -y ${packages[*]}" >&2; exit 1; }
    apt-get update
    apt-get install -y "${packages[@]}"
fi
command -v cargo >/dev/null || { echo "missing cargo" >&2; exit 1; }
((EUID == 0)) || { echo "debootstrap and mkfs.ext4 -d of a root tree need root" >&2; exit 1; }

t0=$(date +%s)
mkdir -p "$work"
work=$(cd "$work" && pwd)
echo "images (cached in $work):"
bash "$here/build-images.sh" "$work"
v1=$work/v1.ext4
v2=$work/v2.ext4
tail -1 "$work/edit.log" | sed 's/^summary: /  v2: /'
echo "  v1 tree $(du -sm "$work/tree" | cut -f1) MB, $(find "$work/tree" | wc -l) entries; images $(stat -c %s "$v1") bytes each"

# The floor, and zstd -19 of v2 for scale (both cached with the images).
if [[ ! -f $work/floor.txt || $work/floor.txt -ot $v2 ]]; then
    python3 "$here/floor.py" "$v1" "$v2" "$work" >"$work/floor.tmp"
    mv "$work/floor.tmp" "$work/floor.txt"
fi
if [[ ! -f $work/v2.zst.size || $work/v2.zst.size -ot $v2 ]]; then
    zstd -19 -T0 -q -c "$v2" | wc -c >"$work/v2.zst.size"
fi
declare -A floor
while IFS== read -r k v; do floor[$k]=$v; done <"$work/floor.txt"
zstd19=$(cat "$work/v2.zst.size")
awk -v b="${floor[blocks]}" -v same="${floor[same_offset_differ]}" -v n="${floor[novel_blocks]}" \
    -v dn="${floor[novel_distinct]}" -v nb="${floor[novel_bytes]}" -v gz="${floor[gzip9_bytes]}" \
    -v zs="${floor[zstd19_bytes]}" -v z19="$zstd19" 'BEGIN {
    printf "floor:\n"
    printf "  4 KiB blocks differing at the same offset  %d of %d (%.1f%%)\n", same, b, 100 * same / b
    printf "  v2 blocks found nowhere in v1             %d (%d distinct) = %.1f MiB\n", n, dn, nb / 1048576
    printf "  compressed: gzip -9 %.2f MB, zstd -19 %.2f MB (the floor below is gzip -9)\n", gz / 1e6, zs / 1e6
    printf "  zstd -19 of the whole v2 image             %.2f MB\n", z19 / 1e6
}'

# What the peers serve: a casync store and blob index of v2, zchunk files of
# both images (cached).
www=$work/www
mkdir -p "$www/casync" "$www/zck"
ln -f "$v2" "$www/v2.ext4"
if [[ ! -f $www/casync/v2.caibx || $www/casync/v2.caibx -ot $v2 ]]; then
    rm -rf "$www/casync/store" "$www/casync/v2.caibx"
    # casync wants the .caibx suffix on the file it writes.
    casync make --store="$www/casync/store" "$www/casync/v2-new.caibx" "$v2" >/dev/null
    mv "$www/casync/v2-new.caibx" "$www/casync/v2.caibx"
fi
for v in v1 v2; do
    if [[ ! -f $www/zck/$v.zck || $www/zck/$v.zck -ot $work/$v.ext4 ]]; then
        zck -u -h sha256 -o "$www/zck/$v.zck.tmp" "$work/$v.ext4" >/dev/null
        mv "$www/zck/$v.zck.tmp" "$www/zck/$v.zck"
    fi
done
echo "  casync store $(du -sm "$www/casync/store" | cut -f1) MB ($(find "$www/casync/store" -name '*.cacnk' | wc -l) chunks); v2.zck $(stat -c %s "$www/zck/v2.zck") bytes"
t1=$(date +%s)

echo
echo "downloads ($runs runs):"
cd "$repo"
SEESAW_BENCH_V1=$v1 SEESAW_BENCH_V2=$v2 SEESAW_BENCH_WWW=$www SEESAW_BENCH_DIR=$work \
    SEESAW_BENCH_FLOOR=${floor[gzip9_bytes]} SEESAW_BENCH_ZSTD19=$zstd19 SEESAW_BENCH_RUNS=$runs \
    cargo test --release -q -p seesaw --test bench_delta -- --ignored --nocapture 2>&1 |
    tee "$work/bench.log" | sed -n 's/^| \{0,1\}/  /p'
status=${PIPESTATUS[0]}
t2=$(date +%s)
echo
echo "time: images, floor and peer files $((t1 - t0)) s; downloads $((t2 - t1)) s"
if ((status != 0)); then
    echo "the benchmark failed; its output is in $work/bench.log" >&2
    grep -E 'panicked|Error|error' "$work/bench.log" >&2 || true
    exit "$status"
fi

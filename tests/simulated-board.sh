#!/usr/bin/env bash
# A full seesaw update cycle on a simulated board, set up from nothing:
#
#   build seesaw → build two real ext4 root filesystems (mkfs.ext4 -d) →
#   make development keys → make a signed bundle and countersign it →
#   set up a board (slot files sized like partitions, a redundant U-Boot
#   environment with fw_env.config, a kernel command line, a data dir) →
#   install into the inactive slot → show the environment before and after
#   with the real fw_printenv → simulate the reboot with the boot script's
#   algorithm → commit → status.
#
# Usage: tests/simulated-board.sh [WORKDIR]   (default: work/simulated-board)
# Environment: SEESAW_ROOTFS_TREE=DIR uses DIR as the root filesystem tree
# instead of one assembled from this machine's /usr/bin, /usr/sbin and /etc.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/work/simulated-board}
image_mib=512
slot_mib=768

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
if ! command -v fw_printenv >/dev/null || ! command -v mkfs.ext4 >/dev/null || ! command -v openssl >/dev/null; then
    step "Install the tools the board uses (libubootenv-tool, e2fsprogs, openssl)"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        libubootenv-tool e2fsprogs openssl >/dev/null
fi

step "Build seesaw (release)"
t=$(now)
(cd "$repo" && cargo build --release --quiet --bin seesaw --example simulated_uboot)
seesaw=$repo/target/release/seesaw
uboot=$repo/target/release/examples/simulated_uboot
echo "built in $(secs "$t") s"

rm -rf "$work"
mkdir -p "$work"
cd "$work"

step "Build two real ext4 root filesystem images (${image_mib} MiB, mkfs.ext4 -d)"
t=$(now)
mkdir -p tree-v1
if [[ -n ${SEESAW_ROOTFS_TREE:-} ]]; then
    cp -a "$SEESAW_ROOTFS_TREE"/. tree-v1/
else
    # A real tree: this machine's programs and configuration.
    tar -C / -cf - usr/bin usr/sbin etc 2>/dev/null | tar -C tree-v1 -xf - 2>/dev/null || true
fi
mkdir -p tree-v1/etc
echo "VERSION=1.0.0" >tree-v1/etc/seesaw-release
# v2: the same tree with about 1% of its files changed, as a rebuild would.
cp -a tree-v1 tree-v2
echo "VERSION=2.0.0" >tree-v2/etc/seesaw-release
find tree-v2 -type f -size +4k | awk 'NR % 100 == 7' | while read -r f; do
    printf 'patched by release 2.0.0\n' >>"$f"
done
head -c 3M /dev/urandom >tree-v2/etc/new-firmware-blob.bin
tree_mb=$(du -sm tree-v1 | cut -f1)
files=$(find tree-v1 -type f | wc -l)
uuid=5eea5a00-0000-4000-8000-000000000001
for v in v1 v2; do
    E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 4096 -L rootfs -U "$uuid" \
        -E hash_seed="$uuid",root_owner=0:0 -d "tree-$v" "rootfs-$v.ext4" "${image_mib}M"
done
echo "tree: $tree_mb MB in $files files; images built in $(secs "$t") s"

step "Development keys (release and fleet roles; for tests only)"
bash "$repo/keys/make-dev-keys.sh" "$work/keys" >/dev/null
ls keys

step "Signed bundles: release key signs, fleet key countersigns"
t=$(now)
"$seesaw" bundle create --image rootfs-v2.ext4 --compatible seesaw-sim-board \
    --version 2.0.0 --security-version 2 --key keys/release.pem --output update-v2.bundle
"$seesaw" bundle sign --key keys/fleet.pem update-v2.bundle
echo "bundle: $(stat -c %s update-v2.bundle) bytes for a $((image_mib)) MiB image, made in $(secs "$t") s"
"$seesaw" bundle inspect update-v2.bundle 2>/dev/null |
    grep -E '"(compatible|version|security_version|created|expires|size|sha256|chunk_size)"' | grep -v '^        ' | head -8

step "Set up the board"
mkdir -p data
truncate -s "${slot_mib}M" slot-a.img slot-b.img
dd if=rootfs-v1.ext4 of=slot-a.img bs=4M conv=notrunc,fsync status=none # factory image in A
cat >fw_env.config <<EOF
# Redundant U-Boot environment: two copies in one file on the boot partition.
$work/uboot.env 0x0000 0x4000
$work/uboot.env 0x4000 0x4000
EOF
"$uboot" init fw_env.config
cat >seesaw.toml <<EOF
compatible = "seesaw-sim-board"
data_dir = "data"
cmdline = "cmdline"
fw_env_config = "fw_env.config"
[slots.A]
device = "slot-a.img"
[slots.B]
device = "slot-b.img"
[[trust.roles]]
name = "release"
threshold = 1
keys = ["keys/release.pub"]
[[trust.roles]]
name = "fleet"
threshold = 1
keys = ["keys/fleet.pub"]
EOF
"$uboot" boot fw_env.config cmdline
echo "kernel command line: $(cat cmdline)"
ss() { "$seesaw" --config "$work/seesaw.toml" "$@"; }
ss bundle verify update-v2.bundle
ss status

step "U-Boot environment before the install (real fw_printenv)"
fw_printenv -c fw_env.config | tee env-before.txt

step "Install 2.0.0 into the inactive slot"
t=$(now)
ss install update-v2.bundle
install_s=$(secs "$t")

step "U-Boot environment after the install: only the boot contract changed"
fw_printenv -c fw_env.config | tee env-after.txt
diff env-before.txt env-after.txt || true

step "Simulated reboot: the boot script's algorithm picks the slot"
"$uboot" boot fw_env.config cmdline
echo "kernel command line: $(cat cmdline)"
ss status

step "Health confirmed: commit"
ss mark-good
fw_printenv -c fw_env.config BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
ss status
ss status --json >status.json

step "Check"
[[ $(fw_printenv -c fw_env.config -n BOOT_ORDER) == "B A" ]]
[[ $(fw_printenv -c fw_env.config -n BOOT_B_LEFT) == 3 ]]
cmp -n "$((image_mib * 1048576))" rootfs-v2.ext4 slot-b.img
cmp -n "$((image_mib * 1048576))" rootfs-v1.ext4 slot-a.img
grep -q '"floor": 2' status.json
bytes=$((image_mib * 1048576))
awk -v s="$install_s" -v b="$bytes" 'BEGIN {
    printf "slot B holds 2.0.0 byte for byte; slot A still holds 1.0.0; floor raised to 2.\n";
    printf "install: %d MiB verified, written and read back in %.2f s (%.0f MiB/s)\n", b / 1048576, s, b / 1048576 / s }'
echo "simulated board: OK ($work)"

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
# Environment: SEESAW_ROOTFS_TREE=DIR uses DIR, whole, as the root filesystem
# tree instead of one assembled from this machine's /usr/bin, /usr/sbin and
# /etc.
#
# Sizes: the image is 512 MiB and the tree fills at most 3/4 of it (the rest
# is ext4's inode tables and journal, and v2's changes). The assembled tree
# takes this machine's files in path order, each while it still fits that
# budget, so it fits on any machine and is the same on every run. A
# SEESAW_ROOTFS_TREE that needs more makes the image grow, in 64 MiB steps,
# to 4/3 of the tree. The slots are the image plus 256 MiB.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/work/simulated-board}
image_mib=512
block=4096
# mkfs.ext4's default: one inode per 16 KiB of file system.
inode_ratio=16384

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Entries under DIRS... (relative to the current directory), NUL-separated,
# in path order, each as "PATH<TAB>TYPE<TAB>BYTES".
entries() {
    { find "$@" -xdev \( -type d -o -type f -o -type l \) -printf '%p\t%y\t%s\0' 2>/dev/null || true; } |
        LC_ALL=C sort -z
}

# Picks from entries() on stdin what fits MAX_BYTES of file blocks and
# MAX_INODES inodes: every directory, and each file or symlink, in path order,
# that still fits. Prints the chosen paths NUL-separated and, on fd 3,
# "TAKEN LEFT_OUT BYTES" (files and symlinks; bytes in whole blocks).
pick() {
    local max_bytes=$1 max_inodes=$2 used=0 inodes=0 taken=0 left=0 rec rest path kind size blocks
    while IFS= read -r -d '' rec; do
        size=${rec##*$'\t'}
        rest=${rec%$'\t'*}
        kind=${rest##*$'\t'}
        path=${rest%$'\t'*}
        if [[ $kind != d ]]; then
            blocks=0
            [[ $kind == f ]] && blocks=$(((size + block - 1) / block * block))
            if ((used + blocks > max_bytes || inodes + 1 > max_inodes)); then
                left=$((left + 1))
                continue
            fi
            used=$((used + blocks))
            taken=$((taken + 1))
        fi
        inodes=$((inodes + 1))
        printf '%s\0' "$path"
    done
    echo "$taken $left $used" >&3
}

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

step "Assemble the root filesystem tree"
t=$(now)
mkdir -p tree-v1
# The tree may fill 3/4 of the image, in bytes and in inodes.
if [[ -n ${SEESAW_ROOTFS_TREE:-} ]]; then
    [[ -d $SEESAW_ROOTFS_TREE ]] || { echo "SEESAW_ROOTFS_TREE=$SEESAW_ROOTFS_TREE is not a directory" >&2; exit 1; }
    cp -a "$SEESAW_ROOTFS_TREE"/. tree-v1/
    # What the tree needs, plus v2's blob and a block more for ~1% of its
    # files; the image is 4/3 of that, in bytes and in inodes, in 64 MiB steps.
    need_mib=$(find tree-v1 \( -type d -o -type f -o -type l \) -printf '%y %s\n' |
        awk -v blk="$block" -v r="$inode_ratio" '
            { n++; if ($1 == "f") b += int(($2 + blk - 1) / blk) * blk }
            END { b += 3 * 1048576 + n / 100 * blk
                  m = b * 4 / 3 / 1048576; i = n * r * 4 / 3 / 1048576; if (i > m) m = i
                  printf "%d", int((m + 63) / 64) * 64 }')
    if ((need_mib > image_mib)); then
        image_mib=$need_mib
    fi
    echo "tree: $SEESAW_ROOTFS_TREE (SEESAW_ROOTFS_TREE), whole; image ${image_mib} MiB"
else
    # A real tree: this machine's programs and configuration, cut to fit.
    budget=$((image_mib * 1048576 * 3 / 4))
    max_inodes=$((image_mib * 1048576 / inode_ratio * 3 / 4))
    (cd / && entries usr/bin usr/sbin etc) | pick "$budget" "$max_inodes" >picked.list 3>picked.txt
    read -r taken left used <picked.txt
    tar -C / --null --no-recursion -T picked.list -cf - 2>/dev/null | tar -C tree-v1 -xf - 2>/dev/null || true
    rm -f picked.list picked.txt
    echo "tree: $taken files and links of this machine's /usr/bin, /usr/sbin and /etc in path order," \
        "$((used / 1048576)) MiB (the budget is $((budget / 1048576)) MiB);" \
        "$left left out to fit the ${image_mib} MiB image"
fi
slot_mib=$((image_mib + 256))
mkdir -p tree-v1/etc
echo "VERSION=1.0.0" >tree-v1/etc/seesaw-release
echo "assembled in $(secs "$t") s"

step "Build two real ext4 root filesystem images (${image_mib} MiB, mkfs.ext4 -d)"
t=$(now)
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

#!/usr/bin/env bash
# Benchmark: a full install of a 512 MiB real root filesystem image into a
# slot, next to the physical limits measured in the same run on the same
# image and slot file:
#   dd bs=4M conv=fsync            writing the image, nothing checked
#   openssl dgst -sha256           hashing the image once, nothing written
# seesaw does both and more: per-chunk SHA-256 before every write, zstd
# decompression, a read-back of the whole slot from the device hashed
# against the signed image digest, fdatasync, and the environment flip.
#
# Usage: tests/bench-install.sh [--runs N] [--debootstrap] [WORKDIR]
#   --debootstrap  build the tree with debootstrap (minbase bookworm plus
#                  systemd, udev, python3, perl, openssh-server, curl: the
#                  image peer tools were measured on) instead of assembling
#                  it from this machine's /usr/bin, /usr/sbin and /etc.
# Prints each run, then medians, ratios and seesaw's peak RSS.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=5
deboot=0
work=$repo/work/bench-install
while (($#)); do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    --debootstrap) deboot=1; shift ;;
    *) work=$1; shift ;;
    esac
done
for tool in cargo mkfs.ext4 openssl dd fw_printenv /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y libubootenv-tool e2fsprogs openssl time" >&2; exit 1; }
done

(cd "$repo" && cargo build --release --quiet --bin seesaw --example simulated_uboot)
seesaw=$repo/target/release/seesaw
uboot=$repo/target/release/examples/simulated_uboot
mkdir -p "$work"
cd "$work"

if [[ ! -f rootfs.ext4 ]]; then
    rm -rf tree
    if ((deboot)); then
        mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
        debootstrap --variant=minbase --include=systemd,udev,python3,perl,openssh-server,curl \
            bookworm tree "$mirror" >debootstrap.log
    else
        mkdir tree
        tar -C / -cf - usr/bin usr/sbin etc 2>/dev/null | tar -C tree -xf - 2>/dev/null || true
    fi
    uuid=5eea5a00-0000-4000-8000-000000000002
    E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 4096 -U "$uuid" \
        -E hash_seed="$uuid",root_owner=0:0 -d tree rootfs.ext4 512M
    rm -rf keys
fi
if [[ ! -f keys/release.pem ]]; then
    bash "$repo/keys/make-dev-keys.sh" "$work/keys" >/dev/null
fi
if [[ ! -f update.bundle || rootfs.ext4 -nt update.bundle ]]; then
    "$seesaw" bundle create --image rootfs.ext4 --compatible bench-board --version 1.0.0 \
        --security-version 1 --key keys/release.pem --output update.bundle 2>/dev/null
fi
echo "image: $(du -sm tree 2>/dev/null | cut -f1) MB tree, 512 MiB ext4; bundle $(stat -c %s update.bundle) bytes"

truncate -s 640M slot-a.img slot-b.img
cat >fw_env.config <<EOF
$work/uboot.env 0x0000 0x4000
$work/uboot.env 0x4000 0x4000
EOF
cat >seesaw.toml <<EOF
compatible = "bench-board"
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
EOF

fresh_board() {
    rm -rf data uboot.env
    "$uboot" init fw_env.config
    echo "seesaw.slot=A" >cmdline
    sync
}
timed() { # prints "seconds peak_kib" for a command
    /usr/bin/time -f "%e %M" -o time.out "$@" >/dev/null 2>cmd.err || { cat cmd.err >&2; exit 1; }
    cat time.out
}

declare -a t_dd t_ssl t_seesaw rss_seesaw
for ((r = 1; r <= runs; r++)); do
    fresh_board
    read -r s _ < <(timed dd if=rootfs.ext4 of=slot-b.img bs=4M conv=fsync,notrunc)
    t_dd+=("$s")
    read -r s _ < <(timed openssl dgst -sha256 rootfs.ext4)
    t_ssl+=("$s")
    fresh_board
    read -r s kib < <(timed "$seesaw" --config seesaw.toml install update.bundle)
    t_seesaw+=("$s")
    rss_seesaw+=("$kib")
    cmp -n 536870912 rootfs.ext4 slot-b.img || { echo "slot B differs from the image" >&2; exit 1; }
    printf 'run %d: dd %.2f s, openssl sha256 %.2f s, seesaw install %.2f s (peak RSS %d KiB)\n' \
        "$r" "${t_dd[-1]}" "${t_ssl[-1]}" "$s" "$kib"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m_dd=$(median "${t_dd[@]}")
m_ssl=$(median "${t_ssl[@]}")
m_ss=$(median "${t_seesaw[@]}")
m_rss=$(median "${rss_seesaw[@]}")
echo
echo "median of $runs runs, 512 MiB image:"
awk -v dd="$m_dd" -v ssl="$m_ssl" -v ss="$m_ss" -v rss="$m_rss" 'BEGIN {
    printf "  dd bs=4M conv=fsync      %6.2f s\n", dd
    printf "  openssl dgst -sha256     %6.2f s\n", ssl
    printf "  seesaw install           %6.2f s  = %.2f x dd, %.2f x openssl, %.0f MiB/s\n", ss, ss / dd, ss / ssl, 512 / ss
    printf "  seesaw peak RSS          %6.1f MiB\n", rss / 1024
}'

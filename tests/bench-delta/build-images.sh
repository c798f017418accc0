#!/usr/bin/env bash
# Builds the image pair of the delta benchmark, cached in WORKDIR:
#   v1.ext4  debootstrap --variant=minbase bookworm plus systemd, udev,
#            python3, perl, openssh-server, curl, without the package cache
#            and lists, packed with mkfs.ext4 -d into 512 MiB with a fixed
#            UUID, hash seed and time;
#   v2.ext4  a copy of the same tree with about 1% of its files changed or
#            added (tests/bench-delta/edit-tree.py, seeded), packed the same
#            way, as a build system regenerating the root filesystem does.
# The debootstrap mirror is the first one of this machine's apt sources.
# Usage: tests/bench-delta/build-images.sh WORKDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: build-images.sh WORKDIR}
mkdir -p "$work"
cd "$work"

uuid=5eea5a00-0000-4000-8000-0000000000d1
pack() { # pack TREE IMAGE
    E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 4096 -U "$uuid" \
        -E hash_seed="$uuid",root_owner=0:0 -d "$1" "$2.tmp" 512M >/dev/null
    mv "$2.tmp" "$2"
}

if [[ ! -f tree.done ]]; then
    rm -rf tree
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
    [[ -n $mirror ]] || { echo "no apt mirror found in this machine's sources" >&2; exit 1; }
    echo "  debootstrap bookworm from $mirror (a few minutes)"
    debootstrap --variant=minbase --include=systemd,udev,python3,perl,openssh-server,curl \
        bookworm tree "$mirror" >debootstrap.log 2>&1 ||
        { tail -20 debootstrap.log >&2; exit 1; }
    # What `apt-get clean` and an image build drop: downloaded packages and
    # package lists of the build machine.
    rm -rf tree/var/cache/apt/*.bin tree/var/cache/apt/archives/*.deb
    find tree/var/lib/apt/lists -maxdepth 1 -type f ! -name lock -delete
    touch tree.done
    rm -f v1.ext4 v2.ext4
fi
if [[ ! -f v1.ext4 ]]; then
    pack tree v1.ext4
    rm -f v2.ext4
fi
if [[ ! -f v2.ext4 ]]; then
    rm -rf tree-v2
    cp -a tree tree-v2
    python3 "$here/edit-tree.py" tree-v2 >edit.log
    pack tree-v2 v2.ext4
fi

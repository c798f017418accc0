#!/usr/bin/env bash
# Checks of the Yocto layer yocto-layer/meta-seesaw that need no bitbake
# build host (CI has none):
#   1. oelint-adv over every recipe, bbappend, class and .inc, for the
#      releases in LAYERSERIES_COMPAT; any finding fails, except the ones
#      suppressed inline in the recipes (# nooelint: <rule>, each with the
#      reason in a comment next to it) and the two listed below for the
#      generated crates .inc;
#   2. seesaw-crates.inc in sync with Cargo.lock: regenerated with
#      yocto-layer/scripts/gen-crates-inc.py and compared;
#   3. tests/yocto_consistency.py: kickstarts, fw_env.config, U-Boot
#      fragments and boot scripts agree, with both copies of the redundant
#      U-Boot environment (raw copies outside every partition, apart from
#      each other and from the boot loader); and its --self-test, which
#      feeds it mismatched copies and expects each to fail;
#   4. if a seesaw binary is at hand (SEESAW_BIN, or target/release or
#      target/debug), the bundle class's helper makes and signs a bundle of a
#      small ext4 image with throw-away keys.
# oelint-adv is installed with pip into work/oelint-venv on first use.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
layer=yocto-layer/meta-seesaw
start=$(date +%s)
OELINT_VERSION=9.11.2
venv="$repo/work/oelint-venv"

echo "== oelint-adv $OELINT_VERSION"
if ! "$venv/bin/oelint-adv" --version 2>/dev/null | grep -qx "oelint-adv $OELINT_VERSION"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "oelint-adv==$OELINT_VERSION"
fi
mapfile -t files < <(find "$layer" \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' -o -name '*.inc' \) | sort)
echo "linting ${#files[@]} files"
status=0
for release in wrynose blacksail; do
    out=$("$venv/bin/oelint-adv" --quiet --mode all --release "$release" --relpaths "${files[@]}" 2>&1 || true)
    # seesaw-crates.inc is written by oe-core's own "bitbake -c update_crates"
    # (and byte for byte the same by gen-crates-inc.py); its 'SRC_URI += " \'
    # opening is that tool's format, which these two rules dislike. An inline
    # suppression would be lost on every regeneration, so they are let
    # through here, for that file only.
    left=$(grep -v -E "seesaw-crates\.inc:[0-9]+:(error|info):oelint\.vars\.(inconspaces|notneededspace):" <<<"$out" || true)
    if [ -n "$left" ]; then
        echo "oelint-adv --release $release findings:"
        echo "$left"
        status=1
    else
        echo "oelint-adv --release $release: clean"
    fi
done
[ "$status" -eq 0 ] || { echo "FAIL: oelint-adv"; exit 1; }

echo "== crates .inc in sync with Cargo.lock"
inc="$layer/recipes-seesaw/seesaw/seesaw-crates.inc"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
python3 yocto-layer/scripts/gen-crates-inc.py Cargo.lock "$tmp"
if ! diff -u "$inc" "$tmp"; then
    echo "FAIL: $inc is out of date; run:"
    echo "  python3 yocto-layer/scripts/gen-crates-inc.py Cargo.lock $inc"
    exit 1
fi
echo "$(grep -c 'crate://' "$inc") crates, in sync"

echo "== kickstarts, fw_env.config and boot scripts agree"
python3 tests/yocto_consistency.py
echo "== consistency check self-test (mismatched inputs must fail)"
python3 tests/yocto_consistency.py --self-test

echo "== bundle helper (classes/seesaw-bundle.bbclass)"
bin=${SEESAW_BIN:-}
for b in target/release/seesaw target/debug/seesaw; do
    if [ -z "$bin" ] && [ -x "$b" ]; then bin="$repo/$b"; fi
done
if [ -n "$bin" ] && command -v mkfs.ext4 >/dev/null && command -v openssl >/dev/null; then
    w=$(mktemp -d)
    trap 'rm -f "$tmp"; rm -rf "$w"' EXIT
    bash keys/make-dev-keys.sh "$w/keys" >/dev/null 2>&1
    mkdir "$w/root" && echo "seesaw yocto check" > "$w/root/hello"
    truncate -s 8M "$w/rootfs.ext4" && mkfs.ext4 -q -d "$w/root" "$w/rootfs.ext4"
    "$layer/scripts/seesaw-make-bundle" --seesaw "$bin" --image "$w/rootfs.ext4" \
        --compatible raspberrypi4-64 --version 1.2.3 --security-version 4 \
        --key "$w/keys/release.pem" --countersign-key "$w/keys/fleet.pem" --output "$w/b.seesaw"
    cat > "$w/seesaw.toml" <<TOML
compatible = "raspberrypi4-64"
data_dir = "$w/data"
[slots.A]
device = "$w/a"
[slots.B]
device = "$w/b"
[[trust.roles]]
name = "release"
threshold = 1
keys = ["$w/keys/release.pub"]
[[trust.roles]]
name = "fleet"
threshold = 1
keys = ["$w/keys/fleet.pub"]
TOML
    "$bin" --config "$w/seesaw.toml" bundle verify "$w/b.seesaw"
    if "$layer/scripts/seesaw-make-bundle" --seesaw "$bin" --image "$w/rootfs.ext4" --compatible x \
        --version 1.2.3 --security-version 1 --key "$w/keys/release.pub" --output "$w/c" 2>/dev/null; then
        echo "FAIL: the helper signed with a public key"; exit 1
    fi
    echo "bundle made, countersigned and verified; a public key as signing key is refused"
else
    echo "skipped: no seesaw binary (build it, or set SEESAW_BIN), mkfs.ext4 or openssl"
fi

echo "yocto checks passed in $(( $(date +%s) - start )) s"

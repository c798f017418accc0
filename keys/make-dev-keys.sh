#!/usr/bin/env bash
###########################################################################
#                                                                         #
#   WARNING: THESE KEYS ARE FOR TESTS AND DEVELOPMENT ONLY.               #
#                                                                         #
#   They are made on an ordinary workstation, kept unencrypted on disk,   #
#   and anyone with a copy of the tree may have them. NEVER put them, or  #
#   their public halves, into a product image: a device that trusts them  #
#   installs anything signed by anyone who has them.                      #
#   Real keys: see keys/README.md.                                        #
#                                                                         #
###########################################################################
#
# Makes two ed25519 key pairs for seesaw's trust roles:
#   release.pem / release.pub   signs what is built and released
#   fleet.pem   / fleet.pub     counter-signs what is rolled out
# *.pem is the private key (PKCS#8 PEM), *.pub the public key
# (SubjectPublicKeyInfo PEM), the same formats `seesaw keygen --out PREFIX`
# writes.
#
# Usage: make-dev-keys.sh [--force] [DIR]
#   DIR      where to write the keys (default: keys/dev next to this script)
#   --force  replace keys that already exist
set -euo pipefail

usage() {
    echo "usage: $0 [--force] [DIR]" >&2
    exit 2
}

force=0
dir=""
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) usage ;;
        -*) echo "unknown option: $arg" >&2; usage ;;
        *)
            if [ -n "$dir" ]; then usage; fi
            dir="$arg"
            ;;
    esac
done
if [ -z "$dir" ]; then
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/dev"
fi

command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 1; }

roles=(release fleet)

if [ "$force" -ne 1 ]; then
    for role in "${roles[@]}"; do
        for ext in pem pub; do
            if [ -e "$dir/$role.$ext" ]; then
                echo "refusing to overwrite $dir/$role.$ext (use --force)" >&2
                exit 1
            fi
        done
    done
fi

mkdir -p "$dir"
umask 077
for role in "${roles[@]}"; do
    openssl genpkey -algorithm ed25519 -out "$dir/$role.pem.tmp"
    openssl pkey -in "$dir/$role.pem.tmp" -pubout -out "$dir/$role.pub.tmp"
    chmod 600 "$dir/$role.pem.tmp"
    chmod 644 "$dir/$role.pub.tmp"
    mv -f "$dir/$role.pem.tmp" "$dir/$role.pem"
    mv -f "$dir/$role.pub.tmp" "$dir/$role.pub"
    echo "wrote $dir/$role.pem (private) and $dir/$role.pub (public)"
done
echo "DEVELOPMENT KEYS ONLY -- never ship them in a product image." >&2

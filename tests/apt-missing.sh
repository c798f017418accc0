#!/usr/bin/env bash
# Sourced by the package installers: apt_install_missing PKG... installs
# with apt-get the Debian packages of the list that are not installed yet
# (apt-get update first, only when something is missing). Uses sudo when not
# root.
apt_install_missing() {
    local sudo= p
    local missing=()
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

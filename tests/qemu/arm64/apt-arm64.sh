#!/usr/bin/env bash
# Sourced by the arm64 test board's build scripts: a private apt for Debian
# 12 "bookworm" arm64 packages and bookworm sources, with its own state,
# cache and sources list under DIR. The host's apt configuration, package
# lists and installed packages are never touched.
#
#   . apt-arm64.sh; apt_arm64_init DIR
#   apt_arm64 download PKG...        arm64 .debs into the current directory
#   apt_arm64 source --download-only u-boot
#   apt_arm64_cache showsrc u-boot   (apt-cache)
#
# The mirror is the one the host's apt already uses for bookworm (no fixed
# host name). Only the bookworm suite: the same one the x86_64 board's
# debootstrap uses, so an arm64 package has the version of the amd64 one.

apt_arm64_mirror() {
    local m
    m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    if [ -z "$m" ]; then
        echo "apt-arm64: no bookworm apt source found on this machine" >&2
        return 1
    fi
    echo "$m"
}

apt_arm64_init() {
    APT_ARM64_DIR=$1
    local d=$APT_ARM64_DIR mirror
    mirror=$(apt_arm64_mirror) || return 1
    mkdir -p "$d/etc/preferences.d" "$d/state/lists/partial" "$d/cache/archives/partial"
    : >"$d/status"
    cat >"$d/etc/sources.list" <<SRC
deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main
SRC
    cat >"$d/apt.conf" <<CONF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::Etc::SourceList "$d/etc/sources.list";
Dir::Etc::SourceParts "-";
Dir::Etc::Preferences "-";
Dir::Etc::PreferencesParts "$d/etc/preferences.d";
Dir::State "$d/state";
Dir::State::status "$d/status";
Dir::Cache "$d/cache";
APT::Sandbox::User "root";
APT::Get::AllowUnauthenticated "false";
Acquire::Languages "none";
CONF
    if [ ! -f "$d/updated" ]; then
        APT_CONFIG=$d/apt.conf apt-get -q update >"$d/update.log" 2>&1 || {
            tail -20 "$d/update.log" >&2
            return 1
        }
        touch "$d/updated"
    fi
}

apt_arm64() {
    APT_CONFIG=$APT_ARM64_DIR/apt.conf apt-get -q "$@"
}

apt_arm64_cache() {
    APT_CONFIG=$APT_ARM64_DIR/apt.conf apt-cache "$@"
}

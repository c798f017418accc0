#!/usr/bin/env bash
# Installs the Debian packages the seesaw tests use (real tools, never fakes):
#   libubootenv-tool  fw_printenv / fw_setenv: U-Boot environment compatibility
#   u-boot-tools      mkimage / dumpimage: compiling the boot scripts
#   e2fsprogs         mkfs.ext4 -d: real root filesystem images
#   zstd, openssl     reference tools for bundles, keys and benchmarks
#   systemd, dbus     systemd-analyze, journalctl, dbus-daemon, busctl
#   python3-venv      the Yocto layer lint (oelint-adv from PyPI)
#   time              peak RSS in the benchmarks
#   mosquitto         the MQTT broker of the fleet tests (TLS, client certificates, ACLs)
#   mosquitto-clients mosquitto_pub / mosquitto_sub: checking the broker's ACLs
#   systemd-journal-remote  writes the journal events a test receives into a
#                     real journal file, read back with journalctl
# and, through qemu-packages.sh, QEMU and U-Boot for the boot script tests.
# Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=apt-missing.sh
. "$here/apt-missing.sh"

packages=(libubootenv-tool u-boot-tools e2fsprogs zstd openssl ca-certificates systemd dbus python3-venv time mosquitto mosquitto-clients systemd-journal-remote)
apt_install_missing "${packages[@]}"
bash "$here/qemu-packages.sh"

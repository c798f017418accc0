# nooelint: oelint.bbclass.underscores
# (The class names seesaw-common and seesaw-bundle follow the recipe names;
# seesaw-bundle is the name the layer's users were promised.)
#
# seesaw-common: settings shared by every seesaw recipe, the example image
# and the bundle class. Everything here is a default: override it in
# local.conf, a distro configuration or a machine configuration.
#
# The board families are told apart by the machine overrides of the BSP
# layers: "rpi" (meta-raspberrypi, every Raspberry Pi machine) and the
# machine name for i.MX boards (each i.MX board has its own eMMC number and
# U-Boot environment location, so each is listed by name).

#
# SEESAW_SRC_TREE (the seesaw tree) and SEESAW_BOOTSCRIPTS_DIR (its
# bootloader-scripts/) are set in conf/layer.conf.
# Which boot script the board uses: rpi, imx or env-file
# (bootloader-scripts/README.md). Empty: the board is not supported yet.
SEESAW_BOOT_VARIANT ??= ""
SEESAW_BOOT_VARIANT:rpi ??= "rpi"
SEESAW_BOOT_VARIANT:imx8mm-lpddr4-evk ??= "imx"

# The disk both slots live on, as Linux names it. Raspberry Pi: the SD card
# (mmc 0 in U-Boot). imx8mm-lpddr4-evk: the eMMC (uSDHC3, mmc 2 in U-Boot).
SEESAW_DISK ??= ""
SEESAW_DISK:rpi ??= "/dev/mmcblk0"
SEESAW_DISK:imx8mm-lpddr4-evk ??= "/dev/mmcblk2"

# Partition layout, the same for every board (wic/*.wks*):
#   p1 boot (FAT), p2 slot A, p3 slot B, p4 data (/var/lib/seesaw).
SEESAW_BOOT_DEVICE ?= "${SEESAW_DISK}p1"
SEESAW_SLOT_A_DEVICE ?= "${SEESAW_DISK}p2"
SEESAW_SLOT_B_DEVICE ?= "${SEESAW_DISK}p3"
SEESAW_DATA_DEVICE ?= "${SEESAW_DISK}p4"
# Size of one slot in KiB; the kickstart files use the same (2048M).
SEESAW_SLOT_SIZE_KB ?= "2097152"

# The kickstart file of the board family.
SEESAW_WKS_FILE ??= ""
SEESAW_WKS_FILE:rpi ??= "seesaw-rpi.wks"
SEESAW_WKS_FILE:imx8mm-lpddr4-evk ??= "seesaw-imx.wks.in"

# i.MX: the boot loader image wic copies in front of the first partition
# (meta-freescale's imx-boot; "imx-boot.tagged" in some releases).
SEESAW_IMX_BOOT_FILE ?= "imx-boot"
# i.MX: where the two copies of U-Boot's environment sit on the raw eMMC
# (CONFIG_ENV_OFFSET and CONFIG_ENV_OFFSET_REDUND; must match fw_env.config
# and the U-Boot fragment seesaw-env-imx.cfg). Both lie between imx-boot
# and the first partition (8 MiB); the image recipe checks that imx-boot
# ends before the lower one.
SEESAW_ENV_OFFSET ??= ""
SEESAW_ENV_OFFSET:imx8mm-lpddr4-evk ??= "0x400000"
SEESAW_ENV_OFFSET_REDUND ??= ""
SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x500000"

# Where the boot partition is mounted in Linux (rpi and env-file variants,
# whose U-Boot environment is a file on it; see fw_env.config). Not /boot:
# that is where the slot's own kernel lives.
SEESAW_BOOT_MOUNTPOINT ?= "/boot/firmware"
# Where the data partition is mounted: seesaw's data_dir.
SEESAW_DATA_DIR ?= "${localstatedir}/lib/seesaw"

# /etc/seesaw/seesaw.toml
SEESAW_COMPATIBLE ?= "${MACHINE}"
SEESAW_CMDLINE ?= "/proc/cmdline"
SEESAW_FW_ENV_CONFIG ?= "${sysconfdir}/fw_env.config"

# Trust roles: each role needs SEESAW_TRUST_THRESHOLD[role] signatures from
# the public keys SEESAW_TRUST_KEYFILES[role] (file names in
# SEESAW_TRUST_KEYS_DIR; default "<role>.pub").
SEESAW_TRUST_ROLES ?= "release fleet"
SEESAW_TRUST_THRESHOLD[release] ?= "1"
SEESAW_TRUST_THRESHOLD[fleet] ?= "1"
# Directory on the build host holding the PUBLIC keys (set it in local.conf).
# Never a private key: the seesaw-keys recipe refuses any.
SEESAW_TRUST_KEYS_DIR ?= ""
# "1": use the development keys of keys/make-dev-keys.sh (keys/dev in the
# seesaw tree). For development boards only, never for a product.
SEESAW_DEV_KEYS ?= "0"
SEESAW_DEV_KEYS_DIR ?= "${SEESAW_SRC_TREE}/keys/dev"

# mkimage's -A for the target.
SEESAW_MKIMAGE_ARCH ?= "${@seesaw_mkimage_arch(d)}"

def seesaw_mkimage_arch(d):
    arch = d.getVar('TARGET_ARCH') or ''
    if arch == 'aarch64':
        return 'arm64'
    if arch.startswith('arm'):
        return 'arm'
    if arch in ('x86_64', 'i586', 'i686'):
        return 'x86'
    return arch

def seesaw_role_keyfiles(d, role):
    """The public key file names (in SEESAW_TRUST_KEYS_DIR) of one role."""
    files = d.getVarFlag('SEESAW_TRUST_KEYFILES', role)
    if files:
        return files.split()
    return ['%s.pub' % role]

def seesaw_role_threshold(d, role):
    threshold = d.getVarFlag('SEESAW_TRUST_THRESHOLD', role) or '1'
    if not threshold.isdigit() or int(threshold) < 1:
        bb.fatal('seesaw: SEESAW_TRUST_THRESHOLD[%s] = "%s" is not a positive integer' % (role, threshold))
    if int(threshold) > len(seesaw_role_keyfiles(d, role)):
        bb.fatal('seesaw: SEESAW_TRUST_THRESHOLD[%s] = %s is above the number of keys of the role (%s)'
                 % (role, threshold, ' '.join(seesaw_role_keyfiles(d, role))))
    return threshold

def seesaw_keys_dir(d):
    """The directory the public trust keys are taken from, or '' if none."""
    if d.getVar('SEESAW_DEV_KEYS') == '1':
        return d.getVar('SEESAW_DEV_KEYS_DIR')
    return d.getVar('SEESAW_TRUST_KEYS_DIR') or ''

def seesaw_trust_toml(d):
    """The [[trust.roles]] part of seesaw.toml."""
    keydir = d.expand('${sysconfdir}/seesaw/keys')
    out = []
    for role in (d.getVar('SEESAW_TRUST_ROLES') or '').split():
        keys = ', '.join('"%s/%s"' % (keydir, f) for f in seesaw_role_keyfiles(d, role))
        out.append('[[trust.roles]]\nname = "%s"\nthreshold = %s\nkeys = [%s]\n'
                   % (role, seesaw_role_threshold(d, role), keys))
    return '\n'.join(out)

SUMMARY = "seesaw: A/B over-the-air update daemon for U-Boot boards"
DESCRIPTION = "Verifies a signed bundle, streams the image into the slot \
               that is not running, flips the U-Boot environment \
               (BOOT_ORDER, BOOT_x_LEFT) and commits the new slot once it is \
               confirmed good."
# (seesaw has no public home page yet; .invalid marks the placeholder.)
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://seesaw.invalid/"
BUGTRACKER = "https://seesaw.invalid/issues"
SECTION = "admin"
CVE_PRODUCT = "seesaw"
LICENSE = "Apache-2.0 | MIT"
# The workspace Cargo.toml carries the licence ("Apache-2.0 OR MIT", line 9).
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=9;endline=9;md5=b62ec12929096a5479d83e0aae7a4fe2"

inherit cargo cargo-update-recipe-crates systemd seesaw-common

# Same as the workspace version in Cargo.toml.
PV = "0.1.0+git"

# The source is the seesaw tree this layer sits in, fetched with git from the
# local checkout, so the build uses exactly what is committed there. A team
# that mirrors the repository points SEESAW_GIT_URI at its server and pins
# SRCREV (and regenerates seesaw-crates.inc with
# "bitbake -c update_crates seesaw" when Cargo.lock changes).
SEESAW_GIT_URI ?= "git://${SEESAW_SRC_TREE};protocol=file;branch=main"
SRC_URI = "${SEESAW_GIT_URI}"
SRC_URI:append:class-target = " file://fw_env.config"
# (AUTOREV follows the checkout the layer sits in, so the layer always builds
# the seesaw it came with; CI checks seesaw-crates.inc against that tree's
# Cargo.lock. A product build pins SRCREV in its distro or local.conf.)
# nooelint: oelint.vars.autorev
SRCREV ?= "${AUTOREV}"

# Every crate from Cargo.lock, fetched by do_fetch: the build itself needs
# no network (cargo runs with --frozen against the vendored crates).
require ${BPN}-crates.inc

# The repository is a Cargo workspace; the crate is daemon/. cargo finds the
# workspace root (and its Cargo.lock) from daemon/Cargo.toml; the lock file
# is only rewritten by the cargo class when git dependencies are patched,
# and seesaw has none.
CARGO_SRC_DIR = "daemon"
CARGO_LOCK_SRC_DIR = "${S}"
CARGO_BUILD_FLAGS:append = " --bin seesaw"

SYSTEMD_SERVICE:${PN} = "seesaw.service ${@' '.join(seesaw_mount_units(d))}"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

def seesaw_unit_name(path, suffix):
    """systemd's escaping of a path into a unit name (systemd-escape --path)."""
    path = path.strip('/')
    out = []
    for i, c in enumerate(path):
        if c == '/':
            out.append('-')
        elif c.isalnum() or c in ':_' or (c == '.' and i > 0):
            out.append(c)
        else:
            out.append('\\x%02x' % ord(c))
    return ''.join(out) + suffix

def seesaw_mount_boot(d):
    # The boot partition is mounted where the U-Boot environment files are:
    # rpi (uboot.env, uboot-redund.env) and env-file (seesaw.env,
    # seesaw-redund.env). i.MX keeps its two copies on raw eMMC.
    return d.getVar('SEESAW_BOOT_VARIANT') in ('rpi', 'env-file')

def seesaw_mount_units(d):
    units = [seesaw_unit_name(d.getVar('SEESAW_DATA_DIR'), '.mount')]
    if seesaw_mount_boot(d):
        units.append(seesaw_unit_name(d.getVar('SEESAW_BOOT_MOUNTPOINT'), '.mount'))
    return units

# (Needed: a machine without SEESAW_BOOT_VARIANT must skip the recipe with a
# message saying what to set, not fail later in do_install.)
# nooelint: oelint.task.noanonpython
python () {
    if bb.data.inherits_class('native', d):
        return
    variant = d.getVar('SEESAW_BOOT_VARIANT')
    if variant not in ('rpi', 'imx', 'env-file'):
        raise bb.parse.SkipRecipe('seesaw: machine %s has no SEESAW_BOOT_VARIANT (rpi, imx or env-file); '
                                  'set SEESAW_BOOT_VARIANT and SEESAW_DISK for it (see meta-seesaw/README.md)'
                                  % d.getVar('MACHINE'))
    if not d.getVar('SEESAW_DISK'):
        raise bb.parse.SkipRecipe('seesaw: SEESAW_DISK is not set for machine %s' % d.getVar('MACHINE'))
}

python seesaw_write_config () {
    import os
    b = d.getVar('B')
    toml = [
        '# seesaw configuration, written by the seesaw recipe (meta-seesaw).',
        '# Variables: SEESAW_COMPATIBLE, SEESAW_DATA_DIR, SEESAW_SLOT_A_DEVICE, ...',
        'compatible = "%s"' % d.getVar('SEESAW_COMPATIBLE'),
        'data_dir = "%s"' % d.getVar('SEESAW_DATA_DIR'),
        'cmdline = "%s"' % d.getVar('SEESAW_CMDLINE'),
        'fw_env_config = "%s"' % d.getVar('SEESAW_FW_ENV_CONFIG'),
        '',
        '[slots.A]',
        'device = "%s"' % d.getVar('SEESAW_SLOT_A_DEVICE'),
        '',
        '[slots.B]',
        'device = "%s"' % d.getVar('SEESAW_SLOT_B_DEVICE'),
        '',
    ]
    with open(os.path.join(b, 'seesaw.toml'), 'w') as f:
        f.write('\n'.join(toml) + '\n' + seesaw_trust_toml(d))

    data_dir = d.getVar('SEESAW_DATA_DIR')
    mounts = [(data_dir, d.getVar('SEESAW_DATA_DEVICE'), 'ext4', 'defaults,noatime',
               'seesaw data partition (state, shared by both slots)')]
    if seesaw_mount_boot(d):
        mounts.append((d.getVar('SEESAW_BOOT_MOUNTPOINT'), d.getVar('SEESAW_BOOT_DEVICE'), 'vfat',
                       'defaults,noatime', 'boot partition (U-Boot environment file)'))
    for where, what, fstype, options, desc in mounts:
        with open(os.path.join(b, seesaw_unit_name(where, '.mount')), 'w') as f:
            f.write('[Unit]\nDescription=%s\nDefaultDependencies=no\n'
                    'Conflicts=umount.target\nBefore=local-fs.target umount.target\n\n'
                    '[Mount]\nWhat=%s\nWhere=%s\nType=%s\nOptions=%s\n\n'
                    '[Install]\nWantedBy=local-fs.target\n' % (desc, what, where, fstype, options))
    with open(os.path.join(b, '10-seesaw-mounts.conf'), 'w') as f:
        f.write('# Written by the seesaw recipe: seesaw needs its data partition and\n'
                '# the partition holding the U-Boot environment file.\n[Unit]\nRequiresMountsFor=%s\n'
                % ' '.join(m[0] for m in mounts))
}
seesaw_write_config[doc] = "Writes seesaw.toml, the mount units and the seesaw.service drop-in into B"
do_install[prefuncs] += "${@'' if bb.data.inherits_class('native', d) else 'seesaw_write_config'}"

do_install:append:class-target () {
    # systemd unit, D-Bus policy and interface, watchdog drop-in, catalog
    install -d ${D}${systemd_system_unitdir}/seesaw.service.d
    install -m 0644 ${S}/systemd/seesaw.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${B}/10-seesaw-mounts.conf ${D}${systemd_system_unitdir}/seesaw.service.d/
    for unit in ${@' '.join(seesaw_mount_units(d))}; do
        install -m 0644 "${B}/$unit" ${D}${systemd_system_unitdir}/
    done
    install -d ${D}${datadir}/dbus-1/system.d ${D}${datadir}/dbus-1/interfaces
    install -m 0644 ${S}/systemd/org.seesaw.Updater1.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${S}/systemd/org.seesaw.Updater1.xml ${D}${datadir}/dbus-1/interfaces/
    install -d ${D}${systemd_unitdir}/system.conf.d
    install -m 0644 ${S}/systemd/10-seesaw-watchdog.conf ${D}${systemd_unitdir}/system.conf.d/
    install -d ${D}${nonarch_libdir}/systemd/catalog
    install -m 0644 ${S}/systemd/seesaw.catalog ${D}${nonarch_libdir}/systemd/catalog/

    # configuration and the board's U-Boot environment location
    install -d ${D}${sysconfdir}/seesaw
    install -m 0644 ${B}/seesaw.toml ${D}${sysconfdir}/seesaw/seesaw.toml
    install -d ${D}$(dirname ${SEESAW_FW_ENV_CONFIG})
    install -m 0644 ${UNPACKDIR}/fw_env.config ${D}${SEESAW_FW_ENV_CONFIG}

    # mount points (the root file system is read-only on the device)
    install -d ${D}${SEESAW_DATA_DIR}
    if ${@'true' if seesaw_mount_boot(d) else 'false'}; then
        install -d ${D}${SEESAW_BOOT_MOUNTPOINT}
    fi
}

PACKAGE_ARCH:class-target = "${MACHINE_ARCH}"

FILES:${PN}:append:class-target = " \
    ${systemd_system_unitdir} \
    ${systemd_unitdir}/system.conf.d \
    ${nonarch_libdir}/systemd/catalog \
    ${datadir}/dbus-1/system.d \
    ${datadir}/dbus-1/interfaces \
    ${SEESAW_FW_ENV_CONFIG} \
    ${SEESAW_DATA_DIR} \
    ${@d.getVar('SEESAW_BOOT_MOUNTPOINT') if seesaw_mount_boot(d) else ''} \
"
CONFFILES:${PN}:class-target = "${sysconfdir}/seesaw/seesaw.toml ${SEESAW_FW_ENV_CONFIG}"

RDEPENDS:${PN}:append:class-target = " seesaw-keys"
# fw_printenv/fw_setenv for people; seesaw itself reads the environment natively.
RRECOMMENDS:${PN}:append:class-target = " libubootenv-bin"

# seesaw-native runs "seesaw bundle create" for classes/seesaw-bundle.bbclass.
BBCLASSEXTEND = "native"

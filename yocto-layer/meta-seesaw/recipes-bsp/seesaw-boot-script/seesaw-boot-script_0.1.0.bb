SUMMARY = "seesaw A/B U-Boot boot script (boot.scr)"
DESCRIPTION = "Compiles the seesaw boot script of the board's variant \
               (bootloader-scripts/<variant>/boot.cmd in the seesaw tree) with \
               mkimage and deploys boot.scr for the boot partition. Raspberry \
               Pi machines get theirs from rpi-u-boot-scr instead \
               (dynamic-layers/raspberrypi)."
# (seesaw has no public home page yet; .invalid marks the placeholder.)
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://seesaw.invalid/"
BUGTRACKER = "https://seesaw.invalid/issues"
SECTION = "bootloaders"
CVE_PRODUCT = "seesaw"
LICENSE = "Apache-2.0 | MIT"
# (The scripts are part of seesaw, "Apache-2.0 OR MIT"; the tree has no
# licence text file of its own to point at, so the common texts are used.)
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10 \
                    file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

DEPENDS = "u-boot-tools-native"

inherit deploy seesaw-common

# The boot scripts are taken from the seesaw tree (SEESAW_BOOTSCRIPTS_DIR),
# not copied into the layer, so the board boots exactly the tested script.
# (FILESEXTRAPATHS is how a recipe reaches files outside its layer; here the
# boot scripts in the seesaw tree.)
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${SEESAW_BOOTSCRIPTS_DIR}:"
SRC_URI = "file://${SEESAW_BOOT_VARIANT}/boot.cmd"
S = "${UNPACKDIR}"

PACKAGE_ARCH = "${MACHINE_ARCH}"

# (Needed: which machines this recipe is for follows SEESAW_BOOT_VARIANT,
# which a team may set in local.conf for its own machine.)
# nooelint: oelint.task.noanonpython
python () {
    variant = d.getVar('SEESAW_BOOT_VARIANT')
    if variant == 'rpi':
        raise bb.parse.SkipRecipe('seesaw-boot-script: Raspberry Pi machines take boot.scr from rpi-u-boot-scr '
                                  '(meta-seesaw dynamic-layers/raspberrypi)')
    if variant not in ('imx', 'env-file'):
        raise bb.parse.SkipRecipe('seesaw-boot-script: machine %s has no SEESAW_BOOT_VARIANT' % d.getVar('MACHINE'))
}

do_configure[noexec] = "1"

do_compile () {
    mkimage -A ${SEESAW_MKIMAGE_ARCH} -T script -C none -n "seesaw A/B boot script" \
        -d ${S}/${SEESAW_BOOT_VARIANT}/boot.cmd ${B}/boot.scr
}

do_install[noexec] = "1"

do_deploy () {
    install -d ${DEPLOYDIR}
    install -m 0644 ${B}/boot.scr ${DEPLOYDIR}/boot.scr
}
addtask deploy after do_compile before do_build

# A boot script for the target's U-Boot: nothing to build natively.
BBCLASSEXTEND = ""

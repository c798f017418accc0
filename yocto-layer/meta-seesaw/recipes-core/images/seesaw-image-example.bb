SUMMARY = "Example image updated A/B by seesaw"
DESCRIPTION = "A small systemd image with seesaw, its trust keys, the \
               kernel in the root file system (the boot script loads it from \
               the slot) and the seesaw A/B partition layout. Builds an ext4 \
               image (the bundle input) and a wic image to flash."
# (seesaw has no public home page yet; .invalid marks the placeholder.)
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://seesaw.invalid/"
BUGTRACKER = "https://seesaw.invalid/issues"
SECTION = "images"
CVE_PRODUCT = "seesaw"
LICENSE = "MIT"

inherit core-image seesaw-common

IMAGE_FEATURES += "read-only-rootfs"
IMAGE_INSTALL:append = " seesaw kernel-image kernel-devicetree"

# ext4: the root file system of one slot, input of the bundle
# (seesaw-bundle-example). wic: the whole disk to flash.
IMAGE_FSTYPES = "ext4 wic.bz2 wic.bmap"
WKS_FILE = "${SEESAW_WKS_FILE}"
WKS_FILE_DEPENDS:append = " e2fsprogs-native dosfstools-native mtools-native"

# An image larger than a slot could be flashed but never installed by seesaw.
IMAGE_ROOTFS_MAXSIZE = "${SEESAW_SLOT_SIZE_KB}"

# (Needed: boot files and the wic dependency follow SEESAW_BOOT_VARIANT, and
# a machine seesaw does not support must be skipped with a message.)
# nooelint: oelint.task.noanonpython
python () {
    variant = d.getVar('SEESAW_BOOT_VARIANT')
    if variant not in ('rpi', 'imx', 'env-file'):
        raise bb.parse.SkipRecipe('seesaw-image-example: machine %s has no SEESAW_BOOT_VARIANT '
                                  '(see meta-seesaw/README.md)' % d.getVar('MACHINE'))
    if variant == 'rpi':
        # meta-raspberrypi builds U-Boot and puts boot.scr (rpi-u-boot-scr,
        # replaced by seesaw's) on the boot partition only with RPI_USE_U_BOOT.
        if d.getVar('RPI_USE_U_BOOT') != '1':
            raise bb.parse.SkipRecipe('seesaw-image-example: set RPI_USE_U_BOOT = "1" in local.conf')
        # Both files of U-Boot's redundant environment, zero-filled
        # (rpi-u-boot-scr deploys them): libubootenv needs both to exist,
        # and U-Boot fills them one saveenv at a time.
        d.appendVar('IMAGE_BOOT_FILES', ' uboot.env uboot-redund.env')
        d.appendVarFlag('do_image_wic', 'depends', ' rpi-u-boot-scr:do_deploy')
    else:
        # The boot partition holds only the boot script; kernel and device
        # tree are loaded from the slot.
        d.setVar('IMAGE_BOOT_FILES', 'boot.scr')
        d.appendVarFlag('do_image_wic', 'depends', ' seesaw-boot-script:do_deploy')
}

# i.MX: imx-boot is copied raw in front of the first partition; it must end
# before both copies of U-Boot's environment (SEESAW_ENV_OFFSET,
# SEESAW_ENV_OFFSET_REDUND), or saveenv overwrites the boot loader and the
# boot loader the environment.
python seesaw_check_bootloader_fits () {
    import os
    if d.getVar('SEESAW_BOOT_VARIANT') != 'imx':
        return
    offsets = [v for v in (d.getVar('SEESAW_ENV_OFFSET'), d.getVar('SEESAW_ENV_OFFSET_REDUND')) if v]
    if not offsets:
        return
    lowest = min(int(v, 0) for v in offsets)
    path = os.path.join(d.getVar('DEPLOY_DIR_IMAGE'), d.getVar('SEESAW_IMX_BOOT_FILE'))
    seek_kb = int(d.getVar('IMX_BOOT_SEEK') or '0')
    end = seek_kb * 1024 + os.path.getsize(path)
    if end > lowest:
        bb.fatal('seesaw: %s ends at 0x%x, past the U-Boot environment at 0x%x' % (path, end, lowest))
}
seesaw_check_bootloader_fits[doc] = "Fails when imx-boot would overlap U-Boot's environment copies"
do_image_wic[prefuncs] += "seesaw_check_bootloader_fits"

# seesaw: replace meta-raspberrypi's boot script by seesaw's A/B boot script
# (bootloader-scripts/rpi/boot.cmd in the seesaw tree, SEESAW_BOOTSCRIPTS_DIR
# from meta-seesaw's layer.conf). meta-raspberrypi already puts boot.scr on
# the boot partition when RPI_USE_U_BOOT = "1". The script boots /boot/Image
# from the chosen slot with booti, so it is for the 64-bit machines
# (raspberrypi4-64, raspberrypi5).

FILESEXTRAPATHS:prepend:rpi := "${SEESAW_BOOTSCRIPTS_DIR}:"
SRC_URI:append:rpi = " file://rpi/boot.cmd;subdir=seesaw"

do_compile:rpi () {
    mkimage -A arm64 -T script -C none -n "seesaw A/B boot script" \
        -d ${UNPACKDIR}/seesaw/rpi/boot.cmd ${B}/boot.scr
}

# The two files of U-Boot's redundant environment (seesaw-env-rpi.cfg:
# CONFIG_ENV_FAT_FILE, CONFIG_ENV_FAT_FILE_REDUND, CONFIG_ENV_SIZE 0x4000 =
# 16384 bytes), for the boot partition (seesaw-image-example.bb adds them to
# IMAGE_BOOT_FILES). Zero-filled, i.e. no valid copy: U-Boot starts from
# its built-in environment and its first saveenv fills one of them. They
# must exist before Linux writes, since libubootenv opens both copies and
# creates neither. A valid copy made here would not do: U-Boot would load
# it INSTEAD of its built-in environment, bootcmd included.
do_deploy:append:rpi () {
    for f in uboot.env uboot-redund.env; do
        dd if=/dev/zero of=${DEPLOYDIR}/$f bs=16384 count=1
    done
}

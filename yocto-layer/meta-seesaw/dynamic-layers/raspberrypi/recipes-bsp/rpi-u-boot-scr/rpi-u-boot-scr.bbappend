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

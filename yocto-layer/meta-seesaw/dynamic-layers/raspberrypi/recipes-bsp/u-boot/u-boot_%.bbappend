# seesaw: pin U-Boot's environment on the Raspberry Pi to what
# fw_env.config (recipes-seesaw/seesaw/files/rpi) and the boot script assume:
# the file uboot.env on mmc 0:1, 0x4000 bytes, one copy.
FILESEXTRAPATHS:prepend:rpi := "${THISDIR}/files:"
SRC_URI:append:rpi = " file://seesaw-env-rpi.cfg"

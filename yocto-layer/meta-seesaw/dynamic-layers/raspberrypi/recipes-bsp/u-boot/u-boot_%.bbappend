# seesaw: pin U-Boot's environment on the Raspberry Pi to what
# fw_env.config (recipes-seesaw/seesaw/files/rpi) and the boot script assume:
# the files uboot.env and uboot-redund.env (a redundant pair) on mmc 0:1,
# 0x4000 bytes each.
FILESEXTRAPATHS:prepend:rpi := "${THISDIR}/files:"
SRC_URI:append:rpi = " file://seesaw-env-rpi.cfg"

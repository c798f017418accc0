# seesaw: pin U-Boot's environment location on i.MX boards seesaw supports
# to what fw_env.config (recipes-seesaw/seesaw/files/<machine>) says.
FILESEXTRAPATHS:prepend:imx8mm-lpddr4-evk := "${THISDIR}/files:"
SRC_URI:append:imx8mm-lpddr4-evk = " file://seesaw-env-imx.cfg"

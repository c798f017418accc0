# seesaw A/B boot script -- env-file variant
#
# For boards where Linux cannot reach U-Boot's own environment storage, and
# for U-Boot builds without any environment storage (ENV_IS_NOWHERE) or
# without setexpr. The A/B state lives in its own environment file,
# seesaw.env, on the boot partition, in U-Boot's saveenv format (CRC32 +
# "key=value\0" pairs, 0x4000 bytes). Linux reads and writes the same file
# with libubootenv (fw_env.config: "/boot/seesaw.env 0x0 0x4000").
#
# Only BOOT_ORDER, BOOT_A_LEFT and BOOT_B_LEFT are imported from the file,
# so nothing written from Linux can change bootcmd, bootargs or anything
# else in U-Boot.
#
# Compile: mkimage -A <arch> -T script -C none -d boot.cmd boot.scr
# Console markers (one line each):
#   seesaw: booting slot <A|B> (tries left <n>)
#   seesaw: bootargs <kernel command line>
#   seesaw: no slot has tries left, resetting BOOT_A_LEFT=3 BOOT_B_LEFT=3
#   seesaw: seesaw.env missing or invalid, using defaults
#   seesaw: WARNING: could not write seesaw.env
#   seesaw: boot of slot <A|B> failed, resetting

# ---------------------------------------------------------------------------
# Board settings. Every value below is only a default: a board may preset
# any seesaw_* variable in its built-in environment (CONFIG_EXTRA_ENV_SETTINGS
# or a preboot command) to override it without editing this script.
# devtype, devnum and distro_bootpart are set by U-Boot's distro boot and
# bootflow when they find this script, so it runs from any disk it is on.
# ---------------------------------------------------------------------------
if test -z "${devtype}"; then setenv devtype mmc; fi
if test -z "${devnum}"; then setenv devnum 0; fi
if test -z "${distro_bootpart}"; then setenv distro_bootpart 1; fi
if test -z "${seesaw_env_file}"; then setenv seesaw_env_file seesaw.env; fi
if test -z "${seesaw_part_A}"; then setenv seesaw_part_A 2; fi
if test -z "${seesaw_part_B}"; then setenv seesaw_part_B 3; fi
if test "${arch}" = "x86"; then
    if test -z "${seesaw_env_addr}"; then setenv seesaw_env_addr 0x800000; fi
    if test -z "${seesaw_kernel_addr}"; then setenv seesaw_kernel_addr 0x1000000; fi
    if test -z "${seesaw_ramdisk_addr}"; then setenv seesaw_ramdisk_addr 0x18000000; fi
    if test -z "${seesaw_kernel}"; then setenv seesaw_kernel /boot/vmlinuz; fi
    if test -z "${seesaw_console}"; then setenv seesaw_console "console=ttyS0,115200"; fi
else
    if test -z "${seesaw_env_addr}"; then setenv seesaw_env_addr ${kernel_addr_r}; fi
    if test -z "${seesaw_kernel_addr}"; then setenv seesaw_kernel_addr ${kernel_addr_r}; fi
    if test -z "${seesaw_ramdisk_addr}"; then setenv seesaw_ramdisk_addr ${ramdisk_addr_r}; fi
    if test -z "${seesaw_kernel}"; then setenv seesaw_kernel /boot/Image; fi
    if test -z "${seesaw_console}"; then setenv seesaw_console "console=ttyAMA0,115200"; fi
    if test -z "${seesaw_fdt_addr}"; then setenv seesaw_fdt_addr ${fdtcontroladdr}; fi
fi
if test -z "${seesaw_initrd}"; then setenv seesaw_initrd /boot/initrd.img; fi
if test "${devtype}" = "virtio"; then
    if test -z "${seesaw_root_A}"; then setenv seesaw_root_A /dev/vda2; fi
    if test -z "${seesaw_root_B}"; then setenv seesaw_root_B /dev/vda3; fi
else
    if test -z "${seesaw_root_A}"; then setenv seesaw_root_A /dev/mmcblk0p2; fi
    if test -z "${seesaw_root_B}"; then setenv seesaw_root_B /dev/mmcblk0p3; fi
fi

# ---------------------------------------------------------------------------
# Read the A/B state. Values already in U-Boot's environment are dropped
# first, so only the file (or the defaults) decides.
# ---------------------------------------------------------------------------
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
setenv seesaw_env_ok
if load ${devtype} ${devnum}:${distro_bootpart} ${seesaw_env_addr} ${seesaw_env_file}; then
    if env import -c ${seesaw_env_addr} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
        setenv seesaw_env_ok 1
    fi
fi
if test -z "${seesaw_env_ok}"; then
    echo "seesaw: seesaw.env missing or invalid, using defaults"
fi
if test -z "${BOOT_ORDER}"; then setenv BOOT_ORDER "A B"; fi
if test -z "${BOOT_A_LEFT}"; then setenv BOOT_A_LEFT 3; fi
if test -z "${BOOT_B_LEFT}"; then setenv BOOT_B_LEFT 3; fi

# ---------------------------------------------------------------------------
# Choose: the first slot in BOOT_ORDER with tries left; take one try.
# Counts are 0..3 (no setexpr here); any other value counts as 0.
# ---------------------------------------------------------------------------
setenv seesaw_slot
for seesaw_s in ${BOOT_ORDER}; do
    if test -z "${seesaw_slot}"; then
        if test "${seesaw_s}" = "A"; then
            if test "${BOOT_A_LEFT}" = "3"; then
                setenv BOOT_A_LEFT 2; setenv seesaw_slot A
            elif test "${BOOT_A_LEFT}" = "2"; then
                setenv BOOT_A_LEFT 1; setenv seesaw_slot A
            elif test "${BOOT_A_LEFT}" = "1"; then
                setenv BOOT_A_LEFT 0; setenv seesaw_slot A
            fi
        elif test "${seesaw_s}" = "B"; then
            if test "${BOOT_B_LEFT}" = "3"; then
                setenv BOOT_B_LEFT 2; setenv seesaw_slot B
            elif test "${BOOT_B_LEFT}" = "2"; then
                setenv BOOT_B_LEFT 1; setenv seesaw_slot B
            elif test "${BOOT_B_LEFT}" = "1"; then
                setenv BOOT_B_LEFT 0; setenv seesaw_slot B
            fi
        fi
    fi
done

if test -z "${seesaw_slot}"; then
    echo "seesaw: no slot has tries left, resetting BOOT_A_LEFT=3 BOOT_B_LEFT=3"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
fi

# ---------------------------------------------------------------------------
# Write the state back before anything else happens.
# ---------------------------------------------------------------------------
if env export -c -s 0x4000 ${seesaw_env_addr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
    if fatwrite ${devtype} ${devnum}:${distro_bootpart} ${seesaw_env_addr} ${seesaw_env_file} 0x4000; then
        true
    else
        echo "seesaw: WARNING: could not write seesaw.env"
    fi
else
    echo "seesaw: WARNING: could not write seesaw.env"
fi

if test -z "${seesaw_slot}"; then
    reset
fi

# ---------------------------------------------------------------------------
# Boot the chosen slot: kernel (and initrd, if present) from the slot's own
# root filesystem, so kernel and root filesystem are updated together.
# ---------------------------------------------------------------------------
if test "${seesaw_slot}" = "A"; then
    setenv seesaw_part ${seesaw_part_A}
    setenv seesaw_root ${seesaw_root_A}
    echo "seesaw: booting slot A (tries left ${BOOT_A_LEFT})"
else
    setenv seesaw_part ${seesaw_part_B}
    setenv seesaw_root ${seesaw_root_B}
    echo "seesaw: booting slot B (tries left ${BOOT_B_LEFT})"
fi
setenv bootargs "${seesaw_console} root=${seesaw_root} rootfstype=ext4 rootwait ro seesaw.slot=${seesaw_slot} ${seesaw_extra_bootargs}"
echo "seesaw: bootargs ${bootargs}"

if load ${devtype} ${devnum}:${seesaw_part} ${seesaw_kernel_addr} ${seesaw_kernel}; then
    if load ${devtype} ${devnum}:${seesaw_part} ${seesaw_ramdisk_addr} ${seesaw_initrd}; then
        setenv seesaw_ramdisk_size ${filesize}
        if test "${arch}" = "x86"; then
            zboot ${seesaw_kernel_addr} 0 ${seesaw_ramdisk_addr} ${seesaw_ramdisk_size}
        else
            booti ${seesaw_kernel_addr} ${seesaw_ramdisk_addr}:${seesaw_ramdisk_size} ${seesaw_fdt_addr}
        fi
    else
        if test "${arch}" = "x86"; then
            zboot ${seesaw_kernel_addr}
        else
            booti ${seesaw_kernel_addr} - ${seesaw_fdt_addr}
        fi
    fi
fi
echo "seesaw: boot of slot ${seesaw_slot} failed, resetting"
reset

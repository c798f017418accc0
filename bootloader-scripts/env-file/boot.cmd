# seesaw A/B boot script -- env-file variant
#
# For boards where Linux cannot reach U-Boot's own environment storage, and
# for U-Boot builds without any environment storage (ENV_IS_NOWHERE) or
# without setexpr and saveenv (Debian's qemu-x86 u-boot.rom). The A/B state
# lives in its own environment, kept in two files on the boot partition,
# seesaw.env and seesaw-redund.env, 0x4000 bytes each, in the redundant
# format of U-Boot and libubootenv: CRC32 (little-endian) of bytes
# 5..0x3fff, a flag byte, then "key=value\0" pairs. Linux reads and writes
# the same pair with libubootenv (fw_env.config:
# "/boot/seesaw.env 0x0 0x4000" and "/boot/seesaw-redund.env 0x0 0x4000").
#
# Of two valid copies the one with the newer flag is in force (the higher
# one, except that 0 follows 255; equal flags: seesaw.env), as U-Boot's
# env_check_redund() and libubootenv decide; a copy with a bad CRC, of the
# wrong size or missing is not used. Each boot rewrites only the copy that
# is NOT in force, with the flag one above the other's, so a power cut
# during that write leaves the copy in force as it was; the new values
# count once the write is complete. If neither copy is valid the defaults
# apply and both files are written.
#
# This U-Boot has no setexpr: the flag is read with itest (compared against
# all 256 values) and its successor taken from the same walk; the bytes are
# moved between the redundant layout of the files and the plain one of
# "env import -c"/"env export -c" (CRC32 + data) with cp.b and mw.b
# relative to "base". That needs a U-Boot built WITHOUT
# CONFIG_SYS_REDUNDAND_ENVIRONMENT (with it, env import/export -c use the
# redundant layout themselves and these moves are wrong).
#
# Only BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT and SEESAW_FLOOR are imported
# from the files, so nothing written from Linux can change bootcmd, bootargs
# or anything else in U-Boot. SEESAW_FLOOR (the daemon's anti-rollback
# floor) means nothing to this script; it is imported and exported only so
# that it survives the rewrite.
#
# Compile: mkimage -A <arch> -T script -C none -d boot.cmd boot.scr
# Console markers (one line each):
#   seesaw: environment copy <file> missing or invalid
#   seesaw: no valid environment copy, using defaults
#   seesaw: writing <file> (flag <hh>)
#   seesaw: WARNING: could not write <file>
#   seesaw: booting slot <A|B> (tries left <n>)
#   seesaw: bootargs <kernel command line>
#   seesaw: no slot has tries left, resetting BOOT_A_LEFT=3 BOOT_B_LEFT=3
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
if test -z "${seesaw_env_file_redund}"; then setenv seesaw_env_file_redund seesaw-redund.env; fi
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
# first, so only the files (or the defaults) decide.
#
# Work area, relative to base ${seesaw_env_addr} (0x34000 bytes):
#   0x00000  the block import/export/load/fatwrite work on
#   0x10000  seesaw.env as read (zeros if missing or of the wrong size)
#   0x20000  seesaw-redund.env as read (likewise)
#   0x30000  the block being written
# load, env, itest and fatwrite take absolute addresses, so everything they
# touch is at ${seesaw_env_addr} itself; cp.b and mw.b add base.
# ---------------------------------------------------------------------------
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
setenv SEESAW_FLOOR
setenv seesaw_env_ok
setenv seesaw_valid1
setenv seesaw_valid2
base ${seesaw_env_addr}
mw.b 0x10000 0 0x4000
mw.b 0x20000 0 0x4000
for seesaw_c in 1 2; do
    if test "${seesaw_c}" = "1"; then
        setenv seesaw_f ${seesaw_env_file}
    else
        setenv seesaw_f ${seesaw_env_file_redund}
    fi
    # At most one byte more than a copy, so a longer file cannot overrun
    # the work area and is still seen to be the wrong size.
    if load ${devtype} ${devnum}:${distro_bootpart} ${seesaw_env_addr} ${seesaw_f} 0x4001; then
        if test "${filesize}" = "4000"; then
            cp.b 0x0 0x${seesaw_c}0000 0x4000
        fi
    fi
    # The flag byte as two hex digits (seesaw_byte) and its successor
    # (seesaw_succ, 00 after ff).
    cp.b 0x${seesaw_c}0004 0x0 1
    setenv seesaw_byte
    setenv seesaw_succ 00
    setenv seesaw_hit
    for seesaw_h in 0 1 2 3 4 5 6 7 8 9 a b c d e f; do
        for seesaw_l in 0 1 2 3 4 5 6 7 8 9 a b c d e f; do
            if test "${seesaw_hit}" = "1"; then
                setenv seesaw_succ ${seesaw_h}${seesaw_l}; setenv seesaw_hit 2
            fi
            if itest.b *${seesaw_env_addr} == 0x${seesaw_h}${seesaw_l}; then
                setenv seesaw_byte ${seesaw_h}${seesaw_l}; setenv seesaw_hit 1
            fi
        done
    done
    setenv seesaw_flag${seesaw_c} ${seesaw_byte}
    setenv seesaw_next${seesaw_c} ${seesaw_succ}
done

# Which copy is newer if both are valid.
setenv seesaw_newer 1
if itest 0x${seesaw_flag2} > 0x${seesaw_flag1}; then setenv seesaw_newer 2; fi
if test "${seesaw_flag1}" = "ff"; then
    if test "${seesaw_flag2}" = "00"; then setenv seesaw_newer 2; fi
fi
if test "${seesaw_flag2}" = "ff"; then
    if test "${seesaw_flag1}" = "00"; then setenv seesaw_newer 1; fi
fi

# Import the older copy first and the newer last: each import checks its
# CRC, and one that fails changes nothing, so what is left is the newest
# valid copy (the import also drops a listed variable the copy lacks).
if test "${seesaw_newer}" = "1"; then
    setenv seesaw_order "2 1"
else
    setenv seesaw_order "1 2"
fi
for seesaw_c in ${seesaw_order}; do
    # From the file layout (CRC, flag, data at 5) to the one of
    # "env import -c" (CRC, data at 4), 0x3fff bytes; the CRC covers the
    # same 0x3ffb data bytes in both.
    cp.b 0x${seesaw_c}0000 0x0 4
    cp.b 0x${seesaw_c}0005 0x4 0x3ffb
    if env import -c ${seesaw_env_addr} 0x3fff BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT SEESAW_FLOOR; then
        setenv seesaw_env_ok ${seesaw_c}
        setenv seesaw_valid${seesaw_c} 1
    fi
done
if test -z "${seesaw_valid1}"; then
    echo "seesaw: environment copy ${seesaw_env_file} missing or invalid"
fi
if test -z "${seesaw_valid2}"; then
    echo "seesaw: environment copy ${seesaw_env_file_redund} missing or invalid"
fi
if test -z "${seesaw_env_ok}"; then
    echo "seesaw: no valid environment copy, using defaults"
fi
base 0
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
# Write the state back before anything else happens: into the copy that is
# not in force, with the flag one above the one in force; with no valid
# copy, into both (flag 00; equal flags make seesaw.env the one in force).
# ---------------------------------------------------------------------------
if test "${seesaw_env_ok}" = "1"; then
    setenv seesaw_targets ${seesaw_env_file_redund}
    setenv seesaw_next ${seesaw_next1}
elif test "${seesaw_env_ok}" = "2"; then
    setenv seesaw_targets ${seesaw_env_file}
    setenv seesaw_next ${seesaw_next2}
else
    setenv seesaw_targets "${seesaw_env_file} ${seesaw_env_file_redund}"
    setenv seesaw_next 00
fi
base ${seesaw_env_addr}
if env export -c -s 0x3fff ${seesaw_env_addr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT SEESAW_FLOOR; then
    # From the layout of "env export -c" (CRC, data at 4) to the file
    # layout (CRC, flag, data at 5).
    cp.b 0x0 0x30000 4
    mw.b 0x30004 ${seesaw_next}
    cp.b 0x4 0x30005 0x3ffb
    cp.b 0x30000 0x0 0x4000
    for seesaw_t in ${seesaw_targets}; do
        echo "seesaw: writing ${seesaw_t} (flag ${seesaw_next})"
        if fatwrite ${devtype} ${devnum}:${distro_bootpart} ${seesaw_env_addr} ${seesaw_t} 0x4000; then
            true
        else
            echo "seesaw: WARNING: could not write ${seesaw_t}"
        fi
    done
else
    echo "seesaw: WARNING: could not write ${seesaw_targets}"
fi
base 0

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

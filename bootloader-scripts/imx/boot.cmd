# seesaw A/B boot script -- NXP i.MX 8M (reference: imx8mm-evk, arm64,
# U-Boot imx8mm_evk)
#
# Partitions on the eMMC (or SD card) U-Boot found this script on:
#   1  FAT boot partition: boot.scr
#   2  root filesystem of slot A (ext4, read-only)
#   3  root filesystem of slot B (ext4, read-only)
#   4  data partition shared by both slots
# The boot loader itself (SPL + U-Boot) sits in front of the first partition,
# and U-Boot's environment, in two copies, at 4 MiB and 5 MiB into the boot
# device (CONFIG_ENV_IS_IN_MMC, CONFIG_ENV_SIZE 0x1000, CONFIG_ENV_OFFSET
# 0x400000, CONFIG_SYS_REDUNDAND_ENVIRONMENT, CONFIG_ENV_OFFSET_REDUND
# 0x500000), so partition 1 must start above 0x501000 (8 MiB is usual).
# The kernel (/boot/Image), the device tree (/boot/${fdtfile}) and an
# optional initramfs (/boot/initrd.img) are loaded from the chosen slot's
# root filesystem, so kernel, device tree and root filesystem are always
# updated together.
#
# The A/B state is kept in U-Boot's own environment and saved with saveenv,
# which writes the copy not in force (flag byte one up), so a power cut
# during it leaves the other copy in force. Linux reads and writes the same
# pair on the raw eMMC (fw_env.config:
# "/dev/mmcblk2 0x400000 0x1000" and "/dev/mmcblk2 0x500000 0x1000").
# saveenv stores the whole environment, so variables Linux keeps there
# (SEESAW_FLOOR, the daemon's anti-rollback floor) survive every boot.
#
# Compile: mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
# Console markers (one line each):
#   seesaw: booting slot <A|B> (tries left <n>)
#   seesaw: bootargs <kernel command line>
#   seesaw: no slot has tries left, resetting BOOT_A_LEFT=3 BOOT_B_LEFT=3
#   seesaw: WARNING: could not save the environment
#   seesaw: kernel <path> of slot <A|B> is <n> bytes, more than the <n> from <addr> to <addr>: ...
#   seesaw: no default root device for <devtype> <devnum>: preset seesaw_root_A and seesaw_root_B
#   seesaw: boot of slot <A|B> failed, resetting

# ---------------------------------------------------------------------------
# Board settings. Defaults only: presetting any seesaw_* variable in the
# environment overrides it. Helper values are hush locals (name=value), so
# saveenv below stores none of them.
# ---------------------------------------------------------------------------
if test -z "${devtype}"; then devtype=mmc; fi
if test -z "${devnum}"; then devnum=2; fi
if test -z "${seesaw_part_A}"; then seesaw_part_A=2; fi
if test -z "${seesaw_part_B}"; then seesaw_part_B=3; fi
# The Linux name of the disk U-Boot found this script on, for the default
# root devices: mmc N is /dev/mmcblkN (U-Boot and Linux number the
# controllers alike on i.MX 8M: mmc1 = SD card,
# mmc2 = eMMC on the EVK), usb/scsi/sata N is the Nth SCSI disk
# (/dev/sda for the first, up to 3), virtio N is /dev/vda..vdd, nvme N is
# /dev/nvmeNn1. Anything else, or a USB disk among several, needs
# seesaw_root_A and seesaw_root_B preset: the script says so and does
# nothing else (no try taken, nothing saved).
seesaw_disk=
seesaw_letter=
if test "${devnum}" = "0"; then seesaw_letter=a;
elif test "${devnum}" = "1"; then seesaw_letter=b;
elif test "${devnum}" = "2"; then seesaw_letter=c;
elif test "${devnum}" = "3"; then seesaw_letter=d; fi
if test "${devtype}" = "mmc"; then
    seesaw_disk=/dev/mmcblk${devnum}p
elif test "${devtype}" = "nvme"; then
    seesaw_disk=/dev/nvme${devnum}n1p
elif test "${devtype}" = "usb" || test "${devtype}" = "scsi" || test "${devtype}" = "sata"; then
    if test -n "${seesaw_letter}"; then seesaw_disk=/dev/sd${seesaw_letter}; fi
elif test "${devtype}" = "virtio"; then
    if test -n "${seesaw_letter}"; then seesaw_disk=/dev/vd${seesaw_letter}; fi
fi
if test -z "${seesaw_root_A}"; then
    if test -n "${seesaw_disk}"; then seesaw_root_A=${seesaw_disk}${seesaw_part_A}; fi
fi
if test -z "${seesaw_root_B}"; then
    if test -n "${seesaw_disk}"; then seesaw_root_B=${seesaw_disk}${seesaw_part_B}; fi
fi
seesaw_go=yes
if test -z "${seesaw_root_A}" || test -z "${seesaw_root_B}"; then
    echo "seesaw: no default root device for ${devtype} ${devnum}: preset seesaw_root_A and seesaw_root_B"
    seesaw_go=no
fi

# Everything below runs only with both root devices known: hush's exit does
# not end a script in every U-Boot (2023.01 ignores it), so the rest is one
# block that is skipped instead; U-Boot then goes on with its next boot
# target, no try taken, nothing saved.
if test "${seesaw_go}" = "yes"; then
    if test -z "${seesaw_kernel}"; then seesaw_kernel=/boot/Image; fi
    if test -z "${seesaw_initrd}"; then seesaw_initrd=/boot/initrd.img; fi
    if test -z "${seesaw_fdtfile}"; then
        if test -n "${fdtfile}"; then seesaw_fdtfile=/boot/${fdtfile}; else seesaw_fdtfile=/boot/imx8mm-evk.dtb; fi
    fi
    if test -z "${seesaw_console}"; then
        if test -n "${console}"; then seesaw_console="console=${console}"; else seesaw_console="console=ttymxc1,115200"; fi
    fi
    if test -z "${seesaw_kernel_addr}"; then
        if test -n "${kernel_addr_r}"; then seesaw_kernel_addr=${kernel_addr_r}; else seesaw_kernel_addr=0x40480000; fi
    fi
    if test -z "${seesaw_fdt_addr}"; then
        if test -n "${fdt_addr_r}"; then seesaw_fdt_addr=${fdt_addr_r}; else seesaw_fdt_addr=0x43000000; fi
    fi
    if test -z "${seesaw_ramdisk_addr}"; then
        if test -n "${ramdisk_addr_r}"; then seesaw_ramdisk_addr=${ramdisk_addr_r}; else seesaw_ramdisk_addr=0x43800000; fi
    fi

    # ---------------------------------------------------------------------------
    # Defaults for the A/B state (first boot, or U-Boot fell back to its
    # built-in environment because neither copy on the eMMC was valid).
    # ---------------------------------------------------------------------------
    if test -z "${BOOT_ORDER}"; then setenv BOOT_ORDER "A B"; fi
    if test -z "${BOOT_A_LEFT}"; then setenv BOOT_A_LEFT 3; fi
    if test -z "${BOOT_B_LEFT}"; then setenv BOOT_B_LEFT 3; fi

    # ---------------------------------------------------------------------------
    # Choose: the first slot in BOOT_ORDER with tries left; take one try.
    # Counts are 0..3, the decrement is written out; any other value counts as 0.
    # ---------------------------------------------------------------------------
    setenv seesaw_slot
    seesaw_slot=
    for seesaw_s in ${BOOT_ORDER}; do
        if test -z "${seesaw_slot}"; then
            if test "${seesaw_s}" = "A"; then
                if test "${BOOT_A_LEFT}" = "3"; then
                    setenv BOOT_A_LEFT 2; seesaw_slot=A
                elif test "${BOOT_A_LEFT}" = "2"; then
                    setenv BOOT_A_LEFT 1; seesaw_slot=A
                elif test "${BOOT_A_LEFT}" = "1"; then
                    setenv BOOT_A_LEFT 0; seesaw_slot=A
                fi
            elif test "${seesaw_s}" = "B"; then
                if test "${BOOT_B_LEFT}" = "3"; then
                    setenv BOOT_B_LEFT 2; seesaw_slot=B
                elif test "${BOOT_B_LEFT}" = "2"; then
                    setenv BOOT_B_LEFT 1; seesaw_slot=B
                elif test "${BOOT_B_LEFT}" = "1"; then
                    setenv BOOT_B_LEFT 0; seesaw_slot=B
                fi
            fi
        fi
    done

    if test -z "${seesaw_slot}"; then
        echo "seesaw: no slot has tries left, resetting BOOT_A_LEFT=3 BOOT_B_LEFT=3"
        setenv BOOT_A_LEFT 3
        setenv BOOT_B_LEFT 3
        if saveenv; then true; else echo "seesaw: WARNING: could not save the environment"; fi
        reset
    fi

    if saveenv; then true; else echo "seesaw: WARNING: could not save the environment"; fi

    # ---------------------------------------------------------------------------
    # Boot the chosen slot.
    # ---------------------------------------------------------------------------
    if test "${seesaw_slot}" = "A"; then
        seesaw_part=${seesaw_part_A}
        seesaw_root=${seesaw_root_A}
        echo "seesaw: booting slot A (tries left ${BOOT_A_LEFT})"
    else
        seesaw_part=${seesaw_part_B}
        seesaw_root=${seesaw_root_B}
        echo "seesaw: booting slot B (tries left ${BOOT_B_LEFT})"
    fi
    setenv bootargs "${seesaw_console} root=${seesaw_root} rootfstype=ext4 rootwait ro seesaw.slot=${seesaw_slot} ${seesaw_extra_bootargs}"
    echo "seesaw: bootargs ${bootargs}"

    # The kernel file must end below what is loaded after it (device tree,
    # initramfs), or loading those would overwrite its end; with the EVK's
    # defaults (kernel 0x40480000, device tree 0x43000000) that is 0x2b80000
    # bytes, about 43.5 MiB.
    # A slot whose kernel does not fit fails to boot (its tries run out), with
    # this message on the console.
    seesaw_kernel_ok=yes
    if size ${devtype} ${devnum}:${seesaw_part} ${seesaw_kernel}; then
        for seesaw_above in ${seesaw_fdt_addr} ${seesaw_ramdisk_addr}; do
            if itest ${seesaw_above} -gt ${seesaw_kernel_addr}; then
                setexpr seesaw_room ${seesaw_above} - ${seesaw_kernel_addr}
                if itest ${filesize} -gt ${seesaw_room}; then
                    echo "seesaw: kernel ${seesaw_kernel} of slot ${seesaw_slot} is 0x${filesize} bytes, more than the 0x${seesaw_room} from ${seesaw_kernel_addr} to ${seesaw_above}: move the load addresses apart"
                    seesaw_kernel_ok=no
                fi
            fi
        done
        setenv seesaw_room
    fi

    if test "${seesaw_kernel_ok}" = "yes"; then
        if load ${devtype} ${devnum}:${seesaw_part} ${seesaw_kernel_addr} ${seesaw_kernel}; then
            if load ${devtype} ${devnum}:${seesaw_part} ${seesaw_fdt_addr} ${seesaw_fdtfile}; then
                if load ${devtype} ${devnum}:${seesaw_part} ${seesaw_ramdisk_addr} ${seesaw_initrd}; then
                    booti ${seesaw_kernel_addr} ${seesaw_ramdisk_addr}:${filesize} ${seesaw_fdt_addr}
                else
                    booti ${seesaw_kernel_addr} - ${seesaw_fdt_addr}
                fi
            fi
        fi
    fi
    echo "seesaw: boot of slot ${seesaw_slot} failed, resetting"
    reset
fi

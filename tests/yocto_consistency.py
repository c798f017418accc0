#!/usr/bin/env python3
"""Checks that meta-seesaw's partition layouts and U-Boot environment
locations agree with the boot scripts in bootloader-scripts/.

For every machine (override) the layer supports -- SEESAW_BOOT_VARIANT:<ovr>
in classes/seesaw-common.bbclass -- it reads:
  - the wic kickstart (SEESAW_WKS_FILE:<ovr>, wic/*.wks, *.wks.in),
  - the layer's fw_env.config (recipes-seesaw/seesaw/files/<ovr>/),
  - the U-Boot config fragment pinning the environment
    (dynamic-layers/*/recipes-bsp/u-boot/files/seesaw-env-<variant>.cfg)
    and the bbappend adding it for <ovr>,
  - bootloader-scripts/<variant>/boot.cmd and fw_env.config,
  - the layer's device and size defaults (SEESAW_DISK, SEESAW_SLOT_*_DEVICE, ...),
and fails if the kickstart's partition order (boot 1, slot A 2, slot B 3,
data 4) differs from what the boot script loads and passes as root=, if the
fw_env.config differs from the environment location of the boot script
variant and U-Boot's configuration, or if partitions overlap.

The environment must be redundant on every board: two fw_env.config lines
of equal size, matching U-Boot's CONFIG_SYS_REDUNDAND_ENVIRONMENT with
CONFIG_ENV_OFFSET / CONFIG_ENV_OFFSET_REDUND (raw eMMC, and the layer's
SEESAW_ENV_OFFSET / SEESAW_ENV_OFFSET_REDUND) or CONFIG_ENV_FAT_FILE /
CONFIG_ENV_FAT_FILE_REDUND (files on the boot partition, which the image
must ship). Raw copies must lie outside every partition, apart from each
other and after the room the kickstart leaves the boot loader.

usage: yocto_consistency.py [--root DIR]   check the tree (default: this repo)
       yocto_consistency.py --self-test    feed mismatched copies, expect failures
"""
import argparse
import glob
import hashlib
import os
import re
import shlex
import shutil
import sys
import tempfile
import tomllib

LAYER = os.path.join("yocto-layer", "meta-seesaw")
ROLES = ["boot", "rootfs_a", "rootfs_b", "data"]
# What bitbake would expand these to in the layer's defaults.
BITBAKE_DIRS = {"localstatedir": "/var", "sysconfdir": "/etc"}
# meta-freescale's IMX_BOOT_SEEK per supported machine (KiB).
IMX_BOOT_SEEK = {"imx8mm-lpddr4-evk": "33"}


class Errors(list):
    def add(self, where, msg):
        self.append("%s: %s" % (where, msg))


# ---------------------------------------------------------------- bitbake ---

def parse_defaults(path):
    """VAR[:override] (?=|??=|=) "value" lines of a class/conf file."""
    vals = {}
    pat = re.compile(r'^([A-Za-z0-9_]+)(?::([A-Za-z0-9_.-]+))?\s*(\?\?=|\?=|=)\s*"(.*)"\s*$')
    with open(path) as f:
        for line in f:
            m = pat.match(line)
            if m:
                vals[(m.group(1), m.group(2))] = m.group(4)
    return vals


def resolve(vals, name, overrides, depth=0):
    if depth > 20:
        raise ValueError("recursive variable %s" % name)
    value = None
    for o in overrides:
        if (name, o) in vals:
            value = vals[(name, o)]
    if value is None:
        value = vals.get((name, None))
    if value is None:
        if name in BITBAKE_DIRS:
            return BITBAKE_DIRS[name]
        return None
    return re.sub(r"\$\{([A-Za-z0-9_]+)\}",
                  lambda m: resolve(vals, m.group(1), overrides, depth + 1) or m.group(0), value)


# -------------------------------------------------------------------- wic ---

def size_kib(text, default_unit):
    m = re.fullmatch(r"(\d+)([KMG]?)", text)
    if not m:
        raise ValueError("bad size %r" % text)
    unit = m.group(2) or default_unit
    return int(m.group(1)) * {"K": 1, "M": 1024, "G": 1024 * 1024}[unit]


def parse_wks(path, substitutions):
    """Partitions of a kickstart: dicts with label, fstype, source, size/align/offset (KiB), table."""
    parts, ptable, variant = [], "msdos", None
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            m = re.match(r"#\s*seesaw-boot-variant:\s*(\S+)", line)
            if m:
                variant = m.group(1)
            line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("part") else line.strip()
            for k, v in substitutions.items():
                line = line.replace("${%s}" % k, v)
            if not line:
                continue
            words = shlex.split(line)
            if words[0] == "bootloader":
                if "--ptable" in words:
                    ptable = words[words.index("--ptable") + 1]
                continue
            if words[0] != "part":
                continue
            p = {"line": lineno, "table": True, "mountpoint": None, "label": None, "fstype": None,
                 "source": None, "sourceparams": None, "size": None, "align": None, "offset": None}
            i = 1
            if i < len(words) and not words[i].startswith("--"):
                p["mountpoint"] = words[i]
                i += 1
            while i < len(words):
                w = words[i]
                key, _, val = w[2:].partition("=")
                if key == "no-table":
                    p["table"] = False
                elif key == "active":
                    pass
                else:
                    if not val:
                        i += 1
                        val = words[i]
                    if key in ("size", "fixed-size"):
                        p["size"] = size_kib(val, "M")
                    elif key == "align":
                        p["align"] = int(val)
                    elif key == "offset":
                        p["offset"] = size_kib(val, "K")
                    elif key in ("label", "fstype", "source", "sourceparams"):
                        p[key] = val
                i += 1
            parts.append(p)
    return parts, ptable, variant


def layout(parts, raw_limit_kib):
    """Start and end (KiB) of every partition, as wic places them in order.
    A raw part without a size (a boot loader file) may use the room up to
    raw_limit_kib (the environment), or 1 KiB if there is no raw environment."""
    cur = 1  # the MBR
    out = []
    for p in parts:
        start = p["offset"] if p["offset"] is not None else cur
        if p["align"]:
            start = -(-start // p["align"]) * p["align"]
        size = p["size"]
        if size is None:
            size = max(1, (raw_limit_kib - start) if raw_limit_kib else 1)
        out.append((start, start + size, p))
        cur = start + size
    return out


# --------------------------------------------------------- U-Boot, libubootenv ---

def parse_fw_env(path):
    lines = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                w = line.split()
                lines.append((w[0], int(w[1], 0), int(w[2], 0)))
    return lines


def parse_cfg(path):
    cfg = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^(CONFIG_[A-Z0-9_]+)=(.*)$", line.strip())
            if m:
                cfg[m.group(1)] = m.group(2).strip('"')
            m = re.match(r"^# (CONFIG_[A-Z0-9_]+) is not set", line.strip())
            if m:
                cfg[m.group(1)] = None
    return cfg


def script_default(text, var):
    """The default a boot script gives var (hush local or setenv)."""
    vals = re.findall(r'if test -z "\$\{%s\}"; then (?:setenv %s |%s=)([^;]+); fi' % (var, var, var), text)
    return [v.strip().strip('"') for v in vals]


def parse_boot_script(path):
    with open(path) as f:
        text = f.read()
    s = {"text": text}
    for var in ("seesaw_part_A", "seesaw_part_B", "devnum", "distro_bootpart", "seesaw_env_file",
                "seesaw_env_file_redund"):
        v = script_default(text, var)
        s[var] = v[0] if v else None
    # rpi and imx: the default root follows the boot device; the one the
    # kickstarts must agree with is the one for mmc (the boards' SD card or
    # eMMC).
    m = re.search(r'if test "\$\{devtype\}" = "mmc"; then\s*\n\s*seesaw_disk=(\S+)', text)
    mmc_disk = m.group(1) if m else None
    for slot in "AB":
        roots = [r for r in script_default(text, "seesaw_root_" + slot) if "/vd" not in r]
        if not roots and mmc_disk and re.search(
                r'seesaw_root_%s=\$\{seesaw_disk\}\$\{seesaw_part_%s\}' % (slot, slot), text):
            roots = [mmc_disk + "${seesaw_part_%s}" % slot]
        root = roots[0] if roots else None
        if root:
            root = root.replace("${devnum}", s["devnum"] or "?")
            root = root.replace("${seesaw_part_%s}" % slot, s["seesaw_part_" + slot] or "?")
        s["root_" + slot] = root
    s["loads_from_slot"] = "load ${devtype} ${devnum}:${seesaw_part}" in text
    m = re.search(r'fw_env\.config:\s*(?:\n#\s*)?"([^"]+)"', text)
    s["fw_env_comment"] = m.group(1).split() if m else None
    m = re.search(r"fatwrite \S+ \S+ \S+ \S+ (0x[0-9a-fA-F]+)", text)
    s["write_size"] = int(m.group(1), 0) if m else None
    return s


def check_rpi_env_files(errs, layer, names, env_size):
    """The zero-filled environment files the image ships on the Raspberry
    Pi boot partition: deployed by the rpi-u-boot-scr bbappend at
    CONFIG_ENV_SIZE, added to IMAGE_BOOT_FILES by the example image."""
    bbappend = os.path.join(layer, "dynamic-layers", "raspberrypi", "recipes-bsp", "rpi-u-boot-scr",
                            "rpi-u-boot-scr.bbappend")
    text = open(bbappend).read() if os.path.exists(bbappend) else ""
    m = re.search(r"for f in ([^;]+); do\s*\n\s*dd if=/dev/zero of=\$\{DEPLOYDIR\}/\$f bs=(\d+) count=1", text)
    if not m:
        errs.add(bbappend, "does not deploy the zero-filled environment files for the boot partition")
    else:
        if m.group(1).split() != names:
            errs.add(bbappend, "deploys %s, fw_env.config names %s" % (m.group(1).split(), names))
        if int(m.group(2)) != env_size:
            errs.add(bbappend, "deploys placeholder environment files of %s bytes, CONFIG_ENV_SIZE is 0x%x"
                     % (m.group(2), env_size))
    image = os.path.join(layer, "recipes-core", "images", "seesaw-image-example.bb")
    m = re.search(r"d\.appendVar\('IMAGE_BOOT_FILES', '([^']*)'\)", open(image).read())
    if not m or m.group(1).split() != names:
        errs.add(image, "IMAGE_BOOT_FILES on the Raspberry Pi must carry %s (found %s)"
                 % (names, m.group(1).split() if m else None))


# ------------------------------------------------------------------ check ---

def check(root):
    errs = Errors()
    layer = os.path.join(root, LAYER)
    common = os.path.join(layer, "classes", "seesaw-common.bbclass")
    vals = parse_defaults(common)
    machines = sorted(o for (n, o) in vals if n == "SEESAW_BOOT_VARIANT" and o)
    if not machines:
        errs.add(common, "no SEESAW_BOOT_VARIANT:<machine> defaults found")

    # The recipe version follows the workspace version.
    with open(os.path.join(root, "Cargo.toml"), "rb") as f:
        cargo_version = tomllib.load(f)["workspace"]["package"]["version"]
    recipe = os.path.join(layer, "recipes-seesaw", "seesaw", "seesaw_git.bb")
    pv = parse_defaults(recipe).get(("PV", None))
    if not pv or pv.split("+")[0] != cargo_version:
        errs.add(recipe, "PV %r does not start with the Cargo.toml version %s" % (pv, cargo_version))

    # The licence checksum points at lines of the workspace Cargo.toml; a
    # shifted line would fail do_populate_lic on the build host.
    with open(recipe) as f:
        m = re.search(r"file://Cargo\.toml;beginline=(\d+);endline=(\d+);md5=([0-9a-f]{32})", f.read())
    if not m:
        errs.add(recipe, "LIC_FILES_CHKSUM does not point at Cargo.toml lines")
    else:
        with open(os.path.join(root, "Cargo.toml"), "rb") as f:
            lines = f.readlines()[int(m.group(1)) - 1:int(m.group(2))]
        if hashlib.md5(b"".join(lines)).hexdigest() != m.group(3) or not any(b"license" in x for x in lines):
            errs.add(recipe, "LIC_FILES_CHKSUM: Cargo.toml lines %s-%s changed (now %r)"
                     % (m.group(1), m.group(2), b"".join(lines).decode(errors="replace")))

    # Every kickstart in the layer must be used by a machine (so none escapes the checks).
    used_wks = set()

    for ovr in machines:
        where = "machine override %s" % ovr
        overrides = [ovr]
        get = lambda name: resolve(vals, name, overrides)  # noqa: E731
        variant = get("SEESAW_BOOT_VARIANT")
        disk = get("SEESAW_DISK")
        if not disk or not re.fullmatch(r"/dev/mmcblk\d+", disk):
            errs.add(where, "SEESAW_DISK %r is not an mmcblk disk" % disk)
            continue

        script_path = os.path.join(root, "bootloader-scripts", variant, "boot.cmd")
        if not os.path.exists(script_path):
            errs.add(where, "no boot script %s for variant %s" % (script_path, variant))
            continue
        script = parse_boot_script(script_path)
        if not script["loads_from_slot"]:
            errs.add(script_path, "does not load the kernel from ${devtype} ${devnum}:${seesaw_part}")

        # ---- kickstart
        wks_name = get("SEESAW_WKS_FILE")
        wks_path = os.path.join(layer, "wic", wks_name or "")
        if not wks_name or not os.path.exists(wks_path):
            errs.add(where, "SEESAW_WKS_FILE %r is not in the layer's wic/" % wks_name)
            continue
        used_wks.add(os.path.realpath(wks_path))
        subs = {"SEESAW_IMX_BOOT_FILE": get("SEESAW_IMX_BOOT_FILE") or "imx-boot",
                "IMX_BOOT_SEEK": IMX_BOOT_SEEK.get(ovr, "33")}
        parts, ptable, wks_variant = parse_wks(wks_path, subs)
        if wks_variant != variant:
            errs.add(wks_path, "says seesaw-boot-variant %s, but machine %s uses %s" % (wks_variant, ovr, variant))
        table = [p for p in parts if p["table"]]
        if ptable == "msdos" and len(table) > 4:
            errs.add(wks_path, "%d partitions in an MBR table: the 4th becomes an extended partition "
                     "and the numbering the boot script relies on shifts" % len(table))
        labels = [p["label"] for p in table]
        if labels[:4] != ROLES:
            errs.add(wks_path, "partition order %s, expected %s (boot=1, rootfs A=2, rootfs B=3, data=4)"
                     % (labels, ROLES))
        num = {p["label"]: i + 1 for i, p in enumerate(table)}
        byrole = {p["label"]: p for p in table}
        if "boot" in byrole and (byrole["boot"]["fstype"] != "vfat" or byrole["boot"]["source"] != "bootimg-partition"):
            errs.add(wks_path, "boot partition must be vfat from bootimg-partition (boot.scr lives there)")
        if "rootfs_a" in byrole and byrole["rootfs_a"]["source"] != "rootfs":
            errs.add(wks_path, "slot A must be the image's root file system (--source rootfs)")
        for r in ("rootfs_a", "rootfs_b", "data"):
            if r in byrole and byrole[r]["fstype"] != "ext4":
                errs.add(wks_path, "%s must be ext4 (the boot script passes rootfstype=ext4)" % r)
        if "rootfs_a" in byrole and "rootfs_b" in byrole:
            sa, sb = byrole["rootfs_a"]["size"], byrole["rootfs_b"]["size"]
            if sa != sb:
                errs.add(wks_path, "slot A (%s KiB) and slot B (%s KiB) differ in size" % (sa, sb))
            slot_kb = get("SEESAW_SLOT_SIZE_KB")
            if slot_kb and sa != int(slot_kb):
                errs.add(wks_path, "slot size %s KiB differs from SEESAW_SLOT_SIZE_KB %s" % (sa, slot_kb))

        # ---- boot script partitions and root= vs kickstart and layer devices
        for slot, role in (("A", "rootfs_a"), ("B", "rootfs_b")):
            part = script["seesaw_part_" + slot]
            if part is None or role not in num or int(part) != num[role]:
                errs.add(script_path, "seesaw_part_%s is %s but the kickstart %s has %s as partition %s"
                         % (slot, part, wks_name, role, num.get(role)))
            expect_root = "%sp%s" % (disk, num.get(role))
            if script["root_" + slot] != expect_root:
                errs.add(script_path, "root for slot %s is %s but the kickstart puts slot %s at %s"
                         % (slot, script["root_" + slot], slot, expect_root))
            dev = get("SEESAW_SLOT_%s_DEVICE" % slot)
            if dev != expect_root:
                errs.add(common, "SEESAW_SLOT_%s_DEVICE for %s is %s, the boot script boots %s"
                         % (slot, ovr, dev, script["root_" + slot]))
        for role, var in (("data", "SEESAW_DATA_DEVICE"), ("boot", "SEESAW_BOOT_DEVICE")):
            if get(var) != "%sp%s" % (disk, num.get(role)):
                errs.add(common, "%s for %s is %s but the kickstart has %s as partition %s"
                         % (var, ovr, get(var), role, num.get(role)))
        if script["devnum"] is not None and "/dev/mmcblk%s" % script["devnum"] != disk:
            errs.add(script_path, "default devnum %s (mmc %s = /dev/mmcblk%s) but SEESAW_DISK for %s is %s"
                     % (script["devnum"], script["devnum"], script["devnum"], ovr, disk))
        if script["distro_bootpart"] is not None and "boot" in num and int(script["distro_bootpart"]) != num["boot"]:
            errs.add(script_path, "boot partition %s but the kickstart's boot partition is %s"
                     % (script["distro_bootpart"], num["boot"]))

        # ---- environment location: two copies on every board, so a power
        # cut during U-Boot's saveenv (every boot) or the daemon's write
        # leaves the other copy in force.
        fw_path = os.path.join(layer, "recipes-seesaw", "seesaw", "files", ovr, "fw_env.config")
        ref_path = os.path.join(root, "bootloader-scripts", variant, "fw_env.config")
        if not os.path.exists(fw_path):
            errs.add(where, "no fw_env.config in the layer (%s)" % fw_path)
            continue
        fw = parse_fw_env(fw_path)
        ref = parse_fw_env(ref_path)
        if not fw or len(fw) > 2:
            errs.add(fw_path, "needs one line, or two for a redundant environment")
            continue
        if len(fw) != 2:
            errs.add(fw_path, "one environment copy: a power cut while U-Boot or Linux rewrites it loses "
                     "BOOT_ORDER; the shipped boards keep two (a redundant environment)")
        if len(fw) == 2 and fw[0][2] != fw[1][2]:
            errs.add(fw_path, "the two copies differ in size (0x%x, 0x%x)" % (fw[0][2], fw[1][2]))
        if len(fw) == 2 and fw[0][0] == fw[1][0] and fw[0][1] == fw[1][1]:
            errs.add(fw_path, "both lines name the same copy (%s 0x%x)" % (fw[0][0], fw[0][1]))
        if len(fw) != len(ref):
            errs.add(fw_path, "%d environment copies, %s has %d" % (len(fw), ref_path, len(ref)))
        for (dev, off, size), (rdev, roff, rsize) in zip(fw, ref):
            if (off, size) != (roff, rsize):
                errs.add(fw_path, "offset/size 0x%x/0x%x differ from %s (0x%x/0x%x)" % (off, size, ref_path, roff, rsize))
            if os.path.basename(dev) != os.path.basename(rdev):
                errs.add(fw_path, "%s is not the same environment as %s in %s" % (dev, rdev, ref_path))
        if script["fw_env_comment"]:
            c = script["fw_env_comment"]
            if (os.path.basename(c[0]), int(c[1], 0), int(c[2], 0)) != (os.path.basename(fw[0][0]), fw[0][1], fw[0][2]):
                errs.add(fw_path, "first line %s differs from the one %s names (%s)"
                         % (fw[0], script_path, " ".join(c)))

        frags = glob.glob(os.path.join(layer, "dynamic-layers", "*", "recipes-bsp", "u-boot", "files",
                                       "seesaw-env-%s.cfg" % variant))
        if len(frags) != 1:
            errs.add(where, "expected one U-Boot fragment seesaw-env-%s.cfg, found %d" % (variant, len(frags)))
            continue
        cfg = parse_cfg(frags[0])
        appends = glob.glob(os.path.join(os.path.dirname(os.path.dirname(frags[0])), "*.bbappend"))
        pat = re.compile(r'^SRC_URI:append:%s\s*=.*file://seesaw-env-%s\.cfg' % (re.escape(ovr), variant), re.M)
        if variant == "rpi":
            pat = re.compile(r'^SRC_URI:append:(rpi|%s)\s*=.*file://seesaw-env-rpi\.cfg' % re.escape(ovr), re.M)
        if not any(pat.search(open(a).read()) for a in appends):
            errs.add(where, "no U-Boot bbappend adds seesaw-env-%s.cfg for %s" % (variant, ovr))
        env_size = int(cfg.get("CONFIG_ENV_SIZE") or "0", 0)
        redundant = cfg.get("CONFIG_SYS_REDUNDAND_ENVIRONMENT") == "y"
        if redundant:
            if len(fw) != 2:
                errs.add(fw_path, "U-Boot keeps a redundant environment (%s) but fw_env.config has one line" % frags[0])
        else:
            if cfg.get("CONFIG_ENV_OFFSET_REDUND") or cfg.get("CONFIG_ENV_FAT_FILE_REDUND"):
                errs.add(frags[0], "a second copy is configured but CONFIG_SYS_REDUNDAND_ENVIRONMENT is not set")
            if len(fw) == 2:
                errs.add(fw_path, "two copies but U-Boot (%s) keeps one: CONFIG_SYS_REDUNDAND_ENVIRONMENT "
                         "is not set" % frags[0])
        for dev, off, size in fw:
            if size != env_size:
                errs.add(fw_path, "size 0x%x but CONFIG_ENV_SIZE is 0x%x (%s)" % (size, env_size, frags[0]))

        raw_env = []
        if fw[0][0].startswith("/dev/"):
            # raw environment on the disk (i.MX)
            if cfg.get("CONFIG_ENV_IS_IN_MMC") != "y":
                errs.add(frags[0], "fw_env.config names a raw device but CONFIG_ENV_IS_IN_MMC is not set")
            names = ["CONFIG_ENV_OFFSET", "CONFIG_ENV_OFFSET_REDUND"]
            layer_vars = ["SEESAW_ENV_OFFSET", "SEESAW_ENV_OFFSET_REDUND"]
            for i, (dev, off, size) in enumerate(fw):
                if dev != disk:
                    errs.add(fw_path, "device %s but the slots are on %s (user area of the boot disk)" % (dev, disk))
                coff = cfg.get(names[i])
                if coff is None or int(coff, 0) != off:
                    errs.add(fw_path, "line %d: offset 0x%x but U-Boot's %s is %s (%s)"
                             % (i + 1, off, names[i], coff, frags[0]))
                envoff = get(layer_vars[i])
                if envoff is None or int(envoff, 0) != off:
                    errs.add(common, "%s for %s is %s, fw_env.config says 0x%x" % (layer_vars[i], ovr, envoff, off))
                raw_env.append((off, size))
            if (cfg.get("CONFIG_SYS_MMC_ENV_PART") or "0") != "0":
                errs.add(frags[0], "CONFIG_SYS_MMC_ENV_PART is not 0 (user area) but fw_env.config names %s" % disk)
        else:
            # environment files on the boot partition (Raspberry Pi, env-file)
            mnt = get("SEESAW_BOOT_MOUNTPOINT")
            for path, off, size in fw:
                if os.path.dirname(path) != mnt:
                    errs.add(fw_path, "%s is not on the boot partition as mounted by the seesaw recipe (%s)" % (path, mnt))
                if off != 0:
                    errs.add(fw_path, "an environment file starts at offset 0")
            names = [os.path.basename(p) for p, _, _ in fw]
            if variant == "rpi":
                if cfg.get("CONFIG_ENV_IS_IN_FAT") != "y":
                    errs.add(frags[0], "fw_env.config names a file but CONFIG_ENV_IS_IN_FAT is not set")
                # U-Boot's env_fat_load() reads ENV_FAT_FILE as its first
                # copy (ENV_VALID on equal flags), as libubootenv does line 1.
                for i, key in enumerate(["CONFIG_ENV_FAT_FILE", "CONFIG_ENV_FAT_FILE_REDUND"][:len(fw)]):
                    if names[i] != cfg.get(key):
                        errs.add(fw_path, "line %d: %s but U-Boot writes %s (%s)" % (i + 1, fw[i][0], cfg.get(key), key))
                devpart = (cfg.get("CONFIG_ENV_FAT_DEVICE_AND_PART") or ":").split(":")
                if "/dev/mmcblk%s" % devpart[0] != disk or devpart[1] != str(num.get("boot")):
                    errs.add(frags[0], "CONFIG_ENV_FAT_DEVICE_AND_PART %s is not the kickstart's boot partition "
                             "(%sp%s)" % (":".join(devpart), disk, num.get("boot")))
                check_rpi_env_files(errs, layer, names, env_size)
            else:
                expect = [script["seesaw_env_file"], script["seesaw_env_file_redund"]]
                if names != expect[:len(names)]:
                    errs.add(fw_path, "files %s but the boot script uses %s" % (names, expect))
                if script["write_size"] and fw[0][2] != script["write_size"]:
                    errs.add(fw_path, "size 0x%x but the boot script writes 0x%x" % (fw[0][2], script["write_size"]))

        # ---- overlaps, and the raw environment kept free
        limit = min(o for o, _ in raw_env) // 1024 if raw_env else 0
        placed = layout(parts, limit)
        areas = [(s * 1024, e * 1024, "partition %s (line %d)" % (p["label"] or p["mountpoint"], p["line"]))
                 for s, e, p in placed]
        areas += [(o, o + s, "U-Boot environment copy at 0x%x" % o) for o, s in raw_env]
        areas.sort()
        for i, (s1, e1, n1) in enumerate(areas):
            for s2, e2, n2 in areas[i + 1:]:
                if s2 < e1:
                    errs.add(wks_path, "%s [0x%x, 0x%x) overlaps %s [0x%x, 0x%x)" % (n1, s1, e1, n2, s2, e2))
        first = min((s for s, e, p in placed if p["table"]), default=None)
        for o, s in raw_env:
            if first is not None and first * 1024 < o + s:
                errs.add(wks_path, "the first partition starts at 0x%x, before the end of the U-Boot "
                         "environment at 0x%x (0x%x bytes)" % (first * 1024, o, s))
            for st, en, p in placed:
                if not p["table"] and st * 1024 >= o:
                    errs.add(wks_path, "raw part %s starts at 0x%x, at or after the environment 0x%x"
                             % (p["label"] or p["mountpoint"], st * 1024, o))

    for wks in glob.glob(os.path.join(layer, "wic", "*.wks")) + glob.glob(os.path.join(layer, "wic", "*.wks.in")):
        if os.path.realpath(wks) not in used_wks:
            errs.add(wks, "no machine uses this kickstart (SEESAW_WKS_FILE), so nothing checks it")
    return errs


# -------------------------------------------------------------- self-test ---

def edit(root, rel, old, new):
    path = os.path.join(root, rel)
    with open(path) as f:
        text = f.read()
    if old not in text:
        raise AssertionError("self-test mutation does not apply: %r not in %s" % (old, rel))
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


RPI_WKS = os.path.join(LAYER, "wic", "seesaw-rpi.wks")
IMX_WKS = os.path.join(LAYER, "wic", "seesaw-imx.wks.in")
IMX_FW = os.path.join(LAYER, "recipes-seesaw", "seesaw", "files", "imx8mm-lpddr4-evk", "fw_env.config")
RPI_FW = os.path.join(LAYER, "recipes-seesaw", "seesaw", "files", "rpi", "fw_env.config")
IMX_CFG = os.path.join(LAYER, "dynamic-layers", "freescale-layer", "recipes-bsp", "u-boot", "files", "seesaw-env-imx.cfg")
RPI_CFG = os.path.join(LAYER, "dynamic-layers", "raspberrypi", "recipes-bsp", "u-boot", "files", "seesaw-env-rpi.cfg")
COMMON = os.path.join(LAYER, "classes", "seesaw-common.bbclass")
IMAGE = os.path.join(LAYER, "recipes-core", "images", "seesaw-image-example.bb")
RPI_SCR = os.path.join(LAYER, "dynamic-layers", "raspberrypi", "recipes-bsp", "rpi-u-boot-scr",
                       "rpi-u-boot-scr.bbappend")

MUTATIONS = [
    ("rpi kickstart with slots A and B swapped",
     [(RPI_WKS, "--label rootfs_a", "--label rootfs_x"), (RPI_WKS, "--label rootfs_b", "--label rootfs_a"),
      (RPI_WKS, "--label rootfs_x", "--label rootfs_b")], "partition order"),
    ("boot script booting slot B from partition 4",
     [("bootloader-scripts/rpi/boot.cmd", "seesaw_part_B=3", "seesaw_part_B=4")], "seesaw_part_B is 4"),
    ("imx boot script on another mmc device",
     [("bootloader-scripts/imx/boot.cmd", "devnum=2", "devnum=1")], "root for slot A is /dev/mmcblk1p2"),
    ("imx fw_env.config at another offset",
     [(IMX_FW, "/dev/mmcblk2      0x400000", "/dev/mmcblk2      0x300000")], "differ from"),
    ("imx U-Boot fragment with another environment size",
     [(IMX_CFG, "CONFIG_ENV_SIZE=0x1000", "CONFIG_ENV_SIZE=0x2000")], "CONFIG_ENV_SIZE is 0x2000"),
    ("imx fw_env.config without the second copy U-Boot keeps",
     [(IMX_FW, "/dev/mmcblk2      0x500000   0x1000\n", "")], "redundant environment"),
    ("imx U-Boot fragment keeping one copy",
     [(IMX_CFG, "CONFIG_SYS_REDUNDAND_ENVIRONMENT=y\nCONFIG_ENV_OFFSET_REDUND=0x500000\n",
       "# CONFIG_SYS_REDUNDAND_ENVIRONMENT is not set\n")], "keeps one"),
    ("imx U-Boot fragment with a second offset but no redundant environment",
     [(IMX_CFG, "CONFIG_SYS_REDUNDAND_ENVIRONMENT=y", "# CONFIG_SYS_REDUNDAND_ENVIRONMENT is not set")],
     "CONFIG_SYS_REDUNDAND_ENVIRONMENT is not set"),
    ("imx with one copy everywhere",
     [(IMX_FW, "/dev/mmcblk2      0x500000   0x1000\n", ""),
      ("bootloader-scripts/imx/fw_env.config", "/dev/mmcblk2      0x500000   0x1000\n", ""),
      (IMX_CFG, "CONFIG_SYS_REDUNDAND_ENVIRONMENT=y\nCONFIG_ENV_OFFSET_REDUND=0x500000\n", "")],
     "one environment copy"),
    ("imx second copy at another offset in U-Boot",
     [(IMX_CFG, "CONFIG_ENV_OFFSET_REDUND=0x500000", "CONFIG_ENV_OFFSET_REDUND=0x480000")],
     "CONFIG_ENV_OFFSET_REDUND is 0x480000"),
    ("imx second copy overlapping the first",
     [(IMX_FW, "mmcblk2      0x500000", "mmcblk2      0x400800"),
      ("bootloader-scripts/imx/fw_env.config", "mmcblk2      0x500000", "mmcblk2      0x400800"),
      (IMX_CFG, "CONFIG_ENV_OFFSET_REDUND=0x500000", "CONFIG_ENV_OFFSET_REDUND=0x400800"),
      (COMMON, 'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x500000"',
       'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x400800"')],
     "U-Boot environment copy at 0x400000 [0x400000, 0x401000) overlaps U-Boot environment copy at 0x400800"),
    ("imx second copy inside the boot partition",
     [(IMX_FW, "mmcblk2      0x500000", "mmcblk2      0x800000"),
      ("bootloader-scripts/imx/fw_env.config", "mmcblk2      0x500000", "mmcblk2      0x800000"),
      (IMX_CFG, "CONFIG_ENV_OFFSET_REDUND=0x500000", "CONFIG_ENV_OFFSET_REDUND=0x800000"),
      (COMMON, 'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x500000"',
       'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x800000"')],
     "before the end of the U-Boot environment at 0x800000"),
    ("imx second copy in front of the boot loader",
     [(IMX_FW, "mmcblk2      0x500000", "mmcblk2      0x4000"),
      ("bootloader-scripts/imx/fw_env.config", "mmcblk2      0x500000", "mmcblk2      0x4000"),
      (IMX_CFG, "CONFIG_ENV_OFFSET_REDUND=0x500000", "CONFIG_ENV_OFFSET_REDUND=0x4000"),
      (COMMON, 'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x500000"',
       'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x4000"')],
     "at or after the environment 0x4000"),
    ("imx layer offset of the second copy that is not U-Boot's",
     [(COMMON, 'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x500000"',
       'SEESAW_ENV_OFFSET_REDUND:imx8mm-lpddr4-evk ??= "0x600000"')], "SEESAW_ENV_OFFSET_REDUND"),
    ("imx copies of different sizes",
     [(IMX_FW, "0x500000   0x1000", "0x500000   0x2000")], "differ in size"),
    ("rpi second file not the one U-Boot writes",
     [(RPI_CFG, 'CONFIG_ENV_FAT_FILE_REDUND="uboot-redund.env"', 'CONFIG_ENV_FAT_FILE_REDUND="uboot.env.1"')],
     "line 2: /boot/firmware/uboot-redund.env but U-Boot writes uboot.env.1"),
    ("rpi files in the other order",
     [(RPI_FW, "/boot/firmware/uboot.env ", "/boot/firmware/uboot-x.env "),
      (RPI_FW, "/boot/firmware/uboot-redund.env", "/boot/firmware/uboot.env"),
      (RPI_FW, "/boot/firmware/uboot-x.env ", "/boot/firmware/uboot-redund.env ")],
     "line 1: /boot/firmware/uboot-redund.env but U-Boot writes uboot.env"),
    ("rpi U-Boot fragment keeping one copy",
     [(RPI_CFG, 'CONFIG_SYS_REDUNDAND_ENVIRONMENT=y\nCONFIG_ENV_FAT_FILE_REDUND="uboot-redund.env"\n', "")],
     "keeps one"),
    ("rpi second environment file not shipped in the image",
     [(IMAGE, "' uboot.env uboot-redund.env'", "' uboot.env'")], "IMAGE_BOOT_FILES on the Raspberry Pi"),
    ("rpi placeholder environment files of the wrong size",
     [(RPI_SCR, "bs=16384", "bs=8192")], "placeholder environment files of 8192 bytes"),
    ("imx first partition over the raw environment",
     [(IMX_WKS, "--label boot --active --align 8192", "--label boot --active --align 2048")],
     "before the end of the U-Boot environment"),
    ("imx kickstart partitions overlapping by explicit offset",
     [(IMX_WKS, "--label rootfs_b --align 8192", "--label rootfs_b --offset 100M --align 8192")], "overlaps"),
    ("rpi fw_env.config not where the boot partition is mounted",
     [(RPI_FW, "/boot/firmware/uboot.env", "/boot/uboot.env")], "not on the boot partition"),
    ("rpi U-Boot fragment keeping the environment on partition 2",
     [(RPI_CFG, '"0:1"', '"0:2"')], "CONFIG_ENV_FAT_DEVICE_AND_PART 0:2"),
    ("rpi kickstart with a fifth partition in an MBR table",
     [(RPI_WKS, "bootloader --ptable msdos",
       "part --ondisk mmcblk0 --fstype=ext4 --label extra --align 4096 --fixed-size 64M\nbootloader --ptable msdos")],
     "extended partition"),
    ("layer slot device that is not the one the boot script boots",
     [(COMMON, 'SEESAW_SLOT_B_DEVICE ?= "${SEESAW_DISK}p3"', 'SEESAW_SLOT_B_DEVICE ?= "${SEESAW_DISK}p5"')],
     "SEESAW_SLOT_B_DEVICE"),
    ("slot sizes that differ",
     [(RPI_WKS, "--label rootfs_b --align 4096 --fixed-size 2048M", "--label rootfs_b --align 4096 --fixed-size 1024M")],
     "differ in size"),
    ("licence line of Cargo.toml moved",
     [("Cargo.toml", "[workspace.package]\n", "[workspace.package]\ndescription = \"x\"\n")], "LIC_FILES_CHKSUM"),
]


def copy_tree(src, dst):
    shutil.copytree(os.path.join(src, LAYER), os.path.join(dst, LAYER))
    shutil.copytree(os.path.join(src, "bootloader-scripts"), os.path.join(dst, "bootloader-scripts"))
    shutil.copy(os.path.join(src, "Cargo.toml"), os.path.join(dst, "Cargo.toml"))


def self_test(src):
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base")
        copy_tree(src, base)
        errs = check(base)
        if errs:
            print("self-test: the unmodified copy fails:\n  " + "\n  ".join(errs))
            return 1
        for i, (name, edits, expect) in enumerate(MUTATIONS):
            root = os.path.join(tmp, "m%d" % i)
            copy_tree(src, root)
            for rel, old, new in edits:
                edit(root, rel, old, new)
            errs = check(root)
            if any(expect in e for e in errs):
                print("self-test ok: %s -> caught (%s)" % (name, next(e for e in errs if expect in e).split(": ", 1)[1]))
            else:
                failures += 1
                print("self-test FAILED: %s not caught (expected %r); errors: %s" % (name, expect, errs))
    print("%d passed, %d failed" % (len(MUTATIONS) + 1 - failures, failures))
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--root", default=here, help="the seesaw tree (default: this repository)")
    ap.add_argument("--self-test", action="store_true", help="check that mismatched copies fail")
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.root)
    errs = check(args.root)
    if errs:
        print("meta-seesaw and the boot scripts disagree:")
        for e in errs:
            print("  " + e)
        return 1
    print("yocto consistency: kickstarts, fw_env.config, U-Boot fragments and boot scripts agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())

//! The U-Boot boot scripts in `bootloader-scripts/`: each one compiles with the
//! real `mkimage` into a script image (checked with `dumpimage -l`), reads and
//! writes exactly the boot-contract variables, passes `seesaw.slot=` to the
//! kernel, prints the documented console marker, and comes with a
//! `fw_env.config` that parses. Every board keeps its environment in two
//! copies (a redundant environment): every `fw_env.config`, in
//! `bootloader-scripts/` and in the Yocto layer, names two of equal size, and
//! the layer's U-Boot configuration fragments turn on the redundant
//! environment at the same places.
//!
//! Needs `mkimage` and `dumpimage` (Debian `u-boot-tools`). A missing tool is a
//! test failure, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const CONTRACT_VARS: [&str; 3] = ["BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT"];
/// What the env-file script imports and exports: the contract and the
/// daemon's anti-rollback floor, which U-Boot only carries along.
const ENV_FILE_WHITELIST: &str = "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT SEESAW_FLOOR";
const ENV_FILE_SIZE: u64 = 0x4000;

struct Variant {
    dir: &'static str,
    /// `-A` values the script is compiled for.
    arches: &'static [&'static str],
    /// How the A/B state is stored.
    storage: Storage,
}

#[derive(PartialEq)]
enum Storage {
    /// U-Boot's own environment, written with `saveenv`.
    Saveenv,
    /// A separate `seesaw.env` file, `env import`/`env export` + `fatwrite`.
    EnvFile,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        dir: "rpi",
        arches: &["arm64"],
        storage: Storage::Saveenv,
    },
    Variant {
        dir: "imx",
        arches: &["arm64"],
        storage: Storage::Saveenv,
    },
    Variant {
        dir: "env-file",
        arches: &["x86", "arm64"],
        storage: Storage::EnvFile,
    },
];

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("bootloader-scripts")
}

fn layer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("yocto-layer")
        .join("meta-seesaw")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs a tool from `u-boot-tools`; a missing binary fails the test with the
/// package to install.
fn uboot_tool(name: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    match Command::new(name).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{name}` not found: the boot-script tests need the real U-Boot tools; \
             install them with `apt-get install u-boot-tools` (or run tests/qemu-packages.sh)"
        ),
        Err(e) => panic!("cannot run `{name}`: {e}"),
    }
}

/// The script without comment lines and without trailing comments.
fn code_lines(script: &str) -> Vec<String> {
    script
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn code(script: &str) -> String {
    code_lines(script).join("\n")
}

/// Every word in the code of the form `BOOT_<something>`.
fn boot_words(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(pos) = code[i..].find("BOOT_") {
        let start = i + pos;
        let preceded_by_ident =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "BOOT_".len();
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded_by_ident {
            out.insert(code[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// Names given to `setenv` (the only way the scripts write U-Boot's
/// environment).
fn setenv_targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        for part in line.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                if *w == "setenv" {
                    if let Some(name) = words.get(i + 1) {
                        out.insert((*name).to_owned());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn each_script_compiles_with_mkimage_into_a_script_image() {
    let tmp = tempfile::tempdir().unwrap();
    for v in &VARIANTS {
        let src = scripts_dir().join(v.dir).join("boot.cmd");
        assert!(src.is_file(), "missing {}", src.display());
        for arch in v.arches {
            let out_path = tmp.path().join(format!("{}-{arch}.scr", v.dir));
            let out = uboot_tool(
                "mkimage",
                &[
                    "-A".as_ref(),
                    (*arch).as_ref(),
                    "-T".as_ref(),
                    "script".as_ref(),
                    "-C".as_ref(),
                    "none".as_ref(),
                    "-d".as_ref(),
                    src.as_os_str(),
                    out_path.as_os_str(),
                ],
            );
            assert!(
                out.status.success(),
                "mkimage failed for {}/boot.cmd ({arch}): {}{}",
                v.dir,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let listed = uboot_tool("dumpimage", &["-l".as_ref(), out_path.as_os_str()]);
            let text = String::from_utf8_lossy(&listed.stdout).into_owned()
                + &String::from_utf8_lossy(&listed.stderr);
            assert!(
                listed.status.success(),
                "dumpimage -l failed for {}: {text}",
                v.dir
            );
            let image_type = text
                .lines()
                .find(|l| l.trim_start().starts_with("Image Type:"))
                .unwrap_or_else(|| {
                    panic!("no `Image Type:` in dumpimage output for {}: {text}", v.dir)
                });
            assert!(
                image_type.contains("Script"),
                "{}/boot.cmd ({arch}) did not compile into a script image: {image_type}",
                v.dir
            );
            // The payload is the script text itself (uncompressed), after the
            // 64-byte legacy header and the 8-byte script length table.
            let img = std::fs::read(&out_path).unwrap();
            let src_bytes = std::fs::read(&src).unwrap();
            assert!(
                img.windows(src_bytes.len())
                    .any(|w| w == src_bytes.as_slice()),
                "{}: compiled image does not carry the script verbatim",
                v.dir
            );
        }
    }
}

#[test]
fn each_script_uses_exactly_the_contract_variables() {
    let expected: BTreeSet<String> = CONTRACT_VARS.iter().map(|s| s.to_string()).collect();
    for v in &VARIANTS {
        let script = read(&scripts_dir().join(v.dir).join("boot.cmd"));
        let code = code(&script);
        assert_eq!(
            boot_words(&code),
            expected,
            "{}/boot.cmd must read and write exactly {CONTRACT_VARS:?}",
            v.dir
        );

        // It writes nothing in U-Boot's environment except the contract
        // variables, the kernel command line and its own seesaw_* helpers.
        for name in setenv_targets(&code) {
            assert!(
                CONTRACT_VARS.contains(&name.as_str())
                    || name == "bootargs"
                    || name.starts_with("seesaw_")
                    || (v.storage == Storage::EnvFile
                        && ["devtype", "devnum", "distro_bootpart", "SEESAW_FLOOR"]
                            .contains(&name.as_str())),
                "{}/boot.cmd writes an unexpected environment variable `{name}`",
                v.dir
            );
        }

        // Defaults when unset.
        for (var, default) in [
            ("BOOT_ORDER", "\"A B\""),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ] {
            let line = format!("if test -z \"${{{var}}}\"; then setenv {var} {default}; fi");
            assert!(
                code.contains(&line),
                "{}/boot.cmd lacks the default `{line}`",
                v.dir
            );
        }

        // The decrement, written out for both slots.
        for slot in ["A", "B"] {
            for (from, to) in [("3", "2"), ("2", "1"), ("1", "0")] {
                let test = format!("test \"${{BOOT_{slot}_LEFT}}\" = \"{from}\"; then");
                let set = format!("setenv BOOT_{slot}_LEFT {to};");
                let pos = code
                    .find(&test)
                    .unwrap_or_else(|| panic!("{}: no `{test}`", v.dir));
                let next_line = code[pos..].lines().nth(1).unwrap_or("");
                assert!(
                    next_line.contains(&set),
                    "{}: after `{test}` expected `{set}`, found `{next_line}`",
                    v.dir
                );
            }
            let marker =
                format!("echo \"seesaw: booting slot {slot} (tries left ${{BOOT_{slot}_LEFT}})\"");
            assert!(
                code.contains(&marker),
                "{}/boot.cmd lacks the marker `{marker}`",
                v.dir
            );
        }
        assert!(
            code.contains("for seesaw_s in ${BOOT_ORDER}; do"),
            "{}: BOOT_ORDER loop",
            v.dir
        );

        // Exhausted: both counters back to 3, saved, reset.
        let exhausted = code
            .find("seesaw: no slot has tries left")
            .unwrap_or_else(|| panic!("{}: no exhaustion branch", v.dir));
        let rest = &code[exhausted..];
        let reset_at = rest
            .find("\nreset")
            .unwrap_or_else(|| panic!("{}: no reset", v.dir));
        let branch = &rest[..reset_at];
        assert!(branch.contains("setenv BOOT_A_LEFT 3") && branch.contains("setenv BOOT_B_LEFT 3"));

        // The kernel learns the slot.
        assert!(
            code.contains("seesaw.slot=${seesaw_slot}"),
            "{}/boot.cmd must pass seesaw.slot=<slot> in bootargs",
            v.dir
        );
        assert!(code.contains("setenv bootargs"), "{}: bootargs", v.dir);
        assert!(code.contains("root=${seesaw_root}"), "{}: root=", v.dir);

        match v.storage {
            Storage::Saveenv => {
                assert!(code.contains("saveenv"), "{}: must saveenv", v.dir);
                assert!(
                    !code.contains("env import"),
                    "{}: uses U-Boot's own environment",
                    v.dir
                );
                // saveenv stores the whole environment: the daemon's
                // SEESAW_FLOOR survives as long as the script leaves it be.
                assert!(
                    !code.contains("SEESAW_FLOOR") && !code.contains("env default"),
                    "{}: must not touch SEESAW_FLOOR or reset the environment",
                    v.dir
                );
                // State saved before the marker is printed and the kernel
                // is loaded.
                let save = code.rfind("saveenv").unwrap();
                let boot = code.find("seesaw: booting slot").unwrap();
                assert!(save < boot, "{}: saveenv must come before booting", v.dir);
                assert!(code.contains("booti "), "{}: arm64 boots with booti", v.dir);
            }
            Storage::EnvFile => check_env_file_script(&code),
        }
    }
}

/// The env-file script's redundant pair: both files read, the layout moved
/// with base-relative cp.b/mw.b (no setexpr, no saveenv), exactly the
/// whitelist imported and exported, the older copy written before booting.
fn check_env_file_script(code: &str) {
    assert!(!code.contains("setexpr"), "env-file must not need setexpr");
    assert!(!code.contains("saveenv"), "env-file must not need saveenv");
    for default in [
        "if test -z \"${seesaw_env_file}\"; then setenv seesaw_env_file seesaw.env; fi",
        "if test -z \"${seesaw_env_file_redund}\"; then setenv seesaw_env_file_redund seesaw-redund.env; fi",
    ] {
        assert!(code.contains(default), "env-file: `{default}`");
    }
    // Both copies loaded (at most one byte over the size, to see a longer
    // file), each kept only at the exact size.
    let load =
        "load ${devtype} ${devnum}:${distro_bootpart} ${seesaw_env_addr} ${seesaw_f} 0x4001; then";
    assert!(code.contains(load), "env-file: `{load}`");
    for set in [
        "setenv seesaw_f ${seesaw_env_file}",
        "setenv seesaw_f ${seesaw_env_file_redund}",
        "if test \"${filesize}\" = \"4000\"; then",
    ] {
        assert!(code.contains(set), "env-file: `{set}`");
    }
    // Import from the plain layout (CRC + data at 4, 0x3fff bytes) the
    // script builds out of each file's redundant one (CRC, flag, data at 5).
    let import = format!("env import -c ${{seesaw_env_addr}} 0x3fff {ENV_FILE_WHITELIST}; then");
    assert!(
        code.contains(&import),
        "env-file: whitelisted import `{import}`"
    );
    let export = format!("env export -c -s 0x3fff ${{seesaw_env_addr}} {ENV_FILE_WHITELIST}; then");
    assert!(
        code.contains(&export),
        "env-file: whitelisted export `{export}`"
    );
    // Every import/export names exactly the whitelist.
    for line in code.lines() {
        if line.contains("env import") || line.contains("env export") {
            assert!(
                line.trim_end_matches("; then")
                    .ends_with(ENV_FILE_WHITELIST),
                "env-file: import/export without the whitelist: {line}"
            );
        }
    }
    for mv in [
        // file -> import layout
        "cp.b 0x${seesaw_c}0000 0x0 4",
        "cp.b 0x${seesaw_c}0005 0x4 0x3ffb",
        // export layout -> file
        "cp.b 0x0 0x30000 4",
        "mw.b 0x30004 ${seesaw_next}",
        "cp.b 0x4 0x30005 0x3ffb",
        "cp.b 0x30000 0x0 0x4000",
    ] {
        assert!(code.contains(mv), "env-file: layout move `{mv}`");
    }
    // The flag read with itest over all 256 values, newer-flag rule with
    // the 255 -> 0 wrap.
    assert!(code.contains("itest.b *${seesaw_env_addr} == 0x${seesaw_h}${seesaw_l}"));
    assert!(code.contains(
        "if itest 0x${seesaw_flag2} > 0x${seesaw_flag1}; then setenv seesaw_newer 2; fi"
    ));
    // Every base set is undone before anything else runs.
    let bases: Vec<&str> = code.lines().filter(|l| l.starts_with("base ")).collect();
    assert_eq!(
        bases,
        [
            "base ${seesaw_env_addr}",
            "base 0",
            "base ${seesaw_env_addr}",
            "base 0"
        ],
        "env-file: base set and reset around the reads and around the write"
    );
    // Only the copy not in force is written (both when neither is valid).
    for target in [
        "setenv seesaw_targets ${seesaw_env_file_redund}",
        "setenv seesaw_targets ${seesaw_env_file}",
        "setenv seesaw_targets \"${seesaw_env_file} ${seesaw_env_file_redund}\"",
    ] {
        assert!(code.contains(target), "env-file: `{target}`");
    }
    let write =
        "fatwrite ${devtype} ${devnum}:${distro_bootpart} ${seesaw_env_addr} ${seesaw_t} 0x4000";
    assert!(code.contains(write), "env-file: `{write}`");
    assert_eq!(
        code.matches("fatwrite").count(),
        1,
        "env-file: one fatwrite"
    );
    let marker = code.find("echo \"seesaw: writing ${seesaw_t} (flag ${seesaw_next})\"");
    let fatwrite = code.find("fatwrite").unwrap();
    let boot = code.find("seesaw: booting slot").unwrap();
    assert!(
        marker.is_some_and(|m| m < fatwrite),
        "env-file: marker before the write"
    );
    assert!(fatwrite < boot, "env-file: state written before booting");
    assert!(code.contains("zboot "), "env-file: x86 boots with zboot");
    assert!(code.contains("booti "), "env-file: arm64 boots with booti");
}

#[derive(Debug)]
struct FwEnvLine {
    device: String,
    offset: u64,
    size: u64,
}

fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Parses fw_env.config as libubootenv does: `device offset size
/// [sector-size [sectors]]`, `#` comments, hex or decimal numbers.
fn parse_fw_env_config(text: &str) -> Result<Vec<FwEnvLine>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(3..=5).contains(&fields.len()) {
            return Err(format!(
                "line {}: expected `device offset size`: {raw}",
                n + 1
            ));
        }
        let nums: Vec<u64> = fields[1..]
            .iter()
            .map(|f| parse_number(f).ok_or_else(|| format!("line {}: bad number `{f}`", n + 1)))
            .collect::<Result<_, _>>()?;
        if !fields[0].starts_with('/') {
            return Err(format!(
                "line {}: device must be an absolute path: {raw}",
                n + 1
            ));
        }
        if nums[1] == 0 {
            return Err(format!("line {}: size 0", n + 1));
        }
        out.push(FwEnvLine {
            device: fields[0].to_owned(),
            offset: nums[0],
            size: nums[1],
        });
    }
    if out.is_empty() || out.len() > 2 {
        return Err(format!(
            "expected one or two environment copies, found {}",
            out.len()
        ));
    }
    if out.len() == 2 && out[0].size != out[1].size {
        return Err("redundant copies differ in size".into());
    }
    Ok(out)
}

/// The two copies every board keeps: (device or file, offset, size).
type Copies = [(&'static str, u64, u64); 2];

const BOARD_COPIES: [(&str, Copies); 3] = [
    // Raspberry Pi: CONFIG_ENV_FAT_FILE and CONFIG_ENV_FAT_FILE_REDUND on the
    // FAT boot partition, CONFIG_ENV_SIZE=0x4000.
    (
        "rpi",
        [
            ("/boot/firmware/uboot.env", 0x0, 0x4000),
            ("/boot/firmware/uboot-redund.env", 0x0, 0x4000),
        ],
    ),
    // imx8mm-evk: raw eMMC, CONFIG_ENV_OFFSET=0x400000,
    // CONFIG_ENV_OFFSET_REDUND=0x500000, CONFIG_ENV_SIZE=0x1000.
    (
        "imx",
        [
            ("/dev/mmcblk2", 0x400000, 0x1000),
            ("/dev/mmcblk2", 0x500000, 0x1000),
        ],
    ),
    // env-file: the two files the script reads and writes, at the size it
    // writes.
    (
        "env-file",
        [
            ("/boot/seesaw.env", 0x0, ENV_FILE_SIZE),
            ("/boot/seesaw-redund.env", 0x0, ENV_FILE_SIZE),
        ],
    ),
];

fn expect_copies(path: &Path, expected: &Copies) {
    let lines =
        parse_fw_env_config(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let got: Vec<(&str, u64, u64)> = lines
        .iter()
        .map(|l| (l.device.as_str(), l.offset, l.size))
        .collect();
    assert_eq!(
        got,
        expected.to_vec(),
        "{}: two environment copies",
        path.display()
    );
    // Two copies on one device must not overlap.
    let (a, b) = (&lines[0], &lines[1]);
    if a.device == b.device {
        assert!(
            a.offset + a.size <= b.offset || b.offset + b.size <= a.offset,
            "{}: the copies overlap",
            path.display()
        );
    }
}

#[test]
fn each_fw_env_config_names_two_copies_of_its_board() {
    for (dir, copies) in &BOARD_COPIES {
        expect_copies(&scripts_dir().join(dir).join("fw_env.config"), copies);
    }
    // The Yocto layer's copies, one per machine family, name the same.
    let layer = layer_dir().join("recipes-seesaw/seesaw/files");
    for (machine, board) in [("rpi", "rpi"), ("imx8mm-lpddr4-evk", "imx")] {
        let copies = &BOARD_COPIES.iter().find(|(d, _)| *d == board).unwrap().1;
        expect_copies(&layer.join(machine).join("fw_env.config"), copies);
    }
}

/// `CONFIG_X=value` and `# CONFIG_X is not set` lines of a Kconfig
/// fragment (None: not set).
fn parse_kconfig(text: &str) -> std::collections::BTreeMap<String, Option<String>> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                out.insert(name.to_owned(), None);
            }
        } else if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") {
                out.insert(name.to_owned(), Some(value.trim_matches('"').to_owned()));
            }
        }
    }
    out
}

#[test]
fn uboot_fragments_turn_on_the_redundant_environment_where_fw_env_config_says() {
    let dynamic = layer_dir().join("dynamic-layers");
    let get = |cfg: &std::collections::BTreeMap<String, Option<String>>, name: &str| {
        cfg.get(name)
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{name} not set"))
    };
    let number = |s: String| parse_number(&s).unwrap_or_else(|| panic!("bad number {s}"));

    let rpi = parse_kconfig(&read(
        &dynamic.join("raspberrypi/recipes-bsp/u-boot/files/seesaw-env-rpi.cfg"),
    ));
    let [(file1, _, size), (file2, _, _)] = BOARD_COPIES[0].1;
    assert_eq!(get(&rpi, "CONFIG_ENV_IS_IN_FAT"), "y");
    assert_eq!(get(&rpi, "CONFIG_SYS_REDUNDAND_ENVIRONMENT"), "y");
    assert_eq!(
        get(&rpi, "CONFIG_ENV_FAT_FILE"),
        Path::new(file1).file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(
        get(&rpi, "CONFIG_ENV_FAT_FILE_REDUND"),
        Path::new(file2).file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(number(get(&rpi, "CONFIG_ENV_SIZE")), size);

    let imx = parse_kconfig(&read(
        &dynamic.join("freescale-layer/recipes-bsp/u-boot/files/seesaw-env-imx.cfg"),
    ));
    let [(_, offset1, size), (_, offset2, _)] = BOARD_COPIES[1].1;
    assert_eq!(get(&imx, "CONFIG_ENV_IS_IN_MMC"), "y");
    assert_eq!(get(&imx, "CONFIG_SYS_REDUNDAND_ENVIRONMENT"), "y");
    assert_eq!(number(get(&imx, "CONFIG_ENV_OFFSET")), offset1);
    assert_eq!(number(get(&imx, "CONFIG_ENV_OFFSET_REDUND")), offset2);
    assert_eq!(number(get(&imx, "CONFIG_ENV_SIZE")), size);
    assert_eq!(get(&imx, "CONFIG_SYS_MMC_ENV_PART"), "0");
}

#[test]
fn fw_env_config_parser_rejects_bad_lines() {
    assert!(parse_fw_env_config("/dev/mmcblk2 0x400000 0x1000\n").is_ok());
    assert!(parse_fw_env_config("/dev/mmcblk2 4194304 4096\n").is_ok());
    assert!(parse_fw_env_config("/a 0x0 0x4000\n/b 0x0 0x4000\n").is_ok());
    assert!(parse_fw_env_config("# only a comment\n").is_err());
    assert!(parse_fw_env_config("/dev/mmcblk2 0x400000\n").is_err());
    assert!(parse_fw_env_config("/dev/mmcblk2 0xZZ 0x1000\n").is_err());
    assert!(parse_fw_env_config("/dev/mmcblk2 0x0 0\n").is_err());
    assert!(parse_fw_env_config("/a 0x0 0x4000\n/b 0x0 0x2000\n").is_err());
}

#[test]
fn static_checks_see_what_they_claim() {
    let code = code(
        "# BOOT_X in a comment\nsetenv BOOT_ORDER \"A B\"; setenv foo 1\necho ${BOOT_A_LEFT}\n",
    );
    assert_eq!(
        boot_words(&code),
        ["BOOT_A_LEFT", "BOOT_ORDER"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        setenv_targets(&code),
        ["BOOT_ORDER", "foo"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(boot_words("XBOOT_ORDER").is_empty());
}

#[test]
fn readme_documents_the_contract() {
    let readme = read(&scripts_dir().join("README.md"));
    for needle in [
        "BOOT_ORDER",
        "BOOT_A_LEFT",
        "BOOT_B_LEFT",
        "seesaw.slot=",
        "seesaw: booting slot A (tries left 2)",
        "mkimage -A",
        "fw_env.config",
        "seesaw-redund.env",
        "uboot-redund.env",
        "CONFIG_ENV_OFFSET_REDUND",
        "0x500000",
        "SEESAW_FLOOR",
        "seesaw: no valid environment copy, using defaults",
        "seesaw: writing",
    ] {
        assert!(
            readme.contains(needle),
            "bootloader-scripts/README.md does not mention `{needle}`"
        );
    }
}

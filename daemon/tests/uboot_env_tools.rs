//! Compatibility of `seesaw::uboot_env` with the real `fw_printenv` and
//! `fw_setenv` (Debian `libubootenv-tool`, libubootenv 0.3.2): each reads
//! what the other writes, single and redundant, across flag wrap-around,
//! torn copies and untouched variables.
//!
//! These tests fail (never skip) when the tools are missing:
//! `apt-get install libubootenv-tool`.
//!
//! Found while writing them (libubootenv 0.3.2):
//! - `fw_setenv` refuses a missing env file ("Configuration file wrong or
//!   corrupted") and, for an all-zero file, needs a default environment
//!   (`-f FILE`, else `/etc/u-boot-initial-env`); with `-f` and an empty
//!   file it writes a fresh environment. The fixtures start that way, so the
//!   first bytes seesaw reads come from the tool, not from seesaw.
//! - It keeps variables sorted by name and pads the data area with whatever
//!   was in its heap buffer (the CRC covers it, so that is harmless).
//! - Its lock file `/var/lock/fw_printenv.lock` is optional: the tools carry
//!   on if it cannot be created, so nothing has to be prepared for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seesaw::uboot_env::{
    select_current, BootEnv, CopyIndex, EnvBlock, EnvError, EnvLayout, UbootEnv,
};

type Vars = BTreeMap<String, String>;

const INSTALL_HINT: &str = "apt-get install libubootenv-tool";

/// Panics with an install hint unless both tools run.
fn require_tools() {
    for tool in ["fw_printenv", "fw_setenv"] {
        match Command::new(tool).arg("-V").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "`{tool} -V` failed ({}): {}; these tests need the real tool: {INSTALL_HINT}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(err) => panic!(
                "cannot run `{tool}` ({err}); these tests need the real tool: {INSTALL_HINT}"
            ),
        }
    }
}

/// Where the environment copies live in one test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// `uboot.env` on a FAT partition: one copy, whole file.
    SingleFile,
    /// One copy at a non-zero offset in a disk image (raw eMMC stand-in).
    SingleAtOffset,
    /// Two copies in two files.
    RedundantTwoFiles,
    /// Two copies at two offsets of one disk image (i.MX raw eMMC style).
    RedundantOneImage,
}

const ALL_LAYOUTS: [Layout; 4] = [
    Layout::SingleFile,
    Layout::SingleAtOffset,
    Layout::RedundantTwoFiles,
    Layout::RedundantOneImage,
];
const REDUNDANT_LAYOUTS: [Layout; 2] = [Layout::RedundantTwoFiles, Layout::RedundantOneImage];

struct Board {
    dir: tempfile::TempDir,
    layout: Layout,
    config: PathBuf,
    /// `(file, offset, size)` of each copy, as in the config.
    copies: Vec<(PathBuf, u64, usize)>,
}

impl Board {
    /// Zero-filled storage and a matching `fw_env.config`; no valid
    /// environment yet.
    fn blank(layout: Layout) -> Board {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let (config_text, copies) = match layout {
            Layout::SingleFile => {
                let file = path("uboot.env");
                zero_file(&file, 0x4000);
                (
                    // envsize is hex even without 0x, for the tools and for us.
                    format!(
                        "# Raspberry Pi: uboot.env on FAT\n{} 0 4000\n",
                        file.display()
                    ),
                    vec![(file, 0, 0x4000)],
                )
            }
            Layout::SingleAtOffset => {
                let file = path("emmc.img");
                zero_file(&file, 0x180000);
                (
                    format!("{}\t0x100000\t0x2000\n", file.display()),
                    vec![(file, 0x100000, 0x2000)],
                )
            }
            Layout::RedundantTwoFiles => {
                let (a, b) = (path("uboot.env"), path("uboot-redund.env"));
                zero_file(&a, 0x4000);
                zero_file(&b, 0x4000);
                (
                    format!("{} 0x0 0x4000\n{} 0x0 0x4000\n", a.display(), b.display()),
                    vec![(a, 0, 0x4000), (b, 0, 0x4000)],
                )
            }
            Layout::RedundantOneImage => {
                let file = path("emmc.img");
                zero_file(&file, 0x500000);
                (
                    format!(
                        "# i.MX: two copies on raw eMMC\n\
                         {0} 0x400000 0x2000 0x200\n{0} 0x402000 0x2000 0x200\n",
                        file.display()
                    ),
                    vec![(file.clone(), 0x400000, 0x2000), (file, 0x402000, 0x2000)],
                )
            }
        };
        let config = path("fw_env.config");
        fs::write(&config, config_text).unwrap();
        Board {
            dir,
            layout,
            config,
            copies,
        }
    }

    /// A board whose environment was created by `fw_setenv` from an empty
    /// default environment, then given `vars`.
    fn initialised_by_fw_setenv(layout: Layout, vars: &[(&str, &str)]) -> Board {
        let board = Board::blank(layout);
        let empty_defaults = board.dir.path().join("empty-defaults");
        fs::write(&empty_defaults, "").unwrap();
        let script = board.script(vars);
        run_ok(
            Command::new("fw_setenv")
                .arg("-c")
                .arg(&board.config)
                .arg("-f")
                .arg(&empty_defaults)
                .arg("-s")
                .arg(&script),
        );
        board
    }

    fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }

    fn seesaw(&self) -> UbootEnv {
        UbootEnv::open(&self.config).unwrap()
    }

    /// A default environment path that does not exist, so the tools fail
    /// instead of silently using `/etc/u-boot-initial-env`.
    fn no_defaults(&self) -> PathBuf {
        self.dir.path().join("no-default-env")
    }

    fn script(&self, vars: &[(&str, &str)]) -> PathBuf {
        let path = self.dir.path().join("script.txt");
        let mut file = fs::File::create(&path).unwrap();
        for (name, value) in vars {
            writeln!(file, "{name}={value}").unwrap();
        }
        path
    }

    fn fw_printenv(&self) -> Result<Vars, String> {
        let output = Command::new("fw_printenv")
            .arg("-c")
            .arg(&self.config)
            .arg("-f")
            .arg(self.no_defaults())
            .output()
            .unwrap();
        if !output.status.success() {
            return Err(describe(&output));
        }
        let text = String::from_utf8(output.stdout).unwrap();
        Ok(text
            .lines()
            .map(|line| {
                let (name, value) = line.split_once('=').unwrap();
                (name.to_string(), value.to_string())
            })
            .collect())
    }

    fn fw_printenv_ok(&self) -> Vars {
        self.fw_printenv()
            .unwrap_or_else(|err| panic!("{:?}: fw_printenv failed: {err}", self.layout))
    }

    /// `fw_setenv name value` (one variable, as on the command line).
    fn fw_setenv(&self, name: &str, value: &str) {
        run_ok(
            Command::new("fw_setenv")
                .arg("-c")
                .arg(&self.config)
                .arg("-f")
                .arg(self.no_defaults())
                .arg(name)
                .arg(value),
        );
    }

    fn seesaw_vars(&self) -> Vars {
        self.seesaw()
            .read_vars()
            .unwrap_or_else(|err| panic!("{:?}: seesaw read failed: {err}", self.layout))
            .into_iter()
            .collect()
    }

    fn copy_bytes(&self, index: usize) -> Vec<u8> {
        let (file, offset, size) = &self.copies[index];
        let image = fs::read(file).unwrap();
        let start = *offset as usize;
        image[start..start + size].to_vec()
    }

    fn write_copy_bytes(&self, index: usize, bytes: &[u8]) {
        let (file, offset, size) = &self.copies[index];
        assert_eq!(bytes.len(), *size);
        let mut image = fs::read(file).unwrap();
        let start = *offset as usize;
        image[start..start + size].copy_from_slice(bytes);
        fs::write(file, image).unwrap();
    }

    fn block(&self, index: usize) -> EnvBlock {
        let layout = if self.is_redundant() {
            EnvLayout::Redundant
        } else {
            EnvLayout::Single
        };
        EnvBlock::from_bytes(self.copy_bytes(index), layout).unwrap()
    }

    /// Index of the current copy by seesaw's own selection.
    fn current(&self) -> usize {
        if !self.is_redundant() {
            return 0;
        }
        select_current(&self.block(0), &self.block(1))
            .map(CopyIndex::index)
            .expect("a valid copy")
    }

    /// Size of every file, to prove nothing was extended or truncated.
    fn file_sizes(&self) -> Vec<u64> {
        self.copies
            .iter()
            .map(|(file, _, _)| fs::metadata(file).unwrap().len())
            .collect()
    }
}

fn zero_file(path: &Path, size: u64) {
    let file = fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
}

fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run_ok(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?} ({err}); {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        describe(&output)
    );
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Variables a real board has that seesaw must never touch.
const BOARD_VARS: &[(&str, &str)] = &[
    ("arch", "arm"),
    (
        "bootcmd",
        "run distro_bootcmd; if test ${BOOT_ORDER} = \"A B\"; then echo A; fi",
    ),
    (
        "bootargs",
        "console=ttymxc1,115200 root=/dev/mmcblk2p2 rootwait ro",
    ),
    ("ethaddr", "00:04:9f:05:aa:bb"),
    ("fdt_addr_r", "0x83000000"),
    ("expr", "a=b=c"),
    ("unicode", "grüße ✓"),
    ("BOOT_ORDER", "A B"),
    ("BOOT_A_LEFT", "3"),
    ("BOOT_B_LEFT", "3"),
];

#[test]
fn seesaw_reads_what_fw_setenv_wrote() {
    require_tools();
    for layout in ALL_LAYOUTS {
        let board = Board::initialised_by_fw_setenv(layout, BOARD_VARS);
        assert_eq!(board.seesaw_vars(), vars(BOARD_VARS), "{layout:?} initial");
        let mut flags = Vec::new();
        for round in 0..5 {
            let value = format!("{}", 2 - round % 3);
            board.fw_setenv("BOOT_A_LEFT", &value);
            board.fw_setenv(&format!("round{round}"), "done with spaces");
            let want = board.fw_printenv_ok();
            assert_eq!(want["BOOT_A_LEFT"], value);
            assert_eq!(board.seesaw_vars(), want, "{layout:?} round {round}");
            if board.is_redundant() {
                flags.push(board.block(board.current()).flag().unwrap());
            }
        }
        if board.is_redundant() {
            // fw_setenv -f made flag 1; then two writes per round.
            assert_eq!(flags, vec![3, 5, 7, 9, 11], "{layout:?} flags advance");
        }
    }
}

#[test]
fn fw_printenv_reads_what_seesaw_wrote_alternating_with_fw_setenv() {
    require_tools();
    for layout in ALL_LAYOUTS {
        let board = Board::initialised_by_fw_setenv(layout, BOARD_VARS);
        let sizes = board.file_sizes();
        let mut env = board.seesaw();
        for round in 0..4 {
            let (new, old) = if round % 2 == 0 {
                ("B", "A")
            } else {
                ("A", "B")
            };
            let previous = board.current();
            let previous_bytes = board.copy_bytes(previous);
            let order = format!("{new} {old}");
            let left = format!("BOOT_{new}_LEFT");
            env.write_vars(&[("BOOT_ORDER", Some(order.as_str())), (&left, Some("3"))])
                .unwrap();
            if board.is_redundant() {
                assert_ne!(
                    board.current(),
                    previous,
                    "{layout:?}: wrote the older copy"
                );
                assert_eq!(
                    board.copy_bytes(previous),
                    previous_bytes,
                    "{layout:?}: previously current copy untouched"
                );
            }
            let printed = board.fw_printenv_ok();
            assert_eq!(printed["BOOT_ORDER"], order, "{layout:?} round {round}");
            assert_eq!(printed[left.as_str()], "3");
            assert_eq!(board.seesaw_vars(), printed);

            board.fw_setenv(&format!("BOOT_{old}_LEFT"), &round.to_string());
            let printed = board.fw_printenv_ok();
            assert_eq!(board.seesaw_vars(), printed, "{layout:?} after fw_setenv");
            assert_eq!(
                env.read_var(&format!("BOOT_{old}_LEFT")).unwrap(),
                Some(round.to_string())
            );
        }
        // A deletion through seesaw is seen by fw_printenv too.
        env.write_vars(&[("BOOT_B_LEFT", None)]).unwrap();
        assert!(!board.fw_printenv_ok().contains_key("BOOT_B_LEFT"));
        assert_eq!(
            board.file_sizes(),
            sizes,
            "{layout:?}: no file grew or shrank"
        );
    }
}

#[test]
fn untouched_variables_are_preserved_exactly() {
    require_tools();
    for layout in ALL_LAYOUTS {
        let board = Board::initialised_by_fw_setenv(layout, BOARD_VARS);
        let before = board.fw_printenv_ok();
        let before_entries: Vec<Vec<u8>> = entries(&board.block(board.current()));

        board
            .seesaw()
            .write_vars(&[
                ("BOOT_ORDER", Some("B A")),
                ("BOOT_B_LEFT", Some("3")),
                ("seesaw_new", Some("appended")),
            ])
            .unwrap();

        let mut after = board.fw_printenv_ok();
        assert_eq!(after.remove("BOOT_ORDER").as_deref(), Some("B A"));
        assert_eq!(after.remove("BOOT_B_LEFT").as_deref(), Some("3"));
        assert_eq!(after.remove("seesaw_new").as_deref(), Some("appended"));
        let mut before_rest = before.clone();
        before_rest.remove("BOOT_ORDER");
        before_rest.remove("BOOT_B_LEFT");
        assert_eq!(after, before_rest, "{layout:?}: other variables unchanged");

        // Byte level: same entries in the same (fw_setenv's sorted) order,
        // changed ones in place, the new one at the end.
        let want: Vec<Vec<u8>> = before_entries
            .iter()
            .map(|entry| match entry.as_slice() {
                e if e.starts_with(b"BOOT_ORDER=") => b"BOOT_ORDER=B A".to_vec(),
                e if e.starts_with(b"BOOT_B_LEFT=") => b"BOOT_B_LEFT=3".to_vec(),
                e => e.to_vec(),
            })
            .chain([b"seesaw_new=appended".to_vec()])
            .collect();
        assert_eq!(entries(&board.block(board.current())), want, "{layout:?}");
    }
}

fn entries(block: &EnvBlock) -> Vec<Vec<u8>> {
    block
        .entries(Path::new("test"))
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// How a newer copy gets damaged.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// One bit flipped in the data area.
    FlippedByte,
    /// A write that stopped halfway: the second half still holds zeros.
    TornWrite,
}

#[test]
fn damaged_newer_copy_falls_back_to_the_older_one_and_is_rewritten() {
    require_tools();
    for layout in REDUNDANT_LAYOUTS {
        for damage in [Damage::FlippedByte, Damage::TornWrite] {
            let board = Board::initialised_by_fw_setenv(layout, BOARD_VARS);
            board.fw_setenv("BOOT_ORDER", "B A");
            let older_vars = board.fw_printenv_ok();
            board.fw_setenv("BOOT_ORDER", "A B");
            board.fw_setenv("BOOT_A_LEFT", "2");

            // Make the last write the damaged one: newer copy = fw_setenv's
            // last block; older copy = the one before it.
            let newer = board.current();
            let older = 1 - newer;
            let older_bytes = board.copy_bytes(older);
            let older_expected: Vars = board.seesaw_vars_of(older);
            let mut bytes = board.copy_bytes(newer);
            match damage {
                Damage::FlippedByte => bytes[7] ^= 0x20,
                Damage::TornWrite => {
                    let half = bytes.len() / 2;
                    bytes[half..].fill(0);
                    // Make sure the tear hit something the CRC covers.
                    bytes[8..half].fill(0);
                }
            }
            board.write_copy_bytes(newer, &bytes);
            let case = format!("{layout:?}/{damage:?}");

            let printed = board.fw_printenv_ok();
            assert_eq!(printed, older_expected, "{case}: fw_printenv fell back");
            assert_eq!(board.seesaw_vars(), printed, "{case}: seesaw fell back");
            assert_eq!(printed["BOOT_ORDER"], "A B");
            assert_eq!(printed["BOOT_A_LEFT"], "3");
            assert_ne!(printed, older_vars);

            // seesaw's next write goes over the damaged copy only.
            board
                .seesaw()
                .write_vars(&[("BOOT_A_LEFT", Some("1"))])
                .unwrap();
            assert_eq!(board.copy_bytes(older), older_bytes, "{case}: older kept");
            assert_eq!(board.current(), newer, "{case}: damaged copy rewritten");
            let printed = board.fw_printenv_ok();
            assert_eq!(printed["BOOT_A_LEFT"], "1", "{case}");
            assert_eq!(printed["BOOT_ORDER"], "A B", "{case}");
            assert_eq!(board.seesaw_vars(), printed, "{case}");
        }
    }
}

impl Board {
    /// Variables of one copy, parsed by seesaw's block code.
    fn seesaw_vars_of(&self, index: usize) -> Vars {
        let block = self.block(index);
        assert!(block.is_valid());
        block
            .vars(&self.copies[index].0)
            .unwrap()
            .into_iter()
            .collect()
    }
}

#[test]
fn no_valid_copy_both_tools_refuse_and_seesaw_writes_nothing() {
    require_tools();
    for layout in ALL_LAYOUTS {
        let board = Board::initialised_by_fw_setenv(layout, BOARD_VARS);
        for index in 0..board.copies.len() {
            let mut bytes = board.copy_bytes(index);
            bytes[10] ^= 0xff;
            board.write_copy_bytes(index, &bytes);
        }
        let before: Vec<Vec<u8>> = (0..board.copies.len())
            .map(|i| board.copy_bytes(i))
            .collect();
        assert!(
            board.fw_printenv().is_err(),
            "{layout:?}: fw_printenv refuses"
        );
        let mut env = board.seesaw();
        assert!(
            matches!(env.read_vars(), Err(EnvError::NoValidCopy { .. })),
            "{layout:?}"
        );
        assert!(
            matches!(
                env.write_vars(&[("BOOT_ORDER", Some("B A"))]),
                Err(EnvError::NoValidCopy { .. })
            ),
            "{layout:?}"
        );
        let after: Vec<Vec<u8>> = (0..board.copies.len())
            .map(|i| board.copy_bytes(i))
            .collect();
        assert_eq!(after, before, "{layout:?}: nothing written");
    }
}

#[test]
fn fresh_zeroed_storage_is_refused_by_seesaw_and_needs_defaults_for_fw_setenv() {
    require_tools();
    for layout in ALL_LAYOUTS {
        let board = Board::blank(layout);
        assert!(matches!(
            board.seesaw().read_vars(),
            Err(EnvError::NoValidCopy { .. })
        ));
        // Without a default environment fw_setenv refuses and writes nothing.
        let output = Command::new("fw_setenv")
            .arg("-c")
            .arg(&board.config)
            .arg("-f")
            .arg(board.no_defaults())
            .args(["a", "1"])
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "{layout:?}: {}",
            describe(&output)
        );
        assert!((0..board.copies.len()).all(|i| board.copy_bytes(i).iter().all(|&b| b == 0)));
        // A block built by seesaw is accepted by the tools as a start.
        let envsize = board.copies[0].2;
        let first = if board.is_redundant() {
            EnvBlock::from_vars(EnvLayout::Redundant, envsize, 1, &[("a", "1")]).unwrap()
        } else {
            EnvBlock::from_vars(EnvLayout::Single, envsize, 0, &[("a", "1")]).unwrap()
        };
        board.write_copy_bytes(0, first.as_bytes());
        assert_eq!(board.fw_printenv_ok(), vars(&[("a", "1")]), "{layout:?}");
        board.fw_setenv("b", "2");
        assert_eq!(board.seesaw_vars(), vars(&[("a", "1"), ("b", "2")]));
    }
}

#[test]
fn missing_env_file_is_an_open_error_for_seesaw_and_a_config_error_for_the_tools() {
    require_tools();
    let board = Board::blank(Layout::SingleFile);
    fs::remove_file(&board.copies[0].0).unwrap();
    assert!(board.fw_printenv().is_err());
    assert!(matches!(
        board.seesaw().read_vars(),
        Err(EnvError::OpenFailed { .. })
    ));
    assert!(matches!(
        board.seesaw().write_vars(&[("a", Some("1"))]),
        Err(EnvError::OpenFailed { .. })
    ));
    assert!(
        !board.copies[0].0.exists(),
        "seesaw never creates the env file"
    );
}

#[test]
fn flag_wrap_from_255_to_0_agrees_with_the_tools() {
    require_tools();
    for layout in REDUNDANT_LAYOUTS {
        let board = Board::blank(layout);
        let size = board.copies[0].2;
        let build = |flag, value| {
            EnvBlock::from_vars(
                EnvLayout::Redundant,
                size,
                flag,
                &[("v", value), ("k", "1")],
            )
            .unwrap()
        };
        board.write_copy_bytes(0, build(254, "older").as_bytes());
        board.write_copy_bytes(1, build(255, "newest").as_bytes());
        assert_eq!(board.fw_printenv_ok()["v"], "newest", "{layout:?}");
        assert_eq!(board.seesaw_vars()["v"], "newest", "{layout:?}");

        // seesaw: 255 + 1 wraps to 0 in the first copy, which must now win.
        board
            .seesaw()
            .write_vars(&[("v", Some("wrapped"))])
            .unwrap();
        assert_eq!(board.block(0).flag(), Some(0));
        assert_eq!(board.fw_printenv_ok()["v"], "wrapped", "{layout:?}");

        // fw_setenv continues from 0 in the second copy; seesaw follows.
        board.fw_setenv("v", "after-wrap");
        assert_eq!(board.block(1).flag(), Some(1));
        assert_eq!(board.seesaw_vars()["v"], "after-wrap", "{layout:?}");

        // And the tool's own wrap: make the second copy 255, let it write.
        board.write_copy_bytes(0, build(254, "older").as_bytes());
        board.write_copy_bytes(1, build(255, "newest").as_bytes());
        board.fw_setenv("v", "tool-wrapped");
        assert_eq!(board.block(0).flag(), Some(0));
        assert_eq!(board.seesaw_vars()["v"], "tool-wrapped", "{layout:?}");
    }
}

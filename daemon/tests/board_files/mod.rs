//! The files every simulated board has, written one way for every test: the
//! redundant U-Boot environment and its `fw_env.config`, the kernel command
//! line, the slot files and `seesaw.toml`. Both boards (`common::Board`,
//! `support::Board`) and the benchmarks' boards are built from these; each
//! chooses its own variables, sizes and configuration.
//!
//! The environment is encoded here byte by byte (CRC32 little-endian, flag
//! byte, `name=value\0` entries, a closing `\0`, zero padding; U-Boot's
//! `tools/env/fw_env.c`), not with the library's writer, so the library's
//! reader is tested against an encoding it did not produce.
//!
//! Every test crate that uses `common` or `support` declares it too
//! (`mod board_files;`), once, at its root.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// Size of one environment copy, bytes (`CONFIG_ENV_SIZE`).
pub const ENV_SIZE: usize = 0x4000;

/// One redundant environment copy of [`ENV_SIZE`] bytes holding `vars` in
/// the order given, with flag byte `flag`.
pub fn env_block(vars: &[(&str, &str)], flag: u8) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, v) in vars {
        data.extend_from_slice(format!("{k}={v}").as_bytes());
        data.push(0);
    }
    data.resize(ENV_SIZE - 5, 0);
    let mut out = crc32fast::hash(&data).to_le_bytes().to_vec();
    out.push(flag);
    out.extend_from_slice(&data);
    out
}

/// Writes `<dir>/uboot.env`: two copies back to back, the first holding
/// `vars` (flag 1), the second all zeros (its CRC does not match, so the
/// first is the one in use, as after a factory flash).
pub fn write_env(dir: &Path, vars: &[(&str, &str)]) {
    let mut env = env_block(vars, 1);
    env.resize(2 * ENV_SIZE, 0);
    std::fs::write(dir.join("uboot.env"), env).unwrap();
}

/// Writes `<dir>/fw_env.config` naming both copies in `<dir>/uboot.env`
/// (offsets 0 and [`ENV_SIZE`]).
pub fn write_fw_env_config(dir: &Path) {
    std::fs::write(
        dir.join("fw_env.config"),
        format!(
            "{0} 0x0 {ENV_SIZE:#x}\n{0} {ENV_SIZE:#x} {ENV_SIZE:#x}\n",
            dir.join("uboot.env").display()
        ),
    )
    .unwrap();
}

/// The kernel command line U-Boot passes when it boots `slot` (`A`, `B`),
/// `seesaw.slot=` among other arguments.
pub fn cmdline(slot: &str) -> String {
    format!("console=ttyS0 root=/dev/mmcblk0p2 seesaw.slot={slot} quiet\n")
}

/// Writes [`cmdline`] for `slot` to `<dir>/cmdline`.
pub fn write_cmdline(dir: &Path, slot: &str) {
    std::fs::write(dir.join("cmdline"), cmdline(slot)).unwrap();
}

/// A slot holding a running system: `len` bytes, the byte at offset `i`
/// being `i % 251`. Written in 1 MiB pieces.
pub fn write_running_slot(path: &Path, len: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut piece = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(piece.len() as u64) as usize;
        for (i, b) in piece[..n].iter_mut().enumerate() {
            *b = ((at + i as u64) % 251) as u8;
        }
        f.write_all(&piece[..n]).unwrap();
        at += n as u64;
    }
    f.flush().unwrap();
}

/// An empty slot: `len` zero bytes (sparse).
pub fn write_empty_slot(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// A trust role: name, threshold, public key paths as the file names them.
pub type Role<'a> = (&'a str, usize, &'a [&'a str]);

/// The one `release` role of the boards, threshold 1, `keys/release.pub`.
pub const RELEASE_ROLE: &[Role<'static>] = &[("release", 1, &["keys/release.pub"])];

/// A board's `seesaw.toml`: data directory `data`, command line `cmdline`,
/// `fw_env.config`, slot A `slot-a.img`, all relative to the file.
pub struct ConfigFile<'a> {
    /// `compatible`.
    pub compatible: &'a str,
    /// More top-level keys, one per line (`device_id = "dev-1"\n`).
    pub top: &'a str,
    /// Slot B's device.
    pub slot_b: &'a str,
    /// The trust roles.
    pub roles: &'a [Role<'a>],
    /// Tables after the trust roles (`[network]`, `[health]`, `[fleet]`).
    pub tables: &'a str,
}

impl Default for ConfigFile<'_> {
    fn default() -> Self {
        ConfigFile {
            compatible: "test-board",
            top: "",
            slot_b: "slot-b.img",
            roles: RELEASE_ROLE,
            tables: "",
        }
    }
}

impl ConfigFile<'_> {
    /// The TOML text.
    pub fn text(&self) -> String {
        let mut text = format!(
            "compatible = \"{}\"\ndata_dir = \"data\"\ncmdline = \"cmdline\"\n\
             fw_env_config = \"fw_env.config\"\n{}\
             [slots.A]\ndevice = \"slot-a.img\"\n[slots.B]\ndevice = \"{}\"\n",
            self.compatible, self.top, self.slot_b
        );
        for (role, threshold, keys) in self.roles {
            let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
            text += &format!(
                "[[trust.roles]]\nname = \"{role}\"\nthreshold = {threshold}\nkeys = [{}]\n",
                keys.join(", ")
            );
        }
        text + self.tables
    }

    /// Writes [`ConfigFile::text`] to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.text()).unwrap();
    }
}

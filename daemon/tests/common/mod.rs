//! The simulated board of the tests that drive the library directly: real
//! files, a real ext4 image made with `mkfs.ext4 -d`, a redundant U-Boot
//! environment, a kernel command line file, keys made from fixed seeds and
//! a data directory with a state file. The files every board has come from
//! [`board_files`]; `support::Board` is the board of the tests that run the
//! `seesaw` binary and daemon.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use crate::board_files;
use seesaw::bundle::{self, CreateOptions, RawBundle, MAGIC};
use seesaw::config::Config;
use seesaw::install::NoProgress;
use seesaw::manifest::Manifest;
use seesaw::state::{State, StateStore};
use seesaw::trust::{Envelope, PrivateKey};
use seesaw::uboot_env::UbootEnv;
use seesaw::updater::{InstallOptions, UpdateError, Updater};
use time::macros::datetime;
use time::OffsetDateTime;

pub const IMAGE_MIB: u64 = 4;
pub const CHUNK: u64 = 64 * 1024;
pub const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);

/// A board in a temporary directory.
pub struct Board {
    pub dir: tempfile::TempDir,
    pub release: PrivateKey,
    pub release2: PrivateKey,
    pub stranger: PrivateKey,
    pub image: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); apt-get install e2fsprogs"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Board {
    pub fn new() -> Board {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A real ext4 root filesystem from a real directory tree.
        let tree = d.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
        std::fs::write(tree.join("etc/seesaw-release"), "VERSION=2.0.0\n").unwrap();
        let mut noise = Vec::new();
        for i in 0u32..300_000 {
            noise.extend_from_slice(&i.wrapping_mul(2654435761).to_le_bytes());
        }
        std::fs::write(tree.join("usr/bin/tool"), &noise).unwrap();
        let image = d.join("rootfs.ext4");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg(format!("{IMAGE_MIB}M")));

        // Slot A runs an older image; slot B is empty; both sized like partitions.
        board_files::write_running_slot(&d.join("slot-a.img"), 8 << 20);
        board_files::write_empty_slot(&d.join("slot-b.img"), 8 << 20);
        board_files::write_empty_slot(&d.join("slot-small.img"), 2 << 20);
        board_files::write_env(
            d,
            &[
                ("bootcmd", "run distro_bootcmd"),
                ("BOOT_ORDER", "A B"),
                ("BOOT_A_LEFT", "3"),
                ("BOOT_B_LEFT", "0"),
            ],
        );
        board_files::write_fw_env_config(d);
        board_files::write_cmdline(d, "A");

        let keys = d.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let release = PrivateKey::from_seed(&[1; 32]);
        let release2 = PrivateKey::from_seed(&[2; 32]);
        let fleet = PrivateKey::from_seed(&[3; 32]);
        let stranger = PrivateKey::from_seed(&[4; 32]);
        for (name, k) in [
            ("release", &release),
            ("release2", &release2),
            ("fleet", &fleet),
        ] {
            std::fs::write(
                keys.join(format!("{name}.pub")),
                k.public().to_pem().unwrap(),
            )
            .unwrap();
        }
        // Persisted state with a floor and a deny-listed version.
        StateStore::new(&d.join("data"))
            .save(&State {
                floor: 3,
                failed_versions: vec!["6.6.6".into()],
                ..State::default()
            })
            .unwrap();
        let board = Board {
            dir,
            release,
            release2,
            stranger,
            image,
        };
        board.write_config("seesaw.toml", "slot-b.img", &[("release", 1, &["release"])]);
        board
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` (relative to the board): the board's configuration
    /// with slot B on `slot_b` and trust roles of `(name, threshold, key
    /// names)`, each key `keys/<key name>.pub`. Returns its path.
    pub fn write_config(
        &self,
        name: &str,
        slot_b: &str,
        roles: &[(&str, usize, &[&str])],
    ) -> PathBuf {
        let keys: Vec<Vec<String>> = roles
            .iter()
            .map(|(_, _, keys)| keys.iter().map(|k| format!("keys/{k}.pub")).collect())
            .collect();
        let keys: Vec<Vec<&str>> = keys
            .iter()
            .map(|k| k.iter().map(String::as_str).collect())
            .collect();
        let roles: Vec<board_files::Role> = roles
            .iter()
            .zip(&keys)
            .map(|((role, threshold, _), keys)| (*role, *threshold, keys.as_slice()))
            .collect();
        let p = self.path(name);
        board_files::ConfigFile {
            top: "device_id = \"dev-1\"\n",
            slot_b,
            roles: &roles,
            ..Default::default()
        }
        .write(&p);
        p
    }

    /// The kernel command line of a boot of `slot` (`A`, `B`).
    pub fn set_cmdline(&self, slot: &str) {
        board_files::write_cmdline(self.dir.path(), slot);
    }

    pub fn create(
        &self,
        name: &str,
        version: &str,
        security_version: u64,
        compatible: &str,
    ) -> PathBuf {
        let out = self.path(name);
        bundle::create(
            &self.image,
            &[&self.release],
            &CreateOptions {
                compatible: compatible.into(),
                version: version.into(),
                security_version,
                created: NOW,
                expires: Some(datetime!(2027-11-21 12:00 UTC)),
                chunk_size: CHUNK,
                zstd_level: 3,
                threads: 2,
            },
            bundle::Outputs {
                file: Some(&out),
                dir: None,
                delta_bases: &[],
            },
        )
        .unwrap();
        out
    }

    /// Everything bad input must not change.
    /// The board's real environment, without the system's lock file.
    pub fn env(&self) -> UbootEnv {
        UbootEnv::open(&self.path("fw_env.config"))
            .unwrap()
            .with_lock_file(None)
    }

    /// An updater for this board on its real environment.
    pub fn updater(&self) -> Updater {
        let config = self.path("seesaw.toml");
        Updater::with_env(
            Config::load(&config).unwrap(),
            &config,
            Box::new(self.env()),
        )
    }

    /// The value of `name` in the board's environment.
    pub fn var(&self, name: &str) -> Option<String> {
        seesaw::uboot_env::BootEnv::read_var(&self.env(), name).unwrap()
    }

    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        ["slot-a.img", "uboot.env", "data/state.json"]
            .iter()
            .map(|n| (n.to_string(), std::fs::read(self.path(n)).unwrap()))
            .collect()
    }

    pub fn install(&self, config: &Path, bundle: &Path) -> Result<(), UpdateError> {
        let cfg = Config::load(config).unwrap();
        let env = UbootEnv::open(&cfg.fw_env_config)
            .unwrap()
            .with_lock_file(None);
        install_with(&mut Updater::with_env(cfg, config, Box::new(env)), bundle)
    }
}

/// Installs `bundle` with `updater` at [`NOW`], without progress or cancel.
pub fn install_with(updater: &mut Updater, bundle: &Path) -> Result<(), UpdateError> {
    updater
        .install(
            bundle,
            &InstallOptions::default(),
            &NoProgress,
            &AtomicBool::new(false),
            NOW,
        )
        .map(|_| ())
}

/// Installs `source` (a URL or path) through the library with the
/// configuration `cfg` and its real environment (no lock file), on its own
/// thread, at [`NOW`] with two workers; panics if it takes longer than
/// `limit`.
pub fn install_source_within(
    cfg: &Path,
    source: &str,
    limit: std::time::Duration,
) -> Result<seesaw::updater::InstallReport, UpdateError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let cfg = cfg.to_path_buf();
    let source = source.to_string();
    std::thread::spawn(move || {
        let config = Config::load(&cfg).unwrap();
        let env = UbootEnv::open(&config.fw_env_config)
            .unwrap()
            .with_lock_file(None);
        let mut updater = Updater::with_env(config, &cfg, Box::new(env));
        let r = updater.install_source(
            &source,
            &InstallOptions {
                threads: 2,
                force: false,
            },
            &NoProgress,
            &AtomicBool::new(false),
            NOW,
        );
        let _ = tx.send(r);
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("install did not end within {limit:?}"))
}

/// A good bundle's pieces: manifest and payload bytes.
pub fn parts(path: &Path) -> (Manifest, Vec<u8>) {
    let raw = RawBundle::open(path).unwrap();
    let manifest = raw.unverified_manifest().unwrap();
    let bytes = std::fs::read(path).unwrap();
    (manifest, bytes[raw.payload_start as usize..].to_vec())
}

pub fn write_bundle(path: &Path, envelope_json: &[u8], payload: &[u8]) {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(envelope_json.len() as u64).to_le_bytes());
    out.extend_from_slice(envelope_json);
    out.extend_from_slice(payload);
    std::fs::write(path, out).unwrap();
}

pub fn signed(payload_type: &str, manifest_json: &[u8], keys: &[&PrivateKey]) -> Vec<u8> {
    Envelope::sign(payload_type, manifest_json, keys).to_json()
}

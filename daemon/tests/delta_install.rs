//! Delta installs from the network layout's block store, against the
//! fault-injecting HTTPS server of `support/https_server.rs`.
//!
//! v1 and v2 are real ext4 images made with `mkfs.ext4 -d` from two trees
//! that differ the way a rebuilt release does: a few files edited, one
//! removed, a new 2 MiB file and a new small one. Rebuilding moves blocks, so
//! matching has to be by content. Slot A holds v1; the server has v2's
//! network layout. Every case ends either with slot B holding v2 byte for
//! byte and the environment flipped, or with nothing changed (environment,
//! slot A and state.json byte-identical, no journal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/sim/power_on.rs"]
mod power_on;

mod board_files;
mod common;
#[path = "support/https_server.rs"]
mod https_server;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Board, NOW};
use https_server::{Server, ServerOptions, TestPki};
use seesaw::bundle::{self, CreateOptions, Outputs};
use seesaw::config::Config;
use seesaw::transport::TransportError;
use seesaw::trust::Signer;
use seesaw::uboot_env::{BootEnv, UbootEnv};
use seesaw::updater::{InstallReport, UpdateError, Updater};
use sha2::{Digest, Sha256};

const IMAGE_MIB: u64 = 24;
const SLOT_MIB: u64 = 32;
const CHUNK: u64 = 256 * 1024;
const INSTALL_LIMIT: Duration = Duration::from_secs(120);
const MANIFEST: &str = "/net/manifest.dsse.json";
const INDEX: &str = "/net/rootfs.index";
const BLOCKS: &str = "/net/rootfs.blocks";
const PAYLOAD: &str = "/net/rootfs.payload";
const NETWORK: &str = "ca = \"pki/ca.pem\"\nconnect_timeout = 5\nread_timeout = 3\n\
                       min_throughput = 16384\nthroughput_window = 5\nretries = 3\n";

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Text-like content: words from a small vocabulary (compresses like
/// program text, not like noise).
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "slot",
        "boot",
        "order",
        "tries",
        "left",
        "image",
        "chunk",
        "block",
        "verify",
        "write",
        "commit",
        "rollback",
        "kernel",
        "rootfs",
        "update",
        "bundle",
        "manifest",
        "signature",
    ];
    let mut r = Rng(seed | 1);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let w = WORDS[(r.next() % WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if r.next() % 9 == 0 { b'\n' } else { b' ' });
        if r.next() % 61 == 0 {
            out.extend_from_slice(format!("{:x}", r.next()).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| (r.next() >> 24) as u8).collect()
}

fn make_tree(dir: &Path, version: u32) {
    let lib = dir.join("usr/lib/seesaw-test");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/os-release"),
        format!("VERSION_ID={version}.0.0\n"),
    )
    .unwrap();
    for i in 0..160u64 {
        if version >= 2 && i == 17 {
            continue; // removed in v2
        }
        let len = 20_000 + (i as usize * 7919) % 90_000;
        let mut data = text(i + 1, len);
        if version >= 2 && (i == 5 || i == 80 || i == 150) {
            // Edited: a few bytes in the middle and a longer tail.
            let mid = data.len() / 2;
            data[mid..mid + 8].copy_from_slice(b"EDITEDv2");
            data.extend_from_slice(&text(1000 + i, 5000));
        }
        if version >= 3 && i == 40 {
            data.extend_from_slice(&text(3000 + i, 9000));
        }
        std::fs::write(lib.join(format!("file{i:03}")), data).unwrap();
    }
    std::fs::write(lib.join("firmware.bin"), noise(99, 1 << 20)).unwrap();
    if version >= 2 {
        std::fs::write(lib.join("new-blob.bin"), noise(7, 1 << 20)).unwrap();
        std::fs::write(lib.join("new-notes.txt"), text(4242, 30_000)).unwrap();
    }
}

/// `mkfs.ext4 -d` the way a reproducible build does (fixed UUID, hash seed
/// and time), so v1 and v2 differ only where their trees do.
fn make_image(tree: &Path, out: &Path) {
    let uuid = "5eea5a00-0000-4000-8000-0000000000d1";
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-U", uuid, "-E"])
        .arg(format!("hash_seed={uuid},root_owner=0:0"))
        .arg("-d")
        .arg(tree)
        .arg(out)
        .arg(format!("{IMAGE_MIB}M"))
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .status()
        .expect("mkfs.ext4 (apt-get install e2fsprogs)");
    assert!(status.success());
}

struct Images {
    _dir: tempfile::TempDir,
    v1: Vec<u8>,
    v2: Vec<u8>,
    v3: Vec<u8>,
    /// Network layouts of v2 and v3.
    net_v2: PathBuf,
    net_v3: PathBuf,
    /// The floor for v1 → v2: v2's blocks found nowhere in v1, zstd -9.
    floor_v2: u64,
}

fn images() -> &'static Images {
    static IMAGES: std::sync::OnceLock<Images> = std::sync::OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut read = Vec::new();
        for v in 1..=3 {
            let tree = d.join(format!("tree{v}"));
            make_tree(&tree, v);
            let img = d.join(format!("v{v}.ext4"));
            make_image(&tree, &img);
            read.push(std::fs::read(&img).unwrap());
        }
        let release = seesaw::trust::PrivateKey::from_seed(&[1; 32]);
        let keys: [&dyn Signer; 1] = [&release];
        let mut nets = Vec::new();
        for (v, base) in [(2, "v1.ext4"), (3, "v2.ext4")] {
            let net = d.join(format!("net{v}"));
            bundle::create(
                &d.join(format!("v{v}.ext4")),
                &keys,
                &CreateOptions {
                    compatible: "test-board".into(),
                    version: format!("{v}.0.0"),
                    security_version: 5,
                    created: NOW,
                    expires: None,
                    chunk_size: CHUNK,
                    zstd_level: 9,
                    threads: 2,
                },
                Outputs {
                    file: None,
                    dir: Some(&net),
                    delta_bases: &[d.join(base)],
                },
            )
            .unwrap();
            nets.push(net);
        }
        let floor_v2 = floor(&read[0], &read[1]);
        let v3 = read.pop().unwrap();
        let v2 = read.pop().unwrap();
        let v1 = read.pop().unwrap();
        Images {
            _dir: dir,
            v1,
            v2,
            v3,
            net_v3: nets.pop().unwrap(),
            net_v2: nets.pop().unwrap(),
            floor_v2,
        }
    })
}

/// Bytes of `new`'s 4 KiB blocks that appear nowhere in `old`, compressed
/// together with zstd -9.
fn floor(old: &[u8], new: &[u8]) -> u64 {
    let have: HashSet<[u8; 32]> = old.chunks(4096).map(|b| Sha256::digest(b).into()).collect();
    let novel: Vec<u8> = new
        .chunks(4096)
        .filter(|b| !have.contains(&<[u8; 32]>::from(Sha256::digest(b))))
        .flatten()
        .copied()
        .collect();
    zstd::bulk::compress(&novel, 9).unwrap().len() as u64
}

// ---------------------------------------------------------------------------
// Board and server
// ---------------------------------------------------------------------------

struct Delta {
    board: Board,
    server: Server,
    cfg: PathBuf,
    before: Vec<(String, Vec<u8>)>,
}

fn padded(image: &[u8]) -> Vec<u8> {
    let mut slot = image.to_vec();
    slot.resize((SLOT_MIB << 20) as usize, 0);
    slot
}

impl Delta {
    /// Slot A runs v1; the server has v2's network layout.
    fn new() -> Delta {
        Delta::with_network(NETWORK)
    }

    fn with_network(network: &str) -> Delta {
        let im = images();
        let board = Board::new();
        std::fs::write(board.path("slot-a.img"), padded(&im.v1)).unwrap();
        std::fs::write(
            board.path("slot-b.img"),
            vec![0u8; (SLOT_MIB << 20) as usize],
        )
        .unwrap();
        let www = board.path("www");
        publish(&im.net_v2, &www.join("net"));
        std::fs::create_dir_all(board.path("pki")).unwrap();
        TestPki::shared().write_to(&board.path("pki"));
        let cfg = board.write_config("net.toml", "slot-b.img", &[("release", 1, &["release"])]);
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str("[network]\n");
        text.push_str(network);
        std::fs::write(&cfg, text).unwrap();
        let server = Server::start(www, ServerOptions::https(TestPki::shared()));
        let before = board.snapshot();
        Delta {
            board,
            server,
            cfg,
            before,
        }
    }

    fn install(&self) -> Result<InstallReport, UpdateError> {
        self.install_with(&self.cfg)
    }

    fn install_with(&self, cfg: &Path) -> Result<InstallReport, UpdateError> {
        common::install_source_within(cfg, &self.server.url(MANIFEST), INSTALL_LIMIT)
    }

    fn assert_installed(&self, image: &[u8]) {
        let slot_b = std::fs::read(self.board.path("slot-b.img")).unwrap();
        assert!(
            slot_b[..image.len()] == image[..],
            "slot B does not hold the image"
        );
        let env = UbootEnv::open(&self.board.path("fw_env.config"))
            .unwrap()
            .with_lock_file(None);
        assert_eq!(env.read_var("BOOT_ORDER").unwrap().as_deref(), Some("B A"));
        assert_eq!(env.read_var("BOOT_B_LEFT").unwrap().as_deref(), Some("3"));
        assert!(
            !self.board.path("data/install.json").exists(),
            "journal left"
        );
    }

    fn assert_clean(&self) {
        assert!(
            self.before == self.board.snapshot(),
            "environment, slot A or state.json changed by a failed install"
        );
        assert!(
            !self.board.path("data/install.json").exists(),
            "a failed install left its journal"
        );
    }

    /// Body bytes the server sent, and what for.
    fn report(&self, case: &str) -> u64 {
        let s = self.server.stats();
        eprintln!(
            "[{case}] requests={} body_bytes_sent={} per_path={:?} ranges={}",
            s.requests,
            s.body_bytes_sent,
            s.per_path,
            s.range_headers.len()
        );
        s.body_bytes_sent
    }

    fn file_len(&self, path: &str) -> u64 {
        std::fs::metadata(self.board.path("www").join(path.trim_start_matches('/')))
            .unwrap()
            .len()
    }
}

fn publish(net: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(net).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

#[test]
fn delta_downloads_little_more_than_the_blocks_slot_a_lacks() {
    let d = Delta::new();
    let t = Instant::now();
    d.install().expect("delta install");
    let elapsed = t.elapsed();
    d.assert_installed(&images().v2);
    let sent = d.report("delta v1 -> v2");
    let full = d.file_len(PAYLOAD);
    let floor = images().floor_v2;
    eprintln!(
        "delta v1 -> v2: {sent} bytes in {elapsed:.2?}; floor {floor} bytes ({:.2}x), \
         full payload {full} bytes ({:.1}%)",
        sent as f64 / floor as f64,
        sent as f64 * 100.0 / full as f64
    );
    let s = d.server.stats();
    assert_eq!(s.requests_for(PAYLOAD), 0, "the full payload was fetched");
    assert_eq!(s.requests_for(INDEX), 1);
    // Floor (novel blocks) plus the index and the envelope, with room for
    // frames that mix a few old blocks into new ones; far below the full
    // payload either way.
    let index_and_envelope = d.file_len(INDEX) + d.file_len(MANIFEST);
    assert!(
        sent <= floor * 2 + index_and_envelope,
        "delta downloaded {sent} bytes; floor {floor}, index and envelope {index_and_envelope}"
    );
    assert!(
        sent * 2 < full,
        "delta downloaded {sent} of a {full}-byte payload"
    );
    // The index of what slot B now holds is kept for the next delta.
    assert!(d.board.path("data/slot-B.index").exists());
}

#[test]
fn the_next_delta_starts_from_the_kept_index_of_the_running_slot() {
    let d = Delta::new();
    d.install().expect("v1 -> v2");
    // Boot B and commit it, as U-Boot and the health gate would.
    d.board.set_cmdline("B");
    let mut env = UbootEnv::open(&d.board.path("fw_env.config"))
        .unwrap()
        .with_lock_file(None);
    let choice = power_on::power_on(&mut env).unwrap();
    assert!(
        matches!(
            choice,
            seesaw::slot::BootChoice::Boot {
                slot: seesaw::slot::Slot::B,
                ..
            }
        ),
        "{choice:?}"
    );
    let config = Config::load(&d.cfg).unwrap();
    let mut updater = Updater::with_env(config, &d.cfg, Box::new(env));
    updater.mark_good(NOW).unwrap();
    // v3 goes to slot A (which still holds v1); B runs v2.
    std::fs::remove_dir_all(d.board.path("www/net")).unwrap();
    publish(&images().net_v3, &d.board.path("www/net"));
    d.server.reset_stats();
    let out = Command::new(env!("CARGO_BIN_EXE_seesaw"))
        .arg("--config")
        .arg(&d.cfg)
        .arg("install")
        .arg(d.server.url(MANIFEST))
        .env(
            "SEESAW_BUS_ADDRESS",
            "unix:path=/nonexistent/seesaw-test-bus",
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "v2 -> v3 failed: {stderr}");
    assert!(
        stderr.contains("found in slot B by its kept index"),
        "the kept index was not used: {stderr}"
    );
    let sent = d.report("delta v2 -> v3 from the kept index");
    assert!(sent * 10 < d.file_len(PAYLOAD));
    let slot_a = std::fs::read(d.board.path("slot-a.img")).unwrap();
    assert!(
        slot_a[..images().v3.len()] == images().v3[..],
        "slot A does not hold v3"
    );
}

#[test]
fn local_blocks_that_do_not_verify_are_downloaded_instead() {
    let d = Delta::new();
    // Damage slot A in the middle of its data after the snapshot, the way a
    // worn-out flash would: the delta must not copy the damage.
    let mut a = std::fs::read(d.board.path("slot-a.img")).unwrap();
    for b in &mut a[(6 << 20)..(6 << 20) + 300_000] {
        *b ^= 0x5a;
    }
    std::fs::write(d.board.path("slot-a.img"), &a).unwrap();
    d.install().expect("delta over a damaged running slot");
    d.assert_installed(&images().v2);
    let sent = d.report("damaged slot A");
    assert!(sent > images().floor_v2, "nothing extra was downloaded");
}

#[test]
fn a_tampered_index_is_refused_and_nothing_changes() {
    let d = Delta::new();
    let path = d.board.path("www/net/rootfs.index");
    let mut index = std::fs::read(&path).unwrap();
    let mid = index.len() / 2;
    index[mid] ^= 1;
    std::fs::write(&path, index).unwrap();
    let e = d.install().expect_err("a tampered index was accepted");
    eprintln!("tampered index: {e:#}");
    assert!(
        matches!(e, UpdateError::Bundle(bundle::BundleError::BlockIndex(_))),
        "{e:?}"
    );
    assert_eq!(
        seesaw::failure::Classify::kind(&e).exit_status(),
        seesaw::cli::exit::REJECTED
    );
    d.assert_clean();
    assert_eq!(d.server.requests_for(BLOCKS), 0);
}

#[test]
fn without_an_index_the_full_payload_is_downloaded() {
    let d = Delta::new();
    std::fs::remove_file(d.board.path("www/net/rootfs.index")).unwrap();
    d.install().expect("install without an index");
    d.assert_installed(&images().v2);
    d.report("no index");
    assert_eq!(d.server.requests_for(PAYLOAD), 1);
    assert_eq!(d.server.requests_for(BLOCKS), 0);
}

#[test]
fn a_download_limit_refuses_more_than_the_delta_and_never_falls_back_to_full() {
    // First learn what the delta needs.
    let probe = Delta::new();
    probe.install().expect("delta install");
    // Every byte received counts: the envelope (a 16-byte probe, then
    // whole), the index and the frames.
    let needed = probe.report("probe");
    drop(probe);

    let tight = format!("{NETWORK}max_download_bytes = {}\n", needed - 1);
    let d = Delta::with_network(&tight);
    let e = d.install().expect_err("over the limit");
    eprintln!("limit {}: {e:#}", needed - 1);
    assert!(
        matches!(e, UpdateError::Transport(TransportError::OverBudget { .. })),
        "{e:?}"
    );
    d.assert_clean();
    let s = d.server.stats();
    assert_eq!(s.requests_for(BLOCKS) + s.requests_for(PAYLOAD), 0);

    let enough = format!("{NETWORK}max_download_bytes = {needed}\n");
    let d = Delta::with_network(&enough);
    d.install().expect("delta within the limit");
    d.assert_installed(&images().v2);
}

#[test]
fn a_connection_dropped_inside_the_block_store_resumes() {
    let d = Delta::new();
    // The 1 MiB new file is one long run of frames; the envelope and the
    // index are far shorter than 512 KiB, so the drop lands in the store.
    d.server.with_faults(|f| {
        f.drop_after(512 * 1024);
    });
    d.install().expect("install after a drop");
    d.assert_installed(&images().v2);
    d.report("dropped in the block store");
    assert!(d.server.requests_for(BLOCKS) >= 2, "no resumed request");
}

#[test]
fn a_frame_corrupted_in_transit_is_fetched_again_never_written() {
    // Learn which ranges of the store a delta reads, then corrupt a byte in
    // the middle of the longest one.
    let probe = Delta::new();
    probe.install().expect("delta install");
    let stats = probe.server.stats();
    let (start, end) = stats
        .log
        .iter()
        .filter(|r| r.path == BLOCKS)
        .filter_map(|r| {
            let (a, b) = r
                .range
                .as_deref()?
                .strip_prefix("bytes=")?
                .split_once('-')?;
            Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
        })
        .max_by_key(|(a, b)| b - a)
        .expect("no range of the block store was read");
    let requests = stats.requests_for(BLOCKS);
    drop(probe);
    let d = Delta::new();
    // Past the envelope and the index, which the same offset would also hit.
    let offset = ((start + end) / 2).max(d.file_len(INDEX).max(d.file_len(MANIFEST)) + 1);
    assert!(offset <= end, "the longest range is too short to aim at");
    d.server.with_faults(|f| {
        f.corrupt(offset);
    });
    d.install().expect("install with one corrupted frame");
    d.assert_installed(&images().v2);
    d.report("corrupted frame");
    assert_eq!(
        d.server.requests_for(BLOCKS),
        requests + 1,
        "the damaged frame was not fetched again exactly once"
    );
}

#[test]
fn cli_killed_mid_delta_then_installed_again_refetches_less() {
    let d = Delta::new();
    d.server.with_faults(|f| {
        f.trickle(128 * 1024);
    });
    let url = d.server.url(MANIFEST);
    let spawn = |log: &str| {
        Command::new(env!("CARGO_BIN_EXE_seesaw"))
            .arg("--config")
            .arg(&d.cfg)
            .arg("install")
            .arg(&url)
            .env(
                "SEESAW_BUS_ADDRESS",
                "unix:path=/nonexistent/seesaw-test-bus",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.board.path(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut child = spawn("killed.stderr");
    let reached = d
        .server
        .wait_until(Duration::from_secs(60), |s| s.body_bytes_sent >= 600_000);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached, "the killed install never got going");
    let first = d.report("killed");
    assert_eq!(
        std::fs::read(d.board.path("slot-a.img")).unwrap(),
        d.before[0].1,
        "slot A changed"
    );
    d.server.clear_faults();
    d.server.reset_stats();
    let mut child = spawn("second.stderr");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < INSTALL_LIMIT, "second install hangs");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(d.board.path("second.stderr")).unwrap();
    assert!(status.success(), "second install: {stderr}");
    d.assert_installed(&images().v2);
    let second = d.report("after the kill");
    eprintln!("killed run fetched {first} bytes, the second {second}");
    // What was verified and written is not downloaded again: the second
    // run needs less than a fresh delta or a full download would.
    let fresh = Delta::new();
    fresh.install().expect("fresh delta");
    let fresh = fresh.report("fresh delta");
    assert!(
        second < fresh,
        "second run {second} bytes, a fresh delta {fresh}"
    );
}

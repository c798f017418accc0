//! The board binaries against the host's: the functional steps that matter
//! on a board, run by each `seesaw` binary on byte-identical copies of one
//! simulated board, must leave byte-identical slots and environments, and
//! the HTTPS delta must make the same requests for the same bytes.
//!
//! Steps, each through the command line, standalone (no bus): verify the
//! host's bundle; create a bundle from the same image (which the host's
//! binary must verify); install the host's one-file bundle into slot B
//! (the flip read back with the real `fw_printenv`); boot B and mark it
//! good; a delta install of the next image from its network layout over
//! HTTPS into slot A.
//!
//! `SEESAW_CROSS_RUNNERS` names the binaries to compare with the host's
//! (this build's `seesaw`): `label=command…` entries separated by `;`, the
//! command being the binary or an emulator and its arguments before it,
//! e.g. `aarch64=qemu-aarch64 -L /usr/aarch64-linux-gnu
//! target/aarch64-unknown-linux-gnu/release/seesaw`. `tests/cross-check.sh`
//! builds the board binaries and sets it. Unset, the host's binary runs the
//! steps alone, still checking each step's result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod common;
#[path = "support/https_server.rs"]
mod https_server;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use https_server::{Server, ServerOptions, TestPki};
use sha2::{Digest, Sha256};

/// A bus address where no bus listens: every command works standalone.
const NO_BUS: &str = "unix:path=/nonexistent/seesaw-test-bus";
/// Per command; qemu-user runs an install about ten times slower.
const LIMIT: Duration = Duration::from_secs(300);

/// One binary to run the steps with.
struct Runner {
    label: String,
    /// The program and the arguments before seesaw's own.
    argv: Vec<String>,
}

fn runners() -> Vec<Runner> {
    let mut all = vec![Runner {
        label: "host".into(),
        argv: vec![env!("CARGO_BIN_EXE_seesaw").into()],
    }];
    if let Ok(spec) = std::env::var("SEESAW_CROSS_RUNNERS") {
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (label, command) = entry
                .split_once('=')
                .unwrap_or_else(|| panic!("SEESAW_CROSS_RUNNERS: {entry:?} is not label=command"));
            let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
            assert!(
                !argv.is_empty(),
                "SEESAW_CROSS_RUNNERS: {label} has no command"
            );
            all.push(Runner {
                label: label.into(),
                argv,
            });
        }
    }
    all
}

/// What one runner's steps left: per step, the SHA-256 of each compared file.
type Trace = Vec<(String, Vec<(String, String)>)>;

const COMPARED: [&str; 3] = ["slot-a.img", "slot-b.img", "uboot.env"];

struct Run<'a> {
    runner: &'a Runner,
    dir: PathBuf,
    trace: Trace,
}

impl Run<'_> {
    fn seesaw(&self, args: &[&str]) -> Output {
        let mut c = Command::new(&self.runner.argv[0]);
        c.args(&self.runner.argv[1..])
            .arg("--config")
            .arg(self.dir.join("seesaw.toml"))
            .arg("--bus-address")
            .arg(NO_BUS)
            .args(args)
            .env_remove("SEESAW_BUS_ADDRESS")
            .stdin(Stdio::null());
        support::run_bounded(&mut c, LIMIT)
    }

    /// Runs `args` and asserts exit status 0.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.seesaw(args);
        assert!(
            out.status.success(),
            "{}: seesaw {args:?}: {:?}\n{}",
            self.runner.label,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn record(&mut self, step: &str) {
        let hashes = COMPARED
            .iter()
            .map(|f| {
                let bytes = std::fs::read(self.dir.join(f)).unwrap();
                (f.to_string(), hex::encode(Sha256::digest(&bytes)))
            })
            .collect();
        self.trace.push((step.into(), hashes));
    }

    fn printenv(&self, name: &str) -> String {
        let out = Command::new("fw_printenv")
            .arg("-c")
            .arg(self.dir.join("fw_env.config"))
            .arg("-n")
            .arg(name)
            .output()
            .expect("fw_printenv (apt-get install libubootenv-tool)");
        assert!(out.status.success(), "fw_printenv {name}: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }
}

/// Copies the template board to `to`, pointing its `fw_env.config` at the copy.
fn copy_board(template: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(template)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    board_files::write_fw_env_config(to);
}

/// The next release: the image with a few 4 KiB blocks changed, as a
/// rebuild changes some files and leaves most blocks where they were.
fn next_image(image: &Path, out: &Path) {
    let mut bytes = std::fs::read(image).unwrap();
    for (i, at) in (0..bytes.len())
        .step_by(bytes.len() / 7)
        .skip(1)
        .enumerate()
    {
        let end = (at + 4096).min(bytes.len());
        bytes[at..end].fill(0x40 + i as u8);
    }
    std::fs::write(out, bytes).unwrap();
}

#[test]
fn every_board_binary_leaves_the_same_bytes_as_the_host_binary() {
    let t = common::Board::new();
    let v2 = t.create("v2.bundle", "2.0.0", 5, "test-board");
    std::fs::write(t.path("keys/release.pem"), t.release.to_pem().unwrap()).unwrap();
    // The network layout of v3, with v2's image as its delta base.
    let www = t.path("www");
    let v3_image = t.path("v3.ext4");
    next_image(&t.image, &v3_image);
    let host = runners().remove(0);
    let host_run = Run {
        runner: &host,
        dir: t.path(""),
        trace: Vec::new(),
    };
    host_run.ok(&[
        "bundle",
        "create",
        "--image",
        v3_image.to_str().unwrap(),
        "--compatible",
        "test-board",
        "--version",
        "3.0.0",
        "--security-version",
        "6",
        "--chunk-size",
        "65536",
        "--key",
        t.path("keys/release.pem").to_str().unwrap(),
        "--output-dir",
        www.join("net3").to_str().unwrap(),
        "--delta-base",
        t.image.to_str().unwrap(),
    ]);
    std::fs::create_dir_all(t.path("pki")).unwrap();
    TestPki::shared().write_to(&t.path("pki"));
    let mut config = std::fs::read_to_string(t.path("seesaw.toml")).unwrap();
    config.push_str("[network]\nca = \"pki/ca.pem\"\nconnect_timeout = 5\nread_timeout = 30\n");
    std::fs::write(t.path("seesaw.toml"), config).unwrap();
    let server = Server::start(www, ServerOptions::https(TestPki::shared()));
    let manifest_url = server.url("/net3/manifest.dsse.json");

    let all = runners();
    let work = tempfile::tempdir().unwrap();
    let mut traces: Vec<(String, Trace, (u64, u64))> = Vec::new();
    for runner in &all {
        let dir = work.path().join(&runner.label);
        copy_board(&t.path(""), &dir);
        let mut run = Run {
            runner,
            dir: dir.clone(),
            trace: Vec::new(),
        };
        let label = &runner.label;

        // Verify the host's bundle; make one the host's binary verifies.
        run.ok(&["bundle", "verify", v2.to_str().unwrap()]);
        let own = dir.join("own.bundle");
        run.ok(&[
            "bundle",
            "create",
            "--image",
            t.image.to_str().unwrap(),
            "--compatible",
            "test-board",
            "--version",
            "2.0.0",
            "--security-version",
            "5",
            "--key",
            dir.join("keys/release.pem").to_str().unwrap(),
            "--output",
            own.to_str().unwrap(),
        ]);
        let verified = host_run.seesaw(&["bundle", "verify", own.to_str().unwrap()]);
        assert!(
            verified.status.success(),
            "{label}: the host does not verify its bundle: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
        run.record("verified");

        // Install into B, the flip read back by fw_printenv.
        run.ok(&["install", v2.to_str().unwrap()]);
        assert_eq!(run.printenv("BOOT_ORDER"), "B A", "{label}");
        assert_eq!(run.printenv("BOOT_B_LEFT"), "3", "{label}");
        let slot_b = std::fs::read(dir.join("slot-b.img")).unwrap();
        let image = std::fs::read(&t.image).unwrap();
        assert!(slot_b[..image.len()] == image[..], "{label}: slot B");
        run.record("installed");

        // Boot B (the boot script takes a try), mark it good.
        board_files::write_cmdline(&dir, "B");
        let status = Command::new("fw_setenv")
            .arg("-c")
            .arg(dir.join("fw_env.config"))
            .args(["BOOT_B_LEFT", "2"])
            .status()
            .expect("fw_setenv");
        assert!(status.success());
        run.ok(&["mark-good"]);
        assert_eq!(run.printenv("BOOT_B_LEFT"), "3", "{label}");
        assert_eq!(run.printenv("SEESAW_FLOOR"), "5", "{label}");
        run.record("marked good");

        // The delta over HTTPS into A.
        server.reset_stats();
        run.ok(&["install", &manifest_url]);
        let fetched = (server.requests(), server.body_bytes_sent());
        assert_eq!(run.printenv("BOOT_ORDER"), "A B", "{label}");
        let slot_a = std::fs::read(dir.join("slot-a.img")).unwrap();
        let v3 = std::fs::read(&v3_image).unwrap();
        assert!(slot_a[..v3.len()] == v3[..], "{label}: slot A");
        assert!(
            fetched.1 < v3.len() as u64 / 2,
            "{label}: the delta downloaded {} of {} bytes",
            fetched.1,
            v3.len()
        );
        run.record("delta installed");
        eprintln!(
            "{label}: {} steps, delta: {} requests, {} body bytes",
            run.trace.len(),
            fetched.0,
            fetched.1
        );
        traces.push((label.clone(), run.trace, fetched));
    }
    let (_, reference, fetched) = &traces[0];
    for (label, trace, f) in &traces[1..] {
        for ((step, want), (_, got)) in reference.iter().zip(trace) {
            for ((file, a), (_, b)) in want.iter().zip(got) {
                assert_eq!(
                    a, b,
                    "{label}: {file} after '{step}' differs from the host's"
                );
            }
        }
        assert_eq!(
            f, fetched,
            "{label}: the delta made other requests than the host's"
        );
    }
}

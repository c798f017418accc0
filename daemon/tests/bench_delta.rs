//! Benchmark (not a timed test; ignored by default): the bytes a v1 → v2
//! update downloads when the running slot holds v1, for seesaw and for the
//! content-addressed tools it competes with, next to the floor and to a full
//! download, all from one local server in the same run. Run it with
//! `bash tests/bench-delta.sh`, which builds the image pair, the floor, the
//! casync store and the zchunk files, and passes them in:
//!
//! - `SEESAW_BENCH_V1`, `SEESAW_BENCH_V2`: the two images (same size);
//! - `SEESAW_BENCH_WWW`: the directory served, holding `v2.ext4` (the raw
//!   image for `curl | dd`), `casync/v2.caibx` with its store
//!   `casync/store/`, and `zck/v2.zck`; the seesaw network bundle is
//!   written into `seesaw/` by this test with the seesaw binary under test;
//! - `SEESAW_BENCH_FLOOR`: the floor in bytes (v2's 4 KiB blocks found
//!   nowhere in v1, compressed with `gzip -9`), the unit of every ratio;
//! - `SEESAW_BENCH_ZSTD19`: the size of `zstd -19` of v2, for scale;
//! - `SEESAW_BENCH_RUNS` (default 3), `SEESAW_BENCH_DIR` (scratch space).
//!
//! seesaw's delta is measured on two boards: one whose running slot A
//! simply holds the v1 image (no state), and one on which seesaw itself
//! installed v1 from a one-file bundle and committed it (B runs v1, the
//! state keeps what was installed), so both ways of knowing the running
//! image are covered.
//!
//! Bytes downloaded are the body bytes the server sent during one tool's run
//! (index, envelope and payload alike); wall time and peak RSS (KiB, from
//! `/usr/bin/time -f %M`) are those of the tool's process. Every result is
//! checked: the written image must equal v2, or the figure is not printed.
//! Result lines start with `| `.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/sim/power_on.rs"]
mod power_on;

mod board_files;
#[path = "support/https_server.rs"]
mod https_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use https_server::{PkiPaths, Server, ServerOptions, TestPki};
use power_on::power_on;
use seesaw::slot::BootChoice;
use seesaw::trust::PrivateKey;
use seesaw::uboot_env::UbootEnv;

/// One run of one tool.
#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: f64,
    rss_kib: u64,
    bytes: u64,
    requests: u64,
    /// Responses with the whole file (200) among the requests.
    whole: u64,
    /// Requests for several ranges at once (this server answers them 200).
    multi_range: u64,
    /// Body bytes of every answer but those to multi-range requests: the
    /// 206 ranges and the whole files asked for without a range.
    clean_bytes: u64,
}

/// What a command did: its success, wall time and peak RSS.
struct Outcome {
    ok: bool,
    secs: f64,
    rss_kib: u64,
    stderr: String,
}

/// Runs `cmd` under `/usr/bin/time -f %M -o FILE` in `dir`.
fn measure(dir: &Path, cmd: &mut Command) -> Outcome {
    let rss_file = dir.join("time.out");
    let _ = std::fs::remove_file(&rss_file);
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(cmd.get_current_dir().unwrap_or(dir));
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let t = Instant::now();
    let out = timed
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} under /usr/bin/time: {e}"));
    let secs = t.elapsed().as_secs_f64();
    // The last line of the -o file is the peak RSS in KiB (a line before it
    // says why the command failed, if it did).
    let rss_kib = std::fs::read_to_string(&rss_file)
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    Outcome {
        ok: out.status.success(),
        secs,
        rss_kib,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` and panics with its stderr if it fails.
fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the first `len` bytes of `a` and `b` are equal (`cmp -n`).
fn same_prefix(a: &Path, b: &Path, len: u64) -> bool {
    Command::new("cmp")
        .arg("-s")
        .arg("-n")
        .arg(len.to_string())
        .arg(a)
        .arg(b)
        .status()
        .expect("run cmp")
        .success()
}

/// Median (upper median for an even count), minimum and maximum.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| panic!("set {name}")))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

/// The size of the file served for `url_path` (0 if there is none).
fn file_len(root: &Path, url_path: &str) -> u64 {
    std::fs::metadata(root.join(url_path.trim_start_matches('/')))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Whether a request asked for several ranges at once.
fn is_multi(r: &https_server::RequestRecord) -> bool {
    r.range.as_deref().is_some_and(|h| h.contains(','))
}

/// The length of the single range `bytes=a-b`, `bytes=a-` or `bytes=-n` of
/// the file at `url_path` under `root`, as the server answers it with 206.
fn range_len(header: Option<&str>, root: &Path, url_path: &str) -> u64 {
    let len = file_len(root, url_path);
    let spec = header
        .and_then(|h| h.trim().strip_prefix("bytes="))
        .unwrap_or_else(|| panic!("a 206 answer to {url_path} without a single range"));
    let (a, b) = spec.split_once('-').expect("a range has a '-'");
    let num = |t: &str| t.trim().parse::<u64>().expect("a range bound is a number");
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, _) => num(b).min(len),
        (false, true) => len - num(a),
        (false, false) => num(b).min(len - 1) + 1 - num(a),
    }
}

/// How a libcurl-based peer tool is made to trust the test CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trust {
    /// `CURL_CA_BUNDLE` and `SSL_CERT_FILE` in its environment.
    Environment,
    /// A private mount namespace (`unshare -m`) in which the test CA is
    /// bind-mounted over the system bundle `/etc/ssl/certs/ca-certificates.crt`.
    Namespace,
    /// None: plain HTTP.
    Plain,
}

impl Trust {
    fn label(self) -> &'static str {
        match self {
            Trust::Environment => "HTTPS, CA from the environment",
            Trust::Namespace => "HTTPS, CA bind-mounted in a mount namespace",
            Trust::Plain => "plain HTTP",
        }
    }

    fn server<'a>(self, https: &'a Server, http: &'a Server) -> &'a Server {
        if self == Trust::Plain {
            http
        } else {
            https
        }
    }

    /// The command that runs `program` this way; its arguments follow.
    fn command(self, program: &str, ca: &Path) -> Command {
        match self {
            Trust::Environment => {
                let mut cmd = Command::new(program);
                cmd.env("CURL_CA_BUNDLE", ca).env("SSL_CERT_FILE", ca);
                cmd
            }
            Trust::Namespace => {
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "-m",
                    "sh",
                    "-c",
                    "mount --bind \"$0\" /etc/ssl/certs/ca-certificates.crt && exec \"$@\"",
                ])
                .arg(ca)
                .arg(program);
                cmd
            }
            Trust::Plain => Command::new(program),
        }
    }
}

/// Server-side counters around one run.
struct Counter<'a> {
    server: &'a Server,
    root: &'a Path,
    bytes: u64,
    requests: u64,
    logged: usize,
}

impl<'a> Counter<'a> {
    fn start(server: &'a Server, root: &'a Path) -> Counter<'a> {
        let s = server.stats();
        Counter {
            server,
            root,
            bytes: s.body_bytes_sent,
            requests: s.requests,
            logged: s.log.len(),
        }
    }

    fn sample(&self, o: &Outcome) -> Sample {
        let s = self.server.stats();
        let log = &s.log[self.logged..];
        Sample {
            secs: o.secs,
            rss_kib: o.rss_kib,
            bytes: s.body_bytes_sent - self.bytes,
            requests: s.requests - self.requests,
            whole: log.iter().filter(|r| r.status == 200).count() as u64,
            multi_range: log.iter().filter(|r| is_multi(r)).count() as u64,
            clean_bytes: log
                .iter()
                .filter(|r| !is_multi(r) && r.method == "GET")
                .map(|r| match r.status {
                    206 => range_len(r.range.as_deref(), self.root, &r.path),
                    200 => file_len(self.root, &r.path),
                    _ => 0,
                })
                .sum(),
        }
    }
}

/// The simulated board: two slot files, a redundant U-Boot environment
/// saying slot A is booted, a kernel command line and a data directory.
struct Board {
    dir: PathBuf,
    slot_bytes: u64,
}

impl Board {
    fn new(dir: &Path, image_size: u64, pki: &PkiPaths, key: &PrivateKey) -> Board {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("release.pub"), key.public().to_pem().unwrap()).unwrap();
        board_files::write_fw_env_config(dir);
        board_files::ConfigFile {
            compatible: "bench-board",
            roles: &[("release", 1, &["release.pub"])],
            tables: &format!("[network]\nca = \"{}\"\n", pki.ca.display()),
            ..Default::default()
        }
        .write(&dir.join("seesaw.toml"));
        Board {
            dir: dir.to_owned(),
            slot_bytes: (image_size.div_ceil(1 << 20) + 64) << 20,
        }
    }

    /// Resets everything but slot A: environment (A booted, B has tries
    /// left), command line, no state, slot B all zeros.
    fn reset(&self) {
        let vars = [
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ];
        board_files::write_env(&self.dir, &vars);
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        board_files::write_cmdline(&self.dir, "A");
        self.zero_slot("slot-b.img");
    }

    fn zero_slot(&self, name: &str) {
        board_files::write_empty_slot(&self.dir.join(name), self.slot_bytes);
    }

    /// Slot A holds `image` followed by zeros up to the slot size.
    fn running(&self, image: &Path) {
        std::fs::copy(image, self.dir.join("slot-a.img")).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("slot-a.img"))
            .unwrap();
        f.set_len(self.slot_bytes).unwrap();
    }

    fn slot_b(&self) -> PathBuf {
        self.dir.join("slot-b.img")
    }

    fn slot_a(&self) -> PathBuf {
        self.dir.join("slot-a.img")
    }

    /// One power-on by the simulated U-Boot: the boot contract chooses a
    /// slot, and the kernel command line names it. Returns the slot's name.
    fn power_on(&self) -> String {
        let mut env = UbootEnv::open(&self.dir.join("fw_env.config")).expect("open environment");
        match power_on(&mut env).expect("power-on") {
            BootChoice::Boot { slot, .. } => {
                board_files::write_cmdline(&self.dir, slot.name());
                slot.to_string()
            }
            BootChoice::ResetTries => panic!("no slot had tries left"),
        }
    }

    /// `seesaw mark-good` (commit the running slot), without a D-Bus service.
    fn mark_good(&self) -> Outcome {
        measure(
            &self.dir,
            Command::new(env!("CARGO_BIN_EXE_seesaw"))
                .current_dir(&self.dir)
                .arg("--config")
                .arg(self.dir.join("seesaw.toml"))
                .arg("--bus-address")
                .arg(format!("unix:path={}", self.dir.join("no-bus").display()))
                .arg("mark-good"),
        )
    }

    /// `seesaw install URL` on this board, without a D-Bus service.
    fn install(&self, url: &str) -> Outcome {
        measure(
            &self.dir,
            Command::new(env!("CARGO_BIN_EXE_seesaw"))
                .current_dir(&self.dir)
                .arg("--config")
                .arg(self.dir.join("seesaw.toml"))
                .arg("--bus-address")
                .arg(format!("unix:path={}", self.dir.join("no-bus").display()))
                .arg("install")
                .arg(url),
        )
    }
}

/// Prints one tool's line: medians of its runs and ratios.
fn report(name: &str, runs: &[Sample], floor: Option<u64>, how: &str) {
    if runs.is_empty() {
        return;
    }
    let secs: Vec<f64> = runs.iter().map(|s| s.secs).collect();
    let bytes: Vec<f64> = runs.iter().map(|s| s.bytes as f64).collect();
    let reqs: Vec<f64> = runs.iter().map(|s| s.requests as f64).collect();
    let rss: Vec<f64> = runs.iter().map(|s| s.rss_kib as f64).collect();
    let whole: Vec<f64> = runs.iter().map(|s| s.whole as f64).collect();
    let (t, tmin, tmax) = stats(&secs);
    let (b, bmin, bmax) = stats(&bytes);
    let spread = if bmin == bmax {
        String::new()
    } else {
        format!(" ({:.2}–{:.2})", mb(bmin), mb(bmax))
    };
    let ratio = floor.map_or(String::new(), |f| {
        format!(" = {:>5.2} x floor", b / f as f64)
    });
    println!(
        "| {name:<26} {:>7.2} MB{spread}{ratio}, {:>4.0} requests ({:.0} answered 200), {:>5.2} s ({tmin:.2}–{tmax:.2}), peak RSS {:>5.1} MiB  [{how}]",
        mb(b),
        stats(&reqs).0,
        stats(&whole).0,
        t,
        stats(&rss).0 / 1024.0
    );
    // A tool that asks for several ranges in one request gets the whole file
    // from this server (RFC 9110 allows it) and drops the connection once it
    // sees that; what was sent by then depends on socket buffers and timing.
    // The other answers alone are about what it fetches from a server that
    // answers multi-range requests with multipart/byteranges (less the part
    // headers).
    let clean: Vec<f64> = runs.iter().map(|s| s.clean_bytes as f64).collect();
    let multi: Vec<f64> = runs.iter().map(|s| s.multi_range as f64).collect();
    let (r, _, _) = stats(&clean);
    if stats(&multi).2 > 0.0 {
        let ratio = floor.map_or(String::new(), |f| {
            format!(" = {:>5.2} x floor", r / f as f64)
        });
        println!(
            "| {:<26} {:>7.2} MB{ratio} without the whole-file answers to its {:.0} multi-range requests",
            "",
            mb(r),
            stats(&multi).0
        );
    }
}

#[test]
#[ignore = "benchmark: run with tests/bench-delta.sh"]
fn delta_download_against_floor_casync_and_zchunk() {
    let v1 = env_path("SEESAW_BENCH_V1");
    let v2 = env_path("SEESAW_BENCH_V2");
    let www = env_path("SEESAW_BENCH_WWW");
    let floor = env_u64("SEESAW_BENCH_FLOOR").expect("set SEESAW_BENCH_FLOOR (bytes)");
    let zstd19 = env_u64("SEESAW_BENCH_ZSTD19").unwrap_or(0);
    let runs = env_u64("SEESAW_BENCH_RUNS").unwrap_or(3).max(1) as usize;
    let scratch =
        tempfile::tempdir_in(std::env::var("SEESAW_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let d = scratch.path();
    let size = std::fs::metadata(&v2).unwrap().len();
    assert_eq!(
        size,
        std::fs::metadata(&v1).unwrap().len(),
        "v1 and v2 must have the same size"
    );
    for f in ["v2.ext4", "casync/v2.caibx", "zck/v2.zck"] {
        assert!(www.join(f).is_file(), "missing {}", www.join(f).display());
    }

    // The release: a network bundle of v2 made by the seesaw under test,
    // with v1 named as the delta base when this seesaw knows the option.
    let key = PrivateKey::from_seed(&[7; 32]);
    std::fs::write(d.join("release.pem"), key.to_pem().unwrap()).unwrap();
    let bundle_dir = www.join("seesaw");
    let _ = std::fs::remove_dir_all(&bundle_dir);
    let create = |delta: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seesaw"));
        cmd.args(["bundle", "create", "--image"])
            .arg(&v2)
            .args(["--compatible", "bench-board", "--version", "2.0.0"])
            .args(["--security-version", "1", "--key"])
            .arg(d.join("release.pem"))
            .arg("--output-dir")
            .arg(&bundle_dir);
        if delta {
            cmd.arg("--delta-base").arg(&v1);
        }
        measure(d, &mut cmd)
    };
    let made = create(true);
    let delta_base = made.ok;
    let made = if made.ok {
        made
    } else {
        println!(
            "| note: `seesaw bundle create --delta-base` failed ({}); bundle made without it",
            made.stderr.lines().next().unwrap_or("").trim()
        );
        let again = create(false);
        assert!(again.ok, "seesaw bundle create: {}", again.stderr);
        again
    };
    let file_len = |name: &str| {
        std::fs::metadata(bundle_dir.join(name))
            .map(|m| m.len())
            .ok()
    };
    let index = file_len("rootfs.index");
    println!(
        "| seesaw bundle: envelope {} bytes, payload {} bytes, index {}; made in {:.1} s (peak RSS {:.0} MiB)",
        file_len("manifest.dsse.json").unwrap_or(0),
        file_len("rootfs.payload").unwrap_or(0),
        index.map_or("absent".to_string(), |n| format!("{n} bytes")),
        made.secs,
        made.rss_kib as f64 / 1024.0
    );

    // v1 as a one-file bundle, for the board on which seesaw installed v1.
    let v1_bundle = d.join("v1.seesaw");
    let made = measure(
        d,
        Command::new(env!("CARGO_BIN_EXE_seesaw"))
            .args(["bundle", "create", "--image"])
            .arg(&v1)
            .args(["--compatible", "bench-board", "--version", "1.0.0"])
            .args(["--security-version", "1", "--key"])
            .arg(d.join("release.pem"))
            .arg("--output")
            .arg(&v1_bundle),
    );
    assert!(made.ok, "seesaw bundle create (v1): {}", made.stderr);

    let pki = TestPki::generate();
    let paths = pki.write_to(d);
    let https = Server::start(www.clone(), ServerOptions::https(&pki));
    let http = Server::start(www.clone(), ServerOptions::plain_http());

    // The peers use libcurl, which trusts the system's CA bundle. They get
    // HTTPS when they accept the test CA through the environment, or else
    // through a private mount namespace in which the test CA is bind-mounted
    // over the system bundle (needs root; the machine's trust is untouched),
    // whichever the probe below finds working first; plain HTTP from the
    // same directory otherwise.
    let casync_out = d.join("casync-out.img");
    let casync = |trust: Trust| {
        let _ = std::fs::remove_file(&casync_out);
        let server = trust.server(&https, &http);
        let mut cmd = trust.command("casync", &paths.ca);
        cmd.arg("extract")
            .arg(format!("--store={}", server.url("/casync/store")))
            .arg(format!("--seed={}", v1.display()))
            .arg("--seed-output=no")
            .arg(server.url("/casync/v2.caibx"))
            .arg(&casync_out);
        measure(d, &mut cmd)
    };
    let zck_dir = d.join("zck");
    std::fs::create_dir_all(&zck_dir).unwrap();
    let zck_src = www.join("zck/v1.zck");
    let zckdl = |trust: Trust| {
        let _ = std::fs::remove_file(zck_dir.join("v2.zck"));
        let server = trust.server(&https, &http);
        let mut cmd = trust.command("zckdl", &paths.ca);
        cmd.current_dir(&zck_dir)
            .arg("-q")
            .arg(format!("--source={}", zck_src.display()))
            .arg(server.url("/zck/v2.zck"));
        measure(d, &mut cmd)
    };
    let pick = |name: &str, probe: &dyn Fn(Trust) -> Outcome| {
        let mut tried = Vec::new();
        for trust in [Trust::Environment, Trust::Namespace] {
            let o = probe(trust);
            if o.ok {
                return trust;
            }
            let why = o.stderr.lines().rev().find(|l| !l.trim().is_empty());
            tried.push(format!("{}: {}", trust.label(), why.unwrap_or("").trim()));
        }
        println!(
            "| note: {name} refused the test CA ({}); it uses plain HTTP",
            tried.join("; ")
        );
        Trust::Plain
    };
    let casync_trust = pick("casync", &casync);
    let zck_trust = pick("zckdl", &zckdl);

    let board = Board::new(&d.join("board"), size, &paths, &key);
    let manifest_url = https.url("/seesaw/manifest.dsse.json");

    let mut curl = Vec::new();
    let mut full = Vec::new();
    let mut casync_runs = Vec::new();
    let mut zck_runs = Vec::new();
    let mut delta = Vec::new();
    let mut delta_failure = None;
    let mut delta_kept = Vec::new();
    let mut delta_kept_failure = None;
    for r in 1..=runs {
        // Full downloads: raw image through curl | dd, then seesaw into an
        // empty slot next to a running slot that holds nothing related.
        board.reset();
        let c = Counter::start(&https, &www);
        let o = measure(
            d,
            Command::new("sh").arg("-c").arg(format!(
                "curl -sS --cacert '{}' '{}' | dd of='{}' bs=4M iflag=fullblock conv=fsync,notrunc status=none",
                paths.ca.display(),
                https.url("/v2.ext4"),
                board.slot_b().display()
            )),
        );
        assert!(o.ok, "curl | dd: {}", o.stderr);
        assert!(
            same_prefix(&v2, &board.slot_b(), size),
            "curl | dd wrote something else"
        );
        curl.push(c.sample(&o));

        board.zero_slot("slot-a.img");
        board.reset();
        let c = Counter::start(&https, &www);
        let o = board.install(&manifest_url);
        assert!(o.ok, "seesaw full install: {}", o.stderr);
        assert!(
            same_prefix(&v2, &board.slot_b(), size),
            "slot B does not hold v2 after the full install"
        );
        full.push(c.sample(&o));

        // Delta v1 → v2: the running slot A holds v1.
        board.running(&v1);
        board.reset();
        let c = Counter::start(&https, &www);
        let o = board.install(&manifest_url);
        if !o.ok {
            delta_failure = Some(o.stderr.trim().to_string());
        } else if !same_prefix(&v2, &board.slot_b(), size) {
            delta_failure = Some("slot B does not hold v2 after the install".into());
        } else {
            delta.push(c.sample(&o));
        }

        // Delta v1 → v2 on a board where seesaw itself installed v1 (into B)
        // and committed it: B runs v1 and the state knows its manifest; v2
        // goes into A.
        board.zero_slot("slot-a.img");
        board.reset();
        let o = board.install(&v1_bundle.display().to_string());
        assert!(o.ok, "seesaw install of the v1 bundle: {}", o.stderr);
        assert_eq!(board.power_on(), "B", "the board did not boot the new slot");
        let o = board.mark_good();
        assert!(o.ok, "seesaw mark-good: {}", o.stderr);
        let c = Counter::start(&https, &www);
        let o = board.install(&manifest_url);
        if !o.ok {
            delta_kept_failure = Some(o.stderr.trim().to_string());
        } else if !same_prefix(&v2, &board.slot_a(), size) {
            delta_kept_failure = Some("slot A does not hold v2 after the install".into());
        } else {
            delta_kept.push(c.sample(&o));
        }

        let c = Counter::start(casync_trust.server(&https, &http), &www);
        let o = casync(casync_trust);
        assert!(o.ok, "casync extract: {}", o.stderr);
        assert!(
            same_prefix(&v2, &casync_out, size),
            "casync extracted something else"
        );
        casync_runs.push(c.sample(&o));

        let c = Counter::start(zck_trust.server(&https, &http), &www);
        let o = zckdl(zck_trust);
        assert!(o.ok, "zckdl: {}", o.stderr);
        zck_runs.push(c.sample(&o));
        run(Command::new("unzck").current_dir(&zck_dir).arg("v2.zck"));
        assert!(
            same_prefix(&v2, &zck_dir.join("v2"), size),
            "zckdl assembled something else"
        );
        let _ = std::fs::remove_file(zck_dir.join("v2"));

        let last = |v: &[Sample]| v.last().map_or(0.0, |s| mb(s.bytes as f64));
        println!(
            "| run {r}: curl|dd {:.2} s; seesaw full {:.2} s, {:.2} MB; seesaw delta {} / {} (installed by seesaw); casync {:.2} MB; zckdl {:.2} MB",
            curl[r - 1].secs,
            full[r - 1].secs,
            last(&full),
            if delta.len() == r {
                format!("{:.2} MB", last(&delta))
            } else {
                "failed".into()
            },
            if delta_kept.len() == r {
                format!("{:.2} MB", last(&delta_kept))
            } else {
                "failed".into()
            },
            last(&casync_runs),
            last(&zck_runs),
        );
    }

    println!("|");
    println!(
        "| median of {runs} runs; {size} bytes per image; floor {:.2} MB (gzip -9 of v2's novel 4 KiB blocks); ratios against it",
        mb(floor as f64)
    );
    println!("| full download (v2 into an empty slot, nothing related running):");
    report("curl | dd, raw image", &curl, None, "HTTPS");
    report("seesaw install", &full, None, "HTTPS");
    let (c, s) = (
        stats(&curl.iter().map(|s| s.secs).collect::<Vec<_>>()).0,
        stats(&full.iter().map(|s| s.secs).collect::<Vec<_>>()).0,
    );
    let full_bytes = stats(&full.iter().map(|s| s.bytes as f64).collect::<Vec<_>>()).0;
    println!(
        "|   seesaw full install = {:.2} x curl | dd wall time; downloads {:.2} MB = {:.2} x zstd -19 of v2 ({:.2} MB)",
        s / c,
        mb(full_bytes),
        if zstd19 > 0 { full_bytes / zstd19 as f64 } else { 0.0 },
        mb(zstd19 as f64)
    );
    println!("| delta v1 -> v2 (the running slot / seed holds v1):");
    report(
        "casync extract --seed=v1",
        &casync_runs,
        Some(floor),
        casync_trust.label(),
    );
    report(
        "zckdl --source v1.zck",
        &zck_runs,
        Some(floor),
        zck_trust.label(),
    );
    let how = match (delta_base, index) {
        (true, Some(_)) => "HTTPS",
        _ => "HTTPS; bundle without a block index",
    };
    for (name, samples, failure) in [
        ("seesaw, slot A = v1 image", &delta, &delta_failure),
        (
            "seesaw, v1 installed by it",
            &delta_kept,
            &delta_kept_failure,
        ),
    ] {
        if samples.is_empty() {
            println!(
                "| {name:<26} failed: {}",
                failure
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            continue;
        }
        report(name, samples, Some(floor), how);
        if let Some(f) = failure {
            println!("|   note: a run failed: {}", f.lines().last().unwrap_or(""));
        }
    }
}

//! The real boot chain: Debian's U-Boot (`qemu-x86/u-boot.rom`) runs the
//! shipped env-file boot script, which boots Debian's kernel from the chosen
//! slot; systemd starts the host-built `seesaw` with its real unit, watchdog
//! drop-in, D-Bus policy and configuration; an emulated i6300esb hardware
//! watchdog resets a hung slot. Four scenarios, each on a fresh disk image:
//!
//! 1. update and commit (A installs B over HTTPS, B boots, health gate
//!    passes, committed);
//! 2. health failure (B's health check fails, seesaw marks B bad and
//!    reboots, A reports the rollback with the reason);
//! 3. hung slot (B's kernel panics before seesaw confirms; the watchdog
//!    resets the VM until B's tries are used up; A reports the rollback and
//!    deny-lists the version);
//! 4. power cut (QEMU killed in the middle of the download; A boots, the
//!    daemon resumes and completes the install).
//!
//! The update is served over HTTPS by `support/https_server.rs` on the host's
//! loopback, which the guest reaches as 10.0.2.2 through QEMU's user-mode
//! network, with a certificate for 10.0.2.2 from a CA made when the test
//! starts (the guest trusts only that CA). Afterwards the environment is read
//! from the disk image with `mcopy` and the real `fw_printenv`, the state from
//! the data partition with `debugfs`, and the slots byte for byte.
//!
//! Takes minutes (QEMU without KVM), so the tests are `#[ignore]`d in a
//! plain `cargo test`: `bash tests/qemu-boot-chain.sh` builds the release
//! binary the guest runs and runs them one after the other (it is a step of
//! `tests/run-tests.sh`). How the test board is put together:
//! `tests/qemu/README.md`. Console logs: `work/qemu/logs/`.

#[path = "support/https_server.rs"]
mod https_server;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use https_server::{Server, ServerCert, ServerOptions, TestPki};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

const UBOOT_ROM: &str = "/usr/lib/u-boot/qemu-x86/u-boot.rom";
const COMPATIBLE: &str = "qemu-x86_64-seesaw";
/// Size of each slot partition and of every slot image, MiB.
const SLOT_MIB: u64 = 256;
const FAT_MIB: u64 = 16;
const DATA_MIB: u64 = 32;
const MIB: u64 = 1024 * 1024;
const ENV_SIZE: u64 = 0x4000;
/// Where the guest finds the host's loopback (QEMU user-mode network).
const HOST_FROM_GUEST: &str = "10.0.2.2";
/// Hard limit for one QEMU run; a scenario normally takes 1-4 minutes.
const QEMU_TIMEOUT: Duration = Duration::from_secs(600);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn work_dir() -> PathBuf {
    match std::env::var_os("SEESAW_QEMU_WORK") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("work/qemu"),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {text}",
        out.status
    );
    text
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn sha256_file_prefix(path: &Path, offset: u64, len: u64) -> String {
    use sha2::Digest;
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut h = sha2::Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; MIB as usize];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n]).unwrap();
        h.update(&buf[..n]);
        left -= n as u64;
    }
    hex::encode(h.finalize())
}

/// Copies `src` into `dst` at `offset`, leaving all-zero MiBs as holes.
fn copy_into(src: &Path, dst: &Path, offset: u64) {
    let mut from = File::open(src).unwrap();
    let mut to = OpenOptions::new().write(true).open(dst).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = offset;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let r = from.read(&mut buf[n..]).unwrap();
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            to.seek(SeekFrom::Start(pos)).unwrap();
            to.write_all(&buf[..n]).unwrap();
        }
        pos += n as u64;
        if n < buf.len() {
            break;
        }
    }
    to.sync_all().unwrap();
}

/// A CA made now and a server certificate for 10.0.2.2 (the address the
/// guest uses for the host): (CA PEM, certificate PEM, key PEM).
fn guest_facing_pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "seesaw QEMU board test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![HOST_FROM_GUEST.to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "seesaw update server");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// What every scenario shares: the cached guest parts, keys, the CA, the
/// slot images and their bundles (network layout, served over HTTPS).
struct Testbed {
    run: PathBuf,
    logs: PathBuf,
    boot_scr: PathBuf,
    /// Slot A's factory image (release 1.0.0).
    image_a: PathBuf,
    /// Release → its slot image (its bundle is `www/<release>/`).
    releases: BTreeMap<&'static str, PathBuf>,
    www: PathBuf,
    /// The certificate for 10.0.2.2 the server presents.
    server_cert: ServerCert,
    /// Only turns TLS on in the server options; `server_cert` replaces its
    /// certificate.
    pki: TestPki,
}

/// (release, variant, security version) of the bundles the scenarios install.
const RELEASES: [(&str, &str, u64); 3] = [
    ("2.0.0", "good", 2),
    ("2.1.0", "unhealthy", 3),
    ("2.2.0", "hangs", 4),
];

fn testbed() -> &'static Testbed {
    static BED: OnceLock<Testbed> = OnceLock::new();
    BED.get_or_init(Testbed::build)
}

impl Testbed {
    fn build() -> Testbed {
        let started = Instant::now();
        let repo = repo_root();
        let seesaw = std::env::var_os("SEESAW_QEMU_SEESAW")
            .map(PathBuf::from)
            .expect(
                "SEESAW_QEMU_SEESAW must name the seesaw binary the guest runs: \
             run bash tests/qemu-boot-chain.sh",
            );
        assert!(
            Path::new(UBOOT_ROM).is_file(),
            "{UBOOT_ROM} missing: run tests/qemu-packages.sh"
        );
        let work = work_dir();
        let cache = work.join("cache");
        let run_dir = work.join("run");
        let logs = work.join("logs");
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::create_dir_all(&logs).unwrap();

        let qemu = repo.join("tests/qemu");
        eprintln!("boot chain: guest parts (cached in {})", cache.display());
        let status = Command::new("bash")
            .arg(qemu.join("build-guest.sh"))
            .arg(&cache)
            .status()
            .expect("run build-guest.sh");
        assert!(status.success(), "tests/qemu/build-guest.sh failed");

        let keys = run_dir.join("keys");
        run(Command::new("bash")
            .arg(repo.join("keys/make-dev-keys.sh"))
            .arg("--force")
            .arg(&keys));
        let (ca_pem, cert_pem, key_pem) = guest_facing_pki();
        let ca = run_dir.join("ca.pem");
        std::fs::write(&ca, &ca_pem).unwrap();

        let boot_scr = run_dir.join("boot.scr");
        run(Command::new("mkimage")
            .args(["-A", "x86", "-T", "script", "-C", "none", "-d"])
            .arg(repo.join("bootloader-scripts/env-file/boot.cmd"))
            .arg(&boot_scr));

        let slot_image = |release: &str, variant: &str| {
            let out = run_dir.join(format!("slot-{release}.ext4"));
            run(Command::new("bash")
                .arg(qemu.join("make-slot-image.sh"))
                .arg(&cache)
                .arg(&seesaw)
                .arg(&keys)
                .arg(&ca)
                .arg(release)
                .arg(variant)
                .arg(SLOT_MIB.to_string())
                .arg(&out));
            out
        };
        let image_a = slot_image("1.0.0", "good");
        let www = run_dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        let mut releases = BTreeMap::new();
        for (release, variant, security_version) in RELEASES {
            let image = slot_image(release, variant);
            run(Command::new(&seesaw)
                .args(["bundle", "create", "--image"])
                .arg(&image)
                .args(["--compatible", COMPATIBLE, "--version", release])
                .args(["--security-version", &security_version.to_string()])
                .arg("--key")
                .arg(keys.join("release.pem"))
                .arg("--key")
                .arg(keys.join("fleet.pem"))
                .arg("--output-dir")
                .arg(www.join(release))
                .arg("--output")
                .arg(www.join(format!("{release}.seesaw"))));
            releases.insert(release, image);
        }
        eprintln!(
            "boot chain: test bed ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Testbed {
            run: run_dir,
            logs,
            boot_scr,
            image_a,
            releases,
            www,
            server_cert: ServerCert::Custom {
                chain_pem: cert_pem,
                key_pem,
            },
            pki: TestPki::generate(),
        }
    }

    fn server(&self) -> Server {
        Server::start(
            self.www.clone(),
            ServerOptions::https(&self.pki).server_cert(self.server_cert.clone()),
        )
    }
}

/// The network layout of `release` (a delta from slot A where it pays).
fn url_for_guest(server: &Server, release: &str) -> String {
    format!(
        "https://{HOST_FROM_GUEST}:{}/{release}/manifest.dsse.json",
        server.port()
    )
}

/// The one-file bundle of `release` (always the whole payload).
fn one_file_url_for_guest(server: &Server, release: &str) -> String {
    format!(
        "https://{HOST_FROM_GUEST}:{}/{release}.seesaw",
        server.port()
    )
}

/// One scenario's board: its disk image and console logs.
struct Board {
    name: &'static str,
    dir: PathBuf,
    disk: PathBuf,
    logs: PathBuf,
    runs: u32,
}

/// The serial console of one QEMU run.
struct Console {
    text: String,
    log: PathBuf,
    /// QEMU ended by itself (the guest powered off) rather than being killed.
    exited: bool,
}

impl Console {
    fn lines(&self) -> std::str::Lines<'_> {
        self.text.lines()
    }

    /// The board's markers (`seesaw: ...` from U-Boot's boot script,
    /// `SEESAW-QEMU: ...` from the test step), in order.
    fn markers(&self) -> Vec<String> {
        self.lines()
            .filter_map(|l| {
                l.find("SEESAW-QEMU: ")
                    .or_else(|| l.find("seesaw: booting slot"))
                    .map(|i| l[i..].trim_end().to_owned())
            })
            .collect()
    }

    fn boots(&self) -> Vec<String> {
        self.markers()
            .into_iter()
            .filter(|m| m.starts_with("seesaw: booting slot"))
            .collect()
    }

    /// The last `seesaw status --json` the guest printed.
    fn last_status(&self) -> serde_json::Value {
        let line = self
            .markers()
            .into_iter()
            .rev()
            .find_map(|m| m.strip_prefix("SEESAW-QEMU: status ").map(str::to_owned))
            .unwrap_or_else(|| self.fail("no status marker"));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| self.fail(&format!("status is not JSON ({e}): {line}")))
    }

    fn has(&self, marker: &str) -> bool {
        self.markers().iter().any(|m| m.starts_with(marker))
    }

    fn expect(&self, marker: &str) {
        if !self.has(marker) {
            self.fail(&format!("no marker {marker:?}"));
        }
    }

    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&str> = self.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what}\nmarkers: {:#?}\nconsole log: {}\nlast console lines:\n{}",
            self.markers(),
            self.log.display(),
            tail.join("\n")
        );
    }
}

impl Board {
    /// A fresh disk: FAT boot partition (boot.scr, seesaw.env with
    /// `BOOT_ORDER="A B"` and 3 tries each written by the real `fw_setenv`,
    /// the test step's control files), slot A with release 1.0.0, an empty
    /// slot B, an empty data partition.
    fn new(name: &'static str, install_url: Option<&str>) -> Board {
        let bed = testbed();
        let dir = bed.run.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let fat = dir.join("fat.img");
        run(Command::new("mkfs.vfat")
            .arg("-C")
            .arg(&fat)
            .arg((FAT_MIB * 1024).to_string()));
        let mcopy = |from: &Path, to: &str| {
            run(Command::new("mcopy").arg("-i").arg(&fat).arg(from).arg(to));
        };
        mcopy(&bed.boot_scr, "::boot.scr");
        // The redundant pair the env-file script keeps (bootloader-scripts/
        // env-file/fw_env.config): both files exist, the real fw_setenv fills them.
        let env = dir.join("seesaw.env");
        let redund = dir.join("seesaw-redund.env");
        std::fs::write(&env, vec![0u8; ENV_SIZE as usize]).unwrap();
        std::fs::write(&redund, vec![0u8; ENV_SIZE as usize]).unwrap();
        let empty_default = dir.join("empty-default.env");
        std::fs::write(&empty_default, b"").unwrap();
        let cfg = fw_config(&dir, &env, &redund);
        run(Command::new("fw_setenv")
            .arg("-c")
            .arg(&cfg)
            .arg("-f")
            .arg(&empty_default)
            .args(["BOOT_ORDER", "A B"]));
        for var in ["BOOT_A_LEFT", "BOOT_B_LEFT"] {
            run(Command::new("fw_setenv")
                .arg("-c")
                .arg(&cfg)
                .args([var, "3"]));
        }
        mcopy(&env, "::seesaw.env");
        mcopy(&redund, "::seesaw-redund.env");
        run(Command::new("mmd").arg("-i").arg(&fat).arg("::qemu-test"));
        if let Some(url) = install_url {
            let f = dir.join("install-url");
            std::fs::write(&f, url).unwrap();
            mcopy(&f, "::qemu-test/install-url");
        }

        let data_tree = dir.join("data-tree");
        std::fs::create_dir_all(&data_tree).unwrap();
        let data = dir.join("data.ext4");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "seesaw-data", "-d"])
            .arg(&data_tree)
            .arg(&data)
            .arg(format!("{DATA_MIB}M")));

        let disk = dir.join("disk.img");
        let total = (1 + FAT_MIB + 2 * SLOT_MIB + DATA_MIB + 1) * MIB;
        File::create(&disk).unwrap().set_len(total).unwrap();
        let mut sfdisk = Command::new("sfdisk")
            .arg("-q")
            .arg(&disk)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sfdisk");
        let sectors = |mib: u64| mib * MIB / 512;
        write!(
            sfdisk.stdin.take().unwrap(),
            "label: dos\n\
             start={}, size={}, type=c, bootable\n\
             start={}, size={}, type=83\n\
             start={}, size={}, type=83\n\
             start={}, size={}, type=83\n",
            sectors(1),
            sectors(FAT_MIB),
            sectors(Board::slot_offset_mib("A")),
            sectors(SLOT_MIB),
            sectors(Board::slot_offset_mib("B")),
            sectors(SLOT_MIB),
            sectors(Board::data_offset_mib()),
            sectors(DATA_MIB),
        )
        .unwrap();
        let out = sfdisk.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sfdisk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        copy_into(&fat, &disk, MIB);
        copy_into(&bed.image_a, &disk, Board::slot_offset_mib("A") * MIB);
        copy_into(&data, &disk, Board::data_offset_mib() * MIB);
        Board {
            name,
            logs: bed.logs.clone(),
            dir,
            disk,
            runs: 0,
        }
    }

    fn slot_offset_mib(slot: &str) -> u64 {
        match slot {
            "A" => 1 + FAT_MIB,
            _ => 1 + FAT_MIB + SLOT_MIB,
        }
    }

    fn data_offset_mib() -> u64 {
        1 + FAT_MIB + 2 * SLOT_MIB
    }

    /// Powers the board on and runs QEMU until the guest powers off (QEMU
    /// exits), `cut` says to pull the plug (SIGKILL), or the hard timeout.
    fn power_on(&mut self, mut cut: impl FnMut(&str) -> bool) -> Console {
        self.runs += 1;
        let log = self.logs.join(format!("{}-{}.log", self.name, self.runs));
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-M", "pc", "-m", "1024", "-nographic"])
            .args(["-bios", UBOOT_ROM])
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=raw", self.disk.display()))
            .args(["-nic", "user,model=virtio-net-pci"])
            .args(["-device", "i6300esb", "-action", "watchdog=reset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e}"));
        let text = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let mut log_file = File::create(&log).unwrap();
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = log_file.write_all(&buf[..n]);
                        let chunk = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                        sink.lock().unwrap().push_str(&chunk);
                    }
                }
            }
        });
        let start = Instant::now();
        let exited = loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                assert!(status.success(), "QEMU failed ({status}): {stderr}");
                break true;
            }
            let done = cut(&text.lock().unwrap());
            if done || start.elapsed() > QEMU_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                if !done {
                    let _ = reader.join();
                    let console = Console {
                        text: text.lock().unwrap().clone(),
                        log,
                        exited: false,
                    };
                    console.fail(&format!(
                        "{}: QEMU run {} did not finish within {QEMU_TIMEOUT:?}",
                        self.name, self.runs
                    ));
                }
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let _ = reader.join();
        let text = text.lock().unwrap().clone();
        eprintln!(
            "boot chain: {} run {}: {:.1} s{}",
            self.name,
            self.runs,
            start.elapsed().as_secs_f64(),
            if exited { "" } else { " (power cut)" }
        );
        Console { text, log, exited }
    }

    /// The environment pair (`seesaw.env`, `seesaw-redund.env`) as the
    /// board left it, read by the real `fw_printenv`.
    fn env(&self) -> BTreeMap<String, String> {
        let copy_out = |name: &str| {
            let out = self.dir.join(format!("{name}.after"));
            let _ = std::fs::remove_file(&out);
            run(Command::new("mcopy")
                .arg("-n")
                .arg("-i")
                .arg(format!("{}@@{}", self.disk.display(), MIB))
                .arg(format!("::{name}"))
                .arg(&out));
            out
        };
        let first = copy_out("seesaw.env");
        let second = copy_out("seesaw-redund.env");
        let cfg = fw_config(&self.dir, &first, &second);
        parse_env(&run(Command::new("fw_printenv").arg("-c").arg(&cfg)))
    }

    /// `state.json` from the data partition, read with `debugfs`.
    fn state(&self) -> serde_json::Value {
        let part = self.dir.join("data.after");
        let mut from = File::open(&self.disk).unwrap();
        from.seek(SeekFrom::Start(Board::data_offset_mib() * MIB))
            .unwrap();
        let mut to = File::create(&part).unwrap();
        std::io::copy(&mut from.take(DATA_MIB * MIB), &mut to).unwrap();
        let out = Command::new("debugfs")
            .args(["-R", "cat /state.json"])
            .arg(&part)
            .output()
            .expect("debugfs");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "state.json on the data partition is not JSON ({e}): {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// SHA-256 of the first `len` bytes of a slot partition.
    fn slot_sha256(&self, slot: &str, len: u64) -> String {
        sha256_file_prefix(&self.disk, Board::slot_offset_mib(slot) * MIB, len)
    }
}

/// A libubootenv configuration naming the two copies of a redundant pair.
fn fw_config(dir: &Path, first: &Path, second: &Path) -> PathBuf {
    let cfg = dir.join(format!(
        "fw_env-{}.config",
        first.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &cfg,
        format!(
            "{} 0x0 {ENV_SIZE:#x}\n{} 0x0 {ENV_SIZE:#x}\n",
            first.display(),
            second.display()
        ),
    )
    .unwrap();
    cfg
}

fn contract(order: &str, a: &str, b: &str) -> BTreeMap<String, String> {
    [
        ("BOOT_ORDER", order),
        ("BOOT_A_LEFT", a),
        ("BOOT_B_LEFT", b),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn scenario_time(name: &str, started: Instant) {
    eprintln!(
        "boot chain: scenario {name}: {:.1} s wall time",
        started.elapsed().as_secs_f64()
    );
}

/// The order in which `wanted` appear among the console markers (each one
/// a prefix of a marker, later ones after earlier ones).
fn expect_in_order(console: &Console, wanted: &[&str]) {
    let markers = console.markers();
    let mut at = 0;
    for w in wanted {
        match markers[at..].iter().position(|m| m.starts_with(w)) {
            Some(i) => at += i + 1,
            None => console.fail(&format!("marker {w:?} not found after marker #{at}")),
        }
    }
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn update_and_commit() {
    let bed = testbed();
    let started = Instant::now();
    let server = bed.server();
    let mut board = Board::new("1-update-commit", Some(&url_for_guest(&server, "2.0.0")));
    let console = board.power_on(|_| false);
    assert!(console.exited);
    expect_in_order(
        &console,
        &[
            "seesaw: booting slot A (tries left 2)",
            "SEESAW-QEMU: booted slot A image 1.0.0",
            "SEESAW-QEMU: install started https://10.0.2.2:",
            "SEESAW-QEMU: install result 0 ",
            "SEESAW-QEMU: rebooting",
            "seesaw: booting slot B (tries left 2)",
            "SEESAW-QEMU: booted slot B image 2.0.0",
            "SEESAW-QEMU: status ",
            "SEESAW-QEMU: powering off",
        ],
    );
    let status = console.last_status();
    assert_eq!(status["booted"], "B", "{status:#}");
    assert_eq!(status["operation"], "idle", "{status:#}");
    assert_eq!(status["commit_pending"], false, "{status:#}");
    assert_eq!(status["last_result"]["kind"], "committed", "{status:#}");
    assert_eq!(status["last_result"]["version"], "2.0.0", "{status:#}");
    assert_eq!(status["floor"], 2, "{status:#}");

    // Read on the host: B first, with full tries; A got back the try its
    // last boot took; the floor is in the environment too.
    let mut committed = contract("B A", "3", "3");
    committed.insert("SEESAW_FLOOR".into(), "2".into());
    assert_eq!(board.env(), committed);
    let state = board.state();
    assert_eq!(state["floor"], 2, "{state:#}");
    assert!(state["pending"].is_null(), "{state:#}");
    let slot_b = status["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["slot"] == "B"))
        .unwrap_or_else(|| panic!("no slot B in {status:#}"));
    assert_eq!(slot_b["version"], "2.0.0", "{status:#}");
    assert_eq!(slot_b["booted"], true, "{status:#}");
    // A delta from slot A: the block index and only some frames of the
    // block store, far less than the full payload.
    assert!(server.requests_for("/2.0.0/rootfs.index") >= 1);
    assert_eq!(server.requests_for("/2.0.0/rootfs.payload"), 0);
    let payload = std::fs::metadata(bed.www.join("2.0.0/rootfs.payload"))
        .unwrap()
        .len();
    let fetched = server.body_bytes_sent();
    eprintln!("boot chain: the delta install fetched {fetched} bytes (full payload {payload})");
    assert!(fetched * 4 < payload, "{fetched} of {payload} bytes");
    scenario_time("1 update and commit", started);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn health_failure_rolls_back() {
    let bed = testbed();
    let started = Instant::now();
    let server = bed.server();
    let mut board = Board::new("2-health-failure", Some(&url_for_guest(&server, "2.1.0")));
    let console = board.power_on(|_| false);
    assert!(console.exited);
    expect_in_order(
        &console,
        &[
            "seesaw: booting slot A (tries left 2)",
            "SEESAW-QEMU: install result 0 ",
            "SEESAW-QEMU: rebooting",
            "seesaw: booting slot B (tries left 2)",
            "SEESAW-QEMU: booted slot B image 2.1.0",
            "seesaw: booting slot A (tries left 2)",
            "SEESAW-QEMU: booted slot A image 1.0.0",
            "SEESAW-QEMU: powering off",
        ],
    );
    // One try of B was enough: seesaw marked it bad and rebooted, rather
    // than the boot counter running out.
    assert_eq!(
        console.boots(),
        [
            "seesaw: booting slot A (tries left 2)",
            "seesaw: booting slot B (tries left 2)",
            "seesaw: booting slot A (tries left 2)",
        ]
    );
    let status = console.last_status();
    assert_eq!(status["booted"], "A", "{status:#}");
    assert_eq!(status["last_result"]["kind"], "rolled-back", "{status:#}");
    assert_eq!(status["last_result"]["version"], "2.1.0", "{status:#}");
    let message = status["last_result"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("health check") && message.contains("self-test failed"),
        "the rollback names its reason: {status:#}"
    );
    assert_eq!(status["failed_versions"], serde_json::json!(["2.1.0"]));
    assert_eq!(status["floor"], 0, "{status:#}");

    let env = board.env();
    assert_eq!(env["BOOT_B_LEFT"], "0", "{env:?}");
    // A, committed, got back the try of its boot and is first again.
    assert_eq!(env["BOOT_A_LEFT"], "3", "{env:?}");
    assert_eq!(env["BOOT_ORDER"], "A B", "{env:?}");
    scenario_time("2 health failure", started);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn hung_slot_watchdog_rolls_back() {
    let bed = testbed();
    let started = Instant::now();
    let server = bed.server();
    let mut board = Board::new("3-hung-slot", Some(&url_for_guest(&server, "2.2.0")));
    let console = board.power_on(|_| false);
    assert!(console.exited);
    expect_in_order(
        &console,
        &[
            "seesaw: booting slot A (tries left 2)",
            "SEESAW-QEMU: install result 0 ",
            "SEESAW-QEMU: rebooting",
            "seesaw: booting slot B (tries left 2)",
            "SEESAW-QEMU: kernel panic before seesaw confirms",
            "seesaw: booting slot B (tries left 1)",
            "SEESAW-QEMU: kernel panic before seesaw confirms",
            "seesaw: booting slot B (tries left 0)",
            "SEESAW-QEMU: kernel panic before seesaw confirms",
            "seesaw: booting slot A (tries left 2)",
            "SEESAW-QEMU: booted slot A image 1.0.0",
            "SEESAW-QEMU: powering off",
        ],
    );
    assert_eq!(
        console.boots(),
        [
            "seesaw: booting slot A (tries left 2)",
            "seesaw: booting slot B (tries left 2)",
            "seesaw: booting slot B (tries left 1)",
            "seesaw: booting slot B (tries left 0)",
            "seesaw: booting slot A (tries left 2)",
        ]
    );
    // Nobody but the watchdog rebooted B: no B boot reached the test step,
    // each ended in the panic, and the only orderly restart was the one
    // after the install.
    assert!(!console.has("SEESAW-QEMU: booted slot B"));
    let count = |needle: &str| console.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("] Kernel panic - not syncing"),
        3,
        "{}",
        console.log.display()
    );
    assert_eq!(
        count("reboot: Restarting system"),
        1,
        "{}",
        console.log.display()
    );
    let status = console.last_status();
    assert_eq!(status["booted"], "A", "{status:#}");
    assert_eq!(status["last_result"]["kind"], "rolled-back", "{status:#}");
    assert_eq!(status["last_result"]["version"], "2.2.0", "{status:#}");
    assert_eq!(status["failed_versions"], serde_json::json!(["2.2.0"]));
    assert!(status["pending"].is_null(), "{status:#}");

    assert_eq!(board.env(), contract("A B", "3", "0"));
    let state = board.state();
    assert_eq!(state["failed_versions"], serde_json::json!(["2.2.0"]));
    scenario_time("3 hung slot", started);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn power_cut_during_install_resumes() {
    let bed = testbed();
    let started = Instant::now();
    let server = bed.server();
    // The one-file bundle: the whole payload crosses the link, so a cut
    // by bytes lands in the middle of it.
    let payload = bed.www.join("2.0.0.seesaw");
    let payload_size = std::fs::metadata(&payload).unwrap().len();
    // A slow link, so the cut lands in the middle of the download whatever
    // the speed of the emulation.
    let rate = (payload_size / 40).max(256 * 1024);
    server.with_faults(|f| {
        f.trickle(rate);
    });
    let mut board = Board::new(
        "4-power-cut",
        Some(&one_file_url_for_guest(&server, "2.0.0")),
    );
    let cut_at = payload_size * 2 / 5;
    let console = board.power_on(|_| server.body_bytes_sent() > cut_at);
    assert!(!console.exited, "the install finished before the power cut");
    console.expect("SEESAW-QEMU: install started https://10.0.2.2:");
    assert!(!console.has("SEESAW-QEMU: install result"));
    let before = server.body_bytes_sent();
    eprintln!("boot chain: power cut after {before} of {payload_size} payload bytes were sent");
    // Nothing flipped: A stays first, with its try given back; B, being
    // written, is out of U-Boot's reach.
    assert_eq!(board.env(), contract("A", "3", "0"));

    server.clear_faults();
    server.reset_stats();
    let console = board.power_on(|_| false);
    assert!(console.exited);
    expect_in_order(
        &console,
        &[
            "seesaw: booting slot A (tries left 2)",
            "SEESAW-QEMU: booted slot A image 1.0.0",
            "SEESAW-QEMU: an install was cut off",
            "SEESAW-QEMU: status ",
            "SEESAW-QEMU: powering off",
        ],
    );
    let status = console.last_status();
    assert_eq!(status["operation"], "awaiting-reboot", "{status:#}");
    assert_eq!(status["last_result"]["kind"], "installed", "{status:#}");
    let resumed = server.body_bytes_sent();
    eprintln!("boot chain: the resumed install fetched {resumed} payload bytes");
    let ranges = server.range_headers();
    assert!(
        ranges.iter().any(|r| !r.starts_with("bytes=0-")),
        "the resumed install continues with a Range past the start: {ranges:?}"
    );
    assert!(
        resumed < payload_size,
        "chunks written before the cut are not fetched again ({resumed} of {payload_size})"
    );

    // B is next with full tries, and slot B holds exactly the image.
    assert_eq!(board.env(), contract("B A", "3", "3"));
    let image = &bed.releases["2.0.0"];
    let len = std::fs::metadata(image).unwrap().len();
    assert_eq!(
        board.slot_sha256("B", len),
        sha256_file_prefix(image, 0, len),
        "slot B differs from the image"
    );
    scenario_time("4 power cut", started);
}

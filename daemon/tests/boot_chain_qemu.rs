//! The real boot chain: Debian's U-Boot (`qemu-x86/u-boot.rom`) runs the
//! shipped env-file boot script, which boots Debian's kernel from the chosen
//! slot; systemd starts the host-built `seesaw` with its real unit, watchdog
//! drop-in, D-Bus policy and configuration; an emulated i6300esb hardware
//! watchdog resets a hung slot. Five scenarios, each on a fresh disk image
//! (the fifth on a copy of the first one's):
//!
//! 1. update and commit (A installs B over HTTPS, B boots, health gate
//!    passes, committed; then five orderly reboots, each of which must boot
//!    the committed B with its tries given back);
//! 2. health failure (B's health check fails, seesaw marks B bad and
//!    reboots, A reports the rollback with the reason);
//! 3. hung slot (B's kernel panics before seesaw confirms; the watchdog
//!    resets the VM until B's tries are used up; A reports the rollback and
//!    deny-lists the version);
//! 4. power cut (QEMU killed in the middle of the download; A boots, the
//!    daemon resumes and completes the install);
//! 5. power cuts in U-Boot's own write of the environment on the committed
//!    board (seeded random SIGKILLs right after the boot script's
//!    `seesaw: writing` marker, each followed by a full boot): the pair
//!    stays valid with B first, B boots, the commit stands.
//!
//! The update is served over HTTPS by `support/https_server.rs` on the host's
//! loopback, which the guest reaches as 10.0.2.2 through QEMU's user-mode
//! network, with a certificate for 10.0.2.2 from a CA made when the test
//! starts (the guest trusts only that CA). Afterwards the environment pair
//! (`seesaw.env`, `seesaw-redund.env`) is read from the disk image with
//! `mcopy` and the real `fw_printenv`, the state from
//! the data partition with `debugfs`, and the slots byte for byte.
//!
//! Takes minutes (QEMU without KVM), so the tests are `#[ignore]`d in a
//! plain `cargo test`: `bash tests/qemu-boot-chain.sh` builds the release
//! binary the guest runs and runs them one after the other (it is a step of
//! `tests/run-tests.sh`). How the test board is put together:
//! `tests/qemu/README.md`. Console logs: `work/qemu/logs/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
/// Size of each slot partition and of every slot image, MiB.
const SLOT_MIB: u64 = 256;
const FAT_MIB: u64 = 16;
const DATA_MIB: u64 = 32;
const MIB: u64 = 1024 * 1024;
const ENV_SIZE: u64 = 0x4000;
/// Where the guest finds the host's loopback (QEMU user-mode network).
const HOST_FROM_GUEST: &str = "10.0.2.2";
/// Hard limit for one QEMU run on the x86_64 board; a scenario normally
/// takes 1-4 minutes.
const QEMU_TIMEOUT: Duration = Duration::from_secs(600);
/// The same on the arm64 boards, whose emulated CPU is several times slower
/// (a boot to the test step takes 30-60 s).
const ARM64_QEMU_TIMEOUT: Duration = Duration::from_secs(1500);
/// Rate of the disk (reads and writes together, QEMU's I/O throttling) in
/// a run that cuts the power during U-Boot's write of an environment copy.
/// U-Boot's own reads before the write (boot.scr, both copies, the FAT)
/// fill the throttle's bucket, so the write of the copy reaches the disk
/// only about 0.45 s after the script's `seesaw: writing` marker, and the
/// FAT and directory updates after it about 0.5 s later (measured on this
/// board): a window that cuts timed from the console land in. A throttle
/// on writes alone would not delay the copy: QEMU passes the first
/// request after a quiet spell at once, and the copy's 16 KiB go in one.
const THROTTLED_BPS: u64 = 32 * 1024;
/// The environment copies on the FAT partition, in the order of
/// `bootloader-scripts/env-file/fw_env.config`.
const ENV_FILES: [&str; 2] = ["seesaw.env", "seesaw-redund.env"];
/// Orderly reboots of the committed slot in scenario 1.
const REBOOTS_AFTER_COMMIT: u32 = 5;

/// The boards the chain runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// QEMU x86_64 with Debian's stock U-Boot and the env-file script.
    X86,
    /// QEMU arm64 virt, U-Boot built Raspberry Pi-like (environment in
    /// `uboot.env` + `uboot-redund.env` on the FAT partition of a virtio
    /// disk), `bootloader-scripts/rpi/boot.cmd`.
    Rpi,
    /// QEMU arm64 virt, U-Boot built i.MX-like (environment raw on an SD
    /// card at 4 MiB and 5 MiB; the partitions on a virtio disk, laid out
    /// as on the i.MX), `bootloader-scripts/imx/boot.cmd`.
    Imx,
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Kind::X86 => "x86",
            Kind::Rpi => "rpi",
            Kind::Imx => "imx",
        }
    }

    fn arm64(self) -> bool {
        self != Kind::X86
    }

    fn compatible(self) -> &'static str {
        match self {
            Kind::X86 => "qemu-x86_64-seesaw",
            Kind::Rpi => "qemu-arm64-rpi-seesaw",
            Kind::Imx => "qemu-arm64-imx-seesaw",
        }
    }

    /// What the scenario timings are printed under.
    fn tag(self) -> String {
        match self {
            Kind::X86 => "boot chain".to_owned(),
            k => format!("boot chain (arm64 {})", k.name()),
        }
    }

    /// Where the FAT boot partition starts, MiB: the i.MX layout keeps the
    /// first 8 MiB for the boot loader and the environment copies at 4 and
    /// 5 MiB.
    fn fat_start_mib(self) -> u64 {
        match self {
            Kind::Imx => 8,
            _ => 1,
        }
    }

    fn qemu_timeout(self) -> Duration {
        if self.arm64() {
            ARM64_QEMU_TIMEOUT
        } else {
            QEMU_TIMEOUT
        }
    }
}

/// The i.MX-like board's environment copies on the raw SD card (offset,
/// size), as `bootloader-scripts/imx/fw_env.config` has them.
const IMX_ENV_COPIES: [(u64, u64); 2] = [(0x40_0000, 0x1000), (0x50_0000, 0x1000)];
/// The i.MX-like board's SD card (QEMU's SD cards are a power of two in
/// size): only U-Boot's environment, raw; nothing else on it is read or
/// written. QEMU's SD card emulation moves about 3 MiB/s here, so an
/// install into a slot on it took 250 s against 16 s on virtio.
const IMX_SD_MIB: u64 = 8;
/// The Raspberry Pi-like board's environment copies on the FAT partition,
/// as `bootloader-scripts/rpi/fw_env.config` has them (0x4000 bytes each).
const RPI_ENV_FILES: [&str; 2] = ["uboot.env", "uboot-redund.env"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn work_dir(kind: Kind) -> PathBuf {
    if kind.arm64() {
        return match std::env::var_os("SEESAW_QEMU_ARM64_WORK") {
            Some(d) => PathBuf::from(d),
            None => repo_root().join("work/qemu-arm64"),
        };
    }
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
    /// What QEMU runs as its firmware: U-Boot.
    firmware: PathBuf,
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

fn testbed(kind: Kind) -> &'static Testbed {
    static BEDS: [OnceLock<Testbed>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    BEDS[kind.index()].get_or_init(|| Testbed::build(kind))
}

impl Testbed {
    fn build(kind: Kind) -> Testbed {
        let started = Instant::now();
        let repo = repo_root();
        let tag = kind.tag();
        let (seesaw_var, runner) = if kind.arm64() {
            ("SEESAW_QEMU_SEESAW_ARM64", "tests/qemu-arm64-boot-chain.sh")
        } else {
            ("SEESAW_QEMU_SEESAW", "tests/qemu-boot-chain.sh")
        };
        let seesaw = std::env::var_os(seesaw_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "{seesaw_var} must name the seesaw binary the guest runs: \
                     run bash {runner}"
                )
            });
        // What makes the bundles on the host: the guest's binary on the
        // x86_64 board, the host's build on the arm64 ones.
        let host_seesaw = if kind.arm64() {
            std::env::var_os("SEESAW_QEMU_HOST_SEESAW")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    panic!("SEESAW_QEMU_HOST_SEESAW must name the host's seesaw: run bash {runner}")
                })
        } else {
            seesaw.clone()
        };
        let work = work_dir(kind);
        let cache = work.join("cache");
        let run_dir = work.join(if kind.arm64() {
            format!("run-{}", kind.name())
        } else {
            "run".to_owned()
        });
        let logs = work.join("logs");
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::create_dir_all(&logs).unwrap();

        let qemu = repo.join("tests/qemu");
        eprintln!("{tag}: guest parts (cached in {})", cache.display());
        let firmware = if kind.arm64() {
            let status = Command::new("bash")
                .arg(qemu.join("arm64/build-guest.sh"))
                .arg(&cache)
                .arg(work_dir(Kind::X86).join("cache"))
                .status()
                .expect("run arm64/build-guest.sh");
            assert!(status.success(), "tests/qemu/arm64/build-guest.sh failed");
            let status = Command::new("bash")
                .arg(qemu.join("arm64/build-u-boot.sh"))
                .arg(&cache)
                .status()
                .expect("run arm64/build-u-boot.sh");
            assert!(status.success(), "tests/qemu/arm64/build-u-boot.sh failed");
            cache.join("u-boot").join(kind.name()).join("u-boot.bin")
        } else {
            let status = Command::new("bash")
                .arg(qemu.join("build-guest.sh"))
                .arg(&cache)
                .status()
                .expect("run build-guest.sh");
            assert!(status.success(), "tests/qemu/build-guest.sh failed");
            PathBuf::from(UBOOT_ROM)
        };
        assert!(
            firmware.is_file(),
            "{} missing: run tests/qemu-packages.sh",
            firmware.display()
        );

        let boot_scr = run_dir.join("boot.scr");
        let (arch, script) = match kind {
            Kind::X86 => ("x86", "env-file"),
            k => ("arm64", k.name()),
        };
        run(Command::new("mkimage")
            .args(["-A", arch, "-T", "script", "-C", "none", "-d"])
            .arg(
                repo.join("bootloader-scripts")
                    .join(script)
                    .join("boot.cmd"),
            )
            .arg(&boot_scr));
        // The i.MX script loads the device tree from the slot: QEMU's own,
        // dumped with exactly the machine options of the runs (a tree
        // dumped with other options hangs the kernel silently).
        let dtb = (kind == Kind::Imx).then(|| {
            let dtb = run_dir.join("qemu-virt.dtb");
            let disk = run_dir.join("dtb-disk.img");
            File::create(&disk).unwrap().set_len(1 << 30).unwrap();
            File::create(sd_card(&disk))
                .unwrap()
                .set_len(IMX_SD_MIB * MIB)
                .unwrap();
            let mut cmd = qemu_command(kind, &firmware, &disk, false, Some(&dtb));
            run(cmd.stdout(Stdio::null()));
            let _ = std::fs::remove_file(&disk);
            let _ = std::fs::remove_file(sd_card(&disk));
            dtb
        });

        // Keys, CA, slot images and bundles are cached too, under a key of
        // everything they are made from; a change to any of it (a new
        // seesaw binary, a guest file, a unit) makes them again.
        let key = testbed_key(kind, &repo, &[&seesaw, &host_seesaw], &cache, &firmware);
        let bed_root = cache.join(if kind.arm64() {
            format!("testbed-{}", kind.name())
        } else {
            "testbed".to_owned()
        });
        let bed = bed_root.join(&key);
        if bed.join("done").is_file() {
            eprintln!("{tag}: keys, CA, slot images and bundles from the cache ({key})");
        } else {
            // Only the newest set is kept (about 1 GB).
            let _ = std::fs::remove_dir_all(&bed_root);
            let tmp = bed_root.join("making");
            std::fs::create_dir_all(&tmp).unwrap();
            make_testbed(
                kind,
                &repo,
                [&seesaw, &host_seesaw],
                &cache,
                dtb.as_deref(),
                &tmp,
            );
            std::fs::write(tmp.join("done"), "").unwrap();
            std::fs::rename(&tmp, &bed).unwrap();
        }
        let www = bed.join("www");
        let image_a = bed.join("slot-1.0.0.ext4");
        let releases: BTreeMap<&'static str, PathBuf> = RELEASES
            .iter()
            .map(|(release, _, _)| (*release, bed.join(format!("slot-{release}.ext4"))))
            .collect();
        let cert_pem = std::fs::read_to_string(bed.join("server-cert.pem")).unwrap();
        let key_pem = std::fs::read_to_string(bed.join("server-key.pem")).unwrap();
        eprintln!(
            "{tag}: test bed ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Testbed {
            firmware,
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

/// Makes the cached part of the test bed in `dir`: development keys, the CA
/// and the server certificate for 10.0.2.2, the slot images (A: 1.0.0 and
/// one per entry of [`RELEASES`]) and their bundles in `www/` (the network
/// layout in `www/<release>/`, the one-file bundle `www/<release>.seesaw`).
fn make_testbed(
    kind: Kind,
    repo: &Path,
    [seesaw, host_seesaw]: [&Path; 2],
    cache: &Path,
    dtb: Option<&Path>,
    dir: &Path,
) {
    let qemu = repo.join("tests/qemu");
    let keys = dir.join("keys");
    run(Command::new("bash")
        .arg(repo.join("keys/make-dev-keys.sh"))
        .arg("--force")
        .arg(&keys));
    let (ca_pem, cert_pem, key_pem) = guest_facing_pki();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    std::fs::write(dir.join("server-cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("server-key.pem"), &key_pem).unwrap();

    let slot_image = |release: &str, variant: &str| {
        let out = dir.join(format!("slot-{release}.ext4"));
        run(Command::new("bash")
            .arg(qemu.join("make-slot-image.sh"))
            .arg(cache)
            .arg(seesaw)
            .arg(&keys)
            .arg(&ca)
            .arg(release)
            .arg(variant)
            .arg(SLOT_MIB.to_string())
            .arg(&out)
            .arg(kind.name())
            .args(dtb));
        out
    };
    slot_image("1.0.0", "good");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    for (release, variant, security_version) in RELEASES {
        let image = slot_image(release, variant);
        run(Command::new(host_seesaw)
            .args(["bundle", "create", "--image"])
            .arg(&image)
            .args(["--compatible", kind.compatible(), "--version", release])
            .args(["--security-version", &security_version.to_string()])
            .arg("--key")
            .arg(keys.join("release.pem"))
            .arg("--key")
            .arg(keys.join("fleet.pem"))
            .arg("--output-dir")
            .arg(www.join(release))
            .arg("--output")
            .arg(www.join(format!("{release}.seesaw"))));
    }
}

/// The cache key of [`make_testbed`]'s output: a hash of the seesaw binary,
/// everything under `tests/qemu/` and `systemd/` (but documentation), the
/// env-file `fw_env.config`, the key script, the guest parts
/// (`build-guest.sh`'s stamp with its time, kernel, initramfs) and the
/// constants the images and bundles are made with.
fn testbed_key(
    kind: Kind,
    repo: &Path,
    binaries: &[&Path],
    cache: &Path,
    firmware: &Path,
) -> String {
    use sha2::Digest;
    fn walk(path: &Path, out: &mut Vec<PathBuf>) {
        if path.is_dir() && !path.is_symlink() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out);
            }
        } else if path.extension() != Some(std::ffi::OsStr::new("md")) {
            out.push(path.to_owned());
        }
    }
    let mut files: Vec<PathBuf> = binaries.iter().map(|b| b.to_path_buf()).collect();
    files.push(firmware.to_owned());
    let fw_env = match kind {
        Kind::X86 => "bootloader-scripts/env-file/fw_env.config".to_owned(),
        k => format!("bootloader-scripts/{}/fw_env.config", k.name()),
    };
    for p in ["tests/qemu", "systemd", &fw_env, "keys/make-dev-keys.sh"] {
        walk(&repo.join(p), &mut files);
    }
    for p in ["rootfs.stamp", "kernel/version", "initrd.img"] {
        files.push(cache.join(p));
    }
    let mut h = sha2::Sha256::new();
    h.update(format!(
        "testbed 1 {kind:?} {RELEASES:?} {SLOT_MIB} {}\n",
        kind.compatible()
    ));
    let stamp = std::fs::metadata(cache.join("rootfs.stamp"))
        .and_then(|m| m.modified())
        .expect("build-guest.sh's rootfs.stamp");
    h.update(format!("{stamp:?}\n"));
    for f in files {
        // A symbolic link (the boards' overlays hold some) counts by its
        // target.
        if let Ok(target) = std::fs::read_link(&f) {
            h.update(format!("{} -> {}\n", f.display(), target.display()));
            continue;
        }
        let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        h.update(format!("{} {}\n", f.display(), bytes.len()));
        h.update(&bytes);
    }
    hex::encode(h.finalize())[..16].to_owned()
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
    kind: Kind,
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
    /// For a run cut by [`Stop::After`]: how long after its marker line the
    /// plug was pulled, and that line.
    cut_after_marker: Option<(Duration, String)>,
}

/// When a QEMU run is ended by a power cut (SIGKILL) rather than by the
/// guest powering off.
enum Stop<'a> {
    /// When this says so, given the console so far (looked at every 200 ms).
    When(&'a mut dyn FnMut(&str) -> bool),
    /// `delay` after the first console line containing `marker` is complete
    /// (looked at every 2 ms).
    After { marker: &'a str, delay: Duration },
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

    /// The markers split at every boot U-Boot made: one entry per
    /// `seesaw: booting slot` marker, that marker first.
    fn boot_segments(&self) -> Vec<Vec<String>> {
        let mut segments: Vec<Vec<String>> = Vec::new();
        for m in self.markers() {
            if m.starts_with("seesaw: booting slot") {
                segments.push(vec![m]);
            } else if let Some(last) = segments.last_mut() {
                last.push(m);
            }
        }
        segments
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
    /// A fresh disk: FAT boot partition (boot.scr, the environment pair
    /// seesaw.env + seesaw-redund.env with `BOOT_ORDER="A B"` and 3 tries
    /// each written by the real `fw_setenv`, the test step's control files:
    /// the URL to install, the number of reboots after the last step), slot
    /// A with release 1.0.0, an empty slot B, an empty data partition.
    ///
    /// On the arm64 boards U-Boot's environment starts as a shipped image
    /// has it: no valid copy (zero-filled `uboot.env` and
    /// `uboot-redund.env` on the Raspberry Pi-like board, zeros at 4 and
    /// 5 MiB on the i.MX-like one); U-Boot starts from its built-in
    /// environment and the script's defaults.
    fn new(kind: Kind, name: &'static str, install_url: Option<&str>, reboots: u32) -> Board {
        let bed = testbed(kind);
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
        if kind == Kind::Rpi {
            for name in RPI_ENV_FILES {
                let f = dir.join(name);
                std::fs::write(&f, vec![0u8; ENV_SIZE as usize]).unwrap();
                mcopy(&f, &format!("::{name}"));
            }
        }
        // The redundant pair the env-file script keeps (bootloader-scripts/
        // env-file/fw_env.config): both files exist, the real fw_setenv fills them.
        if kind == Kind::X86 {
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
        }
        run(Command::new("mmd").arg("-i").arg(&fat).arg("::qemu-test"));
        if let Some(url) = install_url {
            let f = dir.join("install-url");
            std::fs::write(&f, url).unwrap();
            mcopy(&f, "::qemu-test/install-url");
        }
        if reboots > 0 {
            let f = dir.join("reboots");
            std::fs::write(&f, format!("{reboots}\n")).unwrap();
            mcopy(&f, "::qemu-test/reboots");
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
        let total = (kind.fat_start_mib() + FAT_MIB + 2 * SLOT_MIB + DATA_MIB + 1) * MIB;
        File::create(&disk).unwrap().set_len(total).unwrap();
        if kind == Kind::Imx {
            File::create(sd_card(&disk))
                .unwrap()
                .set_len(IMX_SD_MIB * MIB)
                .unwrap();
        }
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
            sectors(kind.fat_start_mib()),
            sectors(FAT_MIB),
            sectors(Board::slot_offset_mib(kind, "A")),
            sectors(SLOT_MIB),
            sectors(Board::slot_offset_mib(kind, "B")),
            sectors(SLOT_MIB),
            sectors(Board::data_offset_mib(kind)),
            sectors(DATA_MIB),
        )
        .unwrap();
        let out = sfdisk.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sfdisk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        copy_into(&fat, &disk, kind.fat_start_mib() * MIB);
        copy_into(&bed.image_a, &disk, Board::slot_offset_mib(kind, "A") * MIB);
        copy_into(&data, &disk, Board::data_offset_mib(kind) * MIB);
        Board {
            kind,
            name,
            logs: bed.logs.clone(),
            dir,
            disk,
            runs: 0,
        }
    }

    /// A board in the state another one was left in: a copy of its disk.
    fn copy_of(kind: Kind, name: &'static str, disk: &Path) -> Board {
        let bed = testbed(kind);
        let dir = bed.run.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("disk.img");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(disk)
            .arg(&copy));
        if kind == Kind::Imx {
            std::fs::copy(sd_card(disk), sd_card(&copy)).unwrap();
        }
        Board {
            kind,
            name,
            logs: bed.logs.clone(),
            dir,
            disk: copy,
            runs: 0,
        }
    }

    fn slot_offset_mib(kind: Kind, slot: &str) -> u64 {
        match slot {
            "A" => kind.fat_start_mib() + FAT_MIB,
            _ => kind.fat_start_mib() + FAT_MIB + SLOT_MIB,
        }
    }

    fn data_offset_mib(kind: Kind) -> u64 {
        kind.fat_start_mib() + FAT_MIB + 2 * SLOT_MIB
    }

    /// Powers the board on and runs QEMU until the guest powers off (QEMU
    /// exits), `cut` says to pull the plug (SIGKILL), or the hard timeout.
    fn power_on(&mut self, mut cut: impl FnMut(&str) -> bool) -> Console {
        self.run_qemu(Stop::When(&mut cut), false)
    }

    /// One QEMU run. `throttle`: the disk runs at [`THROTTLED_BPS`], so
    /// that a power cut timed after a marker can land before, in or after
    /// the write that follows.
    fn run_qemu(&mut self, mut stop: Stop<'_>, throttle: bool) -> Console {
        self.runs += 1;
        let log = self.logs.join(match self.kind {
            Kind::X86 => format!("{}-{}.log", self.name, self.runs),
            k => format!("{}-{}-{}.log", k.name(), self.name, self.runs),
        });
        let firmware = &testbed(self.kind).firmware;
        let mut child = qemu_command(self.kind, firmware, &self.disk, throttle, None)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start QEMU: {e}"));
        let timeout = self.kind.qemu_timeout();
        // The console so far, and when the whole line holding the marker of
        // a Stop::After was first seen.
        let seen = Arc::new(Mutex::new((String::new(), None::<(Instant, String)>)));
        let marker = match &stop {
            Stop::After { marker, .. } => Some(marker.to_string()),
            _ => None,
        };
        let mut stdout = child.stdout.take().unwrap();
        let mut log_file = File::create(&log).unwrap();
        let sink = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = log_file.write_all(&buf[..n]);
                        let chunk = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                        let mut seen = sink.lock().unwrap();
                        // Lines complete before this chunk were looked at.
                        let from = seen.0.rfind('\n').map_or(0, |i| i + 1);
                        seen.0.push_str(&chunk);
                        if let (Some(m), None) = (&marker, &seen.1) {
                            let hit = seen.0[from..].find(m.as_str()).and_then(|i| {
                                let line = &seen.0[from + i..];
                                line.find('\n').map(|e| line[..e].to_owned())
                            });
                            if let Some(line) = hit {
                                seen.1 = Some((Instant::now(), line));
                            }
                        }
                    }
                }
            }
        });
        let start = Instant::now();
        let poll = match stop {
            Stop::After { .. } => Duration::from_millis(2),
            Stop::When(_) => Duration::from_millis(200),
        };
        let mut cut_at_marker = None;
        let exited = loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                assert!(status.success(), "QEMU failed ({status}): {stderr}");
                break true;
            }
            let done = {
                let seen = seen.lock().unwrap();
                match &mut stop {
                    Stop::When(cut) => cut(&seen.0),
                    Stop::After { delay, .. } => match &seen.1 {
                        Some((at, line)) if at.elapsed() >= *delay => {
                            cut_at_marker = Some((at.elapsed(), line.clone()));
                            true
                        }
                        _ => false,
                    },
                }
            };
            if done || start.elapsed() > timeout {
                // SIGKILL: QEMU flushes nothing, as in a power cut.
                let _ = child.kill();
                let _ = child.wait();
                if !done {
                    let _ = reader.join();
                    let console = Console {
                        text: seen.lock().unwrap().0.clone(),
                        log,
                        exited: false,
                        cut_after_marker: None,
                    };
                    console.fail(&format!(
                        "{}: QEMU run {} did not finish within {timeout:?}",
                        self.name, self.runs
                    ));
                }
                break false;
            }
            std::thread::sleep(poll);
        };
        let _ = reader.join();
        let text = seen.lock().unwrap().0.clone();
        eprintln!(
            "{}: {} run {}: {:.1} s{}",
            self.kind.tag(),
            self.name,
            self.runs,
            start.elapsed().as_secs_f64(),
            if exited { "" } else { " (power cut)" }
        );
        let console = Console {
            text,
            log,
            exited,
            cut_after_marker: cut_at_marker,
        };
        if let Stop::After { marker, .. } = stop {
            if console.exited {
                console.fail(&format!("the guest powered off before {marker:?}"));
            }
        }
        console
    }

    /// Puts `local` on the FAT partition as `name` (replacing it).
    fn put_fat_file(&self, local: &Path, name: &str) {
        run(Command::new("mcopy")
            .args(["-o", "-i"])
            .arg(format!(
                "{}@@{}",
                self.disk.display(),
                self.kind.fat_start_mib() * MIB
            ))
            .arg(local)
            .arg(format!("::{name}")));
    }

    /// The raw bytes of both copies of U-Boot's environment on an arm64
    /// board (the FAT files, or the SD card's regions).
    fn uboot_env_bytes(&self) -> Vec<Vec<u8>> {
        match self.kind {
            Kind::Rpi => RPI_ENV_FILES
                .iter()
                .map(|name| std::fs::read(self.fat_file(name)).unwrap())
                .collect(),
            Kind::Imx => {
                let card = std::fs::read(sd_card(&self.disk)).unwrap();
                IMX_ENV_COPIES
                    .iter()
                    .map(|&(offset, size)| card[offset as usize..(offset + size) as usize].to_vec())
                    .collect()
            }
            Kind::X86 => panic!("the x86_64 board keeps no U-Boot environment"),
        }
    }

    /// One file of the FAT partition, copied out of the disk image.
    fn fat_file(&self, name: &str) -> PathBuf {
        let out = self.dir.join(format!("{name}.after"));
        let _ = std::fs::remove_file(&out);
        run(Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(format!(
                "{}@@{}",
                self.disk.display(),
                self.kind.fat_start_mib() * MIB
            ))
            .arg(format!("::{name}"))
            .arg(&out));
        out
    }

    /// The environment pair as the board left it, read by the real
    /// `fw_printenv`: its A/B variables (`BOOT_*`, `SEESAW_*`; on the arm64
    /// boards the pair is U-Boot's whole environment). The x86_64 board's
    /// pair is `seesaw.env` + `seesaw-redund.env` on the FAT partition, the
    /// Raspberry Pi-like board's `uboot.env` + `uboot-redund.env` there, the
    /// i.MX-like board's two copies raw on the disk at the offsets its
    /// `fw_env.config` names.
    fn env(&self) -> BTreeMap<String, String> {
        let cfg = match self.kind {
            Kind::X86 | Kind::Rpi => {
                let names = if self.kind == Kind::X86 {
                    ENV_FILES
                } else {
                    RPI_ENV_FILES
                };
                let first = self.fat_file(names[0]);
                let second = self.fat_file(names[1]);
                fw_config(&self.dir, &first, &second)
            }
            Kind::Imx => {
                let cfg = self.dir.join("fw_env-raw.config");
                let lines: String = IMX_ENV_COPIES
                    .iter()
                    .map(|(offset, size)| {
                        format!("{} {offset:#x} {size:#x}\n", sd_card(&self.disk).display())
                    })
                    .collect();
                std::fs::write(&cfg, lines).unwrap();
                cfg
            }
        };
        let mut env = parse_env(&run(Command::new("fw_printenv").arg("-c").arg(&cfg)));
        env.retain(|k, _| k.starts_with("BOOT_") || k.starts_with("SEESAW_"));
        env
    }

    /// The bytes of both environment copies.
    fn env_copies(&self) -> [Vec<u8>; 2] {
        ENV_FILES.map(|name| std::fs::read(self.fat_file(name)).unwrap())
    }

    /// One environment copy on its own as the real `fw_printenv` reads it
    /// (paired with a copy of zeros, which is never valid): its variables,
    /// or `None` if the copy is not valid (a bad CRC: torn or never
    /// written).
    fn env_copy_alone(&self, bytes: &[u8]) -> Option<BTreeMap<String, String>> {
        let copy = self.dir.join("copy-alone.env");
        let zeros = self.dir.join("copy-alone-zeros.env");
        std::fs::write(&copy, bytes).unwrap();
        std::fs::write(&zeros, vec![0u8; ENV_SIZE as usize]).unwrap();
        let cfg = fw_config(&self.dir, &copy, &zeros);
        let out = Command::new("fw_printenv")
            .arg("-c")
            .arg(&cfg)
            .output()
            .expect("fw_printenv");
        out.status
            .success()
            .then(|| parse_env(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `fsck.fat -n` on the FAT partition: the file system is sound.
    fn check_fat(&self) {
        let part = self.dir.join("fat.after");
        let mut from = File::open(&self.disk).unwrap();
        from.seek(SeekFrom::Start(self.kind.fat_start_mib() * MIB))
            .unwrap();
        let mut to = File::create(&part).unwrap();
        std::io::copy(&mut from.take(FAT_MIB * MIB), &mut to).unwrap();
        run(Command::new("fsck.fat").arg("-n").arg(&part));
    }

    /// `state.json` from the data partition, read with `debugfs`.
    fn state(&self) -> serde_json::Value {
        let part = self.dir.join("data.after");
        let mut from = File::open(&self.disk).unwrap();
        from.seek(SeekFrom::Start(Board::data_offset_mib(self.kind) * MIB))
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
        sha256_file_prefix(
            &self.disk,
            Board::slot_offset_mib(self.kind, slot) * MIB,
            len,
        )
    }
}

/// The QEMU command line of a board (without its standard streams). `dtb`:
/// only dump the machine's device tree there and exit (QEMU's
/// `dumpdtb`), with every other option as in a run.
fn qemu_command(
    kind: Kind,
    firmware: &Path,
    disk: &Path,
    throttle: bool,
    dtb: Option<&Path>,
) -> Command {
    let mut drive = format!("file={},format=raw", disk.display());
    if throttle {
        drive.push_str(&format!(",throttling.bps-total={THROTTLED_BPS}"));
    }
    let mut cmd;
    if kind == Kind::X86 {
        cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-M", "pc", "-m", "1024", "-nographic"])
            // No display adapter: the board has only its serial console, and
            // with QEMU's default VGA this U-Boot hangs (or resets) in its
            // video set-up after "Loading Environment from nowhere" in about
            // one start in thirty (2 of 60 cold starts measured; 0 of 60
            // without it).
            .args(["-vga", "none"])
            .arg("-bios")
            .arg(firmware)
            .arg("-drive")
            .arg(format!("{drive},if=virtio"));
    } else {
        cmd = Command::new("qemu-system-aarch64");
        let machine = match dtb {
            Some(path) => format!("virt,dumpdtb={}", path.display()),
            None => "virt".to_owned(),
        };
        // Two emulated CPUs: systemd's start-up is about 1.6 times faster
        // than on one (measured: 27 s against 44 s to the test step).
        cmd.args(["-accel", "tcg", "-M", &machine, "-cpu", "cortex-a72"])
            .args(["-smp", "2", "-m", "1024", "-nographic"])
            .arg("-bios")
            .arg(firmware);
        cmd.arg("-drive").arg(format!("{drive},if=virtio"));
        if kind == Kind::Imx {
            // The SD card with U-Boot's environment, on QEMU's SD host
            // controller on PCI (mmc 0, /dev/mmcblk0).
            cmd.arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=none,id=sd",
                    sd_card(disk).display()
                ))
                .args(["-device", "sdhci-pci", "-device", "sd-card,drive=sd"]);
        }
    }
    cmd.args(["-nic", "user,model=virtio-net-pci"]).args([
        "-device",
        "i6300esb",
        "-action",
        "watchdog=reset",
    ]);
    cmd
}

/// The i.MX-like board's SD card image beside its disk image.
fn sd_card(disk: &Path) -> PathBuf {
    disk.with_extension("sd.img")
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

/// The first `SEESAW-QEMU: env ...` marker among `markers` (the pair as the
/// guest's fw_printenv read it right after seesaw started), parsed.
fn env_marker(markers: &[String]) -> Option<BTreeMap<String, String>> {
    markers.iter().find_map(|m| {
        let vars = m.strip_prefix("SEESAW-QEMU: env ")?;
        Some(
            vars.split('|')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    })
}

/// The `SEESAW-QEMU: status {...}` markers among `markers`, parsed.
fn status_markers(markers: &[String]) -> Vec<serde_json::Value> {
    markers
        .iter()
        .filter_map(|m| m.strip_prefix("SEESAW-QEMU: status "))
        .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("status {j}: {e}")))
        .collect()
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

fn scenario_time(kind: Kind, name: &str, started: Instant) {
    eprintln!(
        "{}: scenario {name}: {:.1} s wall time",
        kind.tag(),
        started.elapsed().as_secs_f64()
    );
}

/// The console lines containing each of `wanted`, in this order (any
/// console line, not only markers).
fn expect_lines_in_order(console: &Console, wanted: &[&str]) {
    let lines: Vec<&str> = console.lines().collect();
    let mut at = 0;
    for w in wanted {
        match lines[at..].iter().position(|l| l.contains(w)) {
            Some(i) => at += i + 1,
            None => console.fail(&format!("no console line with {w:?} after line {at}")),
        }
    }
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

/// Scenario 1's board, made once and shared with scenario 5, which starts
/// from the committed board it leaves: A installs 2.0.0 into B over HTTPS,
/// reboots, B is committed, then the committed B is rebooted
/// [`REBOOTS_AFTER_COMMIT`] times (orderly, `systemctl reboot`) and powers
/// off, all in one QEMU run.
struct CommittedRun {
    board: Board,
    console: Console,
    index_requests: u64,
    payload_requests: u64,
    fetched: u64,
    payload: u64,
}

impl CommittedRun {
    fn get(kind: Kind) -> &'static CommittedRun {
        static RUNS: [OnceLock<Result<CommittedRun, String>>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        RUNS[kind.index()]
            .get_or_init(|| {
                // A failure is kept (not retried by the next scenario that needs
                // the board); its panic message is printed where it happened.
                std::panic::catch_unwind(|| CommittedRun::make(kind)).map_err(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                })
            })
            .as_ref()
            .unwrap_or_else(|e| panic!("scenario 1's board could not be made: {e}"))
    }

    fn make(kind: Kind) -> CommittedRun {
        let bed = testbed(kind);
        let started = Instant::now();
        let server = bed.server();
        let mut board = Board::new(
            kind,
            "1-update-commit",
            Some(&url_for_guest(&server, "2.0.0")),
            REBOOTS_AFTER_COMMIT,
        );
        let console = board.power_on(|_| false);
        assert!(console.exited);
        let payload = std::fs::metadata(bed.www.join("2.0.0/rootfs.payload"))
            .unwrap()
            .len();
        eprintln!(
            "{}: scenario 1's board (install, commit, {REBOOTS_AFTER_COMMIT} reboots): {:.1} s",
            kind.tag(),
            started.elapsed().as_secs_f64()
        );
        CommittedRun {
            board,
            console,
            index_requests: server.requests_for("/2.0.0/rootfs.index"),
            payload_requests: server.requests_for("/2.0.0/rootfs.payload"),
            fetched: server.body_bytes_sent(),
            payload,
        }
    }
}

/// The environment of the board once B (2.0.0, security version 2) is
/// committed: B first, full tries for both (A got back the try of its last
/// boot before the install), the floor.
fn committed_env() -> BTreeMap<String, String> {
    let mut env = contract("B A", "3", "3");
    env.insert("SEESAW_FLOOR".into(), security_version("2.0.0").to_string());
    env
}

/// The security version the bundle of `release` was signed with.
fn security_version(release: &str) -> u64 {
    RELEASES
        .iter()
        .find(|(r, _, _)| *r == release)
        .map(|(_, _, v)| *v)
        .unwrap_or_else(|| panic!("no release {release}"))
}

/// The status reports the commit of 2.0.0 in B, booted from B.
fn assert_committed_status(status: &serde_json::Value, what: &str) {
    assert_eq!(status["booted"], "B", "{what}: {status:#}");
    assert_eq!(status["operation"], "idle", "{what}: {status:#}");
    assert_eq!(status["commit_pending"], false, "{what}: {status:#}");
    assert_eq!(
        status["last_result"]["kind"], "committed",
        "{what}: {status:#}"
    );
    assert_eq!(
        status["last_result"]["version"], "2.0.0",
        "{what}: {status:#}"
    );
    assert_eq!(
        status["floor"],
        security_version("2.0.0"),
        "{what}: {status:#}"
    );
}

fn update_and_commit_on(kind: Kind) {
    let started = Instant::now();
    let committed = CommittedRun::get(kind);
    let (board, console) = (&committed.board, &committed.console);
    let mut order = vec![
        "seesaw: booting slot A (tries left 2)",
        "SEESAW-QEMU: booted slot A image 1.0.0",
        "SEESAW-QEMU: install started https://10.0.2.2:",
        "SEESAW-QEMU: install result 0 ",
        "SEESAW-QEMU: rebooting",
        "seesaw: booting slot B (tries left 2)",
        "SEESAW-QEMU: booted slot B image 2.0.0",
        "SEESAW-QEMU: status ",
    ];
    for _ in 0..REBOOTS_AFTER_COMMIT {
        order.extend([
            "SEESAW-QEMU: rebooting (",
            "seesaw: booting slot B (tries left 2)",
            "SEESAW-QEMU: booted slot B image 2.0.0",
        ]);
    }
    order.extend(["SEESAW-QEMU: status ", "SEESAW-QEMU: powering off"]);
    expect_in_order(console, &order);

    // Every boot, in order: A, B on trial, then the committed B each time
    // with the try it took given back by the previous start.
    let segments = console.boot_segments();
    let boots: Vec<&str> = segments.iter().map(|s| s[0].as_str()).collect();
    let mut expected = vec![
        "seesaw: booting slot A (tries left 2)",
        "seesaw: booting slot B (tries left 2)",
    ];
    expected.extend(
        std::iter::repeat("seesaw: booting slot B (tries left 2)")
            .take(REBOOTS_AFTER_COMMIT as usize),
    );
    assert_eq!(boots, expected, "console log: {}", console.log.display());

    // The trial boot ends with the commit.
    let trial = &segments[1];
    let status = status_markers(trial)
        .pop()
        .unwrap_or_else(|| console.fail("no status on the trial boot"));
    assert_committed_status(&status, "after the commit");
    let slot_b = status["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["slot"] == "B"))
        .unwrap_or_else(|| panic!("no slot B in {status:#}"));
    assert_eq!(slot_b["version"], "2.0.0", "{status:#}");
    assert_eq!(slot_b["booted"], true, "{status:#}");

    // Each boot after the commit: once seesaw has started, the pair as the
    // guest's fw_printenv reads it has B first with its 3 tries back and
    // the floor; the status still reports the commit.
    for (i, segment) in segments[2..].iter().enumerate() {
        let what = format!("boot {} after the commit", i + 1);
        let env =
            env_marker(segment).unwrap_or_else(|| console.fail(&format!("{what}: no env marker")));
        assert_eq!(
            env.get("BOOT_B_LEFT").map(String::as_str),
            Some("3"),
            "{what}: {env:?}"
        );
        assert!(
            env.get("BOOT_ORDER").is_some_and(|o| o.starts_with('B')),
            "{what}: {env:?}"
        );
        assert_eq!(
            env.get("SEESAW_FLOOR"),
            Some(&security_version("2.0.0").to_string()),
            "{what}: the floor is the committed bundle's security version: {env:?}"
        );
        assert_eq!(env, committed_env(), "{what}");
        let status = status_markers(segment)
            .pop()
            .unwrap_or_else(|| console.fail(&format!("{what}: no status")));
        assert_committed_status(&status, &what);
    }

    // Read on the host after the power-off: the same.
    assert_eq!(board.env(), committed_env());
    let state = board.state();
    assert_eq!(state["floor"], security_version("2.0.0"), "{state:#}");
    assert!(state["pending"].is_null(), "{state:#}");
    // A delta from slot A: the block index and only some frames of the
    // block store, far less than the full payload.
    assert!(committed.index_requests >= 1);
    assert_eq!(committed.payload_requests, 0);
    let (fetched, payload) = (committed.fetched, committed.payload);
    eprintln!(
        "{}: the delta install fetched {fetched} bytes (full payload {payload})",
        kind.tag()
    );
    assert!(fetched * 4 < payload, "{fetched} of {payload} bytes");
    scenario_time(kind, "1 update and commit", started);
}

fn health_failure_rolls_back_on(kind: Kind) {
    let bed = testbed(kind);
    let started = Instant::now();
    let server = bed.server();
    let mut board = Board::new(
        kind,
        "2-health-failure",
        Some(&url_for_guest(&server, "2.1.0")),
        0,
    );
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
    scenario_time(kind, "2 health failure", started);
}

fn hung_slot_watchdog_rolls_back_on(kind: Kind) {
    let bed = testbed(kind);
    let started = Instant::now();
    let server = bed.server();
    let mut board = Board::new(
        kind,
        "3-hung-slot",
        Some(&url_for_guest(&server, "2.2.0")),
        0,
    );
    let console = board.power_on(|_| false);
    assert!(console.exited);
    expect_in_order(
        &console,
        &[
            "seesaw: booting slot A (tries left 2)",
            "SEESAW-QEMU: install result 0 ",
            "SEESAW-QEMU: rebooting",
            // Each B boot ends in the simulated crash, or earlier if the
            // machine is so loaded that the watchdog fires first: either
            // way only the watchdog ends it.
            "seesaw: booting slot B (tries left 2)",
            "seesaw: booting slot B (tries left 1)",
            "seesaw: booting slot B (tries left 0)",
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
    let panics = count("] Kernel panic - not syncing");
    assert!(
        panics <= 3 && panics == count("SEESAW-QEMU: kernel panic before seesaw confirms"),
        "{panics} panics: {}",
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
    scenario_time(kind, "3 hung slot", started);
}

fn power_cut_during_install_resumes_on(kind: Kind) {
    let bed = testbed(kind);
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
        kind,
        "4-power-cut",
        Some(&one_file_url_for_guest(&server, "2.0.0")),
        0,
    );
    let cut_at = payload_size * 2 / 5;
    let console = board.power_on(|_| server.body_bytes_sent() > cut_at);
    assert!(!console.exited, "the install finished before the power cut");
    console.expect("SEESAW-QEMU: install started https://10.0.2.2:");
    assert!(!console.has("SEESAW-QEMU: install result"));
    let before = server.body_bytes_sent();
    eprintln!(
        "{}: power cut after {before} of {payload_size} payload bytes were sent",
        kind.tag()
    );
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
    eprintln!(
        "{}: the resumed install fetched {resumed} payload bytes",
        kind.tag()
    );
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
    scenario_time(kind, "4 power cut", started);
}

/// A small deterministic generator for the cut delays (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Power cuts in U-Boot's own write of the environment, in the full chain:
/// the committed board scenario 1 leaves (B first, 2.0.0 committed) is
/// powered on [`CUT_TRIALS`] times with its disk throttled and killed
/// (SIGKILL) at a seeded random moment after the boot script's
/// `seesaw: writing <file> (flag <hh>)`; each cut is followed by a full
/// boot to userspace. After every cut the copy in force is untouched, the
/// FAT is sound and the pair reads as the state before the write or the
/// one written, B first either way; the next boot picks B, seesaw still
/// reports the commit, and both copies are valid again.
#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn write_power_cut_in_uboot_keeps_the_commit() {
    const CUT_TRIALS: u64 = 4;
    /// The cuts spread over this long after the marker: the copy lands at
    /// about 0.45 s, the FAT and directory updates end at about 1 s.
    const CUT_WINDOW_MS: u64 = 1200;
    let started = Instant::now();
    let committed = CommittedRun::get(Kind::X86);
    let own_part = Instant::now();
    let mut board = Board::copy_of(Kind::X86, "5-env-write-power-cut", &committed.board.disk);
    assert_eq!(board.env(), committed_env(), "the board scenario 1 left");

    let seed = std::env::var("SEESAW_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("boot chain: environment write power cuts: seed {seed} (SEESAW_CUT_SEED={seed} repeats the delays)");
    let mut rng = Rng(seed);
    // Trial i cuts in one of CUT_TRIALS equal parts of the window, each
    // part once, in an order the seed decides, at a point in it the seed
    // decides.
    let part = CUT_WINDOW_MS / CUT_TRIALS;
    let mut parts: Vec<u64> = (0..CUT_TRIALS).collect();
    for i in (1..parts.len()).rev() {
        parts.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let (mut old_states, mut new_states) = (0, 0);
    for (trial, p) in parts.into_iter().enumerate() {
        let delay = Duration::from_millis(p * part + rng.next() % part);
        let before = board.env_copies();
        let in_force_before = board.env();
        let cut = board.run_qemu(
            Stop::After {
                marker: "seesaw: writing ",
                delay,
            },
            true,
        );
        let (after_marker, line) = cut.cut_after_marker.clone().unwrap();
        let why = format!(
            "trial {trial} (seed {seed}): cut {} ms after {line:?}",
            after_marker.as_millis()
        );
        let file = line
            .strip_prefix("seesaw: writing ")
            .and_then(|l| l.split_once(" (flag "))
            .map(|(f, _)| f)
            .unwrap_or_else(|| cut.fail(&format!("{why}: not a write marker")));
        let target = ENV_FILES
            .iter()
            .position(|f| *f == file)
            .unwrap_or_else(|| cut.fail(&format!("{why}: writes {file}")));
        let booting = cut.has("seesaw: booting slot");

        // Right after the cut: the copy in force is as it was, the FAT is
        // sound, the pair is the state before or the one being written.
        board.check_fat();
        let after = board.env_copies();
        assert!(
            after[1 - target] == before[1 - target],
            "{why}: the copy in force, {}, changed",
            ENV_FILES[1 - target]
        );
        let target_state = if after[target] == before[target] {
            "untouched"
        } else if board.env_copy_alone(&after[target]).is_some() {
            "complete"
        } else {
            "torn"
        };
        let env = board.env();
        let mut written = in_force_before.clone();
        written.insert("BOOT_B_LEFT".into(), "2".into());
        let state = if env == in_force_before {
            old_states += 1;
            "the state before the write"
        } else if env == written {
            new_states += 1;
            "the state written"
        } else {
            panic!("{why}: the pair reads as neither the state before the write nor the one written: {env:?}")
        };
        assert!(
            env["BOOT_ORDER"].starts_with('B'),
            "{why}: B is not first: {env:?}"
        );
        eprintln!(
            "boot chain: {why}: {file} {target_state}{}, the pair reads as {state}",
            if booting {
                ", U-Boot already booting"
            } else {
                ""
            }
        );

        // The next power-on boots the committed slot to userspace: one
        // boot, B, taking one of the tries in force; seesaw still reports
        // the commit and gives the try back.
        let left: u32 = env["BOOT_B_LEFT"].parse().unwrap();
        let console = board.power_on(|_| false);
        assert!(console.exited, "{why}");
        assert_eq!(
            console.boots(),
            [format!("seesaw: booting slot B (tries left {})", left - 1)],
            "{why}: {}",
            console.log.display()
        );
        console.expect("SEESAW-QEMU: booted slot B image 2.0.0");
        let segment = &console.boot_segments()[0];
        assert_eq!(
            env_marker(segment).as_ref(),
            Some(&committed_env()),
            "{why}: the pair once seesaw started"
        );
        assert_committed_status(&console.last_status(), &why);
        assert_eq!(
            board.env(),
            committed_env(),
            "{why}: the pair after the boot"
        );
        // U-Boot rewrote one copy and seesaw the other: the pair is whole.
        for (name, bytes) in ENV_FILES.iter().zip(board.env_copies()) {
            let alone = board
                .env_copy_alone(&bytes)
                .unwrap_or_else(|| panic!("{why}: {name} is not valid after the boot"));
            assert_eq!(alone["BOOT_ORDER"], "B A", "{why}: {name}: {alone:?}");
            assert_eq!(
                alone["SEESAW_FLOOR"],
                committed_env()["SEESAW_FLOOR"],
                "{why}: {name}: {alone:?}"
            );
        }
    }
    eprintln!(
        "boot chain: {CUT_TRIALS} power cuts (seed {seed}): {old_states} left the state before the write, {new_states} the state written"
    );
    let state = board.state();
    assert_eq!(state["floor"], security_version("2.0.0"), "{state:#}");
    assert_eq!(state["last_result"]["kind"], "committed", "{state:#}");
    if own_part - started > Duration::from_secs(1) {
        eprintln!(
            "boot chain: scenario 5 made scenario 1's board first; {:.1} s without that",
            own_part.elapsed().as_secs_f64()
        );
    }
    scenario_time(Kind::X86, "5 power cuts in U-Boot's write", started);
}

/// The board scripts' refusals in the board's real U-Boot, each on a fresh
/// board whose `boot.scr` is a wrapper that loads the shipped script
/// (`seesaw-boot.scr`), sets what the case needs and sources it:
///
/// - booted from the second USB disk (`devtype=usb devnum=1`): the root
///   default follows the boot device (`root=/dev/sdb2`), not `mmcblk0`;
///   the board has no USB, so the boot of A fails and the script resets;
/// - booted from a device type the script has no default for (`ubi`):
///   the script says so and returns before it takes a try: nothing
///   booted, no `saveenv`, both environment copies untouched;
/// - a kernel longer than the gap to the initramfs (`ramdisk_addr_r` 1 MiB
///   above `kernel_addr_r`): refused with its size and the gap, nothing
///   loaded over it, the boot of the slot fails.
fn script_refusals_on(kind: Kind) {
    let bed = testbed(kind);
    let started = Instant::now();
    struct Case {
        name: &'static str,
        presets: &'static str,
        expect: &'static [&'static str],
        stop: &'static str,
    }
    let cases = [
        Case {
            name: "0-script-usb-disk",
            presets: "devtype=usb\ndevnum=1",
            expect: &[
                "seesaw: booting slot A (tries left 2)",
                "root=/dev/sdb2 rootfstype=ext4",
                "seesaw: boot of slot A failed, resetting",
            ],
            stop: "seesaw: boot of slot A failed, resetting",
        },
        Case {
            name: "0-script-unknown-device",
            presets: "devtype=ubi\ndevnum=0",
            expect: &[
                "seesaw: no default root device for ubi 0: preset seesaw_root_A and seesaw_root_B",
                "seesaw-test: script returned",
            ],
            stop: "seesaw-test: script returned",
        },
        Case {
            name: "0-script-kernel-too-big",
            presets: "setenv ramdisk_addr_r 0x40500000",
            expect: &[
                "seesaw: booting slot A (tries left 2)",
                // "seesaw: kernel /boot/Image of slot A is 0x<size> bytes, ..."
                "bytes, more than the 0x100000 from 0x40400000 to 0x40500000: move the load addresses apart",
                "seesaw: boot of slot A failed, resetting",
            ],
            stop: "seesaw: boot of slot A failed, resetting",
        },
    ];
    for case in cases {
        let mut board = Board::new(kind, case.name, None, 0);
        let before = board.uboot_env_bytes();
        let wrapper = board.dir.join("wrapper.cmd");
        std::fs::write(
            &wrapper,
            format!(
                "load ${{devtype}} ${{devnum}}:${{distro_bootpart}} 0x48000000 /seesaw-boot.scr\n\
                 {}\n\
                 source 0x48000000\n\
                 echo \"seesaw-test: script returned\"\n",
                case.presets
            ),
        )
        .unwrap();
        let wrapper_scr = board.dir.join("wrapper.scr");
        run(Command::new("mkimage")
            .args(["-A", "arm64", "-T", "script", "-C", "none", "-d"])
            .arg(&wrapper)
            .arg(&wrapper_scr));
        board.put_fat_file(&bed.boot_scr, "seesaw-boot.scr");
        board.put_fat_file(&wrapper_scr, "boot.scr");
        // Also at U-Boot's prompt (every boot target tried) or after 3
        // minutes: the expectations below then say what is missing.
        let run_started = Instant::now();
        let mut stop = |text: &str| {
            text.contains(case.stop)
                || text.contains("\n=> ")
                || run_started.elapsed() > Duration::from_secs(180)
        };
        let console = board.run_qemu(Stop::When(&mut stop), false);
        expect_lines_in_order(&console, case.expect);
        assert!(
            !console.lines().any(|l| l.contains("Starting kernel")),
            "{}: a kernel was started: {}",
            case.name,
            console.log.display()
        );
        if case.name == "0-script-unknown-device" {
            assert!(
                !console
                    .lines()
                    .any(|l| l.contains("seesaw: booting slot") || l.contains("Saving Environment")),
                "{}: the script took a try or saved: {}",
                case.name,
                console.log.display()
            );
            assert_eq!(
                board.uboot_env_bytes(),
                before,
                "{}: the environment copies changed",
                case.name
            );
        }
    }
    scenario_time(kind, "0 boot script refusals", started);
}

// The x86_64 board (tests/qemu-boot-chain.sh).

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn update_and_commit() {
    update_and_commit_on(Kind::X86);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn health_failure_rolls_back() {
    health_failure_rolls_back_on(Kind::X86);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn hung_slot_watchdog_rolls_back() {
    hung_slot_watchdog_rolls_back_on(Kind::X86);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-boot-chain.sh"]
fn power_cut_during_install_resumes() {
    power_cut_during_install_resumes_on(Kind::X86);
}

// The arm64 boards (tests/qemu-arm64-boot-chain.sh): the Raspberry Pi and
// i.MX boot scripts as shipped, in U-Boot built for the board.

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_rpi_boot_script_refusals() {
    script_refusals_on(Kind::Rpi);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_rpi_update_and_commit() {
    update_and_commit_on(Kind::Rpi);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_rpi_health_failure_rolls_back() {
    health_failure_rolls_back_on(Kind::Rpi);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_rpi_hung_slot_watchdog_rolls_back() {
    hung_slot_watchdog_rolls_back_on(Kind::Rpi);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_rpi_power_cut_during_install_resumes() {
    power_cut_during_install_resumes_on(Kind::Rpi);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_imx_boot_script_refusals() {
    script_refusals_on(Kind::Imx);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_imx_update_and_commit() {
    update_and_commit_on(Kind::Imx);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_imx_health_failure_rolls_back() {
    health_failure_rolls_back_on(Kind::Imx);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_imx_hung_slot_watchdog_rolls_back() {
    hung_slot_watchdog_rolls_back_on(Kind::Imx);
}

#[test]
#[ignore = "boots QEMU for minutes: run by tests/qemu-arm64-boot-chain.sh"]
fn arm64_imx_power_cut_during_install_resumes() {
    power_cut_during_install_resumes_on(Kind::Imx);
}

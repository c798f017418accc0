//! Runs `bootloader-scripts/env-file/boot.cmd` in real U-Boot (Debian
//! `u-boot-qemu`, `qemu-x86/u-boot.rom`) under QEMU and checks the slot it
//! chooses and the redundant environment pair (`seesaw.env`,
//! `seesaw-redund.env`) it writes back.
//!
//! The disk image is built without root: an MBR with one FAT partition
//! holding `boot.scr` and (unless the case says otherwise) the two copies,
//! made by the real `fw_setenv` with a two-line `fw_env.config`. The copies
//! sit in fragmented cluster chains (every other 2 KiB cluster), so U-Boot's
//! in-place `fatwrite` of a copy is one disk write per cluster, as on a boot
//! partition that has seen some use; that is what lets the power-cut case
//! stop QEMU in the middle of a copy. There are no slot partitions and no
//! kernel: the script prints its marker, writes the environment, fails to
//! load the kernel, prints its failure marker and resets; QEMU runs with
//! `-no-reboot`, so that reset ends the run. Afterwards both copies are
//! copied out with `mcopy` and read with the real `fw_printenv`.
//!
//! Needs `qemu-system-x86_64`, `u-boot-qemu`, `u-boot-tools`, `mtools`,
//! `dosfstools`, `fdisk`, `libubootenv-tool` (tests/qemu-packages.sh installs
//! them). A missing tool fails the test; it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const UBOOT_ROM: &str = "/usr/lib/u-boot/qemu-x86/u-boot.rom";
const ENV_SIZE: usize = 0x4000;
/// Offset of the data in a redundant copy: CRC32 (4 bytes), flag (1 byte).
const DATA_OFFSET: usize = 5;
const FAT_OFFSET: u64 = 1024 * 1024;
const FAT_KIB: u64 = 16 * 1024;
/// Cluster size of the FAT (`mkfs.vfat -s 4`: four 512-byte sectors).
const CLUSTER: usize = 2048;
/// The two copies, as `bootloader-scripts/env-file/fw_env.config` names them.
const FILES: [&str; 2] = ["seesaw.env", "seesaw-redund.env"];
/// Hard limit for one QEMU run (a run takes about 1-3 s; the margin is for a
/// loaded 2-core machine).
const QEMU_TIMEOUT: Duration = Duration::from_secs(120);
const INSTALL_HINT: &str =
    "run tests/qemu-packages.sh (apt-get install qemu-system-x86 u-boot-qemu \
                            u-boot-tools mtools dosfstools fdisk libubootenv-tool)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "`{name}` not found in PATH: {INSTALL_HINT}");
    Command::new(name)
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

// ------------------------------------------------------------------------
// The redundant block format, to look at what U-Boot wrote (which copy,
// which flag) and to make copies with chosen flags. What the pair MEANS is
// always asked of the real fw_printenv.
// ------------------------------------------------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One copy in the redundant format: CRC32 (LE) of bytes 5.., the flag,
/// then `NAME=value\0` pairs and zeros.
fn encode_copy(flag: u8, vars: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![0u8; ENV_SIZE];
    let mut pos = DATA_OFFSET;
    for (name, value) in vars {
        let entry = format!("{name}={value}");
        block[pos..pos + entry.len()].copy_from_slice(entry.as_bytes());
        pos += entry.len() + 1;
    }
    block[4] = flag;
    let crc = crc32(&block[DATA_OFFSET..]);
    block[..4].copy_from_slice(&crc.to_le_bytes());
    block
}

/// The flag of a copy whose size and CRC are right, else None.
fn valid_flag(bytes: &[u8]) -> Option<u8> {
    if bytes.len() != ENV_SIZE {
        return None;
    }
    let stored = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    (stored == crc32(&bytes[DATA_OFFSET..])).then_some(bytes[4])
}

/// What goes into one of the two files before the boot.
#[derive(Clone)]
enum Copy {
    Absent,
    Bytes(Vec<u8>),
}

/// The pair of copies on the boot partition.
struct Pair {
    copies: [Copy; 2],
}

impl Pair {
    fn absent() -> Pair {
        Pair {
            copies: [Copy::Absent, Copy::Absent],
        }
    }

    /// Both copies from a history of writes by the real `fw_setenv`
    /// (`fw_setenv -s`, one call per step, each step's variables in ONE
    /// write, as the daemon does): starting from two zeroed files, each
    /// write goes to the copy not in force with the flag one up, so after
    /// two or more steps both copies are valid and the last step is the
    /// one in force.
    fn history(steps: &[&[(&str, &str)]]) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let paths = FILES.map(|f| dir.path().join(f));
        for p in &paths {
            std::fs::write(p, vec![0u8; ENV_SIZE]).unwrap();
        }
        let cfg = fw_config(dir.path(), &paths);
        let empty_default = dir.path().join("empty-default.env");
        std::fs::write(&empty_default, b"").unwrap();
        let mut expected = BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            let mut cmd = tool("fw_setenv");
            cmd.arg("-c").arg(&cfg);
            if i == 0 {
                // The empty default environment lets the first write start
                // from nothing (no valid copy yet).
                cmd.arg("-f").arg(&empty_default);
            }
            if let [(name, value)] = step {
                // One variable on the command line (fw_setenv -s reads
                // lines of at most 2 KiB).
                cmd.arg(name).arg(value);
            } else {
                let script = dir.path().join(format!("step{i}"));
                let text: String = step.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                std::fs::write(&script, text).unwrap();
                cmd.arg("-s").arg(&script);
            }
            run(&mut cmd);
            for (k, v) in step.iter() {
                expected.insert(k.to_string(), v.to_string());
            }
        }
        assert_eq!(
            parse_env(&run(tool("fw_printenv").arg("-c").arg(&cfg))),
            expected,
            "fw_setenv history"
        );
        Pair {
            copies: paths.map(|p| Copy::Bytes(std::fs::read(p).unwrap())),
        }
    }

    /// Both copies valid and equal in content: the same variables written
    /// twice.
    fn written(vars: &[(&str, &str)]) -> Pair {
        Pair::history(&[vars, vars])
    }

    fn with(mut self, index: usize, copy: Copy) -> Pair {
        self.copies[index] = copy;
        self
    }

    fn bytes(&self, index: usize) -> &[u8] {
        match &self.copies[index] {
            Copy::Bytes(b) => b,
            Copy::Absent => panic!("copy {index} is absent"),
        }
    }

    /// The copy in force by libubootenv's rule (the real fw_printenv is the
    /// judge; this only names which file that is).
    fn in_force(&self) -> Option<usize> {
        let flags: Vec<Option<u8>> = (0..2)
            .map(|i| match &self.copies[i] {
                Copy::Bytes(b) => valid_flag(b),
                Copy::Absent => None,
            })
            .collect();
        match (flags[0], flags[1]) {
            (None, None) => None,
            (Some(_), None) => Some(0),
            (None, Some(_)) => Some(1),
            (Some(0xff), Some(0)) => Some(1),
            (Some(0), Some(0xff)) => Some(0),
            (Some(a), Some(b)) => Some(if b > a { 1 } else { 0 }),
        }
    }
}

/// A libubootenv configuration naming the two copies.
fn fw_config(dir: &Path, copies: &[PathBuf; 2]) -> PathBuf {
    let cfg = dir.join("fw_env.config");
    let text: String = copies
        .iter()
        .map(|p| format!("{} 0x0 {ENV_SIZE:#x}\n", p.display()))
        .collect();
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn vars(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn contract(order: &str, a: &str, b: &str) -> BTreeMap<String, String> {
    vars(&[
        ("BOOT_ORDER", order),
        ("BOOT_A_LEFT", a),
        ("BOOT_B_LEFT", b),
    ])
}

// ------------------------------------------------------------------------
// Disk and QEMU
// ------------------------------------------------------------------------

struct Disk {
    dir: tempfile::TempDir,
}

/// How a QEMU run ends.
enum Stop {
    /// U-Boot resets (the script's own end), ending QEMU.
    Reset,
    /// SIGKILL this long after the console shows the marker that precedes
    /// the environment write, with the disk's writes slowed down by QEMU's
    /// I/O throttling so the cut lands in the write.
    CutAfter(String, Duration),
}

struct Run {
    console: String,
    /// False if QEMU was killed.
    finished: bool,
}

impl Disk {
    fn path(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }

    fn build(pair: &Pair) -> Disk {
        assert!(
            Path::new(UBOOT_ROM).is_file(),
            "{UBOOT_ROM} missing: {INSTALL_HINT}"
        );
        let disk = Disk {
            dir: tempfile::tempdir().unwrap(),
        };
        let d = disk.dir.path();

        let script = repo_root().join("bootloader-scripts/env-file/boot.cmd");
        let scr = d.join("boot.scr");
        run(tool("mkimage")
            .args(["-A", "x86", "-T", "script", "-C", "none", "-d"])
            .arg(&script)
            .arg(&scr));

        let fat = d.join("fat.img");
        run(tool("mkfs.vfat")
            .args(["-F", "16", "-s", "4", "-S", "512", "-C"])
            .arg(&fat)
            .arg(FAT_KIB.to_string()));
        let mcopy = |from: &Path, to: &str| {
            run(tool("mcopy").arg("-i").arg(&fat).arg(from).arg(to));
        };
        mcopy(&scr, "::boot.scr");

        // Fragment the free space: one-cluster files, every other one
        // deleted again, so each copy (and a copy U-Boot creates) gets a
        // chain of single clusters.
        let holes = 2 * ENV_SIZE / CLUSTER;
        let filler = d.join("filler");
        std::fs::write(&filler, vec![0x5au8; CLUSTER]).unwrap();
        for i in 0..2 * holes {
            mcopy(&filler, &format!("::fill{i:02}"));
        }
        for i in (0..2 * holes).step_by(2) {
            run(tool("mdel")
                .arg("-i")
                .arg(&fat)
                .arg(format!("::fill{i:02}")));
        }
        for (name, copy) in FILES.iter().zip(&pair.copies) {
            if let Copy::Bytes(bytes) = copy {
                let p = d.join(name);
                std::fs::write(&p, bytes).unwrap();
                mcopy(&p, &format!("::{name}"));
                std::fs::remove_file(&p).unwrap();
            }
        }

        // MBR: one bootable FAT16 (LBA) partition at 1 MiB.
        let img = disk.path();
        let fat_bytes = std::fs::read(&fat).unwrap();
        let total = FAT_OFFSET + fat_bytes.len() as u64 + FAT_OFFSET;
        std::fs::File::create(&img).unwrap().set_len(total).unwrap();
        let mut sfdisk = tool("sfdisk")
            .arg("-q")
            .arg(&img)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sfdisk");
        write!(
            sfdisk.stdin.take().unwrap(),
            "label: dos\nstart={}, size={}, type=e, bootable\n",
            FAT_OFFSET / 512,
            fat_bytes.len() / 512
        )
        .unwrap();
        let out = sfdisk.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sfdisk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(FAT_OFFSET)).unwrap();
        f.write_all(&fat_bytes).unwrap();
        f.sync_all().unwrap();
        disk
    }

    /// Boots the disk until U-Boot resets (which ends QEMU, as it runs with
    /// -no-reboot), returning the serial console without CRs.
    fn boot(&self) -> String {
        let r = self.run(Stop::Reset);
        assert!(r.finished);
        r.console
    }

    fn run(&self, stop: Stop) -> Run {
        let mut drive = format!("file={},if=virtio,format=raw", self.path().display());
        if let Stop::CutAfter(..) = stop {
            // 32 KiB/s: one 2 KiB cluster write every ~60 ms, so a copy's
            // 8 clusters take about half a second to reach the disk.
            drive.push_str(",throttling.bps-write=32768");
        }
        let mut child = tool("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-M",
                "pc",
                "-m",
                "512",
                "-nographic",
                "-nic",
                "none",
                "-no-reboot",
            ])
            // No display adapter, as in boot_chain_qemu.rs: with QEMU's
            // default VGA this U-Boot hangs in its video set-up after
            // "Loading Environment from nowhere" in about one start in thirty.
            .args(["-vga", "none"])
            .args(["-bios", UBOOT_ROM])
            .arg("-drive")
            .arg(drive)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).replace('\r', "");
                        if tx.send(text).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let start = Instant::now();
        let mut console = String::new();
        let mut killed = false;
        let status = loop {
            while let Ok(line) = rx.try_recv() {
                let hit =
                    matches!(&stop, Stop::CutAfter(marker, _) if line.contains(marker.as_str()));
                console.push_str(&line);
                if hit && !killed {
                    if let Stop::CutAfter(_, delay) = &stop {
                        std::thread::sleep(*delay);
                    }
                    // Child::kill sends SIGKILL: QEMU gets no chance to
                    // flush anything, like a power cut.
                    let _ = child.kill();
                    killed = true;
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > QEMU_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = reader.join();
        while let Ok(line) = rx.try_recv() {
            console.push_str(&line);
        }
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        match status {
            None => {
                panic!("QEMU did not finish within {QEMU_TIMEOUT:?}; console:\n{console}\n{stderr}")
            }
            Some(s) if !killed && !s.success() => {
                panic!("QEMU failed ({s}): {stderr}\nconsole:\n{console}")
            }
            Some(_) => {}
        }
        if let Stop::CutAfter(marker, _) = stop {
            assert!(
                killed,
                "the run ended without the marker {marker:?}:\n{console}"
            );
        }
        Run {
            console,
            finished: !killed,
        }
    }

    /// The two files as U-Boot left them (None: not there).
    fn copies_after(&self) -> [Option<Vec<u8>>; 2] {
        FILES.map(|name| {
            let out = self.dir.path().join(format!("{name}.out"));
            let _ = std::fs::remove_file(&out);
            let status = tool("mcopy")
                .arg("-n")
                .arg("-i")
                .arg(format!("{}@@{FAT_OFFSET}", self.path().display()))
                .arg(format!("::{name}"))
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            status.success().then(|| std::fs::read(&out).unwrap())
        })
    }

    /// The pair as U-Boot left it, read by the real fw_printenv; both files
    /// must be there at full size.
    fn env_after_boot(&self) -> BTreeMap<String, String> {
        let copies = self.copies_after();
        let paths = FILES.map(|name| self.dir.path().join(format!("{name}.out")));
        for (name, copy) in FILES.iter().zip(&copies) {
            let copy = copy
                .as_ref()
                .unwrap_or_else(|| panic!("{name} missing after the boot"));
            assert_eq!(copy.len(), ENV_SIZE, "{name} size");
        }
        let cfg = fw_config(self.dir.path(), &paths);
        parse_env(&run(tool("fw_printenv").arg("-c").arg(&cfg)))
    }

    /// The FAT file system passes `fsck.fat -n` (read-only check).
    fn check_fat(&self) {
        let part = self.dir.path().join("fat.after");
        let mut from = std::fs::File::open(self.path()).unwrap();
        from.seek(SeekFrom::Start(FAT_OFFSET)).unwrap();
        let mut to = std::fs::File::create(&part).unwrap();
        std::io::copy(&mut from.take(FAT_KIB * 1024), &mut to).unwrap();
        run(tool("fsck.fat").arg("-n").arg(&part));
    }
}

/// The `seesaw: ...` lines of the console.
fn markers(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.find("seesaw: ").map(|i| l[i..].trim_end().to_owned()))
        .collect()
}

fn invalid_marker(index: usize) -> String {
    format!(
        "seesaw: environment copy {} missing or invalid",
        FILES[index]
    )
}

const DEFAULTS_MARKER: &str = "seesaw: no valid environment copy, using defaults";

/// Expects exactly one "booting" marker for `slot` with `left`, a command
/// line naming the slot and its root, and the failure marker (there is no
/// kernel).
fn expect_boot(console: &str, slot: &str, left: &str) {
    let m = markers(console);
    let booting: Vec<&String> = m
        .iter()
        .filter(|l| l.starts_with("seesaw: booting slot"))
        .collect();
    assert_eq!(
        booting,
        vec![&format!("seesaw: booting slot {slot} (tries left {left})")],
        "markers: {m:#?}\nconsole:\n{console}"
    );
    let root = if slot == "A" {
        "/dev/vda2"
    } else {
        "/dev/vda3"
    };
    let args = m
        .iter()
        .find(|l| l.starts_with("seesaw: bootargs "))
        .unwrap_or_else(|| panic!("no bootargs marker: {m:#?}"));
    assert!(
        args.contains(&format!(" seesaw.slot={slot}")) && args.contains(&format!(" root={root} ")),
        "{args}"
    );
    assert!(
        m.contains(&format!("seesaw: boot of slot {slot} failed, resetting")),
        "no failure marker: {m:#?}"
    );
    assert!(!m.iter().any(|l| l.contains("WARNING")), "{m:#?}");
}

/// The console says both copies were valid.
fn expect_both_valid(console: &str) {
    let m = markers(console);
    assert!(
        !m.iter().any(|l| l.contains("missing or invalid")) && !m.contains(&DEFAULTS_MARKER.into()),
        "{m:#?}"
    );
}

/// U-Boot wrote exactly the copy that was not in force, with the flag one
/// above the one in force, and left the copy in force untouched.
fn expect_wrote_older_copy(before: &Pair, disk: &Disk, console: &str) {
    let current = before.in_force().expect("a copy in force before the boot");
    let other = 1 - current;
    let after = disk.copies_after();
    let current_after = after[current].as_ref().expect("copy in force kept");
    assert_eq!(
        current_after.as_slice(),
        before.bytes(current),
        "{} (in force) must not be rewritten",
        FILES[current]
    );
    let flag_before = valid_flag(before.bytes(current)).unwrap();
    let written = after[other].as_ref().expect("older copy written");
    let flag = flag_before.wrapping_add(1);
    assert_eq!(
        valid_flag(written),
        Some(flag),
        "{} must be written valid with flag {flag:#04x}",
        FILES[other]
    );
    assert!(
        markers(console).contains(&format!(
            "seesaw: writing {} (flag {flag:02x})",
            FILES[other]
        )),
        "{:#?}",
        markers(console)
    );
}

const A_B_3_3: &[(&str, &str)] = &[
    ("BOOT_ORDER", "A B"),
    ("BOOT_A_LEFT", "3"),
    ("BOOT_B_LEFT", "3"),
];
/// The install of slot B (running A) as the daemon writes it: one write.
const INSTALL_B: &[(&str, &str)] = &[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "3")];

// ------------------------------------------------------------------------
// The boot contract, on a pair of valid copies
// ------------------------------------------------------------------------

#[test]
fn fresh_a_b_3_3_boots_a() {
    let pair = Pair::written(A_B_3_3);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    expect_both_valid(&console);
    expect_boot(&console, "A", "2");
    expect_wrote_older_copy(&pair, &disk, &console);
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));

    // The next boot reads the copy just written (it is newer now) and
    // writes the other one.
    let console = disk.boot();
    expect_both_valid(&console);
    expect_boot(&console, "A", "1");
    assert_eq!(disk.env_after_boot(), contract("A B", "1", "3"));
}

#[test]
fn b_first_with_one_try_boots_b_and_uses_it_up() {
    let pair = Pair::written(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "1"),
    ]);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    expect_boot(&console, "B", "0");
    expect_wrote_older_copy(&pair, &disk, &console);
    assert_eq!(disk.env_after_boot(), contract("B A", "3", "0"));
}

#[test]
fn b_out_of_tries_falls_back_to_a() {
    let pair = Pair::written(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ]);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    expect_boot(&console, "A", "2");
    assert_eq!(disk.env_after_boot(), contract("B A", "2", "0"));
}

#[test]
fn install_written_by_fw_setenv_boots_the_new_slot() {
    // A B 3 3, then the install of B in one write: the older copy still
    // says A B. Only the newer one may count.
    let pair = Pair::history(&[A_B_3_3, INSTALL_B]);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    expect_both_valid(&console);
    expect_boot(&console, "B", "2");
    expect_wrote_older_copy(&pair, &disk, &console);
    assert_eq!(disk.env_after_boot(), contract("B A", "3", "2"));
}

#[test]
fn unset_counter_counts_as_three() {
    // An install writes BOOT_ORDER and the new slot's counter; an unset
    // counter of the other slot defaults to 3.
    let pair = Pair::written(INSTALL_B);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    expect_boot(&console, "B", "2");
    assert_eq!(disk.env_after_boot(), contract("B A", "3", "2"));
}

#[test]
fn all_out_of_tries_resets_counters_then_boots_again() {
    let pair = Pair::written(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "0"),
        ("BOOT_B_LEFT", "0"),
    ]);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    let m = markers(&console);
    assert!(
        m.contains(
            &"seesaw: no slot has tries left, resetting BOOT_A_LEFT=3 BOOT_B_LEFT=3".to_owned()
        ),
        "{m:#?}\n{console}"
    );
    assert!(
        !m.iter().any(|l| l.starts_with("seesaw: booting slot")),
        "{m:#?}"
    );
    expect_wrote_older_copy(&pair, &disk, &console);
    assert_eq!(disk.env_after_boot(), contract("A B", "3", "3"));

    // The reset ended the run; the next power-on boots A again.
    let console = disk.boot();
    expect_boot(&console, "A", "2");
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));
}

#[test]
fn only_whitelisted_variables_are_imported() {
    let pair = Pair::written(&[
        ("bootargs", "init=/bin/evil"),
        ("bootcmd", "echo INJECTED-BOOTCMD"),
        ("seesaw_root_B", "/dev/evil"),
        ("seesaw_env_file_redund", "evil.env"),
        ("BOOT_ORDER", "X; echo INJECTED-ORDER; B A"),
        ("BOOT_B_LEFT", "3"),
        ("SEESAW_FLOOR", "5"),
    ]);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    assert!(
        !console.contains("INJECTED-ORDER\n") && !console.contains("evil"),
        "{console}"
    );
    expect_boot(&console, "B", "2");
    // The rewritten copy holds the whitelisted variables only.
    let mut expected = contract("X; echo INJECTED-ORDER; B A", "3", "2");
    expected.insert("SEESAW_FLOOR".into(), "5".into());
    assert_eq!(disk.env_after_boot(), expected);
}

#[test]
fn seesaw_floor_survives_a_boot() {
    let mut list = A_B_3_3.to_vec();
    list.push(("SEESAW_FLOOR", "42"));
    let pair = Pair::written(&list);
    let disk = Disk::build(&pair);
    let console = disk.boot();
    expect_boot(&console, "A", "2");
    let mut expected = contract("A B", "2", "3");
    expected.insert("SEESAW_FLOOR".into(), "42".into());
    assert_eq!(disk.env_after_boot(), expected);
    // In the copy U-Boot wrote, not only in the one it left alone.
    let written = disk.copies_after()[1 - pair.in_force().unwrap()]
        .clone()
        .unwrap();
    assert!(
        written
            .windows(b"SEESAW_FLOOR=42\0".len())
            .any(|w| w == b"SEESAW_FLOOR=42\0"),
        "SEESAW_FLOOR not in the written copy"
    );
}

#[test]
fn flag_wraps_from_255_to_0() {
    // seesaw.env has flag 255 (newer than seesaw-redund.env's 254); the
    // write gives seesaw-redund.env flag 0, which then counts as newer
    // than 255, for fw_printenv and for U-Boot's next boot.
    let pair = Pair {
        copies: [
            Copy::Bytes(encode_copy(0xff, INSTALL_B)),
            Copy::Bytes(encode_copy(0xfe, A_B_3_3)),
        ],
    };
    let disk = Disk::build(&pair);
    let console = disk.boot();
    expect_both_valid(&console);
    expect_boot(&console, "B", "2");
    expect_wrote_older_copy(&pair, &disk, &console);
    assert_eq!(disk.env_after_boot(), contract("B A", "3", "2"));

    let console = disk.boot();
    expect_boot(&console, "B", "1");
    let after = disk.copies_after();
    assert_eq!(valid_flag(after[0].as_ref().unwrap()), Some(1));
    assert_eq!(disk.env_after_boot(), contract("B A", "3", "1"));
}

// ------------------------------------------------------------------------
// Lost copies
// ------------------------------------------------------------------------

fn garbage(seed: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; ENV_SIZE];
    let mut x = seed;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    bytes
}

/// A copy torn by a write that stopped after its first cluster: the head
/// of a newer block (its CRC and flag) over the rest of an older one.
fn torn(newer: &[u8], older: &[u8]) -> Vec<u8> {
    let mut bytes = older.to_vec();
    bytes[..CLUSTER].copy_from_slice(&newer[..CLUSTER]);
    bytes
}

/// `index` is the copy in force of an install history (B A); it is lost;
/// the other copy (A B 3 3) must be used, by fw_printenv and by U-Boot,
/// and U-Boot rewrites the lost one.
fn lost_copy_uses_the_other(index: usize, lost: impl Fn(&Pair) -> Copy) {
    // Two steps put the install in seesaw.env; three put it in
    // seesaw-redund.env.
    let pair = if index == 0 {
        Pair::history(&[A_B_3_3, INSTALL_B])
    } else {
        Pair::history(&[A_B_3_3, A_B_3_3, INSTALL_B])
    };
    assert_eq!(pair.in_force(), Some(index));
    let copy = lost(&pair);
    let pair = pair.with(index, copy);
    assert_eq!(pair.in_force(), Some(1 - index));
    let disk = Disk::build(&pair);
    let console = disk.boot();
    let m = markers(&console);
    assert!(m.contains(&invalid_marker(index)), "{m:#?}");
    assert!(!m.contains(&invalid_marker(1 - index)), "{m:#?}");
    assert!(!m.contains(&DEFAULTS_MARKER.into()), "{m:#?}");
    expect_boot(&console, "A", "2");
    expect_wrote_older_copy(&pair, &disk, &console);
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));
}

#[test]
fn corrupt_first_copy_uses_the_second() {
    lost_copy_uses_the_other(0, |_| Copy::Bytes(garbage(0x1234_5678)));
}

#[test]
fn corrupt_second_copy_uses_the_first() {
    lost_copy_uses_the_other(1, |_| Copy::Bytes(garbage(0x0bad_cafe)));
}

#[test]
fn torn_first_copy_uses_the_second() {
    // Its flag is the newest, its CRC does not match.
    lost_copy_uses_the_other(0, |p| {
        Copy::Bytes(torn(&encode_copy(9, A_B_3_3), p.bytes(0)))
    });
}

#[test]
fn torn_second_copy_uses_the_first() {
    lost_copy_uses_the_other(1, |p| {
        Copy::Bytes(torn(&encode_copy(9, A_B_3_3), p.bytes(1)))
    });
}

#[test]
fn short_first_copy_uses_the_second() {
    // A file cut short (a write that ended early) is of the wrong size.
    lost_copy_uses_the_other(0, |p| Copy::Bytes(p.bytes(0)[..CLUSTER].to_vec()));
}

#[test]
fn missing_second_copy_uses_the_first_and_creates_it() {
    lost_copy_uses_the_other(1, |_| Copy::Absent);
}

/// Both copies lost: the defaults (A B, 3, 3) apply, slot A boots, and
/// U-Boot writes both copies so the pair is whole again.
fn both_lost_uses_defaults(pair: Pair) {
    let disk = Disk::build(&pair);
    let console = disk.boot();
    let m = markers(&console);
    let mut writes = Vec::new();
    for (i, name) in FILES.iter().enumerate() {
        assert!(m.contains(&invalid_marker(i)), "{m:#?}");
        let write = format!("seesaw: writing {name} (flag 00)");
        writes.push(
            m.iter()
                .position(|l| *l == write)
                .unwrap_or_else(|| panic!("{m:#?}")),
        );
    }
    assert!(writes[0] < writes[1], "seesaw.env is written first: {m:#?}");
    assert!(m.contains(&DEFAULTS_MARKER.into()), "{m:#?}\n{console}");
    expect_boot(&console, "A", "2");
    let after = disk.copies_after();
    for (name, copy) in FILES.iter().zip(&after) {
        assert_eq!(
            valid_flag(copy.as_ref().unwrap()),
            Some(0),
            "{name} written with flag 0"
        );
    }
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));

    // From there on it is an ordinary pair.
    let console = disk.boot();
    expect_both_valid(&console);
    expect_boot(&console, "A", "1");
    assert_eq!(disk.env_after_boot(), contract("A B", "1", "3"));
}

#[test]
fn absent_pair_boots_a_and_writes_both_copies() {
    both_lost_uses_defaults(Pair::absent());
}

#[test]
fn both_copies_corrupt_fall_back_to_defaults() {
    let pair = Pair::history(&[A_B_3_3, INSTALL_B])
        .with(0, Copy::Bytes(garbage(1)))
        .with(1, Copy::Bytes(garbage(2)));
    both_lost_uses_defaults(pair);
}

// ------------------------------------------------------------------------
// Power cut during U-Boot's own environment write
// ------------------------------------------------------------------------

/// A small deterministic generator for the cut delays (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn power_cut_during_the_environment_write_keeps_the_committed_slot() {
    // The committed state: B installed and committed (B A, B has 3 tries).
    // The older copy holds the state before the install (A B), so a cut
    // that made anything fall back to it, or to the defaults, would boot A.
    //
    // SEESAW_FLOOR is 15000 digits long here so that the block fills all
    // 8 clusters of a copy and the two blocks differ in every cluster (the
    // older one lacks BOOT_A_LEFT, so everything after it sits 14 bytes
    // further on): a cut between two of U-Boot's cluster writes then
    // leaves a copy that is really torn, new head and old tail, as a cut in
    // a full U-Boot environment would. With the few bytes of the contract
    // alone, the first cluster holds the whole block and a copy is only
    // ever untouched or complete.
    let floor = "7".repeat(15000);
    let pair = Pair::history(&[
        &[("SEESAW_FLOOR", &floor)],
        &[("BOOT_ORDER", "A B")],
        &[("BOOT_B_LEFT", "3")],
        &[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ],
    ]);
    let with_floor = |mut m: BTreeMap<String, String>| {
        m.insert("SEESAW_FLOOR".into(), floor.clone());
        m
    };
    let old = with_floor(contract("B A", "3", "3"));
    let new = with_floor(contract("B A", "3", "2"));
    let current = pair.in_force().unwrap();
    let target = 1 - current;

    let seed = std::env::var("SEESAW_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("power cut: seed {seed} (set SEESAW_CUT_SEED={seed} to repeat)");
    let mut rng = Rng(seed | 1);
    // The throttled write of a copy (8 clusters, then the directory entry)
    // takes about 0.45 s after the marker. Trial i cuts at a random point
    // of [75 i, 75 (i + 1)) ms, so the trials spread over the whole write
    // and a little past it, in an order the seed decides.
    const TRIALS: u64 = 8;
    const SLOT_MS: u64 = 75;
    let mut slots: Vec<u64> = (0..TRIALS).collect();
    for i in (1..slots.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        slots.swap(i, j);
    }
    let (mut cut_in_write, mut torn, mut got_new) = (0, 0, 0);
    for (trial, slot) in slots.into_iter().enumerate() {
        let delay = Duration::from_millis(slot * SLOT_MS + rng.next() % SLOT_MS);
        let why = format!("trial {trial} (seed {seed}, cut {delay:?} after the marker)");
        let disk = Disk::build(&pair);
        let cut = disk.run(Stop::CutAfter(
            format!("seesaw: writing {}", FILES[target]),
            delay,
        ));
        assert!(!cut.finished);
        let write_done = markers(&cut.console)
            .iter()
            .any(|l| l.starts_with("seesaw: booting slot"));
        if !write_done {
            cut_in_write += 1;
        }

        // The copy in force before the cut is untouched, the file system
        // is sound, and the pair reads as the old or the new state.
        disk.check_fat();
        let after = disk.copies_after();
        assert_eq!(
            after[current].as_deref(),
            Some(pair.bytes(current)),
            "{why}: the copy in force changed"
        );
        let target_state = match after[target].as_deref() {
            Some(b) if b == pair.bytes(target) => "untouched",
            Some(b) if valid_flag(b).is_some() => "complete",
            _ => {
                torn += 1;
                "torn"
            }
        };
        let env = disk.env_after_boot();
        let state = if env == new {
            got_new += 1;
            "new"
        } else {
            assert!(
                env == old,
                "{why}: the pair after the cut is neither the old nor the new state: {:?}",
                contract(&env["BOOT_ORDER"], &env["BOOT_A_LEFT"], &env["BOOT_B_LEFT"])
            );
            "old"
        };
        eprintln!(
            "power cut: {why}: write {}, {} {target_state}, pair in the {state} state",
            if write_done { "complete" } else { "cut" },
            FILES[target]
        );

        // The next power-on boots B, with one try less than the state in
        // force, and leaves a whole pair.
        let left: u32 = env["BOOT_B_LEFT"].parse().unwrap();
        let console = disk.boot();
        expect_boot(&console, "B", &(left - 1).to_string());
        assert!(
            disk.env_after_boot() == with_floor(contract("B A", "3", &(left - 1).to_string())),
            "{why}: the pair after the next boot"
        );
    }
    eprintln!(
        "power cut: {TRIALS} trials: {cut_in_write} cut before the write completed, \
         {torn} left a torn copy, {got_new} already had the new state"
    );
    assert!(
        torn > 0,
        "no trial tore the copy being written (seed {seed}): the cuts missed the write"
    );
}

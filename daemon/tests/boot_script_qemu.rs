//! Runs `bootloader-scripts/env-file/boot.cmd` in real U-Boot (Debian
//! `u-boot-qemu`, `qemu-x86/u-boot.rom`) under QEMU and checks the slot it
//! chooses and the `seesaw.env` it writes back.
//!
//! The disk image is built without root: an MBR with one FAT partition
//! holding `boot.scr` and (unless the case says otherwise) a `seesaw.env`
//! made by the real `fw_setenv`. There are no slot partitions and no kernel:
//! the script prints its marker, writes the environment, fails to load the
//! kernel, prints its failure marker and resets; QEMU runs with `-no-reboot`,
//! so that reset ends the run. Afterwards `seesaw.env` is copied out with
//! `mcopy` and read with the real `fw_printenv`.
//!
//! Needs `qemu-system-x86_64`, `u-boot-qemu`, `u-boot-tools`, `mtools`,
//! `dosfstools`, `fdisk`, `libubootenv-tool` (tests/qemu-packages.sh installs
//! them). A missing tool fails the test; it is never skipped.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UBOOT_ROM: &str = "/usr/lib/u-boot/qemu-x86/u-boot.rom";
const ENV_SIZE: u64 = 0x4000;
const FAT_OFFSET: u64 = 1024 * 1024;
const FAT_KIB: u64 = 16 * 1024;
/// Hard limit for one QEMU run (a run takes about 1-3 s).
const QEMU_TIMEOUT: Duration = Duration::from_secs(90);
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

/// What goes into seesaw.env before the boot.
enum EnvFile {
    Absent,
    /// Written with fw_setenv, one call per variable, in this order.
    Vars(&'static [(&'static str, &'static str)]),
    /// Raw bytes (e.g. garbage, to simulate corruption).
    Raw(Vec<u8>),
}

struct Disk {
    dir: tempfile::TempDir,
}

impl Disk {
    fn path(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }

    fn fw_config(&self, env_path: &Path) -> PathBuf {
        let cfg = self.dir.path().join("fw_env.config");
        std::fs::write(&cfg, format!("{} 0x0 {ENV_SIZE:#x}\n", env_path.display())).unwrap();
        cfg
    }

    fn build(env: EnvFile) -> Disk {
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
            .arg("-C")
            .arg(&fat)
            .arg(FAT_KIB.to_string()));
        run(tool("mcopy")
            .arg("-i")
            .arg(&fat)
            .arg(&scr)
            .arg("::boot.scr"));

        let env_path = d.join("seesaw.env");
        match env {
            EnvFile::Absent => {}
            EnvFile::Vars(vars) => {
                // libubootenv wants the file to exist at its full size; an
                // empty default environment lets the first write start from
                // nothing.
                std::fs::write(&env_path, vec![0u8; ENV_SIZE as usize]).unwrap();
                let empty_default = d.join("empty-default.env");
                std::fs::write(&empty_default, b"").unwrap();
                let cfg = disk.fw_config(&env_path);
                for (name, value) in vars {
                    run(tool("fw_setenv")
                        .arg("-c")
                        .arg(&cfg)
                        .arg("-f")
                        .arg(&empty_default)
                        .arg(name)
                        .arg(value));
                }
                let printed = parse_env(&run(tool("fw_printenv").arg("-c").arg(&cfg)));
                for (name, value) in vars {
                    assert_eq!(
                        printed.get(*name).map(String::as_str),
                        Some(*value),
                        "fw_setenv {name}"
                    );
                }
            }
            EnvFile::Raw(bytes) => std::fs::write(&env_path, bytes).unwrap(),
        }
        if env_path.exists() {
            run(tool("mcopy")
                .arg("-i")
                .arg(&fat)
                .arg(&env_path)
                .arg("::seesaw.env"));
            std::fs::remove_file(&env_path).unwrap();
        }

        // MBR: one bootable FAT32 (LBA) partition at 1 MiB.
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
            "label: dos\nstart={}, size={}, type=c, bootable\n",
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

    /// Boots the disk in QEMU until U-Boot resets (which ends QEMU, as it
    /// runs with -no-reboot). Returns the serial console text, without CRs.
    fn boot(&self) -> String {
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
            .args(["-bios", UBOOT_ROM])
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=raw",
                self.path().display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > QEMU_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let console = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        match status {
            None => {
                panic!("QEMU did not finish within {QEMU_TIMEOUT:?}; console:\n{console}\n{stderr}")
            }
            Some(s) if !s.success() => panic!("QEMU failed ({s}): {stderr}\nconsole:\n{console}"),
            Some(_) => {}
        }
        console
    }

    /// seesaw.env as U-Boot left it, read by the real fw_printenv.
    fn env_after_boot(&self) -> BTreeMap<String, String> {
        let out = self.dir.path().join("seesaw.env.out");
        let _ = std::fs::remove_file(&out);
        run(tool("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@{FAT_OFFSET}", self.path().display()))
            .arg("::seesaw.env")
            .arg(&out));
        assert_eq!(
            std::fs::metadata(&out).unwrap().len(),
            ENV_SIZE,
            "seesaw.env size"
        );
        let cfg = self.fw_config(&out);
        parse_env(&run(tool("fw_printenv").arg("-c").arg(&cfg)))
    }
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The `seesaw: ...` lines of the console.
fn markers(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.find("seesaw: ").map(|i| l[i..].trim_end().to_owned()))
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

/// Boots once; expects exactly one "booting" marker for `slot` with `left`,
/// a command line naming the slot and its root, and the failure marker
/// (there is no kernel).
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

#[test]
fn absent_env_file_boots_a_and_writes_defaults() {
    let disk = Disk::build(EnvFile::Absent);
    let console = disk.boot();
    assert!(markers(&console)
        .contains(&"seesaw: seesaw.env missing or invalid, using defaults".to_owned()));
    expect_boot(&console, "A", "2");
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));
}

#[test]
fn fresh_a_b_3_3_boots_a() {
    let disk = Disk::build(EnvFile::Vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ]));
    let console = disk.boot();
    assert!(
        !markers(&console)
            .iter()
            .any(|l| l.contains("missing or invalid")),
        "{console}"
    );
    expect_boot(&console, "A", "2");
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));
}

#[test]
fn b_first_with_one_try_boots_b_and_uses_it_up() {
    let disk = Disk::build(EnvFile::Vars(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "1"),
    ]));
    let console = disk.boot();
    expect_boot(&console, "B", "0");
    assert_eq!(disk.env_after_boot(), contract("B A", "3", "0"));
}

#[test]
fn b_out_of_tries_falls_back_to_a() {
    let disk = Disk::build(EnvFile::Vars(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ]));
    let console = disk.boot();
    expect_boot(&console, "A", "2");
    assert_eq!(disk.env_after_boot(), contract("B A", "2", "0"));
}

#[test]
fn unset_counter_counts_as_three() {
    // An install writes BOOT_ORDER and the new slot's counter; an unset
    // counter of the other slot defaults to 3.
    let disk = Disk::build(EnvFile::Vars(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_B_LEFT", "3"),
    ]));
    let console = disk.boot();
    expect_boot(&console, "B", "2");
    assert_eq!(disk.env_after_boot(), contract("B A", "3", "2"));
}

#[test]
fn all_out_of_tries_resets_counters_then_boots_again() {
    let disk = Disk::build(EnvFile::Vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "0"),
        ("BOOT_B_LEFT", "0"),
    ]));
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
    assert_eq!(disk.env_after_boot(), contract("A B", "3", "3"));

    // The reset ended the run; the next power-on boots A again.
    let console = disk.boot();
    expect_boot(&console, "A", "2");
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));
}

#[test]
fn corrupt_env_file_falls_back_to_defaults() {
    let mut garbage = vec![0u8; ENV_SIZE as usize];
    let mut x: u32 = 0x1234_5678;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let disk = Disk::build(EnvFile::Raw(garbage));
    let console = disk.boot();
    assert!(
        markers(&console)
            .contains(&"seesaw: seesaw.env missing or invalid, using defaults".to_owned()),
        "{console}"
    );
    expect_boot(&console, "A", "2");
    assert_eq!(disk.env_after_boot(), contract("A B", "2", "3"));
}

#[test]
fn only_whitelisted_variables_are_imported() {
    let disk = Disk::build(EnvFile::Vars(&[
        ("bootargs", "init=/bin/evil"),
        ("bootcmd", "echo INJECTED-BOOTCMD"),
        ("seesaw_root_B", "/dev/evil"),
        ("BOOT_ORDER", "X; echo INJECTED-ORDER; B A"),
        ("BOOT_B_LEFT", "3"),
    ]));
    let console = disk.boot();
    assert!(
        !console.contains("INJECTED-ORDER\n") && !console.contains("evil"),
        "{console}"
    );
    expect_boot(&console, "B", "2");
    // The rewritten file holds the contract variables only.
    assert_eq!(
        disk.env_after_boot(),
        contract("X; echo INJECTED-ORDER; B A", "3", "2")
    );
}

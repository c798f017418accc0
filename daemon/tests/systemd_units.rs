//! The files in `systemd/` checked by the real tools that will read them on a
//! board: `systemd-analyze` for the unit (syntax and sandbox exposure),
//! `dbus-daemon` for the bus policy, `journalctl` for the message catalog.
//!
//! Each check also runs a deliberately broken copy and expects the tool to
//! reject it, so a tool that accepts anything cannot make a check pass.
//! A missing tool fails the test with the Debian package to install; nothing
//! is skipped.
//!
//! What is not here: the method-call policy against a running daemon (who
//! may call what) belongs to the D-Bus API tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The exposure `systemd-analyze security --offline=yes` gives
/// `systemd/seesaw.service` on systemd 252. Lower it here when the unit gets
/// tighter; the margin only absorbs scoring differences between systemd
/// versions, it is not room to loosen the sandbox.
const MEASURED_EXPOSURE: f64 = 1.8;
const EXPOSURE_MARGIN: f64 = 0.3;

/// The stable journald MESSAGE_IDs (never renumbered; see the catalog).
const CATALOG_IDS: [&str; 7] = [
    "f06e9e6060104dd2abd30080c34bdbfe", // install started
    "1289792e3da4474b8fa3ff590006470d", // install completed, awaiting reboot
    "68ab3e6fc9f048028f32ae12e43a5cf0", // install failed
    "550bedbc2fd94756a1338f8b3dd7ea29", // commit
    "f38fc19ef7fb437d9570be42e6b1b083", // rollback
    "d459c1d9d8fe4bdabeb4521208a12bcf", // marked bad (failed health check or operator)
    "0f5769d3faa34e32acaf89fc0d4e48fd", // trial failed with no fallback
];

/// Journal fields the daemon attaches to those entries; anything else in
/// `@...@` would stay unsubstituted in `journalctl -x`.
const CATALOG_FIELDS: [&str; 3] = ["SEESAW_VERSION", "SEESAW_SLOT", "SEESAW_REASON"];

const SHIPPED_EXEC: &str = "/usr/bin/seesaw";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in a workspace")
        .join("systemd")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Starts `program`, turning "not installed" into a failure that says what
/// to install.
fn spawn(cmd: &mut Command, program: &str, package: &str) -> Child {
    cmd.spawn().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!(
                "`{program}` is not installed: install the Debian package `{package}` \
                 (apt-get install {package})"
            )
        }
        panic!("starting {program}: {e}")
    })
}

fn run(program: &str, package: &str, args: &[&std::ffi::OsStr]) -> Output {
    let child = spawn(
        Command::new(program)
            .args(args)
            // Plain, stable output whatever the caller's terminal.
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        program,
        package,
    );
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {program}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

// ---------------------------------------------------------------- the unit

/// The shipped unit with ExecStart pointing at the binary cargo just built,
/// so `verify` checks everything else exactly as shipped.
fn unit_for_verify(shipped: &str) -> String {
    let mut rewritten = 0;
    let unit: Vec<String> = shipped
        .lines()
        .map(|line| match line.strip_prefix("ExecStart=") {
            Some(cmd) => {
                let args = cmd.strip_prefix(SHIPPED_EXEC).unwrap_or_else(|| {
                    panic!("ExecStart= no longer starts {SHIPPED_EXEC}: {line}")
                });
                rewritten += 1;
                format!("ExecStart={}{args}", env!("CARGO_BIN_EXE_seesaw"))
            }
            None => line.to_owned(),
        })
        .collect();
    assert_eq!(
        rewritten, 1,
        "expected exactly one ExecStart= in seesaw.service"
    );
    unit.join("\n") + "\n"
}

/// Runs `systemd-analyze verify` on `unit` saved as seesaw.service. Only this
/// unit's problems count (`--recursive-errors=no`): the host's other units
/// are not ours to judge. Warnings about it (unknown keys, bad values that
/// systemd would ignore) count as failures, since an ignored hardening line
/// is a silent hole.
fn verify(unit: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seesaw.service");
    std::fs::write(&path, unit).expect("writing the unit");
    let out = run(
        "systemd-analyze",
        "systemd",
        &[
            "verify".as_ref(),
            "--recursive-errors=no".as_ref(),
            path.as_os_str(),
        ],
    );
    let complaints: Vec<String> = text(&out.stdout)
        .lines()
        .chain(text(&out.stderr).lines())
        .filter(|l| l.contains("seesaw"))
        .map(str::to_owned)
        .collect();
    if out.status.success() && complaints.is_empty() {
        Ok(())
    } else {
        Err(describe("systemd-analyze verify", &out))
    }
}

#[test]
fn service_unit_verifies_clean() {
    let shipped = read(&systemd_dir().join("seesaw.service"));
    let unit = unit_for_verify(&shipped);
    if let Err(e) = verify(&unit) {
        panic!("systemd/seesaw.service does not verify cleanly\n{e}");
    }

    // The same check must reject a unit systemd would only half apply.
    let broken = unit.replacen("[Service]\n", "[Service]\nProtectSystm=strict\n", 1);
    assert_ne!(broken, unit);
    assert!(
        verify(&broken).is_err(),
        "systemd-analyze verify accepted a unit with a misspelt key: the check proves nothing"
    );
}

fn exposure(unit: &Path) -> f64 {
    let out = run(
        "systemd-analyze",
        "systemd",
        &[
            "security".as_ref(),
            "--offline=yes".as_ref(),
            "--no-pager".as_ref(),
            unit.as_os_str(),
        ],
    );
    assert!(
        out.status.success(),
        "{}\n(--offline needs systemd 250 or later)",
        describe("systemd-analyze security --offline=yes", &out)
    );
    // "→ Overall exposure level for seesaw.service: 1.8 OK 🙂"
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("{}", describe("no exposure line", &out)));
    let value = line.rsplit_once(": ").map(|(_, v)| v).unwrap_or_default();
    value
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure from {line:?}"))
}

#[test]
fn service_unit_exposure_stays_low() {
    let shipped = systemd_dir().join("seesaw.service");
    let score = exposure(&shipped);
    assert!(
        score <= MEASURED_EXPOSURE + EXPOSURE_MARGIN,
        "seesaw.service exposure {score} is above the measured {MEASURED_EXPOSURE} \
         (+{EXPOSURE_MARGIN}); run `systemd-analyze security --offline=yes {}` to see \
         which setting was loosened",
        shipped.display()
    );

    // The parser must see a loosened sandbox, or the bound above is moot.
    let dir = tempfile::tempdir().expect("tempdir");
    let loose = dir.path().join("seesaw.service");
    let unit = read(&shipped).replace("CapabilityBoundingSet=\n", "");
    std::fs::write(&loose, unit).expect("writing the unit");
    let loose_score = exposure(&loose);
    assert!(
        loose_score > score,
        "giving back every capability did not raise the exposure ({loose_score} vs {score})"
    );
}

#[test]
fn watchdog_dropin_has_only_manager_timespans() {
    let path = systemd_dir().join("10-seesaw-watchdog.conf");
    let mut section = None;
    let mut keys = Vec::new();
    for line in read(&path).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = Some(line.to_owned());
            continue;
        }
        assert_eq!(
            section.as_deref(),
            Some("[Manager]"),
            "{line:?} outside [Manager]"
        );
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line:?}"));
        assert!(
            ["RuntimeWatchdogSec", "RebootWatchdogSec"].contains(&key),
            "unexpected key {key} in {}",
            path.display()
        );
        // systemd's own time span parser, the one PID 1 uses.
        let out = run(
            "systemd-analyze",
            "systemd",
            &["timespan".as_ref(), value.as_ref()],
        );
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("{key}={value}"), &out)
        );
        keys.push(key.to_owned());
    }
    keys.sort();
    assert_eq!(keys, ["RebootWatchdogSec", "RuntimeWatchdogSec"]);
}

// ---------------------------------------------------------- the bus policy

/// Starts dbus-daemon on a config including `policy` and reports whether it
/// came up (printed its address) or exited, with its stderr.
fn bus_starts_with(policy_text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("org.seesaw.Updater1.conf");
    std::fs::write(&policy, policy_text).expect("writing the policy");
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        support::bus_config_including(&dir.path().join("bus.sock"), "", &policy),
    )
    .expect("writing the bus config");

    let mut child = spawn(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "dbus-daemon",
        "dbus",
    );
    // The address line is printed only once the whole config, includes and
    // all, has been parsed and the socket is listening.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let address = rx.recv_timeout(Duration::from_secs(20));
    let running = child.try_wait().expect("polling dbus-daemon").is_none();
    if running {
        let _ = child.kill();
    }
    let status = child.wait().expect("waiting for dbus-daemon");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    match address {
        Ok(a) if a.starts_with("unix:") && running => Ok(()),
        Ok(a) => Err(format!(
            "dbus-daemon {status}, printed {a:?}\n--- stderr\n{stderr}"
        )),
        Err(_) => Err(format!(
            "dbus-daemon printed no address within 20 s ({status})\n--- stderr\n{stderr}"
        )),
    }
}

#[test]
fn dbus_policy_loads_into_dbus_daemon() {
    let policy = read(&systemd_dir().join("org.seesaw.Updater1.conf"));
    if let Err(e) = bus_starts_with(&policy) {
        panic!("dbus-daemon refuses systemd/org.seesaw.Updater1.conf\n{e}");
    }

    // A rule dbus-daemon cannot parse must stop the bus, or the check above
    // proves nothing (dbus-daemon rejects unknown attributes).
    let broken = policy.replacen("<allow own=", "<allow own_name=", 1);
    assert_ne!(broken, policy);
    assert!(
        bus_starts_with(&broken).is_err(),
        "dbus-daemon started with a broken policy included: the check proves nothing"
    );
}

// -------------------------------------------------------------- the catalog

/// `(id, entry text)` for every `-- <id>` header, in file order.
fn catalog_entries(catalog: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in catalog.lines() {
        if let Some(header) = line.strip_prefix("-- ") {
            entries.push((header.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = entries.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    entries
}

#[test]
fn catalog_has_every_message_id() {
    let source = systemd_dir().join("seesaw.catalog");
    let catalog = read(&source);

    // journalctl quietly ignores a duplicate ID and reads a malformed header
    // as body text, so the structure is checked here first.
    let entries = catalog_entries(&catalog);
    let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let mut expected = CATALOG_IDS.to_vec();
    expected.sort_unstable();
    assert_eq!(
        sorted, expected,
        "catalog entries (duplicates or unknown IDs?)"
    );
    for (id, body) in &entries {
        for field in ["Subject: ", "Defined-By: seesaw\n", "Support: "] {
            assert!(body.contains(field), "entry {id} has no {field:?} line");
        }
        let mut rest = body.as_str();
        while let Some(start) = rest.find('@') {
            let after = &rest[start + 1..];
            let end = after
                .find('@')
                .unwrap_or_else(|| panic!("entry {id}: unpaired '@'"));
            let field = &after[..end];
            assert!(
                CATALOG_FIELDS.contains(&field),
                "entry {id} uses unknown field @{field}@"
            );
            rest = &after[end + 1..];
        }
    }

    // journalctl reads it the way it will on the board: from
    // <root>/usr/lib/systemd/catalog into <root>/var/lib/systemd/catalog/database.
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("usr/lib/systemd/catalog");
    std::fs::create_dir_all(&dir).expect("creating the catalog directory");
    std::fs::copy(&source, dir.join("seesaw.catalog")).expect("copying the catalog");
    let root_arg = format!("--root={}", root.path().display());

    let out = run(
        "journalctl",
        "systemd",
        &[root_arg.as_ref(), "--update-catalog".as_ref()],
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        describe("journalctl --update-catalog", &out)
    );
    let out = run(
        "journalctl",
        "systemd",
        &[
            root_arg.as_ref(),
            "--no-pager".as_ref(),
            "--list-catalog".as_ref(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        describe("journalctl --list-catalog", &out)
    );
    let listing = text(&out.stdout);
    for id in CATALOG_IDS {
        let line = listing
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("journalctl --list-catalog lacks {id}:\n{listing}"));
        // "<id> seesaw: <Subject>"
        assert!(
            line[id.len()..].trim_start().starts_with("seesaw: ") && line.len() > id.len() + 10,
            "catalog entry {id} listed without its subject: {line:?}"
        );
    }
    assert_eq!(
        listing.lines().count(),
        CATALOG_IDS.len(),
        "unexpected entries:\n{listing}"
    );
}

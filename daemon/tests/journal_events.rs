//! The journal events of real `seesaw` runs, read back with the journal's
//! own tools: each operation logs its event once, with `MESSAGE_ID`,
//! `SEESAW_SLOT`, `SEESAW_VERSION` and `SEESAW_REASON` filled where known
//! and left out where not, and `journalctl -x` renders the catalog with
//! every field substituted.
//!
//! No journald runs on the test machines (there is no
//! `/run/systemd/journal`), so the test plays journald's socket: each
//! `seesaw` command runs in a private mount namespace (`unshare -rm`, from
//! util-linux) where the test's own datagram socket is bind-mounted at
//! `/run/systemd/journal/socket`, the path the native-protocol logger sends
//! to. The datagrams received there are exactly what journald would get.
//! They are stored the way journald stores them, as a real journal file,
//! by `systemd-journal-remote` (Debian package `systemd-journal-remote`,
//! installed by `tests/test-packages.sh`) reading them in journal export
//! format, which is the native protocol with an empty line after each entry
//! and journald's receive time. The file is read with `journalctl --file
//! -o json` and, with the catalog installed in the same kind of namespace,
//! `journalctl --file -x`. A missing tool fails the test with the package
//! to install; nothing is skipped.
//!
//! The board is the simulated one of `common` (real environment file, real
//! ext4 image). Commands run standalone (no daemon on the bus), from a
//! shell (stderr not the journal) or as a service does (`JOURNAL_STREAM`
//! naming stderr); the daemon's start-up analysis, which reports a
//! rollback, is run by `seesaw daemon` with a bus address where nothing
//! listens: it settles the boot before it connects, then exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod common;
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{parts, signed, write_bundle, Board};
use seesaw::events::{
    COMMIT, INSTALL_COMPLETED, INSTALL_FAILED, INSTALL_STARTED, MARKED_BAD, ROLLBACK,
};
use seesaw::slot::BootChoice;
use seesaw::trust::MANIFEST_PAYLOAD_TYPE;

/// A bus address where no bus listens, so the CLI always works standalone.
const NO_BUS: &str = "unix:path=/nonexistent/seesaw-test-bus";

/// The fields an event entry carries, as asserted.
const SEESAW_FIELDS: [&str; 3] = ["SEESAW_SLOT", "SEESAW_VERSION", "SEESAW_REASON"];

/// In the namespace: the test's directory over journald's, then the command.
/// `$1` is the directory holding `systemd/journal/socket`; `$2` says whether
/// stderr is to be the journal stream (`service`) or not (`shell`).
const IN_NAMESPACE: &str = r#"
j=$1; how=$2; shift 2
if [ -d /run/systemd/journal ]; then mount --bind "$j/systemd/journal" /run/systemd/journal
elif [ -d /run/systemd ]; then mount --bind "$j/systemd" /run/systemd
else mount --bind "$j" /run
fi || exit 97
if [ "$how" = service ]; then
    exec 2>"$j/stderr"
    JOURNAL_STREAM=$(stat -c %d:%i "$j/stderr")
    export JOURNAL_STREAM
fi
exec "$@"
"#;

/// The tool's path: the first of `candidates` that exists.
fn tool(candidates: &[&str], package: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed: install the Debian package `{package}` \
                 (apt-get install {package}, or tests/test-packages.sh)",
                candidates[0]
            )
        })
}

fn journal_remote() -> PathBuf {
    tool(
        &[
            "/lib/systemd/systemd-journal-remote",
            "/usr/lib/systemd/systemd-journal-remote",
        ],
        "systemd-journal-remote",
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// journald's socket, played by the test.
struct Journald {
    dir: tempfile::TempDir,
    socket: UnixDatagram,
}

impl Journald {
    fn new() -> Journald {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("systemd/journal/socket");
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        let socket = UnixDatagram::bind(&sock).unwrap();
        socket.set_nonblocking(true).unwrap();
        Journald { dir, socket }
    }

    /// Runs `seesaw ARGS` with this socket as journald's; `service`: with
    /// stderr as the journal stream, as systemd starts the daemon.
    fn seesaw(&self, config: &Path, args: &[&str], service: bool) -> Output {
        let mut cmd = Command::new("unshare");
        cmd.args(["-rm", "sh", "-c", IN_NAMESPACE, "sh"])
            .arg(self.dir.path())
            .arg(if service { "service" } else { "shell" })
            .arg(support::seesaw_bin())
            .arg("--config")
            .arg(config)
            .arg("--bus-address")
            .arg(NO_BUS)
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("SEESAW_BUS_ADDRESS")
            .env_remove("RUST_LOG");
        let mut out = support::run_bounded(&mut cmd, Duration::from_secs(300));
        assert_ne!(
            out.status.code(),
            Some(97),
            "cannot bind-mount in a private mount namespace (`unshare -rm`, util-linux): {}",
            text(&out.stderr)
        );
        if service {
            out.stderr = std::fs::read(self.dir.path().join("stderr")).unwrap_or_default();
        }
        out
    }

    /// The datagrams received since the last call, empty ones (the
    /// logger's probe, which journald discards) left out.
    fn received(&self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(0) => {}
                Ok(n) => all.push(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return all,
                Err(e) => panic!("receiving from the journal socket: {e}"),
            }
        }
    }
}

/// Native-protocol datagrams as journal export format: each entry with
/// journald's receive time, then an empty line.
fn export_format(datagrams: &[Vec<u8>]) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let mut out = Vec::new();
    for d in datagrams {
        assert!(
            d.ends_with(b"\n"),
            "a datagram not ending in a field: {d:?}"
        );
        writeln!(out, "__REALTIME_TIMESTAMP={now}").unwrap();
        out.extend_from_slice(d);
        out.push(b'\n');
    }
    out
}

/// Stores `datagrams` as the journal file `path` with systemd-journal-remote.
fn write_journal(path: &Path, datagrams: &[Vec<u8>]) {
    let mut child = Command::new(journal_remote())
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = export_format(datagrams);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "systemd-journal-remote: {log}");
    assert!(
        log.contains(&format!("writing {} entries", datagrams.len())),
        "systemd-journal-remote did not take every entry: {log}"
    );
}

/// One entry as `journalctl -o json` prints it: field name to text.
type Fields = BTreeMap<String, String>;

fn read_journal(path: &Path) -> Vec<Fields> {
    let out = Command::new("journalctl")
        .arg(format!("--file={}", path.display()))
        .args(["-o", "json", "--no-pager"])
        .output()
        .unwrap_or_else(|e| panic!("journalctl ({e}): apt-get install systemd"));
    assert!(out.status.success(), "journalctl: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let s = v
                        .as_str()
                        .unwrap_or_else(|| panic!("field {k} is not one line of text: {v}"));
                    (k.clone(), s.to_string())
                })
                .collect()
        })
        .collect()
}

/// An expected event: id, slot, version, and a text the reason contains
/// (`None`: the entry has no such field).
type Expect = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// Asserts the event entries among `entries` are exactly `expected`, in
/// order, and that no seesaw field says "None" or is empty.
fn assert_events(step: &str, entries: &[Fields], expected: &[Expect]) {
    let events: Vec<&Fields> = entries
        .iter()
        .filter(|e| e.contains_key("MESSAGE_ID"))
        .collect();
    let got: Vec<String> = events
        .iter()
        .map(|e| format!("{:?}", describe(e)))
        .collect();
    assert_eq!(
        events.len(),
        expected.len(),
        "{step}: events {got:#?}, expected {expected:#?}"
    );
    for (e, (id, slot, version, reason)) in events.iter().zip(expected) {
        let what = format!("{step}: {:?}", describe(e));
        assert_eq!(e["MESSAGE_ID"], *id, "{what}");
        assert_eq!(e.get("SEESAW_SLOT").map(String::as_str), *slot, "{what}");
        assert_eq!(
            e.get("SEESAW_VERSION").map(String::as_str),
            *version,
            "{what}"
        );
        match reason {
            None => assert!(!e.contains_key("SEESAW_REASON"), "{what}"),
            Some(part) => assert!(
                e.get("SEESAW_REASON").is_some_and(|r| r.contains(part)),
                "{what}: the reason does not contain {part:?}"
            ),
        }
        for f in SEESAW_FIELDS {
            if let Some(v) = e.get(f) {
                assert!(v != "None" && !v.is_empty(), "{what}: {f}={v:?}");
            }
        }
        assert!(!e["MESSAGE"].is_empty(), "{what}");
        let priority = match *id {
            INSTALL_FAILED => "3",
            ROLLBACK | MARKED_BAD => "4",
            _ => "5",
        };
        assert_eq!(e["PRIORITY"], priority, "{what}");
    }
}

fn describe(e: &Fields) -> Vec<(&str, &str)> {
    e.iter()
        .filter(|(k, _)| {
            matches!(k.as_str(), "MESSAGE_ID" | "MESSAGE") || SEESAW_FIELDS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// One power-on as the boot script does it; the kernel command line follows.
fn reboot(b: &Board) -> &'static str {
    let choice = support::power_on::power_on(&mut b.env()).unwrap();
    let BootChoice::Boot { slot, .. } = choice else {
        panic!("no slot boots: {choice:?}")
    };
    b.set_cmdline(slot.name());
    slot.name()
}

/// `journalctl --file FILE -x` with the seesaw catalog as the board has it
/// (compiled by `journalctl --update-catalog`), in a mount namespace where
/// it is the system's catalog database.
fn explained(journal: &Path) -> String {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("usr/lib/systemd/catalog");
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/seesaw.catalog");
    std::fs::copy(&catalog, dir.join("seesaw.catalog")).unwrap();
    let out = Command::new("journalctl")
        .arg(format!("--root={}", root.path().display()))
        .arg("--update-catalog")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = r#"
r=$1; shift
if [ -d /var/lib/systemd/catalog ]; then mount --bind "$r/var/lib/systemd/catalog" /var/lib/systemd/catalog
else mount --bind "$r/var/lib/systemd" /var/lib/systemd
fi || exit 97
exec "$@"
"#;
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", script, "sh"])
        .arg(root.path())
        .arg("journalctl")
        .arg(format!("--file={}", journal.display()))
        .args(["-x", "--no-pager", "-o", "short"])
        .output()
        .unwrap();
    assert!(out.status.success(), "journalctl -x: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn every_operation_logs_its_event_once_with_its_fields() {
    let b = Board::new();
    let journald = Journald::new();
    let config = b.path("seesaw.toml");
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    let v3 = b.create("v3.bundle", "3.0.0", 6, "test-board");
    let v4 = b.create("v4.bundle", "4.0.0", 6, "test-board");
    // The board's state deny-lists 6.6.6: refused after verification.
    let denied = b.create("denied.bundle", "6.6.6", 6, "test-board");
    let (manifest, payload) = parts(&v3);
    let bad_signature = b.path("bad-signature.bundle");
    write_bundle(
        &bad_signature,
        &signed(MANIFEST_PAYLOAD_TYPE, &manifest.to_json(), &[&b.stranger]),
        &payload,
    );
    let path = |p: &PathBuf| p.display().to_string();

    let mut all = Vec::new();
    let mut steps = 0;
    let mut run = |step: &str, args: &[&str], service: bool, ok: bool, expected: &[Expect]| {
        let out = journald.seesaw(&config, args, service);
        assert_eq!(
            out.status.success(),
            ok,
            "{step}: seesaw {args:?}: {}",
            text(&out.stderr)
        );
        let datagrams = journald.received();
        steps += 1;
        let file = b.path(&format!("step-{steps}.journal"));
        write_journal(&file, &datagrams);
        assert_events(step, &read_journal(&file), expected);
        all.extend(datagrams);
        out
    };

    let out = run(
        "install from a shell",
        &["install", &path(&v2)],
        false,
        true,
        &[
            (INSTALL_STARTED, Some("B"), Some("2.0.0"), None),
            (INSTALL_COMPLETED, Some("B"), Some("2.0.0"), None),
        ],
    );
    // The command prints its own result; the events are not printed too.
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("installing 2.0.0") && !stderr.contains("reboot to try it"),
        "an event on stderr: {stderr}"
    );
    assert_eq!(reboot(&b), "B");
    run(
        "mark-good as a service",
        &["mark-good"],
        true,
        true,
        &[(COMMIT, Some("B"), Some("2.0.0"), Some("marked good"))],
    );
    run(
        "a deny-listed version",
        &["install", &path(&denied)],
        false,
        false,
        &[(INSTALL_FAILED, Some("A"), Some("6.6.6"), Some("6.6.6"))],
    );
    run(
        "a bad signature",
        &["install", &path(&bad_signature)],
        false,
        false,
        &[(INSTALL_FAILED, Some("A"), None, Some("signature"))],
    );
    run(
        "install into A",
        &["install", &path(&v3)],
        false,
        true,
        &[
            (INSTALL_STARTED, Some("A"), Some("3.0.0"), None),
            (INSTALL_COMPLETED, Some("A"), Some("3.0.0"), None),
        ],
    );
    assert_eq!(reboot(&b), "A");
    run(
        "mark-bad of the trial",
        &["mark-bad"],
        false,
        true,
        &[(MARKED_BAD, Some("A"), Some("3.0.0"), Some("mark-bad"))],
    );
    assert_eq!(reboot(&b), "B");
    run(
        "the daemon's start after a marked-bad trial",
        &["daemon"],
        true,
        false,
        &[],
    );

    // A trial that never confirms: U-Boot spends its tries, then boots B.
    run(
        "install into A again",
        &["install", &path(&v4)],
        false,
        true,
        &[
            (INSTALL_STARTED, Some("A"), Some("4.0.0"), None),
            (INSTALL_COMPLETED, Some("A"), Some("4.0.0"), None),
        ],
    );
    for _ in 0..3 {
        assert_eq!(reboot(&b), "A");
    }
    assert_eq!(reboot(&b), "B");
    run(
        "the daemon's start after the rollback",
        &["daemon"],
        true,
        false,
        &[(
            ROLLBACK,
            Some("A"),
            Some("4.0.0"),
            Some("did not confirm after 3 boots"),
        )],
    );

    // The whole run as one journal, explained by the catalog.
    let file = b.path("all.journal");
    write_journal(&file, &all);
    let text = explained(&file);
    for subject in [
        "Subject: Update 2.0.0 is being installed into slot B",
        "Subject: Update 2.0.0 installed into slot B, awaiting reboot",
        "Subject: Update 2.0.0 committed in slot B",
        "Subject: An update failed to install into slot A: ",
        "Subject: Slot A marked bad: requested with mark-bad (CLI or D-Bus Mark)",
        "Subject: Update 4.0.0 in slot A rolled back",
    ] {
        assert!(text.contains(subject), "no {subject:?} in:\n{text}");
    }
    for raw in ["@", "SEESAW_", "None"] {
        assert!(
            !text.contains(raw),
            "{raw:?} left in the explanation:\n{text}"
        );
    }
}

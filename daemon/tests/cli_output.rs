//! What the `seesaw` binary prints when things go wrong, run as a user runs
//! it: each cause of an error once, a configuration error on one line that
//! still names file, line and column, a quiet end when the reader of stdout
//! goes away (`seesaw status | head -1`), and "needs root" when the bus
//! policy refuses an unprivileged caller; and what a standalone `install`
//! shows on a stderr that is not a terminal: plain progress lines, a few per
//! phase, or with `--json` the JSON lines an install through the daemon prints.
//!
//! The last test needs `dbus-daemon` and `setpriv` (Debian: dbus-daemon,
//! util-linux) and root, like `dbus_api`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod common;
mod support;

use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use seesaw::cli::exit;

/// A bus address where no bus listens, so the CLI always works standalone.
const NO_BUS: &str = "unix:path=/nonexistent/seesaw-test-bus";

/// `seesaw --config CONFIG ARGS…`, standalone.
fn seesaw(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seesaw"));
    c.arg("--config")
        .arg(config)
        .arg("--bus-address")
        .arg(NO_BUS)
        .args(args)
        .env_remove("SEESAW_BUS_ADDRESS")
        .stdin(Stdio::null());
    c
}

fn run(mut cmd: Command) -> Output {
    support::run_bounded(&mut cmd, Duration::from_secs(120))
}

/// The one line of stderr, asserting there is exactly one.
fn one_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("seesaw: "), "{stderr:?}");
    stderr.trim_end().to_string()
}

/// Asserts that no cause of the printed chain appears twice.
fn each_cause_once(line: &str) {
    let causes: Vec<&str> = line.split(": ").collect();
    for c in &causes {
        assert_eq!(
            causes.iter().filter(|o| *o == c).count(),
            1,
            "{c:?} is printed more than once: {line}"
        );
    }
    // The system's text of an errno, wherever the separators fall.
    for (i, _) in line.match_indices("(os error ") {
        let errno: String = line[i..].chars().take_while(|c| *c != ')').collect();
        assert_eq!(
            line.matches(&errno).count(),
            1,
            "{errno}) is printed more than once: {line}"
        );
    }
}

#[test]
fn every_cause_of_an_error_is_printed_once() {
    let b = common::Board::new();
    let good = b.create("good.bundle", "2.0.0", 5, "test-board");
    let config = b.path("seesaw.toml");
    let missing_key = b.write_config(
        "missing-key.toml",
        "slot-b.img",
        &[("release", 1, &["absent"])],
    );
    let missing_slot = b.write_config(
        "missing-slot.toml",
        "absent-slot.img",
        &[("release", 1, &["release"])],
    );
    let missing_bundle = b.path("absent.bundle");
    let missing_pem = b.path("keys/absent.pem");
    let cases: Vec<(&str, Command, i32, Vec<String>)> = vec![
        (
            "a missing configuration",
            seesaw(&b.path("absent.toml"), &["status"]),
            exit::CONFIG,
            vec![b.path("absent.toml").display().to_string()],
        ),
        (
            "a missing bundle file",
            {
                let mut c = seesaw(&config, &["bundle", "verify"]);
                c.arg(&missing_bundle);
                c
            },
            exit::IO,
            vec![missing_bundle.display().to_string()],
        ),
        (
            "a missing trust key",
            {
                let mut c = seesaw(&missing_key, &["bundle", "verify"]);
                c.arg(&good);
                c
            },
            exit::CONFIG,
            vec![b.path("keys/absent.pub").display().to_string()],
        ),
        (
            "a missing signing key",
            {
                let mut c = seesaw(&config, &["bundle", "sign", "--key"]);
                c.arg(&missing_pem).arg(&good);
                c
            },
            exit::CONFIG,
            vec![missing_pem.display().to_string()],
        ),
        (
            "an unreadable slot",
            {
                let mut c = seesaw(&missing_slot, &["install"]);
                c.arg(&good);
                c
            },
            exit::IO,
            vec![b.path("absent-slot.img").display().to_string()],
        ),
    ];
    let before = b.snapshot();
    for (what, cmd, status, names) in cases {
        let out = run(cmd);
        let line = one_line(&out);
        eprintln!("{what}: {:?} {line}", out.status.code());
        assert_eq!(out.status.code(), Some(status), "{what}: {line}");
        for n in names {
            assert!(line.contains(&n), "{what}: {n} not named: {line}");
        }
        assert!(
            line.contains("No such file or directory"),
            "{what}: the cause is missing: {line}"
        );
        each_cause_once(&line);
    }
    assert_eq!(before, b.snapshot(), "a failed command changed the board");
}

#[test]
fn a_configuration_error_is_one_line_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "syntax-error.toml",
            "compatible = \"test-board\"\ndata_dir = \n",
            "line 2, column 12",
            "string values must be quoted",
        ),
        (
            "unknown-key.toml",
            "compatible = \"test-board\"\ndata_dir = \"data\"\ncompatibel = \"x\"\n",
            "line 3, column 1",
            "unknown field `compatibel`",
        ),
        (
            "wrong-type.toml",
            "compatible = 5\n",
            "line 1, column 14",
            "invalid type: integer `5`, expected a string",
        ),
    ];
    for (name, text, place, what) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = run(seesaw(&path, &["status"]));
        let line = one_line(&out);
        eprintln!("{name}: {line}");
        assert_eq!(out.status.code(), Some(exit::CONFIG), "{name}: {line}");
        assert!(line.contains(&path.display().to_string()), "{name}: {line}");
        assert!(line.contains(place), "{name}: no {place:?}: {line}");
        assert!(line.contains(what), "{name}: no {what:?}: {line}");
        assert!(
            !line.contains('^'),
            "{name}: the caret diagram is left: {line}"
        );
        each_cause_once(&line);
    }
}

/// The write end of a pipe whose read end is already closed: every write
/// to it fails with EPIPE (or raises SIGPIPE).
fn pipe_without_reader() -> File {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes; the read
    // end is closed once and the write end is owned by the returned File.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0, "pipe(2)");
        libc::close(fds[0]);
        File::from_raw_fd(fds[1])
    }
}

/// Exit 0, or death by SIGPIPE (141 in a shell), and no panic message.
fn ended_quietly(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(
        out.status.success()
            || out.status.signal() == Some(libc::SIGPIPE)
            || out.status.code() == Some(128 + libc::SIGPIPE),
        "{what}: {:?} {stderr}",
        out.status
    );
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let b = common::Board::new();
    let good = b.create("good.bundle", "2.0.0", 5, "test-board");
    let config = b.path("seesaw.toml");
    let good_s = good.display().to_string();
    let commands: [&[&str]; 3] = [
        &["status"],
        &["status", "--json"],
        &["bundle", "inspect", &good_s],
    ];
    for args in commands {
        // The commands work when stdout is read to the end.
        let out = run(seesaw(&config, args));
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");

        // The reader is gone before the first byte is written.
        let mut cmd = seesaw(&config, args);
        cmd.stdout(pipe_without_reader()).stderr(Stdio::piped());
        let out = cmd.spawn().unwrap().wait_with_output().unwrap();
        ended_quietly(&format!("{args:?} into a closed pipe"), &out);
    }

    // As a user types it, with a reader that stops after its first line or
    // bytes.
    for (pipeline, args) in [
        ("head -1", vec!["status"]),
        ("head -c 10", vec!["status", "--json"]),
        ("head -1", vec!["bundle", "inspect", good_s.as_str()]),
    ] {
        let mut sh = Command::new("bash");
        sh.arg("-c")
            .arg(format!(
                "set -o pipefail; \"$@\" | {pipeline} >/dev/null; echo \"${{PIPESTATUS[0]}}\""
            ))
            .arg("bash")
            .arg(env!("CARGO_BIN_EXE_seesaw"))
            .arg("--config")
            .arg(&config)
            .arg("--bus-address")
            .arg(NO_BUS)
            .args(&args)
            .env_remove("SEESAW_BUS_ADDRESS");
        let out = run(sh);
        let what = format!("seesaw {args:?} | {pipeline}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            status == "0" || status == "141",
            "{what}: exit {status}: {stderr}"
        );
    }
}

/// The progress lines of a standalone install's stderr, by phase (the text
/// before the first `": "`), each with its percent, in order.
fn progress_lines(stderr: &str) -> Vec<(String, u64, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let (phase, rest) = l.split_once(": ")?;
            let pct = rest.trim_start().split_once('%')?.0.parse().ok()?;
            Some((phase.to_string(), pct, l.to_string()))
        })
        .collect()
}

#[test]
fn standalone_install_progress_off_a_terminal_is_a_line_per_ten_percent_of_each_phase() {
    let b = common::Board::new();
    let stderr = install_good(&b, &["install"]);
    assert_eq!(b.var("BOOT_ORDER").as_deref(), Some("B A"), "{stderr}");
    assert!(
        !stderr.contains('\r'),
        "a carriage return off a terminal: {stderr:?}"
    );

    let lines = progress_lines(&stderr);
    assert_eq!(
        lines.len(),
        stderr.lines().count(),
        "stderr holds more than progress: {stderr}"
    );
    let mut phases: Vec<&str> = lines.iter().map(|(p, _, _)| p.as_str()).collect();
    phases.sort();
    phases.dedup();
    assert_eq!(
        phases,
        ["reading back", "verifying and writing"],
        "{stderr}"
    );
    for phase in phases {
        let pcts: Vec<u64> = lines
            .iter()
            .filter(|(p, _, _)| p == phase)
            .map(|(_, pct, _)| *pct)
            .collect();
        assert!(
            pcts.len() <= 11,
            "{} lines of {phase}: {stderr}",
            pcts.len()
        );
        assert!(
            pcts.windows(2).all(|w| w[1] / 10 > w[0] / 10),
            "{phase}: two lines in one 10% step: {pcts:?}"
        );
        assert_eq!(
            pcts.last(),
            Some(&100),
            "{phase} has no final line: {stderr}"
        );
    }
    // After its first line, each line of a phase shows the rate.
    for (i, (phase, _, line)) in lines.iter().enumerate() {
        if lines[..i].iter().any(|(p, _, _)| p == phase) {
            assert!(line.contains(" MiB/s"), "no rate: {line}");
        }
    }
}

/// The JSON lines of `text` that begin with `{`, parsed.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Asserts the keys and types of one `install --json` line.
fn documented_keys(line: &serde_json::Value) {
    let keys: Vec<&str> = line
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"))
        .keys()
        .map(String::as_str)
        .collect();
    match line["event"].as_str() {
        Some("progress") => {
            let mut keys = keys;
            keys.sort();
            assert_eq!(
                keys,
                ["bytes_done", "bytes_total", "event", "message", "percent"],
                "{line}"
            );
            let pct = line["percent"].as_i64().unwrap_or(-1);
            assert!((0..=100).contains(&pct), "{line}");
            assert!(
                line["bytes_done"].as_u64() <= line["bytes_total"].as_u64(),
                "{line}"
            );
            assert_eq!(
                line["bytes_total"].as_u64(),
                Some(common::IMAGE_MIB << 20),
                "{line}"
            );
            assert!(line["message"].is_string(), "{line}");
        }
        Some("completed") => {
            let mut keys = keys;
            keys.sort();
            assert_eq!(keys, ["event", "message", "result"], "{line}");
            assert!(
                line["result"].is_i64() && line["message"].is_string(),
                "{line}"
            );
        }
        _ => panic!("unknown event: {line}"),
    }
}

#[test]
fn standalone_install_json_prints_the_documents_of_an_install_through_the_daemon() {
    let b = common::Board::new();
    let config = b.path("seesaw.toml");
    let stderr = install_good(&b, &["install", "--json"]);
    assert!(!stderr.contains('\r'), "{stderr:?}");
    let lines = json_lines(&stderr);
    assert_eq!(
        lines.len(),
        stderr.lines().count(),
        "not all JSON: {stderr}"
    );
    lines.iter().for_each(documented_keys);
    let progress: Vec<_> = lines.iter().filter(|l| l["event"] == "progress").collect();
    assert!(!progress.is_empty(), "no progress line: {stderr}");
    let mut phases: Vec<&str> = progress
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    phases.sort();
    phases.dedup();
    for phase in phases {
        let n = progress.iter().filter(|l| l["message"] == phase).count();
        assert!(n <= 11, "{n} lines of {phase}: {stderr}");
    }
    let last = lines.last().unwrap_or_else(|| panic!("no JSON: {stderr}"));
    assert_eq!(last["event"], "completed", "{stderr}");
    assert_eq!(last["result"], exit::OK, "{stderr}");
    assert_eq!(
        last["message"], "installed 2.0.0 into slot B; reboot to try it",
        "{stderr}"
    );
    assert_eq!(
        lines.iter().filter(|l| l["event"] == "completed").count(),
        1,
        "{stderr}"
    );

    // A refused bundle: the same document with the exit status as result,
    // then the error line; nothing on the board changed.
    let stale = b.create("stale.bundle", "2.1.0", 1, "test-board");
    let before = b.snapshot();
    let mut cmd = seesaw(&config, &["install", "--json"]);
    cmd.arg(&stale);
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(exit::REJECTED), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let lines = json_lines(&stderr);
    lines.iter().for_each(documented_keys);
    let last = lines.last().unwrap_or_else(|| panic!("no JSON: {stderr}"));
    assert_eq!(last["event"], "completed", "{stderr}");
    assert_eq!(last["result"], exit::REJECTED, "{stderr}");
    let message = last["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("install failed: "), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("seesaw: ")),
        "no error line: {stderr}"
    );
    assert_eq!(before, b.snapshot(), "a refused install changed the board");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_bus_denies_reads_needs_root() {
    use support::{unprivileged, Api, Bus, Daemon};
    let board = support::Board::new(1);
    let bundle = board.bundle("v2.bundle", "2.0.0", 5);
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let daemon = Daemon::start(&board, &bus, &api).await;
    let before = board.snapshot();

    // The daemon keeps SIGPIPE ignored: a closed stdout must not kill it.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.proc.pid())).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    assert_ne!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "seesaw daemon does not ignore SIGPIPE"
    );

    let bundle_s = bundle.display().to_string();
    for (command, args) in [
        ("install", vec!["install", bundle_s.as_str()]),
        ("install", vec!["install", "--json", bundle_s.as_str()]),
        ("cancel", vec!["cancel"]),
        ("mark-good", vec!["mark-good"]),
        ("mark-bad", vec!["mark-bad", "B"]),
    ] {
        let mut c = unprivileged(support::seesaw_bin());
        c.arg("--bus-address")
            .arg(&bus.address)
            .arg("--config")
            .arg(board.config())
            .args(&args)
            .env_remove("SEESAW_BUS_ADDRESS");
        let out = support::run_async(c, Duration::from_secs(60)).await;
        let line = one_line(&out);
        eprintln!("seesaw {args:?} as nobody: {:?} {line}", out.status.code());
        assert_eq!(
            line,
            format!(
                "seesaw: {command} needs root: the seesaw daemon accepts this call from root \
                 only (org.freedesktop.DBus.Error.AccessDenied)"
            ),
            "seesaw {args:?} as nobody"
        );
        assert_eq!(
            out.status.code(),
            Some(exit::FAILURE),
            "seesaw {args:?} as nobody: {line}"
        );
    }
    assert_eq!(before, board.snapshot(), "a denied call changed the board");
}

/// Installs a good 2.0.0 bundle with `args` (`install` and its options)
/// and checks it succeeded; returns what it printed on stderr.
fn install_good(b: &common::Board, args: &[&str]) -> String {
    let good = b.create("good.bundle", "2.0.0", 5, "test-board");
    let mut cmd = seesaw(&b.path("seesaw.toml"), args);
    cmd.arg(&good);
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("installed 2.0.0 into slot B"),
        "{out:?}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

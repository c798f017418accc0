//! A device's life on a board of real files: many boots after a commit, a
//! state save that fails after the flip, an environment too full for the
//! flip, a configuration naming one device twice, sources that are not
//! files. Each boot is the boot script's algorithm on the real environment
//! followed by the daemon's start-up analysis (`Event::Started`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/sim/power_on.rs"]
mod power_on;

mod board_files;
mod common;

use common::{install_with as install, Board, NOW};
use seesaw::config::{Config, ConfigError};
use seesaw::lifecycle::{Action, Event};
use seesaw::slot::{BootChoice, Slot};
use seesaw::uboot_env::{BootEnv, EnvError, UbootEnv};
use seesaw::updater::{UpdateError, Updater};

fn env(b: &Board) -> UbootEnv {
    b.env()
}

fn updater(b: &Board) -> Updater {
    let mut u = b.updater();
    u.record_failures(true);
    u
}

fn var(b: &Board, name: &str) -> Option<String> {
    b.var(name)
}

/// Power-on (the boot script on the real environment), then the daemon's
/// start. Returns the slot booted and the start's follow-ups.
fn boot(b: &Board) -> (Slot, Vec<Action>) {
    let slot = match power_on::power_on(&mut env(b)).unwrap() {
        BootChoice::Boot { slot, .. } => slot,
        BootChoice::ResetTries => match power_on::power_on(&mut env(b)).unwrap() {
            BootChoice::Boot { slot, .. } => slot,
            other => panic!("no slot boots: {other:?}"),
        },
    };
    b.set_cmdline(slot.name());
    let outcome = updater(b).handle(Event::Started, NOW).unwrap();
    (slot, outcome.followups)
}

#[test]
fn a_committed_slot_boots_after_any_number_of_boots() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    install(&mut updater(&b), &v2).unwrap();
    let (slot, followups) = boot(&b);
    assert_eq!(slot, Slot::B);
    assert_eq!(followups, vec![Action::RunHealthGate(Slot::B)]);
    updater(&b).handle(Event::HealthPassed, NOW).unwrap();
    assert_eq!(var(&b, "SEESAW_FLOOR").as_deref(), Some("5"));
    for n in 1..=15 {
        let (slot, followups) = boot(&b);
        assert_eq!(slot, Slot::B, "boot {n} after the commit");
        assert!(followups.is_empty(), "boot {n}: {followups:?}");
        assert_eq!(var(&b, "BOOT_B_LEFT").as_deref(), Some("3"), "boot {n}");
        assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("B A"), "boot {n}");
        let status = updater(&b).status().unwrap();
        assert_eq!(status.operation, "idle");
        assert_eq!(status.floor, 5);
    }
}

#[test]
fn a_committed_slot_that_stops_booting_falls_back_to_the_other() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    install(&mut updater(&b), &v2).unwrap();
    boot(&b);
    updater(&b).mark_good(NOW).unwrap();
    // Slot B now hangs before seesaw starts, three times: the script's
    // counter runs out and the board comes back on A, which still holds 1.0.
    for _ in 0..3 {
        match power_on::power_on(&mut env(&b)).unwrap() {
            BootChoice::Boot { slot, .. } => assert_eq!(slot, Slot::B),
            other => panic!("{other:?}"),
        }
    }
    let (slot, _) = boot(&b);
    assert_eq!(slot, Slot::A);
    // A, running and committed, is first again with full tries.
    assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("A B"));
    assert_eq!(var(&b, "BOOT_A_LEFT").as_deref(), Some("3"));
}

/// An environment that, right after it writes the flip to the new slot,
/// makes the state saves that follow fail (a directory stands where
/// `state.json` is renamed to), as a failing data partition would. What
/// `state.json` held at that moment (the last save that went through) is
/// kept to put back afterwards.
struct FailSaveAfterFlip {
    env: UbootEnv,
    data: std::path::PathBuf,
    saved: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl BootEnv for FailSaveAfterFlip {
    fn read_vars(&self) -> Result<Vec<(String, String)>, EnvError> {
        self.env.read_vars()
    }
    fn check_write(&self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        self.env.check_write(updates)
    }
    fn write_vars(&mut self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        self.env.write_vars(updates)?;
        let mut saved = self.saved.lock().unwrap();
        if updates.contains(&("BOOT_ORDER", Some("B A"))) && saved.is_none() {
            let state = self.data.join("state.json");
            *saved = Some(std::fs::read(&state).unwrap());
            std::fs::remove_file(&state).unwrap();
            std::fs::create_dir_all(state.join("blocker")).unwrap();
        }
        Ok(())
    }
}

#[test]
fn a_failed_state_save_after_the_flip_keeps_the_trial() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    let config = b.path("seesaw.toml");
    let data = b.path("data");
    let saved = std::sync::Arc::new(std::sync::Mutex::new(None));
    let mut u = Updater::with_env(
        Config::load(&config).unwrap(),
        &config,
        Box::new(FailSaveAfterFlip {
            env: env(&b),
            data: data.clone(),
            saved: saved.clone(),
        }),
    );
    u.record_failures(true);
    let err = install(&mut u, &v2).unwrap_err();
    assert!(matches!(err, UpdateError::State(_)), "{err:#}");
    drop(u);
    // The data partition recovers with the last save that went through.
    let state = data.join("state.json");
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, saved.lock().unwrap().take().unwrap()).unwrap();
    assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("B A"));
    let status = updater(&b).status().unwrap();
    let pending = status.pending.expect("the install is still pending");
    assert_eq!((pending.slot, pending.version.as_str()), (Slot::B, "2.0.0"));
    assert_eq!(status.floor, 3, "the floor rises only on commit");
    // The next boot is a trial with its health gate; A stays the fallback.
    let (slot, followups) = boot(&b);
    assert_eq!(slot, Slot::B);
    assert_eq!(followups, vec![Action::RunHealthGate(Slot::B)]);
    assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("B A"));
    assert_ne!(var(&b, "BOOT_A_LEFT").as_deref(), Some("0"));
    updater(&b).handle(Event::HealthPassed, NOW).unwrap();
    assert_eq!(updater(&b).status().unwrap().floor, 5);
}

#[test]
fn an_environment_too_full_for_the_flip_is_found_before_the_slot_is_written() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    // Fill the environment so that the flip (and the floor) cannot fit.
    // 0x4000 - 5 header bytes, the final NUL, 70 bytes of variables, and
    // "filler=" + NUL: 20 bytes stay free, fewer than SEESAW_FLOOR needs.
    let filler = "x".repeat(0x4000 - 5 - 1 - 70 - 8 - 20);
    env(&b).write_vars(&[("filler", Some(&filler))]).unwrap();
    let before = b.snapshot();
    let slot_b = std::fs::read(b.path("slot-b.img")).unwrap();
    let err = install(&mut updater(&b), &v2).unwrap_err();
    assert!(
        matches!(err, UpdateError::Env(EnvError::TooLarge { .. })),
        "{err:#}"
    );
    assert_eq!(before, b.snapshot());
    assert!(
        std::fs::read(b.path("slot-b.img")).unwrap() == slot_b,
        "slot B written"
    );
    assert!(!b.path("data/install.json").exists());
}

#[test]
fn one_device_named_twice_is_refused() {
    let b = Board::new();
    std::os::unix::fs::symlink(b.path("slot-a.img"), b.path("alias.img")).unwrap();
    std::fs::hard_link(b.path("slot-a.img"), b.path("hard.img")).unwrap();
    for name in [
        "slot-a.img",
        "./slot-a.img",
        "alias.img",
        "hard.img",
        "keys/../slot-a.img",
    ] {
        let config = b.write_config("same.toml", name, &[("release", 1, &["release"])]);
        match Config::load(&config) {
            Err(ConfigError::Invalid { reason, .. }) => {
                assert!(reason.contains("same device"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_source_that_is_not_a_file_is_refused_at_once() {
    let b = Board::new();
    let fifo = b.path("bundle.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let before = b.snapshot();
    for source in [
        fifo.clone(),
        "/dev/zero".into(),
        "/dev/null".into(),
        b.path("keys"),
    ] {
        let started = std::time::Instant::now();
        let err = install(&mut updater(&b), &source).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a regular file or block device"),
            "{}: {err:#}",
            source.display()
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(before, b.snapshot(), "{}", source.display());
    }
}

#[test]
fn a_trial_with_no_fallback_stays_and_its_slot_cannot_be_marked_bad() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    install(&mut updater(&b), &v2).unwrap();
    assert_eq!(boot(&b).0, Slot::B);
    let trial_state = std::fs::read(b.path("data/state.json")).unwrap();
    updater(&b).handle(Event::HealthPassed, NOW).unwrap();
    // An install into A dies once it has begun (A may be partial), and the
    // saved state is then restored from the copy taken during the trial.
    updater(&b)
        .handle(Event::InstallStarted { target: Slot::A }, NOW)
        .unwrap();
    updater(&b).handle(Event::Started, NOW).unwrap();
    assert_eq!(var(&b, "BOOT_A_LEFT").as_deref(), Some("0"));
    assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("B"));
    std::fs::write(b.path("data/state.json"), &trial_state).unwrap();

    let (slot, followups) = boot(&b);
    assert_eq!(slot, Slot::B);
    assert_eq!(followups, vec![Action::RunHealthGate(Slot::B)]);
    // Marking the only bootable slot bad is refused and changes nothing.
    let files = ["slot-a.img", "slot-b.img", "uboot.env", "data/state.json"];
    let snapshot = |b: &Board| -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|n| std::fs::read(b.path(n)).unwrap())
            .collect()
    };
    let before = snapshot(&b);
    let err = updater(&b).mark_bad(None, NOW).unwrap_err();
    assert!(
        matches!(
            &err,
            UpdateError::Refused(seesaw::lifecycle::Refusal::NoFallback(Slot::B))
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing to fall back to"), "{err}");
    assert!(snapshot(&b) == before, "a refused mark-bad changed a file");

    // The health check fails: no reboot, the trial ends, B stays.
    let outcome = updater(&b)
        .handle(
            Event::HealthFailed {
                reason: "app.service failed".into(),
            },
            NOW,
        )
        .unwrap();
    assert!(!outcome.followups.contains(&Action::Reboot), "{outcome:?}");
    let status = updater(&b).status().unwrap();
    assert!(!status.commit_pending);
    let last = status.last_result.unwrap();
    assert!(last.message.contains("no fallback"), "{}", last.message);
    for n in 1..=10 {
        let (slot, followups) = boot(&b);
        assert_eq!(slot, Slot::B, "boot {n}");
        assert!(followups.is_empty(), "boot {n}: {followups:?}");
        assert_eq!(var(&b, "BOOT_B_LEFT").as_deref(), Some("3"), "boot {n}");
        assert_eq!(var(&b, "BOOT_A_LEFT").as_deref(), Some("0"), "boot {n}");
    }
    // An install into A gives the board its fallback again.
    let v3 = b.create("v3.bundle", "3.0.0", 6, "test-board");
    install(&mut updater(&b), &v3).unwrap();
    assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("A B"));
    assert_eq!(boot(&b).0, Slot::A);
}

/// A command-line install running in another thread.
type Cli =
    std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<Result<(), UpdateError>>>>>;

/// The environment of a daemon that starts just as a command-line install
/// begins: on its first read the install is started in another thread, and
/// the read waits until that install's journal exists (at most `WAIT`), as
/// a start that loses the race would see it.
struct InstallBeginsDuringRead {
    env: UbootEnv,
    config: std::path::PathBuf,
    bundle: std::path::PathBuf,
    cli: Cli,
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl BootEnv for InstallBeginsDuringRead {
    fn read_vars(&self) -> Result<Vec<(String, String)>, EnvError> {
        let mut cli = self.cli.lock().unwrap();
        if cli.is_none() {
            let (config, bundle) = (self.config.clone(), self.bundle.clone());
            let env = self.env.clone();
            *cli = Some(std::thread::spawn(move || {
                let mut u =
                    Updater::with_env(Config::load(&config).unwrap(), &config, Box::new(env));
                install(&mut u, &bundle)
            }));
            let journal = self.config.with_file_name("data").join("install.json");
            let t = std::time::Instant::now();
            while !journal.exists() && t.elapsed() < WAIT {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        self.env.read_vars()
    }
    fn check_write(&self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        self.env.check_write(updates)
    }
    fn write_vars(&mut self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        self.env.write_vars(updates)
    }
}

#[test]
fn a_daemon_starting_while_a_command_line_install_begins_leaves_it_alone() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    let config = b.path("seesaw.toml");
    let cli = Cli::default();
    let mut daemon = Updater::with_env(
        Config::load(&config).unwrap(),
        &config,
        Box::new(InstallBeginsDuringRead {
            env: env(&b),
            config: config.clone(),
            bundle: v2,
            cli: cli.clone(),
        }),
    );
    daemon.record_failures(true);
    let outcome = daemon.handle(Event::Started, NOW).unwrap();
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| r.kind != seesaw::state::ResultKind::Interrupted),
        "the daemon took a live install for a dead one: {outcome:?}"
    );
    let handle = cli.lock().unwrap().take().expect("the install was started");
    handle.join().unwrap().expect("the command-line install");
    // The install completed and flipped; nothing marked B bad.
    assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("B A"));
    assert_eq!(var(&b, "BOOT_B_LEFT").as_deref(), Some("3"));
    let status = updater(&b).status().unwrap();
    assert_eq!(status.pending.map(|p| p.slot), Some(Slot::B));
    assert_eq!(boot(&b).0, Slot::B);
}

//! The update cycle through the library, on a board of real files: install,
//! the boot script's choice on the next boot, commit, mark bad, and what is
//! refused on the way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/sim/power_on.rs"]
mod power_on;

mod board_files;
mod common;

use common::{install_with as install, Board, NOW};
use seesaw::config::Config;
use seesaw::manifest::ManifestError;
use seesaw::slot::{BootChoice, Slot};
use seesaw::state::StateStore;
use seesaw::uboot_env::{BootEnv, EnvError, UbootEnv};
use seesaw::updater::{UpdateError, Updater};

fn env(b: &Board) -> UbootEnv {
    b.env()
}

fn updater(b: &Board) -> Updater {
    b.updater()
}

fn var(b: &Board, name: &str) -> Option<String> {
    b.var(name)
}

/// One power-on as the boot script does it; writes the command line.
fn reboot(b: &Board) -> BootChoice {
    let choice = power_on::power_on(&mut env(b)).unwrap();
    if let BootChoice::Boot { slot, .. } = choice {
        b.set_cmdline(slot.name());
    }
    choice
}

#[test]
fn install_reboot_commit() {
    let b = Board::new();
    let bundle = b.create("v2.bundle", "2.0.0", 5, "test-board");
    let untouched = var(&b, "bootcmd");
    install(&mut updater(&b), &bundle).unwrap();

    assert_eq!(var(&b, "BOOT_ORDER").as_deref(), Some("B A"));
    assert_eq!(var(&b, "BOOT_B_LEFT").as_deref(), Some("3"));
    assert_eq!(var(&b, "BOOT_A_LEFT").as_deref(), Some("3"));
    assert_eq!(var(&b, "bootcmd"), untouched);
    let status = updater(&b).status().unwrap();
    assert_eq!(status.booted, Slot::A);
    assert_eq!(status.primary, Some(Slot::B));
    assert!(!status.commit_pending);
    assert_eq!(status.slots[1].version.as_deref(), Some("2.0.0"));
    assert_eq!(status.slots[1].intact, Some(true));

    assert_eq!(
        reboot(&b),
        BootChoice::Boot {
            slot: Slot::B,
            tries_left: 2
        }
    );
    let status = updater(&b).status().unwrap();
    assert!(status.commit_pending);
    assert_eq!(status.floor, 3);

    let report = updater(&b).mark_good(NOW).unwrap();
    assert_eq!(report.slot, Slot::B);
    assert_eq!(var(&b, "BOOT_B_LEFT").as_deref(), Some("3"));
    let state = StateStore::new(&b.path("data")).load().unwrap();
    assert_eq!(state.floor, 5);
    assert!(state.pending.is_none());
    assert_eq!(
        state.last_result.unwrap().kind,
        seesaw::state::ResultKind::Committed
    );

    // The old version cannot come back below the raised floor.
    let old = b.create("v1.bundle", "1.0.0", 4, "test-board");
    let err = install(&mut updater(&b), &old).unwrap_err();
    assert!(matches!(
        err,
        UpdateError::Manifest(ManifestError::BelowFloor { found: 4, floor: 5 })
    ));
}

#[test]
fn a_trial_boot_must_be_committed_before_the_next_install() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    install(&mut updater(&b), &v2).unwrap();
    reboot(&b);
    let v3 = b.create("v3.bundle", "3.0.0", 6, "test-board");
    let before = b.snapshot();
    let err = install(&mut updater(&b), &v3).unwrap_err();
    assert!(
        matches!(
            err,
            UpdateError::Refused(seesaw::lifecycle::Refusal::TrialNotCommitted(Slot::B))
        ),
        "{err:?}"
    );
    assert_eq!(before, b.snapshot());
}

#[test]
fn mark_bad_deny_lists_the_version() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    install(&mut updater(&b), &v2).unwrap();
    reboot(&b);
    updater(&b).mark_bad(None, NOW).unwrap();
    assert_eq!(var(&b, "BOOT_B_LEFT").as_deref(), Some("0"));
    // The next boot falls back to A.
    assert!(matches!(reboot(&b), BootChoice::Boot { slot: Slot::A, .. }));
    let state = StateStore::new(&b.path("data")).load().unwrap();
    assert!(state.failed_versions.contains(&"2.0.0".to_string()));
    let err = install(&mut updater(&b), &v2).unwrap_err();
    assert!(matches!(
        err,
        UpdateError::Manifest(ManifestError::DenyListed(_))
    ));
}

#[test]
fn an_uncommitted_slot_falls_back_after_three_boots() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    install(&mut updater(&b), &v2).unwrap();
    let slots: Vec<BootChoice> = (0..4).map(|_| reboot(&b)).collect();
    assert_eq!(
        slots,
        vec![
            BootChoice::Boot {
                slot: Slot::B,
                tries_left: 2
            },
            BootChoice::Boot {
                slot: Slot::B,
                tries_left: 1
            },
            BootChoice::Boot {
                slot: Slot::B,
                tries_left: 0
            },
            BootChoice::Boot {
                slot: Slot::A,
                tries_left: 2
            },
        ]
    );
    let status = updater(&b).status().unwrap();
    assert_eq!(status.booted, Slot::A);
    assert_eq!(status.primary, Some(Slot::A));
}

/// An environment whose writes fail (a worn-out eMMC area, say).
struct BrokenWrites(UbootEnv);

impl BootEnv for BrokenWrites {
    fn read_vars(&self) -> Result<Vec<(String, String)>, EnvError> {
        self.0.read_vars()
    }
    fn check_write(&self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        self.0.check_write(updates)
    }
    fn write_vars(&mut self, _: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        Err(EnvError::WriteFailed {
            path: "uboot.env".into(),
            offset: 0,
            source: std::io::Error::other("injected"),
        })
    }
}

#[test]
fn a_failed_environment_write_leaves_state_and_environment_as_they_were() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    let before = b.snapshot();
    let config = b.path("seesaw.toml");
    let mut u = Updater::with_env(
        Config::load(&config).unwrap(),
        &config,
        Box::new(BrokenWrites(env(&b))),
    );
    let err = install(&mut u, &v2).unwrap_err();
    assert!(matches!(
        err,
        UpdateError::Env(EnvError::WriteFailed { .. })
    ));
    assert_eq!(before, b.snapshot());
}

#[test]
fn status_notices_a_slot_overwritten_by_a_failed_install() {
    let b = Board::new();
    let v2 = b.create("v2.bundle", "2.0.0", 5, "test-board");
    install(&mut updater(&b), &v2).unwrap();
    // Booted A still: B holds 2.0.0, awaiting reboot. A damaged 3.0.0
    // bundle aimed at B fails part-way.
    let v3 = b.create("v3.bundle", "3.0.0", 6, "test-board");
    let mut bytes = std::fs::read(&v3).unwrap();
    let n = bytes.len();
    bytes[n - 5000] ^= 0xff;
    std::fs::write(&v3, bytes).unwrap();
    assert!(install(&mut updater(&b), &v3).is_err());
    let status = updater(&b).status().unwrap();
    assert_eq!(status.slots[1].version.as_deref(), Some("2.0.0"));
    assert_eq!(status.slots[1].intact, Some(false));
}

/// The boards' environment is encoded by the test fixture, not by the
/// library; it is byte for byte the block the library builds, so the board
/// is the one the library would have made.
#[test]
fn the_fixture_environment_is_the_block_the_library_builds() {
    use board_files::{env_block, ENV_SIZE};
    use seesaw::uboot_env::{EnvBlock, EnvLayout};
    let vars = [("bootcmd", "run distro_bootcmd"), ("BOOT_ORDER", "A B")];
    let built = EnvBlock::from_vars(EnvLayout::Redundant, ENV_SIZE, 1, &vars).unwrap();
    assert_eq!(env_block(&vars, 1), built.as_bytes());
}

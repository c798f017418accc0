//! `kill -9` of the daemon at random moments of an install over D-Bus.
//!
//! Each trial starts the daemon on a fresh or a continuing board, asks it
//! over D-Bus to install, sleeps a delay drawn from a seeded PRNG (before,
//! across and after the install's measured duration) and SIGKILLs it. Then:
//! the running slot A is byte-identical; the environment is readable, every
//! variable outside the boot contract unchanged; the boot contract either
//! unchanged or flipped to `B A` with `BOOT_B_LEFT=3`, and flipped only with
//! the install pending for B in state.json. A restarted daemon's start-up
//! analysis reports an interrupted install as interrupted and forgets slot
//! B's record, and what it reports agrees with the environment; a fresh
//! install then succeeds (or the board is already awaiting its reboot).
//!
//! `SEESAW_KILL_TRIALS` (default 12), `SEESAW_KILL_SEED`, and
//! `SEESAW_KILL_IMAGE_MIB` (default 16) tune it; `tests/kill-install.sh`
//! runs 50 trials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod support;

use std::time::{Duration, Instant};

use support::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}"))
        })
        .unwrap_or(default)
}

fn contract(vars: &[(String, String)]) -> Vec<(String, String)> {
    vars.iter()
        .filter(|(k, _)| CONTRACT_VARS.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn get<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
    vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn flipped_to_b(vars: &[(String, String)]) -> bool {
    get(vars, "BOOT_ORDER") == Some("B A") && get(vars, "BOOT_B_LEFT") == Some("3")
}

fn pending_b(state: &serde_json::Value) -> bool {
    state["pending"]["slot"] == "B"
}

/// Back to a board that never saw seesaw: factory environment, no state,
/// booted A.
fn reset(board: &Board) {
    board.reset_env();
    let _ = std::fs::remove_file(board.path("data/state.json"));
    let _ = std::fs::remove_file(board.path("data/install.json"));
    let _ = std::fs::remove_file(board.path("data/resume.json"));
    board.set_cmdline("A");
}

/// Installs over D-Bus and waits for `Completed(0)`; returns the time taken.
async fn install_to_the_end(api: &Api, bundle: &str) -> Duration {
    let rec = Recorder::start(api).await;
    let t = Instant::now();
    api.install(bundle, false).await.expect("Install");
    let (at, code, m) = rec.completed(0, Duration::from_secs(600)).await;
    assert_eq!(code, 0, "install: {m}");
    at.duration_since(t)
}

#[derive(Debug, Default)]
struct Tally {
    /// The restarted daemon resumed the interrupted install by itself.
    resumed: usize,
    /// Killed before the install wrote anything.
    nothing_happened: usize,
    /// Killed while writing: the journal was left, the restart said so.
    interrupted: usize,
    /// Killed after the old pending install was taken off (BOOT_B_LEFT=0)
    /// but before the journal was written.
    invalidated_previous: usize,
    /// The install had completed (flipped, pending B).
    completed: usize,
    /// Killed after the environment write that takes the awaiting install's
    /// tries away but before the state was saved.
    killed_between_env_and_state: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_of_an_install() {
    let trials = env_u64("SEESAW_KILL_TRIALS", 12);
    let seed = env_u64("SEESAW_KILL_SEED", 0x5EE5_A11C_0DE5_0001);
    let image_mib = env_u64("SEESAW_KILL_IMAGE_MIB", 16);
    eprintln!("kill -9 trials: {trials}, seed {seed:#x} (SEESAW_KILL_SEED), image {image_mib} MiB");
    let t0 = Instant::now();
    let board = Board::new(image_mib);
    let bundle = board.bundle("v2.bundle", "2.0.0", 5).display().to_string();
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let a_bytes = board.read("slot-a.img");
    let factory_other = board.non_contract_vars();

    // How long an install takes here, to spread the kills across it.
    let mut d = Daemon::start(&board, &bus, &api).await;
    let duration = install_to_the_end(&api, &bundle).await;
    d.proc.terminate(Duration::from_secs(10));
    api.wait_name_gone().await;
    eprintln!("one install over D-Bus: {:.2} s", duration.as_secs_f64());
    let span_ms = (duration.as_millis() as u64).max(200) * 12 / 10;

    let mut rng = Rng(seed | 1);
    let mut tally = Tally::default();
    for trial in 0..trials {
        if trial == 0 || rng.below(3) == 0 {
            reset(&board);
        }
        let vars_before = board.env_vars();
        let state_before = board.state();
        let was_awaiting = flipped_to_b(&vars_before) && pending_b(&state_before);
        let delay_ms = match rng.below(10) {
            0 => rng.below(30),                    // at once
            1 => span_ms + rng.below(span_ms / 2), // after it ended
            _ => rng.below(span_ms),               // during
        };

        let mut d = Daemon::start(&board, &bus, &api).await;
        let started = Instant::now();
        api.install(&bundle, false).await.expect("Install");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        d.proc.kill9();
        let killed_at = started.elapsed();
        api.wait_name_gone().await;

        // ---- What the kill left behind.
        let what = format!(
            "trial {trial}: killed {:.0} ms into the install (delay {delay_ms} ms), \
             continuing from {}",
            killed_at.as_secs_f64() * 1000.0,
            if was_awaiting {
                "awaiting-reboot"
            } else {
                "idle"
            }
        );
        assert!(
            board.read("slot-a.img") == a_bytes,
            "{what}: slot A changed"
        );
        let vars = board.env_vars();
        let state = board.state();
        let journal = board.path("data/install.json").exists();
        assert_eq!(
            board.non_contract_vars(),
            factory_other,
            "{what}: a variable outside the boot contract changed"
        );
        assert_eq!(
            get(&vars, "BOOT_A_LEFT"),
            get(&vars_before, "BOOT_A_LEFT"),
            "{what}"
        );
        if contract(&vars) == contract(&vars_before) {
            // Unchanged (possibly already flipped from an earlier install).
        } else if flipped_to_b(&vars) {
            assert!(
                pending_b(&state),
                "{what}: environment flipped to B but state.json has no install pending for B:\n{state:#}"
            );
        } else if was_awaiting
            && get(&vars, "BOOT_B_LEFT") == Some("0")
            && get(&vars, "BOOT_ORDER") == Some("A")
        {
            // The new install began by taking the old one out of U-Boot's
            // reach (off the boot order, no tries), so U-Boot cannot boot a
            // half-written B. The
            // state may not have caught up yet (environment first): then the
            // restart below must not mistake it for a rollback.
            if pending_b(&state) {
                tally.killed_between_env_and_state += 1;
            }
        } else {
            panic!(
                "{what}: unexpected boot contract {:?} (before {:?})",
                contract(&vars),
                contract(&vars_before)
            );
        }

        // ---- The restarted daemon's start-up analysis. An install the kill
        // interrupted is resumed from its source by the restarted daemon:
        // wait for that to end first.
        let d2 = Daemon::start(&board, &bus, &api).await;
        // The start-up analysis keeps an interrupted install's record with
        // its source; the daemon then restarts that install by itself.
        let resumes = std::fs::read_to_string(board.path("data/resume.json"))
            .is_ok_and(|t| t.contains("\"source\":\""));
        if resumes {
            tally.resumed += 1;
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut seen = false;
            loop {
                let op = api.string_prop("Operation").await;
                seen |= op == "installing";
                let done = !board.path("data/resume.json").exists() && op != "installing";
                if (seen && op != "installing") || done || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let after = board.state();
        let vars2 = board.env_vars();
        let op = api.string_prop("Operation").await;
        let last_error = api.string_prop("LastError").await;
        assert!(
            !board.path("data/install.json").exists(),
            "{what}: the journal survived the restart"
        );
        // 2.0.0 never booted: whatever the kill interrupted, it is no rollback.
        assert_ne!(
            after["last_result"]["kind"], "rolled-back",
            "{what}: the restart reported a rollback of a version that never booted \
             (state before the restart: {state:#})\nafter: {after:#}"
        );
        assert!(
            after["failed_versions"]
                .as_array()
                .map_or(true, |v| v.is_empty()),
            "{what}: the restart deny-listed a version that never booted:\n{after:#}"
        );
        if flipped_to_b(&vars2) {
            // U-Boot will boot B next: the state must know what is there.
            assert!(
                pending_b(&after) && after["slot_b"].is_object(),
                "{what}: environment boots B next but the restarted daemon forgot the install \
                 (journal was {}):\n{after:#}",
                if journal { "present" } else { "absent" }
            );
            assert_eq!(op, "awaiting-reboot", "{what}");
        } else {
            assert!(
                !pending_b(&after),
                "{what}: pending B but not flipped:\n{after:#}"
            );
            assert_eq!(op, "idle", "{what}");
        }
        if journal && !flipped_to_b(&vars2) {
            assert_eq!(
                after["last_result"]["kind"], "interrupted",
                "{what}:\n{after:#}"
            );
            assert!(
                after["slot_b"].is_null(),
                "{what}: B's record kept:\n{after:#}"
            );
            assert!(
                last_error.contains("interrupted"),
                "{what}: LastError {last_error:?}"
            );
        }

        // ---- Then a fresh install succeeds, or it had completed.
        if op == "awaiting-reboot" {
            if was_awaiting && !journal && state == state_before {
                tally.nothing_happened += 1;
            } else {
                tally.completed += 1;
            }
        } else {
            if journal {
                tally.interrupted += 1;
            } else if was_awaiting {
                tally.invalidated_previous += 1;
            } else {
                tally.nothing_happened += 1;
            }
            install_to_the_end(&api, &bundle).await;
            assert!(
                flipped_to_b(&board.env_vars()),
                "{what}: not flipped after a fresh install"
            );
            assert_eq!(api.string_prop("Operation").await, "awaiting-reboot");
        }
        assert!(
            board.read("slot-a.img") == a_bytes,
            "{what}: slot A changed"
        );
        assert_eq!(board.non_contract_vars(), factory_other, "{what}");
        let mut d2 = d2;
        d2.proc.terminate(Duration::from_secs(10));
        api.wait_name_gone().await;
    }
    eprintln!(
        "{trials} kill -9 trials in {:.1} s: {tally:?}",
        t0.elapsed().as_secs_f64()
    );
}

/// The deterministic form of the narrowest window above: the daemon dies
/// after the environment write that flips to B but before the install
/// journal is removed (with or without the `flipped` mark saved). The image
/// in B was verified before any of this; U-Boot boots B next. The restarted
/// daemon must not forget that install (it forgets it and reports
/// "interrupted" while the environment still boots B, so the trial boot of
/// B has nothing pending: no health gate, no commit, and a silent fallback
/// after three boots).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_after_the_flip_does_not_forget_the_install() {
    for flipped_saved in [false, true] {
        let board = Board::new(4);
        let bundle = board.bundle("v2.bundle", "2.0.0", 5);
        // A complete install, standalone (no daemon on this address).
        let out = run_bounded(
            std::process::Command::new(seesaw_bin())
                .arg("--config")
                .arg(board.config())
                .arg("--bus-address")
                .arg(format!("unix:path={}", board.path("no-bus.sock").display()))
                .arg("install")
                .arg(&bundle),
            Duration::from_secs(300),
        );
        assert!(out.status.success(), "{out:?}");
        assert!(flipped_to_b(&board.env_vars()));
        // What the disk holds if the process died right after the
        // environment write (Save(before_flip), WriteEnv | Save(flipped),
        // EndJournal): the journal still there.
        let mut state = board.state();
        state["pending"]["flipped"] = flipped_saved.into();
        std::fs::write(
            board.path("data/state.json"),
            serde_json::to_vec_pretty(&state).unwrap(),
        )
        .unwrap();
        std::fs::write(
            board.path("data/install.json"),
            r#"{"slot":"B","started":"2026-11-21T12:00:00Z"}"#,
        )
        .unwrap();

        let bus = Bus::start(board.dir.path(), "");
        let api = Api::connect(&bus.address).await;
        let _d = Daemon::start(&board, &bus, &api).await;
        let after = board.state();
        assert!(
            flipped_to_b(&board.env_vars()),
            "the environment still boots B next"
        );
        assert!(
            pending_b(&after) && after["slot_b"].is_object(),
            "flipped mark saved: {flipped_saved}; the environment boots B next, but the \
             restarted daemon forgot the verified install in B:\n{after:#}"
        );
        assert_eq!(api.string_prop("Operation").await, "awaiting-reboot");
    }
}

/// The deterministic form of another window: the board awaits the reboot
/// into B (2.0.0 installed and flipped to), a new install starts, and the
/// daemon dies right after the first action, the environment write that
/// takes B's tries away (`BOOT_B_LEFT=0`), before the state without the
/// pending install is saved. 2.0.0 never booted, yet the restarted daemon
/// reports "rolled back ... new slot did not confirm after 3 boots" and
/// deny-lists 2.0.0 (the disk looks exactly like a fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_while_invalidating_the_awaiting_install_is_no_rollback() {
    let board = Board::new(4);
    let bundle = board.bundle("v2.bundle", "2.0.0", 5);
    let out = run_bounded(
        std::process::Command::new(seesaw_bin())
            .arg("--config")
            .arg(board.config())
            .arg("--bus-address")
            .arg(format!("unix:path={}", board.path("no-bus.sock").display()))
            .arg("install")
            .arg(&bundle),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(flipped_to_b(&board.env_vars()));
    // What a kill right after InstallStarted's first two actions leaves:
    // the install journal naming B, then WriteEnv(mark_bad(B)), nothing else.
    seesaw::state::StateStore::new(&board.path("data"))
        .begin_journal(seesaw::slot::Slot::B, "2026-11-21T12:00:00Z")
        .unwrap();
    {
        use seesaw::uboot_env::{BootEnv, UbootEnv};
        UbootEnv::open(&board.path("fw_env.config"))
            .unwrap()
            .write_vars(&[("BOOT_B_LEFT", Some("0"))])
            .unwrap();
    }
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let _d = Daemon::start(&board, &bus, &api).await;
    let after = board.state();
    assert_ne!(
        after["last_result"]["kind"], "rolled-back",
        "a version that never booted is reported rolled back:\n{after:#}"
    );
    assert!(
        after["failed_versions"]
            .as_array()
            .map_or(true, |v| v.is_empty()),
        "a version that never booted is deny-listed:\n{after:#}"
    );
    assert!(
        !api.string_prop("LastError").await.contains("rolled back"),
        "LastError reports a rollback"
    );
}

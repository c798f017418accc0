//! The update lifecycle as a pure state machine: `(situation, event) ->
//! actions`.
//!
//! ```text
//! Idle ─► Installing ─► AwaitingReboot ─► (reboot) ─► Trial ─► healthy ─► commit ─► Idle
//!   ▲        │ fails                                    │ unhealthy: mark bad, reboot
//!   └────────┘                                          ▼
//!   └──────────── old slot boots with the install pending: rolled back ◄──────
//! ```
//!
//! Owns every decision about the persisted [`State`] and the boot contract
//! variables: which to change, in which order, and what to report. Does not
//! write anything: it returns [`Action`]s that the caller carries out in
//! order (`updater` for the library and CLI, `daemon` for the service), so
//! every cell is a unit test over plain values. Time is an argument.

use crate::manifest::Manifest;
use crate::slot::{BootState, Slot, VarUpdate, DEFAULT_TRIES};
use crate::state::{LastResult, Pending, ResultKind, SlotRecord, State};

/// Where the device is in the lifecycle, derived from the persisted state,
/// the install journal, the booted slot and the boot contract variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing in progress.
    Idle,
    /// An install into `slot` is in progress (or was, if the process died).
    Installing {
        /// The slot being written.
        slot: Slot,
    },
    /// `slot` is written and flipped to; the board has not rebooted into it.
    AwaitingReboot {
        /// The new slot.
        slot: Slot,
    },
    /// The board runs the new `slot` on trial: commit or roll back.
    Trial {
        /// The new slot, which is also the booted one.
        slot: Slot,
    },
}

impl Phase {
    /// The name used for the D-Bus `Operation` property and `status`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Installing { .. } => "installing",
            Phase::AwaitingReboot { .. } => "awaiting-reboot",
            Phase::Trial { .. } => "trial",
        }
    }
}

/// Everything a decision depends on, as plain values.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// The persisted state.
    pub state: &'a State,
    /// The slot that is running.
    pub booted: Slot,
    /// The boot contract variables as they are now.
    pub boot: &'a BootState,
    /// The slot named by the in-flight install journal, if one exists.
    pub installing: Option<Slot>,
    /// Whether failed installs are recorded in the state (the daemon
    /// reports them; a standalone command prints them and changes nothing).
    pub record_failures: bool,
    /// The current time, RFC 3339.
    pub now: &'a str,
}

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The daemon started (after a boot or a restart).
    Started,
    /// A verified bundle is about to be written into `target`.
    InstallStarted {
        /// The inactive slot.
        target: Slot,
    },
    /// The install into `target` failed; `reason` is the error.
    InstallFailed {
        /// The slot that was being written.
        target: Slot,
        /// The error, one line.
        reason: String,
    },
    /// `target` now holds `manifest`'s image, verified by read-back.
    InstallFinished {
        /// The slot written.
        target: Slot,
        /// The verified manifest.
        manifest: Box<Manifest>,
    },
    /// The health gate passed on a trial boot.
    HealthPassed,
    /// The health gate failed on a trial boot.
    HealthFailed {
        /// What failed, one line.
        reason: String,
    },
    /// An operator or the CLI marked the booted slot good.
    MarkGood,
    /// An operator or the CLI marked `slot` bad.
    MarkBad {
        /// The slot.
        slot: Slot,
    },
}

/// What the caller must do, in order. If one fails, the caller stops and
/// puts back the state it loaded before the first [`Action::Save`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Persist this state (atomically).
    Save(Box<State>),
    /// Write these boot contract variables in ONE environment write.
    WriteEnv(Vec<VarUpdate>),
    /// Create the in-flight install journal naming this slot.
    BeginJournal(Slot),
    /// Remove the in-flight install journal.
    EndJournal,
    /// Keep what the journal recorded so the next install of the same
    /// bundle re-checks written chunks instead of fetching them again.
    /// `auto`: the install was interrupted (not failed), so the daemon may
    /// restart it from its source by itself.
    KeepForResume {
        /// Whether to keep the source for an automatic restart.
        auto: bool,
    },
    /// Run the health gate for the trial of this slot, then send
    /// [`Event::HealthPassed`] or [`Event::HealthFailed`].
    RunHealthGate(Slot),
    /// Reboot the board.
    Reboot,
    /// Tell people (log, D-Bus `Completed`, fleet status); already saved.
    Report(LastResult),
}

/// Events that are not allowed in the current phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another install is in progress.
    #[error("an install into slot {0} is already in progress")]
    Busy(Slot),
    /// The running slot is an uncommitted trial; writing the other slot
    /// would destroy the only known-good fallback.
    #[error("slot {0} is running on trial and not committed; run mark-good or mark-bad first")]
    TrialNotCommitted(Slot),
}

/// The phase the device is in.
pub fn phase(s: &Situation<'_>) -> Phase {
    if let Some(slot) = s.installing {
        return Phase::Installing { slot };
    }
    match &s.state.pending {
        None => Phase::Idle,
        Some(p) if p.slot == s.booted => Phase::Trial { slot: p.slot },
        Some(p) if p.flipped && s.boot.primary() == Some(p.slot) => {
            Phase::AwaitingReboot { slot: p.slot }
        }
        // Flipped but the old slot runs and is first again (rolled back),
        // or never flipped: settled by Event::Started.
        Some(_) => Phase::Idle,
    }
}

fn result(kind: ResultKind, version: Option<&str>, message: String, now: &str) -> LastResult {
    LastResult {
        kind,
        version: version.map(str::to_string),
        message,
        at: now.to_string(),
    }
}

/// Decides what `event` means in situation `s`.
///
/// Errors: [`Refusal`] for an install while another runs or while the
/// running slot is an uncommitted trial. Every other event is accepted;
/// one that means nothing in the current phase yields no actions.
pub fn step(s: &Situation<'_>, event: Event) -> Result<Vec<Action>, Refusal> {
    let now = s.now;
    let mut state = s.state.clone();
    let mut boot = s.boot.clone();
    let ph = phase(s);
    Ok(match event {
        Event::Started => started(s, ph),

        Event::InstallStarted { target } => {
            match ph {
                Phase::Installing { slot } => return Err(Refusal::Busy(slot)),
                Phase::Trial { slot } => return Err(Refusal::TrialNotCommitted(slot)),
                _ => {}
            }
            // The journal comes first: from here on a restart knows the
            // slot may be partial, whatever else was done.
            let mut actions = vec![Action::BeginJournal(target)];
            if state.pending.as_ref().is_some_and(|p| p.slot == target) {
                // A written-but-not-booted install is about to be
                // overwritten: U-Boot must not try that slot meanwhile.
                actions.push(Action::WriteEnv(boot.mark_bad(target)));
                state.pending = None;
                actions.push(Action::Save(Box::new(state)));
            }
            actions
        }

        Event::InstallFailed { target, reason } => {
            if ph != (Phase::Installing { slot: target }) {
                return Ok(Vec::new());
            }
            let mut actions = vec![Action::KeepForResume { auto: false }, Action::EndJournal];
            if s.record_failures {
                let r = result(
                    ResultKind::Failed,
                    None,
                    format!("install into slot {target} failed: {reason}"),
                    now,
                );
                state.last_result = Some(r.clone());
                // Its header is wiped: the slot no longer holds anything installed.
                state.set_slot(target, None);
                actions.push(Action::Save(Box::new(state)));
                actions.push(Action::Report(r));
            }
            actions
        }

        Event::InstallFinished { target, manifest } => {
            if ph != (Phase::Installing { slot: target }) {
                return Ok(Vec::new());
            }
            let m = *manifest;
            let r = result(
                ResultKind::Installed,
                Some(&m.version),
                format!(
                    "installed {} into slot {target}; reboot to try it",
                    m.version
                ),
                now,
            );
            state.pending = Some(Pending {
                slot: target,
                version: m.version.clone(),
                security_version: m.security_version,
                flipped: false,
                failure: None,
            });
            state.set_slot(
                target,
                Some(SlotRecord {
                    manifest: m,
                    installed_at: now.to_string(),
                }),
            );
            state.last_result = Some(r.clone());
            let before_flip = state.clone();
            if let Some(p) = state.pending.as_mut() {
                p.flipped = true;
            }
            vec![
                Action::Save(Box::new(before_flip)),
                Action::WriteEnv(boot.install(target)),
                Action::Save(Box::new(state)),
                Action::EndJournal,
                Action::Report(r),
            ]
        }

        Event::HealthPassed => match ph {
            Phase::Trial { slot } => commit(state, &mut boot, slot, "health checks passed", now),
            _ => Vec::new(),
        },

        Event::MarkGood => match ph {
            Phase::Trial { slot } => commit(state, &mut boot, slot, "marked good", now),
            _ => vec![Action::WriteEnv(boot.mark_good(s.booted))],
        },

        Event::HealthFailed { reason } => {
            match ph {
                Phase::Trial { slot } => {
                    let version = state.pending.as_ref().map(|p| p.version.clone());
                    if let Some(p) = state.pending.as_mut() {
                        p.failure = Some(format!("health check failed: {reason}"));
                    }
                    let r = result(
                    ResultKind::MarkedBad,
                    version.as_deref(),
                    format!("slot {slot} failed its health check ({reason}); rebooting into slot {}", slot.other()),
                    now,
                );
                    state.last_result = Some(r.clone());
                    vec![
                        Action::Save(Box::new(state)),
                        Action::WriteEnv(boot.mark_bad(slot)),
                        Action::Report(r),
                        Action::Reboot,
                    ]
                }
                _ => Vec::new(),
            }
        }

        Event::MarkBad { slot } => {
            let updates = boot.mark_bad(slot);
            match state.pending.clone() {
                Some(p) if p.slot == slot => {
                    state.pending = None;
                    deny(&mut state, &p.version);
                    let r = result(
                        ResultKind::MarkedBad,
                        Some(&p.version),
                        format!(
                            "slot {slot} marked bad; version {} is deny-listed",
                            p.version
                        ),
                        now,
                    );
                    state.last_result = Some(r.clone());
                    vec![
                        Action::WriteEnv(updates),
                        Action::Save(Box::new(state)),
                        Action::Report(r),
                    ]
                }
                _ => vec![Action::WriteEnv(updates)],
            }
        }
    })
}

fn deny(state: &mut State, version: &str) {
    if !state.failed_versions.iter().any(|v| v == version) {
        state.failed_versions.push(version.to_string());
    }
}

/// Environment first, then state: a power cut in between only repeats the
/// commit on the next start.
fn commit(mut state: State, boot: &mut BootState, slot: Slot, why: &str, now: &str) -> Vec<Action> {
    let Some(p) = state.pending.take() else {
        return Vec::new();
    };
    state.floor = state.floor.max(p.security_version);
    let r = result(
        ResultKind::Committed,
        Some(&p.version),
        format!(
            "committed {} in slot {slot} ({why}); anti-rollback floor is now {}",
            p.version, state.floor
        ),
        now,
    );
    state.last_result = Some(r.clone());
    vec![
        Action::WriteEnv(boot.mark_good(slot)),
        Action::Save(Box::new(state)),
        Action::Report(r),
    ]
}

/// The start-up analysis: what happened while the daemon was not running.
fn started(s: &Situation<'_>, ph: Phase) -> Vec<Action> {
    let mut state = s.state.clone();
    let now = s.now;
    if let Phase::Installing { slot } = ph {
        let mut boot = s.boot.clone();
        if let Some(p) = state.pending.clone().filter(|p| p.slot == slot) {
            // Killed while flipping: the image was verified (the pending
            // install is saved only after the read-back), so finish the flip.
            if let Some(q) = state.pending.as_mut() {
                q.flipped = true;
            }
            let r = result(
                ResultKind::Installed,
                Some(&p.version),
                format!("installed {} into slot {slot}; reboot to try it", p.version),
                now,
            );
            state.last_result = Some(r.clone());
            return vec![
                Action::WriteEnv(boot.install(slot)),
                Action::Save(Box::new(state)),
                Action::EndJournal,
                Action::Report(r),
            ];
        }
        // The process died mid-install: the slot holds part of an image,
        // which U-Boot must never try.
        state.set_slot(slot, None);
        let r = result(
            ResultKind::Interrupted,
            None,
            format!("install into slot {slot} was interrupted; install again"),
            now,
        );
        state.last_result = Some(r.clone());
        return vec![
            Action::WriteEnv(boot.mark_bad(slot)),
            Action::Save(Box::new(state)),
            Action::KeepForResume { auto: true },
            Action::EndJournal,
            Action::Report(r),
        ];
    }
    let Some(p) = state.pending.clone() else {
        return Vec::new();
    };
    if p.slot == s.booted {
        let mut actions = Vec::new();
        if !p.flipped {
            // We booted it, so the environment write did complete.
            if let Some(q) = state.pending.as_mut() {
                q.flipped = true;
            }
            actions.push(Action::Save(Box::new(state)));
        }
        actions.push(Action::RunHealthGate(p.slot));
        return actions;
    }
    if !p.flipped {
        state.pending = None;
        let r = result(
            ResultKind::Interrupted,
            Some(&p.version),
            format!(
                "install of {} into slot {} was interrupted before the boot order was changed; install again",
                p.version, p.slot
            ),
            now,
        );
        state.last_result = Some(r.clone());
        return vec![Action::Save(Box::new(state)), Action::Report(r)];
    }
    if s.boot.primary() == Some(p.slot) {
        return Vec::new(); // restarted before the reboot
    }
    state.pending = None;
    deny(&mut state, &p.version);
    let reason = p
        .failure
        .clone()
        .unwrap_or_else(|| format!("new slot did not confirm after {DEFAULT_TRIES} boots"));
    let r = result(
        ResultKind::RolledBack,
        Some(&p.version),
        format!(
            "rolled back from {} in slot {} to slot {}: {reason}",
            p.version, p.slot, s.booted
        ),
        now,
    );
    state.last_result = Some(r.clone());
    vec![Action::Save(Box::new(state)), Action::Report(r)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Chunk, Compression, Image};

    const NOW: &str = "2026-11-21T12:00:00Z";

    fn manifest(version: &str, sv: u64) -> Manifest {
        let h = "ab".repeat(32);
        Manifest {
            format: 1,
            compatible: "b".into(),
            version: version.into(),
            security_version: sv,
            created: NOW.into(),
            expires: None,
            targets: None,
            images: vec![Image {
                slot_class: "rootfs".into(),
                size: 4096,
                sha256: h.clone(),
                chunk_size: 4096,
                chunks: vec![Chunk {
                    sha256: h,
                    stored_size: 10,
                }],
                compression: Compression::Zstd,
                payload_offset: 0,
                payload_size: 10,
                payload_file: None,
                blocks: None,
            }],
        }
    }

    fn pending(slot: Slot, flipped: bool, failure: Option<&str>) -> State {
        State {
            floor: 1,
            pending: Some(Pending {
                slot,
                version: "2.0.0".into(),
                security_version: 5,
                flipped,
                failure: failure.map(str::to_string),
            }),
            ..State::default()
        }
    }

    fn boot(order: &[Slot], a: u8, b: u8) -> BootState {
        BootState {
            order: order.to_vec(),
            a_left: a,
            b_left: b,
        }
    }

    fn run(
        state: &State,
        booted: Slot,
        b: &BootState,
        installing: Option<Slot>,
        event: Event,
    ) -> Result<Vec<Action>, Refusal> {
        step(
            &Situation {
                state,
                booted,
                boot: b,
                installing,
                record_failures: true,
                now: NOW,
            },
            event,
        )
    }

    fn saved(actions: &[Action]) -> Vec<&State> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Save(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }

    fn last_kind(actions: &[Action]) -> Option<ResultKind> {
        saved(actions)
            .last()
            .and_then(|s| s.last_result.as_ref().map(|r| r.kind))
    }

    use Slot::{A, B};

    #[test]
    fn phases() {
        let idle = State::default();
        let ab = boot(&[A, B], 3, 3);
        let ba = boot(&[B, A], 3, 3);
        let sit = |state, booted, b, installing| Situation {
            state,
            booted,
            boot: b,
            installing,
            record_failures: false,
            now: NOW,
        };
        assert_eq!(phase(&sit(&idle, A, &ab, None)), Phase::Idle);
        assert_eq!(
            phase(&sit(&idle, A, &ab, Some(B))),
            Phase::Installing { slot: B }
        );
        let p = pending(B, true, None);
        assert_eq!(
            phase(&sit(&p, A, &ba, None)),
            Phase::AwaitingReboot { slot: B }
        );
        assert_eq!(phase(&sit(&p, B, &ba, None)), Phase::Trial { slot: B });
        assert_eq!(phase(&sit(&p, A, &ab, None)), Phase::Idle);
        let unflipped = pending(B, false, None);
        assert_eq!(phase(&sit(&unflipped, A, &ab, None)), Phase::Idle);
        assert_eq!(Phase::Trial { slot: A }.name(), "trial");
    }

    // ---- Started, one cell per phase ----

    #[test]
    fn started_idle_does_nothing() {
        assert_eq!(
            run(
                &State::default(),
                A,
                &boot(&[A, B], 3, 3),
                None,
                Event::Started
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn started_after_an_interrupted_install_forgets_the_slot() {
        let st = State {
            slot_b: Some(SlotRecord {
                manifest: manifest("1.0.0", 1),
                installed_at: NOW.into(),
            }),
            ..State::default()
        };
        let actions = run(&st, A, &boot(&[A, B], 3, 3), Some(B), Event::Started).unwrap();
        assert_eq!(
            actions[0],
            Action::WriteEnv(vec![("BOOT_B_LEFT", "0".into())])
        );
        let s = saved(&actions);
        assert_eq!(s.len(), 1);
        assert!(s[0].slot_b.is_none());
        assert_eq!(last_kind(&actions), Some(ResultKind::Interrupted));
        assert!(actions.contains(&Action::EndJournal));
    }

    #[test]
    fn started_after_a_kill_during_the_flip_finishes_the_flip() {
        for flipped in [false, true] {
            let st = pending(B, flipped, None);
            let actions = run(&st, A, &boot(&[A, B], 3, 0), Some(B), Event::Started).unwrap();
            assert_eq!(
                actions[0],
                Action::WriteEnv(vec![
                    ("BOOT_ORDER", "B A".into()),
                    ("BOOT_B_LEFT", "3".into())
                ])
            );
            let s = saved(&actions)[0];
            assert!(s.pending.as_ref().unwrap().flipped);
            assert!(s.failed_versions.is_empty());
            assert_eq!(last_kind(&actions), Some(ResultKind::Installed));
            assert!(actions.contains(&Action::EndJournal));
        }
    }

    #[test]
    fn started_on_the_new_slot_runs_the_health_gate() {
        let st = pending(B, true, None);
        assert_eq!(
            run(&st, B, &boot(&[B, A], 3, 2), None, Event::Started),
            Ok(vec![Action::RunHealthGate(B)])
        );
        // Booted into it although the flag was not saved: the flip happened.
        let st = pending(B, false, None);
        let actions = run(&st, B, &boot(&[B, A], 3, 2), None, Event::Started).unwrap();
        assert!(saved(&actions)[0].pending.as_ref().unwrap().flipped);
        assert_eq!(actions.last(), Some(&Action::RunHealthGate(B)));
    }

    #[test]
    fn started_before_the_reboot_waits() {
        let st = pending(B, true, None);
        assert_eq!(
            run(&st, A, &boot(&[B, A], 3, 3), None, Event::Started),
            Ok(vec![])
        );
    }

    #[test]
    fn started_on_the_old_slot_after_failed_boots_is_a_rollback() {
        let st = pending(B, true, None);
        let actions = run(&st, A, &boot(&[B, A], 2, 0), None, Event::Started).unwrap();
        let s = saved(&actions);
        assert!(s[0].pending.is_none());
        assert_eq!(s[0].failed_versions, vec!["2.0.0".to_string()]);
        let r = s[0].last_result.as_ref().unwrap();
        assert_eq!(r.kind, ResultKind::RolledBack);
        assert!(
            r.message.contains("new slot did not confirm after 3 boots"),
            "{}",
            r.message
        );
    }

    #[test]
    fn started_after_a_health_failure_reports_its_reason() {
        let st = pending(
            B,
            true,
            Some("health check failed: unit app.service is failed"),
        );
        let actions = run(&st, A, &boot(&[B, A], 2, 0), None, Event::Started).unwrap();
        let r = saved(&actions)[0].last_result.clone().unwrap();
        assert_eq!(r.kind, ResultKind::RolledBack);
        assert!(r.message.contains("app.service"), "{}", r.message);
    }

    #[test]
    fn started_after_a_flip_that_never_happened_is_not_a_rollback() {
        let st = pending(B, false, None);
        let actions = run(&st, A, &boot(&[A, B], 3, 0), None, Event::Started).unwrap();
        let s = saved(&actions)[0];
        assert!(s.pending.is_none());
        assert!(s.failed_versions.is_empty());
        assert_eq!(last_kind(&actions), Some(ResultKind::Interrupted));
    }

    // ---- InstallStarted ----

    #[test]
    fn install_started_from_idle_opens_the_journal() {
        assert_eq!(
            run(
                &State::default(),
                A,
                &boot(&[A, B], 3, 3),
                None,
                Event::InstallStarted { target: B }
            ),
            Ok(vec![Action::BeginJournal(B)])
        );
    }

    #[test]
    fn install_started_is_refused_while_busy_or_on_trial() {
        let b = boot(&[B, A], 3, 2);
        assert_eq!(
            run(
                &State::default(),
                A,
                &b,
                Some(B),
                Event::InstallStarted { target: B }
            ),
            Err(Refusal::Busy(B))
        );
        assert_eq!(
            run(
                &pending(B, true, None),
                B,
                &b,
                None,
                Event::InstallStarted { target: A }
            ),
            Err(Refusal::TrialNotCommitted(B))
        );
    }

    #[test]
    fn install_started_over_an_unbooted_install_takes_it_out_of_the_boot_order() {
        let actions = run(
            &pending(B, true, None),
            A,
            &boot(&[B, A], 3, 3),
            None,
            Event::InstallStarted { target: B },
        )
        .unwrap();
        assert_eq!(actions[0], Action::BeginJournal(B));
        assert_eq!(
            actions[1],
            Action::WriteEnv(vec![("BOOT_B_LEFT", "0".into())])
        );
        assert!(saved(&actions)[0].pending.is_none());
    }

    // ---- InstallFailed / InstallFinished ----

    #[test]
    fn install_failed_closes_the_journal_and_records_only_if_asked() {
        let st = State {
            slot_b: Some(SlotRecord {
                manifest: manifest("1.0.0", 1),
                installed_at: NOW.into(),
            }),
            ..State::default()
        };
        let b = boot(&[A, B], 3, 3);
        let ev = || Event::InstallFailed {
            target: B,
            reason: "chunk 3 does not match".into(),
        };
        let actions = run(&st, A, &b, Some(B), ev()).unwrap();
        assert_eq!(actions[0], Action::KeepForResume { auto: false });
        assert_eq!(actions[1], Action::EndJournal);
        assert_eq!(last_kind(&actions), Some(ResultKind::Failed));
        assert!(
            saved(&actions)[0].slot_b.is_none(),
            "slot marked as not installed"
        );
        let quiet = step(
            &Situation {
                state: &st,
                booted: A,
                boot: &b,
                installing: Some(B),
                record_failures: false,
                now: NOW,
            },
            ev(),
        )
        .unwrap();
        assert_eq!(
            quiet,
            vec![Action::KeepForResume { auto: false }, Action::EndJournal]
        );
        // Outside an install it means nothing.
        assert_eq!(run(&st, A, &b, None, ev()), Ok(vec![]));
    }

    #[test]
    fn install_finished_saves_unflipped_flips_then_saves_flipped() {
        let actions = run(
            &State::default(),
            A,
            &boot(&[A, B], 3, 0),
            Some(B),
            Event::InstallFinished {
                target: B,
                manifest: Box::new(manifest("2.0.0", 5)),
            },
        )
        .unwrap();
        let s = saved(&actions);
        assert_eq!(s.len(), 2);
        assert!(!s[0].pending.as_ref().unwrap().flipped);
        assert!(s[1].pending.as_ref().unwrap().flipped);
        assert_eq!(s[1].slot_b.as_ref().unwrap().manifest.version, "2.0.0");
        assert_eq!(
            actions[1],
            Action::WriteEnv(vec![
                ("BOOT_ORDER", "B A".into()),
                ("BOOT_B_LEFT", "3".into())
            ])
        );
        assert!(matches!(actions[0], Action::Save(_)));
        assert!(matches!(actions[2], Action::Save(_)));
        assert_eq!(actions[3], Action::EndJournal);
        assert_eq!(s[1].floor, 0, "the floor rises only on commit");
        // Not installing: nothing.
        assert_eq!(
            run(
                &State::default(),
                A,
                &boot(&[A, B], 3, 0),
                None,
                Event::InstallFinished {
                    target: B,
                    manifest: Box::new(manifest("2.0.0", 5))
                }
            ),
            Ok(vec![])
        );
    }

    // ---- HealthPassed / HealthFailed / MarkGood / MarkBad ----

    #[test]
    fn health_passed_on_trial_commits_env_first() {
        let actions = run(
            &pending(B, true, None),
            B,
            &boot(&[B, A], 3, 2),
            None,
            Event::HealthPassed,
        )
        .unwrap();
        assert_eq!(
            actions[0],
            Action::WriteEnv(vec![("BOOT_B_LEFT", "3".into())])
        );
        let s = saved(&actions)[0];
        assert_eq!(s.floor, 5);
        assert!(s.pending.is_none());
        assert_eq!(last_kind(&actions), Some(ResultKind::Committed));
        // Anywhere else it means nothing.
        for (st, booted) in [(State::default(), A), (pending(B, true, None), A)] {
            assert_eq!(
                run(&st, booted, &boot(&[B, A], 3, 3), None, Event::HealthPassed),
                Ok(vec![])
            );
        }
    }

    #[test]
    fn health_failed_on_trial_records_marks_bad_and_reboots() {
        let actions = run(
            &pending(B, true, None),
            B,
            &boot(&[B, A], 3, 2),
            None,
            Event::HealthFailed {
                reason: "system is degraded".into(),
            },
        )
        .unwrap();
        let s = saved(&actions)[0];
        assert!(s
            .pending
            .as_ref()
            .unwrap()
            .failure
            .as_ref()
            .unwrap()
            .contains("degraded"));
        assert_eq!(s.last_result.as_ref().unwrap().kind, ResultKind::MarkedBad);
        assert_eq!(
            actions[1],
            Action::WriteEnv(vec![("BOOT_B_LEFT", "0".into())])
        );
        assert_eq!(actions.last(), Some(&Action::Reboot));
        assert_eq!(
            run(
                &State::default(),
                A,
                &boot(&[A, B], 3, 3),
                None,
                Event::HealthFailed { reason: "x".into() }
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn mark_good_commits_a_trial_or_resets_tries() {
        let actions = run(
            &pending(B, true, None),
            B,
            &boot(&[B, A], 3, 2),
            None,
            Event::MarkGood,
        )
        .unwrap();
        assert_eq!(last_kind(&actions), Some(ResultKind::Committed));
        assert_eq!(
            run(
                &State::default(),
                A,
                &boot(&[A, B], 1, 3),
                None,
                Event::MarkGood
            ),
            Ok(vec![Action::WriteEnv(vec![("BOOT_A_LEFT", "3".into())])])
        );
    }

    #[test]
    fn mark_bad_deny_lists_a_pending_version_or_just_marks() {
        let actions = run(
            &pending(B, true, None),
            B,
            &boot(&[B, A], 3, 2),
            None,
            Event::MarkBad { slot: B },
        )
        .unwrap();
        assert_eq!(
            actions[0],
            Action::WriteEnv(vec![("BOOT_B_LEFT", "0".into())])
        );
        let s = saved(&actions)[0];
        assert!(s.pending.is_none());
        assert_eq!(s.failed_versions, vec!["2.0.0".to_string()]);
        assert_eq!(
            run(
                &State::default(),
                A,
                &boot(&[A, B], 3, 3),
                None,
                Event::MarkBad { slot: B }
            ),
            Ok(vec![Action::WriteEnv(vec![("BOOT_B_LEFT", "0".into())])])
        );
        // Deny-listing twice keeps one entry.
        let mut st = pending(B, true, None);
        st.failed_versions.push("2.0.0".into());
        let actions = run(
            &st,
            A,
            &boot(&[B, A], 3, 3),
            None,
            Event::MarkBad { slot: B },
        )
        .unwrap();
        assert_eq!(saved(&actions)[0].failed_versions.len(), 1);
    }
}

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

use crate::events::Entry;
use crate::manifest::Manifest;
use crate::slot::{BootState, Slot, VarUpdate, DEFAULT_TRIES, VAR_FLOOR};
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
    /// The anti-rollback floor kept in the bootloader environment
    /// ([`VAR_FLOOR`]; 0 when unset or not a number). The floor in force is
    /// the higher of this and `state.floor`.
    pub env_floor: u64,
}

impl Situation<'_> {
    /// The anti-rollback floor in force: the highest of the places that
    /// keep it (the state file and the bootloader environment).
    pub fn floor(&self) -> u64 {
        self.state.floor.max(self.env_floor)
    }
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
    /// Emit this journal event ([`Entry::emit`]): placed after the writes
    /// it reports, so it is logged only once they are done.
    Log(Entry),
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
    /// Marking the running slot bad would leave U-Boot no slot to fall
    /// back to (the other one has no tries left or is not in the boot
    /// order): the scripts' last resort would boot the running slot again,
    /// or one holding part of an image.
    #[error(
        "slot {0} is the only slot U-Boot would boot (slot {other} has no tries left or is not in BOOT_ORDER); marking it bad would leave nothing to fall back to",
        other = .0.other()
    )]
    NoFallback(Slot),
}

/// The phase the device is in.
///
/// A journal naming the booted slot is stale (that slot could only boot
/// after its install flipped) and does not count. A pending install whose
/// slot is U-Boot's first choice has been flipped to, whatever the saved
/// flag says: the target of an install is out of U-Boot's reach from the
/// moment its install starts ([`BootState::begin_install`]) until the flip.
pub fn phase(s: &Situation<'_>) -> Phase {
    if let Some(slot) = s.installing.filter(|j| *j != s.booted) {
        return Phase::Installing { slot };
    }
    match &s.state.pending {
        None => Phase::Idle,
        Some(p) if p.slot == s.booted => Phase::Trial { slot: p.slot },
        Some(p) if s.boot.primary() == Some(p.slot) => Phase::AwaitingReboot { slot: p.slot },
        // The old slot runs and is first again (rolled back), or the flip
        // was never written: settled by Event::Started.
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
            // slot may be partial, whatever else was done. Then U-Boot
            // loses every way to boot the target until the flip, even a
            // written-but-not-booted install there.
            let mut actions = vec![Action::BeginJournal(target)];
            let updates = boot.begin_install(target);
            if !updates.is_empty() {
                // Twice: both copies of a redundant environment then say
                // so, and losing the newer copy cannot bring the target
                // back within U-Boot's reach.
                actions.push(Action::WriteEnv(updates.clone()));
                actions.push(Action::WriteEnv(updates));
            }
            if state.pending.as_ref().is_some_and(|p| p.slot == target) {
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
            let version = m.version.clone();
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
            let entry = Entry::install_completed(target, &version, r.message.clone());
            vec![
                Action::Save(Box::new(before_flip)),
                Action::WriteEnv(boot.install(target)),
                Action::Save(Box::new(state)),
                Action::EndJournal,
                Action::Log(entry),
                Action::Report(r),
            ]
        }

        Event::HealthPassed => match ph {
            Phase::Trial { slot } => commit(s, state, &mut boot, slot, "health checks passed"),
            _ => Vec::new(),
        },

        Event::MarkGood => match ph {
            Phase::Trial { slot } => commit(s, state, &mut boot, slot, "marked good"),
            _ => vec![Action::WriteEnv(boot.mark_good(s.booted))],
        },

        Event::HealthFailed { reason } => {
            match ph {
                Phase::Trial { slot } if !s.boot.is_fallback(slot.other()) => {
                    no_fallback(s, state, slot, &reason)
                }
                Phase::Trial { slot } => {
                    let version = state.pending.as_ref().map(|p| p.version.clone());
                    let why = format!("health check failed: {reason}");
                    if let Some(p) = state.pending.as_mut() {
                        p.failure = Some(why.clone());
                    }
                    let r = result(
                    ResultKind::MarkedBad,
                    version.as_deref(),
                    format!("slot {slot} failed its health check ({reason}); rebooting into slot {}", slot.other()),
                    now,
                );
                    state.last_result = Some(r.clone());
                    let entry =
                        Entry::marked_bad(slot, version.as_deref(), &why, r.message.clone());
                    vec![
                        Action::Save(Box::new(state)),
                        Action::WriteEnv(boot.mark_bad(slot)),
                        Action::Log(entry),
                        Action::Report(r),
                        Action::Reboot,
                    ]
                }
                _ => Vec::new(),
            }
        }

        Event::MarkBad { slot } => {
            if slot == s.booted && !s.boot.is_fallback(slot.other()) {
                return Err(Refusal::NoFallback(slot));
            }
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
                    let entry = Entry::marked_bad(
                        slot,
                        Some(&p.version),
                        MARKED_BY_REQUEST,
                        r.message.clone(),
                    );
                    vec![
                        Action::WriteEnv(updates),
                        Action::Save(Box::new(state)),
                        Action::Log(entry),
                        Action::Report(r),
                    ]
                }
                _ => {
                    // Nothing pending there: only its tries change, but
                    // U-Boot no longer boots it, which people look for.
                    let version = s.state.slot(slot).map(|r| r.manifest.version.clone());
                    let message = match &version {
                        Some(v) => format!("slot {slot} (version {v}) marked bad"),
                        None => format!("slot {slot} marked bad"),
                    };
                    vec![
                        Action::WriteEnv(updates),
                        Action::Log(Entry::marked_bad(
                            slot,
                            version.as_deref(),
                            MARKED_BY_REQUEST,
                            message,
                        )),
                    ]
                }
            }
        }
    })
}

/// A trial whose health check failed while the other slot is no
/// fallback (no tries left or out of the boot order: an install into it
/// was interrupted, it was marked bad, or the saved state is older than
/// the environment). Marking the trial bad would leave U-Boot nothing to
/// boot but the scripts' last resort, which starts the same slot again (a
/// reboot loop) or, with the other slot in the order, one holding part of
/// an image. So the running slot stays: its trial ends, its version is
/// deny-listed, nothing reboots, and from the next boot on it gets its
/// tries back like any committed slot, so an install can repair the other
/// slot. The floor is not raised.
fn no_fallback(s: &Situation<'_>, mut state: State, slot: Slot, reason: &str) -> Vec<Action> {
    let Some(p) = state.pending.take() else {
        return Vec::new();
    };
    deny(&mut state, &p.version);
    let r = result(
        ResultKind::Failed,
        Some(&p.version),
        format!(
            "slot {slot} failed its health check ({reason}), but slot {} is no fallback \
             (no tries left or not in BOOT_ORDER): staying on slot {slot}; install an update \
             to repair the device",
            slot.other()
        ),
        s.now,
    );
    state.last_result = Some(r.clone());
    let entry = Entry::no_fallback(
        slot,
        &p.version,
        &format!("health check failed: {reason}"),
        r.message.clone(),
    );
    vec![
        Action::Save(Box::new(state)),
        Action::Log(entry),
        Action::Report(r),
    ]
}

/// The reason of a mark-bad asked for by an operator (CLI, D-Bus `Mark`).
const MARKED_BY_REQUEST: &str = "requested with mark-bad (CLI or D-Bus Mark)";

fn deny(state: &mut State, version: &str) {
    if !state.failed_versions.iter().any(|v| v == version) {
        state.failed_versions.push(version.to_string());
    }
}

/// Environment first, then state: a power cut in between only repeats the
/// commit on the next start (the pending install is still there, so the
/// next start is still a trial with its health gate). The raised floor goes
/// into the environment in the same write as the tries.
fn commit(
    s: &Situation<'_>,
    mut state: State,
    boot: &mut BootState,
    slot: Slot,
    why: &str,
) -> Vec<Action> {
    let Some(p) = state.pending.take() else {
        return Vec::new();
    };
    state.floor = s.floor().max(p.security_version);
    let r = result(
        ResultKind::Committed,
        Some(&p.version),
        format!(
            "committed {} in slot {slot} ({why}); anti-rollback floor is now {}",
            p.version, state.floor
        ),
        s.now,
    );
    state.last_result = Some(r.clone());
    let entry = Entry::commit(slot, &p.version, why, r.message.clone());
    let mut updates = boot.mark_good(slot);
    if s.env_floor != state.floor {
        updates.push((VAR_FLOOR, state.floor.to_string()));
    }
    vec![
        Action::WriteEnv(updates),
        Action::Save(Box::new(state)),
        Action::Log(entry),
        Action::Report(r),
    ]
}

/// The start-up analysis: what happened while the daemon was not running.
///
/// 1. A journal for the other slot: the install's process died. If its
///    flip is in the environment (the slot is U-Boot's first choice), the
///    install is complete; otherwise the slot may be partial: U-Boot loses
///    it, its record goes, and the install is kept for resuming.
/// 2. The pending install: a trial of the booted slot runs the health
///    gate (and gets no tries back: only a trial consumes them); an install
///    waiting for the reboot waits; one whose slot U-Boot left behind has
///    rolled back (deny-listed); one whose flip never happened is reported
///    interrupted.
/// 3. Any boot that is not a trial is a boot of a committed slot: it gets
///    back the try the boot script took, and unless an install waits for
///    the reboot it is first in the boot order. So a committed slot boots
///    again after any number of boots.
/// 4. The floor is the highest of the state's and the environment's; each
///    place that has less is brought up to it.
///
/// Environment first, then state, then the journal: a power cut anywhere
/// repeats the same analysis on the next start.
fn started(s: &Situation<'_>, ph: Phase) -> Vec<Action> {
    let now = s.now;
    let mut state = s.state.clone();
    let mut boot = s.boot.clone();
    let mut reports = Vec::new();
    let mut resume = false;
    let end_journal = s.installing.is_some();
    if let Phase::Installing { slot } = ph {
        // Complete exactly when its flip is in the environment: a saved
        // flag with the slot out of U-Boot's reach means a newer install
        // began over it (and took its tries) before it died.
        let done = state
            .pending
            .as_ref()
            .is_some_and(|p| p.slot == slot && s.boot.primary() == Some(slot));
        if !done {
            // Died mid-install or before its flip was written: the slot may
            // hold part of an image, which U-Boot must never try.
            boot.begin_install(slot);
            state.set_slot(slot, None);
            let mut version = None;
            if state.pending.as_ref().is_some_and(|p| p.slot == slot) {
                version = state.pending.take().map(|p| p.version);
            }
            reports.push((
                Entry::install_failed(
                    Some(slot),
                    version.as_deref(),
                    "interrupted: the process stopped before the install finished",
                ),
                result(
                    ResultKind::Interrupted,
                    None,
                    format!("install into slot {slot} was interrupted; install again"),
                    now,
                ),
            ));
            resume = true;
        }
    }
    let mut followups = Vec::new();
    let mut committed_boot = true;
    match state.pending.clone() {
        None => {}
        Some(p) if p.slot == s.booted => {
            committed_boot = false;
            if let Some(q) = state.pending.as_mut() {
                // We booted it, so the environment write did complete.
                q.flipped = true;
            }
            followups.push(Action::RunHealthGate(p.slot));
        }
        Some(p) if boot.primary() == Some(p.slot) => {
            // Restarted before the reboot into it.
            if !p.flipped {
                if let Some(q) = state.pending.as_mut() {
                    q.flipped = true;
                }
                let r = result(
                    ResultKind::Installed,
                    Some(&p.version),
                    format!(
                        "installed {} into slot {}; reboot to try it",
                        p.version, p.slot
                    ),
                    now,
                );
                reports.push((
                    Entry::install_completed(p.slot, &p.version, r.message.clone()),
                    r,
                ));
            }
            boot.give_back_tries(s.booted);
        }
        Some(p) if p.flipped => {
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
            reports.push((
                Entry::rollback(p.slot, &p.version, &reason, r.message.clone()),
                r,
            ));
        }
        Some(p) => {
            state.pending = None;
            reports.push((
                Entry::install_failed(
                    Some(p.slot),
                    Some(&p.version),
                    "interrupted before the boot order was changed",
                ),
                result(
                    ResultKind::Interrupted,
                    Some(&p.version),
                    format!(
                        "install of {} into slot {} was interrupted before the boot order was changed; install again",
                        p.version, p.slot
                    ),
                    now,
                ),
            ));
        }
    }
    if committed_boot {
        boot.give_back_tries(s.booted);
        if !state
            .pending
            .as_ref()
            .is_some_and(|p| boot.primary() == Some(p.slot))
        {
            boot.put_first(s.booted);
        }
    }
    let floor = s.floor();
    state.floor = floor;
    if let Some((_, r)) = reports.last() {
        state.last_result = Some(r.clone());
    }
    let mut updates = boot.changes_from(s.boot);
    if s.env_floor != floor {
        updates.push((VAR_FLOOR, floor.to_string()));
    }
    let mut actions = Vec::new();
    if resume {
        // A slot that may be partial: both copies of the environment must
        // keep it out of reach, even if the install's own second write was
        // cut off (an empty write refreshes the older copy).
        actions.push(Action::WriteEnv(updates));
        actions.push(Action::WriteEnv(Vec::new()));
    } else if !updates.is_empty() {
        actions.push(Action::WriteEnv(updates));
    }
    if state != *s.state {
        actions.push(Action::Save(Box::new(state)));
    }
    if resume {
        actions.push(Action::KeepForResume { auto: true });
    }
    if end_journal {
        actions.push(Action::EndJournal);
    }
    for (entry, r) in reports {
        actions.push(Action::Log(entry));
        actions.push(Action::Report(r));
    }
    actions.extend(followups);
    actions
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
                env_floor: state.floor,
            },
            event,
        )
    }

    /// The boot contract after the environment writes among `actions`.
    fn apply(b: &BootState, actions: &[Action]) -> BootState {
        let mut vars: Vec<(String, String)> = b
            .to_updates()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for a in actions {
            if let Action::WriteEnv(updates) = a {
                for (k, v) in updates {
                    vars.retain(|(n, _)| n != k);
                    vars.push((k.to_string(), v.clone()));
                }
            }
        }
        BootState::from_pairs(&vars)
    }

    fn env_writes(actions: &[Action]) -> Vec<&Vec<VarUpdate>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::WriteEnv(u) => Some(u),
                _ => None,
            })
            .collect()
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
            env_floor: 0,
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
            Action::WriteEnv(vec![
                ("BOOT_ORDER", "A".into()),
                ("BOOT_B_LEFT", "0".into())
            ])
        );
        assert!(actions.contains(&Action::KeepForResume { auto: true }));
        let s = saved(&actions);
        assert_eq!(s.len(), 1);
        assert!(s[0].slot_b.is_none());
        assert_eq!(last_kind(&actions), Some(ResultKind::Interrupted));
        assert!(actions.contains(&Action::EndJournal));
    }

    #[test]
    fn started_after_a_kill_around_the_flip_trusts_the_environment() {
        // The flip was written, the flag not saved: the install is complete.
        let st = pending(B, false, None);
        let actions = run(&st, A, &boot(&[B, A], 3, 3), Some(B), Event::Started).unwrap();
        assert!(env_writes(&actions).is_empty(), "{actions:?}");
        let s = saved(&actions)[0];
        assert!(s.pending.as_ref().unwrap().flipped);
        assert_eq!(last_kind(&actions), Some(ResultKind::Installed));
        assert!(actions.contains(&Action::EndJournal));
        // The flag saved: nothing to report again.
        let st = pending(B, true, None);
        let actions = run(&st, A, &boot(&[B, A], 3, 3), Some(B), Event::Started).unwrap();
        assert_eq!(actions, vec![Action::EndJournal]);
        // The flip never reached the environment: the slot may be partial
        // (and is out of reach already).
        for flipped in [false, true] {
            let st = pending(B, flipped, None);
            let actions = run(&st, A, &boot(&[A, B], 3, 0), Some(B), Event::Started).unwrap();
            // Nothing to change, but both copies are refreshed.
            let writes = env_writes(&actions);
            assert_eq!(writes.len(), 2, "{actions:?}");
            assert!(writes.iter().all(|w| w.is_empty()), "{actions:?}");
            let s = saved(&actions)[0];
            assert!(s.pending.is_none());
            assert!(
                s.failed_versions.is_empty(),
                "a newer install began: no rollback"
            );
            assert_eq!(last_kind(&actions), Some(ResultKind::Interrupted));
        }
        let st = pending(B, false, None);
        let actions = run(&st, A, &boot(&[A, B], 3, 0), Some(B), Event::Started).unwrap();
        let s = saved(&actions)[0];
        assert!(s.pending.is_none());
        assert!(s.slot_b.is_none());
        assert!(s.failed_versions.is_empty());
        assert_eq!(last_kind(&actions), Some(ResultKind::Interrupted));
        assert!(actions.contains(&Action::KeepForResume { auto: true }));
    }

    #[test]
    fn a_journal_naming_the_booted_slot_is_stale() {
        let st = pending(B, true, None);
        let actions = run(&st, B, &boot(&[B, A], 3, 2), Some(B), Event::Started).unwrap();
        assert_eq!(actions, vec![Action::EndJournal, Action::RunHealthGate(B)]);
    }

    #[test]
    fn a_committed_slot_boots_again_after_any_number_of_boots() {
        // Committed B, then many power-ons, each followed by a start.
        let mut b = boot(&[B, A], 3, 3);
        let st = State::default();
        for n in 0..20 {
            match b.select_boot() {
                crate::slot::BootChoice::Boot { slot, .. } => assert_eq!(slot, B, "boot {n}"),
                other => panic!("boot {n}: {other:?}"),
            }
            let actions = run(&st, B, &b, None, Event::Started).unwrap();
            b = apply(&b, &actions);
            assert_eq!((b.primary(), b.b_left), (Some(B), 3), "after boot {n}");
        }
        // The same for the factory slot A with the default environment.
        let mut b = boot(&[A, B], 3, 3);
        for n in 0..20 {
            assert!(
                matches!(
                    b.select_boot(),
                    crate::slot::BootChoice::Boot { slot: A, .. }
                ),
                "{n}"
            );
            b = apply(&b, &run(&st, A, &b, None, Event::Started).unwrap());
        }
    }

    #[test]
    fn a_trial_gets_no_tries_back() {
        let st = pending(B, true, None);
        for left in [2, 1, 0] {
            let actions = run(&st, B, &boot(&[B, A], 3, left), None, Event::Started).unwrap();
            assert!(env_writes(&actions).is_empty(), "{actions:?}");
        }
    }

    #[test]
    fn waiting_for_the_reboot_keeps_the_order_and_gives_back_tries() {
        let st = pending(B, true, None);
        let actions = run(&st, A, &boot(&[B, A], 2, 3), None, Event::Started).unwrap();
        assert_eq!(
            actions,
            vec![Action::WriteEnv(vec![("BOOT_A_LEFT", "3".into())])]
        );
    }

    #[test]
    fn a_rollback_puts_the_old_slot_first_again() {
        let st = pending(B, true, None);
        let actions = run(&st, A, &boot(&[B, A], 2, 0), None, Event::Started).unwrap();
        assert_eq!(
            env_writes(&actions),
            vec![&vec![
                ("BOOT_ORDER", "A B".into()),
                ("BOOT_A_LEFT", "3".into())
            ]]
        );
        assert_eq!(last_kind(&actions), Some(ResultKind::RolledBack));
    }

    #[test]
    fn the_floor_is_the_highest_place_and_both_catch_up() {
        let sit = |state: &State, env_floor| {
            step(
                &Situation {
                    state,
                    booted: A,
                    boot: &boot(&[A, B], 3, 3),
                    installing: None,
                    record_failures: true,
                    now: NOW,
                    env_floor,
                },
                Event::Started,
            )
            .unwrap()
        };
        // state.json lost or replaced by an older copy: the environment wins.
        let old = State {
            floor: 2,
            ..State::default()
        };
        let actions = sit(&old, 7);
        assert!(env_writes(&actions).is_empty());
        assert_eq!(saved(&actions)[0].floor, 7);
        // The environment lost its copy: written back.
        let actions = sit(
            &State {
                floor: 7,
                ..State::default()
            },
            0,
        );
        assert_eq!(
            env_writes(&actions),
            vec![&vec![("SEESAW_FLOOR", "7".into())]]
        );
        assert!(saved(&actions).is_empty());
        // A commit raises both at once, from the higher.
        let mut st = pending(B, true, None);
        st.floor = 1;
        let actions = step(
            &Situation {
                state: &st,
                booted: B,
                boot: &boot(&[B, A], 3, 2),
                installing: None,
                record_failures: true,
                now: NOW,
                env_floor: 9,
            },
            Event::MarkGood,
        )
        .unwrap();
        assert_eq!(saved(&actions)[0].floor, 9);
        assert_eq!(
            env_writes(&actions),
            vec![&vec![("BOOT_B_LEFT", "3".into())]]
        );
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
            Ok(vec![
                Action::BeginJournal(B),
                Action::WriteEnv(vec![
                    ("BOOT_ORDER", "A".into()),
                    ("BOOT_B_LEFT", "0".into())
                ]),
                Action::WriteEnv(vec![
                    ("BOOT_ORDER", "A".into()),
                    ("BOOT_B_LEFT", "0".into())
                ])
            ])
        );
        // Already out of reach: no write.
        assert_eq!(
            run(
                &State::default(),
                A,
                &boot(&[A, B], 3, 0),
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
            Action::WriteEnv(vec![
                ("BOOT_ORDER", "A".into()),
                ("BOOT_B_LEFT", "0".into())
            ])
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
                env_floor: 0,
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
            Action::WriteEnv(vec![
                ("BOOT_B_LEFT", "3".into()),
                ("SEESAW_FLOOR", "5".into())
            ])
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
    fn a_trial_with_no_fallback_stays_when_its_health_fails() {
        // The other slot is out of the order (an interrupted install), has
        // no tries left, or both: marking B bad would leave U-Boot nothing.
        for b in [boot(&[B], 0, 2), boot(&[B, A], 0, 2), boot(&[B], 3, 2)] {
            let actions = run(
                &pending(B, true, None),
                B,
                &b,
                None,
                Event::HealthFailed {
                    reason: "system is degraded".into(),
                },
            )
            .unwrap();
            assert!(env_writes(&actions).is_empty(), "{b:?}: {actions:?}");
            assert!(!actions.contains(&Action::Reboot), "{b:?}: {actions:?}");
            let s = saved(&actions)[0];
            assert!(s.pending.is_none(), "{b:?}: the trial ends");
            assert_eq!(s.failed_versions, vec!["2.0.0".to_string()]);
            let r = s.last_result.as_ref().unwrap();
            assert_eq!(r.kind, ResultKind::Failed);
            assert!(r.message.contains("no fallback"), "{}", r.message);
            assert!(actions
                .iter()
                .any(|a| matches!(a, Action::Log(e) if e.id == crate::events::NO_FALLBACK)));
            // From the next boot on it is a committed slot: tries back, and
            // it boots again and again.
            let mut env = apply(&b, &actions);
            for n in 0..10 {
                match env.select_boot() {
                    crate::slot::BootChoice::Boot { slot, .. } => assert_eq!(slot, B, "boot {n}"),
                    other => panic!("boot {n}: {other:?}"),
                }
                let actions = run(s, B, &env, None, Event::Started).unwrap();
                env = apply(&env, &actions);
                assert_eq!(env.b_left, DEFAULT_TRIES);
            }
        }
    }

    #[test]
    fn mark_bad_of_the_only_bootable_slot_is_refused() {
        for st in [pending(B, true, None), State::default()] {
            for b in [boot(&[B], 0, 2), boot(&[B, A], 0, 3), boot(&[B], 3, 3)] {
                assert_eq!(
                    run(&st, B, &b, None, Event::MarkBad { slot: B }),
                    Err(Refusal::NoFallback(B)),
                    "{b:?}"
                );
            }
            // With a fallback it is done; the other slot may always be marked.
            for slot in [B, A] {
                let with_fallback = boot(&[B, A], 3, 2);
                assert!(run(&st, B, &with_fallback, None, Event::MarkBad { slot }).is_ok());
            }
        }
        let why = Refusal::NoFallback(B).to_string();
        assert!(why.contains("slot A has no tries left"), "{why}");
    }

    #[test]
    fn a_stale_trial_over_an_interrupted_install_never_boots_the_partial_slot() {
        // B is committed; an install into A dies (A partial); then the
        // saved state is an older copy that says B is on trial. Whatever
        // the health checks say, U-Boot never starts A.
        let mut env = boot(&[B, A], 0, 3);
        let actions = run(
            &State::default(),
            B,
            &env,
            None,
            Event::InstallStarted { target: A },
        )
        .unwrap();
        env = apply(&env, &actions);
        let stale = pending(B, true, None);
        let mut st = stale.clone();
        for n in 0..12 {
            let booted = match env.select_boot() {
                crate::slot::BootChoice::Boot { slot, .. } => slot,
                crate::slot::BootChoice::ResetTries => continue,
            };
            assert_eq!(booted, B, "boot {n}");
            let mut actions = run(&st, booted, &env, None, Event::Started).unwrap();
            if actions.contains(&Action::RunHealthGate(B)) {
                actions.extend(
                    run(
                        &st,
                        booted,
                        &env,
                        None,
                        Event::HealthFailed { reason: "x".into() },
                    )
                    .unwrap(),
                );
            }
            env = apply(&env, &actions);
            if let Some(last) = saved(&actions).last() {
                st = (*last).clone();
            }
        }
        assert!(st.pending.is_none());
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
            Ok(vec![
                Action::WriteEnv(vec![("BOOT_B_LEFT", "0".into())]),
                Action::Log(Entry::marked_bad(
                    B,
                    None,
                    MARKED_BY_REQUEST,
                    "slot B marked bad".into()
                )),
            ])
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

    // ---- journal events ----

    /// The journal entries among `actions`, each checked to come after
    /// every write of the step (so it is logged only once they are done).
    fn logged(actions: &[Action]) -> Vec<&Entry> {
        let last_write = actions
            .iter()
            .rposition(|a| matches!(a, Action::Save(_) | Action::WriteEnv(_)));
        actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Action::Log(e) => {
                    assert!(last_write.map_or(true, |w| w < i), "logged before a write");
                    Some(e)
                }
                _ => None,
            })
            .collect()
    }

    /// `(id, slot, version, reason contains)` of the one entry logged.
    fn one_entry(actions: &[Action]) -> (&'static str, Option<Slot>, Option<&str>, String) {
        let entries = logged(actions);
        assert_eq!(entries.len(), 1, "{entries:?}");
        let e = entries[0];
        (
            e.id,
            e.slot,
            e.version.as_deref(),
            e.reason.clone().unwrap_or_default(),
        )
    }

    #[test]
    fn each_change_logs_one_entry_with_slot_version_and_reason() {
        use crate::events::{COMMIT, INSTALL_COMPLETED, INSTALL_FAILED, MARKED_BAD, ROLLBACK};
        let finished = run(
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
        assert_eq!(
            one_entry(&finished),
            (INSTALL_COMPLETED, Some(B), Some("2.0.0"), String::new())
        );

        let trial = pending(B, true, None);
        let on_trial = boot(&[B, A], 2, 3);
        let commit = run(&trial, B, &on_trial, None, Event::MarkGood).unwrap();
        assert_eq!(
            one_entry(&commit),
            (COMMIT, Some(B), Some("2.0.0"), "marked good".into())
        );
        let healthy = run(&trial, B, &on_trial, None, Event::HealthPassed).unwrap();
        assert_eq!(
            one_entry(&healthy),
            (
                COMMIT,
                Some(B),
                Some("2.0.0"),
                "health checks passed".into()
            )
        );

        let unhealthy = run(
            &trial,
            B,
            &on_trial,
            None,
            Event::HealthFailed {
                reason: "unit app.service is failed".into(),
            },
        )
        .unwrap();
        assert_eq!(
            one_entry(&unhealthy),
            (
                MARKED_BAD,
                Some(B),
                Some("2.0.0"),
                "health check failed: unit app.service is failed".into()
            )
        );
        let marked = run(&trial, B, &on_trial, None, Event::MarkBad { slot: B }).unwrap();
        assert_eq!(
            one_entry(&marked),
            (MARKED_BAD, Some(B), Some("2.0.0"), MARKED_BY_REQUEST.into())
        );

        // The rollback names the new slot, not the running one.
        let failed = pending(B, true, Some("health check failed: x"));
        let back = run(&failed, A, &boot(&[A, B], 3, 0), None, Event::Started).unwrap();
        assert_eq!(
            one_entry(&back),
            (
                ROLLBACK,
                Some(B),
                Some("2.0.0"),
                "health check failed: x".into()
            )
        );
        let timed_out = run(&trial, A, &boot(&[B, A], 2, 0), None, Event::Started).unwrap();
        assert_eq!(
            one_entry(&timed_out),
            (
                ROLLBACK,
                Some(B),
                Some("2.0.0"),
                "new slot did not confirm after 3 boots".into()
            )
        );

        let died = run(
            &State::default(),
            A,
            &boot(&[A, B], 3, 0),
            Some(B),
            Event::Started,
        )
        .unwrap();
        let (id, slot, version, reason) = one_entry(&died);
        assert_eq!((id, slot, version), (INSTALL_FAILED, Some(B), None));
        assert!(reason.contains("interrupted"), "{reason}");

        // Nothing to report: nothing logged.
        let idle = run(
            &State::default(),
            A,
            &boot(&[A, B], 3, 0),
            None,
            Event::Started,
        )
        .unwrap();
        assert!(logged(&idle).is_empty());
        let reset = run(
            &State::default(),
            A,
            &boot(&[A, B], 1, 3),
            None,
            Event::MarkGood,
        )
        .unwrap();
        assert!(logged(&reset).is_empty());
        // A failed install is logged by the install itself, recorded or not.
        let fail = run(
            &State::default(),
            A,
            &boot(&[A, B], 3, 0),
            Some(B),
            Event::InstallFailed {
                target: B,
                reason: "x".into(),
            },
        )
        .unwrap();
        assert!(logged(&fail).is_empty());
    }
}

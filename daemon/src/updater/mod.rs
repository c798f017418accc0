//! The operations every front end calls: install a bundle, report status,
//! mark a slot good (commit) or bad.
//!
//! Owns the order of side effects: every check first, then the slot write,
//! then the persisted state, then ONE bootloader environment write. Errors
//! detected before the slot write change nothing at all; the running slot is
//! never written. Does no argument parsing and no printing.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::bundle::{BundleError, FetchError};
use crate::config::{Config, ConfigError};
use crate::failure::{Classify, Kind};
use crate::install::{self, InstallError};
use crate::lifecycle::{self, Action, Event, Phase, Refusal, Situation};
use crate::manifest::{format_time, ManifestError};
use crate::slot::{booted_slot_from_cmdline, BootState, Slot, SlotError, VAR_FLOOR};
use crate::state::{LastResult, Pending, StateError, StateStore};
use crate::transport::TransportError;
use crate::uboot_env::{BootEnv, EnvError, UbootEnv};

mod installing;

/// Errors of the updater operations; each wraps the failing layer's typed error.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Configuration or trust keys.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bundle file, envelope or signature.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Manifest refused for this device.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Bootloader environment.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// Boot contract values.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// Persisted state.
    #[error(transparent)]
    State(#[from] StateError),
    /// Writing the slot.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The kernel command line could not be read.
    #[error("failed to read kernel command line {path}: {source}")]
    ReadCmdline {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The target slot's size could not be determined.
    #[error("failed to open slot device {path}: {source}")]
    SlotDevice {
        /// The device.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not allowed in the current phase of the lifecycle.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Fetching over the network failed or was refused.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The thread running the operation panicked: a bug, not a fault of the
    /// device or the bundle. Only where panics unwind (debug builds and
    /// tests); the release profile aborts the process on a panic instead,
    /// and systemd's restart and the start's analysis of an interrupted
    /// install take over.
    #[error("{operation} stopped unexpectedly: {reason}")]
    Panicked {
        /// What was running, e.g. `install`.
        operation: String,
        /// The panic's message.
        reason: String,
    },
}

impl UpdateError {
    /// The error for an operation whose blocking task did not return (it
    /// panicked or its runtime shut down).
    pub fn panicked(operation: &str, e: tokio::task::JoinError) -> UpdateError {
        UpdateError::Panicked {
            operation: operation.to_string(),
            reason: e.to_string(),
        }
    }
}

impl From<FetchError> for UpdateError {
    fn from(e: FetchError) -> UpdateError {
        match e {
            FetchError::Transport(e) => UpdateError::Transport(e),
            FetchError::Bundle(e) => UpdateError::Bundle(e),
        }
    }
}

impl Classify for UpdateError {
    fn kind(&self) -> Kind {
        match self {
            UpdateError::Config(e) => e.kind(),
            UpdateError::Bundle(e) => e.kind(),
            UpdateError::Manifest(e) => e.kind(),
            UpdateError::Env(e) => e.kind(),
            UpdateError::Slot(e) => e.kind(),
            UpdateError::State(e) => e.kind(),
            UpdateError::Install(e) => e.kind(),
            UpdateError::ReadCmdline { .. } | UpdateError::SlotDevice { .. } => Kind::Io,
            UpdateError::Refused(_) => Kind::State,
            UpdateError::Transport(e) => e.kind(),
            UpdateError::Panicked { .. } => Kind::Internal,
        }
    }
}

/// Options of an install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Install even if the version is deny-listed (it rolled back before).
    pub force: bool,
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The slot written.
    pub slot: Slot,
    /// The version installed.
    pub version: String,
    /// Image size, bytes.
    pub size: u64,
    /// Bytes received over the network (0 for a local bundle).
    pub downloaded: u64,
}

impl InstallReport {
    fn downloaded(mut self, bytes: u64) -> InstallReport {
        self.downloaded = bytes;
        self
    }
}

/// One slot in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    /// The slot.
    pub slot: Slot,
    /// Its device.
    pub device: PathBuf,
    /// `BOOT_x_LEFT`.
    pub tries_left: u8,
    /// Whether it is the running slot.
    pub booted: bool,
    /// Version seesaw installed there, if any.
    pub version: Option<String>,
    /// Its security version.
    pub security_version: Option<u64>,
    /// Whether the slot still starts with the recorded image (`None` if no record).
    pub intact: Option<bool>,
}

/// The device's update status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This device's compatible.
    pub compatible: String,
    /// Lifecycle phase: `idle`, `installing`, `awaiting-reboot` or `trial`.
    pub operation: &'static str,
    /// The running slot.
    pub booted: Slot,
    /// The slot U-Boot tries first.
    pub primary: Option<Slot>,
    /// `BOOT_ORDER`.
    pub boot_order: String,
    /// Both slots.
    pub slots: Vec<SlotStatus>,
    /// The install awaiting commit.
    pub pending: Option<Pending>,
    /// Whether a commit is pending for the running slot (a trial boot).
    pub commit_pending: bool,
    /// Anti-rollback floor.
    pub floor: u64,
    /// Last result.
    pub last_result: Option<LastResult>,
    /// Deny-listed versions.
    pub failed_versions: Vec<String>,
    /// What the daemon reports, if one runs.
    pub daemon: Option<DaemonStatus>,
}

/// The running daemon's live view (D-Bus properties).
#[derive(Debug, Clone, Serialize)]
pub struct DaemonStatus {
    /// `Operation`.
    pub operation: String,
    /// `Progress` percent.
    pub percent: i32,
    /// `Progress` bytes done.
    pub bytes_done: u64,
    /// `Progress` bytes total.
    pub bytes_total: u64,
    /// `Progress` message.
    pub message: String,
    /// `LastError`.
    pub last_error: String,
}

/// What `mark-good` / `mark-bad` did.
#[derive(Debug, Clone, Serialize)]
pub struct MarkReport {
    /// The slot marked.
    pub slot: Slot,
    /// `good` or `bad`.
    pub state: &'static str,
    /// A sentence for people.
    pub message: String,
}

/// The updater for one device: configuration, bootloader environment, state.
pub struct Updater {
    config: Config,
    config_path: PathBuf,
    env: Box<dyn BootEnv>,
    store: StateStore,
    record_failures: bool,
    attempt: Attempt,
}

/// What the install under way has learnt so far, for its
/// [`crate::events::INSTALL_FAILED`] entry.
#[derive(Debug, Default)]
struct Attempt {
    /// The target slot, once the running slot is known.
    slot: Option<Slot>,
    /// The bundle's version, once its manifest is verified.
    version: Option<String>,
    /// Whether the flip was written: the install is then pending, not
    /// failed, whatever error a later step returns.
    flipped: bool,
}

/// What an event led to, besides what was saved and written.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Results to report (log, D-Bus, fleet), already persisted.
    pub reports: Vec<LastResult>,
    /// Actions for the caller: [`Action::RunHealthGate`], [`Action::Reboot`].
    pub followups: Vec<Action>,
}

impl Updater {
    /// Opens the device described by the configuration file at `config_path`,
    /// with its real U-Boot environment.
    ///
    /// Errors: [`UpdateError::Config`], [`UpdateError::Env`] (unparsable `fw_env.config`).
    pub fn open(config_path: &Path) -> Result<Updater, UpdateError> {
        let config = Config::load(config_path)?;
        let env = UbootEnv::open(&config.fw_env_config)?.with_lock_timeout(config.lock_wait());
        Ok(Updater::with_env(config, config_path, Box::new(env)))
    }

    /// An updater with another environment implementation (tests).
    pub fn with_env(config: Config, config_path: &Path, env: Box<dyn BootEnv>) -> Updater {
        let store = StateStore::new(&config.data_dir);
        Updater {
            config,
            config_path: config_path.into(),
            env,
            store,
            record_failures: false,
            attempt: Attempt::default(),
        }
    }

    /// Whether failed installs are recorded as the last result in the state
    /// (the daemon does; a standalone command only prints them).
    pub fn record_failures(&mut self, yes: bool) {
        self.record_failures = yes;
    }

    /// The state store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The lifecycle phase now.
    pub fn phase(&self) -> Result<Phase, UpdateError> {
        let booted = self.booted_slot()?;
        let state = self.store.load()?;
        let (boot, env_floor) = self.boot_state()?;
        let installing = self.store.journal()?;
        Ok(lifecycle::phase(&Situation {
            state: &state,
            booted,
            boot: &boot,
            installing,
            record_failures: self.record_failures,
            now: "",
            env_floor,
        }))
    }

    /// Feeds `event` to the lifecycle and carries out its actions in order.
    ///
    /// If an action fails before the environment was written, the state
    /// loaded before is put back (best effort) and the error returned. Once
    /// an environment write has succeeded the state is never put back: the
    /// environment may now boot what the saved state describes (a pending
    /// install, a trial), and the next start settles whatever the failed
    /// action left undone. The error is still returned.
    ///
    /// [`Event::Started`] while another process runs an install (it holds
    /// the install lock) settles nothing: that install is alive.
    pub fn handle(&mut self, event: Event, now: OffsetDateTime) -> Result<Outcome, UpdateError> {
        self.handle_inner(event, now).map_err(|(e, _)| e)
    }

    /// [`Updater::handle`], also saying on error whether the environment
    /// had been written.
    fn handle_inner(
        &mut self,
        event: Event,
        now: OffsetDateTime,
    ) -> Result<Outcome, (UpdateError, bool)> {
        let early = |e: UpdateError| (e, false);
        // One step at a time across processes: what is read below is what
        // the actions change.
        let _step = self
            .store
            .lock_step(self.config.lock_wait())
            .map_err(|e| early(e.into()))?;
        let _lock = if matches!(event, Event::Started)
            && self.store.journal().map_err(|e| early(e.into()))?.is_some()
        {
            match self.store.try_lock_install().map_err(|e| early(e.into()))? {
                Some(lock) => Some(lock),
                None => return Ok(Outcome::default()),
            }
        } else {
            None
        };
        if matches!(event, Event::Started) {
            let removed = self.store.remove_leftovers();
            if removed > 0 {
                log::info!("removed {removed} temporary file(s) left by an earlier process");
            }
        }
        let booted = self.booted_slot().map_err(early)?;
        let state = self.store.load().map_err(|e| early(e.into()))?;
        let (boot, env_floor) = self.boot_state().map_err(early)?;
        let installing = self.store.journal().map_err(|e| early(e.into()))?;
        let now = format_time(now);
        let actions = lifecycle::step(
            &Situation {
                state: &state,
                booted,
                boot: &boot,
                installing,
                record_failures: self.record_failures,
                now: &now,
                env_floor,
            },
            event,
        )
        .map_err(|e| early(e.into()))?;
        let mut outcome = Outcome::default();
        let mut saved = false;
        let mut env_written = false;
        for action in actions {
            let done = match action {
                Action::Save(new) => {
                    saved = true;
                    self.store.save(&new).map_err(UpdateError::from)
                }
                Action::WriteEnv(updates) => {
                    let r = self.write_env(&updates);
                    env_written |= r.is_ok();
                    r
                }
                Action::BeginJournal(slot) => self
                    .store
                    .begin_journal(slot, &now)
                    .map_err(UpdateError::from),
                Action::EndJournal => self.store.end_journal().map_err(UpdateError::from),
                Action::KeepForResume { auto } => match self.store.read_journal() {
                    Ok(Some(mut j)) if j.manifest_sha256.is_some() => {
                        if !auto {
                            j.source = None;
                        }
                        self.store.keep_for_resume(&j).map_err(UpdateError::from)
                    }
                    _ => Ok(()),
                },
                Action::Report(r) => {
                    outcome.reports.push(r);
                    Ok(())
                }
                Action::Log(entry) => {
                    entry.emit();
                    Ok(())
                }
                other @ (Action::RunHealthGate(_) | Action::Reboot) => {
                    outcome.followups.push(other);
                    Ok(())
                }
            };
            if let Err(e) = done {
                if saved && !env_written {
                    let _ = self.store.save(&state);
                }
                if env_written {
                    log::error!(
                        "the boot environment was written but a later step failed ({e:#}); \
                         the next start settles it"
                    );
                }
                return Err((e, env_written));
            }
        }
        Ok(outcome)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The running slot, from `seesaw.slot=` on the kernel command line.
    pub fn booted_slot(&self) -> Result<Slot, UpdateError> {
        let path = &self.config.cmdline;
        let text = std::fs::read_to_string(path).map_err(|source| UpdateError::ReadCmdline {
            path: path.clone(),
            source,
        })?;
        Ok(booted_slot_from_cmdline(&text)?)
    }

    /// The boot contract as U-Boot reads it, and the floor kept in the
    /// environment (0 when unset or not a decimal number).
    fn boot_state(&self) -> Result<(BootState, u64), UpdateError> {
        let vars = self.env.read_vars()?;
        let floor = vars
            .iter()
            .find(|(n, _)| n == VAR_FLOOR)
            .and_then(|(_, v)| parse_floor(v))
            .unwrap_or(0);
        Ok((BootState::from_pairs(&vars), floor))
    }

    /// The anti-rollback floor in force: the highest of the state's and
    /// the environment's.
    pub fn floor(&self) -> Result<u64, UpdateError> {
        Ok(self.store.load()?.floor.max(self.boot_state()?.1))
    }

    fn write_env(&mut self, updates: &[(&'static str, String)]) -> Result<(), UpdateError> {
        write_contract(self.env.as_mut(), updates)
    }

    /// The device's status: slots, tries, versions, pending commit, floor.
    pub fn status(&self) -> Result<Status, UpdateError> {
        let booted = self.booted_slot()?;
        let state = self.store.load()?;
        let (boot, env_floor) = self.boot_state()?;
        let slots = Slot::ALL
            .iter()
            .map(|&s| {
                let rec = state.slot(s);
                let device = self.config.slot_device(s).to_path_buf();
                SlotStatus {
                    slot: s,
                    tries_left: boot.left(s),
                    booted: s == booted,
                    version: rec.map(|r| r.manifest.version.clone()),
                    security_version: rec.map(|r| r.manifest.security_version),
                    intact: rec.map(|r| install::slot_holds_image(&device, r.manifest.rootfs())),
                    device,
                }
            })
            .collect();
        let operation = lifecycle::phase(&Situation {
            state: &state,
            booted,
            boot: &boot,
            installing: self.store.journal()?,
            record_failures: false,
            now: "",
            env_floor,
        })
        .name();
        Ok(Status {
            compatible: self.config.compatible.clone(),
            operation,
            booted,
            primary: boot.primary(),
            boot_order: boot.order_string(),
            slots,
            commit_pending: state.pending.as_ref().is_some_and(|p| p.slot == booted),
            pending: state.pending,
            floor: state.floor.max(env_floor),
            last_result: state.last_result,
            failed_versions: state.failed_versions,
            daemon: None,
        })
    }

    /// Commits the running slot: its tries are reset to full; if it holds the
    /// pending install, the anti-rollback floor is raised to its security
    /// version and the pending install is cleared (see [`lifecycle`]).
    pub fn mark_good(&mut self, now: OffsetDateTime) -> Result<MarkReport, UpdateError> {
        let booted = self.booted_slot()?;
        let outcome = self.handle(Event::MarkGood, now)?;
        Ok(MarkReport {
            slot: booted,
            state: "good",
            message: outcome
                .reports
                .last()
                .map(|r| r.message.clone())
                .unwrap_or_else(|| {
                    format!("slot {booted} marked good; no install was pending for it")
                }),
        })
    }

    /// Marks `slot` (default: the running one) bad: no tries left, so U-Boot
    /// skips it. If it held the pending install, that version is deny-listed.
    pub fn mark_bad(
        &mut self,
        slot: Option<Slot>,
        now: OffsetDateTime,
    ) -> Result<MarkReport, UpdateError> {
        let slot = match slot {
            Some(s) => s,
            None => self.booted_slot()?,
        };
        let outcome = self.handle(Event::MarkBad { slot }, now)?;
        Ok(MarkReport {
            slot,
            state: "bad",
            message: outcome
                .reports
                .last()
                .map(|r| r.message.clone())
                .unwrap_or_else(|| format!("slot {slot} marked bad")),
        })
    }
}

/// The floor as kept in the environment: decimal digits only, as written.
fn parse_floor(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn write_contract(
    env: &mut dyn BootEnv,
    updates: &[(&'static str, String)],
) -> Result<(), UpdateError> {
    let pairs: Vec<(&str, Option<&str>)> = updates
        .iter()
        .map(|(k, v)| (*k, Some(v.as_str())))
        .collect();
    env.write_vars(&pairs)?;
    Ok(())
}

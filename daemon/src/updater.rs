//! The operations every front end calls: install a bundle, report status,
//! mark a slot good (commit) or bad.
//!
//! Owns the order of side effects: every check first, then the slot write,
//! then the persisted state, then ONE bootloader environment write. Errors
//! detected before the slot write change nothing at all; the running slot is
//! never written. Does no argument parsing and no printing.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;
use time::OffsetDateTime;

use crate::bundle::{BundleError, FetchError, RawBundle, RemoteBundle};
use crate::config::{Config, ConfigError};
use crate::delta;
use crate::events::Entry;
use crate::failure::{Classify, Kind};
use crate::install::{self, FileSlot, FileSource, InstallError, Progress};
use crate::journal;
use crate::lifecycle::{self, Action, Event, Phase, Refusal, Situation};
use crate::manifest::{format_time, DeviceFacts, Manifest, ManifestError};
use crate::slot::{booted_slot_from_cmdline, BootState, Slot, SlotError, VAR_FLOOR};
use crate::state::{LastResult, Pending, State, StateError, StateStore};
use crate::transport::{Fetcher, HttpSource, TransportError};
use crate::uboot_env::{BootEnv, EnvError, UbootEnv};

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
    /// device or the bundle.
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

/// One install's request: what goes where, and what it reports to.
#[derive(Clone, Copy)]
struct Run<'a> {
    target: Slot,
    manifest: &'a Manifest,
    opts: &'a InstallOptions,
    progress: &'a dyn Progress,
    cancel: &'a AtomicBool,
    now: OffsetDateTime,
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

    /// Verifies the bundle at `path` and checks it against this device before
    /// anything is written; returns the verified manifest. Changes nothing.
    pub fn check_bundle(&self, path: &Path, now: OffsetDateTime) -> Result<Manifest, UpdateError> {
        let booted = self.booted_slot()?;
        let mut state = self.store.load()?;
        state.floor = state.floor.max(self.boot_state()?.1);
        let policy = self.config.trust_policy(&self.config_path)?;
        let bundle = RawBundle::open(path)?.verify(&policy)?;
        self.check_manifest(&bundle.manifest, booted.other(), &state, now, false)?;
        Ok(bundle.manifest)
    }

    fn check_manifest(
        &self,
        m: &Manifest,
        target: Slot,
        state: &State,
        now: OffsetDateTime,
        force: bool,
    ) -> Result<(), UpdateError> {
        let device = self.config.slot_device(target);
        let slot_size = install::device_size(device).map_err(|source| UpdateError::SlotDevice {
            path: device.into(),
            source,
        })?;
        m.check_for_device(&DeviceFacts {
            compatible: &self.config.compatible,
            device_id: self.config.device_id.as_deref(),
            groups: &self.config.groups,
            floor: state.floor,
            deny_list: if force { &[] } else { &state.failed_versions },
            slot_size,
            slot_name: target.name(),
            now,
        })?;
        Ok(())
    }

    /// Installs the one-file bundle at `path` into the inactive slot and flips
    /// the environment so the next boot tries it (`BOOT_ORDER="<new> <old>"`,
    /// `BOOT_<new>_LEFT=3`, one write).
    ///
    /// Order: read the running slot, state and environment; verify the bundle
    /// and check it against the device (nothing written if any of this fails);
    /// write and read back the slot; save the state with the install pending;
    /// write the environment (on failure the previous state is restored).
    ///
    /// Logs [`crate::events::INSTALL_STARTED`] once the bundle is verified
    /// and [`crate::events::INSTALL_COMPLETED`] after the flip, or
    /// [`crate::events::INSTALL_FAILED`] with the error, whatever failed.
    pub fn install(
        &mut self,
        path: &Path,
        opts: &InstallOptions,
        progress: &dyn Progress,
        cancel: &AtomicBool,
        now: OffsetDateTime,
    ) -> Result<InstallReport, UpdateError> {
        self.logged(|u| u.install_file(path, opts, progress, cancel, now))
    }

    /// Runs `install` and logs its failure, with what it learnt of the
    /// slot and version. A failure after the flip is not logged: the
    /// install is pending and the next start reports it.
    fn logged(
        &mut self,
        install: impl FnOnce(&mut Self) -> Result<InstallReport, UpdateError>,
    ) -> Result<InstallReport, UpdateError> {
        self.attempt = Attempt::default();
        let result = install(self);
        let attempt = std::mem::take(&mut self.attempt);
        if let Err(e) = &result {
            if !attempt.flipped {
                Entry::install_failed(attempt.slot, attempt.version.as_deref(), &format!("{e:#}"))
                    .emit();
            }
        }
        result
    }

    fn install_file(
        &mut self,
        path: &Path,
        opts: &InstallOptions,
        progress: &dyn Progress,
        cancel: &AtomicBool,
        now: OffsetDateTime,
    ) -> Result<InstallReport, UpdateError> {
        let (target, state) = self.prepare_install()?;
        let policy = self.config.trust_policy(&self.config_path)?;
        let bundle = RawBundle::open(path)?.verify(&policy)?;
        if bundle.manifest.rootfs().payload_file.is_some() {
            return Err(UpdateError::Bundle(BundleError::InvalidOption(format!(
                "{} is a network-layout manifest; install it by its URL",
                path.display()
            ))));
        }
        self.attempt.version = Some(bundle.manifest.version.clone());
        self.check_manifest(&bundle.manifest, target, &state, now, opts.force)?;
        let source = FileSource {
            file: &bundle.raw.file,
            path: &bundle.raw.path,
        };
        let resume = self.resumable(target, &bundle.manifest);
        let origin = std::path::absolute(path)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let chunks = install::StoredChunks::new(
            &source,
            bundle.image_payload_start(),
            bundle.manifest.rootfs(),
        );
        let run = Run {
            target,
            manifest: &bundle.manifest,
            opts,
            progress,
            cancel,
            now,
        };
        self.write_verified(&run, &chunks, &origin, resume)
    }

    /// Installs from `source`: an `https://` (or, if allowed, `http://`) URL
    /// of a one-file bundle or of a network layout's `manifest.dsse.json`,
    /// a `file://` URL, or a local path. See [`Updater::install`].
    pub fn install_source(
        &mut self,
        source: &str,
        opts: &InstallOptions,
        progress: &dyn Progress,
        cancel: &AtomicBool,
        now: OffsetDateTime,
    ) -> Result<InstallReport, UpdateError> {
        self.logged(|u| {
            if source.starts_with("https://") || source.starts_with("http://") {
                return u.install_url(source, opts, progress, cancel, now);
            }
            let path = source.strip_prefix("file://").unwrap_or(source);
            u.install_file(Path::new(path), opts, progress, cancel, now)
        })
    }

    fn install_url(
        &mut self,
        url: &str,
        opts: &InstallOptions,
        progress: &dyn Progress,
        cancel: &AtomicBool,
        now: OffsetDateTime,
    ) -> Result<InstallReport, UpdateError> {
        let (target, state) = self.prepare_install()?;
        let fetcher = Fetcher::new(&self.config.network)?;
        fetcher.check_url(url)?;
        let policy = self.config.trust_policy(&self.config_path)?;
        let remote = RemoteBundle::open(&fetcher, url, &policy)?;
        let manifest = &remote.manifest;
        self.attempt.version = Some(manifest.version.clone());
        self.check_manifest(manifest, target, &state, now, opts.force)?;
        let img = manifest.rootfs();
        let resume = self.resumable(target, manifest);
        let mut wanted = Vec::with_capacity(img.chunks.len());
        let mut at = remote.payload_start + img.payload_offset;
        for (i, c) in img.chunks.iter().enumerate() {
            if !resume[i] {
                wanted.push((at, c.stored_size));
            }
            at += c.stored_size;
        }
        let source = HttpSource::new(&fetcher, &remote.payload_url, &wanted);
        let limit = self.config.network.max_download_bytes;
        let run = Run {
            target,
            manifest,
            opts,
            progress,
            cancel,
            now,
        };
        if let (Some(store), true) = (&img.blocks, self.config.network.delta) {
            let running = target.other();
            let request = delta::PlanRequest {
                url,
                store,
                image: img,
                running,
                running_dev: self.config.slot_device(running),
                kept: self.kept().load(running, &self.store.load()?),
                resume: &resume,
                threads: opts.threads,
                cancel,
            };
            let plan = match delta::plan(&fetcher, request) {
                // The index could not be fetched: the full payload still can.
                Err(FetchError::Transport(e)) => {
                    log::warn!("no delta: {e}; downloading the full payload");
                    None
                }
                other => Some(other?),
            };
            let full = source.planned_bytes();
            if let Some(plan) = plan.filter(|p| p.planned < full) {
                // The index is already received; the frames are to come.
                let needed = fetcher.received() + plan.planned - store.index_size;
                if limit > 0 && needed > limit {
                    return Err(TransportError::OverBudget { needed, limit }.into());
                }
                return self
                    .install_blocks(&fetcher, plan, &run, resume)
                    .map(|r| r.downloaded(fetcher.received()));
            }
        }
        let needed = fetcher.received() + source.planned_bytes();
        if limit > 0 && needed > limit {
            return Err(TransportError::OverBudget { needed, limit }.into());
        }
        let start = remote.payload_start + img.payload_offset;
        let chunks = install::StoredChunks::new(&source, start, img);
        self.write_verified(&run, &chunks, url, resume)
            .map(|r| r.downloaded(fetcher.received()))
    }

    /// A delta install following `plan`. Every chunk is still checked
    /// against the manifest before it is written; a local block that does
    /// not verify is downloaded instead.
    fn install_blocks(
        &mut self,
        fetcher: &Fetcher,
        mut plan: delta::Plan<'_>,
        run: &Run<'_>,
        resume: Vec<bool>,
    ) -> Result<InstallReport, UpdateError> {
        let img = run.manifest.rootfs();
        let store_url = plan.store_url.clone();
        let url = plan.url.clone();
        let refetch = delta::StoreRefetch {
            fetcher,
            url: &store_url,
        };
        let target_dev = self.config.slot_device(run.target).to_path_buf();
        let done = resume.clone();
        let assembler = plan.assembler(img.chunk_size, &target_dev, &refetch, &done)?;
        self.kept().forget(run.target);
        let report = self.write_verified(run, &assembler, &url, resume)?;
        drop(assembler);
        self.kept().keep(run.target, img, &plan.index_bytes);
        Ok(report)
    }

    /// The block indexes kept in `data_dir`.
    fn kept(&self) -> delta::KeptIndexes<'_> {
        delta::KeptIndexes::new(&self.config.data_dir)
    }

    /// Refuses early (busy, trial) and returns the target slot and the state.
    /// A journal left by an install whose process died (nobody holds the
    /// install lock) is settled first, as the daemon does at start.
    /// The target must not be in use by the running system, and every
    /// environment write the install and its commit will need is built in
    /// memory first: an environment that cannot take them (too full,
    /// unreadable) is found before a byte goes to the slot. The returned
    /// state carries the floor in force.
    fn prepare_install(&mut self) -> Result<(Slot, State), UpdateError> {
        let booted = self.booted_slot()?;
        self.attempt.slot = Some(booted.other());
        self.boot_state()?;
        if self.store.journal()?.is_some() {
            // Settles nothing while another process's install is alive.
            self.handle(Event::Started, OffsetDateTime::now_utc())?;
        }
        let mut state = self.store.load()?;
        let target = booted.other();
        match self.phase()? {
            Phase::Installing { slot } => return Err(Refusal::Busy(slot).into()),
            Phase::Trial { slot } => return Err(Refusal::TrialNotCommitted(slot).into()),
            _ => {}
        }
        self.config.check_writable(target, &self.config_path)?;
        let (boot, env_floor) = self.boot_state()?;
        state.floor = state.floor.max(env_floor);
        let mut after = boot.clone();
        after.begin_install(target);
        after.install(target);
        after.mark_good(target);
        let mut needed = after.to_updates();
        let widest_floor = u64::MAX.to_string();
        needed.push((VAR_FLOOR, widest_floor));
        let pairs: Vec<(&str, Option<&str>)> =
            needed.iter().map(|(k, v)| (*k, Some(v.as_str()))).collect();
        self.env.check_write(&pairs)?;
        Ok((target, state))
    }

    /// Chunks of `manifest` already in `target` from an interrupted
    /// install of it ([`journal::resumable`]).
    fn resumable(&self, target: Slot, manifest: &Manifest) -> Vec<bool> {
        journal::resumable(
            &self.store,
            self.config.slot_device(target),
            target,
            manifest,
        )
    }

    /// The common tail of every install: journal, write and read back,
    /// then the lifecycle's flip, or its failure record. `source` gives the
    /// chunks and says where they came from (for the journal).
    fn write_verified(
        &mut self,
        run: &Run<'_>,
        source: &dyn install::ChunkSource,
        origin: &str,
        resume: Vec<bool>,
    ) -> Result<InstallReport, UpdateError> {
        let Run {
            target,
            manifest,
            opts,
            progress,
            cancel,
            now,
        } = *run;
        // Held until the install ends, so a second process can tell a
        // running install from a journal left by a dead one.
        let Some(_lock) = self.store.try_lock_install()? else {
            return Err(Refusal::Busy(target).into());
        };
        if let Err(e) = self.handle(Event::InstallStarted { target }, now) {
            if !matches!(e, UpdateError::Refused(_)) {
                // Our journal was begun; nothing has touched the slot yet.
                let _ = self.store.end_journal();
            }
            return Err(e);
        }
        Entry::install_started(target, &manifest.version).emit();
        // The copy not in force must not let U-Boot boot the target either
        // (it is what U-Boot reads if the newer copy is lost): if it does,
        // a refresh write makes both copies agree.
        if let Ok(Some(older)) = self.env.read_older_vars() {
            if BootState::from_pairs(&older).left(target) > 0 {
                if let Err(e) = self.write_env(&[]) {
                    let _ = self.store.end_journal();
                    return Err(e);
                }
            }
        }
        let journal = journal::JournalLog::new(&self.store, target, origin, manifest, resume, now);
        journal.flush();
        let written = FileSlot::open(self.config.slot_device(target))
            .map_err(UpdateError::from)
            .and_then(|slot| {
                install::write_image(&install::WriteJob {
                    source,
                    image: manifest.rootfs(),
                    target: &slot,
                    threads: opts.threads,
                    progress,
                    log: &journal,
                    cancel,
                })
                .map_err(UpdateError::from)
            });
        journal.flush();
        let finished = written.map_err(|e| (e, false)).and_then(|()| {
            self.handle_inner(
                Event::InstallFinished {
                    target,
                    manifest: Box::new(manifest.clone()),
                },
                now,
            )
        });
        if let Err((e, env_written)) = finished {
            self.attempt.flipped = env_written;
            if env_written {
                // Flipped: the install is pending in the saved state and the
                // next start settles the rest; it is no failure to record.
                return Err(e);
            }
            let reason = format!("{e:#}");
            if self
                .handle(Event::InstallFailed { target, reason }, now)
                .is_err()
            {
                let _ = self.store.end_journal();
            }
            return Err(e);
        }
        self.store.forget_resume();
        Ok(InstallReport {
            slot: target,
            version: manifest.version.clone(),
            size: manifest.rootfs().size,
            downloaded: 0,
        })
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

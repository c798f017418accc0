//! The install operations of [`Updater`]: from a file, an HTTPS bundle or a
//! network layout (full or delta), with the checks made before a byte is
//! written, the journal, the write and read-back, and the flip through the
//! lifecycle.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use time::OffsetDateTime;

use super::{Attempt, InstallOptions, InstallReport, UpdateError, Updater};
use crate::bundle::{BundleError, FetchError, RawBundle, RemoteBundle};
use crate::delta;
use crate::events::Entry;
use crate::install::{self, FileSlot, FileSource, Progress};
use crate::journal;
use crate::lifecycle::{Event, Phase, Refusal};
use crate::manifest::{DeviceFacts, Manifest};
use crate::slot::{BootState, Slot, VAR_FLOOR};
use crate::state::State;
use crate::transport::{Fetcher, HttpSource, TransportError};

/// How an install was asked for: its options, what it reports to, when.
#[derive(Clone, Copy)]
struct Request<'a> {
    opts: &'a InstallOptions,
    progress: &'a dyn Progress,
    cancel: &'a AtomicBool,
    now: OffsetDateTime,
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

impl Updater {
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
        let req = Request {
            opts,
            progress,
            cancel,
            now,
        };
        self.logged(|u| u.install_file(path, &req))
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
        req: &Request<'_>,
    ) -> Result<InstallReport, UpdateError> {
        let Request {
            opts,
            progress,
            cancel,
            now,
        } = *req;
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
        let req = Request {
            opts,
            progress,
            cancel,
            now,
        };
        self.logged(|u| {
            if source.starts_with("https://") || source.starts_with("http://") {
                return u.install_url(source, &req);
            }
            let path = source.strip_prefix("file://").unwrap_or(source);
            u.install_file(Path::new(path), &req)
        })
    }

    fn install_url(&mut self, url: &str, req: &Request<'_>) -> Result<InstallReport, UpdateError> {
        let Request {
            opts,
            progress,
            cancel,
            now,
        } = *req;
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
}

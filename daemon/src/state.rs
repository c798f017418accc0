//! What the device remembers across boots: the anti-rollback floor, what is
//! installed in each slot, a pending (not yet committed) install, the last
//! result and the versions that failed.
//!
//! Stored as JSON in `<data_dir>/state.json` on the data partition shared by
//! both slots. Writes are atomic: temporary file, fsync, rename, fsync of the
//! directory, so a power cut leaves either the old or the new state, never a
//! torn one. [`State`] itself is a plain value; only [`StateStore`] does I/O.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::manifest::Manifest;
use crate::slot::Slot;

/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;
/// The state file's name inside `data_dir`.
pub const STATE_FILE: &str = "state.json";
/// The in-flight install journal's name inside `data_dir`: present exactly
/// while an install writes a slot, so a restart knows the slot is partial.
pub const JOURNAL_FILE: &str = "install.json";
/// What is kept of an interrupted install for resuming it.
pub const RESUME_FILE: &str = "resume.json";
/// Held (flock) by the process that runs an install.
pub const LOCK_FILE: &str = "install.lock";
/// Held (flock) for the length of one lifecycle step ([`Store::lock_step`]).
pub const STEP_LOCK_FILE: &str = "state.lock";

/// Errors of loading and saving the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on the state file or its directory.
    #[error("failed to {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another seesaw process held the state lock for the whole bounded
    /// wait (`lock_timeout` in the configuration).
    #[error("the state lock {} is held by another seesaw process; gave up after {waited_secs} s", .path.display())]
    LockBusy {
        /// The lock file.
        path: PathBuf,
        /// Seconds waited.
        waited_secs: u64,
    },
    /// The state file exists but cannot be understood.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl crate::failure::Classify for StateError {
    /// A busy lock is the device being busy, like an install already
    /// running; every other failure is I/O on the data directory.
    fn kind(&self) -> crate::failure::Kind {
        match self {
            StateError::LockBusy { .. } => crate::failure::Kind::State,
            _ => crate::failure::Kind::Io,
        }
    }
}

/// What is installed in one slot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotRecord {
    /// The verified manifest the slot was written from (kept for status and
    /// for delta updates: its chunk table describes the slot's content).
    pub manifest: Manifest,
    /// When the install finished, RFC 3339.
    pub installed_at: String,
}

/// An install written and flipped to but not yet committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// The slot that was written and is tried first.
    pub slot: Slot,
    /// Its version.
    pub version: String,
    /// Its security version (the floor becomes this on commit).
    pub security_version: u64,
    /// Whether the environment write that makes the slot boot first
    /// completed. Saved `false` before that write and `true` after it, so
    /// a power cut in between is told apart from a rollback.
    #[serde(default)]
    pub flipped: bool,
    /// Why the trial failed, recorded before the slot is marked bad and the
    /// board rebooted, and reported after the fall-back boot.
    #[serde(default)]
    pub failure: Option<String>,
}

/// Kinds of [`LastResult`] (serialised in kebab-case, e.g. `rolled-back`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ResultKind {
    /// Written and flipped; awaiting reboot.
    Installed,
    /// An install failed; nothing was flipped.
    Failed,
    /// An install was interrupted (daemon killed, power cut) or cancelled.
    Interrupted,
    /// The trial boot was confirmed; the floor was raised.
    Committed,
    /// An operator marked the pending slot bad; its version is deny-listed.
    MarkedBad,
    /// The new slot did not confirm; the old slot runs; version deny-listed.
    RolledBack,
}

impl ResultKind {
    /// The kebab-case name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            ResultKind::Installed => "installed",
            ResultKind::Failed => "failed",
            ResultKind::Interrupted => "interrupted",
            ResultKind::Committed => "committed",
            ResultKind::MarkedBad => "marked-bad",
            ResultKind::RolledBack => "rolled-back",
        }
    }
}

/// Outcome of the last operation, for status and the fleet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LastResult {
    /// What happened, see [`ResultKind`].
    pub kind: ResultKind,
    /// The version concerned.
    pub version: Option<String>,
    /// A sentence for people.
    pub message: String,
    /// RFC 3339 time.
    pub at: String,
}

/// The persisted state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Anti-rollback floor: bundles with a lower `security_version` are refused.
    pub floor: u64,
    /// What slot A holds, if seesaw wrote it.
    pub slot_a: Option<SlotRecord>,
    /// What slot B holds, if seesaw wrote it.
    pub slot_b: Option<SlotRecord>,
    /// The install awaiting commit.
    pub pending: Option<Pending>,
    /// The last result.
    pub last_result: Option<LastResult>,
    /// Versions that failed on this device and are refused from now on.
    pub failed_versions: Vec<String>,
}

impl Default for State {
    fn default() -> State {
        State {
            format: STATE_FORMAT,
            floor: 0,
            slot_a: None,
            slot_b: None,
            pending: None,
            last_result: None,
            failed_versions: Vec::new(),
        }
    }
}

impl State {
    /// The record of `slot`.
    pub fn slot(&self, slot: Slot) -> Option<&SlotRecord> {
        match slot {
            Slot::A => self.slot_a.as_ref(),
            Slot::B => self.slot_b.as_ref(),
        }
    }

    /// Replaces the record of `slot`.
    pub fn set_slot(&mut self, slot: Slot, record: Option<SlotRecord>) {
        match slot {
            Slot::A => self.slot_a = record,
            Slot::B => self.slot_b = record,
        }
    }
}

/// The in-flight install journal: which slot is being written, from what,
/// and which chunks were verified and written so far (so a restarted
/// install re-checks those in the slot instead of fetching them again).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// The slot being written.
    pub slot: Option<Slot>,
    /// When the install started, RFC 3339.
    pub started: String,
    /// Where the bundle came from (path or URL), for an automatic resume.
    #[serde(default)]
    pub source: Option<String>,
    /// SHA-256 (hex) of the verified manifest bytes being installed.
    #[serde(default)]
    pub manifest_sha256: Option<String>,
    /// Chunks written, as a lowercase hex bitmap (bit `i % 8` of byte
    /// `i / 8` is chunk `i`). Only a hint: every chunk is re-hashed from
    /// the slot before it is trusted.
    #[serde(default)]
    pub written: String,
}

impl Journal {
    /// Whether chunk `i` is recorded as written.
    pub fn is_written(&self, i: usize) -> bool {
        let Some(pair) = self.written.get(i / 8 * 2..i / 8 * 2 + 2) else {
            return false;
        };
        u8::from_str_radix(pair, 16).is_ok_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Records the chunks whose flags are set in `done`.
    pub fn set_written(&mut self, done: &[bool]) {
        let mut bytes = vec![0u8; done.len().div_ceil(8)];
        for (i, d) in done.iter().enumerate() {
            if *d {
                bytes[i / 8] |= 1 << (i % 8);
            }
        }
        self.written = hex::encode(bytes);
    }
}

/// Loads and atomically saves `<data_dir>/state.json` and the install journal.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// A store in `data_dir` (created on first save).
    pub fn new(data_dir: &Path) -> StateStore {
        StateStore {
            dir: data_dir.into(),
        }
    }

    /// Path of the state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state; a missing file is a fresh device ([`State::default`]).
    ///
    /// Errors: [`StateError::Io`], [`StateError::Corrupt`] (unknown format or
    /// fields: refusing beats guessing with the anti-rollback floor).
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => {
                return Err(StateError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if state.format != STATE_FORMAT {
            return Err(StateError::Corrupt {
                path,
                reason: format!("unknown format {}", state.format),
            });
        }
        Ok(state)
    }

    /// The slot named by the in-flight install journal, if there is one.
    ///
    /// Errors: [`StateError::Io`], [`StateError::Corrupt`].
    pub fn journal(&self) -> Result<Option<Slot>, StateError> {
        Ok(self.read_journal()?.and_then(|j| j.slot))
    }

    /// The whole in-flight install journal, if there is one.
    ///
    /// Errors: [`StateError::Io`], [`StateError::Corrupt`].
    pub fn read_journal(&self) -> Result<Option<Journal>, StateError> {
        let path = self.dir.join(JOURNAL_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Creates the in-flight install journal for `slot` (atomically).
    pub fn begin_journal(&self, slot: Slot, now: &str) -> Result<(), StateError> {
        self.write_journal(&Journal {
            slot: Some(slot),
            started: now.to_string(),
            ..Journal::default()
        })
    }

    /// Replaces the in-flight install journal (atomically).
    pub fn write_journal(&self, j: &Journal) -> Result<(), StateError> {
        self.write_atomic(JOURNAL_FILE, &serde_json::to_vec(j).unwrap_or_default())
    }

    /// The record of an interrupted install kept for resuming it, if any.
    pub fn resume_record(&self) -> Option<Journal> {
        let bytes = std::fs::read(self.dir.join(RESUME_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps `j` as the record of an interrupted install.
    pub fn keep_for_resume(&self, j: &Journal) -> Result<(), StateError> {
        self.write_atomic(RESUME_FILE, &serde_json::to_vec(j).unwrap_or_default())
    }

    /// Forgets the record of an interrupted install.
    pub fn forget_resume(&self) {
        let _ = std::fs::remove_file(self.dir.join(RESUME_FILE));
    }

    /// Takes the lock held while an install runs (`install.lock`, flock).
    /// `None` if another process holds it.
    ///
    /// Errors: [`StateError::Io`] if the lock file cannot be opened.
    pub fn try_lock_install(&self) -> Result<Option<File>, StateError> {
        self.flock(LOCK_FILE, libc::LOCK_EX | libc::LOCK_NB)
    }

    /// Takes the lock held while one lifecycle step reads the state, the
    /// journal and the environment and writes what it decided
    /// (`state.lock`, flock), waiting at most `wait` for a step of another
    /// process to finish. Steps are short (a few writes and fsyncs);
    /// without this a daemon starting while a command-line install begins
    /// could read the journal that install just wrote as one left by a
    /// dead process. The lock lives in the data directory, which only root
    /// can write on a device.
    ///
    /// Errors: [`StateError::LockBusy`] when another process held it for
    /// all of `wait`; [`StateError::Io`] if the lock file cannot be opened
    /// or locked.
    pub fn lock_step(&self, wait: std::time::Duration) -> Result<File, StateError> {
        let started = std::time::Instant::now();
        loop {
            if let Some(f) = self.flock(STEP_LOCK_FILE, libc::LOCK_EX | libc::LOCK_NB)? {
                return Ok(f);
            }
            if started.elapsed() >= wait {
                return Err(StateError::LockBusy {
                    path: self.dir.join(STEP_LOCK_FILE),
                    waited_secs: wait.as_secs(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Opens (creating) `name` in the data directory and flocks it with
    /// `op`; `None` when the lock is not granted.
    fn flock(&self, name: &str, op: libc::c_int) -> Result<Option<File>, StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StateError::Io {
            op: "create",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StateError::Io {
                op: "open",
                path: path.clone(),
                source,
            })?;
        loop {
            // SAFETY: flock only reads the descriptor, which `f` keeps open.
            let rc = unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&f), op) };
            if rc == 0 {
                return Ok(Some(f));
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => {}
                std::io::ErrorKind::WouldBlock => return Ok(None),
                _ => {
                    return Err(StateError::Io {
                        op: "lock",
                        path,
                        source: e,
                    })
                }
            }
        }
    }

    /// Removes temporary files that processes no longer running left in
    /// the data directory ([`atomic_file::remove_leftovers`]); returns how
    /// many. Best effort, never fails.
    pub fn remove_leftovers(&self) -> usize {
        atomic_file::remove_leftovers(&self.dir)
    }

    /// Removes the in-flight install journal (and syncs the directory).
    pub fn end_journal(&self) -> Result<(), StateError> {
        let path = self.dir.join(JOURNAL_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StateError::Io {
                    op: "remove",
                    path,
                    source,
                })
            }
        }
        Ok(atomic_file::sync_dir(&self.dir)?)
    }

    /// Writes `state` atomically: temporary file in the same directory,
    /// fsync, rename over the old file, fsync of the directory.
    ///
    /// Errors: [`StateError::Io`].
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        bytes.push(b'\n');
        self.write_atomic(STATE_FILE, &bytes)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StateError::Io {
            op: "create",
            path: self.dir.clone(),
            source,
        })?;
        atomic_file::replace(&self.dir.join(name), bytes)?;
        Ok(())
    }
}

impl From<atomic_file::WriteError> for StateError {
    fn from(e: atomic_file::WriteError) -> StateError {
        StateError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_default_and_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(&d.path().join("sub"));
        assert_eq!(store.load().unwrap(), State::default());
        let s = State {
            floor: 9,
            failed_versions: vec!["2.0.0".into()],
            pending: Some(Pending {
                slot: Slot::B,
                version: "2.0.0".into(),
                security_version: 9,
                flipped: true,
                failure: None,
            }),
            ..State::default()
        };
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn journal_bitmap() {
        let mut j = Journal::default();
        let done: Vec<bool> = (0..20).map(|i| i % 3 == 0).collect();
        j.set_written(&done);
        for (i, d) in done.iter().enumerate() {
            assert_eq!(j.is_written(i), *d, "{i}");
        }
        assert!(!j.is_written(100));
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        let held = store.try_lock_install().unwrap();
        assert!(held.is_some());
        drop(held);
        assert!(store.try_lock_install().unwrap().is_some());
    }

    #[test]
    fn corrupt_state_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        std::fs::write(store.path(), b"{\"format\":1").unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
        std::fs::write(store.path(), b"{\"format\":2,\"floor\":0,\"slot_a\":null,\"slot_b\":null,\"pending\":null,\"last_result\":null,\"failed_versions\":[]}").unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn a_held_step_lock_gives_a_clear_error_after_the_bounded_wait() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::new(d.path());
        let held = store.lock_step(std::time::Duration::ZERO).unwrap();
        let t = std::time::Instant::now();
        let err = store
            .lock_step(std::time::Duration::from_millis(300))
            .unwrap_err();
        assert!(t.elapsed() >= std::time::Duration::from_millis(300));
        assert!(matches!(err, StateError::LockBusy { .. }), "{err:?}");
        assert!(
            err.to_string().contains("held by another seesaw process"),
            "{err}"
        );
        assert_eq!(
            crate::failure::Classify::kind(&err),
            crate::failure::Kind::State
        );
        drop(held);
        assert!(store.lock_step(std::time::Duration::ZERO).is_ok());
    }
}

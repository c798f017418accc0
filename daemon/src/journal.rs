//! The install journal while an install runs: which manifest goes into
//! which slot, from where, and which chunks are already written, so that an
//! install stopped by a power cut or a restart resumes without fetching
//! those chunks again.
//!
//! The journal is a hint, never trusted: a chunk it lists counts as
//! written only if it hashes right when read back from the slot
//! ([`resumable`]). Its file format and atomic writes belong to
//! [`crate::state`]; this module records the chunks as the install pipeline
//! reports them ([`crate::install::ChunkLog`]).

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::digest::Sha256;
use time::OffsetDateTime;

use crate::install::ChunkLog;
use crate::manifest::{format_time, Manifest};
use crate::slot::Slot;
use crate::state::{Journal, StateStore};

/// Chunks recorded between two journal writes at most.
const BATCH_CHUNKS: usize = 64;
/// Time between two journal writes at most.
const BATCH_TIME: Duration = Duration::from_secs(1);

/// SHA-256 (hex) of a manifest's canonical JSON: names a bundle in the
/// install journal.
pub fn manifest_digest(m: &Manifest) -> String {
    hex::encode(Sha256::digest(m.to_json()))
}

/// What the journal holds while the install runs.
struct Batch {
    journal: Journal,
    done: Vec<bool>,
    written_at: Instant,
    pending: usize,
}

/// Records written chunks in the install journal, in batches (every 64
/// chunks or every second), and tells the install which
/// chunks an interrupted install of the same manifest already wrote.
pub struct JournalLog<'a> {
    store: &'a StateStore,
    batch: Mutex<Batch>,
    already: Vec<bool>,
}

impl<'a> JournalLog<'a> {
    /// A journal of installing `manifest` into `slot` from `origin` (a path
    /// or URL, kept for an automatic resume; empty for none), started at
    /// `now`; `already` marks the chunks found intact in the slot
    /// ([`resumable`]).
    pub fn new(
        store: &'a StateStore,
        slot: Slot,
        origin: &str,
        manifest: &Manifest,
        already: Vec<bool>,
        now: OffsetDateTime,
    ) -> JournalLog<'a> {
        let journal = Journal {
            slot: Some(slot),
            started: format_time(now),
            source: (!origin.is_empty()).then(|| origin.to_string()),
            manifest_sha256: Some(manifest_digest(manifest)),
            written: String::new(),
        };
        JournalLog {
            store,
            batch: Mutex::new(Batch {
                journal,
                done: already.clone(),
                written_at: Instant::now(),
                pending: 0,
            }),
            already,
        }
    }

    /// Writes the journal now (best effort: it is only a hint).
    pub fn flush(&self) {
        let mut b = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        let Batch {
            journal,
            done,
            written_at,
            pending,
        } = &mut *b;
        journal.set_written(done);
        let _ = self.store.write_journal(journal);
        *written_at = Instant::now();
        *pending = 0;
    }
}

impl ChunkLog for JournalLog<'_> {
    fn already(&self, i: usize) -> bool {
        self.already.get(i).copied().unwrap_or(false)
    }

    fn written(&self, i: usize) {
        let due = {
            let mut b = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(d) = b.done.get_mut(i) {
                *d = true;
            }
            b.pending += 1;
            b.pending >= BATCH_CHUNKS || b.written_at.elapsed() >= BATCH_TIME
        };
        if due {
            self.flush();
        }
    }
}

/// Chunks of `manifest` that an interrupted install of the same manifest
/// into `target` (whose device is `device`) already wrote and that still
/// hash right when read back from the slot now. Chunk 0 never counts (its
/// header is wiped at every start). All `false` without a matching
/// journal.
pub fn resumable(
    store: &StateStore,
    device: &Path,
    target: Slot,
    manifest: &Manifest,
) -> Vec<bool> {
    let img = manifest.rootfs();
    let mut ok = vec![false; img.chunks.len()];
    let Some(rec) = store.resume_record() else {
        return ok;
    };
    if rec.slot != Some(target)
        || rec.manifest_sha256.as_deref() != Some(&manifest_digest(manifest))
    {
        return ok;
    }
    let Ok(dev) = std::fs::File::open(device) else {
        return ok;
    };
    let mut buf = Vec::new();
    for (i, c) in img.chunks.iter().enumerate().skip(1) {
        if !rec.is_written(i) {
            continue;
        }
        buf.resize(img.chunk_len(i) as usize, 0);
        if std::os::unix::fs::FileExt::read_exact_at(&dev, &mut buf, img.chunk_offset(i)).is_ok() {
            ok[i] = hex::encode(Sha256::digest(&buf)) == c.sha256;
        }
    }
    let n = ok.iter().filter(|x| **x).count();
    if n > 0 {
        log::info!(
            "resuming: {n} of {} chunks already in slot {target}",
            ok.len()
        );
    }
    ok
}

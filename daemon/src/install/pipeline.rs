//! The pipeline itself: [`write_image`] runs worker threads that produce,
//! verify and write chunks in parallel, and a reader that follows them in
//! image order, reading every chunk back from the device and hashing the
//! whole image; the header wipe before and after a failure; what the
//! pipeline reports to ([`Progress`] by [`Phase`], [`ChunkLog`]).
//!
//! The read-back lives here, not apart: it runs in the same thread scope
//! as the writers, waits on what they have finished and shares their
//! failure flag, so the two halves are one piece of code.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::device::{AlignedBuf, SlotDevice};
use super::error::InstallError;
use super::source::{ChunkSource, Scratch};
use super::verify::hex_eq;
use crate::digest::Sha256;
use crate::manifest::Image;

/// Bytes zeroed at the start of the slot before writing.
pub const HEADER_WIPE: u64 = 4096;
/// Chunks the read-back may read ahead of the hashing.
const READ_AHEAD: usize = 2;

/// Progress of an install, reported from worker threads.
pub trait Progress: Sync {
    /// `done` of `total` bytes of `phase` are finished.
    fn update(&self, phase: Phase, done: u64, total: u64);
}

/// The phases of writing an image (they run side by side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Verifying and writing chunks.
    Write,
    /// Reading the slot back.
    Verify,
}

/// The install journal's view of chunks: which are already in the slot
/// (verified again by the caller before it says so) and which were written.
pub trait ChunkLog: Sync {
    /// Chunk `i` is already in the slot, verified: do not fetch or write it.
    fn already(&self, _i: usize) -> bool {
        false
    }
    /// Chunk `i` was verified and written.
    fn written(&self, _i: usize) {}
}

/// No journal.
pub struct NoLog;
impl ChunkLog for NoLog {}

/// Progress that is not reported.
pub struct NoProgress;
impl Progress for NoProgress {
    fn update(&self, _: Phase, _: u64, _: u64) {}
}

/// Chunks finished by the writers, for the read-back to follow.
struct Written {
    done: Vec<AtomicBool>,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Written {
    fn mark(&self, i: usize) {
        self.done[i].store(true, Ordering::SeqCst);
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.cond.notify_all();
    }

    /// Waits until chunk `i` is written; false if `stop` was raised first.
    fn wait(&self, i: usize, stop: &AtomicBool) -> bool {
        loop {
            if self.done[i].load(Ordering::SeqCst) {
                return true;
            }
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            let g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            if self.done[i].load(Ordering::SeqCst) {
                return true;
            }
            let _ = self.cond.wait_timeout(g, Duration::from_millis(20));
        }
    }
}

/// Worker threads for `requested` (0 = one per core, at least 1).
pub fn worker_threads(requested: usize) -> usize {
    if requested == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        requested
    }
}

/// One image to write into a slot, and what the write reports to.
#[derive(Clone, Copy)]
pub struct WriteJob<'a> {
    /// Where the chunks' bytes come from, before they are verified.
    pub source: &'a dyn ChunkSource,
    /// The verified image: chunk table and hashes.
    pub image: &'a Image,
    /// The slot written.
    pub target: &'a dyn SlotDevice,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Byte progress of writing and reading back.
    pub progress: &'a dyn Progress,
    /// The journal of written chunks.
    pub log: &'a dyn ChunkLog,
    /// Checked before every chunk; set to stop.
    pub cancel: &'a AtomicBool,
}

/// Writes the job's `image` from `source` into `target` and reads it back; see the
/// [`install`](super) module documentation for the guarantees. Up to `threads` workers
/// (0 = one per core; never more than the source allows) verify and write
/// chunks in parallel while the calling thread reads them back in order;
/// `cancel` is checked before every chunk.
///
/// Chunks `log` says are already in the slot are neither fetched nor
/// written, but they are read back like every other.
///
/// Errors: every [`InstallError`] variant; on error the target's header is
/// wiped (best effort) and nothing else was touched.
pub fn write_image(job: &WriteJob<'_>) -> Result<(), InstallError> {
    let WriteJob { image, target, .. } = *job;
    if image.size > target.size() {
        return Err(InstallError::TooLarge {
            path: target.path().into(),
            image: image.size,
            slot: target.size(),
        });
    }
    let wipe = || {
        let mut zeros = AlignedBuf::new(HEADER_WIPE as usize);
        target.write_at(0, zeros.as_mut())
    };
    // A resumed install keeps what it verified; chunk 0 covers the header,
    // so it is never taken as already written.
    wipe().map_err(|source| InstallError::WriteSlot {
        path: target.path().into(),
        offset: 0,
        source,
    })?;
    let result = write_and_read_back(job);
    if result.is_err() {
        let _ = wipe().and_then(|_| target.flush());
    }
    result
}

fn write_and_read_back(job: &WriteJob<'_>) -> Result<(), InstallError> {
    let WriteJob {
        source,
        image,
        target,
        threads,
        progress,
        log,
        cancel,
    } = *job;
    let n = image.chunks.len();
    let threads = worker_threads(threads).min(source.max_workers()).max(1);
    let written = Written {
        done: (0..n).map(|_| AtomicBool::new(false)).collect(),
        lock: Mutex::new(()),
        cond: Condvar::new(),
    };
    let done = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<InstallError>> = Mutex::new(None);
    let fail = |e: InstallError| {
        failed.store(true, Ordering::SeqCst);
        let mut g = first_error.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(e);
    };
    let digest = std::thread::scope(|s| {
        for _ in 0..threads.min(n) {
            s.spawn(|| {
                let mut worker = ChunkWorker::new(image, source);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n || failed.load(Ordering::SeqCst) {
                        return;
                    }
                    if cancel.load(Ordering::SeqCst) {
                        fail(InstallError::Cancelled);
                        return;
                    }
                    if log.already(i) {
                        written.mark(i);
                        let len = image.chunk_len(i);
                        let d = done.fetch_add(len, Ordering::SeqCst) + len;
                        progress.update(Phase::Write, d, image.size);
                        continue;
                    }
                    match worker.install_chunk(i, target) {
                        Ok(len) => {
                            source.committed(i);
                            written.mark(i);
                            log.written(i);
                            let d = done.fetch_add(len, Ordering::SeqCst) + len;
                            progress.update(Phase::Write, d, image.size);
                        }
                        Err(e) => {
                            fail(e);
                            return;
                        }
                    }
                }
            });
        }
        // Read back behind the writers, in image order, hashing what the
        // device returns. One thread reads while this one hashes, with a
        // few buffers passed back and forth, so device latency and hashing
        // overlap.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(AlignedBuf, usize)>(READ_AHEAD);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<AlignedBuf>(READ_AHEAD + 1);
        for _ in 0..=READ_AHEAD {
            let _ = empty_tx.send(AlignedBuf::new(image.chunk_size as usize));
        }
        let (written, failed, fail) = (&written, &failed, &fail);
        s.spawn(move || {
            for i in 0..n {
                let Ok(mut buf) = empty_rx.recv() else { return };
                if !written.wait(i, failed) {
                    return;
                }
                let len = image.chunk_len(i) as usize;
                if let Err(source) = target.read_back(image.chunk_offset(i), len, buf.as_mut()) {
                    fail(InstallError::ReadBack {
                        path: target.path().into(),
                        source,
                    });
                    return;
                }
                if full_tx.send((buf, len)).is_err() {
                    return;
                }
            }
        });
        let mut hasher = Sha256::new();
        let mut verified = 0u64;
        for _ in 0..n {
            // The reader stops sending on failure or cancellation.
            let Ok((mut buf, len)) = full_rx.recv() else {
                return None;
            };
            hasher.update(&buf.as_mut()[..len]);
            verified += len as u64;
            progress.update(Phase::Verify, verified, image.size);
            let _ = empty_tx.send(buf);
        }
        Some(hex::encode(hasher.finalize()))
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let actual = digest.ok_or(InstallError::Cancelled)?;
    target.flush().map_err(|source| InstallError::Flush {
        path: target.path().into(),
        source,
    })?;
    if actual != image.sha256 {
        return Err(InstallError::ReadBackMismatch {
            path: target.path().into(),
            expected: image.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Per-thread buffer and the source's scratch space.
struct ChunkWorker<'a> {
    image: &'a Image,
    source: &'a dyn ChunkSource,
    scratch: Scratch,
    data: AlignedBuf,
}

impl<'a> ChunkWorker<'a> {
    fn new(image: &'a Image, source: &'a dyn ChunkSource) -> ChunkWorker<'a> {
        ChunkWorker {
            image,
            source,
            scratch: Scratch::default(),
            data: AlignedBuf::new(image.chunk_size as usize),
        }
    }

    /// Produces, verifies and writes chunk `i`. Returns its length.
    fn install_chunk(&mut self, i: usize, target: &dyn SlotDevice) -> Result<u64, InstallError> {
        let img = self.image;
        let len = img.chunk_len(i) as usize;
        let offset = img.chunk_offset(i);
        let out = self.data.as_mut();
        self.source.produce(&mut self.scratch, i, out)?;
        let matches = |out: &[u8]| hex_eq(&Sha256::digest(&out[..len]), &img.chunks[i].sha256);
        let verified =
            matches(out) || (self.source.retry(&mut self.scratch, i, out)? && matches(out));
        if !verified {
            return Err(InstallError::ChunkHash { index: i, offset });
        }
        // Direct I/O needs whole 4 KiB blocks: a short last chunk is written
        // as it is, through the page cache.
        target
            .write_at(offset, &out[..len])
            .map_err(|source| InstallError::WriteSlot {
                path: target.path().into(),
                offset,
                source,
            })?;
        Ok(len as u64)
    }
}

//! The install pipeline: stored chunks → decompress → hash → compare with the
//! manifest → write at their offset in the inactive slot → read back from the
//! device and hash the whole image → flush → compare with the image SHA-256.
//!
//! Owns the order of writes and what is proven before the environment may be
//! flipped; does not decide policy (that is [`crate::manifest`] and
//! [`crate::trust`]) and never touches the bootloader environment.
//!
//! Guarantees:
//! - A chunk whose bytes do not hash to the manifest's digest is never written.
//! - Memory is bounded by a few chunks per worker thread, whatever the image size.
//! - Every byte of the slot region is read back from the device and the
//!   SHA-256 of what was read must equal the manifest's image SHA-256. The
//!   read-back bypasses the page cache (`O_DIRECT`, which also makes the
//!   kernel write the range out before reading it), so it proves what the
//!   storage returns, not what the kernel remembers. It runs behind the
//!   writers, chunk by chunk in image order, so it costs little extra time.
//! - The slot's first 4 KiB (where file system superblocks and partition
//!   headers live) are zeroed before anything else is written and again if
//!   the install fails, so a failed install leaves a slot that neither mounts
//!   nor matches its old record (see [`slot_holds_image`]).
//! - `fdatasync` makes everything durable before success is returned.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::digest::Sha256;

use crate::manifest::{Compression, Image};

/// Bytes zeroed at the start of the slot before writing.
pub const HEADER_WIPE: u64 = 4096;
/// Alignment of buffers, offsets and lengths for direct I/O, bytes.
pub const IO_ALIGN: usize = 4096;
/// Chunks the read-back may read ahead of the hashing.
const READ_AHEAD: usize = 2;

/// Errors of the install pipeline.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The payload could not be read.
    #[error("failed to read chunk {index} from {source_name}: {source}")]
    ReadPayload {
        /// Chunk index.
        index: usize,
        /// The payload source.
        source_name: String,
        /// What the failed read is: [`PayloadSource::read_failure`] of the
        /// source.
        kind: crate::failure::Kind,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A chunk's stored form did not decompress to the expected length.
    #[error("chunk {index} is corrupt: {reason}")]
    Decompress {
        /// Chunk index.
        index: usize,
        /// What the decoder said.
        reason: String,
    },
    /// A chunk's bytes do not match the manifest; it was not written.
    #[error("chunk {index} (image offset {offset}) does not match its SHA-256 in the manifest; not written")]
    ChunkHash {
        /// Chunk index.
        index: usize,
        /// Its offset in the image, bytes.
        offset: u64,
    },
    /// The slot device could not be opened or sized.
    #[error("failed to open slot device {path} for writing: {source}")]
    OpenSlot {
        /// The device.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the slot failed.
    #[error("failed to write {path} at offset {offset}: {source}")]
    WriteSlot {
        /// The device.
        path: PathBuf,
        /// Offset, bytes.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Flushing the slot failed.
    #[error("failed to flush {path}: {source}")]
    Flush {
        /// The device.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading the slot back failed.
    #[error("failed to read back {path}: {source}")]
    ReadBack {
        /// The device.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// What was read back does not hash to the image SHA-256.
    #[error("read-back of {path} does not match the image: SHA-256 {actual}, expected {expected}")]
    ReadBackMismatch {
        /// The device.
        path: PathBuf,
        /// Manifest digest.
        expected: String,
        /// Digest read back.
        actual: String,
    },
    /// The image is larger than the slot.
    #[error("image of {image} bytes does not fit {path} of {slot} bytes")]
    TooLarge {
        /// The device.
        path: PathBuf,
        /// Image size.
        image: u64,
        /// Slot size.
        slot: u64,
    },
    /// The install was cancelled.
    #[error("install cancelled")]
    Cancelled,
}

impl crate::failure::Classify for InstallError {
    fn kind(&self) -> crate::failure::Kind {
        match self {
            InstallError::ReadPayload { kind, .. } => *kind,
            InstallError::Cancelled => crate::failure::Kind::Cancelled,
            InstallError::ChunkHash { .. }
            | InstallError::Decompress { .. }
            | InstallError::TooLarge { .. }
            | InstallError::ReadBackMismatch { .. } => crate::failure::Kind::Rejected,
            InstallError::OpenSlot { .. }
            | InstallError::WriteSlot { .. }
            | InstallError::Flush { .. }
            | InstallError::ReadBack { .. } => crate::failure::Kind::Io,
        }
    }
}

/// Where stored chunks come from: random access by byte offset.
pub trait PayloadSource: Sync {
    /// Fills `buf` with the bytes at `offset`. Errors if fewer are available.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// A name for messages (path or URL).
    fn name(&self) -> String;
    /// What a failed read of this source is: [`Kind::Io`] for a local file
    /// (the default), [`Kind::Network`] for a remote one.
    ///
    /// [`Kind::Io`]: crate::failure::Kind::Io
    /// [`Kind::Network`]: crate::failure::Kind::Network
    fn read_failure(&self) -> crate::failure::Kind {
        crate::failure::Kind::Io
    }
}

/// A payload inside a local file (a one-file bundle).
pub struct FileSource<'a> {
    /// The open file.
    pub file: &'a File,
    /// Its path.
    pub path: &'a Path,
}

impl PayloadSource for FileSource<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// The slot being written: a block device or a plain file standing in for one.
pub trait SlotDevice: Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Writes all of `buf` at `offset`. Callers pass [`IO_ALIGN`]-aligned
    /// buffers and offsets so the implementation may bypass the page cache.
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()>;
    /// Reads `len` bytes at `offset` into the start of `buf` from the device
    /// itself where possible (not from a cache). `buf` is aligned and at
    /// least `len` rounded up to [`IO_ALIGN`]. Errors if fewer bytes exist.
    fn read_back(&self, offset: u64, len: usize, buf: &mut [u8]) -> std::io::Result<()>;
    /// Makes every written byte durable (fdatasync).
    fn flush(&self) -> std::io::Result<()>;
    /// Path for messages.
    fn path(&self) -> &Path;
}

/// A slot on a block device or plain file, opened read-write without
/// truncation; uses `O_DIRECT` where the file system supports it and falls
/// back to buffered I/O where it does not (e.g. tmpfs).
pub struct FileSlot {
    file: File,
    direct: Option<File>,
    direct_ok: AtomicBool,
    path: PathBuf,
    size: u64,
}

impl FileSlot {
    /// Opens `path` for reading and writing; its current length is the slot
    /// size (block devices report their size through the same seek).
    ///
    /// Errors: [`InstallError::OpenSlot`].
    pub fn open(path: &Path) -> Result<FileSlot, InstallError> {
        let err = |source| InstallError::OpenSlot {
            path: path.into(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(err)?;
        let size = file.seek(SeekFrom::End(0)).map_err(err)?;
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok();
        Ok(FileSlot {
            direct_ok: AtomicBool::new(direct.is_some()),
            file,
            direct,
            path: path.into(),
            size,
        })
    }

    /// The direct-I/O handle, if usable for this request.
    fn direct_for(&self, offset: u64, ptr: *const u8, len: usize) -> Option<&File> {
        let aligned =
            offset % IO_ALIGN as u64 == 0 && (ptr as usize) % IO_ALIGN == 0 && len % IO_ALIGN == 0;
        if aligned && self.direct_ok.load(Ordering::Relaxed) {
            self.direct.as_ref()
        } else {
            None
        }
    }

    /// Direct I/O refused with EINVAL: the file system does not support it.
    fn give_up_direct(&self, e: &std::io::Error) -> bool {
        if e.raw_os_error() == Some(libc::EINVAL) {
            self.direct_ok.store(false, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// Size in bytes of a slot device or file, without opening it for writing.
pub fn device_size(path: &Path) -> std::io::Result<u64> {
    File::open(path)?.seek(SeekFrom::End(0))
}

impl SlotDevice for FileSlot {
    fn size(&self) -> u64 {
        self.size
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if let Some(direct) = self.direct_for(offset, buf.as_ptr(), buf.len()) {
            match direct.write_all_at(buf, offset) {
                Err(e) if self.give_up_direct(&e) => {}
                other => return other,
            }
        }
        self.file.write_all_at(buf, offset)
    }

    fn read_back(&self, offset: u64, len: usize, buf: &mut [u8]) -> std::io::Result<()> {
        let rounded = len.div_ceil(IO_ALIGN) * IO_ALIGN;
        if rounded <= buf.len() {
            if let Some(direct) = self.direct_for(offset, buf.as_ptr(), rounded) {
                match read_full(direct, offset, &mut buf[..rounded], len) {
                    Err(e) if self.give_up_direct(&e) => {}
                    other => return other,
                }
            }
        }
        // Buffered fallback: write the range out and drop it from the cache
        // first, so the read still comes from the device where the kernel
        // allows it.
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(&self.file);
        // SAFETY: integer arguments only; these are hints whose failure only
        // means the read may be served from the cache.
        unsafe {
            libc::sync_file_range(
                fd,
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            libc::posix_fadvise(
                fd,
                offset as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
        self.file.read_exact_at(&mut buf[..len], offset)
    }

    fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads until `want` bytes are in `buf` (direct reads may return less than
/// asked at the end of a file).
fn read_full(f: &File, offset: u64, buf: &mut [u8], want: usize) -> std::io::Result<()> {
    let mut got = 0;
    while got < want {
        let n = f.read_at(&mut buf[got..], offset + got as u64)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

/// A heap buffer whose usable part starts at an [`IO_ALIGN`] boundary.
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let len = len.div_ceil(IO_ALIGN) * IO_ALIGN;
        let raw = vec![0u8; len + IO_ALIGN];
        let start = raw.as_ptr().align_offset(IO_ALIGN);
        AlignedBuf { raw, start, len }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

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

/// Where the bytes of each image chunk come from, before they are verified.
pub trait ChunkSource: Sync {
    /// How many workers may produce chunks at once (1 = one at a time, in
    /// image order).
    fn max_workers(&self) -> usize;
    /// Fills `out[..len]` with chunk `i` (`len` = [`Image::chunk_len`]);
    /// `out` is at least one chunk long, rounded up to 4 KiB.
    fn produce(&self, scratch: &mut Scratch, i: usize, out: &mut [u8]) -> Result<(), InstallError>;
    /// Chunk `i` did not match its digest: fill it again from the origin
    /// only (no local copies). `Ok(false)` when there is no other way.
    fn retry(
        &self,
        _scratch: &mut Scratch,
        _i: usize,
        _out: &mut [u8],
    ) -> Result<bool, InstallError> {
        Ok(false)
    }
    /// Chunk `i` was verified and written.
    fn committed(&self, _i: usize) {}
}

/// Per-worker buffers and decoder of a [`ChunkSource`].
#[derive(Default)]
pub struct Scratch {
    stored: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

/// The stored chunks of a bundle payload: chunk `i` is the `i`-th stored
/// form (one zstd frame or raw bytes) from `payload_start` in `source`.
pub struct StoredChunks<'a> {
    source: &'a dyn PayloadSource,
    image: &'a Image,
    offsets: Vec<u64>,
}

impl<'a> StoredChunks<'a> {
    /// The chunks of `image` in `source`, the first at `payload_start`.
    pub fn new(
        source: &'a dyn PayloadSource,
        payload_start: u64,
        image: &'a Image,
    ) -> StoredChunks<'a> {
        let mut offsets = Vec::with_capacity(image.chunks.len());
        let mut at = payload_start;
        for c in &image.chunks {
            offsets.push(at);
            at += c.stored_size;
        }
        StoredChunks {
            source,
            image,
            offsets,
        }
    }
}

impl ChunkSource for StoredChunks<'_> {
    fn max_workers(&self) -> usize {
        usize::MAX
    }

    fn produce(&self, scratch: &mut Scratch, i: usize, out: &mut [u8]) -> Result<(), InstallError> {
        let img = self.image;
        let chunk = &img.chunks[i];
        let len = img.chunk_len(i) as usize;
        // stored_size is bounded by Manifest::validate (about one chunk).
        scratch.stored.resize(chunk.stored_size as usize, 0);
        self.source
            .read_at(self.offsets[i], &mut scratch.stored)
            .map_err(|e| InstallError::ReadPayload {
                index: i,
                source_name: self.source.name(),
                kind: self.source.read_failure(),
                source: e,
            })?;
        match img.compression {
            Compression::None => out[..len].copy_from_slice(&scratch.stored),
            Compression::Zstd => {
                let corrupt = |reason: String| InstallError::Decompress { index: i, reason };
                if scratch.zstd.is_none() {
                    scratch.zstd =
                        Some(zstd::bulk::Decompressor::new().map_err(|e| corrupt(e.to_string()))?);
                }
                let dec = scratch
                    .zstd
                    .as_mut()
                    .ok_or_else(|| corrupt("no decoder".into()))?;
                // Decoding into exactly `len` bytes: a frame that would
                // produce more fails here instead of overrunning.
                let got = dec
                    .decompress_to_buffer(&scratch.stored[..], &mut out[..len])
                    .map_err(|e| corrupt(e.to_string()))?;
                if got != len {
                    return Err(corrupt(format!(
                        "decoded {got} bytes, the manifest says {len}"
                    )));
                }
            }
        }
        Ok(())
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
/// module documentation for the guarantees. Up to `threads` workers
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
    let threads = crate::install::worker_threads(threads)
        .min(source.max_workers())
        .max(1);
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

fn hex_eq(digest: &[u8], hex_str: &str) -> bool {
    let mut buf = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut buf).is_ok() && digest == buf
}

/// Whether `device` still begins with the first chunk of `image`: a cheap
/// check (one chunk read) that an install recorded for this slot was not
/// interrupted or overwritten since.
pub fn slot_holds_image(device: &Path, image: &Image) -> bool {
    let Ok(f) = File::open(device) else {
        return false;
    };
    let mut buf = vec![0u8; image.chunk_len(0) as usize];
    f.read_exact_at(&mut buf, 0).is_ok() && hex_eq(&Sha256::digest(&buf), &image.chunks[0].sha256)
}

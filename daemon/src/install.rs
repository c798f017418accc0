//! The install pipeline: stored chunks → decompress → hash → compare with the
//! manifest → write at their offset in the inactive slot → flush → read the
//! whole slot region back from the device and compare with the image SHA-256.
//!
//! Owns the order of writes and what is proven before the environment may be
//! flipped; does not decide policy (that is [`crate::manifest`] and
//! [`crate::trust`]) and never touches the bootloader environment.
//!
//! Guarantees:
//! - A chunk whose bytes do not hash to the manifest's digest is never written.
//! - Memory is bounded by a few chunks per worker thread, whatever the image size.
//! - The slot's first 4 KiB (where file system superblocks and partition
//!   headers live) are zeroed before anything else is written and its first
//!   chunk is written last, so an interrupted install leaves a slot that
//!   neither mounts nor matches the old record (see [`slot_holds_image`]).
//! - Success means every byte of the slot region was read back from the
//!   device (its page cache dropped after `fdatasync`) and hashed to the
//!   manifest's image SHA-256.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::manifest::{Compression, Image};

/// Bytes zeroed at the start of the slot before writing.
pub const HEADER_WIPE: u64 = 4096;
/// Read size of the read-back pass, bytes.
const READBACK_BUF: usize = 4 * 1024 * 1024;

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

/// Where stored chunks come from: random access by byte offset.
pub trait PayloadSource: Sync {
    /// Fills `buf` with the bytes at `offset`. Errors if fewer are available.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// A name for messages (path or URL).
    fn name(&self) -> String;
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
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Starts write-back of a range without waiting (a hint).
    fn start_writeback(&self, _offset: u64, _len: u64) {}
    /// Makes every written byte durable (fdatasync).
    fn flush(&self) -> std::io::Result<()>;
    /// Drops cached pages of `[0, len)` so reads come from the device (a hint).
    fn drop_cache(&self, _len: u64) {}
    /// Path for messages.
    fn path(&self) -> &Path;
}

/// A slot on a block device or plain file, opened read-write without truncation.
pub struct FileSlot {
    file: File,
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
        Ok(FileSlot {
            file,
            path: path.into(),
            size,
        })
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
        self.file.write_all_at(buf, offset)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        // SAFETY: sync_file_range only reads its integer arguments; a bad fd
        // or range returns an error, which is ignored because this is a hint.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
    fn drop_cache(&self, len: u64) {
        // SAFETY: as above, integer arguments only; failure only means the
        // read-back may be served from the cache.
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                0,
                len as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// Progress of an install, reported from worker threads.
pub trait Progress: Sync {
    /// `done` of `total` bytes of `phase` are finished.
    fn update(&self, phase: Phase, done: u64, total: u64);
}

/// The phases of writing an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Verifying and writing chunks.
    Write,
    /// Reading the slot back.
    Verify,
}

/// Progress that is not reported.
pub struct NoProgress;
impl Progress for NoProgress {
    fn update(&self, _: Phase, _: u64, _: u64) {}
}

/// Writes `image` from `source` (its first stored chunk at `payload_start`)
/// into `target`, then reads it back; see the module documentation for the
/// guarantees. `threads` workers (0 = one per core) verify and write chunks
/// in parallel; `cancel` is checked before every chunk.
///
/// Errors: every [`InstallError`] variant; on error the target's content is
/// undefined (its header is wiped) and nothing else was touched.
pub fn write_image(
    source: &dyn PayloadSource,
    payload_start: u64,
    image: &Image,
    target: &dyn SlotDevice,
    threads: usize,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<(), InstallError> {
    if image.size > target.size() {
        return Err(InstallError::TooLarge {
            path: target.path().into(),
            image: image.size,
            slot: target.size(),
        });
    }
    let n = image.chunks.len();
    let mut offsets = Vec::with_capacity(n);
    let mut at = payload_start;
    for c in &image.chunks {
        offsets.push(at);
        at += c.stored_size;
    }
    let wipe = vec![0u8; HEADER_WIPE.min(image.size) as usize];
    target
        .write_at(0, &wipe)
        .map_err(|source| InstallError::WriteSlot {
            path: target.path().into(),
            offset: 0,
            source,
        })?;

    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    let done = AtomicU64::new(0);
    let next = AtomicUsize::new(1);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<InstallError>> = Mutex::new(None);
    let fail = |e: InstallError| {
        failed.store(true, Ordering::SeqCst);
        let mut g = first_error.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(e);
    };
    // Chunk 0 is written last, after all others, by the calling thread.
    std::thread::scope(|s| {
        for _ in 0..threads.min(n.max(1)) {
            s.spawn(|| {
                let mut worker = ChunkWorker::new(image);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n || failed.load(Ordering::SeqCst) {
                        return;
                    }
                    if cancel.load(Ordering::SeqCst) {
                        fail(InstallError::Cancelled);
                        return;
                    }
                    match worker.install_chunk(source, offsets[i], i, target) {
                        Ok(len) => {
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
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(InstallError::Cancelled);
    }
    let len = ChunkWorker::new(image).install_chunk(source, offsets[0], 0, target)?;
    progress.update(Phase::Write, done.load(Ordering::SeqCst) + len, image.size);

    target.flush().map_err(|source| InstallError::Flush {
        path: target.path().into(),
        source,
    })?;
    let actual = hash_region(target, image.size, progress, cancel)?;
    if actual != image.sha256 {
        return Err(InstallError::ReadBackMismatch {
            path: target.path().into(),
            expected: image.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Per-thread buffers and decoder.
struct ChunkWorker<'a> {
    image: &'a Image,
    stored: Vec<u8>,
    data: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl<'a> ChunkWorker<'a> {
    fn new(image: &'a Image) -> ChunkWorker<'a> {
        ChunkWorker {
            image,
            stored: Vec::new(),
            data: Vec::new(),
            zstd: None,
        }
    }

    /// Reads, decodes, verifies and writes chunk `i`. Returns its length.
    fn install_chunk(
        &mut self,
        source: &dyn PayloadSource,
        stored_at: u64,
        i: usize,
        target: &dyn SlotDevice,
    ) -> Result<u64, InstallError> {
        let img = self.image;
        let chunk = &img.chunks[i];
        let len = img.chunk_len(i);
        let offset = img.chunk_offset(i);
        // stored_size is bounded by Manifest::validate (about one chunk).
        self.stored.resize(chunk.stored_size as usize, 0);
        source
            .read_at(stored_at, &mut self.stored)
            .map_err(|e| InstallError::ReadPayload {
                index: i,
                source_name: source.name(),
                source: e,
            })?;
        let data: &[u8] = match img.compression {
            Compression::None => &self.stored,
            Compression::Zstd => {
                if self.zstd.is_none() {
                    self.zstd = Some(zstd::bulk::Decompressor::new().map_err(|e| {
                        InstallError::Decompress {
                            index: i,
                            reason: e.to_string(),
                        }
                    })?);
                }
                let dec = self.zstd.as_mut().ok_or(InstallError::Decompress {
                    index: i,
                    reason: "no decoder".into(),
                })?;
                self.data.clear();
                self.data.reserve_exact(len as usize);
                let got = dec
                    .decompress_to_buffer(&self.stored[..], &mut self.data)
                    .map_err(|e| InstallError::Decompress {
                        index: i,
                        reason: e.to_string(),
                    })?;
                if got as u64 != len {
                    return Err(InstallError::Decompress {
                        index: i,
                        reason: format!("decoded {got} bytes, the manifest says {len}"),
                    });
                }
                &self.data
            }
        };
        let digest = Sha256::digest(data);
        if !hex_eq(&digest, &chunk.sha256) {
            return Err(InstallError::ChunkHash { index: i, offset });
        }
        target
            .write_at(offset, data)
            .map_err(|source| InstallError::WriteSlot {
                path: target.path().into(),
                offset,
                source,
            })?;
        target.start_writeback(offset, len);
        Ok(len)
    }
}

fn hex_eq(digest: &[u8], hex_str: &str) -> bool {
    let mut buf = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut buf).is_ok() && digest == buf
}

/// SHA-256 (lowercase hex) of the first `len` bytes of `target`, read from
/// the device after dropping its cached pages.
pub fn hash_region(
    target: &dyn SlotDevice,
    len: u64,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<String, InstallError> {
    target.drop_cache(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READBACK_BUF.min(len as usize)];
    let mut off = 0u64;
    while off < len {
        if cancel.load(Ordering::SeqCst) {
            return Err(InstallError::Cancelled);
        }
        let n = (len - off).min(buf.len() as u64) as usize;
        target
            .read_at(off, &mut buf[..n])
            .map_err(|source| InstallError::ReadBack {
                path: target.path().into(),
                source,
            })?;
        hasher.update(&buf[..n]);
        off += n as u64;
        progress.update(Phase::Verify, off, len);
    }
    Ok(hex::encode(hasher.finalize()))
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

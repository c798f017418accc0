//! The slot being written: the [`SlotDevice`] trait and [`FileSlot`], a
//! block device or plain file written and read back with `O_DIRECT` where
//! the file system allows it (buffered I/O, with the range flushed and
//! dropped from the page cache before a read-back, where it does not), and
//! the [`IO_ALIGN`]-aligned buffers direct I/O needs.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::InstallError;

/// Alignment of buffers, offsets and lengths for direct I/O, bytes.
pub const IO_ALIGN: usize = 4096;

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
pub(super) struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes rounded up to [`IO_ALIGN`].
    pub(super) fn new(len: usize) -> AlignedBuf {
        let len = len.div_ceil(IO_ALIGN) * IO_ALIGN;
        let raw = vec![0u8; len + IO_ALIGN];
        let start = raw.as_ptr().align_offset(IO_ALIGN);
        AlignedBuf { raw, start, len }
    }
    /// The aligned, usable bytes.
    pub(super) fn as_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

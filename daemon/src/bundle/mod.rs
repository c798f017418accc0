//! The one-file bundle: the signed envelope first, then the payload, so a
//! reader can verify the manifest before it reads a byte of the image.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `SEESAWB1` |
//! | 8 | 8 | envelope length `E` in bytes (u64, at most [`MAX_ENVELOPE`]) |
//! | 16 | E | DSSE envelope JSON ([`crate::trust::Envelope`]) |
//! | 16+E | … | payload: each image's chunks back to back, as the manifest lists them |
//!
//! The file ends exactly where the last image's payload ends; anything more
//! or less is refused. Owns creating (chunking, zstd, hashing, signing),
//! countersigning and opening bundles. Does not install.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::digest::Sha256;
use time::OffsetDateTime;

use crate::atomic_file::{self, TempFile};
use crate::manifest::{self, Chunk, Compression, Image, Manifest, ManifestError};
use crate::transport::{Fetcher, TransportError};
use crate::trust::{Envelope, Signer, TrustError, TrustPolicy, MANIFEST_PAYLOAD_TYPE};

/// The 8 magic bytes a bundle starts with.
pub const MAGIC: &[u8; 8] = b"SEESAWB1";
/// Bytes before the envelope.
pub const HEADER_LEN: u64 = 16;
/// Largest envelope accepted, bytes (a 4 GiB image in 4 KiB chunks needs ~90 MiB
/// of chunk table; real bundles use far larger chunks).
pub const MAX_ENVELOPE: u64 = 64 * 1024 * 1024;
/// Default chunk size, bytes.
pub const DEFAULT_CHUNK_SIZE: u64 = 1024 * 1024;
/// Default zstd level for `bundle create`.
pub const DEFAULT_ZSTD_LEVEL: i32 = 9;

/// Errors of creating, signing and opening bundles.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// I/O on a bundle or image file.
    #[error("failed to {op} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "open", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not start with the bundle magic (e.g. an unsigned image).
    #[error("{0} is not a seesaw bundle (bad magic)")]
    NotABundle(PathBuf),
    /// The envelope length field is out of bounds.
    #[error("{path}: envelope length {len} is out of bounds")]
    BadEnvelopeLength {
        /// The bundle.
        path: PathBuf,
        /// The length read.
        len: u64,
    },
    /// The file is shorter than header, envelope and payload need.
    #[error("{path} is truncated: {actual} bytes, the manifest needs {expected}")]
    Truncated {
        /// The bundle.
        path: PathBuf,
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The file carries bytes after the payload.
    #[error("{path} has {extra} bytes after the payload")]
    TrailingData {
        /// The bundle.
        path: PathBuf,
        /// Extra bytes.
        extra: u64,
    },
    /// Signature or envelope problem.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// Manifest problem.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An option given to `bundle create` is unusable.
    #[error("invalid bundle option: {0}")]
    InvalidOption(String),
    /// The block index of a network layout is missing, damaged or does
    /// not match the signed manifest.
    #[error("block store: {0}")]
    BlockIndex(String),
    /// Compression failed.
    #[error("failed to compress chunk {index}: {source}")]
    Compress {
        /// Chunk index.
        index: usize,
        /// The zstd error.
        source: std::io::Error,
    },
}

impl crate::failure::Classify for BundleError {
    fn kind(&self) -> crate::failure::Kind {
        match self {
            BundleError::Io { .. } => crate::failure::Kind::Io,
            BundleError::InvalidOption(_) => crate::failure::Kind::Usage,
            // Everything else, an envelope that does not verify included.
            _ => crate::failure::Kind::Rejected,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl From<atomic_file::WriteError> for BundleError {
    fn from(e: atomic_file::WriteError) -> BundleError {
        BundleError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// The network layout's envelope file name.
pub const NETWORK_ENVELOPE: &str = "manifest.dsse.json";
/// The network layout's payload file name.
pub const NETWORK_PAYLOAD: &str = "rootfs.payload";
/// The network layout's block index file name (see [`crate::blocks`]).
pub const NETWORK_INDEX: &str = "rootfs.index";
/// The network layout's block store file name (see [`crate::blocks`]).
pub const NETWORK_BLOCKS: &str = "rootfs.blocks";

mod create;
pub use create::{create, CreateOptions, Outputs};

/// A bundle file as opened: header and envelope read, nothing verified yet.
pub struct RawBundle {
    /// The file.
    pub file: File,
    /// Its path, for messages.
    pub path: PathBuf,
    /// The envelope.
    pub envelope: Envelope,
    /// Offset of the payload in the file, bytes.
    pub payload_start: u64,
    /// Total file length, bytes.
    pub file_len: u64,
}

/// Opens a bundle source that is a regular file or a block device. Opened
/// with `O_NONBLOCK`, so a FIFO or a device is refused at once instead of
/// blocking in `open` until a writer appears; the flag is cleared again
/// before any read.
fn open_regular(path: &Path) -> Result<File, BundleError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io("open", path))?;
    let kind = file.metadata().map_err(io("stat", path))?.file_type();
    if !(kind.is_file() || kind.is_block_device()) {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io("open", path)(std::io::Error::other(format!(
            "{what}, not a regular file or block device"
        ))));
    }
    // SAFETY: fcntl on a descriptor `file` owns; no memory is passed.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// The envelope length a bundle's 16-byte header gives, after checking the
/// magic (`name` is the file or URL, for messages).
///
/// Errors: [`BundleError::NotABundle`] (too short or not the magic),
/// [`BundleError::BadEnvelopeLength`] (0 or over [`MAX_ENVELOPE`]).
pub fn envelope_len(head: &[u8], name: &Path) -> Result<u64, BundleError> {
    if head.len() < HEADER_LEN as usize || head[..8] != MAGIC[..] {
        return Err(BundleError::NotABundle(name.into()));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&head[8..16]);
    let len = u64::from_le_bytes(len_bytes);
    if len == 0 || len > MAX_ENVELOPE {
        return Err(BundleError::BadEnvelopeLength {
            path: name.into(),
            len,
        });
    }
    Ok(len)
}

/// The manifest an envelope carries, once its signatures meet `policy`:
/// the one verification of a manifest, whether it came in a bundle file,
/// over HTTPS or in a fleet deployment. The manifest is parsed only after
/// the signatures verified.
///
/// Errors: [`BundleError::Trust`] (signatures, payload type),
/// [`BundleError::Manifest`] (not a valid manifest).
pub fn verify_manifest(policy: &TrustPolicy, envelope: &Envelope) -> Result<Manifest, BundleError> {
    let payload = policy.verify(envelope, MANIFEST_PAYLOAD_TYPE)?;
    Ok(Manifest::from_json(&payload)?)
}

/// Errors of opening a bundle, or the block index of one, over the network.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The bytes could not be fetched.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// What was fetched is refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl crate::failure::Classify for FetchError {
    fn kind(&self) -> crate::failure::Kind {
        match self {
            FetchError::Transport(e) => e.kind(),
            FetchError::Bundle(e) => e.kind(),
        }
    }
}

/// A bundle opened over HTTPS and verified: a one-file bundle, or a network
/// layout's `manifest.dsse.json` whose payload is a sibling file.
#[derive(Debug)]
pub struct RemoteBundle {
    /// The verified manifest.
    pub manifest: Manifest,
    /// Where the payload is: the bundle itself, or the manifest's
    /// `payload_file` next to the envelope.
    pub payload_url: String,
    /// Offset of the payload in `payload_url`, bytes (0 for a network
    /// layout).
    pub payload_start: u64,
}

impl RemoteBundle {
    /// Fetches the envelope at `url` (a one-file bundle starts with
    /// [`MAGIC`]; a network layout's envelope is JSON), verifies it against
    /// `policy` and finds the payload. Reads the header, the envelope and
    /// nothing of the payload.
    ///
    /// Errors: [`FetchError::Transport`]; [`FetchError::Bundle`] with
    /// [`BundleError::BadEnvelopeLength`], [`BundleError::Trust`],
    /// [`BundleError::Manifest`], or [`BundleError::InvalidOption`] when the
    /// manifest's `payload_file` does not match the kind of URL.
    pub fn open(
        fetcher: &Fetcher,
        url: &str,
        policy: &TrustPolicy,
    ) -> Result<RemoteBundle, FetchError> {
        let head = fetcher.get_range(url, 0, HEADER_LEN)?;
        let (envelope, payload_url, payload_start) = if head.starts_with(MAGIC) {
            let (env, start) = read_envelope(&HttpBundle { fetcher, url, head })?;
            (env, url.to_string(), start)
        } else {
            let json = fetcher.get_small(url, MAX_ENVELOPE)?;
            let env = Envelope::from_json(&json).map_err(BundleError::from)?;
            (env, String::new(), 0)
        };
        let manifest = verify_manifest(policy, &envelope)?;
        let payload_url = match (&manifest.rootfs().payload_file, payload_url.is_empty()) {
            (None, false) => payload_url,
            (Some(file), true) => crate::transport::sibling_url(url, file)?,
            _ => {
                return Err(BundleError::InvalidOption(
                    "the manifest's payload_file does not match the kind of URL".into(),
                )
                .into())
            }
        };
        Ok(RemoteBundle {
            manifest,
            payload_url,
            payload_start,
        })
    }
}

/// Where a one-file bundle's bytes come from: a local file or an HTTPS URL.
/// [`read_envelope`] reads any of them the same way.
pub trait BundleSource {
    /// The file or URL, for messages.
    fn name(&self) -> PathBuf;
    /// The total length in bytes, if known before reading (a file); `None`
    /// over HTTPS.
    fn known_len(&self) -> Option<u64>;
    /// `len` bytes at `offset`.
    ///
    /// Errors: [`FetchError::Transport`] over HTTPS, [`BundleError::Io`]
    /// for a file.
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, FetchError>;
}

/// A bundle in a local file (or block device) of `len` bytes.
struct FileBundle<'a> {
    file: &'a File,
    path: &'a Path,
    len: u64,
}

impl BundleSource for FileBundle<'_> {
    fn name(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    fn known_len(&self) -> Option<u64> {
        Some(self.len)
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(io("read", self.path))?;
        Ok(buf)
    }
}

/// A bundle at an HTTPS URL, read by range requests; `head` holds the
/// first bytes if they were fetched already.
struct HttpBundle<'a> {
    fetcher: &'a Fetcher,
    url: &'a str,
    head: Vec<u8>,
}

impl BundleSource for HttpBundle<'_> {
    fn name(&self) -> PathBuf {
        PathBuf::from(self.url)
    }

    fn known_len(&self) -> Option<u64> {
        None
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        let end = offset.saturating_add(len);
        if end <= self.head.len() as u64 {
            return Ok(self.head[offset as usize..end as usize].to_vec());
        }
        Ok(self.fetcher.get_range(self.url, offset, len)?)
    }
}

/// Reads a one-file bundle's header and envelope from `source`: checks the
/// magic and the envelope length, and, where the source's length is known,
/// that the file is not cut short within them. Returns the envelope (not
/// verified) and the offset of the payload.
///
/// Errors: those of [`BundleSource::read_at`]; [`FetchError::Bundle`] with
/// [`BundleError::NotABundle`], [`BundleError::BadEnvelopeLength`],
/// [`BundleError::Truncated`] or [`BundleError::Trust`] (malformed
/// envelope JSON).
pub fn read_envelope(source: &dyn BundleSource) -> Result<(Envelope, u64), FetchError> {
    let name = source.name();
    if let Some(total) = source.known_len().filter(|&t| t < HEADER_LEN) {
        // Either garbage or a bundle cut within its header.
        let start = source.read_at(0, total)?;
        let n = start.len().min(MAGIC.len());
        if n > 0 && start[..n] == MAGIC[..n] {
            return Err(BundleError::Truncated {
                path: name,
                expected: HEADER_LEN,
                actual: total,
            }
            .into());
        }
        return Err(BundleError::NotABundle(name).into());
    }
    let head = source.read_at(0, HEADER_LEN)?;
    let len = envelope_len(&head, &name)?;
    if let Some(total) = source.known_len().filter(|&t| t < HEADER_LEN + len) {
        return Err(BundleError::Truncated {
            path: name,
            expected: HEADER_LEN + len,
            actual: total,
        }
        .into());
    }
    let json = source.read_at(HEADER_LEN, len)?;
    let envelope = Envelope::from_json(&json).map_err(BundleError::from)?;
    Ok((envelope, HEADER_LEN + len))
}

impl RawBundle {
    /// Opens `path` and reads its header and envelope.
    ///
    /// Errors: [`BundleError::Io`], [`BundleError::NotABundle`],
    /// [`BundleError::BadEnvelopeLength`], [`BundleError::Truncated`],
    /// [`BundleError::Trust`] (malformed envelope JSON).
    pub fn open(path: &Path) -> Result<RawBundle, BundleError> {
        let file = open_regular(path)?;
        let file_len = file.metadata().map_err(io("stat", path))?.len();
        let source = FileBundle {
            file: &file,
            path,
            len: file_len,
        };
        let (envelope, payload_start) = read_envelope(&source).map_err(|e| match e {
            FetchError::Bundle(e) => e,
            // A file source reads no network.
            FetchError::Transport(e) => io("read", path)(std::io::Error::other(e)),
        })?;
        Ok(RawBundle {
            file,
            path: path.into(),
            envelope,
            payload_start,
            file_len,
        })
    }

    /// Verifies the envelope against `policy`, parses the manifest and checks
    /// that the file holds exactly the payload the manifest describes.
    ///
    /// Errors: [`BundleError::Trust`], [`BundleError::Manifest`],
    /// [`BundleError::Truncated`], [`BundleError::TrailingData`].
    pub fn verify(self, policy: &TrustPolicy) -> Result<VerifiedBundle, BundleError> {
        let manifest = verify_manifest(policy, &self.envelope)?;
        self.check_length(&manifest)?;
        Ok(VerifiedBundle {
            raw: self,
            manifest,
        })
    }

    /// Parses the manifest WITHOUT checking signatures (for `bundle inspect`).
    pub fn unverified_manifest(&self) -> Result<Manifest, BundleError> {
        Ok(Manifest::from_json(&self.envelope.payload_bytes()?)?)
    }

    fn check_length(&self, m: &Manifest) -> Result<(), BundleError> {
        let img = m.rootfs();
        // validate() bounds both terms, so this cannot overflow; saturate anyway.
        let expected = self
            .payload_start
            .saturating_add(img.payload_offset)
            .saturating_add(img.payload_size);
        if self.file_len < expected {
            return Err(BundleError::Truncated {
                path: self.path.clone(),
                expected,
                actual: self.file_len,
            });
        }
        if self.file_len > expected {
            return Err(BundleError::TrailingData {
                path: self.path.clone(),
                extra: self.file_len - expected,
            });
        }
        Ok(())
    }

    /// Adds a countersignature with `key` and rewrites the bundle atomically
    /// (see [`crate::atomic_file`]); existing signatures stay as they are.
    ///
    /// Errors: [`BundleError::Io`], [`BundleError::Trust`].
    pub fn countersign(mut self, key: &dyn Signer) -> Result<(), BundleError> {
        self.envelope.countersign(key)?;
        let payload_len = self.file_len - self.payload_start;
        create::write_bundle(
            &self.path,
            &self.envelope,
            &self.file,
            &self.path,
            self.payload_start,
            payload_len,
        )
    }
}

/// A bundle whose envelope verified; its manifest may be trusted. The payload
/// is not yet checked: every chunk is hashed as it is installed.
pub struct VerifiedBundle {
    /// The file and envelope.
    pub raw: RawBundle,
    /// The verified manifest.
    pub manifest: Manifest,
}

impl VerifiedBundle {
    /// Absolute file offset of the rootfs image's first stored chunk.
    pub fn image_payload_start(&self) -> u64 {
        self.raw.payload_start + self.manifest.rootfs().payload_offset
    }
}

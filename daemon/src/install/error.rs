//! The errors of the install pipeline, each with the [`Kind`] it stands
//! for: a payload that cannot be read is [`Kind::Io`] or [`Kind::Network`]
//! (as its source says), bytes that do not match the manifest are
//! [`Kind::Rejected`], a slot that cannot be opened, written, flushed or
//! read back is [`Kind::Io`].
//!
//! [`Kind`]: crate::failure::Kind
//! [`Kind::Io`]: crate::failure::Kind::Io
//! [`Kind::Network`]: crate::failure::Kind::Network
//! [`Kind::Rejected`]: crate::failure::Kind::Rejected

use std::path::PathBuf;

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
        /// What the failed read is: [`PayloadSource::read_failure`](super::PayloadSource::read_failure) of the
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

//! Where the bytes of each image chunk come from before they are verified:
//! a [`PayloadSource`] gives random access to stored bytes (a local
//! [`FileSource`], or the HTTPS source in [`crate::transport`]), and a
//! [`ChunkSource`] turns them into image chunks ([`StoredChunks`]: one zstd
//! frame or raw bytes per chunk; the delta assembler in [`crate::blocks`]
//! is another).
//!
//! Nothing here is trusted: the pipeline hashes every chunk a source
//! produces before writing it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::InstallError;
use crate::manifest::{Compression, Image};

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

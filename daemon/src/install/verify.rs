//! Digest checks shared by the pipeline and the status: a chunk's bytes
//! against the manifest's hex SHA-256, and [`slot_holds_image`], the cheap
//! check that a slot still holds the image recorded for it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::digest::Sha256;
use crate::manifest::Image;

/// Whether `digest` is the hex SHA-256 `hex_str` (false for text that is
/// not 32 bytes of hex).
pub(super) fn hex_eq(digest: &[u8], hex_str: &str) -> bool {
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

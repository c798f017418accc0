//! The block store: a content-addressed form of an image for delta updates.
//!
//! An image is cut into 4 KiB blocks. Every distinct block is stored once,
//! in zstd frames of up to [`FRAME_BLOCKS`] blocks (`rootfs.blocks` in the
//! network layout), and a block index (`rootfs.index`) says which distinct
//! block goes at each position of the image. A device that already runs an
//! older image finds most blocks of the new one in its running slot by
//! content, wherever they moved to, copies them from there and downloads only
//! the frames that hold blocks it lacks. Everything that is copied or
//! fetched is checked against the manifest's chunk digests before it is
//! written (see [`crate::install`]), so a wrong local guess costs a download,
//! never a bad write.
//!
//! Block index format (all integers little-endian), compressed as one zstd
//! frame (RFC 8878); its size and SHA-256 are in the signed manifest
//! ([`crate::manifest::BlockStore`]):
//!
//! ```text
//! magic        8 bytes  "SEESAWI1"
//! block_size   u32      4096
//! reserved     u32      0
//! image_blocks u64      N = ceil(image size / 4096)
//! distinct     u64      D, 1..=N
//! frames       u64      F, 1..=D
//! frame table  F x { stored_size u32, blocks u32 }   in payload order
//! short hashes D x u64  first 8 bytes of SHA-256 of each distinct block
//! block map    N x u32  id[i] - id[i-1] (wrapping; id[-1] = u32::MAX)
//! ```
//!
//! Distinct blocks are numbered by first appearance in the image (the map
//! only ever introduces id `max + 1`), and frame `f` holds the next
//! `blocks` ids. So walking the image in order needs frames in payload
//! order: the download is a few long range requests, never a seek back. A
//! short last block is hashed and stored padded with zeros. Each frame
//! carries zstd's content checksum, so a frame damaged in transit fails to
//! decode and is fetched again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::digest::Sha256;

/// Bytes per block (a property of the manifest's block store format).
pub use crate::manifest::BLOCK_SIZE;

mod assembler;
pub use assembler::{needed_frames, Assembler, AssemblerSources, Refetch};
/// Distinct blocks per frame written by [`build`].
pub const FRAME_BLOCKS: u32 = 16;
/// Largest number of blocks a frame may hold when read (bounds memory).
pub const MAX_FRAME_BLOCKS: u32 = 1024;
/// The index magic.
pub const MAGIC: &[u8; 8] = b"SEESAWI1";
const HEADER_LEN: usize = 40;
/// Marks a distinct block with no known location.
const NOWHERE: u64 = u64::MAX;
/// Marks a distinct block that is all zeros (nothing to read).
const ZEROS: u64 = u64::MAX - 1;

/// Errors of building or reading a block index.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The index bytes break the format or contradict the manifest.
    #[error("block index: {0}")]
    Malformed(String),
    /// Reading an image or writing the store failed.
    #[error("failed to {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// zstd failed to compress.
    #[error("failed to compress a block frame: {0}")]
    Compress(std::io::Error),
}

impl crate::failure::Classify for BlockError {
    fn kind(&self) -> crate::failure::Kind {
        match self {
            BlockError::Malformed(_) => crate::failure::Kind::Rejected,
            BlockError::Io { .. } | BlockError::Compress(_) => crate::failure::Kind::Io,
        }
    }
}

/// One frame of the block store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes of the zstd frame in the store.
    pub stored_size: u32,
    /// Distinct blocks it holds.
    pub blocks: u32,
}

/// A decoded block index (see the module documentation for the format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIndex {
    /// Image size in bytes.
    pub image_size: u64,
    /// The frames, in payload order.
    pub frames: Vec<Frame>,
    /// First 8 bytes of the SHA-256 of each distinct block (big-endian u64).
    pub short: Vec<u64>,
    /// Distinct block id at each image block position.
    pub map: Vec<u32>,
    first_id: Vec<u32>,
    offsets: Vec<u64>,
}

/// The short hash of a block: the first 8 bytes of its SHA-256.
pub fn short_hash(block: &[u8]) -> u64 {
    let d = Sha256::digest(block);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

fn zero_short() -> u64 {
    short_hash(&[0u8; BLOCK_SIZE as usize])
}

impl BlockIndex {
    fn new(image_size: u64, frames: Vec<Frame>, short: Vec<u64>, map: Vec<u32>) -> BlockIndex {
        let mut first_id = Vec::with_capacity(frames.len());
        let mut offsets = Vec::with_capacity(frames.len());
        let (mut id, mut at) = (0u32, 0u64);
        for f in &frames {
            first_id.push(id);
            offsets.push(at);
            id += f.blocks;
            at += u64::from(f.stored_size);
        }
        BlockIndex {
            image_size,
            frames,
            short,
            map,
            first_id,
            offsets,
        }
    }

    /// Offset of frame `f` within the block store, bytes.
    pub fn frame_offset(&self, f: usize) -> u64 {
        self.offsets[f]
    }

    /// First distinct block id held by frame `f`.
    pub fn frame_first_id(&self, f: usize) -> u32 {
        self.first_id[f]
    }

    /// The frame holding distinct block `id`.
    pub fn frame_of(&self, id: u32) -> usize {
        self.first_id.partition_point(|&first| first <= id) - 1
    }

    /// Sum of the frames' stored sizes, bytes.
    pub fn store_size(&self) -> u64 {
        self.frames.iter().map(|f| u64::from(f.stored_size)).sum()
    }

    /// Serialises and compresses the index (zstd level 19).
    ///
    /// Errors: [`BlockError::Compress`].
    pub fn encode(&self) -> Result<Vec<u8>, BlockError> {
        let mut raw = Vec::with_capacity(
            HEADER_LEN + self.frames.len() * 8 + self.short.len() * 8 + self.map.len() * 4,
        );
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        raw.extend_from_slice(&0u32.to_le_bytes());
        raw.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        raw.extend_from_slice(&(self.short.len() as u64).to_le_bytes());
        raw.extend_from_slice(&(self.frames.len() as u64).to_le_bytes());
        for f in &self.frames {
            raw.extend_from_slice(&f.stored_size.to_le_bytes());
            raw.extend_from_slice(&f.blocks.to_le_bytes());
        }
        for s in &self.short {
            raw.extend_from_slice(&s.to_le_bytes());
        }
        let mut prev = u32::MAX;
        for &id in &self.map {
            raw.extend_from_slice(&id.wrapping_sub(prev).to_le_bytes());
            prev = id;
        }
        zstd::bulk::compress(&raw, 19).map_err(BlockError::Compress)
    }

    /// Decompresses and checks an index for an image of `image_size` bytes
    /// whose block store is `store_size` bytes. Memory is bounded by the
    /// sizes the header declares after they were checked against the
    /// manifest (about 20 bytes per image block at most).
    ///
    /// Errors: [`BlockError::Malformed`] for anything that breaks the format
    /// or disagrees with the manifest.
    pub fn decode(
        bytes: &[u8],
        image_size: u64,
        store_size: u64,
    ) -> Result<BlockIndex, BlockError> {
        let bad = |s: String| BlockError::Malformed(s);
        let mut dec = zstd::stream::read::Decoder::with_buffer(bytes)
            .map_err(|e| bad(format!("not a zstd frame: {e}")))?
            .single_frame();
        let mut head = [0u8; HEADER_LEN];
        dec.read_exact(&mut head)
            .map_err(|e| bad(format!("cannot read the header: {e}")))?;
        let u32_at =
            |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if &head[..8] != MAGIC {
            return Err(bad("bad magic".into()));
        }
        if u64::from(u32_at(8)) != BLOCK_SIZE || u32_at(12) != 0 {
            return Err(bad(format!("block size {} is not 4096", u32_at(8))));
        }
        let (n, d, f) = (u64_at(16), u64_at(24), u64_at(32));
        let expected_n = image_size.div_ceil(BLOCK_SIZE);
        if n != expected_n {
            return Err(bad(format!(
                "{n} image blocks, the manifest's size needs {expected_n}"
            )));
        }
        if d == 0 || d > n || d > u64::from(u32::MAX) {
            return Err(bad(format!("{d} distinct blocks for {n} image blocks")));
        }
        if f == 0 || f > d {
            return Err(bad(format!("{f} frames for {d} distinct blocks")));
        }
        let (n, d, f) = (n as usize, d as usize, f as usize);
        let mut body = vec![0u8; f * 8 + d * 8 + n * 4];
        dec.read_exact(&mut body)
            .map_err(|e| bad(format!("shorter than its header says: {e}")))?;
        let mut extra = [0u8; 1];
        if !matches!(dec.read(&mut extra), Ok(0)) {
            return Err(bad("longer than its header says".into()));
        }
        let word = |o: usize| u32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
        let mut frames = Vec::with_capacity(f);
        let (mut ids, mut stored) = (0u64, 0u64);
        for k in 0..f {
            let fr = Frame {
                stored_size: word(k * 8),
                blocks: word(k * 8 + 4),
            };
            let max_stored = u64::from(fr.blocks) * BLOCK_SIZE * 129 / 128 + 1024;
            if fr.blocks == 0
                || fr.blocks > MAX_FRAME_BLOCKS
                || fr.stored_size == 0
                || u64::from(fr.stored_size) > max_stored
            {
                return Err(bad(format!(
                    "frame {k}: {} blocks in {} bytes is out of bounds",
                    fr.blocks, fr.stored_size
                )));
            }
            ids += u64::from(fr.blocks);
            stored += u64::from(fr.stored_size);
            frames.push(fr);
        }
        if ids != d as u64 {
            return Err(bad(format!("frames hold {ids} blocks, header says {d}")));
        }
        if stored != store_size {
            return Err(bad(format!(
                "frames add up to {stored} bytes, the manifest says {store_size}"
            )));
        }
        let base = f * 8;
        let short: Vec<u64> = (0..d)
            .map(|k| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&body[base + k * 8..base + k * 8 + 8]);
                u64::from_le_bytes(b)
            })
            .collect();
        let base = f * 8 + d * 8;
        let mut map = Vec::with_capacity(n);
        let (mut prev, mut next_new) = (u32::MAX, 0u64);
        for k in 0..n {
            let id = prev.wrapping_add(word(base + k * 4));
            if u64::from(id) > next_new || u64::from(id) >= d as u64 {
                return Err(bad(format!(
                    "block {k} refers to id {id} before ids up to {next_new} appeared"
                )));
            }
            if u64::from(id) == next_new {
                next_new += 1;
            }
            map.push(id);
            prev = id;
        }
        if next_new != d as u64 {
            return Err(bad(format!(
                "only {next_new} of {d} distinct blocks are used"
            )));
        }
        Ok(BlockIndex::new(image_size, frames, short, map))
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BlockError + 'a {
    move |source| BlockError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Calls `f(position, block)` for each 4 KiB block of the first `size`
/// bytes of `file`, the last one padded with zeros. Reads 1 MiB at a time.
fn for_each_block(
    file: &File,
    path: &Path,
    size: u64,
    mut f: impl FnMut(u64, &[u8]),
) -> Result<(), BlockError> {
    const STEP: u64 = 1 << 20;
    let mut buf = vec![0u8; STEP as usize];
    let mut at = 0u64;
    while at < size {
        let len = STEP.min(size - at) as usize;
        file.read_exact_at(&mut buf[..len], at)
            .map_err(io("read", path))?;
        let padded = len.div_ceil(BLOCK_SIZE as usize) * BLOCK_SIZE as usize;
        buf[len..padded].fill(0);
        for (k, block) in buf[..padded].chunks(BLOCK_SIZE as usize).enumerate() {
            f(at / BLOCK_SIZE + k as u64, block);
        }
        at += len as u64;
    }
    Ok(())
}

/// How [`build`] lays out and compresses a block store.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions<'a> {
    /// Earlier images whose blocks get frames of their own.
    pub bases: &'a [PathBuf],
    /// zstd level.
    pub level: i32,
    /// Compression threads (0 = one per core).
    pub threads: usize,
}

/// Builds the block store of the image `src` (`size` bytes): writes the
/// frames to `out` and returns the index. Blocks that none of the `bases`
/// (earlier images) contain are kept in frames of their own, so a device
/// running one of those bases downloads as little as possible; without
/// bases, frames simply follow the image. Frames are compressed with zstd at
/// `level` on `threads` threads (0 = one per core), with content checksums.
///
/// Errors: [`BlockError::Io`], [`BlockError::Compress`].
pub fn build(
    src: &File,
    src_path: &Path,
    size: u64,
    options: &BuildOptions<'_>,
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<BlockIndex, BlockError> {
    let BuildOptions {
        bases,
        level,
        threads,
    } = *options;
    let mut known: HashSet<[u8; 32]> = HashSet::new();
    for base in bases {
        let f = File::open(base).map_err(io("open", base))?;
        let len = f.metadata().map_err(io("stat", base))?.len();
        for_each_block(&f, base, len, |_, block| {
            known.insert(Sha256::digest(block));
        })?;
    }
    let mut ids: HashMap<[u8; 32], u32> = HashMap::new();
    let mut map = Vec::with_capacity(size.div_ceil(BLOCK_SIZE) as usize);
    let mut short = Vec::new();
    let mut first_pos = Vec::new();
    let mut novel = Vec::new();
    for_each_block(src, src_path, size, |pos, block| {
        let digest: [u8; 32] = Sha256::digest(block);
        let next = ids.len() as u32;
        let id = *ids.entry(digest).or_insert(next);
        if id == next {
            let mut b = [0u8; 8];
            b.copy_from_slice(&digest[..8]);
            short.push(u64::from_be_bytes(b));
            first_pos.push(pos);
            novel.push(!bases.is_empty() && !known.contains(&digest));
        }
        map.push(id);
    })?;
    drop(ids);
    drop(known);
    // Frames: runs of consecutive ids, cut at FRAME_BLOCKS and wherever the
    // ids switch between blocks the bases have and blocks they lack.
    let mut spans: Vec<(u32, u32)> = Vec::new();
    for id in 0..short.len() as u32 {
        match spans.last_mut() {
            Some((start, len))
                if *len < FRAME_BLOCKS && novel[*start as usize] == novel[id as usize] =>
            {
                *len += 1
            }
            _ => spans.push((id, 1)),
        }
    }
    let threads = crate::install::worker_threads(threads);
    let mut frames = Vec::with_capacity(spans.len());
    // Compress a batch of frames in parallel, then write it in order.
    for batch in spans.chunks(threads * 64) {
        let per = batch.len().div_ceil(threads);
        let results: Vec<Result<Vec<Vec<u8>>, BlockError>> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .chunks(per)
                .map(|part| {
                    let first_pos = &first_pos;
                    s.spawn(move || -> Result<Vec<Vec<u8>>, BlockError> {
                        let mut cctx =
                            zstd::bulk::Compressor::new(level).map_err(BlockError::Compress)?;
                        cctx.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                            .map_err(BlockError::Compress)?;
                        let mut raw = Vec::new();
                        let mut block = vec![0u8; BLOCK_SIZE as usize];
                        part.iter()
                            .map(|&(start, len)| {
                                raw.clear();
                                for id in start..start + len {
                                    let at = first_pos[id as usize] * BLOCK_SIZE;
                                    let n = BLOCK_SIZE.min(size - at) as usize;
                                    block.fill(0);
                                    src.read_exact_at(&mut block[..n], at)
                                        .map_err(io("read", src_path))?;
                                    raw.extend_from_slice(&block);
                                }
                                cctx.compress(&raw).map_err(BlockError::Compress)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(BlockError::Compress(std::io::Error::other(
                            "compression thread panicked",
                        )))
                    })
                })
                .collect()
        });
        let mut spans_iter = batch.iter();
        for part in results {
            for z in part? {
                let (_, len) = spans_iter.next().copied().unwrap_or((0, 0));
                out.write_all(&z).map_err(io("write", out_path))?;
                frames.push(Frame {
                    stored_size: z.len() as u32,
                    blocks: len,
                });
            }
        }
    }
    Ok(BlockIndex::new(size, frames, short, map))
}

/// Where each distinct block of `index` can be found in the running slot:
/// a byte offset, or nothing. All-zero blocks need no reading at all.
#[derive(Debug, Clone)]
pub struct LocalBlocks {
    at: Vec<u64>,
}

impl LocalBlocks {
    /// Nothing local (a device without a usable running image).
    pub fn none(index: &BlockIndex) -> LocalBlocks {
        let zero = zero_short();
        LocalBlocks {
            at: index
                .short
                .iter()
                .map(|&s| if s == zero { ZEROS } else { NOWHERE })
                .collect(),
        }
    }

    /// Distinct blocks found (all-zero blocks included).
    pub fn found(&self) -> usize {
        self.at.iter().filter(|&&a| a != NOWHERE).count()
    }

    fn wanted(&self, index: &BlockIndex) -> HashMap<u64, u32> {
        let mut wanted = HashMap::with_capacity(index.short.len());
        for (id, &s) in index.short.iter().enumerate() {
            if self.at[id] == NOWHERE {
                wanted.entry(s).or_insert(id as u32);
            }
        }
        wanted
    }

    /// Finds blocks by reading and hashing the first `size` bytes of the
    /// running slot `device`, on `threads` threads (0 = one per core).
    /// `cancel` is checked between reads.
    ///
    /// Errors: [`BlockError::Io`]; a raised `cancel` returns what was found.
    pub fn scan(
        index: &BlockIndex,
        device: &Path,
        size: u64,
        threads: usize,
        cancel: &AtomicBool,
    ) -> Result<LocalBlocks, BlockError> {
        let mut local = LocalBlocks::none(index);
        let wanted = local.wanted(index);
        let file = File::open(device).map_err(io("open", device))?;
        let size = size - size % BLOCK_SIZE;
        let threads = crate::install::worker_threads(threads);
        let blocks = size / BLOCK_SIZE;
        let per = blocks.div_ceil(threads as u64).max(1) * BLOCK_SIZE;
        let results: Vec<Result<Vec<(u32, u64)>, BlockError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let (file, wanted) = (&file, &wanted);
                    s.spawn(move || {
                        let start = (t * per).min(size);
                        let end = ((t + 1) * per).min(size);
                        let mut hits = Vec::new();
                        let mut buf = vec![0u8; 1 << 20];
                        let mut at = start;
                        while at < end && !cancel.load(Ordering::Relaxed) {
                            let len = (buf.len() as u64).min(end - at) as usize;
                            file.read_exact_at(&mut buf[..len], at)
                                .map_err(io("read", device))?;
                            for (k, block) in buf[..len].chunks(BLOCK_SIZE as usize).enumerate() {
                                if let Some(&id) = wanted.get(&short_hash(block)) {
                                    hits.push((id, at + k as u64 * BLOCK_SIZE));
                                }
                            }
                            at += len as u64;
                        }
                        Ok(hits)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(BlockError::Malformed("scan thread panicked".into()))
                    })
                })
                .collect()
        });
        for r in results {
            for (id, at) in r? {
                let slot = &mut local.at[id as usize];
                if *slot == NOWHERE || at < *slot {
                    *slot = at;
                }
            }
        }
        Ok(local)
    }

    /// Finds blocks through the index of the image the running slot holds
    /// (kept from its install), without reading the slot.
    pub fn from_running_index(index: &BlockIndex, running: &BlockIndex) -> LocalBlocks {
        let mut local = LocalBlocks::none(index);
        let wanted = local.wanted(index);
        for (pos, &old) in running.map.iter().enumerate() {
            if let Some(&id) = wanted.get(&running.short[old as usize]) {
                let slot = &mut local.at[id as usize];
                if *slot == NOWHERE {
                    *slot = pos as u64 * BLOCK_SIZE;
                }
            }
        }
        local
    }
}

/// Where one block of a chunk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// Already earlier in the same chunk, at this offset within it.
    Inner(usize),
    /// Already written to the target slot, at this offset.
    Target(u64),
    /// Zeros.
    Zeros,
    /// The running slot, at this offset.
    Local(u64),
    /// A downloaded frame; `true` if it is in the planned stream.
    Frame(u32, bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image of `n` blocks: block `i` has content `pattern(i)` (0 = zeros).
    fn image(dir: &Path, name: &str, pattern: &[u32]) -> (File, PathBuf, u64) {
        let mut data = Vec::new();
        for &p in pattern {
            let mut block = vec![0u8; BLOCK_SIZE as usize];
            if p != 0 {
                for (k, b) in block.iter_mut().enumerate() {
                    *b = (p as usize * 31 + k * 7 + (k >> 8) * p as usize) as u8;
                }
            }
            data.extend_from_slice(&block);
        }
        let path = dir.join(name);
        std::fs::write(&path, &data).unwrap();
        (File::open(&path).unwrap(), path, data.len() as u64)
    }

    fn build_of(dir: &Path, pattern: &[u32], bases: &[PathBuf]) -> (BlockIndex, Vec<u8>) {
        let (f, p, size) = image(dir, "new.img", pattern);
        let mut store = Vec::new();
        let out = dir.join("store");
        let opts = BuildOptions {
            bases,
            level: 3,
            threads: 2,
        };
        let index = build(&f, &p, size, &opts, &mut store, &out).unwrap();
        (index, store)
    }

    #[test]
    fn build_dedups_and_numbers_by_first_appearance() {
        let d = tempfile::tempdir().unwrap();
        let pattern = [5, 0, 5, 7, 0, 0, 9, 7, 5, 11];
        let (index, store) = build_of(d.path(), &pattern, &[]);
        assert_eq!(index.short.len(), 5, "5 distinct blocks");
        assert_eq!(index.map, vec![0, 1, 0, 2, 1, 1, 3, 2, 0, 4]);
        assert_eq!(index.store_size(), store.len() as u64);
        assert_eq!(index.frames.len(), 1);
        let back = BlockIndex::decode(
            &index.encode().unwrap(),
            index.image_size,
            index.store_size(),
        )
        .unwrap();
        assert_eq!(back, index);
        // The frame decodes to the distinct blocks in id order.
        let raw = zstd::bulk::decompress(&store, 5 * 4096).unwrap();
        assert_eq!(short_hash(&raw[4096..8192]), zero_short());
        assert_eq!(index.short[1], zero_short());
    }

    #[test]
    fn blocks_a_base_lacks_get_frames_of_their_own() {
        let d = tempfile::tempdir().unwrap();
        let (_, base, _) = image(d.path(), "base.img", &[1, 2, 3, 4]);
        // Ids: 1→0, 100→1, 2→2, 101→3, 3→4.
        let (index, _) = build_of(d.path(), &[1, 100, 2, 101, 3], &[base]);
        let spans: Vec<(u32, u32)> = (0..index.frames.len())
            .map(|f| (index.frame_first_id(f), index.frames[f].blocks))
            .collect();
        assert_eq!(spans, vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]);
        assert_eq!(index.frame_of(3), 3);
        // Without a base, consecutive ids share frames.
        let (index, _) = build_of(d.path(), &[1, 100, 2, 101, 3], &[]);
        assert_eq!(index.frames.len(), 1);
        assert_eq!(index.frame_of(4), 0);
    }

    #[test]
    fn frames_hold_at_most_frame_blocks() {
        let d = tempfile::tempdir().unwrap();
        let pattern: Vec<u32> = (1..=40).collect();
        let (index, _) = build_of(d.path(), &pattern, &[]);
        let sizes: Vec<u32> = index.frames.iter().map(|f| f.blocks).collect();
        assert_eq!(sizes, vec![16, 16, 8]);
        assert_eq!(index.frame_of(15), 0);
        assert_eq!(index.frame_of(16), 1);
        assert_eq!(index.frame_of(39), 2);
    }

    #[test]
    fn local_blocks_by_scan_and_by_kept_index_agree() {
        let d = tempfile::tempdir().unwrap();
        let (_, old_path, old_size) = image(d.path(), "old.img", &[3, 1, 0, 2, 8]);
        let (old_index, _) = {
            let (f, p, size) = image(d.path(), "old2.img", &[3, 1, 0, 2, 8]);
            let mut s = Vec::new();
            let out = d.path().join("s");
            {
                let opts = BuildOptions {
                    bases: &[],
                    level: 3,
                    threads: 1,
                };
                (build(&f, &p, size, &opts, &mut s, &out).unwrap(), s)
            }
        };
        let (index, _) = build_of(d.path(), &[1, 2, 0, 4, 2, 8], &[]);
        let cancel = AtomicBool::new(false);
        let scanned = LocalBlocks::scan(&index, &old_path, old_size, 2, &cancel).unwrap();
        let kept = LocalBlocks::from_running_index(&index, &old_index);
        // ids: 1→0 (at 4096), 2→1 (at 12288), 0→2 (zeros), 4→3 (nowhere), 8→4 (at 16384)
        assert_eq!(scanned.at, vec![4096, 12288, ZEROS, NOWHERE, 16384]);
        assert_eq!(kept.at, scanned.at);
        assert_eq!(scanned.found(), 4);
        // Only the frame with id 3 is needed; with one frame, that one.
        assert_eq!(needed_frames(&index, &scanned, 8192, &[false; 3]), vec![0]);
        // Chunk 1 (blocks 2, 3) already written: id 3 is in the target.
        assert!(needed_frames(&index, &scanned, 8192, &[false, true, false]).is_empty());
    }

    fn raw_of(index: &BlockIndex) -> Vec<u8> {
        zstd::bulk::decompress(&index.encode().unwrap(), 1 << 20).unwrap()
    }

    #[test]
    fn decode_refuses_what_breaks_the_format() {
        let d = tempfile::tempdir().unwrap();
        let (index, _) = build_of(d.path(), &[5, 0, 5, 7, 0, 9], &[]);
        let (size, store) = (index.image_size, index.store_size());
        let raw = raw_of(&index);
        let z = |r: &[u8]| zstd::bulk::compress(r, 3).unwrap();
        let n = index.map.len();
        let d_ = index.short.len();
        let map_at = raw.len() - n * 4;
        type Edit = Box<dyn Fn(&mut Vec<u8>)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("magic", Box::new(|r| r[0] = b'X')),
            ("block size", Box::new(|r| r[9] = 0x20)),
            ("image blocks", Box::new(|r| r[16] += 1)),
            ("distinct 0", Box::new(|r| r[24..32].fill(0))),
            ("distinct > N", Box::new(move |r| r[24] = n as u8 + 1)),
            ("frames 0", Box::new(|r| r[32..40].fill(0))),
            ("frame blocks 0", Box::new(|r| r[44..48].fill(0))),
            ("frame stored 0", Box::new(|r| r[40..44].fill(0))),
            ("frame stored huge", Box::new(|r| r[40..44].fill(0xff))),
            ("truncated", Box::new(|r| r.truncate(r.len() - 1))),
            ("trailing", Box::new(|r| r.push(0))),
            ("id out of order", Box::new(move |r| r[map_at + 4] = 2)),
            (
                "id unused",
                Box::new(move |r| {
                    // Block 3 refers to id 0 instead of introducing id 2 (and the
                    // next delta is adjusted so the rest stays in order).
                    let ids: Vec<u32> = vec![0, 1, 0, 0, 1, 2];
                    let mut prev = u32::MAX;
                    for (k, id) in ids.iter().enumerate() {
                        r[map_at + k * 4..map_at + k * 4 + 4]
                            .copy_from_slice(&id.wrapping_sub(prev).to_le_bytes());
                        prev = *id;
                    }
                }),
            ),
        ];
        assert_eq!(d_, 4);
        for (what, edit) in &edits {
            let mut r = raw.clone();
            edit(&mut r);
            assert!(
                matches!(
                    BlockIndex::decode(&z(&r), size, store),
                    Err(BlockError::Malformed(_))
                ),
                "{what} accepted"
            );
        }
        assert!(BlockIndex::decode(&z(&raw), size + 4096, store).is_err());
        assert!(BlockIndex::decode(&z(&raw), size, store + 1).is_err());
        assert!(BlockIndex::decode(b"not zstd", size, store).is_err());
        assert!(BlockIndex::decode(&[], size, store).is_err());
        BlockIndex::decode(&z(&raw), size, store).unwrap();
    }
}

//! Delta installs from the running slot: fetching and checking a network
//! layout's block index, finding the blocks the running slot already has
//! (through the index kept when that slot was installed, or by reading
//! it), choosing the frames to download, and keeping the index of each
//! slot's image in `data_dir` for the next delta.
//!
//! Owns the kept index files `slot-<X>.index` and `slot-<X>.index.json`.
//! Writes no slot: the [`Assembler`] it builds only serves chunks, which
//! the install pipeline verifies before a byte is written.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::digest::Sha256;
use serde::{Deserialize, Serialize};

use crate::blocks::{Assembler, AssemblerSources, BlockIndex, LocalBlocks, Refetch};
use crate::bundle::{BundleError, FetchError};
use crate::manifest::{BlockStore, Image};
use crate::slot::Slot;
use crate::state::State;
use crate::transport::{sibling_url, Fetcher, HttpSource};

/// What is kept next to a slot's block index: the image it describes.
#[derive(Debug, Serialize, Deserialize)]
struct KeptIndexRecord {
    image_sha256: String,
    image_size: u64,
}

/// The block indexes kept in `data_dir`, one per slot, each naming the
/// image it describes.
#[derive(Debug, Clone, Copy)]
pub struct KeptIndexes<'a> {
    data_dir: &'a Path,
}

impl<'a> KeptIndexes<'a> {
    /// The kept indexes in `data_dir`.
    pub fn new(data_dir: &'a Path) -> KeptIndexes<'a> {
        KeptIndexes { data_dir }
    }

    fn paths(&self, slot: Slot) -> (PathBuf, PathBuf) {
        (
            self.data_dir.join(format!("slot-{slot}.index")),
            self.data_dir.join(format!("slot-{slot}.index.json")),
        )
    }

    /// The block index of the image `slot` holds, if it was kept when the
    /// slot was installed and `state`'s record of the slot still names that
    /// image. `None` on any doubt.
    pub fn load(&self, slot: Slot, state: &State) -> Option<BlockIndex> {
        let img = state.slot(slot)?.manifest.rootfs().clone();
        let (index, meta) = self.paths(slot);
        let meta: KeptIndexRecord = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
        if meta.image_sha256 != img.sha256 || meta.image_size != img.size {
            return None;
        }
        let bytes = std::fs::read(index).ok()?;
        let store_size = img.blocks.as_ref()?.store_size;
        BlockIndex::decode(&bytes, img.size, store_size).ok()
    }

    /// Forgets the index of `slot` (before the slot is overwritten).
    pub fn forget(&self, slot: Slot) {
        let (index, meta) = self.paths(slot);
        let _ = std::fs::remove_file(meta);
        let _ = std::fs::remove_file(index);
    }

    /// Keeps `bytes`, the block index of `img` just written to `slot`, so
    /// the next delta install from it needs no scan (best effort: a failure
    /// is logged).
    pub fn keep(&self, slot: Slot, img: &Image, bytes: &[u8]) {
        let (index, meta) = self.paths(slot);
        let record = KeptIndexRecord {
            image_sha256: img.sha256.clone(),
            image_size: img.size,
        };
        let done = crate::atomic_file::replace(&index, bytes).and_then(|()| {
            crate::atomic_file::replace(&meta, &serde_json::to_vec(&record).unwrap_or_default())
        });
        if let Err(e) = done {
            log::warn!("cannot keep the block index of slot {slot}: {e}");
        }
    }
}

/// What a delta install needs to plan its download.
pub struct PlanRequest<'a> {
    /// The URL of the network layout's `manifest.dsse.json`.
    pub url: &'a str,
    /// The manifest's block store description.
    pub store: &'a BlockStore,
    /// The verified image.
    pub image: &'a Image,
    /// The running slot.
    pub running: Slot,
    /// Its device.
    pub running_dev: &'a Path,
    /// The running slot's kept index, if any ([`KeptIndexes::load`]).
    pub kept: Option<BlockIndex>,
    /// Chunks already in the target (a resumed install).
    pub resume: &'a [bool],
    /// Threads for reading the running slot (0 = one per core).
    pub threads: usize,
    /// Stops the scan of the running slot.
    pub cancel: &'a AtomicBool,
}

/// What a delta install downloads and where the rest comes from.
pub struct Plan<'f> {
    /// The manifest's URL (the install's origin).
    pub url: String,
    /// The block store's URL.
    pub store_url: String,
    /// Bytes to download, the index included.
    pub planned: u64,
    /// The verified block index.
    pub index: BlockIndex,
    /// Its bytes, to keep for the next delta.
    pub index_bytes: Vec<u8>,
    /// The blocks found in the running slot.
    pub local: LocalBlocks,
    /// The running slot's device.
    pub running_dev: PathBuf,
    /// The frames to download, coalesced into range requests.
    pub source: HttpSource<'f>,
}

/// Fetches and checks the block index and works out what a delta install
/// from the running slot downloads.
///
/// Errors: [`FetchError::Transport`] (the index cannot be fetched: the
/// caller may still download the full payload), [`FetchError::Bundle`] with
/// [`BundleError::BlockIndex`] (the index does not match the manifest).
pub fn plan<'f>(fetcher: &'f Fetcher, req: PlanRequest<'_>) -> Result<Plan<'f>, FetchError> {
    let PlanRequest {
        url,
        store,
        image,
        running,
        running_dev,
        kept,
        resume,
        threads,
        cancel,
    } = req;
    let index_url = sibling_url(url, &store.index_file)?;
    let index_bytes = fetcher.get_small(&index_url, store.index_size)?;
    let digest = hex::encode(Sha256::digest(&index_bytes));
    if index_bytes.len() as u64 != store.index_size || digest != store.index_sha256 {
        return Err(BundleError::BlockIndex(format!(
            "{index_url} does not match the manifest ({} bytes, SHA-256 {digest})",
            index_bytes.len()
        ))
        .into());
    }
    let index = BlockIndex::decode(&index_bytes, image.size, store.store_size)
        .map_err(|e| BundleError::BlockIndex(e.to_string()))?;
    let started = std::time::Instant::now();
    let (local, how) = match kept {
        Some(old) => (
            LocalBlocks::from_running_index(&index, &old),
            "its kept index",
        ),
        None => {
            let size = crate::install::device_size(running_dev).unwrap_or(0);
            let local = LocalBlocks::scan(&index, running_dev, size, threads, cancel)
                .unwrap_or_else(|e| {
                    log::warn!("cannot read slot {running} for a delta install: {e}");
                    LocalBlocks::none(&index)
                });
            (local, "reading it")
        }
    };
    let frames = crate::blocks::needed_frames(&index, &local, image.chunk_size, resume);
    let wanted: Vec<(u64, u64)> = frames
        .iter()
        .map(|&f| {
            (
                index.frame_offset(f),
                u64::from(index.frames[f].stored_size),
            )
        })
        .collect();
    let store_url = sibling_url(url, &store.store_file)?;
    let source = HttpSource::new(fetcher, &store_url, &wanted);
    // What the requests will carry, the gaps they bridge included.
    let fetch = source.planned_bytes();
    log::info!(
        "delta: {} of {} distinct blocks found in slot {running} by {how} in {:.2} s; \
         {} of {} frames to download, {fetch} bytes + {} bytes of index",
        local.found(),
        index.short.len(),
        started.elapsed().as_secs_f64(),
        frames.len(),
        index.frames.len(),
        store.index_size,
    );
    Ok(Plan {
        store_url,
        url: url.to_string(),
        planned: fetch + store.index_size,
        index,
        index_bytes,
        local,
        running_dev: running_dev.to_path_buf(),
        source,
    })
}

/// Out-of-plan fetches from the block store.
pub struct StoreRefetch<'a> {
    /// The fetcher of the install.
    pub fetcher: &'a Fetcher,
    /// The block store's URL.
    pub url: &'a str,
}

impl Refetch for StoreRefetch<'_> {
    fn get(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        self.fetcher
            .get_range(self.url, offset, len)
            .map_err(std::io::Error::other)
    }
}

impl<'f> Plan<'f> {
    /// The assembler that serves the image's chunks from the running slot
    /// and the planned frames, for a target slot at `target_dev`; `done`
    /// marks the chunks already there.
    ///
    /// Errors: [`BundleError::BlockIndex`] (a slot cannot be opened for
    /// reading).
    pub fn assembler<'s>(
        &'s mut self,
        chunk_size: u64,
        target_dev: &'s Path,
        refetch: &'s StoreRefetch<'s>,
        done: &'s [bool],
    ) -> Result<Assembler<'s>, BundleError> {
        let local = std::mem::replace(&mut self.local, LocalBlocks::none(&self.index));
        Assembler::new(
            &self.index,
            chunk_size,
            AssemblerSources {
                local,
                running: Some(&self.running_dev),
                target: target_dev,
                planned: &self.source,
                store_start: 0,
                refetch,
                done,
            },
        )
        .map_err(|e| BundleError::BlockIndex(e.to_string()))
    }
}

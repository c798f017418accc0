//! `bundle create`: chunking, hashing and compressing an image in
//! parallel, the block store of a network layout, signing, and writing the
//! one-file bundle and the network layout atomically.

use super::*;

/// What `bundle create` needs besides the image and keys.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The board the bundle is for.
    pub compatible: String,
    /// Semantic version.
    pub version: String,
    /// Anti-rollback counter.
    pub security_version: u64,
    /// Creation time.
    pub created: OffsetDateTime,
    /// Optional expiry time.
    pub expires: Option<OffsetDateTime>,
    /// Chunk size in bytes (multiple of 4096).
    pub chunk_size: u64,
    /// zstd level (1–22).
    pub zstd_level: i32,
    /// Worker threads for compression (0 = one per core).
    pub threads: usize,
}

/// Where `bundle create` writes: a one-file bundle, a network layout
/// directory ([`NETWORK_ENVELOPE`], [`NETWORK_PAYLOAD`], [`NETWORK_INDEX`],
/// [`NETWORK_BLOCKS`]), or both.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs<'a> {
    /// The one-file bundle.
    pub file: Option<&'a Path>,
    /// The network layout directory (created if missing).
    pub dir: Option<&'a Path>,
    /// Earlier images devices may be running: the network layout's block
    /// store keeps the blocks they lack in frames of their own, so a delta
    /// from them downloads less. Optional.
    pub delta_bases: &'a [PathBuf],
}

/// Creates a bundle from the image file `image`, signed by every signer in
/// `keys`: a one-file bundle and/or a network layout, each with its own
/// signed manifest (they differ in `payload_file`). Memory is bounded (a few
/// chunks per thread); files are written to temporary names and renamed into
/// place. Returns the manifest of the first output.
///
/// Errors: [`BundleError::Io`], [`BundleError::InvalidOption`],
/// [`BundleError::Compress`], [`BundleError::Manifest`] (e.g. non-semver
/// version), [`BundleError::Trust`] (an external signer failed).
pub fn create(
    image: &Path,
    keys: &[&dyn Signer],
    opts: &CreateOptions,
    outputs: Outputs<'_>,
) -> Result<Manifest, BundleError> {
    if keys.is_empty() {
        return Err(BundleError::InvalidOption(
            "at least one --key or --sign-command is needed".into(),
        ));
    }
    if !(1..=22).contains(&opts.zstd_level) {
        return Err(BundleError::InvalidOption(format!(
            "zstd level {} is not between 1 and 22",
            opts.zstd_level
        )));
    }
    let anchor = match (outputs.file, outputs.dir) {
        (Some(f), _) => f.to_path_buf(),
        (None, Some(d)) => {
            std::fs::create_dir_all(d).map_err(io("create", d))?;
            d.join(NETWORK_PAYLOAD)
        }
        (None, None) => {
            return Err(BundleError::InvalidOption(
                "give --output FILE, --output-dir DIR or both".into(),
            ))
        }
    };
    let src = File::open(image).map_err(io("open", image))?;
    let size = src.metadata().map_err(io("stat", image))?.len();
    // Scratch space for the compressed payload, next to the first output:
    // the network layout's `payload.bin` itself when that is the only
    // output, removed when dropped otherwise.
    let payload = TempFile::new(&anchor)?;
    let (chunks, image_sha) =
        compress_chunks(&src, image, size, opts, payload.file(), payload.path())?;
    let payload_size = chunks.iter().map(|c| c.stored_size).sum();
    let manifest = Manifest {
        format: manifest::FORMAT_VERSION,
        compatible: opts.compatible.clone(),
        version: opts.version.clone(),
        security_version: opts.security_version,
        created: manifest::format_time(opts.created),
        expires: opts.expires.map(manifest::format_time),
        targets: None,
        images: vec![Image {
            slot_class: manifest::SLOT_CLASS_ROOTFS.into(),
            size,
            sha256: image_sha,
            chunk_size: opts.chunk_size,
            chunks,
            compression: Compression::Zstd,
            payload_offset: 0,
            payload_size,
            payload_file: None,
            blocks: None,
        }],
    };
    manifest.validate()?;
    let mut first = None;
    if let Some(output) = outputs.file {
        let env = Envelope::sign_with(MANIFEST_PAYLOAD_TYPE, &manifest.to_json(), keys)?;
        write_bundle(
            output,
            &env,
            payload.file(),
            payload.path(),
            0,
            payload_size,
        )?;
        first = Some(manifest.clone());
    }
    if let Some(dir) = outputs.dir {
        let mut m = manifest.clone();
        m.images[0].payload_file = Some(NETWORK_PAYLOAD.into());
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let (blocks, mut staged) =
            stage_block_store(&src, image, size, opts, outputs.delta_bases, dir)?;
        m.images[0].blocks = Some(blocks);
        m.validate()?;
        let env = Envelope::sign_with(MANIFEST_PAYLOAD_TYPE, &m.to_json(), keys)?;
        let payload = if outputs.file.is_some() {
            let copy = TempFile::new(&dir.join(NETWORK_PAYLOAD))?;
            std::fs::copy(payload.path(), copy.path())
                .map_err(io("copy payload to", copy.path()))?;
            copy
        } else {
            payload
        };
        staged.push(payload);
        let mut envelope = TempFile::new(&dir.join(NETWORK_ENVELOPE))?;
        envelope.write_all(&env.to_json())?;
        // The signed envelope last: whoever sees the new one finds the
        // files it describes already in place.
        staged.push(envelope);
        atomic_file::persist_all(staged)?;
        first.get_or_insert(m);
    }
    first.ok_or_else(|| BundleError::InvalidOption("no output".into()))
}

/// Writes the block store and block index of `src` to temporary files in
/// `dir` and returns their manifest entry and the files, block store first,
/// for the caller to put in place with the rest of the layout.
fn stage_block_store(
    src: &File,
    src_path: &Path,
    size: u64,
    opts: &CreateOptions,
    bases: &[PathBuf],
    dir: &Path,
) -> Result<(manifest::BlockStore, Vec<TempFile>), BundleError> {
    let store = TempFile::new(&dir.join(NETWORK_BLOCKS))?;
    let mut out = BufWriter::with_capacity(1 << 20, store.file());
    let block_err = |e: crate::blocks::BlockError| BundleError::BlockIndex(e.to_string());
    let build = crate::blocks::BuildOptions {
        bases,
        level: opts.zstd_level,
        threads: opts.threads,
    };
    let index = crate::blocks::build(src, src_path, size, &build, &mut out, store.path())
        .map_err(block_err)?;
    out.flush().map_err(io("write", store.path()))?;
    drop(out);
    let bytes = index.encode().map_err(block_err)?;
    let mut index_file = TempFile::new(&dir.join(NETWORK_INDEX))?;
    index_file.write_all(&bytes)?;
    let entry = manifest::BlockStore {
        block_size: crate::blocks::BLOCK_SIZE,
        index_file: NETWORK_INDEX.into(),
        index_size: bytes.len() as u64,
        index_sha256: hex::encode(Sha256::digest(&bytes)),
        store_file: NETWORK_BLOCKS.into(),
        store_size: index.store_size(),
    };
    Ok((entry, vec![store, index_file]))
}

/// Chunks, hashes and compresses `src` into `out` in parallel, in image order.
/// Returns the chunk table and the whole image's SHA-256 (hex).
fn compress_chunks(
    src: &File,
    src_path: &Path,
    size: u64,
    opts: &CreateOptions,
    out: &File,
    out_path: &Path,
) -> Result<(Vec<Chunk>, String), BundleError> {
    let cs = opts.chunk_size;
    if !(manifest::MIN_CHUNK_SIZE..=manifest::MAX_CHUNK_SIZE).contains(&cs) || cs % 4096 != 0 {
        return Err(BundleError::InvalidOption(format!(
            "chunk size {cs} must be a multiple of 4096 between {} and {}",
            manifest::MIN_CHUNK_SIZE,
            manifest::MAX_CHUNK_SIZE
        )));
    }
    if size == 0 {
        return Err(BundleError::InvalidOption(format!(
            "{} is empty",
            src_path.display()
        )));
    }
    let n = size.div_ceil(cs) as usize;
    let threads = crate::install::worker_threads(opts.threads);
    // Chunks are compressed out of order by the workers, and written in
    // order by whoever completes the next one: a small reorder window keeps
    // memory bounded to a few chunks per thread.
    struct Shared {
        next_to_write: usize,
        done: std::collections::BTreeMap<usize, (Vec<u8>, Vec<u8>, String)>,
        table: Vec<Chunk>,
        whole: Sha256,
        error: Option<BundleError>,
    }
    let shared = Mutex::new(Shared {
        next_to_write: 0,
        done: Default::default(),
        table: Vec::with_capacity(n),
        whole: Sha256::new(),
        error: None,
    });
    let cond = std::sync::Condvar::new();
    let next = AtomicUsize::new(0);
    let window = threads * 2;
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let writer_lock = Mutex::new(&mut writer);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut cctx = match zstd::bulk::Compressor::new(opts.zstd_level) {
                    Ok(c) => c,
                    Err(e) => {
                        lock(&shared).error.get_or_insert(BundleError::Compress {
                            index: 0,
                            source: e,
                        });
                        cond.notify_all();
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    // Wait until the chunk is within the reorder window.
                    {
                        let mut g = lock(&shared);
                        while i >= g.next_to_write + window && g.error.is_none() {
                            g = cond.wait(g).unwrap_or_else(|p| p.into_inner());
                        }
                        if g.error.is_some() {
                            return;
                        }
                    }
                    let off = i as u64 * cs;
                    let len = cs.min(size - off) as usize;
                    let mut raw = vec![0u8; len];
                    let res = src
                        .read_exact_at(&mut raw, off)
                        .map_err(io("read", src_path))
                        .and_then(|_| {
                            cctx.compress(&raw)
                                .map_err(|source| BundleError::Compress { index: i, source })
                        })
                        .map(|z| (z, hex::encode(Sha256::digest(&raw))));
                    let mut g = lock(&shared);
                    match res {
                        Err(e) => {
                            g.error.get_or_insert(e);
                        }
                        Ok((z, sha)) => {
                            g.done.insert(i, (raw, z, sha));
                            // Drain every chunk that is now in order.
                            while let Some((raw, z, sha)) = {
                                let k = g.next_to_write;
                                g.done.remove(&k)
                            } {
                                g.whole.update(&raw);
                                g.table.push(Chunk {
                                    sha256: sha,
                                    stored_size: z.len() as u64,
                                });
                                let mut w = writer_lock.lock().unwrap_or_else(|p| p.into_inner());
                                if let Err(e) = w.write_all(&z) {
                                    g.error.get_or_insert(BundleError::Io {
                                        op: "write",
                                        path: out_path.to_path_buf(),
                                        source: e,
                                    });
                                    break;
                                }
                                g.next_to_write += 1;
                            }
                        }
                    }
                    cond.notify_all();
                }
            });
        }
    });
    let g = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = g.error {
        return Err(e);
    }
    writer.flush().map_err(io("write", out_path))?;
    Ok((g.table, hex::encode(g.whole.finalize())))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes header + envelope + `payload_len` bytes of `payload` (from
/// `payload_offset`) to `output` atomically (see [`crate::atomic_file`]).
pub(super) fn write_bundle(
    output: &Path,
    env: &Envelope,
    payload: &File,
    payload_path: &Path,
    payload_offset: u64,
    payload_len: u64,
) -> Result<(), BundleError> {
    let mut tmp = TempFile::new(output)?;
    let json = env.to_json();
    let mut head = Vec::with_capacity(HEADER_LEN as usize + json.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(json.len() as u64).to_le_bytes());
    head.extend_from_slice(&json);
    tmp.write_all(&head)?;
    let mut src = payload;
    src.seek(SeekFrom::Start(payload_offset))
        .map_err(io("seek", payload_path))?;
    let copied = std::io::copy(&mut src.take(payload_len), &mut tmp.file())
        .map_err(io("copy payload to", tmp.path()))?;
    if copied != payload_len {
        return Err(BundleError::Truncated {
            path: payload_path.to_path_buf(),
            expected: payload_offset + payload_len,
            actual: payload_offset + copied,
        });
    }
    Ok(tmp.persist()?)
}

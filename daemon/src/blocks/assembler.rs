//! The assembler of a delta install: builds each chunk of the new image
//! from blocks of the running slot, blocks already written to the target
//! and frames of the block store (planned, or fetched again when a local
//! block does not verify), for the install pipeline to verify and write.

use super::*;

/// Fetches store bytes outside the planned stream (a frame again after a
/// damaged transfer or a local block that did not verify).
pub trait Refetch: Sync {
    /// `len` bytes of the block store at `offset`.
    fn get(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>>;
}

/// Builds image chunks from the running slot, the target slot and the
/// downloaded frames (see [`crate::install::ChunkSource`]). One producer at
/// a time, in image order, so frames are consumed in payload order.
pub struct Assembler<'a> {
    index: &'a BlockIndex,
    chunk_size: u64,
    running: Option<(File, PathBuf)>,
    target: (File, PathBuf),
    planned: &'a dyn crate::install::PayloadSource,
    store_start: u64,
    refetch: &'a dyn Refetch,
    extra: AtomicU64,
    state: Mutex<AsmState>,
}

struct AsmState {
    local: LocalBlocks,
    written_at: Vec<u64>,
    frame: Option<(usize, Vec<u8>)>,
    stored: Vec<u8>,
    dctx: Option<zstd::bulk::Decompressor<'static>>,
}

/// Which frames must be downloaded: those holding a block that is neither
/// local nor in a chunk `done` says is already in the target slot.
pub fn needed_frames(
    index: &BlockIndex,
    local: &LocalBlocks,
    chunk_size: u64,
    done: &[bool],
) -> Vec<usize> {
    let have = in_target(index, chunk_size, done);
    let mut need = vec![false; index.frames.len()];
    for id in 0..index.short.len() {
        if local.at[id] == NOWHERE && have[id] == NOWHERE {
            need[index.frame_of(id as u32)] = true;
        }
    }
    (0..need.len()).filter(|&f| need[f]).collect()
}

/// Offsets in the target of blocks in chunks already written.
fn in_target(index: &BlockIndex, chunk_size: u64, done: &[bool]) -> Vec<u64> {
    let mut at = vec![NOWHERE; index.short.len()];
    let per = (chunk_size / BLOCK_SIZE) as usize;
    for (c, _) in done.iter().enumerate().filter(|(_, d)| **d) {
        for pos in c * per..((c + 1) * per).min(index.map.len()) {
            let slot = &mut at[index.map[pos] as usize];
            if *slot == NOWHERE {
                *slot = pos as u64 * BLOCK_SIZE;
            }
        }
    }
    at
}

/// Where an [`Assembler`] takes the blocks of an image from.
pub struct AssemblerSources<'a> {
    /// The blocks found in the running slot.
    pub local: LocalBlocks,
    /// The running slot's device, if blocks are read from it.
    pub running: Option<&'a Path>,
    /// The target slot's device (chunks already written are read back from it).
    pub target: &'a Path,
    /// Serves the frames [`needed_frames`] chose, at `store_start` + their offset.
    pub planned: &'a dyn crate::install::PayloadSource,
    /// Offset of the block store in `planned`, bytes.
    pub store_start: u64,
    /// Serves any other frame (a local block that did not verify).
    pub refetch: &'a dyn Refetch,
    /// Chunks already in the target.
    pub done: &'a [bool],
}

impl<'a> Assembler<'a> {
    /// An assembler for `index` with chunks of `chunk_size` bytes, taking
    /// blocks from `sources` (see [`AssemblerSources`]).
    ///
    /// Errors: the running or target slot cannot be opened for reading.
    pub fn new(
        index: &'a BlockIndex,
        chunk_size: u64,
        sources: AssemblerSources<'a>,
    ) -> Result<Assembler<'a>, BlockError> {
        let AssemblerSources {
            local,
            running,
            target,
            planned,
            store_start,
            refetch,
            done,
        } = sources;
        let running = match running {
            Some(p) => Some((File::open(p).map_err(io("open", p))?, p.to_path_buf())),
            None => None,
        };
        Ok(Assembler {
            index,
            chunk_size,
            running,
            target: (
                File::open(target).map_err(io("open", target))?,
                target.into(),
            ),
            planned,
            store_start,
            refetch,
            extra: AtomicU64::new(0),
            state: Mutex::new(AsmState {
                local,
                written_at: in_target(index, chunk_size, done),
                frame: None,
                stored: Vec::new(),
                dctx: None,
            }),
        })
    }

    /// Bytes fetched outside the plan so far.
    pub fn extra_bytes(&self) -> u64 {
        self.extra.load(Ordering::Relaxed)
    }

    fn decode(
        st: &mut AsmState,
        f: usize,
        frame: &Frame,
        stored: &[u8],
    ) -> Result<Vec<u8>, String> {
        if st.dctx.is_none() {
            st.dctx = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let dctx = st.dctx.as_mut().ok_or("no decoder")?;
        let want = frame.blocks as usize * BLOCK_SIZE as usize;
        let mut out = vec![0u8; want];
        let got = dctx
            .decompress_to_buffer(stored, &mut out[..])
            .map_err(|e| format!("frame {f}: {e}"))?;
        if got != want {
            return Err(format!("frame {f} decoded to {got} bytes, expected {want}"));
        }
        Ok(out)
    }

    /// Frame `f` decoded, from the planned stream (or, if it fails to
    /// decode, fetched again outside it).
    fn frame<'s>(
        &self,
        st: &'s mut AsmState,
        f: usize,
        planned: bool,
        chunk: usize,
    ) -> Result<&'s [u8], crate::install::InstallError> {
        use crate::install::InstallError;
        if st.frame.as_ref().map(|(k, _)| *k) != Some(f) {
            let fr = self.index.frames[f];
            let offset = self.store_start + self.index.frame_offset(f);
            let mut last = String::new();
            let mut decoded = None;
            for attempt in 0..3 {
                let stored = if attempt == 0 && planned {
                    let mut buf = std::mem::take(&mut st.stored);
                    buf.resize(fr.stored_size as usize, 0);
                    self.planned.read_at(offset, &mut buf).map_err(|source| {
                        InstallError::ReadPayload {
                            index: chunk,
                            source_name: self.planned.name(),
                            kind: self.planned.read_failure(),
                            source,
                        }
                    })?;
                    buf
                } else {
                    self.extra
                        .fetch_add(u64::from(fr.stored_size), Ordering::Relaxed);
                    self.refetch
                        .get(offset, u64::from(fr.stored_size))
                        .map_err(|source| InstallError::ReadPayload {
                            index: chunk,
                            source_name: self.planned.name(),
                            kind: self.planned.read_failure(),
                            source,
                        })?
                };
                let result = Self::decode(st, f, &fr, &stored);
                st.stored = stored;
                match result {
                    Ok(data) => {
                        decoded = Some(data);
                        break;
                    }
                    Err(e) => {
                        log::warn!("block frame {f} is damaged ({e}); fetching it again");
                        last = e;
                    }
                }
            }
            let data = decoded.ok_or(InstallError::Decompress {
                index: chunk,
                reason: last,
            })?;
            st.frame = Some((f, data));
        }
        Ok(st.frame.as_ref().map(|(_, d)| d.as_slice()).unwrap_or(&[]))
    }

    /// Fills `out[..len]` with chunk `i`. With `trust_local` false, blocks
    /// the running slot would give are downloaded instead.
    pub(crate) fn fill(
        &self,
        i: usize,
        out: &mut [u8],
        trust_local: bool,
    ) -> Result<(), crate::install::InstallError> {
        use crate::install::InstallError;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let per = (self.chunk_size / BLOCK_SIZE) as usize;
        let first = i * per;
        let last = ((i + 1) * per).min(self.index.map.len());
        let bs = BLOCK_SIZE as usize;
        // Plan every block, then read runs of adjacent blocks at once.
        let mut plan = Vec::with_capacity(last - first);
        let mut placed: HashMap<u32, usize> = HashMap::new();
        for pos in first..last {
            let id = self.index.map[pos];
            let dst = (pos - first) * bs;
            let from = if let Some(&o) = placed.get(&id) {
                From::Inner(o)
            } else if st.written_at[id as usize] != NOWHERE {
                From::Target(st.written_at[id as usize])
            } else {
                match st.local.at[id as usize] {
                    NOWHERE => From::Frame(id, trust_local),
                    ZEROS if trust_local => From::Zeros,
                    at if trust_local && at != ZEROS && self.running.is_some() => From::Local(at),
                    _ => From::Frame(id, false),
                }
            };
            placed.entry(id).or_insert(dst);
            plan.push(from);
        }
        let mut k = 0;
        while k < plan.len() {
            let dst = k * bs;
            match plan[k] {
                From::Inner(o) => {
                    out.copy_within(o..o + bs, dst);
                    k += 1;
                }
                From::Zeros => {
                    out[dst..dst + bs].fill(0);
                    k += 1;
                }
                From::Frame(id, planned) => {
                    let f = self.index.frame_of(id);
                    let data = self.frame(&mut st, f, planned, i)?;
                    let o = (id - self.index.frame_first_id(f)) as usize * bs;
                    out[dst..dst + bs].copy_from_slice(&data[o..o + bs]);
                    k += 1;
                }
                From::Target(at) | From::Local(at) => {
                    // Extend the run while the next block continues it.
                    let mut n = 1;
                    while k + n < plan.len() {
                        let next = match (plan[k], plan[k + n]) {
                            (From::Target(_), From::Target(b))
                            | (From::Local(_), From::Local(b)) => b,
                            _ => break,
                        };
                        if next != at + n as u64 * BLOCK_SIZE {
                            break;
                        }
                        n += 1;
                    }
                    let (file, path) = match plan[k] {
                        From::Target(_) => (&self.target.0, &self.target.1),
                        _ => match &self.running {
                            Some((f, p)) => (f, p),
                            None => (&self.target.0, &self.target.1),
                        },
                    };
                    file.read_exact_at(&mut out[dst..dst + n * bs], at)
                        .map_err(|source| InstallError::ReadPayload {
                            index: i,
                            source_name: path.display().to_string(),
                            kind: crate::failure::Kind::Io,
                            source,
                        })?;
                    k += n;
                }
            }
        }
        if !trust_local {
            // Local copies of this chunk's blocks proved wrong somewhere:
            // later chunks download them too.
            for pos in first..last {
                let id = self.index.map[pos] as usize;
                if st.written_at[id] == NOWHERE {
                    st.local.at[id] = NOWHERE;
                }
            }
        }
        Ok(())
    }

    /// Chunk `i` was verified and written: its blocks can be read from the
    /// target from now on.
    pub(crate) fn commit(&self, i: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let per = (self.chunk_size / BLOCK_SIZE) as usize;
        let first = i * per;
        let last = ((i + 1) * per).min(self.index.map.len());
        for pos in first..last {
            let id = self.index.map[pos] as usize;
            if st.written_at[id] == NOWHERE {
                st.written_at[id] = pos as u64 * BLOCK_SIZE;
            }
        }
    }
}

impl crate::install::ChunkSource for Assembler<'_> {
    fn max_workers(&self) -> usize {
        1
    }

    fn produce(
        &self,
        _: &mut crate::install::Scratch,
        i: usize,
        out: &mut [u8],
    ) -> Result<(), crate::install::InstallError> {
        self.fill(i, out, true)
    }

    fn retry(
        &self,
        _: &mut crate::install::Scratch,
        i: usize,
        out: &mut [u8],
    ) -> Result<bool, crate::install::InstallError> {
        log::warn!("chunk {i} built from local blocks did not verify; downloading its blocks");
        self.fill(i, out, false).map(|()| true)
    }

    fn committed(&self, i: usize) {
        self.commit(i)
    }
}

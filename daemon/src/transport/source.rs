//! [`HttpSource`]: the stored chunks of an image at a URL as a
//! [`PayloadSource`] for the install pipeline. Wanted chunks close together
//! are coalesced into runs, each read through one [`RangeStream`]; bytes
//! between wanted chunks are dropped, and chunks asked for slightly out of
//! order are kept in a read-ahead map. After a failure every later read
//! fails at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::client::Fetcher;
use super::stream::RangeStream;
use crate::install::PayloadSource;

/// The stored chunks of an image at `url`, read in order through one
/// resuming stream per run of adjacent chunks. Workers that ask slightly
/// out of order are served from a small read-ahead map.
pub struct HttpSource<'a> {
    fetcher: &'a Fetcher,
    url: String,
    state: Mutex<SourceState<'a>>,
}

struct SourceState<'a> {
    /// Runs of wanted byte ranges `(start, end)`, in order, coalesced.
    runs: VecDeque<(u64, u64)>,
    /// Chunk boundaries inside the runs: start offset → length.
    chunks: BTreeMap<u64, u64>,
    stream: Option<RangeStream<'a>>,
    ahead: BTreeMap<u64, Vec<u8>>,
    /// Why the stream gave up: later reads fail at once, with no request.
    failed: Option<String>,
}

impl<'a> HttpSource<'a> {
    /// A source for the chunks `wanted` (`(file offset, length)`, in file
    /// order) of `url`. Chunks no more than the configured `coalesce_gap`
    /// apart are fetched in one request.
    pub fn new(fetcher: &'a Fetcher, url: &str, wanted: &[(u64, u64)]) -> HttpSource<'a> {
        let gap = fetcher.cfg.coalesce_gap;
        let mut runs: VecDeque<(u64, u64)> = VecDeque::new();
        let mut chunks = BTreeMap::new();
        for &(start, len) in wanted {
            chunks.insert(start, len);
            match runs.back_mut() {
                Some(run) if start >= run.1 && start - run.1 <= gap => run.1 = start + len,
                _ => runs.push_back((start, start + len)),
            }
        }
        HttpSource {
            fetcher,
            url: url.to_string(),
            state: Mutex::new(SourceState {
                runs,
                chunks,
                stream: None,
                ahead: BTreeMap::new(),
                failed: None,
            }),
        }
    }

    /// Total bytes this source will download.
    pub fn planned_bytes(&self) -> u64 {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.runs.iter().map(|(a, b)| b - a).sum()
    }

    /// Number of HTTP range requests planned (before any resume).
    pub fn planned_requests(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .runs
            .len()
    }
}

impl PayloadSource for HttpSource<'_> {
    fn read_failure(&self) -> crate::failure::Kind {
        crate::failure::Kind::Network
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &s.failed {
            return Err(std::io::Error::other(reason.clone()));
        }
        let result = Self::read_locked(&mut s, self.fetcher, &self.url, offset, buf);
        if let Err(e) = &result {
            s.failed = Some(e.to_string());
        }
        result
    }

    fn name(&self) -> String {
        self.url.clone()
    }
}

impl<'a> HttpSource<'a> {
    /// [`PayloadSource::read_at`] with the state locked.
    fn read_locked(
        s: &mut SourceState<'a>,
        fetcher: &'a Fetcher,
        url: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> std::io::Result<()> {
        if let Some(data) = s.ahead.remove(&offset) {
            if data.len() == buf.len() {
                buf.copy_from_slice(&data);
                return Ok(());
            }
        }
        loop {
            // Position the stream on the run that holds the next chunk.
            let pos = match &s.stream {
                Some(st) if st.position() < st.end => st.position(),
                _ => {
                    let Some((start, end)) = s.runs.pop_front() else {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("chunk at {offset} is not in the planned ranges"),
                        ));
                    };
                    s.stream = Some(RangeStream::new(fetcher, url, start, end));
                    start
                }
            };
            let len = match s.chunks.get(&pos) {
                Some(&len) => len,
                None => {
                    // Bytes between two wanted chunks of one run: dropped.
                    let next = s
                        .chunks
                        .range(pos..)
                        .next()
                        .map(|(&k, _)| k)
                        .ok_or_else(|| std::io::Error::other(format!("no chunk after {pos}")))?;
                    let mut left = next - pos;
                    let mut gap = vec![0u8; left.min(64 * 1024) as usize];
                    while left > 0 {
                        let n = left.min(gap.len() as u64) as usize;
                        if let Some(st) = s.stream.as_mut() {
                            st.read_exact(&mut gap[..n])
                                .map_err(std::io::Error::other)?;
                        }
                        left -= n as u64;
                    }
                    continue;
                }
            };
            if pos == offset {
                if len as usize != buf.len() {
                    return Err(std::io::Error::other("chunk length differs from the plan"));
                }
                if let Some(st) = s.stream.as_mut() {
                    st.read_exact(buf).map_err(std::io::Error::other)?;
                }
                return Ok(());
            }
            let mut data = vec![0u8; len as usize];
            if let Some(st) = s.stream.as_mut() {
                st.read_exact(&mut data).map_err(std::io::Error::other)?;
            }
            s.ahead.insert(pos, data);
        }
    }
}

//! Fetching bundles over HTTPS: a client that trusts only the configured CA,
//! presents the device certificate when configured, and reads byte ranges
//! as streams that survive dropped connections.
//!
//! Owns the network edge of the install pipeline: [`HttpSource`] is a
//! [`PayloadSource`] that streams the stored chunks of an image in order
//! with HTTP Range requests, resuming after a drop from the byte where it
//! stopped, coping with servers that ignore Range, and enforcing timeouts,
//! a minimum throughput and a hard cap on bytes. Everything it returns is
//! unverified: the install pipeline hashes every chunk before writing it.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::install::PayloadSource;

pub use crate::config::NetworkConfig;

/// Errors of the network edge.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate or key file could not be read or parsed.
    #[error("failed to load {what} {path}: {reason}")]
    Tls {
        /// "CA", "client certificate", ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The URL is not allowed (no CA for https, http not allowed, other scheme).
    #[error("refusing {url}: {reason}")]
    Refused {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request failed (connection, TLS handshake, timeout) after retries.
    #[error("failed to fetch {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// The last error.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The transfer fell below the minimum throughput.
    #[error(
        "{url}: {rate} bytes/s over the last {window} s is below the minimum of {min} bytes/s"
    )]
    TooSlow {
        /// The URL.
        url: String,
        /// Measured bytes per second.
        rate: u64,
        /// Window, seconds.
        window: u64,
        /// Configured minimum.
        min: u64,
    },
    /// The download would exceed `max_download_bytes`.
    #[error("download of {needed} bytes exceeds max_download_bytes = {limit}")]
    OverBudget {
        /// Bytes needed.
        needed: u64,
        /// The limit.
        limit: u64,
    },
}

impl crate::failure::Classify for TransportError {
    /// Including the TLS material: the fetch cannot be made.
    fn kind(&self) -> crate::failure::Kind {
        crate::failure::Kind::Network
    }
}

/// An HTTP(S) client configured for the device. It counts every body byte
/// it receives (resent and skipped bytes included) and fails with
/// [`TransportError::OverBudget`] once that passes `max_download_bytes`.
pub struct Fetcher {
    client: reqwest::blocking::Client,
    cfg: NetworkConfig,
    https_ready: bool,
    received: std::sync::atomic::AtomicU64,
}

fn read_pem(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|e| TransportError::Tls {
        what,
        path: path.clone(),
        reason: e.to_string(),
    })
}

impl Fetcher {
    /// Builds the client: only `cfg.ca` is trusted, the device certificate is
    /// presented if configured, TCP_NODELAY, the configured timeouts.
    ///
    /// Errors: [`TransportError::Tls`] for unreadable or invalid PEM files.
    pub fn new(cfg: &NetworkConfig) -> Result<Fetcher, TransportError> {
        let mut builder = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(cfg.connect_timeout))
            .timeout(Duration::from_secs(cfg.read_timeout))
            .redirect({
                // A redirect may not leave https unless plain http is allowed.
                let allow_http = cfg.allow_http;
                reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= 4 {
                        attempt.error("too many redirects")
                    } else if attempt.url().scheme() != "https" && !allow_http {
                        attempt.error("redirect away from https refused")
                    } else {
                        attempt.follow()
                    }
                })
            })
            .no_proxy();
        if let Some(ca) = &cfg.ca {
            let pem = read_pem("CA", ca)?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| TransportError::Tls {
                    what: "CA",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TransportError::Tls {
                    what: "CA",
                    path: ca.clone(),
                    reason: "no certificate in the file".into(),
                });
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_pem("client certificate", cert)?;
                pem.push(b'\n');
                pem.extend(read_pem("client key", key)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| TransportError::Tls {
                    what: "client certificate",
                    path: cert.clone(),
                    reason: e.to_string(),
                })?;
                builder = builder.identity(id);
            }
            (None, None) => {}
            (Some(p), None) | (None, Some(p)) => {
                return Err(TransportError::Tls {
                    what: "client certificate",
                    path: p.clone(),
                    reason: "client_cert and client_key go together".into(),
                })
            }
        }
        let client = builder.build().map_err(|e| TransportError::Tls {
            what: "TLS configuration",
            path: cfg.ca.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        Ok(Fetcher {
            client,
            cfg: cfg.clone(),
            https_ready: cfg.ca.is_some(),
            received: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Body bytes received so far by every request of this fetcher.
    pub fn received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts `n` received bytes against `max_download_bytes`.
    fn count(&self, n: u64) -> Result<(), TransportError> {
        let total = self
            .received
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst)
            + n;
        let limit = self.cfg.max_download_bytes;
        if limit > 0 && total > limit {
            return Err(TransportError::OverBudget {
                needed: total,
                limit,
            });
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// Checks that `url` may be fetched with this configuration.
    pub fn check_url(&self, url: &str) -> Result<(), TransportError> {
        let refused = |reason: &str| TransportError::Refused {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url.starts_with("https://") {
            if !self.https_ready {
                return Err(refused(
                    "no [network] ca is configured to check the server against",
                ));
            }
            Ok(())
        } else if url.starts_with("http://") {
            if !self.cfg.allow_http {
                return Err(refused(
                    "plain http is not allowed (set [network] allow_http = true)",
                ));
            }
            Ok(())
        } else {
            Err(refused(
                "only https:// (and, if allowed, http://) URLs are supported",
            ))
        }
    }

    /// Fetches `len` bytes at `start` of `url` into memory (small reads:
    /// bundle header, envelope), resuming and retrying like a stream.
    pub fn get_range(&self, url: &str, start: u64, len: u64) -> Result<Vec<u8>, TransportError> {
        let mut stream = RangeStream::new(self, url, start, start + len);
        let mut out = vec![0u8; len as usize];
        stream.read_exact(&mut out)?;
        Ok(out)
    }

    /// Fetches a whole small file, at most `max` bytes, retrying transient
    /// failures like a stream does.
    pub fn get_small(&self, url: &str, max: u64) -> Result<Vec<u8>, TransportError> {
        self.check_url(url)?;
        let mut failures = 0;
        loop {
            match self.get_small_once(url, max) {
                Ok(v) => return Ok(v),
                Err(e) if is_permanent(&e) || failures >= self.cfg.retries => return Err(e),
                Err(e) => {
                    failures += 1;
                    log::warn!("{e}; retrying ({failures}/{})", self.cfg.retries);
                    std::thread::sleep(Duration::from_millis(100u64 << failures.min(5)));
                }
            }
        }
    }

    fn get_small_once(&self, url: &str, max: u64) -> Result<Vec<u8>, TransportError> {
        let resp = self
            .client
            .get(url)
            .send()
            .map_err(|e| fetch_error(url, &e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(TransportError::Status {
                url: url.to_string(),
                status,
            });
        }
        let mut out = Vec::new();
        resp.take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| TransportError::Fetch {
                url: url.to_string(),
                reason: io_reason(&e),
            })?;
        self.count(out.len() as u64)?;
        if out.len() as u64 > max {
            return Err(TransportError::Fetch {
                url: url.to_string(),
                reason: format!("larger than {max} bytes"),
            });
        }
        Ok(out)
    }
}

/// Joins a file name to the URL of the file next to it (query and
/// fragment of `base` are dropped, as a browser does).
pub fn sibling_url(base: &str, file: &str) -> Result<String, TransportError> {
    reqwest::Url::parse(base)
        .and_then(|u| u.join(file))
        .map(|u| u.to_string())
        .map_err(|e| TransportError::Refused {
            url: base.to_string(),
            reason: format!("cannot join {file:?}: {e}"),
        })
}

/// Text for an I/O error from a response body, naming timeouts as such.
fn io_reason(e: &std::io::Error) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return "read timeout".into();
            }
        }
        if c.to_string().contains("timed out") {
            return "read timeout".into();
        }
        cur = c.source();
    }
    e.to_string()
}

fn is_permanent(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::Refused { .. }
            | TransportError::Status {
                status: 400..=499,
                ..
            }
            | TransportError::TooSlow { .. }
            | TransportError::OverBudget { .. }
    ) || matches!(e, TransportError::Fetch { reason, .. } if is_tls_failure(reason))
}

fn fetch_error(url: &str, e: &reqwest::Error) -> TransportError {
    // The whole source chain: TLS failures hide in it.
    let mut reason = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        reason.push_str(": ");
        reason.push_str(&c.to_string());
        cur = c.source();
    }
    TransportError::Fetch {
        url: url.to_string(),
        reason,
    }
}

/// A sequential reader of `[start, end)` of a URL that reconnects with a
/// Range request from the current position after any failure.
pub struct RangeStream<'a> {
    fetcher: &'a Fetcher,
    url: String,
    pos: u64,
    end: u64,
    resp: Option<reqwest::blocking::Response>,
    failures: u32,
    samples: VecDeque<(Instant, u64)>,
    received: u64,
    started: Instant,
}

impl<'a> RangeStream<'a> {
    /// A stream of `[start, end)` of `url`; nothing is sent yet.
    pub fn new(fetcher: &'a Fetcher, url: &str, start: u64, end: u64) -> RangeStream<'a> {
        RangeStream {
            fetcher,
            url: url.to_string(),
            pos: start,
            end,
            resp: None,
            failures: 0,
            samples: VecDeque::new(),
            received: 0,
            started: Instant::now(),
        }
    }

    /// The next byte offset to be read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn connect(&mut self) -> Result<(), TransportError> {
        self.fetcher.check_url(&self.url)?;
        let resp = self
            .fetcher
            .client
            .get(&self.url)
            .header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", self.pos, self.end - 1),
            )
            .send()
            .map_err(|e| fetch_error(&self.url, &e))?;
        match resp.status().as_u16() {
            206 => {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(self.pos) {
                    return Err(TransportError::Fetch {
                        url: self.url.clone(),
                        reason: format!(
                            "server answered a range starting at {start:?}, asked {}",
                            self.pos
                        ),
                    });
                }
                self.resp = Some(resp);
            }
            200 => {
                // The server ignores Range: read from the start and skip.
                let mut resp = resp;
                let skipped = std::io::copy(&mut (&mut resp).take(self.pos), &mut std::io::sink())
                    .map_err(|e| TransportError::Fetch {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    })?;
                self.fetcher.count(skipped)?;
                if skipped != self.pos {
                    return Err(TransportError::Fetch {
                        url: self.url.clone(),
                        reason: format!("file ends at {skipped}, before byte {}", self.pos),
                    });
                }
                self.resp = Some(resp);
            }
            status => {
                return Err(TransportError::Status {
                    url: self.url.clone(),
                    status,
                })
            }
        }
        Ok(())
    }

    fn check_throughput(&mut self) -> Result<(), TransportError> {
        let cfg = &self.fetcher.cfg;
        let now = Instant::now();
        self.samples.push_back((now, self.received));
        let window = Duration::from_secs(cfg.throughput_window.max(1));
        while self.samples.len() > 2 && now.duration_since(self.samples[0].0) > window {
            self.samples.pop_front();
        }
        if cfg.min_throughput == 0 || now.duration_since(self.started) < window {
            return Ok(());
        }
        let (t0, b0) = self.samples[0];
        let secs = now.duration_since(t0).as_secs_f64().max(1e-3);
        let rate = ((self.received - b0) as f64 / secs) as u64;
        if secs >= window.as_secs_f64() * 0.9 && rate < cfg.min_throughput {
            return Err(TransportError::TooSlow {
                url: self.url.clone(),
                rate,
                window: cfg.throughput_window,
                min: cfg.min_throughput,
            });
        }
        Ok(())
    }

    /// Fills `buf` from the stream, reconnecting after failures (up to the
    /// configured number of retries in a row, with growing pauses).
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), TransportError> {
        if self.pos + buf.len() as u64 > self.end {
            return Err(TransportError::Fetch {
                url: self.url.clone(),
                reason: "read past the end of the requested range".into(),
            });
        }
        let mut done = 0;
        while done < buf.len() {
            if self.resp.is_none() {
                if let Err(e) = self.connect() {
                    self.retry_or(e)?;
                    continue;
                }
            }
            let Some(resp) = self.resp.as_mut() else {
                continue;
            };
            match resp.read(&mut buf[done..]) {
                Ok(0) => {
                    self.resp = None;
                    self.retry_or(TransportError::Fetch {
                        url: self.url.clone(),
                        reason: format!("connection closed at byte {}", self.pos),
                    })?;
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                    self.received += n as u64;
                    self.failures = 0;
                    self.fetcher.count(n as u64)?;
                    self.check_throughput()?;
                }
                Err(e) => {
                    self.resp = None;
                    let mut reason = io_reason(&e);
                    if reason.starts_with("read timeout") {
                        reason = format!(
                            "read timeout: no data for {} s",
                            self.fetcher.cfg.read_timeout
                        );
                    }
                    let err = TransportError::Fetch {
                        url: self.url.clone(),
                        reason,
                    };
                    self.retry_or(err)?;
                }
            }
        }
        Ok(())
    }

    fn retry_or(&mut self, e: TransportError) -> Result<(), TransportError> {
        let permanent = is_permanent(&e);
        self.failures += 1;
        if permanent || self.failures > self.fetcher.cfg.retries {
            return Err(e);
        }
        log::warn!(
            "{e}; retrying from byte {} ({}/{})",
            self.pos,
            self.failures,
            self.fetcher.cfg.retries
        );
        let pause = Duration::from_millis(100u64 << self.failures.min(5));
        std::thread::sleep(pause);
        Ok(())
    }
}

fn is_tls_failure(reason: &str) -> bool {
    // Not cured by trying again: a server certificate the device does not
    // trust, or a server that refuses the device's certificate.
    let r = reason.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "unknownca",
        "handshake",
        "fatal alert",
    ]
    .iter()
    .any(|k| r.contains(k))
}

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

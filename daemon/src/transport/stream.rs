//! Range reads that survive dropped connections: [`RangeStream`] reads
//! `[start, end)` of a URL in order, reconnecting with a Range request from
//! the byte where it stopped (skipping ahead when a server ignores Range),
//! with growing pauses between retries, the read timeout and the minimum
//! throughput over a window; [`Fetcher::get_range`] reads a small range into
//! memory through one.

use std::collections::VecDeque;
use std::io::Read;
use std::time::{Duration, Instant};

use super::client::Fetcher;
use super::error::{fetch_error, io_reason, is_permanent, TransportError};

impl Fetcher {
    /// Fetches `len` bytes at `start` of `url` into memory (small reads:
    /// bundle header, envelope), resuming and retrying like a stream.
    pub fn get_range(&self, url: &str, start: u64, len: u64) -> Result<Vec<u8>, TransportError> {
        let mut stream = RangeStream::new(self, url, start, start + len);
        let mut out = vec![0u8; len as usize];
        stream.read_exact(&mut out)?;
        Ok(out)
    }
}

/// A sequential reader of `[start, end)` of a URL that reconnects with a
/// Range request from the current position after any failure.
pub struct RangeStream<'a> {
    fetcher: &'a Fetcher,
    url: String,
    pos: u64,
    pub(super) end: u64,
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

//! The HTTP(S) client of the device: [`Fetcher`] trusts only the configured
//! CA, presents the device certificate when one is configured, applies the
//! timeouts and the redirect rule (never away from https unless plain http
//! is allowed), decides which URLs may be fetched, counts every body byte
//! against `max_download_bytes`, and fetches small whole files. Range reads
//! ([`Fetcher::get_range`], [`RangeStream`](super::RangeStream)) are in
//! `stream`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use super::error::{fetch_error, io_reason, is_permanent, TransportError};
use crate::config::NetworkConfig;

/// An HTTP(S) client configured for the device. It counts every body byte
/// it receives (resent and skipped bytes included) and fails with
/// [`TransportError::OverBudget`] once that passes `max_download_bytes`.
pub struct Fetcher {
    pub(super) client: reqwest::blocking::Client,
    pub(super) cfg: NetworkConfig,
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
    pub(super) fn count(&self, n: u64) -> Result<(), TransportError> {
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

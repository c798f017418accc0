//! The errors of the network edge ([`TransportError`], all of them
//! [`Kind::Network`](crate::failure::Kind::Network)) and how a failure is
//! told apart: permanent (refused URL, 4xx status, too slow, over budget, a
//! TLS trust failure) or worth retrying, and the text of a failed request.

use std::path::PathBuf;

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

/// Text for an I/O error from a response body, naming timeouts as such.
pub(super) fn io_reason(e: &std::io::Error) -> String {
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

/// Whether retrying cannot cure `e`.
pub(super) fn is_permanent(e: &TransportError) -> bool {
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

/// A failed request of `url` as [`TransportError::Fetch`], with the whole
/// source chain in its reason.
pub(super) fn fetch_error(url: &str, e: &reqwest::Error) -> TransportError {
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

/// Whether a failure's text is a TLS trust failure.
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

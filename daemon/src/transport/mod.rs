//! Fetching bundles over HTTPS: a client that trusts only the configured CA,
//! presents the device certificate when configured, and reads byte ranges
//! as streams that survive dropped connections.
//!
//! Owns the network edge of the install pipeline: [`HttpSource`] is a
//! [`PayloadSource`](crate::install::PayloadSource) that streams the stored
//! chunks of an image in order with HTTP Range requests, resuming after a
//! drop from the byte where it stopped, coping with servers that ignore
//! Range, and enforcing timeouts, a minimum throughput and a hard cap on
//! bytes. Everything it returns is unverified: the install pipeline hashes
//! every chunk before writing it.
//!
//! Files:
//! - `client` — [`Fetcher`]: TLS trust, the device certificate, timeouts,
//!   the URLs allowed, the download budget, small whole files;
//! - `stream` — [`RangeStream`]: a resuming range read, and
//!   [`Fetcher::get_range`];
//! - `source` — [`HttpSource`]: an image's stored chunks over coalesced
//!   range streams;
//! - `error` — [`TransportError`] and which failures are worth a retry.

mod client;
mod error;
mod source;
mod stream;

pub use client::{sibling_url, Fetcher};
pub use error::TransportError;
pub use source::HttpSource;
pub use stream::RangeStream;

pub use crate::config::NetworkConfig;

//! The live properties of the service ([`LiveView`]: `Operation`,
//! `Progress`, `LastError`, whether it is busy, the last `Completed`), kept
//! behind one mutex shared by the D-Bus methods and the install task.

use std::sync::Mutex;

use super::ProgressValue;

/// The live properties: what clients read (shared with the install's
/// worker), and what observers inside the daemon (the fleet link) receive
/// whenever the service emits `PropertiesChanged`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveView {
    /// `Operation`.
    pub operation: String,
    /// `Progress`.
    pub progress: ProgressValue,
    /// `LastError`.
    pub last_error: String,
    /// Whether an install or the health gate runs.
    pub busy: bool,
    /// The last `Completed` signal: (sequence number from 1, result, message).
    pub completed: Option<(u64, i32, String)>,
}

/// Locks the shared view; a panic while it was held does not make it
/// unusable (the poison is ignored).
pub(super) fn lock(live: &Mutex<LiveView>) -> std::sync::MutexGuard<'_, LiveView> {
    live.lock().unwrap_or_else(|p| p.into_inner())
}

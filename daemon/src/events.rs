//! Log messages that people and tools look for: stable journald
//! `MESSAGE_ID`s (explained by `systemd/seesaw.catalog`) and the logger
//! set-up.
//!
//! Owns the identifiers (never renumber them) and the fields sent with them
//! (`SEESAW_SLOT`, `SEESAW_VERSION`, `SEESAW_REASON`). Logs go to journald
//! through its native protocol when stderr is connected to the journal
//! (`JOURNAL_STREAM`), otherwise to stderr.

use crate::slot::Slot;

/// An install was started.
pub const INSTALL_STARTED: &str = "f06e9e6060104dd2abd30080c34bdbfe";
/// An install completed: the new slot is written, verified and flipped to.
pub const INSTALL_COMPLETED: &str = "1289792e3da4474b8fa3ff590006470d";
/// An install failed; nothing was flipped.
pub const INSTALL_FAILED: &str = "68ab3e6fc9f048028f32ae12e43a5cf0";
/// A trial boot was committed.
pub const COMMIT: &str = "550bedbc2fd94756a1338f8b3dd7ea29";
/// The new slot did not confirm and the old one runs again.
pub const ROLLBACK: &str = "f38fc19ef7fb437d9570be42e6b1b083";
/// A trial slot failed its health check and was marked bad; rebooting.
pub const MARKED_BAD: &str = "d459c1d9d8fe4bdabeb4521208a12bcf";

/// Logs `message` with a stable `MESSAGE_ID` and the seesaw fields.
pub fn log_event(
    id: &'static str,
    level: log::Level,
    slot: Option<Slot>,
    version: Option<&str>,
    reason: Option<&str>,
    message: &str,
) {
    let slot = slot.map(|s| s.name());
    log::log!(
        target: "seesaw",
        level,
        message_id = id,
        seesaw_slot = slot,
        seesaw_version = version,
        seesaw_reason = reason;
        "{message}"
    );
}

/// Sets up logging: journald (native protocol, structured fields) when
/// stderr is the journal, stderr otherwise. `RUST_LOG` adjusts the level
/// on stderr (default `info`).
pub fn init_logging() {
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(logger) = systemd_journal_logger::JournalLog::new() {
            if logger.install().is_ok() {
                log::set_max_level(log::LevelFilter::Info);
                return;
            }
        }
    }
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .try_init();
}

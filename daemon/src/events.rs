//! Log messages that people and tools look for: stable journald
//! `MESSAGE_ID`s (explained by `systemd/seesaw.catalog`), the fields sent
//! with them, and the logger set-up.
//!
//! Owns the identifiers (never renumber them) and the journal entry of
//! each event ([`Entry::fields`]: `MESSAGE_ID`, `PRIORITY`, `MESSAGE`,
//! `SEESAW_SLOT`, `SEESAW_VERSION`, `SEESAW_REASON`). It does not decide
//! when an event happens: the operation that changes the state builds the
//! entry ([`crate::lifecycle`], [`crate::updater`]) and emits it, so every
//! front end logs the same entry once and none logs its own.
//!
//! Where entries go: when stderr is the journal (`JOURNAL_STREAM`, a
//! systemd service) every log record goes to journald through its native
//! protocol. Otherwise ordinary records go to stderr, and events also go to
//! journald whenever its socket answers, so a command run from a shell
//! still leaves its install, commit or mark in the journal.

use log::kv::{Error as KvError, Key, Source, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

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
/// A slot was marked bad: its trial failed the health check (rebooting),
/// or an operator marked it bad.
pub const MARKED_BAD: &str = "d459c1d9d8fe4bdabeb4521208a12bcf";

/// A trial failed its health check with no slot to fall back to: the
/// running slot stays, its trial ended and its version deny-listed.
pub const NO_FALLBACK: &str = "0f5769d3faa34e32acaf89fc0d4e48fd";

/// The log target of event records; the logger routes them by it.
pub const EVENT_TARGET: &str = "seesaw::event";

/// One event's journal entry: what happened, to which slot and version,
/// and why. `None` fields are unknown and left out of the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The `MESSAGE_ID`, one of the constants of this module.
    pub id: &'static str,
    /// The level; journald's `PRIORITY` follows from it ([`priority`]).
    pub level: Level,
    /// `MESSAGE`: a sentence for people.
    pub message: String,
    /// `SEESAW_SLOT`: the slot the event is about.
    pub slot: Option<Slot>,
    /// `SEESAW_VERSION`: the bundle's or the slot's version (semver).
    pub version: Option<String>,
    /// `SEESAW_REASON`: one line, the error with its cause chain or why.
    pub reason: Option<String>,
}

impl Entry {
    /// [`INSTALL_STARTED`]: a verified bundle of `version` is about to be
    /// written into `slot`.
    pub fn install_started(slot: Slot, version: &str) -> Entry {
        Entry {
            id: INSTALL_STARTED,
            level: Level::Info,
            message: format!("installing {version} into slot {slot}"),
            slot: Some(slot),
            version: Some(version.into()),
            reason: None,
        }
    }

    /// [`INSTALL_COMPLETED`]: `slot` holds `version` and is flipped to.
    pub fn install_completed(slot: Slot, version: &str, message: String) -> Entry {
        Entry {
            id: INSTALL_COMPLETED,
            level: Level::Info,
            message,
            slot: Some(slot),
            version: Some(version.into()),
            reason: None,
        }
    }

    /// [`INSTALL_FAILED`]: an install into `slot` (unknown if the running
    /// slot could not be read) of `version` (unknown if the bundle failed
    /// before its manifest was verified) failed because of `reason`.
    pub fn install_failed(slot: Option<Slot>, version: Option<&str>, reason: &str) -> Entry {
        let what = match version {
            Some(v) => format!("install of {v}"),
            None => "install".to_string(),
        };
        let into = slot.map(|s| format!(" into slot {s}")).unwrap_or_default();
        Entry {
            id: INSTALL_FAILED,
            level: Level::Error,
            message: format!("{what}{into} failed: {reason}"),
            slot,
            version: version.map(str::to_string),
            reason: Some(reason.into()),
        }
    }

    /// [`COMMIT`]: the trial of `version` in `slot` is committed (`reason`:
    /// the health gate passed, or it was marked good).
    pub fn commit(slot: Slot, version: &str, reason: &str, message: String) -> Entry {
        Entry::about(COMMIT, Level::Info, slot, Some(version), reason, message)
    }

    /// [`ROLLBACK`]: `version` in `slot` (the new slot, not the running
    /// one) never confirmed itself, because of `reason`.
    pub fn rollback(slot: Slot, version: &str, reason: &str, message: String) -> Entry {
        Entry::about(ROLLBACK, Level::Warn, slot, Some(version), reason, message)
    }

    /// [`MARKED_BAD`]: `slot`, holding `version` if seesaw installed it
    /// there, was marked bad because of `reason`.
    pub fn marked_bad(slot: Slot, version: Option<&str>, reason: &str, message: String) -> Entry {
        Entry::about(MARKED_BAD, Level::Warn, slot, version, reason, message)
    }

    /// [`NO_FALLBACK`]: the trial of `version` in `slot` failed because
    /// of `reason`, and the other slot is no fallback, so `slot` stays.
    pub fn no_fallback(slot: Slot, version: &str, reason: &str, message: String) -> Entry {
        Entry::about(
            NO_FALLBACK,
            Level::Error,
            slot,
            Some(version),
            reason,
            message,
        )
    }

    /// An event about `slot` (holding `version`, if known) because of `reason`.
    fn about(
        id: &'static str,
        level: Level,
        slot: Slot,
        version: Option<&str>,
        reason: &str,
        message: String,
    ) -> Entry {
        Entry {
            id,
            level,
            message,
            slot: Some(slot),
            version: version.map(str::to_string),
            reason: Some(reason.into()),
        }
    }

    /// The journal fields of this entry, in this order: `MESSAGE_ID`,
    /// `PRIORITY`, `MESSAGE`, then `SEESAW_SLOT`, `SEESAW_VERSION`,
    /// `SEESAW_REASON` where known. Exactly what [`Entry::emit`] sends,
    /// besides the fields the journal logger adds to every record
    /// (`SYSLOG_IDENTIFIER`, `CODE_FILE`, `TARGET`, ...).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("MESSAGE_ID", self.id.to_string()),
            ("PRIORITY", priority(self.level).to_string()),
            ("MESSAGE", self.message.clone()),
        ];
        if let Some(slot) = self.slot {
            fields.push(("SEESAW_SLOT", slot.name().to_string()));
        }
        if let Some(v) = &self.version {
            fields.push(("SEESAW_VERSION", v.clone()));
        }
        if let Some(r) = &self.reason {
            fields.push(("SEESAW_REASON", r.clone()));
        }
        fields
    }

    /// Logs the entry under [`EVENT_TARGET`]: the journal logger turns the
    /// level into `PRIORITY` and the message into `MESSAGE`, and sends the
    /// other [`Entry::fields`] as they are.
    pub fn emit(&self) {
        if self.level > log::max_level() {
            return;
        }
        let fields = self.fields();
        let extra = ExtraFields(&fields);
        log::logger().log(
            &Record::builder()
                .args(format_args!("{}", self.message))
                .level(self.level)
                .target(EVENT_TARGET)
                .module_path_static(Some(module_path!()))
                .file_static(Some(file!()))
                .key_values(&extra)
                .build(),
        );
    }
}

/// journald's `PRIORITY` (syslog level) for `level`, as the journal logger
/// maps it: error 3, warn 4, info 5 (notice), debug 6, trace 7.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 5,
        Level::Debug => 6,
        Level::Trace => 7,
    }
}

/// The fields of an entry the logger does not derive from the record.
struct ExtraFields<'a>(&'a [(&'static str, String)]);

impl Source for ExtraFields<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), KvError> {
        for (key, value) in self.0 {
            if !matches!(*key, "MESSAGE" | "PRIORITY") {
                visitor.visit_pair(Key::from_str(key), Value::from(value.as_str()))?;
            }
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.0.len().saturating_sub(2)
    }
}

/// Ordinary records to stderr; events also to journald if it answers.
struct SplitLogger {
    stderr: env_logger::Logger,
    journal: Option<JournalLog>,
    events_on_stderr: bool,
}

impl Log for SplitLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        (metadata.target() == EVENT_TARGET && self.journal.is_some())
            || self.stderr.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.target() == EVENT_TARGET {
            if let Some(journal) = &self.journal {
                journal.log(record);
            }
            if !self.events_on_stderr {
                return;
            }
        }
        self.stderr.log(record);
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}

/// Sets up logging. When stderr is the journal, everything goes to
/// journald (native protocol, structured fields). Otherwise records go to
/// stderr (`RUST_LOG` adjusts the level, default `info`), and event
/// entries also go to journald if its socket answers.
///
/// `events_on_stderr`: whether event entries are also printed on stderr
/// (the daemon in a terminal); a command that prints its own result
/// passes `false`, so a failure is not printed twice.
pub fn init_logging(events_on_stderr: bool) {
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(logger) = JournalLog::new() {
            if logger.install().is_ok() {
                log::set_max_level(LevelFilter::Info);
                return;
            }
        }
    }
    let stderr =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .format_target(false)
            .build();
    let journal = JournalLog::new().ok();
    let mut max = stderr.filter();
    if journal.is_some() {
        max = max.max(LevelFilter::Info);
    }
    let logger = SplitLogger {
        stderr,
        journal,
        events_on_stderr,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(e: &Entry) -> Vec<&'static str> {
        e.fields().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn every_field_is_known_or_left_out() {
        let e = Entry::install_failed(Some(Slot::B), None, "bad signature");
        assert_eq!(
            e.fields(),
            vec![
                ("MESSAGE_ID", INSTALL_FAILED.to_string()),
                ("PRIORITY", "3".to_string()),
                (
                    "MESSAGE",
                    "install into slot B failed: bad signature".to_string()
                ),
                ("SEESAW_SLOT", "B".to_string()),
                ("SEESAW_REASON", "bad signature".to_string()),
            ]
        );
        let e = Entry::install_failed(None, None, "no cmdline");
        assert_eq!(
            keys(&e),
            ["MESSAGE_ID", "PRIORITY", "MESSAGE", "SEESAW_REASON"]
        );
        assert!(e.fields().iter().all(|(_, v)| v != "None"));
    }

    #[test]
    fn each_event_carries_what_its_catalog_entry_uses() {
        let all = ["SEESAW_SLOT", "SEESAW_VERSION", "SEESAW_REASON"];
        let cases = [
            (Entry::install_started(Slot::B, "2.0.0"), &all[..2], "5"),
            (
                Entry::install_completed(Slot::B, "2.0.0", "m".into()),
                &all[..2],
                "5",
            ),
            (
                Entry::install_failed(Some(Slot::B), Some("2.0.0"), "r"),
                &all[..],
                "3",
            ),
            (
                Entry::commit(Slot::B, "2.0.0", "r", "m".into()),
                &all[..],
                "5",
            ),
            (
                Entry::rollback(Slot::B, "2.0.0", "r", "m".into()),
                &all[..],
                "4",
            ),
            (
                Entry::marked_bad(Slot::B, Some("2.0.0"), "r", "m".into()),
                &all[..],
                "4",
            ),
        ];
        for (e, want, prio) in cases {
            let k = keys(&e);
            assert_eq!(&k[..3], ["MESSAGE_ID", "PRIORITY", "MESSAGE"]);
            assert_eq!(&k[3..], want, "{}", e.id);
            assert_eq!(e.fields()[1].1, prio, "{}", e.id);
        }
    }

    #[test]
    fn the_record_carries_the_fields_but_message_and_priority() {
        let e = Entry::marked_bad(Slot::A, None, "marked bad", "slot A marked bad".into());
        let fields = e.fields();
        let extra = ExtraFields(&fields);
        struct Collect(Vec<(String, String)>);
        impl<'kvs> VisitSource<'kvs> for Collect {
            fn visit_pair(&mut self, k: Key<'kvs>, v: Value<'kvs>) -> Result<(), KvError> {
                self.0.push((k.as_str().to_string(), v.to_string()));
                Ok(())
            }
        }
        let mut c = Collect(Vec::new());
        extra.visit(&mut c).unwrap();
        assert_eq!(
            c.0,
            vec![
                ("MESSAGE_ID".to_string(), MARKED_BAD.to_string()),
                ("SEESAW_SLOT".to_string(), "A".to_string()),
                ("SEESAW_REASON".to_string(), "marked bad".to_string()),
            ]
        );
        assert_eq!(extra.count(), 3);
    }
}

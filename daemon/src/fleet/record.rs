//! What the device remembers about deployments: the last deployment id it
//! acted on and how that ended, in `<data_dir>/fleet.json`.
//!
//! Written atomically (temporary file, fsync, rename, fsync of the
//! directory), so after a power cut the file holds the old or the new
//! record. The id is recorded before the install starts, so a deployment is
//! never run twice, even across restarts (an interrupted install is resumed
//! by the daemon's own resume path, not by the deployment).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FleetError;
use crate::atomic_file;

/// The file name inside the data directory.
pub const RECORD_FILE: &str = "fleet.json";

/// The persisted record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetRecord {
    /// The last deployment acted on (started, refused or ignored).
    pub last_deployment_id: Option<String>,
    /// `installing`, `installed`, `refused`, `failed`, `cancelled` or `ignored`.
    pub result: Option<String>,
    /// Why, for people; empty on success.
    #[serde(default)]
    pub reason: String,
    /// When the result was recorded, RFC 3339 UTC.
    #[serde(default)]
    pub at: String,
    /// The most recent deployment ids acted on, oldest first (bounded);
    /// none of them is run again.
    #[serde(default)]
    pub recent: Vec<String>,
}

/// Reads and writes [`FleetRecord`] in a data directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    /// The store in `data_dir`.
    pub fn new(data_dir: &Path) -> RecordStore {
        RecordStore {
            dir: data_dir.to_path_buf(),
        }
    }

    /// `<data_dir>/fleet.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }

    /// The record; the default if there is none yet.
    ///
    /// Errors: [`FleetError::Record`] if it cannot be read or parsed.
    pub fn load(&self) -> Result<FleetRecord, FleetError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| FleetError::Record {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FleetRecord::default()),
            Err(e) => Err(FleetError::Record {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Writes `record` atomically.
    ///
    /// Errors: [`FleetError::Record`].
    pub fn save(&self, record: &FleetRecord) -> Result<(), FleetError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| FleetError::Record {
            path: self.dir.clone(),
            reason: format!("create: {e}"),
        })?;
        let mut bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        bytes.push(b'\n');
        atomic_file::replace(&self.path(), &bytes).map_err(|e| FleetError::Record {
            path: e.path,
            reason: format!("{}: {}", e.op, e.source),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_default() {
        let d = tempfile::tempdir().unwrap();
        let store = RecordStore::new(&d.path().join("data"));
        assert_eq!(store.load().unwrap(), FleetRecord::default());
        let r = FleetRecord {
            last_deployment_id: Some("d-1".into()),
            result: Some("installing".into()),
            reason: String::new(),
            at: "2026-11-21T00:00:00Z".into(),
            recent: vec!["d-0".into(), "d-1".into()],
        };
        store.save(&r).unwrap();
        assert_eq!(store.load().unwrap(), r);
        let names: Vec<_> = std::fs::read_dir(d.path().join("data")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        std::fs::write(store.path(), b"{").unwrap();
        assert!(matches!(store.load(), Err(FleetError::Record { .. })));
    }
}

//! Fleet push over MQTT: the topics, the deployment and status messages, and
//! the broker connection settings shared by the device and the operator.
//!
//! Owns the wire contract (topic names under `seesaw/v1/`, the JSON of a
//! deployment and of a device status) and its strict validation. A
//! deployment is only a trigger: it names the signed envelope, and the
//! device installs it through the same path as a D-Bus `Install` call, so
//! the trust decision never rests on the broker. This module and
//! [`record`] are pure or plain file I/O; the MQTT clients live in
//! [`device`] (inside `seesaw daemon`) and [`operator`] (`seesaw fleet`).
//!
//! Topics (MQTT, QoS 1, retained):
//! - `seesaw/v1/devices/<id>/deployment`: a deployment for one device;
//! - `seesaw/v1/groups/<group>/deployment`: a deployment for a group;
//! - `seesaw/v1/devices/<id>/status`: the device's status, written only by
//!   the device, with an `offline` status as its last will.

pub mod device;
pub mod operator;
pub mod record;
pub mod tls;

use serde::{Deserialize, Serialize};

/// The first levels of every topic.
pub const TOPIC_ROOT: &str = "seesaw/v1";

/// Largest deployment message accepted, bytes (an embedded envelope included).
pub const MAX_DEPLOYMENT_BYTES: usize = 1 << 20;

/// Longest device id, group name or deployment id, bytes.
pub const MAX_NAME_LEN: usize = 128;

/// The topic filter matching every device's status.
pub const ALL_STATUS_FILTER: &str = "seesaw/v1/devices/+/status";

/// Errors of the fleet link (configuration, TLS files, broker, messages).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The broker URL is not `mqtts://host[:port]` (or `mqtt://` where allowed).
    #[error("invalid broker URL {url:?}: {reason}")]
    BrokerUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A device id, group or deployment id is not a valid topic level.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// `device id`, `group` or `deployment id`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A certificate or key file could not be read or parsed.
    #[error("failed to load {what} {path}: {reason}")]
    Pem {
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The device id is not configured and the certificate has no common name.
    #[error("no device id: set device_id or use a client certificate with a common name ({0})")]
    NoDeviceId(String),
    /// The configuration could not be read (or the service to drive is missing).
    #[error("fleet configuration: {0}")]
    Config(String),
    /// The TLS settings could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The broker could not be reached or refused the connection.
    #[error("broker {broker}: {reason}")]
    Broker {
        /// The broker URL.
        broker: String,
        /// What happened.
        reason: String,
    },
    /// The persisted fleet record could not be written or read.
    #[error("fleet record {path}: {reason}")]
    Record {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl crate::failure::Classify for FleetError {
    fn kind(&self) -> crate::failure::Kind {
        match self {
            FleetError::Broker { .. } => crate::failure::Kind::Network,
            FleetError::InvalidName { .. } | FleetError::BrokerUrl { .. } => {
                crate::failure::Kind::Usage
            }
            FleetError::Record { .. } => crate::failure::Kind::Io,
            FleetError::Pem { .. }
            | FleetError::NoDeviceId(_)
            | FleetError::Config(_)
            | FleetError::Tls(_) => crate::failure::Kind::Config,
        }
    }
}

/// Where the broker is: host, port, and whether TLS is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port (default 8883 for `mqtts`, 1883 for `mqtt`).
    pub port: u16,
    /// `mqtts://` (true) or `mqtt://` (false).
    pub tls: bool,
}

impl Broker {
    /// Parses `mqtts://host[:port]` or `mqtt://host[:port]` (IPv6 in
    /// brackets). A path, user info or query is refused.
    ///
    /// Errors: [`FleetError::BrokerUrl`].
    pub fn parse(url: &str) -> Result<Broker, FleetError> {
        let bad = |reason: &str| FleetError::BrokerUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(bad("the scheme must be mqtts:// (or mqtt://)"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?', '#']) {
            return Err(bad("only a host and a port may follow the scheme"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be 1-65535"))?,
        };
        Ok(Broker {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// Checks that `name` can be one topic level and an ACL user name:
/// 1..=[`MAX_NAME_LEN`] bytes of ASCII letters, digits, `.`, `_`, `-`, `:`.
///
/// Errors: [`FleetError::InvalidName`].
pub fn check_name(what: &'static str, name: &str) -> Result<(), FleetError> {
    let bad = |reason| FleetError::InvalidName {
        what,
        name: name.chars().take(MAX_NAME_LEN + 8).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("it is longer than 128 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err(bad(
            "only ASCII letters, digits, '.', '_', '-' and ':' are allowed",
        ));
    }
    Ok(())
}

/// `seesaw/v1/devices/<id>/deployment`.
pub fn device_deployment_topic(device_id: &str) -> String {
    format!("{TOPIC_ROOT}/devices/{device_id}/deployment")
}

/// `seesaw/v1/groups/<group>/deployment`.
pub fn group_deployment_topic(group: &str) -> String {
    format!("{TOPIC_ROOT}/groups/{group}/deployment")
}

/// `seesaw/v1/devices/<id>/status`.
pub fn status_topic(device_id: &str) -> String {
    format!("{TOPIC_ROOT}/devices/{device_id}/status")
}

/// The device id in a status topic, if `topic` is one.
pub fn device_of_status_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("seesaw/v1/devices/")?
        .strip_suffix("/status")
        .filter(|id| !id.contains('/'))
}

/// A deployment: "install the bundle at `manifest_url`". JSON, retained on a
/// deployment topic; an empty retained message clears it.
///
/// ```json
/// {"deployment_id": "2026-11-21-a", "manifest_url": "https://cdn.example/v2/manifest.dsse.json"}
/// ```
///
/// `envelope` may carry the signed DSSE envelope itself (the JSON object of
/// `manifest.dsse.json`); the device then checks signatures, compatible and
/// deny-list before it fetches anything. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Names this deployment; a device runs a given id at most once.
    pub deployment_id: String,
    /// `https://` (or `http://`, if the device allows it) URL of a network
    /// layout's `manifest.dsse.json` or of a one-file bundle.
    pub manifest_url: String,
    /// The signed envelope, optional (DSSE JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<serde_json::Value>,
}

/// Why a deployment message was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    /// Larger than [`MAX_DEPLOYMENT_BYTES`].
    #[error("deployment message of {0} bytes is larger than 1 MiB")]
    TooLarge(usize),
    /// Not the JSON of a [`Deployment`] (syntax, unknown or missing field).
    #[error("deployment message is not valid: {0}")]
    Malformed(String),
    /// The deployment id is not a valid name.
    #[error("deployment id {0:?} is not valid (1-128 of A-Z a-z 0-9 . _ - :)")]
    BadId(String),
    /// The URL is not http(s).
    #[error("manifest_url {0:?} must be an https:// (or http://) URL")]
    BadUrl(String),
    /// `envelope` is not a JSON object.
    #[error("envelope must be a JSON object (a DSSE envelope)")]
    BadEnvelope,
}

impl crate::failure::Classify for DeploymentError {
    fn kind(&self) -> crate::failure::Kind {
        crate::failure::Kind::Rejected
    }
}

impl Deployment {
    /// Parses and checks a deployment message (strict: unknown fields,
    /// a bad id or URL are errors; nothing is fetched).
    pub fn parse(bytes: &[u8]) -> Result<Deployment, DeploymentError> {
        if bytes.len() > MAX_DEPLOYMENT_BYTES {
            return Err(DeploymentError::TooLarge(bytes.len()));
        }
        let d: Deployment =
            serde_json::from_slice(bytes).map_err(|e| DeploymentError::Malformed(e.to_string()))?;
        if check_name("deployment id", &d.deployment_id).is_err() {
            return Err(DeploymentError::BadId(
                d.deployment_id.chars().take(MAX_NAME_LEN + 8).collect(),
            ));
        }
        let url_ok = (d.manifest_url.starts_with("https://")
            || d.manifest_url.starts_with("http://"))
            && d.manifest_url.len() <= 4096
            && !d.manifest_url.chars().any(char::is_whitespace);
        if !url_ok {
            return Err(DeploymentError::BadUrl(
                d.manifest_url.chars().take(256).collect(),
            ));
        }
        if d.envelope.as_ref().is_some_and(|e| !e.is_object()) {
            return Err(DeploymentError::BadEnvelope);
        }
        Ok(d)
    }
}

/// One slot in a [`DeviceStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SlotReport {
    /// Version seesaw installed there, if known.
    #[serde(default)]
    pub version: Option<String>,
    /// `BOOT_x_LEFT`.
    #[serde(default)]
    pub tries_left: u8,
}

/// A device's status, published retained on `seesaw/v1/devices/<id>/status`
/// (JSON). Readers must ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceStatus {
    /// Format of this message; 1.
    pub format: u32,
    /// The device id (the last level but one of the topic).
    pub device_id: String,
    /// `online`, or `offline` (the last will, or a clean shutdown).
    pub state: String,
    /// The device's compatible string.
    #[serde(default)]
    pub compatible: String,
    /// The groups it listens to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The running slot, `A` or `B`.
    #[serde(default)]
    pub booted_slot: String,
    /// The slot U-Boot tries first (empty if none).
    #[serde(default)]
    pub primary_slot: String,
    /// The version in the running slot, if known.
    #[serde(default)]
    pub version: Option<String>,
    /// Slot `A` and `B`.
    #[serde(default)]
    pub slots: std::collections::BTreeMap<String, SlotReport>,
    /// `idle`, `installing`, `awaiting-reboot` or `trial`.
    #[serde(default)]
    pub operation: String,
    /// Install progress in percent (0-100).
    #[serde(default)]
    pub progress: i32,
    /// Bytes done of the running install.
    #[serde(default)]
    pub bytes_done: u64,
    /// Bytes in total of the running install.
    #[serde(default)]
    pub bytes_total: u64,
    /// The last deployment this device acted on.
    #[serde(default)]
    pub last_deployment_id: Option<String>,
    /// The last result: `installing`, `installed`, `refused`, `failed`,
    /// `cancelled`, `ignored` (a deployment), or a lifecycle result
    /// (`committed`, `rolled-back`, `marked-bad`, `interrupted`), whichever
    /// is newer.
    #[serde(default)]
    pub last_result: Option<String>,
    /// Why (for people); empty on success.
    #[serde(default)]
    pub reason: String,
    /// Deny-listed versions (rolled back or marked bad before).
    #[serde(default)]
    pub failed_versions: Vec<String>,
    /// When this status was made, RFC 3339 UTC.
    #[serde(default)]
    pub time: String,
}

impl DeviceStatus {
    /// The same status as the last will: `state` `offline`, no progress.
    pub fn offline(&self) -> DeviceStatus {
        DeviceStatus {
            state: "offline".into(),
            progress: 0,
            bytes_done: 0,
            bytes_total: 0,
            ..self.clone()
        }
    }

    /// Whether a status differs from `other` in more than progress and time
    /// (such changes are published at once, progress is throttled).
    pub fn differs_beyond_progress(&self, other: &DeviceStatus) -> bool {
        let strip = |s: &DeviceStatus| DeviceStatus {
            progress: 0,
            bytes_done: 0,
            bytes_total: 0,
            time: String::new(),
            ..s.clone()
        };
        strip(self) != strip(other)
    }
}

/// The delay before reconnection attempt `attempt` (0-based): exponential
/// from `min` doubling up to `max`, times a jitter factor in [0.5, 1.0)
/// taken from `random` (any u64; uniform bits give a uniform factor).
pub fn backoff(
    attempt: u32,
    min: std::time::Duration,
    max: std::time::Duration,
    random: u64,
) -> std::time::Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(20)).min(max);
    let jitter = 0.5 + (random >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
    exp.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn broker_urls() {
        let b = Broker::parse("mqtts://broker.example:8884").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.example", 8884, true)
        );
        assert_eq!(Broker::parse("mqtts://h").unwrap().port, 8883);
        assert_eq!(Broker::parse("mqtt://h/").unwrap().port, 1883);
        let v6 = Broker::parse("mqtts://[::1]:9000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
        for bad in [
            "https://h",
            "mqtts://",
            "mqtts://h:0",
            "mqtts://h:x",
            "mqtts://u@h",
            "mqtts://h/path",
            "mqtts://[::1",
        ] {
            assert!(
                matches!(Broker::parse(bad), Err(FleetError::BrokerUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_single_topic_levels() {
        assert!(check_name("group", "canary-1.eu_west:a").is_ok());
        for bad in ["", "a/b", "+", "#", "a b", "é", &"x".repeat(129)] {
            assert!(check_name("group", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            device_deployment_topic("pi-1"),
            "seesaw/v1/devices/pi-1/deployment"
        );
        assert_eq!(group_deployment_topic("g"), "seesaw/v1/groups/g/deployment");
        assert_eq!(device_of_status_topic(&status_topic("pi-1")), Some("pi-1"));
        assert_eq!(device_of_status_topic("seesaw/v1/devices/a/b/status"), None);
    }

    #[test]
    fn deployment_parsing_is_strict() {
        let ok = br#"{"deployment_id":"d-1","manifest_url":"https://h/m.json"}"#;
        let d = Deployment::parse(ok).unwrap();
        assert_eq!(d.deployment_id, "d-1");
        assert!(d.envelope.is_none());
        let with_env = br#"{"deployment_id":"d-1","manifest_url":"https://h/m","envelope":{"payloadType":"x"}}"#;
        assert!(Deployment::parse(with_env).unwrap().envelope.is_some());
        type Case<'a> = (&'a [u8], fn(&DeploymentError) -> bool);
        let cases: &[Case] = &[
            (b"not json", |e| matches!(e, DeploymentError::Malformed(_))),
            (br#"{"deployment_id":"d"}"#, |e| {
                matches!(e, DeploymentError::Malformed(_))
            }),
            (
                br#"{"deployment_id":"d","manifest_url":"https://h","extra":1}"#,
                |e| matches!(e, DeploymentError::Malformed(_)),
            ),
            (
                br#"{"deployment_id":"a/b","manifest_url":"https://h"}"#,
                |e| matches!(e, DeploymentError::BadId(_)),
            ),
            (br#"{"deployment_id":"d","manifest_url":"ftp://h"}"#, |e| {
                matches!(e, DeploymentError::BadUrl(_))
            }),
            (
                br#"{"deployment_id":"d","manifest_url":"/etc/passwd"}"#,
                |e| matches!(e, DeploymentError::BadUrl(_)),
            ),
            (
                br#"{"deployment_id":"d","manifest_url":"https://h","envelope":"x"}"#,
                |e| matches!(e, DeploymentError::BadEnvelope),
            ),
        ];
        for (bytes, want) in cases {
            let e = Deployment::parse(bytes).unwrap_err();
            assert!(want(&e), "{}: {e:?}", String::from_utf8_lossy(bytes));
        }
        let big = vec![b' '; MAX_DEPLOYMENT_BYTES + 1];
        assert_eq!(
            Deployment::parse(&big),
            Err(DeploymentError::TooLarge(MAX_DEPLOYMENT_BYTES + 1))
        );
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(backoff(0, min, max, 0), Duration::from_millis(250));
        assert!(backoff(0, min, max, u64::MAX) <= min);
        assert!(backoff(3, min, max, u64::MAX) > backoff(2, min, max, u64::MAX));
        assert!(backoff(40, min, max, u64::MAX) <= max);
        assert!(backoff(40, min, max, 0) >= max / 2);
    }

    #[test]
    fn progress_only_changes_are_recognised() {
        let a = DeviceStatus {
            format: 1,
            device_id: "d".into(),
            state: "online".into(),
            operation: "installing".into(),
            progress: 10,
            time: "t1".into(),
            ..DeviceStatus::default()
        };
        let mut b = a.clone();
        b.progress = 20;
        b.time = "t2".into();
        assert!(!a.differs_beyond_progress(&b));
        b.operation = "awaiting-reboot".into();
        assert!(a.differs_beyond_progress(&b));
        assert_eq!(a.offline().state, "offline");
    }
}

//! The configuration file, `/etc/seesaw/seesaw.toml` by default.
//!
//! Owns the file's keys and their meaning; loading the trust keys it names.
//! Relative paths are taken relative to the directory of the configuration
//! file. Unknown keys are refused so a typo cannot silently disable a check.
//!
//! ```toml
//! compatible = "raspberrypi4-64"
//! data_dir = "/var/lib/seesaw"          # state, installed manifests, anti-rollback floor
//! cmdline = "/proc/cmdline"             # where `seesaw.slot=A|B` is read
//! fw_env_config = "/etc/fw_env.config"
//! device_id = "pi-0042"                 # optional, for targeting
//! groups = ["canary"]                   # optional, for targeting
//! [slots.A]
//! device = "/dev/mmcblk0p2"             # block device or plain file
//! [slots.B]
//! device = "/dev/mmcblk0p3"
//! [[trust.roles]]
//! name = "release"
//! threshold = 1
//! keys = ["/etc/seesaw/keys/release.pub"]
//! [health]                              # optional: the gate before a trial boot is committed
//! units = ["app.service"]               # must be active
//! commands = ["/usr/bin/app --self-test"] # run with /bin/sh -c; exit 0 = healthy
//! timeout = 300                         # seconds for the whole gate
//! degraded_ok = false                   # whether systemd's "degraded" state counts as healthy
//! [network]                             # optional: installs from https:// URLs
//! ca = "/etc/seesaw/ca.pem"             # the only CA server certificates may chain to
//! client_cert = "/etc/seesaw/device.pem" # optional mutual TLS (device identity)
//! client_key = "/etc/seesaw/device.key"
//! connect_timeout = 15                  # seconds
//! read_timeout = 30                     # seconds without a byte
//! min_throughput = 4096                 # bytes/s averaged over throughput_window
//! throughput_window = 30                # seconds
//! retries = 8                           # reconnections in a row per stream
//! allow_http = false                    # plain http:// (content is still signed)
//! max_download_bytes = 0                # refuse larger downloads (0 = no limit)
//! [fleet]                               # optional: deployments and status over MQTT
//! broker = "mqtts://mqtt.example:8883"
//! ca = "/etc/seesaw/fleet-ca.pem"       # the only CA the broker may chain to
//! client_cert = "/etc/seesaw/device.pem" # its common name is the device id if device_id is unset
//! client_key = "/etc/seesaw/device.key"
//! keepalive = 30                        # seconds
//! progress_interval_ms = 1000           # at most one progress status per interval
//! reconnect_min_ms = 500                # first reconnection delay (doubles, with jitter)
//! reconnect_max_ms = 60000              # longest reconnection delay
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::slot::Slot;
use crate::trust::{PublicKey, Role, TrustError, TrustPolicy};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/seesaw/seesaw.toml";

/// Errors of reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or missing keys.
    #[error("invalid configuration {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A slot's device is in use by the running system (mounted, the root
    /// file system, or the disk of a mounted partition): writing it would
    /// destroy what runs.
    #[error("refusing to write slot {slot}: {reason}; check [slots] in {path}")]
    SlotInUse {
        /// The slot that would be written.
        slot: Slot,
        /// Why it is in use.
        reason: String,
        /// The configuration file.
        path: PathBuf,
    },
    /// A trust key or the trust policy is unusable.
    #[error("invalid trust configuration in {path}: {source}")]
    Trust {
        /// The configuration file.
        path: PathBuf,
        /// The trust error.
        source: TrustError,
    },
}

impl crate::failure::Classify for ConfigError {
    fn kind(&self) -> crate::failure::Kind {
        crate::failure::Kind::Config
    }
}

/// One slot's device.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// Block device or plain file holding the slot.
    pub device: PathBuf,
}

/// The two slots.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// Slot A.
    #[serde(rename = "A")]
    pub a: SlotConfig,
    /// Slot B.
    #[serde(rename = "B")]
    pub b: SlotConfig,
}

/// A trust role as configured: key files and a threshold.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Role name, e.g. `release`.
    pub name: String,
    /// Distinct keys that must sign.
    pub threshold: usize,
    /// SubjectPublicKeyInfo PEM files.
    pub keys: Vec<PathBuf>,
}

/// The `[trust]` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Every role must be satisfied.
    pub roles: Vec<RoleConfig>,
}

/// The `[health]` section: what must hold before a trial boot is committed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// systemd units that must be `active`.
    #[serde(default)]
    pub units: Vec<String>,
    /// Shell commands (run with `/bin/sh -c`) that must exit 0.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Seconds the whole gate may take, waiting for start-up included.
    #[serde(default = "default_health_timeout")]
    pub timeout: u64,
    /// Whether systemd's `degraded` system state counts as healthy.
    #[serde(default)]
    pub degraded_ok: bool,
}

fn default_health_timeout() -> u64 {
    300
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            units: Vec::new(),
            commands: Vec::new(),
            timeout: default_health_timeout(),
            degraded_ok: false,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This board's compatible string; bundles must match it exactly.
    pub compatible: String,
    /// Directory for the persisted state (shared by both slots).
    pub data_dir: PathBuf,
    /// File holding the kernel command line (`/proc/cmdline`).
    #[serde(default = "default_cmdline")]
    pub cmdline: PathBuf,
    /// The libubootenv `fw_env.config` locating the U-Boot environment.
    #[serde(default = "default_fw_env_config")]
    pub fw_env_config: PathBuf,
    /// Device id, for targeted bundles.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Groups, for targeted bundles.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The slots.
    pub slots: Slots,
    /// The trust policy.
    pub trust: TrustConfig,
    /// The health gate.
    #[serde(default)]
    pub health: HealthConfig,
    /// HTTPS sources.
    #[serde(default)]
    pub network: NetworkConfig,
    /// The fleet link (MQTT); absent = no fleet link.
    #[serde(default)]
    pub fleet: Option<FleetConfig>,
    /// Seconds to wait for a lock another process holds (the install lock,
    /// the U-Boot environment lock shared with `fw_setenv`) before giving
    /// up with an error.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: u64,
}

fn default_lock_timeout() -> u64 {
    30
}

/// The `[fleet]` section: the MQTT broker the device keeps one connection to
/// (see `docs/fleet.md`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `mqtts://host[:port]` (default port 8883).
    pub broker: String,
    /// CA certificates (PEM) the broker's certificate must chain to.
    pub ca: PathBuf,
    /// The device certificate (PEM); its common name is the device id when
    /// `device_id` is not set.
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
    /// MQTT keep-alive, seconds (at least 5).
    #[serde(default = "default_keepalive")]
    pub keepalive: u64,
    /// Progress-only status updates are published at most once per this
    /// many milliseconds; state changes are published at once.
    #[serde(default = "default_progress_interval_ms")]
    pub progress_interval_ms: u64,
    /// First delay before reconnecting, milliseconds; doubles per failed
    /// attempt, with jitter.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest delay before reconnecting, milliseconds.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

fn default_keepalive() -> u64 {
    30
}
fn default_progress_interval_ms() -> u64 {
    1000
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    60_000
}

fn default_cmdline() -> PathBuf {
    PathBuf::from("/proc/cmdline")
}

fn default_fw_env_config() -> PathBuf {
    PathBuf::from("/etc/fw_env.config")
}

impl Config {
    /// Reads and checks `path`; relative paths inside become relative to its directory.
    ///
    /// Errors: [`ConfigError::Read`], [`ConfigError::Invalid`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Config::parse(&text, base).map_err(|reason| ConfigError::Invalid {
            path: path.into(),
            reason,
        })?;
        // However they are spelled: one device for both slots means every
        // install overwrites the running slot.
        let (a, b) = (&config.slots.a.device, &config.slots.b.device);
        if crate::mounts::same_target(a, b) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                reason: format!(
                    "slots A ({}) and B ({}) are the same device",
                    a.display(),
                    b.display()
                ),
            });
        }
        Ok(config)
    }

    /// Checks that writing `slot`'s device cannot hit the running system
    /// (see [`crate::mounts::in_use`]); `path` is the configuration file,
    /// for the message.
    ///
    /// Errors: [`ConfigError::SlotInUse`].
    pub fn check_writable(&self, slot: Slot, path: &Path) -> Result<(), ConfigError> {
        match crate::mounts::in_use(self.slot_device(slot)) {
            None => Ok(()),
            Some(reason) => Err(ConfigError::SlotInUse {
                slot,
                reason,
                path: path.into(),
            }),
        }
    }

    /// [`Config::lock_timeout`] as a duration.
    pub fn lock_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lock_timeout)
    }

    /// Parses TOML text; relative paths are joined to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.compatible.is_empty() {
            return Err("compatible is empty".into());
        }
        if c.health.timeout == 0 {
            return Err("health.timeout must be at least 1 second".into());
        }
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut c.data_dir);
        abs(&mut c.cmdline);
        abs(&mut c.fw_env_config);
        abs(&mut c.slots.a.device);
        abs(&mut c.slots.b.device);
        for r in &mut c.trust.roles {
            r.keys.iter_mut().for_each(abs);
        }
        if let Some(f) = &mut c.fleet {
            crate::fleet::Broker::parse(&f.broker).map_err(|e| e.to_string())?;
            if f.keepalive < 5 {
                return Err("fleet.keepalive must be at least 5 seconds".into());
            }
            if f.reconnect_min_ms == 0 || f.reconnect_max_ms < f.reconnect_min_ms {
                return Err("fleet: need 0 < reconnect_min_ms <= reconnect_max_ms".into());
            }
            abs(&mut f.ca);
            abs(&mut f.client_cert);
            abs(&mut f.client_key);
            // Each becomes one topic level and an ACL user name.
            if let Some(id) = &c.device_id {
                crate::fleet::check_name("device id", id).map_err(|e| e.to_string())?;
            }
            for g in &c.groups {
                crate::fleet::check_name("group", g).map_err(|e| e.to_string())?;
            }
        }
        let n = &mut c.network;
        for p in [&mut n.ca, &mut n.client_cert, &mut n.client_key]
            .into_iter()
            .flatten()
        {
            abs(p);
        }
        Ok(c)
    }

    /// The device of `slot`.
    pub fn slot_device(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.slots.a.device,
            Slot::B => &self.slots.b.device,
        }
    }

    /// Loads the key files and builds the trust policy.
    ///
    /// Errors: [`ConfigError::Trust`] (unreadable key, not an ed25519 SPKI PEM,
    /// or an unusable policy).
    pub fn trust_policy(&self, config_path: &Path) -> Result<TrustPolicy, ConfigError> {
        let err = |source| ConfigError::Trust {
            path: config_path.into(),
            source,
        };
        let mut roles = Vec::new();
        for r in &self.trust.roles {
            let keys = r
                .keys
                .iter()
                .map(|p| PublicKey::load(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            roles.push(Role {
                name: r.name.clone(),
                threshold: r.threshold,
                keys,
            });
        }
        TrustPolicy::new(roles).map_err(err)
    }
}

/// The `[network]` section of the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// CA certificates (PEM) that server certificates must chain to. The
    /// system's trust store is never used.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The device certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8 or SEC1).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Seconds to establish a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u64,
    /// Seconds without a single byte before a read fails.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: u64,
    /// Bytes per second the download must average over `throughput_window`.
    #[serde(default = "default_min_throughput")]
    pub min_throughput: u64,
    /// Seconds over which the throughput is averaged.
    #[serde(default = "default_throughput_window")]
    pub throughput_window: u64,
    /// Reconnections allowed per stream after a failure, before giving up.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Whether plain `http://` sources are allowed (the signature still
    /// protects the content; TLS protects privacy and availability).
    #[serde(default)]
    pub allow_http: bool,
    /// Refuse an install that would download more than this many bytes,
    /// every byte received counted (envelope, index, payload, and bytes a
    /// server sends again after a drop); for metered links; 0 = no limit.
    #[serde(default)]
    pub max_download_bytes: u64,
    /// Whether a network layout with a block store is installed as a delta
    /// from the running slot (when that downloads less than the full
    /// payload). `false` always downloads the full payload.
    #[serde(default = "default_delta")]
    pub delta: bool,
    /// Wanted ranges of a file at most this many bytes apart are fetched in
    /// one request, the bytes between read and dropped: fewer round trips on
    /// a slow link for a few more bytes (4096 by default; on a link with a
    /// long round trip, 65536 trades about 2x the bytes of a delta for 3x
    /// fewer requests). 0 joins only adjacent ranges.
    #[serde(default = "default_coalesce_gap")]
    pub coalesce_gap: u64,
}

fn default_coalesce_gap() -> u64 {
    4096
}

fn default_delta() -> bool {
    true
}

fn default_connect_timeout() -> u64 {
    15
}
fn default_read_timeout() -> u64 {
    30
}
fn default_min_throughput() -> u64 {
    4096
}
fn default_throughput_window() -> u64 {
    30
}
fn default_retries() -> u32 {
    8
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            ca: None,
            client_cert: None,
            client_key: None,
            connect_timeout: default_connect_timeout(),
            read_timeout: default_read_timeout(),
            min_throughput: default_min_throughput(),
            throughput_window: default_throughput_window(),
            retries: default_retries(),
            allow_http: false,
            max_download_bytes: 0,
            delta: true,
            coalesce_gap: default_coalesce_gap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
compatible = "raspberrypi4-64"
data_dir = "/var/lib/seesaw"
fw_env_config = "fw_env.config"
[slots.A]
device = "/dev/mmcblk0p2"
[slots.B]
device = "/dev/mmcblk0p3"
[[trust.roles]]
name = "release"
threshold = 1
keys = ["keys/release.pub"]
"#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse(SAMPLE, Path::new("/etc/seesaw")).unwrap();
        assert_eq!(c.compatible, "raspberrypi4-64");
        assert_eq!(c.cmdline, PathBuf::from("/proc/cmdline"));
        assert_eq!(c.fw_env_config, PathBuf::from("/etc/seesaw/fw_env.config"));
        assert_eq!(c.slot_device(Slot::B), Path::new("/dev/mmcblk0p3"));
        assert_eq!(
            c.trust.roles[0].keys[0],
            PathBuf::from("/etc/seesaw/keys/release.pub")
        );
    }

    #[test]
    fn fleet_section() {
        let with = format!(
            "{SAMPLE}[fleet]\nbroker = \"mqtts://b:8884\"\nca = \"ca.pem\"\n\
             client_cert = \"d.pem\"\nclient_key = \"/k/d.key\"\n"
        );
        let c = Config::parse(&with, Path::new("/etc/seesaw")).unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.ca, PathBuf::from("/etc/seesaw/ca.pem"));
        assert_eq!(f.client_key, PathBuf::from("/k/d.key"));
        assert_eq!((f.keepalive, f.progress_interval_ms), (30, 1000));
        let bad_url = with.replace("mqtts://b:8884", "https://b");
        assert!(Config::parse(&bad_url, Path::new("/")).is_err());
        let typo = with.replace("client_key", "clientkey");
        assert!(Config::parse(&typo, Path::new("/")).is_err());
        let bad_group = format!("groups = [\"a/b\"]\n{with}");
        assert!(Config::parse(&bad_group, Path::new("/")).is_err());
    }

    #[test]
    fn refuses_unknown_and_missing_keys() {
        let typo = SAMPLE.replace("data_dir", "datadir");
        assert!(Config::parse(&typo, Path::new("/")).is_err());
        let no_b = SAMPLE.replace("[slots.B]\ndevice = \"/dev/mmcblk0p3\"\n", "");
        assert!(Config::parse(&no_b, Path::new("/")).is_err());
        let empty = SAMPLE.replace("\"raspberrypi4-64\"", "\"\"");
        assert!(Config::parse(&empty, Path::new("/")).is_err());
    }
}

//! The `seesaw` command line's arguments: [`Cli`] with its global options,
//! the commands ([`Command`], [`BundleCommand`], [`FleetCommand`]) and the
//! option groups they share ([`FleetConnectionArgs`], [`FleetTargetArgs`],
//! [`ExternalSigning`]), with the conversions of those groups into what the
//! library takes.
//!
//! The command names, options, defaults and help texts are a contract for
//! scripts: they only change together with the documentation.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bundle::{self, BundleError};
use crate::config::DEFAULT_CONFIG_PATH;
use crate::slot::Slot;
use crate::trust::PublicKey;

/// A/B over-the-air updater for U-Boot boards.
#[derive(Debug, Parser)]
#[command(name = "seesaw", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// D-Bus address of the bus the daemon is on (default: the system bus).
    #[arg(long, global = true, env = "SEESAW_BUS_ADDRESS")]
    pub bus_address: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make an ed25519 key pair: PREFIX.pem (private, PKCS#8) and PREFIX.pub (SPKI).
    Keygen {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create, countersign, verify or inspect bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Run the update service (systemd, D-Bus).
    Daemon,
    /// Verify a bundle and install it into the inactive slot, then flip the environment.
    /// Goes through the daemon when it runs; works standalone otherwise.
    Install {
        /// A one-file bundle (path or file:// URL), or an https:// URL of a
        /// one-file bundle or of a network layout's manifest.dsse.json.
        bundle: String,
        /// Install even a version that rolled back before (deny-listed).
        #[arg(long)]
        force: bool,
        /// Progress and result as JSON lines on stderr: `{"event":
        /// "progress", "percent", "bytes_done", "bytes_total", "message"}`
        /// per 10% of each phase, then `{"event": "completed", "result",
        /// "message"}` (result: the exit status).
        #[arg(long)]
        json: bool,
    },
    /// Cancel the install the daemon is running.
    Cancel,
    /// Show booted and primary slot, tries left, versions, pending commit, floor.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Commit the running slot.
    MarkGood,
    /// Mark a slot bad (default: the running slot).
    MarkBad {
        /// A or B.
        slot: Option<Slot>,
    },
    /// Push deployments to devices or groups over MQTT and read the fleet's status.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

/// How `seesaw fleet` reaches the broker.
#[derive(Debug, clap::Args)]
pub struct FleetConnectionArgs {
    /// The broker: mqtts://host[:port] (default port 8883).
    #[arg(long, env = "SEESAW_FLEET_BROKER")]
    pub broker: String,
    /// CA certificates (PEM) the broker's certificate must chain to.
    #[arg(long, env = "SEESAW_FLEET_CA")]
    pub ca: Option<PathBuf>,
    /// The operator's client certificate (PEM).
    #[arg(long, env = "SEESAW_FLEET_CERT")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "SEESAW_FLEET_KEY")]
    pub key: Option<PathBuf>,
    /// Seconds to wait for the broker (connection and acknowledgement).
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

impl FleetConnectionArgs {
    /// The operator's connection settings (the timeout at least one second).
    pub(super) fn connection(&self) -> crate::fleet::operator::Connection {
        crate::fleet::operator::Connection {
            broker: self.broker.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
        }
    }
}

/// One device or one group.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct FleetTargetArgs {
    /// A device id.
    #[arg(long)]
    pub device: Option<String>,
    /// A group name.
    #[arg(long)]
    pub group: Option<String>,
}

impl FleetTargetArgs {
    /// The device or group the command addresses.
    pub(super) fn target(&self) -> crate::fleet::operator::Target {
        use crate::fleet::operator::Target;
        match (&self.device, &self.group) {
            (Some(d), _) => Target::Device(d.clone()),
            (None, Some(g)) => Target::Group(g.clone()),
            // clap's group makes one of the two required.
            (None, None) => Target::Device(String::new()),
        }
    }
}

/// `seesaw fleet …`
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Publish a retained deployment for a device or a group.
    Publish {
        #[command(flatten)]
        connection: FleetConnectionArgs,
        #[command(flatten)]
        target: FleetTargetArgs,
        /// https:// URL of the network layout's manifest.dsse.json (or of a one-file bundle).
        #[arg(long)]
        manifest_url: String,
        /// The deployment id (default: generated from the time and random bits, printed).
        #[arg(long)]
        deployment_id: Option<String>,
        /// Also carry the signed envelope (manifest.dsse.json) in the
        /// deployment, so devices refuse a bad one before fetching anything.
        #[arg(long)]
        envelope: Option<PathBuf>,
    },
    /// Remove the retained deployment of a device or a group.
    Clear {
        #[command(flatten)]
        connection: FleetConnectionArgs,
        #[command(flatten)]
        target: FleetTargetArgs,
    },
    /// One row per device from the retained statuses: id, version, slot,
    /// state, last result, reason, last seen.
    Status {
        #[command(flatten)]
        connection: FleetConnectionArgs,
        /// Print the statuses as a JSON array.
        #[arg(long)]
        json: bool,
        /// Milliseconds without a new status after which the list is complete.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
    },
}

/// Signing with keys kept outside this machine (an HSM, a signing service).
#[derive(Debug, clap::Args)]
pub struct ExternalSigning {
    /// A command run with `sh -c`: it reads the bytes to sign on standard
    /// input and prints the 64-byte ed25519 signature, base64, on standard
    /// output. Repeat for several signers, each with its --sign-pubkey.
    #[arg(long = "sign-command", requires = "sign_pubkeys")]
    pub sign_commands: Vec<String>,
    /// The public key (SubjectPublicKeyInfo PEM) of each --sign-command, in
    /// the same order; every signature is checked against it.
    #[arg(long = "sign-pubkey")]
    pub sign_pubkeys: Vec<PathBuf>,
}

impl ExternalSigning {
    /// One external signer per `--sign-command`, each with its public key.
    ///
    /// Errors: [`BundleError::InvalidOption`] when the two lists differ in
    /// length; a [`crate::trust::TrustError`] for an unreadable public key.
    pub(super) fn signers(&self) -> anyhow::Result<Vec<crate::trust::ExternalSigner>> {
        if self.sign_commands.len() != self.sign_pubkeys.len() {
            return Err(BundleError::InvalidOption(
                "give one --sign-pubkey for each --sign-command".into(),
            )
            .into());
        }
        self.sign_commands
            .iter()
            .zip(&self.sign_pubkeys)
            .map(|(cmd, key)| {
                Ok(crate::trust::ExternalSigner::new(
                    cmd,
                    PublicKey::load(key)?,
                ))
            })
            .collect()
    }
}

/// `seesaw bundle …`
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Make a signed one-file bundle from an image.
    Create {
        /// The image (e.g. an ext4 root filesystem).
        #[arg(long)]
        image: PathBuf,
        /// The board the bundle is for.
        #[arg(long)]
        compatible: String,
        /// Semantic version.
        #[arg(long)]
        version: String,
        /// Anti-rollback counter.
        #[arg(long)]
        security_version: u64,
        /// Expiry time, RFC 3339.
        #[arg(long)]
        expires: Option<String>,
        /// Chunk size in bytes (a multiple of 4096).
        #[arg(long, default_value_t = bundle::DEFAULT_CHUNK_SIZE)]
        chunk_size: u64,
        /// zstd compression level (1–22).
        #[arg(long, default_value_t = bundle::DEFAULT_ZSTD_LEVEL)]
        zstd_level: i32,
        /// Private key (PKCS#8 PEM); repeat to sign with several.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        external: ExternalSigning,
        /// The one-file bundle to write.
        #[arg(long, required_unless_present = "output_dir")]
        output: Option<PathBuf>,
        /// Also (or instead) write the network layout into this directory:
        /// manifest.dsse.json (the signed envelope), rootfs.payload, and the
        /// block store for delta installs (rootfs.index, rootfs.blocks).
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// An earlier image devices may run (repeatable): the block store
        /// keeps the blocks it lacks apart, so deltas from it download less.
        #[arg(long = "delta-base", requires = "output_dir")]
        delta_bases: Vec<PathBuf>,
    },
    /// Add a countersignature, keeping existing ones.
    Sign {
        /// Private key (PKCS#8 PEM).
        #[arg(long, required_unless_present = "sign_commands")]
        key: Option<PathBuf>,
        #[command(flatten)]
        external: ExternalSigning,
        /// The bundle, rewritten in place atomically.
        bundle: PathBuf,
    },
    /// Verify a bundle against the trust policy of --config.
    Verify {
        /// The bundle.
        bundle: PathBuf,
    },
    /// Print the manifest as JSON (signatures NOT checked).
    Inspect {
        /// The bundle.
        bundle: PathBuf,
    },
}

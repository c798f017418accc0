//! The `seesaw` command line: argument definitions and the thin adapter that
//! turns each command into a call of [`crate::updater`] or [`crate::bundle`].
//!
//! Owns the command names, options and exit statuses (a contract for
//! scripts; see [`exit`]). Prints results on stdout, progress and errors on
//! stderr. Contains no update logic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::bundle::{self, BundleError, CreateOptions, RawBundle};
use crate::client::Client;
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::failure::{Classify, Kind};
use crate::progress::{self, Meter};
use crate::slot::Slot;
use crate::trust::{PrivateKey, PublicKey, Signer, TrustError};
use crate::updater::{InstallOptions, UpdateError, Updater};

/// Exit statuses of `seesaw` (defined with the failure kinds they stand for).
pub use crate::failure::exit;

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
    fn connection(&self) -> crate::fleet::operator::Connection {
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
    fn target(&self) -> crate::fleet::operator::Target {
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
    fn signers(&self) -> anyhow::Result<Vec<crate::trust::ExternalSigner>> {
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

/// The exit status for an error chain produced by [`run`]: the
/// [`Kind`](crate::failure::Kind) of the first cause that is one of the
/// library's typed errors, [`exit::FAILURE`] if none is.
pub fn exit_status(err: &anyhow::Error) -> i32 {
    failure_kind(err).map_or(exit::FAILURE, Kind::exit_status)
}

/// The kind of the first typed cause in `err`'s chain.
fn failure_kind(err: &anyhow::Error) -> Option<Kind> {
    fn kind_of<E: Classify + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<Kind> {
        cause.downcast_ref::<E>().map(Classify::kind)
    }
    err.chain().find_map(|cause| {
        kind_of::<UpdateError>(cause)
            .or_else(|| kind_of::<BundleError>(cause))
            .or_else(|| kind_of::<crate::config::ConfigError>(cause))
            .or_else(|| kind_of::<TrustError>(cause))
            .or_else(|| kind_of::<crate::client::ClientError>(cause))
            .or_else(|| kind_of::<crate::fleet::FleetError>(cause))
            .or_else(|| kind_of::<crate::daemon::DaemonError>(cause))
    })
}

/// The one line `seesaw` prints for an error: every cause of the chain, each
/// once, joined with `": "`.
///
/// Our error types show their source in their own message and also return
/// it from `source()`, so anyhow's `{:#}` would print it twice; a cause whose
/// text the line already contains is skipped. A cause spanning several lines
/// (the TOML parser's message with its source excerpt and caret) is folded
/// into one by [`one_line`].
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Folds a message of several lines into one: lines of a source excerpt
/// (`2 | data_dir =`, `  |    ^`) are dropped, the others trimmed and joined,
/// the first with `": "` and the rest with `"; "`.
///
/// The TOML parser's five lines `TOML parse error at line 2, column 12`,
/// `  |`, `2 | data_dir =`, `  |            ^`, `invalid string` become
/// `TOML parse error at line 2, column 12: invalid string`.
pub fn one_line(text: &str) -> String {
    let excerpt = |l: &str| {
        l.trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    let mut out = String::new();
    for (i, l) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !excerpt(l))
        .enumerate()
    {
        match i {
            0 => {}
            _ if out.ends_with(':') || out.ends_with(';') => out.push(' '),
            1 => out.push_str(": "),
            _ => out.push_str("; "),
        }
        out.push_str(l);
    }
    out
}

/// Runs one command. Errors carry the typed cause for [`exit_status`].
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    match cli.command {
        Command::Keygen { out } => keygen(&out),
        Command::Bundle(cmd) => run_bundle(cmd, &cli.config, now),
        Command::Daemon => {
            crate::daemon::run(crate::daemon::DaemonOptions {
                config: cli.config.clone(),
                bus_address: cli.bus_address.clone(),
            })?;
            Ok(())
        }
        Command::Install {
            bundle,
            force,
            json,
        } => {
            if let Some(client) = Client::find(cli.bus_address.as_deref()) {
                let message = client.install(&bundle, force, json)?;
                println!("{message}");
                return Ok(());
            }
            let meter = Meter::new(json);
            let cancel = AtomicBool::new(false);
            let started = Instant::now();
            let report = Updater::open(&cli.config).and_then(|mut updater| {
                updater.install_source(
                    &bundle,
                    &InstallOptions { threads: 0, force },
                    &meter,
                    &cancel,
                    now,
                )
            });
            let report = match report {
                Ok(report) => {
                    meter.finish(
                        exit::OK,
                        &progress::installed_message(&report.version, report.slot),
                    );
                    report
                }
                Err(e) => {
                    // The daemon's `Completed` result for the same failure.
                    meter.finish(e.kind().exit_status(), &progress::failed_message(&e));
                    return Err(e.into());
                }
            };
            let secs = started.elapsed().as_secs_f64();
            let fetched = if report.downloaded > 0 {
                format!(
                    ", {} bytes downloaded ({:.1}% of the image)",
                    report.downloaded,
                    report.downloaded as f64 * 100.0 / report.size.max(1) as f64
                )
            } else {
                String::new()
            };
            println!(
                "installed {} into slot {} ({} bytes in {:.2} s, {:.0} MiB/s{fetched}); reboot to try it",
                report.version,
                report.slot,
                report.size,
                secs,
                report.size as f64 / 1048576.0 / secs.max(1e-9)
            );
            Ok(())
        }
        Command::Cancel => match Client::find(cli.bus_address.as_deref()) {
            Some(client) => {
                client.cancel()?;
                println!("cancel requested");
                Ok(())
            }
            None => bail!("no seesaw daemon is running; a standalone install stops with Ctrl-C"),
        },
        Command::Status { json } => {
            let mut status = Updater::open(&cli.config)?.status()?;
            let live = Client::find(cli.bus_address.as_deref()).and_then(|c| c.live().ok());
            if let Some((operation, progress, last_error)) = &live {
                status.daemon = Some(crate::updater::DaemonStatus {
                    operation: operation.clone(),
                    percent: progress.0,
                    bytes_done: progress.1,
                    bytes_total: progress.2,
                    message: progress.3.clone(),
                    last_error: last_error.clone(),
                });
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        Command::MarkGood => {
            if let Some(client) = Client::find(cli.bus_address.as_deref()) {
                println!("{}", client.mark("good", "")?.1);
                return Ok(());
            }
            let report = Updater::open(&cli.config)?.mark_good(now)?;
            println!("{}", report.message);
            Ok(())
        }
        Command::Fleet(cmd) => run_fleet(cmd),
        Command::MarkBad { slot } => {
            if let Some(client) = Client::find(cli.bus_address.as_deref()) {
                println!(
                    "{}",
                    client.mark("bad", slot.map(|s| s.name()).unwrap_or(""))?.1
                );
                return Ok(());
            }
            let report = Updater::open(&cli.config)?.mark_bad(slot, now)?;
            println!("{}", report.message);
            Ok(())
        }
    }
}

fn run_fleet(cmd: FleetCommand) -> anyhow::Result<()> {
    use crate::fleet::{operator, Deployment};
    match cmd {
        FleetCommand::Publish {
            connection,
            target,
            manifest_url,
            deployment_id,
            envelope,
        } => {
            let envelope = envelope
                .map(|p| -> anyhow::Result<serde_json::Value> {
                    let bytes = std::fs::read(&p)
                        .with_context(|| format!("failed to read {}", p.display()))?;
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("{} is not JSON", p.display()))
                })
                .transpose()?;
            let deployment = Deployment {
                deployment_id: deployment_id.unwrap_or_else(operator::generate_deployment_id),
                manifest_url,
                envelope,
            };
            let topic = operator::publish(&connection.connection(), &target.target(), &deployment)?;
            println!("{}", deployment.deployment_id);
            eprintln!(
                "published deployment {} on {topic}",
                deployment.deployment_id
            );
            Ok(())
        }
        FleetCommand::Clear { connection, target } => {
            let topic = operator::clear(&connection.connection(), &target.target())?;
            eprintln!("cleared the deployment on {topic}");
            Ok(())
        }
        FleetCommand::Status {
            connection,
            json,
            settle_ms,
        } => {
            let conn = connection.connection();
            let limit = conn.timeout.max(std::time::Duration::from_secs(60));
            let statuses = operator::collect_status(
                &conn,
                std::time::Duration::from_millis(settle_ms.max(1)),
                limit,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", operator::format_table(&statuses));
            }
            Ok(())
        }
    }
}

fn print_status(s: &crate::updater::Status) {
    let opt = |o: Option<Slot>| o.map(|s| s.name()).unwrap_or("none");
    println!("compatible:     {}", s.compatible);
    println!("operation:      {}", s.operation);
    println!("booted slot:    {}", s.booted);
    println!("primary slot:   {}", opt(s.primary));
    println!("boot order:     {}", s.boot_order);
    for slot in &s.slots {
        let version = match (&slot.version, slot.intact) {
            (Some(v), Some(false)) => format!("{v} (recorded, but the slot no longer holds it)"),
            (Some(v), _) => v.clone(),
            (None, _) => "unknown (not written by seesaw)".into(),
        };
        println!(
            "slot {}:         {}tries left {}, version {}, {}",
            slot.slot,
            if slot.booted { "booted, " } else { "" },
            slot.tries_left,
            version,
            slot.device.display()
        );
    }
    match &s.pending {
        Some(p) if s.commit_pending => println!(
            "commit pending: yes, {} in slot {} (run mark-good)",
            p.version, p.slot
        ),
        Some(p) => println!(
            "commit pending: no; {} installed in slot {}, awaiting reboot",
            p.version, p.slot
        ),
        None => println!("commit pending: no"),
    }
    println!("rollback floor: {}", s.floor);
    if let Some(r) = &s.last_result {
        println!(
            "last result:    {} at {}: {}",
            r.kind.name(),
            r.at,
            r.message
        );
    }
    if !s.failed_versions.is_empty() {
        println!("failed versions: {}", s.failed_versions.join(", "));
    }
    match &s.daemon {
        Some(d) => {
            println!(
                "daemon:         {} {}% {}",
                d.operation, d.percent, d.message
            );
            if !d.last_error.is_empty() {
                println!("last error:     {}", d.last_error);
            }
        }
        None => println!("daemon:         not running (commands work standalone)"),
    }
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let key = PrivateKey::generate();
    let private = out.with_file_name(format!("{}.pem", file_name(out)));
    let public = out.with_file_name(format!("{}.pub", file_name(out)));
    for p in [&private, &public] {
        if p.exists() {
            bail!("{} exists; refusing to overwrite a key", p.display());
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .with_context(|| format!("failed to create {}", private.display()))?;
    f.write_all(key.to_pem()?.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("failed to write {}", private.display()))?;
    std::fs::write(&public, key.public().to_pem()?)
        .with_context(|| format!("failed to write {}", public.display()))?;
    println!("{}\n{}", private.display(), public.display());
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn run_bundle(cmd: BundleCommand, config: &Path, now: OffsetDateTime) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Create {
            image,
            compatible,
            version,
            security_version,
            expires,
            chunk_size,
            zstd_level,
            keys,
            external,
            output,
            output_dir,
            delta_bases,
        } => {
            let expires = expires
                .map(|e| {
                    OffsetDateTime::parse(&e, &time::format_description::well_known::Rfc3339)
                        .map_err(|err| {
                            BundleError::InvalidOption(format!(
                                "--expires {e:?} is not RFC 3339: {err}"
                            ))
                        })
                })
                .transpose()?;
            let keys = keys
                .iter()
                .map(|k| PrivateKey::load(k))
                .collect::<Result<Vec<_>, _>>()?;
            let external = external.signers()?;
            let mut signers: Vec<&dyn Signer> = keys.iter().map(|k| k as &dyn Signer).collect();
            signers.extend(external.iter().map(|k| k as &dyn Signer));
            let started = Instant::now();
            let m = bundle::create(
                &image,
                &signers,
                &CreateOptions {
                    compatible,
                    version,
                    security_version,
                    created: now,
                    expires,
                    chunk_size,
                    zstd_level,
                    threads: 0,
                },
                bundle::Outputs {
                    file: output.as_deref(),
                    dir: output_dir.as_deref(),
                    delta_bases: &delta_bases,
                },
            )?;
            let img = m.rootfs();
            let written = [output.as_deref(), output_dir.as_deref()]
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ");
            eprintln!(
                "bundle {}: {} bytes of image in {} chunks, payload {} bytes ({:.1}%), {:.2} s",
                written,
                img.size,
                img.chunks.len(),
                img.payload_size,
                img.payload_size as f64 * 100.0 / img.size as f64,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        BundleCommand::Sign {
            key,
            external,
            bundle,
        } => {
            let key = key.map(|k| PrivateKey::load(&k)).transpose()?;
            let external = external.signers()?;
            let mut signers: Vec<&dyn Signer> = key.iter().map(|k| k as &dyn Signer).collect();
            signers.extend(external.iter().map(|k| k as &dyn Signer));
            for signer in signers {
                RawBundle::open(&bundle)?.countersign(signer)?;
                eprintln!("added a signature by key {}", signer.public().keyid());
            }
            Ok(())
        }
        BundleCommand::Verify { bundle } => {
            let cfg = Config::load(config)?;
            let policy = cfg.trust_policy(config)?;
            let verified = RawBundle::open(&bundle)?.verify(&policy)?;
            let m = &verified.manifest;
            if m.compatible != cfg.compatible {
                eprintln!(
                    "note: bundle is for {:?}, this configuration is {:?}",
                    m.compatible, cfg.compatible
                );
            }
            println!(
                "{}: signatures satisfy every role; {} {} (security version {})",
                bundle.display(),
                m.compatible,
                m.version,
                m.security_version
            );
            Ok(())
        }
        BundleCommand::Inspect { bundle } => {
            let raw = RawBundle::open(&bundle)?;
            let m = raw.unverified_manifest()?;
            eprintln!(
                "note: signatures not checked ({} present); use `seesaw bundle verify`",
                raw.envelope.signatures.len()
            );
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to read {path}: {source}")]
    struct Read {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(Read {
            path: "x",
            source: io,
        })
        .context("status");
        assert_eq!(
            error_line(&err),
            "status: failed to read x: entity not found"
        );
    }

    #[test]
    fn a_cause_not_yet_in_the_message_is_appended() {
        let err = anyhow::anyhow!("timed out").context("fetch failed");
        assert_eq!(error_line(&err), "fetch failed: timed out");
    }

    #[test]
    fn a_toml_diagram_becomes_one_line() {
        let text =
            "TOML parse error at line 2, column 12\n  |\n2 | data_dir = \n  |            ^\n\
                    invalid string\nexpected `\"`, `'`\n";
        assert_eq!(
            one_line(text),
            "TOML parse error at line 2, column 12: invalid string; expected `\"`, `'`"
        );
        assert_eq!(one_line("one line"), "one line");
    }
}

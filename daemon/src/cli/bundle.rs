//! `seesaw keygen` and `seesaw bundle …`: making keys, and creating,
//! countersigning, verifying and inspecting bundles through
//! [`crate::bundle`].
//!
//! Results go to stdout (key paths, the verdict, the manifest), notes and
//! statistics to stderr.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use time::OffsetDateTime;

use super::args::BundleCommand;
use crate::bundle::{self, BundleError, CreateOptions, RawBundle};
use crate::config::Config;
use crate::trust::{PrivateKey, Signer};

/// `seesaw keygen --out PREFIX`: writes PREFIX.pem (private, PKCS#8, mode
/// 0600) and PREFIX.pub (SPKI) and prints both paths.
///
/// Errors: either file exists already (nothing is written), or it cannot be
/// written.
pub(super) fn keygen(out: &Path) -> anyhow::Result<()> {
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

/// Runs one `seesaw bundle` command; `config` holds the trust policy for
/// `verify`.
///
/// Errors: [`BundleError`], [`crate::trust::TrustError`] and
/// [`crate::config::ConfigError`] from the library.
pub(super) fn run_bundle(
    cmd: BundleCommand,
    config: &Path,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
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

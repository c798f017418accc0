//! The commands that act on this device's slots: `install`, `cancel`,
//! `status`, `mark-good` and `mark-bad`. Each goes through the daemon over
//! D-Bus when one runs (`bus_address`, default the system bus) and calls
//! [`Updater`] itself otherwise (`cancel` needs the daemon).
//!
//! Results go to stdout, progress and the install's JSON lines to stderr.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::bail;
use time::OffsetDateTime;

use crate::client::Client;
use crate::failure::{exit, Classify};
use crate::progress::{self, Meter};
use crate::slot::Slot;
use crate::updater::{InstallOptions, Updater};

/// `seesaw install BUNDLE`: through the daemon, or standalone with the
/// progress display (`json`: JSON lines) and a one-line summary (version,
/// slot, bytes, seconds, MiB/s, bytes downloaded).
///
/// Errors: the daemon's refusal ([`crate::client::ClientError`]) or the
/// standalone install's [`crate::updater::UpdateError`].
pub(super) fn install(
    config: &Path,
    bus_address: Option<&str>,
    bundle: &str,
    force: bool,
    json: bool,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if let Some(client) = Client::find(bus_address) {
        let message = client.install(bundle, force, json)?;
        println!("{message}");
        return Ok(());
    }
    let meter = Meter::new(json);
    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    let report = Updater::open(config).and_then(|mut updater| {
        updater.install_source(
            bundle,
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

/// `seesaw cancel`: asks the daemon to stop its install.
///
/// Errors: no daemon runs, or its refusal ([`crate::client::ClientError`]).
pub(super) fn cancel(bus_address: Option<&str>) -> anyhow::Result<()> {
    match Client::find(bus_address) {
        Some(client) => {
            client.cancel()?;
            println!("cancel requested");
            Ok(())
        }
        None => bail!("no seesaw daemon is running; a standalone install stops with Ctrl-C"),
    }
}

/// `seesaw status`: the device's status read from `config`, with the
/// daemon's live properties when one runs; pretty JSON with `json`, else
/// the text of [`super::output::print_status`].
///
/// Errors: [`crate::updater::UpdateError`] when the status cannot be read.
pub(super) fn status(config: &Path, bus_address: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut status = Updater::open(config)?.status()?;
    let live = Client::find(bus_address).and_then(|c| c.live().ok());
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
        super::output::print_status(&status);
    }
    Ok(())
}

/// `seesaw mark-good`: commits the running slot.
///
/// Errors: the daemon's refusal or [`crate::updater::UpdateError`].
pub(super) fn mark_good(
    config: &Path,
    bus_address: Option<&str>,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if let Some(client) = Client::find(bus_address) {
        println!("{}", client.mark("good", "")?.1);
        return Ok(());
    }
    let report = Updater::open(config)?.mark_good(now)?;
    println!("{}", report.message);
    Ok(())
}

/// `seesaw mark-bad [SLOT]`: marks `slot` (default: the running slot) bad.
///
/// Errors: the daemon's refusal or [`crate::updater::UpdateError`].
pub(super) fn mark_bad(
    config: &Path,
    bus_address: Option<&str>,
    slot: Option<Slot>,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if let Some(client) = Client::find(bus_address) {
        println!(
            "{}",
            client.mark("bad", slot.map(|s| s.name()).unwrap_or(""))?.1
        );
        return Ok(());
    }
    let report = Updater::open(config)?.mark_bad(slot, now)?;
    println!("{}", report.message);
    Ok(())
}

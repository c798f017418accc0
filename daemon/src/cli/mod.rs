//! The `seesaw` command line: argument definitions and the thin adapter that
//! turns each command into a call of [`crate::updater`] or [`crate::bundle`].
//!
//! Owns the command names, options and exit statuses (a contract for
//! scripts; see [`exit`]). Prints results on stdout, progress and errors on
//! stderr. Contains no update logic.
//!
//! - `args` — [`Cli`] and every command's options (clap derive);
//! - `update` — `install`, `cancel`, `status`, `mark-good`, `mark-bad`:
//!   through the daemon when one runs, standalone otherwise;
//! - `output` — the text of `seesaw status`;
//! - `bundle` — `keygen` and `bundle create|sign|verify|inspect`;
//! - `fleet` — `fleet publish|clear|status`;
//! - `error` — the exit status and the one-line message of a failure.
//!
//! [`run`] dispatches a parsed [`Cli`] to them.

mod args;
mod bundle;
mod error;
mod fleet;
mod output;
mod update;

use time::OffsetDateTime;

pub use args::{
    BundleCommand, Cli, Command, ExternalSigning, FleetCommand, FleetConnectionArgs,
    FleetTargetArgs,
};
pub use error::{error_line, exit_status, one_line};

/// Exit statuses of `seesaw` (defined with the failure kinds they stand for).
pub use crate::failure::exit;

/// Runs one command. Errors carry the typed cause for [`exit_status`].
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let bus_address = cli.bus_address.as_deref();
    match cli.command {
        Command::Keygen { out } => bundle::keygen(&out),
        Command::Bundle(cmd) => bundle::run_bundle(cmd, &cli.config, now),
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
        } => update::install(&cli.config, bus_address, &bundle, force, json, now),
        Command::Cancel => update::cancel(bus_address),
        Command::Status { json } => update::status(&cli.config, bus_address, json),
        Command::MarkGood => update::mark_good(&cli.config, bus_address, now),
        Command::Fleet(cmd) => fleet::run_fleet(cmd),
        Command::MarkBad { slot } => update::mark_bad(&cli.config, bus_address, slot, now),
    }
}

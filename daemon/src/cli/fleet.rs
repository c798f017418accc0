//! `seesaw fleet …`: publishing and clearing deployments and reading the
//! fleet's statuses through [`crate::fleet::operator`].
//!
//! The deployment id goes to stdout, the topic written to stderr; `status`
//! prints a table (or a JSON array) on stdout.

use anyhow::Context;

use super::args::FleetCommand;

/// Runs one `seesaw fleet` command against the broker of its connection
/// options.
///
/// Errors: [`crate::fleet::FleetError`] (broker, TLS files, names), or an
/// unreadable `--envelope` file.
pub(super) fn run_fleet(cmd: FleetCommand) -> anyhow::Result<()> {
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

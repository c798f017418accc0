//! The health gate: decides whether a trial boot is healthy enough to be
//! committed.
//!
//! Asks systemd over D-Bus (`org.freedesktop.systemd1`) for its
//! `SystemState` until start-up has finished, then checks that the
//! configured units are `active` and runs the configured commands, all
//! within the configured timeout. The judgement of a system state is a pure
//! function ([`judge_system_state`]); the rest is the D-Bus and process edge.
//! Does not commit or reboot: the caller feeds the verdict to the lifecycle.

use std::time::Duration;

use tokio::time::Instant;
use zbus::proxy::CacheProperties;

use crate::config::HealthConfig;

/// How often the system state is polled while start-up is in progress.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a `SystemState` value means for the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Start-up finished well.
    Healthy,
    /// Start-up is still in progress: ask again.
    Wait,
    /// Start-up finished badly (or the system is going down).
    Unhealthy(String),
}

/// Judges systemd's `SystemState` (`initializing`, `starting`, `running`,
/// `degraded`, `maintenance`, `stopping`, …; see `org.freedesktop.systemd1(5)`).
/// `degraded` (some unit failed) is unhealthy unless `degraded_ok`.
pub fn judge_system_state(state: &str, degraded_ok: bool) -> Judgement {
    match state {
        "running" => Judgement::Healthy,
        "degraded" if degraded_ok => Judgement::Healthy,
        "degraded" => {
            Judgement::Unhealthy("system is degraded: a unit failed during start-up".into())
        }
        "initializing" | "starting" => Judgement::Wait,
        other => Judgement::Unhealthy(format!("system state is {other:?}")),
    }
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Systemd1Manager {
    /// The overall state of the system.
    #[zbus(property)]
    fn system_state(&self) -> zbus::Result<String>;
    /// The object of a loaded unit.
    fn get_unit(&self, name: &str) -> zbus::Result<zbus::zvariant::OwnedObjectPath>;
    /// Queues a start job for a unit.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<zbus::zvariant::OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Systemd1Unit {
    /// `active`, `failed`, `inactive`, `activating`, …
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

/// Runs the whole gate against systemd on `conn`. `Ok(())` means healthy;
/// `Err` carries the reason, one line, for the rollback report.
pub async fn check(conn: &zbus::Connection, cfg: &HealthConfig) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(cfg.timeout);
    match tokio::time::timeout_at(deadline, gate(conn, cfg, deadline)).await {
        Ok(verdict) => verdict,
        Err(_) => Err(format!("health check timed out after {} s", cfg.timeout)),
    }
}

async fn gate(
    conn: &zbus::Connection,
    cfg: &HealthConfig,
    deadline: Instant,
) -> Result<(), String> {
    let manager = Systemd1ManagerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("cannot reach systemd over D-Bus: {e}"))?;
    loop {
        let state = manager
            .system_state()
            .await
            .map_err(|e| format!("cannot read systemd's SystemState: {e}"))?;
        match judge_system_state(&state, cfg.degraded_ok) {
            Judgement::Healthy => break,
            Judgement::Unhealthy(reason) => return Err(reason),
            Judgement::Wait => {
                if Instant::now() + POLL_INTERVAL >= deadline {
                    return Err(format!(
                        "health check timed out after {} s: system state still {state:?}",
                        cfg.timeout
                    ));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
    for unit in &cfg.units {
        let path = manager
            .get_unit(unit)
            .await
            .map_err(|e| format!("unit {unit} is not loaded: {e}"))?;
        let state = Systemd1UnitProxy::builder(conn)
            .path(path)
            .map_err(|e| e.to_string())?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| e.to_string())?
            .active_state()
            .await
            .map_err(|e| format!("cannot read the state of unit {unit}: {e}"))?;
        if state != "active" {
            return Err(format!("unit {unit} is {state}, not active"));
        }
    }
    for command in &cfg.commands {
        run_command(command, deadline).await?;
    }
    Ok(())
}

async fn run_command(command: &str, deadline: Instant) -> Result<(), String> {
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run health command `{command}`: {e}"))?;
    let out = tokio::time::timeout_at(deadline, child.wait_with_output())
        .await
        .map_err(|_| format!("health command `{command}` did not finish in time"))?
        .map_err(|e| format!("health command `{command}` failed: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = stderr.lines().last().unwrap_or("").trim();
    Err(match out.status.code() {
        Some(code) if tail.is_empty() => format!("health command `{command}` exited with {code}"),
        Some(code) => format!("health command `{command}` exited with {code}: {tail}"),
        None => format!("health command `{command}` was killed by a signal"),
    })
}

/// Asks systemd to reboot the board (`StartUnit("reboot.target",
/// "replace-irreversibly")`, what `systemctl reboot` does).
pub async fn reboot(conn: &zbus::Connection) -> Result<(), String> {
    let manager = Systemd1ManagerProxy::new(conn)
        .await
        .map_err(|e| format!("cannot reach systemd over D-Bus: {e}"))?;
    manager
        .start_unit("reboot.target", "replace-irreversibly")
        .await
        .map(|_| ())
        .map_err(|e| format!("systemd refused to reboot: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_state() {
        use Judgement::*;
        for (state, ok, want) in [
            ("running", false, Healthy),
            ("running", true, Healthy),
            ("degraded", true, Healthy),
            ("initializing", false, Wait),
            ("starting", false, Wait),
        ] {
            assert_eq!(judge_system_state(state, ok), want, "{state}");
        }
        for state in [
            "degraded",
            "maintenance",
            "stopping",
            "offline",
            "unknown",
            "",
        ] {
            assert!(
                matches!(judge_system_state(state, false), Unhealthy(_)),
                "{state}"
            );
        }
    }
}

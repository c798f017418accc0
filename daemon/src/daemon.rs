//! `seesaw daemon`: the systemd service.
//!
//! Wiring only: at start it asks the lifecycle what happened while it was
//! not running (a trial boot to confirm, a rollback to report, an
//! interrupted install to forget), owns `org.seesaw.Updater1` on the bus,
//! tells systemd it is ready (`Type=notify`) and pets its watchdog, runs the
//! health gate on a trial boot and commits or marks bad and reboots, and on
//! SIGTERM cancels a running install before it exits.

use std::path::PathBuf;
use std::time::Duration;

use crate::dbus::{emit_live_changes, UpdaterService, BUS_NAME, OBJECT_PATH};
use crate::lifecycle::{Action, Event};
use crate::service::Service;
use crate::state::ResultKind;
use crate::updater::UpdateError;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The device could not be opened (configuration, environment, state).
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// The bus could not be reached or the name not owned.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// The async runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl crate::failure::Classify for DaemonError {
    fn kind(&self) -> crate::failure::Kind {
        match self {
            DaemonError::Update(e) => e.kind(),
            DaemonError::Bus(_) | DaemonError::Runtime(_) => crate::failure::Kind::Internal,
        }
    }
}

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// A D-Bus address to use instead of the system bus (tests).
    pub bus_address: Option<String>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: DaemonOptions) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    rt.block_on(serve(opts))
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    // Not running under systemd (NOTIFY_SOCKET unset) is fine.
    let _ = sd_notify::notify(false, states);
}

/// Feeds `event` to the lifecycle on a blocking thread.
async fn handle(service: &Service, event: Event) -> Result<crate::updater::Outcome, UpdateError> {
    service
        .run("lifecycle", move |mut u, now| u.handle(event, now))
        .await
}

async fn serve(opts: DaemonOptions) -> Result<(), DaemonError> {
    // The configuration is loaded once; SIGHUP reloads it.
    let service = Service::load(&opts.config)?;
    serve_with(service, opts.bus_address).await
}

/// Serves `service` on the bus at `bus_address` (the system bus if `None`)
/// until SIGTERM or SIGINT: settles the boot (commit, rollback, health
/// gate), owns `org.seesaw.Updater1`, resumes an interrupted install and
/// runs the fleet link if configured. SIGHUP reloads the configuration.
///
/// Errors: [`DaemonError::Update`] (the environment or state cannot be
/// read), [`DaemonError::Bus`].
pub async fn serve_with(service: Service, bus_address: Option<String>) -> Result<(), DaemonError> {
    // Fail early and clearly on an unusable environment or state.
    let (phase, state) = service
        .run("start", |u, _| Ok((u.phase()?, u.store().load()?)))
        .await?;
    log::info!(
        "seesaw daemon starting ({}, phase {})",
        service.config_path().display(),
        phase.name()
    );
    let outcome = handle(&service, Event::Started).await?;
    let mut last_error = match &state.last_result {
        Some(r)
            if matches!(
                r.kind,
                ResultKind::Failed | ResultKind::RolledBack | ResultKind::Interrupted
            ) =>
        {
            r.message.clone()
        }
        _ => String::new(),
    };
    // The lifecycle has logged each result's journal event.
    for r in &outcome.reports {
        if matches!(r.kind, ResultKind::RolledBack | ResultKind::Interrupted) {
            last_error = r.message.clone();
        }
    }
    let operation = service.run("start", |u, _| u.phase()).await?;
    let object = UpdaterService::new(service.clone(), operation.name(), last_error);
    let cancel = object.cancel_flag();
    let builder = match &bus_address {
        Some(a) => zbus::connection::Builder::address(a.as_str())?,
        None => zbus::connection::Builder::system()?,
    };
    let conn = builder
        .serve_at(OBJECT_PATH, object)?
        .name(BUS_NAME)?
        .build()
        .await?;
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("serving {BUS_NAME}; {}", operation.name())),
    ]);
    log::info!("owning {BUS_NAME} on the bus");

    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let period = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            loop {
                notify(&[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(period).await;
            }
        });
    }

    let mut trial = false;
    for action in outcome.followups {
        if let Action::RunHealthGate(slot) = action {
            trial = true;
            tokio::spawn(health_gate(conn.clone(), service.clone(), slot));
        }
    }
    if !trial {
        resume_interrupted(&conn, &service).await;
    }
    // After a resumed install has claimed the updater, so a retained
    // deployment waits for it.
    let fleet = match crate::fleet::device::start(conn.clone(), service.clone()).await {
        Ok(link) => link,
        Err(e) => {
            log::error!("fleet link disabled: {e}");
            None
        }
    };

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Runtime)?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                // Operations already running keep the configuration they
                // started with.
                match service.reload() {
                    Ok(()) => log::info!("reloaded {}", service.config_path().display()),
                    Err(e) => log::error!(
                        "reload refused, the configuration in force is unchanged: {e:#}"
                    ),
                }
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    log::info!("stopping");
    cancel.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(link) = &fleet {
        link.stop(Duration::from_secs(2)).await;
    }
    // Give a running install the moment it needs to stop cleanly.
    for _ in 0..50 {
        let busy = match conn
            .object_server()
            .interface::<_, UpdaterService>(OBJECT_PATH)
            .await
        {
            Ok(iface) => iface.get().await.busy(),
            Err(_) => false,
        };
        if !busy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Restarts an install that a restart or power cut interrupted, from the
/// same source: chunks already written are re-checked, not fetched again.
async fn resume_interrupted(conn: &zbus::Connection, service: &Service) {
    let probe = service
        .run("resume", |u, _| {
            let booted = u.booted_slot()?;
            let idle = u.phase()? == crate::lifecycle::Phase::Idle;
            Ok(u.store()
                .resume_record()
                .filter(|j| idle && j.slot == Some(booted.other()))
                .and_then(|j| j.source))
        })
        .await;
    let Ok(Some(source)) = probe else { return };
    log::info!("resuming the interrupted install of {source}");
    if let Ok(iface) = conn
        .object_server()
        .interface::<_, UpdaterService>(OBJECT_PATH)
        .await
    {
        let svc = iface.get().await;
        if let Err(e) = svc.start_install(conn, source, false) {
            log::warn!("cannot resume: {e}");
        }
    }
}

async fn set_live(
    conn: &zbus::Connection,
    operation: &str,
    busy: Option<bool>,
    last_error: Option<&str>,
) {
    if let Ok(iface) = conn
        .object_server()
        .interface::<_, UpdaterService>(OBJECT_PATH)
        .await
    {
        let svc = iface.get().await;
        svc.set_operation(operation);
        if let Some(b) = busy {
            svc.set_busy(b);
        }
        if let Some(e) = last_error {
            svc.set_last_error(e);
        }
    }
    emit_live_changes(conn).await;
}

/// The trial boot: wait for a healthy system, then commit, or mark the slot
/// bad and reboot into the old one.
async fn health_gate(conn: zbus::Connection, service: Service, slot: crate::slot::Slot) {
    set_live(&conn, "trial", Some(true), None).await;
    notify(&[sd_notify::NotifyState::Status(&format!(
        "trial boot of slot {slot}: checking health"
    ))]);
    let health = service.config().health.clone();
    let verdict = crate::health::check(&conn, &health).await;
    let event = match &verdict {
        Ok(()) => Event::HealthPassed,
        Err(reason) => Event::HealthFailed {
            reason: reason.clone(),
        },
    };
    match handle(&service, event).await {
        Ok(outcome) => {
            let error = verdict
                .as_ref()
                .err()
                .map(|r| format!("slot {slot} failed its health check: {r}"));
            let phase = crate::dbus::phase_name(&service).await;
            set_live(
                &conn,
                phase,
                Some(false),
                Some(error.as_deref().unwrap_or("")),
            )
            .await;
            notify(&[sd_notify::NotifyState::Status(&format!(
                "serving {BUS_NAME}; {phase}"
            ))]);
            if outcome.followups.contains(&Action::Reboot) {
                log::warn!("rebooting into slot {}", slot.other());
                if let Err(e) = crate::health::reboot(&conn).await {
                    log::error!("{e}");
                }
            }
        }
        Err(e) => {
            log::error!("cannot record the health verdict: {e:#}");
            set_live(&conn, "trial", Some(false), Some(&format!("{e:#}"))).await;
        }
    }
}

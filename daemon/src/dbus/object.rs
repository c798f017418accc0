//! The object served at `/org/seesaw/Updater1`: [`UpdaterService`] with
//! the `org.seesaw.Updater1` interface (methods, properties, the
//! `Completed` signal) and the background install it starts, which forwards
//! progress at most every 200 ms and ends with `Completed`.
//!
//! One piece: the methods start the install task, and the task updates the
//! properties and emits the change notifications and signal the interface
//! declares.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};

use super::error::ServiceError;
use super::live::{lock, LiveView};
use super::OBJECT_PATH;
use crate::failure::Classify;
use crate::install::{Phase as WritePhase, Progress};
use crate::service::Service;
use crate::slot::Slot;
use crate::updater::{InstallOptions, UpdateError};

/// The `org.seesaw.Updater1` object.
pub struct UpdaterService {
    service: Service,
    live: Arc<Mutex<LiveView>>,
    cancel: Arc<AtomicBool>,
    observers: tokio::sync::watch::Sender<LiveView>,
}

impl UpdaterService {
    /// The D-Bus object of `service`, starting in `operation`.
    pub fn new(service: Service, operation: &str, last_error: String) -> UpdaterService {
        UpdaterService {
            service,
            live: Arc::new(Mutex::new(LiveView {
                operation: operation.to_string(),
                progress: (0, 0, 0, String::new()),
                last_error,
                busy: false,
                completed: None,
            })),
            cancel: Arc::new(AtomicBool::new(false)),
            observers: tokio::sync::watch::Sender::new(LiveView::default()),
        }
    }

    /// Follows the live properties: the receiver sees every change the
    /// service announces (the latest value wins).
    pub fn subscribe_live(&self) -> tokio::sync::watch::Receiver<LiveView> {
        let rx = self.observers.subscribe();
        self.notify_observers();
        rx
    }

    fn notify_observers(&self) {
        self.observers.send_replace(lock(&self.live).clone());
    }

    /// Sets the `Operation` property (the caller emits the change).
    pub fn set_operation(&self, op: &str) {
        lock(&self.live).operation = op.to_string();
    }

    /// Sets the `LastError` property (the caller emits the change).
    pub fn set_last_error(&self, e: &str) {
        lock(&self.live).last_error = e.to_string();
    }

    /// Marks the service busy (health gate running) or free.
    pub fn set_busy(&self, busy: bool) -> bool {
        let mut l = lock(&self.live);
        let was = l.busy;
        l.busy = busy;
        was
    }

    /// The cancel flag of the running install (for SIGTERM).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Whether an operation is running.
    pub fn busy(&self) -> bool {
        lock(&self.live).busy
    }

    /// Starts an install of `source` in the background (what `Install`
    /// does after checking its arguments; also used to resume an install
    /// interrupted by a restart).
    pub fn start_install(
        &self,
        conn: &zbus::Connection,
        source: String,
        force: bool,
    ) -> Result<(), ServiceError> {
        {
            let mut l = lock(&self.live);
            if l.busy {
                return Err(ServiceError::Busy(format!(
                    "busy: operation {} is in progress",
                    l.operation
                )));
            }
            l.busy = true;
            l.operation = "installing".into();
            l.progress = (0, 0, 0, "verifying bundle".into());
        }
        self.cancel.store(false, Ordering::SeqCst);
        let conn = conn.clone();
        let service = self.service.clone();
        let live = self.live.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            run_install(conn, service, source, force, live, cancel).await;
        });
        Ok(())
    }

    /// The lifecycle phase's name now (`idle` if it cannot be read).
    async fn phase_name(&self) -> &'static str {
        phase_name(&self.service).await
    }
}

/// Sends byte progress from the install threads to the async side.
struct WatchProgress(tokio::sync::watch::Sender<(u64, u64, u64)>);

impl Progress for WatchProgress {
    fn update(&self, phase: WritePhase, done: u64, total: u64) {
        self.0.send_modify(|p| {
            match phase {
                WritePhase::Write => p.0 = done,
                WritePhase::Verify => p.1 = done,
            }
            p.2 = total;
        });
    }
}

fn value(v: Value<'_>) -> OwnedValue {
    // Plain strings, integers and booleans always convert.
    OwnedValue::try_from(v).unwrap_or_else(|_| OwnedValue::from(0u8))
}

fn option_bool(options: &HashMap<String, OwnedValue>, key: &str) -> Result<bool, ServiceError> {
    match options.get(key) {
        None => Ok(false),
        Some(v) => bool::try_from(v)
            .map_err(|_| ServiceError::InvalidArgs(format!("option {key:?} must be a boolean"))),
    }
}

#[zbus::interface(name = "org.seesaw.Updater1")]
impl UpdaterService {
    /// Installs the bundle at `source` (an absolute path, a `file://` URL,
    /// or an `https://` URL of a one-file bundle or of a network layout's
    /// `manifest.dsse.json`) into the inactive slot. Returns at once; progress is in `Progress`,
    /// the end is signalled by `Completed`. Options: `force` (b) installs a
    /// deny-listed version.
    async fn install(
        &self,
        source: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), ServiceError> {
        for key in options.keys() {
            if key != "force" {
                return Err(ServiceError::InvalidArgs(format!("unknown option {key:?}")));
            }
        }
        let force = option_bool(&options, "force")?;
        let remote = source.starts_with("https://") || source.starts_with("http://");
        if !remote {
            let path = source.strip_prefix("file://").unwrap_or(&source);
            if path.contains("://") || !Path::new(path).is_absolute() {
                return Err(ServiceError::InvalidArgs(format!(
                    "source {source:?} must be an absolute path, a file:// URL or an https:// URL"
                )));
            }
        }
        self.start_install(conn, source, force)
    }

    /// Cancels the running install: it stops within about a second, the
    /// environment is not touched and the slot is left marked as not
    /// installed. An error if nothing is being installed.
    async fn cancel(&self) -> Result<(), ServiceError> {
        let l = lock(&self.live);
        if !(l.busy && l.operation == "installing") {
            return Err(ServiceError::State("no install is in progress".into()));
        }
        self.cancel.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Marks a slot: `state` is `good` (commit the booted slot) or `bad`;
    /// `slot` is `A`, `B`, `booted` or empty (the booted slot), or `other`.
    /// Returns the slot marked and a message.
    #[zbus(out_args("slot", "message"))]
    async fn mark(
        &self,
        state: String,
        slot: String,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(String, String), ServiceError> {
        let good = match state.as_str() {
            "good" => true,
            "bad" => false,
            other => {
                return Err(ServiceError::InvalidArgs(format!(
                    "state must be good or bad, not {other:?}"
                )))
            }
        };
        if lock(&self.live).busy {
            return Err(ServiceError::Busy(
                "busy: an operation is in progress".into(),
            ));
        }
        let service = self.service.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut u = service
                .updater()
                .map_err(|e| ServiceError::from_update(&e))?;
            let booted = u.booted_slot().map_err(|e| ServiceError::from_update(&e))?;
            let target = match slot.as_str() {
                "" | "booted" => booted,
                "other" => booted.other(),
                s => s
                    .parse::<Slot>()
                    .map_err(|e| ServiceError::InvalidArgs(e.to_string()))?,
            };
            if good && target != booted {
                return Err(ServiceError::InvalidArgs(format!(
                    "only the booted slot {booted} can be marked good"
                )));
            }
            let now = service.now();
            let report = if good {
                u.mark_good(now)
            } else {
                u.mark_bad(Some(target), now)
            };
            report.map_err(|e| ServiceError::from_update(&e))
        })
        .await
        .unwrap_or_else(|e| Err(ServiceError::from_update(&UpdateError::panicked("mark", e))))?;
        // Marking can end an awaiting reboot or a trial: follow the lifecycle.
        let phase = self.phase_name().await;
        self.set_operation(phase);
        emit_live_changes(conn).await;
        Ok((result.slot.name().to_string(), result.message))
    }

    /// Both slots: `(name, {device, tries_left, booted, primary, version,
    /// security_version, intact})`; absent keys are unknown.
    #[zbus(out_args("slots"))]
    async fn get_slot_status(
        &self,
    ) -> Result<Vec<(String, HashMap<String, OwnedValue>)>, ServiceError> {
        let status = self
            .service
            .run("status", |u, _| u.status())
            .await
            .map_err(|e| ServiceError::from_update(&e))?;
        Ok(status
            .slots
            .iter()
            .map(|s| {
                let mut m = HashMap::new();
                m.insert(
                    "device".into(),
                    value(Value::from(s.device.display().to_string())),
                );
                m.insert(
                    "tries_left".into(),
                    value(Value::from(u32::from(s.tries_left))),
                );
                m.insert("booted".into(), value(Value::from(s.booted)));
                m.insert(
                    "primary".into(),
                    value(Value::from(status.primary == Some(s.slot))),
                );
                if let Some(v) = &s.version {
                    m.insert("version".into(), value(Value::from(v.clone())));
                }
                if let Some(v) = s.security_version {
                    m.insert("security_version".into(), value(Value::from(v)));
                }
                if let Some(v) = s.intact {
                    m.insert("intact".into(), value(Value::from(v)));
                }
                (s.slot.name().to_string(), m)
            })
            .collect())
    }

    /// `idle`, `installing`, `awaiting-reboot` or `trial`.
    #[zbus(property)]
    async fn operation(&self) -> String {
        lock(&self.live).operation.clone()
    }

    /// (percent, bytes done, bytes total, message) of the running install.
    #[zbus(property)]
    async fn progress(&self) -> (i32, u64, u64, String) {
        lock(&self.live).progress.clone()
    }

    /// Why the last operation failed; empty after a success.
    #[zbus(property)]
    async fn last_error(&self) -> String {
        lock(&self.live).last_error.clone()
    }

    /// The running slot (`A` or `B`).
    #[zbus(property)]
    async fn boot_slot(&self) -> String {
        self.service
            .run("status", |u, _| u.booted_slot())
            .await
            .map(|s| s.name().to_string())
            .unwrap_or_default()
    }

    /// The slot U-Boot will try first (`A`, `B`, or empty if none).
    #[zbus(property)]
    async fn primary_slot(&self) -> String {
        self.service
            .run("status", |u, _| u.status())
            .await
            .ok()
            .and_then(|s| s.primary)
            .map(|s| s.name().to_string())
            .unwrap_or_default()
    }

    /// This device's compatible string.
    #[zbus(property)]
    async fn compatible(&self) -> String {
        self.service.config().compatible.clone()
    }

    /// The version running in the booted slot, if seesaw installed it.
    #[zbus(property)]
    async fn version(&self) -> String {
        self.service
            .run("status", |u, _| u.status())
            .await
            .ok()
            .and_then(|s| {
                s.slots
                    .into_iter()
                    .find(|x| x.booted)
                    .and_then(|x| x.version)
            })
            .unwrap_or_default()
    }

    /// An install ended: `result` 0 on success, otherwise the CLI exit
    /// status for the error; `message` says what happened.
    #[zbus(signal)]
    pub async fn completed(
        emitter: &SignalEmitter<'_>,
        result: i32,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Emits `PropertiesChanged` for the live properties.
pub async fn emit_live_changes(conn: &zbus::Connection) {
    let Ok(iface) = conn
        .object_server()
        .interface::<_, UpdaterService>(OBJECT_PATH)
        .await
    else {
        return;
    };
    let emitter = iface.signal_emitter();
    let svc = iface.get().await;
    svc.notify_observers();
    let _ = svc.operation_changed(emitter).await;
    let _ = svc.progress_changed(emitter).await;
    let _ = svc.last_error_changed(emitter).await;
    let _ = svc.primary_slot_changed(emitter).await;
    let _ = svc.version_changed(emitter).await;
}

/// The lifecycle phase's name now (`idle` if it cannot be read).
pub async fn phase_name(service: &Service) -> &'static str {
    service
        .run("status", |u, _| u.phase())
        .await
        .map(|p| p.name())
        .unwrap_or("idle")
}

async fn run_install(
    conn: zbus::Connection,
    service: Service,
    source: String,
    force: bool,
    live: Arc<Mutex<LiveView>>,
    cancel: Arc<AtomicBool>,
) {
    // The install logs its own journal events (started, completed, failed).
    log::info!("install of {source} requested");
    emit_live_changes(&conn).await;
    let (tx, mut rx) = tokio::sync::watch::channel((0u64, 0u64, 0u64));
    let work = service.run("install", move |mut u, now| {
        u.install_source(
            &source,
            &InstallOptions { threads: 0, force },
            &WatchProgress(tx),
            &cancel,
            now,
        )
    });
    // Forward progress at most every 200 ms until the worker ends.
    let forward = {
        let conn = conn.clone();
        let live = live.clone();
        async move {
            while rx.changed().await.is_ok() {
                let (written, verified, total) = *rx.borrow_and_update();
                {
                    let mut l = lock(&live);
                    // Both passes count half: writing, and reading back.
                    let done = (written + verified) / 2;
                    let pct = (done * 100).checked_div(total).unwrap_or(0) as i32;
                    l.progress = (
                        pct,
                        done,
                        total,
                        "verifying, writing and reading back".into(),
                    );
                }
                if let Ok(iface) = conn
                    .object_server()
                    .interface::<_, UpdaterService>(OBJECT_PATH)
                    .await
                {
                    let svc = iface.get().await;
                    svc.notify_observers();
                    let _ = svc.progress_changed(iface.signal_emitter()).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (result, ()) = tokio::join!(work, forward);
    let (code, message) = match &result {
        Ok(r) => (0, crate::progress::installed_message(&r.version, r.slot)),
        Err(e) => (e.kind().exit_status(), crate::progress::failed_message(e)),
    };
    let operation = phase_name(&service).await;
    {
        let mut l = lock(&live);
        l.busy = false;
        l.operation = operation.to_string();
        l.last_error = if code == 0 {
            String::new()
        } else {
            message.clone()
        };
        if code == 0 {
            l.progress = (100, l.progress.2, l.progress.2, message.clone());
        } else {
            l.progress.3 = message.clone();
        }
        let seq = l.completed.as_ref().map_or(1, |c| c.0 + 1);
        l.completed = Some((seq, code, message.clone()));
    }
    emit_live_changes(&conn).await;
    if let Ok(iface) = conn
        .object_server()
        .interface::<_, UpdaterService>(OBJECT_PATH)
        .await
    {
        let _ = UpdaterService::completed(iface.signal_emitter(), code, &message).await;
    }
}

//! The link task: [`DeviceLink`] subscribes to the device's and its groups'
//! deployment topics at every connect, acts on a new deployment once
//! (checking a carried envelope first, then starting the install exactly as
//! a D-Bus `Install` does, or waiting while the updater is busy), records
//! the outcome in the fleet record, and publishes the retained status on
//! every change (progress at most once per interval), never waiting for
//! the broker.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::{mpsc, watch};

use super::connection::{last_will, Identity, Link};
use super::status::{build_status, now_rfc3339, result_name};
use crate::dbus::{LiveView, ServiceError, UpdaterService, OBJECT_PATH};
use crate::fleet::record::{FleetRecord, RecordStore};
use crate::fleet::{self, Deployment, DeviceStatus};
use crate::service::Service;

/// How many recent deployment ids the record keeps (a deployment id seen
/// among them is never acted on again).
pub const RECENT_IDS: usize = 32;

/// The link task's state.
pub(super) struct DeviceLink {
    pub(super) conn: zbus::Connection,
    pub(super) service: Service,
    pub(super) progress_interval: Duration,
    pub(super) id: Identity,
    pub(super) client: AsyncClient,
    pub(super) will: watch::Sender<Option<LastWill>>,
    pub(super) store: RecordStore,
    pub(super) record: FleetRecord,
    pub(super) connected: bool,
    /// A deployment waiting for the updater to be free.
    pub(super) pending: Option<Deployment>,
    /// The deployment being installed and the `Completed` sequence number
    /// seen before it started.
    pub(super) active: Option<(String, u64)>,
    pub(super) published: Option<DeviceStatus>,
    pub(super) published_at: Option<Instant>,
    /// Publish at the next check even if nothing changed (after connect).
    pub(super) force: bool,
    /// The live properties last seen.
    pub(super) last_view: Option<LiveView>,
}

/// Checks an envelope carried in a deployment before anything is fetched:
/// signatures against the trust policy, compatible, and the deny-list.
fn precheck_envelope(service: &Service, envelope: &serde_json::Value) -> Result<(), String> {
    let u = service.updater().map_err(|e| format!("{e:#}"))?;
    let policy = u
        .config()
        .trust_policy(service.config_path())
        .map_err(|e| format!("{e:#}"))?;
    let bytes = serde_json::to_vec(envelope).unwrap_or_default();
    let env = crate::trust::Envelope::from_json(&bytes)
        .map_err(|e| format!("the deployment's envelope is refused: {e}"))?;
    let m = crate::bundle::verify_manifest(&policy, &env).map_err(|e| match e {
        crate::bundle::BundleError::Manifest(e) => {
            format!("the deployment's manifest is refused: {e}")
        }
        e => format!("the deployment's envelope is refused: {e}"),
    })?;
    if m.compatible != u.config().compatible {
        return Err(format!(
            "the bundle is for {:?}, this device is {:?}",
            m.compatible,
            u.config().compatible
        ));
    }
    let state = u.store().load().map_err(|e| format!("{e:#}"))?;
    if state.failed_versions.contains(&m.version) {
        return Err(format!(
            "version {} is deny-listed: it rolled back or was marked bad on this device",
            m.version
        ));
    }
    Ok(())
}

impl DeviceLink {
    /// Runs the link task until the connection task ends, the service's
    /// live view closes, or `stop` asks for a clean stop (then the offline
    /// status and DISCONNECT go out before the reply).
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Link>,
        mut live: watch::Receiver<LiveView>,
        mut stop: mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
    ) {
        let mut next_check: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
        loop {
            let check = next_check;
            tokio::select! {
                Some(done) = stop.recv() => {
                    let view = live.borrow().clone();
                    self.go_offline(&view, &mut rx).await;
                    let _ = done.send(());
                    return;
                }
                ev = rx.recv() => match ev {
                    None | Some(Link::Disconnected) => return,
                    Some(Link::Up) => {
                        log::info!("fleet: connected to the broker");
                        self.connected = true;
                        self.force = true;
                        let mut topics = vec![fleet::device_deployment_topic(&self.id.device_id)];
                        topics.extend(self.id.groups.iter().map(|g| fleet::group_deployment_topic(g)));
                        let filters = topics
                            .into_iter()
                            .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
                        if let Err(e) = self.client.try_subscribe_many(filters) {
                            log::warn!("fleet: cannot subscribe: {e}");
                        }
                        next_check = Some(tokio::time::Instant::now());
                    }
                    Some(Link::Down(reason)) => {
                        if self.connected {
                            log::warn!("fleet: lost the broker: {reason}; reconnecting");
                        } else {
                            log::debug!("fleet: broker unreachable: {reason}");
                        }
                        self.connected = false;
                    }
                    Some(Link::Message { topic, payload }) => {
                        let view = live.borrow().clone();
                        self.on_deployment(&topic, &payload, &view).await;
                        next_check = Some(tokio::time::Instant::now());
                    }
                },
                changed = live.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let view = live.borrow_and_update().clone();
                    // A progress tick while a throttled status is already
                    // due keeps that time: no status is built in between.
                    let progress_only = self.last_view.as_ref().is_some_and(|v| {
                        LiveView { progress: view.progress.clone(), ..v.clone() } == view
                    });
                    self.last_view = Some(view.clone());
                    self.on_live(&view).await;
                    let now = tokio::time::Instant::now();
                    next_check = match next_check {
                        Some(t) if progress_only && !self.force => Some(t),
                        Some(t) => Some(t.min(now)),
                        None => Some(now),
                    };
                }
                _ = async {
                    match check {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let view = live.borrow().clone();
                    next_check = self.maybe_publish(&view).await;
                }
            }
        }
    }

    /// A clean stop: the offline status, then DISCONNECT; waits (bounded by
    /// the caller) until the connection task has sent both.
    async fn go_offline(&mut self, view: &LiveView, rx: &mut mpsc::Receiver<Link>) {
        if !self.connected {
            return;
        }
        let (service, id, view, record) = (
            self.service.clone(),
            self.id.clone(),
            view.clone(),
            self.record.clone(),
        );
        let Ok(status) =
            tokio::task::spawn_blocking(move || build_status(&service, &id, &view, &record)).await
        else {
            return;
        };
        let bytes = serde_json::to_vec(&status.offline()).unwrap_or_default();
        let topic = fleet::status_topic(&self.id.device_id);
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, bytes)
            .is_err()
            || self.client.try_disconnect().is_err()
        {
            return;
        }
        while let Some(ev) = rx.recv().await {
            if matches!(ev, Link::Disconnected | Link::Down(_)) {
                break;
            }
        }
    }

    fn save_record(&self) {
        if let Err(e) = self.store.save(&self.record) {
            log::error!("fleet: {e}");
        }
    }

    fn set_result(&mut self, id: &str, result: &str, reason: &str) {
        self.record.last_deployment_id = Some(id.to_string());
        self.record.result = Some(result.to_string());
        self.record.reason = reason.to_string();
        self.record.at = now_rfc3339();
    }

    fn seen(&self, id: &str) -> bool {
        self.record.last_deployment_id.as_deref() == Some(id)
            || self.record.recent.iter().any(|r| r == id)
            || self.pending.as_ref().is_some_and(|p| p.deployment_id == id)
            || self.active.as_ref().is_some_and(|(a, _)| a == id)
    }

    /// Adds `id` to the bounded list of deployments acted on (saved with
    /// the next [`DeviceLink::save_record`]).
    fn remember(&mut self, id: &str) {
        let recent = &mut self.record.recent;
        recent.retain(|x| x != id);
        recent.push(id.to_string());
        let excess = recent.len().saturating_sub(RECENT_IDS);
        recent.drain(..excess);
    }

    async fn on_deployment(&mut self, topic: &str, payload: &[u8], view: &LiveView) {
        if payload.is_empty() {
            log::info!("fleet: the deployment on {topic} was cleared");
            return;
        }
        let d = match Deployment::parse(payload) {
            Ok(d) => d,
            Err(e) => {
                log::warn!("fleet: ignoring the message on {topic}: {e}");
                self.record.result = Some("ignored".into());
                self.record.reason = format!("message on {topic} ignored: {e}");
                self.record.at = now_rfc3339();
                self.save_record();
                self.force = true;
                return;
            }
        };
        if self.seen(&d.deployment_id) {
            log::debug!(
                "fleet: deployment {} already handled; not run again",
                d.deployment_id
            );
            return;
        }
        log::info!(
            "fleet: deployment {} from {topic}: {}",
            d.deployment_id,
            d.manifest_url
        );
        if let Some(envelope) = d.envelope.clone() {
            let service = self.service.clone();
            let verdict =
                tokio::task::spawn_blocking(move || precheck_envelope(&service, &envelope))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(reason) = verdict {
                log::warn!("fleet: deployment {} refused: {reason}", d.deployment_id);
                self.set_result(&d.deployment_id, "refused", &reason);
                self.remember(&d.deployment_id);
                self.save_record();
                self.force = true;
                return;
            }
        }
        self.pending = Some(d);
        self.try_start(view).await;
    }

    async fn try_start(&mut self, view: &LiveView) {
        if view.busy || self.active.is_some() {
            return;
        }
        let Some(d) = self.pending.take() else { return };
        // Recorded before the start: a restart never runs it again (an
        // interrupted install is resumed by the daemon itself).
        self.set_result(&d.deployment_id, "installing", "");
        self.remember(&d.deployment_id);
        self.save_record();
        let before = view.completed.as_ref().map_or(0, |c| c.0);
        let started = match self
            .conn
            .object_server()
            .interface::<_, UpdaterService>(OBJECT_PATH)
            .await
        {
            Ok(iface) => iface
                .get()
                .await
                .start_install(&self.conn, d.manifest_url.clone(), false),
            Err(e) => Err(ServiceError::ZBus(e)),
        };
        match started {
            Ok(()) => self.active = Some((d.deployment_id, before)),
            Err(ServiceError::Busy(_)) => {
                // Another install or the health gate got there first: wait
                // for it to end.
                self.pending = Some(d);
            }
            Err(e) => {
                log::warn!("fleet: deployment {} not started: {e}", d.deployment_id);
                self.set_result(&d.deployment_id, "failed", &e.to_string());
                self.save_record();
            }
        }
        self.force = true;
    }

    async fn on_live(&mut self, view: &LiveView) {
        if let (Some((id, before)), Some((seq, code, message))) = (&self.active, &view.completed) {
            if seq > before {
                let id = id.clone();
                let reason = if *code == 0 {
                    String::new()
                } else {
                    message.clone()
                };
                log::info!("fleet: deployment {id}: {}", result_name(*code));
                self.set_result(&id, result_name(*code), &reason);
                self.save_record();
                self.active = None;
                self.force = true;
            }
        }
        if self.pending.is_some() && !view.busy && self.active.is_none() {
            self.try_start(view).await;
        }
    }

    /// Publishes the status if it changed (progress-only changes at most
    /// once per interval); returns when to look again.
    async fn maybe_publish(&mut self, view: &LiveView) -> Option<tokio::time::Instant> {
        if !self.connected {
            return None;
        }
        let (service, id, view2, record) = (
            self.service.clone(),
            self.id.clone(),
            view.clone(),
            self.record.clone(),
        );
        let status =
            match tokio::task::spawn_blocking(move || build_status(&service, &id, &view2, &record))
                .await
            {
                Ok(s) => s,
                Err(_) => return Some(tokio::time::Instant::now() + Duration::from_secs(1)),
            };
        let urgent = self.force
            || self
                .published
                .as_ref()
                .map_or(true, |p| status.differs_beyond_progress(p));
        if !urgent {
            let same = self.published.as_ref().is_some_and(|p| {
                (p.progress, p.bytes_done, p.bytes_total)
                    == (status.progress, status.bytes_done, status.bytes_total)
            });
            if same {
                return None;
            }
            if let Some(at) = self.published_at {
                let due = at + self.progress_interval;
                if Instant::now() < due {
                    return Some(tokio::time::Instant::from_std(due));
                }
            }
        }
        let bytes = serde_json::to_vec(&status).unwrap_or_default();
        let topic = fleet::status_topic(&self.id.device_id);
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, bytes)
        {
            Ok(()) => {
                self.will.send_replace(Some(last_will(&self.id, &status)));
                self.published = Some(status);
                self.published_at = Some(Instant::now());
                self.force = false;
                None
            }
            Err(e) => {
                log::debug!("fleet: status not queued ({e}); retrying");
                Some(tokio::time::Instant::now() + Duration::from_millis(500))
            }
        }
    }
}

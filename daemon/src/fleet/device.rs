//! The device side of the fleet link, run inside `seesaw daemon`: one MQTT
//! connection over TLS with the device certificate, deployments in, status
//! out.
//!
//! Two tasks. The connection task owns the MQTT event loop: it reconnects
//! with exponential backoff and jitter and refreshes the last will (this
//! status marked `offline`) before every attempt. The link task subscribes
//! (QoS 1) to the device's and its groups' deployment topics at every
//! connect, turns a new deployment into exactly the call a D-Bus `Install`
//! makes ([`UpdaterService::start_install`]), and publishes the retained
//! status at connect and on every change the service announces (progress at
//! most once per `progress_interval_ms`). Publishing never waits for the
//! broker: the latest status is kept and published when the broker is
//! reachable again, so an outage loses no state change and never slows an
//! install.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use super::record::{FleetRecord, RecordStore};
use super::{Deployment, DeviceStatus, FleetError, SlotReport};
use crate::config::{Config, FleetConfig};
use crate::dbus::{LiveView, ServiceError, UpdaterService, OBJECT_PATH};
use crate::service::Service;

/// How many recent deployment ids the record keeps (a deployment id seen
/// among them is never acted on again).
pub const RECENT_IDS: usize = 32;

/// Who the device is on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The device id: `device_id` from the configuration, else the client
    /// certificate's common name.
    pub device_id: String,
    /// The groups whose deployments it follows.
    pub groups: Vec<String>,
}

/// The device identity of `config` (which must have a `[fleet]` section).
///
/// Errors: [`FleetError::NoDeviceId`], [`FleetError::Pem`],
/// [`FleetError::InvalidName`] (a common name that is not a topic level).
pub fn identity(config: &Config, fleet: &FleetConfig) -> Result<Identity, FleetError> {
    let device_id = match &config.device_id {
        Some(id) => id.clone(),
        None => super::tls::common_name(&fleet.client_cert)?,
    };
    super::check_name("device id", &device_id)?;
    Ok(Identity {
        device_id,
        groups: config.groups.clone(),
    })
}

/// The MQTT options of the device: client id = device id, clean session,
/// TLS with the device certificate, an `offline` last will.
///
/// Errors: [`FleetError`] for the broker URL or the TLS files.
pub fn mqtt_options(
    fleet: &FleetConfig,
    id: &Identity,
    will: &DeviceStatus,
) -> Result<MqttOptions, FleetError> {
    let broker = super::Broker::parse(&fleet.broker)?;
    let mut o = MqttOptions::new(id.device_id.clone(), broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(fleet.keepalive));
    o.set_clean_session(true);
    o.set_max_packet_size(super::MAX_DEPLOYMENT_BYTES + 4096, 256 * 1024);
    o.set_last_will(last_will(id, will));
    if broker.tls {
        let tls = super::tls::client_config(&fleet.ca, &fleet.client_cert, &fleet.client_key)?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    Ok(o)
}

fn last_will(id: &Identity, status: &DeviceStatus) -> LastWill {
    LastWill::new(
        super::status_topic(&id.device_id),
        serde_json::to_vec(&status.offline()).unwrap_or_default(),
        QoS::AtLeastOnce,
        true,
    )
}

/// What the connection task reports to the link task.
#[derive(Debug)]
enum Link {
    Up,
    Down(String),
    /// Our DISCONNECT went out: the connection task has ended.
    Disconnected,
    Message {
        topic: String,
        payload: Vec<u8>,
    },
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    u64::from_le_bytes(b) | 1
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Polls the event loop forever; reconnects with backoff and jitter.
async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<Link>,
    mut will: watch::Receiver<Option<LastWill>>,
    min: Duration,
    max: Duration,
) {
    let mut seed = random_seed();
    let mut attempt = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                if tx.send(Link::Up).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let msg = Link::Message {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    // The broker's ACL does not let this device read one of
                    // its deployment topics (a group missing there, or the
                    // device id not the certificate's common name).
                    log::warn!("fleet: the broker refused a deployment subscription: {ack:?}");
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                let _ = tx.send(Link::Disconnected).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if tx.send(Link::Down(e.to_string())).await.is_err() {
                    return;
                }
                let delay = super::backoff(attempt, min, max, xorshift(&mut seed));
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(delay).await;
                if let Some(w) = will.borrow_and_update().clone() {
                    eventloop.mqtt_options.set_last_will(w);
                }
            }
        }
    }
}

/// A running fleet link, to stop it cleanly.
#[derive(Debug)]
pub struct FleetLink {
    stop: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl FleetLink {
    /// Publishes the status as `offline` and disconnects (the broker then
    /// drops the last will), waiting at most `limit`.
    pub async fn stop(&self, limit: Duration) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.stop.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

/// Starts the fleet link of the daemon on `conn` (whose object server holds
/// the [`UpdaterService`]) if `service`'s configuration has a `[fleet]`
/// section. Returns
/// at once (`None` without a section); the link runs until the daemon
/// exits or [`FleetLink::stop`].
///
/// Errors: [`FleetError`] when the section is present but unusable
/// (identity, broker URL, TLS files); the daemon then runs without a link.
pub async fn start(
    conn: zbus::Connection,
    service: Service,
) -> Result<Option<FleetLink>, FleetError> {
    let config = service.config();
    let Some(fleet) = config.fleet.clone() else {
        return Ok(None);
    };
    let id = identity(&config, &fleet)?;
    let store = RecordStore::new(&config.data_dir);
    let record = store.load().unwrap_or_else(|e| {
        log::warn!("fleet: starting with an empty record: {e}");
        FleetRecord::default()
    });
    // The first last will already says what the device runs.
    let initial = {
        let (service, id, record) = (service.clone(), id.clone(), record.clone());
        tokio::task::spawn_blocking(move || {
            build_status(&service, &id, &LiveView::default(), &record)
        })
        .await
        .map_err(|e| FleetError::Config(e.to_string()))?
    };
    let options = mqtt_options(&fleet, &id, &initial)?;
    let (client, eventloop) = AsyncClient::new(options, 64);
    let (tx, rx) = mpsc::channel(256);
    let (will_tx, will_rx) = watch::channel(None);
    tokio::spawn(drive(
        eventloop,
        tx,
        will_rx,
        Duration::from_millis(fleet.reconnect_min_ms),
        Duration::from_millis(fleet.reconnect_max_ms),
    ));
    let live = match conn
        .object_server()
        .interface::<_, UpdaterService>(OBJECT_PATH)
        .await
    {
        Ok(iface) => iface.get().await.subscribe_live(),
        Err(e) => {
            return Err(FleetError::Config(format!(
                "the updater service is not served: {e}"
            )))
        }
    };
    log::info!(
        "fleet: device {} (groups: {}) linking to {}",
        id.device_id,
        if id.groups.is_empty() {
            "none".to_string()
        } else {
            id.groups.join(", ")
        },
        fleet.broker
    );
    let device = DeviceLink {
        conn,
        service,
        progress_interval: Duration::from_millis(fleet.progress_interval_ms),
        id,
        client,
        will: will_tx,
        store,
        record,
        connected: false,
        pending: None,
        active: None,
        published: None,
        published_at: None,
        force: true,
        last_view: None,
    };
    let (stop, stop_rx) = mpsc::channel(1);
    tokio::spawn(device.run(rx, live, stop_rx));
    Ok(Some(FleetLink { stop }))
}

/// The link task's state.
struct DeviceLink {
    conn: zbus::Connection,
    service: Service,
    progress_interval: Duration,
    id: Identity,
    client: AsyncClient,
    will: watch::Sender<Option<LastWill>>,
    store: RecordStore,
    record: FleetRecord,
    connected: bool,
    /// A deployment waiting for the updater to be free.
    pending: Option<Deployment>,
    /// The deployment being installed and the `Completed` sequence number
    /// seen before it started.
    active: Option<(String, u64)>,
    published: Option<DeviceStatus>,
    published_at: Option<Instant>,
    /// Publish at the next check even if nothing changed (after connect).
    force: bool,
    /// The live properties last seen.
    last_view: Option<LiveView>,
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// The fleet result for a `Completed` result code: the one mapping from
/// [`Kind`](crate::failure::Kind) to the results of `docs/fleet.md`.
fn result_name(code: i32) -> &'static str {
    use crate::failure::Kind;
    match Kind::from_exit_status(code) {
        None => "installed",
        Some(Kind::Rejected) => "refused",
        Some(Kind::Cancelled) => "cancelled",
        Some(
            Kind::Usage
            | Kind::Config
            | Kind::Environment
            | Kind::Io
            | Kind::State
            | Kind::Busy
            | Kind::Network
            | Kind::Internal,
        ) => "failed",
    }
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

/// The status of the device now, from the updater and the live properties.
fn build_status(
    service: &Service,
    id: &Identity,
    view: &LiveView,
    record: &FleetRecord,
) -> DeviceStatus {
    let mut s = DeviceStatus {
        format: 1,
        device_id: id.device_id.clone(),
        state: "online".into(),
        groups: id.groups.clone(),
        operation: view.operation.clone(),
        last_deployment_id: record.last_deployment_id.clone(),
        last_result: record.result.clone(),
        reason: record.reason.clone(),
        time: now_rfc3339(),
        ..DeviceStatus::default()
    };
    if view.busy && view.operation == "installing" {
        s.progress = view.progress.0;
        s.bytes_done = view.progress.1;
        s.bytes_total = view.progress.2;
    }
    match service.updater().and_then(|u| u.status()) {
        Ok(st) => {
            s.compatible = st.compatible.clone();
            s.booted_slot = st.booted.name().to_string();
            s.primary_slot = st.primary.map(|p| p.name().to_string()).unwrap_or_default();
            for slot in &st.slots {
                if slot.booted {
                    s.version = slot.version.clone();
                }
                s.slots.insert(
                    slot.slot.name().to_string(),
                    SlotReport {
                        version: slot.version.clone(),
                        tries_left: slot.tries_left,
                    },
                );
            }
            if s.operation.is_empty() {
                s.operation = st.operation.to_string();
            }
            s.failed_versions = st.failed_versions.clone();
            // A lifecycle result newer than the deployment's (a commit or a
            // rollback after the reboot) is the more useful answer.
            if let Some(r) = &st.last_result {
                let newer = match (parse_time(&r.at), parse_time(&record.at)) {
                    (Some(a), Some(b)) => a > b,
                    (Some(_), None) => record.result.is_none(),
                    _ => false,
                };
                if newer || record.result.is_none() {
                    s.last_result = Some(r.kind.name().to_string());
                    s.reason = if matches!(
                        r.kind,
                        crate::state::ResultKind::Committed | crate::state::ResultKind::Installed
                    ) {
                        String::new()
                    } else {
                        r.message.clone()
                    };
                }
            }
        }
        Err(e) => {
            s.reason = format!("status unavailable: {e:#}");
        }
    }
    s
}

impl DeviceLink {
    async fn run(
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
                        let mut topics = vec![super::device_deployment_topic(&self.id.device_id)];
                        topics.extend(self.id.groups.iter().map(|g| super::group_deployment_topic(g)));
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
        let topic = super::status_topic(&self.id.device_id);
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
        let topic = super::status_topic(&self.id.device_id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Kind;

    #[test]
    fn fleet_results_follow_the_completed_code() {
        assert_eq!(result_name(0), "installed");
        assert_eq!(result_name(Kind::Rejected.exit_status()), "refused");
        assert_eq!(result_name(Kind::Cancelled.exit_status()), "cancelled");
        for kind in [Kind::Io, Kind::Network, Kind::Environment, Kind::Internal] {
            assert_eq!(result_name(kind.exit_status()), "failed", "{kind:?}");
        }
        assert_eq!(result_name(99), "failed");
    }
}

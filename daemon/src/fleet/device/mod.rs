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
//!
//! Files:
//! - `connection` — [`Identity`], [`mqtt_options`] and the connection task;
//! - `link` — the link task: deployments in, status out, the fleet record;
//! - `status` — the status published, built from the updater and the
//!   service's live properties.
//!
//! [`start`] wires them up inside the daemon; [`FleetLink::stop`] ends them.

mod connection;
mod link;
mod status;

use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};

use self::connection::drive;
use self::link::DeviceLink;
use self::status::build_status;
use super::record::{FleetRecord, RecordStore};
use super::FleetError;
use crate::dbus::{LiveView, UpdaterService, OBJECT_PATH};
use crate::service::Service;

pub use connection::{identity, mqtt_options, Identity};
pub use link::RECENT_IDS;

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

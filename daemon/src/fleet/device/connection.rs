//! The MQTT connection: who the device is on the broker ([`Identity`]),
//! its [`MqttOptions`] (client id, TLS with the device certificate, the
//! `offline` last will), and the connection task that polls the event loop
//! forever, reconnecting with exponential backoff and jitter and refreshing
//! the last will before every attempt, and reports to the link task.

use std::time::Duration;

use rumqttc::{Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, FleetConfig};
use crate::fleet::{self, DeviceStatus, FleetError};

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
        None => crate::fleet::tls::common_name(&fleet.client_cert)?,
    };
    fleet::check_name("device id", &device_id)?;
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
    let broker = fleet::Broker::parse(&fleet.broker)?;
    let mut o = MqttOptions::new(id.device_id.clone(), broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(fleet.keepalive));
    o.set_clean_session(true);
    o.set_max_packet_size(fleet::MAX_DEPLOYMENT_BYTES + 4096, 256 * 1024);
    o.set_last_will(last_will(id, will));
    if broker.tls {
        let tls =
            crate::fleet::tls::client_config(&fleet.ca, &fleet.client_cert, &fleet.client_key)?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    Ok(o)
}

/// The last will: `status` marked `offline`, retained, on the device's
/// status topic.
pub(super) fn last_will(id: &Identity, status: &DeviceStatus) -> LastWill {
    LastWill::new(
        fleet::status_topic(&id.device_id),
        serde_json::to_vec(&status.offline()).unwrap_or_default(),
        QoS::AtLeastOnce,
        true,
    )
}

/// What the connection task reports to the link task.
#[derive(Debug)]
pub(super) enum Link {
    /// Connected (CONNACK received).
    Up,
    /// The connection failed or dropped, with the reason; a reconnect follows.
    Down(String),
    /// Our DISCONNECT went out: the connection task has ended.
    Disconnected,
    /// A message on a subscribed topic.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload (empty: a retained message cleared).
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
pub(super) async fn drive(
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
                let delay = fleet::backoff(attempt, min, max, xorshift(&mut seed));
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(delay).await;
                if let Some(w) = will.borrow_and_update().clone() {
                    eventloop.mqtt_options.set_last_will(w);
                }
            }
        }
    }
}

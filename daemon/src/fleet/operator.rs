//! The operator side of the fleet link (`seesaw fleet`): publish or clear a
//! retained deployment for a device or a group, and collect the retained
//! statuses of every device into one table.
//!
//! A short-lived MQTT client (TLS with the operator's certificate) on its
//! own single-threaded runtime; knows nothing of slots or bundles beyond
//! the message formats of [`super`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, Transport};

use super::{DeviceStatus, FleetError};

/// How the operator reaches the broker.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `mqtts://host[:port]` or `mqtt://host[:port]`.
    pub broker: String,
    /// CA certificates (PEM) the broker must chain to (TLS only).
    pub ca: Option<PathBuf>,
    /// The operator's certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Its key (PEM).
    pub key: Option<PathBuf>,
    /// Bound on connecting and on each acknowledgement.
    pub timeout: Duration,
}

/// Where a deployment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One device, by id.
    Device(String),
    /// A group, by name.
    Group(String),
}

impl Target {
    /// The deployment topic of the target.
    ///
    /// Errors: [`FleetError::InvalidName`].
    pub fn topic(&self) -> Result<String, FleetError> {
        Ok(match self {
            Target::Device(id) => {
                super::check_name("device id", id)?;
                super::device_deployment_topic(id)
            }
            Target::Group(g) => {
                super::check_name("group", g)?;
                super::group_deployment_topic(g)
            }
        })
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// A deployment id: UTC time and random bits, e.g. `20261121T190501Z-3fa2c1d09b7e`.
pub fn generate_deployment_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        random_suffix()
    )
}

fn options(conn: &Connection) -> Result<MqttOptions, FleetError> {
    let broker = super::Broker::parse(&conn.broker)?;
    let mut o = MqttOptions::new(
        format!("seesaw-fleet-{}", random_suffix()),
        broker.host,
        broker.port,
    );
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    o.set_max_packet_size(4 << 20, super::MAX_DEPLOYMENT_BYTES + 4096);
    if broker.tls {
        let missing = |what: &str| FleetError::Tls(format!("{what} is needed for mqtts://"));
        let tls = super::tls::client_config(
            conn.ca.as_deref().ok_or_else(|| missing("--ca"))?,
            conn.cert.as_deref().ok_or_else(|| missing("--cert"))?,
            conn.key.as_deref().ok_or_else(|| missing("--key"))?,
        )?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    Ok(o)
}

/// A failure talking to `conn`'s broker.
fn broker_error(conn: &Connection, reason: String) -> FleetError {
    FleetError::Broker {
        broker: conn.broker.clone(),
        reason,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, FleetError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FleetError::Tls(format!("cannot start the runtime: {e}")))
}

/// Publishes `payload` retained with QoS 1 on `topic` and waits for the
/// broker's acknowledgement.
///
/// Errors: [`FleetError::Broker`] (unreachable, refused, no acknowledgement
/// within the timeout), or the TLS and URL errors of the connection.
pub fn publish_retained(
    conn: &Connection,
    topic: &str,
    payload: Vec<u8>,
) -> Result<(), FleetError> {
    let opts = options(conn)?;
    let broker_err = |reason: String| broker_error(conn, reason);
    runtime()?.block_on(async {
        let (client, mut eventloop) = AsyncClient::new(opts, 8);
        client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .map_err(|e| broker_err(e.to_string()))?;
        let deadline = Instant::now() + conn.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, eventloop.poll()).await {
                Err(_) => return Err(broker_err("no acknowledgement in time".into())),
                Ok(Err(e)) => return Err(broker_err(e.to_string())),
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
                Ok(Ok(_)) => {}
            }
        }
        let _ = client.disconnect().await;
        // Let the DISCONNECT go out; the broker needs nothing more.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        Ok(())
    })
}

/// Publishes a retained deployment for `target`. Returns the topic.
///
/// Errors: as [`publish_retained`], and [`FleetError::InvalidName`].
pub fn publish(
    conn: &Connection,
    target: &Target,
    deployment: &super::Deployment,
) -> Result<String, FleetError> {
    let topic = target.topic()?;
    let bytes = serde_json::to_vec(deployment).unwrap_or_default();
    // What the devices will accept, checked before it is sent.
    super::Deployment::parse(&bytes).map_err(|e| FleetError::InvalidName {
        what: "deployment",
        name: deployment.deployment_id.clone(),
        reason: match e {
            super::DeploymentError::BadUrl(_) => "manifest URL must be https:// or http://",
            super::DeploymentError::BadId(_) => {
                "only ASCII letters, digits, '.', '_', '-' and ':' are allowed"
            }
            _ => "not a valid deployment",
        },
    })?;
    publish_retained(conn, &topic, bytes)?;
    Ok(topic)
}

/// Removes the retained deployment of `target` (an empty retained message).
/// Returns the topic.
pub fn clear(conn: &Connection, target: &Target) -> Result<String, FleetError> {
    let topic = target.topic()?;
    publish_retained(conn, &topic, Vec::new())?;
    Ok(topic)
}

/// Collects the retained status of every device: subscribes to
/// `seesaw/v1/devices/+/status` and gathers messages until none has come
/// for `settle` (or `limit` has passed). Sorted by device id. Messages
/// that are not a status are skipped with a note on stderr.
///
/// Errors: [`FleetError::Broker`] and the connection's errors.
pub fn collect_status(
    conn: &Connection,
    settle: Duration,
    limit: Duration,
) -> Result<Vec<DeviceStatus>, FleetError> {
    let opts = options(conn)?;
    let broker_err = |reason: String| broker_error(conn, reason);
    runtime()?.block_on(async {
        let (client, mut eventloop) = AsyncClient::new(opts, 8);
        client
            .subscribe(super::ALL_STATUS_FILTER, QoS::AtLeastOnce)
            .await
            .map_err(|e| broker_err(e.to_string()))?;
        let mut found = std::collections::BTreeMap::new();
        let started = Instant::now();
        let mut subscribed = false;
        loop {
            let wait = if subscribed { settle } else { conn.timeout };
            let wait = wait.min(limit.saturating_sub(started.elapsed()));
            match tokio::time::timeout(wait, eventloop.poll()).await {
                Err(_) if subscribed => break,
                Err(_) => return Err(broker_err("no subscription acknowledgement".into())),
                Ok(Err(e)) => return Err(broker_err(e.to_string())),
                Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        return Err(broker_err(format!(
                            "not allowed to read {}",
                            super::ALL_STATUS_FILTER
                        )));
                    }
                    subscribed = true;
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let Some(id) = super::device_of_status_topic(&p.topic) else {
                        continue;
                    };
                    if p.payload.is_empty() {
                        found.remove(id);
                        continue;
                    }
                    match serde_json::from_slice::<DeviceStatus>(&p.payload) {
                        Ok(mut s) => {
                            // The topic, which the broker's ACL guards, names the device.
                            s.device_id = id.to_string();
                            found.insert(id.to_string(), s);
                        }
                        Err(e) => eprintln!("note: status of {id} is not valid: {e}"),
                    }
                }
                Ok(Ok(_)) => {}
            }
            if started.elapsed() >= limit {
                break;
            }
        }
        let _ = client.disconnect().await;
        Ok(found.into_values().collect())
    })
}

/// The table `seesaw fleet status` prints: a header and one row per device
/// (id, version, slot, state, last result, reason, last seen).
pub fn format_table(statuses: &[DeviceStatus]) -> String {
    let rows: Vec<[String; 7]> = statuses
        .iter()
        .map(|s| {
            let state = if s.state == "offline" {
                "offline".to_string()
            } else if s.operation == "installing" {
                format!("installing {}%", s.progress)
            } else {
                s.operation.clone()
            };
            let slot = if !s.primary_slot.is_empty() && s.primary_slot != s.booted_slot {
                format!("{} (next {})", s.booted_slot, s.primary_slot)
            } else {
                s.booted_slot.clone()
            };
            [
                s.device_id.clone(),
                s.version.clone().unwrap_or_else(|| "-".into()),
                slot,
                state,
                s.last_result.clone().unwrap_or_else(|| "-".into()),
                if s.reason.is_empty() {
                    "-".into()
                } else {
                    s.reason.replace('\n', " ")
                },
                s.time.clone(),
            ]
        })
        .collect();
    let header = [
        "DEVICE",
        "VERSION",
        "SLOT",
        "STATE",
        "LAST RESULT",
        "REASON",
        "LAST SEEN",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            // The reason is printed last but one and may be long; cap it.
            widths[i] = widths[i].max(c.chars().count().min(if i == 5 { 60 } else { 64 }));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                out.push_str(c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_device() {
        let a = DeviceStatus {
            format: 1,
            device_id: "pi-1".into(),
            state: "online".into(),
            booted_slot: "A".into(),
            primary_slot: "B".into(),
            version: Some("1.0.0".into()),
            operation: "awaiting-reboot".into(),
            last_result: Some("installed".into()),
            time: "2026-11-21T10:00:00Z".into(),
            ..DeviceStatus::default()
        };
        let b = DeviceStatus {
            device_id: "pi-2".into(),
            state: "offline".into(),
            last_result: Some("refused".into()),
            reason: "signature: no role satisfied".into(),
            ..a.clone()
        };
        let t = format_table(&[a, b]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("DEVICE"));
        assert!(lines[1].contains("pi-1") && lines[1].contains("A (next B)"));
        assert!(lines[2].contains("offline") && lines[2].contains("no role satisfied"));
    }

    #[test]
    fn targets_and_ids() {
        assert_eq!(
            Target::Group("canary".into()).topic().unwrap(),
            "seesaw/v1/groups/canary/deployment"
        );
        assert!(Target::Device("a/#".into()).topic().is_err());
        let id = generate_deployment_id();
        assert!(
            super::super::check_name("deployment id", &id).is_ok(),
            "{id}"
        );
        assert_ne!(id, generate_deployment_id());
    }
}

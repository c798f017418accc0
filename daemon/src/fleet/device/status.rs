//! The status the device publishes: [`build_status`] assembles it from the
//! updater's status, the service's live properties and the fleet record
//! (preferring a lifecycle result newer than the deployment's), and
//! [`result_name`] maps a `Completed` result code to the results of
//! `docs/fleet.md`.

use time::OffsetDateTime;

use super::connection::Identity;
use crate::dbus::LiveView;
use crate::fleet::record::FleetRecord;
use crate::fleet::{DeviceStatus, SlotReport};
use crate::service::Service;

/// Now, RFC 3339 (empty if it cannot be formatted).
pub(super) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// The fleet result for a `Completed` result code: the one mapping from
/// [`Kind`](crate::failure::Kind) to the results of `docs/fleet.md`.
pub(super) fn result_name(code: i32) -> &'static str {
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

/// The status of the device now, from the updater and the live properties.
pub(super) fn build_status(
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

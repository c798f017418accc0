//! The errors D-Bus callers receive: [`ServiceError`], named
//! `org.seesaw.Updater1.Error.<Variant>`, and the one mapping between those
//! names and the failure [`Kind`]s, both ways ([`service_error`],
//! [`kind_of_error_name`]).

use crate::failure::{Classify, Kind};
use crate::updater::UpdateError;

/// Errors returned to D-Bus callers, named `org.seesaw.Updater1.Error.<Variant>`.
/// Stable: clients match on these names; never rename.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.seesaw.Updater1.Error")]
pub enum ServiceError {
    /// A D-Bus failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Another operation is in progress.
    Busy(String),
    /// The bundle was refused (signature, manifest, policy, chunk hash).
    Rejected(String),
    /// The configuration or trust keys are unusable.
    Config(String),
    /// The bootloader environment could not be read or written.
    Environment(String),
    /// A slot, the state or another file could not be read or written.
    IO(String),
    /// Not allowed in the current state (e.g. an uncommitted trial runs).
    State(String),
    /// Arguments that make no sense (unknown mark state, slot name, option).
    InvalidArgs(String),
    /// Anything else: a bug in seesaw, such as a worker that panicked.
    Failed(String),
}

impl ServiceError {
    /// The error for a failed updater operation: its kind's name, the
    /// whole error chain as the message.
    pub(super) fn from_update(e: &UpdateError) -> ServiceError {
        service_error(e.kind(), format!("{e:#}"))
    }
}

/// The D-Bus error for a failure of `kind`: the one mapping from
/// [`Kind`] to the `org.seesaw.Updater1.Error.*` names. A cancelled or
/// network failure is `IO`; [`Kind::Internal`] is `Failed`.
pub fn service_error(kind: Kind, message: String) -> ServiceError {
    match kind {
        Kind::Usage => ServiceError::InvalidArgs(message),
        Kind::Rejected => ServiceError::Rejected(message),
        Kind::Config => ServiceError::Config(message),
        Kind::Environment => ServiceError::Environment(message),
        Kind::Io | Kind::Cancelled | Kind::Network => ServiceError::IO(message),
        Kind::State => ServiceError::State(message),
        Kind::Busy => ServiceError::Busy(message),
        Kind::Internal => ServiceError::Failed(message),
    }
}

/// The kind a D-Bus error name stands for, the inverse of
/// [`service_error`]: the first kind of [`Kind::ALL`] whose error has the
/// same last component (so `org.freedesktop.DBus.Error.InvalidArgs`, the
/// bus's own refusal of bad arguments, is [`Kind::Usage`] too);
/// [`Kind::Internal`] for any other name.
pub fn kind_of_error_name(name: &str) -> Kind {
    use zbus::DBusError;
    let last = |n: &str| n.rsplit('.').next().unwrap_or_default().to_string();
    let wanted = last(name);
    Kind::ALL
        .into_iter()
        .find(|k| last(service_error(*k, String::new()).name().as_str()) == wanted)
        .unwrap_or(Kind::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn error_names_stay_as_documented() {
        let table = [
            (Kind::Usage, "InvalidArgs"),
            (Kind::Rejected, "Rejected"),
            (Kind::Config, "Config"),
            (Kind::Environment, "Environment"),
            (Kind::Io, "IO"),
            (Kind::State, "State"),
            (Kind::Busy, "Busy"),
            (Kind::Cancelled, "IO"),
            (Kind::Network, "IO"),
            (Kind::Internal, "Failed"),
        ];
        for (kind, name) in table {
            let e = service_error(kind, "m".into());
            assert_eq!(
                e.name().as_str(),
                format!("org.seesaw.Updater1.Error.{name}")
            );
            assert_eq!(e.description(), Some("m"));
        }
    }

    #[test]
    fn every_error_name_maps_back_to_a_kind_with_the_same_exit_status() {
        for kind in Kind::ALL {
            let name = service_error(kind, String::new()).name().to_string();
            let back = kind_of_error_name(&name);
            assert_eq!(service_error(back, String::new()).name().as_str(), name);
        }
        assert_eq!(kind_of_error_name("org.seesaw.Updater1.Error.IO"), Kind::Io);
        assert_eq!(
            kind_of_error_name("org.freedesktop.DBus.Error.InvalidArgs"),
            Kind::Usage
        );
        assert_eq!(
            kind_of_error_name("org.freedesktop.DBus.Error.AccessDenied"),
            Kind::Internal
        );
    }
}

//! What kind of failure an error is, decided once where the error is made.
//!
//! Every error type of the library implements [`Classify`]; the front ends
//! never look inside an error to decide how to report it. Each front end has
//! one mapping from [`Kind`]: the exit status ([`Kind::exit_status`], also
//! the D-Bus `Completed` result), the D-Bus error name (`dbus::service_error`)
//! and the fleet result (`fleet::device`). Owns the exit statuses (see
//! [`exit`]); must not depend on any other module.

/// Exit statuses of `seesaw`, also the result code of the D-Bus `Completed`
/// signal. Stable: scripts rely on them; never renumber.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any failure not listed below.
    pub const FAILURE: i32 = 1;
    /// Bad command-line usage (clap's own status).
    pub const USAGE: i32 = 2;
    /// The bundle was refused: signature, manifest, compatible, expiry,
    /// anti-rollback, deny-list, size, or a chunk that failed its hash.
    pub const REJECTED: i32 = 3;
    /// The configuration or trust keys are unusable.
    pub const CONFIG: i32 = 4;
    /// The bootloader environment could not be read or written.
    pub const ENVIRONMENT: i32 = 5;
    /// A slot device, the state or another file could not be read or written.
    pub const IO: i32 = 6;
    /// The operation is not allowed in the device's current state.
    pub const STATE: i32 = 7;
    /// The install was cancelled.
    pub const CANCELLED: i32 = 8;
    /// The bundle could not be fetched (network, TLS, server, budget).
    pub const NETWORK: i32 = 9;
}

/// The kind of a failure: what went wrong from the point of view of whoever
/// asked for the operation, not which module noticed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The request itself makes no sense (an unknown option, slot name or
    /// mark state).
    Usage,
    /// The bundle (or a deployment) was refused by a check: signature,
    /// manifest, compatible, expiry, anti-rollback, deny-list, size, a chunk
    /// that failed its hash.
    Rejected,
    /// The configuration or the trust keys are unusable.
    Config,
    /// The bootloader environment could not be read or written, or holds
    /// values the boot contract cannot use.
    Environment,
    /// A slot device, the state or another file could not be read or
    /// written.
    Io,
    /// Not allowed in the device's current state (a trial runs, an install
    /// awaits its reboot).
    State,
    /// Another operation is in progress.
    Busy,
    /// The operation was cancelled on request.
    Cancelled,
    /// The bundle could not be fetched: network, TLS, server, budget.
    Network,
    /// Anything else, including a bug (a worker thread that panicked).
    Internal,
}

impl Kind {
    /// Every kind, in the order used to map an external code back to a
    /// kind: where two kinds share a code (`State` and `Busy`), the first
    /// one listed wins.
    pub const ALL: [Kind; 10] = [
        Kind::Usage,
        Kind::Rejected,
        Kind::Config,
        Kind::Environment,
        Kind::Io,
        Kind::State,
        Kind::Busy,
        Kind::Cancelled,
        Kind::Network,
        Kind::Internal,
    ];

    /// The exit status of `seesaw` for a failure of this kind, also the
    /// result code of the D-Bus `Completed` signal.
    pub fn exit_status(self) -> i32 {
        match self {
            Kind::Usage => exit::USAGE,
            Kind::Rejected => exit::REJECTED,
            Kind::Config => exit::CONFIG,
            Kind::Environment => exit::ENVIRONMENT,
            Kind::Io => exit::IO,
            Kind::State | Kind::Busy => exit::STATE,
            Kind::Cancelled => exit::CANCELLED,
            Kind::Network => exit::NETWORK,
            Kind::Internal => exit::FAILURE,
        }
    }

    /// The kind an exit status (or `Completed` result code) stands for;
    /// `None` for [`exit::OK`]. An unknown code is [`Kind::Internal`].
    pub fn from_exit_status(code: i32) -> Option<Kind> {
        if code == exit::OK {
            return None;
        }
        Some(
            Kind::ALL
                .into_iter()
                .find(|k| k.exit_status() == code)
                .unwrap_or(Kind::Internal),
        )
    }

    /// A short lower-case name, as used in logs: `rejected`, `config`,
    /// `environment`, `io`, `state`, `busy`, `cancelled`, `network`,
    /// `usage`, `internal`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::Rejected => "rejected",
            Kind::Config => "config",
            Kind::Environment => "environment",
            Kind::Io => "io",
            Kind::State => "state",
            Kind::Busy => "busy",
            Kind::Cancelled => "cancelled",
            Kind::Network => "network",
            Kind::Internal => "internal",
        }
    }
}

/// An error that knows its [`Kind`]. Implemented by every error type of the
/// library, next to the type, so the decision is made where the error is.
pub trait Classify {
    /// The kind of this failure.
    fn kind(&self) -> Kind;
}

impl Classify for std::convert::Infallible {
    fn kind(&self) -> Kind {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_stay_as_documented() {
        let table = [
            (Kind::Usage, 2),
            (Kind::Rejected, 3),
            (Kind::Config, 4),
            (Kind::Environment, 5),
            (Kind::Io, 6),
            (Kind::State, 7),
            (Kind::Busy, 7),
            (Kind::Cancelled, 8),
            (Kind::Network, 9),
            (Kind::Internal, 1),
        ];
        for (kind, code) in table {
            assert_eq!(kind.exit_status(), code, "{kind:?}");
        }
        assert_eq!(Kind::ALL.len(), table.len());
    }

    #[test]
    fn every_exit_status_maps_back_to_its_kind() {
        assert_eq!(Kind::from_exit_status(0), None);
        for kind in Kind::ALL {
            let back = Kind::from_exit_status(kind.exit_status()).unwrap();
            assert_eq!(back.exit_status(), kind.exit_status());
        }
        assert_eq!(Kind::from_exit_status(7), Some(Kind::State));
        assert_eq!(Kind::from_exit_status(42), Some(Kind::Internal));
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }
}

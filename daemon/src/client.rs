//! The CLI's side of the D-Bus API: finds a running daemon and asks it to
//! install, cancel or mark, showing progress while it works.
//!
//! When no daemon owns `org.seesaw.Updater1`, the CLI works standalone and
//! this module is not used. Progress is shown by [`crate::progress`], as for
//! a standalone install: a bar with bytes, rate and ETA on a terminal, a
//! line per 10% otherwise, or JSON lines (`--json`) for scripts.

use std::collections::HashMap;
use std::path::Path;

use futures_util::StreamExt;
use zbus::zvariant::Value;

use crate::dbus::{Updater1Proxy, BUS_NAME};
use crate::failure::Kind;
use crate::progress::Meter;

/// Errors of talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The bus connection or a call failed.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// The daemon refused the call with one of its typed errors.
    #[error("{message}")]
    Refused {
        /// The D-Bus error name, e.g. `org.seesaw.Updater1.Error.Busy`.
        name: String,
        /// The daemon's message.
        message: String,
    },
    /// The install ran and failed.
    #[error("{message}")]
    Failed {
        /// The `Completed` result code (an exit status).
        code: i32,
        /// The daemon's message.
        message: String,
    },
    /// The bus refused the call: its policy lets only root call the
    /// daemon's methods (`org.freedesktop.DBus.Error.AccessDenied`).
    #[error("{command} needs root: the seesaw daemon accepts this call from root only ({ACCESS_DENIED})")]
    NeedsRoot {
        /// The command that was refused, e.g. `install` or `mark-good`.
        command: String,
    },
    /// The runtime for the client could not be started.
    #[error("cannot start the D-Bus client: {0}")]
    Runtime(std::io::Error),
}

impl crate::failure::Classify for ClientError {
    /// A refusal by the daemon has the kind its D-Bus error name stands for;
    /// a failed install, the kind of its `Completed` result.
    fn kind(&self) -> Kind {
        match self {
            ClientError::Failed { code, .. } => {
                Kind::from_exit_status(*code).unwrap_or(Kind::Internal)
            }
            ClientError::Refused { name, .. } => crate::dbus::kind_of_error_name(name),
            ClientError::NeedsRoot { .. } | ClientError::Bus(_) | ClientError::Runtime(_) => {
                Kind::Internal
            }
        }
    }
}

/// The D-Bus error a bus returns for a call its policy denies.
const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// Maps the error of a call made for `command` (a CLI command name). A
/// denial by the bus becomes [`ClientError::NeedsRoot`]: the bus's own
/// message is a dump of the rule that matched, which tells a user nothing.
fn refused(command: impl Into<String>) -> impl FnOnce(zbus::Error) -> ClientError {
    move |e| match e {
        zbus::Error::MethodError(name, _, _) if name.as_str() == ACCESS_DENIED => {
            ClientError::NeedsRoot {
                command: command.into(),
            }
        }
        zbus::Error::FDO(fdo) if matches!(*fdo, zbus::fdo::Error::AccessDenied(_)) => {
            ClientError::NeedsRoot {
                command: command.into(),
            }
        }
        zbus::Error::MethodError(name, message, _) => ClientError::Refused {
            name: name.to_string(),
            message: message.unwrap_or_default(),
        },
        zbus::Error::FDO(fdo) => ClientError::Refused {
            name: "org.freedesktop.DBus.Error.Failed".into(),
            message: fdo.to_string(),
        },
        other => ClientError::Bus(other),
    }
}

/// A connection to a bus on which the daemon runs.
pub struct Client {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

impl Client {
    /// Connects to `bus_address` (or the system bus) and returns a client if
    /// the daemon owns its name there; `None` means "work standalone".
    pub fn find(bus_address: Option<&str>) -> Option<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let conn = rt.block_on(async {
            let builder = match bus_address {
                Some(a) => zbus::connection::Builder::address(a).ok()?,
                None => zbus::connection::Builder::system().ok()?,
            };
            let conn = builder.build().await.ok()?;
            let dbus = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
            let name = zbus::names::BusName::try_from(BUS_NAME).ok()?;
            dbus.name_has_owner(name).await.ok()?.then_some(conn)
        })?;
        Some(Client { rt, conn })
    }

    /// Asks the daemon to install `bundle` and follows it to the end.
    /// Progress goes to stderr through [`Meter`] (JSON lines with `json`);
    /// returns the daemon's `Completed` message.
    pub fn install(&self, bundle: &str, force: bool, json: bool) -> Result<String, ClientError> {
        let bundle = if bundle.contains("://") {
            bundle.to_string()
        } else {
            std::path::absolute(Path::new(bundle))
                .map_err(ClientError::Runtime)?
                .display()
                .to_string()
        };
        self.rt.block_on(async {
            let proxy = Updater1Proxy::new(&self.conn).await?;
            // Subscribe before asking, so no signal is missed.
            let mut completed = proxy.receive_completed().await?;
            let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
                .destination(BUS_NAME)?
                .path(crate::dbus::OBJECT_PATH)?
                .build()
                .await?;
            let mut progress = props.receive_properties_changed().await?;
            let mut options: HashMap<&str, Value<'_>> = HashMap::new();
            if force {
                options.insert("force", Value::from(true));
            }
            proxy
                .install(&bundle, options)
                .await
                .map_err(refused("install"))?;
            let meter = Meter::new(json);
            // The daemon's message names the phase; at the end it becomes the
            // result, which `finish` shows, so the first measured one is kept.
            let mut phase: Option<String> = None;
            loop {
                tokio::select! {
                    Some(change) = progress.next() => {
                        let Ok(args) = change.args() else { continue };
                        if args.interface_name.as_str() != crate::dbus::INTERFACE {
                            continue;
                        }
                        if let Some(v) = args.changed_properties.get("Progress") {
                            if let Ok((_, done, total, message)) =
                                <crate::dbus::ProgressValue>::try_from(v.try_to_owned().unwrap_or_else(|_| 0u8.into()))
                            {
                                if total > 0 {
                                    let phase = phase.get_or_insert(message);
                                    meter.show(phase, done, total);
                                }
                            }
                        }
                    }
                    Some(signal) = completed.next() => {
                        let args = signal.args()?;
                        meter.finish(args.result, &args.message);
                        return if args.result == 0 {
                            Ok(args.message.clone())
                        } else {
                            Err(ClientError::Failed { code: args.result, message: args.message.clone() })
                        };
                    }
                    else => return Err(ClientError::Bus(zbus::Error::Failure("the daemon went away".into()))),
                }
            }
        })
    }

    /// Asks the daemon to cancel the running install.
    pub fn cancel(&self) -> Result<(), ClientError> {
        self.rt.block_on(async {
            Updater1Proxy::new(&self.conn)
                .await?
                .cancel()
                .await
                .map_err(refused("cancel"))
        })
    }

    /// Asks the daemon to mark `slot` (`""` = booted) `good` or `bad`.
    pub fn mark(&self, state: &str, slot: &str) -> Result<(String, String), ClientError> {
        self.rt.block_on(async {
            Updater1Proxy::new(&self.conn)
                .await?
                .mark(state, slot)
                .await
                .map_err(refused(format!("mark-{state}")))
        })
    }

    /// The daemon's `Operation`, `Progress` and `LastError`.
    pub fn live(&self) -> Result<(String, crate::dbus::ProgressValue, String), ClientError> {
        self.rt.block_on(async {
            let p = Updater1Proxy::builder(&self.conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            Ok((
                p.operation().await?,
                p.progress().await?,
                p.last_error().await?,
            ))
        })
    }
}

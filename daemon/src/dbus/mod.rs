//! The D-Bus front end: `org.seesaw.Updater1` at `/org/seesaw/Updater1` on
//! the system bus, and the client proxy the CLI uses to talk to it.
//!
//! A thin adapter: methods convert their arguments and call the same
//! [`crate::updater`] functions the CLI calls, on a blocking thread; the
//! interface only keeps what clients read (operation, progress, last
//! error) and emits `PropertiesChanged` and `Completed`. Who may call what
//! is the bus policy's job (`systemd/org.seesaw.Updater1.conf`: methods for
//! uid 0, properties and introspection for everyone). The interface
//! description is kept in `systemd/org.seesaw.Updater1.xml`.
//!
//! Files:
//! - `object` — [`UpdaterService`], the served object: its interface and
//!   the install it runs in the background;
//! - `live` — [`LiveView`], the live properties it keeps;
//! - `error` — [`ServiceError`] and its mapping to and from failure kinds;
//! - `proxy` — the generated client proxy `Updater1Proxy`.
//!
//! The bus name, object path and interface name are defined here.

mod error;
mod live;
mod object;
mod proxy;

pub use error::{kind_of_error_name, service_error, ServiceError};
pub use live::LiveView;
pub use object::{emit_live_changes, phase_name, UpdaterService};
// Everything the proxy macro generates (`Updater1Proxy`,
// `Updater1ProxyBlocking`, the `Completed` signal's types).
pub use proxy::*;

/// The well-known bus name.
pub const BUS_NAME: &str = "org.seesaw.Updater1";
/// The object path.
pub const OBJECT_PATH: &str = "/org/seesaw/Updater1";
/// The interface name.
pub const INTERFACE: &str = "org.seesaw.Updater1";

/// The `Progress` property: (percent, bytes done, bytes total, message).
pub type ProgressValue = (i32, u64, u64, String);

//! The client side of `org.seesaw.Updater1`: the [`zbus::proxy`]-generated
//! `Updater1Proxy` (async) and `Updater1ProxyBlocking` the CLI's
//! [`crate::client`] talks to the daemon through.

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

/// The client side of `org.seesaw.Updater1`, for the CLI.
#[zbus::proxy(
    interface = "org.seesaw.Updater1",
    default_service = "org.seesaw.Updater1",
    default_path = "/org/seesaw/Updater1"
)]
pub trait Updater1 {
    /// See [`UpdaterService::install`](super::UpdaterService::install).
    fn install(&self, source: &str, options: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    /// See [`UpdaterService::cancel`](super::UpdaterService::cancel).
    fn cancel(&self) -> zbus::Result<()>;
    /// See [`UpdaterService::mark`](super::UpdaterService::mark).
    fn mark(&self, state: &str, slot: &str) -> zbus::Result<(String, String)>;
    /// See [`UpdaterService::get_slot_status`](super::UpdaterService::get_slot_status).
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;
    /// `Operation`.
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;
    /// `Progress`.
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, u64, u64, String)>;
    /// `LastError`.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    /// `Completed`.
    #[zbus(signal)]
    fn completed(&self, result: i32, message: String) -> zbus::Result<()>;
}

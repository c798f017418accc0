//! seesaw: an A/B over-the-air updater for embedded Linux boards booted by U-Boot.
//!
//! # Layout
//! - [`slot`] — the two root filesystem slots and the boot contract with U-Boot
//!   (`BOOT_ORDER`, `BOOT_x_LEFT`): pure functions, no I/O.
//! - [`uboot_env`] — the U-Boot environment block (CRC32, redundant copies,
//!   `fw_env.config`) read and written natively, behind the [`uboot_env::BootEnv`] trait.
//! - [`manifest`] — the signed description of an update (compatible, versions,
//!   images, chunk hashes) and the checks made on it before a byte is written.
//! - [`trust`] — DSSE envelopes, ed25519 keys and the role/threshold trust policy.
//! - [`transport`] — HTTPS sources: resuming range streams, timeouts, TLS trust.
//! - [`bundle`] — the one-file bundle (envelope first, then zstd payload): create,
//!   countersign, open.
//! - [`blocks`] — the content-addressed block store and index for delta
//!   updates from the running slot.
//! - [`install`] — the streaming install pipeline into the inactive slot.
//! - [`mounts`] — what the running system uses: no slot target that is
//!   mounted or holds the root file system is ever written.
//! - [`lifecycle`] — the update lifecycle as a pure state machine.
//! - [`state`] — what the device remembers across boots, written atomically.
//! - [`atomic_file`] — the one way a file is replaced: temporary file, fsync,
//!   rename, fsync of the directory. Uses no other module.
//! - [`config`] — `/etc/seesaw/seesaw.toml`.
//! - [`updater`] — the operations the front ends call (install, status, mark).
//! - [`health`] — the health gate of a trial boot (systemd's state, units, commands).
//! - [`daemon`] — `seesaw daemon`: the systemd service wiring.
//! - [`dbus`] — the `org.seesaw.Updater1` D-Bus interface and its client proxy.
//! - [`events`] — stable journald `MESSAGE_ID`s and logger set-up.
//! - [`fleet`] — fleet push over MQTT: deployments in, device status out
//!   (the device link in `seesaw daemon`, the operator side of `seesaw fleet`).
//! - [`cli`] — the command-line front end; [`client`] — its D-Bus side;
//!   [`progress`] — what both show while an install runs (bar, lines or
//!   JSON on stderr) and the JSON result document of `install --json`.

pub mod atomic_file;
pub mod blocks;
pub mod bundle;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod events;
pub mod failure;
pub mod fleet;
pub mod health;
pub mod install;
pub mod lifecycle;
pub mod manifest;
pub mod mounts;
pub mod progress;
pub mod service;
pub mod slot;
pub mod state;
pub mod transport;
pub mod trust;
pub mod uboot_env;
pub mod updater;

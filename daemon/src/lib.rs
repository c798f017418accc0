//! seesaw: an A/B over-the-air updater for embedded Linux boards booted by U-Boot.
//!
//! # Layout
//! Three layers; a module names only modules of its own layer or a lower
//! one, and the module graph has no cycles (`tests/module_graph.rs` checks
//! both).
//!
//! **Core** — pure logic and formats, no device I/O beyond their own files:
//! - [`failure`] — what kind of failure an error is, and the exit statuses.
//! - [`slot`] — the two root filesystem slots and the boot contract with U-Boot
//!   (`BOOT_ORDER`, `BOOT_x_LEFT`): pure functions, no I/O.
//! - [`lifecycle`] — the update lifecycle as a pure state machine.
//! - [`manifest`] — the signed description of an update (compatible, versions,
//!   images, chunk hashes) and the checks made on it before a byte is written.
//! - [`trust`] — DSSE envelopes, ed25519 keys and the role/threshold trust policy.
//! - [`state`] — what the device remembers across boots, written atomically.
//! - [`atomic_file`] — the one way a file is replaced: temporary file, fsync,
//!   rename, fsync of the directory. Uses no other module.
//! - [`digest`] — SHA-256 for every hash seesaw checks (ring's assembly).
//! - [`events`] — stable journald `MESSAGE_ID`s, the entries and logger set-up.
//!
//! **Touchpoints and operations** — the OS, the devices, the network:
//! - [`uboot_env`] — the U-Boot environment block (CRC32, redundant copies,
//!   `fw_env.config`) read and written natively, behind the [`uboot_env::BootEnv`] trait.
//! - [`mounts`] — what the running system uses: no slot target that is
//!   mounted or holds the root file system is ever written.
//! - [`config`] — `/etc/seesaw/seesaw.toml`.
//! - [`transport`] — HTTPS sources: resuming range streams, timeouts, TLS trust.
//! - [`bundle`] — the one-file bundle (envelope first, then zstd payload): create,
//!   countersign, open from a file or over HTTPS, and the one manifest
//!   verification.
//! - [`blocks`] — the content-addressed block store and index for delta
//!   updates from the running slot.
//! - [`install`] — the streaming install pipeline into the inactive slot.
//! - [`delta`] — planning a delta install and the kept block indexes.
//! - [`journal`] — the install journal that lets an interrupted install resume.
//! - [`health`] — the health gate of a trial boot (systemd's state, units, commands).
//! - [`updater`] — the operations the front ends call (install, status, mark).
//! - [`service`] — the updater as a long-running service: configuration
//!   loaded once, touchpoints injected, explicit reload.
//! - [`progress`] — the one progress display and result document of an install.
//! - [`fleet`] — fleet messages (deployments in, device status out), with
//!   the device link and the operator side as front ends below it.
//!
//! **Front ends** — convert arguments and call the operations:
//! - [`daemon`] — `seesaw daemon`: the systemd service wiring.
//! - [`dbus`] — the `org.seesaw.Updater1` D-Bus interface and its client proxy.
//! - [`fleet::device`] — the device's MQTT link in `seesaw daemon`;
//!   [`fleet::operator`] — `seesaw fleet`.
//! - [`cli`] — the command-line front end; [`client`] — its D-Bus side.

pub mod atomic_file;
pub mod blocks;
pub mod bundle;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod delta;
pub mod digest;
pub mod events;
pub mod failure;
pub mod fleet;
pub mod health;
pub mod install;
pub mod journal;
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

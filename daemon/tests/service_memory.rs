//! The daemon's service (D-Bus interface, boot handling) run in-process on
//! an in-memory bootloader environment and a fixed clock, built once from a
//! loaded configuration: an install over D-Bus flips the in-memory
//! environment and never touches the board's environment file; a changed
//! `seesaw.toml` takes effect on an explicit reload only, and one that does
//! not load is refused with the old one kept.
//!
//! Needs `dbus-daemon` (Debian: dbus-daemon) and root (the policy lets only
//! root own `org.seesaw.Updater1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod support;

use std::sync::Arc;
use std::time::Duration;

use seesaw::config::Config;
use seesaw::service::{FixedClock, Service, SharedMemoryEnv};
use seesaw::uboot_env::{BootEnv, MemoryEnv};
use support::*;
use time::macros::datetime;

fn var(env: &SharedMemoryEnv, name: &str) -> Option<String> {
    env.read_var(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daemon_runs_on_an_in_memory_environment_and_reloads_only_when_asked() {
    let board = Board::new(4);
    let bus = Bus::start(board.dir.path(), "");
    let bundle = board.bundle("v2.bundle", "2.0.0", 1);
    let env_file = board.read("uboot.env");
    let env = SharedMemoryEnv::new(MemoryEnv::new(&[
        ("bootcmd", "run seesaw_boot"),
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ]));
    let config = Config::load(&board.config()).unwrap();
    let service = Service::new(
        &board.config(),
        config,
        Arc::new(env.clone()),
        Arc::new(FixedClock(datetime!(2026-11-21 12:00 UTC))),
    );
    let daemon = tokio::spawn(seesaw::daemon::serve_with(
        service.clone(),
        Some(bus.address.clone()),
    ));
    let api = Api::connect(&bus.address).await;
    for _ in 0..600 {
        if api.has_owner(seesaw::dbus::BUS_NAME).await {
            break;
        }
        assert!(!daemon.is_finished(), "the service stopped: {daemon:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.string_prop("BootSlot").await, "A");
    assert_eq!(api.string_prop("Compatible").await, "test-board");
    assert_eq!(api.string_prop("PrimarySlot").await, "A");
    // Settling the boot gave the committed slot its tries; nothing else.
    assert_eq!(var(&env, "BOOT_A_LEFT").as_deref(), Some("3"));

    api.install(bundle.to_str().unwrap(), false).await.unwrap();
    let op = api
        .wait_operation(Duration::from_secs(300), |op| op != "installing")
        .await;
    assert_eq!(
        op,
        "awaiting-reboot",
        "{}",
        api.string_prop("LastError").await
    );
    assert_eq!(var(&env, "BOOT_ORDER").as_deref(), Some("B A"));
    assert_eq!(var(&env, "BOOT_B_LEFT").as_deref(), Some("3"));
    assert_eq!(api.string_prop("PrimarySlot").await, "B");
    assert_eq!(
        board.read("uboot.env"),
        env_file,
        "the environment file was written"
    );
    assert_eq!(
        board.read("slot-b.img")[..4 << 20],
        board.read("rootfs.img")[..],
        "slot B holds the image"
    );

    // A changed configuration is not picked up by accident...
    let text = std::fs::read_to_string(board.config()).unwrap();
    std::fs::write(
        board.config(),
        text.replace("\"test-board\"", "\"other-board\""),
    )
    .unwrap();
    assert_eq!(api.string_prop("Compatible").await, "test-board");
    // ...only by a reload.
    service.reload().unwrap();
    assert_eq!(api.string_prop("Compatible").await, "other-board");
    // A configuration that does not load is refused; the one in force stays.
    std::fs::write(board.config(), "compatible = [\n").unwrap();
    let err = service.reload().unwrap_err();
    assert_eq!(
        seesaw::failure::Classify::kind(&err),
        seesaw::failure::Kind::Config,
        "{err}"
    );
    assert_eq!(api.string_prop("Compatible").await, "other-board");
    daemon.abort();
}

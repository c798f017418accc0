//! The health gate of a trial boot, end to end: `seesaw daemon` on a real
//! `dbus-daemon` next to a stand-in `org.freedesktop.systemd1` written here
//! (Manager with `SystemState`, `GetUnit`, `StartUnit`; Unit objects with
//! `ActiveState`). Each scenario starts from a board where seesaw installed
//! 2.0.0 into B and U-Boot booted B (a trial boot), and checks the commit or
//! the whole rollback: slot marked bad, reboot requested, U-Boot falling
//! back to A, the restarted daemon reporting why, the version deny-listed.
//! The last scenario has no daemon on B at all: the boot counter alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seesaw::slot::{BootChoice, Slot};
use support::*;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";

/// Lets the stand-in own systemd's name and root talk to it, as on a real
/// system bus.
const SYSTEMD_POLICY: &str = r#"  <policy user="root">
    <allow own="org.freedesktop.systemd1"/>
    <allow send_destination="org.freedesktop.systemd1"/>
  </policy>"#;

#[derive(Default)]
struct Systemd {
    state: Mutex<String>,
    /// unit name -> ActiveState
    units: Mutex<HashMap<String, String>>,
    /// (name, mode) of every StartUnit
    started: Mutex<Vec<(String, String)>>,
    calls: Mutex<Vec<String>>,
}

/// systemd's object path escaping (`app.service` -> `app_2eservice`).
fn unit_path(name: &str) -> String {
    let mut p = format!("{SYSTEMD_PATH}/unit/");
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            p.push(b as char);
        } else {
            p += &format!("_{b:02x}");
        }
    }
    p
}

struct Manager(Arc<Systemd>);

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    #[zbus(property)]
    fn system_state(&self) -> String {
        self.0.calls.lock().unwrap().push("SystemState".into());
        self.0.state.lock().unwrap().clone()
    }

    fn get_unit(&self, name: String) -> zbus::fdo::Result<OwnedObjectPath> {
        self.0.calls.lock().unwrap().push(format!("GetUnit {name}"));
        if self.0.units.lock().unwrap().contains_key(&name) {
            Ok(ObjectPath::try_from(unit_path(&name)).unwrap().into())
        } else {
            Err(zbus::fdo::Error::Failed(format!("Unit {name} not loaded.")))
        }
    }

    fn start_unit(&self, name: String, mode: String) -> OwnedObjectPath {
        self.0
            .calls
            .lock()
            .unwrap()
            .push(format!("StartUnit {name} {mode}"));
        self.0.started.lock().unwrap().push((name, mode));
        ObjectPath::try_from(format!("{SYSTEMD_PATH}/job/1"))
            .unwrap()
            .into()
    }
}

struct Unit {
    systemd: Arc<Systemd>,
    name: String,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl Unit {
    #[zbus(property)]
    fn active_state(&self) -> String {
        self.systemd
            .units
            .lock()
            .unwrap()
            .get(&self.name)
            .cloned()
            .unwrap_or_default()
    }
}

/// Starts the stand-in on `bus` with `state` and `units`.
async fn stand_in(
    bus: &Bus,
    state: &str,
    units: &[(&str, &str)],
) -> (Arc<Systemd>, zbus::Connection) {
    let sd = Arc::new(Systemd::default());
    *sd.state.lock().unwrap() = state.into();
    let mut b = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .serve_at(SYSTEMD_PATH, Manager(sd.clone()))
        .unwrap();
    for (name, active) in units {
        sd.units
            .lock()
            .unwrap()
            .insert(name.to_string(), active.to_string());
        b = b
            .serve_at(
                unit_path(name),
                Unit {
                    systemd: sd.clone(),
                    name: name.to_string(),
                },
            )
            .unwrap();
    }
    let conn = tokio::time::timeout(Duration::from_secs(30), b.name(SYSTEMD).unwrap().build())
        .await
        .expect("stand-in systemd: timed out")
        .expect("stand-in systemd could not own its name");
    (sd, conn)
}

/// A board where seesaw installed 2.0.0 into B (standalone, no daemon) and
/// U-Boot has just booted B: a trial boot. `health` is the `[health]` table.
fn trial_board(health: &str) -> (Board, std::path::PathBuf) {
    let board = Board::new(4);
    let v2 = board.bundle("v2.bundle", "2.0.0", 5);
    // No daemon on the bus given here, so the CLI installs standalone.
    let out = run_bounded(
        std::process::Command::new(seesaw_bin())
            .arg("--config")
            .arg(board.config())
            .arg("--bus-address")
            .arg(format!("unix:path={}", board.path("no-bus.sock").display()))
            .arg("install")
            .arg(&v2)
            .env_remove("SEESAW_BUS_ADDRESS"),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "standalone install: {out:?}");
    assert_eq!(
        board.reboot(),
        BootChoice::Boot {
            slot: Slot::B,
            tries_left: 2
        }
    );
    board.write_config(health);
    (board, v2)
}

fn health(units: &[&str], commands: &[&str], timeout: u64, degraded_ok: bool) -> String {
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[health]\nunits = [{}]\ncommands = [{}]\ntimeout = {timeout}\ndegraded_ok = {degraded_ok}\n",
        list(units),
        list(commands)
    )
}

/// Waits (bounded) until `pred` holds for the state file.
async fn wait_state(
    board: &Board,
    limit: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let s = board.state();
        if pred(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "state.json not {what} after {limit:?}:\n{s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_reboot_requested(sd: &Systemd, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sd.started.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no reboot requested within {limit:?}; calls: {:?}",
            sd.calls.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The trial was committed: pending cleared, floor raised, B has full tries,
/// no reboot.
async fn expect_commit(board: &Board, api: &Api, sd: &Systemd) {
    wait_state(board, Duration::from_secs(60), "committed", |s| {
        s["pending"].is_null() && s["last_result"]["kind"] == "committed"
    })
    .await;
    let s = board.state();
    assert_eq!(s["floor"], 5, "{s:#}");
    assert_eq!(board.var("BOOT_B_LEFT").as_deref(), Some("3"));
    assert_eq!(board.var("BOOT_ORDER").as_deref(), Some("B A"));
    api.wait_operation(Duration::from_secs(10), |o| o == "idle")
        .await;
    assert_eq!(api.string_prop("LastError").await, "");
    assert_eq!(api.string_prop("BootSlot").await, "B");
    assert_eq!(api.string_prop("Version").await, "2.0.0");
    // Give a wrong reboot the chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sd.started.lock().unwrap().is_empty(),
        "a reboot was requested after a commit: {:?}",
        sd.started.lock().unwrap()
    );
}

/// The trial failed: B marked bad, reboot requested; then U-Boot falls back
/// to A and the restarted daemon reports the rollback with `reason_has` in
/// the reason. Returns the new daemon.
async fn expect_rollback(
    board: &Board,
    bus: &Bus,
    api: &Api,
    sd: &Systemd,
    daemon: &mut Daemon,
    reason_has: &str,
    limit: Duration,
) -> Daemon {
    let started = Instant::now();
    wait_reboot_requested(sd, limit).await;
    eprintln!(
        "reboot requested {:.1} s after the trial began",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        *sd.started.lock().unwrap(),
        vec![(
            "reboot.target".to_string(),
            "replace-irreversibly".to_string()
        )]
    );
    assert_eq!(board.var("BOOT_B_LEFT").as_deref(), Some("0"));
    let s = board.state();
    assert!(
        s["pending"]["failure"]
            .as_str()
            .is_some_and(|f| f.contains(reason_has)),
        "{s:#}"
    );
    let live_error = api.string_prop("LastError").await;
    assert!(live_error.contains(reason_has), "LastError {live_error:?}");
    assert_eq!(s["floor"], 0, "the floor was raised for a bad slot: {s:#}");

    // The board goes down; U-Boot skips B (no tries left) and boots A.
    daemon.proc.terminate(Duration::from_secs(10));
    api.wait_name_gone().await;
    assert!(matches!(
        board.reboot(),
        BootChoice::Boot { slot: Slot::A, .. }
    ));
    let new = Daemon::start(board, bus, api).await;
    wait_state(board, Duration::from_secs(30), "rolled back", |s| {
        s["last_result"]["kind"] == "rolled-back"
    })
    .await;
    let s = board.state();
    let message = s["last_result"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(reason_has), "{s:#}");
    assert!(s["pending"].is_null(), "{s:#}");
    assert!(
        s["failed_versions"]
            .as_array()
            .unwrap()
            .contains(&"2.0.0".into()),
        "{s:#}"
    );
    let live_error = api.string_prop("LastError").await;
    assert!(
        live_error.contains(reason_has) && live_error.contains("rolled back"),
        "LastError {live_error:?}"
    );
    assert_eq!(api.string_prop("Operation").await, "idle");
    assert_eq!(api.string_prop("BootSlot").await, "A");
    assert_eq!(api.string_prop("PrimarySlot").await, "A");
    // Only one reboot, from the trial.
    assert_eq!(sd.started.lock().unwrap().len(), 1);
    new
}

struct Setup {
    board: Board,
    bundle: std::path::PathBuf,
    bus: Bus,
    api: Api,
    sd: Arc<Systemd>,
    _sd_conn: zbus::Connection,
    daemon: Daemon,
}

async fn setup(health_toml: &str, state: &str, units: &[(&str, &str)]) -> Setup {
    let (board, bundle) = trial_board(health_toml);
    let bus = Bus::start(board.dir.path(), SYSTEMD_POLICY);
    let api = Api::connect(&bus.address).await;
    let (sd, sd_conn) = stand_in(&bus, state, units).await;
    let daemon = Daemon::start(&board, &bus, &api).await;
    Setup {
        board,
        bundle,
        bus,
        api,
        sd,
        _sd_conn: sd_conn,
        daemon,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_system_with_active_units_and_passing_commands_is_committed() {
    let s = setup(
        &health(
            &["app.service", "net-online.target"],
            &["true", "exit 0"],
            60,
            false,
        ),
        "running",
        &[("app.service", "active"), ("net-online.target", "active")],
    )
    .await;
    expect_commit(&s.board, &s.api, &s.sd).await;
    let calls = s.sd.calls.lock().unwrap().clone();
    assert!(
        calls.contains(&"GetUnit app.service".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"GetUnit net-online.target".to_string()),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_system_that_finishes_starting_in_time_is_committed() {
    let s = setup(&health(&[], &[], 30, false), "starting", &[]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        s.board.state()["pending"].is_object(),
        "committed while starting"
    );
    assert_eq!(s.api.string_prop("Operation").await, "trial");
    *s.sd.state.lock().unwrap() = "running".into();
    expect_commit(&s.board, &s.api, &s.sd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn degraded_is_rolled_back_deny_listed_and_needs_force() {
    let mut s = setup(
        &health(&["app.service"], &["true"], 60, false),
        "degraded",
        &[("app.service", "active")],
    )
    .await;
    let _d = expect_rollback(
        &s.board,
        &s.bus,
        &s.api,
        &s.sd,
        &mut s.daemon,
        "degraded",
        Duration::from_secs(60),
    )
    .await;

    // The same bundle again: refused (deny-listed), exit status 3.
    let before = s.board.snapshot();
    let mut c = s.board.cli(&s.bus);
    c.args(["install", "--json"]).arg(&s.bundle);
    let out = run_async(c, Duration::from_secs(300)).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text(&out.stderr).contains("2.0.0"), "{out:?}");
    assert!(
        s.board.snapshot() == before,
        "a refused install changed the board"
    );
    // With --force it is accepted.
    let mut c = s.board.cli(&s.bus);
    c.args(["install", "--force"]).arg(&s.bundle);
    let out = run_async(c, Duration::from_secs(300)).await;
    assert!(out.status.success(), "install --force: {out:?}");
    assert_eq!(s.board.var("BOOT_ORDER").as_deref(), Some("B A"));
    assert_eq!(s.board.var("BOOT_B_LEFT").as_deref(), Some("3"));
    assert_eq!(s.api.string_prop("Operation").await, "awaiting-reboot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_system_still_starting_at_the_timeout_is_rolled_back() {
    let mut s = setup(&health(&[], &[], 3, false), "starting", &[]).await;
    let t = Instant::now();
    let _d = expect_rollback(
        &s.board,
        &s.bus,
        &s.api,
        &s.sd,
        &mut s.daemon,
        "timed out",
        Duration::from_secs(60),
    )
    .await;
    eprintln!("timeout path took {:.1} s", t.elapsed().as_secs_f64());
    let s2 = s.board.state();
    assert!(
        s2["last_result"]["message"]
            .as_str()
            .unwrap()
            .contains("starting"),
        "{s2:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_unit_is_rolled_back_naming_it() {
    let mut s = setup(
        &health(&["app.service", "db.service"], &[], 60, false),
        "running",
        &[("app.service", "active"), ("db.service", "failed")],
    )
    .await;
    let _d = expect_rollback(
        &s.board,
        &s.bus,
        &s.api,
        &s.sd,
        &mut s.daemon,
        "db.service",
        Duration::from_secs(60),
    )
    .await;
    let st = s.board.state();
    assert!(
        st["last_result"]["message"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{st:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_command_is_rolled_back_with_its_stderr() {
    let mut s = setup(
        &health(
            &[],
            &["true", "echo self-test: disk missing >&2; exit 1"],
            60,
            false,
        ),
        "running",
        &[],
    )
    .await;
    let _d = expect_rollback(
        &s.board,
        &s.bus,
        &s.api,
        &s.sd,
        &mut s.daemon,
        "self-test: disk missing",
        Duration::from_secs(60),
    )
    .await;
    let st = s.board.state();
    assert!(
        st["last_result"]["message"]
            .as_str()
            .unwrap()
            .contains("exited with 1"),
        "{st:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn degraded_is_committed_when_degraded_ok() {
    let s = setup(
        &health(&["app.service"], &["true"], 60, true),
        "degraded",
        &[("app.service", "active")],
    )
    .await;
    expect_commit(&s.board, &s.api, &s.sd).await;
}

/// No daemon ever runs on B (it hangs before userspace, say): U-Boot's
/// counter gives B three boots, then falls back to A, where the daemon
/// reports the rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_that_never_confirms_falls_back_after_three_boots() {
    let (board, bundle) = trial_board(&health(&[], &[], 60, false));
    // trial_board booted B once; two more boots of B, then A.
    let boots: Vec<BootChoice> = (0..3).map(|_| board.reboot()).collect();
    assert_eq!(
        boots,
        vec![
            BootChoice::Boot {
                slot: Slot::B,
                tries_left: 1
            },
            BootChoice::Boot {
                slot: Slot::B,
                tries_left: 0
            },
            BootChoice::Boot {
                slot: Slot::A,
                tries_left: 2
            },
        ]
    );
    let bus = Bus::start(board.dir.path(), SYSTEMD_POLICY);
    let api = Api::connect(&bus.address).await;
    let (sd, _conn) = stand_in(&bus, "running", &[]).await;
    let _daemon = Daemon::start(&board, &bus, &api).await;
    wait_state(&board, Duration::from_secs(30), "rolled back", |s| {
        s["last_result"]["kind"] == "rolled-back"
    })
    .await;
    let s = board.state();
    assert!(
        s["last_result"]["message"]
            .as_str()
            .unwrap()
            .contains("new slot did not confirm after 3 boots"),
        "{s:#}"
    );
    assert!(s["pending"].is_null());
    assert!(s["failed_versions"]
        .as_array()
        .unwrap()
        .contains(&"2.0.0".into()));
    assert_eq!(s["floor"], 0);
    let e = api.string_prop("LastError").await;
    assert!(
        e.contains("new slot did not confirm after 3 boots"),
        "{e:?}"
    );
    assert_eq!(api.string_prop("Operation").await, "idle");
    assert!(sd.started.lock().unwrap().is_empty(), "no reboot from A");
    // Deny-listed: refused, then forced.
    let mut c = board.cli(&bus);
    c.arg("install").arg(&bundle);
    let out = run_async(c, Duration::from_secs(300)).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let mut c = board.cli(&bus);
    c.args(["install", "--force"]).arg(&bundle);
    let out = run_async(c, Duration::from_secs(300)).await;
    assert!(out.status.success(), "{out:?}");
}

/// Between the failed health check and the reboot (or if the reboot never
/// happens), `seesaw status` must show the verdict: the lifecycle reports a
/// `marked-bad` result for it, and reports are documented as already saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_health_verdict_is_the_last_result_before_the_reboot() {
    let s = setup(&health(&[], &[], 60, false), "degraded", &[]).await;
    wait_reboot_requested(&s.sd, Duration::from_secs(60)).await;
    let st = s.board.state();
    assert_eq!(
        st["last_result"]["kind"], "marked-bad",
        "state.json after the failed health check:\n{st:#}"
    );
}

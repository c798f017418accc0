//! Fleet push over MQTT against a real Mosquitto (Debian package) started
//! here on 127.0.0.1: TLS with `require_certificate`, a CA made at test
//! time, the certificate's common name as user name, and per-device ACLs.
//!
//! - The ACLs, checked with `mosquitto_pub` / `mosquitto_sub` (clients we
//!   did not write): a device reads only its own and its groups' deployment
//!   topics and writes only its own status; a certificate from another CA
//!   does not get in.
//! - End to end with the real `seesaw daemon` on a private `dbus-daemon`
//!   board and the bundle on the fault-injecting HTTPS server, driven by the
//!   real `seesaw fleet publish|clear|status`: a push installs and the
//!   statuses arrive; the same deployment is not run again after a restart;
//!   a retained deployment reaches a device that connects later; the
//!   broker killed and restarted in the middle of an install; a bundle
//!   signed by an unknown key and a malformed deployment are refused or
//!   ignored and reported, changing nothing.
//! - 1,000 simulated devices (each a rumqttc client with its own
//!   certificate) receive a group deployment and answer with a status that
//!   `seesaw fleet status` lists. Figures are printed (`--nocapture`).
//!
//! Benchmarks (`#[ignore]`, run by `tests/bench-fleet.sh`): push to
//! download-start latency, and the load test with more devices.
//!
//! Needs `mosquitto`, `mosquitto-clients`, `dbus-daemon` and root (the
//! daemon owns its bus name as uid 0).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
#[path = "support/https_server.rs"]
mod https_server;
#[path = "support/mqtt_broker.rs"]
mod mqtt_broker;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use https_server::{Server, ServerOptions, TestPki};
use mqtt_broker::{acl, Broker, ClientCert, FleetPki};
use serde_json::Value as Json;
use support::*;

const DEVICE: &str = "dev-1";
const GROUP: &str = "canary";

/// A device board with the daemon's bus, an HTTPS server for bundles and a
/// broker.
struct Fleet {
    board: Board,
    bus: Bus,
    pki: FleetPki,
    operator: ClientCert,
    broker: Broker,
    https: Server,
    _https_pki: TestPki,
}

impl Fleet {
    fn new(image_mib: u64, extra_acl: &[(&str, &[&str])]) -> Fleet {
        let board = Board::new(image_mib);
        let pki = FleetPki::generate(&board.path("fleet-pki"));
        let operator = pki.client("operator");
        let device = pki.client(DEVICE);
        let mut groups: Vec<(&str, &[&str])> = vec![(DEVICE, &[GROUP])];
        groups.extend_from_slice(extra_acl);
        let broker = Broker::start(&board.path("broker"), &pki, &acl(&groups));
        let https_pki = TestPki::generate();
        let www = board.path("www");
        std::fs::create_dir_all(&www).unwrap();
        https_pki.write_to(&{
            let d = board.path("https-pki");
            std::fs::create_dir_all(&d).unwrap();
            d
        });
        let https = Server::start(www, ServerOptions::https(&https_pki));
        let bus = Bus::start(board.dir.path(), "");
        let f = Fleet {
            board,
            bus,
            pki,
            operator,
            broker,
            https,
            _https_pki: https_pki,
        };
        f.write_config(&device, &[GROUP], "");
        f
    }

    /// The board's configuration with `[network]` for the HTTPS server and
    /// `[fleet]` for the broker; no `device_id`: the certificate's common
    /// name is the id.
    fn write_config(&self, device: &ClientCert, groups: &[&str], fleet_extra: &str) {
        let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
        let tables = format!(
            "[network]\nca = \"https-pki/ca.pem\"\nconnect_timeout = 5\nread_timeout = 10\n\
             min_throughput = 1024\nthroughput_window = 20\nretries = 5\n\
             [fleet]\nbroker = \"{broker}\"\nca = \"{ca}\"\nclient_cert = \"{cert}\"\n\
             client_key = \"{key}\"\nkeepalive = 5\nprogress_interval_ms = 1000\n\
             reconnect_min_ms = 200\nreconnect_max_ms = 2000\n{fleet_extra}",
            broker = self.broker.url(),
            ca = self.pki.ca.display(),
            cert = device.cert.display(),
            key = device.key.display(),
        );
        board_files::ConfigFile {
            top: &format!("groups = [{}]\n", groups.join(", ")),
            tables: &tables,
            ..Default::default()
        }
        .write(&self.board.config());
    }

    /// `seesaw fleet SUBCOMMAND` as the operator, with the broker options.
    fn fleet_cli(&self, sub: &str) -> Command {
        let mut c = Command::new(seesaw_bin());
        c.args(["fleet", sub, "--broker", &self.broker.url()])
            .arg("--ca")
            .arg(&self.pki.ca)
            .arg("--cert")
            .arg(&self.operator.cert)
            .arg("--key")
            .arg(&self.operator.key);
        c
    }

    /// `seesaw fleet publish --device dev-1 …`; returns the deployment id.
    fn publish(&self, target: (&str, &str), url: &str, id: Option<&str>) -> String {
        let mut c = self.fleet_cli("publish");
        c.args([target.0, target.1, "--manifest-url", url]);
        if let Some(id) = id {
            c.args(["--deployment-id", id]);
        }
        let out = run_bounded(&mut c, Duration::from_secs(60));
        assert!(out.status.success(), "fleet publish: {out:?}");
        text(&out.stdout).trim().to_string()
    }

    /// The statuses `seesaw fleet status --json` lists.
    fn statuses(&self) -> Vec<Json> {
        let mut c = self.fleet_cli("status");
        c.args(["--json", "--settle-ms", "300"]);
        let out = run_bounded(&mut c, Duration::from_secs(120));
        assert!(out.status.success(), "fleet status: {out:?}");
        serde_json::from_slice::<Vec<Json>>(&out.stdout)
            .unwrap_or_else(|e| panic!("fleet status --json: {e}: {}", text(&out.stdout)))
    }

    fn status_of(&self, device: &str) -> Option<Json> {
        self.statuses()
            .into_iter()
            .find(|s| s["device_id"] == device)
    }

    /// Polls `seesaw fleet status` until `device`'s status satisfies `pred`.
    async fn wait_status(
        &self,
        device: &str,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Json) -> bool,
    ) -> Json {
        let deadline = Instant::now() + limit;
        loop {
            let s = tokio::task::block_in_place(|| self.status_of(device));
            if let Some(s) = &s {
                if pred(s) {
                    return s.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "status of {device} never showed {what} within {limit:?}; last: {s:?}\n{}",
                self.broker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Puts a bundle on the HTTPS server; returns its URL.
    fn serve(&self, bundle: &Path, name: &str) -> String {
        std::fs::copy(bundle, self.board.path("www").join(name)).unwrap();
        self.https.url(&format!("/{name}"))
    }
}

/// A bundle of the board's image signed by a key the device does not trust.
fn unknown_key_bundle(board: &Board) -> PathBuf {
    let out = run_bounded(
        Command::new(seesaw_bin())
            .args(["keygen", "--out"])
            .arg(board.path("keys/stranger")),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let bundle = board.path("stranger.bundle");
    let o = run_bounded(
        Command::new(seesaw_bin())
            .args(["bundle", "create", "--image"])
            .arg(board.path("rootfs.img"))
            .args(["--compatible", "test-board", "--version", "6.6.6"])
            .args(["--security-version", "9", "--zstd-level", "1", "--key"])
            .arg(board.path("keys/stranger.pem"))
            .arg("--output")
            .arg(&bundle),
        Duration::from_secs(300),
    );
    assert!(o.status.success(), "{o:?}");
    bundle
}

fn slot_b_holds_image(board: &Board) -> bool {
    let img = board.read("rootfs.img");
    let b = board.read("slot-b.img");
    b.len() >= img.len() && b[..img.len()] == img[..]
}

// ---------------------------------------------------------------------------
// ACLs, checked with clients we did not write
// ---------------------------------------------------------------------------

#[test]
fn acls_confine_each_device_to_its_own_topics() {
    let dir = tempfile::tempdir().unwrap();
    let pki = FleetPki::generate(&dir.path().join("pki"));
    let op = pki.client("operator");
    let dev1 = pki.client("dev-1");
    let dev2 = pki.client("dev-2");
    let broker = Broker::start(
        &dir.path().join("broker"),
        &pki,
        &acl(&[("dev-1", &["canary"]), ("dev-2", &["beta"])]),
    );
    let ca = &pki.ca;
    let d1 = r#"{"deployment_id":"d1","manifest_url":"https://h/m"}"#;
    let canary = r#"{"deployment_id":"c1","manifest_url":"https://h/m"}"#;
    let beta = r#"{"deployment_id":"b1","manifest_url":"https://h/m"}"#;
    for (topic, msg) in [
        ("seesaw/v1/devices/dev-1/deployment", d1),
        ("seesaw/v1/groups/canary/deployment", canary),
        ("seesaw/v1/groups/beta/deployment", beta),
    ] {
        let o = broker.mosquitto_pub(ca, &op, topic, msg, true);
        assert!(o.status.success(), "operator publishes {topic}: {o:?}");
    }

    // dev-1 reads its own deployment and its group's.
    let (_, got) = broker.mosquitto_sub(ca, &dev1, "seesaw/v1/devices/dev-1/deployment", 1, 5);
    assert_eq!(got, [d1]);
    let (_, got) = broker.mosquitto_sub(ca, &dev1, "seesaw/v1/groups/canary/deployment", 1, 5);
    assert_eq!(got, [canary]);
    // dev-2 reads neither dev-1's deployment nor the canary group's, nor
    // everything with a wildcard (only its own group arrives).
    let (_, got) = broker.mosquitto_sub(ca, &dev2, "seesaw/v1/devices/dev-1/deployment", 1, 3);
    assert!(got.is_empty(), "dev-2 read dev-1's deployment: {got:?}");
    let (_, got) = broker.mosquitto_sub(ca, &dev2, "seesaw/v1/groups/canary/deployment", 1, 3);
    assert!(got.is_empty(), "dev-2 read the canary deployment: {got:?}");
    let (_, got) = broker.mosquitto_sub(ca, &dev2, "seesaw/v1/#", 10, 3);
    assert_eq!(got, [beta], "dev-2 with a wildcard");

    // dev-2 cannot write dev-1's status, nor a deployment; dev-1 can write its own status.
    let forged = r#"{"format":1,"device_id":"dev-1","state":"online","version":"forged"}"#;
    broker.mosquitto_pub(ca, &dev2, "seesaw/v1/devices/dev-1/status", forged, true);
    broker.mosquitto_pub(
        ca,
        &dev2,
        "seesaw/v1/devices/dev-2/deployment",
        r#"{"deployment_id":"evil","manifest_url":"https://evil/m"}"#,
        true,
    );
    let (_, got) = broker.mosquitto_sub(ca, &op, "seesaw/v1/devices/dev-1/status", 1, 3);
    assert!(got.is_empty(), "dev-2 wrote dev-1's status: {got:?}");
    let (_, got) = broker.mosquitto_sub(ca, &op, "seesaw/v1/devices/dev-2/deployment", 1, 3);
    assert!(got.is_empty(), "dev-2 wrote its own deployment: {got:?}");
    let own = r#"{"format":1,"device_id":"dev-1","state":"online"}"#;
    let o = broker.mosquitto_pub(ca, &dev1, "seesaw/v1/devices/dev-1/status", own, true);
    assert!(o.status.success(), "{o:?}");
    let (_, got) = broker.mosquitto_sub(ca, &op, "seesaw/v1/devices/dev-1/status", 1, 5);
    assert_eq!(got, [own]);

    // A certificate of another CA (same common name) does not get in.
    let foreign = pki.foreign_client("dev-1");
    let (out, got) = broker.mosquitto_sub(ca, &foreign, "seesaw/v1/devices/dev-1/deployment", 1, 3);
    assert!(got.is_empty() && !out.status.success(), "{out:?}");
}

// ---------------------------------------------------------------------------
// End to end with the daemon
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_installs_reports_and_is_not_rerun_after_a_restart() {
    let f = Fleet::new(4, &[]);
    let url = f.serve(&f.board.bundle("v2.bundle", "2.0.0", 5), "v2.bundle");
    let api = Api::connect(&f.bus.address).await;
    let rec = Recorder::start(&api).await;
    let mut daemon = Daemon::start(&f.board, &f.bus, &api).await;

    // At connect the device publishes its status: id from the certificate.
    let s = f
        .wait_status(DEVICE, Duration::from_secs(60), "online idle", |s| {
            s["state"] == "online" && s["operation"] == "idle"
        })
        .await;
    assert_eq!(s["booted_slot"], "A");
    assert_eq!(s["compatible"], "test-board");
    assert_eq!(s["groups"], serde_json::json!([GROUP]));

    let pushed = Instant::now();
    let id = tokio::task::block_in_place(|| f.publish(("--device", DEVICE), &url, Some("dep-1")));
    assert_eq!(id, "dep-1");
    let (done_at, result, message) = rec.completed(0, Duration::from_secs(120)).await;
    assert_eq!(result, 0, "{message}");
    eprintln!(
        "push to Completed: {:.2} s (4 MiB image)",
        (done_at - pushed).as_secs_f64()
    );
    assert!(slot_b_holds_image(&f.board));
    assert_eq!(f.board.var("BOOT_ORDER").as_deref(), Some("B A"));
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "installed", |s| {
            s["last_result"] == "installed" && s["operation"] == "awaiting-reboot"
        })
        .await;
    assert_eq!(s["last_deployment_id"], "dep-1");
    assert_eq!(s["primary_slot"], "B");
    assert_eq!(s["slots"]["B"]["version"], "2.0.0");
    let requests = f.https.requests();
    assert!(requests > 0);

    // Restart: the retained deployment comes again and is not run again.
    let before = f.board.snapshot();
    let first_time = s["time"].as_str().unwrap().to_string();
    daemon.proc.terminate(Duration::from_secs(30));
    api.wait_name_gone().await;
    // The broker publishes the last will: offline, still saying what runs.
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "offline", |s| {
            s["state"] == "offline"
        })
        .await;
    assert_eq!(s["slots"]["B"]["version"], "2.0.0");
    assert_eq!(s["last_result"], "installed");
    let mut daemon = Daemon::start(&f.board, &f.bus, &api).await;
    f.wait_status(DEVICE, Duration::from_secs(60), "a new status", |s| {
        s["state"] == "online" && s["time"].as_str() != Some(first_time.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(f.https.requests(), requests, "the deployment ran again");
    assert_eq!(f.board.snapshot(), before);
    let record: Json =
        serde_json::from_slice(&f.board.read("data/fleet.json")).expect("data/fleet.json");
    assert_eq!(record["last_deployment_id"], "dep-1");
    assert_eq!(record["result"], "installed");

    // The status table names the device, its version and the result.
    let out = run_bounded(
        f.fleet_cli("status").args(["--settle-ms", "300"]),
        Duration::from_secs(60),
    );
    let table = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let row = table.lines().find(|l| l.starts_with(DEVICE)).expect(&table);
    assert!(
        row.contains("installed") && row.contains("A (next B)"),
        "{table}"
    );

    // Clearing removes the retained deployment.
    let out = run_bounded(
        f.fleet_cli("clear").args(["--device", DEVICE]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let (_, got) = f.broker.mosquitto_sub(
        &f.pki.ca,
        &f.operator,
        "seesaw/v1/devices/dev-1/deployment",
        1,
        2,
    );
    assert!(got.is_empty(), "still retained: {got:?}");

    // The board reboots into B and the new slot is committed: the fleet
    // sees the lifecycle's result, newer than the deployment's.
    daemon.proc.terminate(Duration::from_secs(30));
    api.wait_name_gone().await;
    f.board.reboot();
    let out = run_bounded(
        f.board.cli(&f.bus).arg("mark-good"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "mark-good: {out:?}");
    let _daemon = Daemon::start(&f.board, &f.bus, &api).await;
    let s = f
        .wait_status(DEVICE, Duration::from_secs(60), "committed", |s| {
            s["state"] == "online" && s["last_result"] == "committed"
        })
        .await;
    assert_eq!(s["booted_slot"], "B");
    assert_eq!(s["version"], "2.0.0");
    assert_eq!(s["operation"], "idle");
    assert_eq!(s["last_deployment_id"], "dep-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_group_deployment_reaches_a_device_that_connects_later() {
    let f = Fleet::new(4, &[]);
    let url = f.serve(&f.board.bundle("v2.bundle", "2.0.0", 5), "v2.bundle");
    // Published while the device is off.
    let id = tokio::task::block_in_place(|| f.publish(("--group", GROUP), &url, None));
    assert!(!id.is_empty());
    let api = Api::connect(&f.bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&f.board, &f.bus, &api).await;
    let (_, result, message) = rec.completed(0, Duration::from_secs(120)).await;
    assert_eq!(result, 0, "{message}");
    assert!(slot_b_holds_image(&f.board));
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "installed", |s| {
            s["last_result"] == "installed"
        })
        .await;
    assert_eq!(s["last_deployment_id"], id.as_str());

    // The operator marks the new slot bad before the reboot: 2.0.0 is now
    // deny-listed, and a new deployment of it is refused with that reason.
    api.mark("bad", "B").await.expect("Mark bad B");
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "deny-listed", |s| {
            s["failed_versions"] == serde_json::json!(["2.0.0"])
        })
        .await;
    assert_eq!(s["primary_slot"], "A");
    let before = f.board.snapshot();
    let from = rec.len();
    tokio::task::block_in_place(|| f.publish(("--group", GROUP), &url, Some("again")));
    let (_, result, message) = rec.completed(from, Duration::from_secs(60)).await;
    assert_eq!(result, 3, "{message}");
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "refused", |s| {
            s["last_deployment_id"] == "again" && s["last_result"] == "refused"
        })
        .await;
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("deny-listed"), "{reason}");
    assert_eq!(f.board.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarted_mid_install_loses_no_status() {
    let mut f = Fleet::new(8, &[]);
    let url = f.serve(&f.board.bundle("v2.bundle", "2.0.0", 5), "v2.bundle");
    let api = Api::connect(&f.bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&f.board, &f.bus, &api).await;
    f.wait_status(DEVICE, Duration::from_secs(60), "online", |s| {
        s["state"] == "online"
    })
    .await;
    // About 4 MiB stored at 256 KiB/s: the install takes about 16 s.
    f.https.with_faults(|x| {
        x.trickle(256 * 1024);
    });
    tokio::task::block_in_place(|| f.publish(("--device", DEVICE), &url, Some("dep-slow")));
    f.wait_status(DEVICE, Duration::from_secs(30), "installing", |s| {
        s["operation"] == "installing"
    })
    .await;
    // Progress reaches the fleet, throttled to one status a second
    // (progress_interval_ms = 1000): a lower bound, safe on a slow machine.
    let (_, lines) = tokio::task::block_in_place(|| {
        f.broker.mosquitto_sub(
            &f.pki.ca,
            &f.operator,
            "seesaw/v1/devices/dev-1/status",
            4,
            20,
        )
    });
    let progress: Vec<(time::OffsetDateTime, u64)> = lines
        .iter()
        .map(|l| serde_json::from_str::<Json>(l).unwrap())
        .filter(|s| s["operation"] == "installing")
        .map(|s| {
            let t = time::OffsetDateTime::parse(
                s["time"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            (t, s["bytes_done"].as_u64().unwrap())
        })
        .collect();
    assert!(progress.len() >= 3, "progress statuses: {lines:?}");
    for w in progress.windows(2) {
        assert!(w[1].1 >= w[0].1, "bytes_done went back: {lines:?}");
        assert!(
            w[1].0 - w[0].0 >= time::Duration::milliseconds(900),
            "progress not throttled: {lines:?}"
        );
    }
    assert!(
        progress.last().unwrap().1 > progress[0].1,
        "no progress: {lines:?}"
    );
    // The broker dies with the install running; the device's last will says offline.
    assert_eq!(api.string_prop("Operation").await, "installing");
    tokio::task::block_in_place(|| f.broker.kill());
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| f.broker.restart());
    eprintln!("broker down for {:.1} s", outage.elapsed().as_secs_f64());
    let (_, result, message) = rec.completed(0, Duration::from_secs(120)).await;
    assert_eq!(result, 0, "{message}");
    assert!(slot_b_holds_image(&f.board));
    let s = f
        .wait_status(
            DEVICE,
            Duration::from_secs(60),
            "installed after the outage",
            |s| s["last_result"] == "installed" && s["state"] == "online",
        )
        .await;
    assert_eq!(s["last_deployment_id"], "dep-slow");
    assert_eq!(s["operation"], "awaiting-reboot");
    assert!(
        f.board.logs().contains("fleet: lost the broker"),
        "the daemon did not notice the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_and_malformed_deployments_are_refused_and_reported() {
    let f = Fleet::new(4, &[]);
    let url = f.serve(&unknown_key_bundle(&f.board), "stranger.bundle");
    let api = Api::connect(&f.bus.address).await;
    let rec = Recorder::start(&api).await;
    let mut daemon = Daemon::start(&f.board, &f.bus, &api).await;
    f.wait_status(DEVICE, Duration::from_secs(60), "online", |s| {
        s["state"] == "online"
    })
    .await;
    let before = f.board.snapshot();
    let state_before = f.board.state();

    // A malformed deployment: ignored, reported, nothing fetched.
    let o = f.broker.mosquitto_pub(
        &f.pki.ca,
        &f.operator,
        "seesaw/v1/devices/dev-1/deployment",
        r#"{"deployment_id":"x","manifest_url":"https://h/m","surprise":true}"#,
        true,
    );
    assert!(o.status.success());
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "ignored", |s| {
            s["last_result"] == "ignored"
        })
        .await;
    assert!(
        s["reason"].as_str().unwrap().contains("unknown field"),
        "{s}"
    );
    assert_eq!(f.https.requests(), 0);
    assert_eq!(f.board.snapshot(), before);

    // Signed by an unknown key: refused by the same checks as a manual
    // install; the reason reaches the fleet.
    tokio::task::block_in_place(|| f.publish(("--device", DEVICE), &url, Some("dep-stranger")));
    let (_, result, message) = rec.completed(0, Duration::from_secs(60)).await;
    assert_eq!(result, 3, "{message}");
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "refused", |s| {
            s["last_result"] == "refused"
        })
        .await;
    assert_eq!(s["last_deployment_id"], "dep-stranger");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("release"),
        "reason names the role: {reason}"
    );
    assert_eq!(
        f.board.snapshot(),
        before,
        "slots, environment, state changed"
    );
    assert_eq!(f.board.state(), state_before);

    // The same bundle's envelope carried in the deployment: refused before
    // anything is fetched.
    let requests = f.https.requests();
    let envelope = f.board.path("stranger-envelope.json");
    let raw = f.board.read("stranger.bundle");
    let len = u64::from_le_bytes(raw[8..16].try_into().unwrap()) as usize;
    std::fs::write(&envelope, &raw[16..16 + len]).unwrap();
    let out = run_bounded(
        f.fleet_cli("publish")
            .args(["--device", DEVICE, "--manifest-url", &url])
            .args(["--deployment-id", "dep-envelope", "--envelope"])
            .arg(&envelope),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let s = f
        .wait_status(DEVICE, Duration::from_secs(30), "envelope refused", |s| {
            s["last_deployment_id"] == "dep-envelope" && s["last_result"] == "refused"
        })
        .await;
    assert!(s["reason"].as_str().unwrap().contains("envelope"), "{s}");
    assert_eq!(f.https.requests(), requests, "fetched despite the envelope");
    assert_eq!(f.board.snapshot(), before);

    // A daemon that dies without a word: the broker publishes its last
    // will, the status as of its connection, marked offline.
    daemon.proc.kill9();
    let s = f
        .wait_status(
            DEVICE,
            Duration::from_secs(60),
            "offline (last will)",
            |s| s["state"] == "offline",
        )
        .await;
    assert_eq!(s["compatible"], "test-board");
    assert_eq!(s["booted_slot"], "A");
    assert_eq!(s["slots"]["A"]["tries_left"], 3);
}

// ---------------------------------------------------------------------------
// The operator's command line on bad input
// ---------------------------------------------------------------------------

#[test]
fn fleet_cli_refuses_bad_input_with_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let pki = FleetPki::generate(&dir.path().join("pki"));
    let op = pki.client("operator");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tls = |c: &mut Command| {
        c.arg("--ca")
            .arg(&pki.ca)
            .arg("--cert")
            .arg(&op.cert)
            .arg("--key")
            .arg(&op.key);
    };
    let broker = format!("mqtts://127.0.0.1:{closed}");
    let cases: Vec<(Vec<String>, bool, i32, &str)> = vec![
        // (arguments, with TLS files, exit status, words in the error)
        (
            vec![
                "publish".into(),
                "--manifest-url".into(),
                "https://h/m".into(),
            ],
            true,
            2,
            "--device",
        ),
        (
            vec![
                "publish".into(),
                "--device".into(),
                "a/b".into(),
                "--manifest-url".into(),
                "https://h/m".into(),
            ],
            true,
            2,
            "invalid device id",
        ),
        (
            vec![
                "publish".into(),
                "--group".into(),
                "g".into(),
                "--manifest-url".into(),
                "file:///etc/passwd".into(),
            ],
            true,
            2,
            "manifest URL",
        ),
        (
            vec![
                "publish".into(),
                "--group".into(),
                "g".into(),
                "--manifest-url".into(),
                "https://h/m".into(),
                "--deployment-id".into(),
                "x y".into(),
            ],
            true,
            2,
            "deployment",
        ),
        (
            vec!["clear".into(), "--group".into(), "g".into()],
            false,
            4,
            "--ca",
        ),
        (vec!["status".into()], true, 9, "broker"),
    ];
    for (args, with_tls, want, words) in cases {
        let mut c = Command::new(seesaw_bin());
        c.arg("fleet")
            .arg(&args[0])
            .args(["--broker", &broker, "--timeout", "5"]);
        c.args(&args[1..]);
        if with_tls {
            tls(&mut c);
        }
        c.env_remove("SEESAW_FLEET_CA")
            .env_remove("SEESAW_FLEET_CERT")
            .env_remove("SEESAW_FLEET_KEY");
        let out = run_bounded(&mut c, Duration::from_secs(60));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
    let bad_url = run_bounded(
        Command::new(seesaw_bin()).args(["fleet", "status", "--broker", "https://h"]),
        Duration::from_secs(60),
    );
    assert_eq!(bad_url.status.code(), Some(2), "{bad_url:?}");
    assert!(text(&bad_url.stderr).contains("invalid broker URL"));
}

// ---------------------------------------------------------------------------
// Many devices on one broker
// ---------------------------------------------------------------------------

/// Figures of one load run.
struct LoadFigures {
    devices: usize,
    certs_s: f64,
    connect_s: f64,
    fanout_s: f64,
    statuses_acked_s: f64,
    fleet_status_s: f64,
}

/// `n` simulated devices (rumqttc, own certificate each, group `load`)
/// receive one group deployment and answer with a status; `seesaw fleet
/// status` must list all of them with that deployment id.
async fn load_run(n: usize) -> LoadFigures {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let pki = FleetPki::generate(&dir.path().join("pki"));
    let op = pki.client("operator");
    let names: Vec<String> = (0..n).map(|i| format!("sim-{i:05}")).collect();
    let certs: Vec<ClientCert> = names.iter().map(|c| pki.client(c)).collect();
    let certs_s = t.elapsed().as_secs_f64();
    let groups: Vec<(&str, &[&str])> = names.iter().map(|c| (c.as_str(), &["load"][..])).collect();
    let broker = Broker::start(&dir.path().join("broker"), &pki, &acl(&groups));
    let ca = pki.ca.clone();
    let url = broker.url();

    let subscribed = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let last_received = Arc::new(std::sync::Mutex::new(Instant::now()));
    let last_acked = Arc::new(std::sync::Mutex::new(Instant::now()));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in certs {
        let fleet = seesaw::config::FleetConfig {
            broker: url.clone(),
            ca: ca.clone(),
            client_cert: c.cert.clone(),
            client_key: c.key.clone(),
            keepalive: 60,
            progress_interval_ms: 1000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 2000,
        };
        let id = seesaw::fleet::device::Identity {
            device_id: c.cn.clone(),
            groups: vec!["load".into()],
        };
        let will = seesaw::fleet::DeviceStatus {
            format: 1,
            device_id: c.cn.clone(),
            state: "online".into(),
            ..Default::default()
        };
        let opts = seesaw::fleet::device::mqtt_options(&fleet, &id, &will).unwrap();
        let (subscribed, received, acked) = (subscribed.clone(), received.clone(), acked.clone());
        let (last_received, last_acked) = (last_received.clone(), last_acked.clone());
        tasks.push(tokio::spawn(async move {
            use rumqttc::{Event, Packet, QoS};
            let (client, mut el) = rumqttc::AsyncClient::new(opts, 16);
            let mut status_pkid_sent = false;
            let mut done = false;
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client
                            .subscribe_many([
                                rumqttc::SubscribeFilter::new(
                                    seesaw::fleet::device_deployment_topic(&id.device_id),
                                    QoS::AtLeastOnce,
                                ),
                                rumqttc::SubscribeFilter::new(
                                    seesaw::fleet::group_deployment_topic("load"),
                                    QoS::AtLeastOnce,
                                ),
                            ])
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if !p.payload.is_empty() => {
                        let d = seesaw::fleet::Deployment::parse(&p.payload).unwrap();
                        received.fetch_add(1, Ordering::SeqCst);
                        *last_received.lock().unwrap() = Instant::now();
                        let status = seesaw::fleet::DeviceStatus {
                            last_deployment_id: Some(d.deployment_id),
                            last_result: Some("installing".into()),
                            operation: "installing".into(),
                            ..will.clone()
                        };
                        client
                            .publish(
                                seesaw::fleet::status_topic(&id.device_id),
                                QoS::AtLeastOnce,
                                true,
                                serde_json::to_vec(&status).unwrap(),
                            )
                            .await
                            .unwrap();
                        status_pkid_sent = true;
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) if status_pkid_sent && !done => {
                        done = true;
                        acked.fetch_add(1, Ordering::SeqCst);
                        *last_acked.lock().unwrap() = Instant::now();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while subscribed.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} devices subscribed\n{}",
            subscribed.load(Ordering::SeqCst),
            broker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = t.elapsed().as_secs_f64();

    // The operator pushes one group deployment with the real CLI.
    let fleet_cli = |sub: &str| {
        let mut c = Command::new(seesaw_bin());
        c.args(["fleet", sub, "--broker", &url])
            .arg("--ca")
            .arg(&ca)
            .arg("--cert")
            .arg(&op.cert)
            .arg("--key")
            .arg(&op.key);
        c
    };
    let pushed = Instant::now();
    let mut c = fleet_cli("publish");
    c.args([
        "--group",
        "load",
        "--manifest-url",
        "https://cdn.invalid/v2/manifest.dsse.json",
    ])
    .args(["--deployment-id", "load-1"]);
    let out = run_async(c, Duration::from_secs(60)).await;
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "deployment reached {} and statuses {} of {n}",
            received.load(Ordering::SeqCst),
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fanout_s = (*last_received.lock().unwrap() - pushed).as_secs_f64();
    let statuses_acked_s = (*last_acked.lock().unwrap() - pushed).as_secs_f64();

    let t = Instant::now();
    let mut c = fleet_cli("status");
    c.args(["--json", "--settle-ms", "500"]);
    let out = run_async(c, Duration::from_secs(120)).await;
    let fleet_status_s = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<Json> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), n, "fleet status rows");
    assert!(rows
        .iter()
        .all(|r| r["last_deployment_id"] == "load-1" && r["last_result"] == "installing"));
    for t in tasks {
        t.abort();
    }
    LoadFigures {
        devices: n,
        certs_s,
        connect_s,
        fanout_s,
        statuses_acked_s,
        fleet_status_s,
    }
}

fn print_load(f: &LoadFigures) {
    eprintln!(
        "fleet load, {} devices on one mosquitto (TLS, client certificates, ACLs):\n  \
         certificates made: {:.2} s\n  all connected and subscribed: {:.2} s\n  \
         group deployment reached all: {:.2} s after the push\n  \
         all statuses acknowledged by the broker: {:.2} s after the push\n  \
         seesaw fleet status listing all {}: {:.2} s",
        f.devices,
        f.certs_s,
        f.connect_s,
        f.fanout_s,
        f.statuses_acked_s,
        f.devices,
        f.fleet_status_s
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_devices_get_a_group_deployment_and_report() {
    let figures = load_run(1000).await;
    print_load(&figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: tests/bench-fleet.sh"]
async fn bench_fleet_load() {
    let n = std::env::var("SEESAW_FLEET_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let figures = load_run(n).await;
    print_load(&figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: tests/bench-fleet.sh"]
async fn bench_push_to_download_start() {
    let runs: usize = std::env::var("SEESAW_FLEET_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let f = Fleet::new(16, &[]);
    let url = f.serve(&f.board.bundle("v2.bundle", "2.0.0", 5), "v2.bundle");
    let api = Api::connect(&f.bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&f.board, &f.bus, &api).await;
    f.wait_status(DEVICE, Duration::from_secs(60), "online", |s| {
        s["state"] == "online"
    })
    .await;
    // Slow bodies, so each run can be cancelled right after it starts.
    f.https.with_faults(|x| {
        x.trickle(256 * 1024);
    });
    let mut latencies = Vec::new();
    let mut publish_cli = Vec::new();
    for run in 0..runs {
        let from = rec.len();
        let requests = f.https.requests();
        let mut c = f.fleet_cli("publish");
        c.args(["--device", DEVICE, "--manifest-url", &url])
            .args(["--deployment-id", &format!("bench-{run}")]);
        let pushed = Instant::now();
        let publisher = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let out = run_bounded(&mut c, Duration::from_secs(60));
            (out, started.elapsed())
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while f.https.requests() == requests {
            assert!(Instant::now() < deadline, "run {run}: no download started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let latency = pushed.elapsed();
        let (out, cli) = publisher.await.unwrap();
        assert!(out.status.success(), "{out:?}");
        latencies.push(latency.as_secs_f64());
        publish_cli.push(cli.as_secs_f64());
        // Stop this install and wait for the device to be idle again.
        loop {
            match api.cancel().await {
                Ok(()) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let (_, result, _) = rec.completed(from, Duration::from_secs(60)).await;
        assert_eq!(result, 8, "run {run} was cancelled");
        api.wait_operation(Duration::from_secs(30), |o| o == "idle")
            .await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (lo, hi) = (
        latencies.iter().cloned().fold(f64::MAX, f64::min),
        latencies.iter().cloned().fold(0.0, f64::max),
    );
    eprintln!(
        "push -> download start over {runs} runs (loopback, TLS broker and HTTPS server):\n  \
         median {:.3} s (min {lo:.3}, max {hi:.3}); of which the `seesaw fleet publish` \
         process itself (start, TLS connect, publish, PUBACK): median {:.3} s",
        median(&mut latencies.clone()),
        median(&mut publish_cli)
    );
}

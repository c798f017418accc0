//! The D-Bus API of `seesaw daemon` on a real `dbus-daemon` whose
//! configuration is like a system bus (method calls denied by default) and
//! includes `systemd/org.seesaw.Updater1.conf` verbatim: install with
//! progress and `Completed`, busy, cancel, mark, slot status, every
//! property; what an unprivileged uid may and may not do; a client we did
//! not write (`busctl`); the interface XML in `systemd/` against what the
//! service introspects; and the CLI going through the daemon.
//!
//! Needs `dbus-daemon`, `busctl` and `setpriv` (Debian: dbus-daemon,
//! systemd, util-linux) and root (the daemon owns its name as uid 0, the
//! policy's only owner).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use support::*;
use zbus::zvariant::{OwnedValue, Value};

const PROPERTIES: [&str; 7] = [
    "BootSlot",
    "Compatible",
    "LastError",
    "Operation",
    "PrimarySlot",
    "Progress",
    "Version",
];

fn err_name<T: std::fmt::Debug>(r: zbus::Result<T>) -> String {
    error_name(&r.expect_err("the call should have failed"))
}

fn slot_map(
    status: &[(String, HashMap<String, OwnedValue>)],
    name: &str,
) -> HashMap<String, OwnedValue> {
    status
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, m)| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.try_clone().unwrap()))
                .collect()
        })
        .unwrap_or_else(|| panic!("no slot {name} in {status:?}"))
}

fn get<T: TryFrom<OwnedValue>>(m: &HashMap<String, OwnedValue>, key: &str) -> T
where
    T::Error: std::fmt::Debug,
{
    T::try_from(
        m.get(key)
            .unwrap_or_else(|| panic!("no {key} in {m:?}"))
            .try_clone()
            .unwrap(),
    )
    .unwrap_or_else(|e| panic!("{key} has the wrong type: {e:?}"))
}

/// Slot B holds the board's image (its first `image_mib` MiB).
fn slot_b_holds_image(board: &Board) -> bool {
    let img = board.read("rootfs.img");
    let b = board.read("slot-b.img");
    b.len() >= img.len() && b[..img.len()] == img[..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_busy_cancel_mark_and_properties() {
    let board = Board::new(96);
    let v2 = board.bundle("v2.bundle", "2.0.0", 5);
    let v2s = v2.display().to_string();
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&board, &bus, &api).await;

    // Every property is readable, one by one and all at once.
    let all = api.get_all().await;
    let mut names: Vec<&str> = all.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, PROPERTIES);
    for p in PROPERTIES {
        api.prop(p).await.unwrap_or_else(|e| panic!("Get {p}: {e}"));
    }
    assert_eq!(api.string_prop("BootSlot").await, "A");
    assert_eq!(api.string_prop("PrimarySlot").await, "A");
    assert_eq!(api.string_prop("Compatible").await, "test-board");
    assert_eq!(api.string_prop("Operation").await, "idle");
    assert_eq!(api.string_prop("LastError").await, "");
    assert_eq!(api.string_prop("Version").await, "");
    let _ = api.progress().await;

    // Calls that make no sense are refused with typed errors.
    assert_eq!(
        err_name(api.cancel().await),
        "org.seesaw.Updater1.Error.State"
    );
    assert_eq!(
        err_name(api.install("v2.bundle", false).await),
        "org.seesaw.Updater1.Error.InvalidArgs"
    );
    assert_eq!(
        err_name(api.install("ftp://example.com/v2.bundle", false).await),
        "org.seesaw.Updater1.Error.InvalidArgs"
    );
    let mut unknown: HashMap<&str, Value<'_>> = HashMap::new();
    unknown.insert("reboot", Value::from(true));
    assert_eq!(
        err_name(api.install_with(&v2s, unknown).await),
        "org.seesaw.Updater1.Error.InvalidArgs"
    );
    let mut wrong_type: HashMap<&str, Value<'_>> = HashMap::new();
    wrong_type.insert("force", Value::from("yes"));
    assert_eq!(
        err_name(api.install_with(&v2s, wrong_type).await),
        "org.seesaw.Updater1.Error.InvalidArgs"
    );
    for (state, slot) in [
        ("maybe", ""),
        ("good", "B"),
        ("good", "other"),
        ("bad", "C"),
    ] {
        assert_eq!(
            err_name(api.mark(state, slot).await),
            "org.seesaw.Updater1.Error.InvalidArgs",
            "Mark({state:?}, {slot:?})"
        );
    }
    assert_eq!(api.string_prop("Operation").await, "idle");

    // ---- Cancel during an install.
    let env_before = board.read("uboot.env");
    let a_before = board.read("slot-a.img");
    let non_contract = board.non_contract_vars();
    let from = rec.len();
    api.install(&v2s, false).await.unwrap();
    assert_eq!(
        err_name(api.install(&v2s, false).await),
        "org.seesaw.Updater1.Error.Busy"
    );
    assert_eq!(
        err_name(api.mark("bad", "B").await),
        "org.seesaw.Updater1.Error.Busy"
    );
    rec.wait_value(from, "Operation", Duration::from_secs(30), |v| {
        as_str(v).as_deref() == Some("installing")
    })
    .await;
    rec.wait_value(from, "Progress", Duration::from_secs(120), |v| {
        as_progress(v).is_some_and(|p| p.1 > 0)
    })
    .await;
    let asked = Instant::now();
    api.cancel().await.unwrap();
    let (done, code, message) = rec.completed(from, Duration::from_secs(60)).await;
    let took = done.saturating_duration_since(asked);
    eprintln!("cancel: Completed({code}) {took:?} after Cancel returned: {message}");
    assert_eq!(code, 8, "Completed should carry CANCELLED (8): {message}");
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    assert_eq!(board.read("uboot.env"), env_before, "environment changed");
    assert_eq!(board.read("slot-a.img"), a_before, "running slot changed");
    assert_eq!(board.non_contract_vars(), non_contract);
    assert_eq!(
        api.wait_operation(Duration::from_secs(10), |o| o == "idle")
            .await,
        "idle"
    );
    assert_eq!(api.string_prop("BootSlot").await, "A");
    assert_eq!(api.string_prop("PrimarySlot").await, "A");
    assert!(!api.string_prop("LastError").await.is_empty());
    let state = board.state();
    assert!(state["pending"].is_null(), "{state:#}");
    assert!(state["slot_b"].is_null(), "{state:#}");
    assert!(!board.path("data/install.json").exists());

    // ---- The next install succeeds, with progress on the way.
    let from = rec.len();
    let started = Instant::now();
    api.install(&v2s, false).await.unwrap();
    let (_, code, message) = rec.completed(from, Duration::from_secs(600)).await;
    eprintln!(
        "install of {} MiB over D-Bus: {:.1} s",
        board.image_mib,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "{message}");
    assert!(message.contains("2.0.0"), "{message}");
    let progress: Vec<_> = rec
        .values(from, "Progress")
        .iter()
        .filter_map(as_progress)
        .collect();
    assert!(
        progress.iter().any(|p| p.0 > 0 && p.0 < 100),
        "no intermediate Progress value: {progress:?}"
    );
    let ops: Vec<String> = rec
        .values(from, "Operation")
        .iter()
        .filter_map(as_str)
        .collect();
    assert_eq!(
        ops.first().map(String::as_str),
        Some("installing"),
        "{ops:?}"
    );
    assert_eq!(
        ops.last().map(String::as_str),
        Some("awaiting-reboot"),
        "{ops:?}"
    );
    assert_eq!(api.string_prop("Operation").await, "awaiting-reboot");
    assert_eq!(api.string_prop("PrimarySlot").await, "B");
    assert_eq!(api.string_prop("BootSlot").await, "A");
    assert_eq!(api.string_prop("LastError").await, "");
    let p = api.progress().await;
    assert_eq!(
        (p.0, p.1, p.2),
        (100, board.image_mib << 20, board.image_mib << 20)
    );
    assert_eq!(board.var("BOOT_ORDER").as_deref(), Some("B A"));
    assert_eq!(board.var("BOOT_B_LEFT").as_deref(), Some("3"));
    assert_eq!(board.var("BOOT_A_LEFT").as_deref(), Some("3"));
    assert_eq!(board.non_contract_vars(), non_contract);
    assert_eq!(board.read("slot-a.img"), a_before);
    assert!(slot_b_holds_image(&board));

    // ---- GetSlotStatus.
    let status = api.slot_status().await.unwrap();
    let names: Vec<&str> = status.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    let a = slot_map(&status, "A");
    assert!(get::<bool>(&a, "booted"));
    assert!(!get::<bool>(&a, "primary"));
    assert_eq!(get::<u32>(&a, "tries_left"), 3);
    assert!(get::<String>(&a, "device").ends_with("slot-a.img"));
    assert!(!a.contains_key("version"), "{a:?}");
    let b = slot_map(&status, "B");
    assert!(!get::<bool>(&b, "booted"));
    assert!(get::<bool>(&b, "primary"));
    assert_eq!(get::<u32>(&b, "tries_left"), 3);
    assert!(get::<String>(&b, "device").ends_with("slot-b.img"));
    assert_eq!(get::<String>(&b, "version"), "2.0.0");
    assert_eq!(get::<u64>(&b, "security_version"), 5);
    assert!(get::<bool>(&b, "intact"));

    // ---- Mark.
    let (slot, message) = api.mark("good", "").await.unwrap();
    assert_eq!(slot, "A", "{message}");
    assert_eq!(board.var("BOOT_A_LEFT").as_deref(), Some("3"));
    assert_eq!(board.var("BOOT_ORDER").as_deref(), Some("B A"));
    let (slot, message) = api.mark("bad", "other").await.unwrap();
    assert_eq!(slot, "B", "{message}");
    assert!(message.contains("deny-listed"), "{message}");
    assert_eq!(board.var("BOOT_B_LEFT").as_deref(), Some("0"));
    assert_eq!(board.var("BOOT_A_LEFT").as_deref(), Some("3"));
    let state = board.state();
    assert!(state["pending"].is_null(), "{state:#}");
    assert!(
        state["failed_versions"]
            .as_array()
            .unwrap()
            .contains(&"2.0.0".into()),
        "{state:#}"
    );
    assert_eq!(api.string_prop("PrimarySlot").await, "A");
    let (slot, _) = api.mark("bad", "B").await.unwrap();
    assert_eq!(slot, "B");
    assert_eq!(board.non_contract_vars(), non_contract);
    assert_eq!(board.read("slot-a.img"), a_before);
}

/// After `Mark("bad", "other")` throws away the install awaiting reboot,
/// the board is idle; the `Operation` property must say so (and change).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operation_follows_mark_bad_of_the_awaiting_slot() {
    let board = Board::new(8);
    let v2 = board.bundle("v2.bundle", "2.0.0", 5);
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&board, &bus, &api).await;
    let from = rec.len();
    api.install(&v2.display().to_string(), false).await.unwrap();
    let (_, code, m) = rec.completed(from, Duration::from_secs(300)).await;
    assert_eq!(code, 0, "{m}");
    assert_eq!(api.string_prop("Operation").await, "awaiting-reboot");
    let from = rec.len();
    api.mark("bad", "other").await.unwrap();
    let out = run_async(
        {
            let mut c = board.cli(&bus);
            c.args(["status", "--json"]);
            c
        },
        Duration::from_secs(60),
    )
    .await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["operation"], "idle", "{status:#}");
    assert_eq!(
        api.string_prop("Operation").await,
        "idle",
        "the library says idle, the Operation property still says otherwise"
    );
    rec.wait_value(from, "Operation", Duration::from_secs(5), |v| {
        as_str(v).as_deref() == Some("idle")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unprivileged_callers_are_denied_and_change_nothing() {
    let board = Board::new(8);
    let v2 = board.bundle("v2.bundle", "2.0.0", 5);
    let v2s = v2.display().to_string();
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let rec = Recorder::start(&api).await;
    let mut daemon = Daemon::start(&board, &bus, &api).await;
    // Root installs, so there is a state file, a slot B and a pending install.
    let from = rec.len();
    api.install(&v2s, false).await.unwrap();
    let (_, code, m) = rec.completed(from, Duration::from_secs(300)).await;
    assert_eq!(code, 0, "{m}");
    let before = board.snapshot();
    let quiet = rec.len();
    let a = bus.address.as_str();
    let obj = [BUS_NAME, PATH];

    let denied_busctl: Vec<Vec<&str>> = vec![
        vec![IFACE, "Install", "sa{sv}", &v2s, "0"],
        vec![IFACE, "Install", "sa{sv}", &v2s, "1", "force", "b", "true"],
        vec![IFACE, "Cancel"],
        vec![IFACE, "Mark", "ss", "good", ""],
        vec![IFACE, "Mark", "ss", "bad", "B"],
        vec![IFACE, "Mark", "ss", "bad", "A"],
        vec![IFACE, "GetSlotStatus"],
        vec![
            "org.freedesktop.DBus.Properties",
            "Set",
            "ssv",
            IFACE,
            "Operation",
            "s",
            "idle",
        ],
    ];
    for args in &denied_busctl {
        let mut c = unprivileged("busctl");
        c.arg(format!("--address={a}"))
            .arg("call")
            .args(obj)
            .args(args);
        let out = run_async(c, Duration::from_secs(60)).await;
        let err = text(&out.stderr);
        assert!(
            !out.status.success(),
            "busctl call {args:?} as nobody succeeded"
        );
        assert!(
            err.contains("Access denied"),
            "busctl call {args:?} as nobody: {err}"
        );
    }

    // The error name itself, through GLib's client when it is there.
    if std::process::Command::new("gdbus")
        .arg("help")
        .output()
        .is_ok()
    {
        for (method, args) in [
            ("Mark", vec!["good", ""]),
            ("Install", vec![v2s.as_str(), "{}"]),
            ("Cancel", vec![]),
        ] {
            let mut c = unprivileged("gdbus");
            c.args([
                "call",
                "--address",
                a,
                "--dest",
                BUS_NAME,
                "--object-path",
                PATH,
            ])
            .arg("--method")
            .arg(format!("{IFACE}.{method}"))
            .args(args);
            let out = run_async(c, Duration::from_secs(60)).await;
            let err = text(&out.stderr);
            assert!(!out.status.success(), "gdbus {method} as nobody succeeded");
            assert!(
                err.contains("org.freedesktop.DBus.Error.AccessDenied"),
                "gdbus {method} as nobody: {err}"
            );
        }
    } else {
        eprintln!("gdbus not installed: error names checked through busctl only");
    }

    // The seesaw CLI as nobody finds the daemon and is refused.
    let seesaw = seesaw_bin();
    for args in [
        vec!["install", v2s.as_str()],
        vec!["install", "--force", "--json", v2s.as_str()],
        vec!["mark-good"],
        vec!["mark-bad"],
        vec!["mark-bad", "B"],
        vec!["cancel"],
    ] {
        let mut c = unprivileged(seesaw);
        c.arg("--bus-address")
            .arg(a)
            .arg("--config")
            .arg(board.config())
            .args(&args)
            .env_remove("SEESAW_BUS_ADDRESS");
        let out = run_async(c, Duration::from_secs(60)).await;
        let err = text(&out.stderr);
        eprintln!(
            "seesaw {args:?} as nobody: {:?} {}",
            out.status.code(),
            err.trim()
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "seesaw {args:?} as nobody: {err}"
        );
        assert!(
            err.contains("AccessDenied")
                || err.contains("Access denied")
                || err.contains("Rejected send message"),
            "seesaw {args:?} as nobody: {err}"
        );
    }

    // Reading is for everyone.
    for p in PROPERTIES {
        let mut c = unprivileged("busctl");
        c.arg(format!("--address={a}"))
            .arg("get-property")
            .args(obj)
            .args([IFACE, p]);
        let out = run_async(c, Duration::from_secs(60)).await;
        assert!(out.status.success(), "get-property {p} as nobody: {out:?}");
    }
    let mut c = unprivileged("busctl");
    c.arg(format!("--address={a}"))
        .arg("get-property")
        .args(obj)
        .args([IFACE, "Operation"]);
    let out = run_async(c, Duration::from_secs(60)).await;
    assert_eq!(text(&out.stdout).trim(), "s \"awaiting-reboot\"");
    let mut c = unprivileged("busctl");
    c.arg(format!("--address={a}")).arg("call").args(obj).args([
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        IFACE,
    ]);
    let out = run_async(c, Duration::from_secs(60)).await;
    assert!(out.status.success(), "GetAll as nobody: {out:?}");
    let all = text(&out.stdout);
    for p in PROPERTIES {
        assert!(all.contains(&format!("\"{p}\"")), "GetAll lacks {p}: {all}");
    }
    let mut c = unprivileged("busctl");
    c.arg(format!("--address={a}")).arg("introspect").args(obj);
    let out = run_async(c, Duration::from_secs(60)).await;
    assert!(out.status.success(), "introspect as nobody: {out:?}");
    assert!(text(&out.stdout).contains(".Install"), "{out:?}");
    let mut c = unprivileged("busctl");
    c.arg(format!("--address={a}"))
        .arg("call")
        .args(obj)
        .args(["org.freedesktop.DBus.Peer", "Ping"]);
    let out = run_async(c, Duration::from_secs(60)).await;
    assert!(out.status.success(), "Ping as nobody: {out:?}");

    // Nothing changed, and the daemon still serves.
    assert!(
        board.snapshot() == before,
        "an unprivileged call changed the board"
    );
    assert!(daemon.proc.exited().is_none());
    assert_eq!(api.string_prop("Operation").await, "awaiting-reboot");
    assert_eq!(api.string_prop("LastError").await, "");
    assert!(
        rec.values(quiet, "Operation").is_empty(),
        "Operation changed after unprivileged calls"
    );
    assert!(
        !rec.snapshot()[quiet..]
            .iter()
            .any(|(_, s)| matches!(s, Sig::Completed(..))),
        "an install ran after unprivileged calls"
    );
}

fn busctl(bus: &Bus) -> std::process::Command {
    let mut c = std::process::Command::new("busctl");
    c.arg(format!("--address={}", bus.address));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busctl_as_root_installs_and_marks() {
    let board = Board::new(8);
    let v2 = board.bundle("v2.bundle", "2.0.0", 5);
    let v2s = v2.display().to_string();
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&board, &bus, &api).await;

    let get_operation = || {
        let mut c = busctl(&bus);
        c.args(["get-property", BUS_NAME, PATH, IFACE, "Operation"]);
        c
    };
    for force in [false, true] {
        let from = rec.len();
        let mut c = busctl(&bus);
        c.args(["call", BUS_NAME, PATH, IFACE, "Install", "sa{sv}", &v2s]);
        if force {
            c.args(["1", "force", "b", "true"]);
        } else {
            c.arg("0");
        }
        let out = run_async(c, Duration::from_secs(60)).await;
        assert!(out.status.success(), "busctl Install: {out:?}");
        // Poll Operation with busctl until the install is over.
        let deadline = Instant::now() + Duration::from_secs(300);
        let op = loop {
            let out = run_async(get_operation(), Duration::from_secs(60)).await;
            assert!(out.status.success(), "{out:?}");
            let op = text(&out.stdout).trim().to_string();
            if op != "s \"installing\"" {
                break op;
            }
            assert!(Instant::now() < deadline, "still installing after 300 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(op, "s \"awaiting-reboot\"");
        let (_, code, m) = rec.completed(from, Duration::from_secs(10)).await;
        assert_eq!(code, 0, "{m}");
    }
    let mut c = busctl(&bus);
    c.args(["call", BUS_NAME, PATH, IFACE, "GetSlotStatus"]);
    let out = run_async(c, Duration::from_secs(60)).await;
    let s = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(s.starts_with("a(sa{sv}) 2 \"A\""), "{s}");
    assert!(s.contains("\"version\" s \"2.0.0\""), "{s}");
    let mut c = busctl(&bus);
    c.args(["call", BUS_NAME, PATH, IFACE, "Mark", "ss", "bad", "B"]);
    let out = run_async(c, Duration::from_secs(60)).await;
    let s = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(s.starts_with("ss \"B\" "), "{s}");
    assert_eq!(board.var("BOOT_B_LEFT").as_deref(), Some("0"));
    // A typed error reaches busctl too.
    let mut c = busctl(&bus);
    c.args(["call", BUS_NAME, PATH, IFACE, "Mark", "ss", "sideways", ""]);
    let out = run_async(c, Duration::from_secs(60)).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("state must be good or bad"),
        "{out:?}"
    );
}

// ------------------------------------------------- interface XML vs service

/// One XML start tag: name, attributes, self-closing.
#[derive(Debug)]
enum Tag {
    Open(String, HashMap<String, String>, bool),
    Close(String),
}

/// A tiny tag scanner, enough for introspection XML: comments, the DOCTYPE
/// and processing instructions are dropped; text between tags is ignored.
fn tags(xml: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").expect("unterminated comment") + 3..];
            continue;
        }
        let end = rest.find('>').expect("unterminated tag");
        let inner = &rest[1..end];
        rest = &rest[end + 1..];
        if inner.starts_with('!') || inner.starts_with('?') {
            continue;
        }
        if let Some(name) = inner.strip_prefix('/') {
            out.push(Tag::Close(name.trim().to_string()));
            continue;
        }
        let self_closing = inner.trim_end().ends_with('/');
        let inner = inner.trim_end().trim_end_matches('/');
        let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
        let name = inner[..name_end].to_string();
        let mut attrs = HashMap::new();
        let mut a = &inner[name_end..];
        while let Some(eq) = a.find('=') {
            let key = a[..eq].trim().to_string();
            let after = a[eq + 1..].trim_start();
            let q = after.chars().next().expect("attribute value");
            let close = after[1..].find(q).expect("unterminated attribute") + 1;
            attrs.insert(key, after[1..close].to_string());
            a = &after[close + 1..];
        }
        out.push(Tag::Open(name, attrs, self_closing));
    }
    out
}

/// The members of `interface` in `xml`, one canonical line each.
fn members(xml: &str, interface: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<(String, HashMap<String, String>)> = Vec::new();
    let mut member: Option<(String, String, Vec<String>)> = None;
    let mut found = false;
    for tag in tags(xml) {
        match tag {
            Tag::Open(name, attrs, self_closing) => {
                let in_iface = stack.iter().any(|(n, a)| {
                    n == "interface" && a.get("name").map(String::as_str) == Some(interface)
                });
                if name == "interface" && attrs.get("name").map(String::as_str) == Some(interface) {
                    found = true;
                }
                if in_iface {
                    let attr = |k: &str| attrs.get(k).cloned().unwrap_or_default();
                    match name.as_str() {
                        "method" | "signal" => {
                            member = Some((name.clone(), attr("name"), Vec::new()));
                        }
                        "property" => {
                            member = Some((
                                "property".into(),
                                format!("{} {} {}", attr("name"), attr("type"), attr("access")),
                                Vec::new(),
                            ));
                        }
                        "arg" => {
                            if let Some((kind, _, parts)) = member.as_mut() {
                                let dir = match (kind.as_str(), attrs.get("direction")) {
                                    ("method", None) => "in".to_string(),
                                    ("method", Some(d)) => d.clone(),
                                    _ => String::new(),
                                };
                                parts.push(
                                    format!("{dir} {} {}", attr("type"), attr("name"))
                                        .trim()
                                        .to_string(),
                                );
                            }
                        }
                        "annotation" => {
                            let line = format!("@{}={}", attr("name"), attr("value"));
                            match member.as_mut() {
                                Some((_, _, parts)) => parts.push(line),
                                None => {
                                    out.insert(format!("interface {line}"));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if self_closing {
                    if matches!(name.as_str(), "method" | "signal" | "property") && in_iface {
                        if let Some((kind, n, parts)) = member.take() {
                            out.insert(format!("{kind} {n}({})", parts.join(", ")));
                        }
                    }
                } else {
                    stack.push((name, attrs));
                }
            }
            Tag::Close(name) => {
                if matches!(name.as_str(), "method" | "signal" | "property") {
                    if let Some((kind, n, parts)) = member.take() {
                        out.insert(format!("{kind} {n}({})", parts.join(", ")));
                    }
                }
                stack.pop();
            }
        }
    }
    assert!(found, "no interface {interface} in:\n{xml}");
    out
}

#[test]
fn tag_scanner_reads_what_it_should() {
    let xml = r#"<?xml version="1.0"?><!DOCTYPE node PUBLIC "x" "y">
      <!-- <method name="Commented"/> -->
      <node><interface name="i.X">
        <method name="M"><arg type="s" name="a"/><arg name="b" type='u' direction="out"/>
          <annotation name="org.freedesktop.DBus.Deprecated" value="true"/></method>
        <signal name="S"><arg name="r" type="i"/></signal>
        <property name="P" type="(itts)" access="read"/>
      </interface><interface name="i.Y"><method name="Other"/></interface></node>"#;
    let m: Vec<String> = members(xml, "i.X").into_iter().collect();
    assert_eq!(
        m,
        [
            "method M(in s a, out u b, @org.freedesktop.DBus.Deprecated=true)",
            "property P (itts) read()",
            "signal S(i r)",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interface_xml_matches_introspection() {
    let board = Board::new(4);
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let _daemon = Daemon::start(&board, &bus, &api).await;
    let reply = api
        .conn
        .call_method(
            Some(BUS_NAME),
            PATH,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            &(),
        )
        .await
        .expect("Introspect");
    let live: String = reply.body().deserialize().unwrap();
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/org.seesaw.Updater1.xml"),
    )
    .unwrap();
    let want = members(&file, IFACE);
    let got = members(&live, IFACE);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "systemd/org.seesaw.Updater1.xml and the service differ\n\
         only in the file: {missing:#?}\nonly in the service: {extra:#?}\n\
         --- introspected\n{live}"
    );
    // The interface the design names, so an empty parse cannot pass.
    for m in [
        "method Install(in s source, in a{sv} options)",
        "method Cancel()",
        "method Mark(in s state, in s slot, out s slot, out s message)",
        "method GetSlotStatus(out a(sa{sv}) slots)",
        "signal Completed(i result, s message)",
        "property Progress (itts) read()",
        "property Operation s read()",
    ] {
        assert!(got.contains(m), "service lacks {m}: {got:#?}");
    }
    for p in PROPERTIES {
        assert!(
            got.iter().any(|m| m.starts_with(&format!("property {p} "))),
            "{p} missing"
        );
    }
}

// ------------------------------------------------------- CLI through daemon

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_install_json_completes_and_status_json_shows_the_daemon() {
    let board = Board::new(16);
    let v2 = board.bundle("v2.bundle", "2.0.0", 5);
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&board, &bus, &api).await;

    // Nothing to cancel: the daemon's State error, exit status 7.
    let mut c = board.cli(&bus);
    c.arg("cancel");
    let out = run_async(c, Duration::from_secs(60)).await;
    assert_eq!(out.status.code(), Some(7), "{out:?}");

    let from = rec.len();
    let mut c = board.cli(&bus);
    c.args(["install", "--json"]).arg(&v2);
    let out = run_async(c, Duration::from_secs(600)).await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "seesaw install --json: {out:?}");
    assert!(
        text(&out.stdout).contains("installed 2.0.0 into slot B"),
        "{out:?}"
    );
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let last = lines.last().expect("no JSON line on stderr");
    assert_eq!(last["event"], "completed", "{stderr}");
    assert_eq!(last["result"], 0, "{stderr}");
    // The daemon did it (the CLI did not fall back to standalone).
    let (_, code, _) = rec.completed(from, Duration::from_secs(10)).await;
    assert_eq!(code, 0);

    let mut c = board.cli(&bus);
    c.args(["status", "--json"]);
    let out = run_async(c, Duration::from_secs(60)).await;
    assert!(out.status.success(), "{out:?}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &s["daemon"];
    assert!(d.is_object(), "no daemon object: {s:#}");
    assert_eq!(d["operation"], "awaiting-reboot", "{s:#}");
    assert_eq!(d["percent"], 100, "{s:#}");
    assert_eq!(d["bytes_total"], board.image_mib << 20, "{s:#}");
    assert_eq!(d["last_error"], "", "{s:#}");
    assert_eq!(s["operation"], "awaiting-reboot");
    assert_eq!(s["primary"], "B");

    // Without the daemon, status says so.
    drop(_daemon);
    api.wait_name_gone().await;
    let mut c = board.cli(&bus);
    c.args(["status", "--json"]);
    let out = run_async(c, Duration::from_secs(60)).await;
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["daemon"].is_null(), "{s:#}");
}

/// `seesaw install --json` through the daemon must print progress lines,
/// not only the completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_install_json_prints_progress_lines() {
    let board = Board::new(48);
    let v2 = board.bundle("v2.bundle", "2.0.0", 5);
    let bus = Bus::start(board.dir.path(), "");
    let api = Api::connect(&bus.address).await;
    let rec = Recorder::start(&api).await;
    let _daemon = Daemon::start(&board, &bus, &api).await;
    let from = rec.len();
    let mut c = board.cli(&bus);
    c.args(["install", "--json"]).arg(&v2);
    let out = run_async(c, Duration::from_secs(600)).await;
    assert!(out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    // The daemon did emit intermediate progress.
    let progress: Vec<_> = rec
        .values(from, "Progress")
        .iter()
        .filter_map(as_progress)
        .collect();
    assert!(
        progress.iter().any(|p| p.0 > 0 && p.0 < 100),
        "the daemon sent no intermediate progress: {progress:?}"
    );
    let progress_lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "progress")
        .collect();
    assert!(
        !progress_lines.is_empty(),
        "the daemon sent {} Progress changes, `seesaw install --json` printed no progress line:\n{stderr}",
        progress.len()
    );
    for l in &progress_lines {
        assert!(
            l["percent"].is_i64() && l["bytes_total"] == (board.image_mib << 20),
            "{l}"
        );
    }
    // A line per 10% of the phase, as a standalone install prints them.
    assert!(
        progress_lines.len() <= 11,
        "{} progress lines:\n{stderr}",
        progress_lines.len()
    );
    assert!(!stderr.contains('\r'), "{stderr:?}");
    // The result document, with the keys a standalone install prints.
    let last: serde_json::Value = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("no JSON line on stderr");
    assert_eq!(
        last,
        serde_json::json!({"event": "completed", "result": 0,
            "message": "installed 2.0.0 into slot B; reboot to try it"}),
        "{stderr}"
    );
}

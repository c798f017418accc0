//! Helpers for the tests that run the real `seesaw daemon` on a real
//! `dbus-daemon` (dbus_api, health_gate, kill_install): a board in a fresh
//! temporary directory, child processes that are killed and reaped on drop,
//! a D-Bus client written against the documented interface (not the crate's
//! own proxy), and a recorder of the service's signals.
//!
//! Bundles and keys are made with the `seesaw` binary (`keygen`, `bundle
//! create`), the environment is written byte by byte by [`board_files`]
//! (CRC32, flag, `name=value\0`), so the fixture depends on the library only
//! to read the environment back and to play U-Boot's boot choice.
#![allow(dead_code)]

#[path = "../../examples/sim/power_on.rs"]
pub mod power_on;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::board_files;
use futures_util::StreamExt;
use seesaw::slot::BootChoice;
use seesaw::uboot_env::{BootEnv, UbootEnv};
use zbus::zvariant::{OwnedValue, Value};

pub const BUS_NAME: &str = "org.seesaw.Updater1";
pub const PATH: &str = "/org/seesaw/Updater1";
pub const IFACE: &str = "org.seesaw.Updater1";
/// Variables of the factory environment; only the BOOT_* ones may change.
pub const FACTORY_VARS: &[(&str, &str)] = &[
    ("arch", "arm"),
    ("baudrate", "115200"),
    ("bootcmd", "run distro_bootcmd"),
    ("bootdelay", "2"),
    ("BOOT_ORDER", "A B"),
    ("BOOT_A_LEFT", "3"),
    ("BOOT_B_LEFT", "0"),
    ("scriptaddr", "0x02400000"),
];
/// The boot contract variables seesaw may write.
pub const CONTRACT_VARS: &[&str] = &["BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT"];

pub fn seesaw_bin() -> &'static str {
    env!("CARGO_BIN_EXE_seesaw")
}

/// Runs a command to the end with a bound; panics if it cannot be started.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let pid = child.id();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut child = child;
    // wait_with_output in a thread so the bound holds; kill on timeout.
    std::thread::spawn(move || {
        let _ = tx.send(child_output(&mut child));
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            let _ = rx.recv_timeout(Duration::from_secs(10));
            panic!(
                "{desc} did not finish within {:.0} s; killed",
                started.elapsed().as_secs_f64()
            )
        }
    }
}

fn child_output(child: &mut Child) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = std::io::Read::read_to_end(e, &mut v);
        }
        v
    });
    if let Some(o) = out.as_mut() {
        let _ = std::io::Read::read_to_end(o, &mut stdout);
    }
    stderr.extend(t.join().unwrap_or_default());
    let status = child.wait().expect("wait");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A child process that is SIGKILLed and reaped when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: Option<PathBuf>,
}

impl Proc {
    fn adopt(name: &str, child: Child, log: Option<PathBuf>) -> Proc {
        Proc {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let f = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc::adopt(name, child, Some(log.into()))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = c.kill();
        c.wait().ok()
    }

    /// SIGTERM, wait up to `limit`, then SIGKILL; reaps.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} did not stop on SIGTERM within {limit:?}; killing",
            self.name
        );
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `dbus-daemon` configured like a system bus, including our policy file
/// verbatim, listening in `dir`.
pub struct Bus {
    pub proc: Proc,
    pub address: String,
}

/// The system-bus-like configuration: deny method calls by default except
/// to the bus itself, allow signals and replies, then our policy file.
pub fn bus_config(socket: &Path, extra_policy: &str) -> String {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd/org.seesaw.Updater1.conf")
        .canonicalize()
        .expect("systemd/org.seesaw.Updater1.conf");
    bus_config_including(socket, extra_policy, &policy)
}

/// [`bus_config`] with another policy file in place of ours.
pub fn bus_config_including(socket: &Path, extra_policy: &str, policy: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
{extra_policy}
  <include>{policy}</include>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy.display(),
    )
}

impl Bus {
    pub fn start(dir: &Path, extra_policy: &str) -> Bus {
        let conf = dir.join("bus.conf");
        std::fs::write(&conf, bus_config(&dir.join("bus.sock"), extra_policy)).unwrap();
        let log = dir.join("dbus-daemon.log");
        let stderr = File::create(&log).unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("cannot start dbus-daemon (apt-get install dbus-daemon)");
        let stdout = child.stdout.take().unwrap();
        let proc = Proc::adopt("dbus-daemon", child, Some(log.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = BufReader::new(stdout);
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the pipe open (and drained) as long as the bus runs.
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut r, &mut sink);
        });
        let address = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed no address: {address:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Bus { proc, address }
    }
}

/// A deterministic PRNG (xorshift64*), for images and random delays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A simulated board in a fresh temporary directory (mode 0755 so an
/// unprivileged client can reach the bus socket inside it).
pub struct Board {
    pub dir: tempfile::TempDir,
    pub image_mib: u64,
    pub slot_mib: u64,
}

impl Board {
    /// Board with an image of `image_mib` MiB and slots of `image_mib + 8`.
    pub fn new(image_mib: u64) -> Board {
        let dir = tempfile::Builder::new()
            .prefix("seesaw-test-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let b = Board {
            dir,
            image_mib,
            slot_mib: image_mib + 8,
        };
        let d = b.dir.path();
        // Slot A holds the running system (a pattern); B is empty.
        board_files::write_running_slot(&d.join("slot-a.img"), b.slot_mib << 20);
        board_files::write_empty_slot(&d.join("slot-b.img"), b.slot_mib << 20);
        // The image: half random, half zero in every 4 KiB (compresses ~2:1).
        let mut rng = Rng(0x5EE5_A3B1_2024_0001 ^ image_mib);
        let mut img = File::create(d.join("rootfs.img")).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..image_mib {
            for blk in buf.chunks_mut(4096) {
                for w in blk[..2048].chunks_mut(8) {
                    w.copy_from_slice(&rng.next_u64().to_le_bytes());
                }
            }
            img.write_all(&buf).unwrap();
        }
        drop(img);
        b.reset_env();
        board_files::write_fw_env_config(d);
        b.set_cmdline("A");
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::create_dir_all(d.join("keys")).unwrap();
        let out = run_bounded(
            Command::new(seesaw_bin())
                .args(["keygen", "--out"])
                .arg(d.join("keys/release")),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "keygen: {out:?}");
        b.write_config("");
        b
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("seesaw.toml")
    }

    /// The configuration, with `extra` (e.g. a `[health]` table) appended.
    pub fn write_config(&self, extra: &str) {
        board_files::ConfigFile {
            tables: extra,
            ..Default::default()
        }
        .write(&self.config());
    }

    /// The factory environment (redundant, two copies in one file).
    pub fn reset_env(&self) {
        board_files::write_env(self.dir.path(), FACTORY_VARS);
    }

    /// The kernel command line of a boot of `slot` (`A`, `B`).
    pub fn set_cmdline(&self, slot: &str) {
        board_files::write_cmdline(self.dir.path(), slot);
    }

    /// A bundle of the board's image, made by `seesaw bundle create`.
    pub fn bundle(&self, name: &str, version: &str, security_version: u64) -> PathBuf {
        let out = self.path(name);
        let started = Instant::now();
        let o = run_bounded(
            Command::new(seesaw_bin())
                .args(["bundle", "create", "--image"])
                .arg(self.path("rootfs.img"))
                .args(["--compatible", "test-board", "--version", version])
                .args(["--security-version", &security_version.to_string()])
                .args(["--zstd-level", "1", "--key"])
                .arg(self.path("keys/release.pem"))
                .arg("--output")
                .arg(&out),
            Duration::from_secs(300),
        );
        assert!(o.status.success(), "bundle create: {o:?}");
        eprintln!(
            "bundle {name}: {} MiB image in {:.1} s",
            self.image_mib,
            started.elapsed().as_secs_f64()
        );
        out
    }

    /// The environment's variables, in order, through the library's reader
    /// (taking the same lock the daemon and fw_printenv take).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        UbootEnv::open(&self.path("fw_env.config"))
            .unwrap()
            .read_vars()
            .unwrap_or_else(|e| panic!("environment unreadable: {e:#}"))
    }

    pub fn var(&self, name: &str) -> Option<String> {
        self.env_vars()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Every variable outside the boot contract, in order.
    pub fn non_contract_vars(&self) -> Vec<(String, String)> {
        self.env_vars()
            .into_iter()
            .filter(|(k, _)| !CONTRACT_VARS.contains(&k.as_str()))
            .collect()
    }

    /// `data/state.json` as JSON (`null` if there is none).
    pub fn state(&self) -> serde_json::Value {
        match std::fs::read(self.path("data/state.json")) {
            Ok(b) => serde_json::from_slice(&b).expect("state.json is JSON"),
            Err(_) => serde_json::Value::Null,
        }
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_default()
    }

    /// What nothing unprivileged or failed may change.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        [
            "slot-a.img",
            "slot-b.img",
            "uboot.env",
            "data/state.json",
            "cmdline",
        ]
        .iter()
        .map(|n| (n.to_string(), self.read(n)))
        .collect()
    }

    /// One power-on as the boot script does it: choose, decrement, save,
    /// and write the command line (what U-Boot passes to the kernel).
    pub fn reboot(&self) -> BootChoice {
        let mut e = UbootEnv::open(&self.path("fw_env.config")).unwrap();
        let choice = power_on::power_on(&mut e).unwrap();
        if let BootChoice::Boot { slot, .. } = choice {
            self.set_cmdline(slot.name());
        }
        choice
    }

    /// `seesaw` with this board's configuration and `bus`'s address.
    pub fn cli(&self, bus: &Bus) -> Command {
        let mut c = Command::new(seesaw_bin());
        c.arg("--config")
            .arg(self.config())
            .arg("--bus-address")
            .arg(&bus.address)
            .env_remove("SEESAW_BUS_ADDRESS")
            .env("RUST_LOG", "info");
        c
    }

    /// Every `*.log` in the board directory (daemon and bus logs).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_else(|_| Vec::new());
        names.sort();
        for p in names {
            if p.extension().is_some_and(|e| e == "log") {
                out += &format!(
                    "----- {}\n{}\n",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
        out
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== logs of the failed test ({})\n{}",
                self.dir.path().display(),
                self.logs()
            );
        }
    }
}

/// The `seesaw daemon` under test, its log in the board directory.
pub struct Daemon {
    pub proc: Proc,
    pub started: Instant,
}

static DAEMON_COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Daemon {
    /// Starts the daemon; does not wait for it (see [`Api::wait_for_daemon`]).
    pub fn spawn(board: &Board, bus: &Bus) -> Daemon {
        let n = DAEMON_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = board.path(&format!("daemon-{n:03}.log"));
        let mut cmd = Command::new(seesaw_bin());
        cmd.arg("--bus-address")
            .arg(&bus.address)
            .arg("--config")
            .arg(board.config())
            .arg("daemon")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "debug,zbus=info");
        Daemon {
            proc: Proc::spawn("seesaw daemon", &mut cmd, &log),
            started: Instant::now(),
        }
    }

    /// Starts the daemon and waits (bounded) until it owns its name.
    pub async fn start(board: &Board, bus: &Bus, api: &Api) -> Daemon {
        let mut d = Daemon::spawn(board, bus);
        api.wait_for_daemon(&mut d).await;
        d
    }
}

/// A client of `org.seesaw.Updater1`, written from the interface description.
#[derive(Clone)]
pub struct Api {
    pub conn: zbus::Connection,
}

/// The D-Bus error name of a failed call, or the error text.
pub fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        zbus::Error::FDO(f) => match &**f {
            zbus::fdo::Error::AccessDenied(_) => "org.freedesktop.DBus.Error.AccessDenied".into(),
            other => format!("fdo: {other}"),
        },
        other => format!("{other}"),
    }
}

impl Api {
    pub async fn connect(address: &str) -> Api {
        let conn = tokio::time::timeout(Duration::from_secs(30), async {
            zbus::connection::Builder::address(address)
                .unwrap()
                .build()
                .await
        })
        .await
        .expect("connecting to the test bus timed out")
        .expect("connecting to the test bus");
        Api { conn }
    }

    pub async fn has_owner(&self, name: &str) -> bool {
        let dbus = zbus::fdo::DBusProxy::new(&self.conn).await.unwrap();
        dbus.name_has_owner(zbus::names::BusName::try_from(name).unwrap())
            .await
            .unwrap_or(false)
    }

    /// Waits up to 60 s for the daemon to own its name; panics if it exits.
    pub async fn wait_for_daemon(&self, d: &mut Daemon) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.has_owner(BUS_NAME).await {
                return;
            }
            if let Some(s) = d.proc.exited() {
                panic!(
                    "seesaw daemon exited ({s}) before owning {BUS_NAME}:\n{}",
                    d.proc.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "seesaw daemon did not own {BUS_NAME} within 60 s:\n{}",
                d.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to 30 s until the name has no owner any more.
    pub async fn wait_name_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.has_owner(BUS_NAME).await {
            assert!(
                Instant::now() < deadline,
                "{BUS_NAME} still owned after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call<B, R>(&self, method: &str, body: &B) -> zbus::Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let msg = tokio::time::timeout(
            Duration::from_secs(60),
            self.conn
                .call_method(Some(BUS_NAME), PATH, Some(IFACE), method, body),
        )
        .await
        .map_err(|_| zbus::Error::Failure(format!("{method}: no reply within 60 s")))??;
        msg.body().deserialize::<R>()
    }

    pub async fn install(&self, source: &str, force: bool) -> zbus::Result<()> {
        let mut options: HashMap<&str, Value<'_>> = HashMap::new();
        if force {
            options.insert("force", Value::from(true));
        }
        self.install_with(source, options).await
    }

    pub async fn install_with(
        &self,
        source: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()> {
        let msg = tokio::time::timeout(
            Duration::from_secs(60),
            self.conn.call_method(
                Some(BUS_NAME),
                PATH,
                Some(IFACE),
                "Install",
                &(source, options),
            ),
        )
        .await
        .map_err(|_| zbus::Error::Failure("Install: no reply within 60 s".into()))??;
        let _ = msg;
        Ok(())
    }

    pub async fn cancel(&self) -> zbus::Result<()> {
        let msg = tokio::time::timeout(
            Duration::from_secs(60),
            self.conn
                .call_method(Some(BUS_NAME), PATH, Some(IFACE), "Cancel", &()),
        )
        .await
        .map_err(|_| zbus::Error::Failure("Cancel: no reply within 60 s".into()))??;
        let _ = msg;
        Ok(())
    }

    pub async fn mark(&self, state: &str, slot: &str) -> zbus::Result<(String, String)> {
        self.call("Mark", &(state, slot)).await
    }

    pub async fn slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>> {
        self.call("GetSlotStatus", &()).await
    }

    async fn properties(&self) -> zbus::fdo::PropertiesProxy<'static> {
        zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination(BUS_NAME)
            .unwrap()
            .path(PATH)
            .unwrap()
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    pub async fn prop(&self, name: &str) -> zbus::fdo::Result<OwnedValue> {
        let iface = zbus::names::InterfaceName::from_static_str(IFACE).unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            self.properties().await.get(iface, name).await
        })
        .await
        .unwrap_or_else(|_| panic!("Get {name}: no reply within 60 s"))
    }

    pub async fn get_all(&self) -> HashMap<String, OwnedValue> {
        let iface = zbus::names::InterfaceName::from_static_str(IFACE).unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            self.properties().await.get_all(iface).await
        })
        .await
        .expect("GetAll: no reply within 60 s")
        .expect("GetAll")
    }

    pub async fn string_prop(&self, name: &str) -> String {
        let v = self
            .prop(name)
            .await
            .unwrap_or_else(|e| panic!("Get {name}: {e}"));
        String::try_from(v).unwrap_or_else(|e| panic!("{name} is not a string: {e}"))
    }

    pub async fn progress(&self) -> (i32, u64, u64, String) {
        let v = self.prop("Progress").await.expect("Get Progress");
        <(i32, u64, u64, String)>::try_from(v).expect("Progress is (itts)")
    }

    /// Polls `Operation` until `pred` holds (bounded by `limit`).
    pub async fn wait_operation(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let op = self.string_prop("Operation").await;
            if pred(&op) {
                return op;
            }
            assert!(
                Instant::now() < deadline,
                "Operation still {op:?} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A signal of the service as recorded.
#[derive(Debug, Clone)]
pub enum Sig {
    /// `PropertiesChanged` of org.seesaw.Updater1: the changed values.
    Props(HashMap<String, OwnedValue>),
    /// `Completed(result, message)`.
    Completed(i32, String),
}

/// Records every signal the service sends (subscribed before returning).
pub struct Recorder {
    pub events: Arc<Mutex<Vec<(Instant, Sig)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(api: &Api) -> Recorder {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(BUS_NAME)
            .unwrap()
            .path(PATH)
            .unwrap()
            .build();
        let mut stream = zbus::MessageStream::for_match_rule(rule, &api.conn, Some(1024))
            .await
            .expect("AddMatch");
        let events: Arc<Mutex<Vec<(Instant, Sig)>>> = Arc::default();
        let ev = events.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let h = msg.header();
                let member = h.member().map(|m| m.to_string()).unwrap_or_default();
                let iface = h.interface().map(|m| m.to_string()).unwrap_or_default();
                let sig = if member == "PropertiesChanged" {
                    match msg
                        .body()
                        .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
                    {
                        Ok((i, changed, _)) if i == IFACE => Sig::Props(changed),
                        _ => continue,
                    }
                } else if member == "Completed" && iface == IFACE {
                    match msg.body().deserialize::<(i32, String)>() {
                        Ok((r, m)) => Sig::Completed(r, m),
                        Err(_) => continue,
                    }
                } else {
                    continue;
                };
                ev.lock().unwrap().push((Instant::now(), sig));
            }
        });
        Recorder { events, task }
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<(Instant, Sig)> {
        self.events.lock().unwrap().clone()
    }

    /// The first `Completed` recorded at index `from` or later, waiting up to `limit`.
    pub async fn completed(&self, from: usize, limit: Duration) -> (Instant, i32, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.events.lock().unwrap()[from..]
                .iter()
                .find_map(|(t, s)| match s {
                    Sig::Completed(r, m) => Some((*t, *r, m.clone())),
                    _ => None,
                })
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no Completed signal within {limit:?}; recorded: {:?}",
                self.snapshot().iter().map(|(_, s)| s).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every value of property `name` in PropertiesChanged since `from`.
    pub fn values(&self, from: usize, name: &str) -> Vec<OwnedValue> {
        self.events.lock().unwrap()[from..]
            .iter()
            .filter_map(|(_, s)| match s {
                Sig::Props(m) => m.get(name).and_then(|v| v.try_clone().ok()),
                _ => None,
            })
            .collect()
    }

    /// Waits until a PropertiesChanged of `name` since `from` satisfies `pred`.
    pub async fn wait_value(
        &self,
        from: usize,
        name: &str,
        limit: Duration,
        pred: impl Fn(&OwnedValue) -> bool,
    ) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = self.events.lock().unwrap()[from..]
                .iter()
                .find_map(|(t, s)| match s {
                    Sig::Props(m) if m.get(name).is_some_and(&pred) => Some(*t),
                    _ => None,
                })
            {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no PropertiesChanged of {name} as wanted within {limit:?}; recorded: {:?}",
                self.values(from, name)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn as_str(v: &OwnedValue) -> Option<String> {
    String::try_from(v.try_clone().ok()?).ok()
}

pub fn as_progress(v: &OwnedValue) -> Option<(i32, u64, u64, String)> {
    <(i32, u64, u64, String)>::try_from(v.try_clone().ok()?).ok()
}

/// Runs `cmd` as uid/gid 65534 (nobody) with no supplementary groups.
pub fn unprivileged(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
    c
}

/// [`run_bounded`] on a blocking thread, for async tests.
pub async fn run_async(mut cmd: Command, limit: Duration) -> Output {
    tokio::task::spawn_blocking(move || run_bounded(&mut cmd, limit))
        .await
        .expect("command thread")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

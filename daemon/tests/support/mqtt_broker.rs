//! A real Mosquitto broker for the fleet tests: TLS only, client
//! certificates required (`require_certificate true`), the certificate's
//! common name as user name (`use_identity_as_username true`) and an ACL
//! file with the per-device patterns of `docs/fleet.md`. Certificates come
//! from a CA made at test time (rcgen, ECDSA P-256).
//!
//! Include it with
//!
//! ```ignore
//! #[path = "support/mqtt_broker.rs"]
//! mod mqtt_broker;
//! ```
//!
//! The broker listens on 127.0.0.1 on a free port, keeps its retained
//! messages in its own directory (persistence on, so a restart keeps them),
//! and is killed when the [`Broker`] is dropped.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The test CA and the broker's certificate, written into a directory.
pub struct FleetPki {
    pub dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    /// `ca.pem`
    pub ca: PathBuf,
    /// `broker.pem` / `broker.key` (SANs 127.0.0.1 and localhost)
    pub broker_cert: PathBuf,
    pub broker_key: PathBuf,
}

/// A client certificate and key on disk.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cn: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca(cn: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).expect("self-sign CA");
    (cert, key)
}

impl FleetPki {
    /// A fresh CA and broker certificate in `dir` (created).
    pub fn generate(dir: &Path) -> FleetPki {
        std::fs::create_dir_all(dir).unwrap();
        let (ca_cert, ca_key) = ca("seesaw fleet test CA");
        let put = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca = put("ca.pem", &ca_cert.pem());
        let mut pki = FleetPki {
            dir: dir.to_path_buf(),
            ca_cert,
            ca_key,
            ca,
            broker_cert: PathBuf::new(),
            broker_key: PathBuf::new(),
        };
        let (c, k) = pki.issue_pem(
            "seesaw test broker",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki.broker_cert = put("broker.pem", &c);
        pki.broker_key = put("broker.key", &k);
        pki
    }

    fn issue_pem(
        &self,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        let cert = p
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate with common name `cn`, written as
    /// `<cn>.pem` / `<cn>.key`.
    pub fn client(&self, cn: &str) -> ClientCert {
        let (cert_pem, key_pem) = self.issue_pem(cn, &[], ExtendedKeyUsagePurpose::ClientAuth);
        let cert = self.dir.join(format!("{cn}.pem"));
        let key = self.dir.join(format!("{cn}.key"));
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, &key_pem).unwrap();
        ClientCert {
            cn: cn.into(),
            cert,
            key,
            cert_pem,
            key_pem,
        }
    }

    /// A client certificate for `cn` from a different, untrusted CA.
    pub fn foreign_client(&self, cn: &str) -> ClientCert {
        let (other_cert, other_key) = ca("some other CA");
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.signed_by(&key, &other_cert, &other_key).unwrap();
        let cert = self.dir.join(format!("foreign-{cn}.pem"));
        let keyp = self.dir.join(format!("foreign-{cn}.key"));
        std::fs::write(&cert, c.pem()).unwrap();
        std::fs::write(&keyp, key.serialize_pem()).unwrap();
        ClientCert {
            cn: cn.into(),
            cert,
            key: keyp,
            cert_pem: c.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The ACL of `docs/fleet.md`: a device reads its own deployment topic and
/// its groups', writes only its own status; `operator` reads and writes
/// everything under `seesaw/v1/`.
pub fn acl(groups: &[(&str, &[&str])]) -> String {
    let mut s = String::from(
        "# Every device: its own deployment (read) and status (write).\n\
         pattern read seesaw/v1/devices/%u/deployment\n\
         pattern write seesaw/v1/devices/%u/status\n\n\
         user operator\ntopic readwrite seesaw/v1/#\n",
    );
    for (device, gs) in groups {
        s += &format!("\nuser {device}\n");
        for g in *gs {
            s += &format!("topic read seesaw/v1/groups/{g}/deployment\n");
        }
    }
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `mosquitto`.
pub struct Broker {
    pub dir: PathBuf,
    pub port: u16,
    pub conf: PathBuf,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Broker {
    /// Starts mosquitto in `dir` with TLS from `pki` and `acl_text`.
    pub fn start(dir: &Path, pki: &FleetPki, acl_text: &str) -> Broker {
        std::fs::create_dir_all(dir.join("persist")).unwrap();
        let acl_path = dir.join("acl");
        std::fs::write(&acl_path, acl_text).unwrap();
        let port = free_port();
        let root = unsafe { libc::geteuid() } == 0;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "{user}per_listener_settings false\n\
                 persistence true\npersistence_location {persist}/\nautosave_interval 1\n\
                 log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n\
                 max_queued_messages 10000\n\
                 acl_file {acl}\n\
                 listener {port} 127.0.0.1\n\
                 cafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
                 require_certificate true\nuse_identity_as_username true\n",
                user = if root { "user root\n" } else { "" },
                persist = dir.join("persist").display(),
                log = dir.join("mosquitto.log").display(),
                acl = acl_path.display(),
                ca = pki.ca.display(),
                cert = pki.broker_cert.display(),
                key = pki.broker_key.display(),
            ),
        )
        .unwrap();
        let mut b = Broker {
            dir: dir.to_path_buf(),
            port,
            conf,
            child: None,
            log: dir.join("mosquitto.log"),
        };
        b.restart();
        b
    }

    /// `mqtts://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGKILL: as a crash or a power cut would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker with SIGTERM (it saves its retained messages).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    /// (Re)starts the broker on the same port and waits until it listens.
    pub fn restart(&mut self) {
        self.kill();
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.out"))
            .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cannot start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    panic!(
                        "mosquitto exited ({s}):\n{}\n{}",
                        std::fs::read_to_string(self.dir.join("mosquitto.out")).unwrap_or_default(),
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client_args(&self, ca: &Path, who: &ClientCert) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "--cafile".into(),
            ca.display().to_string(),
            "--cert".into(),
            who.cert.display().to_string(),
            "--key".into(),
            who.key.display().to_string(),
            "-q".into(),
            "1".into(),
        ]
    }

    /// `mosquitto_pub` as `who`: publishes `message` (retained if asked).
    pub fn mosquitto_pub(
        &self,
        ca: &Path,
        who: &ClientCert,
        topic: &str,
        message: &str,
        retain: bool,
    ) -> Output {
        let mut c = Command::new("mosquitto_pub");
        c.args(self.client_args(ca, who))
            .args(["-i", &format!("pub-{}-{}", who.cn, std::process::id())])
            .args(["-t", topic, "-m", message]);
        if retain {
            c.arg("-r");
        }
        bounded(&mut c, Duration::from_secs(30))
    }

    /// `mosquitto_sub` as `who` on `topic`: the messages received within
    /// `wait_s` seconds (`-W`), at most `count`, one per line.
    pub fn mosquitto_sub(
        &self,
        ca: &Path,
        who: &ClientCert,
        topic: &str,
        count: u32,
        wait_s: u32,
    ) -> (Output, Vec<String>) {
        let mut c = Command::new("mosquitto_sub");
        c.args(self.client_args(ca, who))
            .args(["-i", &format!("sub-{}-{}", who.cn, std::process::id())])
            .args([
                "-t",
                topic,
                "-C",
                &count.to_string(),
                "-W",
                &wait_s.to_string(),
            ]);
        let out = bounded(&mut c, Duration::from_secs(u64::from(wait_s) + 30));
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        (out, lines)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` to the end, killed after `limit`.
pub fn bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            rx.recv_timeout(Duration::from_secs(10))
                .expect("killed")
                .expect("wait")
        }
    }
}

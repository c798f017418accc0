//! An HTTPS (or plain HTTP) file server for the network tests, with a test
//! PKI made at run time and faults that can be switched on while it runs.
//!
//! Include it from a test file with
//!
//! ```ignore
//! #[path = "support/https_server.rs"]
//! mod https_server;
//! use https_server::{Server, ServerOptions, TestPki};
//! ```
//!
//! (`tests/support/mod.rs` belongs to the D-Bus tests and does not declare
//! this module, so `mod support;` does not bring it in.)
//!
//! The server listens on 127.0.0.1 on an ephemeral port, runs on its own
//! thread with its own tokio runtime (so it works from synchronous and from
//! async tests alike) and stops when the [`Server`] is dropped. It serves the
//! files under a root directory by URL path (GET and HEAD) with
//! `Content-Length`, `Accept-Ranges: bytes` and single ranges
//! (`bytes=a-b`, `bytes=a-`, `bytes=-n` → 206 with `Content-Range`, 416 when
//! unsatisfiable; a multi-range request is answered with 200 and the whole
//! file, as RFC 9110 allows). HTTP/1.1 is written by hand rather than with
//! hyper so that every fault (a cut after exactly n bytes, a lying
//! `Content-Length`, a body that never ends) is byte-exact.
//!
//! ```ignore
//! let pki = TestPki::shared();
//! let server = Server::start(dir.path().to_owned(), ServerOptions::https(pki));
//! server.with_faults(|f| {
//!     f.drop_after(4096).trickle(64 * 1024);
//! });
//! // ... point the client at server.url("/bundle.ssw"), trusting pki.ca_pem ...
//! assert_eq!(server.range_headers(), ["bytes=4096-"]);
//! ```
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------
// PKI
// ---------------------------------------------------------------------------

/// A throw-away PKI, all PEM: the test CA with a server certificate for
/// `localhost` / `127.0.0.1` and a client (device) certificate, and a second,
/// unrelated CA with its own server and client certificates (the "man in the
/// middle" and the "wrong device"). Keys are PKCS#8 ECDSA P-256.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The test CA certificate: what the device trusts.
    pub ca_pem: String,
    /// Server certificate (SANs `localhost`, `127.0.0.1`) signed by the test CA.
    pub server_cert_pem: String,
    /// Its key.
    pub server_key_pem: String,
    /// Client certificate (CN `seesaw-test-device`) signed by the test CA.
    pub client_cert_pem: String,
    /// Its key.
    pub client_key_pem: String,
    /// Server certificate signed by the test CA for `wrong-name.invalid` only.
    pub wrong_name_server_cert_pem: String,
    /// Its key.
    pub wrong_name_server_key_pem: String,
    /// Server certificate for `localhost` / `127.0.0.1` signed by the test CA
    /// but expired (valid 1999-2000).
    pub expired_server_cert_pem: String,
    /// Its key.
    pub expired_server_key_pem: String,
    /// The other, unrelated CA.
    pub other_ca_pem: String,
    /// Server certificate (SANs `localhost`, `127.0.0.1`) signed by the other CA.
    pub other_server_cert_pem: String,
    /// Its key.
    pub other_server_key_pem: String,
    /// Client certificate signed by the other CA.
    pub other_client_cert_pem: String,
    /// Its key.
    pub other_client_key_pem: String,
}

/// Where [`TestPki::write_to`] put each file.
#[derive(Clone, Debug)]
pub struct PkiPaths {
    /// `ca.pem`
    pub ca: PathBuf,
    /// `server.pem`
    pub server_cert: PathBuf,
    /// `server.key`
    pub server_key: PathBuf,
    /// `client.pem`
    pub client_cert: PathBuf,
    /// `client.key`
    pub client_key: PathBuf,
    /// `client-identity.pem` (certificate then key, in one file)
    pub client_identity: PathBuf,
    /// `other-ca.pem`
    pub other_ca: PathBuf,
    /// `other-server.pem`
    pub other_server_cert: PathBuf,
    /// `other-server.key`
    pub other_server_key: PathBuf,
    /// `other-client.pem`
    pub other_client_cert: PathBuf,
    /// `other-client.key`
    pub other_client_key: PathBuf,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca { cert, key }
    }

    /// Issues a leaf certificate; returns (certificate PEM, key PEM).
    fn issue(
        &self,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> (String, String) {
        let key = KeyPair::generate().expect("generate leaf key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(1999, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

impl TestPki {
    /// Generates a fresh PKI (a few milliseconds).
    pub fn generate() -> TestPki {
        let server_names = ["localhost", "127.0.0.1"];
        let ca = Ca::new("seesaw test CA");
        let other = Ca::new("seesaw other CA (man in the middle)");
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let (server_cert_pem, server_key_pem) =
            ca.issue("seesaw test server", &server_names, server.clone(), false);
        let (client_cert_pem, client_key_pem) =
            ca.issue("seesaw-test-device", &[], client.clone(), false);
        let (wrong_name_server_cert_pem, wrong_name_server_key_pem) =
            ca.issue("wrong name", &["wrong-name.invalid"], server.clone(), false);
        let (expired_server_cert_pem, expired_server_key_pem) =
            ca.issue("seesaw expired server", &server_names, server.clone(), true);
        let (other_server_cert_pem, other_server_key_pem) =
            other.issue("seesaw test server", &server_names, server, false);
        let (other_client_cert_pem, other_client_key_pem) =
            other.issue("seesaw-test-device", &[], client, false);
        TestPki {
            ca_pem: ca.cert.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            wrong_name_server_cert_pem,
            wrong_name_server_key_pem,
            expired_server_cert_pem,
            expired_server_key_pem,
            other_ca_pem: other.cert.pem(),
            other_server_cert_pem,
            other_server_key_pem,
            other_client_cert_pem,
            other_client_key_pem,
        }
    }

    /// One PKI generated on first use and shared by the whole test binary.
    pub fn shared() -> &'static TestPki {
        static PKI: OnceLock<TestPki> = OnceLock::new();
        PKI.get_or_init(TestPki::generate)
    }

    /// The device identity as one PEM blob (certificate then key), the form
    /// `reqwest::Identity::from_pem` takes.
    pub fn client_identity_pem(&self) -> Vec<u8> {
        format!("{}{}", self.client_cert_pem, self.client_key_pem).into_bytes()
    }

    /// The other CA's client certificate and key as one PEM blob.
    pub fn other_client_identity_pem(&self) -> Vec<u8> {
        format!(
            "{}{}",
            self.other_client_cert_pem, self.other_client_key_pem
        )
        .into_bytes()
    }

    /// Writes the PEM files into `dir` (which must exist) and returns their
    /// paths: ca.pem, server.pem, server.key, client.pem, client.key,
    /// client-identity.pem, other-ca.pem, other-server.pem, other-server.key,
    /// other-client.pem, other-client.key.
    pub fn write_to(&self, dir: &Path) -> PkiPaths {
        let put = |name: &str, contents: &str| {
            let path = dir.join(name);
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };
        PkiPaths {
            ca: put("ca.pem", &self.ca_pem),
            server_cert: put("server.pem", &self.server_cert_pem),
            server_key: put("server.key", &self.server_key_pem),
            client_cert: put("client.pem", &self.client_cert_pem),
            client_key: put("client.key", &self.client_key_pem),
            client_identity: put(
                "client-identity.pem",
                &format!("{}{}", self.client_cert_pem, self.client_key_pem),
            ),
            other_ca: put("other-ca.pem", &self.other_ca_pem),
            other_server_cert: put("other-server.pem", &self.other_server_cert_pem),
            other_server_key: put("other-server.key", &self.other_server_key_pem),
            other_client_cert: put("other-client.pem", &self.other_client_cert_pem),
            other_client_key: put("other-client.key", &self.other_client_key_pem),
        }
    }
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// The certificate the server presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCert {
    /// `server_cert_pem`, signed by the test CA (the normal case).
    TestCa,
    /// `other_server_cert_pem`, signed by the other CA (a man in the middle).
    OtherCa,
    /// Signed by the test CA but for `wrong-name.invalid`.
    WrongName,
    /// Signed by the test CA, right names, expired.
    Expired,
    /// Any chain (leaf first) and key, PEM.
    Custom {
        /// Certificate chain, leaf first.
        chain_pem: String,
        /// Private key.
        key_pem: String,
    },
}

/// Whether the server asks for a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asked for.
    None,
    /// Asked for; verified against the test CA if sent; anonymous clients allowed.
    Optional,
    /// Required, and must chain to the test CA (`WebPkiClientVerifier`).
    Required,
}

/// How to run the server. Start from [`ServerOptions::https`] or
/// [`ServerOptions::plain_http`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The PKI for TLS; `None` serves plain HTTP.
    pub tls: Option<TestPki>,
    /// Which certificate to present.
    pub server_cert: ServerCert,
    /// Whether to ask for / require a client certificate.
    pub client_auth: ClientAuth,
    /// Port on 127.0.0.1 (0 = ephemeral, the default).
    pub port: u16,
}

impl ServerOptions {
    /// HTTPS with the test CA's server certificate, no client certificate.
    pub fn https(pki: &TestPki) -> ServerOptions {
        ServerOptions {
            tls: Some(pki.clone()),
            server_cert: ServerCert::TestCa,
            client_auth: ClientAuth::None,
            port: 0,
        }
    }

    /// Plain HTTP (for `allow_http`).
    pub fn plain_http() -> ServerOptions {
        ServerOptions {
            tls: None,
            server_cert: ServerCert::TestCa,
            client_auth: ClientAuth::None,
            port: 0,
        }
    }

    /// Presents `cert` instead of the test CA's server certificate.
    pub fn server_cert(mut self, cert: ServerCert) -> ServerOptions {
        self.server_cert = cert;
        self
    }

    /// Presents the other CA's server certificate (man in the middle).
    pub fn other_ca_cert(self) -> ServerOptions {
        self.server_cert(ServerCert::OtherCa)
    }

    /// Requires a client certificate signed by the test CA (mutual TLS).
    pub fn require_client_cert(self) -> ServerOptions {
        self.client_auth(ClientAuth::Required)
    }

    /// Sets the client certificate policy.
    pub fn client_auth(mut self, auth: ClientAuth) -> ServerOptions {
        self.client_auth = auth;
        self
    }

    /// Listens on this port instead of an ephemeral one (e.g. to bring a
    /// stopped server back on the same address).
    pub fn port(mut self, port: u16) -> ServerOptions {
        self.port = port;
        self
    }
}

fn tls_config(pki: &TestPki, cert: &ServerCert, auth: ClientAuth) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain_pem, key_pem) = match cert {
        ServerCert::TestCa => (&pki.server_cert_pem, &pki.server_key_pem),
        ServerCert::OtherCa => (&pki.other_server_cert_pem, &pki.other_server_key_pem),
        ServerCert::WrongName => (
            &pki.wrong_name_server_cert_pem,
            &pki.wrong_name_server_key_pem,
        ),
        ServerCert::Expired => (&pki.expired_server_cert_pem, &pki.expired_server_key_pem),
        ServerCert::Custom { chain_pem, key_pem } => (chain_pem, key_pem),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("server key PEM");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
                roots.add(ca.expect("CA PEM")).expect("add CA");
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build().expect("client verifier"))
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .expect("server certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// How many responses a fault applies to. A fault is used up only by a
/// response it actually changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// The next response it applies to.
    Once,
    /// The next k responses it applies to.
    Next(u32),
    /// Every response, until cleared.
    Always,
}

impl Times {
    /// Uses one application up; false if none was left.
    fn take(&mut self) -> bool {
        match self {
            Times::Always => true,
            Times::Once => {
                *self = Times::Next(0);
                true
            }
            Times::Next(0) => false,
            Times::Next(k) => {
                *k -= 1;
                true
            }
        }
    }
}

/// How an [`Faults::endless`] body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endless {
    /// No `Content-Length`, `Connection: close`: the body ends only when the
    /// connection does.
    NoLength,
    /// This `Content-Length`, and more bytes than that anyway.
    LyingLength(u64),
}

/// Faults injected into the responses that follow. Change them at any time
/// through [`Server::with_faults`] or [`Server::faults`]; the setters chain.
///
/// Body faults (drop, stall, trickle, corrupt) apply to GET bodies of files
/// and endless paths, not to status responses or HEAD. Precedence per
/// request: `status(path)`, then `fail_every_second_request`, then endless,
/// then the file (404 when missing).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    drop_after: Option<(u64, Times)>,
    stall: Option<(u64, Duration, Times)>,
    trickle: Option<u64>,
    corrupt: Option<(u64, Times)>,
    fail_every_second: Option<u64>,
    ignore_range: bool,
    endless: BTreeMap<String, Endless>,
    status: BTreeMap<String, u16>,
}

fn norm_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

impl Faults {
    /// Removes every fault.
    pub fn clear(&mut self) -> &mut Faults {
        *self = Faults::default();
        self
    }

    /// The next response with a body longer than `n` bytes is cut after `n`
    /// body bytes: the connection is closed (TCP FIN, no TLS close_notify).
    pub fn drop_after(&mut self, n: u64) -> &mut Faults {
        self.drop_after_times(n, Times::Once)
    }

    /// [`Faults::drop_after`] for `times` responses.
    pub fn drop_after_times(&mut self, n: u64, times: Times) -> &mut Faults {
        self.drop_after = Some((n, times));
        self
    }

    /// The next GET response sends its headers, then nothing for `duration`
    /// (connection kept open), then the rest of its body.
    pub fn stall(&mut self, duration: Duration) -> &mut Faults {
        self.stall_after(0, duration, Times::Once)
    }

    /// Stalls for `duration` after `n` body bytes, in the next `times` GET
    /// responses whose body is at least `n` bytes long.
    pub fn stall_after(&mut self, n: u64, duration: Duration, times: Times) -> &mut Faults {
        self.stall = Some((n, duration, times));
        self
    }

    /// Sends every body at no more than `bytes_per_sec`, in chunks of about a
    /// tenth of a second. 0 removes the limit.
    pub fn trickle(&mut self, bytes_per_sec: u64) -> &mut Faults {
        self.trickle = (bytes_per_sec > 0).then_some(bytes_per_sec);
        self
    }

    /// Flips (XOR 0xFF) the byte at file `offset` in the next response that
    /// covers it.
    pub fn corrupt(&mut self, offset: u64) -> &mut Faults {
        self.corrupt_times(offset, Times::Once)
    }

    /// Flips the byte at file `offset` in every response that covers it.
    pub fn corrupt_always(&mut self, offset: u64) -> &mut Faults {
        self.corrupt_times(offset, Times::Always)
    }

    /// Flips the byte at file `offset` in the next `times` responses that cover it.
    pub fn corrupt_times(&mut self, offset: u64, times: Times) -> &mut Faults {
        self.corrupt = Some((offset, times));
        self
    }

    /// From now on every second request (the 2nd, 4th, ... counted from this
    /// call, any path or method) gets a 500.
    pub fn fail_every_second_request(&mut self) -> &mut Faults {
        self.fail_every_second = Some(0);
        self
    }

    /// Answers every GET with 200 and the whole file, whatever its Range.
    pub fn ignore_range(&mut self) -> &mut Faults {
        self.ignore_range = true;
        self
    }

    /// GET `path` sends the file (if any), then zero bytes forever, with no
    /// `Content-Length` ([`Endless::NoLength`]).
    pub fn endless(&mut self, path: &str) -> &mut Faults {
        self.endless_with(path, Endless::NoLength)
    }

    /// GET `path` sends the file, then zero bytes forever, framed as `mode` says.
    pub fn endless_with(&mut self, path: &str, mode: Endless) -> &mut Faults {
        self.endless.insert(norm_path(path), mode);
        self
    }

    /// Every request for `path` gets status `code` with a short text body.
    pub fn status(&mut self, path: &str, code: u16) -> &mut Faults {
        self.status.insert(norm_path(path), code);
        self
    }
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Which connection (1, 2, ... in accept order) carried it.
    pub connection: u64,
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The decoded URL path, without query.
    pub path: String,
    /// The `Range` header, verbatim.
    pub range: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// What the server has seen since start (or [`Server::reset_stats`]).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: u64,
    /// TLS handshakes that failed or timed out (refused client certificate,
    /// client rejecting the server's certificate, ...).
    pub tls_failures: u64,
    /// TLS connections on which the client presented a certificate.
    pub client_cert_connections: u64,
    /// Requests parsed (any method, any path).
    pub requests: u64,
    /// Requests per URL path.
    pub per_path: BTreeMap<String, u64>,
    /// Body bytes handed to the socket (HEAD and headers not counted).
    pub body_bytes_sent: u64,
    /// Every `Range` header received, in order.
    pub range_headers: Vec<String>,
    /// Every request, in order.
    pub log: Vec<RequestRecord>,
}

impl Stats {
    /// Requests for `path`.
    pub fn requests_for(&self, path: &str) -> u64 {
        self.per_path.get(&norm_path(path)).copied().unwrap_or(0)
    }
}

struct Shared {
    root: PathBuf,
    faults: Arc<Mutex<Faults>>,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A running server; stopped (listener closed, connections dropped) on drop.
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts serving `root_dir` on 127.0.0.1. Panics if it cannot.
    pub fn start(root_dir: PathBuf, opts: ServerOptions) -> Server {
        let listener = StdTcpListener::bind(("127.0.0.1", opts.port)).expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let acceptor = opts.tls.as_ref().map(|pki| {
            TlsAcceptor::from(Arc::new(tls_config(
                pki,
                &opts.server_cert,
                opts.client_auth,
            )))
        });
        let tls = acceptor.is_some();
        let shared = Arc::new(Shared {
            root: root_dir,
            faults: Arc::new(Mutex::new(Faults::default())),
            stats: Mutex::new(Stats::default()),
        });
        let (tx, rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("test-server-worker")
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    accept_loop(listener, acceptor, thread_shared, rx).await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn server thread");
        Server {
            addr,
            tls,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The listening address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT` (or `http://` in plain mode), no trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    /// The URL of `path` (with or without leading slash) on 127.0.0.1.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), norm_path(path))
    }

    /// The URL of `path` with host `localhost` (the certificate's DNS name).
    pub fn localhost_url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}{}", self.port(), norm_path(path))
    }

    /// The live fault settings, shared with the server.
    pub fn faults(&self) -> Arc<Mutex<Faults>> {
        self.shared.faults.clone()
    }

    /// Changes the faults under the lock: `server.with_faults(|f| { f.stall(d); })`.
    pub fn with_faults<R>(&self, change: impl FnOnce(&mut Faults) -> R) -> R {
        change(&mut lock(&self.shared.faults))
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats().clone()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        *self.shared.stats() = Stats::default();
    }

    /// Requests so far.
    pub fn requests(&self) -> u64 {
        self.shared.stats().requests
    }

    /// Requests for `path` so far.
    pub fn requests_for(&self, path: &str) -> u64 {
        self.shared.stats().requests_for(path)
    }

    /// The `Range` headers received so far, in order.
    pub fn range_headers(&self) -> Vec<String> {
        self.shared.stats().range_headers.clone()
    }

    /// Body bytes sent so far.
    pub fn body_bytes_sent(&self) -> u64 {
        self.shared.stats().body_bytes_sent
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.stats().connections
    }

    /// Polls the counters every 5 ms until `cond` holds (true) or `timeout`
    /// passes (false).
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&Stats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.shared.stats()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the server (the same as dropping it).
    pub fn stop(self) {}
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    next_id += 1;
                    shared.stats().connections += 1;
                    tokio::spawn(serve_connection(tcp, next_id, acceptor.clone(), shared.clone()));
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    id: u64,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    match acceptor {
        None => serve_http(tcp, id, &shared).await,
        Some(acceptor) => {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    if tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty())
                    {
                        shared.stats().client_cert_connections += 1;
                    }
                    serve_http(tls, id, &shared).await
                }
                _ => shared.stats().tls_failures += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------

const MAX_HEAD: usize = 64 * 1024;
const CHUNK: usize = 64 * 1024;

struct Request {
    method: String,
    path: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        conn.contains("close") || (self.http10 && !conn.contains("keep-alive"))
    }
}

/// What to do with the connection after a response.
enum After {
    KeepAlive,
    /// Close gracefully (TLS close_notify, FIN).
    Close,
    /// Just drop it.
    Abort,
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, conn: u64, shared: &Shared) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head = match read_head(&mut s, &mut buf).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(HeadError::Io) => return,
            Err(HeadError::Status(code)) => {
                let _ = write_simple(&mut s, code, false, true).await;
                return;
            }
        };
        let Some(req) = parse_request(&head) else {
            let _ = write_simple(&mut s, 400, false, true).await;
            return;
        };
        if req.header("transfer-encoding").is_some() {
            let _ = write_simple(&mut s, 501, false, true).await;
            return;
        }
        let body_len = req
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if discard(&mut s, &mut buf, body_len.unwrap_or(0))
            .await
            .is_err()
        {
            return;
        }
        match respond(&mut s, conn, &req, shared).await {
            Ok(After::KeepAlive) => {}
            Ok(After::Close) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
                return;
            }
            Ok(After::Abort) | Err(_) => return,
        }
    }
}

enum HeadError {
    /// The connection failed or ended mid-head: just close.
    Io,
    /// Not a request we can read: answer with this status and close.
    Status(u16),
}

/// Reads up to the end of a request head; leaves what follows in `buf`.
/// `Ok(None)` on a clean end of stream between requests. Bytes that cannot
/// start a request line (e.g. a TLS ClientHello sent to the plain HTTP
/// server) get a 400 at once rather than a wait for a blank line.
async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, HeadError> {
    let mut chunk = [0u8; 8192];
    loop {
        if buf.first().is_some_and(|b| !b.is_ascii_alphabetic()) {
            return Err(HeadError::Status(400));
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some(std::mem::replace(buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::Status(431));
        }
        let n = s.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Io)
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn discard<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let from_buf = (len as usize).min(buf.len());
    buf.drain(..from_buf);
    let mut left = len - from_buf as u64;
    let mut chunk = [0u8; 8192];
    while left > 0 {
        let want = (left as usize).min(chunk.len());
        let n = s.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(())
}

fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || method.is_empty() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    // Absolute form (http://host/path) as sent to proxies.
    let target = match target.find("://") {
        Some(i) => target[i + 3..]
            .find('/')
            .map_or("/", |j| &target[i + 3 + j..]),
        None => target,
    };
    let path = target.split(['?', '#']).next().unwrap_or("/");
    Some(Request {
        method,
        path: percent_decode(path)?,
        http10: version == "HTTP/1.0",
        headers,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The regular file for a URL path under root, refusing `..`.
fn resolve(root: &Path, url_path: &str) -> Option<(PathBuf, u64)> {
    let rel = Path::new(url_path.trim_start_matches('/'));
    let mut path = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let meta = std::fs::metadata(&path).ok()?;
    meta.is_file().then_some((path, meta.len()))
}

enum RangeReq {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, len: u64) -> RangeReq {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReq::Whole;
    };
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeReq::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => RangeReq::Unsatisfiable,
            Ok(_) if len == 0 => RangeReq::Unsatisfiable,
            Ok(n) => RangeReq::Part(len.saturating_sub(n), len - 1),
            Err(_) => RangeReq::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Whole;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return RangeReq::Whole,
        }
    };
    if start >= len {
        RangeReq::Unsatisfiable
    } else {
        RangeReq::Part(start, end.min(len - 1))
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A status response with a short text body.
async fn write_simple<S: AsyncWrite + Unpin>(
    s: &mut S,
    code: u16,
    head_only: bool,
    close: bool,
) -> io::Result<After> {
    let body = format!("{code} {}\n", reason(code));
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        reason(code),
        body.len()
    );
    if code == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "\r\n"
    });
    if !head_only {
        head.push_str(&body);
    }
    s.write_all(head.as_bytes()).await?;
    s.flush().await?;
    Ok(if close {
        After::Close
    } else {
        After::KeepAlive
    })
}

/// What one response sends as its body.
struct BodyPlan {
    file: Option<PathBuf>,
    /// File offset of the first body byte.
    start: u64,
    /// Body length; `None` = endless.
    len: Option<u64>,
    drop_after: Option<u64>,
    stall: Option<(u64, Duration)>,
    trickle: Option<u64>,
    /// Body position of the byte to flip.
    corrupt_at: Option<u64>,
}

enum Plan {
    Status(u16),
    Body {
        status: u16,
        headers: String,
        body: BodyPlan,
        close: bool,
    },
}

fn plan(req: &Request, shared: &Shared) -> Plan {
    let file = resolve(&shared.root, &req.path);
    let get = req.method == "GET";
    let mut f = lock(&shared.faults);
    let fail = match &mut f.fail_every_second {
        Some(n) => {
            *n += 1;
            *n % 2 == 0
        }
        None => false,
    };
    if let Some(&code) = f.status.get(&req.path) {
        return Plan::Status(code);
    }
    if fail {
        return Plan::Status(500);
    }
    if !get && req.method != "HEAD" {
        return Plan::Status(405);
    }
    let (status, mut headers, start, len, close) = if let Some(&mode) = f.endless.get(&req.path) {
        let headers = match mode {
            Endless::NoLength => "Connection: close\r\n".to_string(),
            Endless::LyingLength(n) => format!("Content-Length: {n}\r\n"),
        };
        (200, headers, 0, None, mode == Endless::NoLength)
    } else {
        let Some((_, file_len)) = &file else {
            return Plan::Status(404);
        };
        let file_len = *file_len;
        let range = if f.ignore_range || !get {
            RangeReq::Whole
        } else {
            parse_range(req.header("range"), file_len)
        };
        match range {
            RangeReq::Whole => (
                200,
                format!("Content-Length: {file_len}\r\nAccept-Ranges: bytes\r\n"),
                0,
                Some(file_len),
                false,
            ),
            RangeReq::Part(a, b) => (
                206,
                format!(
                    "Content-Length: {}\r\nAccept-Ranges: bytes\r\nContent-Range: bytes {a}-{b}/{file_len}\r\n",
                    b - a + 1
                ),
                a,
                Some(b - a + 1),
                false,
            ),
            RangeReq::Unsatisfiable => (
                416,
                format!("Content-Length: 0\r\nAccept-Ranges: bytes\r\nContent-Range: bytes */{file_len}\r\n"),
                0,
                Some(0),
                false,
            ),
        }
    };
    headers.push_str("Content-Type: application/octet-stream\r\n");
    let mut body = BodyPlan {
        file: file.map(|(p, _)| p),
        start,
        len: if get { len } else { Some(0) },
        drop_after: None,
        stall: None,
        trickle: None,
        corrupt_at: None,
    };
    if get && status != 416 {
        let longer_than = |n: u64| match body.len {
            Some(len) => len > n,
            None => true,
        };
        if let Some((n, times)) = &mut f.drop_after {
            if longer_than(*n) && times.take() {
                body.drop_after = Some(*n);
            }
        }
        if let Some((n, d, times)) = &mut f.stall {
            if (*n == 0 || longer_than(*n - 1)) && times.take() {
                body.stall = Some((*n, *d));
            }
        }
        if let Some((offset, times)) = &mut f.corrupt {
            if *offset >= start && longer_than(*offset - start) && times.take() {
                body.corrupt_at = Some(*offset - start);
            }
        }
        body.trickle = f.trickle;
    }
    Plan::Body {
        status,
        headers,
        body,
        close,
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    conn: u64,
    req: &Request,
    shared: &Shared,
) -> io::Result<After> {
    let plan = plan(req, shared);
    let status = match &plan {
        Plan::Status(code) => *code,
        Plan::Body { status, .. } => *status,
    };
    {
        let range = req.header("range").map(str::to_string);
        let mut stats = shared.stats();
        stats.requests += 1;
        *stats.per_path.entry(req.path.clone()).or_default() += 1;
        if let Some(r) = &range {
            stats.range_headers.push(r.clone());
        }
        stats.log.push(RequestRecord {
            connection: conn,
            method: req.method.clone(),
            path: req.path.clone(),
            range,
            status,
        });
    }
    let close_requested = req.wants_close();
    match plan {
        Plan::Status(code) => {
            write_simple(
                s,
                code,
                req.method == "HEAD",
                close_requested || code == 405,
            )
            .await
        }
        Plan::Body {
            status,
            mut headers,
            body,
            close,
        } => {
            let close = close || close_requested;
            if close && !headers.contains("Connection: close") {
                headers.push_str("Connection: close\r\n");
            } else if !close && req.http10 {
                headers.push_str("Connection: keep-alive\r\n");
            }
            let head = format!("HTTP/1.1 {status} {}\r\n{headers}\r\n", reason(status));
            s.write_all(head.as_bytes()).await?;
            s.flush().await?;
            match send_body(s, body, shared).await? {
                After::KeepAlive if close => Ok(After::Close),
                after => Ok(after),
            }
        }
    }
}

/// Reads the body: the file from `start`, then (endless) zeros.
struct BodySource {
    file: Option<File>,
    endless: bool,
}

impl BodySource {
    fn open(plan: &BodyPlan) -> io::Result<BodySource> {
        let mut file = match &plan.file {
            Some(path) => Some(File::open(path)?),
            None => None,
        };
        if let Some(f) = &mut file {
            f.seek(SeekFrom::Start(plan.start))?;
        }
        Ok(BodySource {
            file,
            endless: plan.len.is_none(),
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &mut self.file {
            let n = f.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.file = None;
        }
        if self.endless {
            buf.fill(0);
            Ok(buf.len())
        } else {
            Ok(0)
        }
    }
}

async fn send_body<S: AsyncWrite + Unpin>(
    s: &mut S,
    plan: BodyPlan,
    shared: &Shared,
) -> io::Result<After> {
    let mut src = BodySource::open(&plan)?;
    let t0 = Instant::now();
    let mut pos = 0u64;
    let mut stalled = false;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if let Some((at, duration)) = plan.stall {
            if !stalled && pos == at {
                s.flush().await?;
                tokio::time::sleep(duration).await;
                stalled = true;
            }
        }
        if plan.drop_after == Some(pos) {
            s.flush().await?;
            return Ok(After::Abort);
        }
        let mut want = CHUNK as u64;
        if let Some(len) = plan.len {
            want = want.min(len - pos);
        }
        if want == 0 {
            return Ok(After::KeepAlive);
        }
        if let Some(n) = plan.drop_after {
            want = want.min(n - pos);
        }
        if let Some((at, _)) = plan.stall {
            if !stalled {
                want = want.min(at - pos);
            }
        }
        if let Some(bps) = plan.trickle {
            want = want.min((bps / 10).clamp(1, CHUNK as u64));
        }
        let got = src.read(&mut buf[..want as usize])?;
        if got == 0 {
            // The file shrank under us: the declared length cannot be met.
            return Ok(After::Abort);
        }
        let got64 = got as u64;
        if let Some(c) = plan.corrupt_at {
            if (pos..pos + got64).contains(&c) {
                buf[(c - pos) as usize] ^= 0xFF;
            }
        }
        if let Some(bps) = plan.trickle {
            let due = t0 + Duration::from_secs_f64((pos + got64) as f64 / bps as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        shared.stats().body_bytes_sent += got64;
        s.write_all(&buf[..got]).await?;
        s.flush().await?;
        pos += got64;
    }
}

//! Tests of the test server in `support/https_server.rs` itself: what it
//! serves, each fault as a client sees it, and the TLS / mutual TLS cases.
//! The client is reqwest (blocking, rustls, no built-in roots, no proxy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/https_server.rs"]
mod https_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use https_server::{ClientAuth, Endless, Server, ServerCert, ServerOptions, TestPki, Times};
use reqwest::blocking::{Client, ClientBuilder, Response};
use reqwest::header::{HeaderMap, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

const BIG: usize = 256 * 1024;
const SMALL: usize = 4096;
const WAIT: Duration = Duration::from_secs(5);

/// Deterministic, non-repeating test content.
fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    big: Vec<u8>,
    small: Vec<u8>,
}

/// A root with /big.bin (256 KiB), /small.bin (4 KiB), /sub/dir/file.txt.
fn fixture(opts: ServerOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let big = content(BIG, 0x1234_5678);
    let small = content(SMALL, 0x0bad_cafe);
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    std::fs::write(dir.path().join("small.bin"), &small).unwrap();
    std::fs::create_dir_all(dir.path().join("sub/dir")).unwrap();
    std::fs::write(dir.path().join("sub/dir/file.txt"), b"nested\n").unwrap();
    let server = Server::start(dir.path().to_owned(), opts);
    Fixture {
        _dir: dir,
        server,
        big,
        small,
    }
}

fn https() -> Fixture {
    fixture(ServerOptions::https(TestPki::shared()))
}

/// A client trusting only `ca_pem`.
fn builder(ca_pem: &str) -> ClientBuilder {
    Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
}

fn client() -> Client {
    builder(&TestPki::shared().ca_pem).build().unwrap()
}

fn get(client: &Client, url: &str, range: Option<&str>) -> Response {
    let mut req = client.get(url);
    if let Some(r) = range {
        req = req.header(RANGE, r);
    }
    req.send().unwrap()
}

fn header(h: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

/// Reads at most `limit` bytes; returns them and the error that ended the
/// body early, if any.
fn read_body(resp: &mut Response, limit: usize) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while got.len() < limit {
        let want = buf.len().min(limit - got.len());
        match resp.read(&mut buf[..want]) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

fn statuses(server: &Server) -> Vec<u16> {
    server.stats().log.iter().map(|r| r.status).collect()
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

#[test]
fn full_get_serves_the_file_with_length_and_accept_ranges() {
    let fx = https();
    let c = client();
    let resp = get(&c, &fx.server.url("/big.bin"), None);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), CONTENT_LENGTH), Some("262144"));
    assert_eq!(header(resp.headers(), ACCEPT_RANGES), Some("bytes"));
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.big[..]);

    // The certificate's DNS name works too, and nested paths.
    let resp = get(&c, &fx.server.localhost_url("small.bin"), None);
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.small[..]);
    let resp = get(&c, &fx.server.url("sub/dir/file.txt"), None);
    assert_eq!(resp.text().unwrap(), "nested\n");
    let resp = get(&c, &fx.server.url("/missing.bin"), None);
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = get(&c, &fx.server.url("/sub"), None);
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "directories are not served"
    );

    let stats = fx.server.stats();
    assert_eq!(stats.requests, 5);
    assert_eq!(stats.requests_for("/big.bin"), 1);
    assert_eq!(stats.requests_for("small.bin"), 1);
    assert_eq!(stats.body_bytes_sent, (BIG + SMALL + 7) as u64);
    assert!(stats.range_headers.is_empty());
    assert_eq!(statuses(&fx.server), [200, 200, 200, 404, 404]);
}

#[test]
fn range_requests_get_206_with_the_right_bytes_and_headers() {
    let fx = https();
    let c = client();
    let url = fx.server.url("/big.bin");
    let cases: [(&str, usize, usize); 4] = [
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=260000-", 260000, BIG - 1),
        ("bytes=-100", BIG - 100, BIG - 1),
        ("bytes=5-999999", 5, BIG - 1),
    ];
    for (range, a, b) in cases {
        let resp = get(&c, &url, Some(range));
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let h = resp.headers();
        let content_range = format!("bytes {a}-{b}/{BIG}");
        assert_eq!(
            header(h, CONTENT_RANGE),
            Some(content_range.as_str()),
            "{range}"
        );
        assert_eq!(
            header(h, CONTENT_LENGTH),
            Some((b - a + 1).to_string().as_str())
        );
        assert_eq!(header(h, ACCEPT_RANGES), Some("bytes"));
        assert_eq!(resp.bytes().unwrap().as_ref(), &fx.big[a..=b], "{range}");
    }
    assert_eq!(fx.server.range_headers(), cases.map(|c| c.0));

    // A multi-range request is answered with the whole file.
    let resp = get(&c, &url, Some("bytes=0-9,20-29"));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().unwrap().len(), BIG);
}

#[test]
fn unsatisfiable_range_is_416() {
    let fx = https();
    let c = client();
    for range in ["bytes=262144-", "bytes=300000-300010", "bytes=-0"] {
        let resp = get(&c, &fx.server.url("/big.bin"), Some(range));
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            header(resp.headers(), CONTENT_RANGE),
            Some("bytes */262144")
        );
        assert!(resp.bytes().unwrap().is_empty());
    }
    assert_eq!(fx.server.body_bytes_sent(), 0);
}

#[test]
fn head_has_the_headers_and_no_body() {
    let fx = https();
    let c = client();
    let resp = c.head(fx.server.url("/big.bin")).send().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), CONTENT_LENGTH), Some("262144"));
    assert_eq!(header(resp.headers(), ACCEPT_RANGES), Some("bytes"));
    assert!(resp.bytes().unwrap().is_empty());
    let resp = c.head(fx.server.url("/missing")).send().unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The connection is still usable after HEAD (no stray body bytes).
    let resp = get(&c, &fx.server.url("/small.bin"), None);
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.small[..]);
    assert_eq!(fx.server.body_bytes_sent(), SMALL as u64);
    let log = fx.server.stats().log;
    assert_eq!(log[0].method, "HEAD");
    assert_eq!(log[2].method, "GET");
}

#[test]
fn keep_alive_reuses_the_tls_connection() {
    let fx = https();
    let c = client();
    for _ in 0..5 {
        let resp = get(&c, &fx.server.url("/small.bin"), None);
        assert_eq!(resp.bytes().unwrap().len(), SMALL);
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = fx.server.stats();
    assert_eq!(stats.requests, 5);
    assert!(
        stats.connections < 5,
        "no reuse: {} connections",
        stats.connections
    );
    assert!(stats
        .log
        .windows(2)
        .any(|w| w[0].connection == w[1].connection));
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 (plain mode): keep-alive, pipelining, Connection: close
// ---------------------------------------------------------------------------

type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

fn raw_response(r: &mut BufReader<TcpStream>) -> RawResponse {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).expect(&line).parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (status, headers, body)
}

fn raw_connect(server: &Server) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

#[test]
fn plain_http_keeps_alive_pipelines_and_honours_connection_close() {
    let fx = fixture(ServerOptions::plain_http());
    let (mut s, mut r) = raw_connect(&fx.server);
    // Two pipelined requests in one write, then a third.
    s.write_all(
        b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n",
    )
    .unwrap();
    let (status, _, body) = raw_response(&mut r);
    assert_eq!((status, body.as_slice()), (200, &fx.small[..]));
    let (status, headers, body) = raw_response(&mut r);
    assert_eq!((status, body.as_slice()), (206, &fx.big[10..20]));
    assert!(headers.contains(&("content-range".into(), format!("bytes 10-19/{BIG}"))));
    // Query strings are ignored, %-escapes decoded, `..` refused.
    s.write_all(b"GET /sub/dir/fil%65.txt?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(raw_response(&mut r).2, b"nested\n");
    s.write_all(b"GET /sub/../small.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(raw_response(&mut r).0, 404);
    s.write_all(b"POST /small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert_eq!(raw_response(&mut r).0, 405);
    // 405 closes; a new connection with Connection: close is closed after the response.
    let (mut s, mut r) = raw_connect(&fx.server);
    s.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, headers, _) = raw_response(&mut r);
    assert_eq!(status, 200);
    assert!(headers.contains(&("connection".into(), "close".into())));
    let mut rest = Vec::new();
    assert_eq!(
        r.read_to_end(&mut rest).unwrap(),
        0,
        "closed after the response"
    );

    let stats = fx.server.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.log.iter().filter(|l| l.connection == 1).count(), 5);
}

#[test]
fn plain_http_mode_serves_reqwest_over_http() {
    let fx = fixture(ServerOptions::plain_http());
    assert!(fx.server.base_url().starts_with("http://127.0.0.1:"));
    let c = Client::builder().no_proxy().timeout(WAIT).build().unwrap();
    let resp = get(&c, &fx.server.url("/big.bin"), Some("bytes=100-"));
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.big[100..]);
    // An HTTPS client cannot talk to it, and finds out at once.
    let t0 = Instant::now();
    let https_url = fx.server.url("/big.bin").replace("http:", "https:");
    assert!(client().get(https_url).send().is_err());
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

#[test]
fn drop_after_cuts_the_body_once_then_serves_normally() {
    let fx = https();
    let c = client();
    let url = fx.server.url("/big.bin");
    fx.server.with_faults(|f| {
        f.drop_after(10_000);
    });
    let mut resp = get(&c, &url, None);
    assert_eq!(resp.status(), StatusCode::OK);
    let (got, err) = read_body(&mut resp, BIG);
    assert!(
        err.is_some(),
        "a cut body must end in an error, got {} bytes",
        got.len()
    );
    assert_eq!(got.len(), 10_000);
    assert_eq!(got, &fx.big[..10_000]);
    // A resume with Range from the cut gets the rest.
    let resp = get(&c, &url, Some("bytes=10000-"));
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.big[10_000..]);
    assert_eq!(fx.server.range_headers(), ["bytes=10000-"]);
    assert_eq!(fx.server.body_bytes_sent(), BIG as u64);
    assert_eq!(
        fx.server.connections(),
        2,
        "the cut connection is not reused"
    );
}

#[test]
fn drop_after_for_the_next_k_responses() {
    let fx = https();
    let c = client();
    fx.server.with_faults(|f| {
        f.drop_after_times(1000, Times::Next(2));
    });
    // A body not longer than n is not cut and does not use the fault up.
    let resp = get(&c, &fx.server.url("/big.bin"), Some("bytes=0-999"));
    assert_eq!(resp.bytes().unwrap().len(), 1000);
    for _ in 0..2 {
        let mut resp = get(&c, &fx.server.url("/small.bin"), None);
        let (got, err) = read_body(&mut resp, SMALL);
        assert!(
            err.is_some() && got.len() == 1000,
            "{} bytes, {err:?}",
            got.len()
        );
    }
    let resp = get(&c, &fx.server.url("/small.bin"), None);
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.small[..]);
}

#[test]
fn stall_after_headers_trips_the_client_read_timeout() {
    let fx = https();
    let c = builder(&TestPki::shared().ca_pem)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    fx.server.with_faults(|f| {
        f.stall(Duration::from_secs(5));
    });
    let t0 = Instant::now();
    let mut resp = get(&c, &fx.server.url("/small.bin"), None);
    assert_eq!(resp.status(), StatusCode::OK);
    let (got, err) = read_body(&mut resp, SMALL);
    let elapsed = t0.elapsed();
    assert!(
        got.is_empty() && err.is_some(),
        "{} bytes, {err:?}",
        got.len()
    );
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    // Used up: the next request goes through at once.
    let resp = get(&c, &fx.server.url("/small.bin"), None);
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.small[..]);
}

#[test]
fn stall_after_n_bytes_then_the_rest_arrives() {
    let fx = https();
    let c = client();
    fx.server.with_faults(|f| {
        f.stall_after(5000, Duration::from_millis(300), Times::Once);
    });
    let t0 = Instant::now();
    let resp = get(&c, &fx.server.url("/big.bin"), None);
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.big[..]);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // Stalled in the middle, a short-timeout client gets the first n bytes.
    let c = builder(&TestPki::shared().ca_pem)
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    fx.server.with_faults(|f| {
        f.stall_after(5000, Duration::from_secs(5), Times::Always);
    });
    let mut resp = get(&c, &fx.server.url("/big.bin"), None);
    let (got, err) = read_body(&mut resp, BIG);
    assert!(err.is_some());
    assert_eq!(got, &fx.big[..5000]);
}

#[test]
fn trickle_limits_the_rate() {
    let fx = https();
    let c = client();
    let rate = 4096u64;
    fx.server.with_faults(|f| {
        f.trickle(rate);
    });
    let t0 = Instant::now();
    let resp = get(&c, &fx.server.url("/big.bin"), Some("bytes=0-6143"));
    let body = resp.bytes().unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(body.as_ref(), &fx.big[..6144]);
    let measured = 6144.0 / elapsed;
    assert!(
        measured <= rate as f64 * 1.5,
        "{measured:.0} B/s > 1.5 × {rate}"
    );
    assert!(
        elapsed >= 1.4,
        "6144 bytes at {rate} B/s took only {elapsed:.2} s"
    );
}

#[test]
fn corrupt_flips_exactly_the_byte_at_the_offset() {
    let fx = https();
    let c = client();
    let url = fx.server.url("/big.bin");
    fx.server.with_faults(|f| {
        f.corrupt(1234);
    });
    let body = get(&c, &url, None).bytes().unwrap();
    let diffs: Vec<usize> = (0..BIG).filter(|&i| body[i] != fx.big[i]).collect();
    assert_eq!(diffs, [1234]);
    assert_eq!(body[1234], fx.big[1234] ^ 0xFF);
    assert_eq!(
        get(&c, &url, None).bytes().unwrap().as_ref(),
        &fx.big[..],
        "once"
    );

    // Always, at a file offset, within ranges that cover it only.
    fx.server.with_faults(|f| {
        f.corrupt_always(100_000);
    });
    for _ in 0..2 {
        let body = get(&c, &url, Some("bytes=99000-100999")).bytes().unwrap();
        let diffs: Vec<usize> = (0..2000)
            .filter(|&i| body[i] != fx.big[99_000 + i])
            .collect();
        assert_eq!(diffs, [1000]);
    }
    let body = get(&c, &url, Some("bytes=0-999")).bytes().unwrap();
    assert_eq!(body.as_ref(), &fx.big[..1000]);
}

#[test]
fn fail_every_second_request_gives_500_on_every_second() {
    let fx = https();
    let c = client();
    get(&c, &fx.server.url("/small.bin"), None).bytes().unwrap();
    fx.server.with_faults(|f| {
        f.fail_every_second_request();
    });
    let got: Vec<u16> = (0..4)
        .map(|_| {
            let resp = get(&c, &fx.server.url("/small.bin"), None);
            let status = resp.status().as_u16();
            resp.bytes().unwrap();
            status
        })
        .collect();
    assert_eq!(got, [200, 500, 200, 500]);
    assert_eq!(statuses(&fx.server), [200, 200, 500, 200, 500]);
}

#[test]
fn ignore_range_answers_200_with_the_whole_file() {
    let fx = https();
    let c = client();
    fx.server.with_faults(|f| {
        f.ignore_range();
    });
    let resp = get(&c, &fx.server.url("/big.bin"), Some("bytes=10-19"));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), CONTENT_RANGE), None);
    assert_eq!(header(resp.headers(), CONTENT_LENGTH), Some("262144"));
    assert_eq!(resp.bytes().unwrap().as_ref(), &fx.big[..]);
    assert_eq!(fx.server.range_headers(), ["bytes=10-19"]);
}

#[test]
fn endless_bodies_go_past_the_file_size() {
    let fx = https();
    let c = client();
    fx.server.with_faults(|f| {
        f.endless("/small.bin")
            .endless_with("big.bin", Endless::LyingLength(BIG as u64));
    });
    // No Content-Length: the body keeps coming.
    let mut resp = get(&c, &fx.server.url("/small.bin"), None);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), CONTENT_LENGTH), None);
    let (got, err) = read_body(&mut resp, 3 * SMALL);
    assert!(err.is_none());
    assert_eq!(got.len(), 3 * SMALL);
    assert_eq!(&got[..SMALL], &fx.small[..]);
    drop(resp);

    // A lying Content-Length: the client stops at the declared size, the
    // server keeps sending until the connection goes.
    let mut resp = get(&c, &fx.server.url("/big.bin"), Some("bytes=0-9"));
    assert_eq!(resp.status(), StatusCode::OK, "endless ignores Range");
    assert_eq!(header(resp.headers(), CONTENT_LENGTH), Some("262144"));
    let (got, _) = read_body(&mut resp, BIG);
    assert_eq!(got, fx.big);
    drop(resp);
    assert!(
        fx.server
            .wait_until(WAIT, |s| s.body_bytes_sent > (3 * SMALL + BIG) as u64),
        "sent {}",
        fx.server.body_bytes_sent()
    );

    // Works for a path with no file behind it (zeros).
    fx.server.with_faults(|f| {
        f.endless("/stream");
    });
    let mut resp = get(&c, &fx.server.url("/stream"), None);
    let (got, _) = read_body(&mut resp, 10_000);
    assert_eq!(got, vec![0; 10_000]);
}

#[test]
fn status_gives_a_fixed_status_for_a_path() {
    let fx = https();
    let c = client();
    fx.server.with_faults(|f| {
        f.status("/small.bin", 404).status("/gone", 503);
    });
    assert_eq!(
        get(&c, &fx.server.url("/small.bin"), None).status(),
        StatusCode::NOT_FOUND
    );
    let resp = c.head(fx.server.url("/small.bin")).send().unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get(&c, &fx.server.url("/gone"), None).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&c, &fx.server.url("/big.bin"), None).status(),
        StatusCode::OK
    );
    fx.server.clear_faults();
    assert_eq!(
        get(&c, &fx.server.url("/small.bin"), None).status(),
        StatusCode::OK
    );
    assert_eq!(fx.server.requests_for("/small.bin"), 3);
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

#[test]
fn a_client_trusting_only_the_other_ca_fails_the_handshake() {
    let pki = TestPki::shared();
    let fx = https();
    let c = builder(&pki.other_ca_pem).build().unwrap();
    let err = c.get(fx.server.url("/small.bin")).send().unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(fx.server.wait_until(WAIT, |s| s.tls_failures == 1));
    assert_eq!(fx.server.requests(), 0);
}

#[test]
fn man_in_the_middle_wrong_name_and_expired_certificates_are_refused() {
    let pki = TestPki::shared();
    for cert in [
        ServerCert::OtherCa,
        ServerCert::WrongName,
        ServerCert::Expired,
    ] {
        let fx = fixture(ServerOptions::https(pki).server_cert(cert.clone()));
        let err = client()
            .get(fx.server.url("/small.bin"))
            .send()
            .unwrap_err();
        assert!(err.is_connect(), "{cert:?}: {err:?}");
        assert!(
            fx.server.wait_until(WAIT, |s| s.tls_failures == 1),
            "{cert:?}"
        );
        assert_eq!(fx.server.requests(), 0, "{cert:?}");
    }
    // The man in the middle's certificate is valid for whoever trusts its CA.
    let fx = fixture(ServerOptions::https(pki).other_ca_cert());
    let c = builder(&pki.other_ca_pem).build().unwrap();
    assert_eq!(
        get(&c, &fx.server.url("/small.bin"), None)
            .bytes()
            .unwrap()
            .len(),
        SMALL
    );
}

#[test]
fn required_client_certificate_refuses_none_and_the_wrong_one() {
    let pki = TestPki::shared();
    let fx = fixture(ServerOptions::https(pki).require_client_cert());
    let url = fx.server.url("/small.bin");

    let anonymous = client();
    assert!(anonymous.get(&url).send().is_err(), "no client certificate");
    let wrong = builder(&pki.ca_pem)
        .identity(reqwest::Identity::from_pem(&pki.other_client_identity_pem()).unwrap())
        .build()
        .unwrap();
    assert!(
        wrong.get(&url).send().is_err(),
        "the other CA's client certificate"
    );
    assert!(fx.server.wait_until(WAIT, |s| s.tls_failures == 2));
    assert_eq!(fx.server.requests(), 0);

    let device = builder(&pki.ca_pem)
        .identity(reqwest::Identity::from_pem(&pki.client_identity_pem()).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        get(&device, &url, None).bytes().unwrap().as_ref(),
        &fx.small[..]
    );
    let stats = fx.server.stats();
    assert_eq!((stats.requests, stats.client_cert_connections), (1, 1));
}

#[test]
fn optional_client_certificate_is_recorded_when_sent() {
    let pki = TestPki::shared();
    let fx = fixture(ServerOptions::https(pki).client_auth(ClientAuth::Optional));
    let url = fx.server.url("/small.bin");
    assert_eq!(get(&client(), &url, None).status(), StatusCode::OK);
    assert_eq!(fx.server.stats().client_cert_connections, 0);
    let device = builder(&pki.ca_pem)
        .identity(reqwest::Identity::from_pem(&pki.client_identity_pem()).unwrap())
        .build()
        .unwrap();
    assert_eq!(get(&device, &url, None).status(), StatusCode::OK);
    assert_eq!(fx.server.stats().client_cert_connections, 1);
}

#[test]
fn pki_files_are_written_and_usable() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let paths = pki.write_to(dir.path());
    for name in [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "client-identity.pem",
        "other-ca.pem",
        "other-server.pem",
        "other-server.key",
        "other-client.pem",
        "other-client.key",
    ] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(&paths.client_key).unwrap(),
        pki.client_key_pem
    );
    assert_ne!(
        pki.ca_pem,
        TestPki::shared().ca_pem,
        "generate() makes a new CA"
    );

    // A server with this PKI, reached with a client configured from the files.
    let fx = fixture(ServerOptions::https(&pki).require_client_cert());
    let ca = std::fs::read(&paths.ca).unwrap();
    let identity = std::fs::read(&paths.client_identity).unwrap();
    let c = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    assert_eq!(
        get(&c, &fx.server.localhost_url("/small.bin"), None).status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------
// Life cycle
// ---------------------------------------------------------------------------

#[test]
fn drop_stops_the_server_and_the_port_can_be_reused() {
    let fx = fixture(ServerOptions::plain_http());
    let port = fx.server.port();
    // A connection stalled in a long response must not hold the stop up.
    fx.server.with_faults(|f| {
        f.stall(Duration::from_secs(30));
    });
    let (mut s, mut r) = raw_connect(&fx.server);
    s.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");

    let t0 = Instant::now();
    let Fixture {
        _dir: dir, server, ..
    } = fx;
    server.stop();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t0.elapsed()
    );
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.len() < SMALL, "the stalled response was cut");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );

    let server = Server::start(
        dir.path().to_owned(),
        ServerOptions::plain_http().port(port),
    );
    assert_eq!(server.port(), port);
    let (mut s, mut r) = raw_connect(&server);
    s.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(raw_response(&mut r).0, 200);
}

#[tokio::test]
async fn works_from_an_async_test() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = fixture(ServerOptions::plain_http());
    let mut s = tokio::net::TcpStream::connect(fx.server.addr())
        .await
        .unwrap();
    s.write_all(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(got.ends_with(&fx.small));
    drop(fx); // stops the server from inside a runtime without panicking
}

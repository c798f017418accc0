//! Benchmark (not a timed test; ignored by default): a full HTTPS install
//! of a real root filesystem image, next to `curl | dd` of the raw image
//! from the same server, in the same run. Run it with
//! `bash tests/bench-network.sh`, which builds the image and the release
//! binaries. Prints seconds, bytes downloaded and seesaw's peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
#[path = "support/https_server.rs"]
mod https_server;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use https_server::{Server, ServerOptions, TestPki};
use seesaw::bundle::{self, CreateOptions, Outputs};
use seesaw::trust::{PrivateKey, Signer};

fn timed(cmd: &mut Command) -> (f64, u64) {
    let t = Instant::now();
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs = t.elapsed().as_secs_f64();
    // `/usr/bin/time -f %M` prints the peak RSS in KiB as its last line.
    let rss = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (secs, rss)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fresh_board(d: &Path) {
    let vars = [
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ];
    board_files::write_env(d, &vars);
    let _ = std::fs::remove_dir_all(d.join("data"));
    board_files::write_cmdline(d, "A");
}

#[test]
#[ignore = "benchmark: run with tests/bench-network.sh"]
fn full_https_install_against_curl_and_dd() {
    let image =
        std::env::var("SEESAW_BENCH_IMAGE").expect("set SEESAW_BENCH_IMAGE to an image file");
    let runs: usize = std::env::var("SEESAW_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let tmp =
        tempfile::tempdir_in(std::env::var("SEESAW_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let d = tmp.path();
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::copy(&image, www.join("rootfs.img")).unwrap();
    let size = std::fs::metadata(&image).unwrap().len();

    let key = PrivateKey::from_seed(&[7; 32]);
    std::fs::write(d.join("release.pub"), key.public().to_pem().unwrap()).unwrap();
    let t = Instant::now();
    let signers: [&dyn Signer; 1] = [&key];
    bundle::create(
        Path::new(&image),
        &signers,
        &CreateOptions {
            compatible: "bench-board".into(),
            version: "1.0.0".into(),
            security_version: 1,
            created: time::OffsetDateTime::now_utc(),
            expires: None,
            chunk_size: bundle::DEFAULT_CHUNK_SIZE,
            zstd_level: bundle::DEFAULT_ZSTD_LEVEL,
            threads: 0,
        },
        Outputs {
            file: Some(&www.join("update.seesaw")),
            dir: Some(&www.join("net")),
            delta_bases: &[],
        },
    )
    .unwrap();
    let payload = std::fs::metadata(www.join("net").join(bundle::NETWORK_PAYLOAD))
        .unwrap()
        .len();
    eprintln!(
        "image {size} bytes; network payload {payload} bytes; bundles made in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let pki = TestPki::generate();
    let paths = pki.write_to(d);
    let server = Server::start(www.clone(), ServerOptions::https(&pki));
    let slot_mib = size.div_ceil(1 << 20) + 64;
    for s in ["slot-a.img", "slot-b.img"] {
        board_files::write_empty_slot(&d.join(s), slot_mib << 20);
    }
    board_files::write_fw_env_config(d);
    board_files::ConfigFile {
        compatible: "bench-board",
        roles: &[("release", 1, &["release.pub"])],
        tables: &format!("[network]\nca = \"{}\"\n", paths.ca.display()),
        ..Default::default()
    }
    .write(&d.join("seesaw.toml"));

    let (mut t_curl, mut t_ss, mut rss, mut sent) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let (c, _) = timed(Command::new("sh").arg("-c").arg(format!(
            "curl -sS --cacert '{}' '{}' | dd of='{}' bs=4M iflag=fullblock conv=fsync,notrunc status=none",
            paths.ca.display(),
            server.url("/rootfs.img"),
            d.join("slot-b.img").display()
        )));
        fresh_board(d);
        let before = server.stats().body_bytes_sent;
        let (s, r) = timed(
            Command::new("/usr/bin/time")
                .args(["-f", "%M"])
                .arg(env!("CARGO_BIN_EXE_seesaw"))
                .arg("--config")
                .arg(d.join("seesaw.toml"))
                .arg("--bus-address")
                .arg(format!("unix:path={}", d.join("no-bus").display()))
                .arg("install")
                .arg(server.url("/net/manifest.dsse.json")),
        );
        let bytes = server.stats().body_bytes_sent - before;
        eprintln!(
            "run {run}: curl | dd {c:.2} s ({size} bytes), seesaw HTTPS install {s:.2} s ({bytes} bytes downloaded, peak RSS {r} KiB)"
        );
        t_curl.push(c);
        t_ss.push(s);
        rss.push(r as f64);
        sent.push(bytes as f64);
    }
    let (c, s) = (median(&mut t_curl), median(&mut t_ss));
    eprintln!(
        "median of {runs}: curl | dd {c:.2} s; seesaw {s:.2} s = {:.2} x curl | dd; downloaded {:.0} bytes = {:.1}% of the image; peak RSS {:.1} MiB",
        s / c,
        median(&mut sent),
        median(&mut sent) * 100.0 / size as f64,
        median(&mut rss) / 1024.0
    );
}

//! Bad input never changes the board: for every kind of bad bundle, the
//! install fails with the expected typed error AND the running slot's bytes,
//! the U-Boot environment file and the persisted state are byte-identical
//! afterwards.
//!
//! The board is real files: a real ext4 image (`mkfs.ext4 -d`) in slot A, a
//! redundant U-Boot environment read by the same code `fw_printenv` agrees
//! with, a kernel command line file and a data directory with a state file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod board_files;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{parts, signed, write_bundle, Board};
use seesaw::bundle::{BundleError, RawBundle, HEADER_LEN};
use seesaw::install::InstallError;
use seesaw::manifest::{Manifest, ManifestError};
use seesaw::trust::{Envelope, TrustError, MANIFEST_PAYLOAD_TYPE};
use seesaw::updater::UpdateError;
use sha2::{Digest, Sha256};

type Check = fn(&UpdateError) -> bool;

fn threshold(e: &UpdateError) -> bool {
    matches!(
        e,
        UpdateError::Bundle(BundleError::Trust(TrustError::ThresholdNotMet { .. }))
    )
}

fn malformed(e: &UpdateError) -> bool {
    matches!(
        e,
        UpdateError::Bundle(BundleError::Manifest(ManifestError::Malformed(_)))
    )
}

#[test]
fn every_bad_bundle_is_refused_and_changes_nothing() {
    let b = Board::new();
    let good = b.create("good.bundle", "2.0.0", 5, "test-board");
    let (manifest, payload) = parts(&good);
    let mjson = manifest.to_json();
    let release = &b.release;
    let cfg = b.path("seesaw.toml");
    let two_roles = b.write_config(
        "two-roles.toml",
        "slot-b.img",
        &[("release", 1, &["release"]), ("fleet", 1, &["fleet"])],
    );
    let threshold_two = b.write_config(
        "threshold-two.toml",
        "slot-b.img",
        &[("release", 2, &["release", "release2"])],
    );
    let small_slot = b.write_config(
        "small-slot.toml",
        "slot-small.img",
        &[("release", 1, &["release"])],
    );

    let mut cases: Vec<(&str, PathBuf, PathBuf, Check)> = Vec::new();
    let mut add = |name: &'static str, config: &PathBuf, make: &dyn Fn(&Path), check: Check| {
        let p = b.path(&format!("{name}.bundle"));
        make(&p);
        cases.push((name, config.clone(), p, check));
    };

    add(
        "unsigned-image",
        &cfg,
        &|p| {
            std::fs::copy(&b.image, p).unwrap();
        },
        |e| matches!(e, UpdateError::Bundle(BundleError::NotABundle(_))),
    );
    add(
        "empty-file",
        &cfg,
        &|p| std::fs::write(p, b"").unwrap(),
        |e| matches!(e, UpdateError::Bundle(BundleError::NotABundle(_))),
    );
    add(
        "empty-signature-list",
        &cfg,
        &|p| write_bundle(p, &signed(MANIFEST_PAYLOAD_TYPE, &mjson, &[]), &payload),
        threshold,
    );
    add(
        "unknown-key",
        &cfg,
        &|p| {
            write_bundle(
                p,
                &signed(MANIFEST_PAYLOAD_TYPE, &mjson, &[&b.stranger]),
                &payload,
            )
        },
        threshold,
    );
    add(
        "bit-flip-in-payload",
        &cfg,
        &|p| {
            let mut bad = payload.clone();
            let at = bad.len() / 2;
            bad[at] ^= 0x10;
            write_bundle(p, &signed(MANIFEST_PAYLOAD_TYPE, &mjson, &[release]), &bad)
        },
        |e| {
            matches!(
                e,
                UpdateError::Install(
                    InstallError::ChunkHash { .. } | InstallError::Decompress { .. }
                )
            )
        },
    );
    add(
        "bit-flip-in-manifest",
        &cfg,
        &|p| {
            let mut env = Envelope::sign(MANIFEST_PAYLOAD_TYPE, &mjson, &[release]);
            let mut m = mjson.clone();
            let at = m.len() / 3;
            m[at] ^= 0x01;
            env.payload = B64.encode(&m);
            write_bundle(p, &env.to_json(), &payload)
        },
        threshold,
    );
    add(
        "bit-flip-in-signature",
        &cfg,
        &|p| {
            let mut env = Envelope::sign(MANIFEST_PAYLOAD_TYPE, &mjson, &[release]);
            let mut sig = B64.decode(&env.signatures[0].sig).unwrap();
            sig[10] ^= 0x80;
            env.signatures[0].sig = B64.encode(sig);
            write_bundle(p, &env.to_json(), &payload)
        },
        threshold,
    );
    add(
        "duplicate-signature",
        &threshold_two,
        &|p| {
            let mut env = Envelope::sign(MANIFEST_PAYLOAD_TYPE, &mjson, &[release]);
            env.signatures.push(env.signatures[0].clone());
            write_bundle(p, &env.to_json(), &payload)
        },
        |e| {
            matches!(
                e,
                UpdateError::Bundle(BundleError::Trust(TrustError::ThresholdNotMet {
                    found: 1,
                    threshold: 2,
                    ..
                }))
            )
        },
    );
    add(
        "role-unsatisfied",
        &two_roles,
        &|p| {
            write_bundle(
                p,
                &signed(MANIFEST_PAYLOAD_TYPE, &mjson, &[release, &b.release2]),
                &payload,
            )
        },
        |e| matches!(e, UpdateError::Bundle(BundleError::Trust(TrustError::ThresholdNotMet { role, .. })) if role == "fleet"),
    );
    add(
        "wrong-payload-type",
        &cfg,
        &|p| {
            write_bundle(
                p,
                &signed("application/vnd.in-toto+json", &mjson, &[release]),
                &payload,
            )
        },
        |e| {
            matches!(
                e,
                UpdateError::Bundle(BundleError::Trust(TrustError::WrongPayloadType { .. }))
            )
        },
    );
    add(
        "unknown-envelope-field",
        &cfg,
        &|p| {
            let json =
                String::from_utf8(signed(MANIFEST_PAYLOAD_TYPE, &mjson, &[release])).unwrap();
            write_bundle(
                p,
                json.replacen('{', "{\"extra\":1,", 1).as_bytes(),
                &payload,
            )
        },
        |e| {
            matches!(
                e,
                UpdateError::Bundle(BundleError::Trust(TrustError::MalformedEnvelope(_)))
            )
        },
    );

    // Validly signed manifests that say the wrong thing.
    let resign = |p: &Path, f: &dyn Fn(&mut Manifest)| {
        let mut m = manifest.clone();
        f(&mut m);
        write_bundle(
            p,
            &signed(MANIFEST_PAYLOAD_TYPE, &m.to_json(), &[release]),
            &payload,
        )
    };
    add(
        "wrong-compatible",
        &cfg,
        &|p| resign(p, &|m| m.compatible = "other-board".into()),
        |e| {
            matches!(
                e,
                UpdateError::Manifest(ManifestError::WrongCompatible { .. })
            )
        },
    );
    add(
        "expired",
        &cfg,
        &|p| resign(p, &|m| m.expires = Some("2026-11-01T00:00:00Z".into())),
        |e| matches!(e, UpdateError::Manifest(ManifestError::Expired { .. })),
    );
    add(
        "security-version-below-floor",
        &cfg,
        &|p| resign(p, &|m| m.security_version = 2),
        |e| {
            matches!(
                e,
                UpdateError::Manifest(ManifestError::BelowFloor { found: 2, floor: 3 })
            )
        },
    );
    add(
        "deny-listed-version",
        &cfg,
        &|p| resign(p, &|m| m.version = "6.6.6".into()),
        |e| matches!(e, UpdateError::Manifest(ManifestError::DenyListed(_))),
    );
    add(
        "not-targeted",
        &cfg,
        &|p| {
            resign(p, &|m| {
                m.targets = Some(seesaw::manifest::Targets {
                    devices: vec!["dev-2".into()],
                    groups: vec![],
                })
            })
        },
        |e| matches!(e, UpdateError::Manifest(ManifestError::NotTargeted)),
    );
    add(
        "chunk-hash-mismatch",
        &cfg,
        &|p| {
            resign(p, &|m| {
                m.images[0].chunks[7].sha256 = hex::encode(Sha256::digest(b"other"))
            })
        },
        |e| {
            matches!(
                e,
                UpdateError::Install(InstallError::ChunkHash { index: 7, .. })
            )
        },
    );
    add(
        "stored-sizes-swapped",
        &cfg,
        &|p| {
            resign(p, &|m| {
                let c = &mut m.images[0].chunks;
                let i = (0..c.len() - 1)
                    .find(|&i| c[i].stored_size != c[i + 1].stored_size)
                    .expect("two neighbouring chunks of different stored size");
                let (a, b) = (c[i].stored_size, c[i + 1].stored_size);
                c[i].stored_size = b;
                c[i + 1].stored_size = a;
            })
        },
        |e| {
            matches!(
                e,
                UpdateError::Install(
                    InstallError::ChunkHash { .. } | InstallError::Decompress { .. }
                )
            )
        },
    );
    add(
        "image-hash-mismatch",
        &cfg,
        &|p| {
            resign(p, &|m| {
                m.images[0].sha256 = hex::encode(Sha256::digest(b"other"))
            })
        },
        |e| {
            matches!(
                e,
                UpdateError::Install(InstallError::ReadBackMismatch { .. })
            )
        },
    );
    add(
        "short-digest",
        &cfg,
        &|p| resign(p, &|m| m.images[0].chunks[0].sha256.truncate(62)),
        |e| {
            matches!(
                e,
                UpdateError::Bundle(BundleError::Manifest(ManifestError::Inconsistent(_)))
            )
        },
    );
    add(
        "image-larger-than-slot",
        &small_slot,
        &|p| resign(p, &|_| ()),
        |e| matches!(e, UpdateError::Manifest(ManifestError::TooLarge { .. })),
    );

    // Signed JSON that is not a valid manifest.
    let text = String::from_utf8(mjson.clone()).unwrap();
    let json_case = |p: &Path, json: String| {
        write_bundle(
            p,
            &signed(MANIFEST_PAYLOAD_TYPE, json.as_bytes(), &[release]),
            &payload,
        )
    };
    add(
        "malformed-json",
        &cfg,
        &|p| json_case(p, text[..text.len() - 2].to_string()),
        malformed,
    );
    add(
        "unknown-manifest-field",
        &cfg,
        &|p| json_case(p, text.replacen('{', "{\"install_hook\":\"rm -rf /\",", 1)),
        malformed,
    );
    add(
        "duplicated-json-key",
        &cfg,
        &|p| json_case(p, text.replacen('{', "{\"compatible\":\"test-board\",", 1)),
        malformed,
    );
    add(
        "missing-digest",
        &cfg,
        &|p| {
            let image_sha = format!("\"sha256\":\"{}\",", manifest.images[0].sha256);
            assert!(text.contains(&image_sha));
            json_case(p, text.replacen(&image_sha, "", 1))
        },
        malformed,
    );

    // Damaged files.
    let good_bytes = std::fs::read(&good).unwrap();
    let env_len = RawBundle::open(&good).unwrap().payload_start - HEADER_LEN;
    for (name, cut) in [
        ("truncated-in-header", 10u64),
        ("truncated-in-envelope", HEADER_LEN + env_len / 2),
        ("truncated-in-payload", good_bytes.len() as u64 - 1000),
    ] {
        let bytes = good_bytes[..cut as usize].to_vec();
        add(
            name,
            &cfg,
            &move |p| std::fs::write(p, &bytes).unwrap(),
            |e| matches!(e, UpdateError::Bundle(BundleError::Truncated { .. })),
        );
    }
    add(
        "trailing-data",
        &cfg,
        &|p| {
            let mut bytes = good_bytes.clone();
            bytes.extend_from_slice(b"more");
            std::fs::write(p, bytes).unwrap()
        },
        |e| matches!(e, UpdateError::Bundle(BundleError::TrailingData { .. })),
    );
    add(
        "envelope-length-out-of-bounds",
        &cfg,
        &|p| {
            let mut bytes = good_bytes.clone();
            bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            std::fs::write(p, bytes).unwrap()
        },
        |e| {
            matches!(
                e,
                UpdateError::Bundle(BundleError::BadEnvelopeLength { .. })
            )
        },
    );

    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (name, config, bundle, check) in &cases {
        let before = b.snapshot();
        let err = b.install(config, bundle).expect_err(name);
        assert!(check(&err), "{name}: unexpected error {err:?}");
        let after = b.snapshot();
        for ((file, x), (_, y)) in before.iter().zip(&after) {
            assert!(x == y, "{name}: {file} changed");
        }
    }

    // The same board accepts the good bundle, so the refusals above were
    // about the input, not the board.
    b.install(&cfg, &good).unwrap();
    let env = seesaw::uboot_env::UbootEnv::open(&b.path("fw_env.config"))
        .unwrap()
        .with_lock_file(None);
    use seesaw::uboot_env::BootEnv;
    assert_eq!(env.read_var("BOOT_ORDER").unwrap().as_deref(), Some("B A"));
    assert_eq!(env.read_var("BOOT_B_LEFT").unwrap().as_deref(), Some("3"));
    let image = std::fs::read(&b.image).unwrap();
    let slot_b = std::fs::read(b.path("slot-b.img")).unwrap();
    assert!(slot_b[..image.len()] == image[..]);
}

#[test]
fn cli_refuses_with_one_line_and_a_stable_exit_status() {
    let b = Board::new();
    let good = b.create("good.bundle", "2.0.0", 5, "test-board");
    let wrong = b.create("wrong.bundle", "2.0.0", 5, "other-board");
    let before = b.snapshot();
    let out = Command::new(env!("CARGO_BIN_EXE_seesaw"))
        .arg("--config")
        .arg(b.path("seesaw.toml"))
        .arg("install")
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(seesaw::cli::exit::REJECTED));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("other-board") && stderr.contains("test-board"),
        "{stderr}"
    );
    assert_eq!(before, b.snapshot());

    let out = Command::new(env!("CARGO_BIN_EXE_seesaw"))
        .arg("--config")
        .arg(b.path("seesaw.toml"))
        .args(["bundle", "verify"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_seesaw"))
        .arg("--config")
        .arg(b.path("missing.toml"))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(seesaw::cli::exit::CONFIG));
}

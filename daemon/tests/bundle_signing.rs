//! Signing bundles with keys that stay outside the build machine: an
//! external command (here `openssl pkeyutl`, standing in for an HSM tool)
//! signs the DSSE PAE bytes, and seesaw checks every signature it returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn seesaw(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seesaw"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run seesaw")
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed: apt-get install openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn external_signer_creates_and_countersigns() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for k in ["hsm", "fleet", "other"] {
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "ed25519",
                "-out",
                &format!("{k}.pem"),
            ],
            dir,
        );
        openssl(
            &[
                "pkey",
                "-in",
                &format!("{k}.pem"),
                "-pubout",
                "-out",
                &format!("{k}.pub"),
            ],
            dir,
        );
    }
    std::fs::write(dir.join("image.img"), vec![0x5au8; 300_000]).unwrap();
    std::fs::write(
        dir.join("seesaw.toml"),
        "compatible = \"b\"\ndata_dir = \"data\"\n[slots.A]\ndevice = \"a\"\n[slots.B]\ndevice = \"b\"\n\
         [[trust.roles]]\nname = \"release\"\nthreshold = 1\nkeys = [\"hsm.pub\"]\n\
         [[trust.roles]]\nname = \"fleet\"\nthreshold = 1\nkeys = [\"fleet.pub\"]\n",
    )
    .unwrap();
    // openssl signs in one shot and needs a file: the command spools stdin.
    let sign = |key: &str| {
        format!(
            "m=$(mktemp) && cat >\"$m\" && openssl pkeyutl -sign -rawin -inkey {key}.pem -in \"$m\" | base64 -w0; rm -f \"$m\""
        )
    };
    let hsm = sign("hsm");
    ok(&seesaw(
        &[
            "bundle",
            "create",
            "--image",
            "image.img",
            "--compatible",
            "b",
            "--version",
            "1.0.0",
            "--security-version",
            "1",
            "--sign-command",
            &hsm,
            "--sign-pubkey",
            "hsm.pub",
            "--output",
            "u.bundle",
        ],
        dir,
    ));
    // Only the release role is satisfied so far.
    let out = seesaw(
        &["--config", "seesaw.toml", "bundle", "verify", "u.bundle"],
        dir,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("fleet"));
    let fleet = sign("fleet");
    ok(&seesaw(
        &[
            "bundle",
            "sign",
            "--sign-command",
            &fleet,
            "--sign-pubkey",
            "fleet.pub",
            "u.bundle",
        ],
        dir,
    ));
    ok(&seesaw(
        &["--config", "seesaw.toml", "bundle", "verify", "u.bundle"],
        dir,
    ));

    // A signer whose key is not the declared one is caught at build time.
    let wrong = sign("other");
    let before = std::fs::read(dir.join("u.bundle")).unwrap();
    let out = seesaw(
        &[
            "bundle",
            "sign",
            "--sign-command",
            &wrong,
            "--sign-pubkey",
            "fleet.pub",
            "u.bundle",
        ],
        dir,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
    assert_eq!(before, std::fs::read(dir.join("u.bundle")).unwrap());
    // A failing or garbage-printing signer too, and nothing is written.
    for cmd in ["exit 3", "echo not-base64", "head -c 10 /dev/zero | base64"] {
        let out = seesaw(
            &[
                "bundle",
                "create",
                "--image",
                "image.img",
                "--compatible",
                "b",
                "--version",
                "1.0.0",
                "--security-version",
                "1",
                "--sign-command",
                cmd,
                "--sign-pubkey",
                "hsm.pub",
                "--output",
                "bad.bundle",
            ],
            dir,
        );
        assert!(!out.status.success(), "{cmd}");
        assert!(!dir.join("bad.bundle").exists(), "{cmd}");
    }
    // A command without its public key is a usage error.
    let out = seesaw(&["bundle", "sign", "--sign-command", &hsm, "u.bundle"], dir);
    assert_eq!(out.status.code(), Some(2));
}

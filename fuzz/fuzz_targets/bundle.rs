//! A bundle file: written to a temporary file, opened and verified against a
//! one-key policy (libFuzzer will rarely get past the signature; the header
//! and envelope parsing are the target).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use seesaw::bundle::RawBundle;
use seesaw::trust::{PrivateKey, Role, TrustPolicy};

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile_in_tmp();
    file.1.write_all(data).expect("write the input");
    drop(file.1);
    let key = PrivateKey::from_seed(&[7; 32]);
    let policy = TrustPolicy::new(vec![Role {
        name: "release".into(),
        threshold: 1,
        keys: vec![key.public()],
    }])
    .expect("a one-key policy is valid");
    if let Ok(raw) = RawBundle::open(&file.0) {
        let _ = raw.unverified_manifest();
        let _ = raw.verify(&policy);
    }
    let _ = std::fs::remove_file(&file.0);
});

/// A fresh file in the temporary directory (no extra crates in the fuzzer).
fn tempfile_in_tmp() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("seesaw-fuzz-bundle-{}", std::process::id()));
    let file = std::fs::File::create(&path).expect("create a temporary file");
    (path, file)
}

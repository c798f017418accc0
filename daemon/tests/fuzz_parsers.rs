//! Every parser of untrusted bytes survives arbitrary input: a deterministic
//! mutation fuzzer on stable Rust, run as an ordinary integration test.
//!
//! Each target starts from valid seed inputs built with the crate's own API
//! and feeds the parser many mutated copies (bit flips, byte insert / delete /
//! duplicate of ranges, truncation, splicing two seeds, numbers in JSON
//! replaced with huge or negative values, repeated keys, dictionary tokens).
//! A call must return `Ok` or a typed `Err`, never panic, and finish quickly;
//! where the format has an invariant (round trips, CRCs, signatures) it is
//! checked on every accepted input.
//!
//! The same parsers are fuzzed with coverage guidance by the cargo-fuzz
//! targets in `fuzz/` (nightly only).
//!
//! Knobs (environment variables):
//! - `SEESAW_FUZZ_ITERS=N`: mutated inputs per cheap target (default 3000);
//!   the bundle targets, which sign, write and install files, run N/6 and N/5.
//! - `SEESAW_FUZZ_SEED=N`: the PRNG seed (default fixed, so runs repeat).
//!
//! A failure prints the target, the seed and the offending input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use seesaw::bundle::{self, CreateOptions, RawBundle, HEADER_LEN, MAGIC};
use seesaw::config::Config;
use seesaw::install::{self, FileSlot, FileSource, NoProgress};
use seesaw::manifest::{Chunk, Compression, Image, Manifest, Targets};
use seesaw::slot::{booted_slot_from_cmdline, BootState, Slot};
use seesaw::trust::{
    Envelope, PrivateKey, Role, Signer, TrustError, TrustPolicy, MANIFEST_PAYLOAD_TYPE,
};
use seesaw::uboot_env::{EnvBlock, EnvLayout, FwEnvConfig};
use sha2::{Digest, Sha256};
use time::macros::datetime;

/// Longest a single parser call may take (debug build, slow shared machine).
const PARSE_LIMIT: Duration = Duration::from_secs(2);
/// Longest one install of a ~300 KiB image may take.
const INSTALL_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Deterministic PRNG and mutator
// ---------------------------------------------------------------------------

/// xorshift64* (Vigna): small, fast, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Never zero: xorshift would stay at zero forever.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xfe, 0xc3, 0xe2, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':',
    b'0', b'9', b'-', b'+', b'.', b'e', b'=', b'#', b' ', b'\n', b'\r', b'\t', b'\'', b'A', b'B',
];

/// Numbers that break naive arithmetic: overflow, sign, float forms.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "4095",
    "4096",
    "65536",
    "2147483647",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "18446744073709547520",
    "99999999999999999999999999999",
    "67108864",
    "67112960",
    "1e308",
    "-0",
    "1.5",
    "0x10",
    "1e-400",
];

/// Tokens of the formats under test, inserted whole.
const DICTIONARY: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "null",
    "true",
    "\"\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    ",\"x\":1",
    "\"payloadType\":",
    "\"payload\":",
    "\"signatures\":[]",
    "\"keyid\":",
    "\"sig\":",
    "\"format\":1",
    "\"images\":[]",
    "\"chunks\":[]",
    "\"size\":",
    "\"chunk_size\":",
    "\"stored_size\":",
    "\"payload_offset\":",
    "\"payload_size\":",
    "\"payload_file\":\"../x\"",
    "\"payload_file\":\"a.payload\"",
    "\"compression\":\"none\"",
    "\"compression\":\"zstd\"",
    "\"expires\":null",
    "\"targets\":{}",
    "\"version\":\"1.0.0-rc.1+build.5\"",
    "\"created\":\"9999-12-31T23:59:60Z\"",
    "\"created\":\"-9999-01-01T00:00:00+23:59\"",
    "=",
    "BOOT_ORDER=",
    "BOOT_A_LEFT=",
    "BOOT_B_LEFT=",
    "\0",
    "\0\0",
    "seesaw.slot=",
    "seesaw.slot=A",
    "seesaw.slot=B",
    "[slots.A]\n",
    "[slots.B]\n",
    "[[trust.roles]]\n",
    "[trust]\n",
    "threshold = ",
    "keys = []\n",
    "device = \"\"\n",
    "\"\"\"",
    "'''",
    " = inf\n",
    " = nan\n",
    " = 1979-05-27T07:32:00Z\n",
    "\\u{0}",
    "/dev/mtd0 ",
    "/dev/ubi0_0 ",
    "0x",
    "-0x4000 ",
    " 0777 ",
    "#",
    "\n",
    "\u{feff}",
    "\u{fffd}",
];

/// Replaces one number (optionally signed) in `data` with an interesting one.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) -> bool {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i].is_ascii_digit() {
            let start = if i > 0 && data[i - 1] == b'-' {
                i - 1
            } else {
                i
            };
            let mut end = i;
            while end < data.len() && data[end].is_ascii_digit() {
                end += 1;
            }
            runs.push((start, end));
            i = end;
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return false;
    }
    let (start, end) = *rng.pick(&runs);
    let new = rng.pick(INTERESTING_NUMBERS).as_bytes();
    data.splice(start..end, new.iter().copied());
    true
}

/// Repeats one `"key":value` member of a JSON object (or `key = value` line
/// of TOML) right before itself: a duplicate key.
fn repeat_key(rng: &mut Rng, data: &mut Vec<u8>) -> bool {
    let colons: Vec<usize> = data
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\":" || w == b" =")
        .map(|(i, _)| i)
        .collect();
    if colons.is_empty() {
        return false;
    }
    let at = *rng.pick(&colons);
    let (start, end, sep): (usize, usize, &[u8]) = if data[at] == b'"' {
        // JSON: from the opening quote of the key to the end of its value
        // (next ',' '}' or ']' at depth 0).
        let Some(start) = data[..at].iter().rposition(|&b| b == b'"') else {
            return false;
        };
        let mut depth = 0i32;
        let mut in_str = false;
        let mut end = data.len();
        let mut k = at + 2;
        while k < data.len() {
            let b = data[k];
            if in_str {
                if b == b'\\' {
                    k += 1;
                } else if b == b'"' {
                    in_str = false;
                }
            } else {
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => {
                        end = k;
                        break;
                    }
                    b'}' | b']' => depth -= 1,
                    b',' if depth == 0 => {
                        end = k;
                        break;
                    }
                    _ => {}
                }
            }
            k += 1;
        }
        (start, end, b",")
    } else {
        // TOML: the whole line.
        let start = data[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let end = data[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |p| at + p);
        (start, end, b"\n")
    };
    let mut member = data[start..end].to_vec();
    member.extend_from_slice(sep);
    data.splice(start..start, member);
    true
}

/// Applies one to four random mutations to `data`; `others` are splice partners.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = data.len();
        match rng.below(14) {
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(INTERESTING_BYTES);
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes = rng.bytes(n);
                data.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let n = 1 + rng.below((len - a).min(64));
                data.drain(a..a + n);
            }
            5 if len > 0 => {
                // Duplicate a range somewhere (sometimes many times).
                let a = rng.below(len);
                let n = 1 + rng.below((len - a).min(128));
                let piece = data[a..a + n].to_vec();
                let times = if rng.chance(8) { 1 + rng.below(64) } else { 1 };
                let at = rng.below(len + 1);
                for _ in 0..times {
                    data.splice(at..at, piece.iter().copied());
                }
            }
            6 => {
                let n = rng.below(len + 1);
                data.truncate(n);
            }
            7 if !others.is_empty() => {
                let other = rng.pick(others);
                let a = rng.below(len + 1);
                let b = rng.below(other.len() + 1);
                data.truncate(a);
                data.extend_from_slice(&other[b..]);
            }
            8 | 9 => {
                if !replace_number(rng, data) && len > 0 {
                    let i = rng.below(len);
                    data[i] = rng.next() as u8;
                }
            }
            10 => {
                repeat_key(rng, data);
            }
            11 => {
                let i = rng.below(len + 1);
                let token = rng.pick(DICTIONARY).as_bytes();
                data.splice(i..i, token.iter().copied());
            }
            12 if len > 1 => {
                // Overwrite a range with a copy of another (length kept).
                let n = 1 + rng.below((len / 2).min(64));
                let from = rng.below(len - n + 1);
                let to = rng.below(len - n + 1);
                data.copy_within(from..from + n, to);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            _ => data.push(rng.next() as u8),
        }
    }
}

/// Length-preserving mutations only, within `range` of `data`.
fn mutate_in_place(rng: &mut Rng, data: &mut [u8], range: std::ops::Range<usize>) {
    let len = range.len();
    if len == 0 {
        return;
    }
    for _ in 0..1 + rng.below(3) {
        match rng.below(4) {
            0 | 1 => {
                let i = range.start + rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = range.start + rng.below(len);
                data[i] = rng.next() as u8;
            }
            _ if len > 1 => {
                let n = 1 + rng.below((len / 2).min(64));
                let from = range.start + rng.below(len - n + 1);
                let to = range.start + rng.below(len - n + 1);
                data.copy_within(from..from + n, to);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Harness: panics and slow calls become recorded failures
// ---------------------------------------------------------------------------

struct Fuzz {
    target: &'static str,
    base_seed: u64,
    rng: Rng,
    failures: Vec<String>,
    calls: u64,
    accepted: u64,
    slowest: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Mutated inputs per cheap target.
fn iterations() -> usize {
    env_u64("SEESAW_FUZZ_ITERS").map_or(3000, |n| n as usize)
}

fn show(input: &[u8]) -> String {
    let cut = &input[..input.len().min(600)];
    let more = if input.len() > cut.len() { "..." } else { "" };
    format!("{} bytes: b\"{}\"{more}", input.len(), cut.escape_ascii())
}

impl Fuzz {
    fn new(target: &'static str) -> Fuzz {
        let base = env_u64("SEESAW_FUZZ_SEED").unwrap_or(0x5ee5a3);
        // Each target its own stream, so adding one does not shift the others.
        let seed = target
            .bytes()
            .fold(base, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Fuzz {
            target,
            base_seed: base,
            rng: Rng::new(seed),
            failures: Vec::new(),
            calls: 0,
            accepted: 0,
            slowest: Duration::ZERO,
        }
    }

    /// Runs `f` on `input`, recording a panic or a call slower than `limit`.
    /// Returns `None` if it panicked.
    fn call<T>(
        &mut self,
        what: &str,
        input: &[u8],
        limit: Duration,
        f: impl FnOnce() -> T,
    ) -> Option<T> {
        self.calls += 1;
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(f));
        let took = start.elapsed();
        self.slowest = self.slowest.max(took);
        match result {
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.fail(format!("{what} PANICKED ({msg}) on {}", show(input)));
                None
            }
            Ok(v) => {
                if took > limit {
                    self.fail(format!(
                        "{what} took {took:?} (limit {limit:?}) on {}",
                        show(input)
                    ));
                }
                Some(v)
            }
        }
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String, input: &[u8]) {
        if !ok {
            let what = what();
            self.fail(format!("invariant broken: {what} on {}", show(input)));
        }
    }

    fn fail(&mut self, msg: String) {
        // Keep the report readable: the first few failures say it all.
        if self.failures.len() < 8 {
            self.failures.push(msg);
        }
    }

    fn finish(self) {
        eprintln!(
            "fuzz {}: {} calls, {} inputs accepted, slowest call {:?}",
            self.target, self.calls, self.accepted, self.slowest
        );
        assert!(
            self.failures.is_empty(),
            "fuzz target {} failed; reproduce with SEESAW_FUZZ_SEED={} SEESAW_FUZZ_ITERS={}:\n{}",
            self.target,
            self.base_seed,
            iterations(),
            self.failures.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Seeds built with the crate's API
// ---------------------------------------------------------------------------

fn release_key() -> PrivateKey {
    PrivateKey::from_seed(&[7; 32])
}

fn stranger_key() -> PrivateKey {
    PrivateKey::from_seed(&[9; 32])
}

fn policy() -> TrustPolicy {
    TrustPolicy::new(vec![Role {
        name: "release".into(),
        threshold: 1,
        keys: vec![release_key().public()],
    }])
    .unwrap()
}

fn sample_manifest() -> Manifest {
    let h = |b: u8| hex::encode([b; 32]);
    Manifest {
        format: 1,
        compatible: "raspberrypi4-64".into(),
        version: "1.4.0".into(),
        security_version: 7,
        created: "2026-11-21T16:00:00Z".into(),
        expires: Some("2027-05-21T16:00:00Z".into()),
        targets: Some(Targets {
            devices: vec!["pi-0042".into()],
            groups: vec!["canary".into()],
        }),
        images: vec![Image {
            slot_class: "rootfs".into(),
            size: 10000,
            sha256: h(0xab),
            chunk_size: 4096,
            chunks: vec![
                Chunk {
                    sha256: h(1),
                    stored_size: 100,
                },
                Chunk {
                    sha256: h(2),
                    stored_size: 4200,
                },
                Chunk {
                    sha256: h(3),
                    stored_size: 50,
                },
            ],
            compression: Compression::Zstd,
            payload_offset: 0,
            payload_size: 4350,
            payload_file: None,
            blocks: None,
        }],
    }
}

fn raw_manifest() -> Manifest {
    let mut m = sample_manifest();
    m.expires = None;
    m.targets = None;
    m.version = "2.0.0-beta.1+g1234".into();
    let img = &mut m.images[0];
    img.compression = Compression::None;
    img.size = 8192;
    img.chunks.truncate(2);
    img.chunks[0].stored_size = 4096;
    img.chunks[1].stored_size = 4096;
    img.payload_size = 8192;
    m
}

/// A manifest of the network layout: the payload is a separate file.
fn split_manifest() -> Manifest {
    let mut m = sample_manifest();
    m.images[0].payload_file = Some("rootfs-1.4.0.payload".into());
    m
}

fn manifest_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        sample_manifest().to_json(),
        raw_manifest().to_json(),
        split_manifest().to_json(),
    ];
    for m in [sample_manifest(), raw_manifest(), split_manifest()] {
        assert!(m.validate().is_ok());
        // Pretty-printed too: whitespace is where many parsers slip.
        seeds.push(serde_json::to_vec_pretty(&m).unwrap());
    }
    seeds
}

// ---------------------------------------------------------------------------
// Envelope and trust policy
// ---------------------------------------------------------------------------

#[test]
fn fuzz_envelope_and_verify() {
    let mut fz = Fuzz::new("envelope");
    let (key, stranger) = (release_key(), stranger_key());
    let policy = policy();
    let manifest = sample_manifest().to_json();
    // Every payload the trusted key ever signed: only these may verify.
    let signed: Vec<Vec<u8>> = vec![manifest.clone(), b"{}".to_vec(), Vec::new()];
    let mut seeds: Vec<Vec<u8>> = vec![
        Envelope::sign(MANIFEST_PAYLOAD_TYPE, &manifest, &[&key]).to_json(),
        Envelope::sign(MANIFEST_PAYLOAD_TYPE, b"{}", &[&stranger, &key]).to_json(),
        Envelope::sign(MANIFEST_PAYLOAD_TYPE, b"", &[&key]).to_json(),
        Envelope::sign("text/plain", b"x", &[&stranger]).to_json(),
    ];
    let mut no_keyid = Envelope::sign(MANIFEST_PAYLOAD_TYPE, b"{}", &[&key]);
    no_keyid.signatures[0].keyid.clear();
    seeds.push(no_keyid.to_json());
    seeds.push(serde_json::to_vec_pretty(&no_keyid).unwrap());

    for _ in 0..iterations() {
        let mut input = fz.rng.pick(&seeds).clone();
        mutate(&mut fz.rng, &mut input, &seeds);
        let Some(parsed) = fz.call("Envelope::from_json", &input, PARSE_LIMIT, || {
            Envelope::from_json(&input)
        }) else {
            continue;
        };
        let Ok(env) = parsed else { continue };
        fz.accepted += 1;
        // Whatever parses round-trips.
        let again = Envelope::from_json(&env.to_json());
        fz.check(
            again.as_ref().is_ok_and(|e| *e == env),
            || format!("to_json round trip gave {again:?}"),
            &input,
        );
        let Some(verified) = fz.call("TrustPolicy::verify", &input, PARSE_LIMIT, || {
            policy.verify(&env, MANIFEST_PAYLOAD_TYPE)
        }) else {
            continue;
        };
        match verified {
            Ok(payload) => {
                // Signatures cannot be forged by mutation.
                fz.check(
                    signed.contains(&payload),
                    || format!("verify accepted an unsigned payload {}", show(&payload)),
                    &input,
                );
            }
            Err(
                TrustError::WrongPayloadType { .. }
                | TrustError::TooManySignatures(_)
                | TrustError::MalformedEnvelope(_)
                | TrustError::ThresholdNotMet { .. },
            ) => {}
            Err(e) => fz.fail(format!("verify: unexpected error kind {e:?}")),
        }
        let _ = fz.call("Envelope::payload_bytes", &input, PARSE_LIMIT, || {
            env.payload_bytes()
        });
    }
    fz.finish();
}

// ---------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------

/// A structural mutation: a random JSON value somewhere replaced.
fn mutate_json_value(rng: &mut Rng, v: &mut serde_json::Value) {
    use serde_json::Value;
    // Walk down a random path, then replace what is there.
    let descend = rng.below(3) != 0;
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            if rng.chance(6) {
                map.remove(&k);
            } else if let Some(child) = map.get_mut(&k) {
                mutate_json_value(rng, child);
            }
            return;
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            if rng.chance(6) {
                // Grow or shrink a list.
                if rng.chance(2) {
                    items.remove(i);
                } else {
                    let copy = items[i].clone();
                    for _ in 0..1 + rng.below(20) {
                        items.push(copy.clone());
                    }
                }
            } else {
                mutate_json_value(rng, &mut items[i]);
            }
            return;
        }
        _ => {}
    }
    *v = match rng.below(9) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => serde_json::json!(u64::MAX),
        3 => serde_json::json!(-1),
        4 => serde_json::json!(rng.next() >> rng.below(64)),
        5 => serde_json::json!(1.0e300),
        6 => Value::String(String::new()),
        7 => Value::String("ab".repeat(32)),
        _ => Value::Array(vec![]),
    };
}

/// Sets one numeric field, chosen by name so rare fields (`payload_offset`)
/// are hit as often as the many `stored_size`s, to an interesting number.
fn mutate_numeric_field(rng: &mut Rng, v: &mut serde_json::Value) {
    fn names(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if child.is_number() && !out.contains(k) {
                        out.push(k.clone());
                    }
                    names(child, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|c| names(c, out)),
            _ => {}
        }
    }
    fn set(v: &mut serde_json::Value, name: &str, rng: &mut Rng, new: &serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == name && child.is_number() && rng.chance(2) {
                        *child = new.clone();
                    } else {
                        set(child, name, rng, new);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|c| set(c, name, rng, new))
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    names(v, &mut found);
    if found.is_empty() {
        return;
    }
    let name = rng.pick(&found).clone();
    let text = rng.pick(INTERESTING_NUMBERS);
    let new = serde_json::from_str(text).unwrap_or(serde_json::json!(u64::MAX));
    set(v, &name, rng, &new);
}

#[test]
fn fuzz_manifest() {
    let mut fz = Fuzz::new("manifest");
    let seeds = manifest_seeds();
    let values: Vec<serde_json::Value> = seeds
        .iter()
        .map(|s| serde_json::from_slice(s).unwrap())
        .collect();
    for _ in 0..iterations() {
        let input = if fz.rng.chance(3) {
            let mut v = fz.rng.pick(&values).clone();
            if fz.rng.chance(2) {
                mutate_numeric_field(&mut fz.rng, &mut v);
            } else {
                mutate_json_value(&mut fz.rng, &mut v);
            }
            let mut bytes = serde_json::to_vec(&v).unwrap();
            if fz.rng.chance(3) {
                mutate(&mut fz.rng, &mut bytes, &seeds);
            }
            bytes
        } else {
            let mut bytes = fz.rng.pick(&seeds).clone();
            mutate(&mut fz.rng, &mut bytes, &seeds);
            bytes
        };
        let Some(parsed) = fz.call("Manifest::from_json", &input, PARSE_LIMIT, || {
            Manifest::from_json(&input)
        }) else {
            continue;
        };
        let Ok(m) = parsed else { continue };
        fz.accepted += 1;
        let valid = m.validate();
        fz.check(
            valid.is_ok(),
            || format!("from_json accepted but validate says {valid:?}"),
            &input,
        );
        let again = Manifest::from_json(&m.to_json());
        fz.check(
            again.as_ref().is_ok_and(|a| *a == m),
            || format!("to_json round trip gave {again:?}"),
            &input,
        );
        // What the rest of the daemon does with an accepted manifest.
        let _ = fz.call("Manifest accessors", &input, PARSE_LIMIT, || {
            let img = m.rootfs();
            let mut total = 0u64;
            for i in 0..img.chunks.len() {
                total += img.chunk_len(i);
                let _ = img.chunk_offset(i);
            }
            assert_eq!(total, img.size, "chunk lengths add up to the image size");
            let none: Vec<String> = Vec::new();
            let _ = m.check_for_device(&seesaw::manifest::DeviceFacts {
                compatible: "raspberrypi4-64",
                device_id: Some("pi-0042"),
                groups: &none,
                floor: 3,
                deny_list: &none,
                slot_size: 1 << 40,
                slot_name: "B",
                now: datetime!(2026-12-01 0:00 UTC),
            });
        });
    }
    fz.finish();
}

// ---------------------------------------------------------------------------
// Bundle open / verify / install
// ---------------------------------------------------------------------------

struct BundleFixture {
    dir: tempfile::TempDir,
    image: Vec<u8>,
    bundle: Vec<u8>,
    manifest: Manifest,
    /// Offset of the payload in `bundle`.
    payload_start: usize,
}

/// A ~300 KiB image (text, zeros and noise, so chunks compress differently)
/// bundled with chunk size 4096 and zstd level 1.
fn bundle_fixture() -> BundleFixture {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(42);
    let mut image = Vec::with_capacity(300 * 1024);
    while image.len() < 300 * 1024 - 1000 {
        match rng.below(3) {
            0 => image.extend_from_slice(b"seesaw A/B update: the quick brown fox\n"),
            1 => {
                let n = rng.below(3000);
                image.resize(image.len() + n, 0);
            }
            _ => {
                let n = rng.below(2000);
                image.extend(rng.bytes(n));
            }
        }
    }
    image.extend_from_slice(b"odd tail, not a multiple of 4096");
    let image_path = dir.path().join("rootfs.img");
    std::fs::write(&image_path, &image).unwrap();
    let out = dir.path().join("seed.bundle");
    let opts = CreateOptions {
        compatible: "raspberrypi4-64".into(),
        version: "1.4.0".into(),
        security_version: 7,
        created: datetime!(2026-11-21 16:00 UTC),
        expires: Some(datetime!(2027-05-21 16:00 UTC)),
        chunk_size: 4096,
        zstd_level: 1,
        threads: 1,
    };
    let key = release_key();
    let signers: [&dyn Signer; 1] = [&key];
    let outputs = bundle::Outputs {
        file: Some(&out),
        dir: None,
        delta_bases: &[],
    };
    let manifest = bundle::create(&image_path, &signers, &opts, outputs).unwrap();
    let bundle = std::fs::read(&out).unwrap();
    assert_eq!(&bundle[..8], MAGIC);
    let env_len = u64::from_le_bytes(bundle[8..16].try_into().unwrap());
    let payload_start = (HEADER_LEN + env_len) as usize;
    BundleFixture {
        dir,
        image,
        bundle,
        manifest,
        payload_start,
    }
}

/// Assembles header + envelope + payload.
fn assemble(envelope_json: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + envelope_json.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(envelope_json.len() as u64).to_le_bytes());
    out.extend_from_slice(envelope_json);
    out.extend_from_slice(payload);
    out
}

/// A manifest for a failure message: the chunk table only counted.
fn brief_manifest(json: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(mut v) => {
            if let Some(images) = v.get_mut("images").and_then(|i| i.as_array_mut()) {
                for img in images {
                    if let Some(chunks) = img.get_mut("chunks") {
                        let n = chunks.as_array().map_or(0, |c| c.len());
                        *chunks = serde_json::json!(format!("<{n} chunks>"));
                    }
                }
            }
            v.to_string()
        }
        Err(_) => show(json),
    }
}

/// How a bundle input was made, which decides what may be asserted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BundleKind {
    /// Arbitrary mutation of the whole file.
    Any,
    /// Only payload bytes changed, length kept: verifies, install must catch it.
    PayloadOnly,
    /// The envelope JSON mutated, the length field fixed up.
    Envelope,
    /// A mutated manifest signed by the trusted key (a hostile release
    /// server): verify may accept; install must still not panic.
    Resigned,
}

fn fuzz_bundles(fz: &mut Fuzz, kinds: &[BundleKind], iters: usize) {
    let fx = bundle_fixture();
    let policy = policy();
    let key = release_key();
    let path = fx.dir.path().join("fuzzed.bundle");
    let slot_path = fx.dir.path().join("slot.img");
    let seed_manifest_json = fx.manifest.to_json();
    let seed_envelope = fx.bundle[16..fx.payload_start].to_vec();
    let payload = fx.bundle[fx.payload_start..].to_vec();
    let seeds = vec![fx.bundle.clone(), seed_manifest_json.clone()];
    let cancel = AtomicBool::new(false);
    let mut installs = 0usize;
    for _ in 0..iters {
        let kind = *fz.rng.pick(kinds);
        let mut note = String::new();
        let input = match kind {
            BundleKind::Any => {
                let mut b = fx.bundle.clone();
                if fz.rng.chance(2) {
                    // Aim at the header and envelope, where parsing happens.
                    let cut = fx.payload_start + 64;
                    let mut head = b[..cut].to_vec();
                    mutate(&mut fz.rng, &mut head, &seeds);
                    head.extend_from_slice(&b[cut..]);
                    b = head;
                } else {
                    mutate(&mut fz.rng, &mut b, &seeds);
                }
                b
            }
            BundleKind::PayloadOnly => {
                let mut b = fx.bundle.clone();
                let range = fx.payload_start..b.len();
                mutate_in_place(&mut fz.rng, &mut b, range);
                b
            }
            BundleKind::Envelope => {
                let mut env = seed_envelope.clone();
                mutate(&mut fz.rng, &mut env, &seeds);
                assemble(&env, &payload)
            }
            BundleKind::Resigned => {
                let mut m = seed_manifest_json.clone();
                if fz.rng.chance(2) {
                    let mut v: serde_json::Value = serde_json::from_slice(&m).unwrap();
                    if fz.rng.chance(2) {
                        mutate_numeric_field(&mut fz.rng, &mut v);
                    } else {
                        mutate_json_value(&mut fz.rng, &mut v);
                    }
                    m = serde_json::to_vec(&v).unwrap();
                } else {
                    mutate(&mut fz.rng, &mut m, &seeds);
                }
                // Signing and verifying are slow in a debug build: only
                // manifests that parse can get past verify, so only those are
                // signed (the rest is `fuzz_manifest`'s job).
                match fz.call("Manifest::from_json", &m, PARSE_LIMIT, || {
                    Manifest::from_json(&m)
                }) {
                    Some(Ok(_)) => {}
                    _ => continue,
                }
                note = format!(", signed manifest {}", brief_manifest(&m));
                let env = Envelope::sign(MANIFEST_PAYLOAD_TYPE, &m, &[&key]).to_json();
                let mut p = payload.clone();
                if fz.rng.chance(4) {
                    mutate(&mut fz.rng, &mut p, &[]);
                }
                assemble(&env, &p)
            }
        };
        std::fs::write(&path, &input).unwrap();
        let what = format!("RawBundle::open+verify ({kind:?}{note})");
        let Some(verified) = fz.call(&what, &input, PARSE_LIMIT, || {
            RawBundle::open(&path).and_then(|raw| raw.verify(&policy))
        }) else {
            continue;
        };
        let bundle = match verified {
            Ok(b) => b,
            Err(_) => {
                fz.check(
                    kind != BundleKind::PayloadOnly,
                    || "a payload-only mutation failed to verify".into(),
                    &input,
                );
                continue;
            }
        };
        fz.accepted += 1;
        if kind != BundleKind::Resigned {
            fz.check(
                bundle.manifest == fx.manifest,
                || "verify accepted a manifest nobody signed".into(),
                &input,
            );
        }
        // Install what verified into a small slot file.
        installs += 1;
        let image = bundle.manifest.rootfs().clone();
        std::fs::write(&slot_path, vec![0x5au8; fx.image.len() + 4096]).unwrap();
        let result = fz.call("install::write_image", &input, INSTALL_LIMIT, || {
            let slot = FileSlot::open(&slot_path)?;
            let file = FileSource {
                file: &bundle.raw.file,
                path: &bundle.raw.path,
            };
            install::write_image(&install::WriteJob {
                source: &install::StoredChunks::new(&file, bundle.image_payload_start(), &image),
                image: &image,
                target: &slot,
                threads: 2,
                progress: &NoProgress,
                log: &install::NoLog,
                cancel: &cancel,
            })
        });
        if let Some(Ok(())) = result {
            let slot = std::fs::read(&slot_path).unwrap();
            let size = image.size as usize;
            let holds =
                size <= slot.len() && hex::encode(Sha256::digest(&slot[..size])) == image.sha256;
            fz.check(
                holds,
                || "install succeeded but the slot does not hold the image".into(),
                &input,
            );
            if kind != BundleKind::Resigned {
                fz.check(
                    slot[..fx.image.len()] == fx.image[..],
                    || "install succeeded but the slot differs from the image".into(),
                    &input,
                );
            }
        }
    }
    eprintln!(
        "fuzz {}: {installs} installs of verified bundles",
        fz.target
    );
}

#[test]
fn fuzz_bundle_open_verify_install() {
    let mut fz = Fuzz::new("bundle");
    let iters = (iterations() / 6).max(1);
    fuzz_bundles(
        &mut fz,
        &[
            BundleKind::Any,
            BundleKind::Any,
            BundleKind::Envelope,
            BundleKind::PayloadOnly,
        ],
        iters,
    );
    fz.finish();
}

/// Manifests signed by the trusted key but hostile (a compromised or buggy
/// release pipeline): defence in depth, the device must not crash on them.
#[test]
fn fuzz_bundle_resigned_manifest() {
    let mut fz = Fuzz::new("bundle-resigned");
    let iters = (iterations() / 5).max(1);
    fuzz_bundles(&mut fz, &[BundleKind::Resigned], iters);
    fz.finish();
}

// ---------------------------------------------------------------------------
// U-Boot environment block and fw_env.config
// ---------------------------------------------------------------------------

fn env_seeds() -> Vec<(Vec<u8>, EnvLayout)> {
    let vars: &[(&str, &str)] = &[
        ("bootcmd", "run seesaw_boot"),
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
        ("bootargs", "console=ttyS0,115200 rootwait"),
    ];
    let mut seeds = Vec::new();
    for layout in [EnvLayout::Single, EnvLayout::Redundant] {
        for size in [160, 512, 4096] {
            let b = EnvBlock::from_vars(layout, size, 3, vars).unwrap();
            seeds.push((b.as_bytes().to_vec(), layout));
        }
        let empty = EnvBlock::from_vars(layout, 64, 255, &[]).unwrap();
        seeds.push((empty.as_bytes().to_vec(), layout));
        // Duplicates, an entry without '=', an empty name and non-UTF-8.
        let odd: Vec<&[u8]> = vec![b"a=1", b"noequals", b"a=22", b"=empty", b"bin=\xff\xfe"];
        let b = EnvBlock::build(layout, 256, 0, odd).unwrap();
        seeds.push((b.as_bytes().to_vec(), layout));
    }
    seeds
}

/// Rewrites the CRC of `bytes` to match its data area.
fn fix_crc(bytes: &mut [u8], layout: EnvLayout) {
    if let Ok(b) = EnvBlock::from_bytes(bytes.to_vec(), layout) {
        let crc = b.computed_crc();
        bytes[..4].copy_from_slice(&crc.to_le_bytes());
    }
}

fn get_var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn fuzz_uboot_env_block() {
    let mut fz = Fuzz::new("uboot-env-block");
    let seeds = env_seeds();
    let seed_bytes: Vec<Vec<u8>> = seeds.iter().map(|(b, _)| b.clone()).collect();
    let dev = Path::new("/dev/fuzz-env");
    let names = ["BOOT_ORDER", "BOOT_A_LEFT", "bootcmd", "new_var", "a", "x"];
    for _ in 0..iterations() {
        let (seed, seed_layout) = fz.rng.pick(&seeds).clone();
        let layout = if fz.rng.chance(8) {
            // The wrong layout for the bytes, as a misconfigured device gives.
            match seed_layout {
                EnvLayout::Single => EnvLayout::Redundant,
                EnvLayout::Redundant => EnvLayout::Single,
            }
        } else {
            seed_layout
        };
        let mut input = seed;
        mutate(&mut fz.rng, &mut input, &seed_bytes);
        if fz.rng.chance(2) {
            fix_crc(&mut input, layout);
        }
        let Some(parsed) = fz.call("EnvBlock::from_bytes", &input, PARSE_LIMIT, || {
            EnvBlock::from_bytes(input.clone(), layout)
        }) else {
            continue;
        };
        let Ok(block) = parsed else { continue };
        let Some(valid) = fz.call("EnvBlock::is_valid", &input, PARSE_LIMIT, || {
            let _ = format!("{block:?}");
            let _ = (block.crc(), block.flag(), block.data().len());
            block.is_valid()
        }) else {
            continue;
        };
        let Some(vars) = fz.call("EnvBlock::vars", &input, PARSE_LIMIT, || block.vars(dev)) else {
            continue;
        };
        let Ok(vars) = vars else { continue };
        if !valid {
            continue;
        }
        fz.accepted += 1;
        // Rewriting with no updates keeps every variable and gives a valid block.
        let flag = fz.rng.next() as u8;
        let Some(same) = fz.call("EnvBlock::with_updates(none)", &input, PARSE_LIMIT, || {
            block.with_updates(&[], flag, dev)
        }) else {
            continue;
        };
        match same {
            Ok(same) => {
                let again = same.vars(dev);
                fz.check(
                    same.is_valid()
                        && same.as_bytes().len() == input.len()
                        && again.as_ref().is_ok_and(|v| *v == vars),
                    || format!("with_updates(&[]) changed the block: {again:?} vs {vars:?}"),
                    &input,
                );
            }
            Err(e) => fz.fail(format!("with_updates(&[]) failed on a valid block: {e}")),
        }
        // The variables rebuild to a valid block with the same variables,
        // where they are representable (valid names, no lossy UTF-8).
        let representable = vars
            .iter()
            .all(|(n, v)| !n.is_empty() && !n.contains('\u{fffd}') && !v.contains('\u{fffd}'));
        if representable {
            let pairs: Vec<(&str, &str)> =
                vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let rebuilt = fz.call("EnvBlock::from_vars", &input, PARSE_LIMIT, || {
                EnvBlock::from_vars(layout, input.len(), flag, &pairs)
            });
            if let Some(rebuilt) = rebuilt {
                let again = rebuilt.as_ref().map(|b| (b.is_valid(), b.vars(dev)));
                fz.check(
                    matches!(&again, Ok((true, Ok(v))) if *v == vars),
                    || format!("vars did not rebuild to a valid block: {again:?}"),
                    &input,
                );
            }
        }
        // A random update either applies or is refused with a typed error.
        let name = *fz.rng.pick(&names);
        let value_len = fz.rng.below(40);
        let value = String::from_utf8_lossy(&fz.rng.bytes(value_len))
            .replace('\0', "")
            .to_string();
        let update = [(name, Some(value.as_str()))];
        if let Some(Ok(updated)) = fz.call("EnvBlock::with_updates", &input, PARSE_LIMIT, || {
            block.with_updates(&update, flag, dev)
        }) {
            let got = updated.vars(dev);
            fz.check(
                updated.is_valid()
                    && got
                        .as_ref()
                        .is_ok_and(|v| get_var(v, name) == Some(value.as_str())),
                || format!("update {name}={value:?} not visible: {got:?}"),
                &input,
            );
        }
        // The boot contract read from these variables.
        let result = fz.call("BootState::from_vars", &input, PARSE_LIMIT, || {
            BootState::from_vars(|n| get_var(&vars, n))
        });
        if let Some(state) = result {
            check_boot_state(&mut fz, &state, &input);
        }
    }
    fz.finish();
}

#[test]
fn fuzz_fw_env_config() {
    let mut fz = Fuzz::new("fw-env-config");
    let seeds: Vec<Vec<u8>> = [
        "/dev/mmcblk0 0x3fe000 0x2000\n/dev/mmcblk0 0x3fc000 0x2000\n",
        "# U-Boot environment on the FAT boot partition\n/boot/uboot.env 0x0000 0x4000\n",
        "/dev/mmcblk2 -0x4000 4000 200 10\n",
        "uboot.env\t0\t4000\t4000\t1 # single\n\n",
        "/dev/sda 0777 0x20000\n/dev/sdb +0 20000\n",
        "/dev/mtd0 0 4000\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let source = Path::new("/etc/fw_env.config");
    for _ in 0..iterations() {
        let mut input = fz.rng.pick(&seeds).clone();
        mutate(&mut fz.rng, &mut input, &seeds);
        let text = String::from_utf8_lossy(&input).into_owned();
        let Some(parsed) = fz.call("FwEnvConfig::parse", &input, PARSE_LIMIT, || {
            FwEnvConfig::parse(&text, source)
        }) else {
            continue;
        };
        let Ok(config) = parsed else { continue };
        fz.accepted += 1;
        let n = config.copies.len();
        fz.check(
            (n == 1 || n == 2)
                && config.copies.iter().all(|c| c.size > 5)
                && config
                    .copies
                    .iter()
                    .all(|c| c.size == config.copies[0].size)
                && config.is_redundant() == (n == 2),
            || format!("accepted an impossible config {config:?}"),
            &input,
        );
    }
    fz.finish();
}

// ---------------------------------------------------------------------------
// Boot contract: BOOT_* variables and the kernel command line
// ---------------------------------------------------------------------------

fn check_boot_state(fz: &mut Fuzz, state: &BootState, input: &[u8]) {
    let distinct =
        state.order.len() <= 2 && !(state.order.len() == 2 && state.order[0] == state.order[1]);
    fz.check(
        distinct && state.a_left <= 3 && state.b_left <= 3,
        || format!("from_vars produced {state:?}"),
        input,
    );
    // Every transition is total on whatever was accepted.
    let _ = fz.call("BootState transitions", input, PARSE_LIMIT, || {
        let mut s = state.clone();
        let _ = (s.primary(), s.order_string(), s.to_updates());
        for _ in 0..8 {
            let _ = s.select_boot();
        }
        let _ = s.install(Slot::B);
        let _ = s.mark_good(Slot::B);
        let _ = s.mark_bad(Slot::A);
    });
}

#[test]
fn fuzz_boot_state_and_cmdline() {
    let mut fz = Fuzz::new("boot-contract");
    let values: Vec<Vec<u8>> = [
        "A B", "B A", "A", "B", "", "A A", "C", " B  A ", "a b", "3", "0", "255", "256", "-1",
        " 2 ", "0x1", "+3", "३",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let var_names = ["BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT"];
    let cmdlines: Vec<Vec<u8>> = [
        "console=ttyS0,115200 root=/dev/mmcblk0p2 rootwait seesaw.slot=A rw\n",
        "seesaw.slot=A seesaw.slot=B",
        "seesaw.slot=",
        "quiet",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for _ in 0..iterations() {
        // Variables: each unset or a (mutated) value.
        let mut vars: Vec<(String, String)> = Vec::new();
        for name in var_names {
            if fz.rng.chance(4) {
                continue;
            }
            let mut v = fz.rng.pick(&values).clone();
            if fz.rng.chance(2) {
                mutate(&mut fz.rng, &mut v, &values);
            }
            vars.push((name.to_string(), String::from_utf8_lossy(&v).into_owned()));
        }
        let shown = format!("{vars:?}").into_bytes();
        if let Some(state) = fz.call("BootState::from_vars", &shown, PARSE_LIMIT, || {
            BootState::from_vars(|n| get_var(&vars, n))
        }) {
            fz.accepted += 1;
            check_boot_state(&mut fz, &state, &shown);
        }

        let mut input = fz.rng.pick(&cmdlines).clone();
        mutate(&mut fz.rng, &mut input, &cmdlines);
        let text = String::from_utf8_lossy(&input).into_owned();
        if let Some(Ok(slot)) = fz.call("booted_slot_from_cmdline", &input, PARSE_LIMIT, || {
            booted_slot_from_cmdline(&text)
        }) {
            let arg = format!("seesaw.slot={slot}");
            fz.check(
                text.split_ascii_whitespace().any(|a| a == arg),
                || format!("{slot} read from a command line without {arg}"),
                &input,
            );
        }
    }
    fz.finish();
}

// ---------------------------------------------------------------------------
// Configuration (TOML)
// ---------------------------------------------------------------------------

#[test]
fn fuzz_config() {
    let mut fz = Fuzz::new("config");
    let seeds: Vec<Vec<u8>> = [
        r#"compatible = "raspberrypi4-64"
data_dir = "/var/lib/seesaw"
cmdline = "/proc/cmdline"
fw_env_config = "/etc/fw_env.config"
device_id = "pi-0042"
groups = ["canary", "eu"]
[slots.A]
device = "/dev/mmcblk0p2"
[slots.B]
device = "/dev/mmcblk0p3"
[[trust.roles]]
name = "release"
threshold = 1
keys = ["/etc/seesaw/keys/release.pub"]
[[trust.roles]]
name = "fleet"
threshold = 2
keys = ["keys/fleet1.pub", "keys/fleet2.pub"]
"#,
        "compatible = 'qemu-arm'\ndata_dir = 'data'\nslots = { A = { device = 'a.img' }, \
         B = { device = 'b.img' } }\ntrust = { roles = [] }\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let base = Path::new("/etc/seesaw");
    for _ in 0..iterations() {
        let mut input = fz.rng.pick(&seeds).clone();
        mutate(&mut fz.rng, &mut input, &seeds);
        let text = String::from_utf8_lossy(&input).into_owned();
        let Some(parsed) = fz.call("Config::parse", &input, PARSE_LIMIT, || {
            Config::parse(&text, base)
        }) else {
            continue;
        };
        let Ok(config) = parsed else { continue };
        fz.accepted += 1;
        let mut paths: Vec<&PathBuf> = vec![
            &config.data_dir,
            &config.cmdline,
            &config.fw_env_config,
            &config.slots.a.device,
            &config.slots.b.device,
        ];
        paths.extend(config.trust.roles.iter().flat_map(|r| r.keys.iter()));
        fz.check(
            !config.compatible.is_empty() && paths.iter().all(|p| p.is_absolute()),
            || format!("accepted {config:?}"),
            &input,
        );
        let _ = config.slot_device(Slot::A);
    }
    fz.finish();
}

/// A deployment message from the broker (`seesaw::fleet::Deployment`) and a
/// device status as `seesaw fleet status` reads it.
#[test]
fn fuzz_fleet_messages() {
    let mut fz = Fuzz::new("fleet");
    let seeds: Vec<Vec<u8>> = [
        r#"{"deployment_id":"2026-11-21-canary","manifest_url":"https://cdn.example/v2/manifest.dsse.json"}"#,
        r#"{"deployment_id":"d:1","manifest_url":"http://h/b.ssw","envelope":{"payloadType":"x","payload":"","signatures":[]}}"#,
        r#"{"format":1,"device_id":"pi-1","state":"online","booted_slot":"A","slots":{"A":{"version":"1.0.0","tries_left":3}},"progress":40,"bytes_done":1,"bytes_total":2,"last_result":"refused","reason":"x","failed_versions":["2.0.0"],"time":"2026-11-21T00:00:00Z"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for _ in 0..iterations() {
        let mut input = fz.rng.pick(&seeds).clone();
        mutate(&mut fz.rng, &mut input, &seeds);
        if let Some(Ok(d)) = fz.call("Deployment::parse", &input, PARSE_LIMIT, || {
            seesaw::fleet::Deployment::parse(&input)
        }) {
            fz.accepted += 1;
            let again = serde_json::to_vec(&d).unwrap();
            fz.check(
                seesaw::fleet::check_name("deployment id", &d.deployment_id).is_ok()
                    && (d.manifest_url.starts_with("https://")
                        || d.manifest_url.starts_with("http://"))
                    && seesaw::fleet::Deployment::parse(&again).as_ref() == Ok(&d),
                || format!("accepted {d:?}"),
                &input,
            );
        }
        let _ = fz.call("DeviceStatus from JSON", &input, PARSE_LIMIT, || {
            serde_json::from_slice::<seesaw::fleet::DeviceStatus>(&input)
                .map(|s| seesaw::fleet::operator::format_table(&[s]))
        });
    }
    fz.finish();
}

// Regression: a correctly signed manifest whose `payload_offset` is near
// u64::MAX once made `RawBundle::verify` overflow in `check_length`
// (`payload_start + payload_offset + payload_size`). `Manifest::validate`
// now bounds offsets and sizes, and the sum saturates. Found by the
// resigned-manifest mutations above.
#[test]
fn found_payload_offset_overflow_in_verify() {
    let mut m = sample_manifest();
    m.images[0].payload_offset = u64::MAX;
    let env = Envelope::sign(MANIFEST_PAYLOAD_TYPE, &m.to_json(), &[&release_key()]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overflow.bundle");
    std::fs::write(&path, assemble(&env.to_json(), &[0u8; 4350])).unwrap();
    let policy = policy();
    let result = catch_unwind(AssertUnwindSafe(|| {
        RawBundle::open(&path).and_then(|raw| raw.verify(&policy).map(|_| ()))
    }));
    assert!(
        matches!(result, Ok(Err(_))),
        "verify must refuse the bundle with a typed error, not panic"
    );
}

// ---------------------------------------------------------------------------
// Deterministic worst cases the random mutations rarely reach
// ---------------------------------------------------------------------------

/// Deep nesting must be refused, not overflow the stack (which would abort
/// the whole test binary rather than fail one test).
#[test]
fn deeply_nested_input_is_refused() {
    let deep_json = "[".repeat(100_000);
    assert!(Envelope::from_json(deep_json.as_bytes()).is_err());
    assert!(Manifest::from_json(deep_json.as_bytes()).is_err());
    let in_field = format!("{{\"format\":{}", "[".repeat(100_000));
    assert!(Manifest::from_json(in_field.as_bytes()).is_err());
    let deep_toml = format!("compatible = {}", "[".repeat(100_000));
    assert!(Config::parse(&deep_toml, Path::new("/")).is_err());
    let deep_table = format!("x = {}", "{a=".repeat(100_000));
    assert!(Config::parse(&deep_table, Path::new("/")).is_err());
}

/// Large but bounded inputs stay fast: no quadratic behaviour in the
/// environment or command-line parsers.
#[test]
fn large_inputs_stay_fast() {
    let dev = Path::new("/dev/fuzz-env");
    // 1 MiB environment full of one-byte entries and of duplicates.
    let mut data = vec![0u8; 4];
    for i in 0..100_000u32 {
        data.extend_from_slice(format!("v{}=x\0", i % 1000).as_bytes());
    }
    data.push(0);
    data.resize(1 << 20, 0);
    fix_crc(&mut data, EnvLayout::Single);
    let block = EnvBlock::from_bytes(data, EnvLayout::Single).unwrap();
    assert!(block.is_valid());
    let start = Instant::now();
    let vars = block.vars(dev).unwrap();
    assert_eq!(vars.len(), 1000);
    let _ = block
        .with_updates(&[("v1", Some("y")), ("v2", None)], 1, dev)
        .unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "1 MiB environment took {took:?}"
    );

    let cmdline = "seesaw.slot=A ".repeat(100_000);
    let start = Instant::now();
    assert_eq!(booted_slot_from_cmdline(&cmdline), Ok(Slot::A));
    let config = "# comment\n".repeat(100_000) + "/dev/mmcblk0 0 4000\n";
    assert!(FwEnvConfig::parse(&config, Path::new("/x")).is_ok());
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "large text inputs took {took:?}"
    );
}

// ---------------------------------------------------------------------------
// Block index (network layout, delta installs)
// ---------------------------------------------------------------------------

#[test]
fn fuzz_block_index() {
    use seesaw::blocks::{self, BlockIndex};
    let mut fz = Fuzz::new("block-index");
    // A real index: 64 blocks with repeats and zeros, one base.
    let d = tempfile::tempdir().unwrap();
    let mut image = Vec::new();
    for i in 0..64u32 {
        let v = if i % 5 == 0 { 0 } else { i % 23 };
        image.extend((0..4096u32).map(|k| (k.wrapping_mul(v) >> 3) as u8));
    }
    let path = d.path().join("img");
    std::fs::write(&path, &image).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut store = Vec::new();
    let options = blocks::BuildOptions {
        bases: &[],
        level: 3,
        threads: 1,
    };
    let index = blocks::build(
        &file,
        &path,
        image.len() as u64,
        &options,
        &mut store,
        &d.path().join("store"),
    )
    .unwrap();
    let (size, store_size) = (index.image_size, index.store_size());
    let encoded = index.encode().unwrap();
    let raw = zstd::bulk::decompress(&encoded, 1 << 20).unwrap();
    let seeds = vec![raw.clone(), encoded.clone()];
    for n in 0..iterations() {
        // Mutate the raw index and compress it again (reaching the checks
        // after zstd), or mutate the compressed bytes themselves.
        let compressed = n % 4 == 0;
        let mut input = if compressed {
            encoded.clone()
        } else {
            raw.clone()
        };
        mutate(&mut fz.rng, &mut input, &seeds);
        let bytes = if compressed {
            input.clone()
        } else {
            zstd::bulk::compress(&input, 1).unwrap()
        };
        let Some(result) = fz.call("BlockIndex::decode", &input, PARSE_LIMIT, || {
            BlockIndex::decode(&bytes, size, store_size)
        }) else {
            continue;
        };
        let Ok(got) = result else { continue };
        fz.accepted += 1;
        let mut next_new = 0u32;
        let ok = got.map.len() == 64
            && got.map.iter().all(|&id| {
                let fresh = id == next_new;
                if fresh {
                    next_new += 1;
                }
                id < next_new && (id as usize) < got.short.len()
            })
            && next_new as usize == got.short.len()
            && got.store_size() == store_size
            && got
                .map
                .iter()
                .all(|&id| got.frame_first_id(got.frame_of(id)) <= id);
        fz.check(ok, || "accepted an inconsistent index".into(), &input);
    }
    fz.finish();
}

//! Signatures and the trust policy: DSSE envelopes signed with ed25519 keys,
//! checked against roles with thresholds.
//!
//! Owns the envelope format (DSSE v1: `payloadType`, base64 `payload`,
//! `signatures[]` of `{keyid, sig}`; see the DSSE specification's
//! "envelope.md" and "protocol.md"), the pre-authentication encoding (PAE) that
//! is signed, key files (PKCS#8 / SubjectPublicKeyInfo PEM, as written by
//! `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`) and the
//! decision whether a set of signatures satisfies the policy.
//!
//! Must not: parse the payload before it is verified, or treat `keyid` as
//! anything but a hint. Pure apart from reading key files.

use std::path::{Path, PathBuf};

use crate::digest::Sha256;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The `payloadType` of a seesaw manifest inside a DSSE envelope.
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.seesaw.manifest.v1+json";

/// Largest number of signatures an envelope may carry; more is refused
/// before any is checked, bounding the work an attacker can cause.
pub const MAX_SIGNATURES: usize = 64;

/// Errors of keys, envelopes and the trust policy.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A key file could not be read.
    #[error("failed to read key {path}: {source}")]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file is not an ed25519 key in the expected PEM form.
    #[error("{path} is not an ed25519 {kind} key in PEM form: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// "private (PKCS#8)" or "public (SubjectPublicKeyInfo)".
        kind: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A key could not be encoded as PEM.
    #[error("failed to encode key: {0}")]
    EncodeKey(String),
    /// The envelope is not valid DSSE JSON.
    #[error("malformed envelope: {0}")]
    MalformedEnvelope(String),
    /// The envelope carries a payload type other than the one expected.
    #[error("wrong payload type {found:?} (expected {expected:?})")]
    WrongPayloadType {
        /// The type in the envelope.
        found: String,
        /// The type required.
        expected: &'static str,
    },
    /// More signatures than [`MAX_SIGNATURES`].
    #[error("envelope carries {0} signatures, more than the {MAX_SIGNATURES} allowed")]
    TooManySignatures(usize),
    /// A role of the policy is not satisfied.
    #[error("role {role:?} needs {threshold} valid signature(s) from distinct trusted keys, found {found}")]
    ThresholdNotMet {
        /// The role.
        role: String,
        /// Signatures needed.
        threshold: usize,
        /// Distinct keys of this role with a valid signature.
        found: usize,
    },
    /// An external signing command failed or returned a bad signature.
    #[error("signing command `{command}` failed: {reason}")]
    ExternalSigner {
        /// The command.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// The policy itself is unusable (no roles, threshold 0 or above the key count).
    #[error("invalid trust policy: {0}")]
    InvalidPolicy(String),
}

impl crate::failure::Classify for TrustError {
    /// A key or policy that cannot be used is a configuration problem; an
    /// envelope that does not verify is a refused bundle.
    fn kind(&self) -> crate::failure::Kind {
        match self {
            TrustError::ReadKey { .. }
            | TrustError::BadKey { .. }
            | TrustError::EncodeKey(_)
            | TrustError::ExternalSigner { .. }
            | TrustError::InvalidPolicy(_) => crate::failure::Kind::Config,
            TrustError::MalformedEnvelope(_)
            | TrustError::WrongPayloadType { .. }
            | TrustError::TooManySignatures(_)
            | TrustError::ThresholdNotMet { .. } => crate::failure::Kind::Rejected,
        }
    }
}

/// An ed25519 public key trusted by a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM file (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// Errors: [`TrustError::ReadKey`], [`TrustError::BadKey`].
    pub fn load(path: &Path) -> Result<PublicKey, TrustError> {
        let text = read_key_file(path)?;
        PublicKey::from_pem(&text).map_err(|reason| TrustError::BadKey {
            path: path.to_path_buf(),
            kind: "public (SubjectPublicKeyInfo)",
            reason,
        })
    }

    /// Parses SubjectPublicKeyInfo PEM text; the error is the decoder's message.
    pub fn from_pem(text: &str) -> Result<PublicKey, String> {
        VerifyingKey::from_public_key_pem(text)
            .map(|key| PublicKey { key })
            .map_err(|e| e.to_string())
    }

    /// From the 32 raw key bytes (RFC 8032 encoding). Errors if the bytes are
    /// not a valid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, String> {
        VerifyingKey::from_bytes(bytes)
            .map(|key| PublicKey { key })
            .map_err(|e| e.to_string())
    }

    /// The key as SubjectPublicKeyInfo PEM.
    pub fn to_pem(&self) -> Result<String, TrustError> {
        self.key
            .to_public_key_pem(Default::default())
            .map_err(|e| TrustError::EncodeKey(e.to_string()))
    }

    /// The DSSE `keyid` hint for this key: lowercase hex SHA-256 of the 32 raw
    /// key bytes (64 characters).
    pub fn keyid(&self) -> String {
        hex::encode(Sha256::digest(self.key.as_bytes()))
    }

    /// Checks an ed25519 signature over `message` with RFC 8032's strict rules
    /// (`verify_strict`: rejects non-canonical S, small-order keys and R).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &sig).is_ok()
    }
}

/// An ed25519 private key used to sign bundles (build host only).
pub struct PrivateKey {
    key: SigningKey,
}

impl PrivateKey {
    /// Reads a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`), as written by
    /// `openssl genpkey -algorithm ed25519` or `seesaw keygen`.
    ///
    /// Errors: [`TrustError::ReadKey`], [`TrustError::BadKey`].
    pub fn load(path: &Path) -> Result<PrivateKey, TrustError> {
        let text = read_key_file(path)?;
        SigningKey::from_pkcs8_pem(&text)
            .map(|key| PrivateKey { key })
            .map_err(|e| TrustError::BadKey {
                path: path.to_path_buf(),
                kind: "private (PKCS#8)",
                reason: e.to_string(),
            })
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        PrivateKey {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// A key from a 32-byte seed (RFC 8032 secret key); for tests and vectors.
    pub fn from_seed(seed: &[u8; 32]) -> PrivateKey {
        PrivateKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The key as PKCS#8 v1 PEM (RFC 5208, private key only), the form
    /// `openssl genpkey` writes and every OpenSSL 3 reads (the v2 form of
    /// RFC 5958, with the public key, is only read by OpenSSL 3.5 and later).
    pub fn to_pem(&self) -> Result<String, TrustError> {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(Default::default())
        .map(|s| s.to_string())
        .map_err(|e| TrustError::EncodeKey(e.to_string()))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// A 64-byte ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Something that makes ed25519 signatures: a key file, or an external
/// command that keeps the key elsewhere (an HSM, a signing service).
pub trait Signer {
    /// The public key the signatures verify with.
    fn public(&self) -> PublicKey;
    /// A 64-byte ed25519 signature over `message`.
    ///
    /// Errors: [`TrustError::ExternalSigner`] for a failing command.
    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], TrustError>;
}

impl Signer for PrivateKey {
    fn public(&self) -> PublicKey {
        PrivateKey::public(self)
    }
    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], TrustError> {
        Ok(self.sign(message))
    }
}

/// A signer that runs `sh -c COMMAND`, writes the bytes to sign (the DSSE
/// PAE) to its standard input and reads the signature as base64 (the 64 raw
/// bytes) from its standard output. Every signature is checked against
/// `public` before it is used, so a wrong key or a broken signer fails at
/// build time, not on the device.
pub struct ExternalSigner {
    command: String,
    public: PublicKey,
}

impl ExternalSigner {
    /// A signer running `command`, whose key's public half is `public`.
    pub fn new(command: &str, public: PublicKey) -> ExternalSigner {
        ExternalSigner {
            command: command.to_string(),
            public,
        }
    }
}

impl Signer for ExternalSigner {
    fn public(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], TrustError> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let fail = |reason: String| TrustError::ExternalSigner {
            command: self.command.clone(),
            reason,
        };
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(message)
                .map_err(|e| fail(format!("cannot write the message: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("cannot read the signature: {e}")))?;
        if !out.status.success() {
            return Err(fail(format!("exited with {}", out.status)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let raw = B64
            .decode(text.trim().as_bytes())
            .map_err(|e| fail(format!("output is not base64: {e}")))?;
        let sig: [u8; 64] = raw
            .as_slice()
            .try_into()
            .map_err(|_| fail(format!("signature is {} bytes, not 64", raw.len())))?;
        if !self.public.verify(message, &sig) {
            return Err(fail(
                "the signature does not verify with the given public key".into(),
            ));
        }
        Ok(sig)
    }
}

fn read_key_file(path: &Path) -> Result<String, TrustError> {
    std::fs::read_to_string(path).map_err(|source| TrustError::ReadKey {
        path: path.to_path_buf(),
        source,
    })
}

/// DSSE pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope as serialised in a bundle (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Media type of the payload, [`MANIFEST_PAYLOAD_TYPE`] for seesaw.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Standard base64 (with padding) of the payload bytes.
    pub payload: String,
    /// Signatures over `PAE(payloadType, payload bytes)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Hint naming the key ([`PublicKey::keyid`]); never used to decide.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Standard base64 of the 64-byte ed25519 signature.
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` with each key in `keys` (at least one is expected).
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&PrivateKey]) -> Envelope {
        let signers: Vec<&dyn Signer> = keys.iter().map(|k| *k as &dyn Signer).collect();
        // Key files cannot fail to sign.
        Envelope::sign_with(payload_type, payload, &signers).unwrap_or_else(|_| Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: Vec::new(),
        })
    }

    /// Signs `payload` with each signer.
    ///
    /// Errors: [`TrustError::ExternalSigner`].
    pub fn sign_with(
        payload_type: &str,
        payload: &[u8],
        signers: &[&dyn Signer],
    ) -> Result<Envelope, TrustError> {
        let mut env = Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: Vec::new(),
        };
        let message = pae(payload_type, payload);
        for signer in signers {
            env.push_signature(*signer, &message)?;
        }
        Ok(env)
    }

    fn push_signature(&mut self, signer: &dyn Signer, message: &[u8]) -> Result<(), TrustError> {
        let sig = signer.sign_message(message)?;
        self.signatures.push(EnvelopeSignature {
            keyid: signer.public().keyid(),
            sig: B64.encode(sig),
        });
        Ok(())
    }

    /// Adds a countersignature over the same payload; existing signatures are
    /// kept exactly as they are.
    ///
    /// Errors: [`TrustError::MalformedEnvelope`] if the payload is not base64,
    /// [`TrustError::ExternalSigner`].
    pub fn countersign(&mut self, signer: &dyn Signer) -> Result<(), TrustError> {
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        self.push_signature(signer, &message)
    }

    /// Parses envelope JSON. Unknown fields and duplicate keys are refused.
    ///
    /// Errors: [`TrustError::MalformedEnvelope`].
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, TrustError> {
        serde_json::from_slice(bytes).map_err(|e| TrustError::MalformedEnvelope(e.to_string()))
    }

    /// The envelope as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The decoded payload bytes. NOT verified: use [`TrustPolicy::verify`].
    pub fn payload_bytes(&self) -> Result<Vec<u8>, TrustError> {
        B64.decode(self.payload.as_bytes())
            .map_err(|e| TrustError::MalformedEnvelope(format!("payload is not base64: {e}")))
    }
}

/// A role of the trust policy: `threshold` distinct keys of `keys` must sign.
#[derive(Debug, Clone)]
pub struct Role {
    /// Name, e.g. `release` or `fleet`.
    pub name: String,
    /// Signatures from distinct keys needed (at least 1).
    pub threshold: usize,
    /// The keys of this role.
    pub keys: Vec<PublicKey>,
}

/// The device's trust policy: every role must be satisfied.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    roles: Vec<Role>,
}

impl TrustPolicy {
    /// Builds a policy; refuses one that could never or would always pass.
    ///
    /// Errors: [`TrustError::InvalidPolicy`] for no roles, a threshold of 0,
    /// a threshold above the number of distinct keys, or a duplicate role name.
    pub fn new(roles: Vec<Role>) -> Result<TrustPolicy, TrustError> {
        if roles.is_empty() {
            return Err(TrustError::InvalidPolicy(
                "no trust roles configured".into(),
            ));
        }
        for (i, role) in roles.iter().enumerate() {
            if roles[..i].iter().any(|r| r.name == role.name) {
                return Err(TrustError::InvalidPolicy(format!(
                    "role {:?} is defined twice",
                    role.name
                )));
            }
            if role.threshold == 0 {
                return Err(TrustError::InvalidPolicy(format!(
                    "role {:?} has threshold 0",
                    role.name
                )));
            }
            let mut distinct: Vec<&PublicKey> = Vec::new();
            for k in &role.keys {
                if !distinct.contains(&k) {
                    distinct.push(k);
                }
            }
            if role.threshold > distinct.len() {
                return Err(TrustError::InvalidPolicy(format!(
                    "role {:?} has threshold {} but only {} distinct key(s)",
                    role.name,
                    role.threshold,
                    distinct.len()
                )));
            }
        }
        Ok(TrustPolicy { roles })
    }

    /// The roles, in configuration order.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// Verifies `envelope` and returns its payload bytes, which only now may
    /// be parsed. Checks the payload type, then for every role counts the
    /// distinct role keys with at least one valid signature (a key counts
    /// once however often it signs; `keyid` is ignored).
    ///
    /// Errors: [`TrustError::WrongPayloadType`], [`TrustError::TooManySignatures`],
    /// [`TrustError::MalformedEnvelope`], [`TrustError::ThresholdNotMet`]
    /// (the first role not satisfied).
    pub fn verify(
        &self,
        envelope: &Envelope,
        expected_type: &'static str,
    ) -> Result<Vec<u8>, TrustError> {
        if envelope.payload_type != expected_type {
            return Err(TrustError::WrongPayloadType {
                found: envelope.payload_type.clone(),
                expected: expected_type,
            });
        }
        if envelope.signatures.len() > MAX_SIGNATURES {
            return Err(TrustError::TooManySignatures(envelope.signatures.len()));
        }
        let payload = envelope.payload_bytes()?;
        let message = pae(&envelope.payload_type, &payload);
        // Decode each signature once; undecodable ones simply count for nobody.
        let sigs: Vec<Vec<u8>> = envelope
            .signatures
            .iter()
            .filter_map(|s| B64.decode(s.sig.as_bytes()).ok())
            .collect();
        for role in &self.roles {
            let mut satisfied: Vec<&PublicKey> = Vec::new();
            for key in &role.keys {
                if satisfied.contains(&key) {
                    continue;
                }
                if sigs.iter().any(|s| key.verify(&message, s)) {
                    satisfied.push(key);
                }
            }
            if satisfied.len() < role.threshold {
                return Err(TrustError::ThresholdNotMet {
                    role: role.name.clone(),
                    threshold: role.threshold,
                    found: satisfied.len(),
                });
            }
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PrivateKey {
        PrivateKey::from_seed(&[n; 32])
    }

    fn policy(roles: &[(&str, usize, &[&PrivateKey])]) -> TrustPolicy {
        TrustPolicy::new(
            roles
                .iter()
                .map(|(n, t, ks)| Role {
                    name: n.to_string(),
                    threshold: *t,
                    keys: ks.iter().map(|k| k.public()).collect(),
                })
                .collect(),
        )
        .unwrap()
    }

    const T: &str = MANIFEST_PAYLOAD_TYPE;

    #[test]
    fn pae_matches_dsse_spec_example() {
        // The DSSE protocol document's worked example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn single_role_threshold_one() {
        let k = key(1);
        let env = Envelope::sign(T, b"{}", &[&k]);
        assert_eq!(
            policy(&[("release", 1, &[&k])]).verify(&env, T).unwrap(),
            b"{}"
        );
    }

    #[test]
    fn same_key_twice_counts_once() {
        let (k1, k2) = (key(1), key(2));
        let env = Envelope::sign(T, b"x", &[&k1, &k1]);
        let err = policy(&[("release", 2, &[&k1, &k2])])
            .verify(&env, T)
            .unwrap_err();
        assert!(matches!(
            err,
            TrustError::ThresholdNotMet {
                found: 1,
                threshold: 2,
                ..
            }
        ));
        let env = Envelope::sign(T, b"x", &[&k1, &k2]);
        policy(&[("release", 2, &[&k1, &k2])])
            .verify(&env, T)
            .unwrap();
    }

    #[test]
    fn every_role_must_be_satisfied() {
        let (r, f) = (key(1), key(2));
        let p = policy(&[("release", 1, &[&r]), ("fleet", 1, &[&f])]);
        let mut env = Envelope::sign(T, b"x", &[&r]);
        assert!(matches!(
            p.verify(&env, T),
            Err(TrustError::ThresholdNotMet { ref role, .. }) if role == "fleet"
        ));
        env.countersign(&f).unwrap();
        p.verify(&env, T).unwrap();
    }

    #[test]
    fn countersign_keeps_existing_signatures() {
        let (r, f) = (key(1), key(2));
        let mut env = Envelope::sign(T, b"payload", &[&r]);
        let before = env.signatures.clone();
        env.countersign(&f).unwrap();
        assert_eq!(&env.signatures[..1], &before[..]);
        assert_eq!(env.signatures.len(), 2);
    }

    #[test]
    fn keyid_is_only_a_hint() {
        let (k1, k2) = (key(1), key(2));
        let mut env = Envelope::sign(T, b"x", &[&k1]);
        // A keyid naming another key does not stop a valid signature counting...
        env.signatures[0].keyid = k2.public().keyid();
        policy(&[("release", 1, &[&k1])]).verify(&env, T).unwrap();
        // ...and a keyid naming the trusted key does not make a bad one count.
        let mut env = Envelope::sign(T, b"x", &[&k2]);
        env.signatures[0].keyid = k1.public().keyid();
        assert!(policy(&[("release", 1, &[&k1])]).verify(&env, T).is_err());
    }

    #[test]
    fn wrong_type_tampered_payload_and_garbage() {
        let k = key(1);
        let p = policy(&[("release", 1, &[&k])]);
        let env = Envelope::sign("text/plain", b"x", &[&k]);
        assert!(matches!(
            p.verify(&env, T),
            Err(TrustError::WrongPayloadType { .. })
        ));
        let mut env = Envelope::sign(T, b"x", &[&k]);
        env.payload = B64.encode(b"y");
        assert!(matches!(
            p.verify(&env, T),
            Err(TrustError::ThresholdNotMet { .. })
        ));
        let mut env = Envelope::sign(T, b"x", &[&k]);
        env.payload = "!!".into();
        assert!(matches!(
            p.verify(&env, T),
            Err(TrustError::MalformedEnvelope(_))
        ));
        let mut env = Envelope::sign(T, b"x", &[&k]);
        env.signatures[0].sig = "not base64".into();
        assert!(matches!(
            p.verify(&env, T),
            Err(TrustError::ThresholdNotMet { .. })
        ));
        let mut env = Envelope::sign(T, b"x", &[&k]);
        env.signatures = vec![env.signatures[0].clone(); MAX_SIGNATURES + 1];
        assert!(matches!(
            p.verify(&env, T),
            Err(TrustError::TooManySignatures(_))
        ));
    }

    #[test]
    fn envelope_json_is_strict() {
        let env = Envelope::sign(T, b"x", &[&key(1)]);
        let json = String::from_utf8(env.to_json()).unwrap();
        assert_eq!(Envelope::from_json(json.as_bytes()).unwrap(), env);
        let extra = json.replacen('{', "{\"extra\":1,", 1);
        assert!(matches!(
            Envelope::from_json(extra.as_bytes()),
            Err(TrustError::MalformedEnvelope(_))
        ));
        let dup = json.replacen('{', "{\"payload\":\"eA==\",", 1);
        assert!(matches!(
            Envelope::from_json(dup.as_bytes()),
            Err(TrustError::MalformedEnvelope(_))
        ));
    }

    #[test]
    fn policy_validation() {
        let k = key(1);
        assert!(TrustPolicy::new(vec![]).is_err());
        let role = |t: usize, keys: Vec<PublicKey>| Role {
            name: "release".into(),
            threshold: t,
            keys,
        };
        assert!(TrustPolicy::new(vec![role(0, vec![k.public()])]).is_err());
        assert!(TrustPolicy::new(vec![role(2, vec![k.public(), k.public()])]).is_err());
        assert!(
            TrustPolicy::new(vec![role(1, vec![k.public()]), role(1, vec![k.public()])]).is_err()
        );
    }

    #[test]
    fn pem_round_trip() {
        let k = key(7);
        let pem = k.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let pubpem = k.public().to_pem().unwrap();
        assert!(pubpem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PublicKey::from_pem(&pubpem).unwrap(), k.public());
    }
}

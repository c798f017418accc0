//! DSSE envelope JSON, then the trust policy on whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seesaw::trust::{Envelope, PrivateKey, Role, TrustPolicy, MANIFEST_PAYLOAD_TYPE};

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::from_json(data) else {
        return;
    };
    // Whatever parses round-trips.
    assert_eq!(
        Envelope::from_json(&env.to_json()).ok().as_ref(),
        Some(&env)
    );
    let key = PrivateKey::from_seed(&[7; 32]);
    let policy = TrustPolicy::new(vec![Role {
        name: "release".into(),
        threshold: 1,
        keys: vec![key.public()],
    }])
    .expect("a one-key policy is valid");
    let _ = policy.verify(&env, MANIFEST_PAYLOAD_TYPE);
    let _ = env.payload_bytes();
});

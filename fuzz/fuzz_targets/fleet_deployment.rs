//! A deployment message from the MQTT broker (`seesaw/v1/.../deployment`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use seesaw::fleet::{check_name, Deployment};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Deployment::parse(data) {
        assert!(check_name("deployment id", &d.deployment_id).is_ok());
        assert!(d.manifest_url.starts_with("https://") || d.manifest_url.starts_with("http://"));
    }
});

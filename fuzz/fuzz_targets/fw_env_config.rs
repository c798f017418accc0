//! `fw_env.config` text, and the kernel command line.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use seesaw::slot::booted_slot_from_cmdline;
use seesaw::uboot_env::FwEnvConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = FwEnvConfig::parse(&text, Path::new("/etc/fw_env.config")) {
        let n = config.copies.len();
        assert!(n == 1 || n == 2);
        assert!(config
            .copies
            .iter()
            .all(|c| c.size == config.copies[0].size));
    }
    let _ = booted_slot_from_cmdline(&text);
});

//! `/etc/seesaw/seesaw.toml` text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use seesaw::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text, Path::new("/etc/seesaw")) {
        assert!(!config.compatible.is_empty());
        assert!(config.data_dir.is_absolute());
    }
});

//! Manifest JSON: anything accepted is valid and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seesaw::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::from_json(data) else {
        return;
    };
    assert!(
        m.validate().is_ok(),
        "from_json accepted an invalid manifest"
    );
    assert_eq!(Manifest::from_json(&m.to_json()).as_ref(), Ok(&m));
    let img = m.rootfs();
    let total: u64 = (0..img.chunks.len()).map(|i| img.chunk_len(i)).sum();
    assert_eq!(total, img.size);
});

//! A block index: the first 16 bytes give the image size and store size
//! the manifest would declare (bounded, so memory stays small); the rest is
//! the zstd-compressed index. Decoding must refuse or succeed, never panic,
//! and an accepted index must be internally consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seesaw::blocks::BlockIndex;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let image_size = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) % (64 << 20);
    let store_size = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
    if let Ok(index) = BlockIndex::decode(&data[16..], image_size, store_size) {
        assert_eq!(index.map.len() as u64, image_size.div_ceil(4096));
        for &id in &index.map {
            assert!((id as usize) < index.short.len());
            let f = index.frame_of(id);
            assert!(index.frame_first_id(f) <= id);
        }
    }
});

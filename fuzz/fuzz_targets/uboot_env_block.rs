//! One U-Boot environment copy in either layout: CRC, variables, rewrite.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use seesaw::slot::BootState;
use seesaw::uboot_env::{EnvBlock, EnvLayout};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the layout and whether to fix the CRC up, so the
    // fuzzer reaches the CRC-valid paths without having to find a CRC.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let layout = if mode & 1 == 0 {
        EnvLayout::Single
    } else {
        EnvLayout::Redundant
    };
    let mut bytes = rest.to_vec();
    if mode & 2 != 0 {
        if let Ok(b) = EnvBlock::from_bytes(bytes.clone(), layout) {
            let crc = b.computed_crc();
            bytes[..4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let Ok(block) = EnvBlock::from_bytes(bytes, layout) else {
        return;
    };
    let dev = Path::new("/dev/fuzz");
    let valid = block.is_valid();
    let Ok(vars) = block.vars(dev) else {
        return;
    };
    let _ = BootState::from_vars(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()));
    if valid {
        let same = block
            .with_updates(&[], mode, dev)
            .expect("a valid, terminated block rewrites");
        assert!(same.is_valid());
        assert_eq!(same.vars(dev).ok().as_ref(), Some(&vars));
        let _ = block.with_updates(&[("BOOT_ORDER", Some("B A")), ("x", None)], mode, dev);
    }
});

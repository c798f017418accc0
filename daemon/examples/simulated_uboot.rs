//! A simulated U-Boot for boards without hardware: it plays the bootloader's
//! side of the boot contract on a U-Boot environment located by an
//! `fw_env.config`, exactly as the scripts in `bootloader-scripts/` do.
//!
//! ```text
//! simulated_uboot init FW_ENV_CONFIG          # write a factory environment
//! simulated_uboot boot FW_ENV_CONFIG CMDLINE  # one power-on: choose a slot,
//!                                             # decrement its tries, save, and
//!                                             # write the kernel command line
//! ```
//! `boot` uses `sim/power_on.rs` (`BootState::select_boot`), the Rust statement of
//! the boot script's algorithm, and prints the same console marker the
//! scripts print.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sim/power_on.rs"]
mod power_on;

use std::path::Path;
use std::process::ExitCode;

use power_on::power_on;
use seesaw::slot::BootChoice;
use seesaw::uboot_env::{EnvBlock, EnvLayout, FwEnvConfig, UbootEnv};

/// Variables a board's built-in environment typically carries; they must
/// survive every write seesaw makes.
const FACTORY: &[(&str, &str)] = &[
    ("arch", "arm"),
    ("baudrate", "115200"),
    ("board", "rpi"),
    (
        "bootcmd",
        "load mmc 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}",
    ),
    ("bootdelay", "2"),
    ("scriptaddr", "0x02400000"),
    ("BOOT_ORDER", "A B"),
    ("BOOT_A_LEFT", "3"),
    ("BOOT_B_LEFT", "3"),
];

fn init(config: &Path) -> Result<(), String> {
    let cfg = FwEnvConfig::load(config).map_err(|e| format!("{e:#}"))?;
    let layout = if cfg.copies.len() == 2 {
        EnvLayout::Redundant
    } else {
        EnvLayout::Single
    };
    for (i, loc) in cfg.copies.iter().enumerate() {
        // The first copy is current; a second starts out invalid (all zero),
        // as on a freshly flashed board.
        let bytes = if i == 0 {
            EnvBlock::from_vars(layout, loc.size, 1, FACTORY)
                .map_err(|e| e.to_string())?
                .as_bytes()
                .to_vec()
        } else {
            vec![0u8; loc.size]
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&loc.device)
            .map_err(|e| format!("{}: {e}", loc.device.display()))?;
        let end = loc.offset + loc.size as u64;
        if f.metadata().map_err(|e| e.to_string())?.len() < end {
            f.set_len(end).map_err(|e| e.to_string())?;
        }
        std::os::unix::fs::FileExt::write_all_at(&f, &bytes, loc.offset)
            .map_err(|e| format!("{}: {e}", loc.device.display()))?;
        f.sync_all().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn boot(config: &Path, cmdline: &Path) -> Result<(), String> {
    let mut env = UbootEnv::open(config).map_err(|e| e.to_string())?;
    loop {
        match power_on(&mut env).map_err(|e| e.to_string())? {
            BootChoice::Boot { slot, tries_left } => {
                println!("seesaw: booting slot {slot} (tries left {tries_left})");
                let line =
                    format!("console=ttyS0 root=PARTLABEL=rootfs-{slot} ro seesaw.slot={slot}\n");
                std::fs::write(cmdline, line).map_err(|e| format!("{}: {e}", cmdline.display()))?;
                return Ok(());
            }
            BootChoice::ResetTries => {
                println!("seesaw: no slot has tries left; resetting tries and the board");
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [_, "init", config] => init(Path::new(config)),
        [_, "boot", config, cmdline] => boot(Path::new(config), Path::new(cmdline)),
        _ => Err("usage: simulated_uboot init FW_ENV_CONFIG | boot FW_ENV_CONFIG CMDLINE".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulated_uboot: {e}");
            ExitCode::FAILURE
        }
    }
}

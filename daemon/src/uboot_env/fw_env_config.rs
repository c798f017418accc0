//! `/etc/fw_env.config`: where the U-Boot environment copies live.
//!
//! Owns parsing the legacy one-line-per-copy format read by U-Boot's
//! `tools/env/fw_env.c` and libubootenv's `libuboot_read_config`. Must not
//! open the environment itself; only [`FwEnvConfig::load`] touches the
//! filesystem, and only to read the config file and to size a block device
//! whose offset is given from its end.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::EnvError;

/// Bytes of header in front of the data area of a redundant copy: CRC32 (4)
/// and the flag byte (1). A single copy has only the CRC32.
const REDUNDANT_HEADER: usize = 5;

/// A parsed `fw_env.config`: one copy (single environment) or two copies
/// (redundant environment, U-Boot's `CONFIG_SYS_REDUNDAND_ENVIRONMENT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEnvConfig {
    /// One or two locations, in file order. With two, the first is copy 0
    /// (U-Boot's `ENV_VALID`) and the second copy 1 (`ENV_REDUND`).
    pub copies: Vec<EnvLocation>,
}

/// Where one copy of the environment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLocation {
    /// A plain file (e.g. `uboot.env` on the FAT boot partition) or a block
    /// device (e.g. `/dev/mmcblk2` for raw eMMC). MTD/UBI is not supported.
    pub device: PathBuf,
    /// Byte offset of the copy from the start of `device`. A negative offset
    /// in the file is resolved against the block device size by
    /// [`FwEnvConfig::load`].
    pub offset: u64,
    /// Size of the whole copy in bytes (`envsize`): header plus data area.
    pub size: usize,
    /// Erase sector size in bytes, if given. Only meaningful for MTD, which
    /// seesaw does not support; kept so the config round-trips.
    pub sector_size: Option<u64>,
}

/// An offset as written in the config: from the start, or (negative) from
/// the end of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawOffset {
    FromStart(u64),
    FromEnd(u64),
}

impl FwEnvConfig {
    /// Reads and parses the config file at `path`, resolving negative offsets
    /// (counted back from the end of a block device, as libubootenv does with
    /// `BLKGETSIZE64`).
    ///
    /// Errors: [`EnvError::ConfigRead`] if the file cannot be read,
    /// [`EnvError::Config`] for a malformed line, an unsupported device, or a
    /// negative offset on something other than a block device,
    /// [`EnvError::OpenFailed`]/[`EnvError::ReadFailed`] if the block device
    /// cannot be sized.
    pub fn load(path: &Path) -> Result<FwEnvConfig, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        parse_with(&text, path, &mut |device, back, line| {
            resolve_from_end(path, device, back, line)
        })
    }

    /// Parses the text of a `fw_env.config`; `source` is only used in error
    /// messages.
    ///
    /// Format (U-Boot `tools/env/fw_env.config`, libubootenv
    /// `docs/fw_env_config.md`): one line per copy,
    /// `device offset envsize [sectorsize [numsectors]]`, `#` starts a
    /// comment, blank lines are ignored. As in both tools (`sscanf` with
    /// `%lli` then `%lx`): the offset is a C integer (`0x` hex, leading `0`
    /// octal, else decimal; negative = from the end of the device), the
    /// sizes are always hexadecimal, with or without `0x` (`4000` means
    /// 16384 bytes). One line gives a single copy, two lines a redundant
    /// pair of equal size.
    ///
    /// Negative offsets need the device size, so this pure parser rejects
    /// them with [`EnvError::Config`]; use [`FwEnvConfig::load`].
    pub fn parse(text: &str, source: &Path) -> Result<FwEnvConfig, EnvError> {
        parse_with(text, source, &mut |_device, _back, line| {
            Err(config_error(
                source,
                line,
                "a negative offset (from the end of the device) needs the device size; \
                 load the config with FwEnvConfig::load",
            ))
        })
    }

    /// True if the config describes two copies.
    pub fn is_redundant(&self) -> bool {
        self.copies.len() == 2
    }
}

fn config_error(source: &Path, line: usize, reason: impl Into<String>) -> EnvError {
    EnvError::Config {
        path: source.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Parses the config; `resolve(device, bytes_back, line)` turns a negative
/// offset into an absolute one.
fn parse_with(
    text: &str,
    source: &Path,
    resolve: &mut dyn FnMut(&Path, u64, usize) -> Result<u64, EnvError>,
) -> Result<FwEnvConfig, EnvError> {
    let mut copies: Vec<EnvLocation> = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let content = match raw_line.find('#') {
            Some(hash) => &raw_line[..hash],
            None => raw_line,
        };
        let fields: Vec<&str> = content.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let err = |reason: String| config_error(source, line_no, reason);
        if fields.len() < 3 {
            return Err(err(format!(
                "expected `device offset envsize [sectorsize [numsectors]]`, got {} field(s)",
                fields.len()
            )));
        }
        if fields.len() > 5 {
            return Err(err(format!(
                "expected at most 5 fields (device offset envsize sectorsize numsectors), got {}",
                fields.len()
            )));
        }
        let device = PathBuf::from(fields[0]);
        check_device_supported(fields[0]).map_err(|reason| err(reason.to_string()))?;
        let raw_offset = parse_offset(fields[1])
            .ok_or_else(|| err(format!("offset {:?} is not a C integer", fields[1])))?;
        let size = parse_hex(fields[2])
            .ok_or_else(|| err(format!("envsize {:?} is not a hex number", fields[2])))?;
        let size = usize::try_from(size)
            .map_err(|_| err(format!("envsize {:#x} does not fit in memory", size)))?;
        // The flag byte of a redundant copy is not known yet; require room
        // for the larger header plus the terminating NUL in every case.
        if size <= REDUNDANT_HEADER {
            return Err(err(format!(
                "envsize {:#x} is too small for a header and an empty environment",
                size
            )));
        }
        let sector_size = match fields.get(3) {
            Some(field) => Some(
                parse_hex(field)
                    .ok_or_else(|| err(format!("sectorsize {:?} is not a hex number", field)))?,
            ),
            None => None,
        };
        if let Some(field) = fields.get(4) {
            // numsectors only matters for MTD; validate it but do not keep it.
            parse_hex(field)
                .ok_or_else(|| err(format!("numsectors {:?} is not a hex number", field)))?;
        }
        if copies.len() == 2 {
            return Err(err(
                "more than two environment copies; U-Boot supports one or two".to_string(),
            ));
        }
        let offset = match raw_offset {
            RawOffset::FromStart(offset) => offset,
            RawOffset::FromEnd(back) => resolve(&device, back, line_no)?,
        };
        if let Some(first) = copies.first() {
            if first.size != size {
                return Err(err(format!(
                    "redundant copies must have the same envsize ({:#x} vs {:#x})",
                    first.size, size
                )));
            }
            if first.device == device && ranges_overlap(first.offset, offset, size) {
                return Err(err(format!(
                    "redundant copies overlap in {} (offsets {:#x} and {:#x}, envsize {:#x})",
                    device.display(),
                    first.offset,
                    offset,
                    size
                )));
            }
        }
        copies.push(EnvLocation {
            device,
            offset,
            size,
            sector_size,
        });
    }
    if copies.is_empty() {
        return Err(config_error(
            source,
            0,
            "no environment location (`device offset envsize`) found",
        ));
    }
    Ok(FwEnvConfig { copies })
}

fn ranges_overlap(a: u64, b: u64, size: usize) -> bool {
    let size = size as u64;
    a < b.saturating_add(size) && b < a.saturating_add(size)
}

/// MTD and UBI need erase handling (and NOR uses the boolean "obsolete"
/// flag), which seesaw does not implement; refuse them instead of writing
/// raw bytes into flash that needs erasing first.
fn check_device_supported(device: &str) -> Result<(), &'static str> {
    let name = device
        .strip_prefix("/dev/block/")
        .or_else(|| device.strip_prefix("/dev/"));
    match name {
        Some(name) if name.starts_with("mtd") => Err(
            "MTD devices (NOR/NAND flash with erase blocks) are not supported; \
             use a file or a block device",
        ),
        Some(name) if name.starts_with("ubi") => {
            Err("UBI volumes are not supported; use a file or a block device")
        }
        _ => Ok(()),
    }
}

/// Parses like C `strtoll(s, _, 0)` over the whole field: optional sign,
/// `0x` hex, leading `0` octal, else decimal.
fn parse_offset(field: &str) -> Option<RawOffset> {
    let (negative, digits) = match field.as_bytes().first()? {
        b'-' => (true, &field[1..]),
        b'+' => (false, &field[1..]),
        _ => (false, field),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        parse_digits(hex, 16)?
    } else if digits.len() > 1 && digits.starts_with('0') {
        parse_digits(&digits[1..], 8)?
    } else {
        parse_digits(digits, 10)?
    };
    Some(if negative && value != 0 {
        RawOffset::FromEnd(value)
    } else {
        RawOffset::FromStart(value)
    })
}

/// Parses like `sscanf("%lx")` over the whole field: hex digits with an
/// optional `0x` prefix.
fn parse_hex(field: &str) -> Option<u64> {
    let digits = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .unwrap_or(field);
    parse_digits(digits, 16)
}

fn parse_digits(digits: &str, radix: u32) -> Option<u64> {
    // from_str_radix accepts a leading '+', which C would not after a prefix.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Resolves `-back` against the size of the block device `device`.
fn resolve_from_end(config: &Path, device: &Path, back: u64, line: usize) -> Result<u64, EnvError> {
    let mut file = File::open(device).map_err(|source| EnvError::OpenFailed {
        path: device.to_path_buf(),
        source,
    })?;
    let metadata = file.metadata().map_err(|source| EnvError::ReadFailed {
        path: device.to_path_buf(),
        offset: 0,
        source,
    })?;
    if !metadata.file_type().is_block_device() {
        // libubootenv sizes the device with BLKGETSIZE64 and so refuses this
        // for plain files; do the same so both tools agree on the location.
        return Err(config_error(
            config,
            line,
            format!(
                "negative offset -{:#x} is only supported on a block device, and {} is not one",
                back,
                device.display()
            ),
        ));
    }
    let device_size = file
        .seek(SeekFrom::End(0))
        .map_err(|source| EnvError::ReadFailed {
            path: device.to_path_buf(),
            offset: 0,
            source,
        })?;
    device_size.checked_sub(back).ok_or_else(|| {
        config_error(
            config,
            line,
            format!(
                "negative offset -{:#x} is before the start of {} ({} bytes)",
                back,
                device.display(),
                device_size
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FwEnvConfig, EnvError> {
        FwEnvConfig::parse(text, Path::new("/etc/fw_env.config"))
    }

    fn config_reason(result: Result<FwEnvConfig, EnvError>) -> (usize, String) {
        match result {
            Err(EnvError::Config { line, reason, .. }) => (line, reason),
            other => panic!("expected EnvError::Config, got {other:?}"),
        }
    }

    #[test]
    fn single_copy_on_fat_file() {
        let config = parse("# Raspberry Pi\n/boot/uboot.env 0x0000 0x4000\n").unwrap();
        assert_eq!(
            config.copies,
            vec![EnvLocation {
                device: PathBuf::from("/boot/uboot.env"),
                offset: 0,
                size: 0x4000,
                sector_size: None,
            }]
        );
        assert!(!config.is_redundant());
    }

    #[test]
    fn redundant_raw_emmc_with_sectors_and_comments() {
        let text = "\n  # i.MX eMMC\n\
                    /dev/mmcblk2 0x400000 0x2000 0x200 16  # first\n\
                    \t/dev/mmcblk2\t0x402000\t0x2000\t0x200\n";
        let config = parse(text).unwrap();
        assert!(config.is_redundant());
        assert_eq!(config.copies[0].offset, 0x400000);
        assert_eq!(config.copies[1].offset, 0x402000);
        assert_eq!(config.copies[0].size, 0x2000);
        assert_eq!(config.copies[0].sector_size, Some(0x200));
    }

    #[test]
    fn sizes_are_hex_even_without_prefix_and_offsets_follow_c_rules() {
        // fw_printenv reads `4000` as 0x4000 (verified against libubootenv 0.3.2).
        let config = parse("env.bin 4096 4000\n").unwrap();
        assert_eq!(config.copies[0].offset, 4096);
        assert_eq!(config.copies[0].size, 0x4000);
        let config = parse("env.bin 010 0X10\n").unwrap();
        assert_eq!(
            config.copies[0].offset, 8,
            "leading 0 is octal as in strtoll"
        );
        assert_eq!(config.copies[0].size, 16);
    }

    #[test]
    fn negative_offset_needs_load() {
        let (line, reason) = config_reason(parse("/dev/mmcblk0 -0x4000 0x2000\n"));
        assert_eq!(line, 1);
        assert!(reason.contains("negative offset"), "{reason}");
    }

    #[test]
    fn negative_offset_on_plain_file_is_rejected_by_load() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("env.bin");
        std::fs::write(&env, vec![0u8; 0x8000]).unwrap();
        let config_path = dir.path().join("fw_env.config");
        std::fs::write(&config_path, format!("{} -0x4000 0x4000\n", env.display())).unwrap();
        let (line, reason) = config_reason(FwEnvConfig::load(&config_path));
        assert_eq!(line, 1);
        assert!(
            reason.contains("only supported on a block device"),
            "{reason}"
        );
    }

    #[test]
    fn load_reports_missing_config_file() {
        match FwEnvConfig::load(Path::new("/nonexistent/fw_env.config")) {
            Err(EnvError::ConfigRead { path, .. }) => {
                assert_eq!(path, Path::new("/nonexistent/fw_env.config"))
            }
            other => panic!("expected ConfigRead, got {other:?}"),
        }
    }

    #[test]
    fn bad_lines_are_rejected_with_their_line_number() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "no environment location"),
            ("# only a comment\n\n", 0, "no environment location"),
            ("env.bin 0\n", 1, "got 2 field(s)"),
            ("env.bin zero 0x4000\n", 1, "offset"),
            ("env.bin 0 0x\n", 1, "envsize"),
            ("env.bin 0 16k\n", 1, "envsize"),
            ("env.bin 0 -0x4000\n", 1, "envsize"),
            ("env.bin 0 0x5\n", 1, "too small"),
            ("env.bin 0 0x4000 sector\n", 1, "sectorsize"),
            ("env.bin 0 0x4000 0x200 many\n", 1, "numsectors"),
            ("env.bin 0 0x4000 0x200 2 0 extra\n", 1, "at most 5"),
            ("/dev/mtd0 0 0x4000\n", 1, "MTD"),
            ("/dev/ubi0_0 0 0x4000\n", 1, "UBI"),
            ("a 0 0x4000\nb 0 0x2000\n", 2, "same envsize"),
            ("a 0 0x4000\na 0x2000 0x4000\n", 2, "overlap"),
            ("a 0 0x4000\nb 0 0x4000\nc 0 0x4000\n", 3, "more than two"),
        ];
        for (text, want_line, want_reason) in cases {
            let (line, reason) = config_reason(parse(text));
            assert_eq!(line, *want_line, "line for {text:?}");
            assert!(
                reason.contains(want_reason),
                "reason for {text:?}: {reason}"
            );
        }
    }

    #[test]
    fn config_error_names_the_file_and_line() {
        let err = parse("\n\nenv.bin 0\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/etc/fw_env.config"), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }
}

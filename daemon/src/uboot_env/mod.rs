//! The U-Boot environment, read and written natively.
//!
//! Owns the bootloader environment storage: locating it
//! ([`FwEnvConfig`], `/etc/fw_env.config`), the on-media block format
//! ([`EnvBlock`]: CRC32, redundant flag byte, `name=value\0` list), the
//! choice between redundant copies, and the crash-safe write (new data goes
//! to the older copy, is synced and read back before it counts). It sits
//! behind the [`BootEnv`] trait, with [`UbootEnv`] for real storage and
//! [`MemoryEnv`] for tests of higher layers.
//!
//! It must not decide *what* to write: which variables and values make up
//! the boot contract (`BOOT_ORDER`, `BOOT_x_LEFT`) belongs to `slot`. It
//! never invents a default environment, never touches MTD/UBI flash, and
//! never changes a variable it was not asked to change.
//!
//! Compatible with U-Boot (`env/common.c`, `tools/env/fw_env.c`) and
//! libubootenv (`src/uboot_env.c`, Debian `libubootenv-tool`): what
//! `fw_setenv` writes we read, and what we write `fw_printenv` reads.

mod block;
mod fw_env_config;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use block::{flag_is_newer, select_current, CopyIndex, EnvBlock, EnvLayout};
pub use fw_env_config::{EnvLocation, FwEnvConfig};

/// The lock file shared with `fw_printenv`/`fw_setenv` (U-Boot tools and
/// libubootenv both default to it), so seesaw and the tools never
/// interleave a read-modify-write.
pub const DEFAULT_LOCK_FILE: &str = "/var/lock/fw_printenv.lock";

/// Errors from reading, writing or locating the environment. Variants name
/// the operation that failed and carry the path or device involved.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The `fw_env.config` file could not be read.
    #[error("failed to read environment config {}", .path.display())]
    ConfigRead {
        /// The config file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// A line of `fw_env.config` is malformed or names something seesaw
    /// cannot handle (MTD, a negative offset on a plain file, ...).
    #[error("invalid environment config {}, line {line}: {reason}", .path.display())]
    Config {
        /// The config file (as given to the parser).
        path: PathBuf,
        /// 1-based line number; 0 when the problem is the file as a whole.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A hand-built [`FwEnvConfig`] that no config file could produce
    /// (not one or two copies, copies of different sizes).
    #[error("invalid environment locations: {reason}")]
    BadLocations {
        /// What is wrong.
        reason: String,
    },
    /// A device, file or lock could not be opened.
    #[error("failed to open {}", .path.display())]
    OpenFailed {
        /// The device or file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// Reading a copy failed, including a device too short for
    /// `offset + envsize` (`UnexpectedEof`).
    #[error("failed to read environment at offset {offset:#x} of {}", .path.display())]
    ReadFailed {
        /// The device or file.
        path: PathBuf,
        /// Byte offset of the copy.
        offset: u64,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// Writing a copy failed.
    #[error("failed to write environment at offset {offset:#x} of {}", .path.display())]
    WriteFailed {
        /// The device or file.
        path: PathBuf,
        /// Byte offset of the copy.
        offset: u64,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// `fdatasync` after a write failed: the write may not be durable.
    #[error("failed to sync environment write to {}", .path.display())]
    SyncFailed {
        /// The device or file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// Taking the lock shared with `fw_setenv` failed.
    #[error("failed to lock {}", .path.display())]
    LockFailed {
        /// The lock file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The lock shared with `fw_setenv` stayed held by another process for
    /// the whole bounded wait.
    #[error("the U-Boot environment lock {} is held by another process; gave up after {waited_secs} s", .path.display())]
    LockBusy {
        /// The lock file.
        path: PathBuf,
        /// Seconds waited.
        waited_secs: u64,
    },
    /// No copy has a valid CRC. seesaw does not fall back to a default
    /// environment and refuses to write over an environment it cannot read.
    #[error("no valid U-Boot environment (CRC mismatch) in {}", describe_locations(.locations))]
    NoValidCopy {
        /// Every copy that was checked: device and byte offset.
        locations: Vec<(PathBuf, u64)>,
    },
    /// A copy with a valid CRC whose variable list cannot be parsed.
    #[error("malformed U-Boot environment in {}: {reason}", .path.display())]
    Malformed {
        /// The device or file of the current copy.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The variables do not fit the data area of the copy.
    #[error("environment needs {needed} bytes but the data area holds {size}")]
    TooLarge {
        /// Bytes of `name=value\0` entries plus the terminating NUL.
        needed: usize,
        /// Bytes in the data area (`envsize` minus the 4 or 5 byte header).
        size: usize,
    },
    /// A block shorter than its header plus a terminating NUL.
    #[error("environment block of {size} bytes is smaller than the minimum {minimum}")]
    BlockTooSmall {
        /// Bytes given.
        size: usize,
        /// Bytes needed.
        minimum: usize,
    },
    /// The bytes read back after a write differ from what was written.
    #[error("environment read back from offset {offset:#x} of {} differs from what was written", .path.display())]
    ReadBackMismatch {
        /// The device or file written.
        path: PathBuf,
        /// Byte offset of the copy.
        offset: u64,
    },
    /// A variable name that U-Boot cannot store.
    #[error("invalid environment variable name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A variable value that U-Boot cannot store.
    #[error("invalid value for environment variable {name:?}: {reason}")]
    InvalidValue {
        /// The variable name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl crate::failure::Classify for EnvError {
    /// Every environment failure, its configuration file included.
    fn kind(&self) -> crate::failure::Kind {
        crate::failure::Kind::Environment
    }
}

fn describe_locations(locations: &[(PathBuf, u64)]) -> String {
    locations
        .iter()
        .map(|(path, offset)| format!("{} at offset {offset:#x}", path.display()))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The bootloader environment as the rest of seesaw sees it: a list of
/// `name=value` string pairs. A trait so that higher layers can be tested
/// with [`MemoryEnv`].
pub trait BootEnv {
    /// All variables of the current valid copy, in block order (a name
    /// stored twice appears once, at its first position, with its last
    /// value, as U-Boot sees it).
    ///
    /// Errors: [`EnvError::NoValidCopy`] if no copy has a valid CRC, I/O
    /// errors naming the device, [`EnvError::Malformed`].
    fn read_vars(&self) -> Result<Vec<(String, String)>, EnvError>;

    /// Applies `updates` (name, `Some(value)` = set, `None` = delete) in ONE
    /// environment write, preserving every other variable byte for byte and
    /// in its original order; new names are appended at the end. A write is
    /// made even if nothing changes, so a call always refreshes the older
    /// copy.
    ///
    /// Errors: [`EnvError::InvalidName`]/[`EnvError::InvalidValue`] before
    /// anything is read or written, [`EnvError::NoValidCopy`] (nothing is
    /// written over an unreadable environment), [`EnvError::TooLarge`], and
    /// I/O errors naming the device; on any error the previously current
    /// copy is untouched.
    fn write_vars(&mut self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError>;

    /// Builds in memory the environment that [`BootEnv::write_vars`] would
    /// write for `updates`, reads it back as U-Boot would, and checks that
    /// every update is there. Writes nothing. Lets a caller find out that
    /// a write cannot be made (too full, unreadable, a value U-Boot cannot
    /// store) before it does anything that needs the write later.
    ///
    /// Errors: those of [`BootEnv::write_vars`] except I/O on writing, and
    /// [`EnvError::Malformed`] if the block built does not read back with
    /// the updates.
    fn check_write(&self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError>;

    /// The variables of the copy that is NOT in force, when there is a
    /// second valid copy (a redundant environment); `None` otherwise. What
    /// U-Boot would see if the current copy were lost.
    fn read_older_vars(&self) -> Result<Option<Vec<(String, String)>>, EnvError> {
        Ok(None)
    }

    /// The value of `name` in the current copy, `None` if unset.
    fn read_var(&self, name: &str) -> Result<Option<String>, EnvError> {
        Ok(self
            .read_vars()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value))
    }
}

/// The environment on real storage, located by a [`FwEnvConfig`].
///
/// Reads pick the current copy (see [`select_current`]). A write builds the
/// new block from the current copy, writes it to the *other* copy with the
/// flag incremented (redundant) or in place (single), `fdatasync`s, drops
/// the cached pages and reads the bytes back before returning `Ok`. With
/// two copies, a torn write therefore leaves the old environment in force;
/// with one copy it leaves a bad CRC and U-Boot falls back to its built-in
/// default, which is why boards should use a redundant environment.
#[derive(Debug, Clone)]
pub struct UbootEnv {
    config: FwEnvConfig,
    lock_file: Option<PathBuf>,
    lock_timeout: std::time::Duration,
}

/// How long [`UbootEnv`] waits for the lock shared with `fw_setenv` by
/// default before it gives up with [`EnvError::LockBusy`].
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl UbootEnv {
    /// Loads `fw_env.config` from `fw_env_config` (see
    /// [`FwEnvConfig::load`]). Does not read the environment yet.
    pub fn open(fw_env_config: &Path) -> Result<UbootEnv, EnvError> {
        Ok(UbootEnv::new(FwEnvConfig::load(fw_env_config)?))
    }

    /// Uses `config` as given, locking [`DEFAULT_LOCK_FILE`].
    pub fn new(config: FwEnvConfig) -> UbootEnv {
        UbootEnv {
            config,
            lock_file: Some(PathBuf::from(DEFAULT_LOCK_FILE)),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// Waits at most `timeout` for the lock shared with `fw_setenv`.
    pub fn with_lock_timeout(mut self, timeout: std::time::Duration) -> UbootEnv {
        self.lock_timeout = timeout;
        self
    }

    /// Uses another lock file, or none. Only change this if the tools on
    /// the board are configured with another lock file too.
    pub fn with_lock_file(mut self, lock_file: Option<PathBuf>) -> UbootEnv {
        self.lock_file = lock_file;
        self
    }

    /// The locations this environment reads and writes.
    pub fn config(&self) -> &FwEnvConfig {
        &self.config
    }

    /// Every copy as raw blocks, in config order, valid or not (for
    /// diagnostics and tests).
    pub fn read_copies(&self) -> Result<Vec<EnvBlock>, EnvError> {
        let _lock = self.lock()?;
        self.read_copies_locked()
    }

    fn layout(&self) -> Result<EnvLayout, EnvError> {
        let copies = &self.config.copies;
        match copies.as_slice() {
            [_] => Ok(EnvLayout::Single),
            [first, second] if first.size == second.size => Ok(EnvLayout::Redundant),
            [first, second] => Err(EnvError::BadLocations {
                reason: format!(
                    "redundant copies differ in size ({} and {} bytes)",
                    first.size, second.size
                ),
            }),
            _ => Err(EnvError::BadLocations {
                reason: format!("{} copies configured; expected 1 or 2", copies.len()),
            }),
        }
    }

    fn read_copies_locked(&self) -> Result<Vec<EnvBlock>, EnvError> {
        let layout = self.layout()?;
        self.config
            .copies
            .iter()
            .map(|location| EnvBlock::from_bytes(read_location(location)?, layout))
            .collect()
    }

    /// Index of the current copy among `copies`, or `NoValidCopy`.
    fn current(&self, copies: &[EnvBlock]) -> Result<usize, EnvError> {
        let current = match copies {
            [only] if only.is_valid() => Some(0),
            [first, second] => select_current(first, second).map(CopyIndex::index),
            _ => None,
        };
        current.ok_or_else(|| EnvError::NoValidCopy {
            locations: self
                .config
                .copies
                .iter()
                .map(|l| (l.device.clone(), l.offset))
                .collect(),
        })
    }

    /// Takes the lock shared with `fw_printenv`/`fw_setenv`; released when
    /// the returned file is dropped. Waits at most the lock timeout, then
    /// fails with [`EnvError::LockBusy`]: a stuck tool never hangs an
    /// install, a status or a commit.
    ///
    /// The lock lives in `/var/lock`, where any local user may create files:
    /// a lock file owned by another user than root or ourselves is not a
    /// lock any tool of ours took, and anyone could hold it forever, so it
    /// is not waited for (a warning is logged).
    fn lock(&self) -> Result<Option<File>, EnvError> {
        let Some(path) = &self.lock_file else {
            return Ok(None);
        };
        let lock_failed = |source| EnvError::LockFailed {
            path: path.clone(),
            source,
        };
        let file = match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => file,
            // A lock file created by root with the tools' 0644 still
            // serves for flock when opened read-only.
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(lock_failed)?,
            // No lock directory (e.g. no /var/lock): libubootenv carries on
            // unlocked in that case, and so do we; nothing else can hold it.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            // A symbolic link planted in place of the lock file.
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                log::warn!(
                    "{} is a symbolic link; not using it as a lock",
                    path.display()
                );
                return Ok(None);
            }
            Err(err) => return Err(lock_failed(err)),
        };
        let owner = std::os::unix::fs::MetadataExt::uid(&file.metadata().map_err(lock_failed)?);
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if owner != 0 && owner != me {
            log::warn!(
                "{} belongs to uid {owner}, not root; not waiting for it",
                path.display()
            );
            return Ok(None);
        }
        let started = std::time::Instant::now();
        loop {
            // SAFETY: flock on a file descriptor we own and keep open.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Some(file));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
                _ => return Err(lock_failed(err)),
            }
            if started.elapsed() >= self.lock_timeout {
                return Err(EnvError::LockBusy {
                    path: path.clone(),
                    waited_secs: self.lock_timeout.as_secs(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl BootEnv for UbootEnv {
    fn read_older_vars(&self) -> Result<Option<Vec<(String, String)>>, EnvError> {
        let _lock = self.lock()?;
        let copies = self.read_copies_locked()?;
        let current = self.current(&copies)?;
        if copies.len() != 2 || !copies[1 - current].is_valid() {
            return Ok(None);
        }
        Ok(copies[1 - current]
            .vars(&self.config.copies[1 - current].device)
            .ok())
    }

    fn check_write(&self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        validate_updates(updates)?;
        let _lock = self.lock()?;
        let copies = self.read_copies_locked()?;
        let current = self.current(&copies)?;
        let device = &self.config.copies[current].device;
        let flag = copies[current].flag().unwrap_or(0).wrapping_add(1);
        let block = copies[current].with_updates(updates, flag, device)?;
        let reread = EnvBlock::from_bytes(block.as_bytes().to_vec(), block.layout())?;
        check_updates_visible(&reread.vars(device)?, updates, device)
    }

    fn read_vars(&self) -> Result<Vec<(String, String)>, EnvError> {
        let _lock = self.lock()?;
        let copies = self.read_copies_locked()?;
        let current = self.current(&copies)?;
        copies[current].vars(&self.config.copies[current].device)
    }

    fn write_vars(&mut self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        validate_updates(updates)?;
        let _lock = self.lock()?;
        let copies = self.read_copies_locked()?;
        let current = self.current(&copies)?;
        let (target, flag) = match self.layout()? {
            EnvLayout::Single => (current, 0),
            EnvLayout::Redundant => {
                let flag = copies[current].flag().unwrap_or(0).wrapping_add(1);
                (1 - current, flag)
            }
        };
        let block =
            copies[current].with_updates(updates, flag, &self.config.copies[current].device)?;
        let location = &self.config.copies[target];
        write_location(location, block.as_bytes())?;
        if read_location(location)? != block.as_bytes() {
            return Err(EnvError::ReadBackMismatch {
                path: location.device.clone(),
                offset: location.offset,
            });
        }
        Ok(())
    }
}

fn validate_updates(updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
    for (name, value) in updates {
        block::validate_name(name)?;
        if let Some(value) = value {
            block::validate_value(name, value)?;
        }
    }
    Ok(())
}

/// Every update reads back from `vars` as U-Boot sees them.
fn check_updates_visible(
    vars: &[(String, String)],
    updates: &[(&str, Option<&str>)],
    device: &Path,
) -> Result<(), EnvError> {
    for (name, value) in updates {
        let found = vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        if found != *value {
            return Err(EnvError::Malformed {
                path: device.to_path_buf(),
                reason: format!("{name} would read back as {found:?}, not {value:?}"),
            });
        }
    }
    Ok(())
}

/// Reads the `location.size` bytes of one copy with `pread`.
fn read_location(location: &EnvLocation) -> Result<Vec<u8>, EnvError> {
    let file = File::open(&location.device).map_err(|source| EnvError::OpenFailed {
        path: location.device.clone(),
        source,
    })?;
    let mut bytes = vec![0u8; location.size];
    file.read_exact_at(&mut bytes, location.offset)
        .map_err(|source| EnvError::ReadFailed {
            path: location.device.clone(),
            offset: location.offset,
            source,
        })?;
    Ok(bytes)
}

/// Writes one whole copy with `pwrite`, `fdatasync`s it and drops its cached
/// pages so the read-back that follows comes from the device.
fn write_location(location: &EnvLocation, bytes: &[u8]) -> Result<(), EnvError> {
    let path = &location.device;
    let write_failed = |source| EnvError::WriteFailed {
        path: path.clone(),
        offset: location.offset,
        source,
    };
    // No create, no truncate: a block device or an existing file only.
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| EnvError::OpenFailed {
            path: path.clone(),
            source,
        })?;
    let metadata = file.metadata().map_err(write_failed)?;
    let end = location.offset.saturating_add(bytes.len() as u64);
    if metadata.is_file() && metadata.len() < end {
        // Never grow a plain file: the bootloader reads a fixed-size file.
        return Err(write_failed(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "file is {} bytes, the copy ends at byte {end}; refusing to extend it",
                metadata.len()
            ),
        )));
    }
    file.write_all_at(bytes, location.offset)
        .map_err(write_failed)?;
    file.sync_data().map_err(|source| EnvError::SyncFailed {
        path: path.clone(),
        source,
    })?;
    // Best effort: if the kernel keeps the pages, the read-back only proves
    // the page cache, which is still worth checking.
    // SAFETY: fadvise on a file descriptor we own; no memory is passed.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            location.offset as libc::off_t,
            bytes.len() as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
    Ok(())
}

/// An environment held in memory, for tests of higher layers. Same update
/// semantics and name/value checks as [`UbootEnv`]; counts writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEnv {
    /// The variables, in "block" order.
    pub vars: Vec<(String, String)>,
    /// Number of successful [`BootEnv::write_vars`] calls.
    pub writes: usize,
}

impl MemoryEnv {
    /// An environment holding `vars`, with no writes yet.
    pub fn new(vars: &[(&str, &str)]) -> MemoryEnv {
        MemoryEnv {
            vars: vars
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            writes: 0,
        }
    }
}

impl BootEnv for MemoryEnv {
    fn read_vars(&self) -> Result<Vec<(String, String)>, EnvError> {
        Ok(self.vars.clone())
    }

    fn check_write(&self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        validate_updates(updates)
    }

    fn write_vars(&mut self, updates: &[(&str, Option<&str>)]) -> Result<(), EnvError> {
        validate_updates(updates)?;
        for (name, value) in updates {
            match value {
                None => self.vars.retain(|(n, _)| n != name),
                Some(value) => match self.vars.iter().position(|(n, _)| n == name) {
                    Some(first) => {
                        let mut index = 0;
                        self.vars.retain(|(n, _)| {
                            let keep = index <= first || n != name;
                            index += 1;
                            keep
                        });
                        self.vars[first].1 = value.to_string();
                    }
                    None => self.vars.push((name.to_string(), value.to_string())),
                },
            }
        }
        self.writes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        env: UbootEnv,
    }

    fn location(device: &Path, offset: u64, size: usize) -> EnvLocation {
        EnvLocation {
            device: device.to_path_buf(),
            offset,
            size,
            sector_size: None,
        }
    }

    /// Two copies in one file at 0x100 and 0x300, each 0x200 bytes.
    fn redundant_fixture(first: &EnvBlock, second: &EnvBlock) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.img");
        let mut image = vec![0xa5u8; 0x600];
        image[0x100..0x300].copy_from_slice(first.as_bytes());
        image[0x300..0x500].copy_from_slice(second.as_bytes());
        std::fs::write(&path, image).unwrap();
        let config = FwEnvConfig {
            copies: vec![location(&path, 0x100, 0x200), location(&path, 0x300, 0x200)],
        };
        let env = UbootEnv::new(config).with_lock_file(Some(dir.path().join("lock")));
        Fixture { _dir: dir, env }
    }

    fn block(flag: u8, vars: &[(&str, &str)]) -> EnvBlock {
        EnvBlock::from_vars(EnvLayout::Redundant, 0x200, flag, vars).unwrap()
    }

    fn corrupt(block: &EnvBlock) -> EnvBlock {
        let mut bytes = block.as_bytes().to_vec();
        bytes[20] ^= 0x01;
        EnvBlock::from_bytes(bytes, EnvLayout::Redundant).unwrap()
    }

    fn file_bytes(env: &UbootEnv) -> Vec<u8> {
        std::fs::read(&env.config().copies[0].device).unwrap()
    }

    #[test]
    fn reads_the_newer_copy() {
        let f = redundant_fixture(&block(3, &[("v", "old")]), &block(4, &[("v", "new")]));
        assert_eq!(f.env.read_var("v").unwrap().as_deref(), Some("new"));
    }

    #[test]
    fn write_goes_to_the_older_copy_and_leaves_the_current_one() {
        let old = block(3, &[("v", "old"), ("keep", "1")]);
        let current = block(4, &[("v", "cur"), ("keep", "1")]);
        let mut f = redundant_fixture(&old, &current);
        f.env.write_vars(&[("v", Some("next"))]).unwrap();
        let copies = f.env.read_copies().unwrap();
        assert_eq!(copies[1], current, "current copy untouched");
        assert_eq!(copies[0].flag(), Some(5));
        assert!(copies[0].is_valid());
        assert_eq!(
            f.env.read_vars().unwrap(),
            vec![
                ("v".to_string(), "next".to_string()),
                ("keep".to_string(), "1".to_string())
            ]
        );
        // And the next write alternates back.
        f.env.write_vars(&[("v", Some("again"))]).unwrap();
        let copies = f.env.read_copies().unwrap();
        assert_eq!(copies[1].flag(), Some(6));
        assert_eq!(f.env.read_var("v").unwrap().as_deref(), Some("again"));
    }

    #[test]
    fn write_goes_to_the_invalid_copy_even_if_its_flag_is_higher() {
        let current = block(9, &[("v", "cur")]);
        let broken = corrupt(&block(200, &[("v", "torn")]));
        let mut f = redundant_fixture(&current, &broken);
        assert_eq!(f.env.read_var("v").unwrap().as_deref(), Some("cur"));
        f.env.write_vars(&[("v", Some("new"))]).unwrap();
        let copies = f.env.read_copies().unwrap();
        assert_eq!(copies[0], current);
        assert_eq!(copies[1].flag(), Some(10));
        assert_eq!(f.env.read_var("v").unwrap().as_deref(), Some("new"));
    }

    #[test]
    fn flag_wraps_from_255_to_0_and_the_new_copy_wins() {
        let mut f = redundant_fixture(&block(254, &[("v", "a")]), &block(255, &[("v", "b")]));
        f.env.write_vars(&[("v", Some("c"))]).unwrap();
        let copies = f.env.read_copies().unwrap();
        assert_eq!(copies[0].flag(), Some(0));
        assert_eq!(f.env.read_var("v").unwrap().as_deref(), Some("c"));
    }

    #[test]
    fn incremented_flag_always_wins_over_its_predecessor() {
        for flag in 0..=255u8 {
            assert!(flag_is_newer(flag.wrapping_add(1), flag), "flag {flag}");
        }
    }

    #[test]
    fn no_valid_copy_refuses_to_read_and_to_write() {
        let a = corrupt(&block(1, &[("v", "a")]));
        let b = corrupt(&block(2, &[("v", "b")]));
        let mut f = redundant_fixture(&a, &b);
        let before = file_bytes(&f.env);
        assert!(matches!(
            f.env.read_vars(),
            Err(EnvError::NoValidCopy { ref locations }) if locations.len() == 2
        ));
        assert!(matches!(
            f.env.write_vars(&[("v", Some("x"))]),
            Err(EnvError::NoValidCopy { .. })
        ));
        assert_eq!(file_bytes(&f.env), before, "nothing written");
    }

    #[test]
    fn invalid_update_writes_nothing() {
        let mut f = redundant_fixture(&block(1, &[("v", "a")]), &block(2, &[("v", "b")]));
        let before = file_bytes(&f.env);
        assert!(matches!(
            f.env
                .write_vars(&[("ok", Some("1")), ("bad=name", Some("1"))]),
            Err(EnvError::InvalidName { .. })
        ));
        assert!(matches!(
            f.env.write_vars(&[("v", Some("nul\0"))]),
            Err(EnvError::InvalidValue { .. })
        ));
        let huge = "x".repeat(0x200);
        assert!(matches!(
            f.env.write_vars(&[("v", Some(huge.as_str()))]),
            Err(EnvError::TooLarge { needed, size: 0x1fb }) if needed > 0x200
        ));
        assert_eq!(file_bytes(&f.env), before);
    }

    #[test]
    fn single_copy_round_trip_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uboot.env");
        let block = EnvBlock::from_vars(EnvLayout::Single, 0x100, 0, &[("a", "1")]).unwrap();
        std::fs::write(&path, block.as_bytes()).unwrap();
        let mut env = UbootEnv::new(FwEnvConfig {
            copies: vec![location(&path, 0, 0x100)],
        })
        .with_lock_file(None);
        env.write_vars(&[("b", Some("2")), ("a", None)]).unwrap();
        assert_eq!(
            env.read_vars().unwrap(),
            vec![("b".to_string(), "2".to_string())]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0x100);
    }

    #[test]
    fn short_file_is_a_read_error_and_is_never_extended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uboot.env");
        std::fs::write(&path, [0u8; 0x80]).unwrap();
        let mut env = UbootEnv::new(FwEnvConfig {
            copies: vec![location(&path, 0, 0x100)],
        })
        .with_lock_file(None);
        assert!(matches!(
            env.write_vars(&[("a", Some("1"))]),
            Err(EnvError::ReadFailed { offset: 0, .. })
        ));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0x80);
        let missing = UbootEnv::new(FwEnvConfig {
            copies: vec![location(&dir.path().join("missing"), 0, 0x100)],
        })
        .with_lock_file(None);
        assert!(matches!(
            missing.read_vars(),
            Err(EnvError::OpenFailed { .. })
        ));
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn hand_built_config_with_bad_copies_is_refused() {
        let env = UbootEnv::new(FwEnvConfig { copies: vec![] }).with_lock_file(None);
        assert!(matches!(
            env.read_vars(),
            Err(EnvError::BadLocations { .. })
        ));
        let env = UbootEnv::new(FwEnvConfig {
            copies: vec![
                location(Path::new("a"), 0, 0x100),
                location(Path::new("b"), 0, 0x200),
            ],
        })
        .with_lock_file(None);
        assert!(matches!(
            env.read_vars(),
            Err(EnvError::BadLocations { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_device() {
        let err = EnvError::NoValidCopy {
            locations: vec![(PathBuf::from("/dev/mmcblk2"), 0x400000)],
        };
        assert_eq!(
            err.to_string(),
            "no valid U-Boot environment (CRC mismatch) in /dev/mmcblk2 at offset 0x400000"
        );
        let err = EnvError::OpenFailed {
            path: PathBuf::from("/dev/mmcblk0"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(err.to_string(), "failed to open /dev/mmcblk0");
    }

    #[test]
    fn memory_env_applies_updates_like_the_block() {
        let mut env = MemoryEnv::new(&[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]);
        env.write_vars(&[("a", Some("9")), ("c", None), ("d", Some("5"))])
            .unwrap();
        assert_eq!(env.writes, 1);
        assert_eq!(
            env.read_vars().unwrap(),
            vec![
                ("a".to_string(), "9".to_string()),
                ("b".to_string(), "2".to_string()),
                ("d".to_string(), "5".to_string())
            ]
        );
        let before = env.clone();
        assert!(matches!(
            env.write_vars(&[("x", Some("1")), ("", Some("1"))]),
            Err(EnvError::InvalidName { .. })
        ));
        assert_eq!(
            env, before,
            "invalid update changes nothing, counts no write"
        );
        assert_eq!(env.read_var("b").unwrap().as_deref(), Some("2"));
        assert_eq!(env.read_var("zz").unwrap(), None);
    }
}

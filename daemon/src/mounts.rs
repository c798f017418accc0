//! What the running system uses: refuses to write a slot target that is
//! mounted, holds the root file system, or is part of something that is.
//!
//! A mistaken configuration (slots swapped, a whole disk named as a slot, a
//! slot file that is loop-mounted) must never overwrite the running system.
//! The facts come from the kernel: `/proc/self/mountinfo` (field 3,
//! `major:minor` of each mounted file system, see proc(5)), `st_dev` of `/`,
//! and sysfs (`/sys/dev/block/M:m/partition`, `.../holders/`, and
//! `/sys/block/loop*/loop/backing_file`). Reads only; never writes.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A device number as `(major, minor)`.
type DevNum = (u32, u32);

fn split_dev(dev: u64) -> DevNum {
    (libc::major(dev), libc::minor(dev))
}

fn parse_dev(text: &str) -> Option<DevNum> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The block devices file systems are mounted from now, the root file
/// system's device included, each with the disk it is a partition of.
fn devices_in_use() -> BTreeSet<DevNum> {
    let mut used = BTreeSet::new();
    if let Ok(meta) = std::fs::metadata("/") {
        used.insert(split_dev(meta.dev()));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in text.lines() {
            if let Some(dev) = line.split(' ').nth(2).and_then(parse_dev) {
                used.insert(dev);
            }
        }
    }
    // A mounted partition puts its whole disk in use too.
    let parents: Vec<DevNum> = used.iter().filter_map(|d| parent_disk(*d)).collect();
    used.extend(parents);
    used
}

fn sys_block(dev: DevNum) -> PathBuf {
    PathBuf::from(format!("/sys/dev/block/{}:{}", dev.0, dev.1))
}

/// The disk a partition belongs to (sysfs puts partitions inside their disk).
fn parent_disk(dev: DevNum) -> Option<DevNum> {
    let dir = sys_block(dev);
    if !dir.join("partition").exists() {
        return None;
    }
    let real = std::fs::canonicalize(&dir).ok()?;
    parse_dev(&std::fs::read_to_string(real.parent()?.join("dev")).ok()?)
}

/// Whether something (device mapper, md, a loop device) is stacked on `dev`.
fn has_holders(dev: DevNum) -> bool {
    std::fs::read_dir(sys_block(dev).join("holders"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// The loop devices whose backing file is `file`.
fn loop_devices_of(file: &Path) -> Vec<DevNum> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim_end()) == file)
        })
        .filter_map(|e| parse_dev(&std::fs::read_to_string(e.path().join("dev")).ok()?))
        .collect()
}

/// Why writing `target` would hit the running system, or `None` when it is
/// free. A target that does not exist is `None` here (opening it fails
/// later with its own error).
pub fn in_use(target: &Path) -> Option<String> {
    let meta = std::fs::metadata(target).ok()?;
    let used = devices_in_use();
    if meta.file_type().is_block_device() {
        let dev = split_dev(meta.rdev());
        if used.contains(&dev) {
            return Some(format!(
                "{} ({}:{}) is mounted, holds the root file system, or is the disk of a mounted partition",
                target.display(),
                dev.0,
                dev.1
            ));
        }
        if has_holders(dev) {
            return Some(format!(
                "{} is in use by another block device (device mapper, RAID or loop)",
                target.display()
            ));
        }
        return None;
    }
    if meta.is_file() {
        let real = std::fs::canonicalize(target).ok()?;
        for dev in loop_devices_of(&real) {
            if used.contains(&dev) || has_holders(dev) {
                return Some(format!(
                    "{} backs loop device {}:{}, which is mounted",
                    target.display(),
                    dev.0,
                    dev.1
                ));
            }
        }
    }
    None
}

/// Whether `a` and `b` name the same file or device, however they are
/// spelled (links, `..`, another device node of the same device). Paths
/// that do not exist are compared by their absolute, normalised spelling.
pub fn same_target(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => {
            let block = |m: &std::fs::Metadata| m.file_type().is_block_device();
            if block(&ma) && block(&mb) {
                ma.rdev() == mb.rdev()
            } else {
                ma.dev() == mb.dev() && ma.ino() == mb.ino()
            }
        }
        _ => {
            let norm = |p: &Path| std::path::absolute(p).map(|p| normalise(&p));
            matches!((norm(a), norm(b)), (Ok(x), Ok(y)) if x == y)
        }
    }
}

fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_target_sees_through_spellings() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.img");
        std::fs::write(&a, b"x").unwrap();
        let b = d.path().join("b.img");
        std::fs::write(&b, b"y").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let hard = d.path().join("hard");
        std::fs::hard_link(&a, &hard).unwrap();
        let dotted = d.path().join("sub/../a.img");
        std::fs::create_dir(d.path().join("sub")).unwrap();
        assert!(same_target(&a, &link));
        assert!(same_target(&a, &hard));
        assert!(same_target(&a, &dotted));
        assert!(!same_target(&a, &b));
        let missing = d.path().join("x/../none");
        assert!(same_target(&missing, &d.path().join("none")));
        assert!(!same_target(&missing, &a));
    }

    #[test]
    fn the_root_device_is_in_use() {
        let root = split_dev(std::fs::metadata("/").unwrap().dev());
        assert!(devices_in_use().contains(&root));
        assert_eq!(parse_dev("8:3\n"), Some((8, 3)));
        assert_eq!(parse_dev("8"), None);
    }

    #[test]
    fn a_plain_file_is_free() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("slot.img");
        std::fs::write(&a, vec![0u8; 4096]).unwrap();
        assert_eq!(in_use(&a), None);
        assert_eq!(in_use(&d.path().join("missing")), None);
    }
}

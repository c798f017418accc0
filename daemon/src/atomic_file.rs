//! Replacing files atomically. New content goes to a temporary file in the
//! target's directory; the temporary file is fsynced, renamed over the
//! target, and then the directory is fsynced. After a power cut the target
//! holds either the old content or the new, never a mix, and once the call
//! returns the new content is on disk.
//!
//! This module owns that sequence, the temporary file's name and removing
//! it when something fails. It does not know what the files contain and uses
//! no other seesaw module, so every layer can use it. Callers turn
//! [`WriteError`] into their own typed errors; it names the step that failed
//! and the file it failed on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many names [`TempFile::new`] tries before it gives up. A name is
/// taken only by a file left behind when an earlier process with the same
/// pid crashed (pids repeat across boots).
const NAME_ATTEMPTS: u32 = 64;

/// Makes temporary names unique within this process; the pid makes them
/// unique between processes.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// One step of an atomic write failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {op} {path}: {source}")]
pub struct WriteError {
    /// The step. `"create"`, `"write"` and `"fsync"` apply to the temporary
    /// file, `"rename to"` to the target and `"fsync directory"` to the
    /// target's directory.
    pub op: &'static str,
    /// The file or directory the step was done on.
    pub path: PathBuf,
    /// The I/O error.
    pub source: io::Error,
}

impl WriteError {
    fn new(op: &'static str, path: &Path, source: io::Error) -> WriteError {
        WriteError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Replaces the content of `path` with `bytes` atomically. If `path` does
/// not exist it is created with mode `0o666` minus the umask. The directory
/// must already exist.
///
/// Errors: [`WriteError`]. When it fails, `path` is unchanged and no
/// temporary file is left behind.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut tmp = TempFile::new(path)?;
    tmp.write_all(bytes)?;
    tmp.persist()
}

/// Fsyncs the directory `dir`. This makes a rename, create or remove done in
/// it durable.
///
/// Errors: [`WriteError`] with op `"fsync directory"`.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WriteError::new("fsync directory", dir, e))
}

/// Puts several temporary files in place, in the order given. All of them
/// are fsynced before the first rename, and each directory involved is
/// fsynced once after the last rename. A reader that trusts the last file
/// (a signed envelope, say) should get that file last.
///
/// Each target is replaced atomically, but the set is not: if a rename
/// fails, the targets before it already have their new content and the
/// temporary files not yet renamed are removed.
///
/// Errors: [`WriteError`].
pub fn persist_all(files: Vec<TempFile>) -> Result<(), WriteError> {
    for f in &files {
        f.file
            .sync_all()
            .map_err(|e| WriteError::new("fsync", &f.path, e))?;
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for mut f in files {
        std::fs::rename(&f.path, &f.target)
            .map_err(|e| WriteError::new("rename to", &f.target, e))?;
        f.placed = true;
        if !dirs.contains(&f.dir) {
            dirs.push(f.dir.clone());
        }
    }
    dirs.iter().try_for_each(|d| sync_dir(d))
}

/// Removes the temporary files of [`TempFile::new`] that processes no
/// longer running left in `dir` (a power cut or a kill between create and
/// rename): every `.<name>.<pid>.<n>.tmp` whose `pid` is not this process
/// and has no `/proc/<pid>`. A leftover whose pid a live process has taken
/// since (pids repeat across boots) stays until a later call. Best effort:
/// without `/proc`, or when `dir` cannot be read, nothing is removed.
/// Returns how many files were removed.
pub fn remove_leftovers(dir: &Path) -> usize {
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_name_pid) else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        let _ = sync_dir(dir);
    }
    removed
}

/// The pid in a name made by [`TempFile::new`] (`.<name>.<pid>.<n>.tmp`),
/// or `None` for any other name.
fn temp_name_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let n = parts.next()?;
    let pid = parts.next()?;
    let target = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if target.is_empty() || !digits(n) || !digits(pid) {
        return None;
    }
    pid.parse().ok()
}

/// A temporary file next to the file it will replace, opened for reading and
/// writing. It is named `.<target name>.<pid>.<n>.tmp`, where `n` counts up
/// within the process. Dropping it before [`TempFile::persist`] (or
/// [`persist_all`]) removes it, so an error path that returns early leaves
/// nothing behind and the target untouched.
#[derive(Debug)]
pub struct TempFile {
    file: File,
    path: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    placed: bool,
}

impl TempFile {
    /// Creates a new, empty temporary file for `target`, with mode `0o666`
    /// minus the umask. The target's directory must exist.
    ///
    /// Errors: [`WriteError`] with op `"create"`. This includes a `target`
    /// without a file name (`/`, `..`).
    pub fn new(target: &Path) -> Result<TempFile, WriteError> {
        let Some(name) = target.file_name() else {
            return Err(WriteError::new(
                "create",
                target,
                io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
            ));
        };
        let name = name.to_string_lossy();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut last = None;
        for _ in 0..NAME_ATTEMPTS {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        file,
                        path,
                        target: target.to_path_buf(),
                        dir,
                        placed: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(WriteError::new("create", &path, e)),
            }
        }
        let (path, e) =
            last.unwrap_or_else(|| (dir.clone(), io::Error::from(io::ErrorKind::AlreadyExists)));
        Err(WriteError::new("create", &path, e))
    }

    /// The temporary file. `&File` implements `Read`, `Write` and `Seek`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The temporary file's path, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file this one will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Appends `bytes` at the current position.
    ///
    /// Errors: [`WriteError`] with op `"write"`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.file
            .write_all(bytes)
            .map_err(|e| WriteError::new("write", &self.path, e))
    }

    /// Fsyncs the file, renames it over the target and fsyncs the directory.
    ///
    /// Errors: [`WriteError`]. When it fails, the temporary file is removed.
    pub fn persist(self) -> Result<(), WriteError> {
        persist_all(vec![self])
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            // Best effort: this runs on error paths, whose own error matters
            // more than one about a leftover.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replace_creates_then_replaces_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("state.json");
        replace(&target, b"first").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        replace(&target, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second, longer");
        replace(&target, b"").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        assert_eq!(names(d.path()), ["state.json"]);
    }

    #[test]
    fn a_relative_target_uses_the_current_directory() {
        let t = TempFile::new(Path::new("relative-name")).unwrap();
        assert_eq!(t.path().parent(), Some(Path::new(".")));
        assert!(t.path().to_string_lossy().starts_with("./.relative-name."));
        let path = t.path().to_path_buf();
        drop(t);
        assert!(!path.exists());
    }

    #[test]
    fn failing_to_create_the_temporary_file_names_it_and_leaves_nothing() {
        // Tests run as root, so a read-only directory would not stop them:
        // a parent that is a regular file does.
        let d = tempfile::tempdir().unwrap();
        let not_a_dir = d.path().join("plain");
        std::fs::write(&not_a_dir, b"keep").unwrap();
        let err = replace(&not_a_dir.join("state.json"), b"new").unwrap_err();
        assert_eq!(err.op, "create");
        assert!(err.path.starts_with(&not_a_dir), "{err}");
        assert_eq!(names(d.path()), ["plain"]);
        assert_eq!(std::fs::read(&not_a_dir).unwrap(), b"keep");
    }

    #[test]
    fn a_failed_rename_leaves_the_target_unchanged_and_no_temporary_file() {
        // A directory in the target's place: rename(2) of a file over it
        // fails with EISDIR after the temporary file is written and fsynced.
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("state.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"old").unwrap();
        let err = replace(&target, b"new").unwrap_err();
        assert_eq!(err.op, "rename to");
        assert_eq!(err.path, target);
        assert_eq!(names(d.path()), ["state.json"]);
        assert_eq!(names(&target), ["inside"]);
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"old");
    }

    #[test]
    fn an_existing_target_is_unchanged_when_the_write_is_abandoned() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("bundle.ssb");
        std::fs::write(&target, b"old").unwrap();
        {
            let mut t = TempFile::new(&target).unwrap();
            t.write_all(b"half of the new con").unwrap();
            assert_eq!(names(d.path()).len(), 2);
            // Dropped here, as when a caller's `?` returns early.
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(names(d.path()), ["bundle.ssb"]);
    }

    #[test]
    fn a_target_without_a_file_name_is_refused() {
        let err = replace(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.op, "create");
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_leftover_with_the_next_name_is_skipped_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("fleet.json");
        // Take the next few names, as files left by a crashed process with
        // this pid would; another thread may take counter values too.
        let next = COUNTER.load(Ordering::Relaxed);
        let leftovers: Vec<PathBuf> = (next..next + 4)
            .map(|n| {
                d.path()
                    .join(format!(".fleet.json.{}.{n}.tmp", std::process::id()))
            })
            .collect();
        for l in &leftovers {
            std::fs::write(l, b"torn").unwrap();
        }
        replace(&target, b"whole").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        for l in &leftovers {
            assert_eq!(std::fs::read(l).unwrap(), b"torn");
        }
    }

    #[test]
    fn persist_all_places_every_file_in_order() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("blocks.bin");
        let b = d.path().join("envelope.json");
        std::fs::write(&b, b"old envelope").unwrap();
        let mut ta = TempFile::new(&a).unwrap();
        ta.write_all(b"blocks").unwrap();
        let mut tb = TempFile::new(&b).unwrap();
        tb.write_all(b"new envelope").unwrap();
        assert_eq!(tb.target(), b);
        persist_all(vec![ta, tb]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"blocks");
        assert_eq!(std::fs::read(&b).unwrap(), b"new envelope");
        assert_eq!(names(d.path()), ["blocks.bin", "envelope.json"]);
    }

    #[test]
    fn persist_all_stops_at_a_failed_rename_and_removes_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let first = d.path().join("a");
        let blocked = d.path().join("b");
        let last = d.path().join("c");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(&last, b"old c").unwrap();
        let staged: Vec<TempFile> = [&first, &blocked, &last]
            .into_iter()
            .map(|p| {
                let mut t = TempFile::new(p).unwrap();
                t.write_all(b"new").unwrap();
                t
            })
            .collect();
        let err = persist_all(staged).unwrap_err();
        assert_eq!(
            (err.op, err.path.as_path()),
            ("rename to", blocked.as_path())
        );
        assert_eq!(std::fs::read(&first).unwrap(), b"new");
        assert_eq!(std::fs::read(&last).unwrap(), b"old c");
        assert_eq!(names(d.path()), ["a", "b", "c"]);
    }

    #[test]
    fn sync_dir_names_a_missing_directory() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("gone");
        let err = sync_dir(&gone).unwrap_err();
        assert_eq!((err.op, err.path), ("fsync directory", gone));
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A pid above the kernel's limit (pid_max is at most 2^22) never runs.
        let dead = [".state.json.4194999.0.tmp", ".journal.json.4194999.17.tmp"];
        let me = format!(".state.json.{}.3.tmp", std::process::id());
        let kept = [
            "state.json",
            ".state.json",
            ".state.json.tmp",
            ".state.json.x.1.tmp",
            ".state.json.1.tmp",
            "..1.2.tmp",
            me.as_str(),
            ".state.json.1.0.tmp", // pid 1 is alive
        ];
        for n in dead.iter().chain(&kept) {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        assert_eq!(remove_leftovers(d), dead.len());
        for n in dead {
            assert!(!d.join(n).exists(), "{n}");
        }
        for n in kept {
            assert!(d.join(n).exists(), "{n}");
        }
        assert_eq!(remove_leftovers(d), 0);
        assert_eq!(remove_leftovers(&d.join("missing")), 0);
    }
}

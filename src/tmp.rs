//! Private temporary directories that do not outlive their process.
//!
//! Each directory holds a lock file that its process keeps locked (flock)
//! for as long as it lives. The lock goes with the process however it ends,
//! SIGKILL included, so a later run tells a dead process's directory (lock
//! free) from a live one's without trusting pids, and removes it. A
//! directory is made under a hidden name and renamed once locked, so no run
//! ever sees one of them unlocked while its owner lives. Destructors remove
//! directories on the normal path; `remove_all` does it when a signal ends
//! the process (no destructor runs then).

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

const LOCK: &str = ".nixops-lock";

/// Every directory of this process that still exists.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Directories that live as long as the process (see [`for_process`]).
static FOR_PROCESS: Mutex<Vec<TmpDir>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A directory `<prefix>XXXXXX`, removed when dropped.
#[derive(Debug)]
pub struct TmpDir {
    path: PathBuf,
    _lock: File,
}

impl TmpDir {
    /// A new directory in `$TMPDIR`.
    pub fn new(prefix: &str) -> Result<TmpDir> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// A new directory in `base`, after removing the `prefix` directories
    /// of processes that have died.
    pub fn new_in(base: &Path, prefix: &str) -> Result<TmpDir> {
        sweep(base, prefix);
        let hidden = tempfile::Builder::new()
            .prefix(&format!(".{prefix}"))
            .tempdir_in(base)
            .with_context(|| format!("cannot create a temporary directory in {}", base.display()))?
            .keep();
        let made = (|| {
            let lock = File::create(hidden.join(LOCK))?;
            lock.lock()?;
            let name = hidden.file_name().expect("a name").to_string_lossy();
            let path = base.join(&name[1..]);
            std::fs::rename(&hidden, &path)?;
            live().insert(path.clone());
            Ok::<_, std::io::Error>(TmpDir { path, _lock: lock })
        })();
        made.map_err(|e| {
            let _ = std::fs::remove_dir_all(&hidden);
            anyhow::Error::new(e).context(format!("cannot set up temporary directory {}", hidden.display()))
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        live().remove(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A `prefix` directory in `base` for the rest of the process, made on
/// first use; [`remove_all`] removes it at the end.
pub fn for_process(base: &Path, prefix: &str) -> Result<PathBuf> {
    let mut dirs = FOR_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let found = dirs.iter().find(|d| {
        d.path.parent() == Some(base)
            && d.path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
    });
    if let Some(d) = found {
        return Ok(d.path.clone());
    }
    let d = TmpDir::new_in(base, prefix)?;
    let path = d.path.clone();
    dirs.push(d);
    Ok(path)
}

/// Removes every directory of this process, for when it is about to end.
pub fn remove_all() {
    for p in std::mem::take(&mut *live()) {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// Removes the `prefix` directories in `base` whose process has died: ours
/// (owner and lock file) and unlocked. Anything else is left alone.
fn sweep(base: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let uid = rustix::process::getuid().as_raw();
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let path = e.path();
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !ours {
            continue;
        }
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            tracing::debug!("removing {}, left by a process that died", path.display());
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A private directory of ours for this user, `<base>/<name>-<uid>` (base:
/// $XDG_RUNTIME_DIR, else /tmp): made 0700, and refused unless it is a
/// directory owned by us that nobody else may enter. Its path is stable
/// across runs.
pub fn private_dir(name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let uid = rustix::process::getuid().as_raw();
    let dir = base.join(format!("{name}-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "{} is not a private directory owned by us; refusing to use it",
            dir.display()
        );
    }
    Ok(dir)
}

/// Writes `data` to `path` readable by its owner only (0600, as tempfile
/// makes files), written beside it and renamed into place: a reader never
/// sees half of it.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("a file in a directory");
    let mut f =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    f.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

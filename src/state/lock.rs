//! The exclusive per-deployment lock, the same file NixOps locks
//! (`$HOME/.nixops/locks/<uuid>`), so our commands and NixOps' exclude each
//! other.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Unlock;

/// The lock file, locked while this value lives.
pub struct FileLock {
    _file: File,
}

pub fn lock_path(uuid: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("$HOME is not set")?;
    Ok(PathBuf::from(home).join(".nixops/locks").join(uuid))
}

/// Takes the lock, saying "waiting for exclusive deployment lock..." when
/// another process holds it. The lock goes with the process: a killed holder
/// never leaves a stale lock behind.
pub fn acquire(uuid: &str) -> Result<FileLock> {
    let path = lock_path(uuid)?;
    let dir = path.parent().expect("lock path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            errln!("waiting for exclusive deployment lock...");
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    // Say who holds it, for `nixops unlock` and for people looking.
    use std::io::{Seek, Write};
    file.set_len(0)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    Ok(FileLock { _file: file })
}

/// Removes a lock file that no live process holds; refuses to touch a held
/// lock.
pub fn unlock(uuid: &str) -> Result<Unlock> {
    let path = lock_path(uuid)?;
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Unlock::NotLocked),
        Err(e) => return Err(e).with_context(|| format!("cannot open lock file {}", path.display())),
    };
    match file.try_lock() {
        Ok(()) => {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            Ok(Unlock::Cleared)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            Ok(Unlock::Held {
                by: pid.map(|p: u32| format!("pid {p}")),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

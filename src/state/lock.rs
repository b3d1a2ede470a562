//! The exclusive per-deployment lock, the same file NixOps locks
//! (`$HOME/.nixops/locks/<uuid>`), so our commands and NixOps' exclude each
//! other.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use anyhow::{Context, Result};

pub struct DeploymentLock {
    _file: File,
}

pub fn lock_path(uuid: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("$HOME is not set")?;
    Ok(PathBuf::from(home).join(".nixops/locks").join(uuid))
}

/// Takes the lock, saying "waiting for exclusive deployment lock..." when
/// another process holds it. The lock goes with the process: a killed holder
/// never leaves a stale lock behind.
pub fn acquire(uuid: &str) -> Result<DeploymentLock> {
    let path = lock_path(uuid)?;
    let dir = path.parent().expect("lock path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("waiting for exclusive deployment lock...");
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(DeploymentLock { _file: file })
}

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
            match holder(&std::fs::read_to_string(&path).unwrap_or_default()) {
                Some(h) => errln!("waiting for exclusive deployment lock... ({h})"),
                None => errln!("waiting for exclusive deployment lock..."),
            }
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    // Say who holds it, for `nixops unlock`, for waiters and for people
    // looking: the pid first (what older versions wrote), then user@host
    // and since when.
    use std::io::{Seek, Write};
    file.set_len(0)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    write!(
        file,
        "{}\n{}\n{since}\n",
        std::process::id(),
        super::history::who()
    )?;
    Ok(FileLock { _file: file })
}

/// Who holds a lock, from its file's text: "held by root@host, pid 12,
/// since ... UTC" (as the PostgreSQL lock says it), or less when the holder
/// wrote less (NixOps writes nothing).
fn holder(text: &str) -> Option<String> {
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let who = lines.next().map(str::trim).filter(|w| !w.is_empty());
    let since = lines.next().and_then(|s| s.trim().parse::<u64>().ok());
    Some(match (who, since) {
        (Some(w), Some(t)) => format!(
            "held by {w}, pid {pid}, since {} UTC",
            super::history::format_utc(t)
        ),
        _ => format!("held by pid {pid}"),
    })
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
        Err(std::fs::TryLockError::WouldBlock) => Ok(Unlock::Held {
            by: holder(&std::fs::read_to_string(&path).unwrap_or_default()),
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_named_from_what_it_wrote() {
        assert_eq!(
            holder("12\nroot@h\n0\n").as_deref(),
            Some("held by root@h, pid 12, since 1970-01-01 00:00:00 UTC")
        );
        // Older versions wrote the pid alone; NixOps nothing.
        assert_eq!(holder("12\n").as_deref(), Some("held by pid 12"));
        assert_eq!(holder(""), None);
    }
}

//! What an evaluation read looks like now: a digest per path (content,
//! type, link target, entries, absence) or environment variable, memoized
//! for the run; files' content digests are remembered between runs by
//! their stat signature, as git's index does, so an unchanged file is
//! stat'ed, not read.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::trace::Read;

/// A file's stat signature and the content digest it had with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sig {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i128,
    ctime: i128,
    digest: String,
}

/// Digests of what evaluations read, as it is now.
pub struct Hasher {
    /// Signatures known from earlier runs (and this one).
    pub sigs: BTreeMap<PathBuf, Sig>,
    /// Mixed into environment variables' digests, so the cache file tells
    /// nothing of their values.
    salt: String,
    memo: HashMap<Read, Taken>,
}

/// A digest as taken this run: when, and when what it stands for last
/// changed (None: no time says, as for a variable or a directory's type).
#[derive(Clone)]
struct Taken {
    digest: String,
    at: i128,
    changed: Option<i128>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new(BTreeMap::new(), String::new())
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn nanos(secs: i64, nsecs: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsecs)
}

pub fn now_nanos() -> i128 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_nanos() as i128
}

/// How long after a change a file's signature is trusted (file systems
/// with coarse timestamps may not show a second change within this).
const SETTLED: i128 = 2_000_000_000;

/// How far a file's change time may lag the moment of the change: Linux
/// stamps files from its coarse clock, which lags real time by at most one
/// of its ticks; twice the tick, or 20 ms where it cannot be asked.
fn clock_lag() -> i128 {
    static LAG: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    *LAG.get_or_init(|| {
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_getres writes one timespec into `res`.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_REALTIME_COARSE, &mut res) } == 0;
        let tick = nanos(res.tv_sec, res.tv_nsec);
        if ok && tick > 0 && tick <= 20_000_000 {
            2 * tick
        } else {
            20_000_000
        }
    })
}

/// When a file last changed, by its metadata (its content or its entries:
/// mtime; its type, links or being replaced: ctime).
fn last_change(meta: &std::fs::Metadata) -> i128 {
    nanos(meta.ctime(), meta.ctime_nsec()).max(nanos(meta.mtime(), meta.mtime_nsec()))
}

/// Under /nix/store: immutable while it exists.
pub fn in_store(p: &Path) -> bool {
    p.starts_with("/nix/store/")
}

/// A digest no later one equals: what it stands for changed too recently
/// to say what an evaluation saw.
pub const UNSETTLED: &str = "?";

impl Hasher {
    pub fn new(sigs: BTreeMap<PathBuf, Sig>, salt: String) -> Self {
        Hasher {
            sigs,
            salt,
            memo: HashMap::new(),
        }
    }

    /// The digest of `read` now: for a path, `f:`/`fx:` a regular file's
    /// content (and exec bit), `d` a directory, `l:` a link's target, `ls:`
    /// a directory's entries, `s` a store path that exists, `o` another
    /// kind of file, `-` nothing there; for a variable, its salted value's
    /// digest or `-` when unset.
    pub fn current(&mut self, read: &Read) -> String {
        self.take(read).digest
    }

    /// The digest to record for an evaluation that began at `began` (ns
    /// since the epoch): the digest, when it was taken before the
    /// evaluation began (Nix saw that version or a later one, which shows as
    /// a change next time) or what it stands for last changed before then;
    /// else [`UNSETTLED`]: what Nix saw cannot be told.
    pub fn settled(&mut self, read: &Read, began: i128) -> String {
        let t = self.take(read);
        match t.changed {
            Some(changed) if t.at >= began && changed >= began - clock_lag() => UNSETTLED.to_owned(),
            _ => t.digest,
        }
    }

    fn take(&mut self, read: &Read) -> Taken {
        if let Some(t) = self.memo.get(read) {
            return t.clone();
        }
        let at = now_nanos();
        let mut changed = None;
        let digest = match read {
            Read::Env(name) => match std::env::var_os(name) {
                Some(v) => {
                    let mut h = Sha256::new();
                    h.update(self.salt.as_bytes());
                    h.update(b"\0");
                    h.update(v.as_encoded_bytes());
                    format!("v:{}", hex::encode(h.finalize()))
                }
                None => "-".to_owned(),
            },
            Read::Follow(p) | Read::Path(p) if in_store(p) => match std::fs::symlink_metadata(p) {
                Ok(_) => "s".to_owned(),
                Err(_) => "-".to_owned(),
            },
            Read::Follow(p) => self.path(p, std::fs::metadata(p), &mut changed),
            Read::Path(p) => self.path(p, std::fs::symlink_metadata(p), &mut changed),
            Read::List(p) => self.list(p, &mut changed),
        };
        let t = Taken { digest, at, changed };
        self.memo.insert(read.clone(), t.clone());
        t
    }

    /// A path's digest; `changed` gets when it last changed, where that
    /// can change what the digest says.
    fn path(
        &mut self,
        path: &Path,
        meta: std::io::Result<std::fs::Metadata>,
        changed: &mut Option<i128>,
    ) -> String {
        let Ok(meta) = meta else {
            return "-".to_owned();
        };
        let ft = meta.file_type();
        // A directory counts by its type here, which entries coming and
        // going (Nix making its per-user directories) do not change.
        if !ft.is_dir() {
            *changed = Some(last_change(&meta));
        }
        if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(t) => format!("l:{}", t.display()),
                Err(_) => "-".to_owned(),
            }
        } else if ft.is_dir() {
            "d".to_owned()
        } else if ft.is_file() {
            let exec = if meta.permissions().mode() & 0o111 != 0 {
                "x"
            } else {
                ""
            };
            format!("f{exec}:{}", self.content(path, &meta))
        } else {
            // Sockets, fifos, devices: their type is all Nix could see.
            "o".to_owned()
        }
    }

    /// A directory's entries: each name and type, as readDir tells them.
    fn list(&mut self, dir: &Path, changed: &mut Option<i128>) -> String {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => *changed = Some(last_change(&m)),
            Ok(_) => return "o".to_owned(),
            Err(_) => return "-".to_owned(),
        }
        let mut entries: Vec<(std::ffi::OsString, &str)> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| {
                    let kind = match e.file_type() {
                        Ok(t) if t.is_symlink() => "symlink",
                        Ok(t) if t.is_dir() => "directory",
                        Ok(t) if t.is_file() => "regular",
                        _ => "unknown",
                    };
                    (e.file_name(), kind)
                })
                .collect(),
            Err(e) => return format!("unreadable ({})", e.kind()),
        };
        entries.sort();
        let mut h = Sha256::new();
        for (name, kind) in entries {
            h.update(name.as_encoded_bytes());
            h.update(b"\0");
            h.update(kind.as_bytes());
            h.update(b"\n");
        }
        format!("ls:{}", hex::encode(h.finalize()))
    }

    /// A regular file's content digest, from its signature when the file
    /// has not changed since (and had not changed just before it was
    /// hashed: a write within the clock's granularity after hashing would
    /// leave the signature as it was).
    fn content(&mut self, path: &Path, meta: &std::fs::Metadata) -> String {
        let sig = |digest: String| Sig {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime: nanos(meta.ctime(), meta.ctime_nsec()),
            digest,
        };
        if let Some(known) = self.sigs.get(path)
            && *known == sig(known.digest.clone())
        {
            return known.digest.clone();
        }
        let started = now_nanos();
        let digest = match std::fs::read(path) {
            Ok(bytes) => hex_digest(&bytes),
            // Unreadable: as good as absent for Nix, and never equal to a
            // content digest.
            Err(e) => format!("unreadable ({})", e.kind()),
        };
        let s = sig(digest.clone());
        if s.mtime < started - SETTLED && s.ctime < started - SETTLED {
            self.sigs.insert(path.to_owned(), s);
        } else {
            self.sigs.remove(path);
        }
        digest
    }
}

/// Whether a file an evaluation opened reads the clock
/// (`builtins.currentTime`, which Nix sets when it starts, so no trace
/// can tell whether it was used): the file says its name.
pub fn reads_the_clock(path: &Path, memo: &mut HashMap<PathBuf, bool>) -> bool {
    if let Some(b) = memo.get(path) {
        return *b;
    }
    let found = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => std::fs::read(path)
            .map(|bytes| bytes.windows(11).any(|w| w == b"currentTime"))
            .unwrap_or(false),
        _ => false,
    };
    memo.insert(path.to_owned(), found);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_what_nix_could_see() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let trusting = |sigs| Hasher::new(sigs, "salt".into());
        let mut h = trusting(BTreeMap::new());
        let first = h.current(&Read::Follow(f.clone()));
        assert!(first.starts_with("f:"), "{first}");
        // Memoized for the run; a new hasher sees the change.
        std::fs::write(&f, "two").unwrap();
        assert_eq!(h.current(&Read::Follow(f.clone())), first);
        assert_ne!(trusting(h.sigs.clone()).current(&Read::Follow(f.clone())), first);

        // A link: followed, the content reached; itself, its target.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("a.txt", &link).unwrap();
        let mut h = trusting(BTreeMap::new());
        assert_eq!(
            h.current(&Read::Follow(link.clone())),
            h.current(&Read::Follow(f.clone()))
        );
        assert_eq!(h.current(&Read::Path(link.clone())), "l:a.txt");
        assert_eq!(h.current(&Read::Path(dir.path().join("gone"))), "-");
        assert_eq!(h.current(&Read::Follow(dir.path().into())), "d");
        assert_eq!(h.current(&Read::Follow("/nix/store/nonexistent-x".into())), "-");

        // Entries: names and types, not content.
        let list = |h: &mut Hasher| h.current(&Read::List(dir.path().into()));
        let before = list(&mut trusting(BTreeMap::new()));
        std::fs::write(&f, "three").unwrap();
        assert_eq!(list(&mut trusting(BTreeMap::new())), before);
        std::fs::write(dir.path().join("new"), "").unwrap();
        assert_ne!(list(&mut trusting(BTreeMap::new())), before);

        // Variables: salted, so the digest does not give the value away.
        unsafe { std::env::set_var("NIXOPS_FILES_TEST_VAR", "x") };
        let var = Read::Env("NIXOPS_FILES_TEST_VAR".into());
        let salted = trusting(BTreeMap::new()).current(&var);
        assert!(!salted.contains(&hex_digest(b"x")));
        let mut other = trusting(BTreeMap::new());
        other.salt = "pepper".into();
        assert_ne!(other.current(&var), salted);
        assert_eq!(
            trusting(BTreeMap::new()).current(&Read::Env("NIXOPS_FILES_TEST_UNSET".into())),
            "-"
        );

        // Changed while an evaluation ran, and taken after it began: what
        // it saw cannot be told. Taken before it began: safe.
        let mut h = trusting(BTreeMap::new());
        let before = h.current(&Read::Follow(f.clone()));
        std::thread::sleep(std::time::Duration::from_millis(60));
        let began = now_nanos();
        std::fs::write(&f, "four").unwrap();
        std::fs::write(dir.path().join("newer"), "").unwrap();
        assert_eq!(h.settled(&Read::Follow(f.clone()), began), before);
        let mut h = trusting(BTreeMap::new());
        assert_eq!(h.settled(&Read::Follow(f.clone()), began), UNSETTLED);
        assert_eq!(h.settled(&Read::List(dir.path().into()), began), UNSETTLED);
        assert_ne!(h.settled(&Read::Follow(dir.path().into()), began), UNSETTLED);
        // Changed well before it began: safe.
        let mut h = trusting(BTreeMap::new());
        assert_ne!(
            h.settled(&Read::Follow(f.clone()), now_nanos() + 1_000_000_000),
            UNSETTLED
        );
    }

    #[test]
    fn the_clock_is_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.nix"), dir.path().join("b.nix"));
        std::fs::write(&a, "{ t = builtins.currentTime; }").unwrap();
        std::fs::write(&b, "{ t = 1; }").unwrap();
        let mut memo = HashMap::new();
        assert!(reads_the_clock(&a, &mut memo));
        assert!(!reads_the_clock(&b, &mut memo));
        assert!(!reads_the_clock(dir.path(), &mut memo));
    }
}

//! What the files an evaluation read look like now: a digest per path
//! (content, directory tree, link target, absence), memoized for the run and
//! remembered between runs by their stat signature, as git's index does, so
//! an unchanged file is stat'ed, not read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// Entries a directory walk may visit before giving up (see [`Hasher::tree`]).
pub const MAX_TREE_ENTRIES: usize = 20_000;

/// Digests of paths as they are now.
#[derive(Default)]
pub struct Hasher {
    /// Signatures known from earlier runs (and this one).
    pub sigs: BTreeMap<PathBuf, Sig>,
    memo: HashMap<PathBuf, String>,
}

fn hex_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn nanos(secs: i64, nsecs: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsecs)
}

fn now_nanos() -> i128 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_nanos() as i128
}

/// Under /nix/store: immutable while it exists.
pub fn in_store(p: &Path) -> bool {
    p.starts_with("/nix/store/")
}

impl Hasher {
    pub fn new(sigs: BTreeMap<PathBuf, Sig>) -> Self {
        Hasher {
            sigs,
            memo: HashMap::new(),
        }
    }

    /// The digest of `path` now: `f:` content, `d:` directory tree, `l:`
    /// link target, `s` a store path that exists, `-` nothing there, `?` a
    /// tree too big to watch (never equal to a recorded digest).
    pub fn current(&mut self, path: &Path) -> String {
        if let Some(d) = self.memo.get(path) {
            return d.clone();
        }
        let d = if in_store(path) {
            match std::fs::symlink_metadata(path) {
                Ok(_) => "s".to_owned(),
                Err(_) => "-".to_owned(),
            }
        } else {
            let mut budget = MAX_TREE_ENTRIES;
            self.digest(path, &mut budget).unwrap_or_else(|| "?".to_owned())
        };
        self.memo.insert(path.to_owned(), d.clone());
        d
    }

    /// A path's digest; None when a tree has more than `budget` entries.
    fn digest(&mut self, path: &Path, budget: &mut usize) -> Option<String> {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return Some("-".to_owned());
        };
        let ft = meta.file_type();
        Some(if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(t) => format!("l:{}", t.display()),
                Err(_) => "-".to_owned(),
            }
        } else if ft.is_dir() {
            format!("d:{}", self.tree(path, budget, &|_| Watch::Full)?)
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
        })
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
        const SETTLED: i128 = 2_000_000_000;
        if s.mtime < started - SETTLED && s.ctime < started - SETTLED {
            self.sigs.insert(path.to_owned(), s);
        } else {
            self.sigs.remove(path);
        }
        digest
    }

    /// A directory tree's digest: every entry's name and type, regular
    /// files' content and exec bit, links' targets, recursively (links are
    /// not followed), as `watch` says for each path. None past `budget`
    /// entries.
    pub fn tree(&mut self, dir: &Path, budget: &mut usize, watch: &dyn Fn(&Path) -> Watch) -> Option<String> {
        let mut names: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
            Err(e) => return Some(format!("unreadable ({})", e.kind())),
        };
        names.sort();
        let mut h = Sha256::new();
        for name in names {
            *budget = budget.checked_sub(1)?;
            let p = dir.join(&name);
            let entry = match watch(&p) {
                Watch::Skip => continue,
                Watch::Name => "listed".to_owned(),
                Watch::Full => match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => format!("d:{}", self.tree(&p, budget, watch)?),
                    _ => self.digest(&p, budget)?,
                },
            };
            h.update(name.as_encoded_bytes());
            h.update(b"\0");
            h.update(entry.as_bytes());
            h.update(b"\n");
        }
        Some(hex::encode(h.finalize()))
    }
}

/// How a directory walk counts a path.
pub enum Watch {
    /// Not at all.
    Skip,
    /// By its name only.
    Name,
    /// By its name and content.
    Full,
}

/// The digest of what Nix does not report reading (`builtins.readFile`,
/// `readDir`, `pathExists`, `builtins.path`, `filterSource`, ...) under the
/// network's directories: every directory's listing and every file's
/// content, except `.nix` files and the `reported` ones (Nix reports the
/// files it evaluates and copies, so they count for the machines that read
/// them), `.git` directories and the paths in `skip` and below them (the
/// state file and its journals, the cache). Err(root) when a root holds
/// more than [`MAX_TREE_ENTRIES`] entries: too many to watch.
pub fn unreported(
    hasher: &mut Hasher,
    roots: &[PathBuf],
    skip: &[PathBuf],
    reported: &BTreeSet<PathBuf>,
) -> Result<String, PathBuf> {
    let mut h = Sha256::new();
    for root in roots {
        let mut budget = MAX_TREE_ENTRIES;
        let watch = |p: &Path| {
            let name = p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            if name == ".git" || skip.iter().any(|s| p.starts_with(s)) {
                Watch::Skip
            } else if (name.ends_with(".nix") && p.is_file()) || reported.contains(p) {
                Watch::Name
            } else {
                Watch::Full
            }
        };
        let d = hasher
            .tree(root, &mut budget, &watch)
            .ok_or_else(|| root.clone())?;
        h.update(root.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    Ok(hex::encode(h.finalize()))
}

/// Where to watch for unreported reads of a network in files: the
/// directories holding its files, each widened to the git work tree it is
/// in (a module may read a file elsewhere in its repository); nested roots
/// are dropped.
pub fn roots_of(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent())
        .map(|dir| {
            dir.ancestors()
                .find(|a| a.join(".git").exists())
                .unwrap_or(dir)
                .to_owned()
        })
        .collect();
    roots.sort();
    roots.dedup();
    let all = roots.clone();
    roots.retain(|r| !all.iter().any(|o| o != r && r.starts_with(o)));
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_content_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let mut h = Hasher::default();
        let first = h.current(&f);
        assert!(first.starts_with("f:"), "{first}");
        // Memoized for the run; a new hasher sees the change even when
        // size and mtime stay (the signature was not settled yet).
        std::fs::write(&f, "two").unwrap();
        assert_eq!(h.current(&f), first);
        let mut h2 = Hasher::new(h.sigs.clone());
        assert_ne!(h2.current(&f), first);
        assert_eq!(Hasher::default().current(&dir.path().join("gone")), "-");
        assert_eq!(
            Hasher::default().current(Path::new("/nix/store/nonexistent-x")),
            "-"
        );

        let roots = vec![dir.path().to_owned()];
        let skip = vec![dir.path().join("state.nixops")];
        let reported = BTreeSet::from([dir.path().join("copied.txt")]);
        let net = |h: &mut Hasher| unreported(h, &roots, &skip, &reported).unwrap();
        let base = net(&mut Hasher::default());
        // A .nix file's content does not count, its name does.
        std::fs::write(dir.path().join("m.nix"), "{ }").unwrap();
        let with_nix = net(&mut Hasher::default());
        assert_ne!(with_nix, base);
        std::fs::write(dir.path().join("m.nix"), "{ x = 1; }").unwrap();
        assert_eq!(net(&mut Hasher::default()), with_nix);
        // Nor does a reported file's content.
        std::fs::write(dir.path().join("copied.txt"), "1").unwrap();
        let copied = net(&mut Hasher::default());
        std::fs::write(dir.path().join("copied.txt"), "2").unwrap();
        assert_eq!(net(&mut Hasher::default()), copied);
        // Skipped paths and .git do not count at all.
        let git = net(&mut Hasher::default());
        std::fs::write(dir.path().join("state.nixops"), "y").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/index"), "y").unwrap();
        assert_eq!(net(&mut Hasher::default()), git);
        // Other files count by content.
        std::fs::write(&f, "three").unwrap();
        assert_ne!(net(&mut Hasher::default()), git);
    }

    #[test]
    fn roots_widen_to_the_work_tree_and_nest() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("deploy/machines")).unwrap();
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let roots = roots_of(&[
            repo.join("deploy/net.nix"),
            repo.join("deploy/machines/m.nix"),
            other.join("net.nix"),
        ]);
        assert_eq!(roots, vec![other, repo]);
    }
}

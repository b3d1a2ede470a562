//! The evaluation cache: per deployment, one JSON file in the state
//! directory (`eval-cache/<uuid>.json`) holding each machine's deployment
//! info and toplevel with what they were evaluated from, so a machine whose
//! inputs have not changed is not evaluated at all.
//!
//! An entry is reused only when, at once:
//! - the run's key is the same: the tool and its Nix code, the Nix version,
//!   the network's source (files, or a flake's locked URL and output),
//!   arguments, search path, Nix options and configuration files, and the
//!   environment variables evaluation reads (`NIX_PATH`, ...);
//! - every file the machine's evaluation read, as Nix reported it
//!   (evaluated files and sources copied to the store), has the digest it
//!   had then;
//! - what Nix does not report (files read by `builtins.readFile` and the
//!   like) is unchanged under the network's directories (files.rs);
//! - the entry's own checksum holds, and its derivation is still in the
//!   store and names the toplevel as an output.
//!
//! The file is replaced atomically (a new file renamed over it) under a
//! lock, merged with what others wrote meanwhile; a file that does not
//! parse is ignored (and replaced), never trusted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{self, Hasher, Sig};
use super::{MachineInfo, NetworkMeta};

const VERSION: u32 = 1;

/// A file an evaluation read, as Nix reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Read {
    /// `evaluating file '…'`: parsed and evaluated.
    Evaluated(PathBuf),
    /// `copied source '…' -> …`: added to the store as a path value.
    Copied(PathBuf),
}

impl Read {
    pub fn path(&self) -> &Path {
        match self {
            Read::Evaluated(p) | Read::Copied(p) => p,
        }
    }
}

/// The network's own attributes and machine names, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaValue {
    pub network: NetworkMeta,
    pub resource_types: Vec<String>,
    pub names: Vec<String>,
}

/// One cached result and what it was evaluated from. `deps` index the
/// file's table of (path, digest) pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry<T> {
    key: String,
    net: String,
    deps: Vec<usize>,
    value: T,
    sum: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// (path, digest) pairs the entries depend on.
    deps: Vec<(PathBuf, String)>,
    meta: Option<Entry<MetaValue>>,
    machines: BTreeMap<String, Entry<MachineInfo>>,
    /// Stat signatures of files hashed before.
    sigs: BTreeMap<PathBuf, Sig>,
}

/// An entry with its dependencies resolved to (path, digest) pairs.
struct Resolved<T> {
    key: String,
    net: String,
    deps: Vec<(PathBuf, String)>,
    value: T,
}

fn checksum<T: Serialize>(key: &str, net: &str, deps: &[(PathBuf, String)], value: &T) -> String {
    let body = serde_json::to_string(&(key, net, deps, value)).expect("cache entries serialize");
    hex::encode(Sha256::digest(body.as_bytes()))
}

impl CacheFile {
    fn resolve<T: Clone + Serialize>(&self, e: &Entry<T>) -> Option<Resolved<T>> {
        let deps: Option<Vec<(PathBuf, String)>> =
            e.deps.iter().map(|i| self.deps.get(*i).cloned()).collect();
        let deps = deps?;
        (checksum(&e.key, &e.net, &deps, &e.value) == e.sum).then(|| Resolved {
            key: e.key.clone(),
            net: e.net.clone(),
            deps,
            value: e.value.clone(),
        })
    }
}

/// Builds a file from resolved entries: one table of pairs for all.
#[derive(Default)]
struct Builder {
    index: BTreeMap<(PathBuf, String), usize>,
    deps: Vec<(PathBuf, String)>,
}

impl Builder {
    fn entry<T: Serialize>(&mut self, r: Resolved<T>) -> Entry<T> {
        let ids = r
            .deps
            .iter()
            .map(|d| {
                *self.index.entry(d.clone()).or_insert_with(|| {
                    self.deps.push(d.clone());
                    self.deps.len() - 1
                })
            })
            .collect();
        Entry {
            sum: checksum(&r.key, &r.net, &r.deps, &r.value),
            key: r.key,
            net: r.net,
            deps: ids,
            value: r.value,
        }
    }
}

/// Why an entry was not used, for the progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// Never evaluated (or the entry is damaged).
    New,
    /// The tool, Nix, the source, arguments or settings changed.
    Settings,
    /// A file it read changed.
    Changed(PathBuf),
    /// Something under the network's directories that Nix does not report
    /// changed.
    Unreported,
    /// Its toplevel was not evaluated then, or its derivation is gone.
    NoToplevel,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::New => write!(f, "not in the cache"),
            Miss::Settings => write!(f, "settings changed"),
            Miss::Changed(p) => write!(f, "{} changed", p.display()),
            Miss::Unreported => write!(f, "a file in the network's directory changed"),
            Miss::NoToplevel => write!(f, "no toplevel cached"),
        }
    }
}

/// The cache of one deployment for one run.
pub struct Cache {
    path: PathBuf,
    key: String,
    /// Watched for what Nix does not report: the network's directories,
    /// less these.
    roots: Vec<PathBuf>,
    skip: Vec<PathBuf>,
    /// The unreported files' digest now, counting as reported the files
    /// the entries depend on (their changes count for their readers only).
    net: String,
    file: CacheFile,
    hasher: Hasher,
    /// The entries found valid in this run (the meta as "").
    hits: BTreeSet<String>,
    /// What this run evaluated, to be saved.
    new_meta: Option<Resolved<MetaValue>>,
    new_machines: BTreeMap<String, Resolved<MachineInfo>>,
    /// The machines of the network now (others are dropped on save).
    names: Option<BTreeSet<String>>,
}

fn unreported(
    hasher: &mut Hasher,
    roots: &[PathBuf],
    skip: &[PathBuf],
    reported: &BTreeSet<PathBuf>,
) -> Result<String, String> {
    files::unreported(hasher, roots, skip, reported).map_err(|root| {
        format!(
            "{} holds more than {} files, too many to watch for files read by builtins.readFile and the like",
            root.display(),
            files::MAX_TREE_ENTRIES
        )
    })
}

/// Where a deployment's cache lives: `eval-cache/` beside the state file,
/// or, for a state that is no file (a database), in `$XDG_CACHE_HOME/nixops`
/// (default `~/.cache/nixops`).
pub fn dir_for_state(state_file: Option<&Path>) -> Option<PathBuf> {
    match state_file.map(|f| f.parent()) {
        Some(Some(dir)) if !dir.as_os_str().is_empty() => Some(dir.join("eval-cache")),
        Some(_) => Some(PathBuf::from("eval-cache")),
        None => {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("nixops/eval-cache"))
        }
    }
}

impl Cache {
    /// Opens the cache of deployment `uuid` in `dir` for a run whose
    /// settings digest to `key`; `roots` are watched for unreported reads.
    /// Err: the cache cannot be used for this run (why, for a note).
    pub fn open(
        dir: &Path,
        uuid: &str,
        key: String,
        roots: &[PathBuf],
        skip: &[PathBuf],
    ) -> Result<Cache, String> {
        let path = dir.join(format!("{uuid}.json"));
        let file = load(&path);
        let mut hasher = Hasher::new(file.sigs.clone());
        let mut skip = skip.to_vec();
        skip.push(dir.to_owned());
        let reported = file.deps.iter().map(|(p, _)| p.clone()).collect();
        let net = unreported(&mut hasher, roots, &skip, &reported)?;
        Ok(Cache {
            path,
            key,
            roots: roots.to_vec(),
            skip,
            net,
            file,
            hasher,
            hits: BTreeSet::new(),
            new_meta: None,
            new_machines: BTreeMap::new(),
            names: None,
        })
    }

    fn check<T: Clone + Serialize>(&mut self, e: Option<&Entry<T>>) -> Result<T, Miss> {
        let r = e.and_then(|e| self.file.resolve(e)).ok_or(Miss::New)?;
        if r.key != self.key {
            return Err(Miss::Settings);
        }
        for (p, d) in &r.deps {
            if self.hasher.current(p) != *d {
                return Err(Miss::Changed(p.clone()));
            }
        }
        if r.net != self.net {
            return Err(Miss::Unreported);
        }
        Ok(r.value)
    }

    pub fn meta(&mut self) -> Result<MetaValue, Miss> {
        let e = self.file.meta.clone();
        let v = self.check(e.as_ref())?;
        self.hits.insert(String::new());
        Ok(v)
    }

    /// The machine's cached result, with its toplevel only while its
    /// derivation is in the store; with `toplevel`, a result without one is
    /// a miss.
    pub fn machine(&mut self, name: &str, toplevel: bool) -> Result<MachineInfo, Miss> {
        let e = self.file.machines.get(name).cloned();
        let mut info = self.check(e.as_ref())?;
        self.hits.insert(name.to_owned());
        let valid = match (&info.drv_path, &info.toplevel) {
            (Some(drv), Some(out)) => derivation_has_output(drv, out),
            _ => false,
        };
        if toplevel && !valid {
            return Err(Miss::NoToplevel);
        }
        if !valid {
            info.toplevel = None;
            info.drv_path = None;
        }
        Ok(info)
    }

    fn resolved<T>(&mut self, reads: &[Read], value: T) -> Resolved<T> {
        let mut paths: Vec<&Path> = reads.iter().map(Read::path).collect();
        paths.sort();
        paths.dedup();
        let deps = paths
            .into_iter()
            .map(|p| (p.to_owned(), self.hasher.current(p)))
            .collect();
        Resolved {
            key: self.key.clone(),
            net: self.net.clone(),
            deps,
            value,
        }
    }

    pub fn record_meta(&mut self, reads: &[Read], value: MetaValue) {
        self.names = Some(value.names.iter().cloned().collect());
        self.new_meta = Some(self.resolved(reads, value));
    }

    /// The network's machines are these (a cache hit on the meta).
    pub fn set_names(&mut self, names: &[String]) {
        self.names = Some(names.iter().cloned().collect());
    }

    pub fn record(&mut self, name: &str, reads: &[Read], info: MachineInfo) {
        let r = self.resolved(reads, info);
        self.new_machines.insert(name.to_owned(), r);
    }

    /// Writes what this run learned, merged with the file as it is now
    /// (another run may have written it since we read it).
    pub fn save(mut self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .expect("a cache file has a directory")
            .to_owned();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock_path = self.path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let now = load(&self.path);
        // What is kept: ours, and what the file has now for the others.
        let valid = |name: &str| self.hits.contains(name);
        let mut meta = match self.new_meta.take() {
            Some(m) => Some((m, true)),
            None => now
                .meta
                .as_ref()
                .and_then(|e| now.resolve(e))
                .map(|m| (m, valid(""))),
        };
        let mut machines = BTreeMap::new();
        for (name, e) in &now.machines {
            let keep = self.names.as_ref().is_none_or(|n| n.contains(name));
            if keep
                && !self.new_machines.contains_key(name)
                && let Some(r) = now.resolve(e)
            {
                machines.insert(name.clone(), (r, valid(name)));
            }
        }
        for (name, r) in std::mem::take(&mut self.new_machines) {
            machines.insert(name, (r, true));
        }
        // The entries valid now get the unreported files' digest that the
        // next run will compute, with the files they depend on now.
        let meta_deps = meta.iter().flat_map(|(r, _)| &r.deps);
        let reported: BTreeSet<PathBuf> = meta_deps
            .chain(machines.values().flat_map(|(r, _)| &r.deps))
            .map(|(p, _)| p.clone())
            .collect();
        match unreported(&mut self.hasher, &self.roots, &self.skip, &reported) {
            Ok(net) => {
                let nets = meta.iter_mut().map(|(r, v)| (&mut r.net, *v));
                for (n, now_valid) in nets.chain(machines.values_mut().map(|(r, v)| (&mut r.net, *v))) {
                    if now_valid {
                        *n = net.clone();
                    }
                }
            }
            Err(_) => machines.clear(),
        }
        let mut b = Builder::default();
        let meta = meta.map(|(m, _)| b.entry(m));
        let machines = machines.into_iter().map(|(n, (r, _))| (n, b.entry(r))).collect();
        // Signatures of files that still exist (ours are the newest).
        let mut sigs = now.sigs.clone();
        sigs.extend(std::mem::take(&mut self.hasher.sigs));
        sigs.retain(|p, _| p.exists());
        let file = CacheFile {
            version: VERSION,
            deps: b.deps,
            meta,
            machines,
            sigs,
        };
        let json = serde_json::to_vec(&file)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        tmp.write_all(&json)?;
        tmp.as_file().sync_data()?;
        tmp.persist(&self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        drop(lock);
        Ok(())
    }
}

/// The cache file as it is; empty when missing, unreadable, damaged or of
/// another version.
fn load(path: &Path) -> CacheFile {
    let Ok(mut f) = File::open(path) else {
        return CacheFile::default();
    };
    let mut bytes = Vec::new();
    if std::io::Read::read_to_end(&mut f, &mut bytes).is_err() {
        return CacheFile::default();
    }
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(c) if c.version == VERSION => c,
        Ok(_) => CacheFile::default(),
        Err(e) => {
            tracing::debug!("ignoring the damaged evaluation cache {}: {e}", path.display());
            CacheFile::default()
        }
    }
}

/// Whether `drv` is in the store and has `out` among its outputs (a .drv
/// names its outputs' paths as `"name","/nix/store/..."` pairs).
fn derivation_has_output(drv: &str, out: &str) -> bool {
    if !drv.starts_with("/nix/store/") || !drv.ends_with(".drv") || !out.starts_with("/nix/store/") {
        return false;
    }
    match std::fs::read(drv) {
        Ok(text) => {
            let needle = format!(",\"{out}\",");
            text.windows(needle.len()).any(|w| w == needle.as_bytes())
        }
        Err(_) => false,
    }
}

/// The digest of a run's settings: everything besides files that can change
/// what a machine evaluates to.
pub fn run_key(parts: &impl Serialize) -> String {
    let json = serde_json::to_string(parts).expect("key parts serialize");
    hex::encode(Sha256::digest(json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(top: Option<&str>) -> MachineInfo {
        let mut v: MachineInfo = serde_json::from_value(serde_json::json!({
            "targetEnv": "none", "targetHost": "h", "targetPort": null, "targetUser": "root",
            "sshOptions": [], "privilegeEscalationCommand": [], "alwaysActivate": true,
            "hasFastConnection": false, "owners": [], "keys": {},
        }))
        .unwrap();
        v.toplevel = top.map(str::to_owned);
        v
    }

    #[test]
    fn entries_hit_until_a_file_they_read_changes() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        std::fs::create_dir(&net).unwrap();
        let (a, b) = (net.join("a.nix"), net.join("b.nix"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let cache_dir = dir.path().join("cache");
        let roots = vec![net.clone()];
        let open = |key: &str| Cache::open(&cache_dir, "u", key.to_owned(), &roots, &[]).unwrap();

        let mut c = open("k");
        assert_eq!(c.machine("a", false).unwrap_err(), Miss::New);
        c.record("a", &[Read::Evaluated(a.clone())], info(None));
        c.record(
            "b",
            &[Read::Evaluated(b.clone()), Read::Evaluated(a.clone())],
            info(None),
        );
        c.save().unwrap();

        let mut c = open("k");
        assert!(c.machine("a", false).is_ok());
        assert!(c.machine("b", false).is_ok());
        // No toplevel was recorded.
        assert_eq!(c.machine("a", true).unwrap_err(), Miss::NoToplevel);
        assert_eq!(open("other").machine("a", false).unwrap_err(), Miss::Settings);

        std::fs::write(&b, "b2").unwrap();
        let mut c = open("k");
        assert!(c.machine("a", false).is_ok());
        assert_eq!(c.machine("b", false).unwrap_err(), Miss::Changed(b.clone()));

        // A file Nix does not report changes: everything is evaluated anew.
        std::fs::write(net.join("motd.txt"), "hi").unwrap();
        assert_eq!(open("k").machine("a", false).unwrap_err(), Miss::Unreported);
    }

    #[test]
    fn a_damaged_file_or_entry_is_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.nix");
        std::fs::write(&f, "a").unwrap();
        let cache_dir = dir.path().join("cache");
        let open = || Cache::open(&cache_dir, "u", "k".into(), &[], &[]).unwrap();
        let mut c = open();
        c.record("a", &[Read::Evaluated(f.clone())], info(None));
        c.save().unwrap();
        let path = cache_dir.join("u.json");
        let text = std::fs::read_to_string(&path).unwrap();
        // Another target host, checksum unchanged: the entry is ignored.
        std::fs::write(
            &path,
            text.replace("\"targetHost\":\"h\"", "\"targetHost\":\"x\""),
        )
        .unwrap();
        assert_eq!(open().machine("a", false).unwrap_err(), Miss::New);
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert_eq!(open().machine("a", false).unwrap_err(), Miss::New);
        // A toplevel whose derivation is not in the store is no hit.
        let mut c = open();
        let mut i = info(Some("/nix/store/00000000000000000000000000000000-x"));
        i.drv_path = Some("/nix/store/00000000000000000000000000000000-x.drv".into());
        c.record("a", &[], i);
        c.save().unwrap();
        assert_eq!(open().machine("a", true).unwrap_err(), Miss::NoToplevel);
        assert_eq!(open().machine("a", false).unwrap().toplevel, None);
    }

    #[test]
    fn databases_keep_their_cache_in_the_user_cache() {
        assert_eq!(
            dir_for_state(Some(Path::new("/x/deployments.nixops"))),
            Some(PathBuf::from("/x/eval-cache"))
        );
        assert_eq!(
            dir_for_state(Some(Path::new("deployments.nixops"))),
            Some(PathBuf::from("eval-cache"))
        );
        let url = dir_for_state(None).unwrap();
        assert!(url.ends_with("nixops/eval-cache"), "{}", url.display());
    }
}

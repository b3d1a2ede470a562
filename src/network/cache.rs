//! The evaluation cache: per deployment, one JSON file in the state
//! directory (`eval-cache/<uuid>.json`) holding each machine's deployment
//! info and toplevel with what they were evaluated from, so a machine whose
//! inputs have not changed is not evaluated at all.
//!
//! An entry is reused only when, at once:
//! - the run's key is the same: the tool and its Nix code, the Nix version,
//!   the network's source (files, or a flake's locked URL and output),
//!   arguments, search path, Nix options and configuration files;
//! - everything the machine's evaluation observed (trace.rs: every file it
//!   opened, stat'ed, listed or followed a link of, every environment
//!   variable it looked up) is as it was then;
//! - the entry's own checksum holds, and its derivation is still in the
//!   store and names the toplevel as an output.
//!
//! A machine whose evaluation observed what no digest can pin (a program
//! run, the network, Nix's fetcher cache, the clock) is not cached; the
//! file says why, for the next run's display.
//!
//! The file is replaced atomically (a new file renamed over it) under a
//! lock, merged with what others wrote meanwhile; a file that does not
//! parse is ignored (and replaced), never trusted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{self, Hasher, Sig};
use super::trace::{Observed, Read};
use super::{MachineInfo, NetworkMeta};

const VERSION: u32 = 5;

/// The network's own attributes and machine names, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetaValue {
    pub network: NetworkMeta,
    pub resources: super::Resources,
    pub names: Vec<String>,
}

/// One cached result and what it was evaluated from. `deps` index the
/// file's table of (read, digest) pairs; `inputs` is their digest for the
/// history (unchanged while the entry hits); `sum` covers the entry and the
/// table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry<T> {
    key: String,
    deps: Vec<usize>,
    inputs: String,
    value: T,
    sum: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Mixed into environment variables' digests.
    salt: String,
    /// (read, digest) pairs the entries depend on (Read::key's form).
    deps: Vec<(String, String)>,
    meta: Option<Entry<MetaValue>>,
    machines: BTreeMap<String, Entry<MachineInfo>>,
    /// Machines last evaluated from what no digest can pin: why.
    uncacheable: BTreeMap<String, String>,
    /// Stat signatures of files hashed before.
    sigs: BTreeMap<PathBuf, Sig>,
    /// Seconds each machine's last evaluation took in its Nix process: the
    /// evaluator shares a process among light machines only. Not part of
    /// any entry (it decides how to evaluate, never what a result is).
    #[serde(default)]
    costs: BTreeMap<String, f64>,
}

/// An entry with its dependencies resolved to (read, digest) pairs.
struct Resolved<T> {
    key: String,
    deps: Vec<(String, String)>,
    inputs: String,
    value: T,
}

/// The digest of everything an evaluation observed, as the history records
/// it ("~" first: the evaluation also observed what no digest can pin).
fn inputs_digest(deps: &[(String, String)], pinned: bool) -> String {
    let body = serde_json::to_string(deps).expect("pairs serialize");
    let d = hex::encode(Sha256::digest(body.as_bytes()));
    if pinned { d } else { format!("~{d}") }
}

/// The digest of a file's table of (read, digest) pairs, which every
/// entry's sum covers (so an entry is checked without resolving it).
fn table_digest(deps: &[(String, String)]) -> String {
    let body = serde_json::to_string(deps).expect("pairs serialize");
    hex::encode(Sha256::digest(body.as_bytes()))
}

fn checksum<T: Serialize>(key: &str, deps: &[usize], inputs: &str, value: &T, table: &str) -> String {
    let body = serde_json::to_string(&(key, deps, inputs, value, table)).expect("cache entries serialize");
    hex::encode(Sha256::digest(body.as_bytes()))
}

impl CacheFile {
    /// Whether an entry is whole: its indices in the table and its sum
    /// right (`table`: this file's table digest).
    fn intact<T: Serialize>(&self, e: &Entry<T>, table: &str) -> bool {
        e.deps.iter().all(|i| *i < self.deps.len())
            && checksum(&e.key, &e.deps, &e.inputs, &e.value, table) == e.sum
    }

    fn resolve<T: Clone + Serialize>(&self, e: &Entry<T>, table: &str) -> Option<Resolved<T>> {
        self.intact(e, table).then(|| Resolved {
            key: e.key.clone(),
            deps: e.deps.iter().map(|i| self.deps[*i].clone()).collect(),
            inputs: e.inputs.clone(),
            value: e.value.clone(),
        })
    }
}

/// Builds a file from resolved entries: one table of pairs for all, then
/// each entry's sum over it.
#[derive(Default)]
struct Builder {
    index: BTreeMap<(String, String), usize>,
    deps: Vec<(String, String)>,
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
            sum: String::new(),
            key: r.key,
            deps: ids,
            inputs: r.inputs,
            value: r.value,
        }
    }

    /// Signs the entries, now that the table is complete.
    fn seal<T: Serialize>(table: &str, e: &mut Entry<T>) {
        e.sum = checksum(&e.key, &e.deps, &e.inputs, &e.value, table);
    }
}

/// Why an entry was not used, for the progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// Never evaluated (or the entry is damaged).
    New,
    /// The tool, Nix, the source, arguments or settings changed.
    Settings,
    /// Something it read changed.
    Changed(Read),
    /// Its evaluation observed what no digest can pin.
    Uncacheable(String),
    /// Its toplevel was not evaluated then, or its derivation is gone.
    NoToplevel,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::New => write!(f, "not in the cache"),
            Miss::Settings => write!(f, "settings changed"),
            Miss::Changed(r) => write!(f, "{r} changed"),
            Miss::Uncacheable(why) => write!(f, "never cached: {why}"),
            Miss::NoToplevel => write!(f, "no toplevel cached"),
        }
    }
}

/// The cache of one deployment for one run.
pub struct Cache {
    path: PathBuf,
    key: String,
    file: CacheFile,
    /// The digest of the file's table, and whether each of its pairs still
    /// holds (checked once a run, however many entries share it).
    table: String,
    holds: Vec<Option<bool>>,
    hasher: Hasher,
    /// When the evaluation whose results are recorded began.
    began: i128,
    /// Files known to name `currentTime`, or not.
    clock: HashMap<PathBuf, bool>,
    /// What this run evaluated, to be saved.
    new_meta: Option<Result<Resolved<MetaValue>, String>>,
    new_machines: BTreeMap<String, Result<Resolved<MachineInfo>, String>>,
    /// The machines of the network now (others are dropped on save).
    names: Option<BTreeSet<String>>,
    new_costs: BTreeMap<String, f64>,
}

/// Where a deployment's cache lives: `eval-cache/` beside the state file,
/// or, for a state that is no file (a database), in `$XDG_CACHE_HOME/nixops`
/// (default `~/.cache/nixops`).
pub fn dir_for_state(state_file: Option<&Path>) -> Option<PathBuf> {
    match state_file.map(|f| f.parent()) {
        Some(Some(dir)) if !dir.as_os_str().is_empty() => Some(dir.join("eval-cache")),
        Some(_) => Some(PathBuf::from("eval-cache")),
        None => Some(user_cache_dir()?.join("nixops/eval-cache")),
    }
}

/// The user's cache directory: `$XDG_CACHE_HOME`, else `~/.cache` (where
/// Nix keeps its fetchers' caches too).
pub fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
}

impl Cache {
    /// Opens the cache of deployment `uuid` in `dir` for a run whose
    /// settings digest to `key`.
    pub fn open(dir: &Path, uuid: &str, key: String) -> Cache {
        let path = dir.join(format!("{uuid}.json"));
        let mut file = load(&path);
        if file.salt.is_empty() {
            file.salt = uuid::Uuid::new_v4().simple().to_string();
        }
        let hasher = Hasher::new(file.sigs.clone(), file.salt.clone());
        let table = table_digest(&file.deps);
        let holds = vec![None; file.deps.len()];
        Cache {
            path,
            key,
            file,
            table,
            holds,
            hasher,
            began: i128::MAX,
            clock: HashMap::new(),
            new_meta: None,
            new_machines: BTreeMap::new(),
            names: None,
            new_costs: BTreeMap::new(),
        }
    }

    /// An evaluation begins: what changes from now on may not be what it
    /// saw (its results are recorded with digests settled then).
    pub fn evaluation_starts(&mut self) {
        self.began = files::now_nanos();
    }

    /// A valid entry's value and inputs digest.
    fn check<T: Clone + Serialize>(&mut self, e: Option<&Entry<T>>) -> Result<(T, String), Miss> {
        let e = e.filter(|e| self.file.intact(e, &self.table)).ok_or(Miss::New)?;
        if e.key != self.key {
            return Err(Miss::Settings);
        }
        // Every input is digested, even past the first that changed: the
        // machine is evaluated next, and what it read last time is what it
        // most likely reads again, so its digests are then taken before
        // the evaluation begins (see Hasher::settled).
        let mut miss = None;
        for &i in &e.deps {
            let (k, d) = &self.file.deps[i];
            let read = Read::from_key(k).ok_or(Miss::New)?;
            let holds = match self.holds[i] {
                Some(h) => h,
                None => {
                    let h = self.hasher.current(&read) == *d;
                    self.holds[i] = Some(h);
                    h
                }
            };
            if !holds && miss.is_none() {
                miss = Some(Miss::Changed(read));
            }
        }
        match miss {
            Some(m) => Err(m),
            None => Ok((e.value.clone(), e.inputs.clone())),
        }
    }

    fn never(&self, name: &str) -> Option<Miss> {
        self.file
            .uncacheable
            .get(name)
            .map(|why| Miss::Uncacheable(why.clone()))
    }

    pub fn meta(&mut self) -> Result<MetaValue, Miss> {
        if let Some(m) = self.never("") {
            return Err(m);
        }
        let e = self.file.meta.clone();
        let (v, _) = self.check(e.as_ref())?;
        Ok(v)
    }

    /// The machine's cached result and its inputs digest, with its toplevel
    /// only while its derivation is in the store; with `toplevel`, a result
    /// without one is a miss.
    pub fn machine(&mut self, name: &str, toplevel: bool) -> Result<(MachineInfo, String), Miss> {
        if let Some(m) = self.never(name) {
            return Err(m);
        }
        let e = self.file.machines.get(name).cloned();
        let (mut info, inputs) = self.check(e.as_ref())?;
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
        Ok((info, inputs))
    }

    /// What an evaluation observed, as an entry, or Err(why) when it cannot
    /// be cached; and its inputs digest either way.
    fn resolved<T>(&mut self, seen: &Observed, value: T) -> (Result<Resolved<T>, String>, String) {
        let deps: Vec<(String, String)> = seen
            .reads
            .iter()
            .map(|r| (r.key(), self.hasher.settled(r, self.began)))
            .collect();
        let clock = || {
            seen.opened
                .iter()
                .find(|p| files::reads_the_clock(p, &mut self.clock))
                .map(|p| {
                    format!(
                        "{} names builtins.currentTime, which no digest can pin",
                        p.display()
                    )
                })
        };
        match seen.uncacheable.clone().or_else(clock) {
            Some(why) => (Err(why), inputs_digest(&deps, false)),
            None => {
                let inputs = inputs_digest(&deps, true);
                let r = Resolved {
                    key: self.key.clone(),
                    deps,
                    inputs: inputs.clone(),
                    value,
                };
                (Ok(r), inputs)
            }
        }
    }

    pub fn record_meta(&mut self, seen: &Observed, value: MetaValue) {
        self.names = Some(value.names.iter().cloned().collect());
        self.new_meta = Some(self.resolved(seen, value).0);
    }

    /// The network's machines are these (a cache hit on the meta).
    pub fn set_names(&mut self, names: &[String]) {
        self.names = Some(names.iter().cloned().collect());
    }

    /// Records a machine's result; its inputs digest, and why it cannot
    /// be cached if so.
    pub fn record(&mut self, name: &str, seen: &Observed, info: MachineInfo) -> (String, Option<String>) {
        let (r, inputs) = self.resolved(seen, info);
        let why = r.as_ref().err().cloned();
        self.new_machines.insert(name.to_owned(), r);
        (inputs, why)
    }

    /// How long the machine's last evaluation took in its process, if known.
    pub fn cost(&self, name: &str) -> Option<f64> {
        self.file.costs.get(name).copied().filter(|c| c.is_finite())
    }

    /// The machine's evaluation took `secs` in its process.
    pub fn took(&mut self, name: &str, secs: f64) {
        self.new_costs.insert(name.to_owned(), secs);
    }

    /// Writes what this run learned, merged with the file as it is now
    /// (another run may have written it since we read it).
    pub fn save(mut self) -> Result<()> {
        // A run that only hit (the everyday no-op) has nothing to say.
        let gone = |n: &BTreeSet<String>| {
            self.file.machines.keys().any(|m| !n.contains(m))
                || self
                    .file
                    .uncacheable
                    .keys()
                    .any(|m| !m.is_empty() && !n.contains(m))
        };
        if self.new_meta.is_none()
            && self.new_machines.is_empty()
            && self.new_costs.is_empty()
            && !self.names.as_ref().is_some_and(gone)
            && self.hasher.sigs == self.file.sigs
        {
            return Ok(());
        }
        let dir = self
            .path
            .parent()
            .expect("a cache file has a directory")
            .to_owned();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Entries name files and hold deployment options: the owner's only.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
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
        // Another run's salt wins: its entries' digests were made with it.
        if !now.salt.is_empty() && now.salt != self.file.salt {
            self.new_meta = None;
            self.new_machines.clear();
        }
        let salt = if now.salt.is_empty() {
            self.file.salt.clone()
        } else {
            now.salt.clone()
        };
        let mut uncacheable = now.uncacheable.clone();
        let now_table = table_digest(&now.deps);
        let mut meta = now.meta.as_ref().and_then(|e| now.resolve(e, &now_table));
        match self.new_meta.take() {
            Some(Ok(m)) => {
                uncacheable.remove("");
                meta = Some(m);
            }
            Some(Err(why)) => {
                uncacheable.insert(String::new(), why);
                meta = None;
            }
            None => {}
        }
        let mut machines = BTreeMap::new();
        for (name, e) in &now.machines {
            if let Some(r) = now.resolve(e, &now_table) {
                machines.insert(name.clone(), r);
            }
        }
        for (name, r) in std::mem::take(&mut self.new_machines) {
            match r {
                Ok(r) => {
                    uncacheable.remove(&name);
                    machines.insert(name, r);
                }
                Err(why) => {
                    machines.remove(&name);
                    uncacheable.insert(name, why);
                }
            }
        }
        let mut costs = now.costs.clone();
        costs.append(&mut self.new_costs);
        if let Some(names) = &self.names {
            machines.retain(|n, _| names.contains(n));
            uncacheable.retain(|n, _| n.is_empty() || names.contains(n));
            costs.retain(|n, _| names.contains(n));
        }
        let mut b = Builder::default();
        let mut meta = meta.map(|m| b.entry(m));
        let mut machines: BTreeMap<String, Entry<MachineInfo>> =
            machines.into_iter().map(|(n, r)| (n, b.entry(r))).collect();
        let table = table_digest(&b.deps);
        meta.iter_mut().for_each(|e| Builder::seal(&table, e));
        machines.values_mut().for_each(|e| Builder::seal(&table, e));
        // Signatures of files that still exist (ours are the newest).
        let mut sigs = now.sigs.clone();
        sigs.extend(std::mem::take(&mut self.hasher.sigs));
        sigs.retain(|p, _| p.exists());
        let file = CacheFile {
            version: VERSION,
            salt,
            deps: b.deps,
            meta,
            machines,
            uncacheable,
            sigs,
            costs,
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

    fn seen(reads: &[Read]) -> Observed {
        Observed {
            reads: reads.iter().cloned().collect(),
            opened: reads
                .iter()
                .filter_map(|r| match r {
                    Read::Follow(p) => Some(p.clone()),
                    _ => None,
                })
                .collect(),
            uncacheable: None,
        }
    }

    #[test]
    fn entries_hit_until_something_they_read_changes() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        std::fs::create_dir(&net).unwrap();
        let (a, b) = (net.join("a.nix"), net.join("b.nix"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let cache_dir = dir.path().join("cache");
        let open = |key: &str| Cache::open(&cache_dir, "u", key.to_owned());

        let mut c = open("k");
        assert_eq!(c.machine("a", false).unwrap_err(), Miss::New);
        let (inputs_a, why) = c.record("a", &seen(&[Read::Follow(a.clone())]), info(None));
        assert_eq!(why, None);
        let env = Read::Env("NIXOPS_CACHE_TEST_VAR".into());
        c.record(
            "b",
            &seen(&[Read::Follow(b.clone()), Read::Follow(a.clone()), env.clone()]),
            info(None),
        );
        let mut git = seen(&[Read::Follow(a.clone())]);
        git.uncacheable = Some("it runs /usr/bin/git".into());
        let (inputs_c, why) = c.record("c", &git, info(None));
        assert!(why.is_some());
        // The same reads, but something unpinned besides.
        assert_eq!(inputs_c, format!("~{inputs_a}"));
        c.save().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache_dir), 0o700);
        assert_eq!(mode(&cache_dir.join("u.json")), 0o600);

        let mut c = open("k");
        assert_eq!(c.machine("a", false).unwrap().1, inputs_a);
        assert!(c.machine("b", false).is_ok());
        assert!(matches!(c.machine("c", false), Err(Miss::Uncacheable(w)) if w.contains("git")));
        // No toplevel was recorded.
        assert_eq!(c.machine("a", true).unwrap_err(), Miss::NoToplevel);
        assert_eq!(open("other").machine("a", false).unwrap_err(), Miss::Settings);

        std::fs::write(&b, "b2").unwrap();
        let mut c = open("k");
        assert!(c.machine("a", false).is_ok());
        assert_eq!(
            c.machine("b", false).unwrap_err(),
            Miss::Changed(Read::Follow(b.clone()))
        );
        std::fs::write(&b, "b").unwrap();
        unsafe { std::env::set_var("NIXOPS_CACHE_TEST_VAR", "1") };
        assert_eq!(open("k").machine("b", false).unwrap_err(), Miss::Changed(env));
        unsafe { std::env::remove_var("NIXOPS_CACHE_TEST_VAR") };

        // A file that names the clock is never cached.
        let t = net.join("t.nix");
        std::fs::write(&t, "builtins.currentTime").unwrap();
        let mut c = open("k");
        let err = c.record("t", &seen(&[Read::Follow(t)]), info(None)).1.unwrap();
        assert!(err.contains("currentTime"), "{err}");
    }

    #[test]
    fn a_damaged_file_or_entry_is_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.nix");
        std::fs::write(&f, "a").unwrap();
        let cache_dir = dir.path().join("cache");
        let open = || Cache::open(&cache_dir, "u", "k".into());
        let mut c = open();
        c.record("a", &seen(&[Read::Follow(f.clone())]), info(None));
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
        c.record("a", &seen(&[]), i);
        c.save().unwrap();
        assert_eq!(open().machine("a", true).unwrap_err(), Miss::NoToplevel);
        assert_eq!(open().machine("a", false).unwrap().0.toplevel, None);
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

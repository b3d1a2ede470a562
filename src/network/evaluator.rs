//! The one way networks are evaluated: first the network's own attributes
//! and its machines' names (no machine is evaluated for them), then the
//! machines, each with its deployment info and, when selected, its
//! toplevel's derivation, taken from the evaluation cache when nothing it
//! was evaluated from changed, else evaluated by the worker pool, results
//! sent on as they come.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::cache::{self, Cache, MetaValue, Miss};
use super::pool::{self, Report};
use super::trace::Observed;
use super::{
    COLMENA_COMPAT, Call, EVAL_MACHINE_INFO, HIVE, KEYS, MachineInfo, Network, NetworkInfo, NetworkMeta,
    NixFiles, OPTIONS, RESOURCES, Resolved, Resources, Selector, check_machine_name, check_meta, files,
};
use crate::nix::NixOpts;
use crate::process::{self, Sink};
use crate::ui::Events;

/// What to evaluate of the machines: every machine's deployment info and,
/// with `toplevels`, the toplevels of those selected (`include`, None: all,
/// less `exclude`).
pub struct Request<'a> {
    pub include: Option<&'a [Selector]>,
    pub exclude: &'a [Selector],
    pub toplevels: bool,
    /// Which machines to evaluate when the cache does not have them (None:
    /// all); the others have a result only from the cache.
    pub evaluate: Option<&'a [String]>,
}

impl Request<'_> {
    /// The same choice eval-machine-info.nix's `isSelected` makes.
    fn selects(&self, name: &str, tags: &[String]) -> bool {
        self.include
            .is_none_or(|i| i.iter().any(|s| s.matches(name, tags)))
            && !self.exclude.iter().any(|s| s.matches(name, tags))
    }
}

/// NixOps 2.0's `network.storage.legacy.databasefile` names the state file.
/// The state is chosen before the network is evaluated, so the file it
/// names must be the one in use — unless -s or $NIXOPS_STATE named the
/// state, which wins, as $NIXOPS_STATE does in NixOps 2.0. A deploy
/// recorded in another file than the network says would be lost to it.
fn check_database_file(named: &str, in_use: &crate::state::InUse) -> Result<()> {
    let wanted = match named.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(rest),
        None => PathBuf::from(named),
    };
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    match in_use {
        crate::state::InUse::File { path, named: false } if !same(&wanted, path) => bail!(
            "the network keeps its state in {} (network.storage.legacy.databasefile), but this command uses {}: name the network's with -s {} (or $NIXOPS_STATE)",
            wanted.display(),
            path.display(),
            wanted.display()
        ),
        crate::state::InUse::Database => {
            errln!(
                "note: the network names the state file {} (network.storage.legacy.databasefile); this command keeps state in PostgreSQL, as -s says",
                wanted.display()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What to say of a machine that does not evaluate and is not selected:
/// a warning, with the first line of its error.
pub fn unselected_failure(name: &str, error: &str) -> String {
    let first = error.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    format!(
        "warning: machine ‘{name}’, not selected, does not evaluate ({}); it is left alone",
        first.trim()
    )
}

/// One machine's result. Its `drv_path` is set exactly when its toplevel
/// was asked for and it is selected (or, for a request without toplevels,
/// when the cache knew it).
#[derive(Debug)]
pub struct Evaluated {
    pub name: String,
    /// Nix's error when it failed.
    pub result: Result<MachineInfo, String>,
    /// The digest of everything its evaluation observed (cache.rs), when
    /// the cache is on.
    pub inputs: Option<String>,
}

/// A network ready to have its machines evaluated.
pub struct Evaluator<'a> {
    network: &'a Network,
    files: &'a NixFiles,
    opts: &'a NixOpts,
    events: Option<&'a Events>,
    resolved: Resolved,
    pub meta: NetworkMeta,
    /// The network's non-machine resources.
    pub resources: Resources,
    /// Every machine of the network, in name order.
    pub names: Vec<String>,
    cache: Mutex<Option<Cache>>,
}

/// Everything besides files that can change what a machine evaluates to.
#[derive(Serialize)]
struct KeyParts<'a> {
    tool: &'static str,
    nix_code: String,
    nix: String,
    source: String,
    args: String,
    uuid: &'a str,
    name: &'a str,
    physical: String,
    system: String,
    search_path: &'a [String],
    options: &'a [(String, String)],
    override_inputs: &'a [(String, String)],
    impure: bool,
    env: Vec<(&'static str, Option<String>)>,
    config_files: Vec<(PathBuf, String)>,
}

/// Environment variables that Nix or nixpkgs read during evaluation.
const ENV: [&str; 13] = [
    "NIX_PATH",
    "NIX_CONFIG",
    "NIX_CONF_DIR",
    "NIX_USER_CONF_FILES",
    "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS",
    "HOME",
    "NIXOS_EXTRA_MODULE_PATH",
    "NIXPKGS_CONFIG",
    "NIXPKGS_ALLOW_UNFREE",
    "NIXPKGS_ALLOW_INSECURE",
    "NIXPKGS_ALLOW_BROKEN",
    "NIXPKGS_ALLOW_UNSUPPORTED_SYSTEM",
];

/// Nix's configuration files (which may set `system`, `pure-eval`,
/// `allowed-uris`, ...).
fn config_files() -> Vec<PathBuf> {
    let var = |v: &str| std::env::var_os(v).filter(|x| !x.is_empty()).map(PathBuf::from);
    let mut files = vec![
        var("NIX_CONF_DIR")
            .unwrap_or_else(|| PathBuf::from("/etc/nix"))
            .join("nix.conf"),
    ];
    match std::env::var("NIX_USER_CONF_FILES")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(list) => files.extend(list.split(':').map(PathBuf::from)),
        None => {
            let home = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")));
            files.extend(home.map(|h| h.join("nix/nix.conf")));
            if let Ok(dirs) = std::env::var("XDG_CONFIG_DIRS") {
                files.extend(
                    dirs.split(':')
                        .filter(|d| !d.is_empty())
                        .map(|d| PathBuf::from(d).join("nix/nix.conf")),
                );
            }
        }
    }
    files
}

/// A search path entry whose content Nix may fetch anew at any time.
fn is_url_entry(entry: &str) -> bool {
    let value = entry.split_once('=').map_or(entry, |(_, v)| v);
    value.contains("://") || value.starts_with("channel:") || value.starts_with("flake:")
}

/// Nix's version; with `files`, also whether the evaluation trace loads
/// into Nix (it does not into a statically linked one).
async fn nix_version(files: Option<&NixFiles>) -> Result<(String, bool)> {
    let mut cmd = process::command("nix-instantiate");
    cmd.arg("--version");
    let trace = files.and_then(|f| Some((f, f.trace_file()?)));
    if let Some((f, file)) = &trace {
        f.enable_trace(&mut cmd, file);
    }
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("nix-instantiate --version failed: {}", out.last_error());
    }
    let traced = trace.is_some_and(|(f, file)| f.observed(&file).uncacheable.is_none());
    Ok((out.stdout.trim().to_owned(), traced))
}

impl<'a> Evaluator<'a> {
    /// Evaluates (or takes from the cache) the network's attributes and
    /// machine names, and refuses a network the tool cannot use. Notes go
    /// to `events` when given.
    pub async fn new(
        network: &'a Network,
        files: &'a NixFiles,
        opts: &'a NixOpts,
        events: Option<&'a Events>,
    ) -> Result<Evaluator<'a>> {
        let resolved = network.resolve(opts).await?;
        let mut ev = Evaluator {
            network,
            files,
            opts,
            events,
            resolved,
            meta: NetworkMeta {
                description: String::new(),
                enable_rollback: false,
                unknown_attrs: Vec::new(),
                known_attrs: Vec::new(),
                unsupported: Vec::new(),
                allow_apply_all: true,
                machines_file: None,
                database_file: None,
                flake_url: None,
                inventory: None,
            },
            resources: Resources::new(),
            names: Vec::new(),
            cache: Mutex::new(None),
        };
        let mut cache = match ev.open_cache().await {
            Ok(c) => c,
            Err(why) => {
                ev.note(format!("evaluation cache not used: {why}"));
                None
            }
        };
        let cached = cache.as_mut().map(Cache::meta);
        let value = match cached {
            Some(Ok(v)) => {
                if let Some(c) = cache.as_mut() {
                    c.set_names(&v.names);
                }
                v
            }
            _ => {
                let (value, seen) = ev.evaluate_meta(cache.as_mut()).await?;
                if let Some(c) = cache.as_mut() {
                    c.record_meta(&seen, value.clone());
                }
                value
            }
        };
        ev.meta = value.network;
        ev.meta.flake_url = ev.resolved.locked_url();
        ev.resources = value.resources;
        ev.names = value.names;
        check_meta(&ev.meta)?;
        if let Some(f) = &ev.meta.database_file {
            check_database_file(f, &opts.eval.state)?;
        }
        // Once per process: a command may read the network's attributes
        // more than once (resources made, the inventory for the keys).
        static SHOWN: Mutex<std::collections::BTreeSet<String>> =
            Mutex::new(std::collections::BTreeSet::new());
        for w in super::meta_warnings(&ev.meta) {
            if SHOWN.lock().expect("warnings lock").insert(w.clone()) {
                errln!("{w}");
            }
        }
        for name in &ev.names {
            check_machine_name(name)?;
        }
        ev.prepare_inventory().await?;
        *ev.cache.lock().expect("cache lock") = cache;
        Ok(ev)
    }

    /// Runs the network's inventory command (or reads its file) for this
    /// run's evaluations of machines, once per run.
    async fn prepare_inventory(&self) -> Result<()> {
        let Some(spec) = &self.meta.inventory else {
            self.files.set_inventory(None);
            return Ok(());
        };
        if self.files.inventory().is_some() {
            return Ok(());
        }
        if let Resolved::Flake { flake, .. } = &self.resolved
            && !self.opts.impure
        {
            bail!(
                "the flake network {flake} has an inventory: give --impure (its outputs reach the evaluation in a private file, which pure evaluation cannot read; never in an argument)"
            );
        }
        let Some(dir) = self.network.source.local_dir() else {
            bail!(
                "the network {} has an inventory, which needs the network in a local directory to run in",
                self.network.source.describe()
            );
        };
        let file = super::inventory::prepare(spec, &dir, &self.network.uuid).await?;
        self.files.set_inventory(Some(file));
        Ok(())
    }

    fn note(&self, text: String) {
        match self.events {
            Some(e) => e.message(text),
            None => tracing::debug!("{text}"),
        }
    }

    /// The cache of this deployment for this run: None when turned off;
    /// Err(why) when it cannot be used for this network.
    async fn open_cache(&self) -> Result<Option<Cache>, String> {
        let Some(dir) = &self.opts.eval.cache_dir else {
            return Ok(None);
        };
        let nix_path = std::env::var("NIX_PATH").unwrap_or_default();
        let search = nix_path.split(':').map(str::to_owned);
        if let Some(url) = self
            .opts
            .include
            .iter()
            .cloned()
            .chain(search)
            .find(|e| is_url_entry(e))
        {
            return Err(format!(
                "the Nix search path entry ‘{url}’ is a URL, whose content Nix may fetch anew at any time"
            ));
        }
        let (key, traced) = self.key().await.map_err(|e| format!("{e:#}"))?;
        if self.traced() && !traced {
            return Err(
                "what Nix reads while it evaluates cannot be observed here (the evaluation trace does not load into nix-instantiate: a statically linked Nix, or not Linux)"
                    .into(),
            );
        }
        Ok(Some(Cache::open(dir, &self.network.uuid, key)))
    }

    /// Whether evaluations are traced for the cache: all but pure flakes,
    /// whose locked URL (in the key) covers all they can read.
    fn traced(&self) -> bool {
        matches!(self.resolved, Resolved::Files(_)) || self.opts.impure || self.network.reads_physical_file()
    }

    /// A trace file for an evaluation, when the cache is on and wants one.
    fn trace_file(&self, cache: bool) -> Option<std::path::PathBuf> {
        (cache && self.traced())
            .then(|| self.files.trace_file())
            .flatten()
    }

    /// What an evaluation that wrote `trace` observed (nothing to observe
    /// for a pure flake).
    fn observed(&self, trace: Option<&std::path::Path>) -> Observed {
        trace.map(|t| self.files.observed(t)).unwrap_or_default()
    }

    /// The run's key, and whether the evaluation trace works.
    async fn key(&self) -> Result<(String, bool)> {
        let mut config = Vec::new();
        let mut hasher = files::Hasher::default();
        for f in config_files() {
            let d = hasher.current(&super::trace::Read::Follow(f.clone()));
            config.push((f, d));
        }
        let (nix, traced) = nix_version(self.traced().then_some(self.files)).await?;
        let parts = KeyParts {
            tool: env!("CARGO_PKG_VERSION"),
            nix_code: cache::run_key(&(
                EVAL_MACHINE_INFO,
                OPTIONS,
                KEYS,
                HIVE,
                COLMENA_COMPAT,
                RESOURCES,
                crate::backend::nix_expression(),
            )),
            nix,
            source: match &self.resolved {
                Resolved::Files(paths) => serde_json::to_string(paths)?,
                Resolved::Flake { attr, locked, .. } => format!("{locked}#{attr}"),
            },
            args: self.network.args_expr(),
            uuid: &self.network.uuid,
            name: &self.network.name,
            physical: self.network.physical_json(),
            system: super::flake::system(),
            search_path: &self.opts.include,
            options: &self.opts.options,
            override_inputs: &self.opts.override_inputs,
            impure: self.opts.impure,
            env: ENV.iter().map(|v| (*v, std::env::var(v).ok())).collect(),
            config_files: config,
        };
        Ok((cache::run_key(&parts), traced))
    }

    async fn evaluate_meta(&self, cache: Option<&mut Cache>) -> Result<(MetaValue, Observed)> {
        let mut call = Call::new("meta");
        call.trace = self.trace_file(cache.is_some());
        let trace = call.trace.clone();
        if let Some(c) = cache {
            c.evaluation_starts();
        }
        let out = self
            .network
            .run_resolved(&self.resolved, self.files, self.opts, call)
            .await;
        let seen = self.observed(trace.as_deref());
        let out = out?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            network: NetworkMeta,
            resources: Resources,
            machine_names: Vec<String>,
        }
        let m: Meta =
            serde_json::from_str(&out.stdout).context("cannot parse the network's evaluation result")?;
        Ok((
            MetaValue {
                network: m.network,
                resources: m.resources,
                names: m.machine_names,
            },
            seen,
        ))
    }

    /// Evaluates the machines as `req` asks, sending each result to `tx` as
    /// it is known (cache hits first) and the progress to `events`; then
    /// saves what was learned in the cache.
    pub async fn machines(&self, req: &Request<'_>, tx: &UnboundedSender<Evaluated>) {
        let total = self.names.len();
        let mut done = 0;
        let progress = |done: usize, name: &str, cached: bool, why: Option<String>| {
            if let Some(e) = self.events {
                e.evaluated(name, done, total, cached, why);
            }
        };
        let mut todo: Vec<(String, Option<Miss>)> = Vec::new();
        let mut hits = Vec::new();
        let mut cache = self.cache.lock().expect("cache lock").take();
        for name in &self.names {
            let hit = match cache.as_mut() {
                Some(c) => self.lookup(c, name, req).map_err(Some),
                None => Err(None),
            };
            match hit {
                Ok((info, inputs)) => hits.push(Evaluated {
                    name: name.clone(),
                    result: Ok(info),
                    inputs: Some(inputs),
                }),
                Err(_) if req.evaluate.is_some_and(|only| !only.contains(name)) => {}
                Err(miss) => todo.push((name.clone(), miss)),
            }
        }
        // All hits at once, so the next stage takes them as one batch (one
        // build, not one per machine as they were checked).
        for hit in hits {
            done += 1;
            progress(done, &hit.name, true, None);
            let _ = tx.send(hit);
        }
        if done > 0 {
            self.note(format!(
                "{done} of {total} machines taken from the evaluation cache, not evaluated again: nothing they read has changed since their last evaluation"
            ));
        }
        let why: std::collections::BTreeMap<String, String> = todo
            .iter()
            .filter_map(|(n, m)| Some((n.clone(), m.as_ref()?.to_string())))
            .collect();
        let known_uncacheable: std::collections::BTreeSet<String> = todo
            .iter()
            .filter(|(_, m)| matches!(m, Some(Miss::Uncacheable(_))))
            .map(|(n, _)| n.clone())
            .collect();
        let names: Vec<String> = todo.into_iter().map(|(n, _)| n).collect();
        if !names.is_empty() {
            let record = cache.is_some();
            let chunks = self.chunks(names, cache.as_ref());
            let settings = pool::Settings {
                jobs: self.opts.eval.jobs(),
                max_rss: self.opts.eval.max_memory_mb.map(|m| m * 1024 * 1024),
            };
            let selectors = (
                serde_json::to_string(&req.include).expect("selectors serialize"),
                serde_json::to_string(req.exclude).expect("selectors serialize"),
            );
            // Each machine's process's trace.
            let traces: Mutex<Traces> = Mutex::default();
            if let Some(c) = cache.as_mut() {
                c.evaluation_starts();
            }
            let command = |chunk: &[String]| {
                let mut call = Call::new("machines")
                    .str(
                        "machinesJSON",
                        serde_json::to_string(chunk).expect("names serialize"),
                    )
                    .str("includeJSON", selectors.0.clone())
                    .str("excludeJSON", selectors.1.clone())
                    .str("toplevelsJSON", req.toplevels.to_string());
                call.instantiate = req.toplevels;
                call.trace = self.trace_file(record);
                if let Some(t) = &call.trace {
                    traces.lock().expect("traces lock").start(chunk, t);
                }
                if chunk.len() > 1 {
                    tracing::debug!("evaluating in one Nix process: {}", chunk.join(", "));
                }
                self.network.command(&self.resolved, self.files, self.opts, &call)
            };
            let (rtx, mut rx) = unbounded_channel();
            let pooling = async move {
                pool::run(chunks, &settings, &command, &rtx).await;
            };
            let taking = async {
                while let Some(r) = rx.recv().await {
                    match r {
                        Report::Log(m, line) => match (self.events, m) {
                            (Some(e), m) => e.log(m.as_deref(), line),
                            (None, Some(m)) => tracing::debug!("{m}> {line}"),
                            (None, None) => tracing::debug!("{line}"),
                        },
                        Report::Done { name, result, secs } => {
                            // All its process observed until the next
                            // machine began: its own reads, and those of
                            // the machines before it in its process (which
                            // it may have needed too).
                            let seen = traces
                                .lock()
                                .expect("traces lock")
                                .done(&name, |t, next| self.files.observed_until(t, next))
                                .unwrap_or_default();
                            let mut inputs = None;
                            if let (Some(c), Ok(info)) = (cache.as_mut(), &result) {
                                c.took(&name, secs);
                                let (digest, uncacheable) = c.record(&name, &seen, (**info).clone());
                                inputs = Some(digest);
                                if let (Some(why), Some(e)) = (uncacheable, self.events)
                                    && !known_uncacheable.contains(&name)
                                {
                                    e.log(Some(&name), format!("its result is not cached: {why}"));
                                }
                            }
                            done += 1;
                            progress(done, &name, false, why.get(&name).cloned());
                            let _ = tx.send(Evaluated {
                                name,
                                result: result.map(|i| *i),
                                inputs,
                            });
                        }
                    }
                }
            };
            tokio::join!(pooling, taking);
        }
        if let Some(c) = cache
            && let Err(e) = c.save()
        {
            self.note(format!("warning: cannot save the evaluation cache: {e:#}"));
        }
    }

    /// The machines to evaluate, grouped by Nix process. A process costs
    /// Nix's start-up, which is most of a light machine's evaluation; but
    /// the trace of a process that evaluated several machines cannot tell
    /// which of them read a file (Nix reads a file once per process), so
    /// each is recorded with all its process observed until the next
    /// machine began: a sound superset, with which a change to a file only
    /// one machine read also misses the machines after it in its chunk.
    /// With the cache on, only machines whose last evaluation was light
    /// ([`LIGHT`]) share a process, so that such a miss costs little, and a
    /// machine evaluated alone (heavy ones, or few misses) is recorded
    /// exactly. Machines never evaluated share processes only when there
    /// are more than [`MANY_NEW`] of them (a fleet's first deploy, where a
    /// process each costs seconds); a heavy one still ends its process
    /// (pool.rs), so the records after it start afresh.
    fn chunks(&self, names: Vec<String>, cache: Option<&Cache>) -> Vec<Vec<String>> {
        let jobs = self.opts.eval.jobs();
        let size = |n: usize| n.div_ceil(jobs * 2).clamp(1, 8);
        let (light, alone): (Vec<String>, Vec<String>) = match cache {
            Some(c) if self.traced() => {
                let new = names.iter().filter(|n| c.cost(n).is_none()).count();
                names.into_iter().partition(|n| match c.cost(n) {
                    Some(s) => s < LIGHT,
                    None => new > MANY_NEW,
                })
            }
            _ => (names, Vec::new()),
        };
        let mut chunks: Vec<Vec<String>> = alone.into_iter().map(|n| vec![n]).collect();
        chunks.extend(light.chunks(size(light.len())).map(<[String]>::to_vec));
        chunks
    }

    /// A cache hit that serves `req`: with toplevels asked for, a selected
    /// machine's must be cached; an unselected machine's is left out.
    fn lookup(&self, c: &mut Cache, name: &str, req: &Request<'_>) -> Result<(MachineInfo, String), Miss> {
        let (mut info, inputs) = c.machine(name, false)?;
        if req.toplevels {
            if req.selects(name, &info.tags) {
                if info.drv_path.is_none() {
                    return Err(Miss::NoToplevel);
                }
            } else {
                info.toplevel = None;
                info.drv_path = None;
            }
        }
        Ok((info, inputs))
    }

    /// Every machine's result, with the toplevels of those `filter`
    /// selects when `toplevels`; a selector that matches no machine is an
    /// error.
    pub async fn selected(&self, filter: &super::MachineFilter, toplevels: bool) -> Result<NetworkInfo> {
        let req = Request {
            include: filter.include_opt(),
            exclude: &filter.exclude,
            toplevels,
            evaluate: None,
        };
        let info = self.all(&req).await?;
        filter.check_used(info.machines.iter().map(|(n, m)| (n.as_str(), m.tags.as_slice())))?;
        Ok(info)
    }

    /// Every machine's result (those `req` has evaluated or the cache
    /// had); the first failure (in name order) is the error.
    pub async fn all(&self, req: &Request<'_>) -> Result<NetworkInfo> {
        let (tx, mut rx) = unbounded_channel();
        self.machines(req, &tx).await;
        drop(tx);
        let mut machines = std::collections::BTreeMap::new();
        let mut failed = std::collections::BTreeMap::new();
        while let Some(e) = rx.recv().await {
            match e.result {
                Ok(info) => {
                    machines.insert(e.name, info);
                }
                Err(err) => {
                    failed.insert(e.name, err);
                }
            }
        }
        // A machine the request does not select fails only itself.
        let include = req.include.unwrap_or(&[]);
        for (name, err) in failed {
            if super::selector::may_select(include, req.exclude, &name) {
                return Err(anyhow!("evaluation of machine ‘{name}’ failed:\n{err}"));
            }
            errln!("{}", unselected_failure(&name, &err));
        }
        let network = self.meta.clone();
        check_meta(&network)?;
        Ok(NetworkInfo {
            network,
            resources: self.resources.clone(),
            machines,
        })
    }
}

/// A machine whose last evaluation took less than this (seconds, in its
/// Nix process) may share a process with others (`Evaluator::chunks`); a
/// real NixOS machine takes seconds, the tests' stand-in hundredths.
const LIGHT: f64 = 0.5;

/// More machines than this that were never evaluated share processes
/// (`Evaluator::chunks`).
const MANY_NEW: usize = 16;

/// Which trace file records each machine being evaluated (and the machine
/// after it in that process), and how many machines' results each file
/// still owes.
#[derive(Default)]
struct Traces {
    of: std::collections::HashMap<String, (std::path::PathBuf, Option<String>)>,
    owed: std::collections::HashMap<std::path::PathBuf, usize>,
}

impl Traces {
    /// A process starts on `chunk`, tracing into `file` (a restarted
    /// process takes over the machines it was given).
    fn start(&mut self, chunk: &[String], file: &std::path::Path) {
        self.owed.insert(file.to_owned(), chunk.len());
        for (i, name) in chunk.iter().enumerate() {
            let next = chunk.get(i + 1).cloned();
            if let Some((old, _)) = self.of.insert(name.clone(), (file.to_owned(), next)) {
                self.release(&old);
            }
        }
    }

    /// What `name`'s process observed until the next machine began there
    /// (`read` parses a file up to a machine's beginning).
    fn done(
        &mut self,
        name: &str,
        read: impl Fn(&std::path::Path, Option<&str>) -> Observed,
    ) -> Option<Observed> {
        let (file, next) = self.of.remove(name)?;
        let seen = read(&file, next.as_deref());
        self.release(&file);
        Some(seen)
    }

    /// One machine less waits for `file`; a file no machine waits for any
    /// more (its machines done, or taken over by a restarted process) is
    /// removed.
    fn release(&mut self, file: &std::path::Path) {
        if let Some(n) = self.owed.get_mut(file) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owed.remove(file);
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

//! Evaluating networks: NixOps network files, NixOps 2.0 flakes and Colmena
//! hives, all through one entry point (`Network`'s methods) with one result
//! (`NetworkInfo`). The Nix side lives in `eval-machine-info.nix` (with the
//! front ends), `hive.nix`, `options.nix`, `keys.nix`, `colmena-compat.nix`
//! and `resources.nix` beside this file; all are embedded in the binary.
//! Network files are evaluated with nix-instantiate on those files written to
//! a private directory; flakes purely with `nix eval --apply`, the tool's Nix
//! code inline (pure evaluation reads no file outside the flake), impurely
//! only to read resources' values from state (`Network::physical_arg`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

mod cache;
mod evaluator;
mod files;
pub mod flake;
mod info;
mod inventory;
mod pool;
mod selector;
mod trace;

pub use cache::dir_for_state as cache_dir_for_state;
pub use evaluator::{Evaluator, Request, unselected_failure};
pub use flake::Source;
pub use info::{
    CmdCheck, CreatedType, HealthChecks, HttpCheck, KeyInfo, MachineInfo, NetworkInfo, NetworkMeta,
    ResourceSpec, Resources, created_type, created_type_of_kind,
};
pub use selector::{MachineFilter, Selector};

use crate::nix::NixOpts;
use crate::process::{self, Sink};

const EVAL_MACHINE_INFO: &str = include_str!("eval-machine-info.nix");
const OPTIONS: &str = include_str!("options.nix");
const KEYS: &str = include_str!("keys.nix");
const HIVE: &str = include_str!("hive.nix");
const COLMENA_COMPAT: &str = include_str!("colmena-compat.nix");
const RESOURCES: &str = include_str!("resources.nix");

/// What identifies a network: where it is, its arguments and deployment.
#[derive(Debug, Clone)]
pub struct Network {
    pub source: Source,
    /// Argument name → Nix expression.
    pub args: BTreeMap<String, String>,
    pub uuid: String,
    pub name: String,
    /// What state says of the machines and resources for NixOps' physical
    /// spec.
    pub physical: Physical,
}

/// What NixOps feeds back from state into the evaluation (its physical
/// spec; `physical` of eval-machine-info.nix).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Physical {
    pub machines: BTreeMap<String, MachinePhysical>,
    /// Type (`sshKeyPairs`) → resource → attribute → value. These may be
    /// secret (a private key, a command's output): Nix reads them from a
    /// file of the tool's private directory, never from its arguments.
    pub resources: BTreeMap<&'static str, BTreeMap<String, BTreeMap<&'static str, String>>>,
}

/// What state says of one machine for the physical spec: NixOps' own
/// attributes, and what its backend adds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MachinePhysical {
    /// Attribute → value (`sshPublicKey`, `stateVersion`).
    #[serde(flatten)]
    pub attrs: BTreeMap<&'static str, String>,
    #[serde(flatten)]
    pub backend: crate::backend::Physical,
}

/// The tool's Nix files, written into a private directory, with the
/// evaluation trace (trace.rs) and the traces it writes.
pub struct NixFiles {
    dir: crate::tmp::TmpDir,
    shim: Option<PathBuf>,
    traces: std::sync::atomic::AtomicUsize,
    /// Nix's cache directory, which the traces are read against.
    nix_cache: Option<PathBuf>,
    /// The inventory's outputs for this run (inventory.rs): None until the
    /// network's attributes are known; Some(None) for a network without one.
    inventory: std::sync::Mutex<Option<Option<PathBuf>>>,
}

impl NixFiles {
    pub fn write() -> Result<Self> {
        let dir = crate::tmp::TmpDir::new("nixops-nix-")?;
        std::fs::write(dir.path().join("eval-machine-info.nix"), EVAL_MACHINE_INFO)?;
        std::fs::write(dir.path().join("options.nix"), OPTIONS)?;
        std::fs::write(dir.path().join("keys.nix"), KEYS)?;
        std::fs::write(dir.path().join("hive.nix"), HIVE)?;
        std::fs::write(dir.path().join("colmena-compat.nix"), COLMENA_COMPAT)?;
        std::fs::write(dir.path().join("resources.nix"), RESOURCES)?;
        std::fs::write(dir.path().join("backends.nix"), crate::backend::nix_expression())?;
        let shim = trace::write_shim(dir.path())?;
        Ok(NixFiles {
            dir,
            shim,
            traces: Default::default(),
            nix_cache: trace::nix_cache_dir(),
            inventory: Default::default(),
        })
    }

    fn set_inventory(&self, file: Option<PathBuf>) {
        *self.inventory.lock().expect("inventory lock") = Some(file);
    }

    /// The inventory's file, once it is known whether there is one.
    fn inventory(&self) -> Option<Option<PathBuf>> {
        self.inventory.lock().expect("inventory lock").clone()
    }

    /// A new file for one process's trace; None where there is no trace.
    fn trace_file(&self) -> Option<PathBuf> {
        self.shim.as_ref()?;
        let n = self.traces.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(self.dir.path().join(format!("trace-{n}")))
    }

    /// Has `cmd` record its trace in `file` (one of [`trace_file`]'s).
    fn enable_trace(&self, cmd: &mut Command, file: &Path) {
        if let Some(shim) = &self.shim {
            trace::enable(cmd, shim, file);
        }
    }

    /// What the process that wrote `file` observed; the file is removed.
    fn observed(&self, file: &Path) -> trace::Observed {
        let seen = self.observed_until(file, None);
        let _ = std::fs::remove_file(file);
        seen
    }

    /// What the process writing `file` has observed so far, until `next`
    /// began there (it writes each record with one write(2), and marks
    /// each machine's beginning). The file stays, for the machines after.
    fn observed_until(&self, file: &Path, next: Option<&str>) -> trace::Observed {
        let bytes = std::fs::read(file).unwrap_or_default();
        trace::parse(
            trace::before_begin(&bytes, next),
            self.dir.path(),
            self.nix_cache.as_deref(),
        )
    }

    pub fn eval_machine_info(&self) -> PathBuf {
        self.dir.path().join("eval-machine-info.nix")
    }

    /// A file of this private directory (0700) holding `text`, readable by
    /// its owner only, named by its digest: made once, whoever asks again.
    fn private_file(&self, stem: &str, text: &str) -> Result<PathBuf> {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let path = self.dir.path().join(format!("{stem}-{}.json", &digest[..32]));
        if path.exists() {
            return Ok(path);
        }
        crate::tmp::write_private(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// Makes a Nix string literal of `s`.
pub fn nix_string(s: &str) -> String {
    let json = serde_json::to_string(s).expect("strings serialize");
    json.replace("${", "\\${")
}

/// What one evaluation asks of eval-machine-info.nix.
struct Call<'a> {
    /// The attribute of its result (`meta`, `keyTexts`, ...).
    attr: &'a str,
    /// String arguments.
    strs: Vec<(&'a str, String)>,
    json: bool,
    /// Write the selected toplevels' derivations to the store.
    instantiate: bool,
    /// Record what the evaluation observes in this file (trace.rs).
    trace: Option<PathBuf>,
    /// A Nix expression the attribute's value is applied to.
    apply: Option<String>,
    /// Evaluate (else instantiate: write the derivations and print their
    /// paths, as plain nix-instantiate does).
    eval: bool,
}

impl<'a> Call<'a> {
    fn new(attr: &'a str) -> Self {
        Call {
            attr,
            strs: Vec::new(),
            json: true,
            instantiate: false,
            trace: None,
            apply: None,
            eval: true,
        }
    }

    fn str(mut self, name: &'a str, value: String) -> Self {
        self.strs.push((name, value));
        self
    }
}

/// Where the network is, ready to evaluate: its files, or a flake locked
/// once for the run, with the output that holds the network.
#[derive(Debug, Clone)]
enum Resolved {
    Files(Vec<PathBuf>),
    Flake {
        flake: String,
        attr: String,
        locked: String,
    },
}

impl Network {
    /// The network the deployment records.
    pub fn of(d: &crate::state::Deployment) -> Result<Network> {
        Ok(Network {
            source: Source::of(d)?,
            args: d.args()?,
            uuid: d.uuid.clone(),
            name: d.name().unwrap_or_default().to_owned(),
            physical: physical_of(d)?,
        })
    }

    fn physical_json(&self) -> String {
        serde_json::to_string(&self.physical).expect("strings serialize")
    }

    /// How eval-machine-info.nix gets the physical spec: `physicalJSON`, or,
    /// when it holds resources' values, `physicalFile`, a file only we can
    /// read (an argument is visible to every user, in the process list).
    /// A flake then evaluates impurely, as reading a file needs (NixOps 2.0
    /// evaluated every flake so).
    fn physical_arg(&self, files: &NixFiles) -> Result<(&'static str, String)> {
        let json = self.physical_json();
        if !self.reads_physical_file() {
            return Ok(("physicalJSON", json));
        }
        let file = files.private_file("physical", &json)?;
        Ok(("physicalFile", file.to_string_lossy().into_owned()))
    }

    /// Whether evaluations read the physical spec from a file.
    pub fn reads_physical_file(&self) -> bool {
        !self.physical.resources.is_empty() || self.physical.machines.values().any(|m| m.backend.spec.secret)
    }

    fn check_files(&self, files: &[PathBuf]) -> Result<()> {
        if files.is_empty() {
            bail!(
                "deployment ‘{}’ has no network; give one with ‘nixops modify --network DIR’ or ‘nixops modify FILE...’",
                self.name
            );
        }
        for f in files {
            if !f.exists() {
                bail!(
                    "network file {} of deployment ‘{}’ does not exist",
                    f.display(),
                    self.name
                );
            }
        }
        Ok(())
    }

    fn args_expr(&self) -> String {
        let fields: String = self
            .args
            .iter()
            .map(|(k, v)| format!(" {} = ({v});", nix_string(k)))
            .collect();
        format!("{{{fields} }}")
    }

    /// Checks the files, or locks the flake and finds its network's output.
    async fn resolve(&self, opts: &NixOpts) -> Result<Resolved> {
        match &self.source {
            Source::Files(paths) => {
                self.check_files(paths)?;
                Ok(Resolved::Files(paths.clone()))
            }
            Source::Flake { flake, attr } => {
                let locked = flake::lock(flake, opts).await?;
                let attr = flake::find_output(flake, &locked, attr.as_deref(), opts).await?;
                Ok(Resolved::Flake {
                    flake: flake.clone(),
                    attr,
                    locked,
                })
            }
        }
    }

    /// The one evaluator command: nix-instantiate on eval-machine-info.nix
    /// for network files; for a flake, `nix eval` of its locked output with
    /// eval-machine-info.nix applied inline.
    fn command(
        &self,
        resolved: &Resolved,
        files: &NixFiles,
        opts: &NixOpts,
        call: &Call<'_>,
    ) -> Result<Command> {
        let physical = self.physical_arg(files)?;
        let mut cmd = match resolved {
            Resolved::Files(paths) => {
                let exprs: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                let mut cmd = process::command("nix-instantiate");
                match &call.apply {
                    // Every argument below reaches eval-machine-info.nix
                    // through the function's `...`.
                    Some(apply) => cmd.arg("-E").arg(format!(
                        "{{ ... }}@args: ((import {} args).{}) ({apply})",
                        nix_string(&files.eval_machine_info().to_string_lossy()),
                        call.attr
                    )),
                    None => cmd.arg(files.eval_machine_info()).arg("-A").arg(call.attr),
                };
                cmd.args(["--argstr", "networkExprsJSON"])
                    .arg(serde_json::to_string(&exprs).expect("strings serialize"))
                    .args(["--arg", "args"])
                    .arg(self.args_expr())
                    .args(["--argstr", "uuid", &self.uuid])
                    .args(["--argstr", "deploymentName", &self.name])
                    .args(["--argstr", physical.0, &physical.1]);
                if let Some(Some(f)) = files.inventory() {
                    cmd.args(["--argstr", "inventoryFile"]).arg(f);
                }
                for (k, v) in &call.strs {
                    cmd.args(["--argstr", k, v]);
                }
                cmd.args(opts.eval_args());
                if call.eval {
                    cmd.args(["--eval", "--strict"]);
                }
                if call.instantiate && !opts.read_only {
                    cmd.arg("--read-write-mode");
                }
                cmd
            }
            Resolved::Flake { flake, attr, locked } => {
                let mut fields = vec![
                    ("flakeKind", nix_string(flake::kind(attr))),
                    ("flakeName", nix_string(&format!("{flake}#{attr}"))),
                    ("args", self.args_expr()),
                    ("uuid", nix_string(&self.uuid)),
                    ("deploymentName", nix_string(&self.name)),
                    (physical.0, nix_string(&physical.1)),
                    ("system", nix_string(&flake::system())),
                ];
                if let Some(Some(f)) = files.inventory() {
                    fields.push(("inventoryFile", nix_string(&f.to_string_lossy())));
                }
                fields.extend(call.strs.iter().map(|(k, v)| (*k, nix_string(v))));
                let fields: String = fields.iter().map(|(k, v)| format!("    {k} = {v};\n")).collect();
                let applied = match &call.apply {
                    Some(a) => format!(" ({a})"),
                    None => String::new(),
                };
                let apply = format!(
                    "let\n  nixops = {{\n    options = ({OPTIONS});\n    keys = ({KEYS});\n    hive = ({HIVE});\n    colmena = ({COLMENA_COMPAT});\n    resources = ({RESOURCES});\n    backends = ({});\n  }};\nin\nflakeOutput: (({EVAL_MACHINE_INFO}) {{\n    inherit flakeOutput nixops;\n{fields}  }}).{}{applied}\n",
                    crate::backend::nix_expression(),
                    call.attr
                );
                let mut cmd = flake::eval_command(locked, attr, &apply, opts);
                if !call.instantiate || opts.read_only {
                    cmd.arg("--read-only");
                }
                // Impure only to read that file: the search path stays out
                // of reach, as in pure evaluation.
                if self.reads_physical_file() && !opts.impure {
                    cmd.arg("--impure").env_remove("NIX_PATH");
                }
                cmd
            }
        };
        if call.json {
            cmd.arg("--json");
        }
        if let Some(file) = &call.trace {
            files.enable_trace(&mut cmd, file);
        }
        Ok(cmd)
    }

    /// Runs an evaluation; its output, or an error naming the network.
    async fn run_resolved(
        &self,
        resolved: &Resolved,
        files: &NixFiles,
        opts: &NixOpts,
        call: Call<'_>,
    ) -> Result<process::Output> {
        let mut cmd = self.command(resolved, files, opts, &call)?;
        let out = process::run(&mut cmd, None, Sink::quiet()).await?;
        if out.success() {
            return Ok(out);
        }
        let said: Vec<String> = out.stderr.iter().filter(|l| pool::is_said(l)).cloned().collect();
        match resolved {
            Resolved::Files(_) => bail!("evaluation of the network failed:\n{}", said.join("\n")),
            Resolved::Flake { flake, attr, .. } => Err(flake::eval_error(flake, attr, &said)),
        }
    }

    /// Runs an evaluation; its stdout, and for flakes the locked URL.
    async fn run(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        call: Call<'_>,
    ) -> Result<(String, Option<String>)> {
        // What reads a machine's configuration needs the inventory first.
        if call.attr == "optionValue" || call.attr == "optionDerivation" {
            self.with_inventory(files, opts).await?;
        }
        let resolved = self.resolve(opts).await?;
        let out = self.run_resolved(&resolved, files, opts, call).await?;
        Ok((out.stdout, resolved.locked_url()))
    }

    /// Every machine's deployment options, no system instantiated (what
    /// commands that reach machines without deploying them need).
    pub async fn deployment_options(&self, files: &NixFiles, opts: &NixOpts) -> Result<NetworkInfo> {
        self.evaluate(files, opts, Some(&[]), &[], false).await
    }

    /// Every machine's deployment info and, with `toplevels`, the selected
    /// machines' (`include`, None: all, less `exclude`) toplevels, their
    /// derivations written to the store so they can be built. The first
    /// machine that fails to evaluate fails the whole call. Without
    /// `toplevels`, a machine's toplevel may come from the evaluation cache
    /// all the same.
    pub async fn evaluate(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        include: Option<&[Selector]>,
        exclude: &[Selector],
        toplevels: bool,
    ) -> Result<NetworkInfo> {
        let ev = Evaluator::new(self, files, opts, None).await?;
        let req = Request {
            include,
            exclude,
            toplevels,
            evaluate: None,
        };
        ev.all(&req).await
    }
}

impl Network {
    /// Colmena's `eval`: `expr`, a function of `{ lib, pkgs, nodes, ... }`,
    /// applied to the network; its value as JSON text, exactly as Colmena
    /// prints it (Nix's `builtins.toJSON`). With `instantiate`, the
    /// derivations it returns are written to the store and nix-instantiate's
    /// output is returned (network files only, as in Colmena).
    pub async fn introspect(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        expr: &str,
        instantiate: bool,
    ) -> Result<String> {
        self.with_inventory(files, opts).await?;
        let resolved = self.resolve(opts).await?;
        let mut call = Call::new("introspect");
        if instantiate {
            if matches!(resolved, Resolved::Flake { .. }) {
                bail!(
                    "--instantiate needs a hive file (hive.nix); a flake is evaluated by `nix eval`, which instantiates nothing"
                );
            }
            call.apply = Some(expr.to_owned());
            call.eval = false;
            call.json = false;
            call.instantiate = true;
            let out = self.run_resolved(&resolved, files, opts, call).await?;
            return Ok(out.stdout);
        }
        call.apply = Some(format!("args: builtins.toJSON (({expr}) args)"));
        let out = self.run_resolved(&resolved, files, opts, call).await?;
        serde_json::from_str::<String>(&out.stdout)
            .map_err(|e| anyhow::anyhow!("cannot read the evaluation's output ({e}): {}", out.stdout))
    }
}

impl Network {
    /// Makes the network's inventory (if it names one) known to evaluations
    /// through `files`, once: an [`Evaluator`] prepares it after reading the
    /// network's attributes (from the evaluation cache where it can).
    async fn with_inventory(&self, files: &NixFiles, opts: &NixOpts) -> Result<()> {
        if files.inventory().is_none() {
            Evaluator::new(self, files, opts, None).await?;
        }
        Ok(())
    }

    /// For Colmena's `repl`: a file (in `files`' directory) whose value is
    /// `{ lib, pkgs, nodes }` of the network.
    pub async fn repl_file(&self, files: &NixFiles, opts: &NixOpts) -> Result<PathBuf> {
        self.with_inventory(files, opts).await?;
        let emi = nix_string(&files.eval_machine_info().to_string_lossy());
        let physical = self.physical_arg(files)?;
        let inventory = match files.inventory() {
            Some(Some(f)) => format!(" inventoryFile = {};", nix_string(&f.to_string_lossy())),
            _ => String::new(),
        };
        let common = format!(
            "args = {}; uuid = {}; deploymentName = {}; {} = {};{inventory}",
            self.args_expr(),
            nix_string(&self.uuid),
            nix_string(&self.name),
            physical.0,
            nix_string(&physical.1)
        );
        let fields = match self.resolve(opts).await? {
            Resolved::Files(paths) => {
                let exprs: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                format!(
                    "networkExprsJSON = {}; {common}",
                    nix_string(&serde_json::to_string(&exprs)?)
                )
            }
            Resolved::Flake { flake, attr, locked } => {
                let path: String = attr.split('.').map(|a| format!(".{}", nix_string(a))).collect();
                format!(
                    "flakeOutput = (builtins.getFlake {}){path}; flakeKind = {}; flakeName = {}; system = {}; {common}",
                    nix_string(&locked),
                    nix_string(flake::kind(&attr)),
                    nix_string(&format!("{flake}#{attr}")),
                    nix_string(&flake::system())
                )
            }
        };
        let file = files.dir.path().join("repl.nix");
        std::fs::write(
            &file,
            format!("(import {emi} {{ {fields} }}).introspect (x: x)\n"),
        )?;
        Ok(file)
    }
}

/// What NixOps 2.0 feeds back from state into the evaluation (its physical
/// spec): of each machine, the SSH key NixOps generated to log in with
/// (`none.sshPublicKey`) and the stateVersion it read from the machine on
/// first contact (`stateVersion`); of each resource of a type the tool
/// creates, the attributes NixOps feeds back (a key pair's halves, a
/// command's output). Obsolete resources too: eval-machine-info.nix takes
/// only those the network declares (with the same type), as NixOps does.
fn physical_of(d: &crate::state::Deployment) -> Result<Physical> {
    let mut resources: BTreeMap<&'static str, BTreeMap<String, BTreeMap<&'static str, String>>> =
        BTreeMap::new();
    for r in d.resources.values() {
        let (attr, attrs): (&'static str, BTreeMap<_, _>) =
            if let Some(t) = info::created_type_of_kind(&r.kind) {
                let attrs = t
                    .fed_back
                    .iter()
                    .filter_map(|a| Some((*a, r.get(a)?.to_owned())))
                    .collect();
                (t.attr, attrs)
            } else if let Some(t) = crate::backend::resource_type_of_kind(&r.kind) {
                // A plugin's type: what NixOps gives back of it (an elastic
                // IP's address, a VPC's id), under the option's name.
                let attrs = t
                    .fed_back
                    .iter()
                    .filter_map(|(option, a)| Some((*option, r.get(a)?.to_owned())))
                    .collect();
                (t.attr, attrs)
            } else {
                continue;
            };
        if !attrs.is_empty() {
            resources.entry(attr).or_default().insert(r.name.clone(), attrs);
        }
    }
    let mut backends = crate::backend::physical(d)?;
    let machines = d
        .machines()
        .map(|m| {
            let attrs: BTreeMap<_, _> = [
                ("sshPublicKey", "none.sshPublicKey"),
                ("stateVersion", "stateVersion"),
            ]
            .into_iter()
            .filter_map(|(field, attr)| Some((field, m.get(attr)?.to_owned())))
            .collect();
            let backend = backends.remove(&m.name).unwrap_or_default();
            (m.name.clone(), MachinePhysical { attrs, backend })
        })
        // Only what there is: a machine new to state changes no evaluation.
        .filter(|(_, p)| !p.attrs.is_empty() || p.backend != Default::default())
        .collect();
    Ok(Physical { machines, resources })
}

impl Resolved {
    fn locked_url(&self) -> Option<String> {
        match self {
            Resolved::Files(_) => None,
            Resolved::Flake { locked, .. } => Some(locked.clone()),
        }
    }
}

/// Colmena's `meta.allowApplyAll = false`: a command must name its machines.
pub fn check_apply_all(meta: &NetworkMeta, filter: &MachineFilter) -> Result<()> {
    if !meta.allow_apply_all && filter.include_opt().is_none() {
        bail!("the hive sets meta.allowApplyAll = false: name the machines to act on with --on or --include");
    }
    Ok(())
}

/// What to say of the network's attributes no NixOps version knows: NixOps
/// ignores them, so a typo (`network.rollback`) silently does nothing; say
/// so, with the attribute it most likely meant.
fn meta_warnings(meta: &NetworkMeta) -> Vec<String> {
    meta.unknown_attrs
        .iter()
        .map(|a| {
            let meant = likely(a, &meta.known_attrs)
                .map(|k| format!("; did you mean ‘{k}’?"))
                .unwrap_or_else(|| format!(" (known: {})", meta.known_attrs.join(", ")));
            format!("warning: the network sets ‘{a}’, which NixOps does not know and ignores{meant}")
        })
        .collect()
}

/// The known name `name` most likely stands for: the same but for case,
/// part of it (`rollback` for `enableRollback`), or a few letters off.
fn likely<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let short = |s: &str| s.trim_start_matches("network.").to_lowercase();
    let n = short(name);
    known
        .iter()
        .map(|k| {
            let kk = short(k);
            let score = if kk == n || kk.contains(&n) || n.contains(&kk) {
                0
            } else {
                strsim::levenshtein(&kk, &n)
            };
            (score, k.as_str())
        })
        .filter(|(score, _)| *score <= 3)
        .min_by_key(|(score, _)| *score)
        .map(|(_, k)| k)
}

/// Refuses what the network's attributes ask for and the tool cannot do.
fn check_meta(meta: &NetworkMeta) -> Result<()> {
    if !meta.unsupported.is_empty() {
        bail!(
            "the network uses what this tool does not support:\n  {}",
            meta.unsupported.join("\n  ")
        );
    }
    Ok(())
}

/// Refuses a machine name the tool cannot use: it becomes a file name (the
/// machine's GC root), part of ssh's `HostKeyAlias` and of a known_hosts
/// line, and the `name>` prefix of log lines. Any other character,
/// Unicode included, is fine.
pub fn check_machine_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it cannot be a file name"
    } else if name.contains('/') {
        "it contains ‘/’"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else if name.chars().any(char::is_whitespace) {
        "it contains white space"
    } else if name.contains(',') {
        "it contains ‘,’, which separates host names in ssh's known_hosts"
    } else if name.len() > 255 {
        "it is longer than 255 bytes, the longest file name"
    } else {
        return Ok(());
    };
    bail!("machine name {name:?} cannot be used: {why}; rename the machine in the network files")
}

impl Network {
    /// The network's own attributes (`network.description`, ...), without
    /// evaluating any machine.
    pub async fn meta(&self, files: &NixFiles, opts: &NixOpts) -> Result<NetworkMeta> {
        let (stdout, locked) = self.run(files, opts, Call::new("meta.network")).await?;
        let mut meta: NetworkMeta =
            serde_json::from_str(&stdout).context("cannot parse the network's attributes")?;
        meta.flake_url = locked;
        Ok(meta)
    }

    /// The arguments the network takes: name → has a default.
    pub async fn arguments(&self, files: &NixFiles, opts: &NixOpts) -> Result<BTreeMap<String, bool>> {
        let (stdout, _) = self.run(files, opts, Call::new("arguments")).await?;
        serde_json::from_str(&stdout).context("cannot parse the network's arguments")
    }
}

impl Network {
    /// [`evaluate`](Self::evaluate) for the machines `filter` selects; a
    /// selector that matches no machine is an error.
    pub async fn evaluate_selected(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        filter: &MachineFilter,
        instantiate: bool,
    ) -> Result<NetworkInfo> {
        let ev = Evaluator::new(self, files, opts, None).await?;
        check_apply_all(&ev.meta, filter)?;
        ev.selected(filter, instantiate).await
    }

    /// Evaluates one option of one machine: Nix syntax, or JSON.
    pub async fn option(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        machine: &str,
        path: &[String],
        json: bool,
        include_physical: bool,
    ) -> Result<String> {
        let mut call = Call::new("optionValue")
            .str("optionMachine", machine.to_owned())
            .str("optionPathJSON", serde_json::to_string(path)?)
            .str("includePhysicalJSON", include_physical.to_string());
        call.json = json;
        Ok(self.run(files, opts, call).await?.0)
    }

    /// The derivation of one option of one machine whose value is a
    /// package (a backend's disk image), with the physical spec, written
    /// to the store so that it can be built. None: the value is no
    /// derivation (a path given as it is).
    pub async fn option_derivation(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        machine: &str,
        path: &[String],
    ) -> Result<Option<String>> {
        let mut call = Call::new("optionDerivation")
            .str("optionMachine", machine.to_owned())
            .str("optionPathJSON", serde_json::to_string(path)?);
        call.instantiate = true;
        let out = self.run(files, opts, call).await?.0;
        serde_json::from_str(out.trim())
            .with_context(|| format!("machine ‘{machine}’: {} is no derivation path", path.join(".")))
    }
}

/// Splits an option path like `services.nginx.virtualHosts."example.com"`
/// into its attribute names.
pub fn split_option_path(s: &str) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => cur.extend(chars.next()),
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("unbalanced quotes in option name ‘{s}’");
    }
    parts.push(cur);
    if parts.iter().any(String::is_empty) {
        bail!("‘{s}’ is not an option name");
    }
    Ok(parts)
}

impl Network {
    /// The command whose stdout is the JSON object machine → key → `text`
    /// of the given machines' keys. Evaluation only (nix-instantiate
    /// without --read-write-mode, `nix eval --read-only`), so nothing is
    /// written to the store. The caller reads the secrets from its stdout
    /// pipe.
    pub async fn key_texts_command(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        machines: &[String],
    ) -> Result<Command> {
        let exact: Vec<Selector> = machines.iter().map(|m| Selector::exact(m)).collect();
        let call = Call::new("keyTexts").str("includeJSON", serde_json::to_string(&exact)?);
        self.with_inventory(files, opts).await?;
        let resolved = self.resolve(opts).await?;
        self.command(&resolved, files, opts, &call)
    }
}

/// Absolute form of a network file path given on the command line.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    };
    if !abs.exists() {
        bail!("network file {} does not exist", abs.display());
    }
    Ok(abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        for ok in ["m", "web-1", "é", "db.example.com", "_x", "a@b"] {
            check_machine_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a\nb",
            "tab\there",
            "a,b",
            &"x".repeat(256),
        ] {
            assert!(check_machine_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn option_paths() {
        assert_eq!(split_option_path("a.b").unwrap(), vec!["a", "b"]);
        assert_eq!(
            split_option_path("services.nginx.virtualHosts.\"example.com\".root").unwrap(),
            vec!["services", "nginx", "virtualHosts", "example.com", "root"]
        );
        assert!(split_option_path("a..b").is_err());
        assert!(split_option_path("a.\"b").is_err());
    }
}

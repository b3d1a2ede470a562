//! The deploy pipeline, as explicit stages:
//! evaluate → record → build → copy → activate.
//!
//! Evaluation and the build are one Nix invocation each for the whole
//! network; copying and activation run per machine, in parallel within
//! bounds. A machine that fails at any stage drops out; the others go on.

mod activate;
mod build;
pub mod check;
mod copy;
pub mod generations;
mod guard;
pub mod health;
pub mod keys;
pub mod record;
pub mod select;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Result, bail};

use crate::network::{MachineFilter, MachineInfo, Network, NetworkInfo, NixFiles};
use crate::nix::NixOpts;
use crate::ssh::Target;
use crate::state::{Deployment, SqliteStore, Store};
use crate::ui::{self, Events};

pub use activate::{Action, reboot_and_wait};

#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Activate under a guard that rolls back unless confirmed (for
    /// machines that do not turn it off).
    pub magic_rollback: bool,
    /// Stop after a wave with a failure (None: when health checks exist).
    pub stop_on_failure: Option<bool>,
    /// Check each machine first and deploy only those not already running
    /// their new system.
    pub check: bool,
    /// Which machines to deploy.
    pub machines: MachineFilter,
    pub kill_obsolete: bool,
    pub dry_run: bool,
    /// Show which machines are new and which obsolete; change nothing.
    pub plan_only: bool,
    /// Record the machines in state, then stop (NixOps: create resources).
    pub create_only: bool,
    pub build_only: bool,
    pub copy_only: bool,
    pub action: Action,
    pub always_activate: bool,
    pub allow_reboot: bool,
    pub force_reboot: bool,
    pub no_sync: bool,
    pub max_concurrent_copy: usize,
    pub max_concurrent_activate: Option<usize>,
    /// Seconds to wait for a rebooted machine to come back.
    pub reboot_timeout: u64,
}

/// Everything a stage needs about the run.
pub struct Ctx {
    pub store: Arc<Mutex<SqliteStore>>,
    pub deployment: Deployment,
    pub nix: NixOpts,
    /// ControlPersist seconds for master connections.
    pub ssh_persist: u64,
}

/// One selected machine going through the pipeline.
pub struct Machine {
    pub name: String,
    pub resource_id: i64,
    pub info: MachineInfo,
    pub toplevel: String,
    /// The toplevel's derivation (None when it is only known as a path,
    /// e.g. from a rollback generation).
    pub drv_path: Option<String>,
    pub target: Target,
    /// Boot id seen when we first reached it (to notice a reboot).
    pub boot_id: Option<String>,
    /// What the first contact found (None: not contacted yet).
    pub probe: Option<copy::Probe>,
}

/// How a machine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deployed,
    /// Activation skipped: it already had the new system (alwaysActivate off).
    Unchanged,
    /// Stopped on purpose at --build-only / --copy-only / --dry-activate.
    Stopped(&'static str),
    /// The new system was activated, then taken back (magic rollback).
    RolledBack(String),
    Failed {
        stage: &'static str,
        error: String,
    },
    /// Left untouched because an earlier wave failed.
    NotDeployed,
}

impl Outcome {
    fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::RolledBack(_) | Outcome::Failed { .. } | Outcome::NotDeployed
        )
    }
}

/// Every machine's outcome and when it was reached.
struct Outcomes {
    started: Instant,
    map: BTreeMap<String, (Outcome, f64)>,
}

impl Outcomes {
    fn insert(&mut self, name: &str, o: Outcome) {
        self.map
            .insert(name.to_owned(), (o, self.started.elapsed().as_secs_f64()));
    }
}

pub fn network_of(d: &Deployment) -> Result<Network> {
    Network::of(d)
}

/// Checks what this tool cannot deploy before anything is touched.
fn check_supported(info: &NetworkInfo) -> Result<()> {
    if let Some(t) = info.resource_types.first() {
        bail!("the network declares resources.{t}; non-machine resources are not supported");
    }
    for (name, m) in &info.machines {
        if m.target_env != "none" {
            bail!(
                "machine ‘{name}’ has deployment.targetEnv = \"{}\"; only existing machines (\"none\") are supported",
                m.target_env
            );
        }
        if let Some(port) = m.target_port.filter(|p| !(1..=65535).contains(p)) {
            bail!("machine ‘{name}’: deployment.targetPort = {port} is not a port number");
        }
    }
    keys::check(info)
}

/// Runs a deploy; returns the process exit code.
pub async fn run(ctx: Ctx, opts: DeployOptions) -> Result<i32> {
    let started = Instant::now();
    let network = network_of(&ctx.deployment)?;
    let files = NixFiles::write()?;

    // Evaluate.
    errln!("evaluating network of deployment ‘{}’...", ctx.deployment.label());
    let filter = &opts.machines;
    let info = network.evaluate_selected(&files, &ctx.nix, filter, true).await?;
    check_supported(&info)?;

    // Record machines (new, obsolete) and network attributes.
    if opts.plan_only {
        for name in info.machines.keys() {
            let known = ctx.deployment.resources.contains_key(name);
            outln!("{} {name}", if known { " " } else { "+" });
        }
        for r in ctx
            .deployment
            .machines()
            .filter(|r| !info.machines.contains_key(&r.name))
        {
            outln!(
                "{} {} (obsolete)",
                if opts.kill_obsolete { "-" } else { "~" },
                r.name
            );
        }
        return Ok(0);
    }
    let ids = record::machines(&ctx, &info, opts.kill_obsolete)?;
    if opts.create_only {
        errln!(
            "recorded {} machines; existing machines need no creating",
            ids.len()
        );
        return Ok(0);
    }
    let selected: Vec<String> = info
        .machines
        .iter()
        .filter(|(_, m)| m.drv_path.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    if selected.is_empty() {
        errln!("no machines to deploy");
        return Ok(0);
    }

    let mut machines = Vec::new();
    for name in &selected {
        let m = &info.machines[name];
        let res = ctx.deployment.resources.get(name);
        machines.push(Machine {
            name: name.clone(),
            resource_id: ids[name],
            info: m.clone(),
            toplevel: m.toplevel.clone().expect("selected machines have a toplevel"),
            drv_path: m.drv_path.clone(),
            target: record::target(&ctx.deployment, name, m, res, ctx.ssh_persist)?,
            boot_id: None,
            probe: None,
        });
    }

    if opts.dry_run {
        build::dry_run(&machines, &ctx.nix).await?;
        return Ok(0);
    }
    let code = execute(&ctx, machines, &opts, true, started).await?;
    let switched = matches!(opts.action, Action::Switch | Action::Boot);
    if code == 0 && info.network.enable_rollback && switched && !opts.build_only && !opts.copy_only {
        let d = ctx.store.lock().expect("state lock").load(&ctx.deployment.uuid)?;
        let deployed: BTreeMap<String, String> = d
            .machines()
            .filter(|r| info.machines.contains_key(&r.name))
            .filter_map(|r| Some((r.name.clone(), r.toplevel()?.to_owned())))
            .collect();
        let n = generations::record(&ctx.deployment.uuid, &deployed).await?;
        errln!("recorded generation {n}");
    }
    Ok(code)
}

/// Runs the per-machine stages on machines whose toplevels are known:
/// build (when `build` is set; otherwise the toplevels must exist, as for a
/// rollback), copy, activate. Returns the exit code.
pub async fn execute(
    ctx: &Ctx,
    machines: Vec<Machine>,
    opts: &DeployOptions,
    build: bool,
    started: Instant,
) -> Result<i32> {
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    let (events, renderer) = ui::start(&names);
    let mut outcomes = Outcomes {
        started,
        map: BTreeMap::new(),
    };

    // Build; meanwhile reach every machine (its master connection then
    // serves the copy and the activation) unless only building.
    let building = async {
        if build {
            Some(build::run(ctx, &machines, &events).await)
        } else {
            None
        }
    };
    let probing = async {
        if opts.build_only {
            Default::default()
        } else {
            copy::probe_all(ctx, &machines, &events).await
        }
    };
    let (built, mut probes) = tokio::join!(building, probing);
    let mut _build_roots = None;
    let mut live = Vec::new();
    if let Some((built, roots)) = built {
        _build_roots = roots;
        for m in machines {
            match built.get(&m.name) {
                Some(Ok(())) => live.push(m),
                Some(Err(e)) => fail(&events, &mut outcomes, &m.name, "build", e.clone()),
                None => fail(&events, &mut outcomes, &m.name, "build", "not built".into()),
            }
        }
    } else {
        live = machines;
    }
    if opts.build_only {
        for m in &live {
            stop(&events, &mut outcomes, &m.name, "built");
        }
        return finish(events, renderer, outcomes).await;
    }
    let reached = live;
    let mut live = Vec::new();
    for mut m in reached {
        match probes.remove(&m.name) {
            Some(Ok(p)) => {
                m.boot_id = Some(p.boot_id.clone());
                m.probe = Some(p);
                live.push(m);
            }
            Some(Err(e)) => fail(&events, &mut outcomes, &m.name, "connect", format!("{e:#}")),
            None => live.push(m),
        }
    }

    // Copy; meanwhile, evaluate the keys' texts (one evaluation for all)
    // if the machines are to be activated.
    let sends_keys = !opts.copy_only && opts.action != Action::DryActivate;
    let key_jobs: Vec<(String, MachineInfo)> = if sends_keys {
        live.iter().map(|m| (m.name.clone(), m.info.clone())).collect()
    } else {
        Vec::new()
    };
    let (copied, mut machine_keys) = tokio::join!(
        copy::run(ctx, live, &events, opts.max_concurrent_copy, opts.check),
        keys::prepare(ctx, key_jobs)
    );
    let mut live = Vec::new();
    for (m, r) in copied {
        match r {
            Ok(copy::Copied::Ready) => live.push(m),
            Ok(copy::Copied::AlreadyRunning) => stop(&events, &mut outcomes, &m.name, "already running it"),
            Err(e) => fail(&events, &mut outcomes, &m.name, "copy", format!("{e:#}")),
        }
    }
    if opts.copy_only {
        for m in &live {
            stop(&events, &mut outcomes, &m.name, "copied");
        }
        return finish(events, renderer, outcomes).await;
    }

    // Activate (sending keys before and after).
    let mut with_keys = Vec::new();
    for m in live {
        match machine_keys.remove(&m.name).transpose() {
            Ok(k) => with_keys.push((m, k)),
            Err(e) => fail(&events, &mut outcomes, &m.name, "keys", format!("{e:#}")),
        }
    }
    // The secrets of machines that dropped out go now.
    drop(machine_keys);
    let activated = activate::run(ctx, with_keys, &events, opts).await;
    for (m, r) in activated {
        match r {
            Ok(o) => {
                match &o {
                    Outcome::Stopped(what) => events.done(&m.name, what, None),
                    Outcome::RolledBack(why) => events.done(&m.name, "rolled back", Some(why.clone())),
                    Outcome::NotDeployed => {
                        events.done(&m.name, "not deployed", Some("an earlier wave failed".into()))
                    }
                    _ => {}
                }
                outcomes.insert(&m.name, o);
            }
            Err(e) => fail(&events, &mut outcomes, &m.name, "activation", format!("{e:#}")),
        }
    }
    finish(events, renderer, outcomes).await
}

fn fail(events: &Events, outcomes: &mut Outcomes, name: &str, stage: &'static str, error: String) {
    events.done(name, &format!("{stage} failed"), Some(error.clone()));
    outcomes.insert(name, Outcome::Failed { stage, error });
}

fn stop(events: &Events, outcomes: &mut Outcomes, name: &str, what: &'static str) {
    events.done(name, what, None);
    outcomes.insert(name, Outcome::Stopped(what));
}

/// Prints the end: the log tail of every failed machine, a table of every
/// machine (stage reached, result, time, first line of its error), and one
/// line.
async fn finish(
    events: Events,
    renderer: tokio::task::JoinHandle<ui::Report>,
    outcomes: Outcomes,
) -> Result<i32> {
    drop(events);
    let report = renderer.await?;
    let failed: Vec<&String> = outcomes
        .map
        .iter()
        .filter(|(_, (o, _))| o.is_failure())
        .map(|(n, _)| n)
        .collect();
    for name in &failed {
        if matches!(outcomes.map[*name].0, Outcome::NotDeployed) {
            continue;
        }
        errln!();
        errln!("--- {name}: last lines of its log:");
        for l in report.tails.get(*name).into_iter().flatten() {
            errln!("{name}> {l}");
        }
    }
    let rows = outcomes
        .map
        .iter()
        .map(|(name, (o, t))| {
            let (stage, result, error) = match o {
                Outcome::Deployed => ("activation", "deployed", ""),
                Outcome::Unchanged => ("activation", "unchanged", ""),
                Outcome::Stopped(what) => (*what, "stopped", ""),
                Outcome::RolledBack(why) => ("activation", "rolled back", why.as_str()),
                Outcome::Failed { stage, error } => (*stage, "failed", error.as_str()),
                Outcome::NotDeployed => ("-", "not deployed", "an earlier wave failed"),
            };
            vec![
                name.clone(),
                stage.to_owned(),
                result.to_owned(),
                format!("{t:.1} s"),
                error.lines().next().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    errln!();
    err!(
        "{}",
        ui::table(&["Machine", "Stage", "Result", "Time", "Error"], rows)
    );
    let secs = outcomes.started.elapsed().as_secs_f64();
    let total = outcomes.map.len();
    if failed.is_empty() {
        errln!("deployment finished successfully ({total} machines, {secs:.1} s)");
        Ok(0)
    } else {
        let names: Vec<String> = failed.iter().map(|n| format!("‘{n}’")).collect();
        errln!(
            "error: deployment of {} of {total} machines failed (namely on {}) ({secs:.1} s)",
            failed.len(),
            names.join(", ")
        );
        Ok(1)
    }
}

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
pub mod health;
pub mod plan;
pub mod record;
pub mod select;
mod types;

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::keys;
use crate::network::{MachineInfo, NetworkInfo, NixFiles};
use crate::ui::{self, Events, SummaryRow};

pub use crate::host::Action;
use crate::host::Host;
pub use activate::reboot_and_wait;
use types::Outcomes;
pub use types::{Ctx, DeployOptions, Machine, MachinePlan, Outcome, Plan, PlanStatus, Review, network_of};

/// Checks what this tool cannot deploy before anything is touched; returns
/// warnings to show.
fn check_supported(info: &NetworkInfo) -> Result<Vec<String>> {
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

/// The network's machines file (`network.machinesFile`, Colmena's
/// `meta.machinesFile`) as the build's remote builders, unless the command
/// line names builders or a build host. Nix ignores a machines file that
/// does not exist, so we say so instead.
fn with_machines_file(opts: &DeployOptions, info: &NetworkInfo, events: &Events) -> Result<DeployOptions> {
    let mut opts = opts.clone();
    let Some(file) = &info.network.machines_file else {
        return Ok(opts);
    };
    if opts.build_host.is_some() {
        events.message(format!(
            "note: the network's machinesFile {file} is not used with --build-host (the build host's own Nix configuration decides its builders)"
        ));
    } else if opts.builders.is_none() {
        if !std::path::Path::new(file).is_file() {
            bail!("the network's machinesFile {file} does not exist (or is no file)");
        }
        opts.builders = Some(format!("@{file}"));
    }
    Ok(opts)
}

/// Runs a deploy; returns the process exit code. Everything it says goes
/// through its display (`ui`), which is done when it returns.
pub async fn run(ctx: &Ctx, opts: DeployOptions) -> Result<i32> {
    let (events, display) = ui::start(&[]);
    let code = deploy(ctx, &opts, &events).await;
    drop(events);
    display.await?;
    code
}

/// `nixops plan`: what a deploy would change (see [`plan`]). Everything it
/// says while working goes through its display, done when it returns.
pub async fn make_plan(ctx: &Ctx, opts: plan::PlanOptions) -> Result<Plan> {
    let (events, display) = ui::start(&[]);
    let plan = plan::run(ctx, &opts, &events).await;
    drop(events);
    display.await?;
    plan
}

async fn deploy(ctx: &Ctx, opts: &DeployOptions, events: &Events) -> Result<i32> {
    let started = Instant::now();
    let network = network_of(&ctx.deployment)?;
    let files = NixFiles::write()?;

    // Evaluate.
    events.message(format!(
        "evaluating network of deployment ‘{}’...",
        ctx.deployment.label()
    ));
    let filter = &opts.machines;
    let info = network.evaluate_selected(&files, &ctx.nix, filter, true).await?;
    for w in check_supported(&info)? {
        events.message(w);
    }
    let opts = &with_machines_file(opts, &info, events)?;

    // Record machines (new, obsolete) and network attributes.
    if opts.plan_only {
        for name in info.machines.keys() {
            let known = ctx.deployment.resources.contains_key(name);
            events.output(format!("{} {name}", if known { " " } else { "+" }));
        }
        for r in ctx
            .deployment
            .machines()
            .filter(|r| !info.machines.contains_key(&r.name))
        {
            events.output(format!(
                "{} {} (obsolete)",
                if opts.kill_obsolete { "-" } else { "~" },
                r.name
            ));
        }
        return Ok(0);
    }
    let ids = record::machines(ctx, &info, opts.kill_obsolete, events)?;
    if opts.create_only {
        events.message(format!(
            "recorded {} machines; existing machines need no creating",
            ids.len()
        ));
        return Ok(0);
    }
    let selected: Vec<String> = info
        .machines
        .iter()
        .filter(|(_, m)| m.drv_path.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    if selected.is_empty() {
        events.message("no machines to deploy");
        return Ok(0);
    }

    let mut machines = Vec::new();
    for name in &selected {
        let m = &info.machines[name];
        machines.push(Machine::evaluated(ctx, name, m, ids[name], opts.local.as_ref())?);
    }

    if opts.dry_run {
        build::dry_run(&machines, &ctx.nix, events).await?;
        return Ok(0);
    }
    let code = execute(ctx, machines, opts, true, started, events).await?;
    let switched = matches!(opts.action, Action::Switch | Action::Boot);
    if code == 0 && info.network.enable_rollback && switched && !opts.build_only && !opts.copy_only {
        let d = ctx.store.lock().expect("state lock").load(&ctx.deployment.uuid)?;
        let deployed: BTreeMap<String, String> = d
            .machines()
            .filter(|r| info.machines.contains_key(&r.name))
            .filter_map(|r| Some((r.name.clone(), r.toplevel()?.to_owned())))
            .collect();
        let n = generations::record(&ctx.deployment.uuid, &deployed).await?;
        events.message(format!("recorded generation {n}"));
    }
    Ok(code)
}

/// Runs the per-machine stages on machines whose toplevels are known:
/// build (when `build` is set; otherwise the toplevels must exist, as for a
/// rollback), copy, activate; ends with the summary. Returns the exit code.
pub async fn execute(
    ctx: &Ctx,
    machines: Vec<Machine>,
    opts: &DeployOptions,
    build: bool,
    started: Instant,
    events: &Events,
) -> Result<i32> {
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    events.machines(&names);
    let mut outcomes = Outcomes::new(started);
    let build_host = match &opts.build_host {
        Some(dest) if build => Some(Host::build_host(dest, ctx.ssh_persist)?),
        _ => None,
    };

    // Build (here, or on the build host); meanwhile reach every machine
    // (its master connection then serves the copy and the activation)
    // unless only building, and have those that build their own systems
    // build them.
    let on_target = |m: &Machine| build && opts.builds_on_target(m);
    let building = async {
        let here: Vec<&Machine> = machines.iter().filter(|m| !on_target(m)).collect();
        match build {
            true if !here.is_empty() => Some(build::run(ctx, &here, opts, build_host.as_ref(), events).await),
            true => Some(Default::default()),
            false => None,
        }
    };
    let probing = async {
        let reach: Vec<&Machine> = machines
            .iter()
            .filter(|m| !opts.build_only || on_target(m))
            .collect();
        let probes = copy::probe_all(ctx, &reach, events).await;
        let builders: Vec<&Machine> = machines.iter().filter(|m| on_target(m)).collect();
        let built = build::on_targets(ctx, &builders, &probes, events).await;
        (probes, built)
    };
    let (built, (mut probes, built_on_targets)) = tokio::join!(building, probing);
    let mut build_roots = None;
    let mut live = Vec::new();
    if let Some((mut built, roots)) = built {
        build_roots = roots;
        built.extend(built_on_targets);
        for m in machines {
            match built.get(&m.name) {
                Some(Ok(())) => live.push(m),
                Some(Err(e)) => fail(events, &mut outcomes, &m.name, "build", e.clone()),
                // Not reached: the probe's error follows.
                None if on_target(&m) => live.push(m),
                None => fail(events, &mut outcomes, &m.name, "build", "not built".into()),
            }
        }
    } else {
        live = machines;
    }
    let reached = live;
    let mut live = Vec::new();
    for mut m in reached {
        match probes.remove(&m.name) {
            Some(Ok(mut p)) => {
                // Built there just now.
                p.has_path |= on_target(&m);
                m.boot_id = Some(p.boot_id.clone());
                m.probe = Some(p);
                live.push(m);
            }
            Some(Err(e)) => fail(events, &mut outcomes, &m.name, "connect", format!("{e:#}")),
            None => live.push(m),
        }
    }
    if opts.build_only {
        for m in &live {
            stop(events, &mut outcomes, &m.name, "built");
        }
        if let Some(r) = build_roots {
            r.release(events).await;
        }
        return Ok(finish(ctx, opts, events, outcomes));
    }

    // Copy; meanwhile, evaluate the keys' texts (one evaluation for all)
    // if the machines are to be activated.
    let sends_keys = !opts.copy_only && opts.action != Action::DryActivate;
    let key_jobs: Vec<(String, MachineInfo)> = if sends_keys {
        live.iter().map(|m| (m.name.clone(), m.info.clone())).collect()
    } else {
        Vec::new()
    };
    let keys_ctx = ctx.keys();
    let (copied, mut machine_keys) = tokio::join!(
        copy::run(ctx, live, events, opts, build_host.as_ref()),
        keys::prepare(&keys_ctx, key_jobs)
    );
    // Every machine has its toplevel now: the build host's roots can go.
    // Those here stay until the machines' permanent roots are set.
    let _build_roots = match build_roots {
        Some(r @ build::Roots::On(..)) => {
            r.release(events).await;
            None
        }
        here => here,
    };
    let mut live = Vec::new();
    for (m, r) in copied {
        match r {
            Ok(copy::Copied::Ready) => live.push(m),
            Ok(copy::Copied::AlreadyRunning) => stop(events, &mut outcomes, &m.name, "already running it"),
            Err(e) => fail(events, &mut outcomes, &m.name, "copy", format!("{e:#}")),
        }
    }
    if opts.copy_only {
        for m in &live {
            stop(events, &mut outcomes, &m.name, "copied");
        }
        return Ok(finish(ctx, opts, events, outcomes));
    }

    // --ask: what activation would change, then the question.
    if opts.review != Review::No && !live.is_empty() {
        let plan = plan::of_ready(ctx, &live, &mut machine_keys, opts.always_activate, events).await;
        let text = ui::plan_text(&plan);
        let yes = if opts.review == Review::Ask {
            let question = format!(
                "activate the new systems on {} machine{}?",
                live.len(),
                if live.len() == 1 { "" } else { "s" }
            );
            events.ask(text, question).await
        } else {
            events.message(text.trim_end());
            true
        };
        if !yes {
            for m in &live {
                events.done(&m.name, "not deployed", None);
            }
            events.message("not deploying anything");
            return Ok(1);
        }
    }

    // Activate (sending keys before and after).
    let mut with_keys = Vec::new();
    for m in live {
        match machine_keys.remove(&m.name).transpose() {
            Ok(k) => with_keys.push((m, k)),
            Err(e) => fail(events, &mut outcomes, &m.name, "keys", format!("{e:#}")),
        }
    }
    // The secrets of machines that dropped out go now.
    drop(machine_keys);
    let activated = activate::run(ctx, with_keys, events, opts).await;
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
            Err(e) => fail(events, &mut outcomes, &m.name, "activation", format!("{e:#}")),
        }
    }
    Ok(finish(ctx, opts, events, outcomes))
}

fn fail(events: &Events, outcomes: &mut Outcomes, name: &str, stage: &'static str, error: String) {
    events.done(name, &format!("{stage} failed"), Some(error.clone()));
    outcomes.insert(name, Outcome::Failed { stage, error });
}

fn stop(events: &Events, outcomes: &mut Outcomes, name: &str, what: &'static str) {
    events.done(name, what, None);
    outcomes.insert(name, Outcome::Stopped(what));
}

/// Records the run in the history and sends its summary (the display shows
/// the failed machines' log tails, a table and one line); returns the exit
/// code.
fn finish(ctx: &Ctx, opts: &DeployOptions, events: &Events, outcomes: Outcomes) -> i32 {
    let rows: Vec<SummaryRow> = outcomes
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
            SummaryRow {
                machine: name.clone(),
                stage: stage.to_owned(),
                result: result.to_owned(),
                secs: *t,
                error: error.to_owned(),
                failed: o.is_failure(),
                show_log: o.is_failure() && !matches!(o, Outcome::NotDeployed),
            }
        })
        .collect();
    let failed = rows.iter().any(|r| r.failed);
    crate::state::history::record(
        &ctx.store.lock().expect("state lock"),
        &ctx.deployment,
        opts.recorded_as.clone(),
        std::time::SystemTime::now() - outcomes.started.elapsed(),
        &outcomes
            .map
            .iter()
            .map(|(n, (o, _))| (n.clone(), o.result()))
            .collect::<Vec<_>>(),
        !failed,
    );
    events.summary(rows, outcomes.started.elapsed().as_secs_f64());
    i32::from(failed)
}

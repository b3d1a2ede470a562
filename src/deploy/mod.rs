//! The deploy pipeline, as explicit stages:
//! evaluate → record → build → copy → activate.
//!
//! Machines come out of evaluation one by one (src/network/evaluator.rs:
//! the cache, or a pool of Nix processes); each is recorded, then built (in
//! batches of those that came meanwhile), reached and copied as it comes
//! (front.rs); once all are copied, keys and activation run per machine, in
//! parallel within bounds. A machine that fails at any stage drops out; the
//! others go on.

mod activate;
mod build;
pub mod check;
mod copy;
mod create;
mod error;
mod front;
pub mod generations;
pub mod health;
pub mod plan;
pub mod record;
mod resources;
pub mod select;
mod types;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::keys;
use crate::network::{Evaluator, MachineInfo, NetworkInfo, NetworkMeta, NixFiles, Request, check_apply_all};
use crate::ui::{self, Events, SummaryRow};

pub use crate::host::Action;
use crate::host::Host;
pub use activate::reboot_and_wait;
use error::{Failure, Stage};
use types::Outcomes;
pub use types::{Ctx, DeployOptions, Machine, MachinePlan, Outcome, Plan, PlanStatus, Review, network_of};

/// A machine whose kind state cannot take: state recorded another
/// `targetEnv` for it.
fn check_kind(d: &crate::state::Deployment, name: &str, m: &MachineInfo) -> Result<()> {
    if let Some(r) = d.resources.get(name).filter(|r| r.is_machine())
        && r.kind != m.target_env
    {
        bail!(
            "machine ‘{name}’ is recorded in state as targetEnv \"{}\", but the network now declares deployment.targetEnv = \"{}\": a machine cannot change its kind; destroy it first (‘nixops destroy --include {name}’), or give the new one another name",
            r.kind,
            m.target_env
        );
    }
    Ok(())
}

/// What the tool cannot deploy on one machine (its backend says, from
/// what state recorded of it); the warnings to show.
fn check_machine(d: &crate::state::Deployment, name: &str, m: &MachineInfo) -> Result<Vec<String>> {
    check_kind(d, name, m)?;
    let state = d.resources.get(name).filter(|r| r.is_machine());
    crate::backend::for_machine(name, &m.target_env)?.check_deploy(name, m, state)?;
    keys::check_machine(name, m)
}

/// [`resources::check`] and [`check_machine`] for a network evaluated at
/// once (plan), before anything is touched; the warnings to show.
fn check_supported(d: &crate::state::Deployment, info: &NetworkInfo) -> Result<Vec<String>> {
    let names: Vec<String> = info.machines.keys().cloned().collect();
    resources::check(d, &names, &info.resources)?;
    let mut warnings = Vec::new();
    for (name, m) in &info.machines {
        warnings.extend(check_machine(d, name, m)?);
    }
    Ok(warnings)
}

/// The network's machines file (`network.machinesFile`, Colmena's
/// `meta.machinesFile`) as the build's remote builders, unless the command
/// line names builders or a build host. Nix ignores a machines file that
/// does not exist, so we say so instead.
fn with_machines_file(opts: &DeployOptions, meta: &NetworkMeta, events: &Events) -> Result<DeployOptions> {
    let mut opts = opts.clone();
    let Some(file) = &meta.machines_file else {
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

/// What the deploy's second half came to.
enum Front {
    /// `--create-only`: nothing past recording.
    CreateOnly,
    /// `--dry-run`: the machines to show the build of.
    DryRun(Vec<Machine>),
    /// Built, copied, activated; Some: stopped before activating, with this
    /// exit code.
    Ran(Option<i32>),
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
    if !opts.create_only && !opts.plan_only && !opts.evaluate_only {
        ctx.nix.check_writable("deploy")?;
    }
    let network = network_of(&ctx.deployment)?;
    let files = NixFiles::write()?;

    // The network's attributes and machine names.
    events.message(format!(
        "evaluating network of deployment ‘{}’...",
        ctx.deployment.label()
    ));
    let filter = &opts.machines;
    let since = Instant::now();
    let first = Evaluator::new(&network, &files, &ctx.nix, Some(events)).await?;
    ui::timings::span("network evaluation", since);
    // Building touches no machine (Colmena allows it on all).
    if !opts.build_only {
        check_apply_all(&first.meta, filter)?;
    }
    resources::check(&ctx.deployment, &first.names, &first.resources)?;

    // The resources first, whatever machines are selected: machines use
    // their values. Then the machines are evaluated with them.
    let reloaded;
    let later;
    let (ctx, ev) = if opts.dry_run || opts.plan_only || opts.evaluate_only {
        let missing = resources::missing(&ctx.deployment, &first.resources);
        if !missing.is_empty() {
            events.message(format!(
                "note: not made yet, so the machines are evaluated without them (a deploy makes them first): {}",
                missing.join(", ")
            ));
        }
        (ctx, first)
    } else if resources::create(ctx, &first.resources, events).await? {
        reloaded = ctx.reloaded()?;
        later = network_of(&reloaded.deployment)?;
        (
            &reloaded,
            Evaluator::new(&later, &files, &reloaded.nix, Some(events)).await?,
        )
    } else {
        (ctx, first)
    };
    // Then the machines a backend makes (stage create), with the same
    // new evaluation after it.
    let remade;
    let after;
    let (ctx, ev) = if opts.dry_run || opts.plan_only || opts.evaluate_only || opts.build_only {
        (ctx, ev)
    } else if create::machines(ctx, &ev.names, &files, filter, events).await? {
        remade = ctx.reloaded()?;
        after = network_of(&remade.deployment)?;
        (
            &remade,
            Evaluator::new(&after, &files, &remade.nix, Some(events)).await?,
        )
    } else {
        (ctx, ev)
    };
    let opts = &with_machines_file(opts, &ev.meta, events)?;
    let names = &ev.names.clone();
    let enable_rollback = ev.meta.enable_rollback;

    if opts.evaluate_only {
        let info = ev.selected(filter, true).await?;
        let n = info.machines.values().filter(|m| m.drv_path.is_some()).count();
        events.message(format!(
            "evaluated {n} machine{}; nothing changed (--evaluate-only)",
            if n == 1 { "" } else { "s" }
        ));
        return Ok(0);
    }

    if opts.plan_only {
        let declared: Vec<&String> = ev.resources.values().flat_map(|rs| rs.keys()).collect();
        for name in names.iter().chain(declared.iter().copied()) {
            let known = ctx.deployment.resources.contains_key(name);
            events.output(format!("{} {name}", if known { " " } else { "+" }));
        }
        for r in ctx
            .deployment
            .resources
            .values()
            .filter(|r| names.binary_search(&r.name).is_err() && !declared.contains(&&r.name))
        {
            events.output(format!(
                "{} {} (obsolete)",
                if opts.kill_obsolete { "-" } else { "~" },
                r.name
            ));
        }
        return Ok(0);
    }

    // Record the network and its obsolete machines; then each machine as
    // its evaluation comes, the selected ones going on to be built, copied
    // and activated.
    record::network(ctx, &ev.meta, names, &ev.resources, opts.kill_obsolete, events)?;
    let req = Request {
        include: filter.include_opt(),
        exclude: &filter.exclude,
        toplevels: !opts.create_only,
        evaluate: None,
    };
    let outcomes = Mutex::new(Outcomes::new(started));
    let (etx, mut erx) = unbounded_channel();
    let (mtx, mrx) = unbounded_channel();
    let evaluating = async move {
        ev.machines(&req, &etx).await;
    };
    let mut recorder = record::Recorder::new(ctx);
    let mut tags = BTreeMap::new();
    let mut selected = Vec::new();
    let taking = async {
        while let Some(e) = erx.recv().await {
            let name = e.name;
            if let Some(i) = e.inputs {
                outcomes
                    .lock()
                    .expect("outcomes lock")
                    .inputs
                    .insert(name.clone(), i);
            }
            let info = match e.result {
                Ok(info) => info,
                // One this deploy does not select fails only itself.
                Err(error) if !filter.may_select(&name) => {
                    events.message(crate::network::unselected_failure(&name, &error));
                    // It is in the network all the same (for --exclude NAME).
                    tags.insert(name, Vec::new());
                    continue;
                }
                Err(error) => {
                    let mut o = outcomes.lock().expect("outcomes lock");
                    fail(events, &mut o, &name, Failure::new(Stage::Evaluation, error));
                    continue;
                }
            };
            tags.insert(name.clone(), info.tags.clone());
            let made = async {
                // Before anything is recorded: a kind state cannot take.
                check_kind(&ctx.deployment, &name, &info)?;
                let backend = crate::backend::for_machine(&name, &info.target_env)?;
                // Before it is recorded too: a machine only its provider can
                // make is not put in state (nor one this deploy does not
                // select, then).
                let warnings = if info.drv_path.is_some() {
                    check_machine(&ctx.deployment, &name, &info)?
                } else {
                    let state = ctx.deployment.resources.get(&name).filter(|r| r.is_machine());
                    if backend.check_deploy(&name, &info, state).is_err() {
                        return Ok(None);
                    }
                    Vec::new()
                };
                let since = Instant::now();
                let id = recorder.machine(ctx, &name, &info)?;
                ui::timings::span("recording a machine", since);
                if info.drv_path.is_none() {
                    return Ok(None);
                }
                for w in warnings {
                    events.message(w);
                }
                let id = id.with_context(|| format!("machine ‘{name}’ is not in state"))?;
                // A machine its backend makes was made before (stage
                // create); one not made (a build) is reached by nothing.
                let mut unmade = None;
                if create::needed(&ctx.deployment, &name, &info) {
                    if !(opts.build_only || opts.dry_run) {
                        bail!(
                            "machine ‘{name}’ is not made (or not up) yet, and this deploy did not make it"
                        );
                    }
                    unmade = Some(crate::host::Local::default());
                }
                // Colmena's targetHost = null: only apply-local deploys it;
                // other runs build it at most.
                if info.target_host.is_none() && opts.local.is_none() {
                    if !(opts.build_only || opts.dry_run) {
                        events.message(select::skipped_local_only(&name));
                        return Ok(None);
                    }
                    if opts.build_on_target.unwrap_or(info.build_on_target) {
                        info.host_name(&name)?;
                    }
                }
                anyhow::Ok(Some(Machine::evaluated(
                    ctx,
                    &name,
                    &info,
                    id,
                    opts.local.as_ref().or(unmade.as_ref()),
                )?))
            };
            match made.await {
                Ok(Some(m)) => {
                    events.machines(std::slice::from_ref(&name));
                    selected.push(name);
                    let _ = mtx.send(m);
                }
                Ok(None) => {}
                Err(e) => {
                    let mut o = outcomes.lock().expect("outcomes lock");
                    fail(events, &mut o, &name, Failure::of(Stage::Evaluation, &e));
                }
            }
        }
        drop(mtx);
    };
    // Only what builds and copies needs the build host.
    let build_host = if opts.create_only || opts.dry_run {
        None
    } else {
        build_host(ctx, opts, true)?
    };
    let front = async {
        if opts.create_only {
            drop(mrx);
            return Front::CreateOnly;
        }
        if opts.dry_run {
            let mut mrx = mrx;
            let mut machines = Vec::new();
            while let Some(m) = mrx.recv().await {
                machines.push(m);
            }
            return Front::DryRun(machines);
        }
        Front::Ran(execute_stream(ctx, mrx, opts, true, build_host.as_ref(), events, &outcomes).await)
    };
    let ((), (), front) = tokio::join!(evaluating, taking, front);

    filter.check_used(tags.iter().map(|(n, t)| (n.as_str(), t.as_slice())))?;
    let outcomes = outcomes.into_inner().expect("outcomes lock");
    let failed_evaluation = outcomes.map.values().any(|(o, _)| o.is_failure());
    match front {
        Front::CreateOnly => {
            events.message(format!(
                "recorded {} machines; existing machines need no creating",
                tags.len()
            ));
            return Ok(i32::from(failed_evaluation));
        }
        Front::DryRun(machines) => {
            if !machines.is_empty() {
                build::dry_run(&machines, &ctx.nix, events).await?;
            }
            return Ok(if outcomes.map.is_empty() {
                0
            } else {
                finish(ctx, opts, events, outcomes)
            });
        }
        Front::Ran(Some(code)) => return Ok(code),
        Front::Ran(None) if selected.is_empty() && outcomes.map.is_empty() => {
            events.message("no machines to deploy");
            return Ok(0);
        }
        Front::Ran(None) => {}
    }
    let code = finish(ctx, opts, events, outcomes);
    let switched = matches!(opts.action, Action::Switch | Action::Boot);
    if code == 0 && enable_rollback && switched && !opts.build_only && !opts.copy_only {
        let d = ctx.store.lock().expect("state lock").load(&ctx.deployment.uuid)?;
        let deployed: BTreeMap<String, String> = d
            .machines()
            .filter(|r| tags.contains_key(&r.name))
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
    let (tx, rx) = unbounded_channel();
    for m in machines {
        let _ = tx.send(m);
    }
    drop(tx);
    let outcomes = Mutex::new(Outcomes::new(started));
    let build_host = build_host(ctx, opts, build)?;
    if let Some(code) = execute_stream(ctx, rx, opts, build, build_host.as_ref(), events, &outcomes).await {
        return Ok(code);
    }
    Ok(finish(
        ctx,
        opts,
        events,
        outcomes.into_inner().expect("outcomes lock"),
    ))
}

/// The build host of `--build-host`, when building.
fn build_host(ctx: &Ctx, opts: &DeployOptions, build: bool) -> Result<Option<Host>> {
    match &opts.build_host {
        Some(dest) if build => Ok(Some(Host::build_host(dest, ctx.ssh_persist)?)),
        _ => Ok(None),
    }
}

/// [`execute`] for machines as they come from `incoming`, without the
/// summary: build, first contact and copy as each comes; once all have
/// come and are copied, keys and activation (after the question of
/// `--ask`). Outcomes go to `outcomes`; Some: the exit code when it stopped
/// before activating (the question was declined).
async fn execute_stream(
    ctx: &Ctx,
    incoming: UnboundedReceiver<Machine>,
    opts: &DeployOptions,
    build: bool,
    build_host: Option<&Host>,
    events: &Events,
    outcomes: &Mutex<Outcomes>,
) -> Option<i32> {
    // Meanwhile, evaluate the keys' texts (one evaluation for all) once
    // every machine has come, if the machines are to be activated.
    let sends_keys =
        !opts.copy_only && !opts.build_only && !opts.no_keys && opts.action != Action::DryActivate;
    let (ktx, mut krx) = unbounded_channel();
    let keys_ctx = ctx.keys();
    let keys = async {
        let mut jobs = Vec::new();
        while let Some(j) = krx.recv().await {
            if sends_keys {
                jobs.push(j);
            }
        }
        let since = Instant::now();
        let k = keys::prepare(&keys_ctx, jobs).await;
        ui::timings::span("keys' evaluation", since);
        k
    };
    let ((live, _build_roots), mut machine_keys) = tokio::join!(
        front::run(ctx, incoming, opts, build, build_host, events, outcomes, ktx),
        keys
    );
    if opts.copy_only {
        let mut o = outcomes.lock().expect("outcomes lock");
        for m in &live {
            stop(events, &mut o, &m.name, "copied");
        }
        return None;
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
            return Some(1);
        }
    }

    // Activate (sending keys before and after).
    let mut with_keys = Vec::new();
    for m in live {
        match machine_keys.remove(&m.name).transpose() {
            Ok(k) => with_keys.push((m, k)),
            Err(e) => fail_machine(
                ctx,
                events,
                &mut outcomes.lock().expect("outcomes lock"),
                &m,
                Failure::of(Stage::Keys, &e),
            ),
        }
    }
    // The secrets of machines that dropped out go now.
    drop(machine_keys);
    let since = Instant::now();
    let activated = activate::run(ctx, with_keys, events, opts).await;
    ui::timings::span("activation (all machines)", since);
    let mut o = outcomes.lock().expect("outcomes lock");
    for (m, out, at) in activated {
        o.insert_at(&m.name, out, at);
    }
    None
}

fn fail(events: &Events, outcomes: &mut Outcomes, name: &str, f: Failure) {
    events.done(name, &f.result(), Some(f.message.clone()));
    outcomes.insert(name, Outcome::Failed(f));
}

/// [`fail`] for a machine that was reached: one that could not be reached
/// any more is recorded unreachable, as first contact records it.
fn fail_machine(ctx: &Ctx, events: &Events, outcomes: &mut Outcomes, m: &Machine, f: Failure) {
    record::failed(ctx, events, m.resource_id, &f);
    fail(events, outcomes, &m.name, f);
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
                Outcome::Failed(f) => (f.stage.as_str(), f.kind.word(), f.message.as_str()),
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
    let since = Instant::now();
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
        crate::state::history::Seen {
            inputs: crate::state::history::Inputs::of(&outcomes.inputs),
            running: outcomes.running.clone(),
        },
        !failed,
    );
    ui::timings::span("history", since);
    events.summary(rows, outcomes.started.elapsed().as_secs_f64());
    i32::from(failed)
}

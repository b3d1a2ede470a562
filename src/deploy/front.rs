//! The runner's first half, for machines as their evaluation yields them:
//! builds in batches (every machine that came while the previous build ran
//! goes into the next one; here or on the build host), first contact at
//! once, a machine's own build once it is reached (`buildOnTarget`), copy
//! once a machine is both built and reached. So building and copying the
//! first machines overlap with evaluating the last ones. Part of the runner
//! (mod.rs): it calls the build and copy stages.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use anyhow::Result;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::error::{Failure, Stage};
use super::types::{Ctx, DeployOptions, Machine, Outcomes};
use super::{build, copy, fail, fail_machine, stop};
use crate::host::{Host, Probe};
use crate::network::MachineInfo;
use crate::ui::Events;

/// How many SSH connections are opened at once.
const MAX_CONNECTS: usize = 64;

/// How many machines build their own systems at once: each builds with its
/// own CPUs, so all of them, within reason.
const MAX_TARGET_BUILDS: usize = 64;

/// How long a build waits for more machines once one has come: machines
/// come in bursts (cache hits all at once, a worker's results one right after
/// the other), and each Nix build has a fixed cost of a few tenths of a
/// second, so a burst should be one build, not one per machine.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

type Built = (Vec<Machine>, build::Built, Option<build::Roots>);

/// Takes machines from `incoming` until it closes; builds them (when
/// `build`), reaches and copies to them (unless only building). Each new
/// machine's name and info also go to `arrived` (for its keys). Returns the
/// machines ready to activate and the temporary GC roots of what was built
/// here (keep them until the machines' permanent roots are set; the build
/// host's are released once every machine is copied); the others' outcomes
/// are in `outcomes`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: &Ctx,
    mut incoming: UnboundedReceiver<Machine>,
    opts: &DeployOptions,
    build: bool,
    build_host: Option<&Host>,
    events: &Events,
    outcomes: &Mutex<Outcomes>,
    arrived: UnboundedSender<(String, MachineInfo)>,
) -> (Vec<Machine>, Vec<build::Roots>) {
    let failed = |name: &str, f: Failure| fail(events, &mut outcomes.lock().expect("outcomes lock"), name, f);
    let stopped = |name: &str, what: &'static str| {
        stop(events, &mut outcomes.lock().expect("outcomes lock"), name, what)
    };
    let mut open = true;
    let mut to_build: Vec<Machine> = Vec::new();
    let mut building: Option<BoxFuture<'_, Built>> = None;
    let mut to_probe: VecDeque<Machine> = VecDeque::new();
    let mut probing = FuturesUnordered::new();
    let mut probes: BTreeMap<String, Result<Probe>> = BTreeMap::new();
    // Built (or not to be built here), waiting for their first contact.
    let mut built: Vec<Machine> = Vec::new();
    // Reached, to build their own systems.
    let mut to_build_there: VecDeque<Machine> = VecDeque::new();
    let mut building_there = FuturesUnordered::new();
    let on_target = |m: &Machine| build && opts.builds_on_target(m);
    let mut to_copy: VecDeque<Machine> = VecDeque::new();
    let mut copying = FuturesUnordered::new();
    let mut ready = Vec::new();
    let mut roots = Vec::new();
    let max_copy = opts.max_concurrent_copy.max(1);
    // When the last machine came.
    let mut came = tokio::time::Instant::now();
    loop {
        // Start what can start: a build once no machine came for a moment.
        let quiet = !open || came.elapsed() >= BATCH_WINDOW;
        if building.is_none() && !to_build.is_empty() && quiet {
            let batch = std::mem::take(&mut to_build);
            building = Some(Box::pin(async move {
                let refs: Vec<&Machine> = batch.iter().collect();
                let (results, roots) = build::run(ctx, &refs, opts, build_host, events).await;
                (batch, results, roots)
            }));
        }
        while probing.len() < MAX_CONNECTS
            && let Some(m) = to_probe.pop_front()
        {
            probing.push(async move {
                events.stage(&m.name, "connecting");
                let r = copy::probe(ctx, &m, &m.toplevel, events).await;
                (m.name, r)
            });
        }
        let mut waiting = Vec::new();
        for mut m in built.drain(..) {
            match probes.remove(&m.name) {
                Some(Ok(p)) => {
                    let has_path = p.has_path;
                    m.boot_id = Some(p.boot_id.clone());
                    m.probe = Some(p);
                    if on_target(&m) && !has_path {
                        to_build_there.push_back(m);
                    } else if opts.build_only {
                        stopped(&m.name, "built");
                    } else {
                        to_copy.push_back(m);
                    }
                }
                Some(Err(e)) => failed(&m.name, Failure::of(Stage::Connect, &e)),
                None => waiting.push(m),
            }
        }
        built = waiting;
        while building_there.len() < MAX_TARGET_BUILDS
            && let Some(m) = to_build_there.pop_front()
        {
            building_there.push(async move {
                let r = build::on_target(ctx, &m, events).await;
                (m, r)
            });
        }
        while copying.len() < max_copy
            && let Some(mut m) = to_copy.pop_front()
        {
            copying.push(async move {
                let r = copy::copy_one(ctx, &mut m, events, opts, build_host).await;
                (m, r)
            });
        }
        if !open
            && building.is_none()
            && to_build.is_empty()
            && probing.is_empty()
            && to_probe.is_empty()
            && built.is_empty()
            && to_build_there.is_empty()
            && building_there.is_empty()
            && to_copy.is_empty()
            && copying.is_empty()
        {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep_until(came + BATCH_WINDOW), if building.is_none() && !to_build.is_empty() && !quiet => {},
            m = incoming.recv(), if open => match m {
                Some(m) => {
                    came = tokio::time::Instant::now();
                    // With all that came meanwhile: starting a first contact
                    // takes a while, and a burst must not be split into
                    // several builds by it.
                    let mut next = Some(m);
                    while let Some(m) = next.take().or_else(|| incoming.try_recv().ok()) {
                        let _ = arrived.send((m.name.clone(), m.info.clone()));
                        if !opts.build_only || on_target(&m) {
                            to_probe.push_back(m.clone());
                        }
                        if build && !on_target(&m) {
                            // build.rs says "building", or that it is built already.
                            to_build.push(m);
                        } else {
                            built.push(m);
                        }
                    }
                }
                None => open = false,
            },
            (batch, results, r) = async { building.as_mut().expect("a build").await }, if building.is_some() => {
                building = None;
                roots.extend(r);
                for m in batch {
                    match results.get(&m.name) {
                        Some(Ok(())) if opts.build_only => {
                            stopped(&m.name, "built");
                        }
                        Some(Ok(())) => built.push(m),
                        Some(Err(e)) => failed(&m.name, Failure::new(Stage::Build, e.clone())),
                        None => failed(&m.name, Failure::new(Stage::Build, "not built")),
                    }
                }
            },
            Some((name, r)) = probing.next(), if !probing.is_empty() => {
                probes.insert(name, r);
            },
            Some((mut m, r)) = building_there.next(), if !building_there.is_empty() => match r {
                Ok(()) => {
                    // Built there just now.
                    if let Some(p) = &mut m.probe {
                        p.has_path = true;
                    }
                    if opts.build_only {
                        stopped(&m.name, "built");
                    } else {
                        to_copy.push_back(m);
                    }
                }
                Err(e) => failed(&m.name, Failure::new(Stage::Build, e)),
            },
            Some((m, r)) = copying.next(), if !copying.is_empty() => {
                // What --check found running is what the history calls
                // the machine's system before.
                if opts.check
                    && let Some(running) = m.probe.as_ref().and_then(|p| p.current_system.clone())
                {
                    outcomes.lock().expect("outcomes lock").running.insert(m.name.clone(), running);
                }
                match r {
                Ok(copy::Copied::Ready) => ready.push(m),
                Ok(copy::Copied::AlreadyRunning) => {
                    stopped(&m.name, "already running it");
                }
                Err(e) => fail_machine(
                    ctx,
                    events,
                    &mut outcomes.lock().expect("outcomes lock"),
                    &m,
                    Failure::of(Stage::Copy, &e),
                ),
                }
            },
        }
    }
    // Every machine has its toplevel now (or has failed): the build host's
    // roots can go; those here stay until the machines' permanent roots are
    // set, unless only building.
    let mut kept = Vec::new();
    for r in roots {
        match r {
            build::Roots::Here(_) if !opts.build_only => kept.push(r),
            r => r.release(events).await,
        }
    }
    (ready, kept)
}

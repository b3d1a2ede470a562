//! Plan stage: what a deploy would change on each machine, before anything
//! changes. Each machine is asked once, over its master connection
//! ([`Host::plan`]): what it runs and boots, the closure of what it runs,
//! and, when the new system is in its store, what the new system's
//! `switch-to-configuration dry-activate` says. The new systems' closures
//! are listed here, where they were built (a plan copies nothing), and the
//! two are compared here ([`closure::diff`]). Keys are compared with what
//! state recorded of their last delivery. `nixops plan` writes nothing to
//! state either.

use std::collections::BTreeMap;

use anyhow::Result;
use futures::StreamExt;

use super::build;
use super::types::{ClosureSize, Ctx, DeployOptions, Machine, MachinePlan, Plan, PlanStatus, UnitChanges};
use crate::host::{self, DryActivation, NEEDS_REBOOT, PlanQuery, Planned};
use crate::keys::{self, KeyChanges};
use crate::network::{MachineFilter, MachineInfo, NixFiles};
use crate::nix::closure;
use crate::process::Sink;
use crate::ui::Events;

/// What `nixops plan` is asked for.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub machines: MachineFilter,
    /// Copy the new system's closure to machines that lack it, so that its
    /// dry-activate can tell the units (this writes to their stores).
    pub dry_activate: bool,
}

/// How many machines are asked at once, and copied to at once (the
/// defaults of a deploy's connections and `--max-concurrent-copy`).
const MAX_ASKS: usize = 64;
const MAX_COPIES: usize = 5;

/// `nixops plan`: evaluates and builds the selected machines and asks each
/// what it runs; no machine is activated, copied to (unless
/// `dry_activate`) or sent keys.
pub async fn run(ctx: &Ctx, opts: &PlanOptions, events: &Events) -> Result<Plan> {
    ctx.nix.check_writable("plan")?;
    let network = super::network_of(&ctx.deployment)?;
    let files = NixFiles::write()?;
    events.message(format!(
        "evaluating network of deployment ‘{}’...",
        ctx.deployment.label()
    ));
    let info = network
        .evaluate_selected(&files, &ctx.nix, &opts.machines, true)
        .await?;
    let missing = super::resources::missing(&ctx.deployment, &info.resources);
    if !missing.is_empty() {
        events.message(format!(
            "note: not made yet, so the machines are planned without them (a deploy makes them first): {}",
            missing.join(", ")
        ));
    }
    for w in super::check_supported(&ctx.deployment, &info)? {
        events.message(w);
    }
    let mut machines = Vec::new();
    for (name, m) in info.machines.iter().filter(|(_, m)| m.drv_path.is_some()) {
        if m.target_host.is_none() {
            events.message(format!(
                "skipping ‘{name}’: it has deployment.targetHost = null, so no deploy from here reaches it"
            ));
            continue;
        }
        // A plan records nothing, so a machine not in state yet needs no
        // resource id.
        let id = ctx.deployment.resources.get(name).map_or(0, |r| r.id);
        machines.push(Machine::evaluated(ctx, name, m, id, None)?);
    }
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    events.machines(&names);

    // Build here (a machine that builds its own system in a deploy too:
    // its closure is listed here), with the network's remote builders;
    // meanwhile ask every machine and read the keys.
    let build_opts = super::with_machines_file(&DeployOptions::default(), &info.network, events)?;
    let to_build: Vec<&Machine> = machines.iter().collect();
    let asking = futures::stream::iter(&machines)
        .map(|m| async move {
            let ask = PlanQuery {
                closure: true,
                dry_activate: true,
                new_closure: false,
            };
            (m.name.clone(), m.host.plan(&m.toplevel, ask).await)
        })
        .buffer_unordered(MAX_ASKS)
        .collect::<BTreeMap<_, _>>();
    let key_jobs = machines
        .iter()
        .map(|m| (m.name.clone(), m.info.clone()))
        .collect();
    let ((mut built, _build_roots), mut asked, mut keys) = tokio::join!(
        build::run(ctx, &to_build, &build_opts, None, events),
        asking,
        key_changes(ctx, key_jobs)
    );

    let planned = futures::stream::iter(machines)
        .map(|m| {
            let built = built.remove(&m.name).unwrap_or_else(|| Err("not built".into()));
            let asked = asked.remove(&m.name).expect("every machine was asked");
            let keys = keys.remove(&m.name).unwrap_or_default();
            async move {
                let always = m.info.always_activate;
                let p = match built {
                    Ok(()) => machine(ctx, &m, asked, keys, always, opts.dry_activate, events).await,
                    Err(e) => failed(&m, asked.ok(), keys, format!("build failed: {e}"), false),
                };
                // The host key it learned is not pinned (a plan writes no
                // state): the next deploy must not reuse this connection
                // but learn the key over one of its own, and pin it.
                if m.host.learned_host_key().is_some() {
                    m.host.close().await;
                }
                events.done(&m.name, p.status.as_str(), p.error.clone());
                (m.name, p)
            }
        })
        .buffer_unordered(MAX_COPIES)
        .collect::<BTreeMap<_, _>>()
        .await;
    Ok(Plan { machines: planned })
}

/// `deploy --ask`: the plan for machines that were reached and have their
/// new system in their store already (so dry-activate can always run), with
/// their keys as the deploy prepared them (gathered here, for the deploy to
/// send).
pub async fn of_ready(
    ctx: &Ctx,
    machines: &[Machine],
    keys: &mut BTreeMap<String, Result<keys::MachineKeys>>,
    always_activate: bool,
    events: &Events,
) -> Plan {
    for m in machines {
        events.stage(&m.name, "planning");
    }
    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    let gathering = keys
        .iter_mut()
        .filter(|(name, _)| names.contains(&name.as_str()))
        .map(|(name, r)| async move {
            let c = match r {
                Ok(mk) => gathered(mk).await,
                Err(e) => KeyChanges {
                    error: Some(format!("{e:#}")),
                    ..Default::default()
                },
            };
            (name.clone(), c)
        });
    let mut changes: BTreeMap<String, KeyChanges> =
        futures::future::join_all(gathering).await.into_iter().collect();
    let planned = futures::stream::iter(machines)
        .map(|m| {
            let k = changes.remove(&m.name).unwrap_or_default();
            async move {
                // The new system was copied to it, maybe from elsewhere
                // than here: its closure is listed there.
                let ask = PlanQuery {
                    closure: true,
                    dry_activate: true,
                    new_closure: true,
                };
                let asked = m.host.plan(&m.toplevel, ask).await;
                let always = always_activate || m.info.always_activate;
                (
                    m.name.clone(),
                    machine(ctx, m, asked, k, always, false, events).await,
                )
            }
        })
        .buffer_unordered(MAX_ASKS)
        .collect::<BTreeMap<_, _>>()
        .await;
    Plan { machines: planned }
}

/// A machine that could not be planned (`unreachable`: because it could
/// not be reached).
fn failed(
    m: &Machine,
    asked: Option<Planned>,
    keys: KeyChanges,
    error: String,
    unreachable: bool,
) -> MachinePlan {
    MachinePlan {
        status: if unreachable {
            PlanStatus::Unreachable
        } else {
            PlanStatus::Failed
        },
        error: Some(error),
        current: asked.as_ref().and_then(|a| a.current_system.clone()),
        profile: asked.and_then(|a| a.profile),
        new: m.toplevel.clone(),
        activate: false,
        packages: Default::default(),
        closure_size: Default::default(),
        units: unknown("the machine could not be planned"),
        keys,
    }
}

fn unknown(why: impl Into<String>) -> UnitChanges {
    UnitChanges {
        why: Some(why.into()),
        ..Default::default()
    }
}

/// One built machine's plan from its answer.
async fn machine(
    ctx: &Ctx,
    m: &Machine,
    asked: host::Result<Planned>,
    keys: KeyChanges,
    always_activate: bool,
    copy_for_units: bool,
    events: &Events,
) -> MachinePlan {
    let p = match asked {
        Ok(p) => p,
        Err(e) => {
            let unreachable = matches!(e, host::Error::Unreachable(_));
            return failed(m, None, keys, format!("{e:#}"), unreachable);
        }
    };
    let runs = p.current_system.as_deref() == Some(m.toplevel.as_str());
    let boots = p.profile.as_deref() == Some(m.toplevel.as_str());
    let recorded = ctx.deployment.resources.get(&m.name).and_then(|r| r.toplevel());
    let status = if runs && boots {
        PlanStatus::Unchanged
    } else if recorded.is_none() {
        PlanStatus::New
    } else {
        PlanStatus::Changed
    };
    let mut plan = MachinePlan {
        status,
        error: None,
        current: p.current_system.clone(),
        profile: p.profile.clone(),
        new: m.toplevel.clone(),
        activate: status != PlanStatus::Unchanged || always_activate,
        packages: Default::default(),
        closure_size: ClosureSize::default(),
        units: UnitChanges {
            known: true,
            ..Default::default()
        },
        keys,
    };
    if runs {
        // At most its boot default changes: no package, no unit.
        return plan;
    }

    events.stage(&m.name, "comparing closures");
    let listed = match p.new_closure.clone() {
        Some(c) => Ok(c),
        None => closure::of(&m.toplevel).await,
    };
    let after = match listed {
        Ok(c) => c,
        Err(e) => {
            let keys = std::mem::take(&mut plan.keys);
            return failed(m, Some(p), keys, format!("{e:#}"), false);
        }
    };
    plan.closure_size.after = Some(after.size());
    if let Some(before) = &p.closure {
        plan.closure_size.before = Some(before.size());
        plan.packages = closure::diff(before, &after);
    }

    let mut dry = p.dry_activation.clone();
    let mut why = None;
    if p.current_system.is_none() {
        why = Some("the machine runs no system yet".to_owned());
    } else if dry.is_none() && copy_for_units {
        events.stage(&m.name, "copying");
        let sink = Sink::machine(events, &m.name);
        match m
            .host
            .copy_closure(&m.toplevel, !m.info.has_fast_connection, sink)
            .await
        {
            Ok(()) => {
                events.stage(&m.name, "dry-activating");
                let ask = PlanQuery {
                    dry_activate: true,
                    ..Default::default()
                };
                match m.host.plan(&m.toplevel, ask).await {
                    Ok(q) => dry = q.dry_activation,
                    Err(e) => why = Some(format!("dry-activate could not run: {e:#}")),
                }
            }
            Err(e) => why = Some(format!("copying the new system failed: {e:#}")),
        }
    } else if dry.is_none() {
        why = Some(
            "the new system is not on the machine yet (‘nixops plan --dry-activate’ copies it there to ask its switch-to-configuration)"
                .to_owned(),
        );
    }
    plan.units = match (dry, why) {
        (Some(d), _) => units(&d),
        (None, why) => unknown(why.unwrap_or_else(|| "dry-activate did not run".into())),
    };
    plan
}

/// Reads what `switch-to-configuration dry-activate` says, in the words
/// NixOS' (Perl and Rust) versions share: "would stop the following units:
/// a, b" and the like, on its stderr.
pub fn units(d: &DryActivation) -> UnitChanges {
    if d.code == Some(NEEDS_REBOOT) {
        return UnitChanges {
            needs_reboot: true,
            ..unknown(
                "the new system takes effect only after a reboot (its init differs from the running one's; dry-activate exited 100)",
            )
        };
    }
    if d.code != Some(0) {
        let said = d.lines.iter().rev().find(|l| !l.trim().is_empty());
        return unknown(format!(
            "switch-to-configuration dry-activate failed (exit code {}){}",
            d.code.map_or_else(|| "signal".into(), |c| c.to_string()),
            said.map(|l| format!(": {}", l.trim())).unwrap_or_default()
        ));
    }
    let mut u = UnitChanges {
        known: true,
        ..Default::default()
    };
    let list = |rest: &str| -> Vec<String> {
        rest.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for line in d.lines.iter().map(|l| l.trim()) {
        let lists = [
            ("would stop the following units:", &mut u.stop),
            ("would NOT stop the following changed units:", &mut u.not_stopped),
            ("would restart the following units:", &mut u.restart),
            ("would start the following units:", &mut u.start),
            ("would reload the following units:", &mut u.reload),
        ];
        let mut matched = false;
        for (prefix, into) in lists {
            if let Some(rest) = line.strip_prefix(prefix) {
                into.extend(list(rest));
                matched = true;
                break;
            }
        }
        if matched || line.starts_with("would activate the configuration") {
            continue;
        }
        if line == "would restart systemd" {
            u.restart_systemd = true;
        } else if line.starts_with("would ") {
            u.other.push(line.to_owned());
        }
    }
    u
}

/// Every selected machine's key changes, for those that have keys
/// (declared or delivered before); the texts are evaluated once for all.
async fn key_changes(ctx: &Ctx, jobs: Vec<(String, MachineInfo)>) -> BTreeMap<String, KeyChanges> {
    let prepared = keys::prepare(&ctx.keys(), jobs).await;
    let each = prepared.into_iter().map(|(name, r)| async move {
        let c = match r {
            Ok(mut mk) => gathered(&mut mk).await,
            Err(e) => KeyChanges {
                error: Some(format!("{e:#}")),
                ..Default::default()
            },
        };
        (name, c)
    });
    futures::future::join_all(each).await.into_iter().collect()
}

/// Reads a machine's secrets (files, commands) and compares them with what
/// was delivered; the secrets stay in `mk` (dropped with it).
async fn gathered(mk: &mut keys::MachineKeys) -> KeyChanges {
    match mk.gather().await {
        Ok(()) => mk.changes(),
        Err(e) => KeyChanges {
            error: Some(format!("{e:#}")),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dry(code: i32, text: &str) -> DryActivation {
        DryActivation {
            code: Some(code),
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn dry_activate_lines_of_nixos() {
        let u = units(&dry(
            0,
            "would stop the following units: a.service, b.service
would NOT stop the following changed units: kept.service
would activate the configuration...
would restart systemd
would reload the following units: r.service
would restart the following units: x.service, y.path
would start the following units: a.service
would stop swap device: /dev/sda2
setting up /etc...",
        ));
        assert!(u.known && u.why.is_none());
        assert_eq!(u.stop, ["a.service", "b.service"]);
        assert_eq!(u.not_stopped, ["kept.service"]);
        assert_eq!(u.reload, ["r.service"]);
        assert_eq!(u.restart, ["x.service", "y.path"]);
        assert_eq!(u.start, ["a.service"]);
        assert!(u.restart_systemd && !u.needs_reboot);
        assert_eq!(u.other, ["would stop swap device: /dev/sda2"]);
    }

    #[test]
    fn dry_activate_that_did_not_say() {
        let u = units(&dry(0, "would activate the configuration..."));
        assert_eq!(
            u,
            UnitChanges {
                known: true,
                ..Default::default()
            }
        );
        let u = units(&dry(
            100,
            "Warning: the new NixOS configuration has an ‘init’ that is\nincompatible",
        ));
        assert!(!u.known && u.needs_reboot, "{u:?}");
        let u = units(&dry(1, "This is not a NixOS installation!\n"));
        assert!(!u.known && u.stop.is_empty());
        assert!(
            u.why
                .unwrap()
                .ends_with("(exit code 1): This is not a NixOS installation!")
        );
    }
}

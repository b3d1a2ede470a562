//! Activation stage: point the system profile at the new toplevel and run
//! its switch-to-configuration; reboot when asked to or when it must.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::error::{Error, Failure, Stage};
use super::types::{Ctx, DeployOptions, Machine, Outcome};
use super::{health, record};
use crate::host::{Action, Activation, Ending, Guard, NEEDS_REBOOT, When};
use crate::keys::{self, KeyTarget, MachineKeys, Phase};
use crate::process::Sink;
use crate::ui::Events;

/// Activates each machine, in waves of `--max-concurrent-activate`; a
/// machine with keys gets them before (and, for post-activation keys, after)
/// activation and again after a reboot. Its secrets are dropped as soon as
/// it is done. With stop-on-failure (the default when health checks are
/// defined), a wave with a failure ends the rollout: later machines are left
/// untouched.
pub async fn run(
    ctx: &Ctx,
    machines: Vec<(Machine, Option<MachineKeys>)>,
    events: &Events,
    opts: &DeployOptions,
) -> Vec<(Machine, Outcome, Instant)> {
    let wave_size = opts.max_concurrent_activate.unwrap_or(machines.len()).max(1);
    let stop_on_failure = opts
        .stop_on_failure
        .unwrap_or_else(|| machines.iter().any(|(m, _)| !m.info.health_checks.is_empty()));
    // Waves in name order: a rollout goes the same way every time.
    let mut machines = machines;
    machines.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut results = Vec::new();
    let mut rest = machines.into_iter();
    let mut stopped = false;
    loop {
        let wave: Vec<_> = rest.by_ref().take(wave_size).collect();
        if wave.is_empty() {
            break;
        }
        if stopped {
            for (m, _) in wave {
                events.done(&m.name, "not deployed", Some("an earlier wave failed".into()));
                results.push((m, Outcome::NotDeployed, Instant::now()));
            }
            continue;
        }
        let done = futures::future::join_all(wave.into_iter().map(|(mut m, mut k)| async move {
            let r = activate_one(ctx, &mut m, k.as_mut(), events, opts).await;
            drop(k);
            // Said as soon as it is known, and timed then: the others of
            // the wave may take longer.
            let outcome = announce(ctx, events, &m, r);
            (m, outcome, Instant::now())
        }))
        .await;
        stopped = stop_on_failure && done.iter().any(|(_, o, _)| o.is_failure());
        results.extend(done);
    }
    results
}

/// Colmena's `deployment.replaceUnknownProfiles = false`: the machine must
/// run a system that this deployer has built (it is in the local store, as
/// Colmena asks) or that this deployment put there (state or the machine's
/// own record of its activations say so); otherwise someone else deployed it
/// and it is not overwritten.
async fn check_known_system(ctx: &Ctx, m: &mut Machine, events: &Events) -> Result<()> {
    if m.probe.is_none() {
        m.probe = Some(m.host.probe(&m.toplevel, Sink::machine(events, &m.name)).await?);
    }
    let probe = m.probe.as_ref().expect("probed above");
    let Some(current) = probe.current_system.as_deref() else {
        bail!(
            "machine ‘{}’ runs no system that could be known, and has deployment.replaceUnknownProfiles = false (--force-replace-unknown-profiles deploys it anyway)",
            m.name
        );
    };
    let recorded = ctx.deployment.resources.get(&m.name).and_then(|r| r.toplevel()) == Some(current);
    let ours = probe.kept.as_ref().is_some_and(|k| {
        k.toplevel == current && k.deployment == record::activation_owner(&ctx.deployment.uuid, &m.name)
    });
    if recorded || ours || std::path::Path::new(current).exists() {
        events.log(Some(&m.name), "the running system is known");
        return Ok(());
    }
    bail!(
        "machine ‘{}’ runs {current}, which this deployer never built or deployed, and it has deployment.replaceUnknownProfiles = false: not replacing it (--force-replace-unknown-profiles deploys it anyway)",
        m.name
    )
}

/// How a machine's activation ended, shown on its line (a deployed or
/// unchanged one said so itself); a machine lost on the way is recorded
/// unreachable.
fn announce(ctx: &Ctx, events: &Events, m: &Machine, r: Result<Outcome>) -> Outcome {
    match r {
        Ok(out) => {
            match &out {
                Outcome::Stopped(what) => events.done(&m.name, what, None),
                Outcome::RolledBack(why) => events.done(&m.name, "rolled back", Some(why.clone())),
                _ => {}
            }
            out
        }
        Err(e) => {
            let f = Failure::of(Stage::Activation, &e);
            record::failed(ctx, events, m.resource_id, &f);
            events.done(&m.name, &f.result(), Some(f.message.clone()));
            Outcome::Failed(f)
        }
    }
}

fn key_target(m: &Machine) -> KeyTarget<'_> {
    KeyTarget {
        name: &m.name,
        resource_id: m.resource_id,
        host: &m.host,
    }
}

async fn activate_one(
    ctx: &Ctx,
    m: &mut Machine,
    mut keys: Option<&mut MachineKeys>,
    events: &Events,
    opts: &DeployOptions,
) -> Result<Outcome> {
    if opts.action == Action::DryActivate {
        keys = None;
    }
    if !m.info.replace_unknown_profiles && !opts.force_replace_unknown_profiles {
        check_known_system(ctx, m, events).await?;
    }
    if let Some(k) = keys.as_deref_mut() {
        events.stage(&m.name, "reading keys");
        k.gather().await.context(Error::Keys("reading keys"))?;
        keys::deliver(&ctx.keys(), &key_target(m), k, Phase::Pre, events)
            .await
            .context(Error::Keys("sending keys"))?;
    }
    events.stage(&m.name, "activating");
    let skip = !m.info.always_activate && !opts.always_activate && opts.action != Action::DryActivate;
    let runs_it = m
        .probe
        .as_ref()
        .is_some_and(|p| p.current_system.as_deref() == Some(m.toplevel.as_str()));
    if runs_it && !skip && opts.action != Action::DryActivate {
        events.log(
            Some(&m.name),
            "it runs this system already: activating it again (deployment.alwaysActivate; `nixops plan` shows what a deploy would change)",
        );
    }
    // Flush after setting the profile, and let switch-to-configuration
    // flush too (NIXOS_NO_SYNC otherwise), unless --no-sync.
    let sync = !opts.no_sync;
    // A machine that runs no system yet has nothing to go back to: a guard
    // could only pretend to roll back.
    let has_previous = m.probe.as_ref().is_none_or(|p| p.current_system.is_some());
    let guarded = opts.magic_rollback
        && m.info.magic_rollback
        && has_previous
        && matches!(opts.action, Action::Switch | Action::Test)
        && !(skip
            && m.probe
                .as_ref()
                .is_some_and(|p| p.current_system.as_deref() == Some(m.toplevel.as_str())));
    let owner = record::activation_owner(&ctx.deployment.uuid, &m.name);
    let activation = Activation {
        toplevel: &m.toplevel,
        action: opts.action,
        deployment: &owner,
        sync,
    };
    let sink = Sink {
        log_stdout: true,
        ..Sink::machine(events, &m.name)
    };
    // Activating again the system it runs, boots and kept: a guard could
    // only go back to that same system, and a confirmation would prove
    // nothing a guard could act on. The machine checks that under its
    // activation lock; otherwise the activation is guarded after all.
    let mut guarded = guarded;
    let mut reactivated = None;
    if guarded
        && runs_it
        && m.probe
            .as_ref()
            .and_then(|p| p.kept.as_ref())
            .is_some_and(|k| k.toplevel == m.toplevel)
    {
        let done = m.host.activate(&activation, When::Current, sink).await?;
        if done.not_current {
            events.log(
                Some(&m.name),
                "its system changed since first contact: activating under a guard",
            );
        } else {
            guarded = false;
            reactivated = Some(done);
        }
    }
    let (code, unchanged, guard) = if guarded {
        let wait = m.info.confirm_timeout + m.info.health_checks.max_timeout();
        let (g, activated) = m.host.activate_guarded(&activation, wait, sink).await;
        let Some(g) = g else {
            return Err(match activated {
                Err(e) => e.into(),
                Ok(_) => anyhow::anyhow!("the guard did not start"),
            });
        };
        let code = match activated {
            Ok(code) => code,
            Err(e) => {
                events.log(
                    Some(&m.name),
                    format!("lost the connection during activation: {e:#}"),
                );
                return ended(m, &g, events).await;
            }
        };
        if code != 0 && code != NEEDS_REBOOT {
            return ended(m, &g, events).await;
        }
        (Some(code), false, Some(g))
    } else {
        let done = match reactivated {
            Some(done) => done,
            None => {
                let when = if skip { When::Changed } else { When::Always };
                m.host.activate(&activation, when, sink).await?
            }
        };
        let out = &done.output;
        if opts.action == Action::DryActivate {
            if out.code != Some(0) {
                return Err(Error::Activation {
                    what: "dry activation",
                    code: fmt_code(out.code),
                    message: out.last_error(),
                }
                .into());
            }
            return Ok(Outcome::Stopped("dry-activated"));
        }
        match out.code {
            Some(0) | Some(NEEDS_REBOOT) => {}
            c => {
                return Err(Error::Activation {
                    what: "switch-to-configuration",
                    code: fmt_code(c),
                    message: out.last_error(),
                }
                .into());
            }
        }
        (out.code, done.unchanged, None)
    };

    // Exit 100: nothing was activated, the new system takes effect only
    // after a reboot (switch has made it the boot default).
    let needs_reboot = code == Some(NEEDS_REBOOT);
    let reboot = opts.force_reboot || (needs_reboot && opts.allow_reboot);
    if needs_reboot && !reboot {
        let needs = Error::NeedsReboot(m.name.clone());
        if let Some(g) = &guard {
            // Its boot default goes back too: the machine is as it was.
            m.host.roll_back(g, "needs-reboot").await.ok();
            return match ended(m, g, events).await? {
                Outcome::RolledBack(_) => Ok(Outcome::RolledBack(needs.to_string())),
                other => Ok(other),
            };
        }
        return Err(needs.into());
    }

    // Does it still work? Health checks, then (guarded) a confirmation over
    // a new SSH connection.
    let health = health::run(
        &m.host,
        m.info.health_address(),
        &m.info.health_checks,
        &m.name,
        events,
    )
    .await;
    if let Some(g) = &guard {
        if let Err(e) = &health {
            events.log(Some(&m.name), format!("{e:#}"));
            m.host.roll_back(g, "health-check-failed").await.ok();
            return match ended(m, g, events).await? {
                Outcome::RolledBack(_) => Ok(Outcome::RolledBack(format!("{e:#}"))),
                other => Ok(other),
            };
        }
        events.stage(&m.name, "confirming");
        match m.host.confirm(g).await {
            Ok(true) => {}
            Ok(false) => return ended(m, g, events).await,
            Err(e) => {
                events.log(
                    Some(&m.name),
                    format!("cannot confirm over a new SSH connection: {e:#}"),
                );
                return ended(m, g, events).await;
            }
        }
    } else {
        health?;
    }

    if opts.action.runs_new_system() && !needs_reboot {
        record::deployed(ctx, m.resource_id, &m.name, &m.toplevel)?;
    }
    if let Some(k) = keys.as_deref_mut().filter(|k| !reboot && k.has_post()) {
        keys::deliver(&ctx.keys(), &key_target(m), k, Phase::Post, events)
            .await
            .context(Error::Keys("sending keys after activation"))?;
    }
    if reboot {
        let running = reboot_and_wait(ctx, m, events, opts.reboot_timeout).await?;
        if running.as_deref() != Some(m.toplevel.as_str()) {
            return Err(Error::WrongSystemAfterReboot {
                machine: m.name.clone(),
                running: running.unwrap_or_else(|| "no system".into()),
            }
            .into());
        }
        record::deployed(ctx, m.resource_id, &m.name, &m.toplevel)?;
        // The reboot emptied /run: all keys again.
        if let Some(k) = keys {
            keys::deliver(&ctx.keys(), &key_target(m), k, Phase::All, events)
                .await
                .context(Error::Keys("sending keys after the reboot"))?;
        }
    }
    events.done(&m.name, if unchanged { "unchanged" } else { "deployed" }, None);
    Ok(if unchanged {
        Outcome::Unchanged
    } else {
        Outcome::Deployed
    })
}

/// Waits for the guard to finish, as the outcome of the machine.
async fn ended(m: &Machine, g: &Guard, events: &Events) -> Result<Outcome> {
    events.stage(&m.name, "waiting for the machine's guard");
    match m.host.guard_ending(g, events).await? {
        Ending::Kept => Err(Error::NotConfirmed.into()),
        Ending::RolledBack(why) => Ok(Outcome::RolledBack(why)),
        Ending::Superseded => Err(Error::Superseded.into()),
    }
}

fn fmt_code(code: Option<i32>) -> String {
    code.map_or_else(|| "signal".into(), |c| c.to_string())
}

/// Reboots the machine and waits until it is back: a different boot id and
/// SSH answering. Returns the system it runs then.
pub async fn reboot_and_wait(
    ctx: &Ctx,
    m: &mut Machine,
    events: &Events,
    timeout: u64,
) -> Result<Option<String>> {
    let old = match &m.boot_id {
        Some(id) => id.clone(),
        None => super::copy::probe(ctx, m, "/", events).await?.boot_id,
    };
    events.stage(&m.name, "rebooting");
    m.host.reboot().await?;
    events.stage(&m.name, "waiting for the machine to come back");
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some((id, current)) = m.host.boot_state().await?
            && id != old
        {
            m.boot_id = Some(id);
            events.log(Some(&m.name), "machine is back after reboot");
            return Ok(current);
        }
        // Whatever master we got was to the old boot or is broken.
        m.host.close().await;
        if Instant::now() > deadline {
            bail!("machine did not come back within {timeout} s after reboot");
        }
    }
}

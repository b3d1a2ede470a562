//! Build stage: every selected machine's toplevel, in one Nix build on the
//! deploying side (spread over Nix's remote builders when given some) or on
//! a build host; and machines that build their own (`buildOnTarget`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};

use super::types::{Ctx, DeployOptions, Machine};
use crate::host::Host;
use crate::nix::{self, NixOpts};
use crate::process::{self, Sink};
use crate::tmp::TmpDir;
use crate::ui::Events;

/// What keeps freshly built toplevels from garbage collection until they
/// are where they go: temporary GC roots here, or on the build host.
pub enum Roots {
    Here(#[allow(dead_code)] TmpDir),
    On(Host, String),
}

impl Roots {
    /// Gives them up: removes the build host's (this side's go with their
    /// directory when dropped).
    pub async fn release(self, events: &Events) {
        if let Roots::On(host, dir) = self
            && let Err(e) = host.remove_roots(&dir).await
        {
            events.message(format!("warning: {e:#}"));
        }
    }
}

/// Each machine's build result.
pub type Built = BTreeMap<String, Result<(), String>>;

/// Builds all toplevels at once, here or on the build host. `--keep-going`
/// is always on, so one machine's broken build does not keep the others
/// from being built; each machine's result says whether its toplevel exists
/// afterwards. The returned roots protect the build results: keep them
/// until the machines have them (and here, until their permanent roots are
/// set).
pub async fn run(
    ctx: &Ctx,
    machines: &[&Machine],
    opts: &DeployOptions,
    build_host: Option<&Host>,
    events: &Events,
) -> (Built, Option<Roots>) {
    if let Some(host) = build_host {
        return on_build_host(ctx, machines, host, events).await;
    }
    for m in machines {
        if Path::new(&m.toplevel).exists() {
            events.log(Some(&m.name), "its system is built already");
        } else {
            events.stage(&m.name, "building");
        }
    }
    let drvs: Vec<String> = machines.iter().filter_map(|m| m.drv_path.clone()).collect();
    let mut nix_opts = ctx.nix.clone();
    nix_opts.keep_going = true;
    nix_opts.builders = opts.builders.clone();
    let roots = TmpDir::new("nixops-build-");
    let since = std::time::Instant::now();
    let outcome = match &roots {
        Ok(dir) => nix::realise(&drvs, &nix_opts, dir.path(), Sink::global(events)).await,
        Err(e) => Err(nix::Error::Run(anyhow::anyhow!("{e:#}"))),
    };
    crate::ui::timings::span("nix-store --realise", since);
    let missing: Vec<&Machine> = machines
        .iter()
        .copied()
        .filter(|m| !Path::new(&m.toplevel).exists())
        .collect();
    let mut results: Built = machines.iter().map(|m| (m.name.clone(), Ok(()))).collect();
    let why = reasons(outcome.err(), &missing).await;
    for (name, reason) in why {
        results.insert(name, Err(reason));
    }
    if let Some(dir) = &opts.keep_result {
        keep(dir, machines, &mut results, events).await;
    }
    (results, roots.ok().map(Roots::Here))
}

/// `--keep-result`: a GC root `node-<name>` in `dir` for each built system
/// (a machine whose root cannot be made fails with the reason).
async fn keep(dir: &Path, machines: &[&Machine], results: &mut Built, events: &Events) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        events.message(format!("warning: cannot create {}: {e}", dir.display()));
    }
    for m in machines {
        if results.get(&m.name).is_some_and(Result::is_ok) {
            let link = dir.join(format!("node-{}", m.name));
            if let Err(e) = nix::add_root(&m.toplevel, &link).await {
                results.insert(m.name.clone(), Err(format!("keeping the result: {e:#}")));
            }
        }
    }
}

/// `--build-host`: the derivations go there, its Nix builds them all in
/// one `nix-store --realise` (with its own substituters and builders), and
/// the outputs stay there, under temporary GC roots, for the copy stage to
/// send on to the machines. Nothing is built or copied into this side's
/// store.
async fn on_build_host(
    ctx: &Ctx,
    machines: &[&Machine],
    host: &Host,
    events: &Events,
) -> (Built, Option<Roots>) {
    let fail_all = |e: String| -> Built {
        machines
            .iter()
            .map(|m| (m.name.clone(), Err(e.clone())))
            .collect()
    };
    for m in machines {
        events.stage(&m.name, "copying derivation");
    }
    let drvs: Vec<String> = machines.iter().filter_map(|m| m.drv_path.clone()).collect();
    let sink = Sink::global(events);
    match host.nix_version(Sink::quiet()).await {
        Ok(v) => events.message(format!("building on ‘{}’ ({v})", host.name)),
        Err(e) => return (fail_all(format!("{e:#}")), None),
    }
    if let Err(e) = host.copy_derivations(&drvs, sink).await {
        return (fail_all(format!("on build host ‘{}’: {e:#}", host.name)), None);
    }
    for m in machines {
        events.stage(&m.name, "building");
    }
    let mut args = ctx.nix.remote_build_args();
    args.push("--keep-going".into());
    let r = match host.realise(&drvs, &args, true, sink).await {
        Ok(r) => r,
        Err(e) => return (fail_all(format!("on build host ‘{}’: {e:#}", host.name)), None),
    };
    let missing: Vec<&Machine> = machines
        .iter()
        .copied()
        .filter(|m| r.missing.contains(&m.toplevel))
        .collect();
    let mut results: Built = machines.iter().map(|m| (m.name.clone(), Ok(()))).collect();
    for (name, reason) in reasons(r.failed.map(Into::into), &missing).await {
        results.insert(name, Err(reason));
    }
    (results, r.roots.map(|d| Roots::On(host.clone(), d)))
}

/// A machine that builds its own toplevel (`buildOnTarget`), once reached
/// and when it lacks it: the derivation's closure goes there and the
/// machine's Nix realises it, its log in the machine's log.
pub async fn on_target(ctx: &Ctx, m: &Machine, events: &Events) -> Result<(), String> {
    let drv = m
        .drv_path
        .clone()
        .expect("machines building on target have a derivation");
    let sink = Sink::machine(events, &m.name);
    // Said at once rather than as a failed copy: it has no Nix.
    let nix = m
        .host
        .nix_version(Sink::quiet())
        .await
        .map_err(|e| format!("{e:#}"))?;
    events.log(Some(&m.name), format!("building with {nix}"));
    events.stage(&m.name, "copying derivation");
    let drvs = [drv];
    m.host
        .copy_derivations(&drvs, sink)
        .await
        .map_err(|e| format!("{e:#}"))?;
    events.stage(&m.name, "building on target");
    let mut args = ctx.nix.remote_build_args();
    args.push("--keep-going".into());
    let r = m
        .host
        .realise(&drvs, &args, false, sink)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if !r.missing.contains(&m.toplevel) {
        return Ok(());
    }
    let mut why = reasons(r.failed.map(Into::into), &[m]).await;
    Err(why
        .remove(&m.name)
        .unwrap_or_else(|| "toplevel missing after build".into()))
}

/// Why each machine's toplevel is missing. One Nix build serves every
/// machine and its messages are shown once, as they come; each machine's
/// error is the first line of those about derivations it needs itself, not
/// the others' (the stage already says "build failed").
async fn reasons(err: Option<nix::Error>, missing: &[&Machine]) -> BTreeMap<String, String> {
    let failed = match &err {
        Some(nix::Error::BuildFailed(f)) => Some(f),
        _ => None,
    };
    let general = match (&err, failed) {
        (_, Some(f)) => f.0.last_error(),
        (Some(e), None) => format!("{e:#}"),
        (None, None) => "toplevel missing after build".into(),
    };
    let messages = failed.map(|f| f.messages()).unwrap_or_default();
    let own = |m: &'_ Machine| {
        let messages = &messages;
        let drv = m.drv_path.clone();
        async move {
            let needs = match (&drv, messages.is_empty()) {
                (Some(d), false) => nix::requisites(d).await.ok()?,
                _ => return None,
            };
            let mine: Vec<&Vec<String>> = messages
                .iter()
                .filter(|msg| {
                    let named = nix::derivations_named(msg);
                    !named.is_empty() && named.iter().all(|d| needs.contains(d))
                })
                .collect();
            (!mine.is_empty()).then_some(mine)
        }
    };
    let owns = futures::future::join_all(missing.iter().map(|m| own(m))).await;
    let mut why = BTreeMap::new();
    for (m, mine) in missing.iter().zip(owns) {
        let Some(mine) = mine else {
            why.insert(m.name.clone(), general.clone());
            continue;
        };
        let causes: Vec<String> = mine
            .iter()
            .filter(|msg| !is_consequence(msg))
            .map(|msg| summary(msg))
            .collect();
        let text = if causes.is_empty() {
            summary(mine[0])
        } else {
            causes.join("; ")
        };
        why.insert(m.name.clone(), text);
    }
    why
}

/// Nix's own words for a message, not the builder's log lines in it.
fn said(message: &[String]) -> impl Iterator<Item = &str> {
    message.iter().map(|l| l.trim()).filter(|l| !l.starts_with('>'))
}

/// A message that only follows from another failure (Nix 2.8: "N
/// dependencies of derivation ... failed to build", "build of ... failed";
/// later: "Cannot build ...", "Reason: N dependencies failed.").
fn is_consequence(message: &[String]) -> bool {
    said(message).any(|l| {
        l.contains("dependencies of derivation")
            || l.contains("dependency failed")
            || l.contains("dependencies failed")
            || l.contains("failed due to failed dependency")
            || l.starts_with("error: build of ")
    })
}

/// One line for a message: its first, and the reason and note Nix gives
/// below it (e.g. that a full disk may have made the builder fail).
fn summary(message: &[String]) -> String {
    let first = message[0].trim_start_matches("error:").trim();
    let below = said(message).filter(|l| l.starts_with("Reason:") || l.starts_with("note:"));
    std::iter::once(first).chain(below).collect::<Vec<_>>().join(" ")
}

/// `--dry-run`: show what would be built and fetched, build nothing.
pub async fn dry_run(machines: &[Machine], opts: &NixOpts, events: &Events) -> Result<()> {
    let mut cmd = process::command("nix-store");
    cmd.arg("--realise")
        .arg("--dry-run")
        .args(machines.iter().filter_map(|m| m.drv_path.as_ref()))
        .args(opts.common_args());
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    for l in &out.stderr {
        events.message(l.as_str());
    }
    if !out.success() {
        bail!("nix-store --dry-run failed: {}", out.last_error());
    }
    for m in machines {
        events.output(format!("{}\t{}", m.name, m.toplevel));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn messages_of_nix_2_8_and_later() {
        let old = lines("error: builder for '/nix/store/x-a.drv' failed with exit code 3");
        assert!(!is_consequence(&old));
        assert_eq!(
            summary(&old),
            "builder for '/nix/store/x-a.drv' failed with exit code 3"
        );
        assert!(is_consequence(&lines(
            "error: 1 dependencies of derivation '/nix/store/y-system.drv' failed to build"
        )));
        assert!(is_consequence(&lines(
            "error: build of '/nix/store/y-system.drv', '/nix/store/z-system.drv' failed"
        )));
        let new = lines(
            "error: Cannot build '/nix/store/x-a.drv'.
       Reason: builder failed with exit code 3.
       Output paths:
         /nix/store/x-a
       Last 1 log lines:
       > a dependency failed, says the builder",
        );
        assert!(!is_consequence(&new));
        assert_eq!(
            summary(&new),
            "Cannot build '/nix/store/x-a.drv'. Reason: builder failed with exit code 3."
        );
        assert!(is_consequence(&lines(
            "error: Cannot build '/nix/store/y-system.drv'.
       Reason: 1 dependency failed."
        )));
        let full = lines(
            "error: builder for '/nix/store/x-big.drv' failed with exit code 1
       note: build failure may have been caused by lack of free disk space",
        );
        assert_eq!(
            summary(&full),
            "builder for '/nix/store/x-big.drv' failed with exit code 1 note: build failure may have been caused by lack of free disk space"
        );
    }
}

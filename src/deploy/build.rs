//! Build stage: every selected machine's toplevel in one Nix build.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};

use super::types::{Ctx, Machine};
use crate::nix::{self, NixOpts};
use crate::process::{self, Sink};
use crate::tmp::TmpDir;
use crate::ui::Events;

/// Builds all toplevels at once. `--keep-going` is always on, so one
/// machine's broken build does not keep the others from being built; each
/// machine's result says whether its toplevel exists afterwards. The
/// returned directory holds temporary GC roots for the build results: keep
/// it until the machines' permanent roots are set.
pub async fn run(
    ctx: &Ctx,
    machines: &[Machine],
    events: &Events,
) -> (BTreeMap<String, Result<(), String>>, Option<TmpDir>) {
    for m in machines {
        events.stage(&m.name, "building");
    }
    let drvs: Vec<String> = machines.iter().filter_map(|m| m.drv_path.clone()).collect();
    let mut opts = ctx.nix.clone();
    opts.keep_going = true;
    let roots = TmpDir::new("nixops-build-");
    let outcome = match &roots {
        Ok(dir) => nix::realise(&drvs, &opts, dir.path(), Sink::global(events)).await,
        Err(e) => Err(nix::Error::Run(anyhow::anyhow!("{e:#}"))),
    };
    let missing: Vec<&Machine> = machines
        .iter()
        .filter(|m| !Path::new(&m.toplevel).exists())
        .collect();
    let mut results: BTreeMap<String, Result<(), String>> =
        machines.iter().map(|m| (m.name.clone(), Ok(()))).collect();
    let why = reasons(outcome.err(), &missing).await;
    for (name, reason) in why {
        results.insert(name, Err(reason));
    }
    (results, roots.ok())
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

/// One line for a message: its first, and the reason Nix gives below it.
fn summary(message: &[String]) -> String {
    let first = message[0].trim_start_matches("error:").trim();
    match said(message).find(|l| l.starts_with("Reason:")) {
        Some(reason) => format!("{first} {reason}"),
        None => first.to_owned(),
    }
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
    }
}

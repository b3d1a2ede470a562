//! Stage create: machines whose backend makes them (libvirtd) and that are
//! not made and up yet are made, finished, or started, before the network
//! is evaluated for good, as NixOps creates machines first: what a backend
//! records of a machine (its client key, its address) is part of its own
//! configuration and, through `nodes`, of the others'.
//!
//! Only a deploy that selects a machine state does not hold, or one such
//! machine that is not up, evaluates anything here (those machines'
//! deployment options).

use anyhow::{Context, Result};

use futures::StreamExt;

use super::types::Ctx;
use crate::backend::{self, StateWriter, Stored};
use crate::network::{Evaluator, MachineFilter, MachineInfo, NixFiles, Request};
use crate::process::Sink;
use crate::state::{Deployment, machine_state};
use crate::ui::Events;

/// How many machines are made at once.
const AT_ONCE: usize = 4;

/// Whether the machine state records as `r` is made and up.
fn made(r: &crate::state::Resource) -> bool {
    r.get("vmId").is_some() && r.state() == machine_state::UP
}

/// Whether `machine` is one its backend must make (or start) now.
pub fn needed(d: &Deployment, name: &str, info: &MachineInfo) -> bool {
    let Some(b) = backend::of(&info.target_env) else {
        return false;
    };
    b.makes_machines() && !d.resources.get(name).is_some_and(made)
}

/// Makes the selected machines that need it, several at once; whether any
/// was (then state changed, and the network is to be evaluated anew). A
/// machine that could not be made fails the deploy, naming it, once the
/// others are made.
pub async fn machines(
    ctx: &Ctx,
    names: &[String],
    files: &NixFiles,
    filter: &MachineFilter,
    events: &Events,
) -> Result<bool> {
    let d = &ctx.deployment;
    let candidates: Vec<String> = names
        .iter()
        .filter(|n| filter.may_select(n))
        .filter(|n| match d.resources.get(*n) {
            None => true,
            Some(r) => backend::of(&r.kind).is_some_and(|b| b.makes_machines()) && !made(r),
        })
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Ok(false);
    }
    let req = Request {
        include: Some(&[]),
        exclude: &[],
        toplevels: false,
        evaluate: Some(&candidates),
    };
    // Apart from the deploy's own evaluation, and around the evaluation
    // cache: what it would keep here is no machine's system.
    let mut opts = ctx.nix.clone();
    opts.eval.cache_dir = None;
    let network = super::network_of(d)?;
    let info = Evaluator::new(&network, files, &opts, None)
        .await?
        .all(&req)
        .await?;
    let mut to_make = Vec::new();
    for (name, m) in &info.machines {
        if candidates.contains(name) && filter.matches(name, &m.tags) && needed(d, name, m) {
            super::check_machine(d, name, m)?;
            to_make.push((name, m));
        }
    }
    if to_make.is_empty() {
        return Ok(false);
    }
    let failed: Vec<String> = futures::stream::iter(to_make)
        .map(|(name, m)| async move {
            machine(ctx, files, name, m, events)
                .await
                .err()
                .map(|e| format!("machine ‘{name}’: {e:#}"))
        })
        .buffer_unordered(AT_ONCE)
        .filter_map(|e| async { e })
        .collect()
        .await;
    if !failed.is_empty() {
        anyhow::bail!(
            "could not make {} (state keeps what was made; the next deploy goes on from there, ‘nixops destroy’ removes it):\n{}",
            if failed.len() == 1 {
                "a machine".to_owned()
            } else {
                format!("{} machines", failed.len())
            },
            failed.join("\n")
        );
    }
    Ok(true)
}

/// Makes one machine, or finishes or starts it.
async fn machine(ctx: &Ctx, files: &NixFiles, name: &str, info: &MachineInfo, events: &Events) -> Result<()> {
    let b = backend::for_machine(name, &info.target_env)?;
    let state = StateWriter::new(ctx.store.clone(), &ctx.deployment.uuid, name, &info.target_env);
    let load = || ctx.store.lock().expect("state lock").load(&ctx.deployment.uuid);

    let d = load()?;
    let recorded = d.resources.get(name);
    let new = recorded.is_none_or(|r| r.get("vmId").is_none());
    events.stage(name, if new { "creating" } else { "starting" });
    let changes = b.prepare(&d, name, info, recorded).await?;
    if !changes.is_empty() {
        state.set(changes)?;
    }

    // The disk's image, made from the machine's configuration (with its
    // client key authorized), for a machine not defined yet.
    let d = load()?;
    // (Its temporary GC root is kept until the image is on the disk.)
    let image = match b.image_option().filter(|_| new) {
        Some(option) => Some(image(ctx, files, &d, name, option, events).await?),
        None => None,
    };
    let image_file = image.as_ref().map(|(file, _)| file.as_path());

    let r = d.resources.get(name).context("the machine was just recorded")?;
    let stored = Stored {
        deployment: &d,
        resource: r,
    };
    b.make(stored, info, image_file, &state).await?;
    drop(image);
    events.message(format!("{name}> made and up ({})", b.describe()));
    Ok(())
}

/// Builds the machine's image option; the qcow2 file it is (or that its
/// output directory holds, as nixpkgs' make-disk-image makes it).
async fn image(
    ctx: &Ctx,
    files: &NixFiles,
    d: &Deployment,
    name: &str,
    option: &[&str],
    events: &Events,
) -> Result<(std::path::PathBuf, Option<crate::tmp::TmpDir>)> {
    let network = super::network_of(d)?;
    let path: Vec<String> = option.iter().map(|s| s.to_string()).collect();
    events.stage(name, "building image");
    let mut roots = None;
    let built = match network.option_derivation(files, &ctx.nix, name, &path).await? {
        Some(drv) => {
            let dir = roots.insert(crate::tmp::TmpDir::new("nixops-image-")?);
            let out = crate::nix::realise(&[drv], &ctx.nix, dir.path(), Sink::machine(events, name))
                .await
                .with_context(|| format!("machine ‘{name}’: building {}", path.join(".")))?;
            out.into_iter().next().context("nix-store printed no path")?
        }
        None => {
            let json = network.option(files, &ctx.nix, name, &path, true, true).await?;
            let v: Option<String> = serde_json::from_str(json.trim())
                .with_context(|| format!("machine ‘{name}’: {} is no path", path.join(".")))?;
            v.with_context(|| {
                format!(
                    "machine ‘{name}’: {} is null: the machine needs a disk image",
                    path.join(".")
                )
            })?
        }
    };
    let built = std::path::PathBuf::from(built);
    let file = if built.is_dir() {
        built.join("nixos.qcow2")
    } else {
        built
    };
    Ok((file, roots))
}

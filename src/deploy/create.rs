//! Stage create: a machine whose backend makes it (libvirtd) and that is
//! not made and up yet is made, finished, or started, before it is built.
//!
//! What the backend records first (the machine's client key) is part of the
//! machine's configuration (the physical spec authorizes it), so the machine
//! is evaluated again afterwards: only machines being made pay for that.

use anyhow::{Context, Result};

use super::types::Ctx;
use crate::backend::{self, StateWriter, Stored};
use crate::network::{MachineInfo, NixFiles, Selector};
use crate::process::Sink;
use crate::state::{Deployment, machine_state};
use crate::ui::Events;

/// Whether `machine` is one its backend must make (or start) now.
pub fn needed(d: &Deployment, name: &str, info: &MachineInfo) -> bool {
    let Some(b) = backend::of(&info.target_env) else {
        return false;
    };
    let made = d
        .resources
        .get(name)
        .is_some_and(|r| r.get("vmId").is_some() && r.state() == machine_state::UP);
    b.makes_machines() && !made
}

/// Makes the machine; returns its evaluation with what state now holds of
/// it.
pub async fn machine(
    ctx: &Ctx,
    files: &NixFiles,
    name: &str,
    info: &MachineInfo,
    events: &Events,
) -> Result<MachineInfo> {
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

    // Its system, with what is now known of it.
    let d = load()?;
    let network = super::network_of(&d)?;
    let mut evaluated = network
        .evaluate(files, &ctx.nix, Some(&[Selector::exact(name)]), &[], true)
        .await?;
    let info = evaluated
        .machines
        .remove(name)
        .with_context(|| format!("machine ‘{name}’ is no longer in the network"))?;
    Ok(info)
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

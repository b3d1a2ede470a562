//! Deployment generations (`network.enableRollback`): after every
//! successful deploy, the set of deployed toplevels becomes a new generation
//! of a per-deployment Nix profile. A generation is a store file, a JSON map
//! machine → toplevel, that references the toplevels, so the profile's
//! generations keep them from garbage collection.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::process::{self, Sink};

/// NixOps' profile location, so its generations carry over.
pub fn profile(uuid: &str) -> PathBuf {
    PathBuf::from("/nix/var/nix/profiles/per-user")
        .join(crate::nix::user_name())
        .join("nixops")
        .join(uuid)
}

const WRITE_GENERATION: &str = r#"{ generationJSON }:
builtins.toFile "nixops-generation.json"
  (builtins.toJSON (builtins.mapAttrs (_: p: if builtins.pathExists p then builtins.storePath p else p) (builtins.fromJSON generationJSON)))"#;

/// Records `machines` (name → toplevel) as a new generation. A toplevel
/// that was built elsewhere (on its machine, on a build host) is not in
/// this store: the generation names it without referencing it.
pub async fn record(uuid: &str, machines: &BTreeMap<String, String>) -> Result<u32> {
    let mut cmd = process::command("nix-instantiate");
    cmd.args(["--eval", "--read-write-mode", "--json", "-E", WRITE_GENERATION])
        .args(["--argstr", "generationJSON"])
        .arg(serde_json::to_string(machines)?);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("cannot write the generation: {}", out.last_error());
    }
    let file: String = serde_json::from_str(out.stdout.trim())?;
    let p = profile(uuid);
    std::fs::create_dir_all(p.parent().expect("profile has a parent"))?;
    let mut cmd = process::command("nix-env");
    cmd.arg("-p").arg(&p).args(["--set", &file]);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!(
            "cannot add the generation to {}: {}",
            p.display(),
            out.last_error()
        );
    }
    current(uuid)?.context("the profile has no current generation after setting it")
}

pub struct Generation {
    pub number: u32,
    pub created: std::time::SystemTime,
    pub machines: BTreeMap<String, String>,
}

fn link(uuid: &str, n: u32) -> PathBuf {
    let p = profile(uuid);
    p.with_file_name(format!("{uuid}-{n}-link"))
}

/// The generation the profile points at.
pub fn current(uuid: &str) -> Result<Option<u32>> {
    let target = match std::fs::read_link(profile(uuid)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(name
        .strip_prefix(&format!("{uuid}-"))
        .and_then(|s| s.strip_suffix("-link"))
        .and_then(|n| n.parse().ok()))
}

pub fn list(uuid: &str) -> Result<Vec<Generation>> {
    let dir = profile(uuid).parent().expect("has parent").to_owned();
    let mut gens = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(gens),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix(&format!("{uuid}-"))
            .and_then(|s| s.strip_suffix("-link"))
        else {
            continue;
        };
        let Ok(number) = n.parse() else { continue };
        gens.push(get(uuid, number)?);
    }
    gens.sort_by_key(|g| g.number);
    Ok(gens)
}

pub fn get(uuid: &str, number: u32) -> Result<Generation> {
    let l = link(uuid, number);
    let meta = std::fs::symlink_metadata(&l).with_context(|| format!("there is no generation {number}"))?;
    let text = std::fs::read_to_string(&l).with_context(|| format!("cannot read generation {number}"))?;
    let machines = serde_json::from_str(&text)
        .with_context(|| format!("generation {number} is not a nixops generation"))?;
    Ok(Generation {
        number,
        created: meta.modified()?,
        machines,
    })
}

/// Makes `number` the current generation (after a rollback).
pub async fn switch(uuid: &str, number: u32) -> Result<()> {
    nix_env(uuid, &["--switch-generation", &number.to_string()]).await
}

pub async fn delete(uuid: &str, number: u32) -> Result<()> {
    if current(uuid)? == Some(number) {
        bail!("generation {number} is the current one and cannot be deleted");
    }
    get(uuid, number)?;
    nix_env(uuid, &["--delete-generations", &number.to_string()]).await
}

async fn nix_env(uuid: &str, args: &[&str]) -> Result<()> {
    let mut cmd = process::command("nix-env");
    cmd.arg("-p").arg(profile(uuid)).args(args);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("nix-env {} failed: {}", args.join(" "), out.last_error());
    }
    Ok(())
}

/// The message for generation commands when rollback is off.
pub fn not_enabled(label: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "rollback is not enabled for deployment ‘{label}’: set ‘network.enableRollback = true;’ in the network and deploy; every deploy after that is recorded as a generation"
    )
}

use anyhow::{Context, Result};
use clap::Args;

use super::Global;

#[derive(Args, Debug)]
pub struct Opts {}

/// Opens the deployment's network files in $EDITOR.
pub fn run(g: &Global, _o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let files = d.nix_exprs()?;
    if files.is_empty() {
        anyhow::bail!("deployment ‘{}’ has no network files", d.label());
    }
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "vi".into());
    // $EDITOR may carry arguments ("code -w"), as for git.
    let mut parts = shlex::split(&editor).with_context(|| format!("cannot parse $EDITOR ({editor})"))?;
    let program = parts.remove(0);
    let mut cmd = std::process::Command::new(&program);
    crate::process::die_with_parent(&mut cmd);
    let status = cmd
        .args(parts)
        .args(&files)
        .status()
        .with_context(|| format!("cannot run editor {program}"))?;
    Ok(status.code().unwrap_or(1))
}

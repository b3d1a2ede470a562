//! Build stage: every selected machine's toplevel in one Nix build.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};

use super::{Ctx, Machine};
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
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    let err = outcome.err().map(|e| format!("{e:#}"));
    let results = machines
        .iter()
        .map(|m| {
            let r = if Path::new(&m.toplevel).exists() {
                Ok(())
            } else {
                Err(err
                    .clone()
                    .unwrap_or_else(|| "toplevel missing after build".into()))
            };
            (m.name.clone(), r)
        })
        .collect();
    (results, roots.ok())
}

/// `--dry-run`: show what would be built and fetched, build nothing.
pub async fn dry_run(machines: &[Machine], opts: &NixOpts) -> Result<()> {
    let mut cmd = process::command("nix-store");
    cmd.arg("--realise")
        .arg("--dry-run")
        .args(machines.iter().filter_map(|m| m.drv_path.as_ref()))
        .args(opts.common_args());
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    for l in &out.stderr {
        errln!("{l}");
    }
    if !out.success() {
        bail!("nix-store --dry-run failed: {}", out.last_error());
    }
    for m in machines {
        outln!("{}\t{}", m.name, m.toplevel);
    }
    Ok(())
}

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::network::NixFiles;
use crate::process::{self, Sink};

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
    /// The machines of all deployments
    #[arg(long)]
    pub all: bool,
}

/// Prints every store path of the machines' systems: the toplevels and their
/// closures (building them if needed).
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let files = NixFiles::write()?;
    let filter = o.machines.filter();
    let roots = crate::tmp::TmpDir::new("nixops-dump-")?;
    let mut toplevels = Vec::new();
    for d in g.deployments(&store, o.all)? {
        let network = crate::deploy::network_of(&d)?;
        let nix = g.nix_opts(Some(&d))?;
        let info = network.evaluate_selected(&files, &nix, &filter, true).await?;
        let drvs: Vec<String> = info
            .machines
            .values()
            .filter_map(|m| m.drv_path.clone())
            .collect();
        if !drvs.is_empty() {
            toplevels.extend(crate::nix::realise(&drvs, &nix, roots.path(), Sink::quiet()).await?);
        }
    }
    if toplevels.is_empty() {
        return Ok(0);
    }
    let mut cmd = process::command("nix-store");
    cmd.args(["--query", "--requisites"]).args(&toplevels);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("nix-store --query failed: {}", out.last_error());
    }
    let mut paths: Vec<&str> = out.stdout.lines().collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        outln!("{p}");
    }
    Ok(0)
}

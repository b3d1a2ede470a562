use anyhow::{Result, bail};
use clap::Args;

use super::Global;

#[derive(Args, Debug)]
pub struct Opts {
    /// Delete even if the deployment still has machines in state
    #[arg(long)]
    pub force: bool,
    /// Delete all deployments
    #[arg(long)]
    pub all: bool,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let targets = g.deployments(&store, o.all)?;
    for d in targets {
        let _lock = store.lock(&d.uuid)?;
        let n = d.resources.len();
        if n > 0 && !o.force {
            bail!(
                "cannot delete deployment ‘{}’ because it still has {n} resource(s) in state; destroy them first or use --force",
                d.label()
            );
        }
        store.delete_deployment(&d.uuid)?;
        crate::nix::remove_gc_roots(&d.uuid, None);
        errln!("deleted deployment ‘{}’", d.label());
    }
    Ok(0)
}

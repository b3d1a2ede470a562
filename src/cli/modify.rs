use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::state::{self, AttrChange};

#[derive(Args, Debug)]
pub struct Opts {
    /// New network files (replace the old network; or --network DIR)
    #[arg(value_name = "NIX-FILE")]
    pub files: Vec<PathBuf>,
    /// New name of the deployment
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let d = g.deployment(&store)?;
    let _lock = store.lock(&d.uuid)?;
    let mut changes: Vec<AttrChange> = Vec::new();
    let source = super::network_of_args(g, &o.files).await?;
    if let Some(s) = &source {
        changes.extend(s.attr_changes()?);
    }
    if !g.nix_path.is_empty() {
        changes.push(("nixPath".into(), Some(serde_json::to_string(&g.nix_path)?)));
    }
    if let Some(name) = &o.name {
        if !state::valid_name(name) {
            bail!("invalid deployment name ‘{name}’");
        }
        if store
            .deployments()?
            .iter()
            .any(|x| x.name() == Some(name) && x.uuid != d.uuid)
        {
            bail!("a deployment named ‘{name}’ already exists");
        }
        changes.push(("name".into(), Some(name.clone())));
    }
    if changes.is_empty() {
        bail!("nothing to modify: give network files, --network DIR, -I paths or -n NAME");
    }
    store.set_deployment_attrs(&d.uuid, &changes)?;
    if source.is_some() || !g.nix_path.is_empty() {
        super::record_network_attrs(g, &store, &d.uuid).await?;
    }
    Ok(0)
}

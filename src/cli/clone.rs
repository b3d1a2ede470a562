use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::state;

#[derive(Args, Debug)]
pub struct Opts {
    /// Name of the new deployment
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let d = g.deployment(&store)?;
    let uuid = uuid::Uuid::new_v4().to_string();
    if let Some(name) = &o.name {
        if !state::valid_name(name) {
            bail!("invalid deployment name ‘{name}’");
        }
        if store.deployments()?.iter().any(|x| x.name() == Some(name)) {
            bail!("a deployment named ‘{name}’ already exists");
        }
    }
    store.clone_deployment(&d.uuid, &uuid)?;
    // A clone without a new name would share the old one; NixOps leaves it
    // unnamed then.
    store.set_deployment_attrs(&uuid, &[("name".into(), o.name.clone())])?;
    errln!("created deployment ‘{uuid}’");
    outln!("{uuid}");
    Ok(0)
}

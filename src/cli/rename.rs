use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::state;

#[derive(Args, Debug)]
pub struct Opts {
    /// Current name (or UUID) of the deployment
    pub from: String,
    /// New name
    pub to: String,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let all = store.deployments()?;
    let d = state::resolve(&all, Some(&o.from))?;
    if !state::valid_name(&o.to) {
        bail!("invalid deployment name ‘{}’", o.to);
    }
    if all
        .iter()
        .any(|x| x.name() == Some(o.to.as_str()) && x.uuid != d.uuid)
    {
        bail!("a deployment named ‘{}’ already exists", o.to);
    }
    let _lock = store.lock(&d.uuid)?;
    store.set_deployment_attrs(&d.uuid, &[("name".into(), Some(o.to.clone()))])?;
    Ok(0)
}

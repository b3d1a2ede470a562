use anyhow::Result;
use clap::Args;

use super::Global;
use crate::state;

#[derive(Args, Debug)]
pub struct Opts {
    /// Export all deployments
    #[arg(long)]
    pub all: bool,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let ds = g.deployments(&store, o.all)?;
    let mut out = serde_json::Map::new();
    for d in &ds {
        out.insert(d.uuid.clone(), state::export(d, &store.history(&d.uuid)?)?);
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

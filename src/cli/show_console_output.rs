//! `show-console-output`: a machine's console, as NixOps shows it. Only
//! machines a backend created have one it can read; an existing machine's
//! says so, as NixOps says it.

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::select;

#[derive(Args, Debug)]
pub struct Opts {
    /// The machine
    #[arg(add = super::completions::machine())]
    pub machine: String,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let m = select::stored_one(&d, g.ssh_persist, &o.machine)?;
    let b = crate::backend::for_machine(&m.name, &m.resource.kind)?;
    let stored = crate::backend::Stored {
        deployment: &d,
        resource: &m.resource,
    };
    out!("{}", b.console_output(stored).await?);
    Ok(0)
}

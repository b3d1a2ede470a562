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

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    select::stored_one(&d, g.ssh_persist, &o.machine)?;
    out!("(not available for this machine type)\n");
    Ok(0)
}

//! `list-plugins`: NixOps 2.0 lists its installed plugins. This tool has
//! none to install: its backends are built in, and it says which.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct Opts {}

pub fn run(_o: Opts) -> Result<i32> {
    outln!("No plugins: this nixops has its backends built in.");
    outln!("targetEnv none: existing machines reached over SSH (NixOps' own backend)");
    Ok(0)
}

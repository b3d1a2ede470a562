//! `list-plugins`: NixOps 2.0 lists its installed plugins. This tool has
//! none to install: its backends are built in, and it says which.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct Opts {}

pub fn run(_o: Opts) -> Result<i32> {
    outln!("No plugins: this nixops has its backends built in.");
    for b in crate::backend::all() {
        outln!("targetEnv {}: {}", b.target_env(), b.describe());
    }
    Ok(0)
}

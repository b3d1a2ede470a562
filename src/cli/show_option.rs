use anyhow::Result;
use clap::Args;

use super::Global;
use crate::network::{NixFiles, split_option_path};

#[derive(Args, Debug)]
pub struct Opts {
    /// The machine
    #[arg(add = super::completions::machine())]
    pub machine: String,
    /// The option, e.g. services.nginx.enable
    pub option: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// Include what NixOps adds to every machine from state (its physical
    /// spec: `nixops show-physical`), as a deploy does
    #[arg(long)]
    pub include_physical: bool,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let network = crate::deploy::network_of(&d)?;
    let path = split_option_path(&o.option)?;
    let files = NixFiles::write()?;
    let value = network
        .option(
            &files,
            &g.nix_opts(Some(&d))?,
            &o.machine,
            &path,
            o.json,
            o.include_physical,
        )
        .await?;
    outln!("{}", value.trim_end());
    Ok(0)
}

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::select;
use crate::process::Sink;

#[derive(Args, Debug)]
pub struct Opts {
    /// The machine to copy to
    #[arg(add = super::completions::machine())]
    pub machine: String,
    /// The store path whose closure is copied
    pub path: String,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let m = select::stored_one(&d, g.ssh_persist, &o.machine)?;
    let sink = Sink {
        print_prefix: Some(&m.name),
        ..Sink::quiet()
    };
    m.host
        .copy_closure(&o.path, !m.info.has_fast_connection, sink)
        .await?;
    Ok(0)
}

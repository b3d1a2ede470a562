use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::deploy::select;

/// NixOps' arguments: `--from` or `--to` (flags), then the machine, the
/// source and the destination; so `scp web --to a b` and `scp --to web a b`
/// both work, as with NixOps.
#[derive(Args, Debug)]
#[group(required = true, multiple = false, id = "direction")]
pub struct Direction {
    /// Copy from the machine
    #[arg(long)]
    pub from: bool,
    /// Copy to the machine
    #[arg(long)]
    pub to: bool,
}

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub direction: Direction,
    /// The machine
    #[arg(add = super::completions::machine())]
    pub machine: String,
    /// Source path
    pub source: String,
    /// Destination path
    pub destination: String,
}

/// Copies files with scp over the machine's master connection.
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let m = select::stored_one(&d, g.ssh_persist, &o.machine)?;
    let ssh = m.ride_master().await?;
    let remote = |p: &str| format!("{}:{}", m.target().destination(), p);
    let (src, dst) = match (o.direction.from, o.direction.to) {
        (true, false) => (remote(&o.source), o.destination.clone()),
        (false, true) => (o.source.clone(), remote(&o.destination)),
        _ => bail!("exactly one of --from and --to must be given"),
    };
    errln!("{src} -> {dst}");
    let mut cmd = crate::process::command("scp");
    cmd.arg("-r").args(ssh).arg(src).arg(dst);
    tracing::debug!("running: {}", crate::process::describe(&cmd));
    let status = cmd.status().await?;
    Ok(status.code().unwrap_or(1))
}

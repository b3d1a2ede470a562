use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::deploy::select;
use crate::process::Sink;

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
    // Open (or reuse) the master; scp then rides on it, so the user's ssh
    // options, port and pinned host key apply as for every other command.
    let out = m.host.run("true", &[], None, Sink::quiet()).await?;
    if !out.success() {
        return Err(m.host.failure("connecting", &out).into());
    }
    let remote = |p: &str| format!("{}:{}", m.target().destination(), p);
    let (src, dst) = match (o.direction.from, o.direction.to) {
        (true, false) => (remote(&o.source), o.destination.clone()),
        (false, true) => (o.source.clone(), remote(&o.destination)),
        _ => bail!("exactly one of --from and --to must be given"),
    };
    errln!("{src} -> {dst}");
    let mut cmd = crate::process::command("scp");
    cmd.args(["-r", "-o", "ControlMaster=no", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!("ControlPath={}", m.target().control_path().display()));
    if let Some(p) = m.target().port {
        cmd.arg("-P").arg(p.to_string());
    }
    cmd.arg(src).arg(dst);
    tracing::debug!("running: {}", crate::process::describe(&cmd));
    let status = cmd.status().await?;
    Ok(status.code().unwrap_or(1))
}

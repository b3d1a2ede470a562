//! `mount MACHINE[:PATH] DEST` (NixOps'): a directory of the machine
//! mounted here with sshfs, over the machine's master connection (so the
//! pinned host key, port and the user's ssh options apply).

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::deploy::select;

#[derive(Args, Debug)]
pub struct Opts {
    /// The machine, and the directory on it (default: /)
    #[arg(value_name = "MACHINE[:PATH]", add = super::completions::machine())]
    pub machine: String,
    /// Where to mount it here
    #[arg(value_name = "PATH")]
    pub destination: String,
    /// An option for sshfs (as sshfs's -o), e.g. -o ro
    #[arg(short = 'o', long = "sshfs-option", value_name = "OPTION")]
    pub sshfs_option: Vec<String>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let (name, path) = match o.machine.split_once(':') {
        Some((n, p)) if !p.is_empty() => (n, p),
        Some((n, _)) => (n, "/"),
        None => (o.machine.as_str(), "/"),
    };
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let m = select::stored_one(&d, g.ssh_persist, name)?;
    let ssh = m.ride_master().await?;
    let mut cmd = crate::process::command("sshfs");
    cmd.arg(format!("{}:{}", m.target().destination(), path))
        .arg(&o.destination)
        .args(ssh);
    for opt in &o.sshfs_option {
        cmd.arg("-o").arg(opt);
    }
    tracing::debug!("running: {}", crate::process::describe(&cmd));
    // sshfs goes into the background once the file system is mounted.
    let status = match cmd.status().await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mount needs sshfs, which is not installed (Debian: apt install sshfs)")
        }
        Err(e) => bail!("cannot run sshfs: {e}"),
    };
    Ok(status.code().unwrap_or(1))
}

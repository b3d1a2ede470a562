use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::select;

#[derive(Args, Debug)]
pub struct Opts {
    /// The machine to log in to
    #[arg(add = super::completions::machine())]
    pub machine: String,
    /// Do not take the deployment's lock first (NixOps'; ssh never takes it)
    #[arg(long)]
    pub now: bool,
    /// A command to run instead of a shell (after `--`)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Logs in to a machine (or runs a command there) with the deployment's
/// host, port, user, options and pinned host key; its exit code is ours.
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let d = g.deployment(&store)?;
    let m = select::stored_one(&d, g.ssh_persist, &o.machine)?;
    let mut cmd = crate::process::command("ssh");
    cmd.args(m.target().options()?);
    if o.command.is_empty() && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        cmd.arg("-t");
    }
    cmd.arg(m.target().destination());
    if !o.command.is_empty() {
        cmd.arg("--").args(&o.command);
    }
    tracing::debug!("running: {}", crate::process::describe(&cmd));
    let status = cmd.status().await?;
    if let Some(key) = m.target().learned_host_key() {
        let attr = crate::backend::host_key_attr(&m.resource);
        store.set_resource_attrs(m.resource.id, &[(attr.into(), Some(key))])?;
    }
    Ok(status.code().unwrap_or(255))
}

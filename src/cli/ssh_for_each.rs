use anyhow::{Result, bail};
use clap::Args;
use futures::StreamExt;

use super::Global;
use crate::deploy::select;
use crate::process::Sink;

#[derive(Args, Debug)]
pub struct Opts {
    /// Run on all machines at once
    #[arg(short = 'p', long)]
    pub parallel: bool,
    #[command(flatten)]
    pub machines: super::Selection,
    /// Run it on the machines of all deployments
    #[arg(long)]
    pub all: bool,
    /// The command (after `--`)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs a command on every selected machine as its SSH user; output lines are
/// prefixed with the machine's name. Non-zero if it failed anywhere.
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    if o.command.is_empty() {
        bail!("no command given (put it after --)");
    }
    let store = g.read_store()?;
    let mut machines = Vec::new();
    for d in g.deployments(&store, o.all)? {
        machines.extend(select::stored_in(&d, g.ssh_persist, &o.machines.filter())?);
    }
    let hosts: Vec<(&str, &crate::host::Host)> =
        machines.iter().map(|m| (m.name.as_str(), &m.host)).collect();
    let width = if o.parallel { machines.len().max(1) } else { 1 };
    Ok(run_on(&hosts, &o.command.join(" "), width).await)
}

/// Runs `script` on each machine as its SSH user, `width` machines at once;
/// output lines are prefixed with the machine's name. The exit code: 1 when
/// it failed anywhere (each such machine named).
pub async fn run_on(machines: &[(&str, &crate::host::Host)], script: &str, width: usize) -> i32 {
    let results: Vec<(String, Option<i32>)> = futures::stream::iter(machines)
        .map(|(name, host)| async move {
            let sink = Sink {
                print_prefix: Some(name),
                ..Sink::quiet()
            };
            let code = host.run_as_user(script, sink).await.ok().and_then(|o| o.code);
            (name.to_string(), code)
        })
        .buffered(width.max(1))
        .collect()
        .await;
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, c)| *c != Some(0))
        .map(|(n, c)| format!("‘{n}’ (exit code {})", c.map_or("none".into(), |c| c.to_string())))
        .collect();
    if failed.is_empty() {
        0
    } else {
        errln!("error: the command failed on {}", failed.join(", "));
        1
    }
}

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
    let script = o.command.join(" ");
    let width = if o.parallel { machines.len().max(1) } else { 1 };
    let results: Vec<(String, Option<i32>)> = futures::stream::iter(&machines)
        .map(|m| {
            let script = &script;
            async move {
                let sink = Sink {
                    print_prefix: Some(&m.name),
                    ..Sink::quiet()
                };
                let code = m.host.run_as_user(script, sink).await.ok().and_then(|o| o.code);
                (m.name.clone(), code)
            }
        })
        .buffered(width)
        .collect()
        .await;
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, c)| *c != Some(0))
        .map(|(n, c)| format!("‘{n}’ (exit code {})", c.map_or("none".into(), |c| c.to_string())))
        .collect();
    if failed.is_empty() {
        Ok(0)
    } else {
        errln!("error: the command failed on {}", failed.join(", "));
        Ok(1)
    }
}

//! Colmena's `exec`: run a command on the selected machines, as their SSH
//! user, reached as the network says now (no deploy needed first).

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::{record, select};
use crate::network::{MachineFilter, NixFiles};

#[derive(Args, Debug)]
pub struct Opts {
    /// Machines to run it on, comma-separated: names, globs, @tags
    #[arg(long, value_name = "NODES", value_delimiter = ',', help_heading = super::heading::SELECTION, add = super::completions::selector())]
    pub on: Vec<String>,
    /// Machines to run it on at once (0: all)
    #[arg(short = 'p', long, value_name = "LIMIT", default_value_t = 0)]
    pub parallel: usize,
    /// Accepted as in Colmena: output is always printed line by line
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// The command (best after --: nixops exec --on @web -- uptime)
    #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let (d, nix) = g.hive_view().await?;
    let network = crate::deploy::network_of(&d)?;
    let files = NixFiles::write()?;
    let info = network.deployment_options(&files, &nix).await?;
    let filter = MachineFilter::new(&o.on, &[]);
    let mut hosts = Vec::new();
    for (name, m) in select::reachable(&info, &filter)? {
        hosts.push((
            name.as_str(),
            record::host(&d, name, m, d.resources.get(name), g.ssh_persist)?,
        ));
    }
    if hosts.is_empty() {
        errln!("no machines selected");
        return Ok(0);
    }
    let width = if o.parallel == 0 { hosts.len() } else { o.parallel };
    let refs: Vec<(&str, &crate::host::Host)> = hosts.iter().map(|(n, h)| (*n, h)).collect();
    Ok(super::ssh_for_each::run_on(&refs, &o.command.join(" "), width).await)
}

//! `apply-local` (as in Colmena): deploy the machine nixops runs on, without
//! SSH. The same pipeline as `deploy` (evaluation, build, keys, activation,
//! state), with the machine reached as a local host; no magic rollback (a
//! confirmation over a new connection proves nothing here).

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use super::Global;
use crate::deploy::{self, Action, DeployOptions};
use crate::host::Local;
use crate::network::{MachineFilter, NixFiles, Selector};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Goal {
    /// Activate now and make it the boot default
    Switch,
    /// Make it the boot default only
    Boot,
    /// Activate now only
    Test,
    /// Show what activation would do
    DryActivate,
}

#[derive(Args, Debug)]
pub struct Opts {
    /// What to do with the new system
    #[arg(value_enum, default_value = "switch")]
    pub goal: Goal,
    /// The machine of the network this one is (default: the one named like
    /// this machine's host name)
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Activate through the machine's privilegeEscalationCommand (sudo) when
    /// not run as root
    #[arg(long)]
    pub sudo: bool,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let root = rustix::process::geteuid().is_root();
    if !root && !o.sudo {
        bail!("apply-local changes this machine's system: run it as root, or with --sudo");
    }
    let session = g.session()?;
    let (d, nix) = (&session.ctx.deployment, &session.ctx.nix);
    let network = deploy::network_of(d)?;
    let files = NixFiles::write()?;
    let none: &[Selector] = &[];
    let info = network.evaluate(&files, nix, Some(none), &[], false).await?;
    let node = match o.node {
        Some(n) if info.machines.contains_key(&n) => n,
        Some(n) => bail!("deployment ‘{}’ has no machine named ‘{n}’", d.label()),
        None => this_machine(&info.machines, d.label())?,
    };
    let escalation = if root {
        Vec::new()
    } else {
        info.machines[&node].privilege_escalation_command.clone()
    };
    let opts = DeployOptions {
        machines: MachineFilter {
            include: vec![Selector::exact(&node)],
            exclude: vec![],
        },
        action: match o.goal {
            Goal::Switch => Action::Switch,
            Goal::Boot => Action::Boot,
            Goal::Test => Action::Test,
            Goal::DryActivate => Action::DryActivate,
        },
        max_concurrent_copy: 1,
        local: Some(Local { escalation }),
        ..Default::default()
    };
    deploy::run(&session.ctx, opts).await
}

/// The machine whose name (or its first label, or its targetHost) is this
/// machine's host name.
fn this_machine(
    machines: &std::collections::BTreeMap<String, crate::network::MachineInfo>,
    deployment: &str,
) -> Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_owned();
    let first = |s: &str| s.split('.').next().unwrap_or(s).to_owned();
    let found: Vec<&String> = machines
        .iter()
        .filter(|(n, m)| **n == host || first(n) == host || m.target_host == host)
        .map(|(n, _)| n)
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(
            "no machine of deployment ‘{deployment}’ is named like this machine (‘{host}’); say which one it is with --node NAME"
        ),
        many => bail!(
            "several machines of deployment ‘{deployment}’ match this machine (‘{host}’): {}; say which one it is with --node NAME",
            many.iter()
                .map(|n| format!("‘{n}’"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

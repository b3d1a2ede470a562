//! `apply-local` (as in Colmena): deploy the machine nixops runs on, without
//! SSH. The same pipeline as `deploy` (evaluation, build, keys, activation,
//! state), with the machine reached as a local host; no magic rollback (a
//! confirmation over a new connection proves nothing here).

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Global;
use super::apply::Goal;
use crate::deploy::{self, Action, DeployOptions};
use crate::host::Local;
use crate::network::{MachineFilter, NixFiles, Selector};

#[derive(Args, Debug)]
pub struct Opts {
    /// What to do with the new system: switch, boot, test, dry-activate;
    /// build (only build it), push (the same here: the system is already in
    /// this machine's store), keys (send its keys only)
    #[arg(value_enum, default_value = "switch")]
    pub goal: Goal,
    /// The machine of the network this one is (default: the one named like
    /// this machine's host name)
    #[arg(long, value_name = "NAME", add = super::completions::machine())]
    pub node: Option<String>,
    /// Activate through the machine's privilegeEscalationCommand (sudo) when
    /// not run as root
    #[arg(long)]
    pub sudo: bool,
    /// Print every line of output instead of the live display
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Send no deployment.keys
    #[arg(long)]
    pub no_keys: bool,
    /// Removed in Colmena: set deployment.privilegeEscalationCommand instead
    #[arg(long, value_name = "COMMAND", hide = true)]
    pub sudo_command: Option<String>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    if o.sudo_command.is_some() {
        bail!(
            "--sudo-command was removed (as in Colmena): set deployment.privilegeEscalationCommand in the machine's configuration, and give --sudo"
        );
    }
    if o.no_keys && o.goal == Goal::Keys {
        bail!("--no-keys cannot be used when the goal is to upload keys");
    }
    let root = rustix::process::geteuid().is_root();
    let builds_only = matches!(o.goal, Goal::Build | Goal::Push);
    if !root && !o.sudo && !builds_only {
        bail!("apply-local changes this machine's system: run it as root, or with --sudo");
    }
    if o.verbose || o.sudo {
        // An interactive sudo cannot ask under a live display.
        crate::ui::force_plain();
    }
    let session = g.hive_session().await?;
    let (d, nix) = (&session.ctx.deployment, &session.ctx.nix);
    let network = deploy::network_of(d)?;
    let files = NixFiles::write()?;
    let info = network.deployment_options(&files, nix).await?;
    let node = match o.node {
        Some(n) if info.machines.contains_key(&n) => n,
        Some(n) => bail!("deployment ‘{}’ has no machine named ‘{n}’", d.label()),
        None => this_machine(&info.machines, d.label())?,
    };
    let m = &info.machines[&node];
    if !m.allow_local_deployment {
        bail!(
            "machine ‘{node}’ does not allow local deployment: set deployment.allowLocalDeployment = true in its configuration (as Colmena asks)"
        );
    }
    let escalation = if root {
        Vec::new()
    } else {
        m.privilege_escalation_command.clone()
    };
    let local = Local { escalation };
    if o.goal == Goal::Keys {
        let started = std::time::Instant::now();
        let id = deploy::record::Recorder::new(&session.ctx)
            .machine(&session.ctx, &node, m)?
            .with_context(|| format!("machine ‘{node}’ is not in state"))?;
        let host = crate::host::Host::local(&node, local);
        let target = crate::keys::KeyTarget {
            name: &node,
            resource_id: id,
            host: &host,
        };
        return super::send_keys::send(&session.ctx, &[target], started).await;
    }
    if o.goal == Goal::Push {
        errln!(
            "note: push copies nothing in apply-local (the system is built into this machine's store); building only"
        );
    }
    let opts = DeployOptions {
        machines: MachineFilter {
            include: vec![Selector::exact(&node)],
            exclude: vec![],
        },
        action: match o.goal {
            Goal::Boot => Action::Boot,
            Goal::Test => Action::Test,
            Goal::DryActivate => Action::DryActivate,
            _ => Action::Switch,
        },
        build_only: builds_only,
        no_keys: o.no_keys,
        max_concurrent_copy: 1,
        local: Some(local),
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
        .filter(|(n, m)| **n == host || first(n) == host || m.target_host.as_deref() == Some(host.as_str()))
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

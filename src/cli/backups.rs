//! NixOps' backup commands: `backup`, `backup-status`, `remove-backup`,
//! `clean-backups`, `restore`. NixOps' backups are snapshots of cloud
//! machines' volumes (EBS snapshots of ec2 machines). The machines this
//! tool deploys are existing ones (targetEnv none), which have no volumes
//! it could snapshot: each command refuses, naming the machines and why,
//! rather than accepting the arguments and doing nothing.

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::deploy::select;

#[derive(Args, Debug)]
pub struct BackupOpts {
    #[command(flatten)]
    pub machines: super::Selection,
    /// Freeze file systems that support it while snapshotting
    #[arg(long)]
    pub freeze: bool,
    /// Back up even machines that are not up
    #[arg(long)]
    pub force: bool,
    /// Only these devices
    #[arg(long, num_args = 1.., value_name = "DEVICE-NAME")]
    pub devices: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatusOpts {
    /// The backup (default: the latest)
    pub backup_id: Option<String>,
    #[command(flatten)]
    pub machines: super::Selection,
    /// Wait until the backups are complete
    #[arg(long)]
    pub wait: bool,
    /// Only the latest backup
    #[arg(long)]
    pub latest: bool,
}

#[derive(Args, Debug)]
pub struct RemoveOpts {
    /// The backup to remove
    pub backup_id: String,
    /// Keep the snapshots themselves
    #[arg(long)]
    pub keep_physical: bool,
}

#[derive(Args, Debug)]
pub struct CleanOpts {
    /// How many backups to keep
    #[arg(long)]
    pub keep: Option<u32>,
    /// Keep backups of the last N days
    #[arg(long, value_name = "N")]
    pub keep_days: Option<u32>,
    /// Keep the snapshots themselves
    #[arg(long)]
    pub keep_physical: bool,
}

#[derive(Args, Debug)]
pub struct RestoreOpts {
    /// The backup (default: the latest)
    #[arg(long)]
    pub backup_id: Option<String>,
    #[command(flatten)]
    pub machines: super::Selection,
    /// Only these devices
    #[arg(long, num_args = 1.., value_name = "DEVICE-NAME")]
    pub devices: Vec<String>,
}

/// Refuses `command` for the selected machines, saying why.
pub fn refuse(g: &Global, command: &str, selection: Option<&super::Selection>) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let filter = selection.map(super::Selection::filter).unwrap_or_default();
    let machines = select::stored_in(&d, g.ssh_persist, &filter)?;
    let names: Vec<String> = machines
        .iter()
        .map(|m| format!("‘{}’ ({})", m.name, m.resource.kind))
        .collect();
    if names.is_empty() {
        bail!(
            "{command}: deployment ‘{}’ has no machines, so no backups",
            d.label()
        );
    }
    // What each kind of machine does instead, once per kind.
    let mut instead: Vec<&str> = Vec::new();
    for m in &machines {
        let hint = crate::backend::of(&m.resource.kind).map_or(
            "whose disks this tool cannot snapshot: back them up with tools on the machines",
            |b| b.backups(),
        );
        if !instead.contains(&hint) {
            instead.push(hint);
        }
    }
    bail!(
        "{command}: NixOps' backups are snapshots of cloud machines' volumes (EBS snapshots of ec2 machines), which this tool does not make; {}: {}",
        names.join(", "),
        instead.join("; ")
    )
}

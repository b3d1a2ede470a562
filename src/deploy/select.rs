//! Choosing machines: `--include` / `--exclude`, and the machines of a
//! deployment as state records them (for commands that do not evaluate).

use anyhow::{Result, bail};

use super::{Machine, record};
use crate::network::MachineInfo;
use crate::ssh::Target;
use crate::state::{Deployment, Resource};

pub fn matches(name: &str, include: &[String], exclude: &[String]) -> bool {
    (include.is_empty() || include.iter().any(|i| i == name)) && !exclude.iter().any(|e| e == name)
}

/// A machine known from state, with how to reach it.
pub struct StoredMachine {
    pub name: String,
    pub resource: Resource,
    pub info: MachineInfo,
    pub target: Target,
}

/// The deployment's machines in state, selected by include/exclude; names
/// that match no machine are an error.
pub fn stored_in(
    d: &Deployment,
    persist: u64,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<StoredMachine>> {
    for n in include.iter().chain(exclude) {
        if !d.machines().any(|r| &r.name == n) {
            bail!("deployment ‘{}’ has no machine named ‘{n}’", d.label());
        }
    }
    let mut out = Vec::new();
    for r in d.machines().filter(|r| matches(&r.name, include, exclude)) {
        let info = record::stored_info(r)?;
        let target = Target::new(
            &d.uuid,
            &r.name,
            &info.target_host,
            info.target_port.map(|p| p as u16),
            &info.target_user,
            info.ssh_options.clone(),
            info.privilege_escalation_command.clone(),
            r.get("publicHostKey").map(str::to_owned),
            persist,
        )?;
        out.push(StoredMachine {
            name: r.name.clone(),
            resource: r.clone(),
            info,
            target,
        });
    }
    Ok(out)
}

impl StoredMachine {
    /// The machine as the pipeline stages take it, to run `toplevel`.
    pub fn into_machine(self, toplevel: String) -> Machine {
        Machine {
            name: self.name,
            resource_id: self.resource.id,
            info: self.info,
            toplevel,
            drv_path: None,
            target: self.target,
            boot_id: None,
        }
    }
}

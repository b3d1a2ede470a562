//! Choosing machines: `--include` / `--exclude`, and the machines of a
//! deployment as state records them (for commands that do not evaluate).

use anyhow::Result;

use super::record;
use super::types::Machine;
use crate::host::Host;
use crate::network::{MachineFilter, MachineInfo, NetworkInfo, Selector};
use crate::state::{Deployment, Resource};

/// A machine known from state, with how to reach it.
pub struct StoredMachine {
    pub name: String,
    pub resource: Resource,
    pub info: MachineInfo,
    pub host: Host,
}

/// What is said of a machine that only `apply-local` deploys (Colmena's
/// `deployment.targetHost = null`) when a command over SSH skips it.
pub fn skipped_local_only(name: &str) -> String {
    format!(
        "skipping ‘{name}’: it has deployment.targetHost = null, so it is deployed only on itself (‘nixops apply-local --node {name}’)"
    )
}

/// The evaluated machines `filter` selects that can be reached over SSH
/// (a selector that matches none is an error); the others are skipped
/// with a note.
pub fn reachable<'a>(
    info: &'a NetworkInfo,
    filter: &MachineFilter,
) -> Result<Vec<(&'a String, &'a MachineInfo)>> {
    filter.check_used(info.machines.iter().map(|(n, m)| (n.as_str(), m.tags.as_slice())))?;
    let mut out = Vec::new();
    for (name, m) in info.machines.iter().filter(|(n, m)| filter.matches(n, &m.tags)) {
        if m.target_host.is_none() {
            errln!("{}", skipped_local_only(name));
            continue;
        }
        out.push((name, m));
    }
    Ok(out)
}

/// One machine of the deployment, by exact name.
pub fn stored_one(d: &Deployment, persist: u64, name: &str) -> Result<StoredMachine> {
    let filter = MachineFilter {
        include: vec![Selector::exact(name)],
        exclude: vec![],
    };
    Ok(stored_in(d, persist, &filter)?
        .pop()
        .expect("an exact selector that matched selects one"))
}

/// The machines in state that `filter` selects, for a command that reaches
/// none itself (its backend does what it does: destroy), so that a
/// machine not made yet, with no address, is one too.
pub fn stored_resources_in(d: &Deployment, filter: &MachineFilter) -> Result<Vec<Resource>> {
    Ok(selected(d, filter)?.into_iter().map(|(r, _)| r).collect())
}

/// The deployment's machines in state that `filter` selects (by name, glob
/// or the tags state recorded); a selector that matches none is an error.
fn selected(d: &Deployment, filter: &MachineFilter) -> Result<Vec<(Resource, MachineInfo)>> {
    let mut all = Vec::new();
    for r in d.machines() {
        // One without an address (Colmena's targetHost = null) is reached
        // by nothing here; naming it says why.
        if r.kind == "none" && r.get("targetHost").is_none() && !filter.names_exactly(&r.name) {
            continue;
        }
        all.push((r, record::stored_info(r)?));
    }
    // State knows the machines deployed, not the network's: a name it does
    // not know may be a machine never deployed, or a typo.
    let named = filter.include.iter().chain(&filter.exclude);
    let plain = |s: &&Selector| !s.tag && !s.text.contains(['*', '?', '[']);
    if let Some(s) = named.filter(plain).find(|s| !d.resources.contains_key(&s.text)) {
        let deployed: Vec<&str> = d.machines().map(|r| r.name.as_str()).collect();
        anyhow::bail!(
            "deployment ‘{}’ has no deployed machine ‘{}’: it has not been deployed yet (‘nixops deploy --include {}’), or it is not in the network (deployed: {})",
            d.label(),
            s.text,
            s.text,
            if deployed.is_empty() {
                "none".to_owned()
            } else {
                deployed.join(", ")
            }
        );
    }
    filter
        .check_used(all.iter().map(|(r, i)| (r.name.as_str(), i.tags.as_slice())))
        .map_err(|e| anyhow::anyhow!("deployment ‘{}’: {e}", d.label()))?;
    Ok(all
        .into_iter()
        .filter(|(r, i)| filter.matches(&r.name, &i.tags))
        .map(|(r, i)| (r.clone(), i))
        .collect())
}

/// The deployment's machines in state that `filter` selects (by name, glob
/// or the tags state recorded), each with how to reach it; a selector that
/// matches none is an error.
pub fn stored_in(d: &Deployment, persist: u64, filter: &MachineFilter) -> Result<Vec<StoredMachine>> {
    let mut out = Vec::new();
    for (r, info) in selected(d, filter)? {
        let host = record::host(d, &r.name, &info, Some(&r), persist)?;
        out.push(StoredMachine {
            name: r.name.clone(),
            resource: r.clone(),
            info,
            host,
        });
    }
    Ok(out)
}

impl StoredMachine {
    /// Its SSH connection: a machine of a deployment is reached over SSH.
    pub fn target(&self) -> &crate::ssh::Target {
        self.host
            .ssh_target()
            .expect("deployments' machines are reached over SSH")
    }

    /// Opens (or reuses) the machine's master connection and returns the
    /// ssh options for another program's ssh (scp, sshfs) to ride on it, so
    /// the user's options, the port and the pinned host key apply as for
    /// every other command.
    pub async fn ride_master(&self) -> Result<Vec<String>> {
        let out = self
            .host
            .run("true", &[], None, crate::process::Sink::quiet())
            .await?;
        if !out.success() {
            return Err(self.host.failure("connecting", &out).into());
        }
        let t = self.target();
        let mut options = vec![
            "ControlMaster=no".to_owned(),
            "BatchMode=yes".to_owned(),
            format!("ControlPath={}", t.control_path().display()),
        ];
        options.extend(t.port.map(|p| format!("Port={p}")));
        Ok(options.into_iter().flat_map(|o| ["-o".to_owned(), o]).collect())
    }

    /// The machine as the pipeline stages take it, to run `toplevel`.
    pub fn into_machine(self, toplevel: String) -> Machine {
        Machine {
            name: self.name,
            resource_id: self.resource.id,
            info: self.info,
            toplevel,
            drv_path: None,
            host: self.host,
            boot_id: None,
            probe: None,
        }
    }
}

use anyhow::{Result, bail};
use clap::Args;

use super::{Global, confirm};
use crate::deploy::select;
use crate::state::history;

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
    /// Destroy the machines of all deployments
    #[arg(long)]
    pub all: bool,
    /// Also wipe the machines' disks (machines a backend created only)
    #[arg(long)]
    pub wipe: bool,
}

/// For existing machines, "destroy" means forgetting them: they keep running
/// whatever they run; nixops stops managing them.
pub fn run(g: &Global, o: Opts) -> Result<i32> {
    if o.wipe {
        bail!(
            "destroy --wipe: wiping disks is for machines a backend created, which it can erase; this tool deploys existing machines (targetEnv none), whose disks it does not touch (NixOps forgets them without wiping): run destroy without --wipe to forget them"
        );
    }
    let store = g.open_store()?;
    let ds = g.deployments(&store, o.all)?;
    for d in ds {
        let _lock = store.lock(&d.uuid)?;
        let machines = select::stored_in(&d, g.ssh_persist, &o.machines.filter())?;
        if machines.is_empty() {
            errln!("deployment ‘{}’ has no machines to destroy", d.label());
            continue;
        }
        let names: Vec<String> = machines.iter().map(|m| format!("‘{}’", m.name)).collect();
        let question = format!(
            "are you sure you want to destroy {} of deployment ‘{}’?",
            names.join(", "),
            d.label()
        );
        if !confirm(g, &question)? {
            bail!("not destroying anything");
        }
        let started = std::time::SystemTime::now();
        let ids: Vec<i64> = machines.iter().map(|m| m.resource.id).collect();
        store.record_network(&d.uuid, &[], &[], &ids)?;
        let forgotten: Vec<_> = machines
            .iter()
            .map(|m| (m.name.clone(), "forgotten".to_owned()))
            .collect();
        history::record(
            &store,
            &d,
            history::Action::Destroy,
            started,
            &forgotten,
            history::Seen::default(),
            true,
        );
        for m in &machines {
            crate::nix::remove_gc_roots(&d.uuid, Some(&m.name));
            errln!(
                "{}> forgot machine ‘{}’; it is an existing machine (targetEnv \"none\") and keeps running as it is",
                m.name,
                m.name
            );
        }
    }
    Ok(0)
}

//! `delete-resources` (NixOps'): removes resources from the state only,
//! each after its own question; whatever they are outside the state (a
//! machine and the system it runs) is left as it is.

use anyhow::Result;
use clap::Args;

use super::{Global, confirm};
use crate::network::MachineFilter;
use crate::state::history;

#[derive(Args, Debug)]
pub struct Opts {
    /// Only these resources (names, globs)
    #[arg(long, num_args = 1.., value_name = "RESOURCE-NAME", add = super::completions::resource())]
    pub include: Vec<String>,
    /// Not these resources (names, globs)
    #[arg(long, num_args = 1.., value_name = "RESOURCE-NAME", add = super::completions::resource())]
    pub exclude: Vec<String>,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let uuid = g.deployment(&store)?.uuid;
    let _lock = store.lock(&uuid)?;
    // Read once the lock is ours.
    let d = store.load(&uuid)?;
    let filter = MachineFilter::new(&o.include, &o.exclude);
    filter.check_used(d.resources.keys().map(|n| (n.as_str(), &[][..])))?;
    let mut deleted = Vec::new();
    for r in d.resources.values().filter(|r| filter.matches(&r.name, &[])) {
        let question = format!(
            "are you sure you want to clear the state of ‘{}’? This only removes the resource from the state; it may still exist outside of it",
            r.name
        );
        if !confirm(g, &question)? {
            continue;
        }
        errln!("{}> removing resource ‘{}’ from the state...", r.name, r.name);
        store.record_network(&d.uuid, &[], &[], &[r.id])?;
        crate::nix::remove_gc_roots(&d.uuid, Some(&r.name));
        deleted.push((r.name.clone(), "deleted from state".to_owned()));
    }
    if !deleted.is_empty() {
        history::record(
            &store,
            &d,
            history::Action::Destroy,
            std::time::SystemTime::now(),
            &deleted,
            history::Seen::default(),
            true,
        );
    }
    Ok(0)
}

use anyhow::{Result, bail};
use clap::Args;

use super::{Global, confirm};
use crate::backend::{self, Destroyed};
use crate::deploy::select;
use crate::network::{MachineFilter, Selector, created_type_of_kind};
use crate::state::{Deployment, Resource, history};

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

/// The deployment's non-machine resources that `filter` names (all when it
/// includes nothing), and the filter for its machines: selectors that name
/// only such resources are theirs (NixOps' `--include`/`--exclude` take
/// any resource's name). None: the filter selects no machine.
fn split<'a>(d: &'a Deployment, filter: &MachineFilter) -> (Vec<&'a Resource>, Option<MachineFilter>) {
    let others = || d.resources.values().filter(|r| !r.is_machine());
    let theirs = |s: &Selector| {
        !s.tag && others().any(|r| s.matches(&r.name, &[])) && !d.machines().any(|m| s.matches(&m.name, &[]))
    };
    let (inc_res, inc_mach): (Vec<Selector>, Vec<Selector>) =
        filter.include.iter().cloned().partition(theirs);
    let (exc_res, exc_mach): (Vec<Selector>, Vec<Selector>) =
        filter.exclude.iter().cloned().partition(theirs);
    let chosen = others()
        .filter(|r| filter.include.is_empty() || inc_res.iter().any(|s| s.matches(&r.name, &[])))
        .filter(|r| !exc_res.iter().any(|s| s.matches(&r.name, &[])))
        .collect();
    let machines = (filter.include.is_empty() || !inc_mach.is_empty()).then_some(MachineFilter {
        include: inc_mach,
        exclude: exc_mach,
    });
    (chosen, machines)
}

/// Each machine's backend destroys it (for existing machines, "destroy"
/// means forgetting them: they keep running whatever they run). The other
/// resources this tool makes (key pairs, command outputs) live in state
/// only: destroying them is forgetting them, as in NixOps. A machine its
/// backend cannot destroy stays in state.
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let ds = g.deployments(&store, o.all)?;
    let mut code = 0;
    for d in ds {
        let _lock = store.lock(&d.uuid)?;
        let (others, filter) = split(&d, &o.machines.filter());
        let machines = match filter {
            Some(f) => select::stored_resources_in(&d, &f)?,
            None => Vec::new(),
        };
        if o.wipe {
            let unwipeable: Vec<String> = machines
                .iter()
                .filter(|m| !backend::of(&m.kind).is_some_and(|b| b.can_wipe()))
                .map(|m| format!("‘{}’", m.name))
                .collect();
            if !unwipeable.is_empty() {
                bail!(
                    "destroy --wipe: wiping disks is for machines a backend created, which it can erase; {} of deployment ‘{}’ cannot be wiped by this tool (an existing machine, targetEnv none, keeps its disks, as NixOps forgets it without wiping; a cloud machine's disks are the provider's): run destroy without --wipe",
                    unwipeable.join(", "),
                    d.label()
                );
            }
        }
        // A plugin's resource (an EC2 key pair, a volume) is destroyed where
        // it lives, which only its plugin can do: forgetting it would leave
        // it there unmanaged.
        let (others, kept): (Vec<&Resource>, Vec<&Resource>) = others
            .into_iter()
            .partition(|r| created_type_of_kind(&r.kind).is_some());
        for r in kept {
            errln!(
                "{}> left in state: resource ‘{}’ is of type ‘{}’, which only NixOps' plugin of that type can destroy (‘nixops delete-resources --include {}’ forgets it)",
                r.name,
                r.name,
                r.kind,
                r.name
            );
        }
        // What only the provider can destroy is said before asking, and
        // stays in state.
        let (machines, refused): (Vec<_>, Vec<_>) = machines
            .into_iter()
            .partition(|m| backend::of(&m.kind).is_some_and(|b| b.can_destroy()));
        for m in &refused {
            let e = backend::for_machine(&m.name, &m.kind)?.destroy_refusal(m);
            errln!("{}> {e:#}", m.name);
            code = 1;
        }
        if machines.is_empty() && others.is_empty() {
            errln!("deployment ‘{}’ has nothing to destroy", d.label());
            continue;
        }
        let names: Vec<String> = machines
            .iter()
            .map(|m| &m.name)
            .chain(others.iter().map(|r| &r.name))
            .map(|n| format!("‘{n}’"))
            .collect();
        let question = format!(
            "are you sure you want to destroy {} of deployment ‘{}’?",
            names.join(", "),
            d.label()
        );
        if !confirm(g, &question)? {
            bail!("not destroying anything");
        }
        let started = std::time::SystemTime::now();
        let mut gone: Vec<(String, String)> = Vec::new();
        for m in &machines {
            let b = backend::for_machine(&m.name, &m.kind)?;
            let stored = backend::Stored {
                deployment: &d,
                resource: m,
            };
            let done = match b.destroy(stored, o.wipe).await {
                Ok(done) => done,
                Err(e) => {
                    errln!("{}> {e:#}", m.name);
                    code = 1;
                    continue;
                }
            };
            // Recorded at once: a later machine's failure (or Ctrl-C) must
            // not leave a machine that is gone in state.
            store.record_network(&d.uuid, &[], &[], &[m.id])?;
            crate::nix::remove_gc_roots(&d.uuid, Some(&m.name));
            match done {
                Destroyed::Forgotten => errln!(
                    "{}> forgot machine ‘{}’; it is {} and keeps running as it is",
                    m.name,
                    m.name,
                    b.describe()
                ),
                Destroyed::Deleted => errln!("{}> destroyed machine ‘{}’ ({})", m.name, m.name, b.describe()),
            }
            let what = match done {
                Destroyed::Forgotten => "forgotten",
                Destroyed::Deleted => "destroyed",
            };
            gone.push((m.name.clone(), what.to_owned()));
        }
        let ids: Vec<i64> = others.iter().map(|r| r.id).collect();
        store.record_network(&d.uuid, &[], &[], &ids)?;
        for r in &others {
            errln!("{}> forgot resource ‘{}’ ({})", r.name, r.name, r.kind);
            gone.push((r.name.clone(), "forgotten".to_owned()));
        }
        history::record(
            &store,
            &d,
            history::Action::Destroy,
            started,
            &gone,
            history::Seen::default(),
            code == 0,
        );
    }
    Ok(code)
}

use std::sync::{Arc, Mutex};

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::Global;
use crate::deploy::plan::PlanOptions;
use crate::deploy::{self, Ctx, PlanStatus};

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
    /// Print the plan as JSON (its shape: docs/plan.md)
    #[arg(long)]
    pub json: bool,
    /// Copy the new system's closure to machines that lack it, so that its
    /// switch-to-configuration dry-activate can tell which units would
    /// change (this writes to their Nix stores, nothing else)
    #[arg(long)]
    pub dry_activate: bool,
}

/// Evaluates and builds the selected machines and shows, per machine, what a
/// deploy would change there; changes nothing on the machines or in state.
/// Exit code 1 when a machine could not be planned (unreachable, failed, or
/// its keys cannot be read).
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let nix = g.nix_opts(Some(&d))?;
    let ctx = Ctx {
        store: Arc::new(Mutex::new(store)),
        deployment: d,
        nix,
        ssh_persist: g.ssh_persist,
    };
    let opts = PlanOptions {
        machines: o.machines.filter(),
        dry_activate: o.dry_activate,
    };
    let plan = deploy::make_plan(&ctx, opts).await?;
    if o.json {
        let count = |s| plan.count(s);
        let v = json!({
            "version": 1,
            "machines": plan.machines,
            "summary": {
                "changed": count(PlanStatus::Changed),
                "unchanged": count(PlanStatus::Unchanged),
                "new": count(PlanStatus::New),
                "unreachable": count(PlanStatus::Unreachable),
                "failed": count(PlanStatus::Failed),
            },
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!("{}", crate::ui::plan_text(&plan));
    }
    Ok(i32::from(plan.incomplete()))
}

//! `list-generations`, `rollback` and `delete-generation`.

use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::{self, Action, DeployOptions, generations, select};
use crate::state::Deployment;
use crate::ui::{Stream, table_on};

fn require_rollback(d: &Deployment) -> Result<()> {
    if d.attrs.get("rollbackEnabled").map(String::as_str) != Some("1") {
        return Err(generations::not_enabled(d.label()));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ListOpts {}

pub fn list(g: &Global, _o: ListOpts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    require_rollback(&d)?;
    let current = generations::current(&d.uuid)?;
    let rows = generations::list(&d.uuid)?
        .into_iter()
        .map(|generation| {
            let secs = generation
                .created
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            vec![
                generation.number.to_string(),
                crate::state::history::format_utc(secs),
                generation.machines.keys().cloned().collect::<Vec<_>>().join(", "),
                if Some(generation.number) == current {
                    "(current)".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    out!(
        "{}",
        table_on(
            Stream::Stdout,
            &["Generation", "Created (UTC)", "Machines", ""],
            rows
        )
    );
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RollbackOpts {
    /// The generation to go back to
    pub generation: u32,
    #[command(flatten)]
    pub machines: super::Selection,
    /// Reboot machines whose activation asks for it
    #[arg(long)]
    pub allow_reboot: bool,
    /// Reboot every machine into the old system
    #[arg(long)]
    pub force_reboot: bool,
    /// How many machines to copy to at once
    #[arg(long, default_value_t = 5)]
    pub max_concurrent_copy: usize,
    /// How many machines to activate at once (default: all)
    #[arg(long)]
    pub max_concurrent_activate: Option<usize>,
    /// Check what the machines run first; leave those already running the
    /// generation's system alone
    #[arg(long)]
    pub check: bool,
    /// Do not flush the machines' disks after setting the profile
    #[arg(long)]
    pub no_sync: bool,
}

/// Copies and activates a generation's toplevels on its machines.
pub async fn rollback(g: &Global, o: RollbackOpts) -> Result<i32> {
    let started = Instant::now();
    let session = g.session()?;
    let ctx = &session.ctx;
    let d = &ctx.deployment;
    require_rollback(d)?;
    let generation = generations::get(&d.uuid, o.generation)?;
    let mut machines = Vec::new();
    for sm in select::stored_in(d, g.ssh_persist, &o.machines.filter())? {
        match generation.machines.get(&sm.name) {
            Some(t) => {
                let t = t.clone();
                machines.push(sm.into_machine(t));
            }
            None => errln!("{}> not in generation {}; left as it is", sm.name, o.generation),
        }
    }
    for name in generation.machines.keys() {
        if !d.resources.contains_key(name) {
            errln!(
                "{name}> in generation {} but no longer in state; skipped",
                o.generation
            );
        }
    }
    let opts = DeployOptions {
        magic_rollback: true,
        action: if o.force_reboot {
            Action::Boot
        } else {
            Action::Switch
        },
        allow_reboot: o.allow_reboot,
        force_reboot: o.force_reboot,
        check: o.check,
        no_sync: o.no_sync,
        max_concurrent_copy: o.max_concurrent_copy,
        max_concurrent_activate: o.max_concurrent_activate,
        reboot_timeout: 600,
        recorded_as: crate::state::history::Action::Rollback {
            generation: o.generation,
        },
        ..Default::default()
    };
    let (events, display) = crate::ui::start(&[]);
    let code = deploy::execute(ctx, machines, &opts, false, started, &events).await;
    drop(events);
    display.await?;
    let code = code?;
    if code == 0 {
        generations::switch(&ctx.deployment.uuid, o.generation).await?;
        errln!("switched to generation {}", o.generation);
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct DeleteOpts {
    /// The generation to delete
    pub generation: u32,
}

pub async fn delete(g: &Global, o: DeleteOpts) -> Result<i32> {
    let store = g.open_store()?;
    let d = g.deployment(&store)?;
    let _lock = store.lock(&d.uuid)?;
    require_rollback(&d)?;
    generations::delete(&d.uuid, o.generation).await?;
    errln!("deleted generation {}", o.generation);
    Ok(0)
}

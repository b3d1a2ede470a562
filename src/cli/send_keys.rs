use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::select;
use crate::keys;
use crate::ui;

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
}

/// Sends the machines' deployment.keys (as the network declares them now)
/// without deploying: one SSH session per machine, all machines at once.
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let started = Instant::now();
    let session = g.session()?;
    let ctx = &session.ctx;
    let machines: Vec<select::StoredMachine> =
        select::stored_in(&ctx.deployment, g.ssh_persist, &o.machines.filter())?
            .into_iter()
            .filter(|m| !m.resource.obsolete())
            .collect();
    let targets: Vec<keys::KeyTarget> = machines
        .iter()
        .map(|m| keys::KeyTarget {
            name: &m.name,
            resource_id: m.resource.id,
            host: &m.host,
        })
        .collect();
    send(ctx, &targets, started).await
}

/// Sends the keys to `targets` with a display, and says how it went; the
/// exit code. Also Colmena's `upload-keys` (apply.rs).
pub async fn send(
    ctx: &crate::deploy::Ctx,
    targets: &[keys::KeyTarget<'_>],
    started: Instant,
) -> Result<i32> {
    if targets.is_empty() {
        errln!("no machines to send keys to");
        return Ok(0);
    }
    let names: Vec<String> = targets.iter().map(|m| m.name.to_owned()).collect();
    let (events, renderer) = ui::start(&names);
    let results = keys::send(&ctx.keys(), targets, &events, false).await;
    for (name, r) in &results {
        match r {
            Ok(0) => events.done(name, "no keys", None),
            Ok(n) => events.done(
                name,
                &format!("{n} key{} sent", if *n == 1 { "" } else { "s" }),
                None,
            ),
            Err(e) => events.done(name, "sending keys failed", Some(format!("{e:#}"))),
        }
    }
    drop(events);
    renderer.await?;
    let failed = super::failed_names(&results);
    let secs = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        errln!(
            "keys sent to {} ({secs:.1} s)",
            crate::ui::count(results.len(), "machine")
        );
        Ok(0)
    } else {
        errln!(
            "error: sending keys to {} of {} machines failed (namely on {}) ({secs:.1} s)",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
        Ok(1)
    }
}

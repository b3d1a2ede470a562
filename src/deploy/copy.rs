//! Copy stage: reach each machine (opening its master connection) and copy
//! the toplevel's closure unless the machine already has it.

use anyhow::Result;

use super::record;
use super::types::{Ctx, DeployOptions, Machine};
use crate::host::{self, Host, Probe};
use crate::process::Sink;
use crate::ui::Events;

/// What became of a machine in the copy stage.
pub enum Copied {
    /// Its closure is there; activate it.
    Ready,
    /// `--check` found it already running its new system: nothing to do.
    AlreadyRunning,
}

/// First contact ([`Host::probe`](crate::host::Host::probe)), and what it
/// tells state: the machine is up or unreachable, its host key (learned now
/// if not pinned yet), and the system an interrupted deploy of ours left
/// running.
pub async fn probe(ctx: &Ctx, m: &Machine, path: &str, events: &Events) -> Result<Probe> {
    let p = match m.host.probe(path, Sink::machine(events, &m.name)).await {
        Ok(p) => p,
        Err(e) => {
            if matches!(e, host::Error::Unreachable(_)) {
                record::unreachable(ctx, m.resource_id)?;
            }
            return Err(e.into());
        }
    };
    record::reached(ctx, m.resource_id, &m.host)?;
    let recorded = ctx.deployment.resources.get(&m.name).and_then(|r| r.toplevel());
    let current = p.current_system.as_deref();
    if let Some(t) = record::unrecorded(&ctx.deployment.uuid, &m.name, recorded, current, p.kept.as_ref()) {
        record::deployed(ctx, m.resource_id, &m.name, t)?;
        events.log(
            Some(&m.name),
            format!("recorded {t}, which an interrupted deploy left running"),
        );
    }
    Ok(p)
}

/// Copies the machine's closure unless it has it (reaching it first if
/// nothing did yet), from here or from the build host that built it; with
/// `check`, nothing when it already runs it.
pub async fn copy_one(
    ctx: &Ctx,
    m: &mut Machine,
    events: &Events,
    opts: &DeployOptions,
    build_host: Option<&Host>,
) -> Result<Copied> {
    let p = match m.probe.clone() {
        Some(p) => p,
        None => {
            events.stage(&m.name, "connecting");
            let p = probe(ctx, m, &m.toplevel, events).await?;
            m.boot_id = Some(p.boot_id.clone());
            m.probe = Some(p.clone());
            p
        }
    };
    if opts.check && p.current_system.as_deref() == Some(m.toplevel.as_str()) {
        // It runs what we would deploy: make sure state says so too.
        record::deployed(ctx, m.resource_id, &m.name, &m.toplevel)?;
        return Ok(Copied::AlreadyRunning);
    }
    if !p.has_path {
        events.stage(&m.name, "copying");
        let sink = Sink::machine(events, &m.name);
        let substitute = !m.info.has_fast_connection && !opts.no_substitute;
        match build_host {
            Some(from) => m.host.copy_from(from, &m.toplevel, substitute, sink).await?,
            None => m.host.copy_closure(&m.toplevel, substitute, sink).await?,
        }
    }
    Ok(Copied::Ready)
}

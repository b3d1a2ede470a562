//! Copy stage: reach each machine (opening its master connection) and copy
//! the toplevel's closure unless the machine already has it.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use futures::StreamExt;

use super::{Ctx, Machine, record};
use crate::nix;
use crate::process::Sink;
use crate::ssh;
use crate::ui::Events;

/// What became of a machine in the copy stage.
pub enum Copied {
    /// Its closure is there; activate it.
    Ready,
    /// `--check` found it already running its new system: nothing to do.
    AlreadyRunning,
}

pub async fn run(
    ctx: &Ctx,
    machines: Vec<Machine>,
    events: &Events,
    max: usize,
    check: bool,
) -> Vec<(Machine, Result<Copied>)> {
    futures::stream::iter(machines)
        .map(|mut m| async move {
            let r = copy_one(ctx, &mut m, events, check).await;
            (m, r)
        })
        .buffer_unordered(max.max(1))
        .collect()
        .await
}

/// Reaches every machine at once (bounded only by `MAX_CONNECTS`): the
/// handshakes overlap the build instead of queueing behind the copies.
pub async fn probe_all(ctx: &Ctx, machines: &[Machine], events: &Events) -> BTreeMap<String, Result<Probe>> {
    futures::stream::iter(machines)
        .map(|m| async move {
            events.stage(&m.name, "connecting");
            (m.name.clone(), probe(ctx, m, &m.toplevel, events).await)
        })
        .buffer_unordered(MAX_CONNECTS)
        .collect()
        .await
}

/// How many SSH connections are opened at once.
const MAX_CONNECTS: usize = 64;

/// What a machine tells us on first contact.
#[derive(Debug, Clone)]
pub struct Probe {
    pub boot_id: String,
    pub has_path: bool,
    /// What /run/current-system points at.
    pub current_system: Option<String>,
}

const PROBE: &str = concat!(include_str!("activation-lib.sh"), include_str!("probe.sh"));

/// One round trip: the boot id, whether `path` is valid in its store, the
/// system it runs, and what the newest activation there left final (so
/// state learns what an interrupted deploy of ours left running).
pub async fn probe(ctx: &Ctx, m: &Machine, path: &str, events: &Events) -> Result<Probe> {
    let out = m
        .target
        .run_with_args(PROBE, &[path], None, Sink::machine(events, &m.name))
        .await?;
    if !out.success() {
        if out.code == Some(ssh::SSH_FAILURE) {
            record::unreachable(ctx, m.resource_id)?;
        }
        return Err(ssh::failure("contacting the machine", &out));
    }
    record::reached(ctx, m.resource_id, &m.target)?;
    // Not lines(): the third line may be empty, even as the last one.
    let mut lines = out.stdout.split('\n');
    let (Some(boot_id), Some(status), Some(current)) = (lines.next(), lines.next(), lines.next()) else {
        bail!("unexpected answer from the machine: {:?}", out.stdout);
    };
    let current_system = Some(current.trim().to_owned()).filter(|c| !c.is_empty());
    let kept = lines.next().and_then(record::Kept::parse);
    let recorded = ctx.deployment.resources.get(&m.name).and_then(|r| r.toplevel());
    if let Some(t) = record::unrecorded(
        &ctx.deployment.uuid,
        recorded,
        current_system.as_deref(),
        kept.as_ref(),
    ) {
        record::deployed(ctx, m.resource_id, &m.name, t)?;
        events.log(
            Some(&m.name),
            format!("recorded {t}, which an interrupted deploy left running"),
        );
    }
    Ok(Probe {
        boot_id: boot_id.trim().to_owned(),
        has_path: status.trim() == "present",
        current_system,
    })
}

async fn copy_one(ctx: &Ctx, m: &mut Machine, events: &Events, check: bool) -> Result<Copied> {
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
    if check && p.current_system.as_deref() == Some(m.toplevel.as_str()) {
        // It runs what we would deploy: make sure state says so too.
        record::deployed(ctx, m.resource_id, &m.name, &m.toplevel)?;
        return Ok(Copied::AlreadyRunning);
    }
    if !p.has_path {
        events.stage(&m.name, "copying");
        let sink = Sink::machine(events, &m.name);
        nix::copy_closure(&m.target, &m.toplevel, !m.info.has_fast_connection, sink).await?;
    }
    Ok(Copied::Ready)
}

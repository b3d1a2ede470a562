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

/// One round trip: the boot id, whether `path` is valid in its store (no
/// Nix process when the profile already points at it, or when it does not
/// even exist), the system it runs and its system profile.
pub async fn probe(ctx: &Ctx, m: &Machine, path: &str, events: &Events) -> Result<Probe> {
    let p = ssh::quote(path);
    let script = format!(
        "cat /proc/sys/kernel/random/boot_id
profile=$(readlink -f /nix/var/nix/profiles/system 2>/dev/null || true)
if [ \"$profile\" = {p} ]; then echo present
elif [ -e {p} ] && nix-store --check-validity {p} >/dev/null 2>&1; then echo present
else echo missing; fi
readlink /run/current-system || true"
    );
    let out = m
        .target
        .run(&script, None, Sink::machine(events, &m.name))
        .await?;
    if !out.success() {
        if out.code == Some(ssh::SSH_FAILURE) {
            record::unreachable(ctx, m.resource_id)?;
        }
        return Err(ssh::failure("contacting the machine", &out));
    }
    record::reached(ctx, m.resource_id, &m.target)?;
    let mut lines = out.stdout.lines();
    let (Some(boot_id), Some(status)) = (lines.next(), lines.next()) else {
        bail!("unexpected answer from the machine: {:?}", out.stdout);
    };
    Ok(Probe {
        boot_id: boot_id.trim().to_owned(),
        has_path: status.trim() == "present",
        current_system: next_path(&mut lines),
    })
}

fn next_path<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<String> {
    lines
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
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

//! Activation stage: point the system profile at the new toplevel and run
//! its switch-to-configuration; reboot when asked to or when it must.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use super::keys::{self, MachineKeys, Phase};
use super::{Ctx, DeployOptions, Machine, Outcome, record};
use crate::process::Sink;
use crate::ssh;
use crate::ui::Events;

/// switch-to-configuration's exit code for "activated, but a reboot is
/// needed to finish".
const NEEDS_REBOOT: i32 = 100;
const UNCHANGED_MARK: &str = "__NIXOPS_UNCHANGED__";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    Switch,
    Boot,
    Test,
    DryActivate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Switch => "switch",
            Action::Boot => "boot",
            Action::Test => "test",
            Action::DryActivate => "dry-activate",
        }
    }

    /// Whether the machine runs the new system afterwards.
    fn runs_new_system(self) -> bool {
        matches!(self, Action::Switch | Action::Test)
    }

    fn sets_profile(self) -> bool {
        matches!(self, Action::Switch | Action::Boot)
    }
}

/// Activates each machine; a machine with keys gets them before (and, for
/// post-activation keys, after) activation and again after a reboot. Its
/// secrets are dropped as soon as it is done.
pub async fn run(
    ctx: &Ctx,
    machines: Vec<(Machine, Option<MachineKeys>)>,
    events: &Events,
    opts: &DeployOptions,
) -> Vec<(Machine, Result<Outcome>)> {
    let max = opts.max_concurrent_activate.unwrap_or(machines.len()).max(1);
    futures::stream::iter(machines)
        .map(|(mut m, mut k)| async move {
            let r = activate_one(ctx, &mut m, k.as_mut(), events, opts).await;
            drop(k);
            (m, r)
        })
        .buffer_unordered(max)
        .collect()
        .await
}

/// The remote script: one round trip does the profile, the sync and the
/// switch.
fn script(toplevel: &str, action: Action, skip_if_current: bool, sync: bool) -> String {
    let t = ssh::quote(toplevel);
    let mut s = String::from("set -e\n");
    if skip_if_current {
        s += &format!(
            "if [ \"$(readlink -f /nix/var/nix/profiles/system)\" = {t} ]; then echo {UNCHANGED_MARK}; exit 0; fi\n"
        );
    }
    if action.sets_profile() {
        // A no-op redeploy starts no Nix process and flushes nothing.
        s += &format!("if [ \"$(readlink -f /nix/var/nix/profiles/system)\" != {t} ]; then\n");
        s += &format!("  nix-env -p /nix/var/nix/profiles/system --set {t}\n");
        if sync {
            s += "  sync\n";
        }
        s += "fi\n";
    } else if sync {
        s += "sync\n";
    }
    s += &format!("exec {t}/bin/switch-to-configuration {}\n", action.as_str());
    s
}

async fn activate_one(
    ctx: &Ctx,
    m: &mut Machine,
    mut keys: Option<&mut MachineKeys>,
    events: &Events,
    opts: &DeployOptions,
) -> Result<Outcome> {
    if opts.action == Action::DryActivate {
        keys = None;
    }
    if let Some(k) = keys.as_deref_mut() {
        events.stage(&m.name, "reading keys");
        k.gather().await?;
        keys::deliver(ctx, &m.key_target(), k, Phase::Pre, events)
            .await
            .context("sending keys")?;
    }
    events.stage(&m.name, "activating");
    let skip = !m.info.always_activate && !opts.always_activate && opts.action != Action::DryActivate;
    let sync = !opts.no_sync && opts.action.sets_profile();
    let sink = Sink {
        log_stdout: true,
        ..Sink::machine(events, &m.name)
    };
    let out = m
        .target
        .run(&script(&m.toplevel, opts.action, skip, sync), None, sink)
        .await?;
    let code = out.code;
    if code == Some(ssh::SSH_FAILURE) {
        return Err(ssh::failure("activation", &out));
    }
    if opts.action == Action::DryActivate {
        if code != Some(0) {
            bail!("dry activation failed (exit code {code:?}): {}", out.last_error());
        }
        return Ok(Outcome::Stopped("dry-activated"));
    }
    let unchanged = out.stdout.lines().any(|l| l == UNCHANGED_MARK);
    match code {
        Some(0) | Some(NEEDS_REBOOT) => {}
        _ => bail!(
            "switch-to-configuration failed (exit code {}): {}",
            fmt_code(code),
            out.last_error()
        ),
    }
    if opts.action.runs_new_system() {
        record::deployed(ctx, m.resource_id, &m.name, &m.toplevel)?;
    }
    let reboot = opts.force_reboot || (code == Some(NEEDS_REBOOT) && opts.allow_reboot);
    if let Some(k) = keys.as_deref_mut().filter(|k| !reboot && k.has_post()) {
        keys::deliver(ctx, &m.key_target(), k, Phase::Post, events)
            .await
            .context("sending keys after activation")?;
    }
    if reboot {
        reboot_and_wait(ctx, m, events, opts.reboot_timeout).await?;
        record::deployed(ctx, m.resource_id, &m.name, &m.toplevel)?;
        // The reboot emptied /run: all keys again.
        if let Some(k) = keys {
            keys::deliver(ctx, &m.key_target(), k, Phase::All, events)
                .await
                .context("sending keys after the reboot")?;
        }
    } else if code == Some(NEEDS_REBOOT) {
        bail!(
            "the new configuration requires a reboot of ‘{}’ to take effect (hint: use ‘--allow-reboot’)",
            m.name
        );
    }
    events.done(&m.name, if unchanged { "unchanged" } else { "deployed" }, None);
    Ok(Outcome::Deployed)
}

fn fmt_code(code: Option<i32>) -> String {
    code.map_or_else(|| "signal".into(), |c| c.to_string())
}

/// Reboots the machine and waits until it is back: a different boot id and
/// SSH answering.
pub async fn reboot_and_wait(ctx: &Ctx, m: &mut Machine, events: &Events, timeout: u64) -> Result<()> {
    let old = match &m.boot_id {
        Some(id) => id.clone(),
        None => super::copy::probe(ctx, m, "/", events).await?.boot_id,
    };
    events.stage(&m.name, "rebooting");
    // The connection may drop before the command returns; that is expected.
    let _ = m.target.run("systemctl reboot", None, Sink::quiet()).await;
    m.target.close().await;
    events.stage(&m.name, "waiting for the machine to come back");
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let out = m
            .target
            .run("cat /proc/sys/kernel/random/boot_id", None, Sink::quiet())
            .await?;
        if out.success() {
            let id = out.stdout.trim().to_owned();
            if id != old && !id.is_empty() {
                m.boot_id = Some(id);
                events.log(Some(&m.name), "machine is back after reboot");
                return Ok(());
            }
        }
        // Whatever master we got was to the old boot or is broken.
        m.target.close().await;
        if Instant::now() > deadline {
            bail!("machine did not come back within {timeout} s after reboot");
        }
    }
}

//! Magic rollback: activation under a guard on the machine.
//!
//! The guard (`guard.sh`) is a POSIX shell script started detached (it
//! survives the SSH connection dropping). It activates the new system, then
//! waits for a decision: the deployer confirms over a *new* SSH connection
//! (not the multiplexed master, which could hide a broken sshd), or asks to
//! roll back, or the deadline passes, or a later activation supersedes it.
//! Without a confirmation, or when activation fails, the guard goes back to
//! the previous system by itself.
//!
//! The decision is a symlink in the guard's directory, created with `ln -s`:
//! creating a symlink is atomic and fails if it exists, so whoever decides
//! first wins and everyone reads the same answer. A confirmation racing the
//! deadline is either in time (the guard then reads "confirmed") or not (the
//! deployer then reads the guard's "timeout"); it is never lost or
//! half-applied.
//!
//! Every activation on a machine, guarded or not, takes the machine's
//! activation lock and becomes its newest activation
//! (`activation-lib.sh`); a guard goes back only under that lock and only
//! while it is still the newest. So the guard of an interrupted deploy
//! (Ctrl-C, a killed deployer, a frozen machine) can never undo a later one.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Action, Machine};
use crate::process::{self, Sink};
use crate::ssh;
use crate::ui::Events;

const START: &str = concat!(include_str!("activation-lib.sh"), include_str!("guard-start.sh"));
const GUARD: &str = concat!(include_str!("activation-lib.sh"), include_str!("guard.sh"));
const DECIDE: &str = concat!(
    include_str!("activation-lib.sh"),
    r#"ln -s "$2" "$base/$1/decision" 2>/dev/null; readlink "$base/$1/decision""#
);
const OUTCOME: &str = concat!(
    include_str!("activation-lib.sh"),
    r#"cat "$base/$1/outcome" 2>/dev/null || true"#
);
const LOG: &str = concat!(
    include_str!("activation-lib.sh"),
    r#"cat "$base/$1/log" 2>/dev/null || true"#
);

/// A running guard on a machine.
pub struct Guard {
    /// Its directory's name under /run/nixops-guard.
    id: String,
    /// When the guard gives up waiting, counted from activation's end.
    pub wait_secs: u64,
}

/// What activation did, as the guard reports it.
pub struct Activated {
    /// switch-to-configuration's exit code.
    pub code: i32,
}

/// How a guarded activation ended.
pub enum Ending {
    Kept,
    RolledBack(String),
    /// A later activation on the machine took over before this one was
    /// decided; the machine is that one's now.
    Superseded,
}

/// Starts the guard, which activates right away, and waits in the same
/// round trip (over the master connection) until activation is done,
/// showing its output. The guard is returned even when the wait fails (the
/// connection was lost): it may be running.
pub async fn activate(
    m: &Machine,
    deployment: &str,
    action: Action,
    sync: bool,
    wait_secs: u64,
    events: &Events,
) -> (Option<Guard>, Result<Activated>) {
    let id = uuid::Uuid::new_v4().to_string();
    let wait = wait_secs.to_string();
    let args = [
        id.as_str(),
        m.toplevel.as_str(),
        action.as_str(),
        wait.as_str(),
        if sync { "1" } else { "0" },
        deployment,
    ];
    let sink = Sink {
        log_stdout: true,
        ..Sink::machine(events, &m.name)
    };
    let out = match m
        .target
        .run_with_args(START, &args, Some(GUARD.as_bytes()), sink)
        .await
    {
        Ok(out) => out,
        Err(e) => return (None, Err(e)),
    };
    if !out.stdout.contains("__NIXOPS_GUARD_STARTED__") {
        return (None, Err(ssh::failure("starting the activation guard", &out)));
    }
    let guard = Guard { id, wait_secs };
    let code = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("__NIXOPS_RC__ "))
        .and_then(|c| c.trim().parse().ok());
    match code {
        Some(code) if out.success() => (Some(guard), Ok(Activated { code })),
        _ => (Some(guard), Err(ssh::failure("waiting for activation", &out))),
    }
}

/// Decides: "confirmed" (over a new SSH connection) or a rollback reason
/// (over the master). Returns the decision that stands, which is the
/// guard's own when it decided first.
async fn decide(m: &Machine, g: &Guard, decision: &str, fresh: bool) -> Result<String> {
    let args = [g.id.as_str(), decision];
    let mut cmd = if fresh {
        m.target.fresh_command(DECIDE, &args)?
    } else {
        m.target.command_with_args(DECIDE, &args, true)?
    };
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    match out.stdout.lines().next().filter(|_| out.success()) {
        Some(d) => Ok(d.trim().to_owned()),
        None => Err(ssh::failure("deciding", &out)),
    }
}

/// Confirms the new system over a new SSH connection.
pub async fn confirm(m: &Machine, g: &Guard) -> Result<bool> {
    Ok(decide(m, g, "confirmed", true).await? == "confirmed")
}

/// Tells the guard to roll back now.
pub async fn roll_back(m: &Machine, g: &Guard, reason: &str) -> Result<()> {
    decide(m, g, reason, false).await.map(|_| ())
}

/// Waits for the guard's end, reconnecting as needed (the machine may have
/// lost sshd until the rollback brings it back).
pub async fn ending(m: &Machine, g: &Guard, events: &Events) -> Result<Ending> {
    let args = [g.id.as_str()];
    // The guard decides by itself within wait_secs; rolling back takes a
    // little longer.
    let deadline = Instant::now() + Duration::from_secs(g.wait_secs + 120);
    loop {
        match m.target.run_with_args(OUTCOME, &args, None, Sink::quiet()).await {
            Ok(out) if out.success() => {
                let o = out.stdout.trim();
                if o == "kept" {
                    return Ok(Ending::Kept);
                }
                if o == "superseded" {
                    return Ok(Ending::Superseded);
                }
                if let Some(why) = o.strip_prefix("rolled-back ") {
                    let log = m.target.run_with_args(LOG, &args, None, Sink::quiet()).await;
                    if let Ok(log) = log {
                        for l in log.stdout.lines().filter(|l| l.starts_with("nixops guard:")) {
                            events.log(Some(&m.name), l);
                        }
                    }
                    return Ok(Ending::RolledBack(why.to_owned()));
                }
            }
            _ => m.target.close().await,
        }
        if Instant::now() > deadline {
            bail!("the machine did not report the end of its guarded activation in time");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

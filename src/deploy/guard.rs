//! Magic rollback: activation under a guard on the machine.
//!
//! The guard is a POSIX shell script started detached (it survives the SSH
//! connection dropping). It activates the new system, then waits for a
//! decision: the deployer confirms over a *new* SSH connection (not the
//! multiplexed master, which could hide a broken sshd), or asks to roll
//! back, or the deadline passes. Without a confirmation, or when activation
//! fails, the guard goes back to the previous system by itself.
//!
//! The decision is a symlink, `$dir/decision`, created with `ln -s`: creating
//! a symlink is atomic and fails if it exists, so whoever decides first wins
//! and everyone reads the same answer. A confirmation racing the deadline is
//! either in time (the guard then reads "confirmed") or not (the deployer
//! then reads the guard's "timeout"); it is never lost or half-applied.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Action, Machine};
use crate::process::{self, Sink};
use crate::ssh;
use crate::ui::Events;

const GUARD: &str = r#"d=$1; top=$2; action=$3; timeout=$4; sync=$5
profile=/nix/var/nix/profiles/system
prev_profile=$(readlink -f "$profile" 2>/dev/null || true)
prev_current=$(readlink -f /run/current-system 2>/dev/null || true)
nap() { sleep 0.2 2>/dev/null || sleep 1; }
say() { echo "$*" >> "$d/log"; }
finish() { echo "$1" > "$d/outcome.tmp" && mv "$d/outcome.tmp" "$d/outcome"; exit 0; }
rollback() {
  say "nixops guard: rolling back ($1)"
  if [ "$action" = switch ] && [ -n "$prev_profile" ] && [ "$prev_profile" != "$top" ]; then
    nix-env -p "$profile" --set "$prev_profile" >> "$d/log" 2>&1 || say "nixops guard: could not reset the profile"
    "$prev_profile/bin/switch-to-configuration" boot >> "$d/log" 2>&1 || say "nixops guard: could not reset the boot default"
  fi
  if [ -n "$prev_current" ] && [ "$prev_current" != "$top" ]; then
    "$prev_current/bin/switch-to-configuration" test >> "$d/log" 2>&1 || say "nixops guard: re-activating $prev_current failed"
  elif [ -z "$prev_current" ]; then
    say "nixops guard: there is no previous system to go back to"
  fi
  finish "rolled-back $1"
}
if [ "$action" = switch ] && [ "$prev_profile" != "$top" ]; then
  if ! nix-env -p "$profile" --set "$top" >> "$d/log" 2>&1; then
    echo 1 > "$d/rc"; ln -s failed "$d/decision"; rollback "setting the system profile failed"
  fi
  [ "$sync" = 1 ] && sync
fi
"$top/bin/switch-to-configuration" "$action" >> "$d/log" 2>&1
rc=$?
echo "$rc" > "$d/rc.tmp" && mv "$d/rc.tmp" "$d/rc"
if [ "$rc" -ne 0 ] && [ "$rc" -ne 100 ]; then
  ln -s failed "$d/decision" 2>/dev/null
  rollback "activation failed with exit code $rc"
fi
end=$(( $(date +%s) + timeout ))
while :; do
  dec=$(readlink "$d/decision" 2>/dev/null || true)
  if [ -z "$dec" ] && [ "$(date +%s)" -ge "$end" ]; then
    ln -s timeout "$d/decision" 2>/dev/null
    dec=$(readlink "$d/decision")
  fi
  case "$dec" in
    confirmed) finish kept ;;
    '') nap ;;
    timeout) rollback "no confirmation within ${timeout} s" ;;
    *) rollback "$dec" ;;
  esac
done
"#;

/// A running guard on a machine.
pub struct Guard {
    dir: String,
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
}

/// Starts the guard, which activates right away, and waits in the same
/// round trip (over the master connection) until activation is done,
/// showing its output. The guard is returned even when the wait fails (the
/// connection was lost): it may be running.
pub async fn activate(
    m: &Machine,
    action: Action,
    sync: bool,
    wait_secs: u64,
    events: &Events,
) -> (Option<Guard>, Result<Activated>) {
    let dir = format!("/run/nixops-guard/{}", uuid::Uuid::new_v4());
    let d = ssh::quote(&dir);
    let script = format!(
        "umask 077; mkdir -p {d} && cat > {d}/guard.sh || exit 1
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi
# Twice detached: the guard's parent is gone at once, so it belongs to no
# SSH session that something might kill.
( $detach sh {d}/guard.sh {d} {t} {a} {w} {s} </dev/null >/dev/null 2>&1 & )
echo __NIXOPS_GUARD_STARTED__
i=0
while [ ! -e {d}/rc ]; do
  if [ $i -lt 40 ]; then sleep 0.05 2>/dev/null || sleep 1; else sleep 0.2 2>/dev/null || sleep 1; fi
  i=$((i + 1))
done
cat {d}/log; echo \"__NIXOPS_RC__ $(cat {d}/rc)\"",
        t = ssh::quote(&m.toplevel),
        a = action.as_str(),
        w = wait_secs,
        s = u8::from(sync),
    );
    let sink = Sink {
        log_stdout: true,
        ..Sink::machine(events, &m.name)
    };
    let out = match m.target.run(&script, Some(GUARD.as_bytes()), sink).await {
        Ok(out) => out,
        Err(e) => return (None, Err(e)),
    };
    if !out.stdout.contains("__NIXOPS_GUARD_STARTED__") {
        return (None, Err(ssh::failure("starting the activation guard", &out)));
    }
    let guard = Guard { dir, wait_secs };
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
    let d = ssh::quote(&g.dir);
    let script = format!(
        "ln -s {} {d}/decision 2>/dev/null; readlink {d}/decision",
        ssh::quote(decision)
    );
    let mut cmd = if fresh {
        m.target.fresh_command(&script)?
    } else {
        m.target.command(&script, true)?
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
    let d = ssh::quote(&g.dir);
    let script = format!("cat {d}/outcome 2>/dev/null || true");
    // The guard decides by itself within wait_secs; rolling back takes a
    // little longer.
    let deadline = Instant::now() + Duration::from_secs(g.wait_secs + 120);
    loop {
        match m.target.run(&script, None, Sink::quiet()).await {
            Ok(out) if out.success() => {
                let o = out.stdout.trim();
                if o == "kept" {
                    return Ok(Ending::Kept);
                }
                if let Some(why) = o.strip_prefix("rolled-back ") {
                    let log = m.target.run(&format!("cat {d}/log"), None, Sink::quiet()).await;
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

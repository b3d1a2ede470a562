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

use super::{Activation, Error, Host, Result, with_lib};
use crate::process::Sink;
use crate::ui::Events;

const START: &str = with_lib!("guard-start.sh");
const GUARD: &str = with_lib!("guard.sh");
const DECIDE: &str = with_lib!("guard-decide.sh");
const OUTCOME: &str = with_lib!("guard-outcome.sh");

/// A running guard on a machine.
#[derive(Debug)]
pub struct Guard {
    /// Its directory's name under /run/nixops-guard.
    id: String,
    /// When the guard gives up waiting, counted from activation's end.
    pub wait_secs: u64,
}

/// How a guarded activation ended.
pub enum Ending {
    Kept,
    RolledBack(String),
    /// A later activation on the machine took over before this one was
    /// decided; the machine is that one's now.
    Superseded,
}

impl Host {
    /// Starts the guard, which activates right away (as the machine's
    /// newest activation, see activation-lib.sh), and waits in the same
    /// round trip (over the master connection) until activation is done,
    /// showing its output; returns switch-to-configuration's exit code.
    /// The guard then waits `wait_secs` for a decision. It is returned even
    /// when the wait fails (the connection was lost): it may be running.
    pub async fn activate_guarded(
        &self,
        a: &Activation<'_>,
        wait_secs: u64,
        sink: Sink<'_>,
    ) -> (Option<Guard>, Result<i32>) {
        let id = uuid::Uuid::new_v4().to_string();
        let wait = wait_secs.to_string();
        let args = [
            id.as_str(),
            a.toplevel,
            a.action.as_str(),
            wait.as_str(),
            if a.sync { "1" } else { "0" },
            a.deployment,
        ];
        let out = match self.run(START, &args, Some(GUARD.as_bytes()), sink).await {
            Ok(out) => out,
            Err(e) => return (None, Err(e)),
        };
        if !out.stdout.contains("__NIXOPS_GUARD_STARTED__") {
            return (None, Err(self.failure("starting the activation guard", &out)));
        }
        let guard = Guard { id, wait_secs };
        let code = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("__NIXOPS_RC__ "))
            .and_then(|c| c.trim().parse().ok());
        match code {
            Some(code) if out.success() => (Some(guard), Ok(code)),
            _ => (Some(guard), Err(self.failure("waiting for activation", &out))),
        }
    }

    /// Decides: "confirmed" (over a new connection) or a rollback reason
    /// (over the master). Returns the decision that stands, which is the
    /// guard's own (or "superseded") when that came first.
    async fn decide(&self, g: &Guard, decision: &str, fresh: bool) -> Result<String> {
        let args = [g.id.as_str(), decision];
        let out = if fresh {
            self.run_fresh(DECIDE, &args).await?
        } else {
            self.run(DECIDE, &args, None, Sink::quiet()).await?
        };
        match out.stdout.lines().next().filter(|_| out.success()) {
            Some(d) => Ok(d.trim().to_owned()),
            None => Err(self.failure("deciding", &out)),
        }
    }

    /// Confirms the new system over a new connection; false when the
    /// guard decided otherwise first. Afterwards the guard keeps the system.
    pub async fn confirm(&self, g: &Guard) -> Result<bool> {
        Ok(self.decide(g, "confirmed", true).await? == "confirmed")
    }

    /// Tells the guard to roll back now (unless it has decided already).
    pub async fn roll_back(&self, g: &Guard, reason: &str) -> Result<()> {
        self.decide(g, reason, false).await.map(|_| ())
    }

    /// Waits for the guard's end, reconnecting as needed (the machine may
    /// have lost sshd until the rollback brings it back). Afterwards the
    /// guard has finished; its log's own lines go to `events`.
    pub async fn guard_ending(&self, g: &Guard, events: &Events) -> Result<Ending> {
        // The guard decides by itself within wait_secs; rolling back takes a
        // little longer.
        let deadline = Instant::now() + Duration::from_secs(g.wait_secs + 120);
        loop {
            match self.run(OUTCOME, &[g.id.as_str()], None, Sink::quiet()).await {
                Ok(out) if out.success() => {
                    let mut lines = out.stdout.lines();
                    let outcome = lines.next().unwrap_or("").trim();
                    let ending = match outcome {
                        "kept" => Some(Ending::Kept),
                        "superseded" => Some(Ending::Superseded),
                        o => o
                            .strip_prefix("rolled-back ")
                            .map(|why| Ending::RolledBack(why.to_owned())),
                    };
                    if let Some(ending) = ending {
                        for l in lines.filter(|l| l.starts_with("nixops guard:")) {
                            events.log(Some(&self.name), l);
                        }
                        return Ok(ending);
                    }
                }
                _ => self.close().await,
            }
            if Instant::now() > deadline {
                return Err(Error::Failed {
                    what: "waiting for the guard".into(),
                    message: "the machine did not report the end of its guarded activation in time".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

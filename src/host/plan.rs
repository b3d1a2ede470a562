//! What `plan` asks a machine: what it runs and boots, closures, and the new
//! system's dry-activate, in one round trip that changes nothing.

use super::{Error, Host, Result};
use crate::nix::closure::Closure;
use crate::process::{Output, Sink};

const PLAN: &str = concat!(include_str!("closure-lib.sh"), include_str!("plan.sh"));

/// What `plan` learns from a machine ([`Host::plan`]).
#[derive(Debug, Clone, Default)]
pub struct Planned {
    /// What /run/current-system points at.
    pub current_system: Option<String>,
    /// What the system profile (the next boot's system) points at.
    pub profile: Option<String>,
    /// Whether the new system is valid in its store; None when it runs it.
    pub has_new: Option<bool>,
    /// The closure of what it runs, when asked for and it runs another
    /// system than the new one.
    pub closure: Option<Closure>,
    /// The new system's closure, when asked for and it is there.
    pub new_closure: Option<Closure>,
    /// What the new system's `switch-to-configuration dry-activate` said,
    /// when asked for and it could run (the new system is in the store, and
    /// the machine runs a system to compare it with).
    pub dry_activation: Option<DryActivation>,
}

/// What [`Host::plan`] asks for, besides what the machine runs and boots.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanQuery {
    /// The closure of what it runs.
    pub closure: bool,
    /// The new system's dry-activate, when the new system is there.
    pub dry_activate: bool,
    /// The new system's closure, when it is there (built elsewhere than
    /// here, it is only there).
    pub new_closure: bool,
}

/// A `switch-to-configuration dry-activate`: its exit code and every line
/// of its stderr (where NixOS says what it would do).
#[derive(Debug, Clone, Default)]
pub struct DryActivation {
    pub code: Option<i32>,
    pub lines: Vec<String>,
}

impl Host {
    /// What a deploy of `toplevel` would change, asked in one round trip
    /// that changes nothing on the machine: what it runs and boots, and,
    /// unless it runs `toplevel` already, whether `toplevel` is in its
    /// store, and what `ask` asks for besides.
    pub async fn plan(&self, toplevel: &str, ask: PlanQuery) -> Result<Planned> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let args = [
            toplevel,
            flag(ask.closure),
            flag(ask.dry_activate),
            flag(ask.new_closure),
        ];
        let out = self.run(PLAN, &args, None, Sink::quiet()).await?;
        if !out.success() {
            return Err(self.failure("asking the machine", &out));
        }
        parse_plan(toplevel, &out)
    }
}

fn parse_plan(toplevel: &str, out: &Output) -> Result<Planned> {
    let mut p = Planned::default();
    // The lines of the closure being listed (of what runs, or of the new
    // system), and both once listed.
    let mut listing: Option<(bool, Vec<&str>)> = None;
    let (mut old, mut new) = (None, None);
    let mut answered = false;
    for line in out.stdout.lines() {
        if let Some((is_new, lines)) = &mut listing {
            if line == "__NIXOPS_END__" {
                let done = std::mem::take(lines);
                if *is_new {
                    new = Some(done);
                } else {
                    old = Some(done);
                }
                listing = None;
            } else {
                lines.push(line);
            }
            continue;
        }
        let some = |v: &str| Some(v.to_owned()).filter(|v| !v.is_empty());
        if let Some(v) = line.strip_prefix("__NIXOPS_CURRENT__=") {
            p.current_system = some(v);
            answered = true;
        } else if let Some(v) = line.strip_prefix("__NIXOPS_PROFILE__=") {
            p.profile = some(v);
        } else if let Some(v) = line.strip_prefix("__NIXOPS_NEW__=") {
            p.has_new = Some(v == "present");
        } else if line == "__NIXOPS_CLOSURE__" || line == "__NIXOPS_NEW_CLOSURE__" {
            listing = Some((line == "__NIXOPS_NEW_CLOSURE__", Vec::new()));
        } else if let Some(v) = line.strip_prefix("__NIXOPS_DRY__=") {
            p.dry_activation = Some(DryActivation {
                code: v.trim().parse().ok(),
                lines: out.stderr.clone(),
            });
        }
    }
    let failed = |message: String| Error::Failed {
        what: "asking the machine".into(),
        message,
    };
    if !answered || listing.is_some() {
        return Err(failed(format!("unexpected answer: {:?}", out.stdout)));
    }
    let parse =
        |root: &str, lines: Vec<&str>| Closure::parse(root, lines).map_err(|e| failed(format!("{e:#}")));
    if let (Some(lines), Some(cur)) = (old, &p.current_system) {
        p.closure = Some(parse(cur, lines)?);
    }
    if let Some(lines) = new {
        p.new_closure = Some(parse(toplevel, lines)?);
    }
    Ok(p)
}

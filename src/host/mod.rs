//! A machine as every command and pipeline stage reaches it: its name and a
//! way to run things there. The machines of a network are reached over SSH,
//! through the one master connection each gets (see [`crate::ssh`]);
//! `apply-local` works on this very machine.
//!
//! Every operation on a machine is a method here, each one round trip that
//! runs a POSIX shell script of its own (the `*.sh` files beside this one,
//! given positional arguments, never spliced together with values). The
//! scripts that touch the system profile or the running system start with
//! `activation-lib.sh`: the machine's activation lock and record of its
//! newest activation.

mod build;
mod guard;
mod plan;

pub use guard::{Ending, Guard};
pub use plan::{DryActivation, PlanQuery, Planned};
/// What goes wrong on a machine, over either transport (locally, only
/// `Failed` and `Run` happen).
pub use ssh::Error;

use crate::process::{self, Output, Sink};
use crate::ssh::{self, Target};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The shared shell functions, prepended to every script that uses them.
macro_rules! with_lib {
    ($file:literal) => {
        concat!(include_str!("activation-lib.sh"), include_str!($file))
    };
}
pub(crate) use with_lib;

const PROBE: &str = with_lib!("probe.sh");
const ACTIVATE: &str = with_lib!("activate.sh");
const STATUS: &str = with_lib!("status.sh");
const BOOT_STATE: &str = include_str!("boot-state.sh");

/// A machine and the way to reach it.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its name in the network.
    pub name: String,
    transport: Transport,
}

#[derive(Debug, Clone)]
enum Transport {
    Ssh(Box<Target>),
    Local(Local),
}

/// This machine, for `apply-local`.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// Prefix for commands that need root: `sudo` (apply-local --sudo), or
    /// nothing as root. Tests enter a private mount namespace with it.
    pub escalation: Vec<String>,
}

/// `switch-to-configuration`'s action.
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
    pub fn runs_new_system(self) -> bool {
        matches!(self, Action::Switch | Action::Test)
    }
}

/// One activation of a system on a machine.
#[derive(Debug, Clone)]
pub struct Activation<'a> {
    pub toplevel: &'a str,
    pub action: Action,
    /// Whose it is (`deploy::record::activation_owner`: the deployment
    /// and machine; recorded on the machine, see [`Probe::kept`]).
    pub deployment: &'a str,
    /// Flush after setting the profile, and let switch-to-configuration
    /// flush too (false: `--no-sync`).
    pub sync: bool,
}

/// `switch-to-configuration`'s exit code for "nothing activated: the new
/// system takes effect only after a reboot".
pub const NEEDS_REBOOT: i32 = 100;
const UNCHANGED_MARK: &str = "__NIXOPS_UNCHANGED__";
const NOT_CURRENT_MARK: &str = "__NIXOPS_NOT_CURRENT__";

/// When an unguarded activation acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Not when the machine already runs the system (and boots it, unless
    /// testing): alwaysActivate off.
    Changed,
    /// Only when it runs the system, boots it (unless testing) and its
    /// newest activation is final: a re-activation, which a guard could
    /// only undo into the same system.
    Current,
}

/// How an unguarded activation went.
#[derive(Debug)]
pub struct Activated {
    /// Skipped ([`When::Changed`]): the machine already ran the system.
    pub unchanged: bool,
    /// Not done ([`When::Current`]): the machine is not as asked.
    pub not_current: bool,
    pub output: Output,
}

/// What a machine tells on first contact.
#[derive(Debug, Clone)]
pub struct Probe {
    pub boot_id: String,
    /// The path asked about is valid in its store.
    pub has_path: bool,
    /// What /run/current-system points at.
    pub current_system: Option<String>,
    /// Its newest activation, when that is final.
    pub kept: Option<Kept>,
}

/// A machine's newest activation when it is final (confirmed, or done
/// without a guard): for which deployment, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub deployment: String,
    pub toplevel: String,
}

impl Kept {
    /// Parses activation-lib.sh's `newest_kept` line.
    pub fn parse(line: &str) -> Option<Kept> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("kept"), Some(d), Some(t), None) => Some(Kept {
                deployment: d.to_owned(),
                toplevel: t.to_owned(),
            }),
            _ => None,
        }
    }
}

/// What `check` learns from a machine.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub reachable: bool,
    /// Refused: the machine presented another host key than the pinned one.
    pub host_key_changed: bool,
    pub error: Option<String>,
    pub boot_id: Option<String>,
    /// What /run/current-system points at.
    pub current_system: Option<String>,
    /// `systemctl is-system-running`.
    pub system_state: Option<String>,
    pub load: Option<String>,
    pub failed_units: Vec<String>,
    /// The newest activation, when it is final.
    pub kept: Option<Kept>,
}

impl Host {
    /// A host that is no machine of the network: `deploy --build-host`'s,
    /// reached as plain ssh reaches the destination (see
    /// [`Target::unpinned`]). Its name is the destination.
    pub fn build_host(destination: &str, persist_secs: u64) -> Result<Host> {
        Ok(Host::ssh(
            destination,
            Target::unpinned(destination, persist_secs)?,
        ))
    }

    pub fn ssh(name: &str, target: Target) -> Host {
        Host {
            name: name.to_owned(),
            transport: Transport::Ssh(Box::new(target)),
        }
    }

    pub fn local(name: &str, local: Local) -> Host {
        Host {
            name: name.to_owned(),
            transport: Transport::Local(local),
        }
    }

    /// The SSH connection, for what only SSH can do (an interactive login,
    /// scp, Nix's copy).
    pub fn ssh_target(&self) -> Option<&Target> {
        match &self.transport {
            Transport::Ssh(t) => Some(t),
            Transport::Local(_) => None,
        }
    }

    /// The SSH host key learned on first contact, if none was pinned.
    pub fn learned_host_key(&self) -> Option<String> {
        self.ssh_target().and_then(Target::learned_host_key)
    }

    pub fn is_local(&self) -> bool {
        matches!(self.transport, Transport::Local(_))
    }

    /// Runs a POSIX shell script as root with positional arguments (`$1`
    /// ...). A refused host key is an error of its own; any other outcome,
    /// failures included, is the caller's to judge from the output.
    pub async fn run(
        &self,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        sink: Sink<'_>,
    ) -> Result<Output> {
        match &self.transport {
            Transport::Ssh(t) => t.run_with_args(script, args, stdin, sink).await,
            Transport::Local(l) => {
                let mut cmd = l.command(script, args, true);
                Ok(process::run(&mut cmd, stdin, sink).await?)
            }
        }
    }

    /// [`run`](Self::run) with stdin written from several buffers in turn,
    /// straight from them: secrets stay in their zeroizing buffers.
    pub async fn run_fed(
        &self,
        script: &str,
        args: &[&str],
        stdin: &[&[u8]],
        sink: Sink<'_>,
    ) -> Result<Output> {
        let mut cmd = match &self.transport {
            Transport::Ssh(t) => t.command_with_args(script, args, true)?,
            Transport::Local(l) => l.command(script, args, true),
        };
        let out = process::run_fed(&mut cmd, Some(stdin), sink).await?;
        if let Transport::Ssh(t) = &self.transport
            && let Some(e) = t.host_key_changed(&out)
        {
            return Err(e.into());
        }
        Ok(out)
    }

    /// Runs a command line as the login user, not root (`ssh-for-each`).
    pub async fn run_as_user(&self, script: &str, sink: Sink<'_>) -> Result<Output> {
        let mut cmd = self.command(script, &[], false)?;
        Ok(process::run(&mut cmd, None, sink).await?)
    }

    /// Like [`run`](Self::run), but over a connection of its own rather than
    /// the master: proof that the machine still lets us in (magic
    /// rollback's confirmation). Locally, the same as `run`.
    pub async fn run_fresh(&self, script: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = match &self.transport {
            Transport::Ssh(t) => t.fresh_command(script, args)?,
            Transport::Local(l) => l.command(script, args, true),
        };
        let out = process::run(&mut cmd, None, Sink::quiet()).await?;
        if let Transport::Ssh(t) = &self.transport
            && let Some(e) = t.host_key_changed(&out)
        {
            return Err(e.into());
        }
        Ok(out)
    }

    /// Whether a failed run means the machine could not be reached at all.
    pub fn unreachable(&self, out: &Output) -> bool {
        matches!(self.transport, Transport::Ssh(_)) && out.code == Some(ssh::SSH_FAILURE)
    }

    /// An error for a failed run of `what`.
    pub fn failure(&self, what: &str, out: &Output) -> Error {
        match &self.transport {
            Transport::Ssh(t) => t.failure(what, out),
            Transport::Local(_) => Error::Failed {
                what: what.to_owned(),
                message: out.last_error(),
            },
        }
    }

    /// Closes the master connection (after a reboot killed the machine
    /// under it, or to reconnect); harmless when there is none.
    pub async fn close(&self) {
        if let Transport::Ssh(t) = &self.transport {
            t.close().await;
        }
    }

    /// First contact, one round trip: the boot id, whether `path` is valid
    /// in the machine's store, what it runs, and its newest final
    /// activation. Afterwards the master connection is open.
    pub async fn probe(&self, path: &str, sink: Sink<'_>) -> Result<Probe> {
        let out = self.run(PROBE, &[path], None, sink).await?;
        if !out.success() {
            return Err(self.failure("contacting the machine", &out));
        }
        // Not lines(): the third line may be empty, even as the last one.
        let mut lines = out.stdout.split('\n');
        let (Some(boot_id), Some(status), Some(current)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(Error::Failed {
                what: "contacting the machine".into(),
                message: format!("unexpected answer: {:?}", out.stdout),
            });
        };
        Ok(Probe {
            boot_id: boot_id.trim().to_owned(),
            has_path: status.trim() == "present",
            current_system: Some(current.trim().to_owned()).filter(|c| !c.is_empty()),
            kept: lines.next().and_then(Kept::parse),
        })
    }

    /// Copies `path`'s closure into the machine's store (letting it
    /// substitute what it can when `use_substitutes`). Afterwards the path
    /// is valid there. This machine's store has it already.
    pub async fn copy_closure(&self, path: &str, use_substitutes: bool, sink: Sink<'_>) -> Result<()> {
        match &self.transport {
            Transport::Ssh(t) => {
                match crate::nix::copy_closure(t, &[path.to_owned()], use_substitutes, sink).await {
                    // A full /nix shows as a database error or a dropped
                    // connection: say which side ran out.
                    Err(crate::nix::Error::CopyFailed(m)) if process::storage_trouble(&m) => {
                        let message = match self.full_side().await {
                            Some(side) => format!("{side}: {m}"),
                            None => m,
                        };
                        Err(Error::Failed {
                            what: "copying closure".into(),
                            message,
                        })
                    }
                    r => copied(r),
                }
            }
            Transport::Local(_) if !std::path::Path::new(path).exists() => Err(Error::Failed {
                what: "copying".into(),
                message: format!("{path} is not in this machine's store"),
            }),
            Transport::Local(_) => Ok(()),
        }
    }

    /// The command that runs `script` there (as root: through the
    /// escalation command), for what [`run`](Self::run) cannot do (a pipe).
    fn command(&self, script: &str, args: &[&str], as_root: bool) -> Result<tokio::process::Command> {
        match &self.transport {
            Transport::Ssh(t) => Ok(t.command_with_args(script, args, as_root)?),
            Transport::Local(l) => Ok(l.command(script, args, as_root)),
        }
    }

    /// Activates without a guard: profile (switch, boot), sync,
    /// switch-to-configuration, under the machine's activation lock as its
    /// newest activation, `when` says so (for `boot`, "runs" means "boots").
    /// Afterwards no guard of an earlier activation can act on the machine.
    pub async fn activate(&self, a: &Activation<'_>, when: When, sink: Sink<'_>) -> Result<Activated> {
        let id = uuid::Uuid::new_v4().to_string();
        let args = [
            id.as_str(),
            a.toplevel,
            a.action.as_str(),
            match when {
                When::Always => "0",
                When::Changed => "1",
                When::Current => "2",
            },
            if a.sync { "1" } else { "0" },
            a.deployment,
        ];
        let output = self.run(ACTIVATE, &args, None, sink).await?;
        if self.unreachable(&output) {
            return Err(self.failure("activation", &output));
        }
        Ok(Activated {
            unchanged: output.stdout.lines().any(|l| l == UNCHANGED_MARK),
            not_current: output.stdout.lines().any(|l| l == NOT_CURRENT_MARK),
            output,
        })
    }

    /// Reboots the machine. The connection goes with it.
    pub async fn reboot(&self) -> Result<()> {
        if self.is_local() {
            return Err(Error::Failed {
                what: "rebooting".into(),
                message: format!(
                    "‘{}’ is the machine nixops runs on; reboot it yourself",
                    self.name
                ),
            });
        }
        // The connection may drop before an answer comes back.
        let _ = self.run("systemctl reboot", &[], None, Sink::quiet()).await;
        self.close().await;
        Ok(())
    }

    /// The boot id and the system the machine runs; None while it cannot
    /// be reached (e.g. still rebooting).
    pub async fn boot_state(&self) -> Result<Option<(String, Option<String>)>> {
        let out = self.run(BOOT_STATE, &[], None, Sink::quiet()).await?;
        if !out.success() {
            return Ok(None);
        }
        let mut lines = out.stdout.split('\n');
        let id = lines.next().unwrap_or("").trim().to_owned();
        if id.is_empty() {
            return Ok(None);
        }
        let current = lines.next().map(str::trim).filter(|c| !c.is_empty());
        Ok(Some((id, current.map(str::to_owned))))
    }

    /// What `check` reports: reachable, up, what it runs, failed units,
    /// load. Never an error: an unreachable machine says why in `error`.
    pub async fn status(&self, sink: Sink<'_>) -> Status {
        let out = match self.run(STATUS, &[], None, sink).await {
            Ok(out) => out,
            Err(e) => {
                return Status {
                    host_key_changed: matches!(e, Error::HostKeyChanged(_)),
                    error: Some(format!("{e:#}")),
                    ..Default::default()
                };
            }
        };
        if self.unreachable(&out) || out.stdout.is_empty() {
            return Status {
                error: Some(self.failure("check", &out).to_string()),
                ..Default::default()
            };
        }
        let mut s = Status {
            reachable: true,
            ..Default::default()
        };
        for line in out.stdout.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().to_owned();
            match k {
                "boot" if !v.is_empty() => s.boot_id = Some(v),
                "current" if !v.is_empty() => s.current_system = Some(v),
                "state" if !v.is_empty() => s.system_state = Some(v),
                "load" => s.load = Some(v),
                "failed" => s.failed_units.push(v),
                "newest" => s.kept = Kept::parse(&v),
                _ => {}
            }
        }
        s
    }
}

/// A copy's outcome as the machine's error.
/// Below this, a store is full for all purposes (Nix's database needs room
/// to write its journal).
const FULL_KIB: u64 = 1024;

impl Host {
    /// Which side's /nix has run out of space, if one has: this machine's
    /// or the target's.
    async fn full_side(&self) -> Option<String> {
        let here = rustix::fs::statvfs("/nix/store")
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize) / 1024);
        if let Some(kib) = here.filter(|k| *k < FULL_KIB) {
            return Some(format!("no space left on this machine's /nix ({kib} KiB free)"));
        }
        let out = self
            .run(
                "df -Pk /nix/store 2>/dev/null | tail -n 1",
                &[],
                None,
                Sink::quiet(),
            )
            .await
            .ok()?;
        let kib: u64 = out.stdout.split_whitespace().nth(3)?.parse().ok()?;
        (kib < FULL_KIB).then(|| {
            format!(
                "no space left on the target's /nix ({} has {kib} KiB free)",
                self.name
            )
        })
    }
}

fn copied(r: std::result::Result<(), crate::nix::Error>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(crate::nix::Error::CopyFailed(message)) => Err(Error::Failed {
            what: "copying closure".into(),
            message,
        }),
        Err(e) => Err(Error::Run(e.into())),
    }
}

impl Local {
    fn command(&self, script: &str, args: &[&str], as_root: bool) -> tokio::process::Command {
        let mut argv: Vec<&str> = Vec::new();
        if as_root {
            argv.extend(self.escalation.iter().map(String::as_str));
        }
        argv.extend(["sh", "-c", script, "nixops"]);
        argv.extend(args);
        let mut cmd = process::command(argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }
}

#[cfg(test)]
mod tests;

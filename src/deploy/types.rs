//! What the pipeline's stages share: the run's options and context, the
//! machines going through it, and how each ended. The stage files use these
//! types; only the runner (mod.rs) uses the stages.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;

use serde::Serialize;

use super::error::Failure;
use crate::host::{Action, Host, Local, Probe};
use crate::keys::{self, KeyChanges};
use crate::network::{MachineFilter, MachineInfo, Network};
use crate::nix::NixOpts;
use crate::nix::closure::PackageDiff;
use crate::state::{Deployment, StoreBox, history};

#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Activate under a guard that rolls back unless confirmed (for
    /// machines that do not turn it off).
    pub magic_rollback: bool,
    /// Stop after a wave with a failure (None: when health checks exist).
    pub stop_on_failure: Option<bool>,
    /// Check each machine first and deploy only those not already running
    /// their new system.
    pub check: bool,
    /// Which machines to deploy.
    pub machines: MachineFilter,
    pub kill_obsolete: bool,
    pub dry_run: bool,
    /// Show which machines are new and which obsolete; change nothing.
    pub plan_only: bool,
    /// Evaluate the selected machines' systems, then stop (NixOps'
    /// `--evaluate-only`).
    pub evaluate_only: bool,
    /// Record the machines in state, then stop (NixOps: create resources).
    pub create_only: bool,
    pub build_only: bool,
    pub copy_only: bool,
    pub action: Action,
    pub always_activate: bool,
    pub allow_reboot: bool,
    pub force_reboot: bool,
    pub no_sync: bool,
    pub max_concurrent_copy: usize,
    pub max_concurrent_activate: Option<usize>,
    /// Seconds to wait for a rebooted machine to come back.
    pub reboot_timeout: u64,
    /// How the history records this run.
    pub recorded_as: history::Action,
    /// apply-local: the selected machine is this one, reached without SSH.
    pub local: Option<Local>,
    /// `--build-on-target` / `--no-build-on-target`: overrides every
    /// machine's `deployment.buildOnTarget`.
    pub build_on_target: Option<bool>,
    /// `--build-host`: an ssh destination that builds the toplevels of the
    /// machines not building on themselves, and sends them to them.
    pub build_host: Option<String>,
    /// `--builders`: Nix's remote builders for the deploying side's build
    /// (None: the network's machinesFile, if any).
    pub builders: Option<String>,
    /// Show what activation would change first (`--ask`), and ask.
    pub review: Review,
    /// Activate even machines whose `deployment.replaceUnknownProfiles =
    /// false` refuses the system they run (Colmena's flag).
    pub force_replace_unknown_profiles: bool,
    /// Send no keys (Colmena's `--no-keys`).
    pub no_keys: bool,
    /// Copy without letting the machines use their substituters (Colmena's
    /// `--no-substitute`), as for `deployment.hasFastConnection`.
    pub no_substitute: bool,
    /// Keep the built systems as GC roots `node-<name>` in this directory
    /// (Colmena's `--keep-result`: `.gcroots` beside the hive).
    pub keep_result: Option<std::path::PathBuf>,
}

/// Whether a deploy shows its plan before activating, and asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Review {
    #[default]
    No,
    /// Show it and go on (`--ask` answered by `--yes` or `--confirm`).
    Show,
    /// Show it and ask on the terminal.
    Ask,
}

impl DeployOptions {
    /// Whether the machine builds its own toplevel: it has a derivation to
    /// build and the command line or its `deployment.buildOnTarget` says so.
    pub fn builds_on_target(&self, m: &Machine) -> bool {
        m.drv_path.is_some() && self.build_on_target.unwrap_or(m.info.build_on_target)
    }
}

/// Everything a stage needs about the run.
pub struct Ctx {
    pub store: Arc<Mutex<StoreBox>>,
    pub deployment: Deployment,
    pub nix: NixOpts,
    /// ControlPersist seconds for master connections.
    pub ssh_persist: u64,
}

impl Ctx {
    /// The same run, with the deployment as state holds it now (after a
    /// stage changed it).
    pub fn reloaded(&self) -> Result<Ctx> {
        let deployment = self
            .store
            .lock()
            .expect("state lock")
            .load(&self.deployment.uuid)?;
        Ok(Ctx {
            store: self.store.clone(),
            deployment,
            nix: self.nix.clone(),
            ssh_persist: self.ssh_persist,
        })
    }

    /// What key handling needs of the run.
    pub fn keys(&self) -> keys::Context<'_> {
        keys::Context {
            deployment: &self.deployment,
            nix: &self.nix,
            store: &self.store,
        }
    }
}

/// One selected machine going through the pipeline.
#[derive(Clone)]
pub struct Machine {
    pub name: String,
    pub resource_id: i64,
    pub info: MachineInfo,
    pub toplevel: String,
    /// The toplevel's derivation (None when it is only known as a path,
    /// e.g. from a rollback generation).
    pub drv_path: Option<String>,
    pub host: Host,
    /// Boot id seen when we first reached it (to notice a reboot).
    pub boot_id: Option<String>,
    /// What the first contact found (None: not contacted yet).
    pub probe: Option<Probe>,
}

impl Machine {
    /// A machine of the evaluated network, selected (so with a toplevel),
    /// reached as state says (its pinned host key), or `local`ly.
    pub fn evaluated(
        ctx: &Ctx,
        name: &str,
        m: &MachineInfo,
        resource_id: i64,
        local: Option<&Local>,
    ) -> Result<Machine> {
        let res = ctx.deployment.resources.get(name);
        Ok(Machine {
            name: name.to_owned(),
            resource_id,
            info: m.clone(),
            toplevel: m.toplevel.clone().expect("selected machines have a toplevel"),
            drv_path: m.drv_path.clone(),
            host: match (local, &m.target_host) {
                (Some(local), _) => Host::local(name, local.clone()),
                (None, Some(_)) => super::record::host(&ctx.deployment, name, m, res, ctx.ssh_persist)?,
                // Deployed only on itself: a build here never contacts it.
                (None, None) => Host::local(name, Local::default()),
            },
            boot_id: None,
            probe: None,
        })
    }
}

/// How a machine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deployed,
    /// Activation skipped: it already had the new system (alwaysActivate off).
    Unchanged,
    /// Stopped on purpose at --build-only / --copy-only / --dry-activate.
    Stopped(&'static str),
    /// The new system was activated, then taken back (magic rollback).
    RolledBack(String),
    Failed(Failure),
    /// Left untouched because an earlier wave failed.
    NotDeployed,
}

impl Outcome {
    /// In words, for the history.
    pub fn result(&self) -> String {
        match self {
            Outcome::Deployed => "deployed".into(),
            Outcome::Unchanged => "unchanged".into(),
            Outcome::Stopped(what) => (*what).into(),
            Outcome::RolledBack(_) => "rolled back".into(),
            Outcome::Failed(f) => f.result(),
            Outcome::NotDeployed => "not deployed".into(),
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::RolledBack(_) | Outcome::Failed(_) | Outcome::NotDeployed
        )
    }
}

/// What a deploy would do to the selected machines (`nixops plan`, `deploy
/// --ask`). Its JSON is the documented shape of `plan --json` (docs/plan.md).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub machines: BTreeMap<String, MachinePlan>,
}

impl Plan {
    /// How many machines have each status.
    pub fn count(&self, status: PlanStatus) -> usize {
        self.machines.values().filter(|m| m.status == status).count()
    }

    /// Some machine could not be planned, or a deploy would fail there.
    pub fn incomplete(&self) -> bool {
        self.machines.values().any(|m| {
            matches!(m.status, PlanStatus::Unreachable | PlanStatus::Failed) || m.keys.error.is_some()
        })
    }
}

/// One machine's part of a [`Plan`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachinePlan {
    pub status: PlanStatus,
    /// Why it is unreachable or failed.
    pub error: Option<String>,
    /// What it runs (/run/current-system), as far as it could be asked.
    pub current: Option<String>,
    /// What it boots next (the system profile).
    pub profile: Option<String>,
    /// The system a deploy would activate.
    pub new: String,
    /// Whether a deploy would run its switch-to-configuration (an unchanged
    /// machine too, unless deployment.alwaysActivate is false).
    pub activate: bool,
    pub packages: PackageDiff,
    pub closure_size: ClosureSize,
    pub units: UnitChanges,
    pub keys: KeyChanges,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanStatus {
    /// It runs the new system and boots it: a deploy changes no system.
    Unchanged,
    /// It runs or boots another system.
    Changed,
    /// Never deployed by this deployment (state records no system for it).
    New,
    /// It could not be reached.
    Unreachable,
    /// It could not be planned: its build failed, it presented another host
    /// key than the pinned one, or it gave an unexpected answer.
    Failed,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Unchanged => "unchanged",
            PlanStatus::Changed => "changed",
            PlanStatus::New => "new",
            PlanStatus::Unreachable => "unreachable",
            PlanStatus::Failed => "failed",
        }
    }
}

/// Closure sizes (sums of NAR sizes, bytes); None where not measured (the
/// machine runs no system, or runs the new one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClosureSize {
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// The units the new system's `switch-to-configuration dry-activate` says
/// it would stop, start, restart and reload, from its own lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitChanges {
    /// Whether dry-activate ran and said; otherwise `why` says why not and
    /// the lists are empty.
    pub known: bool,
    pub why: Option<String>,
    pub stop: Vec<String>,
    pub start: Vec<String>,
    pub restart: Vec<String>,
    pub reload: Vec<String>,
    /// Changed units it would leave running ("would NOT stop the following
    /// changed units", e.g. `restartIfChanged = false`).
    pub not_stopped: Vec<String>,
    /// "would restart systemd".
    pub restart_systemd: bool,
    /// dry-activate exited 100: the new system takes effect only after a
    /// reboot (its init interface changed).
    pub needs_reboot: bool,
    /// Its other "would ..." lines (e.g. "would stop swap device: ...").
    pub other: Vec<String>,
}

/// Every machine's outcome and when it was reached.
pub struct Outcomes {
    pub started: Instant,
    pub map: BTreeMap<String, (Outcome, f64)>,
    /// Each evaluated machine's inputs digest, for the history.
    pub inputs: BTreeMap<String, String>,
    /// The systems `--check` found machines running, for the history.
    pub running: BTreeMap<String, String>,
}

impl Outcomes {
    pub fn new(started: Instant) -> Self {
        Outcomes {
            started,
            map: BTreeMap::new(),
            inputs: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: &str, o: Outcome) {
        self.insert_at(name, o, Instant::now());
    }

    /// [`Outcomes::insert`] for a machine that ended at `at`.
    pub fn insert_at(&mut self, name: &str, o: Outcome, at: Instant) {
        let secs = at.saturating_duration_since(self.started).as_secs_f64();
        self.map.insert(name.to_owned(), (o, secs));
    }
}

/// The network a deployment's state describes.
pub fn network_of(d: &Deployment) -> Result<Network> {
    Network::of(d)
}

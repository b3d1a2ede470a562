//! What the pipeline's stages share: the run's options and context, the
//! machines going through it, and how each ended. The stage files use these
//! types; only the runner (mod.rs) uses the stages.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;

use crate::host::{Action, Host, Local, Probe};
use crate::keys;
use crate::network::{MachineFilter, MachineInfo, Network};
use crate::nix::NixOpts;
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
    Failed {
        stage: &'static str,
        error: String,
    },
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
            Outcome::Failed { stage, .. } => format!("{stage} failed"),
            Outcome::NotDeployed => "not deployed".into(),
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::RolledBack(_) | Outcome::Failed { .. } | Outcome::NotDeployed
        )
    }
}

/// Every machine's outcome and when it was reached.
pub struct Outcomes {
    pub started: Instant,
    pub map: BTreeMap<String, (Outcome, f64)>,
}

impl Outcomes {
    pub fn new(started: Instant) -> Self {
        Outcomes {
            started,
            map: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, name: &str, o: Outcome) {
        self.map
            .insert(name.to_owned(), (o, self.started.elapsed().as_secs_f64()));
    }
}

/// The network a deployment's state describes.
pub fn network_of(d: &Deployment) -> Result<Network> {
    Network::of(d)
}

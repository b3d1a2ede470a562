//! Colmena's `apply [GOAL]`, `build` and `upload-keys`, with Colmena's
//! options, on the deployment bound to the hive (hive.rs). They run the
//! same pipeline as `deploy`: state, history, magic rollback and all.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::Global;
use crate::deploy::{self, Action, DeployOptions, record};
use crate::network::NixFiles;

/// Colmena's goals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Goal {
    /// Build the systems only
    Build,
    /// Build and copy them to the machines; activate nothing
    Push,
    /// Activate now and make it the boot default
    Switch,
    /// Make it the boot default only
    Boot,
    /// Activate now only
    Test,
    /// Show what activation would do
    DryActivate,
    /// Send the machines' deployment.keys only
    #[value(alias = "upload-keys")]
    Keys,
}

/// Colmena's deploy options (its `DeployOpts`), shared by `apply`, `build`
/// and `upload-keys`.
#[derive(Args, Debug)]
pub struct DeployOpts {
    /// Machines to act on, comma-separated: names, globs, @tags
    #[arg(long, value_name = "NODES", value_delimiter = ',', help_heading = super::heading::SELECTION, add = super::completions::selector())]
    pub on: Vec<String>,
    /// Machines evaluated at once (0: no limit; default: one per core)
    #[arg(long, value_name = "LIMIT", help_heading = super::heading::EVALUATION)]
    pub eval_node_limit: Option<usize>,
    /// Accepted as in Colmena (chunked, streaming): machines are always
    /// evaluated in parallel and built as each is evaluated
    #[arg(long, hide = true, value_name = "EVALUATOR", help_heading = super::heading::EVALUATION)]
    pub evaluator: Option<Evaluator>,
    /// Keep the built systems as GC roots in .gcroots beside the hive
    #[arg(long, help_heading = super::heading::BUILD)]
    pub keep_result: bool,
    /// Build each machine's system on the machine itself
    #[arg(long, overrides_with = "no_build_on_target", help_heading = super::heading::BUILD)]
    pub build_on_target: bool,
    /// Build every machine's system here, whatever its deployment.buildOnTarget says
    #[arg(long, help_heading = super::heading::BUILD)]
    pub no_build_on_target: bool,
    /// Copy everything from here: the machines use no substituters
    #[arg(long, alias = "no-substitutes", help_heading = super::heading::COPY)]
    pub no_substitute: bool,
    /// Accepted as in Colmena: copies are never gzipped by this tool
    #[arg(long, hide = true, help_heading = super::heading::COPY)]
    pub no_gzip: bool,
    /// Machines deployed at once: copied to, and activated in waves of (0: no limit)
    #[arg(short = 'p', long, value_name = "LIMIT", default_value_t = 10, help_heading = super::heading::ACTIVATION)]
    pub parallel: usize,
    /// Send no deployment.keys
    #[arg(long, help_heading = super::heading::ACTIVATION)]
    pub no_keys: bool,
    /// Reboot the machines after activation and wait until they are back
    /// (the default goal becomes boot)
    #[arg(long, help_heading = super::heading::ACTIVATION)]
    pub reboot: bool,
    /// Activate without the guard that rolls back unconfirmed machines
    /// (Colmena has none; this tool's deploys have it)
    #[arg(long, help_heading = super::heading::SAFETY)]
    pub no_magic_rollback: bool,
    /// Deploy even machines with deployment.replaceUnknownProfiles = false
    /// that run a system this deployer does not know
    #[arg(long, help_heading = super::heading::SAFETY)]
    pub force_replace_unknown_profiles: bool,
    /// Print every line of output instead of the live display
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Evaluator {
    Chunked,
    Streaming,
}

#[derive(Args, Debug)]
pub struct Opts {
    /// What to do: build, push, switch, boot, test, dry-activate, keys
    /// (default: switch; boot with --reboot)
    #[arg(value_enum)]
    pub goal: Option<Goal>,
    #[command(flatten)]
    pub deploy: DeployOpts,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let goal = o
        .goal
        .unwrap_or(if o.deploy.reboot { Goal::Boot } else { Goal::Switch });
    apply(g, goal, o.deploy).await
}

pub async fn apply(g: &Global, goal: Goal, o: DeployOpts) -> Result<i32> {
    if o.no_keys && goal == Goal::Keys {
        bail!("--no-keys cannot be used when the goal is to upload keys");
    }
    if o.reboot && matches!(goal, Goal::Test | Goal::DryActivate) {
        bail!("--reboot cannot be combined with the goal {goal:?} (a reboot starts the boot default)");
    }
    if o.verbose || goal == Goal::DryActivate {
        crate::ui::force_plain();
    }
    let mut session = g.hive_session().await?;
    if let Some(n) = o.eval_node_limit {
        // 0: every machine at once (a process each, as many as there are).
        session.ctx.nix.eval.jobs = if n == 0 { 1 << 16 } else { n };
    }
    let machines = crate::network::MachineFilter::new(&o.on, &[]);
    if goal == Goal::Keys {
        return upload_keys(&session.ctx, &machines, g.ssh_persist).await;
    }
    let parallel = if o.parallel == 0 { usize::MAX } else { o.parallel };
    let keep_result = if o.keep_result {
        Some(gcroots_dir(&session.ctx.deployment)?)
    } else {
        None
    };
    let opts = DeployOptions {
        magic_rollback: !o.no_magic_rollback,
        machines,
        build_only: goal == Goal::Build,
        copy_only: goal == Goal::Push,
        action: match goal {
            Goal::Boot => Action::Boot,
            Goal::Test => Action::Test,
            Goal::DryActivate => Action::DryActivate,
            _ => Action::Switch,
        },
        force_reboot: o.reboot,
        max_concurrent_copy: parallel,
        max_concurrent_activate: Some(parallel),
        reboot_timeout: 600,
        build_on_target: match (o.build_on_target, o.no_build_on_target) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        force_replace_unknown_profiles: o.force_replace_unknown_profiles,
        no_keys: o.no_keys,
        no_substitute: o.no_substitute,
        keep_result,
        ..Default::default()
    };
    deploy::run(&session.ctx, opts).await
}

/// Where `--keep-result` keeps its roots: `.gcroots` in the hive's
/// directory (Colmena's place); a flake URL has none.
fn gcroots_dir(d: &crate::state::Deployment) -> Result<std::path::PathBuf> {
    match crate::network::Source::of(d)?.local_dir() {
        Some(dir) => Ok(dir.join(".gcroots")),
        None => bail!("--keep-result keeps the results beside the hive, and this hive is no local directory"),
    }
}

/// Colmena's `keys` goal: evaluate the machines' deployment options (no
/// systems), record them, and send their keys.
async fn upload_keys(ctx: &deploy::Ctx, filter: &crate::network::MachineFilter, persist: u64) -> Result<i32> {
    let started = Instant::now();
    let network = deploy::network_of(&ctx.deployment)?;
    let files = NixFiles::write()?;
    let info = network.deployment_options(&files, &ctx.nix).await?;
    crate::network::check_apply_all(&info.network, filter)?;
    let mut recorder = record::Recorder::new(ctx);
    let mut machines = Vec::new();
    for (name, m) in deploy::select::reachable(&info, filter)? {
        let id = recorder
            .machine(ctx, name, m)?
            .with_context(|| format!("machine ‘{name}’ is not in state"))?;
        let host = record::host(
            &ctx.deployment,
            name,
            m,
            ctx.deployment.resources.get(name),
            persist,
        )?;
        machines.push((name.clone(), id, host));
    }
    let targets: Vec<crate::keys::KeyTarget> = machines
        .iter()
        .map(|(name, id, host)| crate::keys::KeyTarget {
            name,
            resource_id: *id,
            host,
        })
        .collect();
    super::send_keys::send(ctx, &targets, started).await
}

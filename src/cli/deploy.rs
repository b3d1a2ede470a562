use anyhow::{Result, bail};
use clap::Args;

use super::{Global, heading};
use crate::deploy::{self, Action, DeployOptions, Review};

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
    /// Evaluate the selected machines (their systems too) and stop; change nothing
    #[arg(long, help_heading = heading::EVALUATION)]
    pub evaluate_only: bool,
    /// Show which machines are new or obsolete; change nothing
    #[arg(long, help_heading = heading::EVALUATION)]
    pub plan_only: bool,
    /// Evaluate and show what would be built; build nothing
    #[arg(long, help_heading = heading::BUILD)]
    pub dry_run: bool,
    /// Build, but do not copy or activate
    #[arg(long, help_heading = heading::BUILD)]
    pub build_only: bool,
    /// Repair corrupted or missing store paths while building
    #[arg(long, help_heading = heading::BUILD)]
    pub repair: bool,
    /// Build each machine's system on the machine itself, whatever its deployment.buildOnTarget says
    #[arg(long, overrides_with = "no_build_on_target", help_heading = heading::BUILD)]
    pub build_on_target: bool,
    /// Build every machine's system here (or on --build-host), whatever its deployment.buildOnTarget says
    #[arg(long, help_heading = heading::BUILD)]
    pub no_build_on_target: bool,
    /// Build the systems on this host (an ssh destination: [user@]host or ssh://[user@]host[:port]) and copy them from there to the machines
    #[arg(long, value_name = "HOST", conflicts_with = "builders", help_heading = heading::BUILD)]
    pub build_host: Option<String>,
    /// Nix remote builders for the build here, in Nix's `builders` syntax (`@FILE`: a machines file); instead of network.machinesFile
    #[arg(long, value_name = "SPEC", help_heading = heading::BUILD)]
    pub builders: Option<String>,
    /// Build and copy, but do not activate
    #[arg(long, help_heading = heading::COPY)]
    pub copy_only: bool,
    /// How many machines to copy to at once
    #[arg(long, default_value_t = 5, help_heading = heading::COPY)]
    pub max_concurrent_copy: usize,
    /// Show what activation would do
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub dry_activate: bool,
    /// Activate without making the new system the boot default
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub test: bool,
    /// Make the new system the boot default without activating it
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub boot: bool,
    /// Activate even machines whose system did not change
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub always_activate: bool,
    /// Reboot machines whose activation asks for it
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub allow_reboot: bool,
    /// Reboot every machine into the new system
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub force_reboot: bool,
    /// Do not flush the machines' disks after setting the profile
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub no_sync: bool,
    /// How many machines to activate at once (default: all)
    #[arg(long, help_heading = heading::ACTIVATION)]
    pub max_concurrent_activate: Option<usize>,
    /// Seconds to wait for a rebooted machine
    #[arg(long, default_value_t = 600, help_heading = heading::ACTIVATION)]
    pub reboot_timeout: u64,
    /// Activate without the guard that rolls back unconfirmed machines
    #[arg(long, help_heading = heading::SAFETY)]
    pub no_magic_rollback: bool,
    /// Stop the rollout after a wave with a failure (default when health checks exist)
    #[arg(long, overrides_with = "no_stop_on_failure", help_heading = heading::SAFETY)]
    pub stop_on_failure: bool,
    /// Go on with later waves after a failure
    #[arg(long, help_heading = heading::SAFETY)]
    pub no_stop_on_failure: bool,
    /// Check the machines first; deploy only those not running their new system
    #[arg(long, help_heading = heading::SAFETY)]
    pub check: bool,
    /// Show what activation would change on every machine (as `nixops plan`,
    /// after copying), then ask y/N on the terminal; without a terminal,
    /// refuse unless --yes or --confirm answers
    #[arg(long, help_heading = heading::SAFETY)]
    pub ask: bool,
    /// Answer yes to --ask's question: show the plan, then deploy
    #[arg(long, requires = "ask", help_heading = heading::SAFETY)]
    pub yes: bool,
    /// Deploy machines with deployment.replaceUnknownProfiles = false even
    /// when they run a system this deployer does not know (as in Colmena)
    #[arg(long, help_heading = heading::SAFETY)]
    pub force_replace_unknown_profiles: bool,
    /// Forget machines that are no longer in the network
    #[arg(short = 'k', long, help_heading = heading::STATE)]
    pub kill_obsolete: bool,
    /// Only record the machines in state (existing machines need no creating)
    #[arg(long, help_heading = heading::STATE)]
    pub create_only: bool,
    /// Accepted for NixOps compatibility: existing machines are never recreated
    #[arg(long, help_heading = heading::STATE)]
    pub allow_recreate: bool,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let exclusive = [o.dry_activate, o.test, o.boot].iter().filter(|b| **b).count();
    if exclusive > 1 {
        bail!("--dry-activate, --test and --boot exclude each other");
    }
    if o.force_reboot && (o.test || o.dry_activate) {
        bail!("--force-reboot cannot be combined with --test or --dry-activate");
    }
    let action = if o.dry_activate {
        Action::DryActivate
    } else if o.test {
        Action::Test
    } else if o.boot || o.force_reboot {
        Action::Boot
    } else {
        Action::Switch
    };
    let review = match (o.ask, o.yes || g.confirm) {
        (false, _) => Review::No,
        (true, true) => Review::Show,
        (true, false) => Review::Ask,
    };
    if o.ask {
        let stops = [
            (o.dry_run, "--dry-run"),
            (o.plan_only, "--plan-only"),
            (o.evaluate_only, "--evaluate-only"),
            (o.create_only, "--create-only"),
            (o.build_only, "--build-only"),
            (o.copy_only, "--copy-only"),
            (o.dry_activate, "--dry-activate"),
        ];
        if let Some((_, opt)) = stops.iter().find(|(on, _)| *on) {
            bail!(
                "--ask asks before activating; {opt} activates nothing (use ‘nixops plan’ to see what a deploy would change)"
            );
        }
    }
    if review == Review::Ask && !crate::ui::can_ask() {
        bail!(
            "deploy --ask: no terminal to ask on; answer with --yes (or --confirm) to deploy after showing the plan"
        );
    }
    let mut session = g.session()?;
    session.ctx.nix.repair = o.repair;
    let opts = DeployOptions {
        magic_rollback: !o.no_magic_rollback,
        stop_on_failure: match (o.stop_on_failure, o.no_stop_on_failure) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        check: o.check,
        machines: o.machines.filter(),
        kill_obsolete: o.kill_obsolete,
        dry_run: o.dry_run,
        plan_only: o.plan_only,
        evaluate_only: o.evaluate_only,
        create_only: o.create_only,
        build_only: o.build_only,
        copy_only: o.copy_only,
        action,
        always_activate: o.always_activate,
        allow_reboot: o.allow_reboot,
        force_reboot: o.force_reboot,
        no_sync: o.no_sync,
        max_concurrent_copy: o.max_concurrent_copy,
        max_concurrent_activate: o.max_concurrent_activate,
        reboot_timeout: o.reboot_timeout,
        local: None,
        build_on_target: match (o.build_on_target, o.no_build_on_target) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        build_host: o.build_host,
        builders: o.builders,
        recorded_as: Default::default(),
        review,
        force_replace_unknown_profiles: o.force_replace_unknown_profiles,
        no_keys: false,
        no_substitute: false,
        keep_result: None,
    };
    deploy::run(&session.ctx, opts).await
}

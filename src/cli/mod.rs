//! The command line: NixOps' global options and subcommands. Each subcommand
//! lives in its own file and stays thin: it parses, then calls the library.

mod apply;
mod apply_local;
mod backups;
mod check;
mod clone;
mod completions;
mod copy_closure;
mod create;
mod delete;
mod delete_resources;
mod deploy;
mod destroy;
mod dump_nix_paths;
mod edit;
mod eval;
mod exec;
mod export;
mod forget_host_key;
mod generations;
mod history;
mod hive;
mod import;
mod info;
mod list;
mod list_plugins;
mod man;
mod modify;
mod mount;
mod nix_info;
mod plan;
mod reboot;
mod rename;
mod repl;
mod scp;
mod send_keys;
mod set_args;
mod show_arguments;
mod show_console_output;
mod show_option;
mod show_physical;
mod ssh;
mod ssh_for_each;
mod start_stop;
mod unlock;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::deploy::Ctx;
use crate::nix::NixOpts;
use crate::state::{self, Access, Deployment, StoreBox};

#[derive(Parser, Debug)]
#[command(
    name = "nixops",
    version,
    about = "Deploy networks of NixOS machines",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The headings that group options in `--help` and the man pages, the same
/// for the global options, `deploy` and Colmena's `apply`: a long list reads
/// by the stage each option is about.
pub mod heading {
    pub const SELECTION: &str = "Selection";
    pub const EVALUATION: &str = "Evaluation";
    pub const BUILD: &str = "Build";
    pub const COPY: &str = "Copy";
    pub const ACTIVATION: &str = "Activation";
    pub const SAFETY: &str = "Safety and rollback";
    pub const STATE: &str = "State and global";
}

/// Options every subcommand takes, as in NixOps.
#[derive(Args, Debug, Clone)]
// After each command's own options under the same heading.
#[command(next_display_order = 1000)]
pub struct Global {
    /// The Colmena hive (as Colmena's -f): a hive.nix, a flake.nix, a
    /// directory with one, or a flake URL. Without it and without -d, the
    /// Colmena commands look for flake.nix or hive.nix in the current
    /// directory and its parents, and use the deployment bound to it
    /// (created on first use)
    #[arg(short = 'f', long = "config", global = true, value_name = "CONFIG", help_heading = heading::EVALUATION)]
    pub config: Option<PathBuf>,
    /// The network: a directory with nixops.nix or flake.nix (as NixOps 2.0;
    /// DIR#NAME: the flake's nixopsConfigurations.NAME), or a flake URL.
    /// `create` and `modify` record it; other commands use it instead of the
    /// recorded one for this run
    #[arg(long, global = true, value_name = "DIR", help_heading = heading::EVALUATION)]
    pub network: Option<String>,
    /// Flake networks: override an input of the flake (not recorded in its flake.lock)
    #[arg(long = "override-input", visible_alias = "flake-override-input", global = true, num_args = 2, value_names = ["NAME", "URL"], action = clap::ArgAction::Append, help_heading = heading::EVALUATION)]
    pub override_input: Vec<String>,
    /// Flake networks: evaluate impurely (allows NIX_PATH, <nixpkgs>, builtins.getEnv...)
    #[arg(long, global = true, help_heading = heading::EVALUATION)]
    pub impure: bool,
    /// Add a path to the Nix expression search path
    #[arg(short = 'I', global = true, value_name = "PATH", help_heading = heading::EVALUATION)]
    pub nix_path: Vec<String>,
    /// Print a stack trace on Nix evaluation errors
    #[arg(long, global = true, help_heading = heading::EVALUATION)]
    pub show_trace: bool,
    /// Run Nix evaluations in read-only mode: nothing is written to the Nix
    /// store (commands that build refuse it)
    #[arg(long, global = true, help_heading = heading::EVALUATION)]
    pub read_only_mode: bool,
    /// Nix processes evaluating machines at once (default: one per core)
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true,
        help_heading = heading::EVALUATION
    )]
    pub eval_jobs: usize,
    /// Memory an evaluation worker may grow to before it is started anew on
    /// its remaining machines, in MiB (0: no limit)
    #[arg(long, global = true, value_name = "MB", default_value_t = 4096, help_heading = heading::EVALUATION)]
    pub eval_max_memory: u64,
    /// Evaluate every machine, without the evaluation cache (neither read nor written)
    #[arg(long, global = true, help_heading = heading::EVALUATION)]
    pub no_eval_cache: bool,
    /// Maximum number of build jobs
    #[arg(short = 'j', long = "max-jobs", global = true, help_heading = heading::BUILD)]
    pub max_jobs: Option<String>,
    /// Maximum number of CPU cores per build job
    #[arg(long, global = true, help_heading = heading::BUILD)]
    pub cores: Option<u32>,
    /// Keep going after failed builds
    #[arg(long, global = true, help_heading = heading::BUILD)]
    pub keep_going: bool,
    /// Keep the build directories of failed builds
    #[arg(short = 'K', long, global = true, help_heading = heading::BUILD)]
    pub keep_failed: bool,
    /// Build from source when substitution fails
    #[arg(long, global = true, help_heading = heading::BUILD)]
    pub fallback: bool,
    /// Hide build output
    #[arg(long, global = true, help_heading = heading::BUILD)]
    pub no_build_output: bool,
    /// Set a Nix option (may be given several times)
    #[arg(long = "option", visible_alias = "nix-option", id = "nix_option", global = true, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append, help_heading = heading::BUILD)]
    pub option: Vec<String>,
    /// Deployment name, UUID or UUID prefix
    #[arg(short = 'd', long = "deployment", global = true, env = "NIXOPS_DEPLOYMENT", help_heading = heading::STATE, add = completions::deployment())]
    pub deployment: Option<String>,
    /// The state: a file, or a PostgreSQL database (postgresql://user@host:port/db or key=value)
    #[arg(short = 's', long = "state", global = true, env = "NIXOPS_STATE", help_heading = heading::STATE)]
    pub state: Option<PathBuf>,
    /// Show every command that is run
    #[arg(long, global = true, help_heading = heading::STATE)]
    pub debug: bool,
    /// Answer yes to every question
    #[arg(long, global = true, help_heading = heading::STATE)]
    pub confirm: bool,
    /// Seconds an SSH master connection stays open after the command ends
    #[arg(long, global = true, env = "NIXOPS_SSH_PERSIST", default_value_t = 60, help_heading = heading::STATE)]
    pub ssh_persist: u64,
}

/// `--include` / `--exclude` / `--on`, taken by every command that acts on
/// machines. Each takes names, globs (`web-*`) and tags (`@db`).
#[derive(Args, Debug, Clone, Default)]
pub struct Selection {
    /// Only these machines (names, globs, @tags)
    #[arg(long, num_args = 1.., value_name = "MACHINE", help_heading = heading::SELECTION, add = completions::selector())]
    pub include: Vec<String>,
    /// Not these machines (names, globs, @tags)
    #[arg(long, num_args = 1.., value_name = "MACHINE", help_heading = heading::SELECTION, add = completions::selector())]
    pub exclude: Vec<String>,
    /// Only these machines, comma-separated (as in Colmena): names, globs, @tags
    #[arg(long, value_name = "MACHINES", value_delimiter = ',', help_heading = heading::SELECTION, add = completions::selector())]
    pub on: Vec<String>,
}

impl Selection {
    pub fn filter(&self) -> crate::network::MachineFilter {
        let include: Vec<String> = self
            .include
            .iter()
            .chain(&self.on)
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        crate::network::MachineFilter::new(&include, &self.exclude)
    }
}

#[derive(Subcommand, Debug)]
// Commands in the order written here, `help` last: after Global, clap would
// number them on from 1000, behind its own `help`.
#[command(next_display_order = 0)]
pub enum Command {
    /// List all known deployments
    List(list::Opts),
    /// Check the state of the machines
    Check(check::Opts),
    /// Create a new deployment
    Create(create::Opts),
    /// Change the network files or name of a deployment
    Modify(modify::Opts),
    /// Clone a deployment
    Clone(clone::Opts),
    /// Rename a machine of a deployment (a deployment: modify -n)
    Rename(rename::Opts),
    /// Delete a deployment
    Delete(delete::Opts),
    /// Remove resources from the state only (each after a question); the machines are left as they are
    DeleteResources(delete_resources::Opts),
    /// Mount a directory of a machine here, with sshfs
    Mount(mount::Opts),
    /// Show the state of a deployment
    Info(info::Opts),
    /// Set or unset arguments of the network files
    SetArgs(set_args::Opts),
    /// Show the arguments of the network files
    ShowArguments(show_arguments::Opts),
    /// Deploy the network
    Deploy(deploy::Opts),
    /// Deploy the hive (as Colmena): build, push, switch, boot, test, dry-activate or keys
    Apply(apply::Opts),
    /// Build the hive's systems (as Colmena: `apply build`)
    Build {
        #[command(flatten)]
        deploy: apply::DeployOpts,
    },
    /// Send the hive's deployment.keys (as Colmena: `apply keys`)
    UploadKeys {
        #[command(flatten)]
        deploy: apply::DeployOpts,
    },
    /// Evaluate an expression of `{ lib, pkgs, nodes }` against the network, print JSON (as Colmena)
    #[command(alias = "introspect")]
    Eval(eval::Opts),
    /// Run a command on the selected machines (as Colmena)
    Exec(exec::Opts),
    /// Start `nix repl` with the network's `nodes`, `lib` and `pkgs` (as Colmena)
    Repl,
    /// Show what the deploying side's Nix is and can do (as Colmena)
    NixInfo,
    /// Deploy the machine nixops runs on, without SSH (as in Colmena)
    ApplyLocal(apply_local::Opts),
    /// Show what a deploy would change on every machine, changing nothing
    Plan(plan::Opts),
    /// Send the machines' deployment.keys without deploying
    SendKeys(send_keys::Opts),
    /// Log in to a machine or run a command on it
    Ssh(ssh::Opts),
    /// Run a command on every machine
    SshForEach(ssh_for_each::Opts),
    /// Copy files to or from a machine
    Scp(scp::Opts),
    /// Copy a store path's closure to a machine
    CopyClosure(copy_closure::Opts),
    /// Reboot machines and wait until they are back
    Reboot(reboot::Opts),
    /// Start machines (not possible for existing machines)
    Start(start_stop::Opts),
    /// Stop machines (not possible for existing machines)
    Stop(start_stop::Opts),
    /// Forget machines (existing machines keep running)
    Destroy(destroy::Opts),
    /// Open the network files in $EDITOR
    Edit(edit::Opts),
    /// Remove a lock left behind by a killed process
    Unlock(unlock::Opts),
    /// Forget a machine's pinned SSH host key (after a reinstall), so the next contact learns its new one
    ForgetHostKey(forget_host_key::Opts),
    /// Show the value of an option of a machine
    ShowOption(show_option::Opts),
    /// Show the physical spec of the network
    ShowPhysical(show_physical::Opts),
    /// List the deployment's generations
    ListGenerations(generations::ListOpts),
    /// Put a generation back on its machines
    Rollback(generations::RollbackOpts),
    /// Delete a generation
    DeleteGeneration(generations::DeleteOpts),
    /// Print the store paths of the machines' systems
    DumpNixPaths(dump_nix_paths::Opts),
    /// Print a machine's console output
    ShowConsoleOutput(show_console_output::Opts),
    /// List the installed plugins (none: the backends are built in)
    ListPlugins(list_plugins::Opts),
    /// Snapshot the machines' disks (cloud machines only)
    Backup(backups::BackupOpts),
    /// Show the status of backups (cloud machines only)
    BackupStatus(backups::StatusOpts),
    /// Remove a backup (cloud machines only)
    RemoveBackup(backups::RemoveOpts),
    /// Remove old backups (cloud machines only)
    CleanBackups(backups::CleanOpts),
    /// Restore the machines' disks from a backup (cloud machines only)
    Restore(backups::RestoreOpts),
    /// Print the script that makes a shell complete nixops' commands, options, deployments, machines and @tags
    Completions(completions::CompletionOpts),
    /// Print a manual page, or write them all (--dir)
    Man(man::Opts),
    /// Show the deployment's history of deploys, rollbacks, reboots and destroys
    History(history::Opts),
    /// Export deployments as JSON
    Export(export::Opts),
    /// Import deployments from JSON on stdin
    Import(import::Opts),
}

/// Answers a shell's completion request and exits, if this run is one.
pub fn complete_if_asked() {
    completions::answer_if_asked();
}

pub async fn run(cli: Cli) -> Result<i32> {
    let g = cli.global;
    match cli.command {
        Command::List(o) => list::run(&g, o),
        Command::Check(o) => check::run(&g, o).await,
        Command::Create(o) => create::run(&g, o).await,
        Command::Modify(o) => modify::run(&g, o).await,
        Command::Clone(o) => clone::run(&g, o),
        Command::Rename(o) => rename::run(&g, o),
        Command::ShowConsoleOutput(o) => show_console_output::run(&g, o).await,
        Command::ListPlugins(o) => list_plugins::run(o),
        Command::Backup(o) => backups::refuse(&g, "backup", Some(&o.machines)),
        Command::BackupStatus(o) => backups::refuse(&g, "backup-status", Some(&o.machines)),
        Command::RemoveBackup(_) => backups::refuse(&g, "remove-backup", None),
        Command::CleanBackups(_) => backups::refuse(&g, "clean-backups", None),
        Command::Restore(o) => backups::refuse(&g, "restore", Some(&o.machines)),
        Command::Delete(o) => delete::run(&g, o),
        Command::DeleteResources(o) => delete_resources::run(&g, o),
        Command::Mount(o) => mount::run(&g, o).await,
        Command::Info(o) => info::run(&g, o).await,
        Command::SetArgs(o) => set_args::run(&g, o).await,
        Command::ShowArguments(o) => show_arguments::run(&g, o).await,
        Command::Deploy(o) => deploy::run(&g, o).await,
        Command::Apply(o) => apply::run(&g, o).await,
        Command::Build { deploy } => apply::apply(&g, apply::Goal::Build, deploy).await,
        Command::UploadKeys { deploy } => apply::apply(&g, apply::Goal::Keys, deploy).await,
        Command::Eval(o) => eval::run(&g, o).await,
        Command::Exec(o) => exec::run(&g, o).await,
        Command::Repl => repl::run(&g).await,
        Command::NixInfo => nix_info::run().await,
        Command::ApplyLocal(o) => apply_local::run(&g, o).await,
        Command::Plan(o) => plan::run(&g, o).await,
        Command::SendKeys(o) => send_keys::run(&g, o).await,
        Command::Ssh(o) => ssh::run(&g, o).await,
        Command::SshForEach(o) => ssh_for_each::run(&g, o).await,
        Command::Scp(o) => scp::run(&g, o).await,
        Command::CopyClosure(o) => copy_closure::run(&g, o).await,
        Command::Reboot(o) => reboot::run(&g, o).await,
        Command::Start(o) => start_stop::run(&g, o, crate::backend::Power::Start).await,
        Command::Stop(o) => start_stop::run(&g, o, crate::backend::Power::Stop).await,
        Command::Destroy(o) => destroy::run(&g, o).await,
        Command::Edit(o) => edit::run(&g, o),
        Command::Unlock(o) => unlock::run(&g, o),
        Command::ForgetHostKey(o) => forget_host_key::run(&g, o).await,
        Command::ShowOption(o) => show_option::run(&g, o).await,
        Command::ShowPhysical(o) => show_physical::run(&g, o).await,
        Command::ListGenerations(o) => generations::list(&g, o),
        Command::Rollback(o) => generations::rollback(&g, o).await,
        Command::DeleteGeneration(o) => generations::delete(&g, o).await,
        Command::DumpNixPaths(o) => dump_nix_paths::run(&g, o).await,
        Command::Completions(o) => completions::completions(o),
        Command::Man(o) => man::run(o),
        Command::History(o) => history::run(&g, o),
        Command::Export(o) => export::run(&g, o),
        Command::Import(o) => import::run(&g, o),
    }
}

impl Global {
    /// The state, for a command that changes it; it must exist.
    pub fn open_store(&self) -> Result<StoreBox> {
        self.store(Access::Write)
    }

    /// The state, for a command that only reads it (a file may be
    /// read-only); it must exist.
    pub fn read_store(&self) -> Result<StoreBox> {
        self.store(Access::Read)
    }

    /// The state, created if needed (`create`, `import`).
    pub fn create_store(&self) -> Result<StoreBox> {
        self.store(Access::Create)
    }

    fn store(&self, access: Access) -> Result<StoreBox> {
        Ok(state::open(self.state.as_deref().map(|p| p.as_os_str()), access)?)
    }

    /// The deployment named by -d / $NIXOPS_DEPLOYMENT (or the only one),
    /// with the network of `--network` when given (for this run only).
    pub fn deployment(&self, store: &StoreBox) -> Result<Deployment> {
        let all = store.deployments()?;
        let d = self.resolve(&all)?.clone();
        self.with_network(d)
    }

    /// The deployment -d names; without -d, the only one, or the one bound
    /// to the hive of `-f` or of the current directory (see hive.rs).
    fn resolve<'a>(&self, all: &'a [Deployment]) -> Result<&'a Deployment> {
        if self.deployment.is_none()
            && (all.len() > 1 || self.config.is_some())
            && let Some(uuid) = self.bound_deployment(all)
        {
            return Ok(all.iter().find(|d| d.uuid == uuid).expect("bound to one of them"));
        }
        if self.config.is_some() && self.deployment.is_none() {
            bail!(
                "no deployment uses the hive -f names yet (‘nixops apply’ creates one, or ‘nixops create FILE’)"
            );
        }
        Ok(state::resolve(all, self.deployment.as_deref())?)
    }

    /// What a command that changes one deployment works with, set up the
    /// same way by all of them: the store, the deployment held exclusively
    /// (read once the lock is ours: its holder may have changed it), with
    /// `--network` applied, and its Nix options.
    pub fn session(&self) -> Result<Session> {
        let store = self.open_store()?;
        let uuid = self.resolve(&store.deployments()?)?.uuid.clone();
        self.session_of(store, &uuid)
    }

    /// [`Global::session`] for a Colmena command: the deployment of -d, or
    /// the one bound to the hive, created on first use.
    pub async fn hive_session(&self) -> Result<Session> {
        let uuid = self.hive_deployment().await?;
        self.session_of(self.open_store()?, &uuid)
    }

    /// The deployment a Colmena command that changes nothing reads (as
    /// [`Global::hive_session`], without holding it), with its Nix options.
    pub async fn hive_view(&self) -> Result<(Deployment, NixOpts)> {
        let uuid = self.hive_deployment().await?;
        let d = self.with_network(self.read_store()?.load(&uuid)?)?;
        let nix = self.nix_opts(Some(&d))?;
        Ok((d, nix))
    }

    fn session_of(&self, store: StoreBox, uuid: &str) -> Result<Session> {
        let uuid = uuid.to_owned();
        let lock = store.lock(&uuid)?;
        let d = self.with_network(store.load(&uuid)?)?;
        let nix = self.nix_opts(Some(&d))?;
        Ok(Session {
            ctx: Ctx {
                store: std::sync::Arc::new(std::sync::Mutex::new(store)),
                deployment: d,
                nix,
                ssh_persist: self.ssh_persist,
            },
            _lock: lock,
        })
    }

    fn with_network(&self, mut d: Deployment) -> Result<Deployment> {
        // NixOps 2.0 records no network: every command takes --network,
        // default the current directory. A deployment it made has none;
        // take the current directory's, as it would.
        let recorded = crate::network::Source::of(&d)?;
        let unrecorded = recorded == crate::network::Source::Files(Vec::new());
        if self.network.is_none()
            && unrecorded
            && ["nixops.nix", "flake.nix"].iter().any(|f| Path::new(f).exists())
        {
            let source = crate::network::flake::resolve(".")?;
            errln!(
                "note: deployment ‘{}’ records no network; using the one in the current directory ({}), as NixOps 2.0 does (‘nixops modify --network DIR’ records one)",
                d.label(),
                source.describe()
            );
            source.apply_to(&mut d)?;
            return Ok(d);
        }
        if let Some(source) = self.network_source()? {
            if recorded != source && !unrecorded {
                errln!(
                    "note: using --network {} instead of the network deployment ‘{}’ records ({}); ‘nixops modify --network’ records it",
                    source.describe(),
                    d.label(),
                    recorded.describe()
                );
            }
            source.apply_to(&mut d)?;
        }
        Ok(d)
    }

    /// The network `--network` names, if given.
    pub fn network_source(&self) -> Result<Option<crate::network::Source>> {
        self.network
            .as_deref()
            .map(crate::network::flake::resolve)
            .transpose()
    }

    /// All deployments with `--all`, else the selected one.
    pub fn deployments(&self, store: &StoreBox, all: bool) -> Result<Vec<Deployment>> {
        if all {
            Ok(store.deployments()?)
        } else {
            Ok(vec![self.deployment(store)?])
        }
    }

    /// Nix options: the deployment's stored search path, then -I from the
    /// command line, then the pass-through flags.
    pub fn nix_opts(&self, d: Option<&Deployment>) -> Result<NixOpts> {
        let mut include = match d {
            Some(d) => d.nix_path()?,
            None => Vec::new(),
        };
        include.extend(self.nix_path.iter().cloned());
        let options = self
            .option
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        Ok(NixOpts {
            include,
            options,
            show_trace: self.show_trace,
            max_jobs: self.max_jobs.clone(),
            cores: self.cores,
            keep_going: self.keep_going,
            keep_failed: self.keep_failed,
            fallback: self.fallback,
            no_build_output: self.no_build_output,
            repair: false,
            override_inputs: self
                .override_input
                .chunks(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect(),
            impure: self.impure,
            builders: None,
            eval: self.eval_opts()?,
            read_only: self.read_only_mode,
        })
    }

    /// How machines are evaluated; the cache lives beside a state file
    /// (for a database, in the user's cache directory).
    fn eval_opts(&self) -> Result<crate::nix::EvalOpts> {
        let state = state::in_use(self.state.as_deref().map(|p| p.as_os_str()))?;
        Ok(crate::nix::EvalOpts {
            jobs: self.eval_jobs,
            max_memory_mb: (self.eval_max_memory > 0).then_some(self.eval_max_memory),
            cache_dir: if self.no_eval_cache {
                None
            } else {
                crate::network::cache_dir_for_state(state.file())
            },
            state,
        })
    }
}

/// The network that `create` or `modify` names: network files or
/// `--network`, not both; None when neither is given.
pub async fn network_of_args(g: &Global, files: &[PathBuf]) -> Result<Option<crate::network::Source>> {
    match (files.is_empty(), g.network_source()?) {
        (false, Some(_)) => anyhow::bail!("give network files or --network, not both"),
        (false, None) => Ok(Some(crate::network::Source::Files(
            files
                .iter()
                .map(|f| crate::network::absolute(f))
                .collect::<Result<Vec<_>>>()?,
        ))),
        (true, Some(source)) => Ok(Some(locate(g, source).await?)),
        (true, None) => Ok(None),
    }
}

/// A flake network must lock and have its output before it is recorded
/// (an evaluation error inside it is only a warning, as for files); the
/// output found is recorded, so later commands need not look for it.
pub async fn locate(g: &Global, source: crate::network::Source) -> Result<crate::network::Source> {
    use crate::network::{Source, flake};
    match source {
        Source::Flake { flake, attr } => {
            let opts = g.nix_opts(None)?;
            let locked = flake::lock(&flake, &opts).await?;
            let attr = flake::find_output(&flake, &locked, attr.as_deref(), &opts).await?;
            Ok(Source::Flake {
                flake,
                attr: Some(attr),
            })
        }
        files => Ok(files),
    }
}

/// Records the network's description (and rollback setting) right away, as
/// NixOps shows it after `create`; a network that does not evaluate yet (it
/// may need `set-args`) only earns a warning: deploy records them later.
pub async fn record_network_attrs(g: &Global, store: &StoreBox, uuid: &str) -> Result<()> {
    let d = store.load(uuid)?;
    let network = crate::deploy::network_of(&d)?;
    let files = crate::network::NixFiles::write()?;
    match network.meta(&files, &g.nix_opts(Some(&d))?).await {
        Ok(meta) => Ok(store.set_deployment_attrs(uuid, &crate::deploy::record::network_attrs(&meta))?),
        Err(e) => {
            let first = format!("{e:#}");
            let first = first
                .lines()
                .find(|l| l.starts_with("error:"))
                .or(first.lines().next())
                .unwrap_or("");
            errln!("warning: network.description not recorded yet: {}", first.trim());
            Ok(())
        }
    }
}

/// Asks on the terminal; `--confirm` answers yes, no terminal answers no.
pub fn confirm(g: &Global, question: &str) -> Result<bool> {
    if g.confirm {
        return Ok(true);
    }
    if !crate::ui::can_ask() {
        errln!("{question} (no terminal to ask on; use --confirm)");
        return Ok(false);
    }
    Ok(crate::ui::ask(question)?)
}

/// A command's hold on one deployment (see [`Global::session`]); the lock
/// is released when it is dropped.
pub struct Session {
    pub ctx: Ctx,
    _lock: state::DeploymentLock,
}

/// The quoted names of the machines whose result is an error.
pub fn failed_names<'a, T: 'a, E: 'a>(
    results: impl IntoIterator<Item = (&'a String, &'a std::result::Result<T, E>)>,
) -> Vec<String> {
    results
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| format!("‘{n}’"))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

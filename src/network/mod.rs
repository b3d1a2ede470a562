//! Evaluating network files with NixOps' semantics. The Nix side lives in
//! `eval-machine-info.nix` and `options.nix` beside this file; both are
//! embedded in the binary and written to a private directory at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tokio::process::Command;

use crate::nix::NixOpts;
use crate::process::{self, Sink};

const EVAL_MACHINE_INFO: &str = include_str!("eval-machine-info.nix");
const OPTIONS: &str = include_str!("options.nix");

/// What identifies a network: its files, arguments and deployment.
#[derive(Debug, Clone)]
pub struct Network {
    pub files: Vec<PathBuf>,
    /// Argument name → Nix expression.
    pub args: BTreeMap<String, String>,
    pub uuid: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkInfo {
    pub network: NetworkMeta,
    #[serde(rename = "resourceTypes")]
    pub resource_types: Vec<String>,
    pub machines: BTreeMap<String, MachineInfo>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkMeta {
    pub description: String,
    pub enable_rollback: bool,
    pub unknown_attrs: Vec<String>,
}

/// A machine's deployment.* options, and its toplevel when it was selected.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineInfo {
    pub target_env: String,
    pub target_host: String,
    pub target_port: Option<i64>,
    pub target_user: String,
    pub ssh_options: Vec<String>,
    pub privilege_escalation_command: Vec<String>,
    pub always_activate: bool,
    pub has_fast_connection: bool,
    pub owners: Vec<String>,
    pub keys: BTreeMap<String, serde_json::Value>,
    pub toplevel: Option<String>,
    pub drv_path: Option<String>,
}

/// The tool's Nix files, written once per process into a private directory.
pub struct NixFiles {
    dir: tempfile::TempDir,
}

impl NixFiles {
    pub fn write() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("nixops-nix-").tempdir()?;
        std::fs::write(dir.path().join("eval-machine-info.nix"), EVAL_MACHINE_INFO)?;
        std::fs::write(dir.path().join("options.nix"), OPTIONS)?;
        Ok(NixFiles { dir })
    }

    pub fn eval_machine_info(&self) -> PathBuf {
        self.dir.path().join("eval-machine-info.nix")
    }
}

/// Makes a Nix string literal of `s`.
pub fn nix_string(s: &str) -> String {
    let json = serde_json::to_string(s).expect("strings serialize");
    json.replace("${", "\\${")
}

impl Network {
    fn check_files(&self) -> Result<()> {
        if self.files.is_empty() {
            bail!(
                "deployment ‘{}’ has no network files; add some with ‘nixops modify’",
                self.name
            );
        }
        for f in &self.files {
            if !f.exists() {
                bail!(
                    "network file {} of deployment ‘{}’ does not exist",
                    f.display(),
                    self.name
                );
            }
        }
        Ok(())
    }

    fn args_expr(&self) -> String {
        let fields: String = self
            .args
            .iter()
            .map(|(k, v)| format!(" {} = ({v});", nix_string(k)))
            .collect();
        format!("{{{fields} }}")
    }

    /// The common nix-instantiate invocation for an attribute of
    /// eval-machine-info.nix.
    fn instantiate(&self, files: &NixFiles, opts: &NixOpts, attr: &str) -> Result<Command> {
        self.check_files()?;
        let exprs: Vec<String> = self
            .files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut cmd = Command::new("nix-instantiate");
        cmd.arg(files.eval_machine_info())
            .arg("-A")
            .arg(attr)
            .args(["--argstr", "networkExprsJSON"])
            .arg(serde_json::to_string(&exprs)?)
            .args(["--arg", "args"])
            .arg(self.args_expr())
            .args(["--argstr", "uuid", &self.uuid])
            .args(["--argstr", "deploymentName", &self.name])
            .args(opts.eval_args());
        Ok(cmd)
    }

    /// Evaluates every machine's deployment info and, for the selected
    /// machines (`include`, None: all, less `exclude`), their toplevels, in
    /// one Nix evaluation. With
    /// `instantiate`, the toplevels' derivations are written to the store so
    /// they can be built.
    pub async fn evaluate(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        include: Option<&[String]>,
        exclude: &[String],
        instantiate: bool,
        sink: Sink<'_>,
    ) -> Result<NetworkInfo> {
        let mut cmd = self.instantiate(files, opts, "info")?;
        cmd.args(["--eval", "--strict", "--json"]);
        if instantiate {
            cmd.arg("--read-write-mode");
        }
        cmd.args(["--argstr", "includeJSON"])
            .arg(serde_json::to_string(&include)?);
        cmd.args(["--argstr", "excludeJSON"])
            .arg(serde_json::to_string(exclude)?);
        let out = process::run(&mut cmd, None, sink).await?;
        if !out.success() {
            bail!("evaluation of the network failed:\n{}", out.stderr.join("\n"));
        }
        let info: NetworkInfo =
            serde_json::from_str(&out.stdout).context("cannot parse the network's evaluation result")?;
        if !info.network.unknown_attrs.is_empty() {
            bail!(
                "the network has unknown attributes: {} (known: network.description, network.enableRollback, network.nixpkgs, network.storage, network.lock)",
                info.network
                    .unknown_attrs
                    .iter()
                    .map(|a| format!("network.{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(info)
    }
}

impl Network {
    /// The arguments the network files take: name → has a default.
    pub async fn arguments(&self, files: &NixFiles, opts: &NixOpts) -> Result<BTreeMap<String, bool>> {
        let mut cmd = self.instantiate(files, opts, "arguments")?;
        cmd.args(["--eval", "--strict", "--json"]);
        let out = process::run(&mut cmd, None, Sink::quiet()).await?;
        if !out.success() {
            bail!(
                "evaluation of the network files failed:\n{}",
                out.stderr.join("\n")
            );
        }
        serde_json::from_str(&out.stdout).context("cannot parse the network's arguments")
    }
}

/// Absolute form of a network file path given on the command line.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    };
    if !abs.exists() {
        bail!("network file {} does not exist", abs.display());
    }
    Ok(abs)
}

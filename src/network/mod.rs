//! Evaluating network files with NixOps' semantics. The Nix side lives in
//! `eval-machine-info.nix`, `options.nix` and `keys.nix` beside this file; all are
//! embedded in the binary and written to a private directory at run time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tokio::process::Command;

mod selector;

pub use selector::{MachineFilter, Selector};

use crate::nix::NixOpts;
use crate::process::{self, Sink};

const EVAL_MACHINE_INFO: &str = include_str!("eval-machine-info.nix");
const OPTIONS: &str = include_str!("options.nix");
const KEYS: &str = include_str!("keys.nix");

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
    /// deployment.keys without the secrets; None when not known (the
    /// machine's options were read from state, not evaluated).
    pub keys: Option<BTreeMap<String, KeyInfo>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "yes")]
    pub magic_rollback: bool,
    #[serde(default = "thirty")]
    pub confirm_timeout: u64,
    #[serde(default)]
    pub health_checks: HealthChecks,
    pub toplevel: Option<String>,
    pub drv_path: Option<String>,
}

/// One of deployment.keys, as eval-machine-info.nix describes it: where the
/// secret comes from, never the secret itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub name: String,
    pub dest_dir: String,
    pub user: String,
    pub group: String,
    pub permissions: String,
    pub upload_at: String,
    /// "text", "keyFile" or "keyCommand".
    pub source: String,
    pub key_file: Option<String>,
    pub key_command: Option<Vec<String>>,
    /// Seconds the keyCommand may run.
    #[serde(default = "sixty")]
    pub key_command_timeout: i64,
    /// The key was given as a plain string (deprecated).
    pub deprecated_string: bool,
}

fn yes() -> bool {
    true
}

fn thirty() -> u64 {
    30
}

fn sixty() -> i64 {
    60
}

/// `deployment.healthChecks`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
pub struct HealthChecks {
    #[serde(default)]
    pub cmd: Vec<CmdCheck>,
    #[serde(default)]
    pub http: Vec<HttpCheck>,
}

impl HealthChecks {
    pub fn is_empty(&self) -> bool {
        self.cmd.is_empty() && self.http.is_empty()
    }

    /// The longest a check may take.
    pub fn max_timeout(&self) -> u64 {
        let cmd = self.cmd.iter().map(|c| c.timeout);
        cmd.chain(self.http.iter().map(|h| h.timeout)).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct CmdCheck {
    pub cmd: Vec<String>,
    #[serde(default)]
    pub description: String,
    pub period: u64,
    pub timeout: u64,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct HttpCheck {
    pub scheme: String,
    pub host: Option<String>,
    pub port: u16,
    pub path: String,
    #[serde(default)]
    pub description: String,
    pub period: u64,
    pub timeout: u64,
}

/// The tool's Nix files, written into a private directory.
pub struct NixFiles {
    dir: crate::tmp::TmpDir,
}

impl NixFiles {
    pub fn write() -> Result<Self> {
        let dir = crate::tmp::TmpDir::new("nixops-nix-")?;
        std::fs::write(dir.path().join("eval-machine-info.nix"), EVAL_MACHINE_INFO)?;
        std::fs::write(dir.path().join("options.nix"), OPTIONS)?;
        std::fs::write(dir.path().join("keys.nix"), KEYS)?;
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
        let mut cmd = process::command("nix-instantiate");
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
        include: Option<&[Selector]>,
        exclude: &[Selector],
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
        for name in info.machines.keys() {
            check_machine_name(name)?;
        }
        Ok(info)
    }
}

/// Refuses a machine name the tool cannot use: it becomes a file name (the
/// machine's GC root), part of ssh's `HostKeyAlias` and of a known_hosts
/// line, and the `name>` prefix of log lines. Any other character,
/// Unicode included, is fine.
pub fn check_machine_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it cannot be a file name"
    } else if name.contains('/') {
        "it contains ‘/’"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else if name.chars().any(char::is_whitespace) {
        "it contains white space"
    } else if name.contains(',') {
        "it contains ‘,’, which separates host names in ssh's known_hosts"
    } else if name.len() > 255 {
        "it is longer than 255 bytes, the longest file name"
    } else {
        return Ok(());
    };
    bail!("machine name {name:?} cannot be used: {why}; rename the machine in the network files")
}

impl Network {
    /// The network's own attributes (`network.description`, ...), without
    /// evaluating any machine.
    pub async fn meta(&self, files: &NixFiles, opts: &NixOpts) -> Result<NetworkMeta> {
        let mut cmd = self.instantiate(files, opts, "info.network")?;
        cmd.args(["--eval", "--strict", "--json"]);
        let out = process::run(&mut cmd, None, Sink::quiet()).await?;
        if !out.success() {
            bail!("evaluation of the network failed:\n{}", out.stderr.join("\n"));
        }
        serde_json::from_str(&out.stdout).context("cannot parse the network's attributes")
    }

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

impl Network {
    /// [`evaluate`](Self::evaluate) for the machines `filter` selects; a
    /// selector that matches no machine is an error.
    pub async fn evaluate_selected(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        filter: &MachineFilter,
        instantiate: bool,
    ) -> Result<NetworkInfo> {
        let info = self
            .evaluate(
                files,
                opts,
                filter.include_opt(),
                &filter.exclude,
                instantiate,
                Sink::quiet(),
            )
            .await?;
        filter.check_used(info.machines.iter().map(|(n, m)| (n.as_str(), m.tags.as_slice())))?;
        Ok(info)
    }

    /// Evaluates one option of one machine: Nix syntax, or JSON.
    pub async fn option(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        machine: &str,
        path: &[String],
        json: bool,
    ) -> Result<String> {
        let mut cmd = self.instantiate(files, opts, "optionValue")?;
        cmd.args(["--eval", "--strict"]);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["--argstr", "optionMachine", machine]);
        cmd.args(["--argstr", "optionPathJSON"])
            .arg(serde_json::to_string(path)?);
        let out = process::run(&mut cmd, None, Sink::quiet()).await?;
        if !out.success() {
            bail!("evaluation failed:\n{}", out.stderr.join("\n"));
        }
        Ok(out.stdout)
    }
}

/// Splits an option path like `services.nginx.virtualHosts."example.com"`
/// into its attribute names.
pub fn split_option_path(s: &str) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => cur.extend(chars.next()),
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("unbalanced quotes in option name ‘{s}’");
    }
    parts.push(cur);
    if parts.iter().any(String::is_empty) {
        bail!("‘{s}’ is not an option name");
    }
    Ok(parts)
}

impl Network {
    /// The nix-instantiate command whose stdout is the JSON object
    /// machine → key → `text` of the given machines' keys. Evaluation only:
    /// no --read-write-mode, so nothing is written to the store. The caller
    /// reads the secrets from its stdout pipe.
    pub fn key_texts_command(
        &self,
        files: &NixFiles,
        opts: &NixOpts,
        machines: &[String],
    ) -> Result<Command> {
        let mut cmd = self.instantiate(files, opts, "keyTexts")?;
        cmd.args(["--eval", "--strict", "--json"]);
        let exact: Vec<Selector> = machines.iter().map(|m| Selector::exact(m)).collect();
        cmd.args(["--argstr", "includeJSON"])
            .arg(serde_json::to_string(&exact)?);
        Ok(cmd)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        for ok in ["m", "web-1", "é", "db.example.com", "_x", "a@b"] {
            check_machine_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a\nb",
            "tab\there",
            "a,b",
            &"x".repeat(256),
        ] {
            assert!(check_machine_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn option_paths() {
        assert_eq!(split_option_path("a.b").unwrap(), vec!["a", "b"]);
        assert_eq!(
            split_option_path("services.nginx.virtualHosts.\"example.com\".root").unwrap(),
            vec!["services", "nginx", "virtualHosts", "example.com", "root"]
        );
        assert!(split_option_path("a..b").is_err());
        assert!(split_option_path("a.\"b").is_err());
    }
}

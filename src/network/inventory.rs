//! A network's inventory: the outputs of `tofu output -json`, `terraform
//! output -json`, `pulumi stack output --json` (or any command, or a JSON
//! file), read once per command before machines are evaluated and given to
//! the network and every machine as the module argument `inventory`.
//!
//! Its values may be secrets (Terraform's `sensitive` outputs): they are
//! never printed, recorded in state or history, or passed in a process's
//! arguments. Nix reads them from a file in a private directory of ours
//! (0700, the file 0600), at a path stable per deployment, so that the
//! evaluation cache sees the file like any other input: a machine that
//! reads the inventory is evaluated again when it changes, the others not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// `network.inventory` (a hive's `meta.inventory`), as eval-machine-info.nix
/// gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Spec {
    /// A command (argv), run in the network's directory.
    pub command: Option<Vec<String>>,
    /// A JSON file, relative to the network's directory.
    pub file: Option<String>,
    /// Seconds the command may take (default 60).
    pub timeout: Option<u64>,
}

const DEFAULT_TIMEOUT: u64 = 60;

impl Spec {
    fn describe(&self) -> String {
        match (&self.command, &self.file) {
            (Some(argv), _) => format!(
                "inventory command ‘{}’",
                shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
            ),
            (None, Some(f)) => format!("inventory file {f}"),
            (None, None) => "inventory".into(),
        }
    }
}

/// The inventories this process has read, by deployment: once per command.
static READ: std::sync::Mutex<std::collections::BTreeMap<String, PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Runs the command (or reads the file) and writes its outputs where Nix
/// reads them; returns that file. The outputs must be a JSON object. Once
/// per process and deployment: later evaluations of the same command take
/// the same outputs.
pub async fn prepare(spec: &Spec, dir: &Path, uuid: &str) -> Result<PathBuf> {
    if let Some(f) = READ.lock().expect("inventory lock").get(uuid) {
        return Ok(f.clone());
    }
    let file = read(spec, dir, uuid).await?;
    READ.lock()
        .expect("inventory lock")
        .insert(uuid.to_owned(), file.clone());
    Ok(file)
}

async fn read(spec: &Spec, dir: &Path, uuid: &str) -> Result<PathBuf> {
    let what = spec.describe();
    let text = match (&spec.command, &spec.file) {
        (Some(_), Some(_)) => bail!("network.inventory sets both command and file: give one"),
        (None, None) => bail!("network.inventory sets neither command nor file"),
        (Some(argv), None) => run(argv, dir, spec.timeout.unwrap_or(DEFAULT_TIMEOUT), &what).await?,
        (None, Some(file)) => {
            let path = dir.join(file);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {what} ({})", path.display()))?
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{what} gave no JSON ({e}); it must print an object, as `tofu output -json` does")
    })?;
    if !value.is_object() {
        bail!(
            "{what} gave JSON that is no object; it must print an object of outputs, as `tofu output -json` does"
        );
    }
    let file = crate::tmp::private_dir("nixops-run")?.join(format!("inventory-{uuid}.json"));
    let text = serde_json::to_string(&value)?;
    // Written only when it changed: a file written just before an
    // evaluation counts as unsettled for the cache (files.rs).
    if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
        crate::tmp::write_private(&file, text.as_bytes())?;
    }
    Ok(file)
}

/// Runs `argv` in `dir`; its stdout. A failure or a timeout is an error
/// that names the command and says the last lines it wrote on stderr (never
/// its stdout, which holds the outputs).
async fn run(argv: &[String], dir: &Path, timeout: u64, what: &str) -> Result<String> {
    let Some((program, args)) = argv.split_first() else {
        bail!("network.inventory.command is empty");
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {what} in {}", dir.display()))?;
    let pid = child.id();
    let out = match tokio::time::timeout(Duration::from_secs(timeout), child.wait_with_output()).await {
        Ok(out) => out.with_context(|| format!("{what} failed"))?,
        Err(_) => {
            // The command and everything it started.
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            bail!(
                "{what} did not finish within {timeout} s (network.inventory.timeout); nothing was changed"
            );
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "{what} failed ({}){}; nothing was changed",
            out.status,
            if tail.is_empty() {
                String::new()
            } else {
                format!(":\n  {}", tail.join("\n  "))
            }
        );
    }
    String::from_utf8(out.stdout).map_err(|_| anyhow::anyhow!("{what} printed no UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outputs_are_an_object_and_failures_name_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |argv: &[&str]| Spec {
            command: Some(argv.iter().map(|s| s.to_string()).collect()),
            file: None,
            timeout: Some(2),
        };
        let uuid = format!("unit-{}", std::process::id());
        let f = read(
            &spec(&["sh", "-c", "echo '{\"ip\":{\"value\":\"x\"}}'"]),
            dir.path(),
            &uuid,
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), r#"{"ip":{"value":"x"}}"#);
        let e = read(&spec(&["sh", "-c", "echo boom >&2; exit 3"]), dir.path(), &uuid)
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("inventory command ‘sh -c 'echo boom >&2; exit 3'’ failed"),
            "{e:#}"
        );
        assert!(format!("{e:#}").contains("boom"), "{e:#}");
        let e = read(&spec(&["sh", "-c", "echo '[1]'"]), dir.path(), &uuid)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("no object"), "{e:#}");
        let e = read(&spec(&["sleep", "30"]), dir.path(), &uuid)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("did not finish within 2 s"), "{e:#}");
        let _ = std::fs::remove_file(f);
    }
}

//! What a machine declares under deployment.keys, checked before anything
//! is touched.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::network::{KeyInfo, MachineInfo, NetworkInfo};

/// Touched after every delivery; `nixops-keys.service` waits for it.
/// (upload.sh names it too.)
pub const DONE: &str = "/run/keys/done";

/// Where a key's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Text,
    File(String),
    /// argv, and how long it may run.
    Command(Vec<String>, Duration),
}

/// One key of a machine, validated: no field holds a control character
/// (so each fits on a line of upload.sh's manifest), and user, group and
/// mode hold no white space.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// The attribute name under deployment.keys.
    pub attr: String,
    /// File name in `dest_dir`.
    pub name: String,
    pub dest_dir: String,
    pub user: String,
    pub group: String,
    pub permissions: String,
    pub post_activation: bool,
    pub source: Source,
}

impl KeySpec {
    pub fn path(&self) -> String {
        join_path(&self.dest_dir, &self.name)
    }
}

pub fn join_path(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

pub fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Checks a machine's keys and turns them into specs.
pub fn specs(machine: &str, keys: &BTreeMap<String, KeyInfo>) -> Result<Vec<KeySpec>> {
    let mut out: Vec<KeySpec> = Vec::new();
    let mut paths: BTreeMap<String, &str> = BTreeMap::new();
    for (attr, k) in keys {
        let what = format!("machine ‘{machine}’: deployment.keys.{attr}");
        if k.name.is_empty()
            || k.name == "."
            || k.name == ".."
            || k.name.contains('/')
            || has_control(&k.name)
        {
            bail!("{what}.name = {:?} is not a file name", k.name);
        }
        if !k.dest_dir.starts_with('/') || has_control(&k.dest_dir) {
            bail!("{what}.destDir = {:?} is not an absolute path", k.dest_dir);
        }
        for (opt, v) in [("user", &k.user), ("group", &k.group)] {
            if v.is_empty() || v.contains(':') || v.chars().any(char::is_whitespace) || has_control(v) {
                bail!("{what}.{opt} = {v:?} is not a user or group name");
            }
        }
        let mode_ok = !k.permissions.is_empty()
            && !k.permissions.starts_with('-')
            && k.permissions
                .chars()
                .all(|c| "01234567ugoarwxXst+-=,".contains(c));
        if !mode_ok {
            bail!(
                "{what}.permissions = {:?} is not a mode chmod understands",
                k.permissions
            );
        }
        let source = match k.source.as_str() {
            "text" => Source::Text,
            "keyFile" => Source::File(
                k.key_file
                    .clone()
                    .ok_or_else(|| anyhow!("{what}: keyFile missing"))?,
            ),
            "keyCommand" => {
                let argv = k.key_command.clone().unwrap_or_default();
                if argv.is_empty() {
                    bail!("{what}.keyCommand is an empty list");
                }
                let secs = u64::try_from(k.key_command_timeout)
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        anyhow!(
                            "{what}.keyCommandTimeout = {} is not a positive number of seconds",
                            k.key_command_timeout
                        )
                    })?;
                Source::Command(argv, Duration::from_secs(secs))
            }
            other => bail!("{what}: unknown source {other}"),
        };
        let spec = KeySpec {
            attr: attr.clone(),
            name: k.name.clone(),
            dest_dir: k.dest_dir.clone(),
            user: k.user.clone(),
            group: k.group.clone(),
            permissions: k.permissions.clone(),
            post_activation: k.upload_at == "post-activation",
            source,
        };
        let path = spec.path();
        if path == DONE {
            bail!("{what}: {DONE} is reserved for the deployer's own use");
        }
        if let Some(other) = paths.insert(path.clone(), attr) {
            bail!(
                "machine ‘{machine}’: deployment.keys.{other} and deployment.keys.{attr} are both written to {path}"
            );
        }
        out.push(spec);
    }
    Ok(out)
}

/// Checks every machine's keys before anything is touched; returns the
/// warnings to show (keys given as plain strings are deprecated).
pub fn check(info: &NetworkInfo) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (name, m) in &info.machines {
        warnings.extend(check_machine(name, m)?);
    }
    Ok(warnings)
}

/// [`check`] for one machine.
pub fn check_machine(name: &str, m: &MachineInfo) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let Some(keys) = &m.keys else { return Ok(warnings) };
    specs(name, keys)?;
    for (attr, k) in keys {
        if k.deprecated_string {
            warnings.push(format!(
                "warning: machine ‘{name}’: deployment.keys.{attr} is a plain string, which is deprecated; write deployment.keys.{attr}.text = \"...\" instead"
            ));
        }
    }
    Ok(warnings)
}

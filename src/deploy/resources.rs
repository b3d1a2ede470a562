//! NixOps' non-machine resources in a deploy: what the network declares is
//! checked against what the tool can do and what state holds, then what
//! state lacks is made, before any machine is evaluated (machines use their
//! values as `resources.<type>.<name>.<attr>`): SSH key pairs generated here,
//! commandOutput scripts run here. Each is kept in state as NixOps 2.0
//! keeps it (types `ssh-keypair` and `command-output`, its attribute names),
//! from where the evaluation gets it back (network/mod.rs, `physical_of`).

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use super::types::Ctx;
use crate::network::{CreatedType, ResourceSpec, Resources, created_type};
use crate::process;
use crate::state::{AttrChange, Deployment, machine_state};
use crate::ui::Events;

/// NixOps' rule for resource names (nixops/resources/__init__.py).
fn valid_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut chars = name.chars();
    chars.next().is_some_and(ok) && chars.all(|c| ok(c) || c == '.')
}

/// Refuses, before anything is recorded, what the network's resources ask
/// for and the tool cannot do: a type of NixOps' plugins (EC2, GCE, ...,
/// whose resources only their plugins can create or update), a name NixOps
/// refuses, one name for two of the network's machines and resources (NixOps
/// keeps one name per deployment), a name state keeps for another type.
pub fn check(d: &Deployment, machines: &[String], declared: &Resources) -> Result<()> {
    let mut seen: BTreeMap<&str, String> = machines
        .iter()
        .map(|m| (m.as_str(), format!("machine ‘{m}’")))
        .collect();
    for (ty, names) in declared {
        let kind = match (created_type(ty), crate::backend::resource_type(ty)) {
            (Some(t), _) => t.kind,
            // A plugin's type (an EC2 key pair): adopted as state holds it,
            // never made.
            (None, Some(t)) => {
                let missing: Vec<&str> = names
                    .keys()
                    .filter(|n| d.resources.get(*n).is_none_or(|r| r.kind != t.kind))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    bail!(
                        "the network declares resources.{ty} {} that state does not hold (as ‘{}’): this tool adopts NixOps plugins' resources from state but creates none; create them with the provider's tools (or NixOps and its plugin, then ‘nixops import’ its state), or take them out of the network",
                        missing.join(", "),
                        t.kind
                    );
                }
                t.kind
            }
            (None, None) => {
                let list: Vec<&str> = names.keys().map(String::as_str).collect();
                bail!(
                    "the network declares resources.{ty} ({}): this tool creates NixOps' own resources (sshKeyPairs, commandOutput), not the types of NixOps' plugins (EC2, GCE, ...), which only those plugins can create or update",
                    list.join(", ")
                );
            }
        };
        for name in names.keys() {
            let what = format!("resources.{ty}.{name}");
            if !valid_name(name) {
                bail!(
                    "{what}: ‘{name}’ is no resource name NixOps accepts (letters, digits, ‘_’, ‘-’ and ‘.’, not first)"
                );
            }
            if let Some(other) = seen.insert(name, what.clone()) {
                bail!(
                    "{other} and {what} have the same name; a deployment keeps one name for each machine and resource"
                );
            }
            if let Some(r) = d.resources.get(name)
                && r.kind != kind
            {
                bail!(
                    "the type of resource ‘{name}’ changed from ‘{}’ to ‘{kind}’, which cannot be done (nor in NixOps); ‘nixops delete-resources --include {name}’ forgets the old one",
                    r.kind
                );
            }
        }
    }
    for m in machines {
        if let Some(r) = d.resources.get(m)
            && !r.is_machine()
        {
            bail!(
                "machine ‘{m}’ has the name of resource ‘{m}’ (of type ‘{}’) in state; a deployment keeps one name for each machine and resource: ‘nixops delete-resources --include {m}’ forgets the resource",
                r.kind
            );
        }
    }
    Ok(())
}

/// What a deploy would make, for runs that make nothing (`--dry-run`,
/// `plan`): their machines are evaluated without it.
pub fn missing(d: &Deployment, declared: &Resources) -> Vec<String> {
    let mut out = Vec::new();
    for (ty, names) in declared {
        let Some(t) = created_type(ty) else { continue };
        for (name, spec) in names {
            if needs(t, d, name, spec).is_some() {
                out.push(format!("resources.{ty}.{name}"));
            }
        }
    }
    out
}

/// What a resource needs: Some(why) when it is to be made (again).
fn needs(t: &CreatedType, d: &Deployment, name: &str, spec: &ResourceSpec) -> Option<&'static str> {
    let r = d.resources.get(name);
    let attr = |a: &str| r.and_then(|r| r.get(a));
    match t.attr {
        // NixOps keeps a key pair once it has one.
        "sshKeyPairs" => attr("publicKey").is_none_or(str::is_empty).then_some("new"),
        // NixOps runs the script again when it changed, or when no value is
        // kept (commandOutput.py).
        _ if attr("value").is_none() => Some("new"),
        _ if spec.script.is_some() && attr("script") != spec.script.as_deref() => Some("its script changed"),
        _ => None,
    }
}

/// Makes the resources the network declares that state lacks (key pairs)
/// or holds from another script (command outputs), each recorded in state
/// at once; all were [`check`]ed. Returns whether state changed.
pub async fn create(ctx: &Ctx, declared: &Resources, events: &Events) -> Result<bool> {
    let d = &ctx.deployment;
    // NixOps numbers every resource, machines and others, from one count.
    let mut next_index = d
        .resources
        .values()
        .filter_map(|r| r.get("index")?.parse::<i64>().ok())
        .max()
        .map_or(0, |i| i + 1);
    let mut changed = false;
    for (ty, names) in declared {
        // A plugin's type is adopted as it is (checked: state holds it).
        let Some(t) = created_type(ty) else { continue };
        for (name, spec) in names {
            let Some(why) = needs(t, d, name, spec) else {
                continue;
            };
            let made = match t.attr {
                "sshKeyPairs" => {
                    events.message(format!("{name}> generating an SSH key pair (ed25519)..."));
                    let (private, public) = crate::ssh::generate_key_pair()
                        .await
                        .with_context(|| format!("resources.{ty}.{name}: cannot generate an SSH key pair"))?;
                    vec![
                        ("publicKey".to_owned(), Some(public)),
                        ("privateKey".to_owned(), Some(private.to_string())),
                    ]
                }
                _ => {
                    let Some(script) = &spec.script else {
                        bail!("resources.{ty}.{name} has no script, and state keeps no value of it");
                    };
                    events.message(format!(
                        "{name}> running the script of resources.{ty}.{name} ({why})..."
                    ));
                    let value = run_script(name, script, events)
                        .await
                        .with_context(|| format!("resources.{ty}.{name}: its script failed"))?;
                    vec![
                        ("value".to_owned(), Some(value)),
                        ("script".to_owned(), Some(script.clone())),
                        ("name".to_owned(), Some(name.clone())),
                    ]
                }
            };
            let r = d.resources.get(name);
            let mut changes: Vec<AttrChange> = made;
            changes.push(("state".into(), Some(machine_state::UP.to_string())));
            if r.and_then(|r| r.get("index")).is_none() {
                changes.push(("index".into(), Some(next_index.to_string())));
                next_index += 1;
            }
            if r.and_then(|r| r.get("creationTime")).is_none() {
                changes.push(("creationTime".into(), Some(super::record::now().to_string())));
            }
            ctx.store.lock().expect("state lock").record_network(
                &d.uuid,
                &[],
                &[(name.clone(), t.kind.to_owned(), changes)],
                &[],
            )?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Runs a commandOutput's script as NixOps 2.0 does: `sh -c SCRIPT` on this
/// machine, with `$out` a temporary directory of its own (removed
/// afterwards); its stdout, to the byte, is the value. What it says on
/// stderr is shown.
async fn run_script(name: &str, script: &str, events: &Events) -> Result<String> {
    use tokio::io::AsyncReadExt;
    let dir = crate::tmp::TmpDir::new("nixops-output-")?;
    let mut cmd = process::command("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .env("out", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::debug!("running: {}", process::describe(&cmd));
    let mut child = cmd.spawn().context("cannot run /bin/sh")?;
    let (mut so, mut se) = (
        child.stdout.take().expect("piped stdout"),
        child.stderr.take().expect("piped stderr"),
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (read_out, read_err) = tokio::join!(so.read_to_end(&mut out), se.read_to_end(&mut err));
    let status = child.wait().await?;
    read_out?;
    read_err?;
    for line in String::from_utf8_lossy(&err).lines() {
        events.message(format!("{name}> {line}"));
    }
    if !status.success() {
        match status.code() {
            Some(c) => bail!("it exited with code {c}"),
            None => bail!("it was killed by a signal"),
        }
    }
    let value = String::from_utf8(out).map_err(|_| anyhow::anyhow!("its output is not UTF-8 text"))?;
    // NixOps reads it in Python's text mode, where every line ends in \n.
    Ok(value.replace("\r\n", "\n").replace('\r', "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_nixops_names() {
        for ok in ["k", "my-key", "_x", "1.2", "a.b-c_d"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".k", "a b", "a/b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

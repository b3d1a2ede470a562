use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Global;
use crate::state;

#[derive(Args, Debug)]
pub struct Opts {
    /// Also add the machines' host keys to ~/.ssh/known_hosts
    #[arg(long)]
    pub include_keys: bool,
    /// Replace deployments whose UUID the state already has
    #[arg(long)]
    pub force: bool,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read stdin")?;
    let v: serde_json::Value = serde_json::from_str(&text).context("stdin is not valid JSON")?;
    let obj = v
        .as_object()
        .context("the import must be a JSON object of deployments by UUID")?;
    let store = g.create_store()?;
    let existing = store.deployments()?;
    // Check everything before writing anything.
    let mut parsed = Vec::new();
    for (uuid, dv) in obj {
        if !o.force && existing.iter().any(|d| &d.uuid == uuid) {
            bail!(
                "{} already contains a deployment with UUID ‘{uuid}’ (use --force to replace it)",
                store.location()
            );
        }
        parsed.push((uuid, state::parse_export(uuid, dv)?));
    }
    for (uuid, (attrs, resources, history)) in &parsed {
        let replaced = existing.iter().any(|d| &d.uuid == *uuid);
        store.import(uuid, attrs, resources, history, o.force)?;
        if replaced {
            errln!("replaced deployment ‘{uuid}’");
        } else {
            errln!("added deployment ‘{uuid}’");
        }
        if o.include_keys {
            add_known_hosts(resources)?;
        }
    }
    Ok(0)
}

fn add_known_hosts(resources: &[(String, String, state::Attrs)]) -> Result<()> {
    let home = std::env::var_os("HOME").context("$HOME is not set")?;
    let path = std::path::PathBuf::from(home).join(".ssh/known_hosts");
    let mut lines = String::new();
    for (_, kind, attrs) in resources {
        // The machine's pinned key (its backend's attribute: NixOps' EC2
        // plugin keeps it as ec2.publicHostKey), for the addresses ssh
        // reaches it at: targetHost, and (as NixOps) a cloud machine's
        // public and private addresses.
        let attr = crate::backend::of(kind).map_or("publicHostKey", |b| b.host_key_attr());
        let Some(key) = attrs.get(attr) else { continue };
        let hosts = if kind == "none" {
            vec![attrs.get("targetHost")]
        } else {
            vec![attrs.get("publicIpv4"), attrs.get("privateIpv4")]
        };
        for host in hosts.into_iter().flatten() {
            let host = match attrs.get("targetPort") {
                Some(p) if p != "22" => format!("[{host}]:{p}"),
                _ => host.clone(),
            };
            lines += &format!("{host} {key}\n");
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(lines.as_bytes())?;
    Ok(())
}

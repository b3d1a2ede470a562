//! `info`: the deployments' machines and other resources and their status,
//! as NixOps prints them: `Up / Up-to-date`, `Up / Outdated`, `Missing`,
//! ...; `--plain` prints NixOps' six tab-separated fields per resource (uuid
//! and name first with `--all`), which scripts read.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::network::{Evaluator, NixFiles, Request, Resources, created_type};
use crate::state::{Deployment, Resource, machine_state};
use crate::ui::{Stream, table_on};

#[derive(Args, Debug)]
pub struct Opts {
    /// Show all deployments
    #[arg(long)]
    pub all: bool,
    /// Tab-separated output without headers
    #[arg(long)]
    pub plain: bool,
    /// Do not evaluate the network (show only what state records)
    #[arg(long)]
    pub no_eval: bool,
    /// What info always does now (every machine's system is evaluated, or
    /// taken from the evaluation cache): kept for scripts of older versions
    #[arg(long, hide = true)]
    pub check_outdated: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// What evaluating the network tells of a machine.
struct Evaluated {
    toplevel: Option<String>,
    target_env: String,
    target_host: String,
}

/// One machine's or resource's line.
struct Row {
    name: String,
    status: String,
    kind: String,
    resource_id: String,
    public_ipv4: String,
    private_ipv4: String,
    /// For people: the address ssh uses when state has no IP address.
    target_host: String,
    machine: bool,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let ds = g.deployments(&store, o.all)?;
    let mut json = Vec::new();
    let mut all_rows: Vec<(String, Row)> = Vec::new();
    for d in &ds {
        // As NixOps: a network that no longer evaluates still shows what
        // state knows, with a warning.
        let (spec, eval_error, locked) = if o.no_eval {
            (None, None, None)
        } else {
            match evaluate(g, d).await {
                Ok((spec, locked)) => (Some(spec), None, locked),
                Err(e) => {
                    errln!(
                        "warning: evaluation of the network of deployment ‘{}’ failed, so the status shown is only what state recorded (--no-eval skips the evaluation): {e:#}",
                        d.label()
                    );
                    (None, Some(format!("{e:#}")), None)
                }
            }
        };
        let rows = rows(d, spec.as_ref());
        if o.json {
            json.push(deployment_json(d, &rows, eval_error, locked));
        } else if o.plain {
            for r in rows {
                let mut fields = Vec::new();
                if o.all {
                    fields.extend([d.uuid.clone(), d.name().unwrap_or("(none)").to_owned()]);
                }
                fields.extend([
                    r.name,
                    r.status.to_lowercase(),
                    r.kind,
                    r.resource_id,
                    r.public_ipv4,
                    r.private_ipv4,
                ]);
                outln!("{}", fields.join("\t"));
            }
        } else if o.all {
            let label = d.name().map_or_else(|| d.uuid.clone(), str::to_owned);
            all_rows.extend(rows.into_iter().map(|r| (label.clone(), r)));
        } else {
            print_header(d, locked.as_deref());
            outln!();
            out!(
                "{}",
                table_on(
                    Stream::Stdout,
                    &["Name", "Status", "Type", "Resource Id", "IP address"],
                    rows.into_iter().map(table_row).collect()
                )
            );
        }
    }
    if o.json {
        let v = if o.all {
            serde_json::Value::Array(json)
        } else {
            json.pop().unwrap_or_default()
        };
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if o.all && !o.plain {
        out!(
            "{}",
            table_on(
                Stream::Stdout,
                &[
                    "Deployment",
                    "Name",
                    "Status",
                    "Type",
                    "Resource Id",
                    "IP address"
                ],
                all_rows
                    .into_iter()
                    .map(|(d, r)| std::iter::once(d).chain(table_row(r)).collect())
                    .collect()
            )
        );
    }
    Ok(0)
}

/// The table's cells: the IP address NixOps shows (public, else private),
/// else the host ssh reaches.
fn table_row(r: Row) -> Vec<String> {
    let address = [r.public_ipv4, r.private_ipv4, r.target_host]
        .into_iter()
        .find(|a| !a.is_empty())
        .unwrap_or_default();
    vec![r.name, r.status, r.kind, r.resource_id, address]
}

fn print_header(d: &Deployment, locked: Option<&str>) {
    outln!("Network name: {}", d.name().unwrap_or("(none)"));
    outln!("Network UUID: {}", d.uuid);
    outln!("Network description: {}", d.description());
    if let Some(flake) = d.attrs.get("flake") {
        let output = d
            .attrs
            .get("flakeAttr")
            .map(|a| format!("#{a}"))
            .unwrap_or_default();
        outln!("Network flake: {flake}{output}");
        if let Some(l) = locked {
            outln!("Flake locked URL: {l}");
        }
        if let Some(l) = d
            .attrs
            .get("flakeLockedUrl")
            .filter(|l| Some(l.as_str()) != locked)
        {
            outln!("Last deployed from: {l}");
        }
    } else {
        let exprs = match d.nix_exprs() {
            Ok(ps) => ps
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => d.attrs.get("nixExprs").cloned().unwrap_or_default(),
        };
        outln!("Nix expressions: {exprs}");
    }
    let np = d.nix_path().unwrap_or_default();
    if !np.is_empty() {
        outln!("Nix path: {}", np.join(" "));
    }
    let args = d.args().unwrap_or_default();
    if !args.is_empty() {
        let a: Vec<String> = args.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        outln!("Nix arguments: {}", a.join(", "));
    }
}

fn deployment_json(
    d: &Deployment,
    rows: &[Row],
    eval_error: Option<String>,
    locked: Option<String>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "uuid": d.uuid, "name": d.name(), "description": d.description(),
        "nixExprs": d.nix_exprs().ok(), "nixPath": d.nix_path().ok(), "args": d.args().ok(),
        "machines": rows.iter().filter(|r| r.machine).map(|r| serde_json::json!({
            "name": r.name, "status": r.status, "type": r.kind, "resourceId": r.resource_id,
            "publicIpv4": r.public_ipv4, "privateIpv4": r.private_ipv4, "targetHost": r.target_host,
        })).collect::<Vec<_>>(),
        "resources": rows.iter().filter(|r| !r.machine).map(|r| serde_json::json!({
            "name": r.name, "status": r.status, "type": r.kind, "resourceId": r.resource_id,
        })).collect::<Vec<_>>(),
    });
    if let Some(e) = eval_error {
        v["evaluationError"] = e.into();
    }
    if let Some(flake) = d.attrs.get("flake") {
        v["flake"] = serde_json::json!({
            "flake": flake, "output": d.attrs.get("flakeAttr"), "lockedUrl": locked,
            "deployedUrl": d.attrs.get("flakeLockedUrl"),
        });
    }
    v
}

/// What evaluating the network tells: its machines and its other resources.
struct Spec {
    machines: BTreeMap<String, Evaluated>,
    /// Machines that did not evaluate: shown as state records them.
    failed: std::collections::BTreeSet<String>,
    resources: Resources,
}

/// The network's machines with their systems, as a deploy would evaluate
/// them (served by the evaluation cache for every machine none of whose
/// inputs changed), its resources, and a flake network's locked URL.
async fn evaluate(g: &Global, d: &Deployment) -> Result<(Spec, Option<String>)> {
    let network = crate::deploy::network_of(d)?;
    let files = NixFiles::write()?;
    let opts = g.nix_opts(Some(d))?;
    let ev = Evaluator::new(&network, &files, &opts, None).await?;
    let req = Request {
        include: None,
        exclude: &[],
        toplevels: true,
        evaluate: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ev.machines(&req, &tx).await;
    drop(tx);
    // One machine that does not evaluate leaves the others' status as
    // evaluated; its own is what state records, with a warning.
    let mut machines = BTreeMap::new();
    let mut failed = std::collections::BTreeSet::new();
    while let Some(e) = rx.recv().await {
        match e.result {
            Ok(m) => {
                let evaluated = Evaluated {
                    toplevel: m.toplevel,
                    target_env: m.target_env,
                    target_host: m.target_host.unwrap_or_default(),
                };
                machines.insert(e.name, evaluated);
            }
            Err(err) => {
                let first = err
                    .lines()
                    .find(|l| l.contains("error:"))
                    .unwrap_or(err.lines().next().unwrap_or(""));
                errln!(
                    "warning: machine ‘{}’ of deployment ‘{}’ does not evaluate, so its status is only what state recorded: {}",
                    e.name,
                    d.label(),
                    first.trim()
                );
                failed.insert(e.name);
            }
        }
    }
    let spec = Spec {
        machines,
        failed,
        resources: ev.resources.clone(),
    };
    Ok((spec, ev.meta.flake_url.clone()))
}

/// A machine's status: NixOps' `STATE / Up-to-date` (or `Outdated`,
/// `Obsolete`, `Revived`), `Missing` for one the network has and state
/// does not. Without an evaluation (`spec` None), what state says alone.
fn status(r: Option<&Resource>, spec: Option<&Spec>, name: &str) -> String {
    let Some(r) = r else {
        return "Missing".into();
    };
    let state = machine_state::shown(r.state());
    let Some(spec) = spec.filter(|s| !s.failed.contains(name)) else {
        return if r.obsolete() {
            format!("{state} / Obsolete")
        } else {
            state.into()
        };
    };
    let compared = match spec.machines.get(name) {
        Some(_) if r.obsolete() => "Revived",
        None => "Obsolete",
        Some(e) if e.toplevel.is_some() && r.toplevel() == e.toplevel.as_deref() => "Up-to-date",
        Some(_) => "Outdated",
    };
    format!("{state} / {compared}")
}

/// Machine names in NixOps' order: runs of digits compare as numbers
/// ("web9" before "web10").
fn natural_key(name: &str) -> Vec<(u8, u128, String)> {
    let mut key = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits > 0 {
            let (d, tail) = rest.split_at(digits);
            key.push((0, d.parse().unwrap_or(u128::MAX), d.to_owned()));
            rest = tail;
        } else {
            let end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let (s, tail) = rest.split_at(end);
            key.push((1, 0, s.to_owned()));
            rest = tail;
        }
    }
    key
}

/// One row per machine and per other resource, in the network or in state,
/// in NixOps' order: by type, then by name.
fn rows(d: &Deployment, spec: Option<&Spec>) -> Vec<Row> {
    let mut rows = machine_rows(d, spec);
    rows.extend(resource_rows(d, spec.map(|s| &s.resources)));
    rows.sort_by_cached_key(|r| (r.kind.clone(), natural_key(&r.name)));
    rows
}

/// A non-machine resource's row: its state (NixOps shows no comparison for
/// these), its type, and a command output's id as NixOps makes it (a digest
/// of the value, which may be secret).
fn resource_rows(d: &Deployment, declared: Option<&Resources>) -> Vec<Row> {
    let mut by_name: BTreeMap<&str, String> = BTreeMap::new();
    for (ty, names) in declared.into_iter().flatten() {
        let kind = created_type(ty)
            .map(|t| t.kind)
            .or_else(|| crate::backend::resource_type(ty).map(|t| t.kind))
            .unwrap_or(ty.as_str());
        for name in names.keys() {
            by_name.insert(name, kind.to_owned());
        }
    }
    for r in d.resources.values().filter(|r| !r.is_machine()) {
        by_name.insert(&r.name, crate::backend::shown_type(r));
    }
    by_name
        .into_iter()
        .map(|(name, kind)| {
            let res = d.resources.get(name);
            let resource_id = match (res.and_then(|r| r.get("value")), res.and_then(|r| r.get("name"))) {
                (Some(value), Some(n)) if kind == "command-output" => {
                    use sha2::{Digest, Sha256};
                    format!("{n}-{}", &hex::encode(Sha256::digest(value.as_bytes()))[..32])
                }
                _ => res.and_then(crate::backend::resource_id).unwrap_or_default(),
            };
            Row {
                name: name.to_owned(),
                status: res
                    .map_or("Missing", |r| machine_state::shown(r.state()))
                    .to_owned(),
                kind,
                resource_id,
                public_ipv4: res
                    .and_then(crate::backend::resource_address)
                    .unwrap_or_default()
                    .to_owned(),
                private_ipv4: String::new(),
                target_host: String::new(),
                machine: false,
            }
        })
        .collect()
}

/// One row per machine, in the network or in state.
fn machine_rows(d: &Deployment, spec: Option<&Spec>) -> Vec<Row> {
    let mut names: Vec<&String> = spec
        .into_iter()
        .flat_map(|s| s.machines.keys())
        .chain(d.machines().map(|r| &r.name))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let res = d.resources.get(name);
            let evaluated = spec.and_then(|s| s.machines.get(name));
            let attr = |a: &str| res.and_then(|r| r.get(a)).unwrap_or_default().to_owned();
            Row {
                name: name.clone(),
                status: status(res, spec, name),
                kind: res
                    .map(crate::backend::shown_type)
                    .or_else(|| evaluated.map(|e| e.target_env.clone()))
                    .unwrap_or_else(|| "unknown-type".into()),
                resource_id: res
                    .and_then(crate::backend::resource_id)
                    .unwrap_or_else(|| attr("resourceId")),
                public_ipv4: attr("publicIpv4"),
                private_ipv4: attr("privateIpv4"),
                target_host: res
                    .and_then(|r| r.get("targetHost").map(str::to_owned))
                    .or_else(|| evaluated.map(|e| e.target_host.clone()))
                    .unwrap_or_default(),
                machine: true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_are_in_nixops_order() {
        let mut names = vec!["web10", "web9", "db", "web1a", "web1"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["db", "web1", "web1a", "web9", "web10"]);
    }
}

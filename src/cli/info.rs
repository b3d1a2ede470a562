use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::network::{Evaluator, NixFiles, Request};
use crate::state::{Deployment, machine_state};
use crate::ui::table;

#[derive(Args, Debug)]
pub struct Opts {
    /// Show all deployments
    #[arg(long)]
    pub all: bool,
    /// Tab-separated output without headers
    #[arg(long)]
    pub plain: bool,
    /// Do not evaluate the network (show only what state records)
    #[arg(long, conflicts_with = "check_outdated")]
    pub no_eval: bool,
    /// Also evaluate every machine's system, to tell Up-to-date from Outdated
    /// (as NixOps' info always did; costs as much as a dry-run deploy).
    /// Without it, machines unchanged since their last evaluation are told
    /// apart from the evaluation cache
    #[arg(long)]
    pub check_outdated: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let ds = g.deployments(&store, o.all)?;
    let mut json = Vec::new();
    for d in &ds {
        // As NixOps: a network that no longer evaluates still shows what
        // state knows, with a warning.
        let (spec, eval_error, locked) = if o.no_eval {
            (None, None, None)
        } else {
            match evaluate(g, d, o.check_outdated).await {
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
        let rows = machine_rows(d, spec.as_ref());
        if o.json {
            let mut v = serde_json::json!({
                "uuid": d.uuid, "name": d.name(), "description": d.description(),
                "nixExprs": d.nix_exprs().ok(), "nixPath": d.nix_path().ok(), "args": d.args().ok(),
                "machines": rows.iter().map(|r| serde_json::json!({
                    "name": r[0], "status": r[1], "type": r[2], "resourceId": r[3], "ipAddress": r[4],
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
            json.push(v);
        } else if o.plain {
            for r in rows {
                outln!("{}", r.join("\t"));
            }
        } else {
            outln!("Network name: {}", d.name().unwrap_or(""));
            outln!("Network UUID: {}", d.uuid);
            outln!("Network description: {}", d.description());
            let exprs = match d.nix_exprs() {
                Ok(ps) => ps
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(_) => d.attrs.get("nixExprs").cloned().unwrap_or_default(),
            };
            if let Some(flake) = d.attrs.get("flake") {
                let output = d
                    .attrs
                    .get("flakeAttr")
                    .map(|a| format!("#{a}"))
                    .unwrap_or_default();
                outln!("Network flake: {flake}{output}");
                if let Some(l) = &locked {
                    outln!("Flake locked URL: {l}");
                }
                if let Some(l) = d
                    .attrs
                    .get("flakeLockedUrl")
                    .filter(|l| Some(*l) != locked.as_ref())
                {
                    outln!("Last deployed from: {l}");
                }
            } else {
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
            let unknown = rows.iter().any(|r| r[1].starts_with("Deployed"));
            outln!();
            out!(
                "{}",
                table(&["Name", "Status", "Type", "Resource Id", "IP address"], rows)
            );
            if unknown {
                errln!(
                    "(Deployed: runs the system last deployed; whether the network has changed since was not evaluated: --check-outdated tells Up-to-date from Outdated)"
                );
            }
        }
    }
    if o.json {
        let v = if o.all {
            serde_json::Value::Array(json)
        } else {
            json.pop().unwrap_or_default()
        };
        outln!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(0)
}

/// Machine name → (evaluated toplevel, target host).
type Spec = BTreeMap<String, (Option<String>, String)>;

/// The network's machines (its names: no machine is evaluated for them)
/// and what is known of them: from the evaluation cache, the systems of
/// those unchanged since their last evaluation; by evaluating, the
/// deployment options of new machines (for their address; state has the
/// others'), and with `toplevels` every machine's options and system, which
/// costs as much as evaluating for a deploy. Also a flake network's locked
/// URL.
async fn evaluate(g: &Global, d: &Deployment, toplevels: bool) -> Result<(Spec, Option<String>)> {
    let network = crate::deploy::network_of(d)?;
    let files = NixFiles::write()?;
    let opts = g.nix_opts(Some(d))?;
    let ev = Evaluator::new(&network, &files, &opts, None).await?;
    let new: Vec<String> = ev
        .names
        .iter()
        .filter(|n| !d.resources.contains_key(*n))
        .cloned()
        .collect();
    let req = Request {
        include: None,
        exclude: &[],
        toplevels,
        evaluate: (!toplevels).then_some(new.as_slice()),
    };
    let mut info = ev.all(&req).await?;
    let spec = ev
        .names
        .iter()
        .map(|n| {
            let m = info.machines.remove(n);
            let host = m.as_ref().map(|m| m.target_host.clone()).unwrap_or_default();
            (n.clone(), (m.and_then(|m| m.toplevel), host))
        })
        .collect();
    Ok((spec, info.network.flake_url))
}

/// One row per machine, in the network or in state: name, status, type,
/// resource id, address. Without an evaluated network (`spec`), the status
/// is what state recorded.
fn machine_rows(d: &Deployment, spec: Option<&Spec>) -> Vec<Vec<String>> {
    let no_eval = spec.is_none();
    let empty = Spec::new();
    let spec = spec.unwrap_or(&empty);
    let mut names: Vec<&String> = spec.keys().chain(d.machines().map(|r| &r.name)).collect();
    names.sort();
    names.dedup();
    let mut rows = Vec::new();
    for name in names {
        let res = d.resources.get(name);
        let status = match (spec.get(name), res) {
            _ if no_eval => match res.map(|r| r.state()) {
                _ if res.is_some_and(|r| r.obsolete()) => "Obsolete".to_owned(),
                Some(machine_state::UP) => "Up".to_owned(),
                Some(machine_state::UNREACHABLE) => "Unreachable".to_owned(),
                Some(machine_state::MISSING) => "Missing".to_owned(),
                _ => "Unknown".to_owned(),
            },
            (None, _) => "Obsolete".to_owned(),
            (Some(_), None) => "New".to_owned(),
            (Some((top, _)), Some(r)) => match (r.toplevel(), top) {
                (None, _) => "New".to_owned(),
                // The machine's system was not evaluated (no --check-outdated).
                (Some(_), None) => "Deployed".to_owned(),
                (Some(t), Some(top)) if t == top => "Up-to-date".to_owned(),
                (Some(_), Some(_)) => "Outdated".to_owned(),
            },
        };
        let status = if res.is_some_and(|r| r.state() == machine_state::UNREACHABLE) && !no_eval {
            format!("{status} / Unreachable")
        } else {
            status
        };
        let host = res
            .and_then(|r| r.get("targetHost").map(str::to_owned))
            .or_else(|| spec.get(name).map(|s| s.1.clone()))
            .unwrap_or_default();
        rows.push(vec![name.clone(), status, "none".into(), String::new(), host]);
    }
    rows
}

//! `history`: every deploy, rollback, reboot and destroy of a deployment,
//! newest first.

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::state::history::{HistoryEntry, format_utc};
use crate::ui::{Stream, table_on};

#[derive(Args, Debug)]
pub struct Opts {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// Only what involved this machine, with its systems before and after
    #[arg(long, value_name = "MACHINE", add = super::completions::machine())]
    pub machine: Option<String>,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let mut entries = store.history(&d.uuid)?;
    if let Some(m) = &o.machine {
        let known = d.resources.contains_key(m) || entries.iter().any(|e| touches(e, m));
        if !known {
            bail!(
                "deployment ‘{}’ has no machine ‘{m}’ and no history of one",
                d.label()
            );
        }
        for e in &mut entries {
            e.machines.retain(|c| &c.machine == m);
        }
        entries.retain(|e| !e.machines.is_empty());
    }
    if o.json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    let when = |e: &HistoryEntry| format_utc(e.finished);
    let text = match &o.machine {
        Some(_) => table_on(
            Stream::Stdout,
            &[
                "Finished (UTC)",
                "Action",
                "By",
                "Source",
                "Before",
                "After",
                "Result",
            ],
            entries
                .iter()
                .map(|e| {
                    let c = &e.machines[0];
                    vec![
                        when(e),
                        e.action.text(),
                        e.by.clone(),
                        e.source_short(),
                        short_path(c.before.as_deref()),
                        short_path(c.after.as_deref()),
                        c.result.clone(),
                    ]
                })
                .collect(),
        ),
        None => table_on(
            Stream::Stdout,
            &["Finished (UTC)", "Action", "By", "Source", "Result", "Machines"],
            entries
                .iter()
                .map(|e| {
                    vec![
                        when(e),
                        e.action.text(),
                        e.by.clone(),
                        e.source_short(),
                        e.result.clone(),
                        e.machines
                            .iter()
                            .map(|c| format!("{}: {}", c.machine, c.result))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]
                })
                .collect(),
        ),
    };
    out!("{text}");
    Ok(0)
}

fn touches(e: &HistoryEntry, machine: &str) -> bool {
    e.machines.iter().any(|c| c.machine == machine)
}

/// A store path without `/nix/store/`; "-" for none.
fn short_path(p: Option<&str>) -> String {
    match p {
        Some(p) => p.rsplit('/').next().unwrap_or(p).to_owned(),
        None => "-".into(),
    }
}

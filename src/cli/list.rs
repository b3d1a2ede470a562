use anyhow::Result;
use clap::Args;

use super::Global;

use crate::ui::{Stream, table_on};

#[derive(Args, Debug)]
pub struct Opts {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let all = store.deployments()?;
    if o.json {
        let v: Vec<_> = all
            .iter()
            .map(|d| {
                serde_json::json!({
                    "uuid": d.uuid, "name": d.name(), "description": d.description(),
                    "machines": d.machines().count(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let rows = all
        .iter()
        .map(|d| {
            vec![
                d.uuid.clone(),
                d.name().unwrap_or("").to_owned(),
                d.description().to_owned(),
                d.machines().count().to_string(),
                // Its machines' kinds, as NixOps lists them.
                {
                    let kinds: std::collections::BTreeSet<&str> =
                        d.machines().map(|m| m.kind.as_str()).collect();
                    if kinds.is_empty() {
                        "none".to_owned()
                    } else {
                        kinds.into_iter().collect::<Vec<_>>().join(", ")
                    }
                },
            ]
        })
        .collect();
    out!(
        "{}",
        table_on(
            Stream::Stdout,
            &["UUID", "Name", "Description", "# Machines", "Type"],
            rows
        )
    );
    Ok(0)
}

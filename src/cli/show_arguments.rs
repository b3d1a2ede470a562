use anyhow::Result;
use clap::Args;

use super::Global;
use crate::network::NixFiles;
use crate::ui::{Stream, table_on};

#[derive(Args, Debug)]
pub struct Opts {}

pub async fn run(g: &Global, _o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let network = crate::deploy::network_of(&d)?;
    let files = NixFiles::write()?;
    let accepted = network.arguments(&files, &g.nix_opts(Some(&d))?).await?;
    let mut names: Vec<&String> = accepted.keys().chain(network.args.keys()).collect();
    names.sort();
    names.dedup();
    let rows = names
        .into_iter()
        .map(|n| {
            let taken = match accepted.get(n) {
                Some(true) => "yes (has default)",
                Some(false) => "yes (required)",
                None => "no",
            };
            vec![
                n.clone(),
                network.args.get(n).cloned().unwrap_or_else(|| "-".into()),
                taken.into(),
            ]
        })
        .collect();
    out!(
        "{}",
        table_on(Stream::Stdout, &["Name", "Value", "Taken by the network"], rows)
    );
    Ok(0)
}

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::state::{self, Attrs, Store};

#[derive(Args, Debug)]
pub struct Opts {
    /// Network files
    #[arg(value_name = "NIX-FILE")]
    pub files: Vec<PathBuf>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.create_store()?;
    let mut attrs = Attrs::new();
    if let Some(name) = &g.deployment {
        if !state::valid_name(name) {
            bail!(
                "invalid deployment name ‘{name}’: names start with a letter, ‘_’ or ‘-’ and contain letters, digits, ‘_’, ‘-’ and ‘.’"
            );
        }
        if store.deployments()?.iter().any(|d| d.name() == Some(name)) {
            bail!("a deployment named ‘{name}’ already exists");
        }
        attrs.insert("name".into(), name.clone());
    }
    let files = o
        .files
        .iter()
        .map(|f| crate::network::absolute(f))
        .collect::<Result<Vec<_>>>()?;
    attrs.insert("nixExprs".into(), serde_json::to_string(&files)?);
    if !g.nix_path.is_empty() {
        attrs.insert("nixPath".into(), serde_json::to_string(&g.nix_path)?);
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    store.create_deployment(&uuid, &attrs)?;
    errln!("created deployment ‘{uuid}’");
    if !files.is_empty() {
        super::record_network_attrs(g, &store, &uuid).await?;
    }
    outln!("{uuid}");
    Ok(0)
}

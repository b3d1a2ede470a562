use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::state::{self, Attrs};

#[derive(Args, Debug)]
pub struct Opts {
    /// Network files (or --network DIR; without either, the current
    /// directory's nixops.nix or flake.nix, as NixOps 2.0)
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
    // As NixOps 2.0, the current directory's network when none is named;
    // without one there, a deployment without network (see `modify`).
    let source = match super::network_of_args(g, &o.files).await? {
        Some(s) => s,
        None if ["nixops.nix", "flake.nix"]
            .iter()
            .any(|f| std::path::Path::new(f).exists()) =>
        {
            super::locate(g, crate::network::flake::resolve(".")?).await?
        }
        None => crate::network::Source::Files(Vec::new()),
    };
    let has_network = source != crate::network::Source::Files(Vec::new());
    for (k, v) in source.attr_changes()? {
        if let Some(v) = v {
            attrs.insert(k, v);
        }
    }
    if !g.nix_path.is_empty() {
        attrs.insert("nixPath".into(), serde_json::to_string(&g.nix_path)?);
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    store.create_deployment(&uuid, &attrs)?;
    errln!("created deployment ‘{uuid}’");
    if has_network {
        super::record_network_attrs(g, &store, &uuid).await?;
    }
    outln!("{uuid}");
    Ok(0)
}

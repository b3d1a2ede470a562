//! Colmena's `eval` (alias `introspect`): a Nix expression, a function of
//! `{ lib, pkgs, nodes, ... }`, evaluated against the network; prints its
//! value as JSON, byte for byte as Colmena does.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::network::NixFiles;

#[derive(Args, Debug)]
pub struct Opts {
    /// The Nix expression, e.g. '{ nodes, ... }: nodes.web.config.networking.hostName'
    #[arg(short = 'E', value_name = "EXPRESSION")]
    pub expression: Option<String>,
    /// Write the derivations the expression returns to the store and print
    /// their paths (hive files only)
    #[arg(long)]
    pub instantiate: bool,
    /// A .nix file holding the expression
    #[arg(value_name = "FILE", conflicts_with = "expression")]
    pub file: Option<PathBuf>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let expression = match (o.file, o.expression) {
        (Some(f), _) => {
            let abs = std::fs::canonicalize(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            format!("import {}", crate::network::nix_string(&abs.to_string_lossy()))
        }
        (None, Some(e)) => e,
        (None, None) => bail!("give an expression with -E EXPRESSION, or a .nix file holding one"),
    };
    let (d, nix) = g.hive_view().await?;
    let network = crate::deploy::network_of(&d)?;
    let files = NixFiles::write()?;
    let out = network
        .introspect(&files, &nix, &expression, o.instantiate)
        .await?;
    if o.instantiate {
        // nix-instantiate's lines, as it prints them.
        for line in out.lines() {
            outln!("{line}");
        }
    } else {
        outln!("{out}");
    }
    Ok(0)
}

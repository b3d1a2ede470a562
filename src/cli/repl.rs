//! Colmena's `repl`: `nix repl` with the network loaded as `{ lib, pkgs,
//! nodes }` (so `nodes.web.config...` completes with Tab).

use anyhow::{Result, bail};

use super::Global;
use crate::network::NixFiles;

pub async fn run(g: &Global) -> Result<i32> {
    let (d, nix) = g.hive_view().await?;
    let network = crate::deploy::network_of(&d)?;
    let files = NixFiles::write()?;
    let file = network.repl_file(&files, &nix).await?;
    let (major, minor) = super::nix_info::version().await?;
    let mut cmd = std::process::Command::new("nix");
    cmd.arg("repl")
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(nix.eval_args());
    // Nix 2.10 reads a file given to `nix repl` as an installable; it
    // wants --file for one.
    if (major, minor) >= (2, 10) {
        cmd.arg("--file");
    }
    let status = cmd.arg(&file).status()?;
    if !status.success() {
        bail!("nix repl failed ({status})");
    }
    Ok(0)
}

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::network::nix_string;

#[derive(Args, Debug)]
pub struct Opts {}

/// The physical spec NixOps generates for a deployment of existing
/// machines: each machine's configuration learns the other machines' SSH
/// host keys (and the addresses state records for it).
pub fn run(g: &Global, _o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let machines: Vec<_> = d.machines().filter(|r| !r.obsolete()).collect();
    let mut known_hosts = String::new();
    for m in &machines {
        if let Some(key) = m.get("publicHostKey") {
            known_hosts += &format!(
                "      services.openssh.knownHosts.{} = {{ hostNames = [ {} ]; publicKey = {}; }};\n",
                nix_string(&m.name),
                nix_string(&m.name),
                nix_string(key)
            );
        }
    }
    outln!("{{");
    for m in &machines {
        let mut config = known_hosts.clone();
        for (attr, option) in [
            ("privateIpv4", "networking.privateIPv4"),
            ("publicIpv4", "networking.publicIPv4"),
        ] {
            if let Some(ip) = m.get(attr) {
                config += &format!("      {option} = {};\n", nix_string(ip));
            }
        }
        if config.is_empty() {
            continue;
        }
        outln!("  {} = {{ config, lib, pkgs, ... }}: {{", nix_string(&m.name));
        outln!("    config = {{");
        out!("{config}");
        outln!("    }};");
        outln!("  }};");
    }
    outln!("}}");
    Ok(0)
}

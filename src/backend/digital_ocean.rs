//! DigitalOcean droplets: targetEnv "droplet" (NixOps 2.0's plugin,
//! nixops-digitalocean) and "digitalOcean" (NixOps 1.x's backend), the same
//! but for their options' names and one NixOS option. A droplet is reached
//! at its `publicIpv4` with the private key of the deployment's SSH key
//! pair resource named `ssh-key` (NixOps gave its public half to the
//! droplet). NixOps keeps no host key of a droplet (it ignored known_hosts
//! for it): the first contact pins it here, in `publicHostKey`, and a
//! changed one is refused from then on. Its physical spec is the backend's:
//! nixpkgs' qemu-guest profile, the network DigitalOcean gave it (address,
//! netmask, gateways, recorded in state), its root file system and root's
//! authorized key. Everything that needs DigitalOcean's API refuses.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{Backend, Def, Power, Reach, Spec};
use crate::network::MachineInfo;
use crate::state::{Deployment, Resource};

pub struct Droplet {
    target_env: &'static str,
    describe: &'static str,
    options: &'static str,
    /// NixOps 1.x named an interface's addresses `ip4`/`ip6`; 2.0
    /// `ipv4.addresses`/`ipv6.addresses`.
    legacy: bool,
    /// The resolvers it sets.
    nameservers: &'static [&'static str],
}

pub static DROPLET: Droplet = Droplet {
    target_env: "droplet",
    describe: "a DigitalOcean droplet (targetEnv \"droplet\")",
    options: concat!("(", include_str!("droplet.nix"), ") \"droplet\""),
    legacy: false,
    nameservers: &["67.207.67.2", "67.207.67.3"],
};

pub static DIGITAL_OCEAN: Droplet = Droplet {
    target_env: "digitalOcean",
    describe: "a DigitalOcean droplet (targetEnv \"digitalOcean\", NixOps 1.x)",
    options: concat!("(", include_str!("droplet.nix"), ") \"digitalOcean\""),
    legacy: true,
    nameservers: &["8.8.8.8"],
};

/// The deployment's key pair NixOps logs in to droplets with.
const KEY_RESOURCE: &str = "ssh-key";

fn key_pair<'a>(d: &'a Deployment, machine: &str, half: &str) -> Result<&'a str> {
    d.resources
        .get(KEY_RESOURCE)
        .filter(|r| r.kind == "ssh-keypair")
        .and_then(|r| super::attr(r, half))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "machine ‘{machine}’ is a DigitalOcean droplet, reached (as NixOps reaches it) with the SSH key pair resource ‘{KEY_RESOURCE}’ (resources.sshKeyPairs.{KEY_RESOURCE}), which state does not hold with its {half}"
            )
        })
}

/// The length of a netmask's prefix ("255.255.240.0" → 20).
fn prefix_len(netmask: &str) -> Result<u32> {
    let m: std::net::Ipv4Addr = netmask
        .parse()
        .map_err(|_| anyhow::anyhow!("state's netmask ‘{netmask}’ is no IPv4 netmask"))?;
    Ok(u32::from(m).count_ones())
}

impl Backend for Droplet {
    fn target_env(&self) -> &'static str {
        self.target_env
    }

    fn describe(&self) -> &'static str {
        self.describe
    }

    fn options_nix(&self) -> &'static str {
        self.options
    }

    fn instead(&self) -> &'static str {
        "the DigitalOcean control panel or ‘doctl’ (or Terraform)"
    }

    fn reach(
        &self,
        d: &Deployment,
        machine: &str,
        info: &MachineInfo,
        state: Option<&Resource>,
    ) -> Result<Reach> {
        let how = super::Recorded {
            address: "publicIpv4",
            private_key: None,
            // NixOps keeps none: the one pinned at first contact.
            host_key: "publicHostKey",
        };
        let mut reach = super::reach_recorded(self, machine, info, state, &how)?;
        reach.private_key = Some(key_pair(d, machine, "privateKey")?.to_owned());
        Ok(reach)
    }

    fn physical(&self, d: &Deployment, r: &Resource) -> Result<Spec> {
        let address = super::required(self, r, "publicIpv4")?;
        let prefix = prefix_len(super::required(self, r, "netmask")?)?;
        let (v4, v6) = if self.legacy {
            (vec!["ip4"], vec!["ip6"])
        } else {
            (vec!["ipv4", "addresses"], vec!["ipv6", "addresses"])
        };
        let iface = |tail: &[&str]| -> Vec<String> {
            ["networking", "interfaces", "ens3"]
                .iter()
                .chain(tail)
                .map(|s| s.to_string())
                .collect()
        };
        let def = |path: Vec<String>, value: Value| Def {
            path,
            value,
            priority: None,
        };
        let mut defs = vec![
            Def::new(&["networking", "defaultGateway"], json!(r.get("defaultGateway"))),
            Def::new(&["networking", "nameservers"], json!(self.nameservers)),
            def(
                iface(&v4),
                json!([{ "address": address, "prefixLength": prefix }]),
            ),
        ];
        if let Some(v6addr) = super::attr(r, "publicIpv6") {
            let v: Value = serde_json::from_str(v6addr).map_err(|e| {
                anyhow::anyhow!("state's publicIpv6 of machine ‘{}’ is not JSON: {e}", r.name)
            })?;
            if v.as_object().is_some_and(|o| !o.is_empty()) {
                defs.push(def(
                    iface(&v6),
                    json!([{ "address": v.get("address"), "prefixLength": v.get("prefixLength") }]),
                ));
            }
        }
        if let Some(gw6) = super::attr(r, "defaultGateway6") {
            defs.push(Def::new(&["networking", "defaultGateway6"], json!(gw6)));
        }
        defs.extend([
            Def::new(&["boot", "loader", "grub", "device"], json!("nodev")),
            Def::new(
                &["fileSystems", "/"],
                json!({ "device": "/dev/vda1", "fsType": "ext4" }),
            ),
            Def::new(
                &["users", "extraUsers", "root", "openssh", "authorizedKeys", "keys"],
                json!([key_pair(d, &r.name, "publicKey")?]),
            ),
        ]);
        Ok(Spec {
            imports: vec!["nixos/modules/profiles/qemu-guest.nix".into()],
            modules: Vec::new(),
            defs,
            secret: false,
        })
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()> {
        let r = super::recorded(self, machine, info, state)?;
        let env = self.target_env;
        super::unchanged(
            self,
            machine,
            info,
            r,
            &[
                ("region", &format!("{env}.region")),
                ("size", &format!("{env}.size")),
            ],
        )?;
        if super::attr(r, "netmask").is_none() {
            bail!(
                "machine ‘{machine}’ is {}, but state has no netmask for it (NixOps records it when it makes the droplet): its network configuration cannot be made",
                self.describe
            );
        }
        Ok(())
    }

    fn power_refusal(&self, r: &Resource, op: Power) -> anyhow::Error {
        let action = match op {
            Power::Start => "power-on",
            Power::Stop => "shutdown",
        };
        let how = format!(
            "run ‘doctl compute droplet-action {action} {}’ (or use the DigitalOcean control panel)",
            r.get(&format!("{}.dropletId", self.target_env))
                .unwrap_or("<droplet id>")
        );
        super::refuse(self, &r.name, op.verb(), how)
    }

    fn destroy_refusal(&self, r: &Resource) -> anyhow::Error {
        let how = format!(
            "delete it with ‘doctl compute droplet delete {}’ (or the DigitalOcean control panel, or Terraform), then ‘nixops delete-resources --include {}’ forgets it",
            r.get(&format!("{}.dropletId", self.target_env))
                .unwrap_or("<droplet id>"),
            r.name
        );
        super::refuse(self, &r.name, "destroy", how)
    }
}

//! targetEnv "hetznercloud": a Hetzner Cloud server that the Hetzner Cloud
//! plugin (nixops-hetznercloud) made. It is reached at its `publicIpv4`
//! with the client key the plugin generated
//! (`hetznerCloud.privateClientKey`), its host key pinned
//! (`hetznerCloud.publicHostKey`, which the plugin installed). Its physical
//! spec is the plugin's: nixpkgs' qemu-guest profile, the root file system
//! and boot loader, Hetzner Cloud's network (its gateways, resolvers, the
//! server's addresses and those of its private networks and floating IPs),
//! its volumes' file systems and root's authorized client key. Everything
//! that needs Hetzner's API refuses.

use anyhow::Result;
use serde_json::{Map, Value, json};

use super::{Backend, Def, Power, Reach, ResourceType, Spec};
use crate::network::MachineInfo;
use crate::state::{Deployment, Resource};

pub struct HetznerCloud;

const RESOURCES: &[ResourceType] = &[
    ResourceType::new("hetznerCloudCertificates", "hetznercloud-certificate", ""),
    ResourceType::new("hetznerCloudFloatingIPs", "hetznercloud-floating-ip", ""),
    ResourceType::new("hetznerCloudLoadBalancers", "hetznercloud-load-balancer", ""),
    ResourceType::new("hetznerCloudNetworks", "hetznercloud-network", ""),
    ResourceType::new("hetznerCloudVolumes", "hetznercloud-volume", ""),
];

/// Hetzner Cloud's IPv4 gateway, the same on every server (the plugin
/// sets it). It is a private address of the provider's network, kept as
/// octets: this repository's files name no private address as text.
pub const GATEWAY_V4: [u8; 4] = [172, 31, 1, 1];

/// Hetzner Cloud's resolvers, as the plugin sets them.
pub const NAMESERVERS: [&str; 4] = [
    "185.12.64.1",
    "185.12.64.2",
    "2a01:4ff:ff00::add:1",
    "2a01:4ff:ff00::add:2",
];

fn json_attr(r: &Resource, name: &str) -> Result<Map<String, Value>> {
    match super::attr(r, name) {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(Value::Null) => Ok(Map::new()),
            _ => anyhow::bail!("state's {name} of machine ‘{}’ is not a JSON object", r.name),
        },
    }
}

fn string(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

impl Backend for HetznerCloud {
    fn target_env(&self) -> &'static str {
        "hetznercloud"
    }

    fn describe(&self) -> &'static str {
        "a Hetzner Cloud server (targetEnv \"hetznercloud\")"
    }

    fn options_nix(&self) -> &'static str {
        include_str!("hetznercloud.nix")
    }

    fn options_attr(&self) -> &'static str {
        "hetznerCloud"
    }

    fn instead(&self) -> &'static str {
        "the Hetzner Cloud console or ‘hcloud’ (or Terraform)"
    }

    fn resource_types(&self) -> &'static [ResourceType] {
        RESOURCES
    }

    fn reach(
        &self,
        _d: &Deployment,
        machine: &str,
        info: &MachineInfo,
        state: Option<&Resource>,
    ) -> Result<Reach> {
        super::reach_recorded(
            self,
            machine,
            info,
            state,
            &super::Recorded {
                address: "publicIpv4",
                private_key: Some("hetznerCloud.privateClientKey"),
                host_key: "hetznerCloud.publicHostKey",
            },
        )
    }

    fn physical(&self, _d: &Deployment, r: &Resource) -> Result<Spec> {
        let legacy = r.get("legacyIfScheme") == Some("1");
        let public_ipv4 = super::required(self, r, "publicIpv4")?;
        let mut ipv4 = vec![json!({ "address": public_ipv4, "prefixLength": 32 })];
        // The plugin records the server's IPv6 network ("2a01:…::/64") and
        // takes its first address by cutting the "/64".
        let public_ipv6 = r.get("publicIpv6").unwrap_or("");
        let cut = public_ipv6.char_indices().rev().nth(2).map_or(0, |(i, _)| i);
        let mut ipv6 = vec![json!({ "address": &public_ipv6[..cut], "prefixLength": 64 })];
        for addr in json_attr(r, "hetznerCloud.ipAddresses")?.values() {
            let Some(addr) = addr.as_str() else { continue };
            if addr.parse::<std::net::Ipv4Addr>().is_ok() {
                ipv4.push(json!({ "address": addr, "prefixLength": 32 }));
            } else {
                ipv6.push(json!({ "address": addr, "prefixLength": 64 }));
            }
        }
        let gateway = std::net::Ipv4Addr::from(GATEWAY_V4).to_string();
        let mut defs = vec![
            Def::new(&["boot", "loader", "grub", "device"], json!("nodev")),
            Def::new(
                &["fileSystems", "/"],
                json!({ "device": "/dev/sda1", "fsType": "ext4" }),
            ),
        ];
        let volumes = json_attr(r, "hetznerCloud.volumes")?;
        for v in volumes.values() {
            if let Some(mount) = string(v, "mountPoint").filter(|m| !m.is_empty()) {
                defs.push(Def::new(
                    &["fileSystems", &mount],
                    json!({ "fsType": v.get("fsType"), "device": v.get("device") }),
                ));
            }
        }
        defs.extend([
            Def::new(&["networking", "defaultGateway"], json!(gateway)),
            Def::new(&["networking", "nameservers"], json!(NAMESERVERS)),
            Def::new(
                &["networking", "defaultGateway6"],
                json!({ "address": "fe80::1", "interface": "ens3" }),
            ),
        ]);
        let main = if legacy { "ens3" } else { "enp1s0" };
        defs.push(Def::new(
            &["networking", "interfaces", main],
            json!({ "ipv4": { "addresses": ipv4 }, "ipv6": { "addresses": ipv6 }, "useDHCP": true }),
        ));
        defs.push(Def::new(
            &["users", "extraUsers", "root", "openssh", "authorizedKeys", "keys"],
            json!([r.get("hetznerCloud.publicClientKey")]),
        ));
        for (i, v) in json_attr(r, "hetznerCloud.serverNetworks")?.values().enumerate() {
            let iface = if legacy {
                format!("ens{}", 10 + i)
            } else {
                format!("enp{}s0", 7 + i)
            };
            let mut addrs = vec![v.get("privateIpAddress").cloned().unwrap_or(Value::Null)];
            if let Some(Value::Array(more)) = v.get("aliasIpAddresses") {
                addrs.extend(more.iter().cloned());
            }
            let addrs: Vec<Value> = addrs
                .into_iter()
                .map(|a| json!({ "address": a, "prefixLength": 32 }))
                .collect();
            defs.push(Def::new(
                &["networking", "interfaces", &iface],
                json!({ "ipv4": { "addresses": addrs }, "useDHCP": true }),
            ));
        }
        if volumes
            .values()
            .any(|v| string(v, "fsType").as_deref() == Some("xfs"))
        {
            defs.push(Def::new(&["boot", "kernelModules"], json!(["xfs"])));
        }
        Ok(Spec {
            imports: vec!["nixos/modules/profiles/qemu-guest.nix".into()],
            modules: Vec::new(),
            defs,
            secret: false,
        })
    }

    fn nixops_host_key(&self, r: &Resource) -> Option<String> {
        super::attr(r, "hetznerCloud.publicHostKey").and_then(super::host_key)
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()> {
        let r = super::recorded(self, machine, info, state)?;
        super::unchanged(
            self,
            machine,
            info,
            r,
            &[
                ("location", "hetznerCloud.location"),
                ("serverType", "hetznerCloud.serverType"),
            ],
        )
    }

    fn power_refusal(&self, r: &Resource, op: Power) -> anyhow::Error {
        let verb = match op {
            Power::Start => "poweron",
            Power::Stop => "shutdown",
        };
        let how = format!(
            "run ‘hcloud server {verb} {}’ (or use the Hetzner Cloud console)",
            r.get("hetznerCloud.serverName")
                .or(r.get("vmId"))
                .unwrap_or("<server>")
        );
        super::refuse(self, &r.name, op.verb(), how)
    }

    fn destroy_refusal(&self, r: &Resource) -> anyhow::Error {
        let how = format!(
            "delete it with ‘hcloud server delete {}’ (or the Hetzner Cloud console, or Terraform), then ‘nixops delete-resources --include {}’ forgets it",
            r.get("hetznerCloud.serverName")
                .or(r.get("vmId"))
                .unwrap_or("<server>"),
            r.name
        );
        super::refuse(self, &r.name, "destroy", how)
    }
}

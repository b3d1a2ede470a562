//! targetEnv "gce": a Google Compute Engine instance that NixOps' GCE
//! plugin (nixops-gce; NixOps 1.x's gce backend) made. It is reached at its
//! `publicIpv4` with the client key the plugin generated
//! (`gce.privateClientKey`), its host key pinned (`gce.publicHostKey`,
//! which NixOps gave the instance in its metadata). Its physical spec is
//! the plugin's: nixpkgs' google-compute-config.nix, the generated LUKS
//! passphrases of its disks, and the guest agent told to keep the host keys.
//! Everything that needs Google's API refuses.

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use super::{Backend, Def, Power, Reach, ResourceType, Spec};
use crate::network::MachineInfo;
use crate::state::{Deployment, Resource};

pub struct Gce;

const RESOURCES: &[ResourceType] = &[
    ResourceType::new("gceDisks", "gce-disk", ""),
    ResourceType::new("gceStaticIPs", "gce-static-ip", ""),
    ResourceType::new("gceNetworks", "gce-network", ""),
    ResourceType::new("gceHTTPHealthChecks", "gce-http-health-check", ""),
    ResourceType::new("gceTargetPools", "gce-target-pool", ""),
    ResourceType::new("gceForwardingRules", "gce-forwarding-rule", ""),
    ResourceType::new("gseBuckets", "gse-bucket", ""),
    ResourceType::new("gceImages", "gce-image", ""),
    ResourceType::new("gceRoutes", "gce-route", ""),
];

/// The disks of `gce.blockDeviceMapping` whose LUKS passphrase NixOps
/// generated (and keeps in state): device → passphrase.
fn generated_keys(r: &Resource) -> Result<Map<String, Value>> {
    let Some(text) = super::attr(r, "gce.blockDeviceMapping") else {
        return Ok(Map::new());
    };
    let mapping: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "state's gce.blockDeviceMapping of machine ‘{}’ is not JSON: {e}",
            r.name
        )
    })?;
    let mut out = Map::new();
    for (device, disk) in mapping {
        let s = |k: &str| disk.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        if disk.get("encrypt").and_then(Value::as_bool).unwrap_or(false) && s("passphrase").is_empty() {
            let key = s("generatedKey");
            if !key.is_empty() {
                out.insert(device, Value::String(key));
            }
        }
    }
    Ok(out)
}

impl Backend for Gce {
    fn target_env(&self) -> &'static str {
        "gce"
    }

    fn describe(&self) -> &'static str {
        "a Google Compute Engine instance (targetEnv \"gce\")"
    }

    fn options_nix(&self) -> &'static str {
        include_str!("gce.nix")
    }

    fn instead(&self) -> &'static str {
        "the Google Cloud console or ‘gcloud compute’ (or Terraform)"
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
                private_key: Some("gce.privateClientKey"),
                host_key: "gce.publicHostKey",
            },
        )
    }

    fn physical(&self, _d: &Deployment, r: &Resource) -> Result<Spec> {
        let keys = generated_keys(r)?;
        let mut defs = vec![Def::new(&["deployment", "gce", "blockDeviceMapping"], json!({}))];
        for (device, key) in &keys {
            defs.push(Def::at(
                10,
                &["deployment", "gce", "blockDeviceMapping", device, "passphrase"],
                key.clone(),
            ));
        }
        defs.push(Def::new(
            &["environment", "etc", "default/instance_configs.cfg", "text"],
            json!("[InstanceSetup]\nset_host_keys = false"),
        ));
        Ok(Spec {
            imports: vec!["nixos/modules/virtualisation/google-compute-config.nix".into()],
            modules: Vec::new(),
            defs,
            secret: !keys.is_empty(),
        })
    }

    fn nixops_host_key(&self, r: &Resource) -> Option<String> {
        super::attr(r, "gce.publicHostKey").and_then(super::host_key)
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()> {
        let r = super::recorded(self, machine, info, state)?;
        super::unchanged(
            self,
            machine,
            info,
            r,
            &[("region", "gce.region"), ("instanceType", "gce.instanceType")],
        )?;
        if !generated_keys(r)?.is_empty() {
            bail!(
                "machine ‘{machine}’ is {}, with LUKS-encrypted disks whose passphrase NixOps generated and uploaded as keys (luks-*) on every deploy and boot; this tool does not upload those: give each disk's passphrase in the network (deployment.gce.blockDeviceMapping.<device>.passphrase) or deploy it with NixOps",
                self.describe()
            );
        }
        Ok(())
    }

    fn power_refusal(&self, r: &Resource, op: Power) -> anyhow::Error {
        let how = format!(
            "run ‘gcloud compute instances {} {} --zone {}’ (or use the Google Cloud console)",
            op.verb(),
            r.get("gce.name").unwrap_or("<instance>"),
            r.get("gce.region").unwrap_or("<zone>")
        );
        super::refuse(self, &r.name, op.verb(), how)
    }

    fn destroy_refusal(&self, r: &Resource) -> anyhow::Error {
        let how = format!(
            "delete it with ‘gcloud compute instances delete {} --zone {}’ (or the Google Cloud console, or Terraform), then ‘nixops delete-resources --include {}’ forgets it",
            r.get("gce.name").unwrap_or("<instance>"),
            r.get("gce.region").unwrap_or("<zone>"),
            r.name
        );
        super::refuse(self, &r.name, "destroy", how)
    }
}

//! targetEnv "hetzner": a Hetzner dedicated server (Robot) that NixOps'
//! Hetzner backend (NixOps 1.x, nixops-hetzner) installed NixOS on. It is
//! reached at `hetzner.mainIPv4` with the client key the backend generated
//! (`hetzner.sshPrivateKey`). The backend keeps no host key (NixOps accepted
//! a new one into the user's known_hosts): the first contact pins it here,
//! in `publicHostKey`, and a changed one is refused from then on. Its
//! physical spec is the backend's: the network configuration it read from
//! the server (`hetzner.networkInfo`), the file systems and hardware
//! configuration it kept as Nix text (`hetzner.fsInfo`,
//! `hetzner.hardwareInfo`), and root's authorized client key. A server in
//! the rescue system, and everything that needs the Robot, refuse.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{Backend, Def, Power, Reach, Spec};
use crate::network::MachineInfo;
use crate::state::{Deployment, Resource};

pub struct Hetzner;

/// NixOps' machine state "rescue system active".
const RESCUE: i64 = 7;

impl Backend for Hetzner {
    fn target_env(&self) -> &'static str {
        "hetzner"
    }

    fn describe(&self) -> &'static str {
        "a Hetzner dedicated server (targetEnv \"hetzner\")"
    }

    fn options_nix(&self) -> &'static str {
        include_str!("hetzner.nix")
    }

    fn instead(&self) -> &'static str {
        "the Hetzner Robot (robot.hetzner.com)"
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
                address: "hetzner.mainIPv4",
                private_key: Some("hetzner.sshPrivateKey"),
                // The backend keeps none: the one pinned at first contact.
                host_key: "publicHostKey",
            },
        )
    }

    fn public_ipv4(&self, r: &Resource) -> Option<String> {
        super::attr(r, "hetzner.mainIPv4").map(str::to_owned)
    }

    fn physical(&self, _d: &Deployment, r: &Resource) -> Result<Spec> {
        // As the backend: all of it, or nothing (an installation not
        // finished).
        let (Some(net), Some(fs), Some(hw), Some(key)) = (
            super::attr(r, "hetzner.networkInfo"),
            super::attr(r, "hetzner.fsInfo"),
            super::attr(r, "hetzner.hardwareInfo"),
            super::attr(r, "hetzner.sshPublicKey"),
        ) else {
            return Ok(Spec::default());
        };
        let net: Value = serde_json::from_str(net).map_err(|e| {
            anyhow::anyhow!(
                "state's hetzner.networkInfo of machine ‘{}’ is not JSON: {e}",
                r.name
            )
        })?;
        let Value::Object(net) = net else {
            bail!(
                "state's hetzner.networkInfo of machine ‘{}’ is not an attribute set",
                r.name
            );
        };
        let mut defs: Vec<Def> = net.into_iter().map(|(k, v)| Def::new(&[&k], v)).collect();
        defs.push(Def::new(
            &["users", "extraUsers", "root", "openssh", "authorizedKeys", "keys"],
            json!([key]),
        ));
        Ok(Spec {
            imports: Vec::new(),
            modules: vec![fs.to_owned(), hw.to_owned()],
            defs,
            secret: false,
        })
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()> {
        let r = super::recorded(self, machine, info, state)?;
        if r.state() == RESCUE {
            bail!(
                "machine ‘{machine}’ is {}, recorded in state as running the rescue system (NixOps installs from there, with the rescue password): this tool deploys installed servers only; finish the installation with NixOps, or reboot it into its system from the Hetzner Robot",
                self.describe()
            );
        }
        super::unchanged(self, machine, info, r, &[("mainIPv4", "hetzner.mainIPv4")])
    }

    fn power_refusal(&self, r: &Resource, op: Power) -> anyhow::Error {
        let how = match op {
            Power::Start => "send it a reset from the Hetzner Robot (robot.hetzner.com, ‘Reset’)".to_owned(),
            Power::Stop => format!(
                "shut it down with ‘nixops ssh {} systemctl halt’ (the Robot's reset starts it again)",
                r.name
            ),
        };
        super::refuse(self, &r.name, op.verb(), how)
    }

    fn destroy_refusal(&self, r: &Resource) -> anyhow::Error {
        let name = &r.name;
        let how = format!(
            "NixOps put the server back into the rescue system and removed its Robot admin account; do that in the Hetzner Robot (and cancel the server there), then ‘nixops delete-resources --include {name}’ forgets it"
        );
        super::refuse(self, name, "destroy", how)
    }
}

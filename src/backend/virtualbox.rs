//! targetEnv "virtualbox": a local VirtualBox VM that NixOps' VirtualBox
//! backend (NixOps 1.x, nixops-vbox) made. It is reached at its
//! `privateIpv4` (the host-only network's address the guest reported) with
//! the client key the backend generated (`virtualbox.clientPrivateKey`), its
//! host key pinned (`virtualbox.publicHostKey`, which the backend gave the
//! VM). Its physical spec is the backend's: nixpkgs' virtualbox-image.nix
//! and the backend's guest module (the VM fetches the client key and its
//! host key from VirtualBox's guest properties at boot; sshd accepts the
//! client key from there). Starting, stopping and destroying the VM need
//! VirtualBox here (`VBoxManage`), which the tool does not drive: they
//! refuse with the command to run.

use anyhow::{Result, bail};

use super::{Backend, Power, Reach, Spec};
use crate::network::MachineInfo;
use crate::state::{Deployment, Resource};

pub struct VirtualBox;

/// The backend's guest module (NixOps imported it from its own files as
/// `<virtualbox-image-nixops.nix>`), as Nix text of this tool's.
const GUEST_MODULE: &str = r#"{ config, lib, modulesPath, ... }:
{
  # The client key NixOps logs in with, and (on first boot) the host key
  # NixOps generated: both from VirtualBox's guest properties.
  systemd.services.get-vbox-nixops-client-key = {
    description = "Get NixOps SSH Key";
    wantedBy = [ "multi-user.target" ];
    before = [ "sshd.service" ];
    requires = [ "dev-vboxguest.device" ];
    after = [ "dev-vboxguest.device" ];
    path = [ config.boot.kernelPackages.virtualboxGuestAdditions ];
    script = ''
      set -o pipefail
      VBoxControl -nologo guestproperty get /VirtualBox/GuestInfo/Charon/ClientPublicKey | sed 's/Value: //' > /root/.vbox-nixops-client-key.tmp
      mv /root/.vbox-nixops-client-key.tmp /root/.vbox-nixops-client-key
      if [[ ! -f /etc/ssh/ssh_host_ed25519_key ]]; then
        VBoxControl -nologo guestproperty get /VirtualBox/GuestInfo/NixOps/PrivateHostEd25519Key | sed 's/Value: //' > /etc/ssh/ssh_host_ed25519_key.tmp
        mv /etc/ssh/ssh_host_ed25519_key.tmp /etc/ssh/ssh_host_ed25519_key
        chmod 0600 /etc/ssh/ssh_host_ed25519_key
      fi
    '';
  };
  services.openssh.enable = true;
  services.openssh.authorizedKeysFiles = [ ".vbox-nixops-client-key" ];
  boot.vesa = false;
  boot.loader.timeout = 1;
  # A restarted DHCP client may get another address from VirtualBox.
  systemd.services.dhcpcd.restartIfChanged = false;
}
"#;

impl VirtualBox {
    fn vm(r: &Resource) -> &str {
        r.get("vmId").unwrap_or("<vm>")
    }
}

impl Backend for VirtualBox {
    fn target_env(&self) -> &'static str {
        "virtualbox"
    }

    fn describe(&self) -> &'static str {
        "a VirtualBox VM (targetEnv \"virtualbox\")"
    }

    fn options_nix(&self) -> &'static str {
        include_str!("virtualbox.nix")
    }

    fn instead(&self) -> &'static str {
        "VirtualBox (‘VBoxManage’)"
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
                address: "privateIpv4",
                private_key: Some("virtualbox.clientPrivateKey"),
                host_key: "virtualbox.publicHostKey",
            },
        )
    }

    fn physical(&self, _d: &Deployment, _r: &Resource) -> Result<Spec> {
        Ok(Spec {
            imports: vec!["nixos/modules/virtualisation/virtualbox-image.nix".into()],
            modules: vec![GUEST_MODULE.to_owned()],
            defs: Vec::new(),
            secret: false,
        })
    }

    fn nixops_host_key(&self, r: &Resource) -> Option<String> {
        super::attr(r, "virtualbox.publicHostKey").and_then(super::host_key)
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()> {
        let r = super::recorded(self, machine, info, state)?;
        // A new shared folder is one VBoxManage adds to the VM.
        let recorded: serde_json::Map<String, serde_json::Value> = super::attr(r, "virtualbox.sharedFolders")
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        let declared = info
            .backend
            .as_ref()
            .and_then(|v| v.get("sharedFolders"))
            .and_then(|v| v.as_object());
        for name in declared.into_iter().flat_map(|o| o.keys()) {
            if !recorded.contains_key(name) {
                bail!(
                    "machine ‘{machine}’ is {}, and the network now declares deployment.virtualbox.sharedFolders.{name}, which the VM does not have: adding it needs VirtualBox (‘VBoxManage sharedfolder add {} --name {name} --hostpath PATH’ while the VM is stopped), which this tool does not drive",
                    self.describe(),
                    Self::vm(r)
                );
            }
        }
        Ok(())
    }

    fn power_refusal(&self, r: &Resource, op: Power) -> anyhow::Error {
        let how = match op {
            Power::Start => format!(
                "run ‘VBoxManage startvm {} --type {}’",
                Self::vm(r),
                if r.get("virtualbox.headless") == Some("1") {
                    "headless"
                } else {
                    "gui"
                }
            ),
            Power::Stop => format!("run ‘VBoxManage controlvm {} acpipowerbutton’", Self::vm(r)),
        };
        super::refuse(self, &r.name, op.verb(), how)
    }

    fn destroy_refusal(&self, r: &Resource) -> anyhow::Error {
        let how = format!(
            "run ‘VBoxManage controlvm {vm} poweroff’ and ‘VBoxManage unregistervm {vm} --delete’, then ‘nixops delete-resources --include {}’ forgets it",
            r.name,
            vm = Self::vm(r)
        );
        super::refuse(self, &r.name, "destroy", how)
    }
}

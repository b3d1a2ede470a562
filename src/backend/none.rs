//! targetEnv "none": an existing machine, reached at `deployment.targetHost`
//! over SSH. Nothing of it is made or destroyed: `destroy` forgets it, and
//! its power is not ours to switch.

use anyhow::{Result, bail};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Backend, Destroyed, Reach, Stored};
use crate::network::MachineInfo;
use crate::state::{Deployment, Resource};

pub struct Existing;

impl Backend for Existing {
    fn target_env(&self) -> &'static str {
        "none"
    }

    fn describe(&self) -> &'static str {
        "an existing machine (targetEnv \"none\")"
    }

    fn options_nix(&self) -> &'static str {
        include_str!("none.nix")
    }

    fn reach(
        &self,
        _d: &Deployment,
        machine: &str,
        info: &MachineInfo,
        state: Option<&Resource>,
    ) -> Result<Reach> {
        Ok(Reach {
            host: info.host_name(machine)?.to_owned(),
            port: port(machine, info.target_port)?,
            user: info.target_user.clone(),
            // The key NixOps generated for the machine (NixOps 2.0 logs in
            // with it; its public half is authorized by the physical spec).
            private_key: state.and_then(|r| r.get("none.sshPrivateKey")).map(str::to_owned),
            private_key_file: None,
            host_key: state.and_then(|r| r.get("publicHostKey")).map(str::to_owned),
        })
    }

    fn check_deploy(&self, machine: &str, info: &MachineInfo, _state: Option<&Resource>) -> Result<()> {
        port(machine, info.target_port)?;
        Ok(())
    }

    fn can_destroy(&self) -> bool {
        true
    }

    fn destroy<'a>(&'a self, _m: Stored<'a>, _wipe: bool) -> BoxFuture<'a, Result<Destroyed>> {
        async { Ok(Destroyed::Forgotten) }.boxed()
    }
}

/// `deployment.targetPort`, checked.
pub(super) fn port(machine: &str, port: Option<i64>) -> Result<Option<u16>> {
    match port {
        None => Ok(None),
        Some(p) if (1..=65535).contains(&p) => Ok(Some(p as u16)),
        Some(p) => bail!("machine ‘{machine}’: deployment.targetPort = {p} is not a port number"),
    }
}

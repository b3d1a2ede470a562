//! `forget-host-key`: a machine was reinstalled and presents a new SSH host
//! key, which every command refuses. This drops the pinned key from state
//! (after confirmation), so the next contact learns the new one.

use anyhow::{Result, bail};
use base64::Engine;
use clap::Args;
use sha2::{Digest, Sha256};

use super::{Global, confirm};
use crate::deploy::select;
use crate::process::{self, Sink};
use crate::ssh::Target;

#[derive(Args, Debug)]
pub struct Opts {
    /// The machines whose pinned host keys are forgotten
    #[arg(required = true, value_name = "MACHINE", add = super::completions::machine())]
    pub machines: Vec<String>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let d = g.deployment(&store)?;
    let _lock = store.lock(&d.uuid)?;
    let d = store.load(&d.uuid)?;
    for name in &o.machines {
        let m = select::stored_one(&d, g.ssh_persist, name)?;
        let attr = crate::backend::host_key_attr(&m.resource);
        let Some(pinned) = m.resource.get(attr) else {
            errln!("machine ‘{name}’ has no pinned host key; the next contact learns it");
            continue;
        };
        let question = format!(
            "machine ‘{name}’ of deployment ‘{}’ is pinned to the host key {}; {}. Forget that key, so that the next contact accepts the key the machine presents then?",
            d.label(),
            fingerprint(pinned),
            presented(m.target()).await
        );
        if !confirm(g, &question)? {
            bail!("not forgetting the host key of machine ‘{name}’");
        }
        store.set_resource_attrs(m.resource.id, &[(attr.into(), None)])?;
        errln!(
            "forgot the host key of machine ‘{name}’; the next command that reaches it learns its new key"
        );
    }
    Ok(0)
}

/// What the machine presents now, over a connection of its own: a master
/// connection, if one is open, would skip the host key check.
async fn presented(target: &Target) -> String {
    let out = match target.fresh_command("true", &[]) {
        Ok(mut cmd) => process::run(&mut cmd, None, Sink::quiet()).await,
        Err(e) => Err(e),
    };
    match out {
        Ok(out) if out.success() => "it still presents that key".to_owned(),
        Ok(out) => match target.host_key_changed(&out) {
            Some(e) => match e.presented {
                Some(k) => format!("it now presents the {k}"),
                None => "it now presents another key".to_owned(),
            },
            None => format!("it cannot be reached now ({})", out.last_error()),
        },
        Err(e) => format!("it cannot be reached now ({e:#})"),
    }
}

/// "ssh-ed25519 SHA256:…", as ssh shows fingerprints.
fn fingerprint(key: &str) -> String {
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return key.to_owned();
    };
    match base64::engine::general_purpose::STANDARD.decode(blob) {
        Ok(bytes) => {
            let hash = base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&bytes));
            format!("{kind} SHA256:{hash}")
        }
        Err(_) => key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_as_ssh_keygen_shows_them() {
        // `ssh-keygen -l` says SHA256:queUZ+0lf7DelIsvdu0qdCawDgkAJo8wcm1DrniW4Bw.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMhC9ZR/So7YRXzXwaXZmvIUdVkVNBfVcg9KzFkH9g5k";
        assert_eq!(
            super::fingerprint(key),
            "ssh-ed25519 SHA256:queUZ+0lf7DelIsvdu0qdCawDgkAJo8wcm1DrniW4Bw"
        );
        assert_eq!(super::fingerprint("garbage"), "garbage");
    }
}

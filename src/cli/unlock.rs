use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::state::Unlock;

#[derive(Args, Debug)]
pub struct Opts {}

/// Clears a lock left behind by a process that is gone; refuses while a
/// live process holds it.
pub fn run(g: &Global, _o: Opts) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    match store.unlock(&d.uuid)? {
        Unlock::NotLocked => errln!("deployment ‘{}’ is not locked", d.label()),
        Unlock::Cleared => errln!("removed the stale lock of deployment ‘{}’", d.label()),
        Unlock::Held { by } => bail!(
            "deployment ‘{}’ is locked by a running process{}; refusing to unlock it",
            d.label(),
            by.map(|b| format!(" ({b})")).unwrap_or_default()
        ),
    }
    Ok(0)
}

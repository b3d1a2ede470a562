use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::select;

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
}

/// `start` and `stop`: machines of type `none` are existing machines that we
/// do not control the power of.
pub fn run(g: &Global, o: Opts, verb: &str) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let machines = select::stored_in(&d, g.ssh_persist, &o.machines.filter())?;
    let mut code = 0;
    for m in &machines {
        if m.resource.kind == "none" {
            errln!(
                "{}> cannot {verb} machine ‘{}’: it is an existing machine (targetEnv \"none\") that nixops does not manage the power of; use ‘nixops reboot’ or your provider's tools",
                m.name,
                m.name
            );
            code = 1;
        }
    }
    Ok(code)
}

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::backend::{self, Power};
use crate::deploy::select;

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
}

/// `start` and `stop`: each machine's backend does it, or says why it
/// cannot (an existing machine's power is not ours to switch).
pub fn run(g: &Global, o: Opts, power: Power) -> Result<i32> {
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let machines = select::stored_in(&d, g.ssh_persist, &o.machines.filter())?;
    let mut code = 0;
    for m in &machines {
        let stored = backend::Stored {
            deployment: &d,
            resource: &m.resource,
        };
        if let Err(e) = backend::for_machine(&m.name, &m.resource.kind)?.power(stored, power) {
            errln!("{}> {e:#}", m.name);
            code = 1;
        }
    }
    Ok(code)
}

use std::sync::{Arc, Mutex};

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
pub async fn run(g: &Global, o: Opts, power: Power) -> Result<i32> {
    let d = g.deployment(&g.read_store()?)?;
    let machines = select::stored_in(&d, g.ssh_persist, &o.machines.filter())?;
    // Only a backend that makes its machines changes state.
    let writes = machines
        .iter()
        .any(|m| backend::of(&m.resource.kind).is_some_and(|b| b.makes_machines()));
    let store = Arc::new(Mutex::new(if writes { g.open_store()? } else { g.read_store()? }));
    let _lock = if writes {
        Some(store.lock().expect("state lock").lock(&d.uuid)?)
    } else {
        None
    };
    let d = if writes {
        store.lock().expect("state lock").load(&d.uuid)?
    } else {
        d
    };
    let mut code = 0;
    for m in &machines {
        let Some(r) = d.resources.get(&m.name) else {
            continue;
        };
        let stored = backend::Stored {
            deployment: &d,
            resource: r,
        };
        let state = backend::StateWriter::new(store.clone(), &d.uuid, &m.name, &r.kind);
        let b = backend::for_machine(&m.name, &r.kind)?;
        match b.power(stored, power, &state).await {
            Ok(()) => errln!(
                "{}> {}ed",
                m.name,
                if power == Power::Stop { "stopp" } else { "start" }
            ),
            Err(e) => {
                errln!("{}> {e:#}", m.name);
                code = 1;
            }
        }
    }
    Ok(code)
}

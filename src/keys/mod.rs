//! deployment.keys: secrets delivered to machines out of band, never
//! through the Nix store.
//!
//! - spec.rs: what the network declares, checked;
//! - source.rs: where the bytes come from (text, keyFile, keyCommand);
//! - secret.rs: the zeroizing buffers they live in;
//! - deliver.rs and upload.sh: one SSH session per machine;
//! - record.rs: what state keeps (where each key went, a salted hash).
//!
//! The interface: [`prepare`] (a deploy's machines, texts evaluated at
//! once), [`MachineKeys::gather`] (read files, run commands),
//! [`MachineKeys::changes`] (what a delivery would change, for plans), [`deliver`]
//! (one phase to one machine), [`send`] (everything, for send-keys and
//! after reboots), [`check`] (before anything is touched).
//!
//! Secrets live in zeroizing buffers and are dropped as soon as the last
//! delivery that needs them is done.

mod deliver;
mod record;
mod secret;
mod source;
mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::{Result, anyhow};

use crate::host::Host;
use crate::network::{KeyInfo, MachineInfo, Network, NetworkInfo, NixFiles};
use crate::nix::NixOpts;
use crate::state::{Deployment, StoreBox};
use crate::ui::Events;
use record::Delivered;
use secret::Secret;
use spec::{KeySpec, Source};

pub use deliver::{Phase, deliver};
pub use record::KeyChanges;
pub use spec::{check, check_machine};

/// What key handling needs of the run.
pub struct Context<'a> {
    /// As loaded at the start (the network, what was delivered).
    pub deployment: &'a Deployment,
    pub nix: &'a NixOpts,
    /// Where deliveries are recorded.
    pub store: &'a Mutex<StoreBox>,
}

/// What a delivery needs to know about the machine.
pub struct KeyTarget<'a> {
    pub name: &'a str,
    pub resource_id: i64,
    pub host: &'a Host,
}

/// One machine's keys for a run: what is declared, what state says was
/// delivered, and (once gathered) the secrets.
pub struct MachineKeys {
    machine: String,
    specs: Vec<KeySpec>,
    delivered: BTreeMap<String, Delivered>,
    texts: BTreeMap<String, Secret>,
    secrets: BTreeMap<String, Secret>,
    /// Sent before activation while their owner did not exist yet.
    owner_pending: BTreeSet<String>,
}

impl MachineKeys {
    /// `delivered` is the machine's `keys` state attribute.
    pub fn new(machine: &str, keys: &BTreeMap<String, KeyInfo>, delivered: Option<&str>) -> Result<Self> {
        Ok(MachineKeys {
            machine: machine.to_owned(),
            specs: spec::specs(machine, keys)?,
            delivered: record::parse(delivered),
            texts: BTreeMap::new(),
            secrets: BTreeMap::new(),
            owner_pending: BTreeSet::new(),
        })
    }

    /// Nothing declared and nothing delivered before: no work at all.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty() && self.delivered.is_empty()
    }

    fn needs_texts(&self) -> bool {
        self.specs.iter().any(|s| s.source == Source::Text)
    }

    /// Whether anything is left to send after activation.
    pub fn has_post(&self) -> bool {
        !self.owner_pending.is_empty() || self.specs.iter().any(|s| s.post_activation)
    }

    /// Reads key files and runs key commands (texts were evaluated by
    /// [`prepare`] or [`send`]); errors name the machine and the key.
    pub async fn gather(&mut self) -> Result<()> {
        for spec in &self.specs {
            if self.secrets.contains_key(&spec.attr) {
                continue;
            }
            let secret = source::secret_of(&self.machine, spec, &mut self.texts).await?;
            self.secrets.insert(spec.attr.clone(), secret);
        }
        Ok(())
    }

    /// What delivering them would change (see [`KeyChanges`]); call after
    /// [`gather`](Self::gather).
    pub fn changes(&self) -> KeyChanges {
        record::changes(&self.specs, &self.delivered, &self.secrets)
    }
}

/// Deploy: the keys of the machines about to be activated, with all texts
/// evaluated at once. Machines with no keys (declared or delivered) and
/// machines whose keys are not known (options read from state) get no entry.
pub async fn prepare(
    ctx: &Context<'_>,
    machines: Vec<(String, MachineInfo)>,
) -> BTreeMap<String, Result<MachineKeys>> {
    let mut out = BTreeMap::new();
    for (name, info) in machines {
        let Some(keys) = &info.keys else { continue };
        let delivered = ctx.deployment.resources.get(&name).and_then(|r| r.get("keys"));
        match MachineKeys::new(&name, keys, delivered) {
            Ok(mk) if mk.is_empty() => {}
            r => {
                out.insert(name, r);
            }
        }
    }
    add_texts(ctx, &mut out).await;
    out
}

/// Evaluates the texts of the machines that need them and hands each its own.
async fn add_texts(ctx: &Context<'_>, machines: &mut BTreeMap<String, Result<MachineKeys>>) {
    let need: Vec<String> = machines
        .iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|mk| mk.needs_texts()))
        .map(|(n, _)| n.clone())
        .collect();
    if need.is_empty() {
        return;
    }
    let texts = match Network::of(ctx.deployment) {
        Ok(network) => source::eval_texts(&network, ctx.nix, &need).await,
        Err(e) => Err(e),
    };
    match texts {
        Ok(mut texts) => {
            for name in &need {
                if let Some(Ok(mk)) = machines.get_mut(name) {
                    mk.texts = texts.remove(name).unwrap_or_default();
                }
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            for name in &need {
                machines.insert(name.clone(), Err(anyhow!("{msg}")));
            }
        }
    }
}

/// Sends every key (both phases) of the given machines, as the network now
/// declares them: for `send-keys`, and after a reboot. One evaluation of the
/// network for all machines, then one SSH session per machine, in parallel.
/// Per machine: how many keys it has now.
///
/// With `after_reboot`, only machines that state says got keys before (and
/// that are still in the network) are considered, and when there are none
/// nothing is evaluated at all. Call it once for all rebooted machines
/// rather than once per machine.
pub async fn send(
    ctx: &Context<'_>,
    machines: &[KeyTarget<'_>],
    events: &Events,
    after_reboot: bool,
) -> BTreeMap<String, Result<usize>> {
    let mut results: BTreeMap<String, Result<usize>> = BTreeMap::new();
    // Fresh from state: an earlier stage of this run may have changed it.
    let fresh = match ctx.store.lock().expect("state lock").load(&ctx.deployment.uuid) {
        Ok(d) => d,
        Err(e) => return failed(&e.into(), machines.iter().map(|m| m.name)).collect(),
    };
    let delivered = |name: &str| fresh.resources.get(name).and_then(|r| r.get("keys"));
    let wanted: Vec<&KeyTarget> = machines
        .iter()
        .filter(|m| !after_reboot || !record::parse(delivered(m.name)).is_empty())
        .collect();
    for m in machines {
        results.insert(m.name.to_owned(), Ok(0));
    }
    if wanted.is_empty() {
        return results;
    }

    let info = match evaluate(ctx, events).await {
        Ok(i) => i,
        Err(e) => {
            results.extend(failed(&e, wanted.iter().map(|m| m.name)));
            return results;
        }
    };
    let mut keys: BTreeMap<String, Result<MachineKeys>> = BTreeMap::new();
    for m in &wanted {
        let r = match info.machines.get(m.name) {
            None if after_reboot => continue,
            None => Err(anyhow!("machine ‘{}’ is no longer in the network", m.name)),
            Some(i) => {
                let declared = i.keys.clone().unwrap_or_default();
                MachineKeys::new(m.name, &declared, delivered(m.name))
            }
        };
        keys.insert(m.name.to_owned(), r);
    }
    add_texts(ctx, &mut keys).await;

    let jobs = wanted.iter().filter_map(|m| {
        let mk = keys.remove(m.name)?;
        Some(async move {
            let r = async {
                let mut mk = mk?;
                if mk.is_empty() {
                    return Ok(0);
                }
                events.stage(m.name, "reading keys");
                mk.gather().await?;
                deliver(ctx, m, &mut mk, Phase::All, events).await?;
                Ok(mk.specs.len())
            }
            .await;
            (m.name.to_owned(), r)
        })
    });
    for (name, r) in futures::future::join_all(jobs).await {
        results.insert(name, r);
    }
    results
}

/// The same error for each of these machines.
fn failed<'a, T>(
    e: &anyhow::Error,
    machines: impl Iterator<Item = &'a str>,
) -> impl Iterator<Item = (String, Result<T>)> {
    let msg = format!("{e:#}");
    machines.map(move |m| (m.to_owned(), Err(anyhow!("{msg}"))))
}

/// The network's deployment info, without instantiating any toplevel; its
/// warnings go to `events`.
async fn evaluate(ctx: &Context<'_>, events: &Events) -> Result<NetworkInfo> {
    let network = Network::of(ctx.deployment)?;
    let files = NixFiles::write()?;
    let info = network.deployment_options(&files, ctx.nix).await?;
    for w in check(&info)? {
        events.message(w);
    }
    Ok(info)
}

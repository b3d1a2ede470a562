use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::deploy::{self, select};
use crate::keys;
use crate::state::history;
use crate::ui;

#[derive(Args, Debug)]
pub struct Opts {
    #[command(flatten)]
    pub machines: super::Selection,
    /// Do not wait for the machines to come back
    #[arg(long)]
    pub no_wait: bool,
    /// Reboot into rescue mode (not possible for existing machines)
    #[arg(long)]
    pub rescue: bool,
    /// Hard reset (not possible for existing machines)
    #[arg(long)]
    pub hard: bool,
    /// Seconds to wait for each machine to come back
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// Reboots machines in parallel and waits until each is back: a new boot
/// id and SSH answering.
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    if o.rescue || o.hard {
        bail!(
            "--rescue and --hard need control over the machine's hardware; machines of type ‘none’ can only be rebooted from within"
        );
    }
    let started = std::time::SystemTime::now();
    let session = g.session()?;
    let ctx = &session.ctx;
    let machines = select::stored_in(&ctx.deployment, g.ssh_persist, &o.machines.filter())?;
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    let (events, renderer) = ui::start(&names);
    let reboots = futures::future::join_all(machines.into_iter().map(|sm| {
        let events = &events;
        async move {
            let toplevel = sm.resource.toplevel().unwrap_or_default().to_owned();
            let mut m = sm.into_machine(toplevel);
            let r = if o.no_wait {
                events.stage(&m.name, "rebooting");
                m.host.reboot().await.map_err(anyhow::Error::from)
            } else {
                deploy::reboot_and_wait(ctx, &mut m, events, o.timeout)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = &r {
                events.done(&m.name, "reboot failed", Some(format!("{e:#}")));
            }
            (m, r)
        }
    }))
    .await;
    // A reboot empties /run: keys there must be sent again.
    let mut results: Vec<(String, Result<()>)> = Vec::new();
    let rebooted: Vec<_> = reboots
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(m, _)| keys::KeyTarget {
            name: &m.name,
            resource_id: m.resource_id,
            host: &m.host,
        })
        .collect();
    let mut sent = if o.no_wait || rebooted.is_empty() {
        Default::default()
    } else {
        keys::send(&ctx.keys(), &rebooted, &events, true).await
    };
    for (m, r) in &reboots {
        let r = match (r, sent.remove(&m.name)) {
            (Err(e), _) => Err(anyhow::anyhow!("{e:#}")),
            (Ok(()), Some(Err(e))) => {
                events.done(&m.name, "sending keys failed", Some(format!("{e:#}")));
                Err(e)
            }
            (Ok(()), _) => {
                events.done(
                    &m.name,
                    if o.no_wait { "reboot requested" } else { "rebooted" },
                    None,
                );
                Ok(())
            }
        };
        results.push((m.name.clone(), r));
    }
    drop(events);
    renderer.await?;
    let failed = super::failed_names(results.iter().map(|(n, r)| (n, r)));
    let done = if o.no_wait { "reboot requested" } else { "rebooted" };
    history::record(
        &ctx.store.lock().expect("state lock"),
        &ctx.deployment,
        history::Action::Reboot,
        started,
        &results
            .iter()
            .map(|(n, r)| {
                (
                    n.clone(),
                    if r.is_ok() { done } else { "reboot failed" }.to_owned(),
                )
            })
            .collect::<Vec<_>>(),
        history::Seen::default(),
        failed.is_empty(),
    );
    if failed.is_empty() {
        Ok(0)
    } else {
        errln!("error: rebooting failed on {}", failed.join(", "));
        Ok(1)
    }
}

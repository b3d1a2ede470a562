use anyhow::Result;
use clap::Args;

use super::Global;
use crate::deploy::check;
use crate::deploy::{self, record, select};
use crate::host::Status;
use crate::process::Sink;
use crate::state::machine_state;
use crate::ui::{Stream, table_on};

#[derive(Args, Debug)]
pub struct Opts {
    /// Check all deployments
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub machines: super::Selection,
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.into()
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let ds = g.deployments(&store, o.all)?;
    let mut code = 0;
    for d in &ds {
        let machines = select::stored_in(d, g.ssh_persist, &o.machines.filter())?;
        let (events, renderer) = crate::ui::start(&[]);
        let results: Vec<(Status, Result<()>)> = futures::future::join_all(machines.iter().map(|m| async {
            let h = m.host.status(Sink::quiet()).await;
            // The machine's health checks, as after a deploy.
            let checks = &m.info.health_checks;
            let r = if h.reachable {
                deploy::health::run(&m.host, m.info.health_address(), checks, &m.name, &events).await
            } else {
                Ok(())
            };
            (h, r)
        }))
        .await;
        drop(events);
        renderer.await?;
        let mut rows = Vec::new();
        for (m, (h, checks)) in machines.iter().zip(&results) {
            let mut deployed = m.resource.toplevel();
            let mut notes = Vec::new();
            let unrecorded = record::unrecorded(
                &d.uuid,
                &m.name,
                deployed,
                h.current_system.as_deref(),
                h.kept.as_ref(),
            );
            if let Some(t) = unrecorded {
                // An interrupted deploy of ours left it running: it is deployed.
                crate::nix::set_gc_root(&d.uuid, &m.name, t)?;
                store.set_resource_attrs(m.resource.id, &[("toplevel".into(), Some(t.to_owned()))])?;
                notes.push(format!("recorded {t}, which an interrupted deploy left running"));
                deployed = Some(t);
            }
            code |= check::bits(h, deployed);
            if checks.is_err() {
                code |= check::bits::NOT_UP;
            }
            // A refused host key says nothing about whether it is up.
            if !h.host_key_changed {
                let mut changes = vec![(
                    "state".to_owned(),
                    Some(
                        if h.reachable {
                            machine_state::UP
                        } else {
                            machine_state::UNREACHABLE
                        }
                        .to_string(),
                    ),
                )];
                if let Some(key) = m.host.learned_host_key() {
                    changes.push((crate::backend::host_key_attr(&m.resource).into(), Some(key)));
                }
                store.set_resource_attrs(m.resource.id, &changes)?;
            }
            if let Some(e) = &h.error {
                notes.push(e.clone());
            }
            if check::drifted(h, deployed) {
                notes.push(format!(
                    "runs {} instead of the deployed {}",
                    h.current_system.as_deref().unwrap_or("no system"),
                    deployed.unwrap_or("-")
                ));
            }
            if deployed.is_none() {
                notes.push("never deployed".into());
            }
            if let Err(e) = checks {
                notes.push(format!("{e:#}"));
            }
            if h.reachable && !check::up(h) {
                notes.push(format!(
                    "system is {}",
                    h.system_state.as_deref().unwrap_or("in an unknown state")
                ));
            }
            rows.push(vec![
                m.name.clone(),
                yes_no(deployed.is_some()),
                yes_no(check::up(h) && checks.is_ok()),
                yes_no(h.reachable),
                "N/A".into(),
                h.load.clone().unwrap_or_default(),
                h.failed_units
                    .iter()
                    .map(|u| format!("{u} [failed]"))
                    .collect::<Vec<_>>()
                    .join(", "),
                notes.join("; "),
            ]);
        }
        if ds.len() > 1 {
            outln!("{}:", d.label());
        }
        out!(
            "{}",
            table_on(
                Stream::Stdout,
                &[
                    "Name",
                    "Exists",
                    "Up",
                    "Reachable",
                    "Disks OK",
                    "Load avg.",
                    "Units",
                    "Notes"
                ],
                rows
            )
        );
    }
    Ok(code)
}

use anyhow::{Result, bail};
use clap::Args;

use super::Global;
use crate::network::nix_string;

#[derive(Args, Debug)]
pub struct Opts {
    /// Set argument NAME to the Nix expression VALUE
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub arg: Vec<String>,
    /// Set argument NAME to the string VALUE
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub argstr: Vec<String>,
    /// Remove argument NAME
    #[arg(long, value_name = "NAME", action = clap::ArgAction::Append)]
    pub unset: Vec<String>,
}

pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    let store = g.open_store()?;
    let d = g.deployment(&store)?;
    let _lock = store.lock(&d.uuid)?;
    let d = store.load(&d.uuid)?;
    let mut args = d.args()?;
    for c in o.arg.chunks(2) {
        check_name(&c[0])?;
        args.insert(c[0].clone(), c[1].clone());
    }
    for c in o.argstr.chunks(2) {
        check_name(&c[0])?;
        args.insert(c[0].clone(), nix_string(&c[1]));
    }
    for n in &o.unset {
        args.remove(n);
    }
    let value = if args.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&args)?)
    };
    store.set_deployment_attrs(&d.uuid, &[("args".into(), value)])?;
    super::record_network_attrs(g, &store, &d.uuid).await?;
    Ok(0)
}

fn check_name(n: &str) -> Result<()> {
    let ok = n
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''));
    if !ok {
        bail!("‘{n}’ is not a valid Nix argument name");
    }
    Ok(())
}

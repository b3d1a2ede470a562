//! `rename`: renames a machine (a resource) of a deployment, as NixOps
//! does (`nixops rename -d D OLD NEW`). A deployment is renamed with
//! `modify -n NAME`.

use anyhow::{Result, bail};
use clap::Args;

use super::Global;

#[derive(Args, Debug)]
pub struct Opts {
    /// The machine's (or resource's) current name
    #[arg(add = super::completions::machine())]
    pub current_name: String,
    /// Its new name
    pub new_name: String,
}

pub fn run(g: &Global, o: Opts) -> Result<i32> {
    let session = g.session()?;
    let ctx = &session.ctx;
    let d = &ctx.deployment;
    let Some(r) = d.resources.get(&o.current_name) else {
        bail!("deployment ‘{}’ has no resource ‘{}’", d.label(), o.current_name);
    };
    if d.resources.contains_key(&o.new_name) {
        bail!(
            "deployment ‘{}’ already has a resource named ‘{}’",
            d.label(),
            o.new_name
        );
    }
    crate::network::check_machine_name(&o.new_name)?;
    errln!("renaming resource ‘{}’ to ‘{}’...", o.current_name, o.new_name);
    ctx.store
        .lock()
        .expect("state lock")
        .rename_resource(&d.uuid, &o.current_name, &o.new_name)?;
    // The machine's GC root goes with it.
    if let Some(t) = r.toplevel() {
        crate::nix::set_gc_root(&d.uuid, &o.new_name, t)?;
        crate::nix::remove_gc_roots(&d.uuid, Some(&o.current_name));
    }
    Ok(0)
}

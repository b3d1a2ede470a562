//! Backends: one file per NixOps `targetEnv`, behind one small interface.
//!
//! A backend says how a machine of its kind is reached (from the network's
//! options and what state recorded of it), what it adds to the machine's
//! configuration from state (NixOps' "physical spec"), and which operations
//! it can do on its own (create, start, stop, destroy). The deploy pipeline
//! and the commands ask the backend of each machine, never which backend it
//! is. Adding a backend is adding a file here, its options beside it
//! (`<targetEnv>.nix`), and a line in [`BACKENDS`].

mod digital_ocean;
mod ec2;
mod gce;
mod hetzner;
mod hetznercloud;
mod libvirtd;
mod none;
mod virtualbox;

use std::collections::BTreeMap;

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::network::MachineInfo;
use crate::state::{AttrChange, Deployment, Resource, StoreBox};

/// Every backend, in the order `list-plugins` shows them.
static BACKENDS: &[&dyn Backend] = &[
    &none::Existing,
    &libvirtd::Libvirtd,
    &ec2::Ec2,
    &gce::Gce,
    &hetzner::Hetzner,
    &hetznercloud::HetznerCloud,
    &digital_ocean::DROPLET,
    &digital_ocean::DIGITAL_OCEAN,
    &virtualbox::VirtualBox,
];

/// The backend of `target_env` (a machine's `deployment.targetEnv`, or a
/// machine's type in state), if this tool knows it.
pub fn of(target_env: &str) -> Option<&'static dyn Backend> {
    BACKENDS.iter().copied().find(|b| b.target_env() == target_env)
}

/// The backend of `target_env`, or an error naming the machine and the
/// backends there are.
pub fn for_machine(machine: &str, target_env: &str) -> Result<&'static dyn Backend> {
    of(target_env).ok_or_else(|| {
        let known: Vec<String> = BACKENDS.iter().map(|b| format!("\"{}\"", b.target_env())).collect();
        anyhow::anyhow!(
            "machine ‘{machine}’ has deployment.targetEnv = \"{target_env}\", which this tool does not know (it knows {})",
            known.join(", ")
        )
    })
}

/// All backends.
pub fn all() -> impl Iterator<Item = &'static dyn Backend> {
    BACKENDS.iter().copied()
}

/// The backends' options modules, as one Nix expression: an attribute set
/// from targetEnv to `{ module; info; }` (see none.nix), which
/// eval-machine-info.nix gives every machine (as NixOps declares every
/// backend's options on every machine).
pub fn nix_expression() -> String {
    let mut out = String::from("{\n");
    for b in all() {
        out.push_str(&format!("  \"{}\" = ({});\n", b.target_env(), b.options_nix()));
    }
    out.push('}');
    out
}

/// How a machine is reached, as its backend says.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub host: String,
    pub port: Option<u16>,
    /// "" lets ssh's configuration choose.
    pub user: String,
    /// A private key the backend made to log in with (state keeps it): it
    /// goes to a file only we can read, named to ssh by `-i`.
    pub private_key: Option<String>,
    /// A file on this machine holding the private key to log in with
    /// (named to ssh by `-i` as it is).
    pub private_key_file: Option<String>,
    /// The host key the backend learnt when it made the machine
    /// ("type base64"), pinned from the first contact.
    pub host_key: Option<String>,
}

/// What a backend adds to a machine's configuration from state, as
/// eval-machine-info.nix's physical spec takes it: modules of the network's
/// nixpkgs to import, modules given as Nix text, and option definitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spec {
    /// Paths inside nixpkgs (`nixos/modules/virtualisation/amazon-image.nix`).
    pub imports: Vec<String>,
    /// Modules as Nix text (a hardware configuration NixOps kept in state,
    /// a module of the backend's own): each is imported as a file of its
    /// own (`builtins.toFile`), so that it is parsed as Nix, never spliced
    /// into other text.
    pub modules: Vec<String>,
    pub defs: Vec<Def>,
    /// Whether a definition holds a secret (a disk's passphrase): the spec
    /// then reaches Nix in a file only we can read, never in its arguments.
    #[serde(skip)]
    pub secret: bool,
}

impl Spec {
    pub fn is_empty(&self) -> bool {
        self.imports.is_empty() && self.modules.is_empty() && self.defs.is_empty()
    }
}

/// One option definition of a [`Spec`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Def {
    /// The option's path (`["deployment", "ec2", "instanceId"]`).
    pub path: Vec<String>,
    pub value: serde_json::Value,
    /// `lib.mkOverride priority`, when NixOps gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

impl Def {
    pub fn new(path: &[&str], value: serde_json::Value) -> Def {
        Def {
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
            priority: None,
        }
    }

    /// The same at `lib.mkOverride priority`.
    pub fn at(priority: i64, path: &[&str], value: serde_json::Value) -> Def {
        Def {
            priority: Some(priority),
            ..Def::new(path, value)
        }
    }
}

/// What `destroy` did to a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destroyed {
    /// Nothing was done to the machine: it keeps running as it is; state
    /// forgets it.
    Forgotten,
    /// The machine and its disks are gone.
    Deleted,
}

/// A power operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    Stop,
}

impl Power {
    pub fn verb(self) -> &'static str {
        match self {
            Power::Start => "start",
            Power::Stop => "stop",
        }
    }
}

/// A machine as state records it, with its deployment.
pub struct Stored<'a> {
    pub deployment: &'a Deployment,
    pub resource: &'a Resource,
}

/// One `targetEnv`. Every operation that needs the provider's API and that
/// the backend cannot do refuses with a message naming the backend and
/// what to do instead; none reports success without doing it.
pub trait Backend: Sync {
    /// Its `deployment.targetEnv`, and the machine's type in NixOps' state.
    fn target_env(&self) -> &'static str;

    /// What such a machine is, for messages and `list-plugins`.
    fn describe(&self) -> &'static str;

    /// Its `deployment.<targetEnv>.*` options, declared as NixOps (or its
    /// plugin) declares them: a Nix expression `{ module; info; }`, where
    /// `info` names the options the tool reads (MachineInfo::backend).
    fn options_nix(&self) -> &'static str;

    /// How to reach the machine: from the network's options (`info`) and
    /// what state recorded (`state`; None before its first deploy), which
    /// may name other resources of the deployment (`d`; a key pair).
    fn reach(
        &self,
        d: &Deployment,
        machine: &str,
        info: &MachineInfo,
        state: Option<&Resource>,
    ) -> Result<Reach>;

    /// Whether a machine of this kind that state does not hold may be
    /// recorded: false where only the provider's API makes machines (the
    /// deploy then refuses it, and state never holds a machine that does
    /// not exist).
    fn makes_new(&self) -> bool {
        true
    }

    /// Its type as `info` shows it (NixOps' show_type: `ec2 [zone; type]`).
    fn show_type(&self, r: &Resource) -> String {
        r.kind.clone()
    }

    /// Its id at the provider, as `info` shows it.
    fn resource_id(&self, _r: &Resource) -> Option<String> {
        None
    }

    /// The state attribute holding the machine's pinned SSH host key
    /// (where a newly learned one is recorded, and which forget-host-key
    /// clears).
    fn host_key_attr(&self) -> &'static str {
        "publicHostKey"
    }

    /// What to do instead of NixOps' backups for such machines.
    fn backups(&self) -> &'static str {
        "whose disks this tool cannot snapshot: back them up with tools on the machines"
    }

    /// What the backend adds to the machine's configuration from state.
    fn physical(&self, _d: &Deployment, _r: &Resource) -> Result<Spec> {
        Ok(Spec::default())
    }

    /// Where its options are: `deployment.<options_attr>.*` (the same as
    /// targetEnv but for hetznercloud's `hetznerCloud`; `optionsAttr` in
    /// options_nix).
    fn options_attr(&self) -> &'static str {
        self.target_env()
    }

    /// The machine's public IPv4 address as NixOps knows it (its
    /// `networking.publicIPv4` in the physical spec).
    fn public_ipv4(&self, r: &Resource) -> Option<String> {
        r.get("publicIpv4").map(str::to_owned)
    }

    /// The resource types of the backend's provider (`resources.gceDisks`
    /// ...): they evaluate with their module (`resources` of options_nix)
    /// and a deploy takes those state holds as they are (only the provider
    /// can make or change one).
    fn resource_types(&self) -> &'static [ResourceType] {
        &[]
    }

    /// What to do instead of what only the provider can do (its console,
    /// its command-line tool, Terraform), for the messages of refusals.
    fn instead(&self) -> &'static str {
        "your provider's tools"
    }

    /// The machine's host key as NixOps knows it, which NixOps adds to
    /// every machine's `services.openssh.knownHosts` (none for `none`).
    fn nixops_host_key(&self, _r: &Resource) -> Option<String> {
        None
    }

    /// Whether a deploy may go on with the machine as the network now
    /// declares it (`state`: what state recorded, if anything): an error
    /// says what would need the provider, and what to do instead.
    fn check_deploy(&self, machine: &str, info: &MachineInfo, state: Option<&Resource>) -> Result<()>;

    /// Whether a deploy makes the machines (and starts them): the steps
    /// are [`prepare`](Backend::prepare), the build of
    /// [`image_option`](Backend::image_option), and [`make`](Backend::make).
    fn makes_machines(&self) -> bool {
        false
    }

    /// What state must hold before anything of the machine is made (its
    /// keys, the names of what will be made): recorded first, so that an
    /// interrupted make is finished by the next deploy and destroyed by
    /// `destroy`, never leaked. Nothing when there is nothing new.
    fn prepare<'a>(
        &'a self,
        _d: &'a Deployment,
        machine: &'a str,
        _info: &'a MachineInfo,
        _state: Option<&'a Resource>,
    ) -> BoxFuture<'a, Result<Vec<AttrChange>>> {
        let e = anyhow::anyhow!(
            "machine ‘{machine}’: {} is not made by this tool",
            self.describe()
        );
        async move { Err(e) }.boxed()
    }

    /// The option whose package the machine's disk starts from, built
    /// (with the physical spec) before [`make`](Backend::make).
    fn image_option(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Makes the machine as prepared, or finishes what an earlier make
    /// left, and starts it; returns once it answers on SSH.
    fn make<'a>(
        &'a self,
        m: Stored<'a>,
        _info: &'a MachineInfo,
        _image: Option<&'a Path>,
        _state: &'a StateWriter,
    ) -> BoxFuture<'a, Result<()>> {
        let e = anyhow::anyhow!(
            "machine ‘{}’: {} is not made by this tool",
            m.resource.name,
            self.describe()
        );
        async move { Err(e) }.boxed()
    }

    /// `start` / `stop`; by default refused with
    /// [`power_refusal`](Backend::power_refusal).
    fn power<'a>(&'a self, m: Stored<'a>, op: Power, _state: &'a StateWriter) -> BoxFuture<'a, Result<()>> {
        let e = self.power_refusal(m.resource, op);
        async move { Err(e) }.boxed()
    }

    /// Why the backend does not `start` / `stop` the machine, and what to
    /// do instead (for a backend that does, never asked).
    fn power_refusal(&self, r: &Resource, op: Power) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot {} machine ‘{}’: it is {}, whose power this tool does not manage; use ‘nixops reboot’ or your provider's tools",
            op.verb(),
            r.name,
            self.describe()
        )
    }

    /// Whether `destroy` can do what it says (forget an existing machine,
    /// delete one the backend made); else it refuses with
    /// [`destroy_refusal`](Backend::destroy_refusal).
    fn can_destroy(&self) -> bool {
        false
    }

    /// Whether `destroy --wipe` can erase its disks.
    fn can_wipe(&self) -> bool {
        false
    }

    /// `destroy` (after the user confirmed it); `wipe`: erase its disks
    /// too (only asked of a backend that [`can_wipe`](Backend::can_wipe)).
    /// By default refused with [`destroy_refusal`](Backend::destroy_refusal).
    fn destroy<'a>(&'a self, m: Stored<'a>, _wipe: bool) -> BoxFuture<'a, Result<Destroyed>> {
        let e = self.destroy_refusal(m.resource);
        async move { Err(e) }.boxed()
    }

    /// Why a backend that cannot [`can_destroy`](Backend::can_destroy)
    /// does not destroy the machine, and how to do it with the provider's
    /// tools (said before the user is asked anything).
    fn destroy_refusal(&self, r: &Resource) -> anyhow::Error {
        refuse(self, &r.name, "destroy", self.instead().to_owned())
    }

    /// What the machine's console printed (`show-console-output`).
    fn console_output<'a>(&'a self, _m: Stored<'a>) -> BoxFuture<'a, Result<String>> {
        async move { Ok("(not available for this machine type)\n".to_owned()) }.boxed()
    }
}

/// Writes what a backend learns of one machine to state, at once (a
/// machine made must be in state before anything else can fail).
pub struct StateWriter {
    store: Arc<Mutex<StoreBox>>,
    uuid: String,
    machine: String,
    kind: String,
}

impl StateWriter {
    pub fn new(store: Arc<Mutex<StoreBox>>, uuid: &str, machine: &str, kind: &str) -> Self {
        StateWriter {
            store,
            uuid: uuid.to_owned(),
            machine: machine.to_owned(),
            kind: kind.to_owned(),
        }
    }

    pub fn set(&self, changes: Vec<AttrChange>) -> Result<()> {
        let machines = [(self.machine.clone(), self.kind.clone(), changes)];
        self.store
            .lock()
            .expect("state lock")
            .record_network(&self.uuid, &[], &machines, &[])?;
        Ok(())
    }
}

/// A state attribute that is set and not empty.
fn attr<'a>(r: &'a Resource, name: &str) -> Option<&'a str> {
    r.get(name).filter(|v| !v.is_empty())
}

/// A state attribute the backend reaches the machine by.
fn required<'a>(b: &dyn Backend, r: &'a Resource, name: &str) -> Result<&'a str> {
    attr(r, name).ok_or_else(|| {
        anyhow::anyhow!(
            "machine ‘{}’ is {}, but state has no {name} for it (as NixOps would have recorded when it made the machine): cannot reach it",
            r.name,
            b.describe()
        )
    })
}

/// A host key as NixOps keeps it ("type base64 comment"), as ssh pins it
/// ("type base64").
fn host_key(text: &str) -> Option<String> {
    let mut fields = text.split_whitespace();
    Some(format!("{} {}", fields.next()?, fields.next()?))
}

/// A machine a provider's backend made, as state recorded it (and its
/// port checked): what reaching or deploying it starts from.
fn recorded<'a>(
    b: &dyn Backend,
    machine: &str,
    info: &MachineInfo,
    state: Option<&'a Resource>,
) -> Result<&'a Resource> {
    let r = state.ok_or_else(|| not_in_state(b, machine))?;
    none::port(machine, info.target_port)?;
    Ok(r)
}

/// The state attributes NixOps reaches a machine of a backend by.
struct Recorded {
    address: &'static str,
    /// None: the key is elsewhere (the backend puts it in).
    private_key: Option<&'static str>,
    host_key: &'static str,
}

/// Reaches a machine at its recorded address (the network's targetPort and
/// targetUser, as NixOps honours them for every backend), with its recorded
/// private key, its recorded host key pinned.
fn reach_recorded(
    b: &dyn Backend,
    machine: &str,
    info: &MachineInfo,
    state: Option<&Resource>,
    how: &Recorded,
) -> Result<Reach> {
    let r = recorded(b, machine, info, state)?;
    Ok(Reach {
        host: required(b, r, how.address)?.to_owned(),
        port: none::port(machine, info.target_port)?,
        user: info.target_user.clone(),
        private_key: how
            .private_key
            .map(|k| required(b, r, k).map(str::to_owned))
            .transpose()?,
        private_key_file: None,
        host_key: attr(r, how.host_key).and_then(host_key),
    })
}

/// A machine of a provider's backend that state does not hold: only the
/// provider makes one.
fn not_in_state(b: &dyn Backend, machine: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "machine ‘{machine}’ is {}, and state holds no such machine: making one needs the provider's API, which this tool does not use; create it with {} and deploy it as targetEnv \"none\" (deployment.targetHost), or import the NixOps state that holds it (‘nixops import’)",
        b.describe(),
        b.instead()
    )
}

/// Refuses a deploy that would change what only the provider changes: the
/// network's `option` (read through `info`) against what state recorded.
fn unchanged(
    b: &dyn Backend,
    machine: &str,
    info: &MachineInfo,
    r: &Resource,
    pairs: &[(&str, &str)],
) -> Result<()> {
    for (option, recorded) in pairs {
        let declared = info
            .backend
            .as_ref()
            .and_then(|v| v.get(*option))
            .and_then(|v| v.as_str());
        let Some(declared) = declared else { continue };
        let Some(was) = attr(r, recorded) else { continue };
        if declared != was {
            bail!(
                "machine ‘{machine}’ is {}, recorded in state with {recorded} = \"{was}\", but the network now declares deployment.{}.{option} = \"{declared}\": changing it needs the provider's API, which this tool does not use; change it with {} (and then {recorded} in state, ‘nixops import’ of an edited export), or keep the recorded value",
                b.describe(),
                b.options_attr(),
                b.instead()
            );
        }
    }
    Ok(())
}

/// Refuses what only the provider can do to a machine, saying how to do it.
fn refuse<B: Backend + ?Sized>(b: &B, machine: &str, what: &str, how: String) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot {what} machine ‘{machine}’: it is {}, and that needs the provider's API, which this tool does not use; {how}. State keeps the machine as it is",
        b.describe()
    )
}

/// A resource type of a NixOps plugin (nixops-aws' `ec2KeyPairs`, ...):
/// this tool makes none of them, but evaluates them with their options,
/// shows them and feeds back what NixOps feeds back of them.
#[derive(Debug)]
pub struct ResourceType {
    /// Its attribute under `resources`.
    pub attr: &'static str,
    /// Its type in NixOps' state.
    pub kind: &'static str,
    /// The state attribute `info` shows as its id.
    pub id: &'static str,
    /// The state attribute holding its address, if it has one.
    pub address: Option<&'static str>,
    /// What NixOps' physical spec gives back of it: option ← state attribute.
    pub fed_back: &'static [(&'static str, &'static str)],
    /// NixOps gives null for a fed-back attribute state lacks (else it
    /// leaves it out).
    pub null_when_missing: bool,
}

impl ResourceType {
    pub const fn new(attr: &'static str, kind: &'static str, id: &'static str) -> ResourceType {
        ResourceType {
            attr,
            kind,
            id,
            address: None,
            fed_back: &[],
            null_when_missing: true,
        }
    }
}

/// The plugins' resource type that state records as `kind`.
pub fn resource_type_of_kind(kind: &str) -> Option<&'static ResourceType> {
    all().flat_map(|b| b.resource_types()).find(|t| t.kind == kind)
}

/// The plugins' resource type declared as `resources.<attr>`.
pub fn resource_type(attr: &str) -> Option<&'static ResourceType> {
    all().flat_map(|b| b.resource_types()).find(|t| t.attr == attr)
}

/// The state attribute of machine `r`'s pinned host key.
pub fn host_key_attr(r: &Resource) -> &'static str {
    of(&r.kind).map_or("publicHostKey", |b| b.host_key_attr())
}

/// A resource's type as `info` shows it (NixOps' show_type): a machine's
/// by its backend (`ec2 [us-east-1a; t3.micro]`), a plugin resource's with
/// where it is, as the plugin shows it.
pub fn shown_type(r: &Resource) -> String {
    if let Some(b) = of(&r.kind) {
        return b.show_type(r);
    }
    let get = |a: &str| r.get(a).filter(|v| !v.is_empty());
    match (r.kind.as_str(), get("ec2.region")) {
        ("ec2-keypair", Some(region)) => format!("{} [{region}]", r.kind),
        ("elastic-ip", Some(region)) if r.state() == crate::state::machine_state::UP => {
            format!("{} [{region}]", r.kind)
        }
        ("ebs-volume", _) if get("ec2.volumeId").is_some() => format!(
            "{} [{}; {} GiB]",
            r.kind,
            get("ec2.zone").unwrap_or("None"),
            get("ec2.size").unwrap_or("None")
        ),
        _ => r.kind.clone(),
    }
}

/// A resource's id at its provider (an instance id, a key pair's name, a
/// volume id), as `info` shows it.
pub fn resource_id(r: &Resource) -> Option<String> {
    if let Some(b) = of(&r.kind) {
        return b.resource_id(r);
    }
    r.get(resource_type_of_kind(&r.kind)?.id).map(str::to_owned)
}

/// A plugin resource's address (an elastic IP's), as `info` shows it.
pub fn resource_address(r: &Resource) -> Option<&str> {
    r.get(resource_type_of_kind(&r.kind)?.address?)
}

/// Machine → what its backend adds to its configuration, for the physical
/// spec: the backend's own part, and NixOps' common one (the addresses
/// state recorded, and every machine's host key that NixOps knows).
pub fn physical(d: &Deployment) -> Result<BTreeMap<String, Physical>> {
    let known_hosts: Vec<KnownHost> = d
        .machines()
        .filter(|r| !r.obsolete())
        .filter_map(|r| {
            let key = of(&r.kind)?.nixops_host_key(r)?;
            Some(KnownHost {
                name: r.name.clone(),
                key,
            })
        })
        .collect();
    let mut out = BTreeMap::new();
    for r in d.machines() {
        let Some(b) = of(&r.kind) else { continue };
        let spec = b
            .physical(d, r)
            .map_err(|e| anyhow::anyhow!("machine ‘{}’ ({}): {e:#}", r.name, b.describe()))?;
        // A `none` machine's publicIPv4 is the one its own configuration
        // gives (NixOps copies it into state on every deploy): nothing to
        // add.
        let addresses = r.kind != "none";
        let p = Physical {
            private_ipv4: r.get("privateIpv4").filter(|_| addresses).map(str::to_owned),
            public_ipv4: b.public_ipv4(r).filter(|_| addresses),
            known_hosts: known_hosts.clone(),
            spec,
        };
        if p != Physical::default() {
            out.insert(r.name.clone(), p);
        }
    }
    Ok(out)
}

/// A machine's part of the physical spec that comes from its backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Physical {
    #[serde(rename = "privateIPv4", skip_serializing_if = "Option::is_none")]
    pub private_ipv4: Option<String>,
    #[serde(rename = "publicIPv4", skip_serializing_if = "Option::is_none")]
    pub public_ipv4: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_hosts: Vec<KnownHost>,
    #[serde(skip_serializing_if = "Spec::is_empty")]
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnownHost {
    pub name: String,
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_is_found_by_its_target_env_and_unknown_ones_are_named() {
        for b in all() {
            assert_eq!(of(b.target_env()).unwrap().target_env(), b.target_env());
        }
        let e = for_machine("web", "azure").err().unwrap().to_string();
        assert!(
            e.contains("machine ‘web’") && e.contains("\"azure\"") && e.contains("\"none\""),
            "{e}"
        );
    }

    #[test]
    fn the_options_expression_names_every_backend() {
        let nix = nix_expression();
        for b in all() {
            assert!(nix.contains(&format!("\"{}\" = (", b.target_env())));
        }
    }
}

//! Recording the evaluated network in state: new machines, obsolete ones,
//! and the connection details NixOps keeps per machine.

use anyhow::Result;

use super::error::{Failure, Kind};
use super::types::Ctx;
use crate::host::{Host, Kept};
use crate::network::{MachineInfo, NetworkMeta, Resources, created_type_of_kind};
use crate::ssh::{Endpoint, Identity, Target};
use crate::state::{AttrChange, Deployment, Resource, machine_state};
use crate::ui::Events;

/// NixOps' rule: an attribute set back to its default is removed.
fn attr(name: &str, value: Option<String>, default: Option<&str>) -> AttrChange {
    match value {
        Some(v) if Some(v.as_str()) != default => (name.to_owned(), Some(v)),
        _ => (name.to_owned(), None),
    }
}

fn bool_attr(name: &str, value: bool, default: bool) -> AttrChange {
    attr(
        name,
        Some(if value { "1" } else { "0" }.into()),
        Some(if default { "1" } else { "0" }),
    )
}

/// The deployment attributes that come from the network's own attributes,
/// and a flake network's locked URL (recorded with every deploy).
pub fn network_attrs(meta: &NetworkMeta) -> [AttrChange; 3] {
    [
        attr("flakeLockedUrl", meta.flake_url.clone(), None),
        attr(
            "description",
            Some(meta.description.clone()),
            Some("Unnamed NixOps network"),
        ),
        bool_attr("rollbackEnabled", meta.enable_rollback, false),
    ]
}

/// Records the network's attributes, marks the machines and resources gone
/// from it obsolete (or forgets them with --kill-obsolete), and those back
/// in it no longer obsolete. The machines in it are recorded one by one as
/// their evaluation comes ([`Recorder`]); its resources were made before
/// (resources.rs).
pub fn network(
    ctx: &Ctx,
    meta: &NetworkMeta,
    names: &[String],
    resources: &Resources,
    kill_obsolete: bool,
    events: &Events,
) -> Result<()> {
    let uuid = &ctx.deployment.uuid;
    let declared = |n: &String| resources.values().any(|rs| rs.contains_key(n));
    let in_network = |n: &String| names.binary_search(n).is_ok() || declared(n);
    let mut machines = Vec::new();
    let mut forget = Vec::new();
    for r in ctx.deployment.resources.values() {
        let what = if r.is_machine() {
            format!("machine ‘{}’", r.name)
        } else {
            format!("resource ‘{}’ ({})", r.name, r.kind)
        };
        if in_network(&r.name) {
            // A machine is recorded as its evaluation comes.
            if !r.is_machine() && r.obsolete() {
                events.message(format!("{what} is no longer obsolete"));
                machines.push((
                    r.name.clone(),
                    r.kind.clone(),
                    vec![bool_attr("obsolete", false, false)],
                ));
            }
        } else if kill_obsolete && (r.is_machine() || created_type_of_kind(&r.kind).is_some()) {
            events.message(format!("forgetting obsolete {what}"));
            forget.push(r.id);
        } else {
            // A plugin's resource (an EC2 key pair, a volume) is to be
            // destroyed where it lives, which only its plugin can do.
            let how = if kill_obsolete {
                "this tool cannot destroy it, only NixOps' plugin of its type; ‘nixops delete-resources’ forgets it"
            } else {
                "use --kill-obsolete to forget it"
            };
            events.message(format!("{what} is obsolete ({how})"));
            machines.push((
                r.name.clone(),
                r.kind.clone(),
                vec![bool_attr("obsolete", true, false)],
            ));
        }
    }
    ctx.store
        .lock()
        .expect("state lock")
        .record_network(uuid, &network_attrs(meta), &machines, &forget)?;
    for r in ctx.deployment.machines().filter(|r| forget.contains(&r.id)) {
        crate::nix::remove_gc_roots(uuid, Some(&r.name));
    }
    Ok(())
}

/// Records machines of the network (selected or not) with the connection
/// details NixOps keeps, each in its own transaction; a new one gets the
/// next index.
pub struct Recorder {
    next_index: i64,
}

impl Recorder {
    pub fn new(ctx: &Ctx) -> Self {
        // NixOps numbers every resource, machines and others, from one count.
        let next_index = ctx
            .deployment
            .resources
            .values()
            .filter_map(|r| r.get("index").and_then(|i| i.parse::<i64>().ok()))
            .max()
            .map_or(0, |i| i + 1);
        Recorder { next_index }
    }

    /// Records the machine; returns its resource id. A machine new to state
    /// whose backend cannot make one is not recorded (None): its deploy is
    /// refused (the backend's check_deploy says why), and state never
    /// holds a machine that does not exist.
    pub fn machine(&mut self, ctx: &Ctx, name: &str, m: &MachineInfo) -> Result<Option<i64>> {
        let new = !ctx.deployment.resources.contains_key(name);
        if new && !crate::backend::for_machine(name, &m.target_env)?.makes_new() {
            return Ok(None);
        }
        let mut changes = vec![
            attr("targetHost", m.target_host.clone(), None),
            attr("targetPort", m.target_port.map(|p| p.to_string()), None),
            attr("targetUser", Some(m.target_user.clone()), Some("root")),
            attr(
                "sshOptions",
                Some(serde_json::to_string(&m.ssh_options)?),
                Some("[]"),
            ),
            attr(
                "privilegeEscalationCommand",
                Some(serde_json::to_string(&m.privilege_escalation_command)?),
                Some(r#"["sudo","-H","--"]"#),
            ),
            bool_attr("hasFastConnection", m.has_fast_connection, false),
            attr("owners", Some(serde_json::to_string(&m.owners)?), Some("[]")),
            attr("tags", Some(serde_json::to_string(&m.tags)?), Some("[]")),
            attr(
                "healthChecks",
                (!m.health_checks.is_empty())
                    .then(|| serde_json::to_string(&m.health_checks))
                    .transpose()?,
                None,
            ),
            bool_attr("obsolete", false, false),
        ];
        if new {
            changes.push(attr("index", Some(self.next_index.to_string()), None));
            changes.push(attr("creationTime", Some(now().to_string()), None));
        }
        let machines = [(name.to_owned(), m.target_env.clone(), changes)];
        let ids = ctx.store.lock().expect("state lock").record_network(
            &ctx.deployment.uuid,
            &[],
            &machines,
            &[],
        )?;
        if new {
            self.next_index += 1;
        }
        Ok(Some(ids[name]))
    }
}

/// How to reach a machine (over SSH, with the host key pinned in state), as
/// its backend says.
pub fn host(
    d: &Deployment,
    name: &str,
    m: &MachineInfo,
    res: Option<&Resource>,
    persist: u64,
) -> Result<Host> {
    let reach = crate::backend::for_machine(name, &m.target_env)?.reach(d, name, m, res)?;
    let mut options = m.ssh_options.clone();
    if let Some(file) = &reach.private_key_file {
        options.extend(["-i".to_owned(), file.clone()]);
    } else if let Some(key) = &reach.private_key {
        options.extend(["-i".to_owned(), identity_file(d, name, key)?]);
    }
    let endpoint = Endpoint {
        host: reach.host,
        port: reach.port,
        user: reach.user,
        options,
        escalation: m.privilege_escalation_command.clone(),
    };
    let identity = Identity {
        deployment_uuid: d.uuid.clone(),
        deployment: d.label().to_owned(),
        machine: name.to_owned(),
        host_key: reach.host_key,
    };
    Ok(Host::ssh(name, Target::new(endpoint, identity, persist)?))
}

/// The file ssh reads the backend's private key from: only ours (0600 in
/// a 0700 directory), at a path stable per machine so that the connection's
/// name (which covers ssh's arguments) is the same in every run.
fn identity_file(d: &Deployment, name: &str, key: &str) -> Result<String> {
    let dir = crate::tmp::private_dir("nixops-run")?;
    let file = dir.join(format!("id-{}-{name}", d.uuid));
    let text = if key.ends_with('\n') {
        key.to_owned()
    } else {
        format!("{key}\n")
    };
    if std::fs::read(&file).ok().as_deref() != Some(text.as_bytes()) {
        crate::tmp::write_private(&file, text.as_bytes())?;
    }
    Ok(file.to_string_lossy().into_owned())
}

/// After contact: keep a newly learned host key and the machine's state.
pub fn reached(ctx: &Ctx, id: i64, host: &Host) -> Result<()> {
    let mut changes = vec![(String::from("state"), Some(machine_state::UP.to_string()))];
    if let Some(key) = host.learned_host_key() {
        let attr = ctx
            .deployment
            .resources
            .values()
            .find(|r| r.id == id)
            .map_or("publicHostKey", crate::backend::host_key_attr);
        changes.push((attr.into(), Some(key)));
    }
    Ok(ctx
        .store
        .lock()
        .expect("state lock")
        .set_resource_attrs(id, &changes)?)
}

pub fn unreachable(ctx: &Ctx, id: i64) -> Result<()> {
    Ok(ctx.store.lock().expect("state lock").set_resource_attrs(
        id,
        &[("state".into(), Some(machine_state::UNREACHABLE.to_string()))],
    )?)
}

/// A machine that failed because it could not be reached any more is
/// recorded unreachable, as first contact records it (a failure to record
/// that is only a warning: the failure itself is what is reported).
pub fn failed(ctx: &Ctx, events: &Events, id: i64, f: &Failure) {
    if f.kind == Kind::Unreachable
        && let Err(e) = unreachable(ctx, id)
    {
        events.message(format!("warning: {e:#}"));
    }
}

/// The machine now runs `toplevel`.
pub fn deployed(ctx: &Ctx, id: i64, name: &str, toplevel: &str) -> Result<()> {
    crate::nix::set_gc_root(&ctx.deployment.uuid, name, toplevel)?;
    Ok(ctx.store.lock().expect("state lock").set_resource_attrs(
        id,
        &[
            ("toplevel".into(), Some(toplevel.to_owned())),
            ("state".into(), Some(machine_state::UP.to_string())),
        ],
    )?)
}

/// Whose an activation is, as the machine records it: the deployment and
/// the machine (names never hold `/`). Two machines of a network may share a
/// host; an activation proves something only for the machine it was for.
pub fn activation_owner(uuid: &str, machine: &str) -> String {
    format!("{uuid}/{machine}")
}

/// What state should record as machine `machine`'s system, if it does not
/// yet: the newest activation's system when a deploy of ours (deployment
/// `uuid`) activated and kept it for this machine but died before
/// recording it, and the machine runs it. Nothing else counts: a system
/// someone else put there (another machine on the same host included)
/// stays a drift for `check` to report.
pub fn unrecorded<'a>(
    uuid: &str,
    machine: &str,
    recorded: Option<&str>,
    current: Option<&str>,
    kept: Option<&'a Kept>,
) -> Option<&'a str> {
    let owner = activation_owner(uuid, machine);
    let k = kept.filter(|k| k.deployment == owner)?;
    (current == Some(k.toplevel.as_str()) && recorded != Some(k.toplevel.as_str()))
        .then_some(k.toplevel.as_str())
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A machine's deployment options as state last recorded them, for commands
/// that work without evaluating the network.
pub fn stored_info(r: &Resource) -> Result<MachineInfo> {
    let json_list = |name: &str, default: &[&str]| -> Result<Vec<String>> {
        match r.get(name) {
            Some(v) => serde_json::from_str(v).map_err(|e| {
                anyhow::anyhow!(
                    "machine ‘{}’: state attribute {name} is not a JSON list: {e}",
                    r.name
                )
            }),
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
        }
    };
    // Other backends reach their machines from what else state holds.
    let host = r.get("targetHost");
    if host.is_none() && r.kind == "none" {
        anyhow::bail!(
            "machine ‘{}’ has no targetHost in state: it has not been deployed yet, or it has deployment.targetHost = null (deployed only on itself, with ‘nixops apply-local --node {}’)",
            r.name,
            r.name
        );
    }
    Ok(MachineInfo {
        target_env: r.kind.clone(),
        backend: None,
        target_host: host.map(str::to_owned),
        target_port: r.get("targetPort").and_then(|p| p.parse().ok()),
        target_user: r.get("targetUser").unwrap_or("root").to_owned(),
        ssh_options: json_list("sshOptions", &[])?,
        privilege_escalation_command: json_list("privilegeEscalationCommand", &["sudo", "-H", "--"])?,
        always_activate: true,
        has_fast_connection: r.get("hasFastConnection") == Some("1"),
        build_on_target: false,
        owners: json_list("owners", &[])?,
        keys: Default::default(),
        tags: json_list("tags", &[])?,
        magic_rollback: true,
        confirm_timeout: 30,
        health_checks: match r.get("healthChecks") {
            Some(v) => serde_json::from_str(v)
                .map_err(|e| anyhow::anyhow!("machine ‘{}’: state attribute healthChecks: {e}", r.name))?,
            None => Default::default(),
        },
        toplevel: r.toplevel().map(str::to_owned),
        drv_path: None,
        replace_unknown_profiles: true,
        allow_local_deployment: false,
    })
}

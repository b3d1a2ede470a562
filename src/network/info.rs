//! What an evaluation tells of a network and its machines, as plain data
//! (the JSON eval-machine-info.nix gives; the evaluation cache keeps it).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkInfo {
    pub network: NetworkMeta,
    /// Its non-machine resources (`resources.<type>.<name>`).
    #[serde(default)]
    pub resources: Resources,
    pub machines: BTreeMap<String, MachineInfo>,
}

/// A network's non-machine resources: type (`sshKeyPairs`, ...) → name →
/// what the tool needs of it.
pub type Resources = BTreeMap<String, BTreeMap<String, ResourceSpec>>;

/// What the tool needs of a resource the network declares (never a value
/// state fed back: the network's evaluation cache keeps this).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ResourceSpec {
    /// A commandOutput's script.
    #[serde(default)]
    pub script: Option<String>,
}

/// A NixOps resource type this tool creates.
#[derive(Debug)]
pub struct CreatedType {
    /// Its attribute under `resources`.
    pub attr: &'static str,
    /// Its type in NixOps' state.
    pub kind: &'static str,
    /// The state attributes NixOps feeds back into the evaluation (its
    /// physical spec), as the resource's options of the same names.
    pub fed_back: &'static [&'static str],
}

/// NixOps' own resource types (its plugins bring the others).
pub const CREATED_TYPES: [CreatedType; 2] = [
    CreatedType {
        attr: "sshKeyPairs",
        kind: "ssh-keypair",
        fed_back: &["publicKey", "privateKey"],
    },
    CreatedType {
        attr: "commandOutput",
        kind: "command-output",
        fed_back: &["value"],
    },
];

/// The type the tool creates declared as `resources.<attr>`.
pub fn created_type(attr: &str) -> Option<&'static CreatedType> {
    CREATED_TYPES.iter().find(|t| t.attr == attr)
}

/// The type the tool creates that state records as `kind`.
pub fn created_type_of_kind(kind: &str) -> Option<&'static CreatedType> {
    CREATED_TYPES.iter().find(|t| t.kind == kind)
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkMeta {
    pub description: String,
    pub enable_rollback: bool,
    /// Full names (`network.x`, `meta.x`), and the known ones for messages.
    pub unknown_attrs: Vec<String>,
    #[serde(default)]
    pub known_attrs: Vec<String>,
    /// What the network uses that the tool cannot do, one message each.
    #[serde(default)]
    pub unsupported: Vec<String>,
    /// Colmena's `meta.allowApplyAll`: false means a deploy must name its
    /// machines.
    #[serde(default = "yes")]
    pub allow_apply_all: bool,
    /// `network.machinesFile` (Colmena's `meta.machinesFile`): a Nix
    /// machines file of remote builders for the deploying side's build.
    #[serde(default)]
    pub machines_file: Option<String>,
    /// The state file `network.storage.legacy.databasefile` names (NixOps
    /// 2.0), if it does.
    #[serde(default)]
    pub database_file: Option<String>,
    /// A flake network's locked URL (with narHash or rev), as evaluated.
    #[serde(skip)]
    pub flake_url: Option<String>,
    /// `network.inventory` (a hive's `meta.inventory`).
    #[serde(default)]
    pub inventory: Option<super::inventory::Spec>,
}

/// A machine's deployment.* options, and its toplevel when it was selected.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineInfo {
    pub target_env: String,
    /// The options of its backend the tool reads (`deployment.<targetEnv>`
    /// options a backend names; src/backend/), if any.
    #[serde(default)]
    pub backend: Option<serde_json::Value>,
    /// None: Colmena's `targetHost = null`, a machine deployed only with
    /// `apply-local` (see [`MachineInfo::host_name`]).
    pub target_host: Option<String>,
    pub target_port: Option<i64>,
    pub target_user: String,
    pub ssh_options: Vec<String>,
    pub privilege_escalation_command: Vec<String>,
    pub always_activate: bool,
    pub has_fast_connection: bool,
    /// `deployment.buildOnTarget`: the machine builds its own system.
    #[serde(default)]
    pub build_on_target: bool,
    pub owners: Vec<String>,
    /// deployment.keys without the secrets; None when not known (the
    /// machine's options were read from state, not evaluated).
    pub keys: Option<BTreeMap<String, KeyInfo>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "yes")]
    pub magic_rollback: bool,
    #[serde(default = "thirty")]
    pub confirm_timeout: u64,
    #[serde(default)]
    pub health_checks: HealthChecks,
    pub toplevel: Option<String>,
    pub drv_path: Option<String>,
    /// Colmena's `deployment.replaceUnknownProfiles`: false refuses to
    /// activate over a system that neither this deployer's store nor the
    /// deployment's state knows.
    #[serde(default = "yes")]
    pub replace_unknown_profiles: bool,
    /// Colmena's `deployment.allowLocalDeployment`: `apply-local` may deploy it.
    #[serde(default)]
    pub allow_local_deployment: bool,
}

impl MachineInfo {
    /// The host to reach the machine at; an error that says why not for a
    /// machine with `deployment.targetHost = null`.
    pub fn host_name(&self, machine: &str) -> anyhow::Result<&str> {
        self.target_host.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "machine ‘{machine}’ has deployment.targetHost = null: it is deployed only on itself, with ‘nixops apply-local --node {machine}’"
            )
        })
    }

    /// Where HTTP health checks ask by default: the machine's host, or this
    /// machine for one deployed only on itself.
    pub fn health_address(&self) -> &str {
        self.target_host.as_deref().unwrap_or("localhost")
    }
}

/// One of deployment.keys, as eval-machine-info.nix describes it: where the
/// secret comes from, never the secret itself.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub name: String,
    pub dest_dir: String,
    pub user: String,
    pub group: String,
    pub permissions: String,
    pub upload_at: String,
    /// "text", "keyFile" or "keyCommand".
    pub source: String,
    pub key_file: Option<String>,
    pub key_command: Option<Vec<String>>,
    /// Seconds the keyCommand may run.
    #[serde(default = "sixty")]
    pub key_command_timeout: i64,
    /// The key was given as a plain string (deprecated).
    pub deprecated_string: bool,
}

fn yes() -> bool {
    true
}

fn thirty() -> u64 {
    30
}

fn sixty() -> i64 {
    60
}

/// `deployment.healthChecks`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
pub struct HealthChecks {
    #[serde(default)]
    pub cmd: Vec<CmdCheck>,
    #[serde(default)]
    pub http: Vec<HttpCheck>,
}

impl HealthChecks {
    pub fn is_empty(&self) -> bool {
        self.cmd.is_empty() && self.http.is_empty()
    }

    /// The longest a check may take.
    pub fn max_timeout(&self) -> u64 {
        let cmd = self.cmd.iter().map(|c| c.timeout);
        cmd.chain(self.http.iter().map(|h| h.timeout)).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct CmdCheck {
    pub cmd: Vec<String>,
    #[serde(default)]
    pub description: String,
    pub period: u64,
    pub timeout: u64,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct HttpCheck {
    pub scheme: String,
    pub host: Option<String>,
    pub port: u16,
    pub path: String,
    #[serde(default)]
    pub description: String,
    pub period: u64,
    pub timeout: u64,
}

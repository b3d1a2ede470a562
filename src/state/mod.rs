//! Deployment state: what NixOps keeps in its state file.
//!
//! The data model is NixOps' own: a deployment is a UUID with text attributes,
//! and owns resources (machines) that have a name, a type and text attributes.
//! [`Store`] is the storage interface, and the only thing commands see:
//! [`open`] gives one for NixOps' SQLite file ([`sqlite`]) or a PostgreSQL
//! database ([`postgres`]), both with NixOps' schema (version 3), so state
//! moves freely between the backends and NixOps. Both run the same SQL
//! (`sql.rs`).

pub mod history;
mod libpq;
pub mod lock;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

pub use history::HistoryEntry;
pub use sqlite::Access;
use sqlite::SqliteStore;

/// Attribute values are text, as in NixOps: ints and bools as strings
/// (bools as "1"/"0"), lists and dicts as JSON.
pub type Attrs = BTreeMap<String, String>;

/// NixOps' machine states (the `state` attribute; 0 is unknown).
pub mod machine_state {
    pub const MISSING: i64 = 1;
    pub const STARTING: i64 = 2;
    pub const UP: i64 = 3;
    pub const STOPPING: i64 = 4;
    pub const STOPPED: i64 = 5;
    pub const UNREACHABLE: i64 = 6;
    pub const RESCUE: i64 = 7;

    /// As NixOps shows it.
    pub fn shown(state: i64) -> &'static str {
        match state {
            MISSING => "Missing",
            STARTING => "Starting",
            UP => "Up",
            STOPPING => "Stopping",
            STOPPED => "Stopped",
            UNREACHABLE => "Unreachable",
            RESCUE => "Rescue",
            _ => "Unknown",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Deployment {
    pub uuid: String,
    pub attrs: Attrs,
    pub resources: BTreeMap<String, Resource>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub attrs: Attrs,
}

impl Deployment {
    pub fn name(&self) -> Option<&str> {
        self.attrs.get("name").map(String::as_str)
    }

    /// The name if it has one, else the UUID (how NixOps refers to it).
    pub fn label(&self) -> &str {
        self.name().unwrap_or(&self.uuid)
    }

    pub fn description(&self) -> &str {
        self.attrs
            .get("description")
            .map(String::as_str)
            .unwrap_or("Unnamed NixOps network")
    }

    pub fn nix_exprs(&self) -> anyhow::Result<Vec<PathBuf>> {
        json_attr::<Vec<PathBuf>>(&self.attrs, "nixExprs", &self.uuid)
    }

    pub fn nix_path(&self) -> anyhow::Result<Vec<String>> {
        json_attr::<Vec<String>>(&self.attrs, "nixPath", &self.uuid)
    }

    /// The deployment's arguments: name → Nix expression.
    pub fn args(&self) -> anyhow::Result<BTreeMap<String, String>> {
        json_attr::<BTreeMap<String, String>>(&self.attrs, "args", &self.uuid)
    }

    pub fn machines(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(|r| r.is_machine())
    }
}

impl Resource {
    /// NixOps' machine backends; everything else is a non-machine resource.
    pub fn is_machine(&self) -> bool {
        crate::backend::of(&self.kind).is_some() || self.kind.ends_with("-machine") || self.kind == "machine"
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    pub fn state(&self) -> i64 {
        self.get("state").and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn obsolete(&self) -> bool {
        self.get("obsolete") == Some("1")
    }

    pub fn toplevel(&self) -> Option<&str> {
        self.get("toplevel")
    }
}

fn json_attr<T: serde::de::DeserializeOwned + Default>(
    attrs: &Attrs,
    name: &str,
    uuid: &str,
) -> anyhow::Result<T> {
    match attrs.get(name) {
        None => Ok(T::default()),
        Some(s) => serde_json::from_str(s)
            .with_context(|| format!("deployment {uuid}: attribute ‘{name}’ is not valid JSON")),
    }
}

/// What goes wrong with the state. The kinds are what commands decide on;
/// every message names the state (its file, or its URL without a password).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No deployment matches the selector (or there is none, or several).
    #[error("{0}")]
    NoSuchDeployment(String),
    /// `import` of a UUID the state holds already.
    #[error("{location} already contains a deployment with UUID ‘{uuid}’ (use --force to replace it)")]
    Exists { location: String, uuid: String },
    /// The state was written by a newer nixops.
    #[error("{location}: {what} newer than this nixops understands ({known})")]
    NewerSchema {
        location: String,
        /// "its schema version 4 is", "its ‘history’ tables are of version 3,"
        what: String,
        known: i64,
    },
    /// The state cannot be reached, read or written (a missing or read-only
    /// file, a full disk, a server that does not answer or refuses us),
    /// with where and why.
    #[error(transparent)]
    Unavailable(anyhow::Error),
}

/// The backends work with anyhow inside; a kind raised there (as
/// `anyhow::Error::from(Error::...)`) comes out as that kind.
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(kind) => kind,
            Err(e) => Error::Unavailable(e),
        }
    }
}

/// What the store's methods return.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One change to a set of attributes: set to a value, or remove (NixOps
/// removes an attribute that is set back to its default).
pub type AttrChange = (String, Option<String>);

/// Storage of deployments. Every method is one transaction: a process killed
/// at any moment leaves each deployment as it was before or after the call.
pub trait Store {
    /// How messages name it ("state file PATH", "PostgreSQL state URL",
    /// never with a password).
    fn location(&self) -> String;
    fn deployments(&self) -> Result<Vec<Deployment>>;
    fn load(&self, uuid: &str) -> Result<Deployment>;
    fn create_deployment(&self, uuid: &str, attrs: &Attrs) -> Result<()>;
    fn set_deployment_attrs(&self, uuid: &str, changes: &[AttrChange]) -> Result<()>;
    /// Deletes a deployment with its resources and history.
    fn delete_deployment(&self, uuid: &str) -> Result<()>;
    /// Records an evaluated network at once: deployment attribute changes,
    /// machines to create or update (name, type, changes), resources to
    /// forget. Returns the id of every machine given.
    fn record_network(
        &self,
        uuid: &str,
        deployment: &[AttrChange],
        machines: &[(String, String, Vec<AttrChange>)],
        forget: &[i64],
    ) -> Result<BTreeMap<String, i64>>;
    fn set_resource_attrs(&self, id: i64, changes: &[AttrChange]) -> Result<()>;
    /// Renames resource `from` of deployment `uuid` to `to`, which no
    /// resource of it may have.
    fn rename_resource(&self, uuid: &str, from: &str, to: &str) -> Result<()>;
    /// Imports a whole deployment in NixOps' export format, with its
    /// history (newest first); an existing UUID is refused unless `replace`.
    fn import(
        &self,
        uuid: &str,
        attrs: &Attrs,
        resources: &[ImportedResource],
        history: &[HistoryEntry],
        replace: bool,
    ) -> Result<()>;
    /// Copies a deployment's attributes (not its resources) to a new UUID.
    fn clone_deployment(&self, from: &str, to: &str) -> Result<()>;
    /// Appends an entry to a deployment's history.
    fn add_history(&self, uuid: &str, entry: &HistoryEntry) -> Result<()>;
    /// A deployment's history, newest first.
    fn history(&self, uuid: &str) -> Result<Vec<HistoryEntry>>;
    /// Takes the deployment's exclusive lock, saying "waiting for exclusive
    /// deployment lock..." while another process holds it. The lock goes
    /// with the process: a killed holder never leaves it behind.
    fn lock(&self, uuid: &str) -> Result<DeploymentLock>;
    /// Clears a lock left behind, if the backend can have such a thing.
    fn unlock(&self, uuid: &str) -> Result<Unlock>;
}

/// The state store, whichever backend holds it.
pub type StoreBox = Box<dyn Store + Send>;

/// A deployment's exclusive lock, held until dropped.
pub struct DeploymentLock {
    _held: Box<dyn std::any::Any + Send>,
}

impl DeploymentLock {
    /// `held` releases the lock when dropped.
    pub fn new(held: impl std::any::Any + Send) -> Self {
        DeploymentLock {
            _held: Box::new(held),
        }
    }
}

/// What `unlock` found.
pub enum Unlock {
    NotLocked,
    /// A lock file was left behind; nobody holds it (removed now).
    Cleared,
    /// A live process holds the lock: who, as far as known.
    Held {
        by: Option<String>,
    },
}

/// Where the state is, as `-s`, `$NIXOPS_STATE` or the default
/// (`~/.nixops/deployments.nixops`) names it: a file, or a PostgreSQL URL
/// (`postgresql://`, `postgres://`) or libpq's `key=value` connection
/// string, not parsed yet (that reads libpq's variables and password file).
enum Named {
    File { path: PathBuf, named: bool },
    Database(String),
}

fn named(arg: Option<&OsStr>) -> anyhow::Result<Named> {
    let named = arg
        .filter(|a| !a.is_empty())
        .map(ToOwned::to_owned)
        .or_else(|| std::env::var_os("NIXOPS_STATE").filter(|p| !p.is_empty()));
    let Some(named) = named else {
        let home = std::env::var_os("HOME").context("neither -s, $NIXOPS_STATE nor $HOME is set")?;
        return Ok(Named::File {
            path: PathBuf::from(home).join(".nixops/deployments.nixops"),
            named: false,
        });
    };
    match named.to_str().filter(|s| libpq::is_connection_string(s)) {
        Some(s) => Ok(Named::Database(s.to_owned())),
        None => Ok(Named::File {
            path: PathBuf::from(named),
            named: true,
        }),
    }
}

/// Where the state is, for checking it against a network's
/// `network.storage.legacy.databasefile`.
#[derive(Debug, Clone, Default)]
pub enum InUse {
    /// A file; `named` when -s or $NIXOPS_STATE named it.
    File { path: PathBuf, named: bool },
    /// A PostgreSQL database.
    #[default]
    Database,
}

impl InUse {
    /// The state file; None when the state is in a database.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            InUse::File { path, .. } => Some(path),
            InUse::Database => None,
        }
    }
}

/// Where `-s`, `$NIXOPS_STATE` or the default puts the state.
pub fn in_use(arg: Option<&OsStr>) -> anyhow::Result<InUse> {
    Ok(match named(arg)? {
        Named::File { path, named } => InUse::File { path, named },
        Named::Database(_) => InUse::Database,
    })
}

/// Opens the state: `-s`, `$NIXOPS_STATE` or the default file. A file named
/// with -s or $NIXOPS_STATE must exist unless the command creates it, and
/// its directory always (a typo is not a new state). The default file is
/// created, with its directory, when needed; until then it holds no
/// deployments. A PostgreSQL database must exist; its tables are made by
/// `create` and `import` only.
pub fn open(arg: Option<&OsStr>, access: Access) -> Result<StoreBox> {
    match named(arg)? {
        Named::File { path, named } => {
            if !named && !path.exists() {
                if access != Access::Create {
                    return Ok(Box::new(SqliteStore::empty(&path)?));
                }
                if let Some(dir) = path.parent() {
                    // The default directory holds the state and the locks:
                    // its owner's only.
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .with_context(|| format!("cannot create directory {}", dir.display()))?;
                }
            }
            Ok(Box::new(SqliteStore::open(&path, access)?))
        }
        Named::Database(s) => Ok(Box::new(postgres::PgStore::open(
            &libpq::Target::parse(&s)?,
            access,
        )?)),
    }
}

/// Finds a deployment by name, UUID or UUID prefix; with no selector and
/// exactly one deployment, that one (as NixOps does).
pub fn resolve<'a>(all: &'a [Deployment], selector: Option<&str>) -> Result<&'a Deployment> {
    let Some(sel) = selector else {
        return match all {
            [one] => Ok(one),
            [] => Err(Error::NoSuchDeployment(
                "there are no deployments; create one with ‘nixops create’".into(),
            )),
            _ => Err(Error::NoSuchDeployment(format!(
                "there are {} deployments; say which one with -d or $NIXOPS_DEPLOYMENT",
                all.len()
            ))),
        };
    };
    if let Some(d) = all.iter().find(|d| d.uuid == sel || d.name() == Some(sel)) {
        return Ok(d);
    }
    let by_prefix: Vec<_> = all.iter().filter(|d| d.uuid.starts_with(sel)).collect();
    match by_prefix.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::NoSuchDeployment(format!(
            "could not find specified deployment ‘{sel}’"
        ))),
        _ => Err(Error::NoSuchDeployment(format!(
            "deployment selector ‘{sel}’ is ambiguous"
        ))),
    }
}

/// NixOps' rule for deployment names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '-' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The key of a deployment's history in an export; NixOps' exports have
/// none (it is left out when the history is empty). Its value is the
/// history's JSON as one string: NixOps' import stores every deployment
/// attribute as text (it crashes on a list), so it keeps the history as an
/// attribute it never reads, and its export gives it back.
const HISTORY_KEY: &str = "history";

/// A deployment in NixOps' export format, with its history.
pub fn export(d: &Deployment, history: &[HistoryEntry]) -> anyhow::Result<Value> {
    let mut obj = serde_json::Map::new();
    for (k, v) in &d.attrs {
        obj.insert(k.clone(), Value::String(v.clone()));
    }
    let mut res = serde_json::Map::new();
    for r in d.resources.values() {
        let mut ro = serde_json::Map::new();
        for (k, v) in &r.attrs {
            ro.insert(k.clone(), Value::String(v.clone()));
        }
        ro.insert("type".into(), Value::String(r.kind.clone()));
        res.insert(r.name.clone(), Value::Object(ro));
    }
    obj.insert("resources".into(), Value::Object(res));
    if !history.is_empty() {
        obj.insert(HISTORY_KEY.into(), Value::String(serde_json::to_string(history)?));
    }
    Ok(Value::Object(obj))
}

/// A resource in an import: name, type, attributes.
pub type ImportedResource = (String, String, Attrs);

/// One deployment of an export: attributes, resources, history.
pub type Imported = (Attrs, Vec<ImportedResource>, Vec<HistoryEntry>);

/// Parses one deployment of NixOps' export format.
pub fn parse_export(uuid: &str, v: &Value) -> anyhow::Result<Imported> {
    let obj = v
        .as_object()
        .with_context(|| format!("deployment {uuid} in the import is not an object"))?;
    let mut attrs = Attrs::new();
    let mut resources = Vec::new();
    let mut history = Vec::new();
    for (k, v) in obj {
        if k == HISTORY_KEY {
            // A string (ours, and NixOps' export of it), or a list (exports
            // of earlier versions).
            let parsed = match v {
                Value::String(text) => serde_json::from_str(text),
                other => serde_json::from_value(other.clone()),
            };
            history = parsed.with_context(|| {
                format!("deployment {uuid}: ‘{HISTORY_KEY}’ is not a valid deploy history")
            })?;
        } else if k == "resources" {
            let res = v
                .as_object()
                .with_context(|| format!("deployment {uuid}: ‘resources’ is not an object"))?;
            for (name, rv) in res {
                let ro = rv
                    .as_object()
                    .with_context(|| format!("resource ‘{name}’ is not an object"))?;
                let mut rattrs = Attrs::new();
                let mut kind = None;
                for (ak, av) in ro {
                    let s = text_value(av);
                    if ak == "type" {
                        kind = Some(s);
                    } else {
                        rattrs.insert(ak.clone(), s);
                    }
                }
                let kind = kind.with_context(|| format!("imported resource ‘{name}’ lacks a type"))?;
                resources.push((name.clone(), kind, rattrs));
            }
        } else {
            attrs.insert(k.clone(), text_value(v));
        }
    }
    Ok((attrs, resources, history))
}

/// NixOps stores every value as text; JSON strings are taken as they are,
/// anything else as its JSON text.
fn text_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("staging"));
        assert!(valid_name("_a-b.c1"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
    }

    fn depl(uuid: &str, name: &str) -> Deployment {
        let mut attrs = Attrs::new();
        attrs.insert("name".into(), name.into());
        Deployment {
            uuid: uuid.into(),
            attrs,
            resources: BTreeMap::new(),
        }
    }

    #[test]
    fn resolve_by_name_uuid_prefix() {
        let all = vec![depl("abc-1", "one"), depl("abd-2", "two")];
        assert_eq!(resolve(&all, Some("two")).unwrap().uuid, "abd-2");
        assert_eq!(resolve(&all, Some("abc-1")).unwrap().uuid, "abc-1");
        assert_eq!(resolve(&all, Some("abd")).unwrap().uuid, "abd-2");
        assert!(resolve(&all, Some("ab")).is_err());
        assert!(resolve(&all, Some("zzz")).is_err());
        assert!(resolve(&all, None).is_err());
        assert_eq!(resolve(&all[..1], None).unwrap().uuid, "abc-1");
    }
}

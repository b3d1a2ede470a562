//! Deployment state: what NixOps keeps in its state file.
//!
//! The data model is NixOps' own: a deployment is a UUID with text attributes,
//! and owns resources (machines) that have a name, a type and text attributes.
//! [`Store`] is the storage interface; [`sqlite::SqliteStore`] implements it
//! with NixOps' schema (version 3), so state files move freely between the two
//! tools.

pub mod lock;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use sqlite::{Access, SqliteStore};

/// Attribute values are text, as in NixOps: ints and bools as strings
/// (bools as "1"/"0"), lists and dicts as JSON.
pub type Attrs = BTreeMap<String, String>;

/// NixOps' machine states (`state` attribute).
pub mod machine_state {
    pub const MISSING: i64 = 1;
    pub const UP: i64 = 3;
    pub const UNREACHABLE: i64 = 6;
}

#[derive(Debug, Clone)]
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

    pub fn nix_exprs(&self) -> Result<Vec<PathBuf>> {
        json_attr::<Vec<PathBuf>>(&self.attrs, "nixExprs", &self.uuid)
    }

    pub fn nix_path(&self) -> Result<Vec<String>> {
        json_attr::<Vec<String>>(&self.attrs, "nixPath", &self.uuid)
    }

    /// The deployment's arguments: name → Nix expression.
    pub fn args(&self) -> Result<BTreeMap<String, String>> {
        json_attr::<BTreeMap<String, String>>(&self.attrs, "args", &self.uuid)
    }

    pub fn machines(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(|r| r.is_machine())
    }
}

impl Resource {
    /// NixOps' machine backends; everything else is a non-machine resource.
    pub fn is_machine(&self) -> bool {
        self.kind == "none" || self.kind.ends_with("-machine") || self.kind == "machine"
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

fn json_attr<T: serde::de::DeserializeOwned + Default>(attrs: &Attrs, name: &str, uuid: &str) -> Result<T> {
    match attrs.get(name) {
        None => Ok(T::default()),
        Some(s) => serde_json::from_str(s)
            .with_context(|| format!("deployment {uuid}: attribute ‘{name}’ is not valid JSON")),
    }
}

/// One change to a set of attributes: set to a value, or remove (NixOps
/// removes an attribute that is set back to its default).
pub type AttrChange = (String, Option<String>);

/// Storage of deployments. Every method is one transaction: a process killed
/// at any moment leaves each deployment as it was before or after the call.
pub trait Store {
    fn deployments(&self) -> Result<Vec<Deployment>>;
    fn load(&self, uuid: &str) -> Result<Deployment>;
    fn create_deployment(&self, uuid: &str, attrs: &Attrs) -> Result<()>;
    fn set_deployment_attrs(&self, uuid: &str, changes: &[AttrChange]) -> Result<()>;
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
    /// Imports a whole deployment in NixOps' export format.
    fn import(&self, uuid: &str, attrs: &Attrs, resources: &[(String, String, Attrs)]) -> Result<()>;
    /// Copies a deployment's attributes (not its resources) to a new UUID.
    fn clone_deployment(&self, from: &str, to: &str) -> Result<()>;
}

/// Where the state file is: `-s`, `$NIXOPS_STATE`, `~/.nixops/deployments.nixops`;
/// and whether it was named (`-s`, `$NIXOPS_STATE`) rather than the default.
pub fn state_path(arg: Option<PathBuf>) -> Result<(PathBuf, bool)> {
    if let Some(p) = arg.filter(|p| !p.as_os_str().is_empty()) {
        return Ok((p, true));
    }
    if let Some(p) = std::env::var_os("NIXOPS_STATE").filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(p), true));
    }
    let home = std::env::var_os("HOME").context("neither -s, $NIXOPS_STATE nor $HOME is set")?;
    Ok((PathBuf::from(home).join(".nixops/deployments.nixops"), false))
}

/// Finds a deployment by name, UUID or UUID prefix; with no selector and
/// exactly one deployment, that one (as NixOps does).
pub fn resolve<'a>(all: &'a [Deployment], selector: Option<&str>) -> Result<&'a Deployment> {
    let Some(sel) = selector else {
        return match all {
            [one] => Ok(one),
            [] => bail!("there are no deployments; create one with ‘nixops create’"),
            _ => bail!(
                "there are {} deployments; say which one with -d or $NIXOPS_DEPLOYMENT",
                all.len()
            ),
        };
    };
    if let Some(d) = all.iter().find(|d| d.uuid == sel || d.name() == Some(sel)) {
        return Ok(d);
    }
    let by_prefix: Vec<_> = all.iter().filter(|d| d.uuid.starts_with(sel)).collect();
    match by_prefix.as_slice() {
        [one] => Ok(one),
        [] => bail!("could not find specified deployment ‘{sel}’"),
        _ => bail!("deployment selector ‘{sel}’ is ambiguous"),
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

/// A deployment in NixOps' export format.
pub fn export(d: &Deployment) -> Value {
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
    Value::Object(obj)
}

/// A resource in an import: name, type, attributes.
pub type ImportedResource = (String, String, Attrs);

/// Parses one deployment of NixOps' export format.
pub fn parse_export(uuid: &str, v: &Value) -> Result<(Attrs, Vec<ImportedResource>)> {
    let obj = v
        .as_object()
        .with_context(|| format!("deployment {uuid} in the import is not an object"))?;
    let mut attrs = Attrs::new();
    let mut resources = Vec::new();
    for (k, v) in obj {
        if k == "resources" {
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
    Ok((attrs, resources))
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

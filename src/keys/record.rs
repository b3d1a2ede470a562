//! What state keeps of a machine's keys: its `keys` attribute, a JSON
//! object of key attribute → where the key went and a salted hash of its
//! bytes (never the bytes).
//!
//! NixOps kept the key options themselves there, `text` included; such
//! entries are read for where they went (name, destDir), so that a key they
//! name is removed once no longer declared, and the rest is ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::secret::Secret;
use super::spec::{KeySpec, join_path};

/// One delivered key. Fields in alphabetical order, as the JSON has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Delivered {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Delivered {
    /// Where the key is on the machine (NixOps' defaults for what is missing).
    pub fn path(&self, attr: &str) -> String {
        join_path(
            self.dest_dir.as_deref().unwrap_or("/run/keys"),
            self.name.as_deref().unwrap_or(attr),
        )
    }

    pub fn of(spec: &KeySpec, hash: String) -> Self {
        let upload_at = if spec.post_activation {
            "post-activation"
        } else {
            "pre-activation"
        };
        Delivered {
            name: Some(spec.name.clone()),
            dest_dir: Some(spec.dest_dir.clone()),
            user: Some(spec.user.clone()),
            group: Some(spec.group.clone()),
            permissions: Some(spec.permissions.clone()),
            upload_at: Some(upload_at.into()),
            hash: Some(hash),
        }
    }
}

/// Reads the `keys` attribute, leniently: what is not a JSON object gives
/// nothing, an entry that is not an object gives an empty entry, and only
/// strings are read as values (NixOps' entries also hold lists and nulls).
pub fn parse(json: Option<&str>) -> BTreeMap<String, Delivered> {
    let Some(json) = json else { return BTreeMap::new() };
    let Ok(map) = serde_json::from_str::<BTreeMap<String, serde_json::Value>>(json) else {
        return BTreeMap::new();
    };
    map.into_iter()
        .map(|(attr, v)| {
            let d = match v {
                serde_json::Value::Object(mut o) => {
                    o.retain(|_, v| v.is_string());
                    Delivered::deserialize(serde_json::Value::Object(o)).unwrap_or_default()
                }
                _ => Delivered::default(),
            };
            (attr, d)
        })
        .collect()
}

/// The `keys` attribute for what a machine now has; None (no attribute)
/// when it has no keys.
pub fn to_json(delivered: &BTreeMap<String, Delivered>) -> Option<String> {
    (!delivered.is_empty()).then(|| serde_json::to_string(delivered).expect("strings serialize"))
}

fn digest(salt: &[u8], secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    hex::encode(h.finalize())
}

/// "sha256:<salt>:<digest of salt ‖ secret>": tells whether a key changed
/// without keeping anything that can be looked up in a table.
pub fn new_hash(secret: &Secret) -> String {
    let salt = uuid::Uuid::new_v4();
    format!(
        "sha256:{}:{}",
        hex::encode(salt.as_bytes()),
        digest(salt.as_bytes(), secret.bytes())
    )
}

pub fn hash_matches(stored: &str, secret: &Secret) -> bool {
    let mut parts = stored.split(':');
    let (Some("sha256"), Some(salt), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    hex::decode(salt).is_ok_and(|salt| digest(&salt, secret.bytes()) == d)
}

/// What delivering a machine's keys would change there, judged by what state
/// recorded of the last delivery: where each key went, its owner, mode and
/// upload time, and the salted hash of its bytes (a freshly read secret is
/// only hashed with that salt, never shown or kept). Names are the
/// attributes under deployment.keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<KeyChange>,
    pub unchanged: Vec<String>,
    /// Why the keys could not be read (a deploy would fail there too).
    pub error: Option<String>,
}

/// A key that would change: which of "content", "path", "owner",
/// "permissions" and "uploadAt".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    pub name: String,
    pub what: Vec<&'static str>,
}

/// [`KeyChanges`] of the declared keys (`specs`, with their `secrets`
/// read) against what was `delivered`.
pub fn changes(
    specs: &[KeySpec],
    delivered: &BTreeMap<String, Delivered>,
    secrets: &BTreeMap<String, Secret>,
) -> KeyChanges {
    let mut c = KeyChanges::default();
    for s in specs {
        let Some(d) = delivered.get(&s.attr) else {
            c.added.push(s.attr.clone());
            continue;
        };
        let same = |v: &Option<String>, w: &str| v.as_deref() == Some(w);
        let content = match (&d.hash, secrets.get(&s.attr)) {
            (Some(h), Some(secret)) => hash_matches(h, secret),
            _ => false,
        };
        // NixOps' entries have none: it sent every key before activation.
        let upload_at = Delivered::of(s, String::new()).upload_at;
        let delivered_at = d.upload_at.clone().or_else(|| Some("pre-activation".into()));
        let what: Vec<&'static str> = [
            ("content", content),
            ("path", d.path(&s.attr) == s.path()),
            ("owner", same(&d.user, &s.user) && same(&d.group, &s.group)),
            ("permissions", same(&d.permissions, &s.permissions)),
            ("uploadAt", delivered_at == upload_at),
        ]
        .into_iter()
        .filter(|(_, unchanged)| !unchanged)
        .map(|(what, _)| what)
        .collect();
        if what.is_empty() {
            c.unchanged.push(s.attr.clone());
        } else {
            c.changed.push(KeyChange {
                name: s.attr.clone(),
                what,
            });
        }
    }
    c.removed = delivered
        .keys()
        .filter(|a| !specs.iter().any(|s| &s.attr == *a))
        .cloned()
        .collect();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(attr: &str, mode: &str) -> KeySpec {
        KeySpec {
            attr: attr.into(),
            name: attr.into(),
            dest_dir: "/run/keys".into(),
            user: "root".into(),
            group: "root".into(),
            permissions: mode.into(),
            post_activation: false,
            source: super::super::spec::Source::Text,
        }
    }

    #[test]
    fn changes_compare_with_what_state_recorded() {
        let specs = vec![
            spec("same", "0600"),
            spec("bytes", "0600"),
            spec("moded", "0640"),
            spec("fresh", "0600"),
            spec("legacy", "0600"),
        ];
        let mut delivered = BTreeMap::new();
        for (attr, b) in [("same", b"one"), ("bytes", b"old"), ("moded", b"mod")] {
            let d = Delivered::of(&spec(attr, "0600"), new_hash(&Secret::from_slice(b)));
            delivered.insert(attr.to_owned(), d);
        }
        // NixOps kept the text itself, and no hash.
        delivered.extend(parse(Some(
            r#"{"legacy": {"text": "x", "destDir": "/run/keys"}, "gone": {}}"#,
        )));
        let secrets: BTreeMap<String, Secret> = [
            ("same", &b"one"[..]),
            ("bytes", b"new"),
            ("moded", b"mod"),
            ("fresh", b"abc"),
            ("legacy", b"x"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), Secret::from_slice(b)))
        .collect();
        let c = changes(&specs, &delivered, &secrets);
        assert_eq!(c.added, ["fresh"]);
        assert_eq!(c.removed, ["gone"]);
        assert_eq!(c.unchanged, ["same"]);
        let changed: Vec<(&str, &[&str])> = c
            .changed
            .iter()
            .map(|k| (k.name.as_str(), k.what.as_slice()))
            .collect();
        assert_eq!(
            changed,
            [
                ("bytes", &["content"][..]),
                ("moded", &["permissions"][..]),
                ("legacy", &["content", "owner", "permissions"][..]),
            ]
        );
        assert_eq!(c.error, None);
    }

    #[test]
    fn hashes_are_salted_and_checkable() {
        let a = Secret::from_slice(b"hunter2");
        let b = Secret::from_slice(b"hunter3");
        let h1 = new_hash(&a);
        let h2 = new_hash(&a);
        assert_ne!(h1, h2);
        assert!(hash_matches(&h1, &a));
        assert!(!hash_matches(&h1, &b));
        assert!(!h1.contains("hunter"));
        assert!(!hash_matches("sha256:zz:00", &a));
        assert!(!hash_matches("md5:00:00", &a));
    }

    #[test]
    fn state_reads_nixops_entries() {
        let d = parse(Some(
            r#"{"k": {"text": "secret", "destDir": "/var/keys", "user": "root",
                      "keyCommand": ["pass", "x"], "keyFile": null, "permissions": 384},
                "j": {}, "s": "not an object"}"#,
        ));
        assert_eq!(d["k"].path("k"), "/var/keys/k");
        assert_eq!(d["k"].user.as_deref(), Some("root"));
        assert_eq!(d["k"].permissions, None);
        assert_eq!(d["j"].path("j"), "/run/keys/j");
        assert_eq!(d["s"], Delivered::default());
        // What we write back keeps nothing of NixOps' entry but where it went.
        let json = to_json(&d).unwrap();
        assert!(!json.contains("secret"), "{json}");
        assert_eq!(
            json,
            r#"{"j":{},"k":{"destDir":"/var/keys","user":"root"},"s":{}}"#
        );
        assert!(parse(Some("[1]")).is_empty());
        assert!(parse(Some("not json")).is_empty());
        assert!(parse(None).is_empty());
        assert_eq!(to_json(&BTreeMap::new()), None);
    }

    #[test]
    fn records_round_trip() {
        let spec = KeySpec {
            attr: "db".into(),
            name: "db pass".into(),
            dest_dir: "/run/keys/".into(),
            user: "postgres".into(),
            group: "keys".into(),
            permissions: "0640".into(),
            post_activation: true,
            source: super::super::spec::Source::Text,
        };
        let d = Delivered::of(&spec, "sha256:00:11".into());
        let all: BTreeMap<String, Delivered> = [("db".to_string(), d)].into();
        let json = to_json(&all).unwrap();
        // The format the previous version wrote (keys in alphabetical order).
        assert_eq!(
            json,
            r#"{"db":{"destDir":"/run/keys/","group":"keys","hash":"sha256:00:11","name":"db pass","permissions":"0640","uploadAt":"post-activation","user":"postgres"}}"#
        );
        let back = parse(Some(&json));
        assert_eq!(back, all);
        assert_eq!(back["db"].path("db"), "/run/keys/db pass");
    }
}

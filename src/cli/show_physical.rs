use anyhow::{Context, Result};
use clap::Args;

use std::collections::BTreeMap;

use super::Global;
use crate::network::{NixFiles, created_type_of_kind};

#[derive(Args, Debug)]
pub struct Opts {
    /// The physical spec of a backup (NixOps: cloud machines' disk
    /// snapshots, which existing machines have none of)
    #[arg(long, value_name = "BACKUP-ID")]
    pub backup: Option<String>,
}

/// The physical spec NixOps 2.0 generates for a deployment of existing
/// machines, printed as NixOps prints it: what NixOps adds to each machine
/// in state that is not obsolete, and what it feeds back of each resource
/// of its own types (a key pair's private key too, as NixOps prints it).
/// Deploys add the same (eval-machine-info.nix, `physicalModule` and
/// `evalResource`), except `networking.publicIPv4`, which NixOps takes from
/// the machine's own configuration on every deploy and so never changes it.
pub async fn run(g: &Global, o: Opts) -> Result<i32> {
    if o.backup.is_some() {
        return super::backups::refuse(g, "show-physical --backup", None);
    }
    let store = g.read_store()?;
    let d = g.deployment(&store)?;
    let machines: Vec<_> = d.machines().filter(|r| !r.obsolete()).collect();
    let mut files = None;
    let mut network = None;
    let mut specs = Vec::new();
    let mut physicals = crate::backend::physical(&d)?;
    for m in machines {
        // As NixOps: the state version it recorded, else the release of the
        // machine's NixOS (which needs an evaluation).
        let state_version = match m.get("stateVersion") {
            Some(v) => v.to_owned(),
            None => {
                if files.is_none() {
                    files = Some(NixFiles::write()?);
                    network = Some(crate::deploy::network_of(&d)?);
                }
                let json = network
                    .as_ref()
                    .expect("made with files")
                    .option(
                        files.as_ref().expect("just made"),
                        &g.nix_opts(Some(&d))?,
                        &m.name,
                        &["system".into(), "nixos".into(), "release".into()],
                        true,
                        false,
                    )
                    .await?;
                serde_json::from_str(json.trim())
                    .with_context(|| format!("machine ‘{}’: system.nixos.release is no string", m.name))?
            }
        };
        let mut backend = physicals.remove(&m.name).unwrap_or_default();
        let mut networking = vec![("extraHosts".to_owned(), Value::Str("\n".into()))];
        networking.push((
            "firewall".into(),
            Value::Attrs(vec![("trustedInterfaces".into(), Value::List(vec![]))]),
        ));
        if let Some(ip) = backend.private_ipv4.take() {
            networking.push(("privateIPv4".into(), Value::Str(ip)));
        }
        if let Some(ip) = m.get("publicIpv4") {
            networking.push(("publicIPv4".into(), Value::Str(ip.into())));
        }
        let mut config = vec![
            (
                "boot".into(),
                Value::Attrs(vec![("kernelModules".into(), Value::List(vec![]))]),
            ),
            ("networking".into(), Value::Attrs(networking)),
            (
                "system".into(),
                Value::Attrs(vec![(
                    "stateVersion".into(),
                    Value::Call(
                        Box::new(Value::Raw("lib.mkDefault".into())),
                        Box::new(Value::Str(state_version)),
                    ),
                )]),
            ),
        ];
        // Every machine's host key NixOps knows.
        for h in &backend.known_hosts {
            let host = Value::Attrs(vec![
                ("hostNames".into(), Value::List(vec![Value::Str(h.name.clone())])),
                ("publicKey".into(), Value::Str(h.key.clone())),
            ]);
            insert(&mut config, &["services", "openssh", "knownHosts", &h.name], host);
        }
        let config = Value::Attrs(config);
        let own = if !backend.spec.is_empty() {
            // The backend's own part, as a module of its definitions and
            // imports from nixpkgs.
            let mut module = Vec::new();
            for def in &backend.spec.defs {
                let value = from_json(&def.value);
                let value = match def.priority {
                    Some(p) => Value::Call(
                        Box::new(Value::Raw(format!("pkgs.lib.mkOverride {p}"))),
                        Box::new(value),
                    ),
                    None => value,
                };
                let path: Vec<&str> = def.path.iter().map(String::as_str).collect();
                insert(&mut module, &path, value);
            }
            let imports = backend
                .spec
                .imports
                .iter()
                .map(|p| Value::Raw(format!("<nixpkgs/{p}>")))
                // Modules the backend keeps as Nix text (a hardware
                // configuration), as they are.
                .chain(
                    backend
                        .spec
                        .modules
                        .iter()
                        .map(|m| Value::Raw(m.trim().to_owned())),
                )
                .collect();
            module.push(("imports".into(), Value::List(imports)));
            Value::Attrs(module)
        } else {
            match m.get("none.sshPublicKey") {
                Some(key) => Value::Attrs(vec![(
                    "config".into(),
                    path_to(
                        &["users", "extraUsers", "root", "openssh", "authorizedKeys", "keys"],
                        Value::List(vec![Value::Str(key.into())]),
                    ),
                )]),
                None => Value::Attrs(vec![]),
            }
        };
        specs.push((
            m.name.clone(),
            Value::Function(
                "{ config, lib, pkgs, ... }".into(),
                Box::new(Value::Attrs(vec![
                    ("config".into(), config),
                    ("imports".into(), Value::List(vec![own])),
                ])),
            ),
        ));
    }
    let mut resources: BTreeMap<&str, Vec<(String, Value)>> = BTreeMap::new();
    for r in d.resources.values().filter(|r| !r.is_machine() && !r.obsolete()) {
        // As NixOps' get_physical_spec: every attribute, null where state
        // has none (a plugin's type may leave it out instead).
        let (attr, fed_back, nulls): (&str, Vec<(&str, &str)>, bool) =
            if let Some(t) = created_type_of_kind(&r.kind) {
                (t.attr, t.fed_back.iter().map(|a| (*a, *a)).collect(), true)
            } else if let Some(t) = crate::backend::resource_type_of_kind(&r.kind) {
                (t.attr, t.fed_back.to_vec(), t.null_when_missing)
            } else {
                continue;
            };
        let attrs: Vec<(String, Value)> = fed_back
            .iter()
            .filter(|(_, a)| nulls || r.get(a).is_some())
            .map(|(option, a)| {
                let v = r
                    .get(a)
                    .map_or(Value::Raw("null".into()), |v| Value::Str(v.into()));
                ((*option).to_owned(), v)
            })
            .collect();
        // NixOps leaves out a resource it has nothing to say of.
        if attrs.is_empty() {
            continue;
        }
        resources.entry(attr).or_default().push((
            r.name.clone(),
            Value::Function(
                "{ config, lib, pkgs, ... }".into(),
                Box::new(Value::Attrs(vec![
                    ("config".into(), Value::Attrs(vec![])),
                    ("imports".into(), Value::List(vec![Value::Attrs(attrs)])),
                ])),
            ),
        ));
    }
    if !resources.is_empty() {
        let types = resources
            .into_iter()
            .map(|(t, rs)| (t.to_owned(), Value::Attrs(rs)))
            .collect();
        specs.push(("resources".into(), Value::Attrs(types)));
    }
    out!("{}\n", Value::Attrs(specs).encode(false).layout(0, false));
    Ok(0)
}

/// Adds `leaf` at `path` into a set's attributes, merging with what is
/// there (as NixOps merges its spec's attribute paths).
fn insert(attrs: &mut Vec<(String, Value)>, path: &[&str], leaf: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        attrs.retain(|(k, _)| k != first);
        attrs.push(((*first).to_owned(), leaf));
        return;
    }
    match attrs.iter_mut().find(|(k, _)| k == first) {
        Some((_, Value::Attrs(inner))) => insert(inner, rest, leaf),
        _ => {
            let mut inner = Vec::new();
            insert(&mut inner, rest, leaf);
            attrs.retain(|(k, _)| k != first);
            attrs.push(((*first).to_owned(), Value::Attrs(inner)));
        }
    }
}

/// A JSON value as a Nix value.
fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Raw("null".into()),
        J::Bool(b) => Value::Raw(b.to_string()),
        J::Number(n) => Value::Raw(n.to_string()),
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::List(items.iter().map(from_json).collect()),
        J::Object(o) => Value::Attrs(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

fn path_to(path: &[&str], leaf: Value) -> Value {
    match path.split_first() {
        None => leaf,
        Some((first, rest)) => Value::Attrs(vec![((*first).into(), path_to(rest, leaf))]),
    }
}

/// A Nix value as NixOps' py2nix writes one (nixops/nix_expr.py): the
/// same layout, so that the output is NixOps' to the byte.
enum Value {
    Raw(String),
    Str(String),
    List(Vec<Value>),
    Attrs(Vec<(String, Value)>),
    Function(String, Box<Value>),
    Call(Box<Value>, Box<Value>),
}

/// What is laid out: text, or a bracketed sequence that goes on one line
/// when it fits in 80 columns (then as `inline` where it has such a form).
enum Layout {
    Text(String),
    Group {
        open: String,
        items: Vec<Layout>,
        close: String,
        inline: Option<String>,
    },
}

const WIDTH: usize = 80;

impl Layout {
    fn min_len(&self) -> usize {
        match self {
            Layout::Text(t) => t.chars().count(),
            Layout::Group {
                open, items, close, ..
            } => {
                open.chars().count()
                    + close.chars().count()
                    + 1
                    + items.len()
                    + items.iter().map(Layout::min_len).sum::<usize>()
            }
        }
    }

    fn layout(&self, level: usize, inline: bool) -> String {
        let ind = "  ".repeat(level);
        match self {
            Layout::Text(t) => format!("{ind}{t}"),
            Layout::Group {
                open,
                items,
                close,
                inline: short,
            } => {
                let inline = inline || level * 2 + self.min_len() < WIDTH;
                if inline {
                    if let Some(s) = short {
                        return format!("{ind}{s}");
                    }
                    let body: Vec<String> = items.iter().map(|i| i.layout(0, true)).collect();
                    format!("{ind}{open} {} {close}", body.join(" "))
                } else {
                    let body: Vec<String> = items.iter().map(|i| i.layout(level + 1, false)).collect();
                    format!("{ind}{open}\n{}\n{ind}{close}", body.join("\n"))
                }
            }
        }
    }

    fn enclose(self, before: &str, after: &str) -> Layout {
        match self {
            Layout::Text(t) => Layout::Text(format!("{before}{t}{after}")),
            Layout::Group {
                open,
                items,
                close,
                inline,
            } => Layout::Group {
                open: format!("{before}{open}"),
                items,
                close: format!("{close}{after}"),
                inline: inline.map(|s| format!("{before}{s}{after}")),
            },
        }
    }
}

fn quoted(s: &str) -> String {
    let e = s
        .replace('\\', "\\\\")
        .replace("${", "\\${")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!("\"{e}\"")
}

fn attr_name(k: &str) -> String {
    let plain = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { k.to_owned() } else { quoted(k) }
}

impl Value {
    fn encode(&self, in_list: bool) -> Layout {
        match self {
            Value::Raw(t) if in_list && t.contains(char::is_whitespace) => Layout::Text(format!("({t})")),
            Value::Raw(t) => Layout::Text(t.clone()),
            Value::Str(s) if s.ends_with('\n') => {
                let body = s[..s.len() - 1]
                    .replace("''", "'''")
                    .replace("${", "''${")
                    .replace('\t', "'\\t");
                Layout::Group {
                    open: "''".into(),
                    items: body.lines().map(|l| Layout::Text(l.into())).collect(),
                    close: "''".into(),
                    inline: Some(quoted(s)),
                }
            }
            Value::Str(s) => Layout::Text(quoted(s)),
            Value::List(items) if items.is_empty() => Layout::Text("[]".into()),
            Value::List(items) => Layout::Group {
                open: "[".into(),
                items: items.iter().map(|v| v.encode(true)).collect(),
                close: "]".into(),
                inline: None,
            },
            Value::Attrs(attrs) if attrs.is_empty() => Layout::Text("{}".into()),
            Value::Attrs(attrs) => {
                let mut sorted: Vec<&(String, Value)> = attrs.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let items = sorted
                    .into_iter()
                    .map(|(k, v)| {
                        // A set of one attribute joins its parent's name: a.b.c.
                        let (mut name, mut v) = (attr_name(k), v);
                        while let Value::Attrs(inner) = v
                            && inner.len() == 1
                        {
                            name = format!("{name}.{}", attr_name(&inner[0].0));
                            v = &inner[0].1;
                        }
                        v.encode(false).enclose(&format!("{name} = "), ";")
                    })
                    .collect();
                Layout::Group {
                    open: "{".into(),
                    items,
                    close: "}".into(),
                    inline: None,
                }
            }
            Value::Function(head, body) => {
                let f = body.encode(false).enclose(&format!("{head}: "), "");
                if in_list { f.enclose("(", ")") } else { f }
            }
            Value::Call(fun, arg) => {
                let c = Layout::Group {
                    open: "(".into(),
                    items: vec![fun.encode(false), arg.encode(false)],
                    close: ")".into(),
                    inline: None,
                };
                if in_list { c.enclose("(", ")") } else { c }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_laid_out_as_nixops_lays_them_out() {
        let v = Value::Attrs(vec![
            ("b".into(), Value::Attrs(vec![("c".into(), Value::List(vec![]))])),
            (
                "a b".into(),
                Value::List(vec![Value::Str("x".repeat(80)), Value::Raw("f x".into())]),
            ),
            ("s".into(), Value::Str("one\ntwo\n".into())),
        ]);
        assert_eq!(
            v.encode(false).layout(0, false),
            format!(
                "{{\n  \"a b\" = [\n    \"{}\"\n    (f x)\n  ];\n  b.c = [];\n  s = \"one\\ntwo\\n\";\n}}",
                "x".repeat(80)
            )
        );
        let long = Value::Str(format!("{}\n", "y".repeat(80)));
        assert_eq!(
            Value::Attrs(vec![("s".into(), long)])
                .encode(false)
                .layout(0, false),
            format!("{{\n  s = ''\n    {}\n  '';\n}}", "y".repeat(80))
        );
        assert_eq!(Value::Attrs(vec![]).encode(false).layout(0, false), "{}");
    }
}

//! What a system's closure holds and how two closures differ: packages by
//! name and version, grouped as `nix store diff-closures` groups them, and
//! their sizes. `diff-closures` itself needs both closures in one store; a
//! plan has the old one on the machine and the new one here, so each side is
//! listed where it is (`closure-lib.sh`) and compared here.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::process::{self, Sink};

/// The `closure` shell function (src/host/closure-lib.sh), which machines
/// run too.
pub const SCRIPT: &str = include_str!("../host/closure-lib.sh");

/// The store paths of a closure with their NAR sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    pub paths: BTreeMap<String, u64>,
}

impl Closure {
    /// Reads `closure`'s lines for the closure of `root`; the closure
    /// must contain `root`, else the listing failed half-way.
    pub fn parse<'a>(root: &str, lines: impl IntoIterator<Item = &'a str>) -> Result<Closure> {
        let mut paths = BTreeMap::new();
        for line in lines {
            let Some((size, path)) = line.trim().split_once(' ') else {
                bail!("unexpected line in the closure of {root}: {line:?}");
            };
            let Ok(size) = size.parse::<u64>() else {
                bail!("unexpected line in the closure of {root}: {line:?}");
            };
            paths.insert(path.to_owned(), size);
        }
        if !paths.contains_key(root) {
            bail!("could not list the closure of {root}");
        }
        Ok(Closure { paths })
    }

    /// The sum of its paths' NAR sizes, in bytes.
    pub fn size(&self) -> u64 {
        self.paths.values().sum()
    }
}

/// The closure of `path` in this machine's store.
pub async fn of(path: &str) -> Result<Closure> {
    let mut cmd = process::command("sh");
    cmd.arg("-c")
        .arg(format!("{SCRIPT}closure \"$1\""))
        .arg("nixops")
        .arg(path);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("cannot list the closure of {path}: {}", out.last_error());
    }
    Closure::parse(path, out.stdout.lines())
}

/// A store path's package name and version, as `diff-closures` reads them:
/// the name without its hash, then without an output name (`-bin`, `-dev`,
/// `-lib64`... any `-<lowercase letters>` suffix, which a version such as
/// `-unstable` can look like too: Nix takes the same risk), split at the
/// first `-` not followed by a letter (Nix's `DrvName`).
pub fn name_version(path: &str) -> (String, String) {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name = match base.split_once('-') {
        Some((hash, rest)) if hash.len() == 32 => rest,
        _ => base,
    };
    let name = match name.rsplit_once('-') {
        Some((stem, out))
            if !stem.is_empty()
                && ((!out.is_empty() && out.bytes().all(|b| b.is_ascii_lowercase()))
                    || out == "lib32"
                    || out == "lib64") =>
        {
            stem
        }
        _ => name,
    };
    let b = name.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && i + 1 < b.len() && !b[i + 1].is_ascii_alphabetic() {
            return (name[..i].to_owned(), name[i + 1..].to_owned());
        }
    }
    (name.to_owned(), String::new())
}

/// Nix's `builtins.compareVersions`: components are runs of digits or of
/// other characters, split at `.` and `-`; numbers compare as numbers, a
/// missing component is less than a number, `pre` is less than anything
/// else, and a number is greater than a word (`2.3a` < `2.3.1`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    while !x.is_empty() || !y.is_empty() {
        let (c1, r1) = next_component(x);
        let (c2, r2) = next_component(y);
        if component_lt(c1, c2) {
            return Ordering::Less;
        }
        if component_lt(c2, c1) {
            return Ordering::Greater;
        }
        (x, y) = (r1, r2);
    }
    Ordering::Equal
}

fn next_component(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(['.', '-']);
    let digits = s.starts_with(|c: char| c.is_ascii_digit());
    let end = s
        .find(|c: char| {
            if digits {
                !c.is_ascii_digit()
            } else {
                c.is_ascii_digit() || c == '.' || c == '-'
            }
        })
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

fn number(c: &str) -> Option<&str> {
    (!c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())).then_some(c)
}

fn component_lt(c1: &str, c2: &str) -> bool {
    match (number(c1), number(c2)) {
        // Digit strings of any length, compared as numbers.
        (Some(n1), Some(n2)) => {
            let (n1, n2) = (n1.trim_start_matches('0'), n2.trim_start_matches('0'));
            (n1.len(), n1) < (n2.len(), n2)
        }
        (_, Some(_)) if c1.is_empty() => true,
        _ if c1 == "pre" && c2 != "pre" => true,
        _ if c2 == "pre" => false,
        (_, Some(_)) => true,
        (Some(_), _) => false,
        _ => c1 < c2,
    }
}

/// Packages added, removed and changed between two closures, by name, as
/// nvd and `nix store diff-closures` show them. A package whose versions
/// stay the same is not listed, even when its store paths changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageDiff {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    pub changed: Vec<VersionChange>,
}

/// A package and its versions (`""` for a path without a version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub versions: Vec<String>,
}

/// A package whose versions differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionChange {
    pub name: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
    /// Judged by the highest version on each side.
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Upgrade,
    Downgrade,
    /// The highest versions compare equal (e.g. `1.0, 2.0` → `2.0`).
    Changed,
}

fn versions(c: &Closure) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in c.paths.keys() {
        let (name, version) = name_version(p);
        m.entry(name).or_default().insert(version);
    }
    m
}

/// Versions in `compare_versions` order.
fn sorted(v: &BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = v.iter().cloned().collect();
    v.sort_by(|a, b| compare_versions(a, b).then_with(|| a.cmp(b)));
    v
}

pub fn diff(before: &Closure, after: &Closure) -> PackageDiff {
    let (old, new) = (versions(before), versions(after));
    let mut d = PackageDiff::default();
    for (name, vs) in &old {
        match new.get(name) {
            None => d.removed.push(Package {
                name: name.clone(),
                versions: sorted(vs),
            }),
            Some(nvs) if nvs != vs => {
                let (before, after) = (sorted(vs), sorted(nvs));
                let direction = match compare_versions(
                    after.last().map_or("", String::as_str),
                    before.last().map_or("", String::as_str),
                ) {
                    Ordering::Greater => Direction::Upgrade,
                    Ordering::Less => Direction::Downgrade,
                    Ordering::Equal => Direction::Changed,
                };
                d.changed.push(VersionChange {
                    name: name.clone(),
                    before,
                    after,
                    direction,
                });
            }
            Some(_) => {}
        }
    }
    for (name, vs) in &new {
        if !old.contains_key(name) {
            d.added.push(Package {
                name: name.clone(),
                versions: sorted(vs),
            });
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-";

    #[test]
    fn names_and_versions_as_diff_closures_reads_them() {
        let nv = |p: &str| name_version(&format!("{H}{p}"));
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(nv("hello-2.12.1"), pair("hello", "2.12.1"));
        assert_eq!(nv("openssl-3.0.13-bin"), pair("openssl", "3.0.13"));
        assert_eq!(nv("glibc-2.39-52-lib64"), pair("glibc", "2.39-52"));
        assert_eq!(
            nv("python3.11-requests-2.31.0"),
            pair("python3.11-requests", "2.31.0")
        );
        assert_eq!(nv("unit-nginx.service"), pair("unit-nginx.service", ""));
        assert_eq!(nv("etc"), pair("etc", ""));
        // An output-like suffix is taken for one, as Nix does.
        assert_eq!(nv("nixos-system-web-stub"), pair("nixos-system-web", ""));
        assert_eq!(
            nv("nixos-system-web-24.05.20240101.abcdef"),
            pair("nixos-system-web", "24.05.20240101.abcdef")
        );
        assert_eq!(nv("linux-6.6.1-modules"), pair("linux", "6.6.1"));
        assert_eq!(name_version("no-hash-1.0"), pair("no-hash", "1.0"));
    }

    #[test]
    fn versions_compare_as_nix_compares_them() {
        use Ordering::*;
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("2.3a", "2.3.1", Less),
            ("2.3", "2.3a", Less),
            ("1.0pre1", "1.0", Less),
            ("1.0", "1.0.1", Less),
            ("2.0", "1.99999999999999999999999", Greater),
            ("0010", "9", Greater),
            ("", "1", Less),
            ("a", "b", Less),
            ("1-2", "1.2", Equal),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    fn closure(items: &[(&str, u64)]) -> Closure {
        Closure {
            paths: items.iter().map(|(p, s)| (format!("{H}{p}"), *s)).collect(),
        }
    }

    #[test]
    fn diff_lists_added_removed_and_version_changes() {
        let before = closure(&[
            ("nixos-system-m-stub", 10),
            ("tool-1.0", 100),
            ("gone-2.0", 50),
            ("same-1.0", 5),
            ("down-2.0", 7),
            ("multi-1.0", 1),
            ("multi-2.0", 1),
        ]);
        let after = closure(&[
            ("nixos-system-m-stub", 11),
            ("tool-1.1", 120),
            ("fresh-3.0", 30),
            ("same-1.0", 5),
            ("down-1.5", 7),
            ("multi-2.0", 1),
        ]);
        assert_eq!(before.size(), 174);
        let d = diff(&before, &after);
        let names = |v: &[Package]| {
            v.iter()
                .map(|p| (p.name.clone(), p.versions.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&d.added),
            vec![("fresh".to_owned(), vec!["3.0".to_owned()])]
        );
        assert_eq!(
            names(&d.removed),
            vec![("gone".to_owned(), vec!["2.0".to_owned()])]
        );
        let changed: Vec<(&str, Vec<&str>, Vec<&str>, Direction)> = d
            .changed
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.before.iter().map(String::as_str).collect(),
                    c.after.iter().map(String::as_str).collect(),
                    c.direction,
                )
            })
            .collect();
        assert_eq!(
            changed,
            vec![
                ("down", vec!["2.0"], vec!["1.5"], Direction::Downgrade),
                ("multi", vec!["1.0", "2.0"], vec!["2.0"], Direction::Changed),
                ("tool", vec!["1.0"], vec!["1.1"], Direction::Upgrade),
            ]
        );
    }

    #[test]
    fn a_listing_without_its_root_is_an_error() {
        let root = format!("{H}sys");
        let line = format!("12 {root}");
        let c = Closure::parse(&root, [line.as_str(), &format!("3 {H}dep")]).unwrap();
        assert_eq!(c.size(), 15);
        assert!(Closure::parse(&root, [format!("3 {H}dep").as_str()]).is_err());
        assert!(Closure::parse(&root, ["garbage"]).is_err());
    }
}

//! Colmena's workflow without `create`: a command run without `-d` finds
//! the hive as Colmena does (`-f`, else `flake.nix` or `hive.nix` in the
//! current directory or a parent) and acts on the deployment bound to it:
//! the one whose recorded network is that hive, created on first use. See
//! docs/decisions.md ("Deployments bound to a hive").

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::Global;
use crate::network::Source;
use crate::state::{self, Attrs, Deployment, StoreBox};

/// Where the hive is, as Colmena looks for it.
pub fn find(config: Option<&Path>) -> Result<Source> {
    if let Some(path) = config {
        return given(path);
    }
    let start = std::env::current_dir()?;
    let mut dir = Some(start.as_path());
    while let Some(d) = dir {
        // In each directory a flake comes first, as in Colmena.
        if d.join("flake.nix").is_file() {
            return Ok(flake(d));
        }
        if d.join("hive.nix").is_file() {
            return Ok(Source::Files(vec![d.join("hive.nix")]));
        }
        dir = d.parent();
    }
    bail!(
        "no hive.nix or flake.nix in {} or any parent directory: give the hive with -f FILE, or a deployment with -d NAME (‘nixops list’ shows them)",
        start.display()
    )
}

/// `-f`: a hive file, a flake.nix (its flake), a directory with a
/// flake.nix, or a flake URL.
fn given(path: &Path) -> Result<Source> {
    let text = path.to_string_lossy();
    if !path.exists() && text.contains(':') {
        return Ok(Source::Flake {
            flake: text.into_owned(),
            attr: None,
        });
    }
    let abs = crate::network::absolute(path)?;
    if !abs.exists() {
        bail!("-f {}: {} does not exist", path.display(), abs.display());
    }
    if abs.is_dir() {
        if abs.join("flake.nix").is_file() {
            return Ok(flake(&abs));
        }
        bail!(
            "-f {}: {} is a directory without flake.nix (a hive file is named itself: -f {}/hive.nix)",
            path.display(),
            abs.display(),
            abs.display()
        );
    }
    if abs.file_name().is_some_and(|n| n == "flake.nix") {
        return Ok(flake(abs.parent().expect("a file has a directory")));
    }
    Ok(Source::Files(vec![abs]))
}

fn flake(dir: &Path) -> Source {
    Source::Flake {
        flake: dir.to_string_lossy().into_owned(),
        attr: None,
    }
}

/// Whether `d` records the network `hive` (for a flake, the same flake,
/// whatever output was found in it).
fn records(d: &Deployment, hive: &Source) -> bool {
    match (Source::of(d), hive) {
        (Ok(Source::Flake { flake: a, .. }), Source::Flake { flake: b, .. }) => a == *b,
        (Ok(recorded), _) => recorded == *hive,
        (Err(_), _) => false,
    }
}

/// The deployments bound to `hive`.
fn bound<'a>(all: &'a [Deployment], hive: &Source) -> Vec<&'a Deployment> {
    all.iter().filter(|d| records(d, hive)).collect()
}

/// The one deployment bound to `hive`, if there is one; several are an
/// error that names them.
fn the_bound<'a>(all: &'a [Deployment], hive: &Source) -> Result<Option<&'a Deployment>> {
    match bound(all, hive).as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => bail!(
            "several deployments use the hive {}: {}; say which one with -d NAME",
            hive.describe(),
            many.iter()
                .map(|d| format!("‘{}’", d.label()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A name for a new deployment of the hive: its directory's name (made a
/// valid NixOps name), with a number when that is taken.
fn new_name(all: &[Deployment], hive: &Source) -> String {
    let dir = match hive {
        Source::Files(files) => files.first().and_then(|f| f.parent()).map(Path::to_path_buf),
        Source::Flake { flake, .. } => Some(PathBuf::from(flake)),
    };
    let base: String = dir
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = if state::valid_name(&base) {
        base
    } else {
        format!("hive-{base}")
    };
    let base = if state::valid_name(&base) {
        base
    } else {
        "hive".to_owned()
    };
    let taken = |n: &str| all.iter().any(|d| d.name() == Some(n));
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken(n))
        .expect("some number is free")
}

impl Global {
    /// The uuid of the deployment a Colmena command acts on: `-d`'s, else
    /// the one bound to the hive (created, and said so, on first use).
    pub async fn hive_deployment(&self) -> Result<String> {
        if let Some(sel) = &self.deployment {
            if self.config.is_some() {
                bail!("-f names a hive and -d a deployment: give one of them");
            }
            let store = self.open_store()?;
            return Ok(state::resolve(&store.deployments()?, Some(sel))?.uuid.clone());
        }
        let hive = find(self.config.as_deref())?;
        let store = self.create_store()?;
        let all = store.deployments()?;
        if let Some(d) = the_bound(&all, &hive)? {
            return Ok(d.uuid.clone());
        }
        let located = super::locate(self, hive.clone()).await?;
        create(self, &store, &all, &located).await
    }

    /// For a NixOps command without `-d` where the state has several
    /// deployments: the one bound to the hive or network found as
    /// [`find`] finds it, if exactly one is (never created).
    pub fn bound_deployment(&self, all: &[Deployment]) -> Option<String> {
        let hive = find(self.config.as_deref()).ok()?;
        match bound(all, &hive).as_slice() {
            [one] => Some(one.uuid.clone()),
            _ => None,
        }
    }
}

/// Creates the deployment bound to `hive`; returns its uuid.
async fn create(g: &Global, store: &StoreBox, all: &[Deployment], hive: &Source) -> Result<String> {
    let name = new_name(all, hive);
    let mut attrs = Attrs::new();
    attrs.insert("name".into(), name.clone());
    for (k, v) in hive.attr_changes()? {
        if let Some(v) = v {
            attrs.insert(k, v);
        }
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    store.create_deployment(&uuid, &attrs)?;
    errln!(
        "note: created deployment ‘{name}’ for the hive {} (it keeps this hive's state and history; ‘nixops list’ shows it)",
        hive.describe()
    );
    super::record_network_attrs(g, store, &uuid).await?;
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory_and_stay_unique() {
        let hive = Source::Files(vec![PathBuf::from("/srv/my infra/hive.nix")]);
        assert_eq!(new_name(&[], &hive), "my-infra");
        let flake = Source::Flake {
            flake: "/srv/9lives".into(),
            attr: None,
        };
        assert_eq!(new_name(&[], &flake), "hive-9lives");
        let mut d = Deployment::default();
        d.attrs.insert("name".into(), "my-infra".into());
        assert_eq!(new_name(&[d], &hive), "my-infra-2");
    }

    #[test]
    fn a_flake_is_bound_whatever_output_was_recorded() {
        let mut d = Deployment::default();
        d.attrs.insert("flake".into(), "/srv/infra".into());
        d.attrs.insert("flakeAttr".into(), "colmena".into());
        let hive = Source::Flake {
            flake: "/srv/infra".into(),
            attr: None,
        };
        assert!(records(&d, &hive));
        assert!(!records(&d, &Source::Files(vec!["/srv/infra/hive.nix".into()])));
    }
}

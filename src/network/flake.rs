//! Where a network is (`--network DIR`, as NixOps 2.0 resolves it, or
//! network files), and the Nix CLI calls for flake networks: locking, finding
//! the network's output, and pure evaluation with `nix eval --apply`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use tokio::process::Command;

use crate::nix::NixOpts;
use crate::process::{self, Sink};
use crate::state::{AttrChange, Deployment};

/// Nix ≥ 2.4 needs these for flakes; users need not configure them.
pub const FEATURES: [&str; 2] = ["--extra-experimental-features", "nix-command flakes"];

/// Where a deployment's network is.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// NixOps network files (or one Colmena hive file).
    Files(Vec<PathBuf>),
    /// A flake: its reference (an absolute directory or a flake URL) and the
    /// output holding the network (`nixopsConfigurations.<name>`,
    /// `colmenaHive`, `colmena`); None: the first of
    /// `nixopsConfigurations.default`, `colmenaHive` and `colmena` it has.
    Flake { flake: String, attr: Option<String> },
}

impl Source {
    /// The network a deployment's state records.
    pub fn of(d: &Deployment) -> Result<Source> {
        Ok(match d.attrs.get("flake") {
            Some(flake) => Source::Flake {
                flake: flake.clone(),
                attr: d.attrs.get("flakeAttr").cloned(),
            },
            None => Source::Files(d.nix_exprs()?),
        })
    }

    /// The state attributes that record this network.
    pub fn attr_changes(&self) -> Result<Vec<AttrChange>> {
        Ok(match self {
            Source::Files(files) => vec![
                ("nixExprs".into(), Some(serde_json::to_string(files)?)),
                ("flake".into(), None),
                ("flakeAttr".into(), None),
            ],
            Source::Flake { flake, attr } => vec![
                ("nixExprs".into(), None),
                ("flake".into(), Some(flake.clone())),
                ("flakeAttr".into(), attr.clone()),
            ],
        })
    }

    /// Records this network in `d` (in memory only).
    pub fn apply_to(&self, d: &mut Deployment) -> Result<()> {
        for (k, v) in self.attr_changes()? {
            match v {
                Some(v) => d.attrs.insert(k, v),
                None => d.attrs.remove(&k),
            };
        }
        Ok(())
    }

    /// The directory the network lives in, where it is local: the first
    /// network file's, or the flake's own (None for a flake URL).
    pub fn local_dir(&self) -> Option<PathBuf> {
        match self {
            Source::Files(files) => files.first().and_then(|f| f.parent()).map(Path::to_path_buf),
            Source::Flake { flake, .. } => {
                let dir = PathBuf::from(flake);
                dir.is_dir().then_some(dir)
            }
        }
    }

    /// For messages and `info`.
    pub fn describe(&self) -> String {
        match self {
            Source::Files(files) => files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Source::Flake { flake, attr } => match attr {
                Some(a) => format!("{flake}#{a}"),
                None => flake.clone(),
            },
        }
    }
}

/// Resolves `--network DIR[#NAME]` as NixOps 2.0 does: DIR holds either
/// `nixops.nix` (a network file) or `flake.nix` (a flake whose network is
/// `nixopsConfigurations.default`, or `.NAME`). A flake URL (`github:o/r`,
/// `path:/x`, `git+file:///x`) is taken as it is.
pub fn resolve(arg: &str) -> Result<Source> {
    let (dir, name) = match arg.split_once('#') {
        Some((d, n)) => (d, Some(n)),
        None => (arg, None),
    };
    if let Some(n) = name
        && (n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == '"'))
    {
        bail!("--network {arg}: ‘{n}’ is no name of a nixopsConfigurations output");
    }
    let attr = name.map(|n| format!("nixopsConfigurations.{n}"));
    let path = Path::new(dir);
    if !path.exists() && dir.contains(':') {
        return Ok(Source::Flake {
            flake: dir.to_owned(),
            attr,
        });
    }
    let abs = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    if !abs.exists() {
        bail!("--network {}: {} does not exist", arg, abs.display());
    }
    if !abs.is_dir() {
        bail!(
            "--network {}: {} is no directory (network files are given without --network: nixops create FILE...)",
            arg,
            abs.display()
        );
    }
    let classic = abs.join("nixops.nix");
    let flake = abs.join("flake.nix");
    match (classic.exists(), flake.exists()) {
        (true, true) => bail!(
            "--network {}: {} has both flake.nix and nixops.nix; keep one",
            arg,
            abs.display()
        ),
        (true, false) if name.is_some() => bail!(
            "--network {arg}: #NAME selects one of a flake's nixopsConfigurations, but {} has nixops.nix, not flake.nix",
            abs.display()
        ),
        (true, false) => Ok(Source::Files(vec![classic])),
        (false, true) => Ok(Source::Flake {
            flake: abs.to_string_lossy().into_owned(),
            attr,
        }),
        (false, false) => {
            let hint = if abs.join("hive.nix").exists() {
                format!(
                    " (a Colmena hive is given as a file: nixops create {}/hive.nix)",
                    abs.display()
                )
            } else {
                String::new()
            };
            bail!(
                "--network {arg}: neither flake.nix nor nixops.nix exists in {}{hint}",
                abs.display()
            )
        }
    }
}

/// Locks the flake (writing its flake.lock when missing or incomplete, as
/// `nix` does, unless inputs are overridden) and returns its locked URL.
pub async fn lock(flake: &str, opts: &NixOpts) -> Result<String> {
    let mut cmd = process::command("nix");
    cmd.args(FEATURES)
        .args(["flake", "metadata", "--json", "--show-trace"])
        .args(opts.flake_args())
        .arg(flake);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        let input = out.stderr.iter().find_map(|l| {
            let rest = l.split("while updating the flake input '").nth(1)?;
            Some(rest.split('\'').next()?.to_owned())
        });
        let first = out
            .stderr
            .iter()
            .find(|l| l.starts_with("error:"))
            .cloned()
            .unwrap_or_else(|| out.last_error());
        match input {
            Some(i) => bail!(
                "cannot fetch input ‘{i}’ of flake ‘{flake}’ (Nix must find it in the store or fetch it): {first}"
            ),
            None => bail!("cannot lock flake ‘{flake}’: {}", out.stderr.join("\n")),
        }
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        url: String,
    }
    let m: Metadata = serde_json::from_str(&out.stdout)
        .map_err(|e| anyhow::anyhow!("cannot parse `nix flake metadata` of flake ‘{flake}’: {e}"))?;
    Ok(m.url)
}

/// Whether Nix's error says the flake has no such attribute.
fn no_such_attribute(stderr: &[String]) -> bool {
    stderr.iter().any(|l| l.contains("does not provide attribute"))
}

/// `nix eval URL#ATTR --apply F`: pure unless `--impure`.
pub fn eval_command(locked: &str, attr: &str, apply: &str, opts: &NixOpts) -> Command {
    let mut cmd = process::command("nix");
    cmd.args(FEATURES)
        .arg("eval")
        .arg(format!("{locked}#{attr}"))
        .arg("--apply")
        .arg(apply)
        .args(opts.flake_args());
    cmd
}

/// The output holding the network: the one named, else the first of
/// `nixopsConfigurations.default`, `colmenaHive` and `colmena` the flake has.
pub async fn find_output(flake: &str, locked: &str, attr: Option<&str>, opts: &NixOpts) -> Result<String> {
    if let Some(a) = attr {
        return Ok(a.to_owned());
    }
    let mut cmd = eval_command(locked, "nixopsConfigurations", "builtins.attrNames", opts);
    cmd.args(["--json", "--read-only"]);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if out.success() {
        let names: Vec<String> = serde_json::from_str(&out.stdout)?;
        if names.iter().any(|n| n == "default") {
            return Ok("nixopsConfigurations.default".into());
        }
        bail!(
            "flake ‘{flake}’ has no nixopsConfigurations.default (it has: {}); name one with --network DIR#NAME",
            names.join(", ")
        );
    }
    if !no_such_attribute(&out.stderr) {
        bail!(
            "evaluation of flake ‘{flake}’ (nixopsConfigurations) failed:\n{}",
            out.stderr.join("\n")
        );
    }
    for colmena in ["colmenaHive", "colmena"] {
        let mut cmd = eval_command(locked, colmena, "x: true", opts);
        cmd.args(["--json", "--read-only"]);
        let out = process::run(&mut cmd, None, Sink::quiet()).await?;
        if out.success() {
            return Ok(colmena.into());
        }
        if !no_such_attribute(&out.stderr) {
            bail!(
                "evaluation of flake ‘{flake}’ ({colmena}) failed:\n{}",
                out.stderr.join("\n")
            );
        }
    }
    bail!(
        "flake ‘{flake}’ has no network: no nixopsConfigurations.default (NixOps), colmenaHive or colmena (Colmena) output"
    )
}

/// What kind of network a flake output holds, for eval-machine-info.nix.
pub fn kind(attr: &str) -> &'static str {
    match attr {
        "colmenaHive" => "colmenaHive",
        "colmena" => "colmena",
        _ => "nixops",
    }
}

/// Rewrites Nix's "does not provide attribute" into a message naming the
/// flake and the output.
pub fn eval_error(flake: &str, attr: &str, stderr: &[String]) -> anyhow::Error {
    if no_such_attribute(stderr) {
        anyhow::anyhow!("flake ‘{flake}’ has no output {attr}")
    } else {
        anyhow::anyhow!(
            "evaluation of the network in flake ‘{flake}’ ({attr}) failed:\n{}",
            stderr.join("\n")
        )
    }
}

/// The Nix system name of the deploying machine, which pure evaluation
/// cannot ask Nix for (`builtins.currentSystem` is impure).
pub fn system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

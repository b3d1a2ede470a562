//! The Nix CLI: options passed through to it, building, copying closures and
//! keeping GC roots.

pub mod closure;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::process::{self, Output, Sink};
use crate::ssh::Target;

/// Options passed through to every Nix invocation (NixOps' global options).
#[derive(Debug, Clone, Default)]
pub struct NixOpts {
    /// `-I` entries: the deployment's stored nixPath, then the command line's.
    pub include: Vec<String>,
    pub options: Vec<(String, String)>,
    pub show_trace: bool,
    pub max_jobs: Option<String>,
    pub cores: Option<u32>,
    pub keep_going: bool,
    pub keep_failed: bool,
    pub fallback: bool,
    pub no_build_output: bool,
    pub repair: bool,
    /// Flake networks: `--override-input NAME URL`.
    pub override_inputs: Vec<(String, String)>,
    /// Flake networks: `--impure`.
    pub impure: bool,
    /// Nix's remote builders for the deploying side's build (`--builders`,
    /// or `@FILE` for the network's machines file).
    pub builders: Option<String>,
    /// How networks are evaluated.
    pub eval: EvalOpts,
    /// NixOps' `--read-only-mode`: evaluations write nothing to the store
    /// (no derivation is instantiated), so nothing can be built.
    pub read_only: bool,
}

/// How machines are evaluated (src/network/pool.rs) and cached.
#[derive(Debug, Clone, Default)]
pub struct EvalOpts {
    /// Worker processes at once (0: one per core).
    pub jobs: usize,
    /// Memory a worker may grow to before it is started anew, in MiB.
    pub max_memory_mb: Option<u64>,
    /// Where the deployment's evaluation cache is; None: no cache.
    pub cache_dir: Option<PathBuf>,
    /// Where the state is (a network may say where it should be).
    pub state: crate::state::InUse,
}

impl EvalOpts {
    pub fn jobs(&self) -> usize {
        match self.jobs {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl NixOpts {
    /// Refuses `what`, which must build, in read-only mode.
    pub fn check_writable(&self, what: &str) -> anyhow::Result<()> {
        if self.read_only {
            anyhow::bail!(
                "{what} builds the machines' systems, which needs their derivations written to the Nix store; --read-only-mode evaluates without writing anything (drop it, or use a command that only evaluates: info, show-option, deploy --create-only)"
            );
        }
        Ok(())
    }

    /// Arguments for evaluating commands (nix-instantiate).
    pub fn eval_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for i in &self.include {
            a.push("-I".into());
            a.push(i.clone());
        }
        a.extend(self.common_args());
        a
    }

    /// Arguments every Nix command understands.
    pub fn common_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (n, v) in &self.options {
            a.extend(["--option".into(), n.clone(), v.clone()]);
        }
        if self.show_trace {
            a.push("--show-trace".into());
        }
        a
    }

    /// Arguments for the flake commands (`nix eval`, `nix flake metadata`).
    pub fn flake_args(&self) -> Vec<String> {
        let mut a = self.common_args();
        for (name, url) in &self.override_inputs {
            a.extend(["--override-input".into(), name.clone(), url.clone()]);
        }
        if self.impure {
            a.push("--impure".into());
        }
        a
    }

    /// Arguments for the deploying side's build: every option, and the
    /// remote builders.
    pub fn build_args(&self) -> Vec<String> {
        let mut a = self.common_args();
        if let Some(b) = &self.builders {
            a.extend(["--option".into(), "builders".into(), b.clone()]);
        }
        if let Some(j) = &self.max_jobs {
            a.extend(["--max-jobs".into(), j.clone()]);
        }
        if let Some(c) = self.cores {
            a.extend(["--cores".into(), c.to_string()]);
        }
        a.extend(self.remote_build_args());
        a
    }

    /// Arguments for a build on another machine (a target, a build host)
    /// by its own Nix: what to do with failures and substitutes (`-K`,
    /// `--fallback`, `--repair`, `--no-build-output`), but not `-j`,
    /// `--cores`, the `--option`s and builders, which configure the
    /// deploying side's Nix: the machine's own configuration knows its CPUs.
    pub fn remote_build_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.keep_going {
            a.push("--keep-going".into());
        }
        if self.keep_failed {
            a.push("--keep-failed".into());
        }
        if self.fallback {
            a.push("--fallback".into());
        }
        if self.no_build_output {
            a.push("--no-build-output".into());
        }
        if self.repair {
            a.push("--repair".into());
        }
        a
    }
}

/// What goes wrong with Nix's builds and copies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    BuildFailed(#[from] BuildFailed),
    #[error("copying closure failed: {0}")]
    CopyFailed(String),
    /// Running Nix did not even start, or it answered nonsense.
    #[error(transparent)]
    Run(#[from] anyhow::Error),
}

/// Makes `link` an indirect GC root of the existing store path `path`.
pub async fn add_root(path: &str, link: &Path) -> anyhow::Result<()> {
    let mut cmd = process::command("nix-store");
    cmd.arg("--realise")
        .arg(path)
        .arg("--add-root")
        .arg(link)
        .arg("--indirect");
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        anyhow::bail!(
            "nix-store --add-root {} failed: {}",
            link.display(),
            out.last_error()
        );
    }
    Ok(())
}

/// Realises the given derivations in one Nix build and returns their output
/// paths, in order. A temporary indirect GC root protects them until the
/// caller has recorded permanent ones.
pub async fn realise(
    drvs: &[String],
    opts: &NixOpts,
    tmp_roots: &Path,
    sink: Sink<'_>,
) -> Result<Vec<String>, Error> {
    let mut cmd = process::command("nix-store");
    cmd.arg("--realise")
        .args(drvs)
        .arg("--add-root")
        .arg(tmp_roots.join("result"))
        .arg("--indirect")
        .args(opts.build_args());
    let out = process::run(&mut cmd, None, sink).await?;
    if !out.success() {
        return Err(BuildFailed(out).into());
    }
    let paths: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            std::fs::read_link(l)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| l.to_owned())
        })
        .collect();
    if paths.len() != drvs.len() {
        return Err(anyhow::anyhow!(
            "nix-store --realise printed {} paths for {} derivations",
            paths.len(),
            drvs.len()
        )
        .into());
    }
    Ok(paths)
}

/// A build that failed, with what Nix said.
#[derive(Debug, thiserror::Error)]
#[error("build failed: {}", .0.last_error())]
pub struct BuildFailed(pub Output);

impl BuildFailed {
    /// Nix's error messages: each a line "error: ..." and the lines after
    /// it that are indented to its text (e.g. the builder's last log lines).
    pub fn messages(&self) -> Vec<Vec<String>> {
        let mut all: Vec<Vec<String>> = Vec::new();
        let mut inside = false;
        for l in &self.0.stderr {
            if l.starts_with("error:") {
                all.push(vec![l.clone()]);
                inside = true;
            } else if inside && l.starts_with("       ") && !l.trim().is_empty() {
                all.last_mut().expect("a message").push(l.clone());
            } else {
                inside = false;
            }
        }
        all
    }
}

/// The derivation paths a message names.
pub fn derivations_named(lines: &[String]) -> BTreeSet<String> {
    static DRV: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"/[^\s'"`]+\.drv\b"#).expect("valid regex"));
    lines
        .iter()
        .flat_map(|l| DRV.find_iter(l).map(|m| m.as_str().to_owned()))
        .collect()
}

/// Every store path `drv` needs to be built, itself included.
pub async fn requisites(drv: &str) -> Result<BTreeSet<String>> {
    let mut cmd = process::command("nix-store");
    cmd.args(["--query", "--requisites", drv]);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!(
            "nix-store --query --requisites {drv} failed: {}",
            out.last_error()
        );
    }
    Ok(out.stdout.lines().map(str::to_owned).collect())
}

/// The name of Nix's per-user directories (GC roots, profiles) for us.
pub fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let uid = rustix::process::getuid();
            if uid.is_root() {
                "root".into()
            } else {
                uid.as_raw().to_string()
            }
        })
}

/// The directory of a deployment's permanent GC roots, one symlink per
/// machine pointing at the toplevel it was last deployed with.
pub fn gc_roots_dir(uuid: &str) -> PathBuf {
    PathBuf::from("/nix/var/nix/gcroots/per-user")
        .join(user_name())
        .join("nixops")
        .join(uuid)
}

/// Points the machine's GC root at `toplevel` (atomically).
pub fn set_gc_root(uuid: &str, machine: &str, toplevel: &str) -> Result<()> {
    let dir = gc_roots_dir(uuid);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create GC root directory {}", dir.display()))?;
    let link = dir.join(machine);
    let tmp = dir.join(format!(".{machine}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(toplevel, &tmp)?;
    std::fs::rename(&tmp, &link).with_context(|| format!("cannot write GC root {}", link.display()))?;
    Ok(())
}

pub fn remove_gc_roots(uuid: &str, machine: Option<&str>) {
    let dir = gc_roots_dir(uuid);
    match machine {
        Some(m) => {
            let _ = std::fs::remove_file(dir.join(m));
        }
        None => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Copies the closure of `paths` to the machine through its master
/// connection. As root this is `nix-copy-closure`; for other users the
/// receiving `nix-store` runs under the privilege escalation command (`nix
/// copy` with the store's `remote-program`), so no trusted-user setup is
/// needed. Derivations (`.drv` files) are copied as themselves with their
/// closure of derivations and sources, not built: the machine builds them.
pub async fn copy_closure(
    target: &Target,
    paths: &[String],
    use_substitutes: bool,
    sink: Sink<'_>,
) -> Result<(), Error> {
    let mut cmd;
    if target.escalation.is_empty() {
        cmd = process::command("nix-copy-closure");
        cmd.arg("--to").arg(target.destination());
        if use_substitutes {
            cmd.arg("--use-substitutes");
        }
    } else {
        let mut program: Vec<String> = target.escalation.clone();
        program.push("nix-store".into());
        let url = format!(
            "ssh://{}?remote-program={}",
            target.destination(),
            percent_encode(&program.join(" "))
        );
        cmd = process::command("nix");
        cmd.args([
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--to",
            &url,
        ]);
        if use_substitutes {
            cmd.arg("--substitute-on-destination");
        }
        // `nix copy` of a .drv means its outputs (built first) otherwise.
        if paths.iter().any(|p| p.ends_with(".drv")) {
            cmd.arg("--derivation");
        }
    }
    cmd.args(paths).env("NIX_SSHOPTS", target.nix_sshopts()?);
    let out = process::run(&mut cmd, None, sink).await?;
    if !out.success() {
        return Err(Error::CopyFailed(out.last_error()));
    }
    Ok(())
}

/// Percent-encodes everything but unreserved URL characters (and `/`).
fn percent_encode(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    utf8_percent_encode(s, KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_builders_are_the_deploying_sides() {
        let opts = NixOpts {
            max_jobs: Some("0".into()),
            cores: Some(2),
            keep_failed: true,
            builders: Some("@/etc/nix/machines".into()),
            options: vec![("sandbox".into(), "false".into())],
            ..Default::default()
        };
        let here = opts.build_args().join(" ");
        for a in [
            "--option builders @/etc/nix/machines",
            "--max-jobs 0",
            "--cores 2",
            "--keep-failed",
            "--option sandbox false",
        ] {
            assert!(here.contains(a), "{here}");
        }
        assert_eq!(opts.remote_build_args(), ["--keep-failed"]);
    }

    #[test]
    fn build_messages_and_the_derivations_they_name() {
        let out = Output {
            code: Some(1),
            stdout: String::new(),
            stderr: [
                "building '/nix/store/x-a.drv'...",
                "a breaks",
                "error: builder for '/nix/store/x-a.drv' failed with exit code 3;",
                "       last 1 log lines:",
                "       > a breaks",
                "       For full logs, run 'nix log /nix/store/x-a.drv'.",
                "error: 1 dependencies of derivation '/nix/store/y-system.drv' failed to build",
                "  not Nix's",
            ]
            .map(String::from)
            .to_vec(),
        };
        let messages = BuildFailed(out).messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].len(), 4);
        assert_eq!(messages[1].len(), 1);
        let named: Vec<String> = derivations_named(&messages[0]).into_iter().collect();
        assert_eq!(named, ["/nix/store/x-a.drv"]);
    }
}

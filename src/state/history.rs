//! The deploy history: one entry per deploy, rollback, reboot or destroy,
//! kept by every backend in its `History` table. It holds who, when, what
//! the network was made from and, per machine, the system before and after;
//! never a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{Deployment, StoreBox};

/// What was done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    #[default]
    Deploy,
    Rollback {
        generation: u32,
    },
    Reboot,
    Destroy,
}

impl Action {
    /// The text kept in the `action` column.
    pub fn text(&self) -> String {
        match self {
            Action::Deploy => "deploy".into(),
            Action::Rollback { generation } => format!("rollback {generation}"),
            Action::Reboot => "reboot".into(),
            Action::Destroy => "destroy".into(),
        }
    }

    pub fn parse(s: &str) -> Result<Action> {
        Ok(match s.split_once(' ') {
            None if s == "deploy" => Action::Deploy,
            None if s == "reboot" => Action::Reboot,
            None if s == "destroy" => Action::Destroy,
            Some(("rollback", n)) => Action::Rollback {
                generation: n.parse().with_context(|| format!("bad history action ‘{s}’"))?,
            },
            _ => bail!("unknown history action ‘{s}’"),
        })
    }
}

/// What the network was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// The network files and the SHA-256 of each (None: unreadable).
    Files { files: Vec<FileHash> },
    /// The files are in a git work tree: its commit, whether the work tree
    /// differed from it, and the files' hashes.
    Git {
        commit: String,
        dirty: bool,
        files: Vec<FileHash>,
    },
    /// A flake, by its locked URL (credentials removed).
    Flake { url: String },
}

/// Everything a deploy's evaluation observed (every file it read, wherever
/// it is, every environment variable it looked up; the evaluation cache's
/// inputs), in one digest: two deploys of the same digest evaluated the
/// same inputs, so a change to any module, read file or variable tells
/// them apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub sha256: String,
    /// Machines whose evaluation also observed what no digest can pin (a
    /// fetch without a hash, the clock).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpinned: Vec<String>,
}

impl Inputs {
    /// From each machine's inputs digest ("~" first: unpinned); None when
    /// there is none.
    pub fn of(machines: &BTreeMap<String, String>) -> Option<Inputs> {
        if machines.is_empty() {
            return None;
        }
        let body = serde_json::to_string(machines).expect("strings serialize");
        Some(Inputs {
            sha256: hex(&sha2::Sha256::digest(body.as_bytes())),
            unpinned: machines
                .iter()
                .filter(|(_, d)| d.starts_with('~'))
                .map(|(m, _)| m.clone())
                .collect(),
        })
    }

    pub fn short(&self) -> String {
        format!(
            "inputs {}{}",
            &self.sha256[..12.min(self.sha256.len())],
            if self.unpinned.is_empty() { "" } else { "+unpinned" }
        )
    }
}

/// What a run learned besides its machines' results, for its entry.
#[derive(Debug, Default)]
pub struct Seen {
    /// What its evaluation observed.
    pub inputs: Option<Inputs>,
    /// The systems machines were found running before the run changed them
    /// (`deploy --check`): their "before", rather than what state recorded.
    pub running: BTreeMap<String, String>,
}

/// The `source` column: the source and, when known, the inputs.
#[derive(Serialize, Deserialize)]
struct SourceColumn {
    #[serde(flatten)]
    source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<Inputs>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: PathBuf,
    pub sha256: Option<String>,
}

impl Source {
    /// A flake's locked URL, without any password or token in it.
    pub fn flake(locked_url: &str) -> Source {
        Source::Flake {
            url: without_credentials(locked_url),
        }
    }

    /// One short line for tables.
    pub fn short(&self) -> String {
        let files = |f: &[FileHash]| {
            f.iter()
                .map(|h| {
                    let name = h.path.file_name().map_or_else(
                        || h.path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    match &h.sha256 {
                        Some(s) => format!("{name}@{}", &s[..8.min(s.len())]),
                        None => format!("{name}@?"),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Source::Files { files: f } => files(f),
            Source::Git { commit, dirty, .. } => {
                format!(
                    "git {}{}",
                    &commit[..12.min(commit.len())],
                    if *dirty { "+dirty" } else { "" }
                )
            }
            Source::Flake { url } => url.clone(),
        }
    }
}

/// What happened to one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineChange {
    pub machine: String,
    /// The system state recorded before and after.
    pub before: Option<String>,
    pub after: Option<String>,
    /// "deployed", "unchanged", "failed (build)", "rolled back", …
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(flatten)]
    pub action: Action,
    /// user@host
    pub by: String,
    /// Unix seconds.
    pub started: u64,
    pub finished: u64,
    pub source: Source,
    /// What the evaluation observed, when it was recorded (a deploy with
    /// the evaluation cache on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    /// "success" or "failed".
    pub result: String,
    pub machines: Vec<MachineChange>,
}

impl HistoryEntry {
    /// A new entry by this user on this host, finished now.
    pub fn new(
        action: Action,
        started: std::time::SystemTime,
        source: Source,
        inputs: Option<Inputs>,
        machines: Vec<MachineChange>,
        ok: bool,
    ) -> Self {
        HistoryEntry {
            action,
            by: who(),
            started: unix(started),
            finished: unix(std::time::SystemTime::now()),
            source,
            inputs,
            result: if ok { "success" } else { "failed" }.into(),
            machines,
        }
    }

    pub fn action_text(&self) -> String {
        self.action.text()
    }

    /// What the `source` column holds.
    pub fn source_column(&self) -> Result<String> {
        Ok(serde_json::to_string(&SourceColumn {
            source: self.source.clone(),
            inputs: self.inputs.clone(),
        })?)
    }

    /// One short line for tables: the source and the inputs.
    pub fn source_short(&self) -> String {
        match &self.inputs {
            Some(i) => format!("{} {}", self.source.short(), i.short()),
            None => self.source.short(),
        }
    }

    pub fn from_columns(
        action: &str,
        by: String,
        started: u64,
        finished: u64,
        source: &str,
        result: String,
        machines: &str,
    ) -> Result<Self> {
        let column: SourceColumn = serde_json::from_str(source).context("bad source in the history")?;
        Ok(HistoryEntry {
            action: Action::parse(action)?,
            by,
            started,
            finished,
            source: column.source,
            inputs: column.inputs,
            result,
            machines: serde_json::from_str(machines).context("bad machines in the history")?,
        })
    }
}

/// Appends what a command did to the deployment's history: per machine
/// (name, result), its system as state recorded it before (`before`) and
/// as it records it now, unless `seen` found it running another. A
/// failure to write it is only a warning: the machines are as they are
/// either way.
pub fn record(
    store: &StoreBox,
    before: &Deployment,
    action: Action,
    started: std::time::SystemTime,
    results: &[(String, String)],
    seen: Seen,
    ok: bool,
) {
    let after = store.load(&before.uuid).ok();
    let toplevel = |d: Option<&Deployment>, m: &str| {
        d.and_then(|d| d.resources.get(m))
            .and_then(|r| r.toplevel())
            .map(str::to_owned)
    };
    let machines = results
        .iter()
        .map(|(m, result)| MachineChange {
            machine: m.clone(),
            before: seen.running.get(m).cloned().or_else(|| toplevel(Some(before), m)),
            after: toplevel(after.as_ref(), m),
            result: result.clone(),
        })
        .collect();
    // Read after the run: a deploy records the flake's locked URL.
    let source = source(after.as_ref().unwrap_or(before));
    let entry = HistoryEntry::new(action, started, source, seen.inputs, machines, ok);
    if let Err(e) = store.add_history(&before.uuid, &entry) {
        errln!(
            "warning: this {} is not recorded in the history: {e:#}",
            entry.action.text()
        );
    }
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_utc(secs: u64) -> String {
    jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| secs.to_string())
}

/// user@host of this process.
pub fn who() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; the
    // name is copied out at once.
    let user = unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    }
    .or_else(|| std::env::var("USER").ok())
    .unwrap_or_else(|| "?".into());
    format!("{user}@{}", hostname())
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it when the name fits.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What deployment `d`'s network is made from: for a flake, the locked URL
/// its last evaluation recorded (`flakeLockedUrl`; NixOps 2.0: `curFlakeUri`),
/// else the flake as named (`flake`; NixOps 2.0: `flakeUri`); otherwise its
/// files' hashes, and the git commit when they are in a git work tree.
pub fn source(d: &Deployment) -> Source {
    let flake = ["flakeLockedUrl", "curFlakeUri", "flake", "flakeUri"]
        .iter()
        .find_map(|a| d.attrs.get(*a));
    if let Some(url) = flake {
        return Source::flake(url);
    }
    let paths = d.nix_exprs().unwrap_or_default();
    let files: Vec<FileHash> = paths
        .iter()
        .map(|p| FileHash {
            path: p.clone(),
            sha256: std::fs::read(p).ok().map(|b| hex(&sha2::Sha256::digest(&b))),
        })
        .collect();
    match paths.first().and_then(|p| git_commit(p)) {
        Some((commit, dirty)) => Source::Git { commit, dirty, files },
        None => Source::Files { files },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The commit of the git work tree holding `file`, and whether the work
/// tree differs from it; None outside a work tree or without git.
fn git_commit(file: &Path) -> Option<(String, bool)> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let commit = git(&["rev-parse", "--verify", "-q", "HEAD"])?.trim().to_owned();
    let status = git(&["status", "--porcelain"])?;
    Some((commit, !status.trim().is_empty()))
}

/// A URL without credentials: the user part goes (it may be a token, as in
/// `https://TOKEN@host/...`), except the user name of an ssh URL, without
/// any password.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) if scheme.ends_with("ssh") => {
            let user = user.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{tail}")
        }
        Some((_, host)) => format!("{scheme}://{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed() {
        assert_eq!(
            without_credentials("git+https://me:s3cret@example.org/a.git?rev=1"),
            "git+https://example.org/a.git?rev=1"
        );
        assert_eq!(
            without_credentials("git+ssh://git:pw@example.org/a.git"),
            "git+ssh://git@example.org/a.git"
        );
        assert_eq!(without_credentials("github:o/r/abc"), "github:o/r/abc");
        assert_eq!(
            without_credentials("https://example.org/x@y"),
            "https://example.org/x@y"
        );
    }

    #[test]
    fn a_flake_is_recorded_by_its_locked_url() {
        let mut d = Deployment {
            uuid: "u".into(),
            attrs: Default::default(),
            resources: Default::default(),
        };
        d.attrs.insert("flake".into(), "/src/net".into());
        assert_eq!(source(&d), Source::flake("/src/net"));
        d.attrs.insert(
            "flakeLockedUrl".into(),
            "git+https://tok3n@example.org/net?rev=abc".into(),
        );
        assert_eq!(
            source(&d),
            Source::Flake {
                url: "git+https://example.org/net?rev=abc".into()
            }
        );
    }

    #[test]
    fn inputs_are_kept_beside_the_source() {
        let mut machines = BTreeMap::from([("a".to_owned(), "11".to_owned())]);
        let pinned = Inputs::of(&machines).unwrap();
        machines.insert("b".into(), "~22".into());
        let both = Inputs::of(&machines).unwrap();
        assert_ne!(pinned.sha256, both.sha256);
        assert_eq!(both.unpinned, ["b"]);
        assert!(both.short().ends_with("+unpinned"));
        assert_eq!(Inputs::of(&BTreeMap::new()), None);
        let source = Source::Files { files: vec![] };
        let e = HistoryEntry::new(
            Action::Deploy,
            std::time::SystemTime::now(),
            source,
            Some(both),
            vec![],
            true,
        );
        let col = e.source_column().unwrap();
        let back =
            HistoryEntry::from_columns("deploy", e.by.clone(), 0, 0, &col, "success".into(), "[]").unwrap();
        assert_eq!(back.inputs, e.inputs);
        assert_eq!(back.source, e.source);
        // What older versions wrote.
        let old = HistoryEntry::from_columns(
            "deploy",
            "x".into(),
            0,
            0,
            r#"{"kind":"files","files":[]}"#,
            "success".into(),
            "[]",
        )
        .unwrap();
        assert_eq!(old.inputs, None);
    }

    #[test]
    fn actions_round_trip() {
        for a in [
            Action::Deploy,
            Action::Rollback { generation: 3 },
            Action::Reboot,
            Action::Destroy,
        ] {
            assert_eq!(Action::parse(&a.text()).unwrap(), a);
        }
        assert!(Action::parse("explode").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
    }
}

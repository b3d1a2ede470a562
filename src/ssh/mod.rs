//! Reaching a machine with the system OpenSSH client.
//!
//! Every machine gets one master connection (ControlMaster) whose socket
//! lives in a private per-user directory; every command, and Nix's copy via
//! NIX_SSHOPTS, goes through it, and it stays open for a while after we exit
//! (ControlPersist) so the next command skips the handshake. The user's
//! ~/.ssh/config, agent and jump hosts apply as with plain `ssh`.
//!
//! Host keys are pinned per machine: the first contact learns the key into a
//! known_hosts file of our own (under a HostKeyAlias naming the deployment and
//! machine), the key is kept in state, and afterwards a different key is
//! refused.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio::process::Command;
use zeroize::Zeroizing;

use crate::process::{self, Output, Sink};

/// ssh's exit code for connection and authentication failures.
pub const SSH_FAILURE: i32 = 255;

/// Where a machine is and how to log in, as the network (or state) says.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    /// The network's extra ssh arguments (`deployment.sshOptions`).
    pub options: Vec<String>,
    /// Prefix for commands that need root when `user` is not root.
    pub escalation: Vec<String>,
}

/// Which machine it is: the name its host key is pinned under, and the key.
#[derive(Debug, Clone)]
pub struct Identity {
    pub deployment_uuid: String,
    /// The deployment (name, or UUID) and machine, for messages.
    pub deployment: String,
    pub machine: String,
    /// The pinned host key ("type base64"), if known.
    pub host_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    pub ssh_options: Vec<String>,
    /// Prefix for commands that need root (empty when user is root).
    pub escalation: Vec<String>,
    /// The pinned host key ("type base64"), if known.
    pub host_key: Option<String>,
    /// Name under which the host key is known, independent of host and port.
    pub alias: String,
    /// The deployment (name, or UUID) and machine, for messages.
    pub deployment: String,
    pub machine: String,
    pub persist_secs: u64,
    /// Not a machine of the network (a build host): no key of ours is
    /// pinned; ssh checks it against the user's known_hosts as plain ssh
    /// would.
    unpinned: bool,
    dir: PathBuf,
    /// The known_hosts file ssh checks the machine against, written from
    /// state on first use into this process's own directory (so it need
    /// not outlive us).
    known_hosts: std::sync::Arc<std::sync::OnceLock<PathBuf>>,
}

impl Target {
    /// Nothing is written or contacted until the target is used.
    pub fn new(endpoint: Endpoint, identity: Identity, persist_secs: u64) -> Result<Self> {
        let escalation = if endpoint.user == "root" {
            Vec::new()
        } else {
            endpoint.escalation
        };
        Ok(Target {
            host: endpoint.host,
            port: endpoint.port,
            user: endpoint.user,
            ssh_options: endpoint.options,
            escalation,
            alias: format!("nixops-{}-{}", identity.deployment_uuid, identity.machine),
            host_key: identity.host_key,
            deployment: identity.deployment,
            machine: identity.machine,
            persist_secs,
            unpinned: false,
            dir: control_dir()?,
            known_hosts: Default::default(),
        })
    }

    /// A host that is no machine of the network (`--build-host`), given as
    /// an ssh destination: `[user@]host` or `ssh://[user@]host[:port]`.
    /// Without a user, ssh's configuration chooses it. Its host key is the
    /// user's business, as with plain ssh: their known_hosts and
    /// `~/.ssh/config` decide (an unknown key is refused, we never ask).
    pub fn unpinned(destination: &str, persist_secs: u64) -> Result<Self> {
        let bad = || {
            anyhow::anyhow!("‘{destination}’ is no ssh destination ([user@]host or ssh://[user@]host[:port])")
        };
        let (rest, url) = match destination.strip_prefix("ssh://") {
            Some(r) => (r.trim_end_matches('/'), true),
            None => (destination, false),
        };
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (u.to_owned(), h),
            None => (String::new(), rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if url => (h.to_owned(), Some(p.parse::<u16>().map_err(|_| bad())?)),
            _ => (hostport.to_owned(), None),
        };
        if host.is_empty()
            || host.starts_with('-')
            || host.contains(char::is_whitespace)
            || user.starts_with('-')
        {
            return Err(bad());
        }
        Ok(Target {
            host,
            port,
            user,
            ssh_options: Vec::new(),
            escalation: Vec::new(),
            host_key: None,
            alias: String::new(),
            deployment: String::new(),
            machine: destination.to_owned(),
            persist_secs,
            unpinned: true,
            dir: control_dir()?,
            known_hosts: Default::default(),
        })
    }

    /// The known_hosts file for this machine: the pinned key, or nothing
    /// (first contact learns the key into it).
    fn known_hosts_path(&self) -> Result<PathBuf> {
        if let Some(p) = self.known_hosts.get() {
            return Ok(p.clone());
        }
        let kh = crate::tmp::for_process(&self.dir, "known-")?.join(format!("{}.known", self.id()));
        match &self.host_key {
            Some(key) => crate::tmp::write_private(&kh, format!("{} {}\n", self.alias, key).as_bytes())?,
            None => {
                let _ = std::fs::remove_file(&kh);
            }
        }
        Ok(self.known_hosts.get_or_init(|| kh).clone())
    }

    /// Names the control socket: the same for every run (and Rust
    /// release, unlike DefaultHasher) that reaches the machine the same way.
    fn id(&self) -> String {
        let key = (&self.user, &self.host, &self.port, &self.ssh_options, &self.alias);
        let json = serde_json::to_string(&key).expect("strings serialize");
        Sha256::digest(json.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn control_path(&self) -> PathBuf {
        self.dir.join(self.id())
    }

    /// `user@host`, or only the host when ssh's configuration chooses the
    /// user (a build host given without one).
    pub fn destination(&self) -> String {
        if self.user.is_empty() {
            self.host.clone()
        } else {
            format!("{}@{}", self.user, self.host)
        }
    }

    /// Options for every ssh use of this machine, ours and Nix's. The user's
    /// sshOptions come first: ssh takes the first value given for an option.
    pub fn options(&self) -> Result<Vec<String>> {
        let mut o = self.ssh_options.clone();
        let mut opts = vec![
            "ControlMaster=auto".to_string(),
            format!("ControlPath={}", self.control_path().display()),
            format!("ControlPersist={}", self.persist_secs),
        ];
        if !self.unpinned {
            let kh = self.known_hosts_path()?;
            // First contact learns whatever key the machine presents.
            let strict = if self.host_key.is_some() {
                "yes"
            } else {
                "accept-new"
            };
            opts.extend([
                format!("HostKeyAlias={}", self.alias),
                format!("UserKnownHostsFile={}", kh.display()),
                "GlobalKnownHostsFile=/dev/null".to_string(),
                format!("StrictHostKeyChecking={strict}"),
                // Debian hashes known_hosts by default; we read ours back.
                "HashKnownHosts=no".to_string(),
            ]);
        }
        for opt in opts.into_iter().chain([
            "BatchMode=yes".to_string(),
            // Errors only: no "Permanently added" chatter in machine logs.
            "LogLevel=ERROR".to_string(),
            "ConnectTimeout=15".to_string(),
            "ServerAliveInterval=15".to_string(),
        ]) {
            o.push("-o".into());
            o.push(opt);
        }
        if let Some(p) = self.port {
            o.push("-p".into());
            o.push(p.to_string());
        }
        Ok(o)
    }

    /// The value for NIX_SSHOPTS so that Nix's ssh reuses our master.
    pub fn nix_sshopts(&self) -> Result<String> {
        Ok(self.options()?.join(" "))
    }

    /// The key learned on first contact, if the machine had none pinned.
    pub fn learned_host_key(&self) -> Option<String> {
        if self.host_key.is_some() || self.unpinned {
            return None;
        }
        let text = std::fs::read_to_string(self.known_hosts_path().ok()?).ok()?;
        text.lines().find_map(|l| {
            let mut parts = l.split_whitespace();
            let host = parts.next()?;
            let (kt, key) = (parts.next()?, parts.next()?);
            // ssh lowercases the alias when it writes it.
            host.eq_ignore_ascii_case(&self.alias)
                .then(|| format!("{kt} {key}"))
        })
    }

    /// The ssh command that runs `script` (a POSIX shell script) on the
    /// machine with positional arguments (`$1`, `$2`, ...), so that values
    /// never need to be spliced into its text; `as_root`: through the
    /// escalation command for other users.
    pub fn command_with_args(&self, script: &str, args: &[&str], as_root: bool) -> Result<Command> {
        let mut cmd = process::command("ssh");
        cmd.args(self.options()?);
        cmd.arg(self.destination());
        cmd.arg("--");
        let mut remote: Vec<String> = Vec::new();
        if as_root {
            remote.extend(self.escalation.iter().cloned());
        }
        remote.extend(["sh".into(), "-c".into(), script.into(), "nixops".into()]);
        remote.extend(args.iter().map(|a| a.to_string()));
        let quoted: Vec<String> = remote.iter().map(|a| quote(a)).collect();
        cmd.arg(quoted.join(" "));
        Ok(cmd)
    }

    /// Like [`command`](Self::command) as root, but over a new connection
    /// of its own, bypassing the master: proof that sshd itself still lets
    /// us in (magic rollback's confirmation).
    pub fn fresh_command(&self, script: &str, args: &[&str]) -> Result<Command> {
        let mut cmd = self.command_with_args(script, args, true)?;
        let rest: Vec<std::ffi::OsString> = cmd.as_std().get_args().map(|a| a.to_owned()).collect();
        let mut fresh = process::command("ssh");
        // ssh takes the first value given for an option.
        fresh.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
        // It carries no secret, only proof that we get in: prefer the cheap
        // classical key exchange (about a sixth of the CPU of OpenSSH 9's
        // post-quantum default), still falling back to the defaults.
        fresh.args(["-o", "KexAlgorithms=^curve25519-sha256"]).args(rest);
        cmd = fresh;
        Ok(cmd)
    }

    /// Runs `script` as root with positional arguments. A refused host key
    /// is an error of its own ([`HostKeyChanged`]); any other outcome is the
    /// caller's to judge.
    pub async fn run_with_args(
        &self,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        sink: Sink<'_>,
    ) -> Result<Output, Error> {
        let mut cmd = self.command_with_args(script, args, true)?;
        let out = process::run(&mut cmd, stdin, sink).await?;
        match self.host_key_changed(&out) {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    /// [`failure`] for this machine: a refused host key says so.
    pub fn failure(&self, what: &str, out: &Output) -> Error {
        if self.unpinned && out.code == Some(SSH_FAILURE) {
            let message = if refused_key(out) {
                format!(
                    "ssh refused its host key, which your known_hosts does not have or has another of ({}); check it and accept it with a plain ‘ssh {}’ first",
                    out.last_error(),
                    quote(&self.machine)
                )
            } else {
                out.last_error()
            };
            return Error::Failed {
                what: format!("reaching build host ‘{}’", self.machine),
                message,
            };
        }
        match self.host_key_changed(out) {
            Some(e) => e.into(),
            None if self.unpinned => Error::Failed {
                what: format!("{what} on build host ‘{}’", self.machine),
                message: out.last_error(),
            },
            None => failure(what, out),
        }
    }

    /// Whether ssh refused the machine because it presented another host
    /// key than the pinned one (ssh then fails with 255 and says why).
    pub fn host_key_changed(&self, out: &Output) -> Option<HostKeyChanged> {
        let refused = self.host_key.is_some() && out.code == Some(SSH_FAILURE) && refused_key(out);
        if !refused {
            return None;
        }
        // "The fingerprint for the ED25519 key sent by the remote host is"
        // and the fingerprint on the next line.
        let presented = out.stderr.windows(2).find_map(|w| {
            let kind = w[0]
                .strip_prefix("The fingerprint for the ")?
                .strip_suffix(" key sent by the remote host is")?;
            Some(format!("{kind} key {}", w[1].trim().trim_end_matches('.')))
        });
        let address = match self.port {
            Some(p) => format!("{} port {p}", self.destination()),
            None => self.destination(),
        };
        Some(HostKeyChanged {
            machine: self.machine.clone(),
            deployment: self.deployment.clone(),
            address,
            presented,
        })
    }

    /// Closes the master connection (e.g. after a reboot killed the machine
    /// under it); harmless when there is none.
    pub async fn close(&self) {
        let path = self.control_path();
        if path.exists() {
            let _ = process::command("ssh")
                .args(["-o", &format!("ControlPath={}", path.display()), "-O", "exit"])
                .arg(self.destination())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The machine presented another host key than the one pinned in state:
/// reinstalled, or someone in between. Not "unreachable": nothing is
/// recorded about the machine.
#[derive(Debug)]
pub struct HostKeyChanged {
    pub machine: String,
    pub deployment: String,
    /// user@host, and the port when the network sets one.
    pub address: String,
    /// The key it presents now ("ED25519 key SHA256:..."), when ssh said.
    pub presented: Option<String>,
}

impl std::fmt::Display for HostKeyChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the host key of machine ‘{}’ ({}) is not the one pinned in state",
            self.machine, self.address
        )?;
        if let Some(k) = &self.presented {
            write!(f, "; it now presents the {k}")?;
        }
        write!(
            f,
            "; if the machine was reinstalled, accept its new key with: nixops forget-host-key -d {} {} \
             (ssh's advice to edit a known_hosts file does not help: nixops writes that file from state)",
            quote(&self.deployment),
            quote(&self.machine)
        )
    }
}

impl std::error::Error for HostKeyChanged {}

/// ssh said it refused the host key.
fn refused_key(out: &Output) -> bool {
    out.stderr
        .iter()
        .any(|l| l.trim() == "Host key verification failed.")
}

/// What goes wrong running something on a machine. The kinds are what the
/// pipeline decides on: an unreachable machine is recorded as such, a
/// changed host key is not (nothing is known about the machine then).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ssh could not connect or log in (its exit code 255).
    #[error("cannot reach machine: {0}")]
    Unreachable(String),
    #[error(transparent)]
    HostKeyChanged(#[from] HostKeyChanged),
    /// The command ran on the machine and failed.
    #[error("{what} failed: {message}")]
    Failed { what: String, message: String },
    /// Running it did not even start (no ssh, no sh).
    #[error(transparent)]
    Run(#[from] anyhow::Error),
}

/// Turns a failed ssh run into an error; exit 255 means the machine could
/// not be reached (or refused us). The one place that decides it.
pub fn failure(what: &str, out: &Output) -> Error {
    if out.code == Some(SSH_FAILURE) {
        Error::Unreachable(out.last_error())
    } else {
        Error::Failed {
            what: what.to_owned(),
            message: out.last_error(),
        }
    }
}

pub fn quote(s: &str) -> String {
    shlex::try_quote(s).map(|q| q.into_owned()).unwrap_or_else(|_| {
        // Only NUL bytes make try_quote fail; they cannot be in an argv.
        s.replace('\0', "")
    })
}

/// An ed25519 key pair made by ssh-keygen, as NixOps 2.0 makes one: written
/// into a private temporary directory (so the private key is in no
/// argument), read, and removed with the directory.
pub async fn generate_key_pair() -> Result<(Zeroizing<String>, String)> {
    let dir = crate::tmp::TmpDir::new("nixops-key-")?;
    let file = dir.path().join("key");
    let mut cmd = process::command("ssh-keygen");
    cmd.args([
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "NixOps auto-generated key",
        "-f",
    ])
    .arg(&file);
    let out = process::run(&mut cmd, None, Sink::quiet()).await?;
    if !out.success() {
        bail!("ssh-keygen failed: {}", out.last_error());
    }
    let private = Zeroizing::new(
        std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?,
    );
    let public = std::fs::read_to_string(file.with_extension("pub"))
        .with_context(|| format!("cannot read {}.pub", file.display()))?;
    Ok((private, public.trim_end().to_owned()))
}

/// The private directory for control sockets and known_hosts files: short
/// (socket paths are limited to about 100 bytes) and only ours.
fn control_dir() -> Result<PathBuf> {
    crate::tmp::private_dir("nixops-ssh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_host_destinations() {
        let t = Target::unpinned("builder", 5).unwrap();
        assert_eq!((t.destination(), t.port), ("builder".into(), None));
        let t = Target::unpinned("nix@127.0.0.2", 5).unwrap();
        assert_eq!((t.destination(), t.port), ("nix@127.0.0.2".into(), None));
        let t = Target::unpinned("ssh://nix@b.example:2222", 5).unwrap();
        assert_eq!((t.destination(), t.port), ("nix@b.example".into(), Some(2222)));
        for bad in ["", "-oProxyCommand=x", "a b", "ssh://b:port", "u@"] {
            assert!(Target::unpinned(bad, 5).is_err(), "{bad:?}");
        }
        // The user's known_hosts decides: none of ours is named.
        let o = Target::unpinned("builder", 5)
            .unwrap()
            .options()
            .unwrap()
            .join(" ");
        assert!(
            !o.contains("UserKnownHostsFile") && !o.contains("HostKeyAlias"),
            "{o}"
        );
        assert!(o.contains("BatchMode=yes") && o.contains("ControlPath="), "{o}");
    }
}

//! The evaluation trace: what a Nix process evaluating network files
//! observed. eval-trace.c, preloaded into the process, records every file
//! access and environment lookup Nix makes through libc; this turns the
//! records into the inputs the evaluation cache digests ([`Read`]), and
//! into the reason a result cannot be cached at all when the evaluation
//! observed something no digest can pin (a program run, the network, Nix's
//! fetcher cache, the current time).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The preloaded object (empty where it cannot be built: not Linux).
const SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libnixops-eval-trace.so"));

/// The environment variable naming the trace file of a process.
pub const TRACE_VAR: &str = "NIXOPS_EVAL_TRACE";

/// eval-machine-info.nix looks up `<this><machine>` in the environment as a
/// machine's evaluation begins: the trace's mark between machines evaluated
/// in one process (never an input).
pub const BEGIN_MARK: &str = "__NIXOPS_EVAL_BEGIN_";

/// The whole records of a trace, before `machine`'s evaluation began in it
/// if given (all of them when it has not begun: a pure evaluation has no
/// marks).
pub fn before_begin<'a>(bytes: &'a [u8], machine: Option<&str>) -> &'a [u8] {
    let whole = bytes.iter().rposition(|b| *b == 0).map_or(0, |i| i + 1);
    let Some(machine) = machine else {
        return &bytes[..whole];
    };
    let mark = format!("E{BEGIN_MARK}{machine}");
    let mut at = 0;
    for rec in bytes[..whole].split(|b| *b == 0) {
        if rec == mark.as_bytes() {
            return &bytes[..at];
        }
        at += rec.len() + 1;
    }
    &bytes[..whole]
}

/// Something an evaluation observed, whose value now decides whether a
/// cached result still holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Read {
    /// A path as reached through links (open, stat): the content, type or
    /// absence of what it leads to.
    Follow(PathBuf),
    /// A path itself (lstat, readlink): a link's target; else as Follow.
    Path(PathBuf),
    /// A directory's entries (readDir).
    List(PathBuf),
    /// An environment variable (getEnv, and Nix's own settings).
    Env(String),
}

impl Read {
    /// Its form in the cache file.
    pub fn key(&self) -> String {
        match self {
            Read::Follow(p) => format!("f{}", p.display()),
            Read::Path(p) => format!("p{}", p.display()),
            Read::List(p) => format!("d{}", p.display()),
            Read::Env(n) => format!("e{n}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Read> {
        let (kind, rest) = key.split_at_checked(1)?;
        Some(match kind {
            "f" => Read::Follow(rest.into()),
            "p" => Read::Path(rest.into()),
            "d" => Read::List(rest.into()),
            "e" => Read::Env(rest.into()),
            _ => return None,
        })
    }
}

impl std::fmt::Display for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Read::Follow(p) | Read::Path(p) => write!(f, "{}", p.display()),
            Read::List(p) => write!(f, "the entries of {}", p.display()),
            Read::Env(n) => write!(f, "environment variable {n}"),
        }
    }
}

/// What one process's trace says.
#[derive(Debug, Default)]
pub struct Observed {
    pub reads: BTreeSet<Read>,
    /// Files it opened for reading: scanned for what escapes the trace.
    pub opened: BTreeSet<PathBuf>,
    /// Why its result may not be cached, if so.
    pub uncacheable: Option<String>,
}

/// Where the shim is, once written beside the tool's Nix files.
pub fn write_shim(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    if SHIM.is_empty() {
        return Ok(None);
    }
    let path = dir.join("libnixops-eval-trace.so");
    std::fs::write(&path, SHIM)?;
    Ok(Some(path))
}

/// Has `cmd` record its trace in `file` (preloading `shim` before whatever
/// the user preloads).
pub fn enable(cmd: &mut tokio::process::Command, shim: &Path, file: &Path) {
    let preload = match std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        Some(theirs) => {
            let mut p = shim.as_os_str().to_owned();
            p.push(":");
            p.push(theirs);
            p
        }
        None => shim.as_os_str().to_owned(),
    };
    cmd.env("LD_PRELOAD", preload).env(TRACE_VAR, file);
}

/// Paths whose reads are Nix's own business, not the evaluation's input:
/// its database, locks and logs (but profiles, where channels live, count).
fn nix_internal(p: &Path) -> bool {
    (p.starts_with("/nix/var") && !p.starts_with("/nix/var/nix/profiles"))
        || p == Path::new("/nix")
        || p == Path::new("/nix/store")
        || p.starts_with("/nix/store/.links")
}

/// Kernel files Nix itself reads (CPU count, mount namespace, randomness).
fn kernel_file_of_nix(p: &Path) -> bool {
    [
        "/proc/stat",
        "/proc/meminfo",
        "/proc/cpuinfo",
        "/dev/urandom",
        "/dev/random",
        "/dev/null",
    ]
    .iter()
    .any(|k| p == Path::new(k))
        || p.starts_with("/proc/self")
        || p.starts_with("/sys/fs/cgroup")
        || p.starts_with("/sys/devices/system/cpu")
}

fn kernel(p: &Path) -> bool {
    p.starts_with("/proc") || p.starts_with("/sys") || p.starts_with("/dev")
}

/// A store path's top directory (`/nix/store/HASH-NAME`): the store is
/// immutable, so its existence is all that can change.
fn store_root(p: &Path) -> Option<PathBuf> {
    let rest = p.strip_prefix("/nix/store").ok()?;
    let first = rest.components().next()?;
    Some(Path::new("/nix/store").join(first))
}

/// Reads a trace file. `own`: the tool's private directory (its Nix files,
/// the shim, the traces; the run's key covers them). `nix_cache`: Nix's
/// cache directory (`$XDG_CACHE_HOME/nix`), where fetchers keep what they
/// fetched.
pub fn parse(bytes: &[u8], own: &Path, nix_cache: Option<&Path>) -> Observed {
    let mut o = Observed::default();
    let mut active = false;
    let mut cwd = PathBuf::from("/");
    let refuse = |o: &mut Observed, why: String| {
        o.uncacheable.get_or_insert(why);
    };
    for rec in bytes.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let (kind, arg) = (rec[0], String::from_utf8_lossy(&rec[1..]).into_owned());
        match kind {
            b'H' => active = true,
            b'C' => cwd = PathBuf::from(arg),
            b'E' if arg == TRACE_VAR || arg == "LD_PRELOAD" || arg.starts_with(BEGIN_MARK) => {}
            b'E' => {
                o.reads.insert(Read::Env(arg));
            }
            b'X' => refuse(
                &mut o,
                format!("it runs {arg} (a fetcher, or a build during evaluation)"),
            ),
            b'N' if arg == "inet" => refuse(
                &mut o,
                "it uses the network (a fetcher without a fixed hash?)".into(),
            ),
            b'N' => {}
            b'O' | b'S' | b'L' | b'D' => {
                let p = cwd.join(&arg);
                if p.starts_with(own) || nix_internal(&p) {
                    continue;
                }
                if kernel(&p) {
                    if kind == b'O' && !kernel_file_of_nix(&p) {
                        refuse(
                            &mut o,
                            format!("it reads {}, which no digest can pin", p.display()),
                        );
                    }
                    continue;
                }
                if let Some(cache) = nix_cache
                    && p.starts_with(cache)
                {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    if !name.starts_with("binary-cache-v") && p != cache {
                        refuse(
                            &mut o,
                            "it uses Nix's fetcher cache (fetchTarball, fetchGit, ... without a fixed hash)"
                                .into(),
                        );
                    }
                    continue;
                }
                if kind == b'O' {
                    o.opened.insert(p.clone());
                }
                let read = match (store_root(&p), kind) {
                    (Some(root), _) => Read::Follow(root),
                    (None, b'O' | b'S') => Read::Follow(p),
                    (None, b'L') => Read::Path(p),
                    (None, _) => Read::List(p),
                };
                o.reads.insert(read);
            }
            _ => {}
        }
    }
    if !active {
        o.uncacheable = Some(
            "its file accesses could not be observed (the evaluation trace did not load into Nix)".into(),
        );
    }
    o
}

/// Nix's cache directory for this user, where its fetchers keep what they
/// fetched.
pub fn nix_cache_dir() -> Option<PathBuf> {
    Some(super::cache::user_cache_dir()?.join("nix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(records: &[&str]) -> Vec<u8> {
        records.iter().flat_map(|r| r.bytes().chain([0])).collect()
    }

    #[test]
    fn records_become_reads_or_reasons() {
        let own = Path::new("/tmp/nixops-nix-x");
        let cache = Path::new("/root/.cache/nix");
        let o = parse(
            &trace(&[
                "H12",
                "C/net",
                "Onetwork.nix",
                "L/net/current.nix",
                "D/net/files",
                "S/etc/hostname",
                "EGEN",
                "ENIXOPS_EVAL_TRACE",
                "O/nix/store/abc-nixpkgs/lib/default.nix",
                "O/nix/var/nix/db/db.sqlite",
                "L/nix/var/nix/profiles/per-user/root/channels",
                "O/tmp/nixops-nix-x/eval-machine-info.nix",
                "O/proc/self/ns/mnt",
                "S/dev/kvm",
                "O/root/.cache/nix/binary-cache-v6.sqlite",
                "Nunix",
            ]),
            own,
            Some(cache),
        );
        assert_eq!(o.uncacheable, None);
        let want = BTreeSet::from([
            Read::Follow("/net/network.nix".into()),
            Read::Path("/net/current.nix".into()),
            Read::List("/net/files".into()),
            Read::Follow("/etc/hostname".into()),
            Read::Env("GEN".into()),
            Read::Follow("/nix/store/abc-nixpkgs".into()),
            Read::Path("/nix/var/nix/profiles/per-user/root/channels".into()),
        ]);
        assert_eq!(o.reads, want);
        assert!(
            o.opened
                .contains(Path::new("/nix/store/abc-nixpkgs/lib/default.nix"))
        );
        for r in &want {
            assert_eq!(Read::from_key(&r.key()).as_ref(), Some(r));
        }

        let why = |recs: &[&str]| parse(&trace(recs), own, Some(cache)).uncacheable;
        assert!(why(&["H1", "X/usr/bin/git"]).unwrap().contains("git"));
        assert!(why(&["H1", "Ninet"]).unwrap().contains("network"));
        assert!(
            why(&["H1", "O/root/.cache/nix/fetcher-cache-v1.sqlite"])
                .unwrap()
                .contains("fetcher")
        );
        assert!(why(&["H1", "O/proc/uptime"]).unwrap().contains("/proc/uptime"));
        // Marks between machines are no input, and cut a trace.
        let t = trace(&["H1", "Oa.nix", "E__NIXOPS_EVAL_BEGIN_m2", "Ob.nix"]);
        assert_eq!(parse(&t, own, None).reads.len(), 2);
        assert_eq!(before_begin(&t, Some("m2")), &trace(&["H1", "Oa.nix"])[..]);
        assert_eq!(before_begin(&t, Some("m3")), &t[..]);
        let cut = &t[..t.len() - 2];
        let whole = trace(&["H1", "Oa.nix", "E__NIXOPS_EVAL_BEGIN_m2"]);
        assert_eq!(before_begin(cut, None), &whole[..]);
        // No handshake: nothing was observed, so nothing can be trusted.
        assert!(why(&["O/net/a.nix"]).unwrap().contains("could not be observed"));
    }
}

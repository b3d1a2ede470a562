//! Delivery: all of a machine's keys in one SSH session over its master
//! connection, by the static script upload.sh. What to do (names, owners,
//! modes, sizes, keys to remove) goes to its stdin as a line-based manifest,
//! followed by the secrets themselves, written straight from their
//! zeroizing buffers: secrets are never in an argv, the environment or a
//! log. The manifest has no size limit, so one session serves any number of
//! keys.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow};

use super::record::{self, Delivered};
use super::secret::Secret;
use super::spec::{DONE, KeySpec, has_control};
use super::{Context, KeyTarget, MachineKeys};
use crate::process::Sink;
use crate::ui::Events;

/// Sent as the remote script, unchanged.
const UPLOAD: &str = include_str!("upload.sh");
/// upload.sh's stdout line for an owner (USER:GROUP) that does not exist.
const NO_OWNER: &str = "__NIXOPS_KEYS_NO_OWNER ";

/// When a delivery happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before activation: keys with uploadAt = "pre-activation".
    Pre,
    /// After activation: "post-activation" keys, and pre-activation keys
    /// whose owner did not exist yet before activation.
    Post,
    /// All keys (send-keys, after a reboot).
    All,
}

/// What one session does.
struct Plan<'a> {
    writes: Vec<(&'a KeySpec, &'a Secret)>,
    remove: Vec<String>,
    touch_done: bool,
}

impl Plan<'_> {
    /// upload.sh's manifest: destDirs in the order of first use, then the
    /// keys (their bytes follow in this order), then what to remove.
    fn manifest(&self) -> String {
        let mut dirs: Vec<&str> = Vec::new();
        for (k, _) in &self.writes {
            if !dirs.contains(&k.dest_dir.as_str()) {
                dirs.push(&k.dest_dir);
            }
        }
        let mut m = String::from("nixops-keys 1\n");
        if self.touch_done {
            m += "done\n";
        }
        for d in &dirs {
            m += &format!("dir {d}\n");
        }
        for (k, secret) in &self.writes {
            let dir = dirs.iter().position(|d| *d == k.dest_dir).expect("listed");
            m += &format!(
                "key {dir} {} {} {}:{} {}\n",
                secret.bytes().len(),
                k.permissions,
                k.user,
                k.group,
                k.name
            );
        }
        for p in &self.remove {
            m += &format!("remove {p}\n");
        }
        m + "end\n"
    }
}

/// Delivers the keys of `phase` to one machine in one SSH session, removes
/// keys no longer declared, touches /run/keys/done, and records what was
/// delivered in state. The secrets must have been gathered.
pub async fn deliver(
    ctx: &Context<'_>,
    m: &KeyTarget<'_>,
    mk: &mut MachineKeys,
    phase: Phase,
    events: &Events,
) -> Result<()> {
    let declared: BTreeMap<&str, String> = mk.specs.iter().map(|s| (s.attr.as_str(), s.path())).collect();
    let mut writes = Vec::new();
    for s in mk.specs.iter().filter(|s| match phase {
        Phase::Pre => !s.post_activation,
        Phase::Post => s.post_activation || mk.owner_pending.contains(&s.attr),
        Phase::All => true,
    }) {
        let secret = mk
            .secrets
            .get(&s.attr)
            .ok_or_else(|| anyhow!("deployment.keys.{}: secret not read", s.attr))?;
        writes.push((s, secret));
    }
    let remove = if phase == Phase::Post {
        Vec::new()
    } else {
        removals(&mk.delivered, &declared, m.name, events)
    };
    let touch_done = !mk.specs.is_empty();
    // After activation, only to send keys.
    if writes.is_empty() && remove.is_empty() && (phase == Phase::Post || !touch_done) {
        return Ok(());
    }
    let plan = Plan {
        writes,
        remove,
        touch_done,
    };
    events.stage(m.name, "sending keys");

    let manifest = plan.manifest();
    tracing::debug!(
        "{}: upload.sh's manifest (the keys' bytes follow it):\n{manifest}",
        m.name
    );
    let mut stdin: Vec<&[u8]> = vec![manifest.as_bytes()];
    stdin.extend(plan.writes.iter().map(|(_, s)| s.bytes()));
    let out = m
        .host
        .run_fed(UPLOAD, &[], &stdin, Sink::machine(events, m.name))
        .await?;
    if !out.success() {
        return Err(m.host.failure("sending keys", &out).into());
    }
    let no_owner: BTreeSet<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix(NO_OWNER))
        .collect();

    // What the machine now has.
    let delivered = &mut mk.delivered;
    delivered.retain(|a, d| declared.get(a.as_str()) == Some(&d.path(a)));
    let mut changed = 0;
    for (s, secret) in &plan.writes {
        let hash = match delivered.get(&s.attr).and_then(|d| d.hash.clone()) {
            Some(h) if record::hash_matches(&h, secret) => h,
            _ => {
                changed += 1;
                record::new_hash(secret)
            }
        };
        delivered.insert(s.attr.clone(), Delivered::of(s, hash));
    }
    ctx.store
        .lock()
        .expect("state lock")
        .set_resource_attrs(m.resource_id, &[("keys".into(), record::to_json(delivered))])?;

    let n = plan.writes.len();
    if n > 0 {
        let s = if n == 1 { "" } else { "s" };
        events.log(
            Some(m.name),
            format!("sent {n} key{s} ({changed} new or changed)"),
        );
    }
    for p in &plan.remove {
        events.log(Some(m.name), format!("removed key file {p} (no longer declared)"));
    }
    for (s, _) in &plan.writes {
        if !no_owner.contains(format!("{}:{}", s.user, s.group).as_str()) {
            mk.owner_pending.remove(&s.attr);
            continue;
        }
        if phase == Phase::Pre {
            mk.owner_pending.insert(s.attr.clone());
            events.log(
                Some(m.name),
                format!(
                    "key ‘{}’: user ‘{}’ or group ‘{}’ does not exist yet; it is owned by root until it is sent again after activation",
                    s.attr, s.user, s.group
                ),
            );
        } else {
            mk.owner_pending.remove(&s.attr);
            events.log(
                Some(m.name),
                format!(
                    "warning: key ‘{}’: user ‘{}’ or group ‘{}’ does not exist on the machine; the key file is owned by root",
                    s.attr, s.user, s.group
                ),
            );
        }
    }
    Ok(())
}

/// The files of keys that state says were delivered and that are no longer
/// declared there. A path with a control character (only NixOps could have
/// recorded one) cannot be named in the manifest: it is left, and said.
fn removals(
    delivered: &BTreeMap<String, Delivered>,
    declared: &BTreeMap<&str, String>,
    machine: &str,
    events: &Events,
) -> Vec<String> {
    let declared: BTreeSet<&String> = declared.values().collect();
    let stale: BTreeSet<String> = delivered
        .iter()
        .map(|(a, d)| d.path(a))
        .filter(|p| !declared.contains(p) && p != DONE)
        .collect();
    let (ok, odd): (Vec<String>, Vec<String>) = stale.into_iter().partition(|p| !has_control(p));
    for p in odd {
        events.log(
            Some(machine),
            format!("warning: key file {p:?} is no longer declared, but its name cannot be sent; remove it by hand"),
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::spec::Source;
    use crate::process;

    fn spec(attr: &str, dir: &str, user: &str, mode: &str) -> KeySpec {
        KeySpec {
            attr: attr.into(),
            name: attr.into(),
            dest_dir: dir.into(),
            user: user.into(),
            group: user.into(),
            permissions: mode.into(),
            post_activation: false,
            source: Source::Text,
        }
    }

    #[test]
    fn the_manifest_lists_dirs_keys_and_removals() {
        let a = spec("a", "/run/keys", "alice", "0640");
        let b = spec("b c", "/etc/x y/", "root", "u=rw");
        let c = spec("c", "/run/keys", "root", "0600");
        let (s1, s2, s3) = (
            Secret::from_slice(b"hello"),
            Secret::from_slice(b""),
            Secret::from_slice(b"xyz"),
        );
        let plan = Plan {
            writes: vec![(&a, &s1), (&b, &s2), (&c, &s3)],
            remove: vec!["/run/keys/old one".into()],
            touch_done: true,
        };
        assert_eq!(
            plan.manifest(),
            "nixops-keys 1\ndone\ndir /run/keys\ndir /etc/x y/\n\
             key 0 5 0640 alice:alice a\nkey 1 0 u=rw root:root b c\nkey 0 3 0600 root:root c\n\
             remove /run/keys/old one\nend\n"
        );
        let empty = Plan {
            writes: vec![],
            remove: vec![],
            touch_done: false,
        };
        assert_eq!(empty.manifest(), "nixops-keys 1\nend\n");
    }

    /// upload.sh itself, run here by `shell` on a plan for directories in
    /// a temporary directory: what it leaves, what it says.
    async fn upload_here(shell: &[&str]) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        let (new_dir, old_dir) = (format!("{root}/new dir/sub"), format!("{root}/old"));
        std::fs::create_dir(&old_dir).unwrap();
        std::fs::write(format!("{old_dir}/gone"), "old").unwrap();
        // SAFETY: plain system calls.
        let me = unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) };
        let (u, g) = me.split_once(':').unwrap();
        let mut mine = spec("mine", &new_dir, u, "u=r,g=r");
        mine.group = g.into();
        let nobody = spec("no owner", &old_dir, "nixops-no-such-user", "0640");
        let empty = spec("empty", &old_dir, "root", "0600");
        let (s1, s2, s3) = (
            Secret::from_slice(b"first\n"),
            Secret::from_slice(&[0, 255, b'\n', 7]),
            Secret::from_slice(b""),
        );
        let plan = Plan {
            writes: vec![(&mine, &s1), (&nobody, &s2), (&empty, &s3)],
            remove: vec![format!("{old_dir}/gone")],
            touch_done: false,
        };
        let manifest = plan.manifest();
        let stdin: Vec<&[u8]> = vec![manifest.as_bytes(), s1.bytes(), s2.bytes(), s3.bytes()];
        let mut cmd = process::command(shell[0]);
        cmd.args(&shell[1..]).args(["-c", UPLOAD, "nixops"]);
        let out = process::run_fed(&mut cmd, Some(&stdin), Sink::quiet())
            .await
            .unwrap();
        assert!(out.success(), "{shell:?}: {out:?}");
        assert_eq!(
            out.stdout,
            format!("{NO_OWNER}nixops-no-such-user:nixops-no-such-user")
        );
        let meta = |p: &str| std::fs::metadata(p).unwrap();
        let mine_path = format!("{new_dir}/mine");
        assert_eq!(std::fs::read(&mine_path).unwrap(), b"first\n");
        assert_eq!(meta(&mine_path).permissions().mode() & 0o7777, 0o440);
        assert_eq!(
            format!("{}:{}", meta(&mine_path).uid(), meta(&mine_path).gid()),
            me
        );
        let nobody_path = format!("{old_dir}/no owner");
        assert_eq!(std::fs::read(&nobody_path).unwrap(), [0, 255, b'\n', 7]);
        assert_eq!(meta(&nobody_path).permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(format!("{old_dir}/empty")).unwrap(), b"");
        assert_eq!(meta(&new_dir).permissions().mode() & 0o7777, 0o750);
        assert!(!std::path::Path::new(&format!("{old_dir}/gone")).exists());
        // No temporary directory left.
        for d in [&new_dir, &old_dir] {
            let left: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with(".nixops-keys"))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }

        // Bytes missing: nothing is moved into place.
        let again = Plan {
            writes: vec![(&nobody, &s2)],
            remove: vec![],
            touch_done: false,
        };
        let manifest = again.manifest();
        let stdin: Vec<&[u8]> = vec![manifest.as_bytes(), &s2.bytes()[..2]];
        std::fs::remove_file(&nobody_path).unwrap();
        let mut cmd = process::command(shell[0]);
        cmd.args(&shell[1..]).args(["-c", UPLOAD, "nixops"]);
        let out = process::run_fed(&mut cmd, Some(&stdin), Sink::quiet())
            .await
            .unwrap();
        assert!(!out.success());
        assert_eq!(out.last_error(), "error: the keys arrived incomplete");
        assert!(!std::path::Path::new(&nobody_path).exists());
        assert_eq!(
            std::fs::read_dir(&old_dir).unwrap().count(),
            1,
            "only `empty` is left"
        );
    }

    #[tokio::test]
    async fn upload_sh_delivers_with_the_system_shell_and_coreutils() {
        upload_here(&["sh"]).await;
    }

    #[tokio::test]
    async fn upload_sh_delivers_with_busybox() {
        // busybox sh runs its own applets (dd, mktemp, chown...) first.
        assert!(
            std::path::Path::new("/bin/busybox").exists(),
            "needs /bin/busybox (scripts/install-deps.sh installs busybox-static)"
        );
        upload_here(&["/bin/busybox", "sh"]).await;
    }

    #[test]
    fn the_script_touches_the_done_file() {
        assert!(UPLOAD.contains(&format!("touch {DONE}\n")));
        assert!(UPLOAD.contains(NO_OWNER.trim_end()));
        assert!(NO_OWNER.starts_with(process::MARKER));
    }
}

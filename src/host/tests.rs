//! The host operations on a [`Local`] host, without sshd: first contact,
//! unguarded activation, status. They run inside a private mount namespace
//! (its own /run and system profiles), entered through the host's command
//! prefix, so the real machine's system is never touched. Needs root, Nix
//! and /bin/busybox, as the rest of the suite does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;

/// A private mount namespace that lives as long as this value.
struct Sandbox {
    keeper: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let profiles = dir.path().join("profiles");
        std::fs::create_dir(&profiles).unwrap();
        let mut keeper = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mount --bind \"$1\" /nix/var/nix/profiles && echo ready && exec sleep 600",
            )
            .arg("sandbox")
            .arg(&profiles)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(keeper.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        Sandbox { keeper, _dir: dir }
    }

    fn host(&self) -> Host {
        let enter = format!("--mount=/proc/{}/ns/mnt", self.keeper.id());
        Host::local(
            "m",
            Local {
                escalation: vec!["nsenter".into(), enter, "--".into()],
            },
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A stand-in NixOS system, built with Nix.
fn toplevel(rev: &str) -> String {
    let link = Command::new("bash")
        .arg(repo().join("tests/nixpkgs/link-lib.sh"))
        .output()
        .unwrap();
    assert!(link.status.success(), "{}", String::from_utf8_lossy(&link.stderr));
    let nixpkgs = repo().join("tests/nixpkgs");
    let expr = format!(
        "(import {}/nixos/lib/eval-config.nix {{ modules = [ {{ networking.hostName = \"unit\"; environment.etc.rev.text = \"{rev}\"; }} ]; }}).config.system.build.toplevel",
        nixpkgs.display()
    );
    let out = Command::new("nix-build")
        .args(["--no-out-link", "-E", &expr])
        .env("NIX_CONFIG", "substituters =\nextra-sandbox-paths = /bin/busybox")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn probe_activate_and_status_on_a_local_host() {
    let sandbox = Sandbox::new();
    let host = sandbox.host();
    let (one, two) = (toplevel("one"), toplevel("two"));
    assert!(Path::new(&one).exists());
    block_on(async {
        let p = host.probe(&one, Sink::quiet()).await.unwrap();
        assert!(p.has_path && !p.boot_id.is_empty());
        assert_eq!(p.current_system, None, "a fresh /run");
        assert_eq!(p.kept, None);

        // Copying to this machine's own store is nothing to do.
        host.copy_closure(&one, true, Sink::quiet()).await.unwrap();

        let a = |t| Activation {
            toplevel: t,
            action: Action::Switch,
            deployment: "d-uuid",
            sync: false,
        };
        let done = host
            .activate(&a(&one), When::Always, Sink::quiet())
            .await
            .unwrap();
        assert_eq!(done.output.code, Some(0), "{:?}", done.output.stderr);
        assert!(!done.unchanged);
        let s = host.status(Sink::quiet()).await;
        assert!(s.reachable, "{:?}", s.error);
        assert_eq!(s.current_system.as_deref(), Some(one.as_str()));
        let kept = Kept {
            deployment: "d-uuid".into(),
            toplevel: one.clone(),
        };
        assert_eq!(s.kept.as_ref(), Some(&kept), "the activation's record");

        // alwaysActivate off: the profile points at it already.
        let again = host
            .activate(&a(&one), When::Changed, Sink::quiet())
            .await
            .unwrap();
        assert!(again.unchanged);
        // A re-activation is done only while the machine runs and boots
        // that system; another system is left to a guarded activation.
        let re = host
            .activate(&a(&one), When::Current, Sink::quiet())
            .await
            .unwrap();
        assert!(!re.not_current && !re.unchanged, "{:?}", re.output);
        assert_eq!(re.output.code, Some(0), "{:?}", re.output.stderr);
        let other = host
            .activate(&a(&two), When::Current, Sink::quiet())
            .await
            .unwrap();
        assert!(other.not_current, "{:?}", other.output);
        let (_, current) = host.boot_state().await.unwrap().unwrap();
        assert_eq!(current.as_deref(), Some(one.as_str()));

        let done = host
            .activate(&a(&two), When::Always, Sink::quiet())
            .await
            .unwrap();
        assert_eq!(done.output.code, Some(0));
        let (_, current) = host.boot_state().await.unwrap().unwrap();
        assert_eq!(current.as_deref(), Some(two.as_str()));
        let p = host.probe(&two, Sink::quiet()).await.unwrap();
        assert_eq!(p.kept.map(|k| k.toplevel), Some(two.clone()));

        // This machine is not rebooted from under the tool.
        assert!(host.reboot().await.is_err());
    });
    // The real machine's system was never touched.
    assert_ne!(
        std::fs::read_link("/run/current-system").ok(),
        Some(PathBuf::from(&two))
    );
}

#[test]
fn plan_asks_in_one_round_trip_and_changes_nothing() {
    let sandbox = Sandbox::new();
    let host = sandbox.host();
    let (one, two) = (toplevel("plan-one"), toplevel("plan-two"));
    let all = PlanQuery {
        closure: true,
        dry_activate: true,
        new_closure: true,
    };
    block_on(async {
        // Running nothing: no closure to compare, no dry-activate.
        let p = host.plan(&two, all).await.unwrap();
        assert_eq!((p.current_system, p.has_new), (None, Some(true)));
        assert!(p.closure.is_none() && p.dry_activation.is_none());

        let a = Activation {
            toplevel: &one,
            action: Action::Switch,
            deployment: "d-uuid",
            sync: false,
        };
        host.activate(&a, When::Always, Sink::quiet()).await.unwrap();
        let p = host.plan(&two, all).await.unwrap();
        assert_eq!(p.current_system.as_deref(), Some(one.as_str()));
        assert_eq!(p.profile.as_deref(), Some(one.as_str()));
        assert_eq!(p.has_new, Some(true));
        let c = p.closure.expect("the closure of what it runs");
        assert!(c.paths.contains_key(&one) && c.size() > 0);
        let n = p.new_closure.expect("the new system's closure");
        assert!(n.paths.contains_key(&two) && !n.paths.contains_key(&one));
        let d = p.dry_activation.expect("dry-activate ran");
        assert_eq!(d.code, Some(0));
        assert!(
            d.lines.iter().any(|l| l == "would activate the configuration..."),
            "{d:?}"
        );
        // Without asking for them: neither.
        let p = host.plan(&two, PlanQuery::default()).await.unwrap();
        assert!(p.closure.is_none() && p.new_closure.is_none() && p.dry_activation.is_none());
        // It runs what it would get: nothing more to say.
        let p = host.plan(&one, all).await.unwrap();
        assert_eq!(p.has_new, None);
        assert!(p.closure.is_none() && p.dry_activation.is_none());
        let s = host.status(Sink::quiet()).await;
        assert_eq!(s.current_system.as_deref(), Some(one.as_str()));
    });
}

//! Faults around state and identity: a network that no longer evaluates, a
//! machine name the tool cannot use, a reinstalled machine's new host key,
//! a state file that is missing, read-only or on a full disk, a keyCommand
//! that hangs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fleet, Run};

/// Runs `nixops args` (as the fleet's user) after `setup`, in a private
/// mount namespace of its own: mounts made there never reach the machine.
fn in_mount_namespace(fleet: &Fleet, setup: &str, args: &[&str]) -> Run {
    let inner = fleet.nixops(args);
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("set -e; {setup}; exec \"$0\" \"$@\""))
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    Run::from(cmd.output().unwrap())
}

#[test]
fn a_missing_state_file_is_not_made_up_by_commands_that_only_read() {
    let fleet = Fleet::start(&[]);
    let missing = fleet.path().join("no-such-dir/state.nixops");
    for args in [&["list"][..], &["info"], &["export", "--all"], &["deploy"]] {
        let mut all = args.to_vec();
        all.extend(["-s", missing.to_str().unwrap()]);
        let r = fleet.run(&all);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(
            r.stderr
                .contains(&format!("state file {} does not exist", missing.display())),
            "{args:?}: {}",
            r.stderr
        );
        // $NIXOPS_STATE is the same.
        let out = fleet.nixops(args).env("NIXOPS_STATE", &missing).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            !missing.parent().unwrap().exists(),
            "{args:?} created the directory"
        );
    }
    // In an existing directory too, and create does not make directories.
    let r = fleet.run(&["list"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(!fleet.state_file().exists());
    let net = fleet.write("net.nix", "{ }");
    let r = fleet.run(&["create", net.to_str().unwrap(), "-s", missing.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("directory"), "{}", r.stderr);
    assert!(!missing.parent().unwrap().exists());

    // The default file (~/.nixops/deployments.nixops) holds no deployments
    // until something is created; reading it creates nothing.
    let home = fleet.path().join("home");
    let out = fleet
        .nixops(&["list", "--json"])
        .env_remove("NIXOPS_STATE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(!home.join(".nixops").exists());
    let out = fleet
        .nixops(&["create", net.to_str().unwrap(), "-d", "x"])
        .env_remove("NIXOPS_STATE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(home.join(".nixops/deployments.nixops").exists());
    // It holds salted hashes of secrets: its owner's only.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.join(".nixops")), 0o700);
    assert_eq!(mode(&home.join(".nixops/deployments.nixops")), 0o600);
}

/// A zero-byte state file is a damaged one: no command takes it for an
/// empty state (which the next write would make it, every deployment gone).
#[test]
fn an_empty_state_file_is_refused_as_damaged() {
    let fleet = Fleet::start(&[]);
    let state = fleet.path().join("empty.nixops");
    std::fs::write(&state, "").unwrap();
    for args in [
        &["list"][..],
        &["info", "--all"],
        &["export", "--all"],
        &["delete", "--all"],
    ] {
        let mut all = args.to_vec();
        all.extend(["-s", state.to_str().unwrap()]);
        let r = fleet.run(&all);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains("is empty (0 bytes)"), "{args:?}: {}", r.stderr);
        assert_eq!(std::fs::metadata(&state).unwrap().len(), 0, "{args:?} wrote it");
    }
}

/// A state file others may read is made private when next written, with a
/// note; its group keeps its access.
#[test]
fn a_state_file_others_may_read_is_made_private() {
    let fleet = Fleet::start(&[]);
    let net = fleet.write("net.nix", "{ }");
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "x"]);
    let state = fleet.state_file();
    let mode = || std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(), 0o600);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o664)).unwrap();
    // Reading changes nothing.
    fleet.ok(&["list"]);
    assert_eq!(mode(), 0o664);
    let r = fleet.ok(&["set-args", "-d", "x", "--arg", "a", "1"]);
    assert!(r.stderr.contains("could be read by other users"), "{}", r.stderr);
    assert_eq!(mode(), 0o660);
}

/// A directory of its own for a state file (to mount something there), the
/// file's path, and a network file.
fn state_in_a_directory(fleet: &Fleet, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = fleet.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    let net = fleet.write("net.nix", &common::simple_network(&["m"], ""));
    (dir.clone(), dir.join("state.nixops"), net)
}

#[test]
fn a_read_only_state_file_is_read_and_refuses_changes_by_name() {
    let fleet = Fleet::start(&[]);
    let (dir, state, net) = state_in_a_directory(&fleet, "ro");
    let s = state.to_str().unwrap();
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d", "-s", s]);
    fleet.ok(&["deploy", "--create-only", "-s", s]);
    let before = fleet.ok(&["export", "--all", "-s", s]).stdout;
    let ro = format!(
        "mount --bind {0} {0} && mount -o remount,bind,ro {0}",
        dir.display()
    );

    let r = in_mount_namespace(&fleet, &ro, &["list", "-s", s]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("| d "), "{}", r.stdout);
    let r = in_mount_namespace(&fleet, &ro, &["info", "--no-eval", "-s", s]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("| m "), "{}", r.stdout);

    for args in [&["set-args", "--arg", "x", "1"][..], &["deploy", "--create-only"]] {
        let mut all = args.to_vec();
        all.extend(["-s", s]);
        let r = in_mount_namespace(&fleet, &ro, &all);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "cannot write state file {}: Read-only file system",
                state.display()
            )),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(fleet.ok(&["export", "--all", "-s", s]).stdout, before);
}

#[test]
fn a_full_disk_is_named_and_leaves_the_state_as_it_was() {
    let fleet = Fleet::start(&[]);
    let (dir, state, net) = state_in_a_directory(&fleet, "small");
    let s = state.to_str().unwrap();
    // Made on the real disk, then copied onto a small file system.
    let made = fleet.path().join("made.nixops");
    let m = made.to_str().unwrap();
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d", "-s", m]);
    let before = fleet.ok(&["export", "--all", "-s", m]).stdout;
    let small = format!(
        "mount -t tmpfs -o size=1m tmpfs {0} && cp {m} {1}",
        dir.display(),
        state.display()
    );

    // An import far larger than the space left fails in its transaction.
    let mut big: serde_json::Value = serde_json::from_str(&before).unwrap();
    let (uuid, d) = big.as_object().unwrap().iter().next().unwrap();
    let mut d = d.clone();
    let filler = "x".repeat(64 * 1024);
    for i in 0..64 {
        d["resources"][format!("r{i}")] = serde_json::json!({ "type": "none", "filler": filler });
    }
    let mut one = serde_json::Map::new();
    one.insert(uuid.replace(&uuid[..8], "00000000"), d);
    big = serde_json::Value::Object(one);
    let import = fleet.write("big.json", &big.to_string());
    let check = format!(
        "{small} && ! \"$0\" \"$@\" import -s {s} < {import} 2> {err} && \"$0\" \"$@\" export --all -s {s} > {after} && exit 0; exit 1",
        import = import.display(),
        err = fleet.path().join("import.err").display(),
        after = fleet.path().join("after.json").display(),
    );
    let r = in_mount_namespace(&fleet, &check, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let err = std::fs::read_to_string(fleet.path().join("import.err")).unwrap();
    assert!(
        err.contains(&format!("cannot change state file {s}: database or disk is full")),
        "{err}"
    );
    let after = std::fs::read_to_string(fleet.path().join("after.json")).unwrap();
    assert_eq!(after, before);

    // No room at all: even opening it says why.
    let full = format!(
        "{small} && (dd if=/dev/zero of={}/fill bs=4k 2>/dev/null || true)",
        dir.display()
    );
    let r = in_mount_namespace(&fleet, &full, &["set-args", "--arg", "x", "1", "-s", s]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("state file {s}")), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("no space left on the file system of {}", dir.display())),
        "{}",
        r.stderr
    );
}

#[test]
fn info_shows_what_state_has_when_the_network_no_longer_evaluates() {
    let fleet = Fleet::start(&[]);
    fleet.create("broken", &common::simple_network(&["web", "db"], ""));
    fleet.create("fine", &common::simple_network(&["other"], ""));
    fleet.ok(&["deploy", "-d", "broken", "--create-only"]);
    let net = fleet.path().join("broken.nix");

    // A syntax error.
    std::fs::write(&net, "{ web = { ... }: { }; db = \n").unwrap();
    let r = fleet.run(&["info", "-d", "broken"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Network name: broken"), "{}", r.stdout);
    for m in ["web", "db"] {
        assert!(r.stdout.contains(&format!("| {m} ")), "{}", r.stdout);
    }
    assert!(r.stderr.starts_with("warning: "), "{}", r.stderr);
    assert!(r.stderr.contains("--no-eval"), "{}", r.stderr);
    assert!(r.stderr.contains("broken.nix"), "{}", r.stderr);

    // The file is gone.
    std::fs::remove_file(&net).unwrap();
    let r = fleet.run(&["info", "-d", "broken", "--plain"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "network file {} of deployment ‘broken’ does not exist",
            net.display()
        )),
        "{}",
        r.stderr
    );
    let json = fleet.ok(&["info", "-d", "broken", "--json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["machines"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        v["evaluationError"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );

    // --all shows every deployment, the broken one too, in one table.
    let r = fleet.run(&["info", "--all"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for needle in ["| broken     | web ", "| fine       | other "] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
    assert!(r.stdout.contains("| other | Missing "), "{}", r.stdout);
    assert_eq!(r.stderr.matches("warning: ").count(), 1, "{}", r.stderr);
}

fn export(fleet: &Fleet) -> serde_json::Value {
    serde_json::from_str(&fleet.ok(&["export", "--all"]).stdout).unwrap()
}

/// The one machine resource of the only deployment, as `export` shows it.
fn exported_machine(fleet: &Fleet, machine: &str) -> serde_json::Value {
    let v = export(fleet);
    let (_, d) = v.as_object().unwrap().iter().next().unwrap();
    d["resources"][machine].clone()
}

#[test]
fn unusable_machine_names_are_refused_before_anything_is_touched() {
    let fleet = Fleet::start(&["m"]);
    fleet.create(
        "d",
        r#"{ "" = { ... }: { deployment.targetHost = "m"; }; fine = { ... }: { deployment.targetHost = "m"; }; }"#,
    );
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("machine name \"\" cannot be used: it is empty"),
        "{}",
        r.stderr
    );
    assert!(fleet.activations("m").is_empty());
    assert_eq!(exported_machine(&fleet, "fine"), serde_json::Value::Null);
    assert_eq!(fleet.ssh_count("m"), 0);

    // NixOS takes the host name from the machine's name, and Nix refuses
    // most of these in a store path's name; with a host name of its own,
    // only our check stands in the way.
    for (name, why) in [
        ("..", "it cannot be a file name"),
        ("a/b", "it contains ‘/’"),
        ("a b", "it contains white space"),
        ("a\\nb", "it contains a control character"),
        ("a,b", "it contains ‘,’"),
    ] {
        let file = fleet.write(
            "d.nix",
            &format!("{{ \"{name}\" = {{ ... }}: {{ networking.hostName = \"x\"; }}; }}"),
        );
        fleet.ok(&["modify", "-d", "d", file.to_str().unwrap()]);
        for cmd in [&["deploy", "--plan-only"][..], &["dump-nix-paths"]] {
            let r = fleet.run(cmd);
            assert_eq!(r.code, 1, "{name}: {}", r.stderr);
            assert!(r.stderr.contains(why), "{name}: {}", r.stderr);
        }
    }

    // Unicode is fine, all the way: GC root, host key alias, log prefix.
    let file = fleet.write(
        "d.nix",
        r#"{ "é" = { ... }: { deployment.targetHost = "m"; networking.hostName = "e"; }; }"#,
    );
    fleet.ok(&["modify", "-d", "d", file.to_str().unwrap()]);
    let r = fleet.ok(&["deploy"]);
    assert!(r.stderr.contains("é>"), "{}", r.stderr);
    let top = fleet.exported_toplevel("d", "é").unwrap();
    assert_eq!(fleet.current_system("m"), top);
    assert!(exported_machine(&fleet, "é")["publicHostKey"].is_string());
}

fn fingerprint(pub_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_file)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn a_reinstalled_machine_is_refused_until_its_new_host_key_is_accepted() {
    let fleet = Fleet::start(&["m"]);
    fleet.create(
        "d",
        &common::simple_network(&["m"], "deployment.keys.k.text = \"s\";"),
    );
    fleet.ok(&["deploy"]);
    let host = fleet.path().join("hosts/m");
    let old_key = exported_machine(&fleet, "m")["publicHostKey"]
        .as_str()
        .unwrap()
        .to_owned();

    // "Reinstall": a new host key.
    fleet.stop_host("m");
    std::fs::remove_file(host.join("ssh_host_ed25519_key")).unwrap();
    std::fs::remove_file(host.join("ssh_host_ed25519_key.pub")).unwrap();
    fleet.start_hosts(&["m"]);
    let new_fp = fingerprint(&host.join("ssh_host_ed25519_key.pub"));
    let new_key = std::fs::read_to_string(host.join("ssh_host_ed25519_key.pub")).unwrap();
    let new_key: String = new_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_ne!(new_key, old_key);

    let accept = "nixops forget-host-key -d d m";
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the host key of machine ‘m’ (root@m) is not the one pinned in state"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("ED25519 key {new_fp}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(accept), "{}", r.stderr);
    // Not unreachable: state says what it said.
    assert_eq!(exported_machine(&fleet, "m")["state"], "3");
    let r = fleet.run(&["check"]);
    assert_ne!(r.code, 0);
    assert!(r.stdout.contains(accept), "{}", r.stdout);
    assert_eq!(exported_machine(&fleet, "m")["state"], "3");
    let r = fleet.run(&["send-keys"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(accept), "{}", r.stderr);

    // Without a terminal or --confirm nothing changes.
    let r = fleet.run(&["forget-host-key", "m"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("it now presents the ED25519 key {new_fp}")),
        "{}",
        r.stderr
    );
    assert_eq!(exported_machine(&fleet, "m")["publicHostKey"], old_key.as_str());

    fleet.ok(&["forget-host-key", "m", "--confirm"]);
    assert!(exported_machine(&fleet, "m")["publicHostKey"].is_null());
    fleet.ok(&["deploy"]);
    assert_eq!(exported_machine(&fleet, "m")["publicHostKey"], new_key.as_str());
    fleet.ok(&["check"]);
}

fn alive(pid: &str) -> bool {
    // Gone, or a zombie nobody has reaped yet: either way it runs no more.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn a_hanging_key_command_is_ended_after_its_timeout() {
    let fleet = Fleet::start(&["m", "other"]);
    let dir = fleet.path().display().to_string();
    fleet.create(
        "d",
        &format!(
            r#"{{
              m = {{ ... }}: {{
                deployment.keys.vault = {{
                  keyCommand = [ "sh" "-c" "sleep 30 & echo $! > {dir}/child.pid; echo $$ > {dir}/leader.pid; printf half-a-%s secret; exec sleep 31" ];
                  keyCommandTimeout = 1;
                }};
              }};
              other = {{ ... }}: {{ deployment.keys.k.keyCommand = [ "echo" "fine" ]; }};
            }}"#
        ),
    );
    // The default is 60 s.
    let shown = fleet.ok(&["show-option", "other", "deployment.keys.k.keyCommandTimeout"]);
    assert_eq!(shown.stdout.trim(), "60");

    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("machine ‘m’: deployment.keys.vault: keyCommand"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did not finish within 1 s"), "{}", r.stderr);
    assert!(r.stderr.contains("namely on ‘m’)"), "{}", r.stderr);
    assert!(!r.stderr.contains("half-a-secret"), "{}", r.stderr);
    assert!(
        !std::fs::read(fleet.state_file())
            .unwrap()
            .windows(13)
            .any(|w| w == b"half-a-secret")
    );
    for f in ["leader.pid", "child.pid"] {
        let pid = std::fs::read_to_string(fleet.path().join(f)).unwrap();
        assert!(!alive(pid.trim()), "{f} {pid} still runs");
    }
    assert!(fleet.activations("m").is_empty());
    assert_eq!(fleet.exec("other", "cat /run/keys/k"), "fine\n");

    let file = fleet.write(
        "d.nix",
        r#"{ m = { ... }: { deployment.keys.k = { keyCommand = [ "true" ]; keyCommandTimeout = 0; }; }; }"#,
    );
    fleet.ok(&["modify", file.to_str().unwrap()]);
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "machine ‘m’: deployment.keys.k.keyCommandTimeout = 0 is not a positive number of seconds"
        ),
        "{}",
        r.stderr
    );
}

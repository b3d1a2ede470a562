//! Operating a deployment after the first deploy: check, ssh, scp, reboot,
//! generations, introspection.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{Fleet, simple_network};

fn deployed(names: &[&str], extra: &str) -> Fleet {
    let fleet = Fleet::start(names);
    fleet.create("d", &simple_network(names, extra));
    fleet.ok(&["deploy"]);
    fleet
}

#[test]
fn check_reports_drift_unreachable_and_failed_units() {
    let fleet = deployed(&["ok", "drift", "units", "down"], "");
    let r = fleet.run(&["check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.matches("| Yes    | Yes | Yes       |").count(),
        4,
        "{}",
        r.stdout
    );

    // Changed by hand behind our back.
    fleet.exec(
        "drift",
        "ln -sfn /nix/store/00000000000000000000000000000000-other /run/current-system",
    );
    std::fs::write(
        fleet.path().join("hosts/units/failed-units"),
        "foo.service\nbar.service\n",
    )
    .unwrap();
    fleet.stop_host("down");
    let r = fleet.run(&["check"]);
    assert_eq!(r.code, 4 | 2 | 16 | 32, "{}{}", r.stdout, r.stderr);
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {name} ")))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("drift")
            .contains("runs /nix/store/00000000000000000000000000000000-other instead of the deployed")
    );
    assert!(
        line("units").contains("foo.service [failed], bar.service [failed]"),
        "{}",
        line("units")
    );
    assert!(line("down").contains("| No  | No        |"), "{}", line("down"));
    // The machine that runs what was deployed reports no drift.
    assert!(!line("ok").contains("instead"), "{}", line("ok"));
    assert!(line("ok").contains("| Yes    | Yes | Yes"), "{}", line("ok"));

    // Per-machine selection and exit codes.
    assert_eq!(fleet.run(&["check", "--include", "ok"]).code, 0);
    assert_eq!(fleet.run(&["check", "--include", "units"]).code, 16);
    assert_eq!(fleet.run(&["check", "--exclude", "down", "units"]).code, 32);

    // deploy --check puts the drifted machine right and leaves the others.
    let before = fleet.activations("ok").len();
    fleet.ok(&["deploy", "--check", "--exclude", "down"]);
    assert_eq!(fleet.activations("ok").len(), before);
    assert_eq!(
        fleet.current_system("drift"),
        fleet.exported_toplevel("d", "drift").unwrap()
    );
    assert_eq!(fleet.run(&["check", "--include", "drift"]).code, 0);
    // The history says what the machine ran before: the drifted system,
    // not what state thought.
    let h: serde_json::Value = serde_json::from_str(&fleet.ok(&["history", "--json"]).stdout).unwrap();
    let drift = h[0]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["machine"] == "drift")
        .unwrap()
        .clone();
    assert_eq!(
        drift["before"],
        "/nix/store/00000000000000000000000000000000-other"
    );
    assert_eq!(drift["after"], fleet.exported_toplevel("d", "drift").unwrap());
}

#[test]
fn ssh_exit_codes_stdin_and_one_connection() {
    let fleet = deployed(&["m"], "");
    let r = fleet.run(&["ssh", "m", "--", "exit", "7"]);
    assert_eq!(r.code, 7);
    let r = fleet.ok(&["ssh", "m", "--", "cat", "/proc/sys/kernel/random/boot_id"]);
    assert_eq!(r.stdout.trim(), fleet.boot_id("m"));
    let mut child = fleet
        .nixops(&["ssh", "m", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO STDIN\n");

    // scp both ways, copy-closure, ssh-for-each, check: all over the one
    // master connection the deploy opened.
    let local = fleet.write("hello.txt", "over scp\n");
    fleet.ok(&[
        "scp",
        "--to",
        "m",
        local.to_str().unwrap(),
        "/tmp/hello-from-test.txt",
    ]);
    assert_eq!(
        fleet.exec("m", "cat /tmp/hello-from-test.txt; rm /tmp/hello-from-test.txt"),
        "over scp\n"
    );
    fleet.exec("m", "echo back > /run/from-host.txt");
    let back = fleet.path().join("back.txt");
    // NixOps' own order: the machine, then --from or --to.
    let r = fleet.ok(&["scp", "m", "--from", "/run/from-host.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "back\n");
    assert!(r.stderr.contains(":/run/from-host.txt -> "), "{}", r.stderr);
    let r = fleet.run(&["scp", "m", "/a", "/b"]);
    assert_ne!(r.code, 0);
    let path = fleet
        .ok(&["deploy", "--dry-run"])
        .stdout
        .split('\t')
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    fleet.exec("m", &format!("nix-store --delete {path} >/dev/null 2>&1 || true"));
    fleet.ok(&["copy-closure", "m", &path]);
    fleet.ok(&["check"]);
    fleet.ok(&["ssh-for-each", "--", "true"]);
    // The deploy's master (a first deploy has no rollback to confirm);
    // every command since reused it.
    assert_eq!(
        fleet.ssh_count("m"),
        1,
        "every command reused the deploy's connection"
    );
}

#[test]
fn ssh_for_each_in_parallel() {
    let names = ["a", "b", "c", "d", "e"];
    let fleet = deployed(&names, "");
    let r = fleet.ok(&[
        "ssh-for-each",
        "-p",
        "--",
        "cat",
        "/etc/hostname-does-not-matter",
        "2>/dev/null;",
        "echo",
        "hi",
    ]);
    for n in names {
        assert!(r.stdout.contains(&format!("{n}> hi")), "{}", r.stdout);
    }
    let r = fleet.run(&[
        "ssh-for-each",
        "-p",
        "--exclude",
        "a",
        "--",
        "test",
        "$(cat /proc/sys/kernel/random/boot_id)",
        "!=",
        &fleet.boot_id("c"),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("‘c’ (exit code 1)"), "{}", r.stderr);
    assert!(!r.stderr.contains("‘b’"), "{}", r.stderr);
}

#[test]
fn reboot_waits_for_a_new_boot() {
    let fleet = deployed(&["r1", "r2"], "deployment.keys.k.text = \"kept across reboots\";");
    let (b1, b2) = (fleet.boot_id("r1"), fleet.boot_id("r2"));
    fleet.ok(&["reboot", "--include", "r1"]);
    assert_ne!(fleet.boot_id("r1"), b1);
    // The reboot emptied /run; the key was sent again.
    assert_eq!(fleet.exec("r1", "cat /run/keys/k"), "kept across reboots");
    assert_eq!(fleet.boot_id("r2"), b2);
    // The machine is usable right away, booted into the deployed system.
    let t = fleet.exported_toplevel("d", "r1").unwrap();
    assert_eq!(
        fleet
            .ok(&["ssh", "r1", "--", "readlink", "/run/booted-system"])
            .stdout
            .trim(),
        t
    );

    fleet.ok(&["reboot", "--include", "r2", "--no-wait"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_ne!(fleet.boot_id("r2"), b2);

    let r = fleet.run(&["stop"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot stop machine ‘r1’"), "{}", r.stderr);
    assert_eq!(fleet.run(&["start", "--include", "r2"]).code, 1);
    assert_ne!(fleet.run(&["reboot", "--hard"]).code, 0);
}

#[test]
fn destroy_forgets_machines_after_confirmation() {
    let fleet = deployed(&["x", "y"], "");
    let r = fleet.run(&["destroy", "--include", "x"]);
    assert_ne!(r.code, 0, "no terminal and no --confirm: nothing happens");
    assert!(fleet.ok(&["export"]).stdout.contains("\"x\""));
    let r = fleet.ok(&["destroy", "--include", "x", "--confirm"]);
    assert!(r.stderr.contains("keeps running"), "{}", r.stderr);
    // Gone from the resources (the history still tells what it ran).
    let exported = fleet.ok(&["export"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let (_, d) = v.as_object().unwrap().iter().next().unwrap();
    let resources = d["resources"].as_object().unwrap();
    assert!(
        !resources.contains_key("x") && resources.contains_key("y"),
        "{exported}"
    );
    assert!(
        !fleet.current_system("x").is_empty(),
        "the machine itself is untouched"
    );
}

#[test]
fn generations_and_rollback() {
    let fleet = Fleet::start(&["g1", "g2"]);
    let file = fleet.write("net.nix", "");
    let net = |text: &str| {
        format!(
            "{{ network.enableRollback = true; g1 = {{ ... }}: {{ environment.etc.v.text = \"{text}\"; }}; g2 = {{ ... }}: {{ environment.etc.v.text = \"{text}\"; }}; }}"
        )
    };
    std::fs::write(&file, net("one")).unwrap();
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = fleet.ok(&["deploy"]);
    assert!(r.stderr.contains("recorded generation 1"), "{}", r.stderr);
    let first = (fleet.current_system("g1"), fleet.current_system("g2"));
    std::fs::write(&file, net("two")).unwrap();
    let r = fleet.ok(&["deploy"]);
    assert!(r.stderr.contains("recorded generation 2"), "{}", r.stderr);
    assert_ne!(fleet.current_system("g1"), first.0);

    let list = fleet.ok(&["list-generations"]).stdout;
    assert!(
        list.contains("| 1 ") && list.contains("| 2 ") && list.contains("(current)"),
        "{list}"
    );
    fleet.ok(&["rollback", "1"]);
    assert_eq!((fleet.current_system("g1"), fleet.current_system("g2")), first);
    assert_eq!(fleet.exported_toplevel("d", "g1").unwrap(), first.0);
    // NixOps' --check: machines already running the generation are left
    // alone (and --no-sync is taken).
    let activations = fleet.activations("g1").len();
    let r = fleet.ok(&["rollback", "1", "--check", "--no-sync"]);
    assert!(r.stderr.contains("already running it"), "{}", r.stderr);
    assert_eq!(fleet.activations("g1").len(), activations);
    assert_eq!(fleet.exec("g2", "cat /run/current-system/etc/v"), "one");
    let list = fleet.ok(&["list-generations"]).stdout;
    assert!(
        list.lines()
            .any(|l| l.starts_with("| 1 ") && l.contains("(current)")),
        "{list}"
    );

    assert_ne!(
        fleet.run(&["delete-generation", "1"]).code,
        0,
        "the current generation stays"
    );
    fleet.ok(&["delete-generation", "2"]);
    let list = fleet.ok(&["list-generations"]).stdout;
    assert!(!list.contains("| 2 "), "{list}");
    assert_ne!(fleet.run(&["rollback", "2"]).code, 0);
}

#[test]
fn generations_need_enable_rollback() {
    let fleet = deployed(&["m"], "");
    let r = fleet.run(&["list-generations"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("network.enableRollback = true"), "{}", r.stderr);
    assert_ne!(fleet.run(&["rollback", "1"]).code, 0);
}

#[test]
fn introspection_commands() {
    let fleet = deployed(
        &["web"],
        "services.nginx.enable = true; services.nginx.virtualHosts.\"a.example\".locations.\"/\".proxyPass = \"http://x\";",
    );
    assert_eq!(
        fleet
            .ok(&["show-option", "web", "services.nginx.enable"])
            .stdout
            .trim(),
        "true"
    );
    let v = fleet
        .ok(&["show-option", "web", "services.nginx.virtualHosts", "--json"])
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["a.example"]["locations"]["/"]["proxyPass"], "http://x");
    assert_eq!(
        fleet
            .ok(&[
                "show-option",
                "web",
                "services.nginx.virtualHosts.\"a.example\".locations.\"/\".proxyPass"
            ])
            .stdout
            .trim(),
        "\"http://x\""
    );
    let r = fleet.run(&["show-option", "web", "services.nosuch"]);
    assert!(
        r.stderr.contains("has no option ‘services.nosuch’"),
        "{}",
        r.stderr
    );
    let r = fleet.run(&["show-option", "nosuch", "networking.hostName"]);
    assert!(r.stderr.contains("no machine named ‘nosuch’"), "{}", r.stderr);

    // NixOps 2.0's physical spec (tests/nixops_systems.rs compares it with
    // NixOps' own): for existing machines, no host keys of the others.
    let phys = fleet.ok(&["show-physical"]).stdout;
    assert!(
        phys.starts_with("{\n  web = { config, lib, pkgs, ... }: {\n")
            && phys.contains("system.stateVersion = ( lib.mkDefault \"23.11\" );")
            && !phys.contains("knownHosts"),
        "{phys}"
    );
    // show-option, as NixOps: the physical spec only with --include-physical.
    let extra_hosts = |extra: &[&str]| {
        let mut args = vec!["show-option", "web", "networking.extraHosts", "--json"];
        args.extend(extra);
        fleet.ok(&args).stdout.trim().to_owned()
    };
    assert_eq!(extra_hosts(&["--include-physical"]), "\"\\n\"");
    assert_eq!(extra_hosts(&[]), "\"\"");
    let r = fleet.run(&["show-physical", "--backup", "b1"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("show-physical --backup: NixOps' backups are snapshots"),
        "{}",
        r.stderr
    );

    let paths = fleet.ok(&["dump-nix-paths"]).stdout;
    let t = fleet.exported_toplevel("d", "web").unwrap();
    assert!(paths.lines().any(|l| l == t), "{paths}");

    let out = fleet.nixops(&["edit"]).env("EDITOR", "cat").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("services.nginx.enable"));

    let info: serde_json::Value = serde_json::from_str(&fleet.ok(&["info", "--json"]).stdout).unwrap();
    assert_eq!(info["machines"][0]["status"], "Up / Up-to-date");
    let list: serde_json::Value = serde_json::from_str(&fleet.ok(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["name"], "d");

    // The script only registers nixops as bash's completer (tests/completions.rs: what it answers).
    let script = fleet.ok(&["completions", "bash"]).stdout;
    assert!(script.contains("-F _clap_complete_nixops nixops"), "{script}");
    // The header's fields in their places: name, section, date, source, manual.
    let man = fleet.ok(&["man"]).stdout;
    let th = man
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_default()
        .to_owned();
    let date = th.split_whitespace().nth(3).unwrap_or_default();
    assert!(
        th.starts_with(".TH nixops 1 ")
            && date.len() == 10
            && date.as_bytes()[4] == b'-'
            && th.ends_with("\"nixops manual\""),
        "{th}"
    );
}

#[test]
fn unlock_refuses_a_live_lock_and_clears_a_dead_one() {
    let fleet = Fleet::start(&["m"]);
    let uuid = fleet.create("d", &simple_network(&["m"], "stub.activation.sleep = 3;"));
    assert!(fleet.ok(&["unlock"]).stderr.contains("not locked"));
    let deploy = fleet.nixops(&["deploy"]).stderr(Stdio::piped()).spawn().unwrap();
    fleet.wait_for_lock(&uuid);
    let r = fleet.run(&["unlock"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(&format!("pid {}", deploy.id())), "{}", r.stderr);
    assert!(deploy.wait_with_output().unwrap().status.success());
    // A lock file left by a process that is gone.
    let uuid = fleet.ok(&["list", "--json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&uuid).unwrap();
    let lock = fleet
        .path()
        .join("home/.nixops/locks")
        .join(v[0]["uuid"].as_str().unwrap());
    std::fs::write(&lock, "999999\n").unwrap();
    assert!(fleet.ok(&["unlock"]).stderr.contains("removed the stale lock"));
    assert!(!lock.exists());
}

/// `info` as NixOps prints it, which scripts read: six tab-separated
/// fields with `--plain` (uuid and name first with `--all`), statuses such
/// as `Up / Up-to-date`, machines in NixOps' order; it evaluates the
/// systems (from the evaluation cache where nothing changed), `--no-eval`
/// shows state only; `list` evaluates nothing.
#[test]
fn info_prints_what_nixops_prints() {
    let fleet = deployed(&["web"], "");
    let uuid = fleet.ok(&["list", "--json"]).stdout;
    let uuid = serde_json::from_str::<serde_json::Value>(&uuid).unwrap()[0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = fleet.ok(&["info", "--plain"]);
    assert_eq!(r.stdout, "web\tup / up-to-date\tnone\t\t\t\n");
    let r = fleet.ok(&["info", "--all", "--plain"]);
    assert_eq!(r.stdout, format!("{uuid}\td\tweb\tup / up-to-date\tnone\t\t\t\n"));
    let r = fleet.ok(&["info", "--all"]);
    assert!(r.stdout.contains("| Deployment | Name"), "{}", r.stdout);
    assert!(
        r.stdout.contains("| d          | web  | Up / Up-to-date |"),
        "{}",
        r.stdout
    );
    // A machine not yet in state is Missing; in NixOps' order.
    fleet.write(
        "d.nix",
        "{ network.description = \"test network\"; web = { ... }: { }; web10 = { ... }: { }; web9 = { ... }: { }; }",
    );
    let r = fleet.ok(&["info", "--plain"]);
    assert_eq!(
        r.stdout,
        "web\tup / up-to-date\tnone\t\t\t\nweb9\tmissing\tnone\t\t\t\nweb10\tmissing\tnone\t\t\t\n"
    );
    // Another machine that does not evaluate: a warning naming it; the
    // others' status is still the evaluated one.
    fleet.write(
        "d.nix",
        "{ network.description = \"test network\"; web = { ... }: { }; other = { ... }: { environment.etc.x.text = throw \"broken other\"; }; }",
    );
    let r = fleet.ok(&["info", "--plain"]);
    assert_eq!(r.stdout, "web\tup / up-to-date\tnone\t\t\t\n");
    assert!(
        r.stderr
            .contains("machine ‘other’ of deployment ‘d’ does not evaluate")
            && r.stderr.contains("broken other"),
        "{}",
        r.stderr
    );
    // A system that can no longer be evaluated: a warning, and what state
    // has; --no-eval does not try.
    fleet.write(
        "d.nix",
        "{ network.description = \"test network\"; web = { ... }: { environment.etc.x.text = throw \"evaluated the system\"; }; }",
    );
    let r = fleet.ok(&["info", "--plain"]);
    assert!(r.stderr.contains("evaluated the system"), "{}", r.stderr);
    assert_eq!(r.stdout, "web\tup\tnone\t\t\t\n");
    let r = fleet.ok(&["info", "--plain", "--no-eval"]);
    assert!(!r.stderr.contains("evaluated the system"), "{}", r.stderr);
    assert_eq!(r.stdout, "web\tup\tnone\t\t\t\n");
    // list reads state only: even a network file that is gone does not matter.
    std::fs::remove_file(fleet.path().join("d.nix")).unwrap();
    let r = fleet.ok(&["list"]);
    assert!(r.stdout.contains("test network"), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

/// Two machines on one host, only one deployed: the host's record of its
/// newest activation proves nothing for the other, so `check` records
/// nothing for it; and `ssh` to the undeployed one says it has not been
/// deployed.
#[test]
fn a_machine_sharing_a_host_is_not_taken_for_the_deployed_one() {
    let fleet = Fleet::start(&["h"]);
    let file = fleet.write(
        "net.nix",
        "{ web = { ... }: { deployment.targetHost = \"h\"; environment.etc.who.text = \"web\"; };\n  db = { ... }: { deployment.targetHost = \"h\"; environment.etc.who.text = \"db\"; }; }\n",
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy", "--include", "web"]);
    let web = fleet.exported_toplevel("d", "web").unwrap();
    // db is in state (its options recorded), never deployed.
    let export = fleet.ok(&["export"]).stdout;
    assert!(export.contains("\"db\""), "{export}");
    let r = fleet.run(&["check"]);
    assert!(!r.stdout.contains("interrupted deploy"), "{}", r.stdout);
    assert_eq!(fleet.exported_toplevel("d", "db"), None, "{}", r.stdout);
    assert_eq!(fleet.exported_toplevel("d", "web").as_deref(), Some(web.as_str()));
    let info = fleet.ok(&["info", "--plain"]).stdout;
    let db = info.lines().find(|l| l.starts_with("db\t")).unwrap_or_default();
    assert!(db.contains("outdated"), "{info}");

    let r = fleet.run(&["ssh", "api", "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("has not been deployed yet"), "{}", r.stderr);
    assert!(r.stderr.contains("deployed: "), "{}", r.stderr);
}

/// `rename` renames a machine, as NixOps does: its state (toplevel, host
/// key) and GC root go with it, and the network that names it anew deploys
/// with nothing to change.
#[test]
fn rename_renames_a_machine() {
    let fleet = Fleet::start(&["m"]);
    // The host name pinned: it defaults to the machine's name.
    let machine = "{ ... }: { deployment.targetHost = \"m\"; networking.hostName = \"m\"; }";
    let file = fleet.write("d.nix", &format!("{{ old = {machine}; }}\n"));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    let t = fleet.exported_toplevel("d", "old").unwrap();
    let r = fleet.ok(&["rename", "-d", "d", "old", "new"]);
    assert!(
        r.stderr.contains("renaming resource ‘old’ to ‘new’"),
        "{}",
        r.stderr
    );
    assert_eq!(fleet.exported_toplevel("d", "new"), Some(t.clone()));
    assert_eq!(fleet.exported_toplevel("d", "old"), None);
    let export = fleet.ok(&["export"]).stdout;
    assert!(export.contains("publicHostKey"), "{export}");
    let root = format!("/nix/var/nix/gcroots/per-user/{}/nixops", common::whoami());
    let uuid = serde_json::from_str::<serde_json::Value>(&export)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        std::fs::read_link(format!("{root}/{uuid}/new")).unwrap().to_str(),
        Some(t.as_str())
    );
    assert!(std::fs::symlink_metadata(format!("{root}/{uuid}/old")).is_err());
    // Unknown, taken and unusable names are refused.
    assert!(
        fleet
            .run(&["rename", "-d", "d", "old", "x"])
            .stderr
            .contains("no resource ‘old’")
    );
    let r = fleet.run(&["rename", "-d", "d", "new", "a/b"]);
    assert_ne!(r.code, 0);
    // The network renamed too: the same system, and the host key pinned.
    fleet.write("d.nix", &format!("{{ new = {machine}; }}\n"));
    let r = fleet.ok(&["deploy"]);
    assert!(!r.stderr.contains("obsolete"), "{}", r.stderr);
    assert_eq!(fleet.current_system("m"), t);
}

/// `--read-only-mode`, as NixOps: evaluations write nothing to the Nix
/// store; a command that must build refuses it by name.
#[test]
fn read_only_mode_writes_nothing_to_the_store() {
    // A system name no other test builds, to count its derivations.
    let host = format!("ro{}", std::process::id());
    let fleet = deployed(&["web"], &format!("networking.hostName = \"{host}\";"));
    let drvs = || {
        std::fs::read_dir("/nix/store")
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.ends_with(&format!("-nixos-system-{host}-stub.drv"))
            })
            .count()
    };
    let before = drvs();
    fleet.write(
        "d.nix",
        &simple_network(
            &["web"],
            &format!("networking.hostName = \"{host}\"; environment.etc.ro.text = \"new\";"),
        ),
    );
    let r = fleet.ok(&["info", "--plain", "--read-only-mode"]);
    assert!(r.stdout.starts_with("web\tup / outdated"), "{}", r.stdout);
    assert_eq!(drvs(), before, "read-only mode wrote a derivation");
    for cmd in ["deploy", "plan"] {
        let r = fleet.run(&[cmd, "--read-only-mode"]);
        assert_ne!(r.code, 0, "{cmd}");
        assert!(r.stderr.contains("--read-only-mode"), "{cmd}: {}", r.stderr);
    }
    // Without it, the same info writes the new system's derivation.
    fleet.ok(&["info", "--plain"]);
    assert_eq!(drvs(), before + 1);
}

/// NixOps' commands that do not apply to existing machines refuse by name,
/// saying why; those that do, do what NixOps does.
#[test]
fn nixops_commands_for_cloud_machines_say_why_they_do_not_apply() {
    let fleet = deployed(&["web"], "");
    for args in [
        &["backup"][..],
        &["backup", "--include", "web", "--freeze"],
        &["backup-status", "--latest"],
        &["remove-backup", "b-1"],
        &["clean-backups", "--keep", "3"],
        &["restore", "--backup-id", "b-1"],
    ] {
        let r = fleet.run(args);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(
            r.stderr.contains("snapshots of cloud machines") && r.stderr.contains("‘web’ (none)"),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = fleet.ok(&["show-console-output", "web"]);
    assert_eq!(r.stdout, "(not available for this machine type)\n");
    assert_ne!(fleet.run(&["show-console-output", "nosuch"]).code, 0);
    assert!(fleet.ok(&["list-plugins"]).stdout.contains("targetEnv none"));
    // A mistyped option still gets clap's suggestion, of a real one.
    let r = fleet.run(&["deploy", "--evaluate-onl"]);
    assert!(r.stderr.contains("--evaluate-only"), "{}", r.stderr);
}

/// `--all` of ssh-for-each and dump-nix-paths covers every deployment;
/// `ssh --now` is taken (ssh never waits for the lock); `destroy --wipe`
/// refuses for existing machines, whose disks are not ours to wipe.
#[test]
fn all_deployments_now_and_wipe() {
    let fleet = Fleet::start(&["a", "b"]);
    fleet.create("one", &simple_network(&["a"], ""));
    fleet.create("two", &simple_network(&["b"], ""));
    fleet.ok(&["deploy", "-d", "one"]);
    fleet.ok(&["deploy", "-d", "two"]);
    let r = fleet.ok(&["ssh-for-each", "--all", "--", "echo", "here"]);
    assert!(
        r.stdout.contains("a> here") && r.stdout.contains("b> here"),
        "{}",
        r.stdout
    );
    let paths = fleet.ok(&["dump-nix-paths", "--all"]).stdout;
    for d in ["one", "two"] {
        let m = if d == "one" { "a" } else { "b" };
        let t = fleet.exported_toplevel(d, m).unwrap();
        assert!(paths.lines().any(|l| l == t), "{paths}");
    }
    let r = fleet.ok(&["ssh", "-d", "one", "--now", "a", "echo", "hi"]);
    assert_eq!(r.stdout, "hi\n");
    let r = fleet.run(&["destroy", "-d", "one", "--wipe", "--confirm"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--wipe"), "{}", r.stderr);
    assert!(
        fleet.exported_toplevel("one", "a").is_some(),
        "nothing was forgotten"
    );
}

/// NixOps' `delete-resources`: from the state only, each after its own
/// question; the machine keeps running.
#[test]
fn delete_resources_clears_the_state_of_each_after_asking() {
    let fleet = deployed(&["x", "y"], "");
    let resources = || {
        let v: serde_json::Value = serde_json::from_str(&fleet.ok(&["export"]).stdout).unwrap();
        let (_, d) = v.as_object().unwrap().iter().next().unwrap();
        let mut names: Vec<String> = d["resources"].as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    };
    // No terminal, no --confirm: every question is answered no.
    fleet.ok(&["delete-resources"]);
    assert_eq!(resources(), ["x", "y"]);
    let r = fleet.ok(&["delete-resources", "--exclude", "y", "--confirm"]);
    assert!(
        r.stderr.contains("removing resource ‘x’ from the state"),
        "{}",
        r.stderr
    );
    assert_eq!(resources(), ["y"]);
    assert!(
        !fleet.current_system("x").is_empty(),
        "the machine itself is untouched"
    );
    let r = fleet.run(&["delete-resources", "--include", "nosuch", "--confirm"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
}

/// NixOps' `mount MACHINE[:PATH] DEST`: sshfs over the machine's master
/// connection (so its port and pinned host key apply).
#[test]
fn mount_mounts_a_directory_of_the_machine_with_sshfs() {
    if std::process::Command::new("sshfs")
        .arg("--version")
        .output()
        .is_err()
    {
        // scripts/install-deps.sh installs it; a machine without it says so.
        eprintln!("NOTICE: skipped: sshfs is not installed");
        return;
    }
    let fleet = deployed(&["x"], "");
    let system = fleet.current_system("x");
    let dir = fleet.path().join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        r#"set -e
"$NIXOPS" mount x:{system} {mnt} -o ro
trap 'umount {mnt}' EXIT
cat {mnt}/config.json >/dev/null && echo mounted-ok
"#,
        mnt = dir.display()
    );
    let out = fleet.nixops_shell(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("mounted-ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = fleet.run(&["mount", "nosuch", dir.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
}

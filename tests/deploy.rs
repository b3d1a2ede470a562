//! `nixops deploy` against the test fleet.

mod common;

use common::{Backend, Fleet, simple_network};

// The deploy tests whose outcome depends on state (records, obsolete
// machines, the lock, failed deploys that must record nothing) run on both
// backends; the others exercise machines, not state, and run on SQLite.
on_both_backends!(
    user_example_deploys,
    one_failing_and_one_unreachable_machine_do_not_stop_the_others,
    obsolete_machines_and_kill_obsolete,
    concurrent_deploys_of_one_deployment_take_turns,
    broken_network_file_names_file_and_keeps_state,
);

const USER_EXAMPLE: &str = r#"
let
  proxyHostname = "proxy.example.com";
  gitHostname = "git.example.com";
in {
  network.description = "Staging environment for our git setup";
  defaults.imports = [ ./common.nix ];

  reverse-proxy = { nodes, ... }: {
    deployment.targetHost = proxyHostname;
    services.nginx = {
      enable = true;
      virtualHosts."example.com".locations."/" = {
        proxyPass = "http://${gitHostname}:${nodes.gitServer.config.services.forgejo.port}";
      };
    };
  };

  gitServer = _: {
    deployment.targetHost = gitHostname;
    services.forgejo.enable = true;
  };
}
"#;

fn config_json(fleet: &Fleet, host: &str) -> serde_json::Value {
    serde_json::from_str(&fleet.exec(host, "cat /run/current-system/config.json")).unwrap()
}

fn user_example_deploys(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["proxy.example.com", "git.example.com"]);
    fleet.write("common.nix", "{ ... }: { services.openssh.enable = true; }\n");
    let file = fleet.write("network-staging.nix", USER_EXAMPLE);
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "staging"]);
    let r = fleet.ok(&["deploy", "-d", "staging"]);
    assert!(r.stderr.contains("reverse-proxy"), "{}", r.stderr);

    let proxy = config_json(&fleet, "proxy.example.com");
    assert_eq!(proxy["hostName"], "reverse-proxy");
    assert_eq!(
        proxy["nginx"]["virtualHosts"]["example.com"]["locations"]["/"]["proxyPass"],
        "http://git.example.com:3000"
    );
    let git = config_json(&fleet, "git.example.com");
    assert_eq!(git["hostName"], "gitServer");
    assert_eq!(git["forgejo"]["enable"], true);

    for (machine, host) in [
        ("reverse-proxy", "proxy.example.com"),
        ("gitServer", "git.example.com"),
    ] {
        let recorded = fleet
            .exported_toplevel("staging", machine)
            .expect("toplevel recorded");
        assert_eq!(fleet.current_system(host), recorded);
        let profile = fleet.exec(host, "readlink -f /nix/var/nix/profiles/system");
        assert_eq!(profile.trim(), recorded);
        assert_eq!(fleet.activations(host), vec![format!("switch {recorded}")]);
    }

    let info = fleet.ok(&["info", "-d", "staging"]);
    assert!(
        info.stdout.contains("Staging environment for our git setup"),
        "{}",
        info.stdout
    );
    // Nothing the machines' evaluation read changed since the deploy: the
    // evaluation cache tells Up-to-date without evaluating.
    assert_eq!(
        info.stdout.matches("| Up / Up-to-date").count(),
        2,
        "{}",
        info.stdout
    );
    let info = fleet.ok(&["info", "-d", "staging", "--check-outdated"]);
    assert_eq!(info.stdout.matches("Up-to-date").count(), 2, "{}", info.stdout);

    // One SSH connection per machine for the whole deploy, copy included
    // (no magic rollback: the hosts ran no system before, so there is
    // nothing to go back to).
    assert_eq!(fleet.ssh_count("proxy.example.com"), 1);
    assert_eq!(fleet.ssh_count("git.example.com"), 1);

    // A no-op redeploy activates again (alwaysActivate defaults to true)
    // over the still-open master connections. It needs no magic rollback
    // guard, hence no confirmation over a new connection: the machine runs,
    // boots and kept that system, which is all a guard could go back to.
    fleet.ok(&["deploy", "-d", "staging"]);
    assert_eq!(fleet.activations("proxy.example.com").len(), 2);
    assert_eq!(fleet.ssh_count("proxy.example.com"), 1);
    fleet.ok(&["deploy", "-d", "staging", "--no-magic-rollback"]);
    assert_eq!(fleet.activations("proxy.example.com").len(), 3);
    assert_eq!(fleet.ssh_count("proxy.example.com"), 1);
}

fn one_failing_and_one_unreachable_machine_do_not_stop_the_others(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["good1", "bad", "good2", "down"]);
    let net = r#"{
      good1 = { ... }: { };
      good2 = { ... }: { };
      bad = { ... }: { stub.activation.fail = true; };
      down = { ... }: { };
    }"#;
    fleet.create("d", net);
    fleet.stop_host("down");
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("namely on ‘bad’, ‘down’"), "{}", r.stderr);
    assert!(
        r.stderr.contains("stub activation failure requested"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("cannot reach machine"), "{}", r.stderr);
    // The summary tells the kinds apart: one failed, one unreachable.
    let row = |name: &str| r.summary_row(name);
    assert!(
        row("down").contains("connect") && row("down").contains("unreachable"),
        "{}",
        r.stderr
    );
    assert!(
        row("bad").contains("activation") && row("bad").contains("failed"),
        "{}",
        r.stderr
    );
    for good in ["good1", "good2"] {
        let t = fleet.exported_toplevel("d", good).expect("good machine recorded");
        assert_eq!(fleet.current_system(good), t);
    }
    // The failed machines record no toplevel: they do not run one of ours.
    assert_eq!(fleet.exported_toplevel("d", "bad"), None);
    assert_eq!(fleet.exported_toplevel("d", "down"), None);
    let info = fleet.ok(&["info", "--plain"]);
    assert!(
        info.stdout
            .lines()
            .any(|l| l.starts_with("down\tunreachable / outdated")),
        "{}",
        info.stdout
    );
}

#[test]
fn include_and_exclude_select_machines() {
    let fleet = Fleet::start(&["a", "b", "c"]);
    fleet.create("d", &simple_network(&["a", "b", "c"], ""));
    fleet.ok(&["deploy", "--include", "a", "b", "--exclude", "b"]);
    assert!(!fleet.current_system("a").is_empty());
    assert!(fleet.current_system("b").is_empty());
    assert!(fleet.current_system("c").is_empty());
    fleet.ok(&["deploy", "--exclude", "a"]);
    assert!(!fleet.current_system("b").is_empty());
    assert!(!fleet.current_system("c").is_empty());
    assert_eq!(fleet.activations("a").len(), 1);
    let r = fleet.run(&["deploy", "--include", "nosuch"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no machine named ‘nosuch’"), "{}", r.stderr);
}

#[test]
fn reboot_request_needs_allow_reboot() {
    let fleet = Fleet::start(&["m"]);
    fleet.create(
        "d",
        &simple_network(&["m"], "stub.activation.requestReboot = true;"),
    );
    let before = fleet.boot_id("m");
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("requires a reboot"), "{}", r.stderr);
    assert_eq!(fleet.boot_id("m"), before);
    // As on NixOS, exit 100 activated nothing: the new system is only the
    // boot default, and state does not claim the machine runs it.
    assert_eq!(fleet.current_system("m"), "");
    assert_eq!(fleet.exported_toplevel("d", "m"), None);

    let r = fleet.ok(&["deploy", "--allow-reboot"]);
    let after = fleet.boot_id("m");
    assert_ne!(after, before, "{}", r.stderr);
    let t = fleet.exported_toplevel("d", "m").unwrap();
    assert_eq!(fleet.current_system("m"), t);
    assert_eq!(fleet.exec("m", "readlink /run/booted-system").trim(), t);
    // Booted into it: no further reboot is requested.
    fleet.ok(&["deploy"]);
    assert_eq!(fleet.boot_id("m"), after);
}

#[test]
fn force_reboot_boots_into_the_new_system() {
    let fleet = Fleet::start(&["m"]);
    fleet.create("d", &simple_network(&["m"], ""));
    let before = fleet.boot_id("m");
    fleet.ok(&["deploy", "--force-reboot"]);
    assert_ne!(fleet.boot_id("m"), before);
    let t = fleet.exported_toplevel("d", "m").unwrap();
    assert_eq!(fleet.current_system("m"), t);
    // It came up from the system profile the deploy set (a reboot empties
    // /run, so the activation log tells nothing here).
    assert_eq!(fleet.profile("m"), t);
    assert_eq!(fleet.exec("m", "readlink /run/booted-system").trim(), t);
}

#[test]
fn activation_modes() {
    let fleet = Fleet::start(&["m"]);
    fleet.create("d", &simple_network(&["m"], ""));

    let r = fleet.ok(&["deploy", "--dry-run"]);
    assert!(r.stdout.contains("m\t/nix/store/"), "{}", r.stdout);
    assert_eq!(fleet.ssh_count("m"), 0);

    fleet.ok(&["deploy", "--build-only"]);
    assert_eq!(fleet.exec("m", "ls /nix/store 2>/dev/null | wc -l").trim(), "0");

    fleet.ok(&["deploy", "--copy-only"]);
    let t = {
        let out = fleet.ok(&["deploy", "--dry-run"]);
        out.stdout.split('\t').nth(1).unwrap().trim().to_owned()
    };
    assert_eq!(
        fleet
            .exec(
                "m",
                &format!("test -e {t}/bin/switch-to-configuration && echo yes")
            )
            .trim(),
        "yes"
    );
    assert!(fleet.current_system("m").is_empty());

    fleet.ok(&["deploy", "--dry-activate"]);
    assert_eq!(fleet.activations("m"), vec![format!("dry-activate {t}")]);
    assert!(fleet.current_system("m").is_empty());
    assert_eq!(fleet.exported_toplevel("d", "m"), None);

    fleet.ok(&["deploy", "--test"]);
    assert_eq!(fleet.current_system("m"), t);
    assert_eq!(
        fleet
            .exec("m", "readlink /nix/var/nix/profiles/system || echo none")
            .trim(),
        "none"
    );

    fleet.ok(&["deploy", "--boot"]);
    assert!(fleet.activations("m").last().unwrap().starts_with("boot "));
    assert_eq!(
        fleet.exec("m", "readlink -f /nix/var/nix/profiles/system").trim(),
        t
    );

    // switch-to-configuration flushes unless --no-sync says not to.
    let env = || {
        fleet
            .exec("m", "tail -n 1 /run/stub-os/environment.log")
            .trim()
            .to_owned()
    };
    assert_eq!(env(), "boot NIXOS_NO_SYNC=");
    fleet.ok(&["deploy", "--no-sync"]);
    assert!(fleet.activations("m").last().unwrap().starts_with("switch "));
    assert_eq!(env(), "switch NIXOS_NO_SYNC=1");
}

#[test]
fn always_activate_false_skips_unchanged_machines() {
    let fleet = Fleet::start(&["m"]);
    fleet.create("d", &simple_network(&["m"], "deployment.alwaysActivate = false;"));
    fleet.ok(&["deploy"]);
    fleet.ok(&["deploy"]);
    assert_eq!(fleet.activations("m").len(), 1);
    let r = fleet.ok(&["deploy", "--always-activate"]);
    assert_eq!(fleet.activations("m").len(), 2);
    assert!(
        r.stderr
            .contains("it runs this system already: activating it again"),
        "{}",
        r.stderr
    );
}

fn obsolete_machines_and_kill_obsolete(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["a", "b"]);
    let file = fleet.write("net.nix", &simple_network(&["a", "b"], ""));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    fleet.write("net.nix", &simple_network(&["a"], ""));
    let r = fleet.ok(&["deploy"]);
    assert!(r.stderr.contains("machine ‘b’ is obsolete"), "{}", r.stderr);
    let info = fleet.ok(&["info", "--plain"]);
    assert!(info.stdout.contains("b\tup / obsolete"), "{}", info.stdout);
    fleet.ok(&["deploy", "-k"]);
    let info = fleet.ok(&["info", "--plain"]);
    assert!(!info.stdout.contains("b\t"), "{}", info.stdout);
}

fn concurrent_deploys_of_one_deployment_take_turns(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["m"]);
    let uuid = fleet.create("d", &simple_network(&["m"], "stub.activation.sleep = 2;"));
    let first = fleet
        .nixops(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    fleet.wait_for_lock(&uuid);
    let second = fleet.run(&["deploy"]);
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("waiting for exclusive deployment lock..."),
        "{}",
        second.stderr
    );
    // The waiter names the holder, as the PostgreSQL lock does.
    assert!(
        second.stderr.contains(&format!("held by {}@", common::whoami())) && second.stderr.contains(", pid "),
        "{}",
        second.stderr
    );
    assert_eq!(fleet.activations("m").len(), 2);
}

#[test]
fn host_key_is_pinned_after_first_contact() {
    let fleet = Fleet::start(&["m"]);
    fleet.create("d", &simple_network(&["m"], ""));
    fleet.ok(&["deploy"]);
    let out = fleet.ok(&["export"]);
    assert!(
        out.stdout.contains("\"publicHostKey\": \"ssh-ed25519 "),
        "{}",
        out.stdout
    );
    // The machine comes back with another host key: refused.
    let key = fleet.path().join("hosts/m/ssh_host_ed25519_key");
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(key.with_extension("pub")).ok();
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    fleet.stop_host("m");
    let st = std::process::Command::new(common::fleet_sh())
        .arg("start")
        .arg(fleet.path())
        .arg("m")
        .status()
        .unwrap();
    assert!(st.success());
    let r = fleet.run(&["deploy", "--ssh-persist", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.to_lowercase().contains("host key"), "{}", r.stderr);
}

fn broken_network_file_names_file_and_keeps_state(backend: Backend) {
    let fleet = Fleet::start_on(backend, &[]);
    let file = fleet.write("net.nix", "{ m = { ... }: { services.nosuch.enable = true; }; }");
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("services.nosuch"), "{}", r.stderr);
    fleet.write("net.nix", "{ m = { ... }: { networking.hostName = ; }; }");
    let r = fleet.run(&["deploy", "--show-trace"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("net.nix"), "{}", r.stderr);
    // An attribute NixOps does not know: ignored, as NixOps does, with a
    // warning that names what it likely meant.
    fleet.write("net.nix", "{ network.rollback = true; m = { ... }: { }; }");
    let r = fleet.ok(&["info"]);
    assert!(
        r.stderr.contains("‘network.rollback’") && r.stderr.contains("did you mean ‘network.enableRollback’"),
        "{}",
        r.stderr
    );
    // No machine was recorded by the failed deploys (the history says
    // they failed).
    let out = fleet.ok(&["export"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let d = v.as_object().unwrap().values().next().unwrap();
    assert_eq!(d["resources"], serde_json::json!({}), "{}", out.stdout);
}

#[test]
fn tags_globs_and_on_select_machines() {
    let names = ["web-1", "web-2", "db-1", "lab"];
    let fleet = Fleet::start(&names);
    let net = r#"{
      web-1 = { ... }: { deployment.tags = [ "web" "eu" ]; };
      web-2 = { ... }: { deployment.tags = [ "web" "us" ]; };
      db-1 = { ... }: { deployment.tags = [ "db" "eu" ]; };
      # Never selected below: its system must not even be evaluated.
      lab = { ... }: { deployment.tags = [ "lab" ]; environment.etc.x.text = throw "lab's system was evaluated"; };
    }"#;
    fleet.create("d", net);
    let deployed = |f: &Fleet| -> Vec<&str> {
        names
            .iter()
            .copied()
            .filter(|n| !f.current_system(n).is_empty())
            .collect()
    };
    fleet.ok(&["deploy", "--on", "@db"]);
    assert_eq!(deployed(&fleet), ["db-1"]);
    fleet.ok(&["deploy", "--include", "web-*", "--exclude", "@us"]);
    assert_eq!(deployed(&fleet), ["web-1", "db-1"]);
    fleet.ok(&["deploy", "--on", "web-2,@e?"]);
    assert_eq!(deployed(&fleet), ["web-1", "web-2", "db-1"]);
    assert_eq!(fleet.activations("web-1").len(), 2);
    let r = fleet.run(&["deploy", "--on", "@nosuchtag"]);
    assert!(
        r.stderr.contains("no machine has a tag matching ‘@nosuchtag’"),
        "{}",
        r.stderr
    );
    let r = fleet.run(&["deploy"]);
    assert!(r.stderr.contains("lab's system was evaluated"), "{}", r.stderr);

    // Commands that work from state select the same way.
    let r = fleet.ok(&["ssh-for-each", "--on", "@eu", "--", "echo", "hi"]);
    let mut said: Vec<&str> = r.stdout.lines().collect();
    said.sort();
    assert_eq!(said, ["db-1> hi", "web-1> hi"]);
    let r = fleet.ok(&["check", "--include", "web-?"]);
    assert!(
        r.stdout.contains("| web-1 ") && r.stdout.contains("| web-2 ") && !r.stdout.contains("| db-1 "),
        "{}",
        r.stdout
    );
}

#[test]
fn plan_only_create_only_and_repair() {
    let fleet = Fleet::start(&["m"]);
    fleet.create("d", &simple_network(&["m"], ""));
    assert_eq!(fleet.ok(&["deploy", "--plan-only"]).stdout, "+ m\n");
    assert!(!fleet.ok(&["export"]).stdout.contains("\"m\""));
    fleet.ok(&["deploy", "--create-only", "--allow-recreate"]);
    assert!(fleet.ok(&["export"]).stdout.contains("\"targetHost\": \"m\""));
    assert_eq!(fleet.ok(&["deploy", "--plan-only"]).stdout, "  m\n");
    assert!(fleet.current_system("m").is_empty());
    let r = fleet.ok(&["deploy", "--repair", "--debug"]);
    assert!(r.stderr.contains("--repair"), "{}", r.stderr);
    assert!(!fleet.current_system("m").is_empty());
}

/// `deploy --network DIR` deploys that network for this run only, although
/// the deploy reads the deployment again once it holds its lock.
#[test]
fn deploy_network_option_applies_to_this_run() {
    let fleet = Fleet::start(&["m"]);
    let file = fleet.write("net.nix", &common::rev_network(&["m"], "recorded", ""));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.write("other/nixops.nix", &common::rev_network(&["m"], "other", ""));
    let dir = fleet.path().join("other");
    let r = fleet.ok(&["deploy", "--network", dir.to_str().unwrap()]);
    assert!(r.stderr.contains("note: using --network"), "{}", r.stderr);
    assert_eq!(fleet.exec("m", "cat /run/current-system/etc/rev"), "other");
    let out = fleet.ok(&["export", "-d", "d"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (_, d) = v.as_object().unwrap().iter().next().unwrap();
    assert!(
        d["nixExprs"].as_str().unwrap().contains("net.nix"),
        "the recorded network stays: {d}"
    );
}

/// `deploy --evaluate-only`, as NixOps: every selected machine's system is
/// evaluated, nothing else happens; an evaluation error fails it.
#[test]
fn evaluate_only_evaluates_and_changes_nothing() {
    let fleet = Fleet::start(&[]);
    let file = fleet.write("net.nix", &simple_network(&["a", "b"], ""));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = fleet.ok(&["deploy", "--evaluate-only"]);
    assert!(
        r.stderr.contains("evaluated 2 machines; nothing changed"),
        "{}",
        r.stderr
    );
    let export: serde_json::Value = serde_json::from_str(&fleet.ok(&["export"]).stdout).unwrap();
    let d = export.as_object().unwrap().values().next().unwrap();
    assert_eq!(d["resources"], serde_json::json!({}));
    assert!(fleet.ok(&["history", "--json"]).stdout.trim() == "[]");
    fleet.write(
        "net.nix",
        "{ a = { ... }: { environment.etc.x.text = throw \"broken a\"; }; }",
    );
    let r = fleet.run(&["deploy", "--evaluate-only"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("broken a"), "{}", r.stderr);
}

/// `--reboot-timeout`: a machine that does not come back after its reboot
/// fails once the timeout has passed (not the default 600 s); the next
/// deploy, once it is back, converges.
#[test]
fn reboot_timeout_bounds_the_wait_for_a_machine_that_stays_down() {
    let fleet = Fleet::start(&["m"]);
    fleet.create("d", &simple_network(&["m"], ""));
    fleet.ok(&["deploy"]);
    let hold = fleet.path().join("hosts/m/hold-boot");
    std::fs::write(&hold, "").unwrap();
    let started = std::time::Instant::now();
    let r = fleet.run(&["deploy", "--force-reboot", "--reboot-timeout", "3"]);
    let took = started.elapsed();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("did not come back within 3 s"), "{}", r.stderr);
    assert!(took.as_secs() < 120, "waited {took:?}");
    std::fs::remove_file(&hold).unwrap();
    common::wait_until(30, "m to come back", || {
        fleet.run(&["ssh", "m", "true"]).code == 0
    });
    fleet.ok(&["deploy"]);
    let t = fleet.exported_toplevel("d", "m").unwrap();
    assert_eq!(fleet.current_system("m"), t);
}

/// Nix's build options reach the build: --no-build-output hides what the
/// builders print (shown otherwise), -K/--keep-failed keeps a failed build's
/// directory.
#[test]
fn no_build_output_and_keep_failed_reach_the_build() {
    let fleet = Fleet::start(&["m"]);
    let here = fleet.path().display().to_string();
    let net = |script: &str| {
        format!(
            "{{ m = {{ pkgs, ... }}: {{ environment.systemPackages = [ (pkgs.runCommand \"probe\" {{ }} \"{script} # {here}\") ]; }}; }}"
        )
    };
    let file = fleet.write("d.nix", &net("echo CHATTY-ONE; mkdir $out"));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = fleet.ok(&["deploy", "--build-only", "--no-build-output"]);
    assert!(!r.stderr.contains("CHATTY-ONE"), "{}", r.stderr);
    fleet.write("d.nix", &net("echo CHATTY-TWO; mkdir $out"));
    let r = fleet.ok(&["deploy", "--build-only"]);
    assert!(r.stderr.contains("CHATTY-TWO"), "{}", r.stderr);

    fleet.write("d.nix", &net("echo evidence > left-here; exit 3"));
    let r = fleet.run(&["deploy", "--build-only", "-K"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let kept = r
        .stderr
        .split("keeping build directory '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap_or_else(|| panic!("no kept build directory: {}", r.stderr))
        .to_owned();
    let evidence = std::fs::read_to_string(std::path::Path::new(&kept).join("left-here"));
    let _ = std::fs::remove_dir_all(&kept);
    assert_eq!(evidence.unwrap(), "evidence\n");
}

/// A warning about the network's attributes is said once per command, though
/// a deploy with keys reads those attributes again for the keys' texts.
#[test]
fn a_network_warning_is_said_once_per_command() {
    let fleet = Fleet::start(&["m"]);
    fleet.create(
        "d",
        "{ network.rollback = true; m = { ... }: { deployment.keys.k.text = \"x\"; }; }",
    );
    let r = fleet.ok(&["deploy"]);
    assert_eq!(
        r.stderr.matches("did you mean ‘network.enableRollback’").count(),
        1,
        "{}",
        r.stderr
    );
}

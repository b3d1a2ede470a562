//! `nixops plan` and `deploy --ask` against the test fleet: what a deploy
//! would change on each machine (packages, closure size, units, keys),
//! without changing anything.

mod common;

use std::collections::BTreeMap;

use common::{Fleet, Run};
use serde_json::{Value, json};

/// Two machines of one module; `rev` "1" or "2" of each decides its
/// packages, services and keys.
fn network(rev_a: &str, rev_b: &str) -> String {
    format!(
        r#"let
  machine = rev: {{ pkgs, lib, ... }}: let
    one = rev == "1";
    pkg = name: pkgs.writeTextFile {{ inherit name; text = name; }};
    svc = extra: {{ wantedBy = [ "multi-user.target" ]; script = "echo ${{rev}}"; }} // extra;
  in {{
    environment.systemPackages = map pkg ([ "same-1.0" ]
      ++ (if one then [ "tool-1.0" "gone-2.0" "down-2.0" ] else [ "tool-1.1" "fresh-3.0" "down-1.5" ]));
    systemd.services = {{
      steady.script = "true";
      web = svc {{ }};
      api = svc {{ stopIfChanged = false; }};
      cache = svc {{ reloadIfChanged = true; }};
      kept = svc {{ restartIfChanged = false; }};
      ${{if one then "old" else "young"}} = svc {{ }};
    }};
    deployment.keys.token.text = "tok";
    deployment.keys.rotated.text = "secret-${{rev}}";
    deployment.keys.${{if one then "dropped" else "added"}}.text = "x";
  }};
in {{
  a = machine "{rev_a}";
  b = machine "{rev_b}";
}}
"#
    )
}

/// Everything of a host that a plan must leave as it was.
fn snapshot(fleet: &Fleet, host: &str) -> String {
    fleet.exec(
        host,
        "readlink -f /nix/var/nix/profiles/system; readlink /run/current-system; \
         ls /nix/var/nix/profiles; cat /run/stub-os/activations.log; cat /run/stub-os/boot-default; \
         cd /run/keys && for f in *; do echo \"$f $(stat -c '%U:%G %a %Y' \"$f\") $(sha256sum < \"$f\")\"; done",
    )
}

/// A snapshot whose activation log gained the dry-activate of `new` after
/// the switch to `old`, and nothing else.
fn dry_activated(snapshot: &str, old: &str, new: &str) -> String {
    let switched = format!("switch {old}\n");
    assert!(snapshot.contains(&switched), "{snapshot}");
    snapshot.replacen(&switched, &format!("{switched}dry-activate {new}\n"), 1)
}

fn toplevel_of(fleet: &Fleet, machine: &str) -> String {
    let out = fleet.ok(&["deploy", "--dry-run", "--include", machine]);
    out.stdout.split('\t').nth(1).unwrap().trim().to_owned()
}

/// The sum of the NAR sizes of a closure in this machine's store.
fn closure_size(path: &str) -> u64 {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "nix-store -q -R \"$1\" | xargs nix-store -q --size",
            "sh",
            path,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse::<u64>().unwrap())
        .sum()
}

fn in_store(fleet: &Fleet, host: &str, path: &str) -> bool {
    fleet
        .exec(
            host,
            &format!("nix-store --check-validity {path} 2>/dev/null && echo yes || echo no"),
        )
        .trim()
        == "yes"
}

fn plan_json(fleet: &Fleet, args: &[&str]) -> (Run, Value) {
    let r = fleet.run(&[&["plan", "--json"], args].concat());
    let v: Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    validate(&v);
    (r, v)
}

/// The documented shape: docs/plan.schema.json.
fn validate(v: &Value) {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(common::repo().join("docs/plan.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("docs/plan.schema.json is a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "plan --json does not match docs/plan.schema.json: {errors:#?}\n{v:#}"
    );
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

#[test]
fn plan_reports_exactly_the_changed_machine_and_changes_nothing() {
    let fleet = Fleet::start(&["a", "b"]);
    let file = fleet.write("net.nix", &network("1", "1"));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    let old_a = fleet.current_system("a");
    let old_b = fleet.current_system("b");
    fleet.write("net.nix", &network("2", "1"));
    let new_a = toplevel_of(&fleet, "a");
    assert_ne!(new_a, old_a);

    let before: BTreeMap<&str, String> = ["a", "b"].iter().map(|h| (*h, snapshot(&fleet, h))).collect();
    let state = fleet.ok(&["export"]).stdout;
    let ssh_b = fleet.ssh_count("b");

    // Text: the changed machine with its packages, the unchanged one, the counts.
    let r = fleet.ok(&["plan"]);
    let text = &r.stdout;
    assert!(text.contains("a: changed\n"), "{text}");
    assert!(
        text.contains("b: unchanged (a deploy activates it again: deployment.alwaysActivate)"),
        "{text}"
    );
    for line in [
        "    + fresh 3.0",
        "    - gone 2.0",
        "    ↑ tool 1.0 → 1.1",
        "    ↓ down 2.0 → 1.5",
        "    + added",
        "    - dropped",
        "    ~ rotated (content)",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line:?} missing:\n{text}");
    }
    assert!(!text.contains("same"), "{text}");
    assert!(
        text.contains("  units: unknown: the new system is not on the machine yet"),
        "{text}"
    );
    assert!(
        text.ends_with("1 changed, 1 unchanged, 0 new, 0 unreachable\n"),
        "{text}"
    );

    // JSON: the same, exactly.
    let (_, v) = plan_json(&fleet, &[]);
    assert_eq!(
        v["summary"],
        json!({"changed": 1, "unchanged": 1, "new": 0, "unreachable": 0, "failed": 0})
    );
    let a = &v["machines"]["a"];
    assert_eq!(a["status"], "changed");
    assert_eq!(a["current"], old_a.as_str());
    assert_eq!(a["profile"], old_a.as_str());
    assert_eq!(a["new"], new_a.as_str());
    assert_eq!(a["activate"], true);
    assert_eq!(
        a["packages"],
        json!({
            "added": [{"name": "fresh", "versions": ["3.0"]}],
            "removed": [{"name": "gone", "versions": ["2.0"]}],
            "changed": [
                {"name": "down", "before": ["2.0"], "after": ["1.5"], "direction": "downgrade"},
                {"name": "tool", "before": ["1.0"], "after": ["1.1"], "direction": "upgrade"},
            ],
        })
    );
    assert_eq!(
        a["closureSize"],
        json!({"before": closure_size(&old_a), "after": closure_size(&new_a)})
    );
    assert_eq!(a["units"]["known"], false);
    assert_eq!(
        a["keys"],
        json!({
            "added": ["added"],
            "removed": ["dropped"],
            "changed": [{"name": "rotated", "what": ["content"]}],
            "unchanged": ["token"],
            "error": null,
        })
    );
    let b = &v["machines"]["b"];
    assert_eq!(b["status"], "unchanged");
    assert_eq!(b["current"], old_b.as_str());
    assert_eq!(b["packages"], json!({"added": [], "removed": [], "changed": []}));
    assert_eq!(b["keys"]["unchanged"], json!(["dropped", "rotated", "token"]));
    // No copy, no activation, no keys, no state: all as it was.
    assert!(!in_store(&fleet, "a", &new_a));
    for h in ["a", "b"] {
        assert_eq!(snapshot(&fleet, h), before[h], "{h} changed");
    }
    assert_eq!(fleet.ok(&["export"]).stdout, state, "plan wrote to state");
    // An unchanged machine costs one command over its master connection.
    assert!(fleet.ssh_count("b") <= ssh_b + 1);

    // --dry-activate copies the new system to ask its switch-to-configuration.
    let (_, v) = plan_json(&fleet, &["--dry-activate"]);
    let u = &v["machines"]["a"]["units"];
    assert_eq!(u["known"], true, "{u}");
    assert_eq!(
        strings(&u["stop"]),
        ["dropped-key.service", "old.service", "web.service"]
    );
    assert_eq!(strings(&u["start"]), ["web.service"]);
    assert_eq!(strings(&u["restart"]), ["api.service"]);
    assert_eq!(strings(&u["reload"]), ["cache.service"]);
    assert_eq!(strings(&u["notStopped"]), ["kept.service"]);
    assert!(in_store(&fleet, "a", &new_a));
    // Nothing else changed: the only new line in a's activation log is the
    // dry-activate itself.
    assert_eq!(snapshot(&fleet, "a"), dry_activated(&before["a"], &old_a, &new_a));
    assert_eq!(snapshot(&fleet, "b"), before["b"]);
    assert_eq!(fleet.ok(&["export"]).stdout, state);

    // Now that the machine has it, a plain plan asks dry-activate too.
    let r = fleet.ok(&["plan", "--include", "a"]);
    assert!(
        r.stdout
            .contains("    stop: dropped-key.service, old.service, web.service\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("    restart: api.service\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("    leave running (changed): kept.service\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .ends_with("1 changed, 0 unchanged, 0 new, 0 unreachable\n"),
        "{}",
        r.stdout
    );

    // After the deploy, both are unchanged.
    fleet.ok(&["deploy"]);
    let (_, v) = plan_json(&fleet, &[]);
    assert_eq!(v["summary"]["unchanged"], 2, "{v:#}");
    assert_eq!(v["machines"]["a"]["keys"]["changed"], json!([]));
}

#[test]
fn an_unreachable_machine_is_reported_and_the_others_planned() {
    let fleet = Fleet::start(&["a", "b"]);
    let file = fleet.write("net.nix", &network("1", "1"));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy", "--include", "a"]);
    fleet.write("net.nix", &network("2", "2"));
    fleet.stop_host("b");
    let (r, v) = plan_json(&fleet, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(v["machines"]["a"]["status"], "changed");
    let b = &v["machines"]["b"];
    assert_eq!(b["status"], "unreachable");
    assert!(
        b["error"].as_str().unwrap().starts_with("cannot reach machine"),
        "{b}"
    );
    assert_eq!(b["activate"], false);
    assert_eq!(
        v["summary"],
        json!({"changed": 1, "unchanged": 0, "new": 0, "unreachable": 1, "failed": 0})
    );
    let r = fleet.run(&["plan"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("b: unreachable: cannot reach machine"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .ends_with("1 changed, 0 unchanged, 0 new, 1 unreachable\n"),
        "{}",
        r.stdout
    );

    // Never deployed: new, and all its keys are to be added.
    fleet.start_hosts(&["b"]);
    let (r, v) = plan_json(&fleet, &["--on", "b"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = &v["machines"]["b"];
    assert_eq!(b["status"], "new");
    assert_eq!(b["current"], Value::Null);
    assert_eq!(b["closureSize"]["before"], Value::Null);
    assert_eq!(b["units"]["why"], "the machine runs no system yet");
    assert_eq!(b["keys"]["added"], json!(["added", "rotated", "token"]));

    // The plan pinned no host key (it writes no state), and left the next
    // deploy a connection of its own to learn the key and pin it.
    let host_key = |fleet: &Fleet| {
        let v: Value = serde_json::from_str(&fleet.ok(&["export"]).stdout).unwrap();
        let (_, d) = v.as_object().unwrap().iter().next().unwrap();
        d["resources"]["b"]["publicHostKey"].clone()
    };
    assert_eq!(host_key(&fleet), Value::Null);
    fleet.ok(&["deploy", "--include", "b"]);
    assert!(host_key(&fleet).as_str().unwrap().starts_with("ssh-ed25519 "));
}

#[test]
fn deploy_ask_answered_no_changes_nothing() {
    let fleet = Fleet::start(&["a", "b"]);
    let file = fleet.write("net.nix", &network("1", "1"));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    let old_a = fleet.current_system("a");
    fleet.write("net.nix", &network("2", "1"));
    let new_a = toplevel_of(&fleet, "a");
    let state = fleet.ok(&["export"]).stdout;
    let b_before = snapshot(&fleet, "b");
    let a_before = snapshot(&fleet, "a");

    // Without a terminal and without --yes it refuses before anything.
    let r = fleet.run(&["deploy", "--ask"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no terminal to ask on"), "{}", r.stderr);
    assert!(!in_store(&fleet, "a", &new_a));

    // Answered no on the terminal: the plan (after the copy, so with its
    // units), the question, and nothing activated, sent or recorded.
    let r = fleet.run_with_terminal(&["deploy", "--ask"], "n\n");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("a: changed\n"), "{}", r.stderr);
    assert!(r.stderr.contains("    ↑ tool 1.0 → 1.1\n"), "{}", r.stderr);
    assert!(r.stderr.contains("    restart: api.service\n"), "{}", r.stderr);
    assert!(
        r.stderr.contains("activate the new systems on 2 machines? (y/N)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("not deploying anything"), "{}", r.stderr);
    assert_eq!(fleet.current_system("a"), old_a);
    assert_eq!(snapshot(&fleet, "a"), dry_activated(&a_before, &old_a, &new_a));
    assert_eq!(snapshot(&fleet, "b"), b_before);
    assert_eq!(fleet.ok(&["export"]).stdout, state);

    // Answered yes: deployed.
    let r = fleet.run_with_terminal(&["deploy", "--ask"], "y\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fleet.current_system("a"), new_a);

    // --yes and NixOps' --confirm answer without a terminal.
    fleet.write("net.nix", &network("1", "1"));
    let r = fleet.ok(&["deploy", "--ask", "--yes"]);
    assert!(r.stderr.contains("a: changed\n"), "{}", r.stderr);
    assert_eq!(fleet.current_system("a"), old_a);
    fleet.write("net.nix", &network("2", "1"));
    fleet.ok(&["deploy", "--ask", "--confirm"]);
    assert_eq!(fleet.current_system("a"), new_a);
    let r = fleet.run(&["deploy", "--ask", "--build-only"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("--build-only activates nothing"),
        "{}",
        r.stderr
    );
}

#[test]
fn deploy_ask_plans_a_system_built_on_its_machine() {
    let fleet = Fleet::start(&["a", "b"]);
    // Systems new to every store (the deployer's is shared by all tests).
    let unique = |net: String| {
        let tag = format!(
            "defaults.environment.etc.tag.text = \"{}\";",
            fleet.path().display()
        );
        net.replace("in {\n  a =", &format!("in {{\n  {tag}\n  a ="))
    };
    let file = fleet.write("net.nix", &unique(network("1", "1")));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy", "--build-on-target"]);
    fleet.write("net.nix", &unique(network("2", "1")));
    let new_a = toplevel_of(&fleet, "a");
    let r = fleet.ok(&["deploy", "--ask", "--yes", "--build-on-target"]);
    // Its closure was listed on the machine: it never was here.
    assert!(!in_store_here(&new_a), "{new_a} is in the deployer's store");
    assert!(r.stderr.contains("a: changed\n"), "{}", r.stderr);
    assert!(r.stderr.contains("    ↑ tool 1.0 → 1.1\n"), "{}", r.stderr);
    assert!(r.stderr.contains("    restart: api.service\n"), "{}", r.stderr);
    assert_eq!(fleet.current_system("a"), new_a);
}

fn in_store_here(path: &str) -> bool {
    std::process::Command::new("nix-store")
        .args(["--check-validity", path])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn always_activate_false_skips_only_machines_that_run_and_boot_the_system() {
    let fleet = Fleet::start(&["m"]);
    let extra = "deployment.alwaysActivate = false;";
    let file = fleet.write("net.nix", &common::rev_network(&["m"], "one", extra));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy"]);
    let (_, v) = plan_json(&fleet, &[]);
    assert_eq!(v["machines"]["m"]["status"], "unchanged");
    assert_eq!(v["machines"]["m"]["activate"], false);
    assert!(
        fleet
            .ok(&["plan"])
            .stdout
            .contains("m: unchanged (a deploy does not activate it)")
    );

    // Booting a new system without running it: a deploy must activate it,
    // though the profile points at it already.
    fleet.write("net.nix", &common::rev_network(&["m"], "two", extra));
    fleet.ok(&["deploy", "--boot"]);
    let two = fleet.profile("m");
    assert_ne!(fleet.current_system("m"), two);
    let (_, v) = plan_json(&fleet, &[]);
    assert_eq!(v["machines"]["m"]["status"], "changed");
    assert_eq!(v["machines"]["m"]["activate"], true);
    // (Unguarded: a guarded activation never skips.)
    fleet.ok(&["deploy", "--no-magic-rollback"]);
    assert_eq!(fleet.current_system("m"), two);
    let n = fleet.activations("m").len();
    fleet.ok(&["deploy"]);
    assert_eq!(fleet.activations("m").len(), n, "unchanged: not activated again");
}

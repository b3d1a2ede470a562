//! Machines from Terraform / OpenTofu outputs: a network's inventory command
//! (here a script that prints `tofu output -json`'s format; no provider can
//! be reached here) is run once per command, and its outputs reach the
//! network and every machine as `inventory`. A sensitive output never
//! appears in state, history, logs or the store.

mod common;

use common::Fleet;

const SECRET: &str = "hunter2-inventory-secret";

/// What `tofu output -json` prints for two outputs, one sensitive.
fn outputs_script(web_host: &str) -> String {
    format!(
        r#"#!/bin/sh
echo run >> "$(dirname "$0")/runs.log"
cat <<'EOF'
{{
  "web_host": {{ "sensitive": false, "type": "string", "value": "{web_host}" }},
  "db_password": {{ "sensitive": true, "type": "string", "value": "{SECRET}" }}
}}
EOF
"#
    )
}

// The network takes it as an argument, the machine as a module argument;
// `network.*` itself cannot depend on it (it names the command).
const NETWORK: &str = r#"{ inventory, ... }: {
  network.description = "from terraform";
  network.inventory = [ "sh" "./outputs.sh" ];
  web = { inventory, ... }: {
    deployment.targetHost = inventory.web_host.value;
    deployment.keys.db.text = inventory.db_password.value;
  } // { environment.etc.where.text = inventory.web_host.value; };
  other = { ... }: { environment.etc.where.text = "static"; };
}
"#;

#[test]
fn a_network_fed_by_an_inventory_command_deploys_and_keeps_its_secrets() {
    let fleet = Fleet::start(&["web", "other"]);
    let dir = fleet.path().join("infra");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("outputs.sh"), outputs_script("web")).unwrap();
    let file = fleet.write("infra/network.nix", NETWORK);
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = fleet.ok(&["deploy"]);
    assert_eq!(fleet.config_json("web")["etc"]["where"], "web");
    assert_eq!(fleet.exec("web", "cat /run/keys/db"), SECRET);
    let runs = || {
        std::fs::read_to_string(dir.join("runs.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Once for the whole deploy (meta, machines, keys alike).
    assert_eq!(runs(), 1);

    // The sensitive value: nowhere but on the machine.
    let state = std::fs::read(fleet.state_file()).unwrap();
    assert!(
        !String::from_utf8_lossy(&state).contains(SECRET),
        "in the state file"
    );
    let history = fleet.ok(&["history", "--json"]).stdout;
    let export = fleet.ok(&["export"]).stdout;
    for (what, text) in [
        ("deploy output", &format!("{}{}", r.stdout, r.stderr)),
        ("history", &history),
        ("export", &export),
    ] {
        assert!(!text.contains(SECRET), "{what}: {text}");
    }
    let t = fleet.exported_toplevel("d", "web").unwrap();
    let closure = std::process::Command::new("nix-store")
        .args(["--query", "--requisites", &t])
        .output()
        .unwrap();
    for p in String::from_utf8_lossy(&closure.stdout).lines() {
        let found = std::process::Command::new("grep")
            .args(["-rqF", SECRET, p])
            .status()
            .unwrap();
        assert!(!found.success(), "{p} holds the secret");
    }

    // A new output value: the machine that reads it changes, and only it is
    // evaluated again.
    std::fs::write(dir.join("outputs.sh"), outputs_script("web ")).unwrap();
    let r = fleet.ok(&["deploy", "--dry-run"]);
    assert!(r.stderr.contains("web> evaluated"), "{}", r.stderr);
    assert!(!r.stderr.contains("other> evaluated"), "{}", r.stderr);
}

#[test]
fn a_failing_or_slow_inventory_command_is_an_error_naming_it_and_changes_nothing() {
    let fleet = Fleet::start(&["web"]);
    let dir = fleet.path().join("infra");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("outputs.sh"),
        "echo 'Error: no state file' >&2; exit 1\n",
    )
    .unwrap();
    let file = fleet.write(
        "infra/network.nix",
        r#"{
          network.inventory = { command = [ "sh" "./outputs.sh" ]; timeout = 2; };
          web = { inventory, ... }: { deployment.targetHost = inventory.web_host.value; };
        }"#,
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let before = fleet.ok(&["export"]).stdout;
    let r = fleet.run(&["deploy"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("inventory command ‘sh ./outputs.sh’ failed") && r.stderr.contains("no state file"),
        "{}",
        r.stderr
    );
    std::fs::write(dir.join("outputs.sh"), "sleep 30\n").unwrap();
    let r = fleet.run(&["deploy"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("did not finish within 2 s"), "{}", r.stderr);
    assert_eq!(fleet.ok(&["export"]).stdout, before, "state changed");
    assert!(fleet.current_system("web").is_empty());
}

/// A Colmena hive takes the same, as `meta.inventory`.
#[test]
fn a_hive_reads_its_inventory_too() {
    let fleet = Fleet::start(&["web"]);
    let dir = fleet.path().join("hive");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("outputs.json"),
        r#"{ "role": { "value": "frontend", "sensitive": false } }"#,
    )
    .unwrap();
    fleet.write(
        "hive/hive.nix",
        r#"{
          meta = { nixpkgs = <nixpkgs>; inventory = { file = "outputs.json"; }; };
          web = { inventory, ... }: { environment.etc.role.text = inventory.role.value; };
        }"#,
    );
    let out = fleet.nixops(&["apply"]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fleet.config_json("web")["etc"]["role"], "frontend");
}

//! `nixops history`: every deploy, rollback, reboot and destroy, on both
//! backends.

mod common;

use std::process::Command;

use common::{Backend, Fleet, rev_network};

on_both_backends!(deploys_rollbacks_reboots_and_destroys_are_recorded);

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .output()
        .expect("git (the history records a network's commit) must be installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn history(fleet: &Fleet, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["history", "--json"];
    args.extend(extra);
    let out = fleet.ok(&args).stdout;
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn deploys_rollbacks_reboots_and_destroys_are_recorded(backend: Backend) {
    let fleet = Fleet::start_on(backend, &["a", "b"]);
    // The network lives in a git work tree; a key's text is a secret.
    let repo = fleet.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let extra = "deployment.keys.k.text = \"s3cret-key-text\";";
    let net = |rev| {
        format!(
            "{{ network.enableRollback = true; }} // {}",
            rev_network(&["a", "b"], rev, extra)
        )
    };
    let file = repo.join("net.nix");
    std::fs::write(&file, net("first")).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "net.nix"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    assert!(history(&fleet, &[]).is_empty());

    fleet.ok(&["deploy"]);
    let first = [fleet.current_system("a"), fleet.current_system("b")];
    let h = history(&fleet, &[]);
    assert_eq!(h.len(), 1, "{h:?}");
    let e = &h[0];
    assert_eq!(e["action"], "deploy");
    assert_eq!(e["result"], "success");
    assert_eq!(e["by"], format!("{}@{}", common::whoami(), hostname()));
    assert_eq!(e["source"]["kind"], "git");
    assert_eq!(e["source"]["commit"], commit.as_str());
    assert_eq!(e["source"]["dirty"], false);
    assert_eq!(e["source"]["files"][0]["path"], file.to_str().unwrap());
    assert_eq!(e["machines"][0]["machine"], "a");
    assert_eq!(e["machines"][0]["before"], serde_json::Value::Null);
    assert_eq!(e["machines"][0]["after"], first[0].as_str());
    assert_eq!(e["machines"][0]["result"], "deployed");
    assert!(e["finished"].as_u64().unwrap() >= e["started"].as_u64().unwrap());

    // A change not committed yet: the work tree is dirty.
    std::fs::write(&file, net("second")).unwrap();
    fleet.ok(&["deploy"]);
    let second = fleet.current_system("a");
    fleet.ok(&["rollback", "1"]);
    fleet.ok(&["reboot", "--include", "a"]);
    fleet.ok(&["destroy", "--include", "b", "--confirm"]);

    let h = history(&fleet, &[]);
    let actions: Vec<&str> = h.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["destroy", "reboot", "rollback", "deploy", "deploy"],
        "{h:?}"
    );
    assert_eq!(h[3]["source"]["dirty"], true);
    assert_eq!(h[3]["machines"][0]["before"], first[0].as_str());
    assert_eq!(h[3]["machines"][0]["after"], second.as_str());
    assert_eq!(h[2]["generation"], 1);
    assert_eq!(h[2]["machines"][0]["before"], second.as_str());
    assert_eq!(h[2]["machines"][0]["after"], first[0].as_str());
    assert_eq!(h[1]["machines"].as_array().unwrap().len(), 1);
    assert_eq!(h[1]["machines"][0]["result"], "rebooted");
    assert_eq!(h[0]["machines"][0]["machine"], "b");
    assert_eq!(h[0]["machines"][0]["before"], first[1].as_str());
    assert_eq!(h[0]["machines"][0]["after"], serde_json::Value::Null);
    assert_eq!(h[0]["machines"][0]["result"], "forgotten");

    // One machine's story: b was deployed twice, rolled back and forgotten.
    let hb = history(&fleet, &["--machine", "b"]);
    let actions: Vec<&str> = hb.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["destroy", "rollback", "deploy", "deploy"]);
    assert!(hb.iter().all(|e| e["machines"].as_array().unwrap().len() == 1));
    let table = fleet.ok(&["history", "--machine", "a"]).stdout;
    assert!(table.contains("Before") && table.contains("rebooted"), "{table}");
    let table = fleet.ok(&["history"]).stdout;
    assert!(table.contains(&format!("git {}+dirty", &commit[..12])), "{table}");
    assert!(table.contains("rollback 1"), "{table}");
    let r = fleet.run(&["history", "--machine", "nosuch"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("‘nosuch’"), "{}", r.stderr);

    // No secret in the history (nor in the export that carries it).
    let all = fleet.ok(&["export"]).stdout;
    assert!(all.contains("\"history\""), "{all}");
    assert!(!all.contains("s3cret-key-text"), "{all}");
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A deploy records the digest of everything its evaluation read, so an
/// edit of an imported module, or of a variable the network reads, tells
/// two deploys apart though the network file is the same.
#[test]
fn the_history_tells_deploys_of_different_inputs_apart() {
    let fleet = Fleet::start(&["m"]);
    fleet.write("net/common.nix", "{ ... }: { environment.etc.c.text = \"1\"; }\n");
    let file = fleet.write(
        "net/network.nix",
        "{ m = { ... }: { imports = [ ./common.nix ]; environment.etc.g.text = builtins.getEnv \"GEN\"; }; }\n",
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let deploy = |value: &str| {
        let out = fleet.nixops(&["deploy"]).env("GEN", value).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let inputs = || {
        history(&fleet, &[])[0]["inputs"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    deploy("1");
    let first = inputs();
    deploy("1");
    assert_eq!(inputs(), first, "nothing changed");
    // Only a comment: the same system, other inputs.
    fleet.write(
        "net/common.nix",
        "# edited\n{ ... }: { environment.etc.c.text = \"1\"; }\n",
    );
    deploy("1");
    let edited = inputs();
    assert_ne!(edited, first);
    deploy("2");
    assert_ne!(inputs(), edited);
    let h = history(&fleet, &[]);
    assert_eq!(h[0]["source"], h[1]["source"], "the network file is the same");
    let table = fleet.ok(&["history"]).stdout;
    assert!(table.contains(&format!("inputs {}", &edited[..12])), "{table}");
}

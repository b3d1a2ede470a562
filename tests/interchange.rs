//! Moving between NixOps 2.0 and this tool, both ways, with the real NixOps
//! 2.0 (scripts/install-deps.sh installs it from ../shared/peers/nixops;
//! without that copy these tests say they are skipped).

mod common;

use std::path::{Path, PathBuf};

use common::{Fleet, simple_network};

/// NixOps 2.0 with its state in `state` and the network directory `net`.
fn theirs(fleet: &Fleet, bin: &Path, state: &Path, net: &Path, args: &[&str], stdin: &str) -> String {
    fleet.nixops2(bin, state, net, args, stdin)
}

/// A network directory as NixOps 2.0 wants one (`nixops.nix`), state in
/// the legacy file.
fn their_network(fleet: &Fleet, machines: &str) -> PathBuf {
    let file = fleet.write(
        "theirs/nixops.nix",
        &format!(
            "{{ network.storage.legacy = {{ }}; network.description = \"test network\"; {machines} }}\n"
        ),
    );
    file.parent().unwrap().to_owned()
}

/// Ours, deployed (so with a history, a toplevel and a pinned host key),
/// exported, imported by NixOps 2.0, exported by it and imported by ours:
/// the same export at the end, history included.
#[test]
fn an_export_of_ours_goes_through_nixops_2_and_back_unchanged() {
    let Some(bin) = common::nixops2() else { return };
    let fleet = Fleet::start(&["m"]);
    let uuid = fleet.create("d", &simple_network(&["m"], ""));
    fleet.ok(&["deploy"]);
    let ours = fleet.ok(&["export"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&ours).unwrap();
    assert!(v[&uuid]["history"].is_string(), "{ours}");

    let net = their_network(&fleet, "");
    let state = fleet.path().join("theirs.nixops");
    theirs(&fleet, &bin, &state, &net, &["import"], &ours);
    let listed = theirs(&fleet, &bin, &state, &net, &["list"], "");
    assert!(listed.contains(&uuid), "{listed}");
    let back = theirs(&fleet, &bin, &state, &net, &["export", "--all"], "");

    let again = fleet.path().join("again.nixops");
    let r = fleet.run_with_stdin(&["import", "-s", again.to_str().unwrap()], &back);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let round = fleet.ok(&["export", "-s", again.to_str().unwrap()]).stdout;
    let a: serde_json::Value = serde_json::from_str(&ours).unwrap();
    let b: serde_json::Value = serde_json::from_str(&round).unwrap();
    assert_eq!(a, b);
    // And the history is ours again, whole.
    let h = fleet
        .ok(&["history", "--json", "-s", again.to_str().unwrap()])
        .stdout;
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
}

/// A deployment NixOps 2.0 created and exported is imported by ours and
/// deploys from the network directory, as with NixOps 2.0 (which records
/// no network: `--network`, default the current directory).
#[test]
fn a_nixops_2_deployment_imports_into_ours() {
    let Some(bin) = common::nixops2() else { return };
    let fleet = Fleet::start(&["m"]);
    let net = their_network(&fleet, "m = { ... }: { environment.etc.who.text = \"theirs\"; };");
    let state = fleet.path().join("theirs.nixops");
    theirs(&fleet, &bin, &state, &net, &["create", "-d", "theirs"], "");
    let exported = theirs(&fleet, &bin, &state, &net, &["export", "--all"], "");
    let r = fleet.run_with_stdin(&["import"], &exported);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = fleet
        .nixops(&["deploy", "-d", "theirs"])
        .current_dir(&net)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("records no network"), "{stderr}");
    assert_eq!(fleet.config_json("m")["etc"]["who"], "theirs");
}

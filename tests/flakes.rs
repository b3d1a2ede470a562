//! Flake networks (NixOps 2.0's `--network DIR`, `nixopsConfigurations`) and
//! Colmena hives (hive.nix files, flakes' `colmena` and `colmenaHive`
//! outputs), evaluated purely: every test here runs nixops without NIX_PATH.

mod common;

use std::path::{Path, PathBuf};

use common::Fleet;

/// A fleet whose nixops runs without NIX_PATH, with a copy of the stand-in
/// nixpkgs as a `path:` flake at `<fleet>/nixpkgs`.
fn pure_fleet(names: &[&str]) -> (Fleet, PathBuf) {
    let fleet = Fleet::start(names);
    fleet.nix_path.set(false);
    let nixpkgs = fleet.nixpkgs_flake("nixpkgs");
    (fleet, nixpkgs)
}

/// A NixOps 2.0 flake network in `<fleet>/<dir>`: `configs` is the body of
/// `nixopsConfigurations` (with `nixpkgs` in scope).
fn nixops_flake(fleet: &Fleet, nixpkgs: &Path, dir: &str, configs: &str) -> PathBuf {
    fleet.write(
        &format!("{dir}/flake.nix"),
        &format!(
            r#"{{
              inputs.nixpkgs.url = "path:{}";
              outputs = {{ self, nixpkgs }}: {{
                nixopsConfigurations = {configs};
              }};
            }}"#,
            nixpkgs.display()
        ),
    );
    fleet.path().join(dir)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The deployment's state attributes, as `export` shows them.
fn exported(fleet: &Fleet) -> serde_json::Value {
    let v = json(&fleet.ok(&["export"]).stdout);
    v.as_object().unwrap().values().next().unwrap().clone()
}

#[test]
fn a_flake_network_deploys_purely_and_records_its_locked_url() {
    let (fleet, nixpkgs) = pure_fleet(&["alpha", "beta"]);
    let dir = nixops_flake(
        &fleet,
        &nixpkgs,
        "net",
        r#"{
          default = {
            inherit nixpkgs;
            network.description = "flake network";
            defaults = { name, ... }: { environment.etc.who.text = name; };
            alpha = { nodes, pkgs, ... }: {
              environment.etc.peer.text = nodes.beta.config.networking.hostName;
              environment.etc.hello.text = "${pkgs.hello}/bin/hello";
              deployment.keys.k.text = "flake-key-text";
              deployment.tags = [ "front" ];
            };
            beta = { ... }: { services.nginx.enable = true; };
          };
        }"#,
    );
    let dir_s = dir.to_str().unwrap();
    fleet.ok(&["create", "-d", "f", "--network", dir_s]);
    // Nix writes the lock file when it is missing, as `nix` itself does.
    assert!(dir.join("flake.lock").exists(), "no flake.lock written");
    let d = exported(&fleet);
    assert_eq!(d["flake"], dir_s);
    assert_eq!(d["flakeAttr"], "nixopsConfigurations.default");
    assert_eq!(d["description"], "flake network");

    // Later commands need only -d.
    fleet.ok(&["deploy", "-d", "f"]);
    let alpha = fleet.config_json("alpha");
    assert_eq!(alpha["etc"]["who"], "alpha");
    assert_eq!(alpha["etc"]["peer"], "beta");
    assert_eq!(fleet.exec("alpha", "cat /run/keys/k"), "flake-key-text");
    assert_eq!(fleet.config_json("beta")["nginx"]["enable"], true);

    let d = exported(&fleet);
    let url = d["flakeLockedUrl"].as_str().expect("flakeLockedUrl recorded");
    assert!(url.starts_with(&format!("path:{dir_s}?")), "{url}");
    assert!(url.contains("narHash=sha256-"), "{url}");
    let info = fleet.ok(&["info", "-d", "f"]);
    assert!(info.stdout.contains(url), "{}", info.stdout);
    assert!(
        info.stdout.contains("Up-to-date") || info.stdout.contains("Deployed"),
        "{}",
        info.stdout
    );
    let info = json(&fleet.ok(&["info", "-d", "f", "--json"]).stdout);
    assert_eq!(info["flake"]["lockedUrl"], url);

    // Selection, show-option and check work as for file networks.
    let r = fleet.ok(&["show-option", "-d", "f", "beta", "services.nginx.enable"]);
    assert_eq!(r.stdout.trim(), "true");
    let r = fleet.ok(&["dump-nix-paths", "-d", "f", "--on", "@front"]);
    assert!(r.stdout.contains("nixos-system-alpha"), "{}", r.stdout);
    assert!(!r.stdout.contains("nixos-system-beta"), "{}", r.stdout);
    fleet.ok(&["check", "-d", "f"]);
}

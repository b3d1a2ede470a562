//! A Colmena hive's systems are the very ones Colmena 0.5 builds: every
//! node's toplevel from our hive front (hive.nix files, flakes' `colmena`
//! output) is compared with Colmena's own evaluator (its eval.nix, from
//! ../shared/peers/colmena), and Colmena's key units and activation snippet
//! work with the keys this tool sends.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Fleet;

/// Colmena 0.5's source (../shared/peers/colmena); None, with a notice on
/// stderr, where that copy is absent (a user's fresh clone).
fn colmena() -> Option<PathBuf> {
    let dir = common::repo().join("../shared/peers/colmena");
    if dir.join("src/nix/hive/eval.nix").exists() {
        return Some(dir.canonicalize().unwrap());
    }
    eprintln!(
        "NOTICE: skipped: Colmena's source is not at {} (its hive evaluator is the reference)",
        dir.display()
    );
    None
}

/// A Nix expression for an absolute path.
fn nix_path(p: &Path) -> String {
    format!("(/. + {})", serde_json::to_string(p.to_str().unwrap()).unwrap())
}

/// Every node's toplevel as Colmena evaluates the hive file: its eval.nix,
/// as `colmena build` calls it, with the stand-in as <nixpkgs>.
fn colmena_toplevels(colmena: &Path, hive: &Path) -> BTreeMap<String, String> {
    let expr = format!(
        "builtins.mapAttrs (_: t: t.outPath) (import {} {{ rawHive = import {}; }}).toplevel",
        nix_path(&colmena.join("src/nix/hive/eval.nix")),
        nix_path(hive)
    );
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-I"])
        .arg(format!("nixpkgs={}", common::nixpkgs().display()))
        .args(["-E", &expr])
        .env("NIX_CONFIG", common::NIX_CONFIG)
        .env_remove("NIX_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Colmena's eval.nix failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every selected node's toplevel as this tool evaluates deployment `d`
/// (`deploy --dry-run` prints them, building nothing).
fn our_toplevels(fleet: &Fleet, d: &str) -> BTreeMap<String, String> {
    fleet
        .ok(&["deploy", "-d", d, "--dry-run"])
        .stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, p)| (n.to_owned(), p.to_owned()))
        .collect()
}

/// A copy of the stand-in nixpkgs whose OS imports a module at the depth
/// NixOS has many (module-list -> outer -> middle -> inner) that adds a
/// package: the module system orders list definitions by depth first, so
/// the package's place among the hive's own depends on how deep the hive's
/// modules are passed in.
fn deep_nixpkgs(fleet: &Fleet) -> PathBuf {
    let dir = fleet.nixpkgs_flake("deep-nixpkgs");
    let modules = dir.join("nixos/modules");
    std::fs::create_dir_all(modules.join("deep")).unwrap();
    for (file, text) in [
        ("outer.nix", "{ imports = [ ./middle.nix ]; }"),
        ("middle.nix", "{ imports = [ ./inner.nix ]; }"),
        (
            "inner.nix",
            r#"{ pkgs, ... }: { environment.systemPackages = [ (pkgs.writeTextDir "share/deep" "deep") ]; }"#,
        ),
    ] {
        std::fs::write(modules.join("deep").join(file), text).unwrap();
    }
    let list = modules.join("module-list.nix");
    let text = std::fs::read_to_string(&list).unwrap();
    let end = text.rfind(']').unwrap();
    std::fs::write(&list, format!("{}  ./deep/outer.nix\n]\n", &text[..end])).unwrap();
    dir
}

/// What a hive can do that reaches a node's system: package sets with
/// overlays and config (meta.nixpkgs, meta.nodeNixpkgs), special
/// arguments, `defaults`, other nodes' values, keys of every kind (their
/// units, their owners' activation snippet, `path`), a node's definitions
/// after Colmena's own, and deployment options read back into the system.
const HIVE: &str = r#"{
  meta = {
    description = "colmena systems";
    nixpkgs = import <nixpkgs> {
      config = { fromMeta = "meta"; both = "meta"; };
      overlays = [ (self: super: { hello = super.writeShellScriptBin "hello" "echo overlaid"; }) ];
    };
    nodeNixpkgs.beta = import @DEEP@ { };
    specialArgs.site = "hq";
    nodeSpecialArgs.beta.role = "db";
  };
  defaults = { config, lib, pkgs, name, site, ... }: {
    environment.etc.who.text = "${name}@${site}";
    environment.etc.pkgs-config.text = builtins.toJSON pkgs.config;
    environment.systemPackages = [ pkgs.hello ];
    nixpkgs.config.both = "node";
    # Colmena's targetHost default is an option default: mkDefault wins.
    deployment.targetHost = lib.mkDefault "${name}.example";
    environment.etc.target.text = config.deployment.targetHost;
  };
  alpha = { config, nodes, pkgs, ... }: {
    deployment.keys.pre = { text = "pre"; user = "svc"; group = "svc"; permissions = "0640"; };
    deployment.keys.post = { keyCommand = [ "echo" "post" ]; uploadAt = "post-activation"; destDir = "/run/app/"; };
    deployment.keys.elsewhere = { text = "x"; destDir = "/var/lib/app"; name = "token"; };
    users.users.svc = { isSystemUser = true; group = "svc"; };
    users.groups.svc = { };
    environment.etc.key-path.text = config.deployment.keys.post.path;
    systemd.services.pre-key.path = [ pkgs.hello ];
    systemd.services.pre-key.preStart = "echo after Colmena's own";
    environment.etc.peer.text = nodes.beta.config.environment.etc.role.text;
  };
  beta = [
    ({ role, ... }: { environment.etc.role.text = role; })
    ({ pkgs, ... }: { imports = [ { environment.systemPackages = [ (pkgs.writeTextDir "share/imported" "i") ]; } ]; })
  ];
}
"#;

#[test]
fn every_node_of_a_hive_file_has_the_system_colmena_builds() {
    let Some(colmena) = colmena() else { return };
    let fleet = Fleet::start(&[]);
    let deep = deep_nixpkgs(&fleet);
    let hive = fleet.write("hive.nix", &HIVE.replace("@DEEP@", &nix_path(&deep)));
    fleet.ok(&["create", hive.to_str().unwrap(), "-d", "h"]);
    let ours = our_toplevels(&fleet, "h");
    let theirs = colmena_toplevels(&colmena, &hive);
    assert_eq!(ours.keys().collect::<Vec<_>>(), ["alpha", "beta"]);
    assert_eq!(ours, theirs);
}

/// A hive node with keys, deployed: Colmena's key units are in its system,
/// the keys arrive where they look for them, and a key sent before its
/// owner existed gets that owner from Colmena's activation snippet.
#[test]
fn a_hive_nodes_keys_work_with_colmenas_units_and_snippet() {
    let fleet = Fleet::start(&["m"]);
    let hive = fleet.write(
        "hive.nix",
        r#"{
          meta.nixpkgs = <nixpkgs>;
          m = {
            deployment.keys.pre = { text = "pre-secret"; user = "svc"; group = "svc"; permissions = "0640"; };
            deployment.keys.post = { text = "post-secret"; uploadAt = "post-activation"; destDir = "/run/app"; };
            users.users.svc = { isSystemUser = true; group = "svc"; };
            users.groups.svc = { };
          };
        }"#,
    );
    fleet.ok(&["create", hive.to_str().unwrap(), "-d", "h"]);
    if let Some(colmena) = colmena() {
        assert_eq!(our_toplevels(&fleet, "h"), colmena_toplevels(&colmena, &hive));
    }
    let r = fleet.ok(&["deploy", "-d", "h"]);
    assert!(
        r.stderr.contains("user ‘svc’ or group ‘svc’ does not exist yet"),
        "{}",
        r.stderr
    );
    let units = "/run/current-system/etc/systemd/system";
    let exists = |p: &str| {
        fleet
            .exec("m", &format!("test -e {units}/{p} && echo yes || echo no"))
            .trim()
            == "yes"
    };
    for unit in [
        "pre-key.service",
        "pre-key.path",
        "post-key.service",
        "post-key.path",
    ] {
        assert!(exists(unit), "{unit}");
    }
    for key in ["pre", "post"] {
        let wanted = fleet.exec(
            "m",
            &format!("readlink {units}/paths.target.wants/{key}-key.path"),
        );
        assert_eq!(wanted.trim(), format!("../{key}-key.path"));
    }
    // NixOps' units (keys.nix) are not a hive node's.
    assert!(!exists("nixops-keys.service"));
    let path_unit = fleet.exec("m", &format!("cat {units}/pre-key.path"));
    assert!(path_unit.contains("PathExists=/run/keys/pre\n"), "{path_unit}");

    let stat = |p: &str| {
        fleet
            .exec("m", &format!("stat -c '%U %G %a' {p}"))
            .trim()
            .to_owned()
    };
    assert_eq!(fleet.exec("m", "cat /run/keys/pre"), "pre-secret");
    assert_eq!(stat("/run/keys/pre"), "svc svc 640");
    assert_eq!(fleet.exec("m", "cat /run/app/post"), "post-secret");
    assert_eq!(stat("/run/app/post"), "root root 600");
    // Colmena's snippet gives a key sent before activation its owner, by
    // itself: as activation does it.
    let out = fleet.exec(
        "m",
        "chown root:root /run/keys/pre && /run/current-system/activate 2>&1",
    );
    assert!(out.contains("setting up key ownerships..."), "{out}");
    assert_eq!(stat("/run/keys/pre"), "svc svc 640");
}

/// A flake's `colmenaHive` output, made by Colmena's own makeHive, deploys
/// with its keys; the same hive as a `colmena` output evaluates to the same
/// system, purely.
#[test]
fn a_colmena_hive_made_by_colmena_deploys_and_our_front_builds_the_same() {
    let Some(colmena) = colmena() else { return };
    let fleet = Fleet::start(&["h"]);
    fleet.nix_path.set(false);
    let nixpkgs = fleet.nixpkgs_flake("nixpkgs");
    let hive = r#"{ nixpkgs }: {
      meta.nixpkgs = import nixpkgs { system = "x86_64-linux"; };
      h = { pkgs, ... }: {
        deployment.keys.k = { text = "flake-secret"; user = "svc"; group = "svc"; };
        users.users.svc = { isSystemUser = true; group = "svc"; };
        users.groups.svc = { };
        environment.systemPackages = [ pkgs.hello ];
      };
    }"#;
    let flake = |dir: &str, output: &str| {
        fleet.write(&format!("{dir}/hive.nix"), hive);
        fleet.write(
            &format!("{dir}/flake.nix"),
            &format!(
                r#"{{
                  inputs.nixpkgs.url = "path:{}";
                  inputs.colmena = {{ url = "path:{}"; flake = false; }};
                  outputs = {{ self, nixpkgs, colmena }}: {{ {output}; }};
                }}"#,
                nixpkgs.display(),
                colmena.display()
            ),
        );
        fleet.path().join(dir).to_str().unwrap().to_owned()
    };
    // What colmena.lib.makeHive is.
    let made = flake(
        "made",
        r#"colmenaHive = import "${colmena}/src/nix/hive/eval.nix" { rawHive = import ./hive.nix { inherit nixpkgs; }; hermetic = true; }"#,
    );
    let plain = flake("plain", "colmena = import ./hive.nix { inherit nixpkgs; }");
    fleet.ok(&["create", "-d", "made", "--network", &made]);
    fleet.ok(&["create", "-d", "plain", "--network", &plain]);

    fleet.ok(&["deploy", "-d", "made"]);
    let system = fleet.current_system("h");
    assert_eq!(our_toplevels(&fleet, "plain")["h"], system);
    assert_eq!(fleet.exec("h", "cat /run/keys/k"), "flake-secret");
    assert_eq!(
        fleet.exec("h", "stat -c '%U %G %a' /run/keys/k").trim(),
        "svc svc 600"
    );
    assert!(
        fleet
            .exec("h", "cat /run/current-system/activate")
            .contains("#### Activation script snippet colmena-chown-keys:"),
    );
}

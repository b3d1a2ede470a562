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
fn exported(fleet: &Fleet, d: &str) -> serde_json::Value {
    let v = json(&fleet.ok(&["export", "-d", d]).stdout);
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
    let d = exported(&fleet, "f");
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

    let d = exported(&fleet, "f");
    let url = d["flakeLockedUrl"].as_str().expect("flakeLockedUrl recorded");
    assert!(url.starts_with(&format!("path:{dir_s}?")), "{url}");
    assert!(url.contains("narHash=sha256-"), "{url}");
    let info = fleet.ok(&["info", "-d", "f"]);
    assert!(info.stdout.contains(url), "{}", info.stdout);
    assert!(info.stdout.contains("Up / Up-to-date"), "{}", info.stdout);
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

#[test]
fn network_dirs_resolve_as_in_nixops_2_and_flake_errors_name_flake_and_attribute() {
    let (fleet, nixpkgs) = pure_fleet(&[]);
    let p = |d: &Path| d.to_str().unwrap().to_owned();
    // Neither file: the error names the directory.
    std::fs::create_dir_all(fleet.path().join("empty")).unwrap();
    let empty = p(&fleet.path().join("empty"));
    let r = fleet.run(&["create", "-d", "x", "--network", &empty]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains(&format!("neither flake.nix nor nixops.nix exists in {empty}")),
        "{}",
        r.stderr
    );
    // Both files: an error.
    fleet.write("both/nixops.nix", "{ }");
    fleet.write("both/flake.nix", "{ outputs = { self }: { }; }");
    let r = fleet.run(&["create", "-d", "x", "--network", &p(&fleet.path().join("both"))]);
    assert!(
        r.stderr.contains("has both flake.nix and nixops.nix"),
        "{}",
        r.stderr
    );
    // No network output at all.
    let r = fleet.run(&[
        "create",
        "-d",
        "x",
        "--network",
        &p(&fleet.path().join("both/../both")),
    ]);
    assert_ne!(r.code, 0);
    fleet.write("none/flake.nix", "{ outputs = { self }: { }; }");
    let none = p(&fleet.path().join("none"));
    let r = fleet.run(&["create", "-d", "x", "--network", &none]);
    assert!(
        r.stderr.contains(&format!(
            "flake ‘{none}’ has no network: no nixopsConfigurations.default"
        )),
        "{}",
        r.stderr
    );
    // nixopsConfigurations without default, and a name that is not there.
    let other = nixops_flake(&fleet, &nixpkgs, "other", "{ staging = { inherit nixpkgs; }; }");
    let r = fleet.run(&["create", "-d", "x", "--network", &p(&other)]);
    assert!(
        r.stderr
            .contains("has no nixopsConfigurations.default (it has: staging)"),
        "{}",
        r.stderr
    );
    let r = fleet.run(&["create", "-d", "x", "--network", &format!("{}#prod", p(&other))]);
    assert!(
        r.stderr.contains("has no output nixopsConfigurations.prod"),
        "{}",
        r.stderr
    );
    // A network without nixpkgs.
    let nonixpkgs = nixops_flake(&fleet, &nixpkgs, "nonixpkgs", "{ default = { m = { }; }; }");
    fleet.ok(&["create", "-d", "n", "--network", &p(&nonixpkgs)]);
    let r = fleet.run(&["deploy", "-d", "n", "--dry-run"]);
    assert!(r.stderr.contains("has no ‘nixpkgs’ attribute"), "{}", r.stderr);
    assert!(r.stderr.contains("#nixopsConfigurations.default"), "{}", r.stderr);
    // A flake that does not evaluate.
    let broken = nixops_flake(
        &fleet,
        &nixpkgs,
        "broken",
        "{ default = { inherit nixpkgs; m = { ... }: { x = ; }; }; }",
    );
    let r = fleet.run(&["create", "-d", "b", "--network", &p(&broken)]);
    assert!(
        r.stderr.contains(&format!("flake ‘{}’", p(&broken))),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("syntax error"), "{}", r.stderr);
    // An input that cannot be fetched (offline, or gone).
    fleet.write(
        "gone/flake.nix",
        r#"{ inputs.nixpkgs.url = "path:/nonexistent/nixpkgs"; outputs = { self, nixpkgs }: { }; }"#,
    );
    let gone = p(&fleet.path().join("gone"));
    let r = fleet.run(&["create", "-d", "g", "--network", &gone]);
    assert!(
        r.stderr
            .contains(&format!("cannot fetch input ‘nixpkgs’ of flake ‘{gone}’")),
        "{}",
        r.stderr
    );
    // A nixops.nix directory is a network file; its flake-only #NAME is refused.
    fleet.write("classic/nixops.nix", "{ network.description = \"classic\"; }");
    let classic = p(&fleet.path().join("classic"));
    fleet.nix_path.set(true);
    fleet.ok(&["create", "-d", "c", "--network", &classic]);
    assert_eq!(
        exported(&fleet, "c")["nixExprs"],
        format!("[\"{classic}/nixops.nix\"]")
    );
    let r = fleet.run(&["create", "-d", "c2", "--network", &format!("{classic}#x")]);
    assert!(r.stderr.contains("has nixops.nix, not flake.nix"), "{}", r.stderr);
}

#[test]
fn named_configurations_override_input_and_the_staging_example_as_a_flake() {
    let (fleet, nixpkgs) = pure_fleet(&["proxy.example.com", "git.example.com"]);
    // The user's staging example (demo/), as a flake beside its files.
    for f in ["network-staging.nix", "common.nix"] {
        let text = std::fs::read_to_string(common::repo().join("demo").join(f)).unwrap();
        fleet.write(&format!("staging/{f}"), &text);
    }
    let dir = nixops_flake(
        &fleet,
        &nixpkgs,
        "staging",
        r#"{
          staging = (import ./network-staging.nix) // { inherit nixpkgs; };
          probe = { inherit nixpkgs; m = { pkgs, ... }: { environment.etc.hello.text = "${pkgs.hello}"; }; };
        }"#,
    );
    let spec = format!("{}#staging", dir.display());
    fleet.ok(&["create", "-d", "s", "--network", &spec]);
    assert_eq!(exported(&fleet, "s")["flakeAttr"], "nixopsConfigurations.staging");
    fleet.ok(&["deploy", "-d", "s"]);
    let proxy = fleet.config_json("proxy.example.com");
    assert_eq!(proxy["hostName"], "reverse-proxy");
    assert_eq!(
        proxy["nginx"]["virtualHosts"]["example.com"]["locations"]["/"]["proxyPass"],
        "http://git.example.com:3000"
    );
    assert_eq!(fleet.config_json("git.example.com")["forgejo"]["enable"], true);
    let info = fleet.ok(&["info", "-d", "s"]);
    assert!(
        info.stdout.contains("Staging environment for our git setup"),
        "{}",
        info.stdout
    );

    // --override-input replaces an input for one run, without touching the lock.
    let lock = std::fs::read_to_string(dir.join("flake.lock")).unwrap();
    let other = fleet.nixpkgs_flake("nixpkgs2");
    let default = other.join("default.nix"); // a package set whose text files differ
    let text = std::fs::read_to_string(&default).unwrap();
    std::fs::write(
        &default,
        text.replace(
            "target=\"$out$destination\"",
            "target=\"$out$destination\" # other",
        ),
    )
    .unwrap();
    let url = format!("path:{}", other.display());
    let r = fleet.ok(&["info", "-d", "s", "--override-input", "nixpkgs", &url]);
    assert!(r.stdout.contains("Flake locked URL"), "{}", r.stdout);
    // (--network on another command than create: for this run only.)
    let probe = format!("{}#probe", dir.display());
    let show = [
        "show-option",
        "-d",
        "s",
        "--network",
        &probe,
        "m",
        "environment.etc.hello.text",
    ];
    let locked = fleet.ok(&show).stdout;
    let overridden = fleet
        .ok(&[&show[..], &["--flake-override-input", "nixpkgs", &url]].concat())
        .stdout;
    assert!(
        locked.contains("-hello") && overridden.contains("-hello"),
        "{locked}"
    );
    assert_ne!(locked, overridden);
    assert_eq!(exported(&fleet, "s")["flakeAttr"], "nixopsConfigurations.staging");
    assert_eq!(std::fs::read_to_string(dir.join("flake.lock")).unwrap(), lock);
}

/// A Colmena hive, the same for a hive.nix file and a flake's `colmena`
/// output but for the package sets.
fn hive(nixpkgs: &str, beta_nixpkgs: &str) -> String {
    format!(
        r#"{{
          meta = {{
            description = "a colmena hive";
            nixpkgs = {nixpkgs};
            nodeNixpkgs.beta = {beta_nixpkgs};
            specialArgs.site = "hq";
            nodeSpecialArgs.beta.role = "db";
          }};
          defaults = {{ name, site, ... }}: {{ environment.etc.who.text = "${{name}}@${{site}}"; }};
          alpha = {{ nodes, ... }}: {{
            deployment.tags = [ "web" ];
            deployment.keys.k = {{ text = "hive-key"; uploadAt = "post-activation"; }};
            environment.etc.peer.text = nodes.beta.config.environment.etc.role.text;
          }};
          beta = [ ({{ role, ... }}: {{ environment.etc.role.text = role; }}) {{ deployment.replaceUnknownProfiles = true; }} ];
        }}"#
    )
}

fn check_hive_deployed(fleet: &Fleet, d: &str) {
    fleet.ok(&["deploy", "-d", d]);
    let alpha = fleet.config_json("alpha");
    assert_eq!(alpha["etc"]["who"], "alpha@hq");
    assert_eq!(alpha["etc"]["peer"], "db");
    // Colmena sets no host name from the node's name.
    assert_ne!(alpha["hostName"], "alpha");
    assert_eq!(fleet.exec("alpha", "cat /run/keys/k"), "hive-key");
    assert_eq!(fleet.config_json("beta")["etc"]["who"], "beta@hq");
    let info = fleet.ok(&["info", "-d", d]);
    assert!(info.stdout.contains("a colmena hive"), "{}", info.stdout);
    // One system (its key units' PATH brings the stand-in's busybox along).
    let r = fleet.ok(&["dump-nix-paths", "-d", d, "--on", "@web"]);
    assert!(
        r.stdout.lines().filter(|l| l.contains("-nixos-system-")).count() == 1,
        "{}",
        r.stdout
    );
}

#[test]
fn a_colmena_hive_file_deploys_unchanged() {
    let fleet = Fleet::start(&["alpha", "beta"]);
    let file = fleet.write("hive.nix", &hive("import <nixpkgs> { }", "<nixpkgs>"));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "h"]);
    check_hive_deployed(&fleet, "h");
}

#[test]
fn a_colmena_hive_flake_deploys_unchanged_and_purely() {
    let (fleet, nixpkgs) = pure_fleet(&["alpha", "beta"]);
    fleet.write(
        "hive/flake.nix",
        &format!(
            r#"{{
              inputs.nixpkgs.url = "path:{}";
              outputs = {{ self, nixpkgs }}: {{ colmena = {}; }};
            }}"#,
            nixpkgs.display(),
            hive(r#"import nixpkgs { system = "x86_64-linux"; }"#, "nixpkgs")
        ),
    );
    let dir = fleet.path().join("hive");
    fleet.ok(&["create", "-d", "hf", "--network", dir.to_str().unwrap()]);
    assert_eq!(exported(&fleet, "hf")["flakeAttr"], "colmena");
    check_hive_deployed(&fleet, "hf");
}

#[test]
fn what_a_hive_uses_and_the_tool_cannot_do_is_an_error_naming_it() {
    let fleet = Fleet::start(&[]);
    for (i, (body, named)) in [
        ("meta.colour = \"red\"; m = { };", "meta.colour"),
        (
            "meta.allowApplyAll = false; m = { };",
            "meta.allowApplyAll = false",
        ),
    ]
    .iter()
    .enumerate()
    {
        let file = fleet.write(
            &format!("h{i}/hive.nix"),
            &format!("{{ meta.nixpkgs = <nixpkgs>; {body} }}"),
        );
        let name = format!("h{i}");
        fleet.ok(&["create", file.to_str().unwrap(), "-d", &name]);
        let r = fleet.run(&["deploy", "-d", &name, "--dry-run"]);
        assert_ne!(r.code, 0, "{body}");
        assert!(r.stderr.contains(named), "{body}: {}", r.stderr);
    }
    // With machines named, allowApplyAll = false deploys.
    fleet.ok(&["deploy", "-d", "h1", "--dry-run", "--on", "m"]);
}

/// A node that does not evaluate fails only a deploy that selects it: one
/// of another node goes through, with a warning naming it. A node for local
/// deployment only (`targetHost = null`) is skipped by every deploy over
/// SSH, selected or not.
#[test]
fn a_node_that_cannot_be_deployed_fails_only_a_deploy_that_selects_it() {
    let fleet = Fleet::start(&["other"]);
    let file = fleet.write(
        "h/hive.nix",
        "{ meta.nixpkgs = <nixpkgs>; aibo = { deployment.targetHost = null; }; broken = { deployment.targetHost = throw \"broken node\"; }; other = { }; }",
    );
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "h"]);
    let r = fleet.ok(&["deploy", "--on", "other"]);
    assert!(!r.stderr.contains("‘aibo’"), "{}", r.stderr);
    assert!(
        r.stderr.contains("machine ‘broken’, not selected") && r.stderr.contains("broken node"),
        "{}",
        r.stderr
    );
    assert!(fleet.exported_toplevel("h", "other").is_some());
    // Excluded by name: the same.
    fleet.ok(&["deploy", "--exclude", "aibo", "--exclude", "broken", "--dry-run"]);
    // Selected, the local-only node is skipped, saying why.
    let r = fleet.ok(&["deploy", "--on", "aibo"]);
    assert!(
        r.stderr
            .contains("skipping ‘aibo’: it has deployment.targetHost = null"),
        "{}",
        r.stderr
    );
    assert_eq!(fleet.exported_toplevel("h", "aibo"), None);
    // Selected, or possibly selected by a tag: fails.
    for args in [
        &["deploy", "--dry-run"][..],
        &["deploy", "--on", "@web", "--dry-run"],
    ] {
        let r = fleet.run(args);
        assert_ne!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("broken node"), "{args:?}: {}", r.stderr);
    }
}

/// `--impure`: a flake network is evaluated purely (`builtins.getEnv` is
/// empty there) unless --impure says otherwise.
#[test]
fn impure_lets_a_flake_network_read_the_environment() {
    let (fleet, nixpkgs) = pure_fleet(&[]);
    let dir = nixops_flake(
        &fleet,
        &nixpkgs,
        "imp",
        r#"{ default = { inherit nixpkgs; m = { environment.etc.rev.text = builtins.getEnv "IMPURE_REV"; }; }; }"#,
    );
    fleet.ok(&["create", "-d", "imp", "--network", dir.to_str().unwrap()]);
    let show = |extra: &[&str]| {
        let mut args = vec!["show-option", "-d", "imp", "m", "environment.etc.rev.text"];
        args.extend(extra);
        let out = fleet
            .nixops(&args)
            .env("IMPURE_REV", "from-env")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(show(&[]), "\"\"");
    assert_eq!(show(&["--impure"]), "\"from-env\"");
}

//! A Colmena user's workflow, unchanged but for the command's name: in a
//! directory with hive.nix, without `nixops create`, `apply` (each goal,
//! `--on` names and tags), `build`, `upload-keys`, `exec`, `eval` (output
//! compared with Colmena's own evaluation of the same hive), a node with
//! `targetHost = null` deployed by `apply-local`, and
//! `replaceUnknownProfiles = false`.

mod common;

use std::path::{Path, PathBuf};

use common::{Fleet, Run};

const HIVE: &str = r#"{
  meta = {
    nixpkgs = <nixpkgs>;
    description = "a colmena hive";
    specialArgs.site = "hq";
  };
  defaults = { name, site, ... }: {
    environment.etc.who.text = "${name}@${site}";
    environment.etc.rev.text = "REV";
  };
  alpha = { nodes, ... }: {
    deployment.tags = [ "web" ];
    deployment.keys.token = { text = "alpha-token"; };
    environment.etc.peer.text = nodes.beta.config.environment.etc.who.text;
  };
  beta = { deployment.tags = [ "web" "db" ]; };
  # ssh's configuration chooses the user (the fleet's says root).
  gamma = { deployment.tags = [ "db" ]; deployment.targetUser = null; };
  # Deployed only on itself (`apply-local`): no deploy over SSH reaches it.
  laptop = {
    deployment.targetHost = null;
    deployment.allowLocalDeployment = true;
  };
}
"#;

fn hive(rev: &str) -> String {
    HIVE.replace("REV", rev)
}

/// nixops run in `dir`, as a Colmena user runs colmena.
fn in_dir(fleet: &Fleet, dir: &Path, args: &[&str]) -> Run {
    Run::from(fleet.nixops(args).current_dir(dir).output().unwrap())
}

fn ok_in(fleet: &Fleet, dir: &Path, args: &[&str]) -> Run {
    let r = in_dir(fleet, dir, args);
    assert_eq!(r.code, 0, "{args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

fn rev(fleet: &Fleet, host: &str) -> String {
    fleet.exec(host, "cat /run/current-system/etc/rev 2>/dev/null || true")
}

#[test]
fn the_colmena_workflow_runs_in_a_hive_directory_without_create() {
    let fleet = Fleet::start(&["alpha", "beta", "gamma"]);
    let file = fleet.write("infra/hive.nix", &hive("one"));
    let dir = file.parent().unwrap().to_path_buf();

    // `apply --on @web`: the deployment is made on first use, named after
    // the hive's directory, and only the tagged machines are deployed.
    let r = ok_in(&fleet, &dir, &["apply", "--on", "@web"]);
    assert!(r.stderr.contains("created deployment ‘infra’"), "{}", r.stderr);
    assert_eq!(rev(&fleet, "alpha"), "one");
    assert_eq!(rev(&fleet, "beta"), "one");
    assert_eq!(rev(&fleet, "gamma"), "");
    assert_eq!(fleet.config_json("alpha")["etc"]["peer"], "beta@hq");
    assert_eq!(fleet.exec("alpha", "cat /run/keys/token"), "alpha-token");
    let list = fleet.ok(&["list"]);
    assert!(list.stdout.contains("infra"), "{}", list.stdout);
    assert!(list.stdout.contains("a colmena hive"), "{}", list.stdout);

    // From a subdirectory, `apply` of all: the same deployment (none is
    // made), gamma deployed too, the local-only node skipped with a note.
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    let r = ok_in(&fleet, &dir.join("sub/deeper"), &["apply"]);
    assert!(!r.stderr.contains("created deployment"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("skipping ‘laptop’: it has deployment.targetHost = null"),
        "{}",
        r.stderr
    );
    assert_eq!(rev(&fleet, "gamma"), "one");
    assert_eq!(fleet.ok(&["list"]).stdout.matches("a colmena hive").count(), 1);
    // NixOps' commands find it too: by name, and as the hive's.
    let info = fleet.ok(&["info", "-d", "infra", "--plain", "--no-eval"]);
    assert!(info.stdout.contains("gamma"), "{}", info.stdout);
    let history = ok_in(&fleet, &dir, &["history"]);
    assert!(history.stdout.lines().count() >= 2, "{}", history.stdout);

    // `build`: builds every node, the local-only one too, and touches none;
    // --keep-result keeps them beside the hive, as Colmena does.
    std::fs::write(&file, hive("two")).unwrap();
    ok_in(&fleet, &dir, &["build", "--keep-result"]);
    for node in ["alpha", "beta", "gamma", "laptop"] {
        let root = dir.join(format!(".gcroots/node-{node}"));
        let target = std::fs::read_link(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        assert!(
            target.to_string_lossy().contains("-nixos-system-"),
            "{}",
            target.display()
        );
    }
    assert_eq!(rev(&fleet, "alpha"), "one");

    // `push`: copied, not activated.
    ok_in(&fleet, &dir, &["apply", "push", "--on", "gamma"]);
    let gamma_two = fleet
        .ok(&["dump-nix-paths", "-d", "infra", "--on", "gamma"])
        .stdout
        .lines()
        .find(|l| l.contains("-nixos-system-"))
        .unwrap()
        .to_owned();
    fleet.exec("gamma", &format!("nix-store --check-validity {gamma_two}"));
    assert_eq!(rev(&fleet, "gamma"), "one");

    // `dry-activate`: shows, changes nothing.
    let r = ok_in(&fleet, &dir, &["apply", "dry-activate", "--on", "gamma"]);
    assert!(r.stderr.to_lowercase().contains("dry"), "{}", r.stderr);
    assert_eq!(rev(&fleet, "gamma"), "one");

    // `test`: active, not the boot default; `boot`: the boot default only.
    let profile_before = fleet.profile("beta");
    ok_in(&fleet, &dir, &["apply", "test", "--on", "beta"]);
    assert_eq!(rev(&fleet, "beta"), "two");
    assert_eq!(fleet.profile("beta"), profile_before);
    ok_in(&fleet, &dir, &["apply", "boot", "--on", "gamma"]);
    assert_eq!(rev(&fleet, "gamma"), "one");
    assert_eq!(fleet.profile("gamma"), gamma_two);

    // `switch` by name and glob, comma-separated.
    ok_in(&fleet, &dir, &["apply", "switch", "--on", "alp*,gamma"]);
    assert_eq!(rev(&fleet, "alpha"), "two");
    assert_eq!(rev(&fleet, "gamma"), "two");

    // `upload-keys` (and the `keys` goal): the keys only.
    fleet.exec("alpha", "rm /run/keys/token");
    ok_in(&fleet, &dir, &["upload-keys", "--on", "alpha"]);
    assert_eq!(fleet.exec("alpha", "cat /run/keys/token"), "alpha-token");
    fleet.exec("alpha", "rm /run/keys/token");
    ok_in(&fleet, &dir, &["apply", "keys", "--on", "@web"]);
    assert_eq!(fleet.exec("alpha", "cat /run/keys/token"), "alpha-token");
    let r = in_dir(&fleet, &dir, &["apply", "keys", "--no-keys"]);
    assert_ne!(r.code, 0);

    // `exec`: on the selected machines, each line prefixed with its name;
    // a failure somewhere is the exit code.
    let r = ok_in(
        &fleet,
        &dir,
        &[
            "exec",
            "--on",
            "@db",
            "-p",
            "2",
            "--",
            "cat",
            "/run/current-system/etc/who",
        ],
    );
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(
        lines[0].starts_with("beta") && lines[0].ends_with("beta@hq"),
        "{}",
        r.stdout
    );
    assert!(
        lines[1].starts_with("gamma") && lines[1].ends_with("gamma@hq"),
        "{}",
        r.stdout
    );
    let r = in_dir(&fleet, &dir, &["exec", "--on", "beta", "false"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("‘beta’"), "{}", r.stderr);

    // -f from elsewhere, and -d: the same deployment.
    let r = fleet.ok(&["apply", "-f", file.to_str().unwrap(), "--on", "beta"]);
    assert!(!r.stderr.contains("created deployment"), "{}", r.stderr);
    assert_eq!(rev(&fleet, "beta"), "two");
    fleet.ok(&["apply", "-d", "infra", "dry-activate", "--on", "beta"]);
}

#[test]
fn eval_prints_what_colmena_prints_for_the_same_expression() {
    let fleet = Fleet::start(&[]);
    let file = fleet.write("h/hive.nix", &hive("one"));
    let dir = file.parent().unwrap();
    let expr = r#"{ nodes, lib, pkgs, ... }: {
      who = lib.mapAttrs (n: v: v.config.environment.etc.who.text) nodes;
      tags = lib.mapAttrs (n: v: v.config.deployment.tags) nodes;
      system = pkgs.system;
      odd = [ 1.5 null true "quote\" and \\ and \u00e9" ];
    }"#;
    let ours = ok_in(&fleet, dir, &["eval", "-E", expr]).stdout;
    // From a file, the same.
    let expr_file = fleet.write("h/expr.nix", expr);
    let from_file = ok_in(&fleet, dir, &["introspect", expr_file.to_str().unwrap()]).stdout;
    assert_eq!(ours, from_file);
    assert!(ours.contains(r#""alpha":"alpha@hq""#), "{ours}");

    let Some(colmena) = colmena_src() else { return };
    let out = std::process::Command::new("nix-instantiate")
        .args(["--eval", "--json", "--strict", "-E"])
        .arg(format!(
            "builtins.toJSON ((import {}/src/nix/hive/eval.nix {{ rawHive = import {}; }}).introspect ({expr}))",
            colmena.display(),
            file.display()
        ))
        .env("NIX_PATH", format!("nixpkgs={}", common::nixpkgs().display()))
        .env("NIX_CONFIG", common::NIX_CONFIG)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Colmena prints the JSON text Nix made, and a newline.
    let theirs: String = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours, format!("{theirs}\n"));

    // --instantiate: the derivation's path, as nix-instantiate prints it.
    let r = ok_in(
        &fleet,
        dir,
        &[
            "eval",
            "--instantiate",
            "-E",
            "{ nodes, ... }: nodes.alpha.config.system.build.toplevel",
        ],
    );
    assert!(
        r.stdout.trim_end().ends_with(".drv") && r.stdout.ends_with('\n'),
        "{}",
        r.stdout
    );

    // `repl`: nix repl with `nodes`, `lib` and `pkgs` loaded.
    let f = file.to_str().unwrap();
    let r = fleet.run_with_stdin(
        &["repl", "-f", f],
        ":p builtins.attrNames nodes\n:p nodes.beta.config.environment.etc.who.text\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"laptop\""), "{}", r.stdout);
    assert!(r.stdout.contains("beta@hq"), "{}", r.stdout);

    let r = fleet.ok(&["nix-info"]);
    assert!(r.stdout.contains("Nix version: 2."), "{}", r.stdout);
    assert!(r.stdout.contains("Flakes: supported"), "{}", r.stdout);
}

/// Colmena 0.5's sources (../shared/peers/colmena); None, with a notice,
/// where they are absent (a user's fresh clone).
fn colmena_src() -> Option<PathBuf> {
    let dir = common::repo().join("../shared/peers/colmena");
    if dir.join("src/nix/hive/eval.nix").exists() {
        Some(dir)
    } else {
        eprintln!(
            "NOTICE: skipped the comparison with Colmena: {} is absent",
            dir.display()
        );
        None
    }
}

/// `apply-local` as Colmena has it: only a node that allows it, found by
/// `--node`; a node with targetHost = null is deployed this way only.
#[test]
fn apply_local_deploys_only_nodes_that_allow_it() {
    let fleet = Fleet::start(&["laptop"]);
    let file = fleet.write(
        "h/hive.nix",
        "{ meta.nixpkgs = <nixpkgs>; laptop = { deployment.targetHost = null; deployment.allowLocalDeployment = true; environment.etc.rev.text = \"local\"; }; server = { environment.etc.rev.text = \"server\"; }; }",
    );
    let f = file.to_str().unwrap();
    let on_host = |args: &[&str]| Run::from(fleet.nixops_on("laptop", args).output().unwrap());
    let r = on_host(&["apply-local", "-f", f, "--node", "laptop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(rev(&fleet, "laptop"), "local");
    assert_eq!(fleet.ssh_count("laptop"), 0);

    let r = on_host(&["apply-local", "-f", f, "--node", "server"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("deployment.allowLocalDeployment = true"),
        "{}",
        r.stderr
    );
    assert_eq!(rev(&fleet, "laptop"), "local");

    let r = on_host(&[
        "apply-local",
        "-f",
        f,
        "--node",
        "laptop",
        "--sudo-command",
        "doas",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("privilegeEscalationCommand"), "{}", r.stderr);

    // Over SSH it is never reached: `apply --on laptop` skips it.
    let r = fleet.ok(&["apply", "-f", f, "--on", "laptop"]);
    assert!(r.stderr.contains("skipping ‘laptop’"), "{}", r.stderr);
    let r = fleet.run(&["ssh", "-f", f, "laptop", "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("targetHost = null"), "{}", r.stderr);
}

/// `replaceUnknownProfiles = false` (Colmena's meaning): a machine running
/// a system this deployer never built or deployed is not overwritten,
/// unless --force-replace-unknown-profiles says so; one it knows is.
#[test]
fn unknown_systems_are_not_replaced_when_the_node_says_so() {
    let fleet = Fleet::start(&["web"]);
    // Someone else deploys the machine: built and activated on the machine
    // itself, so this deployer's store never had that system.
    let other = fleet.write(
        "other/hive.nix",
        "{ meta.nixpkgs = <nixpkgs>; web = { deployment.allowLocalDeployment = true; environment.etc.rev.text = \"theirs\"; }; }",
    );
    let r = Run::from(
        fleet
            .nixops_on(
                "web",
                &["apply-local", "-f", other.to_str().unwrap(), "--node", "web"],
            )
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(rev(&fleet, "web"), "theirs");

    let ours = fleet.write(
        "ours/hive.nix",
        "{ meta.nixpkgs = <nixpkgs>; web = { deployment.replaceUnknownProfiles = false; environment.etc.rev.text = \"REV\"; }; }",
    );
    let dir = ours.parent().unwrap();
    std::fs::write(
        &ours,
        std::fs::read_to_string(&ours).unwrap().replace("REV", "ours"),
    )
    .unwrap();
    let r = in_dir(&fleet, dir, &["apply"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("replaceUnknownProfiles = false"),
        "{}",
        r.stderr
    );
    assert_eq!(rev(&fleet, "web"), "theirs");

    ok_in(&fleet, dir, &["apply", "--force-replace-unknown-profiles"]);
    assert_eq!(rev(&fleet, "web"), "ours");
    // Now it runs ours: the next change goes through without the flag.
    std::fs::write(
        &ours,
        std::fs::read_to_string(&ours)
            .unwrap()
            .replace("\"ours\"", "\"ours-2\""),
    )
    .unwrap();
    ok_in(&fleet, dir, &["apply"]);
    assert_eq!(rev(&fleet, "web"), "ours-2");
}

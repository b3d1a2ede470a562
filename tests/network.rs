//! Network file semantics (NixOps'), and how machines are reached.

mod common;

use common::Fleet;

#[test]
fn files_merge_require_defaults_and_module_arguments() {
    let fleet = Fleet::start(&["alpha", "beta-host"]);
    // Logical file: what the machines are. It requires a file of its own.
    fleet.write(
        "logical.nix",
        r#"{
          network.description = "merged";
          require = [ ./extra.nix ];
          defaults = { name, deploymentName, uuid, ... }: {
            environment.etc.who.text = "${name} in ${deploymentName} ${builtins.substring 0 8 uuid}";
          };
          alpha = { nodes, resources, ... }: {
            environment.etc.peer.text = nodes.beta.config.networking.hostName
              + " " + resources.machines.beta.deployment.targetHost;
          };
          beta = [ ({ ... }: { services.forgejo.enable = true; }) { services.forgejo.port = "4000"; } ];
        }"#,
    );
    fleet.write(
        "extra.nix",
        r#"{ alpha = { ... }: { services.nginx.enable = true; }; }"#,
    );
    // Physical file: where they are.
    fleet.write(
        "physical.nix",
        r#"{
          beta = { ... }: { deployment.targetHost = "beta-host"; networking.hostName = "b"; };
        }"#,
    );
    let l = fleet.path().join("logical.nix");
    let p = fleet.path().join("physical.nix");
    let uuid = fleet
        .ok(&["create", l.to_str().unwrap(), p.to_str().unwrap(), "-d", "net"])
        .stdout;
    fleet.ok(&["deploy"]);

    let alpha = fleet.config_json("alpha");
    assert_eq!(alpha["hostName"], "alpha");
    assert_eq!(alpha["nginx"]["enable"], true);
    assert_eq!(alpha["etc"]["peer"], "b beta-host");
    assert_eq!(alpha["etc"]["who"], format!("alpha in net {}", &uuid[..8]));
    let beta = fleet.config_json("beta-host");
    assert_eq!(beta["hostName"], "b");
    assert_eq!(beta["forgejo"]["enable"], true);
    assert_eq!(beta["forgejo"]["port"], "4000");
    assert_eq!(beta["etc"]["who"], format!("beta in net {}", &uuid[..8]));
    let info = fleet.ok(&["info", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(v["description"], "merged");
    assert_eq!(v["machines"].as_array().unwrap().len(), 2);
}

#[test]
fn nix_path_from_create_and_show_trace() {
    let fleet = Fleet::start(&["m"]);
    let file = fleet.write("net.nix", "{ m = { ... }: { }; }");
    let nixpkgs = format!("nixpkgs={}", common::nixpkgs().display());
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d", "-I", &nixpkgs]);
    // No NIX_PATH: the -I given to create is kept in state and used.
    let out = fleet.nixops(&["deploy"]).env_remove("NIX_PATH").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    fleet.write(
        "net.nix",
        "{ m = { config, ... }: { networking.hostName = config.nosuch.option; }; }",
    );
    let plain = fleet.run(&["deploy"]);
    let traced = fleet.run(&["deploy", "--show-trace"]);
    assert_eq!(plain.code, 1);
    assert_eq!(traced.code, 1);
    assert!(plain.stderr.contains("nosuch"), "{}", plain.stderr);
    assert!(
        traced.stderr.len() > plain.stderr.len(),
        "--show-trace adds the trace"
    );
    assert!(traced.stderr.contains("while evaluating"), "{}", traced.stderr);
}

#[test]
fn target_port_ssh_options_and_debug() {
    let fleet = Fleet::start(&["p1", "p2"]);
    let (port1, port2) = (fleet.port("p1"), fleet.port("p2"));
    let net = format!(
        r#"{{
          viaport = {{ ... }}: {{ deployment.targetHost = "127.0.0.1"; deployment.targetPort = {port1}; }};
          viaopts = {{ ... }}: {{ deployment.targetHost = "127.0.0.1"; deployment.sshOptions = [ "-p" "{port2}" ]; }};
        }}"#
    );
    fleet.create("d", &net);
    let r = fleet.ok(&[
        "deploy",
        "--debug",
        "-j",
        "1",
        "--cores",
        "1",
        "--fallback",
        "--option",
        "max-silent-time",
        "300",
    ]);
    assert!(r.stderr.contains("running: ssh"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--option max-silent-time 300 --max-jobs 1 --cores 1 --keep-going --fallback"),
        "Nix options are passed through: {}",
        r.stderr
    );
    assert!(r.stderr.contains("running: nix-copy-closure"), "{}", r.stderr);
    assert_eq!(fleet.config_json("p1")["hostName"], "viaport");
    assert_eq!(fleet.config_json("p2")["hostName"], "viaopts");
    let exported = fleet.ok(&["export"]).stdout;
    assert!(
        exported.contains(&format!("\"targetPort\": \"{port1}\"")),
        "{exported}"
    );
}

#[test]
fn targets_from_ssh_config_need_no_port() {
    // The fleet's ~/.ssh/config gives the port; the network names none.
    let fleet = Fleet::start(&["cfg"]);
    fleet.create("d", "{ cfg = { ... }: { }; }");
    fleet.ok(&["deploy"]);
    assert!(!fleet.current_system("cfg").is_empty());
    assert!(!fleet.ok(&["export"]).stdout.contains("targetPort"));
}

#[test]
fn non_root_target_user_with_privilege_escalation() {
    let fleet = Fleet::start(&["u1", "u2"]);
    let net = r#"{
      u1 = { ... }: { deployment.targetUser = "deployer"; };
      u2 = { ... }: { deployment.targetUser = "deployer"; deployment.privilegeEscalationCommand = [ "false" ]; };
    }"#;
    fleet.create("d", net);
    let r = fleet.run(&["deploy"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("namely on ‘u2’)"), "{}", r.stderr);
    // u1: logged in as deployer, root work done through sudo.
    let t = fleet.exported_toplevel("d", "u1").unwrap();
    assert_eq!(fleet.current_system("u1"), t);
    assert_eq!(
        fleet
            .exec("u1", "readlink -f /nix/var/nix/profiles/system")
            .trim(),
        t
    );
    let log = std::fs::read_to_string(fleet.path().join("hosts/u1/sshd.log")).unwrap();
    assert!(log.contains("Accepted publickey for deployer"), "{log}");
    assert!(!log.contains("Accepted publickey for root"), "{log}");
    assert!(fleet.current_system("u2").is_empty());
}

/// Resources of NixOps' plugins' types (only those plugins can create
/// them) that state does not hold, and types of plugins this tool does not
/// know, are refused by deploy and plan, naming the type, before anything
/// is touched.
#[test]
fn plugin_resources_are_refused_by_deploy_and_plan() {
    let fleet = Fleet::start(&["m"]);
    for (network, says) in [
        (
            r#"{ resources.ec2KeyPairs.k = { region = "eu-west-1"; }; resources.sshKeyPairs.s = { }; m = { ... }: { }; }"#,
            "the network declares resources.ec2KeyPairs k that state does not hold (as ‘ec2-keypair’): this tool adopts NixOps plugins' resources from state but creates none",
        ),
        (
            r#"{ resources.exampleCloudDisks.k = { region = "eu-west-1"; }; resources.sshKeyPairs.s = { }; m = { ... }: { }; }"#,
            "the network declares resources.exampleCloudDisks (k): this tool creates NixOps' own resources",
        ),
    ] {
        fleet.create("d", network);
        for args in [&["deploy"][..], &["plan"][..]] {
            let r = fleet.run(args);
            assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
            assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        }
        fleet.ok(&["delete", "-d", "d"]);
        let out = fleet.ok(&["list"]).stdout;
        assert!(!out.contains("| d "), "{out}");
    }
    fleet.create(
        "d",
        r#"{ resources.ec2KeyPairs.k = { region = "eu-west-1"; }; resources.sshKeyPairs.s = { }; m = { ... }: { }; }"#,
    );
    assert_eq!(fleet.run(&["deploy"]).code, 1);
    // Nothing was touched: no machine recorded, no key pair made.
    let out = fleet.ok(&["export", "-d", "d"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (_, d) = v.as_object().unwrap().iter().next().unwrap();
    assert_eq!(d["resources"], serde_json::json!({}), "{out}");
}

/// `network.nixpkgs` in every form NixOps accepts — a package set (NixOps
/// 2.0's own: `import <nixpkgs> { }`), a path — taken from the first
/// network file that sets it, as NixOps does.
#[test]
fn network_nixpkgs_as_a_package_set_or_a_path_first_file_first() {
    let fleet = Fleet::start(&[]);
    let np = common::nixpkgs();
    let forms = [
        "import <nixpkgs> { }".to_owned(),
        format!("{}", np.display()),
        format!("builtins.toPath \"{}\"", np.display()),
    ];
    for (i, form) in forms.iter().enumerate() {
        let first = fleet.write(
            &format!("first{i}.nix"),
            &format!("{{ network.nixpkgs = {form}; m = {{ ... }}: {{ }}; }}\n"),
        );
        // A later file's setting does not count (it would not evaluate).
        let second = fleet.write(
            &format!("second{i}.nix"),
            "{ network.nixpkgs = /nonexistent/nixpkgs; }\n",
        );
        let d = format!("d{i}");
        fleet.ok(&[
            "create",
            first.to_str().unwrap(),
            second.to_str().unwrap(),
            "-d",
            &d,
        ]);
        let r = fleet.run(&["deploy", "-d", &d, "--dry-run"]);
        assert_eq!(r.code, 0, "{form}: {}", r.stderr);
        assert!(r.stdout.contains("nixos-system-m"), "{form}: {}", r.stdout);
    }
}

/// NixOps 2.0's `network.storage` and `network.lock`: the legacy SQLite
/// file and the noop lock are what this tool has; the others are named in
/// an error; a `databasefile` other than the state in use is an error
/// unless -s or $NIXOPS_STATE named the state (which wins, as in NixOps).
#[test]
fn network_storage_and_lock_as_nixops_2_sets_them() {
    let fleet = Fleet::start(&[]);
    let m = "m = { ... }: { };";
    for (i, (setting, error)) in [
        ("network.storage.legacy = { };", None),
        (
            "network.storage.legacy = { databasefile = \"/elsewhere/x.nixops\"; }; network.lock.noop = { };",
            None,
        ),
        ("network.storage.memory = { };", Some("network.storage.memory")),
        (
            "network.storage.s3 = { bucket = \"b\"; };",
            Some("network.storage.s3"),
        ),
        (
            "network.storage = { legacy = { }; memory = { }; };",
            Some("sets 2 backends"),
        ),
        (
            "network.storage.legacy = { }; network.lock.s3 = { };",
            Some("network.lock.s3"),
        ),
    ]
    .iter()
    .enumerate()
    {
        let d = format!("d{i}");
        fleet.create(&d, &format!("{{ {setting} {m} }}"));
        let r = fleet.run(&["deploy", "-d", &d, "--dry-run"]);
        match error {
            None => assert_eq!(r.code, 0, "{setting}: {}", r.stderr),
            Some(e) => {
                assert_ne!(r.code, 0, "{setting}");
                assert!(r.stderr.contains(e), "{setting}: {}", r.stderr);
            }
        }
    }
    // The default state, and a network that names another file: refused,
    // saying how to use it.
    let net = fleet.write(
        "default.nix",
        &format!("{{ network.storage.legacy.databasefile = \"/elsewhere/x.nixops\"; {m} }}"),
    );
    let default = |args: &[&str]| {
        let out = fleet.nixops(args).env_remove("NIXOPS_STATE").output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = default(&["create", net.to_str().unwrap(), "-d", "home"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = default(&["deploy", "-d", "home", "--dry-run"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("-s /elsewhere/x.nixops"), "{err}");
}

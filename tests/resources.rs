//! NixOps' non-machine resources: `resources.sshKeyPairs` (a key pair the
//! tool generates and keeps in state) and `resources.commandOutput` (a
//! script's output, kept in state), made before the machines are evaluated
//! and seen by them as `resources.<type>.<name>`; their private parts never
//! in a process's arguments, the logs, the history or the Nix store; state
//! that moves between NixOps 2.0 and this tool both ways, with the same
//! systems built from it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fleet, grep, random, store_paths_since, watched};
use sha2::{Digest, Sha256};

/// What every OpenSSH private key holds: its armour, and the start of its
/// body ("openssh-key-v1" in base64).
const PRIVATE_KEY_MARKS: [&str; 2] = ["OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjE"];

/// The only deployment of an export (its attributes and resources).
fn only(export: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(export).unwrap_or_else(|e| panic!("{e}: {export}"));
    v.as_object().unwrap().values().next().unwrap().clone()
}

fn exported(fleet: &Fleet, d: &str) -> serde_json::Value {
    only(&fleet.ok(&["export", "-d", d]).stdout)
}

fn attr(export: &serde_json::Value, resource: &str, name: &str) -> String {
    export["resources"][resource][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {resource}.{name} in {export}"))
        .to_owned()
}

/// The public key that belongs to a private key, by ssh-keygen (key type
/// and base64, without the comment).
fn public_of(fleet: &Fleet, private: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = fleet.write("check/key", private);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(&file).unwrap();
    let public = String::from_utf8_lossy(&out.stdout);
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// NixOps' resource id of a command output: its name and a digest of its
/// value.
fn output_id(name: &str, value: &str) -> String {
    format!("{name}-{}", &hex::encode(Sha256::digest(value.as_bytes()))[..32])
}

/// A key pair whose public key root may log in with, a command output a
/// machine shows, and a secret command output nothing uses: made by the
/// first deploy, before the machine is evaluated; kept by the next (the
/// script runs again only when it changes); listed by `info`; the private
/// key and the secret output in no process's arguments or environment, no
/// log, no history, no store, no file but the state.
#[test]
fn key_pairs_and_command_outputs_are_made_once_kept_in_state_and_seen_by_machines() {
    let fleet = Fleet::start(&["m"]);
    let runs = fleet.path().join("runs");
    let token = random("token-secret");
    let secret = fleet.write("secret/token", &token);
    let network = |version: &str| {
        format!(
            r#"{{
              resources.sshKeyPairs.deployer = {{ }};
              resources.commandOutput.stamp = {{ script = "echo {version} >> {runs}; test -d \"$out\" && echo stamp-$(cat /proc/sys/kernel/random/uuid)"; }};
              resources.commandOutput.token = {{ script = "cat {secret}"; }};
              m = {{ resources, ... }}: {{
                users.users.root.openssh.authorizedKeys.keys = [ resources.sshKeyPairs.deployer.publicKey ];
                environment.etc.stamp.text = resources.commandOutput.stamp.value;
              }};
            }}"#,
            runs = runs.display(),
            secret = secret.display()
        )
    };
    let net = fleet.write("net.nix", &network("v1"));
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d"]);
    let marker = fleet.path().join("store-marker");
    std::fs::write(&marker, "").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let mut needles: Vec<String> = PRIVATE_KEY_MARKS.iter().map(|s| s.to_string()).collect();
    needles.push(token.clone());
    let (first, hits) = watched(&fleet, &["deploy", "--debug"], &needles);
    assert!(hits.is_empty(), "secrets seen in /proc: {hits:?}");
    assert!(first.stderr.contains("running: ssh-keygen"), "{}", first.stderr);

    // State holds them as NixOps 2.0 does.
    let e = exported(&fleet, "d");
    let public = attr(&e, "deployer", "publicKey");
    let private = attr(&e, "deployer", "privateKey");
    assert_eq!(attr(&e, "deployer", "type"), "ssh-keypair");
    assert_eq!(attr(&e, "deployer", "state"), "3");
    assert!(
        public.starts_with("ssh-ed25519 ") && public.ends_with(" NixOps auto-generated key"),
        "{public}"
    );
    assert!(
        private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
        "{e}"
    );
    assert!(private.ends_with("-----END OPENSSH PRIVATE KEY-----\n"), "{e}");
    let public_fields: Vec<&str> = public.split_whitespace().take(2).collect();
    assert_eq!(public_of(&fleet, &private), public_fields.join(" "));
    let stamp = attr(&e, "stamp", "value");
    assert!(stamp.starts_with("stamp-") && stamp.ends_with('\n'), "{stamp:?}");
    assert_eq!(attr(&e, "stamp", "type"), "command-output");
    assert_eq!(attr(&e, "stamp", "name"), "stamp");
    assert!(attr(&e, "stamp", "script").starts_with("echo v1 >> "), "{e}");
    assert_eq!(attr(&e, "token", "value"), token);
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "v1\n");

    // The machine got them with its first system.
    let c = fleet.config_json("m");
    assert_eq!(c["etc"]["ssh/authorized_keys.d/root"], format!("{public}\n"));
    assert_eq!(c["etc"]["stamp"], stamp.as_str());
    let system = fleet.current_system("m");

    // The next deploy keeps them: same key pair, the script not run again,
    // the system unchanged.
    let (second, hits) = watched(&fleet, &["deploy", "--debug"], &needles);
    assert!(hits.is_empty(), "secrets seen in /proc: {hits:?}");
    assert!(!second.stderr.contains("ssh-keygen"), "{}", second.stderr);
    let again = exported(&fleet, "d");
    for (r, a) in [
        ("deployer", "publicKey"),
        ("deployer", "privateKey"),
        ("stamp", "value"),
    ] {
        assert_eq!(attr(&again, r, a), attr(&e, r, a), "{r}.{a}");
    }
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "v1\n");
    assert_eq!(fleet.current_system("m"), system);

    // `info` lists them, in NixOps' order (by type) and words.
    let plain = fleet.ok(&["info", "--plain"]).stdout;
    assert_eq!(
        plain,
        format!(
            "stamp\tup\tcommand-output\t{}\t\t\ntoken\tup\tcommand-output\t{}\t\t\nm\tup / up-to-date\tnone\t\t\t\ndeployer\tup\tssh-keypair\t\t\t\n",
            output_id("stamp", &stamp),
            output_id("token", &token)
        )
    );

    // A changed script runs again; the machine gets its new output, the key
    // pair stays.
    std::fs::write(&net, network("v2")).unwrap();
    let (_, hits) = watched(&fleet, &["deploy", "--debug"], &needles);
    assert!(hits.is_empty(), "secrets seen in /proc: {hits:?}");
    let third = exported(&fleet, "d");
    let new_stamp = attr(&third, "stamp", "value");
    assert_ne!(new_stamp, stamp);
    assert_eq!(attr(&third, "deployer", "privateKey"), private);
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "v1\nv2\n");
    assert_eq!(fleet.config_json("m")["etc"]["stamp"], new_stamp.as_str());

    // Where the secrets are not: the output, the history, the deployer's
    // store (what the deploys added, the toplevel's closure and its
    // derivation's), the machine, any file of the fleet but the state and
    // the secret's own file, our temporary directories.
    // The body's lines but the first, which every such key shares.
    let mut secrets: Vec<String> = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert!(secrets.len() >= 3, "{private}");
    secrets.push(token.clone());
    let history = fleet.ok(&["history", "--json"]).stdout;
    for s in &secrets {
        for (what, text) in [("first deploy", &first), ("second deploy", &second)] {
            assert!(
                !text.stdout.contains(s) && !text.stderr.contains(s),
                "{s} in the {what}'s output"
            );
        }
        assert!(!history.contains(s), "{s} in the history");
    }
    let store = store_paths_since(&marker, &fleet.exported_toplevel("d", "m").unwrap());
    let store: Vec<&Path> = store.iter().map(Path::new).collect();
    let state = fleet.state_file();
    let state_files: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", state.display())))
        .collect();
    let mut except: Vec<&Path> = state_files.iter().map(PathBuf::as_path).collect();
    except.push(&secret);
    let ours: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("nixops-") && !n.starts_with("nixops-test-")
        })
        .collect();
    let ours: Vec<&Path> = ours.iter().map(PathBuf::as_path).collect();
    for s in &secrets {
        assert!(grep(&store, s, &[]).is_empty(), "{s} in the deployer's store");
        let found = grep(&[fleet.path()], s, &except);
        assert!(found.is_empty(), "{s} found in {found:?}");
        let found = grep(&ours, s, &[]);
        assert!(found.is_empty(), "{s} left in {found:?}");
    }
}

/// A network NixOps 2.0 evaluates too (`nixops.nix` in a directory): one
/// machine using a key pair's both halves (the private one through a
/// digest, so that it stays out of the store) and a command's output.
fn network_dir(fleet: &Fleet) -> PathBuf {
    let file = fleet.write(
        "net/nixops.nix",
        r#"{
          network.storage.legacy = { };
          resources.sshKeyPairs.kp = { };
          resources.commandOutput.hello = { script = "echo hello"; };
          m = { resources, ... }: {
            users.users.root.openssh.authorizedKeys.keys = [ resources.sshKeyPairs.kp.publicKey ];
            environment.etc.private-digest.text = builtins.hashString "sha256" resources.sshKeyPairs.kp.privateKey;
            environment.etc.hello.text = resources.commandOutput.hello.value;
          };
        }"#,
    );
    file.parent().unwrap().to_owned()
}

/// Ours, run from the network directory (a deployment NixOps 2.0 made
/// records no network: it is the one in the current directory, as there).
fn ours(fleet: &Fleet, net: &Path, args: &[&str]) -> String {
    let r = common::Run::from(fleet.nixops(args).current_dir(net).output().unwrap());
    assert_eq!(r.code, 0, "nixops {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// Our toplevel of machine `m` (dump-nix-paths builds it).
fn our_toplevel(fleet: &Fleet, net: &Path, d: &str) -> String {
    let paths = ours(fleet, net, &["dump-nix-paths", "-d", d]);
    let found: Vec<&str> = paths
        .lines()
        .filter(|p| p.ends_with("-nixos-system-m-stub"))
        .collect();
    assert_eq!(found.len(), 1, "{paths}");
    found[0].to_owned()
}

/// The toplevel of `m` a NixOps 2.0 build left: its configsPath has one
/// link per machine.
fn their_toplevel(export: &serde_json::Value) -> String {
    let configs = PathBuf::from(export["configsPath"].as_str().expect("NixOps built"));
    std::fs::read_link(configs.join("m"))
        .unwrap()
        .display()
        .to_string()
}

/// What a system has in /etc, by the stand-in OS's record.
fn etc(toplevel: &str, file: &str) -> String {
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(toplevel).join("config.json")).unwrap())
            .unwrap();
    c["etc"][file].as_str().unwrap_or_default().to_owned()
}

/// NixOps 2.0 makes the key pair and the command output (only those: no
/// machine is reached) and builds; its state imported, we build the same
/// system and print the same physical spec. The other way: we make them
/// and build, NixOps 2.0 imports our state and builds the same system.
#[test]
fn state_with_resources_moves_between_nixops_2_and_ours_with_the_same_systems() {
    let Some(bin) = common::nixops2() else { return };
    let fleet = Fleet::start(&[]);
    let net = network_dir(&fleet);
    let state = fleet.path().join("theirs.nixops");
    let nixops2 = |args: &[&str], stdin: &str| fleet.nixops2(&bin, &state, &net, args, stdin);
    // Both print the same physical spec of the deployment, to the byte.
    let same_physical = |d: &str| {
        assert_eq!(
            ours(&fleet, &net, &["show-physical", "-d", d]),
            nixops2(&["show-physical", "-d", d], "")
        );
    };

    nixops2(&["create", "-d", "t"], "");
    nixops2(
        &["deploy", "-d", "t", "--create-only", "--include", "kp", "hello"],
        "",
    );
    nixops2(&["deploy", "-d", "t", "--build-only"], "");
    let export = nixops2(&["export", "-d", "t"], "");
    let theirs = only(&export);
    let public = attr(&theirs, "kp", "publicKey");
    let built = their_toplevel(&theirs);
    // What makes the comparison mean something: their key pair and output
    // are in their system.
    assert_eq!(etc(&built, "ssh/authorized_keys.d/root"), format!("{public}\n"));
    assert_eq!(etc(&built, "hello"), "hello\n");
    let digest = hex::encode(Sha256::digest(attr(&theirs, "kp", "privateKey").as_bytes()));
    assert_eq!(etc(&built, "private-digest"), digest);

    let r = fleet.run_with_stdin(&["import"], &export);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(our_toplevel(&fleet, &net, "t"), built);
    same_physical("t");
    // Their resources are kept, not made again.
    ours(&fleet, &net, &["deploy", "-d", "t", "--build-only"]);
    assert_eq!(
        exported(&fleet, "t")["resources"]["kp"],
        theirs["resources"]["kp"]
    );
    assert_eq!(
        exported(&fleet, "t")["resources"]["hello"],
        theirs["resources"]["hello"]
    );

    fleet.ok(&["create", "-d", "o", net.join("nixops.nix").to_str().unwrap()]);
    fleet.ok(&["deploy", "-d", "o", "--build-only"]);
    let mine = our_toplevel(&fleet, &net, "o");
    let our_export = fleet.ok(&["export", "-d", "o"]).stdout;
    assert_eq!(
        etc(&mine, "ssh/authorized_keys.d/root"),
        format!("{}\n", attr(&only(&our_export), "kp", "publicKey"))
    );
    nixops2(&["import"], &our_export);
    nixops2(&["deploy", "-d", "o", "--build-only"], "");
    assert_eq!(their_toplevel(&only(&nixops2(&["export", "-d", "o"], ""))), mine);
    same_physical("o");
}

/// What a deploy refuses before anything is recorded, and how resources go:
/// obsolete when the network drops them (kept, and taken back as they were
/// when it declares them again), forgotten by `--kill-obsolete`, `destroy`
/// and `delete-resources`; a failing script fails the deploy. No host is
/// needed: `--build-only` makes resources as a deploy does.
#[test]
fn refusals_obsolete_resources_destroy_and_failing_scripts() {
    let fleet = Fleet::start(&[]);
    let m = "m = { resources, ... }: { environment.etc.k.text = resources.sshKeyPairs.k.publicKey or \"none\"; };";
    let net = fleet.write(
        "net.nix",
        &format!("{{ resources.sshKeyPairs.k = {{ }}; resources.commandOutput.c = {{ script = \"echo c\"; }}; {m} }}"),
    );
    fleet.ok(&["create", net.to_str().unwrap(), "-d", "d"]);
    fleet.ok(&["deploy", "--build-only"]);
    let made = exported(&fleet, "d");
    let key = attr(&made, "k", "privateKey");

    let refused = |network: String, says: &str| {
        std::fs::write(&net, network).unwrap();
        let r = fleet.run(&["deploy", "--build-only"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        assert_eq!(
            exported(&fleet, "d")["resources"],
            made["resources"],
            "state changed"
        );
    };
    refused(
        format!("{{ resources.commandOutput.k = {{ script = \"echo k\"; }}; {m} }}"),
        "the type of resource ‘k’ changed from ‘ssh-keypair’ to ‘command-output’",
    );
    refused(
        format!("{{ resources.sshKeyPairs.m = {{ }}; {m} }}"),
        "machine ‘m’ and resources.sshKeyPairs.m have the same name",
    );
    refused(
        format!("{{ c = {{ ... }}: {{ }}; {m} }}"),
        "machine ‘c’ has the name of resource ‘c’ (of type ‘command-output’) in state",
    );
    refused(
        format!("{{ resources.commandOutput.bad = {{ script = \"echo oops >&2; exit 3\"; }}; {m} }}"),
        "resources.commandOutput.bad: its script failed: it exited with code 3",
    );

    // A deploy of `network` (with `args`) that succeeds, saying `says`.
    let deploys = |network: String, args: &[&str], says: &str| {
        std::fs::write(&net, network).unwrap();
        let r = fleet.ok(&[&["deploy", "--build-only"], args].concat());
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
    };
    let k = "resources.sshKeyPairs.k = { };";
    let c = r#"resources.commandOutput.c = { script = "echo c"; };"#;

    // Dropped: obsolete, kept; declared again: the same key pair.
    deploys(
        format!("{{ {c} {m} }}"),
        &[],
        "resource ‘k’ (ssh-keypair) is obsolete",
    );
    assert_eq!(attr(&exported(&fleet, "d"), "k", "obsolete"), "1");
    deploys(
        format!("{{ {k} {c} {m} }}"),
        &[],
        "resource ‘k’ (ssh-keypair) is no longer obsolete",
    );
    let back = exported(&fleet, "d");
    assert_eq!(attr(&back, "k", "privateKey"), key);
    assert!(
        back["resources"]["k"].get("obsolete").is_none_or(|o| o == "0"),
        "{back}"
    );

    // --kill-obsolete forgets what the network dropped.
    deploys(
        format!("{{ {k} {m} }}"),
        &["--kill-obsolete"],
        "forgetting obsolete resource ‘c’ (command-output)",
    );
    assert!(exported(&fleet, "d")["resources"].get("c").is_none());

    // destroy names resources as NixOps does; then forgets the rest.
    deploys(
        format!("{{ {k} resources.sshKeyPairs.k2 = {{ }}; {m} }}"),
        &[],
        "k2> generating",
    );
    let r = fleet.ok(&["destroy", "--include", "k", "--confirm"]);
    assert!(
        r.stderr.contains("forgot resource ‘k’ (ssh-keypair)"),
        "{}",
        r.stderr
    );
    let left = exported(&fleet, "d")["resources"].clone();
    let names: Vec<&String> = left.as_object().unwrap().keys().collect();
    assert_eq!(names, ["k2", "m"], "{left}");
    fleet.ok(&["delete-resources", "--include", "k2", "--confirm"]);
    fleet.ok(&["destroy", "--confirm"]);
    assert_eq!(exported(&fleet, "d")["resources"], serde_json::json!({}));
}

/// A flake network evaluates purely until state feeds back a resource's
/// values: then it reads them from a file of ours (as NixOps 2.0, which
/// evaluates flakes impurely), never from its arguments; the evaluation
/// cache still serves the next deploy.
#[test]
fn a_flake_network_gets_its_key_pair_from_a_file_not_its_arguments() {
    let fleet = Fleet::start(&[]);
    fleet.nix_path.set(false);
    let nixpkgs = fleet.nixpkgs_flake("nixpkgs");
    fleet.write(
        "net/flake.nix",
        &format!(
            r#"{{
              inputs.nixpkgs.url = "path:{}";
              outputs = {{ self, nixpkgs }}: {{
                nixopsConfigurations.default = {{
                  inherit nixpkgs;
                  resources.sshKeyPairs.kp = {{ }};
                  m = {{ resources, ... }}: {{
                    users.users.root.openssh.authorizedKeys.keys = [ resources.sshKeyPairs.kp.publicKey ];
                  }};
                }};
              }};
            }}"#,
            nixpkgs.display()
        ),
    );
    let net = fleet.path().join("net");
    fleet.ok(&["create", "-d", "f", "--network", net.to_str().unwrap()]);
    let needles: Vec<String> = PRIVATE_KEY_MARKS.iter().map(|s| s.to_string()).collect();
    let (_, hits) = watched(&fleet, &["deploy", "--build-only"], &needles);
    assert!(hits.is_empty(), "secrets seen in /proc: {hits:?}");
    let public = attr(&exported(&fleet, "f"), "kp", "publicKey");
    let paths = fleet.ok(&["dump-nix-paths", "-d", "f"]).stdout;
    let top = paths
        .lines()
        .find(|p| p.ends_with("-nixos-system-m-stub"))
        .expect("m's system");
    assert_eq!(etc(top, "ssh/authorized_keys.d/root"), format!("{public}\n"));
    let (again, hits) = watched(&fleet, &["deploy", "--build-only"], &needles);
    assert!(hits.is_empty(), "secrets seen in /proc: {hits:?}");
    assert!(
        again
            .stderr
            .contains("1 of 1 machines taken from the evaluation cache"),
        "{}",
        again.stderr
    );
}

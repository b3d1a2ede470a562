//! Building elsewhere than on the deploying machine, against the test
//! fleet: on the machines themselves (`deployment.buildOnTarget`,
//! `--build-on-target`), on a build host (`--build-host`), and on Nix's
//! remote builders (`--builders`, `network.machinesFile`). Every network
//! carries the fleet's own directory name in a file, so its systems are new
//! to every store, the deploying machine's (the real /nix) included.

mod common;

use std::process::Command;

use common::Fleet;

/// Whether `path` is valid in the deploying machine's store.
fn valid_here(path: &str) -> bool {
    Command::new("nix-store")
        .args(["--check-validity", path])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Whether `path` is valid in a test host's store.
fn valid_on(fleet: &Fleet, host: &str, path: &str) -> bool {
    let script = format!("nix-store --check-validity {path} 2>/dev/null && echo yes || echo no");
    fleet.exec(host, &script).trim() == "yes"
}

/// The user's known_hosts (the fleet's ssh config names it) gets every
/// test host's key, as after a first `ssh` to each: Nix's remote builders
/// and a build host are checked against it, as plain ssh does.
fn know_hosts(fleet: &Fleet) {
    std::fs::copy(
        fleet.path().join("fleet_known_hosts"),
        fleet.path().join("ssh/known_hosts"),
    )
    .unwrap();
}

/// A machine of the network, its system new to every store.
fn machine(fleet: &Fleet, name: &str, extra: &str) -> String {
    format!(
        "  {name} = {{ pkgs, ... }}: {{ environment.etc.rev.text = \"{}\"; {extra} }};\n",
        fleet.path().display()
    )
}

/// Whether a line of `machine`'s log contains `text`.
fn logged(stderr: &str, machine: &str, text: &str) -> bool {
    let prefix = format!("{machine}> ");
    stderr.lines().any(|l| l.starts_with(&prefix) && l.contains(text))
}

/// The derivation paths that lines of the log say are built, with the
/// prefix each line has.
fn builds_in(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let at = l.find("building '/nix/store/")?;
            let drv = l[at + 10..].split('\'').next()?.to_owned();
            Some((l[..at].to_owned(), drv))
        })
        .collect()
}

#[test]
fn a_machine_with_build_on_target_builds_its_own_system_and_the_deployer_never_has_it() {
    let fleet = Fleet::start(&["a", "b"]);
    let net = format!(
        "{{\n{}{}}}\n",
        machine(&fleet, "a", "deployment.buildOnTarget = true;"),
        machine(&fleet, "b", "")
    );
    let uuid = fleet.create("d", &net);
    let r = fleet.ok(&["deploy"]);
    let ta = fleet.exported_toplevel("d", "a").expect("a deployed");
    let tb = fleet.exported_toplevel("d", "b").expect("b deployed");
    assert_eq!(fleet.current_system("a"), ta);
    assert_eq!(fleet.current_system("b"), tb);
    // a's system was never realised here, only instantiated; b's was built
    // here as always.
    assert!(!valid_here(&ta), "{ta} is in the deployer's store");
    assert!(valid_here(&tb));
    // a's build ran on a: its log is a's, and names a derivation that is
    // here (the .drv files are) while its output is not.
    let builds = builds_in(&r.stderr);
    let on_a: Vec<&String> = builds
        .iter()
        .filter(|(p, _)| p == "a> ")
        .map(|(_, d)| d)
        .collect();
    assert!(!on_a.is_empty(), "no build in a's log: {}", r.stderr);
    for drv in &on_a {
        assert!(valid_here(drv), "{drv} is not here");
        assert!(
            !builds.iter().any(|(p, d)| d == *drv && p != "a> "),
            "{drv} built elsewhere too"
        );
    }
    // State and the GC root name what a runs, built where it was.
    let root = format!("/nix/var/nix/gcroots/per-user/root/nixops/{uuid}/a");
    assert_eq!(std::fs::read_link(&root).unwrap().to_str().unwrap(), ta);
    // Deployed again: a has its system, nothing is built anywhere.
    let again = fleet.ok(&["deploy"]);
    assert!(builds_in(&again.stderr).is_empty(), "{}", again.stderr);

    // --no-build-on-target: a's new system is built here instead.
    let net = format!(
        "{{\n{}{}}}\n",
        machine(
            &fleet,
            "a",
            "deployment.buildOnTarget = true; environment.etc.second.text = \"2\";"
        ),
        machine(&fleet, "b", "")
    );
    fleet.write("d.nix", &net);
    let r = fleet.ok(&["deploy", "--no-build-on-target"]);
    let ta2 = fleet.exported_toplevel("d", "a").expect("a deployed");
    assert_ne!(ta2, ta);
    assert_eq!(fleet.current_system("a"), ta2);
    assert!(valid_here(&ta2), "{ta2} was not built here");
    assert!(
        !builds_in(&r.stderr).iter().any(|(p, _)| p == "a> "),
        "a built: {}",
        r.stderr
    );
}

#[test]
fn build_on_target_as_a_sudo_user_and_a_failed_build_fails_only_its_machine() {
    let fleet = Fleet::start(&["a", "b"]);
    let broken = format!(
        "environment.systemPackages = [ (pkgs.runCommand \"broken\" {{ }} \"echo b breaks on its own >&2; exit 3 # {}\") ];",
        fleet.path().display()
    );
    let user = "deployment.targetUser = \"deployer\";";
    let net = format!(
        "{{\n{}{}}}\n",
        machine(&fleet, "a", user),
        machine(&fleet, "b", &format!("{user} {broken}"))
    );
    fleet.create("d", &net);
    let r = fleet.run(&["deploy", "--build-on-target"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let ta = fleet.exported_toplevel("d", "a").expect("a deployed");
    assert_eq!(fleet.current_system("a"), ta);
    assert!(!valid_here(&ta), "{ta} is in the deployer's store");
    // The copies and the build went through sudo as the deployer user.
    let log = std::fs::read_to_string(fleet.path().join("hosts/a/sshd.log")).unwrap();
    assert!(log.contains("Accepted publickey for deployer"), "{log}");
    // b failed in its build, which names the broken derivation; the
    // builder's own words are at the end of b's log.
    assert_eq!(fleet.exported_toplevel("d", "b"), None);
    let row = r
        .stderr
        .lines()
        .find(|l| l.starts_with("| b "))
        .expect("a summary row for b");
    assert!(row.contains("build") && row.contains("failed"), "{row}");
    assert!(row.contains("broken.drv"), "{row}");
    assert!(logged(&r.stderr, "b", "b breaks on its own"), "{}", r.stderr);
    // Nothing of b's was built here either.
    assert!(
        builds_in(&r.stderr).iter().all(|(p, _)| p == "a> " || p == "b> "),
        "{}",
        r.stderr
    );
}

#[test]
fn a_build_host_builds_every_system_and_sends_them_to_the_machines() {
    let fleet = Fleet::start(&["a", "b", "builder"]);
    let net = format!("{{\n{}{}}}\n", machine(&fleet, "a", ""), machine(&fleet, "b", ""));
    fleet.create("d", &net);
    // A build host's key is the user's known_hosts' business, as for ssh.
    let r = fleet.run(&["deploy", "--build-host", "builder"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("build host ‘builder’"), "{}", r.stderr);
    assert!(r.stderr.contains("known_hosts"), "{}", r.stderr);
    assert_eq!(fleet.exported_toplevel("d", "a"), None);

    know_hosts(&fleet);
    let r = fleet.ok(&["deploy", "--build-host", "builder"]);
    for m in ["a", "b"] {
        let t = fleet.exported_toplevel("d", m).expect("deployed");
        assert_eq!(fleet.current_system(m), t);
        assert!(valid_on(&fleet, "builder", &t), "{t} not built on the build host");
        assert!(!valid_here(&t), "{t} is in the deployer's store");
    }
    // Built in one go, on the build host (its log is the run's).
    let builds = builds_in(&r.stderr);
    assert!(!builds.is_empty(), "{}", r.stderr);
    assert!(builds.iter().all(|(p, _)| p.is_empty()), "{}", r.stderr);
    // Its temporary GC roots are gone: every root nixops made there
    // points nowhere now.
    let dangling = fleet.exec(
        "builder",
        "for l in /nix/var/nix/gcroots/auto/*; do t=$(readlink \"$l\"); case $t in */nixops-build.*) [ -e \"$t\" ] && echo \"live $t\";; esac; done; true",
    );
    assert_eq!(dangling.trim(), "", "roots left on the build host");
}

#[test]
fn a_machines_file_spreads_the_build_over_nix_remote_builders() {
    let fleet = Fleet::start(&["x", "y"]);
    know_hosts(&fleet);
    fleet.write("machines", "ssh://x - - 1 1\nssh://y - - 1 1\n");
    let mut net = String::from("{\n  network.machinesFile = ./machines;\n");
    for m in ["w1", "w2", "w3", "w4"] {
        net += &machine(&fleet, m, "deployment.targetHost = \"nowhere.invalid\";");
    }
    net += "}\n";
    fleet.create("d", &net);
    // All four in one build, for Nix to spread: from the evaluation cache
    // (which a dry run fills) they come at once, where evaluated one by one
    // the first could be built alone. -j 0: nothing may be built here, so
    // every build goes to the builders.
    fleet.ok(&["deploy", "--dry-run"]);
    let r = fleet.ok(&["deploy", "--build-only", "-j", "0"]);
    let out = fleet.ok(&["dump-nix-paths"]).stdout;
    // The systems (their closures also hold NixOps' key script).
    let toplevels: Vec<&str> = out.lines().filter(|l| l.contains("-nixos-system-")).collect();
    assert_eq!(toplevels.len(), 4, "{out}");
    for t in toplevels {
        assert!(
            valid_on(&fleet, "x", t) || valid_on(&fleet, "y", t),
            "{t} was built on neither builder"
        );
    }
    for b in ["x", "y"] {
        assert!(
            r.stderr.contains(&format!("on 'ssh://{b}'")),
            "nothing built on {b}: {}",
            r.stderr
        );
    }
}

#[test]
fn builders_on_the_command_line_and_a_missing_machines_file() {
    let fleet = Fleet::start(&["x"]);
    know_hosts(&fleet);
    let net = format!(
        "{{\n  network.machinesFile = ./nope;\n{}}}\n",
        machine(&fleet, "w", "")
    );
    fleet.create("d", &net);
    // Nix ignores a machines file that is not there; we do not.
    let r = fleet.run(&["deploy", "--build-only"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("machinesFile") && r.stderr.contains("/nope"),
        "{}",
        r.stderr
    );
    // --builders replaces it.
    let r = fleet.ok(&[
        "deploy",
        "--build-only",
        "-j",
        "0",
        "--builders",
        "ssh://x - - 1 1",
    ]);
    assert!(r.stderr.contains("on 'ssh://x'"), "{}", r.stderr);
}

#[test]
fn a_colmena_hive_builds_on_target_and_on_its_machines_file() {
    let fleet = Fleet::start(&["n1", "n2", "x"]);
    know_hosts(&fleet);
    fleet.write("machines", "ssh://x - - 1 1\n");
    let rev = fleet.path().display();
    let hive = format!(
        r#"{{
          meta.nixpkgs = <nixpkgs>;
          meta.machinesFile = ./machines;
          n1 = {{ deployment.buildOnTarget = true; environment.etc.rev.text = "n1 {rev}"; }};
          n2 = {{ environment.etc.rev.text = "n2 {rev}"; }};
        }}"#
    );
    let file = fleet.write("hive.nix", &hive);
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "h"]);
    // -j 0 is the deploying side's: n1 builds with its own Nix settings.
    fleet.ok(&["deploy", "-d", "h", "-j", "0"]);
    let t1 = fleet.exported_toplevel("h", "n1").expect("n1 deployed");
    let t2 = fleet.exported_toplevel("h", "n2").expect("n2 deployed");
    assert_eq!(fleet.current_system("n1"), t1);
    assert_eq!(fleet.current_system("n2"), t2);
    assert!(!valid_here(&t1), "{t1} is in the deployer's store");
    assert!(valid_on(&fleet, "x", &t2), "{t2} not built on the remote builder");
    assert!(!valid_on(&fleet, "x", &t1));
}

#[test]
fn a_machine_without_nix_or_without_room_fails_alone() {
    let fleet = Fleet::start(&["a", "b", "c"]);
    // b has no Nix (its nix binary is an empty device in b's mount
    // namespace only); c's store has far less room than its build needs.
    fleet.exec(
        "b",
        "mount --bind /dev/null \"$(readlink -f \"$(command -v nix-store)\")\"",
    );
    fleet.exec(
        "c",
        "mkdir -p /nix/store && mount -t tmpfs -o size=256k tmpfs /nix/store",
    );
    let big = format!(
        "environment.systemPackages = [ (pkgs.runCommand \"big\" {{ }} \"mkdir $out; dd if=/dev/zero of=$out/big bs=1024 count=2048 # {}\") ];",
        fleet.path().display()
    );
    let net = format!(
        "{{\n{}{}{}}}\n",
        machine(&fleet, "a", ""),
        machine(&fleet, "b", ""),
        machine(&fleet, "c", &big)
    );
    fleet.create("d", &net);
    let r = fleet.run(&["deploy", "--build-on-target"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let ta = fleet.exported_toplevel("d", "a").expect("a deployed");
    assert_eq!(fleet.current_system("a"), ta);
    let row = |m: &str| r.summary_row(m);
    assert!(
        row("b").contains("build") && row("b").contains("has no Nix"),
        "{}",
        r.stderr
    );
    // c's failed derivation, Nix's note on the disk, and the builder's own
    // words at the end of its log.
    assert!(
        row("c").contains("big.drv") && row("c").contains("lack of free disk space"),
        "{}",
        r.stderr
    );
    assert!(logged(&r.stderr, "c", "No space left on device"), "{}", r.stderr);
    assert_eq!(fleet.exported_toplevel("d", "b"), None);
    assert_eq!(fleet.exported_toplevel("d", "c"), None);
}

//! `apply-local`: the tool runs on the machine it deploys (here: inside a
//! test host's mount namespace, with that host's own store, /run and keys)
//! and deploys it without SSH, through the same pipeline as `deploy`.

mod common;

use common::{Fleet, Run};

fn network(rev: &str, extra_machine: &str) -> String {
    format!(
        r#"{{
  network.description = "local";
  m = {{ ... }}: {{
    deployment.allowLocalDeployment = true;
    environment.etc.rev.text = "{rev}";
    deployment.keys.secret.text = "s3cret {rev}";
  }};
  {extra_machine}
}}
"#
    )
}

fn on_host(fleet: &Fleet, args: &[&str]) -> Run {
    Run::from(fleet.nixops_on("m", args).output().unwrap())
}

#[test]
fn apply_local_deploys_the_machine_it_runs_on() {
    let fleet = Fleet::start(&["m"]);
    let file = fleet.write("net.nix", &network("one", ""));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);

    let r = on_host(&fleet, &["apply-local", "-d", "d", "--node", "m"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = fleet.exported_toplevel("d", "m").expect("recorded");
    assert_eq!(fleet.current_system("m"), t);
    assert_eq!(fleet.profile("m"), t);
    // Built in the machine's own store; the keys went there too.
    fleet.exec("m", &format!("nix-store --check-validity {t}"));
    assert_eq!(fleet.exec("m", "cat /run/keys/secret"), "s3cret one");
    assert!(
        fleet
            .exec("m", "test -e /run/keys/done && echo yes")
            .contains("yes")
    );
    assert_eq!(fleet.ssh_count("m"), 0, "no SSH at all");
    assert_eq!(fleet.exec("m", "cat /run/current-system/etc/rev"), "one");

    // Again, with a change, as `test`: active now, not the boot default.
    std::fs::write(&file, network("two", "")).unwrap();
    let r = on_host(&fleet, &["apply-local", "test", "-d", "d", "--node", "m"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fleet.exec("m", "cat /run/current-system/etc/rev"), "two");
    assert_eq!(fleet.profile("m"), t);
    assert_eq!(fleet.exec("m", "cat /run/keys/secret"), "s3cret two");
}

#[test]
fn apply_local_picks_the_machine_by_host_name() {
    let fleet = Fleet::start(&["m"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let me = format!(
        "\"{host}\" = {{ ... }}: {{ deployment.allowLocalDeployment = true; environment.etc.rev.text = \"me\"; }};"
    );
    let file = fleet.write("net.nix", &network("one", &me));
    fleet.ok(&["create", file.to_str().unwrap(), "-d", "d"]);
    let r = on_host(&fleet, &["apply-local", "-d", "d"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fleet.exec("m", "cat /run/current-system/etc/rev"), "me");
    assert!(fleet.exported_toplevel("d", &host).is_some());
    assert_eq!(fleet.exported_toplevel("d", "m"), None, "m was not deployed");

    let r = on_host(&fleet, &["apply-local", "-d", "d", "--node", "nosuch"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no machine named ‘nosuch’"), "{}", r.stderr);

    // Not root, and no --sudo: nothing is touched.
    let r = Run::from(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_nixops"))
            .args(["apply-local", "-d", "d"])
            .env("NIXOPS_STATE", fleet.state_file())
            .output()
            .unwrap(),
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("run it as root, or with --sudo"),
        "{}",
        r.stderr
    );
}

//! The systems of a NixOps network, as NixOps 2.0 builds them: for the same
//! network and state, every machine's toplevel from this tool is the one
//! NixOps 2.0 builds, to the byte (its keys module and the physical spec it
//! adds to machines of targetEnv "none" included), both ways: NixOps 2.0
//! deploys and we take over, and we deploy and NixOps 2.0 takes over. And the
//! keys this tool sends satisfy NixOps' key units. With the real NixOps 2.0
//! (scripts/install-deps.sh installs it from ../shared/peers/nixops; without
//! that copy these tests say they are skipped).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Fleet;

/// Three machines reading each other through `nodes`; `a` has keys (text,
/// command, a plain string, two destDirs), `c` has none and defines what
/// NixOps' physical spec defines too (so the order of the definitions
/// shows).
fn network(ports: [u16; 3]) -> String {
    let [pa, pb, pc] = ports;
    format!(
        r#"{{
  network.storage.legacy = {{ }};
  network.description = "systems";
  defaults = {{ ... }}: {{ environment.etc.fleet.text = "shared"; }};
  a = {{ config, nodes, ... }}: {{
    deployment.targetPort = {pa};
    deployment.keys.secret = {{ text = "s3cret"; user = "keyuser"; group = "keys"; permissions = "0640"; }};
    deployment.keys.cmd = {{ keyCommand = [ "echo" "from a command" ]; destDir = "/run/app-keys"; }};
    deployment.keys.legacy = "a plain string";
    environment.etc.peer.text = nodes.b.config.networking.hostName;
    systemd.services.app = {{
      wantedBy = [ "multi-user.target" ];
      wants = [ "secret-key.service" ];
      after = [ "secret-key.service" ];
      script = "cat ${{config.deployment.keys.secret.path}}";
    }};
  }};
  b = {{ nodes, ... }}: {{
    deployment.targetPort = {pb};
    environment.etc.peer-keys.text = toString (builtins.attrNames nodes.a.config.deployment.keys);
    environment.etc.peer-key-path.text = nodes.a.config.deployment.keys.cmd.path;
  }};
  c = {{ nodes, ... }}: {{
    deployment.targetPort = {pc};
    networking.extraHosts = "127.0.0.23 a-by-name";
    boot.kernelModules = [ "tun" ];
    users.users.root.openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtU0Hh8v8t1Dq7m5bWkq3QmWf3b8x1c2d3e4f5g6h7i user@c" ];
    environment.etc.peer.text = nodes.a.config.environment.etc.peer.text;
  }};
}}
"#
    )
}

/// The network as NixOps 2.0 wants it: `nixops.nix` in a directory.
fn network_dir(fleet: &Fleet, ports: [u16; 3]) -> PathBuf {
    let file = fleet.write("net/nixops.nix", &network(ports));
    file.parent().unwrap().to_owned()
}

/// The only deployment of an export: its attributes and machines.
fn exported(json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_object().unwrap().values().next().unwrap().clone()
}

/// The toplevels a NixOps 2.0 build left: its configsPath has one link per
/// machine.
fn their_built(export: &serde_json::Value) -> BTreeMap<String, String> {
    let configs = PathBuf::from(export["configsPath"].as_str().expect("NixOps built"));
    std::fs::read_dir(&configs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let to = std::fs::read_link(e.path()).unwrap();
            (e.file_name().into_string().unwrap(), to.display().to_string())
        })
        .collect()
}

/// Ours, run from the network directory (a deployment NixOps 2.0 made
/// records no network: it is the one in the current directory, as there).
fn ours(fleet: &Fleet, net: &Path, args: &[&str]) -> common::Run {
    let r = common::Run::from(fleet.nixops(args).current_dir(net).output().unwrap());
    assert_eq!(r.code, 0, "nixops {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// Our toplevels of `machines` (dump-nix-paths builds them).
fn our_built(fleet: &Fleet, net: &Path, d: &str, machines: &[&str]) -> BTreeMap<String, String> {
    let paths = ours(fleet, net, &["dump-nix-paths", "-d", d]).stdout;
    machines
        .iter()
        .map(|m| {
            let found: Vec<&str> = paths
                .lines()
                .filter(|p| p.ends_with(&format!("-nixos-system-{m}-stub")))
                .collect();
            assert_eq!(found.len(), 1, "{m}: {paths}");
            (m.to_string(), found[0].to_owned())
        })
        .collect()
}

/// The Nix daemons started on the hosts, ended by their pids when dropped:
/// nix-daemon moves into a mount namespace of its own, where `fleet.sh
/// stop` does not look for a host's processes.
struct Daemons(Vec<i32>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill(2) of a process this test started.
            unsafe { libc::kill(*pid, libc::SIGTERM) };
        }
    }
}

/// Prepares the hosts for NixOps 2.0's deploy: its activation talks to a
/// Nix daemon, its key delivery chowns to the group `keys`, and its ssh
/// checks host keys against known_hosts.
fn prepare_hosts(fleet: &Fleet) -> Daemons {
    let mut daemons = Daemons(Vec::new());
    let mut known = String::new();
    for h in &fleet.names {
        let users = fleet.path().join("hosts").join(h).join("etc-users");
        let mut group = std::fs::read_to_string(users.join("group")).unwrap();
        group += "keys:x:1696:\n";
        std::fs::write(users.join("group"), group).unwrap();
        let mut passwd = std::fs::read_to_string(users.join("passwd")).unwrap();
        passwd += "keyuser:x:1601:1696::/nonexistent:/bin/false\n";
        std::fs::write(users.join("passwd"), passwd).unwrap();
        let pid = fleet.exec(
            h,
            "setsid nix-daemon </dev/null >/dev/null 2>&1 & echo $!
             i=0; while [ ! -S /nix/var/nix/daemon-socket/socket ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done",
        );
        daemons.0.push(pid.trim().parse().unwrap());
        let key = std::fs::read_to_string(
            fleet
                .path()
                .join("hosts")
                .join(h)
                .join("ssh_host_ed25519_key.pub"),
        )
        .unwrap();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        known += &format!("[127.0.0.1]:{} {}\n", fleet.port(h), key.join(" "));
    }
    std::fs::write(fleet.path().join("ssh/known_hosts"), known).unwrap();
    daemons
}

/// A script run with bash on a host in the background, its output and exit
/// code in files beside it (NixOS runs units' scripts with bash).
struct Background {
    child: std::process::Child,
    out: PathBuf,
}

impl Background {
    fn start(fleet: &Fleet, host: &str, name: &str, script: &str) -> Background {
        let file = fleet.write(&format!("units/{name}.sh"), script);
        let out = fleet.path().join(format!("units/{name}.out"));
        let child = Command::new(common::fleet_sh())
            .arg("exec")
            .arg(fleet.path())
            .arg(host)
            .args(["--", "sh", "-c", "timeout 30 bash \"$1\" >\"$2\" 2>&1", "run"])
            .arg(&file)
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Background { child, out }
    }

    /// Started, and still running a second later: waiting for something.
    fn still_running(fleet: &Fleet, host: &str, name: &str, script: &str) -> Background {
        let mut b = Background::start(fleet, host, name, script);
        std::thread::sleep(Duration::from_secs(1));
        let running = b.child.try_wait().unwrap().is_none();
        assert!(
            running,
            "{name}: {}",
            std::fs::read_to_string(&b.out).unwrap_or_default()
        );
        b
    }

    /// Its exit code and output, waiting at most `secs`.
    fn end(mut self, secs: u64) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let code = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {secs} s: {}",
                    std::fs::read_to_string(&self.out).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (code, std::fs::read_to_string(&self.out).unwrap_or_default())
    }
}

/// A string option of a machine, as our evaluation has it.
fn option(fleet: &Fleet, net: &Path, d: &str, machine: &str, path: &str) -> String {
    let json = ours(fleet, net, &["show-option", "-d", d, "--json", machine, path]).stdout;
    serde_json::from_str(json.trim()).unwrap()
}

fn stat(fleet: &Fleet, host: &str, path: &str) -> String {
    fleet
        .exec(host, &format!("stat -c '%U %G %a' {path}"))
        .trim()
        .to_owned()
}

/// NixOps 2.0 deploys the network (with a stateVersion it recorded for `b`);
/// its state imported, we build the same toplevels, print the same
/// physical spec, plan no change anywhere, and deploy without changing a
/// system; the keys we send satisfy NixOps' key units.
#[test]
fn after_a_nixops_2_deploy_ours_builds_the_same_systems_and_its_keys_units_work() {
    let Some(bin) = common::nixops2() else { return };
    let names = ["a", "b", "c"];
    let fleet = Fleet::start(&names);
    let _daemons = prepare_hosts(&fleet);
    let net = network_dir(&fleet, names.map(|h| fleet.port(h)));
    let state = fleet.path().join("theirs.nixops");
    let nixops2 = |args: &[&str]| fleet.nixops2(&bin, &state, &net, args, "");

    nixops2(&["create", "-d", "t"]);
    // The machines in NixOps' state; b as if NixOps had read 22.05 from its
    // /etc/os-release on first contact (the test hosts' is Debian's).
    nixops2(&["deploy", "-d", "t", "--create-only"]);
    let st = Command::new("sqlite3")
        .arg(&state)
        .arg("insert into ResourceAttrs (machine, name, value) select id, 'stateVersion', '22.05' from Resources where name = 'b'")
        .status()
        .unwrap();
    assert!(st.success());
    nixops2(&["deploy", "-d", "t"]);
    let export = nixops2(&["export", "-d", "t"]);
    let theirs_export = exported(&export);
    let deployed: BTreeMap<String, String> = names
        .iter()
        .map(|m| {
            let top = theirs_export["resources"][m]["toplevel"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(fleet.current_system(m), top, "{m}");
            (m.to_string(), top)
        })
        .collect();
    // What makes this comparison mean something: NixOps' key (root's
    // authorized key, first), the stateVersion from state and its key units.
    let c = fleet.config_json("c");
    let authorized = c["etc"]["ssh/authorized_keys.d/root"].as_str().unwrap();
    assert!(
        authorized.starts_with("ssh-ed25519 ")
            && authorized.contains("NixOps client key for c\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtU0"),
        "{authorized}"
    );
    assert_eq!(c["etc"]["hosts"], "127.0.0.23 a-by-name\n\n");
    assert_eq!(fleet.config_json("b")["stateVersion"], "22.05");
    assert_eq!(fleet.config_json("a")["stateVersion"], "23.11");

    let r = fleet.run_with_stdin(&["import"], &export);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ours = |args: &[&str]| ours(&fleet, &net, args);
    assert_eq!(our_built(&fleet, &net, "t", &names), deployed);
    assert_eq!(
        ours(&["show-physical", "-d", "t"]).stdout,
        nixops2(&["show-physical", "-d", "t"])
    );

    // Nothing to change anywhere: no system, no unit.
    let plan: serde_json::Value = serde_json::from_str(&ours(&["plan", "-d", "t", "--json"]).stdout).unwrap();
    for m in names {
        let p = &plan["machines"][m];
        assert_eq!(p["status"], "unchanged", "{m}: {p}");
        assert_eq!(p["new"].as_str(), Some(deployed[m].as_str()), "{m}");
        for what in ["stop", "start", "restart", "reload"] {
            assert_eq!(p["units"][what], serde_json::json!([]), "{m}: {p}");
        }
    }

    // Our key delivery and NixOps' units. A key unit that starts before its
    // key is there waits for the file to come in: our delivery moves it in.
    fleet.exec("a", "rm /run/keys/secret");
    let start = option(&fleet, &net, "t", "a", "systemd.services.secret-key.preStart");
    let waiting = Background::still_running(&fleet, "a", "secret-key-pre", &start);
    ours(&["deploy", "-d", "t"]);
    let (code, out) = waiting.end(10);
    assert_eq!(
        (code, out.as_str()),
        (0, ""),
        "the unit's start did not see the key arrive"
    );
    for m in names {
        assert_eq!(fleet.current_system(m), deployed[m], "{m}");
    }
    assert_eq!(fleet.exec("a", "cat /run/keys/secret"), "s3cret");
    assert_eq!(stat(&fleet, "a", "/run/keys/secret"), "keyuser keys 640");
    assert_eq!(fleet.exec("a", "cat /run/keys/legacy"), "a plain string");
    assert_eq!(fleet.exec("a", "cat /run/app-keys/cmd"), "from a command\n");
    assert_eq!(stat(&fleet, "a", "/run/app-keys/cmd"), "root root 600");
    assert_eq!(stat(&fleet, "a", "/run/keys"), "root keys 750");
    // nixops-keys.service: done once the keys are there.
    let done = option(&fleet, &net, "t", "a", "systemd.services.nixops-keys.script");
    assert_eq!(
        Background::start(&fleet, "a", "nixops-keys", &done).end(10),
        (0, String::new())
    );
    // A key unit that starts with its key there is up at once ...
    assert_eq!(
        Background::start(&fleet, "a", "secret-key-pre-2", &start).end(10),
        (0, "flapped down\n".into())
    );
    // ... and stays up until the key goes.
    let main = option(&fleet, &net, "t", "a", "systemd.services.secret-key.script");
    let up = Background::still_running(&fleet, "a", "secret-key", &main);
    fleet.exec("a", "rm /run/keys/secret");
    assert_eq!(up.end(10), (0, String::new()));
}

/// We deploy the network (only built: no host is needed), NixOps 2.0
/// imports our state and builds the same toplevels from it.
#[test]
fn after_ours_nixops_2_builds_the_same_systems() {
    let Some(bin) = common::nixops2() else { return };
    let names = ["a", "b", "c"];
    let fleet = Fleet::start(&[]);
    let net = network_dir(&fleet, [2201, 2202, 2203]);
    fleet.ok(&["create", "-d", "o", net.join("nixops.nix").to_str().unwrap()]);
    fleet.ok(&["deploy", "-d", "o", "--build-only"]);
    let ours = our_built(&fleet, &net, "o", &names);

    let state = fleet.path().join("theirs.nixops");
    let nixops2 = |args: &[&str], stdin: &str| fleet.nixops2(&bin, &state, &net, args, stdin);
    nixops2(&["import"], &fleet.ok(&["export", "-d", "o"]).stdout);
    nixops2(&["deploy", "-d", "o", "--build-only"], "");
    let built = their_built(&exported(&nixops2(&["export", "-d", "o"], "")));
    assert_eq!(built, ours);
    assert_eq!(
        fleet.ok(&["show-physical", "-d", "o"]).stdout,
        nixops2(&["show-physical", "-d", "o"], "")
    );
}

/// NixOps' physical spec is for NixOps networks: a Colmena hive's nodes do
/// not get it.
#[test]
fn hive_nodes_get_no_physical_spec() {
    let fleet = Fleet::start(&[]);
    fleet.create("n", "{ m = { ... }: { }; }");
    let hive = fleet.write("hive/hive.nix", "{ meta.nixpkgs = <nixpkgs>; m = { ... }: { }; }");
    fleet.ok(&["create", "-d", "h", hive.to_str().unwrap()]);
    let json = |d: &str, o: &str| {
        fleet
            .ok(&["show-option", "-d", d, "--json", "--include-physical", "m", o])
            .stdout
            .trim()
            .to_owned()
    };
    assert_eq!(json("n", "networking.extraHosts"), r#""\n""#);
    assert_eq!(json("h", "networking.extraHosts"), r#""""#);
}

//! EC2 machines that NixOps' AWS plugin created, adopted from state: the
//! state is written by nixops-aws' own classes (tests/ec2/nixops-aws-state.py,
//! run by the NixOps 2.0 that scripts/install-deps.sh installs with the
//! plugin), the "instance" is a test host on 127.0.0.1 that accepts only
//! the key pair's key and presents the host key state pinned. Our physical
//! spec and system are NixOps 2.0's to the byte; the machine deploys, and
//! answers ssh, check and reboot with no ssh configuration at all; what
//! needs the AWS API is refused and changes nothing in state.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Fleet;

/// The EC2 network: a key pair resource and one instance using it, with an
/// EBS volume and a LUKS-encrypted one whose passphrase NixOps generated
/// (the network shows it in /etc, so that the system tells it came back
/// from state; its LUKS unit is left out, as the tests' NixOps 2.0 has
/// only the options of nixos-modules-contrib).
fn network(port: u16, instance_type: &str, extra: &str) -> String {
    format!(
        r#"{{
  network.storage.legacy = {{ }};
  network.description = "ec2 adoption";
  resources.ec2KeyPairs.kp = {{ region = "us-east-1"; }};
  web = {{ config, lib, resources, ... }}: {{
    deployment.targetEnv = "ec2";
    deployment.targetPort = {port};
    deployment.ec2 = {{
      region = "us-east-1";
      instanceType = "{instance_type}";
      keyPair = resources.ec2KeyPairs.kp;
      ami = "ami-0123456789abcdef0";
      blockDeviceMapping."/dev/xvdf".disk = "vol-0abc";
      blockDeviceMapping."/dev/xvdg" = {{ disk = "vol-0def"; encrypt = true; }};
    }};
    deployment.autoLuks = lib.mkForce {{ }};
    environment.etc.role.text = "web";
    environment.etc.passphrase.text = config.deployment.ec2.blockDeviceMapping."/dev/xvdg".passphrase;
  }};
{extra}}}
"#
    )
}

/// A deployment NixOps 2.0 made and nixops-aws filled as after creating the
/// instance: its state file, network directory and UUID.
struct Theirs {
    bin: PathBuf,
    state: PathBuf,
    net: PathBuf,
    uuid: String,
}

impl Theirs {
    fn run(&self, fleet: &Fleet, args: &[&str]) -> String {
        fleet.nixops2(&self.bin, &self.state, &self.net, args, "")
    }
}

fn keygen(fleet: &Fleet, name: &str) -> (String, String) {
    let file = fleet.path().join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
    (std::fs::read_to_string(&file).unwrap(), public.trim().to_owned())
}

/// `host_key`: the host key NixOps pinned ("type base64").
fn theirs(fleet: &Fleet, bin: PathBuf, port: u16, host_key: &str) -> (Theirs, String) {
    let net = fleet.write("net/nixops.nix", &network(port, "t3.micro", ""));
    let net = net.parent().unwrap().to_owned();
    let state = fleet.path().join("theirs.nixops");
    let mut t = Theirs {
        bin,
        state,
        net,
        uuid: String::new(),
    };
    t.uuid = t.run(fleet, &["create", "-d", "e"]).trim().to_owned();
    let (private, public) = keygen(fleet, "kp");
    let pair = format!("charon-{}-kp", t.uuid);
    let spec = serde_json::json!({
        "keyPairs": { "kp": {
            "keypair_name": pair, "region": "us-east-1",
            "private_key": private, "public_key": public, "state": "UP",
        } },
        "machines": { "web": {
            "vm_id": "i-0123456789abcdef0", "region": "us-east-1", "zone": "us-east-1a",
            "instance_type": "t3.micro", "key_pair": pair, "ami": "ami-0123456789abcdef0",
            "public_ipv4": "127.0.0.1", "private_ipv4": "127.0.0.2",
            "public_host_key": host_key, "ssh_port": port, "state": "UP",
            "security_groups": ["default"], "virtualization_type": "hvm",
            "root_device_type": "ebs", "ebs_optimized": false,
            "block_device_mapping": {
                "/dev/sdf": { "disk": "vol-0abc", "volumeId": "vol-0abc" },
                "/dev/sdg": { "disk": "vol-0def", "volumeId": "vol-0def", "encrypt": true,
                              "generatedKey": "generated-passphrase", "size": 1 },
            },
        } },
    });
    let python = t.bin.parent().unwrap().join("python");
    let out = Command::new(python)
        .arg(common::repo().join("tests/ec2/nixops-aws-state.py"))
        .arg(&t.state)
        .arg(&t.uuid)
        .arg(spec.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (t, public)
}

/// Ours, run from the network directory (a deployment NixOps 2.0 made
/// records no network: the one in the current directory is used).
fn ours(fleet: &Fleet, net: &Path, args: &[&str]) -> common::Run {
    common::Run::from(fleet.nixops(args).current_dir(net).output().unwrap())
}

fn ok(fleet: &Fleet, net: &Path, args: &[&str]) -> common::Run {
    let r = ours(fleet, net, args);
    assert_eq!(r.code, 0, "nixops {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// The system NixOps 2.0 builds for the machine (its configsPath's link).
fn their_toplevel(fleet: &Fleet, t: &Theirs) -> String {
    let export: serde_json::Value = serde_json::from_str(&t.run(fleet, &["export", "-d", "e"])).unwrap();
    let configs = export[&t.uuid]["configsPath"]
        .as_str()
        .expect("NixOps built")
        .to_owned();
    std::fs::read_link(Path::new(&configs).join("web"))
        .unwrap()
        .display()
        .to_string()
}

/// From the same state, NixOps 2.0 with nixops-aws and we write the same
/// physical spec and build the same system, which imports amazon-image.nix
/// from the network's nixpkgs, names the instance, trusts the pinned host
/// key and has the passphrase NixOps generated.
#[test]
fn the_physical_spec_and_system_are_nixops_awss() {
    let Some(bin) = common::nixops2() else { return };
    let fleet = Fleet::start(&[]);
    let (t, _) = theirs(
        &fleet,
        bin,
        2222,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheInstanceNixOpsPinnedAAAAAAAAA",
    );
    let r = fleet.run_with_stdin(&["import"], &t.run(&fleet, &["export", "-d", "e"]));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let physical = ok(&fleet, &t.net, &["show-physical", "-d", "e"]).stdout;
    assert_eq!(physical, t.run(&fleet, &["show-physical", "-d", "e"]));
    assert!(
        physical.contains("<nixpkgs/nixos/modules/virtualisation/amazon-image.nix>")
            && physical.contains("pkgs.lib.mkOverride 10")
            && physical.contains("instanceId = \"i-0123456789abcdef0\""),
        "{physical}"
    );

    t.run(&fleet, &["deploy", "-d", "e", "--build-only"]);
    let top = their_toplevel(&fleet, &t);
    let paths = ok(&fleet, &t.net, &["dump-nix-paths", "-d", "e"]).stdout;
    assert!(paths.lines().any(|p| p == top), "{top} not in {paths}");
    let etc = |f: &str| std::fs::read_to_string(Path::new(&top).join("etc").join(f)).unwrap();
    assert_eq!(
        etc("amazon-image"),
        "amazon-image.nix (hvm true) on instance i-0123456789abcdef0\n"
    );
    assert_eq!(etc("passphrase"), "generated-passphrase");
    assert!(etc("ssh/ssh_known_hosts").starts_with("web ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey"));

    // info: the machine and its key pair as the plugin shows them.
    let info = ok(&fleet, &t.net, &["info", "-d", "e", "--plain"]).stdout;
    assert!(
        info.lines().any(|l| l.starts_with("web\t")
            && l.contains("ec2 [us-east-1a; t3.micro]\ti-0123456789abcdef0\t127.0.0.1")),
        "{info}"
    );
    assert!(
        info.lines().any(|l| l.starts_with("kp\t")
            && l.contains(&format!("ec2-keypair [us-east-1]\tcharon-{}-kp", t.uuid))),
        "{info}"
    );
}

/// State with what ours holds, for comparisons: every resource's
/// attributes.
fn state_rows(fleet: &Fleet) -> String {
    let out = Command::new("sqlite3")
        .arg(fleet.state_file())
        .arg("select r.name, r.type, a.name, a.value from Resources r join ResourceAttrs a on a.machine = r.id order by 1, 3")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deployed with no ssh configuration, no known_hosts and no key but the
/// key pair's in state; ssh, check and reboot work; what needs the AWS API
/// refuses and changes nothing; a changed host key is refused.
#[test]
fn an_adopted_ec2_machine_is_deployed_from_state_alone() {
    let Some(bin) = common::nixops2() else { return };
    let fleet = Fleet::start(&["web"]);
    let key = std::fs::read_to_string(fleet.path().join("hosts/web/ssh_host_ed25519_key.pub")).unwrap();
    let host_key: Vec<&str> = key.split_whitespace().take(2).collect();
    let (t, kp_public) = theirs(&fleet, bin, fleet.port("web"), &host_key.join(" "));
    let r = fleet.run_with_stdin(&["import"], &t.run(&fleet, &["export", "-d", "e"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The host takes only the key pair's key; ssh knows nothing of it.
    std::fs::write(fleet.path().join("authorized_keys"), format!("{kp_public}\n")).unwrap();
    std::fs::write(fleet.path().join("ssh/config"), "").unwrap();
    std::fs::write(fleet.path().join("ssh/known_hosts"), "").unwrap();
    std::fs::remove_file(fleet.path().join("ssh/id_ed25519")).unwrap();

    let net = t.net.clone();
    ok(&fleet, &net, &["deploy", "-d", "e"]);
    let top = fleet.current_system("web");
    assert!(top.ends_with("-nixos-system-web-stub"), "{top}");
    let etc = &fleet.config_json("web")["etc"];
    assert_eq!(etc["role"], "web");
    assert_eq!(
        etc["amazon-image"],
        "amazon-image.nix (hvm true) on instance i-0123456789abcdef0\n"
    );
    assert_eq!(
        ok(
            &fleet,
            &net,
            &[
                "ssh",
                "-d",
                "e",
                "web",
                "--",
                "cat",
                "/run/current-system/etc/role"
            ]
        )
        .stdout,
        "web"
    );
    ok(&fleet, &net, &["check", "-d", "e"]);
    let boot = fleet.boot_id("web");
    ok(&fleet, &net, &["reboot", "-d", "e"]);
    assert_ne!(fleet.boot_id("web"), boot);
    ok(&fleet, &net, &["send-keys", "-d", "e"]);

    // What needs the AWS API: refused, naming the backend and what to do
    // instead; state as it was.
    let before = state_rows(&fleet);
    for (args, says) in [
        (
            &["start", "-d", "e"][..],
            "aws ec2 start-instances --region us-east-1 --instance-ids i-0123456789abcdef0",
        ),
        (&["stop", "-d", "e"], "aws ec2 stop-instances"),
        (
            &["destroy", "-d", "e", "--confirm"],
            "nixops delete-resources --include web",
        ),
        (&["destroy", "-d", "e", "--wipe", "--confirm"], "cannot be wiped"),
        (&["backup", "-d", "e"], "aws ec2 create-snapshot"),
    ] {
        let r = ours(&fleet, &net, args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    assert_eq!(state_rows(&fleet), before);
    // A bigger instance type, and a new EC2 machine: refused, nothing recorded.
    let port = fleet.port("web");
    fleet.write(
        "net/nixops.nix",
        &network(port, "t3.large", "  db = { resources, ... }: { deployment.targetEnv = \"ec2\"; deployment.ec2.keyPair = resources.ec2KeyPairs.kp; };\n"),
    );
    let r = ours(&fleet, &net, &["deploy", "-d", "e"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("deployment.ec2.instanceType is \\\"t3.large\\\", the instance's is \\\"t3.micro\\\"")
            || r.stderr
                .contains("deployment.ec2.instanceType is \"t3.large\", the instance's is \"t3.micro\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("machine ‘db’ has deployment.targetEnv = \"ec2\" but is not in state"),
        "{}",
        r.stderr
    );
    let after = state_rows(&fleet);
    assert!(!after.contains("db|"), "{after}");
    assert_eq!(fleet.current_system("web"), top);

    // The instance comes back with a host key other than the one NixOps
    // pinned: refused, until the new one is accepted.
    fleet.write("net/nixops.nix", &network(port, "t3.micro", ""));
    let host = fleet.path().join("hosts/web");
    fleet.stop_host("web");
    std::fs::remove_file(host.join("ssh_host_ed25519_key")).unwrap();
    std::fs::remove_file(host.join("ssh_host_ed25519_key.pub")).unwrap();
    fleet.start_hosts(&["web"]);
    std::fs::write(fleet.path().join("ssh/config"), "").unwrap();
    let r = ours(&fleet, &net, &["ssh", "-d", "e", "web", "--", "true"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        r.stderr
    );
    let r = ours(&fleet, &net, &["deploy", "-d", "e"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not the one pinned in state"),
        "{}",
        r.stderr
    );
    ok(&fleet, &net, &["forget-host-key", "-d", "e", "web", "--confirm"]);
    ok(&fleet, &net, &["deploy", "-d", "e"]);
}

/// A NixOps 1.x state file (schema 2: its Machines tables), with an EC2
/// machine and key pair as NixOps 1.7 recorded them, opens as it is: the
/// machine and key pair show with their instance, addresses and names;
/// its export imports elsewhere, with the host key for ssh's known_hosts.
#[test]
fn a_nixops_1_state_file_with_ec2_machines_opens_and_moves() {
    let fleet = Fleet::start(&[]);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtU0Hh8v8t1Dq7m5bWkq3QmWf3b8x1c2d3e4f5g6h7i";
    let sql = format!(
        "create table SchemaVersion(version integer not null); insert into SchemaVersion values (2);
         create table Deployments(uuid text primary key);
         create table DeploymentAttrs(deployment text not null, name text not null, value text not null,
           primary key(deployment, name), foreign key(deployment) references Deployments(uuid) on delete cascade);
         create table Machines(id integer primary key autoincrement, deployment text not null, name text not null,
           type text not null, foreign key(deployment) references Deployments(uuid) on delete cascade);
         create table MachineAttrs(machine integer not null, name text not null, value text not null,
           primary key(machine, name), foreign key(machine) references Machines(id) on delete cascade);
         insert into Deployments values ('0d1e2f30-0000-4000-8000-000000000001');
         insert into DeploymentAttrs values ('0d1e2f30-0000-4000-8000-000000000001', 'name', 'old'),
           ('0d1e2f30-0000-4000-8000-000000000001', 'nixExprs', '[\"/srv/old/network.nix\"]');
         insert into Machines values (1, '0d1e2f30-0000-4000-8000-000000000001', 'kp', 'ec2-keypair');
         insert into MachineAttrs values (1, 'ec2.keyPairName', 'charon-old-kp'), (1, 'state', '3'),
           (1, 'ec2.region', 'eu-west-1'), (1, 'privateKey', 'PRIVATE'), (1, 'publicKey', 'ssh-rsa AAAA');
         insert into Machines values (2, '0d1e2f30-0000-4000-8000-000000000001', 'web', 'ec2');
         insert into MachineAttrs values (2, 'vmId', 'i-0abc'), (2, 'ec2.region', 'eu-west-1'),
           (2, 'ec2.zone', 'eu-west-1a'), (2, 'ec2.instanceType', 'm1.small'), (2, 'ec2.keyPair', 'charon-old-kp'),
           (2, 'publicIpv4', '127.0.0.1'), (2, 'privateIpv4', '127.0.0.2'), (2, 'state', '3'),
           (2, 'ec2.publicHostKey', '{key}');"
    );
    let st = Command::new("sqlite3")
        .arg(fleet.state_file())
        .arg(&sql)
        .status()
        .unwrap();
    assert!(st.success());
    let info = fleet.ok(&["info", "-d", "old", "--no-eval", "--plain"]).stdout;
    assert!(
        info.lines()
            .any(|l| l.starts_with("web\t") && l.contains("ec2 [eu-west-1a; m1.small]\ti-0abc\t127.0.0.1")),
        "{info}"
    );
    assert!(
        info.lines()
            .any(|l| l.starts_with("kp\t") && l.contains("ec2-keypair [eu-west-1]\tcharon-old-kp")),
        "{info}"
    );
    assert!(fleet.ok(&["list"]).stdout.contains("| ec2 "));

    let export = fleet.ok(&["export", "-d", "old"]).stdout;
    let other = fleet.new_state("moved");
    let r = common::Run::from(
        fleet
            .nixops(&["import", "--include-keys"])
            .env("NIXOPS_STATE", &other)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(export.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let known = std::fs::read_to_string(fleet.path().join("home/.ssh/known_hosts")).unwrap();
    assert!(
        known.contains(&format!("127.0.0.1 {key}\n")) && known.contains(&format!("127.0.0.2 {key}\n")),
        "{known}"
    );
    let moved = fleet
        .nixops(&["export", "-d", "old"])
        .env("NIXOPS_STATE", &other)
        .output()
        .unwrap();
    let moved: serde_json::Value = serde_json::from_slice(&moved.stdout).unwrap();
    let before: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(moved, before);
}
